//! The `empi` command: parses arguments, sets up tracing, calls into the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

// See Cargo.toml: bulk runs allocate heavily from several threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Deduplicate a CSV file into clusters (one line per record), or re-scan a store.
    Dedup(cli::dedup::DedupArgs),
    /// Link two CSV files: each left record to its best right match (or clusters).
    Link(cli::link::LinkArgs),
    /// Generate a deterministic synthetic population with ground truth.
    Synth(Box<empi::synth::SynthArgs>),
    /// Serve the gRPC API over a store (created if absent) until Ctrl-C or SIGTERM.
    Serve(cli::serve::ServeArgs),
    /// Bulk-import a CSV through the same match-or-create path as the server.
    Load(cli::load::LoadArgs),
    /// Verify a store's invariants and its index; exits non-zero on any violation.
    Check(cli::check::CheckArgs),
    /// Learn a model from unlabelled records (u by random pairs, m and λ by EM).
    Train(cli::train::TrainArgs),
    /// Inspect a model: `empi model report MODEL [--input F --truth F] [--out DIR]`.
    Model(cli::model::ModelArgs),
    /// Manage credentials: `empi token create|revoke|list --data DIR ...`.
    Token(cli::token::TokenArgs),
    /// Export the audit trail as JSON lines: `empi audit --data DIR [--since T] [--actor A]`.
    Audit(cli::audit::AuditArgs),
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
        Command::Link(a) => cli::link::link(&a),
        Command::Synth(a) => empi::synth::run_command(&a).map(drop).map_err(Into::into),
        Command::Serve(a) => cli::serve::serve(&a),
        Command::Load(a) => cli::load::load(&a),
        Command::Check(a) => cli::check::check(&a),
        Command::Train(a) => cli::train::train_command(&a),
        Command::Model(a) => cli::model::model_command(&a),
        Command::Token(a) => cli::token::token(&a),
        Command::Audit(a) => cli::audit::audit(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
