//! How a simulated ztunnel reaches the control plane: the server URL, TLS as ztunnel's control-plane
//! client does it (rustls with ring, TLS 1.3 only, ALPN `h2`, only the given root bundle, the URL's
//! host as the name to verify, no SNI for an IP), plaintext for `http://` URLs (istiod's port 15010),
//! and the `authorization` / `clusterid` headers (docs/reference/ztunnel.md#grpc-calls-and-headers).
//!
//! Every xDS (re)connect opens a fresh connection, like ztunnel: [`Target::connect`] does the TCP
//! connect and TLS handshake itself (so failures have precise, actionable messages) and hands the
//! connection to a tonic channel. CA calls use a lazily connected channel ([`Target::lazy_channel`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::{HeaderMap, HeaderValue};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

/// ztunnel's TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// ztunnel's HTTP/2 keepalive: a PING every 30 s, 10 s to answer.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration problem with the server address or the trust bundle.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{url:?} is not a server address: {reason}; write it as https://HOST:PORT (for example https://127.0.0.1:15012)"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "{url}: an https:// server needs a root bundle to trust: pass --root-cert with the file `ambientd serve` prints as its root bundle"
    )]
    NoRoot { url: String },
    #[error(
        "the root bundle {what} holds no PEM certificate: pass the root-cert.pem that `ambientd serve` prints"
    )]
    EmptyRoot { what: String },
    #[error("the root bundle {what} is not valid PEM: {reason}")]
    BadRoot { what: String, reason: String },
    #[error(
        "token for {who} cannot be sent as a header (it must be visible ASCII; a trailing newline is a common cause)"
    )]
    BadToken { who: String },
}

/// Why a connection to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot connect to {addr}: {source}; is `ambientd serve` running there? start it, or point --xds at its gRPC address"
    )]
    Tcp {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "connecting to {addr} timed out after {CONNECT_TIMEOUT:?}; check the address and that nothing filters the port"
    )]
    Timeout { addr: String },
    #[error("TLS handshake with {addr} failed: {source}{hint}")]
    Tls {
        addr: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{addr} did not negotiate HTTP/2 (ALPN h2): it is not a gRPC server")]
    NoH2 { addr: String },
    #[error("gRPC connection to {addr} failed: {message}")]
    Grpc { addr: String, message: String },
}

/// A control-plane address with what it takes to connect to it.
#[derive(Clone)]
pub struct Target {
    url: String,
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Target {
    /// `https://HOST:PORT` (trusting `root_pem`) or `http://HOST:PORT` (plaintext). An address without
    /// a scheme gets `https://`, as ztunnel does.
    pub fn new(url: &str, root_pem: Option<&str>) -> Result<Target, TargetError> {
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("https://{url}")
        };
        let bad = |reason: &str| TargetError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = with_scheme.parse().map_err(|e| bad(&format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https:// or http://")),
        };
        let host = uri.host().ok_or_else(|| bad("there is no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("there is no host"));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("a path is not allowed"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| bad("the host is neither an IP address nor a DNS name"))?;
        let tls = if tls {
            let pem = root_pem.ok_or_else(|| TargetError::NoRoot {
                url: url.to_string(),
            })?;
            Some(client_config(pem, "given")?)
        } else {
            None
        };
        Ok(Target {
            url: format!(
                "{}://{}",
                if tls.is_some() { "https" } else { "http" },
                authority(&host, port)
            ),
            host,
            port,
            tls,
            server_name,
        })
    }

    /// The normalized URL, `https://HOST:PORT` or `http://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    fn endpoint(&self) -> Endpoint {
        // The scheme of the endpoint only names the connection; TLS is done by our connector.
        Endpoint::from_shared(format!("http://{}", self.authority()))
            .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1"))
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
    }

    /// A new connection (TCP, then TLS when https) as one gRPC channel; it does not reconnect.
    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        let addr = self.authority();
        let io = self.dial().await?;
        let slot = Arc::new(Mutex::new(Some(io)));
        let connector = tower::service_fn(move |_: Uri| {
            let io = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            async move {
                io.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotConnected, "connection already used")
                })
            }
        });
        self.endpoint()
            .connect_with_connector(connector)
            .await
            .map_err(|e| ConnectError::Grpc {
                addr,
                message: error_chain(&e),
            })
    }

    /// A channel that connects when first used and reconnects when needed (for CA calls).
    pub fn lazy_channel(&self) -> Channel {
        let target = self.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let target = target.clone();
            async move { target.dial().await }
        });
        self.endpoint().connect_with_connector_lazy(connector)
    }

    /// TCP connect, then (for https) the TLS handshake, checking that the server speaks HTTP/2.
    async fn dial(&self) -> Result<TokioIo<Box<dyn Io>>, ConnectError> {
        let addr = self.authority();
        let tcp = tcp_connect(&self.host, self.port).await?;
        let Some(config) = self.tls.clone() else {
            return Ok(TokioIo::new(Box::new(tcp)));
        };
        let handshake = TlsConnector::from(config).connect(self.server_name.clone(), tcp);
        let tls = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(source)) => {
                let hint = tls_hint(&source);
                return Err(ConnectError::Tls { addr, hint, source });
            }
            Err(_) => return Err(ConnectError::Timeout { addr }),
        };
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::NoH2 { addr });
        }
        Ok(TokioIo::new(Box::new(tls)))
    }

    /// One connection attempt, closed again: does the server answer, and does TLS verify?
    pub async fn probe(&self) -> Result<(), ConnectError> {
        self.dial().await.map(drop)
    }
}

/// A connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let addr = authority(host, port);
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(source) => {
            return Err(ConnectError::Resolve {
                host: host.to_string(),
                source,
            });
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = e,
            Err(_) => return Err(ConnectError::Timeout { addr }),
        }
    }
    Err(ConnectError::Tcp { addr, source: last })
}

fn tls_hint(e: &io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "; the server's certificate is not signed by the given root bundle: pass the root-cert.pem of this server (`ambientd serve` prints its path)"
    } else if text.contains("NotValidForName") {
        "; the server's certificate does not name the host of the URL: dial the address `ambientd serve` prints, or add it with --serving-ip / --serving-dns"
    } else if text.contains("Expired") {
        "; the server's certificate has expired"
    } else {
        ""
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

/// ztunnel's control-plane TLS: TLS 1.3 only, ALPN `h2`, trusting only the certificates of `pem`.
pub fn client_config(pem: &str, what: &str) -> Result<Arc<ClientConfig>, TargetError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TargetError::BadRoot {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TargetError::EmptyRoot {
            what: what.to_string(),
        });
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TargetError::BadRoot {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TargetError::BadRoot {
            what: what.to_string(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The `authorization` and `clusterid` headers ztunnel sends when it has a token (and only then).
#[derive(Clone)]
pub struct Credentials {
    bearer: MetadataValue<tonic::metadata::Ascii>,
    cluster_id: MetadataValue<tonic::metadata::Ascii>,
    bearer_header: HeaderValue,
    cluster_id_header: HeaderValue,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// `who` names the client in the error.
    pub fn new(token: &str, cluster_id: &str, who: &str) -> Result<Credentials, TargetError> {
        let bad = || TargetError::BadToken {
            who: who.to_string(),
        };
        let bearer = format!("Bearer {token}");
        Ok(Credentials {
            bearer: bearer.parse().map_err(|_| bad())?,
            cluster_id: cluster_id.parse().map_err(|_| bad())?,
            bearer_header: HeaderValue::from_str(&bearer).map_err(|_| bad())?,
            cluster_id_header: HeaderValue::from_str(cluster_id).map_err(|_| bad())?,
        })
    }

    /// Adds the headers to a tonic request (CA calls).
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        let md = request.metadata_mut();
        md.insert("authorization", self.bearer.clone());
        md.insert("clusterid", self.cluster_id.clone());
    }

    /// Adds the headers to an HTTP request (the xDS stream).
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        headers.insert("authorization", self.bearer_header.clone());
        headers.insert("clusterid", self.cluster_id_header.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBbzCCARWgAwIBAgIUXsvzkTq0HqkDJKUDBfMw8Nq2j2wwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

    #[test]
    fn urls_are_checked_with_a_hint() {
        let plain = Target::new("http://127.0.0.1:15010", None).expect("plaintext");
        assert_eq!(plain.url(), "http://127.0.0.1:15010");
        assert!(!plain.is_tls());
        for (url, reason) in [
            ("ftp://x:1", "the scheme must be https:// or http://"),
            ("http://127.0.0.1:15010/xds", "a path is not allowed"),
        ] {
            let err = Target::new(url, None).expect_err(url).to_string();
            assert!(err.contains(reason), "{err}");
            assert!(err.contains("https://HOST:PORT"), "{err}");
        }
        let err = Target::new("https://127.0.0.1:15012", None).expect_err("no root");
        assert!(err.to_string().contains("--root-cert"), "{err}");
        let err = Target::new("127.0.0.1:15012", Some("not pem")).expect_err("no PEM");
        assert!(matches!(err, TargetError::EmptyRoot { .. }), "{err}");
        // A certificate that does not parse as DER is refused by the store.
        let err = Target::new("https://127.0.0.1:15012", Some(PEM)).expect_err("bad DER");
        assert!(matches!(err, TargetError::BadRoot { .. }), "{err}");
    }

    #[test]
    fn credentials_refuse_a_token_with_a_newline() {
        let err = Credentials::new("abc\n", "Kubernetes", "ztunnel 3").expect_err("newline");
        assert!(err.to_string().contains("ztunnel 3"), "{err}");
        let creds = Credentials::new("abc", "Kubernetes", "z").expect("token");
        let mut req = tonic::Request::new(());
        creds.apply(&mut req);
        assert_eq!(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer abc")
        );
        assert_eq!(
            req.metadata()
                .get("clusterid")
                .and_then(|v| v.to_str().ok()),
            Some("Kubernetes")
        );
    }
}
