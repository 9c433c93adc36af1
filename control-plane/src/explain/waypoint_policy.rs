//! Waypoint AuthorizationPolicies (with targetRefs): each target, whether it is bound to a waypoint and
//! what to do when it is not, and the block that reports the policy.

use std::collections::BTreeSet;

use ambient_index::Index;
use ambient_index::authorization::{EnforcedBy, is_waypoint_policy};
use ambient_index::model::AuthorizationPolicy;
use ambient_index::model::istio::{Action, PolicyTargetReference};
use ambient_index::views::WorkloadRef;

use super::block::Block;
use super::policy::PolicyFacts;
use super::text::{condition_text, count, join_and, names_of};
use super::waypoints::{MESH_CONTROLLER, is_waypoint_class, unbound_service};

pub(super) fn waypoint_policy_block(index: &Index, policy: &AuthorizationPolicy) -> Block {
    let ns = &policy.meta.namespace;
    let name = format!("{ns}/{}", policy.meta.name);
    let mut b = Block::new("AuthorizationPolicy", name.clone());
    let targets = targets(index, policy);
    let action = match Action::parse(policy.spec.action.as_deref()) {
        Ok(a) => a.as_str().to_string(),
        Err(unknown) => format!("{unknown:?} (not an action)"),
    };
    let listed: Vec<String> = targets.iter().map(Target::describe).collect();
    b.field(
        "Kind",
        format!(
            "waypoint policy (targetRefs: {}), action {action}",
            listed.join(", ")
        ),
    );
    b.field(
        "ztunnel gets",
        "nothing: a policy with targetRefs is for waypoints only.",
    );
    let lines: Vec<String> = targets.iter().map(|t| t.status_text(ns)).collect();
    b.field("Targets", lines.join("\n"));
    if let Some(c) = index.waypoint_policy_condition(policy) {
        b.field("Condition", condition_text(&c));
    }
    let enforcers: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| t.enforcer.as_deref())
        .collect();
    let enforcers: Vec<&str> = enforcers.into_iter().collect();
    b.field(
        "Enforced by",
        if enforcers.is_empty() {
            format!(
                "{}, once a target is bound to one; none is yet, so nothing enforces it.",
                EnforcedBy::Waypoint.as_str()
            )
        } else {
            join_and(&enforcers)
        },
    );
    let mut todo: Vec<String> = targets.iter().filter_map(|t| t.fix.clone()).collect();
    let unbound = todo.len();
    if todo.is_empty() {
        todo.push(format!(
            "Nothing: {} enforces it for {}.",
            join_and(&enforcers),
            join_and(&targets.iter().map(Target::traffic).collect::<Vec<_>>())
        ));
    }
    let replaced: Vec<String> = index
        .authorization_policies()
        .filter(|p| p.meta.namespace == *ns && !is_waypoint_policy(&p.spec))
        .filter_map(|p| {
            let facts = PolicyFacts::new(index, p);
            let needs = !facts.http.is_empty()
                || matches!(facts.action, Ok(Action::Audit | Action::Custom));
            let twin = facts.twin().filter(|t| needs && t.name == name)?;
            Some(if twin.same_rules && twin.same_workloads {
                format!(
                    "The selector policy {} has the same rules and still applies at ztunnel: \
                     delete it (see its entry).",
                    facts.name
                )
            } else {
                format!(
                    "It stands in for the selector policy {}: compare the two, then delete {} \
                     (see its entry).",
                    facts.name, facts.name
                )
            })
        })
        .collect();
    todo.extend(replaced);
    b.field("To do", todo.join(" "));
    b.verdict = if enforcers.is_empty() {
        "not enforced: no target is bound to a waypoint".to_string()
    } else if unbound > 0 {
        format!("enforced by {} for some targets only", join_and(&enforcers))
    } else {
        format!("enforced by {}", join_and(&enforcers))
    };
    b
}

/// One `targetRef`/`targetRefs` entry and what it reaches.
pub(super) struct Target {
    kind: String,
    namespace: String,
    name: String,
    /// `waypoint ns/name` (or the Gateway) that enforces the policy for this target, when bound.
    pub(super) enforcer: Option<String>,
    /// Why it is not bound, and what to do; `None` when bound.
    fix: Option<String>,
    /// Why it is not bound, in a few words.
    problem: Option<String>,
    /// The workloads behind a Service target.
    pub(super) workloads: Vec<WorkloadRef>,
}

impl Target {
    pub(super) fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// The traffic a waypoint policy applies to through this target.
    fn traffic(&self) -> String {
        match self.kind.as_str() {
            "Service" => format!("traffic addressed to {}", self.describe()),
            "GatewayClass" => format!("all traffic through the waypoints of class {}", self.name),
            _ => format!("all traffic through {}", self.describe()),
        }
    }

    fn status_text(&self, policy_namespace: &str) -> String {
        let mut text = self.describe();
        match (&self.enforcer, &self.problem) {
            (Some(e), _) => text.push_str(&format!(": enforced at {e}, for {}.", self.traffic())),
            (None, Some(p)) => text.push_str(&format!(": {p}.")),
            (None, None) => text.push_str(": not bound."),
        }
        if self.kind == "Service" && !self.workloads.is_empty() {
            text.push_str(&format!(
                " The Service selects {}: {}.",
                count(self.workloads.len(), "workload", "workloads"),
                names_of(&self.workloads, policy_namespace)
            ));
        }
        text
    }
}

pub(super) fn targets(index: &Index, policy: &AuthorizationPolicy) -> Vec<Target> {
    let spec = &policy.spec;
    spec.target_ref
        .iter()
        .chain(&spec.target_refs)
        .map(|t| target(index, policy, t))
        .collect()
}

fn target(index: &Index, policy: &AuthorizationPolicy, t: &PolicyTargetReference) -> Target {
    let root = &index.settings().root_namespace;
    let namespace = if t.kind == "GatewayClass" {
        String::new()
    } else if t.namespace.is_empty() {
        policy.meta.namespace.clone()
    } else {
        t.namespace.clone()
    };
    let mut out = Target {
        kind: t.kind.clone(),
        namespace: namespace.clone(),
        name: t.name.clone(),
        enforcer: None,
        fix: None,
        problem: None,
        workloads: Vec::new(),
    };
    let key = format!("{namespace}/{}", t.name);
    let (problem, fix) = match t.kind.as_str() {
        "Service" => {
            out.workloads = index.service_workloads(&namespace, &t.name);
            match index.service_binding(&namespace, &t.name) {
                None => (
                    "the Service does not exist".to_string(),
                    format!("Create Service {key} or fix targetRefs."),
                ),
                Some(binding) => match &binding.bound_to {
                    Some(wp) => {
                        out.enforcer = Some(format!("waypoint {wp}"));
                        return out;
                    }
                    None => unbound_service(index, &namespace, &t.name, &binding),
                },
            }
        }
        "Gateway" => match (
            index.gateway(&namespace, &t.name),
            index.waypoint(&namespace, &t.name),
        ) {
            (Some(gw), Some(_)) => {
                out.enforcer = Some(if is_waypoint_class(index, &gw.class) {
                    format!("waypoint {key}")
                } else {
                    format!("Gateway {key} (class {})", gw.class)
                });
                return out;
            }
            (Some(_), None) => (
                "the Gateway is not ready (no status addresses)".to_string(),
                format!("Wait for Gateway {key} to be programmed, or check why it is not."),
            ),
            (None, _) => (
                "the Gateway does not exist".to_string(),
                format!("Create Gateway {key} or fix targetRefs."),
            ),
        },
        "GatewayClass" => match index.gateway_class(&t.name) {
            _ if policy.meta.namespace != *root => (
                format!("a policy naming a GatewayClass must be in the root namespace {root}"),
                format!("Move the policy to {root}."),
            ),
            None => (
                "the GatewayClass does not exist".to_string(),
                format!("Create GatewayClass {} or fix targetRefs.", t.name),
            ),
            Some(c) if c.controller != MESH_CONTROLLER => (
                format!("the GatewayClass's controller is not {MESH_CONTROLLER}"),
                format!("Name a waypoint class (controller {MESH_CONTROLLER}) instead."),
            ),
            Some(_) => {
                out.enforcer = Some(format!("every waypoint of class {}", t.name));
                return out;
            }
        },
        other => (
            format!("{other:?} is not a kind a waypoint policy can target"),
            "Target a Service, a Gateway or a GatewayClass.".to_string(),
        ),
    };
    out.problem = Some(problem);
    out.fix = Some(fix);
    out
}
