//! Fixtures shared by the admin API and `zc` tests: the bookinfo index, a fake connection registry with
//! three proxies (in sync, NACKing, waiting for an ACK), fixed certificates and a fixed clock; and, in
//! [`kube_api`], a fake Kubernetes API server for the tests of everything that talks to a cluster.

#![allow(dead_code)]

pub mod kube_api;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambient_control_plane::admin::api::{CertValidity, CertsDoc};
use ambient_control_plane::connections::{
    ConnectionRegistry, ConnectionSnapshot, NackSnapshot, SyncEntry, TypeSnapshot,
};
use ambient_control_plane::shared_index::SharedIndex;
use ambient_control_plane::source::files::FileSource;
use ambient_control_plane::zc::{DEFAULT_ADMIN, OutputFormat, ZcArgs, ZcCommand};
use ambient_index::{Enrollment, Index, Settings};
use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};

/// The clock of every rendered table: 2025-11-24T16:00:00Z.
pub const NOW_UNIX: u64 = 1_764_000_000;

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

pub fn bookinfo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bookinfo")
}

/// The bookinfo example loaded as `ambientd serve` loads a folder (label enrollment).
pub fn bookinfo_index() -> Arc<SharedIndex> {
    let (_, objects) = FileSource::open(bookinfo_dir()).expect("bookinfo loads");
    let settings = Settings {
        enrollment: Enrollment::Labels,
        ..Settings::default()
    };
    SharedIndex::new(Index::build(settings, objects))
}

/// The resource `zc sync` is asked about.
pub const SYNC_NAME: &str = "backend/details.backend.svc.cluster.local";

/// Three proxies: a ztunnel in sync, a ztunnel whose last Authorization push was NACKed, and a waypoint
/// still waiting to ACK its first Address response.
pub struct FakeRegistry {
    pub connections: Vec<ConnectionSnapshot>,
    /// What each connection holds of [`SYNC_NAME`]: `(sent, acked)`.
    pub holds: Vec<(Option<String>, Option<String>)>,
}

impl FakeRegistry {
    pub fn new(index: &Index) -> FakeRegistry {
        let current = index
            .address(SYNC_NAME)
            .expect("details Service in bookinfo")
            .version_string();
        let ty =
            |type_url: &str, sent: Option<&str>, acked: Option<&str>, pending: u64| TypeSnapshot {
                type_url: type_url.to_string(),
                subscribed: true,
                last_sent_nonce: sent.map(str::to_string),
                last_sent_at: sent.map(|_| NOW_UNIX - 30),
                resources_sent: 34,
                last_acked_nonce: acked.map(str::to_string),
                pending_names: pending,
                last_nack: None,
            };
        let mut nacking = ty(AUTHORIZATION_TYPE_URL, Some("2-2"), Some("2-1"), 0);
        nacking.last_nack = Some(NackSnapshot {
            nonce: "2-2".to_string(),
            message: "rule 0: unknown principal match".to_string(),
            at: NOW_UNIX - 20,
        });
        let connections = vec![
            ConnectionSnapshot {
                id: 1,
                node_id: "ztunnel~10.244.0.5~ztunnel-7xk2p.istio-system~istio-system.svc.cluster.local"
                    .to_string(),
                node_name: Some("kind-control-plane".to_string()),
                proxy_type: "ztunnel".to_string(),
                peer_addr: "127.0.0.1:40112".to_string(),
                connected_since: NOW_UNIX - 3725,
                types: vec![
                    ty(ADDRESS_TYPE_URL, Some("1-4"), Some("1-4"), 0),
                    ty(AUTHORIZATION_TYPE_URL, Some("1-5"), Some("1-5"), 0),
                ],
            },
            ConnectionSnapshot {
                id: 2,
                node_id: "ztunnel~10.244.1.5~ztunnel-q9d4m.istio-system~istio-system.svc.cluster.local"
                    .to_string(),
                node_name: Some("kind-worker".to_string()),
                proxy_type: "ztunnel".to_string(),
                peer_addr: "127.0.0.1:40118".to_string(),
                connected_since: NOW_UNIX - 600,
                types: vec![ty(ADDRESS_TYPE_URL, Some("2-1"), Some("2-1"), 0), nacking],
            },
            ConnectionSnapshot {
                id: 3,
                node_id: "waypoint~10.244.0.30~waypoint-6c9f8b7d5-abcde.backend~backend.svc.cluster.local"
                    .to_string(),
                node_name: Some("kind-control-plane".to_string()),
                proxy_type: "waypoint".to_string(),
                peer_addr: "127.0.0.1:40120".to_string(),
                connected_since: NOW_UNIX - 45,
                types: vec![ty(ADDRESS_TYPE_URL, Some("3-1"), None, 2)],
            },
        ];
        FakeRegistry {
            connections,
            holds: vec![
                (Some(current.clone()), Some(current.clone())),
                (
                    Some("00000000000000aa".to_string()),
                    Some("00000000000000aa".to_string()),
                ),
                (Some(current), None),
            ],
        }
    }
}

impl ConnectionRegistry for FakeRegistry {
    fn connections(&self) -> Vec<ConnectionSnapshot> {
        self.connections.clone()
    }

    fn sync(&self, type_url: &str, name: &str) -> Vec<SyncEntry> {
        self.connections
            .iter()
            .zip(&self.holds)
            .map(|(c, (sent, acked))| {
                let mine = name == SYNC_NAME;
                SyncEntry {
                    connection_id: c.id,
                    node_id: c.node_id.clone(),
                    proxy_type: c.proxy_type.clone(),
                    subscribed: c
                        .types
                        .iter()
                        .any(|t| t.type_url == type_url && t.subscribed),
                    sent_version: sent.clone().filter(|_| mine),
                    acked_version: acked.clone().filter(|_| mine),
                }
            })
            .collect()
    }
}

/// Certificates as a server whose serving certificate expires 2025-11-25T12:00:00Z would show them.
pub fn fake_certs() -> CertsDoc {
    CertsDoc {
        root: Some(CertValidity {
            not_after: "2035-11-23T12:00:00Z".to_string(),
            not_after_unix: 2_079_432_000,
            names: vec!["O=cluster.local, CN=ambientd root CA".to_string()],
        }),
        signing: Some(CertValidity {
            not_after: "2035-11-23T12:00:00Z".to_string(),
            not_after_unix: 2_079_432_000,
            names: Vec::new(),
        }),
        serving: Some(CertValidity {
            not_after: "2025-11-25T12:00:00Z".to_string(),
            not_after_unix: 1_764_072_000,
            names: vec![
                "istiod.istio-system.svc".to_string(),
                "istiod.istio-system.svc.cluster.local".to_string(),
                "localhost".to_string(),
            ],
        }),
        issued: 12,
        refused: [
            ("authentication_failed".to_string(), 0),
            ("identity_mismatch".to_string(), 0),
            ("impersonation_denied".to_string(), 0),
            ("invalid_csr".to_string(), 1),
            ("signing_failed".to_string(), 0),
            ("unauthenticated".to_string(), 2),
            ("wrong_trust_domain".to_string(), 0),
        ]
        .into_iter()
        .collect(),
    }
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/zc")
}

pub fn zc_args(command: ZcCommand, output: OutputFormat, namespace: Option<&str>) -> ZcArgs {
    ZcArgs {
        command,
        admin: DEFAULT_ADMIN.to_string(),
        namespace: namespace.map(str::to_string),
        node: None,
        output,
    }
}

pub fn sync_command() -> ZcCommand {
    ZcCommand::Sync {
        name: SYNC_NAME.to_string(),
        type_: None,
    }
}

/// Every golden case of `tests/golden/zc`: the file and the command line whose output it holds.
pub fn cases() -> Vec<(&'static str, ZcArgs)> {
    use OutputFormat::*;
    let args = zc_args;
    vec![
        ("workloads.txt", args(ZcCommand::Workloads, Table, None)),
        (
            "workloads-backend.txt",
            args(ZcCommand::Workloads, Table, Some("backend")),
        ),
        ("services.txt", args(ZcCommand::Services, Table, None)),
        ("policies.txt", args(ZcCommand::Policies, Table, None)),
        ("waypoints.txt", args(ZcCommand::Waypoints, Table, None)),
        ("connections.txt", args(ZcCommand::Connections, Table, None)),
        ("certs.txt", args(ZcCommand::Certs, Table, None)),
        ("sync.txt", args(sync_command(), Table, None)),
        ("sync.json", args(sync_command(), Json, None)),
        ("certs.yaml", args(ZcCommand::Certs, Yaml, None)),
        (
            "services-empty.txt",
            args(ZcCommand::Services, Table, Some("nowhere")),
        ),
    ]
}
