//! Arguments shared by commands that read a CSV of records, declared once and flattened
//! into each command (`#[command(flatten)]`).
//!
//! [`InputArgs`] is one input file (`eval`, `dedup`, `load`, `train`): a [`FileArgs`] (which
//! `model report` takes alone) and the [`ReadArgs`], which apply to every file of a run
//! (`link` has two). Where a command's flag differs — whether
//! `--input` is required or exclusive with `--data`, or what its `--model` is for — the
//! command says so with `#[command(mut_arg(...))]` on its own arguments struct.
//! `--model-tf` is not shared: `load` and `train` have no such choice.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use empi::input::{read_csv, ColumnMapping, ReadOptions, ReadSummary};
use empi::linker::Linker;
use empi::record::Record;
use empi::scoring::Model;

/// Where records come from: a CSV and how to read it.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// One CSV file of records and how its columns map (`model report` takes only this: its
/// model is its own argument, and it reads leniently).
#[derive(Args, Debug, Clone)]
pub struct FileArgs {
    /// CSV file with a header row.
    // Optional here so that commands with another source (`--data`) can flatten this;
    // the others make it required.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Column mapping `ours=theirs,...` (default: headers named like our fields).
    #[arg(long)]
    pub columns: Option<String>,
    /// Source name for records when `source` is not mapped.
    #[arg(long, default_value = "file")]
    pub source: String,
}

impl FileArgs {
    /// The input file.
    ///
    /// # Errors
    /// When `--input` was not given (only possible where the command offers another source).
    pub fn path(&self) -> Result<&Path> {
        self.input.as_deref().context("give --input")
    }

    /// The parsed `--columns` mapping, if given.
    pub fn mapping(&self) -> Result<Option<ColumnMapping>> {
        Ok(self
            .columns
            .as_deref()
            .map(ColumnMapping::parse)
            .transpose()?)
    }
}

/// How records are read and which model scores them, whatever the number of files.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Treat any unparseable value as an error naming row and column.
    #[arg(long)]
    pub strict: bool,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

impl ReadArgs {
    /// The model file's model, or the shipped default.
    pub fn model(&self) -> Result<Model> {
        Ok(match &self.model {
            Some(p) => Model::load(p)?,
            None => Model::default_model(),
        })
    }

    /// A linker over [`ReadArgs::model`].
    pub fn linker(&self) -> Result<Linker> {
        Ok(Linker::new(self.model()?)?)
    }

    /// Reading options for a file whose unmapped `source` is `source`.
    pub fn options(&self, source: &str) -> ReadOptions {
        ReadOptions {
            strict: self.strict,
            default_source: source.to_string(),
        }
    }
}

impl InputArgs {
    /// The input file.
    ///
    /// # Errors
    /// When `--input` was not given (only possible where the command offers another source).
    pub fn path(&self) -> Result<&Path> {
        self.file.path()
    }

    /// The parsed `--columns` mapping, if given.
    pub fn mapping(&self) -> Result<Option<ColumnMapping>> {
        self.file.mapping()
    }

    /// Reading options of the input file.
    pub fn options(&self) -> ReadOptions {
        self.read.options(&self.file.source)
    }

    /// A linker over the chosen model.
    pub fn linker(&self) -> Result<Linker> {
        self.read.linker()
    }

    /// Reads the input file into records, printing what was unusable.
    pub fn read(&self) -> Result<(Vec<Record>, ReadSummary)> {
        let (records, summary) = read_csv(self.path()?, self.mapping()?.as_ref(), &self.options())?;
        print_read_summary(&summary);
        Ok((records, summary))
    }
}

/// Prints what reading found that the user should know: unusable values per column and
/// skipped rows (counts only, never values).
pub fn print_read_summary(summary: &ReadSummary) {
    if !summary.issues.is_empty() {
        let list: Vec<String> = summary
            .issues
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        eprintln!(
            "unusable values (kept partly or treated as missing): {}",
            list.join(", ")
        );
    }
    if summary.skipped_rows > 0 {
        eprintln!(
            "rows skipped (no local id or no demographic value): {}",
            summary.skipped_rows
        );
    }
}
