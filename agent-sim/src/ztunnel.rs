//! One simulated ztunnel: the delta xDS client loop of ztunnel's `xds/client.rs` (docs/reference/ztunnel.md,
//! the gRPC and delta xDS sections), its readiness, its shared-mode certificate prefetch
//! (docs/reference/ztunnel.md#certificates), and hooks for tests.
//!
//! On every (re)connect the client opens a new connection and a `DeltaAggregatedResources` stream,
//! sends one initial request per type at once (Address, then Authorization; the node only there;
//! wildcard; `initial_resource_versions` = all it holds), and answers each response with exactly one
//! ACK or NACK ([`XdsState::handle`]). Its state survives reconnects. Reconnects follow ztunnel's
//! backoff ([`next_backoff`]).
//!
//! Observers ([`crate::observe`]) see every response after its reply was queued, every stream start
//! and end, and every certificate outcome. [`Faults`] lets a test make the client NACK chosen names
//! or stop reading its stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;
use tracing::{Instrument, debug, info_span, warn};

use crate::certs::{self, CertError, CertRecord, CertState, MAX_CONCURRENT_CSRS};
use crate::grpc;
use crate::intern::{StrId, XdsKind};
use crate::observe::{CertEvent, ConnectionEvent, Observer, ResponseEvent};
use crate::state::{CertAction, XdsState};
use crate::transport::{Credentials, Target, TargetError};
use crate::validate::VerdictCache;

/// ztunnel's first reconnect delay and its cap.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Who one simulated ztunnel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZtunnelConfig {
    /// Index in the fleet; observers get it with every event.
    pub index: usize,
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE` (node metadata `NAMESPACE`).
    pub namespace: String,
    /// `INSTANCE_IP`.
    pub instance_ip: String,
    /// `NODE_NAME`.
    pub node_name: String,
    /// `CLUSTER_ID`: node metadata and the `clusterid` header.
    pub cluster_id: String,
    /// `AUTH_TOKEN`: with it, `authorization: Bearer …` and `clusterid` on every call.
    pub token: Option<String>,
    /// More node metadata (`ISTIO_META_*` without the prefix).
    pub metadata: BTreeMap<String, String>,
    /// Fetch certificates for the HBONE workloads on `node_name`, as shared mode does.
    pub certificates: bool,
}

impl ZtunnelConfig {
    /// `ztunnel-NNNNN` in `istio-system` on `node`, `10.255.x.y`, cluster `Kubernetes`, no token.
    pub fn new(index: usize, node: impl Into<String>) -> ZtunnelConfig {
        ZtunnelConfig {
            index,
            pod_name: format!("ztunnel-{index:05}"),
            namespace: "istio-system".to_string(),
            instance_ip: format!("10.255.{}.{}", (index / 250) % 256, index % 250 + 1),
            node_name: node.into(),
            cluster_id: "Kubernetes".to_string(),
            token: None,
            metadata: BTreeMap::new(),
            certificates: false,
        }
    }

    /// `ztunnel~{ip}~{pod}.{ns}~{ns}.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "ztunnel~{}~{}.{}~{}.svc.cluster.local",
            self.instance_ip, self.pod_name, self.namespace, self.namespace
        )
    }

    /// The node of every initial request: id, and metadata NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME,
    /// CLUSTER_ID and the extra metadata, all strings; `cluster` and `build_version` empty.
    pub fn node(&self) -> Node {
        let mut fields: BTreeMap<String, String> = BTreeMap::from([
            ("NAME".to_string(), self.pod_name.clone()),
            ("NAMESPACE".to_string(), self.namespace.clone()),
            ("INSTANCE_IPS".to_string(), self.instance_ip.clone()),
            ("NODE_NAME".to_string(), self.node_name.clone()),
            ("CLUSTER_ID".to_string(), self.cluster_id.clone()),
        ]);
        for (k, v) in &self.metadata {
            fields.insert(k.clone(), v.clone());
        }
        Node {
            id: self.node_id(),
            metadata: Some(Struct {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            Value {
                                kind: Some(Kind::StringValue(v)),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }
}

/// Test hooks of one client.
#[derive(Debug)]
pub struct Faults {
    nack: RwLock<HashSet<String>>,
    nack_any: AtomicBool,
    reading: watch::Sender<bool>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            nack: RwLock::new(HashSet::new()),
            nack_any: AtomicBool::new(false),
            reading: watch::channel(true).0,
        }
    }
}

impl Faults {
    /// Rejects these names (of either type) whenever they arrive, with
    /// [`crate::state::FAULT_MESSAGE`].
    pub fn nack_names<S: Into<String>>(&self, names: impl IntoIterator<Item = S>) {
        let mut set = self.nack.write().unwrap_or_else(PoisonError::into_inner);
        set.extend(names.into_iter().map(Into::into));
        self.nack_any.store(!set.is_empty(), Ordering::Release);
    }

    pub fn clear_nacks(&self) {
        self.nack
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.nack_any.store(false, Ordering::Release);
    }

    /// Stops reading the response stream (the server's writes back up), until resumed.
    pub fn stop_reading(&self) {
        self.reading.send_replace(false);
    }

    pub fn resume_reading(&self) {
        self.reading.send_replace(true);
    }
}

/// Connected / synced counts shared by the clients of a fleet.
#[derive(Debug)]
pub struct FleetCounters {
    pub(crate) connected: AtomicUsize,
    pub(crate) synced: AtomicUsize,
    pub(crate) changed: watch::Sender<u64>,
}

impl Default for FleetCounters {
    fn default() -> Self {
        FleetCounters {
            connected: AtomicUsize::new(0),
            synced: AtomicUsize::new(0),
            changed: watch::channel(0).0,
        }
    }
}

impl FleetCounters {
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    pub fn synced(&self) -> usize {
        self.synced.load(Ordering::Acquire)
    }

    /// Ticks whenever a count changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// A snapshot of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    pub index: usize,
    pub connected: bool,
    pub synced: bool,
    /// Streams opened or attempted.
    pub streams: u64,
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
    pub last_error: Option<String>,
    pub last_nack: Option<String>,
    /// Names held per type.
    pub addresses: usize,
    pub authorizations: usize,
}

struct Shared {
    config: ZtunnelConfig,
    faults: Faults,
    state: Mutex<XdsState>,
    connected: AtomicBool,
    synced: watch::Sender<bool>,
    streams: AtomicU64,
    responses: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_nack: Mutex<Option<String>>,
    certs: Mutex<BTreeMap<String, CertRecord>>,
    fleet: Arc<FleetCounters>,
    observers: Arc<[Arc<dyn Observer>]>,
}

impl Shared {
    fn index(&self) -> usize {
        self.config.index
    }
}

/// A running simulated ztunnel. Dropping the handle does not stop it; [`ZtunnelHandle::stop`] does.
pub struct ZtunnelHandle {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ZtunnelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZtunnelHandle")
            .field("index", &self.shared.index())
            .field("node", &self.shared.config.node_name)
            .finish()
    }
}

impl ZtunnelHandle {
    pub fn config(&self) -> &ZtunnelConfig {
        &self.shared.config
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn status(&self) -> ClientStatus {
        let (addresses, authorizations) = {
            let st = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (
                st.held(XdsKind::Address).len(),
                st.held(XdsKind::Authorization).len(),
            )
        };
        let s = &self.shared;
        ClientStatus {
            index: s.index(),
            connected: s.connected.load(Ordering::Acquire),
            synced: *s.synced.borrow(),
            streams: s.streams.load(Ordering::Relaxed),
            responses: s.responses.load(Ordering::Relaxed),
            acks: s.acks.load(Ordering::Relaxed),
            nacks: s.nacks.load(Ordering::Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            last_nack: s
                .last_nack
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            addresses,
            authorizations,
        }
    }

    /// Every name of `kind` held, with its version (what the next reconnect sends).
    pub fn held(&self, kind: XdsKind) -> BTreeMap<String, String> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .initial_resource_versions(kind)
            .into_iter()
            .collect()
    }

    /// Certificates by identity.
    pub fn certificates(&self) -> BTreeMap<String, CertRecord> {
        self.shared
            .certs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn is_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Completes once the client is synced (one ACK of each type).
    pub async fn wait_synced(&self) {
        let mut rx = self.shared.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops the client (its stream and certificate calls).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Stops the client and waits for its task to end.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts one simulated ztunnel against `target`.
pub fn spawn(
    target: &Target,
    config: ZtunnelConfig,
    observers: Arc<[Arc<dyn Observer>]>,
    fleet: Arc<FleetCounters>,
) -> Result<ZtunnelHandle, TargetError> {
    let credentials = match &config.token {
        Some(token) => Some(Credentials::new(
            token,
            &config.cluster_id,
            &format!("ztunnel {} ({})", config.index, config.node_name),
        )?),
        None => None,
    };
    let state = if config.certificates {
        XdsState::with_certificates(&config.node_name)
    } else {
        XdsState::new()
    };
    let span = info_span!("ztunnel", client = config.index, node = %config.node_name);
    let shared = Arc::new(Shared {
        config,
        faults: Faults::default(),
        state: Mutex::new(state),
        connected: AtomicBool::new(false),
        synced: watch::channel(false).0,
        streams: AtomicU64::new(0),
        responses: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        nacks: AtomicU64::new(0),
        last_error: Mutex::new(None),
        last_nack: Mutex::new(None),
        certs: Mutex::new(BTreeMap::new()),
        fleet,
        observers,
    });
    let client = Client {
        shared: Arc::clone(&shared),
        target: target.clone(),
        credentials,
        ca: None,
        csr_limit: Arc::new(Semaphore::new(MAX_CONCURRENT_CSRS)),
        csr_tasks: JoinSet::new(),
        csr_by_identity: HashMap::new(),
    };
    let task = tokio::spawn(client.run().instrument(span));
    Ok(ZtunnelHandle { shared, task })
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connecting, the TLS handshake or opening the stream failed.
    Connection(String),
    /// The stream ended with a gRPC status.
    Status { code: Code, message: String },
    /// The stream ended cleanly (OK or end of stream) after `responses` responses.
    Complete { responses: u64 },
    /// The client could not send its reply (the stream is gone).
    Local { error: String, responses: u64 },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connection(e) => write!(f, "connection error: {e}"),
            Outcome::Status { code, message } => write!(f, "gRPC status {code:?}: {message}"),
            Outcome::Complete { .. } => f.write_str("stream complete"),
            Outcome::Local { error, .. } => write!(f, "{error}"),
        }
    }
}

/// ztunnel's reconnect rule (`run_loop`): returns (sleep now, backoff to carry).
///
/// - connection failures and most gRPC statuses: double the backoff (from 10 ms, capped at 15 s) and
///   sleep that long;
/// - `Unknown`, `Cancelled`, `DeadlineExceeded`, and `Unavailable` saying `transport is closing` or
///   `received prior goaway`: sleep 10 ms, reset;
/// - a clean end of stream: reconnect at once, reset.
///
/// One deviation keeps a simulator of thousands from spinning: a clean end (or a failed reply) on a
/// stream that delivered no response counts as a failure (doubling), not as an immediate reconnect.
pub fn next_backoff(backoff: Duration, outcome: &Outcome) -> (Duration, Duration) {
    let doubled = (backoff * 2).min(MAX_BACKOFF);
    match outcome {
        Outcome::Connection(_) => (doubled, doubled),
        Outcome::Status { code, message } => {
            let reconnect = matches!(
                code,
                Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
            ) || (*code == Code::Unavailable
                && (message.contains("transport is closing")
                    || message.contains("received prior goaway")));
            if reconnect {
                (INITIAL_BACKOFF, INITIAL_BACKOFF)
            } else {
                (doubled, doubled)
            }
        }
        Outcome::Complete { responses } | Outcome::Local { responses, .. } => {
            if *responses > 0 {
                (Duration::ZERO, INITIAL_BACKOFF)
            } else {
                (doubled, doubled)
            }
        }
    }
}

struct Client {
    shared: Arc<Shared>,
    target: Target,
    credentials: Option<Credentials>,
    ca: Option<Channel>,
    csr_limit: Arc<Semaphore>,
    csr_tasks: JoinSet<()>,
    csr_by_identity: HashMap<StrId, AbortHandle>,
}

impl Client {
    async fn run(mut self) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let stream = self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
            let outcome = self
                .run_stream(stream)
                .instrument(info_span!("xds", id = stream))
                .await;
            let (sleep, next) = next_backoff(backoff, &outcome);
            backoff = next;
            let error = outcome.to_string();
            match &outcome {
                Outcome::Connection(_) => {
                    warn!(%error, retry_in = ?sleep, "XDS client connection error")
                }
                Outcome::Complete { .. } => warn!(retry_in = ?sleep, "XDS client complete"),
                _ => warn!(%error, retry_in = ?sleep, "XDS client error"),
            }
            *self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
            for o in self.shared.observers.iter() {
                o.on_connection(
                    self.shared.index(),
                    &ConnectionEvent::Disconnected {
                        stream,
                        error: &error,
                        retry_in: sleep,
                    },
                );
            }
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
        }
    }

    async fn run_stream(&mut self, stream: u64) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let initial = shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .initial_requests(&shared.config.node());
        for r in &initial {
            debug!(type_url = %r.type_url, resources = r.initial_resource_versions.len(), "sending initial request");
        }
        let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(100);
        let outbound = tokio_stream::iter(initial).chain(ReceiverStream::new(rx));

        let channel = match self.target.connect().await {
            Ok(c) => c,
            Err(e) => return Outcome::Connection(e.to_string()),
        };
        let mut responses = match grpc::open(channel, outbound, self.credentials.as_ref()).await {
            Ok(r) => r,
            Err(status) => {
                return Outcome::Connection(format!(
                    "gRPC status {:?}: {}",
                    status.code(),
                    status.message()
                ));
            }
        };
        debug!("Stream established");
        let _connected = Connected::new(&shared);
        for o in shared.observers.iter() {
            o.on_connection(shared.index(), &ConnectionEvent::Connected { stream });
        }
        self.read_loop(stream, &mut responses, &tx).await
    }

    async fn read_loop(
        &mut self,
        stream: u64,
        responses: &mut grpc::DeltaStream,
        tx: &mpsc::Sender<DeltaDiscoveryRequest>,
    ) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let mut reading = shared.faults.reading.subscribe();
        let mut received: u64 = 0;
        loop {
            if !*reading.borrow_and_update() {
                if reading.wait_for(|r| *r).await.is_err() {
                    return Outcome::Local {
                        error: "fault hook gone".into(),
                        responses: received,
                    };
                }
                continue;
            }
            let msg = tokio::select! {
                m = responses.message() => m,
                _ = reading.changed() => continue,
            };
            let response = match msg {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Outcome::Complete {
                        responses: received,
                    };
                }
                Err(status) => {
                    return Outcome::Status {
                        code: status.code(),
                        message: status.message().to_string(),
                    };
                }
            };
            received += 1;
            shared.responses.fetch_add(1, Ordering::Relaxed);

            let was_synced = *shared.synced.borrow();
            let handled = {
                let nack_set = shared.faults.nack_any.load(Ordering::Acquire).then(|| {
                    shared
                        .faults
                        .nack
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                });
                let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.handle(&response, VerdictCache::global(), nack_set.as_deref())
            };
            debug!(type_url = %response.type_url, size = response.resources.len(),
                removes = response.removed_resources.len(), "received response");
            let reply = handled.reply(&response);
            if handled.kind.is_none() {
                warn!(type_url = %response.type_url, "unknown type");
            }
            if let Some(error) = &handled.nack {
                warn!(type_url = %response.type_url, nonce = %response.nonce, %error, "sending NACK");
                shared.nacks.fetch_add(1, Ordering::Relaxed);
                *shared
                    .last_nack
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
            } else {
                shared.acks.fetch_add(1, Ordering::Relaxed);
            }
            if tx.send(reply).await.is_err() {
                return Outcome::Local {
                    error: "the request stream is closed".into(),
                    responses: received,
                };
            }
            let event = ResponseEvent {
                client: shared.index(),
                stream,
                at: Instant::now(),
                type_url: &response.type_url,
                kind: handled.kind,
                nonce: &response.nonce,
                resources: response.resources.len(),
                body_bytes: handled.body_bytes,
                changed: &handled.changed,
                rejected: &handled.rejected,
                removed: &handled.removed,
                nack: handled.nack.as_deref(),
                was_synced,
                synced: was_synced || handled.became_synced,
            };
            for o in shared.observers.iter() {
                o.on_response(&event);
            }
            // Readiness after the observers: whoever waits for it has seen every event of the sync.
            if handled.became_synced {
                shared.synced.send_replace(true);
                shared.fleet.synced.fetch_add(1, Ordering::AcqRel);
                shared.fleet.bump();
            }
            if !handled.cert_actions.is_empty() {
                self.on_cert_actions(&handled.cert_actions);
            }
            while self.csr_tasks.try_join_next().is_some() {}
        }
    }

    fn on_cert_actions(&mut self, actions: &[CertAction]) {
        for action in actions {
            match *action {
                CertAction::Fetch(identity) => {
                    if self.csr_by_identity.contains_key(&identity) {
                        continue;
                    }
                    let id = identity.get().to_string();
                    self.shared
                        .certs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(
                            id.clone(),
                            CertRecord {
                                identity: id.clone(),
                                state: CertState::Pending { last_error: None },
                                attempts: 0,
                                failures: 0,
                            },
                        );
                    let channel = self
                        .ca
                        .get_or_insert_with(|| self.target.lazy_channel())
                        .clone();
                    let task = CsrTask {
                        shared: Arc::clone(&self.shared),
                        channel,
                        credentials: self.credentials.clone(),
                        identity: id,
                        limit: Arc::clone(&self.csr_limit),
                    };
                    let span = info_span!("csr", identity = %task.identity);
                    let handle = self.csr_tasks.spawn(task.run().instrument(span));
                    self.csr_by_identity.insert(identity, handle);
                }
                CertAction::Forget(identity) => {
                    if let Some(handle) = self.csr_by_identity.remove(&identity) {
                        handle.abort();
                    }
                    self.shared
                        .certs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&*identity.get());
                }
            }
        }
    }
}

/// Counts the client as connected while alive (also when the client is stopped mid-stream).
struct Connected {
    shared: Arc<Shared>,
}

impl Connected {
    fn new(shared: &Arc<Shared>) -> Connected {
        shared.connected.store(true, Ordering::Release);
        shared.fleet.connected.fetch_add(1, Ordering::AcqRel);
        shared.fleet.bump();
        Connected {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.shared.connected.store(false, Ordering::Release);
        self.shared.fleet.connected.fetch_sub(1, Ordering::AcqRel);
        self.shared.fleet.bump();
    }
}

/// Fetches one identity's certificate, retrying failures with ztunnel's backoff.
struct CsrTask {
    shared: Arc<Shared>,
    channel: Channel,
    credentials: Option<Credentials>,
    identity: String,
    limit: Arc<Semaphore>,
}

impl CsrTask {
    async fn run(self) {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = {
                let Ok(_permit) = self.limit.acquire().await else {
                    return;
                };
                let started = Instant::now();
                let r = certs::fetch(
                    self.channel.clone(),
                    self.credentials.as_ref(),
                    &self.identity,
                )
                .await;
                (r, started.elapsed())
            };
            let (result, latency) = result;
            self.record(&result, latency, attempt);
            let failures = match &result {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "certificate fetch failed; will retry");
                    attempt
                }
            };
            let seed = (self.shared.index() as u64) << 32 | u64::from(attempt);
            tokio::time::sleep(certs::jitter(certs::retry_delay(failures), seed)).await;
        }
    }

    fn record(&self, result: &Result<usize, CertError>, latency: Duration, attempt: u32) {
        let at = Instant::now();
        {
            let mut certs = self
                .shared
                .certs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(rec) = certs.get_mut(&self.identity) {
                rec.attempts = attempt;
                match result {
                    Ok(chain_len) => {
                        rec.state = CertState::Issued {
                            chain_len: *chain_len,
                            latency,
                            at,
                        }
                    }
                    Err(e) => {
                        rec.failures += 1;
                        rec.state = CertState::Pending {
                            last_error: Some(e.to_string()),
                        };
                    }
                }
            }
        }
        let event = CertEvent {
            client: self.shared.index(),
            identity: &self.identity,
            at,
            result: result.as_ref().map(|n| *n),
            latency,
            attempt,
        };
        for o in self.shared.observers.iter() {
            o.on_certificate(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_and_metadata_are_ztunnels() {
        let mut cfg = ZtunnelConfig::new(7, "node-0003");
        cfg.pod_name = "ztunnel-abcde".into();
        cfg.instance_ip = "10.244.1.7".into();
        cfg.metadata.insert("DNS_CAPTURE".into(), "true".into());
        let node = cfg.node();
        assert_eq!(
            node.id,
            "ztunnel~10.244.1.7~ztunnel-abcde.istio-system~istio-system.svc.cluster.local"
        );
        assert!(node.cluster.is_empty());
        assert!(node.user_agent_name.is_empty());
        let fields: BTreeMap<String, Option<Kind>> = node
            .metadata
            .expect("metadata")
            .fields
            .into_iter()
            .map(|(k, v)| (k, v.kind))
            .collect();
        let s = |v: &str| Some(Kind::StringValue(v.to_string()));
        assert_eq!(
            fields,
            BTreeMap::from([
                ("CLUSTER_ID".to_string(), s("Kubernetes")),
                ("DNS_CAPTURE".to_string(), s("true")),
                ("INSTANCE_IPS".to_string(), s("10.244.1.7")),
                ("NAME".to_string(), s("ztunnel-abcde")),
                ("NAMESPACE".to_string(), s("istio-system")),
                ("NODE_NAME".to_string(), s("node-0003")),
            ])
        );
    }

    #[test]
    fn defaults_are_distinct_per_index() {
        let a = ZtunnelConfig::new(0, "n");
        let b = ZtunnelConfig::new(251, "n");
        assert_eq!(a.pod_name, "ztunnel-00000");
        assert_eq!(a.instance_ip, "10.255.0.1");
        assert_eq!(b.instance_ip, "10.255.1.2");
        assert_eq!(a.token, None);
    }

    #[test]
    fn backoff_follows_ztunnels_table() {
        let ms = Duration::from_millis;
        let status = |code: Code, message: &str| Outcome::Status {
            code,
            message: message.into(),
        };
        let cases: Vec<(Duration, Outcome, (Duration, Duration))> = vec![
            (
                ms(10),
                Outcome::Connection("refused".into()),
                (ms(20), ms(20)),
            ),
            (
                ms(10_000),
                Outcome::Connection("refused".into()),
                (MAX_BACKOFF, MAX_BACKOFF),
            ),
            (
                ms(640),
                status(Code::Unknown, "h2 protocol error"),
                (ms(10), ms(10)),
            ),
            (ms(640), status(Code::Cancelled, ""), (ms(10), ms(10))),
            (
                ms(640),
                status(Code::DeadlineExceeded, ""),
                (ms(10), ms(10)),
            ),
            (
                ms(640),
                status(Code::Unavailable, "transport is closing"),
                (ms(10), ms(10)),
            ),
            (
                ms(640),
                status(Code::Unavailable, "received prior goaway: code: NO_ERROR"),
                (ms(10), ms(10)),
            ),
            (
                ms(10),
                status(Code::Unavailable, "control plane shutting down"),
                (ms(20), ms(20)),
            ),
            (
                ms(40),
                status(Code::Unauthenticated, "no"),
                (ms(80), ms(80)),
            ),
            (
                ms(40),
                status(Code::PermissionDenied, "no"),
                (ms(80), ms(80)),
            ),
            (
                ms(640),
                Outcome::Complete { responses: 3 },
                (Duration::ZERO, ms(10)),
            ),
            // Never a hot loop: a stream that ended before any response backs off.
            (ms(10), Outcome::Complete { responses: 0 }, (ms(20), ms(20))),
            (
                ms(10),
                Outcome::Local {
                    error: "x".into(),
                    responses: 0,
                },
                (ms(20), ms(20)),
            ),
        ];
        for (backoff, outcome, want) in cases {
            assert_eq!(
                next_backoff(backoff, &outcome),
                want,
                "{outcome:?} after {backoff:?}"
            );
        }
    }

    #[test]
    fn fault_hooks_toggle() {
        let f = Faults::default();
        assert!(!f.nack_any.load(Ordering::Relaxed));
        f.nack_names(["a", "b"]);
        assert!(f.nack_any.load(Ordering::Relaxed));
        f.clear_nacks();
        assert!(!f.nack_any.load(Ordering::Relaxed));
        assert!(*f.reading.borrow());
        f.stop_reading();
        assert!(!*f.reading.borrow());
        f.resume_reading();
        assert!(*f.reading.borrow());
    }
}
