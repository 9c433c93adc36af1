//! Every message of the three packages survives encode → decode unchanged, with
//! every field set, and the embedded descriptors agree with the generated code.

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;

use ambient_proto::descriptor_pool;
use common::*;
use prost::{Message, Name};
use prost_reflect::DynamicMessage;

/// Round-trips `msg` through the generated type and through a reflection
/// decode, and checks that every field (one per real oneof) is populated so
/// the fixture really exercises the whole message.
fn check<M>(msg: &M, seen: &mut BTreeSet<String>)
where
    M: Message + Name + Default + PartialEq + Debug,
{
    let bytes = round_trip(msg);
    let full_name = M::full_name();
    let descriptor = descriptor_pool()
        .get_message_by_name(&full_name)
        .unwrap_or_else(|| panic!("{full_name} missing from descriptor pool"));
    let dynamic = DynamicMessage::decode(descriptor.clone(), bytes.as_slice()).unwrap();
    assert_eq!(
        dynamic.unknown_fields().count(),
        0,
        "{full_name}: descriptor lacks fields the generated code encodes"
    );
    assert_eq!(dynamic.encode_to_vec().len(), bytes.len(), "{full_name}");
    assert_eq!(&dynamic.transcode_to::<M>().unwrap(), msg, "{full_name}");

    for field in descriptor.fields() {
        let in_real_oneof = field
            .containing_oneof()
            .is_some_and(|oneof| !oneof.is_synthetic());
        if !in_real_oneof {
            assert!(
                dynamic.has_field(&field),
                "{full_name}.{} is left at its default in the fixture",
                field.name()
            );
        }
    }
    for oneof in descriptor.oneofs().filter(|o| !o.is_synthetic()) {
        assert!(
            oneof.fields().any(|f| dynamic.has_field(&f)),
            "{full_name}: oneof {} unset",
            oneof.name()
        );
    }
    seen.insert(full_name);
}

#[test]
fn every_message_round_trips_with_all_fields_set() {
    let mut seen = BTreeSet::new();

    // istio.workload
    check(&address_of_workload(), &mut seen);
    check(&address_of_service(), &mut seen);
    check(&workload(), &mut seen);
    check(&service(), &mut seen);
    check(&gateway_by_hostname(), &mut seen);
    check(&gateway_by_address(), &mut seen);
    check(&network_address(), &mut seen);
    check(&namespaced_hostname(), &mut seen);
    check(&weighted_waypoint(), &mut seen);
    check(&port(), &mut seen);
    check(&port_list(), &mut seen);
    check(&locality(), &mut seen);
    check(&extension(), &mut seen);
    check(&load_balancing(), &mut seen);
    check(&application_tunnel(), &mut seen);

    // istio.security
    for string_match in string_matches() {
        check(&string_match, &mut seen);
    }
    check(&service_account_match(), &mut seen);
    check(&security_address(), &mut seen);
    check(&match_all_fields(), &mut seen);
    check(&clause(), &mut seen);
    check(&rule(), &mut seen);
    check(&authorization(), &mut seen);

    // istio.v1.auth
    check(&certificate_request(), &mut seen);
    check(&certificate_response(), &mut seen);

    let ours: BTreeSet<String> = descriptor_pool()
        .all_messages()
        .filter(|m| m.package_name().starts_with("istio."))
        // Map entries are synthesized by protoc, not messages of their own.
        .filter(|m| !m.is_map_entry())
        .map(|m| m.full_name().to_owned())
        .collect();
    assert_eq!(
        seen, ours,
        "every message in the pool has a round-trip fixture"
    );
}

#[test]
fn every_address_and_gateway_variant_decodes_to_itself() {
    use ambient_proto::workload::{address, gateway_address};

    let decoded =
        ambient_proto::workload::Address::decode(address_of_workload().encode_to_vec().as_slice())
            .unwrap();
    assert!(matches!(decoded.r#type, Some(address::Type::Workload(w)) if w == workload()));

    let decoded =
        ambient_proto::workload::Address::decode(address_of_service().encode_to_vec().as_slice())
            .unwrap();
    assert!(matches!(decoded.r#type, Some(address::Type::Service(s)) if s == service()));

    let decoded = ambient_proto::workload::GatewayAddress::decode(
        gateway_by_address().encode_to_vec().as_slice(),
    )
    .unwrap();
    assert!(matches!(
        decoded.destination,
        Some(gateway_address::Destination::Address(a)) if a == network_address()
    ));
}

#[test]
fn empty_messages_round_trip() {
    // Defaults encode to nothing and decode back to defaults.
    assert!(round_trip(&ambient_proto::workload::Address::default()).is_empty());
    assert!(round_trip(&ambient_proto::security::Authorization::default()).is_empty());
    assert!(round_trip(&ambient_proto::auth::IstioCertificateRequest::default()).is_empty());
}
