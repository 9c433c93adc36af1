//! The root bundle for workloads: ConfigMap `istio-ca-root-cert` with key `root-cert.pem` in every
//! namespace, as istiod's namespace controller keeps it (sidecars and tools mount it; ztunnel reads its
//! own copy).
//!
//! The publisher watches Namespaces and, while this replica is the leader (holds the Lease; without a
//! leader election it always is), makes sure each active namespace has the ConfigMap with the current
//! root: `get`, then `create` when absent or `update` (with the read `resourceVersion`) when its
//! `root-cert.pem` differs; other keys and labels are kept. It goes over every namespace again when the
//! root changes, when this replica becomes the leader, and every `resync` (a ConfigMap edited or deleted
//! by hand is put back then). Namespaces being deleted are skipped. A failed write is retried after
//! `retry` without holding up the other namespaces.
//!
//! Calls: `list`/`watch` of Namespaces (as the Kubernetes source), `get`/`create`/`update` of ConfigMap
//! `istio-ca-root-cert`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ObjectMeta, PostParams};
use ::kube::runtime::{WatchStreamExt as _, watcher};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::api_errors::is_not_found;

/// The ConfigMap's name (istiod's).
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key holding the root bundle.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// The label istiod puts on it.
pub const ISTIO_CONFIG_LABEL: (&str, &str) = ("istio.io/config", "true");

/// Timings of the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootCertConfig {
    /// How long after a failed write the namespace is tried again.
    pub retry: Duration,
    /// How often every namespace is checked again.
    pub resync: Duration,
}

impl Default for RootCertConfig {
    fn default() -> Self {
        RootCertConfig {
            retry: Duration::from_secs(5),
            resync: Duration::from_secs(300),
        }
    }
}

/// What the publisher has done, for tests and `/debug`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherState {
    /// Whether it writes (this replica is the leader).
    pub leader: bool,
    /// Whether the first list of Namespaces is in.
    pub synced: bool,
    /// Active namespaces.
    pub namespaces: usize,
    /// Namespaces whose ConfigMap holds the current root, as last checked.
    pub current: usize,
    /// Namespaces waiting for a (re)try.
    pub pending: usize,
    /// ConfigMaps created and updated so far.
    pub created: u64,
    pub updated: u64,
}

/// The running publisher; dropping it stops it.
#[derive(Debug)]
pub struct RootCertPublisher {
    task: JoinHandle<()>,
    state: watch::Receiver<PublisherState>,
}

impl Drop for RootCertPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RootCertPublisher {
    /// Starts publishing `root` (PEM; follow its changes) on the current runtime. `leader`: whether this
    /// replica may write; `None` means it always may.
    pub fn start(
        client: ::kube::Client,
        root: watch::Receiver<Arc<str>>,
        leader: Option<watch::Receiver<bool>>,
        config: RootCertConfig,
    ) -> RootCertPublisher {
        let (state_tx, state) = watch::channel(PublisherState::default());
        let task = tokio::spawn(
            run(client, root, leader, config, state_tx).instrument(info_span!("root-cert")),
        );
        RootCertPublisher { task, state }
    }

    /// Follows what it has done.
    pub fn state(&self) -> watch::Receiver<PublisherState> {
        self.state.clone()
    }
}

async fn run(
    client: ::kube::Client,
    mut root: watch::Receiver<Arc<str>>,
    mut leader: Option<watch::Receiver<bool>>,
    config: RootCertConfig,
    state: watch::Sender<PublisherState>,
) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let events = watcher(namespaces, watcher::Config::default()).default_backoff();
    tokio::pin!(events);

    let mut active: BTreeSet<String> = BTreeSet::new();
    let mut listing: Option<BTreeSet<String>> = None;
    let mut synced = false;
    // Namespace -> the root its ConfigMap was last seen to hold.
    let mut current: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut retry_at: Option<Instant> = None;
    let mut resync = tokio::time::interval_at(Instant::now() + config.resync, config.resync);
    let mut counts = (0u64, 0u64);
    let mut root_open = true;
    let mut leader_open = leader.is_some();

    loop {
        let is_leader = leader.as_ref().is_none_or(|l| *l.borrow());
        let waiting = retry_at.is_some_and(|t| Instant::now() < t);
        if is_leader && synced && !waiting && !pending.is_empty() {
            let bundle = Arc::clone(&*root.borrow());
            let mut failed = false;
            for ns in std::mem::take(&mut pending) {
                if current.get(&ns).is_some_and(|r| *r == bundle) {
                    continue;
                }
                match ensure(&client, &ns, &bundle).await {
                    Ok(outcome) => {
                        match outcome {
                            Outcome::Created => counts.0 += 1,
                            Outcome::Updated => counts.1 += 1,
                            Outcome::Unchanged => {}
                        }
                        current.insert(ns, Arc::clone(&bundle));
                    }
                    Err(e) => {
                        warn!(namespace = %ns, "cannot write ConfigMap {ROOT_CERT_CONFIGMAP}: {e}; retrying in {:?} \
                            (ambientd's service account needs get/update on ConfigMaps named {ROOT_CERT_CONFIGMAP} \
                            and create on ConfigMaps)", config.retry);
                        pending.insert(ns);
                        failed = true;
                    }
                }
            }
            retry_at = failed.then(|| Instant::now() + config.retry);
        }
        let bundle = Arc::clone(&*root.borrow());
        state.send_replace(PublisherState {
            leader: is_leader,
            synced,
            namespaces: active.len(),
            current: active
                .iter()
                .filter(|ns| current.get(*ns).is_some_and(|r| *r == bundle))
                .count(),
            pending: pending.len(),
            created: counts.0,
            updated: counts.1,
        });

        let retry_in = retry_at.unwrap_or_else(|| Instant::now() + config.resync);
        tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Ok(watcher::Event::Init)) => listing = Some(BTreeSet::new()),
                Some(Ok(watcher::Event::InitApply(ns))) => {
                    if let (Some(l), Some(name)) = (listing.as_mut(), active_name(&ns)) {
                        l.insert(name);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(l) = listing.take() {
                        current.retain(|ns, _| l.contains(ns));
                        pending.retain(|ns| l.contains(ns));
                        pending.extend(l.iter().filter(|ns| !current.contains_key(*ns)).cloned());
                        active = l;
                    }
                    if !synced {
                        info!(namespaces = active.len(), "publishing the root bundle in every namespace");
                    }
                    synced = true;
                }
                Some(Ok(watcher::Event::Apply(ns))) => match active_name(&ns) {
                    Some(name) => {
                        if active.insert(name.clone()) {
                            debug!(namespace = %name, "new namespace");
                            pending.insert(name);
                        }
                    }
                    None => forget(&ns, &mut active, &mut current, &mut pending),
                },
                Some(Ok(watcher::Event::Delete(ns))) => {
                    forget(&ns, &mut active, &mut current, &mut pending)
                }
                Some(Err(e)) => warn!("watching Namespaces: {e}; retrying"),
            },
            changed = root.changed(), if root_open => {
                if changed.is_err() {
                    // The root can no longer change; keep publishing the last one.
                    debug!("root bundle sender gone");
                    root_open = false;
                } else {
                    info!("the root bundle changed: updating every namespace");
                    pending.extend(active.iter().cloned());
                }
            }
            changed = leader_changed(leader.as_mut()), if leader_open => {
                if !changed {
                    // The election stopped: write no more.
                    leader_open = false;
                    leader = Some(watch::channel(false).1);
                } else if leader.as_ref().is_some_and(|l| *l.borrow()) {
                    info!("leader: checking every namespace's {ROOT_CERT_CONFIGMAP}");
                    current.clear();
                    pending.extend(active.iter().cloned());
                }
            }
            () = tokio::time::sleep_until(retry_in), if retry_at.is_some() => retry_at = None,
            _ = resync.tick() => {
                current.clear();
                pending.extend(active.iter().cloned());
            }
        }
    }
}

/// Waits for a change of leadership; `false` when the election is gone.
async fn leader_changed(leader: Option<&mut watch::Receiver<bool>>) -> bool {
    match leader {
        Some(l) => l.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The namespace's name, unless it is being deleted (a write there would fail).
fn active_name(ns: &Namespace) -> Option<String> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating");
    if terminating {
        return None;
    }
    ns.metadata.name.clone()
}

fn forget(
    ns: &Namespace,
    active: &mut BTreeSet<String>,
    current: &mut BTreeMap<String, Arc<str>>,
    pending: &mut BTreeSet<String>,
) {
    if let Some(name) = &ns.metadata.name {
        active.remove(name);
        current.remove(name);
        pending.remove(name);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Makes `namespace`'s ConfigMap hold `bundle`.
async fn ensure(
    client: &::kube::Client,
    namespace: &str,
    bundle: &str,
) -> Result<Outcome, ::kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let existing = match api.get(ROOT_CERT_CONFIGMAP).await {
        Ok(cm) => Some(cm),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    match existing {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CERT_CONFIGMAP.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(BTreeMap::from([(
                        ISTIO_CONFIG_LABEL.0.to_string(),
                        ISTIO_CONFIG_LABEL.1.to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(
                    ROOT_CERT_KEY.to_string(),
                    bundle.to_string(),
                )])),
                ..ConfigMap::default()
            };
            // A 409 (created meanwhile) is retried: the next try reads it.
            api.create(&PostParams::default(), &cm).await?;
            info!(namespace, "created ConfigMap {ROOT_CERT_CONFIGMAP}");
            Ok(Outcome::Created)
        }
        Some(cm)
            if cm
                .data
                .as_ref()
                .and_then(|d| d.get(ROOT_CERT_KEY))
                .is_some_and(|v| v == bundle) =>
        {
            Ok(Outcome::Unchanged)
        }
        Some(mut cm) => {
            cm.data
                .get_or_insert_with(BTreeMap::new)
                .insert(ROOT_CERT_KEY.to_string(), bundle.to_string());
            // The read resourceVersion stays: a concurrent change makes this a 409, retried.
            api.replace(ROOT_CERT_CONFIGMAP, &PostParams::default(), &cm)
                .await?;
            info!(
                namespace,
                "updated ConfigMap {ROOT_CERT_CONFIGMAP} to the current root"
            );
            Ok(Outcome::Updated)
        }
    }
}
