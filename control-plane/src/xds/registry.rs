//! What the admin API sees of the xDS connections: one small status record per open stream, updated by
//! the stream's own task at each push, ACK and NACK, and read on demand by `/debug/connections` and
//! `/debug/sync`.
//!
//! A stream does not remember each name and version it sent (see the connection module), so "has this
//! proxy got the current version of X?" is answered with generations: every response covers the index's
//! change reports up to some generation; X got its current content at generation `g`
//! ([`Index::address_generation`]); a proxy whose last ACKed response covers `g` holds X's current version,
//! unless it NACKed X since.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use dashmap::DashMap;

use super::XdsType;
use crate::connections::{
    ConnectionRegistry, ConnectionSnapshot, NackSnapshot, SyncEntry, TypeSnapshot,
};
use crate::shared_index::SharedIndex;

/// One type's status on one stream.
#[derive(Debug, Default, Clone)]
pub(super) struct TypeStatus {
    pub(super) subscribed: bool,
    pub(super) last_sent_nonce: Option<String>,
    pub(super) last_sent_at: Option<SystemTime>,
    pub(super) resources_sent: u64,
    pub(super) last_acked_nonce: Option<String>,
    pub(super) pending_names: u64,
    pub(super) last_nack: Option<(String, String, SystemTime)>,
    /// Every change report up to this generation has been sent.
    pub(super) sent_generation: Option<u64>,
    /// ... and ACKed (or NACKed: the valid resources of a NACKed response are applied).
    pub(super) acked_generation: Option<u64>,
    /// Names the proxy rejected and has not been sent again since.
    pub(super) nacked: BTreeSet<Arc<str>>,
}

/// One stream's status.
#[derive(Debug, Clone)]
pub(super) struct Status {
    pub(super) node_id: String,
    pub(super) node_name: Option<String>,
    pub(super) proxy_type: String,
    pub(super) peer_addr: String,
    pub(super) connected_since: SystemTime,
    pub(super) authorization: TypeStatus,
    pub(super) address: TypeStatus,
}

impl Status {
    pub(super) fn of(&mut self, kind: XdsType) -> &mut TypeStatus {
        match kind {
            XdsType::Address => &mut self.address,
            XdsType::Authorization => &mut self.authorization,
        }
    }

    pub(super) fn get(&self, kind: XdsType) -> &TypeStatus {
        match kind {
            XdsType::Address => &self.address,
            XdsType::Authorization => &self.authorization,
        }
    }
}

/// The open streams of one xDS server, for the admin API.
#[derive(Debug)]
pub struct XdsRegistry {
    index: Arc<SharedIndex>,
    streams: DashMap<u64, Arc<Mutex<Status>>>,
}

impl XdsRegistry {
    pub(super) fn new(index: Arc<SharedIndex>) -> XdsRegistry {
        XdsRegistry {
            index,
            streams: DashMap::new(),
        }
    }

    pub(super) fn insert(&self, id: u64, status: Status) -> Arc<Mutex<Status>> {
        let status = Arc::new(Mutex::new(status));
        self.streams.insert(id, Arc::clone(&status));
        status
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

    fn statuses(&self) -> Vec<(u64, Status)> {
        let mut all: Vec<(u64, Status)> = self
            .streams
            .iter()
            .map(|e| {
                let status = e.value().lock().unwrap_or_else(PoisonError::into_inner);
                (*e.key(), status.clone())
            })
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ConnectionRegistry for XdsRegistry {
    fn connections(&self) -> Vec<ConnectionSnapshot> {
        self.statuses()
            .into_iter()
            .map(|(id, s)| ConnectionSnapshot {
                id,
                node_id: s.node_id.clone(),
                node_name: s.node_name.clone(),
                proxy_type: s.proxy_type.clone(),
                peer_addr: s.peer_addr.clone(),
                connected_since: unix_secs(s.connected_since),
                types: [XdsType::Address, XdsType::Authorization]
                    .into_iter()
                    .map(|kind| {
                        let t = s.get(kind);
                        TypeSnapshot {
                            type_url: kind.type_url().to_string(),
                            subscribed: t.subscribed,
                            last_sent_nonce: t.last_sent_nonce.clone(),
                            last_sent_at: t.last_sent_at.map(unix_secs),
                            resources_sent: t.resources_sent,
                            last_acked_nonce: t.last_acked_nonce.clone(),
                            pending_names: t.pending_names,
                            last_nack: t.last_nack.as_ref().map(|(nonce, message, at)| {
                                NackSnapshot {
                                    nonce: nonce.clone(),
                                    message: message.clone(),
                                    at: unix_secs(*at),
                                }
                            }),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    fn sync(&self, type_url: &str, name: &str) -> Vec<SyncEntry> {
        let Some(kind) = XdsType::from_type_url(type_url) else {
            return Vec::new();
        };
        let current = {
            let Ok(index) = self.index.read() else {
                return Vec::new();
            };
            let (generation, resource) = match kind {
                XdsType::Address => (index.address_generation(name), index.address(name)),
                XdsType::Authorization => (
                    index.authorization_generation(name),
                    index.authorization(name),
                ),
            };
            generation.zip(resource.map(|r| r.version_string()))
        };
        self.statuses()
            .into_iter()
            .map(|(id, s)| {
                let t = s.get(kind);
                let holds = |covered: Option<u64>| match (&current, covered) {
                    (Some((generation, version)), Some(covered))
                        if covered >= *generation && !t.nacked.contains(name) =>
                    {
                        Some(version.clone())
                    }
                    _ => None,
                };
                SyncEntry {
                    connection_id: id,
                    node_id: s.node_id.clone(),
                    proxy_type: s.proxy_type.clone(),
                    subscribed: t.subscribed,
                    sent_version: holds(t.sent_generation),
                    acked_version: holds(t.acked_generation),
                }
            })
            .collect()
    }
}
