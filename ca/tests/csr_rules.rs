//! Every rule a CSR must pass, through the public API (`inspect_csr`, `sign_csr`).

mod common;

use std::time::Duration;

use ambient_ca::{CaError, CertificateAuthority, CsrError, IdentityError};
use base64::Engine as _;
use common::*;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, SanType};

const ZTUNNEL_ID: &str = "spiffe://cluster.local/ns/default/sa/app";

fn csr_err(pem: &str) -> CsrError {
    match CertificateAuthority::inspect_csr(pem) {
        Err(CaError::Csr(e)) => e,
        other => panic!("expected a CSR error, got {other:?}"),
    }
}

fn pem_of(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn ztunnel_csr_is_accepted() {
    let (pem, _) = ztunnel_csr(ZTUNNEL_ID);
    assert_eq!(
        CertificateAuthority::inspect_csr(&pem).unwrap(),
        id("default", "app")
    );
    // and it really has the shape ztunnel sends: empty subject, critical URI SAN
    use x509_parser::prelude::*;
    let der = der_of(&pem);
    let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
    assert!(
        csr.certification_request_info
            .subject
            .iter()
            .next()
            .is_none()
    );
    let crit = csr
        .certification_request_info
        .iter_attributes()
        .find_map(|a| match a.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(r) => Some(r.extensions[0].critical),
            _ => None,
        });
    assert_eq!(crit, Some(true));
}

#[test]
fn bad_pem() {
    assert_eq!(csr_err(""), CsrError::Empty);
    assert_eq!(csr_err("  \n"), CsrError::Empty);
    assert!(matches!(csr_err("hello"), CsrError::Pem(_)));
    let (pem, _) = ztunnel_csr(ZTUNNEL_ID);
    // cut short
    assert!(matches!(csr_err(&pem[..pem.len() / 2]), CsrError::Pem(m) if m.contains("not closed")));
    // base64 damaged
    let mut broken = pem.clone().into_bytes();
    broken[40] = b'*';
    assert!(matches!(
        csr_err(std::str::from_utf8(&broken).unwrap()),
        CsrError::Pem(m) if m.contains("base64")
    ));
    // two blocks
    assert_eq!(csr_err(&format!("{pem}{pem}")), CsrError::BlockCount(2));
    // a certificate instead of a request
    let der = der_of(&pem);
    assert_eq!(
        csr_err(&pem_of("CERTIFICATE", &der)),
        CsrError::Label("CERTIFICATE".into())
    );
    // the older label is read
    assert!(CertificateAuthority::inspect_csr(&pem_of("NEW CERTIFICATE REQUEST", &der)).is_ok());
    // not DER inside
    assert!(matches!(
        csr_err(&pem_of("CERTIFICATE REQUEST", b"not der")),
        CsrError::Der(_)
    ));
    // trailing bytes after the request
    let mut long = der.clone();
    long.extend_from_slice(&[0, 0]);
    assert!(matches!(
        csr_err(&pem_of("CERTIFICATE REQUEST", &long)),
        CsrError::Der(m) if m.contains("follow")
    ));
    // oversized
    let huge = format!("{pem}{}", " ".repeat(70 * 1024));
    assert!(matches!(csr_err(&huge), CsrError::TooLarge(_)));
}

#[test]
fn bad_signature() {
    let (pem, _) = ztunnel_csr(ZTUNNEL_ID);
    let der = der_of(&pem);
    // The signature BIT STRING is at the end: change its last byte.
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert_eq!(
        csr_err(&pem_of("CERTIFICATE REQUEST", &tampered)),
        CsrError::BadSignature
    );
    // Changing the signed part breaks it too: the same request, asking for sa/apq instead.
    let at = der
        .windows(6)
        .position(|w| w == b"sa/app")
        .expect("the SAN is in the request");
    let mut changed = der.clone();
    changed[at + 5] = b'q';
    assert_eq!(
        csr_err(&pem_of("CERTIFICATE REQUEST", &changed)),
        CsrError::BadSignature
    );
}

#[test]
fn san_rules() {
    let p256 = &PKCS_ECDSA_P256_SHA256;
    // no SAN at all
    let (pem, _) = csr_with(p256, &[]);
    assert_eq!(csr_err(&pem), CsrError::NoSan);
    // two SPIFFE URIs
    let (pem, _) = csr_with(
        p256,
        &[
            uri(ZTUNNEL_ID),
            uri("spiffe://cluster.local/ns/default/sa/other"),
        ],
    );
    assert_eq!(csr_err(&pem), CsrError::SanCount(2));
    // a DNS SAN next to the URI
    let (pem, _) = csr_with(p256, &[uri(ZTUNNEL_ID), dns("app.default.svc")]);
    assert!(matches!(csr_err(&pem), CsrError::ForeignSan(m) if m.contains("app.default.svc")));
    // a DNS SAN alone
    let (pem, _) = csr_with(p256, &[dns("app.default.svc")]);
    assert!(matches!(csr_err(&pem), CsrError::ForeignSan(_)));
    // an IP SAN
    let (pem, _) = csr_with(
        p256,
        &[uri(ZTUNNEL_ID), SanType::IpAddress([10, 0, 0, 1].into())],
    );
    assert!(matches!(csr_err(&pem), CsrError::ForeignSan(m) if m.contains("IP")));
    // an e-mail SAN
    let (pem, _) = csr_with(p256, &[SanType::Rfc822Name("a@b.c".try_into().unwrap())]);
    assert!(matches!(csr_err(&pem), CsrError::ForeignSan(m) if m.contains("e-mail")));
    // a URI that is not SPIFFE
    let (pem, _) = csr_with(p256, &[uri("https://example.com/app")]);
    assert!(matches!(
        csr_err(&pem),
        CsrError::NotSpiffe(IdentityError::Scheme(_))
    ));
    // SPIFFE, but not a workload ID
    for bad in [
        "spiffe://cluster.local/app",
        "spiffe://cluster.local/ns/default/sa/app/extra",
        "spiffe://cluster.local/ns//sa/app",
        "spiffe:///ns/default/sa/app",
    ] {
        let (pem, _) = csr_with(p256, &[uri(bad)]);
        assert!(
            matches!(csr_err(&pem), CsrError::NotSpiffe(IdentityError::Shape(_))),
            "{bad}"
        );
    }
}

#[test]
fn wrong_trust_domain_is_refused() {
    let (_dir, ca) = self_signed_ca();
    let foreign = ambient_ca::Identity::new("other.domain", "default", "app");
    let (pem, _) = ztunnel_csr(&foreign.to_string());
    // The CSR itself is fine...
    assert_eq!(CertificateAuthority::inspect_csr(&pem).unwrap(), foreign);
    // ...but this CA does not sign outside its trust domain.
    let err = ca
        .sign_csr(&pem, &foreign, Duration::from_secs(3600))
        .unwrap_err();
    assert!(
        matches!(&err, CaError::WrongTrustDomain { ca_trust_domain, .. } if ca_trust_domain == TD),
        "{err}"
    );
    assert!(
        ca.issue_workload(&foreign, Duration::from_secs(60))
            .is_err()
    );
}

#[test]
fn identity_must_match_the_authorized_one() {
    let (_dir, ca) = self_signed_ca();
    let (pem, _) = ztunnel_csr(ZTUNNEL_ID);
    let err = ca
        .sign_csr(&pem, &id("default", "other"), Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::IdentityMismatch { .. }), "{err}");
    assert!(
        ca.sign_csr(&pem, &id("default", "app"), Duration::from_secs(60))
            .is_ok()
    );
}

/// Decision: RSA keys of 2048 bits and more are accepted (istio-agent, which serves waypoints and
/// gateways, makes RSA-2048 CSRs by default); smaller RSA keys, Ed25519 and other kinds are refused.
#[test]
fn key_types() {
    let (_dir, ca) = self_signed_ca();
    let app = id("default", "app");

    // P-384: accepted.
    let (pem, _) = csr_with(&PKCS_ECDSA_P384_SHA384, &[uri(ZTUNNEL_ID)]);
    let chain = ca.sign_csr(&pem, &app, Duration::from_secs(600)).unwrap();
    verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();

    // RSA-2048 (PKCS#1 v1.5, SHA-256): accepted, and the leaf verifies.
    let rsa = KeyPair::from_pem(&ambient_ca_test_rsa_pkcs8(include_str!(
        "data/rsa2048-pkcs1.key.pem"
    )))
    .unwrap();
    let pem = csr_for_key(&rsa, &[uri(ZTUNNEL_ID)]);
    let chain = ca.sign_csr(&pem, &app, Duration::from_secs(600)).unwrap();
    verify_chain(&chain, webpki::KeyUsage::server_auth()).unwrap();

    // RSA-1024 (made with openssl): refused, naming the size.
    let weak = include_str!("data/rsa1024.csr.pem");
    assert_eq!(
        csr_err(weak),
        CsrError::KeyAlgorithm("an RSA key of 1024 bits".into())
    );

    // Ed25519: refused.
    let (pem, _) = csr_with(&PKCS_ED25519, &[uri(ZTUNNEL_ID)]);
    assert_eq!(csr_err(&pem), CsrError::KeyAlgorithm("Ed25519".into()));
}

/// The PKCS#1 fixture as PKCS#8 (what rcgen reads), through the CA's own key reader.
fn ambient_ca_test_rsa_pkcs8(pkcs1: &str) -> String {
    // A plug-in CA folder with this key is the public way in; simpler: wrap by hand.
    let der = der_of(pkcs1);
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut octet = vec![0x04, 0x82, (der.len() >> 8) as u8, der.len() as u8];
    octet.extend_from_slice(&der);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&alg);
    body.extend_from_slice(&octet);
    let mut seq = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
    seq.extend_from_slice(&body);
    pem_of("PRIVATE KEY", &seq)
}
