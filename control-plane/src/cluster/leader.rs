//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leader election does it, so that
//! of several ambientd replicas exactly one writes status.
//!
//! Every `retry_period` each replica reads the Lease. The holder renews it (an update with the read
//! `resourceVersion`, so two writers cannot both succeed); another replica takes it over only when its
//! holder is empty or the record has not changed for `lease_duration` as measured on the local clock
//! (never comparing clocks across machines). A holder that cannot renew for `renew_deadline` stops
//! considering itself the leader before anyone else may take over. On shutdown the holder releases the
//! Lease (empty holder) so that another replica takes over at once.

use std::time::{Duration, Instant};

use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api_errors::is_conflict;

/// Which Lease, who we are, and the timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps acting as leader while its renewals fail.
    pub renew_deadline: Duration,
    /// How often the Lease is read (and renewed by its holder).
    pub retry_period: Duration,
}

/// The Lease's name: `ambientd-leader`.
pub const LEASE_NAME: &str = "ambientd-leader";

impl LeaseConfig {
    /// `ambientd-leader` in `namespace`, with [`default_identity`] and client-go's timings.
    pub fn new(namespace: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<pod name>_<suffix>`: the pod name from `POD_NAME` or `HOSTNAME` (`ambientd` when neither is set), and a
/// suffix from the process id and start time, so that a restarted container is a new holder.
pub fn default_identity() -> String {
    let host = ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "ambientd".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let suffix = nanos ^ (u64::from(std::process::id()) << 32);
    format!("{host}_{suffix:016x}")
}

/// A running election: [`Leadership::is_leader`] follows it; [`Leadership::stop`] (or dropping it) ends
/// it, releasing the Lease when held.
pub struct Leadership {
    leader: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Starts electing on the current runtime.
    pub fn start(client: ::kube::Client, config: LeaseConfig) -> Leadership {
        let (leader_tx, leader) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let span = info_span!("lease", lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity);
        let task = tokio::spawn(elect(client, config, leader_tx, stop_rx).instrument(span));
        Leadership { leader, stop, task }
    }

    /// Follows whether this replica holds the Lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops electing and, when holding the Lease, releases it (waits at most `timeout` for that).
    pub async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The part of a Lease that says who holds it; a change of any of it restarts the expiry clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    duration_seconds: Option<i32>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            duration_seconds: spec.lease_duration_seconds,
            transitions: spec.lease_transitions,
        }
    }
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last record read and when (local clock) it was first seen.
    observed: Option<(Record, Instant)>,
}

async fn elect(
    client: ::kube::Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut elector = Elector {
        api: Api::namespaced(client, &config.namespace),
        config,
        observed: None,
    };
    let mut last_renewal: Option<Instant> = None;
    // Failures are logged as warnings when they start, then quietly until the Lease answers again.
    let mut failing = false;
    loop {
        let round = elector.try_acquire_or_renew().await;
        match (&round, failing) {
            (Ok(_), true) => {
                info!("the lease answers again");
                failing = false;
            }
            (Err(e), false) => {
                warn!(
                    "cannot read or renew the lease: {e}; retrying every {:?}",
                    elector.config.retry_period
                );
                failing = true;
            }
            (Err(e), true) => debug!("cannot read or renew the lease: {e}"),
            (Ok(_), false) => {}
        }
        match round {
            Ok(true) => {
                last_renewal = Some(Instant::now());
                if !*leader.borrow() {
                    info!("this replica holds the lease: it writes status");
                    let _ = leader.send(true);
                }
            }
            Ok(false) => {
                last_renewal = None;
                if *leader.borrow() {
                    info!("another replica holds the lease: this one stops writing status");
                    let _ = leader.send(false);
                }
            }
            Err(_) => {
                let expired =
                    last_renewal.is_none_or(|t| t.elapsed() >= elector.config.renew_deadline);
                if *leader.borrow() && expired {
                    warn!("the lease was not renewed in time: this replica stops writing status");
                    let _ = leader.send(false);
                    last_renewal = None;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(elector.config.retry_period) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        let _ = leader.send(false);
        match elector.release().await {
            Ok(()) => info!("released the lease"),
            Err(e) => warn!(
                "could not release the lease (another replica takes over when it expires): {e}"
            ),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One round: `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, ::kube::Error> {
        let me = self.config.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    debug!("created the lease");
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        let record = Record::of(&spec);
        let seen_at = match &self.observed {
            Some((known, at)) if *known == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record.clone(), at));
                at
            }
        };
        match record.holder.as_deref() {
            Some(holder) if holder == me => {
                spec.renew_time = Some(now());
                spec.lease_duration_seconds = Some(self.duration_seconds());
            }
            Some(holder) => {
                let valid_for = record
                    .duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.config.lease_duration, Duration::from_secs);
                if seen_at.elapsed() < valid_for {
                    debug!(holder, "the lease is held");
                    return Ok(false);
                }
                info!(holder, "the lease expired: taking it over");
                take_over(&mut spec, me, self.duration_seconds());
            }
            None => take_over(&mut spec, me, self.duration_seconds()),
        }
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                // Our own write is the record to watch from now on.
                if let Some(spec) = &written.spec {
                    self.observed = Some((Record::of(spec), Instant::now()));
                }
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Empties the holder if it is still us, so that another replica need not wait for the expiry.
    async fn release(&mut self) -> Result<(), ::kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        spec.acquire_time = Some(now());
        lease.spec = Some(spec);
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

fn take_over(spec: &mut LeaseSpec, me: String, duration_seconds: i32) {
    spec.holder_identity = Some(me);
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_unique_per_process_start() {
        let id = default_identity();
        let (host, suffix) = id.rsplit_once('_').unwrap();
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 16);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_take_over_counts_a_transition() {
        let mut spec = LeaseSpec {
            holder_identity: Some("old".into()),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        take_over(&mut spec, "new".into(), 15);
        assert_eq!(spec.holder_identity.as_deref(), Some("new"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    }
}
