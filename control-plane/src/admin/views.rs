//! The `/debug/*` documents, computed from the index (and the connection registry) on request.
//!
//! Pure functions of their inputs: no locks, no I/O. They decode every resource they list, which is
//! fine for a debug endpoint and is why the server runs them off the async threads.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use ambient_proto::security::{Action, Authorization, Scope};
use ambient_proto::workload::{
    Address, GatewayAddress, NetworkAddress, TunnelProtocol, WorkloadStatus, address,
    gateway_address,
};
use prost::Message;

use crate::dump;
use crate::source::SourceDiagnostic;
use ambient_ca::rfc3339;
use ambient_index::Index;
use ambient_index::model::{Kind, Labels};
use ambient_index::waypoints::{CONDITION_TYPE, Request};

use super::api::*;
use crate::connections::{ConnectionSnapshot, SyncEntry};

/// Why a document could not be built: a resource of the index did not decode (a bug, not bad input).
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("resource {name} does not decode: {source}")]
    Decode {
        name: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("resource {name} has no protobuf JSON form: {source}")]
    Json {
        name: String,
        #[source]
        source: ambient_proto::json::JsonError,
    },
    #[error("diagnostic {0} does not have the dump's shape: {1}")]
    Diagnostic(String, #[source] serde_json::Error),
    #[error(transparent)]
    IndexFailed(#[from] crate::shared_index::IndexFailed),
}

/// The `?namespace=` and `?node=` query filters; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub node: Option<String>,
}

impl Filter {
    fn namespace(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
    }

    fn node(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }
}

/// Every Workload resource matching `filter` (namespace, node), sorted by namespace, name, uid.
pub fn workloads(index: &Index, filter: &Filter) -> Result<WorkloadList, ViewError> {
    let mut workloads = Vec::new();
    for (name, res) in index.addresses() {
        let Some(address::Type::Workload(w)) = decode_address(name, &res.body)?.r#type else {
            continue;
        };
        if !filter.namespace(&w.namespace) || !filter.node(&w.node) {
            continue;
        }
        let protocol = if w.tunnel_protocol == TunnelProtocol::Hbone as i32 {
            "HBONE"
        } else {
            "TCP"
        };
        let status = if w.status == WorkloadStatus::Unhealthy as i32 {
            "UNHEALTHY"
        } else {
            "HEALTHY"
        };
        workloads.push(WorkloadEntry {
            resource_name: name.to_string(),
            version: res.version_string(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            addresses: w.addresses.iter().map(|a| ip_text(a)).collect(),
            node: w.node.clone(),
            service_account: w.service_account.clone(),
            protocol: protocol.to_string(),
            waypoint: w.waypoint.as_ref().and_then(gateway_text),
            status: status.to_string(),
            services: w.services.keys().cloned().collect(),
            authorization_policies: w.authorization_policies.clone(),
            resource: address_json(name, &res.body)?,
        });
    }
    workloads.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.resource_name).cmp(&(&b.namespace, &b.name, &b.resource_name))
    });
    Ok(WorkloadList { workloads })
}

/// Every Service resource in `filter`'s namespace, sorted by namespace and name, with the number of
/// workloads that list it.
pub fn services(index: &Index, filter: &Filter) -> Result<ServiceList, ViewError> {
    let mut endpoints: HashMap<String, (usize, usize)> = HashMap::new();
    let mut found = Vec::new();
    for (name, res) in index.addresses() {
        match decode_address(name, &res.body)?.r#type {
            Some(address::Type::Workload(w)) => {
                let healthy = w.status != WorkloadStatus::Unhealthy as i32;
                for svc in w.services.keys() {
                    let e = endpoints.entry(svc.clone()).or_default();
                    e.0 += 1;
                    e.1 += usize::from(healthy);
                }
            }
            Some(address::Type::Service(s)) if filter.namespace(&s.namespace) => {
                found.push((name, res, s));
            }
            _ => {}
        }
    }
    let mut services = Vec::with_capacity(found.len());
    for (name, res, s) in found {
        let (total, healthy) = endpoints.get(&**name).copied().unwrap_or_default();
        services.push(ServiceEntry {
            resource_name: name.to_string(),
            version: res.version_string(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            vips: s.addresses.iter().map(network_address_text).collect(),
            ports: s
                .ports
                .iter()
                .map(|p| {
                    if p.target_port == 0 || p.target_port == p.service_port {
                        p.service_port.to_string()
                    } else {
                        format!("{}->{}", p.service_port, p.target_port)
                    }
                })
                .collect(),
            waypoint: s.waypoint.as_ref().and_then(gateway_text),
            endpoints: total,
            healthy_endpoints: healthy,
            resource: address_json(name, &res.body)?,
        });
    }
    services.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.resource_name).cmp(&(&b.namespace, &b.name, &b.resource_name))
    });
    Ok(ServiceList { services })
}

/// The Authorization resources in `filter`'s namespace, and the dump's diagnostics of policy objects.
pub fn policies(
    index: &Index,
    source: &[SourceDiagnostic],
    filter: &Filter,
) -> Result<PolicyList, ViewError> {
    let mut policies = Vec::new();
    for (name, res) in index.authorizations() {
        let a = Authorization::decode(res.body.clone()).map_err(|source| ViewError::Decode {
            name: name.to_string(),
            source,
        })?;
        if !filter.namespace(&a.namespace) {
            continue;
        }
        let resource = ambient_proto::json::authorization_to_json(&res.body).map_err(|source| {
            ViewError::Json {
                name: name.to_string(),
                source,
            }
        })?;
        policies.push(PolicyEntry {
            resource_name: name.to_string(),
            version: res.version_string(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            action: Action::try_from(a.action)
                .map_or("UNKNOWN", |x| x.as_str_name())
                .to_string(),
            scope: Scope::try_from(a.scope)
                .map_or("UNKNOWN", |x| x.as_str_name())
                .to_string(),
            rules: a.rules.len(),
            resource,
        });
    }
    policies.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.resource_name).cmp(&(&b.namespace, &b.name, &b.resource_name))
    });
    let policy_kinds = [
        Kind::AuthorizationPolicy.as_str(),
        Kind::PeerAuthentication.as_str(),
    ];
    let diagnostics = diagnostics(index, source, filter)?
        .diagnostics
        .into_iter()
        .filter(|d| {
            d.object
                .split_once('/')
                .is_some_and(|(kind, _)| policy_kinds.contains(&kind))
        })
        .collect();
    Ok(PolicyList {
        policies,
        diagnostics,
    })
}

/// Every diagnostic of `ambientd dump` whose object is in `filter`'s namespace (all of them without a
/// namespace filter; with one, documents that could not be read as far as their namespace are left out).
pub fn diagnostics(
    index: &Index,
    source: &[SourceDiagnostic],
    filter: &Filter,
) -> Result<DiagnosticList, ViewError> {
    let mut out = Vec::new();
    for value in dump::diagnostics(index, source) {
        let d: Diagnostic = serde_json::from_value(value.clone())
            .map_err(|e| ViewError::Diagnostic(value.to_string(), e))?;
        if filter.namespace.is_none()
            || object_namespace(&d.object).is_some_and(|ns| filter.namespace(ns))
        {
            out.push(d);
        }
    }
    Ok(DiagnosticList { diagnostics: out })
}

/// Every waypoint in `filter`'s namespace with the resources that name it and the objects it refused;
/// refusals of waypoints that do not exist go to `unresolved` (filtered by the object's namespace).
pub fn waypoints(index: &Index, filter: &Filter) -> Result<WaypointList, ViewError> {
    let mut entries: BTreeMap<String, WaypointEntry> = index
        .waypoints()
        .map(|wp| {
            (
                wp.key(),
                WaypointEntry {
                    namespace: wp.namespace.clone(),
                    name: wp.name.clone(),
                    address: wp.address.as_ref().and_then(gateway_text),
                    traffic_type: wp.traffic_type.as_str().to_string(),
                    bound: Vec::new(),
                    refused: Vec::new(),
                },
            )
        })
        .collect();
    let by_address: HashMap<String, String> = entries
        .iter()
        .filter_map(|(key, e)| Some((e.address.clone()?, key.clone())))
        .collect();

    for (name, res) in index.addresses() {
        let (object, waypoint) = match decode_address(name, &res.body)?.r#type {
            Some(address::Type::Workload(w)) => {
                let kind = if name.contains("//Pod/") {
                    "Pod"
                } else {
                    "Workload"
                };
                (format!("{kind}/{}/{}", w.namespace, w.name), w.waypoint)
            }
            Some(address::Type::Service(s)) => {
                (format!("Service/{}/{}", s.namespace, s.name), s.waypoint)
            }
            None => continue,
        };
        let Some(key) = waypoint
            .as_ref()
            .and_then(gateway_text)
            .and_then(|a| by_address.get(&a))
        else {
            continue;
        };
        if let Some(entry) = entries.get_mut(key) {
            entry.bound.push(BoundObject {
                object,
                resource_name: name.to_string(),
            });
        }
    }

    let mut unresolved = Vec::new();
    for (obj, condition) in index.conditions() {
        if condition.type_ != CONDITION_TYPE || condition.status {
            continue;
        }
        let labels: Option<&Labels> = match obj.kind {
            Kind::Pod => index.pod(&obj.namespace, &obj.name).map(|p| &p.meta.labels),
            Kind::Service => index
                .service(&obj.namespace, &obj.name)
                .map(|s| &s.meta.labels),
            _ => None,
        };
        let requested = labels
            .and_then(|l| Request::from_labels(l, &obj.namespace))
            .or_else(|| {
                index
                    .namespace(&obj.namespace)
                    .and_then(|ns| Request::from_labels(&ns.meta.labels, &obj.namespace))
            })
            .and_then(|r| r.key());
        let refusal = Refusal {
            object: obj.to_string(),
            waypoint: requested.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
        };
        match requested.and_then(|k| entries.get_mut(&k)) {
            Some(entry) => entry.refused.push(refusal),
            None if filter.namespace(&obj.namespace) => unresolved.push(refusal),
            None => {}
        }
    }

    let waypoints = entries
        .into_values()
        .filter(|e| filter.namespace(&e.namespace))
        .map(|mut e| {
            e.bound.sort();
            e.refused.sort();
            e
        })
        .collect();
    unresolved.sort();
    Ok(WaypointList {
        waypoints,
        unresolved,
    })
}

/// The connections matching `filter`: `node` is the proxy's Kubernetes node or its whole node id;
/// `namespace` is the namespace in its node id (`type~ip~pod.namespace~…`). Sorted by connection id.
pub fn connections(mut all: Vec<ConnectionSnapshot>, filter: &Filter) -> ConnectionList {
    all.retain(|c| {
        let node_ok = filter
            .node
            .as_deref()
            .is_none_or(|n| c.node_id == n || c.node_name.as_deref() == Some(n));
        let ns_ok = filter
            .namespace
            .as_deref()
            .is_none_or(|ns| node_id_namespace(&c.node_id) == Some(ns));
        node_ok && ns_ok
    });
    all.sort_by_key(|c| c.id);
    ConnectionList { connections: all }
}

/// The namespace of an Istio node id `type~ip~pod.namespace~domain`.
pub fn node_id_namespace(node_id: &str) -> Option<&str> {
    let pod_ns = node_id.split('~').nth(2)?;
    pod_ns
        .split_once('.')
        .map(|(_, ns)| ns)
        .filter(|ns| !ns.is_empty())
}

/// Resolves the `type` of a sync query: a full type URL, a type name (`istio.workload.Address`), a short
/// name (`Address`, `Authorization`, case-insensitive), or, when absent, the type holding `name`
/// (Address first). `None` for a type this server does not serve.
pub fn sync_type(index: &Index, requested: Option<&str>, name: &str) -> Option<&'static str> {
    use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
    match requested {
        None => Some(
            if index.address(name).is_none() && index.authorization(name).is_some() {
                AUTHORIZATION_TYPE_URL
            } else {
                ADDRESS_TYPE_URL
            },
        ),
        Some(t) => [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]
            .into_iter()
            .find(|url| {
                let full = crate::metrics::type_label(url);
                let short = full.rsplit('.').next().unwrap_or(full);
                t == *url || t == full || t.eq_ignore_ascii_case(short)
            }),
    }
}

/// Which proxies hold the current version of `name`.
pub fn sync(index: &Index, type_url: &str, name: &str, entries: Vec<SyncEntry>) -> SyncDoc {
    let current = if type_url == ambient_proto::AUTHORIZATION_TYPE_URL {
        index.authorization(name)
    } else {
        index.address(name)
    }
    .map(|r| r.version_string());
    let mut proxies: Vec<SyncStatus> = entries
        .into_iter()
        .map(|e| {
            let status = if !e.subscribed {
                "NOT SUBSCRIBED"
            } else if e.acked_version == current {
                "SYNCED"
            } else if current.is_some() && e.sent_version == current {
                "PENDING"
            } else {
                "STALE"
            };
            SyncStatus {
                connection_id: e.connection_id,
                node_id: e.node_id,
                proxy_type: e.proxy_type,
                sent_version: e.sent_version,
                acked_version: e.acked_version,
                status: status.to_string(),
            }
        })
        .collect();
    proxies.sort_by_key(|p| p.connection_id);
    SyncDoc {
        type_url: type_url.to_string(),
        name: name.to_string(),
        version: current,
        proxies,
    }
}

/// The certificate summary for `/debug/certs` from the CA, its serving certificate and its counters.
pub fn certs(
    ca: &ambient_ca::CertificateAuthority,
    serving: &ambient_ca::ServingTls,
    counters: &ambient_ca::CaMetrics,
) -> CertsDoc {
    use x509_parser::prelude::FromDer;
    let mut root: Option<CertValidity> = None;
    for der in ca.roots() {
        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
            continue;
        };
        let not_after = cert.validity().not_after.timestamp();
        let subject = cert.subject().to_string();
        match &mut root {
            Some(r) => {
                r.names.push(subject);
                if not_after < r.not_after_unix {
                    r.not_after_unix = not_after;
                }
            }
            None => {
                root = Some(CertValidity {
                    not_after: String::new(),
                    not_after_unix: not_after,
                    names: vec![subject],
                })
            }
        }
    }
    if let Some(r) = &mut root {
        r.not_after = format_unix(r.not_after_unix);
    }
    CertsDoc {
        root,
        signing: Some(validity(ca.ca_not_after(), Vec::new())),
        serving: Some(validity(
            serving.current_not_after(),
            serving.dns_names().to_vec(),
        )),
        issued: counters.issued,
        refused: counters.refused.clone(),
    }
}

fn validity(t: SystemTime, names: Vec<String>) -> CertValidity {
    let unix = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    CertValidity {
        not_after: rfc3339::format(t),
        not_after_unix: unix,
        names,
    }
}

fn format_unix(secs: i64) -> String {
    let t = if secs >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    rfc3339::format(t)
}

/// The namespace part of `Kind/namespace/name` (`None` for `Kind/name` and empty objects).
fn object_namespace(object: &str) -> Option<&str> {
    let mut parts = object.splitn(3, '/');
    let _kind = parts.next()?;
    let ns = parts.next()?;
    parts.next()?;
    Some(ns)
}

fn decode_address(name: &str, body: &[u8]) -> Result<Address, ViewError> {
    Address::decode(body).map_err(|source| ViewError::Decode {
        name: name.to_string(),
        source,
    })
}

fn address_json(name: &str, body: &[u8]) -> Result<serde_json::Value, ViewError> {
    ambient_proto::json::address_to_json(body).map_err(|source| ViewError::Json {
        name: name.to_string(),
        source,
    })
}

/// An IP address as text; bytes of another length as `invalid:<hex>`.
pub fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let b: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
            IpAddr::from(b).to_string()
        }
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytes);
            IpAddr::from(b).to_string()
        }
        _ => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("invalid:{hex}")
        }
    }
}

/// `network/IP` (just the IP on the default network), with `/len` for a range.
fn network_address_text(a: &NetworkAddress) -> String {
    let ip = ip_text(&a.address);
    let ip = match a.length {
        Some(len) => format!("{ip}/{len}"),
        None => ip,
    };
    if a.network.is_empty() {
        ip
    } else {
        format!("{}/{ip}", a.network)
    }
}

/// `namespace/hostname` or the network address of a waypoint; `None` when it has no destination.
fn gateway_text(g: &GatewayAddress) -> Option<String> {
    Some(match g.destination.as_ref()? {
        gateway_address::Destination::Hostname(h) => format!("{}/{}", h.namespace, h.hostname),
        gateway_address::Destination::Address(a) => network_address_text(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_print_as_text() {
        assert_eq!(ip_text(&[10, 244, 0, 44]), "10.244.0.44");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_text(&v6), "::1");
        assert_eq!(ip_text(&[1, 2]), "invalid:0102");
    }

    #[test]
    fn node_ids_name_their_namespace() {
        assert_eq!(
            node_id_namespace(
                "sidecar~10.0.0.1~ztunnel-abcde.istio-system~istio-system.svc.cluster.local"
            ),
            Some("istio-system")
        );
        assert_eq!(node_id_namespace("ztunnel-1"), None);
        assert_eq!(node_id_namespace("a~b~pod~x"), None);
    }

    #[test]
    fn object_namespaces() {
        assert_eq!(object_namespace("Service/backend/details"), Some("backend"));
        assert_eq!(object_namespace("Namespace/backend"), None);
        assert_eq!(object_namespace(""), None);
    }
}
