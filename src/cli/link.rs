//! `empi link`: two files in; each left record to its best right match, or (with
//! `--clusters`) clusters across both files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use empi::batch::{self, DedupOptions, LinkOptions};
use empi::linker::Decision;
use empi::scoring::estimate::counted_lines;

use super::dedup::read_input;
use super::input::{check_outputs, OutputArgs, ReadArgs};

/// Arguments of `empi link`.
#[derive(Args, Debug)]
#[command(after_help = empi::input::mapping_help())]
pub struct LinkArgs {
    /// Left CSV file (each of its records gets at most one right match).
    #[arg(long)]
    pub left: PathBuf,
    /// Right CSV file.
    #[arg(long)]
    pub right: PathBuf,
    /// Column mapping of the left file (default: headers named like our fields).
    #[arg(long)]
    pub columns_left: Option<String>,
    /// Column mapping of the right file.
    #[arg(long)]
    pub columns_right: Option<String>,
    /// Source name for left records when `source` is not mapped.
    #[arg(long, default_value = "left")]
    pub source_left: String,
    /// Source name for right records when `source` is not mapped.
    #[arg(long, default_value = "right")]
    pub source_right: String,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Use the model's term-frequency tables, rival shares and prior λ instead of counting
    /// them from both files.
    #[arg(long)]
    pub model_tf: bool,
    /// Output: one line per left record
    /// (`left_source,left_local_id,right_source,right_local_id,weight,probability,decision,...`),
    /// or with --clusters `side,source,local_id,cluster_id` for every record of both files.
    #[arg(long)]
    pub output: PathBuf,
    /// Cluster both files together (deduplicating within each as well) instead of
    /// best-match linking.
    #[arg(long)]
    pub clusters: bool,
    /// Run summary as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `empi link`.
pub fn link(args: &LinkArgs) -> Result<()> {
    let started = Instant::now();
    let progress = !args.quiet && std::io::stderr().is_terminal();
    check_outputs(
        &[
            ("--left", Some(&args.left)),
            ("--right", Some(&args.right)),
            ("--model", args.read.model.as_deref()),
        ],
        &[
            ("--output", Some(&args.output)),
            ("--report", args.report.as_deref()),
        ],
        args.out.force,
    )?;
    let linker = args.read.linker()?;
    let read = |path: &PathBuf, cols: &Option<String>, source: &str| {
        read_input(
            path,
            cols.as_deref(),
            &args.read.options(source),
            &linker,
            progress,
        )
    };
    let (left, _) = read(&args.left, &args.columns_left, &args.source_left)?;
    let (right, _) = read(&args.right, &args.columns_right, &args.source_right)?;
    let out = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let nl = left.len();
    let report = if args.clusters {
        let mut both = left;
        both.keys.extend(&right.keys);
        both.prepared.extend(right.prepared);
        let opts = DedupOptions {
            tf_from_data: !args.model_tf,
            progress,
            ..Default::default()
        };
        let result = batch::dedup(&linker, both, &opts)?;
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(out));
        w.write_record(["side", "source", "local_id", "cluster_id"])?;
        for (i, id) in result.clustering.ids.iter().enumerate() {
            let (s, l) = result.keys.get(i);
            let side = if i < nl { "left" } else { "right" };
            w.write_record([side, s, l, &id.to_string()])?;
        }
        w.flush()?;
        eprintln!(
            "{} + {} records -> {} clusters; {} pairs scored in full, {} review pairs; {:.2}s",
            nl,
            result.keys.len() - nl,
            result.summary.clusters,
            result.summary.scoring.pairs_scored_in_full,
            result.summary.review_pairs,
            started.elapsed().as_secs_f64()
        );
        serde_json::to_string_pretty(&result.summary)?
    } else {
        let opts = LinkOptions {
            tf_from_data: !args.model_tf,
            progress,
        };
        let result = batch::link(&linker, left, right, &opts)?;
        batch::write_links(out, &result)
            .with_context(|| format!("writing {}", args.output.display()))?;
        let count = |d: Decision| result.rows.iter().filter(|r| r.decision == d).count();
        let (links, reviews, none) = (
            count(Decision::Link),
            count(Decision::Review),
            count(Decision::New),
        );
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "{} left records: {} linked, {} for review, {} without a match; {} pairs scored in \
             full; {:.2}s",
            nl,
            links,
            reviews,
            none,
            result.stats.pairs_scored_in_full,
            started.elapsed().as_secs_f64()
        )?;
        let from = ["across the two files", "from both files"];
        let stats = &result.stats;
        let counted = counted_lines(stats.prior.as_ref(), stats.rivals.as_ref(), from, "  ");
        write!(err, "{counted}")?;
        serde_json::to_string_pretty(&serde_json::json!({
            "left_records": nl,
            "right_records": result.keys.len() - nl,
            "linked": links,
            "review": reviews,
            "none": none,
            "scoring": result.stats,
            "total_secs": started.elapsed().as_secs_f64(),
        }))?
    };
    if let Some(p) = &args.report {
        std::fs::write(p, report).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
