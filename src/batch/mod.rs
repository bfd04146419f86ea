//! File-in, clusters-out deduplication on the shared core, built for millions of records:
//! read and prepare in parallel, block by sorting, stream candidate pairs through the scorer
//! keeping only pairs at or above the lower threshold, cluster without chaining, explain
//! the review pairs. The same [`crate::linker::Linker`] decides here as in the service.
//!
//! - [`score`]: preparation and the parallel pair loop ([`score_records`], [`score_prepared`]),
//!   which skips hopeless pairs exactly with the scorer's [`crate::scoring::WeightBound`].
//! - [`cluster`](mod@cluster): clustering that refuses to chain weak links ([`cluster_guarded`]).
//! - [`dataset`]: records read straight into prepared form with compact keys.
//! - [`dedup`](mod@dedup): a whole dedup run and its report; review pairs with explanations.
//! - [`link`](mod@link): linking two files.
//! - [`readable`]: results joined back to the input's rows, and review pairs a person reads.
//! - [`rescan`](mod@rescan): re-scanning a store for duplicate persons.
//! - [`sweep`](mod@sweep): clustering scored pairs at each threshold and measuring the
//!   clusters against ground truth ([`crate::eval`]).

pub mod attach;
pub use attach::Identity;
pub mod cluster;
pub mod dataset;
pub mod dedup;
pub mod link;
pub mod readable;
pub mod rescan;
pub mod score;
pub mod sweep;
pub mod twins;

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::linker::ScoredPair;
pub use crate::progress::bar as progress_bar;
pub use cluster::{cluster, cluster_guarded, ChainStats, Clustering, GuardedOptions, UnionFind};
pub use dataset::{read_dataset, Dataset, Keys};
pub use dedup::{
    contradicts, dedup, review_pairs, write_clusters, write_review, ChainGuards, ChainRule,
    DedupOptions, DedupResult, DedupSummary, ReviewKind, ReviewPair, Timings,
};
pub use link::{decision_name, link, write_links, LinkOptions, LinkResult, LinkRow};
pub use rescan::{rescan, rescan_dir, RescanMode, RescanOptions, RescanSummary};
pub use score::{
    model_with_data_prior, model_with_data_rivals, model_with_data_tf, prepare_all, score_prepared,
    score_records, ScoreOptions, ScoreStats, ScoredRun,
};
pub use sweep::{sweep, sweep_with_relations};

/// Counts cluster sizes: size → how many clusters (ids numbered from 1).
pub fn cluster_sizes(ids: &[u32]) -> BTreeMap<u32, u64> {
    let mut count = vec![0u32; ids.len() + 1];
    for &c in ids {
        count[c as usize] += 1;
    }
    let mut sizes = BTreeMap::new();
    for &n in count.iter().filter(|&&n| n > 0) {
        *sizes.entry(n).or_default() += 1;
    }
    sizes
}

/// Elapsed seconds helper for summaries.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
