//! One delta ADS stream: the node it belongs to, what it was sent, and what it still has to be sent.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ambient_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as XdsResource,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{broadcast, mpsc};
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use super::Shared;
use crate::index::{Changes, Index, NameChanges, Resource};

/// The two types served, in the order ztunnel subscribes to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XdsType {
    Address,
    Authorization,
}

impl XdsType {
    const ALL: [XdsType; 2] = [XdsType::Address, XdsType::Authorization];

    fn from_type_url(type_url: &str) -> Option<XdsType> {
        match type_url {
            ADDRESS_TYPE_URL => Some(XdsType::Address),
            AUTHORIZATION_TYPE_URL => Some(XdsType::Authorization),
            _ => None,
        }
    }

    fn type_url(self) -> &'static str {
        match self {
            XdsType::Address => ADDRESS_TYPE_URL,
            XdsType::Authorization => AUTHORIZATION_TYPE_URL,
        }
    }

    fn resources(self, index: &Index) -> &HashMap<Arc<str>, Resource> {
        match self {
            XdsType::Address => index.addresses(),
            XdsType::Authorization => index.authorizations(),
        }
    }

    fn changes(self, changes: &Changes) -> &NameChanges {
        match self {
            XdsType::Address => &changes.addresses,
            XdsType::Authorization => &changes.authorizations,
        }
    }
}

/// What one connection knows about one type.
#[derive(Debug, Default)]
struct TypeState {
    /// The client subscribed (its initial request for this type arrived).
    subscribed: bool,
    /// Names the client holds, with the version it holds (`None`: a version we cannot compare).
    sent: HashMap<Arc<str>, Option<u64>>,
    /// Names to compare against `sent` before the next response.
    dirty: BTreeSet<Arc<str>>,
    /// Compare every name (index and `sent`), not only `dirty`.
    all_dirty: bool,
    /// Send a response even if it is empty (the answer to an initial request).
    force: bool,
    /// The nonce of the response still waiting for its ACK or NACK.
    pending: Option<String>,
}

impl TypeState {
    fn wants_send(&self) -> bool {
        self.subscribed
            && self.pending.is_none()
            && (self.force || self.all_dirty || !self.dirty.is_empty())
    }
}

pub(super) struct Connection {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    changes: broadcast::Receiver<Arc<Changes>>,
    node: Option<String>,
    nonces: u64,
    address: TypeState,
    authorization: TypeState,
}

/// How the stream ended.
enum End {
    /// The client closed its side or went away.
    Client,
    /// The server is shutting down.
    Shutdown,
}

impl Connection {
    /// Subscribes to changes now, before anything is read from the index, so none can be missed.
    pub(super) fn new(
        id: u64,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    ) -> Connection {
        let changes = shared.changes.subscribe();
        Connection {
            id,
            shared,
            tx,
            changes,
            node: None,
            nonces: 0,
            address: TypeState::default(),
            authorization: TypeState::default(),
        }
    }

    fn state(&mut self, kind: XdsType) -> &mut TypeState {
        match kind {
            XdsType::Address => &mut self.address,
            XdsType::Authorization => &mut self.authorization,
        }
    }

    fn node(&self) -> &str {
        self.node.as_deref().unwrap_or("<unknown>")
    }

    pub(super) async fn run(mut self, mut requests: Streaming<DeltaDiscoveryRequest>) {
        let end = self.serve(&mut requests).await;
        match end {
            End::Client => debug!(conn = self.id, node = self.node(), "xDS stream closed"),
            End::Shutdown => {
                info!(
                    conn = self.id,
                    node = self.node(),
                    "xDS stream ended: shutting down"
                );
                let _ = self
                    .tx
                    .send(Err(Status::unavailable("control plane shutting down")))
                    .await;
            }
        }
    }

    async fn serve(&mut self, requests: &mut Streaming<DeltaDiscoveryRequest>) -> End {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            if *shutdown.borrow_and_update() {
                return End::Shutdown;
            }
            for kind in XdsType::ALL {
                if self.state(kind).wants_send() && !self.push(kind).await {
                    return End::Client;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if !self.on_request(request).await {
                            return End::Client;
                        }
                    }
                    Ok(None) => return End::Client,
                    Err(status) => {
                        debug!(conn = self.id, node = self.node(), %status, "xDS stream error");
                        return End::Client;
                    }
                },
                changes = self.changes.recv() => {
                    self.on_changes(changes);
                    // Coalesce whatever else is already queued before computing a response.
                    loop {
                        let more = match self.changes.try_recv() {
                            Ok(changes) => Ok(changes),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Err(broadcast::error::RecvError::Lagged(n))
                            }
                            Err(_) => break,
                        };
                        self.on_changes(more);
                    }
                }
                _ = self.tx.closed() => return End::Client,
            }
        }
    }

    fn on_changes(&mut self, changes: Result<Arc<Changes>, broadcast::error::RecvError>) {
        match changes {
            Ok(changes) => {
                for kind in XdsType::ALL {
                    let names = kind.changes(&changes);
                    let state = self.state(kind);
                    if state.subscribed && !state.all_dirty {
                        state.dirty.extend(names.changed.iter().cloned());
                        state.dirty.extend(names.removed.iter().cloned());
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for kind in XdsType::ALL {
                    let state = self.state(kind);
                    if state.subscribed {
                        state.all_dirty = true;
                        state.dirty.clear();
                    }
                }
            }
            // The notifier is gone; the index can no longer change.
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// Handles one request; false when the client is gone.
    async fn on_request(&mut self, request: DeltaDiscoveryRequest) -> bool {
        if self.node.is_none()
            && let Some(node) = &request.node
        {
            self.node = Some(node.id.clone());
            debug!(conn = self.id, node = self.node(), "xDS stream opened");
        }
        let Some(kind) = XdsType::from_type_url(&request.type_url) else {
            if request.response_nonce.is_empty() {
                debug!(conn = self.id, node = self.node(), type_url = %request.type_url,
                    "request for an unknown type: answering empty");
                let response = self.response(request.type_url, Vec::new(), Vec::new());
                return self.tx.send(Ok(response)).await.is_ok();
            }
            return true;
        };

        let id = self.id;
        let node = self.node().to_string();
        let stats = self.shared.stats.clone();
        let state = self.state(kind);
        if !request.response_nonce.is_empty() {
            if state.pending.as_deref() == Some(request.response_nonce.as_str()) {
                state.pending = None;
            }
            if let Some(error) = &request.error_detail {
                stats.nacks.fetch_add(1, Ordering::Relaxed);
                // What was sent stays recorded as sent: the same content is not sent again; a later
                // change of those resources is.
                warn!(conn = id, node, type_url = kind.type_url(), nonce = %request.response_nonce,
                    message = %error.message, "xDS NACK");
            }
            return true;
        }
        if state.subscribed {
            // A later subscription request (on-demand): not served here.
            debug!(
                conn = id,
                node,
                type_url = kind.type_url(),
                "ignoring repeated subscription"
            );
            return true;
        }
        state.subscribed = true;
        state.force = true;
        state.all_dirty = true;
        state.dirty.clear();
        state.sent = request
            .initial_resource_versions
            .into_iter()
            .map(|(name, version)| {
                let version = u64::from_str_radix(&version, 16)
                    .ok()
                    .filter(|_| version.len() == 16);
                (Arc::from(name), version)
            })
            .collect();
        true
    }

    /// Sends what changed for `kind` since the last response; false when the client is gone.
    async fn push(&mut self, kind: XdsType) -> bool {
        let (resources, removed) = {
            let index = self
                .shared
                .index
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let current = kind.resources(&index);
            let state = match kind {
                XdsType::Address => &mut self.address,
                XdsType::Authorization => &mut self.authorization,
            };
            let names: Vec<Arc<str>> = if state.all_dirty {
                let mut all: BTreeSet<Arc<str>> = current.keys().cloned().collect();
                all.extend(state.sent.keys().cloned());
                all.into_iter().collect()
            } else {
                std::mem::take(&mut state.dirty).into_iter().collect()
            };
            state.all_dirty = false;
            state.dirty.clear();
            let mut resources = Vec::new();
            let mut removed = Vec::new();
            for name in names {
                match current.get(&name) {
                    Some(resource) => {
                        if state.sent.get(&name) != Some(&Some(resource.version)) {
                            state.sent.insert(name, Some(resource.version));
                            resources.push(xds_resource(kind, resource));
                        }
                    }
                    None => {
                        if state.sent.remove(&name).is_some() {
                            removed.push(name.to_string());
                        }
                    }
                }
            }
            (resources, removed)
        };
        let state = self.state(kind);
        if resources.is_empty() && removed.is_empty() && !state.force {
            return true;
        }
        state.force = false;
        let response = self.response(kind.type_url().to_string(), resources, removed);
        debug!(conn = self.id, node = self.node(), type_url = kind.type_url(),
            nonce = %response.nonce, resources = response.resources.len(),
            removed = response.removed_resources.len(), "xDS push");
        self.state(kind).pending = Some(response.nonce.clone());
        self.tx.send(Ok(response)).await.is_ok()
    }

    fn response(
        &mut self,
        type_url: String,
        resources: Vec<XdsResource>,
        removed_resources: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        self.nonces += 1;
        DeltaDiscoveryResponse {
            type_url,
            resources,
            removed_resources,
            nonce: format!("{}-{}", self.id, self.nonces),
            ..Default::default()
        }
    }
}

fn xds_resource(kind: XdsType, resource: &Resource) -> XdsResource {
    XdsResource {
        name: resource.name.to_string(),
        version: resource.version_string(),
        resource: Some(Any {
            type_url: kind.type_url().to_string(),
            value: resource.body.to_vec(),
        }),
        ..Default::default()
    }
}
