//! Certificates read out of PEM text, with errors that name the file they came from.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use crate::error::CaError;
use crate::pem;
use crate::store;

pub(super) fn read_one_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    parse_one_cert(&store::read(path)?, path)
}

/// The certificates of a PEM text; `path` names it in errors.
pub(super) fn parse_certs(
    text: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let blocks = pem::parse(text).map_err(|reason| CaError::Certificate {
        path: path.to_path_buf(),
        reason: format!("not PEM: {reason}"),
    })?;
    let mut out = Vec::new();
    for b in blocks {
        match b.label.as_str() {
            "CERTIFICATE" => out.push(CertificateDer::from(b.der)),
            l if l.ends_with("PRIVATE KEY") => {
                return Err(CaError::Certificate {
                    path: path.to_path_buf(),
                    reason: "holds a private key; certificates only, please (the key goes in ca-key.pem)"
                        .into(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The one certificate of a PEM text; `path` names it in errors.
pub(super) fn parse_one_cert(text: &str, path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = parse_certs(text, path)?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(CaError::Certificate {
            path: path.to_path_buf(),
            reason: "holds no CERTIFICATE block (empty or cut short?)".into(),
        }),
        n => Err(CaError::Certificate {
            path: path.to_path_buf(),
            reason: format!(
                "holds {n} certificates; put only the signing certificate here and its chain in cert-chain.pem"
            ),
        }),
    }
}
