//! A fake Kubernetes API server on 127.0.0.1 for tests: it speaks enough of the API for the real kube-rs
//! client to list, watch, get, create, update, patch and delete objects of the resource types it is told
//! to serve, and records every request.
//!
//! - **Types.** Only registered [`ResourceType`]s are served; any other path answers
//!   `404 page not found` in plain text, as the API server does for a group or resource it does not
//!   know (a CRD that is not installed). [`FakeKubeApi::serve_type`] / [`FakeKubeApi::remove_type`]
//!   install and uninstall one while running.
//! - **Versions.** One counter gives every write its `resourceVersion`; lists answer at the current one,
//!   paged with `limit`/`continue`. A watch replays the changes after its `resourceVersion`, then streams
//!   new ones as JSON lines; a `resourceVersion` older than the last [`FakeKubeApi::expire`] is answered
//!   with an `ERROR` event of code 410 (`Expired`), as are the watches open at that moment.
//!   [`FakeKubeApi::bookmark`] sends `BOOKMARK`s to watches that asked for them;
//!   [`FakeKubeApi::close_watches`] ends open watches cleanly.
//! - **Field selectors** `path=value`, `path==value` and `path!=value` (comma-separated) filter lists and
//!   watches; an object modified out of (into) the selection is sent as `DELETED` (`ADDED`).
//! - **Writes.** `POST` creates (`409 AlreadyExists`), `PUT` replaces (`409 Conflict` on a stale
//!   `metadata.resourceVersion`), `PATCH` merges the body as a JSON merge patch whatever its content type
//!   (server-side apply included: no field ownership is kept), `DELETE` removes. The `status` subresource
//!   changes only `status`; writes to the object keep its `status`.
//! - **Own handlers.** [`FakeKubeApi::on`] answers a method and exact path before the generic handling,
//!   e.g. `POST /apis/authentication.k8s.io/v1/tokenreviews`.
//! - **Requests.** [`FakeKubeApi::requests`] lists them (method, path, query, bearer token, content type,
//!   JSON body); [`Recorded::api_call`] names each as `(group, resource, verb)` in RBAC terms, and
//!   [`FakeKubeApi::wait_for`] waits until a condition on the server's state holds.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long [`FakeKubeApi::wait_for`] waits before failing the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A resource type the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn namespaces() -> Self {
        Self::new("", "v1", "namespaces", "Namespace", false)
    }
    pub fn nodes() -> Self {
        Self::new("", "v1", "nodes", "Node", false)
    }
    pub fn pods() -> Self {
        Self::new("", "v1", "pods", "Pod", true)
    }
    pub fn services() -> Self {
        Self::new("", "v1", "services", "Service", true)
    }
    pub fn endpoint_slices() -> Self {
        Self::new(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        )
    }
    pub fn leases() -> Self {
        Self::new("coordination.k8s.io", "v1", "leases", "Lease", true)
    }
    pub fn secrets() -> Self {
        Self::new("", "v1", "secrets", "Secret", true)
    }
    pub fn config_maps() -> Self {
        Self::new("", "v1", "configmaps", "ConfigMap", true)
    }
    pub fn gateway_classes() -> Self {
        Self::new(
            "gateway.networking.k8s.io",
            "v1",
            "gatewayclasses",
            "GatewayClass",
            false,
        )
    }
    pub fn gateways() -> Self {
        Self::new(
            "gateway.networking.k8s.io",
            "v1",
            "gateways",
            "Gateway",
            true,
        )
    }
    pub fn http_routes() -> Self {
        Self::new(
            "gateway.networking.k8s.io",
            "v1",
            "httproutes",
            "HTTPRoute",
            true,
        )
    }
    pub fn authorization_policies() -> Self {
        Self::new(
            "security.istio.io",
            "v1",
            "authorizationpolicies",
            "AuthorizationPolicy",
            true,
        )
    }
    pub fn peer_authentications() -> Self {
        Self::new(
            "security.istio.io",
            "v1",
            "peerauthentications",
            "PeerAuthentication",
            true,
        )
    }

    /// What every cluster serves: the core kinds ambientd reads, EndpointSlices, Leases, and the Secrets
    /// and ConfigMaps of the CA.
    pub fn builtin() -> Vec<Self> {
        vec![
            Self::namespaces(),
            Self::nodes(),
            Self::pods(),
            Self::services(),
            Self::endpoint_slices(),
            Self::leases(),
            Self::secrets(),
            Self::config_maps(),
        ]
    }

    /// The Gateway API CRDs ambientd reads.
    pub fn gateway_api() -> Vec<Self> {
        vec![
            Self::gateway_classes(),
            Self::gateways(),
            Self::http_routes(),
        ]
    }

    /// The Istio security CRDs.
    pub fn istio() -> Vec<Self> {
        vec![Self::authorization_policies(), Self::peer_authentications()]
    }

    /// Everything ambientd reads or writes.
    pub fn all() -> Vec<Self> {
        let mut all = Self::builtin();
        all.extend(Self::gateway_api());
        all.extend(Self::istio());
        all
    }
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The bearer token, if any.
    pub token: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// `(group, resource, verb)` as an RBAC rule names this call (a subresource as `resource/sub`), or
    /// `None` for a path that is not a resource.
    pub fn api_call(&self) -> Option<(String, String, String)> {
        let target = parse_path(&self.path, |_, _, _| true)?;
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.plural),
            None => target.plural.clone(),
        };
        let verb = match (&self.method, target.name.is_some()) {
            (&Method::GET, false) if self.is_watch() => "watch",
            (&Method::GET, false) => "list",
            (&Method::GET, true) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, false) => "deletecollection",
            (&Method::DELETE, true) => "delete",
            _ => return None,
        };
        Some((target.group, resource, verb.to_string()))
    }
}

/// What a handler installed with [`FakeKubeApi::on`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// One stored change, replayed to watches.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    group: String,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
    /// The object before a modification.
    previous: Option<Value>,
}

type Key = (String, String, String, String);

#[derive(Default)]
struct State {
    rv: u64,
    uids: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Watches from a `resourceVersion` below this are expired.
    oldest: u64,
    expirations: u64,
    closings: u64,
    bookmarks: u64,
    hold_lists: bool,
    requests: Vec<Recorded>,
    handlers: Vec<(Method, String, Handler)>,
}

/// A running fake API server; dropping it stops it.
pub struct FakeKubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tick: Arc<watch::Sender<u64>>,
    task: JoinHandle<()>,
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A read-only view of the server's state for [`FakeKubeApi::wait_for`].
pub struct Snapshot<'a> {
    state: &'a State,
}

impl Snapshot<'_> {
    pub fn requests(&self) -> &[Recorded] {
        &self.state.requests
    }

    pub fn object(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.state.objects.get(&key(t, namespace, name))
    }
}

fn key(t: &ResourceType, namespace: &str, name: &str) -> Key {
    let namespace = if t.namespaced { namespace } else { "" };
    (
        t.group.clone(),
        t.plural.clone(),
        namespace.to_string(),
        name.to_string(),
    )
}

impl FakeKubeApi {
    /// Starts serving `types` on 127.0.0.1 (a free port).
    pub async fn start(types: impl IntoIterator<Item = ResourceType>) -> FakeKubeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            rv: 1,
            types: types.into_iter().collect(),
            ..State::default()
        }));
        let (tick, _) = watch::channel(0u64);
        let tick = Arc::new(tick);
        let task = tokio::spawn(accept(listener, Arc::clone(&state), Arc::clone(&tick)));
        FakeKubeApi {
            addr,
            state,
            tick,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server with a bearer token.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             users:\n- name: fake\n  user:\n    token: {token}\n",
            self.url()
        )
    }

    /// Writes [`FakeKubeApi::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path, token: &str) {
        std::fs::write(path, self.kubeconfig(token)).expect("write kubeconfig");
    }

    /// A kube-rs client for this server, sending `token`.
    pub async fn client(&self, token: &str) -> kube::Client {
        let file =
            kube::config::Kubeconfig::from_yaml(&self.kubeconfig(token)).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    fn bump(&self) {
        self.tick.send_modify(|n| *n += 1);
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut lock(&self.state));
        self.bump();
        out
    }

    /// Starts serving a type (installs a CRD).
    pub fn serve_type(&self, t: ResourceType) {
        self.with_state(|s| {
            if !s.types.contains(&t) {
                s.types.push(t);
            }
        });
    }

    /// Stops serving a type and drops its objects (uninstalls a CRD); its open watches end.
    pub fn remove_type(&self, group: &str, plural: &str) {
        self.with_state(|s| {
            s.types
                .retain(|t| !(t.group == group && t.plural == plural));
            s.objects.retain(|k, _| !(k.0 == group && k.1 == plural));
        });
    }

    /// Answers `method path` (exact path, no query) with `handler` instead of the generic handling.
    pub fn on(
        &self,
        method: Method,
        path: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) {
        self.with_state(|s| {
            s.handlers
                .push((method, path.to_string(), Arc::new(handler)))
        });
    }

    /// Creates or replaces an object (by its `apiVersion`, `kind`, namespace and name), as a watch
    /// sees it: `ADDED` or `MODIFIED`. Returns its new `resourceVersion`.
    pub fn apply(&self, object: Value) -> u64 {
        self.with_state(|s| s.store(object, true, false).expect("apply"))
    }

    /// Creates or replaces an object without telling open watches (a change they miss); only a relist
    /// sees it.
    pub fn apply_quietly(&self, object: Value) -> u64 {
        self.with_state(|s| s.store(object, false, false).expect("apply"))
    }

    /// Replaces an object's `status` (as a controller's status write would), as a `MODIFIED` event.
    pub fn set_status(&self, t: &ResourceType, namespace: &str, name: &str, status: Value) -> u64 {
        self.with_state(|s| {
            let mut object = s
                .objects
                .get(&key(t, namespace, name))
                .cloned()
                .expect("object exists");
            object["status"] = status;
            s.store(object, true, true).expect("status")
        })
    }

    /// Deletes an object (a `DELETED` event); `false` when it does not exist.
    pub fn delete(&self, t: &ResourceType, namespace: &str, name: &str) -> bool {
        self.with_state(|s| s.remove(t, namespace, name, true))
    }

    /// Deletes an object without telling open watches (a deletion they miss).
    pub fn delete_quietly(&self, t: &ResourceType, namespace: &str, name: &str) -> bool {
        self.with_state(|s| s.remove(t, namespace, name, false))
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .objects
            .get(&key(t, namespace, name))
            .cloned()
    }

    /// The current `resourceVersion`.
    pub fn resource_version(&self) -> u64 {
        lock(&self.state).rv
    }

    /// Compacts the history: open watches get `ERROR 410 Expired` and end; watches from an older
    /// `resourceVersion` are refused the same way, so clients list again.
    pub fn expire(&self) {
        self.with_state(|s| {
            s.oldest = s.rv + 1;
            s.history.clear();
            s.expirations += 1;
        });
    }

    /// Ends every open watch cleanly (clients resume from the last version they saw).
    pub fn close_watches(&self) {
        self.with_state(|s| s.closings += 1);
    }

    /// Sends a `BOOKMARK` at the current `resourceVersion` to every open watch that allows them.
    pub fn bookmark(&self) {
        self.with_state(|s| s.bookmarks += 1);
    }

    /// While held, list requests wait (the first sync of a client does not complete).
    pub fn hold_lists(&self, hold: bool) {
        self.with_state(|s| s.hold_lists = hold);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Waits until `check` returns `Some` (it is called at once and after every request or change),
    /// failing the test after [`WAIT`] with `what`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&Snapshot<'_>) -> Option<T>,
    ) -> T {
        let mut tick = self.tick.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            tick.borrow_and_update();
            if let Some(out) = check(&Snapshot {
                state: &lock(&self.state),
            }) {
                return out;
            }
            match tokio::time::timeout_at(deadline, tick.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Waits until at least `n` requests match `filter`; returns them all.
    pub async fn wait_for_requests(
        &self,
        what: &str,
        n: usize,
        filter: impl Fn(&Recorded) -> bool,
    ) -> Vec<Recorded> {
        self.wait_for(what, |s| {
            let found: Vec<Recorded> = s.requests().iter().filter(|r| filter(r)).cloned().collect();
            (found.len() >= n).then_some(found)
        })
        .await
    }
}

impl State {
    fn find_type(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores an object, giving it a `resourceVersion`, uid, creation time and generation; records the
    /// change for watches when `announce`. `status_only` keeps everything but `status` as it was.
    fn store(
        &mut self,
        mut object: Value,
        announce: bool,
        status_only: bool,
    ) -> Result<u64, String> {
        let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        let t = self
            .find_type(&api_version, &kind)
            .ok_or_else(|| format!("{api_version} {kind} is not served"))?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or("metadata.name is missing")?
            .to_string();
        let namespace = if t.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let k = key(&t, &namespace, &name);
        let previous = self.objects.get(&k).cloned();
        if let Some(prev) = &previous {
            if status_only {
                let status = object.get("status").cloned();
                object = prev.clone();
                match status {
                    Some(status) => object["status"] = status,
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            } else if object.get("status").is_none()
                && let Some(status) = prev.get("status")
            {
                object["status"] = status.clone();
            }
        }
        let rv = self.next_rv();
        let generation = match &previous {
            Some(prev) => {
                let old = prev["metadata"]["generation"].as_i64().unwrap_or(1);
                if prev.get("spec") != object.get("spec") {
                    old + 1
                } else {
                    old
                }
            }
            None => 1,
        };
        let uid = match previous
            .as_ref()
            .and_then(|p| p["metadata"]["uid"].as_str())
        {
            Some(uid) => uid.to_string(),
            None => {
                self.uids += 1;
                format!("uid-{}", self.uids)
            }
        };
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = json!(uid);
        meta["generation"] = json!(generation);
        if t.namespaced {
            meta["namespace"] = json!(namespace);
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!("2025-11-24T16:00:00Z");
        }
        if announce {
            self.history.push(Change {
                rv,
                group: t.group.clone(),
                plural: t.plural.clone(),
                namespace,
                kind: if previous.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                },
                object: object.clone(),
                previous,
            });
        }
        self.objects.insert(k, object);
        Ok(rv)
    }

    fn remove(&mut self, t: &ResourceType, namespace: &str, name: &str, announce: bool) -> bool {
        let k = key(t, namespace, name);
        let Some(mut object) = self.objects.remove(&k) else {
            return false;
        };
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if announce {
            self.history.push(Change {
                rv,
                group: t.group.clone(),
                plural: t.plural.clone(),
                namespace: k.2,
                kind: "DELETED",
                object,
                previous: None,
            });
        }
        true
    }
}

/// A request path resolved against the served types.
#[derive(Debug, Clone)]
struct Target {
    group: String,
    version: String,
    plural: String,
    /// The namespace of a namespaced path (`None`: all namespaces, or a cluster-scoped type).
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Parses `/api/v1/...` or `/apis/<group>/<version>/...`; `is_namespaced(group, version, plural)` tells
/// `/api/v1/namespaces/<ns>/<plural>` from a Namespace's subresource.
fn parse_path(path: &str, is_namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let target = |namespace: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Some(Target {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if is_namespaced(group, version, plural) => {
            match tail {
                [] => target(Some(ns), plural, None, None),
                [name] => target(Some(ns), plural, Some(name), None),
                [name, sub] => target(Some(ns), plural, Some(name), Some(sub)),
                _ => None,
            }
        }
        [plural] => target(None, plural, None, None),
        [plural, name] => target(None, plural, Some(name), None),
        [plural, name, sub] => target(None, plural, Some(name), Some(sub)),
        _ => None,
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn json_reply(status: u16, body: &Value) -> Response<Body> {
    full(status, "application/json", body.to_string().into_bytes())
}

fn not_served() -> Response<Body> {
    full(
        404,
        "text/plain; charset=utf-8",
        b"404 page not found\n".to_vec(),
    )
}

/// A `Status` document, as the API server answers a failed call.
fn failure(code: u16, reason: &str, message: String) -> Reply {
    Reply::json(
        code,
        json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

fn status_reply(code: u16, reason: &str, message: String) -> Response<Body> {
    let reply = failure(code, reason, message);
    json_reply(reply.status, &reply.body)
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>, tick: Arc<watch::Sender<u64>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                let tick = Arc::clone(&tick);
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        let tick = Arc::clone(&tick);
                        async move { Ok::<_, Infallible>(handle(req, state, tick).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    tick: Arc<watch::Sender<u64>>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req.uri().query().map(form_pairs).unwrap_or_default();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let token = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
    let content_type = header("content-type");
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let recorded = Recorded {
        method: method.clone(),
        path: path.clone(),
        query,
        token,
        content_type,
        body,
    };
    let handler = {
        let mut s = lock(&state);
        s.requests.push(recorded.clone());
        s.handlers
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, h)| Arc::clone(h))
    };
    tick.send_modify(|n| *n += 1);
    if let Some(handler) = handler {
        let reply = handler(&recorded);
        return json_reply(reply.status, &reply.body);
    }

    let target = {
        let s = lock(&state);
        parse_path(&path, |g, v, p| {
            s.types
                .iter()
                .any(|t| t.group == g && t.version == v && t.plural == p && t.namespaced)
        })
    };
    let Some(target) = target else {
        return not_served();
    };
    let t = lock(&state)
        .types
        .iter()
        .find(|t| {
            t.group == target.group && t.version == target.version && t.plural == target.plural
        })
        .cloned();
    let Some(t) = t else {
        return not_served();
    };
    match (&method, &target.name) {
        (&Method::GET, None) if recorded.is_watch() => {
            watch_response(&t, &target, &recorded, state, tick)
        }
        (&Method::GET, None) => list(&t, &target, &recorded, &state, &tick).await,
        (&Method::GET, Some(name)) => {
            let ns = target.namespace.as_deref().unwrap_or("");
            match lock(&state).objects.get(&key(&t, ns, name)) {
                Some(o) => json_reply(200, o),
                None => not_found(&t, name),
            }
        }
        (&Method::POST, None) => write(&state, &tick, 201, |s| {
            s.create(&t, &target, recorded.body.clone())
        }),
        (&Method::PUT, Some(name)) => write(&state, &tick, 200, |s| {
            s.replace(&t, &target, name, recorded.body.clone())
        }),
        (&Method::PATCH, Some(name)) => write(&state, &tick, 200, |s| {
            s.patch(&t, &target, name, recorded.body.clone())
        }),
        (&Method::DELETE, Some(name)) => write(&state, &tick, 200, |s| {
            let ns = target.namespace.clone().unwrap_or_default();
            let object = s.objects.get(&key(&t, &ns, name)).cloned();
            match object {
                Some(o) if s.remove(&t, &ns, name, true) => Ok(o),
                _ => Err(missing(&t, name)),
            }
        }),
        _ => status_reply(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

fn missing(t: &ResourceType, name: &str) -> Reply {
    failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", t.plural),
    )
}

fn not_found(t: &ResourceType, name: &str) -> Response<Body> {
    let reply = missing(t, name);
    json_reply(reply.status, &reply.body)
}

/// Runs a write under the lock, then wakes the watches; `ok` is the status of a success.
fn write(
    state: &Mutex<State>,
    tick: &watch::Sender<u64>,
    ok: u16,
    f: impl FnOnce(&mut State) -> Result<Value, Reply>,
) -> Response<Body> {
    let result = f(&mut lock(state));
    tick.send_modify(|n| *n += 1);
    match result {
        Ok(object) => json_reply(ok, &object),
        Err(reply) => json_reply(reply.status, &reply.body),
    }
}

impl State {
    /// `POST`: a new object (`409 AlreadyExists` when the name is taken).
    fn create(
        &mut self,
        t: &ResourceType,
        target: &Target,
        mut object: Value,
    ) -> Result<Value, Reply> {
        if let (Some(ns), true) = (&target.namespace, t.namespaced) {
            object["metadata"]["namespace"] = json!(ns);
        }
        object["apiVersion"] = json!(t.api_version());
        object["kind"] = json!(t.kind);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let k = key(t, &ns, &name);
        if self.objects.contains_key(&k) {
            return Err(failure(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", t.plural),
            ));
        }
        self.store(object, true, false)
            .map_err(|e| failure(422, "Invalid", e))?;
        Ok(self.objects.get(&k).cloned().unwrap_or(Value::Null))
    }

    /// `PUT`: replaces an object (`409 Conflict` on a stale `metadata.resourceVersion`); on the `status`
    /// subresource only its status.
    fn replace(
        &mut self,
        t: &ResourceType,
        target: &Target,
        name: &str,
        mut object: Value,
    ) -> Result<Value, Reply> {
        let ns = target.namespace.clone().unwrap_or_default();
        let k = key(t, &ns, name);
        let Some(current) = self.objects.get(&k) else {
            return Err(missing(t, name));
        };
        let wanted = object["metadata"]["resourceVersion"].as_str();
        if wanted.is_some() && wanted != current["metadata"]["resourceVersion"].as_str() {
            return Err(failure(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                    t.plural
                ),
            ));
        }
        object["apiVersion"] = json!(t.api_version());
        object["kind"] = json!(t.kind);
        object["metadata"]["name"] = json!(name);
        if t.namespaced {
            object["metadata"]["namespace"] = json!(ns);
        }
        let status_only = target.subresource.as_deref() == Some("status");
        self.store(object, true, status_only)
            .map_err(|e| failure(422, "Invalid", e))?;
        Ok(self.objects.get(&k).cloned().unwrap_or(Value::Null))
    }

    /// `PATCH` (any patch type, merged as a JSON merge patch); on the `status` subresource only `status`.
    fn patch(
        &mut self,
        t: &ResourceType,
        target: &Target,
        name: &str,
        mut patch: Value,
    ) -> Result<Value, Reply> {
        let ns = target.namespace.clone().unwrap_or_default();
        let k = key(t, &ns, name);
        let Some(mut object) = self.objects.get(&k).cloned() else {
            return Err(missing(t, name));
        };
        let status_only = target.subresource.as_deref() == Some("status");
        if let Some(map) = patch.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
            map.remove("metadata");
            if status_only {
                map.retain(|k, _| k == "status");
            } else {
                map.remove("status");
            }
        }
        merge(&mut object, patch);
        self.store(object, true, status_only)
            .map_err(|e| failure(422, "Invalid", e))?;
        Ok(self.objects.get(&k).cloned().unwrap_or(Value::Null))
    }
}

/// `a=b&c=d`, percent-decoded.
pub fn form_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON merge patch (RFC 7386): objects merge, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(map) = target.as_object_mut() {
                for (k, v) in patch {
                    if v.is_null() {
                        map.remove(&k);
                    } else {
                        merge(map.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other,
    }
}

/// A field selector: `(path, wanted equal, value)` terms, all of which must hold.
fn field_selector(recorded: &Recorded) -> Vec<(Vec<String>, bool, String)> {
    let Some(selector) = recorded.param("fieldSelector") else {
        return Vec::new();
    };
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .filter_map(|term| {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else {
                let (p, v) = term.split_once('=')?;
                (p, true, v)
            };
            Some((
                path.split('.').map(str::to_string).collect(),
                equal,
                value.to_string(),
            ))
        })
        .collect()
}

fn selected(selector: &[(Vec<String>, bool, String)], object: &Value) -> bool {
    selector.iter().all(|(path, equal, value)| {
        let mut v = object;
        for p in path {
            v = &v[p.as_str()];
        }
        let actual = v.as_str().unwrap_or("");
        (actual == value) == *equal
    })
}

fn in_scope(t: &ResourceType, target: &Target, group: &str, plural: &str, namespace: &str) -> bool {
    group == t.group
        && plural == t.plural
        && target.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

async fn list(
    t: &ResourceType,
    target: &Target,
    recorded: &Recorded,
    state: &Arc<Mutex<State>>,
    tick: &Arc<watch::Sender<u64>>,
) -> Response<Body> {
    let mut ticks = tick.subscribe();
    loop {
        ticks.borrow_and_update();
        if !lock(state).hold_lists {
            break;
        }
        if ticks.changed().await.is_err() {
            break;
        }
    }
    let selector = field_selector(recorded);
    let s = lock(state);
    let mut items: Vec<Value> = s
        .objects
        .iter()
        .filter(|(k, o)| in_scope(t, target, &k.0, &k.1, &k.2) && selected(&selector, o))
        .map(|(_, o)| {
            let mut o = o.clone();
            // Items of a list carry no apiVersion/kind, as the API server sends them.
            if let Some(map) = o.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
            o
        })
        .collect();
    let start: usize = recorded
        .param("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = recorded
        .param("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    let end = start.saturating_add(limit).min(total);
    let page: Vec<Value> = items.drain(start.min(total)..end).collect();
    let mut metadata = json!({ "resourceVersion": s.rv.to_string() });
    if end < total {
        metadata["continue"] = json!(end.to_string());
    }
    json_reply(
        200,
        &json!({
            "apiVersion": t.api_version(),
            "kind": format!("{}List", t.kind),
            "metadata": metadata,
            "items": page,
        }),
    )
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn expired_line(rv: &str) -> Bytes {
    watch_line(
        "ERROR",
        &json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {rv}"), "reason": "Expired", "code": 410,
        }),
    )
}

fn watch_response(
    t: &ResourceType,
    target: &Target,
    recorded: &Recorded,
    state: Arc<Mutex<State>>,
    tick: Arc<watch::Sender<u64>>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let t = t.clone();
    let target = target.clone();
    let selector = field_selector(recorded);
    let bookmarks = recorded.param("allowWatchBookmarks") == Some("true");
    let requested = recorded.param("resourceVersion").unwrap_or("").to_string();
    let mut ticks = tick.subscribe();
    let (mut cursor, expirations, closings, mut bookmarks_seen, too_old) = {
        let s = lock(&state);
        let from = requested.parse::<u64>().ok().filter(|rv| *rv > 0);
        let too_old = from.is_some_and(|rv| rv < s.oldest);
        (
            from.unwrap_or(s.rv),
            s.expirations,
            s.closings,
            s.bookmarks,
            too_old,
        )
    };
    tokio::spawn(async move {
        if too_old {
            let _ = tx.send(expired_line(&requested)).await;
            return;
        }
        loop {
            ticks.borrow_and_update();
            let mut lines = Vec::new();
            let end;
            {
                let s = lock(&state);
                // What happened before a close or an expiry is sent first.
                for change in s.history.iter().filter(|c| c.rv > cursor) {
                    if !in_scope(
                        &t,
                        &target,
                        &change.group,
                        &change.plural,
                        &change.namespace,
                    ) {
                        continue;
                    }
                    let now = selected(&selector, &change.object);
                    let before = change.previous.as_ref().map(|p| selected(&selector, p));
                    let kind = match (change.kind, before, now) {
                        ("MODIFIED", Some(true), false) => "DELETED",
                        ("MODIFIED", Some(false), true) => "ADDED",
                        ("MODIFIED", Some(false), false) => continue,
                        ("ADDED" | "DELETED", _, false) => continue,
                        (kind, _, _) => kind,
                    };
                    let mut object = change.object.clone();
                    object["apiVersion"] = json!(t.api_version());
                    object["kind"] = json!(t.kind);
                    lines.push(watch_line(kind, &object));
                }
                cursor = cursor.max(s.rv);
                if bookmarks && s.bookmarks != bookmarks_seen {
                    lines.push(watch_line(
                        "BOOKMARK",
                        &json!({
                            "apiVersion": t.api_version(), "kind": t.kind,
                            "metadata": { "resourceVersion": s.rv.to_string() },
                        }),
                    ));
                }
                bookmarks_seen = s.bookmarks;
                if s.expirations != expirations {
                    lines.push(expired_line(&cursor.to_string()));
                    end = true;
                } else {
                    end = !s.types.contains(&t) || s.closings != closings;
                }
            }
            for line in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if end || ticks.changed().await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = StreamBody::new(tokio_stream::StreamExt::map(stream, |b| {
        Ok::<_, Infallible>(Frame::data(b))
    }));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}
