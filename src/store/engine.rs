//! [`KvStore`]: the [`Store`] over an abstract ordered key-value backend ([`Kv`]):
//! applying change sets with their version checks, counters, indexes and invariant checks
//! in one transaction; reads; and the full consistency check. Both backends (sled, memory)
//! run this same code; a backend only stores bytes in trees and runs transactions.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::record::RecordKey;

use super::changes::{ChangeSet, Op};
use super::codec::{self, meta, TreeId};
use super::feed::{ChangeEvent, FeedBounds, FeedHead};
use super::group_commit::{Flusher, GroupCommit};
use super::types::{
    CheckReport, Euid, HistoryEntry, NotDuplicate, Person, PersonStatus, Receipt, ReviewTask,
    Stats, StoredRecord, Survivor, TaskId, TaskPage, TaskQuery, Ticket, UnixMillis,
};
use super::{BoxFuture, Store};

/// Result inside a transaction: an error abandons it, writing nothing, and is returned.
pub type TxResult<T> = Result<T>;

/// Reads and writes inside one transaction; reads see the transaction's own writes.
pub trait KvTx {
    /// The value under `key`.
    fn get(&self, tree: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>>;
    /// Sets `key` to `value`.
    fn insert(&self, tree: TreeId, key: &[u8], value: Vec<u8>) -> TxResult<()>;
    /// Deletes `key`.
    fn remove(&self, tree: TreeId, key: &[u8]) -> TxResult<()>;
}

/// A transaction's pending writes, in key order: `None` deletes.
pub(crate) type Overlay = std::collections::BTreeMap<(TreeId, Vec<u8>), Option<Vec<u8>>>;

/// A transaction that collects its writes in an [`Overlay`] and reads through them to
/// `base` (the committed trees). Both backends run change sets through it and apply the
/// overlay afterwards.
pub(crate) struct OverlayTx<B> {
    base: B,
    writes: std::cell::RefCell<Overlay>,
}

impl<B: Fn(TreeId, &[u8]) -> Result<Option<Vec<u8>>>> OverlayTx<B> {
    pub(crate) fn new(base: B) -> Self {
        OverlayTx {
            base,
            writes: std::cell::RefCell::new(Overlay::new()),
        }
    }

    /// The writes collected.
    pub(crate) fn into_writes(self) -> Overlay {
        self.writes.into_inner()
    }
}

impl<B: Fn(TreeId, &[u8]) -> Result<Option<Vec<u8>>>> KvTx for OverlayTx<B> {
    fn get(&self, tree: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        if let Some(w) = self.writes.borrow().get(&(tree, key.to_vec())) {
            return Ok(w.clone());
        }
        (self.base)(tree, key)
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: Vec<u8>) -> TxResult<()> {
        self.writes
            .borrow_mut()
            .insert((tree, key.to_vec()), Some(value));
        Ok(())
    }

    fn remove(&self, tree: TreeId, key: &[u8]) -> TxResult<()> {
        self.writes.borrow_mut().insert((tree, key.to_vec()), None);
        Ok(())
    }
}

/// Key-value pairs in key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// An ordered key-value backend with multi-tree serializable transactions: the seam
/// between the store's logic ([`KvStore`]) and where its bytes live. Implemented by the
/// crate's backends only (the trait is not nameable outside the crate).
pub trait Kv: Send + Sync {
    /// The value under `key`.
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries whose key starts with `prefix`, in key order, strictly after `after` if given.
    fn scan(&self, tree: TreeId, prefix: &[u8], after: Option<&[u8]>) -> KvIter<'_>;
    /// Atomically adds one to the `meta` counter `key` and returns the new value. Runs outside
    /// any transaction (ids are allocated before the change set that uses them).
    fn increment(&self, key: &'static [u8]) -> Result<u64>;
    /// Runs `f` as one serializable transaction: all its writes or none.
    fn transact<R>(&self, f: &dyn Fn(&dyn KvTx) -> TxResult<R>) -> Result<R>;
    /// False once a write failed midway and no more can be taken until the store is
    /// reopened.
    fn accepts_writes(&self) -> bool {
        true
    }
    /// Bytes on disk; `None` in memory.
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}

/// Where a scan starts: at `prefix`, or just after `after` when that is later.
pub(crate) fn scan_start(prefix: &[u8], after: Option<&[u8]>) -> Bound<Vec<u8>> {
    match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    }
}

fn tx_get<T: DeserializeOwned>(
    tx: &dyn KvTx,
    tree: TreeId,
    key: &[u8],
    what: &str,
) -> TxResult<Option<T>> {
    match tx.get(tree, key)? {
        None => Ok(None),
        Some(v) => Ok(Some(codec::decode(what, &v)?)),
    }
}

fn stale(what: &str, id: &dyn std::fmt::Display, read: u64, stored: u64) -> Error {
    Error::Stale(format!(
        "stale write to {what} {id}: read version {read}, stored version {stored}; re-read and retry"
    ))
}

/// A change set that would break an invariant: a defect of whoever built it (a [`Plan`]
/// keeps every invariant over the state it read, and a stale read fails its version check
/// first), so it is not retried.
///
/// [`Plan`]: super::Plan
fn rejected(msg: String) -> Error {
    Error::Internal(format!("change set rejected: {msg}"))
}

/// Counter changes made by one change set.
#[derive(Default)]
struct Deltas {
    records: i64,
    persons: i64,
    open_tasks: i64,
}

/// The store over backend `K`: [`super::SledStore`] and [`super::MemoryStore`] are this
/// over sled and over in-memory maps.
pub struct KvStore<K> {
    pub(crate) kv: K,
    gc: GroupCommit,
    feed: std::sync::Arc<FeedHead>,
    flush_latency: std::sync::Arc<crate::metrics::Histogram>,
}

impl<K: Kv> KvStore<K> {
    /// Wraps a backend, initialising or checking the on-disk format version (an older
    /// format is refused, naming the command that upgrades it: [`super::upgrade`]).
    ///
    /// Everything the backend holds must be durable already (sled's opening flushes):
    /// the change feed's head is published as it stands, and every later flush publishes
    /// what was applied before it began ([`crate::store::feed`]).
    pub(crate) fn over(kv: K, flusher: Flusher) -> Result<Self> {
        match kv.get(TreeId::Meta, meta::FORMAT_VERSION)? {
            Some(v) => super::upgrade::check_format(codec::decode_u64(Some(&v))?)?,
            None => kv.transact(&|tx| {
                tx.insert(
                    TreeId::Meta,
                    meta::FORMAT_VERSION,
                    codec::encode_u64(codec::FORMAT_VERSION),
                )
            })?,
        }
        let head = codec::decode_u64(kv.get(TreeId::Meta, meta::FEED_SEQ)?.as_deref())?;
        let feed = std::sync::Arc::new(FeedHead::new(head));
        let flush_latency = std::sync::Arc::new(crate::metrics::Histogram::new());
        let (publish, timed) = (std::sync::Arc::clone(&feed), flush_latency.clone());
        // What was applied before the flush began is durable once it succeeds.
        let flusher: Flusher = std::sync::Arc::new(move || {
            let applied = publish.applied_head();
            let started = std::time::Instant::now();
            flusher()?;
            timed.observe(started.elapsed());
            publish.durable(applied);
            Ok(())
        });
        Ok(KvStore {
            kv,
            gc: GroupCommit::new(flusher),
            feed,
            flush_latency,
        })
    }

    fn get_decoded<T: DeserializeOwned>(
        &self,
        tree: TreeId,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>> {
        match self.kv.get(tree, key)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(what, &v)?)),
        }
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        codec::decode_u64(self.kv.get(TreeId::Meta, key)?.as_deref())
    }

    /// Registers a write made outside a change set (see [`super::Staging`]); its ticket is
    /// durable after the next flush.
    pub(crate) fn written(&self) -> Ticket {
        self.gc.written()
    }

    fn task_from_index(&self, key: &[u8]) -> Result<ReviewTask> {
        let id = codec::decode_task_key(key)?;
        self.get_task(id)?
            .ok_or_else(|| Error::Corrupt(format!("open-task index names missing task {id}")))
    }
}

impl<K: Kv> Store for KvStore<K> {
    // ---- writes ------------------------------------------------------------------------

    fn allocate_euid(&self) -> Result<Euid> {
        Ok(Euid::from_seq(self.kv.increment(meta::NEXT_EUID)?))
    }

    fn allocate_task_id(&self) -> Result<TaskId> {
        Ok(TaskId(self.kv.increment(meta::NEXT_TASK)?))
    }

    fn apply(&self, changes: &ChangeSet) -> Result<Ticket> {
        if changes.is_empty() {
            return Ok(Ticket(0));
        }
        precheck(changes)?;
        let published = self.kv.transact(&|tx| apply_ops(tx, changes.ops()))?;
        // Before the ticket: a flush that covers the ticket covers these events.
        if let Some(seq) = published {
            self.feed.applied(seq);
        }
        Ok(self.gc.written())
    }

    fn wait_durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.gc.wait(ticket))
    }

    fn flush(&self) -> Result<()> {
        self.gc.flush_sync()
    }

    fn flush_through(&self, ticket: Ticket) -> Result<()> {
        self.gc.flush_through(ticket)
    }

    fn flush_count(&self) -> u64 {
        self.gc.flushes()
    }

    fn flush_latency(&self) -> &crate::metrics::Histogram {
        &self.flush_latency
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.kv.size_on_disk()
    }

    fn writable(&self) -> bool {
        self.kv.accepts_writes() && !self.gc.last_flush_failed()
    }

    // ---- reads -------------------------------------------------------------------------

    fn get_record(&self, key: &RecordKey) -> Result<Option<StoredRecord>> {
        codec::check_record_key(key)?;
        self.get_decoded(TreeId::Records, &codec::record_key(key), "record")
    }

    fn get_person(&self, euid: &Euid) -> Result<Option<Person>> {
        self.get_decoded(TreeId::Persons, &codec::euid_key(euid), "person")
    }

    fn survivor_of(&self, euid: &Euid) -> Result<Option<Survivor>> {
        let Some(mut person) = self.get_person(euid)? else {
            return Ok(None);
        };
        let mut path = vec![euid.clone()];
        while let PersonStatus::MergedInto(next) = &person.status {
            if path.contains(next) || path.len() > 10_000 {
                return Err(Error::Corrupt(format!("merge chain from {euid} loops")));
            }
            let next = next.clone();
            person = self.get_person(&next)?.ok_or_else(|| {
                Error::Corrupt(format!("person {} merged into missing {next}", person.euid))
            })?;
            path.push(next);
        }
        Ok(Some(Survivor { person, path }))
    }

    fn members(&self, euid: &Euid) -> Result<Vec<StoredRecord>> {
        let resolved = self
            .survivor_of(euid)?
            .ok_or_else(|| Error::not_found("person", euid))?;
        resolved
            .person
            .members
            .iter()
            .map(|k| {
                self.get_record(k)?.ok_or_else(|| {
                    Error::Corrupt(format!(
                        "person {} lists missing record {k}",
                        resolved.person.euid
                    ))
                })
            })
            .collect()
    }

    fn records(&self) -> Box<dyn Iterator<Item = Result<StoredRecord>> + '_> {
        Box::new(
            self.kv
                .scan(TreeId::Records, &[], None)
                .map(|kv| kv.and_then(|(_, v)| codec::decode("record", &v))),
        )
    }

    fn encoded_records(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>>> + '_> {
        Box::new(
            self.kv
                .scan(TreeId::Records, &[], None)
                .map(|kv| kv.map(|(_, v)| v)),
        )
    }

    fn get_task(&self, id: TaskId) -> Result<Option<ReviewTask>> {
        self.get_decoded(TreeId::Tasks, &codec::task_key(id), "review task")
    }

    fn list_tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let size = q.effective_page_size();
        let after = q.after.map(codec::task_key);
        let from_open_index = q.open == Some(true);
        let tree = if from_open_index {
            TreeId::TasksOpen
        } else {
            TreeId::Tasks
        };
        let mut page = TaskPage::default();
        for item in self.kv.scan(tree, &[], after.as_ref().map(|a| &a[..])) {
            let (k, v) = item?;
            let task = if from_open_index {
                self.task_from_index(&k)?
            } else {
                codec::decode::<ReviewTask>("review task", &v)?
            };
            if !q.matches(&task) {
                continue;
            }
            if page.tasks.len() == size {
                page.next = page.tasks.last().map(|t| t.id);
                break;
            }
            page.tasks.push(task);
        }
        Ok(page)
    }

    fn open_tasks_for_record(&self, key: &RecordKey) -> Result<Vec<ReviewTask>> {
        codec::check_record_key(key)?;
        let prefix = codec::task_by_record_prefix(key);
        self.kv
            .scan(TreeId::TasksByRecord, &prefix, None)
            .map(|item| {
                let (k, _) = item?;
                self.task_from_index(&k[prefix.len()..])
            })
            .collect()
    }

    fn history(&self, euid: &Euid) -> Result<Vec<HistoryEntry>> {
        self.kv
            .scan(TreeId::History, &codec::euid_prefix(euid), None)
            .map(|item| item.and_then(|(_, v)| codec::decode("history entry", &v)))
            .collect()
    }

    fn not_duplicate(&self, a: &Euid, b: &Euid) -> Result<Option<NotDuplicate>> {
        let survivor = |e: &Euid| -> Result<Euid> {
            Ok(self
                .survivor_of(e)?
                .map(|r| r.person.euid)
                .unwrap_or_else(|| e.clone()))
        };
        let (a, b) = (survivor(a)?, survivor(b)?);
        self.get_decoded(
            TreeId::NotDuplicate,
            &codec::pair_key(&a, &b),
            "not-duplicate assertion",
        )
    }

    fn not_duplicates_of(&self, euid: &Euid) -> Result<Vec<NotDuplicate>> {
        self.kv
            .scan(TreeId::NotDuplicate, &codec::euid_prefix(euid), None)
            .map(|item| item.and_then(|(_, v)| codec::decode("not-duplicate assertion", &v)))
            .collect()
    }

    fn records_generation(&self) -> Result<u64> {
        self.counter(meta::RECORDS_GENERATION)
    }

    fn stats(&self) -> Result<Stats> {
        let model_version = match self.kv.get(TreeId::Meta, meta::MODEL_VERSION)? {
            None => None,
            Some(v) => Some(
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt("model version is not UTF-8".into()))?,
            ),
        };
        Ok(Stats {
            records: self.counter(meta::RECORDS)?,
            persons: self.counter(meta::PERSONS)?,
            open_tasks: self.counter(meta::OPEN_TASKS)?,
            model_version,
        })
    }

    fn has_source(&self, source: &str) -> Result<bool> {
        let mut prefix = source.as_bytes().to_vec();
        prefix.push(0);
        Ok(self
            .kv
            .scan(TreeId::Records, &prefix, None)
            .next()
            .transpose()?
            .is_some())
    }

    fn receipt(&self, id: &[u8], since: UnixMillis) -> Result<Option<Receipt>> {
        let (first, last) = (
            codec::receipt_day(since.0),
            codec::receipt_day(UnixMillis::now().0),
        );
        for day in (first..=last.max(first)).rev() {
            let Some(v) = self
                .kv
                .get(TreeId::Receipts, &codec::receipt_key(day, id))?
            else {
                continue;
            };
            let (at, body) = codec::decode_receipt(&v)?;
            if at >= since.0 {
                return Ok(Some(Receipt {
                    id: id.to_vec(),
                    at: UnixMillis(at),
                    body,
                }));
            }
        }
        Ok(None)
    }

    fn prune_receipts(&self, before: UnixMillis, max: usize) -> Result<usize> {
        let cutoff = codec::receipt_day(before.0);
        let mut old = Vec::new();
        for item in self.kv.scan(TreeId::Receipts, &[], None) {
            let (k, _) = item?;
            if old.len() >= max || codec::receipt_key_day(&k)? >= cutoff {
                break;
            }
            old.push(k);
        }
        if !old.is_empty() {
            self.kv.transact(&|tx| {
                for k in &old {
                    tx.remove(TreeId::Receipts, k)?;
                }
                Ok(())
            })?;
        }
        Ok(old.len())
    }

    fn changes_after(&self, after: u64, max: usize) -> Result<Vec<ChangeEvent>> {
        let head = self.feed.durable_head();
        let from = codec::change_key(after);
        let mut out = Vec::new();
        for item in self.kv.scan(TreeId::Changes, &[], Some(&from)) {
            let (k, v) = item?;
            if out.len() >= max || codec::decode_change_key(&k)? > head {
                break;
            }
            out.push(codec::decode::<ChangeEvent>("change event", &v)?);
        }
        Ok(out)
    }

    fn feed_bounds(&self) -> Result<FeedBounds> {
        let head = self.feed.durable_head();
        let first = self.counter(meta::FEED_FIRST)?.max(1);
        Ok(FeedBounds {
            first: first.min(head + 1),
            head,
        })
    }

    fn watch_feed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.subscribe()
    }

    fn prune_changes(&self, before: UnixMillis, max: usize) -> Result<u64> {
        let mut through = None;
        for item in self.kv.scan(TreeId::Changes, &[], None).take(max) {
            let (_, v) = item?;
            let event: ChangeEvent = codec::decode("change event", &v)?;
            if event.at >= before || event.seq > self.feed.durable_head() {
                break;
            }
            through = Some(event.seq);
        }
        let Some(through) = through else {
            return Ok(0);
        };
        let first = self.counter(meta::FEED_FIRST)?.max(1);
        self.apply(&ChangeSet::from(vec![Op::PruneChanges { through }]))?;
        Ok(through + 1 - first)
    }

    fn verify_readable(&self) -> Result<u64> {
        let mut read = 0u64;
        for tree in TreeId::ALL {
            for item in self.kv.scan(tree, &[], None) {
                item?;
                read += 1;
            }
        }
        Ok(read)
    }

    // ---- full check --------------------------------------------------------------------

    fn check(&self) -> Result<CheckReport> {
        let mut rep = CheckReport::default();

        // persons
        let mut persons: BTreeMap<Euid, Person> = BTreeMap::new();
        for item in self.kv.scan(TreeId::Persons, &[], None) {
            let (k, v) = item?;
            let Ok(key_euid) = codec::decode_euid_key(&k) else {
                rep.problem("malformed key in persons tree");
                continue;
            };
            match codec::decode::<Person>("person", &v) {
                Ok(p) if p.euid == key_euid => {
                    persons.insert(key_euid, p);
                }
                Ok(_) => rep.problem(format!("person {key_euid}: stored under another euid")),
                Err(e) => rep.problem(format!("person {key_euid}: {}", why(e))),
            }
        }

        // records
        let mut records: BTreeMap<RecordKey, Euid> = BTreeMap::new();
        for item in self.kv.scan(TreeId::Records, &[], None) {
            let (k, v) = item?;
            let Ok(key) = codec::decode_record_key(&k) else {
                rep.problem("malformed key in records tree");
                continue;
            };
            let r = match codec::decode::<StoredRecord>("record", &v) {
                Ok(r) => r,
                Err(e) => {
                    rep.problem(format!("record {key}: {}", why(e)));
                    continue;
                }
            };
            if r.key() != key {
                rep.problem(format!("record {key}: stored under another key"));
            }
            match persons.get(&r.euid) {
                None => rep.problem(format!("record {key}: person {} does not exist", r.euid)),
                Some(p) if !p.is_active() => {
                    rep.problem(format!("record {key}: person {} is not active", r.euid))
                }
                Some(p) if !p.members.contains(&key) => {
                    rep.problem(format!("record {key}: person {} does not list it", r.euid))
                }
                Some(_) => {}
            }
            records.insert(key, r.euid);
        }
        rep.records = records.len() as u64;

        // persons: members, statuses, merge chains
        let mut owner: HashMap<&RecordKey, &Euid> = HashMap::new();
        let max_euid = self.counter(meta::NEXT_EUID)?;
        for (euid, p) in &persons {
            if euid.seq() > max_euid {
                rep.problem(format!(
                    "person {euid}: beyond the euid counter ({max_euid})"
                ));
            }
            match &p.status {
                PersonStatus::Active => {
                    rep.active_persons += 1;
                    if p.members.is_empty() {
                        rep.problem(format!("person {euid}: active without records"));
                    }
                }
                PersonStatus::MergedInto(into) => {
                    rep.merged_persons += 1;
                    if !persons.contains_key(into) {
                        rep.problem(format!("person {euid}: merged into missing {into}"));
                    }
                    let mut seen = BTreeSet::from([euid]);
                    let mut cur = into;
                    while let Some(PersonStatus::MergedInto(next)) =
                        persons.get(cur).map(|p| &p.status)
                    {
                        if !seen.insert(cur) {
                            rep.problem(format!("person {euid}: merge chain loops"));
                            break;
                        }
                        cur = next;
                    }
                }
                PersonStatus::Retired => rep.retired_persons += 1,
            }
            if !p.is_active() && !p.members.is_empty() {
                rep.problem(format!("person {euid}: not active but lists records"));
            }
            for m in &p.members {
                if let Some(prev) = owner.insert(m, euid) {
                    rep.problem(format!("record {m}: listed by {prev} and {euid}"));
                }
                match records.get(m) {
                    None => rep.problem(format!("person {euid}: lists missing record {m}")),
                    Some(e) if e != euid => {
                        rep.problem(format!("person {euid}: lists record {m} of {e}"))
                    }
                    Some(_) => {}
                }
            }
        }

        // tasks and their indexes
        let max_task = self.counter(meta::NEXT_TASK)?;
        let mut open: BTreeMap<TaskId, RecordKey> = BTreeMap::new();
        for item in self.kv.scan(TreeId::Tasks, &[], None) {
            let (k, v) = item?;
            let Ok(id) = codec::decode_task_key(&k) else {
                rep.problem("malformed key in tasks tree");
                continue;
            };
            rep.tasks += 1;
            let t = match codec::decode::<ReviewTask>("review task", &v) {
                Ok(t) => t,
                Err(e) => {
                    rep.problem(format!("task {id}: {}", why(e)));
                    continue;
                }
            };
            if t.id != id {
                rep.problem(format!("task {id}: stored under another id"));
            }
            if id.0 > max_task {
                rep.problem(format!("task {id}: beyond the task counter ({max_task})"));
            }
            for c in &t.candidates {
                if !persons.contains_key(&c.euid) {
                    rep.problem(format!("task {id}: candidate {} does not exist", c.euid));
                }
            }
            if t.is_open() {
                rep.open_tasks += 1;
                if !records.contains_key(&t.record) {
                    rep.problem(format!("task {id}: open for missing record {}", t.record));
                }
                open.insert(id, t.record.clone());
            }
        }
        let mut indexed_open = BTreeSet::new();
        for item in self.kv.scan(TreeId::TasksOpen, &[], None) {
            let (k, _) = item?;
            match codec::decode_task_key(&k) {
                Ok(id) if open.contains_key(&id) => {
                    indexed_open.insert(id);
                }
                Ok(id) => rep.problem(format!("open-task index lists {id}, not an open task")),
                Err(_) => rep.problem("malformed key in open-task index"),
            }
        }
        let mut indexed_by_record = BTreeSet::new();
        for item in self.kv.scan(TreeId::TasksByRecord, &[], None) {
            let (k, _) = item?;
            let id = k.len().checked_sub(9).and_then(|at| {
                let key = codec::decode_record_key(&k[..at]).ok()?;
                let id = codec::decode_task_key(&k[at + 1..]).ok()?;
                Some((key, id))
            });
            match id {
                Some((key, id)) if open.get(&id) == Some(&key) => {
                    indexed_by_record.insert(id);
                }
                Some((key, id)) => rep.problem(format!(
                    "task-by-record index lists {id} for {key}, not an open task of that record"
                )),
                None => rep.problem("malformed key in task-by-record index"),
            }
        }
        for id in open.keys() {
            if !indexed_open.contains(id) {
                rep.problem(format!(
                    "task {id}: open but missing from the open-task index"
                ));
            }
            if !indexed_by_record.contains(id) {
                rep.problem(format!(
                    "task {id}: open but missing from the task-by-record index"
                ));
            }
        }

        // not-duplicate assertions: both directions, known persons
        let mut pairs = BTreeSet::new();
        for item in self.kv.scan(TreeId::NotDuplicate, &[], None) {
            let (k, v) = item?;
            let Ok((a, b)) = codec::decode_pair_key(&k) else {
                rep.problem("malformed key in not-duplicate tree");
                continue;
            };
            match codec::decode::<NotDuplicate>("not-duplicate assertion", &v) {
                Ok(n) if n.a == a && n.b == b => {}
                Ok(_) => rep.problem(format!("not-duplicate {a}/{b}: value under another key")),
                Err(e) => rep.problem(format!("not-duplicate {a}/{b}: {}", why(e))),
            }
            if a == b {
                rep.problem(format!("not-duplicate {a}/{b}: a person with itself"));
            }
            for e in [&a, &b] {
                if !persons.contains_key(e) {
                    rep.problem(format!("not-duplicate {a}/{b}: person {e} does not exist"));
                }
            }
            if self
                .kv
                .get(TreeId::NotDuplicate, &codec::pair_key(&b, &a))?
                .is_none()
            {
                rep.problem(format!("not-duplicate {a}/{b}: reverse direction missing"));
            }
            if a < b {
                pairs.insert((a, b));
            }
        }
        rep.not_duplicate_pairs = pairs.len() as u64;

        // history
        let max_seq = self.counter(meta::HISTORY_SEQ)?;
        for item in self.kv.scan(TreeId::History, &[], None) {
            let (k, v) = item?;
            rep.history_entries += 1;
            let Ok((euid, seq)) = codec::decode_history_key(&k) else {
                rep.problem("malformed key in history tree");
                continue;
            };
            match codec::decode::<HistoryEntry>("history entry", &v) {
                Ok(h) if h.euid == euid && h.seq == seq => {}
                Ok(_) => rep.problem(format!("history {euid}#{seq}: value under another key")),
                Err(e) => rep.problem(format!("history {euid}#{seq}: {}", why(e))),
            }
            if seq > max_seq {
                rep.problem(format!(
                    "history {euid}#{seq}: beyond the sequence ({max_seq})"
                ));
            }
            if !persons.contains_key(&euid) {
                rep.problem(format!("history {euid}#{seq}: person does not exist"));
            }
        }

        // change feed: every number from the first kept to the head, each once
        let feed_head = self.counter(meta::FEED_SEQ)?;
        let mut expect = self.counter(meta::FEED_FIRST)?.max(1);
        for item in self.kv.scan(TreeId::Changes, &[], None) {
            let (k, v) = item?;
            rep.feed_events += 1;
            let Ok(seq) = codec::decode_change_key(&k) else {
                rep.problem("malformed key in change feed");
                continue;
            };
            match codec::decode::<ChangeEvent>("change event", &v) {
                Ok(e) if e.seq == seq => {}
                Ok(_) => rep.problem(format!("change event {seq}: value under another number")),
                Err(e) => rep.problem(format!("change event {seq}: {}", why(e))),
            }
            if seq != expect {
                rep.problem(format!("change feed: event {seq} where {expect} was due"));
            }
            expect = seq + 1;
        }
        if expect <= feed_head {
            rep.problem(format!(
                "change feed ends at {} below its head ({feed_head})",
                expect - 1
            ));
        }

        // counters
        let stats = self.stats()?;
        let counts = [
            ("records", stats.records, rep.records),
            ("active persons", stats.persons, rep.active_persons),
            ("open tasks", stats.open_tasks, rep.open_tasks),
        ];
        for (what, counter, actual) in counts {
            if counter != actual {
                rep.problem(format!("counter of {what} is {counter}, found {actual}"));
            }
        }
        Ok(rep)
    }
}

/// The message of a decoding error, without the "corrupt store" prefix.
fn why(e: Error) -> String {
    match e {
        Error::Corrupt(msg) => msg,
        other => other.to_string(),
    }
}

/// Checks that need no reads: record keys encodable, each entity at most once.
fn precheck(changes: &ChangeSet) -> Result<()> {
    let mut records = BTreeSet::new();
    let mut persons = BTreeSet::new();
    let mut tasks = BTreeSet::new();
    let once = |seen: bool, what: &str, id: &dyn std::fmt::Display| {
        if seen {
            Ok(())
        } else {
            Err(rejected(format!("{what} {id} written twice")))
        }
    };
    for op in changes.ops() {
        match op {
            Op::PutRecord(r) => {
                let key = r.key();
                codec::check_record_key(&key)?;
                once(records.insert(key.clone()), "record", &key)?;
            }
            Op::DeleteRecord { key, .. } => {
                codec::check_record_key(key)?;
                once(records.insert(key.clone()), "record", key)?;
            }
            Op::PutPerson(p) => {
                for m in &p.members {
                    codec::check_record_key(m)?;
                }
                once(persons.insert(p.euid.clone()), "person", &p.euid)?;
            }
            Op::PutTask(t) => {
                codec::check_record_key(&t.record)?;
                once(tasks.insert(t.id), "task", &t.id)?;
            }
            Op::PutNotDuplicate(n) if n.a == n.b => {
                return Err(Error::invalid(
                    "euid",
                    "a person cannot be a duplicate of itself",
                ));
            }
            Op::PutNotDuplicate(_)
            | Op::DeleteNotDuplicate { .. }
            | Op::AppendHistory(_)
            | Op::SetModelVersion(_)
            | Op::PutReceipt(_)
            | Op::Publish(_)
            | Op::PruneChanges { .. } => {}
        }
    }
    Ok(())
}

/// The transaction body: writes, counters, indexes, then invariant checks on what was
/// touched. Pure function of the store state (sled may run it more than once). Returns the
/// number of the last change feed event it published, if any.
fn apply_ops(tx: &dyn KvTx, ops: &[Op]) -> TxResult<Option<u64>> {
    let mut d = Deltas::default();
    let mut verify_persons: BTreeSet<Euid> = BTreeSet::new();
    // Persons written, with the members they had before (none for a new person).
    let mut members_before: BTreeMap<Euid, BTreeSet<RecordKey>> = BTreeMap::new();
    let mut verify_tasks: Vec<&ReviewTask> = Vec::new();
    let mut must_exist: BTreeSet<&Euid> = BTreeSet::new();
    let mut history_seq: Option<u64> = None;
    let mut feed_seq: Option<u64> = None;
    // What this change set leaves in the records and persons it writes, so that the checks
    // need not decode them back from the overlay.
    let mut written = Written::default();

    for op in ops {
        match op {
            Op::PutRecord(r) => {
                let key = r.key();
                let k = codec::record_key(&key);
                let old: Option<RecordHead> = tx_get(tx, TreeId::Records, &k, "record")?;
                let stored = old.as_ref().map_or(0, |o| o.version);
                if stored != r.version {
                    return Err(stale("record", &key, r.version, stored));
                }
                match &old {
                    Some(o) => {
                        verify_persons.insert(o.euid.clone());
                    }
                    None => d.records += 1,
                }
                let new = StoredRecord {
                    version: r.version + 1,
                    ..r.clone()
                };
                tx.insert(TreeId::Records, &k, codec::encode(&new)?)?;
                verify_persons.insert(r.euid.clone());
                written.records.insert(key, Some(r.euid.clone()));
            }
            Op::DeleteRecord { key, version } => {
                let k = codec::record_key(key);
                let old: RecordHead = tx_get(tx, TreeId::Records, &k, "record")?
                    .ok_or_else(|| Error::not_found("record", key))?;
                if old.version != *version {
                    return Err(stale("record", key, *version, old.version));
                }
                tx.remove(TreeId::Records, &k)?;
                // Checked too: its person must no longer list it.
                written.records.insert(key.clone(), None);
                d.records -= 1;
                verify_persons.insert(old.euid);
            }
            Op::PutPerson(p) => {
                let k = codec::euid_key(&p.euid);
                let old: Option<Person> = tx_get(tx, TreeId::Persons, &k, "person")?;
                let stored = old.as_ref().map_or(0, |o| o.version);
                if stored != p.version {
                    return Err(stale("person", &p.euid, p.version, stored));
                }
                members_before
                    .entry(p.euid.clone())
                    .or_insert_with(|| old.iter().flat_map(|o| o.members.clone()).collect());
                d.persons += i64::from(p.is_active())
                    - i64::from(old.as_ref().is_some_and(|o| o.is_active()));
                let new = Person {
                    version: p.version + 1,
                    ..p.clone()
                };
                tx.insert(TreeId::Persons, &k, codec::encode(&new)?)?;
                verify_persons.insert(p.euid.clone());
                written.persons.insert(p.euid.clone(), new);
            }
            Op::PutTask(t) => {
                let k = codec::task_key(t.id);
                let old: Option<ReviewTask> = tx_get(tx, TreeId::Tasks, &k, "review task")?;
                let stored = old.as_ref().map_or(0, |o| o.version);
                if stored != t.version {
                    return Err(stale("task", &t.id, t.version, stored));
                }
                if let Some(o) = old.as_ref().filter(|o| o.is_open()) {
                    tx.remove(TreeId::TasksOpen, &k)?;
                    tx.remove(
                        TreeId::TasksByRecord,
                        &codec::task_by_record_key(&o.record, o.id),
                    )?;
                    d.open_tasks -= 1;
                }
                if t.is_open() {
                    tx.insert(TreeId::TasksOpen, &k, Vec::new())?;
                    tx.insert(
                        TreeId::TasksByRecord,
                        &codec::task_by_record_key(&t.record, t.id),
                        Vec::new(),
                    )?;
                    d.open_tasks += 1;
                    verify_tasks.push(t);
                }
                let new = ReviewTask {
                    version: t.version + 1,
                    ..t.clone()
                };
                tx.insert(TreeId::Tasks, &k, codec::encode(&new)?)?;
            }
            Op::PutNotDuplicate(n) => {
                let reverse = NotDuplicate {
                    a: n.b.clone(),
                    b: n.a.clone(),
                    ..n.clone()
                };
                tx.insert(
                    TreeId::NotDuplicate,
                    &codec::pair_key(&n.a, &n.b),
                    codec::encode(n)?,
                )?;
                tx.insert(
                    TreeId::NotDuplicate,
                    &codec::pair_key(&n.b, &n.a),
                    codec::encode(&reverse)?,
                )?;
                must_exist.insert(&n.a);
                must_exist.insert(&n.b);
            }
            Op::DeleteNotDuplicate { a, b } => {
                tx.remove(TreeId::NotDuplicate, &codec::pair_key(a, b))?;
                tx.remove(TreeId::NotDuplicate, &codec::pair_key(b, a))?;
            }
            Op::AppendHistory(h) => {
                let seq = match history_seq {
                    Some(s) => s + 1,
                    None => {
                        codec::decode_u64(tx.get(TreeId::Meta, meta::HISTORY_SEQ)?.as_deref())? + 1
                    }
                };
                history_seq = Some(seq);
                // No lookup for an existing entry: sequence numbers come from the counter,
                // which only change sets advance, one at a time, and `check` verifies that
                // no entry lies above it.
                let k = codec::history_key(&h.euid, seq);
                let entry = HistoryEntry { seq, ..h.clone() };
                tx.insert(TreeId::History, &k, codec::encode(&entry)?)?;
                must_exist.insert(&h.euid);
            }
            Op::SetModelVersion(v) => {
                tx.insert(TreeId::Meta, meta::MODEL_VERSION, v.as_bytes().to_vec())?;
            }
            Op::PutReceipt(r) => {
                let k = codec::receipt_key(codec::receipt_day(r.at.0), &r.id);
                tx.insert(TreeId::Receipts, &k, codec::encode_receipt(r.at.0, &r.body))?;
            }
            Op::Publish(e) => {
                let seq = match feed_seq {
                    Some(s) => s + 1,
                    None => {
                        codec::decode_u64(tx.get(TreeId::Meta, meta::FEED_SEQ)?.as_deref())? + 1
                    }
                };
                feed_seq = Some(seq);
                // Like history: numbers come from the counter, advanced by change sets only,
                // one at a time, so no event is under this number yet.
                let event = ChangeEvent { seq, ..e.clone() };
                tx.insert(
                    TreeId::Changes,
                    &codec::change_key(seq),
                    codec::encode(&event)?,
                )?;
            }
            Op::PruneChanges { through } => prune(tx, *through)?,
        }
    }
    if let Some(seq) = feed_seq {
        tx.insert(TreeId::Meta, meta::FEED_SEQ, codec::encode_u64(seq))?;
    }

    if let Some(seq) = history_seq {
        tx.insert(TreeId::Meta, meta::HISTORY_SEQ, codec::encode_u64(seq))?;
    }
    if ops
        .iter()
        .any(|op| matches!(op, Op::PutRecord(_) | Op::DeleteRecord { .. }))
    {
        let key = meta::RECORDS_GENERATION;
        let old = codec::decode_u64(tx.get(TreeId::Meta, key)?.as_deref())?;
        tx.insert(TreeId::Meta, key, codec::encode_u64(old.wrapping_add(1)))?;
    }
    for (key, delta) in [
        (meta::RECORDS, d.records),
        (meta::PERSONS, d.persons),
        (meta::OPEN_TASKS, d.open_tasks),
    ] {
        if delta == 0 {
            continue;
        }
        let old = codec::decode_u64(tx.get(TreeId::Meta, key)?.as_deref())?;
        let new = old.checked_add_signed(delta).ok_or_else(|| {
            Error::Corrupt(format!(
                "counter {} would go negative",
                String::from_utf8_lossy(key)
            ))
        })?;
        tx.insert(TreeId::Meta, key, codec::encode_u64(new))?;
    }

    verify(
        tx,
        &written,
        &verify_persons,
        &members_before,
        &verify_tasks,
        &must_exist,
    )?;
    Ok(feed_seq)
}

/// Drops the change feed's events from its first kept one through `through`, and makes
/// the feed start after it. The numbers are dense, so no scan is needed.
fn prune(tx: &dyn KvTx, through: u64) -> TxResult<()> {
    let head = codec::decode_u64(tx.get(TreeId::Meta, meta::FEED_SEQ)?.as_deref())?;
    if through > head {
        return Err(rejected(format!(
            "pruning the change feed through {through}, beyond its head {head}"
        )));
    }
    let first = codec::decode_u64(tx.get(TreeId::Meta, meta::FEED_FIRST)?.as_deref())?.max(1);
    for seq in first..=through {
        tx.remove(TreeId::Changes, &codec::change_key(seq))?;
    }
    if through >= first {
        tx.insert(
            TreeId::Meta,
            meta::FEED_FIRST,
            codec::encode_u64(through + 1),
        )?;
    }
    Ok(())
}

/// The final state of the records and persons a change set writes: a record's person
/// (`None`: deleted), a person's new value. Later writes to a key replace earlier ones, as
/// in the overlay. Every record written or deleted is checked.
#[derive(Default)]
struct Written {
    records: BTreeMap<RecordKey, Option<Euid>>,
    persons: BTreeMap<Euid, Person>,
}

/// What a transaction checks of a stored record: its person and version. Decoding into it
/// skips the rest of the value (the record itself, its link and last answer), which the
/// checks never need: several of these are read per write.
#[derive(serde::Deserialize)]
struct RecordHead {
    euid: Euid,
    version: u64,
}

/// The invariants, checked on everything a change set touched, after its writes.
///
/// They held before the change set (every change set is checked, `empi check` checks the
/// whole store), so a person's member is read only when this change set can have broken
/// the link between them: the member record was written, or the person was written and did
/// not list it before. A merge into a person with hundreds of records reads the moved
/// ones, not all of them.
fn verify(
    tx: &dyn KvTx,
    written: &Written,
    persons: &BTreeSet<Euid>,
    members_before: &BTreeMap<Euid, BTreeSet<RecordKey>>,
    tasks: &[&ReviewTask],
    must_exist: &BTreeSet<&Euid>,
) -> TxResult<()> {
    let person = |euid: &Euid| -> TxResult<Option<Cow<'_, Person>>> {
        if let Some(p) = written.persons.get(euid) {
            return Ok(Some(Cow::Borrowed(p)));
        }
        Ok(tx_get(tx, TreeId::Persons, &codec::euid_key(euid), "person")?.map(Cow::Owned))
    };
    // A stored record's person.
    let record = |key: &RecordKey| -> TxResult<Option<Euid>> {
        if let Some(r) = written.records.get(key) {
            return Ok(r.clone());
        }
        let head: Option<RecordHead> =
            tx_get(tx, TreeId::Records, &codec::record_key(key), "record")?;
        Ok(head.map(|h| h.euid))
    };
    for key in written.records.keys() {
        let Some(owner) = record(key)? else { continue };
        match person(&owner)? {
            None => return Err(rejected(format!("record {key}: person {owner} missing"))),
            Some(p) if !p.is_active() => {
                return Err(rejected(format!("record {key}: person {owner} not active")))
            }
            Some(p) if !p.members.contains(key) => {
                return Err(rejected(format!(
                    "record {key}: person {owner} does not list it"
                )))
            }
            Some(_) => {}
        }
    }
    for euid in persons {
        let p = person(euid)?.ok_or_else(|| rejected(format!("person {euid} missing")))?;
        match &p.status {
            PersonStatus::Active if p.members.is_empty() => {
                return Err(rejected(format!(
                    "person {euid}: active without records (retire it)"
                )))
            }
            PersonStatus::Active => {
                let mut seen = BTreeSet::new();
                for m in &p.members {
                    if !seen.insert(m) {
                        return Err(rejected(format!("person {euid}: lists record {m} twice")));
                    }
                    let unchanged = !written.records.contains_key(m)
                        && members_before
                            .get(euid)
                            .is_none_or(|before| before.contains(m));
                    if unchanged {
                        continue;
                    }
                    match record(m)? {
                        None => {
                            return Err(rejected(format!(
                                "person {euid}: lists missing record {m}"
                            )))
                        }
                        Some(owner) if &owner != euid => {
                            return Err(rejected(format!(
                                "person {euid}: lists record {m} of {owner}"
                            )))
                        }
                        Some(_) => {}
                    }
                }
            }
            PersonStatus::MergedInto(_) | PersonStatus::Retired if !p.members.is_empty() => {
                return Err(rejected(format!(
                    "person {euid}: not active but lists records"
                )))
            }
            PersonStatus::MergedInto(into) => {
                if into == euid || person(into)?.is_none() {
                    return Err(rejected(format!(
                        "person {euid}: merged into invalid {into}"
                    )));
                }
            }
            PersonStatus::Retired => {}
        }
    }
    for t in tasks {
        if record(&t.record)?.is_none() {
            return Err(rejected(format!(
                "task {}: open for missing record {}",
                t.id, t.record
            )));
        }
        for c in &t.candidates {
            if person(&c.euid)?.is_none() {
                return Err(rejected(format!(
                    "task {}: candidate {} missing",
                    t.id, c.euid
                )));
            }
        }
    }
    for euid in must_exist {
        if person(euid)?.is_none() {
            return Err(rejected(format!("person {euid} missing")));
        }
    }
    Ok(())
}
