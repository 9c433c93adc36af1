//! `ambientd serve`: the long-running server. It owns the TLS gRPC listener (istiod's port 15012), the
//! certificate authority behind it, the serving certificate and its renewal, and the index that the
//! source keeps up to date. The parts are in [`crate::runtime`]; this module puts them together.
//!
//! Wiring, in start order ([`Server::bind`]):
//! 1. the source starts ([`crate::runtime::source`]): the config folder's objects build the index and
//!    a watcher follows it, or, with `--kube`, the Kubernetes source starts and the index starts
//!    empty: the first batch is the complete cluster, and [`Server::run`] serves gRPC and answers
//!    `/ready` only once it is applied (the admin API is up meanwhile). The index is an
//!    [`Arc<SharedIndex>`]; the source follower ([`crate::runtime::follow`]) is its only writer;
//! 2. the CA is loaded and the root bundle written, the serving certificate issued, and the
//!    authenticators built ([`crate::runtime::authority`]); in file mode without `--auth`, a
//!    first-run token is written for the pod the banner names ([`crate::runtime::tokens`]);
//! 3. the listeners are bound. Each accepted TLS connection completes its handshake on its own task
//!    (a slow client holds up nobody; [`ambient_ca::tls_incoming`]) and is then handed to tonic, which
//!    serves HTTP/2 gRPC on it.
//!
//! [`Server::run`] starts the background work as one [`TaskSet`] (the follower, the serving
//! certificate's renewal, the admin API, and with `--kube` the Lease, the status writer and the root
//! ConfigMap publisher), serves until the shutdown future completes or the index fails, and then stops
//! everything in one order. A failed index (an update panicked half-way) stops the server with
//! [`ServeError::IndexFailed`] naming the object: the binary exits non-zero, a supervisor restarts it,
//! and the new process builds its index afresh from the source.
//!
//! The gRPC services: `istio.v1.auth.IstioCertificateService` (the CA) and delta ADS on the TLS port,
//! delta ADS alone on the plaintext port (istiod's 15010, loopback by default). Callers of both are
//! authenticated by the configured methods in order (the same authenticator objects serve both); the
//! CA's node check (may a ztunnel obtain this identity?) asks the index whether a pod of that service
//! account runs on the caller's node, and the xDS identity check compares the caller with the node it
//! speaks for.
//!
//! Peer certificates reach the CA's client-certificate authenticator through tonic's connection info:
//! connections are `tokio_rustls::server::TlsStream<TcpStream>`, for which tonic puts a
//! `TlsConnectInfo` (with the verified client chain) into every request's extensions, where
//! `Request::peer_certs` finds it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::{
    CaService, CertificateAuthority, ServingTls, TrustAllAuthenticator, tls_incoming,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, error, info, info_span, warn};

use crate::admin::{self, AdminState};
use crate::cluster::leader::Leadership;
use crate::metrics::Metrics;
use crate::runtime::authority::{Authority, renew_serving};
use crate::runtime::banner::Banner;
use crate::runtime::follow::{Follow, follow_source};
use crate::runtime::listeners::bind;
use crate::runtime::source::{self, SourceHandle};
use crate::runtime::tasks::TaskSet;
use crate::runtime::tokens::{TokenExample, Workload};
use crate::shared_index::SharedIndex;
use crate::source::Event;
use crate::xds::{Notifier, XdsConfig, XdsServer};

pub use crate::runtime::authority::IndexNodeLookup;
pub use crate::runtime::config::{AuthMethod, ServeConfig, ServeSource};
pub use crate::runtime::error::ServeError;

/// How long the admin API may take to finish its requests at shutdown.
const ADMIN_GRACE: Duration = Duration::from_secs(3);

/// How long the Lease holder may take to hand the Lease back at shutdown.
const LEASE_GRACE: Duration = Duration::from_secs(2);

/// A started server: the CA is loaded, the listeners are bound, the index follows the source.
/// [`Server::run`] serves until the shutdown future completes.
pub struct Server {
    /// The configuration in effect (a first-run token appears as the tokens file it was written to).
    config: ServeConfig,
    listener: TcpListener,
    grpc_addr: SocketAddr,
    plaintext_listener: Option<TcpListener>,
    xds_plaintext_addr: Option<SocketAddr>,
    admin_listener: Option<TcpListener>,
    admin_addr: Option<SocketAddr>,
    admin: AdminState,
    metrics: Arc<Metrics>,
    ca: Arc<CertificateAuthority>,
    root_bundle: PathBuf,
    serving: Arc<ServingTls>,
    ca_service: CaService,
    xds: XdsServer,
    notifier: Notifier,
    index: Arc<SharedIndex>,
    source: SourceHandle,
    events: mpsc::Receiver<Vec<Event>>,
    example_token: Option<TokenExample>,
    first_run: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("grpc_addr", &self.grpc_addr)
            .field("root_bundle", &self.root_bundle)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the source, loads the CA, issues the serving certificate and binds the listeners.
    pub async fn bind(mut config: ServeConfig) -> Result<Server, ServeError> {
        if config.auth.is_empty() {
            return Err(ServeError::NoAuth);
        }
        if config.auth.contains(&AuthMethod::None) {
            let mut listeners = vec![config.grpc_addr];
            listeners.extend(config.xds_plaintext_addr);
            listeners.extend(config.admin_addr);
            TrustAllAuthenticator::ensure_loopback(&listeners)?;
        }

        let metrics = Arc::new(Metrics::new());
        let (tx, events) = mpsc::channel(16);
        let (index, source) = source::open(&config, tx, &metrics).await?;
        let index = SharedIndex::new(index);

        let authority = Authority::load(&config, source.client(), &index).await?;
        config.auth = authority.auth;
        let Authority {
            ca,
            root_bundle,
            serving,
            ca_service,
            authenticators,
            example_token,
            first_run,
            ..
        } = authority;

        metrics.register_index(Arc::clone(&index));
        {
            let ca_service = ca_service.clone();
            metrics.register_ca(move || ca_service.metrics());
        }
        let (xds, notifier) = XdsServer::with_config(
            Arc::clone(&index),
            XdsConfig {
                authenticators: Some(authenticators.into()),
                trust_domain: ca.trust_domain().to_string(),
                max_connection_age: config.max_connection_age,
                metrics: Some(Arc::clone(&metrics)),
                ..XdsConfig::default()
            },
        );
        let admin = {
            let ca_service = ca_service.clone();
            let serving = Arc::clone(&serving);
            let diagnostics = source.diagnostics_fn();
            AdminState::new(Arc::clone(&index), Arc::clone(&metrics))
                .with_connections(xds.registry())
                .with_certs(move || {
                    admin::views::certs(&ca_service.authority(), &serving, &ca_service.metrics())
                })
                .with_config(config.to_json())
                .with_source_diagnostics(move || diagnostics())
        };

        let (listener, grpc_addr) = bind(config.grpc_addr, "--grpc-addr").await?;
        let (plaintext_listener, xds_plaintext_addr) = match config.xds_plaintext_addr {
            Some(addr) => {
                let (l, addr) = bind(addr, "--xds-plaintext-addr").await?;
                (Some(l), Some(addr))
            }
            None => (None, None),
        };
        let (admin_listener, admin_addr) = match config.admin_addr {
            Some(addr) => {
                let (l, addr) = bind(addr, "--admin-addr").await?;
                (Some(l), Some(addr))
            }
            None => (None, None),
        };
        info!(%grpc_addr, xds_plaintext = ?xds_plaintext_addr, admin = ?admin_addr,
            root_bundle = %root_bundle.display(), "listening");

        Ok(Server {
            config,
            listener,
            grpc_addr,
            plaintext_listener,
            xds_plaintext_addr,
            admin_listener,
            admin_addr,
            admin,
            metrics,
            ca,
            root_bundle,
            serving,
            ca_service,
            xds,
            notifier,
            index,
            source,
            events,
            example_token,
            first_run,
        })
    }

    /// The address the TLS gRPC listener is bound to (the real port when 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address of the plaintext xDS listener, when there is one.
    pub fn xds_plaintext_addr(&self) -> Option<SocketAddr> {
        self.xds_plaintext_addr
    }

    /// The address of the admin HTTP listener, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The root bundle file (PEM) that clients must trust.
    pub fn root_bundle_path(&self) -> &Path {
        &self.root_bundle
    }

    pub fn root_bundle_pem(&self) -> &str {
        self.ca.root_bundle_pem()
    }

    pub fn ca(&self) -> Arc<CertificateAuthority> {
        Arc::clone(&self.ca)
    }

    /// The serving certificate holder (renewed by [`Server::run`]'s timer).
    pub fn serving(&self) -> Arc<ServingTls> {
        Arc::clone(&self.serving)
    }

    /// The index the server reads; the source's follower keeps it current while running.
    pub fn index(&self) -> Arc<SharedIndex> {
        Arc::clone(&self.index)
    }

    /// The configuration in effect: as given, with a first-run token shown as the `tokens=FILE` it was
    /// written to.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// What `ambientd serve` prints at start: addresses, the root bundle, and the environment that points
    /// a ztunnel at this server.
    pub fn banner(&self) -> String {
        let index = self.index.read().ok();
        let kube_url = match &self.source {
            SourceHandle::Kube { url, .. } => Some(url.as_str()),
            SourceHandle::Files { .. } => None,
        };
        Banner {
            config: &self.config,
            grpc_addr: self.grpc_addr,
            xds_plaintext_addr: self.xds_plaintext_addr,
            admin_addr: self.admin_addr,
            root_bundle: &self.root_bundle,
            trust_domain: self.ca.trust_domain(),
            serving_not_after: self.serving.current_not_after(),
            kube_url,
            resources: index
                .as_ref()
                .map(|i| (i.addresses().len(), i.authorizations().len())),
            example_token: self.example_token.as_ref(),
            first_run: self.first_run,
            example_workload: index.as_ref().map_or_else(
                || "default/local/default".to_string(),
                |i| Workload::example(i).info(),
            ),
        }
        .render()
    }

    /// Serves until `shutdown` completes (or the index fails), then stops accepting, lets open calls
    /// finish (for at most `--shutdown-grace`) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let span = info_span!("serve", grpc = %self.grpc_addr);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            config,
            listener,
            grpc_addr,
            plaintext_listener,
            admin_listener,
            admin,
            metrics,
            serving,
            ca,
            ca_service,
            xds,
            notifier,
            index,
            source,
            events,
            ..
        } = self;

        let mut tasks = TaskSet::new();
        let (applied_tx, mut applied) = watch::channel(0u64);
        let follow = Follow {
            label: source.label(),
            diagnostics: source.diagnostics_fn(),
            applied: applied_tx,
        };
        let status_source = match &source {
            SourceHandle::Kube { handle, client, .. } => {
                Some((client.clone(), handle.observations()))
            }
            SourceHandle::Files { .. } => None,
        };
        let is_kube = status_source.is_some();
        // Stopped last: the follower and everything after it read what the source delivers.
        tasks.hold("source", source);
        let mut follower = tokio::spawn(
            follow_source(events, Arc::clone(&index), Arc::clone(&metrics), follow)
                .in_current_span(),
        );
        tasks.abort("source follower", follower.abort_handle());
        let renewal = tokio::spawn(
            renew_serving(Arc::clone(&serving), config.serving_renew_interval).in_current_span(),
        );
        tasks.abort("serving certificate renewal", renewal.abort_handle());
        if let Some(listener) = admin_listener {
            let task = admin::spawn(listener, admin.clone(), tasks.stopped());
            tasks.drain("admin API", task, ADMIN_GRACE);
        }
        // The status writer follows the Lease; it writes only while this replica holds it. The root
        // bundle goes into ConfigMap `istio-ca-root-cert` of every namespace (the ztunnel and waypoint
        // charts mount it), written by the Lease holder, or by every replica without a Lease.
        if let Some((client, observations)) = status_source {
            let lease = config.kube().and_then(|k| k.status_lease.clone());
            let leadership = lease.map(|lease| Leadership::start(client.clone(), lease));
            let leader = leadership.as_ref().map(|l| l.subscribe());
            if let Some(elected) = leadership {
                let writer = tokio::spawn(
                    crate::cluster::status::run(
                        client.clone(),
                        Arc::clone(&index),
                        observations,
                        elected.subscribe(),
                        applied.clone(),
                    )
                    .in_current_span(),
                );
                // Stopped before the Lease is handed back, so nothing writes without it.
                tasks.run("leader election", elected.stop(LEASE_GRACE));
                tasks.abort("status writer", writer.abort_handle());
            }
            tasks.hold(
                "root certificate publisher",
                crate::cluster::ca::publish_root(client, &ca, leader),
            );
        }
        tokio::pin!(shutdown);
        // With the Kubernetes source, nothing is served before the whole cluster is in the index: a
        // ztunnel must never be told that the workloads it holds are gone.
        if is_kube {
            info!("waiting for the first sync of every kind before serving");
            let synced = tokio::select! {
                res = applied.wait_for(|n| *n >= 1) => Some(res.is_ok()),
                () = &mut shutdown => None,
            };
            match synced {
                Some(true) => info!("first sync applied: serving"),
                None => {
                    info!("stopped before the first sync");
                    tasks.shutdown().await;
                    return Ok(());
                }
                // The follower dropped its count: it ended, and says whether the index failed.
                Some(false) => {
                    let ended = (&mut follower).await;
                    tasks.shutdown().await;
                    return match ended {
                        Ok(Err(failed)) => {
                            error!("{failed}");
                            Err(ServeError::IndexFailed(failed))
                        }
                        _ => {
                            info!("the source ended before the first sync");
                            Ok(())
                        }
                    };
                }
            }
        }

        // tonic drops the incoming stream when told to stop, which ends the accept loop and closes the
        // listening socket; the serving configuration is shared, so renewals apply to new handshakes.
        let incoming = tls_incoming(listener, serving.server_config());
        if let Some(listener) = plaintext_listener {
            let service = xds.clone().into_service();
            let stopped = tasks.stopped();
            let plaintext = tokio::spawn(
                async move {
                    let served = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            stopped,
                        )
                        .await;
                    if let Err(e) = served {
                        warn!("the plaintext xDS server failed: {e}");
                    }
                }
                .in_current_span(),
            );
            tasks.abort("plaintext xDS", plaintext.abort_handle());
        }
        // Listening sockets are bound and the index is loaded: ready.
        admin.set_ready(true);
        let grpc = tonic::transport::Server::builder()
            .add_service(ca_service.into_server())
            .add_service(xds.into_service())
            .serve_with_incoming_shutdown(incoming, tasks.stopped());
        tokio::pin!(grpc);

        // The source's end is not a reason to stop; a failed index is.
        let index_failed = async {
            match (&mut follower).await {
                Ok(Err(failed)) => failed,
                _ => std::future::pending().await,
            }
        };
        let grace = config.shutdown_grace;
        let result = tokio::select! {
            res = &mut grpc => res.map_err(|source| ServeError::Transport {
                addr: grpc_addr,
                source,
            }),
            failed = index_failed => {
                error!("{failed}");
                admin.set_ready(false);
                notifier.shutdown();
                tasks.signal_stop();
                let _ = tokio::time::timeout(grace, &mut grpc).await;
                Err(ServeError::IndexFailed(failed))
            }
            () = &mut shutdown => {
                info!("shutting down: no new connections; open calls may finish");
                admin.set_ready(false);
                // xDS streams end with Unavailable so that ztunnels reconnect (to another replica) with backoff.
                notifier.shutdown();
                tasks.signal_stop();
                match tokio::time::timeout(grace, &mut grpc).await {
                    Ok(res) => res.map_err(|source| ServeError::Transport {
                        addr: grpc_addr,
                        source,
                    }),
                    Err(_) => {
                        warn!(?grace, "calls still open after the grace period; exiting anyway");
                        Ok(())
                    }
                }
            }
        };
        tasks.shutdown().await;
        result
    }
}

/// Starts the server for `config`, prints its banner on standard output, and serves until `shutdown`.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    use std::io::Write as _;
    let server = Server::bind(config).await?;
    let banner = server.banner();
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
    server.run(shutdown).await
}
