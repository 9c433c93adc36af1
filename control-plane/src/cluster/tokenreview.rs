//! The Kubernetes bearer-token authenticator of the CA and the xDS server, as istiod's
//! `KubeJWTAuthenticator`: the caller's token goes to the API server in a `TokenReview`, and what the
//! API server says about it is who the caller is.
//!
//! For each request with `authorization: Bearer <token>`:
//! 1. The `clusterid` header, when present and not empty, must be this control plane's cluster id
//!    (ambientd serves one cluster; istiod would look for a remote cluster's client and fail the same way).
//! 2. A `TokenReview` with the configured audiences (default `istio-ca`, istiod's `TOKEN_AUDIENCES`) is
//!    created. The review must say `authenticated`, carry no `error`, return one of our audiences in
//!    `status.audiences` (the API server is then audience-aware), and list group
//!    `system:serviceaccounts`.
//! 3. The username `system:serviceaccount:<ns>:<sa>` gives the identity `spiffe://<td>/ns/<ns>/sa/<sa>`.
//! 4. A bound token's `user.extra` gives the pod (`authentication.kubernetes.io/pod-name`, `/pod-uid`)
//!    and, from Kubernetes 1.30 on, the node (`authentication.kubernetes.io/node-name`). Without the node,
//!    the pod is looked up through the [`PodLookup`] given at construction (the index): its node counts
//!    when its uid is the token's and its service account the token's. Otherwise the node stays unknown,
//!    and the caller cannot impersonate (the CA's node check needs it).
//!
//! Successful reviews are cached for a short while (default one minute), keyed by the token's SHA-256, so
//! that a ztunnel's many CSRs (one per local workload) do not each cost an API call. Refusals are not
//! cached. What goes wrong is said in [`AuthError::Refused`] (logged by the caller, never sent back).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::kube::api::{Api, PostParams};
use ambient_ca::auth::{bearer_token, token_digest};
use ambient_ca::{AuthError, Authenticator, Caller, Identity, RequestInfo};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use tracing::debug;

/// istiod's default `TOKEN_AUDIENCES`.
pub const DEFAULT_AUDIENCE: &str = "istio-ca";
/// The gRPC metadata key naming the caller's cluster.
pub const CLUSTER_ID_HEADER: &str = "clusterid";
/// The group every service account token is in.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// `user.extra` keys of a bound service account token.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// More cached reviews than this and expired ones are dropped at the next insertion.
const CACHE_PRUNE_AT: usize = 4096;

/// How the authenticator reviews tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReviewConfig {
    /// The trust domain of the identities it gives.
    pub trust_domain: String,
    /// This control plane's cluster id (`--cluster-id`); a caller naming another one is refused.
    pub cluster_id: String,
    /// The audiences the review asks for; the token must have one of them.
    pub audiences: Vec<String>,
    /// How long a successful review is reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// How long one review may take before the request is refused.
    pub timeout: Duration,
}

impl TokenReviewConfig {
    /// Audience `istio-ca`, a one-minute cache, a ten-second timeout.
    pub fn new(trust_domain: &str, cluster_id: &str) -> Self {
        TokenReviewConfig {
            trust_domain: trust_domain.to_string(),
            cluster_id: cluster_id.to_string(),
            audiences: vec![DEFAULT_AUDIENCE.to_string()],
            cache_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the authenticator needs to know of a pod to trust the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    pub service_account: String,
    /// `spec.nodeName`; empty while unscheduled.
    pub node: String,
}

/// Finds a pod by namespace and name (the control plane answers from its index).
pub trait PodLookup: Send + Sync + 'static {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodFacts>;
}

impl<F> PodLookup for F
where
    F: Fn(&str, &str) -> Option<PodFacts> + Send + Sync + 'static,
{
    fn pod(&self, namespace: &str, name: &str) -> Option<PodFacts> {
        self(namespace, name)
    }
}

/// What a successful review established (cached).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reviewed {
    identity: Identity,
    pod: Option<String>,
    pod_uid: Option<String>,
    node: Option<String>,
}

/// `Authenticator` for Kubernetes service account tokens (`--auth kube`).
pub struct TokenReviewAuthenticator {
    api: Api<TokenReview>,
    config: TokenReviewConfig,
    pods: Option<Arc<dyn PodLookup>>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Reviewed)>>,
}

impl std::fmt::Debug for TokenReviewAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewAuthenticator")
            .field("config", &self.config)
            .field("pods", &self.pods.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenReviewAuthenticator {
    /// Reviews tokens through `client`; `pods` tells a pod's node when the token does not.
    pub fn new(
        client: ::kube::Client,
        config: TokenReviewConfig,
        pods: Option<Arc<dyn PodLookup>>,
    ) -> Self {
        TokenReviewAuthenticator {
            api: Api::all(client),
            config,
            pods,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &TokenReviewConfig {
        &self.config
    }

    /// The cache of reviews. Should a panic ever interrupt an update, it is emptied rather than
    /// trusted: a forgotten review only costs another TokenReview.
    fn cache(&self) -> MutexGuard<'_, HashMap<[u8; 32], (Instant, Reviewed)>> {
        self.cache.lock().unwrap_or_else(|interrupted| {
            let mut cache = interrupted.into_inner();
            cache.clear();
            self.cache.clear_poison();
            cache
        })
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Reviewed> {
        let cache = self.cache();
        cache
            .get(digest)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, r)| r.clone())
    }

    fn remember(&self, digest: [u8; 32], reviewed: &Reviewed) {
        if self.config.cache_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache();
        if cache.len() >= CACHE_PRUNE_AT {
            cache.retain(|_, (until, _)| now < *until);
        }
        cache.insert(digest, (now + self.config.cache_ttl, reviewed.clone()));
    }

    /// Sends the review and checks its answer.
    async fn review(&self, token: &str) -> Result<Reviewed, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(self.config.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = tokio::time::timeout(
            self.config.timeout,
            self.api.create(&PostParams::default(), &review),
        )
        .await
        .map_err(|_| {
            AuthError::Refused(format!(
                "the TokenReview got no answer from the Kubernetes API server within {:?}",
                self.config.timeout
            ))
        })?
        .map_err(|e| {
            AuthError::Refused(format!(
                "the TokenReview failed: {e} (ambientd's service account needs `create` on \
                 tokenreviews.authentication.k8s.io)"
            ))
        })?;
        let status = answer.status.ok_or_else(|| {
            AuthError::Refused("the TokenReview came back without a status".into())
        })?;
        check_review(&status, &self.config)
    }

    /// The caller's node: the token's, or the node of the token's pod as the index knows it.
    fn node_of(&self, reviewed: &Reviewed) -> Option<String> {
        if let Some(node) = &reviewed.node {
            return Some(node.clone());
        }
        let pod_name = reviewed.pod.as_deref()?;
        let ns = &reviewed.identity.namespace;
        let Some(pod) = self.pods.as_ref().and_then(|p| p.pod(ns, pod_name)) else {
            debug!(pod = %format!("{ns}/{pod_name}"), "the token's pod is not known (yet): node unknown");
            return None;
        };
        if reviewed
            .pod_uid
            .as_deref()
            .is_some_and(|uid| uid != pod.uid)
        {
            debug!(pod = %format!("{ns}/{pod_name}"), token_uid = ?reviewed.pod_uid, pod_uid = %pod.uid,
                "the token's pod uid is not the pod's (a deleted pod's token?): node unknown");
            return None;
        }
        if pod.service_account != reviewed.identity.service_account {
            debug!(pod = %format!("{ns}/{pod_name}"), pod_sa = %pod.service_account,
                "the token's pod runs as another service account: node unknown");
            return None;
        }
        (!pod.node.is_empty()).then_some(pod.node)
    }
}

/// istiod's rules for a review's answer.
fn check_review(
    status: &TokenReviewStatus,
    config: &TokenReviewConfig,
) -> Result<Reviewed, AuthError> {
    if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
        return Err(AuthError::Refused(format!(
            "the TokenReview says the token is not valid: {error}"
        )));
    }
    if status.authenticated != Some(true) {
        return Err(AuthError::Refused(
            "the TokenReview says the token is not authenticated (expired, revoked, or for another \
             audience)"
                .into(),
        ));
    }
    let returned = status.audiences.as_deref().unwrap_or_default();
    if !config.audiences.is_empty() && !returned.iter().any(|a| config.audiences.contains(a)) {
        return Err(AuthError::Refused(format!(
            "the token is not for audience {} (the TokenReview returned audiences {returned:?}); \
             ztunnel's token is projected with audience istio-ca",
            config.audiences.join(" or ")
        )));
    }
    let Some(user) = &status.user else {
        return Err(AuthError::Refused(
            "the TokenReview came back without a user".into(),
        ));
    };
    if !user
        .groups
        .iter()
        .flatten()
        .any(|g| g == SERVICE_ACCOUNTS_GROUP)
    {
        return Err(AuthError::Refused(format!(
            "the token is not a service account token (user {:?} is not in group {SERVICE_ACCOUNTS_GROUP})",
            user.username.as_deref().unwrap_or("")
        )));
    }
    let username = user.username.as_deref().unwrap_or("");
    let (namespace, service_account) = match username.split(':').collect::<Vec<_>>().as_slice() {
        ["system", "serviceaccount", ns, sa] if !ns.is_empty() && !sa.is_empty() => {
            (ns.to_string(), sa.to_string())
        }
        _ => {
            return Err(AuthError::Refused(format!(
                "the TokenReview's username {username:?} is not system:serviceaccount:<namespace>:<name>"
            )));
        }
    };
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    Ok(Reviewed {
        identity: Identity::new(config.trust_domain.as_str(), namespace, service_account),
        pod: extra(EXTRA_POD_NAME),
        pod_uid: extra(EXTRA_POD_UID),
        node: extra(EXTRA_NODE_NAME),
    })
}

#[tonic::async_trait]
impl Authenticator for TokenReviewAuthenticator {
    async fn authenticate(
        &self,
        req: &RequestInfo<'_>,
        _csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        let Some(token) = bearer_token(req.metadata) else {
            return Ok(None);
        };
        let token = token?;
        if let Some(cluster) = req.metadata.get(CLUSTER_ID_HEADER) {
            let cluster = cluster.to_str().unwrap_or("<not text>");
            if !cluster.is_empty() && cluster != self.config.cluster_id {
                return Err(AuthError::Refused(format!(
                    "the caller says it is in cluster {cluster:?} (clusterid header), but this control \
                     plane serves cluster {:?} (--cluster-id); set the caller's CLUSTER_ID to it",
                    self.config.cluster_id
                )));
            }
        }
        let digest = token_digest(token);
        let reviewed = match self.cached(&digest) {
            Some(r) => r,
            None => {
                let r = self.review(token).await?;
                self.remember(digest, &r);
                r
            }
        };
        Ok(Some(Caller {
            node: self.node_of(&reviewed),
            identity: reviewed.identity,
            pod: reviewed.pod,
        }))
    }

    fn name(&self) -> &'static str {
        "kube"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn config() -> TokenReviewConfig {
        TokenReviewConfig::new("cluster.local", "Kubernetes")
    }

    fn status(username: &str, groups: &[&str], audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(username.to_string()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                extra: Some(BTreeMap::from([
                    (EXTRA_POD_NAME.to_string(), vec!["ztunnel-x".to_string()]),
                    (EXTRA_POD_UID.to_string(), vec!["u-1".to_string()]),
                ])),
                uid: None,
            }),
            error: None,
        }
    }

    #[test]
    fn a_service_account_token_gives_its_identity_and_pod() {
        let r = check_review(
            &status(
                "system:serviceaccount:istio-system:ztunnel",
                &["system:serviceaccounts", "system:authenticated"],
                &["istio-ca"],
            ),
            &config(),
        )
        .unwrap();
        assert_eq!(
            r,
            Reviewed {
                identity: Identity::new("cluster.local", "istio-system", "ztunnel"),
                pod: Some("ztunnel-x".into()),
                pod_uid: Some("u-1".into()),
                node: None,
            }
        );
    }

    #[test]
    fn reviews_istiod_refuses_are_refused() {
        let sa = "system:serviceaccount:a:b";
        let group = &["system:serviceaccounts"][..];
        let mut unauthenticated = status(sa, group, &["istio-ca"]);
        unauthenticated.authenticated = Some(false);
        let mut errored = status(sa, group, &["istio-ca"]);
        errored.error = Some("token expired".into());
        let cases = [
            (unauthenticated, "not authenticated"),
            (errored, "token expired"),
            (status(sa, group, &["other"]), "not for audience istio-ca"),
            (status(sa, group, &[]), "not for audience istio-ca"),
            (
                status(sa, &["system:authenticated"], &["istio-ca"]),
                "not a service account token",
            ),
            (
                status("system:serviceaccount:a", group, &["istio-ca"]),
                "is not system:serviceaccount:<namespace>:<name>",
            ),
            (
                status("system:serviceaccount:a:b:c", group, &["istio-ca"]),
                "is not system:serviceaccount:<namespace>:<name>",
            ),
            (
                status("system:serviceaccount::b", group, &["istio-ca"]),
                "is not system:serviceaccount:<namespace>:<name>",
            ),
        ];
        for (st, want) in cases {
            match check_review(&st, &config()) {
                Err(AuthError::Refused(msg)) => assert!(msg.contains(want), "{msg} vs {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
