//! Two workload certificates from `ambientd ca issue` complete a real mutual-TLS handshake on
//! 127.0.0.1, each side checking the other's SPIFFE ID as ztunnel does for HBONE.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::Identity;
use ambient_control_plane::ca_cli::{self, Issued};
use ambient_control_plane::cli::CaArgs;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/frontend/sa/bookinfo-productpage";
const SERVER_ID: &str = "spiffe://cluster.local/ns/backend/sa/bookinfo-details";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("issued file")
}

fn issue(args: &CaArgs, id: &str, out: &Path) -> Issued {
    let identity: Identity = id.parse().expect("SPIFFE ID");
    ca_cli::issue(args, &identity, Duration::from_secs(3600), out).expect("ca issue")
}

#[tokio::test]
async fn two_issued_certificates_complete_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = CaArgs {
        state_dir: dir.path().join("state"),
        ca_dir: None,
    };
    let client = issue(&args, CLIENT_ID, &dir.path().join("client"));
    let server = issue(&args, SERVER_ID, &dir.path().join("server"));
    let root_pem = read(&server.root);
    assert_eq!(root_pem, read(&client.root), "one CA, one root");
    assert_eq!(
        ca_cli::root(&args, TRUST_DOMAIN).expect("ca root"),
        root_pem
    );

    // The server requires a client certificate chaining to the root.
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&root_pem)), provider())
            .build()
            .expect("client verifier");
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs(&read(&server.cert_chain)), key(&read(&server.key)))
        .expect("server certificate");
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeVerifier {
            root_pem: root_pem.clone(),
            expected: SERVER_ID.to_string(),
        }))
        .with_client_auth_cert(certs(&read(&client.cert_chain)), key(&read(&client.key)))
        .expect("client certificate");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("server handshake");
        let peer = tls.get_ref().1.peer_certificates().expect("client chain")[0].clone();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.expect("read");
        tls.write_all(b"pong").await.expect("write");
        tls.shutdown().await.expect("close");
        (sans(peer.as_ref()), buf)
    });

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut tls = TlsConnector::from(Arc::new(client_config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("client handshake: the server is the expected SPIFFE ID");
    tls.write_all(b"ping").await.expect("write");
    let mut reply = [0u8; 4];
    tls.read_exact(&mut reply).await.expect("read");
    assert_eq!(&reply, b"pong");

    let (client_sans, got) = tokio::time::timeout(PATIENCE, server_side)
        .await
        .expect("server side finishes")
        .expect("server task");
    assert_eq!(&got, b"ping");
    assert_eq!(client_sans, [format!("URI:{CLIENT_ID}")]);
}
