//! The JSON documents of the admin API's `/debug/*` endpoints. The server builds them ([`super::views`])
//! and `ambientd zc` reads them back, so both sides share these types.
//!
//! Field names are lowerCamelCase. Entries carry readable summaries (IP addresses as text, the waypoint
//! as `namespace/hostname`) next to `resource`, the full resource in the protobuf JSON mapping that
//! `ambientd dump` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /debug/workloads[?namespace=NS][&node=NODE]`: every Workload resource, sorted by namespace and
/// name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadList {
    pub workloads: Vec<WorkloadEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// The xDS resource name (the workload's uid).
    pub resource_name: String,
    /// The resource version (16 hex digits) ztunnel receives.
    pub version: String,
    pub namespace: String,
    /// The pod's name (or the EndpointSlice endpoint's).
    pub name: String,
    /// IP addresses as text.
    pub addresses: Vec<String>,
    /// The Kubernetes node, empty when unknown.
    pub node: String,
    pub service_account: String,
    /// `HBONE` when ztunnel captures the workload's traffic, else `TCP` (ztunnel's words).
    pub protocol: String,
    /// The waypoint, as `namespace/hostname` or `network/IP`; `None` when not bound.
    pub waypoint: Option<String>,
    /// `HEALTHY` or `UNHEALTHY`.
    pub status: String,
    /// The Services (`namespace/hostname`) the workload is an endpoint of.
    pub services: Vec<String>,
    /// The Authorization resources ztunnel applies to it.
    pub authorization_policies: Vec<String>,
    /// The whole `istio.workload.Address`, as `ambientd dump` prints it.
    pub resource: Value,
}

/// `GET /debug/services[?namespace=NS]`: every Service resource, sorted by namespace and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceList {
    pub services: Vec<ServiceEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// The xDS resource name (`namespace/hostname`).
    pub resource_name: String,
    pub version: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    /// Virtual IPs as text.
    pub vips: Vec<String>,
    /// `port` or `port->targetPort`.
    pub ports: Vec<String>,
    /// The waypoint, as for workloads.
    pub waypoint: Option<String>,
    /// Workloads that list this Service.
    pub endpoints: usize,
    /// Of those, the healthy ones.
    pub healthy_endpoints: usize,
    /// The whole `istio.workload.Address`, as `ambientd dump` prints it.
    pub resource: Value,
}

/// `GET /debug/policies[?namespace=NS]`: the Authorization resources ztunnel receives, and what was
/// concluded about every AuthorizationPolicy and PeerAuthentication (including those ztunnel does not
/// receive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyList {
    pub policies: Vec<PolicyEntry>,
    /// `ambientd dump`'s diagnostics for policy objects (documents that failed to parse, conditions,
    /// `enforcedBy` verdicts), in its order.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntry {
    /// The xDS resource name (`namespace/name`).
    pub resource_name: String,
    pub version: String,
    pub namespace: String,
    pub name: String,
    /// `ALLOW` or `DENY`.
    pub action: String,
    /// `GLOBAL`, `NAMESPACE` or `WORKLOAD_SELECTOR`.
    pub scope: String,
    pub rules: usize,
    /// The whole `istio.security.Authorization`, as `ambientd dump` prints it.
    pub resource: Value,
}

/// One entry of `ambientd dump`'s `diagnostics`, which `/debug/policies` and `/debug/diagnostics` reuse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// `Kind/namespace/name`, or `Kind/name`; empty when a document could not be read that far.
    #[serde(default)]
    pub object: String,
    /// `path:line` of a document that failed to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `True` or `False`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For AuthorizationPolicies: who enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_rules: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /debug/diagnostics[?namespace=NS]`: every diagnostic of `ambientd dump`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticList {
    pub diagnostics: Vec<Diagnostic>,
}

/// `GET /debug/waypoints[?namespace=NS]`: every waypoint, what is bound to it and what was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointList {
    pub waypoints: Vec<WaypointEntry>,
    /// Refusals that name a waypoint which does not exist (or is not a waypoint: no status address).
    pub unresolved: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointEntry {
    pub namespace: String,
    pub name: String,
    /// The address clients reach it by (`namespace/hostname` or `network/IP`); `None` without one.
    pub address: Option<String>,
    /// `istio.io/waypoint-for`: `service`, `workload`, `all` or `none`.
    pub traffic_type: String,
    /// Services and workloads whose resource names this waypoint, sorted.
    pub bound: Vec<BoundObject>,
    /// Objects that asked for this waypoint and were refused, sorted by object.
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundObject {
    /// `Service/namespace/name` or `Pod/namespace/name` (`Workload/…` for EndpointSlice workloads).
    pub object: String,
    /// The Address resource that carries the binding.
    pub resource_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// `Kind/namespace/name` of the refused object.
    pub object: String,
    /// The waypoint it asked for (`namespace/name`), when its labels say.
    pub waypoint: Option<String>,
    /// istiod's reason (`WaypointIsNotReady`, `AttachmentDenied`, `UnsupportedTrafficType`).
    pub reason: String,
    pub message: String,
}

/// `GET /debug/connections[?node=NODE][&namespace=NS]`: every connected proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionList {
    pub connections: Vec<crate::connections::ConnectionSnapshot>,
}

/// `GET /debug/certs`: the CA and serving certificates and what the CA has done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertsDoc {
    /// The root bundle ztunnels trust (its earliest expiry); `None` when the server runs no CA.
    pub root: Option<CertValidity>,
    /// The certificate that signs workload certificates (the root itself, or a plug-in intermediate).
    pub signing: Option<CertValidity>,
    /// The TLS serving certificate of the gRPC port.
    pub serving: Option<CertValidity>,
    /// Workload certificates issued since start.
    pub issued: u64,
    /// Requests refused since start, by reason.
    pub refused: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertValidity {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// The same, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Subject or SANs worth showing (DNS names of the serving certificate, the CA's subject).
    pub names: Vec<String>,
}

/// `GET /debug/sync?name=NAME[&type=TYPE]`: which connected proxies have ACKed the current version of one
/// resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncDoc {
    pub type_url: String,
    pub name: String,
    /// The version the index holds now; `None` when the resource does not exist (removed, or never was).
    pub version: Option<String>,
    pub proxies: Vec<SyncStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub connection_id: u64,
    pub node_id: String,
    pub proxy_type: String,
    pub sent_version: Option<String>,
    pub acked_version: Option<String>,
    /// `SYNCED` (ACKed the current version, or both sides have no such resource), `PENDING` (the current
    /// version was sent, not yet ACKed), `STALE` (holds another version, or none), `NOT SUBSCRIBED`.
    pub status: String,
}

/// The error document of every non-2xx `/debug/*` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDoc {
    pub error: String,
    /// The endpoints this server has, on 404.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}
