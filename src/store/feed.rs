//! The change feed: every change to identity as an event with a store-wide, gap-free
//! sequence number, written by the change set that makes the change (so in the same atomic
//! write and the same flush), and published to followers only once durable.
//!
//! A [`Plan`](super::Plan) adds one [`Change`] per logical change it plans
//! ([`Op::Publish`](super::Op::Publish)); the store numbers them from the `feed_seq`
//! counter as it applies the change set and keeps each under its number in the `changes`
//! tree. Numbers are dense: the feed holds every number from its first retained one
//! (`feed_first`, raised by pruning, [`Op::PruneChanges`](super::Op::PruneChanges)) to its
//! head, and nothing else.
//!
//! Events carry record keys, EUIDs and task ids only, never demographics: a consumer that
//! needs a person's data reads it with its own credentials.
//!
//! # Durable before published
//! A follower is shown events up to the *durable head* only (`FeedHead`): the highest
//! number applied before the latest successful flush began. An event a consumer has seen
//! therefore survives any crash, and a number is never shown twice with different
//! content (after a crash, numbers applied but never flushed may be given again, to other
//! events, but nobody saw them).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::record::RecordKey;

use super::types::{Euid, ResolutionAction, TaskId, UnixMillis};

/// One change to identity. Names persons by EUID and records by key only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new person, holding these records (one for a submission's new person).
    PersonCreated {
        /// The new person.
        euid: Euid,
        /// Its records.
        records: Vec<RecordKey>,
    },
    /// A new record joined an existing person (an automatic link).
    RecordLinked {
        /// The record.
        record: RecordKey,
        /// Its person.
        euid: Euid,
    },
    /// A stored record's content changed; its person did not.
    RecordUpdated {
        /// The record.
        record: RecordKey,
        /// Its person.
        euid: Euid,
    },
    /// A record moved from one existing person to another (a registrar's link, a review
    /// resolved by linking, a decisive resubmission).
    RecordMoved {
        /// The record.
        record: RecordKey,
        /// The person it left.
        from: Euid,
        /// The person it joined.
        to: Euid,
    },
    /// A record moved out of its person into a new person of its own (`to`).
    RecordUnlinked {
        /// The record.
        record: RecordKey,
        /// The person it left.
        from: Euid,
        /// The new person holding it.
        to: Euid,
    },
    /// A record was removed.
    RecordRemoved {
        /// The record.
        record: RecordKey,
        /// The person it belonged to.
        euid: Euid,
    },
    /// A person lost its last record; its EUID stays readable.
    PersonRetired {
        /// The person.
        euid: Euid,
    },
    /// Person `merged` was folded into `survivor`, with its records.
    PersonsMerged {
        /// The person folded away; its EUID now stands for the survivor.
        merged: Euid,
        /// The person that holds the records now.
        survivor: Euid,
        /// The records moved.
        records: Vec<RecordKey>,
    },
    /// Records were moved out of `euid` into the new person `new_euid`.
    PersonSplit {
        /// The person split.
        euid: Euid,
        /// The new person.
        new_euid: Euid,
        /// The records moved to it.
        records: Vec<RecordKey>,
    },
    /// A review task opened about a record.
    ReviewOpened {
        /// The task.
        task: TaskId,
        /// The record under review.
        record: RecordKey,
        /// The record's person.
        euid: Euid,
        /// The candidate persons, best first.
        candidates: Vec<Euid>,
    },
    /// A review task was resolved (by a registrar, or superseded by the system).
    ReviewResolved {
        /// The task.
        task: TaskId,
        /// The record it was about.
        record: RecordKey,
        /// The record's person when it was resolved; `None` when the record was removed.
        euid: Option<Euid>,
        /// How.
        resolution: ResolutionAction,
    },
    /// Two persons were asserted to be different people.
    NotDuplicateAsserted {
        /// One person.
        a: Euid,
        /// The other.
        b: Euid,
    },
    /// An assertion that two persons are different people was withdrawn.
    NotDuplicateRetracted {
        /// One person.
        a: Euid,
        /// The other.
        b: Euid,
    },
}

impl Change {
    /// The kind's name, as stored (`person_created`, `persons_merged`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::PersonCreated { .. } => "person_created",
            Change::RecordLinked { .. } => "record_linked",
            Change::RecordUpdated { .. } => "record_updated",
            Change::RecordMoved { .. } => "record_moved",
            Change::RecordUnlinked { .. } => "record_unlinked",
            Change::RecordRemoved { .. } => "record_removed",
            Change::PersonRetired { .. } => "person_retired",
            Change::PersonsMerged { .. } => "persons_merged",
            Change::PersonSplit { .. } => "person_split",
            Change::ReviewOpened { .. } => "review_opened",
            Change::ReviewResolved { .. } => "review_resolved",
            Change::NotDuplicateAsserted { .. } => "not_duplicate_asserted",
            Change::NotDuplicateRetracted { .. } => "not_duplicate_retracted",
        }
    }
}

/// A [`Change`] as the feed keeps it: numbered and stamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Store-wide, gap-free sequence number, assigned when the change set is applied
    /// (ignored on input).
    pub seq: u64,
    /// When the change was made.
    pub at: UnixMillis,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// Where the feed stands: what a consumer may ask to resume after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedBounds {
    /// The oldest event still kept (`head + 1` when none is).
    pub first: u64,
    /// The newest durable event (0 before the first).
    pub head: u64,
}

impl FeedBounds {
    /// Whether a consumer that has seen every event up to `after` can resume: nothing it
    /// has not seen was pruned, and it has not seen more than the store holds (a store
    /// restored from an older backup).
    pub fn resumable(&self, after: u64) -> bool {
        after + 1 >= self.first && after <= self.head
    }
}

/// The feed's heads: the highest number applied, and the highest durable (published to
/// followers through a watch channel).
#[derive(Debug)]
pub(crate) struct FeedHead {
    applied: AtomicU64,
    durable: watch::Sender<u64>,
}

impl FeedHead {
    /// Heads at `head`, everything durable (a store just opened and flushed).
    pub(crate) fn new(head: u64) -> Self {
        FeedHead {
            applied: AtomicU64::new(head),
            durable: watch::Sender::new(head),
        }
    }

    /// Notes that events up to `seq` are applied (change sets apply one at a time, but
    /// their callers may note them in another order).
    pub(crate) fn applied(&self, seq: u64) {
        self.applied.fetch_max(seq, Ordering::AcqRel);
    }

    /// The highest number applied: read before a flush starts, it is covered by the flush.
    pub(crate) fn applied_head(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Publishes `seq` as durable (a flush that began after it was applied succeeded).
    pub(crate) fn durable(&self, seq: u64) {
        self.durable.send_if_modified(|d| {
            let raise = seq > *d;
            if raise {
                *d = seq;
            }
            raise
        });
    }

    /// The highest durable number.
    pub(crate) fn durable_head(&self) -> u64 {
        *self.durable.borrow()
    }

    /// A receiver that sees the durable head change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_with_their_kind() {
        let e = ChangeEvent {
            seq: 7,
            at: UnixMillis(1000),
            change: Change::PersonsMerged {
                merged: Euid::from_seq(2),
                survivor: Euid::from_seq(1),
                records: vec![RecordKey::new("adt", "1")],
            },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "persons_merged");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["survivor"], "E0000000001");
        let back: ChangeEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.change.kind(), "persons_merged");
    }

    #[test]
    fn resumable_positions_lie_between_the_pruned_and_the_head() {
        let b = FeedBounds { first: 5, head: 9 };
        assert!(!b.resumable(3), "event 4 was pruned");
        assert!(b.resumable(4));
        assert!(b.resumable(9));
        assert!(!b.resumable(10), "ahead of the store");
        let fresh = FeedBounds { first: 1, head: 0 };
        assert!(fresh.resumable(0));
    }

    #[test]
    fn the_durable_head_only_rises_and_wakes_followers() {
        let head = FeedHead::new(3);
        let mut rx = head.subscribe();
        head.applied(5);
        head.applied(4);
        assert_eq!(head.applied_head(), 5);
        assert_eq!(head.durable_head(), 3);
        head.durable(5);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 5);
        head.durable(4);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(head.durable_head(), 5);
    }
}
