//! Certificate tasks: one per identity, fetching its certificate and retrying failures.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tracing::warn;

use super::Shared;
use crate::certs::{self, CertError, CertState};
use crate::observe::CertEvent;
use crate::transport::Credentials;

/// Fetches one identity's certificate, retrying failures with ztunnel's backoff.
pub(super) struct CsrTask {
    pub(super) shared: Arc<Shared>,
    pub(super) channel: Channel,
    pub(super) credentials: Option<Credentials>,
    pub(super) identity: String,
    pub(super) limit: Arc<Semaphore>,
}

impl CsrTask {
    pub(super) async fn run(self) {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = {
                let Ok(_permit) = self.limit.acquire().await else {
                    return;
                };
                let started = Instant::now();
                let r = certs::fetch(
                    self.channel.clone(),
                    self.credentials.as_ref(),
                    &self.identity,
                )
                .await;
                (r, started.elapsed())
            };
            let (result, latency) = result;
            self.record(&result, latency, attempt);
            let failures = match &result {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "certificate fetch failed; will retry");
                    attempt
                }
            };
            let seed = (self.shared.index() as u64) << 32 | u64::from(attempt);
            tokio::time::sleep(certs::jitter(certs::retry_delay(failures), seed)).await;
        }
    }

    fn record(&self, result: &Result<usize, CertError>, latency: Duration, attempt: u32) {
        let at = Instant::now();
        {
            let mut certs = self
                .shared
                .certs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(rec) = certs.get_mut(&self.identity) {
                rec.attempts = attempt;
                match result {
                    Ok(chain_len) => {
                        rec.state = CertState::Issued {
                            chain_len: *chain_len,
                            latency,
                            at,
                        }
                    }
                    Err(e) => {
                        rec.failures += 1;
                        rec.state = CertState::Pending {
                            last_error: Some(e.to_string()),
                        };
                    }
                }
            }
        }
        let event = CertEvent {
            client: self.shared.index(),
            identity: &self.identity,
            at,
            result: result.as_ref().map(|n| *n),
            latency,
            attempt,
        };
        for o in self.shared.observers.iter() {
            o.on_certificate(&event);
        }
    }
}
