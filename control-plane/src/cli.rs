//! Command-line flags shared by ambientd's commands, with istiod's defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cluster::KubeSettings;
use crate::runtime::{AuthMethod, ServeConfig, ServeSource};
use ambient_index::{Enrollment, Settings};

/// How pods are judged enrolled in ambient mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnrollmentArg {
    /// Only the `ambient.istio.io/redirection: enabled` annotation istio-cni writes.
    Annotation,
    /// The annotation, or istio-cni's `istio.io/dataplane-mode` label rules (for snapshots with no CNI).
    Labels,
}

/// Mesh settings (istiod's flags and defaults).
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// Cluster ID, the first segment of workload uids.
    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,
    /// Mesh trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// DNS suffix of Service hostnames.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,
    /// Namespace whose selector-less policies apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// Namespace whose `topology.istio.io/network` label names the local network.
    #[arg(long, default_value = "istio-system")]
    pub system_namespace: String,
    /// Enrollment rule [default: labels; annotation with `serve --kube`]. Files have no CNI to annotate
    /// pods, so `labels` is the default there; in a cluster istio-cni writes the annotation.
    #[arg(long, value_enum)]
    pub enrollment: Option<EnrollmentArg>,
    /// Read only AuthorizationPolicies and PeerAuthentications labelled `istio.io/rev` with this value (or
    /// unlabelled); empty reads all.
    #[arg(long, default_value = "")]
    pub revision: String,
}

impl MeshArgs {
    /// The settings, with the `labels` enrollment default of files.
    pub fn settings(&self) -> Settings {
        self.settings_with(EnrollmentArg::Labels)
    }

    /// The settings, with `enrollment` unless `--enrollment` was given.
    pub fn settings_with(&self, enrollment: EnrollmentArg) -> Settings {
        Settings {
            cluster_id: self.cluster_id.clone(),
            trust_domain: self.trust_domain.clone(),
            domain_suffix: self.domain_suffix.clone(),
            root_namespace: self.root_namespace.clone(),
            system_namespace: self.system_namespace.clone(),
            enrollment: match self.enrollment.unwrap_or(enrollment) {
                EnrollmentArg::Annotation => Enrollment::Annotation,
                EnrollmentArg::Labels => Enrollment::Labels,
            },
            revision: self.revision.clone(),
        }
    }
}

/// Where the CA keeps its state and where its signing key comes from.
#[derive(Debug, Clone, Args)]
pub struct CaArgs {
    /// Folder for the self-signed root (created on first start, kept across restarts) and the root bundle
    /// that ztunnels trust (`root-cert.pem`).
    #[arg(long, value_name = "DIR", default_value = "./.ambientd")]
    pub state_dir: PathBuf,
    /// Plug-in CA folder in istiod's `cacerts` layout (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`,
    /// `root-cert.pem`), used instead of the self-signed root.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// Flags of `ambientd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Folder (read recursively) or single file of Kubernetes YAML; followed for changes while serving.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    pub config_dir: Option<PathBuf>,
    /// Read the cluster instead of a folder: watch its Namespaces, Nodes, Pods, Services,
    /// EndpointSlices, Gateway API and Istio security objects, with the in-cluster service account,
    /// `KUBECONFIG` or `--kubeconfig`. Listeners then default to 0.0.0.0.
    #[arg(long)]
    pub kube: bool,
    /// Kubeconfig file for `--kube` (default: `KUBECONFIG`, `~/.kube/config`, then the in-cluster
    /// service account).
    #[arg(long, value_name = "FILE", conflicts_with = "config_dir")]
    pub kubeconfig: Option<PathBuf>,
    /// With `--kube`: write no status conditions (and take no part in the leader election that picks the
    /// replica that writes them).
    #[arg(long, conflicts_with = "config_dir")]
    pub no_status: bool,
    /// Address of the TLS gRPC listener (CA and delta xDS) [default: 127.0.0.1:15012; 0.0.0.0:15012 with
    /// --kube]. Port 0 picks a free port; the bound address is printed at start.
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the plaintext delta xDS listener (istiod's 15010), or `off` [default: 127.0.0.1:15010;
    /// 0.0.0.0:15010 with --kube]. Callers are authenticated as on the TLS port, so only `tokens=FILE`
    /// (or `none`) can admit them here.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_optional_addr)]
    pub xds_plaintext_addr: Option<OptionalAddr>,
    /// Address of the admin HTTP listener (`/ready`, `/metrics`, `/debug/*` for `ambientd zc`), or `off`
    /// [default: 127.0.0.1:15014; 0.0.0.0:15014 with --kube].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_optional_addr)]
    pub admin_addr: Option<OptionalAddr>,
    /// xDS streams end with `Unavailable` after this long (±10 %), so that proxies spread over replicas
    /// again; `0` keeps streams open indefinitely.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30m")]
    pub max_connection_age: Duration,
    /// After SIGTERM or Ctrl-C: how long open calls may take to finish before the server exits anyway.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
    /// DNS names of the serving certificate, besides `istiod.<system-namespace>.svc[.<domain-suffix>]`.
    /// Repeat the flag for several names.
    #[arg(long = "serving-dns", value_name = "NAME", default_value = "localhost")]
    pub serving_dns: Vec<String>,
    /// IP addresses of the serving certificate; the listener's own address is added when it is specific.
    /// Repeat the flag for several addresses.
    #[arg(long = "serving-ip", value_name = "IP", default_value = "127.0.0.1")]
    pub serving_ip: Vec<IpAddr>,
    /// How CSR callers and xDS streams are authenticated: `tokens=FILE` (bearer tokens mapped to service
    /// accounts, YAML or JSON), `cert` (a client certificate from this CA), `kube` (a service account
    /// token, checked with a TokenReview; with --kube), `none` (trust every caller; loopback only).
    /// Repeat the flag for several; they are tried in order [default: a token written at start for the
    /// pod the banner names (`<state-dir>/tokens.yaml`), then cert; cert and kube with --kube].
    #[arg(long = "auth", value_name = "tokens=FILE|cert|kube|none")]
    pub auth: Vec<AuthMethod>,
    /// Service accounts (`namespace/name`, comma-separated) allowed to ask for the identity of a pod on
    /// their own node (ztunnel's impersonation).
    #[arg(
        long,
        value_name = "NS/SA,...",
        value_delimiter = ',',
        value_parser = parse_account,
        default_value = "istio-system/ztunnel"
    )]
    pub trusted_node_accounts: Vec<(String, String)>,
    /// Longest workload certificate lifetime; longer requests are shortened to it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "24h")]
    pub max_workload_cert_ttl: Duration,
    /// Lifetime of the serving certificate (it is renewed before it expires).
    #[arg(long, hide = true, value_parser = humantime::parse_duration, default_value = "24h")]
    pub serving_cert_ttl: Duration,
    /// How often the serving certificate is checked for renewal.
    #[arg(long, hide = true, value_parser = humantime::parse_duration, default_value = "1m")]
    pub serving_renew_interval: Duration,
    #[command(flatten)]
    pub ca: CaArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn config(&self) -> ServeConfig {
        // Files: loopback, for a lab on this machine. A cluster: every interface, as istiod listens.
        let host = if self.kube {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let settings = if self.kube {
            self.mesh.settings_with(EnrollmentArg::Annotation)
        } else {
            self.mesh.settings()
        };
        let source = if self.kube {
            let mut kube = KubeSettings::new(&settings.system_namespace);
            kube.kubeconfig = self.kubeconfig.clone();
            if self.no_status {
                kube.status_lease = None;
            }
            ServeSource::Kube(kube)
        } else {
            ServeSource::Files {
                config_dir: self.config_dir.clone().unwrap_or_default(),
            }
        };
        ServeConfig {
            source,
            settings,
            grpc_addr: self.grpc_addr.unwrap_or(SocketAddr::new(host, 15012)),
            xds_plaintext_addr: self
                .xds_plaintext_addr
                .map_or(Some(SocketAddr::new(host, 15010)), |a| a.0),
            admin_addr: self
                .admin_addr
                .map_or(Some(SocketAddr::new(host, 15014)), |a| a.0),
            max_connection_age: Some(self.max_connection_age).filter(|age| !age.is_zero()),
            shutdown_grace: self.shutdown_grace,
            state_dir: self.ca.state_dir.clone(),
            ca_dir: self.ca.ca_dir.clone(),
            serving_dns: self.serving_dns.clone(),
            serving_ips: self.serving_ip.clone(),
            auth: if !self.auth.is_empty() {
                self.auth.clone()
            } else if self.kube {
                // istiod's order: a client certificate, then a Kubernetes token.
                vec![AuthMethod::Cert, AuthMethod::Kube]
            } else {
                // A token written for the pod the banner names, so that the printed ztunnel command
                // authenticates as printed; then a client certificate.
                vec![AuthMethod::FirstRunToken, AuthMethod::Cert]
            },
            trusted_node_accounts: self.trusted_node_accounts.clone(),
            max_workload_cert_ttl: self.max_workload_cert_ttl,
            serving_cert_ttl: self.serving_cert_ttl,
            serving_renew_interval: self.serving_renew_interval,
        }
    }
}

/// A listener address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

/// Parses a listener address, or `off` for none.
pub fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    s.parse().map(|a| OptionalAddr(Some(a))).map_err(|_| {
        format!("{s:?} is not an address: write IP:PORT (for example 127.0.0.1:15010) or off")
    })
}

/// Parses `namespace/service-account`.
pub fn parse_account(s: &str) -> Result<(String, String), String> {
    match s.trim().split_once('/') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
            Ok((ns.to_string(), sa.to_string()))
        }
        _ => Err(format!(
            "{s:?} is not namespace/service-account (for example istio-system/ztunnel)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn durations_are_numbers_with_units() {
        let given = serve(&[
            "--config-dir",
            "x",
            "--max-connection-age",
            "1h30m",
            "--shutdown-grace",
            "500ms",
            "--max-workload-cert-ttl",
            "2d",
        ])
        .unwrap();
        assert_eq!(given.max_connection_age, Some(Duration::from_secs(5400)));
        assert_eq!(given.shutdown_grace, Duration::from_millis(500));
        assert_eq!(given.max_workload_cert_ttl, Duration::from_secs(172_800));

        let defaults = serve(&["--config-dir", "x"]).unwrap();
        assert_eq!(
            (
                defaults.max_connection_age,
                defaults.shutdown_grace,
                defaults.max_workload_cert_ttl,
                defaults.serving_cert_ttl,
                defaults.serving_renew_interval
            ),
            (
                Some(Duration::from_secs(1800)),
                Duration::from_secs(10),
                Duration::from_secs(86_400),
                Duration::from_secs(86_400),
                Duration::from_secs(60)
            )
        );

        let forever = serve(&["--config-dir", "x", "--max-connection-age", "0"]).unwrap();
        assert_eq!(forever.max_connection_age, None);

        for bad in ["", "h", "10", "10x", "-1s", "99999999999999999999h"] {
            let flag = format!("--shutdown-grace={bad}");
            let err = serve(&["--config-dir", "x", &flag]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn optional_addresses() {
        assert_eq!(parse_optional_addr("off"), Ok(OptionalAddr(None)));
        assert_eq!(
            parse_optional_addr("127.0.0.1:15010"),
            Ok(OptionalAddr(Some("127.0.0.1:15010".parse().unwrap())))
        );
        assert!(parse_optional_addr("15010").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        use clap::Parser as _;
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|s| s.args.config())
    }

    #[test]
    fn files_listen_on_loopback_and_the_cluster_on_every_interface() {
        let files = serve(&["--config-dir", "x"]).unwrap();
        assert_eq!(files.grpc_addr, "127.0.0.1:15012".parse().unwrap());
        assert_eq!(
            files.xds_plaintext_addr,
            Some("127.0.0.1:15010".parse().unwrap())
        );
        assert_eq!(files.admin_addr, Some("127.0.0.1:15014".parse().unwrap()));
        assert_eq!(files.settings.enrollment, Enrollment::Labels);
        assert!(
            matches!(&files.source, ServeSource::Files { config_dir } if config_dir == Path::new("x"))
        );
        assert_eq!(files.auth, [AuthMethod::FirstRunToken, AuthMethod::Cert]);

        let kube = serve(&["--kube"]).unwrap();
        assert_eq!(kube.grpc_addr, "0.0.0.0:15012".parse().unwrap());
        assert_eq!(
            kube.xds_plaintext_addr,
            Some("0.0.0.0:15010".parse().unwrap())
        );
        assert_eq!(kube.admin_addr, Some("0.0.0.0:15014".parse().unwrap()));
        assert_eq!(kube.settings.enrollment, Enrollment::Annotation);
        assert_eq!(kube.auth, [AuthMethod::Cert, AuthMethod::Kube]);
        let ServeSource::Kube(settings) = kube.source else {
            panic!("kube settings");
        };
        assert_eq!(settings.kubeconfig, None);
        let lease = settings
            .status_lease
            .expect("status written by the lease holder");
        assert_eq!(
            (lease.namespace.as_str(), lease.name.as_str()),
            ("istio-system", "ambientd-leader")
        );

        let given = serve(&[
            "--kube",
            "--kubeconfig",
            "/k",
            "--no-status",
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--enrollment",
            "labels",
            "--system-namespace",
            "mesh",
        ])
        .unwrap();
        assert_eq!(given.grpc_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            given.xds_plaintext_addr,
            Some("0.0.0.0:15010".parse().unwrap())
        );
        assert_eq!(given.admin_addr, None);
        assert_eq!(given.settings.enrollment, Enrollment::Labels);
        let ServeSource::Kube(settings) = given.source else {
            panic!("kube settings");
        };
        assert_eq!(settings.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(settings.status_lease, None);
    }

    #[test]
    fn an_explicit_auth_is_kept_exactly() {
        let cert = serve(&["--config-dir", "x", "--auth", "cert"]).unwrap();
        assert_eq!(cert.auth, [AuthMethod::Cert]);
        let given = serve(&[
            "--config-dir",
            "x",
            "--auth",
            "tokens=t.yaml",
            "--auth",
            "none",
        ])
        .unwrap();
        assert_eq!(
            given.auth,
            [
                AuthMethod::Tokens(PathBuf::from("t.yaml")),
                AuthMethod::None
            ]
        );
        let kube = serve(&["--kube", "--auth", "kube"]).unwrap();
        assert_eq!(kube.auth, [AuthMethod::Kube]);
    }

    #[test]
    fn serve_needs_a_folder_or_the_cluster_but_not_both() {
        assert!(serve(&[]).is_err());
        assert!(serve(&["--config-dir", "x", "--kube"]).is_err());
        assert!(serve(&["--config-dir", "x", "--kubeconfig", "/k"]).is_err());
        assert!(serve(&["--config-dir", "x", "--no-status"]).is_err());
        assert!(serve(&["--kubeconfig", "/k"]).is_err());
    }

    #[test]
    fn accounts() {
        assert_eq!(
            parse_account("istio-system/ztunnel"),
            Ok(("istio-system".into(), "ztunnel".into()))
        );
        for bad in ["ztunnel", "/ztunnel", "istio-system/", "a/b/c"] {
            assert!(parse_account(bad).is_err(), "{bad:?}");
        }
    }
}
