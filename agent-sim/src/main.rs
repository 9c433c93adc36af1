//! `agent-sim`: simulated ztunnels and generated clusters for ambientd.
fn main() {}
