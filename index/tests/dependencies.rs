//! The index stays pure: parsing and computing only. Its normal dependency tree must not contain an async
//! runtime, a gRPC or HTTP stack, a Kubernetes client or a logging crate, so that the index cannot grow
//! I/O by accident and every tool that reads it (dump, explain, benches) stays small.

use ambient_testkit::deps::normal_dependencies;

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
    let names = normal_dependencies("ambient-index", env!("CARGO_MANIFEST_DIR").as_ref())
        .expect("cargo tree runs");
    assert!(
        names.iter().any(|n| n == "ambient-proto") && names.iter().any(|n| n == "k8s-openapi"),
        "unexpected cargo tree output: {names:?}"
    );
    let found: Vec<&String> = names
        .iter()
        .filter(|name| FORBIDDEN.contains(&name.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "ambient-index must not depend on {found:?}; move that code to the control plane: {names:?}"
    );
}
