//! `empi check`: verifies a store's invariants and that an index rebuilt from it agrees
//! with the stored records; prints a report and fails on any violation.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use empi::service::ServiceConfig;

use super::data::open_service;

/// Arguments of `empi check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Store directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Model file the server uses (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Runs `empi check`.
pub fn check(args: &CheckArgs) -> Result<()> {
    if !args.data.join("db").exists() && !args.data.join("conf").exists() {
        bail!("{}: no store here", args.data.display());
    }
    // Before opening: opening makes the directory owner-only again.
    for (path, mode) in empi::store::private::exposed(&args.data)? {
        println!(
            "warning: {} is mode {mode:04o}: others may read it (it holds patient data); \
             the next start of empi makes it owner-only, or run chmod -R go-rwx on the directory",
            path.display()
        );
    }
    let service = open_service(&args.data, args.model.as_deref(), ServiceConfig::default())?;
    let report = service.check()?;
    let s = &report.store;
    println!("records            {}", s.records);
    println!("persons active     {}", s.active_persons);
    println!("persons merged     {}", s.merged_persons);
    println!("persons retired    {}", s.retired_persons);
    println!("review tasks       {} ({} open)", s.tasks, s.open_tasks);
    println!("not-duplicate pairs {}", s.not_duplicate_pairs);
    println!("history entries    {}", s.history_entries);
    println!("change events      {}", s.feed_events);
    println!("indexed records    {}", report.indexed_records);
    for p in &s.problems {
        println!("store: {p}");
    }
    if s.more_problems > 0 {
        println!("store: … and {} more", s.more_problems);
    }
    for p in &report.index_problems {
        println!("index: {p}");
    }
    if report.is_ok() {
        println!("ok");
        Ok(())
    } else {
        let n = s.problems.len() as u64 + s.more_problems + report.index_problems.len() as u64;
        bail!("{n} invariant violation(s)")
    }
}
