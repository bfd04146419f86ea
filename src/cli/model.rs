//! `empi model`: `report` shows a model's parameters, its own estimate of precision and
//! recall at each threshold, measured quality beside it with ground truth, and SVG
//! pictures; `export` writes a model (the default or a file) as JSON; `set` writes a copy
//! with other thresholds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use empi::batch::twins::KnownTwins;
use empi::batch::{score_records, ScoreOptions};
use empi::eval::{read_truth, true_pairs};
use empi::input::read_csv;
use empi::linker::Linker;
use empi::report::{plots, report_uppers, threshold_rows, InputSummary, ModelReport};
use empi::scoring::{weight_to_prob, Model};

use super::input::{check_outputs, load_model, reading, FileArgs, FormatArgs, OutputArgs};

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
    /// Write a model as JSON (the shipped default, or a model file): a starting point to
    /// edit, or to keep beside the data it decided.
    Export(ExportArgs),
    /// Write a copy of a model with other thresholds (match weights, log2 odds): `empi
    /// model set default --upper 10 --lower 2 --out model.json`.
    Set(SetArgs),
}

/// Arguments of `empi model export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The model file (`default` for the shipped default model).
    #[arg(default_value = "default")]
    pub model: String,
    /// Where to write it (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `empi model set`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("threshold").required(true).multiple(true)))]
pub struct SetArgs {
    /// The model file (`default` for the shipped default model).
    pub model: String,
    /// Upper threshold: a pair at this match weight or more links automatically.
    #[arg(long, group = "threshold", allow_negative_numbers = true)]
    pub upper: Option<f64>,
    /// Lower threshold: a pair below this match weight is a different person; between the
    /// two, a person reviews it.
    #[arg(long, group = "threshold", allow_negative_numbers = true)]
    pub lower: Option<f64>,
    /// Where to write the new model (JSON).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `empi model report`.
#[derive(Args, Debug)]
#[command(
    after_help = empi::input::mapping_help(),
    mut_arg("input", |a| a
        .help("CSV of records to score for the threshold table and the score picture")),
)]
pub struct ReportArgs {
    /// The model file (`default` for the shipped default model).
    pub model: String,
    #[command(flatten)]
    pub input: FileArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    /// Ground truth `source,local_id,person_id` for measured quality (needs --input).
    #[arg(long, requires = "input")]
    pub truth: Option<PathBuf>,
    /// Use the model's term-frequency tables, rival shares (twins, relatives per
    /// same-person pair) and prior λ instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
    /// Directory for the pictures and report.json / report.txt (created if missing).
    #[arg(long, default_value = "model-report")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `empi model ...`.
pub fn model_command(args: &ModelArgs) -> Result<()> {
    match &args.command {
        ModelCommand::Report(a) => report(a),
        ModelCommand::Export(a) => export(a),
        ModelCommand::Set(a) => set(a),
    }
}

/// The model a positional argument names: `default`, or a model file.
fn named_model(name: &str) -> Result<Model> {
    if name == "default" {
        Ok(Model::default_model())
    } else {
        load_model(Some(Path::new(name)))
    }
}

fn export(args: &ExportArgs) -> Result<()> {
    let input = (args.model != "default").then(|| Path::new(&args.model));
    check_outputs(
        &[("the model", input)],
        &[("--out", args.out.as_deref())],
        args.output.force,
    )?;
    let model = named_model(&args.model)?;
    let json = model.to_json();
    match &args.out {
        Some(p) => {
            std::fs::write(p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
            eprintln!("model {} written to {}", model.id, p.display());
        }
        None => {
            use std::io::Write;
            let written = writeln!(std::io::stdout().lock(), "{json}");
            // A reader that stops early (`| head`) is not an error of ours.
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

fn set(args: &SetArgs) -> Result<()> {
    let input = (args.model != "default").then(|| Path::new(&args.model));
    check_outputs(
        &[("the model", input)],
        &[("--out", Some(&args.out))],
        args.output.force,
    )?;
    let mut model = named_model(&args.model)?;
    for (flag, v) in [("--upper", args.upper), ("--lower", args.lower)] {
        if v.is_some_and(|v| !v.is_finite()) {
            anyhow::bail!("{flag} must be a number");
        }
    }
    let t = &mut model.thresholds;
    t.upper = args.upper.unwrap_or(t.upper);
    t.lower = args.lower.unwrap_or(t.lower);
    let (upper, lower) = (t.upper, t.lower);
    if lower > upper {
        anyhow::bail!(
            "the lower threshold ({lower}) would be above the upper ({upper}): give a lower \
             value, or --upper too"
        );
    }
    // Another threshold decides differently: the model gets an id of its own, which the
    // store and every match answer record.
    let base = model
        .id
        .split("-upper")
        .next()
        .unwrap_or(&model.id)
        .to_string();
    model.id = format!("{base}-upper{upper}-lower{lower}");
    model.description = format!(
        "{} (thresholds set to upper {upper}, lower {lower})",
        model.description
    );
    model.validate()?;
    std::fs::write(&args.out, model.to_json() + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "model {} written to {}: upper {upper} (match probability {:.6}), lower {lower} \
         (probability {:.6})",
        model.id,
        args.out.display(),
        weight_to_prob(upper),
        weight_to_prob(lower)
    );
    Ok(())
}

fn report(args: &ReportArgs) -> Result<()> {
    let files =
        ["report.txt", "report.json", "weights.svg", "scores.svg"].map(|f| args.out.join(f));
    let model_file = (args.model != "default").then(|| Path::new(&args.model));
    check_outputs(
        &[
            ("--input", args.input.input.as_deref()),
            ("--truth", args.truth.as_deref()),
            ("the model", model_file),
        ],
        &files
            .iter()
            .map(|f| ("--out", Some(f.as_path())))
            .collect::<Vec<_>>(),
        args.output.force,
    )?;
    let model = named_model(&args.model)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut report = ModelReport::new(&model);
    plots::match_weights_svg(&model, &args.out.join("weights.svg"))?;
    if let Some(input) = &args.input.input {
        let mapping = args.input.mapping()?;
        let opts = args.format.options(&args.input.source, false);
        let (records, summary) = read_csv(input, mapping.as_ref(), &opts)
            .map_err(|e| reading("input file", input, e))?;
        super::input::print_read_summary(input, &summary);
        let labels = match &args.truth {
            Some(t) => {
                let labels = read_truth(t, &records).map_err(|e| reading("truth file", t, e))?;
                let keys = records
                    .iter()
                    .map(|r| (r.source.as_str(), r.local_id.as_str()));
                super::input::check_truth(t, &labels, keys)?;
                Some(labels)
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
        let (used, run) = score_records(&linker, &records, labels.as_deref(), &opts)?;
        report.input = Some(InputSummary {
            records: records.len() as u64,
            candidate_pairs: run.stats.pairs_compared,
            expected_matches: run
                .pairs
                .iter()
                .map(|p| weight_to_prob(p.weight as f64))
                .sum(),
            true_pairs: labels.as_deref().map(true_pairs),
            prior: run.stats.prior.clone(),
        });
        let who = empi::batch::Identity::of_all(&run.prepared);
        let twins = KnownTwins::new(used.scorer(), &run.prepared);
        report.table = threshold_rows(
            &run.pairs,
            &who,
            Some(&twins),
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
