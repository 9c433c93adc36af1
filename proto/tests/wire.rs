//! Pins the wire format: field numbers, enum values and a few exact encodings that ztunnel reads
//! (docs/reference/ztunnel.md#messages-consumed), plus the fit into Envoy's xDS envelope.

mod common;

use ambient_proto::{descriptor_pool, security, workload};
use common::*;
use prost::Message;

/// (message, [(field, number)]) exactly as ztunnel's own `.proto` files number them.
const MESSAGES: &[(&str, &[(&str, u32)])] = &[
    ("istio.workload.Address", &[("workload", 1), ("service", 2)]),
    (
        "istio.workload.Service",
        &[
            ("name", 1),
            ("namespace", 2),
            ("hostname", 3),
            ("addresses", 4),
            ("ports", 5),
            ("subject_alt_names", 6),
            ("waypoint", 7),
            ("load_balancing", 8),
            ("ip_families", 9),
            ("extensions", 10),
            ("canonical", 11),
            ("ingress_use_waypoint", 12),
            ("weighted_waypoints", 13),
            ("visibility", 14),
        ],
    ),
    (
        "istio.workload.Workload",
        &[
            ("name", 1),
            ("namespace", 2),
            ("addresses", 3),
            ("network", 4),
            ("tunnel_protocol", 5),
            ("trust_domain", 6),
            ("service_account", 7),
            ("waypoint", 8),
            ("node", 9),
            ("canonical_name", 10),
            ("canonical_revision", 11),
            ("workload_type", 12),
            ("workload_name", 13),
            ("native_tunnel", 14),
            ("authorization_policies", 16),
            ("status", 17),
            ("cluster_id", 18),
            ("network_gateway", 19),
            ("uid", 20),
            ("hostname", 21),
            ("services", 22),
            ("application_tunnel", 23),
            ("locality", 24),
            ("network_mode", 25),
            ("extensions", 26),
            ("capacity", 27),
        ],
    ),
    (
        "istio.workload.LoadBalancing",
        &[("routing_preference", 1), ("mode", 2), ("health_policy", 3)],
    ),
    (
        "istio.workload.Locality",
        &[("region", 1), ("zone", 2), ("subzone", 3)],
    ),
    ("istio.workload.PortList", &[("ports", 1)]),
    (
        "istio.workload.Port",
        &[("service_port", 1), ("target_port", 2), ("app_protocol", 3)],
    ),
    (
        "istio.workload.ApplicationTunnel",
        &[("protocol", 1), ("port", 2)],
    ),
    (
        "istio.workload.GatewayAddress",
        &[("hostname", 1), ("address", 2), ("hbone_mtls_port", 3)],
    ),
    (
        "istio.workload.WeightedWaypoint",
        &[("destination", 1), ("weight", 2)],
    ),
    (
        "istio.workload.NetworkAddress",
        &[("network", 1), ("address", 2), ("length", 3)],
    ),
    (
        "istio.workload.NamespacedHostname",
        &[("namespace", 1), ("hostname", 2)],
    ),
    ("istio.workload.Extension", &[("name", 1), ("config", 2)]),
    (
        "istio.security.Authorization",
        &[
            ("name", 1),
            ("namespace", 2),
            ("scope", 3),
            ("action", 4),
            ("rules", 5),
            ("dry_run", 6),
            ("extensions", 7),
        ],
    ),
    ("istio.security.Rule", &[("clauses", 1)]),
    ("istio.security.Clause", &[("matches", 2)]),
    (
        "istio.security.Match",
        &[
            ("namespaces", 1),
            ("not_namespaces", 2),
            ("principals", 3),
            ("not_principals", 4),
            ("source_ips", 5),
            ("not_source_ips", 6),
            ("destination_ips", 7),
            ("not_destination_ips", 8),
            ("destination_ports", 9),
            ("not_destination_ports", 10),
            ("service_accounts", 11),
            ("not_service_accounts", 12),
            ("extensions", 13),
        ],
    ),
    ("istio.security.Address", &[("address", 1), ("length", 2)]),
    (
        "istio.security.ServiceAccountMatch",
        &[("namespace", 1), ("serviceAccount", 2)],
    ),
    (
        "istio.security.StringMatch",
        &[("exact", 1), ("prefix", 2), ("suffix", 3), ("presence", 4)],
    ),
    (
        "istio.v1.auth.IstioCertificateRequest",
        &[("csr", 1), ("validity_duration", 3), ("metadata", 4)],
    ),
    (
        "istio.v1.auth.IstioCertificateResponse",
        &[("cert_chain", 1)],
    ),
];

/// (enum, [(value, number)]); names are what the JSON views print.
const ENUMS: &[(&str, &[(&str, i32)])] = &[
    (
        "istio.workload.Service.Visibility",
        &[("PUBLIC", 0), ("NAMESPACE", 1)],
    ),
    (
        "istio.workload.IPFamilies",
        &[
            ("AUTOMATIC", 0),
            ("IPV4_ONLY", 1),
            ("IPV6_ONLY", 2),
            ("DUAL", 3),
        ],
    ),
    (
        "istio.workload.NetworkMode",
        &[("STANDARD", 0), ("HOST_NETWORK", 1)],
    ),
    (
        "istio.workload.LoadBalancing.Scope",
        &[
            ("UNSPECIFIED_SCOPE", 0),
            ("REGION", 1),
            ("ZONE", 2),
            ("SUBZONE", 3),
            ("NODE", 4),
            ("CLUSTER", 5),
            ("NETWORK", 6),
        ],
    ),
    (
        "istio.workload.LoadBalancing.Mode",
        &[
            ("UNSPECIFIED_MODE", 0),
            ("STRICT", 1),
            ("FAILOVER", 2),
            ("PASSTHROUGH", 3),
        ],
    ),
    (
        "istio.workload.LoadBalancing.HealthPolicy",
        &[("ONLY_HEALTHY", 0), ("ALLOW_ALL", 1)],
    ),
    (
        "istio.workload.WorkloadStatus",
        &[("HEALTHY", 0), ("UNHEALTHY", 1)],
    ),
    (
        "istio.workload.WorkloadType",
        &[("DEPLOYMENT", 0), ("CRONJOB", 1), ("POD", 2), ("JOB", 3)],
    ),
    (
        "istio.workload.AppProtocol",
        &[
            ("UNKNOWN", 0),
            ("HTTP11", 1),
            ("HTTP2", 2),
            ("GRPC", 3),
            ("TCP", 4),
            ("TLS", 5),
        ],
    ),
    (
        "istio.workload.TunnelProtocol",
        &[("NONE", 0), ("HBONE", 1), ("LEGACY_ISTIO_MTLS", 2)],
    ),
    (
        "istio.workload.ApplicationTunnel.Protocol",
        &[("NONE", 0), ("PROXY", 1)],
    ),
    (
        "istio.security.Scope",
        &[("GLOBAL", 0), ("NAMESPACE", 1), ("WORKLOAD_SELECTOR", 2)],
    ),
    ("istio.security.Action", &[("ALLOW", 0), ("DENY", 1)]),
];

#[test]
fn field_numbers_match_ztunnels_protos() {
    let pool = descriptor_pool();
    for (message, fields) in MESSAGES {
        let descriptor = pool
            .get_message_by_name(message)
            .unwrap_or_else(|| panic!("{message} missing"));
        let mut actual: Vec<(String, u32)> = descriptor
            .fields()
            .map(|f| (f.name().to_owned(), f.number()))
            .collect();
        actual.sort_by_key(|(_, n)| *n);
        let mut expected: Vec<(String, u32)> =
            fields.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect();
        expected.sort_by_key(|(_, n)| *n);
        assert_eq!(actual, expected, "{message}");
    }
}

#[test]
fn enum_values_match_upstream_names_and_numbers() {
    let pool = descriptor_pool();
    for (name, values) in ENUMS {
        let descriptor = pool
            .get_enum_by_name(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let actual: Vec<(String, i32)> = descriptor
            .values()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect();
        let expected: Vec<(String, i32)> =
            values.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect();
        assert_eq!(actual, expected, "{name}");
    }
    let ours = pool
        .all_enums()
        .filter(|e| e.package_name().starts_with("istio."))
        .count();
    assert_eq!(ours, ENUMS.len(), "every enum is pinned");
}

#[test]
fn well_known_field_types_and_presence() {
    let pool = descriptor_pool();
    let field = |message: &str, field: &str| {
        pool.get_message_by_name(message)
            .and_then(|m| m.get_field_by_name(field))
            .unwrap_or_else(|| panic!("{message}.{field} missing"))
    };
    let kind_name = |f: prost_reflect::FieldDescriptor| match f.kind() {
        prost_reflect::Kind::Message(m) => m.full_name().to_owned(),
        other => format!("{other:?}"),
    };
    assert_eq!(
        kind_name(field("istio.workload.Workload", "capacity")),
        "google.protobuf.UInt32Value"
    );
    assert_eq!(
        kind_name(field("istio.workload.Extension", "config")),
        "google.protobuf.Any"
    );
    assert_eq!(
        kind_name(field("istio.security.StringMatch", "presence")),
        "google.protobuf.Empty"
    );
    assert_eq!(
        kind_name(field("istio.v1.auth.IstioCertificateRequest", "metadata")),
        "google.protobuf.Struct"
    );
    assert!(matches!(
        field("istio.v1.auth.IstioCertificateRequest", "validity_duration").kind(),
        prost_reflect::Kind::Int64
    ));
    assert!(field("istio.workload.NetworkAddress", "length").supports_presence());
    assert!(field("istio.workload.Workload", "services").is_map());

    let ca = pool
        .get_service_by_name("istio.v1.auth.IstioCertificateService")
        .expect("CA service");
    let method = ca.methods().next().expect("one method");
    assert_eq!(method.name(), "CreateCertificate");
    assert_eq!(
        method.input().full_name(),
        "istio.v1.auth.IstioCertificateRequest"
    );
    assert_eq!(
        method.output().full_name(),
        "istio.v1.auth.IstioCertificateResponse"
    );
}

#[test]
fn workload_uid_is_field_20() {
    let w = workload::Workload {
        uid: "x".into(),
        ..Default::default()
    };
    // Tag (20 << 3 | 2) = 162 as a varint is [0xa2, 0x01]; then length 1.
    assert_eq!(w.encode_to_vec(), [0xa2, 0x01, 0x01, b'x']);
}

#[test]
fn workload_capacity_is_a_wrapper_at_field_27() {
    let w = workload::Workload {
        capacity: Some(0),
        ..Default::default()
    };
    // Some(0) is still sent: an empty UInt32Value, tag (27 << 3 | 2) = 218.
    assert_eq!(w.encode_to_vec(), [0xda, 0x01, 0x00]);
    let w = workload::Workload {
        capacity: Some(5),
        ..Default::default()
    };
    assert_eq!(w.encode_to_vec(), [0xda, 0x01, 0x02, 0x08, 0x05]);
}

#[test]
fn service_visibility_namespace_is_field_14_varint() {
    let s = workload::Service {
        visibility: workload::service::Visibility::Namespace.into(),
        ..Default::default()
    };
    // Tag (14 << 3 | 0) = 112.
    assert_eq!(s.encode_to_vec(), [0x70, 0x01]);
}

#[test]
fn address_oneof_tags() {
    let a = workload::Address {
        r#type: Some(workload::address::Type::Workload(Default::default())),
    };
    assert_eq!(a.encode_to_vec(), [0x0a, 0x00]);
    let a = workload::Address {
        r#type: Some(workload::address::Type::Service(Default::default())),
    };
    assert_eq!(a.encode_to_vec(), [0x12, 0x00]);
}

#[test]
fn network_address_length_presence() {
    let host = workload::NetworkAddress {
        network: String::new(),
        address: vec![10, 0, 0, 1],
        length: None,
    };
    assert_eq!(host.encode_to_vec(), [0x12, 0x04, 10, 0, 0, 1]);
    let zero_prefix = workload::NetworkAddress {
        length: Some(0),
        ..host
    };
    // proto3 `optional`: an explicit 0 is still written.
    assert_eq!(
        zero_prefix.encode_to_vec(),
        [0x12, 0x04, 10, 0, 0, 1, 0x18, 0x00]
    );
}

#[test]
fn gateway_address_tags() {
    let g = workload::GatewayAddress {
        destination: Some(workload::gateway_address::Destination::Hostname(
            workload::NamespacedHostname {
                namespace: "a".into(),
                hostname: "b".into(),
            },
        )),
        hbone_mtls_port: 15008,
    };
    // hbone_mtls_port is emitted first by prost (field order in the struct),
    // then the oneof; both orders are valid protobuf.
    let bytes = g.encode_to_vec();
    assert!(
        bytes.windows(3).any(|w| w == [0x18, 0xa0, 0x75]),
        "{bytes:02x?}"
    );
    assert!(
        bytes
            .windows(8)
            .any(|w| w == [0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b']),
        "{bytes:02x?}"
    );
}

#[test]
fn authorization_and_string_match_tags() {
    let a = security::Authorization {
        action: security::Action::Deny.into(),
        scope: security::Scope::Namespace.into(),
        ..Default::default()
    };
    assert_eq!(a.encode_to_vec(), [0x18, 0x01, 0x20, 0x01]);
    let presence = security::StringMatch {
        match_type: Some(security::string_match::MatchType::Presence(())),
    };
    assert_eq!(presence.encode_to_vec(), [0x22, 0x00]);
    let sa = security::ServiceAccountMatch {
        namespace: String::new(),
        service_account: "s".into(),
    };
    assert_eq!(sa.encode_to_vec(), [0x12, 0x01, b's']);
}

#[test]
fn certificate_request_tags() {
    let r = ambient_proto::auth::IstioCertificateRequest {
        csr: "c".into(),
        validity_duration: 1,
        metadata: None,
    };
    assert_eq!(r.encode_to_vec(), [0x0a, 0x01, b'c', 0x18, 0x01]);
}

#[test]
fn type_urls() {
    use prost::Name;
    assert_eq!(
        ambient_proto::ADDRESS_TYPE_URL,
        "type.googleapis.com/istio.workload.Address"
    );
    assert_eq!(
        ambient_proto::AUTHORIZATION_TYPE_URL,
        "type.googleapis.com/istio.security.Authorization"
    );
    assert_eq!(
        ambient_proto::WORKLOAD_TYPE_URL,
        "type.googleapis.com/istio.workload.Workload"
    );
    assert_eq!(
        workload::Address::type_url(),
        ambient_proto::ADDRESS_TYPE_URL
    );
    assert_eq!(
        security::Authorization::type_url(),
        ambient_proto::AUTHORIZATION_TYPE_URL
    );
    assert_eq!(
        workload::Workload::type_url(),
        ambient_proto::WORKLOAD_TYPE_URL
    );
}

#[test]
fn address_travels_inside_an_envoy_delta_response() {
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
    use envoy_types::pb::google::protobuf::Any as EnvoyAny;

    let address = address_of_workload();
    let any = ambient_proto::to_any(ambient_proto::ADDRESS_TYPE_URL, &address);
    assert_eq!(any, prost_types::Any::from_msg(&address).unwrap());

    let response = DeltaDiscoveryResponse {
        system_version_info: "1".into(),
        type_url: ambient_proto::ADDRESS_TYPE_URL.into(),
        nonce: "n1".into(),
        resources: vec![Resource {
            name: address_uid(&address),
            version: "v1".into(),
            resource: Some(EnvoyAny {
                type_url: any.type_url.clone(),
                value: any.value.clone(),
            }),
            ..Default::default()
        }],
        removed_resources: vec!["Kubernetes//Pod/bookinfo/gone".into()],
        ..Default::default()
    };
    let bytes = response.encode_to_vec();

    let decoded = DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, response);
    let resource = &decoded.resources[0];
    assert_eq!(resource.name, "Kubernetes//Pod/bookinfo/reviews-v1-abc");
    let packed = resource.resource.as_ref().unwrap();
    assert_eq!(packed.type_url, ambient_proto::ADDRESS_TYPE_URL);
    let back = workload::Address::decode(packed.value.as_slice()).unwrap();
    assert_eq!(back, address);

    // The two Any types are the same message on the wire.
    let envoy_any = EnvoyAny {
        type_url: any.type_url.clone(),
        value: any.value.clone(),
    };
    assert_eq!(
        prost_types::Any::decode(envoy_any.encode_to_vec().as_slice()).unwrap(),
        any
    );
}

fn address_uid(address: &workload::Address) -> String {
    match &address.r#type {
        Some(workload::address::Type::Workload(w)) => w.uid.clone(),
        Some(workload::address::Type::Service(s)) => format!("{}/{}", s.namespace, s.hostname),
        None => String::new(),
    }
}
