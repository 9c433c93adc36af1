//! ambient-index: the Kubernetes object model of ambientd ([`model`]) and the index, a pure, synchronous
//! function from those objects to the xDS resources every ztunnel receives (`istio.workload.Address` and
//! `istio.security.Authorization`).
//!
//! [`Index::apply`] and [`Index::delete`] take one object at a time and recompute only what that object
//! affects; each returns the resource names whose content changed or that were removed. [`Index::reset`]
//! replaces the whole input and reports the difference. Nothing here does I/O, reads a clock or logs:
//! the crate depends on no async runtime, gRPC, HTTP, Kubernetes client or logging crate.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod authorization;
pub mod model;
pub mod peer_authentication;
mod policies;
pub mod resource;
pub mod services;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod views;
pub mod waypoints;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ambient_proto::workload::{Address, address};

use crate::model::well_known::{GATEWAY_NAME, NETWORK};
use crate::model::{
    AuthorizationPolicy, EndpointSlice, Gateway, GatewayClass, HttpRoute, Kind, Namespace, Node,
    Object, ObjectRef, PeerAuthentication, Pod, Service,
};

pub use policies::PolicyStatus;
pub use resource::Resource;
pub use table::{Changes, NameChanges, Table, TableId};
use waypoints::{Binding, Request, Target, Waypoint};

/// How pods are judged enrolled in ambient (HBONE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enrollment {
    /// Only the `ambient.istio.io/redirection: enabled` annotation istio-cni writes (istiod's behaviour).
    #[default]
    Annotation,
    /// The annotation, or istio-cni's label rules (§1.3) where no CNI runs (file mode).
    Labels,
}

/// Mesh-wide settings, with istiod's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cluster_id: String,
    pub trust_domain: String,
    pub domain_suffix: String,
    pub root_namespace: String,
    pub system_namespace: String,
    pub enrollment: Enrollment,
    /// Only AuthorizationPolicies and PeerAuthentications with this `istio.io/rev` (or none) are read;
    /// empty reads all.
    pub revision: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_id: "Kubernetes".into(),
            trust_domain: "cluster.local".into(),
            domain_suffix: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            system_namespace: "istio-system".into(),
            enrollment: Enrollment::Annotation,
            revision: String::new(),
        }
    }
}

/// A status condition the index computed for an object (istiod writes these to `status.conditions`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &str, status: bool, reason: &str, message: String) -> Self {
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
        }
    }
}

/// `namespace/name`, the key of namespaced objects inside the index.
type Key = Arc<str>;

fn key(namespace: &str, name: &str) -> Key {
    Arc::from(format!("{namespace}/{name}"))
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Label key → label value → Services whose selector starts with that pair.
type SelectorIndex = HashMap<Box<str>, HashMap<Box<str>, BTreeSet<Key>>>;

/// The pair a Service is indexed under: the first of its (sorted) selector labels.
fn selector_anchor(svc: &Service) -> Option<(&str, &str)> {
    svc.selector.as_ref()?.iter().next()
}

/// Objects whose resources must be recomputed before the operation returns.
#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    gateways: HashSet<Key>,
    services: HashSet<Key>,
    pods: HashSet<Key>,
    slices: HashSet<Key>,
}

#[derive(Debug, Default)]
pub struct Index {
    settings: Settings,
    /// The local network: the `topology.istio.io/network` label of the system namespace.
    network: String,

    namespaces: HashMap<String, Namespace>,
    nodes: HashMap<String, Node>,
    /// Boxed: the map keeps spare slots, which stay small.
    pods: HashMap<Key, Box<Pod>>,
    pods_by_namespace: HashMap<String, HashSet<Key>>,
    pods_by_node: HashMap<String, HashSet<Key>>,
    services: HashMap<Key, Service>,
    services_by_namespace: HashMap<String, BTreeSet<Key>>,
    /// Namespace → the first `key=value` of a Service's selector → those Services: a pod finds the
    /// Services that may select it with one lookup per label instead of scanning its namespace.
    services_by_selector: HashMap<String, SelectorIndex>,
    /// Pods that currently hold a (refusal) condition.
    pods_with_conditions: HashSet<Key>,
    slices: HashMap<Key, EndpointSlice>,
    /// Pod key → slices whose endpoints reference it.
    slices_by_pod: HashMap<Key, BTreeSet<Key>>,
    /// Service key → slices labelled with its name.
    slices_by_service: HashMap<Key, BTreeSet<Key>>,
    gateways: HashMap<Key, Gateway>,
    classes: HashMap<String, GatewayClass>,
    routes: BTreeMap<Key, HttpRoute>,
    authorization_policies: BTreeMap<Key, AuthorizationPolicy>,
    peer_authentications: BTreeMap<Key, PeerAuthentication>,

    waypoints: HashMap<Key, Waypoint>,
    /// Waypoint key → pods/Services whose own labels name it.
    waypoint_users: HashMap<String, HashSet<ObjectRef>>,
    /// Slice key → uids of the workloads it produced.
    slice_workloads: HashMap<Key, Vec<Arc<str>>>,

    addresses: Table,
    conditions: BTreeMap<ObjectRef, Condition>,

    /// `istio.security.Authorization` resources by name (`namespace/name`).
    authorizations: Table,
    policy_status: BTreeMap<ObjectRef, PolicyStatus>,
    /// Namespace → sent selector policies and the labels they attach by.
    selector_policies: HashMap<String, BTreeMap<Key, crate::model::Labels>>,
    /// Names of the Authorizations derived from PeerAuthentications.
    peer_authentication_outputs: BTreeSet<Key>,

    loading: bool,
    dirty: Dirty,
    changes: Changes,
    /// Counts the operations that changed a resource; see [`Index::generation`].
    generation: u64,
}

impl Index {
    pub fn new(settings: Settings) -> Self {
        Index {
            settings,
            ..Default::default()
        }
    }

    /// Builds an index from a complete set of objects in one pass (the fast path for initial loads).
    pub fn build(settings: Settings, objects: impl IntoIterator<Item = Object>) -> Self {
        let mut index = Index::new(settings);
        index.loading = true;
        for obj in objects {
            index.insert(obj);
        }
        index.recompute_peer_authentications();
        index.dirty = Dirty {
            all: true,
            ..Default::default()
        };
        index.flush();
        index.loading = false;
        index.changes = Changes::default();
        index
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many `apply`/`delete`/`reset` calls have changed a resource so far. Readers that compared
    /// every resource at generation `g` can skip change reports made at or before `g`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// One table of resources.
    pub fn table(&self, table: TableId) -> &Table {
        match table {
            TableId::Addresses => &self.addresses,
            TableId::Authorizations => &self.authorizations,
        }
    }

    /// Every `istio.workload.Address` resource, by xDS name.
    pub fn addresses(&self) -> &Table {
        &self.addresses
    }

    pub fn address(&self, name: &str) -> Option<&Resource> {
        self.addresses.get(name)
    }

    /// Every `istio.security.Authorization` resource, by xDS name.
    pub fn authorizations(&self) -> &Table {
        &self.authorizations
    }

    pub fn authorization(&self, name: &str) -> Option<&Resource> {
        self.authorizations.get(name)
    }

    /// What was concluded about each AuthorizationPolicy (conversion outcome and who enforces it).
    pub fn policy_status(&self) -> &BTreeMap<ObjectRef, PolicyStatus> {
        &self.policy_status
    }

    /// Waypoint binding conditions (`istio.io/WaypointBound`) by object; pods have refusals only.
    pub fn conditions(&self) -> &BTreeMap<ObjectRef, Condition> {
        &self.conditions
    }

    pub fn waypoints(&self) -> impl Iterator<Item = &Waypoint> {
        self.waypoints.values()
    }

    pub fn authorization_policies(&self) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.authorization_policies.values()
    }

    pub fn peer_authentications(&self) -> impl Iterator<Item = &PeerAuthentication> {
        self.peer_authentications.values()
    }

    pub fn http_routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.routes.values()
    }

    /// Number of stored objects per kind.
    pub fn object_counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::Namespace, self.namespaces.len()),
            (Kind::Node, self.nodes.len()),
            (Kind::Pod, self.pods.len()),
            (Kind::Service, self.services.len()),
            (Kind::EndpointSlice, self.slices.len()),
            (Kind::GatewayClass, self.classes.len()),
            (Kind::Gateway, self.gateways.len()),
            (Kind::HttpRoute, self.routes.len()),
            (Kind::AuthorizationPolicy, self.authorization_policies.len()),
            (Kind::PeerAuthentication, self.peer_authentications.len()),
        ])
    }

    /// Creates or replaces one object and recomputes what it affects.
    pub fn apply(&mut self, obj: Object) -> Changes {
        self.insert(obj);
        self.flush();
        self.take_changes()
    }

    /// Removes one object (no-op when absent) and recomputes what it affected.
    pub fn delete(&mut self, obj: &ObjectRef) -> Changes {
        self.remove(obj);
        self.flush();
        self.take_changes()
    }

    fn take_changes(&mut self) -> Changes {
        let changes = std::mem::take(&mut self.changes);
        if !changes.is_empty() {
            self.generation += 1;
            self.note_generations(&changes);
        }
        changes
    }

    /// Records the current generation for every name `changes` touched.
    fn note_generations(&mut self, changes: &Changes) {
        self.addresses
            .note_generation(&changes.addresses, self.generation);
        self.authorizations
            .note_generation(&changes.authorizations, self.generation);
    }

    /// Replaces the whole input with `objects` and reports the difference.
    pub fn reset(&mut self, objects: impl IntoIterator<Item = Object>) -> Changes {
        let mut fresh = Index::build(self.settings.clone(), objects);
        let changes = Changes {
            addresses: self.addresses.difference(&fresh.addresses),
            authorizations: self.authorizations.difference(&fresh.authorizations),
        };
        let generation = self.generation + u64::from(!changes.is_empty());
        // Unchanged names keep the generation they had; changed ones get this one.
        let mut addresses = std::mem::take(&mut self.addresses);
        let mut authorizations = std::mem::take(&mut self.authorizations);
        addresses.replace_resources(std::mem::take(&mut fresh.addresses));
        authorizations.replace_resources(std::mem::take(&mut fresh.authorizations));
        *self = fresh;
        self.addresses = addresses;
        self.authorizations = authorizations;
        self.generation = generation;
        self.note_generations(&changes);
        changes
    }

    // ---- input bookkeeping ------------------------------------------------------------------

    fn insert(&mut self, obj: Object) {
        match obj {
            Object::Namespace(ns) => self.insert_namespace(ns),
            Object::Node(node) => {
                let name = node.name.clone();
                if self.nodes.get(&name) != Some(&node) {
                    self.nodes.insert(name.clone(), node);
                    self.mark_node(&name);
                }
            }
            Object::Pod(pod) => self.insert_pod(pod),
            Object::Service(svc) => self.insert_service(*svc),
            Object::EndpointSlice(slice) => self.insert_slice(*slice),
            Object::GatewayClass(class) => {
                let name = class.meta.name.clone();
                self.classes.insert(name.clone(), class);
                self.mark_class(&name);
            }
            Object::Gateway(gw) => {
                let k = key(&gw.meta.namespace, &gw.meta.name);
                self.gateways.insert(k.clone(), *gw);
                self.mark(|d| d.gateways.insert(k));
            }
            Object::HttpRoute(r) => {
                self.routes.insert(key(&r.meta.namespace, &r.meta.name), *r);
            }
            Object::AuthorizationPolicy(p) => self.insert_authorization_policy(*p),
            Object::PeerAuthentication(p) => self.insert_peer_authentication(*p),
        }
    }

    fn remove(&mut self, obj: &ObjectRef) {
        let k = key(&obj.namespace, &obj.name);
        match obj.kind {
            Kind::Namespace => {
                if let Some(old) = self.namespaces.remove(&obj.name) {
                    self.namespace_changed(&old, None);
                }
            }
            Kind::Node => {
                if self.nodes.remove(&obj.name).is_some() {
                    self.mark_node(&obj.name);
                }
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(&k) {
                    self.unlink_pod(&k, &old);
                    self.mark(|d| d.pods.insert(k));
                }
            }
            Kind::Service => {
                if let Some(old) = self.services.remove(&k) {
                    if let Some(set) = self.services_by_namespace.get_mut(&obj.namespace) {
                        set.remove(&k);
                    }
                    self.unindex_selector(&k, &old);
                    self.track_waypoint_user(obj, Some(&old.meta.labels), None, &obj.namespace);
                    self.service_changed(&k, Some(&old), None);
                }
            }
            Kind::EndpointSlice => {
                if let Some(old) = self.slices.remove(&k) {
                    self.unlink_slice(&k, &old);
                    self.mark_slice_pods(&old);
                    self.mark(|d| d.slices.insert(k));
                }
            }
            Kind::GatewayClass => {
                if self.classes.remove(&obj.name).is_some() {
                    self.mark_class(&obj.name);
                }
            }
            Kind::Gateway => {
                if self.gateways.remove(&k).is_some() {
                    self.mark(|d| d.gateways.insert(k));
                }
            }
            Kind::HttpRoute => {
                self.routes.remove(&k);
            }
            Kind::AuthorizationPolicy => self.remove_authorization_policy(&k),
            Kind::PeerAuthentication => self.remove_peer_authentication(&k),
        }
    }

    /// Records a recomputation, unless a full build is under way.
    fn mark(&mut self, f: impl FnOnce(&mut Dirty) -> bool) {
        if !self.loading {
            f(&mut self.dirty);
        }
    }

    fn insert_namespace(&mut self, ns: Namespace) {
        let name = ns.meta.name.clone();
        let old = self.namespaces.insert(name.clone(), ns);
        let new = self.namespaces.get(&name).cloned();
        match old {
            Some(old) if Some(&old) == new.as_ref() => {}
            Some(old) => self.namespace_changed(&old, new.as_ref()),
            None => {
                if let Some(new) = new {
                    self.namespace_changed(&new, Some(&new));
                }
            }
        }
    }

    /// A namespace appeared, changed or vanished: its pods and Services are recomputed; a change of the
    /// system namespace's network label recomputes everything.
    fn namespace_changed(&mut self, old: &Namespace, new: Option<&Namespace>) {
        let name = &old.meta.name;
        if *name == self.settings.system_namespace {
            let network = new
                .and_then(|n| n.meta.labels.get(NETWORK))
                .unwrap_or_default()
                .to_string();
            if network != self.network {
                self.network = network;
                self.mark(|d| {
                    d.all = true;
                    true
                });
            }
        }
        if self.loading {
            return;
        }
        let pods: Vec<Key> = self
            .pods_by_namespace
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let services: Vec<Key> = self
            .services_by_namespace
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.dirty.pods.extend(pods);
        self.dirty.services.extend(services);
    }

    fn mark_node(&mut self, node: &str) {
        if self.loading {
            return;
        }
        if let Some(pods) = self.pods_by_node.get(node) {
            self.dirty.pods.extend(pods.iter().cloned());
        }
    }

    fn mark_class(&mut self, class: &str) {
        if self.loading {
            return;
        }
        let gateways: Vec<Key> = self
            .gateways
            .iter()
            .filter(|(_, g)| g.class == class)
            .map(|(k, _)| k.clone())
            .collect();
        self.dirty.gateways.extend(gateways);
    }

    /// Keeps `waypoint_users` in step with an object's own `use-waypoint` labels.
    fn track_waypoint_user(
        &mut self,
        obj: &ObjectRef,
        old: Option<&crate::model::Labels>,
        new: Option<&crate::model::Labels>,
        namespace: &str,
    ) {
        let old_key = old.and_then(|l| Request::from_labels(l, namespace)?.key());
        let new_key = new.and_then(|l| Request::from_labels(l, namespace)?.key());
        if old_key == new_key {
            return;
        }
        if let Some(k) = old_key
            && let Some(set) = self.waypoint_users.get_mut(&k)
        {
            set.remove(obj);
            if set.is_empty() {
                self.waypoint_users.remove(&k);
            }
        }
        if let Some(k) = new_key {
            self.waypoint_users
                .entry(k)
                .or_default()
                .insert(obj.clone());
        }
    }

    fn insert_pod(&mut self, pod: Box<Pod>) {
        let k = key(&pod.meta.namespace, &pod.meta.name);
        let obj = ObjectRef::new(Kind::Pod, &pod.meta.namespace, &pod.meta.name);
        let old = self.pods.remove(&k);
        if old.as_ref() == Some(&pod) {
            self.pods.insert(k, pod);
            return;
        }
        if let Some(old) = &old {
            self.unlink_pod(&k, old);
        }
        self.pods_by_namespace
            .entry(pod.meta.namespace.clone())
            .or_default()
            .insert(k.clone());
        if !pod.node.is_empty() {
            self.pods_by_node
                .entry(pod.node.clone())
                .or_default()
                .insert(k.clone());
        }
        self.track_waypoint_user(&obj, None, Some(&pod.meta.labels), &pod.meta.namespace);
        self.pods.insert(k.clone(), pod);
        self.mark(|d| d.pods.insert(k));
    }

    fn unlink_pod(&mut self, k: &Key, pod: &Pod) {
        if let Some(set) = self.pods_by_namespace.get_mut(&pod.meta.namespace) {
            set.remove(k);
            if set.is_empty() {
                self.pods_by_namespace.remove(&pod.meta.namespace);
            }
        }
        if let Some(set) = self.pods_by_node.get_mut(&pod.node) {
            set.remove(k);
            if set.is_empty() {
                self.pods_by_node.remove(&pod.node);
            }
        }
        let obj = ObjectRef::new(Kind::Pod, &pod.meta.namespace, &pod.meta.name);
        self.track_waypoint_user(&obj, Some(&pod.meta.labels), None, &pod.meta.namespace);
    }

    fn insert_service(&mut self, svc: Service) {
        let k = key(&svc.meta.namespace, &svc.meta.name);
        let obj = ObjectRef::new(Kind::Service, &svc.meta.namespace, &svc.meta.name);
        let old = self.services.remove(&k);
        if old.as_ref() == Some(&svc) {
            self.services.insert(k, svc);
            return;
        }
        self.services_by_namespace
            .entry(svc.meta.namespace.clone())
            .or_default()
            .insert(k.clone());
        if let Some(old) = &old {
            self.unindex_selector(&k, old);
        }
        self.index_selector(&k, &svc);
        self.track_waypoint_user(
            &obj,
            old.as_ref().map(|o| &o.meta.labels),
            Some(&svc.meta.labels),
            &svc.meta.namespace,
        );
        self.services.insert(k.clone(), svc.clone());
        self.service_changed(&k, old.as_ref(), Some(&svc));
    }

    fn index_selector(&mut self, k: &Key, svc: &Service) {
        if let Some((lk, lv)) = selector_anchor(svc) {
            self.services_by_selector
                .entry(svc.meta.namespace.clone())
                .or_default()
                .entry(lk.into())
                .or_default()
                .entry(lv.into())
                .or_default()
                .insert(k.clone());
        }
    }

    fn unindex_selector(&mut self, k: &Key, svc: &Service) {
        let Some((lk, lv)) = selector_anchor(svc) else {
            return;
        };
        let Some(by_key) = self.services_by_selector.get_mut(&svc.meta.namespace) else {
            return;
        };
        if let Some(by_value) = by_key.get_mut(lk) {
            if let Some(set) = by_value.get_mut(lv) {
                set.remove(k);
                if set.is_empty() {
                    by_value.remove(lv);
                }
            }
            if by_value.is_empty() {
                by_key.remove(lk);
            }
        }
        if by_key.is_empty() {
            self.services_by_selector.remove(&svc.meta.namespace);
        }
    }

    /// A Service changed: recompute it, the pods it gained or lost (or all its pods when what pods see of
    /// it changed), and the EndpointSlice workloads that depend on it.
    fn service_changed(&mut self, k: &Key, old: Option<&Service>, new: Option<&Service>) {
        if self.loading {
            return;
        }
        self.dirty.services.insert(k.clone());
        let (namespace, _) = split(k);
        let seen_by_pods = |s: &Service| (s.ports.clone(), services::usable(s).is_ok());
        let pods_see_same = match (old, new) {
            (Some(o), Some(n)) => seen_by_pods(o) == seen_by_pods(n),
            _ => false,
        };
        let mut affected: Vec<Key> = Vec::new();
        if let Some(pods) = self.pods_by_namespace.get(namespace) {
            for pk in pods {
                let Some(pod) = self.pods.get(pk) else {
                    continue;
                };
                let selects = |s: Option<&Service>| {
                    s.and_then(|s| s.selector.as_ref())
                        .is_some_and(|sel| pod.meta.labels.is_superset_of(sel))
                };
                let (was, is) = (selects(old), selects(new));
                if (was != is) || (!pods_see_same && (was || is)) {
                    affected.push(pk.clone());
                }
            }
        }
        let slices: Vec<Key> = self
            .slices_by_service
            .get(k)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for sk in &slices {
            if let Some(slice) = self.slices.get(sk) {
                affected.extend(slice_pod_keys(slice));
            }
        }
        self.dirty.pods.extend(affected);
        self.dirty.slices.extend(slices);
    }

    fn insert_slice(&mut self, slice: EndpointSlice) {
        let k = key(&slice.meta.namespace, &slice.meta.name);
        let old = self.slices.remove(&k);
        if old.as_ref() == Some(&slice) {
            self.slices.insert(k, slice);
            return;
        }
        if let Some(old) = &old {
            self.unlink_slice(&k, old);
            self.mark_slice_pods(old);
        }
        for pk in slice_pod_keys(&slice) {
            self.slices_by_pod.entry(pk).or_default().insert(k.clone());
        }
        if let Some(svc) = &slice.service_name {
            self.slices_by_service
                .entry(key(&slice.meta.namespace, svc))
                .or_default()
                .insert(k.clone());
        }
        self.mark_slice_pods(&slice);
        self.slices.insert(k.clone(), slice);
        self.mark(|d| d.slices.insert(k));
    }

    fn unlink_slice(&mut self, k: &Key, slice: &EndpointSlice) {
        for pk in slice_pod_keys(slice) {
            if let Some(set) = self.slices_by_pod.get_mut(&pk) {
                set.remove(k);
                if set.is_empty() {
                    self.slices_by_pod.remove(&pk);
                }
            }
        }
        if let Some(svc) = &slice.service_name {
            let sk = key(&slice.meta.namespace, svc);
            if let Some(set) = self.slices_by_service.get_mut(&sk) {
                set.remove(k);
                if set.is_empty() {
                    self.slices_by_service.remove(&sk);
                }
            }
        }
    }

    fn mark_slice_pods(&mut self, slice: &EndpointSlice) {
        if self.loading {
            return;
        }
        self.dirty.pods.extend(slice_pod_keys(slice));
    }

    // ---- recomputation -----------------------------------------------------------------------

    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        if dirty.all {
            dirty.gateways.extend(self.gateways.keys().cloned());
            dirty.gateways.extend(self.waypoints.keys().cloned());
            dirty.services.extend(self.services.keys().cloned());
            dirty.pods.extend(self.pods.keys().cloned());
            dirty.slices.extend(self.slices.keys().cloned());
        }
        let gateways: Vec<Key> = dirty.gateways.drain().collect();
        for gk in &gateways {
            if self.recompute_waypoint(gk) && !dirty.all {
                self.waypoint_dependents(gk, &mut dirty);
            }
        }
        for sk in &dirty.services {
            self.recompute_service(sk);
        }
        for pk in &dirty.pods {
            self.recompute_pod(pk);
        }
        for sk in &dirty.slices {
            self.recompute_slice(sk);
        }
    }

    /// Recomputes one waypoint; true when it changed (appeared, vanished or differs).
    fn recompute_waypoint(&mut self, gk: &Key) -> bool {
        let new = self.gateways.get(gk).and_then(|gw| {
            waypoints::waypoint_for_gateway(gw, self.classes.get(&gw.class), &self.network)
        });
        let old = match &new {
            Some(wp) => self.waypoints.insert(gk.clone(), wp.clone()),
            None => self.waypoints.remove(gk),
        };
        old != new
    }

    /// Everything that may bind to, or be an instance of, waypoint `gk`.
    fn waypoint_dependents(&self, gk: &Key, dirty: &mut Dirty) {
        let (gw_namespace, gw_name) = split(gk);
        let mut namespaces: Vec<&str> = self
            .namespaces
            .values()
            .filter(|ns| {
                Request::from_labels(&ns.meta.labels, &ns.meta.name)
                    .and_then(|r| r.key())
                    .is_some_and(|k| *k == **gk)
            })
            .map(|ns| ns.meta.name.as_str())
            .collect();
        namespaces.push(gw_namespace);
        for ns in namespaces {
            if let Some(pods) = self.pods_by_namespace.get(ns) {
                for pk in pods {
                    let Some(pod) = self.pods.get(pk) else {
                        continue;
                    };
                    let inherits = !pod
                        .meta
                        .labels
                        .contains_key(crate::model::well_known::USE_WAYPOINT);
                    let instance =
                        ns == gw_namespace && pod.meta.labels.get(GATEWAY_NAME) == Some(gw_name);
                    if inherits || instance {
                        dirty.pods.insert(pk.clone());
                    }
                }
            }
            if let Some(services) = self.services_by_namespace.get(ns) {
                dirty.services.extend(services.iter().cloned());
            }
        }
        if let Some(users) = self.waypoint_users.get(&**gk) {
            for user in users {
                let uk = key(&user.namespace, &user.name);
                match user.kind {
                    Kind::Pod => dirty.pods.insert(uk),
                    _ => dirty.services.insert(uk),
                };
            }
        }
    }

    fn set_address(&mut self, name: &str, value: Option<address::Type>) {
        let value = value.map(|t| Address { r#type: Some(t) });
        self.addresses.store(
            &mut self.changes.addresses,
            !self.loading,
            name,
            value.as_ref(),
        );
    }

    fn set_condition(&mut self, obj: ObjectRef, condition: Option<Condition>) {
        match condition {
            Some(c) => {
                self.conditions.insert(obj, c);
            }
            None => {
                self.conditions.remove(&obj);
            }
        }
    }

    fn bind(&self, target: Target, labels: &crate::model::Labels, namespace: &str) -> Binding {
        let ns_labels = self.namespaces.get(namespace).map(|n| &n.meta.labels);
        waypoints::bind(target, labels, namespace, ns_labels, |k| {
            self.waypoints.get(k)
        })
    }

    fn recompute_service(&mut self, sk: &Key) {
        let (namespace, name) = split(sk);
        let obj = ObjectRef::new(Kind::Service, namespace, name);
        let resource_name = services::resource_name(name, namespace, &self.settings.domain_suffix);
        let Some(svc) = self.services.get(sk) else {
            self.set_address(&resource_name, None);
            self.set_condition(obj, None);
            return;
        };
        let mut binding = self.bind(Target::Service, &svc.meta.labels, namespace);
        if let Some(c) = binding.condition.as_mut().filter(|c| c.status) {
            c.message.push_str(services::ingress_message_suffix(
                &svc.meta.labels,
                self.namespaces.get(namespace),
            ));
        }
        let built = services::build_service(
            &self.settings,
            &self.network,
            svc,
            self.namespaces.get(namespace),
            &binding,
        );
        let (value, condition) = match built {
            Ok(s) => (Some(address::Type::Service(s)), binding.condition),
            Err(services::Skip::ExternalName) => (None, None),
            Err(services::Skip::BadClusterIp(ip)) => (
                None,
                Some(Condition::new(
                    "ambientd.io/Skipped",
                    false,
                    "InvalidClusterIP",
                    format!("cluster IP {ip:?} does not parse; the Service is not sent"),
                )),
            ),
        };
        self.set_address(&resource_name, value);
        self.set_condition(obj, condition);
    }

    /// The Services a pod belongs to: same-namespace selector matches, and selectorless Services whose
    /// EndpointSlice names this pod (kind, name and uid) in a `targetRef`.
    fn services_for_pod(&self, pk: &Key, pod: &Pod) -> Vec<&Service> {
        let mut out: BTreeMap<&str, &Service> = BTreeMap::new();
        if let Some(by_key) = self.services_by_selector.get(&pod.meta.namespace) {
            for (lk, lv) in pod.meta.labels.iter() {
                let Some(keys) = by_key.get(lk).and_then(|by_value| by_value.get(lv)) else {
                    continue;
                };
                for sk in keys {
                    let Some(svc) = self.services.get(sk) else {
                        continue;
                    };
                    if svc
                        .selector
                        .as_ref()
                        .is_some_and(|sel| pod.meta.labels.is_superset_of(sel))
                        && services::usable(svc).is_ok()
                    {
                        out.insert(sk, svc);
                    }
                }
            }
        }
        for slice_key in self.slices_by_pod.get(pk).into_iter().flatten() {
            let Some(slice) = self.slices.get(slice_key) else {
                continue;
            };
            let references = slice.endpoints.iter().any(|e| {
                e.target_ref.as_ref().is_some_and(|r| {
                    r.kind == "Pod"
                        && r.name == pod.meta.name
                        && r.uid == pod.meta.uid
                        && (r.namespace.is_empty() || r.namespace == pod.meta.namespace)
                })
            });
            if !references {
                continue;
            }
            let Some(svc_name) = &slice.service_name else {
                continue;
            };
            let sk = key(&slice.meta.namespace, svc_name);
            if let Some((sk, svc)) = self.services.get_key_value(&sk)
                && svc.selector.is_none()
                && services::usable(svc).is_ok()
            {
                out.insert(sk, svc);
            }
        }
        out.into_values().collect()
    }

    fn recompute_pod(&mut self, pk: &Key) {
        let (namespace, name) = split(pk);
        let uid = workloads::pod_uid(&self.settings.cluster_id, namespace, name);
        let Some(pod) = self.pods.get(pk) else {
            self.set_address(&uid, None);
            self.set_pod_condition(pk, None);
            return;
        };
        let instance = waypoints::instance_of(&pod.meta.labels, namespace)
            .and_then(|k| self.waypoints.get(k.as_str()));
        let (binding, application_tunnel) = match instance {
            Some(wp) => (Binding::default(), wp.application_tunnel()),
            None => (
                self.bind(Target::Workload, &pod.meta.labels, namespace),
                None,
            ),
        };
        let condition = binding.condition.clone().filter(|c| !c.status);
        let ctx = workloads::PodContext {
            settings: &self.settings,
            network: &self.network,
            namespace: self.namespaces.get(namespace),
            node: self.nodes.get(&pod.node),
            services: self.services_for_pod(pk, pod),
            binding,
            application_tunnel,
            authorization_policies: self.workload_policies(pod),
        };
        let workload = workloads::build_pod_workload(ctx, pod);
        self.set_address(&uid, workload.map(address::Type::Workload));
        self.set_pod_condition(pk, condition);
    }

    /// Pods rarely hold a condition: skip building the object reference when there is nothing to do.
    fn set_pod_condition(&mut self, pk: &Key, condition: Option<Condition>) {
        if condition.is_none() && !self.pods_with_conditions.contains(pk) {
            return;
        }
        let (namespace, name) = split(pk);
        let obj = ObjectRef::new(Kind::Pod, namespace, name);
        if condition.is_some() {
            self.pods_with_conditions.insert(pk.clone());
        } else {
            self.pods_with_conditions.remove(pk);
        }
        self.set_condition(obj, condition);
    }

    fn recompute_slice(&mut self, sk: &Key) {
        let built: Vec<_> = match self.slices.get(sk) {
            Some(slice) => {
                let svc = workloads::slice_service(slice, |name| {
                    self.services.get(&*key(&slice.meta.namespace, name))
                });
                match svc {
                    Some(svc) => {
                        workloads::build_slice_workloads(&self.settings, &self.network, slice, svc)
                    }
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let new_names: Vec<Arc<str>> = built.iter().map(|w| Arc::from(w.uid.as_str())).collect();
        let old_names = self.slice_workloads.remove(sk).unwrap_or_default();
        for old in &old_names {
            if !new_names.contains(old) {
                self.set_address(old, None);
            }
        }
        for w in built {
            let uid = w.uid.clone();
            self.set_address(&uid, Some(address::Type::Workload(w)));
        }
        if !new_names.is_empty() {
            self.slice_workloads.insert(sk.clone(), new_names);
        }
    }
}

/// Keys of the pods an EndpointSlice's endpoints reference by `targetRef`.
fn slice_pod_keys(slice: &EndpointSlice) -> Vec<Key> {
    slice
        .endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind == "Pod" && !r.name.is_empty())
        .map(|r| {
            let ns = if r.namespace.is_empty() {
                &slice.meta.namespace
            } else {
                &r.namespace
            };
            key(ns, &r.name)
        })
        .collect()
}
