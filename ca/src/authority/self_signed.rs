//! The self-signed root: created once in the state folder and reused, generated as PEMs, or loaded
//! from PEMs held in memory.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::check::check_ca_cert;
use super::pem_certs::{parse_one_cert, read_one_cert};
use super::{
    BACKDATE, CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority, ROOT_VALIDITY, validate_trust_domain,
};
use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::store;

const KEY_HINT: &str = "It is never replaced automatically: restore it from a backup; or, to start \
                        over with a new root (every certificate issued so far stops verifying), remove \
                        ca-key.pem and ca-cert.pem";

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
