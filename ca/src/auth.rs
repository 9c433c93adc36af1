//! Who is asking: pluggable caller authentication for `CreateCertificate`, and the node lookup the
//! impersonation rule needs.
//!
//! The service tries its authenticators in order; the first that returns `Ok(Some(caller))` decides,
//! `Ok(None)` means "not mine, try the next", and `Err` refuses the request. Built in:
//! - [`TokenFileAuthenticator`] (`--auth tokens=FILE`): static bearer tokens mapped to service accounts.
//! - [`ClientCertAuthenticator`]: the SPIFFE ID of a verified client certificate.
//! - [`TrustAllAuthenticator`] (`--auth none`): every caller is whatever its CSR asks for; only for a
//!   lab on loopback (see [`TrustAllAuthenticator::ensure_loopback`]).
//!
//! The control plane's Kubernetes TokenReview authenticator implements the same [`Authenticator`] trait
//! (asynchronously: it asks the API server).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ring::digest;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tonic::metadata::MetadataMap;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authority::validate_trust_domain;
use crate::error::CaError;
use crate::spiffe::Identity;

/// Who the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// The node the caller runs on, when the authenticator knows it (needed for impersonation).
    pub node: Option<String>,
    pub pod: Option<String>,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.identity)?;
        match (&self.pod, &self.node) {
            (Some(p), Some(n)) => write!(f, " (pod {p} on node {n})"),
            (Some(p), None) => write!(f, " (pod {p})"),
            (None, Some(n)) => write!(f, " (node {n})"),
            (None, None) => Ok(()),
        }
    }
}

/// What the authenticator sees of a request.
pub struct RequestInfo<'a> {
    pub metadata: &'a MetadataMap,
    /// The client's certificate chain, leaf first, as verified by the TLS layer; `None` without one.
    pub peer_certificates: Option<&'a [CertificateDer<'static>]>,
}

/// Why an authenticator refused a request. Shown in the server log, never to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the authorization header is not \"Bearer <token>\"")]
    MalformedHeader,
    #[error("the bearer token is not in {0}")]
    UnknownToken(PathBuf),
    #[error("client certificate: {0}")]
    ClientCertificate(String),
    /// For authenticators outside this crate (TokenReview, ...).
    #[error("{0}")]
    Refused(String),
}

impl AuthError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MalformedHeader => "malformed_authorization",
            AuthError::UnknownToken(_) => "unknown_token",
            AuthError::ClientCertificate(_) => "bad_client_certificate",
            AuthError::Refused(_) => "authenticator_refused",
        }
    }
}

/// Establishes who a caller is. Asynchronous, because some authenticators ask another server (a
/// Kubernetes TokenReview); local ones answer at once.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)`: this authenticator does not apply (try the next); `Err`: it applies and refuses.
    async fn authenticate(
        &self,
        req: &RequestInfo<'_>,
        csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError>;

    /// A name for logs (`tokens`, `client-cert`, `none`, ...).
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A shared authenticator is an authenticator: the CA and the xDS server can use the same ones.
#[tonic::async_trait]
impl<A: Authenticator + ?Sized> Authenticator for std::sync::Arc<A> {
    async fn authenticate(
        &self,
        req: &RequestInfo<'_>,
        csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        (**self).authenticate(req, csr_identity).await
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }
}

/// The bearer token of the request, if it has an `authorization` header (`Some(Err)` when the header is
/// not `Bearer <token>`).
pub fn bearer_token(metadata: &MetadataMap) -> Option<Result<&str, AuthError>> {
    let value = metadata.get("authorization")?;
    let Ok(text) = value.to_str() else {
        return Some(Err(AuthError::MalformedHeader));
    };
    let mut parts = text.splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Some(Ok(token.trim()))
        }
        _ => Some(Err(AuthError::MalformedHeader)),
    }
}

/// Static bearer tokens from a YAML or JSON file:
///
/// ```yaml
/// "<token>": {namespace: istio-system, serviceAccount: ztunnel, node: kind-worker, podName: ztunnel-abcde}
/// ```
///
/// `node` and `podName` are optional; without `node`, the caller cannot impersonate. Tokens are kept
/// as SHA-256 digests, so the lookup time does not depend on how much of a guess matches.
pub struct TokenFileAuthenticator {
    path: PathBuf,
    by_digest: HashMap<[u8; 32], Caller>,
}

impl fmt::Debug for TokenFileAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFileAuthenticator")
            .field("path", &self.path)
            .field("tokens", &self.by_digest.len())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenEntry {
    namespace: String,
    service_account: String,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    pod_name: Option<String>,
}

impl TokenFileAuthenticator {
    /// Reads `path` (YAML or JSON: `{"<token>": {namespace, serviceAccount, node, podName}}`).
    pub fn from_file(path: &Path, trust_domain: &str) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| CaError::io("reading the token file", path, e))?;
        let bad = |reason: String| CaError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let entries: HashMap<String, TokenEntry> = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?
        } else {
            serde_norway::from_str(&text).map_err(|e| bad(format!("not valid YAML: {e}")))?
        };
        if entries.is_empty() {
            return Err(bad(
                "holds no tokens; expected {\"<token>\": {namespace, serviceAccount, node, podName}}"
                    .into(),
            ));
        }
        let mut by_digest = HashMap::with_capacity(entries.len());
        for (token, entry) in entries {
            // Tokens are secrets: name an entry by its account, never by the token.
            let who = format!("{}/{}", entry.namespace, entry.service_account);
            if token.trim().is_empty() || token.trim() != token || token.contains(' ') {
                return Err(bad(format!(
                    "the token of {who} is empty or has spaces; tokens are sent as \"Bearer <token>\""
                )));
            }
            for (field, value) in [
                ("namespace", &entry.namespace),
                ("serviceAccount", &entry.service_account),
            ] {
                if value.is_empty() || value.contains('/') {
                    return Err(bad(format!(
                        "{field} of {who} must be a non-empty name without '/'"
                    )));
                }
            }
            let caller = Caller {
                identity: Identity::new(trust_domain, entry.namespace, entry.service_account),
                node: entry.node.filter(|n| !n.is_empty()),
                pod: entry.pod_name.filter(|p| !p.is_empty()),
            };
            by_digest.insert(token_digest(&token), caller);
        }
        Ok(TokenFileAuthenticator {
            path: path.to_path_buf(),
            by_digest,
        })
    }

    /// Number of tokens loaded.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// SHA-256 of a token: how tokens are kept in memory and compared.
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[tonic::async_trait]
impl Authenticator for TokenFileAuthenticator {
    async fn authenticate(
        &self,
        req: &RequestInfo<'_>,
        _csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        let Some(token) = bearer_token(req.metadata) else {
            return Ok(None);
        };
        match self.by_digest.get(&token_digest(token?)) {
            Some(caller) => Ok(Some(caller.clone())),
            None => Err(AuthError::UnknownToken(self.path.clone())),
        }
    }

    fn name(&self) -> &'static str {
        "tokens"
    }
}

/// The caller is the SPIFFE identity in the URI SAN of its client certificate. The TLS layer has
/// already verified the chain against the CA's roots; a certificate without a SPIFFE ID (a serving
/// certificate, say) does not apply, one from another trust domain is refused.
#[derive(Debug, Clone)]
pub struct ClientCertAuthenticator {
    trust_domain: String,
}

impl ClientCertAuthenticator {
    pub fn new(trust_domain: &str) -> Self {
        ClientCertAuthenticator {
            trust_domain: trust_domain.to_string(),
        }
    }
}

#[tonic::async_trait]
impl Authenticator for ClientCertAuthenticator {
    async fn authenticate(
        &self,
        req: &RequestInfo<'_>,
        _csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        let Some(leaf) = req.peer_certificates.and_then(|c| c.first()) else {
            return Ok(None);
        };
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| AuthError::ClientCertificate(format!("does not parse: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| AuthError::ClientCertificate(format!("bad subjectAltName: {e}")))?;
        let Some(san) = san else {
            return Ok(None);
        };
        let ids: Vec<Identity> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                    Some(uri.parse::<Identity>())
                }
                _ => None,
            })
            .collect::<Result<_, _>>()
            .map_err(|e: crate::spiffe::IdentityError| {
                AuthError::ClientCertificate(e.to_string())
            })?;
        match ids.as_slice() {
            [] => Ok(None),
            [id] if id.trust_domain == self.trust_domain => Ok(Some(Caller {
                identity: id.clone(),
                node: None,
                pod: None,
            })),
            [id] => Err(AuthError::ClientCertificate(format!(
                "{id} is not in trust domain {:?}",
                self.trust_domain
            ))),
            more => Err(AuthError::ClientCertificate(format!(
                "{} SPIFFE IDs; exactly one is expected",
                more.len()
            ))),
        }
    }

    fn name(&self) -> &'static str {
        "client-cert"
    }
}

/// `--auth none`: the caller is whatever identity its CSR asks for (node `None`). For a local lab only;
/// the control plane refuses it unless every listener binds loopback ([`Self::ensure_loopback`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAllAuthenticator;

impl TrustAllAuthenticator {
    /// Refuses any listener address that is not loopback, and warns that every caller is trusted.
    pub fn ensure_loopback(listeners: &[SocketAddr]) -> Result<(), CaError> {
        if let Some(addr) = listeners.iter().find(|a| !a.ip().is_loopback()) {
            return Err(CaError::TrustAllNotLoopback(*addr));
        }
        tracing::warn!(
            "--auth none: every caller gets a certificate for whatever identity it asks for; \
             this is for a local lab only"
        );
        Ok(())
    }
}

#[tonic::async_trait]
impl Authenticator for TrustAllAuthenticator {
    async fn authenticate(
        &self,
        _req: &RequestInfo<'_>,
        csr_identity: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        Ok(Some(Caller {
            identity: csr_identity.clone(),
            node: None,
            pod: None,
        }))
    }

    fn name(&self) -> &'static str {
        "none"
    }
}

/// Pods on nodes, for impersonation; the control plane implements it from its index.
pub trait NodeLookup: Send + Sync + 'static {
    /// Whether a pod with service account `service_account` in `namespace` is scheduled on `node`.
    fn pod_on_node(&self, node: &str, namespace: &str, service_account: &str) -> bool;
}

/// A lookup that knows no pods: impersonation is never allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPods;

impl NodeLookup for NoPods {
    fn pod_on_node(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

impl<F> NodeLookup for F
where
    F: Fn(&str, &str, &str) -> bool + Send + Sync + 'static,
{
    fn pod_on_node(&self, node: &str, namespace: &str, service_account: &str) -> bool {
        self(node, namespace, service_account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn meta(auth: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(a) = auth {
            m.insert("authorization", MetadataValue::try_from(a).unwrap());
        }
        m
    }

    fn any_id() -> Identity {
        Identity::new("cluster.local", "default", "default")
    }

    #[tokio::test]
    async fn token_file_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("tokens.yaml");
        std::fs::write(
            &yaml,
            "zt-token:\n  namespace: istio-system\n  serviceAccount: ztunnel\n  node: node-a\n  podName: ztunnel-1\n\
             app-token: {namespace: default, serviceAccount: app}\n",
        )
        .unwrap();
        let a = TokenFileAuthenticator::from_file(&yaml, "cluster.local").unwrap();
        assert_eq!(a.len(), 2);
        let m = meta(Some("Bearer zt-token"));
        let req = RequestInfo {
            metadata: &m,
            peer_certificates: None,
        };
        let caller = a.authenticate(&req, &any_id()).await.unwrap().unwrap();
        assert_eq!(
            caller,
            Caller {
                identity: Identity::new("cluster.local", "istio-system", "ztunnel"),
                node: Some("node-a".into()),
                pod: Some("ztunnel-1".into()),
            }
        );
        assert_eq!(
            caller.to_string(),
            "spiffe://cluster.local/ns/istio-system/sa/ztunnel (pod ztunnel-1 on node node-a)"
        );

        let json = dir.path().join("tokens.json");
        std::fs::write(
            &json,
            r#"{"t1": {"namespace": "default", "serviceAccount": "app"}}"#,
        )
        .unwrap();
        let a = TokenFileAuthenticator::from_file(&json, "example.org").unwrap();
        let m = meta(Some("bearer t1"));
        let req = RequestInfo {
            metadata: &m,
            peer_certificates: None,
        };
        let caller = a.authenticate(&req, &any_id()).await.unwrap().unwrap();
        assert_eq!(
            caller.identity.to_string(),
            "spiffe://example.org/ns/default/sa/app"
        );
        assert_eq!(caller.node, None);
    }

    #[tokio::test]
    async fn token_lookup_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, "good: {namespace: a, serviceAccount: b}\n").unwrap();
        let a = TokenFileAuthenticator::from_file(&path, "td").unwrap();
        let check = async |auth: Option<&str>| {
            let m = meta(auth);
            a.authenticate(
                &RequestInfo {
                    metadata: &m,
                    peer_certificates: None,
                },
                &any_id(),
            )
            .await
        };
        assert_eq!(check(None).await, Ok(None));
        assert_eq!(
            check(Some("Bearer bad")).await,
            Err(AuthError::UnknownToken(path.clone()))
        );
        assert_eq!(
            check(Some("Basic Zm9v")).await,
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            check(Some("Bearer ")).await,
            Err(AuthError::MalformedHeader)
        );
        assert!(check(Some("Bearer good")).await.unwrap().is_some());
    }

    #[test]
    fn token_file_errors_name_the_file_and_never_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{}", "holds no tokens"),
            ("secret123: {namespace: a}\n", "serviceAccount"),
            (
                "secret123: {namespace: a, serviceAccount: b, extra: 1}\n",
                "extra",
            ),
            (
                "secret123: {namespace: '', serviceAccount: b}\n",
                "namespace of /b",
            ),
            (
                "'secret 123': {namespace: a, serviceAccount: b}\n",
                "has spaces",
            ),
            ("{\"secret123\": [}", "not valid JSON"),
        ];
        for (text, want) in cases {
            let path = dir.path().join("t.yaml");
            std::fs::write(&path, text).unwrap();
            let err = TokenFileAuthenticator::from_file(&path, "td")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("t.yaml"), "{err}");
            assert!(!err.contains("secret 123"), "{err}");
        }
        let missing =
            TokenFileAuthenticator::from_file(&dir.path().join("nope"), "td").unwrap_err();
        assert!(missing.to_string().contains("nope"));
    }

    #[tokio::test]
    async fn trust_all_and_loopback_rule() {
        let m = meta(None);
        let req = RequestInfo {
            metadata: &m,
            peer_certificates: None,
        };
        let id = Identity::new("td", "x", "y");
        let caller = TrustAllAuthenticator
            .authenticate(&req, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(caller.identity, id);
        assert_eq!(caller.node, None);
        assert!(
            TrustAllAuthenticator::ensure_loopback(&[
                "127.0.0.1:15012".parse().unwrap(),
                "[::1]:15010".parse().unwrap()
            ])
            .is_ok()
        );
        let err = TrustAllAuthenticator::ensure_loopback(&["0.0.0.0:15012".parse().unwrap()])
            .unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:15012"));
    }

    #[test]
    fn closures_are_node_lookups() {
        let lookup: Box<dyn NodeLookup> =
            Box::new(|node: &str, ns: &str, sa: &str| node == "n1" && ns == "a" && sa == "b");
        assert!(lookup.pod_on_node("n1", "a", "b"));
        assert!(!lookup.pod_on_node("n2", "a", "b"));
        assert!(!NoPods.pod_on_node("n1", "a", "b"));
    }
}
