//! `agent-sim run` against an in-process `ambientd serve` on 127.0.0.1 (TLS, tokens): a fleet of
//! simulated ztunnels syncs, reports a change as JSON lines, and prints a summary on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ambient_control_plane::serve::{AuthMethod, ServeConfig, Server};

const PATIENCE: Duration = Duration::from_secs(30);

/// The `agent-sim` binary of the same build (`cargo test --workspace` builds it before running tests):
/// next to the folder of this test's executable (`target/<profile>/deps/`).
fn agent_sim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let path = profile_dir.join(format!("agent-sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p agent-sim` (or run `cargo test --workspace`)",
        path.display()
    );
    path
}

fn copy_bookinfo(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bookinfo");
    std::fs::create_dir_all(to).expect("config dir");
    for entry in std::fs::read_dir(from).expect("bookinfo") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

/// Stdout of `child`, line by line, parsed as JSON.
fn json_lines(child: &mut Child) -> mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_event(rx: &mpsc::Receiver<serde_json::Value>, event: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {event:?} line: {e}"));
        if v["event"] == event {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_reports_sync_and_each_change_as_json_until_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config: PathBuf = dir.path().join("config");
    copy_bookinfo(&config);
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "zt-kind: {namespace: istio-system, serviceAccount: ztunnel, node: kind-control-plane}\n\
         zt-1: {namespace: istio-system, serviceAccount: ztunnel, node: node-0001}\n",
    )
    .expect("tokens");
    let mut cfg = ServeConfig::new(&config, dir.path().join("state"));
    cfg.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.auth = vec![AuthMethod::Tokens(tokens.clone())];
    let server = Server::bind(cfg).await.expect("server");
    let url = format!("https://{}", server.grpc_addr());
    let root = server.root_bundle_path().to_path_buf();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut child = Command::new(agent_sim_binary())
        .args(["run", "--xds", &url, "--root-cert"])
        .arg(&root)
        .arg("--tokens")
        .arg(&tokens)
        .args(["--ztunnels", "2", "--certs", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-sim starts");
    let rx = json_lines(&mut child);

    let start = next_event(&rx, "start");
    assert_eq!(start["ztunnels"], 2);
    assert_eq!(start["url"], url.as_str());
    let synced = next_event(&rx, "synced");
    assert_eq!(
        (
            &synced["synced"],
            &synced["addresses"],
            &synced["authorizations"]
        ),
        (&2.into(), &34.into(), &1.into())
    );

    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\n  namespace: frontend\nspec:\n  containers: []\nstatus:\n  phase: Running\n  podIP: 10.244.0.99\n";
    let tmp = dir.path().join("extra.tmp");
    std::fs::write(&tmp, pod).expect("write");
    std::fs::rename(&tmp, config.join("90-extra.yaml")).expect("rename");
    let change = next_event(&rx, "change");
    assert_eq!(change["type"], "address");
    assert_eq!(
        change["changed"],
        serde_json::json!(["Kubernetes//Pod/frontend/extra"])
    );
    assert_eq!(change["removed"], serde_json::json!([]));
    assert_eq!(
        (&change["clients"], &change["acked"], &change["nacks"]),
        (&2.into(), &2.into(), &0.into())
    );
    assert_eq!(change["complete"], true);
    assert!(change["all_acked_ms"].as_f64().is_some_and(|ms| ms >= 0.0));

    // Ctrl-C: a final summary, then a clean exit.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let summary = next_event(&rx, "stop");
    assert_eq!(
        (&summary["synced"], &summary["nacks"]),
        (&2.into(), &0.into())
    );
    let exit = child.wait().expect("agent-sim exits");
    assert!(exit.success(), "{exit:?}");

    let _ = stop.send(());
    serving.await.expect("server task").expect("server stops");
}
