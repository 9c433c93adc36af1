//! `ambientd serve` in process on 127.0.0.1 against the ztunnel-faithful simulated clients of
//! `agent-sim`, over real TLS with node-account tokens (`istio-system/ztunnel`, one per node):
//! initial sync, folder edits reaching every client with exactly the names they change, a server
//! restart with client state kept, a NACKing client, a client that stops reading, 500 clients, and
//! certificates through impersonation. Every wait is on client events, never a fixed sleep.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use agent_sim::certs::CertState;
use agent_sim::{
    Auth, Expect, Fleet, Nodes, Observer, Propagation, PropagationWatch, Recorded, Recorder,
    Target, TokenFile, XdsKind, plan,
};
use ambient_control_plane::serve::{AuthMethod, ServeConfig};
use support::{PATIENCE, Running, bookinfo, start};

/// The node of every bookinfo pod; client 0 runs there.
const KIND_NODE: &str = "kind-control-plane";

/// A copy of the bookinfo example and a tokens file with one node account per node.
struct Cluster {
    dir: tempfile::TempDir,
    config_dir: PathBuf,
    tokens: PathBuf,
}

impl Cluster {
    /// Tokens for `istio-system/ztunnel` on `kind-control-plane` and on `node-0001` … `node-{nodes-1}`.
    fn new(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        for entry in std::fs::read_dir(bookinfo()).expect("bookinfo") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::copy(&path, config_dir.join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
        let mut text = format!(
            "zt-kind: {{namespace: istio-system, serviceAccount: ztunnel, node: {KIND_NODE}, podName: ztunnel-w7k2p}}\n"
        );
        for i in 1..nodes {
            let _ = writeln!(
                text,
                "zt-{i:04}: {{namespace: istio-system, serviceAccount: ztunnel, node: node-{i:04}, podName: ztunnel-{i:04}}}"
            );
        }
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(&tokens, text).expect("tokens");
        Cluster {
            dir,
            config_dir,
            tokens,
        }
    }

    fn serve_config(&self) -> ServeConfig {
        let mut cfg = ServeConfig::new(&self.config_dir, self.dir.path().join("state"));
        cfg.grpc_addr = "127.0.0.1:0".parse().expect("addr");
        cfg.auth = vec![AuthMethod::Tokens(self.tokens.clone())];
        cfg
    }

    /// Writes a config file atomically (a rename), so the watcher never reads half of it.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.config_dir.join(name)).expect("rename");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.config_dir.join(name)).expect("remove");
    }

    /// Replaces `from` by `to` in a config file (exactly once).
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_dir.join(name)).expect("read");
        assert_eq!(text.matches(from).count(), 1, "{from:?} once in {name}");
        self.write(name, &text.replacen(from, to, 1));
    }

    /// `n` simulated ztunnels with the token of their node (client 0 on `kind-control-plane`).
    fn fleet(
        &self,
        server: &Running,
        n: usize,
        certificates: bool,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Fleet {
        let file = TokenFile::load(&self.tokens).expect("tokens file");
        let configs = plan(n, &Nodes::FromTokens, &Auth::Tokens(file), certificates).expect("plan");
        assert_eq!(configs[0].node_name, KIND_NODE);
        let target = Target::new(&format!("https://{}", server.addr), Some(&server.root_pem))
            .expect("target");
        Fleet::spawn(&target, configs, observers).expect("fleet")
    }
}

fn pod(name: &str, ip: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: frontend\n  labels:\n    app: {app}\n\
         spec:\n  nodeName: {KIND_NODE}\n  serviceAccountName: sleep\n  containers:\n  - name: app\n    image: example\n\
         status:\n  phase: Running\n  podIP: {ip}\n  conditions:\n  - type: Ready\n    status: \"True\"\n"
    )
}

const EXTRA_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: extra\n  namespace: frontend\n\
spec:\n  clusterIP: 10.96.200.1\n  selector:\n    app: extra\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n    protocol: TCP\n";

fn policy(principal: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ratings-l4\n  namespace: backend\n\
         spec:\n  action: ALLOW\n  selector:\n    matchLabels:\n      app: ratings\n  rules:\n  - from:\n    - source:\n        principals:\n        - {principal}\n"
    )
}

const EXTRA_POD: &str = "Kubernetes//Pod/frontend/extra";
const EXTRA_SVC: &str = "frontend/extra.frontend.svc.cluster.local";
const DETAILS_SVC: &str = "backend/details.backend.svc.cluster.local";
const RATINGS_PODS: [&str; 2] = [
    "Kubernetes//Pod/backend/ratings-v1-78d7884947-br5hw",
    "Kubernetes//Pod/backend/ratings-v1-78d7884947-mg2p6",
];
const POLICY: &str = "backend/ratings-l4";

/// `"<kind> changed|removed <name>"`, as `ambientd watch` prints changes.
fn line(kind: XdsKind, what: &str, name: &str) -> String {
    format!("{kind} {what} {name}")
}

/// What one client received after `mark`, as sorted lines (names of empty responses contribute none).
fn received(rec: &Recorder, mark: usize, client: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in rec.since(mark) {
        if let Recorded::Response(r) = e
            && r.client == client
            && let Some(kind) = r.kind
        {
            assert_eq!(r.nack, None, "client {client} NACKed {r:?}");
            out.extend(r.changed.iter().map(|n| line(kind, "changed", n)));
            out.extend(r.removed.iter().map(|n| line(kind, "removed", n)));
        }
    }
    out
}

/// Watches for every expected line on all clients.
fn watch_all(p: &Arc<Propagation>, expected: &[String]) -> Vec<PropagationWatch> {
    expected
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let kind = match parts.next() {
                Some("address") => XdsKind::Address,
                _ => XdsKind::Authorization,
            };
            let expect = match parts.next() {
                Some("changed") => Expect::Changed,
                _ => Expect::Removed,
            };
            p.watch(kind, parts.next().expect("name"), expect)
        })
        .collect()
}

async fn wait_all(watches: &mut [PropagationWatch]) {
    for w in watches {
        let report = w
            .wait_timeout(PATIENCE)
            .await
            .unwrap_or_else(|r| panic!("{} reached only {}/{}", r.name, r.reached, r.target));
        assert_eq!(report.nacks, 0, "{}", report.name);
    }
}

async fn synced(fleet: &Fleet) {
    tokio::time::timeout(PATIENCE, fleet.wait_synced(fleet.len()))
        .await
        .unwrap_or_else(|_| {
            let statuses: Vec<_> = fleet.clients().iter().map(|c| c.status()).collect();
            panic!("not all synced: {statuses:#?}")
        });
}

/// The names of the bookinfo example, from its golden dump.
fn bookinfo_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let text =
        std::fs::read_to_string(support::repo_root().join("tests/golden/bookinfo-dump.json"))
            .expect("golden dump");
    let dump: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let keys = |table: &str| -> BTreeSet<String> {
        dump[table]
            .as_object()
            .expect("table")
            .keys()
            .cloned()
            .collect()
    };
    (keys("addresses"), keys("authorizations"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_sync_bookinfo_with_node_tokens() {
    let cluster = Cluster::new(4);
    let server = start(cluster.serve_config()).await;
    let rec = Recorder::new();
    let fleet = cluster.fleet(&server, 4, false, vec![rec.clone()]);
    synced(&fleet).await;

    let (addresses, authorizations) = bookinfo_names();
    assert_eq!(addresses.len(), 34);
    for (i, client) in fleet.clients().iter().enumerate() {
        let held = client.held(XdsKind::Address);
        assert_eq!(
            held.keys().cloned().collect::<BTreeSet<_>>(),
            addresses,
            "client {i}"
        );
        assert!(
            held.values().all(|v| v.len() == 16),
            "content-hash versions"
        );
        let held = client.held(XdsKind::Authorization);
        assert_eq!(
            held.keys().cloned().collect::<BTreeSet<_>>(),
            authorizations
        );
        let status = client.status();
        assert!(status.connected && status.synced, "{status:?}");
        assert_eq!((status.streams, status.nacks), (1, 0), "{status:?}");
        // One initial response per type, both ACKed, holding everything.
        let responses = rec.responses(i);
        let kinds: BTreeMap<XdsKind, usize> = responses
            .iter()
            .filter_map(|r| r.kind.map(|k| (k, r.changed.len())))
            .collect();
        assert_eq!(
            kinds,
            BTreeMap::from([(XdsKind::Address, 34), (XdsKind::Authorization, 1)])
        );
        assert!(
            responses
                .iter()
                .all(|r| r.nack.is_none() && r.removed.is_empty())
        );
    }
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_edits_reach_every_client_with_exactly_the_changed_names() {
    let cluster = Cluster::new(3);
    let server = start(cluster.serve_config()).await;
    let rec = Recorder::new();
    let propagation = Propagation::new(3);
    let fleet = cluster.fleet(&server, 3, false, vec![rec.clone(), propagation.clone()]);
    synced(&fleet).await;

    type Step<'a> = (&'a str, Box<dyn Fn(&Cluster) + 'a>, Vec<String>);
    let a = |what: &str, name: &str| line(XdsKind::Address, what, name);
    let z = |what: &str, name: &str| line(XdsKind::Authorization, what, name);
    let steps: Vec<Step<'_>> = vec![
        (
            "add a pod",
            Box::new(|c: &Cluster| {
                c.write("90-extra-pod.yaml", &pod("extra", "10.244.0.90", "extra"))
            }),
            vec![a("changed", EXTRA_POD)],
        ),
        (
            "add a Service selecting it",
            Box::new(|c: &Cluster| c.write("91-extra-svc.yaml", EXTRA_SERVICE)),
            vec![a("changed", EXTRA_SVC), a("changed", EXTRA_POD)],
        ),
        (
            "edit the pod",
            Box::new(|c: &Cluster| {
                c.write("90-extra-pod.yaml", &pod("extra", "10.244.0.91", "extra"))
            }),
            vec![a("changed", EXTRA_POD)],
        ),
        (
            "opt a Service out of its waypoint",
            Box::new(|c: &Cluster| {
                c.edit(
                    "20-backend.yaml",
                    "    service: details\n  name: details\n",
                    "    istio.io/use-waypoint: none\n    service: details\n  name: details\n",
                )
            }),
            vec![a("changed", DETAILS_SVC)],
        ),
        (
            "add a policy",
            Box::new(|c: &Cluster| {
                c.write(
                    "92-policy.yaml",
                    &policy("cluster.local/ns/frontend/sa/sleep"),
                )
            }),
            vec![
                z("changed", POLICY),
                a("changed", RATINGS_PODS[0]),
                a("changed", RATINGS_PODS[1]),
            ],
        ),
        (
            "edit the policy",
            Box::new(|c: &Cluster| {
                c.write(
                    "92-policy.yaml",
                    &policy("cluster.local/ns/backend/sa/sleep"),
                )
            }),
            vec![z("changed", POLICY)],
        ),
        (
            "delete the policy",
            Box::new(|c: &Cluster| c.remove("92-policy.yaml")),
            vec![
                z("removed", POLICY),
                a("changed", RATINGS_PODS[0]),
                a("changed", RATINGS_PODS[1]),
            ],
        ),
        (
            "delete the Service",
            Box::new(|c: &Cluster| c.remove("91-extra-svc.yaml")),
            vec![a("removed", EXTRA_SVC), a("changed", EXTRA_POD)],
        ),
        (
            "delete the pod",
            Box::new(|c: &Cluster| c.remove("90-extra-pod.yaml")),
            vec![a("removed", EXTRA_POD)],
        ),
    ];

    for (what, edit, expected) in steps {
        let mark = rec.mark();
        let mut watches = watch_all(&propagation, &expected);
        edit(&cluster);
        wait_all(&mut watches).await;
        let expected: BTreeSet<String> = expected.into_iter().collect();
        for i in 0..fleet.len() {
            assert_eq!(received(&rec, mark, i), expected, "{what}: client {i}");
        }
    }
    for client in fleet.clients() {
        let status = client.status();
        assert_eq!(
            (status.nacks, status.streams, status.addresses),
            (0, 1, 34),
            "{status:?}"
        );
    }
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_clients_keep_state_stale_names_go_and_equal_versions_are_not_resent()
 {
    let cluster = Cluster::new(2);
    cluster.write("90-extra-pod.yaml", &pod("extra", "10.244.0.90", "extra"));
    cluster.write("93-kept.yaml", &pod("kept", "10.244.0.93", "kept"));
    let server = start(cluster.serve_config()).await;
    let addr = server.addr;
    let rec = Recorder::new();
    let propagation = Propagation::new(2);
    let fleet = cluster.fleet(&server, 2, false, vec![rec.clone(), propagation.clone()]);
    synced(&fleet).await;
    assert_eq!(fleet.client(0).status().addresses, 36);

    server.stop().await;
    // While the server is down: one pod goes away, another changes.
    cluster.remove("90-extra-pod.yaml");
    cluster.write("93-kept.yaml", &pod("kept", "10.244.0.94", "kept"));
    let kept = "Kubernetes//Pod/frontend/kept";
    let mark = rec.mark();
    let expected = vec![
        line(XdsKind::Address, "removed", EXTRA_POD),
        line(XdsKind::Address, "changed", kept),
    ];
    let mut watches = watch_all(&propagation, &expected);

    // Same state folder (same root), same port.
    let mut cfg = cluster.serve_config();
    cfg.grpc_addr = addr;
    let server = start(cfg).await;
    wait_all(&mut watches).await;
    let expected: BTreeSet<String> = expected.into_iter().collect();
    for (i, client) in fleet.clients().iter().enumerate() {
        assert_eq!(received(&rec, mark, i), expected, "client {i}");
        let status = client.status();
        assert!(status.streams >= 2, "{status:?}");
        assert_eq!((status.addresses, status.authorizations), (35, 1));
        assert!(!client.held(XdsKind::Address).contains_key(EXTRA_POD));
        // The new stream's answers to the initial requests carried nothing else.
        let new_stream: Vec<_> = rec
            .responses(i)
            .into_iter()
            .filter(|r| r.stream == status.streams)
            .collect();
        let resent: usize = new_stream.iter().map(|r| r.changed.len()).sum();
        assert_eq!(resent, 1, "only the changed pod: {new_stream:#?}");
    }
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_name_is_not_resent_in_a_loop_and_other_clients_are_unaffected() {
    let cluster = Cluster::new(3);
    let server = start(cluster.serve_config()).await;
    let rec = Recorder::new();
    let propagation = Propagation::new(3);
    let fleet = cluster.fleet(&server, 3, false, vec![rec.clone(), propagation.clone()]);
    synced(&fleet).await;

    let nacked = "Kubernetes//Pod/frontend/nacked";
    fleet.client(0).faults().nack_names([nacked]);
    let mark = rec.mark();
    let mut others = propagation.watch_clients(XdsKind::Address, nacked, Expect::Changed, 1..3);
    cluster.write("90-nacked.yaml", &pod("nacked", "10.244.0.90", "nacked"));
    let report = others
        .wait_timeout(PATIENCE)
        .await
        .expect("clients 1 and 2 ACK it");
    assert_eq!(report.nacks, 0);
    let nack = rec
        .wait_for(PATIENCE, |events| {
            events[mark..].iter().find_map(|e| match e {
                Recorded::Response(r) if r.client == 0 && r.nack.is_some() => Some(r.clone()),
                _ => None,
            })
        })
        .await
        .expect("client 0 NACKs");
    assert_eq!(
        nack.nack.as_deref(),
        Some("Kubernetes//Pod/frontend/nacked: rejected by agent-sim fault injection")
    );
    assert_eq!(nack.rejected, [nacked]);
    assert!(nack.changed.is_empty());

    // A later change reaches everyone, and client 0 gets only that change: no resend of the NACKed pod.
    let after = "Kubernetes//Pod/frontend/after";
    let mut all = propagation.watch(XdsKind::Address, after, Expect::Changed);
    cluster.write("91-after.yaml", &pod("after", "10.244.0.91", "after"));
    all.wait_timeout(PATIENCE)
        .await
        .expect("everyone ACKs the next change");
    let client0: Vec<(Vec<String>, Vec<String>, bool)> = rec
        .since(mark)
        .into_iter()
        .filter_map(|e| match e {
            Recorded::Response(r) if r.client == 0 => {
                Some((r.changed, r.rejected, r.nack.is_some()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        client0,
        [
            (vec![], vec![nacked.to_string()], true),
            (vec![after.to_string()], vec![], false),
        ]
    );
    assert!(!fleet.client(0).held(XdsKind::Address).contains_key(nacked));
    assert!(fleet.client(1).held(XdsKind::Address).contains_key(nacked));
    assert_eq!(fleet.client(0).status().nacks, 1);
    assert_eq!(fleet.client(1).status().nacks, 0);
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_delay_the_others() {
    let cluster = Cluster::new(4);
    let server = start(cluster.serve_config()).await;
    let propagation = Propagation::new(4);
    let fleet = cluster.fleet(&server, 4, false, vec![propagation.clone()]);
    synced(&fleet).await;

    fleet.client(0).faults().stop_reading();
    let name = "Kubernetes//Pod/frontend/meanwhile";
    let mut stuck = propagation.watch_clients(XdsKind::Address, name, Expect::Changed, [0]);
    let mut others = propagation.watch_clients(XdsKind::Address, name, Expect::Changed, 1..4);
    cluster.write(
        "90-meanwhile.yaml",
        &pod("meanwhile", "10.244.0.90", "meanwhile"),
    );
    let report = others
        .wait_timeout(PATIENCE)
        .await
        .expect("the others are not held up");
    assert_eq!(report.reached, 3);
    assert_eq!(stuck.report().reached, 0, "client 0 read nothing");

    fleet.client(0).faults().resume_reading();
    stuck
        .wait_timeout(PATIENCE)
        .await
        .expect("client 0 catches up once it reads again");
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_converge() {
    const N: usize = 500;
    let cluster = Cluster::new(N);
    let server = start(cluster.serve_config()).await;
    let propagation = Propagation::new(N);
    let fleet = cluster.fleet(&server, N, false, vec![propagation.clone()]);
    synced(&fleet).await;

    let name = "Kubernetes//Pod/frontend/for-everyone";
    let mut watch = propagation.watch(XdsKind::Address, name, Expect::Changed);
    cluster.write(
        "90-everyone.yaml",
        &pod("for-everyone", "10.244.0.90", "everyone"),
    );
    let report = watch
        .wait_timeout(PATIENCE)
        .await
        .unwrap_or_else(|r| panic!("reached {}/{}", r.reached, r.target));
    assert_eq!((report.reached, report.nacks), (N, 0));
    let nacks: u64 = fleet.clients().iter().map(|c| c.status().nacks).sum();
    assert_eq!(nacks, 0);
    assert!(fleet.clients().iter().all(|c| c.status().addresses == 35));
    fleet.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_for_the_hbone_workloads_of_the_node_through_impersonation() {
    let cluster = Cluster::new(2);
    let server = start(cluster.serve_config()).await;
    let rec = Recorder::new();
    let fleet = cluster.fleet(&server, 2, true, vec![rec.clone()]);
    synced(&fleet).await;

    // Every HBONE identity of bookinfo runs on kind-control-plane; node-0001 runs nothing.
    let expected: BTreeSet<String> = [
        "backend/sa/bookinfo-details",
        "backend/sa/bookinfo-ratings",
        "backend/sa/bookinfo-reviews",
        "backend/sa/sleep",
        "frontend/sa/bookinfo-productpage",
        "frontend/sa/sleep",
    ]
    .iter()
    .map(|s| format!("spiffe://cluster.local/ns/{s}"))
    .collect();
    let issued = rec
        .wait_for(PATIENCE, |events| {
            let ok: BTreeSet<String> = events
                .iter()
                .filter_map(|e| match e {
                    Recorded::Certificate {
                        client: 0,
                        identity,
                        result: Ok(2),
                        ..
                    } => Some(identity.clone()),
                    _ => None,
                })
                .collect();
            (ok.len() == expected.len()).then_some(ok)
        })
        .await
        .unwrap_or_else(|| panic!("certificates: {:#?}", fleet.client(0).certificates()));
    assert_eq!(issued, expected);
    let records = fleet.client(0).certificates();
    assert_eq!(records.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for r in records.values() {
        assert!(
            matches!(r.state, CertState::Issued { chain_len: 2, .. }),
            "{r:?}"
        );
        assert_eq!((r.attempts, r.failures), (1, 0), "{r:?}");
    }
    assert!(
        !rec.events()
            .iter()
            .any(|e| matches!(e, Recorded::Certificate { result: Err(_), .. })),
        "no failures"
    );
    assert!(fleet.client(1).certificates().is_empty());
    fleet.shutdown().await;
    server.stop().await;
}

/// Disconnections of `client` among `events`: `(error, retry_in)`.
fn disconnects(events: &[Recorded], client: usize) -> Vec<(String, std::time::Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Recorded::Disconnected {
                client: c,
                error,
                retry_in,
                ..
            } if *c == client => Some((error.clone(), *retry_in)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clients_back_off_as_ztunnel_does() {
    let cluster = Cluster::new(2);
    let server = start(cluster.serve_config()).await;
    let file = TokenFile::load(&cluster.tokens).expect("tokens file");
    let mut configs = plan(2, &Nodes::FromTokens, &Auth::Tokens(file), false).expect("plan");
    // Client 0 has no token; client 1 claims a namespace its token is not for.
    configs[0].token = None;
    configs[1].namespace = "default".into();
    let rec = Recorder::new();
    let target =
        Target::new(&format!("https://{}", server.addr), Some(&server.root_pem)).expect("target");
    let fleet = Fleet::spawn(&target, configs, vec![rec.clone()]).expect("fleet");
    rec.wait_for(PATIENCE, |events| {
        (disconnects(events, 0).len() >= 3 && disconnects(events, 1).len() >= 3).then_some(())
    })
    .await
    .expect("three refusals each");
    let events = rec.events();
    let ms = std::time::Duration::from_millis;
    for (client, code) in [(0, "Unauthenticated"), (1, "PermissionDenied")] {
        let seen = disconnects(&events, client);
        for (error, _) in &seen {
            assert!(error.contains(code), "client {client}: {error}");
        }
        let delays: Vec<_> = seen.iter().take(3).map(|(_, d)| *d).collect();
        assert_eq!(
            delays,
            [ms(20), ms(40), ms(80)],
            "client {client}: doubling from 10 ms"
        );
        assert!(!fleet.client(client).is_synced());
    }
    assert_eq!(fleet.synced(), 0);
    fleet.shutdown().await;
    server.stop().await;
}

/// A server with the plaintext xDS port and the given maximum connection age, on 127.0.0.1.
async fn start_plain(
    cluster: &Cluster,
    max_age: Option<std::time::Duration>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ambient_control_plane::serve::ServeError>>,
) {
    let mut cfg = cluster.serve_config();
    cfg.xds_plaintext_addr = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.max_connection_age = max_age;
    let server = ambient_control_plane::serve::Server::bind(cfg)
        .await
        .expect("server starts");
    let addr = server.xds_plaintext_addr().expect("plaintext listener");
    assert!(addr.ip().is_loopback());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_xds_port_serves_the_same_with_tokens() {
    let cluster = Cluster::new(2);
    let (addr, stop, task) = start_plain(&cluster, None).await;
    let file = TokenFile::load(&cluster.tokens).expect("tokens file");
    let configs = plan(2, &Nodes::FromTokens, &Auth::Tokens(file), false).expect("plan");
    let target = Target::new(&format!("http://{addr}"), None).expect("target");
    let fleet = Fleet::spawn(&target, configs, Vec::new()).expect("fleet");
    synced(&fleet).await;
    let (addresses, _) = bookinfo_names();
    for client in fleet.clients() {
        let held = client.held(XdsKind::Address);
        assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), addresses);
    }
    fleet.shutdown().await;
    let _ = stop.send(());
    task.await.expect("server task").expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_rotated_at_max_age_reconnect_with_state_and_get_nothing_resent() {
    let cluster = Cluster::new(2);
    let (addr, stop, task) =
        start_plain(&cluster, Some(std::time::Duration::from_millis(300))).await;
    let file = TokenFile::load(&cluster.tokens).expect("tokens file");
    let configs = plan(2, &Nodes::FromTokens, &Auth::Tokens(file), false).expect("plan");
    let rec = Recorder::new();
    let target = Target::new(&format!("http://{addr}"), None).expect("target");
    let fleet = Fleet::spawn(&target, configs, vec![rec.clone()]).expect("fleet");
    synced(&fleet).await;
    rec.wait_for(PATIENCE, |events| {
        let third = |c: usize| {
            events
                .iter()
                .any(|e| matches!(e, Recorded::Connected { client, stream: 3 } if *client == c))
        };
        (third(0) && third(1)).then_some(())
    })
    .await
    .expect("both clients on their third stream");
    for (i, client) in fleet.clients().iter().enumerate() {
        for (error, _) in disconnects(&rec.events(), i) {
            assert!(error.contains("Unavailable"), "client {i}: {error}");
        }
        let later: Vec<_> = rec
            .responses(i)
            .into_iter()
            .filter(|r| r.stream >= 2)
            .collect();
        assert!(
            later
                .iter()
                .all(|r| r.changed.is_empty() && r.removed.is_empty() && r.nack.is_none()),
            "client {i}: {later:#?}"
        );
        let status = client.status();
        assert_eq!(
            (status.addresses, status.authorizations, status.nacks),
            (34, 1, 0)
        );
    }
    fleet.shutdown().await;
    let _ = stop.send(());
    task.await.expect("server task").expect("server stops");
}
