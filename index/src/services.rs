//! Kubernetes Service → `istio.workload.Service` (docs/reference/istiod.md#services), and the app-protocol
//! rules shared with the workload `services` map.

use std::net::IpAddr;

use ambient_proto::workload::{
    self as wl, AppProtocol, IpFamilies, LoadBalancing, NetworkAddress, Port, load_balancing,
};

use crate::model::well_known::{INGRESS_USE_WAYPOINT, TRAFFIC_DISTRIBUTION};
use crate::model::{Labels, Namespace, Service, TargetPort};

use super::Settings;
use super::waypoints::{Binding, ip_bytes};

/// Why a Service yields no `istio.workload.Service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `type: ExternalName`.
    ExternalName,
    /// A cluster IP that does not parse; istiod drops the Service with a warning.
    BadClusterIp(String),
}

/// `<name>.<namespace>.svc.<domain suffix>`.
pub fn hostname(name: &str, namespace: &str, domain_suffix: &str) -> String {
    format!("{name}.{namespace}.svc.{domain_suffix}")
}

/// The resource name and `services` map key of a Service: `<namespace>/<hostname>`.
pub fn resource_name(name: &str, namespace: &str, domain_suffix: &str) -> String {
    format!("{namespace}/{}", hostname(name, namespace, domain_suffix))
}

/// The parsed cluster IPs of a Service (`""` and `None` removed).
pub fn cluster_ips(svc: &Service) -> Result<Vec<IpAddr>, Skip> {
    svc.cluster_ips
        .iter()
        .filter(|ip| !ip.is_empty() && ip.as_str() != "None")
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|_| Skip::BadClusterIp(ip.clone()))
        })
        .collect()
}

/// Whether the index uses this Service at all (for addresses and for pods' `services` maps).
pub fn usable(svc: &Service) -> Result<(), Skip> {
    if svc.external_name {
        return Err(Skip::ExternalName);
    }
    cluster_ips(svc).map(|_| ())
}

/// istio's `ConvertProtocol` followed by the mapping to the workload API's `AppProtocol`.
pub fn app_protocol(
    port: u16,
    port_name: &str,
    protocol: &str,
    app_protocol: Option<&str>,
) -> AppProtocol {
    if protocol == "UDP" {
        return AppProtocol::Unknown;
    }
    let name = match app_protocol {
        Some("kubernetes.io/h2c") => return AppProtocol::Http2,
        Some("kubernetes.io/ws") => return AppProtocol::Http11,
        Some("kubernetes.io/wss") => return AppProtocol::Tls,
        Some(p) => p,
        None => port_name,
    };
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-web") {
        return AppProtocol::Unknown;
    }
    let prefix = lower.split('-').next().unwrap_or_default();
    match prefix {
        "http" => AppProtocol::Http11,
        "http2" => AppProtocol::Http2,
        "grpc" => AppProtocol::Grpc,
        "tls" | "https" => AppProtocol::Tls,
        "tcp" => AppProtocol::Tcp,
        // Known to istio but not to the workload API.
        "udp" | "http_proxy" | "mongo" | "redis" | "mysql" => AppProtocol::Unknown,
        // Unsupported names on well-known TCP ports are taken as TCP.
        _ if matches!(port, 25 | 53 | 3306 | 27017) => AppProtocol::Tcp,
        _ => AppProtocol::Unknown,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Distribution {
    Any,
    SameZone,
    SameNode,
}

/// `spec.trafficDistribution` (exact) > Service annotation > Namespace annotation (case-insensitive).
/// An annotation with an unknown value stops the search (istiod warns and uses no preference).
fn traffic_distribution(svc: &Service, namespace: Option<&Namespace>) -> Distribution {
    match svc.traffic_distribution.as_deref() {
        Some("PreferClose" | "PreferSameZone") => return Distribution::SameZone,
        Some("PreferSameNode") => return Distribution::SameNode,
        _ => {}
    }
    let annotation = svc
        .meta
        .annotations
        .get(TRAFFIC_DISTRIBUTION)
        .or_else(|| namespace.and_then(|n| n.meta.annotations.get(TRAFFIC_DISTRIBUTION)));
    match annotation.map(str::to_ascii_lowercase).as_deref() {
        Some("preferclose" | "prefersamezone") => Distribution::SameZone,
        Some("prefersamenode") => Distribution::SameNode,
        _ => Distribution::Any,
    }
}

fn load_balancing(svc: &Service, namespace: Option<&Namespace>) -> Option<LoadBalancing> {
    use load_balancing::{HealthPolicy, Mode, Scope};
    let mut lb = if svc.internal_traffic_local {
        Some(LoadBalancing {
            routing_preference: vec![Scope::Node as i32],
            mode: Mode::Strict as i32,
            health_policy: 0,
        })
    } else {
        let scopes: Option<&[Scope]> = match traffic_distribution(svc, namespace) {
            Distribution::SameZone => Some(&[Scope::Network, Scope::Region, Scope::Zone]),
            Distribution::SameNode => Some(&[
                Scope::Network,
                Scope::Region,
                Scope::Zone,
                Scope::Subzone,
                Scope::Node,
            ]),
            Distribution::Any => None,
        };
        scopes.map(|s| LoadBalancing {
            routing_preference: s.iter().map(|s| *s as i32).collect(),
            mode: Mode::Failover as i32,
            health_policy: 0,
        })
    };
    if svc.publish_not_ready {
        lb.get_or_insert_with(LoadBalancing::default).health_policy = HealthPolicy::AllowAll as i32;
    }
    lb
}

fn ip_families(svc: &Service) -> IpFamilies {
    match svc.ip_families.as_slice() {
        [_, _, ..] => IpFamilies::Dual,
        [one] if one == "IPv6" => IpFamilies::Ipv6Only,
        [_] => IpFamilies::Ipv4Only,
        [] => IpFamilies::Automatic,
    }
}

/// `istio.io/ingress-use-waypoint` from the Service, else its Namespace (Go `ParseBool` values).
fn ingress_use_waypoint(labels: &Labels, namespace: Option<&Namespace>) -> bool {
    let value = labels
        .get(INGRESS_USE_WAYPOINT)
        .or_else(|| namespace.and_then(|n| n.meta.labels.get(INGRESS_USE_WAYPOINT)));
    matches!(value, Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The suffix istiod adds to a bound Service's `WaypointBound` message about ingress traffic.
pub fn ingress_message_suffix(labels: &Labels, namespace: Option<&Namespace>) -> &'static str {
    let present = labels.contains_key(INGRESS_USE_WAYPOINT)
        || namespace.is_some_and(|n| n.meta.labels.contains_key(INGRESS_USE_WAYPOINT));
    if ingress_use_waypoint(labels, namespace) {
        ". Ingress traffic will traverse the waypoint"
    } else if present {
        ". Ingress traffic is not using the waypoint, set the istio.io/ingress-use-waypoint label to true if desired."
    } else {
        ""
    }
}

/// Builds the `istio.workload.Service` for a Kubernetes Service.
pub fn build_service(
    settings: &Settings,
    network: &str,
    svc: &Service,
    namespace: Option<&Namespace>,
    binding: &Binding,
) -> Result<wl::Service, Skip> {
    usable(svc)?;
    let addresses = cluster_ips(svc)?
        .into_iter()
        .map(|ip| NetworkAddress {
            network: network.to_string(),
            address: ip_bytes(ip),
            length: None,
        })
        .collect();
    let ports = svc
        .ports
        .iter()
        .map(|p| Port {
            service_port: u32::from(p.port),
            target_port: match p.target_port {
                TargetPort::Number(n) => u32::from(n),
                TargetPort::Name(_) => 0,
            },
            app_protocol: app_protocol(p.port, &p.name, &p.protocol, p.app_protocol.as_deref())
                as i32,
        })
        .collect();
    let bound = binding.waypoint.is_some();
    Ok(wl::Service {
        name: svc.meta.name.clone(),
        namespace: svc.meta.namespace.clone(),
        hostname: hostname(&svc.meta.name, &svc.meta.namespace, &settings.domain_suffix),
        addresses,
        ports,
        subject_alt_names: Vec::new(),
        waypoint: binding.waypoint.clone(),
        load_balancing: load_balancing(svc, namespace),
        ip_families: ip_families(svc) as i32,
        extensions: Vec::new(),
        canonical: true,
        ingress_use_waypoint: bound && ingress_use_waypoint(&svc.meta.labels, namespace),
        weighted_waypoints: Vec::new(),
        visibility: 0,
    })
}
