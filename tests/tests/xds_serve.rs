//! `ambientd serve` as a ztunnel sees it: delta ADS over the same TLS port as the CA, with the bookinfo
//! example, and a push when the config folder changes.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(20);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_gets_bookinfo_over_tls_and_pushes_follow_the_folder() {
    let lab = Lab::new();
    let config_dir = lab.dir.path().join("config");
    copy_dir(&bookinfo(), &config_dir);
    let server = start(lab.config(&config_dir)).await;
    assert!(server.banner.contains("delta ADS"), "{}", server.banner);

    let (channel, _) = channel(server.addr, client_tls(&server.root_pem, None)).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(initial(ADDRESS_TYPE_URL)).await.expect("send");
    tx.send(initial(AUTHORIZATION_TYPE_URL))
        .await
        .expect("send");
    // The ztunnel's own token, as ztunnel sends it on xDS (docs/reference/ztunnel.md#grpc-calls-and-headers).
    let mut responses = client
        .delta_aggregated_resources(with_token(ReceiverStream::new(rx), ZTUNNEL_TOKEN))
        .await
        .expect("stream opens")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(WAIT, responses.next())
            .await
            .expect("a response in time")
            .expect("stream open")
            .expect("no error")
    };

    // One initial response per type, each with everything.
    let mut initial_counts = BTreeMap::new();
    for _ in 0..2 {
        let resp = next().await;
        assert!(resp.removed_resources.is_empty());
        for r in &resp.resources {
            let any = r.resource.as_ref().expect("resource");
            assert!(!r.version.is_empty());
            assert!(!any.value.is_empty());
        }
        initial_counts.insert(resp.type_url.clone(), resp.resources.len());
        tx.send(ack(&resp)).await.expect("ack");
    }
    assert_eq!(
        initial_counts,
        BTreeMap::from([
            (ADDRESS_TYPE_URL.to_string(), 34),
            (AUTHORIZATION_TYPE_URL.to_string(), 1)
        ])
    );

    // A new pod in the folder reaches the connected ztunnel as exactly that workload.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\n  namespace: frontend\nspec:\n  serviceAccountName: sleep\n  containers: []\nstatus:\n  phase: Running\n  podIP: 10.244.0.99\n";
    std::fs::write(config_dir.join("90-extra.yaml"), pod).expect("write");
    let push = next().await;
    assert_eq!(push.type_url, ADDRESS_TYPE_URL);
    let names: Vec<&str> = push.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Kubernetes//Pod/frontend/extra"]);
    tx.send(ack(&push)).await.expect("ack");

    // Deleting the file removes it.
    std::fs::remove_file(config_dir.join("90-extra.yaml")).expect("remove");
    let push = next().await;
    assert_eq!(push.removed_resources, ["Kubernetes//Pod/frontend/extra"]);
    assert!(push.resources.is_empty());

    drop(tx);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plaintext_port_serves_delta_xds_to_authenticated_callers_only() {
    let lab = Lab::new();
    let mut config = lab.config(&bookinfo());
    config.xds_plaintext_addr = Some("127.0.0.1:0".parse().expect("addr"));
    let server = start(config).await;
    let addr = server.xds_plaintext_addr.expect("plaintext listener");
    assert!(
        server.banner.contains(&format!("xds plaintext: {addr}")),
        "{}",
        server.banner
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = AggregatedDiscoveryServiceClient::new(channel);

    // With the ztunnel's token: both initial responses.
    let (tx, rx) = mpsc::channel(8);
    tx.send(initial(ADDRESS_TYPE_URL)).await.expect("send");
    tx.send(initial(AUTHORIZATION_TYPE_URL))
        .await
        .expect("send");
    let mut responses = client
        .delta_aggregated_resources(with_token(ReceiverStream::new(rx), ZTUNNEL_TOKEN))
        .await
        .expect("stream opens")
        .into_inner();
    let mut counts = BTreeMap::new();
    for _ in 0..2 {
        let resp = tokio::time::timeout(WAIT, responses.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("no error");
        counts.insert(resp.type_url.clone(), resp.resources.len());
        tx.send(ack(&resp)).await.expect("ack");
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            (ADDRESS_TYPE_URL.to_string(), 34),
            (AUTHORIZATION_TYPE_URL.to_string(), 1)
        ])
    );

    // Without a token (and no client certificate is possible here): refused.
    let (tx2, rx2) = mpsc::channel(8);
    tx2.send(initial(ADDRESS_TYPE_URL)).await.expect("send");
    let mut refused = client
        .delta_aggregated_resources(ReceiverStream::new(rx2))
        .await
        .expect("stream opens")
        .into_inner();
    let status = tokio::time::timeout(WAIT, responses_end(&mut refused))
        .await
        .expect("in time");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    drop((tx, tx2));
    server.stop().await;
}

async fn responses_end(stream: &mut tonic::Streaming<DeltaDiscoveryResponse>) -> tonic::Status {
    loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(status)) => return status,
            None => panic!("stream ended with OK"),
        }
    }
}
