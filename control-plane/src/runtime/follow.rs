//! The source follower: the one task that applies the source's batches of events to the shared index
//! (which tells the xDS connections what changed), counts them, and counts the file source's new
//! problems. It ends when the source does, or with [`IndexFailed`] when applying a batch panicked; the
//! server stops on the latter (see `serve`).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::metrics::Metrics;
use crate::shared_index::{IndexFailed, SharedIndex};
use crate::source::{Event, SourceDiagnostic};

/// What the follower needs of the source besides its events.
pub struct Follow {
    /// `files` or `kube`, for the source error metric.
    pub label: &'static str,
    pub diagnostics: Arc<dyn Fn() -> Vec<SourceDiagnostic> + Send + Sync>,
    /// Counts the batches applied (the status writer and the first-sync wait follow it).
    pub applied: watch::Sender<u64>,
}

/// Applies the source's events to the shared index. Returns only when the index failed (an update
/// panicked) or the source ended.
pub async fn follow_source(
    mut events: mpsc::Receiver<Vec<Event>>,
    index: Arc<SharedIndex>,
    metrics: Arc<Metrics>,
    source: Follow,
) -> Result<(), IndexFailed> {
    let problems_now = || -> BTreeSet<String> {
        (source.diagnostics)()
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    let mut known_problems = problems_now();
    while let Some(batch) = events.recv().await {
        metrics.source_batch(&batch);
        // The file source's documents that newly failed to read count as source errors (the Kubernetes
        // source counts its own as they happen).
        if source.label == "files" {
            let problems = problems_now();
            let new = problems.difference(&known_problems).count() as u64;
            if new > 0 {
                metrics.source_errors(source.label, new);
            }
            known_problems = problems;
        }
        let changes = index.apply(batch)?;
        debug!(
            addresses = changes.addresses.changed.len() + changes.addresses.removed.len(),
            authorizations =
                changes.authorizations.changed.len() + changes.authorizations.removed.len(),
            "config changed"
        );
        source.applied.send_modify(|n| *n += 1);
    }
    Ok(())
}
