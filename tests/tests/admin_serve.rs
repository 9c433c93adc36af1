//! The admin API of a running `ambientd serve`, as an operator uses it: proxies connected over real TLS
//! show up in `/debug/connections` and `ambientd zc` with what they ACKed or NACKed, `/debug/sync`
//! follows a resource, and `/metrics` counts the pushes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ambient_control_plane::zc::{self, OutputFormat, ZcArgs, ZcCommand};
use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(20);

/// A ztunnel-like stream: both initial requests sent, responses read one by one.
struct Stream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl Stream {
    async fn open(server: &Running) -> Stream {
        let (channel, _) = channel(server.addr, client_tls(&server.root_pem, None)).await;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        tx.send(initial(ADDRESS_TYPE_URL)).await.expect("send");
        tx.send(initial(AUTHORIZATION_TYPE_URL))
            .await
            .expect("send");
        let responses = client
            .delta_aggregated_resources(with_token(ReceiverStream::new(rx), ZTUNNEL_TOKEN))
            .await
            .expect("stream opens")
            .into_inner();
        Stream { tx, responses }
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.next())
            .await
            .expect("a response in time")
            .expect("stream open")
            .expect("no error")
    }
}

async fn zc_output(admin: SocketAddr, command: ZcCommand, output: OutputFormat) -> String {
    let args = ZcArgs {
        command,
        admin: format!("http://{admin}"),
        namespace: None,
        node: None,
        output,
    };
    let mut out = Vec::new();
    zc::run(args, &mut out).await.expect("zc runs");
    String::from_utf8(out).expect("utf-8")
}

/// One plain HTTP/1.1 GET, the body as text.
async fn get(admin: SocketAddr, path: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut text = String::new();
    conn.read_to_string(&mut text).await.expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of one sample line `name{labels} value` of a Prometheus text document.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_proxies_their_acks_nacks_and_pushes_are_visible() {
    let lab = Lab::new();
    let mut config = lab.config(&bookinfo());
    config.admin_addr = Some("127.0.0.1:0".parse().expect("addr"));
    let server = start(config).await;
    let admin = server.admin_addr.expect("admin listener");
    assert!(
        server
            .banner
            .contains(&format!("admin:         http://{admin}")),
        "{}",
        server.banner
    );
    assert_eq!(get(admin, "/ready").await.trim(), "ready");

    // One ztunnel ACKs both initial responses; a second NACKs its addresses.
    let mut good = Stream::open(&server).await;
    let mut acked = Vec::new();
    for _ in 0..2 {
        let r = good.next().await;
        good.tx.send(ack(&r)).await.expect("ack");
        acked.push(r);
    }
    let mut bad = Stream::open(&server).await;
    let mut nacked = None;
    for _ in 0..2 {
        let r = bad.next().await;
        if r.type_url == ADDRESS_TYPE_URL {
            let mut nack = ack(&r);
            nack.error_detail = Some(RpcStatus {
                code: 0,
                message: "Kubernetes//Pod/backend/details-v1-558d6b8747-fd6nx: invalid IP length 3"
                    .into(),
                details: Vec::new(),
            });
            bad.tx.send(nack).await.expect("nack");
            nacked = Some(r);
        } else {
            bad.tx.send(ack(&r)).await.expect("ack");
        }
    }
    let nacked = nacked.expect("an address response");

    // The server handles ACKs on the streams' own tasks: ask until both show up.
    let connections = eventually("both streams answered", || async {
        let json = zc_output(admin, ZcCommand::Connections, OutputFormat::Json).await;
        let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
        let conns = doc["connections"].as_array().cloned().unwrap_or_default();
        let answered = conns.iter().filter(|c| {
            c["types"].as_array().is_some_and(|ts| {
                ts.iter()
                    .all(|t| t["lastAckedNonce"].is_string() || t["lastNack"].is_object())
            })
        });
        (answered.count() == 2).then_some(conns)
    })
    .await;
    let address = |c: &serde_json::Value| -> serde_json::Value {
        c["types"]
            .as_array()
            .and_then(|ts| {
                ts.iter()
                    .find(|t| t["typeUrl"] == ADDRESS_TYPE_URL)
                    .cloned()
            })
            .expect("address type")
    };
    let good_address = acked
        .iter()
        .find(|r| r.type_url == ADDRESS_TYPE_URL)
        .expect("address");
    assert_eq!(
        address(&connections[0])["lastAckedNonce"],
        good_address.nonce.as_str()
    );
    assert_eq!(address(&connections[0])["resourcesSent"], 34);
    assert_eq!(
        address(&connections[1])["lastNack"]["nonce"],
        nacked.nonce.as_str()
    );
    for c in &connections {
        assert_eq!(c["proxyType"], "ztunnel");
        assert!(
            c["nodeId"]
                .as_str()
                .is_some_and(|n| n.starts_with("ztunnel~")),
            "{c}"
        );
    }

    // The table shows both, the NACK with its message.
    let table = zc_output(admin, ZcCommand::Connections, OutputFormat::Table).await;
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains(" 2/2 ") && rows[0].ends_with(" -"),
        "{table}"
    );
    assert!(
        rows[1].contains(" 1/2 ") && rows[1].contains("Address: Kubernetes//Pod"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");

    // Sync of the NACKed workload: held by the first proxy only.
    let json = zc_output(
        admin,
        ZcCommand::Sync {
            name: "Kubernetes//Pod/backend/details-v1-558d6b8747-fd6nx".into(),
            type_: None,
        },
        OutputFormat::Json,
    )
    .await;
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    let statuses: Vec<&str> = doc["proxies"]
        .as_array()
        .expect("proxies")
        .iter()
        .map(|p| p["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["SYNCED", "STALE"], "{doc}");
    assert_eq!(doc["proxies"][0]["ackedVersion"], doc["version"], "{doc}");

    // Pushes are counted by type.
    let metrics = get(admin, "/metrics").await;
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    let pushes = |t: &str| {
        sample(
            &metrics,
            &format!("ambientd_xds_pushes_total{{type=\"{t}\"}}"),
        )
    };
    assert_eq!(pushes("istio.workload.Address"), Some(2.0), "{metrics}");
    assert_eq!(
        pushes("istio.security.Authorization"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "ambientd_xds_nacks_total{type=\"istio.workload.Address\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "ambientd_xds_connected_proxies{proxy=\"ztunnel\"}"
        ),
        Some(2.0),
        "{metrics}"
    );

    drop((good, bad));
    server.stop().await;
}
