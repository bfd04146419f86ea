//! Term-frequency tables: how common each value of a field is.
//!
//! Agreeing on a rare surname is stronger evidence than agreeing on "smith"; the exact
//! level's weight is adjusted by `log2(Σtf² / tf(value))` (see [`super`]).

use std::collections::BTreeMap;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

/// Relative frequencies of the values of one field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "TfTableFile", into = "TfTableFile")]
pub struct TfTable {
    freq: AHashMap<Box<str>, f32>,
    /// Frequency assumed for a value absent from the table.
    pub unseen: f32,
    /// Chance that two random values agree, `Σ tf²`: the reference an adjustment is
    /// measured against (derived, not stored).
    collision: f64,
}

impl TfTable {
    /// Builds a table by counting values; unseen values get the frequency of a singleton.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> TfTable {
        let mut counts: AHashMap<Box<str>, u32> = AHashMap::new();
        let mut total = 0u64;
        for v in values {
            total += 1;
            *counts.entry(v.into()).or_default() += 1;
        }
        let total = total.max(1) as f64;
        let freq: AHashMap<Box<str>, f32> = counts
            .into_iter()
            .map(|(k, c)| (k, (c as f64 / total) as f32))
            .collect();
        TfTable::with_freq(freq, (1.0 / total) as f32)
    }

    /// A table from explicit `(value, relative frequency)` pairs.
    pub fn from_frequencies(pairs: impl IntoIterator<Item = (String, f32)>, unseen: f32) -> Self {
        TfTable::with_freq(
            pairs
                .into_iter()
                .map(|(k, f)| (k.into_boxed_str(), f))
                .collect(),
            unseen,
        )
    }

    fn with_freq(freq: AHashMap<Box<str>, f32>, unseen: f32) -> Self {
        let collision = freq.values().map(|&f| (f as f64) * (f as f64)).sum::<f64>();
        TfTable {
            freq,
            unseen,
            collision,
        }
    }

    /// `Σ tf²`: how often two random values agree.
    pub fn collision(&self) -> f64 {
        self.collision
    }

    /// The relative frequency of a (normalised) value.
    pub fn get(&self, value: &str) -> f32 {
        self.freq.get(value).copied().unwrap_or(self.unseen)
    }

    /// Number of distinct values in the table.
    pub fn len(&self) -> usize {
        self.freq.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.freq.is_empty()
    }
}

impl PartialEq for TfTable {
    fn eq(&self, other: &Self) -> bool {
        self.freq == other.freq && self.unseen == other.unseen
    }
}

/// The on-disk form: a sorted map, so model files are stable and diffable.
#[derive(Serialize, Deserialize)]
struct TfTableFile {
    unseen: f32,
    values: BTreeMap<String, f32>,
}

impl From<TfTableFile> for TfTable {
    fn from(f: TfTableFile) -> Self {
        TfTable::from_frequencies(f.values, f.unseen)
    }
}

impl From<TfTable> for TfTableFile {
    fn from(t: TfTable) -> Self {
        TfTableFile {
            unseen: t.unseen,
            values: t
                .freq
                .into_iter()
                .map(|(k, v)| (k.into_string(), v))
                .collect(),
        }
    }
}

/// Term-frequency tables for the fields that take an adjustment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TermFrequencies {
    /// Given names (folded).
    pub given_name: Option<TfTable>,
    /// Family names (folded).
    pub family_name: Option<TfTable>,
    /// Postcodes (canonical).
    pub postcode: Option<TfTable>,
    /// Smallest frequency used in an adjustment, so one rare value cannot dominate.
    pub floor: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_round_trips() {
        let t = TfTable::from_values(["smith", "smith", "smith", "zywicki"]);
        assert_eq!(t.get("smith"), 0.75);
        assert_eq!(t.get("zywicki"), 0.25);
        assert_eq!(t.get("nobody"), 0.25);
        assert!((t.collision() - (0.75f64 * 0.75 + 0.25 * 0.25)).abs() < 1e-6);
        let json = serde_json::to_string(&t).unwrap();
        let back: TfTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
