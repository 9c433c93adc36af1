//! `agent-sim bench` end to end on a tiny cluster: it starts the `ambientd` built next to it, syncs a few
//! simulated ztunnels and measures every kind of change, and refuses to overwrite a folder by accident.

use std::path::PathBuf;
use std::process::{Command, Output};

fn agent_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-sim"))
        .args(args)
        .output()
        .expect("agent-sim runs")
}

/// The `ambientd` of the same build (`cargo test --workspace` builds it before running tests).
fn ambientd() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_agent-sim")).with_file_name("ambientd");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p ambient-control-plane` (or run `cargo test --workspace`)",
        path.display()
    );
    path
}

#[test]
fn a_small_bench_measures_every_kind_of_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cluster");
    let ambientd = ambientd();
    let out = agent_sim(&[
        "bench",
        "--config-dir",
        dir.to_str().expect("utf-8 path"),
        "--ztunnels",
        "3",
        "--pods",
        "30",
        "--namespaces",
        "3",
        "--changes",
        "4",
        "--json",
        "--ambientd",
        ambientd.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON report");
    assert_eq!(report["ztunnels"], 3);
    assert_eq!(report["pods"], 30);
    assert_eq!(report["changes_lost"], 0);
    let changes = report["changes"].as_array().expect("changes");
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["policy add", "pod add", "pod label change", "pod delete"]
    );
    let names: Vec<&str> = changes
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "ns-000/bench-policy-0",
            "Kubernetes//Pod/ns-000/bench-pod-0",
            "Kubernetes//Pod/ns-000/bench-pod-0",
            "Kubernetes//Pod/ns-000/bench-pod-0"
        ]
    );
    for c in changes {
        assert_eq!(c["reached"], 3, "{c}");
        assert!(c["all_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{c}");
    }
    assert!(
        report["server_rss_mb"].as_f64().is_some_and(|mb| mb > 0.0),
        "{report}"
    );

    // The last line is for scripts: four key=value figures.
    let keys: Vec<&str> = lines[1]
        .split(' ')
        .map(|kv| kv.split_once('=').expect("key=value").0)
        .collect();
    assert_eq!(
        keys,
        [
            "propagation_p50_ms",
            "propagation_p99_ms",
            "initial_sync_s",
            "server_rss_mb"
        ]
    );
}

#[test]
fn a_folder_with_files_is_not_overwritten_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("mine.yaml"), "kind: Namespace\n").expect("write");
    let ambientd = ambientd();
    let out = agent_sim(&[
        "bench",
        "--config-dir",
        tmp.path().to_str().expect("utf-8 path"),
        "--ztunnels",
        "1",
        "--pods",
        "10",
        "--ambientd",
        ambientd.to_str().expect("utf-8 path"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    assert!(
        tmp.path().join("mine.yaml").is_file(),
        "nothing was removed"
    );
}
