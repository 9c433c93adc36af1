//! Delta ADS (`ambient_control_plane::xds`) over a real tonic server on 127.0.0.1, with a tonic client that
//! behaves like ztunnel: one initial request per type with the node
//! (docs/reference/ztunnel.md#delta-xds-the-initial-request), then exactly one ACK or NACK per response
//! (docs/reference/ztunnel.md#delta-xds-ack-and-nack).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambient_control_plane::shared_index::{DEFAULT_CHANGE_LOG, SharedIndex};
use ambient_control_plane::source::Event;
use ambient_control_plane::xds::{Notifier, XdsConfig, XdsRegistry, XdsServer};
use ambient_index::Index;
use ambient_index::model::{Kind, Object, ObjectRef};
use ambient_index::testing::*;
use ambient_proto::security::Authorization;
use ambient_proto::workload::{Address, address};
use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(5);
const NODE_ID: &str = "ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local";

// ---- harness ------------------------------------------------------------------------------------

/// A server over an index, listening on 127.0.0.1.
struct Harness {
    index: Arc<SharedIndex>,
    notifier: Notifier,
    registry: Arc<XdsRegistry>,
    addr: SocketAddr,
}

impl Harness {
    async fn start(objects: Vec<Object>) -> Harness {
        Harness::start_with(objects, XdsConfig::default()).await
    }

    async fn start_with(objects: Vec<Object>, config: XdsConfig) -> Harness {
        Harness::start_with_log(objects, config, DEFAULT_CHANGE_LOG).await
    }

    /// A server whose index keeps `change_log` change reports for slow connections.
    async fn start_with_log(objects: Vec<Object>, config: XdsConfig, change_log: usize) -> Harness {
        let mut all = vec![test_system_namespace()];
        all.extend(objects);
        let index = SharedIndex::with_change_log(Index::build(test_settings(), all), change_log);
        let (server, notifier) = XdsServer::with_config(index.clone(), config);
        let registry = server.registry();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Harness {
            index,
            notifier,
            registry,
            addr,
        }
    }

    /// Applies `obj` to the index, which tells the server's connections, as the event loop of `serve` does.
    fn apply(&self, obj: Object) {
        self.index.apply(vec![Event::Apply(obj)]).unwrap();
    }

    fn delete(&self, obj: &ObjectRef) {
        self.index.apply(vec![Event::Delete(obj.clone())]).unwrap();
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Opens a delta stream without sending anything.
    async fn open(&self) -> Ztunnel {
        self.open_with_token(None).await
    }

    /// Opens a delta stream with `authorization: Bearer <token>`, as ztunnel does when it has a token.
    async fn open_with_token(&self, token: Option<&str>) -> Ztunnel {
        let (tx, rx) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let responses = self
            .client()
            .await
            .delta_aggregated_resources(request)
            .await
            .unwrap()
            .into_inner();
        Ztunnel { tx, responses }
    }

    /// Opens a stream and subscribes to both types as ztunnel does, with the versions it holds.
    async fn connect(&self, versions: &[(&str, &str)]) -> Ztunnel {
        let zt = self.open().await;
        let versions: HashMap<String, String> = versions
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        zt.subscribe(ADDRESS_TYPE_URL, versions).await;
        zt.subscribe(AUTHORIZATION_TYPE_URL, HashMap::new()).await;
        zt
    }
}

/// The client side of one stream.
struct Ztunnel {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
}

impl Ztunnel {
    async fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx.send(request).await.unwrap();
    }

    async fn subscribe(&self, type_url: &str, versions: HashMap<String, String>) {
        self.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: NODE_ID.to_string(),
                ..Default::default()
            }),
            type_url: type_url.to_string(),
            initial_resource_versions: versions,
            ..Default::default()
        })
        .await;
    }

    async fn subscribe_as(&self, type_url: &str, node: Option<Node>) {
        self.send(DeltaDiscoveryRequest {
            node,
            type_url: type_url.to_string(),
            ..Default::default()
        })
        .await;
    }

    /// The status the stream ended with.
    async fn ended(&mut self) -> tonic::Status {
        loop {
            match tokio::time::timeout(WAIT, self.responses.message())
                .await
                .expect("stream did not end in time")
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended with OK"),
                Err(status) => return status,
            }
        }
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("no response in time")
            .expect("stream failed")
            .expect("stream ended")
    }

    /// The next response, ACKed.
    async fn recv_ack(&mut self) -> DeltaDiscoveryResponse {
        let response = self.recv().await;
        self.ack(&response).await;
        response
    }

    /// Both initial responses, with the Authorization one ACKed and the Address one returned unanswered
    /// (the stream then has a response outstanding for addresses).
    async fn initial_holding_addresses(&mut self) -> DeltaDiscoveryResponse {
        let mut address = None;
        for _ in 0..2 {
            let response = self.recv().await;
            if response.type_url == ADDRESS_TYPE_URL {
                address = Some(response);
            } else {
                self.ack(&response).await;
            }
        }
        address.expect("an initial Address response")
    }

    /// The answers to both initial requests, by type URL, ACKed.
    async fn initial(&mut self) -> BTreeMap<String, DeltaDiscoveryResponse> {
        let mut got = BTreeMap::new();
        for _ in 0..2 {
            let response = self.recv_ack().await;
            got.insert(response.type_url.clone(), response);
        }
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            [AUTHORIZATION_TYPE_URL, ADDRESS_TYPE_URL]
        );
        got
    }

    async fn ack(&self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    async fn nack(&self, response: &DeltaDiscoveryResponse, message: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 0,
                message: message.to_string(),
                details: Vec::new(),
            }),
            ..Default::default()
        })
        .await;
    }
}

fn uid(ns: &str, name: &str) -> String {
    format!("cluster0//Pod/{ns}/{name}")
}

fn app_pod(name: &str, ip: &str) -> Object {
    pod("ns", name).ip(ip).ready().label("app", "a").build()
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    let mut names: Vec<&str> = response.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    names
}

fn removed(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    let mut names: Vec<&str> = response
        .removed_resources
        .iter()
        .map(String::as_str)
        .collect();
    names.sort();
    names
}

fn version_of(h: &Harness, name: &str) -> String {
    h.index
        .read()
        .unwrap()
        .address(name)
        .unwrap()
        .version_string()
}

// ---- tests --------------------------------------------------------------------------------------

#[tokio::test]
async fn initial_responses_for_both_types_even_when_empty() {
    let h = Harness::start(vec![]).await;
    let mut zt = h.connect(&[]).await;
    let got = zt.initial().await;
    for response in got.values() {
        assert!(response.resources.is_empty(), "{response:?}");
        assert!(response.removed_resources.is_empty(), "{response:?}");
        assert!(!response.nonce.is_empty());
    }
    assert_ne!(
        got[ADDRESS_TYPE_URL].nonce,
        got[AUTHORIZATION_TYPE_URL].nonce
    );
}

#[tokio::test]
async fn initial_resources_decode_as_addresses() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), app_pod("p2", "10.0.0.2")]).await;
    let mut zt = h.connect(&[]).await;
    let got = zt.initial().await;
    let response = &got[ADDRESS_TYPE_URL];
    assert_eq!(names(response), [uid("ns", "p1"), uid("ns", "p2")]);
    for resource in &response.resources {
        assert_eq!(resource.version, version_of(&h, &resource.name));
        let any = resource.resource.as_ref().unwrap();
        assert_eq!(any.type_url, ADDRESS_TYPE_URL);
        let address = Address::decode(any.value.as_slice()).unwrap();
        match address.r#type {
            Some(address::Type::Workload(w)) => assert_eq!(w.uid, resource.name),
            other => panic!("not a workload: {other:?}"),
        }
    }
}

#[tokio::test]
async fn index_change_pushes_exactly_that_name() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1")]).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;

    h.apply(app_pod("p2", "10.0.0.2"));
    let push = zt.recv_ack().await;
    assert_eq!(push.type_url, ADDRESS_TYPE_URL);
    assert_eq!(names(&push), [uid("ns", "p2")]);
    assert!(push.removed_resources.is_empty());

    // A changed pod is sent again, alone, with its new version.
    h.apply(
        pod("ns", "p1")
            .ip("10.0.0.1")
            .ready()
            .label("app", "b")
            .build(),
    );
    let push = zt.recv_ack().await;
    assert_eq!(names(&push), [uid("ns", "p1")]);
    assert_eq!(push.resources[0].version, version_of(&h, &uid("ns", "p1")));
}

#[tokio::test]
async fn delete_sends_removed_resources() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), app_pod("p2", "10.0.0.2")]).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;

    h.delete(&ObjectRef::new(Kind::Pod, "ns", "p1"));
    let push = zt.recv_ack().await;
    assert_eq!(push.type_url, ADDRESS_TYPE_URL);
    assert!(push.resources.is_empty(), "{push:?}");
    assert_eq!(removed(&push), [uid("ns", "p1")]);
}

#[tokio::test]
async fn reconnect_skips_equal_versions_and_removes_vanished_names() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), app_pod("p2", "10.0.0.2")]).await;
    let p1 = uid("ns", "p1");
    let p2 = uid("ns", "p2");
    let v1 = version_of(&h, &p1);
    let v2 = version_of(&h, &p2);

    // While ztunnel is away: p2 goes, p3 comes.
    h.delete(&ObjectRef::new(Kind::Pod, "ns", "p2"));
    h.apply(app_pod("p3", "10.0.0.3"));

    let mut zt = h
        .connect(&[
            (p1.as_str(), v1.as_str()),
            (p2.as_str(), v2.as_str()),
            ("ns/gone.ns.svc.domain.suffix", "0000000000000001"),
        ])
        .await;
    let got = zt.initial().await;
    let response = &got[ADDRESS_TYPE_URL];
    assert_eq!(names(response), [uid("ns", "p3")]);
    assert_eq!(
        removed(response),
        [p2.as_str(), "ns/gone.ns.svc.domain.suffix"]
    );

    // A stale version is replaced.
    let mut zt = h.connect(&[(p1.as_str(), "0123456789abcdef")]).await;
    let got = zt.initial().await;
    assert_eq!(
        names(&got[ADDRESS_TYPE_URL]),
        [p1.as_str(), &uid("ns", "p3")]
    );
    assert!(got[ADDRESS_TYPE_URL].removed_resources.is_empty());
}

#[tokio::test]
async fn nack_is_not_followed_by_a_resend() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1")]).await;
    let mut zt = h.connect(&[]).await;
    let mut first = Vec::new();
    for _ in 0..2 {
        let response = zt.recv().await;
        if response.type_url == ADDRESS_TYPE_URL {
            zt.nack(&response, &format!("{}: rejected", uid("ns", "p1")))
                .await;
        } else {
            zt.ack(&response).await;
        }
        first.push(response);
    }
    assert!(first.iter().any(|r| names(r) == [uid("ns", "p1")]));

    // The next Address response carries only the new pod, not the NACKed content again.
    h.apply(app_pod("p2", "10.0.0.2"));
    let push = zt.recv_ack().await;
    assert_eq!(push.type_url, ADDRESS_TYPE_URL);
    assert_eq!(names(&push), [uid("ns", "p2")]);
    assert_eq!(h.notifier.nack_count(), 1);
}

#[tokio::test]
async fn changes_while_unacknowledged_coalesce() {
    let h = Harness::start(vec![]).await;
    let mut zt = h.connect(&[]).await;
    let address = zt.initial_holding_addresses().await;
    h.apply(app_pod("p1", "10.0.0.1"));
    h.apply(app_pod("p2", "10.0.0.2"));
    h.apply(app_pod("p3", "10.0.0.3"));
    h.delete(&ObjectRef::new(Kind::Pod, "ns", "p3"));
    zt.ack(&address).await;

    let push = zt.recv_ack().await;
    assert_eq!(names(&push), [uid("ns", "p1"), uid("ns", "p2")]);
    // p3 came and went before anything was sent: nothing to remove.
    assert!(push.removed_resources.is_empty(), "{push:?}");
}

#[tokio::test]
async fn authorization_policies_are_pushed_and_removed() {
    let h = Harness::start(vec![]).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;

    h.apply(authorization_policy("ns1", "allow").build());
    let push = zt.recv_ack().await;
    assert_eq!(push.type_url, AUTHORIZATION_TYPE_URL);
    assert_eq!(names(&push), ["ns1/allow"]);
    let resource = &push.resources[0];
    let any = resource.resource.as_ref().unwrap();
    assert_eq!(any.type_url, AUTHORIZATION_TYPE_URL);
    let authorization = Authorization::decode(any.value.as_slice()).unwrap();
    assert_eq!(
        (
            authorization.namespace.as_str(),
            authorization.name.as_str()
        ),
        ("ns1", "allow")
    );
    assert_eq!(
        resource.version,
        h.index
            .read()
            .unwrap()
            .authorization("ns1/allow")
            .unwrap()
            .version_string()
    );

    h.delete(&ObjectRef::new(Kind::AuthorizationPolicy, "ns1", "allow"));
    let push = zt.recv_ack().await;
    assert_eq!(push.type_url, AUTHORIZATION_TYPE_URL);
    assert!(push.resources.is_empty(), "{push:?}");
    assert_eq!(removed(&push), ["ns1/allow"]);
}

#[tokio::test]
async fn unknown_type_gets_an_empty_response() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1")]).await;
    let mut zt = h.open().await;
    let unknown = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    zt.subscribe(unknown, HashMap::new()).await;
    let response = zt.recv_ack().await;
    assert_eq!(response.type_url, unknown);
    assert!(response.resources.is_empty());
    assert!(response.removed_resources.is_empty());
    assert!(!response.nonce.is_empty());

    // The stream still serves the real types afterwards (a ztunnel's addresses wait for its policy
    // subscription; policies go first).
    zt.subscribe(ADDRESS_TYPE_URL, HashMap::new()).await;
    zt.subscribe(AUTHORIZATION_TYPE_URL, HashMap::new()).await;
    let response = zt.recv_ack().await;
    assert_eq!(response.type_url, AUTHORIZATION_TYPE_URL);
    let response = zt.recv_ack().await;
    assert_eq!(response.type_url, ADDRESS_TYPE_URL);
    assert_eq!(names(&response), [uid("ns", "p1")]);
}

#[tokio::test]
async fn state_of_the_world_is_unimplemented() {
    let h = Harness::start(vec![]).await;
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let result = h
        .client()
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await;
    drop(tx);
    let status = result.expect_err("SotW must be refused");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("delta"), "{status:?}");
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable() {
    let h = Harness::start(vec![]).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;
    h.notifier.shutdown();
    let status = tokio::time::timeout(WAIT, zt.responses.message())
        .await
        .expect("stream did not end in time")
        .expect_err("stream must end with an error");
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_ztunnels_first_addresses_follow_its_policies() {
    let policy = authorization_policy("ns", "allow-a")
        .selector("app", "a")
        .build();
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), policy]).await;
    let mut zt = h.connect(&[]).await;
    // Address was subscribed first, but the workload names ns/allow-a: the policy goes first.
    let first = zt.recv_ack().await;
    assert_eq!(first.type_url, AUTHORIZATION_TYPE_URL);
    assert_eq!(names(&first), ["ns/allow-a"]);
    let second = zt.recv_ack().await;
    assert_eq!(second.type_url, ADDRESS_TYPE_URL);
    assert_eq!(names(&second), [uid("ns", "p1")]);
}

#[tokio::test]
async fn addresses_wait_for_the_policies_they_name() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1")]).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;
    // One step adds a policy and attaches it to p1: the policy is sent, and p1 only after its ACK.
    h.apply(
        authorization_policy("ns", "allow-a")
            .selector("app", "a")
            .build(),
    );
    let policy = zt.recv().await;
    assert_eq!(policy.type_url, AUTHORIZATION_TYPE_URL);
    assert_eq!(names(&policy), ["ns/allow-a"]);
    zt.ack(&policy).await;
    let workload = zt.recv_ack().await;
    assert_eq!(workload.type_url, ADDRESS_TYPE_URL);
    assert_eq!(names(&workload), [uid("ns", "p1")]);
}

#[tokio::test]
async fn a_name_added_and_changed_while_busy_is_sent_once_at_its_latest_version() {
    let h = Harness::start(vec![]).await;
    let mut zt = h.connect(&[]).await;
    let address = zt.initial_holding_addresses().await;
    h.apply(app_pod("p1", "10.0.0.1"));
    h.apply(
        pod("ns", "p1")
            .ip("10.0.0.1")
            .ready()
            .label("app", "b")
            .build(),
    );
    // Added, then changed: one resource at its latest version.
    zt.ack(&address).await;
    let push = zt.recv_ack().await;
    assert_eq!(names(&push), [uid("ns", "p1")]);
    assert_eq!(push.resources[0].version, version_of(&h, &uid("ns", "p1")));
    assert!(push.removed_resources.is_empty(), "{push:?}");
}

fn token_config(dir: &tempfile::TempDir) -> XdsConfig {
    let path = dir.path().join("tokens.yaml");
    std::fs::write(
        &path,
        "zt-token: {namespace: istio-system, serviceAccount: ztunnel, node: node-1}\n\
         app-token: {namespace: ns, serviceAccount: app}\n",
    )
    .unwrap();
    let tokens = ambient_ca::TokenFileAuthenticator::from_file(&path, "cluster.local").unwrap();
    let authenticators: Vec<Arc<dyn ambient_ca::Authenticator>> = vec![Arc::new(tokens)];
    XdsConfig {
        authenticators: Some(authenticators.into()),
        ..XdsConfig::default()
    }
}

#[tokio::test]
async fn an_authenticated_ztunnel_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(vec![app_pod("p1", "10.0.0.1")], token_config(&dir)).await;
    let mut zt = h.open_with_token(Some("zt-token")).await;
    zt.subscribe(ADDRESS_TYPE_URL, HashMap::new()).await;
    zt.subscribe(AUTHORIZATION_TYPE_URL, HashMap::new()).await;
    let got = zt.initial().await;
    assert_eq!(names(&got[ADDRESS_TYPE_URL]), [uid("ns", "p1")]);
}

#[tokio::test]
async fn callers_without_a_known_token_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(vec![], token_config(&dir)).await;
    for token in [None, Some("nope")] {
        let mut zt = h.open_with_token(token).await;
        zt.subscribe(ADDRESS_TYPE_URL, HashMap::new()).await;
        let status = zt.ended().await;
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        assert_eq!(status.message(), "request authenticate failure");
    }
}

#[tokio::test]
async fn a_caller_may_not_speak_for_another_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(vec![], token_config(&dir)).await;
    // An application's token, presented for the ztunnel in istio-system.
    let mut zt = h.open_with_token(Some("app-token")).await;
    zt.subscribe(ADDRESS_TYPE_URL, HashMap::new()).await;
    let status = zt.ended().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("spiffe://cluster.local/ns/ns/sa/app")
            && status.message().contains("\"istio-system\""),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_stream_without_a_usable_node_is_refused() {
    let h = Harness::start(vec![]).await;
    let cases = [
        (None, "must carry the node"),
        (
            Some(Node {
                id: "just-a-name".to_string(),
                ..Default::default()
            }),
            "exactly four parts",
        ),
        (
            Some(Node {
                id: "ztunnel~ten~zt.istio-system~istio-system.svc.cluster.local".to_string(),
                ..Default::default()
            }),
            "IP address",
        ),
    ];
    for (node, why) in cases {
        let mut zt = h.open().await;
        zt.subscribe_as(ADDRESS_TYPE_URL, node.clone()).await;
        let status = zt.ended().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{node:?}: {status:?}");
        assert!(status.message().contains(why), "{node:?}: {status:?}");
    }
}

#[tokio::test]
async fn streams_end_with_unavailable_at_their_maximum_age() {
    let config = XdsConfig {
        max_connection_age: Some(Duration::from_millis(200)),
        ..XdsConfig::default()
    };
    let h = Harness::start_with(vec![], config).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;
    let status = zt.ended().await;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("maximum connection age"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_stream_that_falls_behind_the_change_log_is_ended_and_resyncs_on_reconnect() {
    let h = Harness::start_with_log(vec![], XdsConfig::default(), 2).await;
    let mut zt = h.connect(&[]).await;
    zt.initial().await;
    // The test runtime has one thread: the connection's task cannot read the log while these run.
    for i in 0..64 {
        h.apply(app_pod(&format!("p{i}"), &format!("10.0.1.{i}")));
    }
    // The stream carried at most a few pushes before it was told to reconnect.
    let status = zt.ended().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("fell too far behind"),
        "{status:?}"
    );

    // Reconnecting with what it holds (nothing) is compared afresh: all 64 pods arrive.
    let mut zt = h.connect(&[]).await;
    let got = zt.initial().await;
    assert_eq!(got[ADDRESS_TYPE_URL].resources.len(), 64);
}

// ---- what the admin API sees -------------------------------------------------------------------

#[tokio::test]
async fn the_registry_shows_each_stream_with_what_it_was_sent_and_acked() {
    use ambient_control_plane::connections::ConnectionRegistry;
    let policy = authorization_policy("ns", "allow-a")
        .selector("app", "a")
        .build();
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), policy]).await;
    let registry = h.registry.clone();
    assert!(registry.connections().is_empty());

    let mut zt = h.connect(&[]).await;
    let first = zt.recv_ack().await; // Authorization
    let second = zt.recv().await; // Address, not yet ACKed
    assert_eq!(second.type_url, ADDRESS_TYPE_URL);

    let p1 = uid("ns", "p1");
    let current = version_of(&h, &p1);
    let sync = registry.sync(ADDRESS_TYPE_URL, &p1);
    assert_eq!(sync.len(), 1);
    assert_eq!(sync[0].node_id, NODE_ID);
    assert_eq!(sync[0].sent_version.as_deref(), Some(current.as_str()));
    assert_eq!(sync[0].acked_version, None, "not ACKed yet");

    zt.ack(&second).await;
    // The ACK is handled by the stream's task: wait for the registry to show it.
    let acked = wait_for(|| {
        registry.sync(ADDRESS_TYPE_URL, &p1)[0]
            .acked_version
            .clone()
    })
    .await;
    assert_eq!(acked, current);

    let conns = registry.connections();
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!(
        (c.node_id.as_str(), c.proxy_type.as_str()),
        (NODE_ID, "ztunnel")
    );
    let by_type: BTreeMap<&str, _> = c.types.iter().map(|t| (t.type_url.as_str(), t)).collect();
    let address = by_type[ADDRESS_TYPE_URL];
    assert!(address.subscribed);
    assert_eq!(address.resources_sent, 1);
    assert_eq!(
        address.last_sent_nonce.as_deref(),
        Some(second.nonce.as_str())
    );
    assert_eq!(
        address.last_acked_nonce.as_deref(),
        Some(second.nonce.as_str())
    );
    let authorization = by_type[AUTHORIZATION_TYPE_URL];
    assert_eq!(
        authorization.last_acked_nonce.as_deref(),
        Some(first.nonce.as_str())
    );
    assert_eq!(authorization.last_nack, None);

    // A NACK is shown with its message, and the rejected name is not counted as held.
    h.apply(app_pod("p2", "10.0.0.2"));
    let push = zt.recv().await;
    let p2 = uid("ns", "p2");
    zt.nack(&push, &format!("{p2}: invalid IP length 3")).await;
    let nack = wait_for(|| {
        registry.connections()[0]
            .types
            .iter()
            .find(|t| t.type_url == ADDRESS_TYPE_URL)
            .and_then(|t| t.last_nack.clone())
    })
    .await;
    assert_eq!(nack.nonce, push.nonce);
    assert_eq!(nack.message, format!("{p2}: invalid IP length 3"));
    assert_eq!(registry.sync(ADDRESS_TYPE_URL, &p2)[0].acked_version, None);
    // ... while p1, unchanged, still is.
    assert_eq!(
        registry.sync(ADDRESS_TYPE_URL, &p1)[0]
            .acked_version
            .as_deref(),
        Some(current.as_str())
    );

    drop(zt);
    wait_for(|| registry.connections().is_empty().then_some(())).await;
}

/// Polls `probe` until it yields a value; the stream tasks update the registry asynchronously and
/// nothing else signals it.
async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn initial_syncs_take_turns_when_the_limit_is_reached() {
    use ambient_control_plane::connections::ConnectionRegistry;
    let config = XdsConfig {
        concurrent_initial_syncs: 1,
        ..XdsConfig::default()
    };
    let h = Harness::start_with(vec![app_pod("p1", "10.0.0.1")], config).await;
    let mut first = h.connect(&[]).await;
    let auth = first.recv_ack().await;
    assert_eq!(auth.type_url, AUTHORIZATION_TYPE_URL);
    let addresses = first.recv().await; // not ACKed yet: the first stream still holds the only turn

    let mut second = h.connect(&[]).await;
    let subscribed = |r: &Arc<XdsRegistry>| {
        r.connections().iter().any(|c| {
            c.id != 1
                && c.types.iter().all(|t| t.subscribed)
                && c.types.iter().all(|t| t.last_sent_nonce.is_none())
        })
    };
    wait_for(|| subscribed(&h.registry).then_some(())).await;

    // The first stream's ACK ends its initial sync; the second gets its responses.
    first.ack(&addresses).await;
    let got = second.initial().await;
    assert_eq!(names(&got[ADDRESS_TYPE_URL]), [uid("ns", "p1")]);
}

// ---- on-demand addresses (XDS_ON_DEMAND=true, docs/reference/ztunnel.md#delta-xds-on-demand-addresses)
// ----------------------------------

impl Ztunnel {
    /// ztunnel's on-demand start: Address subscribed to `*` and unsubscribed at once, then Authorization.
    /// With the keys it holds (`initial_resource_versions`; `""` for a key still waiting).
    async fn connect_on_demand(h: &Harness, held: HashMap<String, String>) -> Ztunnel {
        let zt = h.open().await;
        zt.send(DeltaDiscoveryRequest {
            initial_resource_versions: held,
            node: Some(Node {
                id: NODE_ID.to_string(),
                ..Default::default()
            }),
            type_url: ADDRESS_TYPE_URL.to_string(),
            resource_names_subscribe: vec!["*".to_string()],
            resource_names_unsubscribe: vec!["*".to_string()],
            ..Default::default()
        })
        .await;
        zt.subscribe(AUTHORIZATION_TYPE_URL, HashMap::new()).await;
        zt
    }

    /// An on-demand request: no node, no nonce, one key.
    async fn ask(&self, key: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: ADDRESS_TYPE_URL.to_string(),
            resource_names_subscribe: vec![key.to_string()],
            ..Default::default()
        })
        .await;
    }
}

/// ztunnel's `network/ip` key, in the test cluster's network.
fn ip_key(ip: &str) -> String {
    format!("{TEST_NETWORK}/{ip}")
}

#[tokio::test]
async fn on_demand_keys_are_answered_under_the_key_itself() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1"), app_pod("p2", "10.0.0.2")]).await;
    let mut zt = Ztunnel::connect_on_demand(&h, HashMap::new()).await;
    let got = zt.initial().await;
    // Nothing until asked.
    assert!(got[ADDRESS_TYPE_URL].resources.is_empty());

    // A uid.
    zt.ask(&uid("ns", "p1")).await;
    let r = zt.recv_ack().await;
    assert_eq!(names(&r), [uid("ns", "p1")]);
    assert_eq!(r.resources[0].version, version_of(&h, &uid("ns", "p1")));

    // An IP: the workload, under the key.
    zt.ask(&ip_key("10.0.0.2")).await;
    let r = zt.recv_ack().await;
    assert_eq!(names(&r), [ip_key("10.0.0.2")]);
    let any = r.resources[0].resource.as_ref().unwrap();
    match Address::decode(any.value.as_slice()).unwrap().r#type {
        Some(address::Type::Workload(w)) => assert_eq!(w.uid, uid("ns", "p2")),
        other => panic!("not the workload: {other:?}"),
    }

    // Nothing there: answered as removed, so that ztunnel stops waiting.
    zt.ask(&ip_key("10.9.9.9")).await;
    let r = zt.recv_ack().await;
    assert!(r.resources.is_empty(), "{r:?}");
    assert_eq!(removed(&r), [ip_key("10.9.9.9")]);

    // Later changes reach the keys that name them, and only those.
    h.apply(app_pod("p3", "10.9.9.9"));
    let r = zt.recv_ack().await;
    assert_eq!(names(&r), [ip_key("10.9.9.9")]);
    h.apply(
        pod("ns", "p2")
            .ip("10.0.0.2")
            .ready()
            .label("app", "b")
            .build(),
    );
    let r = zt.recv_ack().await;
    assert_eq!(names(&r), [ip_key("10.0.0.2")]);
    h.delete(&ObjectRef::new(Kind::Pod, "ns", "p1"));
    let r = zt.recv_ack().await;
    assert!(r.resources.is_empty(), "{r:?}");
    assert_eq!(removed(&r), [uid("ns", "p1")]);
}

#[tokio::test]
async fn on_demand_reconnect_answers_the_keys_held() {
    let h = Harness::start(vec![app_pod("p1", "10.0.0.1")]).await;
    let held_version = version_of(&h, &uid("ns", "p1"));
    // While away: p1 is gone; the client holds p1 and still waits for the key of 10.0.0.7.
    h.delete(&ObjectRef::new(Kind::Pod, "ns", "p1"));
    h.apply(app_pod("p7", "10.0.0.7"));

    let held = HashMap::from([
        (uid("ns", "p1"), held_version),
        (ip_key("10.0.0.7"), String::new()),
    ]);
    let mut zt = Ztunnel::connect_on_demand(&h, held).await;
    let got = zt.initial().await;
    let r = &got[ADDRESS_TYPE_URL];
    assert_eq!(names(r), [ip_key("10.0.0.7")]);
    assert_eq!(removed(r), [uid("ns", "p1")]);
}
