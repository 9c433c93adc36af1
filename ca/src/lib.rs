//! The built-in certificate authority of ambientd: workload identity for Istio ambient mode.
//!
//! - [`spiffe`]: SPIFFE IDs `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
//! - [`authority`]: the CA itself ([`CertificateAuthority`]): a self-signed root kept in the state
//!   folder, or an intermediate plugged in with istio's `cacerts` layout; leaf signing.
//! - [`csr`]: the rules a certificate signing request must pass (and which key types are accepted).
//! - [`auth`]: who the caller is ([`Authenticator`]: bearer tokens from a file, client certificates,
//!   or trust-all for a loopback lab) and the pods-on-nodes lookup impersonation needs.
//! - [`service`]: `istio.v1.auth.IstioCertificateService` ([`CaService`]): authentication,
//!   impersonation rules, TTL capping, logs and [`metrics`].
//! - [`rfc3339`]: times as `2023-11-14T22:13:20Z`, for validity periods in logs and documents.
//! - [`tls`]: TLS 1.3 for the gRPC listener with a serving certificate that renews in place
//!   ([`ServingTls`]).
//!
//! Everything is ECDSA P-256 with ring (through rcgen and rustls); no key is ever logged.

pub mod auth;
pub mod authority;
pub mod csr;
mod error;
mod keys;
pub mod metrics;
mod pem;
pub mod rfc3339;
pub mod service;
pub mod spiffe;
mod store;
pub mod tls;

pub use auth::{
    AuthError, Authenticator, Caller, ClientCertAuthenticator, NoPods, NodeLookup, RequestInfo,
    TokenFileAuthenticator, TrustAllAuthenticator,
};
pub use authority::{CaPems, CertificateAuthority, SelfSignedPems};
pub use error::{CaError, CsrError};
pub use metrics::{CaMetrics, LatencySummary, RefusalReason};
pub use service::{
    AUTHENTICATE_FAILURE, CaService, CaServiceConfig, IMPERSONATION_FAILURE, PeerCertificates,
    workload_ttl,
};
pub use spiffe::{Identity, IdentityError};
pub use tls::{ServingTls, tls_incoming};
