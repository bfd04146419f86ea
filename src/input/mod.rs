//! Reading records from any CSV with a header, through a column mapping.
//!
//! Mapping syntax (the same everywhere a CSV is read; [`mapping_help`] is its summary):
//! `local_id=rec_id,given_name=first,birth_date=dob:%Y%m%d,address_line=street_number+address_1`
//! — our field on the left, their header on the right (matched ignoring case); `:FORMAT`
//! gives a date format (`%Y %y %m %d %b` or `YYYY YY MM DD MMM`, see [`DateFormat`]);
//! `a+b` joins several headers with a space; a multi-valued field (`phone`,
//! `previous_family_name`) may be mapped more than once; unmapped fields are absent. An
//! unknown field or header is an error naming it (and listing what there is).
//!
//! The file's encoding is UTF-8 (a byte-order mark is skipped) or, when asked,
//! Windows-1252/Latin-1; its delimiter is detected from the header line unless given
//! ([`ReadOptions::delimiter`]); a birth date column mapped without a format gets the one
//! that reads the most of its first values ([`ReadSummary::birth_date_format`]).
//!
//! Messy files are the norm: an unparseable value does not abort the run. It is kept where
//! a comparison can still use it (an impossible day keeps year and month) or treated as
//! missing, and counted per column in [`ReadSummary::issues`]. A record the service would
//! refuse ([`Record::validate`]: a birth date in the future, an over-long name, …) is left
//! out and counted in [`ReadSummary::refused`]. With [`ReadOptions::strict`] either is an
//! error naming the line and column instead.
//!
//! Some problems mean the whole result would be wrong, and are errors in any mode: no
//! `local_id` mapped, no record read, a mapped column none of whose values is usable, a
//! quote left open that swallows the end of the file.

mod date;
mod text;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

pub use date::DateFormat;
pub use text::{delimiter_name, parse_delimiter, Encoding};

use crate::error::{Error, Result};
use crate::record::{Identifier, Record, Sex, NATIONAL_ID_SYSTEM};
use date::{format_name, parse_date, DateParse};

/// Our field names, the left-hand side of a mapping (and the columns `empi synth` writes).
pub const FIELDS: [&str; 18] = [
    "source",
    "local_id",
    "given_name",
    "middle_name",
    "family_name",
    "previous_family_name",
    "birth_date",
    "sex",
    "address_line",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "phone",
    "email",
    "national_id",
    "multiple_birth_order",
];

const MULTI_VALUED: &[&str] = &["phone", "previous_family_name"];

/// The mapping grammar, with our fields, for `--help` of every command that reads a CSV.
pub fn mapping_help() -> String {
    let mut fields = String::from("Our fields:");
    let mut width = fields.len();
    for f in FIELDS {
        if width + f.len() + 2 > 88 {
            fields.push_str("\n ");
            width = 1;
        }
        fields.push(' ');
        fields.push_str(f);
        width += f.len() + 1;
    }
    format!(
        "Column mapping (--columns): our field on the left, your header on the right, \
         matched ignoring case:
  --columns 'local_id=mrn,given_name=first,family_name=last,birth_date=dob:%m/%d/%Y,postal_code=zip'
  birth_date=dob:FORMAT    date format: %Y %y %m %d %b, or YYYY YY MM DD MMM (e.g.
                           MM/DD/YYYY); without one it is detected from the values
  address_line=num+street  a+b joins several headers with a space
  phone=home,phone=work    phone and previous_family_name may be mapped more than once
Without --columns, headers named like our fields are used; local_id must be mapped.
{fields}
The delimiter (, ; tab |) is detected from the header line unless --delimiter is given;
files are read as UTF-8 unless --encoding latin1 (Windows-1252) is given."
    )
}

/// Where one of our fields comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSource {
    /// Our field name (one of [`FIELDS`]).
    pub field: &'static str,
    /// Their header(s), joined with a space when several.
    pub headers: Vec<String>,
    /// Date format for `birth_date`.
    pub format: Option<String>,
}

/// A parsed `--columns` mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnMapping {
    /// Mapped fields in the order given.
    pub fields: Vec<FieldSource>,
}

impl ColumnMapping {
    /// Parses the mapping syntax of the module docs.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming an unknown field (and listing ours), a malformed
    /// entry or date format, or a repeated single-valued field.
    pub fn parse(spec: &str) -> Result<ColumnMapping> {
        let mut fields: Vec<FieldSource> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (ours, theirs) = entry.split_once('=').ok_or_else(|| {
                Error::invalid(
                    "columns",
                    format!("'{entry}' is not field=header (e.g. local_id=mrn)"),
                )
            })?;
            let ours = ours.trim();
            let field = FIELDS.iter().find(|f| **f == ours).ok_or_else(|| {
                Error::invalid(
                    "columns",
                    format!("unknown field '{ours}' (our fields: {})", FIELDS.join(", ")),
                )
            })?;
            if !MULTI_VALUED.contains(field) && fields.iter().any(|f| f.field == *field) {
                return Err(Error::invalid(
                    "columns",
                    format!("field '{ours}' mapped twice"),
                ));
            }
            let (headers, format) = match theirs.split_once(':') {
                Some((h, f)) if *field == "birth_date" => {
                    DateFormat::parse(f)?;
                    (h, Some(f.trim().to_string()))
                }
                Some(_) => {
                    return Err(Error::invalid(
                        "columns",
                        format!("only birth_date takes a :FORMAT, not '{ours}'"),
                    ))
                }
                None => (theirs, None),
            };
            let headers: Vec<String> = headers.split('+').map(|h| h.trim().to_string()).collect();
            if headers.iter().any(String::is_empty) {
                return Err(Error::invalid(
                    "columns",
                    format!("empty header for '{ours}'"),
                ));
            }
            fields.push(FieldSource {
                field,
                headers,
                format,
            });
        }
        if fields.is_empty() {
            return Err(Error::invalid("columns", "no field mapped"));
        }
        Ok(ColumnMapping { fields })
    }

    /// The mapping used when none is given: every header named like one of our fields
    /// (ignoring case).
    pub fn identity(headers: &[String]) -> ColumnMapping {
        ColumnMapping {
            fields: headers
                .iter()
                .filter_map(|h| {
                    let f = FIELDS.iter().find(|f| h.eq_ignore_ascii_case(f))?;
                    Some(FieldSource {
                        field: f,
                        headers: vec![h.clone()],
                        format: None,
                    })
                })
                .collect(),
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Unparseable values, and records the service would refuse, are errors naming line
    /// and column, instead of counted.
    pub strict: bool,
    /// Source used when `source` is not mapped (or empty in a row).
    pub default_source: String,
    /// The field delimiter; `None`: detected from the header line (`,` `;` tab `|`).
    pub delimiter: Option<u8>,
    /// The file's text encoding.
    pub encoding: Encoding,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            strict: false,
            default_source: "file".into(),
            delimiter: None,
            encoding: Encoding::Utf8,
        }
    }
}

/// The date format a run read `birth_date` with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FormatChoice {
    /// The format (`%` form), or the ISO forms read by default.
    pub format: String,
    /// Whether it was detected from the values (rather than given in the mapping).
    pub detected: bool,
    /// Values looked at to detect it (0 when given).
    pub sampled: u64,
    /// Of those, values it reads as dates.
    pub fits: u64,
    /// Another format that reads as many: day and month could not be told apart.
    pub also_fits: Option<String>,
    #[serde(skip)]
    parsed: Option<DateFormat>,
}

/// What reading a file found.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReadSummary {
    /// Data rows read.
    pub rows: u64,
    /// Records produced.
    pub records: u64,
    /// Rows skipped (no local id, or no demographic value).
    pub skipped_rows: u64,
    /// Of those, rows without a local id.
    pub skipped_without_id: u64,
    /// Rows whose key repeats an earlier row (the later row wins).
    pub duplicate_keys: u64,
    /// The first repeated key (`source/local_id`).
    pub first_duplicate: Option<String>,
    /// Rows left out because the service would refuse their record.
    pub refused_rows: u64,
    /// Those rows by reason (`field: reason`).
    pub refused: BTreeMap<String, u64>,
    /// Rows with an unparseable or unusable value, per column (our field name).
    pub issues: BTreeMap<String, u64>,
    /// Rows with a value, per column (our field name).
    pub values: BTreeMap<String, u64>,
    /// Rows whose values hold line breaks (quoted across lines).
    pub multiline_rows: u64,
    /// The line where the first of them starts.
    pub first_multiline_line: Option<u64>,
    /// Headers in the file that no field maps (identity mapping only).
    pub ignored_headers: Vec<String>,
    /// The field delimiter used (`,` `;` `tab` …).
    pub delimiter: String,
    /// Whether the delimiter was detected (rather than given).
    pub delimiter_detected: bool,
    /// The text encoding read.
    pub encoding: &'static str,
    /// The date format of `birth_date`, when mapped and holding values.
    pub birth_date_format: Option<FormatChoice>,
}

/// One mapped field resolved against a header row.
struct Column {
    field: &'static str,
    /// Its index in [`FIELDS`] (a bit in a row's masks).
    slot: u32,
    cols: Vec<usize>,
    /// Their header(s), for messages.
    header: String,
    fmt: Option<DateFormat>,
}

/// A mapping resolved against a header row.
struct Resolved {
    fields: Vec<Column>,
}

impl Resolved {
    fn column(&self, field: &str) -> Option<&Column> {
        self.fields.iter().find(|c| c.field == field)
    }
}

/// Whether a header row is in fact a row of data (a date, a long number or an email in
/// it): then it is never echoed, since it would be patient data.
fn looks_like_data(headers: &[String]) -> bool {
    headers.iter().any(|h| {
        h.contains('@')
            || h.as_bytes()
                .windows(4)
                .any(|w| w.iter().all(u8::is_ascii_digit))
    })
}

/// The file's headers for an error message, with a hint when the delimiter looks wrong.
fn describe_headers(headers: &[String], delimiter: u8) -> String {
    if looks_like_data(headers) {
        return "the first line looks like data, not a header row: the file needs a header \
                row naming its columns"
            .into();
    }
    let mut shown: Vec<String> = headers
        .iter()
        .take(30)
        .map(|h| h.chars().take(40).collect())
        .collect();
    if headers.len() > 30 {
        shown.push(format!("… ({} in all)", headers.len()));
    }
    let mut s = format!(
        "the file's headers (delimiter {}): {}",
        delimiter_name(delimiter),
        shown.join(", ")
    );
    if headers.len() == 1 && headers[0].contains([',', ';', '\t', '|']) {
        s.push_str("; one header holding separators means another delimiter: give --delimiter");
    }
    s
}

fn find_header(headers: &[String], h: &str) -> std::result::Result<usize, usize> {
    if let Some(i) = headers.iter().position(|x| x == h) {
        return Ok(i);
    }
    let lower = h.to_lowercase();
    let found: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].to_lowercase() == lower)
        .collect();
    match found[..] {
        [i] => Ok(i),
        _ => Err(found.len()),
    }
}

fn resolve(mapping: &ColumnMapping, headers: &[String], delimiter: u8) -> Result<Resolved> {
    let mut fields = Vec::new();
    for f in &mapping.fields {
        let cols = f
            .headers
            .iter()
            .map(|h| {
                find_header(headers, h).map_err(|n| {
                    let what = if n == 0 {
                        "not in the file"
                    } else {
                        "matches several headers that differ only in case"
                    };
                    Error::invalid(
                        "columns",
                        format!(
                            "header '{h}' (for {}) {what}; {}",
                            f.field,
                            describe_headers(headers, delimiter)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let fmt = f.format.as_deref().map(DateFormat::parse).transpose()?;
        let slot = FIELDS.iter().position(|x| *x == f.field).unwrap_or(0) as u32;
        fields.push(Column {
            field: f.field,
            slot,
            cols,
            header: f.headers.join("+"),
            fmt,
        });
    }
    if !fields.iter().any(|c| c.field == "local_id") {
        return Err(Error::invalid(
            "columns",
            format!(
                "local_id is not mapped: every record needs the id its system gives it; map \
                 it, e.g. --columns local_id=mrn,... ({})",
                describe_headers(headers, delimiter)
            ),
        ));
    }
    Ok(Resolved { fields })
}

/// The mapping to use: the given one, or the identity (noting the headers it ignores).
fn mapping_for(
    mapping: Option<&ColumnMapping>,
    headers: &[String],
    delimiter: u8,
    summary: &mut ReadSummary,
) -> Result<ColumnMapping> {
    if let Some(m) = mapping {
        return Ok(m.clone());
    }
    let m = ColumnMapping::identity(headers);
    summary.ignored_headers = headers
        .iter()
        .filter(|h| !FIELDS.iter().any(|f| h.eq_ignore_ascii_case(f)))
        .cloned()
        .collect();
    if m.fields.is_empty() {
        return Err(Error::invalid(
            "columns",
            format!(
                "no header is named like one of our fields: give --columns, e.g. \
                 --columns local_id=mrn,given_name=first,... (see --help; {})",
                describe_headers(headers, delimiter)
            ),
        ));
    }
    Ok(m)
}

/// A field's value in a row: trimmed, several headers joined with a space.
fn value<'r>(row: &'r csv::StringRecord, cols: &[usize]) -> Cow<'r, str> {
    if let [c] = cols {
        return Cow::Borrowed(row.get(*c).unwrap_or("").trim());
    }
    let mut joined = String::new();
    for v in cols.iter().map(|c| row.get(*c).unwrap_or("").trim()) {
        if !v.is_empty() {
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(v);
        }
    }
    Cow::Owned(joined)
}

/// The line a row starts on (1 is the header).
fn line_of(row: &csv::StringRecord) -> u64 {
    row.position().map_or(0, csv::Position::line)
}

/// Which fields of a row hold a value and which of those were unusable (bits by
/// [`FIELDS`] index).
#[derive(Default, Clone, Copy)]
struct RowFacts {
    present: u32,
    unusable: u32,
}

/// What became of a row.
// Returned by value for one row at a time: boxing the record would cost an allocation
// per row of a million-row file.
#[allow(clippy::large_enum_variant)]
enum Converted<R = Record> {
    /// The record (or what the caller made of it).
    Record(R),
    /// No local id (`true`), or no demographic value.
    Skipped(bool),
    /// A record the service would refuse; the error names the field.
    Refused(Error),
}

fn convert_row(
    row: &csv::StringRecord,
    r: &Resolved,
    opts: &ReadOptions,
    today: i64,
    facts: &mut RowFacts,
) -> Result<Converted> {
    let mut rec = Record::default();
    let mut national_id = None;
    for col in &r.fields {
        let value = value(row, &col.cols);
        if value.is_empty() {
            continue;
        }
        facts.present |= 1 << col.slot;
        let bad = |facts: &mut RowFacts, reason: &dyn Fn() -> String| -> Result<()> {
            if opts.strict {
                return Err(Error::invalid(
                    col.field,
                    format!(
                        "line {}, column '{}': {}",
                        line_of(row),
                        col.header,
                        reason()
                    ),
                ));
            }
            facts.unusable |= 1 << col.slot;
            Ok(())
        };
        match col.field {
            "source" => rec.source = value.into_owned(),
            "local_id" => rec.local_id = value.into_owned(),
            "given_name" => rec.given_name = Some(value.into_owned()),
            "middle_name" => rec.middle_name = Some(value.into_owned()),
            "family_name" => rec.family_name = Some(value.into_owned()),
            "previous_family_name" => rec.previous_family_names.push(value.into_owned()),
            "birth_date" => match parse_date(&value, col.fmt.as_ref()) {
                DateParse::Ok(d) => rec.birth_date = Some(d),
                DateParse::Partial(d) => {
                    bad(facts, &|| {
                        format!(
                            "no such date (day or month out of range) in the format {}",
                            format_name(col.fmt.as_ref())
                        )
                    })?;
                    rec.birth_date = Some(d);
                }
                DateParse::Bad => bad(facts, &|| {
                    format!("not a date in the format {}", format_name(col.fmt.as_ref()))
                })?,
            },
            "sex" => match Sex::parse(&value) {
                Ok(s) => rec.sex = s,
                Err(_) => bad(facts, &|| {
                    "not one of F, female, M, male, O, other, U, unknown".into()
                })?,
            },
            "address_line" | "address_line2" => rec.address.lines.push(value.into_owned()),
            "city" => rec.address.city = Some(value.into_owned()),
            "state" => rec.address.state = Some(value.into_owned()),
            "postal_code" => rec.address.postal_code = Some(value.into_owned()),
            "country" => rec.address.country = Some(value.into_owned()),
            "phone" => {
                // Malformed phones stay in the record (prepare drops what it cannot use);
                // they are only counted here.
                if crate::normalize::phone(&value).is_none() {
                    bad(facts, &|| "not a phone number".into())?;
                }
                rec.phones.push(value.into_owned());
            }
            "email" => {
                if crate::normalize::email(&value).is_none() {
                    bad(facts, &|| "not an email address".into())?;
                } else {
                    rec.email = Some(value.into_owned());
                }
            }
            "national_id" => {
                if crate::normalize::identifier(&value).is_none() {
                    bad(facts, &|| "not an identifier".into())?;
                } else {
                    national_id = Some(value.into_owned());
                }
            }
            "multiple_birth_order" => match value.parse::<u8>() {
                Ok(n) if (1..=16).contains(&n) => rec.multiple_birth_order = Some(n),
                _ => bad(facts, &|| "not a birth order 1 to 16".into())?,
            },
            // FIELDS is closed and resolve() only yields names from it.
            other => unreachable!("unmapped field {other}"),
        }
    }
    if let Some(v) = national_id {
        rec.identifiers.push(Identifier {
            system: NATIONAL_ID_SYSTEM.into(),
            value: v,
        });
    }
    if rec.source.is_empty() {
        rec.source.clone_from(&opts.default_source);
    }
    if rec.local_id.is_empty() || rec.is_empty() {
        if opts.strict {
            let (field, what) = if rec.local_id.is_empty() {
                ("local_id", "missing or empty")
            } else {
                ("record", "no demographic value")
            };
            return Err(Error::invalid(
                field,
                format!("line {}: {what}", line_of(row)),
            ));
        }
        return Ok(Converted::Skipped(rec.local_id.is_empty()));
    }
    // The service's own rules: a record it would refuse is refused here too.
    match rec.validate(today) {
        Ok(()) => Ok(Converted::Record(rec)),
        Err(Error::InvalidInput { field, reason, .. }) if opts.strict => Err(Error::invalid(
            field,
            format!("line {}: {reason}", line_of(row)),
        )
        .for_record(rec.key())),
        Err(e) => Ok(Converted::Refused(e)),
    }
}

/// Reads every record of a CSV file through a mapping (`None`: identity mapping).
///
/// # Errors
/// [`Error::Io`] for unreadable files, [`Error::InvalidInput`] for mapping errors (a mapped
/// header missing from the file names it), for a file none of whose rows gives a record,
/// for a mapped column none of whose values is usable, for a quote left open at the end
/// of the file, and, in strict mode, for bad values and refused records.
pub fn read_csv(
    path: &Path,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
) -> Result<(Vec<Record>, ReadSummary)> {
    read_csv_map(path, mapping, opts, |r| r, &|_| {})
}

/// [`read_csv`] over any reader.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_from(
    reader: impl Read + Send,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
) -> Result<(Vec<Record>, ReadSummary)> {
    read_csv_map_from(reader, mapping, opts, |r| r, &|_| {})
}

/// Something read from a row that still knows its record key (for the rule that a
/// repeated key updates the earlier row).
pub trait Keyed {
    /// `(source, local_id)`.
    fn key_parts(&self) -> (&str, &str);
}

impl Keyed for Record {
    fn key_parts(&self) -> (&str, &str) {
        (&self.source, &self.local_id)
    }
}

/// Names the file in an error that does not yet (I/O errors carry no path below here).
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    }
}

/// Reads a CSV file like [`read_csv`] but turns each record into a `T` as soon as its chunk
/// is converted (in parallel), so a bulk caller never holds every [`Record`] at once.
/// `progress` is called with the number of rows after each chunk.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_map<T, F>(
    path: &Path,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
    convert: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<T>, ReadSummary)>
where
    T: Keyed + Send,
    F: Fn(Record) -> T + Sync,
{
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_csv_map_from(file, mapping, opts, convert, progress).map_err(|e| with_path(path, e))
}

/// A CSV error as ours: bytes that are not UTF-8 get a hint about the encoding.
fn csv_error(e: csv::Error) -> Error {
    let line = e.position().map_or(0, csv::Position::line);
    if let csv::ErrorKind::Utf8 { .. } = e.kind() {
        return Error::invalid(
            "input",
            format!(
                "line {line}: the bytes are not UTF-8 text; a file from Excel or an older \
                 system is probably Latin-1 (Windows-1252): give --encoding latin1"
            ),
        );
    }
    let msg = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io("", io),
        _ => Error::invalid("input", format!("csv: {msg}")),
    }
}

/// A CSV reader over decoded text: flexible rows (a short row is missing its last values).
fn csv_reader<R: Read>(src: text::Source<R>, delimiter: u8) -> csv::Reader<text::Source<R>> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(src)
}

fn read_headers<R: Read>(rdr: &mut csv::Reader<R>) -> Result<Vec<String>> {
    Ok(rdr
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect())
}

/// Chooses the format of a `birth_date` column mapped without one, from the first rows'
/// values; reports the format in use either way (`None`: no birth date values).
fn choose_date_format(r: &mut Resolved, first: &[csv::StringRecord]) -> Option<FormatChoice> {
    let col = r.fields.iter_mut().find(|c| c.field == "birth_date")?;
    if let Some(f) = &col.fmt {
        return Some(FormatChoice {
            format: f.to_string(),
            detected: false,
            sampled: 0,
            fits: 0,
            also_fits: None,
            parsed: Some(f.clone()),
        });
    }
    let values: Vec<Cow<str>> = first
        .iter()
        .map(|row| value(row, &col.cols))
        .filter(|v| !v.is_empty())
        .take(date::DETECT_SAMPLE)
        .collect();
    if values.is_empty() {
        return None;
    }
    let d = date::detect(values.iter().map(|v| &**v));
    col.fmt.clone_from(&d.format);
    Some(FormatChoice {
        format: format_name(d.format.as_ref()),
        detected: true,
        sampled: d.sampled,
        fits: d.fits,
        also_fits: d.also.map(|f| f.to_string()),
        parsed: d.format,
    })
}

/// Lines of rows whose values hold line breaks, noted while reading.
struct Breaks {
    /// The file's delimiter, as text.
    delimiter: char,
    rows: u64,
    first: Option<u64>,
    /// The last row read, when its last value looks like the rest of the file swallowed
    /// by a quote left open: its first and last lines.
    swallowing: Option<(u64, u64)>,
}

impl Breaks {
    fn new(delimiter: u8) -> Self {
        Breaks {
            delimiter: char::from(delimiter),
            rows: 0,
            first: None,
            swallowing: None,
        }
    }

    /// Notes a row that spans lines. A quote left open runs to the end of the file, so
    /// its value is the row's last and holds what look like more rows: it ends in a line
    /// break, or has a delimiter after one. A quoted note over two lines does neither.
    fn note(&mut self, row: &csv::StringRecord, first: u64, after: u64) {
        self.swallowing = None;
        if !row.iter().any(|f| f.contains(['\n', '\r'])) {
            return;
        }
        self.rows += 1;
        self.first.get_or_insert(first);
        let last = row.iter().next_back().unwrap_or("");
        if let Some(at) = last.find(['\n', '\r']) {
            let rest = &last[at..];
            let ends_in_break = last.ends_with(['\n', '\r']);
            if ends_in_break || rest.contains(self.delimiter) {
                let end = if ends_in_break { after - 1 } else { after };
                self.swallowing = Some((first, end.max(first)));
            }
        }
    }
}

/// [`read_csv_map`] over any reader.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_map_from<T, F>(
    reader: impl Read + Send,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
    convert: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<T>, ReadSummary)>
where
    T: Keyed + Send,
    F: Fn(Record) -> T + Sync,
{
    let (src, delimiter) = text::open(reader, opts.encoding, opts.delimiter)?;
    let mut rdr = csv_reader(src, delimiter);
    let headers = read_headers(&mut rdr)?;
    let mut summary = ReadSummary {
        delimiter: delimiter_name(delimiter),
        delimiter_detected: opts.delimiter.is_none(),
        encoding: opts.encoding.name(),
        ..Default::default()
    };
    let mapping = mapping_for(mapping, &headers, delimiter, &mut summary)?;
    let mut resolved = resolve(&mapping, &headers, delimiter)?;
    let today = crate::record::today_days();
    let mut records = Vec::new();
    let mut present = [0u64; FIELDS.len()];
    let mut unusable = [0u64; FIELDS.len()];
    let mut breaks = Breaks::new(delimiter);
    // Two row buffers, reused from chunk to chunk: while one chunk is converted in parallel,
    // the next is parsed (rayon::join), so parsing overlaps conversion.
    let mut current: Vec<csv::StringRecord> = Vec::with_capacity(CHUNK);
    let mut next: Vec<csv::StringRecord> = Vec::with_capacity(CHUNK);
    let mut filled = read_chunk(&mut rdr, &mut current, &mut breaks).map_err(csv_error)?;
    summary.birth_date_format = choose_date_format(&mut resolved, &current[..filled]);
    while filled > 0 {
        let at_end = filled < CHUNK;
        let rows = &current[..filled];
        let (read_next, converted) = rayon::join(
            || {
                if at_end {
                    Ok(0)
                } else {
                    read_chunk(&mut rdr, &mut next, &mut breaks)
                }
            },
            || {
                rows.par_iter()
                    .map(|row| {
                        let mut facts = RowFacts::default();
                        let r = convert_row(row, &resolved, opts, today, &mut facts);
                        (
                            r.map(|c| match c {
                                Converted::Record(rec) => Converted::Record(convert(rec)),
                                Converted::Skipped(no_id) => Converted::Skipped(no_id),
                                Converted::Refused(e) => Converted::Refused(e),
                            }),
                            facts,
                        )
                    })
                    .collect::<Vec<_>>()
            },
        );
        for (r, facts) in converted {
            summary.rows += 1;
            // One pass over the set bits only: this loop is the sequential part.
            for (mask, counts) in [
                (facts.present, &mut present),
                (facts.unusable, &mut unusable),
            ] {
                let mut m = mask;
                while m != 0 {
                    counts[m.trailing_zeros() as usize] += 1;
                    m &= m - 1;
                }
            }
            match r? {
                Converted::Record(rec) => records.push(rec),
                Converted::Skipped(no_id) => {
                    summary.skipped_rows += 1;
                    summary.skipped_without_id += u64::from(no_id);
                }
                Converted::Refused(e) => {
                    summary.refused_rows += 1;
                    *summary.refused.entry(e.to_string()).or_default() += 1;
                }
            }
        }
        progress(summary.rows);
        // Errors of earlier rows (strict mode) come first, as without the overlap.
        filled = read_next.map_err(csv_error)?;
        std::mem::swap(&mut current, &mut next);
    }
    if let Some((first, end)) = breaks.swallowing {
        return Err(Error::invalid(
            "input",
            format!(
                "line {first}: a quoted value runs from here to the end of the file (line \
                 {end}): a quote is probably not closed; fix it (a quote inside a value is \
                 written twice: \"\")"
            ),
        ));
    }
    summary.multiline_rows = breaks.rows;
    summary.first_multiline_line = breaks.first;
    for (slot, field) in FIELDS.iter().enumerate() {
        if present[slot] > 0 {
            summary.values.insert(field.to_string(), present[slot]);
        }
        if unusable[slot] > 0 {
            summary.issues.insert(field.to_string(), unusable[slot]);
        }
    }
    // Same key again: the later row is an update of the earlier one.
    let mut keep = vec![true; records.len()];
    {
        let mut seen: ahash::AHashMap<(&str, &str), usize> =
            ahash::AHashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if let Some(prev) = seen.insert(r.key_parts(), i) {
                keep[prev] = false;
                summary.duplicate_keys += 1;
                if summary.first_duplicate.is_none() {
                    let (s, l) = r.key_parts();
                    summary.first_duplicate = Some(format!("{s}/{l}"));
                }
            }
        }
    }
    if summary.duplicate_keys > 0 {
        let mut k = keep.iter();
        records.retain(|_| *k.next().unwrap_or(&true));
    }
    summary.records = records.len() as u64;
    check_usable(&resolved, &summary, &present, &unusable)?;
    Ok((records, summary))
}

/// The errors of a read that went through but whose result would be wrong: a mapped
/// column none of whose values is usable (said first: it is often why nothing was read),
/// or no record at all.
fn check_usable(
    r: &Resolved,
    summary: &ReadSummary,
    present: &[u64],
    unusable: &[u64],
) -> Result<()> {
    for col in &r.fields {
        let slot = col.slot as usize;
        if present[slot] == 0 || unusable[slot] < present[slot] {
            continue;
        }
        let hint = match col.field {
            "birth_date" => format!(
                "none is a date in the format {}: give the right one in the mapping, e.g. \
                 birth_date={}:%d.%m.%Y (see --help)",
                format_name(col.fmt.as_ref()),
                col.header
            ),
            "sex" => "none is one of F, female, M, male, O, other, U, unknown: map another \
                      column or leave sex unmapped"
                .to_string(),
            _ => format!(
                "is '{}' the right column for {}? check --columns",
                col.header, col.field
            ),
        };
        return Err(Error::invalid(
            col.field,
            format!(
                "all {} values of column '{}' are unusable: {hint}",
                present[slot], col.header
            ),
        ));
    }
    if summary.records == 0 {
        let why = if summary.rows == 0 {
            "the file has a header row but no data rows".to_string()
        } else {
            let mut parts = Vec::new();
            if summary.skipped_without_id > 0 {
                parts.push(format!(
                    "{} without a local_id (is local_id mapped to the right column?)",
                    summary.skipped_without_id
                ));
            }
            let valueless = summary.skipped_rows - summary.skipped_without_id;
            if valueless > 0 {
                parts.push(format!(
                    "{valueless} with no value but the local_id (map the name, birth date \
                     and address columns too; see --help)"
                ));
            }
            if summary.refused_rows > 0 {
                parts.push(format!(
                    "{} refused as the service would ({})",
                    summary.refused_rows,
                    reasons(&summary.refused)
                ));
            }
            format!("all {} rows left out: {}", summary.rows, parts.join("; "))
        };
        return Err(Error::invalid("input", format!("no records read: {why}")));
    }
    Ok(())
}

/// `reason n, reason n` from counts by reason.
pub fn reasons(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const CHUNK: usize = 16_384;

/// Reads up to [`CHUNK`] rows into `buf` (reusing its records); returns how many. Rows
/// that do not end one line after they start (a quoted line break, or the file's end) are
/// looked at for line breaks in their values.
fn read_chunk<R: Read>(
    rdr: &mut csv::Reader<R>,
    buf: &mut Vec<csv::StringRecord>,
    breaks: &mut Breaks,
) -> csv::Result<usize> {
    let mut filled = 0;
    // The line after the last row read, when that row looked like one line.
    let mut plain = None;
    while filled < CHUNK {
        if filled == buf.len() {
            buf.push(csv::StringRecord::new());
        }
        if !rdr.read_record(&mut buf[filled])? {
            // The file's last row need not end in a line break: look at it anyway.
            if let (Some(after), Some(row)) = (plain, filled.checked_sub(1).map(|i| &buf[i])) {
                breaks.note(row, line_of(row), after);
            }
            break;
        }
        let row = &buf[filled];
        let (first, after) = (line_of(row), rdr.position().line());
        if after == first + 1 {
            breaks.swallowing = None;
            plain = Some(after);
        } else {
            breaks.note(row, first, after);
            plain = None;
        }
        filled += 1;
    }
    Ok(filled)
}

/// A CSV read a row at a time in file order, each row with the record key the bulk read
/// gave it: the second pass of a batch run that writes its results beside the input's own
/// columns.
pub struct Rows<R: Read> {
    rdr: csv::Reader<text::Source<R>>,
    headers: Vec<String>,
    resolved: Resolved,
    opts: ReadOptions,
    today: i64,
    row: csv::StringRecord,
}

impl Rows<std::fs::File> {
    /// Opens a file read before with the same mapping and options; `first` is what that
    /// read found (its date format is used again).
    ///
    /// # Errors
    /// As [`read_csv`] for opening and mapping.
    pub fn open(
        path: &Path,
        mapping: Option<&ColumnMapping>,
        opts: &ReadOptions,
        first: &ReadSummary,
    ) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Rows::from_reader(file, mapping, opts, first).map_err(|e| with_path(path, e))
    }
}

impl<R: Read> Rows<R> {
    /// [`Rows::open`] over any reader.
    ///
    /// # Errors
    /// As [`Rows::open`].
    pub fn from_reader(
        reader: R,
        mapping: Option<&ColumnMapping>,
        opts: &ReadOptions,
        first: &ReadSummary,
    ) -> Result<Self> {
        let (src, delimiter) = text::open(reader, opts.encoding, opts.delimiter)?;
        let mut rdr = csv_reader(src, delimiter);
        let headers = read_headers(&mut rdr)?;
        let mapping = mapping_for(mapping, &headers, delimiter, &mut ReadSummary::default())?;
        let mut resolved = resolve(&mapping, &headers, delimiter)?;
        if let Some(col) = resolved.fields.iter_mut().find(|c| c.field == "birth_date") {
            if let Some(f) = first
                .birth_date_format
                .as_ref()
                .and_then(|f| f.parsed.clone())
            {
                col.fmt = Some(f);
            }
        }
        Ok(Rows {
            rdr,
            headers,
            resolved,
            opts: ReadOptions {
                strict: false,
                ..opts.clone()
            },
            today: crate::record::today_days(),
            row: csv::StringRecord::new(),
        })
    }

    /// The file's headers, trimmed.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Reads the next row; `false` at the end.
    ///
    /// # Errors
    /// As [`read_csv`] for a malformed row.
    pub fn next_row(&mut self) -> Result<bool> {
        self.rdr.read_record(&mut self.row).map_err(csv_error)
    }

    /// The current row's values, as in the file.
    pub fn fields(&self) -> &csv::StringRecord {
        &self.row
    }

    /// The current row's `(source, local_id)` as the bulk read gave its record.
    pub fn key(&self) -> (Cow<'_, str>, Cow<'_, str>) {
        let get = |field| {
            self.resolved
                .column(field)
                .map_or(Cow::Borrowed(""), |c| value(&self.row, &c.cols))
        };
        let source = match get("source") {
            s if s.is_empty() => Cow::Borrowed(self.opts.default_source.as_str()),
            s => s,
        };
        (source, get("local_id"))
    }

    /// The current row as a record (leniently: unusable values as the bulk read kept
    /// them); `None` when the bulk read left the row out.
    pub fn record(&self) -> Option<Record> {
        match convert_row(
            &self.row,
            &self.resolved,
            &self.opts,
            self.today,
            &mut RowFacts::default(),
        ) {
            Ok(Converted::Record(r)) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(csv: &str, spec: Option<&str>, strict: bool) -> Result<(Vec<Record>, ReadSummary)> {
        let mapping = spec.map(ColumnMapping::parse).transpose()?;
        read_csv_from(
            csv.as_bytes(),
            mapping.as_ref(),
            &ReadOptions {
                strict,
                ..Default::default()
            },
        )
    }

    #[test]
    fn mapping_syntax() {
        let m = ColumnMapping::parse(
            "local_id=rec_id, birth_date=dob:%Y%m%d,address_line=street_number+address_1,phone=a,phone=b",
        )
        .unwrap();
        assert_eq!(m.fields.len(), 5);
        assert_eq!(m.fields[1].format.as_deref(), Some("%Y%m%d"));
        assert_eq!(m.fields[2].headers, vec!["street_number", "address_1"]);
        let e = ColumnMapping::parse("nickname=x").unwrap_err().to_string();
        assert!(
            e.contains("unknown field 'nickname'") && e.contains("given_name, middle_name"),
            "{e}"
        );
        assert!(ColumnMapping::parse("given_name=a,given_name=b").is_err());
        assert!(ColumnMapping::parse("sex=s:%Y").is_err());
        assert!(ColumnMapping::parse("local_id").is_err());
        assert!(ColumnMapping::parse("local_id=a,birth_date=b:%Q").is_err());
    }

    #[test]
    fn reads_through_mapping_and_joins_headers() {
        let csv = "rec_id,first,surname,dob,num,street,tel\n\
                   A1,Ana,Lima,19560314,12,Main St,555-201-7788\n";
        let (recs, sum) = read(
            csv,
            Some("local_id=rec_id,given_name=first,family_name=surname,birth_date=dob:%Y%m%d,address_line=num+street,phone=tel"),
            false,
        )
        .unwrap();
        assert_eq!(sum.records, 1);
        let r = &recs[0];
        assert_eq!(r.source, "file");
        assert_eq!(r.address.lines, vec!["12 Main St"]);
        assert_eq!(r.birth_date.unwrap().to_string(), "1956-03-14");
    }

    #[test]
    fn headers_match_ignoring_case_and_missing_ones_are_listed() {
        let (recs, _) = read(
            "MRN,First\n7,Ana\n",
            Some("local_id=mrn,given_name=FIRST"),
            false,
        )
        .unwrap();
        assert_eq!(recs[0].local_id, "7");
        let (recs, _) = read("Local_ID,Given_Name\n7,Ana\n", None, false).unwrap();
        assert_eq!(recs[0].given_name.as_deref(), Some("Ana"));
        let e = read("a,b\n1,2\n", Some("local_id=a,given_name=first"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("header 'first'") && e.contains("headers (delimiter comma): a, b"),
            "{e}"
        );
        let e = read("mrn,MRN\n1,2\n", Some("local_id=Mrn"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ only in case"), "{e}");
        // A header row that is data is never echoed.
        let e = read("A1,Ana,1961-07-02\n", Some("local_id=mrn"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("looks like data") && !e.contains("Ana"), "{e}");
    }

    #[test]
    fn local_id_must_be_mapped() {
        let e = read("mrn,given_name\n1,Ana\n", None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("local_id is not mapped"), "{e}");
    }

    #[test]
    fn messy_values_are_counted_not_fatal() {
        let csv = "local_id,birth_date,phone,sex\n1,19560931,12,F\n2,1956-03-14,555-201-7788,Q\n\
                   3,,,\n";
        let (recs, sum) = read(csv, None, false).unwrap();
        assert_eq!(recs.len(), 2, "row 3 has no demographic value");
        assert_eq!(sum.skipped_rows, 1);
        assert_eq!(
            recs[0].birth_date.unwrap().to_string(),
            "1956-09",
            "day 31 dropped, kept year-month"
        );
        assert_eq!(sum.issues["birth_date"], 1);
        assert_eq!(sum.issues["phone"], 1);
        assert_eq!(sum.issues["sex"], 1);
        assert_eq!(sum.values["birth_date"], 2);
        let e = read(csv, None, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "birth_date: line 2, column 'birth_date': no such date (day or month out of \
             range) in the format ISO (YYYY-MM-DD, YYYYMMDD, YYYY-MM or YYYY)"
        );
    }

    #[test]
    fn a_column_without_one_usable_value_is_an_error() {
        let e = read("local_id,given_name,sex\n1,Ana,1\n2,Ben,2\n", None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sex: all 2 values of column 'sex' are unusable"),
            "{e}"
        );
        let e = read(
            "id,dob\n1,31.12.1960\n2,15.01.1990\n",
            Some("local_id=id,birth_date=dob:%m/%d/%Y"),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("none is a date in the format %m/%d/%Y"), "{e}");
    }

    #[test]
    fn date_formats_are_detected_when_not_given() {
        let csv = "id,dob\n1,07/02/1961\n2,12/31/1980\n";
        let (recs, sum) = read(csv, Some("local_id=id,birth_date=dob"), false).unwrap();
        assert_eq!(recs[1].birth_date.unwrap().to_string(), "1980-12-31");
        let f = sum.birth_date_format.unwrap();
        assert_eq!(
            (f.format.as_str(), f.detected, f.fits),
            ("%m/%d/%Y", true, 2)
        );
        // Given formats in either grammar.
        let (recs, sum) = read(csv, Some("local_id=id,birth_date=dob: MM/DD/YYYY"), false).unwrap();
        assert_eq!(recs[0].birth_date.unwrap().to_string(), "1961-07-02");
        assert!(!sum.birth_date_format.unwrap().detected);
    }

    #[test]
    fn the_service_rules_refuse_records() {
        let long = "x".repeat(300);
        let csv = format!(
            "local_id,given_name,birth_date\n1,Ana,2099-01-01\n2,{long},1970-01-01\n3,Ben,1970-01-01\n"
        );
        let (recs, sum) = read(&csv, None, false).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(sum.refused_rows, 2);
        assert_eq!(sum.refused["birth_date: in the future"], 1);
        assert_eq!(sum.refused["given_name: longer than 256 bytes"], 1);
        let e = read(&csv, None, true).unwrap_err().to_string();
        assert_eq!(e, "record file/1: birth_date: line 2: in the future");
    }

    #[test]
    fn nothing_read_is_an_error() {
        let e = read("local_id,given_name\n", None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no data rows"), "{e}");
        let e = read("local_id,given_name\n,Ana\n,Ben\n", None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("all 2 rows left out") && e.contains("local_id"),
            "{e}"
        );
    }

    #[test]
    fn an_open_quote_at_the_end_is_an_error_and_quoted_breaks_are_counted() {
        let e = read(
            "local_id,given_name\n1,Ana\n2,\"Ben\n3,Cleo\n4,Dev\n",
            None,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 3: a quoted value runs") && e.contains("line 5"),
            "{e}"
        );
        let (recs, sum) = read(
            "local_id,given_name,note\n1,Ana,\"two\nlines\"\n2,Ben,x\n",
            None,
            false,
        )
        .unwrap();
        assert_eq!((recs.len(), sum.multiline_rows), (2, 1));
        assert_eq!(sum.first_multiline_line, Some(2));
        // A note over two lines in the last row is a note, not an open quote.
        for csv in [
            "local_id,given_name,note\n1,Ana,\"two\nlines\"\n",
            "local_id,given_name,note\n1,Ana,\"two\nlines\"",
        ] {
            let (recs, sum) = read(csv, None, false).unwrap();
            assert_eq!((recs.len(), sum.multiline_rows), (1, 1), "{csv:?}");
        }
        // Without a line end after the last row, the open quote still shows.
        let e = read("local_id,given_name\n1,Ana\n2,\"Ben\n3,Cleo", None, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 3: a quoted value runs from here to the end of the file (line 4)"),
            "{e}"
        );
    }

    #[test]
    fn delimiters_encodings_bom_and_crlf() {
        let (recs, sum) = read("local_id;given_name\r\n1;Ana\r\n", None, false).unwrap();
        assert_eq!(recs[0].given_name.as_deref(), Some("Ana"));
        assert_eq!(
            (sum.delimiter.as_str(), sum.delimiter_detected),
            ("semicolon", true)
        );
        let (recs, _) = read("\u{feff}local_id\tgiven_name\n1\tAna\n", None, false).unwrap();
        assert_eq!(recs[0].local_id, "1");
        let latin1 = b"local_id,given_name\n1,Jos\xE9\n";
        let e = read_csv_from(&latin1[..], None, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("--encoding latin1"),
            "{e}"
        );
        let opts = ReadOptions {
            encoding: Encoding::Windows1252,
            ..Default::default()
        };
        let (recs, _) = read_csv_from(&latin1[..], None, &opts).unwrap();
        assert_eq!(recs[0].given_name.as_deref(), Some("José"));
    }

    #[test]
    fn duplicate_keys_keep_the_later_row() {
        let csv = "source,local_id,given_name\nadt,1,Ann\nadt,1,Anne\n";
        let (recs, sum) = read(csv, None, false).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].given_name.as_deref(), Some("Anne"));
        assert_eq!(sum.duplicate_keys, 1);
        assert_eq!(sum.first_duplicate.as_deref(), Some("adt/1"));
    }

    #[test]
    fn rows_give_back_keys_and_records_in_file_order() {
        let csv = "id,first,dob\n1,Ana,07/02/1961\n,Nobody,\n2,Ben,12/31/1980\n";
        let mapping = ColumnMapping::parse("local_id=id,given_name=first,birth_date=dob").unwrap();
        let opts = ReadOptions::default();
        let (_, sum) = read_csv_from(csv.as_bytes(), Some(&mapping), &opts).unwrap();
        let mut rows = Rows::from_reader(csv.as_bytes(), Some(&mapping), &opts, &sum).unwrap();
        assert_eq!(rows.headers(), ["id", "first", "dob"]);
        let mut seen = Vec::new();
        while rows.next_row().unwrap() {
            let (s, l) = rows.key();
            let date = rows
                .record()
                .and_then(|r| r.birth_date)
                .map(|d| d.to_string());
            seen.push((format!("{s}/{l}"), date));
        }
        assert_eq!(
            seen,
            [
                ("file/1".to_string(), Some("1961-07-02".to_string())),
                ("file/".to_string(), None),
                ("file/2".to_string(), Some("1980-12-31".to_string())),
            ]
        );
    }
}
