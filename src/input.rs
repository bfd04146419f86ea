//! Reading records from any CSV with a header, through a column mapping.
//!
//! Mapping syntax (the same everywhere a CSV is read):
//! `local_id=rec_id,given_name=first,birth_date=dob:%Y%m%d,address_line=street_number+address_1`
//! — our field on the left, their header on the right; `:FORMAT` gives a date format
//! (`%Y %y %m %d %b` and literal characters); `a+b` joins several headers with a space;
//! a multi-valued field (`phone`, `previous_family_name`) may be mapped more than once;
//! unmapped fields are absent. An unknown field or header is an error naming it.
//!
//! Messy files are the norm: an unparseable value does not abort the run. It is kept where
//! a comparison can still use it (an impossible day keeps year and month) or treated as
//! missing, and counted per column in [`ReadSummary::issues`]. With
//! [`ReadOptions::strict`] it is an error naming row and column instead.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::{days_in_month, Identifier, PartialDate, Record, Sex, NATIONAL_ID_SYSTEM};

/// Our field names, the left-hand side of a mapping.
pub const FIELDS: &[&str] = &[
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
    /// [`Error::InvalidInput`] naming an unknown field, a malformed entry or a repeated
    /// single-valued field.
    pub fn parse(spec: &str) -> Result<ColumnMapping> {
        let mut fields: Vec<FieldSource> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (ours, theirs) = entry.split_once('=').ok_or_else(|| {
                Error::invalid("columns", format!("'{entry}' is not field=header"))
            })?;
            let ours = ours.trim();
            let field = FIELDS
                .iter()
                .find(|f| **f == ours)
                .ok_or_else(|| Error::invalid("columns", format!("unknown field '{ours}'")))?;
            if !MULTI_VALUED.contains(field) && fields.iter().any(|f| f.field == *field) {
                return Err(Error::invalid(
                    "columns",
                    format!("field '{ours}' mapped twice"),
                ));
            }
            let (headers, format) = match theirs.split_once(':') {
                Some((h, f)) if *field == "birth_date" => (h, Some(f.to_string())),
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

    /// The mapping used when none is given: every header named like one of our fields.
    pub fn identity(headers: &[String]) -> ColumnMapping {
        ColumnMapping {
            fields: headers
                .iter()
                .filter_map(|h| FIELDS.iter().find(|f| **f == h.as_str()))
                .map(|f| FieldSource {
                    field: f,
                    headers: vec![f.to_string()],
                    format: None,
                })
                .collect(),
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Unparseable values are errors naming row and column, instead of counted.
    pub strict: bool,
    /// Source used when `source` is not mapped (or empty in a row).
    pub default_source: String,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            strict: false,
            default_source: "file".into(),
        }
    }
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
    /// Rows whose key repeats an earlier row (the later row wins).
    pub duplicate_keys: u64,
    /// Unparseable or unusable values per column (our field name).
    pub issues: BTreeMap<String, u64>,
    /// Headers in the file that no field maps (identity mapping only).
    pub ignored_headers: Vec<String>,
}

/// A mapping resolved against a header row.
struct Resolved {
    fields: Vec<(&'static str, Vec<usize>, Option<DateFormat>)>,
}

fn resolve(mapping: &ColumnMapping, headers: &[String]) -> Result<Resolved> {
    let mut fields = Vec::new();
    for f in &mapping.fields {
        let idx = f
            .headers
            .iter()
            .map(|h| {
                headers.iter().position(|x| x == h).ok_or_else(|| {
                    Error::invalid(
                        "columns",
                        format!("header '{h}' (for {}) not in the file", f.field),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let fmt = f.format.as_deref().map(DateFormat::parse).transpose()?;
        fields.push((f.field, idx, fmt));
    }
    Ok(Resolved { fields })
}

/// One problem found in a row: the column, and whether the value was dropped or kept partly.
type Issue = &'static str;

fn convert_row(
    row: &csv::StringRecord,
    r: &Resolved,
    opts: &ReadOptions,
    row_no: u64,
    issues: &mut Vec<Issue>,
) -> Result<Option<Record>> {
    let mut rec = Record::default();
    let mut national_id = None;
    for (field, idx, fmt) in &r.fields {
        let value: String = if idx.len() == 1 {
            row.get(idx[0]).unwrap_or("").trim().to_string()
        } else {
            idx.iter()
                .map(|i| row.get(*i).unwrap_or("").trim())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        };
        if value.is_empty() {
            continue;
        }
        let bad = |issues: &mut Vec<Issue>, reason: &str| -> Result<()> {
            if opts.strict {
                return Err(Error::invalid(*field, format!("row {row_no}: {reason}")));
            }
            issues.push(field);
            Ok(())
        };
        match *field {
            "source" => rec.source = value,
            "local_id" => rec.local_id = value,
            "given_name" => rec.given_name = Some(value),
            "middle_name" => rec.middle_name = Some(value),
            "family_name" => rec.family_name = Some(value),
            "previous_family_name" => rec.previous_family_names.push(value),
            "birth_date" => match parse_date(&value, fmt.as_ref()) {
                DateParse::Ok(d) => rec.birth_date = Some(d),
                DateParse::Partial(d) => {
                    bad(issues, "impossible date, kept the valid part")?;
                    rec.birth_date = Some(d);
                }
                DateParse::Bad => bad(issues, "unparseable date")?,
            },
            "sex" => match Sex::parse(&value) {
                Ok(s) => rec.sex = s,
                Err(_) => bad(issues, "unknown sex code")?,
            },
            "address_line" | "address_line2" => rec.address.lines.push(value),
            "city" => rec.address.city = Some(value),
            "state" => rec.address.state = Some(value),
            "postal_code" => rec.address.postal_code = Some(value),
            "country" => rec.address.country = Some(value),
            "phone" => {
                // Malformed phones stay in the record (prepare drops what it cannot use);
                // they are only counted here.
                if crate::normalize::phone(&value).is_none() {
                    bad(issues, "malformed phone")?;
                }
                rec.phones.push(value);
            }
            "email" => {
                if crate::normalize::email(&value).is_none() {
                    bad(issues, "malformed email")?;
                } else {
                    rec.email = Some(value);
                }
            }
            "national_id" => {
                if crate::normalize::identifier(&value).is_none() {
                    bad(issues, "malformed identifier")?;
                } else {
                    national_id = Some(value);
                }
            }
            "multiple_birth_order" => match value.parse::<u8>() {
                Ok(n) if (1..=16).contains(&n) => rec.multiple_birth_order = Some(n),
                _ => bad(issues, "not a birth order 1-16")?,
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
        rec.source = opts.default_source.clone();
    }
    if rec.local_id.is_empty() || rec.is_empty() {
        if opts.strict {
            let what = if rec.local_id.is_empty() {
                "local_id"
            } else {
                "record"
            };
            return Err(Error::invalid(
                what,
                format!("row {row_no}: missing or empty"),
            ));
        }
        return Ok(None);
    }
    Ok(Some(rec))
}

/// Reads every record of a CSV file through a mapping (`None`: identity mapping).
///
/// # Errors
/// [`Error::Io`] for unreadable files, [`Error::InvalidInput`] for mapping errors (a mapped
/// header missing from the file names it) and, in strict mode, for bad values.
pub fn read_csv(
    path: &Path,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
) -> Result<(Vec<Record>, ReadSummary)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_csv_from(
        std::io::BufReader::with_capacity(1 << 20, file),
        mapping,
        opts,
    )
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    })
}

/// [`read_csv`] over any reader.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_from(
    reader: impl std::io::Read + Send,
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
    read_csv_map_from(
        std::io::BufReader::with_capacity(1 << 20, file),
        mapping,
        opts,
        convert,
        progress,
    )
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    })
}

/// [`read_csv_map`] over any reader.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_map_from<T, F>(
    reader: impl std::io::Read + Send,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
    convert: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<T>, ReadSummary)>
where
    T: Keyed + Send,
    F: Fn(Record) -> T + Sync,
{
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let csv_err = |e: csv::Error| Error::invalid("input", format!("csv: {e}"));
    let headers: Vec<String> = rdr
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut summary = ReadSummary::default();
    let mapping = match mapping {
        Some(m) => m.clone(),
        None => {
            let m = ColumnMapping::identity(&headers);
            summary.ignored_headers = headers
                .iter()
                .filter(|h| !FIELDS.contains(&h.as_str()))
                .cloned()
                .collect();
            if m.fields.is_empty() {
                return Err(Error::invalid(
                    "columns",
                    "no header names one of our fields; give --columns",
                ));
            }
            m
        }
    };
    let resolved = resolve(&mapping, &headers)?;
    let mut records = Vec::new();
    // Two row buffers, reused from chunk to chunk: while one chunk is converted in parallel,
    // the next is parsed (rayon::join), so parsing overlaps conversion.
    let mut current: Vec<csv::StringRecord> = Vec::with_capacity(CHUNK);
    let mut next: Vec<csv::StringRecord> = Vec::with_capacity(CHUNK);
    let mut filled = read_chunk(&mut rdr, &mut current).map_err(csv_err)?;
    let mut row_no = 1u64; // the header is row 1
    while filled > 0 {
        let first = row_no + 1;
        row_no += filled as u64;
        let at_end = filled < CHUNK;
        let rows = &current[..filled];
        let (read_next, converted) = rayon::join(
            || {
                if at_end {
                    Ok(0)
                } else {
                    read_chunk(&mut rdr, &mut next)
                }
            },
            || {
                rows.par_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let mut issues = Vec::new();
                        let r = convert_row(row, &resolved, opts, first + i as u64, &mut issues);
                        (r.map(|r| r.map(&convert)), issues)
                    })
                    .collect::<Vec<(Result<Option<T>>, Vec<Issue>)>>()
            },
        );
        for (r, issues) in converted {
            summary.rows += 1;
            for f in issues {
                *summary.issues.entry(f.to_string()).or_default() += 1;
            }
            match r? {
                Some(rec) => records.push(rec),
                None => summary.skipped_rows += 1,
            }
        }
        progress(summary.rows);
        // Errors of earlier rows (strict mode) come first, as without the overlap.
        filled = read_next.map_err(csv_err)?;
        std::mem::swap(&mut current, &mut next);
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
            }
        }
    }
    if summary.duplicate_keys > 0 {
        let mut k = keep.iter();
        records.retain(|_| *k.next().unwrap_or(&true));
    }
    summary.records = records.len() as u64;
    Ok((records, summary))
}

const CHUNK: usize = 16_384;

/// Reads up to [`CHUNK`] rows into `buf` (reusing its records); returns how many.
fn read_chunk<R: std::io::Read>(
    rdr: &mut csv::Reader<R>,
    buf: &mut Vec<csv::StringRecord>,
) -> csv::Result<usize> {
    let mut filled = 0;
    while filled < CHUNK {
        if filled == buf.len() {
            buf.push(csv::StringRecord::new());
        }
        if !rdr.read_record(&mut buf[filled])? {
            break;
        }
        filled += 1;
    }
    Ok(filled)
}

/// A date format: `%Y` 4-digit year, `%y` 2-digit year, `%m`/`%d` 1–2 digit month/day,
/// `%b` English month abbreviation, anything else literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat(Vec<DatePart>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePart {
    Year4,
    Year2,
    Month,
    MonthName,
    Day,
    Lit(char),
}

impl DateFormat {
    /// Parses a format string.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `columns` for an unknown `%` directive.
    pub fn parse(f: &str) -> Result<DateFormat> {
        let mut parts = Vec::new();
        let mut chars = f.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                parts.push(DatePart::Lit(c));
                continue;
            }
            parts.push(match chars.next() {
                Some('Y') => DatePart::Year4,
                Some('y') => DatePart::Year2,
                Some('m') => DatePart::Month,
                Some('b') => DatePart::MonthName,
                Some('d') => DatePart::Day,
                other => {
                    return Err(Error::invalid(
                        "columns",
                        format!("date format: unknown directive %{}", other.unwrap_or(' ')),
                    ))
                }
            });
        }
        Ok(DateFormat(parts))
    }
}

enum DateParse {
    Ok(PartialDate),
    Partial(PartialDate),
    Bad,
}

fn take_digits(s: &[u8], pos: &mut usize, max: usize) -> Option<u32> {
    let start = *pos;
    while *pos < s.len() && *pos - start < max && s[*pos].is_ascii_digit() {
        *pos += 1;
    }
    if *pos == start {
        return None;
    }
    std::str::from_utf8(&s[start..*pos]).ok()?.parse().ok()
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn parse_date(v: &str, fmt: Option<&DateFormat>) -> DateParse {
    let (y, m, d) = match fmt {
        None => {
            if let Ok(d) = PartialDate::parse_iso(v) {
                return DateParse::Ok(d);
            }
            // Keep what an ISO-shaped but impossible date still says.
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            if digits.len() != 8 {
                return DateParse::Bad;
            }
            let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
            match (n(0..4), n(4..6), n(6..8)) {
                (Some(y), Some(m), Some(d)) => (y, m, d),
                _ => return DateParse::Bad,
            }
        }
        Some(DateFormat(parts)) => {
            let s = v.as_bytes();
            let mut pos = 0;
            let (mut y, mut m, mut d) = (None, None, None);
            for p in parts {
                match p {
                    DatePart::Year4 => y = take_digits(s, &mut pos, 4),
                    DatePart::Year2 => {
                        y = take_digits(s, &mut pos, 2).map(|yy| {
                            // Two-digit years: a birth year is never in the future.
                            let this = (crate::record::today_days() / 365 + 1970) as u32 % 100;
                            if yy <= this {
                                2000 + yy
                            } else {
                                1900 + yy
                            }
                        })
                    }
                    DatePart::Month => m = take_digits(s, &mut pos, 2),
                    DatePart::Day => d = take_digits(s, &mut pos, 2),
                    DatePart::MonthName => {
                        let rest = v.get(pos..pos + 3).unwrap_or("").to_ascii_lowercase();
                        m = MONTHS.iter().position(|x| *x == rest).map(|i| i as u32 + 1);
                        pos += 3;
                        while pos < s.len() && s[pos].is_ascii_alphabetic() {
                            pos += 1;
                        }
                    }
                    DatePart::Lit(c) => {
                        if v[pos.min(v.len())..].starts_with(*c) {
                            pos += c.len_utf8();
                        } else {
                            return DateParse::Bad;
                        }
                    }
                }
            }
            if pos != s.len() {
                return DateParse::Bad;
            }
            match (y, m, d) {
                (Some(y), Some(m), Some(d)) => (y, m, d),
                (Some(y), Some(m), None) if (1..=12).contains(&m) => {
                    return DateParse::Ok(PartialDate {
                        year: y as u16,
                        month: Some(m as u8),
                        day: None,
                    })
                }
                (Some(y), None, None) => {
                    return DateParse::Ok(PartialDate {
                        year: y as u16,
                        month: None,
                        day: None,
                    })
                }
                _ => return DateParse::Bad,
            }
        }
    };
    if !(1800..=9999).contains(&y) {
        return DateParse::Bad;
    }
    let year = y as u16;
    if let Ok(full) = PartialDate::full(year, m as u8, d as u8) {
        return DateParse::Ok(full);
    }
    if (1..=12).contains(&m) && d > days_in_month(year, m as u8) as u32 {
        return DateParse::Partial(PartialDate {
            year,
            month: Some(m as u8),
            day: None,
        });
    }
    DateParse::Partial(PartialDate {
        year,
        month: None,
        day: None,
    })
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
        assert!(e.contains("unknown field 'nickname'"), "{e}");
        assert!(ColumnMapping::parse("given_name=a,given_name=b").is_err());
        assert!(ColumnMapping::parse("sex=s:%Y").is_err());
        assert!(ColumnMapping::parse("local_id").is_err());
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
    fn missing_header_is_named() {
        let e = read("a,b\n1,2\n", Some("local_id=a,given_name=first"), false).unwrap_err();
        assert!(e.to_string().contains("header 'first'"), "{e}");
    }

    #[test]
    fn messy_values_are_counted_not_fatal() {
        let csv =
            "local_id,birth_date,phone,sex\n1,19560931,12,F\n2,1956-03-14,555-201-7788,Q\n3,,,\n";
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
        let e = read(csv, None, true).unwrap_err().to_string();
        assert!(e.contains("birth_date") && e.contains("row 2"), "{e}");
    }

    #[test]
    fn date_formats() {
        let f = DateFormat::parse("%d/%m/%Y").unwrap();
        assert!(
            matches!(parse_date("14/03/1956", Some(&f)), DateParse::Ok(d) if d.to_string() == "1956-03-14")
        );
        let f = DateFormat::parse("%d-%b-%Y").unwrap();
        assert!(
            matches!(parse_date("14-Mar-1956", Some(&f)), DateParse::Ok(d) if d.to_string() == "1956-03-14")
        );
        let f = DateFormat::parse("%m/%d/%y").unwrap();
        assert!(matches!(parse_date("03/14/56", Some(&f)), DateParse::Ok(d) if d.year == 1956));
        assert!(matches!(parse_date("garbage", None), DateParse::Bad));
        assert!(DateFormat::parse("%Q").is_err());
    }

    #[test]
    fn duplicate_keys_keep_the_later_row() {
        let csv = "source,local_id,given_name\nadt,1,Ann\nadt,1,Anne\n";
        let (recs, sum) = read(csv, None, false).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].given_name.as_deref(), Some("Anne"));
        assert_eq!(sum.duplicate_keys, 1);
    }
}
