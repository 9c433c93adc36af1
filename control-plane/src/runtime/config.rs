//! What `ambientd serve` is told: [`ServeConfig`], filled from the flags by
//! [`crate::cli::ServeArgs::config`] or built by tests, with where the objects come from
//! ([`ServeSource`]) and how callers authenticate ([`AuthMethod`]). [`ServeConfig::to_json`] is the
//! document the admin API shows at `/debug/config`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ambient_index::Settings;

use crate::cluster::KubeSettings;

/// Where `ambientd serve` reads Kubernetes objects.
#[derive(Debug, Clone)]
pub enum ServeSource {
    /// A folder (read recursively) or one file of Kubernetes YAML, followed for changes
    /// (`--config-dir`).
    Files { config_dir: PathBuf },
    /// The cluster's API server (`--kube`).
    Kube(KubeSettings),
}

/// One way of authenticating a CSR caller (`--auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// `tokens=FILE`: bearer tokens mapped to service accounts (and their node and pod).
    Tokens(PathBuf),
    /// `cert`: a client certificate issued by this CA (its SPIFFE URI SAN).
    Cert,
    /// `none`: every caller is whoever its CSR says. Refused unless the listener binds loopback.
    None,
    /// `kube`: a Kubernetes service account token, checked with a TokenReview (`--kube` only).
    Kube,
    /// A token the server makes for itself at start, for the pod the banner names: written with that
    /// pod's account to `<state-dir>/first-run-tokens.yaml` and alone to `<state-dir>/ztunnel-token` (ztunnel's
    /// `AUTH_TOKEN`), both readable by the owner only, and then checked as `tokens=FILE` is. What
    /// `serve` uses first, before `cert`, when `--auth` is not given in file mode, so that the printed
    /// ztunnel command authenticates as printed. Not an `--auth` value.
    FirstRunToken,
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cert" => Ok(AuthMethod::Cert),
            "none" => Ok(AuthMethod::None),
            "kube" => Ok(AuthMethod::Kube),
            _ => match s.strip_prefix("tokens=") {
                Some(path) if !path.is_empty() => Ok(AuthMethod::Tokens(PathBuf::from(path))),
                _ => Err(format!(
                    "{s:?} is not an authentication method: use tokens=FILE, cert, kube or none"
                )),
            },
        }
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::Tokens(path) => write!(f, "tokens={}", path.display()),
            AuthMethod::Cert => f.write_str("cert"),
            AuthMethod::None => f.write_str("none"),
            AuthMethod::Kube => f.write_str("kube"),
            AuthMethod::FirstRunToken => f.write_str("first-run token"),
        }
    }
}

/// Everything `ambientd serve` needs to start; [`crate::cli::ServeArgs::config`] fills it from flags.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the objects come from.
    pub source: ServeSource,
    pub settings: Settings,
    /// TLS gRPC listener; port 0 picks a free port ([`Server::grpc_addr`] tells which).
    pub grpc_addr: SocketAddr,
    /// Plaintext delta xDS listener, if any ([`Server::xds_plaintext_addr`] tells the bound address).
    pub xds_plaintext_addr: Option<SocketAddr>,
    /// Admin HTTP listener (`/ready`, `/metrics`, `/debug/*`), if any ([`Server::admin_addr`]).
    pub admin_addr: Option<SocketAddr>,
    /// xDS streams end with `Unavailable` after this long (±10 %); `None`: never.
    pub max_connection_age: Option<Duration>,
    /// After the shutdown signal, how long open calls may take to finish before the server exits anyway.
    pub shutdown_grace: Duration,
    /// Where the self-signed root lives and the root bundle is written.
    pub state_dir: PathBuf,
    /// Plug-in CA folder (istiod's `cacerts` layout), instead of the self-signed root.
    pub ca_dir: Option<PathBuf>,
    /// Extra DNS SANs of the serving certificate.
    pub serving_dns: Vec<String>,
    /// IP SANs of the serving certificate.
    pub serving_ips: Vec<IpAddr>,
    /// Authentication methods, tried in order.
    pub auth: Vec<AuthMethod>,
    /// `(namespace, service account)` pairs allowed to impersonate pods on their node.
    pub trusted_node_accounts: Vec<(String, String)>,
    pub max_workload_cert_ttl: Duration,
    pub serving_cert_ttl: Duration,
    /// How often the serving certificate is checked for renewal.
    pub serving_renew_interval: Duration,
}

impl ServeConfig {
    /// The file-mode defaults: `127.0.0.1:15012`, SANs `localhost` and `127.0.0.1`, client-certificate
    /// authentication, `istio-system/ztunnel` as the node account, 24 h certificates, 30 min streams,
    /// 10 s shutdown grace. No plaintext xDS or admin listener (the command line adds `127.0.0.1:15010`
    /// and `127.0.0.1:15014`, and a first-run token before `cert` when `--auth` is not given).
    pub fn new(config_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            source: ServeSource::Files {
                config_dir: config_dir.into(),
            },
            settings: Settings::default(),
            grpc_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15012),
            xds_plaintext_addr: None,
            admin_addr: None,
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            shutdown_grace: Duration::from_secs(10),
            state_dir: state_dir.into(),
            ca_dir: None,
            serving_dns: vec!["localhost".to_string()],
            serving_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            auth: vec![AuthMethod::Cert],
            trusted_node_accounts: vec![("istio-system".to_string(), "ztunnel".to_string())],
            max_workload_cert_ttl: Duration::from_secs(24 * 3600),
            serving_cert_ttl: Duration::from_secs(24 * 3600),
            serving_renew_interval: Duration::from_secs(60),
        }
    }

    /// `/debug/config`: the effective configuration, every flag's value after defaults with the derived
    /// serving-certificate names, and the Kubernetes source's settings. Holds paths, never file contents.
    pub fn to_json(&self) -> serde_json::Value {
        let config = self;
        let s = &config.settings;
        let enrollment = match s.enrollment {
            ambient_index::Enrollment::Annotation => "annotation",
            ambient_index::Enrollment::Labels => "labels",
        };
        let mut json = serde_json::json!({
            "grpcAddr": config.grpc_addr.to_string(),
            "stateDir": config.state_dir.display().to_string(),
            "caDir": config.ca_dir.as_ref().map(|d| d.display().to_string()),
            "servingDns": config.serving_dns_names(),
            "servingIps": config
                .serving_ip_addrs()
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>(),
            "auth": config.auth.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "trustedNodeAccounts": config
                .trusted_node_accounts
                .iter()
                .map(|(ns, sa)| format!("{ns}/{sa}"))
                .collect::<Vec<_>>(),
            "maxWorkloadCertTtlSeconds": config.max_workload_cert_ttl.as_secs(),
            "servingCertTtlSeconds": config.serving_cert_ttl.as_secs(),
            "servingRenewIntervalSeconds": config.serving_renew_interval.as_secs(),
            "mesh": {
                "clusterId": s.cluster_id,
                "trustDomain": s.trust_domain,
                "domainSuffix": s.domain_suffix,
                "rootNamespace": s.root_namespace,
                "systemNamespace": s.system_namespace,
                "enrollment": enrollment,
                "revision": s.revision,
            },
        });
        if let Some(map) = json.as_object_mut() {
            match &config.source {
                ServeSource::Files { config_dir } => {
                    map.insert(
                        "configDir".to_string(),
                        config_dir.display().to_string().into(),
                    );
                }
                ServeSource::Kube(kube) => {
                    map.insert(
                "kube".to_string(),
                serde_json::json!({
                    "kubeconfig": kube.kubeconfig.as_ref().map(|p| p.display().to_string()),
                    "kinds": kube.source.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "statusLease": kube.status_lease.as_ref().map(|l| serde_json::json!({
                        "namespace": l.namespace,
                        "name": l.name,
                        "identity": l.identity,
                    })),
                }),
            );
                }
            }
        }
        json
    }

    /// The Kubernetes settings, when the source is the cluster.
    pub fn kube(&self) -> Option<&KubeSettings> {
        match &self.source {
            ServeSource::Kube(kube) => Some(kube),
            ServeSource::Files { .. } => None,
        }
    }

    /// Every DNS SAN of the serving certificate: istiod's Service names, then the configured ones.
    pub fn serving_dns_names(&self) -> Vec<String> {
        let ns = &self.settings.system_namespace;
        let mut names = vec![
            format!("istiod.{ns}.svc"),
            format!("istiod.{ns}.svc.{}", self.settings.domain_suffix),
        ];
        for name in &self.serving_dns {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Every IP SAN of the serving certificate: the configured ones, plus the listener's address when it
    /// is a specific one (so a client dialling the printed address can verify the server).
    pub fn serving_ip_addrs(&self) -> Vec<IpAddr> {
        let mut ips = self.serving_ips.clone();
        let own = self.grpc_addr.ip();
        if !own.is_unspecified() && !ips.contains(&own) {
            ips.push(own);
        }
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_methods_parse() {
        assert_eq!("cert".parse(), Ok(AuthMethod::Cert));
        assert_eq!("none".parse(), Ok(AuthMethod::None));
        assert_eq!("kube".parse(), Ok(AuthMethod::Kube));
        assert_eq!(
            "tokens=/etc/tokens.yaml".parse(),
            Ok(AuthMethod::Tokens(PathBuf::from("/etc/tokens.yaml")))
        );
        assert!("tokens=".parse::<AuthMethod>().is_err());
        assert!("jwt".parse::<AuthMethod>().is_err());
        // Made by the server, never asked for.
        assert!("first-run token".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn serving_names_include_istiod_and_the_listener() {
        let mut cfg = ServeConfig::new("x", "y");
        cfg.grpc_addr = "10.1.2.3:15012".parse().unwrap();
        assert_eq!(
            cfg.serving_dns_names(),
            [
                "istiod.istio-system.svc",
                "istiod.istio-system.svc.cluster.local",
                "localhost"
            ]
        );
        assert_eq!(
            cfg.serving_ip_addrs(),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "10.1.2.3".parse().unwrap()
            ]
        );
        cfg.grpc_addr = "0.0.0.0:15012".parse().unwrap();
        assert_eq!(cfg.serving_ip_addrs().len(), 1);
    }

    #[test]
    fn the_config_document_names_the_source() {
        let files = ServeConfig::new("deploy/examples/bookinfo", ".ambientd").to_json();
        assert_eq!(files["configDir"], "deploy/examples/bookinfo");
        assert_eq!(files.get("kube"), None);

        let mut cluster = ServeConfig::new("", ".ambientd");
        cluster.source = ServeSource::Kube(KubeSettings::new("istio-system"));
        let json = cluster.to_json();
        assert_eq!(json.get("configDir"), None);
        assert_eq!(json["kube"]["kubeconfig"], serde_json::Value::Null);
        assert_eq!(json["kube"]["kinds"].as_array().map(Vec::len), Some(10));
        assert_eq!(json["kube"]["statusLease"]["name"], "ambientd-leader");
    }
}
