//! The server's background work and the one order it stops in. Each piece is added as it starts, with
//! how it stops; [`TaskSet::shutdown`] first raises the stop signal (listeners watching it stop
//! accepting), then stops the pieces last-started first, so that nothing is stopped while something
//! started after it may still use it (the status writer before the Lease it writes under, the Lease
//! before the source both follow).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::debug;

/// How one piece stops.
enum Stop {
    /// Aborted.
    Abort(AbortHandle),
    /// Given up to `within` to end by itself after the stop signal, then aborted.
    Drain {
        task: JoinHandle<()>,
        within: Duration,
    },
    /// This future is run to completion (e.g. handing a Lease back).
    Run(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Dropped (a handle whose drop stops what it owns).
    Drop(Box<dyn Send>),
}

/// The pieces of a running server, in start order, and its stop signal.
pub struct TaskSet {
    stop: watch::Sender<bool>,
    pieces: Vec<(&'static str, Stop)>,
}

impl std::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.pieces.iter().map(|(name, _)| *name).collect();
        f.debug_struct("TaskSet").field("pieces", &names).finish()
    }
}

impl Default for TaskSet {
    fn default() -> Self {
        TaskSet::new()
    }
}

impl TaskSet {
    pub fn new() -> TaskSet {
        TaskSet {
            stop: watch::channel(false).0,
            pieces: Vec::new(),
        }
    }

    /// Completes when the stop signal is raised ([`TaskSet::signal_stop`] or [`TaskSet::shutdown`]).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }

    /// Raises the stop signal without stopping anything else yet.
    pub fn signal_stop(&self) {
        self.stop.send_replace(true);
    }

    /// A task aborted at shutdown.
    pub fn abort(&mut self, name: &'static str, task: AbortHandle) {
        self.pieces.push((name, Stop::Abort(task)));
    }

    /// A task that ends by itself on the stop signal; aborted if it takes longer than `within`.
    pub fn drain(&mut self, name: &'static str, task: JoinHandle<()>, within: Duration) {
        self.pieces.push((name, Stop::Drain { task, within }));
    }

    /// A future run at shutdown, in this piece's turn.
    pub fn run(&mut self, name: &'static str, stop: impl Future<Output = ()> + Send + 'static) {
        self.pieces.push((name, Stop::Run(Box::pin(stop))));
    }

    /// A value kept until this piece's turn, then dropped.
    pub fn hold(&mut self, name: &'static str, value: impl Send + 'static) {
        self.pieces.push((name, Stop::Drop(Box::new(value))));
    }

    /// Raises the stop signal, then stops every piece, last added first.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        while let Some((name, stop)) = self.pieces.pop() {
            match stop {
                Stop::Abort(task) => task.abort(),
                Stop::Drain { mut task, within } => {
                    if tokio::time::timeout(within, &mut task).await.is_err() {
                        debug!(task = name, ?within, "did not stop in time; aborted");
                        task.abort();
                    }
                }
                Stop::Run(stop) => stop.await,
                Stop::Drop(value) => drop(value),
            }
            debug!(task = name, "stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<&'static str>>>;

    struct Noted(Log, &'static str);

    impl Drop for Noted {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(self.1);
        }
    }

    #[tokio::test]
    async fn pieces_stop_last_started_first_after_the_signal() {
        let log: Log = Arc::default();
        let mut tasks = TaskSet::new();
        tasks.hold("source", Noted(Arc::clone(&log), "source"));
        let follower = tokio::spawn(std::future::pending::<()>());
        tasks.abort("follower", follower.abort_handle());
        let admin = tokio::spawn({
            let stopped = tasks.stopped();
            let log = Arc::clone(&log);
            async move {
                stopped.await;
                log.lock().unwrap().push("admin");
            }
        });
        tasks.drain("admin", admin, Duration::from_secs(30));
        tasks.run("lease", {
            let log = Arc::clone(&log);
            async move { log.lock().unwrap().push("lease") }
        });
        tasks.shutdown().await;
        assert_eq!(*log.lock().unwrap(), ["lease", "admin", "source"]);
        assert!(follower.await.is_err_and(|e| e.is_cancelled()));
    }

    #[tokio::test]
    async fn a_task_that_does_not_drain_in_time_is_aborted() {
        let mut tasks = TaskSet::new();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let stuck = tokio::spawn(async move {
            // Dropped, closing the channel, when the task is aborted.
            let _ended = ended_tx;
            std::future::pending::<()>().await;
        });
        tasks.drain("stuck", stuck, Duration::from_millis(10));
        tasks.shutdown().await;
        assert!(ended.await.is_err(), "the task was aborted");
    }
}
