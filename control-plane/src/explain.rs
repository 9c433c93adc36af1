//! `ambientd explain`: a review, in plain English, of what ambient mode does with each
//! AuthorizationPolicy and HTTPRoute of a configuration.
//!
//! ztunnel enforces L4 only. A policy written for sidecars may carry HTTP attributes that ztunnel cannot
//! check, and a route attached to a Service needs a waypoint once clients lose their sidecars. For every
//! policy the report says what kind it is, what ztunnel receives (which rules are dropped, and because of
//! which HTTP attributes), which workloads it applies to, the `ZtunnelAccepted` or `WaypointAccepted`
//! condition istiod would write, who enforces it, and what to do about it. For every route it says who
//! serves each parent: the Service's waypoint, a waypoint Gateway, or an ordinary Gateway.
//!
//! Rules are numbered from 1 in the order of `spec.rules`. Blocks come in a fixed order: policies sorted
//! by `namespace/name`, then routes sorted the same way; without a filter a summary comes first. The
//! report is a pure function of the index.

use std::collections::BTreeSet;

use ambient_index::authorization::{self, EnforcedBy, is_waypoint_policy};
use ambient_index::model::istio::{Action, PolicyTargetReference};
use ambient_index::model::well_known::{DRY_RUN, USE_WAYPOINT};
use ambient_index::model::{
    AuthorizationPolicy, HttpRoute, Kind, Labels, ObjectRef, ParentReference,
};
use ambient_index::views::WorkloadRef;
use ambient_index::waypoints::{Binding, Request};
use ambient_index::{Condition, Index};

/// Lines are wrapped to this width (long names may still overflow).
const WIDTH: usize = 92;
/// Width of the field labels of a block, indentation included.
const LABEL: usize = 16;
/// Width of the summary.
const SUMMARY_WIDTH: usize = 100;
/// Workloads listed by name before the rest is counted.
const LISTED: usize = 10;
/// The controller of waypoint GatewayClasses.
const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
/// The class `istioctl waypoint apply` uses.
const WAYPOINT_CLASS: &str = "istio-waypoint";

/// The report. With `filter` (`NAMESPACE/NAME`), only the policies and routes of that name, and no
/// summary; an unknown name gives an empty report (see [`matches`]).
pub fn explain(index: &Index, filter: Option<&str>) -> String {
    let wanted = |ns: &str, name: &str| filter.is_none_or(|f| f == format!("{ns}/{name}"));
    let mut blocks: Vec<Block> = Vec::new();
    for policy in index.authorization_policies() {
        if wanted(&policy.meta.namespace, &policy.meta.name) {
            blocks.push(policy_block(index, policy));
        }
    }
    let policies = blocks.len();
    for route in index.http_routes() {
        if wanted(&route.meta.namespace, &route.meta.name) {
            blocks.push(route_block(index, route));
        }
    }
    let routes = blocks.len() - policies;
    let mut out = String::new();
    if filter.is_none() {
        out.push_str(&format!(
            "ambientd explain: {}, {}.\n\n",
            count(policies, "AuthorizationPolicy", "AuthorizationPolicies"),
            count(routes, "HTTPRoute", "HTTPRoutes"),
        ));
        if !blocks.is_empty() {
            summary(&mut out, &blocks);
            out.push('\n');
        }
    }
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        block.render(&mut out);
    }
    out
}

/// Every policy and route the report can explain, as `Kind namespace/name`, in report order.
pub fn subjects(index: &Index) -> Vec<String> {
    let policies = index
        .authorization_policies()
        .map(|p| format!("AuthorizationPolicy {}/{}", p.meta.namespace, p.meta.name));
    let routes = index
        .http_routes()
        .map(|r| format!("HTTPRoute {}/{}", r.meta.namespace, r.meta.name));
    policies.chain(routes).collect()
}

/// Whether `name` (`NAMESPACE/NAME`) names a policy or route of the index.
pub fn matches(index: &Index, name: &str) -> bool {
    let is = |ns: &str, n: &str| name.split_once('/') == Some((ns, n));
    index
        .authorization_policies()
        .any(|p| is(&p.meta.namespace, &p.meta.name))
        || index
            .http_routes()
            .any(|r| is(&r.meta.namespace, &r.meta.name))
}

// ---- blocks ---------------------------------------------------------------------------------------

/// One policy or route: a title, labelled fields, and a one-line verdict for the summary.
struct Block {
    kind: &'static str,
    name: String,
    verdict: String,
    fields: Vec<(&'static str, String)>,
}

impl Block {
    fn new(kind: &'static str, name: String) -> Self {
        Block {
            kind,
            name,
            verdict: String::new(),
            fields: Vec::new(),
        }
    }

    fn field(&mut self, label: &'static str, text: impl Into<String>) {
        self.fields.push((label, text.into()));
    }

    fn render(&self, out: &mut String) {
        out.push_str(&format!("{} {}\n", self.kind, self.name));
        for (label, text) in &self.fields {
            let head = format!("  {label}:");
            let mut first = true;
            for paragraph in text.split('\n') {
                for line in wrap(paragraph, WIDTH - LABEL) {
                    let lead = if first { head.as_str() } else { "" };
                    out.push_str(&format!("{lead:<LABEL$}{line}\n"));
                    first = false;
                }
            }
        }
    }
}

fn summary(out: &mut String, blocks: &[Block]) {
    out.push_str("Summary\n");
    let names: Vec<String> = blocks
        .iter()
        .map(|b| {
            let kind = if b.kind == "HTTPRoute" {
                "route"
            } else {
                "policy"
            };
            format!("{kind} {}", b.name)
        })
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0) + 4;
    for (name, block) in names.iter().zip(blocks) {
        let lines = wrap(&block.verdict, SUMMARY_WIDTH.saturating_sub(width).max(30));
        for (i, line) in lines.iter().enumerate() {
            let lead = if i == 0 { name.as_str() } else { "" };
            out.push_str(&format!("  {lead:<w$}{line}\n", w = width - 2));
        }
    }
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

// ---- AuthorizationPolicy ------------------------------------------------------------------------

fn policy_block(index: &Index, policy: &AuthorizationPolicy) -> Block {
    if is_waypoint_policy(&policy.spec) {
        return waypoint_policy_block(index, policy);
    }
    let p = PolicyFacts::new(index, policy);
    let mut b = Block::new("AuthorizationPolicy", p.name.clone());
    b.field("Kind", p.kind_text());
    b.field("ztunnel gets", p.ztunnel_text());
    b.field("Applies to", p.workloads_text());
    if let Some(c) = &p.condition {
        b.field("Condition", condition_text(c));
    }
    b.field(
        "Enforced by",
        match p.action {
            Ok(_) => p.enforced_by.as_str(),
            Err(_) => "nothing (invalid action)",
        },
    );
    let (todo, verdict) = p.advice();
    b.field("To do", todo);
    b.verdict = verdict;
    b
}

/// What the index concluded about one selector, namespace or mesh-wide policy.
struct PolicyFacts<'a> {
    index: &'a Index,
    policy: &'a AuthorizationPolicy,
    /// `namespace/name`, also the name of the resource ztunnel receives.
    name: String,
    action: Result<Action, String>,
    scope: Scope,
    sent: bool,
    enforced_by: EnforcedBy,
    condition: Option<Condition>,
    dropped: Vec<usize>,
    http: BTreeSet<String>,
    warnings: Vec<String>,
    workloads: Vec<WorkloadRef>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `selector.matchLabels`.
    Selector,
    /// `selector` without `matchLabels`: selects nothing.
    EmptySelector,
    Namespace,
    Mesh,
}

impl<'a> PolicyFacts<'a> {
    fn new(index: &'a Index, policy: &'a AuthorizationPolicy) -> Self {
        let meta = &policy.meta;
        let name = format!("{}/{}", meta.namespace, meta.name);
        let obj = ObjectRef::new(Kind::AuthorizationPolicy, &meta.namespace, &meta.name);
        let status = index.policy_status().get(&obj);
        let scope = match &policy.spec.selector {
            Some(_) if authorization::attachment_selector(&policy.spec).is_some() => {
                Scope::Selector
            }
            Some(_) => Scope::EmptySelector,
            None if meta.namespace == index.settings().root_namespace => Scope::Mesh,
            None => Scope::Namespace,
        };
        PolicyFacts {
            index,
            policy,
            sent: index.authorization(&name).is_some(),
            name,
            action: Action::parse(policy.spec.action.as_deref()),
            scope,
            enforced_by: status.map_or(EnforcedBy::Nothing, |s| s.enforced_by),
            condition: status.and_then(|s| s.ztunnel.clone()),
            dropped: status.map(|s| s.dropped_rules.clone()).unwrap_or_default(),
            http: status
                .map(|s| s.http_attributes.clone())
                .unwrap_or_default(),
            warnings: status.map(|s| s.warnings.clone()).unwrap_or_default(),
            workloads: index.policy_workloads(policy),
        }
    }

    fn namespace(&self) -> &str {
        &self.policy.meta.namespace
    }

    fn action_str(&self) -> String {
        match &self.action {
            Ok(a) => a.as_str().to_string(),
            Err(unknown) => format!("{unknown:?} (not an action)"),
        }
    }

    fn dry_run(&self) -> bool {
        self.enforced_by == EnforcedBy::DryRun
    }

    fn kind_text(&self) -> String {
        let ns = self.namespace();
        let kind = match self.scope {
            Scope::Selector => {
                let labels = authorization::attachment_selector(&self.policy.spec)
                    .map(|l| labels_text(&l))
                    .unwrap_or_default();
                format!("selector policy (matchLabels {labels})")
            }
            Scope::EmptySelector => "selector policy without matchLabels".to_string(),
            Scope::Namespace => format!("namespace policy (no selector: every workload in {ns})"),
            Scope::Mesh => {
                format!("mesh-wide policy (no selector, in the root namespace {ns})")
            }
        };
        let dry = if self.dry_run() {
            ", dry-run (istio.io/dry-run: true)"
        } else {
            ""
        };
        format!("{kind}, action {}{dry}", self.action_str())
    }

    /// The HTTP attributes of rule `i` alone, found by converting a copy holding only that rule.
    fn rule_http(&self, i: usize) -> BTreeSet<String> {
        let Some(rule) = self.policy.spec.rules.get(i) else {
            return BTreeSet::new();
        };
        let mut single = self.policy.clone();
        single.spec.rules = vec![rule.clone()];
        authorization::convert(&single, &self.index.settings().root_namespace).http_attributes
    }

    /// Rules with HTTP attributes: `rule 1 (methods)`, …
    fn http_rules(&self) -> Vec<(usize, BTreeSet<String>)> {
        (0..self.policy.spec.rules.len())
            .map(|i| (i, self.rule_http(i)))
            .filter(|(_, attrs)| !attrs.is_empty())
            .collect()
    }

    fn ztunnel_text(&self) -> String {
        if !self.sent {
            let why = match (&self.action, self.enforced_by) {
                (_, EnforcedBy::DryRun) => "dry-run policies are not sent while ambient dry-run \
                    support (AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY) is off"
                    .to_string(),
                (Ok(a @ (Action::Audit | Action::Custom)), _) => {
                    format!("ztunnel does not support the {} action", a.as_str())
                }
                (Err(unknown), _) => format!("{unknown:?} is not an action"),
                _ => self
                    .condition
                    .as_ref()
                    .map(|c| c.message.clone())
                    .unwrap_or_else(|| "the policy is not converted".to_string()),
            };
            return with_warnings(format!("nothing: {why}."), &self.warnings);
        }
        let n = self.policy.spec.rules.len();
        let kept = n - self.dropped.len();
        let mut text = match n {
            0 => format!("{} with no rules.", self.name),
            1 if self.dropped.is_empty() => {
                format!("{} with its only rule, as written.", self.name)
            }
            _ if self.dropped.is_empty() => format!("{} with all {n} rules as written.", self.name),
            _ => format!(
                "{} with {kept} of its {}.",
                self.name,
                count(n, "rule", "rules")
            ),
        };
        let http = self.http_rules();
        if !self.dropped.is_empty() {
            let dropped: Vec<&(usize, BTreeSet<String>)> = http
                .iter()
                .filter(|(i, _)| self.dropped.contains(i))
                .collect();
            let which = match dropped.as_slice() {
                [(i, attrs)] => format!("rule {}, which uses the {}", i + 1, http_list(attrs)),
                many => {
                    let parts: Vec<String> = many
                        .iter()
                        .map(|(i, attrs)| format!("{} ({})", i + 1, names_list(attrs)))
                        .collect();
                    format!("rules {}, which use HTTP attributes", join_and(&parts))
                }
            };
            text.push_str(&format!(
                " It drops {which}: ztunnel cannot check HTTP attributes and leaves out every \
                 ALLOW rule that uses one."
            ));
        } else if !http.is_empty() {
            let parts: Vec<String> = http
                .iter()
                .map(|(i, attrs)| format!("rule {} without {}", i + 1, names_list(attrs)))
                .collect();
            text = format!(
                "{} with {}: {}.",
                self.name,
                match n {
                    1 => "its only rule, minus its HTTP attributes".to_string(),
                    _ => format!("all {n} rules, minus their HTTP attributes"),
                },
                join_and(&parts)
            );
            if self.enforced_by == EnforcedBy::Nothing {
                text.push_str(if n == 1 {
                    " What is left of the rule matches nothing, so it can never match at ztunnel."
                } else {
                    " What is left of those rules matches nothing, so no rule can match at ztunnel."
                });
            }
        }
        with_warnings(text, &self.warnings)
    }

    fn workloads_text(&self) -> String {
        let ns = self.namespace();
        if self.scope == Scope::EmptySelector {
            return "no workload: a selector without matchLabels selects nothing.".to_string();
        }
        if self.workloads.is_empty() {
            return match self.scope {
                Scope::Selector => format!(
                    "no workload: no pod in {} has the labels {}.",
                    if self.scope == Scope::Selector && ns == self.index.settings().root_namespace {
                        "the mesh"
                    } else {
                        ns
                    },
                    authorization::attachment_selector(&self.policy.spec)
                        .map(|l| labels_text(&l))
                        .unwrap_or_default()
                ),
                Scope::Namespace => format!("no workload: {ns} has no pods."),
                _ => "no workload: the mesh has no pods.".to_string(),
            };
        }
        let list = workloads_text(&self.workloads, ns);
        if !self.sent {
            return format!(
                "no workload, since ztunnel does not receive the policy. It selects {list}"
            );
        }
        match self.scope {
            Scope::Namespace => format!("{list} By scope, ztunnel applies it to all of them."),
            Scope::Mesh => format!("{list} By scope, ztunnel applies it to all of them."),
            _ => list,
        }
    }

    fn captured(&self) -> usize {
        self.workloads.iter().filter(|w| w.captured).count()
    }

    /// What to do, and the summary verdict.
    fn advice(&self) -> (String, String) {
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
    fn twin(&self) -> Option<Twin> {
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
struct Twin {
    name: String,
    /// `waypoint ns/name`, or what else enforces it.
    enforcer: String,
    /// The target it matched by (`Service ns/name`).
    target: String,
    same_rules: bool,
    same_workloads: bool,
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

fn waypoint_policy_block(index: &Index, policy: &AuthorizationPolicy) -> Block {
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
struct Target {
    kind: String,
    namespace: String,
    name: String,
    /// `waypoint ns/name` (or the Gateway) that enforces the policy for this target, when bound.
    enforcer: Option<String>,
    /// Why it is not bound, and what to do; `None` when bound.
    fix: Option<String>,
    /// Why it is not bound, in a few words.
    problem: Option<String>,
    /// The workloads behind a Service target.
    workloads: Vec<WorkloadRef>,
}

impl Target {
    fn describe(&self) -> String {
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

fn targets(index: &Index, policy: &AuthorizationPolicy) -> Vec<Target> {
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

/// Why Service `namespace/name` is not bound, and what to do: `(problem, fix)`.
fn unbound_service(
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

// ---- HTTPRoute ----------------------------------------------------------------------------------

fn route_block(index: &Index, route: &HttpRoute) -> Block {
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

// ---- shared helpers -----------------------------------------------------------------------------

/// Whether a Gateway of class `class` is a waypoint: the class's controller is the mesh controller
/// (or, when the class is not in the configuration, it is `istio-waypoint`).
fn is_waypoint_class(index: &Index, class: &str) -> bool {
    match index.gateway_class(class) {
        Some(c) => c.controller == MESH_CONTROLLER,
        None => class == WAYPOINT_CLASS,
    }
}

/// The name of a ready waypoint Gateway in `namespace`, preferring one called `waypoint`.
fn waypoint_in(index: &Index, namespace: &str) -> Option<String> {
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

fn condition_text(c: &Condition) -> String {
    let status = if c.status { "True" } else { "False" };
    if c.message.is_empty() {
        format!("{}={status}, reason {}.", c.type_, c.reason)
    } else {
        format!("{}={status}, reason {}: {}", c.type_, c.reason, c.message)
    }
}

/// `2 (both captured by ztunnel): a, b.` Names are pods, with their namespace when it is not `namespace`.
fn workloads_text(workloads: &[WorkloadRef], namespace: &str) -> String {
    let n = workloads.len();
    let uncaptured = workloads.iter().filter(|w| !w.captured).count();
    let capture = match (n, uncaptured) {
        (1, 0) => "captured by ztunnel".to_string(),
        (1, _) => "not captured by ztunnel".to_string(),
        (2, 0) => "both captured by ztunnel".to_string(),
        (_, 0) => "all captured by ztunnel".to_string(),
        (_, k) if k == n => "none captured by ztunnel".to_string(),
        (_, k) => format!("{k} not captured by ztunnel"),
    };
    format!(
        "{} ({capture}): {}.",
        count(n, "workload", "workloads"),
        names_of(workloads, namespace)
    )
}

/// Pod names, the first [`LISTED`] of them, then how many more.
fn names_of(workloads: &[WorkloadRef], namespace: &str) -> String {
    let names: Vec<String> = workloads
        .iter()
        .take(LISTED)
        .map(|w| pod_name(w, namespace))
        .collect();
    match workloads.len().saturating_sub(LISTED) {
        0 => names.join(", "),
        more => format!("{} and {more} more", names.join(", ")),
    }
}

fn labels_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

fn names_list(attrs: &BTreeSet<String>) -> String {
    let list: Vec<&str> = attrs.iter().map(String::as_str).collect();
    list.join(", ")
}

fn http_list(attrs: &BTreeSet<String>) -> String {
    let list: Vec<&str> = attrs.iter().map(String::as_str).collect();
    format!(
        "HTTP {} {}",
        if list.len() == 1 {
            "attribute"
        } else {
            "attributes"
        },
        list.join(", ")
    )
}

fn with_warnings(mut text: String, warnings: &[String]) -> String {
    for w in warnings {
        text.push_str(&format!("\nWarning: {w}"));
    }
    text
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `a`, `a and b`, `a, b and c`.
fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

/// A workload's pod name, with its namespace when it is not `namespace`.
fn pod_name(w: &WorkloadRef, namespace: &str) -> String {
    if w.pod.namespace == namespace {
        w.pod.name.clone()
    } else {
        format!("{}/{}", w.pod.namespace, w.pod.name)
    }
}
