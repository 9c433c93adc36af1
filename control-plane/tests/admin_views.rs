//! The admin API's waypoint and filter views on small indexes built with the fixture builders: bound
//! objects found through their resources, refusals filed under the waypoint they asked for, refusals of
//! a missing waypoint under `unresolved`, and namespace/node filters.

use ambient_control_plane::admin::api::{BoundObject, Refusal};
use ambient_control_plane::admin::views::{self, Filter};
use ambient_index::Index;
use ambient_index::model::well_known::{USE_WAYPOINT, USE_WAYPOINT_NAMESPACE, WAYPOINT_FOR};
use ambient_index::testing::*;

/// Namespace `ns` with waypoint `wp` (all traffic) and `svc-only` (services), and objects that bind to
/// them, are refused by them, or ask for `missing`; namespace `other` asks `ns/wp` from outside.
fn index() -> Index {
    Index::build(
        test_settings(),
        vec![
            test_system_namespace(),
            namespace("ns").build(),
            namespace("other").build(),
            waypoint("ns", "wp", TEST_DOMAIN, "10.0.0.9")
                .label(WAYPOINT_FOR, "all")
                .build(),
            waypoint("ns", "svc-only", TEST_DOMAIN, "10.0.0.10")
                .label(WAYPOINT_FOR, "service")
                .build(),
            pod("ns", "bound")
                .ip("10.1.0.1")
                .node("n1")
                .label(USE_WAYPOINT, "wp")
                .build(),
            pod("ns", "refused")
                .ip("10.1.0.2")
                .node("n2")
                .label(USE_WAYPOINT, "svc-only")
                .build(),
            service("ns", "web")
                .cluster_ip("10.96.0.1")
                .port("http", 80, 8080)
                .label(USE_WAYPOINT, "wp")
                .build(),
            service("ns", "lost")
                .cluster_ip("10.96.0.2")
                .port("http", 80, 8080)
                .label(USE_WAYPOINT, "missing")
                .build(),
            service("other", "far")
                .cluster_ip("10.96.0.3")
                .port("http", 80, 8080)
                .label(USE_WAYPOINT, "wp")
                .label(USE_WAYPOINT_NAMESPACE, "ns")
                .build(),
        ],
    )
}

fn refusal(object: &str, waypoint: &str, reason: &str, message: &str) -> Refusal {
    Refusal {
        object: object.to_string(),
        waypoint: Some(waypoint.to_string()),
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

#[test]
fn waypoints_list_what_binds_and_what_was_refused() {
    let doc = views::waypoints(&index(), &Filter::default()).unwrap();
    let keys: Vec<String> = doc
        .waypoints
        .iter()
        .map(|w| {
            format!(
                "{}/{} {:?} {}",
                w.namespace, w.name, w.address, w.traffic_type
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "ns/svc-only Some(\"ns/svc-only.ns.svc.domain.suffix\") service",
            "ns/wp Some(\"ns/wp.ns.svc.domain.suffix\") all",
        ]
    );
    let (svc_only, wp) = (&doc.waypoints[0], &doc.waypoints[1]);
    assert_eq!(
        wp.bound,
        [
            BoundObject {
                object: "Pod/ns/bound".to_string(),
                resource_name: "cluster0//Pod/ns/bound".to_string(),
            },
            BoundObject {
                object: "Service/ns/web".to_string(),
                resource_name: "ns/web.ns.svc.domain.suffix".to_string(),
            },
        ]
    );
    assert_eq!(
        wp.refused,
        [refusal(
            "Service/other/far",
            "ns/wp",
            "AttachmentDenied",
            "we are not permitted to attach to waypoint \"ns/wp\" (missing allowedRoutes?)",
        )]
    );
    assert!(svc_only.bound.is_empty());
    assert_eq!(
        svc_only.refused,
        [refusal(
            "Pod/ns/refused",
            "ns/svc-only",
            "UnsupportedTrafficType",
            "attempting to bind to traffic type \"workload\" which the waypoint \"ns/svc-only\" does not support",
        )]
    );
    assert_eq!(
        doc.unresolved,
        [refusal(
            "Service/ns/lost",
            "ns/missing",
            "WaypointIsNotReady",
            "waypoint \"ns/missing\" is not ready",
        )]
    );

    let other = Filter {
        namespace: Some("other".to_string()),
        node: None,
    };
    let doc = views::waypoints(&index(), &other).unwrap();
    assert!(doc.waypoints.is_empty() && doc.unresolved.is_empty());
}

#[test]
fn workload_filters_select_by_namespace_and_node() {
    let index = index();
    let names = |filter: Filter| -> Vec<String> {
        views::workloads(&index, &filter)
            .unwrap()
            .workloads
            .into_iter()
            .map(|w| format!("{}/{} {:?}", w.namespace, w.name, w.waypoint))
            .collect()
    };
    assert_eq!(
        names(Filter::default()),
        [
            "ns/bound Some(\"ns/wp.ns.svc.domain.suffix\")",
            "ns/refused None"
        ]
    );
    assert_eq!(
        names(Filter {
            namespace: None,
            node: Some("n2".to_string())
        }),
        ["ns/refused None"]
    );
    assert!(
        names(Filter {
            namespace: Some("other".to_string()),
            node: None
        })
        .is_empty()
    );
}

#[test]
fn certs_describe_a_real_ca_and_serving_certificate() {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(
        ambient_ca::CertificateAuthority::load_or_create_self_signed(dir.path(), "cluster.local")
            .unwrap(),
    );
    let serving = ambient_ca::ServingTls::new(
        Arc::clone(&ca),
        vec!["localhost".to_string()],
        vec!["127.0.0.1".parse().unwrap()],
        Duration::from_secs(3600),
    )
    .unwrap();
    let counters = ambient_ca::CaMetrics {
        issued: 4,
        refused: [("invalid_csr".to_string(), 1)].into_iter().collect(),
        latency: ambient_ca::LatencySummary {
            count: 5,
            sum: Duration::ZERO,
            max: Duration::ZERO,
            buckets: Vec::new(),
        },
    };
    let doc = views::certs(&ca, &serving, &counters);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    let root = doc.root.unwrap();
    assert_eq!(root.names.len(), 1);
    assert!(root.names[0].contains("cluster.local"), "{:?}", root.names);
    assert!(root.not_after_unix > now + 365 * 86400, "{root:?}");
    let signing = doc.signing.unwrap();
    assert_eq!(signing.not_after_unix, root.not_after_unix);
    assert_eq!(signing.not_after, root.not_after);

    let serving_doc = doc.serving.unwrap();
    assert_eq!(
        serving_doc.names,
        [
            "istiod.istio-system.svc",
            "istiod.istio-system.svc.cluster.local",
            "localhost"
        ]
    );
    let left = serving_doc.not_after_unix - now;
    assert!((3500..=3700).contains(&left), "{left}");
    assert_eq!(
        serving_doc.not_after,
        ambient_ca::rfc3339::format(serving.current_not_after())
    );
    assert_eq!((doc.issued, doc.refused["invalid_csr"]), (4, 1));
}

#[test]
fn the_config_document_shows_every_serve_flag() {
    let config =
        ambient_control_plane::serve::ServeConfig::new("deploy/examples/bookinfo", ".ambientd");
    let doc = config.to_json();
    assert_eq!(
        doc,
        serde_json::json!({
            "configDir": "deploy/examples/bookinfo",
            "grpcAddr": "127.0.0.1:15012",
            "stateDir": ".ambientd",
            "caDir": null,
            "servingDns": [
                "istiod.istio-system.svc",
                "istiod.istio-system.svc.cluster.local",
                "localhost"
            ],
            "servingIps": ["127.0.0.1"],
            "auth": ["cert"],
            "trustedNodeAccounts": ["istio-system/ztunnel"],
            "maxWorkloadCertTtlSeconds": 86400,
            "servingCertTtlSeconds": 86400,
            "servingRenewIntervalSeconds": 60,
            "mesh": {
                "clusterId": "Kubernetes",
                "trustDomain": "cluster.local",
                "domainSuffix": "cluster.local",
                "rootNamespace": "istio-system",
                "systemNamespace": "istio-system",
                "enrollment": "annotation",
                "revision": ""
            }
        })
    );
}
