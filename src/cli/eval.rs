//! `empi eval`: quality against ground truth over a range of thresholds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use empi::batch::{score_records, sweep_with_relations, ScoreOptions};
use empi::eval::{read_truth_and_persons, true_pairs, EvalReport, Relations};
use empi::linker::Linker;

use super::input::{check_outputs, check_truth, reading, InputArgs, OutputArgs};

/// Arguments of `empi eval`.
#[derive(Args, Debug)]
#[command(after_help = empi::input::mapping_help(), mut_arg("input", |a| a.required(true)))]
pub struct EvalArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Use the model's term-frequency tables, rival shares (twins, relatives per
    /// same-person pair) and prior λ instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
    /// Ground truth `source,local_id,person_id` (default: truth.csv beside the input).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Relations between persons of the truth, `person_a,person_b,relation` (default:
    /// relations.csv beside the truth, when there is one): counts relatives merged.
    #[arg(long)]
    pub relations: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the N highest-scoring false links and N lowest-scoring missed matches at the
    /// model threshold, as record keys and per-comparison levels (no field values).
    #[arg(long, default_value_t = 0)]
    pub explain_errors: usize,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What the table's columns measure, printed under it.
const UNITS: &str = "\
upper: the upper threshold, a match weight (log2 odds); p(match) its probability.
precision, recall, f1: of the pairs the clusters join, against the truth (0 to 1).
false-merge: % of clusters holding more than one true person; split: % of true persons
spread over more than one cluster; review: % of records in a pair left for review;
review-ok: % of reviewed pairs that are one person; relatives: record pairs of related
persons (twins, siblings, parent and child, spouses) merged, with a relations file.
";

/// Runs `empi eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    let truth = match &args.truth {
        Some(t) => t.clone(),
        None => args
            .input
            .path()?
            .parent()
            .unwrap_or(Path::new("."))
            .join("truth.csv"),
    };
    check_outputs(
        &[
            ("--input", Some(args.input.path()?)),
            ("--truth", Some(&truth)),
            ("--model", args.input.read.model.as_deref()),
        ],
        &[("--json", args.json.as_deref())],
        args.out.force,
    )?;
    let linker = args.input.linker()?;
    let (records, _) = args.input.read()?;
    let (labels, persons) =
        read_truth_and_persons(&truth, &records).map_err(|e| reading("truth file", &truth, e))?;
    let keys = records
        .iter()
        .map(|r| (r.source.as_str(), r.local_id.as_str()));
    check_truth(&truth, &labels, keys)?;
    let relations_path = args.relations.clone().or_else(|| {
        let beside = truth
            .parent()
            .unwrap_or(Path::new("."))
            .join("relations.csv");
        beside.exists().then_some(beside)
    });
    let relations = match &relations_path {
        Some(p) => Some(Relations::read(p, &persons).map_err(|e| reading("relations file", p, e))?),
        None => None,
    };
    let t = linker.thresholds();
    let opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: !args.model_tf,
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
    let who = empi::batch::Identity::of_all(&run.prepared);
    let twins = empi::batch::twins::KnownTwins::new(used.scorer(), &run.prepared);
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
        table: sweep_with_relations(
            &labels,
            &run.pairs,
            &who,
            Some(&twins),
            &uppers,
            t.lower,
            relations.as_ref(),
        ),
        relations: relations.as_ref().map(|r| r.len() as u64),
        rivals: run.stats.rivals.clone(),
        prior: run.stats.prior.clone(),
        notes: [
            ("prepare_secs".to_string(), run.stats.prepare_secs),
            ("index_secs".to_string(), run.stats.index_secs),
            ("score_secs".to_string(), run.stats.score_secs),
            ("total_secs".to_string(), started.elapsed().as_secs_f64()),
        ]
        .into(),
    };
    print!("{}{UNITS}", report.to_table());
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
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
            let rival = e
                .rival
                .map_or(String::new(), |r| format!("  held back: {};", r.reason()));
            println!(
                "  {} ~ {}  weight {:.1}{rival}  {}",
                records[p.a as usize].key(),
                records[p.b as usize].key(),
                e.weight,
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
    missed_summary(run, labels, t.upper);
}

/// Counts the scored true pairs that would not link on their own, by reason: the rival that
/// held the weight down (in words), or too little agreement. Pairs never compared (blocking) or
/// dropped below the lower threshold are not in `run.pairs` and show in blocking recall.
fn missed_summary(run: &empi::batch::ScoredRun, labels: &[u32], upper: f64) {
    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    for p in &run.pairs {
        if labels[p.a as usize] != labels[p.b as usize] {
            continue;
        }
        if p.links(upper) {
            continue;
        }
        let reason = match p.rival {
            Some(r) => r.reason(),
            None => "too little agreement (weight below the upper threshold)",
        };
        *by_reason.entry(reason).or_default() += 1;
    }
    println!("true pairs kept apart (scored, by reason):");
    for (reason, n) in by_reason {
        println!("  {n:>8}  {reason}");
    }
}
