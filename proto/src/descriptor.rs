//! The descriptor set produced by `build.rs`, embedded in the binary, and the
//! process-wide reflection pool decoded from it.

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// Encoded `google.protobuf.FileDescriptorSet` of `istio.workload`,
/// `istio.security`, `istio.v1.auth` and the well-known types they import.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ambient_descriptor.bin"));

/// Reflection pool over [`FILE_DESCRIPTOR_SET`], decoded on first use.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The bytes were produced and checked by protox at build time, so a
        // failure here is a build defect, not bad input.
        DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("descriptor set embedded by build.rs must decode")
    })
}
