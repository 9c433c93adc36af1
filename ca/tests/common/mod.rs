//! Test helpers: CSRs made the way ztunnel makes them, plug-in CA folders, certificate inspection.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::{CertificateAuthority, Identity};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

pub const TD: &str = "cluster.local";

pub fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa)
}

/// A CSR as ztunnel's `tls/csr.rs` builds it: fresh P-256 key, empty subject, one URI SAN (critical,
/// as the subject is empty), SHA-256. Returns (CSR PEM, key).
pub fn ztunnel_csr(identity: &str) -> (String, KeyPair) {
    csr_with(
        &PKCS_ECDSA_P256_SHA256,
        &[SanType::URI(identity.try_into().unwrap())],
    )
}

pub fn csr_with(alg: &'static SignatureAlgorithm, sans: &[SanType]) -> (String, KeyPair) {
    let key = KeyPair::generate_for(alg).unwrap();
    (csr_for_key(&key, sans), key)
}

pub fn csr_for_key(key: &KeyPair, sans: &[SanType]) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans.to_vec();
    params.serialize_request(key).unwrap().pem().unwrap()
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// DER of every PEM certificate in `text`.
pub fn certs(text: &str) -> Vec<CertificateDer<'static>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[start..].find("-----END CERTIFICATE-----").unwrap() + start;
        let body: String = rest[start + 27..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        use base64::Engine as _;
        out.push(CertificateDer::from(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        ));
        rest = &rest[end + 25..];
    }
    out
}

/// The one certificate in `text`.
pub fn cert(text: &str) -> CertificateDer<'static> {
    let mut c = certs(text);
    assert_eq!(c.len(), 1, "expected one certificate in {text}");
    c.remove(0)
}

/// Verifies a chain `[leaf, intermediates…, root bundle]` with webpki for `usage`.
pub fn verify_chain(chain: &[String], usage: webpki::KeyUsage) -> Result<(), webpki::Error> {
    let leaf = cert(&chain[0]);
    let intermediates: Vec<CertificateDer<'static>> =
        chain[1..chain.len() - 1].iter().map(|p| cert(p)).collect();
    let roots = certs(chain.last().unwrap());
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    ee.verify_for_usage(
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
        &anchors,
        &intermediates,
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

/// A CA hierarchy for plug-in tests, written in istio's `cacerts` layout.
pub struct PluginPki {
    pub root_pem: String,
    /// ca-cert first, then the intermediates up to (not including) the root.
    pub chain_pems: Vec<String>,
    pub ca_key: KeyPair,
}

pub fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Test");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(365 * 24 * 3600);
    p
}

impl PluginPki {
    /// root → `levels` CAs; the last one is ca-cert.
    pub fn new(levels: usize) -> Self {
        Self::with_ca_cert_params(levels, ca_params("ca-cert"))
    }

    /// root → levels-1 intermediates → a ca-cert made from `ca_cert_params`.
    pub fn with_ca_cert_params(levels: usize, ca_cert_params: CertificateParams) -> Self {
        assert!(levels >= 1);
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params("test root");
        let root_pem = root_params.self_signed(&root_key).unwrap().pem();
        let mut issuer = Issuer::new(root_params, root_key);
        let mut chain_pems = Vec::new();
        let mut last_key_pem = String::new();
        for level in 0..levels {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let params = if level + 1 == levels {
                ca_cert_params.clone()
            } else {
                ca_params(&format!("intermediate {level}"))
            };
            chain_pems.insert(0, params.signed_by(&key, &issuer).unwrap().pem());
            last_key_pem = key.serialize_pem();
            issuer = Issuer::new(params, key);
        }
        PluginPki {
            root_pem,
            chain_pems,
            ca_key: KeyPair::from_pem(&last_key_pem).unwrap(),
        }
    }

    /// Writes `ca-cert.pem`, `ca-key.pem`, `root-cert.pem` and `cert-chain.pem` (ca-cert first, root
    /// last, as istio's tooling makes it).
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca-cert.pem"), &self.chain_pems[0]).unwrap();
        std::fs::write(dir.join("ca-key.pem"), self.ca_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("root-cert.pem"), &self.root_pem).unwrap();
        let mut chain = self.chain_pems.concat();
        chain.push_str(&self.root_pem);
        std::fs::write(dir.join("cert-chain.pem"), chain).unwrap();
    }
}

/// A self-signed CA in a fresh temporary state folder.
pub fn self_signed_ca() -> (tempfile::TempDir, Arc<CertificateAuthority>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create_self_signed(dir.path(), TD).unwrap();
    (dir, Arc::new(ca))
}

/// A plug-in CA (root → intermediate → ca-cert) in a fresh temporary folder.
pub fn plugin_ca() -> (tempfile::TempDir, PluginPki, Arc<CertificateAuthority>) {
    let dir = tempfile::tempdir().unwrap();
    let pki = PluginPki::new(2);
    pki.write(dir.path());
    let ca = CertificateAuthority::from_cacerts_dir(dir.path()).unwrap();
    (dir, pki, Arc::new(ca))
}

pub fn parse_leaf(pem: &str) -> (Vec<u8>, ParsedLeaf) {
    let der = cert(pem).to_vec();
    let parsed = ParsedLeaf::from_der(&der);
    (der, parsed)
}

/// What the tests look at in a leaf.
#[derive(Debug)]
pub struct ParsedLeaf {
    pub sans: Vec<String>,
    pub san_critical: bool,
    pub subject_empty: bool,
    pub is_ca: Option<bool>,
    pub digital_signature: bool,
    pub key_encipherment: bool,
    pub key_cert_sign: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

impl ParsedLeaf {
    pub fn from_der(der: &[u8]) -> Self {
        use x509_parser::prelude::*;
        let (_, x) = X509Certificate::from_der(der).unwrap();
        let mut sans = Vec::new();
        let mut san_critical = false;
        if let Ok(Some(san)) = x.subject_alternative_name() {
            san_critical = san.critical;
            for n in &san.value.general_names {
                sans.push(match n {
                    GeneralName::URI(u) => format!("URI:{u}"),
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => format!(
                            "IP:{}",
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap())
                        ),
                        16 => format!(
                            "IP:{}",
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())
                        ),
                        _ => format!("IP:{ip:?}"),
                    },
                    other => format!("{other:?}"),
                });
            }
        }
        let ku = x.key_usage().unwrap().map(|k| *k.value);
        let eku = x.extended_key_usage().unwrap().map(|e| e.value.clone());
        ParsedLeaf {
            sans,
            san_critical,
            subject_empty: x.subject().iter().next().is_none(),
            is_ca: x.basic_constraints().unwrap().map(|b| b.value.ca),
            digital_signature: ku.is_some_and(|k| k.digital_signature()),
            key_encipherment: ku.is_some_and(|k| k.key_encipherment()),
            key_cert_sign: ku.is_some_and(|k| k.key_cert_sign()),
            server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
            serial: x.raw_serial().to_vec(),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
        }
    }
}

pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
