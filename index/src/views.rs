//! Read-only views of the index's inputs and derived state, for reports that explain the tables rather
//! than serve them (`ambientd explain`).
//!
//! Nothing here changes the index or is on the serving path: lists are sorted on every call and workloads
//! are decoded from their resources, which is fine for an offline report and too slow for xDS.

use std::collections::BTreeMap;

use ambient_proto::workload::{Address, TunnelProtocol, address};
use prost::Message;

use crate::model::{
    AuthorizationPolicy, Gateway, GatewayClass, Kind, Namespace, ObjectRef, Pod, Service,
};

use super::authorization::{attachment_selector, is_waypoint_policy};
use super::waypoints::{Binding, Target, Waypoint};
use super::{Index, key, workloads};

/// A pod workload, as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// The pod the workload comes from.
    pub pod: ObjectRef,
    /// The workload's uid, its Address resource name.
    pub uid: String,
    /// Whether ztunnel captures its traffic (tunnel protocol HBONE). ztunnel enforces nothing for a
    /// workload it does not capture.
    pub captured: bool,
}

impl Index {
    /// Every Namespace, sorted by name.
    pub fn namespaces(&self) -> Vec<&Namespace> {
        sorted(self.namespaces.iter().map(|(k, v)| (k.as_str(), v)))
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// Every Pod, sorted by `namespace/name`.
    pub fn pods(&self) -> Vec<&Pod> {
        sorted(self.pods.iter().map(|(k, v)| (&**k, &**v)))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.get(&*key(namespace, name)).map(|p| &**p)
    }

    /// Every Service, sorted by `namespace/name`.
    pub fn services(&self) -> Vec<&Service> {
        sorted(self.services.iter().map(|(k, v)| (&**k, v)))
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&*key(namespace, name))
    }

    /// Every Gateway (waypoint or not), sorted by `namespace/name`.
    pub fn gateways(&self) -> Vec<&Gateway> {
        sorted(self.gateways.iter().map(|(k, v)| (&**k, v)))
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&Gateway> {
        self.gateways.get(&*key(namespace, name))
    }

    /// Every GatewayClass, sorted by name.
    pub fn gateway_classes(&self) -> Vec<&GatewayClass> {
        sorted(self.classes.iter().map(|(k, v)| (k.as_str(), v)))
    }

    pub fn gateway_class(&self, name: &str) -> Option<&GatewayClass> {
        self.classes.get(name)
    }

    /// The waypoint Gateway `namespace/name`, when it is one (it has status addresses).
    pub fn waypoint(&self, namespace: &str, name: &str) -> Option<&Waypoint> {
        self.waypoints.get(&*key(namespace, name))
    }

    /// How Service `namespace/name` binds to a waypoint, computed as for its Address resource (without
    /// the ingress suffix of the condition message); `None` when there is no such Service.
    pub fn service_binding(&self, namespace: &str, name: &str) -> Option<Binding> {
        let svc = self.service(namespace, name)?;
        Some(self.bind(Target::Service, &svc.meta.labels, namespace))
    }

    /// The workloads an AuthorizationPolicy selects, whether or not ztunnel receives it, sorted by pod:
    /// with `matchLabels`, the pods of its namespace (of every namespace for the root namespace) whose
    /// labels include them, the rule `Workload.authorization_policies` uses; with no selector, every pod
    /// of its namespace (of the mesh for the root namespace), which ztunnel applies by scope. A
    /// `selector` without `matchLabels` and a waypoint (`targetRefs`) policy select no workload.
    pub fn policy_workloads(&self, policy: &AuthorizationPolicy) -> Vec<WorkloadRef> {
        let spec = &policy.spec;
        if is_waypoint_policy(spec) {
            return Vec::new();
        }
        let selector = match &spec.selector {
            Some(_) => match attachment_selector(spec) {
                Some(labels) => Some(labels),
                None => return Vec::new(),
            },
            None => None,
        };
        let everywhere = policy.meta.namespace == self.settings.root_namespace;
        self.workloads_where(|pod| {
            (everywhere || pod.meta.namespace == policy.meta.namespace)
                && selector
                    .as_ref()
                    .is_none_or(|s| pod.meta.labels.is_superset_of(s))
        })
    }

    /// The workloads Service `namespace/name` selects, sorted by pod; empty for a missing or
    /// selector-less Service.
    pub fn service_workloads(&self, namespace: &str, name: &str) -> Vec<WorkloadRef> {
        let Some(selector) = self
            .service(namespace, name)
            .and_then(|s| s.selector.as_ref())
        else {
            return Vec::new();
        };
        self.workloads_where(|pod| {
            pod.meta.namespace == namespace && pod.meta.labels.is_superset_of(selector)
        })
    }

    /// Whether some pod of service account `service_account` in `namespace` is scheduled on `node`
    /// (its `spec.nodeName`): the check istiod's node authorizer makes before a ztunnel on `node` may
    /// obtain a certificate for that identity. Unlike the report views above, this one is on the CSR path:
    /// it looks the node up and scans only that node's pods. An empty node or account matches nothing.
    pub fn pod_on_node(&self, node: &str, namespace: &str, service_account: &str) -> bool {
        if node.is_empty() || service_account.is_empty() {
            return false;
        }
        self.pods_by_node.get(node).is_some_and(|keys| {
            keys.iter().any(|k| {
                self.pods.get(k).is_some_and(|pod| {
                    pod.meta.namespace == namespace && pod.service_account == service_account
                })
            })
        })
    }

    /// The pods matching `f` that have a Workload resource, sorted by pod.
    fn workloads_where(&self, f: impl Fn(&Pod) -> bool) -> Vec<WorkloadRef> {
        let mut out: Vec<WorkloadRef> = self
            .pods
            .values()
            .filter(|pod| f(pod))
            .filter_map(|pod| {
                let uid = workloads::pod_uid(
                    &self.settings.cluster_id,
                    &pod.meta.namespace,
                    &pod.meta.name,
                );
                let res = self.addresses.get(uid.as_str())?;
                let captured = match Address::decode(res.body.clone()).ok()?.r#type? {
                    address::Type::Workload(w) => w.tunnel_protocol == TunnelProtocol::Hbone as i32,
                    address::Type::Service(_) => return None,
                };
                Some(WorkloadRef {
                    pod: ObjectRef::new(Kind::Pod, &pod.meta.namespace, &pod.meta.name),
                    uid,
                    captured,
                })
            })
            .collect();
        out.sort();
        out
    }
}

/// The values of a keyed map, in key order.
fn sorted<'a, T>(entries: impl Iterator<Item = (&'a str, &'a T)>) -> Vec<&'a T> {
    entries.collect::<BTreeMap<_, _>>().into_values().collect()
}
