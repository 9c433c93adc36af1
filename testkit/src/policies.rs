//! AuthorizationPolicies for a generated cluster, in the shapes ztunnel sees in practice.

use serde_json::{Value, json};

use crate::spec::ClusterSpec;

/// AuthorizationPolicies for a generated cluster: `count` policies spread over its namespaces, mixing
/// the shapes ztunnel sees in practice. Per namespace, in turn: selector ALLOW policies on one of the
/// namespace's Services (principals and ports), a selector ALLOW with an HTTP method (dropped at ztunnel),
/// namespace-wide DENY policies (IP blocks), and, one in fifty, a mesh-wide DENY in `istio-system`.
pub fn policies(spec: &ClusterSpec, count: usize) -> Vec<Value> {
    let namespaces = spec.namespace_count();
    let services = spec.services().max(1);
    (0..count)
        .map(|i| {
            let ns_index = i % namespaces;
            let ns = spec.namespace_name(ns_index);
            // A Service of this namespace: Services are laid out in contiguous blocks per namespace.
            let first = (ns_index * services).div_ceil(namespaces);
            let last = ((ns_index + 1) * services).div_ceil(namespaces).max(first + 1);
            let svc = spec.service_name((first + i / namespaces % (last - first)).min(services - 1));
            let name = format!("policy-{i:05}");
            match i % 50 {
                49 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": "istio-system"},
                    "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": [format!("192.0.{}.0/24", i % 256)]}}]}]}
                }),
                k if k % 5 == 4 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.0/24"], "notNamespaces": [ns]}}]}]}
                }),
                k if k % 5 == 3 => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "selector": {"matchLabels": {"app": svc}},
                        "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/{ns}/sa/client")]}}], "to": [{"operation": {"methods": ["GET"]}}]}]
                    }
                }),
                _ => json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "selector": {"matchLabels": {"app": svc}},
                        "rules": [{
                            "from": [{"source": {"principals": [format!("cluster.local/ns/{ns}/sa/client-{}", i % 7)], "namespaces": [ns]}}],
                            "to": [{"operation": {"ports": ["8080"]}}]
                        }]
                    }
                }),
            }
        })
        .collect()
}
