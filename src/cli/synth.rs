//! `empi synth`: the output directory and one flag per setting of the generator
//! ([`SynthConfig::settings`]: `typo_rate` is `--typo-rate`, with its documentation as
//! help and its default), then the generator and a one-line summary.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Arg, ArgMatches, Command};

use empi::synth::{generate, SynthConfig};

/// Arguments of `empi synth`.
#[derive(Debug, Clone)]
pub struct SynthArgs {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Size, seed and rates.
    pub config: SynthConfig,
}

/// The flag of a setting: its name with dashes.
fn flag(name: &str) -> String {
    name.replace('_', "-")
}

fn invalid(e: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
}

impl clap::Args for SynthArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd.arg(
            Arg::new("out")
                .long("out")
                .required(true)
                .value_name("OUT")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Output directory (created if missing); receives records.csv, truth.csv, relations.csv, manifest.json"),
        );
        SynthConfig::settings().into_iter().fold(cmd, |cmd, s| {
            cmd.arg(
                Arg::new(s.name)
                    .long(flag(s.name))
                    .value_name(s.name.to_uppercase())
                    .default_value(s.default)
                    .help(s.help.trim()),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SynthArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SynthArgs {
            out: PathBuf::new(),
            config: SynthConfig::default(),
        };
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(out) = m.get_one::<PathBuf>("out") {
            self.out.clone_from(out);
        }
        for s in SynthConfig::settings() {
            if let Some(value) = m.get_one::<String>(s.name) {
                self.config.set(s.name, value).map_err(invalid)?;
            }
        }
        Ok(())
    }
}

/// Runs `empi synth`: generates into `args.out` and logs a one-line summary (counts only).
pub fn synth(args: &SynthArgs) -> Result<()> {
    let s = generate(&args.config, &args.out)?;
    tracing::info!(
        persons = s.persons,
        records = s.records,
        out = %args.out.display(),
        "synthetic data written"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        synth: SynthArgs,
    }

    #[test]
    fn defaults_and_flags_match_the_configuration() {
        let parsed = Cli::try_parse_from(["synth", "--out", "x"]).unwrap().synth;
        assert_eq!(parsed.config, SynthConfig::default());
        assert_eq!(parsed.out, PathBuf::from("x"));
        let c = Cli::try_parse_from([
            "synth",
            "--out",
            "x",
            "--phone-missing-rate",
            "0.4",
            "--error-scale",
            "3",
            "--profile",
            "outside",
        ])
        .unwrap()
        .synth
        .config;
        assert_eq!(c.phone_missing_rate, 0.4);
        assert_eq!(c.error_scale, 3.0);
        assert_eq!(c.profile, empi::synth::Profile::Outside);
        assert!(Cli::try_parse_from(["synth", "--out", "x", "--typo-rate", "lots"]).is_err());
        assert!(Cli::try_parse_from(["synth"]).is_err(), "--out is required");
    }
}
