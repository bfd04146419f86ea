//! The rival hypotheses: besides a stranger, the relatives who share a patient's household.
//!
//! Fellegi–Sunter weighs *the same person* against *two random people*. A household breaks
//! that: twins share family name, address, phone and birth date; siblings, parents and
//! children, and spouses share all but the birth date. Against a stranger those agreements
//! are overwhelming; against a relative they are no evidence at all. So a pair is weighed
//! against three hypotheses (in the spirit of the household classes of Larsen & Rubin,
//! 2001, *Iterative automated record linkage using mixture models*, JASA 96:32–41):
//!
//! - **stranger** (U): the classic `u` of every comparison;
//! - **twin** (T): a co-twin: household fields and birth date agree as for the same person,
//!   given names differ but are often alike (Ava/Eva), sex agrees about 60% of the time,
//!   national ids differ;
//! - **relative** (R): a sibling, parent or child (Jr/Sr), or spouse: household fields agree
//!   as for the same person, birth date, sex and middle name as for a stranger, given names
//!   rarely equal (a namesake), national ids differ.
//!
//! For each rival `H` the weight of evidence for the same person is
//! `S_H = log2(λ_M / λ_H) + Σ_c log2(m_c(l) / p_H,c(l))`, where a comparison the rival
//! shares with the same person ([`Basis::SamePerson`]) contributes 0 and one it shares with
//! a stranger ([`Basis::Stranger`]) contributes its ordinary weight (term frequency
//! included). The decision weight is the posterior log-odds against all three at once,
//!
//! `W = −log2(2^−S_U + 2^−S_T + 2^−S_R)`,
//!
//! which is within one bit of the smallest of the three: a contradiction (given names that
//! differ, another national id) costs a link only while it leaves a relative possible. An
//! exact national id, say, is as unlikely for a sibling as for a stranger, so with it a
//! replaced given name is a registration error, not a sibling; without it, two records of
//! one household and birth date whose given names differ are twins until a person says
//! otherwise.
//!
//! **Alike names.** Parents often give twins alike names, and a typo makes one too; the two
//! differ in what the spellings are. A twin's name is a name people have; a typo is a string
//! almost nobody has. When the given names fall into an alike level (Jaro–Winkler or
//! phonetic) and the rarer spelling occurs at most [`Spelling::rare_below`] times as often
//! as an unseen value of the term-frequency table, the rivals' weights take
//! `log2(p_same / p_rival)` with the shares of such rare spellings among same-person and
//! relative pairs ([`Spelling`]); otherwise `log2((1 − p_same) / (1 − p_rival))`.
//!
//! A differing multiple-birth order needs no weighing: both records say they are different
//! children of one birth ([`super::Rival::BirthOrderDiffers`]).
//!
//! **A known twin.** A record that gives a multiple-birth order says its person has a
//! co-twin in the household; the twin is then as likely a priori as the same person
//! (ratio 1, [`KNOWN_TWIN_PRIOR`]) rather than the population's share. That holds for a
//! pair with such a record on one side, and for every record of a person (or cluster) any
//! of whose records gives an order: the service weighs a query so against a candidate
//! person ([`crate::linker::Linker::decide`]), batch runs weigh again the links inside such
//! a cluster ([`crate::batch::twins`]). Two records giving the same order keep the
//! population's share: they say they are the same child.
//!
//! # Defaults
//! The shipped values come from reasoning, and `empi train` (and every batch run, on its
//! input) replaces the two ratios, and the share of rare spellings among rivals' alike
//! names, with what it finds in the site's own records ([`super::estimate::rivals`]; a
//! file in which twins are not evident gets none):
//! - twins: about 3% of births are twins (US vital statistics, 2019–2023); a twin pair
//!   gives about four record pairs where a person gives about one, so twin pairs are about
//!   `0.015 × 4 ≈ 0.06` of same-person pairs in a population with twins among its children;
//!   the default takes half that, 0.03, for populations of all ages;
//! - relatives: households average about 2.5 persons, so each person has 1.5 household
//!   relatives and some 3 relative record pairs per same-person pair; the default is 2;
//! - twin given names: alike (a Jaro–Winkler or phonetic level) for 16% of twin pairs:
//!   Plank (1964, *Names of twins*) found most twin pairs sharing an initial and a sixth
//!   alike in sound or rhyme, and only some of those are close in spelling; a relative's
//!   given name equals the person's 0.5% of the time (Jr/Sr namesakes); twins agree on
//!   sex 60% of the time (a third of twins are identical, half of the rest same-sex); a relative's national id is the person's
//!   1e-4 of the time (a guarantor's id copied into a child's record);
//! - spelling: the rarer of two alike given names is a rare spelling (seen at most twice)
//!   for 70% of same-person pairs (a typo) and 15% of rivals' pairs (a name people have,
//!   now and then spelled their own way). Measured with the truth on both families, the
//!   same-person share is 0.77 (standard set and foreign-20k alike); the rivals' share is
//!   learned where at least [`crate::scoring::estimate::rivals::MIN_SPELLING_PAIRS`]
//!   alike rival pairs support it (0.073–0.080 on standard 100k sets, whose true share is
//!   0.066).
//!   The same-person share is not learned: among pairs sharing a family name the fit
//!   gives 0.93 on foreign-20k, whose true share there is 0.78 (strangers with alike
//!   common names take the common-spelling matches), and a share that high makes every
//!   common alike spelling a rival.
//!
//! # Why this design, and the figures that chose it
//! The vetoes it replaces (one field disagreeing capped a pair at review or made it a new
//! person) failed both ways: on data corrupted the way public benchmarks corrupt records
//! (`../shared/eval/foreign-20k`, 20,000 records) they kept apart pairs with 20–29 bits of
//! evidence, recall 0.807 and F1 0.893 with the default model (0.895 trained); on our own
//! standard set with alike-named twins they linked the twins (precision 0.9976,
//! false-merge 0.094%). A three-class mixture weighs the same evidence instead, and its
//! two extra parameters (how common twins and relatives are) are what `empi train` and the
//! batch commands find in the data, so a file without households pays nothing for them.
//! Measured with `empi eval` at upper 8 (BENCHMARKS.md has the commands; batch runs also
//! count the prior λ of their input, which moves no rival decision):
//!
//! | data | model | precision | recall | F1 | review | relatives merged |
//! |---|---|---:|---:|---:|---:|---:|
//! | foreign-20k | default | 1.00000 | 0.99204 | 0.99600 | 0.16% | – |
//! | foreign-20k | trained | 1.00000 | 0.99342 | 0.99670 | 0.08% | – |
//! | standard 100k | default | 1.00000 | 0.98202 | 0.99093 | 1.66% | none |
//! | standard 100k | trained | 1.00000 | 0.98049 | 0.99015 | 1.29% | none |
//!
//! Before the known-twin rule, the standard set merged 40 twin record pairs with the
//! default model (20 trained): newborn placeholders ("Baby Boy") attached to a named twin,
//! and co-twins with alike names (Crystal/Crysta, Larry/Lawrence of triplets) whose
//! other records gave the birth order. Names written in each other's fields with a slip
//! in one (`Dixon, Jeffery` against `Jeff Dixon`) read as two different given names, which
//! a twin explains, until the scorer read them crosswise, and an exact swap weighed only
//! tenfold against a twin; with both weighed as the names in place (below), and typos on
//! a short name's first letters (Darl/Karl) read as alike, the standard set's recall rose
//! from 0.97953 to 0.98202 (trained 0.97859 to 0.98049) with no relative merged. What is
//! left is honest doubt: a typo'd given name in a household with a twin born the same day
//! (Marhta beside a twin Mary: the model says one such pair in about twenty is the twin,
//! and the data agrees), and a record without a birth date whose given name a namesake
//! relative (Jr/Sr) shares. Linking those would merge relatives.
//!
//! **Swapped names.** A relative's records are swapped as often as the person's, so names
//! equal crosswise (the `swapped` level) weigh against a rival as equal names do (its
//! `exact` level), and names read crosswise ([`super::Scorer`]) as the same names in
//! place: the cost of the swap falls on the stranger alone. The `swapped` entry of a
//! rival's given-name levels is therefore not read; the scorer and the rival fit
//! ([`super::estimate::rivals`]) both take it as `p(exact) · m(swapped) / m(exact)`.

use serde::{Deserialize, Serialize};

use super::comparisons::GIVEN_SWAPPED;
use super::{Comparison, MAX_LEVELS, N_COMPARISONS};
use crate::error::{Error, Result};

/// How a rival hypothesis distributes a comparison's levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// As for the same person (`m`): the comparison is no evidence against this rival.
    SamePerson,
    /// As for two random people (`u`): the comparison weighs as against a stranger.
    Stranger,
    /// Its own probability per level, in the order of [`Comparison::levels`].
    Levels(Vec<f64>),
}

/// One rival hypothesis: how common it is and how its pairs agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RivalParams {
    /// Pairs of this kind per same-person pair among all record pairs (λ_H / λ_M).
    pub ratio: f64,
    /// How each comparison's levels fall for such pairs; a comparison left out is
    /// [`Basis::Stranger`].
    pub comparisons: Vec<(Comparison, Basis)>,
}

impl RivalParams {
    /// The basis of one comparison.
    pub fn basis(&self, c: Comparison) -> &Basis {
        self.comparisons
            .iter()
            .find(|(x, _)| *x == c)
            .map_or(&Basis::Stranger, |(_, b)| b)
    }
}

/// Alike given names: how often the rarer spelling is a rare one (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spelling {
    /// A spelling is rare when its term frequency is at most this many times the table's
    /// frequency of an unseen value (counted from data: seen at most this many times).
    pub rare_below: f64,
    /// Share of same-person pairs at an alike level whose rarer spelling is rare.
    pub rare_if_same_person: f64,
    /// Share of twin and relative pairs at an alike level whose rarer spelling is rare.
    pub rare_if_rival: f64,
}

/// The rival hypotheses of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rivals {
    /// A co-twin.
    pub twin: RivalParams,
    /// A relative sharing the household.
    pub relative: RivalParams,
    /// Alike given names.
    pub spelling: Spelling,
}

/// `log2(λ_M / λ_T)` when one record of the pair gives a multiple-birth order and the other
/// does not: that person surely has a co-twin in the household, whose records are about as
/// many as the person's own (twins are by far the most common multiple birth), so the twin
/// is as likely a priori as the same person: ratio 1, not the population's share.
pub const KNOWN_TWIN_PRIOR: f64 = 0.0;

/// Comparisons a household shares whoever its members are.
const HOUSEHOLD_SHARED: [Comparison; 4] = [
    Comparison::FamilyName,
    Comparison::Phone,
    Comparison::Street,
    Comparison::Postcode,
];

/// A national id of someone else in the household: equal only when one was copied.
const OTHER_ID: [f64; 4] = [1e-4, 1e-5, 1e-5, 1.0 - 1.2e-4];
/// An email of someone else in the household: a shared family address now and then.
const OTHER_EMAIL: [f64; 2] = [0.02, 0.98];

impl Default for Rivals {
    fn default() -> Self {
        let shared = HOUSEHOLD_SHARED.map(|c| (c, Basis::SamePerson));
        let twin = RivalParams {
            ratio: 0.03,
            comparisons: shared
                .iter()
                .cloned()
                .chain([
                    (Comparison::BirthDate, Basis::SamePerson),
                    // exact, swapped, nickname, jw .92, jw .88, phonetic, initial, else
                    (
                        Comparison::GivenName,
                        Basis::Levels(vec![0.002, 0.0005, 0.005, 0.08, 0.05, 0.03, 0.01, 0.8225]),
                    ),
                    (Comparison::Sex, Basis::Levels(vec![0.6, 0.4])),
                    (Comparison::NationalId, Basis::Levels(OTHER_ID.to_vec())),
                    (Comparison::Email, Basis::Levels(OTHER_EMAIL.to_vec())),
                ])
                .collect(),
        };
        let relative = RivalParams {
            ratio: 2.0,
            comparisons: shared
                .iter()
                .cloned()
                .chain([
                    (
                        Comparison::GivenName,
                        Basis::Levels(vec![
                            0.005, 0.0005, 0.004, 0.002, 0.002, 0.006, 0.01, 0.9705,
                        ]),
                    ),
                    (Comparison::NationalId, Basis::Levels(OTHER_ID.to_vec())),
                    (Comparison::Email, Basis::Levels(OTHER_EMAIL.to_vec())),
                ])
                .collect(),
        };
        Rivals {
            twin,
            relative,
            spelling: Spelling {
                rare_below: 2.5,
                rare_if_same_person: 0.7,
                rare_if_rival: 0.15,
            },
        }
    }
}

impl Rivals {
    /// Checks ratios, level counts and probabilities.
    ///
    /// # Errors
    /// [`Error::Model`] naming the first problem.
    pub fn validate(&self) -> Result<()> {
        for (name, r) in [("twin", &self.twin), ("relative", &self.relative)] {
            if !(r.ratio.is_finite() && r.ratio > 0.0) {
                return Err(Error::Model(format!(
                    "rivals.{name}.ratio must be a positive number"
                )));
            }
            for (c, basis) in &r.comparisons {
                if let Basis::Levels(p) = basis {
                    if p.len() != c.levels().len() || p.iter().any(|&x| !(x > 0.0 && x <= 1.0)) {
                        return Err(Error::Model(format!(
                            "rivals.{name}.{}: need {} probabilities in (0, 1]",
                            c.name(),
                            c.levels().len()
                        )));
                    }
                }
            }
        }
        let s = &self.spelling;
        let prob = |x: f64| x > 0.0 && x < 1.0;
        if !(s.rare_below.is_finite()
            && s.rare_below >= 0.0
            && prob(s.rare_if_same_person)
            && prob(s.rare_if_rival))
        {
            return Err(Error::Model(
                "rivals.spelling: rare_below >= 0 and shares strictly between 0 and 1".into(),
            ));
        }
        Ok(())
    }
}

/// How [`super::Scorer`] weighs one comparison against one rival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Compiled {
    /// No evidence against the rival (weight 0).
    Shared,
    /// The comparison's own weight against a stranger.
    AsStranger,
    /// `log2(m / p)` per level, in a table of the rival.
    Own,
}

/// A rival compiled for scoring.
#[derive(Debug, Clone)]
pub(super) struct RivalTable {
    /// `log2(λ_M / λ_H)`.
    pub(super) prior: f64,
    /// Per comparison, how it weighs.
    pub(super) kind: [Compiled; N_COMPARISONS],
    /// Per comparison and level, `log2(m / p_H)` where `kind` is [`Compiled::Own`].
    pub(super) weights: [[f64; MAX_LEVELS]; N_COMPARISONS],
}

impl RivalTable {
    /// Compiles a rival against the model's `m` (per comparison, per level).
    pub(super) fn new(r: &RivalParams, m: &[[f64; MAX_LEVELS]; N_COMPARISONS]) -> RivalTable {
        let mut kind = [Compiled::AsStranger; N_COMPARISONS];
        let mut weights = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        for c in Comparison::ALL {
            let ci = c.index();
            kind[ci] = match r.basis(c) {
                Basis::SamePerson => Compiled::Shared,
                Basis::Stranger => Compiled::AsStranger,
                Basis::Levels(p) => {
                    for (l, &pl) in p.iter().enumerate() {
                        weights[ci][l] = (m[ci][l] / pl).log2();
                    }
                    if c == Comparison::GivenName {
                        // Names equal crosswise weigh against a rival as equal names do:
                        // the rival's records are swapped as often as the person's.
                        weights[ci][GIVEN_SWAPPED as usize] = weights[ci][0];
                    }
                    Compiled::Own
                }
            };
        }
        RivalTable {
            prior: -r.ratio.log2(),
            kind,
            weights,
        }
    }
}

/// The weight of the alike-spelling evidence against the rivals: `(rare, common)`.
pub(super) fn spelling_weights(s: &Spelling) -> (f64, f64) {
    (
        (s.rare_if_same_person / s.rare_if_rival).log2(),
        ((1.0 - s.rare_if_same_person) / (1.0 - s.rare_if_rival)).log2(),
    )
}

/// `−log2(Σ 2^−s)`: the posterior log-odds of the same person against several hypotheses,
/// each given as the log-odds against it alone.
pub fn combine(weights: &[f64]) -> f64 {
    let lo = weights.iter().copied().fold(f64::INFINITY, f64::min);
    if !lo.is_finite() {
        return lo;
    }
    let sum: f64 = weights.iter().map(|&s| (lo - s).exp2()).sum();
    lo - sum.log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_is_the_posterior_against_all() {
        assert!((combine(&[10.0]) - 10.0).abs() < 1e-12);
        // Two equal hypotheses halve the odds: one bit less.
        assert!((combine(&[10.0, 10.0]) - 9.0).abs() < 1e-12);
        // A much weaker rival costs almost nothing; a stronger one decides.
        assert!((combine(&[10.0, 40.0]) - 10.0).abs() < 1e-6);
        assert!((combine(&[40.0, 3.0]) - 3.0).abs() < 1e-6);
        assert_eq!(combine(&[f64::INFINITY, 5.0]), 5.0);
    }

    #[test]
    fn defaults_validate_and_sum_to_one() {
        let r = Rivals::default();
        r.validate().unwrap();
        for rival in [&r.twin, &r.relative] {
            for (c, b) in &rival.comparisons {
                if let Basis::Levels(p) = b {
                    let sum: f64 = p.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-9, "{} sums to {sum}", c.name());
                }
            }
        }
        let mut bad = r.clone();
        bad.twin.ratio = 0.0;
        assert!(bad.validate().is_err());
        let mut bad = r;
        bad.relative.comparisons[0] = (Comparison::Sex, Basis::Levels(vec![0.5]));
        assert!(bad.validate().is_err());
    }
}
