//! `empi audit`: exports the audit trail of a data directory as JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use empi::auth::{audit, time, AuditLog};
use empi::store::SledStore;

/// Arguments of `empi audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Store directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-01-31T08:00:00Z, or a date).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries by this actor (credential name).
    #[arg(long)]
    pub actor: Option<String>,
}

/// Runs `empi audit`.
pub fn audit(args: &AuditArgs) -> Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| time::parse_rfc3339("since", s))
        .transpose()?;
    complete_from_store(&args.data)?;
    let read = audit::read(&args.data, since, args.actor.as_deref())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in &read.entries {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if !read.unreadable_lines.is_empty() {
        eprintln!(
            "warning: unreadable audit lines (torn writes?): {:?}",
            read.unreadable_lines
        );
    }
    Ok(())
}

/// After a crash, the trail's last lines may be only in the store until the server starts
/// again ([`AuditLog::open_staged`]): when no server holds the store, opening the trail
/// over it puts them in the file first. A running server keeps the file complete itself.
fn complete_from_store(data: &Path) -> Result<()> {
    let Some(store) =
        SledStore::open_if_free(data).with_context(|| format!("opening {}", data.display()))?
    else {
        return Ok(());
    };
    drop(AuditLog::open_staged(data, Arc::new(store))?);
    Ok(())
}
