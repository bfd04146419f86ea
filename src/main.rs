//! The `empi` command: parses arguments, sets up tracing, calls into the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(name = "empi", version, about = "Enterprise master patient index")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand's arguments live beside its runner in src/cli/.
    /// Measure matching quality against ground truth over a range of thresholds.
    Eval(cli::eval::EvalArgs),
    /// Deduplicate a CSV file into clusters (one line per record).
    Dedup(cli::dedup::DedupArgs),
    /// Generate a deterministic synthetic population with ground truth.
    Synth(Box<empi::synth::SynthArgs>),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Eval(a) => cli::eval::eval(&a),
        Command::Dedup(a) => cli::dedup::dedup(&a),
        Command::Synth(a) => empi::synth::run_command(&a).map(drop).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
