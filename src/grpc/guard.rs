//! [`Guard`]: the tower layer in front of every gRPC call, the gRPC door's own part of the
//! door policy. It bounds concurrency over all connections, authenticates the caller
//! (bearer token in `authorization`, or a registered TLS client certificate), has the
//! application layer refuse a role that may not call the RPC before the request is decoded
//! ([`App::admit`]), and hands the [`Caller`] to the handlers in the request extensions.
//! Every refusal here is audited through [`App::refused`].
//!
//! Calls to other services (health, reflection) pass without credentials; an unknown
//! `empi.v1.Empi` method still needs valid credentials before the router answers
//! `UNIMPLEMENTED`.
//!
//! A call that fails after the guard but before its handler runs (tonic could not decode
//! the request, or it is over the size limit, or the method is unknown) is audited here,
//! since no handler will, and its status is set to what the client must do next:
//! an undecodable request (invalid UTF-8, a truncated varint, a wrong wire type, no
//! message) is `INVALID_ARGUMENT` rather than tonic's `INTERNAL`, and an oversized one
//! `RESOURCE_EXHAUSTED` rather than `OUT_OF_RANGE`. Handlers tell the guard they ran
//! through [`Reached`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use tower_layer::Layer;

use crate::app::{App, Caller};
use crate::auth::{AuthMode, Identity, Operation};

use super::status::canonical;

/// Put in every guarded request's extensions; the handler sets it when it starts, so the
/// guard knows whether a failed call was seen (and audited) by a handler.
#[derive(Debug, Clone, Default)]
pub struct Reached(Arc<AtomicBool>);

impl Reached {
    /// Records that the handler runs (it audits the call itself).
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn was_reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The status for a call that failed before its handler ran: tonic's decoding failures
/// are the client's (`INVALID_ARGUMENT`), and a message over the size limit is
/// `RESOURCE_EXHAUSTED` as documented ([`crate::auth::Limits`]).
pub(crate) fn before_handler(status: Status) -> Status {
    match status.code() {
        Code::Internal => Status::invalid_argument(format!(
            "the request could not be decoded: {}",
            status.message()
        )),
        Code::OutOfRange => Status::resource_exhausted(status.message().to_string()),
        _ => status,
    }
}

/// Security state shared by all connections.
#[derive(Debug)]
struct State {
    mode: AuthMode,
    app: Arc<App>,
    calls: tokio::sync::Semaphore,
    max_calls: usize,
}

/// The tower layer; clone it freely (one shared state).
#[derive(Debug, Clone)]
pub struct Guard {
    state: Arc<State>,
}

impl Guard {
    /// A guard authenticating by `mode`, refusing and auditing through `app`, and serving
    /// at most `max_concurrent_calls` calls at once over all connections.
    pub fn new(mode: AuthMode, app: Arc<App>, max_concurrent_calls: usize) -> Self {
        let max_calls = max_concurrent_calls.max(1);
        Guard {
            state: Arc::new(State {
                mode,
                app,
                calls: tokio::sync::Semaphore::new(max_calls),
                max_calls,
            }),
        }
    }

    /// Calls being served right now, over all connections.
    pub fn in_flight(&self) -> usize {
        self.state
            .max_calls
            .saturating_sub(self.state.calls.available_permits())
    }
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// A service behind a [`Guard`].
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    state: Arc<State>,
}

/// The peer address of a request (plain or TLS connection).
pub fn peer_addr<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

/// Authenticates a request ([`AuthMode::authenticate`]): its `authorization` header, else
/// its TLS client certificate.
fn authenticate<B>(mode: &AuthMode, req: &http::Request<B>) -> Result<Identity, Status> {
    let authorization = req.headers().get(http::header::AUTHORIZATION);
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    let leaf = certs.as_deref().and_then(|c| c.first());
    mode.authenticate(
        authorization.map(http::HeaderValue::as_bytes),
        leaf.map(AsRef::as_ref),
    )
    .map_err(Status::unauthenticated)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            // The semaphore lives as long as the state and is never closed.
            let _permit = state.calls.acquire().await;
            let path = req.uri().path();
            if !path.starts_with("/empi.v1.Empi/") {
                return inner.call(req).await;
            }
            let op = Operation::from_path(path);
            let op_name = op.map_or("unknown", Operation::name);
            let peer = peer_addr(&req).map(|a| a.to_string());
            let app = &state.app;
            let (who, status) = match authenticate(&state.mode, &req) {
                Err(status) => (None, status),
                Ok(who) => {
                    let caller = Caller::new(who, peer.clone());
                    let admitted = match op {
                        Some(op) => app.admit(&caller, op).await,
                        None => Ok(()),
                    };
                    if let Err(e) = admitted {
                        // Refused and audited by the application layer.
                        return Ok(Status::from(e).into_http());
                    }
                    let reached = Reached::default();
                    req.extensions_mut().insert(reached.clone());
                    let who = caller.identity.clone();
                    req.extensions_mut().insert(caller);
                    let response = inner.call(req).await?;
                    if reached.was_reached() {
                        return Ok(response);
                    }
                    let Some(status) = Status::from_header_map(response.headers())
                        .filter(|s| s.code() != Code::Ok)
                    else {
                        return Ok(response);
                    };
                    (Some(who), before_handler(status))
                }
            };
            let code = canonical(status.code());
            if let Err(e) = app.refused(who.as_ref(), op_name, peer, code).await {
                return Ok(Status::from(e).into_http());
            }
            Ok(status.into_http())
        })
    }
}
