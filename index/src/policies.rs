//! The index's policy half: AuthorizationPolicies and PeerAuthentications in, `istio.security.Authorization`
//! resources and each workload's `authorization_policies` out
//! (docs/reference/istiod.md#the-workloads-policy-list).

use std::collections::{BTreeMap, BTreeSet};

use ambient_proto::security as sec;

use crate::model::well_known::REVISION;
use crate::model::{AuthorizationPolicy, Kind, Labels, Meta, ObjectRef, PeerAuthentication, Pod};

use super::authorization::{self, Converted, EnforcedBy};
use super::peer_authentication as pa;
use super::{Condition, Index, Key, key};

/// What ambientd concluded about one AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyStatus {
    /// `ZtunnelAccepted`, as istiod writes it; `None` for waypoint policies.
    pub ztunnel: Option<Condition>,
    #[serde(rename = "enforcedBy")]
    pub enforced_by: EnforcedBy,
    /// HTTP attributes ztunnel cannot enforce.
    #[serde(rename = "httpAttributes")]
    pub http_attributes: BTreeSet<String>,
    /// Indices of rules ztunnel does not receive.
    #[serde(rename = "droppedRules")]
    pub dropped_rules: Vec<usize>,
    /// Values dropped on the way to ztunnel, each naming its field.
    pub warnings: Vec<String>,
}

impl From<&Converted> for PolicyStatus {
    fn from(c: &Converted) -> Self {
        PolicyStatus {
            ztunnel: c.condition.clone(),
            enforced_by: c.enforced_by,
            http_attributes: c.http_attributes.clone(),
            dropped_rules: c.dropped_rules.clone(),
            warnings: c.warnings.clone(),
        }
    }
}

/// Whether an object carries the revision this control plane serves (`istio.io/rev`; no label, or no
/// configured revision, means yes).
pub fn in_revision(meta: &Meta, revision: &str) -> bool {
    revision.is_empty() || meta.labels.get(REVISION).is_none_or(|r| r == revision)
}

impl Index {
    pub(super) fn insert_authorization_policy(&mut self, policy: AuthorizationPolicy) {
        let k = key(&policy.meta.namespace, &policy.meta.name);
        if !in_revision(&policy.meta, &self.settings.revision) {
            self.remove_authorization_policy(&k);
            return;
        }
        if self.authorization_policies.get(&k) == Some(&policy) {
            return;
        }
        let old_selector = self.attached_selector(&k);
        self.authorization_policies.insert(k.clone(), policy);
        self.recompute_authorization_policy(&k);
        let new_selector = self.attached_selector(&k);
        self.mark_attachment_change(&k, old_selector, new_selector);
    }

    pub(super) fn remove_authorization_policy(&mut self, k: &Key) {
        let old_selector = self.attached_selector(k);
        if self.authorization_policies.remove(k).is_none() {
            return;
        }
        self.recompute_authorization_policy(k);
        self.mark_attachment_change(k, old_selector, None);
    }

    /// The selector under which policy `k` is currently attached to workloads, if it is.
    fn attached_selector(&self, k: &Key) -> Option<Labels> {
        let (ns, _) = super::split(k);
        self.selector_policies.get(ns)?.get(k).cloned()
    }

    /// Marks the pods whose attachment to policy `k` may have changed.
    fn mark_attachment_change(&mut self, k: &Key, old: Option<Labels>, new: Option<Labels>) {
        if self.loading || old == new {
            return;
        }
        let (ns, _) = super::split(k);
        let all = ns == self.settings.root_namespace;
        let selectors: Vec<Labels> = old.into_iter().chain(new).collect();
        let matches = |pod: &Pod| selectors.iter().any(|s| pod.meta.labels.is_superset_of(s));
        let affected: Vec<Key> = if all {
            self.pods
                .iter()
                .filter(|(_, p)| matches(p))
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            self.pods_by_namespace
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|pk| self.pods.get(*pk).is_some_and(|p| matches(p)))
                .cloned()
                .collect()
        };
        self.dirty.pods.extend(affected);
    }

    /// Converts policy `k` (or removes it) and updates its resource, status and attachment selector.
    pub(super) fn recompute_authorization_policy(&mut self, k: &Key) {
        let (ns, name) = super::split(k);
        let obj = ObjectRef::new(Kind::AuthorizationPolicy, ns, name);
        let Some(policy) = self.authorization_policies.get(k) else {
            self.set_authorization(k, None);
            self.policy_status.remove(&obj);
            if let Some(m) = self.selector_policies.get_mut(ns) {
                m.remove(k);
            }
            return;
        };
        let converted = authorization::convert(policy, &self.settings.root_namespace);
        let selector = converted
            .authorization
            .as_ref()
            .and_then(|_| authorization::attachment_selector(&policy.spec));
        let status = PolicyStatus::from(&converted);
        self.set_authorization(k, converted.authorization);
        self.policy_status.insert(obj, status);
        let per_ns = self.selector_policies.entry(ns.to_string()).or_default();
        match selector {
            Some(s) => {
                per_ns.insert(k.clone(), s);
            }
            None => {
                per_ns.remove(k);
            }
        }
    }

    pub(super) fn insert_peer_authentication(&mut self, policy: PeerAuthentication) {
        let k = key(&policy.meta.namespace, &policy.meta.name);
        if !in_revision(&policy.meta, &self.settings.revision) {
            self.remove_peer_authentication(&k);
            return;
        }
        if self.peer_authentications.get(&k) == Some(&policy) {
            return;
        }
        let ns = policy.meta.namespace.clone();
        self.peer_authentications.insert(k, policy);
        self.peer_authentications_changed(&ns);
    }

    pub(super) fn remove_peer_authentication(&mut self, k: &Key) {
        if let Some(old) = self.peer_authentications.remove(k) {
            self.peer_authentications_changed(&old.meta.namespace);
        }
    }

    /// PeerAuthentications are few: any change reconverts all of them and recomputes the workloads of the
    /// namespace it is in (every workload for the root namespace).
    fn peer_authentications_changed(&mut self, namespace: &str) {
        if self.loading {
            return;
        }
        self.recompute_peer_authentications();
        let affected: Vec<Key> = if namespace == self.settings.root_namespace {
            self.pods.keys().cloned().collect()
        } else {
            self.pods_by_namespace
                .get(namespace)
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        };
        self.dirty.pods.extend(affected);
    }

    /// The static strict policy and every converted workload PeerAuthentication.
    pub(super) fn recompute_peer_authentications(&mut self) {
        let root = self.settings.root_namespace.clone();
        let mut wanted: BTreeMap<Key, sec::Authorization> = BTreeMap::new();
        if !self.peer_authentications.is_empty() {
            wanted.insert(key(&root, pa::STATIC_STRICT), pa::static_strict(&root));
        }
        let level = |ns: &str| {
            pa::oldest(
                self.peer_authentications
                    .values()
                    .filter(|p| p.meta.namespace == ns && p.spec.selector.is_none()),
            )
        };
        let mesh = level(&root);
        for p in self.peer_authentications.values() {
            if let Some(auth) = pa::convert(p, level(&p.meta.namespace), mesh, &root) {
                wanted.insert(key(&p.meta.namespace, &auth.name), auth);
            }
        }
        let stale: Vec<Key> = self
            .peer_authentication_outputs
            .iter()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            self.set_authorization(&k, None);
        }
        self.peer_authentication_outputs = wanted.keys().cloned().collect();
        for (k, auth) in wanted {
            self.set_authorization(&k, Some(auth));
        }
    }

    /// `Workload.authorization_policies` for a pod: matching selector policies of its namespace and the root
    /// namespace (sorted), then the PeerAuthentication keys.
    pub(super) fn workload_policies(&self, pod: &Pod) -> Vec<String> {
        let root = &self.settings.root_namespace;
        let own = self.selector_policies.get(&pod.meta.namespace);
        let mesh = (pod.meta.namespace != *root)
            .then(|| self.selector_policies.get(root))
            .flatten();
        let mut names: Vec<String> = own
            .into_iter()
            .chain(mesh)
            .flatten()
            .filter(|(_, sel)| pod.meta.labels.is_superset_of(sel))
            .map(|(k, _)| k.to_string())
            .collect();
        names.sort();
        if self.peer_authentications.is_empty() {
            return names;
        }
        let applicable: Vec<&PeerAuthentication> = self
            .peer_authentications
            .values()
            .filter(|p| {
                if p.meta.namespace == pod.meta.namespace {
                    p.spec
                        .selector
                        .as_ref()
                        .is_none_or(|s| pod.meta.labels.is_superset_of(&s.labels()))
                } else {
                    p.meta.namespace == *root && p.spec.selector.is_none()
                }
            })
            .collect();
        names.extend(pa::workload_keys(root, &applicable));
        names
    }

    pub(super) fn set_authorization(&mut self, name: &str, value: Option<sec::Authorization>) {
        self.authorizations.store(
            &mut self.changes.authorizations,
            !self.loading,
            name,
            value.as_ref(),
        );
    }
}

/// The controller every waypoint GatewayClass must use.
pub const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
pub const WAYPOINT_ACCEPTED: &str = "WaypointAccepted";

impl Index {
    /// istiod's `WaypointAccepted` condition for a waypoint (`targetRef`/`targetRefs`) policy: whether each
    /// target actually reaches a waypoint. `None` for policies without targets.
    pub fn waypoint_policy_condition(&self, policy: &AuthorizationPolicy) -> Option<Condition> {
        let spec = &policy.spec;
        let targets: Vec<_> = spec.target_ref.iter().chain(&spec.target_refs).collect();
        if targets.is_empty() {
            return None;
        }
        let root = &self.settings.root_namespace;
        let mut results = Vec::new();
        for t in &targets {
            let ns = if t.namespace.is_empty() {
                policy.meta.namespace.as_str()
            } else {
                t.namespace.as_str()
            };
            let key = format!("{ns}/{}", t.name);
            let (bound, reason, message) = match t.kind.as_str() {
                "GatewayClass" => match self.classes.get(&t.name) {
                    _ if ns != root => (
                        false,
                        "Invalid",
                        format!(
                            "AuthorizationPolicy must be in the root namespace `{root}` when referencing a GatewayClass"
                        ),
                    ),
                    None => (false, "TargetNotFound", "not bound".to_string()),
                    Some(c) if c.controller != MESH_CONTROLLER => (
                        false,
                        "Invalid",
                        format!(
                            "GatewayClass must use controller name `{MESH_CONTROLLER}` for waypoints"
                        ),
                    ),
                    Some(_) => (true, "Accepted", format!("bound to {}", t.name)),
                },
                "Gateway" => match self.waypoints.get(key.as_str()) {
                    Some(wp) => (true, "Accepted", format!("bound to {}", wp.key())),
                    None => (false, "TargetNotFound", "not bound".to_string()),
                },
                "Service" => match self.services.get(key.as_str()) {
                    None => (
                        false,
                        "TargetNotFound",
                        format!("Service {key} was not found"),
                    ),
                    Some(svc) => {
                        let binding = self.bind(
                            super::waypoints::Target::Service,
                            &svc.meta.labels,
                            &svc.meta.namespace,
                        );
                        match binding.bound_to {
                            Some(wp) => (true, "Accepted", format!("bound to {wp}")),
                            None => (
                                false,
                                "AncestorNotBound",
                                format!("Service {key} is not bound to a waypoint"),
                            ),
                        }
                    }
                },
                _ => (false, "unknown", "not bound".to_string()),
            };
            let group = if t.group.is_empty() { "core" } else { &t.group };
            results.push((bound, reason, message, format!("{}.{group}:{key}", t.kind)));
        }
        if let [(bound, reason, message, _)] = results.as_slice() {
            return Some(Condition::new(
                WAYPOINT_ACCEPTED,
                *bound,
                reason,
                message.clone(),
            ));
        }
        let unbound: Vec<&str> = results
            .iter()
            .filter(|r| !r.0)
            .map(|r| r.3.as_str())
            .collect();
        let (reason, message) = if unbound.is_empty() {
            ("Accepted", String::new())
        } else if unbound.len() < results.len() {
            (
                "PartiallyInvalid",
                format!("Invalid targetRefs: {}", unbound.join(", ")),
            )
        } else {
            (
                "Invalid",
                format!("Invalid targetRefs: {}", unbound.join(", ")),
            )
        };
        Some(Condition::new(
            WAYPOINT_ACCEPTED,
            unbound.len() < results.len(),
            reason,
            message,
        ))
    }
}
