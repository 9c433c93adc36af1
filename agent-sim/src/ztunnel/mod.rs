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
//!
//! This module holds the handle ([`ZtunnelHandle`], [`spawn`]) and what the handle and the client's
//! tasks share. The parts: `config` (who a client is, its fault hooks, the fleet's counters, its
//! status), `backoff` (ztunnel's reconnect rule), `client` (the stream loop) and `csr` (one
//! certificate fetch per identity).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{Instrument, info_span};

use crate::certs::{CertRecord, MAX_CONCURRENT_CSRS};
use crate::intern::XdsKind;
use crate::observe::Observer;
use crate::state::XdsState;
use crate::transport::{Credentials, Target, TargetError};

mod backoff;
mod client;
mod config;
mod csr;

pub use backoff::{INITIAL_BACKOFF, MAX_BACKOFF, Outcome, next_backoff};
pub use config::{ClientStatus, Faults, FleetCounters, ZtunnelConfig};

use client::Client;

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
