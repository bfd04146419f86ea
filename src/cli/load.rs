//! `empi load`: bulk import of a CSV through the service's own match-or-create path
//! (in-process, no network), with a progress bar and a summary of the decisions.
//!
//! A load is one operation in the audit trail (actor `operator:` and the OS user): a line
//! before the first record is stored, made durable with the store, and a line at the end
//! with the counts (or the error). The records themselves carry the load's `--actor` in
//! their history.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use empi::auth::{AuditEntry, AuditLog};
use empi::linker::Decision;
use empi::record::Record;
use empi::service::{Service, ServiceConfig};

use super::data::{existing_store, open_service_and_store, settle_store};
use super::input::InputArgs;

/// Arguments of `empi load`.
#[derive(Args, Debug)]
#[command(
    after_help = empi::input::mapping_help(),
    mut_arg("input", |a| a.required(true)),
    mut_arg("model", |a| a.help("Model file (default: the shipped default model); use the server's")),
)]
pub struct LoadArgs {
    /// Store directory (an existing store unless --create; must not be open in a running
    /// server).
    #[arg(long)]
    pub data: PathBuf,
    /// Create the store when --data holds none.
    #[arg(long)]
    pub create: bool,
    // No --model-tf: the service always scores with the model's term frequencies.
    #[command(flatten)]
    pub input: InputArgs,
    /// Records decided concurrently.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Actor recorded in the history.
    #[arg(long, default_value = "empi-load")]
    pub actor: String,
    /// Wait for a flush after every record, as the server does, instead of flushing once
    /// at the end (much slower; the end result is the same).
    #[arg(long)]
    pub durable_each: bool,
}

#[derive(Default)]
struct Counts {
    linked: AtomicU64,
    created: AtomicU64,
    review: AtomicU64,
    unchanged: AtomicU64,
    rejected: AtomicU64,
}

/// Runs `empi load`.
pub fn load(args: &LoadArgs) -> Result<()> {
    existing_store(&args.data, args.create)?;
    let (records, _) = args.input.read()?;
    let config = ServiceConfig {
        durable: args.durable_each,
        ..ServiceConfig::default()
    };
    let (service, store) =
        open_service_and_store(&args.data, args.input.read.model.as_deref(), config)?;
    let service = Arc::new(service);
    let trail = AuditLog::open_staged(&args.data, store).context("opening the audit trail")?;
    let started_entry = AuditEntry::operator(
        "Load",
        format!(
            "started: {} records read, actor {:?}",
            records.len(),
            args.actor
        ),
    );
    trail
        .append_blocking(&started_entry)
        .context("writing the audit trail (nothing was loaded)")?;
    let loaded = load_into(&service, records, args);
    let end = match &loaded {
        Ok(summary) => AuditEntry::operator("Load", format!("finished: {summary}")),
        Err(e) => AuditEntry::operator("Load", "stopped by an error".to_string()).failed(
            e.downcast_ref::<empi::Error>()
                .map_or(empi::error::Code::Internal, empi::Error::code),
        ),
    };
    if let Err(e) = trail.append_blocking(&end) {
        tracing::error!("recording the end of the load in the audit trail: {e}");
    }
    let summary = loaded?;
    eprintln!("{summary}");
    drop(trail);
    drop(service);
    settle_store(&args.data);
    Ok(())
}

/// Loads `records` and returns the summary line.
fn load_into(service: &Arc<Service>, records: Vec<Record>, args: &LoadArgs) -> Result<String> {
    service.record_model_version()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let counts = runtime.block_on(run(
        Arc::clone(service),
        records,
        args.concurrency.max(1),
        args.actor.clone(),
    ))?;
    service.flush()?;
    let secs = started.elapsed().as_secs_f64();
    // The server started next on this store loads the index instead of rebuilding it.
    if let Err(e) = service.save_snapshot() {
        tracing::warn!(error = %e, "index snapshot not written; the next start rebuilds");
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let done = get(&counts.linked) + get(&counts.created) + get(&counts.review);
    let stats = service.stats()?;
    drop(runtime);
    Ok(format!(
        "{} records in {secs:.1}s ({:.0}/s): {} linked, {} created, {} review, {} unchanged, {} rejected; store now {} records, {} persons, {} open review tasks",
        done + get(&counts.unchanged),
        (done + get(&counts.unchanged)) as f64 / secs.max(1e-9),
        get(&counts.linked),
        get(&counts.created),
        get(&counts.review),
        get(&counts.unchanged),
        get(&counts.rejected),
        stats.records,
        stats.persons,
        stats.open_tasks,
    ))
}

async fn run(
    service: Arc<Service>,
    records: Vec<Record>,
    concurrency: usize,
    actor: String,
) -> Result<Arc<Counts>> {
    let bar = empi::batch::progress_bar(records.len() as u64, "load", true);
    let records = Arc::new(records);
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Counts::default());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (service, records, next, counts, bar, actor) = (
            Arc::clone(&service),
            Arc::clone(&records),
            Arc::clone(&next),
            Arc::clone(&counts),
            bar.clone(),
            actor.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(record) = records.get(i) else {
                    return Ok::<(), empi::Error>(());
                };
                match service.match_or_create(record.clone(), &actor).await {
                    Ok(r) if r.unchanged => counts.unchanged.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => match r.decision {
                        Decision::Link => counts.linked.fetch_add(1, Ordering::Relaxed),
                        Decision::New => counts.created.fetch_add(1, Ordering::Relaxed),
                        Decision::Review => counts.review.fetch_add(1, Ordering::Relaxed),
                    },
                    // The message names the record key and field, never the value.
                    Err(e @ empi::Error::InvalidInput { .. }) => {
                        bar.suspend(|| eprintln!("rejected: {e}"));
                        counts.rejected.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => return Err(e),
                };
                bar.inc(1);
            }
        }));
    }
    for w in workers {
        w.await.context("a load worker panicked")??;
    }
    bar.finish_and_clear();
    Ok(counts)
}
