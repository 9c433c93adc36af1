//! The simulator never links what it measures: its normal dependency tree holds the wire crate and the
//! cluster generator, but neither the control plane nor the index.

use ambient_testkit::deps::{normal_dependencies, workspace_crates};

#[test]
fn agent_sim_depends_on_the_wire_crate_and_the_generator_only() {
    let names = normal_dependencies("agent-sim", env!("CARGO_MANIFEST_DIR").as_ref())
        .expect("cargo tree runs");
    assert_eq!(
        workspace_crates(&names),
        ["agent-sim", "ambient-proto", "ambient-testkit"],
        "agent-sim must not depend on the control plane or the index: {names:?}"
    );
}
