//! AuthorizationPolicy analysis: what the index concluded about a selector, namespace or mesh-wide
//! policy (its scope, action and rules, what ztunnel receives, the workloads it applies to, who
//! enforces it), and the block that reports it. Policies with targetRefs are analysed in
//! [`super::waypoint_policy`]; what to do about a policy is worked out in [`super::advice`].

use std::collections::BTreeSet;

use ambient_index::authorization::{self, EnforcedBy, is_waypoint_policy};
use ambient_index::model::istio::Action;
use ambient_index::model::{AuthorizationPolicy, Kind, ObjectRef};
use ambient_index::views::WorkloadRef;
use ambient_index::{Condition, Index};

use super::block::Block;
use super::text::{
    condition_text, count, http_list, join_and, labels_text, names_list, with_warnings,
    workloads_text,
};
use super::waypoint_policy::waypoint_policy_block;

pub(super) fn policy_block(index: &Index, policy: &AuthorizationPolicy) -> Block {
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
pub(super) struct PolicyFacts<'a> {
    pub(super) index: &'a Index,
    pub(super) policy: &'a AuthorizationPolicy,
    /// `namespace/name`, also the name of the resource ztunnel receives.
    pub(super) name: String,
    pub(super) action: Result<Action, String>,
    pub(super) scope: Scope,
    pub(super) sent: bool,
    pub(super) enforced_by: EnforcedBy,
    condition: Option<Condition>,
    pub(super) dropped: Vec<usize>,
    pub(super) http: BTreeSet<String>,
    warnings: Vec<String>,
    pub(super) workloads: Vec<WorkloadRef>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// `selector.matchLabels`.
    Selector,
    /// `selector` without `matchLabels`: selects nothing.
    EmptySelector,
    Namespace,
    Mesh,
}

impl<'a> PolicyFacts<'a> {
    pub(super) fn new(index: &'a Index, policy: &'a AuthorizationPolicy) -> Self {
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

    pub(super) fn namespace(&self) -> &str {
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

    pub(super) fn captured(&self) -> usize {
        self.workloads.iter().filter(|w| w.captured).count()
    }
}
