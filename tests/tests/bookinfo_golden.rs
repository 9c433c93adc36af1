//! The whole `ambientd dump` of the bookinfo example against a reviewed golden file.
//!
//! Run with `AMBIENTD_BLESS=1` to rewrite the golden file after an intended change, then review the diff.

use std::path::{Path, PathBuf};

use ambient_control_plane::source::files::FileSource;
use ambient_index::{Enrollment, Index, Settings};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check_golden(example: &str, golden_name: &str) {
    let (source, objects) =
        FileSource::open(root().join("deploy/examples").join(example)).expect("load example");
    let settings = Settings {
        enrollment: Enrollment::Labels,
        ..Settings::default()
    };
    let index = Index::build(settings, objects);
    let doc = ambient_control_plane::dump::dump(&index, &source.diagnostics()).expect("dump");
    let got = serde_json::to_string_pretty(&doc).expect("json") + "\n";
    let golden = root().join("tests/golden").join(golden_name);
    if std::env::var_os("AMBIENTD_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (AMBIENTD_BLESS=1 creates it)");
    assert!(
        got == want,
        "dump differs from {}; rerun with AMBIENTD_BLESS=1 and review the diff",
        golden.display()
    );
}

#[test]
fn bookinfo_dump_matches_golden() {
    check_golden("bookinfo", "bookinfo-dump.json");
}

/// The white paper's cluster before its last step: the sidecar-era policies with HTTP methods are still
/// there, so ztunnel receives them with no rules (denying all traffic to details and ratings).
#[test]
fn bookinfo_migration_dump_matches_golden() {
    check_golden("bookinfo-migration", "bookinfo-migration-dump.json");
}

#[test]
fn annotation_and_label_enrollment_agree_on_bookinfo() {
    // Every enrolled bookinfo pod carries istio-cni's annotation, so both rules give the same tables.
    let load = |enrollment| {
        let (_, objects) =
            FileSource::open(root().join("deploy/examples/bookinfo")).expect("load bookinfo");
        let index = Index::build(
            Settings {
                enrollment,
                ..Settings::default()
            },
            objects,
        );
        let mut v: Vec<(String, u64)> = index
            .addresses()
            .values()
            .map(|r| (r.name.to_string(), r.version))
            .collect();
        v.sort();
        v
    };
    assert_eq!(load(Enrollment::Annotation), load(Enrollment::Labels));
}
