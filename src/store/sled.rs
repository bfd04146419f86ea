//! [`SledStore`]: the production store, one sled database directory.
//!
//! # Atomic change sets without sled transactions
//! sled 0.34 makes every transaction and every `apply_batch` atomic on recovery by rolling
//! its I/O buffer before and sealing it after a batch marker (`PageCache::pin_log`). That
//! costs two buffer writes (`pwrite` + `sync_file_range`) per change set on sled's I/O
//! threads, each of which wakes every idle I/O thread: at 1M records it was a quarter of the
//! server's CPU and 20+ context switches per request, whatever the group commit did.
//!
//! So a change set is made atomic here with a **journal**, on plain single-key writes:
//! 1. one writer at a time (the writer lock) runs the change set's reads and checks against
//!    the trees and collects its writes in an overlay;
//! 2. the whole write set is inserted as *one* value under the journal's one key, replacing
//!    the previous change set's (a single insert is atomic in sled);
//! 3. then each write is applied to its tree with plain inserts and removes.
//!
//! sled recovers a prefix of its log (in log-sequence order). A change set's journal entry
//! precedes its writes there, and every earlier change set's writes precede that entry, so
//! after a crash only the change set in the journal can be partly applied: opening the
//! store re-applies it (re-applying a write that did land is harmless: it sets the same
//! value, and no later change set's write can have landed, or its entry would have replaced
//! this one). The id counters, the only writes outside change sets, are never in an entry.
//! A clean close removes the entry, so a cleanly closed store replays nothing.
//!
//! The journal is one key, overwritten by each change set, rather than one entry per
//! change set trimmed once durable: that would cost a removal per change set and a range
//! scan per flush (BENCHMARKS.md has the measurement).
//!
//! Readers are not blocked: each read sees one key either before or after a change set,
//! as before (a read of several keys was never a snapshot).
//!
//! # The `meta` tree in memory
//! The counters (`meta`) are read and rewritten by nearly every change set. The tree is a
//! dozen small values, so it is also kept in memory ([`MetaCache`]): reads are served from
//! it, and every write to `meta` goes to sled and to the copy under one mutex, so the two
//! never disagree. That saves four B-tree lookups per change set, and an EUID or task id is
//! allocated with a plain insert under the mutex instead of sled's compare-and-swap loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::codec::{self, TreeId};
use super::engine::{scan_start, Kv, KvIter, KvStore, KvTx, Overlay, OverlayTx, TxResult};
use super::Store;

/// Maps a sled error: corruption is [`Error::Corrupt`], everything else [`Error::Storage`].
fn sled_err(e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => Error::Corrupt(format!("sled: {e}")),
        other => Error::Storage(format!("sled: {other}")),
    }
}

/// sled's log file inside the store directory.
const LOG_FILE: &str = "db";

/// The name of the journal tree (not a [`TreeId`]: the engine never reads it).
const JOURNAL_TREE: &str = "journal";

/// The tree behind [`super::Staging`] (not a [`TreeId`] either).
const STAGING_TREE: &str = "staging";

/// The tree of [`super::Staging`]'s intents.
const INTENTS_TREE: &str = "audit_intents";

/// The staging tree's key for the caller's mark; entries are numbered from 1.
const STAGING_MARK: [u8; 8] = [0; 8];

/// One decoded journal write: tree, key, value (`None` deletes).
type Write = (TreeId, Vec<u8>, Option<Vec<u8>>);

/// The journal's one key (module docs).
const JOURNAL_SLOT: [u8; 8] = [0; 8];

/// The journal: the last change set's writes (module docs).
struct Journal {
    tree: sled::Tree,
    /// Held by the one writer applying a change set.
    writer: Mutex<()>,
    /// sled's log file, for `fdatasync` after each flush (see [`Journal::flush`]).
    log_file: std::fs::File,
    /// A change set failed between its journal entry and its last write: the trees are not
    /// consistent until the store is reopened (which replays the entry), so no more writes.
    broken: AtomicBool,
    /// Tests: tree writes that succeed before the next one fails (a crash midway).
    #[cfg(test)]
    fail_after_writes: AtomicU64,
}

impl Journal {
    /// Makes everything applied so far durable.
    ///
    /// `db.flush` alone is not enough: on Linux sled 0.34 ends a flush with
    /// `sync_file_range`, which writes the pages out but neither flushes the disk's write
    /// cache nor records a grown file's size, so a power cut could still lose an
    /// acknowledged write. An `fdatasync` of the log file (any descriptor of the file
    /// will do) after it closes that gap.
    fn flush(&self, db: &sled::Db) -> Result<()> {
        db.flush().map_err(sled_err)?;
        self.log_file
            .sync_data()
            .map_err(|e| Error::Storage(format!("syncing the store's log file: {e}")))
    }
}

/// Encodes a write set as one journal value: per write, the tree, the key and the value or
/// its absence, each length-prefixed (u32, big-endian).
fn encode_writes(writes: &Overlay) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .map(|((_, k), v)| 10 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(size);
    for ((tree, key), value) in writes {
        out.push(*tree as u8);
        put_bytes(&mut out, key);
        match value {
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
            None => out.push(0),
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Keys and values are far below 4 GiB (field limits and sled's own).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// Decodes a journal value written by [`encode_writes`].
fn decode_writes(mut b: &[u8]) -> Result<Vec<Write>> {
    fn corrupt() -> Error {
        Error::Corrupt("journal entry is malformed".into())
    }
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if b.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn bytes(b: &mut &[u8]) -> Result<Vec<u8>> {
        let len = take(b, 4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        Ok(take(b, len)?.to_vec())
    }
    let mut writes = Vec::new();
    while !b.is_empty() {
        let tree = *TreeId::ALL
            .get(usize::from(take(&mut b, 1)?[0]))
            .ok_or_else(corrupt)?;
        let key = bytes(&mut b)?;
        let value = match take(&mut b, 1)?[0] {
            0 => None,
            1 => Some(bytes(&mut b)?),
            _ => return Err(corrupt()),
        };
        writes.push((tree, key, value));
    }
    Ok(writes)
}

/// The `meta` tree's contents, kept in step with sled (module docs). Every access holds the
/// mutex, including the sled write it mirrors, so a read never races a write into a stale
/// copy.
struct MetaCache {
    values: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MetaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // Every update is one map insert or remove after its sled write succeeded; a panic
        // cannot leave it half done, so a poisoned lock still guards a valid copy.
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A write to a tree outside the [`TreeId`] set or outside change sets, as the backup's
/// capture records it: tree name, key, value (`None`: deleted).
type Captured = BTreeMap<(&'static str, Vec<u8>), Option<Vec<u8>>>;

/// The writes made while a backup is being taken ([`super::backup`]), last value per key.
/// Change sets record theirs under the writer lock; writes outside change sets (id
/// counters, the audit trail's staging and intents) hold `gate` shared around recording
/// and writing, so switching the capture on or off (which takes it exclusively, with the
/// writer lock) never splits a write from its record.
#[derive(Default)]
struct Capture {
    on: AtomicBool,
    gate: std::sync::RwLock<()>,
    writes: Mutex<Captured>,
}

impl Capture {
    fn writes(&self) -> std::sync::MutexGuard<'_, Captured> {
        // Inserts into a map; a panic cannot leave it half-updated.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write`, recording it first when capturing.
    fn around(
        &self,
        tree: &'static str,
        key: &[u8],
        value: Option<&[u8]>,
        write: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if self.on.load(Ordering::Acquire) {
            self.writes()
                .insert((tree, key.to_vec()), value.map(<[u8]>::to_vec));
        }
        write()
    }

    /// Switches capturing on or off; returns what was captured. The caller holds the
    /// writer lock, so no change set is between its record and its writes.
    fn switch(&self, on: bool) -> Captured {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.on.store(on, Ordering::Release);
        std::mem::take(&mut *self.writes())
    }
}

/// The sled backend of [`SledStore`].
pub struct SledKv {
    db: sled::Db,
    /// The store's directory.
    path: PathBuf,
    /// One tree per [`TreeId`], indexed by `TreeId as usize`.
    trees: Vec<sled::Tree>,
    journal: Arc<Journal>,
    /// The `meta` tree in memory (module docs); loaded after the journal is replayed.
    meta: MetaCache,
    /// Entries staged by another component ([`super::Staging`]); outside change sets.
    staging: sled::Tree,
    /// Its intents, outside change sets too.
    intents: sled::Tree,
    /// Writes recorded while a backup is taken.
    capture: Capture,
}

impl SledKv {
    fn tree(&self, t: TreeId) -> &sled::Tree {
        &self.trees[t as usize]
    }

    fn write(&self, tree: TreeId, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let t = self.tree(tree);
        let sled_write = || {
            match value {
                Some(v) => t.insert(key, v).map(drop),
                None => t.remove(key).map(drop),
            }
            .map_err(sled_err)
        };
        if tree != TreeId::Meta {
            return sled_write();
        }
        let mut meta = self.meta.lock();
        sled_write()?;
        match value {
            Some(v) => meta.insert(key.to_vec(), v.to_vec()),
            None => meta.remove(key),
        };
        Ok(())
    }

    /// Loads the `meta` tree into [`SledKv::meta`].
    fn load_meta(&self) -> Result<()> {
        let mut meta = self.meta.lock();
        meta.clear();
        for item in self.tree(TreeId::Meta).iter() {
            let (k, v) = item.map_err(sled_err)?;
            meta.insert(k.to_vec(), v.to_vec());
        }
        Ok(())
    }

    /// Re-applies the change set left in the journal by a crash and empties the journal.
    /// Returns whether there was one.
    fn replay_journal(&self) -> Result<bool> {
        let Some(entry) = self.journal.tree.get(JOURNAL_SLOT).map_err(sled_err)? else {
            return Ok(false);
        };
        for (tree, k, v) in decode_writes(&entry)? {
            self.write(tree, &k, v.as_deref())?;
        }
        // The writes durable first, then the entry's removal: a crash in between replays
        // the entry again, which is harmless.
        self.db.flush().map_err(sled_err)?;
        self.journal.tree.remove(JOURNAL_SLOT).map_err(sled_err)?;
        self.db.flush().map_err(sled_err)?;
        Ok(true)
    }
}

/// The trees a backup copies: every [`TreeId`], the audit trail's staging and intents.
/// Not the journal: a consistent copy has nothing to replay.
fn backup_tree_names() -> Vec<&'static str> {
    TreeId::ALL
        .iter()
        .map(|t| t.name())
        .chain([STAGING_TREE, INTENTS_TREE])
        .collect()
}

/// A file as the backup copies it at its moment: whole (content read now), or append-only
/// (its length now; the content up to there is read after the moment).
fn at_moment(f: &super::backup::BackupFile) -> Result<(String, Vec<u8>, Option<u64>)> {
    let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    if f.append_only {
        let len = match std::fs::metadata(&f.path) {
            Ok(m) => m.len(),
            Err(e) if missing(&e) => 0,
            Err(e) => return Err(Error::io(&f.path, e)),
        };
        Ok((f.name.clone(), Vec::new(), Some(len)))
    } else {
        let content = match std::fs::read(&f.path) {
            Ok(c) => c,
            Err(e) if missing(&e) => return Ok((f.name.clone(), Vec::new(), None)),
            Err(e) => return Err(Error::io(&f.path, e)),
        };
        Ok((f.name.clone(), content, None))
    }
}

/// Where the file `name` of a backup lives in the data directory `dir`.
fn files_path(dir: &Path, name: &str) -> Result<PathBuf> {
    super::backup::file_path(dir, name)
}

/// An append-only file's first `len` bytes, cut after its last whole line (a line being
/// written at the moment is not the moment's).
fn append_only_prefix(path: PathBuf, len: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut content = Vec::new();
    match std::fs::File::open(&path) {
        Ok(f) => {
            f.take(len)
                .read_to_end(&mut content)
                .map_err(|e| Error::io(&path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let whole = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    content.truncate(whole);
    Ok(content)
}

impl SledKv {
    /// The trees a backup copies, by name.
    fn backup_trees(&self) -> Vec<(&'static str, &sled::Tree)> {
        TreeId::ALL
            .iter()
            .map(|t| (t.name(), self.tree(*t)))
            .chain([(STAGING_TREE, &self.staging), (INTENTS_TREE, &self.intents)])
            .collect()
    }

    /// The backend over an opened database: refuses a store of a newer format before
    /// touching it (`upgrading`: an older one too, unless it is being upgraded), then
    /// replays the journal of a store that was not closed cleanly and loads the counters.
    fn over_db(db: sled::Db, path: PathBuf, upgrading: bool) -> Result<(SledKv, Arc<Journal>)> {
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sled_err)?;
        let found = trees[TreeId::Meta as usize]
            .get(codec::meta::FORMAT_VERSION)
            .map_err(sled_err)?;
        if let Some(v) = found {
            let found = codec::decode_u64(Some(&v))?;
            if !(upgrading && found < super::upgrade::CURRENT) {
                super::upgrade::check_format(found)?;
            }
        }
        let journal = Arc::new(Journal {
            tree: db.open_tree(JOURNAL_TREE).map_err(sled_err)?,
            writer: Mutex::new(()),
            log_file: std::fs::File::open(path.join(LOG_FILE)).map_err(|e| {
                Error::Storage(format!("opening the store's log file for syncing: {e}"))
            })?,
            broken: AtomicBool::new(false),
            #[cfg(test)]
            fail_after_writes: AtomicU64::new(u64::MAX),
        });
        let kv = SledKv {
            db: db.clone(),
            path,
            trees,
            journal: Arc::clone(&journal),
            meta: MetaCache {
                values: Mutex::new(BTreeMap::new()),
            },
            staging: db.open_tree(STAGING_TREE).map_err(sled_err)?,
            intents: db.open_tree(INTENTS_TREE).map_err(sled_err)?,
            capture: Capture::default(),
        };
        let replayed = kv.replay_journal()?;
        kv.load_meta()?;
        if replayed {
            tracing::info!("store journal replayed (the store was not closed cleanly)");
        }
        Ok((kv, journal))
    }
}

impl Drop for SledKv {
    /// A clean close leaves an empty journal: a store that was closed cleanly replays
    /// nothing when it is opened again.
    fn drop(&mut self) {
        if self.journal.broken.load(Ordering::Acquire) {
            return;
        }
        // One flush covers both: the removal follows every write in sled's log, so no
        // recovered prefix holds the removal without the writes.
        let emptied = self
            .journal
            .tree
            .remove(JOURNAL_SLOT)
            .map_err(sled_err)
            .and_then(|_| self.journal.flush(&self.db));
        if let Err(e) = emptied {
            tracing::warn!(error = %e, "store journal not emptied at close; the next open replays it");
        }
    }
}

impl Kv for SledKv {
    fn accepts_writes(&self) -> bool {
        !self.journal.broken.load(Ordering::Acquire)
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if tree == TreeId::Meta {
            return Ok(self.meta.lock().get(key).cloned());
        }
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, tree: TreeId, prefix: &[u8], after: Option<&[u8]>) -> KvIter<'_> {
        let start = scan_start(prefix, after);
        let prefix = prefix.to_vec();
        Box::new(
            self.tree(tree)
                .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
                .take_while(move |item| match item {
                    Ok((k, _)) => k.starts_with(&prefix),
                    Err(_) => true,
                })
                .map(|item| {
                    item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(sled_err)
                }),
        )
    }

    fn increment(&self, key: &'static [u8]) -> Result<u64> {
        // The meta lock, then the capture's gate (briefly, shared): the backup never holds
        // the gate while it waits for the meta lock.
        let mut meta = self.meta.lock();
        // A malformed id counter is an error, never reset: that could reuse ids.
        let old = codec::decode_u64(meta.get(key).map(Vec::as_slice)).map_err(|_| {
            Error::Corrupt(format!(
                "counter {} is not 8 bytes",
                String::from_utf8_lossy(key)
            ))
        })?;
        let new = old
            .checked_add(1)
            .ok_or_else(|| Error::Corrupt("id counter overflow".into()))?;
        let value = codec::encode_u64(new);
        self.capture
            .around(TreeId::Meta.name(), key, Some(&value), || {
                self.tree(TreeId::Meta)
                    .insert(key, value.as_slice())
                    .map(drop)
                    .map_err(sled_err)
            })?;
        meta.insert(key.to_vec(), value);
        Ok(new)
    }

    fn transact<R>(&self, f: &dyn Fn(&dyn KvTx) -> TxResult<R>) -> Result<R> {
        let journal = &self.journal;
        // A panic while the lock was held may have stopped a change set midway: treat a
        // poisoned lock like a failed write (reopening replays the journal).
        let _writer = journal.writer.lock().unwrap_or_else(|p| {
            journal.broken.store(true, Ordering::Release);
            p.into_inner()
        });
        if journal.broken.load(Ordering::Acquire) {
            return Err(Error::Storage(
                "an earlier write failed midway; restart to recover the store".into(),
            ));
        }
        let tx = OverlayTx::new(|tree: TreeId, key: &[u8]| self.get(tree, key));
        let result = f(&tx)?;
        let writes = tx.into_writes();
        if writes.is_empty() {
            return Ok(result);
        }
        if self.capture.on.load(Ordering::Acquire) {
            let mut captured = self.capture.writes();
            for ((tree, key), value) in &writes {
                captured.insert((tree.name(), key.clone()), value.clone());
            }
        }
        journal
            .tree
            .insert(JOURNAL_SLOT, encode_writes(&writes))
            .map_err(sled_err)?;
        for ((tree, key), value) in &writes {
            #[cfg(test)]
            let injected = journal
                .fail_after_writes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err();
            #[cfg(not(test))]
            let injected = false;
            let written = if injected {
                Err(Error::Storage("injected failure".into()))
            } else {
                self.write(*tree, key, value.as_deref())
            };
            if let Err(e) = written {
                journal.broken.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(result)
    }
}

/// Opens the sled database in `path`. A database closed a moment ago in this process keeps
/// its directory lock until sled's I/O threads drop their last handle, so a lock that is
/// held is waited for, up to 2 s, before giving up (another process holding it stays an
/// error).
fn open_db(path: &Path) -> Result<sled::Db> {
    for _ in 0..100 {
        if let Some(db) = try_open_db(path)? {
            return Ok(db);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    try_open_db(path)?.ok_or_else(|| {
        Error::Storage(format!(
            "sled: could not acquire lock on {}: held by another process",
            path.display()
        ))
    })
}

/// Opens the sled database in `path` without waiting; `None` when its lock is held.
fn try_open_db(path: &Path) -> Result<Option<sled::Db>> {
    match sled::Config::new().path(path).open() {
        Ok(db) => Ok(Some(db)),
        Err(e) if is_locked(&e) => Ok(None),
        Err(e) => Err(sled_err(e)),
    }
}

/// sled's error for a directory whose lock another handle holds.
fn is_locked(e: &sled::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

impl KvStore<SledKv> {
    /// Opens (creating if needed) the store in directory `path`, replaying the journal of a
    /// store that was not closed cleanly.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory (e.g. another process holds
    /// it); [`Error::Corrupt`] when it holds another format version or a damaged journal.
    ///
    /// The directory is made owner-only first, and everything sled created in it after
    /// ([`super::private`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        super::private::make_private(&path)?;
        let db = open_db(&path)?;
        super::private::make_private(&path)?;
        Self::over_db(db, path)
    }

    /// As [`KvStore::open`] for an existing store that no one holds: `None` when `path`
    /// holds no store, or another process (a server) has it open. Does not wait.
    ///
    /// # Errors
    /// As [`KvStore::open`].
    pub fn open_if_free(path: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = path.as_ref().to_path_buf();
        if !Self::exists(&path) {
            return Ok(None);
        }
        match try_open_db(&path)? {
            Some(db) => {
                super::private::make_private(&path)?;
                Self::over_db(db, path).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Whether `path` holds a store (sled's log file).
    pub fn exists(path: impl AsRef<Path>) -> bool {
        path.as_ref().join(LOG_FILE).is_file()
    }

    /// The store over an opened database: format check, trees, journal replay, counters.
    fn over_db(db: sled::Db, path: PathBuf) -> Result<Self> {
        let (kv, journal) = SledKv::over_db(db.clone(), path, false)?;
        // Everything the store holds is durable before the change feed's head is
        // published (a process killed before its last flush left the rest in the page
        // cache only).
        journal.flush(&db)?;
        let flusher = Arc::new(move || journal.flush(&db));
        KvStore::over(kv, flusher)
    }

    /// Upgrades the closed store in `path` to this build's format ([`super::upgrade`]):
    /// replays the journal of a crashed store, then runs each step. A store of this
    /// format is left as it is.
    ///
    /// # Errors
    /// [`Error::Storage`] when the directory holds no store or another process holds it;
    /// [`Error::Incompatible`] for a format this build cannot upgrade (a newer one).
    pub fn upgrade(path: impl AsRef<Path>) -> Result<super::upgrade::Upgraded> {
        let path = path.as_ref().to_path_buf();
        if !Self::exists(&path) {
            return Err(Error::Storage(format!(
                "{}: not an empi store (no `db` file)",
                path.display()
            )));
        }
        let db = open_db(&path)?;
        super::private::make_private(&path)?;
        let (kv, journal) = SledKv::over_db(db.clone(), path, true)?;
        let current = super::upgrade::CURRENT;
        let from = super::upgrade::format_of(&kv)?.unwrap_or(current);
        let done = if from == current {
            super::upgrade::Upgraded { from, to: from }
        } else {
            super::upgrade::migrate(&kv, from)?
        };
        journal.flush(&db)?;
        Ok(done)
    }

    /// Opens the closed store in `path` once and closes it again, so that the next open is
    /// fast. sled 0.34 writes its page-table snapshot only while opening a database, after
    /// reading every log message written since the previous open: after a bulk load or a
    /// long-running server that is the whole file (at 1M records 8 GB, which made the first
    /// start after a load take 11.7–14.4 s). Called after a clean stop, it moves that read
    /// from the next start to the end of this run. Touches no data: no journal replay, no
    /// write but sled's own snapshot.
    ///
    /// Call it only once every handle on the store is dropped (it waits up to 2 s for
    /// sled's directory lock, as [`KvStore::open`] does).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory.
    pub fn settle(path: impl AsRef<Path>) -> Result<()> {
        // Opening is the whole job: sled writes the snapshot while it recovers (a new
        // file, made owner-only like the rest).
        open_db(path.as_ref()).map(drop)?;
        super::private::make_private(path.as_ref())
    }

    /// Writes a consistent copy of the store, and of `files` as they were at the same
    /// moment, to `out` as a backup body ([`super::backup`]), while writers go on: they
    /// wait only while capturing is switched on and off. Returns the change feed's head
    /// at the backup's moment.
    ///
    /// # Errors
    /// [`Error::Storage`] when reading the store or writing `out` fails; [`Error::Io`]
    /// for a file that cannot be read.
    pub fn backup<W: std::io::Write>(
        &self,
        out: W,
        files: &[super::backup::BackupFile],
    ) -> Result<u64> {
        let kv = &self.kv;
        let writer_lock = || kv.journal.writer.lock().unwrap_or_else(|p| p.into_inner());
        drop(kv.capture.switch(true));
        drop(writer_lock());
        let mut body = super::backup::BodyWriter::new(out);
        let copied: Result<()> = (|| {
            for (name, tree) in kv.backup_trees() {
                for item in tree.iter() {
                    let (k, v) = item.map_err(sled_err)?;
                    body.entry(name, &k, Some(&v))?;
                }
            }
            Ok(())
        })();
        // The moment: between two change sets, with no write outside them in flight.
        let moment = {
            let _writer = writer_lock();
            let captured = kv.capture.switch(false);
            let head =
                codec::decode_u64(kv.meta.lock().get(codec::meta::FEED_SEQ).map(Vec::as_slice));
            let files: Result<Vec<_>> = files.iter().map(at_moment).collect();
            let at = super::UnixMillis::now();
            head.and_then(|head| Ok((captured, head, at, files?)))
        };
        let rest: Result<(u64, super::UnixMillis)> = (|| {
            copied?;
            let (captured, head, at, files) = moment?;
            for ((tree, key), value) in &captured {
                body.entry(tree, key, value.as_deref())?;
            }
            for (name, content, upto) in files {
                let content = match upto {
                    None => content,
                    Some(len) => append_only_prefix(files_path(&self.kv.path, &name)?, len)?,
                };
                body.file(&name, &content)?;
            }
            Ok((head, at))
        })();
        match rest {
            Ok((head, at)) => body.end(head, at.0).map(|_| head),
            Err(e) => {
                // The reader is told; the reason names no data (store and file errors).
                let _ = body.fail(&e.to_string());
                Err(e)
            }
        }
    }

    /// Restores the backup file `from` into `data`, which must not hold anything yet:
    /// checks the whole file first (header, formats, checksum), then writes the trees and
    /// files, upgrades a copy of an older store format, and makes everything owner-only.
    /// On failure `data` is left as it was found (what was written is removed).
    ///
    /// # Errors
    /// [`Error::Incompatible`] for a file that is not an empi backup, or of a format this
    /// build does not read; [`Error::Corrupt`] for a damaged one; [`Error::Storage`] when
    /// `data` is not empty; I/O and storage errors while writing.
    pub fn restore(from: &Path, data: &Path) -> Result<super::backup::BackupInfo> {
        let info = super::backup::verify(from)?;
        let existed = data.exists();
        if existed {
            let mut entries = std::fs::read_dir(data).map_err(|e| Error::io(data, e))?;
            if entries.next().is_some() {
                return Err(Error::Storage(format!(
                    "{}: not empty; restore into a new directory",
                    data.display()
                )));
            }
        }
        let written = Self::restore_into(from, data, &info);
        if written.is_err() {
            // The directory was new or empty: everything in it is ours.
            let _ = if existed {
                std::fs::read_dir(data).map(|entries| {
                    for e in entries.flatten() {
                        let p = e.path();
                        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                    }
                })
            } else {
                std::fs::remove_dir_all(data)
            };
        }
        written.map(|()| info)
    }

    fn restore_into(from: &Path, data: &Path, info: &super::backup::BackupInfo) -> Result<()> {
        use super::backup::Item;
        super::private::make_private(data)?;
        {
            let db = open_db(data)?;
            let mut trees: BTreeMap<String, sled::Tree> = BTreeMap::new();
            let mut body = super::backup::body_of(from)?;
            loop {
                match body.next_item()? {
                    Item::Entry { tree, key, value } => {
                        if !backup_tree_names().contains(&tree.as_str()) {
                            return Err(Error::Corrupt(
                                "backup is damaged: an unknown tree".into(),
                            ));
                        }
                        let t = match trees.entry(tree) {
                            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                            std::collections::btree_map::Entry::Vacant(v) => {
                                let t = db.open_tree(v.key()).map_err(sled_err)?;
                                v.insert(t)
                            }
                        };
                        match value {
                            Some(v) => t.insert(key, v).map(drop),
                            None => t.remove(key).map(drop),
                        }
                        .map_err(sled_err)?;
                    }
                    Item::File { name, content } => {
                        let path = super::backup::file_path(data, &name)?;
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                        }
                        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
                    }
                    Item::End { feed_head, .. } if feed_head == info.feed_head => break,
                    Item::End { .. } => {
                        return Err(Error::Corrupt(
                            "backup is damaged: its end does not match its header".into(),
                        ))
                    }
                }
            }
            db.flush().map_err(sled_err)?;
        }
        if info.store_format < super::upgrade::CURRENT {
            Self::upgrade(data)?;
        }
        super::private::make_private(data)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.kv.path
    }

    /// Bytes the database occupies on disk.
    ///
    /// # Errors
    /// [`Error::Storage`] from sled.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.kv.db.size_on_disk().map_err(sled_err)
    }
}

/// Staged entries are single sled inserts outside change sets: each is atomic on its own,
/// none touches a tree the journal covers, so the journal's argument (module docs) holds.
impl super::Staging for KvStore<SledKv> {
    fn stage(&self, seq: u64, bytes: &[u8]) -> Result<super::Ticket> {
        if seq == 0 {
            return Err(Error::Storage("staged entries are numbered from 1".into()));
        }
        let key = seq.to_be_bytes();
        self.kv
            .capture
            .around(STAGING_TREE, &key, Some(bytes), || {
                self.kv
                    .staging
                    .insert(key, bytes)
                    .map(drop)
                    .map_err(sled_err)
            })?;
        Ok(self.written())
    }

    fn flush_staged(&self, ticket: super::Ticket) -> Result<()> {
        self.flush_through(ticket)
    }

    fn stage_intent(&self, id: u64, bytes: &[u8]) -> Result<()> {
        let key = id.to_be_bytes();
        self.kv.capture.around(INTENTS_TREE, &key, Some(bytes), || {
            self.kv
                .intents
                .insert(key, bytes)
                .map(drop)
                .map_err(sled_err)
        })
    }

    fn drop_intents(&self, ids: &[u64]) -> Result<()> {
        for id in ids {
            let key = id.to_be_bytes();
            self.kv.capture.around(INTENTS_TREE, &key, None, || {
                self.kv.intents.remove(key).map(drop).map_err(sled_err)
            })?;
        }
        Ok(())
    }

    fn settle_staged(&self, mark: &[u8], through: u64) -> Result<()> {
        let tree = &self.kv.staging;
        let capture = &self.kv.capture;
        // The mark first: sled recovers a prefix of its log, so no removal below survives
        // a crash without it.
        capture.around(STAGING_TREE, &STAGING_MARK, Some(mark), || {
            tree.insert(STAGING_MARK, mark).map(drop).map_err(sled_err)
        })?;
        let upto = through.to_be_bytes();
        let mut keys = Vec::new();
        for item in tree.range(1u64.to_be_bytes()..=upto) {
            keys.push(item.map_err(sled_err)?.0);
        }
        for key in keys {
            capture.around(STAGING_TREE, &key, None, || {
                tree.remove(&key).map(drop).map_err(sled_err)
            })?;
        }
        Ok(())
    }

    fn staged(&self) -> Result<super::StagedEntries> {
        let mut out = super::StagedEntries::default();
        for item in self.kv.staging.iter() {
            let (key, value) = item.map_err(sled_err)?;
            let key: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("staging key is not 8 bytes".into()))?;
            match u64::from_be_bytes(key) {
                0 => out.mark = Some(value.to_vec()),
                seq => out.entries.push((seq, value.to_vec())),
            }
        }
        for item in self.kv.intents.iter() {
            let (key, value) = item.map_err(sled_err)?;
            let key: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("intent key is not 8 bytes".into()))?;
            out.intents.push((u64::from_be_bytes(key), value.to_vec()));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for KvStore<SledKv> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.kv.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::store::{LinkMethod, Plan, SledStore, Stamp};

    fn rec(local_id: &str) -> Record {
        Record {
            source: "adt".into(),
            local_id: local_id.into(),
            given_name: Some("Test".into()),
            ..Default::default()
        }
    }

    /// Entries in the journal of the closed store in `path`.
    fn journal_on_disk(path: &Path) -> usize {
        open_db(path)
            .unwrap()
            .open_tree(JOURNAL_TREE)
            .unwrap()
            .len()
    }

    /// Makes the store's tree writes fail after `n` more succeed (a crash midway).
    fn fail_after_writes(s: &SledStore, n: u64) {
        s.kv.journal.fail_after_writes.store(n, Ordering::Release);
    }

    /// Stores record `id` as a new person, durably.
    fn create(s: &SledStore, id: &str) -> crate::store::Euid {
        let mut plan = Plan::new(s, Stamp::now("test", ""));
        let euid = plan.create_person(rec(id), LinkMethod::Created).unwrap();
        s.commit_sync(&plan.finish()).unwrap();
        euid
    }

    /// A change set cut off after its journal entry and one write (as by a crash) is
    /// completed when the store is opened again.
    #[test]
    fn a_change_set_cut_off_midway_is_completed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let s = SledStore::open(dir.path()).unwrap();
            let a = create(&s, "1");

            fail_after_writes(&s, 1);
            let mut plan = Plan::new(&s, Stamp::now("test", ""));
            let b = plan.create_person(rec("2"), LinkMethod::Created).unwrap();
            let err = s.commit_sync(&plan.finish()).unwrap_err();
            assert!(err.to_string().contains("injected"), "{err}");
            // Half applied: further writes are refused until the store is reopened.
            let mut plan = Plan::new(&s, Stamp::now("test", ""));
            plan.create_person(rec("3"), LinkMethod::Created).unwrap();
            let err = s.commit_sync(&plan.finish()).unwrap_err();
            assert!(err.to_string().contains("restart"), "{err}");
            s.flush().unwrap();
            (a, b)
        };
        let s = SledStore::open(dir.path()).unwrap();
        let report = s.check().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(s.stats().unwrap().records, 2);
        assert_eq!(s.get_person(&a).unwrap().unwrap().members.len(), 1);
        assert_eq!(s.get_person(&b).unwrap().unwrap().members.len(), 1);
        assert!(s.get_record(&rec("3").key()).unwrap().is_none());
        drop(s);
        // A clean close empties the journal.
        assert_eq!(journal_on_disk(dir.path()), 0);
    }

    /// The journal holds the last change set only, under its one key, whatever the number
    /// of change sets; a clean close removes it.
    #[test]
    fn the_journal_holds_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            for i in 0..20 {
                create(&s, &i.to_string());
                let journal = &s.kv.journal.tree;
                assert_eq!(journal.len(), 1);
                let (key, value) = journal.first().unwrap().unwrap();
                assert_eq!(&*key, JOURNAL_SLOT);
                // The entry is this change set's: it writes this record.
                let writes = decode_writes(&value).unwrap();
                let own = codec::record_key(&rec(&i.to_string()).key());
                assert!(writes
                    .iter()
                    .any(|(t, k, v)| *t == TreeId::Records && *k == own && v.is_some()));
            }
        }
        assert_eq!(journal_on_disk(dir.path()), 0);
    }

    /// Settling a closed store (open and close for sled's page-table snapshot) leaves
    /// every record, person and counter as it was, and the store opens and passes its check.
    #[test]
    fn settling_a_closed_store_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (euids, meta) = {
            let s = SledStore::open(dir.path()).unwrap();
            let mut euids = Vec::new();
            for i in 0..5 {
                euids.push(create(&s, &i.to_string()));
            }
            (euids, meta_on_disk(&s.kv))
        };
        SledStore::settle(dir.path()).unwrap();
        SledStore::settle(dir.path()).unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert!(s.check().unwrap().is_ok());
        assert_eq!(s.stats().unwrap().records, 5);
        for (i, euid) in euids.iter().enumerate() {
            let r = s.get_record(&rec(&i.to_string()).key()).unwrap().unwrap();
            assert_eq!(&r.euid, euid);
        }
        assert_eq!(meta_on_disk(&s.kv), meta);
    }

    /// Staged entries outlive closing the store; settling records the mark and drops
    /// the entries up to it, and none of it touches the journal.
    #[test]
    fn staged_entries_survive_reopening_until_settled() {
        use crate::store::Staging;
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            assert!(s.stage(0, b"x").is_err(), "entries are numbered from 1");
            for n in [3, 1, 2, 300] {
                let t = s.stage(n, format!("e{n}").as_bytes()).unwrap();
                s.flush_staged(t).unwrap();
            }
        }
        let s = SledStore::open(dir.path()).unwrap();
        let staged = s.staged().unwrap();
        assert_eq!(staged.mark, None);
        let numbers: Vec<u64> = staged.entries.iter().map(|e| e.0).collect();
        assert_eq!(numbers, [1, 2, 3, 300]);
        assert_eq!(staged.entries[3].1, b"e300");
        s.settle_staged(b"mark", 3).unwrap();
        let staged = s.staged().unwrap();
        assert_eq!(staged.mark.as_deref(), Some(&b"mark"[..]));
        assert_eq!(staged.entries, [(300, b"e300".to_vec())]);
        drop(s);
        assert_eq!(journal_on_disk(dir.path()), 0);
    }

    fn meta_on_disk(kv: &SledKv) -> BTreeMap<Vec<u8>, Vec<u8>> {
        kv.tree(TreeId::Meta)
            .iter()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    /// The in-memory `meta` copy stays equal to the tree through change sets and id
    /// allocation, and ids continue from the stored counter after reopening.
    #[test]
    fn the_meta_copy_follows_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let s = SledStore::open(dir.path()).unwrap();
            for i in 0..3 {
                let mut plan = Plan::new(&s, Stamp::now("test", ""));
                plan.create_person(rec(&i.to_string()), LinkMethod::Created)
                    .unwrap();
                s.commit_sync(&plan.finish()).unwrap();
            }
            let last = s.allocate_euid().unwrap();
            let kv = &s.kv;
            assert_eq!(*kv.meta.lock(), meta_on_disk(kv));
            assert_eq!(s.stats().unwrap().records, 3);
            s.flush().unwrap();
            last
        };
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.allocate_euid().unwrap().seq(), last.seq() + 1);
        assert_eq!(s.stats().unwrap().persons, 3);
        let kv = &s.kv;
        assert_eq!(*kv.meta.lock(), meta_on_disk(kv));
    }

    /// A malformed id counter is reported, and left as it is rather than reset.
    #[test]
    fn a_malformed_id_counter_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open(dir.path()).unwrap());
        {
            let db = open_db(dir.path()).unwrap();
            let meta = db.open_tree(TreeId::Meta.name()).unwrap();
            meta.insert(codec::meta::NEXT_EUID, &b"xyz"[..]).unwrap();
            db.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        let err = s.allocate_euid().unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
        let kv = &s.kv;
        let stored = kv
            .tree(TreeId::Meta)
            .get(codec::meta::NEXT_EUID)
            .unwrap()
            .unwrap();
        assert_eq!(&*stored, b"xyz");
    }

    /// Rewrites the closed store in `path` as format 1 wrote it: no change feed tree, no
    /// feed counters, version 1 (everything else is laid out the same in both).
    fn as_format_1(path: &Path) {
        let db = open_db(path).unwrap();
        db.drop_tree(TreeId::Changes.name()).unwrap();
        let meta = db.open_tree(TreeId::Meta.name()).unwrap();
        meta.remove(codec::meta::FEED_SEQ).unwrap();
        meta.remove(codec::meta::FEED_FIRST).unwrap();
        meta.insert(codec::meta::FORMAT_VERSION, codec::encode_u64(1))
            .unwrap();
        db.flush().unwrap();
    }

    /// A store of the previous format is refused, naming the command that upgrades it;
    /// `upgrade` keeps every record, person and history entry, the change feed starts
    /// empty and numbers from 1, and a second upgrade changes nothing.
    #[test]
    fn a_store_of_the_previous_format_is_refused_then_upgraded() {
        use crate::store::upgrade::Upgraded;
        let dir = tempfile::tempdir().unwrap();
        let euids: Vec<_> = {
            let s = SledStore::open(dir.path()).unwrap();
            (0..3).map(|i| create(&s, &i.to_string())).collect()
        };
        as_format_1(dir.path());
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Incompatible(_)), "{err}");
        assert!(err.to_string().contains("empi upgrade --data"), "{err}");

        let done = SledStore::upgrade(dir.path()).unwrap();
        assert_eq!(done, Upgraded { from: 1, to: 2 });
        {
            let s = SledStore::open(dir.path()).unwrap();
            let report = s.check().unwrap();
            assert!(report.is_ok(), "{:?}", report.problems);
            assert_eq!((report.records, report.history_entries), (3, 3));
            for (i, euid) in euids.iter().enumerate() {
                let r = s.get_record(&rec(&i.to_string()).key()).unwrap().unwrap();
                assert_eq!(&r.euid, euid);
            }
            assert_eq!(s.feed_bounds().unwrap().head, 0);
            create(&s, "9");
            let events = s.changes_after(0, 10).unwrap();
            assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        }
        let again = SledStore::upgrade(dir.path()).unwrap();
        assert_eq!(again, Upgraded { from: 2, to: 2 });
    }

    /// A store of a newer format is refused by opening and by upgrading, and left as it
    /// is: never read with this build's layout.
    #[test]
    fn a_store_of_a_newer_format_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open(dir.path()).unwrap());
        let version = |v: Option<u64>| {
            let db = open_db(dir.path()).unwrap();
            let meta = db.open_tree(TreeId::Meta.name()).unwrap();
            if let Some(v) = v {
                meta.insert(codec::meta::FORMAT_VERSION, codec::encode_u64(v))
                    .unwrap();
                db.flush().unwrap();
            }
            codec::decode_u64(meta.get(codec::meta::FORMAT_VERSION).unwrap().as_deref()).unwrap()
        };
        version(Some(3));
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("newer than this empi reads"),
            "{err}"
        );
        assert!(matches!(
            SledStore::upgrade(dir.path()),
            Err(Error::Incompatible(_))
        ));
        assert_eq!(version(None), 3);
    }

    #[test]
    fn journal_entries_round_trip() {
        let mut w = Overlay::new();
        w.insert((TreeId::Records, b"a\0b".to_vec()), Some(b"{}".to_vec()));
        w.insert((TreeId::Meta, b"count".to_vec()), Some(vec![0; 8]));
        w.insert((TreeId::TasksOpen, b"k".to_vec()), Some(Vec::new()));
        w.insert((TreeId::History, b"gone".to_vec()), None);
        let back = decode_writes(&encode_writes(&w)).unwrap();
        let want: Vec<_> = w.into_iter().map(|((t, k), v)| (t, k, v)).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn truncated_journal_entries_are_corrupt() {
        let mut w = Overlay::new();
        w.insert(
            (TreeId::Persons, b"E1".to_vec()),
            Some(b"{\"x\":1}".to_vec()),
        );
        let bytes = encode_writes(&w);
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode_writes(&bytes[..cut]), Err(Error::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut bad_tree = bytes.clone();
        bad_tree[0] = 200;
        assert!(matches!(decode_writes(&bad_tree), Err(Error::Corrupt(_))));
    }
}
