//! Who one simulated ztunnel is ([`ZtunnelConfig`]: its node and metadata), its test hooks
//! ([`Faults`]), the connected / synced counts of a fleet ([`FleetCounters`]), and a snapshot of one
//! client ([`ClientStatus`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use tokio::sync::watch;

/// Who one simulated ztunnel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZtunnelConfig {
    /// Index in the fleet; observers get it with every event.
    pub index: usize,
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE` (node metadata `NAMESPACE`).
    pub namespace: String,
    /// `INSTANCE_IP`.
    pub instance_ip: String,
    /// `NODE_NAME`.
    pub node_name: String,
    /// `CLUSTER_ID`: node metadata and the `clusterid` header.
    pub cluster_id: String,
    /// `AUTH_TOKEN`: with it, `authorization: Bearer …` and `clusterid` on every call.
    pub token: Option<String>,
    /// More node metadata (`ISTIO_META_*` without the prefix).
    pub metadata: BTreeMap<String, String>,
    /// Fetch certificates for the HBONE workloads on `node_name`, as shared mode does.
    pub certificates: bool,
}

impl ZtunnelConfig {
    /// `ztunnel-NNNNN` in `istio-system` on `node`, `10.255.x.y`, cluster `Kubernetes`, no token.
    pub fn new(index: usize, node: impl Into<String>) -> ZtunnelConfig {
        ZtunnelConfig {
            index,
            pod_name: format!("ztunnel-{index:05}"),
            namespace: "istio-system".to_string(),
            instance_ip: format!("10.255.{}.{}", (index / 250) % 256, index % 250 + 1),
            node_name: node.into(),
            cluster_id: "Kubernetes".to_string(),
            token: None,
            metadata: BTreeMap::new(),
            certificates: false,
        }
    }

    /// `ztunnel~{ip}~{pod}.{ns}~{ns}.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "ztunnel~{}~{}.{}~{}.svc.cluster.local",
            self.instance_ip, self.pod_name, self.namespace, self.namespace
        )
    }

    /// The node of every initial request: id, and metadata NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME,
    /// CLUSTER_ID and the extra metadata, all strings; `cluster` and `build_version` empty.
    pub fn node(&self) -> Node {
        let mut fields: BTreeMap<String, String> = BTreeMap::from([
            ("NAME".to_string(), self.pod_name.clone()),
            ("NAMESPACE".to_string(), self.namespace.clone()),
            ("INSTANCE_IPS".to_string(), self.instance_ip.clone()),
            ("NODE_NAME".to_string(), self.node_name.clone()),
            ("CLUSTER_ID".to_string(), self.cluster_id.clone()),
        ]);
        for (k, v) in &self.metadata {
            fields.insert(k.clone(), v.clone());
        }
        Node {
            id: self.node_id(),
            metadata: Some(Struct {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            Value {
                                kind: Some(Kind::StringValue(v)),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }
}

/// Test hooks of one client.
#[derive(Debug)]
pub struct Faults {
    pub(super) nack: RwLock<HashSet<String>>,
    pub(super) nack_any: AtomicBool,
    pub(super) reading: watch::Sender<bool>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            nack: RwLock::new(HashSet::new()),
            nack_any: AtomicBool::new(false),
            reading: watch::channel(true).0,
        }
    }
}

impl Faults {
    /// Rejects these names (of either type) whenever they arrive, with
    /// [`crate::state::FAULT_MESSAGE`].
    pub fn nack_names<S: Into<String>>(&self, names: impl IntoIterator<Item = S>) {
        let mut set = self.nack.write().unwrap_or_else(PoisonError::into_inner);
        set.extend(names.into_iter().map(Into::into));
        self.nack_any.store(!set.is_empty(), Ordering::Release);
    }

    pub fn clear_nacks(&self) {
        self.nack
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.nack_any.store(false, Ordering::Release);
    }

    /// Stops reading the response stream (the server's writes back up), until resumed.
    pub fn stop_reading(&self) {
        self.reading.send_replace(false);
    }

    pub fn resume_reading(&self) {
        self.reading.send_replace(true);
    }
}

/// Connected / synced counts shared by the clients of a fleet.
#[derive(Debug)]
pub struct FleetCounters {
    pub(crate) connected: AtomicUsize,
    pub(crate) synced: AtomicUsize,
    pub(crate) changed: watch::Sender<u64>,
}

impl Default for FleetCounters {
    fn default() -> Self {
        FleetCounters {
            connected: AtomicUsize::new(0),
            synced: AtomicUsize::new(0),
            changed: watch::channel(0).0,
        }
    }
}

impl FleetCounters {
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    pub fn synced(&self) -> usize {
        self.synced.load(Ordering::Acquire)
    }

    /// Ticks whenever a count changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(super) fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// A snapshot of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    pub index: usize,
    pub connected: bool,
    pub synced: bool,
    /// Streams opened or attempted.
    pub streams: u64,
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
    pub last_error: Option<String>,
    pub last_nack: Option<String>,
    /// Names held per type.
    pub addresses: usize,
    pub authorizations: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_and_metadata_are_ztunnels() {
        let mut cfg = ZtunnelConfig::new(7, "node-0003");
        cfg.pod_name = "ztunnel-abcde".into();
        cfg.instance_ip = "10.244.1.7".into();
        cfg.metadata.insert("DNS_CAPTURE".into(), "true".into());
        let node = cfg.node();
        assert_eq!(
            node.id,
            "ztunnel~10.244.1.7~ztunnel-abcde.istio-system~istio-system.svc.cluster.local"
        );
        assert!(node.cluster.is_empty());
        assert!(node.user_agent_name.is_empty());
        let fields: BTreeMap<String, Option<Kind>> = node
            .metadata
            .expect("metadata")
            .fields
            .into_iter()
            .map(|(k, v)| (k, v.kind))
            .collect();
        let s = |v: &str| Some(Kind::StringValue(v.to_string()));
        assert_eq!(
            fields,
            BTreeMap::from([
                ("CLUSTER_ID".to_string(), s("Kubernetes")),
                ("DNS_CAPTURE".to_string(), s("true")),
                ("INSTANCE_IPS".to_string(), s("10.244.1.7")),
                ("NAME".to_string(), s("ztunnel-abcde")),
                ("NAMESPACE".to_string(), s("istio-system")),
                ("NODE_NAME".to_string(), s("node-0003")),
            ])
        );
    }

    #[test]
    fn defaults_are_distinct_per_index() {
        let a = ZtunnelConfig::new(0, "n");
        let b = ZtunnelConfig::new(251, "n");
        assert_eq!(a.pod_name, "ztunnel-00000");
        assert_eq!(a.instance_ip, "10.255.0.1");
        assert_eq!(b.instance_ip, "10.255.1.2");
        assert_eq!(a.token, None);
    }

    #[test]
    fn fault_hooks_toggle() {
        let f = Faults::default();
        assert!(!f.nack_any.load(Ordering::Relaxed));
        f.nack_names(["a", "b"]);
        assert!(f.nack_any.load(Ordering::Relaxed));
        f.clear_nacks();
        assert!(!f.nack_any.load(Ordering::Relaxed));
        assert!(*f.reading.borrow());
        f.stop_reading();
        assert!(!*f.reading.borrow());
        f.resume_reading();
        assert!(*f.reading.borrow());
    }
}
