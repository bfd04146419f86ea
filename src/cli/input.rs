//! Arguments shared by commands that read a CSV of records.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use empi::input::{read_csv, ColumnMapping, ReadOptions};
use empi::linker::Linker;
use empi::scoring::Model;

/// Where records come from: a CSV and how to read it.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// CSV file with a header row.
    #[arg(long)]
    pub input: PathBuf,
    /// Column mapping `ours=theirs,...` (default: headers named like our fields).
    #[arg(long)]
    pub columns: Option<String>,
    /// Source name for records when `source` is not mapped.
    #[arg(long, default_value = "file")]
    pub source: String,
    /// Treat any unparseable value as an error naming row and column.
    #[arg(long)]
    pub strict: bool,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use the model's term-frequency tables instead of counting them from the input.
    #[arg(long)]
    pub model_tf: bool,
}

impl InputArgs {
    pub fn linker(&self) -> Result<Linker> {
        let model = match &self.model {
            Some(p) => Model::load(p)?,
            None => Model::default_model(),
        };
        Ok(Linker::new(model)?)
    }

    pub fn read(&self) -> Result<(Vec<empi::record::Record>, empi::input::ReadSummary)> {
        let mapping = self
            .columns
            .as_deref()
            .map(ColumnMapping::parse)
            .transpose()?;
        let opts = ReadOptions {
            strict: self.strict,
            default_source: self.source.clone(),
        };
        let (records, summary) = read_csv(&self.input, mapping.as_ref(), &opts)?;
        print_read_summary(&summary);
        Ok((records, summary))
    }
}

/// Prints what reading found that the user should know: unusable values per column and
/// skipped rows (counts only, never values).
pub fn print_read_summary(summary: &empi::input::ReadSummary) {
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
