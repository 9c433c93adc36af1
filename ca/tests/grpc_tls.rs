//! Over real TLS and gRPC on 127.0.0.1: a ztunnel-like client (rustls, TLS 1.3, ALPN h2) sends CSRs made
//! the way ztunnel makes them; the chains verify with webpki as client and server certificates; two
//! issued leaves complete a mutual-TLS handshake with each other; client certificates authenticate;
//! the serving certificate rotates without dropping connections.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ambient_ca::{
    Authenticator, CaService, CaServiceConfig, CertificateAuthority, ClientCertAuthenticator,
    ServingTls, TokenFileAuthenticator, tls_incoming,
};
use ambient_proto::auth::IstioCertificateRequest;
use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const TOKENS: &str = "\
ztunnel-a: {namespace: istio-system, serviceAccount: ztunnel, node: node-a, podName: ztunnel-aaaaa}
app: {namespace: default, serviceAccount: app, node: node-a}
";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A running CA server: the service behind `ServingTls` on 127.0.0.1.
struct Server {
    addr: SocketAddr,
    ca: Arc<CertificateAuthority>,
    serving: Arc<ServingTls>,
    svc: CaService,
    _dir: tempfile::TempDir,
}

async fn start(
    ca: Arc<CertificateAuthority>,
    dir: tempfile::TempDir,
    serving_ttl: Duration,
) -> Server {
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let authenticators: Vec<Box<dyn Authenticator>> = vec![
        Box::new(ClientCertAuthenticator::new(TD)),
        Box::new(TokenFileAuthenticator::from_file(&tokens, TD).unwrap()),
    ];
    let pods = |node: &str, ns: &str, sa: &str| node == "node-a" && ns == "default" && sa != "web";
    let svc = CaService::new(
        ca.clone(),
        authenticators,
        Arc::new(pods),
        CaServiceConfig::default(),
    );
    let serving = Arc::new(
        ServingTls::new(
            ca.clone(),
            vec!["ca.test".into()],
            vec!["127.0.0.1".parse().unwrap()],
            serving_ttl,
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tls_incoming(listener, serving.server_config());
    let server = tonic::transport::Server::builder().add_service(svc.clone().into_server());
    tokio::spawn(async move { server.serve_with_incoming(incoming).await });
    Server {
        addr,
        ca,
        serving,
        svc,
        _dir: dir,
    }
}

async fn start_self_signed() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca =
        CertificateAuthority::load_or_create_self_signed(&dir.path().join("state"), TD).unwrap();
    start(Arc::new(ca), dir, Duration::from_secs(3600)).await
}

async fn start_plugin() -> Server {
    let dir = tempfile::tempdir().unwrap();
    PluginPki::new(2).write(&dir.path().join("cacerts"));
    let ca = CertificateAuthority::from_cacerts_dir(&dir.path().join("cacerts")).unwrap();
    start(Arc::new(ca), dir, Duration::from_secs(3600)).await
}

/// ztunnel's control-plane TLS: TLS 1.3, ALPN h2, the CA roots, optionally a client certificate.
fn ztunnel_tls(
    roots: &[CertificateDer<'static>],
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(store);
    let mut cfg = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// A gRPC channel over our own TLS connector; counts TCP+TLS connections made.
async fn channel(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<ClientConfig>,
) -> (Channel, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = connects.clone();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let ch = Endpoint::from_static("http://ca.test")
        .connect_with_connector(tower::service_fn(move |_| {
            let tls = tls.clone();
            let name = name.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let stream = TlsConnector::from(tls).connect(name, tcp).await?;
                let (_, conn) = stream.get_ref();
                assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
                assert_eq!(
                    conn.protocol_version(),
                    Some(rustls::ProtocolVersion::TLSv1_3)
                );
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    (ch, connects)
}

fn request(
    csr: String,
    token: Option<&str>,
    impersonate: Option<&str>,
) -> tonic::Request<IstioCertificateRequest> {
    let metadata = impersonate.map(|id| prost_types::Struct {
        fields: [(
            "ImpersonatedIdentity".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(id.to_string())),
            },
        )]
        .into(),
    });
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 86400,
        metadata,
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

const APP: &str = "spiffe://cluster.local/ns/default/sa/app";
const DB: &str = "spiffe://cluster.local/ns/default/sa/db";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_style_csr_over_tls_and_grpc() {
    for server in [start_self_signed().await, start_plugin().await] {
        let tls = ztunnel_tls(server.ca.roots(), None);
        // Dialled by IP (ztunnel with CA_ADDRESS=https://127.0.0.1:15012) and by istiod's name.
        for name in ["127.0.0.1", "istiod.istio-system.svc"] {
            let (ch, _) = channel(server.addr, name, tls.clone()).await;
            let mut client = IstioCertificateServiceClient::new(ch);
            let (csr, _key) = ztunnel_csr(APP);
            let chain = client
                .create_certificate(request(csr, Some("app"), None))
                .await
                .unwrap()
                .into_inner()
                .cert_chain;
            assert!(chain.len() >= 2);
            assert_eq!(chain.last().unwrap(), server.ca.root_bundle_pem());
            verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
            verify_chain(&chain, webpki::KeyUsage::server_auth()).unwrap();
            assert_eq!(parse_leaf(&chain[0]).1.sans, vec![format!("URI:{APP}")]);
        }
        assert_eq!(server.svc.metrics().issued, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_ztunnel_impersonates_over_grpc() {
    let server = start_self_signed().await;
    let (ch, _) = channel(
        server.addr,
        "istiod.istio-system.svc",
        ztunnel_tls(server.ca.roots(), None),
    )
    .await;
    let mut client = IstioCertificateServiceClient::new(ch);
    let chain = client
        .create_certificate(request(ztunnel_csr(DB).0, Some("ztunnel-a"), Some(DB)))
        .await
        .unwrap()
        .into_inner()
        .cert_chain;
    assert_eq!(parse_leaf(&chain[0]).1.sans, vec![format!("URI:{DB}")]);
    // A pod that is not on node-a: refused with istiod's message.
    let web = "spiffe://cluster.local/ns/default/sa/web";
    let err = client
        .create_certificate(request(ztunnel_csr(web).0, Some("ztunnel-a"), Some(web)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        err.message(),
        "request impersonation authentication failure"
    );
    // No token at all.
    let err = client
        .create_certificate(request(ztunnel_csr(APP).0, None, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "request authenticate failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_authenticates_over_tls() {
    let server = start_plugin().await;
    // A workload certificate for default/app, presented as the TLS client certificate.
    let (chain, key_pem) = server
        .ca
        .issue_workload(&id("default", "app"), Duration::from_secs(600))
        .unwrap();
    let presented: Vec<CertificateDer<'static>> =
        chain[..chain.len() - 1].iter().map(|p| cert(p)).collect();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let tls = ztunnel_tls(server.ca.roots(), Some((presented, key_der(&key))));
    let (ch, _) = channel(server.addr, "127.0.0.1", tls).await;
    let mut client = IstioCertificateServiceClient::new(ch);
    // No token: the certificate is the caller's identity.
    let chain = client
        .create_certificate(request(ztunnel_csr(APP).0, None, None))
        .await
        .unwrap()
        .into_inner()
        .cert_chain;
    verify_chain(&chain, webpki::KeyUsage::client_auth()).unwrap();
    let err = client
        .create_certificate(request(ztunnel_csr(DB).0, None, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A client certificate from another CA does not even get through the handshake.
    let other_dir = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::load_or_create_self_signed(other_dir.path(), TD).unwrap();
    let (chain, key_pem) = other
        .issue_workload(&id("default", "app"), Duration::from_secs(600))
        .unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let tls = ztunnel_tls(
        server.ca.roots(),
        Some((vec![cert(&chain[0])], key_der(&key))),
    );
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let result = async {
        let mut s = TlsConnector::from(tls)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        // TLS 1.3: the server's verdict on the client certificate arrives with the first read.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        s.read(&mut buf).await
    }
    .await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_clients_are_refused() {
    let server = start_self_signed().await;
    let mut store = RootCertStore::empty();
    for r in server.ca.roots() {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let r = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await;
    assert!(r.is_err());
}

/// Verifies a peer as ztunnel does: the chain against the roots (webpki), then the SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Vec<CertificateDer<'static>>,
    expect: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchors: Vec<_> = self
            .roots
            .iter()
            .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
            .collect();
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let sans = ParsedLeaf::from_der(end_entity).sans;
        if sans != vec![format!("URI:{}", self.expect)] {
            return Err(rustls::Error::General(format!(
                "unexpected identity {sans:?}"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_issued_leaves_complete_mutual_tls() {
    let server = start_plugin().await;
    let (ch, _) = channel(
        server.addr,
        "127.0.0.1",
        ztunnel_tls(server.ca.roots(), None),
    )
    .await;
    let mut client = IstioCertificateServiceClient::new(ch);
    // Two workloads fetch their certificates the way ztunnel does (shared mode, impersonating).
    let mut issued = Vec::new();
    for identity in [APP, DB] {
        let (csr, key) = ztunnel_csr(identity);
        let chain = client
            .create_certificate(request(csr, Some("ztunnel-a"), Some(identity)))
            .await
            .unwrap()
            .into_inner()
            .cert_chain;
        assert_eq!(chain.len(), 4);
        // What a workload presents: leaf + intermediates, not the root.
        let presented: Vec<CertificateDer<'static>> =
            chain[..chain.len() - 1].iter().map(|p| cert(p)).collect();
        let roots = certs(chain.last().unwrap());
        issued.push((presented, key, roots));
    }
    let (app_chain, app_key, roots) = &issued[0];
    let (db_chain, db_key, _) = &issued[1];

    // app serves (HBONE inbound), requiring a client certificate from the same roots.
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .unwrap();
    let mut server_cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(app_chain.clone(), key_der(app_key))
        .unwrap();
    server_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.unwrap();
        (ParsedLeaf::from_der(&peer).sans, buf)
    });

    // db connects (HBONE outbound), expecting app's SPIFFE ID and presenting its own certificate.
    let mut client_cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
            roots: roots.clone(),
            expect: APP.to_string(),
            provider: provider(),
        }))
        .with_client_auth_cert(db_chain.clone(), key_der(db_key))
        .unwrap();
    client_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(client_cfg))
        .connect(ServerName::try_from("app.default.svc").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"pong");
    let (client_sans, got) = served.await.unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(client_sans, vec![format!("URI:{DB}")]);
}

/// The leaf the server presents to a full handshake (a fresh client config, so no session resumption).
async fn presented_leaf(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let tls = ztunnel_tls(roots, None);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = TlsConnector::from(tls)
        .connect(
            ServerName::try_from("istiod.istio-system.svc").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificate_rotates_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(
        CertificateAuthority::load_or_create_self_signed(&dir.path().join("s"), TD).unwrap(),
    );
    let server = start(ca, dir, Duration::from_secs(6)).await;
    let tls = ztunnel_tls(server.ca.roots(), None);

    // A long-lived connection, as ztunnel keeps one.
    let (ch, connects) = channel(server.addr, "istiod.istio-system.svc", tls.clone()).await;
    let mut client = IstioCertificateServiceClient::new(ch);
    client
        .create_certificate(request(ztunnel_csr(APP).0, Some("app"), None))
        .await
        .unwrap();
    let first = presented_leaf(server.addr, server.ca.roots()).await;
    let first_not_after = server.serving.current_not_after();
    assert!(!server.serving.renew_if_due().unwrap(), "not due yet");

    // Wait until a third of the lifetime is left.
    let wait = server
        .serving
        .next_renewal()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(wait <= Duration::from_secs(6));
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert!(server.serving.renew_if_due().unwrap());
    assert!(server.serving.current_not_after() > first_not_after);

    // A new handshake sees the new certificate...
    let second = presented_leaf(server.addr, server.ca.roots()).await;
    assert_ne!(first, second);
    assert_eq!(second, server.serving.current_chain()[0]);
    // ...and the existing connection keeps working, on the same connection.
    client
        .create_certificate(request(ztunnel_csr(APP).0, Some("app"), None))
        .await
        .unwrap();
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert_eq!(server.svc.metrics().issued, 2);
}
