//! Training rules: which record pairs an EM run sees, which comparisons are evidence in
//! it, and which comparisons it trains.
//!
//! | rule          | pairs of records sharing     | evidence in the E-step                 | trains m of                 |
//! |---------------|------------------------------|----------------------------------------|-----------------------------|
//! | `birth_date`  | full birth date              | given, middle, family, sex, national id, email | every comparison but birth date |
//! | `name`        | given and family name (folded) | birth date, middle name, national id | birth date                  |
//! | `national_id` | national id                  | given, middle, family, birth date, sex, email | every comparison but national id |
//! | `family`      | family name (folded)         | given, middle, birth date, sex, national id, email | nothing: measures how often relatives share a household |
//!
//! Why: a comparison is never estimated from pairs selected on its own field (those agree
//! by construction). Phone, street and postcode are never evidence: family members share
//! them, and family members are exactly the non-matches blocking brings together, so they
//! would make households look like matches; they are still *estimated* from the posteriors
//! the other comparisons give. In the `name` rule, sex and email follow from the name, and
//! the household fields from the family (Jr and Sr), so only birth date, middle name and
//! national id are evidence, and only birth date is trained there.

use std::hash::{BuildHasher, Hash, Hasher};

use ahash::{AHashMap, RandomState};
use rayon::prelude::*;
use serde::Serialize;

use crate::prepare::Prepared;
use crate::scoring::{Comparison, Pattern, N_COMPARISONS};

/// A rule selecting candidate pairs for one EM run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingRule {
    /// Records with the same full birth date.
    BirthDate,
    /// Records with the same folded given and family name.
    Name,
    /// Records with the same national id.
    NationalId,
    /// Records with the same folded family name. Not an m run (not in [`Self::ALL`]): it
    /// measures how often *relatives* share a household (see `household`).
    Family,
}

impl TrainingRule {
    /// Every rule, in the order runs are made.
    pub const ALL: [TrainingRule; 3] = [
        TrainingRule::BirthDate,
        TrainingRule::Name,
        TrainingRule::NationalId,
    ];

    /// The rule's name in metadata.
    pub fn name(self) -> &'static str {
        match self {
            TrainingRule::BirthDate => "birth_date",
            TrainingRule::Name => "name",
            TrainingRule::NationalId => "national_id",
            TrainingRule::Family => "family",
        }
    }

    /// The comparisons whose exact agreement the rule selects on.
    pub fn blocked(self) -> &'static [Comparison] {
        match self {
            TrainingRule::BirthDate => &[Comparison::BirthDate],
            TrainingRule::Name => &[Comparison::GivenName, Comparison::FamilyName],
            TrainingRule::NationalId => &[Comparison::NationalId],
            TrainingRule::Family => &[Comparison::FamilyName],
        }
    }

    /// The comparisons used as evidence in the E-step.
    pub fn evidence(self) -> &'static [Comparison] {
        use Comparison::*;
        match self {
            TrainingRule::BirthDate => &[GivenName, MiddleName, FamilyName, Sex, NationalId, Email],
            TrainingRule::Name => &[BirthDate, MiddleName, NationalId],
            TrainingRule::NationalId => &[GivenName, MiddleName, FamilyName, BirthDate, Sex, Email],
            TrainingRule::Family => &[GivenName, MiddleName, BirthDate, Sex, NationalId, Email],
        }
    }

    /// The comparisons whose m this rule's run estimates.
    pub fn trains(self) -> Vec<Comparison> {
        match self {
            TrainingRule::Name => vec![Comparison::BirthDate],
            TrainingRule::Family => Vec::new(),
            _ => Comparison::ALL
                .into_iter()
                .filter(|c| !self.blocked().contains(c))
                .collect(),
        }
    }

    /// Evidence flags per comparison.
    pub fn evidence_flags(self) -> [bool; N_COMPARISONS] {
        let mut f = [false; N_COMPARISONS];
        for c in self.evidence() {
            f[c.index()] = true;
        }
        f
    }

    /// The record's key under this rule, if it has one.
    pub fn key(self, p: &Prepared) -> Option<u64> {
        let mut h = RandomState::with_seeds(0x7a1, 0x2e, 0x5eed, self as u64).build_hasher();
        match self {
            TrainingRule::BirthDate => {
                let d = p.birth.filter(|d| d.is_full())?;
                (d.year, d.month, d.day).hash(&mut h);
            }
            TrainingRule::Name => {
                let (g, f) = (p.given.as_ref()?, p.family.as_ref()?);
                (&*g.text, &*f.text).hash(&mut h);
            }
            TrainingRule::NationalId => p.national_id.as_deref()?.hash(&mut h),
            TrainingRule::Family => p.family.as_ref()?.text.hash(&mut h),
        }
        Some(h.finish())
    }
}

/// Agreement-pattern counts of one rule's candidate pairs.
#[derive(Debug, Clone)]
pub struct RulePairs {
    /// Candidate pairs the rule selects (before sampling).
    pub candidate_pairs: u64,
    /// Pairs compared (after sampling).
    pub pairs_used: u64,
    /// Distinct patterns with their counts, sorted by pattern (deterministic order).
    pub patterns: Vec<(Pattern, u64)>,
}

impl RulePairs {
    /// The share of candidate pairs that were compared.
    pub fn sample_rate(&self) -> f64 {
        if self.candidate_pairs == 0 {
            1.0
        } else {
            self.pairs_used as f64 / self.candidate_pairs as f64
        }
    }
}

/// A 64-bit mix (splitmix64's finaliser): the pair-sampling hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counts the agreement patterns of the pairs sharing a key under `rule`. When there are
/// more than `max_pairs` candidate pairs, each is kept with probability
/// `max_pairs / candidates`, decided by a hash of the seed and the two record positions, so
/// the sample is fixed for a seed and input order.
pub fn rule_pairs(
    prepared: &[Prepared],
    rule: TrainingRule,
    seed: u64,
    max_pairs: u64,
    progress: &crate::progress::Bar,
) -> RulePairs {
    let counted = counted_pairs(prepared, rule, seed, max_pairs, progress, pattern_of);
    RulePairs {
        candidate_pairs: counted.candidate_pairs,
        pairs_used: counted.pairs_used,
        patterns: counted.keys,
    }
}

/// The agreement pattern of a pair.
pub(crate) fn pattern_of(a: &Prepared, b: &Prepared) -> Pattern {
    let mut pat = [0u8; N_COMPARISONS];
    for c in Comparison::ALL {
        pat[c.index()] = c.level(a, b);
    }
    pat
}

/// Pairs of a rule counted by a key of the pair: what [`rule_pairs`] does with the
/// agreement pattern, and the rival fit with the pattern and the given names' spelling.
pub struct CountedPairs<K> {
    /// Candidate pairs the rule selects (before sampling).
    pub candidate_pairs: u64,
    /// Pairs compared (after sampling).
    pub pairs_used: u64,
    /// Distinct keys with their counts, sorted by key (deterministic order).
    pub keys: Vec<(K, u64)>,
}

/// Counts the pairs sharing a key under `rule` by `key(a, b)`, sampled as [`rule_pairs`]
/// says.
pub fn counted_pairs<K, F>(
    prepared: &[Prepared],
    rule: TrainingRule,
    seed: u64,
    max_pairs: u64,
    progress: &crate::progress::Bar,
    key: F,
) -> CountedPairs<K>
where
    K: Hash + Eq + Ord + Send,
    F: Fn(&Prepared, &Prepared) -> K + Sync,
{
    let mut keyed: Vec<(u64, u32)> = prepared
        .par_iter()
        .enumerate()
        .filter_map(|(i, p)| rule.key(p).map(|k| (k, i as u32)))
        .collect();
    keyed.par_sort_unstable();
    let mut groups: Vec<&[(u64, u32)]> = keyed.chunk_by(|a, b| a.0 == b.0).collect();
    groups.retain(|g| g.len() > 1);
    let candidate_pairs: u64 = groups
        .iter()
        .map(|g| (g.len() as u64) * (g.len() as u64 - 1) / 2)
        .sum();
    let rate = if candidate_pairs > max_pairs {
        max_pairs as f64 / candidate_pairs as f64
    } else {
        1.0
    };
    // Keep a pair when its hash falls below rate · 2^64.
    let cut = if rate >= 1.0 {
        u64::MAX
    } else {
        (rate * u64::MAX as f64) as u64
    };
    let salt = mix(seed ^ (rule as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    progress.set_length(groups.len() as u64);
    let (counts, used) = groups
        .par_iter()
        .with_min_len(64)
        .fold(
            || (AHashMap::<K, u64>::new(), 0u64),
            |(mut counts, mut used), g| {
                for (x, &(_, i)) in g.iter().enumerate() {
                    for &(_, j) in &g[x + 1..] {
                        let (lo, hi) = (i.min(j) as u64, i.max(j) as u64);
                        if cut != u64::MAX && mix(salt ^ (lo << 32 | hi)) > cut {
                            continue;
                        }
                        let k = key(&prepared[i as usize], &prepared[j as usize]);
                        *counts.entry(k).or_default() += 1;
                        used += 1;
                    }
                }
                progress.inc(1);
                (counts, used)
            },
        )
        .reduce(
            || (AHashMap::new(), 0),
            |(a, na), (b, nb)| {
                let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                for (k, v) in small {
                    *big.entry(k).or_default() += v;
                }
                (big, na + nb)
            },
        );
    let mut keys: Vec<(K, u64)> = counts.into_iter().collect();
    keys.sort_unstable();
    CountedPairs {
        candidate_pairs,
        pairs_used: used,
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Placeholders;
    use crate::record::{PartialDate, Record};

    fn rec(given: &str, day: u8) -> Prepared {
        Prepared::new(
            &Record {
                source: "s".into(),
                local_id: "1".into(),
                given_name: Some(given.into()),
                family_name: Some("lima".into()),
                birth_date: PartialDate::full(1980, 1, day).ok(),
                ..Default::default()
            },
            &Placeholders::default(),
        )
    }

    #[test]
    fn counts_pairs_per_pattern_and_samples_deterministically() {
        // 30 records on the same date: 435 pairs; 20 of them named "ann".
        let recs: Vec<Prepared> = (0..30)
            .map(|i| rec(if i < 20 { "ann" } else { "zoe" }, 3))
            .collect();
        let bar = crate::progress::Bar::hidden();
        let all = rule_pairs(&recs, TrainingRule::BirthDate, 1, u64::MAX, &bar);
        assert_eq!(all.candidate_pairs, 435);
        assert_eq!(all.pairs_used, 435);
        let total: u64 = all.patterns.iter().map(|p| p.1).sum();
        assert_eq!(total, 435);
        let given_exact: u64 = all
            .patterns
            .iter()
            .filter(|p| p.0[Comparison::GivenName.index()] == 0)
            .map(|p| p.1)
            .sum();
        assert_eq!(given_exact, 190 + 45);
        let a = rule_pairs(&recs, TrainingRule::BirthDate, 1, 100, &bar);
        let b = rule_pairs(&recs, TrainingRule::BirthDate, 1, 100, &bar);
        assert_eq!(a.patterns, b.patterns);
        assert!(a.pairs_used > 50 && a.pairs_used < 160, "{}", a.pairs_used);
        // By name: "ann lima" × 20 and "zoe lima" × 10.
        let by_name = rule_pairs(&recs, TrainingRule::Name, 1, u64::MAX, &bar);
        assert_eq!(by_name.candidate_pairs, 190 + 45);
    }

    #[test]
    fn no_rule_trains_a_comparison_it_selects_on() {
        for r in TrainingRule::ALL {
            for c in r.blocked() {
                assert!(!r.trains().contains(c));
                assert!(!r.evidence().contains(c));
            }
            for c in [Comparison::Phone, Comparison::Street, Comparison::Postcode] {
                assert!(!r.evidence().contains(&c));
            }
        }
    }
}
