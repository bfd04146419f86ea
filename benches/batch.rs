//! Batch dedup at scale: end-to-end timings per phase, quality and peak memory for generated
//! sets of growing size, each run in a child process so its peak RSS (`VmHWM`) is its own.
//! This is where bounded memory is checked: each run fails if its peak RSS exceeds the
//! budget (1.5 GiB by default).
//!
//! ```text
//! cargo bench --bench batch                                   # small smoke run (20k persons)
//! cargo bench --bench batch -- --persons 50000,150000,500000  # ~100k, 300k, 1M records
//! cargo bench --bench batch -- --persons 150000 --analyze     # blocking rules vs truth
//! ```
//! Data is generated with a fixed seed (7) into `target/batch-bench/` and reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use empi::batch::{self, DedupOptions};
use empi::blocking::{BlockRule, SortedBlocks};
use empi::input::ReadOptions;
use empi::linker::Linker;
use empi::synth::SynthConfig;

// Same allocator as the `empi` binary, so timings match `empi dedup`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 7;
const DEFAULT_BUDGET_MIB: u64 = 1536;

fn data_dir(persons: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/batch-bench")
        .join(format!("p{persons}-s{SEED}"))
}

fn ensure_data(persons: u64) -> Result<PathBuf> {
    let dir = data_dir(persons);
    if !dir.join("truth.csv").exists() {
        let config = SynthConfig {
            persons,
            seed: SEED,
            ..Default::default()
        };
        empi::synth::generate(&config, &dir)?;
    }
    Ok(dir)
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One end-to-end run in this process; prints one JSON line. `dir` overrides the
/// generated set (any directory with records.csv and truth.csv).
fn one(persons: u64, dir: Option<PathBuf>) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => ensure_data(persons)?,
    };
    let started = Instant::now();
    let linker = Linker::with_default_model();
    let (data, _) = batch::read_dataset(
        &dir.join("records.csv"),
        None,
        &ReadOptions::default(),
        &linker,
        false,
    )?;
    let read = started.elapsed().as_secs_f64();
    let mut opts = DedupOptions::default();
    if let Ok(rule) = std::env::var("EMPI_CHAIN_RULE") {
        opts.chain_rule.compared_only = rule.contains("compared");
        opts.chain_rule.guards = if rule.contains("all-guards") {
            batch::ChainGuards::All
        } else if rule.contains("no-guards") {
            batch::ChainGuards::None
        } else {
            batch::ChainGuards::BirthOrder
        };
        eprintln!("chain rule {:?}", opts.chain_rule);
    }
    let result = batch::dedup(&linker, data, &opts)?;
    let w = Instant::now();
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/batch-bench");
    std::fs::create_dir_all(&scratch)?;
    let out = scratch.join(format!("clusters-{}.csv", std::process::id()));
    batch::dedup::write_clusters(
        std::fs::File::create(&out)?,
        &result.keys,
        &result.clustering.ids,
    )?;
    let write = w.elapsed().as_secs_f64();
    std::fs::remove_file(&out)?;
    let total = started.elapsed().as_secs_f64();
    let labels = batch::dedup::labels_from_truth(&dir.join("truth.csv"), &result.keys)?;
    let t = result.linker.thresholds();
    let q = empi::eval::quality(
        &result.clustering.ids,
        &labels,
        &result.run.pairs,
        t.upper,
        t.lower,
    );
    let s = &result.summary;
    println!(
        "{}",
        serde_json::json!({
            "persons": persons,
            "records": s.scoring.records,
            "pair_visits": s.scoring.pair_visits,
            "pairs_scored_in_full": s.scoring.pairs_scored_in_full,
            "pairs_kept": s.scoring.pairs_kept,
            "refused_links": s.chaining.refused_links,
            "read_prepare_s": read,
            "tf_s": s.timings.term_frequencies,
            "blocking_s": s.timings.blocking,
            "scoring_s": s.timings.scoring,
            "clustering_s": s.timings.clustering,
            "write_s": write,
            "total_s": total,
            "peak_rss_mib": peak_rss_kib() / 1024,
            "precision": q.precision,
            "recall": q.recall,
            "f1": q.f1,
            "false_merge_rate": q.false_merge_rate,
        })
    );
    Ok(())
}

/// Per blocking rule: pairs first found there, true pairs it holds, and true pairs only it
/// holds (what dropping the rule would lose).
fn analyze(persons: u64) -> Result<()> {
    let dir = ensure_data(persons)?;
    let linker = Linker::with_default_model();
    let (data, _) = batch::read_dataset(
        &dir.join("records.csv"),
        None,
        &ReadOptions::default(),
        &linker,
        false,
    )?;
    let labels = batch::dedup::labels_from_truth(&dir.join("truth.csv"), &data.keys)?;
    let blocks = SortedBlocks::build(&data.prepared, linker.blocking());
    let n = BlockRule::ALL.len();
    let parts = blocks.par_visit_pairs(
        None,
        || vec![[0u64; 3]; n],
        |acc, a, b, rule| {
            acc[rule as usize][0] += 1;
            if labels[a as usize] == labels[b as usize] {
                let set = blocks.shared_rules(a, b);
                for (i, row) in acc.iter_mut().enumerate() {
                    if set & (1 << i) != 0 {
                        row[1] += 1;
                        if set == 1 << i {
                            row[2] += 1;
                        }
                    }
                }
            }
        },
    );
    let mut total = vec![[0u64; 3]; n];
    for p in parts {
        for (t, x) in total.iter_mut().zip(p) {
            for k in 0..3 {
                t[k] += x[k];
            }
        }
    }
    let true_pairs = empi::eval::true_pairs(&labels);
    println!("records {}  true pairs {}", labels.len(), true_pairs);
    println!(
        "{:>14} {:>12} {:>12} {:>12}",
        "rule", "pairs", "true", "only here"
    );
    for (r, t) in BlockRule::ALL.iter().zip(total) {
        println!("{:>14} {:>12} {:>12} {:>12}", r.name(), t[0], t[1], t[2]);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(p) = get("--one") {
        return one(p.parse()?, get("--dir").map(PathBuf::from));
    }
    let persons: Vec<u64> = get("--persons")
        .unwrap_or_else(|| "20000".into())
        .split(',')
        .map(|s| s.trim().parse().context("--persons takes numbers"))
        .collect::<Result<_>>()?;
    if args.iter().any(|a| a == "--analyze") {
        for &p in &persons {
            analyze(p)?;
        }
        return Ok(());
    }
    let budget: u64 = get("--budget-mib").map_or(Ok(DEFAULT_BUDGET_MIB), |s| s.parse())?;
    let exe = std::env::current_exe()?;
    for &p in &persons {
        ensure_data(p)?;
        let wall = Instant::now();
        let out = Command::new(&exe)
            .args(["--one", &p.to_string()])
            .output()?;
        if !out.status.success() {
            bail!(
                "run for {p} persons failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())?;
        println!("{} (process wall {:.2}s)", v, wall.elapsed().as_secs_f64());
        let rss = v["peak_rss_mib"].as_u64().unwrap_or(0);
        if rss > budget {
            bail!("peak RSS {rss} MiB over the {budget} MiB budget for {p} persons");
        }
    }
    Ok(())
}
