//! The simulator never links what it measures: its normal dependency tree holds the wire crate and the
//! cluster generator, but neither the control plane nor the index.

use std::process::Command;

/// Workspace crates the simulator must not depend on.
const FORBIDDEN: &[&str] = &["ambient-control-plane", "ambient-index"];

#[test]
fn agent_sim_depends_on_the_wire_crate_and_the_generator_only() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "agent-sim",
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
    ours.sort_unstable();
    ours.dedup();
    assert!(
        !ours.iter().any(|name| FORBIDDEN.contains(name)),
        "agent-sim must not depend on {FORBIDDEN:?}:\n{tree}"
    );
    assert_eq!(ours, ["agent-sim", "ambient-proto", "ambient-testkit"]);
}
