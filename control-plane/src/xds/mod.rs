//! Delta ADS for ztunnel: `DeltaAggregatedResources` over the index's two wildcard types,
//! `istio.workload.Address` and `istio.security.Authorization`.
//!
//! The server reads resources straight from the shared [`Index`]; whoever applies events to the index
//! passes the returned [`Changes`] to [`Notifier::notify`]. Every connection runs in its own task, keeps
//! what it last sent (name → version, per type) and a dirty set of names to reconsider, and sends only the
//! difference. One response per type is outstanding at a time: notifications that arrive while the client
//! has not answered coalesce into the dirty set and go out together after the ACK or NACK.
//!
//! The state-of-the-world stream is not served: ztunnel only speaks delta.

mod connection;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::index::{Changes, Index};

/// Responses a connection may have queued towards a slow client before its task waits.
const CONNECTION_BUFFER: usize = 16;

/// Change notifications buffered per connection; a connection that falls further behind recomputes
/// everything against what it sent, which gives the same result.
const NOTIFY_BUFFER: usize = 1024;

/// Counters shared by the server and its notifier.
#[derive(Debug, Default)]
struct Stats {
    nacks: AtomicU64,
    connections: AtomicU64,
}

/// State shared by all connections.
#[derive(Debug)]
struct Shared {
    index: Arc<RwLock<Index>>,
    changes: broadcast::Sender<Arc<Changes>>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
}

/// The delta ADS service; turn it into a tonic service with [`XdsServer::into_service`].
#[derive(Debug, Clone)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

/// Tells the connections of one [`XdsServer`] what changed in the index, and when to stop.
#[derive(Debug, Clone)]
pub struct Notifier {
    changes: broadcast::Sender<Arc<Changes>>,
    shutdown: Arc<watch::Sender<bool>>,
    stats: Arc<Stats>,
}

impl XdsServer {
    pub fn new(index: Arc<RwLock<Index>>) -> (XdsServer, Notifier) {
        let (changes, _) = broadcast::channel(NOTIFY_BUFFER);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let server = XdsServer {
            shared: Arc::new(Shared {
                index,
                changes: changes.clone(),
                shutdown,
                stats: stats.clone(),
            }),
        };
        let notifier = Notifier {
            changes,
            shutdown: Arc::new(shutdown_tx),
            stats,
        };
        (server, notifier)
    }

    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<XdsServer> {
        AggregatedDiscoveryServiceServer::new(self)
    }
}

impl Notifier {
    /// Reports what one `apply`/`delete`/`reset` changed; call it after the index write lock is released.
    pub fn notify(&self, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        // No receivers means no connections: nothing to tell.
        let _ = self.changes.send(Arc::new(changes.clone()));
    }

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

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "state-of-the-world xDS is not served: use DeltaAggregatedResources (delta xDS is required)",
        ))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let id = self
            .shared
            .stats
            .connections
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let (tx, rx) = mpsc::channel(CONNECTION_BUFFER);
        let conn = connection::Connection::new(id, self.shared.clone(), tx);
        tokio::spawn(conn.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
