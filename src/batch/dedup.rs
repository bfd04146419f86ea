//! A whole dedup run over prepared records: score, cluster without chaining, pick the
//! review pairs, and summarise; plus the writers for clusters and explained review pairs.
//!
//! Review pairs carry only record keys, scores and per-comparison levels and weights:
//! never a field value.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::eval::Quality;
use crate::input::ReadSummary;
use crate::linker::{pair_decision, Decision, Linker};
use crate::prepare::Prepared;
use crate::scoring::{weight_to_prob, Comparison, Explanation, Rival, Thresholds};
use crate::Result;

use super::attach::attach_nameless;
use super::cluster::{cluster_guarded, ChainStats, Clustering, GuardedOptions};
use super::dataset::{Dataset, Keys};
use super::score::{score_prepared, ScoreOptions, ScoreStats, ScoredRun};
use super::{cluster_sizes, ScoredPair};

/// Options of a dedup run.
#[derive(Debug, Clone)]
pub struct DedupOptions {
    /// Count term frequencies from the data instead of the model's tables.
    pub tf_from_data: bool,
    /// Progress bars on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Most cross pairs checked per union while clustering (see [`GuardedOptions`]).
    pub max_cross_pairs: usize,
    /// Which cross pairs can refuse a union (see [`ChainRule`]).
    pub chain_rule: ChainRule,
}

/// Which record pairs across two groups refuse their union while clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainRule {
    /// Check only cross pairs that share a block (pairs the run compared); otherwise
    /// every cross pair is scored.
    pub compared_only: bool,
    /// Which rivals on a cross pair refuse the union, besides a weight at or below
    /// `−upper` ([`contradicts`]).
    pub guards: ChainGuards,
}

/// Rivals that count as a contradiction in [`ChainRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainGuards {
    /// None: only the score counts.
    None,
    /// Multiple-birth orders recorded and different: twins, whatever else agrees.
    BirthOrder,
    /// Also every cross pair a relative holds below the upper threshold
    /// ([`crate::scoring::Rival`]): a twin or sibling could have the two records. These
    /// also fire on one-off data-entry errors within one person, so across a cluster they
    /// cost recall for little precision; the direct pair's rival already keeps it from
    /// linking.
    All,
}

impl ChainGuards {
    fn refuses(self, s: &crate::scoring::PairScore, upper: f64) -> bool {
        match (self, s.rival) {
            (_, None) | (ChainGuards::None, _) => false,
            (_, Some(Rival::BirthOrderDiffers)) => true,
            (ChainGuards::BirthOrder, _) => false,
            (ChainGuards::All, Some(_)) => s.weight < upper,
        }
    }
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            tf_from_data: true,
            progress: false,
            max_cross_pairs: GuardedOptions::new(0.0).max_cross_pairs,
            chain_rule: ChainRule {
                compared_only: false,
                guards: ChainGuards::BirthOrder,
            },
        }
    }
}

/// Why a pair goes to a registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// Its score lies between the thresholds.
    BetweenThresholds,
    /// A relative sharing the household could have the records ([`Rival`]).
    Rival,
    /// A link that clustering refused: joining would have chained records that contradict
    /// each other (see [`super::cluster`](mod@super::cluster)).
    Chain,
}

impl ReviewKind {
    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            ReviewKind::BetweenThresholds => "between_thresholds",
            ReviewKind::Rival => "rival",
            ReviewKind::Chain => "chain",
        }
    }

    /// Why a person must decide, in words.
    pub fn reason(self) -> &'static str {
        match self {
            ReviewKind::BetweenThresholds => {
                "the weight is between the thresholds: too high to keep the records apart, \
                 too low to link them without a person"
            }
            ReviewKind::Rival => {
                "a relative sharing the household could have these records as well"
            }
            ReviewKind::Chain => {
                "linking would put records that contradict each other into one cluster"
            }
        }
    }
}

/// A pair for review, between two different clusters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewPair {
    /// The pair and its score.
    pub pair: ScoredPair,
    /// Why it needs a person.
    pub kind: ReviewKind,
}

/// Timings per phase, in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Reading and preparing the input (when read from a file).
    pub read_prepare: f64,
    /// Term frequencies.
    pub term_frequencies: f64,
    /// Building the blocks.
    pub blocking: f64,
    /// Generating and scoring pairs.
    pub scoring: f64,
    /// Clustering (with the chaining check).
    pub clustering: f64,
    /// Writing outputs.
    pub writing: f64,
    /// The whole run.
    pub total: f64,
}

/// Summary of a dedup run, for `--report` and the terminal.
#[derive(Debug, Clone, Serialize)]
pub struct DedupSummary {
    /// What reading found (when read from a file).
    pub input: Option<ReadSummary>,
    /// Scoring counters (pairs compared, blocks, capped blocks, per rule).
    pub scoring: ScoreStats,
    /// What the chaining check did.
    pub chaining: ChainStats,
    /// Number of clusters.
    pub clusters: u64,
    /// Cluster sizes: size → how many clusters.
    pub cluster_sizes: BTreeMap<u32, u64>,
    /// Review pairs (between clusters).
    pub review_pairs: u64,
    /// Review pairs by reason.
    pub review_by_reason: BTreeMap<&'static str, u64>,
    /// Timings per phase.
    pub timings: Timings,
    /// Quality of the clusters against ground truth, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
}

/// Everything a dedup run produced.
#[derive(Debug)]
pub struct DedupResult {
    /// The linker used (with the data's term frequencies when asked).
    pub linker: Linker,
    /// Keys of the records.
    pub keys: Keys,
    /// The scored run: prepared records, kept pairs, blocks.
    pub run: ScoredRun,
    /// The clusters.
    pub clustering: Clustering,
    /// Pairs for review, sorted by record.
    pub review: Vec<ReviewPair>,
    /// The summary (timings of reading and writing are the caller's to fill in).
    pub summary: DedupSummary,
}

/// Whether two records may not share a cluster: their decision weight is at or below
/// `−upper`, as sure they are two people as a link must be sure they are one (a weight
/// merely below the lower threshold is doubt, not contradiction: two records of one
/// person each corrupted in other fields often share too little to link on their own,
/// and refusing those chains cost 2.4 points of recall on the outside family at no gain
/// in precision on either family), or a rival of the chosen kind says they are
/// different people.
pub fn contradicts(linker: &Linker, a: &Prepared, b: &Prepared, guards: ChainGuards) -> bool {
    let s = linker.scorer().score(a, b);
    let t = linker.thresholds();
    s.weight <= -t.upper || guards.refuses(&s, t.upper)
}

/// The review pairs: kept pairs whose own decision is review and whose records ended in
/// different clusters, plus the links clustering refused.
pub fn review_pairs(
    pairs: &[ScoredPair],
    ids: &[u32],
    refused: &[ScoredPair],
    t: Thresholds,
) -> Vec<ReviewPair> {
    let mut out: Vec<ReviewPair> = pairs
        .par_iter()
        .filter(|p| ids[p.a as usize] != ids[p.b as usize])
        .filter_map(|p| {
            let kind = if p.rival.is_some() {
                ReviewKind::Rival
            } else {
                ReviewKind::BetweenThresholds
            };
            (pair_decision(&p.score(), t) == Decision::Review)
                .then_some(ReviewPair { pair: *p, kind })
        })
        .collect();
    out.extend(refused.iter().map(|p| ReviewPair {
        pair: *p,
        kind: ReviewKind::Chain,
    }));
    out.sort_by_key(|r| (r.pair.a, r.pair.b));
    out
}

/// Deduplicates prepared records: scores, clusters without chaining, picks review pairs.
///
/// # Errors
/// [`crate::Error::Model`] if the data-TF model does not validate (it always should).
pub fn dedup(linker: &Linker, data: Dataset, opts: &DedupOptions) -> Result<DedupResult> {
    let started = Instant::now();
    let t = linker.thresholds();
    let score_opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: opts.tf_from_data,
        progress: opts.progress,
    };
    let (linker, mut run) = score_prepared(linker, data.prepared, None, None, &score_opts)?;
    let c = Instant::now();
    let guarded = GuardedOptions {
        upper: t.upper,
        max_cross_pairs: opts.max_cross_pairs,
    };
    let prepared = &run.prepared;
    let rule = opts.chain_rule;
    let blocks = &run.blocks;
    let guard = |x: u32, y: u32| {
        (!rule.compared_only || blocks.shares_block(x, y))
            && contradicts(
                &linker,
                &prepared[x as usize],
                &prepared[y as usize],
                rule.guards,
            )
    };
    let mut clustering = cluster_guarded(prepared.len(), &run.pairs, guarded, guard);
    // Links between the records of a person known to be a twin are weighed again
    // (super::twins); the clusters are made again without the links that fall.
    if let Some(cut) = super::twins::KnownTwins::new(linker.scorer(), prepared).cut_links(
        &clustering.ids,
        &run.pairs,
        t.upper,
    ) {
        clustering = cluster_guarded(prepared.len(), &cut, guarded, guard);
        run.pairs = cut;
    }
    // A nameless record joins its sole named candidate unless anything across contradicts
    // (every contradiction guard counts here: this relaxes a guard, so it is strict).
    let who = super::Identity::of_all(prepared);
    let (ids, attached) = attach_nameless(&clustering.ids, &run.pairs, &who, t, |x, y| {
        contradicts(
            &linker,
            &prepared[x as usize],
            &prepared[y as usize],
            rule.guards,
        )
    });
    clustering.ids = ids;
    clustering.stats.nameless_attached = attached;
    let review = review_pairs(&run.pairs, &clustering.ids, &clustering.refused, t);
    let clustering_secs = c.elapsed().as_secs_f64();
    let sizes = cluster_sizes(&clustering.ids);
    let mut by_reason = BTreeMap::new();
    for r in &review {
        *by_reason.entry(r.kind.name()).or_default() += 1;
    }
    let summary = DedupSummary {
        input: None,
        timings: Timings {
            term_frequencies: run.stats.prepare_secs,
            blocking: run.stats.index_secs,
            scoring: run.stats.score_secs,
            clustering: clustering_secs,
            total: started.elapsed().as_secs_f64(),
            ..Default::default()
        },
        scoring: run.stats.clone(),
        chaining: clustering.stats.clone(),
        clusters: sizes.values().sum(),
        cluster_sizes: sizes,
        review_pairs: review.len() as u64,
        review_by_reason: by_reason,
        quality: None,
    };
    Ok(DedupResult {
        linker,
        keys: data.keys,
        run,
        clustering,
        review,
        summary,
    })
}

/// Reads ground truth `source,local_id,person_id` into a label per record of `keys`
/// (records missing from the truth get a label of their own).
///
/// # Errors
/// [`crate::Error::Io`], or [`crate::Error::InvalidInput`] naming a missing column.
pub fn labels_from_truth(path: &std::path::Path, keys: &Keys) -> Result<Vec<u32>> {
    crate::eval::labels_for_keys(path, keys.len(), |i| keys.get(i))
}

/// Writes `source,local_id,cluster_id`, one line per record.
///
/// # Errors
/// I/O errors.
pub fn write_clusters(out: impl Write, keys: &Keys, ids: &[u32]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
    w.write_record(["source", "local_id", "cluster_id"])?;
    let mut buf = itoa_buf();
    for (i, id) in ids.iter().enumerate() {
        let (s, l) = keys.get(i);
        w.write_record([s, l, fmt_u32(&mut buf, *id)])?;
    }
    w.flush()
}

fn itoa_buf() -> String {
    String::with_capacity(12)
}

fn fmt_u32(buf: &mut String, v: u32) -> &str {
    use std::fmt::Write as _;
    buf.clear();
    // Writing into a String cannot fail.
    let _ = write!(buf, "{v}");
    buf
}

/// One comparison's cell in the review file: `level:weight`, or `missing`.
fn explain_cell(e: &Explanation, c: Comparison) -> String {
    match e.comparisons.get(c.index()) {
        Some(o) if o.level == "missing" => "missing".to_string(),
        Some(o) => format!("{}:{:+.2}", o.level, o.weight),
        None => String::new(),
    }
}

/// Writes the review pairs with their explanations: keys, weight, probability, reason,
/// rival, then one `level:weight` column per comparison. No field values.
///
/// # Errors
/// I/O errors.
pub fn write_review(
    out: impl Write,
    keys: &Keys,
    prepared: &[Prepared],
    linker: &Linker,
    review: &[ReviewPair],
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
    let mut header = vec![
        "a_source",
        "a_local_id",
        "b_source",
        "b_local_id",
        "weight",
        "probability",
        "reason",
        "rival",
    ];
    header.extend(Comparison::ALL.iter().map(|c| c.name()));
    w.write_record(&header)?;
    // Explanations are computed in parallel, a slice at a time, so memory stays bounded.
    for chunk in review.chunks(65_536) {
        let rows: Vec<Vec<String>> = chunk
            .par_iter()
            .map(|r| {
                let (a, b) = (r.pair.a as usize, r.pair.b as usize);
                let e = linker.explain(&prepared[a], &prepared[b]);
                let (ka, kb) = (keys.get(a), keys.get(b));
                let mut row = vec![
                    ka.0.to_string(),
                    ka.1.to_string(),
                    kb.0.to_string(),
                    kb.1.to_string(),
                    format!("{:.2}", r.pair.weight),
                    format!("{:.6}", weight_to_prob(r.pair.weight as f64)),
                    r.kind.name().to_string(),
                    r.pair.rival.map(|g| g.reason()).unwrap_or("").to_string(),
                ];
                row.extend(Comparison::ALL.iter().map(|&c| explain_cell(&e, c)));
                row
            })
            .collect();
        for row in rows {
            w.write_record(&row)?;
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn rec(given: &str, family: &str, dob: (u16, u8, u8), order: Option<u8>) -> Record {
        Record {
            multiple_birth_order: order,
            ..Record::for_tests(given, family, dob)
        }
    }

    /// Doubt is not contradiction: two records of one person corrupted in different
    /// fields may share too little to link, yet a chain through a third may hold them;
    /// strangers and declared twins may not share a cluster.
    #[test]
    fn only_records_surely_of_two_people_refuse_a_chain() {
        let l = Linker::with_default_model();
        let t = l.thresholds();
        let score = |a: &Record, b: &Record| l.scorer().score(&l.prepare(a), &l.prepare(b));
        let refuses = |a: &Record, b: &Record| {
            contradicts(&l, &l.prepare(a), &l.prepare(b), ChainGuards::BirthOrder)
        };
        let a = rec("Wanda", "Kowalczyk", (1970, 3, 9), None);
        let weak = rec("Wanda", "Kowalski", (1970, 3, 8), None);
        let s = score(&a, &weak);
        assert!(s.weight < t.lower && s.weight > -t.upper, "{s:?}");
        assert!(!refuses(&a, &weak));
        let stranger = rec("Peter", "Ng", (1990, 1, 15), None);
        assert!(score(&a, &stranger).weight <= -t.upper);
        assert!(refuses(&a, &stranger));
        let (one, two) = (
            rec("Wanda", "Kowalczyk", (1970, 3, 9), Some(1)),
            rec("Wanda", "Kowalczyk", (1970, 3, 9), Some(2)),
        );
        assert!(refuses(&one, &two));
    }
}
