//! Async orchestration of the master patient index: match-or-create, matching without
//! writing, persons and their golden view, registrar actions (link, unlink, merge, split,
//! not-duplicate), the review queue and counts. Owns the in-memory index it decides with.
//! Its place among the layers and its domain rules are in docs/DESIGN.md.
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
//!   [`Error::Stale`] and is rebuilt from fresh reads (a few times) before the error reaches
//!   the caller.
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
//! thread scans the store, rayon decodes (only record and person,
//! [`RecordEntry`](crate::store::RecordEntry)), prepares and computes blocking keys for
//! batches in parallel, and the opening thread inserts them. Measured at 1M stored records
//! on the 2-core machine (BENCHMARKS.md): about 2.5 s from the snapshot and 8 s
//! rebuilding.
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
mod lookups;
mod matching;
mod reads;
mod rebuild;
mod registrar;
mod review;
mod rss;
pub mod snapshot;
pub mod stamp;
mod startup;
mod types;
mod views;
mod worklist;

pub use golden::golden_view;
pub use lookups::{FoundPersons, MatchGrade, PersonMatch, RECEIPT_WINDOW_MS};
pub use matching::MAX_MATCH_CANDIDATES;
pub use rss::resident_bytes;
pub use startup::IndexStats;
pub use types::{
    CandidateView, ComparisonView, GoldenView, MatchPreview, MatchResult, Merged, Pending,
    PersonView, ServiceCheck, ServiceStats, Split, TaskView,
};
pub use views::{CandidateDetail, MergePreview, PersonHit, TaskDetail, MAX_SEARCH_HITS};
pub use worklist::{
    AgeBand, TaskReason, Worklist, WorklistQuery, WorklistRow, WorklistSort, WorklistStatus,
};

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::linker::Linker;
use crate::prepare::{NameCache, Prepared};
use crate::record::Record;
use crate::scoring::{TrainingSummary, WeightBound};
use crate::store::{ChangeSet, Op, Plan, Stamp, Store, Ticket};

use index::LiveIndex;
use locks::Stripes;

/// How many times a write whose reads went stale is rebuilt before [`Error::Stale`] is
/// returned.
const RETRIES: usize = 8;

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

/// The master patient index service. Cheap to share: wrap it in an `Arc`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use empi::linker::Linker;
/// use empi::record::Record;
/// use empi::linker::Decision;
/// use empi::service::{Service, ServiceConfig};
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
/// assert_eq!(first.decision, Decision::New);
/// let second = service.match_or_create(record("2"), "adt-feed").await?;
/// assert_eq!(second.decision, Decision::Link);
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
    /// The open review tasks summarised for the worklist, kept in step with the store.
    open_tasks: worklist::OpenTasks,
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

impl Service {
    /// Opens the service over a store: loads the index from its snapshot when that matches
    /// the store, rebuilds it from every stored record (in parallel) otherwise. Reads only;
    /// blocking, so call it before serving or on a blocking thread.
    ///
    /// # Errors
    /// Store errors while reading.
    pub fn open(store: Arc<dyn Store>, linker: Linker, config: ServiceConfig) -> Result<Service> {
        let names = NameCache::new();
        let (index, index_stats) = startup::build_index(&*store, &linker, &config, &names)?;
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
            open_tasks: worklist::OpenTasks::default(),
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
            let mut plan = Plan::new(&*self.store, Stamp::now("empi", "model in use"));
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

    /// What building the index on open found.
    pub fn index_stats(&self) -> IndexStats {
        self.index_stats
    }

    /// Records in the live index now (0 if an earlier panic poisoned it).
    pub fn indexed_records(&self) -> usize {
        self.read_index().map_or(0, |i| i.len())
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
        self.open_tasks.apply(changes.ops());
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

    /// Everything applied so far, as a change to make durable before acknowledging what
    /// was read (a replayed message answered from its receipt).
    pub(crate) fn pending_now(&self) -> Pending {
        Pending(self.latest_ticket())
    }

    /// The latest ticket applied by this service.
    fn latest_ticket(&self) -> Ticket {
        *self.last_ticket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds a plan with `build`, applies it, waits for durability; rebuilds from fresh
    /// reads when the store reports the reads went stale ([`Error::Stale`], up to
    /// [`RETRIES`] times). Any other error is returned at once.
    async fn write<T>(
        &self,
        stamp: Stamp,
        build: impl FnMut(&mut Plan<'_, dyn Store>) -> Result<T>,
    ) -> Result<T> {
        self.write_with(stamp, None, build).await
    }

    /// [`Service::write`] with one more op (a door's receipt) in the same change set.
    async fn write_with<T>(
        &self,
        stamp: Stamp,
        extra: Option<Op>,
        mut build: impl FnMut(&mut Plan<'_, dyn Store>) -> Result<T>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            let mut plan = Plan::new(&*self.store, stamp.clone());
            let value = build(&mut plan)?;
            let mut changes = plan.finish();
            changes.extend(extra.iter().cloned().collect());
            match self.apply(&changes, None) {
                Ok(ticket) => {
                    self.durable(ticket).await?;
                    return Ok(value);
                }
                Err(Error::Stale(_)) if tries < RETRIES => {
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
