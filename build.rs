//! Build script: generates the gRPC code for `proto/empi/v1/*.proto` into `OUT_DIR`.
//!
//! protoc comes from the `protoc-bin-vendored` crate (a fresh machine has none), together
//! with the well-known-type includes (`google/protobuf/timestamp.proto`, …). A file
//! descriptor set is written beside the generated code for gRPC server reflection.

use std::error::Error;
use std::path::PathBuf;

const PROTO_DIR: &str = "proto";
const PROTOS: &[&str] = &["proto/empi/v1/empi.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let protoc = protoc_bin_vendored::protoc_bin_path()
        .map_err(|e| format!("no vendored protoc for this platform: {e}"))?;
    let well_known = protoc_bin_vendored::include_path()
        .map_err(|e| format!("no vendored protoc includes: {e}"))?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    let includes = [PathBuf::from(PROTO_DIR), well_known];
    tonic_prost_build::configure()
        // We print rerun-if-changed ourselves, for our .proto files only: the vendored
        // includes cannot change under a locked crate version.
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(out_dir.join("empi_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)
        .map_err(|e| format!("compiling {PROTOS:?}: {e}"))?;
    Ok(())
}
