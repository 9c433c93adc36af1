//! One delta ADS stream's task: the I/O around the planner. It reads the client's requests and the
//! index's change log, hands both to the stream's [`StreamState`] (the pure planner in [`super::delta`]),
//! asks it for pushes under the index read lock, encodes them once the lock is released, and sends them
//! through a bounded queue — so a client that stops reading stalls only its own task. It also admits the
//! caller, takes turns for large first responses, ends the stream (shutdown, maximum age, falling
//! behind the change log, a failed index) with the status that makes clients reconnect, and counts
//! everything.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::Instant;
use tonic::Status;
use tracing::{debug, info, warn};

use super::Shared;
use super::admission::{Opening, admit};
use super::delta::{Received, StreamState};
use super::node::parse_node;
use super::types::{changed_names, profile};
use super::wire::{Requests, encode_response};
use crate::metrics::ConnectedProxy;
use crate::shared_index::{ChangeNotice, IndexFailed};

// The ends that ask the client to reconnect say "transport is closing": ztunnel reconnects after 10 ms
// (and resets its backoff) only for `Unavailable` with that phrase or "received prior goaway"; any other
// `Unavailable` doubles its backoff, up to 15 s, with no reset after a good stream
// (docs/reference/ztunnel.md#delta-xds-reconnect-and-backoff).
const SHUTDOWN_MESSAGE: &str = "control plane shutting down: transport is closing; reconnect (to another replica) with the versions held";
const MAX_AGE_MESSAGE: &str = "maximum connection age reached (--max-connection-age): transport is closing; \
     reconnect, with the versions held, to any replica";
const LAGGED_MESSAGE: &str = "this stream fell too far behind the control plane's changes: transport is \
     closing; reconnect with the versions held to be compared afresh";
const INDEX_FAILED_MESSAGE: &str = "the control plane's index failed and it is restarting: transport is \
     closing; reconnect (to another replica) with the versions held";

/// How long a connection may hold an initial-sync turn before it is given to the next one.
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
    IndexFailed(IndexFailed),
}

pub(super) struct Connection {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<Bytes, Status>>,
    changes: broadcast::Receiver<Arc<ChangeNotice>>,
    opening: Opening,
    /// From the first request on: the planner's state, which the registry shows to the admin API.
    stream: Option<Registered>,
    /// Held from the first full response until every first response is answered (or for at most
    /// [`INITIAL_SYNC_PATIENCE`]): bounds how many large initial responses are in flight at once.
    sync_permit: Option<(OwnedSemaphorePermit, Instant)>,
    /// The initial sync is over (its turn was given back).
    initial_synced: bool,
    /// Keeps the stream counted as a connected proxy.
    _counted: Option<ConnectedProxy>,
}

/// A stream's state in the registry; leaves it when dropped (also when the task panics).
struct Registered {
    state: Arc<Mutex<StreamState>>,
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
    }
}

/// Locks a stream's state. Only its own task changes it; if that task panicked, the stream is gone and
/// the state is read for display only, so what it holds is kept.
fn lock(state: &Mutex<StreamState>) -> MutexGuard<'_, StreamState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
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
            stream: None,
            sync_permit: None,
            initial_synced: false,
            _counted: None,
        }
    }

    fn node(&self) -> String {
        match &self.stream {
            Some(s) => lock(&s.state).peer.node.clone(),
            None => "<unknown>".to_string(),
        }
    }

    pub(super) async fn run(mut self, mut requests: Requests) {
        let end = self.serve(&mut requests).await;
        let node = self.node();
        self.stream = None;
        let status = match end {
            End::Client => {
                info!(conn = self.id, node, "xDS stream closed by the client");
                return;
            }
            End::Shutdown => {
                info!(conn = self.id, node, "xDS stream ended: shutting down");
                Status::unavailable(SHUTDOWN_MESSAGE)
            }
            End::MaxAge => {
                info!(
                    conn = self.id,
                    node, "xDS stream ended: maximum connection age"
                );
                Status::unavailable(MAX_AGE_MESSAGE)
            }
            End::Lagged => {
                warn!(
                    conn = self.id,
                    node,
                    "xDS stream ended: the client fell too far behind the control plane's changes"
                );
                Status::unavailable(LAGGED_MESSAGE)
            }
            End::IndexFailed(failed) => {
                warn!(conn = self.id, node, "xDS stream ended: {failed}");
                Status::unavailable(INDEX_FAILED_MESSAGE)
            }
            End::Refused(status) => {
                warn!(conn = self.id, node, code = ?status.code(),
                    message = status.message(), "xDS stream refused");
                status
            }
        };
        let _ = self.tx.send(Err(status)).await;
    }

    async fn serve(&mut self, requests: &mut Requests) -> End {
        let mut shutdown = self.shared.shutdown.clone();
        let deadline = self
            .shared
            .config
            .max_connection_age
            .map(|age| Instant::now() + jittered(age, self.id));
        let max_age = sleep_until_some(deadline);
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
            if let Err(end) = self.push_due().await {
                return end;
            }
            let permit_deadline = self.sync_permit.as_ref().map(|(_, at)| *at);
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

    /// Sends every push the planner says may go now, in the profile's order.
    async fn push_due(&mut self) -> Result<(), End> {
        let Some(state) = self.stream.as_ref().map(|s| Arc::clone(&s.state)) else {
            return Ok(());
        };
        // Each planned push leaves its type outstanding or with nothing to send, so this ends after at
        // most one push per type.
        loop {
            let push = {
                let mut state = lock(&state);
                let Some(i) = state.next_push() else {
                    break;
                };
                let index = self.shared.index.read().map_err(End::IndexFailed)?;
                state.plan(i, &*index, SystemTime::now())
            };
            // Both locks are released: encode and send.
            let Some(push) = push else {
                continue;
            };
            let framed = encode_response(
                push.type_url,
                || push.resources.iter(),
                &push.removed,
                &push.nonce,
            );
            debug!(conn = self.id, type_url = push.type_url, nonce = %push.nonce,
                resources = push.count, removed = push.removed.len(),
                bytes = framed.len(), "xDS push");
            let sent = self.tx.send(Ok(framed)).await.is_ok();
            if let Some(m) = &self.shared.config.metrics {
                m.pushed(push.type_url, push.count, push.since.map(|t| t.elapsed()));
            }
            if !sent {
                return Err(End::Client);
            }
        }
        Ok(())
    }

    /// Whether the next push is a first (full) response that needs one of the initial-sync turns.
    fn needs_sync_permit(&self) -> bool {
        !self.initial_synced
            && self.sync_permit.is_none()
            && self
                .stream
                .as_ref()
                .is_some_and(|s| lock(&s.state).initial_push_due())
    }

    /// Ends this connection's initial sync: the turn goes to the next connection waiting.
    fn release_sync_permit(&mut self) {
        if self.sync_permit.take().is_some() {
            self.initial_synced = true;
        }
    }

    /// Gives the initial-sync turn back once every first response has been answered.
    fn maybe_release_sync_permit(&mut self) {
        let answered = self
            .stream
            .as_ref()
            .is_some_and(|s| lock(&s.state).initial_sync_answered());
        if self.sync_permit.is_some() && answered {
            self.release_sync_permit();
        }
    }

    /// Folds one change report in; `Err` when reports were lost.
    fn on_changes(
        &mut self,
        notice: Result<Arc<ChangeNotice>, broadcast::error::RecvError>,
    ) -> Result<(), ()> {
        match notice {
            Ok(notice) => {
                if let Some(s) = &self.stream {
                    lock(&s.state).on_changes(
                        notice.generation,
                        notice.at.into_std(),
                        |kind, scope| changed_names(&notice.changes, kind.table, scope),
                    );
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
            // The index is gone; it can no longer change.
            Err(broadcast::error::RecvError::Closed) => Ok(()),
        }
    }

    /// Handles one request; `Err` ends the stream.
    async fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Result<(), End> {
        if self.stream.is_none() {
            self.identify(request.node.as_ref()).await?;
        }
        let Some(stream) = &self.stream else {
            return Ok(());
        };
        let state = Arc::clone(&stream.state);
        if request.response_nonce.is_empty() {
            debug!(conn = self.id, type_url = %request.type_url,
                subscribe = ?request.resource_names_subscribe,
                unsubscribe = ?request.resource_names_unsubscribe, "xDS subscription");
        }
        let type_url = request.type_url.clone();
        let received = lock(&state).on_request(request, SystemTime::now());
        let metrics = self.shared.config.metrics.as_ref();
        match received {
            Received::Subscribed | Received::Resubscribed => {}
            Received::Ack { type_url, since } => {
                if let Some(m) = metrics {
                    m.acked(type_url, since.map(|t| t.elapsed()));
                }
                self.maybe_release_sync_permit();
            }
            Received::Nack {
                type_url,
                nonce,
                message,
            } => {
                self.shared
                    .stats
                    .nacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(m) = metrics {
                    m.nacked(type_url);
                }
                warn!(conn = self.id, node = self.node(), type_url, %nonce, %message, "xDS NACK");
                self.maybe_release_sync_permit();
            }
            Received::UnknownType { answer } => {
                debug!(conn = self.id, %type_url, answer, "request for a type not served");
                if answer {
                    let nonce = lock(&state).next_nonce();
                    let response = encode_response(&type_url, std::iter::empty, &[], &nonce);
                    if self.tx.send(Ok(response)).await.is_err() {
                        return Err(End::Client);
                    }
                }
            }
        }
        Ok(())
    }

    /// Binds the stream to the node of its first request, admits the caller, and registers the stream.
    async fn identify(&mut self, node: Option<&Node>) -> Result<(), End> {
        let Some(node) = node.filter(|n| !n.id.is_empty()) else {
            return Err(End::Refused(Status::invalid_argument(
                "the first request of a stream must carry the node (node.id)",
            )));
        };
        let peer = parse_node(node).map_err(|e| End::Refused(Status::invalid_argument(e)))?;
        admit(&self.shared.config, &self.opening, &peer, self.id)
            .await
            .map_err(End::Refused)?;
        tracing::Span::current().record("node", peer.node.as_str());
        self._counted = self
            .shared
            .config
            .metrics
            .as_ref()
            .map(|m| m.proxy_connected(&peer.proxy_type));
        let profile = profile(&peer.proxy_type);
        let peer_addr = self
            .opening
            .remote_addr
            .map(|a| a.to_string())
            .unwrap_or_default();
        let state = Arc::new(Mutex::new(StreamState::new(
            self.id,
            peer,
            peer_addr,
            SystemTime::now(),
            profile,
        )));
        self.shared.registry.insert(self.id, Arc::clone(&state));
        self.stream = Some(Registered {
            state,
            shared: Arc::clone(&self.shared),
            id: self.id,
        });
        Ok(())
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `age` ± 10 %, spread by connection so that streams opened together do not all end together.
fn jittered(age: Duration, id: u64) -> Duration {
    let spread = xxhash_rust::xxh64::xxh64(&id.to_le_bytes(), 0x6a69_7474_6572) % 2001;
    // spread in 0..=2000 → factor in 0.9..=1.1
    age.mul_f64(0.9 + spread as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
