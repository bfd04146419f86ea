//! `empi dedup`: a file in, clusters out (`--input`), or a store re-scanned for duplicate
//! persons (`--data`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use empi::batch::{self, readable, DedupOptions, RescanMode, RescanOptions};
use empi::input::{ColumnMapping, ReadOptions, ReadSummary, Rows};
use empi::scoring::estimate::counted_lines;

use super::input::{check_outputs, check_truth, reading, InputArgs, OutputArgs};

/// Arguments of `empi dedup`.
#[derive(Args, Debug)]
#[command(
    after_help = empi::input::mapping_help(),
    mut_arg("input", |a| a
        .help("CSV file with a header row (or give --data to re-scan a store)")
        .required_unless_present("data")
        .conflicts_with("data")),
    mut_arg("columns", |a| a.conflicts_with("data")),
    mut_arg("source", |a| a.conflicts_with("data")),
    mut_arg("strict", |a| a.conflicts_with("data")),
    mut_arg("delimiter", |a| a.conflicts_with("data")),
    mut_arg("encoding", |a| a.conflicts_with("data")),
)]
pub struct DedupArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Use the model's term-frequency tables, rival shares (twins, relatives per
    /// same-person pair) and prior λ instead of counting them from the input.
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
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub output: Option<PathBuf>,
    /// The input's own rows with `cluster_id,cluster_size,match_weight` in front (the
    /// weight of the record's strongest pair inside its cluster); holds the input's values.
    #[arg(long, conflicts_with = "data")]
    pub joined: Option<PathBuf>,
    /// Pairs for review (between the thresholds, or refused as a chain) as CSV: keys,
    /// weight, reason and each comparison's level and weight; no field values.
    #[arg(long, conflicts_with = "data")]
    pub review: Option<PathBuf>,
    /// The review pairs for a person to read: both records' values side by side, each
    /// comparison's level and weight, and why the pair is not automatic; holds the
    /// input's values.
    #[arg(long, conflicts_with = "data")]
    pub review_text: Option<PathBuf>,
    /// Run summary as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Ground truth `source,local_id,person_id`: add the clusters' quality to the summary.
    #[arg(long, conflicts_with = "data")]
    pub truth: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// Reads a CSV into a prepared dataset, printing what reading found (never values).
pub fn read_input(
    path: &Path,
    columns: Option<&str>,
    opts: &ReadOptions,
    linker: &empi::linker::Linker,
    progress: bool,
) -> Result<(batch::Dataset, ReadSummary)> {
    let mapping = columns.map(ColumnMapping::parse).transpose()?;
    let (data, summary) = batch::read_dataset(path, mapping.as_ref(), opts, linker, progress)
        .map_err(|e| reading("input file", path, e))?;
    super::input::print_read_summary(path, &summary);
    Ok((data, summary))
}

/// Runs `empi dedup`.
pub fn dedup(args: &DedupArgs) -> Result<()> {
    let progress = !args.quiet && std::io::stderr().is_terminal();
    if let Some(dir) = &args.data {
        check_outputs(&[], &[("--report", args.report.as_deref())], args.out.force)?;
        return rescan(args, dir, progress);
    }
    let (Some(input), Some(output)) = (&args.input.file.input, &args.output) else {
        bail!("give --input and --output, or --data");
    };
    check_outputs(
        &[
            ("--input", Some(input)),
            ("--truth", args.truth.as_deref()),
            ("--model", args.input.read.model.as_deref()),
        ],
        &[
            ("--output", Some(output)),
            ("--joined", args.joined.as_deref()),
            ("--review", args.review.as_deref()),
            ("--review-text", args.review_text.as_deref()),
            ("--report", args.report.as_deref()),
        ],
        args.out.force,
    )?;
    let started = Instant::now();
    let linker = args.input.linker()?;
    let opts = args.input.options();
    let (data, read_summary) = read_input(
        input,
        args.input.file.columns.as_deref(),
        &opts,
        &linker,
        progress,
    )?;
    // Ground truth is read before the run, so a truth file that fits nothing fails early.
    let labels = match &args.truth {
        Some(truth) => {
            let labels = batch::dedup::labels_from_truth(truth, &data.keys)
                .map_err(|e| reading("truth file", truth, e))?;
            check_truth(
                truth,
                &labels,
                (0..data.keys.len()).map(|i| data.keys.get(i)),
            )?;
            Some(labels)
        }
        None => None,
    };
    let read_secs = started.elapsed().as_secs_f64();
    let dedup_opts = DedupOptions {
        tf_from_data: !args.model_tf,
        progress,
        ..Default::default()
    };
    let mut result = batch::dedup(&linker, data, &dedup_opts)?;
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
    let mapping = args.input.mapping()?;
    let rows = || {
        Rows::open(input, mapping.as_ref(), &opts, &read_summary)
            .map_err(|e| reading("input file", input, e))
    };
    if let Some(path) = &args.joined {
        let weights = readable::joining_weights(&result.run.pairs, &result.clustering.ids);
        readable::write_joined(
            &mut rows()?,
            create(path)?,
            &result.keys,
            &result.clustering.ids,
            &weights,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.review_text {
        let records = readable::review_records(&mut rows()?, &result.keys, &result.review)
            .map_err(|e| reading("input file", input, e))?;
        readable::write_review_text(
            create(path)?,
            &result.keys,
            &records,
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
    if let Some(labels) = &labels {
        let t = result.linker.thresholds();
        summary.quality = Some(empi::eval::quality(
            &result.clustering.ids,
            labels,
            &result.run.pairs,
            t.upper,
            t.lower,
        ));
    }
    summary.timings.total = started.elapsed().as_secs_f64();
    print_summary(summary)?;
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&*summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // The process ends here: freeing a million prepared records one by one would only
    // add a few hundred milliseconds.
    std::mem::forget(result);
    Ok(())
}

/// `12 of 1, 6 of 2, 1 of 3`: clusters by size, the largest sizes grouped beyond a line.
fn sizes_text(sizes: &std::collections::BTreeMap<u32, u64>) -> String {
    let mut parts: Vec<String> = sizes
        .iter()
        .take(6)
        .map(|(size, n)| format!("{n} of {size}"))
        .collect();
    let rest: u64 = sizes.values().skip(6).sum();
    if rest > 0 {
        let from = sizes.keys().nth(6).copied().unwrap_or(0);
        parts.push(format!("{rest} of {from} or more"));
    }
    parts.join(", ")
}

/// The run's result on stderr, after what reading found: clusters by size, review pairs
/// by reason, the work done, and quality when measured.
fn print_summary(s: &batch::DedupSummary) -> Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{} records -> {} clusters ({}); {:.2}s",
        s.scoring.records,
        s.clusters,
        sizes_text(&s.cluster_sizes),
        s.timings.total
    )?;
    let reasons: Vec<String> = s
        .review_by_reason
        .iter()
        .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
        .collect();
    writeln!(
        err,
        "  review pairs: {}{}",
        s.review_pairs,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    )?;
    writeln!(
        err,
        "  work: {} candidate pair visits, {} scored in full, {} capped blocks; {} refused \
         chain links, {} nameless records attached",
        s.scoring.pair_visits,
        s.scoring.pairs_scored_in_full,
        s.scoring.blocks_capped,
        s.chaining.refused_links,
        s.chaining.nameless_attached,
    )?;
    let from = ["from the input"; 2];
    let counted = counted_lines(
        s.scoring.prior.as_ref(),
        s.scoring.rivals.as_ref(),
        from,
        "  ",
    );
    write!(err, "{counted}")?;
    if let Some(q) = &s.quality {
        writeln!(
            err,
            "  quality: precision {:.5} recall {:.5} f1 {:.5} (pairwise, 0 to 1); false merges \
             {:.4}% of clusters; split persons {:.4}% of true persons",
            q.precision,
            q.recall,
            q.f1,
            100.0 * q.false_merge_rate,
            100.0 * q.split_rate
        )?;
    }
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
    let (tasks, merges) = if summary.dry_run {
        ("review tasks would be opened", "merges would be made")
    } else {
        ("review tasks opened", "merges")
    };
    eprintln!(
        "{} records in {} persons: {} duplicate person pairs found, {} {tasks}, {} {merges}, \
         {} skipped (already open or asserted different); {:.2}s{}",
        summary.records,
        summary.persons,
        summary.person_pairs,
        summary.tasks_opened,
        summary.merges,
        summary.skipped,
        summary.total_secs,
        if summary.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    let from = ["from the stored records"; 2];
    eprint!(
        "{}",
        counted_lines(summary.prior.as_ref(), summary.rivals.as_ref(), from, "  ")
    );
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
