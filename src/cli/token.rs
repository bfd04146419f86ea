//! `empi token`: create, revoke and list the credentials of a data directory (works while
//! the server runs; it picks changes up on the next call). Creating and revoking are
//! recorded in the audit trail (actor `operator:` and the OS user), the line written before
//! the change, and a second line when the change then fails.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use empi::auth::{tokens, AuditEntry, AuditLog, Role};

use super::data::existing_store;

/// Arguments of `empi token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a credential; prints a new bearer token once on stdout (or registers --cert).
    Create {
        /// Store directory (an existing store, unless --create).
        #[arg(long)]
        data: PathBuf,
        /// Create the store when --data holds none.
        #[arg(long)]
        create: bool,
        /// consumer (the change feed), submitter, registrar or admin.
        #[arg(long)]
        role: Role,
        /// Unique name, recorded as the actor in history and audit.
        #[arg(long)]
        name: String,
        /// A source system a submitter speaks for (repeatable; required for submitters).
        #[arg(long = "source")]
        sources: Vec<String>,
        /// Register this client certificate (PEM or DER) instead of creating a token.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Revoke a credential by name; a running server refuses it from the next call on.
    Revoke {
        /// Store directory.
        #[arg(long)]
        data: PathBuf,
        /// The credential's name.
        #[arg(long)]
        name: String,
    },
    /// List credentials (never the tokens themselves).
    List {
        /// Store directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// Runs `empi token`.
pub fn token(args: &TokenArgs) -> Result<()> {
    match &args.command {
        TokenCommand::Create {
            data,
            create,
            role,
            name,
            sources,
            cert,
        } => {
            if !empi::store::SledStore::exists(data) {
                existing_store(data, *create)?;
                // A new store, made now so that the directory is one (`serve` opens it).
                drop(empi::store::SledStore::open(data)?);
            }
            let kind = if cert.is_some() {
                "certificate"
            } else {
                "token"
            };
            let detail = format!(
                "created {kind} credential {name:?}, role {role}, sources [{}]",
                sources.join(",")
            );
            audited(data, "TokenCreate", detail, || {
                if let Some(cert) = cert {
                    let pem = std::fs::read(cert)
                        .with_context(|| format!("reading {}", cert.display()))?;
                    tokens::register_certificate(data, name, *role, sources, &pem)?;
                    eprintln!("registered client certificate {name} (role {role})");
                } else {
                    let (_, token) = tokens::create_token(data, name, *role, sources)?;
                    eprintln!("created token {name} (role {role}); it is shown only now:");
                    println!("{token}");
                }
                Ok(())
            })?;
        }
        TokenCommand::Revoke { data, name } => {
            existing_store(data, false)?;
            audited(
                data,
                "TokenRevoke",
                format!("revoked credential {name:?}"),
                || {
                    tokens::revoke(data, name)?;
                    eprintln!("revoked {name}");
                    Ok(())
                },
            )?;
        }
        TokenCommand::List { data } => {
            existing_store(data, false)?;
            println!("name\trole\tkind\tsources\tcreated\trevoked");
            for c in tokens::list(data)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    c.name,
                    c.role,
                    c.kind(),
                    c.sources.join(","),
                    c.created,
                    c.revoked.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// Runs an operator's change to the data directory under an audit line: the line first
/// (so no change is ever without one), then the change; when the change fails, a second
/// line records the failure. Appends beside a running server: each line is one write to
/// the append-only file.
pub fn audited(
    data: &Path,
    operation: &str,
    detail: String,
    change: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let trail = AuditLog::open(data).context("opening the audit trail")?;
    let entry = AuditEntry::operator(operation, detail);
    trail
        .append_blocking(&entry)
        .context("writing the audit trail (nothing was changed)")?;
    let result = change();
    if let Err(e) = &result {
        let code = e
            .downcast_ref::<empi::Error>()
            .map_or(empi::error::Code::Internal, empi::Error::code);
        if let Err(a) = trail.append_blocking(&entry.failed(code)) {
            tracing::error!("recording the failure in the audit trail: {a}");
        }
    }
    result
}
