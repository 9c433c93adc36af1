//! The admin HTTP server over a real socket on 127.0.0.1: the bookinfo index, a fake connection registry
//! (three proxies), fixed certificates and CA counters. Every endpoint is fetched with a plain HTTP/1.1
//! client written here; `/metrics` must parse as OpenMetrics text under a strict parser; `ambientd zc`
//! run against the server must print exactly the golden files of `tests/zc.rs`; and shutdown must close
//! the port.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::{CaMetrics, LatencySummary};
use ambient_control_plane::admin::api::*;
use ambient_control_plane::admin::{self, AdminState, ENDPOINTS};
use ambient_control_plane::metrics::Metrics;
use ambient_control_plane::zc::{self, OutputFormat, ZcCommand, ZcError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use support::*;

struct Server {
    addr: SocketAddr,
    state: AdminState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let index = bookinfo_index();
        let registry = FakeRegistry::new(&index.read().unwrap());
        let metrics = Arc::new(Metrics::new());
        metrics.register_index(index.clone());
        metrics.register_ca(ca_counters);
        let state = AdminState::new(index, metrics)
            .with_connections(Arc::new(registry))
            .with_certs(fake_certs)
            .with_config(config());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = admin::spawn(listener, state.clone(), async {
            let _ = stopped.await;
        });
        Server {
            addr,
            state,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path).await
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: {e}\n{}", reply.body))
    }
}

fn config() -> Value {
    json!({"configDir": "deploy/examples/bookinfo", "grpcAddr": "127.0.0.1:15012"})
}

fn ca_counters() -> CaMetrics {
    CaMetrics {
        issued: 12,
        refused: fake_certs().refused,
        latency: LatencySummary {
            count: 15,
            sum: Duration::from_millis(30),
            max: Duration::from_millis(9),
            buckets: vec![(0.001, 10), (0.01, 15), (1.0, 15)],
        },
    }
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("reply within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    if let Some(len) = headers.get("content-length").filter(|_| method != "HEAD") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            body.len(),
            "{path}: content-length"
        );
    }
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn ready_follows_the_flag() {
    let server = Server::start().await;
    let reply = server.get("/ready").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "not ready\n"));
    server.state.set_ready(true);
    let reply = server.get("/ready").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready\n"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn debug_documents_describe_bookinfo() {
    let server = Server::start().await;

    let all: WorkloadList = server.json("/debug/workloads").await;
    assert_eq!(all.workloads.len(), 20);
    let details = all
        .workloads
        .iter()
        .find(|w| w.name == "details-v1-558d6b8747-fd6nx")
        .unwrap();
    assert_eq!(
        details.resource_name,
        "Kubernetes//Pod/backend/details-v1-558d6b8747-fd6nx"
    );
    assert_eq!(details.addresses, ["10.244.0.44"]);
    assert_eq!(details.protocol, "HBONE");
    assert_eq!(details.node, "kind-control-plane");
    assert_eq!(
        details.resource["workload"]["serviceAccount"],
        "bookinfo-details"
    );
    let backend: WorkloadList = server.json("/debug/workloads?namespace=backend").await;
    assert_eq!(backend.workloads.len(), 12);
    assert!(backend.workloads.iter().all(|w| w.namespace == "backend"));
    let on_node: WorkloadList = server
        .json("/debug/workloads?node=kind-control-plane")
        .await;
    assert_eq!(on_node.workloads.len(), 19);

    let services: ServiceList = server.json("/debug/services?namespace=backend").await;
    assert_eq!(services.services.len(), 9);
    let reviews = services
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .unwrap();
    assert_eq!(
        reviews.resource_name,
        "backend/reviews.backend.svc.cluster.local"
    );
    assert_eq!(
        reviews.waypoint.as_deref(),
        Some("backend/waypoint.backend.svc.cluster.local")
    );
    assert_eq!((reviews.endpoints, reviews.healthy_endpoints), (6, 6));

    let policies: PolicyList = server.json("/debug/policies").await;
    let names: Vec<&str> = policies
        .policies
        .iter()
        .map(|p| p.resource_name.as_str())
        .collect();
    assert_eq!(names, ["frontend/productpage-viewer"]);
    let objects: Vec<&str> = policies
        .diagnostics
        .iter()
        .map(|d| d.object.as_str())
        .collect();
    assert_eq!(
        objects,
        [
            "AuthorizationPolicy/backend/details-policy-waypoint",
            "AuthorizationPolicy/backend/ratings-policy-waypoint",
            "AuthorizationPolicy/frontend/productpage-viewer",
        ]
    );
    assert_eq!(
        policies.diagnostics[2].enforced_by.as_deref(),
        Some("ztunnel")
    );
    let frontend: PolicyList = server.json("/debug/policies?namespace=backend").await;
    assert_eq!(
        (frontend.policies.len(), frontend.diagnostics.len()),
        (0, 2)
    );

    let diagnostics: DiagnosticList = server.json("/debug/diagnostics").await;
    assert_eq!(diagnostics.diagnostics.len(), 11);

    let waypoints: WaypointList = server.json("/debug/waypoints?namespace=backend").await;
    assert_eq!(waypoints.waypoints.len(), 1);
    let wp = &waypoints.waypoints[0];
    assert_eq!(
        (wp.namespace.as_str(), wp.name.as_str()),
        ("backend", "waypoint")
    );
    assert_eq!(wp.traffic_type, "service");
    assert_eq!(wp.bound.len(), 8);
    assert_eq!(
        wp.bound[0],
        BoundObject {
            object: "Service/backend/details".to_string(),
            resource_name: "backend/details.backend.svc.cluster.local".to_string(),
        }
    );
    assert!(wp.refused.is_empty() && waypoints.unresolved.is_empty());

    let connections: ConnectionList = server.json("/debug/connections").await;
    let ids: Vec<u64> = connections.connections.iter().map(|c| c.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let worker: ConnectionList = server.json("/debug/connections?node=kind-worker").await;
    assert_eq!(worker.connections.len(), 1);
    assert_eq!(
        worker.connections[0].types[1]
            .last_nack
            .as_ref()
            .unwrap()
            .message,
        "rule 0: unknown principal match"
    );
    let in_backend: ConnectionList = server.json("/debug/connections?namespace=backend").await;
    assert_eq!(in_backend.connections[0].proxy_type, "waypoint");

    let certs: CertsDoc = server.json("/debug/certs").await;
    assert_eq!(certs, fake_certs());
    let cfg: Value = server.json("/debug/config").await;
    assert_eq!(cfg, config());

    let sync: SyncDoc = server
        .json("/debug/sync?name=backend%2Fdetails.backend.svc.cluster.local")
        .await;
    assert_eq!(sync.type_url, "type.googleapis.com/istio.workload.Address");
    let statuses: Vec<&str> = sync.proxies.iter().map(|p| p.status.as_str()).collect();
    assert_eq!(statuses, ["SYNCED", "STALE", "PENDING"]);
    let policy: SyncDoc = server
        .json("/debug/sync?name=frontend/productpage-viewer")
        .await;
    assert_eq!(
        policy.type_url,
        "type.googleapis.com/istio.security.Authorization"
    );
    assert!(policy.version.is_some());
    // Only connections 1 and 2 subscribe to Authorization; neither holds this policy in the fake.
    let statuses: Vec<&str> = policy.proxies.iter().map(|p| p.status.as_str()).collect();
    assert_eq!(statuses, ["STALE", "STALE", "NOT SUBSCRIBED"]);
}

#[tokio::test]
async fn bad_requests_are_answered_with_json_errors() {
    let server = Server::start().await;

    let reply = server.get("/debug/nothing").await;
    assert_eq!(reply.status, 404);
    let doc: ErrorDoc = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(doc.error, "no endpoint /debug/nothing");
    assert_eq!(doc.endpoints, ENDPOINTS);

    let reply = request(server.addr, "POST", "/ready").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));

    let reply = server.get("/debug/services?node=x").await;
    assert_eq!(reply.status, 400);
    let doc: ErrorDoc = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        doc.error,
        "unknown query parameter \"node\" for /debug/services: use namespace"
    );

    let reply = server.get("/debug/sync").await;
    assert_eq!(reply.status, 400);
    let reply = server.get("/debug/sync?name=x&type=Cluster").await;
    assert_eq!(reply.status, 400);
    let doc: ErrorDoc = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        doc.error,
        "unknown type \"Cluster\": use Address or Authorization (or their type URLs)"
    );

    let reply = request(server.addr, "HEAD", "/debug/config").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");
    let get = server.get("/debug/config").await;
    assert_eq!(
        reply.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );

    let index: Value = server.json("/").await;
    assert_eq!(
        index["endpoints"].as_array().unwrap().len(),
        ENDPOINTS.len()
    );
}

// ---- /metrics --------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Family {
    type_: String,
    help: bool,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict OpenMetrics text parser: every sample belongs to the family declared just before it, with a
/// suffix its type allows; names and labels are well formed; each family appears once; histograms have
/// cumulative buckets ending in `+Inf` equal to `_count`; `# EOF` ends the text.
fn parse_openmetrics(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut saw_eof = false;
    assert!(text.ends_with('\n'), "text must end with a newline");
    for line in text.lines() {
        assert!(!saw_eof, "content after # EOF: {line:?}");
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("bad line {line:?}"));
            let arg = parts.next().unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(valid_name(name), "bad metric name in {line:?}");
            match keyword {
                "HELP" => {
                    if current.as_deref() != Some(name) {
                        assert!(!families.contains_key(name), "family {name} declared twice");
                        families.insert(name.to_string(), Family::default());
                        current = Some(name.to_string());
                    }
                    families.get_mut(name).unwrap().help = true;
                }
                "TYPE" => {
                    if current.as_deref() != Some(name) {
                        assert!(!families.contains_key(name), "family {name} declared twice");
                        families.insert(name.to_string(), Family::default());
                        current = Some(name.to_string());
                    }
                    let f = families.get_mut(name).unwrap();
                    assert!(f.type_.is_empty(), "two TYPE lines for {name}");
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&arg),
                        "unknown type in {line:?}"
                    );
                    f.type_ = arg.to_string();
                }
                "UNIT" => assert!(name.ends_with(&format!("_{arg}")), "unit of {line:?}"),
                _ => panic!("unknown descriptor {line:?}"),
            }
            continue;
        }
        let sample = parse_sample(line);
        let family = current
            .clone()
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let f = families.get_mut(&family).unwrap();
        let suffix = sample
            .name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("sample {line:?} outside family {family}"));
        let allowed: &[&str] = match f.type_.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            t => panic!("family {family} has type {t:?}"),
        };
        assert!(
            allowed.contains(&suffix),
            "{line:?}: suffix {suffix:?} in a {}",
            f.type_
        );
        f.samples.push(sample);
    }
    assert!(saw_eof, "no # EOF");
    for (name, f) in &families {
        assert!(
            f.help && !f.type_.is_empty(),
            "{name}: HELP and TYPE needed"
        );
        if f.type_ == "histogram" {
            check_histogram(name, &f.samples);
        }
    }
    families
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("bad sample {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            let (start, c) = chars
                .next()
                .unwrap_or_else(|| panic!("unclosed labels {line:?}"));
            if c == '}' {
                end = start + 1;
                break;
            }
            let key_start = start;
            let mut key_end = start;
            let mut c = c;
            while c != '=' {
                assert!(
                    c.is_ascii_alphanumeric() || c == '_',
                    "bad label name in {line:?}"
                );
                let next = chars
                    .next()
                    .unwrap_or_else(|| panic!("bad labels {line:?}"));
                key_end = next.0;
                c = next.1;
            }
            let key = &body[key_start..key_end];
            assert!(valid_name(key), "bad label {key:?} in {line:?}");
            assert_eq!(
                chars.next().map(|x| x.1),
                Some('"'),
                "label value quote in {line:?}"
            );
            let mut value = String::new();
            loop {
                let (_, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed value {line:?}"));
                match c {
                    '"' => break,
                    '\\' => match chars.next().map(|x| x.1) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    '\n' => panic!("newline in value {line:?}"),
                    c => value.push(c),
                }
            }
            assert!(
                labels.insert(key.to_string(), value).is_none(),
                "repeated label {line:?}"
            );
            match chars.peek().map(|x| x.1) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => panic!("unexpected {other:?} in {line:?}"),
            }
        }
        rest = &body[end..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value separator in {line:?}"));
    assert!(
        !value.contains(' '),
        "timestamps or exemplars not expected: {line:?}"
    );
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

fn check_histogram(family: &str, samples: &[Sample]) {
    let mut series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let key = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.entry(key).or_default().push(s);
    }
    for (labels, samples) in series {
        let count = samples
            .iter()
            .find(|s| s.name.ends_with("_count"))
            .unwrap_or_else(|| panic!("{family}{labels:?}: no _count"))
            .value;
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name.ends_with("_bucket"))
            .map(|s| {
                let le = &s.labels["le"];
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, s.value)
            })
            .collect();
        assert!(!buckets.is_empty(), "{family}{labels:?}: no buckets");
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{family}: bounds not increasing");
            assert!(pair[0].1 <= pair[1].1, "{family}: buckets not cumulative");
        }
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{family}: last bucket is not +Inf");
        assert_eq!(last.1, count, "{family}: +Inf bucket differs from _count");
    }
}

fn value(families: &BTreeMap<String, Family>, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    families
        .values()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == sample && s.labels == want)
        .unwrap_or_else(|| panic!("no sample {sample}{labels:?}"))
        .value
}

#[tokio::test]
async fn metrics_parse_as_openmetrics_with_every_family() {
    let server = Server::start().await;
    let m = server.state.metrics();
    let address = ambient_proto::ADDRESS_TYPE_URL;
    let authorization = ambient_proto::AUTHORIZATION_TYPE_URL;
    let _ztunnel = m.proxy_connected("ztunnel");
    m.pushed(address, 34, None);
    m.pushed(address, 2, Some(Duration::from_millis(3)));
    m.acked(address, Some(Duration::from_millis(8)));
    m.nacked(authorization);
    m.source_batch(&[ambient_control_plane::source::Event::Delete(
        ambient_index::model::ObjectRef::new(ambient_index::model::Kind::Pod, "backend", "sleep"),
    )]);
    m.source_errors("files", 2);

    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let families = parse_openmetrics(&reply.body);
    let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "ambientd_build",
            "ambientd_csr_duration_seconds",
            "ambientd_csr_requests",
            "ambientd_index_objects",
            "ambientd_index_resources",
            "ambientd_source_errors",
            "ambientd_source_events",
            "ambientd_xds_acks",
            "ambientd_xds_connected_proxies",
            "ambientd_xds_nacks",
            "ambientd_xds_push_ack_seconds",
            "ambientd_xds_push_write_seconds",
            "ambientd_xds_pushes",
            "ambientd_xds_resources_sent",
        ])
    );
    let t = |ty: &'static str| [("type", ty)];
    assert_eq!(
        value(
            &families,
            "ambientd_xds_connected_proxies",
            &[("proxy", "ztunnel")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_pushes_total",
            &t("istio.workload.Address")
        ),
        2.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_resources_sent_total",
            &t("istio.workload.Address")
        ),
        36.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_acks_total",
            &t("istio.workload.Address")
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_nacks_total",
            &t("istio.security.Authorization")
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_push_write_seconds_count",
            &t("istio.workload.Address")
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_xds_push_ack_seconds_count",
            &t("istio.workload.Address")
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_source_events_total",
            &[("event", "delete"), ("kind", "Pod")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_source_errors_total",
            &[("source", "files")]
        ),
        2.0
    );
    assert_eq!(
        value(&families, "ambientd_index_objects", &[("kind", "Pod")]),
        19.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_index_objects",
            &[("kind", "AuthorizationPolicy")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_index_resources",
            &t("istio.workload.Address")
        ),
        34.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_index_resources",
            &t("istio.security.Authorization")
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_csr_requests_total",
            &[("result", "issued")]
        ),
        12.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_csr_requests_total",
            &[("result", "unauthenticated")]
        ),
        2.0
    );
    assert_eq!(
        value(&families, "ambientd_csr_duration_seconds_count", &[]),
        15.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_csr_duration_seconds_bucket",
            &[("le", "0.001")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_csr_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        15.0
    );
    assert_eq!(
        value(
            &families,
            "ambientd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn the_strict_parser_rejects_malformed_text() {
    let good = "# HELP a x\n# TYPE a counter\na_total 1\n# EOF\n";
    let bad = [
        // sample outside its family
        "# HELP a x\n# TYPE a counter\nb_total 1\n# EOF\n",
        // gauge with a counter suffix
        "# HELP a x\n# TYPE a gauge\na_total 1\n# EOF\n",
        // no EOF
        "# HELP a x\n# TYPE a counter\na_total 1\n",
        // unquoted label
        "# HELP a x\n# TYPE a counter\na_total{k=v} 1\n# EOF\n",
        // non-cumulative histogram
        "# HELP h x\n# TYPE h histogram\nh_sum 1\nh_count 2\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n# EOF\n",
    ];
    let families = parse_openmetrics(good);
    assert_eq!(families["a"].samples[0].value, 1.0);
    for text in bad {
        let owned = text.to_string();
        assert!(
            std::panic::catch_unwind(move || parse_openmetrics(&owned)).is_err(),
            "accepted {text:?}"
        );
    }
}

// ---- zc against the server --------------------------------------------------------------------------

#[tokio::test]
async fn zc_prints_the_golden_files_from_the_server() {
    let server = Server::start().await;
    for (file, mut args) in cases() {
        args.admin = server.url();
        let mut out = Vec::new();
        zc::run_at(args, now(), &mut out)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = std::fs::read_to_string(golden_dir().join(file)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want, "{file}");
    }
}

#[tokio::test]
async fn zc_reports_server_errors_and_an_unreachable_server() {
    let server = Server::start().await;
    let mut args = zc_args(
        ZcCommand::Sync {
            name: "x".into(),
            type_: Some("Cluster".into()),
        },
        OutputFormat::Table,
        None,
    );
    args.admin = server.url();
    let err = zc::run(args, &mut Vec::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "http://{}/debug/sync?name=x&type=Cluster answered 400: unknown type \"Cluster\": use \
             Address or Authorization (or their type URLs)",
            server.addr
        )
    );

    // A port nothing listens on: bind one, note it, close it.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let mut args = zc_args(ZcCommand::Workloads, OutputFormat::Table, None);
    args.admin = format!("http://{addr}");
    let err = zc::run(args, &mut Vec::new()).await.unwrap_err();
    assert!(matches!(err, ZcError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot reach the ambientd admin API at http://{addr}: "
        )),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; start `ambientd serve` (its admin API listens on 127.0.0.1:15014 by default) or point \
             zc at it with --admin URL"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let mut server = Server::start().await;
    assert_eq!(server.get("/debug/config").await.status, 200);
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("server stops within 5 s")
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}
