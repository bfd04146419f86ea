//! The security options of `empi serve`: TLS files, when plaintext and unauthenticated
//! serving are allowed, and request limits.
//!
//! Rules, so the local quick start stays one command and nothing else is left open:
//! - with `--tls-cert`/`--tls-key` the listener speaks TLS and every call needs a credential;
//! - without TLS it speaks plaintext, allowed on a loopback address only, unless
//!   `--insecure-plaintext` is given (for a TLS-terminating proxy on another host);
//! - authentication is off only on a plaintext *loopback* listener whose data directory
//!   holds no active credential and without `--require-auth`: the local quick start, where
//!   every call runs as the admin `local-dev` (still audited). Creating the first token turns
//!   authentication on at the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use empi::auth::{tls::TlsFiles, AuditLog, AuthMode, Credentials, Limits, Security};
use empi::store::Staging;

/// Security options of `empi serve`.
#[derive(Args, Debug)]
pub struct SecurityArgs {
    /// Server certificate chain (PEM); enables TLS and requires credentials on every call.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) signing client certificates; registered ones authenticate
    /// (`empi token create --cert`).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --tls-client-ca.
    #[arg(long, requires = "tls_client_ca")]
    pub require_client_cert: bool,
    /// Allow plaintext on a non-loopback address (behind a TLS-terminating proxy only).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
    /// Require credentials even on a plaintext loopback listener.
    #[arg(long)]
    pub require_auth: bool,
    /// Largest request message in bytes.
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Server-side deadline of every call, seconds.
    #[arg(long, default_value_t = Limits::default().timeout.as_secs())]
    pub call_timeout_secs: u64,
    /// Calls served at once over all connections (more wait).
    #[arg(long, default_value_t = Limits::default().max_concurrent_calls)]
    pub max_concurrent_calls: usize,
}

impl Default for SecurityArgs {
    fn default() -> Self {
        let l = Limits::default();
        SecurityArgs {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            require_client_cert: false,
            insecure_plaintext: false,
            require_auth: false,
            max_request_bytes: l.max_request_bytes,
            call_timeout_secs: l.timeout.as_secs(),
            max_concurrent_calls: l.max_concurrent_calls,
        }
    }
}

/// The listener's security for `args`, serving data directory `data` on `listen`. The
/// audit trail stages its lines in `staging` when given (the server's store), syncing its
/// file every cycle otherwise.
///
/// # Errors
/// Plaintext on a non-loopback address without `--insecure-plaintext`; unreadable TLS or
/// credential files; an audit trail that cannot be opened.
pub fn security(
    args: &SecurityArgs,
    data: &Path,
    listen: SocketAddr,
    staging: Option<Arc<dyn Staging>>,
) -> Result<Security> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
                require_client_cert: args.require_client_cert,
            }
            .server_config()?,
        ),
        _ => None,
    };
    let loopback = listen.ip().is_loopback();
    if tls.is_none() && !loopback && !args.insecure_plaintext {
        bail!(
            "refusing plaintext on non-loopback address {listen}: give --tls-cert and \
             --tls-key, or --insecure-plaintext behind a TLS-terminating proxy"
        );
    }
    let credentials = Credentials::open(data)?;
    let dev = tls.is_none() && loopback && !args.require_auth && credentials.active_count() == 0;
    let auth = if dev {
        tracing::warn!(
            "authentication disabled: plaintext loopback listener and no credentials; every \
             call runs as admin `local-dev` (create a token with `empi token create` to enable)"
        );
        AuthMode::Disabled
    } else {
        if credentials.active_count() == 0 {
            tracing::warn!("authentication required but no credentials yet: see `empi token`");
        }
        AuthMode::Required(Arc::new(credentials))
    };
    let limits = Limits {
        max_request_bytes: args.max_request_bytes,
        timeout: Duration::from_secs(args.call_timeout_secs.max(1)),
        max_concurrent_calls: args.max_concurrent_calls.max(1),
        ..Limits::default()
    };
    tracing::info!(
        tls = tls.is_some(),
        auth = !dev,
        max_request_bytes = limits.max_request_bytes,
        call_timeout_secs = limits.timeout.as_secs(),
        max_concurrent_calls = limits.max_concurrent_calls,
        "listener security"
    );
    Ok(Security {
        tls,
        auth,
        audit: Some(Arc::new(match staging {
            Some(staging) => AuditLog::open_staged(data, staging)?,
            None => AuditLog::open(data)?,
        })),
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let args = SecurityArgs::default();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(security(&args, dir.path(), any, None).is_err());
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let s = security(&args, dir.path(), local, None).unwrap();
        assert!(matches!(s.auth, AuthMode::Disabled));
        let forced = SecurityArgs {
            insecure_plaintext: true,
            ..SecurityArgs::default()
        };
        let s = security(&forced, dir.path(), any, None).unwrap();
        assert!(
            matches!(s.auth, AuthMode::Required(_)),
            "never unauthenticated off loopback"
        );
        empi::auth::tokens::create_token(dir.path(), "ops", empi::auth::Role::Admin, &[]).unwrap();
        let s = security(&args, dir.path(), local, None).unwrap();
        assert!(
            matches!(s.auth, AuthMode::Required(_)),
            "a credential turns auth on"
        );
    }
}
