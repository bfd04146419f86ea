//! The household comparisons (phone, street, postcode) are not independent: a person who
//! moves changes all three at once, and family members share all three. Fellegi–Sunter
//! sums their weights as if they were independent, so a move costs three penalties (about
//! −14 bits where the data say about −5) and a sibling gains three bonuses (about +30 bits
//! where the data say about +11).
//!
//! The adjustment keeps the per-comparison form of the model but makes the household
//! weights add up to the *joint* likelihood ratio of the two patterns that matter most:
//! - all three agree exactly: `W+ = log2(P(all agree | match) / P(all agree | non-match))`;
//! - all three disagree: `W− = log2(P(all else | match) / P(all else | non-match))`,
//!
//! with P(· | match) from the EM posteriors (the household fields are never evidence there,
//! so the posteriors do not depend on them) and P(· | non-match) from the random pairs
//! (matches taken out as for u). Relatives, who share all three, are not non-matches here:
//! they are rival hypotheses of their own ([`crate::scoring::rivals`]), against which the
//! household fields weigh nothing. Every positive household weight is scaled by
//! `k+ = W+ / Σ positive weights of the all-agree pattern`, every negative one by
//! `k− = W− / Σ negative weights of the all-else pattern`, both clamped to [0.1, 1] (the
//! adjustment only ever weakens them). The scaled weight is stored as an *effective* u,
//! `u = m · 2^(−k·w)`, so the model file keeps its m/u form; these effective u values need
//! not sum to 1.

use serde::Serialize;

use super::em::{LevelFlags, Probs, M_FLOOR};
use crate::scoring::{Comparison, Pattern, MISSING};

/// The household comparisons.
pub const HOUSEHOLD: [Comparison; 3] =
    [Comparison::Phone, Comparison::Street, Comparison::Postcode];
/// Joint patterns of the three (3 levels each).
pub const HOUSEHOLD_PATTERNS: usize = 27;

/// Index of the joint household pattern, when all three are observed.
pub fn household_index(p: &Pattern) -> Option<usize> {
    let mut idx = 0;
    for c in HOUSEHOLD {
        let l = p[c.index()];
        if l == MISSING || l >= 3 {
            return None;
        }
        idx = idx * 3 + l as usize;
    }
    Some(idx)
}

/// What the adjustment found and did.
#[derive(Debug, Clone, Serialize)]
pub struct HouseholdAdjustment {
    /// Joint weight of "all agree" from the data.
    pub joint_agree_weight: f64,
    /// Sum of the independent weights of "all agree".
    pub independent_agree_weight: f64,
    /// Joint weight of "all disagree" from the data.
    pub joint_disagree_weight: f64,
    /// Sum of the independent weights of "all disagree".
    pub independent_disagree_weight: f64,
    /// Factor applied to positive household weights.
    pub agree_factor: f64,
    /// Factor applied to negative household weights.
    pub disagree_factor: f64,
    /// Expected matching pairs with all three observed.
    pub matched_pairs: f64,
    /// Random pairs with all three observed.
    pub random_pairs: u64,
}

/// Fewer expected matching (or random) pairs with all three fields than this and the
/// joint ratios are too noisy: no adjustment.
const MIN_PAIRS: f64 = 100.0;

/// Computes the factors and rewrites the household u values in place. `matched` holds the
/// expected matching pairs per joint pattern, `random` the random pairs per joint pattern,
/// `random_match_share` the share of matches among those random pairs.
pub fn adjust(
    m: &Probs,
    u: &mut Probs,
    fixed_u: &LevelFlags,
    matched: &[f64; HOUSEHOLD_PATTERNS],
    random: &[u64; HOUSEHOLD_PATTERNS],
    random_match_share: f64,
) -> Option<HouseholdAdjustment> {
    let n_m: f64 = matched.iter().sum();
    let n_r: u64 = random.iter().sum();
    if n_m < MIN_PAIRS || (n_r as f64) < MIN_PAIRS {
        return None;
    }
    let p_m = |j: usize| (matched[j] / n_m).max(M_FLOOR);
    let p_u = |j: usize| {
        let k = random[j] as f64 - random_match_share * p_m(j) * n_r as f64;
        (k / n_r as f64).max(M_FLOOR)
    };
    let (agree, disagree) = (0, HOUSEHOLD_PATTERNS - 1);
    let w = |c: Comparison, l: usize| (m[c.index()][l] / u[c.index()][l]).log2();
    let joint_agree = (p_m(agree) / p_u(agree)).log2();
    let joint_disagree = (p_m(disagree) / p_u(disagree)).log2();
    let indep_agree: f64 = HOUSEHOLD.iter().map(|&c| w(c, 0).max(0.0)).sum();
    let indep_disagree: f64 = HOUSEHOLD.iter().map(|&c| w(c, 2).min(0.0)).sum();
    let factor = |joint: f64, indep: f64| {
        if indep != 0.0 && joint * indep > 0.0 {
            (joint / indep).clamp(0.1, 1.0)
        } else {
            1.0
        }
    };
    let k_plus = factor(joint_agree, indep_agree);
    let k_minus = factor(joint_disagree, indep_disagree);
    for c in HOUSEHOLD {
        let ci = c.index();
        for l in 0..c.levels().len() {
            if fixed_u[ci][l] {
                continue;
            }
            let weight = (m[ci][l] / u[ci][l]).log2();
            let k = if weight > 0.0 { k_plus } else { k_minus };
            u[ci][l] = (m[ci][l] * (-k * weight).exp2()).min(1.0);
        }
    }
    Some(HouseholdAdjustment {
        joint_agree_weight: joint_agree,
        independent_agree_weight: indep_agree,
        joint_disagree_weight: joint_disagree,
        independent_disagree_weight: indep_disagree,
        agree_factor: k_plus,
        disagree_factor: k_minus,
        matched_pairs: n_m,
        random_pairs: n_r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{MAX_LEVELS, N_COMPARISONS};

    #[test]
    fn dependent_fields_are_weakened_to_the_joint_ratio() {
        let (mut m, mut u) = (
            [[0.0; MAX_LEVELS]; N_COMPARISONS],
            [[0.0; MAX_LEVELS]; N_COMPARISONS],
        );
        for c in HOUSEHOLD {
            m[c.index()][..3].copy_from_slice(&[0.9, 0.01, 0.09]);
            u[c.index()][..3].copy_from_slice(&[0.001, 0.001, 0.998]);
        }
        // Perfectly dependent: matches all agree (90%) or all disagree (10%); non-matches
        // all agree 0.1% of the time.
        let mut matched = [0.0; HOUSEHOLD_PATTERNS];
        matched[0] = 900.0;
        matched[26] = 100.0;
        let mut random = [0u64; HOUSEHOLD_PATTERNS];
        random[0] = 1_000;
        random[26] = 999_000;
        let fixed = [[false; MAX_LEVELS]; N_COMPARISONS];
        let a = adjust(&m, &mut u, &fixed, &matched, &random, 0.0).unwrap();
        // Joint agree: log2(0.9 / 0.001) ≈ 9.8 against 3 × 9.8 independent.
        assert!((a.agree_factor - 1.0 / 3.0).abs() < 0.01, "{a:?}");
        let sum: f64 = HOUSEHOLD
            .iter()
            .map(|c| (m[c.index()][0] / u[c.index()][0]).log2())
            .sum();
        assert!((sum - a.joint_agree_weight).abs() < 1e-9);
        let sum: f64 = HOUSEHOLD
            .iter()
            .map(|c| (m[c.index()][2] / u[c.index()][2]).log2())
            .sum();
        assert!((sum - a.joint_disagree_weight).abs() < 0.05, "{sum} {a:?}");
        assert_eq!(household_index(&[0; N_COMPARISONS]), Some(0));
        assert_eq!(household_index(&[MISSING; N_COMPARISONS]), None);
    }
}
