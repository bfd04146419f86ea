//! The in-memory index the service decides with: every stored record's prepared form, its
//! person, and the blocking index over them, kept in step with the store.

use std::sync::Arc;

use ahash::AHashMap;

use crate::blocking::{block_keys, BlockIndex, BlockKey, BlockRule, BlockingConfig};
use crate::prepare::Prepared;
use crate::record::{Record, RecordKey};
use crate::scoring::Sig;
use crate::store::{ChangeSet, Euid, Op, StoredRecord};

/// One indexed record. The key is shared with the id map; the person is kept as the EUID's
/// sequence number (8 bytes instead of a 24-byte `String` header plus its heap copy). The
/// record's bound summary ([`Sig::second`], 144 bytes) is kept beside its prepared
/// form: ruling out a hopeless candidate then reads the summary, not a dozen strings.
#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    euid: u64,
    prepared: Prepared,
    sig: Sig,
}

/// What the index derives from a record's prepared form besides keeping it: its blocking
/// keys and its bound summary. Made apart from the index ([`Derived::of`]) so loaders can
/// make it in parallel, then handed to [`LiveIndex::upsert_keyed`].
pub(crate) struct Derived {
    keys: Vec<BlockKey>,
    sig: Sig,
}

impl Derived {
    /// The derivations of `p` under the index's blocking `rules`.
    pub(crate) fn of(p: &Prepared, rules: &[BlockRule]) -> Self {
        Derived {
            keys: block_keys(p, rules),
            sig: Sig::second(p),
        }
    }
}

/// The text form of a record key inside the index: `source NUL local_id` (stored keys can
/// not contain NUL, so it is unambiguous).
pub(crate) fn key_text(key: &RecordKey) -> String {
    let mut s = String::with_capacity(key.source.len() + 1 + key.local_id.len());
    s.push_str(&key.source);
    s.push('\0');
    s.push_str(&key.local_id);
    s
}

fn key_from_text(text: &str) -> RecordKey {
    let (source, local_id) = text.split_once('\0').unwrap_or((text, ""));
    RecordKey::new(source, local_id)
}

/// A candidate record found by [`LiveIndex::candidates`].
pub(crate) struct Found<'a> {
    /// Its person's EUID sequence number.
    pub(crate) euid: u64,
    /// Its key (index form).
    pub(crate) key: &'a str,
    /// Its prepared form.
    pub(crate) prepared: &'a Prepared,
    /// Its bound summary.
    pub(crate) sig: &'a Sig,
}

impl Found<'_> {
    /// The record key.
    pub(crate) fn record_key(&self) -> RecordKey {
        key_from_text(self.key)
    }
}

/// Every stored record, prepared, with its person, and the blocking index over them.
///
/// Record ids (`u32`) are dense and reused after removal, so slots stay compact.
#[derive(Debug)]
pub(crate) struct LiveIndex {
    blocks: BlockIndex,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: AHashMap<Arc<str>, u32>,
}

impl LiveIndex {
    /// An empty index.
    pub(crate) fn new(config: BlockingConfig) -> Self {
        LiveIndex {
            blocks: BlockIndex::new(config),
            slots: Vec::new(),
            free: Vec::new(),
            ids: AHashMap::new(),
        }
    }

    /// Number of records indexed.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Reserves room for `n` more records.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.ids.reserve(n);
    }

    /// The id of a record key, if indexed.
    pub(crate) fn id_of(&self, key: &str) -> Option<u32> {
        self.ids.get(key).copied()
    }

    /// Every indexed record: key text, person sequence number, prepared form.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, u64, &Prepared)> {
        self.slots
            .iter()
            .flatten()
            .map(|s| (&*s.key, s.euid, &s.prepared))
    }

    /// As [`LiveIndex::upsert`] with the record's derivations made by the caller (in
    /// parallel, when loading many): `derived` must be [`Derived::of`] `prepared` under
    /// this index's blocking rules.
    pub(crate) fn upsert_keyed(
        &mut self,
        key: &str,
        euid: u64,
        prepared: Prepared,
        derived: Derived,
    ) {
        let Derived { keys, sig } = derived;
        if let Some(id) = self.id_of(key) {
            self.blocks.insert_keyed(id, keys);
            if let Some(slot) = self.slots[id as usize].as_mut() {
                slot.euid = euid;
                slot.prepared = prepared;
                slot.sig = sig;
            }
            return;
        }
        let key: Arc<str> = Arc::from(key);
        let id = self.next_id();
        self.blocks.insert_keyed(id, keys);
        self.slots[id as usize] = Some(Slot {
            key: key.clone(),
            euid,
            prepared,
            sig,
        });
        self.ids.insert(key, id);
    }

    fn next_id(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                // More than u32::MAX records would need a wider id; the blocking index takes
                // u32 ids, and 4 billion records is far beyond one server's memory anyway.
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 records")
            }
        }
    }

    /// Adds or replaces a record.
    pub(crate) fn upsert(&mut self, key: &str, euid: u64, prepared: Prepared) {
        let derived = Derived::of(&prepared, &self.blocks.config().rules);
        self.upsert_keyed(key, euid, prepared, derived);
    }

    /// Moves a record to another person (content unchanged). Returns false when not indexed.
    pub(crate) fn set_person(&mut self, key: &str, euid: u64) -> bool {
        match self
            .id_of(key)
            .and_then(|id| self.slots[id as usize].as_mut())
        {
            Some(slot) => {
                slot.euid = euid;
                true
            }
            None => false,
        }
    }

    /// Removes a record; unknown keys are ignored.
    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(id) = self.ids.remove(key) {
            self.blocks.remove(id);
            self.slots[id as usize] = None;
            self.free.push(id);
        }
    }

    /// Brings the index in line with a change set the store has just applied. `fresh` is the
    /// prepared form of a record whose content the change set writes (the caller prepared it
    /// already); other written records keep their prepared form and only change person, and
    /// a record not indexed yet is prepared here.
    pub(crate) fn apply(
        &mut self,
        changes: &ChangeSet,
        mut fresh: Option<(&str, Prepared)>,
        prepare: impl Fn(&Record) -> Prepared,
    ) {
        for op in changes.ops() {
            match op {
                Op::PutRecord(r) => {
                    let key = key_text(&r.key());
                    let euid = r.euid.seq();
                    match fresh.take() {
                        Some((k, p)) if k == key => self.upsert(&key, euid, p),
                        other => {
                            fresh = other;
                            if !self.set_person(&key, euid) {
                                self.upsert(&key, euid, prepare(&r.record));
                            }
                        }
                    }
                }
                Op::DeleteRecord { key, .. } => self.remove(&key_text(key)),
                _ => {}
            }
        }
    }

    /// Records sharing an uncapped block with `query` (leaving out `exclude`), using `buf`
    /// as scratch space.
    pub(crate) fn candidates<'a>(
        &'a self,
        query: &Prepared,
        exclude: Option<u32>,
        buf: &mut Vec<u32>,
    ) -> Vec<Found<'a>> {
        self.blocks.candidates(query, exclude, buf);
        buf.iter()
            .filter_map(|&id| self.slots.get(id as usize).and_then(Option::as_ref))
            .map(|s| Found {
                euid: s.euid,
                key: &s.key,
                prepared: &s.prepared,
                sig: &s.sig,
            })
            .collect()
    }

    /// Up to `queries` indexed records with their blocked candidates, for checking a
    /// weight bound against real pairs: the prepared records (cloned) and the candidate
    /// pairs among them, as positions.
    pub(crate) fn sample_pairs(&self, queries: usize) -> (Vec<Prepared>, Vec<(u32, u32)>) {
        let mut prepared = Vec::new();
        let mut pairs = Vec::new();
        let mut buf = Vec::new();
        for (id, slot) in self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)))
            .take(queries)
        {
            let q = prepared.len() as u32;
            prepared.push(slot.prepared.clone());
            for found in self
                .candidates(&slot.prepared, Some(id as u32), &mut buf)
                .into_iter()
                .take(20)
            {
                pairs.push((q, prepared.len() as u32));
                prepared.push(found.prepared.clone());
            }
        }
        (prepared, pairs)
    }

    /// Compares the index with the stored records: each must be indexed with its person and
    /// its freshly prepared form, and nothing else may be indexed. Problems name record keys
    /// only.
    pub(crate) fn verify<'r>(
        &self,
        records: impl Iterator<Item = crate::Result<StoredRecord>> + 'r,
        prepare: impl Fn(&Record) -> Prepared,
        problems: &mut Vec<String>,
    ) -> crate::Result<usize> {
        let mut seen = 0usize;
        for r in records {
            let r = r?;
            seen += 1;
            let key = r.key();
            let slot = self
                .id_of(&key_text(&key))
                .and_then(|id| self.slots[id as usize].as_ref());
            match slot {
                None => problems.push(format!("record {key}: not in the index")),
                Some(s) => {
                    if s.euid != r.euid.seq() {
                        problems.push(format!(
                            "record {key}: indexed under {}, stored under {}",
                            Euid::from_seq(s.euid),
                            r.euid
                        ));
                    }
                    if s.prepared != prepare(&r.record) {
                        problems.push(format!("record {key}: indexed content is stale"));
                    } else if s.sig != Sig::second(&s.prepared) {
                        problems.push(format!("record {key}: indexed bound summary is stale"));
                    }
                }
            }
        }
        if seen != self.ids.len() {
            problems.push(format!(
                "index holds {} records, the store {seen}",
                self.ids.len()
            ));
        }
        if self.blocks.len() != self.ids.len() {
            problems.push(format!(
                "blocking index holds {} records, the id map {}",
                self.blocks.len(),
                self.ids.len()
            ));
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linker::Linker;
    use crate::store::{LinkInfo, LinkMethod, UnixMillis};

    fn rec(id: &str, given: &str) -> Record {
        Record {
            source: "adt".into(),
            local_id: id.into(),
            given_name: Some(given.into()),
            family_name: Some("Okonkwo".into()),
            birth_date: Some("1961-07-02".parse().unwrap()),
            ..Default::default()
        }
    }

    fn stored(r: Record, euid: u64) -> StoredRecord {
        StoredRecord {
            record: r,
            euid: Euid::from_seq(euid),
            link: LinkInfo {
                method: LinkMethod::Created,
                at: UnixMillis(0),
                actor: "t".into(),
            },
            updated_at: UnixMillis(0),
            answer: None,
            version: 1,
        }
    }

    #[test]
    fn keys_round_trip_and_ids_are_reused() {
        let k = RecordKey::new("st-marys", "MRN1");
        assert_eq!(key_from_text(&key_text(&k)), k);
        let linker = Linker::with_default_model();
        let mut ix = LiveIndex::new(BlockingConfig::default());
        ix.upsert("a\u{0}1", 1, linker.prepare(&rec("1", "Ada")));
        ix.upsert("a\u{0}2", 2, linker.prepare(&rec("2", "Ada")));
        assert_eq!(ix.len(), 2);
        ix.remove("a\u{0}1");
        ix.upsert("a\u{0}3", 3, linker.prepare(&rec("3", "Ada")));
        assert_eq!(ix.id_of("a\u{0}3"), Some(0), "freed id reused");
        let mut buf = Vec::new();
        let q = linker.prepare(&rec("9", "Ada"));
        let mut found: Vec<u64> = ix
            .candidates(&q, None, &mut buf)
            .iter()
            .map(|f| f.euid)
            .collect();
        found.sort();
        assert_eq!(found, vec![2, 3]);
        assert!(ix.set_person("a\u{0}2", 7));
        assert!(!ix.set_person("a\u{0}9", 7));
    }

    #[test]
    fn apply_follows_change_sets_and_verify_finds_drift() {
        let linker = Linker::with_default_model();
        let mut ix = LiveIndex::new(BlockingConfig::default());
        let a = stored(rec("1", "Ada"), 1);
        let b = stored(rec("2", "Ada"), 2);
        let cs: ChangeSet = vec![Op::PutRecord(a.clone()), Op::PutRecord(b.clone())].into();
        ix.apply(&cs, None, |r| linker.prepare(r));
        let mut problems = Vec::new();
        let all = vec![Ok(a.clone()), Ok(b.clone())];
        assert_eq!(
            ix.verify(all.into_iter(), |r| linker.prepare(r), &mut problems)
                .unwrap(),
            2
        );
        assert!(problems.is_empty(), "{problems:?}");

        // b moves to person 1; a's content changes (fresh prepared form given)
        let mut b2 = b.clone();
        b2.euid = Euid::from_seq(1);
        let mut a2 = a.clone();
        a2.record.given_name = Some("Adaeze".into());
        let fresh = linker.prepare(&a2.record);
        let cs: ChangeSet = vec![Op::PutRecord(a2.clone()), Op::PutRecord(b2.clone())].into();
        ix.apply(&cs, Some((&key_text(&a2.key()), fresh)), |r| {
            linker.prepare(r)
        });
        let all = vec![Ok(a2.clone()), Ok(b2.clone())];
        ix.verify(all.into_iter(), |r| linker.prepare(r), &mut problems)
            .unwrap();
        assert!(problems.is_empty(), "{problems:?}");

        // drift: the store says b is elsewhere, and a has content the index never saw
        let mut b3 = b2.clone();
        b3.euid = Euid::from_seq(5);
        let all = vec![Ok(a.clone()), Ok(b3)];
        ix.verify(all.into_iter(), |r| linker.prepare(r), &mut problems)
            .unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().all(|p| !p.contains("Ada")),
            "no patient data"
        );

        let cs: ChangeSet = vec![Op::DeleteRecord {
            key: a2.key(),
            version: 2,
        }]
        .into();
        ix.apply(&cs, None, |r| linker.prepare(r));
        assert_eq!(ix.len(), 1);
    }
}
