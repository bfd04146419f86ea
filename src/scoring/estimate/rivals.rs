//! How common the rival hypotheses are in the site's own records: the share of twins and
//! of household relatives among pairs sharing a family name, relative to the share of
//! same-person pairs.
//!
//! The pairs are those of [`super::TrainingRule::Family`]. Each distinct agreement pattern
//! has four fixed likelihoods: same person (`m`), stranger (`u`), twin and relative (their
//! [`Basis`] per comparison, built from `m`, `u` and the model's own levels). Only the four
//! mixing weights are fitted, by EM (the likelihood of a mixture with fixed components is
//! concave in its weights, so EM reaches the maximum). Family name is left out: every pair
//! agrees on it, so it cannot tell the classes apart. Selection on it is the same for the
//! same person, twins and relatives (all share the household name as the same person
//! does), so the fitted ratios `π_T / π_M` and `π_R / π_M` estimate the population's
//! `λ_T / λ_M` and `λ_R / λ_M`.
//!
//! A site without households (or whose records carry no household fields) finds ratios
//! near zero, and the rivals then cost its links nothing; [`RATIO_FLOOR`] keeps them finite.

use serde::Serialize;

use super::em::Probs;
use crate::scoring::{Basis, Comparison, Pattern, RivalParams, Rivals, MISSING};

/// Smallest ratio a fit reports: a rival this rare changes no decision.
pub const RATIO_FLOOR: f64 = 1e-6;
/// Fewer pairs than this and the fit is not made (the model's ratios stay).
pub const MIN_PAIRS: u64 = 1_000;

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
    /// EM iterations run.
    pub iterations: u32,
    /// Whether the weights stopped moving before the iteration limit.
    pub converged: bool,
}

/// `P(level | rival)` of comparison `c` at level `l`.
fn rival_prob(r: &RivalParams, m: &Probs, u: &Probs, c: Comparison, l: usize) -> f64 {
    match r.basis(c) {
        Basis::SamePerson => m[c.index()][l],
        Basis::Stranger => u[c.index()][l],
        Basis::Levels(p) => p[l],
    }
}

/// Fits the mixing weights over `patterns` (pattern, count) and returns the ratios, or
/// `None` with too few pairs.
pub fn fit(
    patterns: &[(Pattern, u64)],
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
    // Likelihood of each pattern under each class, scaled per pattern (only ratios matter).
    let likelihoods: Vec<[f64; 4]> = patterns
        .iter()
        .map(|(p, _)| {
            let mut log = [0.0f64; 4];
            for c in Comparison::ALL {
                let l = p[c.index()];
                if c == Comparison::FamilyName || l == MISSING {
                    continue;
                }
                let l = l as usize;
                let probs = [
                    m[c.index()][l],
                    u[c.index()][l],
                    rival_prob(&rivals.twin, m, u, c, l),
                    rival_prob(&rivals.relative, m, u, c, l),
                ];
                for (k, q) in probs.iter().enumerate() {
                    log[k] += q.max(1e-300).log2();
                }
            }
            let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            log.map(|x| (x - top).exp2())
        })
        .collect();
    let mut shares = [0.25; 4];
    let (mut iterations, mut converged) = (0, false);
    while iterations < max_iterations {
        iterations += 1;
        let mut next = [0.0; 4];
        for ((_, n), f) in patterns.iter().zip(&likelihoods) {
            let joint: [f64; 4] = std::array::from_fn(|k| shares[k] * f[k]);
            let total: f64 = joint.iter().sum();
            if total > 0.0 {
                for k in 0..4 {
                    next[k] += *n as f64 * joint[k] / total;
                }
            }
        }
        let next = next.map(|x| x / pairs as f64);
        let moved = next
            .iter()
            .zip(&shares)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        shares = next;
        if moved < tolerance {
            converged = true;
            break;
        }
    }
    let same = shares[0].max(f64::MIN_POSITIVE);
    Some(RivalFit {
        pairs,
        patterns: patterns.len() as u64,
        shares,
        twin_ratio: (shares[2] / same).max(RATIO_FLOOR),
        relative_ratio: (shares[3] / same).max(RATIO_FLOOR),
        iterations,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{Model, MAX_LEVELS, N_COMPARISONS};

    fn probs(model: &Model) -> (Probs, Probs) {
        let (mut m, mut u) = (
            [[0.0; MAX_LEVELS]; N_COMPARISONS],
            [[0.0; MAX_LEVELS]; N_COMPARISONS],
        );
        for c in Comparison::ALL {
            for (l, p) in model.params(c).levels.iter().enumerate() {
                m[c.index()][l] = p.m;
                u[c.index()][l] = p.u;
            }
        }
        (m, u)
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
        let (m, u) = probs(&model);
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
        let f = fit(&with, &m, &u, &model.rivals, 500, 1e-9).unwrap();
        assert!(f.relative_ratio > 1.0 && f.relative_ratio < 3.0, "{f:?}");
        assert!(f.twin_ratio > 0.01 && f.twin_ratio < 0.2, "{f:?}");
        let without = vec![(same, 1000), (stranger, 50_000)];
        let f = fit(&without, &m, &u, &model.rivals, 500, 1e-9).unwrap();
        assert!(f.relative_ratio < 1e-3 && f.twin_ratio < 1e-3, "{f:?}");
        assert!(fit(&[(same, 10)], &m, &u, &model.rivals, 500, 1e-9).is_none());
    }
}
