//! The CA's side of the cluster, put together for `ambientd serve --kube`:
//! - the CA's keys from Secret `cacerts` or `istio-ca-secret` ([`super::ca_secret`]);
//! - the TokenReview authenticator for ztunnels' service account tokens ([`super::tokenreview`]), which
//!   finds a pod's node in the index when the token does not say;
//! - the root bundle in ConfigMap `istio-ca-root-cert` of every namespace ([`super::root_cert`]), written
//!   by the Lease holder.
//!
//! [`setup`] runs at start (before the listeners); [`publish_root`] once the leader election runs.

use std::sync::Arc;

use ambient_ca::CertificateAuthority;
use tokio::sync::watch;

use super::ca_secret::{self, CaOrigin, KubeCaError};
use super::root_cert::{RootCertConfig, RootCertPublisher};
use super::tokenreview::{PodFacts, PodLookup, TokenReviewAuthenticator, TokenReviewConfig};
use ambient_index::Settings;

use crate::shared_index::SharedIndex;

/// The CA and its authenticator, ready for the CA service and the xDS server.
#[derive(Debug)]
pub struct CaSetup {
    pub ca: CertificateAuthority,
    /// Which Secret the CA came from, and its `<namespace>/<name>`.
    pub origin: CaOrigin,
    pub secret: String,
    /// `--auth kube`.
    pub authenticator: Arc<TokenReviewAuthenticator>,
}

/// Loads (or creates) the CA from the system namespace's Secrets and builds the TokenReview
/// authenticator for `settings`' trust domain and cluster id; `index` answers pod lookups.
pub async fn setup(
    client: ::kube::Client,
    settings: &Settings,
    index: Option<Arc<SharedIndex>>,
) -> Result<CaSetup, KubeCaError> {
    let loaded = ca_secret::load(
        client.clone(),
        &settings.system_namespace,
        &settings.trust_domain,
    )
    .await?;
    let config = TokenReviewConfig::new(loaded.ca.trust_domain(), &settings.cluster_id);
    let authenticator = Arc::new(TokenReviewAuthenticator::new(
        client,
        config,
        index.map(index_pods),
    ));
    Ok(CaSetup {
        ca: loaded.ca,
        origin: loaded.origin,
        secret: loaded.secret,
        authenticator,
    })
}

/// Pod lookups answered from the index.
pub fn index_pods(index: Arc<SharedIndex>) -> Arc<dyn PodLookup> {
    Arc::new(move |namespace: &str, name: &str| {
        // A failed index knows no pod: the caller is refused.
        let index = index.read().ok()?;
        index.pod(namespace, name).map(|pod| PodFacts {
            uid: pod.meta.uid.clone(),
            service_account: pod.service_account.clone(),
            node: pod.node.clone(),
        })
    })
}

/// Starts publishing `ca`'s root bundle in every namespace; send a new bundle through the returned
/// sender when the root changes. `leader`: the Lease holder's flag (`None`: always write).
pub fn publish_root(
    client: ::kube::Client,
    ca: &CertificateAuthority,
    leader: Option<watch::Receiver<bool>>,
) -> (RootCertPublisher, watch::Sender<Arc<str>>) {
    let (root_tx, root_rx) = watch::channel(Arc::<str>::from(ca.root_bundle_pem()));
    let publisher = RootCertPublisher::start(client, root_rx, leader, RootCertConfig::default());
    (publisher, root_tx)
}
