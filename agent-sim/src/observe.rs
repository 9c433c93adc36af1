//! Watching simulated ztunnels from a driver with little overhead.
//!
//! Every client calls its [`Observer`]s synchronously, on its own task, right after it has queued
//! the ACK or NACK of a response: the event borrows the client's interned name ids ([`NameId`]), so
//! nothing is copied or sent through a channel, even for the 11,000 names of an initial response.
//! Observers must be quick and must not block.
//!
//! Three observers come with the crate:
//! - [`Propagation`]: "tell me when name X reaches every client". Register a watch *before* making a
//!   change; it completes when every chosen client has ACKed a response that carries the name
//!   (changed, removed, or either), and reports per-client delays. This is what a benchmark uses to
//!   measure propagation.
//! - [`ChangeFeed`]: follows every change after the clients synced, groups the names that arrived
//!   together, and reports each group once all clients ACKed it (`agent-sim run` prints these).
//! - [`Recorder`]: keeps owned copies of events (names resolved to strings) for tests and small
//!   fleets, and lets a test wait for a condition on them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::certs::CertError;
use crate::intern::{NameId, XdsKind, resolve_names};

/// One response handled by one client, observed after its reply was queued.
#[derive(Debug, Clone, Copy)]
pub struct ResponseEvent<'a> {
    /// Index of the client in its fleet.
    pub client: usize,
    /// Stream number of the client (1 for the first connection, +1 per reconnect).
    pub stream: u64,
    /// When the reply was queued.
    pub at: Instant,
    pub type_url: &'a str,
    /// `None` for a type ztunnel does not know.
    pub kind: Option<XdsKind>,
    pub nonce: &'a str,
    /// Resources in the response (accepted and rejected).
    pub resources: usize,
    /// Bytes of resource bodies.
    pub body_bytes: usize,
    /// Accepted resources.
    pub changed: &'a [NameId],
    /// Rejected resources.
    pub rejected: &'a [NameId],
    /// `removed_resources`.
    pub removed: &'a [NameId],
    /// The NACK message; `None` when the reply was an ACK.
    pub nack: Option<&'a str>,
    /// The client was already synced (one ACK of each type) before this response.
    pub was_synced: bool,
    /// The client is synced after this response.
    pub synced: bool,
}

impl ResponseEvent<'_> {
    pub fn acked(&self) -> bool {
        self.nack.is_none()
    }
}

/// A client's stream opened or ended.
#[derive(Debug, Clone, Copy)]
pub enum ConnectionEvent<'a> {
    /// The stream is open (the server accepted the call).
    Connected { stream: u64 },
    /// The stream ended (or could not open); the client retries after `retry_in`.
    Disconnected {
        stream: u64,
        error: &'a str,
        retry_in: Duration,
    },
}

/// A certificate request finished.
#[derive(Debug, Clone, Copy)]
pub struct CertEvent<'a> {
    pub client: usize,
    pub identity: &'a str,
    pub at: Instant,
    /// The chain length, or why it failed.
    pub result: Result<usize, &'a CertError>,
    pub latency: Duration,
    /// 1 for the first call for this identity.
    pub attempt: u32,
}

/// Receives what simulated ztunnels do. Called on the client's task: be quick, never block.
pub trait Observer: Send + Sync + 'static {
    fn on_response(&self, _event: &ResponseEvent<'_>) {}
    fn on_connection(&self, _client: usize, _event: &ConnectionEvent<'_>) {}
    fn on_certificate(&self, _event: &CertEvent<'_>) {}
}

/// Which part of a response a [`Propagation`] watch looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The name among the accepted resources.
    Changed,
    /// The name among `removed_resources`.
    Removed,
    /// Either.
    Either,
}

struct Watch {
    kind: XdsKind,
    name: NameId,
    expect: Expect,
    started: Instant,
    targets: Vec<bool>,
    state: Mutex<WatchState>,
    done: watch::Sender<bool>,
}

struct WatchState {
    acked_at: Vec<Option<Instant>>,
    remaining: usize,
    nacks: usize,
}

impl Watch {
    fn on_response(&self, e: &ResponseEvent<'_>) {
        let hit = match self.expect {
            Expect::Changed => e.changed.contains(&self.name),
            Expect::Removed => e.removed.contains(&self.name),
            Expect::Either => e.changed.contains(&self.name) || e.removed.contains(&self.name),
        };
        if !hit || !self.targets.get(e.client).copied().unwrap_or(false) {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if e.nack.is_some() {
            st.nacks += 1;
            return;
        }
        if st.acked_at[e.client].is_none() {
            st.acked_at[e.client] = Some(e.at);
            st.remaining = st.remaining.saturating_sub(1);
            if st.remaining == 0 {
                self.done.send_replace(true);
            }
        }
    }

    fn report(&self) -> PropagationReport {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let acked: Vec<Option<Duration>> = st
            .acked_at
            .iter()
            .map(|t| t.map(|t| t.saturating_duration_since(self.started)))
            .collect();
        PropagationReport {
            kind: self.kind,
            name: self.name.name(self.kind),
            target: self.targets.iter().filter(|t| **t).count(),
            reached: acked.iter().filter(|a| a.is_some()).count(),
            nacks: st.nacks,
            acked,
        }
    }
}

/// Measures how long a change takes to reach a set of clients. See the module documentation.
pub struct Propagation {
    clients: usize,
    watches: RwLock<Vec<Arc<Watch>>>,
    active: AtomicUsize,
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Propagation")
            .field("clients", &self.clients)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl Propagation {
    /// For a fleet of `clients` ztunnels.
    pub fn new(clients: usize) -> Arc<Propagation> {
        Arc::new(Propagation {
            clients,
            watches: RwLock::new(Vec::new()),
            active: AtomicUsize::new(0),
        })
    }

    /// Waits for `name` to reach every client. Register it before making the change: the clock
    /// starts now.
    pub fn watch(self: &Arc<Self>, kind: XdsKind, name: &str, expect: Expect) -> PropagationWatch {
        self.watch_clients(kind, name, expect, 0..self.clients)
    }

    /// Waits for `name` to reach the given clients only (e.g. all but a faulty one).
    pub fn watch_clients(
        self: &Arc<Self>,
        kind: XdsKind,
        name: &str,
        expect: Expect,
        clients: impl IntoIterator<Item = usize>,
    ) -> PropagationWatch {
        let mut targets = vec![false; self.clients];
        for c in clients {
            if let Some(t) = targets.get_mut(c) {
                *t = true;
            }
        }
        let remaining = targets.iter().filter(|t| **t).count();
        let (done, done_rx) = watch::channel(remaining == 0);
        let w = Arc::new(Watch {
            kind,
            name: NameId::of(kind, name),
            expect,
            started: Instant::now(),
            targets,
            state: Mutex::new(WatchState {
                acked_at: vec![None; self.clients],
                remaining,
                nacks: 0,
            }),
            done,
        });
        self.watches
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&w));
        self.active.fetch_add(1, Ordering::Release);
        PropagationWatch {
            owner: Arc::clone(self),
            watch: w,
            done: done_rx,
        }
    }

    fn remove(&self, w: &Arc<Watch>) {
        let mut watches = self.watches.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = watches.iter().position(|x| Arc::ptr_eq(x, w)) {
            watches.swap_remove(i);
            self.active.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Observer for Propagation {
    fn on_response(&self, event: &ResponseEvent<'_>) {
        if self.active.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(kind) = event.kind else { return };
        let watches = self.watches.read().unwrap_or_else(PoisonError::into_inner);
        for w in watches.iter().filter(|w| w.kind == kind) {
            w.on_response(event);
        }
    }
}

/// One registered watch; dropping it stops watching.
pub struct PropagationWatch {
    owner: Arc<Propagation>,
    watch: Arc<Watch>,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for PropagationWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropagationWatch")
            .field("kind", &self.watch.kind)
            .field("name", &self.watch.name.name(self.watch.kind))
            .finish()
    }
}

impl Drop for PropagationWatch {
    fn drop(&mut self) {
        self.owner.remove(&self.watch);
    }
}

impl PropagationWatch {
    /// Completes when every chosen client has ACKed a response carrying the name.
    pub async fn wait(&mut self) -> PropagationReport {
        let _ = self.done.wait_for(|d| *d).await;
        self.watch.report()
    }

    /// [`PropagationWatch::wait`] for at most `timeout`; the report says how far it got either way.
    pub async fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<PropagationReport, PropagationReport> {
        match tokio::time::timeout(timeout, self.done.wait_for(|d| *d)).await {
            Ok(_) => Ok(self.watch.report()),
            Err(_) => Err(self.watch.report()),
        }
    }

    /// Where it stands now.
    pub fn report(&self) -> PropagationReport {
        self.watch.report()
    }
}

/// How far a name got.
#[derive(Debug, Clone, PartialEq)]
pub struct PropagationReport {
    pub kind: XdsKind,
    pub name: Arc<str>,
    /// Clients watched.
    pub target: usize,
    /// Clients that ACKed it.
    pub reached: usize,
    /// NACKed responses that carried it.
    pub nacks: usize,
    /// Per client (by index): time from the watch's registration to the ACK.
    pub acked: Vec<Option<Duration>>,
}

impl PropagationReport {
    pub fn complete(&self) -> bool {
        self.reached == self.target
    }

    /// Time until the last watched client ACKed.
    pub fn max(&self) -> Option<Duration> {
        self.acked.iter().flatten().max().copied()
    }

    /// The `p`-th percentile (0–100) of the delays of the clients that ACKed.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut d: Vec<Duration> = self.acked.iter().flatten().copied().collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * (d.len() - 1) as f64).round() as usize;
        d.get(rank).copied()
    }
}

/// A group of names that changed together, as every client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeReport {
    pub kind: XdsKind,
    pub changed: Vec<Arc<str>>,
    pub removed: Vec<Arc<str>>,
    /// Fleet size.
    pub clients: usize,
    /// Clients that ACKed all of it.
    pub acked: usize,
    /// NACKed responses that carried part of it.
    pub nacks: usize,
    /// When the first client received it.
    pub first_seen: Instant,
    /// From `first_seen` to the last client's ACK (to now, when incomplete).
    pub spread: Duration,
    pub complete: bool,
}

struct Entry {
    group: u64,
    bits: Vec<u64>,
    count: usize,
}

struct Group {
    kind: XdsKind,
    changed: Vec<NameId>,
    removed: Vec<NameId>,
    first: Instant,
    last_ack: Instant,
    open_entries: usize,
    nacks: usize,
    /// The group's entries.
    keys: Vec<(XdsKind, NameId, bool)>,
}

#[derive(Default)]
struct FeedInner {
    next_group: u64,
    entries: HashMap<(XdsKind, NameId, bool), Entry>,
    groups: HashMap<u64, Group>,
}

/// Reports each change once every client ACKed it (see the module documentation).
pub struct ChangeFeed {
    clients: usize,
    inner: Mutex<FeedInner>,
    tx: mpsc::UnboundedSender<ChangeReport>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("clients", &self.clients)
            .finish()
    }
}

impl ChangeFeed {
    pub fn new(clients: usize) -> (Arc<ChangeFeed>, mpsc::UnboundedReceiver<ChangeReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(ChangeFeed {
                clients,
                inner: Mutex::new(FeedInner::default()),
                tx,
            }),
            rx,
        )
    }

    /// Reports, as incomplete, the groups first seen more than `age` ago.
    pub fn flush_older_than(&self, age: Duration) {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<u64> = inner
            .groups
            .iter()
            .filter(|(_, g)| now.saturating_duration_since(g.first) > age)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(g) = inner.groups.remove(&id) {
                let acked = g
                    .keys
                    .iter()
                    .map(|k| inner.entries.get(k).map_or(self.clients, |e| e.count))
                    .min()
                    .unwrap_or(0);
                for k in &g.keys {
                    inner.entries.remove(k);
                }
                let _ = self.tx.send(self.report(&g, acked, now, false));
            }
        }
    }

    fn report(&self, g: &Group, acked: usize, end: Instant, complete: bool) -> ChangeReport {
        ChangeReport {
            kind: g.kind,
            changed: resolve_names(g.kind, &g.changed),
            removed: resolve_names(g.kind, &g.removed),
            clients: self.clients,
            acked,
            nacks: g.nacks,
            first_seen: g.first,
            spread: end.saturating_duration_since(g.first),
            complete,
        }
    }
}

impl Observer for ChangeFeed {
    fn on_response(&self, e: &ResponseEvent<'_>) {
        let Some(kind) = e.kind else { return };
        if !e.was_synced || (e.changed.is_empty() && e.removed.is_empty()) {
            return;
        }
        let words = self.clients.div_ceil(64);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        let mut new_group: Option<u64> = None;
        let mut touched: HashSet<u64> = HashSet::new();
        let names = e
            .changed
            .iter()
            .map(|n| (*n, false))
            .chain(e.removed.iter().map(|n| (*n, true)));
        for (name, removed) in names {
            let key = (kind, name, removed);
            if !inner.entries.contains_key(&key) {
                let gid = *new_group.get_or_insert_with(|| {
                    inner.next_group += 1;
                    let id = inner.next_group;
                    inner.groups.insert(
                        id,
                        Group {
                            kind,
                            changed: Vec::new(),
                            removed: Vec::new(),
                            first: e.at,
                            last_ack: e.at,
                            open_entries: 0,
                            nacks: 0,
                            keys: Vec::new(),
                        },
                    );
                    id
                });
                if let Some(g) = inner.groups.get_mut(&gid) {
                    if removed {
                        g.removed.push(name);
                    } else {
                        g.changed.push(name);
                    }
                    g.open_entries += 1;
                    g.keys.push(key);
                }
                inner.entries.insert(
                    key,
                    Entry {
                        group: gid,
                        bits: vec![0; words],
                        count: 0,
                    },
                );
            }
            let Some(entry) = inner.entries.get_mut(&key) else {
                continue;
            };
            let gid = entry.group;
            if e.nack.is_some() {
                if touched.insert(gid)
                    && let Some(g) = inner.groups.get_mut(&gid)
                {
                    g.nacks += 1;
                }
                continue;
            }
            let (w, b) = (e.client / 64, 1u64 << (e.client % 64));
            if e.client >= self.clients || entry.bits[w] & b != 0 {
                continue;
            }
            entry.bits[w] |= b;
            entry.count += 1;
            if entry.count < self.clients {
                continue;
            }
            let Some(g) = inner.groups.get_mut(&gid) else {
                continue;
            };
            g.open_entries -= 1;
            g.last_ack = g.last_ack.max(e.at);
            if g.open_entries == 0
                && let Some(g) = inner.groups.remove(&gid)
            {
                for k in &g.keys {
                    inner.entries.remove(k);
                }
                let _ = self
                    .tx
                    .send(self.report(&g, self.clients, g.last_ack, true));
            }
        }
    }
}

/// An owned copy of an event, for tests and small fleets.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Response(RecordedResponse),
    Connected {
        client: usize,
        stream: u64,
    },
    Disconnected {
        client: usize,
        stream: u64,
        error: String,
        retry_in: Duration,
    },
    Certificate {
        client: usize,
        identity: String,
        result: Result<usize, CertError>,
        attempt: u32,
    },
}

/// A response as a client handled it, with names resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedResponse {
    pub client: usize,
    pub stream: u64,
    pub at: Instant,
    pub type_url: String,
    pub kind: Option<XdsKind>,
    pub nonce: String,
    pub changed: Vec<String>,
    pub rejected: Vec<String>,
    pub removed: Vec<String>,
    pub nack: Option<String>,
    pub was_synced: bool,
}

/// Keeps every event of the chosen clients. Copies names: meant for tests and small fleets.
pub struct Recorder {
    clients: Option<HashSet<usize>>,
    events: Mutex<Vec<Recorded>>,
    version: watch::Sender<u64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.events.lock().map(|e| e.len()).unwrap_or(0))
            .finish()
    }
}

impl Recorder {
    /// Records every client.
    pub fn new() -> Arc<Recorder> {
        Recorder::build(None)
    }

    /// Records only these clients.
    pub fn for_clients(clients: impl IntoIterator<Item = usize>) -> Arc<Recorder> {
        Recorder::build(Some(clients.into_iter().collect()))
    }

    fn build(clients: Option<HashSet<usize>>) -> Arc<Recorder> {
        Arc::new(Recorder {
            clients,
            events: Mutex::new(Vec::new()),
            version: watch::channel(0).0,
        })
    }

    fn wants(&self, client: usize) -> bool {
        self.clients.as_ref().is_none_or(|c| c.contains(&client))
    }

    fn push(&self, r: Recorded) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
        self.version.send_modify(|v| *v += 1);
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Recorded> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The recorded responses of one client.
    pub fn responses(&self, client: usize) -> Vec<RecordedResponse> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|e| match e {
                Recorded::Response(r) if r.client == client => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many events are recorded; a mark to look only at later ones with [`Recorder::since`].
    pub fn mark(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Events recorded after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Recorded> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.get(mark..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// Waits until `f` finds what it looks for in the events (re-checked after every new event), for
    /// at most `timeout`. `f` runs with the recorder locked: it must use the slice it is given, not
    /// the recorder's other methods.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[Recorded]) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            {
                let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(v) = f(&events) {
                    return Some(v);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}

impl Observer for Recorder {
    fn on_response(&self, e: &ResponseEvent<'_>) {
        if !self.wants(e.client) {
            return;
        }
        let names = |ids: &[NameId]| -> Vec<String> {
            match e.kind {
                Some(kind) => resolve_names(kind, ids)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                None => Vec::new(),
            }
        };
        self.push(Recorded::Response(RecordedResponse {
            client: e.client,
            stream: e.stream,
            at: e.at,
            type_url: e.type_url.to_string(),
            kind: e.kind,
            nonce: e.nonce.to_string(),
            changed: names(e.changed),
            rejected: names(e.rejected),
            removed: names(e.removed),
            nack: e.nack.map(str::to_string),
            was_synced: e.was_synced,
        }));
    }

    fn on_connection(&self, client: usize, e: &ConnectionEvent<'_>) {
        if !self.wants(client) {
            return;
        }
        self.push(match *e {
            ConnectionEvent::Connected { stream } => Recorded::Connected { client, stream },
            ConnectionEvent::Disconnected {
                stream,
                error,
                retry_in,
            } => Recorded::Disconnected {
                client,
                stream,
                error: error.to_string(),
                retry_in,
            },
        });
    }

    fn on_certificate(&self, e: &CertEvent<'_>) {
        if !self.wants(e.client) {
            return;
        }
        self.push(Recorded::Certificate {
            client: e.client,
            identity: e.identity.to_string(),
            result: e.result.map_err(Clone::clone),
            attempt: e.attempt,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(
        client: usize,
        changed: &'a [NameId],
        removed: &'a [NameId],
        nack: Option<&'a str>,
    ) -> ResponseEvent<'a> {
        ResponseEvent {
            client,
            stream: 1,
            at: Instant::now(),
            type_url: XdsKind::Address.type_url(),
            kind: Some(XdsKind::Address),
            nonce: "1",
            resources: changed.len(),
            body_bytes: 0,
            changed,
            rejected: &[],
            removed,
            nack,
            was_synced: true,
            synced: true,
        }
    }

    #[tokio::test]
    async fn a_watch_completes_when_every_target_acked() {
        let p = Propagation::new(3);
        let name = NameId::of(XdsKind::Address, "observe/a");
        let other = NameId::of(XdsKind::Address, "observe/b");
        let mut w = p.watch_clients(XdsKind::Address, "observe/a", Expect::Changed, [0, 2]);
        p.on_response(&event(0, &[other, name], &[], None));
        p.on_response(&event(1, &[name], &[], None));
        p.on_response(&event(2, &[name], &[], Some("nope")));
        p.on_response(&event(2, &[], &[name], None));
        let r = w.report();
        assert_eq!((r.target, r.reached, r.nacks), (2, 1, 1));
        assert!(!r.complete());
        p.on_response(&event(2, &[name], &[], None));
        let r = w
            .wait_timeout(Duration::from_secs(5))
            .await
            .expect("complete");
        assert_eq!((r.reached, r.nacks), (2, 1));
        assert!(r.acked[1].is_none());
        assert!(r.max().is_some());
        drop(w);
        assert_eq!(p.active.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_feed_groups_names_and_reports_once_all_clients_acked() {
        let (feed, mut rx) = ChangeFeed::new(2);
        let a = NameId::of(XdsKind::Address, "feed/a");
        let b = NameId::of(XdsKind::Address, "feed/b");
        let c = NameId::of(XdsKind::Address, "feed/c");
        feed.on_response(&event(0, &[a], &[b], None));
        feed.on_response(&event(1, &[a], &[], None));
        assert!(rx.try_recv().is_err());
        feed.on_response(&event(1, &[], &[b], Some("bad")));
        feed.on_response(&event(1, &[], &[b], None));
        let r = rx.try_recv().expect("report");
        assert_eq!(
            (
                r.changed.len(),
                r.removed.len(),
                r.acked,
                r.nacks,
                r.complete
            ),
            (1, 1, 2, 1, true)
        );
        assert_eq!(&*r.changed[0], "feed/a");
        assert_eq!(&*r.removed[0], "feed/b");
        // Initial sync responses are not reported; an incomplete group is flushed.
        let cs = [c];
        let mut initial = event(0, &cs, &[], None);
        initial.was_synced = false;
        feed.on_response(&initial);
        feed.on_response(&event(0, &[c], &[], None));
        feed.flush_older_than(Duration::ZERO);
        let r = rx.try_recv().expect("flushed");
        assert_eq!((r.acked, r.complete), (1, false));
    }
}
