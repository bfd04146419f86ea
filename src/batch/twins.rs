//! Persons known to be one child of a multiple birth.
//!
//! A record that gives a multiple-birth order says its person has a co-twin in the same
//! household with the same birth date; a pair with that record on one side is weighed
//! against a twin as likely a priori as the same person ([`crate::scoring::rivals`]). The
//! person's *other* records do not say it, so a pair between two of them is weighed
//! against the population's share of twins, and a co-twin with an alike name (Larry beside
//! his triplet Lawrence) can link. Clusters know more than pairs: once a cluster holds a
//! record with a birth order, every link in it between two records that give none is
//! weighed again as the service weighs a query against a person known to be a twin
//! ([`crate::linker::Linker::decide`]), and a link that no longer reaches the upper
//! threshold is cut and left for review with the twin as its reason.

use rayon::prelude::*;

use super::attach::Identity;
use super::ScoredPair;
use crate::prepare::Prepared;
use crate::scoring::{Rival, Scorer};

/// The weight of each pair were one of its persons known to be a twin
/// ([`Scorer::score_with`]); for a pair where a record gives a birth order, its weight.
pub fn known_twin_weights(
    scorer: &Scorer,
    prepared: &[Prepared],
    pairs: &[ScoredPair],
) -> Vec<f32> {
    pairs
        .par_iter()
        .with_min_len(4096)
        .map(|p| {
            let (a, b) = (&prepared[p.a as usize], &prepared[p.b as usize]);
            if a.multiple_birth_order.is_some() || b.multiple_birth_order.is_some() {
                p.weight
            } else {
                scorer.score_with(a, b, true).weight as f32
            }
        })
        .collect()
}

/// `p` weighed as a pair with a person known to be a twin, for a pair where neither record
/// gives a birth order (rescan: a stored person whose other record gives one).
pub fn as_known_twin(scorer: &Scorer, prepared: &[Prepared], p: &ScoredPair) -> ScoredPair {
    let (a, b) = (&prepared[p.a as usize], &prepared[p.b as usize]);
    if a.multiple_birth_order.is_some() || b.multiple_birth_order.is_some() {
        return *p;
    }
    let s = scorer.score_with(a, b, true);
    ScoredPair {
        weight: s.weight as f32,
        rival: s.rival,
        ..*p
    }
}

/// The pairs with every link cut that joins two records without a birth order in a
/// cluster (of `ids`) holding a record with one, when its known-twin weight
/// (`known_twin`, aligned with `pairs`) falls below `upper`: the cut pair keeps that
/// weight and the twin as its rival. `None` when nothing is cut (or `known_twin` is
/// empty).
pub fn cut_known_twin_links(
    ids: &[u32],
    pairs: &[ScoredPair],
    who: &[Identity],
    known_twin: &[f32],
    upper: f64,
) -> Option<Vec<ScoredPair>> {
    if known_twin.is_empty() || who.is_empty() {
        return None;
    }
    let n_clusters = ids.iter().copied().max().unwrap_or(0) as usize + 1;
    let mut multiple = vec![false; n_clusters];
    for (i, &c) in ids.iter().enumerate() {
        multiple[c as usize] |= who[i].birth_order.is_some();
    }
    let cut = |i: usize, p: &ScoredPair| {
        p.links(upper)
            && ids[p.a as usize] == ids[p.b as usize]
            && multiple[ids[p.a as usize] as usize]
            && f64::from(known_twin[i]) < upper
    };
    if !pairs.iter().enumerate().any(|(i, p)| cut(i, p)) {
        return None;
    }
    Some(
        pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if cut(i, p) {
                    ScoredPair {
                        weight: known_twin[i],
                        rival: Some(Rival::Twin),
                        ..*p
                    }
                } else {
                    *p
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(birth_order: Option<u8>) -> Identity {
        Identity {
            named: true,
            birth_order,
        }
    }

    #[test]
    fn a_link_in_a_cluster_known_to_hold_a_twin_is_weighed_again() {
        // 0 ~ 1 link at 9 (Larry ~ Lawrence), 1 ~ 2 at 12 (Larry ~ Larry, "second of
        // triplets"); as a known twin's, 0 ~ 1 weighs 4, 1 ~ 2 is unchanged.
        let ids = [1, 1, 1];
        let pairs = [ScoredPair::new(0, 1, 9.0), ScoredPair::new(1, 2, 12.0)];
        let known = [4.0, 12.0];
        let plain = [who(None), who(None), who(None)];
        assert!(cut_known_twin_links(&ids, &pairs, &plain, &known, 8.0).is_none());
        let twin = [who(None), who(None), who(Some(2))];
        let cut = cut_known_twin_links(&ids, &pairs, &twin, &known, 8.0).expect("cut");
        assert_eq!(cut[0].weight, 4.0);
        assert_eq!(cut[0].rival, Some(Rival::Twin));
        assert_eq!(cut[1], pairs[1]);
        // A link that still reaches the threshold as a known twin's stays.
        let strong = [8.5, 12.0];
        assert!(cut_known_twin_links(&ids, &pairs, &twin, &strong, 8.0).is_none());
        // Links across clusters are not this rule's.
        let apart = [1, 2, 2];
        assert!(cut_known_twin_links(&apart, &pairs, &twin, &known, 8.0).is_none());
    }
}
