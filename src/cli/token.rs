//! `empi token`: create, revoke and list the credentials of a data directory (works while
//! the server runs; it picks changes up on the next call).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use empi::auth::{tokens, Role};

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
        /// Store directory.
        #[arg(long)]
        data: PathBuf,
        /// submitter, registrar or admin.
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
            role,
            name,
            sources,
            cert,
        } => {
            if let Some(cert) = cert {
                let pem =
                    std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                tokens::register_certificate(data, name, *role, sources, &pem)?;
                eprintln!("registered client certificate {name} (role {role})");
            } else {
                let (_, token) = tokens::create_token(data, name, *role, sources)?;
                eprintln!("created token {name} (role {role}); it is shown only now:");
                println!("{token}");
            }
        }
        TokenCommand::Revoke { data, name } => {
            tokens::revoke(data, name)?;
            eprintln!("revoked {name}");
        }
        TokenCommand::List { data } => {
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
