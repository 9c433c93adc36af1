//! Waypoints (docs/reference/istiod.md#waypoints-which-gateways-count and the waypoint sections after it):
//! which Gateways are waypoints, their address, traffic type and allowed routes, and the binding rules that
//! decide whether a pod or Service uses one.
//!
//! Everything here is a pure function of the objects passed in.

use std::net::IpAddr;

use ambient_proto::workload::{
    ApplicationTunnel, GatewayAddress, NamespacedHostname, NetworkAddress, application_tunnel,
    gateway_address,
};

use crate::model::well_known::{
    GATEWAY_NAME, INBOUND_BINDING, MANAGED, MANAGED_EAST_WEST, MANAGED_MESH, USE_WAYPOINT,
    USE_WAYPOINT_NAMESPACE, WAYPOINT_FOR,
};
use crate::model::{AllowedRoutes, Gateway, GatewayClass, Labels, StatusAddress};

use super::Condition;

/// The HBONE port of every waypoint (hard-coded in istiod).
pub const HBONE_PORT: u32 = 15008;

/// `istio.io/waypoint-for`: which traffic a waypoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficType {
    Service,
    Workload,
    All,
    /// `none`, and any value istiod does not know.
    None,
}

impl TrafficType {
    fn parse(value: &str) -> TrafficType {
        match value {
            "service" => TrafficType::Service,
            "workload" => TrafficType::Workload,
            "all" => TrafficType::All,
            _ => TrafficType::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Service => "service",
            TrafficType::Workload => "workload",
            TrafficType::All => "all",
            TrafficType::None => "none",
        }
    }

    fn accepts_service(self) -> bool {
        matches!(self, TrafficType::Service | TrafficType::All)
    }

    fn accepts_workload(self) -> bool {
        matches!(self, TrafficType::Workload | TrafficType::All)
    }
}

/// `ambient.istio.io/waypoint-inbound-binding`: `PROXY[/port]` or `NONE[/port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundBinding {
    pub proxy: bool,
    pub port: u16,
}

impl InboundBinding {
    /// `PROTOCOL` or `PROTOCOL/PORT`; a port that does not parse counts as 0, as in istiod.
    fn parse(value: &str) -> Option<InboundBinding> {
        let mut parts = value.split('/');
        let proto = parts.next()?;
        let port = parts.next().map_or(0, |p| p.parse::<u16>().unwrap_or(0));
        if parts.next().is_some() {
            return None;
        }
        match proto {
            "PROXY" => Some(InboundBinding { proxy: true, port }),
            "NONE" => Some(InboundBinding { proxy: false, port }),
            _ => None,
        }
    }
}

/// A Gateway that acts as a waypoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoint {
    pub namespace: String,
    pub name: String,
    /// Hostname form when the Gateway reports a Hostname address, else the first valid IP; `None` when
    /// the status holds neither (istiod still treats the Gateway as a waypoint, with no address).
    pub address: Option<GatewayAddress>,
    pub traffic_type: TrafficType,
    pub allowed_routes: AllowedRoutes,
    pub inbound_binding: Option<InboundBinding>,
}

impl Waypoint {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The `application_tunnel` an instance of this waypoint advertises, if any.
    pub fn application_tunnel(&self) -> Option<ApplicationTunnel> {
        let b = self.inbound_binding?;
        let protocol = if b.proxy {
            application_tunnel::Protocol::Proxy
        } else {
            application_tunnel::Protocol::None
        };
        Some(ApplicationTunnel {
            protocol: protocol as i32,
            port: u32::from(b.port),
        })
    }

    /// Whether a client in `namespace` (with `namespace_labels`) may use this waypoint.
    pub fn allows(&self, namespace: &str, namespace_labels: Option<&Labels>) -> bool {
        match &self.allowed_routes {
            AllowedRoutes::All => true,
            AllowedRoutes::Same => namespace == self.namespace,
            AllowedRoutes::Selector(sel) => namespace_labels.is_some_and(|l| sel.matches(l)),
        }
    }
}

/// Builds the waypoint for a Gateway, or `None` when the Gateway is not one (no status addresses).
///
/// Any Gateway with status addresses is a waypoint; the class is not checked
/// (docs/reference/istiod.md#waypoints-which-gateways-count).
pub fn waypoint_for_gateway(
    gw: &Gateway,
    class: Option<&GatewayClass>,
    network: &str,
) -> Option<Waypoint> {
    if gw.addresses.is_empty() {
        return None;
    }
    let address = gateway_address(gw, network);
    let traffic_type = gw
        .meta
        .labels
        .get(WAYPOINT_FOR)
        .or_else(|| class.and_then(|c| c.meta.labels.get(WAYPOINT_FOR)))
        .map_or(TrafficType::Service, TrafficType::parse);
    let inbound_binding = gw
        .meta
        .annotations
        .get(INBOUND_BINDING)
        .or_else(|| class.and_then(|c| c.meta.annotations.get(INBOUND_BINDING)))
        .and_then(InboundBinding::parse);
    let bound_listener = inbound_binding.and_then(|b| {
        if b.port != 0 {
            gw.listeners.iter().find(|l| l.port == i32::from(b.port))
        } else if b.proxy {
            gw.listeners.iter().find(|l| l.protocol == "istio.io/PROXY")
        } else {
            None
        }
    });
    let listener = bound_listener.or_else(|| {
        gw.listeners
            .iter()
            .find(|l| l.protocol == "HBONE" && l.port == HBONE_PORT as i32)
    });
    Some(Waypoint {
        namespace: gw.meta.namespace.clone(),
        name: gw.meta.name.clone(),
        address,
        traffic_type,
        allowed_routes: listener
            .map(|l| l.allowed_routes.clone())
            .unwrap_or_default(),
        inbound_binding,
    })
}

fn gateway_address(gw: &Gateway, network: &str) -> Option<GatewayAddress> {
    let hostname = gw.addresses.iter().find_map(|a| match a {
        StatusAddress::Hostname(h) if !h.is_empty() => Some(h),
        _ => None,
    });
    let destination = if let Some(h) = hostname {
        gateway_address::Destination::Hostname(NamespacedHostname {
            namespace: gw.meta.namespace.clone(),
            hostname: h.clone(),
        })
    } else {
        let ip = gw.addresses.iter().find_map(|a| match a {
            StatusAddress::Ip(ip) => ip.parse::<IpAddr>().ok(),
            _ => None,
        })?;
        gateway_address::Destination::Address(NetworkAddress {
            network: network.to_string(),
            address: ip_bytes(ip),
            length: None,
        })
    };
    Some(GatewayAddress {
        destination: Some(destination),
        hbone_mtls_port: HBONE_PORT,
    })
}

pub(crate) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// What an object's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `istio.io/use-waypoint: none`: explicit opt-out.
    Opt,
    /// A waypoint `namespace/name`.
    Named { namespace: String, name: String },
}

impl Request {
    /// Reads `use-waypoint` (and `use-waypoint-namespace` from the same object); `default_namespace` is
    /// the namespace of the object being bound.
    pub fn from_labels(labels: &Labels, default_namespace: &str) -> Option<Request> {
        let name = labels.get(USE_WAYPOINT)?;
        if name == "none" {
            return Some(Request::Opt);
        }
        let namespace = labels
            .get(USE_WAYPOINT_NAMESPACE)
            .filter(|n| !n.is_empty())
            .unwrap_or(default_namespace);
        Some(Request::Named {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    pub fn key(&self) -> Option<String> {
        match self {
            Request::Opt => None,
            Request::Named { namespace, name } => Some(format!("{namespace}/{name}")),
        }
    }
}

/// Whether a Service is a managed gateway's (waypoint or east-west) and so never gets a waypoint itself.
pub fn is_managed_gateway(labels: &Labels) -> bool {
    matches!(
        labels.get(MANAGED),
        Some(MANAGED_MESH) | Some(MANAGED_EAST_WEST)
    )
}

/// The waypoint a pod is an instance of (`gateway.networking.k8s.io/gateway-name` in its namespace).
pub fn instance_of(labels: &Labels, namespace: &str) -> Option<String> {
    labels
        .get(GATEWAY_NAME)
        .filter(|n| !n.is_empty())
        .map(|n| format!("{namespace}/{n}"))
}

/// The target of a binding: the traffic type it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Workload,
    Service,
}

/// The result of binding one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Binding {
    pub waypoint: Option<GatewayAddress>,
    /// The bound waypoint's key, when bound.
    pub bound_to: Option<String>,
    /// The `istio.io/WaypointBound` condition: `True` when bound, `False` with a reason when refused,
    /// `None` when no waypoint was asked for (or a namespace default silently did not apply).
    pub condition: Option<Condition>,
}

pub const CONDITION_TYPE: &str = "istio.io/WaypointBound";

fn refused(reason: &str, message: String) -> Binding {
    Binding {
        waypoint: None,
        bound_to: None,
        condition: Some(Condition::new(CONDITION_TYPE, false, reason, message)),
    }
}

/// Binds an object (its labels, namespace and its Namespace's labels) to a waypoint, following the precedence
/// of docs/reference/istiod.md#waypoints-binding-precedence and the traffic-type filter of
/// docs/reference/istiod.md#waypoints-traffic-type. The instance check is the caller's (it decides between
/// this and [`Waypoint::application_tunnel`]).
pub fn bind<'a>(
    target: Target,
    labels: &Labels,
    namespace: &str,
    namespace_labels: Option<&Labels>,
    lookup: impl Fn(&str) -> Option<&'a Waypoint>,
) -> Binding {
    if target == Target::Service && is_managed_gateway(labels) {
        return Binding::default();
    }
    let (request, inherited) = match Request::from_labels(labels, namespace) {
        Some(r) => (r, false),
        None => match namespace_labels.and_then(|l| Request::from_labels(l, namespace)) {
            Some(r) => (r, true),
            None => return Binding::default(),
        },
    };
    let Request::Named { .. } = &request else {
        return Binding::default();
    };
    let key = request.key().unwrap_or_default();
    let Some(wp) = lookup(&key) else {
        return refused(
            "WaypointIsNotReady",
            format!("waypoint {key:?} is not ready"),
        );
    };
    if !wp.allows(namespace, namespace_labels) {
        return refused(
            "AttachmentDenied",
            format!("we are not permitted to attach to waypoint {key:?} (missing allowedRoutes?)"),
        );
    }
    let accepted = match target {
        Target::Workload => wp.traffic_type.accepts_workload(),
        Target::Service => wp.traffic_type.accepts_service(),
    };
    if !accepted {
        if inherited && target == Target::Workload {
            return Binding::default();
        }
        let kind = match target {
            Target::Workload => "workload",
            Target::Service => "service",
        };
        return refused(
            "UnsupportedTrafficType",
            format!(
                "attempting to bind to traffic type {kind:?} which the waypoint {key:?} does not support"
            ),
        );
    }
    Binding {
        waypoint: wp.address.clone(),
        bound_to: Some(key.clone()),
        condition: Some(Condition::new(
            CONDITION_TYPE,
            true,
            "WaypointAccepted",
            format!("Successfully attached to waypoint {key}"),
        )),
    }
}
