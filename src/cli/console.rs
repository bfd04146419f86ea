//! `empi serve --console ADDR`: the registrar console beside the gRPC listener, under the
//! same TLS (certificate, key, client CA) and the same credentials, audit trail and
//! free-space reserve, with the same rule for plaintext: loopback only, unless
//! `--insecure-plaintext` (behind a TLS-terminating proxy).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use empi::app::App;
use empi::auth::tls::TlsFiles;
use empi::auth::{AuthMode, Security};
use empi::console::{Console, ConsoleConfig};

use super::serve::ServeArgs;

/// Binds the console on `at` and serves it until `stopped` turns true; the task's handle.
///
/// # Errors
/// Plaintext on a non-loopback address without `--insecure-plaintext`; a console off
/// loopback while authentication is off; unusable TLS files; the address in use.
pub async fn start(
    args: &ServeArgs,
    at: SocketAddr,
    app: &Arc<App>,
    security: &Security,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<empi::Result<()>>> {
    let s = &args.security;
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(empi::console::server_config(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: s.tls_client_ca.clone(),
            require_client_cert: s.require_client_cert,
        })?),
        _ => None,
    };
    let loopback = at.ip().is_loopback();
    if tls.is_none() && !loopback && !s.insecure_plaintext {
        bail!(
            "refusing a plaintext console on non-loopback address {at}: give --tls-cert and \
             --tls-key, or --insecure-plaintext behind a TLS-terminating proxy"
        );
    }
    if matches!(security.auth, AuthMode::Disabled) && !loopback {
        bail!("without authentication the console may listen on a loopback address only");
    }
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("binding the console on {at}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("console on {scheme}://{addr}");
    let console = Arc::new(Console::new(
        Arc::clone(app),
        security.auth.clone(),
        &ConsoleConfig::default(),
        tls.is_some(),
    ));
    // The worklist's summary of open tasks is built now, beside the first requests, so no
    // registrar waits for it (seconds at 100,000 open tasks); writes go on meanwhile.
    let service = Arc::clone(app.service());
    tokio::task::spawn_blocking(move || {
        if let Err(e) = service.warm_worklist() {
            tracing::warn!(error = %e, "worklist summary not built at start; built on first use");
        }
    });
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    Ok(tokio::spawn(empi::console::serve(
        listener, console, tls, shutdown,
    )))
}
