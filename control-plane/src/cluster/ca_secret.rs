//! Where the CA's keys live in `--kube` mode: Kubernetes Secrets in the system namespace, as istiod keeps
//! them, so that a restarted pod and every replica sign with the same key.
//!
//! At start, in this order:
//! 1. Secret `cacerts` (istio's plug-in CA: keys `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, optional
//!    `cert-chain.pem`, the folder layout of `--ca-dir`): when it exists it is the CA, checked as a
//!    `cacerts` folder is. A broken one stops the start; it never falls back to a self-signed root.
//! 2. Otherwise Secret `istio-ca-secret` (istiod's self-signed root: `ca-cert.pem`, `ca-key.pem`,
//!    `root-cert.pem`, `cert-chain.pem`): when it exists its key and certificate are the CA. When it does
//!    not, a new root is generated and the Secret created; if another replica created it meanwhile
//!    (`409 AlreadyExists`), the winner's is read and used, so replicas starting at once agree. An
//!    existing one is never replaced.
//!
//! Calls: `get` of both Secrets and `create` of `istio-ca-secret`, in the system namespace only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ::kube::api::{Api, ObjectMeta, PostParams};
use ambient_ca::authority::{CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE};
use ambient_ca::{CaError, CaPems, CertificateAuthority};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use tracing::info;

use crate::api_errors::{is_conflict, is_not_found};

/// The plug-in CA Secret (istio's name).
pub const CACERTS_SECRET: &str = "cacerts";
/// The self-signed root's Secret (istiod's name).
pub const CA_SECRET: &str = "istio-ca-secret";
/// istiod's type for [`CA_SECRET`].
pub const CA_SECRET_TYPE: &str = "istio.io/ca-root";

/// Which Secret the CA came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaOrigin {
    /// `cacerts`: a plug-in CA.
    PlugIn,
    /// `istio-ca-secret`, already there.
    SelfSignedLoaded,
    /// `istio-ca-secret`, created by this process.
    SelfSignedCreated,
    /// `istio-ca-secret`, created by another replica while this one was creating it.
    SelfSignedRaceLost,
}

/// The CA and where it came from.
#[derive(Debug)]
pub struct LoadedCa {
    pub ca: CertificateAuthority,
    pub origin: CaOrigin,
    /// `<namespace>/<name>` of the Secret.
    pub secret: String,
}

/// Why the CA could not be loaded from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeCaError {
    #[error(
        "cannot {action} Secret {secret}: {source}; ambientd's service account needs get on Secrets \
         cacerts and istio-ca-secret and create on Secrets in that namespace (deploy/kubernetes/20-rbac.yaml)"
    )]
    Api {
        action: &'static str,
        secret: String,
        #[source]
        source: Box<::kube::Error>,
    },
    #[error("Secret {secret} has no key {key}: {hint}")]
    MissingKey {
        secret: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("Secret {secret}: key {key} is not text (PEM is ASCII)")]
    NotText { secret: String, key: &'static str },
    #[error("{source}; {hint}")]
    BadSecret {
        #[source]
        source: CaError,
        hint: &'static str,
    },
    #[error(
        "Secret {secret} already exists but could not be read back after creating it failed: it was \
         deleted at the same time? Start again"
    )]
    Vanished { secret: String },
}

const PLUGIN_HINT: &str = "fix Secret cacerts (istio's plug-in CA layout: ca-cert.pem, ca-key.pem, \
                           root-cert.pem, cert-chain.pem), or delete it to use the self-signed root kept in \
                           Secret istio-ca-secret";
const SELF_SIGNED_HINT: &str = "restore Secret istio-ca-secret from a backup; or, to start over with a \
                                new root (every certificate issued so far stops verifying), delete it and \
                                restart ambientd";

/// Loads the CA from `cacerts` or `istio-ca-secret` in `namespace`, creating the latter when neither
/// exists.
pub async fn load(
    client: ::kube::Client,
    namespace: &str,
    trust_domain: &str,
) -> Result<LoadedCa, KubeCaError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let name = |n: &str| format!("{namespace}/{n}");
    if let Some(secret) = get(&api, namespace, CACERTS_SECRET).await? {
        let secret_name = name(CACERTS_SECRET);
        let data = secret.data.unwrap_or_default();
        let pems = CaPems {
            ca_key: key(&data, &secret_name, CA_KEY_FILE, PLUGIN_HINT)?,
            ca_cert: key(&data, &secret_name, CA_CERT_FILE, PLUGIN_HINT)?,
            root_cert: key(&data, &secret_name, ROOT_CERT_FILE, PLUGIN_HINT)?,
            cert_chain: optional_key(&data, &secret_name, CERT_CHAIN_FILE)?,
        };
        let ca = CertificateAuthority::from_cacerts_pems(&pems, &source(&secret_name))
            .and_then(|ca| ca.with_trust_domain(trust_domain))
            .map_err(|source| KubeCaError::BadSecret {
                source,
                hint: PLUGIN_HINT,
            })?;
        info!(secret = %secret_name, "CA: the plug-in CA from Secret cacerts");
        return Ok(LoadedCa {
            ca,
            origin: CaOrigin::PlugIn,
            secret: secret_name,
        });
    }

    let secret_name = name(CA_SECRET);
    if let Some(secret) = get(&api, namespace, CA_SECRET).await? {
        let ca = self_signed(&secret, &secret_name, trust_domain)?;
        info!(secret = %secret_name, "CA: the self-signed root from Secret istio-ca-secret");
        return Ok(LoadedCa {
            ca,
            origin: CaOrigin::SelfSignedLoaded,
            secret: secret_name,
        });
    }

    let generated =
        CertificateAuthority::generate_self_signed_pems(trust_domain).map_err(|source| {
            KubeCaError::BadSecret {
                source,
                hint: "choose another --trust-domain",
            }
        })?;
    let mut data = BTreeMap::new();
    for (k, v) in [
        (CA_CERT_FILE, generated.cert_pem.as_str()),
        (CA_KEY_FILE, generated.key_pem.as_str()),
        (ROOT_CERT_FILE, generated.cert_pem.as_str()),
        (CERT_CHAIN_FILE, ""),
    ] {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        type_: Some(CA_SECRET_TYPE.to_string()),
        data: Some(data),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            let ca = self_signed(&created, &secret_name, trust_domain)?;
            info!(secret = %secret_name, trust_domain,
                "CA: created a self-signed root (ECDSA P-256, valid 10 years) in Secret istio-ca-secret");
            Ok(LoadedCa {
                ca,
                origin: CaOrigin::SelfSignedCreated,
                secret: secret_name,
            })
        }
        Err(e) if is_conflict(&e) => {
            // Another replica created it first: its root is the root.
            let Some(winner) = get(&api, namespace, CA_SECRET).await? else {
                return Err(KubeCaError::Vanished {
                    secret: secret_name,
                });
            };
            let ca = self_signed(&winner, &secret_name, trust_domain)?;
            info!(secret = %secret_name,
                "CA: another replica created Secret istio-ca-secret first; using its root");
            Ok(LoadedCa {
                ca,
                origin: CaOrigin::SelfSignedRaceLost,
                secret: secret_name,
            })
        }
        Err(source) => Err(KubeCaError::Api {
            action: "create",
            secret: secret_name,
            source: Box::new(source),
        }),
    }
}

/// The label errors use for a Secret's keys: `Secret <ns>/<name>/<key>`.
fn source(secret: &str) -> PathBuf {
    PathBuf::from(format!("Secret {secret}"))
}

async fn get(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, KubeCaError> {
    match api.get(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(KubeCaError::Api {
            action: "read",
            secret: format!("{namespace}/{name}"),
            source: Box::new(source),
        }),
    }
}

fn self_signed(
    secret: &Secret,
    secret_name: &str,
    trust_domain: &str,
) -> Result<CertificateAuthority, KubeCaError> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let key_pem = key(data, secret_name, CA_KEY_FILE, SELF_SIGNED_HINT)?;
    let cert_pem = key(data, secret_name, CA_CERT_FILE, SELF_SIGNED_HINT)?;
    CertificateAuthority::from_self_signed_pems(
        &key_pem,
        &cert_pem,
        trust_domain,
        &source(secret_name),
    )
    .map_err(|source| KubeCaError::BadSecret {
        source,
        hint: SELF_SIGNED_HINT,
    })
}

fn key(
    data: &BTreeMap<String, ByteString>,
    secret: &str,
    key: &'static str,
    hint: &'static str,
) -> Result<String, KubeCaError> {
    optional_key(data, secret, key)?.ok_or_else(|| KubeCaError::MissingKey {
        secret: secret.to_string(),
        key,
        hint,
    })
}

/// A key's text; `None` when absent or empty.
fn optional_key(
    data: &BTreeMap<String, ByteString>,
    secret: &str,
    key: &'static str,
) -> Result<Option<String>, KubeCaError> {
    let Some(bytes) = data.get(key).filter(|b| !b.0.is_empty()) else {
        return Ok(None);
    };
    String::from_utf8(bytes.0.clone())
        .map(Some)
        .map_err(|_| KubeCaError::NotText {
            secret: secret.to_string(),
            key,
        })
}
