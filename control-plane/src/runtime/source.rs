//! The running source of a server: the config folder's watcher, or the Kubernetes watchers with the
//! client they share with the rest of [`crate::cluster`]. [`open`] starts it and gives the index to
//! start from: the folder's objects, or an empty index that the cluster's first sync fills.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ambient_index::Index;
use tokio::sync::mpsc;
use tracing::info;

use crate::metrics::Metrics;
use crate::source::files::{self, FileSource, WatchHandle};
use crate::source::kube::KubeHandle;
use crate::source::{Event, SourceDiagnostic};

use super::config::{ServeConfig, ServeSource};
use super::error::ServeError;

/// The running source that feeds the index. Dropping it stops it.
pub enum SourceHandle {
    Files {
        watch: WatchHandle,
        config_dir: PathBuf,
    },
    Kube {
        handle: KubeHandle,
        client: ::kube::Client,
        url: String,
    },
}

/// Starts the configured source; its batches of events go to `tx`.
pub async fn open(
    config: &ServeConfig,
    tx: mpsc::Sender<Vec<Event>>,
    metrics: &Metrics,
) -> Result<(Index, SourceHandle), ServeError> {
    match &config.source {
        ServeSource::Files { config_dir } => {
            let (source, objects) = FileSource::open(config_dir)?;
            let index = Index::build(config.settings.clone(), objects);
            let watch = files::watch(source, tx)?;
            Ok((
                index,
                SourceHandle::Files {
                    watch,
                    config_dir: config_dir.clone(),
                },
            ))
        }
        ServeSource::Kube(kube) => {
            let (client, url) = crate::cluster::client(kube.kubeconfig.as_deref()).await?;
            info!(%url, "reading the cluster");
            let handle = crate::source::kube::start(
                client.clone(),
                &kube.source,
                tx,
                metrics.source_error_counter("kube"),
            );
            Ok((
                Index::new(config.settings.clone()),
                SourceHandle::Kube {
                    handle,
                    client,
                    url,
                },
            ))
        }
    }
}

impl SourceHandle {
    /// The cluster's client, with the Kubernetes source.
    pub fn client(&self) -> Option<&::kube::Client> {
        match self {
            SourceHandle::Kube { client, .. } => Some(client),
            SourceHandle::Files { .. } => None,
        }
    }

    /// The source's current problems (documents or objects that could not be read).
    pub fn diagnostics_fn(&self) -> Arc<dyn Fn() -> Vec<SourceDiagnostic> + Send + Sync> {
        match self {
            SourceHandle::Files { watch, config_dir } => {
                let source = watch.source();
                let location = config_dir.display().to_string();
                Arc::new(move || file_diagnostics(&source, &location))
            }
            SourceHandle::Kube { handle, .. } => Arc::new(handle.diagnostics_fn()),
        }
    }

    /// The `source` label of `ambientd_source_errors_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SourceHandle::Files { .. } => "files",
            SourceHandle::Kube { .. } => "kube",
        }
    }
}

/// The file source's problems. Should a panic have interrupted its watcher while it was rereading,
/// what it holds may be half-updated and changes are no longer followed: that is the one problem
/// reported then.
fn file_diagnostics(source: &Mutex<FileSource>, location: &str) -> Vec<SourceDiagnostic> {
    match source.lock() {
        Ok(source) => source.diagnostics(),
        Err(_) => vec![SourceDiagnostic {
            location: location.to_string(),
            object: String::new(),
            message: "the config folder's watcher stopped after an internal error; changes are no \
                      longer followed: restart ambientd"
                .to_string(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_file_source_reports_that_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [\n").unwrap();
        let (source, _) = FileSource::open(dir.path()).unwrap();
        let source = Arc::new(Mutex::new(source));
        let read = file_diagnostics(&source, "cfg");
        assert_eq!(read.len(), 1, "{read:?}");
        assert!(read[0].location.contains("bad.yaml"), "{read:?}");

        let held = Arc::clone(&source);
        let _ = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("interrupted while rereading");
        })
        .join();
        assert_eq!(
            file_diagnostics(&source, "cfg"),
            [SourceDiagnostic {
                location: "cfg".to_string(),
                object: String::new(),
                message:
                    "the config folder's watcher stopped after an internal error; changes are \
                          no longer followed: restart ambientd"
                        .to_string(),
            }]
        );
    }
}
