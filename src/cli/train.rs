//! `empi train`: learn a model from a CSV file or a store's records, write it as JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use empi::batch::{prepare_all, read_dataset};
use empi::linker::Linker;
use empi::scoring::estimate::{train, FixedValue, TrainOptions, Trained};
use empi::scoring::Comparison;
use empi::store::{SledStore, Store};

use super::input::{check_outputs, print_read_summary, reading, InputArgs, OutputArgs};

/// Arguments of `empi train`.
#[derive(Args, Debug)]
#[command(
    after_help = empi::input::mapping_help(),
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
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `empi train`.
pub fn train_command(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    check_outputs(
        &[
            ("--input", args.input.file.input.as_deref()),
            ("--model", args.input.read.model.as_deref()),
        ],
        &[("--out", Some(&args.out))],
        args.output.force,
    )?;
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
                .map_err(|e| reading("input file", path, e))?;
            print_read_summary(path, &summary);
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
    enough_data(&trained, opts.min_run_pairs)?;
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
                "  {:<12} skipped: {} candidate pairs, fewer than the {} EM needs",
                r.rule.name(),
                r.pairs_used,
                opts.min_run_pairs
            ),
        }
    }
    for w in warnings(&trained) {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// Fails when no training rule had the pairs EM needs: the model would be the starting
/// model's m with a prior guessed from nothing.
fn enough_data(trained: &Trained, min_pairs: u64) -> Result<()> {
    let info = &trained.info;
    if info.runs.iter().any(|r| !r.skipped) {
        return Ok(());
    }
    let most = info.runs.iter().max_by_key(|r| r.pairs_used);
    bail!(
        "too little data to train: {} records, and no training rule found the {min_pairs} \
         candidate pairs EM needs (the most any rule found: {}, by the {} rule); train on \
         the whole export (thousands of records, with the duplicates they hold), or keep \
         the model you have; nothing was written",
        info.records,
        most.map_or(0, |r| r.pairs_used),
        most.map_or("none", |r| r.rule.name())
    )
}

/// What a user should check in a trained model: parameters the data could not inform,
/// and agreement levels that came out as evidence against a match (m < u).
fn warnings(trained: &Trained) -> Vec<String> {
    let info = &trained.info;
    let mut out = Vec::new();
    if !info.m_from_base.is_empty() {
        out.push(format!(
            "m not estimated for {} (no training rule had enough pairs): kept from the \
             starting model",
            info.m_from_base.join(", ")
        ));
    }
    let unseen: Vec<&str> = Comparison::ALL
        .iter()
        .filter(|c| info.u_sample.observed[c.index()] == 0)
        .map(|c| c.name())
        .collect();
    if !unseen.is_empty() {
        out.push(format!(
            "u not estimated for {} (no random pair had the value on both sides): kept from \
             the starting model",
            unseen.join(", ")
        ));
    }
    for p in &trained.model.comparisons {
        let agreeing = p.levels.len().saturating_sub(1);
        for l in p.levels.iter().take(agreeing) {
            if l.m < l.u && !(l.fixed_m && l.fixed_u) {
                out.push(format!(
                    "{}.{}: m {:.3e} < u {:.3e}, so agreeing at this level counts as evidence \
                     against a match (weight {:+.2}); if that is wrong for your data, fix it \
                     with --fix {}.{}.m=VALUE",
                    p.comparison.name(),
                    l.name,
                    l.m,
                    l.u,
                    l.weight(),
                    p.comparison.name(),
                    l.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use empi::prepare::Prepared;
    use empi::record::Record;
    use empi::scoring::Model;

    /// A real (small) training run: 200 records with names and birth dates only.
    fn trained() -> Trained {
        let base = Model::default_model();
        let records: Vec<Prepared> = (0..200)
            .map(|i| Record {
                source: "adt".into(),
                local_id: i.to_string(),
                given_name: Some(["Ana", "Ben", "Cleo", "Dev"][i % 4].into()),
                family_name: Some(format!("Fam{}", i / 2)),
                birth_date: Some(
                    format!("19{:02}-0{}-1{}", 40 + i / 4, 1 + i % 9, i % 10)
                        .parse()
                        .unwrap(),
                ),
                ..Default::default()
            })
            .map(|r| Prepared::new(&r, &base.placeholders))
            .collect();
        let opts = TrainOptions {
            u_max_pairs: 20_000,
            ..Default::default()
        };
        train(&records, &base, &opts).unwrap()
    }

    #[test]
    fn training_says_what_it_could_not_estimate_and_refuses_nothing_learnt() {
        let mut t = trained();
        let w = warnings(&t).join("\n");
        assert!(
            w.contains("u not estimated for") && w.contains("national_id"),
            "{w}"
        );
        // An agreement level turned into evidence against a match is named.
        let level = &mut t.model.comparisons[Comparison::FamilyName.index()].levels[0];
        (level.m, level.u) = (0.001, 0.01);
        let w = warnings(&t).join("\n");
        assert!(
            w.contains("family_name.exact: m 1.000e-3 < u 1.000e-2"),
            "{w}"
        );
        // No run with enough pairs: an error that says how much is enough.
        for r in &mut t.info.runs {
            r.skipped = true;
        }
        let e = enough_data(&t, 100).unwrap_err().to_string();
        assert!(
            e.contains("too little data to train: 200 records") && e.contains("100"),
            "{e}"
        );
    }
}
