//! The values the store keeps: EUIDs, stored records and their links, persons, review tasks,
//! not-duplicate assertions, history entries, and the shapes of queries and reports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{Record, RecordKey};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The current wall-clock time (0 if the clock is before 1970).
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        UnixMillis(ms)
    }
}

/// A front door's note that it applied a message, kept in the same change set as the
/// message's change: a replay of the message, even after a restart, finds it and is answered
/// as before instead of being applied twice. Filed by day and kept at least a day
/// ([`crate::store::Store::prune_receipts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message's identity as its door knows it (HL7 v2: the sender and MSH-10).
    pub id: Vec<u8>,
    /// When it was kept.
    pub at: UnixMillis,
    /// What the door needs to answer a replay (its digest of the message and what it
    /// answered); opaque to the store, never patient data.
    pub body: Vec<u8>,
}

/// An enterprise person id: opaque to clients, never reused, never re-pointed silently.
///
/// Format: `E` followed by the allocation sequence number in base 36 (`0-9A-Z`), zero-padded
/// to 10 digits, e.g. `E000000001Z`. The sequence comes from a persistent counter
/// ([`crate::store::Store::allocate_euid`]), so an EUID is never handed out twice even if
/// the write that was to use it failed. Zero padding makes byte order equal allocation
/// order (36^10 ≈ 3.6·10^15 ids before the width would grow).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Euid(String);

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Euid {
    /// Leading character of every EUID.
    pub const PREFIX: char = 'E';
    /// Minimum number of base-36 digits after the prefix.
    pub const DIGITS: usize = 10;

    /// The EUID for allocation sequence number `seq`.
    pub fn from_seq(seq: u64) -> Euid {
        let mut digits = Vec::with_capacity(16);
        let mut n = seq;
        loop {
            digits.push(BASE36[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        while digits.len() < Self::DIGITS {
            digits.push(b'0');
        }
        digits.reverse();
        let mut s = String::with_capacity(1 + digits.len());
        s.push(Self::PREFIX);
        // BASE36 is ASCII, so every byte is a char.
        s.extend(digits.into_iter().map(char::from));
        Euid(s)
    }

    /// Parses and checks an EUID's text form.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `euid` when the text is not an EUID.
    pub fn parse(s: &str) -> Result<Euid> {
        Self::seq_of(s)?;
        Ok(Euid(s.to_string()))
    }

    fn seq_of(s: &str) -> Result<u64> {
        let bad = || Error::invalid("euid", "expected E followed by 10 or more base-36 digits");
        let digits = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        if digits.len() < Self::DIGITS || digits.len() > 13 {
            return Err(bad());
        }
        let mut n: u64 = 0;
        for b in digits.bytes() {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'A'..=b'Z' => b - b'A' + 10,
                _ => return Err(bad()),
            };
            n = n
                .checked_mul(36)
                .and_then(|n| n.checked_add(d as u64))
                .ok_or_else(bad)?;
        }
        if digits.len() > Self::DIGITS && digits.starts_with('0') {
            return Err(bad()); // only the canonical (shortest padded) form is an EUID
        }
        Ok(n)
    }

    /// The EUID's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The allocation sequence number encoded in the EUID.
    pub fn seq(&self) -> u64 {
        // Every Euid value was built by from_seq or checked by parse.
        Self::seq_of(&self.0).unwrap_or(0)
    }
}

impl fmt::Display for Euid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Euid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Euid::parse(s)
    }
}

impl TryFrom<String> for Euid {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Euid::seq_of(&s)?;
        Ok(Euid(s))
    }
}

impl From<Euid> for String {
    fn from(e: Euid) -> String {
        e.0
    }
}

/// A review task id, allocated from a persistent counter; shown as `T` + 8+ decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl TaskId {
    /// Parses the text form (`T00000042`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `task_id`.
    pub fn parse(s: &str) -> Result<TaskId> {
        let bad = || Error::invalid("task_id", "expected T followed by digits");
        let digits = s.strip_prefix('T').ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map(TaskId).map_err(|_| bad())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{:08}", self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskId::parse(s)
    }
}

/// How a record came to belong to its person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkMethod {
    /// The record created the person.
    Created,
    /// Linked automatically at this match weight.
    Auto {
        /// The match weight of the decision.
        score: f64,
    },
    /// Linked by a registrar (link, unlink, split, review resolution).
    Registrar,
    /// Arrived through a merge of persons.
    Merge,
}

/// A record's current link: how, when, by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// How the link was made.
    pub method: LinkMethod,
    /// When.
    pub at: UnixMillis,
    /// Who (a user, or the submitting actor for automatic links).
    pub actor: String,
}

/// A JSON value the store keeps without looking inside it. It stays JSON text in memory,
/// so reading a record never builds a JSON tree for it (records are read several times per
/// write); on disk it is the same inline JSON a plain value would be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpaqueJson(Box<serde_json::value::RawValue>);

impl PartialEq for OpaqueJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl OpaqueJson {
    /// Encodes a value.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the value cannot be encoded as JSON.
    pub fn encode<T: Serialize>(value: &T) -> Result<Self> {
        serde_json::value::to_raw_value(value)
            .map(OpaqueJson)
            .map_err(|e| Error::Corrupt(format!("encoding an opaque value: {e}")))
    }

    /// Decodes the value, `None` when it is not a `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.0.get()).ok()
    }
}

/// A source record as stored: the record, its person and its link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The record as last submitted.
    pub record: Record,
    /// The active person it belongs to.
    pub euid: Euid,
    /// How it was linked to that person.
    pub link: LinkInfo,
    /// When the record's content was last written.
    pub updated_at: UnixMillis,
    /// Opaque to the store: the answer the service gave when this content was last
    /// submitted, so an identical resubmission can return it without deciding again
    /// ([`crate::store::Plan::set_answer`]). Must not be logged.
    #[serde(rename = "outcome", default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<OpaqueJson>,
    /// Optimistic-concurrency version: 0 for a value not yet stored; the store bumps it on
    /// every write (see [`crate::store::ChangeSet`]).
    pub version: u64,
}

impl StoredRecord {
    /// The record's key.
    pub fn key(&self) -> RecordKey {
        self.record.key()
    }
}

/// The part of a stored record an in-memory index needs: its content and its person.
/// Decoding skips the rest (link, outcome), which makes rebuilding an index from
/// [`crate::store::Store::encoded_records`] several times cheaper than full decoding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordEntry {
    /// The record as last submitted.
    pub record: Record,
    /// The person it belongs to.
    pub euid: Euid,
}

/// A person's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Holds one or more records.
    Active,
    /// Folded into another person, its survivor. Holds no records.
    MergedInto(Euid),
    /// Lost its last record (removed or moved away). Holds no records; the EUID stays
    /// resolvable and is never reused.
    Retired,
}

/// A person (EUID) and its member records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The person's id.
    pub euid: Euid,
    /// Lifecycle state.
    pub status: PersonStatus,
    /// When the person was created.
    pub created_at: UnixMillis,
    /// Keys of the member records, in the order they joined. Empty unless active.
    pub members: Vec<RecordKey>,
    /// Optimistic-concurrency version (see [`StoredRecord::version`]).
    pub version: u64,
}

impl Person {
    /// True when the person is [`PersonStatus::Active`].
    pub fn is_active(&self) -> bool {
        self.status == PersonStatus::Active
    }
}

/// The person at the end of an EUID's merge chain (the EUID's own person when it was never
/// merged), and the chain followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    /// The person at the end of the merge chain.
    pub person: Person,
    /// The chain followed: the requested EUID first, the survivor last. Length 1 when the
    /// requested person was not merged.
    pub path: Vec<Euid>,
}

impl Survivor {
    /// True when the requested EUID was merged away and `person` is its survivor.
    pub fn was_merged(&self) -> bool {
        self.path.len() > 1
    }
}

/// A candidate person recorded in a review task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCandidate {
    /// The candidate person (as it was when the task was opened; follow merges to its survivor).
    pub euid: Euid,
    /// Match weight.
    pub score: f64,
    /// Match probability.
    pub probability: f64,
}

/// How a review task is resolved: what a registrar asks for, and what the task records
/// once resolved. The stored names (`linked`, `kept_separate`, `merged`) predate these
/// variant names and stay as they are on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolutionAction {
    /// Link the record to this candidate person (after a merge: its survivor).
    #[serde(rename = "linked")]
    Link {
        /// The person chosen.
        euid: Euid,
    },
    /// Keep the record apart from the candidates, asserting it is not a duplicate of any.
    #[serde(rename = "kept_separate")]
    KeepSeparate,
    /// Merge the record's person into this candidate person.
    #[serde(rename = "merged")]
    Merge {
        /// The survivor chosen.
        into: Euid,
    },
    /// Closed by the system: the record was removed or changed. Never requested.
    Superseded,
}

/// A review task's resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// What was decided.
    #[serde(rename = "outcome")]
    pub action: ResolutionAction,
    /// When.
    pub at: UnixMillis,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// A review task's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for a registrar.
    Open,
    /// Decided.
    Resolved(Resolution),
}

/// An uncertain decision waiting for a registrar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewTask {
    /// The task id.
    pub id: TaskId,
    /// Open or resolved.
    pub status: TaskStatus,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// The record under review.
    pub record: RecordKey,
    /// Candidate persons, best first.
    pub candidates: Vec<TaskCandidate>,
    /// Opaque to the store: whatever the service wants to show the registrar (e.g. the
    /// per-comparison explanation of each candidate). Must not be logged.
    pub explanation: serde_json::Value,
    /// Optimistic-concurrency version (see [`StoredRecord::version`]).
    pub version: u64,
}

impl ReviewTask {
    /// True while the task is open.
    pub fn is_open(&self) -> bool {
        self.status == TaskStatus::Open
    }
}

/// A registrar's assertion that two persons are different people.
///
/// Stored under both `(a, b)` and `(b, a)` so either person finds it with one prefix scan.
/// When a person is merged, its assertions move to the survivor
/// ([`crate::store::Plan::merge_persons`]), so stored assertions name unmerged persons;
/// lookups follow merged EUIDs to their survivors anyway. A split-off person starts with none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotDuplicate {
    /// One person.
    pub a: Euid,
    /// The other.
    pub b: Euid,
    /// When asserted.
    pub at: UnixMillis,
    /// By whom.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    /// The person was created.
    PersonCreated,
    /// A record joined the person (`euids` holds the person it came from, if any).
    RecordLinked,
    /// A member record's content changed.
    RecordUpdated,
    /// A record left for another person (`euids[0]`).
    RecordUnlinked,
    /// A record was removed.
    RecordRemoved,
    /// The person was merged into `euids[0]`.
    MergedInto,
    /// Person `euids[0]` was merged into this one.
    MergeAbsorbed,
    /// Records were split off into new person `euids[0]`.
    Split,
    /// The person lost its last record.
    Retired,
    /// Asserted a different person from `euids[0]`.
    NotDuplicateAsserted,
    /// The assertion against `euids[0]` was withdrawn.
    NotDuplicateRetracted,
    /// A review task about this person was opened.
    ReviewOpened,
    /// A review task about this person was resolved.
    ReviewResolved,
}

/// One immutable entry in a person's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Store-wide sequence number, assigned by the store when the entry is written
    /// (ignored on input); increases with commit order.
    pub seq: u64,
    /// The person whose history this is.
    pub euid: Euid,
    /// When.
    pub at: UnixMillis,
    /// Who.
    pub actor: String,
    /// What happened.
    pub action: HistoryAction,
    /// Why, as given.
    pub reason: String,
    /// Records involved.
    pub records: Vec<RecordKey>,
    /// Other persons involved.
    pub euids: Vec<Euid>,
    /// The review task involved, if any.
    pub task: Option<TaskId>,
}

/// Counts kept by the store, updated in the same transaction as the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stored records.
    pub records: u64,
    /// Active persons.
    pub persons: u64,
    /// Open review tasks.
    pub open_tasks: u64,
    /// The matching model version last recorded, if any.
    pub model_version: Option<String>,
}

/// Which tasks [`crate::store::Store::list_tasks`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// `Some(true)`: open only; `Some(false)`: resolved only; `None`: any.
    pub open: Option<bool>,
    /// Only tasks created at or before this time (a minimum age).
    pub created_at_or_before: Option<UnixMillis>,
    /// Only tasks created at or after this time (a maximum age).
    pub created_at_or_after: Option<UnixMillis>,
    /// Most tasks to return; 0 means [`TaskQuery::DEFAULT_PAGE_SIZE`]; capped at
    /// [`TaskQuery::MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// Continue after this task (the previous page's [`TaskPage::next`]).
    pub after: Option<TaskId>,
}

impl TaskQuery {
    /// Page size used when none is given.
    pub const DEFAULT_PAGE_SIZE: usize = 50;
    /// Largest page size served.
    pub const MAX_PAGE_SIZE: usize = 1000;

    /// The effective page size.
    pub fn effective_page_size(&self) -> usize {
        match self.page_size {
            0 => Self::DEFAULT_PAGE_SIZE,
            n => n.min(Self::MAX_PAGE_SIZE),
        }
    }

    /// True when `task` passes the status and age filters.
    pub fn matches(&self, task: &ReviewTask) -> bool {
        if let Some(open) = self.open {
            if task.is_open() != open {
                return false;
            }
        }
        if let Some(t) = self.created_at_or_before {
            if task.created_at > t {
                return false;
            }
        }
        if let Some(t) = self.created_at_or_after {
            if task.created_at < t {
                return false;
            }
        }
        true
    }
}

/// One page of review tasks, in id (creation) order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<ReviewTask>,
    /// Token for the next page ([`TaskQuery::after`]); `None` when there are no more.
    pub next: Option<TaskId>,
}

/// The result of [`crate::store::Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records seen.
    pub records: u64,
    /// Active persons seen.
    pub active_persons: u64,
    /// Merged persons seen.
    pub merged_persons: u64,
    /// Retired persons seen.
    pub retired_persons: u64,
    /// Review tasks seen.
    pub tasks: u64,
    /// Open review tasks seen.
    pub open_tasks: u64,
    /// Not-duplicate assertions seen (each pair once).
    pub not_duplicate_pairs: u64,
    /// History entries seen.
    pub history_entries: u64,
    /// Change feed events kept.
    pub feed_events: u64,
    /// Invariant violations found, by record key / EUID / task id (never patient data);
    /// at most [`CheckReport::MAX_PROBLEMS`] are kept.
    pub problems: Vec<String>,
    /// Violations found beyond those kept in `problems`.
    pub more_problems: u64,
}

impl CheckReport {
    /// Most problems kept in the report.
    pub const MAX_PROBLEMS: usize = 1000;

    /// True when no invariant is violated.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }

    /// Records a violation.
    pub fn problem(&mut self, msg: impl Into<String>) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(msg.into());
        } else {
            self.more_problems += 1;
        }
    }
}

/// Marks a point in the store's write order; a write is durable once its ticket is flushed
/// ([`crate::store::Store::wait_durable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(pub(crate) u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euid_format_round_trips_and_sorts() {
        assert_eq!(Euid::from_seq(1).as_str(), "E0000000001");
        assert_eq!(Euid::from_seq(35).as_str(), "E000000000Z");
        assert_eq!(Euid::from_seq(36).as_str(), "E0000000010");
        for n in [
            0,
            1,
            35,
            36,
            1295,
            1296,
            123_456_789,
            36u64.pow(10) - 1,
            36u64.pow(10),
        ] {
            let e = Euid::from_seq(n);
            assert_eq!(Euid::parse(e.as_str()).unwrap(), e);
            assert_eq!(e.seq(), n);
        }
        assert!(Euid::from_seq(9) < Euid::from_seq(10));
        assert!(Euid::from_seq(35) < Euid::from_seq(36));
        for bad in [
            "",
            "E",
            "X0000000001",
            "E000000001",
            "e0000000001",
            "E00000000a1",
            "E00000000001",
        ] {
            assert!(Euid::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Euid::from_seq(7)).unwrap();
        assert_eq!(json, "\"E0000000007\"");
        assert!(serde_json::from_str::<Euid>("\"E1\"").is_err());
    }

    #[test]
    fn task_id_format() {
        assert_eq!(TaskId(42).to_string(), "T00000042");
        assert_eq!(TaskId::parse("T00000042").unwrap(), TaskId(42));
        assert_eq!(TaskId::parse("T123456789").unwrap(), TaskId(123_456_789));
        assert!(TaskId::parse("42").is_err());
        assert!(TaskId::parse("T").is_err());
        assert!(TaskId::parse("T-1").is_err());
    }

    #[test]
    fn task_query_filters() {
        let task = ReviewTask {
            id: TaskId(1),
            status: TaskStatus::Open,
            created_at: UnixMillis(1000),
            record: RecordKey::new("a", "1"),
            candidates: vec![],
            explanation: serde_json::Value::Null,
            version: 1,
        };
        assert!(TaskQuery::default().matches(&task));
        assert!(TaskQuery {
            open: Some(true),
            ..Default::default()
        }
        .matches(&task));
        assert!(!TaskQuery {
            open: Some(false),
            ..Default::default()
        }
        .matches(&task));
        let q = TaskQuery {
            created_at_or_before: Some(UnixMillis(999)),
            ..Default::default()
        };
        assert!(!q.matches(&task));
        let q = TaskQuery {
            created_at_or_after: Some(UnixMillis(1000)),
            ..Default::default()
        };
        assert!(q.matches(&task));
        assert_eq!(TaskQuery::default().effective_page_size(), 50);
        assert_eq!(
            TaskQuery {
                page_size: 5000,
                ..Default::default()
            }
            .effective_page_size(),
            1000
        );
    }
}
