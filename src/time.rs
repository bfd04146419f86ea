//! RFC 3339 timestamps (UTC) for the audit trail, credentials and training metadata,
//! without a date-time dependency: civil-date conversion after Howard Hinnant's
//! `days_from_civil`.

use crate::error::{Error, Result};

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, into milliseconds since
/// the epoch.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field` when the text is not such a timestamp.
pub fn parse_rfc3339(field: &'static str, s: &str) -> Result<i64> {
    let bad = || Error::invalid(field, "expected an RFC 3339 time like 2026-01-31T08:00:00Z");
    let num = |t: &str| -> Result<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (num(y)?, num(m)?, num(d)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if let Some(t) = time {
        let (clock, offset_min) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, off) = t.split_at(i);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
            (c, sign * (num(oh)? * 60 + num(om)?))
        } else {
            return Err(bad());
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (clock, None),
        };
        let f: Vec<&str> = hms.split(':').collect();
        let [h, mi, sec] = f.as_slice() else {
            return Err(bad());
        };
        let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let milli = match frac {
            Some(f) => {
                let digits: String = f.chars().chain("000".chars()).take(3).collect();
                num(&digits)?
            }
            None => 0,
        };
        ms += ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + milli;
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            parse_rfc3339("t", "2000-02-29T00:00:00.123Z").ok(),
            Some(951_782_400_123)
        );
        assert_eq!(parse_rfc3339("t", "2000-02-29").ok(), Some(951_782_400_000));
        assert_eq!(
            parse_rfc3339("t", "2000-02-29T02:00:00+02:00").ok(),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2000-13-01",
            "yesterday",
            "2000-01-01T10:00",
            "2000-01-01T25:00:00Z",
        ] {
            assert!(parse_rfc3339("since", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_over_a_range() {
        let mut ms = -86_400_000 * 800;
        while ms < 4_102_444_800_000 {
            assert_eq!(parse_rfc3339("t", &format_rfc3339(ms)).ok(), Some(ms));
            ms += 7_919_999_999;
        }
    }
}
