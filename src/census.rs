//! The 1990 US census name-frequency lists shipped under `synthetic-data/census/` and the
//! one parser of their `dist.*` format, shared by the default model's term-frequency
//! tables and the synthetic-data generator.

/// Surnames (`dist.all.last`).
pub(crate) const LAST: &str = include_str!("../synthetic-data/census/dist.all.last");
/// Female given names (`dist.female.first`).
pub(crate) const FEMALE: &str = include_str!("../synthetic-data/census/dist.female.first");
/// Male given names (`dist.male.first`).
pub(crate) const MALE: &str = include_str!("../synthetic-data/census/dist.male.first");

/// One line of a `dist.*` list: `NAME  freq%  cum%  rank`, frequencies printed with three
/// decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CensusRow<'a> {
    /// The name as printed (upper-case ASCII, no punctuation).
    pub(crate) name: &'a str,
    /// Frequency in percent, parsed as `f32` (the form term-frequency tables use).
    pub(crate) percent: f32,
    /// Frequency in thousandths of a percent, exact (the form samplers use).
    pub(crate) freq_milli: u32,
    /// Cumulative frequency in thousandths of a percent, exact.
    pub(crate) cum_milli: u32,
}

/// The rows of a `dist.*` list in file (rank) order. A line without a name, a frequency
/// and a cumulative frequency in that form is skipped; the shipped lists have none.
pub(crate) fn rows(text: &str) -> impl Iterator<Item = CensusRow<'_>> {
    text.lines().filter_map(|line| {
        let mut cols = line.split_ascii_whitespace();
        let (name, freq, cum) = (cols.next()?, cols.next()?, cols.next()?);
        Some(CensusRow {
            name,
            percent: freq.parse().ok()?,
            freq_milli: thousandths(freq)?,
            cum_milli: thousandths(cum)?,
        })
    })
}

/// `"d.ddd"` → thousandths (`"1.006"` → 1006, `"12"` → 12000); `None` for anything else,
/// including more than three decimals, which thousandths cannot hold exactly.
fn thousandths(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !(frac.is_empty() || digits(frac)) || frac.len() > 3 {
        return None;
    }
    let mut v: u32 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    for _ in frac.len()..3 {
        v = v.checked_mul(10)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_shipped_lists_is_a_row() {
        for (text, n) in [(LAST, 88_799), (FEMALE, 4_275), (MALE, 1_219)] {
            assert_eq!(text.lines().count(), n);
            assert_eq!(rows(text).count(), n);
        }
    }

    #[test]
    fn rows_carry_both_forms_of_the_frequency() {
        let smith = rows(LAST).next().unwrap();
        assert_eq!(smith.name, "SMITH");
        assert_eq!(smith.percent, 1.006);
        assert_eq!(smith.freq_milli, 1_006);
        assert_eq!(smith.cum_milli, 1_006);
        let last = rows(LAST).last().unwrap();
        assert_eq!(last.freq_milli, 0);
        assert_eq!(last.cum_milli, 90_483);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "SMITH 1.006 1.006 1\n\nJONES x 1.627 2\nBROWN 0.621\nDAVIS 0.480 2.107 4\n";
        let names: Vec<&str> = rows(text).map(|r| r.name).collect();
        assert_eq!(names, ["SMITH", "DAVIS"]);
    }

    #[test]
    fn thousandths_parse() {
        assert_eq!(thousandths("1.006"), Some(1006));
        assert_eq!(thousandths("90.483"), Some(90_483));
        assert_eq!(thousandths("0.000"), Some(0));
        assert_eq!(thousandths("1.5"), Some(1500));
        assert_eq!(thousandths("12"), Some(12_000));
        for bad in ["x", "", ".5", "1.0005", "-1.000", "1.2.3", "99999999.000"] {
            assert_eq!(thousandths(bad), None, "{bad}");
        }
    }
}
