//! The generator's random source and the few draws it needs.
//!
//! Only the raw ChaCha8 stream is used (its output is fixed by the algorithm); ranges,
//! probabilities and shuffles are computed here with integer and basic float arithmetic, so
//! output does not depend on `rand`'s sampling algorithms, the platform or its libm.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator's random source.
pub(crate) type Rng = ChaCha8Rng;

/// An independent stream `stream` of the run seeded with `seed`.
pub(crate) fn seeded(seed: u64, stream: u64) -> Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift; the bias is below 2^-32.
pub(crate) fn below(rng: &mut Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// Uniform in `0..n` for 32-bit bounds.
pub(crate) fn below_u32(rng: &mut Rng, n: u32) -> u32 {
    below(rng, u64::from(n)) as u32
}

/// Uniform index into a slice of length `n`.
pub(crate) fn index(rng: &mut Rng, n: usize) -> usize {
    below(rng, n as u64) as usize
}

/// Uniform in `lo..=hi`.
pub(crate) fn between(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    lo + below_u32(rng, hi - lo + 1)
}

/// Uniform in `[0, 1)` with 53 bits.
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True with probability `p` (any `p <= 0` never, `p >= 1` always).
pub(crate) fn chance(rng: &mut Rng, p: f64) -> bool {
    unit(rng) < p
}

/// An element of `items` chosen by integer weights (weights must not all be zero).
pub(crate) fn weighted<'a, T>(rng: &mut Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| *w).sum();
    let mut x = below_u32(rng, total.max(1));
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= *w;
    }
    // Unreachable while some weight is positive; the last item is a safe answer anyway.
    &items[items.len() - 1].0
}

/// Fisher–Yates shuffle.
pub(crate) fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| seeded(1, 0).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(seeded(1, 0).next_u64(), seeded(1, 1).next_u64());
        assert_ne!(seeded(1, 0).next_u64(), seeded(2, 0).next_u64());
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = seeded(9, 0);
        for _ in 0..10_000 {
            assert!(below(&mut rng, 7) < 7);
            let b = between(&mut rng, 3, 5);
            assert!((3..=5).contains(&b));
            let u = unit(&mut rng);
            assert!((0.0..1.0).contains(&u));
        }
        assert!(!chance(&mut rng, 0.0));
        assert!(chance(&mut rng, 1.0));
        let mut v: Vec<u32> = (0..100).collect();
        shuffle(&mut rng, &mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
