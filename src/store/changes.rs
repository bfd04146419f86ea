//! [`ChangeSet`]: the unit of writing — a list of puts and deletes applied atomically, with
//! optimistic version checks, in one transaction across all trees.

use crate::record::RecordKey;

use super::feed::ChangeEvent;
use super::types::{Euid, HistoryEntry, NotDuplicate, Person, Receipt, ReviewTask, StoredRecord};

/// One write inside a [`ChangeSet`].
///
/// Puts of records, persons and tasks are compare-and-swap: the value's `version` must equal
/// the stored version (0 when the entity must not exist yet); the store writes it with
/// `version + 1`. A stale version fails the whole change set with
/// [`crate::Error::Stale`], so read-modify-write cycles never silently overwrite a
/// concurrent change: re-read and retry.
// Change sets are short-lived and small; boxing the record would only make them clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Creates or replaces a record (compare-and-swap on its version).
    PutRecord(StoredRecord),
    /// Deletes a record stored at `version`.
    DeleteRecord {
        /// The record.
        key: RecordKey,
        /// The version read.
        version: u64,
    },
    /// Creates or replaces a person (compare-and-swap). Persons are never deleted.
    PutPerson(Person),
    /// Creates or replaces a review task (compare-and-swap). Tasks are never deleted.
    PutTask(ReviewTask),
    /// Writes a not-duplicate assertion under both `(a, b)` and `(b, a)`.
    PutNotDuplicate(NotDuplicate),
    /// Deletes the assertion between two persons (both directions), if any.
    DeleteNotDuplicate {
        /// One person.
        a: Euid,
        /// The other.
        b: Euid,
    },
    /// Appends a history entry; the store assigns its `seq`. Entries are never changed.
    AppendHistory(HistoryEntry),
    /// Records the matching model version in use.
    SetModelVersion(String),
    /// Appends an event to the change feed; the store assigns its `seq`
    /// ([`crate::store::feed`]).
    Publish(ChangeEvent),
    /// Drops the change feed's events up to `through` (retention), oldest first: the
    /// feed then starts at `through + 1`. Never beyond the head.
    PruneChanges {
        /// The last event dropped.
        through: u64,
    },
    /// Keeps a front door's receipt for the message this change set applies, so that a
    /// replay of the message is answered from it instead of being applied again
    /// ([`crate::store::Store::receipt`]).
    PutReceipt(Receipt),
}

/// Writes applied atomically: all or nothing, in one transaction across every tree they
/// touch, with counters and indexes updated in the same transaction.
///
/// Rules checked by the store before anything is written (violations fail the whole set):
/// - each record, person and task appears at most once;
/// - versions match (see [`Op`]);
/// - afterwards, every touched record belongs to an active person that lists it, every
///   touched person's member list matches its records, merged and retired persons hold no
///   records, a merge target exists, open tasks reference stored records and known persons,
///   assertions and history entries reference known persons.
///
/// Build change sets with [`crate::store::Plan`], which reads current state and keeps
/// these rules; building them by hand is for tests and tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    ops: Vec<Op>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        ChangeSet::default()
    }

    /// Adds a write.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Adds all writes of another change set.
    pub fn extend(&mut self, other: ChangeSet) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<Op>> for ChangeSet {
    fn from(ops: Vec<Op>) -> Self {
        ChangeSet { ops }
    }
}

impl FromIterator<Op> for ChangeSet {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> Self {
        ChangeSet {
            ops: iter.into_iter().collect(),
        }
    }
}
