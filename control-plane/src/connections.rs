//! What the xDS server tells its readers (the admin API, `zc`) about connected proxies: plain data,
//! shared by both sides so that neither depends on the other.

use serde::{Deserialize, Serialize};

/// One connected proxy, as the xDS server sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSnapshot {
    /// The server's id of the stream (unique while the process runs).
    pub id: u64,
    /// The node id the proxy sent (`type~ip~pod.namespace~domain`).
    pub node_id: String,
    /// The Kubernetes node the proxy runs on, when its metadata says (`NODE_NAME`).
    #[serde(default)]
    pub node_name: Option<String>,
    /// `ztunnel`, `waypoint`, or what the node id says.
    pub proxy_type: String,
    /// The peer's address, as text.
    pub peer_addr: String,
    /// When the stream opened, in seconds since the Unix epoch.
    pub connected_since: u64,
    /// One entry per resource type the proxy subscribed to.
    pub types: Vec<TypeSnapshot>,
}

/// A connection's state for one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeSnapshot {
    pub type_url: String,
    /// Whether the proxy is subscribed (wildcard or by name).
    pub subscribed: bool,
    /// The nonce of the last response sent, if any.
    pub last_sent_nonce: Option<String>,
    /// When it was sent, in seconds since the Unix epoch.
    pub last_sent_at: Option<u64>,
    /// Resources sent on this stream so far (every response, not only the last).
    pub resources_sent: u64,
    /// The nonce of the last response the proxy ACKed.
    pub last_acked_nonce: Option<String>,
    /// Names changed in the index and not yet sent (waiting for the outstanding response's answer).
    pub pending_names: u64,
    /// The last NACK, if any.
    pub last_nack: Option<NackSnapshot>,
}

/// A NACK: the response it answered and the proxy's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NackSnapshot {
    pub nonce: String,
    pub message: String,
    /// When it arrived, in seconds since the Unix epoch.
    pub at: u64,
}

/// What one connection holds of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncEntry {
    pub connection_id: u64,
    pub node_id: String,
    pub proxy_type: String,
    /// Whether the connection subscribes to the type (and, for a named subscription, to the name).
    pub subscribed: bool,
    /// The resource's current version (16 hex digits) when it has been sent to this proxy; `None` when
    /// the proxy was not sent it yet (it holds an older version, or none), or rejected it.
    pub sent_version: Option<String>,
    /// The current version when the proxy has also ACKed it; `None` otherwise. (Streams keep no copy of
    /// every version sent: what a proxy holds is known by the index generation its ACKs cover.)
    pub acked_version: Option<String>,
}

/// What the xDS server tells the admin server about its connections. Both calls are made from a blocking
/// thread and may take locks, but should not wait on connection tasks.
pub trait ConnectionRegistry: Send + Sync + 'static {
    /// Every open connection.
    fn connections(&self) -> Vec<ConnectionSnapshot>;
    /// For every open connection subscribed to `type_url`, what it holds of resource `name`.
    fn sync(&self, type_url: &str, name: &str) -> Vec<SyncEntry>;
}

/// The registry of a server without xDS: no connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConnections;

impl ConnectionRegistry for NoConnections {
    fn connections(&self) -> Vec<ConnectionSnapshot> {
        Vec::new()
    }

    fn sync(&self, _type_url: &str, _name: &str) -> Vec<SyncEntry> {
        Vec::new()
    }
}
