//! Certificate signing requests: parsing and every rule a CSR must pass before it is signed.
//!
//! A CSR is accepted when:
//! - it is exactly one PEM `CERTIFICATE REQUEST` block (`NEW CERTIFICATE REQUEST` is read too) of at
//!   most 64 KiB, holding one PKCS#10 request (version 1) with nothing after it;
//! - its signature verifies with its own public key;
//! - its requested extensions hold one subjectAltName with exactly one name, a URI that is a workload
//!   SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>` (DNS names, IPs, e-mail addresses or a second URI are
//!   refused); the subject and every other requested extension are ignored, as the leaf is built from
//!   the identity alone;
//! - its key is one of the accepted kinds below.
//!
//! **Key types.** ztunnel sends ECDSA P-256 keys signed with SHA-256, and that is what this CA is
//! built around. RSA keys are **accepted** too, from 2048 to 8192 bits with PKCS#1 v1.5 signatures
//! over SHA-256/384/512: istiod accepts them, and istio-agent (which fetches certificates for
//! waypoints and gateways) creates RSA-2048 keys by default. ECDSA P-384 is accepted as well.
//! Refused: RSA below 2048 bits, SHA-1 signatures, RSA-PSS, Ed25519 and any other algorithm, each with a
//! reason naming what was found. Whatever the leaf key, the CA signs with its own key.
//!
//! The trust domain is not checked here (a CSR alone has no CA); [`crate::CertificateAuthority`]
//! refuses identities outside its trust domain.

use ring::signature::{self, UnparsedPublicKey};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::prelude::FromDer;

use crate::error::CsrError;
use crate::pem;
use crate::spiffe::Identity;

/// Largest CSR PEM accepted (ztunnel's are about 500 bytes; RSA-8192 ones about 2.5 KiB).
pub(crate) const MAX_CSR_LEN: usize = 64 * 1024;

/// A CSR that passed every check: the identity it asks for and the key to certify.
pub(crate) struct ParsedCsr {
    pub identity: Identity,
    pub public_key: rcgen::SubjectPublicKeyInfo,
}

/// Parses `csr_pem` and applies every rule, including the signature check.
pub(crate) fn parse(csr_pem: &str) -> Result<ParsedCsr, CsrError> {
    let der = decode_pem(csr_pem)?;
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| CsrError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Der(format!(
            "{} bytes follow the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(CsrError::Version(info.version.0));
    }
    let identity = requested_identity(&csr)?;
    let alg = verification_algorithm(&csr)?;
    let spki = &info.subject_pki;
    UnparsedPublicKey::new(alg, spki.subject_public_key.as_ref())
        .verify(info.raw, csr.signature_value.as_ref())
        .map_err(|_| CsrError::BadSignature)?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| CsrError::KeyAlgorithm(format!("unusable ({e})")))?;
    Ok(ParsedCsr {
        identity,
        public_key,
    })
}

fn decode_pem(csr_pem: &str) -> Result<Vec<u8>, CsrError> {
    if csr_pem.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLarge(csr_pem.len()));
    }
    if csr_pem.trim().is_empty() {
        return Err(CsrError::Empty);
    }
    let mut blocks = pem::parse(csr_pem).map_err(CsrError::Pem)?;
    if blocks.len() != 1 {
        return Err(if blocks.is_empty() {
            CsrError::Pem("no -----BEGIN CERTIFICATE REQUEST----- block".into())
        } else {
            CsrError::BlockCount(blocks.len())
        });
    }
    let block = blocks.remove(0);
    match block.label.as_str() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(block.der),
        other => Err(CsrError::Label(other.to_string())),
    }
}

/// The one SPIFFE identity the CSR's subjectAltName asks for.
fn requested_identity(csr: &X509CertificationRequest<'_>) -> Result<Identity, CsrError> {
    let mut sans = None;
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                if sans.is_some() {
                    return Err(CsrError::BadSan(
                        "the subjectAltName extension appears twice".into(),
                    ));
                }
                sans = Some(&san.general_names);
            }
            ParsedExtension::ParseError { error } => {
                return Err(CsrError::Der(format!(
                    "a requested extension is malformed: {error}"
                )));
            }
            _ => {}
        }
    }
    let names = sans.ok_or(CsrError::NoSan)?;
    let mut uris = Vec::new();
    for name in names {
        match name {
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::DNSName(dns) => {
                return Err(CsrError::ForeignSan(format!("DNS name {dns:?}")));
            }
            GeneralName::IPAddress(ip) => {
                return Err(CsrError::ForeignSan(format!(
                    "an IP address ({} bytes)",
                    ip.len()
                )));
            }
            GeneralName::RFC822Name(mail) => {
                return Err(CsrError::ForeignSan(format!("e-mail address {mail:?}")));
            }
            other => return Err(CsrError::ForeignSan(format!("{other:?}"))),
        }
    }
    match uris.as_slice() {
        [] => Err(CsrError::NoSan),
        [uri] => Ok(uri.parse::<Identity>()?),
        more => Err(CsrError::SanCount(more.len())),
    }
}

/// The ring verification algorithm for the CSR's (signature algorithm, key) pair, or why it is refused.
fn verification_algorithm(
    csr: &X509CertificationRequest<'_>,
) -> Result<&'static dyn signature::VerificationAlgorithm, CsrError> {
    let spki = &csr.certification_request_info.subject_pki;
    let key_oid = &spki.algorithm.algorithm;
    let sig_oid = &csr.signature_algorithm.algorithm;
    if *key_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let p256 = curve.as_ref() == Some(&OID_EC_P256);
        let p384 = curve.as_ref() == Some(&OID_NIST_EC_P384);
        if !p256 && !p384 {
            let name = curve.map_or_else(
                || "an EC key without a named curve".to_string(),
                |c| format!("an EC key on curve {c}"),
            );
            return Err(CsrError::KeyAlgorithm(name));
        }
        return match (p256, sig_oid) {
            (true, s) if *s == OID_SIG_ECDSA_WITH_SHA256 => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (true, s) if *s == OID_SIG_ECDSA_WITH_SHA384 => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (false, s) if *s == OID_SIG_ECDSA_WITH_SHA256 => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (false, s) if *s == OID_SIG_ECDSA_WITH_SHA384 => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            (_, s) => Err(CsrError::SignatureAlgorithm(s.to_id_string())),
        };
    }
    if *key_oid == OID_PKCS1_RSAENCRYPTION {
        let bits = rsa_modulus_bits(spki.subject_public_key.as_ref());
        if !(2048..=8192).contains(&bits) {
            return Err(CsrError::KeyAlgorithm(format!("an RSA key of {bits} bits")));
        }
        return match sig_oid {
            s if *s == OID_PKCS1_SHA256WITHRSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
            s if *s == OID_PKCS1_SHA384WITHRSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA384),
            s if *s == OID_PKCS1_SHA512WITHRSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
            s => Err(CsrError::SignatureAlgorithm(s.to_id_string())),
        };
    }
    Err(CsrError::KeyAlgorithm(
        match key_oid.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".to_string(),
            "1.3.101.113" => "Ed448".to_string(),
            other => format!("algorithm {other}"),
        },
    ))
}

/// Bit length of the modulus in a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, e INTEGER }`;
/// 0 when it cannot be read.
fn rsa_modulus_bits(der: &[u8]) -> usize {
    use x509_parser::der_parser::der::parse_der_sequence;
    let Ok((_, seq)) = parse_der_sequence(der) else {
        return 0;
    };
    let Some(modulus) = seq.as_sequence().ok().and_then(|s| s.first()) else {
        return 0;
    };
    let Ok(bytes) = modulus.as_slice() else {
        return 0;
    };
    let Some(start) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    let significant = &bytes[start..];
    significant.len() * 8 - significant[0].leading_zeros() as usize
}
