//! Why `ambientd serve` could not start, or stopped: [`ServeError`], each with what to do about it.

use std::io;
use std::net::SocketAddr;

use ambient_ca::CaError;

use crate::cluster::KubeError;
use crate::shared_index::IndexFailed;
use crate::source::files::FileSourceError;

use super::tokens::TokenError;

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
    #[error(
        "a first-run token names a pod of the config folder and is for file mode; in a cluster, \
         authenticate callers with --auth kube or cert"
    )]
    FirstRunTokenInCluster,
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
    #[error(
        "the first-run ztunnel token: {0}; make --state-dir writable, or choose how callers \
         authenticate with --auth"
    )]
    FirstRunToken(#[from] TokenError),
    #[error(transparent)]
    IndexFailed(#[from] IndexFailed),
    #[error("the gRPC server on {addr} failed: {source}")]
    Transport {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}
