//! The server's certificate authority and who it admits: the CA (a plug-in `cacerts` folder, the
//! cluster's Secrets, or the self-signed root of the state folder), the root bundle written for
//! ztunnels, the serving certificate and its renewal, and the authenticators that both the CA service
//! and the xDS streams use, in `--auth` order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambient_ca::rfc3339::Rfc3339;
use ambient_ca::{
    Authenticator, CaService, CaServiceConfig, CertificateAuthority, ClientCertAuthenticator,
    NodeLookup, ServingTls, TokenFileAuthenticator, TrustAllAuthenticator,
};
use tracing::{info, warn};

use crate::cluster::tokenreview::{TokenReviewAuthenticator, TokenReviewConfig};
use crate::shared_index::SharedIndex;

use super::config::{AuthMethod, ServeConfig};
use super::error::ServeError;
use super::tokens::{self, TokenExample, Workload};

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

/// The loaded CA and everything that issues or checks with it.
pub struct Authority {
    pub ca: Arc<CertificateAuthority>,
    /// The absolute path of the root bundle written for ztunnels.
    pub root_bundle: PathBuf,
    pub serving: Arc<ServingTls>,
    pub ca_service: CaService,
    /// The same objects as the CA service's, for the xDS streams.
    pub authenticators: Vec<Arc<dyn Authenticator>>,
    /// `--auth` as used: a first-run token appears as the `tokens=FILE` it was written to.
    pub auth: Vec<AuthMethod>,
    /// The token the banner's ztunnel command uses, if there is one.
    pub example_token: Option<TokenExample>,
    /// Whether that token was made at this start (a first run without `--auth`).
    pub first_run: bool,
}

impl Authority {
    /// Loads the CA, writes the root bundle, issues the serving certificate and builds the
    /// authenticators. `client` is the cluster's, with the Kubernetes source.
    pub async fn load(
        config: &ServeConfig,
        client: Option<&::kube::Client>,
        index: &Arc<SharedIndex>,
    ) -> Result<Authority, ServeError> {
        let ca = match (&config.ca_dir, client) {
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
        let mut auth = Vec::with_capacity(config.auth.len());
        let mut example_token = None;
        let mut first_run = false;
        for method in &config.auth {
            match method {
                AuthMethod::Tokens(path) => {
                    authenticators.push(Arc::new(TokenFileAuthenticator::from_file(
                        path,
                        ca.trust_domain(),
                    )?));
                    if example_token.is_none() {
                        example_token =
                            tokens::pick(path, &config.trusted_node_accounts, &config.state_dir);
                    }
                    auth.push(method.clone());
                }
                AuthMethod::FirstRunToken => {
                    if client.is_some() {
                        return Err(ServeError::FirstRunTokenInCluster);
                    }
                    let workload = match index.read() {
                        Ok(index) => Workload::example(&index),
                        Err(failed) => return Err(failed.into()),
                    };
                    let (file, example) = tokens::first_run(&config.state_dir, &workload)?;
                    authenticators.push(Arc::new(TokenFileAuthenticator::from_file(
                        &file,
                        ca.trust_domain(),
                    )?));
                    info!(
                        tokens = %file.display(),
                        workload = %example.workload_info,
                        "wrote a first-run token for the printed ztunnel command"
                    );
                    example_token = Some(example);
                    first_run = true;
                    auth.push(AuthMethod::Tokens(file));
                }
                AuthMethod::Cert => {
                    authenticators.push(Arc::new(ClientCertAuthenticator::new(ca.trust_domain())));
                    auth.push(method.clone());
                }
                AuthMethod::None => {
                    authenticators.push(Arc::new(TrustAllAuthenticator));
                    auth.push(method.clone());
                }
                AuthMethod::Kube => {
                    let Some(client) = client else {
                        return Err(ServeError::KubeAuthWithoutKube);
                    };
                    authenticators.push(Arc::new(TokenReviewAuthenticator::new(
                        client.clone(),
                        TokenReviewConfig::new(ca.trust_domain(), &config.settings.cluster_id),
                        Some(crate::cluster::ca::index_pods(Arc::clone(index))),
                    )));
                    auth.push(method.clone());
                }
            }
        }
        let ca_service = CaService::new(
            Arc::clone(&ca),
            authenticators
                .iter()
                .map(|a| Box::new(Arc::clone(a)) as Box<dyn Authenticator>)
                .collect(),
            Arc::new(IndexNodeLookup(Arc::clone(index))),
            CaServiceConfig {
                trusted_node_accounts: config.trusted_node_accounts.clone(),
                max_workload_ttl: config.max_workload_cert_ttl,
            },
        );
        Ok(Authority {
            ca,
            root_bundle,
            serving,
            ca_service,
            authenticators,
            auth,
            example_token,
            first_run,
        })
    }
}

/// Renews the serving certificate when it is due, checking every `every`.
pub async fn renew_serving(serving: Arc<ServingTls>, every: Duration) {
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
