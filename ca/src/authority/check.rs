//! The checks a CA passes at start: its certificate is a CA, within its validity period and matches
//! the key, and a test leaf it signs verifies against the roots through the intermediates.

use std::path::Path;
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CertificateAuthority;
use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::spiffe::Identity;

impl CertificateAuthority {
    /// Signs a test leaf and verifies it as ztunnel's peers will, naming `chain_file`/`roots_file`
    /// when it does not.
    pub(super) fn self_test(&self, chain_file: &Path, roots_file: &Path) -> Result<(), CaError> {
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

/// Checks that `der` is a CA certificate, valid now, whose public key is `key`'s; returns notAfter.
pub(super) fn check_ca_cert(
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
