//! The domain types: a patient record as a source system holds it.
//!
//! These are the raw, validated values. Canonical forms and derived keys live in
//! [`crate::normalize`]; nothing here knows how records are compared.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// Longest accepted text value of any single field, in bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// Most values accepted in any repeated field (phones, identifiers, previous names, lines).
pub const MAX_REPEATED: usize = 16;
/// Longest accepted `source` or `local_id` of a record key, in bytes.
pub const MAX_KEY_PART_LEN: usize = 128;

/// The identity of a source record: which system holds it and under what local id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    /// The source system, e.g. `st-marys-adt`.
    pub source: String,
    /// The record's id inside that system, e.g. an MRN.
    pub local_id: String,
}

impl RecordKey {
    /// A key from its two parts.
    pub fn new(source: impl Into<String>, local_id: impl Into<String>) -> Self {
        RecordKey {
            source: source.into(),
            local_id: local_id.into(),
        }
    }

    /// Checks both parts with [`check_key_part`] (fields `source` and `local_id`). A key
    /// that passes is safe to show in messages, logs and the audit trail.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the part, never its value.
    pub fn validate(&self) -> Result<()> {
        check_key_part("source", &self.source)?;
        check_key_part("local_id", &self.local_id)
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.local_id)
    }
}

/// Administrative sex as recorded by the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// Not recorded or not known; compares as missing.
    #[default]
    Unknown,
    /// Female.
    Female,
    /// Male.
    Male,
    /// Other.
    Other,
}

impl Sex {
    /// Parses the common spellings (`F`, `female`, `M`, `1`/`2` are *not* guessed).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `sex` for anything else.
    pub fn parse(s: &str) -> Result<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "u" | "unknown" | "unk" => Ok(Sex::Unknown),
            "f" | "female" | "w" => Ok(Sex::Female),
            "m" | "male" => Ok(Sex::Male),
            "o" | "other" | "x" => Ok(Sex::Other),
            _ => Err(Error::invalid(
                "sex",
                "not one of female, male, other, unknown",
            )),
        }
    }

    /// The lowercase name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Unknown => "unknown",
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
        }
    }
}

/// A birth date that may be known only to the month or the year.
///
/// Partials are kept as partials: a record saying "1956" agrees partially with "1956-03-14"
/// instead of being guessed into a full date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartialDate {
    /// Four-digit year.
    pub year: u16,
    /// Month 1-12, if known.
    pub month: Option<u8>,
    /// Day 1-31, if known (only when the month is known).
    pub day: Option<u8>,
}

impl PartialDate {
    /// A full date, checked for calendar validity.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `birth_date` when the month or day is out of range.
    pub fn full(year: u16, month: u8, day: u8) -> Result<Self> {
        let d = PartialDate {
            year,
            month: Some(month),
            day: Some(day),
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks month and day ranges (leap years included).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `birth_date`.
    pub fn validate(&self) -> Result<()> {
        if !(1800..=9999).contains(&self.year) {
            return Err(Error::invalid("birth_date", "year out of range"));
        }
        if let Some(m) = self.month {
            if !(1..=12).contains(&m) {
                return Err(Error::invalid(
                    "birth_date",
                    format!("month {m} out of range"),
                ));
            }
            if let Some(d) = self.day {
                if d == 0 || d > days_in_month(self.year, m) {
                    return Err(Error::invalid(
                        "birth_date",
                        format!("day {d} out of range"),
                    ));
                }
            }
        } else if self.day.is_some() {
            return Err(Error::invalid("birth_date", "day given without month"));
        }
        Ok(())
    }

    /// True when year, month and day are all known.
    pub fn is_full(&self) -> bool {
        self.month.is_some() && self.day.is_some()
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM`, `YYYY`, or `YYYYMMDD`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `birth_date` when the text fits none of these or the
    /// date does not exist.
    pub fn parse_iso(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || Error::invalid("birth_date", "expected YYYY-MM-DD, YYYY-MM or YYYY");
        let num = |t: &str| -> Result<u32> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u32>().map_err(|_| bad())
        };
        let parts: Vec<&str> = if s.len() == 8 && !s.contains('-') {
            vec![&s[0..4], &s[4..6], &s[6..8]]
        } else {
            s.split('-').collect()
        };
        if parts[0].len() != 4 {
            return Err(bad());
        }
        let year = num(parts[0])? as u16;
        let d = match parts.len() {
            1 => PartialDate {
                year,
                month: None,
                day: None,
            },
            2 => PartialDate {
                year,
                month: Some(num(parts[1])? as u8),
                day: None,
            },
            3 => PartialDate {
                year,
                month: Some(num(parts[1])? as u8),
                day: Some(num(parts[2])? as u8),
            },
            _ => return Err(bad()),
        };
        d.validate()?;
        Ok(d)
    }

    /// Days since 1970-01-01 for full dates (proleptic Gregorian), else `None`.
    pub fn days_since_epoch(&self) -> Option<i64> {
        let (m, d) = (self.month?, self.day?);
        Some(days_from_civil(self.year as i64, m as i64, d as i64))
    }
}

impl std::str::FromStr for PartialDate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        PartialDate::parse_iso(s)
    }
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.month, self.day) {
            (Some(m), Some(d)) => write!(f, "{:04}-{:02}-{:02}", self.year, m, d),
            (Some(m), None) => write!(f, "{:04}-{:02}", self.year, m),
            _ => write!(f, "{:04}", self.year),
        }
    }
}

/// Whether `year` is a Gregorian leap year.
pub fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Number of days in a month of a year.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Howard Hinnant's days-from-civil algorithm.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street lines, first line first.
    pub lines: Vec<String>,
    /// City or town.
    pub city: Option<String>,
    /// State, province or region.
    pub state: Option<String>,
    /// Postal or ZIP code.
    pub postal_code: Option<String>,
    /// Country.
    pub country: Option<String>,
}

impl Address {
    /// True when no part of the address is present.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
            && self.city.is_none()
            && self.state.is_none()
            && self.postal_code.is_none()
            && self.country.is_none()
    }
}

/// The identifier system used for national identifiers (e.g. a US SSN).
pub const NATIONAL_ID_SYSTEM: &str = "national_id";

/// An identifier issued by some authority: a national id, another facility's MRN, …
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// The issuing system, e.g. [`NATIONAL_ID_SYSTEM`] or `county-general-mrn`.
    pub system: String,
    /// The value as issued.
    pub value: String,
}

/// One patient record as a source system holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Source system.
    pub source: String,
    /// Id inside the source system.
    pub local_id: String,
    /// First given name.
    pub given_name: Option<String>,
    /// Middle name(s).
    pub middle_name: Option<String>,
    /// Current family name.
    pub family_name: Option<String>,
    /// Earlier family names (maiden name, earlier married names).
    pub previous_family_names: Vec<String>,
    /// Birth date, possibly partial.
    pub birth_date: Option<PartialDate>,
    /// Administrative sex.
    pub sex: Sex,
    /// Postal address.
    pub address: Address,
    /// Phone numbers as given.
    pub phones: Vec<String>,
    /// Email address.
    pub email: Option<String>,
    /// National id and other authorities' identifiers.
    pub identifiers: Vec<Identifier>,
    /// Birth order for twins and multiples (1, 2, …), when recorded.
    pub multiple_birth_order: Option<u8>,
}

impl Record {
    /// A record of source `s`, id `1`, with a given and family name and a full birth date:
    /// the fixture unit tests build their cases from.
    #[cfg(test)]
    pub(crate) fn for_tests(given: &str, family: &str, dob: (u16, u8, u8)) -> Record {
        Record {
            source: "s".into(),
            local_id: "1".into(),
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            birth_date: PartialDate::full(dob.0, dob.1, dob.2).ok(),
            ..Default::default()
        }
    }

    /// The record's `(source, local_id)` key.
    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.source.clone(), self.local_id.clone())
    }

    /// The first identifier of the national-id system, if any.
    pub fn national_id(&self) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|i| i.system == NATIONAL_ID_SYSTEM)
            .map(|i| i.value.as_str())
    }

    /// True when the record carries no demographic value at all.
    pub fn is_empty(&self) -> bool {
        self.given_name.is_none()
            && self.middle_name.is_none()
            && self.family_name.is_none()
            && self.previous_family_names.is_empty()
            && self.birth_date.is_none()
            && self.sex == Sex::Unknown
            && self.address.is_empty()
            && self.phones.is_empty()
            && self.email.is_none()
            && self.identifiers.is_empty()
    }

    /// Checks the record at the edge: key present, sizes within limits, dates possible and
    /// not in the future (`today` given as days since epoch, so tests can fix it).
    ///
    /// Error messages name the field, never its value.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first offending field.
    pub fn validate(&self, today_days: i64) -> Result<()> {
        check_key_part("source", &self.source)?;
        check_key_part("local_id", &self.local_id)?;
        let opt = [
            ("given_name", &self.given_name),
            ("middle_name", &self.middle_name),
            ("family_name", &self.family_name),
            ("email", &self.email),
            ("city", &self.address.city),
            ("state", &self.address.state),
            ("postal_code", &self.address.postal_code),
            ("country", &self.address.country),
        ];
        for (field, v) in opt {
            if let Some(v) = v {
                check_len(field, v)?;
            }
        }
        let reps: [(&str, &Vec<String>); 3] = [
            ("previous_family_name", &self.previous_family_names),
            ("phone", &self.phones),
            ("address_line", &self.address.lines),
        ];
        for (field, vs) in reps {
            if vs.len() > MAX_REPEATED {
                return Err(Error::invalid(
                    field,
                    format!("more than {MAX_REPEATED} values"),
                ));
            }
            for v in vs {
                check_len(field, v)?;
            }
        }
        if self.identifiers.len() > MAX_REPEATED {
            return Err(Error::invalid(
                "identifiers",
                format!("more than {MAX_REPEATED} values"),
            ));
        }
        for id in &self.identifiers {
            check_key_part("identifier.system", &id.system)?;
            check_len("identifier.value", &id.value)?;
            if id.value.trim().is_empty() {
                return Err(Error::invalid("identifier.value", "empty"));
            }
        }
        if let Some(d) = &self.birth_date {
            d.validate()?;
            let first_day = days_from_civil(d.year as i64, d.month.unwrap_or(1) as i64, 1);
            if first_day > today_days {
                return Err(Error::invalid("birth_date", "in the future"));
            }
            if let Some(days) = d.days_since_epoch() {
                if days > today_days {
                    return Err(Error::invalid("birth_date", "in the future"));
                }
            }
        }
        if let Some(o) = self.multiple_birth_order {
            if o == 0 || o > 16 {
                return Err(Error::invalid("multiple_birth_order", "must be 1 to 16"));
            }
        }
        if self.is_empty() {
            return Err(Error::invalid("record", "no demographic field is present"));
        }
        Ok(())
    }

    /// [`Record::validate`] for a record without a key (a query's, as the standards doors
    /// send): every other rule applies.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first offending field.
    pub fn validate_keyless(&self, today_days: i64) -> Result<()> {
        let mut probe = self.clone();
        probe.source = "query".into();
        probe.local_id = "query".into();
        probe.validate(today_days)
    }
}

fn check_len(field: &'static str, v: &str) -> Result<()> {
    if v.len() > MAX_FIELD_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::invalid(field, "contains control characters"));
    }
    Ok(())
}

/// The rule for each part of a record key, at every door (gRPC, CSV): present (not blank),
/// at most [`MAX_KEY_PART_LEN`] bytes, no control characters and no `/` (the separator of
/// `source/local_id`). Check a key with it before it reaches an error message, a log line
/// or the audit trail.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`, never the value.
pub fn check_key_part(field: &'static str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::invalid(field, "missing"));
    }
    if v.len() > MAX_KEY_PART_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_KEY_PART_LEN} bytes"),
        ));
    }
    if v.chars().any(|c| c.is_control() || c == '/') {
        return Err(Error::invalid(field, "contains control characters or '/'"));
    }
    Ok(())
}

/// Today's date as days since 1970-01-01 (UTC).
pub fn today_days() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs / 86_400) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            source: "adt".into(),
            local_id: "1".into(),
            family_name: Some("Garcia".into()),
            ..Default::default()
        }
    }

    #[test]
    fn dates_parse_and_validate() {
        assert_eq!(
            PartialDate::parse_iso("1956-03-14").unwrap().to_string(),
            "1956-03-14"
        );
        assert_eq!(
            PartialDate::parse_iso("19560314").unwrap().to_string(),
            "1956-03-14"
        );
        assert_eq!(
            PartialDate::parse_iso("1956-03").unwrap().to_string(),
            "1956-03"
        );
        assert_eq!(PartialDate::parse_iso("1956").unwrap().to_string(), "1956");
        assert!(PartialDate::parse_iso("1956-09-31").is_err());
        assert!(PartialDate::parse_iso("1956-13-01").is_err());
        assert!(PartialDate::parse_iso("2001-02-29").is_err());
        assert!(PartialDate::parse_iso("2000-02-29").is_ok());
        assert!(PartialDate::parse_iso("56-03-14").is_err());
    }

    #[test]
    fn epoch_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn validation_names_the_field_not_the_value() {
        let today = days_from_civil(2026, 11, 21);
        assert!(rec().validate(today).is_ok());
        let mut r = rec();
        r.local_id = " ".into();
        assert!(r
            .validate(today)
            .unwrap_err()
            .to_string()
            .contains("local_id"));
        let mut r = rec();
        r.birth_date = Some(PartialDate::full(2030, 1, 1).unwrap());
        let e = r.validate(today).unwrap_err().to_string();
        assert!(e.contains("birth_date") && e.contains("future"), "{e}");
        let mut r = rec();
        r.given_name = Some("x".repeat(300));
        let e = r.validate(today).unwrap_err().to_string();
        assert!(e.contains("given_name") && !e.contains("xxx"), "{e}");
        let r = Record {
            source: "a".into(),
            local_id: "b".into(),
            ..Default::default()
        };
        assert!(r.validate(today).is_err());
    }

    #[test]
    fn keyless_records_are_checked_but_for_the_key() {
        let today = days_from_civil(2026, 11, 21);
        let mut r = rec();
        r.source.clear();
        r.local_id.clear();
        assert!(r.validate(today).is_err());
        assert!(r.validate_keyless(today).is_ok());
        r.birth_date = Some(PartialDate::full(2030, 1, 1).unwrap());
        let e = r.validate_keyless(today).unwrap_err().to_string();
        assert!(e.starts_with("birth_date"), "{e}");
        let empty = Record::default();
        assert!(empty
            .validate_keyless(today)
            .unwrap_err()
            .to_string()
            .starts_with("record"));
    }

    #[test]
    fn sex_parsing() {
        assert_eq!(Sex::parse("F").unwrap(), Sex::Female);
        assert_eq!(Sex::parse(" male ").unwrap(), Sex::Male);
        assert_eq!(Sex::parse("").unwrap(), Sex::Unknown);
        assert!(Sex::parse("2").is_err());
    }
}
