//! Every Kubernetes API call ambientd's source, leader election, status writer and CA make, as
//! `(API group, resource, verb)` in RBAC terms, for the ClusterRole that lets ambientd run. The tests
//! below check it against the kinds the source watches, and `control-plane/tests/kube_source.rs` against
//! the requests a fake API server actually receives.

/// `(API group, resource, verb)`: the group is `""` for the core group; a subresource is written
/// `resource/subresource`, as RBAC rules name it.
pub type ApiCall = (&'static str, &'static str, &'static str);

/// Every call the code makes. Namespaced resources are read in every namespace; the Lease and the
/// Secrets are read and written only in the system namespace.
pub const API_CALLS: &[ApiCall] = &[
    // The Kubernetes source (crate::source::kube): a list, then a watch, per kind.
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "services", "list"),
    ("", "services", "watch"),
    ("discovery.k8s.io", "endpointslices", "list"),
    ("discovery.k8s.io", "endpointslices", "watch"),
    ("gateway.networking.k8s.io", "gatewayclasses", "list"),
    ("gateway.networking.k8s.io", "gatewayclasses", "watch"),
    ("gateway.networking.k8s.io", "gateways", "list"),
    ("gateway.networking.k8s.io", "gateways", "watch"),
    ("gateway.networking.k8s.io", "httproutes", "list"),
    ("gateway.networking.k8s.io", "httproutes", "watch"),
    ("security.istio.io", "authorizationpolicies", "list"),
    ("security.istio.io", "authorizationpolicies", "watch"),
    ("security.istio.io", "peerauthentications", "list"),
    ("security.istio.io", "peerauthentications", "watch"),
    // Leader election (super::leader).
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
    // Status written by the leader (super::status): server-side apply on the status subresource.
    ("", "services/status", "patch"),
    ("security.istio.io", "authorizationpolicies/status", "patch"),
    // The CA (super::tokenreview, super::ca_secret, super::root_cert): TokenReviews of callers' tokens;
    // Secrets `cacerts` and `istio-ca-secret` in the system namespace; ConfigMap `istio-ca-root-cert`
    // in every namespace (the namespaces come from the list and watch above).
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("", "secrets", "get"),
    ("", "secrets", "create"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "configmaps", "update"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::cluster::status::STATUS_KINDS;
    use crate::source::kube::watched;
    use ambient_index::model::Kind;

    #[test]
    fn every_watched_kind_is_listed_and_watched() {
        let mut expected = BTreeSet::new();
        for kind in Kind::ALL {
            let w = watched(kind);
            expected.insert((w.group, w.plural, "list"));
            expected.insert((w.group, w.plural, "watch"));
        }
        for kind in STATUS_KINDS {
            let w = watched(kind);
            let resource: &'static str = match kind {
                Kind::Service => "services/status",
                Kind::AuthorizationPolicy => "authorizationpolicies/status",
                other => panic!("{other} has no status resource here"),
            };
            assert_eq!(format!("{}/status", w.plural), resource);
            expected.insert((w.group, resource, "patch"));
        }
        for verb in ["get", "create", "update"] {
            expected.insert(("coordination.k8s.io", "leases", verb));
            expected.insert(("", "configmaps", verb));
        }
        expected.insert(("authentication.k8s.io", "tokenreviews", "create"));
        expected.insert(("", "secrets", "get"));
        expected.insert(("", "secrets", "create"));
        let listed: BTreeSet<ApiCall> = API_CALLS.iter().copied().collect();
        assert_eq!(listed.len(), API_CALLS.len(), "no call is listed twice");
        assert_eq!(listed, expected);
    }
}
