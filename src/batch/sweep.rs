//! The threshold sweep of an evaluation: the scored pairs clustered at each upper
//! threshold, the clusters measured against ground truth with [`crate::eval`]'s measures.

use crate::eval::{quality, relatives_linked, Quality, Relations};
use crate::scoring::Thresholds;

use super::attach::{attach_nameless, Identity};
use super::twins::KnownTwins;
use super::{cluster, ScoredPair};

/// Quality at each upper threshold (lower fixed). Records are clustered by their links,
/// links a known twin's weight no longer carries are cut ([`KnownTwins::cut_links`];
/// `None`: not applied), then nameless records join
/// their sole named candidate ([`attach_nameless`]); `who[i]` is what record `i` says of
/// itself (an empty slice: every record has a given name).
pub fn sweep(
    labels: &[u32],
    pairs: &[ScoredPair],
    who: &[Identity],
    twins: Option<&KnownTwins>,
    uppers: &[f64],
    lower: f64,
) -> Vec<Quality> {
    sweep_with_relations(labels, pairs, who, twins, uppers, lower, None)
}

/// [`sweep`], counting the relatives each row's links merged when `relations` is given.
pub fn sweep_with_relations(
    labels: &[u32],
    pairs: &[ScoredPair],
    who: &[Identity],
    twins: Option<&KnownTwins>,
    uppers: &[f64],
    lower: f64,
    relations: Option<&Relations>,
) -> Vec<Quality> {
    uppers
        .iter()
        .map(|&upper| {
            let mut ids = cluster(labels.len(), pairs, upper);
            let cut = twins.and_then(|t| t.cut_links(&ids, pairs, upper));
            if let Some(cut) = &cut {
                ids = cluster(labels.len(), cut, upper);
            }
            let pairs = cut.as_deref().unwrap_or(pairs);
            if !who.is_empty() {
                let t = Thresholds { upper, lower };
                ids = attach_nameless(&ids, pairs, who, t, |_, _| false).0;
            }
            let mut q = quality(&ids, labels, pairs, upper, lower);
            if let Some(r) = relations {
                q.relatives_linked = relatives_linked(&ids, labels, r);
            }
            q
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: u32, b: u32, weight: f32) -> ScoredPair {
        ScoredPair::new(a, b, weight)
    }

    #[test]
    fn sweep_is_monotone_in_cluster_count() {
        let labels = [0, 0, 1, 1];
        let pairs = [p(0, 1, 12.0), p(2, 3, 6.0), p(1, 2, 3.0)];
        let rows = sweep(&labels, &pairs, &[], None, &[2.0, 5.0, 10.0, 15.0], 0.0);
        let clusters: Vec<u64> = rows.iter().map(|q| q.clusters).collect();
        assert_eq!(clusters, vec![1, 2, 3, 4]);
        assert_eq!(rows[1].precision, 1.0);
        assert_eq!(rows[1].recall, 1.0);
    }
}
