//! `empi eval` and `empi dedup`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use empi::batch::{cluster, cluster_sizes, score_records, DedupSummary, ScoreOptions};
use empi::eval::{read_truth, sweep, true_pairs, EvalReport};
use empi::input::{read_csv, ColumnMapping, ReadOptions};
use empi::linker::Linker;
use empi::scoring::{weight_to_prob, Model};

/// Where records come from: a CSV and how to read it.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// CSV file with a header row.
    #[arg(long)]
    pub input: PathBuf,
    /// Column mapping `ours=theirs,...` (default: headers named like our fields).
    #[arg(long)]
    pub columns: Option<String>,
    /// Source name for records when `source` is not mapped.
    #[arg(long, default_value = "file")]
    pub source: String,
    /// Treat any unparseable value as an error naming row and column.
    #[arg(long)]
    pub strict: bool,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use the model's term-frequency tables instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
}

impl InputArgs {
    fn linker(&self) -> Result<Linker> {
        let model = match &self.model {
            Some(p) => Model::load(p)?,
            None => Model::default_model(),
        };
        Ok(Linker::new(model)?)
    }

    fn read(&self) -> Result<(Vec<empi::record::Record>, empi::input::ReadSummary)> {
        let mapping = self
            .columns
            .as_deref()
            .map(ColumnMapping::parse)
            .transpose()?;
        let opts = ReadOptions {
            strict: self.strict,
            default_source: self.source.clone(),
        };
        let (records, summary) = read_csv(&self.input, mapping.as_ref(), &opts)?;
        if !summary.issues.is_empty() {
            let list: Vec<String> = summary
                .issues
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            eprintln!(
                "unusable values (kept partly or treated as missing): {}",
                list.join(", ")
            );
        }
        if summary.skipped_rows > 0 {
            eprintln!(
                "rows skipped (no local id or no demographic value): {}",
                summary.skipped_rows
            );
        }
        Ok((records, summary))
    }
}

/// Arguments of `empi eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Ground truth `source,local_id,person_id` (default: truth.csv beside the input).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the N highest-scoring false links and N lowest-scoring missed matches at the
    /// model threshold, as record keys and per-comparison levels (no field values).
    #[arg(long, default_value_t = 0)]
    pub explain_errors: usize,
}

/// Runs `empi eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    let linker = args.input.linker()?;
    let (records, _) = args.input.read()?;
    let truth = args.truth.clone().unwrap_or_else(|| {
        args.input
            .input
            .parent()
            .unwrap_or(Path::new("."))
            .join("truth.csv")
    });
    let labels =
        read_truth(&truth, &records).with_context(|| format!("reading {}", truth.display()))?;
    let t = linker.thresholds();
    let opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: !args.input.model_tf,
        progress: true,
    };
    let (used, run) = score_records(&linker, &records, Some(&labels), &opts)?;
    if args.explain_errors > 0 {
        explain_errors(&used, &records, &labels, &run, args.explain_errors);
    }
    let mut uppers: Vec<f64> = (0..=14).map(|i| t.lower + 2.0 * i as f64).collect();
    if !uppers.contains(&t.upper) {
        uppers.push(t.upper);
        uppers.sort_by(f64::total_cmp);
    }
    let tp = true_pairs(&labels);
    let report = EvalReport {
        records: records.len() as u64,
        true_pairs: tp,
        blocking_recall: if tp == 0 {
            1.0
        } else {
            run.stats.true_candidate_pairs as f64 / tp as f64
        },
        pairs_compared: run.stats.pairs_compared,
        capped_block_lookups: run.stats.capped_block_lookups,
        model_upper: t.upper,
        model_lower: t.lower,
        table: sweep(&labels, &run.pairs, &uppers, t.lower),
        notes: [
            ("prepare_secs".to_string(), run.stats.prepare_secs),
            ("index_secs".to_string(), run.stats.index_secs),
            ("score_secs".to_string(), run.stats.score_secs),
            ("total_secs".to_string(), started.elapsed().as_secs_f64()),
        ]
        .into(),
    };
    print!("{}", report.to_table());
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

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
            let w = p.weight as f64;
            ids[p.a as usize] != ids[p.b as usize] && (w < t.upper || p.guard.is_some())
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

fn explain_errors(
    linker: &Linker,
    records: &[empi::record::Record],
    labels: &[u32],
    run: &empi::batch::ScoredRun,
    n: usize,
) {
    let t = linker.thresholds();
    let show = |title: &str, pairs: Vec<&empi::batch::ScoredPair>| {
        println!("{title}");
        for p in pairs {
            let e = linker.explain(&run.prepared[p.a as usize], &run.prepared[p.b as usize]);
            let levels: Vec<String> = e
                .comparisons
                .iter()
                .filter(|c| c.level != "missing")
                .map(|c| format!("{}={}({:+.1})", c.comparison, c.level, c.weight))
                .collect();
            println!(
                "  {} ~ {}  w={:.1} guard={:?}  {}",
                records[p.a as usize].key(),
                records[p.b as usize].key(),
                e.weight,
                e.guard,
                levels.join(" ")
            );
        }
    };
    let mut false_links: Vec<_> = run
        .pairs
        .iter()
        .filter(|p| labels[p.a as usize] != labels[p.b as usize] && p.weight as f64 >= t.lower)
        .collect();
    false_links.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    false_links.truncate(n);
    show("highest-scoring pairs of different persons:", false_links);
    let mut missed: Vec<_> = run
        .pairs
        .iter()
        .filter(|p| labels[p.a as usize] == labels[p.b as usize] && (p.weight as f64) < t.upper)
        .collect();
    missed.sort_by(|a, b| a.weight.total_cmp(&b.weight));
    missed.truncate(n);
    show("lowest-scoring kept pairs of the same person:", missed);
}
