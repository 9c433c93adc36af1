//! The client's stream loop: connect, the initial requests, one ACK or NACK per response, readiness,
//! reconnects with [`next_backoff`], and starting or forgetting certificate fetches as the node's
//! workloads come and go. [`Connected`] counts the client as connected while a stream is up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::{Instrument, debug, info_span, warn};

use super::Shared;
use super::backoff::{INITIAL_BACKOFF, Outcome, next_backoff};
use super::csr::CsrTask;
use crate::certs::{CertRecord, CertState};
use crate::grpc;
use crate::intern::StrId;
use crate::observe::{ConnectionEvent, ResponseEvent};
use crate::state::CertAction;
use crate::transport::{Credentials, Target};
use crate::validate::VerdictCache;

pub(super) struct Client {
    pub(super) shared: Arc<Shared>,
    pub(super) target: Target,
    pub(super) credentials: Option<Credentials>,
    pub(super) ca: Option<Channel>,
    pub(super) csr_limit: Arc<Semaphore>,
    pub(super) csr_tasks: JoinSet<()>,
    pub(super) csr_by_identity: HashMap<StrId, AbortHandle>,
}

impl Client {
    pub(super) async fn run(mut self) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let stream = self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
            let outcome = self
                .run_stream(stream)
                .instrument(info_span!("xds", id = stream))
                .await;
            let (sleep, next) = next_backoff(backoff, &outcome);
            backoff = next;
            let error = outcome.to_string();
            match &outcome {
                Outcome::Connection(_) => {
                    warn!(%error, retry_in = ?sleep, "XDS client connection error")
                }
                Outcome::Complete { .. } => warn!(retry_in = ?sleep, "XDS client complete"),
                _ => warn!(%error, retry_in = ?sleep, "XDS client error"),
            }
            *self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
            for o in self.shared.observers.iter() {
                o.on_connection(
                    self.shared.index(),
                    &ConnectionEvent::Disconnected {
                        stream,
                        error: &error,
                        retry_in: sleep,
                    },
                );
            }
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
        }
    }

    async fn run_stream(&mut self, stream: u64) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let initial = shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .initial_requests(&shared.config.node());
        for r in &initial {
            debug!(type_url = %r.type_url, resources = r.initial_resource_versions.len(), "sending initial request");
        }
        let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(100);
        let outbound = tokio_stream::iter(initial).chain(ReceiverStream::new(rx));

        let channel = match self.target.connect().await {
            Ok(c) => c,
            Err(e) => return Outcome::Connection(e.to_string()),
        };
        let mut responses = match grpc::open(channel, outbound, self.credentials.as_ref()).await {
            Ok(r) => r,
            Err(status) => {
                return Outcome::Connection(format!(
                    "gRPC status {:?}: {}",
                    status.code(),
                    status.message()
                ));
            }
        };
        debug!("Stream established");
        let _connected = Connected::new(&shared);
        for o in shared.observers.iter() {
            o.on_connection(shared.index(), &ConnectionEvent::Connected { stream });
        }
        self.read_loop(stream, &mut responses, &tx).await
    }

    async fn read_loop(
        &mut self,
        stream: u64,
        responses: &mut grpc::DeltaStream,
        tx: &mpsc::Sender<DeltaDiscoveryRequest>,
    ) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let mut reading = shared.faults.reading.subscribe();
        let mut received: u64 = 0;
        loop {
            if !*reading.borrow_and_update() {
                if reading.wait_for(|r| *r).await.is_err() {
                    return Outcome::Local {
                        error: "fault hook gone".into(),
                        responses: received,
                    };
                }
                continue;
            }
            let msg = tokio::select! {
                m = responses.message() => m,
                _ = reading.changed() => continue,
            };
            let response = match msg {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Outcome::Complete {
                        responses: received,
                    };
                }
                Err(status) => {
                    return Outcome::Status {
                        code: status.code(),
                        message: status.message().to_string(),
                    };
                }
            };
            received += 1;
            shared.responses.fetch_add(1, Ordering::Relaxed);

            let was_synced = *shared.synced.borrow();
            let handled = {
                let nack_set = shared.faults.nack_any.load(Ordering::Acquire).then(|| {
                    shared
                        .faults
                        .nack
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                });
                let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.handle(&response, VerdictCache::global(), nack_set.as_deref())
            };
            debug!(type_url = %response.type_url, size = response.resources.len(),
                removes = response.removed_resources.len(), "received response");
            let reply = handled.reply(&response);
            if handled.kind.is_none() {
                warn!(type_url = %response.type_url, "unknown type");
            }
            if let Some(error) = &handled.nack {
                warn!(type_url = %response.type_url, nonce = %response.nonce, %error, "sending NACK");
                shared.nacks.fetch_add(1, Ordering::Relaxed);
                *shared
                    .last_nack
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
            } else {
                shared.acks.fetch_add(1, Ordering::Relaxed);
            }
            if tx.send(reply).await.is_err() {
                return Outcome::Local {
                    error: "the request stream is closed".into(),
                    responses: received,
                };
            }
            let event = ResponseEvent {
                client: shared.index(),
                stream,
                at: Instant::now(),
                type_url: &response.type_url,
                kind: handled.kind,
                nonce: &response.nonce,
                resources: response.resources.len(),
                body_bytes: handled.body_bytes,
                changed: &handled.changed,
                rejected: &handled.rejected,
                removed: &handled.removed,
                nack: handled.nack.as_deref(),
                was_synced,
                synced: was_synced || handled.became_synced,
            };
            for o in shared.observers.iter() {
                o.on_response(&event);
            }
            // Readiness after the observers: whoever waits for it has seen every event of the sync.
            if handled.became_synced {
                shared.synced.send_replace(true);
                shared.fleet.synced.fetch_add(1, Ordering::AcqRel);
                shared.fleet.bump();
            }
            if !handled.cert_actions.is_empty() {
                self.on_cert_actions(&handled.cert_actions);
            }
            while self.csr_tasks.try_join_next().is_some() {}
        }
    }

    fn on_cert_actions(&mut self, actions: &[CertAction]) {
        for action in actions {
            match *action {
                CertAction::Fetch(identity) => {
                    if self.csr_by_identity.contains_key(&identity) {
                        continue;
                    }
                    let id = identity.get().to_string();
                    self.shared
                        .certs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(
                            id.clone(),
                            CertRecord {
                                identity: id.clone(),
                                state: CertState::Pending { last_error: None },
                                attempts: 0,
                                failures: 0,
                            },
                        );
                    let channel = self
                        .ca
                        .get_or_insert_with(|| self.target.lazy_channel())
                        .clone();
                    let task = CsrTask {
                        shared: Arc::clone(&self.shared),
                        channel,
                        credentials: self.credentials.clone(),
                        identity: id,
                        limit: Arc::clone(&self.csr_limit),
                    };
                    let span = info_span!("csr", identity = %task.identity);
                    let handle = self.csr_tasks.spawn(task.run().instrument(span));
                    self.csr_by_identity.insert(identity, handle);
                }
                CertAction::Forget(identity) => {
                    if let Some(handle) = self.csr_by_identity.remove(&identity) {
                        handle.abort();
                    }
                    self.shared
                        .certs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&*identity.get());
                }
            }
        }
    }
}

/// Counts the client as connected while alive (also when the client is stopped mid-stream).
struct Connected {
    shared: Arc<Shared>,
}

impl Connected {
    fn new(shared: &Arc<Shared>) -> Connected {
        shared.connected.store(true, Ordering::Release);
        shared.fleet.connected.fetch_add(1, Ordering::AcqRel);
        shared.fleet.bump();
        Connected {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.shared.connected.store(false, Ordering::Release);
        self.shared.fleet.connected.fetch_sub(1, Ordering::AcqRel);
        self.shared.fleet.bump();
    }
}
