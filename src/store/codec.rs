//! Key layout and value encoding shared by every store backend (see the table in
//! [`crate::store`]). It knows the values ([`super::types`]); they do not know it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::RecordKey;

use super::types::{Euid, RecordEntry, StoredRecord, TaskId};

/// The trees (keyspaces) of the store, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TreeId {
    Records = 0,
    Persons = 1,
    Tasks = 2,
    TasksOpen = 3,
    TasksByRecord = 4,
    NotDuplicate = 5,
    History = 6,
    Meta = 7,
    Changes = 8,
    Receipts = 9,
}

impl TreeId {
    /// Every tree, indexed by `as usize`.
    pub(crate) const ALL: [TreeId; 10] = [
        TreeId::Records,
        TreeId::Persons,
        TreeId::Tasks,
        TreeId::TasksOpen,
        TreeId::TasksByRecord,
        TreeId::NotDuplicate,
        TreeId::History,
        TreeId::Meta,
        TreeId::Changes,
        TreeId::Receipts,
    ];

    /// The on-disk tree name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TreeId::Records => "records",
            TreeId::Persons => "persons",
            TreeId::Tasks => "tasks",
            TreeId::TasksOpen => "tasks_open",
            TreeId::TasksByRecord => "tasks_by_record",
            TreeId::NotDuplicate => "not_duplicate",
            TreeId::History => "history",
            TreeId::Meta => "meta",
            TreeId::Changes => "changes",
            TreeId::Receipts => "receipts",
        }
    }
}

/// Keys of the `meta` tree.
pub(crate) mod meta {
    pub(crate) const FORMAT_VERSION: &[u8] = b"format_version";
    pub(crate) const NEXT_EUID: &[u8] = b"next_euid";
    pub(crate) const NEXT_TASK: &[u8] = b"next_task";
    pub(crate) const HISTORY_SEQ: &[u8] = b"history_seq";
    pub(crate) const RECORDS: &[u8] = b"count_records";
    pub(crate) const PERSONS: &[u8] = b"count_persons";
    pub(crate) const OPEN_TASKS: &[u8] = b"count_open_tasks";
    pub(crate) const MODEL_VERSION: &[u8] = b"model_version";
    pub(crate) const RECORDS_GENERATION: &[u8] = b"records_generation";
    /// The change feed's last sequence number (format 2 on).
    pub(crate) const FEED_SEQ: &[u8] = b"feed_seq";
    /// The change feed's first retained sequence number, once pruned (format 2 on).
    pub(crate) const FEED_FIRST: &[u8] = b"feed_first";
}

/// The on-disk format this code writes and reads. Format 1 had no change feed (no
/// `changes` tree, no `feed_*` counters); [`super::upgrade`] brings it to 2.
pub(crate) const FORMAT_VERSION: u64 = 2;

const SEP: u8 = 0;

/// Checks that a record key can be encoded unambiguously (no NUL, not empty).
pub(crate) fn check_record_key(key: &RecordKey) -> Result<()> {
    for (field, v) in [("source", &key.source), ("local_id", &key.local_id)] {
        if v.is_empty() {
            return Err(Error::invalid(field, "missing").for_record(key));
        }
        if v.as_bytes().contains(&SEP) {
            return Err(Error::invalid(field, "contains NUL").for_record(key));
        }
    }
    Ok(())
}

/// `source 0x00 local_id`: sorts by source, then local id.
pub(crate) fn record_key(key: &RecordKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.source.len() + 1 + key.local_id.len());
    k.extend_from_slice(key.source.as_bytes());
    k.push(SEP);
    k.extend_from_slice(key.local_id.as_bytes());
    k
}

/// Inverse of [`record_key`].
pub(crate) fn decode_record_key(k: &[u8]) -> Result<RecordKey> {
    let at = k
        .iter()
        .position(|&b| b == SEP)
        .ok_or_else(|| Error::Corrupt("record key without separator".into()))?;
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| Error::Corrupt("record key is not UTF-8".into()))
    };
    Ok(RecordKey {
        source: text(&k[..at])?,
        local_id: text(&k[at + 1..])?,
    })
}

/// The EUID's ASCII text.
pub(crate) fn euid_key(euid: &Euid) -> Vec<u8> {
    euid.as_str().as_bytes().to_vec()
}

/// Inverse of [`euid_key`].
pub(crate) fn decode_euid_key(k: &[u8]) -> Result<Euid> {
    let s = std::str::from_utf8(k).map_err(|_| Error::Corrupt("euid key is not UTF-8".into()))?;
    Euid::parse(s).map_err(|_| Error::Corrupt("malformed euid key".into()))
}

/// Task id as 8 big-endian bytes: sorts by id.
pub(crate) fn task_key(id: TaskId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Inverse of [`task_key`].
pub(crate) fn decode_task_key(k: &[u8]) -> Result<TaskId> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| Error::Corrupt("task key is not 8 bytes".into()))?;
    Ok(TaskId(u64::from_be_bytes(b)))
}

/// `record_key 0x00 task_id(8)`: the open tasks of one record are one prefix scan.
pub(crate) fn task_by_record_key(key: &RecordKey, id: TaskId) -> Vec<u8> {
    let mut k = task_by_record_prefix(key);
    k.extend_from_slice(&task_key(id));
    k
}

/// The prefix of [`task_by_record_key`] for one record (unambiguous: keys contain no NUL).
pub(crate) fn task_by_record_prefix(key: &RecordKey) -> Vec<u8> {
    let mut k = record_key(key);
    k.push(SEP);
    k
}

/// The day (since 1970-01-01, UTC) of a time, as receipts are filed.
pub(crate) fn receipt_day(at_ms: i64) -> u32 {
    u32::try_from(at_ms.div_euclid(86_400_000)).unwrap_or(0)
}

/// `day(4, big-endian) id`: a day's receipts are contiguous and older days sort first, so
/// pruning reads from the front.
pub(crate) fn receipt_key(day: u32, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.len());
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(id);
    k
}

/// The day a receipt key was filed under.
pub(crate) fn receipt_key_day(k: &[u8]) -> Result<u32> {
    k.get(..4)
        .and_then(|d| d.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| Error::Corrupt("receipt key shorter than its day".into()))
}

/// A receipt's value: the time kept (8 bytes, big-endian milliseconds), then the body.
pub(crate) fn encode_receipt(at_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&at_ms.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Inverse of [`encode_receipt`].
pub(crate) fn decode_receipt(v: &[u8]) -> Result<(i64, Vec<u8>)> {
    let at: [u8; 8] = v
        .get(..8)
        .and_then(|a| a.try_into().ok())
        .ok_or_else(|| Error::Corrupt("receipt value shorter than its time".into()))?;
    Ok((i64::from_be_bytes(at), v[8..].to_vec()))
}

/// `euid_a 0x00 euid_b`.
pub(crate) fn pair_key(a: &Euid, b: &Euid) -> Vec<u8> {
    let mut k = euid_prefix(a);
    k.extend_from_slice(b.as_str().as_bytes());
    k
}

/// `euid 0x00`: the prefix of one person's entries in `not_duplicate` and `history`.
pub(crate) fn euid_prefix(euid: &Euid) -> Vec<u8> {
    let mut k = euid_key(euid);
    k.push(SEP);
    k
}

/// `euid 0x00 seq(8, big-endian)`: one person's history in order.
pub(crate) fn history_key(euid: &Euid, seq: u64) -> Vec<u8> {
    let mut k = euid_prefix(euid);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a [`history_key`] into its person and sequence number.
pub(crate) fn decode_history_key(k: &[u8]) -> Result<(Euid, u64)> {
    let bad = || Error::Corrupt("malformed history key".into());
    if k.len() < 9 || k[k.len() - 9] != SEP {
        return Err(bad());
    }
    let euid = decode_euid_key(&k[..k.len() - 9])?;
    let seq: [u8; 8] = k[k.len() - 8..].try_into().map_err(|_| bad())?;
    Ok((euid, u64::from_be_bytes(seq)))
}

/// A change feed event's sequence number, 8 big-endian bytes: the feed in order.
pub(crate) fn change_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Inverse of [`change_key`].
pub(crate) fn decode_change_key(k: &[u8]) -> Result<u64> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| Error::Corrupt("change feed key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// Splits a [`pair_key`] into its two persons.
pub(crate) fn decode_pair_key(k: &[u8]) -> Result<(Euid, Euid)> {
    let at = k
        .iter()
        .position(|&b| b == SEP)
        .ok_or_else(|| Error::Corrupt("not-duplicate key without separator".into()))?;
    Ok((decode_euid_key(&k[..at])?, decode_euid_key(&k[at + 1..])?))
}

/// A counter value: 8 big-endian bytes.
pub(crate) fn encode_u64(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Inverse of [`encode_u64`]; a missing value reads as 0.
pub(crate) fn decode_u64(v: Option<&[u8]>) -> Result<u64> {
    match v {
        None => Ok(0),
        Some(b) => {
            let b: [u8; 8] = b
                .try_into()
                .map_err(|_| Error::Corrupt("counter is not 8 bytes".into()))?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

/// Serialises a value as JSON (see the module docs of [`crate::store`] for why JSON).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Storage(format!("encoding value: {e}")))
}

/// Deserialises a stored value; `what` names the kind of value for the error message.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    // serde_json's own message may quote the offending value (patient data): keep only the
    // error category and position.
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Corrupt(format!(
            "undecodable {what} ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

impl StoredRecord {
    /// Decodes a value from [`crate::store::Store::encoded_records`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an undecodable value (the message carries no data).
    pub fn decode(bytes: &[u8]) -> Result<StoredRecord> {
        decode("record", bytes)
    }
}

impl RecordEntry {
    /// Decodes a value from [`crate::store::Store::encoded_records`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an undecodable value (the message carries no data).
    pub fn decode(bytes: &[u8]) -> Result<RecordEntry> {
        decode("record", bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let k = RecordKey::new("adt", "MRN1");
        assert_eq!(decode_record_key(&record_key(&k)).unwrap(), k);
        // source sorts first, so "a"/"z" < "ab"/"a"
        assert!(record_key(&RecordKey::new("a", "z")) < record_key(&RecordKey::new("ab", "a")));
        assert!(check_record_key(&RecordKey::new("a\0b", "1")).is_err());
        assert!(check_record_key(&RecordKey::new("a", "")).is_err());
        let e = Euid::from_seq(5);
        let hk = history_key(&e, 300);
        assert_eq!(decode_history_key(&hk).unwrap(), (e.clone(), 300));
        assert!(history_key(&e, 2) < history_key(&e, 256));
        let f = Euid::from_seq(6);
        assert_eq!(decode_pair_key(&pair_key(&e, &f)).unwrap(), (e, f));
        assert!(task_key(TaskId(2)) < task_key(TaskId(256)));
        assert_eq!(decode_task_key(&task_key(TaskId(77))).unwrap(), TaskId(77));
        assert_eq!(decode_u64(Some(&encode_u64(9))).unwrap(), 9);
        assert_eq!(decode_u64(None).unwrap(), 0);
        assert!(decode_u64(Some(b"abc")).is_err());
    }

    #[test]
    fn undecodable_values_are_corrupt_and_name_no_content() {
        let e = decode::<u64>("record", b"\"Alice\"").unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)));
        assert!(!e.to_string().contains("Alice"), "{e}");
    }
}
