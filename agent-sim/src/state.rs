//! What one simulated ztunnel holds between responses and across reconnects, and how it handles a
//! `DeltaDiscoveryResponse` (docs/reference/ztunnel.md#delta-xds-ack-and-nack and the next section), without
//! any I/O.
//!
//! Like ztunnel's `known_resources`, the state is name → version per type, the versions echoed back
//! in `initial_resource_versions` on reconnect. Per response:
//! - every resource is checked ([`VerdictCache`]); a rejected one is not recorded (a name held
//!   before keeps the version it had), the others are;
//! - `removed_resources` are dropped first, then the accepted resources recorded (so a name in both
//!   lists stays recorded, as in ztunnel);
//! - exactly one reply: an ACK, or a NACK whose `error_detail` is
//!   `{code: 0, message: "<name>: <err>; <name2>: <err2>"}` (conversion rejects first, then decode
//!   failures, each in response order);
//! - an unknown type URL is ACKed and changes nothing.
//!
//! Readiness ("synced") is one ACKed response of each type, ever: a NACK does not count and a
//! reconnect does not reset it.
//!
//! Names and versions are interned ids ([`NameId`], [`VersionId`]) in a vector sorted by name: eight
//! bytes per held resource, and no decoded resource is kept.

use std::collections::{HashMap, HashSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;

use crate::intern::{NameId, StrId, VersionId, XdsKind, names, resolve_names};
use crate::validate::{MISSING_RESOURCE, Verdict, VerdictCache};

/// Message of the NACK entry for a name the fault hook rejects.
pub const FAULT_MESSAGE: &str = "rejected by agent-sim fault injection";

/// Below this many changes a response is applied in place; above, by merging.
const IN_PLACE: usize = 32;

/// Names and versions of one type, sorted by name id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    entries: Vec<(NameId, VersionId)>,
}

impl Held {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: NameId) -> Option<VersionId> {
        self.entries
            .binary_search_by_key(&name, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (NameId, VersionId)> + '_ {
        self.entries.iter().copied()
    }

    /// Drops `removes`, then records `adds` (a later entry for the same name wins). Both are
    /// reordered in place.
    fn apply(&mut self, removes: &mut Vec<NameId>, adds: &mut Vec<(NameId, VersionId)>) {
        removes.sort_unstable();
        removes.dedup();
        // Keep the last entry of each name: reverse, stable sort, keep the first of each run.
        adds.reverse();
        adds.sort_by_key(|e| e.0);
        adds.dedup_by_key(|e| e.0);

        if removes.len() + adds.len() <= IN_PLACE {
            for name in removes.iter() {
                if let Ok(i) = self.entries.binary_search_by_key(name, |e| e.0) {
                    self.entries.remove(i);
                }
            }
            for &(name, version) in adds.iter() {
                match self.entries.binary_search_by_key(&name, |e| e.0) {
                    Ok(i) => self.entries[i].1 = version,
                    Err(i) => self.entries.insert(i, (name, version)),
                }
            }
            return;
        }

        let mut out = Vec::with_capacity(self.entries.len() + adds.len());
        let mut held = self.entries.iter().copied().peekable();
        let mut add = adds.iter().copied().peekable();
        let mut rem = removes.iter().copied().peekable();
        loop {
            let next = match (held.peek(), add.peek()) {
                (None, None) => break,
                (Some(h), Some(a)) if a.0 <= h.0 => {
                    if a.0 == h.0 {
                        held.next();
                    }
                    add.next()
                }
                (Some(_), _) => {
                    let h = held.next();
                    // Dropped when removed (and not re-added, handled by the arm above).
                    if let Some((name, _)) = h {
                        while rem.peek().is_some_and(|r| *r < name) {
                            rem.next();
                        }
                        if rem.peek() == Some(&name) {
                            continue;
                        }
                    }
                    h
                }
                (None, Some(_)) => add.next(),
            };
            if let Some(e) = next {
                out.push(e);
            }
        }
        out.shrink_to_fit();
        self.entries = out;
    }
}

/// Workloads on this ztunnel's node that need a certificate, by name, and how many name each
/// identity (ztunnel's shared-mode prefetch).
#[derive(Debug, Clone)]
pub struct CertTracker {
    node: StrId,
    by_name: HashMap<NameId, StrId>,
    count: HashMap<StrId, u32>,
}

/// What the certificate side must do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertAction {
    /// A workload of this identity arrived on the node: fetch its certificate unless held.
    Fetch(StrId),
    /// The last workload of this identity on the node was removed: drop its certificate.
    Forget(StrId),
}

impl CertTracker {
    pub fn new(node: &str) -> CertTracker {
        CertTracker {
            node: StrId::of(node),
            by_name: HashMap::new(),
            count: HashMap::new(),
        }
    }

    /// A workload (or service) was (re)inserted. The previous entry of the name is replaced without
    /// forgetting its certificate, as ztunnel's remove-before-insert does.
    fn insert(&mut self, name: NameId, verdict: &Verdict, actions: &mut Vec<CertAction>) {
        if let Some(old) = self.by_name.remove(&name)
            && let Some(c) = self.count.get_mut(&old)
        {
            *c = c.saturating_sub(1);
        }
        if let Verdict::Accept(Some(target)) = verdict
            && target.node == self.node
        {
            self.by_name.insert(name, target.identity);
            let c = self.count.entry(target.identity).or_insert(0);
            *c += 1;
            actions.push(CertAction::Fetch(target.identity));
        }
    }

    fn remove(&mut self, name: NameId, actions: &mut Vec<CertAction>) {
        if let Some(identity) = self.by_name.remove(&name)
            && let Some(c) = self.count.get_mut(&identity)
        {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.count.remove(&identity);
                actions.push(CertAction::Forget(identity));
            }
        }
    }

    /// Identities with at least one workload on the node.
    pub fn identities(&self) -> impl Iterator<Item = StrId> + '_ {
        self.count
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(id, _)| *id)
    }
}

/// The outcome of one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// `None` for a type ztunnel does not know (ACKed, nothing recorded).
    pub kind: Option<XdsKind>,
    /// Accepted resources, in response order.
    pub changed: Vec<NameId>,
    /// Rejected resources, in response order.
    pub rejected: Vec<NameId>,
    /// `removed_resources`, in response order.
    pub removed: Vec<NameId>,
    /// The NACK message, `None` for an ACK.
    pub nack: Option<String>,
    /// Bytes of resource bodies in the response.
    pub body_bytes: usize,
    /// This ACK completed readiness (one ACK of each type).
    pub became_synced: bool,
    pub cert_actions: Vec<CertAction>,
}

impl Handled {
    /// The one request that answers the response: `{type_url, response_nonce}` plus `error_detail`
    /// for a NACK.
    pub fn reply(&self, response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: self.nack.as_ref().map(|message| RpcStatus {
                code: 0,
                message: message.clone(),
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }
}

/// Everything a simulated ztunnel keeps between responses and across reconnects.
#[derive(Debug, Clone, Default)]
pub struct XdsState {
    held: [Held; 2],
    acked: [bool; 2],
    certs: Option<CertTracker>,
}

impl XdsState {
    pub fn new() -> XdsState {
        XdsState::default()
    }

    /// Also tracks which workloads on `node` need a certificate.
    pub fn with_certificates(node: &str) -> XdsState {
        XdsState {
            certs: Some(CertTracker::new(node)),
            ..XdsState::default()
        }
    }

    pub fn held(&self, kind: XdsKind) -> &Held {
        &self.held[kind.index()]
    }

    /// One response of each type has been ACKed (ztunnel's readiness).
    pub fn synced(&self) -> bool {
        self.acked.iter().all(|a| *a)
    }

    pub fn cert_tracker(&self) -> Option<&CertTracker> {
        self.certs.as_ref()
    }

    /// The initial requests of a (re)connect, Address then Authorization: node, wildcard (empty
    /// subscribe lists) and every name → version held.
    pub fn initial_requests(&self, node: &Node) -> Vec<DeltaDiscoveryRequest> {
        XdsKind::ALL
            .iter()
            .map(|&kind| DeltaDiscoveryRequest {
                node: Some(node.clone()),
                type_url: kind.type_url().to_string(),
                initial_resource_versions: self.initial_resource_versions(kind),
                ..Default::default()
            })
            .collect()
    }

    /// name → version for `kind`, as sent on reconnect.
    pub fn initial_resource_versions(&self, kind: XdsKind) -> HashMap<String, String> {
        let held = self.held(kind);
        let ids: Vec<NameId> = held.iter().map(|(n, _)| n).collect();
        let names = resolve_names(kind, &ids);
        let versions = crate::intern::versions().resolve_many(held.iter().map(|(_, v)| v.0));
        names
            .into_iter()
            .zip(versions)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Handles one response: checks every resource, records what is accepted, and decides the reply.
    /// `nack_names` are names the fault hook rejects.
    pub fn handle(
        &mut self,
        response: &DeltaDiscoveryResponse,
        cache: &VerdictCache,
        nack_names: Option<&HashSet<String>>,
    ) -> Handled {
        let Some(kind) = XdsKind::from_type_url(&response.type_url) else {
            return Handled::default();
        };
        let interner = names(kind);
        let mut handled = Handled {
            kind: Some(kind),
            changed: Vec::with_capacity(response.resources.len()),
            ..Handled::default()
        };
        // Conversion rejects come first in the NACK, then decode failures, as ztunnel merges them.
        let mut conversion_lines: Vec<String> = Vec::new();
        let mut decode_lines: Vec<String> = Vec::new();
        // Accepted workloads (name and verdict), for the certificate tracker.
        let mut for_certs: Vec<(NameId, Verdict)> = Vec::new();
        let mut adds: Vec<(NameId, VersionId)> = Vec::with_capacity(response.resources.len());

        for resource in &response.resources {
            let name = NameId(interner.intern(&resource.name));
            let verdict = match &resource.resource {
                None => Verdict::Undecodable(MISSING_RESOURCE.into()),
                Some(any) => {
                    handled.body_bytes += any.value.len();
                    cache.verdict(kind, &any.value)
                }
            };
            let verdict = match verdict {
                Verdict::Accept(_)
                    if nack_names.is_some_and(|set| set.contains(resource.name.as_str())) =>
                {
                    Verdict::Reject(FAULT_MESSAGE.into())
                }
                v => v,
            };
            match &verdict {
                Verdict::Accept(_) => {
                    handled.changed.push(name);
                    adds.push((name, VersionId::of(&resource.version)));
                }
                Verdict::Reject(m) => {
                    handled.rejected.push(name);
                    conversion_lines.push(format!("{}: {m}", resource.name));
                }
                Verdict::Undecodable(m) => {
                    handled.rejected.push(name);
                    decode_lines.push(format!("{}: {m}", resource.name));
                }
            }
            if self.certs.is_some() && kind == XdsKind::Address && verdict.is_accept() {
                for_certs.push((name, verdict));
            }
        }
        handled.removed = response
            .removed_resources
            .iter()
            .map(|n| NameId(interner.intern(n)))
            .collect();

        // The proxy state (certificates): accepted updates, then removals.
        if let Some(certs) = self.certs.as_mut()
            && kind == XdsKind::Address
        {
            for (name, verdict) in &for_certs {
                certs.insert(*name, verdict, &mut handled.cert_actions);
            }
            for name in &handled.removed {
                certs.remove(*name, &mut handled.cert_actions);
            }
        }

        let mut removes = handled.removed.clone();
        self.held[kind.index()].apply(&mut removes, &mut adds);

        if !handled.rejected.is_empty() {
            conversion_lines.extend(decode_lines);
            handled.nack = Some(conversion_lines.join("; "));
        } else {
            let was = self.synced();
            self.acked[kind.index()] = true;
            handled.became_synced = !was && self.synced();
        }
        handled
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ambient_proto::security::Authorization;
    use ambient_proto::workload::{Address, Workload, address};
    use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
    use envoy_types::pb::envoy::service::discovery::v3::Resource;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    use super::*;

    fn workload_body(uid: &str, node: &str, sa: &str) -> Vec<u8> {
        Address {
            r#type: Some(address::Type::Workload(Workload {
                uid: uid.into(),
                name: uid.rsplit('/').next().unwrap_or_default().into(),
                namespace: "state-test".into(),
                addresses: vec![vec![10, 0, 0, 1]],
                tunnel_protocol: 1,
                service_account: sa.into(),
                node: node.into(),
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    fn resource(name: &str, version: &str, body: Option<Vec<u8>>) -> Resource {
        Resource {
            name: name.into(),
            version: version.into(),
            resource: body.map(|value| Any {
                type_url: ADDRESS_TYPE_URL.into(),
                value,
            }),
            ..Default::default()
        }
    }

    fn ok(name: &str, version: &str) -> Resource {
        resource(name, version, Some(workload_body(name, "n", "sa")))
    }

    fn response(
        type_url: &str,
        resources: Vec<Resource>,
        removed: &[&str],
    ) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: type_url.into(),
            nonce: "n-1".into(),
            resources,
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn authz_response(names: &[&str]) -> DeltaDiscoveryResponse {
        let body = Authorization {
            name: "p".into(),
            namespace: "state-test".into(),
            ..Default::default()
        }
        .encode_to_vec();
        response(
            AUTHORIZATION_TYPE_URL,
            names
                .iter()
                .map(|n| Resource {
                    name: n.to_string(),
                    version: "a1".into(),
                    resource: Some(Any {
                        type_url: AUTHORIZATION_TYPE_URL.into(),
                        value: body.clone(),
                    }),
                    ..Default::default()
                })
                .collect(),
            &[],
        )
    }

    fn irv(state: &XdsState, kind: XdsKind) -> BTreeMap<String, String> {
        state.initial_resource_versions(kind).into_iter().collect()
    }

    fn names_of(kind: XdsKind, ids: &[NameId]) -> Vec<String> {
        resolve_names(kind, ids)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn nack_lists_conversion_rejects_then_decode_failures_and_applies_the_rest() {
        let mut state = XdsState::new();
        let bad = Address { r#type: None }.encode_to_vec();
        let resp = response(
            ADDRESS_TYPE_URL,
            vec![
                resource("st/undecodable", "v1", Some(vec![0x0a, 0xff])),
                ok("st/good", "v1"),
                resource("st/empty", "v1", Some(bad)),
                resource("st/missing", "v1", None),
                ok("st/faulty", "v1"),
            ],
            &[],
        );
        let faults: HashSet<String> = ["st/faulty".to_string()].into();
        let handled = state.handle(&resp, VerdictCache::global(), Some(&faults));
        assert_eq!(
            handled.nack.as_deref(),
            Some(
                "st/empty: unknown address type; st/faulty: rejected by agent-sim fault injection; \
                 st/undecodable: decode: failed to decode Protobuf message: Address.r#type: invalid varint; \
                 st/missing: XDS payload without resource"
            )
        );
        assert_eq!(names_of(XdsKind::Address, &handled.changed), ["st/good"]);
        assert_eq!(
            names_of(XdsKind::Address, &handled.rejected),
            ["st/undecodable", "st/empty", "st/missing", "st/faulty"]
        );
        let reply = handled.reply(&resp);
        assert_eq!(reply.type_url, ADDRESS_TYPE_URL);
        assert_eq!(reply.response_nonce, "n-1");
        let detail = reply.error_detail.expect("a NACK");
        assert_eq!(detail.code, 0);
        assert!(reply.node.is_none());
        assert!(reply.initial_resource_versions.is_empty());
        // Partial apply: the good one is recorded, the rejected ones are not.
        assert_eq!(
            irv(&state, XdsKind::Address),
            BTreeMap::from([("st/good".to_string(), "v1".to_string())])
        );
        assert!(!state.synced(), "a NACK does not count for readiness");
    }

    #[test]
    fn ack_is_nonce_and_type_only_and_readiness_needs_both_types() {
        let mut state = XdsState::new();
        let resp = response(ADDRESS_TYPE_URL, vec![ok("st/a", "v1")], &[]);
        let handled = state.handle(&resp, VerdictCache::global(), None);
        assert_eq!(handled.nack, None);
        assert_eq!(
            handled.reply(&resp),
            DeltaDiscoveryRequest {
                type_url: ADDRESS_TYPE_URL.into(),
                response_nonce: "n-1".into(),
                ..Default::default()
            }
        );
        assert!(!handled.became_synced);
        assert!(!state.synced());
        // An unknown type is ACKed and changes nothing.
        let other = response(
            "type.googleapis.com/istio.workload.Workload",
            vec![ok("st/x", "v")],
            &[],
        );
        let handled = state.handle(&other, VerdictCache::global(), None);
        assert_eq!(handled.kind, None);
        assert_eq!(handled.nack, None);
        assert!(!state.synced());
        let handled = state.handle(&authz_response(&[]), VerdictCache::global(), None);
        assert!(handled.became_synced);
        assert!(state.synced());
    }

    #[test]
    fn initial_resource_versions_after_nack_removal_and_reconnect() {
        let mut state = XdsState::new();
        let cache = VerdictCache::global();
        state.handle(
            &response(
                ADDRESS_TYPE_URL,
                vec![ok("irv/a", "1"), ok("irv/b", "1"), ok("irv/c", "1")],
                &[],
            ),
            cache,
            None,
        );
        state.handle(&authz_response(&["irv/p"]), cache, None);
        // b changes but is rejected (keeps version 1); c is removed and re-sent in one response (stays,
        // as in ztunnel's bookkeeping); d is new and rejected (not recorded); a is removed.
        let faults: HashSet<String> = ["irv/b".to_string(), "irv/d".to_string()].into();
        let handled = state.handle(
            &response(
                ADDRESS_TYPE_URL,
                vec![ok("irv/b", "2"), ok("irv/c", "2"), ok("irv/d", "1")],
                &["irv/a", "irv/c"],
            ),
            cache,
            Some(&faults),
        );
        assert!(handled.nack.is_some());
        assert_eq!(
            names_of(XdsKind::Address, &handled.removed),
            ["irv/a", "irv/c"]
        );

        let node = Node {
            id: "ztunnel~10.0.0.1~zt.istio-system~istio-system.svc.cluster.local".into(),
            ..Default::default()
        };
        let requests = state.initial_requests(&node);
        assert_eq!(
            requests
                .iter()
                .map(|r| r.type_url.as_str())
                .collect::<Vec<_>>(),
            [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]
        );
        for r in &requests {
            assert_eq!(r.node.as_ref(), Some(&node));
            assert!(r.resource_names_subscribe.is_empty());
            assert!(r.resource_names_unsubscribe.is_empty());
            assert!(r.response_nonce.is_empty());
            assert!(r.error_detail.is_none());
        }
        let got: BTreeMap<_, _> = requests[0]
            .initial_resource_versions
            .clone()
            .into_iter()
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([
                ("irv/b".to_string(), "1".to_string()),
                ("irv/c".to_string(), "2".to_string()),
            ])
        );
        let got: BTreeMap<_, _> = requests[1]
            .initial_resource_versions
            .clone()
            .into_iter()
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([("irv/p".to_string(), "a1".to_string())])
        );
    }

    #[test]
    fn large_and_small_responses_apply_the_same() {
        let cache = VerdictCache::global();
        let names: Vec<String> = (0..200).map(|i| format!("merge/{i:03}")).collect();
        let mut big = XdsState::new();
        let mut small = XdsState::new();
        let all: Vec<Resource> = names.iter().map(|n| ok(n, "1")).collect();
        big.handle(&response(ADDRESS_TYPE_URL, all.clone(), &[]), cache, None);
        for chunk in all.chunks(10) {
            small.handle(
                &response(ADDRESS_TYPE_URL, chunk.to_vec(), &[]),
                cache,
                None,
            );
        }
        assert_eq!(big.held(XdsKind::Address), small.held(XdsKind::Address));
        // Remove every third one, update every fifth one, with duplicates in the response.
        let removed: Vec<&str> = names.iter().step_by(3).map(String::as_str).collect();
        let mut updates: Vec<Resource> = names.iter().step_by(5).map(|n| ok(n, "2")).collect();
        updates.push(ok(&names[5], "3"));
        big.handle(
            &response(ADDRESS_TYPE_URL, updates.clone(), &removed),
            cache,
            None,
        );
        // The same, in place: removals one by one, then the updates ten at a time.
        for n in &removed {
            small.handle(&response(ADDRESS_TYPE_URL, Vec::new(), &[n]), cache, None);
        }
        for chunk in updates.chunks(10) {
            small.handle(
                &response(ADDRESS_TYPE_URL, chunk.to_vec(), &[]),
                cache,
                None,
            );
        }
        let expect: BTreeMap<String, String> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let v = if i == 5 {
                    "3"
                } else if i % 5 == 0 {
                    "2"
                } else if i % 3 == 0 {
                    return None;
                } else {
                    "1"
                };
                Some((n.clone(), v.to_string()))
            })
            .collect();
        assert_eq!(irv(&big, XdsKind::Address), expect);
        assert_eq!(irv(&small, XdsKind::Address), expect);
    }

    #[test]
    fn certificates_follow_hbone_workloads_on_the_node() {
        let cache = VerdictCache::global();
        let mut state = XdsState::with_certificates("cert-node");
        let wl = |uid: &str, node: &str, sa: &str| {
            resource(uid, "1", Some(workload_body(uid, node, sa)))
        };
        let id = |sa: &str| StrId::of(&format!("spiffe://cluster.local/ns/state-test/sa/{sa}"));
        let handled = state.handle(
            &response(
                ADDRESS_TYPE_URL,
                vec![
                    wl("c/a", "cert-node", "one"),
                    wl("c/b", "cert-node", "one"),
                    wl("c/c", "other-node", "two"),
                    wl("c/d", "cert-node", "three"),
                ],
                &[],
            ),
            cache,
            None,
        );
        assert_eq!(
            handled.cert_actions,
            [
                CertAction::Fetch(id("one")),
                CertAction::Fetch(id("one")),
                CertAction::Fetch(id("three"))
            ]
        );
        let handled = state.handle(&response(ADDRESS_TYPE_URL, vec![], &["c/a"]), cache, None);
        assert_eq!(handled.cert_actions, []);
        let handled = state.handle(
            &response(ADDRESS_TYPE_URL, vec![], &["c/b", "c/c", "c/d"]),
            cache,
            None,
        );
        assert_eq!(
            handled.cert_actions,
            [
                CertAction::Forget(id("one")),
                CertAction::Forget(id("three"))
            ]
        );
    }
}
