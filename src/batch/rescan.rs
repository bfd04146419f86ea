//! Re-scanning a store for duplicate persons, e.g. after a model change, without
//! resubmitting records: every stored record is prepared and scored on the batch path, and
//! each pair of *different* persons whose best record pair calls for attention becomes a
//! review task ([`crate::store::Plan::open_task`]) or, with [`RescanMode::MergeAboveUpper`],
//! a merge ([`crate::store::Plan::merge_persons`], recorded in both persons' history).
//!
//! Rules:
//! - A person pair's evidence is its best record pair (highest weight); its decision is
//!   [`pair_decision`] of that pair. *New* pairs are left alone.
//! - Persons asserted not to be duplicates are never proposed again.
//! - A task is not opened twice: a record with an open task naming the same candidate
//!   person is skipped, so re-running is idempotent.
//! - Merging never chains: persons are grouped strongest link first, and two groups join
//!   only if no record pair across them contradicts the match (see
//!   [`super::cluster`](mod@super::cluster)) and no not-duplicate assertion separates them. A refused merge
//!   becomes a review task.
//!
//! The store must not be open elsewhere: sled locks its directory, and
//! [`rescan_dir`] turns that refusal into a clear error.

use std::path::Path;
use std::time::Instant;

use ahash::AHashMap;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::linker::{pair_decision, Decision, Linker};
use crate::record::{Record, RecordKey};
use crate::store::{Euid, Plan, SledStore, Stamp, Store, TaskCandidate};

use super::cluster::{GuardedOptions, UnionFind};
use super::dedup::{contradicts, ChainGuards};
use super::score::{prepare_all, score_prepared, ScoreOptions};
use super::ScoredPair;

/// How a re-scan acts on what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RescanMode {
    /// Open a review task for every person pair that calls for attention.
    Review,
    /// Merge person pairs whose best link is an automatic link (above the upper threshold,
    /// no chaining); open review tasks for the rest.
    MergeAboveUpper,
}

/// Options of a re-scan.
#[derive(Debug, Clone)]
pub struct RescanOptions {
    /// What to do with what is found.
    pub mode: RescanMode,
    /// Find and count, but write nothing.
    pub dry_run: bool,
    /// Count term frequencies from the stored records.
    pub tf_from_data: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Actor stamped on tasks, merges and history.
    pub actor: String,
}

/// What a re-scan found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RescanSummary {
    /// Mode used.
    pub mode: Option<RescanMode>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Stored records scanned.
    pub records: u64,
    /// Active persons holding them.
    pub persons: u64,
    /// Candidate record pairs visited in blocks (repeats across blocks included).
    pub pair_visits: u64,
    /// Candidate record pairs scored in full (the rest cannot reach the lower threshold).
    pub pairs_scored: u64,
    /// Pairs of different persons whose best record pair calls for review or link.
    pub person_pairs: u64,
    /// Of those, pairs whose best link is automatic (at or above upper).
    pub person_pairs_above_upper: u64,
    /// Review tasks opened.
    pub tasks_opened: u64,
    /// Persons merged into another.
    pub merges: u64,
    /// Merges refused because they would chain contradicting records (reviewed instead).
    pub merges_refused: u64,
    /// Person pairs skipped: a task already open, or asserted not duplicates.
    pub skipped: u64,
    /// The prior λ counted from the stored records, when it was counted
    /// ([`crate::scoring::estimate::estimate_prior`]).
    pub prior: Option<crate::scoring::estimate::PriorCount>,
    /// The twins and household relatives counted among the stored records, when they were.
    pub rivals: Option<crate::scoring::estimate::rivals::RivalFit>,
    /// Seconds in all.
    pub total_secs: f64,
}

/// Opens the sled store in `dir` and re-scans it.
///
/// # Errors
/// [`Error::Conflict`] when another process (a running server) holds the store; otherwise
/// as [`rescan`].
pub fn rescan_dir(dir: &Path, linker: &Linker, opts: &RescanOptions) -> Result<RescanSummary> {
    if !dir.is_dir() {
        return Err(Error::NotFound {
            what: "store directory",
            id: dir.display().to_string(),
        });
    }
    let store = SledStore::open(dir).map_err(|e| match e {
        Error::Storage(m) if is_lock_error(&m) => Error::Conflict(format!(
            "store {} is in use by another process (stop `empi serve` first): {m}",
            dir.display()
        )),
        other => other,
    })?;
    rescan(&store, linker, opts)
}

fn is_lock_error(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("lock") || m.contains("temporarily unavailable") || m.contains("would block")
}

/// Re-scans any store (see the module docs).
///
/// # Errors
/// Store errors; [`Error::Conflict`] when another writer changed a person meanwhile.
pub fn rescan<S: Store + ?Sized>(
    store: &S,
    linker: &Linker,
    opts: &RescanOptions,
) -> Result<RescanSummary> {
    let started = Instant::now();
    let mut summary = RescanSummary {
        mode: Some(opts.mode),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut records: Vec<Record> = Vec::new();
    let mut person_of: Vec<u32> = Vec::new();
    let mut euids: Vec<Euid> = Vec::new();
    let mut index: AHashMap<Euid, u32> = AHashMap::new();
    for stored in store.records() {
        let stored = stored?;
        let p = *index.entry(stored.euid.clone()).or_insert_with(|| {
            euids.push(stored.euid.clone());
            euids.len() as u32 - 1
        });
        person_of.push(p);
        records.push(stored.record);
    }
    summary.records = records.len() as u64;
    summary.persons = euids.len() as u64;
    let keys: Vec<RecordKey> = records.iter().map(Record::key).collect();
    let prepared = prepare_all(linker, &records, opts.progress);
    drop(records);
    let t = linker.thresholds();
    let score_opts = ScoreOptions {
        keep_min_weight: t.lower,
        tf_from_data: opts.tf_from_data,
        progress: opts.progress,
    };
    let (linker, run) = score_prepared(linker, prepared, None, None, &score_opts)?;
    summary.pair_visits = run.stats.pair_visits;
    summary.pairs_scored = run.stats.pairs_scored_in_full;
    summary.prior = run.stats.prior.clone();
    summary.rivals = run.stats.rivals.clone();

    // Persons known to be one child of a multiple birth: a pair with one of them is weighed
    // as against a known twin, as the service weighs a query (super::twins).
    let twins = super::twins::KnownTwins::new(linker.scorer(), &run.prepared);
    let known_twin = twins.known_groups(&person_of);
    // Best record pair per pair of different persons.
    let mut best: AHashMap<(u32, u32), ScoredPair> = AHashMap::new();
    for p in &run.pairs {
        let (pa, pb) = (person_of[p.a as usize], person_of[p.b as usize]);
        if pa == pb {
            continue;
        }
        let p = &if known_twin[pa as usize] || known_twin[pb as usize] {
            twins.weigh(p)
        } else {
            *p
        };
        let k = (pa.min(pb), pa.max(pb));
        let e = best.entry(k).or_insert(*p);
        if p.weight > e.weight {
            *e = *p;
        }
    }
    let decide = |p: &ScoredPair| pair_decision(&p.score(), t);
    let mut found: Vec<((u32, u32), ScoredPair, Decision)> = best
        .into_iter()
        .map(|(k, p)| (k, p, decide(&p)))
        .filter(|(_, _, d)| *d != Decision::New)
        .collect();
    // Strongest first, ties by person: the order merges are tried in.
    found.sort_by(|x, y| y.1.weight.total_cmp(&x.1.weight).then(x.0.cmp(&y.0)));
    summary.person_pairs = found.len() as u64;
    summary.person_pairs_above_upper =
        found.iter().filter(|f| f.2 == Decision::Link).count() as u64;

    // Members of each person, for the chaining check.
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); euids.len()];
    for (i, &p) in person_of.iter().enumerate() {
        members[p as usize].push(i as u32);
    }
    let mut groups = UnionFind::new(euids.len());
    let mut group_members: Vec<Vec<u32>> = (0..euids.len() as u32).map(|p| vec![p]).collect();
    let max_cross = GuardedOptions::new(t.upper).max_cross_pairs;
    let prepared = &run.prepared;

    for ((pa, pb), pair, decision) in found {
        let (ea, eb) = (&euids[pa as usize], &euids[pb as usize]);
        if store.not_duplicate(ea, eb)?.is_some() {
            summary.skipped += 1;
            continue;
        }
        if groups.find(pa) == groups.find(pb) {
            continue; // already joined through stronger links
        }
        let mut merge = false;
        if decision == Decision::Link && opts.mode == RescanMode::MergeAboveUpper {
            let (ga, gb) = (groups.find(pa), groups.find(pb));
            let recs = |g: u32| -> Vec<u32> {
                group_members[g as usize]
                    .iter()
                    .flat_map(|&p| members[p as usize].iter().copied())
                    .collect()
            };
            let (ra, rb) = (recs(ga), recs(gb));
            let mut ok = ra.len() * rb.len() <= max_cross;
            if ok {
                'cross: for &x in &ra {
                    for &y in &rb {
                        let (px, py) = (&prepared[x as usize], &prepared[y as usize]);
                        if contradicts(&linker, px, py, ChainGuards::BirthOrder) {
                            ok = false;
                            break 'cross;
                        }
                    }
                }
            }
            if ok {
                'nd: for &x in &group_members[ga as usize] {
                    for &y in &group_members[gb as usize] {
                        let (ex, ey) = (&euids[x as usize], &euids[y as usize]);
                        if store.not_duplicate(ex, ey)?.is_some() {
                            ok = false;
                            break 'nd;
                        }
                    }
                }
            }
            if ok {
                groups.union(ga, gb);
                let root = groups.find(ga);
                let other = if root == ga { gb } else { ga };
                let moved = std::mem::take(&mut group_members[other as usize]);
                group_members[root as usize].extend(moved);
                merge = true;
            } else {
                summary.merges_refused += 1;
            }
        }
        // The newer person (higher EUID) is the one under review / merged away.
        let (older, newer) = if ea <= eb { (pa, pb) } else { (pb, pa) };
        let (eo, en) = (&euids[older as usize], &euids[newer as usize]);
        let _ = en;
        let explanation = linker.explain(&prepared[pair.a as usize], &prepared[pair.b as usize]);
        if merge {
            summary.merges += 1;
            if !opts.dry_run {
                let stamp = Stamp::now(
                    opts.actor.clone(),
                    format!("dedup re-scan: automatic link at weight {:.2}", pair.weight),
                );
                let mut plan = Plan::new(store, stamp);
                let into = plan.survivor_of(eo)?;
                let from = plan.survivor_of(en)?;
                if from != into {
                    plan.merge_persons(&from, &into)?;
                    store.apply(&plan.finish())?;
                }
            }
            continue;
        }
        // Review: a task about the newer person's record, naming the older person.
        let (ra, rb) = (pair.a as usize, pair.b as usize);
        let rec = if person_of[ra] == newer { ra } else { rb };
        let other_rec = if rec == ra { rb } else { ra };
        let key = &keys[rec];
        let already = store
            .open_tasks_for_record(key)?
            .iter()
            .any(|task| task.candidates.iter().any(|c| &c.euid == eo));
        if already {
            summary.skipped += 1;
            continue;
        }
        summary.tasks_opened += 1;
        if opts.dry_run {
            continue;
        }
        let stamp = Stamp::now(opts.actor.clone(), "dedup re-scan");
        let mut plan = Plan::new(store, stamp);
        let explanation = serde_json::json!({
            "origin": "dedup_rescan",
            "against_record": keys[other_rec],
            "explanation": explanation,
        });
        let candidate = TaskCandidate {
            euid: plan.survivor_of(eo)?,
            score: pair.weight as f64,
            probability: crate::scoring::weight_to_prob(pair.weight as f64),
        };
        plan.open_task(key, vec![candidate], explanation)?;
        store.apply(&plan.finish())?;
    }
    if !opts.dry_run {
        store.flush()?;
    }
    summary.total_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}
