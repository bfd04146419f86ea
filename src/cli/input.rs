//! Arguments shared by commands that read a CSV of records, declared once and flattened
//! into each command (`#[command(flatten)]`), and what every such command prints about
//! its input.
//!
//! [`InputArgs`] is one input file (`eval`, `dedup`, `load`, `train`): a [`FileArgs`] (which
//! `model report` takes alone, with a [`FormatArgs`]) and the [`ReadArgs`], which apply to
//! every file of a run (`link` has two). Where a command's flag differs — whether
//! `--input` is required or exclusive with `--data`, or what its `--model` is for — the
//! command says so with `#[command(mut_arg(...))]` on its own arguments struct.
//! `--model-tf` is not shared: `load` and `train` have no such choice.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Args;

use empi::input::{
    parse_delimiter, read_csv, reasons, ColumnMapping, Encoding, ReadOptions, ReadSummary,
};
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
    /// Column mapping `ours=theirs,...` (default: headers named like our fields; see
    /// below).
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

/// How the bytes of every input file are read.
#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// Field delimiter: one character, or `tab` (default: detected from the header line).
    #[arg(long, value_parser = delimiter_arg)]
    pub delimiter: Option<u8>,
    /// Text encoding of the input: utf-8, or latin1 (read as Windows-1252).
    #[arg(long, default_value = "utf-8", value_parser = encoding_arg)]
    pub encoding: Encoding,
}

fn delimiter_arg(s: &str) -> Result<u8, String> {
    parse_delimiter(s).map_err(|e| e.to_string())
}

fn encoding_arg(s: &str) -> Result<Encoding, String> {
    s.parse().map_err(|e: empi::Error| e.to_string())
}

impl FormatArgs {
    /// Reading options for a file whose unmapped `source` is `source`.
    pub fn options(&self, source: &str, strict: bool) -> ReadOptions {
        ReadOptions {
            strict,
            default_source: source.to_string(),
            delimiter: self.delimiter,
            encoding: self.encoding,
        }
    }
}

/// How records are read and which model scores them, whatever the number of files.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Treat any unparseable value, and any record the server would refuse, as an error
    /// naming line and column.
    #[arg(long)]
    pub strict: bool,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// A model file's model (`None`: the shipped default); a file that cannot be read is
/// named as the model.
pub fn load_model(path: Option<&Path>) -> Result<Model> {
    match path {
        Some(p) => Model::load(p).map_err(|e| reading("model file", p, e)),
        None => Ok(Model::default_model()),
    }
}

impl ReadArgs {
    /// The model file's model, or the shipped default.
    pub fn model(&self) -> Result<Model> {
        load_model(self.model.as_deref())
    }

    /// A linker over [`ReadArgs::model`].
    pub fn linker(&self) -> Result<Linker> {
        Ok(Linker::new(self.model()?)?)
    }

    /// Reading options for a file whose unmapped `source` is `source`.
    pub fn options(&self, source: &str) -> ReadOptions {
        self.format.options(source, self.strict)
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

    /// Reads the input file into records, printing what reading found.
    pub fn read(&self) -> Result<(Vec<Record>, ReadSummary)> {
        let path = self.path()?;
        let (records, summary) = read_csv(path, self.mapping()?.as_ref(), &self.options())
            .map_err(|e| reading("input file", path, e))?;
        print_read_summary(path, &summary);
        Ok((records, summary))
    }
}

/// An error reading `what` (`input file`, `model file`, …) at `path`: the file named once,
/// with the system's reason or what is wrong in it.
pub fn reading(what: &str, path: &Path, e: empi::Error) -> anyhow::Error {
    match e {
        empi::Error::Io { source, .. } => anyhow!("{what} {}: {source}", path.display()),
        e @ empi::Error::InvalidInput { .. } => {
            anyhow::Error::new(e).context(format!("reading {what} {}", path.display()))
        }
        other => other.into(),
    }
}

/// Prints what reading `path` found that the user should know, in a few lines: rows and
/// records, how the file was read (delimiter, encoding, date format), unusable values
/// per column, rows left out and why, repeated keys. Counts, headers and record keys
/// only, never values.
pub fn print_read_summary(path: &Path, s: &ReadSummary) {
    let detected = if s.delimiter_detected {
        " (detected)"
    } else {
        ""
    };
    eprintln!(
        "read {}: {} rows -> {} records; {}-delimited{detected}, {}",
        path.display(),
        s.rows,
        s.records,
        s.delimiter,
        s.encoding
    );
    if let Some(f) = s.birth_date_format.as_ref().filter(|f| f.detected) {
        let also = f.also_fits.as_ref().map_or(String::new(), |o| {
            format!("; {o} reads as many, so give the format if that is the one")
        });
        eprintln!(
            "  birth_date: no format given; using {}: it reads {} of the first {} values{also}",
            f.format, f.fits, f.sampled
        );
    }
    if !s.issues.is_empty() {
        let list: Vec<String> = s
            .issues
            .iter()
            .map(|(k, v)| format!("{k} {v} of {}", s.values.get(k).copied().unwrap_or(*v)))
            .collect();
        eprintln!(
            "  unusable values (kept partly or treated as missing): {}",
            list.join(", ")
        );
    }
    if s.skipped_rows > 0 {
        eprintln!(
            "  rows skipped: {} ({} without a local_id, {} with no other value)",
            s.skipped_rows,
            s.skipped_without_id,
            s.skipped_rows - s.skipped_without_id
        );
    }
    if s.refused_rows > 0 {
        eprintln!(
            "  rows refused (the server would refuse them too): {} ({})",
            s.refused_rows,
            reasons(&s.refused)
        );
    }
    if s.duplicate_keys > 0 {
        eprintln!(
            "  duplicate keys: {} rows repeat an earlier row's source and local_id (the first: \
             {}); each such row replaces the earlier one",
            s.duplicate_keys,
            s.first_duplicate.as_deref().unwrap_or("?")
        );
    }
    if s.multiline_rows > 0 {
        eprintln!(
            "  rows with a quoted line break: {} (first at line {}); check the quoting if \
             that is not expected",
            s.multiline_rows,
            s.first_multiline_line.unwrap_or(0)
        );
    }
}

/// Overwriting an existing output.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Overwrite output files that exist.
    #[arg(long)]
    pub force: bool,
}

/// A path made comparable: absolute, through symbolic links where it exists.
fn comparable(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_or_else(|_| abs.clone(), |d| d.join(name)),
        _ => abs,
    }
}

/// Checks a command's outputs before it reads anything: no output is one of its inputs
/// or another output, and none exists unless `force`. Flags name the paths in messages.
pub fn check_outputs(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
    force: bool,
) -> Result<()> {
    let inputs: Vec<(&str, &Path, PathBuf)> = inputs
        .iter()
        .filter_map(|(f, p)| p.map(|p| (*f, p, comparable(p))))
        .collect();
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for (flag, path) in outputs.iter().filter_map(|(f, p)| p.map(|p| (*f, p))) {
        let c = comparable(path);
        if let Some((input, _, _)) = inputs.iter().find(|(_, _, i)| *i == c) {
            anyhow::bail!(
                "{flag} {} is the file given as {input}: writing it would overwrite that \
                 input; choose another path",
                path.display()
            );
        }
        if let Some((other, _)) = seen.iter().find(|(_, o)| *o == c) {
            anyhow::bail!(
                "{other} and {flag} are the same file ({}): give each its own path",
                path.display()
            );
        }
        if path.is_dir() {
            anyhow::bail!("{flag} {} is a directory: give a file name", path.display());
        }
        if path.exists() && !force {
            anyhow::bail!(
                "{flag} {} exists: give --force to overwrite it, or choose another path",
                path.display()
            );
        }
        seen.push((flag, c));
    }
    Ok(())
}

/// Fails when ground truth names no two of the records as one person (there would be
/// nothing to measure), saying whether its keys match the records' at all.
pub fn check_truth<'a>(
    path: &Path,
    labels: &[u32],
    keys: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    if empi::eval::true_pairs(labels) > 0 {
        return Ok(());
    }
    let mut keys = keys.peekable();
    let example = keys
        .peek()
        .map_or(String::new(), |(s, l)| format!(" such as {s}/{l}"));
    let keys: std::collections::HashSet<(&str, &str)> = keys.collect();
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("truth file {}", path.display()))?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(s), Some(l)) = (col("source"), col("local_id")) else {
        anyhow::bail!(
            "truth file {}: needs source and local_id columns",
            path.display()
        );
    };
    let (mut rows, mut matched) = (0u64, 0u64);
    for row in rdr.records() {
        let row = row?;
        rows += 1;
        matched += u64::from(keys.contains(&(&row[s], &row[l])));
    }
    if matched == 0 {
        anyhow::bail!(
            "truth file {}: none of its {rows} rows has the key (source, local_id) of one of \
             the {} records{example}; check --source (the source of records when the input \
             has no source column) and the mapping of local_id",
            path.display(),
            labels.len()
        );
    }
    anyhow::bail!(
        "truth file {}: {matched} of its rows match records, but it names no two of them as \
         one person (person_id): there is nothing to measure",
        path.display()
    )
}
