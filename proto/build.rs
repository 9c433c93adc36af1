//! Compiles the crate's `.proto` files with `protox` (pure Rust, no system
//! `protoc`), embeds the resulting descriptor set for reflection, and
//! generates prost messages plus the tonic client/server for the CA service.

use std::{env, error::Error, fs, path::PathBuf};

/// Include root for every `.proto` file of this crate.
const PROTO_ROOT: &str = "proto";

/// Files compiled, relative to [`PROTO_ROOT`]; imports are resolved from there
/// and from the well-known types bundled with `protox`.
const PROTO_FILES: &[&str] = &[
    "istio/workload/workload.proto",
    "istio/security/authorization.proto",
    "istio/v1/auth/ca.proto",
];

/// Name of the encoded `FileDescriptorSet` written to `OUT_DIR`.
const DESCRIPTOR_FILE: &str = "ambient_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;

    // The embedded set keeps the google/protobuf imports so that the runtime
    // descriptor pool is self-contained (Any, Struct, Empty, UInt32Value).
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join(DESCRIPTOR_FILE),
        compiler.encode_file_descriptor_set(),
    )?;

    // The imports stay in the set handed to prost too: it needs them to decide
    // which derives our messages can have. Their Rust paths map to
    // `prost_types` (prost's default), so their generated module is unused.
    let fds = compiler.file_descriptor_set();

    // Every message implements `prost::Name` with the conventional
    // "type.googleapis.com/" type URL, so it can be packed with `Any::from_msg`.
    let mut config = tonic_prost_build::Config::new();
    // Maps are BTreeMaps so that encoding is deterministic: resource versions are content hashes.
    config
        .btree_map(["."])
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;

    Ok(())
}
