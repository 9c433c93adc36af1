//! Workload certificates the way a shared-mode ztunnel gets them (docs/reference/ztunnel.md#certificates): a
//! CSR per identity of the HBONE workloads on its node, made exactly as ztunnel makes it (fresh ECDSA P-256
//! key, empty subject, one critical URI SAN), sent to `IstioCertificateService/CreateCertificate` with
//! `metadata.ImpersonatedIdentity` and the ztunnel's own token, and the reply checked as ztunnel checks it (a
//! chain of at least two elements, the leaf's first URI SAN equal to the identity).
//!
//! Failures are retried with ztunnel's backoff (0.5 s doubling to 150 s, ±20 %). The outcome per
//! identity is kept in a [`CertRecord`].

use std::time::{Duration, Instant};

use ambient_proto::auth::IstioCertificateRequest;
use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tonic::transport::Channel;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::transport::Credentials;

/// ztunnel's default `SECRET_TTL`, sent as `validity_duration`.
pub const SECRET_TTL_SECS: i64 = 86_400;
/// CSRs a ztunnel has in flight at once.
pub const MAX_CONCURRENT_CSRS: usize = 8;
const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(150);

/// Why a certificate could not be obtained (ztunnel's texts where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("failed to create CSR: {0}")]
    Csr(String),
    #[error("signing gRPC error ({code}): {message}")]
    Grpc { code: tonic::Code, message: String },
    #[error("chain returned from CA is empty for: {0}")]
    EmptyResponse(String),
    #[error("invalid root certificate: no root certificate present")]
    NoRoot,
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("did not find expected SAN: {0}")]
    San(String),
}

/// Where a certificate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    /// Requested, no answer yet (or waiting to retry after `last_error`).
    Pending { last_error: Option<String> },
    /// Issued and checked; `latency` of the successful call.
    Issued {
        chain_len: usize,
        latency: Duration,
        at: Instant,
    },
}

/// One identity's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub identity: String,
    pub state: CertState,
    /// Calls made so far (failures included).
    pub attempts: u32,
    pub failures: u32,
}

impl CertRecord {
    pub fn is_issued(&self) -> bool {
        matches!(self.state, CertState::Issued { .. })
    }
}

/// A CSR as ztunnel makes it (`tls/csr.rs`): PEM `CERTIFICATE REQUEST`, fresh P-256 key, empty
/// subject, one URI SAN (critical, since the subject is empty). Returns the CSR; the key is dropped,
/// as nothing is served with it.
pub fn make_csr(identity: &str) -> Result<String, CertError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::Csr(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    let uri = rcgen::string::Ia5String::try_from(identity.to_string())
        .map_err(|e| CertError::Csr(e.to_string()))?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| CertError::Csr(e.to_string()))
}

/// The request ztunnel sends in shared mode: CSR, `validity_duration` = SECRET_TTL, metadata
/// `{"ImpersonatedIdentity": identity}`, plus the credentials headers when it has a token.
pub fn csr_request(
    csr: String,
    identity: &str,
    credentials: Option<&Credentials>,
) -> tonic::Request<IstioCertificateRequest> {
    let metadata = prost_types::Struct {
        fields: [(
            "ImpersonatedIdentity".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(identity.to_string())),
            },
        )]
        .into_iter()
        .collect(),
    };
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: SECRET_TTL_SECS,
        metadata: Some(metadata),
    });
    if let Some(c) = credentials {
        c.apply(&mut request);
    }
    request
}

/// ztunnel's checks of a `cert_chain`: not empty, at least a leaf and a root, every element parses
/// as certificates, and the leaf's first URI SAN is the identity asked for.
pub fn check_chain(identity: &str, chain: &[String]) -> Result<(), CertError> {
    let leaf_pem = chain
        .first()
        .ok_or_else(|| CertError::EmptyResponse(identity.to_string()))?;
    if chain.len() < 2 {
        return Err(CertError::NoRoot);
    }
    let parse = |pem: &str| -> Result<Vec<CertificateDer<'static>>, CertError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::BadCertificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(CertError::BadCertificate("no certificate in PEM".into()));
        }
        Ok(certs)
    };
    let leaf = parse(leaf_pem)?;
    for pem in &chain[1..] {
        parse(pem)?;
    }
    let (_, cert) = X509Certificate::from_der(leaf[0].as_ref())
        .map_err(|e| CertError::BadCertificate(e.to_string()))?;
    let first_uri = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|ext| {
            ext.value.general_names.iter().find_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
        });
    if first_uri.as_deref() != Some(identity) {
        return Err(CertError::San(identity.to_string()));
    }
    Ok(())
}

/// One CreateCertificate call for `identity`, checked. Returns the chain length.
pub async fn fetch(
    channel: Channel,
    credentials: Option<&Credentials>,
    identity: &str,
) -> Result<usize, CertError> {
    let csr = make_csr(identity)?;
    let response = IstioCertificateServiceClient::new(channel)
        .create_certificate(csr_request(csr, identity, credentials))
        .await
        .map_err(|s| CertError::Grpc {
            code: s.code(),
            message: s.message().to_string(),
        })?
        .into_inner();
    check_chain(identity, &response.cert_chain)?;
    Ok(response.cert_chain.len())
}

/// ztunnel's delay before retry number `failures` (1-based), without jitter.
pub fn retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    RETRY_INITIAL.saturating_mul(1 << exp).min(RETRY_MAX)
}

/// ±20 % around `d`, from a cheap seed.
pub fn jitter(d: Duration, seed: u64) -> Duration {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // 0.8 ..= 1.2
    let factor = 0.8 + (x % 4001) as f64 / 10_000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use x509_parser::certification_request::X509CertificationRequest;

    use super::*;

    const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

    #[test]
    fn csr_is_p256_with_empty_subject_and_one_critical_uri_san() {
        let pem = make_csr(ID).expect("CSR");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .expect("PEM CSR");
        let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).expect("DER CSR");
        let info = &csr.certification_request_info;
        assert_eq!(info.subject.iter().count(), 0, "empty subject");
        assert_eq!(
            info.subject_pki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok()),
            Some(x509_parser::oid_registry::OID_EC_P256)
        );
        let requested: Vec<&x509_parser::extensions::X509Extension<'_>> = info
            .iter_attributes()
            .filter_map(|attr| match attr.parsed_attribute() {
                x509_parser::cri_attributes::ParsedCriAttribute::ExtensionRequest(r) => {
                    Some(r.extensions.iter())
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(requested.len(), 1, "only the SAN extension");
        let san = requested[0];
        assert!(san.critical, "the SAN is critical (empty subject)");
        match san.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectAlternativeName(names) => {
                assert_eq!(names.general_names, [GeneralName::URI(ID)]);
            }
            other => panic!("not a SAN: {other:?}"),
        }
        // A fresh key every time.
        assert_ne!(make_csr(ID).expect("CSR"), make_csr(ID).expect("CSR"));
    }

    #[test]
    fn impersonation_metadata_and_ttl() {
        let req = csr_request("csr".into(), ID, None);
        assert!(req.metadata().get("authorization").is_none());
        let body = req.into_inner();
        assert_eq!(body.validity_duration, 86_400);
        let md = body.metadata.expect("metadata");
        assert_eq!(md.fields.len(), 1);
        assert_eq!(
            md.fields
                .get("ImpersonatedIdentity")
                .and_then(|v| v.kind.clone()),
            Some(prost_types::value::Kind::StringValue(ID.into()))
        );
    }

    fn self_signed(uri: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(uri.to_string()).expect("IA5"),
        )];
        params.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn chains_are_checked_as_ztunnel_does() {
        let leaf = self_signed(ID);
        let root = self_signed("spiffe://cluster.local/root");
        assert_eq!(check_chain(ID, &[leaf.clone(), root.clone()]), Ok(()));
        assert_eq!(
            check_chain(ID, &[]),
            Err(CertError::EmptyResponse(ID.into()))
        );
        assert_eq!(
            check_chain(ID, std::slice::from_ref(&leaf)),
            Err(CertError::NoRoot)
        );
        assert_eq!(
            check_chain(ID, &[root.clone(), leaf.clone()]),
            Err(CertError::San(ID.into()))
        );
        assert!(matches!(
            check_chain(ID, &[leaf, "junk".into()]),
            Err(CertError::BadCertificate(_))
        ));
    }

    #[test]
    fn retries_back_off_like_ztunnel() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(2));
        assert_eq!(retry_delay(30), Duration::from_secs(150));
        for seed in 0..100 {
            let d = jitter(Duration::from_secs(10), seed);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }
}
