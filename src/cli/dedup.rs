//! `empi dedup`: file in, clusters out.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use empi::batch::{cluster, cluster_sizes, score_records, DedupSummary, ScoreOptions};
use empi::linker::{pair_decision, Decision};
use empi::scoring::{weight_to_prob, PairScore};

use super::input::InputArgs;

/// Arguments of `empi dedup`.
#[derive(Args, Debug)]
pub struct DedupArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Clusters out: `source,local_id,cluster_id`, one line per record.
    #[arg(long)]
    pub output: PathBuf,
    /// Pairs between the thresholds (or guarded), for review.
    #[arg(long)]
    pub review: Option<PathBuf>,
    /// Run summary as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs `empi dedup`.
pub fn dedup(args: &DedupArgs) -> Result<()> {
    let started = Instant::now();
    let linker = args.input.linker()?;
    let (records, read_summary) = args.input.read()?;
    let t = linker.thresholds();
    let opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: !args.input.model_tf,
        progress: true,
    };
    let (_, run) = score_records(&linker, &records, None, &opts)?;
    let ids = cluster(records.len(), &run.pairs, t.upper);
    let out = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(out));
    w.write_record(["source", "local_id", "cluster_id"])?;
    for (r, id) in records.iter().zip(&ids) {
        w.write_record([r.source.as_str(), r.local_id.as_str(), &id.to_string()])?;
    }
    w.flush()?;
    let review: Vec<_> = run
        .pairs
        .iter()
        .filter(|p| {
            let s = PairScore {
                weight: p.weight as f64,
                guard: p.guard,
            };
            ids[p.a as usize] != ids[p.b as usize] && pair_decision(&s, t) == Decision::Review
        })
        .collect();
    if let Some(path) = &args.review {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
        w.write_record([
            "a_source",
            "a_local_id",
            "b_source",
            "b_local_id",
            "weight",
            "probability",
            "guard",
        ])?;
        for p in &review {
            let (a, b) = (&records[p.a as usize], &records[p.b as usize]);
            w.write_record([
                a.source.as_str(),
                &a.local_id,
                &b.source,
                &b.local_id,
                &format!("{:.2}", p.weight),
                &format!("{:.6}", weight_to_prob(p.weight as f64)),
                p.guard.map(|g| g.reason()).unwrap_or(""),
            ])?;
        }
        w.flush()?;
    }
    let sizes = cluster_sizes(&ids);
    let summary = DedupSummary {
        input: read_summary,
        scoring: run.stats,
        clusters: sizes.values().sum(),
        cluster_sizes: sizes,
        review_pairs: review.len() as u64,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{} records -> {} clusters; {} pairs compared, {} review pairs, {} capped block lookups; {:.2}s",
        summary.scoring.records,
        summary.clusters,
        summary.scoring.pairs_compared,
        summary.review_pairs,
        summary.scoring.capped_block_lookups,
        summary.total_secs
    )?;
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
