//! Helpers that read the index back: Address and Authorization resources decoded, the policies of a
//! Workload, and the names that changed or were removed.

use std::collections::BTreeMap;

use ambient_proto::workload::{Address, Service as ServiceResource, Workload, address};
use prost::Message;

use crate::{Index, NameChanges};

/// Every Address resource of the index, decoded, by name. A resource that does not decode is left out
/// (and so shows up as a difference in any comparison).
pub fn decoded_addresses(index: &Index) -> BTreeMap<String, Address> {
    index
        .addresses()
        .iter()
        .filter_map(|(name, res)| {
            let addr = Address::decode(res.body.clone()).ok()?;
            Some((name.to_string(), addr))
        })
        .collect()
}

/// The Workload stored under `uid`, if that resource is a Workload.
pub fn workload(index: &Index, uid: &str) -> Option<Workload> {
    let res = index.address(uid)?;
    match Address::decode(res.body.clone()).ok()?.r#type? {
        address::Type::Workload(w) => Some(w),
        address::Type::Service(_) => None,
    }
}

/// The Service stored under `ns/hostname`, if that resource is a Service.
pub fn service_resource(index: &Index, name: &str) -> Option<ServiceResource> {
    let res = index.address(name)?;
    match Address::decode(res.body.clone()).ok()?.r#type? {
        address::Type::Service(s) => Some(s),
        address::Type::Workload(_) => None,
    }
}

/// Every Workload resource, sorted by uid.
pub fn workloads(index: &Index) -> Vec<Workload> {
    decoded_addresses(index)
        .into_values()
        .filter_map(|a| match a.r#type? {
            address::Type::Workload(w) => Some(w),
            address::Type::Service(_) => None,
        })
        .collect()
}

/// Every Service resource, sorted by resource name.
pub fn service_resources(index: &Index) -> Vec<ServiceResource> {
    decoded_addresses(index)
        .into_values()
        .filter_map(|a| match a.r#type? {
            address::Type::Service(s) => Some(s),
            address::Type::Workload(_) => None,
        })
        .collect()
}

/// `(changed, removed)`, each sorted, for exact assertions.
pub fn names(changes: &NameChanges) -> (Vec<String>, Vec<String>) {
    (
        changes.changed.iter().map(|n| n.to_string()).collect(),
        changes.removed.iter().map(|n| n.to_string()).collect(),
    )
}

/// Every Authorization resource of the index, decoded, by name (undecodable ones are left out).
pub fn decoded_authorizations(
    index: &Index,
) -> BTreeMap<String, ambient_proto::security::Authorization> {
    index
        .authorizations()
        .iter()
        .filter_map(|(name, res)| {
            let auth = ambient_proto::security::Authorization::decode(res.body.clone()).ok()?;
            Some((name.to_string(), auth))
        })
        .collect()
}

/// The `authorization_policies` of the Workload stored under `uid` (empty when there is no such Workload).
pub fn workload_policies(index: &Index, uid: &str) -> Vec<String> {
    workload(index, uid)
        .map(|w| w.authorization_policies)
        .unwrap_or_default()
}

/// The names a correct index reports when its resources move from `before` to `after`: `(changed, removed)`,
/// each sorted.
pub fn expected_changes(
    before: &std::collections::HashMap<std::sync::Arc<str>, crate::Resource>,
    after: &std::collections::HashMap<std::sync::Arc<str>, crate::Resource>,
) -> (Vec<String>, Vec<String>) {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(name, res)| before.get(*name) != Some(*res))
        .map(|(name, _)| name.to_string())
        .collect();
    let mut removed: Vec<String> = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    changed.sort();
    removed.sort();
    (changed, removed)
}

/// The bytes an `istio.workload` message carries for a test IP (`"10.0.0.1"`, `"fd00::1"`).
pub fn ip(s: &str) -> Vec<u8> {
    match s.parse() {
        Ok(addr) => crate::waypoints::ip_bytes(addr),
        Err(e) => panic!("bad test IP {s:?}: {e}"),
    }
}
