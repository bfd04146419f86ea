//! Clustering the automatic links without chaining weak ones into one person.
//!
//! Plain single-linkage ([`cluster`]) joins A–B and B–C even when A and C are clearly two
//! people: one strong link on each side chains them. [`cluster_guarded`] does not:
//!
//! 1. Link edges are the pairs whose own decision is *link* (at or above the upper
//!    threshold, see [`ScoredPair::links`]). Their connected components are found first; a component
//!    of one or two records is final (its only pair is a link).
//! 2. Inside a component of three or more records, edges are taken strongest first
//!    (ties by record index, so the result is deterministic) and each edge would join two
//!    groups A and B. Before joining, every cross pair `x ∈ A, y ∈ B` is checked: if one
//!    *contradicts* the match (in dedup, see [`super::dedup::contradicts`]: the two records
//!    are as surely two people as a link must be surely one, or their multiple-birth
//!    orders differ), the union is refused and the edge becomes a review pair instead
//!    (counted in [`ChainStats::refused_links`]). Every cross pair is scored, not only
//!    those that shared a block, so no cluster holds two records that say they are two
//!    people. A union whose cross check would exceed
//!    [`GuardedOptions::max_cross_pairs`] is refused the same way: a cluster that large is
//!    a registrar's question, not an automatic answer.
//!
//! Cost is bounded: cross pairs are scored only inside link components of three or more,
//! at most `max_cross_pairs` per union, and components run in parallel. A cluster
//! therefore never holds two records that contradict each other, whatever the chain.

use rayon::prelude::*;
use serde::Serialize;

use super::ScoredPair;

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

/// Numbers sets from 1 in order of first appearance.
pub(crate) fn number(uf: &mut UnionFind, n: usize) -> Vec<u32> {
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

/// Plain single-linkage clustering of the automatic links ([`ScoredPair::links`]). Returns
/// a cluster number per record, numbered from 1 in order of first appearance. Used by
/// threshold sweeps in evaluation; dedup uses [`cluster_guarded`].
pub fn cluster(n: usize, pairs: &[ScoredPair], upper: f64) -> Vec<u32> {
    let mut uf = UnionFind::new(n);
    for p in pairs {
        if p.links(upper) {
            uf.union(p.a, p.b);
        }
    }
    number(&mut uf, n)
}

/// Options of [`cluster_guarded`].
#[derive(Debug, Clone, Copy)]
pub struct GuardedOptions {
    /// Link edges are pairs at or above this weight ([`ScoredPair::links`]).
    pub upper: f64,
    /// Most cross pairs checked for one union; a larger union is refused (sent to review).
    pub max_cross_pairs: usize,
}

impl GuardedOptions {
    /// Defaults for an upper threshold: at most 2,500 cross pairs per union (two groups of
    /// 50 records).
    pub fn new(upper: f64) -> Self {
        GuardedOptions {
            upper,
            max_cross_pairs: 2_500,
        }
    }
}

/// What guarded clustering did, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainStats {
    /// Link edges (pairs whose own decision is link).
    pub link_edges: u64,
    /// Link components of three records or more, whose unions were checked.
    pub components_checked: u64,
    /// Cross pairs checked.
    pub cross_pairs_checked: u64,
    /// Link edges refused because a cross pair contradicted the match (or the union was too
    /// large); each becomes a review pair.
    pub refused_links: u64,
    /// Of those, refused for size alone.
    pub refused_too_large: u64,
    /// Link components that ended as more than one cluster: chains split.
    pub chains_split: u64,
    /// Groups of records without a given name attached to their sole named candidate
    /// afterwards ([`super::attach`]).
    pub nameless_attached: u64,
}

/// The result of [`cluster_guarded`].
#[derive(Debug, Clone)]
pub struct Clustering {
    /// Cluster number per record, from 1 in order of first appearance.
    pub ids: Vec<u32>,
    /// Link edges whose union was refused (now between clusters, for review).
    pub refused: Vec<ScoredPair>,
    /// Counters.
    pub stats: ChainStats,
}

/// Clusters records by their link edges without chaining (see the module docs).
/// `contradicts(x, y)` says whether records `x` and `y` may not share a cluster; it is
/// called only for cross pairs inside link components of three or more records, from
/// several threads.
pub fn cluster_guarded<C>(
    n: usize,
    pairs: &[ScoredPair],
    opts: GuardedOptions,
    contradicts: C,
) -> Clustering
where
    C: Fn(u32, u32) -> bool + Sync,
{
    let is_link = |p: &ScoredPair| p.links(opts.upper);
    let mut uf = UnionFind::new(n);
    let mut stats = ChainStats::default();
    for p in pairs.iter().filter(|p| is_link(p)) {
        stats.link_edges += 1;
        uf.union(p.a, p.b);
    }
    // Components of 3+ records, each with its members and its link edges.
    let mut size = vec![0u32; n];
    for i in 0..n as u32 {
        size[uf.find(i) as usize] += 1;
    }
    let mut comp_of = vec![u32::MAX; n];
    let mut comps: Vec<(Vec<u32>, Vec<ScoredPair>)> = Vec::new();
    for i in 0..n as u32 {
        let r = uf.find(i) as usize;
        if size[r] >= 3 {
            if comp_of[r] == u32::MAX {
                comp_of[r] = comps.len() as u32;
                comps.push((Vec::with_capacity(size[r] as usize), Vec::new()));
            }
            comps[comp_of[r] as usize].0.push(i);
        }
    }
    for p in pairs.iter().filter(|p| is_link(p)) {
        let r = uf.find(p.a) as usize;
        if comp_of[r] != u32::MAX {
            comps[comp_of[r] as usize].1.push(*p);
        }
    }
    stats.components_checked = comps.len() as u64;
    let results: Vec<Local> = comps
        .par_iter()
        .map(|(members, edges)| split_component(members, edges, &opts, &contradicts))
        .collect();
    // Refine: each checked component's records point at their local group's least record.
    let mut refused = Vec::new();
    for (res, (members, _)) in results.into_iter().zip(&comps) {
        for (&m, &root) in members.iter().zip(&res.root) {
            uf.parent[m as usize] = root;
        }
        stats.cross_pairs_checked += res.checked;
        stats.refused_too_large += res.too_large;
        stats.chains_split += u64::from(res.groups > 1);
        refused.extend(res.refused);
    }
    stats.refused_links = refused.len() as u64;
    refused.sort_by_key(|p| (p.a, p.b));
    Clustering {
        ids: number(&mut uf, n),
        refused,
        stats,
    }
}

/// One component's outcome: the group root (a record index, the group's least member) of
/// each member, in member order.
struct Local {
    root: Vec<u32>,
    refused: Vec<ScoredPair>,
    checked: u64,
    too_large: u64,
    groups: usize,
}

fn split_component<C>(
    members: &[u32],
    edges: &[ScoredPair],
    opts: &GuardedOptions,
    contradicts: &C,
) -> Local
where
    C: Fn(u32, u32) -> bool + Sync,
{
    let local = |x: u32| members.binary_search(&x).unwrap_or_default() as u32;
    let mut edges = edges.to_vec();
    edges.sort_by(|x, y| {
        y.weight
            .total_cmp(&x.weight)
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    let mut uf = UnionFind::new(members.len());
    let mut groups: Vec<Vec<u32>> = (0..members.len() as u32).map(|i| vec![i]).collect();
    // Contradicting pairs found so far: a later union across the same groups fails fast.
    let mut bad: Vec<(u32, u32)> = Vec::new();
    let mut out = Local {
        root: Vec::new(),
        refused: Vec::new(),
        checked: 0,
        too_large: 0,
        groups: 0,
    };
    for e in edges {
        let (ra, rb) = (uf.find(local(e.a)), uf.find(local(e.b)));
        if ra == rb {
            continue;
        }
        let (ga, gb) = (&groups[ra as usize], &groups[rb as usize]);
        if ga.len() * gb.len() > opts.max_cross_pairs {
            out.too_large += 1;
            out.refused.push(e);
            continue;
        }
        let spans = |uf: &mut UnionFind, &(x, y): &(u32, u32)| {
            let (rx, ry) = (uf.find(x), uf.find(y));
            (rx == ra && ry == rb) || (rx == rb && ry == ra)
        };
        if bad.iter().any(|p| spans(&mut uf, p)) {
            out.refused.push(e);
            continue;
        }
        let mut found = None;
        'cross: for &x in ga {
            for &y in gb {
                let (gx, gy) = (members[x as usize], members[y as usize]);
                if (gx.min(gy), gx.max(gy)) == (e.a, e.b) {
                    continue; // the edge itself is a link
                }
                out.checked += 1;
                if contradicts(gx, gy) {
                    found = Some((x, y));
                    break 'cross;
                }
            }
        }
        if let Some(p) = found {
            bad.push(p);
            out.refused.push(e);
            continue;
        }
        let moved = std::mem::take(&mut groups[rb as usize]);
        groups[ra as usize].extend(moved);
        uf.parent[rb as usize] = ra;
    }
    // Group root as a record index: the group's least member (members ascend).
    let mut least = vec![u32::MAX; members.len()];
    out.root = (0..members.len() as u32)
        .map(|i| {
            let r = uf.find(i) as usize;
            if least[r] == u32::MAX {
                least[r] = members[i as usize];
                out.groups += 1;
            }
            least[r]
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: u32, b: u32, weight: f32) -> ScoredPair {
        ScoredPair {
            a,
            b,
            weight,
            rival: None,
        }
    }

    #[test]
    fn plain_clusters_follow_links_above_upper_only() {
        let pairs = [pair(0, 1, 10.0), pair(1, 2, 3.0), pair(3, 4, 12.0)];
        let ids = cluster(5, &pairs, 8.0);
        assert_eq!(ids, vec![1, 1, 2, 3, 3]);
        let sizes = super::super::cluster_sizes(&ids);
        assert_eq!(sizes[&2], 2);
        assert_eq!(sizes[&1], 1);
    }

    fn groups(ids: &[u32]) -> Vec<Vec<u32>> {
        let mut g: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for (i, &c) in ids.iter().enumerate() {
            g.entry(c).or_default().push(i as u32);
        }
        g.into_values().collect()
    }

    #[test]
    fn a_chain_of_links_is_split_where_the_ends_contradict() {
        // 0-1-2-3 linked in a chain; records two or more apart are different people.
        let pairs = [pair(0, 1, 20.0), pair(1, 2, 18.0), pair(2, 3, 16.0)];
        assert_eq!(
            cluster(4, &pairs, 8.0),
            vec![1, 1, 1, 1],
            "plain clustering chains"
        );
        let far = |x: u32, y: u32| x.abs_diff(y) >= 2;
        let c = cluster_guarded(4, &pairs, GuardedOptions::new(8.0), far);
        assert_eq!(groups(&c.ids), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(c.refused, vec![pair(1, 2, 18.0)]);
        assert_eq!(c.stats.refused_links, 1);
        assert_eq!(c.stats.chains_split, 1);
        assert_eq!(c.stats.components_checked, 1);
        // Without contradictions the chain is one person.
        let c = cluster_guarded(4, &pairs, GuardedOptions::new(8.0), |_, _| false);
        assert_eq!(c.ids, vec![1, 1, 1, 1]);
        assert!(c.refused.is_empty());
        assert_eq!(c.stats.chains_split, 0);
    }

    #[test]
    fn a_star_keeps_its_strongest_arm_when_the_leaves_contradict() {
        let pairs = [
            pair(0, 1, 20.0),
            pair(0, 2, 19.0),
            pair(0, 3, 18.0),
            pair(0, 4, 17.0),
        ];
        let leaves_differ = |x: u32, y: u32| x != 0 && y != 0;
        let c = cluster_guarded(5, &pairs, GuardedOptions::new(8.0), leaves_differ);
        assert_eq!(groups(&c.ids), vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        assert_eq!(c.stats.refused_links, 3);
        // Leaves that agree make one cluster; every cross pair was checked once.
        let c = cluster_guarded(5, &pairs, GuardedOptions::new(8.0), |_, _| false);
        assert_eq!(c.ids, vec![1; 5]);
        assert_eq!(c.stats.cross_pairs_checked, 1 + 2 + 3);
    }

    #[test]
    fn twins_bridged_by_one_strong_link_stay_two_people() {
        // Twin A: records 0, 1. Twin B: records 2, 3. Record 1 has no given name, so its
        // pair with 2 reaches the upper threshold: a bridge.
        let pairs = [
            pair(0, 1, 25.0),
            pair(2, 3, 25.0),
            pair(1, 2, 22.0),
            ScoredPair {
                rival: Some(crate::scoring::Rival::Twin),
                ..pair(0, 2, 4.0)
            },
        ];
        assert_eq!(
            cluster(4, &pairs, 8.0),
            vec![1, 1, 1, 1],
            "plain clustering merges twins"
        );
        let given_differs = |x: u32, y: u32| (x == 0) != (y == 0) && x != 1 && y != 1;
        let c = cluster_guarded(4, &pairs, GuardedOptions::new(8.0), given_differs);
        assert_eq!(groups(&c.ids), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(c.refused, vec![pair(1, 2, 22.0)]);
    }

    #[test]
    fn oversized_unions_are_refused_and_counted() {
        // Two groups of three joined by one edge: 9 cross pairs, over a limit of 4.
        let pairs = [
            pair(0, 1, 30.0),
            pair(1, 2, 30.0),
            pair(3, 4, 30.0),
            pair(4, 5, 30.0),
            pair(2, 3, 10.0),
        ];
        let opts = GuardedOptions {
            upper: 8.0,
            max_cross_pairs: 4,
        };
        let c = cluster_guarded(6, &pairs, opts, |_, _| false);
        assert_eq!(groups(&c.ids), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(c.stats.refused_too_large, 1);
        assert_eq!(c.refused, vec![pair(2, 3, 10.0)]);
    }

    #[test]
    fn result_does_not_depend_on_pair_order() {
        let mut pairs = vec![
            pair(0, 1, 20.0),
            pair(1, 2, 20.0),
            pair(2, 3, 20.0),
            pair(3, 4, 12.0),
            pair(5, 6, 9.0),
            pair(4, 5, 9.0),
        ];
        let odd_even = |x: u32, y: u32| x.is_multiple_of(3) && y.is_multiple_of(3);
        let first = cluster_guarded(7, &pairs, GuardedOptions::new(8.0), odd_even);
        pairs.reverse();
        let second = cluster_guarded(7, &pairs, GuardedOptions::new(8.0), odd_even);
        assert_eq!(first.ids, second.ids);
        assert_eq!(first.refused, second.refused);
        // No cluster holds a contradicting pair.
        for g in groups(&first.ids) {
            for &x in &g {
                for &y in &g {
                    assert!(x == y || !odd_even(x, y), "{x} and {y} share a cluster");
                }
            }
        }
    }

    #[test]
    fn declared_twins_never_join() {
        let mut p = pair(0, 1, 30.0);
        p.rival = Some(crate::scoring::Rival::BirthOrderDiffers);
        assert_eq!(cluster(2, &[p], 8.0), vec![1, 2]);
        let c = cluster_guarded(2, &[p], GuardedOptions::new(8.0), |_, _| false);
        assert_eq!(c.ids, vec![1, 2]);
    }
}
