//! Records read straight into prepared form: each CSV chunk is converted and prepared in
//! parallel and its [`Record`]s dropped at once, so a million-record run holds only
//! compact keys and [`Prepared`] values.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::input::{read_csv_map, ColumnMapping, Keyed, ReadOptions, ReadSummary};
use crate::linker::Linker;
use crate::prepare::{NameCache, Prepared};
use crate::record::{Record, RecordKey};
use crate::Result;

/// Record keys, compactly: the source names once, then per record a source index and the
/// local id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    sources: Vec<Arc<str>>,
    of: Vec<(u32, Box<str>)>,
}

impl Keys {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// `(source, local_id)` of record `i`.
    pub fn get(&self, i: usize) -> (&str, &str) {
        let (s, id) = &self.of[i];
        (&self.sources[*s as usize], id)
    }

    /// The [`RecordKey`] of record `i`.
    pub fn key(&self, i: usize) -> RecordKey {
        let (s, l) = self.get(i);
        RecordKey::new(s, l)
    }

    /// Appends a key.
    pub fn push(&mut self, source: &str, local_id: &str) {
        let s = match self.sources.iter().position(|x| &**x == source) {
            Some(s) => s,
            None => {
                self.sources.push(source.into());
                self.sources.len() - 1
            }
        };
        self.of.push((s as u32, local_id.into()));
    }

    /// Appends every key of `other` (for linking two files as one list).
    pub fn extend(&mut self, other: &Keys) {
        for i in 0..other.len() {
            let (s, l) = other.get(i);
            self.push(s, l);
        }
    }
}

/// Prepared records and their keys, in input order.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Record keys.
    pub keys: Keys,
    /// Prepared records (term frequencies not yet filled).
    pub prepared: Vec<Prepared>,
}

impl Dataset {
    /// Prepares in-memory records (through one name cache).
    pub fn from_records(linker: &Linker, records: &[Record], progress: bool) -> Dataset {
        let mut keys = Keys::default();
        for r in records {
            keys.push(&r.source, &r.local_id);
        }
        Dataset {
            keys,
            prepared: super::prepare_all(linker, records, progress),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.prepared.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty()
    }
}

struct Item {
    source: Arc<str>,
    local_id: Box<str>,
    prepared: Prepared,
}

impl Keyed for Item {
    fn key_parts(&self) -> (&str, &str) {
        (&self.source, &self.local_id)
    }
}

/// Reads a CSV (see [`crate::input`] for the mapping) straight into a [`Dataset`], with a
/// progress bar on rows when `progress` is set.
///
/// # Errors
/// As [`crate::input::read_csv`].
pub fn read_dataset(
    path: &Path,
    mapping: Option<&ColumnMapping>,
    opts: &ReadOptions,
    linker: &Linker,
    progress: bool,
) -> Result<(Dataset, ReadSummary)> {
    let cache = NameCache::new();
    let sources: Mutex<Vec<Arc<str>>> = Mutex::default();
    let placeholders = &linker.scorer().model().placeholders;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    // Rows are unknown up front; a byte-size guess (about 120 bytes a row) drives the bar.
    let pb = super::progress_bar(len / 120, "read", progress);
    let (items, summary) = read_csv_map(
        path,
        mapping,
        opts,
        |r: Record| {
            let prepared = Prepared::new_cached(&r, placeholders, &cache);
            let source = {
                // Sources are few: a short list behind a lock shares one allocation each.
                let mut s = sources.lock().unwrap_or_else(PoisonError::into_inner);
                match s.iter().find(|x| ***x == *r.source) {
                    Some(x) => x.clone(),
                    None => {
                        let x: Arc<str> = r.source.as_str().into();
                        s.push(x.clone());
                        x
                    }
                }
            };
            Item {
                source,
                local_id: r.local_id.into_boxed_str(),
                prepared,
            }
        },
        &|rows| pb.set_position(rows),
    )?;
    pb.finish_and_clear();
    let mut keys = Keys::default();
    let mut prepared = Vec::with_capacity(items.len());
    keys.of.reserve(items.len());
    for it in items {
        let s = match keys.sources.iter().position(|x| Arc::ptr_eq(x, &it.source)) {
            Some(s) => s,
            None => {
                keys.sources.push(it.source.clone());
                keys.sources.len() - 1
            }
        };
        keys.of.push((s as u32, it.local_id));
        prepared.push(it.prepared);
    }
    Ok((Dataset { keys, prepared }, summary))
}
