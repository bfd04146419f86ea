//! The gRPC edge: generated protocol types, the thin tonic handlers of `empi.v1.Empi`, the
//! one error → status mapping, and [`serve`] with standard health checking and reflection.
//!
//! Proto types never leak below this module: handlers convert requests into domain values
//! (validating on the way, see `convert`), call [`crate::service::Service`], and convert
//! the answer back. Logs carry record keys, EUIDs and task ids only.

mod convert;
mod handlers;
mod status;

pub use handlers::EmpiApi;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::error::{Error, Result};
use crate::service::Service;

/// Code generated from `proto/empi/v1/empi.proto` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("empi.v1");

    /// The encoded file descriptor set of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("empi_descriptor");
}

/// The fully qualified name of the API's service, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "empi.v1.Empi";

/// Serves the API on an already bound listener until `shutdown` completes, then stops
/// accepting connections and lets in-flight requests finish.
///
/// Besides `empi.v1.Empi` it serves `grpc.health.v1.Health` (reporting `empi.v1.Empi` and
/// the server as a whole `SERVING` until shutdown begins) and server reflection
/// (`grpc.reflection.v1`), so generic tools can discover and call the API. Taking a bound
/// listener lets tests bind `127.0.0.1:0` and learn the port first.
///
/// # Errors
/// [`Error::Io`] when the transport fails.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::empi_server::EmpiServer<EmpiApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        // The set is generated at build time from our own proto; a unit test decodes it.
        .expect("embedded file descriptor set decodes");
    // Small request/response pairs: without TCP_NODELAY, Nagle's algorithm would hold
    // replies back for tens of milliseconds.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    });
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        health
            .set_not_serving::<pb::empi_server::EmpiServer<EmpiApi>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    tracing::info!(%addr, "serving {SERVICE_NAME}");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::empi_server::EmpiServer::new(EmpiApi::new(service)))
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|e| Error::io(addr.to_string(), std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::server::NamedService;

    #[test]
    fn descriptor_set_and_service_name() {
        assert!(tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .is_ok());
        assert_eq!(
            <pb::empi_server::EmpiServer<EmpiApi> as NamedService>::NAME,
            SERVICE_NAME
        );
    }
}
