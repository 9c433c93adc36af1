//! Fixtures shared by the integration tests: one builder per message with every
//! field set to a non-default value.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ambient_proto::{auth, security, workload};
use prost::Message;

pub fn network_address() -> workload::NetworkAddress {
    workload::NetworkAddress {
        network: "net-a".into(),
        address: vec![10, 0, 0, 0],
        length: Some(24),
    }
}

pub fn namespaced_hostname() -> workload::NamespacedHostname {
    workload::NamespacedHostname {
        namespace: "istio-system".into(),
        hostname: "waypoint.istio-system.svc.cluster.local".into(),
    }
}

pub fn gateway_by_hostname() -> workload::GatewayAddress {
    workload::GatewayAddress {
        destination: Some(workload::gateway_address::Destination::Hostname(
            namespaced_hostname(),
        )),
        hbone_mtls_port: 15008,
    }
}

pub fn gateway_by_address() -> workload::GatewayAddress {
    workload::GatewayAddress {
        destination: Some(workload::gateway_address::Destination::Address(
            network_address(),
        )),
        hbone_mtls_port: 15009,
    }
}

pub fn weighted_waypoint() -> workload::WeightedWaypoint {
    workload::WeightedWaypoint {
        destination: Some(gateway_by_hostname()),
        weight: 30,
    }
}

pub fn port() -> workload::Port {
    workload::Port {
        service_port: 80,
        target_port: 8080,
        app_protocol: workload::AppProtocol::Http2.into(),
    }
}

pub fn port_list() -> workload::PortList {
    workload::PortList {
        ports: vec![
            port(),
            workload::Port {
                service_port: 443,
                target_port: 8443,
                app_protocol: workload::AppProtocol::Tls.into(),
            },
        ],
    }
}

pub fn locality() -> workload::Locality {
    workload::Locality {
        region: "eu-west1".into(),
        zone: "eu-west1-b".into(),
        subzone: "rack-7".into(),
    }
}

pub fn extension() -> workload::Extension {
    workload::Extension {
        name: "example.com/extra".into(),
        config: Some(ambient_proto::to_any(
            "type.googleapis.com/istio.workload.NamespacedHostname",
            &namespaced_hostname(),
        )),
    }
}

pub fn load_balancing() -> workload::LoadBalancing {
    use workload::load_balancing::{HealthPolicy, Mode, Scope};
    workload::LoadBalancing {
        routing_preference: vec![
            Scope::Network.into(),
            Scope::Region.into(),
            Scope::Zone.into(),
        ],
        mode: Mode::Failover.into(),
        health_policy: HealthPolicy::AllowAll.into(),
    }
}

pub fn application_tunnel() -> workload::ApplicationTunnel {
    workload::ApplicationTunnel {
        protocol: workload::application_tunnel::Protocol::Proxy.into(),
        port: 15088,
    }
}

pub fn service() -> workload::Service {
    workload::Service {
        name: "reviews".into(),
        namespace: "bookinfo".into(),
        hostname: "reviews.bookinfo.svc.cluster.local".into(),
        addresses: vec![
            workload::NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 10],
                length: None,
            },
            network_address(),
        ],
        ports: vec![port()],
        subject_alt_names: vec!["spiffe://cluster.local/ns/bookinfo/sa/reviews".into()],
        waypoint: Some(gateway_by_hostname()),
        load_balancing: Some(load_balancing()),
        ip_families: workload::IpFamilies::Dual.into(),
        extensions: vec![extension()],
        canonical: true,
        ingress_use_waypoint: true,
        weighted_waypoints: vec![weighted_waypoint()],
        visibility: workload::service::Visibility::Namespace.into(),
    }
}

pub fn workload() -> workload::Workload {
    workload::Workload {
        uid: "Kubernetes//Pod/bookinfo/reviews-v1-abc".into(),
        name: "reviews-v1-abc".into(),
        namespace: "bookinfo".into(),
        addresses: vec![
            vec![10, 0, 0, 1],
            vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ],
        hostname: "reviews-v1-abc.bookinfo.svc.cluster.local".into(),
        network: "net-a".into(),
        tunnel_protocol: workload::TunnelProtocol::Hbone.into(),
        trust_domain: "example.org".into(),
        service_account: "bookinfo-reviews".into(),
        waypoint: Some(gateway_by_hostname()),
        network_gateway: Some(gateway_by_address()),
        node: "node-1".into(),
        canonical_name: "reviews".into(),
        canonical_revision: "v1".into(),
        workload_type: workload::WorkloadType::Pod.into(),
        workload_name: "reviews-v1".into(),
        native_tunnel: true,
        application_tunnel: Some(application_tunnel()),
        services: BTreeMap::from([(
            "bookinfo/reviews.bookinfo.svc.cluster.local".to_owned(),
            port_list(),
        )]),
        authorization_policies: vec!["bookinfo/allow-productpage".into()],
        status: workload::WorkloadStatus::Unhealthy.into(),
        cluster_id: "cluster-east".into(),
        locality: Some(locality()),
        network_mode: workload::NetworkMode::HostNetwork.into(),
        extensions: vec![extension()],
        capacity: Some(3),
    }
}

pub fn address_of_workload() -> workload::Address {
    workload::Address {
        r#type: Some(workload::address::Type::Workload(workload())),
    }
}

pub fn address_of_service() -> workload::Address {
    workload::Address {
        r#type: Some(workload::address::Type::Service(service())),
    }
}

pub fn string_matches() -> Vec<security::StringMatch> {
    use security::string_match::MatchType;
    [
        MatchType::Exact("cluster.local/ns/bookinfo/sa/productpage".into()),
        MatchType::Prefix("cluster.local/ns/".into()),
        MatchType::Suffix("/sa/default".into()),
        MatchType::Presence(()),
    ]
    .into_iter()
    .map(|m| security::StringMatch {
        match_type: Some(m),
    })
    .collect()
}

pub fn service_account_match() -> security::ServiceAccountMatch {
    security::ServiceAccountMatch {
        namespace: "bookinfo".into(),
        service_account: "productpage".into(),
    }
}

pub fn security_address() -> security::Address {
    security::Address {
        address: vec![192, 168, 0, 0],
        length: 16,
    }
}

pub fn match_all_fields() -> security::Match {
    security::Match {
        namespaces: string_matches(),
        not_namespaces: vec![string_matches()[1].clone()],
        service_accounts: vec![service_account_match()],
        not_service_accounts: vec![security::ServiceAccountMatch {
            namespace: "default".into(),
            service_account: "sleep".into(),
        }],
        principals: vec![string_matches()[0].clone()],
        not_principals: vec![string_matches()[2].clone()],
        source_ips: vec![security_address()],
        not_source_ips: vec![security::Address {
            address: vec![192, 168, 1, 1],
            length: 32,
        }],
        destination_ips: vec![security::Address {
            address: vec![0xfd; 16],
            length: 64,
        }],
        not_destination_ips: vec![security_address()],
        destination_ports: vec![9080, 443],
        not_destination_ports: vec![15000],
        extensions: vec![extension()],
    }
}

pub fn clause() -> security::Clause {
    security::Clause {
        matches: vec![match_all_fields()],
    }
}

pub fn rule() -> security::Rule {
    security::Rule {
        clauses: vec![clause(), clause()],
    }
}

pub fn authorization() -> security::Authorization {
    security::Authorization {
        name: "deny-sleep".into(),
        namespace: "bookinfo".into(),
        scope: security::Scope::WorkloadSelector.into(),
        action: security::Action::Deny.into(),
        rules: vec![rule()],
        dry_run: true,
        extensions: vec![extension()],
    }
}

pub fn certificate_request() -> auth::IstioCertificateRequest {
    let fields = BTreeMap::from([(
        "ImpersonatedIdentity".to_owned(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(
                "spiffe://cluster.local/ns/bookinfo/sa/reviews".into(),
            )),
        },
    )]);
    auth::IstioCertificateRequest {
        csr: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        validity_duration: 86_400,
        metadata: Some(prost_types::Struct { fields }),
    }
}

pub fn certificate_response() -> auth::IstioCertificateResponse {
    auth::IstioCertificateResponse {
        cert_chain: vec![
            "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n".into(),
            "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".into(),
        ],
    }
}

/// Encodes `msg`, decodes it back, and returns the bytes.
pub fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) -> Vec<u8> {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(&back, msg);
    bytes
}
