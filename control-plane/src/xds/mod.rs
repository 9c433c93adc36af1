//! Delta ADS (`DeltaAggregatedResources`): the resource types of [`types`] (today ztunnel's
//! `istio.workload.Address` and `istio.security.Authorization`), read from the [`SharedIndex`] and kept
//! current by following its change log.
//!
//! | module | holds |
//! |---|---|
//! | [`types`] | each resource type, described once (type URL, table, scope, on demand), and each kind of proxy's types in push order |
//! | [`delta`] | the pure planner: per stream and type, what to send and remove, ACK/NACK bookkeeping |
//! | [`on_demand`] | keys asked for one by one (ztunnel's `XDS_ON_DEMAND`) |
//! | `connection` | one stream's task: admission, requests, change log, initial-sync turns, pushes, ends |
//! | `admission` | who may open a stream (authentication and istiod's identity check) |
//! | `node` | the node id and metadata a stream names |
//! | `wire` | gRPC framing below tonic's codec |
//! | `registry` | the open streams' planner state, for the admin API |
//!
//! The state-of-the-world stream is not served: ztunnel only speaks delta.

mod admission;
mod connection;
pub(crate) mod delta;
mod node;
pub(crate) mod on_demand;
mod registry;
pub(crate) mod types;
mod wire;

pub use registry::XdsRegistry;
pub use wire::AdsService;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ambient_ca::Authenticator;
use tracing::Instrument;

use crate::metrics::Metrics;

use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::shared_index::SharedIndex;

/// Responses a connection may have queued towards a slow client before its task waits.
pub(crate) const CONNECTION_BUFFER: usize = 16;

/// How streams are admitted and how long they live.
#[derive(Clone)]
pub struct XdsConfig {
    /// Tried in order on each stream's first request; `None` admits every caller.
    pub authenticators: Option<Arc<[Arc<dyn Authenticator>]>>,
    /// The trust domain of identities (for the `none` authenticator's view of the caller).
    pub trust_domain: String,
    /// Streams end with `Unavailable` after this long (±10 %), so clients rebalance across replicas.
    pub max_connection_age: Option<Duration>,
    /// Where pushes, ACKs, NACKs, latencies and connected proxies are counted.
    pub metrics: Option<Arc<Metrics>>,
    /// Connections that may be in their initial sync (first full responses sent, not yet answered) at
    /// once. Each such response holds every resource, so this bounds the memory of many proxies
    /// connecting together; the others wait their turn.
    pub concurrent_initial_syncs: usize,
}

impl Default for XdsConfig {
    fn default() -> Self {
        XdsConfig {
            authenticators: None,
            trust_domain: "cluster.local".to_string(),
            max_connection_age: None,
            metrics: None,
            concurrent_initial_syncs: 8,
        }
    }
}

impl std::fmt::Debug for XdsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Option<Vec<&str>> = self
            .authenticators
            .as_ref()
            .map(|a| a.iter().map(|a| a.name()).collect());
        f.debug_struct("XdsConfig")
            .field("authenticators", &names)
            .field("trust_domain", &self.trust_domain)
            .field("max_connection_age", &self.max_connection_age)
            .field("concurrent_initial_syncs", &self.concurrent_initial_syncs)
            .finish()
    }
}

/// Counters shared by the server and its notifier.
#[derive(Debug, Default)]
struct Stats {
    nacks: AtomicU64,
    connections: AtomicU64,
}

/// State shared by all connections.
#[derive(Debug)]
struct Shared {
    index: Arc<SharedIndex>,
    config: XdsConfig,
    registry: Arc<XdsRegistry>,
    initial_syncs: Arc<tokio::sync::Semaphore>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
}

/// The delta ADS service; turn it into a tonic service with [`XdsServer::into_service`].
#[derive(Debug, Clone)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

/// Tells the connections of one [`XdsServer`] when to stop, and counts what they saw.
#[derive(Debug, Clone)]
pub struct Notifier {
    shutdown: Arc<watch::Sender<bool>>,
    stats: Arc<Stats>,
}

impl XdsServer {
    /// A server that admits every caller and keeps streams open for as long as they last.
    pub fn new(index: Arc<SharedIndex>) -> (XdsServer, Notifier) {
        XdsServer::with_config(index, XdsConfig::default())
    }

    pub fn with_config(index: Arc<SharedIndex>, config: XdsConfig) -> (XdsServer, Notifier) {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let server = XdsServer {
            shared: Arc::new(Shared {
                registry: Arc::new(XdsRegistry::new(Arc::clone(&index))),
                initial_syncs: Arc::new(tokio::sync::Semaphore::new(
                    config.concurrent_initial_syncs.max(1),
                )),
                index,
                config,
                shutdown,
                stats: stats.clone(),
            }),
        };
        let notifier = Notifier {
            shutdown: Arc::new(shutdown_tx),
            stats,
        };
        (server, notifier)
    }

    /// The open streams, for the admin API.
    pub fn registry(&self) -> Arc<XdsRegistry> {
        Arc::clone(&self.shared.registry)
    }

    /// The gRPC service to add to a tonic server.
    pub fn into_service(self) -> AdsService {
        AdsService::new(self)
    }
}

impl Notifier {
    /// Ends every open stream, and every stream opened later, with `Unavailable` so that clients reconnect
    /// (to another replica) with their state instead of looping on a clean end of stream.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// NACKs received since start, over all connections.
    pub fn nack_count(&self) -> u64 {
        self.stats.nacks.load(Ordering::Relaxed)
    }

    /// Delta streams accepted since start.
    pub fn connection_count(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }
}

impl XdsServer {
    /// Starts serving one `DeltaAggregatedResources` call: the connection task reads the request body
    /// and sends framed responses (or the final status) into the returned channel.
    pub(crate) fn start(
        &self,
        request: tonic::Request<tonic::body::Body>,
    ) -> mpsc::Receiver<Result<bytes::Bytes, Status>> {
        let id = self
            .shared
            .stats
            .connections
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let (tx, rx) = mpsc::channel(CONNECTION_BUFFER);
        let opening = admission::Opening {
            metadata: request.metadata().clone(),
            peer_certificates: request.peer_certs().or_else(|| {
                request
                    .extensions()
                    .get::<ambient_ca::PeerCertificates>()
                    .map(|p| p.0.clone())
            }),
            remote_addr: request.remote_addr(),
        };
        let conn = connection::Connection::new(id, self.shared.clone(), tx, opening);
        let span = tracing::info_span!("xds", conn = id, node = tracing::field::Empty);
        tokio::spawn(
            conn.run(wire::Requests::new(request.into_inner()))
                .instrument(span),
        );
        rx
    }
}
