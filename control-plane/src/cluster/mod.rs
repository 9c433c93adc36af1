//! ambientd's calls to the Kubernetes API server, apart from reading objects (that is the Kubernetes
//! source, [`crate::source::kube`], which this module builds on): the client (in-cluster, `KUBECONFIG`
//! or `--kubeconfig`), one replica elected through a `coordination.k8s.io` Lease ([`leader`]), the
//! status conditions the index computes written back ([`status`]), the CA's keys in Secrets
//! ([`ca_secret`]), callers' tokens checked with TokenReviews ([`tokenreview`]), the root certificate
//! published in a ConfigMap per namespace ([`root_cert`], wired by [`ca`]), and the list of every API
//! call the code makes ([`API_CALLS`], for the RBAC rules).

pub mod api_calls;
pub mod ca;
pub mod ca_secret;
pub mod leader;
pub mod root_cert;
pub mod status;
pub mod tokenreview;

use std::path::{Path, PathBuf};

pub use self::api_calls::{API_CALLS, ApiCall};
pub use self::leader::LeaseConfig;

use crate::source::kube::KubeSourceConfig;

/// How `ambientd serve --kube` talks to the cluster.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// A kubeconfig file; `None` uses `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// What the source watches and how.
    pub source: KubeSourceConfig,
    /// The Lease whose holder writes status; `None` writes no status at all.
    pub status_lease: Option<LeaseConfig>,
}

impl KubeSettings {
    /// Defaults: the usual client configuration, every kind, status written by the holder of
    /// `ambientd-leader` in `system_namespace`.
    pub fn new(system_namespace: &str) -> KubeSettings {
        KubeSettings {
            kubeconfig: None,
            source: KubeSourceConfig::default(),
            status_lease: Some(LeaseConfig::new(system_namespace)),
        }
    }
}

/// Why no Kubernetes client could be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "no kubeconfig: set KUBECONFIG or pass --kubeconfig (in a pod, mount the service account token; \
         ambientd reads KUBERNETES_SERVICE_HOST and /var/run/secrets/kubernetes.io/serviceaccount): {reason}"
    )]
    NoConfig { reason: String },
    #[error("cannot use kubeconfig {}: {reason}; pass a readable kubeconfig with --kubeconfig", .path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("cannot build a Kubernetes client for {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: ::kube::Error,
    },
}

/// A client for the API server, and the server's URL (for messages). With `kubeconfig` that file's current
/// context; otherwise `KUBECONFIG` (or `~/.kube/config`), falling back to the in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<(::kube::Client, String), KubeError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |reason: String| KubeError::Kubeconfig {
                path: path.to_path_buf(),
                reason,
            };
            let file =
                ::kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            ::kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| bad(e.to_string()))?
        }
        None => ::kube::Config::infer()
            .await
            .map_err(|e| KubeError::NoConfig {
                reason: e.to_string(),
            })?,
    };
    let url = config.cluster_url.to_string();
    let client = ::kube::Client::try_from(config).map_err(|source| KubeError::Client {
        url: url.clone(),
        source,
    })?;
    Ok((client, url))
}
