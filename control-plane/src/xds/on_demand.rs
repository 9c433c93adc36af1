//! On-demand addresses (ztunnel with `XDS_ON_DEMAND=true`,
//! docs/reference/ztunnel.md#delta-xds-on-demand-addresses): the client subscribes to no address at first
//! (`["*"]` subscribed and unsubscribed), then asks for single keys as it meets them: a workload uid, a
//! Service's `namespace/hostname`, or `network/ip`. It waits for a response that carries exactly that key, as
//! a resource name or among `removed_resources`, with no timeout; so every key asked for is answered, under
//! the key itself (istiod answers under the primary name with the key as an alias, which ztunnel does not
//! match), and a key that names nothing is answered as removed.
//!
//! A key's resource is found again when the index changes: a uid or `namespace/hostname` names its
//! resource directly; a `network/ip` key is resolved by looking through the addresses for that IP (a
//! full look when asked, then only the changed resources).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ambient_proto::workload::{Address, address};
use prost::Message;

use ambient_index::{Resource, Table};

/// One key a client asked for.
#[derive(Debug, Clone, Default)]
struct Key {
    /// `(network, ip)` for a `network/ip` key.
    ip: Option<(String, IpAddr)>,
    /// The resource the key names now.
    resolved: Option<Arc<str>>,
}

/// The address keys of one on-demand connection.
#[derive(Debug, Default)]
pub(super) struct OnDemand {
    keys: BTreeMap<Arc<str>, Key>,
    /// Versions sent per key (absent: nothing held, or sent as removed).
    sent: HashMap<Arc<str>, u64>,
    /// Keys asked for and not answered yet.
    asked: BTreeSet<Arc<str>>,
}

/// What to send: resources under their key, and keys to remove.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub(super) resources: Vec<(Arc<str>, Resource)>,
    pub(super) removed: Vec<Arc<str>>,
}

impl OnDemand {
    /// Keys were asked for: each is answered at the next response.
    pub(super) fn subscribe(&mut self, keys: impl IntoIterator<Item = String>) {
        for key in keys {
            if key == "*" {
                continue;
            }
            let key: Arc<str> = Arc::from(key);
            self.keys.entry(key.clone()).or_insert_with(|| Key {
                ip: parse_ip_key(&key),
                resolved: None,
            });
            // Resolved afresh when answered.
            if let Some(k) = self.keys.get_mut(&key) {
                k.resolved = None;
            }
            self.sent.remove(&key);
            self.asked.insert(key);
        }
    }

    pub(super) fn unsubscribe(&mut self, keys: &[String]) {
        for key in keys {
            self.keys.remove(key.as_str());
            self.sent.remove(key.as_str());
            self.asked.remove(key.as_str());
        }
    }

    pub(super) fn has_work(&self) -> bool {
        !self.asked.is_empty()
    }

    /// The first response of a stream: the keys the client holds (from `initial_resource_versions`)
    /// are its subscriptions; equal versions are skipped, the rest sent or removed.
    pub(super) fn first(&mut self, table: &Table, held: HashMap<Arc<str>, Option<u64>>) -> Answer {
        for (key, version) in held {
            self.keys.insert(
                key.clone(),
                Key {
                    ip: parse_ip_key(&key),
                    resolved: None,
                },
            );
            match version {
                Some(v) => {
                    self.sent.insert(key, v);
                }
                // Asked for before the reconnect and not answered: answer now.
                None => {
                    self.asked.insert(key);
                }
            }
        }
        let all: BTreeSet<Arc<str>> = self.keys.keys().cloned().collect();
        self.answer(table, &all)
    }

    /// A later response: the keys asked for, and the keys whose resource is among `changed` (names
    /// changed or removed in the index since the last response).
    pub(super) fn next(&mut self, table: &Table, changed: &BTreeSet<Arc<str>>) -> Answer {
        let mut affected: BTreeSet<Arc<str>> = self.asked.clone();
        for (key, k) in &self.keys {
            let hit = match (&k.ip, &k.resolved) {
                (_, Some(r)) => changed.contains(r),
                (None, None) => changed.contains(key),
                // An unresolved IP key: does a changed resource carry that IP now?
                (Some((network, ip)), None) => changed
                    .iter()
                    .any(|name| table.get(name).is_some_and(|r| carries_ip(r, network, *ip))),
            };
            if hit {
                affected.insert(key.clone());
            }
        }
        self.answer(table, &affected)
    }

    fn answer(&mut self, table: &Table, keys: &BTreeSet<Arc<str>>) -> Answer {
        let mut out = Answer::default();
        for key in keys {
            let Some(k) = self.keys.get_mut(key) else {
                continue;
            };
            k.resolved = resolve(table, key, k.ip.as_ref());
            let resource = k.resolved.as_deref().and_then(|r| table.get(r));
            let asked = self.asked.remove(key);
            match resource {
                Some(resource) => {
                    if asked || self.sent.get(key) != Some(&resource.version) {
                        self.sent.insert(key.clone(), resource.version);
                        out.resources.push((key.clone(), resource.clone()));
                    }
                }
                None => {
                    if self.sent.remove(key).is_some() || asked {
                        out.removed.push(key.clone());
                    }
                }
            }
        }
        out
    }
}

/// `network/ip` (the network may be empty: `/10.0.0.1`); `None` for a uid or `namespace/hostname`.
fn parse_ip_key(key: &str) -> Option<(String, IpAddr)> {
    let (network, ip) = key.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    Some((network.to_string(), ip))
}

/// The resource a key names now.
fn resolve(table: &Table, key: &Arc<str>, ip: Option<&(String, IpAddr)>) -> Option<Arc<str>> {
    match ip {
        None => table.get(key).map(|r| r.name.clone()),
        Some((network, ip)) => {
            // Workloads first: a pod IP and a Service VIP do not coincide, but be definite.
            let mut service = None;
            for (name, resource) in table {
                match decode(resource) {
                    Some(address::Type::Workload(w))
                        if w.network == *network && w.addresses.iter().any(|a| same_ip(a, *ip)) =>
                    {
                        return Some(name.clone());
                    }
                    Some(address::Type::Service(s))
                        if service.is_none()
                            && s.addresses
                                .iter()
                                .any(|a| a.network == *network && same_ip(&a.address, *ip)) =>
                    {
                        service = Some(name.clone());
                    }
                    _ => {}
                }
            }
            service
        }
    }
}

fn carries_ip(resource: &Resource, network: &str, ip: IpAddr) -> bool {
    match decode(resource) {
        Some(address::Type::Workload(w)) => {
            w.network == network && w.addresses.iter().any(|a| same_ip(a, ip))
        }
        Some(address::Type::Service(s)) => s
            .addresses
            .iter()
            .any(|a| a.network == network && same_ip(&a.address, ip)),
        None => false,
    }
}

fn decode(resource: &Resource) -> Option<address::Type> {
    Address::decode(&*resource.body).ok()?.r#type
}

fn same_ip(bytes: &[u8], ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => bytes == v4.octets(),
        IpAddr::V6(v6) => bytes == v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart() {
        assert_eq!(
            parse_ip_key("/10.0.0.1"),
            Some((String::new(), "10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse_ip_key("net1/fd00::1"),
            Some(("net1".to_string(), "fd00::1".parse().unwrap()))
        );
        assert_eq!(parse_ip_key("Kubernetes//Pod/ns/name"), None);
        assert_eq!(parse_ip_key("ns/svc.ns.svc.cluster.local"), None);
    }
}
