//! Results a person reads: the input's own rows with the cluster each record joined, and
//! the review pairs with both records' values side by side.
//!
//! A bulk run keeps only keys and prepared records, so both come from a second pass over
//! the input ([`Rows`]), matching rows to records by key as the first pass did. Unlike
//! the clusters and review CSVs (keys and levels only), these files hold the input's
//! values: they are patient data, as the input is.

use std::io::{BufWriter, Read, Write};

use ahash::AHashMap;

use crate::error::Error;
use crate::input::Rows;
use crate::linker::Linker;
use crate::prepare::Prepared;
use crate::record::{Record, Sex};
use crate::scoring::{weight_to_prob, Comparison};
use crate::Result;

use super::dataset::Keys;
use super::dedup::ReviewPair;
use super::ScoredPair;

/// For each record, the weight of its strongest scored pair inside its cluster: the link
/// that holds it there (`None` for a record alone).
pub fn joining_weights(pairs: &[ScoredPair], ids: &[u32]) -> Vec<Option<f32>> {
    let mut best: Vec<Option<f32>> = vec![None; ids.len()];
    for p in pairs {
        let (a, b) = (p.a as usize, p.b as usize);
        if ids[a] != ids[b] {
            continue;
        }
        for i in [a, b] {
            if best[i].is_none_or(|w| p.weight > w) {
                best[i] = Some(p.weight);
            }
        }
    }
    best
}

/// A read error of the second pass, told as a failure of the write it serves.
fn read_err(e: Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// What [`write_joined`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinedCounts {
    /// Rows written (every row of the input).
    pub rows: u64,
    /// Rows that gave no record (skipped or refused when read): their cluster columns are
    /// empty.
    pub without_record: u64,
}

/// Writes every row of the input with `cluster_id,cluster_size,match_weight` in front of
/// its own columns (comma-separated UTF-8, whatever the input's delimiter and encoding).
/// `match_weight` is [`joining_weights`]' value, empty for a record alone; a row repeating
/// an earlier row's key shows the cluster of the record both rows made.
///
/// # Errors
/// I/O errors, and the errors of [`Rows::next_row`] as I/O errors.
pub fn write_joined<R: Read>(
    rows: &mut Rows<R>,
    out: impl Write,
    keys: &Keys,
    ids: &[u32],
    weights: &[Option<f32>],
) -> std::io::Result<JoinedCounts> {
    let index: AHashMap<(&str, &str), u32> =
        (0..keys.len()).map(|i| (keys.get(i), i as u32)).collect();
    let mut sizes = vec![0u32; ids.len() + 1];
    for &c in ids {
        sizes[c as usize] += 1;
    }
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::with_capacity(1 << 20, out));
    let mut header = vec!["cluster_id", "cluster_size", "match_weight"];
    header.extend(rows.headers().iter().map(String::as_str));
    w.write_record(&header)?;
    let mut counts = JoinedCounts::default();
    let (mut id, mut size, mut weight) = (String::new(), String::new(), String::new());
    while rows.next_row().map_err(read_err)? {
        let found = {
            let (s, l) = rows.key();
            index.get(&(&*s, &*l)).copied()
        };
        id.clear();
        size.clear();
        weight.clear();
        match found {
            Some(i) => {
                use std::fmt::Write as _;
                let c = ids[i as usize];
                // Writing into a String cannot fail.
                let _ = write!(id, "{c}");
                let _ = write!(size, "{}", sizes[c as usize]);
                if let Some(x) = weights[i as usize] {
                    let _ = write!(weight, "{x:.2}");
                }
            }
            None => counts.without_record += 1,
        }
        for f in [&id, &size, &weight] {
            w.write_field(f)?;
        }
        for f in rows.fields() {
            w.write_field(f)?;
        }
        w.write_record(None::<&[u8]>)?;
        counts.rows += 1;
    }
    w.flush()?;
    Ok(counts)
}

/// The records of the review pairs, read again from the input (by record index; a key
/// repeated in the input gives its later row, as the bulk read did).
///
/// # Errors
/// As [`Rows::next_row`].
pub fn review_records<R: Read>(
    rows: &mut Rows<R>,
    keys: &Keys,
    review: &[ReviewPair],
) -> Result<AHashMap<u32, Record>> {
    let wanted: AHashMap<(&str, &str), u32> = review
        .iter()
        .flat_map(|r| [r.pair.a, r.pair.b])
        .map(|i| (keys.get(i as usize), i))
        .collect();
    let mut found = AHashMap::with_capacity(wanted.len());
    while rows.next_row()? {
        let i = {
            let (s, l) = rows.key();
            wanted.get(&(&*s, &*l)).copied()
        };
        if let Some(rec) = i.and_then(|i| rows.record().map(|r| (i, r))) {
            found.insert(rec.0, rec.1);
        }
    }
    Ok(found)
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// What a record holds for a comparison, as the input gave it.
fn compared_value(c: Comparison, r: &Record) -> String {
    match c {
        Comparison::GivenName => text(&r.given_name).to_string(),
        Comparison::MiddleName => text(&r.middle_name).to_string(),
        Comparison::FamilyName => text(&r.family_name).to_string(),
        Comparison::BirthDate => r.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        Comparison::Sex if r.sex == Sex::Unknown => String::new(),
        Comparison::Sex => r.sex.as_str().to_string(),
        Comparison::NationalId => r.national_id().unwrap_or("").to_string(),
        Comparison::Phone => r.phones.join("; "),
        Comparison::Street => r.address.lines.first().cloned().unwrap_or_default(),
        Comparison::Postcode => text(&r.address.postal_code).to_string(),
        Comparison::Email => text(&r.email).to_string(),
    }
}

/// Fields no comparison scores, shown for context (twins differ in birth order; a move
/// shows in the city).
fn context_values(r: &Record) -> [(&'static str, String); 6] {
    [
        ("previous_family_name", r.previous_family_names.join("; ")),
        (
            "address_line2",
            r.address.lines.get(1..).unwrap_or(&[]).join(", "),
        ),
        ("city", text(&r.address.city).to_string()),
        ("state", text(&r.address.state).to_string()),
        ("country", text(&r.address.country).to_string()),
        (
            "birth_order",
            r.multiple_birth_order
                .map(|o| o.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// A value cut to `width` characters (an ellipsis marks the cut).
fn fit(v: &str, width: usize) -> String {
    if v.chars().count() <= width {
        return v.to_string();
    }
    let mut s: String = v.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// One line of a pair's table: the field, both values cut to their column, the level and
/// the weight.
fn row(
    w: &mut impl Write,
    field: &str,
    a: &str,
    b: &str,
    level: &str,
    weight: &str,
) -> std::io::Result<()> {
    const WIDTH: usize = 28;
    let line = format!(
        "  {field:<20} {:<WIDTH$} {:<WIDTH$} {level:<18} {weight:>7}",
        fit(a, WIDTH),
        fit(b, WIDTH)
    );
    writeln!(w, "{}", line.trim_end())
}

/// Writes the review pairs for a person: for each, both records' keys and values side by
/// side, each comparison's level and weight, the prior and the total, and why the pair
/// is not decided automatically, in words. A comparison neither record has a value for
/// is left out.
///
/// # Errors
/// I/O errors.
pub fn write_review_text(
    out: impl Write,
    keys: &Keys,
    records: &AHashMap<u32, Record>,
    prepared: &[Prepared],
    linker: &Linker,
    review: &[ReviewPair],
) -> std::io::Result<()> {
    let t = linker.thresholds();
    let mut w = BufWriter::new(out);
    writeln!(
        w,
        "{} record pairs for a person to decide. Weights are log2 odds that the two records \
         are one person: a pair at {:.2} or more links by itself, below {:.2} it is kept \
         apart.",
        review.len(),
        t.upper,
        t.lower
    )?;
    for (n, r) in review.iter().enumerate() {
        let (a, b) = (r.pair.a, r.pair.b);
        let e = linker.explain(&prepared[a as usize], &prepared[b as usize]);
        let key = |i: u32| {
            let (s, l) = keys.get(i as usize);
            format!("{s}/{l}")
        };
        let (ka, kb) = (key(a), key(b));
        let (ra, rb) = (records.get(&a), records.get(&b));
        writeln!(w)?;
        writeln!(w, "pair {} of {}: {ka} and {kb}", n + 1, review.len())?;
        writeln!(
            w,
            "  weight {:.2}, match probability {:.4}",
            r.pair.weight,
            weight_to_prob(f64::from(r.pair.weight))
        )?;
        let rival = r
            .pair
            .rival
            .map_or(String::new(), |g| format!(" ({})", g.reason()));
        writeln!(w, "  not automatic: {}{rival}", r.kind.reason())?;
        if ra.is_none() || rb.is_none() {
            writeln!(
                w,
                "  (a record of this pair was not found again in the input)"
            )?;
        }
        row(&mut w, "field", &ka, &kb, "level", "weight")?;
        for c in Comparison::ALL {
            let value = |rec: Option<&Record>| rec.map_or(String::new(), |x| compared_value(c, x));
            let (va, vb) = (value(ra), value(rb));
            let (level, weight) = e
                .comparisons
                .get(c.index())
                .map_or(("", 0.0), |o| (o.level.as_str(), o.weight));
            if level == "missing" && va.is_empty() && vb.is_empty() {
                continue;
            }
            let weight = if level == "missing" {
                String::new()
            } else {
                format!("{weight:+.2}")
            };
            row(&mut w, c.name(), &va, &vb, level, &weight)?;
        }
        let none = || context_values(&Record::default());
        let (ca, cb) = (
            ra.map_or_else(none, context_values),
            rb.map_or_else(none, context_values),
        );
        for ((field, va), (_, vb)) in ca.iter().zip(&cb) {
            if !va.is_empty() || !vb.is_empty() {
                row(&mut w, field, va, vb, "(not compared)", "")?;
            }
        }
        row(
            &mut w,
            "prior",
            "",
            "",
            "",
            &format!("{:+.2}", e.prior_weight),
        )?;
        row(&mut w, "total", "", "", "", &format!("{:+.2}", e.weight))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: u32, b: u32, weight: f32) -> ScoredPair {
        ScoredPair::new(a, b, weight)
    }

    #[test]
    fn joining_weight_is_the_best_pair_inside_the_cluster() {
        let ids = [1, 1, 1, 2, 3];
        let pairs = [p(0, 1, 9.0), p(1, 2, 12.0), p(2, 3, 5.0), p(0, 2, 3.0)];
        assert_eq!(
            joining_weights(&pairs, &ids),
            [Some(9.0), Some(12.0), Some(12.0), None, None]
        );
    }

    #[test]
    fn values_are_cut_to_the_column() {
        assert_eq!(fit("Okonkwo", 10), "Okonkwo");
        assert_eq!(fit("Wolfeschlegelsteinhausen", 8), "Wolfesc…");
    }
}
