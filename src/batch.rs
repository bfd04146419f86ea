//! File-in, clusters-out deduplication on the shared core: prepare every record, block,
//! score candidate pairs in parallel (rayon), cluster the automatic links.
//!
//! The same [`Linker`] decides here as in the service; only the driving loop differs.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::blocking::{BlockIndex, CandidateStats};
use crate::linker::Linker;
use crate::prepare::Prepared;
use crate::record::Record;
use crate::scoring::{Guard, Model, TfTable};
use crate::Result;

/// One scored candidate pair (`a < b`, indexes into the record list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    /// First record.
    pub a: u32,
    /// Second record.
    pub b: u32,
    /// Match weight.
    pub weight: f32,
    /// Guard rail, if any.
    pub guard: Option<Guard>,
}

/// Counters and timings of a scoring run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreStats {
    /// Records prepared.
    pub records: u64,
    /// Candidate pairs scored.
    pub pairs_compared: u64,
    /// Pairs kept (weight at or above the keep threshold).
    pub pairs_kept: u64,
    /// Block lookups skipped because the block was over the cap.
    pub capped_block_lookups: u64,
    /// Candidate pairs whose records are the same true person (only with labels).
    pub true_candidate_pairs: u64,
    /// Seconds preparing records.
    pub prepare_secs: f64,
    /// Seconds building the blocking index.
    pub index_secs: f64,
    /// Seconds generating and scoring pairs.
    pub score_secs: f64,
}

/// Everything a dedup or eval run needs after scoring.
#[derive(Debug)]
pub struct ScoredRun {
    /// Prepared records, in input order.
    pub prepared: Vec<Prepared>,
    /// Kept pairs.
    pub pairs: Vec<ScoredPair>,
    /// Counters.
    pub stats: ScoreStats,
}

/// Returns a model whose term-frequency tables are counted from these prepared records
/// (given name, family name, postcode), which beats any generic table for this data.
pub fn model_with_data_tf(model: &Model, prepared: &[Prepared]) -> Model {
    let mut m = model.clone();
    m.tf.given_name = Some(TfTable::from_values(
        prepared
            .iter()
            .filter_map(|p| p.given.as_ref().map(|n| &*n.text)),
    ));
    m.tf.family_name = Some(TfTable::from_values(
        prepared
            .iter()
            .filter_map(|p| p.family.as_ref().map(|n| &*n.text)),
    ));
    m.tf.postcode = Some(TfTable::from_values(
        prepared.iter().filter_map(|p| p.postcode.as_deref()),
    ));
    m
}

/// Options of a scoring run.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Keep pairs at or above this weight.
    pub keep_min_weight: f64,
    /// Count term frequencies from the data instead of the model's tables.
    pub tf_from_data: bool,
    /// Show progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
}

fn bar(len: u64, what: &str, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
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
    let mut stats = ScoreStats {
        records: records.len() as u64,
        ..Default::default()
    };
    let t = Instant::now();
    let pb = bar(records.len() as u64, "prepare", opts.progress);
    let mut prepared: Vec<Prepared> = records
        .par_iter()
        .map(|r| {
            pb.inc(1);
            linker.prepare(r)
        })
        .collect();
    pb.finish_and_clear();
    let linker = if opts.tf_from_data {
        let l = Linker::new(model_with_data_tf(linker.scorer().model(), &prepared))?
            .with_blocking(linker.blocking().clone());
        prepared.par_iter_mut().for_each(|p| l.scorer().fill_tf(p));
        l
    } else {
        linker.clone()
    };
    stats.prepare_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut index = BlockIndex::new(linker.blocking().clone());
    for (i, p) in prepared.iter().enumerate() {
        index.insert(i as u32, p);
    }
    stats.index_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let pb = bar(records.len() as u64, "score", opts.progress);
    let keep = opts.keep_min_weight;
    let scorer = linker.scorer();
    let parts: Vec<(Vec<ScoredPair>, u64, u64, u64)> = (0..prepared.len())
        .into_par_iter()
        .with_min_len(256)
        .map_init(Vec::new, |buf, i| {
            let p = &prepared[i];
            let CandidateStats { capped_blocks, .. } = index.candidates(p, None, buf);
            let mut kept = Vec::new();
            let (mut compared, mut true_pairs) = (0u64, 0u64);
            for &j in buf.iter().filter(|&&j| j as usize > i) {
                compared += 1;
                if let Some(l) = labels {
                    true_pairs += u64::from(l[i] == l[j as usize]);
                }
                let s = scorer.score(p, &prepared[j as usize]);
                if s.weight >= keep {
                    kept.push(ScoredPair {
                        a: i as u32,
                        b: j,
                        weight: s.weight as f32,
                        guard: s.guard,
                    });
                }
            }
            pb.inc(1);
            (kept, compared, capped_blocks as u64, true_pairs)
        })
        .collect();
    pb.finish_and_clear();
    let mut pairs = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
    for (kept, compared, capped, true_pairs) in parts {
        pairs.extend(kept);
        stats.pairs_compared += compared;
        stats.capped_block_lookups += capped;
        stats.true_candidate_pairs += true_pairs;
    }
    stats.pairs_kept = pairs.len() as u64;
    stats.score_secs = t.elapsed().as_secs_f64();
    Ok((
        linker,
        ScoredRun {
            prepared,
            pairs,
            stats,
        },
    ))
}

/// Disjoint sets over record indexes.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
        }
    }

    /// The representative of `x`'s set.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// Joins two sets (the smaller representative wins, so results are deterministic).
    pub fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }
}

/// Clusters records by the automatic links: pairs at or above `upper` with no guard rail.
/// Returns a cluster number per record, numbered from 1 in order of first appearance.
pub fn cluster(n: usize, pairs: &[ScoredPair], upper: f64) -> Vec<u32> {
    let mut uf = UnionFind::new(n);
    for p in pairs {
        if p.guard.is_none() && p.weight as f64 >= upper {
            uf.union(p.a, p.b);
        }
    }
    let mut number = vec![0u32; n];
    let mut next = 0u32;
    (0..n as u32)
        .map(|i| {
            let r = uf.find(i) as usize;
            if number[r] == 0 {
                next += 1;
                number[r] = next;
            }
            number[r]
        })
        .collect()
}

/// Summary of a dedup run, for `--report` and the terminal.
#[derive(Debug, Clone, Serialize)]
pub struct DedupSummary {
    /// What reading found.
    pub input: crate::input::ReadSummary,
    /// Scoring counters and timings.
    pub scoring: ScoreStats,
    /// Number of clusters.
    pub clusters: u64,
    /// Cluster sizes: size → how many clusters.
    pub cluster_sizes: std::collections::BTreeMap<u32, u64>,
    /// Pairs between the thresholds (or guarded above) across clusters: review candidates.
    pub review_pairs: u64,
    /// Total wall time in seconds.
    pub total_secs: f64,
}

/// Counts cluster sizes.
pub fn cluster_sizes(ids: &[u32]) -> std::collections::BTreeMap<u32, u64> {
    let mut count = vec![0u32; ids.len() + 1];
    for &c in ids {
        count[c as usize] += 1;
    }
    let mut sizes = std::collections::BTreeMap::new();
    for &n in count.iter().filter(|&&n| n > 0) {
        *sizes.entry(n).or_default() += 1;
    }
    sizes
}

/// Elapsed seconds helper for summaries.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: u32, b: u32, weight: f32) -> ScoredPair {
        ScoredPair {
            a,
            b,
            weight,
            guard: None,
        }
    }

    #[test]
    fn clusters_follow_links_above_upper_only() {
        let pairs = [pair(0, 1, 10.0), pair(1, 2, 3.0), pair(3, 4, 12.0)];
        let ids = cluster(5, &pairs, 8.0);
        assert_eq!(ids, vec![1, 1, 2, 3, 3]);
        let sizes = cluster_sizes(&ids);
        assert_eq!(sizes[&2], 2);
        assert_eq!(sizes[&1], 1);
    }

    #[test]
    fn guarded_pairs_never_join() {
        let mut p = pair(0, 1, 30.0);
        p.guard = Some(Guard::GivenNameDiffers);
        assert_eq!(cluster(2, &[p], 8.0), vec![1, 2]);
    }
}
