//! HTTPRoute analysis: who serves each parent (the Service's waypoint, a waypoint Gateway or an ordinary
//! Gateway), the rules' backends, and the block that reports the route.

use ambient_index::Index;
use ambient_index::model::{HttpRoute, ParentReference};

use super::block::Block;
use super::text::{count, join_and};
use super::waypoints::{is_waypoint_class, unbound_service};

pub(super) fn route_block(index: &Index, route: &HttpRoute) -> Block {
    let ns = &route.meta.namespace;
    let mut b = Block::new("HTTPRoute", format!("{ns}/{}", route.meta.name));
    let parents = &route.spec.parent_refs;
    let mut todo: Vec<String> = Vec::new();
    let mut verdicts: Vec<String> = Vec::new();
    if parents.is_empty() {
        b.field(
            "Parent",
            "none: a route without parentRefs attaches to nothing.",
        );
        todo.push("Add a parentRef (a Gateway, or a Service for mesh traffic).".to_string());
        verdicts.push("attached to nothing".to_string());
    }
    for parent in parents {
        let p = parent_analysis(index, ns, parent);
        b.field("Parent", p.text);
        todo.extend(p.todo);
        verdicts.push(p.verdict);
    }
    b.field("Rules", rules_text(route));
    if todo.is_empty() {
        todo.push("Nothing.".to_string());
    }
    b.field("To do", todo.join(" "));
    b.verdict = verdicts.join("; ");
    b
}

struct Parent {
    text: String,
    todo: Option<String>,
    verdict: String,
}

fn parent_analysis(index: &Index, route_ns: &str, parent: &ParentReference) -> Parent {
    let group = parent
        .group
        .as_deref()
        .unwrap_or("gateway.networking.k8s.io");
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    let ns = parent.namespace.as_deref().unwrap_or(route_ns);
    let name = &parent.name;
    let key = format!("{ns}/{name}");
    let mut place = String::new();
    if let Some(port) = parent.port {
        place.push_str(&format!(", port {port}"));
    }
    if let Some(section) = &parent.section_name {
        place.push_str(&format!(", section {section}"));
    }
    match (group, kind) {
        ("" | "core", "Service") => {
            let head = format!(
                "Service {key}{place}. Without sidecars, only a waypoint applies a route attached \
                 to a Service, so this route needs a waypoint for {key}."
            );
            match index.service_binding(ns, name) {
                None => Parent {
                    text: format!("{head} The Service does not exist."),
                    todo: Some(format!("Create Service {key} or fix parentRefs.")),
                    verdict: format!("Service {key} does not exist"),
                },
                Some(binding) => match &binding.bound_to {
                    Some(wp) => Parent {
                        text: format!(
                            "{head} The Service is bound to waypoint {wp}, which serves the route."
                        ),
                        todo: None,
                        verdict: format!("served by waypoint {wp}"),
                    },
                    None => {
                        let (problem, fix) = unbound_service(index, ns, name, &binding);
                        Parent {
                            text: format!(
                                "{head} The Service is {problem}, so nothing applies the route to \
                                 traffic from clients without sidecars."
                            ),
                            todo: Some(fix),
                            verdict: format!("needs a waypoint for Service {key}"),
                        }
                    }
                },
            }
        }
        ("gateway.networking.k8s.io", "Gateway") => match index.gateway(ns, name) {
            None => Parent {
                text: format!("Gateway {key}{place}, which is not in this configuration."),
                todo: Some(format!(
                    "Check parentRefs: Gateway {key} is not among the objects read."
                )),
                verdict: format!("Gateway {key} not found"),
            },
            Some(gw) if is_waypoint_class(index, &gw.class) => match index.waypoint(ns, name) {
                Some(_) => Parent {
                    text: format!(
                        "Gateway {key}{place}, a waypoint (class {}). The route is served by \
                         waypoint {key}, for the traffic that goes through it.",
                        gw.class
                    ),
                    todo: None,
                    verdict: format!("served by waypoint {key}"),
                },
                None => Parent {
                    text: format!(
                        "Gateway {key}{place}, a waypoint (class {}) that is not ready (no status \
                         addresses): nothing serves the route yet.",
                        gw.class
                    ),
                    todo: Some(format!(
                        "Wait for waypoint {key} to be programmed, or check why it is not."
                    )),
                    verdict: format!("waypoint {key} is not ready"),
                },
            },
            Some(gw) => Parent {
                text: format!(
                    "Gateway {key}{place}. The route is served by the Gateway {key} (class {}), \
                     not a waypoint; ambient needs nothing more for it.",
                    gw.class
                ),
                todo: None,
                verdict: format!("served by Gateway {key}, not a waypoint"),
            },
        },
        _ => Parent {
            text: format!(
                "{kind} {key}{place} (group {group:?}): ambientd does not know this kind of \
                 parent, so this report cannot say who serves it."
            ),
            todo: None,
            verdict: format!("parent {kind} {key} not analysed"),
        },
    }
}

fn rules_text(route: &HttpRoute) -> String {
    let ns = &route.meta.namespace;
    let mut seen: Vec<String> = Vec::new();
    for rule in &route.spec.rules {
        let backends = &rule.backend_refs;
        for b in backends {
            let backend = &b.backend;
            let kind = backend.kind.as_deref().unwrap_or("Service");
            let mut text = match backend.namespace.as_deref() {
                Some(other) if other != ns => format!("{other}/{}", backend.name),
                _ => backend.name.clone(),
            };
            if kind != "Service" {
                text = format!("{kind} {text}");
            }
            if let Some(port) = backend.port {
                text.push_str(&format!(":{port}"));
            }
            if backends.len() > 1 {
                text.push_str(&format!(" (weight {})", b.weight.unwrap_or(1)));
            }
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
    }
    let n = route.spec.rules.len();
    if n == 0 {
        return "none.".to_string();
    }
    let rules = count(n, "rule", "rules");
    if seen.is_empty() {
        return format!("{rules}, with no backends.");
    }
    format!("{rules}, sending traffic to {}.", join_and(&seen))
}
