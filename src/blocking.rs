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

/// Calls `emit` with each blocking key of a record under a set of rules, tagged with its
/// rule (keys may repeat; callers deduplicate). The one place keys are derived, so the
/// service's [`BlockIndex`] and batch runs ([`SortedBlocks`]) always agree.
fn each_key(p: &Prepared, rules: &[BlockRule], mut emit: impl FnMut(BlockRule, BlockKey)) {
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
                            emit(rule, key(rule, (name.metaphone, d.year)));
                        }
                    }
                }
            }
            BlockRule::GivenDate => {
                if let (Some(g), Some(d)) = (&p.given, full_date) {
                    emit(rule, key(rule, (g.soundex, d)));
                }
            }
            BlockRule::DatePostcode => {
                if let (Some(pc), Some(d)) = (&p.postcode, full_date) {
                    emit(rule, key(rule, (&**pc, d)));
                }
            }
            BlockRule::NationalId => {
                if let Some(id) = &p.national_id {
                    emit(rule, key(rule, &**id));
                }
            }
            BlockRule::Phone => {
                for ph in &p.phones {
                    emit(rule, key(rule, &**ph));
                }
            }
            BlockRule::NamePair => {
                if let (Some(g), Some(f)) = (&p.given, &p.family) {
                    if g.metaphone != 0 && f.metaphone != 0 {
                        let (x, y) = (g.metaphone.min(f.metaphone), g.metaphone.max(f.metaphone));
                        emit(rule, key(rule, (x, y)));
                    }
                }
            }
            BlockRule::Email => {
                if let Some(e) = &p.email {
                    emit(rule, key(rule, &**e));
                }
            }
        }
    }
}

/// The blocking keys of a record under a set of rules (deduplicated).
pub fn block_keys(p: &Prepared, rules: &[BlockRule]) -> Vec<BlockKey> {
    let mut keys = Vec::with_capacity(8);
    each_key(p, rules, |_, k| keys.push(k));
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
        self.insert_keyed(id, block_keys(p, &self.config.rules));
    }

    /// As [`BlockIndex::insert`] with the record's keys computed by the caller (e.g. in
    /// parallel while loading): `keys` must be [`block_keys`] of the record under this
    /// index's rules.
    pub fn insert_keyed(&mut self, id: u32, keys: Vec<BlockKey>) {
        self.remove(id);
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

/// A blocking key tagged with its rule: the rule's position in [`BlockRule::ALL`] in the top
/// three bits, so sorted keys group by rule first and stats can be kept per rule.
fn tagged(rule: BlockRule, k: BlockKey) -> BlockKey {
    ((rule as u64) << 61) | (k >> 3)
}

fn rule_of(tagged: BlockKey) -> BlockRule {
    BlockRule::ALL[(tagged >> 61) as usize]
}

/// Per-rule counts of a [`SortedBlocks`] build, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleBlockStats {
    /// Blocks (distinct keys) of this rule with two members or more.
    pub blocks: u64,
    /// Blocks over the cap, skipped.
    pub capped_blocks: u64,
    /// Records in the capped blocks (each loses that block's candidates).
    pub records_in_capped_blocks: u64,
    /// Largest block kept.
    pub largest_block: u64,
    /// Pairs first found in a block of this rule (each pair counts under one rule only).
    pub pairs: u64,
}

/// Batch blocking over a fixed set of records, built by sorting instead of hashing: every
/// `(key, record)` entry in one vector, sorted in parallel, so a block is a run of equal
/// keys. Uses the same keys as [`BlockIndex`] and yields exactly the pairs of records that
/// share an uncapped block, each pair once.
///
/// A pair sharing several blocks is visited in the first of them (smallest tagged key):
/// each record keeps the sorted list of its *live* keys (blocks of 2 to `max_block`
/// members), and a pair met in block `k` is skipped when both lists hold a live key below
/// `k`. No candidate list is ever materialised.
///
/// # Example
/// ```
/// use empi::blocking::{BlockingConfig, SortedBlocks};
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
/// let prepared = vec![scorer.prepare(&rec("1")), scorer.prepare(&rec("2"))];
/// let blocks = SortedBlocks::build(&prepared, &BlockingConfig::default());
/// let mut pairs = Vec::new();
/// for found in blocks.par_visit_pairs(None, Vec::new, |v, a, b, _| v.push((a, b))) {
///     pairs.extend(found);
/// }
/// assert_eq!(pairs, vec![(0, 1)]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SortedBlocks {
    /// Record ids of the live blocks, block after block (ascending ids within a block).
    members: Vec<u32>,
    /// Per live block: start in `members` and its tagged key; a final sentinel start.
    blocks: Vec<(u32, BlockKey)>,
    /// Live keys of each record, ascending: `keys[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    keys: Vec<BlockKey>,
    by_rule: Vec<(BlockRule, RuleBlockStats)>,
}

impl SortedBlocks {
    /// Blocks records `0..prepared.len()` under `config` (rules and cap).
    pub fn build(prepared: &[Prepared], config: &BlockingConfig) -> SortedBlocks {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let rules = &config.rules;
        let parts: Vec<Vec<(BlockKey, u32)>> = prepared
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut out = Vec::with_capacity(chunk.len() * 6);
                let mut mine: Vec<BlockKey> = Vec::with_capacity(8);
                for (i, p) in chunk.iter().enumerate() {
                    let id = (c * CHUNK + i) as u32;
                    mine.clear();
                    each_key(p, rules, |r, k| mine.push(tagged(r, k)));
                    mine.sort_unstable();
                    mine.dedup();
                    out.extend(mine.iter().map(|&k| (k, id)));
                }
                out
            })
            .collect();
        let mut entries: Vec<(BlockKey, u32)> =
            Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            entries.extend(part);
        }
        entries.par_sort_unstable();

        let mut by_rule: Vec<(BlockRule, RuleBlockStats)> = rules
            .iter()
            .map(|&r| (r, RuleBlockStats::default()))
            .collect();
        let mut members = Vec::new();
        let mut blocks = Vec::new();
        let mut live_entries: Vec<(u32, BlockKey)> = Vec::new();
        let mut start = 0;
        while start < entries.len() {
            let k = entries[start].0;
            let mut end = start + 1;
            while end < entries.len() && entries[end].0 == k {
                end += 1;
            }
            let n = end - start;
            if n >= 2 {
                let stats = by_rule
                    .iter_mut()
                    .find(|(r, _)| *r == rule_of(k))
                    .map(|(_, s)| s);
                if n > config.max_block {
                    if let Some(s) = stats {
                        s.capped_blocks += 1;
                        s.records_in_capped_blocks += n as u64;
                    }
                } else {
                    if let Some(s) = stats {
                        s.blocks += 1;
                        s.largest_block = s.largest_block.max(n as u64);
                    }
                    blocks.push((members.len() as u32, k));
                    for &(_, id) in &entries[start..end] {
                        members.push(id);
                        live_entries.push((id, k));
                    }
                }
            }
            start = end;
        }
        blocks.push((members.len() as u32, 0));
        drop(entries);
        live_entries.par_sort_unstable();
        let mut offsets = Vec::with_capacity(prepared.len() + 1);
        let mut keys = Vec::with_capacity(live_entries.len());
        let mut e = 0;
        for i in 0..prepared.len() as u32 {
            offsets.push(keys.len() as u32);
            while e < live_entries.len() && live_entries[e].0 == i {
                keys.push(live_entries[e].1);
                e += 1;
            }
        }
        offsets.push(keys.len() as u32);
        SortedBlocks {
            members,
            blocks,
            offsets,
            keys,
            by_rule,
        }
    }

    /// Number of live blocks (2 to `max_block` members).
    pub fn block_count(&self) -> usize {
        self.blocks.len().saturating_sub(1)
    }

    /// Blocks over the cap, all rules.
    pub fn capped_blocks(&self) -> u64 {
        self.by_rule.iter().map(|(_, s)| s.capped_blocks).sum()
    }

    /// Per-rule counts (pairs are filled in by [`SortedBlocks::count_pairs_by_rule`]).
    pub fn rule_stats(&self) -> &[(BlockRule, RuleBlockStats)] {
        &self.by_rule
    }

    /// Adds per-rule pair counts gathered by a caller of [`SortedBlocks::par_visit_pairs`]
    /// (indexed like [`BlockRule::ALL`]).
    pub fn count_pairs_by_rule(&mut self, pairs: &[u64; 8]) {
        for (r, s) in &mut self.by_rule {
            s.pairs += pairs[*r as usize];
        }
    }

    /// An upper bound on the pairs [`SortedBlocks::par_visit_pairs`] visits (pairs sharing
    /// several blocks count once per block here), for progress bars.
    pub fn pair_upper_bound(&self, split: Option<u32>) -> u64 {
        (0..self.block_count())
            .map(|b| {
                let (s, e) = (self.blocks[b].0 as usize, self.blocks[b + 1].0 as usize);
                let ids = &self.members[s..e];
                match split {
                    Some(sp) => {
                        let l = ids.partition_point(|&i| i < sp) as u64;
                        l * (ids.len() as u64 - l)
                    }
                    None => (ids.len() as u64) * (ids.len() as u64 - 1) / 2,
                }
            })
            .sum()
    }

    /// Live block `b` (`0..block_count()`): its members (ascending) and its rule.
    pub fn block(&self, b: usize) -> (&[u32], BlockRule) {
        let (s, k) = self.blocks[b];
        let e = self.blocks[b + 1].0;
        (&self.members[s as usize..e as usize], rule_of(k))
    }

    fn live_keys(&self, i: u32) -> &[BlockKey] {
        let (a, b) = (self.offsets[i as usize], self.offsets[i as usize + 1]);
        &self.keys[a as usize..b as usize]
    }

    /// Whether records `a` and `b` share a live block below key `below`.
    fn share_below(&self, a: u32, b: u32, below: BlockKey) -> bool {
        let (x, y) = (self.live_keys(a), self.live_keys(b));
        let (mut i, mut j) = (0, 0);
        while i < x.len() && j < y.len() && x[i] < below && y[j] < below {
            match x[i].cmp(&y[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// The rules under which two records share a live block, as a bit set indexed like
    /// [`BlockRule::ALL`] (0 when they are not a candidate pair).
    pub fn shared_rules(&self, a: u32, b: u32) -> u8 {
        let (x, y) = (self.live_keys(a), self.live_keys(b));
        let (mut i, mut j, mut set) = (0, 0, 0u8);
        while i < x.len() && j < y.len() {
            match x[i].cmp(&y[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    set |= 1 << (x[i] >> 61);
                    i += 1;
                    j += 1;
                }
            }
        }
        set
    }

    /// Whether two records share any live block (i.e. they are a candidate pair).
    pub fn shares_block(&self, a: u32, b: u32) -> bool {
        self.share_below(a, b, BlockKey::MAX)
    }

    /// As [`SortedBlocks::par_visit_pairs`], with a cheap `pre` filter run on every
    /// block-pair *before* the check that makes each pair visited once: a pair `pre`
    /// rejects is dropped without touching the block lists (it is rejected again in any
    /// other block it shares, so nothing depends on where). `pre` sees repeats.
    pub fn par_visit_pairs_filtered<A, I, P, V>(
        &self,
        split: Option<u32>,
        init: I,
        pre: P,
        visit: V,
    ) -> Vec<A>
    where
        A: Send,
        I: Fn() -> A + Sync + Send,
        P: Fn(&mut A, u32, u32) -> bool + Sync + Send,
        V: Fn(&mut A, u32, u32, BlockRule) + Sync + Send,
    {
        use rayon::prelude::*;
        (0..self.block_count())
            .into_par_iter()
            .with_min_len(16)
            .fold(&init, |mut acc, b| {
                let (s, k) = self.blocks[b];
                let e = self.blocks[b + 1].0;
                let ids = &self.members[s as usize..e as usize];
                let rule = rule_of(k);
                // Members ascend, so with a split the left side is a prefix.
                let (left, right_from) = match split {
                    Some(sp) => {
                        let cut = ids.partition_point(|&i| i < sp);
                        (&ids[..cut], Some(cut))
                    }
                    None => (ids, None),
                };
                for (x, &a) in left.iter().enumerate() {
                    let from = right_from.unwrap_or(x + 1);
                    for &bb in &ids[from..] {
                        if pre(&mut acc, a, bb) && !self.share_below(a, bb, k) {
                            visit(&mut acc, a, bb, rule);
                        }
                    }
                }
                acc
            })
            .collect()
    }

    /// Visits every candidate pair `(a, b)`, `a < b`, exactly once, in parallel over blocks.
    /// With `split = Some(s)`, only pairs across the split (`a < s <= b`) are visited (two
    /// files linked against each other). Each parallel task folds into its own accumulator
    /// from `init`; all accumulators are returned. `visit` also gets the rule of the block.
    pub fn par_visit_pairs<A, I, V>(&self, split: Option<u32>, init: I, visit: V) -> Vec<A>
    where
        A: Send,
        I: Fn() -> A + Sync + Send,
        V: Fn(&mut A, u32, u32, BlockRule) + Sync + Send,
    {
        self.par_visit_pairs_filtered(split, init, |_, _, _| true, visit)
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

    proptest! {
        /// Sorted batch blocking visits exactly the pairs that share an uncapped block (as
        /// the incremental index finds them), each once; with a split, only pairs across it.
        #[test]
        fn sorted_blocks_visit_each_candidate_pair_once(
            recs in prop::collection::vec((0usize..6, 0usize..5, 0u16..3, 0u8..4), 1..40),
            cap in 2usize..50,
            split in 0u32..40,
        ) {
            let cfg = BlockingConfig { max_block: cap, ..Default::default() };
            let records: Vec<Prepared> = recs.iter().map(|&(g, f, y, p)| rec(g, f, y, p)).collect();
            let mut index = BlockIndex::new(cfg.clone());
            for (i, r) in records.iter().enumerate() {
                index.insert(i as u32, r);
            }
            let mut expected = Vec::new();
            let mut buf = Vec::new();
            for (i, r) in records.iter().enumerate() {
                index.candidates(r, Some(i as u32), &mut buf);
                expected.extend(buf.iter().filter(|&&j| j as usize > i).map(|&j| (i as u32, j)));
            }
            let blocks = SortedBlocks::build(&records, &cfg);
            let mut got: Vec<(u32, u32)> = blocks
                .par_visit_pairs(None, Vec::new, |v, a, b, _| v.push((a, b)))
                .into_iter()
                .flatten()
                .collect();
            got.sort_unstable();
            prop_assert_eq!(&got, &expected, "each pair once, none missing");
            for &(a, b) in &got {
                prop_assert!(blocks.shares_block(a, b));
                prop_assert!(blocks.shared_rules(a, b) != 0);
            }
            let mut across: Vec<(u32, u32)> = blocks
                .par_visit_pairs(Some(split), Vec::new, |v, a, b, _| v.push((a, b)))
                .into_iter()
                .flatten()
                .collect();
            across.sort_unstable();
            let want: Vec<(u32, u32)> =
                expected.iter().copied().filter(|&(a, b)| a < split && split <= b).collect();
            prop_assert_eq!(across, want);
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
