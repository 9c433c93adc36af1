//! The CA's side of the cluster against the fake API server: the TokenReview authenticator (istiod's
//! rules, the pod and node, the cache), the CA keys from Secrets `cacerts` / `istio-ca-secret` (created
//! once, reused, a lost create race reads the winner's), and the root bundle ConfigMap in every
//! namespace (new namespaces, a changed root, only while leader).

mod support;

use std::sync::Arc;

use ambient_ca::{AuthError, Authenticator, Caller, CertificateAuthority, Identity, RequestInfo};
use ambient_control_plane::cluster::ca_secret::{self, CaOrigin};
use ambient_control_plane::cluster::root_cert::{
    PublisherState, ROOT_CERT_CONFIGMAP, ROOT_CERT_KEY, RootCertConfig, RootCertPublisher,
};
use ambient_control_plane::cluster::tokenreview::{
    PodFacts, TokenReviewAuthenticator, TokenReviewConfig,
};
use hyper::Method;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::kube_api::{FakeKubeApi, Recorded, Reply, ResourceType};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

const TOKENREVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

fn secrets() -> ResourceType {
    ResourceType::new("", "v1", "secrets", "Secret", true)
}

fn configmaps() -> ResourceType {
    ResourceType::new("", "v1", "configmaps", "ConfigMap", true)
}

/// The API server's answers: `zt` (a bound ztunnel token, pod only), `zt-node` (with the node),
/// `alice` (a user, not a service account); anything else is not authenticated. Every token has the
/// audience `istio-ca` only.
fn review(req: &Recorded) -> Reply {
    let token = req.body["spec"]["token"].as_str().unwrap_or("");
    let asked: Vec<String> = req.body["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let status = if !asked.iter().any(|a| a == "istio-ca") {
        json!({"authenticated": false, "error": "token audiences [\"istio-ca\"] is invalid for the target audiences"})
    } else {
        let mut extra = json!({
            "authentication.kubernetes.io/pod-name": ["ztunnel-abc"],
            "authentication.kubernetes.io/pod-uid": ["uid-zt"],
        });
        let sa = json!({
            "username": "system:serviceaccount:istio-system:ztunnel",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:istio-system", "system:authenticated"],
        });
        match token {
            "zt" => {
                let mut user = sa;
                user["extra"] = extra;
                json!({"authenticated": true, "audiences": ["istio-ca"], "user": user})
            }
            "zt-node" => {
                extra["authentication.kubernetes.io/node-name"] = json!(["node-b"]);
                let mut user = sa;
                user["extra"] = extra;
                json!({"authenticated": true, "audiences": ["istio-ca"], "user": user})
            }
            "alice" => json!({"authenticated": true, "audiences": ["istio-ca"],
                "user": {"username": "alice", "groups": ["system:authenticated"]}}),
            _ => json!({"authenticated": false, "error": "invalid bearer token"}),
        }
    };
    Reply::json(
        201,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {}, "spec": req.body["spec"].clone(), "status": status}),
    )
}

async fn fake_with_reviews() -> FakeKubeApi {
    let fake = FakeKubeApi::start([ResourceType::namespaces()]).await;
    fake.on(Method::POST, TOKENREVIEWS, review);
    fake
}

fn reviews(fake: &FakeKubeApi) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == TOKENREVIEWS)
        .collect()
}

async fn authenticator(fake: &FakeKubeApi, audiences: &[&str]) -> TokenReviewAuthenticator {
    let mut config = TokenReviewConfig::new("cluster.local", "Kubernetes");
    config.audiences = audiences.iter().map(|a| a.to_string()).collect();
    let pods = Arc::new(|ns: &str, name: &str| {
        (ns == "istio-system" && name == "ztunnel-abc").then(|| PodFacts {
            uid: "uid-zt".into(),
            service_account: "ztunnel".into(),
            node: "node-a".into(),
        })
    });
    TokenReviewAuthenticator::new(fake.client("ambientd").await, config, Some(pods))
}

async fn auth(
    a: &TokenReviewAuthenticator,
    token: Option<&str>,
    cluster: Option<&str>,
) -> Result<Option<Caller>, AuthError> {
    let mut metadata = MetadataMap::new();
    if let Some(t) = token {
        metadata.insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(c) = cluster {
        metadata.insert("clusterid", c.parse().unwrap());
    }
    let info = RequestInfo {
        metadata: &metadata,
        peer_certificates: None,
    };
    a.authenticate(&info, &Identity::new("cluster.local", "x", "y"))
        .await
}

fn refused(result: Result<Option<Caller>, AuthError>) -> String {
    match result {
        Err(AuthError::Refused(msg)) => msg,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn ztunnel() -> Identity {
    Identity::new("cluster.local", "istio-system", "ztunnel")
}

#[tokio::test]
async fn a_bound_token_gives_the_service_account_pod_and_node_from_the_index() {
    let fake = fake_with_reviews().await;
    let a = authenticator(&fake, &["istio-ca"]).await;
    let caller = auth(&a, Some("zt"), Some("Kubernetes")).await.unwrap();
    assert_eq!(
        caller,
        Some(Caller {
            identity: ztunnel(),
            node: Some("node-a".into()),
            pod: Some("ztunnel-abc".into()),
        })
    );
    let sent = reviews(&fake);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].token.as_deref(), Some("ambientd"));
    assert_eq!(
        sent[0].body["spec"],
        json!({"token": "zt", "audiences": ["istio-ca"]})
    );
    assert_eq!(
        sent[0].api_call(),
        Some((
            "authentication.k8s.io".to_string(),
            "tokenreviews".to_string(),
            "create".to_string()
        ))
    );
}

#[tokio::test]
async fn the_tokens_node_wins_and_a_pod_unknown_to_the_index_leaves_the_node_unknown() {
    let fake = fake_with_reviews().await;
    let a = authenticator(&fake, &["istio-ca"]).await;
    let caller = auth(&a, Some("zt-node"), None).await.unwrap().unwrap();
    assert_eq!(caller.node.as_deref(), Some("node-b"));

    let mut config = TokenReviewConfig::new("cluster.local", "Kubernetes");
    config.cache_ttl = Duration::ZERO;
    let no_index = TokenReviewAuthenticator::new(fake.client("ambientd").await, config, None);
    let caller = auth(&no_index, Some("zt"), None).await.unwrap().unwrap();
    assert_eq!(
        caller,
        Caller {
            identity: ztunnel(),
            node: None,
            pod: Some("ztunnel-abc".into()),
        }
    );
    // A pod of that name with another uid (the token's pod was replaced): no node.
    let mut config = TokenReviewConfig::new("cluster.local", "Kubernetes");
    config.cache_ttl = Duration::ZERO;
    let other_uid = Arc::new(|_: &str, _: &str| {
        Some(PodFacts {
            uid: "uid-new".into(),
            service_account: "ztunnel".into(),
            node: "node-a".into(),
        })
    });
    let a = TokenReviewAuthenticator::new(fake.client("ambientd").await, config, Some(other_uid));
    assert_eq!(
        auth(&a, Some("zt"), None).await.unwrap().unwrap().node,
        None
    );
}

#[tokio::test]
async fn refusals_follow_istiod() {
    let fake = fake_with_reviews().await;
    let a = authenticator(&fake, &["istio-ca"]).await;
    assert!(refused(auth(&a, Some("forged"), None).await).contains("invalid bearer token"));
    assert!(refused(auth(&a, Some("alice"), None).await).contains("not a service account token"));
    let wrong_audience = authenticator(&fake, &["other-audience"]).await;
    assert!(
        refused(auth(&wrong_audience, Some("zt"), None).await)
            .contains("is invalid for the target audiences")
    );
    let before = reviews(&fake).len();
    let msg = refused(auth(&a, Some("zt"), Some("remote-cluster")).await);
    assert!(
        msg.contains("\"remote-cluster\"") && msg.contains("\"Kubernetes\""),
        "{msg}"
    );
    assert_eq!(
        reviews(&fake).len(),
        before,
        "no review for another cluster"
    );
    // No bearer token: not this authenticator's caller; a malformed header is refused.
    assert_eq!(auth(&a, None, None).await, Ok(None));
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", "Basic Zm9v".parse().unwrap());
    let info = RequestInfo {
        metadata: &metadata,
        peer_certificates: None,
    };
    assert_eq!(
        a.authenticate(&info, &ztunnel()).await,
        Err(AuthError::MalformedHeader)
    );
    assert_eq!(reviews(&fake).len(), before);
}

#[tokio::test]
async fn a_cached_review_costs_no_second_call_and_refusals_are_not_cached() {
    let fake = fake_with_reviews().await;
    let a = authenticator(&fake, &["istio-ca"]).await;
    for _ in 0..3 {
        assert!(auth(&a, Some("zt"), None).await.unwrap().is_some());
    }
    assert_eq!(reviews(&fake).len(), 1);
    assert!(auth(&a, Some("zt-node"), None).await.unwrap().is_some());
    assert_eq!(reviews(&fake).len(), 2);
    for _ in 0..2 {
        assert!(auth(&a, Some("forged"), None).await.is_err());
    }
    assert_eq!(reviews(&fake).len(), 4);
}

// --- CA keys from Secrets ---------------------------------------------------------------------------------

fn secret_data(fake: &FakeKubeApi, name: &str) -> Value {
    fake.get(&secrets(), "istio-system", name).expect("secret")["data"].clone()
}

#[tokio::test]
async fn istio_ca_secret_is_created_once_and_reused() {
    let fake = FakeKubeApi::start([secrets()]).await;
    let client = fake.client("ambientd").await;
    let first = ca_secret::load(client.clone(), "istio-system", "cluster.local")
        .await
        .unwrap();
    assert_eq!(first.origin, CaOrigin::SelfSignedCreated);
    assert_eq!(first.secret, "istio-system/istio-ca-secret");
    let stored = fake
        .get(&secrets(), "istio-system", "istio-ca-secret")
        .unwrap();
    assert_eq!(stored["type"], "istio.io/ca-root");
    let keys: Vec<&str> = stored["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );

    let second = ca_secret::load(client, "istio-system", "cluster.local")
        .await
        .unwrap();
    assert_eq!(second.origin, CaOrigin::SelfSignedLoaded);
    assert_eq!(second.ca.root_bundle_pem(), first.ca.root_bundle_pem());
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    assert_eq!(creates, 1, "never replaced");
    assert_eq!(
        secret_data(&fake, "istio-ca-secret"),
        stored["data"],
        "unchanged"
    );
}

#[tokio::test]
async fn a_lost_create_race_uses_the_winners_root() {
    let fake = FakeKubeApi::start([secrets()]).await;
    let winner = CertificateAuthority::generate_self_signed_pems("cluster.local").unwrap();
    let b64 = |s: &str| {
        use base64_engine::encode;
        encode(s.as_bytes())
    };
    let winner_secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "istio-ca-secret", "namespace": "istio-system", "resourceVersion": "7"},
        "type": "istio.io/ca-root",
        "data": {"ca-cert.pem": b64(&winner.cert_pem), "ca-key.pem": b64(&winner.key_pem),
                 "root-cert.pem": b64(&winner.cert_pem), "cert-chain.pem": ""},
    });
    // The first read finds nothing, the create loses, the second read sees the winner's.
    let gets = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&gets);
    fake.on(
        Method::GET,
        "/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
        move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::json(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "secrets \"istio-ca-secret\" not found"}),
                )
            } else {
                Reply::json(200, winner_secret.clone())
            }
        },
    );
    fake.on(
        Method::POST,
        "/api/v1/namespaces/istio-system/secrets",
        |_| {
            Reply::json(
                409,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "AlreadyExists", "code": 409, "message": "secrets \"istio-ca-secret\" already exists"}),
            )
        },
    );
    let loaded = ca_secret::load(
        fake.client("ambientd").await,
        "istio-system",
        "cluster.local",
    )
    .await
    .unwrap();
    assert_eq!(loaded.origin, CaOrigin::SelfSignedRaceLost);
    assert_eq!(loaded.ca.root_bundle_pem(), winner.cert_pem);
    assert_eq!(gets.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn two_replicas_starting_at_once_agree() {
    let fake = FakeKubeApi::start([secrets()]).await;
    let (a, b) = tokio::join!(
        async { ca_secret::load(fake.client("a").await, "istio-system", "cluster.local").await },
        async { ca_secret::load(fake.client("b").await, "istio-system", "cluster.local").await },
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.ca.root_bundle_pem(), b.ca.root_bundle_pem());
}

#[tokio::test]
async fn cacerts_is_the_plug_in_ca_when_present() {
    let fake = FakeKubeApi::start([secrets()]).await;
    // A root and an intermediate signed by it, in istio's cacerts layout.
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, &root_key);
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test intermediate");
    let ca_cert = ca_params.signed_by(&ca_key, &root_issuer).unwrap();
    let b64 = |s: &str| base64_engine::encode(s.as_bytes());
    let chain = format!("{}{}", ca_cert.pem(), root.pem());
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {"ca-cert.pem": b64(&ca_cert.pem()), "ca-key.pem": b64(&ca_key.serialize_pem()),
                 "root-cert.pem": b64(&root.pem()), "cert-chain.pem": b64(&chain)},
    }));
    let loaded = ca_secret::load(fake.client("ambientd").await, "istio-system", "example.org")
        .await
        .unwrap();
    assert_eq!(loaded.origin, CaOrigin::PlugIn);
    assert_eq!(loaded.secret, "istio-system/cacerts");
    assert_eq!(loaded.ca.trust_domain(), "example.org");
    assert_eq!(loaded.ca.root_bundle_pem().trim(), root.pem().trim());
    assert_eq!(loaded.ca.intermediates().len(), 1);
    assert!(
        fake.get(&secrets(), "istio-system", "istio-ca-secret")
            .is_none()
    );

    // A broken plug-in CA stops the start, naming the Secret's key, and never falls back.
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {"ca-cert.pem": b64(&ca_cert.pem()), "ca-key.pem": b64(&root_key.serialize_pem()),
                 "root-cert.pem": b64(&root.pem())},
    }));
    let err = ca_secret::load(
        fake.client("ambientd").await,
        "istio-system",
        "cluster.local",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Secret istio-system/cacerts/ca-key.pem does not match"),
        "{err}"
    );
    assert!(
        err.contains("delete it to use the self-signed root"),
        "{err}"
    );
}

/// Standard base64 for Secret data.
mod base64_engine {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

// --- The root bundle ConfigMap ----------------------------------------------------------------------------

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn root_in(fake: &FakeKubeApi, ns: &str) -> Option<String> {
    fake.get(&configmaps(), ns, ROOT_CERT_CONFIGMAP)
        .and_then(|cm| cm["data"][ROOT_CERT_KEY].as_str().map(String::from))
}

async fn wait_state(
    state: &mut watch::Receiver<PublisherState>,
    what: &str,
    f: impl Fn(&PublisherState) -> bool,
) -> PublisherState {
    tokio::time::timeout(support::kube_api::WAIT, state.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("publisher running")
        .clone()
}

#[tokio::test]
async fn the_root_configmap_follows_namespaces_the_root_and_the_leader() {
    let fake = FakeKubeApi::start([ResourceType::namespaces(), configmaps()]).await;
    fake.apply(namespace("default"));
    fake.apply(namespace("shop"));
    // One ConfigMap is already there with a stale root and another key, which is kept.
    fake.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CERT_CONFIGMAP, "namespace": "shop"},
        "data": {ROOT_CERT_KEY: "old", "other": "kept"}}));
    let (root_tx, root_rx) = watch::channel(Arc::<str>::from("root-1\n"));
    let (leader_tx, leader_rx) = watch::channel(false);
    let publisher = RootCertPublisher::start(
        fake.client("ambientd").await,
        root_rx,
        Some(leader_rx),
        RootCertConfig::default(),
    );
    let mut state = publisher.state();

    // Not the leader: the namespaces are known, nothing is read or written.
    let s = wait_state(&mut state, "the namespaces while not leader", |s| {
        s.synced && s.namespaces == 2
    })
    .await;
    assert_eq!(
        (s.leader, s.current, s.created, s.updated),
        (false, 0, 0, 0)
    );
    let configmap_calls = |fake: &FakeKubeApi| {
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("/configmaps"))
            .count()
    };
    assert_eq!(configmap_calls(&fake), 0);

    leader_tx.send_replace(true);
    let s = wait_state(&mut state, "both namespaces current", |s| {
        s.leader && s.current == 2
    })
    .await;
    assert_eq!((s.created, s.updated), (1, 1));
    assert_eq!(root_in(&fake, "default").as_deref(), Some("root-1\n"));
    assert_eq!(root_in(&fake, "shop").as_deref(), Some("root-1\n"));
    let shop = fake
        .get(&configmaps(), "shop", ROOT_CERT_CONFIGMAP)
        .unwrap();
    assert_eq!(shop["data"]["other"], "kept");
    let created = fake
        .get(&configmaps(), "default", ROOT_CERT_CONFIGMAP)
        .unwrap();
    assert_eq!(created["metadata"]["labels"]["istio.io/config"], "true");

    // A new namespace gets one.
    fake.apply(namespace("late"));
    wait_state(&mut state, "the new namespace", |s| s.current == 3).await;
    assert_eq!(root_in(&fake, "late").as_deref(), Some("root-1\n"));

    // A new root reaches every namespace.
    root_tx.send_replace(Arc::from("root-2\n"));
    let s = wait_state(&mut state, "the new root everywhere", |s| {
        s.current == 3 && s.updated == 4
    })
    .await;
    assert_eq!(s.created, 2);
    for ns in ["default", "shop", "late"] {
        assert_eq!(root_in(&fake, ns).as_deref(), Some("root-2\n"), "{ns}");
    }

    // No longer the leader: a new namespace and a new root are not written.
    leader_tx.send_replace(false);
    wait_state(&mut state, "not leader", |s| !s.leader).await;
    let before = configmap_calls(&fake);
    fake.apply(namespace("later"));
    root_tx.send_replace(Arc::from("root-3\n"));
    let s = wait_state(&mut state, "the fourth namespace known", |s| {
        s.namespaces == 4
    })
    .await;
    assert_eq!(s.current, 0);
    assert_eq!(configmap_calls(&fake), before);
    assert_eq!(root_in(&fake, "later"), None);

    // The writes were the calls API_CALLS lists for ConfigMaps.
    let calls: std::collections::BTreeSet<(String, String, String)> = fake
        .requests()
        .iter()
        .filter_map(Recorded::api_call)
        .filter(|(_, r, _)| r == "configmaps")
        .collect();
    let listed: std::collections::BTreeSet<(String, String, String)> =
        ambient_control_plane::cluster::API_CALLS
            .iter()
            .filter(|(_, r, _)| *r == "configmaps")
            .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
            .collect();
    assert_eq!(calls, listed);
}
