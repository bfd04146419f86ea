//! `empi dedup`: a file in, clusters out (`--input`), or a store re-scanned for duplicate
//! persons (`--data`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use empi::batch::{self, DedupOptions, RescanMode, RescanOptions};
use empi::input::{ColumnMapping, ReadOptions};

use super::input::InputArgs;

/// Arguments of `empi dedup`.
#[derive(Args, Debug)]
#[command(mut_arg("input", |a| a
    .help("CSV file with a header row (or give --data to re-scan a store)")
    .required_unless_present("data")
    .conflicts_with("data")))]
pub struct DedupArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Use the model's term-frequency tables instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
    /// Re-scan this store (a directory `empi serve` uses) for duplicate persons, opening
    /// review tasks; the server must be stopped.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// With --data: merge persons whose link is above the upper threshold (recorded in
    /// history) instead of opening review tasks for them.
    #[arg(long, requires = "data")]
    pub merge: bool,
    /// With --data: report what would be done without writing.
    #[arg(long, requires = "data")]
    pub dry_run: bool,
    /// Clusters out: `source,local_id,cluster_id`, one line per record.
    #[arg(long, required_unless_present = "data")]
    pub output: Option<PathBuf>,
    /// Pairs for review (between the thresholds, or refused as a chain), with the
    /// per-comparison explanation of each.
    #[arg(long)]
    pub review: Option<PathBuf>,
    /// Run summary as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Ground truth `source,local_id,person_id`: add the clusters' quality to the summary.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// Reads a CSV into a prepared dataset, reporting unusable values by column (never values).
pub fn read_input(
    path: &Path,
    columns: Option<&str>,
    opts: &ReadOptions,
    linker: &empi::linker::Linker,
    progress: bool,
) -> Result<(batch::Dataset, empi::input::ReadSummary)> {
    let mapping = columns.map(ColumnMapping::parse).transpose()?;
    let (data, summary) = batch::read_dataset(path, mapping.as_ref(), opts, linker, progress)
        .with_context(|| format!("reading {}", path.display()))?;
    super::input::print_read_summary(&summary);
    Ok((data, summary))
}

/// Runs `empi dedup`.
pub fn dedup(args: &DedupArgs) -> Result<()> {
    let progress = !args.quiet && std::io::stderr().is_terminal();
    if let Some(dir) = &args.data {
        return rescan(args, dir, progress);
    }
    let (Some(input), Some(output)) = (&args.input.file.input, &args.output) else {
        bail!("give --input and --output, or --data");
    };
    let started = Instant::now();
    let linker = args.input.linker()?;
    let (data, read_summary) = read_input(
        input,
        args.input.file.columns.as_deref(),
        &args.input.options(),
        &linker,
        progress,
    )?;
    let read_secs = started.elapsed().as_secs_f64();
    let opts = DedupOptions {
        tf_from_data: !args.model_tf,
        progress,
        ..Default::default()
    };
    let mut result = batch::dedup(&linker, data, &opts)?;
    let w = Instant::now();
    batch::write_clusters(create(output)?, &result.keys, &result.clustering.ids)
        .with_context(|| format!("writing {}", output.display()))?;
    if let Some(path) = &args.review {
        batch::write_review(
            create(path)?,
            &result.keys,
            &result.run.prepared,
            &result.linker,
            &result.review,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = &mut result.summary;
    summary.input = Some(read_summary);
    summary.timings.read_prepare = read_secs;
    summary.timings.writing = w.elapsed().as_secs_f64();
    if let Some(truth) = &args.truth {
        let labels = batch::dedup::labels_from_truth(truth, &result.keys)
            .with_context(|| format!("reading {}", truth.display()))?;
        let t = result.linker.thresholds();
        summary.quality = Some(empi::eval::quality(
            &result.clustering.ids,
            &labels,
            &result.run.pairs,
            t.upper,
            t.lower,
        ));
    }
    summary.timings.total = started.elapsed().as_secs_f64();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{} records -> {} clusters; {} candidate pair visits, {} scored in full, {} review pairs \
         ({} refused chain links), {} nameless records attached, {} capped blocks; {:.2}s",
        summary.scoring.records,
        summary.clusters,
        summary.scoring.pair_visits,
        summary.scoring.pairs_scored_in_full,
        summary.review_pairs,
        summary.chaining.refused_links,
        summary.chaining.nameless_attached,
        summary.scoring.blocks_capped,
        summary.timings.total
    )?;
    if let Some(q) = &summary.quality {
        writeln!(
            err,
            "quality: precision {:.5} recall {:.5} f1 {:.5} false-merge {:.4}% split {:.4}%",
            q.precision,
            q.recall,
            q.f1,
            100.0 * q.false_merge_rate,
            100.0 * q.split_rate
        )?;
    }
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&*summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // The process ends here: freeing a million prepared records one by one would only
    // add a few hundred milliseconds.
    std::mem::forget(result);
    Ok(())
}

fn rescan(args: &DedupArgs, dir: &Path, progress: bool) -> Result<()> {
    let linker = args.input.linker()?;
    let opts = RescanOptions {
        mode: if args.merge {
            RescanMode::MergeAboveUpper
        } else {
            RescanMode::Review
        },
        dry_run: args.dry_run,
        tf_from_data: !args.model_tf,
        progress,
        actor: "empi-dedup".to_string(),
    };
    let summary = batch::rescan::rescan_dir(dir, &linker, &opts)?;
    eprintln!(
        "{} records in {} persons: {} duplicate person pairs found, {} review tasks opened, \
         {} merges, {} skipped (already open or asserted different); {:.2}s",
        summary.records,
        summary.persons,
        summary.person_pairs,
        summary.tasks_opened,
        summary.merges,
        summary.skipped,
        summary.total_secs
    );
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
