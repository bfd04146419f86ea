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
pub use status::code_of;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::auth::{Guard, Security};
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
/// This entry point serves plaintext without authentication or audit (every call runs as
/// [`crate::auth::Identity::local_dev`]): for in-process tests and local development. A
/// deployment uses [`serve_secure`].
///
/// # Errors
/// [`Error::Io`] when the transport fails.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_secure(listener, service, Security::local_dev(), shutdown).await
}

/// [`serve`] with TLS, authentication, audit and request limits as `security` says.
///
/// Every call to `empi.v1.Empi` passes the [`Guard`] first (concurrency bound over all
/// connections, credentials, the role's permission table; rejections audited), then the
/// handlers, which act as the authenticated identity and audit the call. Limits: request
/// and response message sizes (`RESOURCE_EXHAUSTED` beyond), a server-side deadline per
/// call, concurrent calls per connection and HTTP/2 streams per connection
/// (see [`crate::auth::Limits`]).
///
/// # Errors
/// [`Error::Io`] when the transport fails; [`Error::InvalidInput`] for an unusable TLS
/// configuration.
pub async fn serve_secure(
    listener: TcpListener,
    service: Arc<Service>,
    security: Security,
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
    let limits = &security.limits;
    let api =
        pb::empi_server::EmpiServer::new(EmpiApi::with_audit(service, security.audit.clone()))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(limits.max_response_bytes);
    let mut builder = tonic::transport::Server::builder()
        .timeout(limits.timeout)
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .max_concurrent_streams(limits.max_concurrent_streams);
    let tls = security.tls.is_some();
    if let Some(config) = security.tls {
        builder = builder
            .tls_config(config)
            .map_err(|e| Error::invalid("tls", format!("unusable TLS configuration: {e}")))?;
    }
    tracing::info!(%addr, tls, "serving {SERVICE_NAME}");
    builder
        .layer(Guard::new(
            security.auth,
            security.audit,
            limits.max_concurrent_calls,
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(api)
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
