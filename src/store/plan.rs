//! [`Plan`]: builds a [`ChangeSet`] for the operations the service performs (create, link,
//! move, merge, split, remove, review, not-duplicate), reading current state from the store
//! and keeping every invariant, with history entries written alongside.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::record::{Record, RecordKey};

use super::changes::{ChangeSet, Op};
use super::feed::{Change, ChangeEvent};
use super::types::{
    Euid, HistoryAction, HistoryEntry, LinkInfo, LinkMethod, NotDuplicate, Person, PersonStatus,
    Resolution, ResolutionAction, ReviewTask, StoredRecord, TaskCandidate, TaskId, TaskStatus,
    UnixMillis,
};
use super::Store;

/// Who does a change, why, and when; stamped on links, resolutions and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Who asked (user or interface).
    pub actor: String,
    /// Why, as given (may be empty).
    pub reason: String,
    /// When.
    pub at: UnixMillis,
}

impl Stamp {
    /// A stamp for now.
    pub fn now(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Stamp {
            actor: actor.into(),
            reason: reason.into(),
            at: UnixMillis::now(),
        }
    }
}

/// One entity as the plan sees it: its version when read, its value now.
struct Tracked<T> {
    read_version: u64,
    current: Option<T>,
    touched: bool,
}

/// The entity under `key` in `map`, read from the store with `read` the first time.
fn tracked<'m, K: Ord + Clone, T>(
    map: &'m mut BTreeMap<K, Tracked<T>>,
    key: &K,
    read: impl FnOnce() -> Result<Option<T>>,
    version: fn(&T) -> u64,
) -> Result<&'m mut Tracked<T>> {
    Ok(match map.entry(key.clone()) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => {
            let current = read()?;
            v.insert(Tracked {
                read_version: current.as_ref().map_or(0, version),
                current,
                touched: false,
            })
        }
    })
}

/// A record moved from one person to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The person it left.
    pub from: Euid,
    /// The person it joined.
    pub to: Euid,
    /// True when `from` had no records left and was retired.
    pub from_retired: bool,
}

/// A record removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The person it belonged to.
    pub euid: Euid,
    /// True when that person had no records left and was retired.
    pub retired: bool,
    /// Open review tasks about the record, now resolved as superseded.
    pub superseded_tasks: Vec<TaskId>,
}

/// Builds one atomic [`ChangeSet`] from high-level operations.
///
/// Reads go to the store once per entity and are cached, so operations compose: later steps
/// see earlier ones (e.g. a record moved twice, or a merge after a link). Each written entity
/// carries the version first read, so [`Store::apply`] fails with [`Error::Stale`] if
/// anything changed meanwhile; the caller then builds a fresh plan and retries.
///
/// Ids (EUIDs, task ids) are allocated from the store's persistent counters while planning;
/// a plan that is never committed leaves a gap, never a reuse.
///
/// # Example
/// ```
/// use empi::record::Record;
/// use empi::store::{Stamp, LinkMethod, MemoryStore, Plan, Store};
///
/// # fn main() -> empi::Result<()> {
/// let store = MemoryStore::new();
/// let record = Record {
///     source: "adt".into(),
///     local_id: "1".into(),
///     family_name: Some("Garcia".into()),
///     ..Default::default()
/// };
/// let mut plan = Plan::new(&store, Stamp::now("loader", ""));
/// let euid = plan.create_person(record.clone(), LinkMethod::Created)?;
/// store.commit_sync(&plan.finish())?;
/// assert_eq!(store.get_record(&record.key())?.unwrap().euid, euid);
/// assert!(store.check()?.is_ok());
/// # Ok(()) }
/// ```
pub struct Plan<'s, S: Store + ?Sized> {
    store: &'s S,
    stamp: Stamp,
    records: BTreeMap<RecordKey, Tracked<StoredRecord>>,
    persons: BTreeMap<Euid, Tracked<Person>>,
    tasks: BTreeMap<TaskId, Tracked<ReviewTask>>,
    /// Assertions, history, change feed events and model version, in order.
    extra: Vec<Op>,
}

impl<'s, S: Store + ?Sized> Plan<'s, S> {
    /// An empty plan over `store`, stamping changes with `stamp`.
    pub fn new(store: &'s S, stamp: Stamp) -> Self {
        Plan {
            store,
            stamp,
            records: BTreeMap::new(),
            persons: BTreeMap::new(),
            tasks: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    /// The stamp in use.
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// True when nothing has been planned.
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
            && !self.records.values().any(|s| s.touched)
            && !self.persons.values().any(|s| s.touched)
            && !self.tasks.values().any(|s| s.touched)
    }

    /// The change set: one write per touched entity, carrying the version first read, then
    /// assertions, history entries and model version in the order planned.
    pub fn finish(self) -> ChangeSet {
        let mut ops = Vec::new();
        for (key, slot) in self.records {
            match (slot.touched, slot.current) {
                (false, _) => {}
                (true, Some(mut r)) => {
                    r.version = slot.read_version;
                    ops.push(Op::PutRecord(r));
                }
                (true, None) if slot.read_version > 0 => ops.push(Op::DeleteRecord {
                    key,
                    version: slot.read_version,
                }),
                (true, None) => {}
            }
        }
        for (_, slot) in self.persons {
            if let (true, Some(mut p)) = (slot.touched, slot.current) {
                p.version = slot.read_version;
                ops.push(Op::PutPerson(p));
            }
        }
        for (_, slot) in self.tasks {
            if let (true, Some(mut t)) = (slot.touched, slot.current) {
                t.version = slot.read_version;
                ops.push(Op::PutTask(t));
            }
        }
        ops.extend(self.extra);
        ChangeSet::from(ops)
    }

    // ---- reading through the plan ------------------------------------------------------

    fn record_slot(&mut self, key: &RecordKey) -> Result<&mut Tracked<StoredRecord>> {
        let store = self.store;
        tracked(
            &mut self.records,
            key,
            || store.get_record(key),
            |r| r.version,
        )
    }

    fn person_slot(&mut self, euid: &Euid) -> Result<&mut Tracked<Person>> {
        let store = self.store;
        tracked(
            &mut self.persons,
            euid,
            || store.get_person(euid),
            |p| p.version,
        )
    }

    fn task_slot(&mut self, id: TaskId) -> Result<&mut Tracked<ReviewTask>> {
        let store = self.store;
        tracked(&mut self.tasks, &id, || store.get_task(id), |t| t.version)
    }

    /// The record as this plan would leave it.
    ///
    /// # Errors
    /// Store read errors.
    pub fn record(&mut self, key: &RecordKey) -> Result<Option<&StoredRecord>> {
        Ok(self.record_slot(key)?.current.as_ref())
    }

    /// The person as this plan would leave it (no merge resolution).
    ///
    /// # Errors
    /// Store read errors.
    pub fn person(&mut self, euid: &Euid) -> Result<Option<&Person>> {
        Ok(self.person_slot(euid)?.current.as_ref())
    }

    /// The task as this plan would leave it.
    ///
    /// # Errors
    /// Store read errors.
    pub fn task(&mut self, id: TaskId) -> Result<Option<&ReviewTask>> {
        Ok(self.task_slot(id)?.current.as_ref())
    }

    /// A review task that is still open, to be resolved (a copy).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when the task is already resolved.
    pub fn task_to_resolve(&mut self, id: TaskId) -> Result<ReviewTask> {
        let task = self
            .task(id)?
            .cloned()
            .ok_or_else(|| Error::not_found("review task", id))?;
        match &task.status {
            TaskStatus::Open => Ok(task),
            // Who and when, so the second of two registrars on one task knows what happened
            // (an actor is a credential's name, never patient data).
            TaskStatus::Resolved(r) => Err(Error::Conflict(format!(
                "review task {id} is already resolved by {} at {}",
                if r.action == ResolutionAction::Superseded {
                    "the system (its record changed)"
                } else {
                    r.actor.as_str()
                },
                crate::time::format_rfc3339(r.at.0)
            ))),
        }
    }

    fn existing_record(&mut self, key: &RecordKey) -> Result<StoredRecord> {
        self.record(key)?
            .cloned()
            .ok_or_else(|| Error::not_found("record", key))
    }

    fn existing_person(&mut self, euid: &Euid) -> Result<Person> {
        self.person(euid)?
            .cloned()
            .ok_or_else(|| Error::not_found("person", euid))
    }

    fn put_record(&mut self, r: StoredRecord) -> Result<()> {
        let slot = self.record_slot(&r.key())?;
        slot.current = Some(r);
        slot.touched = true;
        Ok(())
    }

    fn put_person(&mut self, p: Person) -> Result<()> {
        let slot = self.person_slot(&p.euid)?;
        slot.current = Some(p);
        slot.touched = true;
        Ok(())
    }

    fn put_task(&mut self, t: ReviewTask) -> Result<()> {
        let slot = self.task_slot(t.id)?;
        slot.current = Some(t);
        slot.touched = true;
        Ok(())
    }

    /// The survivor of `euid`: follows merges to the person at the end of the chain.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown EUID; [`Error::Corrupt`] for a broken chain.
    pub fn survivor_of(&mut self, euid: &Euid) -> Result<Euid> {
        let mut cur = euid.clone();
        for _ in 0..10_000 {
            let p = self.existing_person(&cur)?;
            match p.status {
                PersonStatus::MergedInto(next) => cur = next,
                _ => return Ok(cur),
            }
        }
        Err(Error::Corrupt(format!("merge chain from {euid} loops")))
    }

    /// The survivor of `euid`, which must be active.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when the person is retired.
    pub fn active_person(&mut self, euid: &Euid) -> Result<Euid> {
        let survivor = self.survivor_of(euid)?;
        if !self.existing_person(&survivor)?.is_active() {
            return Err(Error::Conflict(format!("person {survivor} is retired")));
        }
        Ok(survivor)
    }

    fn history(
        &mut self,
        euid: &Euid,
        action: HistoryAction,
        records: Vec<RecordKey>,
        euids: Vec<Euid>,
        task: Option<TaskId>,
    ) {
        self.extra.push(Op::AppendHistory(HistoryEntry {
            seq: 0,
            euid: euid.clone(),
            at: self.stamp.at,
            actor: self.stamp.actor.clone(),
            action,
            reason: self.stamp.reason.clone(),
            records,
            euids,
            task,
        }));
    }

    /// Publishes `change` on the change feed with this change set.
    fn publish(&mut self, change: Change) {
        self.extra.push(Op::Publish(ChangeEvent {
            seq: 0,
            at: self.stamp.at,
            change,
        }));
    }

    fn link(&self, method: LinkMethod) -> LinkInfo {
        LinkInfo {
            method,
            at: self.stamp.at,
            actor: self.stamp.actor.clone(),
        }
    }

    fn require_new(&mut self, key: &RecordKey) -> Result<()> {
        if self.record(key)?.is_some() {
            return Err(Error::Conflict(format!("record {key} is already stored")));
        }
        Ok(())
    }

    /// Takes `key` off `euid`'s member list; retires the person if it is left empty.
    /// Returns whether it was retired.
    fn detach(&mut self, euid: &Euid, key: &RecordKey) -> Result<bool> {
        let mut p = self.existing_person(euid)?;
        p.members.retain(|m| m != key);
        let retired = p.members.is_empty();
        if retired {
            p.status = PersonStatus::Retired;
        }
        self.put_person(p)?;
        if retired {
            self.history(euid, HistoryAction::Retired, vec![], vec![], None);
            self.publish(Change::PersonRetired { euid: euid.clone() });
        }
        Ok(retired)
    }

    fn new_person(&mut self, members: Vec<RecordKey>) -> Result<Euid> {
        let euid = self.store.allocate_euid()?;
        self.put_person(Person {
            euid: euid.clone(),
            status: PersonStatus::Active,
            created_at: self.stamp.at,
            members,
            version: 0,
        })?;
        Ok(euid)
    }

    // ---- operations --------------------------------------------------------------------

    /// Stores a new record as the first member of a new person.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the record key is already stored.
    pub fn create_person(&mut self, record: Record, method: LinkMethod) -> Result<Euid> {
        let key = record.key();
        self.require_new(&key)?;
        let euid = self.new_person(vec![key.clone()])?;
        let link = self.link(method);
        self.put_record(StoredRecord {
            record,
            euid: euid.clone(),
            link,
            updated_at: self.stamp.at,
            answer: None,
            version: 0,
        })?;
        self.history(
            &euid,
            HistoryAction::PersonCreated,
            vec![key.clone()],
            vec![],
            None,
        );
        self.publish(Change::PersonCreated {
            euid: euid.clone(),
            records: vec![key],
        });
        Ok(euid)
    }

    /// Stores a new record as a member of an existing person (a merged EUID stands for its
    /// survivor). Returns the person it joined.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the key is already stored or the person is retired;
    /// [`Error::NotFound`] for an unknown person.
    pub fn add_record(&mut self, record: Record, euid: &Euid, method: LinkMethod) -> Result<Euid> {
        let key = record.key();
        self.require_new(&key)?;
        let euid = self.active_person(euid)?;
        let mut p = self.existing_person(&euid)?;
        p.members.push(key.clone());
        self.put_person(p)?;
        let link = self.link(method);
        self.put_record(StoredRecord {
            record,
            euid: euid.clone(),
            link,
            updated_at: self.stamp.at,
            answer: None,
            version: 0,
        })?;
        self.history(
            &euid,
            HistoryAction::RecordLinked,
            vec![key.clone()],
            vec![],
            None,
        );
        self.publish(Change::RecordLinked {
            record: key,
            euid: euid.clone(),
        });
        Ok(euid)
    }

    /// Stores the service's answer with a record this plan creates or updates (see
    /// [`StoredRecord::answer`]); the value is opaque to the store.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the record is neither stored nor planned.
    pub fn set_answer(&mut self, key: &RecordKey, answer: super::OpaqueJson) -> Result<()> {
        let mut stored = self.existing_record(key)?;
        stored.answer = Some(answer);
        self.put_record(stored)
    }

    /// Replaces a stored record's content, keeping its link. Returns its person.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the record is not stored.
    pub fn update_record(&mut self, record: Record) -> Result<Euid> {
        let key = record.key();
        let mut stored = self.existing_record(&key)?;
        stored.record = record;
        stored.updated_at = self.stamp.at;
        // The stored answer described the old content.
        stored.answer = None;
        let euid = stored.euid.clone();
        self.put_record(stored)?;
        self.history(
            &euid,
            HistoryAction::RecordUpdated,
            vec![key.clone()],
            vec![],
            None,
        );
        self.publish(Change::RecordUpdated {
            record: key,
            euid: euid.clone(),
        });
        Ok(euid)
    }

    /// Moves a stored record to another person (a merged EUID stands for its survivor), retiring the
    /// person it leaves if that one is left empty. Moving to its own person changes nothing.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record or person; [`Error::Conflict`] when the
    /// target is retired.
    pub fn move_record(&mut self, key: &RecordKey, to: &Euid, method: LinkMethod) -> Result<Moved> {
        self.move_record_as(key, to, method, false)
    }

    /// [`Plan::move_record`]; `unlinked`: `to` is a new person made for the record, and the
    /// change feed says so.
    fn move_record_as(
        &mut self,
        key: &RecordKey,
        to: &Euid,
        method: LinkMethod,
        unlinked: bool,
    ) -> Result<Moved> {
        let mut stored = self.existing_record(key)?;
        let to = self.active_person(to)?;
        let from = stored.euid.clone();
        if from == to {
            return Ok(Moved {
                from,
                to,
                from_retired: false,
            });
        }
        let from_retired = self.detach(&from, key)?;
        let mut target = self.existing_person(&to)?;
        target.members.push(key.clone());
        self.put_person(target)?;
        stored.euid = to.clone();
        stored.link = self.link(method);
        self.put_record(stored)?;
        let k = vec![key.clone()];
        self.history(
            &from,
            HistoryAction::RecordUnlinked,
            k.clone(),
            vec![to.clone()],
            None,
        );
        self.history(
            &to,
            HistoryAction::RecordLinked,
            k,
            vec![from.clone()],
            None,
        );
        let (record, from_euid, to_euid) = (key.clone(), from.clone(), to.clone());
        self.publish(if unlinked {
            Change::RecordUnlinked {
                record,
                from: from_euid,
                to: to_euid,
            }
        } else {
            Change::RecordMoved {
                record,
                from: from_euid,
                to: to_euid,
            }
        });
        Ok(Moved {
            from,
            to,
            from_retired,
        })
    }

    /// Moves a record out of its person into a new person (linked by a registrar).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when the record is its person's only record.
    pub fn unlink_record(&mut self, key: &RecordKey) -> Result<Moved> {
        let stored = self.existing_record(key)?;
        if self.existing_person(&stored.euid)?.members.len() <= 1 {
            return Err(Error::Conflict(format!(
                "record {key} is the only record of {}",
                stored.euid
            )));
        }
        let new = self.new_person(vec![])?;
        self.history(
            &new,
            HistoryAction::PersonCreated,
            vec![],
            vec![stored.euid.clone()],
            None,
        );
        // The new person is empty only inside the plan; moving the record fills it.
        self.move_record_as(key, &new, LinkMethod::Registrar, true)
    }

    /// Deletes a record, retiring its person if left empty and superseding its open review
    /// tasks.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the record is not stored.
    pub fn remove_record(&mut self, key: &RecordKey) -> Result<Removed> {
        let stored = self.existing_record(key)?;
        let superseded_tasks = self.supersede_open_tasks(key)?;
        let slot = self.record_slot(key)?;
        slot.current = None;
        slot.touched = true;
        self.history(
            &stored.euid,
            HistoryAction::RecordRemoved,
            vec![key.clone()],
            vec![],
            None,
        );
        self.publish(Change::RecordRemoved {
            record: key.clone(),
            euid: stored.euid.clone(),
        });
        let retired = self.detach(&stored.euid, key)?;
        Ok(Removed {
            euid: stored.euid,
            retired,
            superseded_tasks,
        })
    }

    /// Folds person `from` into `into` (merged EUIDs stand for their survivors): moves every record,
    /// marks `from` merged, and moves `from`'s not-duplicate assertions over to `into`.
    /// Returns the records moved.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when both lead to the same person, either
    /// is retired, or the two are asserted not to be duplicates (retract that first).
    pub fn merge_persons(&mut self, from: &Euid, into: &Euid) -> Result<Vec<RecordKey>> {
        let from = self.active_person(from)?;
        let into = self.active_person(into)?;
        if from == into {
            return Err(Error::Conflict(format!(
                "{from} and {into} are the same person"
            )));
        }
        let mut carried = Vec::new();
        for n in self.store.not_duplicates_of(&from)? {
            let other = self.survivor_of(&n.b)?;
            if other == into {
                return Err(Error::Conflict(format!(
                    "{from} and {into} are asserted not duplicates"
                )));
            }
            carried.push((n, other));
        }
        let mut source = self.existing_person(&from)?;
        let moved = std::mem::take(&mut source.members);
        source.status = PersonStatus::MergedInto(into.clone());
        self.put_person(source)?;
        let mut target = self.existing_person(&into)?;
        target.members.extend(moved.iter().cloned());
        self.put_person(target)?;
        for key in &moved {
            let mut r = self.existing_record(key)?;
            r.euid = into.clone();
            r.link = self.link(LinkMethod::Merge);
            self.put_record(r)?;
        }
        // Assertions move with the records: `from` keeps none, `into` gains them.
        for (n, other) in carried {
            self.extra.push(Op::DeleteNotDuplicate {
                a: from.clone(),
                b: n.b.clone(),
            });
            self.extra.push(Op::PutNotDuplicate(NotDuplicate {
                a: into.clone(),
                b: other,
                ..n
            }));
        }
        self.history(
            &from,
            HistoryAction::MergedInto,
            moved.clone(),
            vec![into.clone()],
            None,
        );
        self.history(
            &into,
            HistoryAction::MergeAbsorbed,
            moved.clone(),
            vec![from.clone()],
            None,
        );
        self.publish(Change::PersonsMerged {
            merged: from,
            survivor: into,
            records: moved.clone(),
        });
        Ok(moved)
    }

    /// Moves `keys` out of person `euid` into a new person (unmerge). At least one record
    /// must stay behind. Returns the new EUID.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or repeated key list; [`Error::NotFound`];
    /// [`Error::Conflict`] when a key is not a member or no record would stay.
    pub fn split_person(&mut self, euid: &Euid, keys: &[RecordKey]) -> Result<Euid> {
        if keys.is_empty() {
            return Err(Error::invalid("records", "no records to split off"));
        }
        let mut unique = keys.to_vec();
        unique.sort();
        unique.dedup();
        if unique.len() != keys.len() {
            return Err(Error::invalid("records", "a record is listed twice"));
        }
        let euid = self.active_person(euid)?;
        let mut old = self.existing_person(&euid)?;
        if let Some(k) = keys.iter().find(|k| !old.members.contains(k)) {
            return Err(Error::Conflict(format!(
                "record {k} does not belong to {euid}"
            )));
        }
        if keys.len() >= old.members.len() {
            return Err(Error::Conflict(format!(
                "splitting would leave {euid} without records"
            )));
        }
        old.members.retain(|m| !keys.contains(m));
        self.put_person(old)?;
        let new = self.new_person(keys.to_vec())?;
        for key in keys {
            let mut r = self.existing_record(key)?;
            r.euid = new.clone();
            r.link = self.link(LinkMethod::Registrar);
            self.put_record(r)?;
        }
        self.history(
            &euid,
            HistoryAction::Split,
            keys.to_vec(),
            vec![new.clone()],
            None,
        );
        self.history(
            &new,
            HistoryAction::PersonCreated,
            keys.to_vec(),
            vec![euid.clone()],
            None,
        );
        self.publish(Change::PersonSplit {
            euid,
            new_euid: new.clone(),
            records: keys.to_vec(),
        });
        Ok(new)
    }

    /// Asserts that two persons (merged EUIDs stand for their survivors) are different people.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when both lead to the same person or
    /// either is retired.
    pub fn assert_not_duplicate(&mut self, a: &Euid, b: &Euid) -> Result<()> {
        // Like link and merge: an assertion about a retired person means nothing.
        let (a, b) = (self.active_person(a)?, self.active_person(b)?);
        if a == b {
            return Err(Error::Conflict(format!("{a} and {b} are the same person")));
        }
        self.extra.push(Op::PutNotDuplicate(NotDuplicate {
            a: a.clone(),
            b: b.clone(),
            at: self.stamp.at,
            actor: self.stamp.actor.clone(),
            reason: self.stamp.reason.clone(),
        }));
        self.history(
            &a,
            HistoryAction::NotDuplicateAsserted,
            vec![],
            vec![b.clone()],
            None,
        );
        self.history(
            &b,
            HistoryAction::NotDuplicateAsserted,
            vec![],
            vec![a.clone()],
            None,
        );
        self.publish(Change::NotDuplicateAsserted { a, b });
        Ok(())
    }

    /// Withdraws the assertion between two persons (merged EUIDs stand for their survivors). Returns
    /// whether there was one.
    ///
    /// # Errors
    /// [`Error::NotFound`] for unknown persons.
    pub fn retract_not_duplicate(&mut self, a: &Euid, b: &Euid) -> Result<bool> {
        let (a, b) = (self.survivor_of(a)?, self.survivor_of(b)?);
        if self.store.not_duplicate(&a, &b)?.is_none() {
            return Ok(false);
        }
        self.extra.push(Op::DeleteNotDuplicate {
            a: a.clone(),
            b: b.clone(),
        });
        self.history(
            &a,
            HistoryAction::NotDuplicateRetracted,
            vec![],
            vec![b.clone()],
            None,
        );
        self.history(
            &b,
            HistoryAction::NotDuplicateRetracted,
            vec![],
            vec![a.clone()],
            None,
        );
        self.publish(Change::NotDuplicateRetracted { a, b });
        Ok(true)
    }

    /// Opens a review task about a stored record (which may be created in this same plan).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record or candidate.
    pub fn open_task(
        &mut self,
        record: &RecordKey,
        candidates: Vec<TaskCandidate>,
        explanation: serde_json::Value,
    ) -> Result<TaskId> {
        let euid = self.existing_record(record)?.euid;
        for c in &candidates {
            self.existing_person(&c.euid)?;
        }
        let id = self.store.allocate_task_id()?;
        let euids: Vec<Euid> = candidates.iter().map(|c| c.euid.clone()).collect();
        self.put_task(ReviewTask {
            id,
            status: TaskStatus::Open,
            created_at: self.stamp.at,
            record: record.clone(),
            candidates,
            explanation,
            version: 0,
        })?;
        self.history(
            &euid,
            HistoryAction::ReviewOpened,
            vec![record.clone()],
            euids.clone(),
            Some(id),
        );
        self.publish(Change::ReviewOpened {
            task: id,
            record: record.clone(),
            euid,
            candidates: euids,
        });
        Ok(id)
    }

    /// Marks an open task resolved. The links or merges the action implies are separate
    /// operations on the same plan.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when the task is already resolved.
    pub fn resolve_task(&mut self, id: TaskId, action: ResolutionAction) -> Result<()> {
        let mut task = self.task_to_resolve(id)?;
        let resolution = action.clone();
        task.status = TaskStatus::Resolved(Resolution {
            action,
            at: self.stamp.at,
            actor: self.stamp.actor.clone(),
            reason: self.stamp.reason.clone(),
        });
        let key = task.record.clone();
        self.put_task(task)?;
        let euid = self.record(&key)?.map(|r| r.euid.clone());
        if let Some(euid) = &euid {
            self.history(
                euid,
                HistoryAction::ReviewResolved,
                vec![key.clone()],
                vec![],
                Some(id),
            );
        }
        self.publish(Change::ReviewResolved {
            task: id,
            record: key,
            euid,
            resolution,
        });
        Ok(())
    }

    /// Resolves every open task about `key` as [`ResolutionAction::Superseded`] (the record was
    /// removed or changed). Returns their ids.
    ///
    /// # Errors
    /// Store read errors.
    pub fn supersede_open_tasks(&mut self, key: &RecordKey) -> Result<Vec<TaskId>> {
        let mut ids: Vec<TaskId> = self
            .store
            .open_tasks_for_record(key)?
            .into_iter()
            .map(|t| t.id)
            .collect();
        ids.extend(
            self.tasks
                .iter()
                .filter(|(_, s)| s.current.as_ref().is_some_and(|t| &t.record == key))
                .map(|(id, _)| *id),
        );
        ids.sort();
        ids.dedup();
        let mut done = Vec::new();
        for id in ids {
            if self.task(id)?.is_some_and(|t| t.is_open()) {
                self.resolve_task(id, ResolutionAction::Superseded)?;
                done.push(id);
            }
        }
        Ok(done)
    }

    /// Records the matching model version in use.
    pub fn set_model_version(&mut self, version: impl Into<String>) {
        self.extra.push(Op::SetModelVersion(version.into()));
    }
}
