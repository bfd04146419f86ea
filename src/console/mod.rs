//! The registrar console: an HTTP door beside the gRPC one, serving HTML pages where
//! registrars work the review queue (`empi serve --console ADDR`).
//!
//! Like every door it adds authentication and conversion, not policy: each page or action
//! converts its form into a domain request, makes one call on [`App`] as the signed-in
//! registrar, and renders the answer; roles, audit, durability and history are the
//! application layer's, the same as for gRPC.
//!
//! - **Sessions** ([`session`]): the login form exchanges a registrar or admin token (the
//!   same credentials as gRPC) for a session cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Secure` under TLS); sessions expire, end at logout or when the token is revoked. A
//!   submitter token is refused. With authentication off (the local quick start) the
//!   console runs as the admin `local-dev`, as the API does, and answers only requests
//!   addressed to a loopback host (so another site cannot reach it by DNS rebinding).
//! - **CSRF**: every state-changing form carries the session's token; a post without it is
//!   refused (403) and audited through [`App::refused`].
//! - **Headers** on every answer: a Content-Security-Policy allowing scripts and styles from
//!   the console only (there is no inline script or style), frame denial, `no-store` on
//!   every page (they show patient data), no referrer, and HSTS under TLS.
//! - **No patient data in addresses or logs**: searches are posted; addresses carry task
//!   ids, EUIDs and filters; the request log names the route template, never the path.
//! - **Pages** ([`pages`]) are server-rendered and work without scripting; one small
//!   script of the console's own (`assets/console.js`) adds keyboard operation.
//!
//! [`serve`] takes a bound listener (tests bind `127.0.0.1:0`) and optional TLS.

mod diff;
pub mod forms;
mod handlers;
pub mod pages;
pub mod session;
mod tls;

pub use tls::server_config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::AuthMode;
use crate::error::{Error, Result};

use session::Sessions;

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// A session ends after this long without a request.
    pub idle: Duration,
    /// A session ends this long after sign-in in any case.
    pub lifetime: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// The console's state: the application layer, how callers authenticate, the sessions.
#[derive(Debug)]
pub struct Console {
    app: Arc<App>,
    auth: AuthMode,
    sessions: Sessions,
    /// Served over TLS: cookies are `Secure` and HSTS is sent.
    secure: bool,
}

impl Console {
    /// A console over `app`, authenticating as `auth` says; `secure` when served over TLS.
    pub fn new(app: Arc<App>, auth: AuthMode, config: &ConsoleConfig, secure: bool) -> Self {
        Console {
            app,
            auth,
            sessions: Sessions::new(config.idle, config.lifetime),
            secure,
        }
    }

    fn auth_on(&self) -> bool {
        matches!(self.auth, AuthMode::Required(_))
    }
}

/// The console's routes, with its headers and request log.
pub fn router(console: Arc<Console>) -> Router {
    use handlers as h;
    Router::new()
        .route("/", get(h::index))
        .route("/login", get(h::login_page).post(h::login))
        .route("/logout", post(h::logout))
        .route("/worklist", get(h::worklist))
        .route("/worklist/keep-separate", post(h::bulk_ask))
        .route("/worklist/keep-separate/confirm", post(h::bulk_confirm))
        .route("/tasks/{id}", get(h::task))
        .route("/tasks/{id}/skip", get(h::skip))
        .route("/tasks/{id}/resolve", post(h::resolve))
        .route("/persons/{euid}", get(h::person))
        .route("/persons/{euid}/merge-preview", get(h::merge_preview))
        .route("/persons/{euid}/{action}", post(h::person_action))
        .route("/search", get(h::search_page).post(h::search))
        .route("/help", get(h::help))
        .route("/static/console.css", get(h::css))
        .route("/static/console.js", get(h::js))
        .fallback(h::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            guard,
        ))
        .with_state(console)
}

/// The Content-Security-Policy of every answer: nothing but the console's own script,
/// stylesheet and forms; never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Whether a `Host` header names a loopback address (`localhost`, `127.x`, `[::1]`).
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Every request: refuses non-loopback hosts while authentication is off, adds the
/// security headers, and logs the route template, status and time (never the path).
async fn guard(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unrouted)", |m| m.as_str())
        .to_string();
    let host_ok = console.auth_on()
        || req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(loopback_host);
    let mut response = if host_ok {
        next.run(req).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "without authentication the console answers loopback hosts only",
        )
            .into_response()
    };
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    if console.secure {
        set(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        );
    }
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "console request"
    );
    response
}

/// The address a request came from, as the connection reported it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves the console on an already bound listener until `shutdown` completes, over TLS
/// when `tls` is given (the gRPC listener's certificate and key, [`server_config`]).
///
/// # Errors
/// [`Error::Io`] when the listener fails.
pub async fn serve(
    listener: TcpListener,
    console: Arc<Console>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("console listener", e))?;
    tracing::info!(%addr, tls = tls.is_some(), auth = console.auth_on(), "serving the registrar console");
    let app = router(console).into_make_service_with_connect_info::<Peer>();
    let served = match tls {
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| Error::io(addr.to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "127.0.0.1",
            "LOCALHOST",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["evil.example:8080", "10.0.0.1:80", "[2001:db8::1]:80", ""] {
            assert!(!loopback_host(h), "{h}");
        }
    }
}
