//! Shared pieces of the CA end-to-end tests: an in-process `ambientd serve` on 127.0.0.1, a client that
//! connects the way ztunnel does (rustls, TLS 1.3 only, ALPN `h2`, by IP), ztunnel-style CSRs, and
//! certificate helpers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ambient_ca::ServingTls;
use ambient_control_plane::serve::{AuthMethod, ServeConfig, ServeError, Server};
use ambient_proto::auth::IstioCertificateRequest;
use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

pub const TRUST_DOMAIN: &str = "cluster.local";
/// The only node of the bookinfo example.
pub const NODE: &str = "kind-control-plane";
/// Tokens of the test tokens file.
pub const ZTUNNEL_TOKEN: &str = "ztunnel-on-kind-control-plane";
pub const DETAILS_TOKEN: &str = "details-v1-token";
pub const SLEEP_TOKEN: &str = "sleep-token";
pub const DETAILS_ID: &str = "spiffe://cluster.local/ns/backend/sa/bookinfo-details";
pub const RATINGS_ID: &str = "spiffe://cluster.local/ns/backend/sa/bookinfo-ratings";
/// An identity no pod of the example has.
pub const NOBODY_ID: &str = "spiffe://cluster.local/ns/backend/sa/nobody";

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn bookinfo() -> PathBuf {
    repo_root().join("deploy/examples/bookinfo")
}

/// A scratch folder with a tokens file; the CA state goes to `state/` in it.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub tokens: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!(
                "{ZTUNNEL_TOKEN}: {{namespace: istio-system, serviceAccount: ztunnel, node: {NODE}, podName: ztunnel-w7k2p}}\n\
                 {DETAILS_TOKEN}: {{namespace: backend, serviceAccount: bookinfo-details, node: {NODE}, podName: details-v1-558d6b8747-fd6nx}}\n\
                 {SLEEP_TOKEN}: {{namespace: frontend, serviceAccount: sleep}}\n"
            ),
        )
        .expect("write tokens");
        Lab { dir, tokens }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `ambientd serve` on 127.0.0.1 (ephemeral port) for `config_dir`, tokens then client certificates.
    pub fn config(&self, config_dir: &Path) -> ServeConfig {
        let mut cfg = ServeConfig::new(config_dir, self.state_dir());
        cfg.grpc_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        cfg.auth = vec![AuthMethod::Tokens(self.tokens.clone()), AuthMethod::Cert];
        cfg
    }
}

/// An in-process server, stopped by [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    pub xds_plaintext_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub root_pem: String,
    pub root_path: PathBuf,
    pub serving: Arc<ServingTls>,
    pub banner: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

pub async fn start(cfg: ServeConfig) -> Running {
    let server = Server::bind(cfg).await.expect("server starts");
    let (stop, stopped) = oneshot::channel::<()>();
    let running = Running {
        addr: server.grpc_addr(),
        xds_plaintext_addr: server.xds_plaintext_addr(),
        admin_addr: server.admin_addr(),
        root_pem: server.root_bundle_pem().to_string(),
        root_path: server.root_bundle_path().to_path_buf(),
        serving: server.serving(),
        banner: server.banner(),
        stop: Some(stop),
        task: tokio::spawn(server.run(async {
            let _ = stopped.await;
        })),
    };
    assert!(running.addr.ip().is_loopback());
    running
}

impl Running {
    /// Signals shutdown and waits for the server to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let res = tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops after the signal")
            .expect("server task");
        res.expect("server exits cleanly");
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

pub fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("PEM private key")
}

pub fn roots(pem: &str) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for cert in certs(pem) {
        store.add(cert).expect("root certificate");
    }
    store
}

/// What ztunnel's control-plane client uses: TLS 1.3 only, ALPN `h2`, the given roots; optionally a
/// client certificate.
pub fn client_tls(
    root_pem: &str,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots(root_pem));
    let mut config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One TLS connection to `addr`, dialled by IP as ztunnel does for `https://127.0.0.1:…` (no SNI).
pub async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// A gRPC channel over [`handshake`] that refuses anything but ALPN `h2`. The counter tells how many
/// connections the channel has made.
pub async fn channel(addr: SocketAddr, config: Arc<ClientConfig>) -> (Channel, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connects);
    let connector = tower::service_fn(move |_uri| {
        let config = Arc::clone(&config);
        let counter = Arc::clone(&counter);
        async move {
            let tls = handshake(addr, config).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other("server did not negotiate ALPN h2"));
            }
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_with_connector(connector)
        .await
        .expect("gRPC channel");
    (channel, connects)
}

pub fn ca_client(channel: Channel) -> IstioCertificateServiceClient<Channel> {
    IstioCertificateServiceClient::new(channel)
}

/// A CSR as ztunnel makes it (`tls/csr.rs`): fresh ECDSA P-256 key, empty subject, one critical URI SAN.
pub fn ztunnel_csr(identity: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(identity).expect("IA5 URI"),
    )];
    params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM")
}

/// `CreateCertificate` as ztunnel sends it: `authorization: Bearer <token>` (when given) and, in shared
/// mode, `metadata.ImpersonatedIdentity`.
pub fn csr_request(
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
        .into_iter()
        .collect(),
    });
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata,
    });
    if let Some(token) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        req.metadata_mut()
            .insert("clusterid", "Kubernetes".parse().expect("header value"));
    }
    req
}

/// Subject alternative names of a DER certificate, as `URI:…`, `DNS:…`, `IP:…`.
pub fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).expect("X.509 certificate");
    let Some(ext) = cert.subject_alternative_name().expect("SAN extension") else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

pub fn is_ca(der: &[u8]) -> bool {
    X509Certificate::from_der(der)
        .expect("X.509 certificate")
        .1
        .is_ca()
}

pub fn serial(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .expect("X.509 certificate")
        .1
        .raw_serial_as_string()
}

/// Verifies a presented chain (leaf first) against `root_pem` as a TLS peer would a client certificate.
pub fn verify_chain(
    root_pem: &str,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(root_pem)), provider())
            .build()
            .expect("client verifier");
    let (leaf, intermediates) = chain.split_first().expect("non-empty chain");
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
}

/// How ztunnel checks a workload peer: the chain must verify against the roots and the leaf's URI SAN
/// must be the expected SPIFFE ID (there is no DNS name to check).
#[derive(Debug)]
pub struct SpiffeVerifier {
    pub root_pem: String,
    pub expected: String,
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let roots = roots(&self.root_pem);
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        if sans(end_entity.as_ref()) != [format!("URI:{}", self.expected)] {
            return Err(rustls::Error::General(format!(
                "peer is not {}",
                self.expected
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
            &provider().signature_verification_algorithms,
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
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Retries `f` until it returns `Some`, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- delta xDS, as ztunnel speaks it -----------------------------------------------------------

/// The first request of a type, as ztunnel sends it
/// (docs/reference/ztunnel.md#delta-xds-the-initial-request): wildcard, node on every initial request.
pub fn initial(type_url: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: "ztunnel~10.244.0.6~ztunnel-w7k2p.istio-system~istio-system.svc.cluster.local"
                .into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        ..Default::default()
    }
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

pub fn ack(resp: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: resp.type_url.clone(),
        response_nonce: resp.nonce.clone(),
        ..Default::default()
    }
}
