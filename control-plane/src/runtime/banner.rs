//! What `ambientd serve` prints at start: where it listens, the root bundle, the CA, how callers
//! authenticate, the source, and, in file mode, the environment that points a stock ztunnel at it.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::SystemTime;

use ambient_ca::rfc3339::Rfc3339;

use super::config::{AuthMethod, ServeConfig, ServeSource};
use super::tokens::TokenExample;

/// Everything the banner shows that the configuration alone does not say.
#[derive(Debug)]
pub struct Banner<'a> {
    pub config: &'a ServeConfig,
    pub grpc_addr: SocketAddr,
    pub xds_plaintext_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub root_bundle: &'a Path,
    pub trust_domain: &'a str,
    pub serving_not_after: SystemTime,
    /// The API server's URL, with the Kubernetes source.
    pub kube_url: Option<&'a str>,
    /// Addresses and authorizations in the index, with the file source.
    pub resources: Option<(usize, usize)>,
    /// The token the ztunnel command uses, if any.
    pub example_token: Option<&'a TokenExample>,
    /// Whether that token was made at this start.
    pub first_run: bool,
    /// `namespace/pod/service-account` of a pod of the config, for a command without a token.
    pub example_workload: String,
}

impl Banner<'_> {
    pub fn render(&self) -> String {
        let cfg = self.config;
        let mut out = String::new();
        let _ = writeln!(out, "ambientd serve: certificate authority and xDS ready");
        let _ = writeln!(
            out,
            "  grpc:          {} (TLS 1.3, HTTP/2; istio.v1.auth.IstioCertificateService, delta ADS)",
            self.grpc_addr
        );
        if let Some(addr) = self.xds_plaintext_addr {
            let _ = writeln!(
                out,
                "  xds plaintext: {addr} (delta ADS without TLS; callers still authenticate)"
            );
        }
        if let Some(addr) = self.admin_addr {
            let _ = writeln!(
                out,
                "  admin:         http://{addr} (/ready, /metrics, /debug/*; `ambientd zc --admin http://{addr}`)"
            );
        }
        let _ = writeln!(out, "  root bundle:   {}", self.root_bundle.display());
        let ca = match &cfg.ca_dir {
            Some(dir) => format!("plug-in CA from {}", dir.display()),
            None => format!("self-signed root in {}", cfg.state_dir.display()),
        };
        let _ = writeln!(
            out,
            "  CA:            {ca}, trust domain {}",
            self.trust_domain
        );
        let ips: Vec<String> = cfg
            .serving_ip_addrs()
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        let _ = writeln!(
            out,
            "  serving cert:  DNS {}; IP {}; valid until {}, renewed before expiry",
            cfg.serving_dns_names().join(", "),
            if ips.is_empty() {
                "none".to_string()
            } else {
                ips.join(", ")
            },
            Rfc3339(self.serving_not_after)
        );
        let auth: Vec<String> = cfg.auth.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "  auth:          {}", auth.join(", "));
        if let (true, Some(token)) = (self.first_run, self.example_token) {
            let _ = writeln!(
                out,
                "                 (no --auth given: a token for {} was written for the command below; \
                 --auth chooses otherwise)",
                token.workload_info
            );
        }
        let accounts: Vec<String> = cfg
            .trusted_node_accounts
            .iter()
            .map(|(ns, sa)| format!("{ns}/{sa}"))
            .collect();
        let _ = writeln!(
            out,
            "  node accounts: {}",
            if accounts.is_empty() {
                "none (no impersonation)".to_string()
            } else {
                accounts.join(", ")
            }
        );
        match &cfg.source {
            ServeSource::Kube(kube) => {
                let url = self.kube_url.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  source:        Kubernetes API {url} ({} kinds watched; gRPC and /ready once all are listed)",
                    kube.source.kinds.len()
                );
                let status = match &kube.status_lease {
                    Some(lease) => format!(
                        "written by the holder of Lease {}/{} (this replica: {})",
                        lease.namespace, lease.name, lease.identity
                    ),
                    None => "not written".to_string(),
                };
                let _ = writeln!(out, "  status:        {status}");
            }
            ServeSource::Files { config_dir } => {
                if let Some((addresses, authorizations)) = self.resources {
                    let _ = writeln!(
                        out,
                        "  config:        {} (addresses: {addresses}, authorizations: {authorizations}; followed for changes)",
                        config_dir.display(),
                    );
                }
            }
        }
        if cfg.auth.contains(&AuthMethod::None) {
            let _ = writeln!(
                out,
                "  warning:       --auth none: any local process can get a certificate for any identity"
            );
        }
        if let ServeSource::Kube(_) = cfg.source {
            let ns = &cfg.settings.system_namespace;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "In the cluster, ztunnels reach it as istiod.{ns}.svc:{} when the istiod Service selects it.",
                self.grpc_addr.port()
            );
            return out;
        }

        let url = format!("https://{}", ztunnel_authority(self.grpc_addr));
        let root = self.root_bundle.display();
        let workload = match self.example_token {
            Some(t) => t.workload_info.clone(),
            None => self.example_workload.clone(),
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Point a ztunnel at it (dedicated mode; run from an empty directory):"
        );
        if self.example_token.is_none() && !cfg.auth.contains(&AuthMethod::None) {
            let _ = writeln!(
                out,
                "(it needs a way to authenticate: start with --auth tokens=FILE holding a token for \
                 {workload}, and this command gets its AUTH_TOKEN)"
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  env -u KUBERNETES_SERVICE_HOST \\");
        let _ = writeln!(out, "    PROXY_MODE=dedicated \\");
        let _ = writeln!(out, "    PROXY_WORKLOAD_INFO={workload} \\");
        let _ = writeln!(out, "    XDS_ADDRESS={url} \\");
        let _ = writeln!(out, "    CA_ADDRESS={url} \\");
        let _ = writeln!(out, "    XDS_ROOT_CA={root} \\");
        let _ = writeln!(out, "    CA_ROOT_CA={root} \\");
        if let Some(t) = self.example_token {
            let _ = writeln!(out, "    AUTH_TOKEN={} \\", t.file.display());
        }
        let _ = writeln!(out, "    CLUSTER_ID={} \\", cfg.settings.cluster_id);
        let _ = writeln!(out, "    IPV6_ENABLED=false \\");
        let _ = writeln!(out, "    ztunnel proxy");
        out
    }
}

/// `host:port` a local ztunnel dials: the listener's IP, or loopback for a wildcard listener.
fn ztunnel_authority(grpc_addr: SocketAddr) -> String {
    let ip = match grpc_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, grpc_addr.port()).to_string()
}
