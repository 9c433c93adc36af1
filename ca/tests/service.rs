//! `CreateCertificate` decisions: authentication, impersonation (each rule), identity, TTL, metrics.
//! The service is called directly here; `grpc_tls.rs` does the same over real TLS and gRPC.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::{
    AuthError, Authenticator, CaService, CaServiceConfig, Caller, CertificateAuthority,
    ClientCertAuthenticator, Identity, PeerCertificates, RequestInfo, TokenFileAuthenticator,
    TrustAllAuthenticator,
};
use ambient_proto::auth::istio_certificate_service_server::IstioCertificateService;
use ambient_proto::auth::{IstioCertificateRequest, IstioCertificateResponse};
use common::*;
use prost_types::value::Kind;
use tonic::{Code, Request, Status};

const TOKENS: &str = "\
ztunnel-a: {namespace: istio-system, serviceAccount: ztunnel, node: node-a, podName: ztunnel-aaaaa}
ztunnel-nonode: {namespace: istio-system, serviceAccount: ztunnel}
app-a: {namespace: default, serviceAccount: app, node: node-a, podName: app-1}
agent-a: {namespace: kube-system, serviceAccount: agent, node: node-a}
";

struct Fixture {
    _dir: tempfile::TempDir,
    ca: Arc<CertificateAuthority>,
    svc: CaService,
}

/// Pods: default/app and default/db on node-a; default/web on node-b.
fn pods(node: &str, ns: &str, sa: &str) -> bool {
    matches!(
        (node, ns, sa),
        ("node-a", "default", "app") | ("node-a", "default", "db") | ("node-b", "default", "web")
    )
}

fn fixture_with(config: CaServiceConfig, extra: Vec<Box<dyn Authenticator>>) -> Fixture {
    let (dir, ca) = self_signed_ca();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let mut authenticators: Vec<Box<dyn Authenticator>> = vec![
        Box::new(ClientCertAuthenticator::new(TD)),
        Box::new(TokenFileAuthenticator::from_file(&tokens, TD).unwrap()),
    ];
    authenticators.extend(extra);
    let svc = CaService::new(ca.clone(), authenticators, Arc::new(pods), config);
    Fixture { _dir: dir, ca, svc }
}

fn fixture() -> Fixture {
    fixture_with(
        CaServiceConfig {
            max_workload_ttl: Duration::from_secs(2 * 3600),
            ..CaServiceConfig::default()
        },
        vec![],
    )
}

struct Req {
    csr: String,
    token: Option<&'static str>,
    impersonate: Option<Kind>,
    validity: i64,
    peer: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl Req {
    fn new(csr_id: &str) -> Self {
        Req {
            csr: ztunnel_csr(csr_id).0,
            token: None,
            impersonate: None,
            validity: 3600,
            peer: None,
        }
    }
    fn token(mut self, t: &'static str) -> Self {
        self.token = Some(t);
        self
    }
    fn impersonate(mut self, id: &str) -> Self {
        self.impersonate = Some(Kind::StringValue(id.to_string()));
        self
    }
    fn impersonate_kind(mut self, k: Kind) -> Self {
        self.impersonate = Some(k);
        self
    }
    fn validity(mut self, v: i64) -> Self {
        self.validity = v;
        self
    }
    fn peer(mut self, chain: &[String]) -> Self {
        self.peer = Some(vec![cert(&chain[0])]);
        self
    }
    fn build(self) -> Request<IstioCertificateRequest> {
        let metadata = self.impersonate.map(|k| prost_types::Struct {
            fields: BTreeMap::from([(
                "ImpersonatedIdentity".to_string(),
                prost_types::Value { kind: Some(k) },
            )]),
        });
        let mut req = Request::new(IstioCertificateRequest {
            csr: self.csr,
            validity_duration: self.validity,
            metadata,
        });
        if let Some(t) = self.token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(p) = self.peer {
            req.extensions_mut().insert(PeerCertificates(Arc::new(p)));
        }
        req
    }
}

fn call(svc: &CaService, req: Req) -> Result<IstioCertificateResponse, Status> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(svc.create_certificate(req.build()))
        .map(|r| r.into_inner())
}

fn assert_status(r: Result<IstioCertificateResponse, Status>, code: Code, msg: &str) {
    match r {
        Ok(resp) => panic!(
            "expected {code:?}, got a chain of {}",
            resp.cert_chain.len()
        ),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(s.message().contains(msg), "{s:?}");
        }
    }
}

const APP: &str = "spiffe://cluster.local/ns/default/sa/app";
const DB: &str = "spiffe://cluster.local/ns/default/sa/db";
const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";
const IMP_FAIL: &str = "request impersonation authentication failure";

#[test]
fn own_identity_is_issued() {
    let f = fixture();
    let resp = call(&f.svc, Req::new(APP).token("app-a")).unwrap();
    assert_eq!(resp.cert_chain.len(), 2);
    assert_eq!(resp.cert_chain[1], f.ca.root_bundle_pem());
    let (_, leaf) = parse_leaf(&resp.cert_chain[0]);
    assert_eq!(leaf.sans, vec![format!("URI:{APP}")]);
    verify_chain(&resp.cert_chain, webpki::KeyUsage::client_auth()).unwrap();
}

#[test]
fn unauthenticated_callers_get_nothing() {
    let f = fixture();
    assert_status(
        call(&f.svc, Req::new(APP)),
        Code::Unauthenticated,
        "request authenticate failure",
    );
    assert_status(
        call(&f.svc, Req::new(APP).token("wrong")),
        Code::Unauthenticated,
        "request authenticate failure",
    );
    let m = f.svc.metrics();
    assert_eq!(m.refused["unauthenticated"], 1);
    assert_eq!(m.refused["authentication_failed"], 1);
    assert_eq!(m.issued, 0);
}

#[test]
fn another_identity_is_permission_denied() {
    let f = fixture();
    assert_status(
        call(&f.svc, Req::new(DB).token("app-a")),
        Code::PermissionDenied,
        "the caller is spiffe://cluster.local/ns/default/sa/app",
    );
    assert_eq!(f.svc.metrics().refused["identity_mismatch"], 1);
}

#[test]
fn bad_csr_and_foreign_trust_domain_are_invalid_arguments() {
    let f = fixture();
    let mut r = Req::new(APP).token("app-a");
    r.csr = "garbage".into();
    assert_status(call(&f.svc, r), Code::InvalidArgument, "invalid CSR");
    assert_status(
        call(
            &f.svc,
            Req::new("spiffe://evil.org/ns/default/sa/app").token("app-a"),
        ),
        Code::InvalidArgument,
        "trust domain",
    );
    let m = f.svc.metrics();
    assert_eq!(m.refused["invalid_csr"], 1);
    assert_eq!(m.refused["wrong_trust_domain"], 1);
}

#[test]
fn impersonation_allowed_for_a_trusted_node_account_with_the_pod_on_its_node() {
    let f = fixture();
    for target in [APP, DB] {
        let resp = call(
            &f.svc,
            Req::new(target).token("ztunnel-a").impersonate(target),
        )
        .unwrap();
        assert_eq!(
            parse_leaf(&resp.cert_chain[0]).1.sans,
            vec![format!("URI:{target}")]
        );
    }
    assert_eq!(f.svc.metrics().issued, 2);
}

#[test]
fn impersonation_denied_when_no_such_pod_runs_on_the_callers_node() {
    let f = fixture();
    // default/web runs on node-b only.
    assert_status(
        call(&f.svc, Req::new(WEB).token("ztunnel-a").impersonate(WEB)),
        Code::Unauthenticated,
        IMP_FAIL,
    );
    assert_eq!(f.svc.metrics().refused["impersonation_denied"], 1);
}

#[test]
fn impersonation_denied_for_an_untrusted_caller() {
    let f = fixture();
    // default/app is on node-a and db runs there, but default/app is not a node account.
    assert_status(
        call(&f.svc, Req::new(DB).token("app-a").impersonate(DB)),
        Code::Unauthenticated,
        IMP_FAIL,
    );
}

#[test]
fn impersonation_denied_when_the_callers_node_is_unknown() {
    let f = fixture();
    assert_status(
        call(
            &f.svc,
            Req::new(APP).token("ztunnel-nonode").impersonate(APP),
        ),
        Code::Unauthenticated,
        IMP_FAIL,
    );
}

#[test]
fn impersonation_denied_for_client_certificate_callers() {
    // A client certificate of istio-system/ztunnel carries no node, so it cannot impersonate.
    let f = fixture();
    let (zt_chain, _) =
        f.ca.issue_workload(&id("istio-system", "ztunnel"), Duration::from_secs(600))
            .unwrap();
    assert_status(
        call(&f.svc, Req::new(APP).peer(&zt_chain).impersonate(APP)),
        Code::Unauthenticated,
        IMP_FAIL,
    );
    // The same certificate gets its own identity.
    let own = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";
    assert!(call(&f.svc, Req::new(own).peer(&zt_chain)).is_ok());
}

#[test]
fn impersonation_denied_when_the_csr_asks_for_someone_else() {
    let f = fixture();
    assert_status(
        call(&f.svc, Req::new(DB).token("ztunnel-a").impersonate(APP)),
        Code::Unauthenticated,
        IMP_FAIL,
    );
}

#[test]
fn impersonation_denied_for_a_malformed_identity() {
    let f = fixture();
    for bad in [
        Kind::StringValue("default/app".into()),
        Kind::StringValue("spiffe://cluster.local/ns/default".into()),
        Kind::NumberValue(1.0),
        Kind::BoolValue(true),
    ] {
        assert_status(
            call(
                &f.svc,
                Req::new(APP).token("ztunnel-a").impersonate_kind(bad),
            ),
            Code::Unauthenticated,
            IMP_FAIL,
        );
    }
}

#[test]
fn impersonation_denied_into_another_trust_domain() {
    let f = fixture();
    assert_status(
        call(
            &f.svc,
            Req::new(APP)
                .token("ztunnel-a")
                .impersonate("spiffe://other.org/ns/default/sa/app"),
        ),
        Code::Unauthenticated,
        IMP_FAIL,
    );
}

#[test]
fn trusted_node_accounts_are_configurable() {
    let f = fixture_with(
        CaServiceConfig {
            trusted_node_accounts: vec![("kube-system".into(), "agent".into())],
            ..CaServiceConfig::default()
        },
        vec![],
    );
    assert_status(
        call(&f.svc, Req::new(APP).token("ztunnel-a").impersonate(APP)),
        Code::Unauthenticated,
        IMP_FAIL,
    );
    assert!(call(&f.svc, Req::new(APP).token("agent-a").impersonate(APP)).is_ok());
}

#[test]
fn empty_or_own_impersonated_identity_is_no_impersonation() {
    let f = fixture();
    assert!(call(&f.svc, Req::new(APP).token("app-a").impersonate("")).is_ok());
    assert!(call(&f.svc, Req::new(APP).token("app-a").impersonate(APP)).is_ok());
}

#[test]
fn trust_all_lab_mode_with_a_shared_mode_ztunnel() {
    // `--auth none`: every caller is what its CSR asks for; ztunnel's ImpersonatedIdentity then names
    // the caller itself, which is allowed.
    let (_dir, ca) = self_signed_ca();
    let svc = CaService::new(
        ca,
        vec![Box::new(TrustAllAuthenticator)],
        Arc::new(ambient_ca::NoPods),
        CaServiceConfig::default(),
    );
    assert!(call(&svc, Req::new(WEB).impersonate(WEB)).is_ok());
    assert!(call(&svc, Req::new(WEB)).is_ok());
    // Still no certificate outside the trust domain, and still a real CSR.
    assert_status(
        call(&svc, Req::new("spiffe://other.org/ns/a/sa/b")),
        Code::InvalidArgument,
        "trust domain",
    );
}

#[test]
fn ttl_is_capped_at_the_maximum() {
    let f = fixture(); // max 2 h
    let lifetime = |validity: i64| {
        let resp = call(&f.svc, Req::new(APP).token("app-a").validity(validity)).unwrap();
        let (_, leaf) = parse_leaf(&resp.cert_chain[0]);
        leaf.not_after - now_unix()
    };
    let near = |got: i64, want: i64| assert!((got - want).abs() <= 2, "{got} vs {want}");
    near(lifetime(600), 600);
    near(lifetime(10 * 24 * 3600), 7200);
    near(lifetime(0), 7200);
    near(lifetime(-1), 7200);
}

/// An authenticator that always refuses, to check that a refusal stops the chain.
struct Refuses;
#[tonic::async_trait]
impl Authenticator for Refuses {
    async fn authenticate(
        &self,
        _: &RequestInfo<'_>,
        _: &Identity,
    ) -> Result<Option<Caller>, AuthError> {
        Err(AuthError::Refused("token review says no".into()))
    }
}

#[test]
fn first_applicable_authenticator_decides() {
    // Token authenticator applies first (app-a); TrustAll after it is never consulted for DB.
    let f = fixture_with(
        CaServiceConfig::default(),
        vec![Box::new(TrustAllAuthenticator)],
    );
    assert_status(
        call(&f.svc, Req::new(DB).token("app-a")),
        Code::PermissionDenied,
        "",
    );
    // Without a token, the token authenticator does not apply and TrustAll decides.
    assert!(call(&f.svc, Req::new(DB)).is_ok());

    // An authenticator that refuses stops the chain even if a later one would accept.
    let (_dir, ca) = self_signed_ca();
    let svc = CaService::new(
        ca,
        vec![Box::new(Refuses), Box::new(TrustAllAuthenticator)],
        Arc::new(ambient_ca::NoPods),
        CaServiceConfig::default(),
    );
    assert_status(
        call(&svc, Req::new(APP)),
        Code::Unauthenticated,
        "request authenticate failure",
    );
}

#[test]
fn client_certificate_from_another_ca_domain_is_refused() {
    let f = fixture();
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        CertificateAuthority::load_or_create_self_signed(other_dir.path(), "other.org").unwrap();
    let (chain, _) = other
        .issue_workload(
            &Identity::new("other.org", "default", "app"),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_status(
        call(&f.svc, Req::new(APP).peer(&chain)),
        Code::Unauthenticated,
        "request authenticate failure",
    );
}

#[test]
fn metrics_count_everything() {
    let f = fixture();
    call(&f.svc, Req::new(APP).token("app-a")).unwrap();
    call(&f.svc, Req::new(APP).token("app-a")).unwrap();
    let _ = call(&f.svc, Req::new(DB).token("app-a"));
    let _ = call(&f.svc, Req::new(APP));
    let m = f.svc.metrics();
    assert_eq!(m.issued, 2);
    assert_eq!(m.refused.values().sum::<u64>(), 2);
    assert_eq!(m.latency.count, 4);
    assert!(m.latency.sum > Duration::ZERO);
    assert!(m.latency.max >= m.latency.mean());
    // Clones share the counters.
    assert_eq!(f.svc.clone().metrics().issued, 2);
}

#[test]
fn the_signing_ca_can_be_swapped() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let pki = PluginPki::new(1);
    pki.write(dir.path());
    let plugin = Arc::new(CertificateAuthority::from_cacerts_dir(dir.path()).unwrap());
    f.svc.set_authority(plugin.clone());
    let resp = call(&f.svc, Req::new(APP).token("app-a")).unwrap();
    assert_eq!(resp.cert_chain.len(), 3);
    assert_eq!(resp.cert_chain[2], plugin.root_bundle_pem());
}
