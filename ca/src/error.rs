//! Errors of the CA: what went wrong, which file or field, and what to do about it.
//!
//! Messages never contain key material. CSR problems are a separate enum ([`CsrError`]) because the
//! gRPC service returns them to the caller as `InvalidArgument`; everything else is for the operator.

use std::path::PathBuf;

use crate::spiffe::IdentityError;

/// Why the CA could not start, or could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file the CA needs is not there.
    #[error("{path} is missing: {hint}")]
    MissingFile { path: PathBuf, hint: &'static str },

    /// The state folder has one half of the self-signed root (key or certificate) but not the other.
    #[error(
        "{present} exists but {missing} does not: the root CA is half there (an interrupted first start, or a file \
         was removed). Restore {missing} from a backup; or, to start over with a new root (every certificate issued \
         so far stops verifying), remove {present}"
    )]
    HalfWrittenRoot { present: PathBuf, missing: PathBuf },

    /// A private key file exists but is not a usable key. It is never replaced automatically.
    #[error("{path}: not a usable private key: {reason}. {hint}")]
    Key {
        path: PathBuf,
        reason: String,
        hint: &'static str,
    },

    /// A certificate file exists but does not hold what it must.
    #[error("{path}: {reason}")]
    Certificate { path: PathBuf, reason: String },

    /// The CA key does not belong to the CA certificate.
    #[error(
        "{key} does not match {cert}: the key's public half is not the certificate's public key; \
         put the key that was used to create this certificate next to it"
    )]
    KeyCertMismatch { key: PathBuf, cert: PathBuf },

    /// The CA certificate's validity period is over (or has not begun).
    #[error("{path}: {reason}; {hint}")]
    Validity {
        path: PathBuf,
        reason: String,
        hint: &'static str,
    },

    /// The CA certificate is not a CA certificate.
    #[error(
        "{path}: not a CA certificate ({reason}); the signing certificate needs basicConstraints CA:TRUE \
         and, if it has a keyUsage, keyCertSign"
    )]
    NotACa { path: PathBuf, reason: String },

    /// `ca-cert.pem`, `cert-chain.pem` and `root-cert.pem` do not form a chain that verifies.
    #[error(
        "{path}: a certificate signed by this CA does not verify against {roots}: {reason}; \
         check that cert-chain.pem holds ca-cert.pem and its intermediates up to a root in root-cert.pem"
    )]
    BrokenChain {
        path: PathBuf,
        roots: PathBuf,
        reason: String,
    },

    /// The bearer token file cannot be used.
    #[error("{path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },

    /// A trust domain is not usable in a SPIFFE ID.
    #[error(
        "trust domain {0:?} is not valid: it must be non-empty and must not contain '/', ':' or whitespace \
         (for example cluster.local)"
    )]
    TrustDomain(String),

    /// A setting (command-line flag) has a value the CA cannot use.
    #[error("{setting}: {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: String,
    },

    /// `--auth none` with a listener that is not on loopback.
    #[error(
        "--auth none trusts every caller and is only allowed when every listener binds loopback, \
         but {0} does not; bind 127.0.0.1 / [::1], or choose another --auth"
    )]
    TrustAllNotLoopback(std::net::SocketAddr),

    /// The CSR is not acceptable (sent back to the caller as `InvalidArgument`).
    #[error(transparent)]
    Csr(#[from] CsrError),

    /// The CSR asks for another identity than the one the caller may have.
    #[error("the CSR asks for {requested}, but the certificate may only carry {allowed}")]
    IdentityMismatch { requested: String, allowed: String },

    /// The identity belongs to another trust domain than this CA's.
    #[error("{identity} is not in this CA's trust domain {ca_trust_domain:?}")]
    WrongTrustDomain {
        identity: String,
        ca_trust_domain: String,
    },

    /// A zero lifetime was asked for.
    #[error("certificate lifetime must be longer than zero")]
    ZeroTtl,

    /// Certificate generation failed inside the X.509/crypto layer.
    #[error("could not {what}: {reason}")]
    Crypto { what: &'static str, reason: String },
}

impl CaError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CaError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn crypto(what: &'static str, reason: impl ToString) -> Self {
        CaError::Crypto {
            what,
            reason: reason.to_string(),
        }
    }
}

/// Why a certificate signing request was refused. The text is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is empty")]
    Empty,
    #[error("CSR is {0} bytes; at most 65536 are accepted")]
    TooLarge(usize),
    #[error("CSR is not PEM: {0}")]
    Pem(String),
    #[error("CSR PEM holds {0} blocks; exactly one CERTIFICATE REQUEST block is expected")]
    BlockCount(usize),
    #[error("CSR PEM block is {0:?}; a CERTIFICATE REQUEST block is expected")]
    Label(String),
    #[error("CSR is not a valid PKCS#10 request: {0}")]
    Der(String),
    #[error("CSR version is {0}; only version 1 (0) exists")]
    Version(u32),
    #[error("CSR signature does not verify with the CSR's own public key")]
    BadSignature,
    #[error(
        "CSR is signed with {0}; accepted are ECDSA with SHA-256/384 and RSA PKCS#1 v1.5 with SHA-256/384/512"
    )]
    SignatureAlgorithm(String),
    #[error(
        "CSR public key is {0}; accepted are ECDSA P-256, ECDSA P-384 and RSA of 2048 to 8192 bits"
    )]
    KeyAlgorithm(String),
    #[error(
        "CSR has no subjectAltName; exactly one URI SAN spiffe://<trust-domain>/ns/<ns>/sa/<sa> is required"
    )]
    NoSan,
    #[error("CSR subjectAltName could not be parsed: {0}")]
    BadSan(String),
    #[error("CSR asks for {0}; workload certificates carry only one SPIFFE URI SAN")]
    ForeignSan(String),
    #[error("CSR has {0} URI SANs; exactly one SPIFFE ID is allowed")]
    SanCount(usize),
    #[error("CSR URI SAN is not a workload SPIFFE ID: {0}")]
    NotSpiffe(#[from] IdentityError),
}
