//! Persistence behind the [`Store`] trait: source records and their links, persons (EUIDs),
//! review tasks, not-duplicate assertions, history and counters. Owns the key layout and the
//! durability rule; [`SledStore`] in production, [`MemoryStore`] for tests. How it fits the
//! audit trail's durability is in docs/DESIGN.md, section 6.
//!
//! # Writing
//! Every write is a [`ChangeSet`] applied atomically in one transaction across all the trees
//! it touches, usually built by a [`Plan`] (create, link, move, merge, split, remove, review,
//! not-duplicate). Inside that transaction the store checks versions (optimistic
//! concurrency: a stale read fails with [`Error::Stale`] and the caller retries), keeps
//! the counters and task indexes, and verifies the invariants on everything touched:
//! - every stored record belongs to exactly one **active** person, which lists it;
//! - merged and retired persons hold no records; an active person holds at least one;
//! - a merged EUID points at an existing person, so its merge chain ends at a survivor;
//! - open review tasks reference stored records; tasks, assertions and history reference
//!   existing persons.
//!
//! A change set that would break one fails as a whole with [`Error::Internal`] (a defect of
//! the code that built it, never retried) and writes nothing.
//! [`Store::check`] verifies all of them over the whole store (`empi check`).
//!
//! # Durability rule
//! **A write is acknowledged only after it is flushed to disk** (for sled: its log
//! written and the file `fdatasync`ed, so the disk's write cache is flushed too), and
//! flushes are shared (group commit): [`Store::apply`] applies the change set and returns a
//! [`Ticket`]; [`Store::wait_durable`] waits until a flush that *started after* the write
//! has completed (or [`Store::flush_through`] flushes on the calling thread, for a thread
//! that batches its own callers, like the audit trail's writer). While one flush runs, every
//! writer that arrives waits for the next one, which covers all of them at once, so N
//! concurrent writers cost about one fsync per flush interval instead of N
//! ([`Store::flush_count`] counts them). A failed flush fails every commit it covered.
//! Reads may see applied writes before they are durable; a later durable write implies the
//! earlier ones are durable too (sled's log is ordered). Batch loading may
//! [`Store::apply`] many change sets and [`Store::flush`] once at the end.
//!
//! # Key layout
//! One sled tree per row; record keys cannot contain NUL (`0x00`), EUIDs are ASCII.
//!
//! | tree              | key                                   | value                          |
//! |-------------------|---------------------------------------|--------------------------------|
//! | `records`         | `source 0x00 local_id`                | [`StoredRecord`] (JSON)        |
//! | `persons`         | `euid`                                | [`Person`] (JSON)              |
//! | `tasks`           | `task_id` (u64, big-endian)           | [`ReviewTask`] (JSON)          |
//! | `tasks_open`      | `task_id` (u64, big-endian)           | empty (index of open tasks)    |
//! | `tasks_by_record` | `source 0x00 local_id 0x00 task_id`   | empty (open tasks per record)  |
//! | `not_duplicate`   | `euid_a 0x00 euid_b` (both directions) | [`NotDuplicate`] (JSON)       |
//! | `history`         | `euid 0x00 seq` (u64, big-endian)     | [`HistoryEntry`] (JSON)        |
//! | `changes`         | `seq` (u64, big-endian)               | [`ChangeEvent`] (JSON): the change feed ([`feed`]) |
//! | `meta`            | `format_version`, `next_euid`, `next_task`, `history_seq`, `count_records`, `count_persons`, `count_open_tasks`, `records_generation`, `feed_seq`, `feed_first` | u64, big-endian |
//! | `meta`            | `model_version`                       | UTF-8 text                     |
//! | `receipts`        | day (u32, big-endian) `id`            | time (i64, big-endian) and a door's body ([`Receipt`]) |
//! | `journal` (sled)  | eight zero bytes (one key)            | the last change set's writes, until a clean close (see [`SledStore`]) |
//! | `staging` (sled)  | eight zero bytes                      | the staging caller's mark ([`Staging`]) |
//! | `staging` (sled)  | entry number (u64, big-endian, ≥ 1)   | a staged entry (a cycle of the audit trail's lines) |
//! | `audit_intents` (sled) | intent number (u64, big-endian)  | a write call's audit line kept before its change ([`Staging::stage_intent`]) |
//!
//! Big-endian numbers and zero-padded EUIDs make byte order equal numeric order, so tasks
//! list oldest first and a person's history reads in sequence with one prefix scan.
//!
//! # Value encoding
//! Values are JSON (serde_json). It is self-describing, so fields can be added later with
//! `#[serde(default)]` and old values still read, and a store can be inspected with ordinary
//! tools when something goes wrong. It costs some bytes and microseconds per value, which is
//! small next to a flush. Decoding errors are reported without the value (patient data).

use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};
use crate::record::RecordKey;

pub mod backup;
mod changes;
mod codec;
mod engine;
pub mod feed;
mod group_commit;
mod plan;
mod types;
pub mod upgrade;

pub use changes::{ChangeSet, Op};
pub use feed::{Change, ChangeEvent, FeedBounds};
pub use plan::{Moved, Plan, Removed, Stamp};
pub use types::{
    CheckReport, Euid, HistoryAction, HistoryEntry, LinkInfo, LinkMethod, NotDuplicate, OpaqueJson,
    Person, PersonStatus, Receipt, RecordEntry, Resolution, ResolutionAction, ReviewTask, Stats,
    StoredRecord, Survivor, TaskCandidate, TaskId, TaskPage, TaskQuery, TaskStatus, Ticket,
    UnixMillis,
};

/// A boxed future, so that [`Store`] stays usable as `dyn Store`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The persistent store. Object-safe: the service may hold an `Arc<dyn Store>`.
///
/// Reads are synchronous and short (sled serves them from its page cache). Writes go through
/// [`Store::apply`], then [`Store::wait_durable`] (async, group-committed) or
/// [`Store::flush_through`]; batch loading applies many and [`Store::flush`]es once.
pub trait Store: Send + Sync {
    // ---- writing ----

    /// Allocates a fresh EUID from the persistent counter; never returns one twice.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Corrupt`] for a malformed counter.
    fn allocate_euid(&self) -> Result<Euid>;

    /// Allocates a fresh review task id from the persistent counter.
    ///
    /// # Errors
    /// As [`Store::allocate_euid`].
    fn allocate_task_id(&self) -> Result<TaskId>;

    /// Applies a change set atomically, **without** waiting for durability. Returns the
    /// ticket to wait on ([`Store::wait_durable`]); an empty change set returns a ticket
    /// that is durable already.
    ///
    /// # Errors
    /// [`Error::Stale`] for a stale version; [`Error::Internal`] for a change set that
    /// would break an invariant;
    /// [`Error::NotFound`] when deleting a record that is not stored; [`Error::InvalidInput`]
    /// for an unencodable record key; [`Error::Storage`]/[`Error::Corrupt`] from the engine.
    /// On any error nothing was written.
    fn apply(&self, changes: &ChangeSet) -> Result<Ticket>;

    /// Waits until the write with `ticket` is flushed, sharing flushes with concurrent
    /// writers. Must be awaited inside a tokio runtime (the flush runs on a blocking thread).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush covering the ticket failed.
    fn wait_durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<()>>;

    /// Flushes everything applied so far, on the calling thread.
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush failed.
    fn flush(&self) -> Result<()>;

    /// Makes the write with `ticket` durable on the calling thread: at once when a flush
    /// covered it already, else by flushing everything applied so far (for a thread that
    /// batches its own callers, like the audit trail's writer).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush failed.
    fn flush_through(&self, ticket: Ticket) -> Result<()>;

    /// Number of flushes performed (shared and synchronous) since opening.
    fn flush_count(&self) -> u64;

    /// How long flushes took since opening (the durability cycle: sled's flush and the
    /// `fdatasync`), for the operations listener.
    fn flush_latency(&self) -> &crate::metrics::Histogram;

    /// Bytes the store occupies on disk; `None` for a store kept in memory.
    fn size_on_disk(&self) -> Option<u64>;

    /// False while the store cannot take writes: its latest flush failed (until one
    /// succeeds), or a write failed midway (until it is reopened). For the health check.
    fn writable(&self) -> bool;

    /// Applies a change set and flushes on the calling thread (tools, tests).
    ///
    /// # Errors
    /// As [`Store::apply`] and [`Store::flush`].
    fn commit_sync(&self, changes: &ChangeSet) -> Result<()> {
        if self.apply(changes)? != Ticket(0) {
            self.flush()?;
        }
        Ok(())
    }

    // ---- reading ----

    /// A stored record by key.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a key with NUL or empty parts; storage errors.
    fn get_record(&self, key: &RecordKey) -> Result<Option<StoredRecord>>;

    /// A person by EUID, without following merges.
    ///
    /// # Errors
    /// Storage errors.
    fn get_person(&self, euid: &Euid) -> Result<Option<Person>>;

    /// The survivor of an EUID: its person, or where its merge chain ends.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a broken merge chain; storage errors.
    fn survivor_of(&self, euid: &Euid) -> Result<Option<Survivor>>;

    /// The member records of a person (its survivor's, when merged), in joining order.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown EUID; [`Error::Corrupt`] for a dangling member.
    fn members(&self, euid: &Euid) -> Result<Vec<StoredRecord>>;

    /// Every stored record, in key order (to rebuild the blocking index on start).
    fn records(&self) -> Box<dyn Iterator<Item = Result<StoredRecord>> + '_>;

    /// Every stored record still encoded, in key order, so a caller can decode in parallel
    /// ([`StoredRecord::decode`], or the cheaper [`RecordEntry::decode`] when rebuilding
    /// an index).
    fn encoded_records(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>>> + '_>;

    /// A review task by id.
    ///
    /// # Errors
    /// Storage errors.
    fn get_task(&self, id: TaskId) -> Result<Option<ReviewTask>>;

    /// A page of review tasks, oldest first, filtered by status and creation time.
    ///
    /// # Errors
    /// Storage errors.
    fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage>;

    /// The open review tasks about one record.
    ///
    /// # Errors
    /// As [`Store::get_record`].
    fn open_tasks_for_record(&self, key: &RecordKey) -> Result<Vec<ReviewTask>>;

    /// A person's own history (this EUID only, not following merges), oldest first.
    ///
    /// # Errors
    /// Storage errors.
    fn history(&self, euid: &Euid) -> Result<Vec<HistoryEntry>>;

    /// The not-duplicate assertion between two persons, after following both to their
    /// survivors.
    ///
    /// # Errors
    /// Storage errors.
    fn not_duplicate(&self, a: &Euid, b: &Euid) -> Result<Option<NotDuplicate>>;

    /// Every assertion naming `euid` (not following merges), each with `a == euid`.
    ///
    /// # Errors
    /// Storage errors.
    fn not_duplicates_of(&self, euid: &Euid) -> Result<Vec<NotDuplicate>>;

    /// Counts and model version.
    ///
    /// # Errors
    /// Storage errors.
    fn stats(&self) -> Result<Stats>;

    /// A counter bumped by every change set that writes or deletes a record, in the same
    /// transaction: equal values mean the same stored records and links (what the
    /// service's index snapshot is checked against).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for a malformed counter.
    fn records_generation(&self) -> Result<u64>;

    /// Verifies every invariant over the whole store; violations are listed in the report
    /// (the store is fine when [`CheckReport::is_ok`]).
    ///
    /// # Errors
    /// Storage errors while reading.
    fn check(&self) -> Result<CheckReport>;

    /// Whether any record of `source` is stored (one prefix read): whether a source is a
    /// domain the store knows.
    ///
    /// # Errors
    /// Storage errors.
    fn has_source(&self, source: &str) -> Result<bool>;

    /// The receipt kept under `id` at or after `since`, if any ([`Receipt`]): looked up in
    /// the day of every time from `since` to now, newest first.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for a malformed receipt.
    fn receipt(&self, id: &[u8], since: UnixMillis) -> Result<Option<Receipt>>;

    /// Drops receipts filed on days before the day of `before`, at most `max` of them in
    /// one atomic write, and returns how many it dropped (fewer than `max`: none is left
    /// before that day). Not flushed: a crash may keep some, which only costs space.
    ///
    /// # Errors
    /// Storage errors.
    fn prune_receipts(&self, before: UnixMillis, max: usize) -> Result<usize>;

    // ---- the change feed ----

    /// Up to `max` change feed events after number `after`, in order, durable ones only
    /// ([`feed`]). Fewer than asked when the feed ends; the first is not `after + 1` when
    /// retention pruned it (see [`Store::feed_bounds`]).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for an undecodable event.
    fn changes_after(&self, after: u64, max: usize) -> Result<Vec<ChangeEvent>>;

    /// The oldest kept and the newest durable event numbers.
    ///
    /// # Errors
    /// Storage errors.
    fn feed_bounds(&self) -> Result<FeedBounds>;

    /// A receiver of the durable head: it changes when a flush makes new events durable.
    fn watch_feed(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Retention: drops the oldest durable events made before `before`, at most `max` of
    /// them in one change set. Returns how many were dropped (call again while it is
    /// `max`).
    ///
    /// # Errors
    /// As [`Store::apply`].
    fn prune_changes(&self, before: UnixMillis, max: usize) -> Result<u64>;

    /// Reads every entry of every tree and returns how many it read: proof that the store
    /// can be read through (sled checks each page it reads against its checksum), for a
    /// start that loads its index from a snapshot instead of from the store (see
    /// [`crate::service::snapshot`]). Far cheaper than [`Store::check`]: nothing is
    /// decoded, no invariant checked.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for data that cannot be read or decoded; [`Error::Storage`].
    fn verify_readable(&self) -> Result<u64>;
}

mod memory;
pub mod private;
mod sled;

/// A place where another component keeps bytes durable through the store's own flushes,
/// until it has made its own copy durable: the audit trail stages each batch of lines here,
/// so one flush per cycle covers both the store and the trail, and it syncs its file only
/// now and then ([`crate::auth::AuditLog::open_staged`]).
///
/// Entries are numbered by the caller (from 1, increasing); a *mark* is the caller's own
/// note of how far its copy is durable, kept with the entries.
pub trait Staging: Send + Sync {
    /// Stores `bytes` as entry `seq` (replacing one with that number). Not durable yet:
    /// returns the ticket to pass to [`Staging::flush_staged`].
    ///
    /// # Errors
    /// [`Error::Storage`] from the engine.
    fn stage(&self, seq: u64, bytes: &[u8]) -> Result<Ticket>;

    /// Makes the write with `ticket` durable (see [`Store::flush_through`]).
    ///
    /// # Errors
    /// [`Error::Storage`] when the flush failed.
    fn flush_staged(&self, ticket: Ticket) -> Result<()>;

    /// Keeps `bytes` under `id` in a second space, *intents*: a caller's note made before
    /// it changes the store, so that sled's log holds it before the change (a recovered
    /// prefix of the log that has the change has the note). Not flushed.
    ///
    /// # Errors
    /// [`Error::Storage`] from the engine.
    fn stage_intent(&self, id: u64, bytes: &[u8]) -> Result<()>;

    /// Drops the intents numbered `ids` (absent ones are skipped). Not flushed.
    ///
    /// # Errors
    /// [`Error::Storage`] from the engine.
    fn drop_intents(&self, ids: &[u64]) -> Result<()>;

    /// Records `mark`, then drops every entry numbered `through` or lower. Not flushed: a
    /// crash may keep the old mark or some of the entries, never drop an entry above the
    /// mark that is durable.
    ///
    /// # Errors
    /// [`Error::Storage`] from the engine.
    fn settle_staged(&self, mark: &[u8], through: u64) -> Result<()>;

    /// The last mark recorded, every entry and every intent still kept.
    ///
    /// # Errors
    /// [`Error::Storage`]/[`Error::Corrupt`] from the engine.
    fn staged(&self) -> Result<StagedEntries>;
}

/// What [`Staging::staged`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedEntries {
    /// The last mark recorded, if any.
    pub mark: Option<Vec<u8>>,
    /// Every entry still kept, by number, in increasing order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Every intent still kept, by number, in increasing order.
    pub intents: Vec<(u64, Vec<u8>)>,
}

pub use engine::KvStore;

/// The production store: a sled database in one directory ([`KvStore`] over sled).
///
/// Opening takes sled's lock on the directory, so one process at a time.
pub type SledStore = KvStore<sled::SledKv>;

/// The same store logic, key layout and encoding over in-memory ordered maps, for tests:
/// nothing persisted; "flushing" does nothing, after an optional simulated latency.
pub type MemoryStore = KvStore<memory::MemKv>;

/// Retries `attempt` while it fails with [`Error::Stale`], up to `tries` times in all: the
/// usual loop around "build a [`Plan`] from fresh reads, commit it", for when a concurrent
/// writer changed what the plan read. Other errors (a conflict with the state, a defect)
/// are returned at once.
///
/// # Errors
/// The last error.
pub async fn retry_on_stale<T, F, Fut>(tries: usize, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut left = tries.max(1);
    loop {
        match attempt().await {
            Err(Error::Stale(_)) if left > 1 => left -= 1,
            other => return other,
        }
    }
}
