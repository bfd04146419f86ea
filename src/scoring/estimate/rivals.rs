//! How common the rival hypotheses are in the site's own records: the share of twins and
//! of household relatives among pairs sharing a family name, relative to the share of
//! same-person pairs.
//!
//! The pairs are those of [`super::TrainingRule::Family`]. Each distinct agreement pattern
//! has a likelihood under each class: same person (`m`), stranger (`u`), twin and relative
//! (their [`Basis`] per comparison, built from `m`, `u` and the model's own levels). The
//! four mixing weights are fitted by EM (the likelihood of a mixture with fixed components
//! is concave in its weights, so EM reaches the maximum). Family name is left out: every pair
//! agrees on it, so it cannot tell the classes apart. Selection on it is the same for the
//! same person, twins and relatives (all share the household name as the same person
//! does), so the fitted ratios `π_T / π_M` and `π_R / π_M` estimate the population's
//! `λ_T / λ_M` and `λ_R / λ_M`, as the scorer weighs them: under the model's own levels,
//! so the posterior the scorer computes is the one that fits the pairs best.
//!
//! A site without households (or whose records carry no household fields) finds ratios
//! near zero, and the rivals then cost its links nothing; [`RATIO_FLOOR`] keeps them finite.
//!
//! **Are there twins at all?** A twin is told from the same person by a given name and a
//! national id that differ while household and birth date agree. The same person shows
//! that pattern too, whenever a registration replaced both fields, and how often it does
//! is the site's: with `m` fixed at the model's levels, a site whose records replace more
//! names and ids than the model expects reads the surplus as twins. On
//! `../shared/eval/foreign-20k` (no twins; given names replaced in 13.6% of true pairs
//! against the default model's 6.5%) the default model's fit found 0.006 twin pairs per
//! same-person pair, and a refit of a model trained there found 2.4e-4 on all its family
//! pairs; either holds back true pairs as possible twins. So whether the site has twins
//! is asked first of a mixture whose same person learns its own levels of the
//! comparisons in [`LEARNED_SAME_LEVELS`] (expected counts, with the model's levels as a
//! prior worth [`SAME_LEVELS_PRIOR`] pairs): it is fitted with and without the twin class,
//! and twins are kept only when they add at least [`TWIN_EVIDENCE`] to twice the
//! log-likelihood (a likelihood-ratio test at p ≤ 0.001). Measured: 0.0–0.1 on
//! foreign-20k and 0.0–2.6 on two generated outside-profile sets (no twins); 720 on the
//! committed 10k standard set and 815–6,200 on standard 100k sets; a prior worth 10 or
//! 500 pairs instead of 50 moves none of them across the bound. Without twins the
//! ratios are fitted with the twin class left out; with them, under the model's levels as
//! above. With `m` fixed the statistic does not separate the families (34–124 on
//! foreign-20k, 213–261 on the outside-profile sets against 460–2,700 on the standard
//! set), and taking the ratio from the flexible mixture as well was measured and dropped:
//! it is nearer the truth on the standard set (0.0279 against a true 0.0282, where the
//! model's levels give 0.020) but the scorer weighs it with the model's `m`, and the
//! committed 10k standard set fell from F1 0.990 to 0.984. Learning sex, middle name and
//! email as well was dropped too (the trained model on the standard set fell from F1
//! 0.989 to 0.985).
//!
//! **Spelling.** Where the given names fall into an alike level, each pair also says
//! whether the rarer spelling is rare in the data ([`Spell`], as the scorer decides it with
//! a data term-frequency table: seen at most [`Spelling::rare_below`] times). The shares of
//! rare spellings among same-person pairs (typos), among twin and relative pairs (names
//! people have) and among strangers are fitted in the same EM, so a site learns how much a
//! rare spelling says in its own records rather than taking the shipped guess. A share is
//! reported only when its class holds at least [`MIN_SPELLING_PAIRS`] expected alike pairs.

use serde::Serialize;

use super::em::Probs;
use super::rules::{counted_pairs, pattern_of, TrainingRule};
use crate::prepare::Prepared;
use crate::scoring::comparisons::GIVEN_SWAPPED;
use crate::scoring::{
    rare_spelling_cutoff, Basis, Comparison, Pattern, RivalParams, Rivals, Spelling, TfTable,
    ALIKE_GIVEN_LEVELS, MAX_LEVELS, MISSING, N_COMPARISONS,
};

/// Smallest ratio a fit reports: a rival this rare changes no decision.
pub const RATIO_FLOOR: f64 = 1e-6;
/// Fewer pairs than this and the fit is not made (the model's ratios stay).
pub const MIN_PAIRS: u64 = 1_000;
/// Fewer expected alike pairs in a class than this and its spelling share is not reported.
pub const MIN_SPELLING_PAIRS: f64 = 300.0;
/// Comparisons whose same-person levels the twin test learns from the pairs (where neither
/// rival shares them with the same person): the two a twin is told by.
pub const LEARNED_SAME_LEVELS: [Comparison; 2] = [Comparison::GivenName, Comparison::NationalId];
/// Weight of the model's same-person levels, in pairs, where the twin test learns them.
pub const SAME_LEVELS_PRIOR: f64 = 50.0;
/// Smallest likelihood-ratio statistic (twice the log-likelihood the twin class adds) for
/// which the fit keeps twins: the χ² critical value with one degree of freedom at
/// p = 0.001 (a share tested at its boundary of 0 halves that p).
pub const TWIN_EVIDENCE: f64 = 10.83;
/// Whether a likelihood-ratio statistic of the twin class ([`RivalFit::twin_evidence`])
/// keeps twins: at least [`TWIN_EVIDENCE`].
pub fn twins_evident(statistic: f64) -> bool {
    statistic >= TWIN_EVIDENCE
}

/// Below this share of same-person pairs among the pairs sharing a family name, a fit's
/// summary gives the shares themselves rather than ratios per same-person pair.
const FEW_SAME_PERSON: f64 = 1e-4;

/// Bounds of a fitted spelling share (a share of 0 or 1 would make one spelling a proof).
const SPELLING_BOUNDS: (f64, f64) = (0.02, 0.98);

/// Whether a pair's given names are alike and, if so, whether the rarer spelling is rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spell {
    /// Not at an alike level (or a name missing): the spelling is not weighed.
    NotWeighed,
    /// Alike, and the rarer spelling is rare.
    Rare,
    /// Alike, and both spellings are common.
    Common,
}

/// Pairs sharing a family name counted by agreement pattern and [`Spell`]. Rarity is the
/// scorer's: a spelling is rare when its frequency in `given_tf` (the table the model will
/// score with) is at most [`rare_spelling_cutoff`]; without a table no spelling is weighed,
/// as the scorer weighs none.
pub fn family_pairs(
    prepared: &[Prepared],
    given_tf: Option<&TfTable>,
    spelling: &Spelling,
    seed: u64,
    max_pairs: u64,
    progress: &crate::progress::Bar,
) -> Vec<((Pattern, Spell), u64)> {
    let cutoff = given_tf.map(|t| (t, rare_spelling_cutoff(t, spelling)));
    counted_pairs(
        prepared,
        TrainingRule::Family,
        seed,
        max_pairs,
        progress,
        |a, b| {
            let pat = pattern_of(a, b);
            let alike = ALIKE_GIVEN_LEVELS.contains(&pat[Comparison::GivenName.index()]);
            let spell = match (cutoff, &a.given, &b.given) {
                (Some((t, cut)), Some(x), Some(y)) if alike => {
                    if t.get(&x.text).min(t.get(&y.text)) <= cut {
                        Spell::Rare
                    } else {
                        Spell::Common
                    }
                }
                _ => Spell::NotWeighed,
            };
            (pat, spell)
        },
    )
    .keys
}

/// What the fit found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RivalFit {
    /// Pairs sharing a family name that were used.
    pub pairs: u64,
    /// Distinct agreement patterns among them.
    pub patterns: u64,
    /// Fitted shares of same person, stranger, twin and relative among the pairs.
    pub shares: [f64; 4],
    /// Twin pairs per same-person pair.
    pub twin_ratio: f64,
    /// Relative pairs per same-person pair.
    pub relative_ratio: f64,
    /// Share of rare spellings among twin and relative pairs at an alike level, when
    /// enough such pairs were seen.
    pub rare_if_rival: Option<f64>,
    /// Expected pairs at an alike given-name level among same-person pairs and among
    /// twin and relative pairs: the support of the two spelling shares.
    pub alike_pairs: [f64; 2],
    /// Twice the log-likelihood the twin class adds (the likelihood-ratio statistic of
    /// "no twins"); below [`TWIN_EVIDENCE`] the fit without twins is taken.
    pub twin_evidence: f64,
    /// EM iterations run.
    pub iterations: u32,
    /// Whether the weights stopped moving before the iteration limit.
    pub converged: bool,
}

impl RivalFit {
    /// One line for people: whether twins are evident, and the shares found.
    pub fn summary(&self) -> String {
        let spelling = self
            .rare_if_rival
            .map(|x| format!("; rivals' alike names a rare spelling {x:.3} of the time"))
            .unwrap_or_default();
        if self.shares[0] < FEW_SAME_PERSON {
            // Per same-person pair the shares are then huge and say nothing to a reader.
            return format!(
                "almost none of the pairs sharing a family name are one person (a share of \
                 {:.1e}; twins {:.3}, relatives {:.3}, strangers {:.3}), so household pairs are \
                 held back as possible relatives{spelling}",
                self.shares[0], self.shares[2], self.shares[3], self.shares[1]
            );
        }
        if !twins_evident(self.twin_evidence) {
            format!(
                "twins not evident (likelihood-ratio statistic {:.1}, kept at {TWIN_EVIDENCE}); \
                 {:.4} relative pairs per same-person pair{spelling}",
                self.twin_evidence, self.relative_ratio
            )
        } else {
            format!(
                "twins evident (likelihood-ratio statistic {:.1}): {:.4} twin and {:.4} \
                 relative pairs per same-person pair{spelling}",
                self.twin_evidence, self.twin_ratio, self.relative_ratio
            )
        }
    }

    /// Puts what was found into `rivals` (what was not found stays).
    pub fn apply(&self, rivals: &mut Rivals) {
        rivals.twin.ratio = self.twin_ratio;
        rivals.relative.ratio = self.relative_ratio;
        if let Some(x) = self.rare_if_rival {
            rivals.spelling.rare_if_rival = x;
        }
    }
}

/// `P(level | rival)` of comparison `c` at level `l`, as the scorer weighs it: names equal
/// crosswise (the given name's `swapped`) are as likely for a rival as equal names are,
/// times the share of swapped records, `p(exact) · m(swapped) / m(exact)`.
fn rival_prob(r: &RivalParams, m: &Probs, u: &Probs, c: Comparison, l: usize) -> f64 {
    match r.basis(c) {
        Basis::SamePerson => m[c.index()][l],
        Basis::Stranger => u[c.index()][l],
        Basis::Levels(p) if c == Comparison::GivenName && l == GIVEN_SWAPPED as usize => {
            let m = &m[c.index()];
            p[0] * m[l] / m[0].max(f64::MIN_POSITIVE)
        }
        Basis::Levels(p) => p[l],
    }
}

/// Fits the mixing weights (and the spelling shares) over `patterns` ((pattern, spell),
/// count) and returns the ratios, or `None` with too few pairs.
pub fn fit(
    patterns: &[((Pattern, Spell), u64)],
    m: &Probs,
    u: &Probs,
    rivals: &Rivals,
    max_iterations: u32,
    tolerance: f64,
) -> Option<RivalFit> {
    let pairs: u64 = patterns.iter().map(|(_, n)| n).sum();
    if pairs < MIN_PAIRS {
        return None;
    }
    // Are there twins? Asked of the mixture whose same person learns its own levels, so
    // that replacements the model does not expect are not taken for twins.
    let no_twins = [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0];
    let flexible = Mixture::new(patterns, m, u, rivals, true);
    let twin_evidence = (2.0
        * (flexible
            .em([0.25; 4], max_iterations, tolerance)
            .log_likelihood
            - flexible
                .em(no_twins, max_iterations, tolerance)
                .log_likelihood))
        .max(0.0);
    // How many, for the scorer: under the model's own levels.
    let scorer = Mixture::new(patterns, m, u, rivals, false);
    let chosen = scorer.em(
        if twins_evident(twin_evidence) {
            [0.25; 4]
        } else {
            no_twins
        },
        max_iterations,
        tolerance,
    );
    let shares = chosen.shares;
    let same = shares[0].max(f64::MIN_POSITIVE);
    let rare_if_rival = (chosen.alike[2] >= MIN_SPELLING_PAIRS).then_some(chosen.rare[2]);
    Some(RivalFit {
        pairs,
        patterns: patterns.len() as u64,
        shares,
        twin_ratio: (shares[2] / same).max(RATIO_FLOOR),
        relative_ratio: (shares[3] / same).max(RATIO_FLOOR),
        rare_if_rival,
        alike_pairs: [chosen.alike[0], chosen.alike[2]],
        twin_evidence,
        iterations: chosen.iterations,
        converged: chosen.converged,
    })
}

/// The four-class mixture over counted patterns, its fixed parts computed once.
struct Mixture<'a> {
    patterns: &'a [((Pattern, Spell), u64)],
    pairs: f64,
    /// The model's same-person levels (the prior of the free ones).
    m: &'a Probs,
    /// Comparisons whose same-person levels the fit learns.
    free: Vec<Comparison>,
    /// Per pattern, the log-likelihood of each class over the comparisons not free.
    fixed: Vec<[f64; 4]>,
    spelling: Spelling,
}

/// What one EM run found.
struct Em {
    shares: [f64; 4],
    rare: [f64; 3],
    alike: [f64; 3],
    log_likelihood: f64,
    iterations: u32,
    converged: bool,
}

impl<'a> Mixture<'a> {
    fn new(
        patterns: &'a [((Pattern, Spell), u64)],
        m: &'a Probs,
        u: &Probs,
        rivals: &Rivals,
        learn_same_levels: bool,
    ) -> Self {
        let free: Vec<Comparison> = LEARNED_SAME_LEVELS
            .iter()
            .copied()
            .filter(|&c| {
                learn_same_levels
                    && ![&rivals.twin, &rivals.relative]
                        .iter()
                        .any(|r| matches!(r.basis(c), Basis::SamePerson))
            })
            .collect();
        let fixed = patterns
            .iter()
            .map(|((p, _), _)| {
                let mut log = [0.0f64; 4];
                for c in Comparison::ALL {
                    let l = p[c.index()];
                    if c == Comparison::FamilyName || l == MISSING {
                        continue;
                    }
                    let l = l as usize;
                    let probs = [
                        if free.contains(&c) {
                            1.0
                        } else {
                            m[c.index()][l]
                        },
                        u[c.index()][l],
                        rival_prob(&rivals.twin, m, u, c, l),
                        rival_prob(&rivals.relative, m, u, c, l),
                    ];
                    for (k, q) in probs.iter().enumerate() {
                        log[k] += q.max(1e-300).ln();
                    }
                }
                log
            })
            .collect();
        Mixture {
            patterns,
            pairs: patterns.iter().map(|(_, n)| *n as f64).sum(),
            m,
            free,
            fixed,
            spelling: rivals.spelling,
        }
    }

    /// Runs EM from `shares` (a class starting at 0 stays there).
    fn em(&self, mut shares: [f64; 4], max_iterations: u32, tolerance: f64) -> Em {
        let s = &self.spelling;
        // Rare-spelling share per class: same person, stranger, and the rivals (one share).
        let mut rare = [s.rare_if_same_person, 0.5, s.rare_if_rival];
        let class_of = [0usize, 1, 2, 2];
        let mut alike = [0.0f64; 3];
        let mut m_fit = *self.m;
        let (mut iterations, mut converged) = (0, false);
        let mut log_likelihood = f64::NEG_INFINITY;
        while iterations < max_iterations {
            iterations += 1;
            let mut next = [0.0; 4];
            let (mut rare_n, mut alike_n) = ([0.0f64; 3], [0.0f64; 3]);
            let mut level_n = [[0.0f64; MAX_LEVELS]; N_COMPARISONS];
            let mut ll = 0.0;
            for (((p, spell), n), fixed) in self.patterns.iter().zip(&self.fixed) {
                let mut log = *fixed;
                for c in &self.free {
                    let l = p[c.index()];
                    if l != MISSING {
                        log[0] += m_fit[c.index()][l as usize].max(1e-300).ln();
                    }
                }
                let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let joint: [f64; 4] = std::array::from_fn(|k| {
                    let r = rare[class_of[k]];
                    shares[k]
                        * (log[k] - top).exp()
                        * match spell {
                            Spell::NotWeighed => 1.0,
                            Spell::Rare => r,
                            Spell::Common => 1.0 - r,
                        }
                });
                let total: f64 = joint.iter().sum();
                if total > 0.0 {
                    ll += *n as f64 * (total.ln() + top);
                    let e_same = *n as f64 * joint[0] / total;
                    for c in &self.free {
                        let l = p[c.index()];
                        if l != MISSING {
                            level_n[c.index()][l as usize] += e_same;
                        }
                    }
                    for k in 0..4 {
                        let e = *n as f64 * joint[k] / total;
                        next[k] += e;
                        if *spell != Spell::NotWeighed {
                            alike_n[class_of[k]] += e;
                            if *spell == Spell::Rare {
                                rare_n[class_of[k]] += e;
                            }
                        }
                    }
                }
            }
            log_likelihood = ll;
            let next = next.map(|x| x / self.pairs);
            let next_rare: [f64; 3] = std::array::from_fn(|j| {
                if alike_n[j] > 0.0 {
                    (rare_n[j] / alike_n[j]).clamp(SPELLING_BOUNDS.0, SPELLING_BOUNDS.1)
                } else {
                    rare[j]
                }
            });
            // The same person's free levels: expected counts, with the model's levels as a
            // prior worth SAME_LEVELS_PRIOR pairs.
            let mut next_m = m_fit;
            for c in &self.free {
                let (ci, k) = (c.index(), c.levels().len());
                let seen: f64 = level_n[ci][..k].iter().sum();
                let prior: f64 = self.m[ci][..k].iter().sum();
                for l in 0..k {
                    next_m[ci][l] = (level_n[ci][l] + SAME_LEVELS_PRIOR * self.m[ci][l])
                        / (seen + SAME_LEVELS_PRIOR * prior);
                }
            }
            // Relative change: a rare class's share (a twin share of 1e-3, say) moves by
            // little in absolute terms long before it settles.
            let moved = next
                .iter()
                .zip(&shares)
                .chain(next_rare.iter().zip(&rare))
                .chain(
                    self.free
                        .iter()
                        .flat_map(|c| next_m[c.index()].iter().zip(&m_fit[c.index()])),
                )
                .map(|(a, b)| (a - b).abs() / a.max(*b).max(1e-12))
                .fold(0.0, f64::max);
            shares = next;
            rare = next_rare;
            alike = alike_n;
            m_fit = next_m;
            if moved < tolerance {
                converged = true;
                break;
            }
        }
        Em {
            shares,
            rare,
            alike,
            log_likelihood,
            iterations,
            converged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::estimate::em::model_probs;
    use crate::scoring::Model;

    /// The fit weighs a rival's swapped names as the scorer does: as equal names, times the
    /// share of swapped records.
    #[test]
    fn swapped_names_are_as_likely_for_a_rival_as_equal_names_are() {
        let model = Model::default_model();
        let (m, u) = model_probs(&model);
        let (g, sw) = (Comparison::GivenName, GIVEN_SWAPPED as usize);
        for r in [&model.rivals.twin, &model.rivals.relative] {
            let exact = rival_prob(r, &m, &u, g, 0);
            let swapped = rival_prob(r, &m, &u, g, sw);
            let ratio = |p: f64, q: f64| (p / q).log2();
            assert!(
                (ratio(m[g.index()][sw], swapped) - ratio(m[g.index()][0], exact)).abs() < 1e-9
            );
        }
    }

    /// Patterns without a weighed spelling.
    fn spelled(p: &[(Pattern, u64)]) -> Vec<((Pattern, Spell), u64)> {
        p.iter()
            .map(|&(p, n)| ((p, Spell::NotWeighed), n))
            .collect()
    }

    /// A pattern with every comparison missing but the ones given.
    fn pattern(levels: &[(Comparison, u8)]) -> Pattern {
        let mut p = [MISSING; N_COMPARISONS];
        for &(c, l) in levels {
            p[c.index()] = l;
        }
        p
    }

    #[test]
    fn recovers_the_mix_it_is_given_and_finds_no_relatives_where_there_are_none() {
        use Comparison::*;
        let model = Model::default_model();
        let (m, u) = model_probs(&model);
        // Same person: all agree. Twins: same household and birth date, other given name
        // and sex half the time. Relatives: same household, other given name and birth
        // date. Strangers: nothing but the surname.
        let same = pattern(&[
            (GivenName, 0),
            (BirthDate, 0),
            (Sex, 0),
            (Street, 0),
            (Phone, 0),
        ]);
        let twin_f = pattern(&[
            (GivenName, 7),
            (BirthDate, 0),
            (Sex, 1),
            (Street, 0),
            (Phone, 0),
        ]);
        let twin_m = pattern(&[
            (GivenName, 7),
            (BirthDate, 0),
            (Sex, 0),
            (Street, 0),
            (Phone, 0),
        ]);
        let rel = pattern(&[
            (GivenName, 7),
            (BirthDate, 6),
            (Sex, 1),
            (Street, 0),
            (Phone, 0),
        ]);
        let stranger = pattern(&[
            (GivenName, 7),
            (BirthDate, 6),
            (Sex, 1),
            (Street, 2),
            (Phone, 2),
        ]);
        let with = vec![
            (same, 1000),
            (twin_f, 20),
            (twin_m, 30),
            (rel, 2000),
            (stranger, 50_000),
        ];
        let f = fit(&spelled(&with), &m, &u, &model.rivals, 500, 1e-9).unwrap();
        assert!(f.relative_ratio > 1.0 && f.relative_ratio < 3.0, "{f:?}");
        assert!(f.twin_ratio > 0.01 && f.twin_ratio < 0.2, "{f:?}");
        let without = vec![(same, 1000), (stranger, 50_000)];
        let f = fit(&spelled(&without), &m, &u, &model.rivals, 500, 1e-9).unwrap();
        assert!(f.relative_ratio < 1e-3 && f.twin_ratio < 1e-3, "{f:?}");
        assert!(fit(&spelled(&[(same, 10)]), &m, &u, &model.rivals, 500, 1e-9).is_none());
    }

    #[test]
    fn replacements_the_model_does_not_expect_are_not_read_as_twins() {
        use Comparison::*;
        let model = Model::default_model();
        let (m, u) = model_probs(&model);
        // The same person with a replaced given name 15% of the time and a replaced
        // national id 5% of the time, independently (the model expects 6.5% and 3%): both
        // replaced in 0.75% of pairs, which looks like a twin of the same sex. No twins.
        let same = |given: u8, id: u8| {
            pattern(&[
                (GivenName, given),
                (BirthDate, 0),
                (Sex, 0),
                (NationalId, id),
                (Street, 0),
            ])
        };
        let stranger = pattern(&[
            (GivenName, 7),
            (BirthDate, 6),
            (Sex, 1),
            (NationalId, 3),
            (Street, 2),
        ]);
        let pairs = vec![
            (same(0, 0), 16_150),
            (same(0, 3), 850),
            (same(7, 0), 2_850),
            (same(7, 3), 150),
            (stranger, 100_000),
        ];
        let f = fit(&spelled(&pairs), &m, &u, &model.rivals, 1000, 1e-9).unwrap();
        assert_eq!(f.twin_ratio, RATIO_FLOOR, "{f:?}");
        assert!(f.twin_evidence < TWIN_EVIDENCE, "{f:?}");
        // Real twins (another given name and id, the other sex half the time) among the
        // same pairs are found, and their evidence is overwhelming.
        let twin = |sex: u8| {
            pattern(&[
                (GivenName, 7),
                (BirthDate, 0),
                (Sex, sex),
                (NationalId, 3),
                (Street, 0),
            ])
        };
        let mut with = pairs;
        with.extend([(twin(0), 300), (twin(1), 300)]);
        let none = f.summary();
        assert!(none.starts_with("twins not evident"), "{none}");
        let f = fit(&spelled(&with), &m, &u, &model.rivals, 1000, 1e-9).unwrap();
        assert!(f.twin_evidence > 100.0, "{f:?}");
        assert!(f.twin_ratio > 0.02 && f.twin_ratio < 0.05, "{f:?}");
        let some = f.summary();
        assert!(
            some.starts_with("twins evident") && some.contains(" twin and "),
            "{some}"
        );
    }

    #[test]
    fn learns_how_often_a_rivals_alike_name_is_a_rare_spelling() {
        use Comparison::*;
        let model = Model::default_model();
        let (m, u) = model_probs(&model);
        // Same person with an alike (Jaro–Winkler .92) given name, and twins (of the other
        // sex, with another national id) with one: typos are rare spellings 3 times in 4,
        // twins' names 1 time in 10.
        let id = |l: u8| (NationalId, l);
        let same = pattern(&[(GivenName, 0), (BirthDate, 0), id(0), (Street, 0)]);
        let same_alike = pattern(&[(GivenName, 3), (BirthDate, 0), id(0), (Street, 0)]);
        let twin_alike = pattern(&[(GivenName, 3), (BirthDate, 0), (Sex, 1), id(3), (Street, 0)]);
        let twin = pattern(&[(GivenName, 7), (BirthDate, 0), (Sex, 1), id(3), (Street, 0)]);
        let stranger = pattern(&[(GivenName, 7), (BirthDate, 6), id(3), (Street, 2)]);
        let with = |twins_alike: u64, twins: u64| {
            vec![
                ((same, Spell::NotWeighed), 20_000),
                ((same_alike, Spell::Rare), 1_500),
                ((same_alike, Spell::Common), 500),
                ((twin_alike, Spell::Rare), twins_alike / 10),
                ((twin_alike, Spell::Common), twins_alike - twins_alike / 10),
                ((twin, Spell::NotWeighed), twins),
                ((stranger, Spell::NotWeighed), 100_000),
            ]
        };
        let f = fit(&with(500, 1_000), &m, &u, &model.rivals, 1000, 1e-9).unwrap();
        let r = f.rare_if_rival.expect("enough alike rival pairs");
        assert!((r - 0.1).abs() < 0.03, "{f:?}");
        let mut rivals = model.rivals.clone();
        f.apply(&mut rivals);
        assert_eq!(rivals.spelling.rare_if_rival, r);
        // Too few twins with alike names to say: the model's share stays.
        let f = fit(&with(20, 300), &m, &u, &model.rivals, 1000, 1e-9).unwrap();
        assert_eq!(f.rare_if_rival, None, "{f:?}");
        let mut rivals = model.rivals.clone();
        f.apply(&mut rivals);
        assert_eq!(rivals.spelling, model.rivals.spelling);
    }

    #[test]
    fn a_file_without_duplicates_is_summarised_by_shares() {
        let f = RivalFit {
            pairs: 10_000,
            patterns: 500,
            shares: [3.6e-20, 0.948, 0.001, 0.051],
            twin_ratio: 0.001 / 3.6e-20,
            relative_ratio: 0.051 / 3.6e-20,
            rare_if_rival: None,
            alike_pairs: [0.0, 40.0],
            twin_evidence: 2255.2,
            iterations: 30,
            converged: true,
        };
        let s = f.summary();
        assert!(
            s.starts_with("almost none of the pairs sharing a family name are one person"),
            "{s}"
        );
        assert!(
            s.contains("relatives 0.051") && !s.contains("per same-person pair"),
            "{s}"
        );
        let normal = RivalFit {
            shares: [0.3, 0.6, 0.006, 0.094],
            twin_ratio: 0.02,
            relative_ratio: 0.31,
            ..f
        };
        assert!(normal
            .summary()
            .contains("0.0200 twin and 0.3100 relative pairs per same-person pair"));
    }
}
