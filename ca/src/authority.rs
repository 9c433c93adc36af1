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

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::csr;
use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::spiffe::Identity;
use crate::store;

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

const KEY_HINT: &str = "It is never replaced automatically: restore it from a backup; or, to start \
                        over with a new root (every certificate issued so far stops verifying), remove \
                        ca-key.pem and ca-cert.pem";
const PLUGIN_KEY_HINT: &str =
    "Put the PEM private key of ca-cert.pem here (PKCS#8, SEC1 or PKCS#1, unencrypted)";

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

/// istio's `cacerts` layout in memory: the PEM text of each file (or Secret key).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CaPems {
    /// `ca-key.pem`: the private key of `ca-cert.pem`.
    pub ca_key: String,
    /// `ca-cert.pem`: the signing certificate.
    pub ca_cert: String,
    /// `root-cert.pem`: the root bundle.
    pub root_cert: String,
    /// `cert-chain.pem`: from `ca-cert.pem` up towards the root; `None` or empty when absent.
    pub cert_chain: Option<String>,
}

impl std::fmt::Debug for CaPems {
    // The key is left out on purpose.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPems")
            .field("ca_cert", &self.ca_cert.len())
            .field("root_cert", &self.root_cert.len())
            .field("cert_chain", &self.cert_chain.as_ref().map(String::len))
            .finish_non_exhaustive()
    }
}

/// A freshly generated self-signed root: its PKCS#8 key and its certificate, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct SelfSignedPems {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for SelfSignedPems {
    // The key is left out on purpose.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSignedPems")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A signed leaf and what the log says about it.
pub(crate) struct Issued {
    pub chain: Vec<String>,
    pub serial: String,
}

impl CertificateAuthority {
    /// Loads `<state_dir>/ca-key.pem` + `ca-cert.pem` or creates them (key 0600), and writes
    /// `<state_dir>/root-cert.pem`.
    pub fn load_or_create_self_signed(
        state_dir: &Path,
        trust_domain: &str,
    ) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        store::ensure_dir(state_dir)?;
        let key_path = state_dir.join(CA_KEY_FILE);
        let cert_path = state_dir.join(CA_CERT_FILE);
        let ca = match (store::exists(&key_path)?, store::exists(&cert_path)?) {
            (false, false) => {
                let (key, cert_der) = create_root(trust_domain)?;
                let cert_pem = pem::encode("CERTIFICATE", &cert_der);
                // Certificate first: a crash between the two writes leaves a certificate without
                // a key, which is reported at the next start and holds no secret. Neither write
                // replaces a file that appeared meanwhile (another process starting at once).
                store::create_atomic(&cert_path, cert_pem.as_bytes(), 0o644)?;
                store::create_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                tracing::info!(
                    key = %key_path.display(),
                    cert = %cert_path.display(),
                    trust_domain,
                    "created a self-signed root CA (ECDSA P-256, valid 10 years)"
                );
                Self::self_signed_from(key, &cert_path, cert_der, trust_domain, state_dir)?
            }
            (true, true) => {
                if let Some(mode) = store::loose_mode(&key_path) {
                    tracing::warn!(
                        path = %key_path.display(),
                        "CA key file has mode {mode:o}, readable by others; run chmod 600 on it"
                    );
                }
                let key = keys::key_from_pem(&store::read(&key_path)?).map_err(|reason| {
                    CaError::Key {
                        path: key_path.clone(),
                        reason,
                        hint: KEY_HINT,
                    }
                })?;
                let cert_der = read_one_cert(&cert_path)?;
                let ca =
                    Self::self_signed_from(key, &cert_path, cert_der, trust_domain, state_dir)?;
                tracing::info!(cert = %cert_path.display(), trust_domain, "loaded the self-signed root CA");
                ca
            }
            (true, false) => {
                return Err(CaError::HalfWrittenRoot {
                    present: key_path,
                    missing: cert_path,
                });
            }
            (false, true) => {
                return Err(CaError::HalfWrittenRoot {
                    present: cert_path,
                    missing: key_path,
                });
            }
        };
        ca.write_root_bundle(state_dir)?;
        Ok(ca)
    }

    fn self_signed_from(
        key: KeyPair,
        cert_path: &Path,
        cert_der: CertificateDer<'static>,
        trust_domain: &str,
        state_dir: &Path,
    ) -> Result<Self, CaError> {
        let key_path = cert_path.with_file_name(CA_KEY_FILE);
        let not_after = check_ca_cert(cert_path, &key_path, &cert_der, &key, true)?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Certificate {
                path: cert_path.to_path_buf(),
                reason: format!("cannot sign with this certificate: {e}"),
            })?;
        let ca = CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            issuer,
            issuer_not_after: not_after,
            intermediates_pem: Vec::new(),
            intermediates_der: Vec::new(),
            root_bundle_pem: pem::encode("CERTIFICATE", &cert_der),
            roots_der: vec![cert_der],
            source: state_dir.to_path_buf(),
            rng: SystemRandom::new(),
        };
        ca.self_test(cert_path, cert_path)?;
        Ok(ca)
    }

    /// A new self-signed root for `trust_domain` (ECDSA P-256, valid 10 years), as PEMs to store
    /// somewhere (a Kubernetes Secret, say) and load with
    /// [`from_self_signed_pems`](Self::from_self_signed_pems).
    pub fn generate_self_signed_pems(trust_domain: &str) -> Result<SelfSignedPems, CaError> {
        validate_trust_domain(trust_domain)?;
        let (key, cert_der) = create_root(trust_domain)?;
        Ok(SelfSignedPems {
            key_pem: key.serialize_pem(),
            cert_pem: pem::encode("CERTIFICATE", &cert_der),
        })
    }

    /// A self-signed root held in memory, checked as
    /// [`load_or_create_self_signed`](Self::load_or_create_self_signed) checks the state folder's. Errors
    /// name `<source>/ca-key.pem` or `<source>/ca-cert.pem`. Writes nothing.
    pub fn from_self_signed_pems(
        key_pem: &str,
        cert_pem: &str,
        trust_domain: &str,
        source: &Path,
    ) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        let key_path = source.join(CA_KEY_FILE);
        let cert_path = source.join(CA_CERT_FILE);
        let key = keys::key_from_pem(key_pem).map_err(|reason| CaError::Key {
            path: key_path,
            reason,
            hint: KEY_HINT,
        })?;
        let cert_der = parse_one_cert(cert_pem, &cert_path)?;
        Self::self_signed_from(key, &cert_path, cert_der, trust_domain, source)
    }

    /// istio `cacerts` layout (`ca-key.pem`, `ca-cert.pem`, `root-cert.pem`, optional `cert-chain.pem`);
    /// writes nothing. The trust domain is `cluster.local` unless set with
    /// [`with_trust_domain`](Self::with_trust_domain).
    pub fn from_cacerts_dir(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let root_path = dir.join(ROOT_CERT_FILE);
        let chain_path = dir.join(CERT_CHAIN_FILE);
        for (path, hint) in [
            (
                &cert_path,
                "the plug-in CA needs the signing (intermediate) certificate here",
            ),
            (
                &key_path,
                "the plug-in CA needs the private key of ca-cert.pem here",
            ),
            (
                &root_path,
                "the plug-in CA needs the root certificate(s) here",
            ),
        ] {
            if !store::exists(path)? {
                return Err(CaError::MissingFile {
                    path: path.clone(),
                    hint,
                });
            }
        }
        let pems = CaPems {
            ca_key: store::read(&key_path)?,
            ca_cert: store::read(&cert_path)?,
            root_cert: store::read(&root_path)?,
            cert_chain: if store::exists(&chain_path)? {
                Some(store::read(&chain_path)?)
            } else {
                None
            },
        };
        if let Some(mode) = store::loose_mode(&key_path) {
            tracing::warn!(
                path = %key_path.display(),
                "CA key file has mode {mode:o}, readable by others; run chmod 600 on it"
            );
        }
        Self::from_cacerts_pems(&pems, dir)
    }

    /// istio's `cacerts` layout held in memory (the keys of a Kubernetes Secret, say), checked exactly as
    /// [`from_cacerts_dir`](Self::from_cacerts_dir) checks the folder. Errors name
    /// `<source>/<file name>`, so `source` should say where the PEMs came from. Writes nothing.
    pub fn from_cacerts_pems(pems: &CaPems, source: &Path) -> Result<Self, CaError> {
        let key_path = source.join(CA_KEY_FILE);
        let cert_path = source.join(CA_CERT_FILE);
        let root_path = source.join(ROOT_CERT_FILE);
        let chain_path = source.join(CERT_CHAIN_FILE);
        let chain_text = pems.cert_chain.as_deref().filter(|c| !c.trim().is_empty());
        let key = keys::key_from_pem(&pems.ca_key).map_err(|reason| CaError::Key {
            path: key_path.clone(),
            reason,
            hint: PLUGIN_KEY_HINT,
        })?;
        let cert_der = parse_one_cert(&pems.ca_cert, &cert_path)?;
        let not_after = check_ca_cert(&cert_path, &key_path, &cert_der, &key, false)?;

        let roots_der = parse_certs(&pems.root_cert, &root_path)?;
        if roots_der.is_empty() {
            return Err(CaError::Certificate {
                path: root_path,
                reason: "holds no CERTIFICATE block".into(),
            });
        }
        for (i, root) in roots_der.iter().enumerate() {
            let (_, x509) = X509Certificate::from_der(root).map_err(|e| CaError::Certificate {
                path: root_path.clone(),
                reason: format!("certificate #{} does not parse: {e}", i + 1),
            })?;
            if !x509.is_ca() {
                return Err(CaError::NotACa {
                    path: root_path.clone(),
                    reason: format!("certificate #{} ({}) has no CA:TRUE", i + 1, x509.subject()),
                });
            }
        }

        // The intermediates sent with every leaf: ca-cert.pem first, then what cert-chain.pem adds
        // below the roots. Roots listed in cert-chain.pem are dropped (they travel in the root bundle).
        let mut intermediates_der = Vec::new();
        if !roots_der.contains(&cert_der) {
            intermediates_der.push(cert_der.clone());
        }
        if let Some(text) = chain_text {
            let chain = parse_certs(text, &chain_path)?;
            for (i, c) in chain.into_iter().enumerate() {
                if c == cert_der {
                    if i != 0 {
                        return Err(CaError::Certificate {
                            path: chain_path,
                            reason:
                                "ca-cert.pem is not the first certificate; the chain goes from \
                                     ca-cert.pem up towards the root"
                                    .into(),
                        });
                    }
                    continue;
                }
                if roots_der.contains(&c) || intermediates_der.contains(&c) {
                    continue;
                }
                if i == 0 {
                    return Err(CaError::Certificate {
                        path: chain_path,
                        reason: "the first certificate is not ca-cert.pem; the chain goes from \
                                 ca-cert.pem up towards the root"
                            .into(),
                    });
                }
                intermediates_der.push(c);
            }
        }

        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Certificate {
                path: cert_path.clone(),
                reason: format!("cannot sign with this certificate: {e}"),
            })?;
        let ca = CertificateAuthority {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            issuer,
            issuer_not_after: not_after,
            intermediates_pem: intermediates_der
                .iter()
                .map(|d| pem::encode("CERTIFICATE", d))
                .collect(),
            intermediates_der,
            root_bundle_pem: roots_der
                .iter()
                .map(|d| pem::encode("CERTIFICATE", d))
                .collect(),
            roots_der,
            source: source.to_path_buf(),
            rng: SystemRandom::new(),
        };
        let chain_or_cert = if chain_text.is_some() {
            chain_path
        } else {
            cert_path.clone()
        };
        ca.self_test(&chain_or_cert, &root_path)?;
        tracing::info!(
            source = %source.display(),
            intermediates = ca.intermediates_der.len(),
            roots = ca.roots_der.len(),
            "loaded the plug-in CA"
        );
        Ok(ca)
    }

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

    /// Validates a CSR (PEM) and signs it; `identity` is the one identity the leaf may carry (already
    /// authorized). Returns `[leaf, intermediates…, root bundle]`.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<Vec<String>, CaError> {
        let parsed = csr::parse(csr_pem)?;
        if parsed.identity != *identity {
            return Err(CaError::IdentityMismatch {
                requested: parsed.identity.to_string(),
                allowed: identity.to_string(),
            });
        }
        Ok(self.issue_leaf(identity, &parsed.public_key, ttl)?.chain)
    }

    /// Parses and checks a CSR without signing: returns the one SPIFFE identity it asks for.
    pub fn inspect_csr(csr_pem: &str) -> Result<Identity, CaError> {
        Ok(csr::parse(csr_pem)?.identity)
    }

    /// A fresh ECDSA P-256 key and a leaf for `identity`: (chain PEMs as `sign_csr`, PKCS#8 key PEM).
    pub fn issue_workload(
        &self,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(Vec<String>, String), CaError> {
        let key = keys::generate_p256().map_err(|e| CaError::crypto("generate a key", e))?;
        let issued = self.issue_leaf(identity, &key, ttl)?;
        Ok((issued.chain, key.serialize_pem()))
    }

    /// Serving certificate for the gRPC listener: (chain PEMs without the root, PKCS#8 key PEM), with
    /// the given DNS and IP SANs, EKU serverAuth.
    pub fn issue_serving(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<(Vec<String>, String), CaError> {
        if dns.is_empty() && ips.is_empty() {
            return Err(CaError::crypto(
                "issue the serving certificate",
                "no DNS name or IP address to put in it",
            ));
        }
        let mut sans = Vec::with_capacity(dns.len() + ips.len());
        for name in dns {
            let ia5 = name.as_str().try_into().map_err(|_| {
                CaError::crypto(
                    "issue the serving certificate",
                    format!("{name:?} is not a DNS name"),
                )
            })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let key = keys::generate_p256().map_err(|e| CaError::crypto("generate a key", e))?;
        let mut params = self.leaf_params(ttl)?;
        params.0.subject_alt_names = sans;
        params.0.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .0
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::crypto("issue the serving certificate", e))?;
        let mut chain = Vec::with_capacity(1 + self.intermediates_pem.len());
        chain.push(pem::encode("CERTIFICATE", cert.der()));
        chain.extend(self.intermediates_pem.iter().cloned());
        Ok((chain, key.serialize_pem()))
    }

    /// Signs a leaf for `identity` over `public_key`; the identity must be in this trust domain.
    pub(crate) fn issue_leaf(
        &self,
        identity: &Identity,
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                identity: identity.to_string(),
                ca_trust_domain: self.trust_domain.clone(),
            });
        }
        let (mut params, serial) = self.leaf_params(ttl)?;
        let uri = identity
            .to_string()
            .try_into()
            .map_err(|_| CaError::crypto("sign", format!("{identity} is not an ASCII URI")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| CaError::crypto("sign the certificate", e))?;
        let mut chain = Vec::with_capacity(2 + self.intermediates_pem.len());
        chain.push(pem::encode("CERTIFICATE", cert.der()));
        chain.extend(self.intermediates_pem.iter().cloned());
        chain.push(self.root_bundle_pem.clone());
        Ok(Issued { chain, serial })
    }

    /// The leaf profile shared by workload and serving certificates, and the serial in hex.
    fn leaf_params(&self, ttl: Duration) -> Result<(CertificateParams, String), CaError> {
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        let now = OffsetDateTime::now_utc();
        let not_after = now
            .checked_add(time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX))
            .unwrap_or(self.issuer_not_after)
            .min(self.issuer_not_after);
        let (serial, serial_hex) = self.random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(serial);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok((params, serial_hex))
    }

    /// 128 random bits behind a 0x01 byte: positive, minimally encoded, 17 bytes.
    fn random_serial(&self) -> Result<(SerialNumber, String), CaError> {
        let mut bytes = [0u8; 17];
        bytes[0] = 1;
        self.rng.fill(&mut bytes[1..]).map_err(|_| {
            CaError::crypto("draw a serial number", "the system random source failed")
        })?;
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok((SerialNumber::from_slice(&bytes), hex))
    }

    /// Signs a test leaf and verifies it as ztunnel's peers will, naming `chain_file`/`roots_file`
    /// when it does not.
    fn self_test(&self, chain_file: &Path, roots_file: &Path) -> Result<(), CaError> {
        let identity = Identity::new(self.trust_domain.as_str(), "ambientd-self-test", "ca");
        let key = keys::generate_p256().map_err(|e| CaError::crypto("generate a key", e))?;
        let issued = self.issue_leaf(&identity, &key, Duration::from_secs(300))?;
        let leaf = pem::parse(&issued.chain[0])
            .ok()
            .and_then(|mut b| b.pop())
            .map(|b| CertificateDer::from(b.der))
            .ok_or_else(|| CaError::crypto("self-test", "the test leaf is not PEM"))?;
        verify_leaf(
            &leaf,
            &self.intermediates_der,
            &self.roots_der,
            UnixTime::now(),
        )
        .map_err(|reason| CaError::BrokenChain {
            path: chain_file.to_path_buf(),
            roots: roots_file.to_path_buf(),
            reason,
        })
    }
}

/// Verifies `leaf` for client authentication against `roots` through `intermediates` with webpki.
pub(crate) fn verify_leaf(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<(), String> {
    let anchors = roots
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r).map_err(|e| format!("root does not parse: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &anchors,
        intermediates,
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
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

fn create_root(trust_domain: &str) -> Result<(KeyPair, CertificateDer<'static>), CaError> {
    let key = keys::generate_p256().map_err(|e| CaError::crypto("generate the root key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, "ambientd root CA");
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + ROOT_VALIDITY;
    let mut serial = [0u8; 17];
    serial[0] = 1;
    SystemRandom::new()
        .fill(&mut serial[1..])
        .map_err(|_| CaError::crypto("draw a serial number", "the system random source failed"))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::crypto("create the root certificate", e))?;
    Ok((key, cert.der().clone()))
}

fn read_one_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    parse_one_cert(&store::read(path)?, path)
}

/// The certificates of a PEM text; `path` names it in errors.
fn parse_certs(text: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let blocks = pem::parse(text).map_err(|reason| CaError::Certificate {
        path: path.to_path_buf(),
        reason: format!("not PEM: {reason}"),
    })?;
    let mut out = Vec::new();
    for b in blocks {
        match b.label.as_str() {
            "CERTIFICATE" => out.push(CertificateDer::from(b.der)),
            l if l.ends_with("PRIVATE KEY") => {
                return Err(CaError::Certificate {
                    path: path.to_path_buf(),
                    reason: "holds a private key; certificates only, please (the key goes in ca-key.pem)"
                        .into(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The one certificate of a PEM text; `path` names it in errors.
fn parse_one_cert(text: &str, path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = parse_certs(text, path)?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(CaError::Certificate {
            path: path.to_path_buf(),
            reason: "holds no CERTIFICATE block (empty or cut short?)".into(),
        }),
        n => Err(CaError::Certificate {
            path: path.to_path_buf(),
            reason: format!(
                "holds {n} certificates; put only the signing certificate here and its chain in cert-chain.pem"
            ),
        }),
    }
}

/// Checks that `der` is a CA certificate, valid now, whose public key is `key`'s; returns notAfter.
fn check_ca_cert(
    cert_path: &Path,
    key_path: &Path,
    der: &CertificateDer<'_>,
    key: &KeyPair,
    must_be_self_signed: bool,
) -> Result<OffsetDateTime, CaError> {
    let (rest, x509) = X509Certificate::from_der(der).map_err(|e| CaError::Certificate {
        path: cert_path.to_path_buf(),
        reason: format!("not an X.509 certificate: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(CaError::Certificate {
            path: cert_path.to_path_buf(),
            reason: "trailing bytes after the certificate".into(),
        });
    }
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CaError::KeyCertMismatch {
            key: key_path.to_path_buf(),
            cert: cert_path.to_path_buf(),
        });
    }
    match x509.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => {
            return Err(CaError::NotACa {
                path: cert_path.to_path_buf(),
                reason: "basicConstraints says CA:FALSE".into(),
            });
        }
        Ok(None) => {
            return Err(CaError::NotACa {
                path: cert_path.to_path_buf(),
                reason: "no basicConstraints extension".into(),
            });
        }
        Err(e) => {
            return Err(CaError::NotACa {
                path: cert_path.to_path_buf(),
                reason: format!("basicConstraints unreadable: {e}"),
            });
        }
    }
    if let Ok(Some(ku)) = x509.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(CaError::NotACa {
            path: cert_path.to_path_buf(),
            reason: "keyUsage lacks keyCertSign".into(),
        });
    }
    let not_before = x509.validity().not_before.timestamp();
    let not_after = x509.validity().not_after.timestamp();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let renew_hint = if must_be_self_signed {
        "a self-signed root is not renewed automatically: remove ca-key.pem and ca-cert.pem to create a \
         new one (every certificate issued so far stops verifying)"
    } else {
        "plug in a CA certificate that is valid now"
    };
    if not_after <= now {
        return Err(CaError::Validity {
            path: cert_path.to_path_buf(),
            reason: format!("expired at {}", x509.validity().not_after),
            hint: renew_hint,
        });
    }
    if not_before > now + 300 {
        return Err(CaError::Validity {
            path: cert_path.to_path_buf(),
            reason: format!(
                "not valid before {} (is the clock right?)",
                x509.validity().not_before
            ),
            hint: "check the system clock, or plug in a certificate that is valid now",
        });
    }
    if not_after - now < 30 * 24 * 3600 {
        tracing::warn!(
            path = %cert_path.display(),
            not_after = %x509.validity().not_after,
            "CA certificate expires in less than 30 days; no leaf will outlive it"
        );
    }
    if must_be_self_signed && x509.verify_signature(None).is_err() {
        return Err(CaError::Certificate {
            path: cert_path.to_path_buf(),
            reason: "not self-signed; an intermediate CA is plugged in with --ca-dir (istio cacerts layout)"
                .into(),
        });
    }
    OffsetDateTime::from_unix_timestamp(not_after).map_err(|e| CaError::Certificate {
        path: cert_path.to_path_buf(),
        reason: format!("notAfter out of range: {e}"),
    })
}
