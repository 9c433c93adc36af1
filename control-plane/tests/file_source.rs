//! The file source against real folders: initial load, reloads, broken files, conflicts and the watcher.

use std::path::Path;
use std::time::{Duration, Instant};

use ambient_control_plane::source::Event;
use ambient_control_plane::source::files::{FileSource, FileSourceError, watch};
use ambient_index::model::{Kind, Object, ObjectRef};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(10);

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn pod(namespace: &str, name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app: {app}\n\
         spec:\n  containers:\n  - name: main\n    image: example\nstatus:\n  podIP: 10.0.0.1\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn names(objects: &[Object]) -> Vec<String> {
    objects.iter().map(|o| o.object_ref().to_string()).collect()
}

fn describe(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Apply(o) => format!("apply {}", o.object_ref()),
            Event::Delete(r) => format!("delete {r}"),
            Event::Reset(objects) => format!("reset {}", objects.len()),
        })
        .collect()
}

fn app_label(object: &Object) -> Option<String> {
    match object {
        Object::Pod(p) => p.meta.labels.get("app").map(str::to_string),
        _ => None,
    }
}

/// A folder with nested directories, a `kind: List` file, a kind ambientd does not read and files that
/// must be skipped.
fn lab(dir: &Path) {
    write(
        dir,
        "namespaces.yaml",
        &format!("{}---\n{}", namespace("shop"), namespace("infra")),
    );
    write(
        dir,
        "apps/shop/web.yaml",
        &format!(
            "{}---\n{}",
            pod("shop", "web", "web"),
            pod("shop", "db", "db")
        ),
    );
    write(
        dir,
        "apps/infra/nested/deeper/svc.yml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: infra}\nspec:\n  selector: {app: api}\n  ports:\n  - port: 80\n",
    );
    write(
        dir,
        "snapshot/all.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Pod\n  metadata: {name: api-1, namespace: infra, labels: {app: api}}\n\
         - apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: api, namespace: infra}\n\
         - apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {name: strict, namespace: infra}\n  spec:\n    mtls: {mode: STRICT}\n    portLevelMtls:\n      8080: {mode: PERMISSIVE}\n\
         metadata: {resourceVersion: \"\"}\n",
    );
    write(dir, "apps/shop/.web.yaml.swp", "garbage");
    write(dir, "apps/shop/web.yaml~", &pod("shop", "backup", "x"));
    write(dir, ".git/config.yaml", &pod("shop", "hidden", "x"));
    write(dir, "README.md", "# not config\n");
}

#[test]
fn initial_load_reads_nested_folders_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, objects) = FileSource::open(dir.path()).unwrap();
    assert_eq!(
        names(&objects),
        vec![
            "Namespace/infra",
            "Namespace/shop",
            "Pod/infra/api-1",
            "Pod/shop/db",
            "Pod/shop/web",
            "Service/infra/api",
            "PeerAuthentication/infra/strict",
        ]
    );
    assert!(
        source.diagnostics().is_empty(),
        "{:?}",
        source.diagnostics()
    );
    assert_eq!(
        source
            .skipped_kinds()
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect::<Vec<_>>(),
        vec![("apps/v1/Deployment", 1)]
    );
    assert_eq!(names(&source.objects()), names(&objects));
}

#[test]
fn editing_a_pod_label_applies_only_that_pod() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (mut source, _) = FileSource::open(dir.path()).unwrap();
    write(
        dir.path(),
        "apps/shop/web.yaml",
        &format!(
            "{}---\n{}",
            pod("shop", "web", "web-v2"),
            pod("shop", "db", "db")
        ),
    );
    let events = source.reload_path(&dir.path().join("apps/shop/web.yaml"));
    assert_eq!(describe(&events), vec!["apply Pod/shop/web"]);
    let Event::Apply(pod) = &events[0] else {
        unreachable!()
    };
    assert_eq!(app_label(pod).as_deref(), Some("web-v2"));

    // Reading the same content again changes nothing.
    assert!(
        source
            .reload_path(&dir.path().join("apps/shop/web.yaml"))
            .is_empty()
    );
    assert!(source.rescan().is_empty());
}

#[test]
fn deleting_a_file_deletes_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (mut source, _) = FileSource::open(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("apps/shop/web.yaml")).unwrap();
    let events = source.reload_path(&dir.path().join("apps/shop/web.yaml"));
    assert_eq!(
        events,
        vec![
            Event::Delete(ObjectRef::new(Kind::Pod, "shop", "db")),
            Event::Delete(ObjectRef::new(Kind::Pod, "shop", "web")),
        ]
    );
    std::fs::remove_file(dir.path().join("snapshot/all.yaml")).unwrap();
    let events = source.rescan();
    assert_eq!(
        describe(&events),
        vec![
            "delete Pod/infra/api-1",
            "delete PeerAuthentication/infra/strict"
        ]
    );
    assert!(source.skipped_kinds().is_empty());
}

#[test]
fn broken_yaml_keeps_last_good_objects_and_fixing_applies_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let file = dir.path().join("apps/shop/web.yaml");
    let (mut source, _) = FileSource::open(dir.path()).unwrap();

    // A typo in the second document (which starts at line 15), on line 22: nothing is deleted.
    let broken = format!(
        "{}---\n{}",
        pod("shop", "web", "web"),
        pod("shop", "db", "db").replace("    app: db\n", "    app: db\n   tier: x\n")
    );
    write(dir.path(), "apps/shop/web.yaml", &broken);
    let events = source.reload_path(&file);
    assert!(events.is_empty(), "{:?}", describe(&events));
    assert_eq!(
        names(&source.objects())
            .iter()
            .filter(|n| n.starts_with("Pod/shop/"))
            .count(),
        2
    );
    let diagnostics = source.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    eprintln!("diagnostic: {d}");
    assert_eq!(d.location, format!("{}:22", file.display()));
    assert_eq!(d.object, "Pod/shop/db");

    // Still broken, and the first document now changes: it applies, `db` is still kept.
    let broken = broken.replacen("app: web", "app: web-v2", 1);
    write(dir.path(), "apps/shop/web.yaml", &broken);
    assert_eq!(
        describe(&source.reload_path(&file)),
        vec!["apply Pod/shop/web"]
    );

    // Fixed, with `db` gone and a new pod: the diff applies and the diagnostic disappears.
    write(
        dir.path(),
        "apps/shop/web.yaml",
        &format!(
            "{}---\n{}",
            pod("shop", "web", "web-v2"),
            pod("shop", "cache", "cache")
        ),
    );
    assert_eq!(
        describe(&source.reload_path(&file)),
        vec!["apply Pod/shop/cache", "delete Pod/shop/db"]
    );
    assert!(source.diagnostics().is_empty());
}

#[test]
fn invalid_field_is_reported_with_its_object() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (mut source, _) = FileSource::open(dir.path()).unwrap();
    let file = dir.path().join("apps/infra/nested/deeper/svc.yml");
    write(
        dir.path(),
        "apps/infra/nested/deeper/svc.yml",
        "# the api service\n\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: infra}\nspec:\n  ports:\n  - port: abc\n",
    );
    assert!(source.reload_path(&file).is_empty());
    let d = &source.diagnostics()[0];
    assert_eq!(d.location, format!("{}:3", file.display()));
    assert_eq!(d.object, "Service/infra/api");
    assert!(d.message.contains("\"abc\""), "{}", d.message);
}

#[test]
fn same_object_in_two_files_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (mut source, _) = FileSource::open(dir.path()).unwrap();
    write(
        dir.path(),
        "zz-copy.yaml",
        &format!("# copy\n{}", pod("shop", "web", "copy")),
    );
    let events = source.reload_path(&dir.path().join("zz-copy.yaml"));
    assert_eq!(describe(&events), vec!["apply Pod/shop/web"]);
    let diagnostics = source.diagnostics();
    assert_eq!(diagnostics.len(), 1);
    let d = &diagnostics[0];
    eprintln!("diagnostic: {d}");
    assert_eq!(d.object, "Pod/shop/web");
    assert_eq!(
        d.location,
        format!("{}:2", dir.path().join("zz-copy.yaml").display())
    );
    assert!(
        d.message.contains(&format!(
            "{}:1",
            dir.path().join("apps/shop/web.yaml").display()
        )),
        "{}",
        d.message
    );

    // Removing the copy restores the original definition; the diagnostic goes away.
    std::fs::remove_file(dir.path().join("zz-copy.yaml")).unwrap();
    let events = source.reload_path(&dir.path().join("zz-copy.yaml"));
    assert!(matches!(&events[..], [Event::Apply(p)] if app_label(p).as_deref() == Some("web")));
    assert!(source.diagnostics().is_empty());
}

#[test]
fn missing_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("deploy/x");
    let err = FileSource::open(&missing).unwrap_err();
    assert!(matches!(err, FileSourceError::Missing { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "config path {} does not exist: pass --config-dir with a folder or file of Kubernetes YAML",
            missing.display()
        )
    );
}

#[cfg(unix)]
#[test]
fn unreadable_entry_fails_the_initial_load_but_only_warns_later() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    // A symlink loop cannot be read, whoever runs the test.
    std::os::unix::fs::symlink("loop.yaml", dir.path().join("loop.yaml")).unwrap();
    let err = FileSource::open(dir.path()).unwrap_err();
    assert!(matches!(err, FileSourceError::Read { .. }), "{err}");
    assert!(err.to_string().contains("loop.yaml"), "{err}");

    std::fs::remove_file(dir.path().join("loop.yaml")).unwrap();
    let (mut source, _) = FileSource::open(dir.path()).unwrap();
    std::fs::remove_dir_all(dir.path().join("apps/shop")).unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    std::os::unix::fs::symlink("shop", dir.path().join("apps/shop")).unwrap();
    // `apps/shop` is now a symlink to itself: its pods are kept and the path is reported.
    let events = source.reload_path(&dir.path().join("apps/shop"));
    assert!(events.is_empty(), "{:?}", describe(&events));
    let diagnostics = source.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(
        diagnostics[0].location,
        dir.path().join("apps/shop").display().to_string()
    );
    assert!(
        diagnostics[0].message.starts_with("cannot read: "),
        "{}",
        diagnostics[0].message
    );
}

#[test]
fn single_file_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let file = dir.path().join("apps/shop/web.yaml");
    let (mut source, objects) = FileSource::open(&file).unwrap();
    assert_eq!(names(&objects), vec!["Pod/shop/db", "Pod/shop/web"]);
    // Other files next to it are not part of the source.
    assert!(
        source
            .reload_path(&dir.path().join("apps/shop/other.yaml"))
            .is_empty()
    );
    write(dir.path(), "apps/shop/web.yaml", &pod("shop", "web", "web"));
    assert_eq!(describe(&source.rescan()), vec!["delete Pod/shop/db"]);
}

/// Waits for batches until one satisfies `done`; returns every event seen.
async fn wait_for(
    rx: &mut mpsc::Receiver<Vec<Event>>,
    done: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(TIMEOUT, async {
        while let Some(batch) = rx.recv().await {
            let found = batch.iter().any(&done);
            seen.extend(batch);
            if found {
                return;
            }
        }
        panic!("the watcher stopped");
    })
    .await;
    assert!(
        result.is_ok(),
        "no matching event within {TIMEOUT:?}; saw {:?}",
        describe(&seen)
    );
    seen
}

fn is_apply(name: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Apply(o) if o.object_ref().to_string() == name)
}

fn is_delete(name: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Delete(r) if r.to_string() == name)
}

#[tokio::test]
async fn watcher_applies_a_new_file_and_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, _) = FileSource::open(dir.path()).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let handle = watch(source, tx).unwrap();

    let started = Instant::now();
    write(
        dir.path(),
        "apps/new/dir/extra.yaml",
        &pod("shop", "extra", "extra"),
    );
    let seen = wait_for(&mut rx, is_apply("Pod/shop/extra")).await;
    eprintln!(
        "watch latency (new file in a new folder -> Apply): {:?}",
        started.elapsed()
    );
    assert_eq!(describe(&seen), vec!["apply Pod/shop/extra"]);

    let started = Instant::now();
    write(
        dir.path(),
        "apps/new/dir/extra.yaml",
        &pod("shop", "extra", "extra-v2"),
    );
    let seen = wait_for(&mut rx, is_apply("Pod/shop/extra")).await;
    eprintln!("watch latency (edit -> Apply): {:?}", started.elapsed());
    assert_eq!(describe(&seen), vec!["apply Pod/shop/extra"]);
    assert!(matches!(&seen[0], Event::Apply(p) if app_label(p).as_deref() == Some("extra-v2")));

    let started = Instant::now();
    std::fs::remove_file(dir.path().join("apps/new/dir/extra.yaml")).unwrap();
    let seen = wait_for(&mut rx, is_delete("Pod/shop/extra")).await;
    eprintln!("watch latency (delete -> Delete): {:?}", started.elapsed());
    assert_eq!(describe(&seen), vec!["delete Pod/shop/extra"]);
    assert!(handle.diagnostics().is_empty());
}

#[tokio::test]
async fn watcher_reads_editor_saves_once_and_reports_broken_writes() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, _) = FileSource::open(dir.path()).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let handle = watch(source, tx).unwrap();
    let file = dir.path().join("apps/shop/web.yaml");

    // An editor-style save: write a temp file, move the original away, rename the temp into place.
    let started = Instant::now();
    write(
        dir.path(),
        "apps/shop/.web.yaml.tmp",
        &format!(
            "{}---\n{}",
            pod("shop", "web", "saved"),
            pod("shop", "db", "db")
        ),
    );
    std::fs::rename(&file, dir.path().join("apps/shop/web.yaml~")).unwrap();
    std::fs::rename(dir.path().join("apps/shop/.web.yaml.tmp"), &file).unwrap();
    let seen = wait_for(&mut rx, is_apply("Pod/shop/web")).await;
    eprintln!(
        "watch latency (rename save -> Apply): {:?}",
        started.elapsed()
    );
    assert_eq!(describe(&seen), vec!["apply Pod/shop/web"]);

    // A broken write sends nothing, then a write to another file shows the watcher kept going; the
    // broken file's objects are all still there and its diagnostic is current.
    write(
        dir.path(),
        "apps/shop/web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: [\n",
    );
    write(dir.path(), "marker.yaml", &namespace("marker"));
    let seen = wait_for(&mut rx, is_apply("Namespace/marker")).await;
    assert_eq!(describe(&seen), vec!["apply Namespace/marker"]);
    let deadline = Instant::now() + TIMEOUT;
    while handle.diagnostics().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let diagnostics = handle.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0]
            .location
            .starts_with(&format!("{}:", file.display()))
    );
    let pods: Vec<String> = names(&handle.objects())
        .into_iter()
        .filter(|n| n.starts_with("Pod/shop/"))
        .collect();
    assert_eq!(pods, vec!["Pod/shop/db", "Pod/shop/web"]);
}

#[tokio::test]
async fn watcher_on_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let file = dir.path().join("apps/shop/web.yaml");
    let (source, objects) = FileSource::open(&file).unwrap();
    assert_eq!(objects.len(), 2);
    let (tx, mut rx) = mpsc::channel(16);
    let _handle = watch(source, tx).unwrap();

    // A sibling file is not part of the source.
    write(
        dir.path(),
        "apps/shop/sibling.yaml",
        &pod("shop", "sibling", "x"),
    );

    let started = Instant::now();
    write(
        dir.path(),
        "apps/shop/web.yaml",
        &format!(
            "{}---\n{}",
            pod("shop", "web", "v2"),
            pod("shop", "db", "db")
        ),
    );
    let seen = wait_for(&mut rx, is_apply("Pod/shop/web")).await;
    eprintln!(
        "watch latency (single file edit -> Apply): {:?}",
        started.elapsed()
    );
    assert_eq!(describe(&seen), vec!["apply Pod/shop/web"]);

    // Replaced by rename, without `db`.
    write(
        dir.path(),
        "apps/shop/.web.yaml.new",
        &pod("shop", "web", "v2"),
    );
    std::fs::rename(dir.path().join("apps/shop/.web.yaml.new"), &file).unwrap();
    let seen = wait_for(&mut rx, is_delete("Pod/shop/db")).await;
    assert_eq!(describe(&seen), vec!["delete Pod/shop/db"]);

    std::fs::remove_file(&file).unwrap();
    let seen = wait_for(&mut rx, is_delete("Pod/shop/web")).await;
    assert_eq!(describe(&seen), vec!["delete Pod/shop/web"]);
}

/// A slow writer (`kubectl get -A -o yaml > snapshot.yaml`) holds the file open for longer than the
/// debounce cap: the file is read once, after the writer closes it, never half-written.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn watcher_waits_for_a_slow_writer_to_close_the_file() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, _) = FileSource::open(dir.path()).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let _handle = watch(source, tx).unwrap();

    let mut file = std::fs::File::create(dir.path().join("snapshot/slow.yaml")).unwrap();
    file.write_all(format!("{}---\n", pod("shop", "slow-1", "x")).as_bytes())
        .unwrap();
    file.flush().unwrap();
    // The writer is busy elsewhere for three debounce caps (this pause is the scenario, not a wait).
    std::thread::sleep(3 * Duration::from_millis(100));
    file.write_all(pod("shop", "slow-2", "x").as_bytes())
        .unwrap();
    let started = Instant::now();
    drop(file);

    // The first batch after the file appeared already holds both pods.
    let first = tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "watch latency (slow writer closes -> Apply): {:?}",
        started.elapsed()
    );
    assert_eq!(
        describe(&first),
        vec!["apply Pod/shop/slow-1", "apply Pod/shop/slow-2"]
    );
}

#[tokio::test]
async fn watcher_catches_up_on_changes_made_after_open() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, _) = FileSource::open(dir.path()).unwrap();
    write(dir.path(), "late.yaml", &namespace("late"));
    let (tx, mut rx) = mpsc::channel(16);
    let _handle = watch(source, tx).unwrap();
    let first = tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(describe(&first), vec!["apply Namespace/late"]);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path());
    let (source, _) = FileSource::open(dir.path()).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let handle = watch(source, tx).unwrap();
    drop(handle);
    // The watcher thread owns the only sender: the channel closes once it has stopped.
    let closed = tokio::time::timeout(TIMEOUT, rx.recv()).await.unwrap();
    assert!(closed.is_none());
}
