//! What to do about a selector, namespace or mesh-wide AuthorizationPolicy that ztunnel cannot enforce
//! as written: the advice and summary verdict, moving the policy to a waypoint, and the waypoint
//! policy (its twin) that already stands in for it.

use ambient_index::Index;
use ambient_index::authorization::{self, EnforcedBy, is_waypoint_policy};
use ambient_index::model::Labels;
use ambient_index::model::istio::Action;
use ambient_index::model::well_known::{DRY_RUN, USE_WAYPOINT};
use ambient_index::views::WorkloadRef;

use super::policy::{PolicyFacts, Scope};
use super::text::http_list;
use super::waypoint_policy::targets;
use super::waypoints::waypoint_in;

impl PolicyFacts<'_> {
    /// What to do, and the summary verdict.
    pub(super) fn advice(&self) -> (String, String) {
        let n = self.workloads.len();
        let these = match n {
            1 => "this workload".to_string(),
            _ => format!("these {n} workloads"),
        };
        let uncaptured = n - self.captured();
        let capture_note = if self.sent && uncaptured > 0 {
            format!(
                " {} not captured by ztunnel, which enforces nothing there: enroll {} in ambient \
                 (istio.io/dataplane-mode=ambient) for the policy to apply.",
                match uncaptured {
                    1 => "1 of the workloads is".to_string(),
                    k => format!("{k} of the workloads are"),
                },
                if uncaptured == 1 { "it" } else { "them" }
            )
        } else {
            String::new()
        };
        // What ztunnel does wrong, and that problem in a few words; the fix (a waypoint) follows.
        let (todo, problem) = match (&self.action, self.enforced_by) {
            (Err(_), _) => {
                return (
                    "Fix spec.action: it must be ALLOW, DENY, AUDIT or CUSTOM. Until then nothing \
                     enforces the policy."
                        .to_string(),
                    "invalid action: nothing enforces it".to_string(),
                );
            }
            (_, EnforcedBy::DryRun) => return self.dry_run_advice(),
            (_, EnforcedBy::Ztunnel) if self.scope == Scope::EmptySelector => {
                return (
                    "Add matchLabels to the selector, or remove the selector to apply the policy \
                     to every workload of the namespace: as it is, ztunnel attaches it to no \
                     workload."
                        .to_string(),
                    "selects no workload".to_string(),
                );
            }
            (_, EnforcedBy::Ztunnel) => {
                let todo = if self.policy.spec.rules.is_empty()
                    && self.action == Ok(Action::Allow)
                    && n > 0
                {
                    format!(
                        "Nothing ambient-specific: ztunnel enforces the policy as written. Note \
                         that an ALLOW policy without rules allows nothing, so it denies all \
                         traffic to {these} unless another ALLOW policy matches."
                    )
                } else if n == 0 && self.scope != Scope::Mesh {
                    "Nothing ambient-specific: ztunnel will enforce the policy as written once \
                     a workload matches."
                        .to_string()
                } else {
                    "Nothing: the policy is L4 only (no HTTP attributes), so ztunnel enforces it \
                     as written."
                        .to_string()
                };
                let verdict = if n == 0 && self.scope != Scope::Mesh {
                    "enforced by ztunnel as written; no workload matches yet"
                } else {
                    "enforced by ztunnel as written"
                };
                return (format!("{todo}{capture_note}"), verdict.to_string());
            }
            (Ok(a @ (Action::Audit | Action::Custom)), _) => (
                format!(
                    "ztunnel does not support {}; only a waypoint applies it.",
                    a.as_str()
                ),
                format!("{} is not supported by ztunnel", a.as_str()),
            ),
            (Ok(Action::Allow), _) => {
                let dropped: Vec<String> =
                    self.dropped.iter().map(|i| (i + 1).to_string()).collect();
                let rules = format!(
                    "{} {}",
                    if dropped.len() == 1 { "rule" } else { "rules" },
                    dropped.join(",")
                );
                if self.dropped.len() == self.policy.spec.rules.len() {
                    (
                        format!(
                            "ztunnel drops {rules} and so denies all traffic to {these} unless \
                             another ALLOW policy matches.{capture_note}"
                        ),
                        "ztunnel denies all traffic".to_string(),
                    )
                } else {
                    (
                        format!(
                            "ztunnel drops {rules}, so traffic that only {} would allow is \
                             denied at {these} unless another ALLOW policy matches.{capture_note}",
                            if dropped.len() == 1 {
                                "that rule"
                            } else {
                                "those rules"
                            }
                        ),
                        format!("ztunnel drops {rules}"),
                    )
                }
            }
            (Ok(Action::Deny), EnforcedBy::Nothing) => (
                "Once ztunnel leaves out the HTTP attributes, no rule can match: this DENY policy \
                 has no effect in ambient."
                    .to_string(),
                "no effect at ztunnel".to_string(),
            ),
            (Ok(Action::Deny), _) => (
                format!(
                    "ztunnel enforces the rules without their HTTP attributes, so it denies more \
                     than written: a connection that matches the rest of a rule is denied \
                     whatever its HTTP request.{capture_note}"
                ),
                "ztunnel denies more than written".to_string(),
            ),
        };
        match self.twin() {
            Some(t) => (
                format!("{todo} {}", t.advice(&self.name)),
                format!("{problem}: {}", t.verdict()),
            ),
            None => {
                let mut todo = format!(
                    "{todo} Enforce the {} at a waypoint: {}",
                    if self.http.is_empty() {
                        "policy"
                    } else {
                        "HTTP rules"
                    },
                    self.waypoint_advice()
                );
                if self.action == Ok(Action::Deny) && self.enforced_by != EnforcedBy::Nothing {
                    todo.push_str(" Keep only L4 rules in this policy.");
                }
                (todo, format!("{problem}: needs a waypoint"))
            }
        }
    }

    fn dry_run_advice(&self) -> (String, String) {
        let mut live = self.policy.clone();
        live.meta.annotations = live.meta.annotations.clone().retain(|k| k != DRY_RUN);
        let converted = authorization::convert(&live, &self.index.settings().root_namespace);
        let then = match converted.enforced_by {
            EnforcedBy::Ztunnel => "ztunnel would then enforce it as written.".to_string(),
            EnforcedBy::ZtunnelMoreRestrictive | EnforcedBy::Nothing
                if !converted.http_attributes.is_empty() =>
            {
                format!(
                    "it uses HTTP attributes ({}), so enforce it at a waypoint instead: {}",
                    http_list(&converted.http_attributes),
                    self.waypoint_advice()
                )
            }
            _ => "only a waypoint could enforce it.".to_string(),
        };
        (
            format!(
                "Nothing enforces or logs this policy in ambient. To enforce it, remove the \
                 istio.io/dry-run annotation: {then}"
            ),
            "dry-run: not sent to ztunnel, nothing enforces it".to_string(),
        )
    }

    /// How to move this policy to a waypoint.
    fn waypoint_advice(&self) -> String {
        let ns = self.namespace();
        let services = covering_services(self.index, ns, &self.workloads);
        let bound: Vec<(&String, String)> = services
            .iter()
            .filter_map(|s| {
                let b = self.index.service_binding(ns, s)?;
                Some((s, b.bound_to?))
            })
            .collect();
        if let Some((svc, wp)) = bound.first() {
            return format!(
                "copy this policy with targetRefs naming Service {ns}/{svc}, which is already \
                 bound to waypoint {wp}."
            );
        }
        let target = match services.first() {
            Some(svc) => format!("targetRefs naming Service {ns}/{svc}"),
            None => "targetRefs".to_string(),
        };
        match waypoint_in(self.index, ns) {
            Some(wp) => format!(
                "label the Service (or namespace {ns}) with {USE_WAYPOINT}={wp} and copy this \
                 policy with {target}."
            ),
            None => format!(
                "deploy a waypoint for {ns} (istioctl waypoint apply -n {ns} --enroll-namespace) \
                 and copy this policy with {target}."
            ),
        }
    }

    /// The bound waypoint policy that stands in for this one: same namespace and action, and the same
    /// workloads (through a bound Service target) or the same rules. The closest match wins.
    pub(super) fn twin(&self) -> Option<Twin> {
        let mut best: Option<((bool, bool), Twin)> = None;
        for q in self.index.authorization_policies() {
            if q.meta.namespace != self.policy.meta.namespace
                || !is_waypoint_policy(&q.spec)
                || Action::parse(q.spec.action.as_deref()) != self.action
            {
                continue;
            }
            let targets = targets(self.index, q);
            let same_rules = q.spec.rules == self.policy.spec.rules;
            let by_workloads = targets.iter().find(|t| {
                t.enforcer.is_some() && !self.workloads.is_empty() && t.workloads == self.workloads
            });
            let Some(target) =
                by_workloads.or_else(|| targets.iter().find(|t| t.enforcer.is_some()))
            else {
                continue;
            };
            let same_workloads = by_workloads.is_some();
            if !(same_rules || same_workloads) {
                continue;
            }
            let rank = (same_rules && same_workloads, same_workloads);
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((
                    rank,
                    Twin {
                        name: format!("{}/{}", q.meta.namespace, q.meta.name),
                        enforcer: target.enforcer.clone().unwrap_or_default(),
                        target: target.describe(),
                        same_rules,
                        same_workloads,
                    },
                ));
            }
        }
        best.map(|(_, t)| t)
    }
}

/// A waypoint policy that stands in for a selector policy ztunnel cannot enforce as written.
pub(super) struct Twin {
    pub(super) name: String,
    /// `waypoint ns/name`, or what else enforces it.
    enforcer: String,
    /// The target it matched by (`Service ns/name`).
    target: String,
    pub(super) same_rules: bool,
    pub(super) same_workloads: bool,
}

impl Twin {
    fn advice(&self, policy: &str) -> String {
        let Twin {
            name,
            enforcer,
            target,
            ..
        } = self;
        match (self.same_rules, self.same_workloads) {
            (true, true) => format!(
                "The waypoint policy {name} already enforces these rules at {enforcer}: delete \
                 {policy} now that its twin is bound."
            ),
            (false, _) => format!(
                "The waypoint policy {name} covers the same workloads at {enforcer}, with \
                 different rules: once it enforces what {policy} asks, delete {policy}."
            ),
            (true, false) => format!(
                "The waypoint policy {name} enforces the same rules at {enforcer}, for {target}: \
                 once the traffic to these workloads goes through it, delete {policy}."
            ),
        }
    }

    fn verdict(&self) -> String {
        if self.same_rules && self.same_workloads {
            "delete it, its twin is bound".to_string()
        } else {
            "compare it with its twin, then delete it".to_string()
        }
    }
}

/// Services of `namespace` (not waypoints' own) that select exactly `workloads`, fewest selector labels
/// first; failing that, those that select some of them.
fn covering_services(index: &Index, namespace: &str, workloads: &[WorkloadRef]) -> Vec<String> {
    if workloads.is_empty() {
        return Vec::new();
    }
    let mut exact: Vec<(usize, String)> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for svc in index.services() {
        if svc.meta.namespace != namespace
            || ambient_index::waypoints::is_managed_gateway(&svc.meta.labels)
        {
            continue;
        }
        let selected = index.service_workloads(namespace, &svc.meta.name);
        if selected.as_slice() == workloads {
            let labels = svc.selector.as_ref().map_or(0, Labels::len);
            exact.push((labels, svc.meta.name.clone()));
        } else if selected.iter().any(|w| workloads.contains(w)) {
            partial.push(svc.meta.name.clone());
        }
    }
    exact.sort();
    if exact.is_empty() {
        partial
    } else {
        exact.into_iter().map(|(_, n)| n).collect()
    }
}
