//! Core Kubernetes kinds (Pod, Service, Namespace, Node, EndpointSlice) in the slim form the index stores.
//!
//! Each is parsed with `k8s-openapi`'s full type and immediately reduced to the fields the index reads,
//! so a 100k-pod cluster costs memory for what matters only (no managedFields, specs or most of status).

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::Labels;
use super::{ModelError, annotations};

/// The metadata every stored object keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// Only the annotations the index reads (see [`annotations::KEPT`]).
    pub annotations: Labels,
    /// Seconds since the Unix epoch; 0 when absent.
    pub creation: i64,
    pub deleting: bool,
}

impl Meta {
    pub(crate) fn from_k8s(meta: ObjectMeta, cluster_scoped: bool) -> Result<Self, ModelError> {
        let name = meta
            .name
            .filter(|n| !n.is_empty())
            .ok_or(ModelError::MissingName)?;
        let namespace = if cluster_scoped {
            String::new()
        } else {
            meta.namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_string())
        };
        Ok(Meta {
            namespace,
            name,
            uid: meta.uid.unwrap_or_default(),
            labels: meta.labels.into(),
            annotations: Labels::from(meta.annotations).retain(annotations::is_kept),
            creation: meta
                .creation_timestamp
                .map(|t| t.0.as_second())
                .unwrap_or(0),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }
}

/// The controller owner reference of a pod, for `workload_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// A named TCP container port, for resolving a Service's named `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub meta: Meta,
    pub generate_name: bool,
    pub controller: Option<OwnerRef>,
    pub service_account: String,
    pub node: String,
    pub host_network: bool,
    /// Parsed `status.podIPs` (falling back to `status.podIP`). Empty when the pod has none.
    pub ips: Vec<IpAddr>,
    /// True when some reported IP did not parse: istiod then skips the pod.
    pub bad_ip: bool,
    /// Phase `Failed` or `Succeeded`.
    pub terminal: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// TCP container ports with a name, including those of restartable init containers.
    pub named_ports: Vec<NamedPort>,
}

impl Pod {
    pub fn from_k8s(pod: core::Pod) -> Result<Self, ModelError> {
        let meta = Meta::from_k8s(pod.metadata.clone(), false)?;
        let generate_name = pod
            .metadata
            .generate_name
            .as_deref()
            .is_some_and(|g| !g.is_empty());
        let controller = pod
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| OwnerRef {
                kind: o.kind,
                name: o.name,
            });
        let spec = pod.spec.unwrap_or_default();
        let status = pod.status.unwrap_or_default();

        let mut raw_ips: Vec<String> = status
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .filter(|ip| !ip.is_empty())
            .collect();
        if raw_ips.is_empty() {
            raw_ips.extend(status.pod_ip.filter(|ip| !ip.is_empty()));
        }
        let mut ips = Vec::with_capacity(raw_ips.len());
        let mut bad_ip = false;
        for raw in &raw_ips {
            match raw.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => bad_ip = true,
            }
        }

        let terminal = matches!(status.phase.as_deref(), Some("Failed") | Some("Succeeded"));
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");

        let restartable_init = spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let named_ports = spec
            .containers
            .into_iter()
            .chain(restartable_init)
            .flat_map(|c| c.ports.unwrap_or_default())
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| {
                let name = p.name.filter(|n| !n.is_empty())?;
                let port = u16::try_from(p.container_port).ok()?;
                Some(NamedPort { name, port })
            })
            .collect::<Vec<_>>();
        // A filtered iterator over-allocates; a pod keeps this for its lifetime.
        let mut named_ports = named_ports;
        named_ports.shrink_to_fit();

        Ok(Pod {
            meta,
            generate_name,
            controller,
            service_account: spec.service_account_name.unwrap_or_default(),
            node: spec.node_name.unwrap_or_default(),
            host_network: spec.host_network.unwrap_or(false),
            ips,
            bad_ip,
            terminal,
            ready,
            named_ports,
        })
    }
}

/// A Service's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub app_protocol: Option<String>,
    pub target_port: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub meta: Meta,
    /// `None` for a selectorless Service (no selector, or an empty one).
    pub selector: Option<Labels>,
    pub external_name: bool,
    /// `spec.clusterIPs` (falling back to `spec.clusterIP`), as written.
    pub cluster_ips: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub internal_traffic_local: bool,
    pub traffic_distribution: Option<String>,
    pub publish_not_ready: bool,
    pub ip_families: Vec<String>,
}

impl Service {
    pub fn from_k8s(svc: core::Service) -> Result<Self, ModelError> {
        let meta = Meta::from_k8s(svc.metadata, false)?;
        let spec = svc.spec.unwrap_or_default();
        let selector = spec.selector.filter(|s| !s.is_empty()).map(Labels::from);
        let mut cluster_ips = spec.cluster_ips.unwrap_or_default();
        if cluster_ips.is_empty() {
            cluster_ips.extend(spec.cluster_ip);
        }
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let port = u16::try_from(p.port).map_err(|_| ModelError::Invalid {
                    field: "spec.ports[].port".into(),
                    reason: format!("{} is not a port number", p.port),
                })?;
                let target_port = match p.target_port {
                    None => TargetPort::Number(port),
                    Some(IntOrString::Int(n)) => {
                        TargetPort::Number(u16::try_from(n).map_err(|_| ModelError::Invalid {
                            field: "spec.ports[].targetPort".into(),
                            reason: format!("{n} is not a port number"),
                        })?)
                    }
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s),
                    },
                };
                Ok(ServicePort {
                    name: p.name.unwrap_or_default(),
                    port,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".to_string()),
                    app_protocol: p.app_protocol,
                    target_port,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Service {
            meta,
            selector,
            external_name: spec.type_.as_deref() == Some("ExternalName"),
            cluster_ips,
            ports,
            internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            traffic_distribution: spec.traffic_distribution,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
            ip_families: spec.ip_families.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub meta: Meta,
}

impl Namespace {
    pub fn from_k8s(ns: core::Namespace) -> Result<Self, ModelError> {
        Ok(Namespace {
            meta: Meta::from_k8s(ns.metadata, true)?,
        })
    }
}

/// A Node, reduced to its locality labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Node {
    pub fn from_k8s(node: core::Node) -> Result<Self, ModelError> {
        let meta = Meta::from_k8s(node.metadata, true)?;
        let get = |k: &str| meta.labels.get(k).unwrap_or_default().to_string();
        Ok(Node {
            region: get("topology.kubernetes.io/region"),
            zone: get("topology.kubernetes.io/zone"),
            subzone: get("topology.istio.io/subzone"),
            name: meta.name,
        })
    }
}

/// An endpoint's `targetRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<String>,
    /// `conditions.ready`; `None` when unset (counts as ready).
    pub ready: Option<bool>,
    pub target_ref: Option<TargetRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: String,
    pub port: Option<u16>,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    pub meta: Meta,
    /// The `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    pub address_type: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

impl EndpointSlice {
    pub fn from_k8s(slice: discovery::EndpointSlice) -> Result<Self, ModelError> {
        let meta = Meta::from_k8s(slice.metadata, false)?;
        let service_name = meta
            .labels
            .get("kubernetes.io/service-name")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let endpoints = slice
            .endpoints
            .into_iter()
            .map(|e| Endpoint {
                addresses: e.addresses,
                ready: e.conditions.and_then(|c| c.ready),
                target_ref: e.target_ref.map(|r| TargetRef {
                    kind: r.kind.unwrap_or_default(),
                    namespace: r.namespace.unwrap_or_default(),
                    name: r.name.unwrap_or_default(),
                    uid: r.uid.unwrap_or_default(),
                }),
            })
            .collect();
        let ports = slice
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.unwrap_or_default(),
                port: p.port.and_then(|n| u16::try_from(n).ok()),
                protocol: p.protocol.unwrap_or_else(|| "TCP".to_string()),
            })
            .collect();
        Ok(EndpointSlice {
            meta,
            service_name,
            address_type: slice.address_type,
            endpoints,
            ports,
        })
    }
}
