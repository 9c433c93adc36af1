//! The generator stands alone: it builds raw objects and YAML and depends on no other workspace crate,
//! so that anything (the simulator, the index benches) can use it without linking what it measures.

use ambient_testkit::deps::{normal_dependencies, workspace_crates};

#[test]
fn testkit_depends_on_no_workspace_crate() {
    let names = normal_dependencies("ambient-testkit", env!("CARGO_MANIFEST_DIR").as_ref())
        .expect("cargo tree runs");
    assert_eq!(workspace_crates(&names), ["ambient-testkit"], "{names:?}");
}
