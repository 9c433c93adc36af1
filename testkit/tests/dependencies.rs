//! The generator stands alone: it builds raw objects and YAML and depends on no other workspace crate,
//! so that anything (the simulator, the index benches) can use it without linking what it measures.

use std::process::Command;

#[test]
fn testkit_depends_on_no_workspace_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "ambient-testkit",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let mut ours: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("ambient-") || *name == "agent-sim")
        .collect();
    ours.dedup();
    assert_eq!(ours, ["ambient-testkit"], "{tree}");
}
