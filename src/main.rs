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
    /// Log lines as text for people, or as JSON objects (one a line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = cli::ops::LogFormat::Text)]
    log_format: cli::ops::LogFormat,
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
    Synth(Box<cli::synth::SynthArgs>),
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
    /// Back up a data directory to a file, from its running server or with none running.
    Backup(cli::backup::BackupArgs),
    /// Restore a backup file into a new data directory.
    Restore(cli::backup::RestoreArgs),
    /// Upgrade a stopped server's store to this empi's format (back it up first).
    Upgrade(cli::backup::UpgradeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::ops::init_logs(cli.log_format);
    let result: anyhow::Result<()> = match cli.command {
        Command::Eval(a) => cli::eval::eval(&a),
        Command::Dedup(a) => cli::dedup::dedup(&a),
        Command::Link(a) => cli::link::link(&a),
        Command::Synth(a) => cli::synth::synth(&a),
        Command::Serve(a) => cli::serve::serve(&a),
        Command::Load(a) => cli::load::load(&a),
        Command::Check(a) => cli::check::check(&a),
        Command::Train(a) => cli::train::train_command(&a),
        Command::Model(a) => cli::model::model_command(&a),
        Command::Token(a) => cli::token::token(&a),
        Command::Audit(a) => cli::audit::audit(&a),
        Command::Backup(a) => cli::backup::backup_command(&a),
        Command::Restore(a) => cli::backup::restore_command(&a),
        Command::Upgrade(a) => cli::backup::upgrade_command(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent already ends
/// with (the system's reason under a file error that quotes it) is left out.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !msg.ends_with(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    fn parse(args: &str) -> Result<Command, ErrorKind> {
        Cli::try_parse_from(std::iter::once("empi").chain(args.split_whitespace()))
            .map(|c| c.command)
            .map_err(|e| e.kind())
    }

    fn help(cmd: &str, arg: &str) -> String {
        let mut cli = Cli::command();
        let sub = cli.find_subcommand_mut(cmd).unwrap();
        let a = sub.get_arguments().find(|a| a.get_id() == arg).unwrap();
        a.get_help().unwrap().to_string()
    }

    #[test]
    fn arguments_are_consistent() {
        // Panics on a `mut_arg` naming a missing argument, duplicate ids and the like.
        Cli::command().debug_assert();
    }

    #[test]
    fn shared_input_flags_keep_each_commands_rules() {
        use ErrorKind::{ArgumentConflict, MissingRequiredArgument, UnknownArgument};
        // --input is required where there is no other source, exclusive with --data where
        // there is.
        assert_eq!(parse("eval").err(), Some(MissingRequiredArgument));
        assert_eq!(parse("load --data d").err(), Some(MissingRequiredArgument));
        assert_eq!(parse("dedup").err(), Some(MissingRequiredArgument));
        assert_eq!(parse("train --out m").err(), Some(MissingRequiredArgument));
        assert!(parse("dedup --data d").is_ok());
        assert!(parse("train --data d --out m").is_ok());
        assert_eq!(
            parse("dedup --input f --output o --data d").err(),
            Some(ArgumentConflict)
        );
        assert_eq!(
            parse("train --input f --data d --out m").err(),
            Some(ArgumentConflict)
        );
        // --model-tf only where the command counts term frequencies from its input.
        assert_eq!(
            parse("load --data d --input f --model-tf").err(),
            Some(UnknownArgument)
        );
        assert_eq!(
            parse("train --input f --out m --model-tf").err(),
            Some(UnknownArgument)
        );
        assert_eq!(
            parse("link --left l --right r --output o --columns c").err(),
            Some(UnknownArgument)
        );
        // `model report` reads leniently with its own (positional) model; --truth needs
        // --input.
        for flag in ["--strict", "--model m"] {
            assert_eq!(
                parse(&format!("model report default --input f {flag}")).err(),
                Some(UnknownArgument)
            );
        }
        assert_eq!(
            parse("model report default --truth t").err(),
            Some(MissingRequiredArgument)
        );
    }

    #[test]
    fn shared_input_flags_parse_into_each_command() {
        let all = "--input f --columns a=b --source s --strict --model m";
        let Ok(Command::Eval(a)) = parse(&format!("eval {all} --model-tf")) else {
            panic!("eval")
        };
        assert!(a.model_tf && a.input.read.strict);
        assert_eq!(
            a.input.file.input.as_deref(),
            Some(std::path::Path::new("f"))
        );
        assert_eq!(a.input.file.columns.as_deref(), Some("a=b"));
        assert_eq!(a.input.file.source, "s");
        assert_eq!(
            a.input.read.model.as_deref(),
            Some(std::path::Path::new("m"))
        );
        let Ok(Command::Load(a)) = parse(&format!("load --data d {all}")) else {
            panic!("load")
        };
        assert!(a.input.read.strict && a.input.file.source == "s");
        let Ok(Command::Dedup(a)) = parse(&format!("dedup {all} --output o")) else {
            panic!("dedup")
        };
        assert!(!a.model_tf && a.input.read.strict);
        let Ok(Command::Train(a)) = parse(&format!("train {all} --out o")) else {
            panic!("train")
        };
        assert_eq!(a.input.file.columns.as_deref(), Some("a=b"));
        let Ok(Command::Link(a)) = parse("link --left l --right r --output o --strict --model m")
        else {
            panic!("link")
        };
        assert!(a.read.strict && a.read.model.is_some());
        // Defaults.
        let Ok(Command::Eval(a)) = parse("eval --input f") else {
            panic!("eval")
        };
        assert_eq!(a.input.file.source, "file");
        assert!(
            !a.input.read.strict && a.input.read.model.is_none() && a.input.file.columns.is_none()
        );
        let Ok(Command::Link(a)) = parse("link --left l --right r --output o") else {
            panic!("link")
        };
        assert_eq!(
            (a.source_left.as_str(), a.source_right.as_str()),
            ("left", "right")
        );
        // `model report` shares the file flags only: its model is positional.
        let report = "model report default --input f --columns a=b --source s --truth t";
        let Ok(Command::Model(m)) = parse(report) else {
            panic!("model report")
        };
        let super::cli::model::ModelCommand::Report(r) = m.command else {
            panic!("model report")
        };
        assert_eq!(r.model, "default");
        assert_eq!(r.input.columns.as_deref(), Some("a=b"));
        assert_eq!(r.input.source, "s");
    }

    #[test]
    fn reading_flags_parse_and_refuse_nonsense() {
        use ErrorKind::{ArgumentConflict, MissingRequiredArgument, ValueValidation};
        let Ok(Command::Dedup(a)) =
            parse("dedup --input f --output o --delimiter tab --encoding latin1")
        else {
            panic!("dedup")
        };
        assert_eq!(a.input.read.format.delimiter, Some(b'\t'));
        assert_eq!(
            a.input.read.format.encoding,
            empi::input::Encoding::Windows1252
        );
        let Ok(Command::Link(a)) = parse("link --left l --right r --output o --delimiter ;") else {
            panic!("link")
        };
        assert_eq!(a.read.format.delimiter, Some(b';'));
        assert_eq!(
            parse("dedup --input f --output o --delimiter ;;").err(),
            Some(ValueValidation)
        );
        assert_eq!(
            parse("dedup --input f --output o --encoding ebcdic").err(),
            Some(ValueValidation)
        );
        // With --data there is no input to read, join or review: those flags are refused,
        // not ignored.
        for flag in [
            "--review r",
            "--review-text r",
            "--joined j",
            "--output o",
            "--truth t",
            "--columns c",
        ] {
            assert_eq!(
                parse(&format!("dedup --data d {flag}")).err(),
                Some(ArgumentConflict),
                "{flag}"
            );
        }
        assert!(parse("dedup --data d --dry-run --report r").is_ok());
        // model export / set.
        assert!(parse("model export").is_ok());
        assert!(parse("model export m.json --out x.json --force").is_ok());
        assert_eq!(
            parse("model set default --out x").err(),
            Some(MissingRequiredArgument)
        );
        let Ok(Command::Model(m)) = parse("model set default --lower -2 --out x") else {
            panic!("model set")
        };
        let super::cli::model::ModelCommand::Set(s) = m.command else {
            panic!("model set")
        };
        assert_eq!((s.upper, s.lower), (None, Some(-2.0)));
    }

    #[test]
    fn commands_keep_their_own_help_for_shared_flags() {
        assert_eq!(
            help("eval", "model"),
            "Model file (default: the shipped default model)"
        );
        assert!(help("load", "model").ends_with("; use the server's"));
        assert!(help("train", "model").starts_with("Starting model:"));
        assert!(help("train", "input").ends_with("(or use --data)"));
        assert!(help("dedup", "input").ends_with("(or give --data to re-scan a store)"));
        assert_eq!(help("eval", "input"), "CSV file with a header row");
    }
}
