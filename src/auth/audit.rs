//! The audit trail: one JSON line per call that reads or changes patient data (allowed or
//! denied), appended to `DATA/auth/audit.jsonl` and acknowledged only once durable.
//!
//! Durability is group-committed like the store's writes: one writer thread takes every
//! entry waiting, writes them, makes them durable once, then acknowledges them all, so
//! concurrent calls share the cost. The file is opened append-only (mode 0600); entries
//! carry record keys and EUIDs, never demographics. A torn last line after a crash is
//! skipped by the reader and fenced off by the next writer.
//!
//! # Two ways to be durable
//! - [`AuditLog::open`]: each cycle `fdatasync`s the file.
//! - [`AuditLog::open_staged`] (the server, over its sled store): each cycle also stages
//!   its lines in the store ([`Staging`]), and the store's flush, which the cycle runs
//!   anyway for the calls that changed data, makes them durable: one sync per cycle instead
//!   of two. The file itself is synced about once a second ([`SETTLE_EVERY`]); then the
//!   store records how long the synced file is (a *mark*) and drops the lines staged up to
//!   there. After a crash, opening the trail again cuts the file back to the marked length
//!   (only bytes written after the last file sync are cut) and appends every line staged
//!   after the mark, in order, so no acknowledged entry is lost and none is doubled. Until
//!   then the entries of the last second before a crash are in the store, not the file
//!   (`empi audit` opens the trail this way before exporting, when no server holds the
//!   store).
//!   When the file was replaced in the meantime (another inode, or shorter than the mark),
//!   nothing is cut: the staged lines are appended to the new file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{StagedEntries, Staging, UnixMillis};

use super::time::format_rfc3339;
use super::{Identity, Operation, Role};

/// The audit file inside a data directory.
pub fn audit_path(data: &Path) -> PathBuf {
    data.join("auth").join("audit.jsonl")
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Authenticated but outside the caller's role or sources (`PERMISSION_DENIED`).
    Denied,
    /// Missing, unknown or revoked credentials (`UNAUTHENTICATED`).
    Unauthenticated,
    /// Allowed but failed; `code` names the gRPC status.
    Error,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// When, milliseconds since the epoch (for filtering).
    pub at_ms: i64,
    /// The authenticated caller's name; empty when unauthenticated.
    pub actor: String,
    /// The caller's role, when authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The RPC, e.g. `MatchOrCreate`.
    pub operation: String,
    /// Record keys (`source/local_id`) touched or asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// EUIDs touched or asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub euids: Vec<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The gRPC status code name when not ok (`NOT_FOUND`, `PERMISSION_DENIED`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The peer address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

impl AuditEntry {
    /// An entry stamped now for `operation` by `who` (`None`: unauthenticated).
    pub fn new(who: Option<&Identity>, operation: &str, outcome: AuditOutcome) -> Self {
        let now = UnixMillis::now().0;
        AuditEntry {
            at: format_rfc3339(now),
            at_ms: now,
            actor: who.map(|i| i.name.clone()).unwrap_or_default(),
            role: who.map(|i| i.role),
            operation: operation.to_string(),
            records: Vec::new(),
            euids: Vec::new(),
            outcome,
            code: None,
            peer: None,
        }
    }

    /// An entry for an [`Operation`].
    pub fn for_op(who: Option<&Identity>, op: Operation, outcome: AuditOutcome) -> Self {
        Self::new(who, op.name(), outcome)
    }
}

/// What a batch's writer reports to one entry: the audit sync's result (`Err`: the
/// trail's own failure), and inside it the entry's hook's.
type Acked = std::result::Result<Result<()>, String>;
type Ack = tokio::sync::oneshot::Sender<Acked>;
/// Run by the writer before it syncs the batch holding the entry (see
/// [`AuditLog::append_after`]).
type Hook = Box<dyn FnOnce() -> Result<()> + Send>;

/// One entry waiting for the writer.
struct Queued {
    line: Vec<u8>,
    hook: Option<Hook>,
    ack: Ack,
}

/// How often a staged trail syncs its file and drops what the store kept for it (see the
/// module docs), on a thread of its own; about this much of the trail is only in the store.
pub const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// The append side of the audit trail (the server holds one).
#[derive(Debug)]
pub struct AuditLog {
    /// `None` once dropping: closing the channel ends the writer.
    tx: Option<mpsc::Sender<Queued>>,
    /// Joined on drop, so the trail is settled and its handle on the store released when
    /// the log is gone.
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Opens (creating) the audit file in append mode, private to the owner.
fn open_file(path: &Path) -> Result<std::fs::File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::tokens::private_dir(dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| Error::io(path, e))
}

/// Fences off a torn last line from a crash, so the next entry starts a line. Reads only
/// the last byte (the trail grows without bound).
fn fence(file: &mut std::fs::File, path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let torn = (|| -> std::io::Result<bool> {
        let mut f = std::fs::File::open(path)?;
        if f.metadata()?.len() == 0 {
            return Ok(false);
        }
        f.seek(SeekFrom::End(-1))?;
        let mut last = [0u8];
        f.read_exact(&mut last)?;
        Ok(last[0] != b'\n')
    })()
    .unwrap_or(false);
    if torn {
        file.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Which file, on which device: a mark only cuts back the file it was taken of.
fn identity(file: &std::fs::File, path: &Path) -> Result<(u64, u64, u64)> {
    let m = file.metadata().map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Ok((m.len(), dev, ino))
}

/// How far the file was durable: the last settled cycle, the file's length then, and the
/// file's identity (32 bytes, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    seq: u64,
    len: u64,
    dev: u64,
    ino: u64,
}

impl Mark {
    fn encode(&self) -> Vec<u8> {
        [self.seq, self.len, self.dev, self.ino]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect()
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let b: &[u8; 32] = b
            .try_into()
            .map_err(|_| Error::Corrupt("audit staging mark is not 32 bytes".into()))?;
        let n = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Mark {
            seq: n(0),
            len: n(1),
            dev: n(2),
            ino: n(3),
        })
    }
}

/// The writer's way of making a cycle durable.
enum Durability {
    /// `fdatasync` the file every cycle.
    Sync,
    /// Stage the cycle's lines in the store and flush it; sync the file now and then.
    Staged(Staged),
}

/// State of a staged trail's writer.
struct Staged {
    staging: Arc<dyn Staging>,
    /// The mark after the last cycle: its number, and the file's length after its lines.
    written: Mark,
    /// The last cycle handed to the settler (or settled when opening).
    requested: u64,
    requested_at: Instant,
    /// The settler thread, which syncs the file and settles the store off the writer's
    /// path (a settle drops about a second's worth of staged cycles: milliseconds).
    settler: Option<(mpsc::Sender<Mark>, std::thread::JoinHandle<()>)>,
}

/// Syncs the file, then has the store record `mark` and drop what it kept up to it.
fn settle(staging: &dyn Staging, file: &std::fs::File, mark: Mark) -> Result<()> {
    file.sync_data()
        .map_err(|e| Error::Storage(format!("syncing the audit trail: {e}")))?;
    staging.settle_staged(&mark.encode(), mark.seq)
}

/// The settler thread: settles the latest mark it was sent; a failure is logged, and the
/// next mark tries again (the lines stay durable in the store meanwhile).
fn settler(file: std::fs::File, staging: Arc<dyn Staging>, rx: mpsc::Receiver<Mark>) {
    while let Ok(mut mark) = rx.recv() {
        mark = rx.try_iter().last().unwrap_or(mark);
        if let Err(e) = settle(&*staging, &file, mark) {
            tracing::warn!(error = %e, "audit trail not settled; its recent lines stay in the store");
        }
    }
}

impl Staged {
    /// Hands the settler the current mark when one is due.
    fn settle_if_due(&mut self) {
        if self.requested == self.written.seq || self.requested_at.elapsed() < SETTLE_EVERY {
            return;
        }
        if let Some((tx, _)) = &self.settler {
            let _ = tx.send(self.written);
        }
        self.requested = self.written.seq;
        self.requested_at = Instant::now();
    }

    /// Stops the settler and settles everything written, on the calling thread.
    fn close(&mut self, file: &std::fs::File) {
        if let Some((tx, handle)) = self.settler.take() {
            drop(tx);
            let _ = handle.join();
        }
        if let Err(e) = settle(&*self.staging, file, self.written) {
            tracing::warn!(error = %e, "audit trail not settled at close; the next start restores it from the store");
        }
    }
}

/// Brings the file up to date with what the store kept for it after a crash (module docs)
/// and returns the writer's state, settled.
fn recover(file: &mut std::fs::File, path: &Path, staging: Arc<dyn Staging>) -> Result<Staged> {
    let StagedEntries { mark, entries } = staging.staged()?;
    let mark = mark.as_deref().map(Mark::decode).transpose()?;
    let after = mark.map_or(0, |m| m.seq);
    let (len, dev, ino) = identity(file, path)?;
    let mut pending: Vec<&(u64, Vec<u8>)> = entries.iter().filter(|(n, _)| *n > after).collect();
    pending.sort_by_key(|(n, _)| *n);
    if !pending.is_empty() {
        match mark {
            Some(m) if (m.dev, m.ino) == (dev, ino) && len >= m.len => {
                file.set_len(m.len).map_err(|e| Error::io(path, e))?;
            }
            _ => fence(file, path)?,
        }
        for (_, lines) in &pending {
            file.write_all(lines).map_err(|e| Error::io(path, e))?;
        }
        tracing::warn!(
            cycles = pending.len(),
            "audit trail: lines acknowledged before a crash restored from the store"
        );
    } else {
        fence(file, path)?;
    }
    let len = identity(file, path)?.0;
    let last = entries
        .iter()
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0)
        .max(after);
    let mark = Mark {
        seq: last,
        len,
        dev,
        ino,
    };
    settle(&*staging, file, mark)?;
    let (tx, rx) = mpsc::channel();
    let for_settler = (
        file.try_clone().map_err(|e| Error::io(path, e))?,
        Arc::clone(&staging),
    );
    let handle = std::thread::Builder::new()
        .name("empi-audit-settle".into())
        .spawn(move || settler(for_settler.0, for_settler.1, rx))
        .map_err(|e| Error::io(path, e))?;
    Ok(Staged {
        staging,
        written: mark,
        requested: last,
        requested_at: Instant::now(),
        settler: Some((tx, handle)),
    })
}

impl AuditLog {
    /// Opens (creating) the audit trail of data directory `data` and starts its writer
    /// thread, which ends when the log is dropped. Each cycle syncs the file.
    ///
    /// # Errors
    /// I/O errors creating or opening the file.
    pub fn open(data: &Path) -> Result<Self> {
        let path = audit_path(data);
        let mut file = open_file(&path)?;
        fence(&mut file, &path)?;
        Self::start(file, path, Durability::Sync)
    }

    /// Opens the audit trail of `data` made durable through `staging` (module docs): first
    /// restores lines a crash kept from the file, then starts the writer. Give it the store
    /// of the same data directory, opened for the whole run.
    ///
    /// # Errors
    /// I/O errors on the file; storage errors from `staging`.
    pub fn open_staged(data: &Path, staging: Arc<dyn Staging>) -> Result<Self> {
        let path = audit_path(data);
        let mut file = open_file(&path)?;
        let staged = recover(&mut file, &path, staging)?;
        Self::start(file, path, Durability::Staged(staged))
    }

    fn start(file: std::fs::File, path: PathBuf, mode: Durability) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Queued>();
        let thread_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("empi-audit".into())
            .spawn(move || writer(file, &thread_path, &rx, mode))
            .map_err(|e| Error::io(&path, e))?;
        Ok(AuditLog {
            tx: Some(tx),
            writer: Some(writer),
            path,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry and waits until it is on disk (group-committed with concurrent
    /// appends).
    ///
    /// # Errors
    /// [`Error::Storage`] when writing or syncing failed or the writer stopped.
    pub async fn append(&self, entry: &AuditEntry) -> Result<()> {
        // Without a hook the inner result is always `Ok`.
        self.send(entry, None).await.and_then(|hooked| hooked)
    }

    /// Appends an entry whose call must also make its own change durable: the writer runs
    /// `make_durable` after writing the entry's batch and before syncing it, so one cycle
    /// of the writer's thread covers the store's flush and the trail's sync for the whole
    /// batch (the first hook flushes the store, the rest find their change durable). Waits
    /// until both are done.
    ///
    /// Returns `Ok(hook's result)` once the entry is on disk, whether or not the hook
    /// succeeded: the line is written first, so a failed hook is for the caller to audit
    /// with a second entry.
    ///
    /// # Errors
    /// [`Error::Storage`] when the audit trail itself failed (writing, syncing, writer gone).
    pub async fn append_after(
        &self,
        entry: &AuditEntry,
        make_durable: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<Result<()>> {
        self.send(entry, Some(Box::new(make_durable))).await
    }

    async fn send(&self, entry: &AuditEntry, hook: Option<Hook>) -> Result<Result<()>> {
        let mut line = serde_json::to_vec(entry).map_err(|e| Error::Storage(e.to_string()))?;
        line.push(b'\n');
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| Error::Storage("audit writer stopped".into()))?
            .send(Queued { line, hook, ack })
            .map_err(|_| Error::Storage("audit writer stopped".into()))?;
        match done.await {
            Ok(Ok(hooked)) => Ok(hooked),
            Ok(Err(e)) => Err(Error::Storage(format!("audit: {e}"))),
            Err(_) => Err(Error::Storage("audit writer stopped".into())),
        }
    }
}

/// The writer thread: per cycle, every entry waiting is written, their hooks run, and one
/// sync (the file's, or the store's flush for a staged trail) covers them all before they
/// are acknowledged. A staged trail is settled once more when the log is dropped.
fn writer(mut file: std::fs::File, path: &Path, rx: &mpsc::Receiver<Queued>, mut mode: Durability) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Let callers that are about to append do so (the request threads are busy on the
        // same cores): one cycle then covers more of them, with fewer syncs in all.
        std::thread::yield_now();
        batch.extend(rx.try_iter());
        let mut buf = Vec::with_capacity(batch.iter().map(|p| p.line.len()).sum());
        for p in &batch {
            buf.extend_from_slice(&p.line);
        }
        let written = file
            .write_all(&buf)
            .map_err(|e| format!("{}: {e}", path.display()));
        // Staged: the lines go to the store before the hooks, so the store flush the first
        // hook runs covers them too.
        let staged = match (&mut mode, &written) {
            (Durability::Staged(st), Ok(())) => {
                let w = &mut st.written;
                w.seq += 1;
                w.len += buf.len() as u64;
                Some(st.staging.stage(w.seq, &buf).map_err(|e| e.to_string()))
            }
            (Durability::Staged(st), Err(_)) => {
                // How much landed is unknown: take the length from the file.
                let w = &mut st.written;
                w.len = identity(&file, path).map_or(w.len, |(len, _, _)| len);
                None
            }
            (Durability::Sync, _) => None,
        };
        let hooked: Vec<Result<()>> = batch
            .iter_mut()
            .map(|p| p.hook.take().map_or(Ok(()), run_hook))
            .collect();
        let result = written.and_then(|()| match (&mode, staged) {
            (Durability::Staged(st), Some(ticket)) => ticket.and_then(|t| {
                st.staging
                    .flush_staged(t)
                    .map_err(|e| format!("audit lines in the store: {e}"))
            }),
            _ => file
                .sync_data()
                .map_err(|e| format!("{}: {e}", path.display())),
        });
        if let Err(e) = &result {
            tracing::error!("audit write failed: {e}");
        }
        for (p, hooked) in batch.into_iter().zip(hooked) {
            let _ = p.ack.send(result.clone().map(|()| hooked));
        }
        if let Durability::Staged(st) = &mut mode {
            st.settle_if_due();
        }
    }
    if let Durability::Staged(st) = &mut mode {
        st.close(&file);
    }
}

/// Runs a hook, turning a panic into its error: the writer thread must outlive any one
/// hook, or every later audited call would fail with the writer gone.
fn run_hook(hook: Hook) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).unwrap_or_else(|_| {
        Err(Error::Storage(
            "making the change durable panicked; see the server log".into(),
        ))
    })
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct AuditRead {
    /// The matching entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Line numbers (1-based) that hold no readable entry: torn writes from a crash.
    pub unreadable_lines: Vec<usize>,
}

/// Reads the audit trail of `data`, oldest first, keeping entries at or after `since_ms`
/// and by `actor` when given. Unreadable lines (a crash mid-write) are reported by number,
/// never silently dropped.
///
/// # Errors
/// I/O errors.
pub fn read(data: &Path, since_ms: Option<i64>, actor: Option<&str>) -> Result<AuditRead> {
    let path = audit_path(data);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuditRead::default()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut out = AuditRead::default();
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(&path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(entry) = serde_json::from_slice::<AuditEntry>(&line) else {
            out.unreadable_lines.push(n);
            continue;
        };
        if since_ms.is_some_and(|s| entry.at_ms < s) || actor.is_some_and(|a| entry.actor != a) {
            continue;
        }
        out.entries.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_all_durable_and_filterable() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path()).unwrap());
        let reg = Identity {
            name: "reg".into(),
            role: Role::Registrar,
            sources: vec![],
            authenticated: true,
        };
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (log, reg) = (log.clone(), reg.clone());
            tasks.push(tokio::spawn(async move {
                let who = (i % 2 == 0).then_some(&reg);
                let mut e = AuditEntry::for_op(who, Operation::GetPerson, AuditOutcome::Ok);
                e.euids.push(format!("E{i:010}"));
                log.append(&e).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(read(dir.path(), None, None).unwrap().entries.len(), 40);
        let by_reg = read(dir.path(), None, Some("reg")).unwrap().entries;
        assert_eq!(by_reg.len(), 20);
        assert!(by_reg.iter().all(|e| e.role == Some(Role::Registrar)));
        assert!(read(dir.path(), Some(UnixMillis::now().0 + 60_000), None)
            .unwrap()
            .entries
            .is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hooks_run_before_the_sync_and_their_failure_is_passed_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let path = audit_path(dir.path());
        let ok = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
        // The hook runs on the writer's thread once the entry is written, before the
        // acknowledgement.
        let seen = log
            .append_after(&ok, move || {
                let written = std::fs::read_to_string(&path).unwrap();
                assert!(written.contains("MatchOrCreate"), "{written}");
                Ok(())
            })
            .await
            .unwrap();
        assert!(seen.is_ok());
        let failed = log
            .append_after(&ok, || Err(Error::Storage("flush failed".into())))
            .await
            .unwrap();
        assert!(matches!(failed, Err(Error::Storage(m)) if m == "flush failed"));
        // Both lines are on disk: the caller audits a failed hook with an entry of its own.
        assert_eq!(read(dir.path(), None, None).unwrap().entries.len(), 2);
    }

    /// A hook that panics fails its own entry's call; the writer carries on for the next.
    #[tokio::test]
    async fn a_panicking_hook_fails_its_call_and_the_writer_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let ok = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
        let panicked = log
            .append_after(&ok, || panic!("hook panics"))
            .await
            .unwrap();
        assert!(
            matches!(&panicked, Err(Error::Storage(m)) if m.contains("panicked")),
            "{panicked:?}"
        );
        log.append_after(&ok, || Ok(())).await.unwrap().unwrap();
        log.append(&ok).await.unwrap();
        assert_eq!(read(dir.path(), None, None).unwrap().entries.len(), 3);
    }

    /// [`Staging`] in memory, as durable as the test pretends.
    #[derive(Default)]
    struct MemStaging {
        mark: std::sync::Mutex<Option<Vec<u8>>>,
        entries: std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>,
    }

    impl Staging for MemStaging {
        fn stage(&self, seq: u64, bytes: &[u8]) -> Result<crate::store::Ticket> {
            self.entries.lock().unwrap().insert(seq, bytes.to_vec());
            Ok(crate::store::Ticket(seq))
        }
        fn flush_staged(&self, _: crate::store::Ticket) -> Result<()> {
            Ok(())
        }
        fn settle_staged(&self, mark: &[u8], through: u64) -> Result<()> {
            *self.mark.lock().unwrap() = Some(mark.to_vec());
            self.entries.lock().unwrap().retain(|n, _| *n > through);
            Ok(())
        }
        fn staged(&self) -> Result<StagedEntries> {
            let entries = self.entries.lock().unwrap();
            Ok(StagedEntries {
                mark: self.mark.lock().unwrap().clone(),
                entries: entries.iter().map(|(n, b)| (*n, b.clone())).collect(),
            })
        }
    }

    fn line(euid: &str) -> Vec<u8> {
        let mut e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
        e.euids.push(euid.into());
        let mut l = serde_json::to_vec(&e).unwrap();
        l.push(b'\n');
        l
    }

    fn euids_in(data: &Path) -> Vec<String> {
        let r = read(data, None, None).unwrap();
        assert_eq!(r.unreadable_lines, Vec::<usize>::new());
        r.entries.into_iter().flat_map(|e| e.euids).collect()
    }

    fn append_to_file(data: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(audit_path(data))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Over the real store: every entry is in the file once the log is dropped, and the
    /// store keeps only the mark (the close settles).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_trail_is_settled_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let log = Arc::new(AuditLog::open_staged(dir.path(), store.clone()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..30 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
                e.euids.push(format!("E{i}"));
                log.append(&e).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let e = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
        log.append_after(&e, || Ok(())).await.unwrap().unwrap();
        drop(Arc::into_inner(log).expect("the only handle"));
        let staged = store.staged().unwrap();
        assert_eq!(staged.entries, Vec::new());
        let mark = Mark::decode(&staged.mark.unwrap()).unwrap();
        let len = std::fs::metadata(audit_path(dir.path())).unwrap().len();
        assert_eq!(mark.len, len);
        assert_eq!(read(dir.path(), None, None).unwrap().entries.len(), 31);
    }

    /// While the server runs, the settler syncs the file and empties the store's copy about
    /// once a second, without waiting for the close.
    #[tokio::test]
    async fn a_running_trail_settles_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Arc::new(MemStaging::default());
        let log = AuditLog::open_staged(dir.path(), staging.clone()).unwrap();
        let e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
        log.append(&e).await.unwrap();
        tokio::time::sleep(SETTLE_EVERY + Duration::from_millis(100)).await;
        log.append(&e).await.unwrap(); // due: this cycle hands its mark to the settler
        let deadline = Instant::now() + Duration::from_secs(10);
        let mark = loop {
            let staged = staging.staged().unwrap();
            let mark = Mark::decode(&staged.mark.unwrap()).unwrap();
            if mark.seq == 2 && staged.entries.is_empty() {
                break mark;
            }
            assert!(Instant::now() < deadline, "not settled: {mark:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let len = std::fs::metadata(audit_path(dir.path())).unwrap().len();
        assert_eq!(mark.len, len);
        drop(log);
    }

    /// Opens a staged trail, appends one entry naming `euid` and closes it (settled: the
    /// mark covers it). Returns the entry.
    async fn settled_after_one_entry(
        data: &Path,
        staging: &Arc<MemStaging>,
        euid: &str,
    ) -> AuditEntry {
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        let mut e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
        e.euids.push(euid.into());
        log.append(&e).await.unwrap();
        e
    }

    /// A crash after acknowledging lines the file had not synced: opening again restores
    /// them from the store, once each, in order, whatever part of them the file kept.
    #[tokio::test]
    async fn lines_kept_only_by_the_store_are_restored_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let staging = Arc::new(MemStaging::default());
        let e = settled_after_one_entry(data, &staging, "E1").await;
        assert_eq!(euids_in(data), ["E1"]);

        // Cycle 2 staged; the file kept a torn part of it.
        let two = [line("E2"), line("E3")].concat();
        staging.stage(2, &two).unwrap();
        append_to_file(data, &two[..two.len() / 3]);
        // An entry at or below the mark is stale (its removal was lost): never restored.
        staging.stage(1, &line("STALE")).unwrap();
        drop(AuditLog::open_staged(data, staging.clone()).unwrap());
        assert_eq!(euids_in(data), ["E1", "E2", "E3"]);

        // Cycle 3 staged; the file kept all of it.
        staging.stage(3, &line("E4")).unwrap();
        append_to_file(data, &line("E4"));
        drop(AuditLog::open_staged(data, staging.clone()).unwrap());
        assert_eq!(euids_in(data), ["E1", "E2", "E3", "E4"]);

        // Cycles 4 and 5 staged, staged out of order; the file kept none.
        staging.stage(5, &line("E6")).unwrap();
        staging.stage(4, &line("E5")).unwrap();
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        assert_eq!(euids_in(data), ["E1", "E2", "E3", "E4", "E5", "E6"]);
        // Numbering goes on after the highest staged cycle (staged, or settled already).
        log.append(&e).await.unwrap();
        let staged = staging.staged().unwrap();
        let top = match staged.entries.last() {
            Some((n, _)) => *n,
            None => Mark::decode(&staged.mark.unwrap()).unwrap().seq,
        };
        assert_eq!(top, 6);
        drop(log);
        assert_eq!(staging.staged().unwrap().entries, Vec::new());
    }

    /// A trail file replaced while the server was down (another inode) is not cut back to
    /// the old file's mark: the staged lines are appended to it.
    #[tokio::test]
    async fn a_replaced_file_is_appended_to_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let staging = Arc::new(MemStaging::default());
        settled_after_one_entry(data, &staging, "E1").await;
        let path = audit_path(data);
        std::fs::rename(&path, data.join("auth").join("audit.1")).unwrap();
        // The new file is longer than the old one's mark.
        std::fs::write(&path, [line("N1"), line("N2"), line("N3")].concat()).unwrap();
        staging.stage(2, &line("E2")).unwrap();
        drop(AuditLog::open_staged(data, staging).unwrap());
        assert_eq!(euids_in(data), ["N1", "N2", "N3", "E2"]);
    }

    #[tokio::test]
    async fn torn_last_line_is_skipped_and_fenced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
            let e = AuditEntry::for_op(None, Operation::Match, AuditOutcome::Unauthenticated);
            log.append(&e).await.unwrap();
        }
        let path = audit_path(dir.path());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"at\":\"20").unwrap();
        let r = read(dir.path(), None, None).unwrap();
        assert_eq!((r.entries.len(), r.unreadable_lines), (1, vec![2]));
        let log = AuditLog::open(dir.path()).unwrap();
        let e = AuditEntry::for_op(None, Operation::Link, AuditOutcome::Denied);
        log.append(&e).await.unwrap();
        // The torn line stays reported; the entries around it read.
        let r = read(dir.path(), None, None).unwrap();
        assert_eq!((r.entries.len(), r.unreadable_lines), (2, vec![2]));
    }
}
