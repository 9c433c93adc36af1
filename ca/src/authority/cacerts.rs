//! The plug-in CA: istio's `cacerts` layout, read from a folder or held in memory, and the chain it
//! sends with every leaf.

use std::path::Path;

use rcgen::Issuer;
use ring::rand::SystemRandom;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::check::check_ca_cert;
use super::pem_certs::{parse_certs, parse_one_cert};
use super::{
    CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, CertificateAuthority, DEFAULT_TRUST_DOMAIN,
    ROOT_CERT_FILE,
};
use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::store;

const PLUGIN_KEY_HINT: &str =
    "Put the PEM private key of ca-cert.pem here (PKCS#8, SEC1 or PKCS#1, unencrypted)";

/// istio's `cacerts` layout in memory: the PEM text of each file (or Secret key).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CaPems {
    /// `ca-key.pem`: the private key of `ca-cert.pem`.
    pub ca_key: String,
    /// `ca-cert.pem`: the signing certificate.
    pub ca_cert: String,
    /// `root-cert.pem`: the root bundle.
    pub root_cert: String,
    /// `cert-chain.pem`: from `ca-cert.pem` up towards the root; `None` or empty when absent.
    pub cert_chain: Option<String>,
}

impl std::fmt::Debug for CaPems {
    // The key is left out on purpose.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPems")
            .field("ca_cert", &self.ca_cert.len())
            .field("root_cert", &self.root_cert.len())
            .field("cert_chain", &self.cert_chain.as_ref().map(String::len))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// istio `cacerts` layout (`ca-key.pem`, `ca-cert.pem`, `root-cert.pem`, optional `cert-chain.pem`);
    /// writes nothing. The trust domain is `cluster.local` unless set with
    /// [`with_trust_domain`](Self::with_trust_domain).
    pub fn from_cacerts_dir(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let root_path = dir.join(ROOT_CERT_FILE);
        let chain_path = dir.join(CERT_CHAIN_FILE);
        for (path, hint) in [
            (
                &cert_path,
                "the plug-in CA needs the signing (intermediate) certificate here",
            ),
            (
                &key_path,
                "the plug-in CA needs the private key of ca-cert.pem here",
            ),
            (
                &root_path,
                "the plug-in CA needs the root certificate(s) here",
            ),
        ] {
            if !store::exists(path)? {
                return Err(CaError::MissingFile {
                    path: path.clone(),
                    hint,
                });
            }
        }
        let pems = CaPems {
            ca_key: store::read(&key_path)?,
            ca_cert: store::read(&cert_path)?,
            root_cert: store::read(&root_path)?,
            cert_chain: if store::exists(&chain_path)? {
                Some(store::read(&chain_path)?)
            } else {
                None
            },
        };
        if let Some(mode) = store::loose_mode(&key_path) {
            tracing::warn!(
                path = %key_path.display(),
                "CA key file has mode {mode:o}, readable by others; run chmod 600 on it"
            );
        }
        Self::from_cacerts_pems(&pems, dir)
    }

    /// istio's `cacerts` layout held in memory (the keys of a Kubernetes Secret, say), checked exactly as
    /// [`from_cacerts_dir`](Self::from_cacerts_dir) checks the folder. Errors name
    /// `<source>/<file name>`, so `source` should say where the PEMs came from. Writes nothing.
    pub fn from_cacerts_pems(pems: &CaPems, source: &Path) -> Result<Self, CaError> {
        let key_path = source.join(CA_KEY_FILE);
        let cert_path = source.join(CA_CERT_FILE);
        let root_path = source.join(ROOT_CERT_FILE);
        let chain_path = source.join(CERT_CHAIN_FILE);
        let chain_text = pems.cert_chain.as_deref().filter(|c| !c.trim().is_empty());
        let key = keys::key_from_pem(&pems.ca_key).map_err(|reason| CaError::Key {
            path: key_path.clone(),
            reason,
            hint: PLUGIN_KEY_HINT,
        })?;
        let cert_der = parse_one_cert(&pems.ca_cert, &cert_path)?;
        let not_after = check_ca_cert(&cert_path, &key_path, &cert_der, &key, false)?;

        let roots_der = parse_certs(&pems.root_cert, &root_path)?;
        if roots_der.is_empty() {
            return Err(CaError::Certificate {
                path: root_path,
                reason: "holds no CERTIFICATE block".into(),
            });
        }
        for (i, root) in roots_der.iter().enumerate() {
            let (_, x509) = X509Certificate::from_der(root).map_err(|e| CaError::Certificate {
                path: root_path.clone(),
                reason: format!("certificate #{} does not parse: {e}", i + 1),
            })?;
            if !x509.is_ca() {
                return Err(CaError::NotACa {
                    path: root_path.clone(),
                    reason: format!("certificate #{} ({}) has no CA:TRUE", i + 1, x509.subject()),
                });
            }
        }

        // The intermediates sent with every leaf: ca-cert.pem first, then what cert-chain.pem adds
        // below the roots. Roots listed in cert-chain.pem are dropped (they travel in the root bundle).
        let mut intermediates_der = Vec::new();
        if !roots_der.contains(&cert_der) {
            intermediates_der.push(cert_der.clone());
        }
        if let Some(text) = chain_text {
            let chain = parse_certs(text, &chain_path)?;
            for (i, c) in chain.into_iter().enumerate() {
                if c == cert_der {
                    if i != 0 {
                        return Err(CaError::Certificate {
                            path: chain_path,
                            reason:
                                "ca-cert.pem is not the first certificate; the chain goes from \
                                     ca-cert.pem up towards the root"
                                    .into(),
                        });
                    }
                    continue;
                }
                if roots_der.contains(&c) || intermediates_der.contains(&c) {
                    continue;
                }
                if i == 0 {
                    return Err(CaError::Certificate {
                        path: chain_path,
                        reason: "the first certificate is not ca-cert.pem; the chain goes from \
                                 ca-cert.pem up towards the root"
                            .into(),
                    });
                }
                intermediates_der.push(c);
            }
        }

        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Certificate {
                path: cert_path.clone(),
                reason: format!("cannot sign with this certificate: {e}"),
            })?;
        let ca = CertificateAuthority {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            issuer,
            issuer_not_after: not_after,
            intermediates_pem: intermediates_der
                .iter()
                .map(|d| pem::encode("CERTIFICATE", d))
                .collect(),
            intermediates_der,
            root_bundle_pem: roots_der
                .iter()
                .map(|d| pem::encode("CERTIFICATE", d))
                .collect(),
            roots_der,
            source: source.to_path_buf(),
            rng: SystemRandom::new(),
        };
        let chain_or_cert = if chain_text.is_some() {
            chain_path
        } else {
            cert_path.clone()
        };
        ca.self_test(&chain_or_cert, &root_path)?;
        tracing::info!(
            source = %source.display(),
            intermediates = ca.intermediates_der.len(),
            roots = ca.roots_der.len(),
            "loaded the plug-in CA"
        );
        Ok(ca)
    }
}
