//! The Kubernetes source, leader election and status writes against the fake API server of
//! `support/kube_api.rs` on 127.0.0.1, through the real kube-rs client: the first sync as one Reset,
//! changes as they happen, relists after `410 Gone` that delete what vanished, bookmarks, missing CRDs,
//! `serve --kube` readiness, status written only by the Lease holder, and the API calls made.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use ambient_control_plane::cluster::{API_CALLS, KubeSettings, LeaseConfig};
use ambient_control_plane::serve::{AuthMethod, ServeConfig, ServeError, ServeSource, Server};
use ambient_control_plane::source::Event;
use ambient_control_plane::source::kube::{
    self as kube_source, KindState, KubeHandle, KubeSourceConfig,
};
use ambient_index::model::{Kind, ObjectRef};
use ambient_index::{Enrollment, Index, Settings};
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use support::kube_api::{FakeKubeApi, Recorded, ResourceType, WAIT, form_pairs};

// ---------------------------------------------------------------------------------------------------
// Fixtures

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, ip: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "labels": {"app": app},
            "annotations": {"ambient.istio.io/redirection": "enabled"},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}],
        },
        "spec": {"serviceAccountName": app, "nodeName": "node-1", "containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn service(ns: &str, name: &str, ip: &str, waypoint: Option<&str>) -> Value {
    let mut labels = json!({});
    if let Some(w) = waypoint {
        labels["istio.io/use-waypoint"] = json!(w);
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"clusterIP": ip, "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    })
}

fn policy(ns: &str, name: &str, http: bool) -> Value {
    let mut rule = json!({"from": [{"source": {"namespaces": ["shop"]}}]});
    if http {
        rule["to"] = json!([{"operation": {"methods": ["GET"]}}]);
    }
    json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"action": "ALLOW", "rules": [rule]},
    })
}

/// What an event says, in a form that compares exactly: `apply Pod/shop/web-0`, `delete ...`,
/// `reset [...]`.
fn describe(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Apply(o) => format!("apply {}", o.object_ref()),
            Event::Delete(r) => format!("delete {r}"),
            Event::Reset(objects) => {
                let mut names: Vec<String> =
                    objects.iter().map(|o| o.object_ref().to_string()).collect();
                names.sort();
                format!("reset [{}]", names.join(", "))
            }
        })
        .collect()
}

fn settings() -> Settings {
    Settings {
        enrollment: Enrollment::Annotation,
        ..Settings::default()
    }
}

struct Source {
    handle: KubeHandle,
    rx: mpsc::Receiver<Vec<Event>>,
    index: Index,
}

impl Source {
    async fn start(fake: &FakeKubeApi) -> Source {
        let (tx, rx) = mpsc::channel(16);
        let handle = kube_source::start(
            fake.client("source").await,
            &KubeSourceConfig::default(),
            tx,
            prometheus_client::metrics::counter::Counter::default(),
        );
        Source {
            handle,
            rx,
            index: Index::new(settings()),
        }
    }

    /// The next batch, applied to the index.
    async fn next(&mut self) -> Vec<Event> {
        let batch = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a batch within the wait")
            .expect("the source runs");
        for event in batch.clone() {
            match event {
                Event::Apply(o) => self.index.apply(o),
                Event::Delete(r) => self.index.delete(&r),
                Event::Reset(objects) => self.index.reset(objects),
            };
        }
        batch
    }
}

fn workload(ns: &str, name: &str) -> String {
    format!("Kubernetes//Pod/{ns}/{name}")
}

fn lists_of(requests: &[Recorded], path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method == Method::GET && r.path == path && !r.is_watch())
        .count()
}

// ---------------------------------------------------------------------------------------------------
// The source

#[tokio::test]
async fn the_first_sync_is_one_reset_and_changes_follow_as_they_happen() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    fake.apply(pod("shop", "web-0", "10.0.0.1", "web"));
    fake.apply(service("shop", "web", "10.96.0.1", None));
    fake.apply(policy("shop", "allow", false));
    let mut source = Source::start(&fake).await;

    assert_eq!(
        describe(&source.next().await),
        [
            "reset [AuthorizationPolicy/shop/allow, Namespace/shop, Pod/shop/web-0, Service/shop/web]"
        ]
    );
    assert!(*source.handle.synced().borrow());
    let kinds = source.handle.kinds();
    assert_eq!(kinds[&Kind::Pod], KindState::Synced { objects: 1 });
    assert_eq!(kinds[&Kind::Gateway], KindState::Synced { objects: 0 });
    assert!(source.index.address(&workload("shop", "web-0")).is_some());
    assert!(source.index.authorization("shop/allow").is_some());

    // Added.
    fake.apply(pod("shop", "web-1", "10.0.0.2", "web"));
    assert_eq!(describe(&source.next().await), ["apply Pod/shop/web-1"]);
    let before = source
        .index
        .address(&workload("shop", "web-1"))
        .expect("web-1")
        .clone();

    // Modified: a new IP reaches the workload.
    fake.apply(pod("shop", "web-1", "10.0.0.3", "web"));
    assert_eq!(describe(&source.next().await), ["apply Pod/shop/web-1"]);
    let after = source
        .index
        .address(&workload("shop", "web-1"))
        .expect("web-1")
        .clone();
    assert_ne!(before.version, after.version);

    // Deleted.
    assert!(fake.delete(&ResourceType::pods(), "shop", "web-1"));
    assert_eq!(describe(&source.next().await), ["delete Pod/shop/web-1"]);
    assert!(source.index.address(&workload("shop", "web-1")).is_none());

    // A policy change reaches the authorizations.
    assert!(fake.delete(&ResourceType::authorization_policies(), "shop", "allow"));
    assert_eq!(
        describe(&source.next().await),
        ["delete AuthorizationPolicy/shop/allow"]
    );
    assert!(source.index.authorization("shop/allow").is_none());

    // Pods are listed with istiod's field selector.
    let pod_lists: Vec<Recorded> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(!pod_lists.is_empty());
    for r in &pod_lists {
        assert_eq!(
            r.param("fieldSelector"),
            Some("status.phase!=Failed"),
            "{r:?}"
        );
        assert_eq!(r.token.as_deref(), Some("source"));
    }
}

#[tokio::test]
async fn a_relist_after_410_gone_applies_what_changed_and_deletes_what_vanished() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
        fake.apply(pod("shop", name, ip, "web"));
    }
    let mut source = Source::start(&fake).await;
    assert_eq!(
        describe(&source.next().await),
        ["reset [Namespace/shop, Pod/shop/a, Pod/shop/b, Pod/shop/c]"]
    );

    // Changes the open watches never see: only a relist finds them.
    assert!(fake.delete_quietly(&ResourceType::pods(), "shop", "b"));
    fake.apply_quietly(pod("shop", "c", "10.0.0.33", "web"));
    fake.apply_quietly(pod("shop", "d", "10.0.0.4", "web"));
    fake.expire();

    // Unchanged objects (a, the namespace) are not sent again.
    assert_eq!(
        describe(&source.next().await),
        ["apply Pod/shop/c", "apply Pod/shop/d", "delete Pod/shop/b"]
    );
    assert!(source.index.address(&workload("shop", "b")).is_none());
    assert!(source.index.address(&workload("shop", "d")).is_some());
    assert_eq!(
        source.handle.kinds()[&Kind::Pod],
        KindState::Synced { objects: 3 }
    );
    assert_eq!(lists_of(&fake.requests(), "/api/v1/pods"), 2);
    // Every kind lists again; the unchanged namespace is not sent again (the next batch is the pod).
    fake.wait_for_requests("the namespaces relist", 2, |r| {
        r.path == "/api/v1/namespaces" && !r.is_watch()
    })
    .await;

    // Watching goes on after the relist.
    fake.apply(pod("shop", "e", "10.0.0.5", "web"));
    assert_eq!(describe(&source.next().await), ["apply Pod/shop/e"]);
}

#[tokio::test]
async fn a_watch_resumes_from_its_last_bookmark() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    let mut source = Source::start(&fake).await;
    assert_eq!(describe(&source.next().await), ["reset [Namespace/shop]"]);
    let first_watch = fake
        .wait_for_requests("the pods watch", 1, |r| {
            r.path == "/api/v1/pods" && r.is_watch()
        })
        .await;
    let listed_at = first_watch[0].param("resourceVersion").map(str::to_string);

    // Other kinds move the version on; the pods watch hears of it only through a bookmark.
    fake.apply(namespace("other"));
    assert_eq!(describe(&source.next().await), ["apply Namespace/other"]);
    let bookmark = fake.resource_version().to_string();
    assert_ne!(listed_at.as_deref(), Some(bookmark.as_str()));
    fake.bookmark();
    fake.close_watches();
    let watches = fake
        .wait_for_requests("the pods watch resumed from the bookmark", 1, |r| {
            r.path == "/api/v1/pods"
                && r.is_watch()
                && r.param("resourceVersion") == Some(bookmark.as_str())
        })
        .await;
    assert_eq!(watches[0].param("allowWatchBookmarks"), Some("true"));
    // Resumed, not relisted.
    assert_eq!(lists_of(&fake.requests(), "/api/v1/pods"), 1);
    fake.apply(pod("shop", "web-0", "10.0.0.1", "web"));
    assert_eq!(describe(&source.next().await), ["apply Pod/shop/web-0"]);
}

#[tokio::test]
async fn missing_crds_are_a_warning_and_the_other_kinds_still_sync() {
    // Neither the Gateway API nor Istio's CRDs are installed.
    let fake = FakeKubeApi::start(ResourceType::builtin()).await;
    fake.apply(namespace("shop"));
    fake.apply(pod("shop", "web-0", "10.0.0.1", "web"));
    let mut source = Source::start(&fake).await;
    assert_eq!(
        describe(&source.next().await),
        ["reset [Namespace/shop, Pod/shop/web-0]"]
    );
    let kinds = source.handle.kinds();
    for kind in [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
    ] {
        assert_eq!(kinds[&kind], KindState::Missing, "{kind}");
    }
    assert_eq!(kinds[&Kind::Pod], KindState::Synced { objects: 1 });
    let refused: BTreeSet<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/apis/security.istio.io/"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        refused,
        BTreeSet::from([
            "/apis/security.istio.io/v1/authorizationpolicies".to_string(),
            "/apis/security.istio.io/v1/peerauthentications".to_string(),
        ])
    );

    // Installed later: picked up on the next try.
    fake.serve_type(ResourceType::authorization_policies());
    fake.apply(policy("shop", "allow", false));
    assert_eq!(
        describe(&source.next().await),
        ["apply AuthorizationPolicy/shop/allow"]
    );
    assert_eq!(
        source.handle.kinds()[&Kind::AuthorizationPolicy],
        KindState::Synced { objects: 1 }
    );
    assert!(source.index.authorization("shop/allow").is_some());

    // Uninstalled: its objects go, and the kind is missing again.
    fake.remove_type("security.istio.io", "authorizationpolicies");
    assert_eq!(
        describe(&source.next().await),
        ["delete AuthorizationPolicy/shop/allow"]
    );
    assert_eq!(
        source.handle.kinds()[&Kind::AuthorizationPolicy],
        KindState::Missing
    );
    assert!(source.index.authorization("shop/allow").is_none());
}

#[tokio::test]
async fn an_object_that_does_not_parse_is_reported_and_kept_out() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    let mut bad = service("shop", "bad", "10.96.0.9", None);
    bad["spec"]["ports"][0]["port"] = json!("eighty");
    fake.apply(namespace("shop"));
    fake.apply(bad);
    let mut source = Source::start(&fake).await;
    assert_eq!(describe(&source.next().await), ["reset [Namespace/shop]"]);
    let diagnostics = source.handle.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0].location, "kube services.v1");
    assert_eq!(diagnostics[0].object, "Service/shop/bad");
    assert!(
        diagnostics[0]
            .message
            .starts_with("cannot read it: spec.ports[0].port: invalid type"),
        "{}",
        diagnostics[0].message
    );

    // Fixed: applied, and the problem is gone.
    fake.apply(service("shop", "bad", "10.96.0.9", None));
    assert_eq!(describe(&source.next().await), ["apply Service/shop/bad"]);
    assert_eq!(source.handle.diagnostics(), vec![]);
}

// ---------------------------------------------------------------------------------------------------
// `serve --kube`

struct Running {
    grpc: SocketAddr,
    admin: Option<SocketAddr>,
    index: std::sync::Arc<ambient_control_plane::shared_index::SharedIndex>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("stops")
            .expect("joins")
            .expect("serves without error");
    }
}

/// A server reading the fake cluster as `token`; status written by the holder of the Lease when
/// `identity` is given.
async fn serve(
    fake: &FakeKubeApi,
    dir: &tempfile::TempDir,
    token: &str,
    identity: Option<&str>,
) -> Running {
    let kubeconfig = dir.path().join(format!("{token}.kubeconfig"));
    fake.write_kubeconfig(&kubeconfig, token);
    let mut cfg = ServeConfig::new("", dir.path().join(format!("{token}-state")));
    cfg.settings = settings();
    cfg.grpc_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    // The `--kube` default: a client certificate, then a Kubernetes token.
    cfg.auth = vec![AuthMethod::Cert, AuthMethod::Kube];
    let mut kube = KubeSettings::new("istio-system");
    kube.kubeconfig = Some(kubeconfig);
    kube.status_lease = identity.map(|identity| LeaseConfig {
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("istio-system")
    });
    cfg.source = ServeSource::Kube(kube);
    let server = Server::bind(cfg).await.expect("binds");
    let (grpc, admin, index) = (server.grpc_addr(), server.admin_addr(), server.index());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        grpc,
        admin,
        index,
        stop: Some(stop),
        task,
    }
}

/// `GET path` on a fresh connection: the status code.
async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("answers")
        .expect("reads");
    let text = String::from_utf8_lossy(&raw);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn serve_kube_is_ready_only_after_every_kind_synced() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    fake.apply(pod("shop", "web-0", "10.0.0.1", "web"));
    fake.hold_lists(true);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&fake, &dir, "reader", None).await;
    let admin = server.admin.expect("admin listener");
    fake.wait_for_requests("the first lists", 10, |r| !r.is_watch())
        .await;
    assert_eq!(http_status(admin, "/ready").await, 503);
    assert!(
        server
            .index
            .read()
            .unwrap()
            .address(&workload("shop", "web-0"))
            .is_none()
    );

    fake.hold_lists(false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while http_status(admin, "/ready").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ready within the wait"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .index
            .read()
            .unwrap()
            .address(&workload("shop", "web-0"))
            .is_some()
    );
    // The gRPC port serves once ready.
    tokio::net::TcpStream::connect(server.grpc)
        .await
        .expect("grpc accepts");
    // No status and no Lease without a Lease name: besides reads, only the CA's own writes (its
    // root in `istio-ca-secret`, the root ConfigMaps).
    let writes: BTreeSet<(String, String, String)> = fake
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .filter_map(Recorded::api_call)
        .collect();
    assert_eq!(
        writes,
        BTreeSet::from([
            (
                "".to_string(),
                "configmaps".to_string(),
                "create".to_string()
            ),
            ("".to_string(), "secrets".to_string(), "create".to_string()),
        ])
    );
    server.stop().await;
}

fn status_patches(requests: &[Recorded]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path.ends_with("/status"))
        .map(|r| (r.token.clone().unwrap_or_default(), r.path.clone()))
        .collect()
}

fn holder(fake: &FakeKubeApi) -> Option<String> {
    fake.get(&ResourceType::leases(), "istio-system", "ambientd-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Waits until `identity` holds the Lease.
async fn wait_for_holder(fake: &FakeKubeApi, identity: &str) {
    fake.wait_for(&format!("{identity} to hold the lease"), |s| {
        s.object(&ResourceType::leases(), "istio-system", "ambientd-leader")
            .filter(|l| l["spec"]["holderIdentity"] == json!(identity))
            .map(|_| ())
    })
    .await;
}

const CART_STATUS: &str = "/api/v1/namespaces/shop/services/cart/status";
const ALLOW_A_STATUS: &str =
    "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/allow-a/status";
const ALLOW_B_STATUS: &str =
    "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/allow-b/status";

#[tokio::test]
async fn status_is_written_only_by_the_lease_holder() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    fake.apply(service("shop", "cart", "10.96.0.10", Some("missing")));
    fake.apply(service("shop", "plain", "10.96.0.11", None));
    fake.apply(policy("shop", "allow-a", false));
    let dir = tempfile::tempdir().unwrap();

    let a = serve(&fake, &dir, "replica-a", Some("replica-a")).await;
    wait_for_holder(&fake, "replica-a").await;
    fake.wait_for("the first statuses", |s| {
        let cart = s.object(&ResourceType::services(), "shop", "cart")?;
        let allow = s.object(&ResourceType::authorization_policies(), "shop", "allow-a")?;
        (cart.get("status").is_some() && allow.get("status").is_some()).then_some(())
    })
    .await;
    let cart = fake.get(&ResourceType::services(), "shop", "cart").unwrap();
    let cart_since = cart["status"]["conditions"][0]["lastTransitionTime"].clone();
    assert!(cart_since.is_string());
    assert_eq!(
        cart["status"],
        json!({"conditions": [{
            "type": "istio.io/WaypointBound", "status": "False", "reason": "WaypointIsNotReady",
            "message": "waypoint \"shop/missing\" is not ready", "observedGeneration": 1,
            "lastTransitionTime": cart_since,
        }]})
    );
    let allow = fake
        .get(&ResourceType::authorization_policies(), "shop", "allow-a")
        .unwrap();
    let allow_since = allow["status"]["conditions"][0]["lastTransitionTime"].clone();
    assert_eq!(
        allow["status"],
        json!({"conditions": [{
            "type": "ZtunnelAccepted", "status": "True", "reason": "Accepted",
            "message": "attached to ztunnel", "observedGeneration": 1,
            "lastTransitionTime": allow_since,
        }]})
    );
    let patch = fake
        .requests()
        .into_iter()
        .find(|r| r.path == CART_STATUS)
        .expect("cart status patch");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch.param("fieldManager"), Some("ambientd"));
    assert_eq!(patch.param("force"), Some("true"));
    // The Service without a binding gets no status.
    assert!(
        fake.get(&ResourceType::services(), "shop", "plain")
            .unwrap()
            .get("status")
            .is_none()
    );

    // A second replica reads the cluster and follows the lease, but writes nothing.
    let b = serve(&fake, &dir, "replica-b", Some("replica-b")).await;
    fake.apply(policy("shop", "allow-b", false));
    fake.wait_for_requests("allow-b's status", 1, |r| r.path == ALLOW_B_STATUS)
        .await;
    fake.wait_for("replica-b to hold allow-b in its index", |_| {
        b.index
            .read()
            .unwrap()
            .authorization("shop/allow-b")
            .map(|_| ())
    })
    .await;
    let seen = fake.requests().len();
    fake.wait_for("replica-b to read the lease three more times", |s| {
        s.requests()[seen..]
            .iter()
            .filter(|r| {
                r.token.as_deref() == Some("replica-b")
                    && r.path.ends_with("/leases/ambientd-leader")
            })
            .nth(2)
            .map(|_| ())
    })
    .await;
    let mut by_a = status_patches(&fake.requests());
    by_a.sort();
    assert_eq!(
        by_a,
        [
            ("replica-a".to_string(), CART_STATUS.to_string()),
            ("replica-a".to_string(), ALLOW_A_STATUS.to_string()),
            ("replica-a".to_string(), ALLOW_B_STATUS.to_string()),
        ]
    );
    assert_eq!(holder(&fake).as_deref(), Some("replica-a"));

    // The holder stops and releases the lease: the other replica takes over and writes what changes.
    a.stop().await;
    wait_for_holder(&fake, "replica-b").await;
    let taken_at = fake.requests().len();
    fake.apply(policy("shop", "allow-a", true));
    fake.wait_for("allow-a's new status", |s| {
        let allow = s.object(&ResourceType::authorization_policies(), "shop", "allow-a")?;
        (allow["status"]["conditions"][0]["reason"] == json!("UnsupportedValue")).then_some(())
    })
    .await;
    // Only replica-b writes now. (Besides allow-a, it may repeat a write whose echo it had not seen when
    // it took over: same content, so that is allowed.)
    let after: Vec<(String, String)> = status_patches(&fake.requests()[taken_at..]);
    assert!(
        after.iter().all(|(token, _)| token == "replica-b"),
        "{after:?}"
    );
    assert!(
        after.iter().any(|(_, path)| path == ALLOW_A_STATUS),
        "{after:?}"
    );
    let wanted = b.index.read().unwrap().policy_status()
        [&ObjectRef::new(Kind::AuthorizationPolicy, "shop", "allow-a")]
        .ztunnel
        .clone()
        .expect("a ztunnel policy");
    assert_eq!(wanted.reason, "UnsupportedValue");
    let allow = fake
        .get(&ResourceType::authorization_policies(), "shop", "allow-a")
        .unwrap();
    assert_eq!(
        allow["status"],
        json!({"conditions": [{
            "type": "ZtunnelAccepted", "status": "True", "reason": wanted.reason,
            "message": wanted.message, "observedGeneration": 2,
            // Still True: the transition time is kept.
            "lastTransitionTime": allow_since,
        }]})
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// The list of API calls

#[tokio::test]
async fn api_calls_lists_exactly_the_calls_ambientd_makes() {
    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    fake.apply(service("shop", "cart", "10.96.0.10", Some("missing")));
    fake.apply(policy("shop", "allow-a", false));
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&fake, &dir, "ambientd", Some("replica-a")).await;
    // Two calls a plain start does not make: a TokenReview (no CSR or token-authenticated stream here)
    // and a ConfigMap update (no root ConfigMap exists yet); tests/kube_ca.rs covers both.
    let not_made = [("tokenreviews", "create"), ("configmaps", "update")];
    let listed: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .filter(|(_, r, v)| !not_made.contains(&(*r, *v)))
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    // Every kind listed and watched, the lease created and renewed, both kinds of status written.
    let made = fake
        .wait_for("every listed call", |s| {
            let made: BTreeSet<(String, String, String)> =
                s.requests().iter().filter_map(Recorded::api_call).collect();
            (made == listed || !made.is_subset(&listed)).then_some(made)
        })
        .await;
    assert_eq!(made, listed);
    server.stop().await;
    // Nothing else, not even on the way out (the lease release is an update).
    let unnamed: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.api_call().is_none_or(|c| !listed.contains(&c)))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(unnamed, Vec::<String>::new());
}

#[test]
fn requests_are_named_as_rbac_rules_name_them() {
    let req = |method: Method, path: &str, query: &str| Recorded {
        method,
        path: path.to_string(),
        query: form_pairs(query),
        token: None,
        content_type: None,
        body: Value::Null,
    };
    let call = |r: Recorded| r.api_call().map(|(g, r, v)| format!("{g}|{r}|{v}"));
    assert_eq!(
        call(req(Method::GET, "/api/v1/pods", "limit=500")).as_deref(),
        Some("|pods|list")
    );
    assert_eq!(
        call(req(Method::GET, "/api/v1/pods", "watch=true")).as_deref(),
        Some("|pods|watch")
    );
    assert_eq!(
        call(req(
            Method::PATCH,
            "/api/v1/namespaces/shop/services/cart/status",
            ""
        ))
        .as_deref(),
        Some("|services/status|patch")
    );
    assert_eq!(
        call(req(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/l",
            ""
        ))
        .as_deref(),
        Some("coordination.k8s.io|leases|update")
    );
    assert_eq!(
        call(req(Method::GET, "/api/v1/namespaces/shop", "")).as_deref(),
        Some("|namespaces|get")
    );
    assert_eq!(call(req(Method::GET, "/version", "")), None);
}

#[test]
fn query_strings_are_decoded() {
    assert_eq!(
        form_pairs("fieldSelector=status.phase%21%3DFailed&limit=500"),
        std::collections::BTreeMap::from([
            (
                "fieldSelector".to_string(),
                "status.phase!=Failed".to_string()
            ),
            ("limit".to_string(), "500".to_string()),
        ])
    );
}

// ---------------------------------------------------------------------------------------------------
// The binary

fn ambientd(home: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ambientd"));
    // No cluster around: neither a kubeconfig nor an in-cluster service account.
    cmd.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KUBECONFIG")
        .env("HOME", home);
    cmd
}

#[test]
fn serve_kube_without_a_kubeconfig_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = ambientd(dir.path())
        .args(["serve", "--kube", "--grpc-addr", "127.0.0.1:0"])
        .args(["--xds-plaintext-addr", "off", "--admin-addr", "off"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no kubeconfig: set KUBECONFIG or pass --kubeconfig"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.kubeconfig");
    let out = ambientd(dir.path())
        .args(["serve", "--kube", "--grpc-addr", "127.0.0.1:0"])
        .args(["--xds-plaintext-addr", "off", "--admin-addr", "off"])
        .arg("--kubeconfig")
        .arg(&missing)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot use kubeconfig {}", missing.display()))
            && stderr.contains("pass a readable kubeconfig with --kubeconfig"),
        "{stderr}"
    );
    // Nothing was created before the failure.
    assert!(!dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kube_prints_the_cluster_it_reads_and_becomes_ready() {
    use std::io::BufRead as _;

    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, "cli");
    let mut child = ambientd(dir.path())
        .args([
            "serve",
            "--kube",
            "--no-status",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .args(["--xds-plaintext-addr", "off", "--admin-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("ztunnels reach it");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let banner = tokio::time::timeout(WAIT, banner)
        .await
        .expect("a banner")
        .expect("read");
    let line = |key: &str| {
        banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(key).map(str::trim))
            .unwrap_or_else(|| panic!("no {key} in {banner:#?}"))
            .to_string()
    };
    assert_eq!(
        line("source:"),
        format!(
            "Kubernetes API {}/ (10 kinds watched; gRPC and /ready once all are listed)",
            fake.url()
        )
    );
    assert_eq!(line("status:"), "not written");
    let admin: SocketAddr = line("admin:")
        .trim_start_matches("http://")
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .expect("admin address");
    let deadline = tokio::time::Instant::now() + WAIT;
    while http_status(admin, "/ready").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ready within the wait"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tokens: BTreeSet<Option<String>> = fake.requests().into_iter().map(|r| r.token).collect();
    assert_eq!(tokens, BTreeSet::from([Some("cli".to_string())]));
    let _ = child.kill();
    let _ = child.wait();
}

// A workload certificate in the cluster

#[tokio::test]
async fn a_csr_with_a_service_account_token_gets_a_certificate_through_a_tokenreview() {
    use ambient_proto::auth::IstioCertificateRequest;
    use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
    use support::kube_api::Reply;

    let fake = FakeKubeApi::start(ResourceType::all()).await;
    fake.apply(namespace("shop"));
    fake.apply(pod("shop", "web-0", "10.0.0.1", "web"));
    // The API server knows one token: the service account `shop/web`, for the istio-ca audience.
    fake.on(
        Method::POST,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        |req: &Recorded| {
            let status = if req.body["spec"]["token"] == "web-token" {
                json!({"authenticated": true, "audiences": ["istio-ca"], "user": {
                    "username": "system:serviceaccount:shop:web",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"]}})
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
            Reply::json(
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "metadata": {}, "spec": req.body["spec"].clone(), "status": status}),
            )
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&fake, &dir, "ambientd", None).await;
    let admin = server.admin.expect("admin listener");
    let deadline = tokio::time::Instant::now() + WAIT;
    while http_status(admin, "/ready").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ready within the wait"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The root is the one kept in `istio-ca-secret`, and the server wrote it where the banner says.
    let root = std::fs::read_to_string(dir.path().join("ambientd-state").join("root-cert.pem"))
        .expect("root bundle");
    let secret = fake
        .get(&ResourceType::secrets(), "istio-system", "istio-ca-secret")
        .expect("istio-ca-secret created");
    assert!(secret["data"]["root-cert.pem"].is_string(), "{secret}");

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&root))
        .domain_name("istiod.istio-system.svc");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", server.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS to 15012");
    let mut client = IstioCertificateServiceClient::new(channel);
    let identity = "spiffe://cluster.local/ns/shop/sa/web";
    let csr = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![rcgen::SanType::URI(identity.try_into().unwrap())];
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    let request = |token: &str| {
        let mut r = tonic::Request::new(IstioCertificateRequest {
            csr: csr.clone(),
            validity_duration: 3600,
            metadata: None,
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let chain = client
        .create_certificate(request("web-token"))
        .await
        .expect("a certificate")
        .into_inner()
        .cert_chain;
    assert_eq!(chain.len(), 2, "leaf and root");
    assert_eq!(chain[1].trim(), root.trim());
    let reviews = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/tokenreviews"))
        .count();
    assert_eq!(reviews, 1);

    let refused = client
        .create_certificate(request("stolen"))
        .await
        .expect_err("an unknown token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    server.stop().await;
}
