//! The Kubernetes source: one kube-rs watcher per kind the index reads
//! (docs/reference/istiod.md#kinds-watched-and-propagation), turned into the same [`Event`]s as the file
//! source.
//!
//! This module owns, per kind, the `resourceVersion` of every object passed on (names and versions
//! only, never the objects), and the first-sync bookkeeping:
//!
//! - **First sync.** Nothing is sent until every kind has been listed once; then one
//!   [`Event::Reset`] carries everything, so the index is built in one go, and [`KubeHandle::synced`]
//!   turns true. Changes to kinds already listed while others are still listing are folded into it.
//! - **Relists.** A watcher lists again after a `410 Gone` (its `resourceVersion` expired) or when it
//!   cannot resume; kube-rs reports that as `Init`, `InitApply`… `InitDone`. Objects whose
//!   `resourceVersion` is unchanged are skipped, changed ones are applied, and the ones not listed again
//!   are deleted.
//! - **Missing kinds.** A `404` on a list means the API server does not serve that kind (Gateway API or
//!   Istio CRDs not installed): a warning, the kind counts as synced and empty, and the watcher keeps
//!   trying (with backoff) so that a CRD installed later is picked up. A CRD deleted while watched (its
//!   watch fails and a one-item list answers 404) deletes the kind's objects the same way.
//! - **Errors** (connection refused, 403, a watch that breaks) are logged and retried after a backoff
//!   of 0.8 s doubling to 30 s (with jitter), reset by progress. An expired version is listed again at
//!   once.
//! - **Stripping.** `managedFields`, finalizers and the annotations the index does not read are dropped
//!   before an object is parsed; the status conditions ambientd writes are recorded for the status writer
//!   ([`StatusObservations`]) and dropped too.
//!
//! Pods are watched with istiod's field selector `status.phase!=Failed`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject};
use ::kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::source::{Event, SourceDiagnostic};
use ambient_index::model::{Kind, ModelError, Object, ObjectRef, annotations};
use prometheus_client::metrics::counter::Counter;

mod observed;

pub use self::observed::{ObservedStatus, StatusObservations, condition_type};

/// Where a kind is served: API group, version and resource (plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    pub kind: Kind,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

/// Every kind the index reads, with the API version ambientd reads it at.
pub const WATCHED: [Watched; 10] = [
    Watched::new(Kind::Namespace, "", "v1", "namespaces"),
    Watched::new(Kind::Node, "", "v1", "nodes"),
    Watched::new(Kind::Pod, "", "v1", "pods"),
    Watched::new(Kind::Service, "", "v1", "services"),
    Watched::new(
        Kind::EndpointSlice,
        "discovery.k8s.io",
        "v1",
        "endpointslices",
    ),
    Watched::new(
        Kind::GatewayClass,
        "gateway.networking.k8s.io",
        "v1",
        "gatewayclasses",
    ),
    Watched::new(Kind::Gateway, "gateway.networking.k8s.io", "v1", "gateways"),
    Watched::new(
        Kind::HttpRoute,
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
    ),
    Watched::new(
        Kind::AuthorizationPolicy,
        "security.istio.io",
        "v1",
        "authorizationpolicies",
    ),
    Watched::new(
        Kind::PeerAuthentication,
        "security.istio.io",
        "v1",
        "peerauthentications",
    ),
];

/// Where `kind` is served.
pub fn watched(kind: Kind) -> &'static Watched {
    // WATCHED lists every Kind in declaration order.
    &WATCHED[kind as usize]
}

impl Watched {
    const fn new(
        kind: Kind,
        group: &'static str,
        version: &'static str,
        plural: &'static str,
    ) -> Self {
        Watched {
            kind,
            group,
            version,
            plural,
        }
    }

    /// `v1` or `group/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.as_str().to_string(),
            plural: self.plural.to_string(),
        }
    }

    /// `pods.v1`, `gateways.v1.gateway.networking.k8s.io`: how operators name a resource.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            format!("{}.{}", self.plural, self.version)
        } else {
            format!("{}.{}.{}", self.plural, self.version, self.group)
        }
    }
}

/// What the source watches, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSourceConfig {
    /// The kinds to watch (all by default).
    pub kinds: Vec<Kind>,
    /// Objects per list page.
    pub page_size: u32,
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        KubeSourceConfig {
            kinds: Kind::ALL.to_vec(),
            page_size: 500,
        }
    }
}

/// How far one kind's watcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KindState {
    /// Not listed yet.
    Waiting,
    /// Listed; this many objects are known.
    Synced { objects: usize },
    /// The API server does not serve it (404); it stays empty until it does.
    Missing,
}

#[derive(Debug, Default)]
struct Shared {
    states: Mutex<BTreeMap<Kind, KindState>>,
    /// Objects that did not parse, by object: the last problem of each.
    diagnostics: Mutex<BTreeMap<ObjectRef, SourceDiagnostic>>,
}

/// A running Kubernetes source. Dropping it stops every watcher.
pub struct KubeHandle {
    shared: Arc<Shared>,
    observations: StatusObservations,
    synced: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeHandle")
            .field("synced", &*self.synced.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeHandle {
    /// Turns true once the first [`Event::Reset`] (every kind listed) has been sent.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.clone()
    }

    /// Each watched kind's state.
    pub fn kinds(&self) -> BTreeMap<Kind, KindState> {
        lock(&self.shared.states).clone()
    }

    /// Objects that could not be parsed (kept out of the index, or kept at their last good version).
    pub fn diagnostics(&self) -> Vec<SourceDiagnostic> {
        lock(&self.shared.diagnostics).values().cloned().collect()
    }

    /// A closure giving [`KubeHandle::diagnostics`], for the admin API.
    pub fn diagnostics_fn(&self) -> impl Fn() -> Vec<SourceDiagnostic> + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || lock(&shared.diagnostics).values().cloned().collect()
    }

    /// The status conditions seen on the objects whose status ambientd writes.
    pub fn observations(&self) -> StatusObservations {
        self.observations.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a kind's watcher tells the batcher.
#[derive(Debug)]
enum Update {
    /// A (re)list finished: these objects are new or changed, these are gone.
    Listed {
        kind: Kind,
        applied: Vec<Object>,
        deleted: Vec<ObjectRef>,
    },
    /// A change seen while watching.
    Event(Event),
}

/// Starts one watcher per configured kind on the current runtime. Batches of events go to `tx`; the first
/// is a single [`Event::Reset`] once every kind has been listed. `errors` counts the objects and watch
/// events that could not be read (`ambientd_source_errors_total{source="kube"}` in the server; any
/// counter, e.g. `Counter::default()`, elsewhere).
pub fn start(
    client: ::kube::Client,
    config: &KubeSourceConfig,
    tx: mpsc::Sender<Vec<Event>>,
    errors: Counter,
) -> KubeHandle {
    let shared = Arc::new(Shared::default());
    let observations = StatusObservations::default();
    let (synced_tx, synced) = watch::channel(false);
    let (updates_tx, updates) = mpsc::channel(256);
    let kinds: BTreeSet<Kind> = config.kinds.iter().copied().collect();
    lock(&shared.states).extend(kinds.iter().map(|k| (*k, KindState::Waiting)));
    let mut tasks = Vec::new();
    for &kind in &kinds {
        let w = watched(kind);
        let watcher = KindWatcher {
            w,
            shared: Arc::clone(&shared),
            observations: observations.clone(),
            errors: errors.clone(),
            updates: updates_tx.clone(),
            known: HashMap::new(),
            missing: false,
        };
        let span = info_span!("kube_watch", resource = %w.resource_name());
        tasks.push(tokio::spawn(
            watcher
                .run(client.clone(), config.page_size)
                .instrument(span),
        ));
    }
    drop(updates_tx);
    tasks.push(tokio::spawn(
        batch(updates, tx, kinds, synced_tx).instrument(info_span!("kube_source")),
    ));
    KubeHandle {
        shared,
        observations,
        synced,
        tasks,
    }
}

/// Gathers the watchers' updates into batches: one Reset for the first sync of all kinds, then whatever
/// arrived together.
async fn batch(
    mut updates: mpsc::Receiver<Update>,
    tx: mpsc::Sender<Vec<Event>>,
    mut waiting: BTreeSet<Kind>,
    synced: watch::Sender<bool>,
) {
    let mut initial: Option<BTreeMap<ObjectRef, Object>> = Some(BTreeMap::new());
    if waiting.is_empty() && !send_initial(&mut initial, &tx, &synced).await {
        return;
    }
    while let Some(first) = updates.recv().await {
        let mut pending = vec![first];
        while let Ok(more) = updates.try_recv() {
            pending.push(more);
        }
        let mut out = Vec::new();
        for update in pending {
            match (&mut initial, update) {
                (
                    Some(objects),
                    Update::Listed {
                        kind,
                        applied,
                        deleted,
                    },
                ) => {
                    waiting.remove(&kind);
                    for r in deleted {
                        objects.remove(&r);
                    }
                    for o in applied {
                        objects.insert(o.object_ref(), o);
                    }
                }
                (Some(objects), Update::Event(Event::Apply(o))) => {
                    objects.insert(o.object_ref(), o);
                }
                (Some(objects), Update::Event(Event::Delete(r))) => {
                    objects.remove(&r);
                }
                (Some(_), Update::Event(Event::Reset(_))) => {}
                (
                    None,
                    Update::Listed {
                        applied, deleted, ..
                    },
                ) => {
                    out.extend(applied.into_iter().map(Event::Apply));
                    out.extend(deleted.into_iter().map(Event::Delete));
                }
                (None, Update::Event(e)) => out.push(e),
            }
        }
        if waiting.is_empty() && !send_initial(&mut initial, &tx, &synced).await {
            return;
        }
        if !out.is_empty() && tx.send(out).await.is_err() {
            return;
        }
    }
}

/// Sends the first sync as one Reset, once (later calls do nothing). `false` when the receiver is gone.
async fn send_initial(
    initial: &mut Option<BTreeMap<ObjectRef, Object>>,
    tx: &mpsc::Sender<Vec<Event>>,
    synced: &watch::Sender<bool>,
) -> bool {
    let Some(objects) = initial.take() else {
        return true;
    };
    info!(
        objects = objects.len(),
        "every kind listed: the index is complete"
    );
    if tx
        .send(vec![Event::Reset(objects.into_values().collect())])
        .await
        .is_err()
    {
        return false;
    }
    let _ = synced.send(true);
    true
}

/// One kind's watcher and what it knows of that kind.
struct KindWatcher {
    w: &'static Watched,
    shared: Arc<Shared>,
    observations: StatusObservations,
    /// Objects and watch events that could not be read.
    errors: Counter,
    updates: mpsc::Sender<Update>,
    /// Every object passed on, with its `resourceVersion`.
    known: HashMap<ObjectRef, String>,
    /// The server does not serve the kind (its last list answered 404).
    missing: bool,
}

/// A list in progress.
#[derive(Debug, Default)]
struct Relist {
    seen: HashSet<ObjectRef>,
    applied: Vec<Object>,
    versions: Vec<(ObjectRef, String)>,
}

impl KindWatcher {
    async fn run(mut self, client: ::kube::Client, page_size: u32) {
        let api: Api<DynamicObject> = Api::all_with(client, &self.w.api_resource());
        let mut config = watcher::Config::default().page_size(page_size);
        if self.w.kind == Kind::Pod {
            config = config.fields("status.phase!=Failed");
        }
        let mut backoff = Backoff::default();
        // One watcher per turn; a new one (starting with a list) when the type went away.
        loop {
            let stream = watcher(api.clone(), config.clone());
            tokio::pin!(stream);
            let mut relist: Option<Relist> = None;
            let next = loop {
                let Some(item) = stream.next().await else {
                    break Next::Stop;
                };
                let next = match item {
                    Ok(watcher::Event::Init) => {
                        relist = Some(Relist::default());
                        Next::Continue
                    }
                    Ok(watcher::Event::InitApply(obj)) => {
                        if let Some(r) = relist.as_mut() {
                            self.relisted(r, obj);
                        }
                        Next::Continue
                    }
                    Ok(watcher::Event::InitDone) => {
                        backoff.reset();
                        match relist.take() {
                            Some(r) => self.list_done(r).await,
                            None => Next::Continue,
                        }
                    }
                    Ok(watcher::Event::Apply(obj)) => {
                        backoff.reset();
                        self.applied(obj).await
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        backoff.reset();
                        self.deleted(obj).await
                    }
                    Err(e) => {
                        // An expired version is cured by listing again at once; anything else waits.
                        let expired = matches!(&e, watcher::Error::WatchError(s) if s.code == 410);
                        let next = self.failed(e, &api).await;
                        if next == Next::Continue && !expired {
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                        next
                    }
                };
                if next != Next::Continue {
                    break next;
                }
            };
            if next == Next::Stop {
                // The batcher is gone: the source was dropped.
                return;
            }
        }
    }

    fn location(&self) -> String {
        format!("kube {}", self.w.resource_name())
    }

    fn problem(&self, object: &ObjectRef, message: String) {
        warn!(object = %object, "{message}; keeping it out of the index");
        self.errors.inc();
        lock(&self.shared.diagnostics).insert(
            object.clone(),
            SourceDiagnostic {
                location: self.location(),
                object: object.to_string(),
                message,
            },
        );
    }

    fn clear_problem(&self, object: &ObjectRef) {
        lock(&self.shared.diagnostics).remove(object);
    }

    fn object_ref(&self, obj: &DynamicObject) -> Option<ObjectRef> {
        let name = obj.metadata.name.clone().filter(|n| !n.is_empty())?;
        let namespace = if self.w.kind.cluster_scoped() {
            String::new()
        } else {
            obj.metadata.namespace.clone().unwrap_or_default()
        };
        Some(ObjectRef::new(self.w.kind, namespace, name))
    }

    /// Parses an object, recording its status for the writer. `None` when it has no name or does not parse
    /// (the problem is recorded).
    fn parse(&self, obj: DynamicObject) -> Option<(ObjectRef, String, Option<Object>)> {
        let Some(object) = self.object_ref(&obj) else {
            debug!("an object without a name; skipped");
            return None;
        };
        let version = obj.metadata.resource_version.clone().unwrap_or_default();
        let (value, status, generation) = to_value(self.w, obj);
        self.observations
            .observe(object.clone(), status.as_ref(), generation);
        match Object::from_value_of(self.w.kind, value) {
            Ok(parsed) => {
                self.clear_problem(&object);
                Some((object, version, Some(parsed)))
            }
            Err(e) => {
                self.problem(&object, describe(&e));
                Some((object, version, None))
            }
        }
    }

    fn relisted(&self, relist: &mut Relist, obj: DynamicObject) {
        let version = obj.metadata.resource_version.as_deref().unwrap_or("");
        if let Some(object) = self.object_ref(&obj)
            && !version.is_empty()
            && self.known.get(&object).is_some_and(|v| v == version)
        {
            relist.seen.insert(object);
            return;
        }
        let Some((object, version, parsed)) = self.parse(obj) else {
            return;
        };
        relist.seen.insert(object.clone());
        // An object that does not parse keeps its last good version (if any).
        if let Some(parsed) = parsed {
            relist.applied.push(parsed);
            relist.versions.push((object, version));
        }
    }

    async fn list_done(&mut self, relist: Relist) -> Next {
        let deleted: Vec<ObjectRef> = self
            .known
            .keys()
            .filter(|r| !relist.seen.contains(*r))
            .cloned()
            .collect();
        for r in &deleted {
            self.known.remove(r);
            self.observations.forget(r);
            self.clear_problem(r);
        }
        self.known.extend(relist.versions);
        if self.missing {
            info!("the API server serves it now");
            self.missing = false;
        }
        debug!(
            objects = self.known.len(),
            changed = relist.applied.len(),
            deleted = deleted.len(),
            "listed"
        );
        lock(&self.shared.states).insert(
            self.w.kind,
            KindState::Synced {
                objects: self.known.len(),
            },
        );
        self.send(Update::Listed {
            kind: self.w.kind,
            applied: relist.applied,
            deleted,
        })
        .await
    }

    async fn applied(&mut self, obj: DynamicObject) -> Next {
        let Some((object, version, parsed)) = self.parse(obj) else {
            return Next::Continue;
        };
        if !version.is_empty() && self.known.get(&object) == Some(&version) {
            return Next::Continue;
        }
        let Some(parsed) = parsed else {
            return Next::Continue;
        };
        if self.missing {
            // Served again (a watch resumed after the CRD came back).
            info!("the API server serves it again");
            self.missing = false;
            lock(&self.shared.states).insert(self.w.kind, KindState::Synced { objects: 0 });
        }
        self.known.insert(object, version);
        self.set_count();
        self.send(Update::Event(Event::Apply(parsed))).await
    }

    async fn deleted(&mut self, obj: DynamicObject) -> Next {
        let Some(object) = self.object_ref(&obj) else {
            return Next::Continue;
        };
        self.known.remove(&object);
        self.observations.forget(&object);
        self.clear_problem(&object);
        self.set_count();
        self.send(Update::Event(Event::Delete(object))).await
    }

    fn set_count(&self) {
        let mut states = lock(&self.shared.states);
        if let Some(KindState::Synced { objects }) = states.get_mut(&self.w.kind) {
            *objects = self.known.len();
        }
    }

    async fn failed(&mut self, e: watcher::Error, api: &Api<DynamicObject>) -> Next {
        match &e {
            // A list of a type the server does not serve: kube-rs tries again with backoff.
            watcher::Error::InitialListFailed(inner) if crate::api_errors::is_not_found(inner) => {
                return self.gone().await;
            }
            // The resourceVersion expired: kube-rs lists again, which is the cure.
            watcher::Error::WatchError(status) if status.code == 410 => {
                info!("watch expired (410 Gone): listing again");
                return Next::Continue;
            }
            _ => {}
        }
        self.errors.inc();
        warn!("{e}; retrying with backoff");
        // kube-rs resumes a failed watch from its version forever. If the type itself went away (a CRD
        // deleted: the server answers the watch with a plain 404 page), its objects are gone too: a new
        // watcher lists, and keeps listing with backoff until the type is back.
        if let watcher::Error::WatchFailed(_) | watcher::Error::WatchStartFailed(_) = &e {
            let probe = ::kube::api::ListParams::default().limit(1);
            if let Err(inner) = api.list_metadata(&probe).await
                && crate::api_errors::is_not_found(&inner)
            {
                let next = self.gone().await;
                return if next == Next::Stop {
                    next
                } else {
                    Next::Restart
                };
            }
        }
        Next::Continue
    }

    /// The server does not serve the type (any more): it counts as listed and empty.
    async fn gone(&mut self) -> Next {
        if self.missing {
            return Next::Continue;
        }
        self.missing = true;
        warn!(
            "the API server does not serve {} ({} {}; CRD not installed?): {} stays empty; \
             checking again with backoff",
            self.w.resource_name(),
            self.w.api_version(),
            self.w.kind,
            self.w.kind
        );
        let deleted: Vec<ObjectRef> = self.known.drain().map(|(r, _)| r).collect();
        for r in &deleted {
            self.observations.forget(r);
            self.clear_problem(r);
        }
        lock(&self.shared.states).insert(self.w.kind, KindState::Missing);
        self.send(Update::Listed {
            kind: self.w.kind,
            applied: Vec::new(),
            deleted,
        })
        .await
    }

    async fn send(&self, update: Update) -> Next {
        match self.updates.send(update).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::Stop,
        }
    }
}

/// The wait between a kind's failed calls: 0.8 s doubling to 30 s, plus up to a quarter of jitter. Reset
/// by progress (a completed list, an event), not by a new attempt, so that a list failing for good (a
/// missing CRD, a 403) is retried every 30 s rather than every second.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(800);
    const MAX: Duration = Duration::from_secs(30);

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        let spread = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 1000);
        delay + delay.mul_f64(f64::from(spread) / 4000.0)
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

/// What a kind's watcher does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    /// Start a new watcher (with a list).
    Restart,
    /// The source is gone.
    Stop,
}

/// A model error as an operator reads it.
fn describe(e: &ModelError) -> String {
    format!("cannot read it: {e}")
}

/// The object as the model parses it, with the fields the index never reads removed; and, for the kinds
/// whose status ambientd writes, that status (removed from the value) and `metadata.generation`.
pub fn to_value(w: &Watched, obj: DynamicObject) -> (Value, Option<Value>, Option<i64>) {
    let DynamicObject {
        mut metadata, data, ..
    } = obj;
    let generation = metadata.generation;
    metadata.managed_fields = None;
    metadata.finalizers = None;
    metadata.resource_version = None;
    metadata.generation = None;
    if let Some(a) = metadata.annotations.as_mut() {
        a.retain(|k, _| annotations::is_kept(k));
    }
    let mut map = match data {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let status = if condition_type(w.kind).is_some() {
        map.remove("status")
    } else {
        None
    };
    map.insert("apiVersion".to_string(), Value::String(w.api_version()));
    map.insert(
        "kind".to_string(),
        Value::String(w.kind.as_str().to_string()),
    );
    map.insert(
        "metadata".to_string(),
        serde_json::to_value(&metadata).unwrap_or(Value::Null),
    );
    (Value::Object(map), status, generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_is_watched_at_its_own_index() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(WATCHED[i].kind, *kind);
            assert_eq!(watched(*kind).kind, *kind);
        }
        assert_eq!(
            watched(Kind::HttpRoute).api_version(),
            "gateway.networking.k8s.io/v1"
        );
        assert_eq!(watched(Kind::Pod).resource_name(), "pods.v1");
        assert_eq!(
            watched(Kind::AuthorizationPolicy).resource_name(),
            "authorizationpolicies.v1.security.istio.io"
        );
    }

    #[test]
    fn metadata_is_stripped_and_status_is_set_aside() {
        let raw: DynamicObject = serde_json::from_value(json!({
            "metadata": {
                "name": "cart", "namespace": "shop", "uid": "u1", "resourceVersion": "42", "generation": 3,
                "labels": {"app": "cart"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "networking.istio.io/traffic-distribution": "PreferClose",
                },
                "finalizers": ["x"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"clusterIP": "10.96.0.10"},
            "status": {"conditions": [{"type": "istio.io/WaypointBound", "status": "True"}]},
        }))
        .unwrap();
        let (value, status, generation) = to_value(watched(Kind::Service), raw);
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "cart", "namespace": "shop", "uid": "u1",
                    "labels": {"app": "cart"},
                    "annotations": {"networking.istio.io/traffic-distribution": "PreferClose"},
                },
                "spec": {"clusterIP": "10.96.0.10"},
            })
        );
        assert_eq!(
            status,
            Some(json!({"conditions": [{"type": "istio.io/WaypointBound", "status": "True"}]}))
        );
        assert_eq!(generation, Some(3));
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs_f64(base);
            assert!(
                *delay >= base && *delay <= base + base / 4,
                "{delay:?} for {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_secs(1));
    }

    #[test]
    fn pods_keep_their_status() {
        let raw: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "status": {"podIP": "10.0.0.1", "phase": "Running"},
        }))
        .unwrap();
        let (value, status, _) = to_value(watched(Kind::Pod), raw);
        assert_eq!(
            value["status"],
            json!({"podIP": "10.0.0.1", "phase": "Running"})
        );
        assert_eq!(status, None);
    }
}
