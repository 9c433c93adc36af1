//! One delta ADS stream: who is on the other end, what it has been sent, and what it still has to be sent.
//!
//! A connection does not keep a copy of every name and version it sent (with thousands of connections
//! and tens of thousands of resources that would dominate the server's memory). Instead:
//! - its first response per type compares the whole index with the client's `initial_resource_versions`
//!   (equal versions are skipped, vanished names are removed) and records the index generation it saw;
//! - after that, the index's change reports (a shared broadcast log) say which names to look at again:
//!   each is sent at its current version, or removed when it is gone. Reports from before the full
//!   comparison are skipped;
//! - a connection that falls so far behind that the log no longer holds what it missed ends its stream
//!   with `Unavailable`; the client reconnects with the versions it holds and is compared afresh.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use ambient_ca::{Identity, RequestInfo};
use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use rustls_pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::{debug, info, warn};

use super::Shared;
use super::on_demand::OnDemand;
use super::registry::Status as StreamStatus;
use super::wire::{Requests, encode_response};
use crate::metrics::ConnectedProxy;
use crate::shared_index::ChangeNotice as Notice;
use ambient_index::{Changes, Index, NameChanges, Resource};

/// The two types served. Authorization comes first: a Workload must never name a policy the client has
/// not been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum XdsType {
    Authorization,
    Address,
}

impl XdsType {
    const PUSH_ORDER: [XdsType; 2] = [XdsType::Authorization, XdsType::Address];

    pub(super) fn from_type_url(type_url: &str) -> Option<XdsType> {
        match type_url {
            ADDRESS_TYPE_URL => Some(XdsType::Address),
            AUTHORIZATION_TYPE_URL => Some(XdsType::Authorization),
            _ => None,
        }
    }

    pub(super) fn type_url(self) -> &'static str {
        match self {
            XdsType::Address => ADDRESS_TYPE_URL,
            XdsType::Authorization => AUTHORIZATION_TYPE_URL,
        }
    }

    fn resources(self, index: &Index) -> &HashMap<Arc<str>, Resource> {
        match self {
            XdsType::Address => index.addresses(),
            XdsType::Authorization => index.authorizations(),
        }
    }

    fn changes(self, changes: &Changes) -> &NameChanges {
        match self {
            XdsType::Address => &changes.addresses,
            XdsType::Authorization => &changes.authorizations,
        }
    }
}

/// What one connection knows about one type.
#[derive(Debug, Default)]
struct TypeState {
    /// The client subscribed (its initial request for this type arrived).
    subscribed: bool,
    /// Until the first response: the versions the client said it holds (`None`: not one of ours).
    initial: Option<HashMap<Arc<str>, Option<u64>>>,
    /// The index generation of the last full comparison; change reports up to it are already reflected.
    compared_at: u64,
    /// Names to send again (current version) or remove, at the next response; `true` for names that
    /// did not exist when the last response was computed (the client cannot hold them).
    dirty: BTreeMap<Arc<str>, bool>,
    /// The latest change report folded into `dirty`, and when the oldest one not yet sent was made.
    dirty_generation: u64,
    dirty_since: Option<Instant>,
    /// The response still waiting for its ACK or NACK.
    pending: Option<Pending>,
    /// Addresses on demand: the keys the client asked for (instead of every resource).
    on_demand: Option<OnDemand>,
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

impl TypeState {
    fn has_work(&self) -> bool {
        self.subscribed
            && (self.initial.is_some()
                || !self.dirty.is_empty()
                || self.on_demand.as_ref().is_some_and(OnDemand::has_work))
    }

    fn wants_send(&self) -> bool {
        self.pending.is_none() && self.has_work()
    }
}

/// Who the stream belongs to, from its first request.
#[derive(Debug, Clone)]
struct Peer {
    node: String,
    /// The node type: the part of the id before the first `~` (`ztunnel`, `waypoint`, ...).
    proxy_type: String,
    /// `NODE_NAME` of the metadata: the Kubernetes node the proxy runs on.
    node_name: Option<String>,
    namespace: String,
    service_account: Option<String>,
}

/// What the request that opened the stream carried besides its messages.
pub(super) struct Opening {
    pub(super) metadata: MetadataMap,
    pub(super) peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    pub(super) remote_addr: Option<SocketAddr>,
}

pub(super) struct Connection {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<Bytes, Status>>,
    changes: broadcast::Receiver<Arc<Notice>>,
    opening: Opening,
    peer: Option<Peer>,
    nonces: u64,
    address: TypeState,
    authorization: TypeState,
    /// What the admin API sees of this stream (from the first request on).
    status: Option<Arc<Mutex<StreamStatus>>>,
    /// Held from the first full response until every first response is answered (or for at most
    /// [`INITIAL_SYNC_PATIENCE`]): bounds how many large initial responses are in flight at once.
    sync_permit: Option<(OwnedSemaphorePermit, Instant)>,
    /// The initial sync is over (its permit was released).
    initial_synced: bool,
    /// Keeps the stream counted as a connected proxy.
    _counted: Option<ConnectedProxy>,
}

// The ends that ask the client to reconnect say "transport is closing": ztunnel reconnects after 10 ms
// (and resets its backoff) only for `Unavailable` with that phrase or "received prior goaway"; any other
// `Unavailable` doubles its backoff, up to 15 s, with no reset after a good stream (contract §3.6).
const SHUTDOWN_MESSAGE: &str = "control plane shutting down: transport is closing; reconnect (to another replica) with the versions held";
const MAX_AGE_MESSAGE: &str = "maximum connection age reached (--max-connection-age): transport is closing; \
     reconnect, with the versions held, to any replica";
const LAGGED_MESSAGE: &str = "this stream fell too far behind the control plane's changes: transport is \
     closing; reconnect with the versions held to be compared afresh";

const INDEX_FAILED_MESSAGE: &str = "the control plane's index failed and it is restarting: transport is \
     closing; reconnect (to another replica) with the versions held";

/// How long a connection may hold an initial-sync permit before it is given to the next one.
const INITIAL_SYNC_PATIENCE: Duration = Duration::from_secs(5);

/// How the stream ended.
enum End {
    /// The client closed its side or went away.
    Client,
    /// The server is shutting down.
    Shutdown,
    /// The stream reached its maximum age.
    MaxAge,
    /// The change log no longer holds what this connection missed.
    Lagged,
    /// The client may not use this stream (or sent something unusable).
    Refused(Status),
    /// The index failed (an update panicked): nothing more is served from it.
    IndexFailed(crate::shared_index::IndexFailed),
}

impl Connection {
    /// Subscribes to changes now, before anything is read from the index, so none can be missed.
    pub(super) fn new(
        id: u64,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Result<Bytes, Status>>,
        opening: Opening,
    ) -> Connection {
        let changes = shared.index.subscribe();
        Connection {
            id,
            shared,
            tx,
            changes,
            opening,
            peer: None,
            nonces: 0,
            address: TypeState::default(),
            authorization: TypeState::default(),
            status: None,
            sync_permit: None,
            initial_synced: false,
            _counted: None,
        }
    }

    /// Updates what the admin API shows for `kind`.
    fn report(&self, kind: XdsType, update: impl FnOnce(&mut super::registry::TypeStatus)) {
        if let Some(status) = &self.status {
            let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
            update(status.of(kind));
        }
    }

    fn state(&mut self, kind: XdsType) -> &mut TypeState {
        match kind {
            XdsType::Address => &mut self.address,
            XdsType::Authorization => &mut self.authorization,
        }
    }

    fn node(&self) -> &str {
        self.peer.as_ref().map_or("<unknown>", |p| p.node.as_str())
    }

    pub(super) async fn run(mut self, mut requests: Requests) {
        let end = self.serve(&mut requests).await;
        if self.status.is_some() {
            self.shared.registry.remove(self.id);
        }
        let status = match end {
            End::Client => {
                info!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream closed by the client"
                );
                return;
            }
            End::Shutdown => {
                info!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream ended: shutting down"
                );
                Status::unavailable(SHUTDOWN_MESSAGE)
            }
            End::MaxAge => {
                info!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream ended: maximum connection age"
                );
                Status::unavailable(MAX_AGE_MESSAGE)
            }
            End::Lagged => {
                warn!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream ended: the client fell too far behind the control plane's changes"
                );
                Status::unavailable(LAGGED_MESSAGE)
            }
            End::IndexFailed(failed) => {
                warn!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream ended: {failed}"
                );
                Status::unavailable(INDEX_FAILED_MESSAGE)
            }
            End::Refused(status) => {
                warn!(conn = self.id, node = self.node(), code = ?status.code(),
                    message = status.message(), "xDS stream refused");
                status
            }
        };
        let _ = self.tx.send(Err(status)).await;
    }

    async fn serve(&mut self, requests: &mut Requests) -> End {
        let mut shutdown = self.shared.shutdown.clone();
        let deadline = self.shared.config.max_connection_age.map(|age| {
            let age = jittered(age, self.id);
            Instant::now() + age
        });
        let max_age = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(max_age);
        loop {
            if *shutdown.borrow_and_update() {
                return End::Shutdown;
            }
            if self.needs_sync_permit() {
                let permits = Arc::clone(&self.shared.initial_syncs);
                tokio::select! {
                    permit = permits.acquire_owned() => {
                        // The semaphore is never closed.
                        if let Ok(permit) = permit {
                            self.sync_permit =
                                Some((permit, Instant::now() + INITIAL_SYNC_PATIENCE));
                        }
                    }
                    _ = shutdown.changed() => continue,
                    _ = self.tx.closed() => return End::Client,
                }
            }
            let permit_deadline = self.sync_permit.as_ref().map(|(_, at)| *at);
            for kind in XdsType::PUSH_ORDER {
                if self.may_push(kind) {
                    match self.push(kind).await {
                        Ok(true) => {}
                        Ok(false) => return End::Client,
                        Err(end) => return end,
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                () = &mut max_age => return End::MaxAge,
                () = sleep_until_some(permit_deadline) => {
                    debug!(conn = self.id, node = self.node(),
                        "initial responses not answered in time: letting others start");
                    self.release_sync_permit();
                }
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(end) = self.on_request(request).await {
                            return end;
                        }
                    }
                    Ok(None) => return End::Client,
                    Err(status) => {
                        debug!(conn = self.id, node = self.node(), %status, "xDS stream error");
                        return End::Client;
                    }
                },
                changes = self.changes.recv() => {
                    if self.on_changes(changes).is_err() {
                        return End::Lagged;
                    }
                    // Coalesce whatever else is already queued before computing a response.
                    loop {
                        let more = match self.changes.try_recv() {
                            Ok(notice) => Ok(notice),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Err(broadcast::error::RecvError::Lagged(n))
                            }
                            Err(_) => break,
                        };
                        if self.on_changes(more).is_err() {
                            return End::Lagged;
                        }
                    }
                }
                _ = self.tx.closed() => return End::Client,
            }
        }
    }

    /// Whether the next push is a first (full) response that needs one of the initial-sync permits.
    fn needs_sync_permit(&self) -> bool {
        !self.initial_synced
            && self.sync_permit.is_none()
            && XdsType::PUSH_ORDER.into_iter().any(|kind| {
                let state = match kind {
                    XdsType::Address => &self.address,
                    XdsType::Authorization => &self.authorization,
                };
                state.initial.is_some() && self.may_push(kind)
            })
    }

    /// Ends this connection's initial sync: the permit goes to the next connection waiting.
    fn release_sync_permit(&mut self) {
        if self.sync_permit.take().is_some() {
            self.initial_synced = true;
        }
    }

    /// Releases the initial-sync permit once every first response has been answered.
    fn maybe_release_sync_permit(&mut self) {
        let done =
            |s: &TypeState| s.initial.is_none() && s.pending.as_ref().is_none_or(|p| !p.initial);
        let is_ztunnel = self
            .peer
            .as_ref()
            .is_some_and(|p| p.proxy_type == "ztunnel");
        // A ztunnel subscribes to both types; anyone else to what it subscribed to.
        let all_subscribed =
            !is_ztunnel || (self.address.subscribed && self.authorization.subscribed);
        if self.sync_permit.is_some()
            && all_subscribed
            && done(&self.address)
            && done(&self.authorization)
        {
            self.release_sync_permit();
        }
    }

    /// Whether `kind` may be sent now: nothing outstanding, something to send, and for addresses, no
    /// policy the client still has to be sent first.
    fn may_push(&self, kind: XdsType) -> bool {
        let state = match kind {
            XdsType::Address => &self.address,
            XdsType::Authorization => &self.authorization,
        };
        if !state.wants_send() {
            return false;
        }
        if kind == XdsType::Address {
            let auth = &self.authorization;
            // Policies go out before the workloads that name them.
            if auth.subscribed && auth.has_work() {
                return false;
            }
            // ztunnel always subscribes to both types at once: its first addresses wait for its
            // policy subscription, so that they never name a policy it has not been sent.
            let is_ztunnel = self
                .peer
                .as_ref()
                .is_some_and(|p| p.proxy_type == "ztunnel");
            if is_ztunnel && !auth.subscribed {
                return false;
            }
        }
        true
    }

    /// Folds one change report in; `Err` when reports were lost.
    fn on_changes(
        &mut self,
        notice: Result<Arc<Notice>, broadcast::error::RecvError>,
    ) -> Result<(), ()> {
        match notice {
            Ok(notice) => {
                for kind in XdsType::PUSH_ORDER {
                    let names = kind.changes(&notice.changes);
                    let state = self.state(kind);
                    if state.subscribed
                        && state.initial.is_none()
                        && notice.generation > state.compared_at
                        && !names.is_empty()
                    {
                        state.dirty_generation = state.dirty_generation.max(notice.generation);
                        state.dirty_since.get_or_insert(notice.at);
                        for name in &names.changed {
                            let new = names.added.contains(name);
                            state.dirty.entry(name.clone()).or_insert(new);
                        }
                        for name in &names.removed {
                            // Added after the last response and gone again: the client never had it.
                            if state.dirty.get(name) == Some(&true) {
                                state.dirty.remove(name);
                            } else {
                                state.dirty.insert(name.clone(), false);
                            }
                        }
                        let pending = state.dirty.len() as u64;
                        self.report(kind, |t| t.pending_names = pending);
                    }
                }
                Ok(())
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(
                    conn = self.id,
                    node = self.node(),
                    missed,
                    "change reports lost"
                );
                Err(())
            }
            // The notifier is gone; the index can no longer change.
            Err(broadcast::error::RecvError::Closed) => Ok(()),
        }
    }

    /// Handles one request; `Err` ends the stream.
    async fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Result<(), End> {
        if self.peer.is_none() {
            self.identify(request.node.as_ref()).await?;
        }
        let Some(kind) = XdsType::from_type_url(&request.type_url) else {
            if request.response_nonce.is_empty() {
                debug!(conn = self.id, node = self.node(), type_url = %request.type_url,
                    "request for an unknown type: answering empty");
                let nonce = self.next_nonce();
                let response = encode_response(&request.type_url, &[], &[], &nonce);
                if self.tx.send(Ok(response)).await.is_err() {
                    return Err(End::Client);
                }
            }
            return Ok(());
        };

        let id = self.id;
        let node = self.node().to_string();
        let stats = self.shared.stats.clone();
        if !request.response_nonce.is_empty() {
            let state = self.state(kind);
            let answered = match &state.pending {
                Some(p) if p.nonce == request.response_nonce => state.pending.take(),
                _ => None,
            };
            let metrics = self.shared.config.metrics.clone();
            match &request.error_detail {
                None => {
                    if let Some(m) = &metrics {
                        m.acked(
                            kind.type_url(),
                            answered.as_ref().and_then(|p| p.since).map(|t| t.elapsed()),
                        );
                    }
                    self.report(kind, |t| {
                        t.last_acked_nonce = Some(request.response_nonce.clone());
                        if let Some(p) = &answered {
                            t.acked_generation = Some(p.covers);
                        }
                    });
                }
                Some(error) => {
                    stats.nacks.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = &metrics {
                        m.nacked(kind.type_url());
                    }
                    // The same content is not sent again; a later change of those resources is.
                    warn!(conn = id, node, type_url = kind.type_url(), nonce = %request.response_nonce,
                        message = %error.message, "xDS NACK");
                    let rejected = nacked_names(&error.message);
                    self.report(kind, |t| {
                        t.last_nack = Some((
                            request.response_nonce.clone(),
                            error.message.clone(),
                            SystemTime::now(),
                        ));
                        // The valid resources of a NACKed response are applied (ztunnel §3.3).
                        if let Some(p) = &answered {
                            t.acked_generation = Some(p.covers);
                        }
                        t.nacked.extend(rejected);
                    });
                }
            }
            self.maybe_release_sync_permit();
            return Ok(());
        }
        let state = self.state(kind);
        if state.subscribed {
            match &mut state.on_demand {
                Some(on_demand) => {
                    debug!(conn = id, node, keys = ?request.resource_names_subscribe,
                        "on-demand request");
                    on_demand.unsubscribe(&request.resource_names_unsubscribe);
                    on_demand.subscribe(request.resource_names_subscribe);
                }
                // A wildcard subscriber already gets everything.
                None => debug!(
                    conn = id,
                    node,
                    type_url = kind.type_url(),
                    "ignoring repeated subscription"
                ),
            }
            return Ok(());
        }
        // ztunnel's on-demand mode subscribes to `*` and unsubscribes it at once: no address until asked.
        if kind == XdsType::Address
            && request.resource_names_subscribe == ["*"]
            && request.resource_names_unsubscribe == ["*"]
        {
            state.on_demand = Some(OnDemand::default());
        }
        state.subscribed = true;
        state.dirty.clear();
        state.dirty_since = None;
        state.initial = Some(
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
        self.report(kind, |t| t.subscribed = true);
        Ok(())
    }

    /// Binds the stream to the node of its first request, authenticates the caller and checks that its
    /// identity may act for that node (istiod's identity check).
    async fn identify(&mut self, node: Option<&Node>) -> Result<(), End> {
        let Some(node) = node.filter(|n| !n.id.is_empty()) else {
            return Err(End::Refused(Status::invalid_argument(
                "the first request of a stream must carry the node (node.id)",
            )));
        };
        let peer = parse_node(node).map_err(|e| End::Refused(Status::invalid_argument(e)))?;
        if let Some(authenticators) = &self.shared.config.authenticators {
            let requested = Identity {
                trust_domain: self.shared.config.trust_domain.clone(),
                namespace: peer.namespace.clone(),
                service_account: peer
                    .service_account
                    .clone()
                    .unwrap_or_else(|| peer.proxy_type.clone()),
            };
            let info = RequestInfo {
                metadata: &self.opening.metadata,
                peer_certificates: self.opening.peer_certificates.as_deref().map(Vec::as_slice),
            };
            let mut caller = None;
            for a in authenticators.iter() {
                match a.authenticate(&info, &requested).await {
                    Ok(Some(c)) => {
                        caller = Some(c);
                        break;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(conn = self.id, node = %peer.node, authenticator = a.name(),
                            reason = e.reason(), "xDS caller refused: {e}");
                        return Err(End::Refused(Status::unauthenticated(
                            ambient_ca::AUTHENTICATE_FAILURE,
                        )));
                    }
                }
            }
            let Some(caller) = caller else {
                let tried: Vec<&str> = authenticators.iter().map(|a| a.name()).collect();
                warn!(conn = self.id, node = %peer.node, tried = %tried.join(", "),
                    "xDS caller refused: no authenticator recognised it (no bearer token or client certificate?)");
                return Err(End::Refused(Status::unauthenticated(
                    ambient_ca::AUTHENTICATE_FAILURE,
                )));
            };
            let id = &caller.identity;
            let ns_ok = peer.namespace.is_empty() || id.namespace == peer.namespace;
            let sa_ok = peer
                .service_account
                .as_ref()
                .is_none_or(|sa| *sa == id.service_account);
            if !ns_ok || !sa_ok {
                return Err(End::Refused(Status::permission_denied(format!(
                    "the caller is {id}, which may not act for node {} (namespace {:?}{})",
                    peer.node,
                    peer.namespace,
                    peer.service_account
                        .as_ref()
                        .map(|sa| format!(", service account {sa:?}"))
                        .unwrap_or_default()
                ))));
            }
            info!(conn = self.id, node = %peer.node, caller = %caller,
                remote = ?self.opening.remote_addr, "xDS stream opened");
        } else {
            info!(conn = self.id, node = %peer.node, remote = ?self.opening.remote_addr,
                "xDS stream opened");
        }
        tracing::Span::current().record("node", peer.node.as_str());
        self.status = Some(
            self.shared.registry.insert(
                self.id,
                StreamStatus {
                    node_id: peer.node.clone(),
                    node_name: peer.node_name.clone(),
                    proxy_type: peer.proxy_type.clone(),
                    peer_addr: self
                        .opening
                        .remote_addr
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    connected_since: SystemTime::now(),
                    authorization: Default::default(),
                    address: Default::default(),
                },
            ),
        );
        self._counted = self
            .shared
            .config
            .metrics
            .as_ref()
            .map(|m| m.proxy_connected(&peer.proxy_type));
        self.peer = Some(peer);
        Ok(())
    }

    /// Sends what changed for `kind` since the last response: `Ok(false)` when the client is gone.
    async fn push(&mut self, kind: XdsType) -> Result<bool, End> {
        let nonce = self.next_nonce();
        // The names sent are needed only to clear earlier NACKs of them, which are rare: not collected
        // otherwise (an initial response holds every resource).
        let track_names = self.status.as_ref().is_some_and(|status| {
            let status = status.lock().unwrap_or_else(PoisonError::into_inner);
            !status.get(kind).nacked.is_empty()
        });
        let (framed, count, removed_count, sent_names, first, covers, since) = {
            let index = self.shared.index.read().map_err(End::IndexFailed)?;
            let current = kind.resources(&index);
            let generation = index.generation();
            let state = match kind {
                XdsType::Address => &mut self.address,
                XdsType::Authorization => &mut self.authorization,
            };
            // (name sent under, resource): borrowed from the index until encoded below.
            let mut resources: Vec<(Arc<str>, &Resource)> = Vec::new();
            let mut removed = Vec::new();
            let first = state.initial.is_some();
            if let Some(on_demand) = state.on_demand.as_mut() {
                let answer = match state.initial.take() {
                    Some(held) => {
                        state.compared_at = generation;
                        state.dirty_generation = generation;
                        on_demand.first(&index, held)
                    }
                    None => {
                        let changed = std::mem::take(&mut state.dirty).into_keys().collect();
                        on_demand.next(&index, &changed)
                    }
                };
                state.dirty.clear();
                resources = answer.resources;
                removed = answer.removed;
            } else if let Some(held) = state.initial.take() {
                // The whole index against what the client holds (in the map's order: ztunnel applies
                // a response as a set, so sorting thousands of names per connection buys nothing).
                for (name, resource) in current {
                    if held.get(name) != Some(&Some(resource.version)) {
                        resources.push((resource.name.clone(), resource));
                    }
                }
                let mut gone: Vec<String> = held
                    .keys()
                    .filter(|n| !current.contains_key(*n))
                    .map(|n| n.to_string())
                    .collect();
                gone.sort_unstable();
                removed = gone;
                state.compared_at = generation;
                state.dirty_generation = generation;
                state.dirty.clear();
            } else {
                for (name, new) in std::mem::take(&mut state.dirty) {
                    match current.get(&name) {
                        Some(resource) => resources.push((resource.name.clone(), resource)),
                        None if !new => removed.push(name.to_string()),
                        None => {}
                    }
                }
            }
            let since = if first {
                None
            } else {
                state.dirty_since.take()
            };
            let covers = state.dirty_generation;
            if resources.is_empty() && removed.is_empty() && !first {
                (None, 0, 0, Vec::new(), first, covers, since)
            } else {
                let framed = {
                    let outgoing: Vec<(&str, &Resource)> =
                        resources.iter().map(|(n, r)| (n.as_ref(), *r)).collect();
                    encode_response(kind.type_url(), &outgoing, &removed, &nonce)
                };
                let count = resources.len();
                let names: Vec<Arc<str>> = if track_names {
                    resources.into_iter().map(|(n, _)| n).collect()
                } else {
                    Vec::new()
                };
                (
                    Some(framed),
                    count,
                    removed.len(),
                    names,
                    first,
                    covers,
                    since,
                )
            }
        };
        let Some(framed) = framed else {
            self.report(kind, |t| {
                t.pending_names = 0;
                t.sent_generation = Some(covers);
                if t.acked_generation.is_some() {
                    t.acked_generation = Some(covers);
                }
            });
            return Ok(true);
        };
        debug!(conn = self.id, node = self.node(), type_url = kind.type_url(), %nonce,
            resources = count, removed = removed_count, bytes = framed.len(), "xDS push");
        self.state(kind).pending = Some(Pending {
            nonce: nonce.clone(),
            covers,
            since,
            initial: first,
        });
        if self.status.is_some() {
            self.report(kind, |t| {
                t.last_sent_nonce = Some(nonce);
                t.last_sent_at = Some(SystemTime::now());
                t.resources_sent += count as u64;
                t.pending_names = 0;
                t.sent_generation = Some(covers);
                if !t.nacked.is_empty() {
                    for name in &sent_names {
                        t.nacked.remove(name);
                    }
                }
            });
        }
        let sent = self.tx.send(Ok(framed)).await.is_ok();
        if let Some(m) = &self.shared.config.metrics {
            m.pushed(kind.type_url(), count, since.map(|t| t.elapsed()));
        }
        Ok(sent)
    }

    fn next_nonce(&mut self) -> String {
        self.nonces += 1;
        format!("{}-{}", self.id, self.nonces)
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The resource names of a NACK message in ztunnel's form `<name>: <error>; <name2>: <error2>`.
fn nacked_names(message: &str) -> Vec<Arc<str>> {
    message
        .split("; ")
        .filter_map(|part| {
            part.split_once(": ")
                .map(|(name, _)| Arc::from(name.trim()))
        })
        .filter(|name: &Arc<str>| !name.is_empty())
        .collect()
}

/// `age` ± 10 %, spread by connection so that streams opened together do not all end together.
fn jittered(age: Duration, id: u64) -> Duration {
    let spread = xxhash_rust::xxh64::xxh64(&id.to_le_bytes(), 0x6a69_7474_6572) % 2001;
    // spread in 0..=2000 → factor in 0.9..=1.1
    age.mul_f64(0.9 + spread as f64 / 10_000.0)
}

/// Reads the node: `<type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>` (istiod's service-node
/// format) plus the `NAMESPACE` and `SERVICE_ACCOUNT` metadata.
fn parse_node(node: &Node) -> Result<Peer, String> {
    let bad = |why: &str| {
        format!(
            "node id {:?} is not <type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>: {why}",
            node.id
        )
    };
    let parts: Vec<&str> = node.id.split('~').collect();
    let [proxy_type, ip, pod, _domain] = parts.as_slice() else {
        return Err(bad("it needs exactly four parts separated by '~'"));
    };
    if !matches!(*proxy_type, "ztunnel" | "waypoint" | "sidecar" | "router") {
        return Err(bad("the type must be ztunnel, waypoint, sidecar or router"));
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("the second part must be an IP address"));
    }
    let metadata = |key: &str| -> Option<String> {
        use envoy_types::pb::google::protobuf::value::Kind;
        let value = node.metadata.as_ref()?.fields.get(key)?;
        match &value.kind {
            Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    };
    let namespace = metadata("NAMESPACE")
        .or_else(|| pod.split_once('.').map(|(_, ns)| ns.to_string()))
        .unwrap_or_default();
    Ok(Peer {
        node: node.id.clone(),
        proxy_type: proxy_type.to_string(),
        namespace,
        service_account: metadata("SERVICE_ACCOUNT"),
        node_name: metadata("NODE_NAME"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, meta: &[(&str, &str)]) -> Node {
        use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: meta
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_ids_parse_as_istiod_reads_them() {
        let zt = "ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local";
        let p = parse_node(&node(zt, &[])).unwrap();
        assert_eq!(
            (
                p.proxy_type.as_str(),
                p.namespace.as_str(),
                p.service_account
            ),
            ("ztunnel", "istio-system", None)
        );
        let p = parse_node(&node(
            zt,
            &[("NAMESPACE", "kube-system"), ("SERVICE_ACCOUNT", "zt")],
        ))
        .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.service_account.as_deref()),
            ("kube-system", Some("zt"))
        );
    }

    #[test]
    fn malformed_node_ids_are_refused_with_the_reason() {
        for (id, why) in [
            ("ztunnel", "exactly four parts"),
            ("ztunnel~1.2.3.4~a.b", "exactly four parts"),
            ("proxy~1.2.3.4~a.b~b.svc.cluster.local", "the type must be"),
            ("ztunnel~not-an-ip~a.b~b.svc.cluster.local", "IP address"),
        ] {
            let err = parse_node(&node(id, &[])).unwrap_err();
            assert!(err.contains(why), "{id}: {err}");
            assert!(err.contains(id), "{id}: {err}");
        }
    }

    #[test]
    fn nack_messages_name_the_rejected_resources() {
        let names =
            nacked_names("Kubernetes//Pod/ns/a: invalid IP length 3; ns/svc.example: decode: bad");
        assert_eq!(
            names.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
            ["Kubernetes//Pod/ns/a", "ns/svc.example"]
        );
        assert!(nacked_names("something went wrong").is_empty());
    }

    #[test]
    fn max_age_jitter_stays_within_ten_percent_and_spreads() {
        let age = Duration::from_secs(1800);
        let ages: std::collections::BTreeSet<Duration> =
            (0..100).map(|id| jittered(age, id)).collect();
        assert!(
            ages.iter()
                .all(|a| *a >= age.mul_f64(0.9) && *a <= age.mul_f64(1.1))
        );
        assert!(ages.len() > 90, "{} distinct ages", ages.len());
    }
}
