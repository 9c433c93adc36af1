//! Builders for the Gateway API: Gateway (and waypoints, as istiod's tests make them), allowedRoutes
//! and GatewayClass.

use crate::model::{
    AllowedRoutes, Gateway, GatewayClass, LabelSelector, Listener, Object, StatusAddress,
};

use super::meta;

/// Builds a [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayBuilder(Gateway);

pub fn gateway(namespace: &str, name: &str) -> GatewayBuilder {
    GatewayBuilder(Gateway {
        meta: meta(namespace, name),
        class: "istio-waypoint".to_string(),
        listeners: Vec::new(),
        addresses: Vec::new(),
    })
}

/// A Gateway as istiod's index tests make waypoints (`addWaypoint`): class `istio-waypoint`, an
/// HBONE:15008 listener allowing the same namespace, and status addresses hostname
/// `<name>.<ns>.svc.<domain_suffix>` and `ip`.
pub fn waypoint(namespace: &str, name: &str, domain_suffix: &str, ip: &str) -> GatewayBuilder {
    gateway(namespace, name)
        .hbone_listener(AllowedRoutes::Same)
        .status_hostname(&format!("{name}.{namespace}.svc.{domain_suffix}"))
        .status_ip(ip)
}

impl GatewayBuilder {
    pub fn class(mut self, class: &str) -> Self {
        self.0.class = class.to_string();
        self
    }

    /// The `mesh` listener: protocol `HBONE`, port 15008.
    pub fn hbone_listener(self, allowed_routes: AllowedRoutes) -> Self {
        self.listener("mesh", 15008, "HBONE", allowed_routes)
    }

    pub fn listener(
        mut self,
        name: &str,
        port: i32,
        protocol: &str,
        allowed_routes: AllowedRoutes,
    ) -> Self {
        self.0.listeners.push(Listener {
            name: name.to_string(),
            port,
            protocol: protocol.to_string(),
            allowed_routes,
        });
        self
    }

    /// A `Hostname` status address.
    pub fn status_hostname(mut self, hostname: &str) -> Self {
        self.0
            .addresses
            .push(StatusAddress::Hostname(hostname.to_string()));
        self
    }

    /// An `IPAddress` status address (written as given; it may not parse).
    pub fn status_ip(mut self, ip: &str) -> Self {
        self.0.addresses.push(StatusAddress::Ip(ip.to_string()));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::Gateway(Box::new(self.0))
    }
}

/// `allowedRoutes.namespaces.from: Selector` with `matchLabels`.
pub fn allowed_selector(match_labels: &[(&str, &str)]) -> AllowedRoutes {
    AllowedRoutes::Selector(LabelSelector {
        match_labels: match_labels.iter().copied().collect(),
        match_expressions: Vec::new(),
    })
}

/// Builds a [`GatewayClass`] (controller `istio.io/mesh-controller`).
#[derive(Debug, Clone)]
pub struct GatewayClassBuilder(GatewayClass);

pub fn gateway_class(name: &str) -> GatewayClassBuilder {
    GatewayClassBuilder(GatewayClass {
        meta: meta("", name),
        controller: "istio.io/mesh-controller".to_string(),
    })
}

impl GatewayClassBuilder {
    pub fn controller(mut self, controller: &str) -> Self {
        self.0.controller = controller.to_string();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::GatewayClass(self.0)
    }
}
