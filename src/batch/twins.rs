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

use super::ScoredPair;
use crate::prepare::Prepared;
use crate::scoring::Scorer;

/// The records of a scored run and the scorer that weighs them again as a known twin's.
#[derive(Clone, Copy)]
pub struct KnownTwins<'a> {
    scorer: &'a Scorer,
    prepared: &'a [Prepared],
}

impl<'a> KnownTwins<'a> {
    /// Over `prepared`, the records `pairs` index, scored by `scorer`.
    pub fn new(scorer: &'a Scorer, prepared: &'a [Prepared]) -> Self {
        KnownTwins { scorer, prepared }
    }

    /// `p` weighed as a pair with a person known to be a twin ([`Scorer::score_with`]);
    /// unchanged when a record of the pair gives a birth order (it was weighed so).
    pub fn weigh(&self, p: &ScoredPair) -> ScoredPair {
        let (a, b) = (&self.prepared[p.a as usize], &self.prepared[p.b as usize]);
        if a.multiple_birth_order.is_some() || b.multiple_birth_order.is_some() {
            return *p;
        }
        let s = self.scorer.score_with(a, b, true);
        ScoredPair {
            weight: s.weight as f32,
            rival: s.rival,
            ..*p
        }
    }

    /// Per group of records (`ids[i]` is record `i`'s cluster or person, numbered from 0
    /// or 1), whether some record of it gives a birth order: the group is known to be one
    /// child of a multiple birth.
    pub fn known_groups(&self, ids: &[u32]) -> Vec<bool> {
        let n_groups = ids.iter().copied().max().unwrap_or(0) as usize + 1;
        let mut known = vec![false; n_groups];
        for (p, &g) in self.prepared.iter().zip(ids) {
            known[g as usize] |= p.multiple_birth_order.is_some();
        }
        known
    }

    /// The pairs with every link inside a cluster (of `ids`) holding a record with a birth
    /// order weighed again ([`KnownTwins::weigh`]); a link that falls below `upper` keeps
    /// its new weight and rival. `None` when nothing falls. Only such links are scored
    /// again: clusters with a birth order are few.
    pub fn cut_links(
        &self,
        ids: &[u32],
        pairs: &[ScoredPair],
        upper: f64,
    ) -> Option<Vec<ScoredPair>> {
        let multiple = self.known_groups(ids);
        let mut out: Option<Vec<ScoredPair>> = None;
        for (i, p) in pairs.iter().enumerate() {
            let c = ids[p.a as usize];
            if !(p.links(upper) && c == ids[p.b as usize] && multiple[c as usize]) {
                continue;
            }
            let again = self.weigh(p);
            if f64::from(again.weight) < upper {
                out.get_or_insert_with(|| pairs.to_vec())[i] = again;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linker::Linker;
    use crate::record::{Record, Sex};
    use crate::scoring::Rival;

    fn man(given: &str, birth_order: Option<u8>) -> Record {
        Record {
            phones: vec!["555-201-3344".into()],
            sex: Sex::Male,
            multiple_birth_order: birth_order,
            ..Record::for_tests(given, "Kellogg", (1995, 12, 24))
        }
    }

    #[test]
    fn a_link_in_a_cluster_known_to_hold_a_twin_is_weighed_again() {
        // 0 ~ 1: Larry ~ Lawrence, a nickname that links; 1 ~ 2: Lawrence ~ Lawrence,
        // where record 2 may say "second of triplets".
        let l = Linker::with_default_model();
        let upper = l.thresholds().upper;
        let run = |order: Option<u8>| {
            let prepared = vec![
                l.prepare(&man("Larry", None)),
                l.prepare(&man("Lawrence", None)),
                l.prepare(&man("Lawrence", order)),
            ];
            let pair = |a: u32, b: u32| {
                let s = l
                    .scorer()
                    .score(&prepared[a as usize], &prepared[b as usize]);
                ScoredPair {
                    a,
                    b,
                    weight: s.weight as f32,
                    rival: s.rival,
                }
            };
            let pairs = vec![pair(0, 1), pair(1, 2)];
            assert!(pairs.iter().all(|p| p.links(upper)), "{pairs:?}");
            (prepared, pairs)
        };
        let ids = [1, 1, 1];
        let (plain, pairs) = run(None);
        let twins = KnownTwins::new(l.scorer(), &plain);
        assert!(twins.cut_links(&ids, &pairs, upper).is_none());
        let (known, pairs) = run(Some(2));
        let twins = KnownTwins::new(l.scorer(), &known);
        let cut = twins.cut_links(&ids, &pairs, upper).expect("cut");
        assert!(f64::from(cut[0].weight) < upper, "{cut:?}");
        assert_eq!(cut[0].rival, Some(Rival::Twin));
        // A link that still reaches the threshold as a known twin's stays.
        assert_eq!(cut[1], pairs[1]);
        // Links across clusters are not this rule's.
        let apart = [1, 2, 2];
        assert!(twins.cut_links(&apart, &pairs, upper).is_none());
    }
}
