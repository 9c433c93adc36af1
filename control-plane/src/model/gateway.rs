//! Gateway API kinds: Gateway and GatewayClass reduced to what waypoint binding reads; HTTPRoute kept whole
//! (minus managed fields) for the waypoint work that consumes it.

use gateway_api::apis::standard::gatewayclasses as gwc;
use gateway_api::apis::standard::gateways as gw;
use gateway_api::apis::standard::gateways::GatewayListenersAllowedRoutesNamespacesFrom as From;
use gateway_api::apis::standard::httproutes as hr;

use super::ModelError;
use super::core::Meta;
use super::labels::LabelSelector;

/// Which namespaces may attach to a listener (`allowedRoutes.namespaces`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedRoutes {
    #[default]
    Same,
    All,
    Selector(LabelSelector),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub allowed_routes: AllowedRoutes,
}

/// A `status.addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddress {
    Hostname(String),
    Ip(String),
    /// A named address or another implementation-specific type; never used as a waypoint address.
    Other {
        kind: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub meta: Meta,
    pub class: String,
    pub listeners: Vec<Listener>,
    pub addresses: Vec<StatusAddress>,
}

impl Gateway {
    pub fn from_k8s(g: gw::Gateway) -> Result<Self, ModelError> {
        let meta = Meta::from_k8s(g.metadata, false)?;
        let listeners = g
            .spec
            .listeners
            .into_iter()
            .map(|l| {
                let ns = l.allowed_routes.and_then(|a| a.namespaces);
                let allowed_routes = match ns {
                    None => AllowedRoutes::Same,
                    Some(ns) => match ns.from {
                        None | Some(From::Same) => AllowedRoutes::Same,
                        Some(From::All) => AllowedRoutes::All,
                        // No selector selects no namespace (Kubernetes' `LabelSelectorAsSelector(nil)`
                        // is `Nothing`, which istiod's `makeWaypointSelector` keeps); an empty one
                        // selects every namespace. An `In` without values matches nothing.
                        Some(From::Selector) => match ns.selector {
                            None => AllowedRoutes::Selector(LabelSelector::from_parts(
                                None,
                                [(String::new(), "In".to_string(), None)],
                            )),
                            Some(sel) => AllowedRoutes::Selector(LabelSelector::from_parts(
                                sel.match_labels,
                                sel.match_expressions
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|e| (e.key, e.operator, e.values)),
                            )),
                        },
                    },
                };
                Listener {
                    name: l.name,
                    port: l.port,
                    protocol: l.protocol,
                    allowed_routes,
                }
            })
            .collect();
        let addresses = g
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .map(|a| match a.r#type.as_deref() {
                None | Some("IPAddress") => StatusAddress::Ip(a.value),
                Some("Hostname") => StatusAddress::Hostname(a.value),
                Some(other) => StatusAddress::Other {
                    kind: other.to_string(),
                    value: a.value,
                },
            })
            .collect();
        Ok(Gateway {
            meta,
            class: g.spec.gateway_class_name,
            listeners,
            addresses,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayClass {
    pub meta: Meta,
    pub controller: String,
}

impl GatewayClass {
    pub fn from_k8s(c: gwc::GatewayClass) -> Result<Self, ModelError> {
        Ok(GatewayClass {
            meta: Meta::from_k8s(c.metadata, true)?,
            controller: c.spec.controller_name,
        })
    }
}

/// An HTTPRoute, stored as the Gateway API type for the waypoint configuration built on it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    pub meta: Meta,
    pub spec: hr::HttpRouteSpec,
}

impl HttpRoute {
    pub fn from_k8s(r: hr::HttpRoute) -> Result<Self, ModelError> {
        Ok(HttpRoute {
            meta: Meta::from_k8s(r.metadata, false)?,
            spec: r.spec,
        })
    }
}
