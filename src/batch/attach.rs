//! Attaching records that carry no given name to the one person they can only be.
//!
//! A record without a given name (missing, or a placeholder such as "Baby Boy") in a
//! household a twin could share never links on its own pair score:
//! [`Rival::TwinNoGivenName`] holds it back because nothing in the pair tells newborn twins
//! apart. Whether it *could* be a twin is a
//! question about the other records, not about the pair, so it is answered here, after
//! clustering, with the same rule the service applies to one query
//! ([`crate::linker::Linker::decide`]):
//!
//! A group of records none of which has a given name joins a cluster `T` when
//! - some pair between them is held back only by [`Rival::TwinNoGivenName`] (without the
//!   twin it would reach the upper threshold), with a named record of `T` on the other
//!   side;
//! - no record of any *other* cluster that has a named record is plausible: none scores at
//!   or above the lower threshold against the group (an opposite-sex twin, far below it,
//!   is not; a same-sex twin is, and the records stay apart for review);
//! - no pair across the group and `T` contradicts (checked with the caller's rule, which
//!   in dedup scores every cross pair);
//! - the group and `T` are one child as far as multiple births go: no record of either
//!   gives a multiple-birth order, or all give the same one. A named person whose records
//!   say "second of twins" has a co-twin of that household and birth date whom the file
//!   may hold only as this nameless record
//!   ([`crate::linker::one_child_of_the_birth`]).
//!
//! Records of other nameless groups are not rivals: two "Baby Boy" records of one newborn
//! from two sources are common, and each joins the named person on its own.

use ahash::{AHashMap, AHashSet};

use super::cluster::{number, UnionFind};
use super::ScoredPair;
use crate::linker::one_child_of_the_birth;
use crate::prepare::Prepared;
use crate::scoring::{Rival, Thresholds};

/// What attaching reads of one record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    /// The record has a given name.
    pub named: bool,
    /// The multiple-birth order the record gives.
    pub birth_order: Option<u8>,
}

impl Identity {
    /// The identity of each prepared record, in order.
    pub fn of_all(prepared: &[Prepared]) -> Vec<Identity> {
        prepared
            .iter()
            .map(|p| Identity {
                named: p.given.is_some(),
                birth_order: p.multiple_birth_order,
            })
            .collect()
    }
}

/// The one multiple-birth order the records give: `Ok(None)` when none gives one,
/// `Err(())` when they give several.
fn birth_order_of(records: &[u32], who: &[Identity]) -> Result<Option<u8>, ()> {
    let mut order = None;
    for &r in records {
        match (order, who[r as usize].birth_order) {
            (_, None) => {}
            (None, o) => order = o,
            (Some(a), Some(b)) if a != b => return Err(()),
            _ => {}
        }
    }
    Ok(order)
}

/// Re-clusters `ids` (numbered from 1) by attaching nameless groups to their sole named
/// candidate. `who[i]` is what record `i` says of itself ([`Identity`]); `contradicts(x, y)` is
/// the caller's cross-pair rule. Returns the new ids (numbered from 1 in order of first
/// appearance) and how many groups were attached.
pub fn attach_nameless<C>(
    ids: &[u32],
    pairs: &[ScoredPair],
    who: &[Identity],
    t: Thresholds,
    contradicts: C,
) -> (Vec<u32>, u64)
where
    C: Fn(u32, u32) -> bool,
{
    let n_clusters = ids.iter().copied().max().unwrap_or(0) as usize + 1;
    let mut has_named = vec![false; n_clusters];
    for (i, &c) in ids.iter().enumerate() {
        has_named[c as usize] |= who[i].named;
    }
    // Per nameless cluster: the named clusters its strong held-back pairs reach, and every
    // named cluster that is a plausible rival.
    #[derive(Default)]
    struct Reach {
        strong: AHashSet<u32>,
        plausible: AHashSet<u32>,
    }
    let mut reach: AHashMap<u32, Reach> = AHashMap::new();
    for p in pairs {
        for (x, y) in [(p.a, p.b), (p.b, p.a)] {
            let (cx, cy) = (ids[x as usize], ids[y as usize]);
            if cx == cy || has_named[cx as usize] || !has_named[cy as usize] {
                continue;
            }
            if p.score().contradicts(t.lower) {
                continue;
            }
            let r = reach.entry(cx).or_default();
            r.plausible.insert(cy);
            if p.rival == Some(Rival::TwinNoGivenName) && who[y as usize].named {
                r.strong.insert(cy);
            }
        }
    }
    let mut members: AHashMap<u32, Vec<u32>> = AHashMap::new();
    let involved: AHashSet<u32> = reach
        .iter()
        .filter(|(_, r)| r.strong.len() == 1 && r.plausible.len() == 1)
        .flat_map(|(&c, r)| [c, *r.strong.iter().next().expect("one")])
        .collect();
    for (i, &c) in ids.iter().enumerate() {
        if involved.contains(&c) {
            members.entry(c).or_default().push(i as u32);
        }
    }
    let mut uf = UnionFind::new(n_clusters);
    let mut attached = 0;
    let mut sole: Vec<(u32, u32)> = reach
        .iter()
        .filter(|(_, r)| r.strong.len() == 1 && r.plausible.len() == 1)
        .map(|(&c, r)| (c, *r.strong.iter().next().expect("one")))
        .collect();
    sole.sort_unstable();
    for (from, into) in sole {
        let one_child = match (
            birth_order_of(&members[&from], who),
            birth_order_of(&members[&into], who),
        ) {
            (Ok(a), Ok(b)) => one_child_of_the_birth(a, b),
            _ => false,
        };
        let ok = one_child
            && members[&from]
                .iter()
                .all(|&x| members[&into].iter().all(|&y| !contradicts(x, y)));
        if ok {
            uf.union(from, into);
            attached += 1;
        }
    }
    // Each record takes its cluster's set, renumbered from 1 in order of first appearance.
    let mut by_record = UnionFind::new(ids.len());
    let mut first: Vec<Option<u32>> = vec![None; n_clusters];
    for (i, &c) in ids.iter().enumerate() {
        let root = uf.find(c) as usize;
        match first[root] {
            Some(f) => by_record.union(f, i as u32),
            None => first[root] = Some(i as u32),
        }
    }
    let out = number(&mut by_record, ids.len());
    (out, attached)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        upper: 8.0,
        lower: 0.0,
    };

    fn nameless(a: u32, b: u32, weight: f32) -> ScoredPair {
        ScoredPair {
            a,
            b,
            weight,
            rival: Some(Rival::TwinNoGivenName),
        }
    }

    /// Identities from given-name flags, no birth orders.
    fn names(named: &[bool]) -> Vec<Identity> {
        named
            .iter()
            .map(|&named| Identity {
                named,
                birth_order: None,
            })
            .collect()
    }

    fn same(ids: &[u32], a: usize, b: usize) -> bool {
        ids[a] == ids[b]
    }

    #[test]
    fn a_placeholder_joins_its_only_named_candidate() {
        // 0: "Baby Boy", 1 and 2: the named child (already one cluster).
        let ids = [1, 2, 2];
        let named = names(&[false, true, true]);
        let pairs = [nameless(0, 1, 6.0), nameless(0, 2, 4.0)];
        let (ids, n) = attach_nameless(&ids, &pairs, &named, T, |_, _| false);
        assert_eq!(n, 1);
        assert!(same(&ids, 0, 1) && same(&ids, 0, 2));
    }

    #[test]
    fn a_same_sex_twin_keeps_the_placeholder_apart() {
        // 0: "Baby Boy", 1: John, 2: James (twins, separate clusters).
        let ids = [1, 2, 3];
        let named = names(&[false, true, true]);
        let pairs = [nameless(0, 1, 6.0), nameless(0, 2, 6.0)];
        let (ids, n) = attach_nameless(&ids, &pairs, &named, T, |_, _| false);
        assert_eq!(n, 0);
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn a_weaker_uncontradicted_rival_also_keeps_it_apart() {
        let ids = [1, 2, 3];
        let named = names(&[false, true, true]);
        let pairs = [nameless(0, 1, 6.0), nameless(0, 2, 3.0)];
        let (_, n) = attach_nameless(&ids, &pairs, &named, T, |_, _| false);
        assert_eq!(n, 0);
    }

    #[test]
    fn an_opposite_sex_twin_is_no_rival() {
        let ids = [1, 2, 3];
        let named = names(&[false, true, true]);
        let mut sex = nameless(0, 2, -3.0);
        sex.rival = Some(Rival::Twin);
        let pairs = [nameless(0, 1, 6.0), sex];
        let (ids, n) = attach_nameless(&ids, &pairs, &named, T, |_, _| false);
        assert_eq!(n, 1);
        assert!(same(&ids, 0, 1) && !same(&ids, 0, 2));
    }

    #[test]
    fn a_cross_contradiction_refuses_the_attachment() {
        let ids = [1, 2, 2];
        let named = names(&[false, true, true]);
        let pairs = [nameless(0, 1, 6.0)];
        let (ids, n) = attach_nameless(&ids, &pairs, &named, T, |x, y| (x, y) == (0, 2));
        assert_eq!(n, 0);
        assert!(!same(&ids, 0, 1));
    }

    #[test]
    fn two_placeholders_of_one_child_both_join_it_and_named_pairs_never_attach() {
        // 0, 1: "Baby Boy" from two sources; 2: the named child; 3, 4: named records whose
        // pair is held back the same way.
        let ids = [1, 2, 3, 4, 5];
        let named = names(&[false, false, true, true, true]);
        let mut other = nameless(3, 4, 7.0);
        other.rival = Some(Rival::TwinNoGivenName);
        let pairs = [
            nameless(0, 1, 7.0),
            nameless(0, 2, 6.0),
            nameless(1, 2, 5.0),
            other,
        ];
        let (ids, n) = attach_nameless(&ids, &pairs, &named, T, |_, _| false);
        assert_eq!(n, 2);
        assert!(same(&ids, 0, 2) && same(&ids, 1, 2));
        assert!(!same(&ids, 3, 4));
    }

    fn who(named: bool, birth_order: Option<u8>) -> Identity {
        Identity { named, birth_order }
    }

    #[test]
    fn a_named_child_known_to_be_a_twin_keeps_the_placeholder_apart() {
        // 0: "Baby Boy"; 1, 2: Arthur, whose second record says "second of twins". The
        // other twin may be in the file only as record 0.
        let ids = [1, 2, 2];
        let pair = ScoredPair {
            a: 0,
            b: 1,
            weight: 6.0,
            rival: Some(Rival::TwinNoGivenName),
        };
        let plain = [who(false, None), who(true, None), who(true, None)];
        assert_eq!(attach_nameless(&ids, &[pair], &plain, T, |_, _| false).1, 1);
        let twin = [who(false, None), who(true, None), who(true, Some(2))];
        assert_eq!(attach_nameless(&ids, &[pair], &twin, T, |_, _| false).1, 0);
        // The placeholder says it is the second child too: the same child.
        let same = [who(false, Some(2)), who(true, None), who(true, Some(2))];
        assert_eq!(attach_nameless(&ids, &[pair], &same, T, |_, _| false).1, 1);
        // A placeholder that says it is one of a birth, beside a person who never does.
        let only = [who(false, Some(1)), who(true, None), who(true, None)];
        assert_eq!(attach_nameless(&ids, &[pair], &only, T, |_, _| false).1, 0);
    }
}
