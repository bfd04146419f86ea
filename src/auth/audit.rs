//! The audit trail: one JSON line per call that reads or changes patient data (allowed or
//! denied), appended to `DATA/auth/audit.jsonl` and acknowledged only once on disk.
//!
//! Durability is group-committed like the store's writes: one writer thread takes every
//! entry waiting, writes them, `fdatasync`s once, then acknowledges them all, so concurrent
//! calls share a sync. The file is opened append-only (mode 0600) and nothing in empi ever
//! rewrites it; a torn last line after a crash is skipped by the reader and fenced off by
//! the next writer. Entries carry record keys and EUIDs, never demographics.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::UnixMillis;

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

/// The append side of the audit trail (the server holds one).
#[derive(Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Queued>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating) the audit trail of data directory `data` and starts its writer
    /// thread, which ends when the log is dropped.
    ///
    /// # Errors
    /// I/O errors creating or opening the file.
    pub fn open(data: &Path) -> Result<Self> {
        let path = audit_path(data);
        let dir = path.parent().unwrap_or(Path::new("."));
        super::tokens::private_dir(dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| Error::io(&path, e))?;
        // Fence off a torn last line from a crash, so the next entry starts a line.
        let torn = std::fs::read(&path)
            .map(|b| b.last().is_some_and(|c| *c != b'\n'))
            .unwrap_or(false);
        if torn {
            file.write_all(b"\n").map_err(|e| Error::io(&path, e))?;
        }
        let (tx, rx) = mpsc::channel::<Queued>();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("empi-audit".into())
            .spawn(move || writer(file, &thread_path, &rx))
            .map_err(|e| Error::io(&path, e))?;
        Ok(AuditLog { tx, path })
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
/// `fdatasync` covers them all before they are acknowledged.
fn writer(mut file: std::fs::File, path: &Path, rx: &mpsc::Receiver<Queued>) {
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
        let hooked: Vec<Result<()>> = batch
            .iter_mut()
            .map(|p| p.hook.take().map_or(Ok(()), run_hook))
            .collect();
        let result = written.and_then(|()| {
            file.sync_data()
                .map_err(|e| format!("{}: {e}", path.display()))
        });
        if let Err(e) = &result {
            tracing::error!("audit write failed: {e}");
        }
        for (p, hooked) in batch.into_iter().zip(hooked) {
            let _ = p.ack.send(result.clone().map(|()| hooked));
        }
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
