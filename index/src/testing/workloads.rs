//! Builders for the objects workloads and Services are made of: Pod, Service, Namespace, Node and
//! EndpointSlice.

use std::net::IpAddr;

use crate::model::well_known::SERVICE_NAME;
use crate::model::{
    Endpoint, EndpointPort, EndpointSlice, Labels, NamedPort, Namespace, Node, Object, OwnerRef,
    Pod, Service, ServicePort, TargetPort, TargetRef,
};

use super::meta;

// ---- Pod ----------------------------------------------------------------------------------------

/// Builds a [`Pod`].
#[derive(Debug, Clone)]
pub struct PodBuilder(Pod);

pub fn pod(namespace: &str, name: &str) -> PodBuilder {
    PodBuilder(Pod {
        meta: meta(namespace, name),
        generate_name: false,
        controller: None,
        service_account: String::new(),
        node: String::new(),
        host_network: false,
        ips: Vec::new(),
        bad_ip: false,
        terminal: false,
        ready: false,
        named_ports: Vec::new(),
    })
}

impl PodBuilder {
    /// Adds a pod IP; one that does not parse marks the pod as having a bad IP, as the parser does.
    pub fn ip(mut self, ip: &str) -> Self {
        match ip.parse::<IpAddr>() {
            Ok(ip) => self.0.ips.push(ip),
            Err(_) => self.0.bad_ip = true,
        }
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0.meta.uid = uid.to_string();
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

    /// `spec.serviceAccountName`.
    pub fn sa(mut self, service_account: &str) -> Self {
        self.0.service_account = service_account.to_string();
        self
    }

    /// `spec.nodeName`.
    pub fn node(mut self, node: &str) -> Self {
        self.0.node = node.to_string();
        self
    }

    /// The `Ready` condition is `True`.
    pub fn ready(mut self) -> Self {
        self.0.ready = true;
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self
    }

    /// `status.phase`: `Failed` and `Succeeded` are terminal, anything else is not.
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.terminal = matches!(phase, "Failed" | "Succeeded");
        self
    }

    /// `metadata.deletionTimestamp` is set.
    pub fn deleting(mut self) -> Self {
        self.0.meta.deleting = true;
        self
    }

    /// `metadata.generateName` is set (its value does not matter to the index).
    pub fn generate_name(mut self, _prefix: &str) -> Self {
        self.0.generate_name = true;
        self
    }

    /// The controller owner reference.
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0.controller = Some(OwnerRef {
            kind: kind.to_string(),
            name: name.to_string(),
        });
        self
    }

    /// A named TCP container port.
    pub fn named_port(mut self, name: &str, port: u16) -> Self {
        self.0.named_ports.push(NamedPort {
            name: name.to_string(),
            port,
        });
        self
    }

    pub fn host_network(mut self) -> Self {
        self.0.host_network = true;
        self
    }

    pub fn creation(mut self, seconds: i64) -> Self {
        self.0.meta.creation = seconds;
        self
    }

    /// The `targetRef` an EndpointSlice endpoint uses to point at this pod.
    pub fn target_ref(&self) -> TargetRef {
        pod_ref(&self.0.meta.namespace, &self.0.meta.name, &self.0.meta.uid)
    }

    pub fn into_pod(self) -> Pod {
        self.0
    }

    pub fn build(self) -> Object {
        Object::Pod(Box::new(self.0))
    }
}

/// An endpoint `targetRef` of kind Pod.
pub fn pod_ref(namespace: &str, name: &str, uid: &str) -> TargetRef {
    TargetRef {
        kind: "Pod".to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
    }
}

// ---- Service ------------------------------------------------------------------------------------

/// Builds a [`Service`].
#[derive(Debug, Clone)]
pub struct ServiceBuilder(Service);

pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        meta: meta(namespace, name),
        selector: None,
        external_name: false,
        cluster_ips: Vec::new(),
        ports: Vec::new(),
        internal_traffic_local: false,
        traffic_distribution: None,
        publish_not_ready: false,
        ip_families: Vec::new(),
    })
}

impl ServiceBuilder {
    /// Adds an entry of `spec.clusterIPs`, written as given (it may not parse).
    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.0.cluster_ips.push(ip.to_string());
        self
    }

    /// `clusterIP: None`.
    pub fn headless(mut self) -> Self {
        self.0.cluster_ips = vec!["None".to_string()];
        self
    }

    /// `type: ExternalName`.
    pub fn external_name(mut self) -> Self {
        self.0.external_name = true;
        self
    }

    fn push_port(mut self, name: &str, port: u16, protocol: &str, target: TargetPort) -> Self {
        self.0.ports.push(ServicePort {
            name: name.to_string(),
            port,
            protocol: protocol.to_string(),
            app_protocol: None,
            target_port: target,
        });
        self
    }

    /// A TCP port with a numeric `targetPort`.
    pub fn port(self, name: &str, port: u16, target_port: u16) -> Self {
        self.push_port(name, port, "TCP", TargetPort::Number(target_port))
    }

    /// A TCP port with a named `targetPort`.
    pub fn named_target(self, name: &str, port: u16, target_port: &str) -> Self {
        self.push_port(name, port, "TCP", TargetPort::Name(target_port.to_string()))
    }

    /// A UDP port with a numeric `targetPort`.
    pub fn udp_port(self, name: &str, port: u16, target_port: u16) -> Self {
        self.push_port(name, port, "UDP", TargetPort::Number(target_port))
    }

    /// Sets `appProtocol` on the port added last (no-op without ports).
    pub fn app_protocol(mut self, app_protocol: &str) -> Self {
        if let Some(p) = self.0.ports.last_mut() {
            p.app_protocol = Some(app_protocol.to_string());
        }
        self
    }

    /// Adds one `spec.selector` pair (making the Service a selector Service).
    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.0
            .selector
            .get_or_insert_with(Labels::new)
            .insert(key, value);
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

    /// `internalTrafficPolicy: Local`.
    pub fn internal_local(mut self) -> Self {
        self.0.internal_traffic_local = true;
        self
    }

    /// `spec.trafficDistribution`.
    pub fn traffic_distribution(mut self, value: &str) -> Self {
        self.0.traffic_distribution = Some(value.to_string());
        self
    }

    /// `publishNotReadyAddresses: true`.
    pub fn publish_not_ready(mut self) -> Self {
        self.0.publish_not_ready = true;
        self
    }

    /// `spec.ipFamilies`.
    pub fn ip_families(mut self, families: &[&str]) -> Self {
        self.0.ip_families = families.iter().map(|f| f.to_string()).collect();
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0.meta.uid = uid.to_string();
        self
    }

    pub fn into_service(self) -> Service {
        self.0
    }

    pub fn build(self) -> Object {
        Object::Service(Box::new(self.0))
    }
}

// ---- Namespace and Node -------------------------------------------------------------------------

/// Builds a [`Namespace`].
#[derive(Debug, Clone)]
pub struct NamespaceBuilder(Namespace);

pub fn namespace(name: &str) -> NamespaceBuilder {
    let mut m = meta("", name);
    m.labels.insert("kubernetes.io/metadata.name", name);
    NamespaceBuilder(Namespace { meta: m })
}

impl NamespaceBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::Namespace(self.0)
    }
}

/// Builds a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder(Node);

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        name: name.to_string(),
        region: String::new(),
        zone: String::new(),
        subzone: String::new(),
    })
}

impl NodeBuilder {
    pub fn region(mut self, region: &str) -> Self {
        self.0.region = region.to_string();
        self
    }

    pub fn zone(mut self, zone: &str) -> Self {
        self.0.zone = zone.to_string();
        self
    }

    pub fn subzone(mut self, subzone: &str) -> Self {
        self.0.subzone = subzone.to_string();
        self
    }

    pub fn build(self) -> Object {
        Object::Node(self.0)
    }
}

// ---- EndpointSlice ------------------------------------------------------------------------------

/// Builds an [`EndpointSlice`] (address type `IPv4` unless told otherwise).
#[derive(Debug, Clone)]
pub struct EndpointSliceBuilder(EndpointSlice);

pub fn endpoint_slice(namespace: &str, name: &str) -> EndpointSliceBuilder {
    EndpointSliceBuilder(EndpointSlice {
        meta: meta(namespace, name),
        service_name: None,
        address_type: "IPv4".to_string(),
        endpoints: Vec::new(),
        ports: Vec::new(),
    })
}

impl EndpointSliceBuilder {
    /// The `kubernetes.io/service-name` label.
    pub fn service(mut self, service: &str) -> Self {
        self.0.meta.labels.insert(SERVICE_NAME, service);
        self.0.service_name = Some(service.to_string());
        self
    }

    pub fn address_type(mut self, address_type: &str) -> Self {
        self.0.address_type = address_type.to_string();
        self
    }

    /// One endpoint: its addresses, `conditions.ready`, and an optional `targetRef`.
    pub fn endpoint(mut self, addresses: &[&str], ready: bool, target: Option<TargetRef>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ready: Some(ready),
            target_ref: target,
        });
        self
    }

    /// One endpoint without `conditions.ready` (which counts as ready).
    pub fn endpoint_ready_unset(mut self, addresses: &[&str], target: Option<TargetRef>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ready: None,
            target_ref: target,
        });
        self
    }

    /// A TCP port: the Service port name and the target port number.
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.0.ports.push(EndpointPort {
            name: name.to_string(),
            port: Some(port),
            protocol: "TCP".to_string(),
        });
        self
    }

    pub fn udp_port(mut self, name: &str, port: u16) -> Self {
        self.0.ports.push(EndpointPort {
            name: name.to_string(),
            port: Some(port),
            protocol: "UDP".to_string(),
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key, value);
        self
    }

    pub fn build(self) -> Object {
        Object::EndpointSlice(Box::new(self.0))
    }
}
