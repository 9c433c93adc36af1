//! `ambientd serve`: the long-running server. It owns the TLS gRPC listener (istiod's port 15012), the
//! certificate authority behind it, the serving certificate and its renewal, and the index that the file
//! source keeps up to date.
//!
//! Wiring, in start order ([`Server::bind`]):
//! 1. the file source is opened and its objects build the [`Index`], shared as `Arc<RwLock<Index>>`;
//!    a watcher applies later changes (the write lock is held only to apply a batch). With `--kube`
//!    the Kubernetes source starts instead ([`crate::source::kube`]) and the index starts empty: the
//!    first batch is the complete cluster, and [`Server::run`] serves gRPC and answers `/ready` only
//!    once it is applied (the admin API is up meanwhile). The holder of the `ambientd-leader` Lease
//!    writes status conditions back ([`crate::cluster::status`]);
//! 2. the CA is loaded (plug-in `cacerts` folder, or the self-signed root in the state folder, created
//!    on first start) and the root bundle is written where ztunnels can read it;
//! 3. the serving certificate is issued by the same CA for `istiod.<ns>.svc[.<suffix>]` plus the
//!    configured names and IPs, and renewed by a timer: new handshakes get the new certificate, open
//!    connections keep theirs;
//! 4. the listener is bound. Each accepted connection completes its TLS handshake on its own task
//!    (a slow client holds up nobody; [`ambient_ca::tls_incoming`]) and is then handed to tonic, which
//!    serves HTTP/2 gRPC on it.
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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ambient_ca::rfc3339::Rfc3339;
use ambient_ca::{
    Authenticator, CaError, CaService, CaServiceConfig, CertificateAuthority,
    ClientCertAuthenticator, NodeLookup, ServingTls, TokenFileAuthenticator, TrustAllAuthenticator,
    tls_incoming,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::admin::{self, AdminState};
use crate::cluster::leader::Leadership;
use crate::cluster::{KubeError, KubeSettings};
use crate::metrics::Metrics;
use crate::shared_index::{IndexFailed, SharedIndex};
use crate::source::files::{self, FileSource, FileSourceError, WatchHandle};
use crate::source::kube::KubeHandle;
use crate::source::{Event, SourceDiagnostic};
use crate::xds::{Notifier, XdsConfig, XdsServer};
use ambient_index::{Index, Settings};

/// One way of authenticating a CSR caller (`--auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// `tokens=FILE`: bearer tokens mapped to service accounts (and their node and pod).
    Tokens(PathBuf),
    /// `cert`: a client certificate issued by this CA (its SPIFFE URI SAN).
    Cert,
    /// `none`: every caller is whoever its CSR says. Refused unless the listener binds loopback.
    None,
    /// `kube`: a Kubernetes service account token, checked with a TokenReview (`--kube` only).
    Kube,
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cert" => Ok(AuthMethod::Cert),
            "none" => Ok(AuthMethod::None),
            "kube" => Ok(AuthMethod::Kube),
            _ => match s.strip_prefix("tokens=") {
                Some(path) if !path.is_empty() => Ok(AuthMethod::Tokens(PathBuf::from(path))),
                _ => Err(format!(
                    "{s:?} is not an authentication method: use tokens=FILE, cert, kube or none"
                )),
            },
        }
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::Tokens(path) => write!(f, "tokens={}", path.display()),
            AuthMethod::Cert => f.write_str("cert"),
            AuthMethod::None => f.write_str("none"),
            AuthMethod::Kube => f.write_str("kube"),
        }
    }
}

/// Everything `ambientd serve` needs to start; [`crate::cli::ServeArgs::config`] fills it from flags.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Folder or file of Kubernetes YAML (followed for changes). Unused with [`ServeConfig::kube`].
    pub config_dir: PathBuf,
    /// Read the cluster instead of `config_dir` (`--kube`).
    pub kube: Option<KubeSettings>,
    pub settings: Settings,
    /// TLS gRPC listener; port 0 picks a free port ([`Server::grpc_addr`] tells which).
    pub grpc_addr: SocketAddr,
    /// Plaintext delta xDS listener, if any ([`Server::xds_plaintext_addr`] tells the bound address).
    pub xds_plaintext_addr: Option<SocketAddr>,
    /// Admin HTTP listener (`/ready`, `/metrics`, `/debug/*`), if any ([`Server::admin_addr`]).
    pub admin_addr: Option<SocketAddr>,
    /// xDS streams end with `Unavailable` after this long (±10 %); `None`: never.
    pub max_connection_age: Option<Duration>,
    /// After the shutdown signal, how long open calls may take to finish before the server exits anyway.
    pub shutdown_grace: Duration,
    /// Where the self-signed root lives and the root bundle is written.
    pub state_dir: PathBuf,
    /// Plug-in CA folder (istiod's `cacerts` layout), instead of the self-signed root.
    pub ca_dir: Option<PathBuf>,
    /// Extra DNS SANs of the serving certificate.
    pub serving_dns: Vec<String>,
    /// IP SANs of the serving certificate.
    pub serving_ips: Vec<IpAddr>,
    /// Authentication methods, tried in order.
    pub auth: Vec<AuthMethod>,
    /// `(namespace, service account)` pairs allowed to impersonate pods on their node.
    pub trusted_node_accounts: Vec<(String, String)>,
    pub max_workload_cert_ttl: Duration,
    pub serving_cert_ttl: Duration,
    /// How often the serving certificate is checked for renewal.
    pub serving_renew_interval: Duration,
}

impl ServeConfig {
    /// The file-mode defaults: `127.0.0.1:15012`, SANs `localhost` and `127.0.0.1`, client-certificate
    /// authentication, `istio-system/ztunnel` as the node account, 24 h certificates, 30 min streams,
    /// 10 s shutdown grace. No plaintext xDS or admin listener (the command line adds `127.0.0.1:15010`
    /// and `127.0.0.1:15014`).
    pub fn new(config_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            config_dir: config_dir.into(),
            kube: None,
            settings: Settings::default(),
            grpc_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15012),
            xds_plaintext_addr: None,
            admin_addr: None,
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            shutdown_grace: Duration::from_secs(10),
            state_dir: state_dir.into(),
            ca_dir: None,
            serving_dns: vec!["localhost".to_string()],
            serving_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            auth: vec![AuthMethod::Cert],
            trusted_node_accounts: vec![("istio-system".to_string(), "ztunnel".to_string())],
            max_workload_cert_ttl: Duration::from_secs(24 * 3600),
            serving_cert_ttl: Duration::from_secs(24 * 3600),
            serving_renew_interval: Duration::from_secs(60),
        }
    }

    /// `/debug/config`: the effective configuration, every flag's value after defaults with the derived
    /// serving-certificate names, and the Kubernetes source's settings. Holds paths, never file contents.
    pub fn to_json(&self) -> serde_json::Value {
        let config = self;
        let s = &config.settings;
        let enrollment = match s.enrollment {
            ambient_index::Enrollment::Annotation => "annotation",
            ambient_index::Enrollment::Labels => "labels",
        };
        let mut json = serde_json::json!({
            "configDir": config.config_dir.display().to_string(),
            "grpcAddr": config.grpc_addr.to_string(),
            "stateDir": config.state_dir.display().to_string(),
            "caDir": config.ca_dir.as_ref().map(|d| d.display().to_string()),
            "servingDns": config.serving_dns_names(),
            "servingIps": config
                .serving_ip_addrs()
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>(),
            "auth": config.auth.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "trustedNodeAccounts": config
                .trusted_node_accounts
                .iter()
                .map(|(ns, sa)| format!("{ns}/{sa}"))
                .collect::<Vec<_>>(),
            "maxWorkloadCertTtlSeconds": config.max_workload_cert_ttl.as_secs(),
            "servingCertTtlSeconds": config.serving_cert_ttl.as_secs(),
            "servingRenewIntervalSeconds": config.serving_renew_interval.as_secs(),
            "mesh": {
                "clusterId": s.cluster_id,
                "trustDomain": s.trust_domain,
                "domainSuffix": s.domain_suffix,
                "rootNamespace": s.root_namespace,
                "systemNamespace": s.system_namespace,
                "enrollment": enrollment,
                "revision": s.revision,
            },
        });
        if let (Some(kube), Some(map)) = (&config.kube, json.as_object_mut()) {
            map.remove("configDir");
            map.insert(
                "kube".to_string(),
                serde_json::json!({
                    "kubeconfig": kube.kubeconfig.as_ref().map(|p| p.display().to_string()),
                    "kinds": kube.source.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "statusLease": kube.status_lease.as_ref().map(|l| serde_json::json!({
                        "namespace": l.namespace,
                        "name": l.name,
                        "identity": l.identity,
                    })),
                }),
            );
        }
        json
    }

    /// Every DNS SAN of the serving certificate: istiod's Service names, then the configured ones.
    pub fn serving_dns_names(&self) -> Vec<String> {
        let ns = &self.settings.system_namespace;
        let mut names = vec![
            format!("istiod.{ns}.svc"),
            format!("istiod.{ns}.svc.{}", self.settings.domain_suffix),
        ];
        for name in &self.serving_dns {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Every IP SAN of the serving certificate: the configured ones, plus the listener's address when it
    /// is a specific one (so a client dialling the printed address can verify the server).
    pub fn serving_ip_addrs(&self) -> Vec<IpAddr> {
        let mut ips = self.serving_ips.clone();
        let own = self.grpc_addr.ip();
        if !own.is_unspecified() && !ips.contains(&own) {
            ips.push(own);
        }
        ips
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Source(#[from] FileSourceError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    KubeCa(#[from] crate::cluster::ca_secret::KubeCaError),
    #[error(
        "--auth kube checks Kubernetes service account tokens and needs --kube; without a cluster use \
         tokens=FILE, cert or none"
    )]
    KubeAuthWithoutKube,
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(
        "cannot listen on {addr}: the address is already in use; stop whatever listens there (another \
         ambientd, an istiod port-forward) or choose a free address with {flag} (port 0 picks one)"
    )]
    AddrInUse {
        addr: SocketAddr,
        flag: &'static str,
    },
    #[error(
        "cannot listen on {addr}: {source}; choose an address this host has (for example 127.0.0.1:{}) \
         with {flag}", addr.port()
    )]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("--auth: at least one authentication method is needed (tokens=FILE, cert or none)")]
    NoAuth,
    #[error(transparent)]
    IndexFailed(#[from] IndexFailed),
    #[error("the gRPC server on {addr} failed: {source}")]
    Transport {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The CA's view of the index: which service accounts have pods on which node.
#[derive(Debug, Clone)]
pub struct IndexNodeLookup(pub Arc<SharedIndex>);

impl NodeLookup for IndexNodeLookup {
    /// A failed index holds no pod: impersonation is refused.
    fn pod_on_node(&self, node: &str, namespace: &str, service_account: &str) -> bool {
        self.0
            .read()
            .is_ok_and(|index| index.pod_on_node(node, namespace, service_account))
    }
}

/// A started server: the CA is loaded, the listener is bound, the index follows the config folder.
/// [`Server::run`] serves until the shutdown future completes.
pub struct Server {
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
}

/// The running source that feeds the index.
enum SourceHandle {
    Files(WatchHandle),
    Kube {
        handle: KubeHandle,
        client: ::kube::Client,
        url: String,
    },
}

impl SourceHandle {
    fn diagnostics_fn(&self) -> Arc<dyn Fn() -> Vec<SourceDiagnostic> + Send + Sync> {
        match self {
            SourceHandle::Files(watch) => {
                let source = watch.source();
                Arc::new(move || {
                    source
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .diagnostics()
                })
            }
            SourceHandle::Kube { handle, .. } => Arc::new(handle.diagnostics_fn()),
        }
    }

    /// The `source` label of `ambientd_source_errors_total`.
    fn label(&self) -> &'static str {
        match self {
            SourceHandle::Files(_) => "files",
            SourceHandle::Kube { .. } => "kube",
        }
    }
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
    /// Loads the config folder and the CA, issues the serving certificate and binds the listener.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
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
        let (index, source) = match &config.kube {
            None => {
                let (source, objects) = FileSource::open(&config.config_dir)?;
                let index = Index::build(config.settings.clone(), objects);
                (index, SourceHandle::Files(files::watch(source, tx)?))
            }
            Some(kube) => {
                let (client, url) = crate::cluster::client(kube.kubeconfig.as_deref()).await?;
                info!(%url, "reading the cluster");
                let handle = crate::source::kube::start(
                    client.clone(),
                    &kube.source,
                    tx,
                    metrics.source_error_counter("kube"),
                );
                let index = Index::new(config.settings.clone());
                (
                    index,
                    SourceHandle::Kube {
                        handle,
                        client,
                        url,
                    },
                )
            }
        };
        let index = SharedIndex::new(index);

        let kube_client = match &source {
            SourceHandle::Kube { client, .. } => Some(client.clone()),
            SourceHandle::Files(_) => None,
        };
        let ca = match (&config.ca_dir, &kube_client) {
            (Some(dir), _) => CertificateAuthority::from_cacerts_dir(dir)?
                .with_trust_domain(&config.settings.trust_domain)?,
            // In a cluster the keys live in Secrets, as istiod keeps them: `cacerts`, else the
            // self-signed root of `istio-ca-secret` (created by the first replica to start).
            (None, Some(client)) => {
                let loaded = crate::cluster::ca_secret::load(
                    client.clone(),
                    &config.settings.system_namespace,
                    &config.settings.trust_domain,
                )
                .await?;
                info!(secret = %loaded.secret, origin = ?loaded.origin, "CA keys from the cluster");
                loaded.ca
            }
            (None, None) => CertificateAuthority::load_or_create_self_signed(
                &config.state_dir,
                &config.settings.trust_domain,
            )?,
        };
        if ca.trust_domain() != config.settings.trust_domain {
            warn!(
                ca = ca.trust_domain(),
                flag = %config.settings.trust_domain,
                "the CA's trust domain differs from --trust-domain; workload certificates use the CA's"
            );
        }
        let ca = Arc::new(ca);
        let root_bundle = ca.write_root_bundle(&config.state_dir)?;
        let root_bundle = std::path::absolute(&root_bundle).unwrap_or(root_bundle);

        let serving = Arc::new(ServingTls::new(
            Arc::clone(&ca),
            config.serving_dns_names(),
            config.serving_ip_addrs(),
            config.serving_cert_ttl,
        )?);

        // The same authenticators admit CSR callers and xDS streams.
        let mut authenticators: Vec<Arc<dyn Authenticator>> = Vec::new();
        let mut example_token = None;
        for method in &config.auth {
            match method {
                AuthMethod::Tokens(path) => {
                    authenticators.push(Arc::new(TokenFileAuthenticator::from_file(
                        path,
                        ca.trust_domain(),
                    )?));
                    if example_token.is_none() {
                        example_token = TokenExample::pick(path, &config.trusted_node_accounts)
                            .and_then(|t| t.write_to(&config.state_dir));
                    }
                }
                AuthMethod::Cert => {
                    authenticators.push(Arc::new(ClientCertAuthenticator::new(ca.trust_domain())))
                }
                AuthMethod::None => authenticators.push(Arc::new(TrustAllAuthenticator)),
                AuthMethod::Kube => {
                    let Some(client) = &kube_client else {
                        return Err(ServeError::KubeAuthWithoutKube);
                    };
                    authenticators.push(Arc::new(
                        crate::cluster::tokenreview::TokenReviewAuthenticator::new(
                            client.clone(),
                            crate::cluster::tokenreview::TokenReviewConfig::new(
                                ca.trust_domain(),
                                &config.settings.cluster_id,
                            ),
                            Some(crate::cluster::ca::index_pods(Arc::clone(&index))),
                        ),
                    ));
                }
            }
        }
        let ca_service = CaService::new(
            Arc::clone(&ca),
            authenticators
                .iter()
                .map(|a| Box::new(Arc::clone(a)) as Box<dyn Authenticator>)
                .collect(),
            Arc::new(IndexNodeLookup(Arc::clone(&index))),
            CaServiceConfig {
                trusted_node_accounts: config.trusted_node_accounts.clone(),
                max_workload_ttl: config.max_workload_cert_ttl,
            },
        );

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

    /// The index the server reads; the config folder's watcher keeps it current while running.
    pub fn index(&self) -> Arc<SharedIndex> {
        Arc::clone(&self.index)
    }

    /// What `ambientd serve` prints at start: addresses, the root bundle, and the environment that points
    /// a ztunnel at this server.
    pub fn banner(&self) -> String {
        let cfg = &self.config;
        let mut out = String::new();
        let _ = writeln!(out, "ambientd serve: certificate authority and xDS ready");
        let _ = writeln!(
            out,
            "  grpc:          {} (TLS 1.3, HTTP/2; istio.v1.auth.IstioCertificateService, delta ADS)",
            self.grpc_addr
        );
        if let Some(addr) = self.xds_plaintext_addr {
            let _ = writeln!(
                out,
                "  xds plaintext: {addr} (delta ADS without TLS; callers still authenticate)"
            );
        }
        if let Some(addr) = self.admin_addr {
            let _ = writeln!(
                out,
                "  admin:         http://{addr} (/ready, /metrics, /debug/*; `ambientd zc --admin http://{addr}`)"
            );
        }
        let _ = writeln!(out, "  root bundle:   {}", self.root_bundle.display());
        let ca = match &cfg.ca_dir {
            Some(dir) => format!("plug-in CA from {}", dir.display()),
            None => format!("self-signed root in {}", cfg.state_dir.display()),
        };
        let _ = writeln!(
            out,
            "  CA:            {ca}, trust domain {}",
            self.ca.trust_domain()
        );
        let ips: Vec<String> = cfg
            .serving_ip_addrs()
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        let _ = writeln!(
            out,
            "  serving cert:  DNS {}; IP {}; valid until {}, renewed before expiry",
            cfg.serving_dns_names().join(", "),
            if ips.is_empty() {
                "none".to_string()
            } else {
                ips.join(", ")
            },
            Rfc3339(self.serving.current_not_after())
        );
        let auth: Vec<String> = cfg.auth.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "  auth:          {}", auth.join(", "));
        let accounts: Vec<String> = cfg
            .trusted_node_accounts
            .iter()
            .map(|(ns, sa)| format!("{ns}/{sa}"))
            .collect();
        let _ = writeln!(
            out,
            "  node accounts: {}",
            if accounts.is_empty() {
                "none (no impersonation)".to_string()
            } else {
                accounts.join(", ")
            }
        );
        if let SourceHandle::Kube { url, .. } = &self.source {
            let kinds = cfg.kube.as_ref().map_or(0, |k| k.source.kinds.len());
            let _ = writeln!(
                out,
                "  source:        Kubernetes API {url} ({kinds} kinds watched; gRPC and /ready once all are listed)"
            );
            let status = match cfg.kube.as_ref().and_then(|k| k.status_lease.as_ref()) {
                Some(lease) => format!(
                    "written by the holder of Lease {}/{} (this replica: {})",
                    lease.namespace, lease.name, lease.identity
                ),
                None => "not written".to_string(),
            };
            let _ = writeln!(out, "  status:        {status}");
        } else if let Ok(index) = self.index.read() {
            let _ = writeln!(
                out,
                "  config:        {} (addresses: {}, authorizations: {}; followed for changes)",
                cfg.config_dir.display(),
                index.addresses().len(),
                index.authorizations().len()
            );
        }
        if cfg.auth.contains(&AuthMethod::None) {
            let _ = writeln!(
                out,
                "  warning:       --auth none: any local process can get a certificate for any identity"
            );
        }
        if cfg.kube.is_some() {
            let ns = &cfg.settings.system_namespace;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "In the cluster, ztunnels reach it as istiod.{ns}.svc:{} when the istiod Service selects it.",
                self.grpc_addr.port()
            );
            return out;
        }

        let url = format!("https://{}", self.ztunnel_authority());
        let root = self.root_bundle.display();
        let workload = match &self.example_token {
            Some(t) => t.workload_info.clone(),
            None => self.example_workload(),
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Point a ztunnel at it (dedicated mode; run from an empty directory):"
        );
        if self.example_token.is_none() && !cfg.auth.contains(&AuthMethod::None) {
            let _ = writeln!(
                out,
                "(it needs a way to authenticate: start with --auth tokens=FILE holding a token for \
                 {workload}, and this command gets its AUTH_TOKEN)"
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  env -u KUBERNETES_SERVICE_HOST \\");
        let _ = writeln!(out, "    PROXY_MODE=dedicated \\");
        let _ = writeln!(out, "    PROXY_WORKLOAD_INFO={workload} \\");
        let _ = writeln!(out, "    XDS_ADDRESS={url} \\");
        let _ = writeln!(out, "    CA_ADDRESS={url} \\");
        let _ = writeln!(out, "    XDS_ROOT_CA={root} \\");
        let _ = writeln!(out, "    CA_ROOT_CA={root} \\");
        if let Some(t) = &self.example_token {
            let _ = writeln!(out, "    AUTH_TOKEN={} \\", t.file.display());
        }
        let _ = writeln!(out, "    CLUSTER_ID={} \\", cfg.settings.cluster_id);
        let _ = writeln!(out, "    IPV6_ENABLED=false \\");
        let _ = writeln!(out, "    ztunnel proxy");
        out
    }

    /// `host:port` a local ztunnel dials: the listener's IP, or loopback for a wildcard listener.
    fn ztunnel_authority(&self) -> String {
        let port = self.grpc_addr.port();
        let ip = match self.grpc_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, port).to_string()
    }

    /// `namespace/name/service-account` of a pod from the config, for the printed example.
    fn example_workload(&self) -> String {
        let Ok(index) = self.index.read() else {
            return "default/local/default".to_string();
        };
        index
            .pods()
            .into_iter()
            .find(|p| {
                !p.service_account.is_empty()
                    && p.meta.namespace != self.config.settings.system_namespace
                    && !p.host_network
            })
            .map(|p| format!("{}/{}/{}", p.meta.namespace, p.meta.name, p.service_account))
            .unwrap_or_else(|| "default/local/default".to_string())
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open calls finish (for at most a
    /// few seconds) and returns.
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

        let (applied_tx, mut applied) = watch::channel(0u64);
        let index_task = tokio::spawn(
            follow_source(
                events,
                Arc::clone(&index),
                Arc::clone(&metrics),
                FollowSource {
                    label: source.label(),
                    diagnostics: source.diagnostics_fn(),
                    applied: applied_tx,
                },
            )
            .in_current_span(),
        );
        let renew_task = tokio::spawn(
            renew_serving(Arc::clone(&serving), config.serving_renew_interval).in_current_span(),
        );
        let (stop_tx, mut stopped) = watch::channel(false);
        let admin_task = admin_listener.map(|listener| {
            let mut stopped = stop_tx.subscribe();
            admin::spawn(listener, admin.clone(), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
        });
        // The status writer follows the Lease; it writes only while this replica holds it.
        let mut leadership = None;
        let mut status_task = None;
        if let (SourceHandle::Kube { handle, client, .. }, Some(lease)) = (
            &source,
            config.kube.as_ref().and_then(|k| k.status_lease.as_ref()),
        ) {
            let elected = Leadership::start(client.clone(), lease.clone());
            status_task = Some(tokio::spawn(
                crate::cluster::status::run(
                    client.clone(),
                    Arc::clone(&index),
                    handle.observations(),
                    elected.subscribe(),
                    applied.clone(),
                )
                .in_current_span(),
            ));
            leadership = Some(elected);
        }
        // The root bundle goes into ConfigMap `istio-ca-root-cert` of every namespace (the ztunnel and
        // waypoint charts mount it), written by the Lease holder, or by every replica without a Lease.
        let _root_publisher = match &source {
            SourceHandle::Kube { client, .. } => Some(crate::cluster::ca::publish_root(
                client.clone(),
                &ca,
                leadership.as_ref().map(|l| l.subscribe()),
            )),
            SourceHandle::Files(_) => None,
        };
        tokio::pin!(shutdown);
        // With the Kubernetes source, nothing is served before the whole cluster is in the index: a
        // ztunnel must never be told that the workloads it holds are gone.
        if matches!(source, SourceHandle::Kube { .. }) {
            info!("waiting for the first sync of every kind before serving");
            let synced = tokio::select! {
                res = applied.wait_for(|n| *n >= 1) => res.is_ok(),
                () = &mut shutdown => false,
            };
            if !synced {
                info!("stopped before the first sync");
                let _ = stop_tx.send(true);
                if let Some(task) = admin_task {
                    let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
                }
                if let Some(task) = status_task {
                    task.abort();
                }
                if let Some(elected) = leadership {
                    elected.stop(Duration::from_secs(2)).await;
                }
                renew_task.abort();
                index_task.abort();
                return Ok(());
            }
            info!("first sync applied: serving");
        }

        // tonic drops the incoming stream when told to stop, which ends the accept loop and closes the
        // listening socket; the serving configuration is shared, so renewals apply to new handshakes.
        let incoming = tls_incoming(listener, serving.server_config());
        let plaintext = plaintext_listener.map(|listener| {
            let mut stopped = stop_tx.subscribe();
            let service = xds.clone().into_service();
            tokio::spawn(
                async move {
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                            },
                        )
                        .await
                }
                .in_current_span(),
            )
        });
        // Listening sockets are bound and the index is loaded: ready.
        admin.set_ready(true);
        let grpc = tonic::transport::Server::builder()
            .add_service(ca_service.into_server())
            .add_service(xds.into_service())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
        tokio::pin!(grpc);

        let index_abort = index_task.abort_handle();
        // The source's end is not a reason to stop; a failed index is.
        let index_failed = async move {
            match index_task.await {
                Ok(Err(failed)) => failed,
                _ => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            res = &mut grpc => res.map_err(|source| ServeError::Transport {
                addr: grpc_addr,
                source,
            }),
            failed = index_failed => {
                error!("{failed}");
                admin.set_ready(false);
                notifier.shutdown();
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(config.shutdown_grace, &mut grpc).await;
                Err(ServeError::IndexFailed(failed))
            }
            () = &mut shutdown => {
                info!("shutting down: no new connections; open calls may finish");
                admin.set_ready(false);
                // xDS streams end with Unavailable so that ztunnels reconnect (to another replica) with backoff.
                notifier.shutdown();
                let _ = stop_tx.send(true);
                let grace = config.shutdown_grace;
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
        if let Some(task) = plaintext {
            task.abort();
        }
        if let Some(task) = admin_task {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        if let Some(task) = status_task {
            task.abort();
        }
        if let Some(elected) = leadership {
            elected.stop(Duration::from_secs(2)).await;
        }
        renew_task.abort();
        index_abort.abort();
        drop(source);
        result
    }
}

/// Binds a listener; `flag` names the option that chose the address, for the error message.
async fn bind(
    addr: SocketAddr,
    flag: &'static str,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            return Err(ServeError::AddrInUse { addr, flag });
        }
        Err(source) => return Err(ServeError::Bind { addr, flag, source }),
    };
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, flag, source })?;
    Ok((listener, bound))
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

/// What [`follow_source`] needs of the source besides its events.
struct FollowSource {
    /// `files` or `kube`, for the source error metric.
    label: &'static str,
    diagnostics: Arc<dyn Fn() -> Vec<SourceDiagnostic> + Send + Sync>,
    /// Counts the batches applied (the status writer and the first-sync wait follow it).
    applied: watch::Sender<u64>,
}

/// Applies the source's events to the shared index, which tells the xDS connections what changed. Returns
/// only when the index failed (an update panicked) or the source ended.
async fn follow_source(
    mut events: mpsc::Receiver<Vec<Event>>,
    index: Arc<SharedIndex>,
    metrics: Arc<Metrics>,
    source: FollowSource,
) -> Result<(), IndexFailed> {
    let problems_now = || -> std::collections::BTreeSet<String> {
        (source.diagnostics)()
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    let mut known_problems = problems_now();
    while let Some(batch) = events.recv().await {
        metrics.source_batch(&batch);
        // The file source's documents that newly failed to read count as source errors (the Kubernetes
        // source counts its own as they happen).
        if source.label == "files" {
            let problems = problems_now();
            let new = problems.difference(&known_problems).count() as u64;
            if new > 0 {
                metrics.source_errors(source.label, new);
            }
            known_problems = problems;
        }
        let changes = index.apply(batch)?;
        debug!(
            addresses = changes.addresses.changed.len() + changes.addresses.removed.len(),
            authorizations =
                changes.authorizations.changed.len() + changes.authorizations.removed.len(),
            "config changed"
        );
        source.applied.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// Renews the serving certificate when it is due, checking every `every`.
async fn renew_serving(serving: Arc<ServingTls>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match serving.renew_if_due() {
            Ok(true) => info!(
                not_after = %Rfc3339(serving.current_not_after()),
                "renewed the serving certificate"
            ),
            Ok(false) => {}
            Err(e) => {
                warn!("could not renew the serving certificate (keeping the current one): {e}")
            }
        }
    }
}

/// The token the banner shows, with the workload it belongs to.
#[derive(Debug, Clone)]
struct TokenExample {
    token: String,
    /// A file holding just the token: ztunnel's `AUTH_TOKEN` names a file, read verbatim.
    file: PathBuf,
    /// `namespace/pod/service-account` for `PROXY_WORKLOAD_INFO`.
    workload_info: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenEntry {
    namespace: String,
    service_account: String,
    #[serde(default)]
    pod_name: Option<String>,
}

impl TokenExample {
    /// Writes the token (no trailing newline, owner-only) to `<state-dir>/ztunnel-token`; `None` when
    /// that fails (the banner then shows no token).
    fn write_to(mut self, state_dir: &Path) -> Option<TokenExample> {
        let path = state_dir.join("ztunnel-token");
        let written = std::fs::create_dir_all(state_dir)
            .and_then(|()| std::fs::write(&path, self.token.as_bytes()))
            .and_then(|()| restrict_to_owner(&path));
        match written {
            Ok(()) => {
                self.file = std::path::absolute(&path).unwrap_or(path);
                Some(self)
            }
            Err(e) => {
                warn!(path = %path.display(), "could not write the example ztunnel token: {e}");
                None
            }
        }
    }

    /// A token of the file for a workload (not a node account, which would need impersonation), or any
    /// token when there is no other. `None` when the file cannot be read (the authenticator reports why).
    fn pick(path: &Path, node_accounts: &[(String, String)]) -> Option<TokenExample> {
        let text = std::fs::read_to_string(path).ok()?;
        let entries: BTreeMap<String, TokenEntry> = serde_norway::from_str(&text).ok()?;
        let is_node = |e: &TokenEntry| {
            node_accounts
                .iter()
                .any(|(ns, sa)| *ns == e.namespace && *sa == e.service_account)
        };
        let (token, entry) = entries
            .iter()
            .find(|(_, e)| !is_node(e))
            .or_else(|| entries.iter().next())?;
        let pod = entry.pod_name.as_deref().unwrap_or(&entry.service_account);
        Some(TokenExample {
            token: token.clone(),
            file: PathBuf::new(),
            workload_info: format!("{}/{pod}/{}", entry.namespace, entry.service_account),
        })
    }
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_methods_parse() {
        assert_eq!("cert".parse(), Ok(AuthMethod::Cert));
        assert_eq!("none".parse(), Ok(AuthMethod::None));
        assert_eq!(
            "tokens=/etc/tokens.yaml".parse(),
            Ok(AuthMethod::Tokens(PathBuf::from("/etc/tokens.yaml")))
        );
        assert!("tokens=".parse::<AuthMethod>().is_err());
        assert!("jwt".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn serving_names_include_istiod_and_the_listener() {
        let mut cfg = ServeConfig::new("x", "y");
        cfg.grpc_addr = "10.1.2.3:15012".parse().unwrap();
        assert_eq!(
            cfg.serving_dns_names(),
            [
                "istiod.istio-system.svc",
                "istiod.istio-system.svc.cluster.local",
                "localhost"
            ]
        );
        assert_eq!(
            cfg.serving_ip_addrs(),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "10.1.2.3".parse().unwrap()
            ]
        );
        cfg.grpc_addr = "0.0.0.0:15012".parse().unwrap();
        assert_eq!(cfg.serving_ip_addrs().len(), 1);
    }
}
