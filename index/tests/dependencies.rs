//! The index stays pure: parsing and computing only. Its normal dependency tree must not contain an async
//! runtime, a gRPC or HTTP stack, a Kubernetes client or a logging crate, so that the index cannot grow
//! I/O by accident and every tool that reads it (dump, explain, benches) stays small.

use std::process::Command;

/// Crates that would bring I/O, a runtime or logging into the index.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tonic",
    "hyper",
    "kube",
    "kube-client",
    "kube-core",
    "kube-runtime",
    "tracing",
    "h2",
    "reqwest",
    "notify",
];

#[test]
fn the_index_depends_on_no_runtime_network_kubernetes_client_or_logging_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "ambient-index",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"ambient-proto") && crates.contains(&"k8s-openapi"),
        "unexpected cargo tree output:\n{tree}"
    );
    let found: Vec<&&str> = crates
        .iter()
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "ambient-index must not depend on {found:?}; move that code to the control plane:\n{tree}"
    );
}
