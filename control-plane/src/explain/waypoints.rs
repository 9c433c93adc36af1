//! Waypoint lookups shared by the policy and route analyses: which Gateways are waypoints, the waypoint
//! of a namespace, and why a Service is not bound to one.

use ambient_index::Index;
use ambient_index::model::well_known::USE_WAYPOINT;
use ambient_index::waypoints::{Binding, Request};

/// The controller of waypoint GatewayClasses.
pub(super) const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
/// The class `istioctl waypoint apply` uses.
const WAYPOINT_CLASS: &str = "istio-waypoint";

/// Whether a Gateway of class `class` is a waypoint: the class's controller is the mesh controller
/// (or, when the class is not in the configuration, it is `istio-waypoint`).
pub(super) fn is_waypoint_class(index: &Index, class: &str) -> bool {
    match index.gateway_class(class) {
        Some(c) => c.controller == MESH_CONTROLLER,
        None => class == WAYPOINT_CLASS,
    }
}

/// The name of a ready waypoint Gateway in `namespace`, preferring one called `waypoint`.
pub(super) fn waypoint_in(index: &Index, namespace: &str) -> Option<String> {
    let mut names: Vec<&str> = index
        .gateways()
        .into_iter()
        .filter(|g| g.meta.namespace == namespace && is_waypoint_class(index, &g.class))
        .filter(|g| index.waypoint(namespace, &g.meta.name).is_some())
        .map(|g| g.meta.name.as_str())
        .collect();
    names.sort_by_key(|n| (*n != "waypoint", *n));
    names.first().map(|n| n.to_string())
}

/// Why Service `namespace/name` is not bound, and what to do: `(problem, fix)`.
pub(super) fn unbound_service(
    index: &Index,
    namespace: &str,
    name: &str,
    binding: &Binding,
) -> (String, String) {
    let key = format!("{namespace}/{name}");
    if let Some(c) = binding.condition.as_ref().filter(|c| !c.status) {
        let requested = index
            .service(namespace, name)
            .and_then(|s| Request::from_labels(&s.meta.labels, namespace))
            .or_else(|| {
                index
                    .namespace(namespace)
                    .and_then(|n| Request::from_labels(&n.meta.labels, namespace))
            })
            .and_then(|r| r.key())
            .unwrap_or_default();
        let fix = match c.reason.as_str() {
            "WaypointIsNotReady" => format!(
                "Deploy waypoint {requested} (or wait until it has an address), or fix the \
                 {USE_WAYPOINT} label that names it."
            ),
            "AttachmentDenied" => format!(
                "Allow namespace {namespace} in the allowedRoutes of waypoint {requested}'s HBONE \
                 listener, or use a waypoint in {namespace}."
            ),
            "UnsupportedTrafficType" => format!(
                "Label waypoint {requested} istio.io/waypoint-for=service (or all), or bind Service \
                 {key} to a waypoint that accepts Service traffic."
            ),
            _ => format!("Fix what the condition says, so that Service {key} binds to a waypoint."),
        };
        return (
            format!(
                "not bound ({}, reason {}: {})",
                c.type_, c.reason, c.message
            ),
            fix,
        );
    }
    let problem = "not bound to a waypoint".to_string();
    let fix = match waypoint_in(index, namespace) {
        Some(wp) => {
            format!("Label Service {key} (or namespace {namespace}) with {USE_WAYPOINT}={wp}.")
        }
        None => format!(
            "Deploy a waypoint for {namespace} (istioctl waypoint apply -n {namespace} \
             --enroll-namespace), or label Service {key} with {USE_WAYPOINT} naming an existing \
             waypoint."
        ),
    };
    (problem, fix)
}
