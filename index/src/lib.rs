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
mod inputs;
pub mod model;
pub mod peer_authentication;
mod policies;
mod recompute;
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
pub use table::{Changes, NameChanges, Snapshot, Table, TableId};
use waypoints::{Binding, Request, Target, Waypoint};

/// How pods are judged enrolled in ambient (HBONE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enrollment {
    /// Only the `ambient.istio.io/redirection: enabled` annotation istio-cni writes (istiod's behaviour).
    #[default]
    Annotation,
    /// The annotation, or istio-cni's label rules (docs/reference/istiod.md#ambient-enrollment-by-istio-cni)
    /// where no CNI runs (file mode).
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
}
