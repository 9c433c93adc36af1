//! The `ambientd` binary end to end: `dump` on the bookinfo example and on bad input, `watch` on a live folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn ambientd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ambientd"))
}

fn bookinfo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bookinfo")
}

fn dump(dir: &Path, extra: &[&str]) -> (std::process::Output, Value) {
    let out = ambientd()
        .arg("dump")
        .arg("--config-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run ambientd");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, doc)
}

#[test]
fn bookinfo_dump_shows_hbone_workloads_and_backend_waypoint() {
    let (out, doc) = dump(&bookinfo(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addresses = doc["addresses"].as_object().expect("addresses");

    let workloads: Vec<&Value> = addresses
        .values()
        .filter_map(|a| a.get("workload"))
        .collect();
    let bookinfo_apps = ["productpage", "details", "ratings", "reviews", "sleep"];
    let mut enrolled = 0;
    for w in &workloads {
        let canonical = w["canonicalName"].as_str().unwrap_or_default();
        let ns = w["namespace"].as_str().unwrap_or_default();
        if ["frontend", "backend"].contains(&ns) && bookinfo_apps.contains(&canonical) {
            assert_eq!(w["tunnelProtocol"], "HBONE", "{}", w["name"]);
            assert!(
                w.get("waypoint").is_none(),
                "pods are not bound: {}",
                w["name"]
            );
            enrolled += 1;
        }
    }
    assert_eq!(enrolled, 14, "12 bookinfo pods and 2 sleep pods");

    let backend_waypoint = serde_json::json!({
        "hostname": {"namespace": "backend", "hostname": "waypoint.backend.svc.cluster.local"},
        "hboneMtlsPort": 15008
    });
    for svc in [
        "details",
        "details-v1",
        "ratings",
        "ratings-v1",
        "reviews",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    ] {
        let name = format!("backend/{svc}.backend.svc.cluster.local");
        assert_eq!(
            addresses[&name]["service"]["waypoint"], backend_waypoint,
            "{name}"
        );
    }
    let waypoint_svc = &addresses["backend/waypoint.backend.svc.cluster.local"]["service"];
    assert!(
        waypoint_svc.get("waypoint").is_none(),
        "the waypoint's own Service is not bound"
    );
    for (name, a) in addresses {
        let ns = a["workload"]["namespace"]
            .as_str()
            .or(a["service"]["namespace"].as_str())
            .unwrap_or_default();
        if ns == "frontend" {
            assert!(
                a["workload"].get("waypoint").is_none() && a["service"].get("waypoint").is_none(),
                "{name} is bound"
            );
        }
    }
    assert_eq!(
        doc["authorizations"],
        serde_json::json!({
            "frontend/productpage-viewer": {
                "name": "productpage-viewer",
                "namespace": "frontend",
                "scope": "WORKLOAD_SELECTOR",
                "rules": [{"clauses": [{"matches": [{"principals": [
                    {"exact": "cluster.local/ns/istio-ingress/sa/gateway-istio"}
                ]}]}]}]
            }
        })
    );
}

#[test]
fn dump_keys_are_sorted_and_output_file_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("dump.json");
    let (out, _) = dump(
        &bookinfo(),
        &["--output", file.to_str().expect("utf-8 path")],
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&file).expect("dump file");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let keys: Vec<&String> = doc["addresses"].as_object().expect("map").keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn dump_of_missing_path_fails_with_a_clear_message() {
    let (out, _) = dump(Path::new("/nonexistent/ambientd-config"), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/ambientd-config"), "{stderr}");
}

#[test]
fn invalid_documents_are_listed_and_fail_only_with_strict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: good\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  namespace: good\nspec:\n  ports:\n  - port: notanumber\n",
    )
    .expect("write");
    let (out, doc) = dump(tmp.path(), &[]);
    assert!(out.status.success());
    let diags: Vec<&Value> = doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["type"] == "Parse")
        .collect();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["object"], "Service/good/broken");
    assert!(
        diags[0]["location"]
            .as_str()
            .unwrap_or_default()
            .contains("bad.yaml:"),
        "{}",
        diags[0]["location"]
    );
    let (strict, _) = dump(tmp.path(), &["--strict"]);
    assert!(!strict.status.success());
}

#[test]
fn unknown_flag_is_refused() {
    let out = ambientd()
        .args(["dump", "--no-such-flag"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn watch_reports_changes_as_files_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";
    std::fs::write(tmp.path().join("ns.yaml"), ns).expect("write");
    let mut child = ambientd()
        .arg("watch")
        .arg("--config-dir")
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |want: &str| loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with(want) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no line starting with {want:?}: {e}"),
        }
    };
    wait_for("ready:");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  containers: []\nstatus:\n  podIP: 10.1.0.7\n";
    std::fs::write(tmp.path().join("pod.yaml"), pod).expect("write");
    assert_eq!(
        wait_for("address changed"),
        "address changed Kubernetes//Pod/demo/web"
    );
    std::fs::remove_file(tmp.path().join("pod.yaml")).expect("remove");
    assert_eq!(
        wait_for("address removed"),
        "address removed Kubernetes//Pod/demo/web"
    );
    child.kill().ok();
    child.wait().ok();
}
