//! TLS for the gRPC listener (15012): TLS 1.3 only, ALPN `h2`, a serving certificate from the CA that is
//! renewed in place, and optional client certificates verified against the CA roots.
//!
//! The certificate is served by a [`rustls::server::ResolvesServerCert`] that holds the current
//! certified key behind a lock; [`ServingTls::renew_if_due`] swaps in a new one when less than a third
//! of the lifetime is left. Handshakes after the swap get the new certificate; connections already
//! established are untouched (TLS never looks at the certificate again after the handshake).
//!
//! [`tls_incoming`] turns a `TcpListener` into the stream of TLS connections that tonic's
//! `serve_with_incoming` takes. Handshakes run concurrently, so a slow or silent client never holds up
//! the others, and the streams are `tokio_rustls::server::TlsStream<TcpStream>`, whose client
//! certificates tonic hands to the service.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authority::CertificateAuthority;
use crate::error::CaError;
use crate::pem;

/// DNS names every serving certificate carries, as ztunnel and istio-agent dial istiod by them.
pub const DEFAULT_SERVING_DNS: [&str; 2] = [
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
];

/// A TLS handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls crypto provider used everywhere in this crate (ring).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS for the gRPC listener, with a serving certificate that renews itself in place.
pub struct ServingTls {
    ca: Arc<CertificateAuthority>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    ttl: Duration,
    provider: Arc<CryptoProvider>,
    resolver: Arc<RotatingCert>,
    config: Arc<ServerConfig>,
    validity: Mutex<Validity>,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls")
            .field("dns", &self.dns)
            .field("ips", &self.ips)
            .field("ttl", &self.ttl)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Validity {
    not_after: SystemTime,
    renew_at: SystemTime,
}

/// Serves whatever certified key is current.
#[derive(Debug)]
struct RotatingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl RotatingCert {
    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut k) => *k = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ServingTls {
    /// Issues the first serving certificate for `istiod.istio-system.svc`,
    /// `istiod.istio-system.svc.cluster.local`, `dns` and `ips`, valid for `ttl` (at most until the CA
    /// certificate expires), and builds the server configuration around it.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        let mut names: Vec<String> = DEFAULT_SERVING_DNS.iter().map(|s| s.to_string()).collect();
        for d in dns {
            if !names.contains(&d) {
                names.push(d);
            }
        }
        let mut addrs = Vec::new();
        for ip in ips {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        let provider = crypto_provider();
        let (key, validity) = issue(&ca, &names, &addrs, ttl, &provider)?;
        let resolver = Arc::new(RotatingCert {
            current: RwLock::new(key),
        });

        let mut roots = RootCertStore::empty();
        for root in ca.roots() {
            roots.add(root.clone()).map_err(|e| {
                CaError::crypto("use the CA roots to verify client certificates", e)
            })?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| CaError::crypto("build the client certificate verifier", e))?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CaError::crypto("configure TLS 1.3", e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];

        tracing::info!(
            dns = ?names,
            ips = ?addrs,
            not_after = %crate::rfc3339::Rfc3339(validity.not_after),
            "issued the serving certificate"
        );
        Ok(ServingTls {
            ca,
            dns: names,
            ips: addrs,
            ttl,
            provider,
            resolver,
            config: Arc::new(config),
            validity: Mutex::new(validity),
        })
    }

    /// The rustls configuration for the listener (shared; the certificate inside rotates).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Renews when less than a third of the lifetime remains; call periodically (the control plane
    /// runs a timer). Returns whether it renewed.
    pub fn renew_if_due(&self) -> Result<bool, CaError> {
        let mut validity = self.lock_validity();
        if SystemTime::now() < validity.renew_at {
            return Ok(false);
        }
        let (key, next) = issue(&self.ca, &self.dns, &self.ips, self.ttl, &self.provider)?;
        self.resolver.set(key);
        tracing::info!(
            previous_not_after = %crate::rfc3339::Rfc3339(validity.not_after),
            not_after = %crate::rfc3339::Rfc3339(next.not_after),
            "renewed the serving certificate"
        );
        *validity = next;
        Ok(true)
    }

    /// When the current serving certificate expires.
    pub fn current_not_after(&self) -> SystemTime {
        self.lock_validity().not_after
    }

    /// When [`renew_if_due`](Self::renew_if_due) will next renew.
    pub fn next_renewal(&self) -> SystemTime {
        self.lock_validity().renew_at
    }

    /// The DNS names in the serving certificate.
    pub fn dns_names(&self) -> &[String] {
        &self.dns
    }

    /// The current chain (leaf first, no root), DER.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.resolver.get().cert.clone()
    }

    fn lock_validity(&self) -> std::sync::MutexGuard<'_, Validity> {
        match self.validity.lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A new serving certificate as a rustls certified key, and when to renew it.
fn issue(
    ca: &CertificateAuthority,
    dns: &[String],
    ips: &[IpAddr],
    ttl: Duration,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Validity), CaError> {
    let issued_at = SystemTime::now();
    let (chain_pem, key_pem) = ca.issue_serving(dns, ips, ttl)?;
    let mut chain = Vec::with_capacity(chain_pem.len());
    for p in &chain_pem {
        for block in
            pem::parse(p).map_err(|e| CaError::crypto("read the serving certificate", e))?
        {
            chain.push(CertificateDer::from(block.der));
        }
    }
    let key_der = pem::parse(&key_pem)
        .ok()
        .and_then(|mut b| b.pop())
        .ok_or_else(|| CaError::crypto("read the serving key", "not PEM"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.der));
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| CaError::crypto("load the serving key", e))?;
    let not_after = certified
        .cert
        .first()
        .and_then(|c| X509Certificate::from_der(c).ok())
        .map(|(_, x)| {
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(x.validity().not_after.timestamp().max(0) as u64)
        })
        .ok_or_else(|| CaError::crypto("read the serving certificate", "leaf does not parse"))?;
    let lifetime = not_after.duration_since(issued_at).unwrap_or_default();
    let renew_at = issued_at + lifetime * 2 / 3;
    Ok((
        Arc::new(certified),
        Validity {
            not_after,
            renew_at,
        },
    ))
}

/// TLS connections accepted on `listener` with `config`, for tonic's `serve_with_incoming`. The
/// accept loop stops when the returned stream is dropped. Failed handshakes are logged at debug and
/// never reach the stream. Call it inside a Tokio runtime (it spawns the accept loop). Accepted sockets
/// get `TCP_NODELAY`.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(128);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                r = listener.accept() => r,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
