//! Sources turn Kubernetes objects into [`Event`]s for the index. `files` reads a folder (or one file) of
//! YAML and watches it; the Kubernetes source feeds the same events.

pub mod files;
pub mod kube;

use ambient_index::model::{Object, ObjectRef};

/// One change a source reports. The index applies events in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Create or replace one object.
    Apply(Object),
    /// Remove one object (a no-op if the index does not hold it).
    Delete(ObjectRef),
    /// The complete current state: everything not listed is deleted.
    Reset(Vec<Object>),
}

/// A problem a source found in its input, kept so that `dump` and the debug API can show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct SourceDiagnostic {
    /// Where: `path:line` for files.
    pub location: String,
    /// `Kind/name` (or `Kind/namespace/name`) when it could be read, else empty.
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for SourceDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.object.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.object, self.message)
        }
    }
}
