//! u from random record pairs: uniform pairs of distinct records, drawn in parallel
//! chunks, each chunk from its own ChaCha8 stream of the seed, so the sample is the same
//! for a seed whatever the number of threads.
//!
//! # Stopping rule
//! Pairs are drawn in rounds. After each round a level is *settled* when its u is known
//! well enough: either it was seen at least [`U_MIN_COUNT`] times (relative standard error
//! ≤ 10%, the weight known to about ±0.15 bit), or it is so rare that an upper bound on its
//! count, `k + 2√k + 3` (about two standard errors; the rule of three when `k = 0`), is
//! already at most twice [`U_FLOOR`] of the `n` pairs observed: u cannot be far above the
//! floor every estimate is clamped to, so its weight is known to within a bit. Sampling
//! stops after the first round in which every level not fixed by the user is settled, or
//! at the pair cap.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::em::{n_levels, LevelFlags, Probs};
use super::household::{household_index, HOUSEHOLD_PATTERNS};
use crate::prepare::Prepared;
use crate::scoring::{Comparison, MAX_LEVELS, MISSING, N_COMPARISONS};

/// Observations a level needs before its u counts as settled.
pub const U_MIN_COUNT: u64 = 100;
/// Smallest u an estimate keeps, the same as [`super::em::M_FLOOR`].
pub const U_FLOOR: f64 = super::em::M_FLOOR;
/// Pairs per parallel chunk (each chunk has its own random stream).
const CHUNK: u64 = 1 << 16;

/// Level counts over random pairs.
#[derive(Debug, Clone, Serialize)]
pub struct USample {
    /// Pairs drawn.
    pub pairs: u64,
    /// Rounds drawn.
    pub rounds: u32,
    /// Whether sampling stopped because every level was settled (rather than at the cap).
    pub settled: bool,
    /// Pairs per comparison with the value present on both sides.
    pub observed: [u64; N_COMPARISONS],
    /// Pairs per comparison and level.
    #[serde(skip)]
    pub counts: [[u64; MAX_LEVELS]; N_COMPARISONS],
    /// Pairs per joint household pattern (see [`super::household`]), where phone, street
    /// and postcode are all observed.
    #[serde(skip)]
    pub household: [u64; HOUSEHOLD_PATTERNS],
}

impl USample {
    fn settled_now(&self, fixed_u: &LevelFlags) -> bool {
        Comparison::ALL.iter().all(|&c| {
            let n = self.observed[c.index()];
            (0..n_levels(c)).all(|l| {
                let k = self.counts[c.index()][l];
                // A comparison never observed cannot be learnt from more pairs of this data
                // once a round has shown it absent everywhere; it keeps the base model's u.
                let k_hi = k as f64 + 3.0 + 2.0 * (k as f64).sqrt();
                fixed_u[c.index()][l]
                    || n == 0
                    || k >= U_MIN_COUNT
                    || k_hi / n as f64 <= 2.0 * U_FLOOR
            })
        })
    }

    /// u per level: the observed share, floored at [`U_FLOOR`]; fixed levels and
    /// comparisons never observed keep `base`.
    pub fn estimate(&self, base: &Probs, fixed_u: &LevelFlags) -> Probs {
        self.corrected(&[0.0; N_COMPARISONS], base, base, fixed_u)
    }

    /// u per level with the matches among the random pairs taken out: a random pair is the
    /// same person with probability λ, so the observed share is `λ·m + (1 − λ)·u` and
    /// `u = (share − λ·m) / (1 − λ)`, floored at [`U_FLOOR`]. This matters for identifying
    /// fields: with a perfect national id, the uncorrected u of its exact level *is* λ, and
    /// its weight would exactly cancel the prior.
    ///
    /// `prior` is per comparison: the share of matches among the random pairs *where that
    /// comparison is observed*, which is above λ when a person's records tend to have the
    /// field or not together (a person without a national id never has one).
    pub fn corrected(
        &self,
        prior: &[f64; N_COMPARISONS],
        m: &Probs,
        base: &Probs,
        fixed_u: &LevelFlags,
    ) -> Probs {
        let mut u = *base;
        for c in Comparison::ALL {
            let ci = c.index();
            let n = self.observed[ci] as f64;
            let counts: Vec<f64> = self.counts[ci][..n_levels(c)]
                .iter()
                .enumerate()
                .map(|(l, &k)| (k as f64 - prior[ci] * m[ci][l] * n).max(0.0))
                .collect();
            u[ci] = super::em::normalise_levels(&counts, &base[ci], &fixed_u[ci], U_FLOOR);
        }
        u
    }
}

/// Counts of one chunk (or of all of them).
#[derive(Clone, Copy)]
struct Counts {
    counts: [[u64; MAX_LEVELS]; N_COMPARISONS],
    observed: [u64; N_COMPARISONS],
    household: [u64; HOUSEHOLD_PATTERNS],
}

impl Counts {
    fn new() -> Self {
        Counts {
            counts: [[0; MAX_LEVELS]; N_COMPARISONS],
            observed: [0; N_COMPARISONS],
            household: [0; HOUSEHOLD_PATTERNS],
        }
    }

    fn add(mut self, o: &Counts) -> Self {
        for c in 0..N_COMPARISONS {
            self.observed[c] += o.observed[c];
            for l in 0..MAX_LEVELS {
                self.counts[c][l] += o.counts[c][l];
            }
        }
        for (a, b) in self.household.iter_mut().zip(o.household) {
            *a += b;
        }
        self
    }
}

/// Draws random pairs of `prepared` until every level is settled or `max_pairs` is reached,
/// in rounds of `round_pairs`.
pub fn sample_u(
    prepared: &[Prepared],
    seed: u64,
    round_pairs: u64,
    max_pairs: u64,
    fixed_u: &LevelFlags,
    progress: &crate::progress::Bar,
) -> USample {
    let mut s = USample {
        pairs: 0,
        rounds: 0,
        settled: false,
        observed: [0; N_COMPARISONS],
        counts: [[0; MAX_LEVELS]; N_COMPARISONS],
        household: [0; HOUSEHOLD_PATTERNS],
    };
    let n = prepared.len() as u64;
    if n < 2 || max_pairs == 0 {
        return s;
    }
    let round_pairs = round_pairs.max(1);
    let mut next_chunk = 0u64;
    while s.pairs < max_pairs {
        let want = round_pairs.min(max_pairs - s.pairs);
        let chunks = want.div_ceil(CHUNK);
        let first = next_chunk;
        next_chunk += chunks;
        let round = (first..first + chunks)
            .into_par_iter()
            .map(|chunk| {
                let len = CHUNK.min(want - (chunk - first) * CHUNK);
                let out = count_chunk(prepared, seed, chunk, len);
                progress.inc(len);
                out
            })
            .reduce(Counts::new, |a, b| a.add(&b));
        let total = Counts {
            counts: s.counts,
            observed: s.observed,
            household: s.household,
        }
        .add(&round);
        (s.counts, s.observed, s.household) = (total.counts, total.observed, total.household);
        s.pairs += want;
        s.rounds += 1;
        if s.settled_now(fixed_u) {
            s.settled = true;
            break;
        }
    }
    s
}

fn count_chunk(prepared: &[Prepared], seed: u64, chunk: u64, len: u64) -> Counts {
    let mut out = Counts::new();
    // Stream 0 of the seed is this module's; each chunk takes its own word position.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rng.set_word_pos(u128::from(chunk) << 40);
    let n = prepared.len() as u32;
    for _ in 0..len {
        let i = rng.random_range(0..n);
        let mut j = rng.random_range(0..n - 1);
        if j >= i {
            j += 1;
        }
        let (a, b) = (&prepared[i as usize], &prepared[j as usize]);
        let mut pattern = [MISSING; N_COMPARISONS];
        for c in Comparison::ALL {
            let l = c.level(a, b);
            pattern[c.index()] = l;
            if l != MISSING {
                out.observed[c.index()] += 1;
                out.counts[c.index()][l as usize] += 1;
            }
        }
        if let Some(h) = household_index(&pattern) {
            out.household[h] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Placeholders;
    use crate::record::{Record, Sex};

    fn people(n: usize) -> Vec<Prepared> {
        (0..n)
            .map(|i| {
                Prepared::new(
                    &Record {
                        source: "s".into(),
                        local_id: i.to_string(),
                        given_name: Some(["ann", "bob", "cy", "di"][i % 4].into()),
                        family_name: Some(format!("fam{}", i % 10)),
                        sex: if i % 2 == 0 { Sex::Female } else { Sex::Male },
                        ..Default::default()
                    },
                    &Placeholders::default(),
                )
            })
            .collect()
    }

    #[test]
    fn deterministic_for_a_seed_and_close_to_the_truth() {
        let p = people(400);
        let fixed = [[false; MAX_LEVELS]; N_COMPARISONS];
        let bar = crate::progress::Bar::hidden();
        let a = sample_u(&p, 9, 100_000, 300_000, &fixed, &bar);
        let b = sample_u(&p, 9, 100_000, 300_000, &fixed, &bar);
        let c = sample_u(&p, 10, 100_000, 300_000, &fixed, &bar);
        assert_eq!(a.counts, b.counts);
        assert_ne!(a.counts, c.counts);
        // Given names cycle over 4 values, sex alternates: agreement ≈ 1/4 and ≈ 1/2.
        let given = Comparison::GivenName.index();
        let share = a.counts[given][0] as f64 / a.observed[given] as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
        let sex = Comparison::Sex.index();
        let share = a.counts[sex][0] as f64 / a.observed[sex] as f64;
        assert!((share - 0.5).abs() < 0.01, "{share}");
        // Birth dates are missing everywhere: never observed.
        assert_eq!(a.observed[Comparison::BirthDate.index()], 0);
    }

    #[test]
    fn stops_early_once_levels_are_settled() {
        let p = people(400);
        let fixed = [[true; MAX_LEVELS]; N_COMPARISONS];
        let bar = crate::progress::Bar::hidden();
        // Everything fixed: settled after the first round.
        let s = sample_u(&p, 1, 1000, 1_000_000, &fixed, &bar);
        assert!(s.settled);
        assert_eq!((s.rounds, s.pairs), (1, 1000));
    }
}
