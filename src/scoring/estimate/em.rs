//! Expectation–maximisation over agreement-pattern counts, with u held fixed.
//!
//! The data of one run is a list of distinct agreement patterns with how many candidate
//! pairs showed each, so an iteration costs one pass over the (few thousand) patterns, not
//! over the (millions of) pairs. A value missing on either side contributes nothing: it
//! neither multiplies the likelihoods nor counts towards that comparison's m.

use serde::Serialize;

use crate::scoring::{Comparison, Model, Pattern, MAX_LEVELS, MISSING, N_COMPARISONS};

/// A probability per comparison and level (unused levels are 0).
pub type Probs = [[f64; MAX_LEVELS]; N_COMPARISONS];

/// A flag per comparison and level.
pub type LevelFlags = [[bool; MAX_LEVELS]; N_COMPARISONS];

/// A model's `m` and `u` per comparison and level, as EM and the rival fit take them.
pub fn model_probs(model: &Model) -> (Probs, Probs) {
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

/// Which of a model's `m` and `u` per comparison and level are fixed (kept as given by
/// training and by the estimate of the prior).
pub fn model_fixed(model: &Model) -> (LevelFlags, LevelFlags) {
    let (mut m, mut u) = (
        [[false; MAX_LEVELS]; N_COMPARISONS],
        [[false; MAX_LEVELS]; N_COMPARISONS],
    );
    for c in Comparison::ALL {
        for (l, p) in model.params(c).levels.iter().enumerate() {
            (m[c.index()][l], u[c.index()][l]) = (p.fixed_m, p.fixed_u);
        }
    }
    (m, u)
}

/// Smallest m an estimate keeps. With u floored at the same value
/// ([`super::sample::U_FLOOR`]), no level moves a score by more than `log2(1/1e-5)` ≈ 16.6
/// bits (the size of a typical prior), and a level never seen in either sample weighs 0.
pub const M_FLOOR: f64 = 1e-5;

/// Inputs of one EM run besides the pattern counts.
#[derive(Debug, Clone)]
pub struct EmSetup<'a> {
    /// u per level, held fixed (estimated from random pairs).
    pub u: &'a Probs,
    /// Starting m per level.
    pub m_start: &'a Probs,
    /// Levels whose m is fixed by the user.
    pub fixed_m: &'a LevelFlags,
    /// Comparisons used as evidence in the E-step (the others are still estimated).
    pub active: [bool; N_COMPARISONS],
    /// Starting share of matches among the pairs.
    pub p_start: f64,
    /// Iteration cap.
    pub max_iterations: u32,
    /// Converged when no parameter moves by more than this in an iteration.
    pub tolerance: f64,
}

/// Outcome of one EM run.
#[derive(Debug, Clone, Serialize)]
pub struct EmResult {
    /// Estimated m per level (every comparison, active or not).
    #[serde(skip)]
    pub m: Probs,
    /// Expected matched pairs per comparison and level, in the units of the counts given,
    /// from the final E-step (missing values not counted).
    #[serde(skip)]
    pub match_counts: Probs,
    /// Posterior match probability of each pattern, in the order given.
    #[serde(skip)]
    pub posteriors: Vec<f64>,
    /// Estimated share of matches among the pairs.
    pub match_share: f64,
    /// Iterations run.
    pub iterations: u32,
    /// Whether the change fell below the tolerance before the cap.
    pub converged: bool,
    /// Largest parameter change in the last iteration.
    pub final_change: f64,
    /// Log-likelihood of the counts under the final parameters (natural log).
    pub log_likelihood: f64,
}

/// Number of levels of a comparison.
pub fn n_levels(c: Comparison) -> usize {
    c.levels().len()
}

/// Runs EM to convergence (or the iteration cap).
pub fn run_em(patterns: &[(Pattern, u64)], setup: &EmSetup) -> EmResult {
    let total: f64 = patterns.iter().map(|(_, n)| *n as f64).sum();
    let mut m = *setup.m_start;
    let mut p = setup.p_start.clamp(1e-6, 1.0 - 1e-6);
    let mut posteriors = vec![0.0; patterns.len()];
    let mut result = EmResult {
        m,
        match_counts: [[0.0; MAX_LEVELS]; N_COMPARISONS],
        posteriors: Vec::new(),
        match_share: p,
        iterations: 0,
        converged: false,
        final_change: f64::INFINITY,
        log_likelihood: 0.0,
    };
    if total == 0.0 {
        result.converged = true;
        result.final_change = 0.0;
        return result;
    }
    for iteration in 1..=setup.max_iterations {
        let (acc, matched, ll) = e_step(patterns, &m, setup.u, p, &setup.active, &mut posteriors);
        let new_p = (matched / total).clamp(1e-9, 1.0 - 1e-9);
        let new_m = m_step(&acc, &m, setup.fixed_m);
        let mut change = (new_p - p).abs();
        for c in Comparison::ALL {
            for l in 0..n_levels(c) {
                change = change.max((new_m[c.index()][l] - m[c.index()][l]).abs());
            }
        }
        m = new_m;
        p = new_p;
        result.iterations = iteration;
        result.final_change = change;
        result.match_counts = acc;
        result.log_likelihood = ll;
        if change < setup.tolerance {
            result.converged = true;
            break;
        }
    }
    // Posteriors, counts and likelihood under the final parameters.
    let (acc, _, ll) = e_step(patterns, &m, setup.u, p, &setup.active, &mut posteriors);
    result.match_counts = acc;
    result.log_likelihood = ll;
    result.m = m;
    result.match_share = p;
    result.posteriors = posteriors;
    result
}

/// One E-step: posterior per pattern, expected matched pairs per level, total expected
/// matches and the log-likelihood.
fn e_step(
    patterns: &[(Pattern, u64)],
    m: &Probs,
    u: &Probs,
    p: f64,
    active: &[bool; N_COMPARISONS],
    posteriors: &mut [f64],
) -> (Probs, f64, f64) {
    let mut acc = [[0.0; MAX_LEVELS]; N_COMPARISONS];
    let mut matched = 0.0;
    let mut ll = 0.0;
    for ((pattern, n), post) in patterns.iter().zip(posteriors.iter_mut()) {
        let n = *n as f64;
        let (mut lm, mut lu) = (p, 1.0 - p);
        for c in 0..N_COMPARISONS {
            let l = pattern[c];
            if active[c] && l != MISSING {
                lm *= m[c][l as usize];
                lu *= u[c][l as usize];
            }
        }
        let sum = lm + lu;
        *post = if sum > 0.0 { lm / sum } else { 0.0 };
        ll += n * sum.max(f64::MIN_POSITIVE).ln();
        let w = n * *post;
        matched += w;
        for c in 0..N_COMPARISONS {
            let l = pattern[c];
            if l != MISSING {
                acc[c][l as usize] += w;
            }
        }
    }
    (acc, matched, ll)
}

/// One M-step: m from expected counts, fixed levels kept, the rest sharing the remaining
/// mass and floored at [`M_FLOOR`]. A comparison never observed keeps its previous m.
fn m_step(acc: &Probs, prev: &Probs, fixed: &LevelFlags) -> Probs {
    let mut m = *prev;
    for c in Comparison::ALL {
        let (ci, nl) = (c.index(), n_levels(c));
        m[ci] = normalise_levels(&acc[ci][..nl], &prev[ci], &fixed[ci], M_FLOOR);
    }
    m
}

/// Turns counts into probabilities over one comparison's levels: fixed levels keep `prev`,
/// free levels share what is left in proportion to `counts`, each at least `floor`.
/// With no counts on the free levels, returns `prev`.
pub fn normalise_levels(
    counts: &[f64],
    prev: &[f64; MAX_LEVELS],
    fixed: &[bool; MAX_LEVELS],
    floor: f64,
) -> [f64; MAX_LEVELS] {
    let nl = counts.len();
    let fixed_mass: f64 = (0..nl).filter(|&l| fixed[l]).map(|l| prev[l]).sum();
    let free_mass = (1.0 - fixed_mass).max(0.0);
    let total: f64 = (0..nl).filter(|&l| !fixed[l]).map(|l| counts[l]).sum();
    if total <= 0.0 {
        return *prev;
    }
    let mut out = *prev;
    // Floor, then rescale the levels above the floor so the free mass is kept.
    let mut share: Vec<f64> = (0..nl)
        .map(|l| if fixed[l] { 0.0 } else { counts[l] / total })
        .collect();
    for _ in 0..3 {
        let floored: Vec<bool> = (0..nl)
            .map(|l| !fixed[l] && share[l] * free_mass < floor)
            .collect();
        let n_floored = floored.iter().filter(|&&f| f).count() as f64;
        let rest: f64 = (0..nl)
            .filter(|&l| !fixed[l] && !floored[l])
            .map(|l| share[l])
            .sum();
        let target = (free_mass - n_floored * floor).max(0.0);
        for l in 0..nl {
            if fixed[l] {
                continue;
            }
            share[l] = if floored[l] {
                floor / free_mass.max(f64::MIN_POSITIVE)
            } else if rest > 0.0 {
                share[l] / rest * target / free_mass.max(f64::MIN_POSITIVE)
            } else {
                0.0
            };
        }
    }
    for l in 0..nl {
        if !fixed[l] {
            out[l] = (share[l] * free_mass).max(floor.min(free_mass));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn draw(rng: &mut SmallRng, probs: &[f64]) -> u8 {
        let x: f64 = rng.random();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if x < acc {
                return i as u8;
            }
        }
        (probs.len() - 1) as u8
    }

    /// Chosen m, u per comparison (levels as many as the comparison has, summing to 1).
    fn truth() -> (Probs, Probs) {
        let mut m = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        let mut u = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        for c in Comparison::ALL {
            let nl = n_levels(c);
            // m: most mass on the first level, a geometric tail; u: most mass on "else".
            let mut mw: Vec<f64> = (0..nl).map(|l| 0.35f64.powi(l as i32)).collect();
            mw[nl - 1] += 0.05 * (c.index() as f64 + 1.0) / 10.0;
            let mut uw: Vec<f64> = (0..nl).map(|l| 0.02 * 0.6f64.powi(l as i32)).collect();
            uw[nl - 1] = 1.0;
            let (sm, su) = (mw.iter().sum::<f64>(), uw.iter().sum::<f64>());
            for l in 0..nl {
                m[c.index()][l] = mw[l] / sm;
                u[c.index()][l] = uw[l] / su;
            }
        }
        (m, u)
    }

    /// Simulates agreement patterns from known m, u and match share (10% of values missing),
    /// counts them per pattern, runs EM from a flat start, and checks the estimates.
    #[test]
    fn recovers_known_parameters() {
        let (m_true, u) = truth();
        let p_true = 0.3;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts: ahash::AHashMap<Pattern, u64> = ahash::AHashMap::new();
        for _ in 0..200_000 {
            let is_match = rng.random::<f64>() < p_true;
            let mut pat = [MISSING; N_COMPARISONS];
            for c in Comparison::ALL {
                if rng.random::<f64>() < 0.1 {
                    continue;
                }
                let probs = if is_match { &m_true } else { &u };
                pat[c.index()] = draw(&mut rng, &probs[c.index()][..n_levels(c)]);
            }
            *counts.entry(pat).or_default() += 1;
        }
        let mut patterns: Vec<(Pattern, u64)> = counts.into_iter().collect();
        patterns.sort();
        let mut flat = [[0.0; MAX_LEVELS]; N_COMPARISONS];
        for c in Comparison::ALL {
            let nl = n_levels(c);
            // Start: agreement more likely for matches, but far from the truth.
            for (l, x) in flat[c.index()][..nl].iter_mut().enumerate() {
                *x = if l == 0 { 0.5 } else { 0.5 / (nl - 1) as f64 };
            }
        }
        let fixed = [[false; MAX_LEVELS]; N_COMPARISONS];
        let setup = EmSetup {
            u: &u,
            m_start: &flat,
            fixed_m: &fixed,
            active: [true; N_COMPARISONS],
            p_start: 0.5,
            max_iterations: 500,
            tolerance: 1e-7,
        };
        let r = run_em(&patterns, &setup);
        assert!(r.converged, "EM did not converge: {r:?}");
        // Tolerance: 200k pairs, 60k of them matches, give a standard error of at most
        // ~0.002 per m; 0.01 absolute is five of them.
        assert!((r.match_share - p_true).abs() < 0.01, "p {}", r.match_share);
        for c in Comparison::ALL {
            let want_m = &m_true[c.index()][..n_levels(c)];
            for (l, (&got, &want)) in r.m[c.index()].iter().zip(want_m).enumerate() {
                assert!(
                    (got - want).abs() < 0.01,
                    "{} level {l}: m {got:.4} vs {want:.4}",
                    c.name()
                );
            }
        }
    }

    #[test]
    fn fixed_levels_stay_and_floors_hold() {
        let prev = {
            let mut p = [0.0; MAX_LEVELS];
            p[..3].copy_from_slice(&[0.9, 0.05, 0.05]);
            p
        };
        let mut fixed = [false; MAX_LEVELS];
        fixed[0] = true;
        let out = normalise_levels(&[10.0, 30.0, 0.0], &prev, &fixed, 1e-4);
        assert_eq!(out[0], 0.9);
        assert!((out[2] - 1e-4).abs() < 1e-12);
        assert!((out[0] + out[1] + out[2] - 1.0).abs() < 1e-9);
        // Nothing observed: unchanged.
        assert_eq!(
            normalise_levels(&[0.0, 0.0, 0.0], &prev, &fixed, 1e-4),
            prev
        );
    }
}
