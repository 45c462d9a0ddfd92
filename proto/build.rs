//! Generates the Rust types and gRPC stubs for the RocketMQ 5 client protocol
//! (`apache.rocketmq.v2`) and Apogee's cluster protocol (`apogee.cluster.v1`).
//!
//! Uses the vendored `protoc` binary so no system protobuf install is needed.
//!
//! `src/lib.rs` includes the two packages as the flat modules `crate::v2` and
//! `crate::cluster` rather than nested `apache::rocketmq::v2` modules, so the
//! cluster code cannot reach the RocketMQ types through prost's default
//! relative (`super::...`) paths. It is therefore generated in a second pass
//! that maps `.apache.rocketmq.v2` to `crate::v2`. (An extern path also
//! suppresses generation of the package it names, hence two passes.)

use std::path::PathBuf;

/// The generated services compile only with the crate's `server` feature (clients need
/// none of tonic's server).
const SERVER_ONLY: &str = "#[cfg(feature = \"server\")]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);

    // Build scripts run single-threaded here, so setting the variable is sound.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let includes = [manifest_dir.clone(), protoc_bin_vendored::include_path()?];

    let paths =
        |files: &[&str]| -> Vec<PathBuf> { files.iter().map(|f| manifest_dir.join(f)).collect() };

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=apache");
    println!("cargo:rerun-if-changed=apogee");

    // Pass 1: the RocketMQ 5 client protocol -> apache.rocketmq.v2.rs. Message bodies are
    // `bytes::Bytes`: decoded as a slice of the request buffer and shared, never copied, on
    // their way to the commit log and back out to consumers.
    tonic_prost_build::configure()
        .bytes(".apache.rocketmq.v2.Message.body")
        .build_server(true)
        .server_mod_attribute(".", SERVER_ONLY)
        .build_client(true)
        .compile_protos(
            &paths(&[
                "apache/rocketmq/v2/definition.proto",
                "apache/rocketmq/v2/service.proto",
            ]),
            &includes,
        )?;

    // Pass 2: the cluster protocol -> apogee.cluster.v1.rs, referring to the
    // pass-1 types via `crate::v2` (and not regenerating them).
    tonic_prost_build::configure()
        .build_server(true)
        .server_mod_attribute(".", SERVER_ONLY)
        .build_client(true)
        .extern_path(".apache.rocketmq.v2", "crate::v2")
        .compile_protos(
            &paths(&[
                "apogee/cluster/v1/registry.proto",
                "apogee/cluster/v1/operations.proto",
                "apogee/cluster/v1/admin.proto",
                "apogee/cluster/v1/replication.proto",
                "apogee/controller/v1/raft.proto",
                "apogee/controller/v1/authority.proto",
            ]),
            &includes,
        )?;

    Ok(())
}
