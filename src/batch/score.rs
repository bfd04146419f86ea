//! Preparation and the parallel pair loop: every candidate pair of a [`SortedBlocks`] is
//! scored once, on whichever rayon worker holds its block, and only pairs at or above the
//! keep threshold are stored. Memory is the records, the block lists and the kept pairs;
//! candidate pairs are never held.

use std::time::Instant;

use ahash::AHashMap;
use rayon::prelude::*;
use serde::Serialize;

use crate::blocking::{BlockRule, RuleBlockStats, SortedBlocks};
use crate::linker::Linker;
use crate::prepare::{NameCache, Prepared};
use crate::record::Record;
use crate::scoring::estimate::{estimate_cross_prior, estimate_prior, PriorCount, PRIOR_PAIRS};
use crate::scoring::{Model, TfTable};
use crate::Result;

use super::{progress_bar, ScoredPair};

/// Up to `n` candidate pairs spread over the blocks, for the bound's self-check.
fn sample_pairs(blocks: &SortedBlocks, split: Option<u32>, n: usize) -> Vec<(u32, u32)> {
    let count = blocks.block_count();
    let step = (count / 4_000).max(1);
    let mut out = Vec::with_capacity(n);
    for b in (0..count).step_by(step) {
        let (ids, _) = blocks.block(b);
        for (x, &a) in ids.iter().enumerate() {
            for &c in &ids[x + 1..] {
                if split.is_none_or(|s| a < s && s <= c) {
                    out.push((a, c));
                }
            }
        }
        if out.len() >= n {
            break;
        }
    }
    out.truncate(n);
    out
}

/// Counters and timings of a scoring run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreStats {
    /// Records prepared.
    pub records: u64,
    /// Block-pair visits: every pair of members of every live block (a pair sharing
    /// several blocks counts once per block). The cost driver of the pair loop.
    pub pair_visits: u64,
    /// Candidate pairs compared, each once. Exact (every pair sharing a block) when the
    /// run counts true pairs or has no weight bound; otherwise the pairs that passed the
    /// bound, since hopeless pairs are dropped before the once-per-pair check.
    pub pairs_compared: u64,
    /// Of those, pairs scored in full; the others were ruled out by the weight bound
    /// ([`crate::scoring::WeightBound`]) as unable to reach the keep threshold.
    pub pairs_scored_in_full: u64,
    /// Whether the weight bound was in use (it declines if its self-check fails).
    pub bound_used: bool,
    /// Pairs kept (weight at or above the keep threshold).
    pub pairs_kept: u64,
    /// Blocks (2 to `max_block` members) the pairs came from.
    pub blocks: u64,
    /// Blocks over the cap, skipped entirely (their records keep their other blocks).
    pub blocks_capped: u64,
    /// Kept for compatibility with per-record lookups: equal to `blocks_capped` here.
    pub capped_block_lookups: u64,
    /// Per blocking rule: blocks, capped blocks, largest block, pairs first found there.
    pub by_rule: BTreeMap<&'static str, RuleBlockStats>,
    /// Candidate pairs whose records are the same true person (only with labels).
    pub true_candidate_pairs: u64,
    /// What the run found of twins and household relatives in its input, when it counted
    /// them ([`model_with_data_rivals`]; `None`: the model's shares were used).
    pub rivals: Option<crate::scoring::estimate::rivals::RivalFit>,
    /// The prior λ the run counted from its input and scored with
    /// ([`estimate_prior`]; `None`: the model's λ was used).
    pub prior: Option<PriorCount>,
    /// Seconds preparing records (when this run prepared them).
    pub prepare_secs: f64,
    /// Seconds building the blocking index.
    pub index_secs: f64,
    /// Seconds generating and scoring pairs.
    pub score_secs: f64,
}

use std::collections::BTreeMap;

/// Everything a dedup or eval run needs after scoring.
#[derive(Debug)]
pub struct ScoredRun {
    /// Prepared records, in input order.
    pub prepared: Vec<Prepared>,
    /// Kept pairs, sorted by `(a, b)`.
    pub pairs: Vec<ScoredPair>,
    /// The blocks the pairs came from (candidate tests for clustering).
    pub blocks: SortedBlocks,
    /// Counters.
    pub stats: ScoreStats,
}

/// Options of a scoring run.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Keep pairs at or above this weight.
    pub keep_min_weight: f64,
    /// Count the population's statistics from the data instead of taking the model's:
    /// term frequencies, and the shares of twins and household relatives
    /// ([`model_with_data_rivals`]).
    pub tf_from_data: bool,
    /// Show progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
}

fn table_from<'a>(values: impl ParallelIterator<Item = &'a str>) -> TfTable {
    // Counted on borrowed strings (one allocation per distinct value, not per record),
    // then handed over with the frequencies `TfTable::from_values` would compute.
    let counts = values
        .fold(AHashMap::<&str, u32>::new, |mut m, v| {
            *m.entry(v).or_default() += 1;
            m
        })
        .reduce(AHashMap::new, |mut a, b| {
            for (k, c) in b {
                *a.entry(k).or_default() += c;
            }
            a
        });
    let total = counts.values().map(|&c| u64::from(c)).sum::<u64>().max(1) as f64;
    TfTable::from_frequencies(
        counts
            .into_iter()
            .map(|(k, c)| (k.to_string(), (c as f64 / total) as f32)),
        (1.0 / total) as f32,
    )
}

/// Returns a model whose term-frequency tables are counted from these prepared records
/// (given name, family name, postcode), which beats any generic table for this data.
pub fn model_with_data_tf(model: &Model, prepared: &[Prepared]) -> Model {
    let mut m = model.clone();
    m.tf.given_name = Some(table_from(
        prepared
            .par_iter()
            .filter_map(|p| p.given.as_ref().map(|n| &*n.text)),
    ));
    m.tf.family_name = Some(table_from(
        prepared
            .par_iter()
            .filter_map(|p| p.family.as_ref().map(|n| &*n.text)),
    ));
    m.tf.postcode = Some(table_from(
        prepared.par_iter().filter_map(|p| p.postcode.as_deref()),
    ));
    m
}

/// Most pairs sharing a family name that [`model_with_data_rivals`] looks at: as many as
/// `empi train` does (its `--em-max-pairs`), so a batch run learns the rivals' spelling
/// share where training would (a 100k standard set holds about 800 alike rival pairs in
/// 2M, 120 in 300k). Sampling them costs about 1.1–1.4 s on a 1M-record file.
const RIVAL_FIT_PAIRS: u64 = 2_000_000;

/// Returns a model whose rival shares (twins and household relatives per same-person
/// pair) and spelling shares are found in these prepared records, as `empi train` finds
/// them ([`crate::scoring::estimate::rivals`]): a file without households then pays nothing
/// for relatives it does not have, and one full of them is weighed against its own share.
/// The model's own shares stay when there are too few pairs sharing a family name; what
/// was found comes back beside the model, for reports.
pub fn model_with_data_rivals(
    model: &Model,
    prepared: &[Prepared],
) -> (Model, Option<crate::scoring::estimate::rivals::RivalFit>) {
    use crate::scoring::estimate::{em, rivals};
    let mut out = model.clone();
    let pairs = rivals::family_pairs(
        prepared,
        model.tf.given_name.as_ref(),
        &model.rivals.spelling,
        0x5eed,
        RIVAL_FIT_PAIRS,
        &indicatif::ProgressBar::hidden(),
    );
    let (m, u) = em::model_probs(model);
    let fit = rivals::fit(&pairs, &m, &u, &model.rivals, 1000, 1e-6);
    if let Some(f) = &fit {
        f.apply(&mut out.rivals);
        tracing::debug!(
            twin = f.twin_ratio,
            twin_evidence = f.twin_evidence,
            relative = f.relative_ratio,
            rare_if_rival = f.rare_if_rival,
            iterations = f.iterations,
            pairs = f.pairs,
            alike = ?f.alike_pairs,
            "rival and spelling shares counted from the input (per same-person pair)"
        );
    }
    (out, fit)
}

/// Returns a model whose prior λ is counted from these prepared records, as `empi train`
/// estimates it ([`estimate_prior`]; with `split = Some(s)`, among the pairs across records
/// `..s` and `s..`, [`estimate_cross_prior`], since linking two files scores only those),
/// with what was counted. The model's λ stays when nothing could be counted or the
/// training rules disagree ([`PriorCount::used`]).
pub fn model_with_data_prior(
    model: &Model,
    prepared: &[Prepared],
    split: Option<u32>,
) -> (Model, Option<PriorCount>) {
    let count = match split {
        None => estimate_prior(prepared, model, 0x5eed, PRIOR_PAIRS),
        Some(s) => estimate_cross_prior(prepared, s as usize, model, 0x5eed, PRIOR_PAIRS),
    };
    let mut out = model.clone();
    if let Some(p) = &count {
        if p.agreed {
            tracing::debug!(
                prior = p.prior,
                model_prior = p.model_prior,
                "prior counted from the input"
            );
        } else {
            tracing::warn!(
                by_rule = ?p.by_rule,
                model_prior = p.model_prior,
                "the training rules' estimates of the prior disagree; the model's is used"
            );
        }
        out.prior = p.used();
    }
    (out, count)
}

/// Prepares records in parallel through one [`NameCache`] (term frequencies left at 0;
/// [`score_prepared`] fills them). Equal to `linker.prepare` on each record, minus the
/// term frequencies.
pub fn prepare_all(linker: &Linker, records: &[Record], progress: bool) -> Vec<Prepared> {
    let cache = NameCache::new();
    let placeholders = &linker.scorer().model().placeholders;
    let pb = progress_bar(records.len() as u64, "prepare", progress);
    let out = records
        .par_iter()
        .with_min_len(1024)
        .map(|r| {
            pb.inc(1);
            Prepared::new_cached(r, placeholders, &cache)
        })
        .collect();
    pb.finish_and_clear();
    out
}

/// Prepares, blocks and scores all records. `labels` (true person per record) lets the
/// run count true pairs among candidates, for blocking recall.
///
/// Returns the linker actually used (with data term frequencies when asked) beside the run.
///
/// # Errors
/// [`crate::Error::Model`] if the data-TF model does not validate (it always should).
pub fn score_records(
    linker: &Linker,
    records: &[Record],
    labels: Option<&[u32]>,
    opts: &ScoreOptions,
) -> Result<(Linker, ScoredRun)> {
    let t = Instant::now();
    let prepared = prepare_all(linker, records, opts.progress);
    let prepare_secs = t.elapsed().as_secs_f64();
    let (linker, mut run) = score_prepared(linker, prepared, labels, None, opts)?;
    run.stats.prepare_secs += prepare_secs;
    Ok((linker, run))
}

/// Blocks and scores already prepared records (term frequencies are filled here: from the
/// data, or from the model's tables). With `split = Some(s)`, only pairs across records
/// `..s` and `s..` are scored (linking two files).
///
/// # Errors
/// [`crate::Error::Model`] if the data-TF model does not validate (it always should).
pub fn score_prepared(
    linker: &Linker,
    mut prepared: Vec<Prepared>,
    labels: Option<&[u32]>,
    split: Option<u32>,
    opts: &ScoreOptions,
) -> Result<(Linker, ScoredRun)> {
    let mut stats = ScoreStats {
        records: prepared.len() as u64,
        ..Default::default()
    };
    let t = Instant::now();
    let linker = if opts.tf_from_data {
        let model = model_with_data_tf(linker.scorer().model(), &prepared);
        let (model, found) = model_with_data_rivals(&model, &prepared);
        stats.rivals = found;
        let (model, prior) = model_with_data_prior(&model, &prepared, split);
        stats.prior = prior;
        Linker::new(model)?.with_blocking(linker.blocking().clone())
    } else {
        linker.clone()
    };
    let scorer = linker.scorer();
    prepared
        .par_iter_mut()
        .with_min_len(1024)
        .for_each(|p| scorer.fill_tf(p));
    stats.prepare_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut blocks = SortedBlocks::build(&prepared, linker.blocking());
    stats.index_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let bound = scorer.weight_bound(&prepared, &sample_pairs(&blocks, split, 20_000));
    stats.index_secs += t.elapsed().as_secs_f64();
    let t = Instant::now();
    stats.bound_used = bound.is_some();
    if bound.is_none() {
        tracing::warn!("weight bound failed its self-check; scoring every candidate pair");
    }
    let pb = progress_bar(blocks.pair_upper_bound(split), "score", opts.progress);
    let keep = opts.keep_min_weight;
    struct Acc {
        kept: Vec<ScoredPair>,
        compared: u64,
        full: u64,
        visits: u64,
        true_pairs: u64,
        by_rule: [u64; 8],
        tick: u64,
    }
    const TICK: u64 = 1 << 16;
    let init = || Acc {
        kept: Vec::new(),
        compared: 0,
        full: 0,
        visits: 0,
        true_pairs: 0,
        by_rule: [0; 8],
        tick: 0,
    };
    let score = |acc: &mut Acc, a: u32, b: u32| {
        acc.full += 1;
        let s = scorer.score(&prepared[a as usize], &prepared[b as usize]);
        if s.weight >= keep {
            acc.kept.push(ScoredPair {
                a,
                b,
                weight: s.weight as f32,
                rival: s.rival,
            });
        }
    };
    let tick = |acc: &mut Acc| {
        acc.tick += 1;
        if acc.tick == TICK {
            pb.inc(TICK);
            acc.tick = 0;
        }
    };
    let parts = match (&bound, labels) {
        // Fast path: the bound runs before the once-per-pair check, so hopeless pairs never
        // touch the block lists; pairs are then counted once only when scored in full.
        (Some(bd), None) => blocks.par_visit_pairs_filtered(
            split,
            init,
            |acc, a, b| {
                acc.visits += 1;
                tick(acc);
                !bd.below(a, b, keep)
            },
            |acc, a, b, rule| {
                acc.compared += 1;
                acc.by_rule[rule as usize] += 1;
                score(acc, a, b);
            },
        ),
        _ => blocks.par_visit_pairs(split, init, |acc, a, b, rule| {
            acc.visits += 1;
            acc.compared += 1;
            acc.by_rule[rule as usize] += 1;
            if let Some(l) = labels {
                acc.true_pairs += u64::from(l[a as usize] == l[b as usize]);
            }
            tick(acc);
            if bound.as_ref().is_some_and(|bd| bd.below(a, b, keep)) {
                return;
            }
            score(acc, a, b);
        }),
    };
    pb.finish_and_clear();
    let mut pairs = Vec::with_capacity(parts.iter().map(|p| p.kept.len()).sum());
    let mut by_rule = [0u64; 8];
    for part in parts {
        pairs.extend(part.kept);
        stats.pairs_compared += part.compared;
        stats.pairs_scored_in_full += part.full;
        stats.pair_visits += part.visits;
        stats.true_candidate_pairs += part.true_pairs;
        for (t, n) in by_rule.iter_mut().zip(part.by_rule) {
            *t += n;
        }
    }
    // Blocks finish in any order; sorting makes every later step deterministic.
    pairs.par_sort_unstable_by_key(|p| (p.a, p.b));
    blocks.count_pairs_by_rule(&by_rule);
    stats.pairs_kept = pairs.len() as u64;
    stats.blocks = blocks.block_count() as u64;
    stats.blocks_capped = blocks.capped_blocks();
    stats.capped_block_lookups = stats.blocks_capped;
    stats.by_rule = blocks
        .rule_stats()
        .iter()
        .map(|(r, s): &(BlockRule, RuleBlockStats)| (r.name(), s.clone()))
        .collect();
    stats.score_secs = t.elapsed().as_secs_f64();
    Ok((
        linker,
        ScoredRun {
            prepared,
            pairs,
            blocks,
            stats,
        },
    ))
}
