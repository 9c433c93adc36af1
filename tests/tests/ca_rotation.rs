//! The serving certificate renews in place: a gRPC connection opened before a renewal keeps working on
//! the same TCP connection, and new handshakes get the new certificate.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificate_renews_without_dropping_connections() {
    let lab = Lab::new();
    let mut cfg = lab.config(&bookinfo());
    // Renewal is due when a third of the lifetime is left: about 2 s after issue.
    cfg.serving_cert_ttl = Duration::from_secs(3);
    cfg.serving_renew_interval = Duration::from_millis(100);
    let server = start(cfg).await;
    let tls = client_tls(&server.root_pem, None);

    let (ch, connects) = channel(server.addr, tls.clone()).await;
    let mut client = ca_client(ch);
    let request = || csr_request(ztunnel_csr(DETAILS_ID), Some(DETAILS_TOKEN), None);
    client
        .create_certificate(request())
        .await
        .expect("issued before the renewal");

    let serial_of = |conn: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        serial(conn.get_ref().1.peer_certificates().expect("server chain")[0].as_ref())
    };
    let first = serial_of(
        &handshake(server.addr, tls.clone())
            .await
            .expect("handshake"),
    );
    assert_eq!(
        first,
        serial(server.serving.current_chain()[0].as_ref()),
        "handshakes get the current certificate"
    );

    let renewed = eventually("a handshake with the renewed certificate", || {
        let tls = tls.clone();
        let first = first.clone();
        async move {
            let conn = handshake(server.addr, tls).await.ok()?;
            let s = serial_of(&conn);
            (s != first).then_some(s)
        }
    })
    .await;
    assert_eq!(renewed, serial(server.serving.current_chain()[0].as_ref()));

    client
        .create_certificate(request())
        .await
        .expect("the connection from before the renewal still serves calls");
    assert_eq!(
        connects.load(Ordering::SeqCst),
        1,
        "no reconnect: the same TLS connection carried both calls"
    );
    server.stop().await;
}
