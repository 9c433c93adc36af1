//! The resource types the xDS server serves, each described once, and which of them each kind of proxy
//! gets, in which order.
//!
//! A [`ResourceType`] says where its resources come from (a table of the index), whether every proxy
//! reads the same table ([`Scope::Wildcard`]) or each proxy the table of its own scope
//! ([`Scope::PerProxy`]: a waypoint reads only what is bound to it, computed once per waypoint and shared
//! by its replicas), and whether a client may ask for single keys on demand. A [`Profile`] lists the
//! types of one kind of proxy in push order: a type is not pushed while a type listed before it has
//! unsent changes, so a proxy never receives a resource that names one it has not been sent.
//! Everything per stream and per type (the planner, the connection loop, the admin view) reads these
//! descriptions; nothing else in the server names a type.

use std::sync::Arc;

use ambient_index::{Changes, Index, NameChanges, Table, TableId};
use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};

use super::node::Peer;

/// Whose resources a stream reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    /// One table shared by every proxy.
    Wildcard,
    /// The table of the proxy's scope key (e.g. its waypoint's `namespace/name`); a proxy without a key
    /// reads nothing. (The waypoint types are per proxy; ztunnel's are not.)
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the ztunnel types are wildcard")
    )]
    PerProxy(fn(&Peer) -> Option<Arc<str>>),
}

/// One resource type, as served.
#[derive(Debug)]
pub(super) struct ResourceType {
    pub(super) type_url: &'static str,
    /// The index table its resources come from.
    pub(super) table: TableId,
    pub(super) scope: Scope,
    /// Clients may subscribe to single keys (ztunnel's `XDS_ON_DEMAND`): `*` subscribed and unsubscribed
    /// at once, then keys as they are met.
    pub(super) on_demand: bool,
}

impl ResourceType {
    /// The scope key of `peer` for this type (`None` for wildcard types).
    pub(super) fn scope_of(&self, peer: &Peer) -> Option<Arc<str>> {
        match self.scope {
            Scope::Wildcard => None,
            Scope::PerProxy(key) => key(peer),
        }
    }
}

/// `istio.workload.Address`: workloads and services, the same for every ztunnel.
pub(super) static ADDRESS: ResourceType = ResourceType {
    type_url: ADDRESS_TYPE_URL,
    table: TableId::Addresses,
    scope: Scope::Wildcard,
    on_demand: true,
};

/// `istio.security.Authorization`: the policies ztunnels enforce.
pub(super) static AUTHORIZATION: ResourceType = ResourceType {
    type_url: AUTHORIZATION_TYPE_URL,
    table: TableId::Authorizations,
    scope: Scope::Wildcard,
    on_demand: false,
};

/// The types one kind of proxy is served.
#[derive(Debug)]
pub(super) struct Profile {
    /// The node id's type (`ztunnel`, ...), or `""` for the default profile.
    pub(super) proxy_type: &'static str,
    /// Served types in push order: a type waits while an earlier one has unsent changes.
    pub(super) types: &'static [&'static ResourceType],
    /// The proxy subscribes to all its types at once: a type also waits until every earlier type is
    /// subscribed, and the initial sync ends only when every type has been answered.
    pub(super) subscribes_all: bool,
    /// The resource names a NACK's message names (to show which ones the proxy rejected).
    pub(super) nacked_names: fn(&str) -> Vec<Arc<str>>,
}

/// ztunnel: policies before the workloads that name them; both types subscribed at once.
pub(super) static ZTUNNEL: Profile = Profile {
    proxy_type: "ztunnel",
    types: &[&AUTHORIZATION, &ADDRESS],
    subscribes_all: true,
    nacked_names: ztunnel_nacked_names,
};

/// Any other proxy: the same types, each served once it is asked for.
pub(super) static DEFAULT: Profile = Profile {
    proxy_type: "",
    types: &[&AUTHORIZATION, &ADDRESS],
    subscribes_all: false,
    nacked_names: ztunnel_nacked_names,
};

/// The profile of a node type.
pub(super) fn profile(proxy_type: &str) -> &'static Profile {
    [&ZTUNNEL]
        .into_iter()
        .find(|p| p.proxy_type == proxy_type)
        .unwrap_or(&DEFAULT)
}

/// Where the planner finds the resources of a type and what a change report changed of them.
pub(super) trait Tables {
    /// The table of `table` for scope `scope` (`None`: the wildcard table). `None` when there is none.
    fn lookup(&self, table: TableId, scope: Option<&str>) -> Option<&Table>;
    /// The index generation these tables are at.
    fn generation(&self) -> u64;
}

impl Tables for Index {
    /// The index keeps wildcard tables only: every table is read whatever the scope.
    fn lookup(&self, table: TableId, _scope: Option<&str>) -> Option<&Table> {
        Some(self.table(table))
    }

    fn generation(&self) -> u64 {
        Index::generation(self)
    }
}

/// The names of `table` (for `scope`) that `changes` touched.
pub(super) fn changed_names<'a>(
    changes: &'a Changes,
    table: TableId,
    _scope: Option<&str>,
) -> Option<&'a NameChanges> {
    Some(changes.of(table))
}

/// The resource names of a NACK message in ztunnel's form `<name>: <error>; <name2>: <error2>`.
pub(super) fn ztunnel_nacked_names(message: &str) -> Vec<Arc<str>> {
    message
        .split("; ")
        .filter_map(|part| {
            part.split_once(": ")
                .map(|(name, _)| Arc::from(name.trim()))
        })
        .filter(|name: &Arc<str>| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_messages_name_the_rejected_resources() {
        let names = ztunnel_nacked_names(
            "Kubernetes//Pod/ns/a: invalid IP length 3; ns/svc.example: decode: bad",
        );
        assert_eq!(
            names.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
            ["Kubernetes//Pod/ns/a", "ns/svc.example"]
        );
        assert!(ztunnel_nacked_names("something went wrong").is_empty());
    }

    #[test]
    fn ztunnels_get_policies_before_addresses_and_others_the_same_types() {
        let urls = |p: &Profile| p.types.iter().map(|t| t.type_url).collect::<Vec<_>>();
        assert_eq!(
            urls(profile("ztunnel")),
            [AUTHORIZATION_TYPE_URL, ADDRESS_TYPE_URL]
        );
        assert!(profile("ztunnel").subscribes_all);
        assert_eq!(urls(profile("sidecar")), urls(&ZTUNNEL));
        assert!(!profile("sidecar").subscribes_all);
    }
}
