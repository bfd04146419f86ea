//! The shipped default model: m/u chosen by reasoning, so empi works before any training.
//!
//! # Reasoning
//! - **u** (chance agreement between two different people) comes from how values are
//!   distributed in a population: birth dates spread over ~80 years give
//!   u(exact) ≈ 1/(80·365) ≈ 3.4e-5; a random surname pair agrees with probability
//!   Σ tf² ≈ 0.3–0.5% for US-census-like surnames, given names ≈ 1–2% within a sex;
//!   national ids are near-unique (u ≈ 2e-6).
//! - **Household fields** (phone, street, postcode) take their chance agreement between
//!   two random people: a street line (number and street) is shared by about one random
//!   pair in 10,000, a postcode by one in 500, a phone number by one in 100,000. That they
//!   are also shared by a patient's relatives is not this table's business: relatives are
//!   rival hypotheses of their own ([`super::rivals`]), against which these fields weigh
//!   nothing.
//! - **m** (agreement for the same person) comes from published error rates of
//!   registration data: a few percent typos per name field, ~1% day/month swaps and
//!   digit slips, ~10–20% moves or phone changes between encounters, and married-name
//!   changes for a few percent of family names, and administrative sex recorded wrongly
//!   for about one record in 200. Values replaced outright (another given
//!   name, a re-keyed birth date, another id) are rarer but not rare: 6% of given and
//!   family names, 3% of birth dates and national ids fall to `else`, so that one wrong
//!   field costs a few bits rather than the whole link.
//! - **λ** = 1e-5 (one pair in 100,000 is a match: a person has ~2 records in a
//!   population of ~100k–1M), giving a prior weight of ≈ −16.6. The service scores
//!   with it; batch runs count their input's own λ
//!   ([`crate::scoring::estimate::estimate_prior`]).
//! - **thresholds**: upper = 8 (probability ≈ 0.996) links; lower = 0 (probability 0.5)
//!   reviews; calibrated with `empi eval` on the standard generated set (BENCHMARKS.md).
//!
//! Term-frequency tables for names come from the 1990 US census frequency lists shipped
//! under `synthetic-data/census/` (public domain); postcodes have none by default.

use super::{
    Comparison, ComparisonParams, LevelParams, Model, TermFrequencies, TfTable, Thresholds,
    MODEL_FORMAT_VERSION,
};
use crate::census;
use crate::normalize::{self, Placeholders};

/// `(m, u)` per level, in the order of [`Comparison::levels`].
fn params(c: Comparison) -> &'static [(f64, f64)] {
    match c {
        // exact, swapped, nickname, jw .92, jw .88, phonetic, initial, else
        Comparison::GivenName => &[
            (0.80, 0.012),
            (0.005, 0.00005),
            (0.04, 0.002),
            (0.06, 0.002),
            (0.015, 0.004),
            (0.01, 0.01),
            (0.005, 0.02),
            (0.065, 0.95),
        ],
        // exact, middle initial, else
        Comparison::MiddleName => &[(0.75, 0.02), (0.2, 0.06), (0.05, 0.92)],
        // exact, previous name, swapped, shared word, jw .92, jw .88, phonetic, else
        Comparison::FamilyName => &[
            (0.80, 0.004),
            (0.03, 0.0001),
            (0.005, 0.00005),
            (0.02, 0.0005),
            (0.06, 0.002),
            (0.015, 0.004),
            (0.01, 0.008),
            (0.06, 0.98),
        ],
        // exact, day/month swapped, one digit off, ±1 month, ±1 year, partial, else
        Comparison::BirthDate => &[
            (0.89, 0.00004),
            (0.01, 0.00004),
            (0.03, 0.0006),
            (0.005, 0.0008),
            (0.005, 0.0008),
            (0.03, 0.012),
            (0.03, 0.985),
        ],
        // agree, else
        Comparison::Sex => &[(0.995, 0.5), (0.005, 0.5)],
        // exact, one substitution, transposition, else
        Comparison::NationalId => &[
            (0.94, 0.000002),
            (0.02, 0.00002),
            (0.01, 0.000002),
            (0.03, 0.999),
        ],
        // exact, one digit off, else
        Comparison::Phone => &[(0.8, 0.00001), (0.02, 0.0001), (0.18, 0.99989)],
        // exact, jw .90, else
        Comparison::Street => &[(0.75, 0.0001), (0.1, 0.0005), (0.15, 0.9994)],
        // exact, first three, else
        Comparison::Postcode => &[(0.82, 0.002), (0.06, 0.02), (0.12, 0.978)],
        // exact, else
        Comparison::Email => &[(0.85, 0.001), (0.15, 0.999)],
    }
}

/// A census `dist.*` list as a frequency table of folded names, dividing percentages by
/// `100 · share` (given names are per sex: share 2).
fn census_table(text: &str, share: f32) -> Vec<(String, f32)> {
    census::rows(text)
        .map(|row| (normalize::fold(row.name), row.percent / (100.0 * share)))
        .collect()
}

pub(super) fn build() -> Model {
    let comparisons = Comparison::ALL
        .iter()
        .map(|&c| ComparisonParams {
            comparison: c,
            levels: c
                .levels()
                .iter()
                .zip(params(c))
                .map(|(name, &(m, u))| LevelParams {
                    name: name.to_string(),
                    m,
                    u,
                    fixed_m: false,
                    fixed_u: false,
                })
                .collect(),
        })
        .collect();
    let mut given = census_table(census::FEMALE, 2.0);
    for (name, f) in census_table(census::MALE, 2.0) {
        given.push((name, f));
    }
    given.sort_by(|a, b| a.0.cmp(&b.0));
    // Names on both lists (e.g. "jean"): add the two shares.
    let mut merged: Vec<(String, f32)> = Vec::with_capacity(given.len());
    for (name, f) in given {
        match merged.last_mut() {
            Some(last) if last.0 == name => last.1 += f,
            _ => merged.push((name, f)),
        }
    }
    // The census lists cover ~90% of people; names off the list are rarer than the rarest
    // listed one, which has ~1e-5 (surnames) or ~5e-6 (given names).
    Model {
        format_version: MODEL_FORMAT_VERSION,
        id: "default-2".into(),
        description: "empi shipped default: m/u by reasoning (see src/scoring/default_model.rs)"
            .into(),
        prior: 1e-5,
        comparisons,
        thresholds: Thresholds {
            upper: 8.0,
            lower: 0.0,
        },
        tf: TermFrequencies {
            given_name: Some(TfTable::from_frequencies(merged, 5e-6)),
            family_name: Some(TfTable::from_frequencies(
                census_table(census::LAST, 1.0),
                5e-6,
            )),
            postcode: None,
            floor: 1e-5,
        },
        placeholders: Placeholders::default(),
        rivals: super::Rivals::default(),
        training: None,
    }
}
