//! Pod → `istio.workload.Workload` (docs/reference/istiod.md#workloads-from-pods) and EndpointSlice-only
//! workloads (docs/reference/istiod.md#workloads-from-endpointslices), plus the istio-cni enrollment rules
//! (docs/reference/istiod.md#ambient-enrollment-by-istio-cni) used when no CNI annotates pods.

use std::collections::BTreeMap;

use ambient_proto::workload::{
    self as wl, Locality, NetworkMode, Port, PortList, TunnelProtocol, WorkloadStatus, WorkloadType,
};

use crate::model::well_known::{
    CANONICAL_NAME, CANONICAL_REVISION, DATAPLANE_MODE, REDIRECTION, SIDECAR_STATUS, TUNNEL,
    WORKLOAD_NAME,
};
use crate::model::{EndpointSlice, Namespace, Node, Pod, Service, TargetPort};

use super::services::{self, resource_name};
use super::waypoints::{Binding, ip_bytes};
use super::{Enrollment, Settings};

/// `<cluster>//Pod/<namespace>/<name>`.
pub fn pod_uid(cluster_id: &str, namespace: &str, name: &str) -> String {
    format!("{cluster_id}//Pod/{namespace}/{name}")
}

/// `<cluster>/discovery.k8s.io/EndpointSlice/<namespace>/<slice>/<first address>`.
pub fn slice_workload_uid(cluster_id: &str, namespace: &str, slice: &str, first: &str) -> String {
    format!("{cluster_id}/discovery.k8s.io/EndpointSlice/{namespace}/{slice}/{first}")
}

/// Whether istiod turns this pod into a workload at all.
pub fn has_workload(pod: &Pod) -> bool {
    !pod.terminal && !pod.ips.is_empty() && !pod.bad_ip
}

/// istio-cni's enablement rule (docs/reference/istiod.md#ambient-enrollment-by-istio-cni): enrolled when not
/// host-network, not sidecar-injected, not in an excluded namespace, and labelled
/// `istio.io/dataplane-mode=ambient` itself or through its namespace (without opting out with `none`).
pub fn cni_would_enroll(pod: &Pod, namespace: Option<&Namespace>) -> bool {
    if pod.host_network || pod.meta.annotations.contains_key(SIDECAR_STATUS) {
        return false;
    }
    if CNI_EXCLUDED_NAMESPACES.contains(&pod.meta.namespace.as_str()) {
        return false;
    }
    let pod_mode = pod.meta.labels.get(DATAPLANE_MODE);
    if pod_mode == Some("ambient") {
        return true;
    }
    let ns_mode = namespace.and_then(|n| n.meta.labels.get(DATAPLANE_MODE));
    ns_mode == Some("ambient") && pod_mode != Some("none")
}

/// istio-cni's default `excludeNamespaces`.
pub const CNI_EXCLUDED_NAMESPACES: &[&str] = &["kube-system"];

/// `(tunnel_protocol, native_tunnel)` per docs/reference/istiod.md#tunnel-protocol, with enrollment inferred
/// from labels when asked.
fn tunnel(settings: &Settings, pod: &Pod, namespace: Option<&Namespace>) -> (TunnelProtocol, bool) {
    if pod
        .meta
        .labels
        .get(TUNNEL)
        .is_some_and(|t| t.split(',').any(|p| p.trim() == "http"))
    {
        return (TunnelProtocol::Hbone, true);
    }
    let annotated = pod.meta.annotations.get(REDIRECTION) == Some("enabled");
    let inferred = settings.enrollment == Enrollment::Labels && cni_would_enroll(pod, namespace);
    if annotated || inferred {
        (TunnelProtocol::Hbone, false)
    } else {
        (TunnelProtocol::None, false)
    }
}

/// `workload_name` per `GetWorkloadMetaFromPod`.
pub fn workload_name(pod: &Pod) -> String {
    if let Some(name) = pod.meta.labels.get(WORKLOAD_NAME) {
        return name.to_string();
    }
    let Some(owner) = pod.controller.as_ref().filter(|_| pod.generate_name) else {
        return pod.meta.name.clone();
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            for hash_label in ["pod-template-hash", "rollouts-pod-template-hash"] {
                if let Some(hash) = pod.meta.labels.get(hash_label)
                    && let Some(base) = owner.name.strip_suffix(hash)
                    && let Some(base) = base.strip_suffix('-')
                {
                    return base.to_string();
                }
            }
            owner.name.clone()
        }
        "ReplicationController" => pod
            .meta
            .labels
            .get("deploymentconfig")
            .map_or_else(|| owner.name.clone(), str::to_string),
        "Job" => cron_job_name(&owner.name)
            .unwrap_or(&owner.name)
            .to_string(),
        _ => owner.name.clone(),
    }
}

/// A Job created by a CronJob is named `<cronjob>-<8 to 10 digits>`.
fn cron_job_name(job: &str) -> Option<&str> {
    let (base, suffix) = job.rsplit_once('-')?;
    let digits = (8..=10).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_digit());
    (digits && !base.is_empty()).then_some(base)
}

/// `(canonical_name, canonical_revision)` per `CanonicalService`.
pub fn canonical(labels: &crate::model::Labels, workload_name: &str) -> (String, String) {
    let name = [CANONICAL_NAME, "app.kubernetes.io/name", "app"]
        .iter()
        .find_map(|k| labels.get(k))
        .unwrap_or(workload_name);
    let revision = [CANONICAL_REVISION, "app.kubernetes.io/version", "version"]
        .iter()
        .find_map(|k| labels.get(k))
        .unwrap_or("latest");
    (name.to_string(), revision.to_string())
}

/// The pod's ports for one Service: named target ports resolved against the pod's TCP container ports;
/// a name the pod does not expose drops that port.
pub fn port_list(svc: &Service, pod: &Pod) -> PortList {
    let ports = svc
        .ports
        .iter()
        .filter_map(|p| {
            let target = match &p.target_port {
                TargetPort::Number(n) => *n,
                TargetPort::Name(name) => pod.named_ports.iter().find(|c| &c.name == name)?.port,
            };
            Some(Port {
                service_port: u32::from(p.port),
                target_port: u32::from(target),
                app_protocol: 0,
            })
        })
        .collect();
    PortList { ports }
}

fn locality(node: Option<&Node>) -> Option<Locality> {
    let node = node?;
    if node.region.is_empty() && node.zone.is_empty() && node.subzone.is_empty() {
        return None;
    }
    Some(Locality {
        region: node.region.clone(),
        zone: node.zone.clone(),
        subzone: node.subzone.clone(),
    })
}

/// `""` for `cluster.local`, the trust domain otherwise.
pub fn pick_trust_domain(trust_domain: &str) -> String {
    if trust_domain == "cluster.local" {
        String::new()
    } else {
        trust_domain.to_string()
    }
}

/// Everything a pod's workload depends on besides the pod itself.
pub struct PodContext<'a> {
    pub settings: &'a Settings,
    pub network: &'a str,
    pub namespace: Option<&'a Namespace>,
    pub node: Option<&'a Node>,
    /// The Services this pod belongs to (selector match or EndpointSlice reference).
    pub services: Vec<&'a Service>,
    pub binding: Binding,
    pub application_tunnel: Option<wl::ApplicationTunnel>,
    /// Selector AuthorizationPolicies and PeerAuthentication keys, in istiod's order.
    pub authorization_policies: Vec<String>,
}

/// Builds the Workload for a pod; `None` when istiod would skip the pod.
pub fn build_pod_workload(ctx: PodContext<'_>, pod: &Pod) -> Option<wl::Workload> {
    if !has_workload(pod) {
        return None;
    }
    let settings = ctx.settings;
    let workload_name = workload_name(pod);
    let (canonical_name, canonical_revision) = canonical(&pod.meta.labels, &workload_name);
    let (tunnel_protocol, native_tunnel) = tunnel(settings, pod, ctx.namespace);
    let services: BTreeMap<String, PortList> = ctx
        .services
        .iter()
        .map(|svc| {
            (
                resource_name(&svc.meta.name, &svc.meta.namespace, &settings.domain_suffix),
                port_list(svc, pod),
            )
        })
        .collect();
    Some(wl::Workload {
        uid: pod_uid(&settings.cluster_id, &pod.meta.namespace, &pod.meta.name),
        name: pod.meta.name.clone(),
        namespace: pod.meta.namespace.clone(),
        addresses: pod.ips.iter().map(|ip| ip_bytes(*ip)).collect(),
        hostname: String::new(),
        network: ctx.network.to_string(),
        tunnel_protocol: tunnel_protocol as i32,
        trust_domain: pick_trust_domain(&settings.trust_domain),
        service_account: pod.service_account.clone(),
        waypoint: ctx.binding.waypoint,
        network_gateway: None,
        node: pod.node.clone(),
        canonical_name,
        canonical_revision,
        workload_type: WorkloadType::Pod as i32,
        workload_name,
        native_tunnel,
        application_tunnel: ctx.application_tunnel,
        services,
        authorization_policies: ctx.authorization_policies,
        status: if pod.ready && !pod.meta.deleting {
            WorkloadStatus::Healthy as i32
        } else {
            WorkloadStatus::Unhealthy as i32
        },
        cluster_id: settings.cluster_id.clone(),
        locality: locality(ctx.node),
        network_mode: if pod.host_network {
            NetworkMode::HostNetwork as i32
        } else {
            NetworkMode::Standard as i32
        },
        extensions: Vec::new(),
        capacity: None,
    })
}

/// Whether a slice takes part in docs/reference/istiod.md#workloads-from-endpointslices at all (label,
/// address type, existing usable Service).
pub fn slice_service<'a>(
    slice: &EndpointSlice,
    lookup_service: impl Fn(&str) -> Option<&'a Service>,
) -> Option<&'a Service> {
    if slice.address_type == "FQDN" {
        return None;
    }
    let svc = lookup_service(slice.service_name.as_deref()?)?;
    services::usable(svc).ok()?;
    Some(svc)
}

/// The workloads of an EndpointSlice's endpoints that have no Pod `targetRef`, keyed by uid.
pub fn build_slice_workloads(
    settings: &Settings,
    network: &str,
    slice: &EndpointSlice,
    svc: &Service,
) -> Vec<wl::Workload> {
    let ports: Vec<Port> = slice
        .ports
        .iter()
        .filter(|e| e.protocol == "TCP")
        .filter_map(|e| {
            let target = e.port?;
            let svc_port = svc.ports.iter().find(|p| p.name == e.name)?;
            Some(Port {
                service_port: u32::from(svc_port.port),
                target_port: u32::from(target),
                app_protocol: 0,
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let key = resource_name(&svc.meta.name, &svc.meta.namespace, &settings.domain_suffix);
    slice
        .endpoints
        .iter()
        .filter(|e| e.target_ref.as_ref().is_none_or(|r| r.kind != "Pod"))
        .filter_map(|e| {
            let first = e.addresses.first()?;
            if !seen.insert(first.clone()) {
                return None;
            }
            let addresses = e
                .addresses
                .iter()
                .map(|a| a.parse::<std::net::IpAddr>().map(ip_bytes))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some(wl::Workload {
                uid: slice_workload_uid(
                    &settings.cluster_id,
                    &slice.meta.namespace,
                    &slice.meta.name,
                    first,
                ),
                name: slice.meta.name.clone(),
                namespace: slice.meta.namespace.clone(),
                addresses,
                network: network.to_string(),
                trust_domain: pick_trust_domain(&settings.trust_domain),
                status: if e.ready == Some(false) {
                    WorkloadStatus::Unhealthy as i32
                } else {
                    WorkloadStatus::Healthy as i32
                },
                cluster_id: settings.cluster_id.clone(),
                network_mode: NetworkMode::HostNetwork as i32,
                services: BTreeMap::from([(
                    key.clone(),
                    PortList {
                        ports: ports.clone(),
                    },
                )]),
                ..Default::default()
            })
        })
        .collect()
}
