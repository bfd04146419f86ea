//! `empi train`: learn a model from a CSV file or a store's records, write it as JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use empi::batch::{prepare_all, read_dataset};
use empi::linker::Linker;
use empi::scoring::estimate::{train, FixedValue, TrainOptions};
use empi::store::{SledStore, Store};

use super::input::InputArgs;

/// Arguments of `empi train`.
#[derive(Args, Debug)]
#[command(
    mut_arg("input", |a| a
        .help("CSV file with a header row (or use --data)")
        .conflicts_with("data")
        .required_unless_present("data")),
    mut_arg("model", |a| a.help(
        "Starting model: thresholds, placeholders and fixed values come from it \
         (default: the shipped default model)"
    )),
)]
pub struct TrainArgs {
    // No --model-tf: training counts its own term frequencies.
    #[command(flatten)]
    pub input: InputArgs,
    /// Store directory to train from (the server must not be running on it).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to write the trained model (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the random-pair sample and of candidate-pair sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fix a value instead of estimating it: `comparison.level.m=0.9` or `...u=0.01`
    /// (repeatable; levels as in `empi model report`).
    #[arg(long = "fix", value_name = "COMPARISON.LEVEL.M|U=VALUE")]
    pub fix: Vec<String>,
    /// Most random pairs drawn for u.
    #[arg(long, default_value_t = TrainOptions::default().u_max_pairs)]
    pub u_max_pairs: u64,
    /// Most candidate pairs compared per EM run (sampled uniformly beyond).
    #[arg(long, default_value_t = TrainOptions::default().em_max_pairs)]
    pub em_max_pairs: u64,
}

/// Runs `empi train`.
pub fn train_command(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let base = args.input.read.model()?;
    let fixed = args
        .fix
        .iter()
        .map(|s| s.parse::<FixedValue>())
        .collect::<Result<Vec<_>, _>>()?;
    let linker = Linker::new(base.clone())?;
    let (prepared, input) = match (&args.input.file.input, &args.data) {
        (Some(path), None) => {
            let mapping = args.input.mapping()?;
            let opts = args.input.options();
            let (data, summary) = read_dataset(path, mapping.as_ref(), &opts, &linker, true)
                .with_context(|| format!("reading {}", path.display()))?;
            if summary.skipped_rows > 0 {
                eprintln!(
                    "rows skipped (no local id or no demographic value): {}",
                    summary.skipped_rows
                );
            }
            (data.prepared, format!("file {}", path.display()))
        }
        (None, Some(dir)) => {
            let store =
                SledStore::open(dir).with_context(|| format!("opening store {}", dir.display()))?;
            let records = store
                .records()
                .map(|r| r.map(|s| s.record))
                .collect::<empi::Result<Vec<_>>>()?;
            (
                prepare_all(&linker, &records, true),
                format!("store {}", dir.display()),
            )
        }
        _ => bail!("give exactly one of --input and --data"),
    };
    eprintln!(
        "read {} records in {:.1}s",
        prepared.len(),
        started.elapsed().as_secs_f64()
    );
    let opts = TrainOptions {
        seed: args.seed,
        u_max_pairs: args.u_max_pairs,
        em_max_pairs: args.em_max_pairs,
        fixed,
        input,
        progress: true,
        ..Default::default()
    };
    let trained = train(&prepared, &base, &opts)?;
    std::fs::write(&args.out, trained.model.to_json())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let info = &trained.info;
    eprintln!(
        "model {} written to {}: λ = {:.3e}, u from {} random pairs, {} EM runs, {:.1}s in all",
        trained.model.id,
        args.out.display(),
        info.prior,
        info.u_sample.pairs,
        info.runs.iter().filter(|r| !r.skipped).count(),
        started.elapsed().as_secs_f64()
    );
    for r in &info.runs {
        match &r.em {
            Some(em) => eprintln!(
                "  {:<12} {:>9} pairs ({} candidates), {} patterns, {} iterations{}, match share {:.4}",
                r.rule.name(),
                r.pairs_used,
                r.candidate_pairs,
                r.distinct_patterns,
                em.iterations,
                if em.converged { "" } else { " (not converged)" },
                em.match_share
            ),
            None => eprintln!(
                "  {:<12} skipped: {} pairs",
                r.rule.name(),
                r.pairs_used
            ),
        }
    }
    Ok(())
}
