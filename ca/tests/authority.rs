//! The CA: self-signed and plug-in modes, files on disk, the leaf profile, chain order.

mod common;

use std::path::Path;
use std::time::Duration;

use ambient_ca::{CaError, CertificateAuthority};
use common::*;
use rcgen::{IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};
use time::OffsetDateTime;

const HOUR: Duration = Duration::from_secs(3600);

fn app_csr() -> String {
    ztunnel_csr("spiffe://cluster.local/ns/default/sa/app").0
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn self_signed_root_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ca = CertificateAuthority::load_or_create_self_signed(&state, TD).unwrap();
    let key_path = state.join("ca-key.pem");
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600);
    let root_file = std::fs::read_to_string(state.join("root-cert.pem")).unwrap();
    assert_eq!(root_file, ca.root_bundle_pem());
    assert_eq!(
        std::fs::read_to_string(state.join("ca-cert.pem")).unwrap(),
        ca.root_bundle_pem()
    );

    // The root: a CA for ten years, ECDSA P-256.
    let root = ParsedLeaf::from_der(&cert(ca.root_bundle_pem()));
    assert_eq!(root.is_ca, Some(true));
    assert!(root.key_cert_sign);
    let ten_years = 10 * 365 * 24 * 3600;
    assert!((root.not_after - now_unix() - ten_years).abs() < 120);
    assert_eq!(ca.intermediates().len(), 0);
    assert_eq!(ca.trust_domain(), TD);

    // Second start: the same root, key untouched.
    let key_before = std::fs::read(&key_path).unwrap();
    let again = CertificateAuthority::load_or_create_self_signed(&state, TD).unwrap();
    assert_eq!(again.root_bundle_pem(), ca.root_bundle_pem());
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);

    // A leaf from the first instance verifies against the second instance's root.
    let chain = ca
        .sign_csr(&app_csr(), &id("default", "app"), HOUR)
        .unwrap();
    let mut rechained = chain.clone();
    *rechained.last_mut().unwrap() = again.root_bundle_pem().to_string();
    verify_chain(&rechained, webpki::KeyUsage::client_auth()).unwrap();
}

#[test]
fn damaged_or_half_written_root_is_an_error_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    CertificateAuthority::load_or_create_self_signed(state, TD).unwrap();
    let key_path = state.join("ca-key.pem");
    let cert_path = state.join("ca-cert.pem");
    let good_key = std::fs::read_to_string(&key_path).unwrap();
    let good_cert = std::fs::read_to_string(&cert_path).unwrap();

    let expect_err = |what: &str, check: &dyn Fn(&CaError) -> bool| {
        let err = CertificateAuthority::load_or_create_self_signed(state, TD).unwrap_err();
        assert!(check(&err), "{what}: {err}");
        err.to_string()
    };

    // Half-written key (cut in the middle).
    std::fs::write(&key_path, &good_key[..good_key.len() / 2]).unwrap();
    let msg = expect_err("cut key", &|e| matches!(e, CaError::Key { .. }));
    assert!(
        msg.contains("ca-key.pem") && msg.contains("never replaced"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        good_key[..good_key.len() / 2]
    );

    // Empty key file.
    std::fs::write(&key_path, "").unwrap();
    let msg = expect_err("empty key", &|e| matches!(e, CaError::Key { .. }));
    assert!(msg.contains("empty"), "{msg}");

    // Garbage key.
    std::fs::write(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    expect_err("garbage key", &|e| matches!(e, CaError::Key { .. }));

    // Another key than the certificate's.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&key_path, other.serialize_pem()).unwrap();
    expect_err("other key", &|e| {
        matches!(e, CaError::KeyCertMismatch { .. })
    });

    // Key restored, certificate cut.
    std::fs::write(&key_path, &good_key).unwrap();
    std::fs::write(&cert_path, &good_cert[..good_cert.len() / 2]).unwrap();
    let msg = expect_err("cut cert", &|e| matches!(e, CaError::Certificate { .. }));
    assert!(msg.contains("ca-cert.pem"), "{msg}");

    // Certificate gone: half a root.
    std::fs::remove_file(&cert_path).unwrap();
    let msg = expect_err("no cert", &|e| matches!(e, CaError::HalfWrittenRoot { .. }));
    assert!(
        msg.contains("ca-cert.pem") && msg.contains("ca-key.pem"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), good_key);

    // Key gone, certificate back.
    std::fs::write(&cert_path, &good_cert).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    expect_err("no key", &|e| matches!(e, CaError::HalfWrittenRoot { .. }));

    // Both restored: loads again.
    std::fs::write(&key_path, &good_key).unwrap();
    CertificateAuthority::load_or_create_self_signed(state, TD).unwrap();
}

#[test]
fn bad_trust_domains_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for td in ["", "a/b", "td:1", "with space"] {
        assert!(
            matches!(
                CertificateAuthority::load_or_create_self_signed(dir.path(), td),
                Err(CaError::TrustDomain(_))
            ),
            "{td:?}"
        );
    }
}

#[test]
fn leaf_profile() {
    for (_dir, ca) in [self_signed_ca(), {
        let (d, _, ca) = plugin_ca();
        (d, ca)
    }] {
        let before = now_unix();
        let chain = ca
            .sign_csr(&app_csr(), &id("default", "app"), HOUR)
            .unwrap();
        let (_, leaf) = parse_leaf(&chain[0]);
        assert_eq!(
            leaf.sans,
            vec!["URI:spiffe://cluster.local/ns/default/sa/app"]
        );
        assert!(leaf.subject_empty);
        assert!(leaf.san_critical, "an empty subject needs a critical SAN");
        assert_eq!(leaf.is_ca, Some(false));
        assert!(leaf.digital_signature && leaf.key_encipherment && !leaf.key_cert_sign);
        assert!(leaf.server_auth && leaf.client_auth);
        // 128 random bits behind a 0x01 byte
        assert_eq!(leaf.serial.len(), 17);
        assert_eq!(leaf.serial[0], 1);
        // back-dated by a minute, TTL as asked
        assert!((before - 60 - leaf.not_before).abs() <= 2, "{leaf:?}");
        assert!((leaf.not_after - before - 3600).abs() <= 2, "{leaf:?}");
        verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
        verify_chain(&chain, webpki::KeyUsage::server_auth()).unwrap();
    }
}

#[test]
fn serials_differ() {
    let (_dir, ca) = self_signed_ca();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let (chain, _) = ca.issue_workload(&id("a", "b"), HOUR).unwrap();
        assert!(seen.insert(parse_leaf(&chain[0]).1.serial));
    }
}

#[test]
fn zero_ttl_is_refused_and_ttl_never_outlives_the_ca() {
    let (_dir, ca) = self_signed_ca();
    assert!(matches!(
        ca.sign_csr(&app_csr(), &id("default", "app"), Duration::ZERO),
        Err(CaError::ZeroTtl)
    ));
    // A CA certificate that expires in 2 hours caps a 1-day leaf.
    let dir = tempfile::tempdir().unwrap();
    let mut params = ca_params("short-lived ca-cert");
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(7200);
    PluginPki::with_ca_cert_params(1, params).write(dir.path());
    let short = CertificateAuthority::from_cacerts_dir(dir.path()).unwrap();
    let chain = short
        .sign_csr(&app_csr(), &id("default", "app"), 24 * HOUR)
        .unwrap();
    let ca_not_after = short
        .ca_not_after()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(parse_leaf(&chain[0]).1.not_after, ca_not_after);
}

#[test]
fn chain_order_self_signed() {
    let (_dir, ca) = self_signed_ca();
    let chain = ca
        .sign_csr(&app_csr(), &id("default", "app"), HOUR)
        .unwrap();
    assert_eq!(chain.len(), 2, "[leaf, root]");
    assert_eq!(certs(&chain[0]).len(), 1);
    assert_eq!(chain[1], ca.root_bundle_pem());
    for pem in &chain {
        assert!(pem.ends_with('\n'));
    }
}

#[test]
fn chain_order_plugin() {
    // root → intermediate → ca-cert; cert-chain.pem = ca-cert, intermediate, root.
    let (_dir, pki, ca) = plugin_ca();
    let chain = ca
        .sign_csr(&app_csr(), &id("default", "app"), HOUR)
        .unwrap();
    assert_eq!(chain.len(), 4, "[leaf, ca-cert, intermediate, root]");
    assert_eq!(cert(&chain[1]), cert(&pki.chain_pems[0]), "ca-cert first");
    assert_eq!(cert(&chain[2]), cert(&pki.chain_pems[1]), "then its issuer");
    assert_eq!(cert(&chain[3]), cert(&pki.root_pem), "root bundle last");
    for pem in &chain[..3] {
        assert_eq!(certs(pem).len(), 1, "one certificate per element");
    }
    verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
    assert_eq!(ca.root_bundle_pem(), chain[3]);

    // write_root_bundle puts the roots in the state folder; the cacerts folder is untouched.
    let state = tempfile::tempdir().unwrap();
    let path = ca.write_root_bundle(state.path()).unwrap();
    assert_eq!(path, state.path().join("root-cert.pem"));
    assert_eq!(std::fs::read_to_string(path).unwrap(), ca.root_bundle_pem());
}

#[test]
fn plugin_with_two_roots_and_without_cert_chain() {
    let dir = tempfile::tempdir().unwrap();
    let pki = PluginPki::new(1);
    pki.write(dir.path());
    // A root bundle with an extra (unrelated) root, as during a root rotation.
    let extra = PluginPki::new(1);
    std::fs::write(
        dir.path().join("root-cert.pem"),
        format!("{}{}", pki.root_pem, extra.root_pem),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("cert-chain.pem")).unwrap();
    let ca = CertificateAuthority::from_cacerts_dir(dir.path())
        .unwrap()
        .with_trust_domain("example.org")
        .unwrap();
    assert_eq!(ca.trust_domain(), "example.org");
    let chain = ca
        .sign_csr(
            &ztunnel_csr("spiffe://example.org/ns/a/sa/b").0,
            &ambient_ca::Identity::new("example.org", "a", "b"),
            HOUR,
        )
        .unwrap();
    assert_eq!(chain.len(), 3, "[leaf, ca-cert, root bundle]");
    assert_eq!(certs(&chain[2]).len(), 2, "both roots in the last element");
    verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
}

#[test]
fn istio_style_rsa_cacerts() {
    // Made with openssl like istio's samples/certs: RSA keys in PKCS#1, cert-chain = ca-cert + root.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cacerts-rsa");
    let ca = CertificateAuthority::from_cacerts_dir(&dir).unwrap();
    let chain = ca
        .sign_csr(&app_csr(), &id("default", "app"), HOUR)
        .unwrap();
    assert_eq!(
        chain.len(),
        3,
        "[leaf, ca-cert, root]; the root in cert-chain.pem is not repeated"
    );
    verify_chain(&chain, webpki::KeyUsage::server_auth()).unwrap();
}

fn plugin_err(setup: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    PluginPki::new(2).write(dir.path());
    setup(dir.path());
    CertificateAuthority::from_cacerts_dir(dir.path())
        .unwrap_err()
        .to_string()
}

#[test]
fn plugin_refusals_name_the_file() {
    // Missing files.
    for f in ["ca-cert.pem", "ca-key.pem", "root-cert.pem"] {
        let msg = plugin_err(|d| std::fs::remove_file(d.join(f)).unwrap());
        assert!(msg.contains(f) && msg.contains("missing"), "{msg}");
    }

    // Key of another certificate.
    let msg = plugin_err(|d| {
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(d.join("ca-key.pem"), other.serialize_pem()).unwrap();
    });
    assert!(
        msg.contains("ca-key.pem does not match") && msg.contains("ca-cert.pem"),
        "{msg}"
    );

    // Damaged key.
    let msg = plugin_err(|d| std::fs::write(d.join("ca-key.pem"), "nonsense").unwrap());
    assert!(
        msg.contains("ca-key.pem") && msg.contains("no PRIVATE KEY"),
        "{msg}"
    );

    // ca-cert.pem holding the whole chain.
    let msg = plugin_err(|d| {
        let chain = std::fs::read_to_string(d.join("cert-chain.pem")).unwrap();
        std::fs::write(d.join("ca-cert.pem"), chain).unwrap();
    });
    assert!(
        msg.contains("ca-cert.pem") && msg.contains("holds 3 certificates"),
        "{msg}"
    );

    // Root bundle of another hierarchy.
    let msg = plugin_err(|d| {
        std::fs::write(d.join("root-cert.pem"), PluginPki::new(1).root_pem).unwrap();
        std::fs::remove_file(d.join("cert-chain.pem")).unwrap();
    });
    assert!(
        msg.contains("does not verify against") && msg.contains("root-cert.pem"),
        "{msg}"
    );

    // cert-chain.pem that skips the intermediate.
    let msg = plugin_err(|d| {
        let ca_cert = std::fs::read_to_string(d.join("ca-cert.pem")).unwrap();
        let root = std::fs::read_to_string(d.join("root-cert.pem")).unwrap();
        std::fs::write(d.join("cert-chain.pem"), format!("{ca_cert}{root}")).unwrap();
    });
    assert!(
        msg.contains("cert-chain.pem") && msg.contains("does not verify"),
        "{msg}"
    );

    // cert-chain.pem that does not start with ca-cert.pem.
    let msg = plugin_err(|d| {
        let root = std::fs::read_to_string(d.join("root-cert.pem")).unwrap();
        let other = PluginPki::new(1).chain_pems[0].clone();
        std::fs::write(d.join("cert-chain.pem"), format!("{other}{root}")).unwrap();
    });
    assert!(
        msg.contains("cert-chain.pem") && msg.contains("first certificate"),
        "{msg}"
    );
}

#[test]
fn plugin_expired_or_not_a_ca() {
    let check = |params: rcgen::CertificateParams, want: &str| {
        let dir = tempfile::tempdir().unwrap();
        PluginPki::with_ca_cert_params(1, params).write(dir.path());
        let msg = CertificateAuthority::from_cacerts_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ca-cert.pem") && msg.contains(want), "{msg}");
    };
    let now = OffsetDateTime::now_utc();

    let mut expired = ca_params("expired");
    expired.not_before = now - Duration::from_secs(48 * 3600);
    expired.not_after = now - Duration::from_secs(3600);
    check(expired, "expired");

    let mut future = ca_params("future");
    future.not_before = now + Duration::from_secs(24 * 3600);
    check(future, "not valid before");

    let mut leaf = ca_params("not a ca");
    leaf.is_ca = IsCa::ExplicitNoCa;
    check(leaf, "CA:FALSE");

    let mut no_bc = ca_params("no basic constraints");
    no_bc.is_ca = IsCa::NoCa;
    check(no_bc, "no basicConstraints");

    let mut no_sign = ca_params("cannot sign");
    no_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    check(no_sign, "keyCertSign");
}

#[test]
fn self_signed_mode_refuses_an_intermediate() {
    // An intermediate put into the state folder is not a root.
    let pki = PluginPki::new(1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca-cert.pem"), &pki.chain_pems[0]).unwrap();
    std::fs::write(dir.path().join("ca-key.pem"), pki.ca_key.serialize_pem()).unwrap();
    let msg = CertificateAuthority::load_or_create_self_signed(dir.path(), TD)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not self-signed") && msg.contains("--ca-dir"),
        "{msg}"
    );
}

#[test]
fn issue_workload_and_serving() {
    let (_dir, pki, ca) = plugin_ca();
    let (chain, key_pem) = ca.issue_workload(&id("ns1", "sa1"), HOUR).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(chain.len(), 4);
    verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);

    let (chain, key_pem) = ca
        .issue_serving(
            &["istiod.istio-system.svc".to_string()],
            &["127.0.0.1".parse().unwrap()],
            HOUR,
        )
        .unwrap();
    assert_eq!(
        chain.len(),
        3,
        "[leaf, ca-cert, intermediate] without the root"
    );
    assert_eq!(cert(&chain[1]), cert(&pki.chain_pems[0]));
    let (_, leaf) = parse_leaf(&chain[0]);
    assert_eq!(
        leaf.sans,
        vec!["DNS:istiod.istio-system.svc", "IP:127.0.0.1"]
    );
    assert_eq!(leaf.is_ca, Some(false));
    assert!(leaf.server_auth);
    assert!(KeyPair::from_pem(&key_pem).is_ok());
    let mut with_root = chain.clone();
    with_root.push(ca.root_bundle_pem().to_string());
    verify_chain(&with_root, webpki::KeyUsage::server_auth()).unwrap();

    assert!(ca.issue_serving(&[], &[], HOUR).is_err());
    assert!(
        ca.issue_serving(&["bad name\u{e9}".into()], &[], HOUR)
            .is_err()
    );
}

#[test]
fn debug_output_has_no_key() {
    let (dir, ca) = self_signed_ca();
    let key = std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap();
    let body: String = key.lines().nth(1).unwrap().to_string();
    let debug = format!("{ca:?}");
    assert!(!debug.contains(&body));
    assert!(debug.contains("cluster.local"));
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CertificateAuthority>();
    check::<ambient_ca::CaService>();
    check::<ambient_ca::ServingTls>();
    check::<ambient_ca::TokenFileAuthenticator>();
}
