//! `ambientd zc` rendering against golden files: every command's table (and a JSON and a YAML output)
//! for the bookinfo example, with a fake connection registry, fixed certificates and a fixed clock. The
//! documents come straight from the admin views; `tests/admin.rs` checks that the same output comes back
//! over HTTP.
//!
//! Run with `AMBIENTD_BLESS=1` to rewrite the golden files after an intended change, then review the diff.

mod support;

use ambient_control_plane::admin::views::{self, Filter};
use ambient_control_plane::connections::ConnectionRegistry;
use ambient_control_plane::zc::{self, OutputFormat, ZcArgs, ZcCommand};
use serde_json::Value;

use support::*;

/// The document the admin API serves for `args` over the bookinfo index and the fake registry.
fn document(args: &ZcArgs) -> Value {
    let index = bookinfo_index();
    let index = index.read().unwrap();
    let registry = FakeRegistry::new(&index);
    let filter = Filter {
        namespace: args.namespace.clone(),
        node: args.node.clone(),
    };
    let doc = match &args.command {
        ZcCommand::Workloads => serde_json::to_value(views::workloads(&index, &filter).unwrap()),
        ZcCommand::Services => serde_json::to_value(views::services(&index, &filter).unwrap()),
        ZcCommand::Policies => serde_json::to_value(views::policies(&index, &[], &filter).unwrap()),
        ZcCommand::Waypoints => serde_json::to_value(views::waypoints(&index, &filter).unwrap()),
        ZcCommand::Connections => {
            serde_json::to_value(views::connections(registry.connections(), &filter))
        }
        ZcCommand::Certs => serde_json::to_value(fake_certs()),
        ZcCommand::Sync { name, type_ } => {
            let type_url = views::sync_type(&index, type_.as_deref(), name).unwrap();
            serde_json::to_value(views::sync(
                &index,
                type_url,
                name,
                registry.sync(type_url, name),
            ))
        }
    };
    doc.unwrap()
}

fn check_golden(file: &str, got: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("AMBIENTD_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing (AMBIENTD_BLESS=1 creates it)", path.display()));
    assert!(
        got == want,
        "output differs from {}; rerun with AMBIENTD_BLESS=1 and review the diff\n--- got ---\n{got}",
        path.display()
    );
}

#[test]
fn every_command_matches_its_golden_file() {
    for (file, args) in cases() {
        let mut out = Vec::new();
        zc::render(&args, &document(&args), now(), &mut out).unwrap();
        check_golden(file, &String::from_utf8(out).unwrap());
    }
}

#[test]
fn tables_fit_80_columns() {
    for (file, args) in cases() {
        if args.output != OutputFormat::Table {
            continue;
        }
        let mut out = Vec::new();
        zc::render(&args, &document(&args), now(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{file}: {} columns: {line:?}",
                line.chars().count()
            );
        }
    }
}

#[test]
fn json_output_is_the_document_itself() {
    let args = zc_args(ZcCommand::Workloads, OutputFormat::Json, None);
    let doc = document(&args);
    let mut out = Vec::new();
    zc::render(&args, &doc, now(), &mut out).unwrap();
    let back: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, doc);
    assert_eq!(back["workloads"].as_array().unwrap().len(), 20);
}

#[test]
fn a_document_of_another_shape_is_a_decode_error() {
    let args = zc_args(ZcCommand::Workloads, OutputFormat::Table, None);
    let mut out = Vec::new();
    let err = zc::render(&args, &serde_json::json!({"services": []}), now(), &mut out).unwrap_err();
    assert!(
        err.to_string().contains("missing field `workloads`"),
        "{err}"
    );
}
