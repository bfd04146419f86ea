//! The gRPC door: generated protocol types, the [`Guard`] that authenticates callers, the
//! thin tonic handlers of `empi.v1.Empi`, the one error → status mapping, and [`serve`]
//! with standard health checking and reflection.
//!
//! Proto types never leak below this module: handlers convert requests into the
//! application layer's requests (validating on the way, see `convert` and `requests`),
//! make one call into [`crate::app::App`], and convert the answer back. Logs carry record
//! keys, EUIDs and task ids only.

mod convert;
mod decode;
mod guard;
mod handlers;
mod requests;
mod status;

pub use decode::check_request;
pub use guard::Guard;
pub use handlers::EmpiApi;
pub use status::{canonical, grpc_code};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::app::App;
use crate::auth::Security;
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
/// accepting connections and lets in-flight requests finish (idle connections are not
/// waited for).
///
/// Besides `empi.v1.Empi` it serves `grpc.health.v1.Health` (reporting `empi.v1.Empi` and
/// the server as a whole `SERVING`, except while writes are refused for want of disk
/// space, the audit trail cannot write or the store cannot take writes, and from the
/// start of shutdown) and server reflection
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
/// handlers, which call the application layer ([`App`]) as the authenticated caller: it
/// audits the call and makes its change durable. Limits: request
/// and response message sizes (`RESOURCE_EXHAUSTED` beyond), a server-side deadline per
/// call, concurrent calls per connection and HTTP/2 streams per connection
/// (see [`crate::auth::Limits`]); writes are refused (`RESOURCE_EXHAUSTED`) while
/// `security.space` says the disk is nearly full ([`crate::auth::Space`]).
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
    let app = Arc::new(App::new(
        service,
        security.audit.clone(),
        security.space.clone(),
    ));
    serve_app(listener, app, security, shutdown).await
}

/// [`serve_secure`] over an application layer the caller keeps too (the server's
/// operations listener reads its counters, its retention task prunes through it): its
/// trail and free-space reserve are the app's own, `security.audit` and `security.space`
/// are not read.
///
/// # Errors
/// As [`serve_secure`].
pub async fn serve_app(
    listener: TcpListener,
    app: Arc<App>,
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
    let watch = tokio::spawn(watch_health(health.clone(), Arc::clone(&app)));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        watch.abort();
        set_health(&health, false).await;
        let _ = stopping.send(());
    };
    let limits = &security.limits;
    let api = pb::empi_server::EmpiServer::new(EmpiApi::new(Arc::clone(&app)))
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
    let guard = Guard::new(security.auth, app, limits.max_concurrent_calls);
    let server = builder
        .layer(guard.clone())
        .add_service(health_service)
        .add_service(reflection)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming, signal);
    // tonic's graceful shutdown waits for every connection to close, and a client may keep
    // an idle one open for as long as it likes: once shutdown began and no call is in
    // flight, connections get a moment to close, then the rest are dropped.
    let drained = async {
        if stopped.await.is_err() {
            return std::future::pending().await;
        }
        while guard.in_flight() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(IDLE_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| Error::io(addr.to_string(), std::io::Error::other(e))),
        () = drained => {
            tracing::info!("no call in flight; idle connections closed");
            Ok(())
        }
    }
}

/// How long connections get to close at shutdown once no call is in flight.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// How often the health check's answer is brought up to date.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Sets `empi.v1.Empi` and the server as a whole to `SERVING` or `NOT_SERVING`.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health.set_service_status(SERVICE_NAME, status).await;
    health.set_service_status("", status).await;
}

/// Keeps the health check honest until shutdown: `NOT_SERVING` while writes are refused
/// for want of disk space, the audit trail cannot write, or the store cannot take writes;
/// `SERVING` again as soon as all three can ([`App::health`]).
async fn watch_health(health: tonic_health::server::HealthReporter, app: Arc<App>) {
    let mut serving = true;
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    loop {
        tick.tick().await;
        let now = app.health().await;
        if now.serving() != serving {
            serving = now.serving();
            let crate::app::Health { room, trail, store } = now;
            tracing::warn!(room, trail, store, serving, "health changed");
            set_health(&health, serving).await;
        }
    }
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
