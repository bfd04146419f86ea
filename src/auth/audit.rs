//! The audit trail: one JSON line per call that reads or changes patient data (allowed or
//! denied), appended to `DATA/auth/audit.jsonl` and acknowledged only once durable, and
//! one per operator command that changes the data directory (`empi token`, `empi load`,
//! `empi serve --disable-auth`).
//!
//! The protocol as a whole (with the store's part) is in docs/DESIGN.md, section 6.
//!
//! Durability is group-committed like the store's writes: one writer thread takes every
//! entry waiting, writes them, makes them durable once, then acknowledges them all, so
//! concurrent calls share the cost. The file is opened append-only (mode 0600); entries
//! carry record keys and EUIDs, never demographics (an invalid key only as a hash,
//! [`key_form`]). A torn last line after a crash is skipped by the reader and fenced off
//! by the next writer; a cycle that fails to write is cut back out of the file.
//!
//! # Two ways to be durable
//! - [`AuditLog::open`]: each cycle `fdatasync`s the file. Other processes may append
//!   to the same file meanwhile, a line per write (`empi token` beside a running server).
//! - [`AuditLog::open_staged`] (the server, over its sled store): a cycle whose calls
//!   change data also stages its lines in the store ([`Staging`]), and the store's
//!   flush, which the cycle runs anyway for those changes, makes them durable: one sync
//!   per cycle instead of two. Other cycles (reads only) sync the file, so a server that
//!   only reads never grows the store. The file itself is synced about once a second
//!   ([`SETTLE_EVERY`]); then the store records how long the synced file is (a *mark*)
//!   and drops the lines staged up to there. After a crash, opening the trail again
//!   compares the file's content after the mark with every line staged after it and
//!   appends those it does not hold, in order (a torn start of one is cut first), so no
//!   acknowledged entry is lost and none is doubled — also in a copied, restored or moved
//!   data directory, since nothing depends on the file's inode. Until then the entries of
//!   the last second before a crash are in the store, not the file (`empi audit` opens
//!   the trail this way before exporting, when no server holds the store).
//!
//! # Intents: every change has its line
//! A write call takes an [`Intent`] ([`AuditLog::intend`]) before it changes anything:
//! its entry as known then, kept in the store. sled recovers a prefix of its log, so a
//! change that survives a crash has its intent with it, whatever the client was told.
//! The cycle that writes the call's own line names the intents it replaces, and the
//! settle drops them; an intent nothing replaced (the call's line was never written) is
//! written with outcome [`AuditOutcome::Interrupted`] when the trail is next opened, or
//! by the writer's next successful cycle after a failed one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Code, Error, Result};
use crate::record::RecordKey;
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
    /// The server stopped (a crash, a full disk) before the call was answered: its change
    /// may or may not be stored (the store says which). Written when the trail is brought
    /// up to date after the stop, from the call's line kept in the store beforehand.
    Interrupted,
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
    /// What an operator's command did, in words (credential names, roles, counts; never
    /// patient data), for entries that are not RPCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
            detail: None,
        }
    }

    /// An entry for a command an operator ran on the data directory (`empi token`,
    /// `empi load`, `empi serve --disable-auth`): the actor is `operator:` and the
    /// operating-system user (no role: the command ran with file access, not a credential).
    pub fn operator(operation: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(None, operation, AuditOutcome::Ok);
        e.actor = format!("operator:{}", os_user());
        e.detail = Some(detail.into());
        e
    }

    /// Marks the entry failed with status `code`.
    pub fn failed(mut self, code: Code) -> Self {
        self.outcome = AuditOutcome::Error;
        self.code = Some(code.name().to_string());
        self
    }

    /// An entry for an [`Operation`].
    pub fn for_op(who: Option<&Identity>, op: Operation, outcome: AuditOutcome) -> Self {
        Self::new(who, op.name(), outcome)
    }
}

/// How the audit trail names a record key a request carried: `source/local_id` when it is
/// a valid key ([`RecordKey::validate`]), otherwise `invalid-key:` and the first 16 hex
/// digits of the SHA-256 of `source 0x00 local_id` — bounded, never an echo of what was
/// sent, yet the same for the same bytes, so repeated attempts can be correlated.
pub fn key_form(source: &str, local_id: &str) -> String {
    let key = RecordKey::new(source, local_id);
    if key.validate().is_ok() {
        return key.to_string();
    }
    let mut bytes = Vec::with_capacity(source.len() + 1 + local_id.len());
    bytes.extend_from_slice(source.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(local_id.as_bytes());
    format!("invalid-key:{}", &super::tokens::sha256_hex(&bytes)[..16])
}

/// The operating-system user running this process: `$USER` (or `$LOGNAME`), else the
/// numeric uid (Linux), else `unknown`.
fn os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control) {
                return u;
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid {}", m.uid());
        }
    }
    "unknown".into()
}

/// What a batch's writer reports to one entry: the audit sync's result (`Err`: the
/// trail's own failure), and inside it the entry's hook's.
type Acked = std::result::Result<Result<()>, String>;
type Ack = tokio::sync::oneshot::Sender<Acked>;
/// Run by the writer before it syncs the batch holding the entry (see
/// [`AuditLog::append_after`]).
type Hook = Box<dyn FnOnce() -> Result<()> + Send>;

/// A write call's line kept in the store before the call changes anything
/// ([`AuditLog::intend`]): the call's entry as known then, outcome
/// [`AuditOutcome::Interrupted`]. Hand it back with the call's final entry
/// ([`AuditLog::append_for`]), which replaces it.
#[derive(Debug)]
pub struct Intent {
    id: u64,
    line: Vec<u8>,
}

/// Where a staged trail keeps its intents, and their numbering.
struct Intents {
    staging: Arc<dyn Staging>,
    next: std::sync::atomic::AtomicU64,
}

/// One entry waiting for the writer.
struct Queued {
    line: Vec<u8>,
    hook: Option<Hook>,
    intent: Option<Intent>,
    ack: Ack,
    /// When it was handed to the writer (for [`WriterLag`]).
    queued: Instant,
}

/// How far the writer lags its callers: how long each entry waited from being handed over
/// to being answered (written and durable, or failed), and how many wait now. For the
/// operations listener.
#[derive(Debug, Default)]
pub struct WriterLag {
    /// Time from hand-over to answer, per entry.
    pub wait: crate::metrics::Histogram,
    /// Entries handed over and not answered yet.
    pub waiting: std::sync::atomic::AtomicU64,
}

/// How often a staged trail syncs its file and drops what the store kept for it (see the
/// module docs), on a thread of its own; about this much of the trail is only in the store.
pub const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// Intents whose call failed before its line was written, kept in memory up to this many
/// (beyond, they wait in the store for the next start): written as interrupted lines by the
/// writer's next successful cycle.
const MAX_ORPHANS: usize = 10_000;

/// The append side of the audit trail (the server holds one).
pub struct AuditLog {
    /// `None` once dropping: closing the channel ends the writer.
    tx: Option<mpsc::Sender<Queued>>,
    /// Joined on drop, so the trail is settled and its handle on the store released when
    /// the log is gone.
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    /// A staged trail's intents; `None` for a trail that syncs its file every cycle.
    intents: Option<Intents>,
    /// Cleared when a cycle fails, set again when one succeeds (see [`AuditLog::healthy`]).
    healthy: Arc<std::sync::atomic::AtomicBool>,
    lag: Arc<WriterLag>,
    /// Tests: cycles whose write to the file fails (a full disk).
    #[cfg(test)]
    fail_writes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("staged", &self.intents.is_some())
            .finish_non_exhaustive()
    }
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
    options.append(true).create(true).read(true);
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

fn file_len(file: &std::fs::File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(|e| Error::io(path, e))?.len())
}

/// How far the file was durable: the last settled cycle and the file's length then
/// (32 bytes: both as big-endian `u64`s, then 16 reserved bytes, written as zero and
/// ignored). Nothing in it names the file itself: a copied or restored trail is recognised
/// by its content ([`recover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    seq: u64,
    len: u64,
}

impl Mark {
    fn encode(&self) -> Vec<u8> {
        [self.seq, self.len, 0, 0]
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
        })
    }
}

/// A staged cycle: the intents its lines replace, then its lines. Encoded as a `0x01`
/// byte, a `u32` count and that many `u64` intent numbers (big-endian), then the lines. A
/// value that starts otherwise is read as lines only, replacing no intent (a JSON line
/// starts with `{`, so the two cannot be confused).
fn encode_cycle(intents: &[u64], lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + intents.len() * 8 + lines.len());
    out.push(1);
    out.extend_from_slice(
        &u32::try_from(intents.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for id in intents {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(lines);
    out
}

fn decode_cycle(b: &[u8]) -> Result<(Vec<u64>, &[u8])> {
    if b.first() != Some(&1) {
        return Ok((Vec::new(), b));
    }
    let corrupt = || Error::Corrupt("audit staging entry is malformed".into());
    let n = b
        .get(1..5)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .ok_or_else(corrupt)?;
    let ids_end = n
        .checked_mul(8)
        .and_then(|l| l.checked_add(5))
        .ok_or_else(corrupt)?;
    let ids = b.get(5..ids_end).ok_or_else(corrupt)?;
    let ids = ids
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok((ids, &b[ids_end..]))
}

/// The lines of a buffer of whole lines, each with its newline.
fn lines_of(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split_inclusive(|b| *b == b'\n')
}

/// The writer's way of making a cycle durable.
enum Durability {
    /// `fdatasync` the file every cycle.
    Sync,
    /// Stage the cycle's lines in the store and flush it; sync the file now and then.
    Staged(Staged),
}

/// A settle the settler thread is to do: the mark, and the intents that cycles up to it
/// replaced.
type SettleJob = (Mark, Vec<u64>);

/// State of a staged trail's writer.
struct Staged {
    staging: Arc<dyn Staging>,
    /// The mark after the last cycle: its number, and the file's length after its lines.
    written: Mark,
    /// Intents replaced by cycles staged since the last settle was handed over.
    replaced: Vec<u64>,
    /// The last cycle handed to the settler (or settled when opening).
    requested: u64,
    requested_at: Instant,
    /// The settler thread, which syncs the file and settles the store off the writer's
    /// path (a settle drops about a second's worth of staged cycles: milliseconds).
    settler: Option<(mpsc::Sender<SettleJob>, std::thread::JoinHandle<()>)>,
}

/// Syncs the file, then has the store drop the intents whose lines it now holds, record
/// `mark` and drop the cycles up to it. In that order: a crash in between never leaves an
/// intent without its line, nor a cycle above the mark without its lines.
fn settle(staging: &dyn Staging, file: &std::fs::File, mark: Mark, replaced: &[u64]) -> Result<()> {
    file.sync_data()
        .map_err(|e| Error::Storage(format!("syncing the audit trail: {e}")))?;
    staging.drop_intents(replaced)?;
    staging.settle_staged(&mark.encode(), mark.seq)
}

/// The settler thread: settles the latest mark it was sent; a failure is logged, and the
/// next mark tries again, with the intents of both (the lines stay durable in the store
/// meanwhile).
fn settler(file: std::fs::File, staging: Arc<dyn Staging>, rx: mpsc::Receiver<SettleJob>) {
    let mut replaced = Vec::new();
    while let Ok((mut mark, ids)) = rx.recv() {
        replaced.extend(ids);
        for (later, ids) in rx.try_iter() {
            mark = later;
            replaced.extend(ids);
        }
        match settle(&*staging, &file, mark, &replaced) {
            Ok(()) => replaced.clear(),
            Err(e) => tracing::warn!(
                error = %e,
                "audit trail not settled; its recent lines stay in the store"
            ),
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
            let _ = tx.send((self.written, std::mem::take(&mut self.replaced)));
        }
        self.requested = self.written.seq;
        self.requested_at = Instant::now();
    }

    /// Stops the settler and settles everything written, on the calling thread.
    fn close(&mut self, file: &std::fs::File) {
        if let Some((tx, handle)) = self.settler.take() {
            // What the settler did not settle is settled here (a settle is idempotent).
            let _ = tx.send((self.written, Vec::new()));
            drop(tx);
            let _ = handle.join();
        }
        if let Err(e) = settle(&*self.staging, file, self.written, &self.replaced) {
            tracing::warn!(error = %e, "audit trail not settled at close; the next start restores it from the store");
        }
    }
}

/// Brings the file up to date with what the store kept for it (module docs) and returns
/// the writer's state, settled: every line of a cycle after the mark, and every intent no
/// staged cycle replaced (as an interrupted line), that the file does not hold yet is
/// appended. What the file holds is read from its content after the mark, so a trail
/// copied, restored or moved with its data directory is completed, never doubled.
fn recover(file: &mut std::fs::File, path: &Path, staging: Arc<dyn Staging>) -> Result<Staged> {
    let StagedEntries {
        mark,
        entries,
        intents,
    } = staging.staged()?;
    let mark = mark.as_deref().map(Mark::decode).transpose()?;
    let after = mark.map_or(0, |m| m.seq);
    let mut cycles = Vec::with_capacity(entries.len());
    for (seq, value) in &entries {
        let (ids, lines) = decode_cycle(value)?;
        cycles.push((*seq, ids, lines));
    }
    cycles.sort_by_key(|c| c.0);
    let replaced: std::collections::HashSet<u64> =
        cycles.iter().flat_map(|c| c.1.iter().copied()).collect();
    let mut due: Vec<&[u8]> = cycles
        .iter()
        .filter(|c| c.0 > after)
        .flat_map(|c| lines_of(c.2))
        .collect();
    let mut orphans: Vec<&(u64, Vec<u8>)> = intents
        .iter()
        .filter(|(id, _)| !replaced.contains(id))
        .collect();
    orphans.sort_by_key(|(id, _)| *id);
    due.extend(orphans.iter().map(|(_, line)| line.as_slice()));

    let len = file_len(file, path)?;
    let start = match mark {
        Some(m) if len >= m.len => Some(m.len),
        None => Some(0),
        // Shorter than the mark: another file (rotated or restored); none of it is ours.
        Some(_) => None,
    };
    let (mut held, torn) = match start {
        Some(at) => lines_held(path, at, &due)?,
        None => Default::default(),
    };
    let torn = torn.as_slice();
    let missing: Vec<&[u8]> = due
        .into_iter()
        .filter(|line| match held.get_mut(*line) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect();
    if !torn.is_empty() {
        if missing.iter().any(|l| l.starts_with(torn)) {
            // The start of a line about to be written whole: cut it.
            file.set_len(len - torn.len() as u64)
                .map_err(|e| Error::io(path, e))?;
        } else {
            file.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
    }
    if !missing.is_empty() {
        for line in &missing {
            file.write_all(line).map_err(|e| Error::io(path, e))?;
        }
        tracing::warn!(
            lines = missing.len(),
            interrupted = orphans.len(),
            "audit trail: lines kept in the store after a stop restored"
        );
    }
    let last = cycles.iter().map(|c| c.0).max().unwrap_or(0).max(after);
    let mark = Mark {
        seq: last,
        len: file_len(file, path)?,
    };
    let every_intent: Vec<u64> = intents.iter().map(|(id, _)| *id).collect();
    settle(&*staging, file, mark, &every_intent)?;
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
        replaced: Vec::new(),
        requested: last,
        requested_at: Instant::now(),
        settler: Some((tx, handle)),
    })
}

/// How often each of some lines occurs.
type LineCounts = std::collections::HashMap<Vec<u8>, usize>;

/// Reads the file from `offset` to its end, a line at a time (it may be long: reads
/// after the last write are synced without moving the mark), and counts how often each of
/// `wanted` occurs there as a whole line; also returns a torn last line, if any.
fn lines_held(path: &Path, offset: u64, wanted: &[&[u8]]) -> Result<(LineCounts, Vec<u8>)> {
    use std::io::{Seek, SeekFrom};
    let wanted: std::collections::HashSet<&[u8]> = wanted.iter().copied().collect();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(f);
    let mut held = std::collections::HashMap::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?
            == 0
        {
            return Ok((held, Vec::new()));
        }
        if line.last() != Some(&b'\n') {
            return Ok((held, line));
        }
        if wanted.contains(line.as_slice()) {
            *held.entry(line.clone()).or_default() += 1;
        }
    }
}

fn to_line(entry: &AuditEntry) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(entry).map_err(|e| Error::Storage(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

impl AuditLog {
    /// Opens (creating) the audit trail of data directory `data` and starts its writer
    /// thread, which ends when the log is dropped. Each cycle syncs the file. Other
    /// processes may append to the same file meanwhile (each line is one write).
    ///
    /// # Errors
    /// I/O errors creating or opening the file.
    pub fn open(data: &Path) -> Result<Self> {
        let path = audit_path(data);
        let mut file = open_file(&path)?;
        fence(&mut file, &path)?;
        Self::start(file, path, Durability::Sync, None)
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
        let top = staging.staged()?.intents.iter().map(|(id, _)| *id).max();
        let staged = recover(&mut file, &path, Arc::clone(&staging))?;
        let intents = Intents {
            staging,
            next: std::sync::atomic::AtomicU64::new(top.map_or(1, |t| t + 1)),
        };
        Self::start(file, path, Durability::Staged(staged), Some(intents))
    }

    fn start(
        file: std::fs::File,
        path: PathBuf,
        mode: Durability,
        intents: Option<Intents>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Queued>();
        let thread_path = path.clone();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let lag = Arc::new(WriterLag::default());
        #[cfg(test)]
        let fail_writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = WriterState {
            healthy: Arc::clone(&healthy),
            lag: Arc::clone(&lag),
            #[cfg(test)]
            fail_writes: Arc::clone(&fail_writes),
        };
        let writer = std::thread::Builder::new()
            .name("empi-audit".into())
            .spawn(move || writer(file, &thread_path, &rx, mode, &state))
            .map_err(|e| Error::io(&path, e))?;
        Ok(AuditLog {
            tx: Some(tx),
            writer: Some(writer),
            path,
            intents,
            healthy,
            lag,
            #[cfg(test)]
            fail_writes,
        })
    }

    /// How far the writer lags its callers.
    pub fn lag(&self) -> &WriterLag {
        &self.lag
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last cycle of the writer succeeded (true before the first): false while
    /// the trail cannot write or sync, for the health check.
    pub fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Keeps `entry` (as known before a write call changes anything) in the store, as an
    /// interrupted line, before the call changes anything: the store recovers a prefix of
    /// its log, so any change of the call that survives a crash has this line with it, and
    /// the trail gets it when it is next opened unless the call's own line replaced it
    /// first. `None` for a trail that is not staged (nothing to keep it in).
    ///
    /// # Errors
    /// [`Error::Storage`] from the store: the call must not go on.
    pub fn intend(&self, entry: &AuditEntry) -> Result<Option<Intent>> {
        let Some(intents) = &self.intents else {
            return Ok(None);
        };
        let mut e = entry.clone();
        e.outcome = AuditOutcome::Interrupted;
        e.code = None;
        let line = to_line(&e)?;
        let id = intents
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        intents.staging.stage_intent(id, &line)?;
        Ok(Some(Intent { id, line }))
    }

    /// Appends an entry and waits until it is on disk (group-committed with concurrent
    /// appends).
    ///
    /// # Errors
    /// [`Error::Storage`] when writing or syncing failed or the writer stopped.
    pub async fn append(&self, entry: &AuditEntry) -> Result<()> {
        self.append_for(entry, None).await
    }

    /// [`AuditLog::append`] for the final entry of a call that took an [`Intent`]: the
    /// entry replaces the intent's line. If the entry cannot be written, the intent's line
    /// is written instead once the trail can write again.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub async fn append_for(&self, entry: &AuditEntry, intent: Option<Intent>) -> Result<()> {
        // Without a hook the inner result is always `Ok`.
        self.send(entry, None, intent)
            .await
            .and_then(|hooked| hooked)
    }

    /// Appends an entry whose call must also make its own change durable: the writer runs
    /// `make_durable` after writing the entry's batch and before syncing it, so one cycle
    /// of the writer's thread covers the store's flush and the trail's sync for the whole
    /// batch (the first hook flushes the store, the rest find their change durable). Waits
    /// until both are done. `intent`: as for [`AuditLog::append_for`].
    ///
    /// Returns `Ok(hook's result)` once the entry is on disk, whether or not the hook
    /// succeeded: the line is written first, so a failed hook is for the caller to audit
    /// with a second entry. When the entry cannot be written the hook does not run.
    ///
    /// # Errors
    /// [`Error::Storage`] when the audit trail itself failed (writing, syncing, writer gone).
    pub async fn append_after(
        &self,
        entry: &AuditEntry,
        intent: Option<Intent>,
        make_durable: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<Result<()>> {
        self.send(entry, Some(Box::new(make_durable)), intent).await
    }

    /// [`AuditLog::append`] for a command outside any async runtime (`empi token`,
    /// `empi load`): blocks until the entry is on disk.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub fn append_blocking(&self, entry: &AuditEntry) -> Result<()> {
        let done = self.queue(entry, None, None)?;
        acked(done.blocking_recv()).and_then(|hooked| hooked)
    }

    async fn send(
        &self,
        entry: &AuditEntry,
        hook: Option<Hook>,
        intent: Option<Intent>,
    ) -> Result<Result<()>> {
        let done = self.queue(entry, hook, intent)?;
        acked(done.await)
    }

    fn queue(
        &self,
        entry: &AuditEntry,
        hook: Option<Hook>,
        intent: Option<Intent>,
    ) -> Result<tokio::sync::oneshot::Receiver<Acked>> {
        let line = to_line(entry)?;
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| Error::Storage("audit writer stopped".into()))?
            .send(Queued {
                line,
                hook,
                intent,
                ack,
                queued: Instant::now(),
            })
            .map_err(|_| Error::Storage("audit writer stopped".into()))?;
        self.lag
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(done)
    }

    /// Tests: makes the next `n` cycles fail to write the file, as a full disk would.
    #[cfg(test)]
    pub(crate) fn fail_next_writes(&self, n: u64) {
        self.fail_writes
            .store(n, std::sync::atomic::Ordering::Release);
    }
}

/// What the writer answered an entry, as the appender's result.
fn acked(
    answer: std::result::Result<Acked, tokio::sync::oneshot::error::RecvError>,
) -> Result<Result<()>> {
    match answer {
        Ok(Ok(hooked)) => Ok(hooked),
        Ok(Err(e)) => Err(Error::Storage(format!("audit: {e}"))),
        Err(_) => Err(Error::Storage("audit writer stopped".into())),
    }
}

/// What the writer shares with the log.
struct WriterState {
    healthy: Arc<std::sync::atomic::AtomicBool>,
    lag: Arc<WriterLag>,
    #[cfg(test)]
    fail_writes: Arc<std::sync::atomic::AtomicU64>,
}

impl WriterState {
    /// Answers one entry and counts its wait.
    fn answer(&self, p: Queued, answer: Acked) {
        self.lag.wait.observe(p.queued.elapsed());
        self.lag
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let _ = p.ack.send(answer);
    }

    fn injected_failure(&self) -> bool {
        #[cfg(test)]
        return self
            .fail_writes
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            )
            .is_ok();
        #[cfg(not(test))]
        false
    }
}

/// The writer thread: per cycle, every entry waiting is written, then made durable with one
/// sync: a cycle that changes the store (it holds a hook or an intent) stages its lines in
/// the store and the first hook's flush covers both; any other cycle syncs the file (so a
/// trail that serves only reads, as while the disk is nearly full, never writes the store).
/// When a cycle fails, what it wrote to the file is cut off again, its entries are
/// answered with the error and their intents are written as interrupted lines by the next
/// cycle that succeeds. A staged trail is settled once more when the log is dropped.
fn writer(
    mut file: std::fs::File,
    path: &Path,
    rx: &mpsc::Receiver<Queued>,
    mut mode: Durability,
    state: &WriterState,
) {
    let mut orphans: Vec<Intent> = Vec::new();
    let mut len = match &mode {
        Durability::Staged(st) => st.written.len,
        Durability::Sync => 0,
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Let callers that are about to append do so (the request threads are busy on the
        // same cores): one cycle then covers more of them, with fewer syncs in all.
        std::thread::yield_now();
        batch.extend(rx.try_iter());
        let mut buf = Vec::with_capacity(batch.iter().map(|p| p.line.len()).sum());
        let mut replaced: Vec<u64> = Vec::new();
        for o in &orphans {
            buf.extend_from_slice(&o.line);
            replaced.push(o.id);
        }
        for p in &batch {
            buf.extend_from_slice(&p.line);
            replaced.extend(p.intent.as_ref().map(|i| i.id));
        }
        let changes = !replaced.is_empty() || batch.iter().any(|p| p.hook.is_some());
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        // From the file itself: another process (`empi token`) may have appended a line.
        len = file_len(&file, path).unwrap_or(len);
        let written = if state.injected_failure() {
            Err(io(std::io::Error::other("injected write failure")))
        } else {
            file.write_all(&buf).map_err(io)
        };
        // Staged and changing the store: the lines go to the store before the hooks, so
        // the store flush the first hook runs covers them too.
        let staged = match (&mut mode, written) {
            (Durability::Staged(st), Ok(())) if changes => {
                let seq = st.written.seq + 1;
                st.staging
                    .stage(seq, &encode_cycle(&replaced, &buf))
                    .map(|ticket| (seq, Some(ticket)))
                    .map_err(|e| e.to_string())
            }
            (_, Ok(())) => Ok((0, None)),
            (_, Err(e)) => Err(e),
        };
        let result = match staged {
            Err(e) => Err(e),
            Ok((seq, ticket)) => {
                orphans.clear();
                len += buf.len() as u64;
                let hooked: Vec<Result<()>> = batch
                    .iter_mut()
                    .map(|p| p.hook.take().map_or(Ok(()), run_hook))
                    .collect();
                let synced = match (&mut mode, ticket) {
                    (Durability::Staged(st), Some(ticket)) => {
                        st.written = Mark { seq, len };
                        st.replaced.extend_from_slice(&replaced);
                        st.staging
                            .flush_staged(ticket)
                            .map_err(|e| format!("audit lines in the store: {e}"))
                    }
                    (mode, _) => {
                        if let Durability::Staged(st) = mode {
                            st.written.len = len;
                        }
                        file.sync_data().map_err(io)
                    }
                };
                synced.map(|()| hooked)
            }
        };
        match result {
            Ok(hooked) => {
                state
                    .healthy
                    .store(true, std::sync::atomic::Ordering::Release);
                for (p, hooked) in batch.into_iter().zip(hooked) {
                    state.answer(p, Ok(hooked));
                }
            }
            Err(e) => {
                tracing::error!("audit write failed: {e}");
                state
                    .healthy
                    .store(false, std::sync::atomic::Ordering::Release);
                // Whatever part of the cycle reached the file goes again: the next line
                // must start a line of its own.
                if file_len(&file, path).is_ok_and(|now| now > len) {
                    if let Err(cut) = file.set_len(len) {
                        tracing::error!("cutting a failed audit write: {cut}");
                    }
                }
                for mut p in batch {
                    if orphans.len() < MAX_ORPHANS {
                        orphans.extend(p.intent.take());
                    }
                    state.answer(p, Err(e.clone()));
                }
            }
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
            .append_after(&ok, None, move || {
                let written = std::fs::read_to_string(&path).unwrap();
                assert!(written.contains("MatchOrCreate"), "{written}");
                Ok(())
            })
            .await
            .unwrap();
        assert!(seen.is_ok());
        let failed = log
            .append_after(&ok, None, || Err(Error::Storage("flush failed".into())))
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
            .append_after(&ok, None, || panic!("hook panics"))
            .await
            .unwrap();
        assert!(
            matches!(&panicked, Err(Error::Storage(m)) if m.contains("panicked")),
            "{panicked:?}"
        );
        log.append_after(&ok, None, || Ok(()))
            .await
            .unwrap()
            .unwrap();
        log.append(&ok).await.unwrap();
        assert_eq!(read(dir.path(), None, None).unwrap().entries.len(), 3);
    }

    /// [`Staging`] in memory, as durable as the test pretends.
    #[derive(Default, Clone)]
    struct MemStaging {
        mark: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
        entries: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>>,
        intents: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>>,
    }

    impl MemStaging {
        /// A copy that shares nothing with this one (a copied data directory's store).
        fn deep_copy(&self) -> Self {
            let copy = |m: &std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>| {
                Arc::new(std::sync::Mutex::new(m.lock().unwrap().clone()))
            };
            MemStaging {
                mark: Arc::new(std::sync::Mutex::new(self.mark.lock().unwrap().clone())),
                entries: copy(&self.entries),
                intents: copy(&self.intents),
            }
        }
    }

    impl Staging for MemStaging {
        fn stage(&self, seq: u64, bytes: &[u8]) -> Result<crate::store::Ticket> {
            self.entries.lock().unwrap().insert(seq, bytes.to_vec());
            Ok(crate::store::Ticket(seq))
        }
        fn flush_staged(&self, _: crate::store::Ticket) -> Result<()> {
            Ok(())
        }
        fn stage_intent(&self, id: u64, bytes: &[u8]) -> Result<()> {
            self.intents.lock().unwrap().insert(id, bytes.to_vec());
            Ok(())
        }
        fn drop_intents(&self, ids: &[u64]) -> Result<()> {
            let mut intents = self.intents.lock().unwrap();
            for id in ids {
                intents.remove(id);
            }
            Ok(())
        }
        fn settle_staged(&self, mark: &[u8], through: u64) -> Result<()> {
            *self.mark.lock().unwrap() = Some(mark.to_vec());
            self.entries.lock().unwrap().retain(|n, _| *n > through);
            Ok(())
        }
        fn staged(&self) -> Result<StagedEntries> {
            let all = |m: &std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>| {
                m.lock()
                    .unwrap()
                    .iter()
                    .map(|(n, b)| (*n, b.clone()))
                    .collect()
            };
            Ok(StagedEntries {
                mark: self.mark.lock().unwrap().clone(),
                entries: all(&self.entries),
                intents: all(&self.intents),
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

    /// The first record key and the outcome of every entry (no line unreadable).
    fn outcomes(data: &Path) -> Vec<(String, AuditOutcome)> {
        let r = read(data, None, None).unwrap();
        assert_eq!(r.unreadable_lines, Vec::<usize>::new());
        r.entries
            .into_iter()
            .map(|e| (e.records[0].clone(), e.outcome))
            .collect()
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
        log.append_after(&e, None, || Ok(()))
            .await
            .unwrap()
            .unwrap();
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
        // Calls that change the store: their cycles are staged.
        let e = AuditEntry::for_op(None, Operation::Link, AuditOutcome::Ok);
        let change = || log.append_after(&e, None, || Ok(()));
        change().await.unwrap().unwrap();
        tokio::time::sleep(SETTLE_EVERY + Duration::from_millis(100)).await;
        change().await.unwrap().unwrap(); // due: this cycle hands its mark to the settler
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

    /// Opens a staged trail, appends one entry naming `euid` for a call that changed the
    /// store and closes it (settled: the mark covers it). Returns the entry.
    async fn settled_after_one_entry(
        data: &Path,
        staging: &Arc<MemStaging>,
        euid: &str,
    ) -> AuditEntry {
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        let mut e = AuditEntry::for_op(None, Operation::GetPerson, AuditOutcome::Ok);
        e.euids.push(euid.into());
        // A cycle that changes the store, so that it is staged (cycle 1).
        log.append_after(&e, None, || Ok(()))
            .await
            .unwrap()
            .unwrap();
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
        let four = line("E4");
        staging.stage(3, &four).unwrap();
        append_to_file(data, &four);
        drop(AuditLog::open_staged(data, staging.clone()).unwrap());
        assert_eq!(euids_in(data), ["E1", "E2", "E3", "E4"]);

        // Cycles 4 and 5 staged, staged out of order; the file kept none.
        staging.stage(5, &line("E6")).unwrap();
        staging.stage(4, &line("E5")).unwrap();
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        assert_eq!(euids_in(data), ["E1", "E2", "E3", "E4", "E5", "E6"]);
        // Numbering goes on after the highest staged cycle (staged, or settled already).
        log.append_after(&e, None, || Ok(()))
            .await
            .unwrap()
            .unwrap();
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

    /// A copy of a data directory left by a crash (a new inode for the trail, the store's
    /// staged lines copied with it) is completed once, like the original: the trail is
    /// recognised by its content, not by its inode.
    #[tokio::test]
    async fn a_copied_trail_is_completed_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let (data, copy) = (dir.path().join("a"), dir.path().join("b"));
        let staging = Arc::new(MemStaging::default());
        settled_after_one_entry(&data, &staging, "E1").await;
        // Cycle 2 staged and all of it in the file; cycle 3 staged and half in the file.
        let (two, three) = ([line("E2"), line("E3")].concat(), line("E4"));
        staging.stage(2, &two).unwrap();
        staging.stage(3, &three).unwrap();
        append_to_file(&data, &two);
        append_to_file(&data, &three[..three.len() / 2]);
        std::fs::create_dir_all(copy.join("auth")).unwrap();
        std::fs::copy(audit_path(&data), audit_path(&copy)).unwrap();
        let copied = Arc::new(staging.deep_copy());
        drop(AuditLog::open_staged(&copy, copied.clone()).unwrap());
        assert_eq!(euids_in(&copy), ["E1", "E2", "E3", "E4"]);
        // Opened again (say by `empi audit` twice): nothing changes.
        drop(AuditLog::open_staged(&copy, copied).unwrap());
        assert_eq!(euids_in(&copy), ["E1", "E2", "E3", "E4"]);
        // The original completes the same way.
        drop(AuditLog::open_staged(&data, staging).unwrap());
        assert_eq!(euids_in(&data), ["E1", "E2", "E3", "E4"]);
    }

    /// An intent whose call never wrote its line becomes an interrupted line when the
    /// trail is next opened; an intent a staged cycle replaced does not.
    #[tokio::test]
    async fn orphaned_intents_become_interrupted_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let staging = Arc::new(MemStaging::default());
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        let mut done = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
        done.records.push("adt/1".into());
        let intent = log.intend(&done).unwrap();
        assert!(intent.is_some(), "a staged trail takes intents");
        log.append_after(&done, intent, || Ok(()))
            .await
            .unwrap()
            .unwrap();
        let mut cut = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
        cut.records.push("adt/2".into());
        // The call dies after its intent (a crash: the log is not asked again).
        std::mem::forget(log.intend(&cut).unwrap());
        drop(log);
        assert_eq!(staging.staged().unwrap().intents.len(), 1);
        drop(AuditLog::open_staged(data, staging.clone()).unwrap());
        drop(AuditLog::open_staged(data, staging.clone()).unwrap());
        assert_eq!(
            outcomes(data),
            [
                ("adt/1".to_string(), AuditOutcome::Ok),
                ("adt/2".to_string(), AuditOutcome::Interrupted)
            ]
        );
        assert!(staging.staged().unwrap().intents.is_empty());
    }

    /// While the file cannot be written (a full disk), calls fail, nothing of their lines
    /// stays in the file, their hooks do not run, and once a cycle succeeds again the
    /// intents of the failed calls are written as interrupted lines; nothing is doubled.
    #[tokio::test]
    async fn a_failed_write_is_cut_and_its_intents_written_when_the_trail_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let staging = Arc::new(MemStaging::default());
        let log = AuditLog::open_staged(data, staging.clone()).unwrap();
        let entry = |key: &str| {
            let mut e = AuditEntry::for_op(None, Operation::MatchOrCreate, AuditOutcome::Ok);
            e.records.push(key.into());
            e
        };
        log.append(&entry("read/0")).await.unwrap();
        let before = std::fs::metadata(audit_path(data)).unwrap().len();
        log.fail_next_writes(1);
        let failed = entry("adt/1");
        let intent = log.intend(&failed).unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook_ran = ran.clone();
        let answer = log
            .append_after(&failed, intent, move || {
                hook_ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(answer.is_err(), "the call is told the trail failed");
        assert!(!log.healthy());
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "no flush for it"
        );
        assert_eq!(std::fs::metadata(audit_path(data)).unwrap().len(), before);
        // The trail works again: the next cycle carries the failed call's intent.
        log.append(&entry("read/1")).await.unwrap();
        assert!(log.healthy());
        drop(log);
        drop(AuditLog::open_staged(data, staging).unwrap());
        assert_eq!(
            outcomes(data),
            [
                ("read/0".to_string(), AuditOutcome::Ok),
                ("adt/1".to_string(), AuditOutcome::Interrupted),
                ("read/1".to_string(), AuditOutcome::Ok),
            ]
        );
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
