//! Async orchestration of the master patient index: match-or-create, matching without
//! writing, persons and their golden view, registrar actions (link, unlink, merge, split,
//! not-duplicate), the review queue and counts. Owns the in-memory index it decides with.
//!
//! [`Service`] holds the store (`Arc<dyn Store>`), the [`Linker`], and a live index of every
//! stored record: its prepared form, its person and the blocking index over them, so scoring
//! candidates reads no store. Every write goes through the service, which applies the
//! store's change set and updates the index in the same critical section.
//!
//! # Locking
//! - **Decisions** are serialised by striped async mutexes ([`ServiceConfig::stripes`]
//!   of them). A match-or-create locks the stripes of each of its record's blocking keys and
//!   of its record key, all at once in ascending stripe order (so never in a cycle), and holds
//!   them across *decide → apply → index update*. Two requests for the same new person
//!   share a blocking key (otherwise neither would be a candidate of the other), so the
//!   second decides after the first is in the index and links to it: one EUID, not two.
//!   Requests with no key in common proceed in parallel.
//! - **The index** sits behind one `RwLock`. Deciding takes it shared; a write takes it
//!   exclusively around *store apply + index update*, so the index changes in exactly the
//!   order the store applied the change sets and never lags the store a visible moment.
//! - **Durability**: the stripes are released before waiting for the flush (group commit);
//!   the reply waits for it. That is safe because anything decided from this write commits
//!   with a later ticket, and a later ticket durable implies every earlier one durable.
//! - **Registrar actions** (link, merge, split, …) take no stripes: they rely on the store's
//!   optimistic versions. A plan built from state that changed before it applied fails with
//!   a conflict and is rebuilt from fresh reads (a few times) before the error reaches the
//!   caller.
//!
//! # Golden view
//! Order the person's records newest first (when their content was last stored), then most
//! complete first (most fields present), then by key. Per field: names, email and
//! multiple-birth order take the first non-empty value; sex the first that is not unknown;
//! the birth date the first *full* date (a partial one only when no record has a full
//! date); the address is taken whole from the first record that has one (lines of different
//! addresses are never mixed); previous family names, phones and identifiers are the
//! distinct values in that order, at most 16 of each.
//!
//! # Memory and start-up
//! At a clean stop (`empi serve` on SIGTERM/Ctrl-C, the end of `empi load`) the index is
//! written to a snapshot file beside the store ([`snapshot`]); [`Service::open`] loads it
//! when it still matches the store (same record generation, same empi version, model and
//! blocking), in parallel chunks. Otherwise — first start, a crash after writes, another
//! model — it rebuilds the index from [`Store::encoded_records`] in a pipeline: one
//! thread scans the store, rayon decodes (only record and person, [`RecordEntry`]),
//! prepares and computes blocking keys for batches in parallel, and the opening thread
//! inserts them. Measured at 1M stored records on the 2-core machine (BENCHMARKS.md):
//! about 2.5 s from the snapshot and 8 s rebuilding.
//!
//! Per indexed record the index keeps the prepared form (320 bytes inline: names with
//! phonetic codes, canonical phones, ids, address parts; name text shared through a
//! [`NameCache`] when rebuilt), the blocking keys, the EUID as a `u64` and the record key
//! once (shared by the id map and the slot). Counted with a counting allocator on the
//! 100k-record synthetic set: **≈ 910 bytes of heap per record** (slot 344, id map 33,
//! prepared heap 198, blocking index and key 335), so about 0.9 GB per million records
//! before allocator overhead. Counts, time, the source (snapshot or store) and
//! resident-memory growth are logged at start (never patient data).
//!
//! # CPU work
//! A match-or-create runs inline on the async worker: deciding (prepare, candidates,
//! scoring, explanations) measured ≈ 25 µs, the whole request ≈ 0.2 ms of CPU of which the
//! store's transaction is most. On two cores a hop to a blocking thread would cost more
//! than it frees; only flushes (group commit) run on blocking threads.

mod golden;
mod index;
mod locks;
mod matching;
pub mod snapshot;
mod types;

pub use matching::MAX_MATCH_CANDIDATES;
pub use types::{
    CandidateView, ComparisonView, GoldenView, MatchDecision, MatchPreview, MatchResult, Merged,
    Pending, PersonView, Resolve, ServiceCheck, ServiceStats, Split, TaskView,
};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::linker::Linker;
use crate::prepare::{NameCache, Prepared};
use crate::record::{Record, RecordKey};
use crate::scoring::{TrainingSummary, WeightBound};
use crate::store::{
    Audit, ChangeSet, Euid, HistoryAction, LinkMethod, Moved, Outcome, Plan, RecordEntry, Removed,
    Store, StoredRecord, TaskId, TaskQuery, Ticket,
};

use index::{key_text, Derived, LiveIndex};
use locks::Stripes;

/// How many times a write whose reads went stale is rebuilt before the conflict is
/// returned.
const RETRIES: usize = 8;
/// Longest accepted `actor`, in bytes.
pub const MAX_ACTOR_LEN: usize = 128;
/// Longest accepted `reason`, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// Tunables of a [`Service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Candidates returned with a decision (and kept in review tasks).
    pub top_k: usize,
    /// Wait for each write to be flushed before returning (group commit). Only a bulk
    /// loader that calls [`Service::flush`] at the end should turn this off.
    pub durable: bool,
    /// Number of decision lock stripes.
    pub stripes: usize,
    /// Index snapshot file ([`snapshot`]): loaded on open when it matches the store, and
    /// written by [`Service::save_snapshot`]. `None`: always rebuild from the store.
    pub snapshot: Option<std::path::PathBuf>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            top_k: 5,
            durable: true,
            stripes: 4096,
            snapshot: None,
        }
    }
}

/// What rebuilding the index on start found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexStats {
    /// Records indexed.
    pub records: u64,
    /// Distinct persons among them.
    pub persons: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Growth of resident memory while building, when the platform reports it. Includes
    /// the store's own page cache filled by the scan, so it overstates the index itself.
    pub rss_growth_bytes: Option<u64>,
    /// Whether the index was loaded from a snapshot rather than rebuilt from the store.
    pub from_snapshot: bool,
}

/// The master patient index service. Cheap to share: wrap it in an `Arc`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use empi::linker::Linker;
/// use empi::record::Record;
/// use empi::service::{MatchDecision, Service, ServiceConfig};
/// use empi::store::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> empi::Result<()> {
/// let service = Service::open(
///     Arc::new(MemoryStore::new()),
///     Linker::with_default_model(),
///     ServiceConfig::default(),
/// )?;
/// let record = |id: &str| Record {
///     source: "adt".into(),
///     local_id: id.into(),
///     given_name: Some("Margaret".into()),
///     family_name: Some("Okonkwo".into()),
///     birth_date: Some("1961-07-02".parse().unwrap()),
///     phones: vec!["413-555-0142".into()],
///     ..Default::default()
/// };
/// let first = service.match_or_create(record("1"), "adt-feed").await?;
/// assert_eq!(first.decision, MatchDecision::Created);
/// let second = service.match_or_create(record("2"), "adt-feed").await?;
/// assert_eq!(second.decision, MatchDecision::Linked);
/// assert_eq!(second.euid, first.euid);
/// # Ok(()) }
/// ```
pub struct Service {
    store: Arc<dyn Store>,
    linker: Linker,
    config: ServiceConfig,
    index: RwLock<LiveIndex>,
    /// Shared name derivations: every indexed record with the same name holds one copy.
    names: NameCache,
    stripes: Stripes,
    /// The latest ticket applied, so an idempotent repeat can wait until what it reports
    /// is durable.
    last_ticket: Mutex<Ticket>,
    index_stats: IndexStats,
    /// The model's training metadata, read once: the model never changes while serving.
    training: Option<Arc<TrainingSummary>>,
    /// Rules out hopeless candidates before full scoring ([`Linker::decide_bounded`]);
    /// `None` when it failed its self-check on the stored records at start.
    bound: Option<WeightBound>,
}

/// Stored records (with up to 20 candidates each) the weight bound checks itself on at
/// start.
const BOUND_SAMPLE: usize = 300;

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .field("index", &self.index_stats)
            .finish_non_exhaustive()
    }
}

/// Checks and builds the audit stamp of a registrar action.
///
/// # Errors
/// [`Error::InvalidInput`] naming `actor` (missing, too long, control characters) or
/// `reason` (too long, control characters).
pub fn audit(actor: &str, reason: &str) -> Result<Audit> {
    if actor.trim().is_empty() {
        return Err(Error::invalid("actor", "missing"));
    }
    check_text("actor", actor, MAX_ACTOR_LEN)?;
    check_text("reason", reason, MAX_REASON_LEN)?;
    Ok(Audit::now(actor, reason))
}

fn check_text(field: &'static str, v: &str, max: usize) -> Result<()> {
    if v.len() > max {
        return Err(Error::invalid(field, format!("longer than {max} bytes")));
    }
    if v.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        return Err(Error::invalid(field, "contains control characters"));
    }
    Ok(())
}

fn not_found(what: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        what,
        id: id.to_string(),
    }
}

/// Resident set size of this process, from `/proc` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Builds the index from every stored record in a three-stage pipeline: a reader thread
/// scans encoded records in batches, a second thread has rayon decode (only the record and
/// its person, [`RecordEntry`]) and prepare each batch in parallel, and this thread inserts
/// into the index. Bounded channels keep a few batches in flight.
fn rebuild(
    store: &dyn Store,
    linker: &Linker,
    names: &NameCache,
) -> Result<(LiveIndex, IndexStats)> {
    const BATCH: usize = 4096;
    type Prepped = Vec<(String, u64, Prepared, Derived)>;
    let started = Instant::now();
    let rss_before = resident_bytes();
    let mut index = LiveIndex::new(linker.blocking().clone());
    index.reserve(usize::try_from(store.stats()?.records).unwrap_or(0));
    let mut persons = ahash::AHashSet::new();
    let (scan_busy, prep_busy) = (Mutex::new(Duration::ZERO), Mutex::new(Duration::ZERO));
    let mut insert_busy = Duration::ZERO;
    std::thread::scope(|scope| -> Result<()> {
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<Result<Vec<Vec<u8>>>>(4);
        let (prep_tx, prep_rx) = std::sync::mpsc::sync_channel::<Result<Prepped>>(4);
        let scan_busy = &scan_busy;
        let prep_busy = &prep_busy;
        scope.spawn(move || {
            let t0 = Instant::now();
            let mut waited = Duration::ZERO;
            let mut batch = Vec::with_capacity(BATCH);
            for r in store.encoded_records() {
                match r {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        let _ = raw_tx.send(Err(e));
                        return;
                    }
                }
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let w = Instant::now();
                    if raw_tx.send(Ok(full)).is_err() {
                        return; // a later stage gave up
                    }
                    waited += w.elapsed();
                }
            }
            let _ = raw_tx.send(Ok(batch));
            *scan_busy.lock().unwrap_or_else(PoisonError::into_inner) = t0.elapsed() - waited;
        });
        scope.spawn(move || {
            let mut busy = Duration::ZERO;
            for batch in raw_rx {
                let t = Instant::now();
                // Consuming the batch drops each value in the worker that decoded it.
                let prepped = batch.and_then(|b| {
                    b.into_par_iter()
                        .map(|bytes| {
                            let e = RecordEntry::decode(&bytes)?;
                            let p = prepare(linker, names, &e.record);
                            let derived = Derived::of(&p, &linker.blocking().rules);
                            Ok((key_text(&e.record.key()), e.euid.seq(), p, derived))
                        })
                        .collect::<Result<Prepped>>()
                });
                busy += t.elapsed();
                if prep_tx.send(prepped).is_err() {
                    return;
                }
            }
            *prep_busy.lock().unwrap_or_else(PoisonError::into_inner) = busy;
        });
        for batch in prep_rx {
            let t = Instant::now();
            for (key, euid, p, derived) in batch? {
                persons.insert(euid);
                index.upsert_keyed(&key, euid, p, derived);
            }
            insert_busy += t.elapsed();
        }
        Ok(())
    })?;
    tracing::debug!(
        scan_secs = scan_busy
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .as_secs_f64(),
        decode_prepare_secs = prep_busy
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .as_secs_f64(),
        insert_secs = insert_busy.as_secs_f64(),
        "index rebuild stages (busy time of each)"
    );
    let stats = IndexStats::measure(&index, persons.len(), started, rss_before, false);
    Ok((index, stats))
}

/// Loads the index from a snapshot when one matches the store (see [`snapshot`]);
/// `None` (with the reason logged) when the caller must rebuild.
fn load_snapshot(
    path: &std::path::Path,
    store: &dyn Store,
    linker: &Linker,
) -> Option<(LiveIndex, IndexStats)> {
    let started = Instant::now();
    let rss_before = resident_bytes();
    let found = snapshot::fingerprint(linker).and_then(|fp| {
        let generation = store.records_generation()?;
        snapshot::read(path, fp, generation)
    });
    let chunks = match found {
        Ok(Ok(chunks)) => chunks,
        Ok(Err(reason)) => {
            tracing::info!(reason, "index snapshot not used; rebuilding from the store");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "index snapshot unreadable; rebuilding from the store");
            return None;
        }
    };
    let mut index = LiveIndex::new(linker.blocking().clone());
    index.reserve(chunks.iter().map(Vec::len).sum());
    let mut persons = ahash::AHashSet::new();
    for chunk in chunks {
        let keyed: Vec<_> = chunk
            .into_par_iter()
            .map(|(key, euid, p)| {
                let derived = Derived::of(&p, &linker.blocking().rules);
                (key, euid, p, derived)
            })
            .collect();
        for (key, euid, p, derived) in keyed {
            persons.insert(euid);
            index.upsert_keyed(&key, euid, p, derived);
        }
    }
    let stats = IndexStats::measure(&index, persons.len(), started, rss_before, true);
    Some((index, stats))
}

impl IndexStats {
    /// What building `index` took, since `started` and a resident size of `rss_before`.
    fn measure(
        index: &LiveIndex,
        persons: usize,
        started: Instant,
        rss_before: Option<u64>,
        from_snapshot: bool,
    ) -> IndexStats {
        IndexStats {
            records: index.len() as u64,
            persons: persons as u64,
            elapsed: started.elapsed(),
            rss_growth_bytes: rss_before
                .zip(resident_bytes())
                .map(|(a, b)| b.saturating_sub(a)),
            from_snapshot,
        }
    }
}

impl Service {
    /// Opens the service over a store: rebuilds the index from every stored record (in
    /// parallel). Reads only; blocking, so call it before serving or on a blocking thread.
    ///
    /// # Errors
    /// Store errors while reading.
    pub fn open(store: Arc<dyn Store>, linker: Linker, config: ServiceConfig) -> Result<Service> {
        let names = NameCache::new();
        // A snapshot spares reading the store, so it could hide a store that cannot be
        // read: read the store through beside loading it, and refuse to start as a
        // rebuild would if that fails.
        let (loaded, readable) = match config.snapshot.as_deref().filter(|p| p.exists()) {
            None => (None, None),
            Some(path) => std::thread::scope(|scope| {
                let verified = scope.spawn(|| store.verify_readable());
                let loaded = load_snapshot(path, &*store, &linker);
                let readable = loaded.is_some().then(|| {
                    verified.join().unwrap_or_else(|_| {
                        Err(Error::Corrupt("reading the store through panicked".into()))
                    })
                });
                (loaded, readable)
            }),
        };
        if let Some(readable) = readable {
            let entries = readable.map_err(|e| {
                tracing::error!(error = %e, "the store cannot be read through; not starting from the index snapshot");
                e
            })?;
            tracing::debug!(entries, "store read through beside the index snapshot");
        }
        let (index, index_stats) = match loaded {
            Some(loaded) => loaded,
            None => rebuild(&*store, &linker, &names)?,
        };
        tracing::info!(
            records = index_stats.records,
            persons = index_stats.persons,
            secs = index_stats.elapsed.as_secs_f64(),
            rss_growth_mib = index_stats.rss_growth_bytes.map(|b| b / (1 << 20)),
            from_snapshot = index_stats.from_snapshot,
            "index rebuilt"
        );
        let training = linker.scorer().model().training_summary().map(Arc::new);
        let (sample, pairs) = index.sample_pairs(BOUND_SAMPLE);
        let bound = linker.scorer().weight_bound(&sample, &pairs);
        if bound.is_none() {
            tracing::warn!("weight bound failed its self-check; scoring every candidate in full");
        }
        Ok(Service {
            bound,
            stripes: Stripes::new(config.stripes),
            store,
            linker,
            config,
            index: RwLock::new(index),
            names,
            last_ticket: Mutex::new(Ticket::default()),
            index_stats,
            training,
        })
    }

    /// Records the model in use in the store (shown by `GetStats` even to tools that do
    /// not load the model), when it differs from what is recorded.
    ///
    /// # Errors
    /// Store errors.
    pub fn record_model_version(&self) -> Result<()> {
        let model = self.model_version();
        if self.store.stats()?.model_version.as_deref() != Some(model) {
            let mut plan = Plan::new(&*self.store, Audit::now("empi", "model in use"));
            plan.set_model_version(model);
            self.store.commit_sync(&plan.finish())?;
        }
        Ok(())
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The linker deciding matches.
    pub fn linker(&self) -> &Linker {
        &self.linker
    }

    /// The configuration in use.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// What rebuilding the index on open found.
    pub fn index_stats(&self) -> IndexStats {
        self.index_stats
    }

    /// The model's id, reported as the model version.
    pub fn model_version(&self) -> &str {
        &self.linker.scorer().model().id
    }

    // ---- plumbing --------------------------------------------------------------------------

    /// Prepares a record as the linker would, sharing name derivations with the index.
    fn prepare(&self, r: &Record) -> Prepared {
        prepare(&self.linker, &self.names, r)
    }

    fn read_index(&self) -> Result<RwLockReadGuard<'_, LiveIndex>> {
        self.index.read().map_err(|_| poisoned())
    }

    fn write_index(&self) -> Result<RwLockWriteGuard<'_, LiveIndex>> {
        self.index.write().map_err(|_| poisoned())
    }

    /// Applies a change set to the store and the index together (see "Locking").
    fn apply(&self, changes: &ChangeSet, fresh: Option<(&str, Prepared)>) -> Result<Ticket> {
        let mut index = self.write_index()?;
        let ticket = self.store.apply(changes)?;
        index.apply(changes, fresh, |r| self.prepare(r));
        drop(index);
        let mut last = self.last_ticket.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(ticket);
        Ok(ticket)
    }

    /// Waits until `ticket` is durable, unless the service runs without durable commits.
    async fn durable(&self, ticket: Ticket) -> Result<()> {
        if self.config.durable {
            self.store.wait_durable(ticket).await
        } else {
            Ok(())
        }
    }

    /// Waits until the change a [`Pending`] stands for is durable (at once when the
    /// service runs without durable commits).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush covering it failed.
    pub async fn wait_durable(&self, pending: Pending) -> Result<()> {
        self.durable(pending.0).await
    }

    /// [`Service::wait_durable`] on the calling thread, for a thread that batches several
    /// callers' waits (the first call flushes, the rest of the batch returns at once).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush failed.
    pub fn make_durable(&self, pending: Pending) -> Result<()> {
        if self.config.durable {
            self.store.flush_through(pending.0)
        } else {
            Ok(())
        }
    }

    /// The latest ticket applied by this service.
    fn latest_ticket(&self) -> Ticket {
        *self.last_ticket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds a plan with `build`, applies it, waits for durability; rebuilds from fresh
    /// reads when the store reports the reads went stale.
    async fn write<T>(
        &self,
        audit: Audit,
        mut build: impl FnMut(&mut Plan<'_, dyn Store>) -> Result<T>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            let mut plan = Plan::new(&*self.store, audit.clone());
            let value = build(&mut plan)?;
            let changes = plan.finish();
            match self.apply(&changes, None) {
                Ok(ticket) => {
                    self.durable(ticket).await?;
                    return Ok(value);
                }
                Err(Error::Conflict(_)) if tries < RETRIES => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the index snapshot ([`ServiceConfig::snapshot`]) so the next start can load
    /// it instead of rebuilding. Call it when no writes are in flight (at a clean stop):
    /// it holds the index for the whole write, so writes wait, and the snapshot matches
    /// the store exactly. Returns the records written, or `None` without a snapshot path.
    ///
    /// # Errors
    /// [`Error::Storage`] when the file cannot be written; the store is untouched either
    /// way, and a missing snapshot only costs a rebuild at the next start.
    pub fn save_snapshot(&self) -> Result<Option<usize>> {
        let Some(path) = self.config.snapshot.as_deref() else {
            return Ok(None);
        };
        let started = Instant::now();
        let index = self.write_index()?;
        let generation = self.store.records_generation()?;
        let fingerprint = snapshot::fingerprint(&self.linker)?;
        snapshot::write(path, fingerprint, generation, index.len(), index.entries())?;
        tracing::info!(
            records = index.len(),
            secs = started.elapsed().as_secs_f64(),
            "index snapshot written"
        );
        Ok(Some(index.len()))
    }

    /// Flushes everything written so far (after a non-durable bulk load).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush fails.
    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    // ---- reading ---------------------------------------------------------------------------

    /// One stored record and its link.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty key part; [`Error::NotFound`].
    pub fn get_record(&self, key: &RecordKey) -> Result<StoredRecord> {
        self.store
            .get_record(key)?
            .ok_or_else(|| not_found("record", key))
    }

    /// A person with golden view, records and history; a merged EUID resolves to its
    /// survivor (see [`PersonView::merge_path`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown EUID; store errors.
    pub fn get_person(&self, euid: &Euid) -> Result<PersonView> {
        let resolved = self
            .store
            .resolve_person(euid)?
            .ok_or_else(|| not_found("person", euid))?;
        let records = if resolved.person.is_active() {
            self.store.members(&resolved.person.euid)?
        } else {
            Vec::new()
        };
        // The survivor's history and, through its merge-absorbed entries, the history of
        // every person folded into it.
        let mut history = Vec::new();
        let mut seen = BTreeSet::from([resolved.person.euid.clone()]);
        let mut todo = vec![resolved.person.euid.clone()];
        while let Some(e) = todo.pop() {
            for h in self.store.history(&e)? {
                if h.action == HistoryAction::MergeAbsorbed {
                    for absorbed in &h.euids {
                        if seen.insert(absorbed.clone()) {
                            todo.push(absorbed.clone());
                        }
                    }
                }
                history.push(h);
            }
        }
        history.sort_by_key(|h| h.seq);
        let merge_path = if resolved.was_merged() {
            resolved.path.clone()
        } else {
            Vec::new()
        };
        Ok(PersonView {
            golden: golden::golden_view(&records),
            person: resolved.person,
            records,
            history,
            requested: euid.clone(),
            merge_path,
        })
    }

    fn task_view(&self, task: crate::store::ReviewTask) -> Result<TaskView> {
        let record_euid = self.store.get_record(&task.record)?.map(|r| r.euid);
        let detailed: Option<Vec<CandidateView>> =
            serde_json::from_value(task.explanation.clone()).ok();
        let candidates = match detailed {
            Some(d) if d.len() == task.candidates.len() => d,
            _ => task
                .candidates
                .iter()
                .map(|c| CandidateView {
                    euid: c.euid.clone(),
                    score: c.score,
                    probability: c.probability,
                    best_record: RecordKey::new("", ""),
                    explanation: Vec::new(),
                    reason: None,
                })
                .collect(),
        };
        Ok(TaskView {
            task,
            record_euid,
            candidates,
        })
    }

    /// One review task with its candidates' explanations.
    ///
    /// # Errors
    /// [`Error::NotFound`]; store errors.
    pub fn get_task(&self, id: TaskId) -> Result<TaskView> {
        let task = self
            .store
            .get_task(id)?
            .ok_or_else(|| not_found("review task", id))?;
        self.task_view(task)
    }

    /// A page of review tasks, oldest first; the second value continues the listing.
    ///
    /// # Errors
    /// Store errors.
    pub fn list_tasks(&self, query: &TaskQuery) -> Result<(Vec<TaskView>, Option<TaskId>)> {
        let page = self.store.list_tasks(query)?;
        let views = page
            .tasks
            .into_iter()
            .map(|t| self.task_view(t))
            .collect::<Result<_>>()?;
        Ok((views, page.next))
    }

    /// Counts, and the identity and training metadata of the model in use.
    ///
    /// # Errors
    /// Store errors.
    pub fn stats(&self) -> Result<ServiceStats> {
        let s = self.store.stats()?;
        Ok(ServiceStats {
            records: s.records,
            persons: s.persons,
            open_tasks: s.open_tasks,
            model_version: self.model_version().to_string(),
            model_description: self.linker.scorer().model().description.clone(),
            training: self.training.clone(),
            indexed_records: self.read_index()?.len() as u64,
        })
    }

    /// The store's invariant check plus a comparison of the live index with the stored
    /// records (each indexed under its person with its current content, nothing extra).
    ///
    /// # Errors
    /// Store errors while reading.
    pub fn check(&self) -> Result<ServiceCheck> {
        let store = self.store.check()?;
        let mut index_problems = Vec::new();
        let index = self.read_index()?;
        let indexed = index.verify(
            self.store.records(),
            |r| self.prepare(r),
            &mut index_problems,
        )?;
        Ok(ServiceCheck {
            store,
            indexed_records: indexed as u64,
            index_problems,
        })
    }

    // ---- registrar actions -----------------------------------------------------------------

    /// Deletes a record (the source retracted it); its person retires if left empty and its
    /// open review tasks are superseded.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad actor/reason/key; [`Error::NotFound`].
    #[tracing::instrument(skip_all, fields(record = %key))]
    pub async fn remove_record(
        &self,
        key: &RecordKey,
        actor: &str,
        reason: &str,
    ) -> Result<Removed> {
        let audit = audit(actor, reason)?;
        let removed = self.write(audit, |plan| plan.remove_record(key)).await?;
        tracing::info!(euid = %removed.euid, retired = removed.retired, "record removed");
        Ok(removed)
    }

    /// Moves a record to a person (a merged EUID resolves to its survivor).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record or person; [`Error::Conflict`] when the
    /// person is retired.
    #[tracing::instrument(skip_all, fields(record = %key, euid = %euid))]
    pub async fn link(
        &self,
        key: &RecordKey,
        euid: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<Moved> {
        let audit = audit(actor, reason)?;
        let moved = self
            .write(audit, |plan| {
                plan.move_record(key, euid, LinkMethod::Registrar)
            })
            .await?;
        tracing::info!(from = %moved.from, to = %moved.to, "record linked by registrar");
        Ok(moved)
    }

    /// Moves a record out of its person into a new person.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when it is its person's only record.
    #[tracing::instrument(skip_all, fields(record = %key))]
    pub async fn unlink(&self, key: &RecordKey, actor: &str, reason: &str) -> Result<Moved> {
        let audit = audit(actor, reason)?;
        let moved = self.write(audit, |plan| plan.unlink_record(key)).await?;
        tracing::info!(from = %moved.from, to = %moved.to, "record unlinked");
        Ok(moved)
    }

    /// Folds person `from` into `into`; `from` stays resolvable as an alias.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for the same person, a retired one, or two
    /// persons asserted not to be duplicates.
    #[tracing::instrument(skip_all, fields(from = %from, into = %into))]
    pub async fn merge_persons(
        &self,
        from: &Euid,
        into: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<Merged> {
        let audit = audit(actor, reason)?;
        let merged = self
            .write(audit, |plan| {
                let survivor = plan.active_person(into)?;
                let moved = plan.merge_persons(from, into)?;
                Ok(Merged {
                    survivor,
                    records_moved: moved.len(),
                })
            })
            .await?;
        tracing::info!(survivor = %merged.survivor, moved = merged.records_moved, "persons merged");
        Ok(merged)
    }

    /// Moves `keys` out of person `euid` into a new person (unmerge).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or repeated list; [`Error::NotFound`];
    /// [`Error::Conflict`] when a key is not a member or no record would stay.
    #[tracing::instrument(skip_all, fields(euid = %euid, records = keys.len()))]
    pub async fn split_person(
        &self,
        euid: &Euid,
        keys: &[RecordKey],
        actor: &str,
        reason: &str,
    ) -> Result<Split> {
        let audit = audit(actor, reason)?;
        let split = self
            .write(audit, |plan| {
                let euid = plan.active_person(euid)?;
                let new_euid = plan.split_person(&euid, keys)?;
                Ok(Split { euid, new_euid })
            })
            .await?;
        tracing::info!(new_euid = %split.new_euid, "person split");
        Ok(split)
    }

    /// Asserts two persons are different people; automatic matching respects it.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when both are the same person.
    #[tracing::instrument(skip_all, fields(a = %a, b = %b))]
    pub async fn mark_not_duplicate(
        &self,
        a: &Euid,
        b: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<()> {
        let audit = audit(actor, reason)?;
        self.write(audit, |plan| plan.assert_not_duplicate(a, b))
            .await?;
        tracing::info!("not-duplicate asserted");
        Ok(())
    }

    /// Resolves an open review task: link the record to a candidate, keep it separate
    /// (asserting it is not a duplicate of any candidate), or merge its person into a
    /// candidate. Returns the task and the record's person afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the chosen EUID is not a candidate of the task;
    /// [`Error::NotFound`]; [`Error::Conflict`] when the task is already resolved or the
    /// action conflicts with current state.
    #[tracing::instrument(skip_all, fields(task = %id))]
    pub async fn resolve_task(
        &self,
        id: TaskId,
        resolution: &Resolve,
        actor: &str,
        reason: &str,
    ) -> Result<(TaskView, Euid)> {
        let audit = audit(actor, reason)?;
        let euid = self
            .write(audit, |plan| {
                let task = plan.task_to_resolve(id)?;
                let own = plan
                    .record(&task.record)?
                    .map(|r| r.euid.clone())
                    .ok_or_else(|| {
                        Error::Conflict(format!("record {} is no longer stored", task.record))
                    })?;
                let mut candidates = Vec::new();
                for c in &task.candidates {
                    candidates.push(plan.resolve(&c.euid)?);
                }
                let chosen = |plan: &mut Plan<'_, dyn Store>, e: &Euid| -> Result<Euid> {
                    let e = plan.resolve(e)?;
                    if candidates.contains(&e) {
                        Ok(e)
                    } else {
                        Err(Error::invalid(
                            "euid",
                            "not a candidate of this review task",
                        ))
                    }
                };
                match resolution {
                    Resolve::Link(e) => {
                        let target = chosen(plan, e)?;
                        plan.move_record(&task.record, &target, LinkMethod::Registrar)?;
                        plan.resolve_task(id, Outcome::Linked { euid: target })?;
                    }
                    Resolve::Merge(e) => {
                        let target = chosen(plan, e)?;
                        plan.merge_persons(&own, &target)?;
                        plan.resolve_task(id, Outcome::Merged { into: target })?;
                    }
                    Resolve::KeepSeparate => {
                        plan.resolve_task(id, Outcome::KeptSeparate)?;
                        candidates.sort();
                        candidates.dedup();
                        for c in candidates.iter().filter(|c| **c != own) {
                            // A candidate retired since the task opened is no one to keep
                            // apart from.
                            let active = plan.person(c)?.is_some_and(|p| p.is_active());
                            if active && self.store.not_duplicate(&own, c)?.is_none() {
                                plan.assert_not_duplicate(&own, c)?;
                            }
                        }
                    }
                }
                plan.record(&task.record)?
                    .map(|r| r.euid.clone())
                    .ok_or_else(|| not_found("record", &task.record))
            })
            .await?;
        tracing::info!(record_euid = %euid, "review task resolved");
        Ok((self.get_task(id)?, euid))
    }
}

/// [`Linker::prepare`] through a name cache: the same result, with shared name text.
fn prepare(linker: &Linker, names: &NameCache, r: &Record) -> Prepared {
    let scorer = linker.scorer();
    let mut p = Prepared::new_cached(r, &scorer.model().placeholders, names);
    scorer.fill_tf(&mut p);
    p
}

fn poisoned() -> Error {
    Error::Corrupt(
        "the in-memory index was poisoned by an earlier panic; restart the server".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_names_the_field() {
        assert!(audit("registrar-7", "same MRN").is_ok());
        let e = audit(" ", "").unwrap_err().to_string();
        assert!(e.contains("actor") && e.contains("missing"), "{e}");
        let e = audit("a", &"x".repeat(2000)).unwrap_err().to_string();
        assert!(e.contains("reason") && !e.contains("xxx"), "{e}");
        let e = audit("a\u{7}", "").unwrap_err().to_string();
        assert!(e.contains("actor"), "{e}");
    }
}
