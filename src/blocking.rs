//! Blocking: which record pairs are worth scoring at all.
//!
//! Each record yields a few blocking keys (one per [`BlockRule`] that applies); two records
//! are candidates when they share a key. The [`BlockIndex`] is incremental (insert, update,
//! remove) so the service keeps it live; batch runs use the same keys.
//!
//! Oversized blocks ("smith" + 1950 in a big city) are *capped*: a block with more members
//! than [`BlockingConfig::max_block`] is skipped when looking up candidates, and every skip
//! is counted in [`CandidateStats::capped_blocks`] so reports can show it.

use std::hash::{BuildHasher, Hash, Hasher};

use ahash::{AHashMap, RandomState};
use serde::{Deserialize, Serialize};

use crate::prepare::Prepared;

/// A blocking rule: which derived values form a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockRule {
    /// Family-name Double Metaphone + birth year (also for each previous family name).
    FamilyYear,
    /// Given-name Soundex + full birth date.
    GivenDate,
    /// Full birth date + postcode.
    DatePostcode,
    /// National id.
    NationalId,
    /// Each phone number.
    Phone,
    /// Given and family Double Metaphone, in either order (catches date errors and swaps).
    NamePair,
    /// Email address.
    Email,
}

impl BlockRule {
    /// All rules, the default set.
    pub const ALL: [BlockRule; 7] = [
        BlockRule::FamilyYear,
        BlockRule::GivenDate,
        BlockRule::DatePostcode,
        BlockRule::NationalId,
        BlockRule::Phone,
        BlockRule::NamePair,
        BlockRule::Email,
    ];

    /// The rule's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            BlockRule::FamilyYear => "family_year",
            BlockRule::GivenDate => "given_date",
            BlockRule::DatePostcode => "date_postcode",
            BlockRule::NationalId => "national_id",
            BlockRule::Phone => "phone",
            BlockRule::NamePair => "name_pair",
            BlockRule::Email => "email",
        }
    }
}

/// Blocking configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockingConfig {
    /// Rules in use.
    pub rules: Vec<BlockRule>,
    /// Blocks with more members than this are skipped at lookup (and counted).
    pub max_block: usize,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig {
            rules: BlockRule::ALL.to_vec(),
            max_block: 1000,
        }
    }
}

/// A blocking key: rule and values hashed to 64 bits.
pub type BlockKey = u64;

fn hasher() -> impl Hasher {
    // Fixed seeds: keys are stable across runs, so batch output is deterministic.
    RandomState::with_seeds(0x5eed, 0xb10c, 0x4e15, 0x1d).build_hasher()
}

fn key(rule: BlockRule, parts: impl Hash) -> BlockKey {
    let mut h = hasher();
    (rule as u8).hash(&mut h);
    parts.hash(&mut h);
    h.finish()
}

/// The blocking keys of a record under a set of rules (deduplicated).
pub fn block_keys(p: &Prepared, rules: &[BlockRule]) -> Vec<BlockKey> {
    let mut keys = Vec::with_capacity(8);
    let full_date = p
        .birth
        .filter(|d| d.is_full())
        .map(|d| (d.year, d.month, d.day));
    for &rule in rules {
        match rule {
            BlockRule::FamilyYear => {
                if let Some(d) = p.birth {
                    for name in p.family.iter().chain(p.previous.iter()) {
                        if name.metaphone != 0 {
                            keys.push(key(rule, (name.metaphone, d.year)));
                        }
                    }
                }
            }
            BlockRule::GivenDate => {
                if let (Some(g), Some(d)) = (&p.given, full_date) {
                    keys.push(key(rule, (g.soundex, d)));
                }
            }
            BlockRule::DatePostcode => {
                if let (Some(pc), Some(d)) = (&p.postcode, full_date) {
                    keys.push(key(rule, (&**pc, d)));
                }
            }
            BlockRule::NationalId => {
                if let Some(id) = &p.national_id {
                    keys.push(key(rule, &**id));
                }
            }
            BlockRule::Phone => {
                for ph in &p.phones {
                    keys.push(key(rule, &**ph));
                }
            }
            BlockRule::NamePair => {
                if let (Some(g), Some(f)) = (&p.given, &p.family) {
                    if g.metaphone != 0 && f.metaphone != 0 {
                        let (x, y) = (g.metaphone.min(f.metaphone), g.metaphone.max(f.metaphone));
                        keys.push(key(rule, (x, y)));
                    }
                }
            }
            BlockRule::Email => {
                if let Some(e) = &p.email {
                    keys.push(key(rule, &**e));
                }
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// What a candidate lookup saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CandidateStats {
    /// Blocks skipped because they exceed the cap.
    pub capped_blocks: u32,
    /// Candidates returned (after removing duplicates).
    pub candidates: u32,
}

/// An incremental blocking index over record ids (`u32`, assigned by the caller).
///
/// # Example
/// ```
/// use empi::blocking::{BlockIndex, BlockingConfig};
/// use empi::record::Record;
/// use empi::scoring::{Model, Scorer};
///
/// let scorer = Scorer::new(Model::default_model()).unwrap();
/// let rec = |id: &str| Record {
///     source: "adt".into(),
///     local_id: id.into(),
///     given_name: Some("Ana".into()),
///     family_name: Some("Lima".into()),
///     birth_date: Some("1970-05-06".parse().unwrap()),
///     ..Default::default()
/// };
/// let mut index = BlockIndex::new(BlockingConfig::default());
/// index.insert(1, &scorer.prepare(&rec("1")));
/// let mut found = Vec::new();
/// index.candidates(&scorer.prepare(&rec("2")), None, &mut found);
/// assert_eq!(found, vec![1]);
/// index.remove(1);
/// index.candidates(&scorer.prepare(&rec("2")), None, &mut found);
/// assert!(found.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct BlockIndex {
    config: BlockingConfig,
    blocks: AHashMap<BlockKey, Vec<u32>>,
    keys_of: AHashMap<u32, Box<[BlockKey]>>,
}

impl BlockIndex {
    /// An empty index.
    pub fn new(config: BlockingConfig) -> Self {
        BlockIndex {
            config,
            blocks: AHashMap::new(),
            keys_of: AHashMap::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &BlockingConfig {
        &self.config
    }

    /// Number of records indexed.
    pub fn len(&self) -> usize {
        self.keys_of.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.keys_of.is_empty()
    }

    /// Number of distinct blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of blocks above the cap right now.
    pub fn oversized_blocks(&self) -> usize {
        self.blocks
            .values()
            .filter(|v| v.len() > self.config.max_block)
            .count()
    }

    /// Adds a record, replacing any earlier version with the same id.
    pub fn insert(&mut self, id: u32, p: &Prepared) {
        self.remove(id);
        let keys = block_keys(p, &self.config.rules);
        for &k in &keys {
            self.blocks.entry(k).or_default().push(id);
        }
        self.keys_of.insert(id, keys.into_boxed_slice());
    }

    /// Removes a record; unknown ids are ignored.
    pub fn remove(&mut self, id: u32) {
        if let Some(keys) = self.keys_of.remove(&id) {
            for k in keys.iter() {
                if let Some(members) = self.blocks.get_mut(k) {
                    if let Some(pos) = members.iter().position(|m| *m == id) {
                        members.swap_remove(pos);
                    }
                    if members.is_empty() {
                        self.blocks.remove(k);
                    }
                }
            }
        }
    }

    /// The ids sharing an uncapped block with `p` (sorted, deduplicated, `exclude` left out),
    /// written into `out` (cleared first) so callers can reuse the buffer.
    pub fn candidates(
        &self,
        p: &Prepared,
        exclude: Option<u32>,
        out: &mut Vec<u32>,
    ) -> CandidateStats {
        out.clear();
        let mut stats = CandidateStats::default();
        for k in block_keys(p, &self.config.rules) {
            if let Some(members) = self.blocks.get(&k) {
                if members.len() > self.config.max_block {
                    stats.capped_blocks += 1;
                    continue;
                }
                out.extend(members.iter().copied().filter(|m| Some(*m) != exclude));
            }
        }
        out.sort_unstable();
        out.dedup();
        stats.candidates = out.len() as u32;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Placeholders;
    use crate::record::{PartialDate, Record};
    use proptest::prelude::*;

    const GIVEN: &[&str] = &["ana", "anna", "bob", "robert", "li", "lee"];
    const FAMILY: &[&str] = &["lima", "lyma", "smith", "smyth", "ng"];

    fn rec(g: usize, f: usize, year: u16, phone: u8) -> Prepared {
        Prepared::new(
            &Record {
                source: "s".into(),
                local_id: "x".into(),
                given_name: Some(GIVEN[g % GIVEN.len()].into()),
                family_name: Some(FAMILY[f % FAMILY.len()].into()),
                birth_date: PartialDate::full(1950 + year % 3, 1, 1).ok(),
                phones: vec![format!("555000{:04}", phone % 4)],
                ..Default::default()
            },
            &Placeholders::default(),
        )
    }

    fn brute_force(records: &[Prepared], q: &Prepared, cfg: &BlockingConfig) -> Vec<u32> {
        let qk = block_keys(q, &cfg.rules);
        let mut sizes: AHashMap<BlockKey, usize> = AHashMap::new();
        for r in records {
            for k in block_keys(r, &cfg.rules) {
                *sizes.entry(k).or_default() += 1;
            }
        }
        (0..records.len() as u32)
            .filter(|&i| {
                block_keys(&records[i as usize], &cfg.rules)
                    .iter()
                    .any(|k| qk.contains(k) && sizes[k] <= cfg.max_block)
            })
            .collect()
    }

    proptest! {
        /// The index returns exactly what a brute-force scan over all records returns,
        /// after inserts, updates and removals, with and without capping.
        #[test]
        fn index_matches_brute_force(
            recs in prop::collection::vec((0usize..6, 0usize..5, 0u16..3, 0u8..4), 1..40),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            query in (0usize..6, 0usize..5, 0u16..3, 0u8..4),
            cap in 2usize..50,
        ) {
            let cfg = BlockingConfig { max_block: cap, ..Default::default() };
            let mut index = BlockIndex::new(cfg.clone());
            let mut records: Vec<Prepared> = recs.iter().map(|&(g, f, y, p)| rec(g, f, y, p)).collect();
            for (i, r) in records.iter().enumerate() {
                // insert a different version first so the real one is an update
                index.insert(i as u32, &rec(0, 0, 0, 0));
                index.insert(i as u32, r);
            }
            let mut live: Vec<bool> = vec![true; records.len()];
            for r in &removed {
                let i = r.index(records.len());
                index.remove(i as u32);
                live[i] = false;
            }
            // Brute force over the live records only, keeping original ids.
            let q = rec(query.0, query.1, query.2, query.3);
            let live_recs: Vec<(u32, Prepared)> = records.drain(..).enumerate()
                .filter(|(i, _)| live[*i]).map(|(i, r)| (i as u32, r)).collect();
            let only: Vec<Prepared> = live_recs.iter().map(|(_, r)| r.clone()).collect();
            let expected: Vec<u32> = brute_force(&only, &q, &cfg).into_iter()
                .map(|j| live_recs[j as usize].0).collect();
            let mut got = Vec::new();
            index.candidates(&q, None, &mut got);
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn capped_blocks_are_counted() {
        let mut index = BlockIndex::new(BlockingConfig {
            max_block: 2,
            ..Default::default()
        });
        for i in 0..3 {
            index.insert(i, &rec(0, 0, 0, i as u8));
        }
        let mut out = Vec::new();
        let stats = index.candidates(&rec(0, 0, 0, 3), None, &mut out);
        assert!(stats.capped_blocks >= 1);
        assert!(index.oversized_blocks() >= 1);
    }
}
