//! The security options of `empi serve`: TLS files, when plaintext and unauthenticated
//! serving are allowed, and request limits.
//!
//! Rules, so the local quick start stays one command and nothing else is left open:
//! - with `--tls-cert`/`--tls-key` the listener speaks TLS and every call needs a credential;
//! - without TLS it speaks plaintext, allowed on a loopback address only, unless
//!   `--insecure-plaintext` is given (for a TLS-terminating proxy on another host);
//! - authentication is off only on a plaintext *loopback* listener without
//!   `--require-auth`, and then only while the data directory has never had a credential
//!   (the local quick start, where every call runs as the admin `local-dev`, still audited).
//!   Creating the first token turns authentication on at the next start, and it stays on:
//!   revoked credentials count, so revoking every one leaves a server nobody can call, not
//!   an open one. Turning it off again takes `--disable-auth`, which the audit trail
//!   records at every start it is given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use empi::auth::{
    tls::TlsFiles, AuditEntry, AuditLog, AuthMode, Credentials, Limits, Security, Space,
};
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
    /// Serve without authentication although the data directory has (or had) credentials:
    /// plaintext loopback only; recorded in the audit trail at every start.
    #[arg(long, conflicts_with_all = ["require_auth", "tls_cert", "insecure_plaintext"])]
    pub disable_auth: bool,
    /// Largest request message in bytes.
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Server-side deadline of every call, seconds.
    #[arg(long, default_value_t = Limits::default().timeout.as_secs())]
    pub call_timeout_secs: u64,
    /// Calls served at once over all connections (more wait).
    #[arg(long, default_value_t = Limits::default().max_concurrent_calls)]
    pub max_concurrent_calls: usize,
    /// Free space (MiB) the data directory's disk keeps: below it, writes are refused with
    /// RESOURCE_EXHAUSTED and health reports NOT_SERVING until space is freed (default 5%
    /// of the disk, within 16 to 256 MiB).
    #[arg(long)]
    pub min_free_mib: Option<u64>,
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
            disable_auth: false,
            max_request_bytes: l.max_request_bytes,
            call_timeout_secs: l.timeout.as_secs(),
            max_concurrent_calls: l.max_concurrent_calls,
            min_free_mib: None,
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
pub async fn security(
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
    if args.disable_auth && !(tls.is_none() && loopback) {
        bail!("--disable-auth is allowed on a plaintext loopback listener only");
    }
    let credentials = Credentials::open(data)?;
    let listed = credentials.listed_count();
    let had_credentials = listed > 0;
    let dev =
        tls.is_none() && loopback && !args.require_auth && (args.disable_auth || !had_credentials);
    let auth = if dev {
        tracing::warn!(
            explicit = args.disable_auth,
            "authentication disabled: plaintext loopback listener{}; every call runs as admin \
             `local-dev` (create a token with `empi token create` to enable)",
            if args.disable_auth {
                ", --disable-auth"
            } else {
                " and no credential ever created"
            }
        );
        AuthMode::Disabled
    } else {
        if credentials.active_count() == 0 {
            tracing::warn!(
                "authentication required but no active credential: every call is refused \
                 until one is created with `empi token create`"
            );
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
    let audit = Arc::new(match staging {
        Some(staging) => AuditLog::open_staged(data, staging)?,
        None => AuditLog::open(data)?,
    });
    if args.disable_auth {
        let entry = AuditEntry::operator(
            "ServeWithoutAuth",
            format!(
                "empi serve --disable-auth on {listen}: every call runs as admin local-dev \
                 ({listed} credential(s) on file, revoked ones included)"
            ),
        );
        audit.append(&entry).await?;
    }
    let space = Space::new(data, args.min_free_mib.map(|m| m << 20));
    tracing::info!(
        reserve_mib = space.reserve() >> 20,
        free_mib = space.free().map(|f| f >> 20),
        "writes are refused while the disk has less than the reserve free"
    );
    Ok(Security {
        tls,
        auth,
        audit: Some(audit),
        limits,
        space: Some(Arc::new(space)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plaintext_only_on_loopback_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let args = SecurityArgs::default();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(security(&args, dir.path(), any, None).await.is_err());
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let s = security(&args, dir.path(), local, None).await.unwrap();
        assert!(matches!(s.auth, AuthMode::Disabled));
        let forced = SecurityArgs {
            insecure_plaintext: true,
            ..SecurityArgs::default()
        };
        let s = security(&forced, dir.path(), any, None).await.unwrap();
        assert!(
            matches!(s.auth, AuthMode::Required(_)),
            "never unauthenticated off loopback"
        );
        empi::auth::tokens::create_token(dir.path(), "ops", empi::auth::Role::Admin, &[]).unwrap();
        let s = security(&args, dir.path(), local, None).await.unwrap();
        assert!(
            matches!(s.auth, AuthMode::Required(_)),
            "a credential turns auth on"
        );
    }

    /// Revoking every credential leaves authentication on; only `--disable-auth` turns it
    /// off, on loopback only, and the audit trail records it.
    #[tokio::test]
    async fn revoked_credentials_keep_auth_on_until_it_is_disabled_on_record() {
        use empi::auth::{audit, tokens, Role};
        let dir = tempfile::tempdir().unwrap();
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        tokens::create_token(dir.path(), "ops", Role::Admin, &[]).unwrap();
        tokens::revoke(dir.path(), "ops").unwrap();
        let s = security(&SecurityArgs::default(), dir.path(), local, None)
            .await
            .unwrap();
        assert!(
            matches!(s.auth, AuthMode::Required(_)),
            "revoked still counts"
        );
        drop(s);
        assert!(audit::read(dir.path(), None, None)
            .unwrap()
            .entries
            .is_empty());

        let off = SecurityArgs {
            disable_auth: true,
            ..SecurityArgs::default()
        };
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(security(&off, dir.path(), any, None).await.is_err());
        let s = security(&off, dir.path(), local, None).await.unwrap();
        assert!(matches!(s.auth, AuthMode::Disabled));
        drop(s);
        let entries = audit::read(dir.path(), None, None).unwrap().entries;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].operation, "ServeWithoutAuth");
        assert!(
            entries[0].actor.starts_with("operator:"),
            "{:?}",
            entries[0]
        );
    }
}
