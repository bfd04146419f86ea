//! Birth-date agreement levels, from exact through the common keying slips to partial.
//!
//! Works on [`PartialDate`] digit by digit without allocating.

use crate::record::PartialDate;

/// How two birth dates agree, best first. A comparison takes the first level that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateAgreement {
    /// Both full and equal.
    Exact,
    /// Both full, same year, day and month swapped (03-12 vs 12-03).
    DayMonthSwapped,
    /// Both full; the `YYYYMMDD` forms differ by one digit or one swap of adjacent digits.
    OneDigitOff,
    /// Both full, same day, months one apart (December and the next January included).
    OneMonthOff,
    /// Both full, same month and day, years one apart.
    OneYearOff,
    /// At least one side partial, and they agree on every part both know.
    Partial,
    /// None of the above.
    Disagree,
}

/// Compares two birth dates; symmetric (`compare_dates(a, b) == compare_dates(b, a)`).
///
/// The near-miss levels (swapped, one digit, one month, one year) apply only when both dates
/// are full: a partial date has too little left to tell a slip from a different person.
/// Calendar validity is the edge's business; any values are accepted without panicking.
pub fn compare_dates(a: &PartialDate, b: &PartialDate) -> DateAgreement {
    match (full(a), full(b)) {
        (Some((ya, ma, da)), Some((yb, mb, db))) => {
            if (ya, ma, da) == (yb, mb, db) {
                DateAgreement::Exact
            } else if ya == yb && da == mb && ma == db && da != ma {
                DateAgreement::DayMonthSwapped
            } else if one_digit_off(&digits(ya, ma, da), &digits(yb, mb, db)) {
                DateAgreement::OneDigitOff
            } else if da == db && months_apart_by_one(ya, ma, yb, mb) {
                DateAgreement::OneMonthOff
            } else if ma == mb && da == db && ya.abs_diff(yb) == 1 {
                DateAgreement::OneYearOff
            } else {
                DateAgreement::Disagree
            }
        }
        _ => {
            let agree = a.year == b.year
                && known_parts_agree(a.month, b.month)
                && known_parts_agree(a.day, b.day);
            if agree {
                DateAgreement::Partial
            } else {
                DateAgreement::Disagree
            }
        }
    }
}

/// `(year, month, day)` when the date is full.
fn full(d: &PartialDate) -> Option<(u16, u8, u8)> {
    Some((d.year, d.month?, d.day?))
}

/// Equal when both are known; anything goes when either is unknown.
fn known_parts_agree(a: Option<u8>, b: Option<u8>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// Whether month `(ya, ma)` and month `(yb, mb)` are consecutive calendar months.
fn months_apart_by_one(ya: u16, ma: u8, yb: u16, mb: u8) -> bool {
    let index = |y: u16, m: u8| i32::from(y) * 12 + i32::from(m);
    (index(ya, ma) - index(yb, mb)).abs() == 1
}

/// The `YYYYMMDD` digits (out-of-range parts are reduced so this never panics).
fn digits(y: u16, m: u8, d: u8) -> [u8; 8] {
    let y = y % 10_000;
    [
        (y / 1000) as u8,
        (y / 100 % 10) as u8,
        (y / 10 % 10) as u8,
        (y % 10) as u8,
        m / 10 % 10,
        m % 10,
        d / 10 % 10,
        d % 10,
    ]
}

/// Exactly one substituted digit, or exactly one swap of two different adjacent digits.
fn one_digit_off(a: &[u8; 8], b: &[u8; 8]) -> bool {
    let mut first = None;
    let mut count = 0;
    for i in 0..8 {
        if a[i] != b[i] {
            count += 1;
            if count > 2 {
                return false;
            }
            first.get_or_insert(i);
        }
    }
    match (count, first) {
        (1, _) => true,
        (2, Some(i)) => i + 1 < 8 && a[i] == b[i + 1] && a[i + 1] == b[i],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::DateAgreement::*;
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> PartialDate {
        PartialDate::parse_iso(s).unwrap()
    }

    fn cmp(a: &str, b: &str) -> DateAgreement {
        let (a, b) = (d(a), d(b));
        let level = compare_dates(&a, &b);
        assert_eq!(level, compare_dates(&b, &a), "not symmetric");
        level
    }

    #[test]
    fn exact() {
        assert_eq!(cmp("1956-03-14", "1956-03-14"), Exact);
        assert_eq!(cmp("2000-02-29", "2000-02-29"), Exact);
    }

    #[test]
    fn day_month_swapped() {
        assert_eq!(cmp("1956-03-12", "1956-12-03"), DayMonthSwapped);
        assert_eq!(cmp("1990-01-10", "1990-10-01"), DayMonthSwapped);
        // A different year as well is too much.
        assert_eq!(cmp("1956-03-12", "1957-12-03"), Disagree);
        // 1990-01-02 vs 1990-02-01 is a swap, not a one-digit slip.
        assert_eq!(cmp("1990-01-02", "1990-02-01"), DayMonthSwapped);
    }

    #[test]
    fn one_digit_off_covers_substitution_and_adjacent_transposition() {
        assert_eq!(cmp("1956-03-14", "1956-03-15"), OneDigitOff);
        assert_eq!(cmp("1956-03-14", "1966-03-14"), OneDigitOff);
        assert_eq!(cmp("1956-03-14", "1956-03-11"), OneDigitOff);
        // Transposed adjacent digits in the year.
        assert_eq!(cmp("1956-03-14", "1965-03-14"), OneDigitOff);
        // 12 -> 21 in the day.
        assert_eq!(cmp("1980-05-12", "1980-05-21"), OneDigitOff);
        // Leap day slipped to the 28th, or to January.
        assert_eq!(cmp("2000-02-29", "2000-02-28"), OneDigitOff);
        assert_eq!(cmp("2000-02-29", "2000-01-29"), OneDigitOff);
        // Two separate substitutions.
        assert_eq!(cmp("1956-03-14", "1957-03-15"), Disagree);
        // Two swapped digits that are not adjacent.
        assert_eq!(cmp("1956-03-14", "1956-04-13"), Disagree);
    }

    #[test]
    fn one_month_off() {
        assert_eq!(cmp("1990-09-15", "1990-10-15"), OneMonthOff);
        assert_eq!(cmp("1989-12-15", "1990-01-15"), OneMonthOff);
        // A one-digit month change is a digit slip first.
        assert_eq!(cmp("1990-03-15", "1990-04-15"), OneDigitOff);
        // December and January of the same year are eleven months apart.
        assert_eq!(cmp("1990-12-15", "1990-01-15"), Disagree);
        // Around the leap day.
        assert_eq!(cmp("2004-02-29", "2004-03-29"), OneDigitOff);
        assert_eq!(cmp("2000-09-30", "2000-11-30"), Disagree);
    }

    #[test]
    fn one_year_off() {
        assert_eq!(cmp("1989-06-15", "1990-06-15"), OneYearOff);
        assert_eq!(cmp("1999-06-15", "2000-06-15"), OneYearOff);
        // A one-digit year change is a digit slip first.
        assert_eq!(cmp("1990-06-15", "1991-06-15"), OneDigitOff);
        assert_eq!(cmp("1989-06-15", "1991-06-15"), Disagree);
        // Leap days are four years apart at least: a digit slip or nothing.
        assert_eq!(cmp("2000-02-29", "2004-02-29"), OneDigitOff);
        assert_eq!(cmp("1996-02-29", "2000-02-29"), Disagree);
    }

    #[test]
    fn partial() {
        assert_eq!(cmp("1956", "1956-03-14"), Partial);
        assert_eq!(cmp("1956-03", "1956-03-14"), Partial);
        assert_eq!(cmp("1956", "1956-03"), Partial);
        assert_eq!(cmp("1956", "1956"), Partial);
        assert_eq!(cmp("2000-02", "2000-02-29"), Partial);
        assert_eq!(cmp("1956-04", "1956-03-14"), Disagree);
        assert_eq!(cmp("1957", "1956-03-14"), Disagree);
        // Near-miss levels need two full dates.
        assert_eq!(cmp("1957-03", "1956-03-14"), Disagree);
        assert_eq!(cmp("1956-03", "1956-04"), Disagree);
    }

    #[test]
    fn out_of_range_values_do_not_panic() {
        let weird = PartialDate {
            year: 65_535,
            month: Some(255),
            day: Some(255),
        };
        let ok = d("1956-03-14");
        assert_eq!(compare_dates(&weird, &ok), Disagree);
        assert_eq!(compare_dates(&weird, &weird), Exact);
    }

    fn any_date() -> impl Strategy<Value = PartialDate> {
        (
            1890u16..2030,
            proptest::option::weighted(0.9, 1u8..=12),
            1u8..=31,
        )
            .prop_map(|(year, month, day)| {
                let day = month.map(|m| day.min(crate::record::days_in_month(year, m)));
                PartialDate {
                    year,
                    month,
                    day: day.filter(|_| year % 7 != 0),
                }
            })
    }

    /// Dates near `base`, so the near-miss levels actually get exercised.
    fn near(base: PartialDate) -> impl Strategy<Value = PartialDate> {
        (0u16..3, 0u8..3, 0u8..3).prop_map(move |(dy, dm, dd)| {
            let year = base.year + dy;
            let month = base.month.map(|m| (m + dm - 1) % 12 + 1);
            let day = base.day.map(|x| (x + dd).min(31));
            PartialDate { year, month, day }
        })
    }

    proptest! {
        #[test]
        fn compare_dates_is_symmetric(a in any_date(), b in any_date()) {
            prop_assert_eq!(compare_dates(&a, &b), compare_dates(&b, &a));
        }

        #[test]
        fn compare_dates_is_symmetric_near(
            (a, b) in any_date().prop_flat_map(|a| (Just(a), near(a)))
        ) {
            prop_assert_eq!(compare_dates(&a, &b), compare_dates(&b, &a));
            prop_assert_eq!(compare_dates(&a, &a) == Exact, a.is_full());
        }
    }
}
