//! `istio.v1.auth.IstioCertificateService/CreateCertificate`: authenticate the caller, check the CSR,
//! decide which identity the leaf may carry, sign.
//!
//! Order of checks, and what the caller gets back when one fails (the precise reason goes to the log):
//! 1. The CSR passes every rule of [`crate::csr`] — else `InvalidArgument` with the reason.
//! 2. An authenticator recognises the caller — else `Unauthenticated "request authenticate failure"`.
//! 3. The CSR's trust domain is the CA's — else `InvalidArgument`.
//! 4. With request metadata `ImpersonatedIdentity` (a string in the request's `metadata` Struct), the
//!    caller's `ns/sa` must be in `trusted_node_accounts`, its node must be known, a pod with the
//!    requested namespace/service account must run on that node, and the CSR must ask for exactly the
//!    impersonated identity — else `Unauthenticated "request impersonation authentication failure"`.
//!    Impersonating oneself is no impersonation and is allowed (this is what lets a shared-mode ztunnel
//!    work in a lab with `--auth none`). Without impersonation the CSR must ask for the caller's own
//!    identity — else `PermissionDenied`.
//! 5. Lifetime: `validity_duration` seconds, capped at `max_workload_ttl`; zero or negative means the cap.
//!
//! Every issued certificate is logged at info with its serial, identity and caller.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ambient_proto::auth::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use ambient_proto::auth::{IstioCertificateRequest, IstioCertificateResponse};
use rustls::pki_types::CertificateDer;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller, NodeLookup, RequestInfo};
use crate::authority::CertificateAuthority;
use crate::csr;
use crate::error::CaError;
use crate::metrics::{CaMetrics, Metrics, RefusalReason};
use crate::spiffe::Identity;

/// The request metadata key ztunnel uses to ask for a workload's certificate on its behalf.
pub const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// Status message when no authenticator accepts the caller (istiod's wording).
pub const AUTHENTICATE_FAILURE: &str = "request authenticate failure";
/// Status message when impersonation is refused (istiod's wording).
pub const IMPERSONATION_FAILURE: &str = "request impersonation authentication failure";

/// Settings of the CA service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaServiceConfig {
    /// `(namespace, service account)` pairs that may ask for other identities on their node.
    pub trusted_node_accounts: Vec<(String, String)>,
    /// Longest workload certificate lifetime (`--max-workload-cert-ttl`).
    pub max_workload_ttl: Duration,
}

impl Default for CaServiceConfig {
    fn default() -> Self {
        CaServiceConfig {
            trusted_node_accounts: vec![("istio-system".into(), "ztunnel".into())],
            max_workload_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl CaServiceConfig {
    /// Parses `--trusted-node-accounts` (`ns/sa,ns/sa`, as istiod's `CA_TRUSTED_NODE_ACCOUNTS`).
    pub fn parse_trusted_node_accounts(s: &str) -> Result<Vec<(String, String)>, CaError> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('/') {
                Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
                    Ok((ns.to_string(), sa.to_string()))
                }
                _ => Err(CaError::InvalidSetting {
                    setting: "--trusted-node-accounts",
                    reason: format!("{p:?} is not <namespace>/<serviceaccount>"),
                }),
            })
            .collect()
    }
}

/// The client certificates of a connection, for transports other than tonic's own
/// `TlsStream<TcpStream>` (whose certificates the service finds by itself): put this in the request
/// extensions.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// The gRPC service. Cloning is cheap and clones share the CA, counters and authenticators.
#[derive(Clone)]
pub struct CaService {
    inner: Arc<Inner>,
}

struct Inner {
    ca: RwLock<Arc<CertificateAuthority>>,
    authenticators: Vec<Box<dyn Authenticator>>,
    node_lookup: Arc<dyn NodeLookup>,
    config: CaServiceConfig,
    metrics: Metrics,
}

/// A refused request: what the caller is told, and what the log and metrics say.
struct Refusal {
    reason: RefusalReason,
    status: Status,
    detail: String,
}

impl Refusal {
    fn new(reason: RefusalReason, status: Status, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            status,
            detail: detail.into(),
        }
    }
}

impl CaService {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        authenticators: Vec<Box<dyn Authenticator>>,
        node_lookup: Arc<dyn NodeLookup>,
        config: CaServiceConfig,
    ) -> Self {
        CaService {
            inner: Arc::new(Inner {
                ca: RwLock::new(ca),
                authenticators,
                node_lookup,
                config,
                metrics: Metrics::default(),
            }),
        }
    }

    pub fn into_server(self) -> IstioCertificateServiceServer<Self> {
        IstioCertificateServiceServer::new(self)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> CaMetrics {
        self.inner.metrics.snapshot()
    }

    /// The CA that signs now.
    pub fn authority(&self) -> Arc<CertificateAuthority> {
        match self.inner.ca.read() {
            Ok(ca) => ca.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Signs with `ca` from the next request on.
    pub fn set_authority(&self, ca: Arc<CertificateAuthority>) {
        match self.inner.ca.write() {
            Ok(mut cur) => *cur = ca,
            Err(poisoned) => *poisoned.into_inner() = ca,
        }
    }

    pub fn config(&self) -> &CaServiceConfig {
        &self.inner.config
    }

    /// The whole decision for one request, without the gRPC wrapping. Returns the chain.
    async fn handle(
        &self,
        request: &Request<IstioCertificateRequest>,
    ) -> Result<(Vec<String>, Identity, Caller, String), Refusal> {
        let body = request.get_ref();
        let parsed = csr::parse(&body.csr).map_err(|e| {
            Refusal::new(
                RefusalReason::InvalidCsr,
                Status::invalid_argument(format!("invalid CSR: {e}")),
                e.to_string(),
            )
        })?;
        let requested = parsed.identity.clone();

        let peer_certs = request.peer_certs().or_else(|| {
            request
                .extensions()
                .get::<PeerCertificates>()
                .map(|p| p.0.clone())
        });
        let info = RequestInfo {
            metadata: request.metadata(),
            peer_certificates: peer_certs.as_deref().map(Vec::as_slice),
        };
        let caller = self.authenticate(&info, &requested).await?;

        let ca = self.authority();
        if requested.trust_domain != ca.trust_domain() {
            let msg = format!(
                "CSR asks for {requested}, which is not in this CA's trust domain {:?}",
                ca.trust_domain()
            );
            return Err(Refusal::new(
                RefusalReason::WrongTrustDomain,
                Status::invalid_argument(msg.clone()),
                format!("{msg} (caller {caller})"),
            ));
        }

        match impersonated_identity(body) {
            None => {
                if requested != caller.identity {
                    return Err(Refusal::new(
                        RefusalReason::IdentityMismatch,
                        Status::permission_denied(format!(
                            "CSR asks for {requested}, but the caller is {}",
                            caller.identity
                        )),
                        format!("CSR asks for {requested}, but the caller is {caller}"),
                    ));
                }
            }
            Some(impersonated) => {
                let denied = |detail: String| {
                    Refusal::new(
                        RefusalReason::ImpersonationDenied,
                        Status::unauthenticated(IMPERSONATION_FAILURE),
                        format!("caller {caller} asked to impersonate: {detail}"),
                    )
                };
                let target = impersonated.map_err(&denied)?;
                self.authorize_impersonation(&caller, &target, ca.trust_domain())
                    .map_err(&denied)?;
                if requested != target {
                    return Err(denied(format!(
                        "ImpersonatedIdentity is {target}, but the CSR asks for {requested}"
                    )));
                }
            }
        }

        let ttl = self.ttl(body.validity_duration);
        let issued = ca
            .issue_leaf(&requested, &parsed.public_key, ttl)
            .map_err(|e| {
                Refusal::new(
                    RefusalReason::SigningFailed,
                    Status::internal("the CA could not sign the certificate"),
                    e.to_string(),
                )
            })?;
        Ok((issued.chain, requested, caller, issued.serial))
    }

    async fn authenticate(
        &self,
        info: &RequestInfo<'_>,
        requested: &Identity,
    ) -> Result<Caller, Refusal> {
        for a in &self.inner.authenticators {
            match a.authenticate(info, requested).await {
                Ok(Some(caller)) => return Ok(caller),
                Ok(None) => continue,
                Err(e) => {
                    return Err(Refusal::new(
                        RefusalReason::AuthenticationFailed,
                        Status::unauthenticated(AUTHENTICATE_FAILURE),
                        format!(
                            "{} authenticator ({}): {e}; the CSR asks for {requested}",
                            a.name(),
                            e.reason()
                        ),
                    ));
                }
            }
        }
        let tried: Vec<&str> = self.inner.authenticators.iter().map(|a| a.name()).collect();
        Err(Refusal::new(
            RefusalReason::Unauthenticated,
            Status::unauthenticated(AUTHENTICATE_FAILURE),
            format!(
                "no authenticator recognised the caller (tried: {}; no bearer token or client \
                 certificate?); the CSR asks for {requested}",
                tried.join(", ")
            ),
        ))
    }

    /// The impersonation rules; `Err` holds the precise reason for the log.
    fn authorize_impersonation(
        &self,
        caller: &Caller,
        target: &Identity,
        trust_domain: &str,
    ) -> Result<(), String> {
        if *target == caller.identity {
            return Ok(());
        }
        let account = (
            caller.identity.namespace.as_str(),
            caller.identity.service_account.as_str(),
        );
        if !self
            .inner
            .config
            .trusted_node_accounts
            .iter()
            .any(|(ns, sa)| (ns.as_str(), sa.as_str()) == account)
        {
            let trusted: Vec<String> = self
                .inner
                .config
                .trusted_node_accounts
                .iter()
                .map(|(ns, sa)| format!("{ns}/{sa}"))
                .collect();
            return Err(format!(
                "{}/{} is not a trusted node account (trusted: [{}])",
                account.0,
                account.1,
                trusted.join(", ")
            ));
        }
        let Some(node) = caller.node.as_deref() else {
            return Err(
                "the caller's node is unknown (its authenticator does not say; client certificates never do)"
                    .into(),
            );
        };
        if target.trust_domain != trust_domain {
            return Err(format!(
                "{target} is not in this CA's trust domain {trust_domain:?}"
            ));
        }
        if !self
            .inner
            .node_lookup
            .pod_on_node(node, &target.namespace, &target.service_account)
        {
            return Err(format!(
                "no pod with service account {} in namespace {} runs on node {node}",
                target.service_account, target.namespace
            ));
        }
        Ok(())
    }

    fn ttl(&self, validity_seconds: i64) -> Duration {
        workload_ttl(validity_seconds, self.inner.config.max_workload_ttl)
    }
}

/// The lifetime of a workload certificate: `validity_duration` seconds, at most `max`; zero or
/// negative means `max`.
pub fn workload_ttl(validity_seconds: i64, max: Duration) -> Duration {
    if validity_seconds <= 0 {
        max
    } else {
        Duration::from_secs(validity_seconds.unsigned_abs()).min(max)
    }
}

/// `None` without `ImpersonatedIdentity` (or with an empty one); otherwise the parsed identity, or why
/// it is not one.
fn impersonated_identity(body: &IstioCertificateRequest) -> Option<Result<Identity, String>> {
    use prost_types::value::Kind;
    let value = body.metadata.as_ref()?.fields.get(IMPERSONATED_IDENTITY)?;
    match &value.kind {
        Some(Kind::StringValue(s)) if s.is_empty() => None,
        Some(Kind::StringValue(s)) => Some(
            s.parse::<Identity>()
                .map_err(|e| format!("ImpersonatedIdentity: {e}")),
        ),
        other => Some(Err(format!(
            "ImpersonatedIdentity is not a string ({other:?})"
        ))),
    }
}

#[tonic::async_trait]
impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let start = Instant::now();
        let outcome = self.handle(&request).await;
        let elapsed = start.elapsed();
        self.inner.metrics.observe(elapsed);
        let peer = request.remote_addr();
        match outcome {
            Ok((cert_chain, identity, caller, serial)) => {
                self.inner.metrics.issued();
                tracing::info!(
                    serial = %serial,
                    identity = %identity,
                    caller = %caller,
                    peer = ?peer,
                    ttl_s = self.ttl(request.get_ref().validity_duration).as_secs(),
                    elapsed_us = elapsed.as_micros() as u64,
                    "issued workload certificate"
                );
                Ok(Response::new(IstioCertificateResponse { cert_chain }))
            }
            Err(refusal) => {
                self.inner.metrics.refused(refusal.reason);
                tracing::warn!(
                    reason = refusal.reason.label(),
                    peer = ?peer,
                    code = ?refusal.status.code(),
                    "certificate request refused: {}",
                    refusal.detail
                );
                Err(refusal.status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_capped_and_defaults_to_the_cap() {
        let max = Duration::from_secs(86400);
        assert_eq!(workload_ttl(3600, max), Duration::from_secs(3600));
        assert_eq!(workload_ttl(86400, max), max);
        assert_eq!(workload_ttl(86401, max), max);
        assert_eq!(workload_ttl(i64::MAX, max), max);
        assert_eq!(workload_ttl(0, max), max);
        assert_eq!(workload_ttl(-5, max), max);
        assert_eq!(workload_ttl(i64::MIN, max), max);
        assert_eq!(workload_ttl(1, max), Duration::from_secs(1));
    }

    #[test]
    fn trusted_node_accounts_flag() {
        assert_eq!(
            CaServiceConfig::parse_trusted_node_accounts(
                "istio-system/ztunnel, kube-system/agent,"
            )
            .unwrap(),
            vec![
                ("istio-system".to_string(), "ztunnel".to_string()),
                ("kube-system".to_string(), "agent".to_string())
            ]
        );
        assert_eq!(
            CaServiceConfig::parse_trusted_node_accounts("").unwrap(),
            vec![]
        );
        for bad in ["ztunnel", "/sa", "ns/", "a/b/c"] {
            assert!(
                CaServiceConfig::parse_trusted_node_accounts(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            CaServiceConfig::default().trusted_node_accounts,
            vec![("istio-system".to_string(), "ztunnel".to_string())]
        );
    }
}
