//! The one index a running server holds, shared by everything that reads it: the source's batches are
//! applied here (the only writer), every batch that changed something is published once on the change
//! log that xDS streams follow, and an index whose update panicked half-way is never read again.
//!
//! Readers (xDS, the admin API, metrics, the CA's node lookup, status writes) take the read lock through
//! [`SharedIndex::read`] for as long as one lookup or one plan takes; the writer holds the write lock for
//! one batch. A batch whose application panics leaves the index half-updated: the panic is caught, the
//! object being applied is recorded, and from then on [`SharedIndex::read`] refuses with
//! [`IndexFailed`]. The server then stops with an error naming that object, so that a supervisor
//! restarts it and the index is built afresh from the source (see `serve`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use ambient_index::{Changes, Index};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::source::Event;

/// Change reports kept for readers that have not taken them yet (see [`SharedIndex::subscribe`]).
pub const DEFAULT_CHANGE_LOG: usize = 4096;

/// One batch's report: what changed, and the generation it brought the index to.
#[derive(Debug)]
pub struct ChangeNotice {
    /// [`Index::generation`] right after the batch.
    pub generation: u64,
    pub changes: Changes,
    /// When the batch was applied (push latency is measured from here).
    pub at: Instant,
}

/// Applying a batch panicked; the index may be half-updated and is no longer read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "applying {object} panicked ({message}); the index may be half-updated, so it is no longer \
     served: restart ambientd to rebuild it from the source"
)]
pub struct IndexFailed {
    /// The event being applied: `Kind/namespace/name`, or `the complete state (N objects)`.
    pub object: String,
    /// The panic's message.
    pub message: String,
}

/// The server's index; see the module documentation.
#[derive(Debug)]
pub struct SharedIndex {
    index: RwLock<Index>,
    failed: OnceLock<IndexFailed>,
    changes: broadcast::Sender<Arc<ChangeNotice>>,
}

impl SharedIndex {
    pub fn new(index: Index) -> Arc<SharedIndex> {
        SharedIndex::with_change_log(index, DEFAULT_CHANGE_LOG)
    }

    /// As [`SharedIndex::new`], keeping `change_log` reports for slow readers.
    pub fn with_change_log(index: Index, change_log: usize) -> Arc<SharedIndex> {
        let (changes, _) = broadcast::channel(change_log.max(1));
        Arc::new(SharedIndex {
            index: RwLock::new(index),
            failed: OnceLock::new(),
            changes,
        })
    }

    /// The index, for one lookup or one plan; `Err` once an update has panicked.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, Index>, IndexFailed> {
        if let Some(failed) = self.failed.get() {
            return Err(failed.clone());
        }
        // Only `apply` takes the write lock, and it catches panics while holding it.
        let guard = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.failed.get() {
            Some(failed) => Err(failed.clone()),
            None => Ok(guard),
        }
    }

    /// Why the index is no longer read, if it is not.
    pub fn failure(&self) -> Option<&IndexFailed> {
        self.failed.get()
    }

    /// The change log: one [`ChangeNotice`] per applied batch that changed a resource, in order. A
    /// receiver that falls more than the log's length behind gets `Lagged` and must compare afresh.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeNotice>> {
        self.changes.subscribe()
    }

    /// Applies one batch of source events in order and publishes what changed (nothing when nothing
    /// did). `Err` when an event's application panicked: the index is then failed for good.
    pub fn apply(&self, batch: Vec<Event>) -> Result<Changes, IndexFailed> {
        self.apply_with(batch, |index, event| match event {
            Event::Apply(obj) => index.apply(obj),
            Event::Delete(obj) => index.delete(&obj),
            Event::Reset(objs) => index.reset(objs),
        })
    }

    /// As [`SharedIndex::apply`], with `apply` doing each event's work. For tests of an update that
    /// panics, which no input causes: the panic is caught and the index failed exactly as in `apply`.
    #[doc(hidden)]
    pub fn apply_with(
        &self,
        batch: Vec<Event>,
        mut apply: impl FnMut(&mut Index, Event) -> Changes,
    ) -> Result<Changes, IndexFailed> {
        if let Some(failed) = self.failed.get() {
            return Err(failed.clone());
        }
        let mut changes = Changes::default();
        let generation = {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for event in batch {
                let object = describe(&event);
                match catch_unwind(AssertUnwindSafe(|| apply(&mut index, event))) {
                    Ok(more) => changes.merge(more),
                    Err(panic) => {
                        let failed = IndexFailed {
                            object,
                            message: panic_message(panic.as_ref()),
                        };
                        // Set while the write lock is held: no reader sees the half-updated index.
                        let _ = self.failed.set(failed.clone());
                        return Err(failed);
                    }
                }
            }
            index.generation()
        };
        if !changes.is_empty() {
            // No receivers means nobody follows the changes: nothing to tell.
            let _ = self.changes.send(Arc::new(ChangeNotice {
                generation,
                changes: changes.clone(),
                at: Instant::now(),
            }));
        }
        Ok(changes)
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Apply(obj) => obj.object_ref().to_string(),
        Event::Delete(obj) => format!("the deletion of {obj}"),
        Event::Reset(objs) => format!("the complete state ({} objects)", objs.len()),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_index::testing::{pod, test_settings};

    #[tokio::test]
    async fn a_batch_is_applied_in_order_and_published_once() {
        let shared = SharedIndex::new(Index::new(test_settings()));
        let mut log = shared.subscribe();
        let changes = shared
            .apply(vec![
                Event::Apply(pod("ns", "a").ip("10.0.0.1").build()),
                Event::Apply(pod("ns", "b").ip("10.0.0.2").build()),
                Event::Delete(pod("ns", "b").build().object_ref()),
            ])
            .unwrap();
        let changed: Vec<&str> = changes.addresses.changed.iter().map(|n| &**n).collect();
        assert_eq!(changed, ["cluster0//Pod/ns/a"]);
        let notice = log.try_recv().unwrap();
        assert_eq!(notice.changes, changes);
        assert_eq!(notice.generation, shared.read().unwrap().generation());
        assert!(log.try_recv().is_err());
        // A batch that changes nothing is not published.
        shared
            .apply(vec![Event::Apply(pod("ns", "a").ip("10.0.0.1").build())])
            .unwrap();
        assert!(log.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_panic_while_applying_fails_the_index_for_good_and_names_the_object() {
        let shared = SharedIndex::new(Index::new(test_settings()));
        let mut log = shared.subscribe();
        let poisoned = pod("ns", "bad").build();
        let result = shared.apply_with(
            vec![
                Event::Apply(pod("ns", "good").ip("10.0.0.1").build()),
                Event::Apply(poisoned),
            ],
            |index, event| match event {
                Event::Apply(ambient_index::model::Object::Pod(p)) if p.meta.name == "bad" => {
                    panic!("invariant broken")
                }
                Event::Apply(obj) => index.apply(obj),
                _ => Changes::default(),
            },
        );
        let want = IndexFailed {
            object: "Pod/ns/bad".to_string(),
            message: "invariant broken".to_string(),
        };
        assert_eq!(result, Err(want.clone()));
        assert_eq!(shared.read().err(), Some(want.clone()));
        assert_eq!(shared.failure(), Some(&want));
        // Nothing of the half-applied batch is published, and later batches are refused.
        assert!(log.try_recv().is_err());
        assert_eq!(
            shared.apply(vec![Event::Delete(pod("ns", "good").build().object_ref())]),
            Err(want)
        );
    }
}
