//! `ambientd serve` in process on 127.0.0.1, with the bookinfo example: the TLS a ztunnel needs, CSRs
//! authenticated by bearer token or client certificate, and istiod's node rules for impersonation, which
//! follow the config folder as it changes.

mod support;

use std::path::Path;
use std::time::Duration;

use ambient_ca::Identity;
use ambient_ca::service::{AUTHENTICATE_FAILURE, IMPERSONATION_FAILURE};
use ambient_control_plane::cli::CaArgs;
use support::*;
use tonic::Code;

async fn create(
    server: &Running,
    token: Option<&str>,
    csr_identity: &str,
    impersonate: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let (ch, _) = channel(server.addr, client_tls(&server.root_pem, None)).await;
    ca_client(ch)
        .create_certificate(csr_request(ztunnel_csr(csr_identity), token, impersonate))
        .await
        .map(|r| r.into_inner().cert_chain)
}

/// The chain ztunnel needs: `[leaf, intermediates…, root bundle]`, a non-CA leaf with exactly the one
/// SPIFFE URI SAN, verifying against the root bundle.
fn assert_workload_chain(server: &Running, chain: &[String], identity: &str) {
    assert!(chain.len() >= 2, "leaf and root at least: {chain:?}");
    assert!(chain.iter().all(|pem| pem.ends_with('\n')));
    assert_eq!(
        chain.last().map(|r| r.trim()),
        Some(server.root_pem.trim()),
        "the root bundle comes last"
    );
    let leaf = certs(&chain[0]);
    assert_eq!(leaf.len(), 1, "the first element is the leaf alone");
    assert_eq!(sans(&leaf[0]), [format!("URI:{identity}")]);
    assert!(!is_ca(&leaf[0]));
    let presented: Vec<_> = chain[..chain.len() - 1]
        .iter()
        .flat_map(|pem| certs(pem))
        .collect();
    verify_chain(&server.root_pem, &presented).expect("leaf verifies against the root bundle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls13_h2_with_a_leaf_for_istiod_localhost_and_127_0_0_1() {
    let lab = Lab::new();
    let server = start(lab.config(&bookinfo())).await;

    let tls = handshake(server.addr, client_tls(&server.root_pem, None))
        .await
        .expect("handshake by IP, trusting only the root bundle");
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    let chain = conn.peer_certificates().expect("server chain");
    assert!(!is_ca(&chain[0]), "the serving certificate is a leaf");
    let names = sans(&chain[0]);
    for want in [
        "DNS:istiod.istio-system.svc",
        "DNS:istiod.istio-system.svc.cluster.local",
        "DNS:localhost",
        "IP:127.0.0.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    drop(tls);

    assert_eq!(
        std::fs::read_to_string(&server.root_path).expect("root bundle file"),
        server.root_pem
    );
    assert!(server.root_path.is_absolute());
    let url = format!("https://{}", server.addr);
    for line in [
        format!("XDS_ADDRESS={url}"),
        format!("CA_ADDRESS={url}"),
        format!("XDS_ROOT_CA={}", server.root_path.display()),
        format!("CA_ROOT_CA={}", server.root_path.display()),
        format!(
            "AUTH_TOKEN={}",
            server.root_path.with_file_name("ztunnel-token").display()
        ),
        "PROXY_WORKLOAD_INFO=backend/details-v1-558d6b8747-fd6nx/bookinfo-details".to_string(),
        "PROXY_MODE=dedicated".to_string(),
    ] {
        assert!(
            server.banner.contains(&line),
            "{line} in\n{}",
            server.banner
        );
    }
    // ztunnel reads AUTH_TOKEN as a file, verbatim.
    assert_eq!(
        std::fs::read_to_string(server.root_path.with_file_name("ztunnel-token")).expect("token"),
        DETAILS_TOKEN
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_csr_with_a_bearer_token_gets_leaf_and_root() {
    let lab = Lab::new();
    let server = start(lab.config(&bookinfo())).await;
    let chain = create(&server, Some(DETAILS_TOKEN), DETAILS_ID, None)
        .await
        .expect("issued");
    assert_workload_chain(&server, &chain, DETAILS_ID);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_follows_istiods_node_rules_on_bookinfo() {
    let lab = Lab::new();
    let server = start(lab.config(&bookinfo())).await;

    // ztunnel on kind-control-plane asks for a workload that runs there.
    let chain = create(&server, Some(ZTUNNEL_TOKEN), DETAILS_ID, Some(DETAILS_ID))
        .await
        .expect("ztunnel may impersonate a pod on its node");
    assert_workload_chain(&server, &chain, DETAILS_ID);

    // No pod of that service account on the node.
    let err = create(&server, Some(ZTUNNEL_TOKEN), NOBODY_ID, Some(NOBODY_ID))
        .await
        .expect_err("no pod on the node");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(err.message(), IMPERSONATION_FAILURE);

    // A caller that is not a node account cannot impersonate, even a pod on its own node.
    let err = create(&server, Some(DETAILS_TOKEN), RATINGS_ID, Some(RATINGS_ID))
        .await
        .expect_err("not a node account");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(err.message(), IMPERSONATION_FAILURE);

    // Without impersonation, the CSR must name the caller.
    let err = create(&server, Some(DETAILS_TOKEN), RATINGS_ID, None)
        .await
        .expect_err("CSR for someone else");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // No token and no client certificate.
    let err = create(&server, None, DETAILS_ID, None)
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(err.message(), AUTHENTICATE_FAILURE);

    // A token the file does not hold.
    let err = create(&server, Some("not-a-token"), DETAILS_ID, None)
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(err.message(), AUTHENTICATE_FAILURE);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_this_ca_authenticates_its_own_identity() {
    let lab = Lab::new();
    let server = start(lab.config(&bookinfo())).await;
    let identity: Identity = DETAILS_ID.parse().expect("SPIFFE ID");
    let args = CaArgs {
        state_dir: lab.state_dir(),
        ca_dir: None,
    };
    let out = lab.dir.path().join("details-cert");
    let issued =
        ambient_control_plane::ca_cli::issue(&args, &identity, Duration::from_secs(3600), &out)
            .expect("ca issue");
    let read = |p: &Path| std::fs::read_to_string(p).expect("issued file");
    let tls = client_tls(
        &server.root_pem,
        Some((certs(&read(&issued.cert_chain)), key(&read(&issued.key)))),
    );
    let (ch, _) = channel(server.addr, tls).await;
    let mut client = ca_client(ch);

    let chain = client
        .create_certificate(csr_request(ztunnel_csr(DETAILS_ID), None, None))
        .await
        .expect("own identity by client certificate")
        .into_inner()
        .cert_chain;
    assert_workload_chain(&server, &chain, DETAILS_ID);

    let err = client
        .create_certificate(csr_request(ztunnel_csr(RATINGS_ID), None, None))
        .await
        .expect_err("another identity");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    server.stop().await;
}

const NEWCOMER_ID: &str = "spiffe://cluster.local/ns/backend/sa/newcomer";
const NEWCOMER_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: newcomer-0
  namespace: backend
  uid: 5d2c1f3e-0000-4000-8000-000000000001
spec:
  nodeName: kind-control-plane
  serviceAccountName: newcomer
  containers:
  - name: app
    image: example
status:
  phase: Running
  podIP: 10.244.0.99
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_sees_pods_added_to_and_removed_from_the_config_folder() {
    let lab = Lab::new();
    let config = lab.dir.path().join("config");
    std::fs::create_dir(&config).expect("config dir");
    for entry in std::fs::read_dir(bookinfo()).expect("bookinfo") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, config.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let server = start(lab.config(&config)).await;
    let err = create(&server, Some(ZTUNNEL_TOKEN), NEWCOMER_ID, Some(NEWCOMER_ID))
        .await
        .expect_err("no such pod yet");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let pod_file = config.join("90-newcomer.yaml");
    std::fs::write(&pod_file, NEWCOMER_POD).expect("write pod");
    let chain = eventually("the new pod to allow impersonation", || async {
        create(&server, Some(ZTUNNEL_TOKEN), NEWCOMER_ID, Some(NEWCOMER_ID))
            .await
            .ok()
    })
    .await;
    assert_workload_chain(&server, &chain, NEWCOMER_ID);

    std::fs::remove_file(&pod_file).expect("remove pod");
    eventually("the removed pod to stop impersonation", || async {
        match create(&server, Some(ZTUNNEL_TOKEN), NEWCOMER_ID, Some(NEWCOMER_ID)).await {
            Err(e) if e.code() == Code::Unauthenticated => Some(()),
            _ => None,
        }
    })
    .await;
    server.stop().await;
}

/// A plug-in CA in istio's `cacerts` layout: root → `ca-cert.pem`, as `--ca-dir` reads it.
fn write_cacerts(dir: &Path) -> String {
    let ca_params = |cn: &str| {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p
    };
    let root_key = rcgen::KeyPair::generate().expect("root key");
    let root_params = ca_params("plug-in root");
    let root_pem = root_params.self_signed(&root_key).expect("root").pem();
    let issuer = rcgen::Issuer::new(root_params, root_key);
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca_pem = ca_params("plug-in intermediate")
        .signed_by(&ca_key, &issuer)
        .expect("ca-cert")
        .pem();
    std::fs::create_dir_all(dir).expect("cacerts dir");
    std::fs::write(dir.join("ca-cert.pem"), &ca_pem).expect("write");
    std::fs::write(dir.join("ca-key.pem"), ca_key.serialize_pem()).expect("write");
    std::fs::write(dir.join("root-cert.pem"), &root_pem).expect("write");
    std::fs::write(dir.join("cert-chain.pem"), format!("{ca_pem}{root_pem}")).expect("write");
    root_pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plug_in_ca_signs_the_serving_and_workload_certificates() {
    let lab = Lab::new();
    let cacerts = lab.dir.path().join("cacerts");
    let root_pem = write_cacerts(&cacerts);
    let mut cfg = lab.config(&bookinfo());
    cfg.ca_dir = Some(cacerts);
    let server = start(cfg).await;
    assert_eq!(server.root_pem.trim(), root_pem.trim());
    assert_eq!(
        std::fs::read_to_string(&server.root_path)
            .expect("root bundle")
            .trim(),
        root_pem.trim()
    );

    // The serving chain carries the intermediate, so a client that trusts only the root verifies it.
    let tls = handshake(server.addr, client_tls(&root_pem, None))
        .await
        .expect("handshake trusting the plug-in root");
    assert_eq!(tls.get_ref().1.peer_certificates().map(<[_]>::len), Some(2));
    drop(tls);

    let chain = create(&server, Some(DETAILS_TOKEN), DETAILS_ID, None)
        .await
        .expect("issued");
    assert_eq!(chain.len(), 3, "[leaf, ca-cert, root]");
    assert_workload_chain(&server, &chain, DETAILS_ID);
    server.stop().await;
}
