//! The open streams, for the admin API: each stream's [`StreamState`] — the planner's own state, not a
//! copy — read on demand by `/debug/connections` and `/debug/sync`.
//!
//! A stream does not remember each name and version it sent, so "has this proxy got the current version
//! of X?" is answered with generations: every response covers the index's change reports up to some
//! generation; X got its current content at generation `g` ([`ambient_index::Table::generation_of`]); a
//! proxy whose last ACKed response covers `g` holds X's current version, unless it NACKed X since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ambient_index::TableId;
use dashmap::DashMap;

use super::delta::{StreamState, Subscription};
use super::types::Tables;
use crate::connections::{
    ConnectionRegistry, ConnectionSnapshot, NackSnapshot, SyncEntry, TypeSnapshot,
};
use crate::shared_index::SharedIndex;

/// The open streams of one xDS server, for the admin API.
#[derive(Debug)]
pub struct XdsRegistry {
    index: Arc<SharedIndex>,
    streams: DashMap<u64, Arc<Mutex<StreamState>>>,
}

impl XdsRegistry {
    pub(super) fn new(index: Arc<SharedIndex>) -> XdsRegistry {
        XdsRegistry {
            index,
            streams: DashMap::new(),
        }
    }

    pub(super) fn insert(&self, id: u64, state: Arc<Mutex<StreamState>>) {
        self.streams.insert(id, state);
    }

    pub(super) fn remove(&self, id: u64) {
        self.streams.remove(&id);
    }

    /// Open streams that have identified themselves.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Reads every stream's state in id order (each locked briefly, never together with the index).
    fn each<T>(&self, mut read: impl FnMut(&StreamState) -> T) -> Vec<T> {
        let mut all: Vec<(u64, T)> = self
            .streams
            .iter()
            .map(|e| {
                // Display only: a state whose task panicked is shown as it was left.
                let state = e.value().lock().unwrap_or_else(PoisonError::into_inner);
                (*e.key(), read(&state))
            })
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, t)| t).collect()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn type_snapshot(s: &Subscription) -> TypeSnapshot {
    let r = &s.report;
    TypeSnapshot {
        type_url: s.kind.type_url.to_string(),
        subscribed: s.subscribed,
        last_sent_nonce: r.last_sent_nonce.clone(),
        last_sent_at: r.last_sent_at.map(unix_secs),
        resources_sent: r.resources_sent,
        last_acked_nonce: r.last_acked_nonce.clone(),
        pending_names: s.pending_names() as u64,
        last_nack: r.last_nack.as_ref().map(|n| NackSnapshot {
            nonce: n.nonce.clone(),
            message: n.message.clone(),
            at: unix_secs(n.at),
        }),
    }
}

/// A table as one subscription reads it: which table, for which scope.
type TableKey = (TableId, Option<Arc<str>>);

/// What one stream holds of one resource, before the index is asked what is current.
struct Held {
    connection_id: u64,
    node_id: String,
    proxy_type: String,
    /// `(table, scope)` of the subscription, when the stream is served the type.
    table: Option<TableKey>,
    subscribed: bool,
    sent_generation: Option<u64>,
    acked_generation: Option<u64>,
    nacked: bool,
}

impl ConnectionRegistry for XdsRegistry {
    fn connections(&self) -> Vec<ConnectionSnapshot> {
        self.each(|s| ConnectionSnapshot {
            id: s.id,
            node_id: s.peer.node.clone(),
            node_name: s.peer.node_name.clone(),
            proxy_type: s.peer.proxy_type.clone(),
            peer_addr: s.peer_addr.clone(),
            connected_since: unix_secs(s.connected_since),
            types: s.subscriptions.iter().map(type_snapshot).collect(),
        })
    }

    fn sync(&self, type_url: &str, name: &str) -> Vec<SyncEntry> {
        let held = self.each(|s| {
            let sub = s.subscription(type_url);
            Held {
                connection_id: s.id,
                node_id: s.peer.node.clone(),
                proxy_type: s.peer.proxy_type.clone(),
                table: sub.map(|sub| (sub.kind.table, sub.scope.clone())),
                subscribed: sub.is_some_and(|sub| sub.subscribed),
                sent_generation: sub.and_then(|sub| sub.report.sent_generation),
                acked_generation: sub.and_then(|sub| sub.report.acked_generation),
                nacked: sub.is_some_and(|sub| sub.report.nacked.contains(name)),
            }
        });
        // The current generation and version of `name` in each table read, with no stream locked.
        let mut current: HashMap<TableKey, Option<(u64, String)>> = HashMap::new();
        if let Ok(index) = self.index.read() {
            for h in &held {
                if let Some(key) = &h.table {
                    current.entry(key.clone()).or_insert_with(|| {
                        let table = index.lookup(key.0, key.1.as_deref())?;
                        let generation = table.generation_of(name)?;
                        Some((generation, table.get(name)?.version_string()))
                    });
                }
            }
        }
        held.into_iter()
            .map(|h| {
                let now = h
                    .table
                    .as_ref()
                    .and_then(|k| current.get(k).cloned().flatten());
                let holds = |covered: Option<u64>| match (&now, covered) {
                    (Some((generation, version)), Some(covered))
                        if covered >= *generation && !h.nacked =>
                    {
                        Some(version.clone())
                    }
                    _ => None,
                };
                SyncEntry {
                    connection_id: h.connection_id,
                    node_id: h.node_id,
                    proxy_type: h.proxy_type,
                    subscribed: h.subscribed,
                    sent_version: holds(h.sent_generation),
                    acked_version: holds(h.acked_generation),
                }
            })
            .collect()
    }
}
