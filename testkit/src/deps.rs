//! What a workspace crate links: the names of its normal dependencies, read from `cargo tree`, for the
//! tests that keep the crate graph as designed (the index links no I/O crate, the simulator never links the
//! control plane, the generator stands alone).

use std::path::Path;
use std::process::Command;

/// Every package in `package`'s normal dependency tree (itself included), sorted and without repeats.
/// Runs `cargo tree --offline` (the `CARGO` of the calling build) in `manifest_dir`; `Err` says why it
/// could not.
pub fn normal_dependencies(package: &str, manifest_dir: &Path) -> Result<Vec<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--package",
            package,
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(manifest_dir)
        .output()
        .map_err(|e| format!("cargo tree did not run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// The workspace's own crates among `names`.
pub fn workspace_crates(names: &[String]) -> Vec<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|name| name.starts_with("ambient-") || *name == "agent-sim")
        .collect()
}
