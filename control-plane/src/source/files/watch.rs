//! Watching the file source's root for changes: notify events are debounced per path and each settled
//! batch of paths is re-read, sending the resulting [`Event`]s to the consumer.
//!
//! A path is re-read [`SETTLE`] after its last event, and never later than [`MAX_DELAY`] after its first
//! event of a burst, so an editor's write–rename–chmod sequence is read once and a busy path still
//! updates. A file that is open for writing (inotify reported a modification but not yet the close) is
//! not read half-written: it waits for the close, or for [`WRITE_QUIET`] without events if the writer
//! keeps it open. Folder scans leave files with pending events to their own reads. The work runs on a
//! dedicated thread; dropping the [`WatchHandle`] stops it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{FileSource, FileSourceError, Reread, Scope};
use crate::source::{Event, SourceDiagnostic};
use ambient_index::model::Object;

/// Quiet time after a path's last event before it is read.
pub const SETTLE: Duration = Duration::from_millis(30);
/// Longest a path waits after its first event, however busy it stays.
pub const MAX_DELAY: Duration = Duration::from_millis(100);
/// How long a file still open for writing may stay quiet before it is read anyway.
pub const WRITE_QUIET: Duration = Duration::from_secs(2);

/// Whether the platform's watcher reports a file being closed after writing (inotify does), so that
/// an unclosed write can be waited for.
const CLOSE_EVENTS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Most queued events noted before the due paths are read, so a flood cannot hold reads back.
const MAX_DRAIN: usize = 4096;

/// Keeps a watch running; dropping it stops watching. Gives read access to the source's state.
pub struct WatchHandle {
    source: Arc<Mutex<FileSource>>,
    control: std::sync::mpsc::Sender<Message>,
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle")
            .field("root", &lock(&self.source).root())
            .finish_non_exhaustive()
    }
}

impl WatchHandle {
    /// The source's current diagnostics.
    pub fn diagnostics(&self) -> Vec<SourceDiagnostic> {
        lock(&self.source).diagnostics()
    }

    /// Counts of skipped `apiVersion/kind`s.
    pub fn skipped_kinds(&self) -> BTreeMap<String, usize> {
        lock(&self.source).skipped_kinds().clone()
    }

    /// The objects in effect.
    pub fn objects(&self) -> Vec<Object> {
        lock(&self.source).objects()
    }

    /// The shared source, for views that need more than the accessors above.
    pub fn source(&self) -> Arc<Mutex<FileSource>> {
        Arc::clone(&self.source)
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.control.send(Message::Stop);
    }
}

enum Message {
    Notify(notify::Result<notify::Event>),
    Stop,
}

fn lock(source: &Mutex<FileSource>) -> MutexGuard<'_, FileSource> {
    source.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts watching the source's root (recursively for a folder; the parent folder, filtered to the
/// file, for a single file, so that editors replacing the file by rename are seen). Each settled batch
/// of changes is sent as one `Vec<Event>`; batches with no change are not sent. Changes made between
/// [`FileSource::open`] and this call are picked up by a first rescan.
pub fn watch(
    source: FileSource,
    tx: mpsc::Sender<Vec<Event>>,
) -> Result<WatchHandle, FileSourceError> {
    let scope = source.scope().clone();
    let watch_error = |source| FileSourceError::Watch {
        path: scope.root.clone(),
        source,
    };
    let (control, messages) = std::sync::mpsc::channel();
    let notify_tx = control.clone();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = notify_tx.send(Message::Notify(event));
    })
    .map_err(watch_error)?;
    let (target, mode) = if scope.single_file {
        let parent = scope.root_abs.parent().unwrap_or(&scope.root_abs);
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    } else {
        (scope.root_abs.clone(), RecursiveMode::Recursive)
    };
    watcher.watch(&target, mode).map_err(watch_error)?;

    // Catch up on changes made between `open` and now; later changes arrive as notify events.
    let mut source = source;
    let catch_up = source.reload_watched(&[&scope.root_abs], &HashSet::new(), Reread::Modified);

    let source = Arc::new(Mutex::new(source));
    let shared = Arc::clone(&source);
    let thread_scope = scope.clone();
    std::thread::Builder::new()
        .name("config-watch".to_string())
        .spawn(move || {
            if catch_up.is_empty() || tx.blocking_send(catch_up).is_ok() {
                run(&shared, &thread_scope, &messages, &tx);
            }
        })
        .map_err(|e| watch_error(notify::Error::io(e)))?;
    tracing::info!(path = %scope.root.display(), "watching config for changes");
    Ok(WatchHandle {
        source,
        control,
        _watcher: watcher,
    })
}

fn run(
    source: &Mutex<FileSource>,
    scope: &Scope,
    messages: &Receiver<Message>,
    tx: &mpsc::Sender<Vec<Event>>,
) {
    let mut pending = Debouncer::default();
    loop {
        let message = match pending.next_due() {
            None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => messages.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(Message::Notify(event)) => note_event(scope, event, &mut pending),
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Note everything already queued before deciding what is due, so that a folder scan knows
        // about every write reported so far.
        let mut stop = false;
        for message in messages.try_iter().take(MAX_DRAIN) {
            match message {
                Message::Notify(event) => note_event(scope, event, &mut pending),
                Message::Stop => stop = true,
            }
        }
        if stop {
            break;
        }
        let due = pending.take_due(Instant::now());
        if due.is_empty() {
            continue;
        }
        let started = Instant::now();
        // The root is due after a watch error or overflow, or a ConfigMap-style swap: read it all.
        let reread = if due.contains(&scope.root_abs) {
            Reread::All
        } else {
            Reread::Replaced
        };
        let events = lock(source).reload_watched(&due, &pending.paths(), reread);
        tracing::debug!(
            paths = due.len(),
            events = events.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "config change read"
        );
        if !events.is_empty() && tx.blocking_send(events).is_err() {
            break;
        }
        if tx.is_closed() {
            break;
        }
    }
    tracing::debug!(path = %scope.root.display(), "stopped watching config");
}

fn note_event(scope: &Scope, event: notify::Result<notify::Event>, pending: &mut Debouncer) {
    let now = Instant::now();
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(path = %scope.root.display(), "config watch error: {e}; reading everything again");
            pending.note(scope.root_abs.clone(), Activity::Other, now);
            return;
        }
    };
    if event.need_rescan() {
        pending.note(scope.root_abs.clone(), Activity::Other, now);
        return;
    }
    let activity = match event.kind {
        EventKind::Modify(ModifyKind::Data(_)) => Activity::Write,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Activity::Closed,
        // Opening and reading (our own reads included) change nothing.
        EventKind::Access(_) => return,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Activity::Closed,
        _ => Activity::Other,
    };
    for path in event.paths {
        if scope.is_atomic_writer_path(&path) {
            pending.note(scope.root_abs.clone(), Activity::Other, now);
        } else if scope.relative(&path).is_some() {
            pending.note(path, activity, now);
        }
    }
}

/// What an event says about a path, for debouncing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// Data was written: the file may still be open for writing.
    Write,
    /// The writer closed the file, or the path was renamed or removed.
    Closed,
    /// Anything else (created, attributes changed, ...).
    Other,
}

/// One path's current burst of events.
#[derive(Debug, Clone, Copy)]
struct Burst {
    first: Instant,
    last: Instant,
    /// Written and not closed since.
    writing: bool,
}

impl Burst {
    fn due(&self) -> Instant {
        if self.writing && CLOSE_EVENTS {
            self.last + WRITE_QUIET
        } else {
            (self.last + SETTLE).min(self.first + MAX_DELAY)
        }
    }
}

/// Per-path debouncing of notify events.
#[derive(Debug, Default)]
struct Debouncer {
    pending: HashMap<PathBuf, Burst>,
}

impl Debouncer {
    fn note(&mut self, path: PathBuf, activity: Activity, now: Instant) {
        let burst = self.pending.entry(path).or_insert(Burst {
            first: now,
            last: now,
            writing: false,
        });
        burst.last = now;
        match activity {
            Activity::Write => burst.writing = true,
            Activity::Closed => burst.writing = false,
            Activity::Other => {}
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(Burst::due).min()
    }

    /// Removes and returns (sorted) the paths whose burst has settled by `now`.
    fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, burst)| burst.due() <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in &due {
            self.pending.remove(path);
        }
        due.sort();
        due
    }

    /// The paths still waiting.
    fn paths(&self) -> HashSet<PathBuf> {
        self.pending.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_path_settles_after_its_last_event() {
        let t0 = Instant::now();
        let mut d = Debouncer::default();
        d.note("a".into(), Activity::Other, t0);
        d.note("a".into(), Activity::Other, t0 + ms(20));
        assert_eq!(d.next_due(), Some(t0 + ms(50)));
        assert!(d.take_due(t0 + ms(49)).is_empty());
        assert_eq!(d.take_due(t0 + ms(50)), vec![PathBuf::from("a")]);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_busy_path_is_read_within_the_maximum_delay() {
        let t0 = Instant::now();
        let mut d = Debouncer::default();
        for i in 0..20 {
            d.note("busy".into(), Activity::Other, t0 + ms(i * 10));
        }
        assert_eq!(d.next_due(), Some(t0 + MAX_DELAY));
        d.note("quiet".into(), Activity::Other, t0 + ms(90));
        assert_eq!(d.paths().len(), 2);
        assert_eq!(d.take_due(t0 + MAX_DELAY), vec![PathBuf::from("busy")]);
        assert_eq!(d.next_due(), Some(t0 + ms(120)));
    }

    #[test]
    fn a_file_open_for_writing_waits_for_its_close() {
        let t0 = Instant::now();
        let mut d = Debouncer::default();
        d.note("dump.yaml".into(), Activity::Other, t0);
        for i in 1..=30 {
            d.note("dump.yaml".into(), Activity::Write, t0 + ms(i * 10));
        }
        if CLOSE_EVENTS {
            assert_eq!(d.next_due(), Some(t0 + ms(300) + WRITE_QUIET));
            assert!(d.take_due(t0 + ms(400)).is_empty());
        }
        d.note("dump.yaml".into(), Activity::Closed, t0 + ms(500));
        // Closed long after the burst began: read at once.
        assert_eq!(d.take_due(t0 + ms(500)), vec![PathBuf::from("dump.yaml")]);
    }
}
