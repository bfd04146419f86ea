//! `empi model report`: a model's parameters, its own estimate of precision and recall at
//! each threshold, measured quality beside it with ground truth, and SVG pictures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use empi::batch::{score_records, ScoreOptions};
use empi::eval::{read_truth, true_pairs};
use empi::input::{read_csv, ReadOptions};
use empi::linker::Linker;
use empi::report::{plots, report_uppers, threshold_rows, InputSummary, ModelReport};
use empi::scoring::{weight_to_prob, Model};

use super::input::FileArgs;

/// Arguments of `empi model`.
#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// `empi model` subcommands.
#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Show m, u and weight per level, expected (and measured) quality per threshold, and
    /// write pictures (SVG) into --out.
    Report(ReportArgs),
}

/// Arguments of `empi model report`.
#[derive(Args, Debug)]
#[command(mut_arg("input", |a| a
    .help("CSV of records to score for the threshold table and the score picture")))]
pub struct ReportArgs {
    /// The model file (`default` for the shipped default model).
    pub model: String,
    #[command(flatten)]
    pub input: FileArgs,
    /// Ground truth `source,local_id,person_id` for measured quality (needs --input).
    #[arg(long, requires = "input")]
    pub truth: Option<PathBuf>,
    /// Use the model's term-frequency tables instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
    /// Directory for the pictures and report.json / report.txt (created if missing).
    #[arg(long, default_value = "model-report")]
    pub out: PathBuf,
}

/// Runs `empi model ...`.
pub fn model_command(args: &ModelArgs) -> Result<()> {
    match &args.command {
        ModelCommand::Report(a) => report(a),
    }
}

fn report(args: &ReportArgs) -> Result<()> {
    let model = if args.model == "default" {
        Model::default_model()
    } else {
        Model::load(Path::new(&args.model))?
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut report = ModelReport::new(&model);
    plots::match_weights_svg(&model, &args.out.join("weights.svg"))?;
    if let Some(input) = &args.input.input {
        let mapping = args.input.mapping()?;
        let opts = ReadOptions {
            strict: false,
            default_source: args.input.source.clone(),
        };
        let (records, _) = read_csv(input, mapping.as_ref(), &opts)
            .with_context(|| format!("reading {}", input.display()))?;
        let labels = match &args.truth {
            Some(t) => {
                Some(read_truth(t, &records).with_context(|| format!("reading {}", t.display()))?)
            }
            None => None,
        };
        let linker = Linker::new(model.clone())?;
        let t = linker.thresholds();
        // Every candidate pair is kept: the expected counts sum the posterior over all.
        let opts = ScoreOptions {
            keep_min_weight: f64::NEG_INFINITY,
            tf_from_data: !args.model_tf,
            progress: true,
        };
        let (_, run) = score_records(&linker, &records, labels.as_deref(), &opts)?;
        report.input = Some(InputSummary {
            records: records.len() as u64,
            candidate_pairs: run.stats.pairs_compared,
            expected_matches: run
                .pairs
                .iter()
                .map(|p| weight_to_prob(p.weight as f64))
                .sum(),
            true_pairs: labels.as_deref().map(true_pairs),
        });
        let named: Vec<bool> = run.prepared.iter().map(|p| p.given.is_some()).collect();
        report.table = threshold_rows(
            &run.pairs,
            &named,
            &report_uppers(t),
            t.lower,
            labels.as_deref(),
        );
        plots::score_distribution_svg(
            &run.pairs,
            labels.as_deref(),
            t,
            &model.id,
            &args.out.join("scores.svg"),
        )?;
    }
    let text = report.to_text();
    print!("{text}");
    std::fs::write(args.out.join("report.txt"), &text)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!("pictures and report written to {}", args.out.display());
    Ok(())
}
