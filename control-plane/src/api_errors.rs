//! How ambientd tells the Kubernetes API server's refusals apart: shared by the Kubernetes source and
//! by the other callers of the API server (leases, status writes, the CA's Secrets and ConfigMaps).

/// Whether an API error is `404 Not Found`: a missing object, or a resource type the server does not serve
/// (which it answers with a plain-text `404 page not found`, so the code is what tells).
pub fn is_not_found(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(status) if status.code == 404 || status.is_not_found())
}

/// Whether an API error is `409 Conflict` (a stale `resourceVersion`, or an object that already exists).
pub fn is_conflict(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(status)
        if status.code == 409 || status.is_conflict() || status.is_already_exists())
}
