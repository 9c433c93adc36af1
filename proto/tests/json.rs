//! The JSON views print resources in the protobuf JSON mapping: camelCase
//! keys, enum names, base64 bytes, defaults omitted.

mod common;

use std::collections::BTreeMap;

use ambient_proto::json::{address_to_json, authorization_to_json, to_json};
use ambient_proto::{security, workload};
use prost::Message;
use serde_json::json;

#[test]
fn workload_address_json() {
    let w = workload::Workload {
        uid: "Kubernetes//Pod/default/sleep-1".into(),
        name: "sleep-1".into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 0, 0, 1]],
        tunnel_protocol: workload::TunnelProtocol::Hbone.into(),
        status: workload::WorkloadStatus::Unhealthy.into(),
        services: BTreeMap::from([(
            "default/sleep.default.svc.cluster.local".to_owned(),
            workload::PortList {
                ports: vec![workload::Port {
                    service_port: 80,
                    target_port: 8080,
                    app_protocol: workload::AppProtocol::Http11.into(),
                }],
            },
        )]),
        waypoint: Some(workload::GatewayAddress {
            destination: Some(workload::gateway_address::Destination::Hostname(
                workload::NamespacedHostname {
                    namespace: "default".into(),
                    hostname: "waypoint.default.svc.cluster.local".into(),
                },
            )),
            hbone_mtls_port: 15008,
        }),
        capacity: Some(2),
        ..Default::default()
    };
    let address = workload::Address {
        r#type: Some(workload::address::Type::Workload(w)),
    };

    let value = address_to_json(&address.encode_to_vec()).unwrap();
    assert_eq!(
        value,
        json!({
            "workload": {
                "uid": "Kubernetes//Pod/default/sleep-1",
                "name": "sleep-1",
                "namespace": "default",
                "addresses": ["CgAAAQ=="],
                "tunnelProtocol": "HBONE",
                "status": "UNHEALTHY",
                "services": {
                    "default/sleep.default.svc.cluster.local": {
                        "ports": [{
                            "servicePort": 80,
                            "targetPort": 8080,
                            "appProtocol": "HTTP11"
                        }]
                    }
                },
                "waypoint": {
                    "hostname": {
                        "namespace": "default",
                        "hostname": "waypoint.default.svc.cluster.local"
                    },
                    "hboneMtlsPort": 15008
                },
                "capacity": 2
            }
        })
    );
}

#[test]
fn service_address_json() {
    use workload::load_balancing::{HealthPolicy, Mode, Scope};
    let s = workload::Service {
        name: "reviews".into(),
        namespace: "bookinfo".into(),
        hostname: "reviews.bookinfo.svc.cluster.local".into(),
        addresses: vec![
            workload::NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 10],
                length: None,
            },
            workload::NetworkAddress {
                network: "net-a".into(),
                address: vec![10, 0, 0, 0],
                length: Some(0),
            },
        ],
        load_balancing: Some(workload::LoadBalancing {
            routing_preference: vec![Scope::Network.into(), Scope::Node.into()],
            mode: Mode::Strict.into(),
            health_policy: HealthPolicy::OnlyHealthy.into(),
        }),
        ip_families: workload::IpFamilies::Ipv4Only.into(),
        visibility: workload::service::Visibility::Namespace.into(),
        ..Default::default()
    };
    let address = workload::Address {
        r#type: Some(workload::address::Type::Service(s)),
    };
    assert_eq!(
        to_json("istio.workload.Address", &address.encode_to_vec()).unwrap(),
        json!({
            "service": {
                "name": "reviews",
                "namespace": "bookinfo",
                "hostname": "reviews.bookinfo.svc.cluster.local",
                "addresses": [
                    {"address": "CmAACg=="},
                    // An explicit optional 0 is present, unlike a plain default.
                    {"network": "net-a", "address": "CgAAAA==", "length": 0}
                ],
                "loadBalancing": {
                    "routingPreference": ["NETWORK", "NODE"],
                    "mode": "STRICT"
                },
                "ipFamilies": "IPV4_ONLY",
                "visibility": "NAMESPACE"
            }
        })
    );
}

#[test]
fn authorization_json() {
    use security::string_match::MatchType;
    let policy = security::Authorization {
        name: "deny-sleep".into(),
        namespace: "default".into(),
        scope: security::Scope::Namespace.into(),
        action: security::Action::Deny.into(),
        rules: vec![security::Rule {
            clauses: vec![security::Clause {
                matches: vec![security::Match {
                    principals: vec![security::StringMatch {
                        match_type: Some(MatchType::Presence(())),
                    }],
                    not_namespaces: vec![security::StringMatch {
                        match_type: Some(MatchType::Exact("kube-system".into())),
                    }],
                    service_accounts: vec![security::ServiceAccountMatch {
                        namespace: "default".into(),
                        service_account: "sleep".into(),
                    }],
                    source_ips: vec![security::Address {
                        address: vec![192, 168, 0, 0],
                        length: 16,
                    }],
                    destination_ports: vec![9080],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    };
    assert_eq!(
        authorization_to_json(&policy.encode_to_vec()).unwrap(),
        json!({
            "name": "deny-sleep",
            "namespace": "default",
            "scope": "NAMESPACE",
            "action": "DENY",
            "rules": [{
                "clauses": [{
                    "matches": [{
                        "notNamespaces": [{"exact": "kube-system"}],
                        "serviceAccounts": [{"namespace": "default", "serviceAccount": "sleep"}],
                        "principals": [{"presence": {}}],
                        "sourceIps": [{"address": "wKgAAA==", "length": 16}],
                        "destinationPorts": [9080]
                    }]
                }]
            }]
        })
    );
    // Defaults (GLOBAL, ALLOW) are omitted.
    assert_eq!(
        authorization_to_json(&security::Authorization::default().encode_to_vec()).unwrap(),
        json!({})
    );
}

#[test]
fn extension_any_is_expanded_with_its_type() {
    let w = workload::Workload {
        uid: "u".into(),
        extensions: vec![common::extension()],
        ..Default::default()
    };
    assert_eq!(
        to_json(ambient_proto::WORKLOAD_TYPE_URL, &w.encode_to_vec()).unwrap(),
        json!({
            "uid": "u",
            "extensions": [{
                "name": "example.com/extra",
                "config": {
                    "@type": "type.googleapis.com/istio.workload.NamespacedHostname",
                    "namespace": "istio-system",
                    "hostname": "waypoint.istio-system.svc.cluster.local"
                }
            }]
        })
    );
}

#[test]
fn certificate_request_json() {
    let request = common::certificate_request();
    assert_eq!(
        to_json(
            "istio.v1.auth.IstioCertificateRequest",
            &request.encode_to_vec()
        )
        .unwrap(),
        json!({
            "csr": request.csr,
            // int64 is a string in the JSON mapping.
            "validityDuration": "86400",
            "metadata": {"ImpersonatedIdentity": "spiffe://cluster.local/ns/bookinfo/sa/reviews"}
        })
    );
}
