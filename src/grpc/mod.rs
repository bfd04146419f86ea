//! The gRPC edge: generated protocol types and (later) the thin tonic handlers.
//!
//! Proto types never leak below this module.

/// Code generated from `proto/empi/v1/empi.proto` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("empi.v1");

    /// The encoded file descriptor set of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("empi_descriptor");
}
