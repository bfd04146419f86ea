//! Birth dates as files write them: a format given with the mapping (`%m/%d/%Y` or
//! `MM/DD/YYYY`), or one detected from the column's values, and the parser that keeps
//! what an impossible date still says.

use std::fmt;

use crate::error::{Error, Result};
use crate::record::{days_in_month, PartialDate};

/// A date format: `%Y` 4-digit year, `%y` 2-digit year, `%m`/`%d` 1–2 digit month/day,
/// `%b` English month abbreviation, anything else literal. The same can be written with
/// letters: `YYYY`, `YY`, `MM` (or `M`), `DD` (or `D`), `MMM` (or `MON`) for the month
/// name, any case; other characters are literal. Leading and trailing spaces are ignored.
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
    /// Parses a format string in either grammar of the type's docs.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `columns` for an unknown `%` directive or letter, or a
    /// format without a year.
    pub fn parse(f: &str) -> Result<DateFormat> {
        let f = f.trim();
        let parts = if f.contains('%') {
            Self::parse_percent(f)?
        } else {
            Self::parse_letters(f)?
        };
        if !parts
            .iter()
            .any(|p| matches!(p, DatePart::Year4 | DatePart::Year2))
        {
            return Err(Error::invalid(
                "columns",
                format!("date format '{f}' has no year: use %Y or YYYY (e.g. %m/%d/%Y)"),
            ));
        }
        Ok(DateFormat(parts))
    }

    fn parse_percent(f: &str) -> Result<Vec<DatePart>> {
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
                        format!(
                            "date format: unknown directive %{} (known: %Y %y %m %d %b)",
                            other.unwrap_or(' ')
                        ),
                    ))
                }
            });
        }
        Ok(parts)
    }

    fn parse_letters(f: &str) -> Result<Vec<DatePart>> {
        let chars: Vec<char> = f.chars().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i].to_ascii_uppercase();
            let run = chars[i..]
                .iter()
                .take_while(|x| x.to_ascii_uppercase() == c)
                .count();
            let upper: String = chars[i..].iter().take(3).collect::<String>().to_uppercase();
            let (part, len) = match (c, run) {
                ('Y', 4) => (DatePart::Year4, 4),
                ('Y', 2) => (DatePart::Year2, 2),
                ('M', 3) => (DatePart::MonthName, 3),
                ('M', 1 | 2) if upper == "MON" => (DatePart::MonthName, 3),
                ('M', 1 | 2) => (DatePart::Month, run),
                ('D', 1 | 2) => (DatePart::Day, run),
                (c, _) if c.is_ascii_alphabetic() => {
                    return Err(Error::invalid(
                        "columns",
                        format!(
                            "date format '{f}': use YYYY, YY, MM, DD and MMM (or %Y %y %m %d %b)"
                        ),
                    ))
                }
                _ => (DatePart::Lit(chars[i]), 1),
            };
            parts.push(part);
            i += len;
        }
        Ok(parts)
    }
}

impl fmt::Display for DateFormat {
    /// The `%` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match p {
                DatePart::Year4 => f.write_str("%Y")?,
                DatePart::Year2 => f.write_str("%y")?,
                DatePart::Month => f.write_str("%m")?,
                DatePart::MonthName => f.write_str("%b")?,
                DatePart::Day => f.write_str("%d")?,
                DatePart::Lit(c) => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// How a format is named when none was given: the ISO forms the reader accepts by
/// default.
pub(crate) const ISO_NAME: &str = "ISO (YYYY-MM-DD, YYYYMMDD, YYYY-MM or YYYY)";

/// A format's name in messages.
pub(crate) fn format_name(f: Option<&DateFormat>) -> String {
    f.map_or_else(|| ISO_NAME.to_string(), ToString::to_string)
}

pub(crate) enum DateParse {
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

/// Parses a date in `fmt` (`None`: the ISO forms), keeping the valid part of an
/// impossible one.
pub(crate) fn parse_date(v: &str, fmt: Option<&DateFormat>) -> DateParse {
    let (y, m, d) = match fmt {
        None => {
            if let Ok(d) = PartialDate::parse_iso(v) {
                return DateParse::Ok(d);
            }
            // Keep what an ISO-shaped but impossible date still says.
            let digits = v.bytes().filter(u8::is_ascii_digit).count();
            if digits != 8 {
                return DateParse::Bad;
            }
            let mut d = v
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| u32::from(b - b'0'));
            let mut n = |k: usize| (&mut d).take(k).fold(0, |acc, x| acc * 10 + x);
            (n(4), n(2), n(2))
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

/// Formats tried when a date column has none, in order of preference: a tie (every day
/// 12 or less, so day and month cannot be told apart) goes to the earlier.
const CANDIDATES: [&str; 11] = [
    "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%m-%d-%Y", "%d-%m-%Y", "%d-%b-%Y", "%d %b %Y",
    "%m/%d/%y", "%d/%m/%y", "%Y.%m.%d",
];

/// Most values of a column looked at to choose its format.
pub(crate) const DETECT_SAMPLE: usize = 2_000;

/// The format chosen for a date column without one.
#[derive(Debug, Clone)]
pub(crate) struct Detected {
    /// The best format (`None`: the ISO forms).
    pub format: Option<DateFormat>,
    /// Sampled values it reads as valid dates.
    pub fits: u64,
    /// Values sampled.
    pub sampled: u64,
    /// Another format that reads as many (day and month cannot be told apart).
    pub also: Option<DateFormat>,
}

/// Chooses the format that reads the most of `values` as valid dates (the ISO forms
/// first, then [`CANDIDATES`]).
pub(crate) fn detect<'a>(values: impl Iterator<Item = &'a str>) -> Detected {
    let values: Vec<&str> = values.take(DETECT_SAMPLE).collect();
    let fits = |f: Option<&DateFormat>| {
        values
            .iter()
            .filter(|v| matches!(parse_date(v, f), DateParse::Ok(_)))
            .count() as u64
    };
    let mut best = Detected {
        format: None,
        fits: fits(None),
        sampled: values.len() as u64,
        also: None,
    };
    for c in CANDIDATES {
        // The candidates are well-formed (a unit test parses each).
        let Ok(f) = DateFormat::parse(c) else {
            continue;
        };
        let n = fits(Some(&f));
        if n > best.fits {
            best = Detected {
                format: Some(f),
                fits: n,
                also: None,
                ..best
            };
        } else if n == best.fits && n > 0 && best.also.is_none() && best.format.is_some() {
            best.also = Some(f);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str, f: &str) -> Option<String> {
        match parse_date(v, Some(&DateFormat::parse(f).unwrap())) {
            DateParse::Ok(d) => Some(d.to_string()),
            _ => None,
        }
    }

    #[test]
    fn date_formats() {
        assert_eq!(ok("14/03/1956", "%d/%m/%Y").as_deref(), Some("1956-03-14"));
        assert_eq!(ok("14-Mar-1956", "%d-%b-%Y").as_deref(), Some("1956-03-14"));
        assert_eq!(ok("03/14/56", "%m/%d/%y").as_deref(), Some("1956-03-14"));
        assert!(matches!(parse_date("garbage", None), DateParse::Bad));
        assert!(DateFormat::parse("%Q").is_err());
    }

    #[test]
    fn letter_formats_and_spaces_mean_the_same() {
        for f in ["MM/DD/YYYY", " %m/%d/%Y", "mm/dd/yyyy", "M/D/YYYY"] {
            assert_eq!(DateFormat::parse(f).unwrap().to_string(), "%m/%d/%Y", "{f}");
        }
        assert_eq!(
            DateFormat::parse("DD-MON-YY").unwrap().to_string(),
            "%d-%b-%y"
        );
        assert_eq!(DateFormat::parse("YYYYMMDD").unwrap().to_string(), "%Y%m%d");
        let e = DateFormat::parse("dd/mm").unwrap_err().to_string();
        assert!(e.contains("no year"), "{e}");
        assert!(DateFormat::parse("QQ/YYYY").is_err());
    }

    #[test]
    fn impossible_iso_dates_keep_the_valid_part() {
        assert!(
            matches!(parse_date("19560931", None), DateParse::Partial(d) if d.to_string() == "1956-09")
        );
        assert!(matches!(parse_date("07/02/1961", None), DateParse::Bad));
    }

    #[test]
    fn detection_prefers_the_format_that_reads_most_values() {
        let us = ["07/02/1961", "12/31/1980", "01/15/1990"];
        let d = detect(us.iter().copied());
        assert_eq!(d.format.unwrap().to_string(), "%m/%d/%Y");
        assert_eq!((d.fits, d.sampled, d.also.is_none()), (3, 3, true));
        let eu = ["31.12.1980", "15.01.1990"];
        assert_eq!(
            detect(eu.iter().copied()).format.unwrap().to_string(),
            "%d.%m.%Y"
        );
        // Every day 12 or less: both orders read all; the US order wins and the other is
        // named.
        let d = detect(["07/02/1961", "01/12/1990"].iter().copied());
        assert_eq!(d.format.unwrap().to_string(), "%m/%d/%Y");
        assert_eq!(d.also.unwrap().to_string(), "%d/%m/%Y");
        let iso = detect(["1961-07-02", "19900115"].iter().copied());
        assert!(iso.format.is_none() && iso.fits == 2);
        for c in CANDIDATES {
            assert_eq!(DateFormat::parse(c).unwrap().to_string(), c);
        }
    }
}
