//! The admin HTTP server (istiod's port 15014): `/ready`, `/metrics` and the read-only `/debug/*` JSON
//! documents that `ambientd zc` renders.
//!
//! This module owns the server ([`serve`]) and what it is given to read ([`AdminState`]); what it learns
//! of connected proxies comes through [`crate::connections`]. The documents themselves are in [`api`]
//! (shared with `zc`) and are computed by [`views`]. Nothing here writes to the index.
//!
//! | path | answer |
//! |---|---|
//! | `/ready` | `200 ready` once [`AdminState::set_ready`] said so, else `503 not ready` |
//! | `/metrics` | every family of [`crate::metrics::Metrics`], OpenMetrics text |
//! | `/debug/workloads` | [`api::WorkloadList`]; `?namespace=`, `?node=` |
//! | `/debug/services` | [`api::ServiceList`]; `?namespace=` |
//! | `/debug/policies` | [`api::PolicyList`]; `?namespace=` |
//! | `/debug/diagnostics` | [`api::DiagnosticList`]; `?namespace=` |
//! | `/debug/waypoints` | [`api::WaypointList`]; `?namespace=` |
//! | `/debug/connections` | [`api::ConnectionList`]; `?namespace=`, `?node=` |
//! | `/debug/certs` | [`api::CertsDoc`] |
//! | `/debug/config` | the effective configuration |
//! | `/debug/sync` | [`api::SyncDoc`]; `?name=` (required), `?type=` |
//!
//! Anything else is a `404` whose JSON body lists these paths; a method other than GET or HEAD is `405`;
//! an unknown query parameter is `400`.

pub mod api;
mod http;
pub mod views;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

use crate::connections::{ConnectionRegistry, NoConnections};
use crate::metrics::Metrics;
use crate::shared_index::SharedIndex;
use crate::source::SourceDiagnostic;

pub use http::serve;

/// The paths the server answers, as the 404 document lists them.
pub const ENDPOINTS: [&str; 11] = [
    "/ready",
    "/metrics",
    "/debug/workloads",
    "/debug/services",
    "/debug/policies",
    "/debug/diagnostics",
    "/debug/waypoints",
    "/debug/connections",
    "/debug/certs",
    "/debug/config",
    "/debug/sync",
];

type CertsFn = dyn Fn() -> api::CertsDoc + Send + Sync;
type DiagnosticsFn = dyn Fn() -> Vec<SourceDiagnostic> + Send + Sync;

/// Everything the admin server reads. Cheap to clone (all shared); keep a clone to flip readiness.
#[derive(Clone)]
pub struct AdminState {
    index: Arc<SharedIndex>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    connections: Arc<dyn ConnectionRegistry>,
    certs: Option<Arc<CertsFn>>,
    config: Arc<serde_json::Value>,
    source_diagnostics: Option<Arc<DiagnosticsFn>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// A state over `index` and `metrics`: not ready, no connections, no certificates, config `{}`.
    pub fn new(index: Arc<SharedIndex>, metrics: Arc<Metrics>) -> AdminState {
        AdminState {
            index,
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
            connections: Arc::new(NoConnections),
            certs: None,
            config: Arc::new(serde_json::Value::Object(Default::default())),
            source_diagnostics: None,
        }
    }

    /// Where `/debug/connections` and `/debug/sync` look.
    pub fn with_connections(mut self, registry: Arc<dyn ConnectionRegistry>) -> AdminState {
        self.connections = registry;
        self
    }

    /// What `/debug/certs` shows, computed per request; e.g.
    /// `move || views::certs(&ca_service.authority(), &serving, &ca_service.metrics())`.
    pub fn with_certs(
        mut self,
        certs: impl Fn() -> api::CertsDoc + Send + Sync + 'static,
    ) -> AdminState {
        self.certs = Some(Arc::new(certs));
        self
    }

    /// What `/debug/config` shows: the effective configuration as the server describes it (every flag's
    /// value after defaults; paths, never file contents).
    pub fn with_config(mut self, config: serde_json::Value) -> AdminState {
        self.config = Arc::new(config);
        self
    }

    /// The source's current problems (documents that failed to parse), for `/debug/policies` and
    /// `/debug/diagnostics`.
    pub fn with_source_diagnostics(
        mut self,
        diagnostics: impl Fn() -> Vec<SourceDiagnostic> + Send + Sync + 'static,
    ) -> AdminState {
        self.source_diagnostics = Some(Arc::new(diagnostics));
        self
    }

    /// Sets what `/ready` answers (shared by every clone).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Why the admin listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "cannot listen on {addr} for the admin API: the address is already in use; stop whatever \
         listens there (another ambientd, an istiod port-forward) or choose another with --admin-addr"
    )]
    AddrInUse { addr: SocketAddr },
    #[error(
        "cannot listen on {addr} for the admin API: {source}; choose another with --admin-addr"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Binds the admin listener, with errors that name the flag to change.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(AdminError::AddrInUse { addr }),
        Err(source) => Err(AdminError::Bind { addr, source }),
    }
}

/// Spawns [`serve`] on the current runtime; the task ends when `shutdown` completes.
pub fn spawn(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve(listener, state, shutdown))
}
