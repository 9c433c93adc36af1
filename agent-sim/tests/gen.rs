//! `agent-sim gen` end to end: run the binary into a temporary directory and read back what it wrote.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use ambient_index::model::{Kind, Object};

fn agent_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-sim"))
        .args(args)
        .output()
        .expect("agent-sim runs")
}

/// The YAML files of `dir` and every object in them, parsed into the model, counted by kind.
fn read_cluster(dir: &Path) -> (Vec<String>, BTreeMap<Kind, usize>) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("out dir is readable")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut kinds = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(dir.join(file)).expect("file is readable");
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value: serde_json::Value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            let obj = Object::from_value(value)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .unwrap_or_else(|| panic!("{file}: a kind ambientd does not read"));
            *kinds.entry(obj.kind()).or_default() += 1;
        }
    }
    (files, kinds)
}

#[test]
fn gen_writes_one_file_per_namespace_that_parses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cluster");
    let out_str = out.to_str().expect("utf-8 path");
    let run = agent_sim(&[
        "gen",
        "--out",
        out_str,
        "--pods",
        "50",
        "--namespaces",
        "3",
        "--seed",
        "5",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("in 4 files"), "{stdout}");

    let (files, kinds) = read_cluster(&out);
    assert_eq!(
        files,
        [
            "000-cluster.yaml",
            "001-ns-000.yaml",
            "002-ns-001.yaml",
            "003-ns-002.yaml"
        ]
    );
    let want = BTreeMap::from([
        (Kind::Namespace, 1 + 3),
        (Kind::Node, 1),
        (Kind::GatewayClass, 1),
        (Kind::Gateway, 3),
        (Kind::Service, 5 + 3),
        (Kind::Pod, 50 + 3),
    ]);
    assert_eq!(kinds, want);

    // Same options, same bytes.
    let again = tmp.path().join("again");
    let run = agent_sim(&[
        "gen",
        "--out",
        again.to_str().expect("utf-8"),
        "--pods",
        "50",
        "--namespaces",
        "3",
        "--seed",
        "5",
    ]);
    assert!(run.status.success());
    for file in &files {
        let a = std::fs::read(out.join(file)).expect("first run");
        let b = std::fs::read(again.join(file)).expect("second run");
        assert!(a == b, "{file} differs between two runs with the same seed");
    }
}

#[test]
fn gen_refuses_a_non_empty_dir_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("keep.txt"), "mine").expect("write");
    let dir = tmp.path().to_str().expect("utf-8 path");

    let run = agent_sim(&["gen", "--out", dir, "--pods", "20", "--namespaces", "2"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--force"));
    assert!(!tmp.path().join("000-cluster.yaml").exists());

    let run = agent_sim(&[
        "gen",
        "--out",
        dir,
        "--pods",
        "20",
        "--namespaces",
        "2",
        "--files",
        "1",
        "--no-waypoints",
        "--force",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(tmp.path().join("keep.txt").exists());
    let (files, kinds) = read_cluster(tmp.path());
    assert_eq!(files, ["part-000.yaml"]);
    assert_eq!(kinds.get(&Kind::Pod), Some(&20));
    assert_eq!(kinds.get(&Kind::Gateway), None);
}
