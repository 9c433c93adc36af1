//! The signing CA: its key, its certificate, the chain above it, and leaf issuance.
//!
//! Two ways to get one:
//! - **self-signed** ([`CertificateAuthority::load_or_create_self_signed`]): on first start an ECDSA
//!   P-256 root valid for 10 years is created as `<state-dir>/ca-key.pem` (mode 0600) and
//!   `ca-cert.pem`, and reused on every later start. A key or certificate that is there but unreadable,
//!   damaged, expired, or only one of the pair, stops the start with an error naming the file; nothing is
//!   ever regenerated over an existing file. Leaves are signed by the root: chain `[leaf, root]`.
//! - **plug-in** ([`CertificateAuthority::from_cacerts_dir`]): istio's `cacerts` layout. `ca-key.pem`
//!   signs, `ca-cert.pem` is its certificate, `root-cert.pem` the root bundle and `cert-chain.pem` the
//!   chain from `ca-cert.pem` up to (and possibly including) the root. Chain
//!   `[leaf, ca-cert, intermediates…, root bundle]`.
//!
//! Both also load from PEMs in memory ([`CertificateAuthority::from_self_signed_pems`],
//! [`CertificateAuthority::from_cacerts_pems`]: the control plane keeps them in Kubernetes Secrets),
//! with the same checks; errors then name `<source>/<file name>`.
//!
//! Either way, at start the CA certificate must be a CA, within its validity period and match the key,
//! and a test leaf signed with it must verify (webpki, as ztunnel does) against the root bundle through
//! the intermediates; otherwise the error names the file to fix.
//!
//! Leaves ([`CertificateAuthority::sign_csr`]) carry only the SPIFFE URI SAN, an empty subject (so the
//! SAN extension is critical), basicConstraints CA:FALSE, keyUsage digitalSignature + keyEncipherment,
//! extendedKeyUsage serverAuth + clientAuth, a serial of 128 random bits, notBefore one minute in the
//! past, and notAfter at most the CA certificate's own notAfter.

mod cacerts;
mod check;
mod pem_certs;
mod self_signed;
mod sign;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair};
use ring::rand::SystemRandom;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::error::CaError;
use crate::store;

pub use cacerts::CaPems;
pub use self_signed::SelfSignedPems;

/// File names of istio's `cacerts` layout, also used in the state folder.
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const CA_CERT_FILE: &str = "ca-cert.pem";
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

/// Trust domain of a plug-in CA until [`CertificateAuthority::with_trust_domain`] says otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Lifetime of a self-signed root.
pub const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far notBefore is set in the past, for clocks that run a little behind.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// The certificate authority. `Send + Sync`; share it behind an `Arc`.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    /// `ca-cert.pem` and the certificates between it and the root, one PEM per element (plug-in mode).
    intermediates_pem: Vec<String>,
    intermediates_der: Vec<CertificateDer<'static>>,
    root_bundle_pem: String,
    roots_der: Vec<CertificateDer<'static>>,
    source: PathBuf,
    rng: SystemRandom,
}

impl std::fmt::Debug for CertificateAuthority {
    // The key is left out on purpose.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("source", &self.source)
            .field("intermediates", &self.intermediates_der.len())
            .field("roots", &self.roots_der.len())
            .field("issuer_not_after", &self.issuer_not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// The same CA issuing into `trust_domain`.
    pub fn with_trust_domain(mut self, trust_domain: &str) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        self.trust_domain = trust_domain.to_string();
        Ok(self)
    }

    /// Writes the root bundle to `<state_dir>/root-cert.pem` (for ztunnel's `XDS_ROOT_CA`/`CA_ROOT_CA`).
    pub fn write_root_bundle(&self, state_dir: &Path) -> Result<PathBuf, CaError> {
        store::ensure_dir(state_dir)?;
        let path = state_dir.join(ROOT_CERT_FILE);
        store::write_atomic(&path, self.root_bundle_pem.as_bytes(), 0o644)?;
        Ok(path)
    }

    /// Every root, PEM.
    pub fn root_bundle_pem(&self) -> &str {
        &self.root_bundle_pem
    }

    /// Every root, DER.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots_der
    }

    /// The certificates between a leaf and the roots (empty for a self-signed root), DER.
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates_der
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// When the signing certificate expires; no leaf outlives it.
    pub fn ca_not_after(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(self.issuer_not_after.unix_timestamp().max(0) as u64)
    }
}

/// Trust domains are DNS-like names: no '/', ':' or whitespace, not empty.
pub(crate) fn validate_trust_domain(td: &str) -> Result<(), CaError> {
    if td.is_empty()
        || td.len() > 255
        || td
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(CaError::TrustDomain(td.to_string()));
    }
    Ok(())
}
