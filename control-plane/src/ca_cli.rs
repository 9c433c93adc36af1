//! `ambientd ca`: the CA from the command line, for labs and tests. `root` prints the root bundle,
//! `issue` writes a workload certificate and key as istio-agent lays them out (`cert-chain.pem`,
//! `key.pem`, `root-cert.pem`), and `inspect` describes the certificates (or CSRs) in a PEM file.
//!
//! The CA is the one `ambientd serve` uses: the plug-in folder when `--ca-dir` is given, otherwise the
//! self-signed root in `--state-dir` (created there on first use).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ambient_ca::{CaError, CertificateAuthority, Identity};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::cli::CaArgs;
use ambient_ca::rfc3339;

/// Why an `ambientd ca` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CaCliError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", .path.display())]
    Pem { path: PathBuf, reason: String },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CaCliError {
    let path = path.to_path_buf();
    move |source| CaCliError::Io {
        action,
        path,
        source,
    }
}

/// Opens the CA: the plug-in folder when given (signing for `trust_domain`), else the self-signed root
/// of the state folder (created with `trust_domain` when there is none yet).
pub fn open(args: &CaArgs, trust_domain: &str) -> Result<CertificateAuthority, CaCliError> {
    Ok(match &args.ca_dir {
        Some(dir) => {
            CertificateAuthority::from_cacerts_dir(dir)?.with_trust_domain(trust_domain)?
        }
        None => CertificateAuthority::load_or_create_self_signed(&args.state_dir, trust_domain)?,
    })
}

/// The root bundle (PEM), as ztunnels must trust it.
pub fn root(args: &CaArgs, trust_domain: &str) -> Result<String, CaCliError> {
    Ok(open(args, trust_domain)?.root_bundle_pem().to_string())
}

/// The files [`issue`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf followed by any intermediates (what the workload presents).
    pub cert_chain: PathBuf,
    /// The PKCS#8 private key (mode 0600).
    pub key: PathBuf,
    /// The root bundle (what the workload trusts).
    pub root: PathBuf,
}

/// Issues a workload certificate for `identity` and writes it to `out` (created if needed).
pub fn issue(
    args: &CaArgs,
    identity: &Identity,
    ttl: Duration,
    out: &Path,
) -> Result<Issued, CaCliError> {
    let ca = open(args, &identity.trust_domain)?;
    let (chain, key) = ca.issue_workload(identity, ttl)?;
    std::fs::create_dir_all(out).map_err(io_error("create", out))?;
    let issued = Issued {
        cert_chain: out.join("cert-chain.pem"),
        key: out.join("key.pem"),
        root: out.join("root-cert.pem"),
    };
    // The chain ends with the root bundle: the workload presents what comes before it.
    let (presented, root) = match chain.split_last() {
        Some((root, presented)) if !presented.is_empty() => (presented.concat(), root.clone()),
        _ => (chain.concat(), ca.root_bundle_pem().to_string()),
    };
    write_private(&issued.key, key.as_bytes())?;
    std::fs::write(&issued.cert_chain, presented).map_err(io_error("write", &issued.cert_chain))?;
    std::fs::write(&issued.root, root).map_err(io_error("write", &issued.root))?;
    Ok(issued)
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaCliError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error("write", path))?;
    file.write_all(contents).map_err(io_error("write", path))
}

/// Describes every certificate and CSR in a PEM file: subject, issuer, serial, validity, SANs, key.
pub fn inspect(path: &Path) -> Result<String, CaCliError> {
    let bytes = std::fs::read(path).map_err(io_error("read", path))?;
    describe_pem(&bytes, SystemTime::now()).map_err(|reason| CaCliError::Pem {
        path: path.to_path_buf(),
        reason,
    })
}

/// [`inspect`] on PEM text, with `now` for the "expires in" note.
pub fn describe_pem(bytes: &[u8], now: SystemTime) -> Result<String, String> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        blocks.push(block.map_err(|e| format!("not valid PEM: {e}"))?);
    }
    if blocks.is_empty() {
        return Err("no PEM block found; expected CERTIFICATE or CERTIFICATE REQUEST".into());
    }
    let total = blocks.len();
    let mut out = String::new();
    for (i, block) in blocks.iter().enumerate() {
        let n = i + 1;
        match block.label.as_str() {
            "CERTIFICATE" => {
                let (_, cert) = X509Certificate::from_der(&block.contents)
                    .map_err(|e| format!("block {n}: not an X.509 certificate: {e}"))?;
                let _ = writeln!(out, "certificate {n} of {total}");
                describe_certificate(&mut out, &cert, now);
            }
            "CERTIFICATE REQUEST" => {
                let (_, csr) = X509CertificationRequest::from_der(&block.contents)
                    .map_err(|e| format!("block {n}: not a PKCS#10 request: {e}"))?;
                let _ = writeln!(out, "certificate request {n} of {total}");
                describe_csr(&mut out, &csr);
            }
            label if label.contains("PRIVATE KEY") => {
                let _ = writeln!(out, "{} {n} of {total} (not shown)", label.to_lowercase());
            }
            label => {
                let _ = writeln!(out, "{label} {n} of {total} (not described)");
            }
        }
    }
    Ok(out)
}

fn describe_certificate(out: &mut String, cert: &X509Certificate<'_>, now: SystemTime) {
    let validity = cert.validity();
    let not_before = unix_time(validity.not_before.timestamp());
    let not_after = unix_time(validity.not_after.timestamp());
    let state = match not_after.duration_since(now) {
        _ if now < not_before => "not valid yet".to_string(),
        Ok(left) => format!("expires in {}", human(left)),
        Err(e) => format!("expired {} ago", human(e.duration())),
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => general_names(&ext.value.general_names),
        Ok(None) => "none".to_string(),
        Err(e) => format!("unreadable ({e})"),
    };
    let _ = writeln!(
        out,
        "  subject:    {}",
        name_or_empty(&cert.subject().to_string())
    );
    let _ = writeln!(
        out,
        "  issuer:     {}",
        name_or_empty(&cert.issuer().to_string())
    );
    let _ = writeln!(out, "  serial:     {}", cert.raw_serial_as_string());
    let _ = writeln!(
        out,
        "  validity:   {} to {} ({state})",
        rfc3339::format(not_before),
        rfc3339::format(not_after)
    );
    let _ = writeln!(out, "  SANs:       {sans}");
    let _ = writeln!(
        out,
        "  CA:         {}",
        if cert.is_ca() { "yes" } else { "no" }
    );
    let _ = writeln!(out, "  key:        {}", key_kind(cert.public_key()));
}

fn describe_csr(out: &mut String, csr: &X509CertificationRequest<'_>) {
    let info = &csr.certification_request_info;
    let sans = csr
        .requested_extensions()
        .and_then(|mut exts| {
            exts.find_map(|e| match e {
                ParsedExtension::SubjectAlternativeName(san) => {
                    Some(general_names(&san.general_names))
                }
                _ => None,
            })
        })
        .unwrap_or_else(|| "none".to_string());
    let _ = writeln!(
        out,
        "  subject:    {}",
        name_or_empty(&info.subject.to_string())
    );
    let _ = writeln!(out, "  SANs:       {sans}");
    let _ = writeln!(out, "  key:        {}", key_kind(&info.subject_pki));
}

fn general_names(names: &[GeneralName<'_>]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|n| match n {
            GeneralName::URI(uri) => format!("URI:{uri}"),
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
                ),
                16 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(bytes);
                    format!("IP:{}", std::net::Ipv6Addr::from(octets))
                }
                _ => format!("IP:<{} bytes>", bytes.len()),
            },
            GeneralName::RFC822Name(mail) => format!("email:{mail}"),
            other => format!("{other:?}"),
        })
        .collect();
    if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join(", ")
    }
}

fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match (alg.as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".to_string(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ECDSA P-384".to_string(),
        ("1.2.840.10045.2.1", _) => "ECDSA".to_string(),
        ("1.2.840.113549.1.1.1", _) => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {} bits", rsa.key_size()),
            _ => "RSA".to_string(),
        },
        ("1.3.101.112", _) => "Ed25519".to_string(),
        (other, _) => other.to_string(),
    }
}

fn name_or_empty(name: &str) -> &str {
    if name.is_empty() { "(empty)" } else { name }
}

fn unix_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `3d 4h`, `5h 2m`, `12m 5s`, `40s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(
            human(Duration::from_secs(86400 * 3 + 3600 * 4 + 5)),
            "3d 4h"
        );
        assert_eq!(human(Duration::from_secs(3600 * 5 + 120)), "5h 2m");
        assert_eq!(human(Duration::from_secs(40)), "40s");
    }

    #[test]
    fn garbage_is_not_pem() {
        assert!(describe_pem(b"hello", SystemTime::now()).is_err());
    }
}
