//! The delta planner: what one stream must be sent next and what it has been sent, per resource type.
//! Pure: no I/O, no locks, no clock (times are passed in), no tonic. The connection task calls it with the
//! stream's requests and the index's change reports, asks it for a push under the index read lock (only
//! cheap handles are cloned there), and encodes the push after the lock is released. The admin API reads
//! the same [`StreamState`], so what it shows is what the planner works from.
//!
//! A stream does not keep a copy of every name and version it sent (with thousands of streams and tens
//! of thousands of resources that would dominate the server's memory). Instead, per type:
//! - the first response compares the whole table with the client's `initial_resource_versions` (equal
//!   versions are skipped, vanished names are removed) and records the index generation it saw;
//! - after that, the change reports say which names to look at again: each is sent at its current
//!   version, or removed when it is gone. Reports from before the full comparison are skipped, and a name
//!   created and removed between two responses is neither sent nor removed;
//! - one response per type is outstanding at a time: reports that arrive while the client has not
//!   answered are folded together and go out after the ACK or NACK.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ambient_index::{NameChanges, Resource, Snapshot, Table};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::node::Peer;
use super::on_demand::OnDemand;
use super::types::{Profile, ResourceType, Tables};

/// One stream: who it is, and one [`Subscription`] per type its profile serves.
#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) id: u64,
    pub(super) peer: Peer,
    pub(super) peer_addr: String,
    pub(super) connected_since: SystemTime,
    pub(super) profile: &'static Profile,
    /// In the profile's order.
    pub(super) subscriptions: Vec<Subscription>,
    nonces: u64,
}

/// What a stream knows about one type: the planner's state, and what the admin API shows of it.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) kind: &'static ResourceType,
    /// The proxy's scope key for this type (`None` for wildcard types).
    pub(super) scope: Option<Arc<str>>,
    /// The client subscribed (its initial request for this type arrived).
    pub(super) subscribed: bool,
    /// Until the first response: the versions the client said it holds (`None`: not one of ours).
    initial: Option<HashMap<Arc<str>, Option<u64>>>,
    /// The index generation of the last full comparison; change reports up to it are already reflected.
    compared_at: u64,
    /// Names to send again (current version) or remove, at the next response; `true` for names that did
    /// not exist when the last response was computed (the client cannot hold them).
    dirty: BTreeMap<Arc<str>, bool>,
    /// The latest change report folded into `dirty`, and when the oldest one not yet sent was made.
    dirty_generation: u64,
    dirty_since: Option<Instant>,
    /// The response still waiting for its ACK or NACK.
    pending: Option<Pending>,
    /// Keys asked for on demand (instead of every resource).
    on_demand: Option<OnDemand>,
    /// What was sent and answered, for the admin API.
    pub(super) report: Report,
}

/// What a subscription has sent and been answered.
#[derive(Debug, Default, Clone)]
pub(super) struct Report {
    pub(super) last_sent_nonce: Option<String>,
    pub(super) last_sent_at: Option<SystemTime>,
    pub(super) resources_sent: u64,
    pub(super) last_acked_nonce: Option<String>,
    pub(super) last_nack: Option<Nack>,
    /// Every change report up to this generation has been sent ...
    pub(super) sent_generation: Option<u64>,
    /// ... and answered (the valid resources of a NACKed response are applied, so a NACK counts).
    pub(super) acked_generation: Option<u64>,
    /// Names the proxy rejected and has not been sent again since.
    pub(super) nacked: BTreeSet<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Nack {
    pub(super) nonce: String,
    pub(super) message: String,
    pub(super) at: SystemTime,
}

/// A response sent and not yet answered.
#[derive(Debug)]
struct Pending {
    nonce: String,
    /// It carries every change report up to this generation.
    covers: u64,
    /// When the oldest change it carries was made (`None` for an initial response).
    since: Option<Instant>,
    /// A first (full) response.
    initial: bool,
}

/// One response to send: resources under the names they are sent as, and names to remove.
#[derive(Debug)]
pub(super) struct Push {
    pub(super) type_url: &'static str,
    pub(super) nonce: String,
    pub(super) resources: Outgoing,
    /// How many resources it carries.
    pub(super) count: usize,
    pub(super) removed: Vec<Arc<str>>,
    /// When the oldest change it carries was made (`None` for a first response).
    pub(super) since: Option<Instant>,
}

/// The resources of a push.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// These, each under the name given (an on-demand key may differ from the resource's name).
    Listed(Vec<(Arc<str>, Resource)>),
    /// Every resource of a table (one handle on it), but those the client holds at their current
    /// version: a first response.
    Whole {
        table: Snapshot,
        held: HashMap<Arc<str>, Option<u64>>,
    },
}

impl Outgoing {
    /// Each resource with the name it is sent under.
    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Resource)> + '_> {
        match self {
            Outgoing::Listed(list) => Box::new(list.iter().map(|(n, r)| (&**n, r))),
            Outgoing::Whole { table, held } => Box::new(
                table
                    .values()
                    .filter(|r| held.get(&r.name) != Some(&Some(r.version)))
                    .map(|r| (&*r.name, r)),
            ),
        }
    }
}

/// What a request was.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// The first request of a type: it is subscribed, and its first response is due.
    Subscribed,
    /// Keys asked for or dropped on demand, or a repeated wildcard subscription (nothing to do).
    Resubscribed,
    /// An ACK; `since`: when the oldest change the answered response carried was made.
    Ack {
        type_url: &'static str,
        since: Option<Instant>,
    },
    /// A NACK, with the client's message.
    Nack {
        type_url: &'static str,
        nonce: String,
        message: String,
    },
    /// A type this stream is not served. `answer`: it asks for a first response (an empty one is due).
    UnknownType { answer: bool },
}

impl Subscription {
    fn new(kind: &'static ResourceType, peer: &Peer) -> Subscription {
        Subscription {
            kind,
            scope: kind.scope_of(peer),
            subscribed: false,
            initial: None,
            compared_at: 0,
            dirty: BTreeMap::new(),
            dirty_generation: 0,
            dirty_since: None,
            pending: None,
            on_demand: None,
            report: Report::default(),
        }
    }

    fn has_work(&self) -> bool {
        self.subscribed
            && (self.initial.is_some()
                || !self.dirty.is_empty()
                || self.on_demand.as_ref().is_some_and(OnDemand::has_work))
    }

    fn wants_send(&self) -> bool {
        self.pending.is_none() && self.has_work()
    }

    /// Names changed in the index and not yet sent.
    pub(super) fn pending_names(&self) -> usize {
        self.dirty.len()
    }

    /// Its first response is sent and answered (or it is not subscribed).
    fn initial_answered(&self) -> bool {
        self.initial.is_none() && self.pending.as_ref().is_none_or(|p| !p.initial)
    }

    /// Folds one change report in: the names of this subscription's table it touched.
    fn on_changes(&mut self, generation: u64, at: Instant, names: &NameChanges) {
        if !self.subscribed
            || self.initial.is_some()
            || generation <= self.compared_at
            || names.is_empty()
        {
            return;
        }
        self.dirty_generation = self.dirty_generation.max(generation);
        self.dirty_since.get_or_insert(at);
        for name in &names.changed {
            let new = names.added.contains(name);
            self.dirty.entry(name.clone()).or_insert(new);
        }
        for name in &names.removed {
            // Added after the last response and gone again: the client never had it.
            if self.dirty.get(name) == Some(&true) {
                self.dirty.remove(name);
            } else {
                self.dirty.insert(name.clone(), false);
            }
        }
    }

    /// The first request of this type.
    fn subscribe(&mut self, request: DeltaDiscoveryRequest) {
        // ztunnel's on-demand mode subscribes to `*` and unsubscribes it at once: nothing until asked.
        if self.kind.on_demand
            && request.resource_names_subscribe == ["*"]
            && request.resource_names_unsubscribe == ["*"]
        {
            self.on_demand = Some(OnDemand::default());
        }
        self.subscribed = true;
        self.dirty.clear();
        self.dirty_since = None;
        self.initial = Some(
            request
                .initial_resource_versions
                .into_iter()
                .map(|(name, version)| {
                    let version = u64::from_str_radix(&version, 16)
                        .ok()
                        .filter(|_| version.len() == 16);
                    (Arc::from(name), version)
                })
                .collect(),
        );
    }

    /// What to send now (`None`: nothing, and nothing is outstanding). Reads `table` (`None`: empty),
    /// taking handles only — one for the whole table in a first response, one per resource otherwise —
    /// and records the push as outstanding.
    fn plan(
        &mut self,
        table: Option<&Table>,
        generation: u64,
        nonce: String,
        now: SystemTime,
    ) -> Option<Push> {
        let empty = Table::default();
        let current = table.unwrap_or(&empty);
        let first = self.initial.is_some();
        let (resources, count, removed) = if let Some(on_demand) = self.on_demand.as_mut() {
            let answer = match self.initial.take() {
                Some(held) => {
                    self.compared_at = generation;
                    self.dirty_generation = generation;
                    on_demand.first(current, held)
                }
                None => {
                    let changed = std::mem::take(&mut self.dirty).into_keys().collect();
                    on_demand.next(current, &changed)
                }
            };
            self.dirty.clear();
            let count = answer.resources.len();
            (Outgoing::Listed(answer.resources), count, answer.removed)
        } else if let Some(held) = self.initial.take() {
            // The whole table against what the client holds: the names it holds at their current
            // version are skipped, those that are gone removed. The encoder walks the snapshot in the
            // map's order (ztunnel applies a response as a set, so sorting buys nothing).
            let mut unchanged = 0;
            let mut removed = Vec::new();
            for (name, version) in &held {
                match current.get(name) {
                    Some(r) if *version == Some(r.version) => unchanged += 1,
                    Some(_) => {}
                    None => removed.push(name.clone()),
                }
            }
            removed.sort_unstable();
            self.compared_at = generation;
            self.dirty_generation = generation;
            self.dirty.clear();
            let count = current.len() - unchanged;
            let table = current.snapshot();
            (Outgoing::Whole { table, held }, count, removed)
        } else {
            let mut resources = Vec::new();
            let mut removed = Vec::new();
            for (name, new) in std::mem::take(&mut self.dirty) {
                match current.get(&name) {
                    Some(resource) => resources.push((resource.name.clone(), resource.clone())),
                    None if !new => removed.push(name),
                    None => {}
                }
            }
            let count = resources.len();
            (Outgoing::Listed(resources), count, removed)
        };
        let since = if first { None } else { self.dirty_since.take() };
        let covers = self.dirty_generation;
        let report = &mut self.report;
        if count == 0 && removed.is_empty() && !first {
            report.sent_generation = Some(covers);
            if report.acked_generation.is_some() {
                report.acked_generation = Some(covers);
            }
            return None;
        }
        self.pending = Some(Pending {
            nonce: nonce.clone(),
            covers,
            since,
            initial: first,
        });
        report.last_sent_nonce = Some(nonce.clone());
        report.last_sent_at = Some(now);
        report.resources_sent += count as u64;
        report.sent_generation = Some(covers);
        if !report.nacked.is_empty() {
            for (name, _) in resources.iter() {
                report.nacked.remove(name);
            }
        }
        Some(Push {
            type_url: self.kind.type_url,
            nonce,
            resources,
            count,
            removed,
            since,
        })
    }

    /// An ACK or NACK of a response of this type.
    fn answered(
        &mut self,
        request: &DeltaDiscoveryRequest,
        nacked_names: fn(&str) -> Vec<Arc<str>>,
        now: SystemTime,
    ) -> Received {
        let answered = match &self.pending {
            Some(p) if p.nonce == request.response_nonce => self.pending.take(),
            _ => None,
        };
        let report = &mut self.report;
        if let Some(p) = &answered {
            // The valid resources of a NACKed response are applied too.
            report.acked_generation = Some(p.covers);
        }
        match &request.error_detail {
            None => {
                report.last_acked_nonce = Some(request.response_nonce.clone());
                Received::Ack {
                    type_url: self.kind.type_url,
                    since: answered.and_then(|p| p.since),
                }
            }
            Some(error) => {
                // The same content is not sent again; a later change of those resources is.
                report.last_nack = Some(Nack {
                    nonce: request.response_nonce.clone(),
                    message: error.message.clone(),
                    at: now,
                });
                report.nacked.extend(nacked_names(&error.message));
                Received::Nack {
                    type_url: self.kind.type_url,
                    nonce: request.response_nonce.clone(),
                    message: error.message.clone(),
                }
            }
        }
    }
}

impl StreamState {
    pub(super) fn new(
        id: u64,
        peer: Peer,
        peer_addr: String,
        connected_since: SystemTime,
        profile: &'static Profile,
    ) -> StreamState {
        let subscriptions = profile
            .types
            .iter()
            .map(|kind| Subscription::new(kind, &peer))
            .collect();
        StreamState {
            id,
            peer,
            peer_addr,
            connected_since,
            profile,
            subscriptions,
            nonces: 0,
        }
    }

    /// A fresh nonce: `<stream id>-<count>`.
    pub(super) fn next_nonce(&mut self) -> String {
        self.nonces += 1;
        format!("{}-{}", self.id, self.nonces)
    }

    fn position(&self, type_url: &str) -> Option<usize> {
        self.subscriptions
            .iter()
            .position(|s| s.kind.type_url == type_url)
    }

    /// The subscription of `type_url`, if this stream is served that type.
    pub(super) fn subscription(&self, type_url: &str) -> Option<&Subscription> {
        self.position(type_url).map(|i| &self.subscriptions[i])
    }

    /// Handles one request.
    pub(super) fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        now: SystemTime,
    ) -> Received {
        let Some(i) = self.position(&request.type_url) else {
            return Received::UnknownType {
                answer: request.response_nonce.is_empty(),
            };
        };
        let nacked_names = self.profile.nacked_names;
        let sub = &mut self.subscriptions[i];
        if !request.response_nonce.is_empty() {
            return sub.answered(&request, nacked_names, now);
        }
        if !sub.subscribed {
            sub.subscribe(request);
            return Received::Subscribed;
        }
        // A wildcard subscriber already gets everything; on demand, keys come and go.
        if let Some(on_demand) = &mut sub.on_demand {
            on_demand.unsubscribe(&request.resource_names_unsubscribe);
            on_demand.subscribe(request.resource_names_subscribe);
        }
        Received::Resubscribed
    }

    /// Folds one change report in; `names_of` gives the names a table (for a scope) had touched.
    pub(super) fn on_changes<'a>(
        &mut self,
        generation: u64,
        at: Instant,
        names_of: impl Fn(&ResourceType, Option<&str>) -> Option<&'a NameChanges>,
    ) {
        for sub in &mut self.subscriptions {
            if let Some(names) = names_of(sub.kind, sub.scope.as_deref()) {
                sub.on_changes(generation, at, names);
            }
        }
    }

    /// Whether the subscription at `i` may be sent now: nothing outstanding, something to send, and no
    /// earlier type of the profile that the client still has to be sent first (or, for proxies that
    /// subscribe to all their types at once, that it has not subscribed to yet).
    fn may_push(&self, i: usize) -> bool {
        if !self.subscriptions[i].wants_send() {
            return false;
        }
        self.subscriptions[..i].iter().all(|earlier| {
            if earlier.subscribed {
                !earlier.has_work()
            } else {
                !self.profile.subscribes_all
            }
        })
    }

    /// The next subscription to push, in the profile's order.
    pub(super) fn next_push(&self) -> Option<usize> {
        (0..self.subscriptions.len()).find(|&i| self.may_push(i))
    }

    /// Whether a first (full) response may go now: what the initial-sync turns bound.
    pub(super) fn initial_push_due(&self) -> bool {
        (0..self.subscriptions.len())
            .any(|i| self.subscriptions[i].initial.is_some() && self.may_push(i))
    }

    /// Every first response has been answered (and, for proxies that subscribe to all their types at
    /// once, every type is subscribed).
    pub(super) fn initial_sync_answered(&self) -> bool {
        let all_subscribed =
            !self.profile.subscribes_all || self.subscriptions.iter().all(|s| s.subscribed);
        all_subscribed
            && self
                .subscriptions
                .iter()
                .all(Subscription::initial_answered)
    }

    /// What to send for subscription `i` (see [`StreamState::next_push`]), read from `tables`.
    pub(super) fn plan(&mut self, i: usize, tables: &impl Tables, now: SystemTime) -> Option<Push> {
        let nonce = self.next_nonce();
        let sub = &mut self.subscriptions[i];
        let table = tables.lookup(sub.kind.table, sub.scope.as_deref());
        sub.plan(table, tables.generation(), nonce, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ambient_index::TableId;
    use envoy_types::pb::google::rpc::Status as RpcStatus;

    use super::super::types::{ADDRESS, AUTHORIZATION, Scope, ZTUNNEL};
    use super::*;

    const NODE: &str = "ztunnel~10.0.0.9~zt.istio-system~istio-system.svc.cluster.local";

    fn resource(name: &str, body: &[u8]) -> Resource {
        let body = bytes::Bytes::copy_from_slice(body);
        Resource {
            name: Arc::from(name),
            version: xxhash_rust::xxh64::xxh64(&body, 0),
            body,
        }
    }

    /// Tables by (table, scope), at a generation.
    #[derive(Default)]
    struct Fake {
        generation: u64,
        tables: HashMap<(TableId, Option<String>), Table>,
    }

    impl Fake {
        fn with(mut self, table: TableId, scope: Option<&str>, resources: &[Resource]) -> Fake {
            self.tables.insert(
                (table, scope.map(str::to_string)),
                resources.iter().cloned().collect(),
            );
            self
        }
    }

    /// The two wildcard tables of a ztunnel, at a generation.
    fn ztunnel_tables(
        generation: u64,
        addresses: &[Resource],
        authorizations: &[Resource],
    ) -> Fake {
        Fake {
            generation,
            ..Fake::default()
        }
        .with(TableId::Addresses, None, addresses)
        .with(TableId::Authorizations, None, authorizations)
    }

    impl Tables for Fake {
        fn lookup(&self, table: TableId, scope: Option<&str>) -> Option<&Table> {
            self.tables.get(&(table, scope.map(str::to_string)))
        }

        fn generation(&self) -> u64 {
            self.generation
        }
    }

    fn ztunnel() -> StreamState {
        let peer = super::super::node::parse_node(&super::super::node::tests::node(NODE, &[]))
            .expect("node parses");
        StreamState::new(7, peer, String::new(), SystemTime::UNIX_EPOCH, &ZTUNNEL)
    }

    fn subscribe(type_url: &str, held: &[(&str, &Resource)]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            initial_resource_versions: held
                .iter()
                .map(|(n, r)| (n.to_string(), r.version_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn ack(type_url: &str, nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    fn nack(type_url: &str, nonce: &str, message: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            error_detail: Some(RpcStatus {
                code: 3,
                message: message.to_string(),
                details: vec![],
            }),
            ..ack(type_url, nonce)
        }
    }

    fn names(names: &[&str]) -> NameChanges {
        NameChanges {
            changed: names.iter().map(|n| Arc::from(*n)).collect(),
            ..Default::default()
        }
    }

    fn removed(names: &[&str]) -> NameChanges {
        NameChanges {
            removed: names.iter().map(|n| Arc::from(*n)).collect(),
            ..Default::default()
        }
    }

    /// The next push, planned and returned as (type URL, sorted names sent, sorted names removed).
    fn push(stream: &mut StreamState, tables: &Fake) -> Option<(String, Vec<String>, Vec<String>)> {
        let i = stream.next_push()?;
        let p = stream.plan(i, tables, SystemTime::UNIX_EPOCH)?;
        let mut sent: Vec<String> = p.resources.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(sent.len(), p.count);
        sent.sort();
        let removed = p.removed.iter().map(|n| n.to_string()).collect();
        Some((p.type_url.to_string(), sent, removed))
    }

    fn last_nonce(stream: &StreamState, type_url: &str) -> String {
        stream
            .subscription(type_url)
            .and_then(|s| s.report.last_sent_nonce.clone())
            .expect("a response was sent")
    }

    /// Reports `changes` (of the Address table, wildcard) at `generation`.
    fn change(stream: &mut StreamState, generation: u64, table: TableId, changes: &NameChanges) {
        stream.on_changes(generation, Instant::now(), |kind, _| {
            (kind.table == table).then_some(changes)
        });
    }

    fn synced(tables: &Fake) -> StreamState {
        let mut zt = ztunnel();
        zt.on_request(subscribe(ADDRESS.type_url, &[]), SystemTime::UNIX_EPOCH);
        zt.on_request(
            subscribe(AUTHORIZATION.type_url, &[]),
            SystemTime::UNIX_EPOCH,
        );
        for url in [AUTHORIZATION.type_url, ADDRESS.type_url] {
            push(&mut zt, tables).expect("first response");
            let nonce = last_nonce(&zt, url);
            zt.on_request(ack(url, &nonce), SystemTime::UNIX_EPOCH);
        }
        zt
    }

    #[test]
    fn the_first_response_skips_equal_versions_and_removes_what_vanished() {
        let (a, b, c) = (
            resource("a", b"1"),
            resource("b", b"2"),
            resource("c", b"3"),
        );
        let b_old = resource("b", b"old");
        let tables = ztunnel_tables(0, &[a.clone(), b.clone()], &[]);
        let mut zt = ztunnel();
        zt.on_request(
            subscribe(ADDRESS.type_url, &[("a", &a), ("b", &b_old), ("c", &c)]),
            SystemTime::UNIX_EPOCH,
        );
        // ztunnel subscribes to both types: addresses wait for the policy subscription.
        assert_eq!(zt.next_push(), None);
        zt.on_request(
            subscribe(AUTHORIZATION.type_url, &[]),
            SystemTime::UNIX_EPOCH,
        );
        // Policies first, even when empty.
        assert_eq!(
            push(&mut zt, &tables),
            Some((AUTHORIZATION.type_url.to_string(), vec![], vec![]))
        );
        assert_eq!(
            push(&mut zt, &tables),
            Some((
                ADDRESS.type_url.to_string(),
                vec!["b".to_string()],
                vec!["c".to_string()]
            ))
        );
        // One response per type is outstanding.
        assert_eq!(zt.next_push(), None);
        assert!(!zt.initial_sync_answered());
    }

    #[test]
    fn changes_wait_for_the_answer_and_go_out_together() {
        let tables = ztunnel_tables(0, &[resource("a", b"1")], &[]);
        let mut zt = ztunnel();
        zt.on_request(subscribe(ADDRESS.type_url, &[]), SystemTime::UNIX_EPOCH);
        zt.on_request(
            subscribe(AUTHORIZATION.type_url, &[]),
            SystemTime::UNIX_EPOCH,
        );
        push(&mut zt, &tables);
        push(&mut zt, &tables);
        let first = last_nonce(&zt, ADDRESS.type_url);
        let tables = ztunnel_tables(2, &[resource("a", b"2"), resource("b", b"1")], &[]);
        change(&mut zt, 1, TableId::Addresses, &names(&["a"]));
        change(&mut zt, 2, TableId::Addresses, &names(&["b"]));
        assert_eq!(
            zt.subscription(ADDRESS.type_url).unwrap().pending_names(),
            2
        );
        // The Authorization answer does not release the Address push.
        let auth = last_nonce(&zt, AUTHORIZATION.type_url);
        zt.on_request(ack(AUTHORIZATION.type_url, &auth), SystemTime::UNIX_EPOCH);
        assert_eq!(zt.next_push(), None);
        let received = zt.on_request(ack(ADDRESS.type_url, &first), SystemTime::UNIX_EPOCH);
        assert_eq!(
            received,
            Received::Ack {
                type_url: ADDRESS.type_url,
                since: None
            }
        );
        assert!(zt.initial_sync_answered());
        assert_eq!(
            push(&mut zt, &tables),
            Some((
                ADDRESS.type_url.to_string(),
                vec!["a".to_string(), "b".to_string()],
                vec![]
            ))
        );
        let report = &zt.subscription(ADDRESS.type_url).unwrap().report;
        assert_eq!(
            (report.sent_generation, report.acked_generation),
            (Some(2), Some(0))
        );
    }

    #[test]
    fn reports_from_before_the_first_comparison_are_skipped() {
        let tables = ztunnel_tables(5, &[resource("a", b"1")], &[]);
        let mut zt = synced(&tables);
        change(&mut zt, 4, TableId::Addresses, &names(&["a"]));
        change(&mut zt, 5, TableId::Addresses, &names(&["a"]));
        assert_eq!(zt.next_push(), None);
        change(&mut zt, 6, TableId::Addresses, &names(&["a"]));
        assert!(zt.next_push().is_some());
    }

    #[test]
    fn a_name_added_and_removed_between_responses_is_neither_sent_nor_removed() {
        let tables = ztunnel_tables(0, &[resource("a", b"1")], &[]);
        let mut zt = synced(&tables);
        let added = NameChanges {
            changed: [Arc::from("new")].into(),
            added: [Arc::from("new")].into(),
            ..Default::default()
        };
        change(&mut zt, 1, TableId::Addresses, &added);
        change(&mut zt, 2, TableId::Addresses, &removed(&["new", "a"]));
        let tables = ztunnel_tables(2, &[], &[]);
        assert_eq!(
            push(&mut zt, &tables),
            Some((ADDRESS.type_url.to_string(), vec![], vec!["a".to_string()]))
        );
    }

    #[test]
    fn a_nack_is_not_answered_with_the_same_content_but_a_later_change_is_sent() {
        let tables = ztunnel_tables(0, &[resource("bad", b"1")], &[]);
        let mut zt = ztunnel();
        zt.on_request(subscribe(ADDRESS.type_url, &[]), SystemTime::UNIX_EPOCH);
        zt.on_request(
            subscribe(AUTHORIZATION.type_url, &[]),
            SystemTime::UNIX_EPOCH,
        );
        push(&mut zt, &tables);
        push(&mut zt, &tables);
        let nonce = last_nonce(&zt, ADDRESS.type_url);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(9);
        let received = zt.on_request(
            nack(ADDRESS.type_url, &nonce, "bad: invalid IP length 3"),
            at,
        );
        assert_eq!(
            received,
            Received::Nack {
                type_url: ADDRESS.type_url,
                nonce: nonce.clone(),
                message: "bad: invalid IP length 3".to_string()
            }
        );
        let sub = zt.subscription(ADDRESS.type_url).unwrap();
        assert_eq!(
            sub.report.nacked.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["bad"]
        );
        assert_eq!(
            sub.report.last_nack,
            Some(Nack {
                nonce,
                message: "bad: invalid IP length 3".to_string(),
                at
            })
        );
        // Nothing is resent until the resource changes.
        assert_eq!(zt.next_push(), None);
        change(&mut zt, 1, TableId::Addresses, &names(&["bad"]));
        let tables = ztunnel_tables(1, &[resource("bad", b"fixed")], &[]);
        assert_eq!(
            push(&mut zt, &tables),
            Some((
                ADDRESS.type_url.to_string(),
                vec!["bad".to_string()],
                vec![]
            ))
        );
        assert!(
            zt.subscription(ADDRESS.type_url)
                .unwrap()
                .report
                .nacked
                .is_empty()
        );
    }

    #[test]
    fn policies_go_before_the_workloads_that_name_them() {
        let tables = ztunnel_tables(0, &[], &[]);
        let mut zt = synced(&tables);
        change(&mut zt, 1, TableId::Addresses, &names(&["w"]));
        change(&mut zt, 1, TableId::Authorizations, &names(&["ns/p"]));
        let tables = ztunnel_tables(
            1,
            &[resource("w", b"names ns/p")],
            &[resource("ns/p", b"p")],
        );
        // The policy first; the workload follows it on the same stream.
        assert_eq!(
            push(&mut zt, &tables).map(|p| p.0),
            Some(AUTHORIZATION.type_url.to_string())
        );
        assert_eq!(
            push(&mut zt, &tables).map(|p| p.0),
            Some(ADDRESS.type_url.to_string())
        );
        for url in [AUTHORIZATION.type_url, ADDRESS.type_url] {
            let nonce = last_nonce(&zt, url);
            zt.on_request(ack(url, &nonce), SystemTime::UNIX_EPOCH);
        }
        // A policy change that cannot go yet (the previous policy response is unanswered) holds back the
        // workloads changed with it until the answer comes and the policy is sent.
        change(&mut zt, 2, TableId::Authorizations, &names(&["ns/p"]));
        assert_eq!(
            push(&mut zt, &tables).map(|p| p.0),
            Some(AUTHORIZATION.type_url.to_string())
        );
        change(&mut zt, 3, TableId::Authorizations, &names(&["ns/q"]));
        change(&mut zt, 3, TableId::Addresses, &names(&["w"]));
        assert_eq!(zt.next_push(), None);
        let nonce = last_nonce(&zt, AUTHORIZATION.type_url);
        zt.on_request(ack(AUTHORIZATION.type_url, &nonce), SystemTime::UNIX_EPOCH);
        let tables = tables.with(
            TableId::Authorizations,
            None,
            &[resource("ns/p", b"p"), resource("ns/q", b"q")],
        );
        assert_eq!(
            push(&mut zt, &tables),
            Some((
                AUTHORIZATION.type_url.to_string(),
                vec!["ns/q".to_string()],
                vec![]
            ))
        );
        assert_eq!(
            push(&mut zt, &tables).map(|p| p.0),
            Some(ADDRESS.type_url.to_string())
        );
    }

    #[test]
    fn on_demand_keys_are_answered_under_themselves_and_follow_changes() {
        let pod = resource("Kubernetes//Pod/ns/a", b"pod");
        let tables = ztunnel_tables(0, std::slice::from_ref(&pod), &[]);
        let mut zt = ztunnel();
        zt.on_request(
            DeltaDiscoveryRequest {
                type_url: ADDRESS.type_url.to_string(),
                resource_names_subscribe: vec!["*".to_string()],
                resource_names_unsubscribe: vec!["*".to_string()],
                ..Default::default()
            },
            SystemTime::UNIX_EPOCH,
        );
        zt.on_request(
            subscribe(AUTHORIZATION.type_url, &[]),
            SystemTime::UNIX_EPOCH,
        );
        push(&mut zt, &tables);
        // Nothing asked for yet: an empty first response.
        assert_eq!(
            push(&mut zt, &tables),
            Some((ADDRESS.type_url.to_string(), vec![], vec![]))
        );
        let nonce = last_nonce(&zt, ADDRESS.type_url);
        zt.on_request(ack(ADDRESS.type_url, &nonce), SystemTime::UNIX_EPOCH);
        zt.on_request(
            DeltaDiscoveryRequest {
                type_url: ADDRESS.type_url.to_string(),
                resource_names_subscribe: vec![
                    "Kubernetes//Pod/ns/a".to_string(),
                    "ns/missing.ns.svc.cluster.local".to_string(),
                ],
                ..Default::default()
            },
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(
            push(&mut zt, &tables),
            Some((
                ADDRESS.type_url.to_string(),
                vec!["Kubernetes//Pod/ns/a".to_string()],
                vec!["ns/missing.ns.svc.cluster.local".to_string()]
            ))
        );
        let nonce = last_nonce(&zt, ADDRESS.type_url);
        zt.on_request(ack(ADDRESS.type_url, &nonce), SystemTime::UNIX_EPOCH);
        // A change of something not asked for is not sent; a change of a key is.
        change(
            &mut zt,
            1,
            TableId::Addresses,
            &names(&["Kubernetes//Pod/ns/b"]),
        );
        let tables = ztunnel_tables(
            1,
            &[
                resource("Kubernetes//Pod/ns/a", b"pod"),
                resource("Kubernetes//Pod/ns/b", b"b"),
            ],
            &[],
        );
        assert_eq!(push(&mut zt, &tables), None);
        change(
            &mut zt,
            2,
            TableId::Addresses,
            &removed(&["Kubernetes//Pod/ns/a"]),
        );
        assert_eq!(
            push(&mut zt, &tables.with(TableId::Addresses, None, &[])),
            Some((
                ADDRESS.type_url.to_string(),
                vec![],
                vec!["Kubernetes//Pod/ns/a".to_string()]
            ))
        );
    }

    /// A per-proxy type, as a waypoint's: each proxy reads the table of its own scope key.
    static SCOPED: ResourceType = ResourceType {
        type_url: "type.googleapis.com/example.Scoped",
        table: TableId::Addresses,
        scope: Scope::PerProxy(|peer| Some(Arc::from(peer.workload.as_str()))),
        on_demand: false,
    };

    static SCOPED_PROFILE: Profile = Profile {
        proxy_type: "waypoint",
        types: &[&SCOPED],
        subscribes_all: false,
        nacked_names: super::super::types::ztunnel_nacked_names,
    };

    #[test]
    fn per_proxy_types_read_the_table_of_the_proxys_scope_and_its_changes_only() {
        let stream = |pod: &str| {
            let id = format!("waypoint~10.0.0.1~{pod}~ns.svc.cluster.local");
            let peer =
                super::super::node::parse_node(&super::super::node::tests::node(&id, &[])).unwrap();
            let mut s = StreamState::new(
                1,
                peer,
                String::new(),
                SystemTime::UNIX_EPOCH,
                &SCOPED_PROFILE,
            );
            s.on_request(subscribe(SCOPED.type_url, &[]), SystemTime::UNIX_EPOCH);
            s
        };
        let tables = Fake::default()
            .with(
                TableId::Addresses,
                Some("wp-a.ns"),
                &[resource("listener-a", b"a")],
            )
            .with(
                TableId::Addresses,
                Some("wp-b.ns"),
                &[resource("listener-b", b"b")],
            );
        let (mut a, mut b, mut c) = (stream("wp-a.ns"), stream("wp-b.ns"), stream("wp-c.ns"));
        assert_eq!(
            push(&mut a, &tables).map(|p| p.1),
            Some(vec!["listener-a".to_string()])
        );
        assert_eq!(
            push(&mut b, &tables).map(|p| p.1),
            Some(vec!["listener-b".to_string()])
        );
        // A scope with no table gets an empty first response.
        assert_eq!(push(&mut c, &tables).map(|p| p.1), Some(vec![]));
        for s in [&mut a, &mut b] {
            let nonce = last_nonce(s, SCOPED.type_url);
            s.on_request(ack(SCOPED.type_url, &nonce), SystemTime::UNIX_EPOCH);
        }
        // A change report of scope wp-a reaches a only.
        let changed = names(&["listener-a"]);
        for s in [&mut a, &mut b] {
            s.on_changes(1, Instant::now(), |_, scope| {
                (scope == Some("wp-a.ns")).then_some(&changed)
            });
        }
        assert!(a.next_push().is_some());
        assert_eq!(b.next_push(), None);
    }
}
