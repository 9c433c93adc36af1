//! The file source, ambientd's embedded default: a folder (read recursively) or a single file of
//! Kubernetes YAML or JSON, turned into [`Event`]s and kept up to date as the files change.
//!
//! This module owns the per-file state: the objects last accepted from each file, the problems found in
//! it, and which file's definition of an object is in effect when several files define it. A file with a
//! broken document keeps the objects it last contributed, so nothing already accepted is lost because of
//! a typo; deleting the file deletes its objects. [`watch()`] re-reads files as they change.
//!
//! Reading rules: files ending in `.yaml`, `.yml` or `.json`; hidden files and folders and editor temp
//! files are skipped; documents are split on `---` lines; `List` documents (and typed lists such as
//! `PodList`) are expanded; kinds ambientd does not read are counted and skipped.

mod parse;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::source::{Event, SourceDiagnostic};
use ambient_index::model::{Object, ObjectRef};

pub use self::watch::{WatchHandle, watch};

/// Why the file source cannot start (or keep) watching its path.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error(
        "config path {} does not exist: pass --config-dir with a folder or file of Kubernetes YAML",
        .path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "cannot read {}: {source}; make it readable by ambientd or move it out of the config folder",
        .path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot watch {} for changes: {source}; if an inotify limit was reached, raise fs.inotify.max_user_watches and fs.inotify.max_user_instances (sysctl)",
        .path.display()
    )]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// One accepted definition: the object and the line of the document that defined it.
#[derive(Debug, Clone)]
struct Def {
    object: Object,
    line: usize,
}

/// What the source remembers of one file.
#[derive(Debug, Default)]
struct FileState {
    /// The objects this file contributes: the last good read, plus (while the file has broken
    /// documents) objects kept from earlier reads.
    objects: BTreeMap<ObjectRef, Def>,
    /// Problems of the last read.
    problems: Vec<parse::Problem>,
    /// `apiVersion/kind` → how many objects of the last read were skipped.
    skipped: BTreeMap<String, usize>,
    /// The file as it was when last read.
    stamp: Option<Stamp>,
}

/// What tells whether a file changed since it was read without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// Device and inode, where the platform has them: a path whose file was replaced (folder swapped,
    /// renamed over) has a new identity, while a file written in place keeps it.
    id: Option<(u64, u64)>,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt as _;
            Some((meta.dev(), meta.ino()))
        };
        #[cfg(not(unix))]
        let id = None;
        Stamp {
            id,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// Which files it already knows a folder scan reads again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reread {
    /// Every file.
    All,
    /// Files whose size, modification time or identity changed since they were read.
    Modified,
    /// Files replaced by another file (new identity). Files written in place are left to their own
    /// watch events, so a scan never reads a file while another process writes it.
    Replaced,
}

impl Reread {
    fn needed(self, known: Option<Stamp>, now: Stamp) -> bool {
        let Some(known) = known else {
            return true;
        };
        match self {
            Reread::All => true,
            Reread::Modified => known != now,
            Reread::Replaced => now.id.is_none() || known.id != now.id,
        }
    }
}

/// Which paths belong to the source, relative to its root.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// The path as given (used in messages and diagnostics).
    root: PathBuf,
    /// The same path made absolute (not resolving symlinks), as the watcher reports it.
    root_abs: PathBuf,
    /// The root is one file rather than a folder.
    single_file: bool,
}

impl Scope {
    /// The path relative to the root, or `None` when the path is not part of the source (outside the
    /// root, or hidden, or an editor temp file). An empty path is the root itself.
    pub(crate) fn relative(&self, path: &Path) -> Option<PathBuf> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::path::absolute(path).ok()?
        };
        let rel = abs.strip_prefix(&self.root_abs).ok()?;
        if self.single_file && !rel.as_os_str().is_empty() {
            return None;
        }
        for component in rel.components() {
            match component {
                Component::Normal(name) if !is_ignored_name(name) => {}
                _ => return None,
            }
        }
        Some(rel.to_path_buf())
    }

    /// Kubernetes mounts ConfigMaps as `..data` symlinks swapped atomically: a change there means the
    /// whole folder must be read again.
    pub(crate) fn is_atomic_writer_path(&self, path: &Path) -> bool {
        !self.single_file
            && path
                .strip_prefix(&self.root_abs)
                .ok()
                .and_then(|rel| rel.components().next())
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(".."))
    }

    fn display(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root_abs.clone()
        } else {
            self.root_abs.join(rel)
        }
    }
}

/// Hidden entries and editor temp files (`.#x`, `x~`, `.x.swp`, `#x#`).
fn is_ignored_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || [".swp", ".swo", ".swx"].iter().any(|s| name.ends_with(s))
}

fn has_config_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["yaml", "yml", "json"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// What a scan decided for one file.
enum Change {
    /// Read and parsed.
    Read(parse::Parsed, Option<Stamp>),
    /// Gone.
    Removed,
}

/// The file source: the accepted objects of every file under the root, kept current by
/// [`FileSource::reload_path`] / [`FileSource::rescan`], each returning the events that bring a consumer
/// from the previous state to the new one.
#[derive(Debug)]
pub struct FileSource {
    scope: Scope,
    /// Keyed by the path relative to the root (empty for a single-file source).
    files: BTreeMap<PathBuf, FileState>,
    /// Files and folders that could not be read during watching (relative path → reason).
    read_errors: BTreeMap<PathBuf, String>,
    /// Every file defining an object, in order of precedence: the last one is in effect.
    owners: HashMap<ObjectRef, Vec<PathBuf>>,
    /// Totals of the per-file skipped counts.
    skipped: BTreeMap<String, usize>,
}

impl FileSource {
    /// Reads a folder (recursively) or a single file. Returns the source and every accepted object.
    /// Documents that fail to parse do not fail the load; they become [`FileSource::diagnostics`].
    pub fn open(path: impl Into<PathBuf>) -> Result<(FileSource, Vec<Object>), FileSourceError> {
        let root: PathBuf = path.into();
        let meta = match std::fs::metadata(&root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FileSourceError::Missing { path: root });
            }
            Err(source) => return Err(FileSourceError::Read { path: root, source }),
        };
        let root_abs = std::path::absolute(&root).map_err(|source| FileSourceError::Read {
            path: root.clone(),
            source,
        })?;
        let mut source = FileSource {
            scope: Scope {
                root,
                root_abs,
                single_file: !meta.is_dir(),
            },
            files: BTreeMap::new(),
            read_errors: BTreeMap::new(),
            owners: HashMap::new(),
            skipped: BTreeMap::new(),
        };

        let mut changes = BTreeMap::new();
        if source.scope.single_file {
            let change = source
                .read(Path::new(""))
                .map_err(|(path, source)| FileSourceError::Read { path, source })?;
            changes.insert(PathBuf::new(), change);
        } else {
            let mut found = Vec::new();
            let mut errors = Vec::new();
            source.scan(Path::new(""), &mut found, &mut errors, &mut HashSet::new());
            let found = found.into_iter().map(|(rel, _)| rel);
            if let Some((rel, err)) = errors.into_iter().next() {
                return Err(FileSourceError::Read {
                    path: source.scope.display(&rel),
                    source: err,
                });
            }
            for rel in found {
                let change = source
                    .read(&rel)
                    .map_err(|(path, source)| FileSourceError::Read { path, source })?;
                changes.insert(rel, change);
            }
        }
        let file_count = changes.len();
        source.apply(changes, false);

        let objects = source.objects();
        tracing::info!(
            path = %source.scope.root.display(),
            files = file_count,
            objects = objects.len(),
            skipped = source.skipped.values().sum::<usize>(),
            "loaded config"
        );
        for d in source.diagnostics() {
            tracing::warn!("{d}");
        }
        Ok((source, objects))
    }

    /// The path the source was opened with.
    pub fn root(&self) -> &Path {
        &self.scope.root
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Re-reads one path that changed, appeared or disappeared (a file, or a folder and everything
    /// under it) and returns the events for what changed. Paths outside the source are ignored.
    pub fn reload_path(&mut self, path: &Path) -> Vec<Event> {
        self.reload_paths(&[path])
    }

    /// [`FileSource::reload_path`] for several paths at once; an object moving between two of them
    /// produces one `Apply`, not a `Delete` and an `Apply`.
    pub fn reload_paths<P: AsRef<Path>>(&mut self, paths: &[P]) -> Vec<Event> {
        self.reload_watched(paths, &HashSet::new(), Reread::All)
    }

    /// [`FileSource::reload_paths`] as the watcher needs it: folder scans leave alone the files in
    /// `busy` (absolute paths of files the watcher will read on their own once their writes settle)
    /// and read again only the known files that `reread` asks for.
    pub(crate) fn reload_watched<P: AsRef<Path>>(
        &mut self,
        paths: &[P],
        busy: &HashSet<PathBuf>,
        reread: Reread,
    ) -> Vec<Event> {
        let before: BTreeSet<SourceDiagnostic> = self.diagnostics().into_iter().collect();
        let mut changes = BTreeMap::new();
        let mut rels: Vec<PathBuf> = paths
            .iter()
            .filter_map(|p| self.scope.relative(p.as_ref()))
            .collect();
        rels.sort();
        rels.dedup();
        for rel in rels {
            self.collect_changes(&rel, busy, reread, &mut changes);
        }
        let events = self.apply(changes, true);
        for d in self.diagnostics() {
            if !before.contains(&d) {
                tracing::warn!("{d}");
            }
        }
        events
    }

    /// Reads everything again and returns the events for what changed.
    pub fn rescan(&mut self) -> Vec<Event> {
        let root = self.scope.root_abs.clone();
        self.reload_paths(&[root])
    }

    /// The current problems: broken documents, unreadable files, objects defined by several files.
    /// Sorted by path, then line.
    pub fn diagnostics(&self) -> Vec<SourceDiagnostic> {
        let mut out: Vec<(PathBuf, usize, SourceDiagnostic)> = Vec::new();
        for (rel, state) in &self.files {
            let path = self.scope.display(rel);
            for p in &state.problems {
                out.push((
                    path.clone(),
                    p.line,
                    SourceDiagnostic {
                        location: format!("{}:{}", path.display(), p.line),
                        object: p.object.clone(),
                        message: p.message.clone(),
                    },
                ));
            }
        }
        for (rel, reason) in &self.read_errors {
            let path = self.scope.display(rel);
            out.push((
                path.clone(),
                0,
                SourceDiagnostic {
                    location: path.display().to_string(),
                    object: String::new(),
                    message: reason.clone(),
                },
            ));
        }
        for (object, files) in &self.owners {
            let [others @ .., winner] = files.as_slice() else {
                continue;
            };
            if others.is_empty() {
                continue;
            }
            let line_of = |rel: &PathBuf| {
                self.files
                    .get(rel)
                    .and_then(|s| s.objects.get(object))
                    .map_or(0, |d| d.line)
            };
            let winner_path = self.scope.display(winner);
            let mut message = String::from("also defined in ");
            for (i, other) in others.iter().rev().enumerate() {
                if i > 0 {
                    message.push_str(", ");
                }
                let _ = write!(
                    message,
                    "{}:{}",
                    self.scope.display(other).display(),
                    line_of(other)
                );
            }
            let _ = write!(
                message,
                "; the definition in {} (changed last) is in effect",
                winner_path.display()
            );
            let line = line_of(winner);
            out.push((
                winner_path.clone(),
                line,
                SourceDiagnostic {
                    location: format!("{}:{line}", winner_path.display()),
                    object: object.to_string(),
                    message,
                },
            ));
        }
        out.sort();
        out.into_iter().map(|(_, _, d)| d).collect()
    }

    /// How many objects of each `apiVersion/kind` ambientd does not read were skipped.
    pub fn skipped_kinds(&self) -> &BTreeMap<String, usize> {
        &self.skipped
    }

    /// The objects in effect, sorted by kind, namespace and name.
    pub fn objects(&self) -> Vec<Object> {
        let mut refs: Vec<&ObjectRef> = self.owners.keys().collect();
        refs.sort();
        refs.into_iter()
            .filter_map(|r| self.in_effect(r).cloned())
            .collect()
    }

    /// The definition in effect for an object.
    fn in_effect(&self, object: &ObjectRef) -> Option<&Object> {
        let file = self.owners.get(object)?.last()?;
        self.files.get(file)?.objects.get(object).map(|d| &d.object)
    }

    /// Reads one file. `Err` carries the display path and the I/O error.
    fn read(&self, rel: &Path) -> Result<Change, (PathBuf, io::Error)> {
        let abs = self.scope.abs(rel);
        let read = || -> io::Result<(Vec<u8>, Option<Stamp>)> {
            let mut file = std::fs::File::open(&abs)?;
            let stamp = Some(Stamp::of(&file.metadata()?));
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut file, &mut bytes)?;
            Ok((bytes, stamp))
        };
        let (bytes, stamp) = match read() {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Change::Removed),
            Err(e) => return Err((self.scope.display(rel), e)),
        };
        let parsed = match String::from_utf8(bytes) {
            Ok(text) => parse::parse_file(&text, parse::is_json(&abs)),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..valid]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                let mut parsed = parse::Parsed::default();
                parsed.problems.push(parse::Problem {
                    line,
                    object: String::new(),
                    message: "the file is not valid UTF-8".to_string(),
                });
                parsed
            }
        };
        Ok(Change::Read(parsed, stamp))
    }

    /// Lists the config files under a folder (relative paths, with their identity), recording folders
    /// and entries that cannot be read. Symlinks are followed; a folder reached twice is read once.
    fn scan(
        &self,
        rel: &Path,
        found: &mut Vec<(PathBuf, Stamp)>,
        errors: &mut Vec<(PathBuf, io::Error)>,
        visited: &mut HashSet<PathBuf>,
    ) {
        let abs = self.scope.abs(rel);
        if let Ok(canonical) = abs.canonicalize()
            && !visited.insert(canonical)
        {
            return;
        }
        let entries = match std::fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push((rel.to_path_buf(), e));
                return;
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name();
                    if !is_ignored_name(&name) {
                        children.push(name);
                    }
                }
                Err(e) => errors.push((rel.to_path_buf(), e)),
            }
        }
        children.sort();
        for name in children {
            let child = rel.join(&name);
            match std::fs::metadata(abs.join(&name)) {
                Ok(m) if m.is_dir() => self.scan(&child, found, errors, visited),
                Ok(m) if m.is_file() && has_config_extension(&child) => {
                    found.push((child, Stamp::of(&m)));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!(path = %self.scope.display(&child).display(), "skipping a dangling symlink");
                }
                Err(e) => errors.push((child, e)),
            }
        }
    }

    /// Works out what happened at one path (relative to the root) and records it in `changes`.
    /// Unreadable paths become read errors and keep their files' last state.
    fn collect_changes(
        &mut self,
        rel: &Path,
        busy: &HashSet<PathBuf>,
        reread: Reread,
        changes: &mut BTreeMap<PathBuf, Change>,
    ) {
        let abs = self.scope.abs(rel);
        let under = |p: &Path| p.starts_with(rel);
        match std::fs::metadata(&abs) {
            Ok(m) if m.is_dir() && !self.scope.single_file => {
                let mut found = Vec::new();
                let mut errors = Vec::new();
                self.scan(rel, &mut found, &mut errors, &mut HashSet::new());
                let is_busy = |p: &Path| busy.contains(&self.scope.abs(p));
                let found: BTreeMap<PathBuf, Stamp> =
                    found.into_iter().filter(|(p, _)| !is_busy(p)).collect();
                let gone: Vec<PathBuf> = self
                    .files
                    .keys()
                    .filter(|p| under(p) && !found.contains_key(*p) && !is_busy(p))
                    // Keep files below a folder that could not be listed.
                    .filter(|p| !errors.iter().any(|(e, _)| p.starts_with(e)))
                    .cloned()
                    .collect();
                for p in gone {
                    changes.insert(p, Change::Removed);
                }
                self.read_errors.retain(|p, _| !under(p));
                for (p, e) in errors {
                    self.read_errors.insert(p, read_error_message(&e));
                }
                for (file, stamp) in found {
                    let known = self.files.get(&file).and_then(|s| s.stamp);
                    if reread.needed(known, stamp) {
                        self.read_into(&file, changes);
                    }
                }
            }
            Ok(m) if m.is_file() && (self.scope.single_file || has_config_extension(rel)) => {
                self.read_into(rel, changes);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if rel.as_os_str().is_empty() && !self.scope.single_file {
                    self.read_errors.insert(
                        PathBuf::new(),
                        "the config folder no longer exists; keeping the objects last read from it \
                         (restart ambientd once it is back)"
                            .to_string(),
                    );
                    return;
                }
                self.read_errors.retain(|p, _| !under(p));
                for gone in self.files.keys().filter(|p| under(p)) {
                    changes.insert(gone.clone(), Change::Removed);
                }
            }
            Err(e) => {
                self.read_errors
                    .insert(rel.to_path_buf(), read_error_message(&e));
            }
        }
    }

    fn read_into(&mut self, rel: &Path, changes: &mut BTreeMap<PathBuf, Change>) {
        match self.read(rel) {
            Ok(change) => {
                self.read_errors.remove(rel);
                changes.insert(rel.to_path_buf(), change);
            }
            Err((_, e)) => {
                self.read_errors
                    .insert(rel.to_path_buf(), read_error_message(&e));
            }
        }
    }

    /// Applies file changes to the state and returns the events that take a consumer from the objects
    /// in effect before to those in effect after.
    fn apply(&mut self, changes: BTreeMap<PathBuf, Change>, log: bool) -> Vec<Event> {
        // What was in effect before, for every object any change touches.
        let mut before: BTreeMap<ObjectRef, Option<Object>> = BTreeMap::new();
        for (rel, change) in changes {
            let none = FileState::default();
            let old = self.files.get(&rel).unwrap_or(&none);
            let new = match change {
                Change::Removed => None,
                Change::Read(parsed, stamp) => Some(FileState {
                    stamp,
                    ..self.accept(&rel, old, parsed)
                }),
            };
            let empty = BTreeMap::new();
            let new_objects = new.as_ref().map_or(&empty, |s| &s.objects);
            let removed: Vec<ObjectRef> = old
                .objects
                .keys()
                .filter(|r| !new_objects.contains_key(*r))
                .cloned()
                .collect();
            let changed: Vec<ObjectRef> = new_objects
                .iter()
                .filter(|(r, d)| old.objects.get(*r).is_none_or(|o| o.object != d.object))
                .map(|(r, _)| r.clone())
                .collect();
            for r in removed.iter().chain(&changed) {
                if !before.contains_key(r) {
                    before.insert(r.clone(), self.in_effect(r).cloned());
                }
            }

            self.files.remove(&rel);
            for r in &removed {
                if let Some(files) = self.owners.get_mut(r) {
                    files.retain(|f| f != &rel);
                    if files.is_empty() {
                        self.owners.remove(r);
                    }
                }
            }
            // A changed definition takes effect over other files' definitions of the same object.
            for r in &changed {
                let files = self.owners.entry(r.clone()).or_default();
                files.retain(|f| f != &rel);
                files.push(rel.clone());
            }
            if log {
                let path = self.scope.display(&rel);
                if new.is_none() {
                    tracing::info!("removed {}: {} deleted", path.display(), removed.len());
                } else if changed.is_empty() && removed.is_empty() {
                    tracing::debug!("reloaded {}: unchanged", path.display());
                } else {
                    tracing::info!(
                        "reloaded {}: {} applied, {} deleted",
                        path.display(),
                        changed.len(),
                        removed.len()
                    );
                }
            }
            if let Some(state) = new {
                self.files.insert(rel, state);
            }
        }
        self.skipped = BTreeMap::new();
        for state in self.files.values() {
            for (kind, n) in &state.skipped {
                *self.skipped.entry(kind.clone()).or_default() += n;
            }
        }

        let mut events = Vec::new();
        for (r, old) in before {
            match (old, self.in_effect(&r)) {
                (Some(old), Some(new)) if &old == new => {}
                (_, Some(new)) => events.push(Event::Apply(new.clone())),
                (Some(_), None) => events.push(Event::Delete(r)),
                (None, None) => {}
            }
        }
        events
    }

    /// Builds a file's new state from a read. If any document failed, objects the file contributed
    /// before and no longer parses are kept.
    fn accept(&self, rel: &Path, old: &FileState, parsed: parse::Parsed) -> FileState {
        let mut state = FileState {
            problems: parsed.problems,
            ..FileState::default()
        };
        let failed = !state.problems.is_empty();
        for kind in parsed.skipped {
            *state.skipped.entry(kind).or_default() += 1;
        }
        for (object, line) in parsed.objects {
            let r = object.object_ref();
            if let Some(earlier) = state.objects.get(&r) {
                state.problems.push(parse::Problem {
                    line,
                    object: r.to_string(),
                    message: format!(
                        "also defined at line {} of this file; this later definition is used",
                        earlier.line
                    ),
                });
            }
            state.objects.insert(r, Def { object, line });
        }
        if failed {
            let mut kept = 0;
            for (r, def) in &old.objects {
                if !state.objects.contains_key(r) {
                    state.objects.insert(r.clone(), def.clone());
                    kept += 1;
                }
            }
            if kept > 0 {
                tracing::warn!(
                    path = %self.scope.display(rel).display(),
                    kept,
                    "keeping objects from the last good read until the file's errors are fixed"
                );
            }
        }
        state
    }
}

fn read_error_message(e: &io::Error) -> String {
    format!("cannot read: {e}; keeping the objects last read from it")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_index::model::Kind;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    fn pod(name: &str, app: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    app: {app}\n"
        )
    }

    fn names(objects: &[Object]) -> Vec<String> {
        objects.iter().map(|o| o.object_ref().to_string()).collect()
    }

    fn event_names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Apply(o) => format!("apply {}", o.object_ref()),
                Event::Delete(r) => format!("delete {r}"),
                Event::Reset(_) => "reset".to_string(),
            })
            .collect()
    }

    #[test]
    fn parse_error_location_is_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{}---\n# comment\n\napiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n  namespace: shop\nspec: 5\n",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
        );
        write(dir.path(), "app.yaml", &text);
        let (source, objects) = FileSource::open(dir.path()).unwrap();
        assert_eq!(names(&objects), vec!["Namespace/shop"]);
        let diagnostics = source.diagnostics();
        assert_eq!(diagnostics.len(), 1);
        let expected = format!(
            "{}:7: Pod/shop/broken: spec: invalid type: integer `5`, expected PodSpec",
            dir.path().join("app.yaml").display()
        );
        assert_eq!(diagnostics[0].to_string(), expected);
    }

    #[test]
    fn yaml_error_line_is_absolute() {
        let dir = tempfile::tempdir().unwrap();
        // The second document starts at line 5; its error is on line 10.
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\n\
                    kind: Service\nmetadata:\n  name: api\n  namespace: shop\n labels: {a: b}\n";
        write(dir.path(), "svc.yaml", text);
        let (source, _) = FileSource::open(dir.path()).unwrap();
        let d = &source.diagnostics()[0];
        assert_eq!(
            d.location,
            format!("{}:10", dir.path().join("svc.yaml").display())
        );
        assert_eq!(d.object, "Service/shop/api");
        eprintln!("{d}");
    }

    #[test]
    fn invalid_field_names_the_object() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  ports:\n  - port: abc\n",
        );
        let (source, objects) = FileSource::open(dir.path()).unwrap();
        assert!(objects.is_empty());
        let d = &source.diagnostics()[0];
        assert_eq!(d.object, "Service/shop/api");
        assert!(d.location.ends_with("svc.yaml:1"), "{}", d.location);
        assert!(d.message.contains("\"abc\""), "{}", d.message);
    }

    #[test]
    fn skipped_kinds_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        );
        write(
            dir.path(),
            "b/c.yml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\n",
        );
        let (mut source, objects) = FileSource::open(dir.path()).unwrap();
        assert!(objects.is_empty());
        let expected: BTreeMap<String, usize> = [
            ("apps/v1/Deployment".to_string(), 1),
            ("v1/ConfigMap".to_string(), 2),
        ]
        .into();
        assert_eq!(source.skipped_kinds(), &expected);
        std::fs::remove_file(dir.path().join("b/c.yml")).unwrap();
        assert!(source.rescan().is_empty());
        assert_eq!(source.skipped_kinds().get("v1/ConfigMap"), Some(&1));
    }

    #[test]
    fn hidden_and_temp_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &pod("a", "x"));
        for rel in [
            ".hidden.yaml",
            ".git/b.yaml",
            "c.yaml~",
            ".#d.yaml",
            "e.yaml.swp",
            "notes.txt",
            "#f.yaml#",
        ] {
            write(dir.path(), rel, &pod("skipped", "x"));
        }
        let (mut source, objects) = FileSource::open(dir.path()).unwrap();
        assert_eq!(names(&objects), vec!["Pod/shop/a"]);
        assert!(source.reload_path(&dir.path().join("c.yaml~")).is_empty());
        assert!(
            source
                .reload_path(&dir.path().join(".git/b.yaml"))
                .is_empty()
        );
    }

    #[test]
    fn broken_file_keeps_last_good_objects_then_fix_applies_the_diff() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pods.yaml");
        write(
            dir.path(),
            "pods.yaml",
            &format!("{}---\n{}", pod("a", "x"), pod("b", "x")),
        );
        let (mut source, _) = FileSource::open(dir.path()).unwrap();

        // `a` changes, `b` is broken: `a` applies, `b` stays.
        write(
            dir.path(),
            "pods.yaml",
            &format!("{}---\n{}  bad: [\n", pod("a", "y"), pod("b", "x")),
        );
        let events = source.reload_path(&file);
        assert_eq!(event_names(&events), vec!["apply Pod/shop/a"]);
        assert_eq!(names(&source.objects()), vec!["Pod/shop/a", "Pod/shop/b"]);
        assert_eq!(source.diagnostics().len(), 1);

        // Fixed without `b`: `b` is deleted and the diagnostic is gone.
        write(dir.path(), "pods.yaml", &pod("a", "y"));
        let events = source.reload_path(&file);
        assert_eq!(event_names(&events), vec!["delete Pod/shop/b"]);
        assert!(source.diagnostics().is_empty());
    }

    #[test]
    fn object_in_two_files_stays_while_one_defines_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &pod("p", "from-a"));
        write(dir.path(), "b.yaml", &pod("p", "from-b"));
        let (mut source, objects) = FileSource::open(dir.path()).unwrap();
        let label = |o: &Object| match o {
            Object::Pod(p) => p.meta.labels.get("app").unwrap_or_default().to_string(),
            _ => String::new(),
        };
        // Read in path order: b.yaml was read last and is in effect.
        assert_eq!(
            objects.iter().map(label).collect::<Vec<_>>(),
            vec!["from-b"]
        );
        let d = source.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].object, "Pod/shop/p");
        assert!(d[0].location.ends_with("b.yaml:1"));
        assert!(d[0].message.contains("a.yaml:1"), "{}", d[0].message);

        // Editing a.yaml makes its definition the one in effect.
        write(dir.path(), "a.yaml", &pod("p", "from-a2"));
        let events = source.reload_path(&dir.path().join("a.yaml"));
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0], Event::Apply(o) if label(o) == "from-a2"));

        // Deleting a.yaml falls back to b.yaml's definition; deleting both deletes the pod.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let events = source.reload_path(&dir.path().join("a.yaml"));
        assert!(matches!(&events[..], [Event::Apply(o)] if label(o) == "from-b"));
        assert!(source.diagnostics().is_empty());
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        let events = source.reload_path(&dir.path().join("b.yaml"));
        assert_eq!(
            events,
            vec![Event::Delete(ObjectRef::new(Kind::Pod, "shop", "p"))]
        );
    }

    #[test]
    fn moving_an_object_between_files_in_one_batch_is_one_apply() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &pod("p", "x"));
        let (mut source, _) = FileSource::open(dir.path()).unwrap();
        std::fs::rename(dir.path().join("a.yaml"), dir.path().join("b.yaml")).unwrap();
        let events = source.reload_paths(&[dir.path().join("a.yaml"), dir.path().join("b.yaml")]);
        assert!(events.is_empty(), "{:?}", event_names(&events));
        assert_eq!(names(&source.objects()), vec!["Pod/shop/p"]);
    }

    #[test]
    fn removed_folder_deletes_its_files_objects() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "keep.yaml", &pod("k", "x"));
        write(dir.path(), "sub/deep/a.yaml", &pod("a", "x"));
        let (mut source, objects) = FileSource::open(dir.path()).unwrap();
        assert_eq!(objects.len(), 2);
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let events = source.reload_path(&dir.path().join("sub"));
        assert_eq!(event_names(&events), vec!["delete Pod/shop/a"]);
    }

    #[cfg(unix)]
    #[test]
    fn watched_folder_scans_leave_in_place_writes_to_their_own_events() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/a.yaml", &pod("a", "x"));
        write(dir.path(), "sub/b.yaml", &pod("b", "x"));
        let (mut source, _) = FileSource::open(dir.path()).unwrap();
        let sub = dir.path().join("sub");

        // Written in place (same inode), e.g. truncated by a writer whose events are still in flight:
        // a folder scan leaves it alone; its own event reads it.
        std::fs::write(dir.path().join("sub/a.yaml"), "").unwrap();
        assert!(
            source
                .reload_watched(&[&sub], &HashSet::new(), Reread::Replaced)
                .is_empty()
        );
        assert_eq!(
            event_names(&source.reload_path(&sub.join("a.yaml"))),
            vec!["delete Pod/shop/a"]
        );

        // Replaced by rename (new inode): the folder scan reads it.
        write(dir.path(), "b.new", &pod("b", "y"));
        std::fs::rename(dir.path().join("b.new"), sub.join("b.yaml")).unwrap();
        let events = source.reload_watched(&[&sub], &HashSet::new(), Reread::Replaced);
        assert_eq!(event_names(&events), vec!["apply Pod/shop/b"]);

        // Busy files are neither read nor removed by a scan.
        std::fs::remove_file(sub.join("b.yaml")).unwrap();
        let busy: HashSet<PathBuf> = [sub.join("b.yaml")].into();
        assert!(
            source
                .reload_watched(&[&sub], &busy, Reread::All)
                .is_empty()
        );
        assert_eq!(names(&source.objects()), vec!["Pod/shop/b"]);
    }

    #[test]
    fn reread_rules() {
        let stamp = |id, len| Stamp {
            id,
            len,
            modified: None,
        };
        let known = Some(stamp(Some((1, 1)), 10));
        assert!(Reread::All.needed(known, stamp(Some((1, 1)), 10)));
        assert!(!Reread::Modified.needed(known, stamp(Some((1, 1)), 10)));
        assert!(Reread::Modified.needed(known, stamp(Some((1, 1)), 11)));
        assert!(!Reread::Replaced.needed(known, stamp(Some((1, 1)), 11)));
        assert!(Reread::Replaced.needed(known, stamp(Some((1, 2)), 10)));
        assert!(Reread::Replaced.needed(known, stamp(None, 10)));
        for reread in [Reread::All, Reread::Modified, Reread::Replaced] {
            assert!(reread.needed(None, stamp(Some((1, 1)), 10)));
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope {
            root: dir.path().to_path_buf(),
            root_abs: dir.path().to_path_buf(),
            single_file: false,
        };
        assert_eq!(
            scope.relative(&dir.path().join("a/b.yaml")),
            Some(PathBuf::from("a/b.yaml"))
        );
        assert_eq!(scope.relative(dir.path()), Some(PathBuf::new()));
        assert_eq!(scope.relative(&dir.path().join(".git/x.yaml")), None);
        assert_eq!(scope.relative(Path::new("/elsewhere/x.yaml")), None);
        assert!(scope.is_atomic_writer_path(&dir.path().join("..data")));
        assert!(!scope.is_atomic_writer_path(&dir.path().join(".git")));
    }
}
