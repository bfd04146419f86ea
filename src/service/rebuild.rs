//! Rebuilding the live index from every stored record at start, when no snapshot matches
//! the store: a pipeline over three threads so scanning, decoding and inserting overlap.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::Result;
use crate::linker::Linker;
use crate::prepare::{NameCache, Prepared};
use crate::store::{RecordEntry, Store};

use super::index::{key_text, Derived, LiveIndex};
use super::startup::IndexStats;
use super::{prepare, rss};

/// Builds the index from every stored record in a three-stage pipeline: a reader thread
/// scans encoded records in batches, a second thread has rayon decode (only the record and
/// its person, [`RecordEntry`]) and prepare each batch in parallel, and this thread inserts
/// into the index. Bounded channels keep a few batches in flight.
pub(super) fn rebuild(
    store: &dyn Store,
    linker: &Linker,
    names: &NameCache,
) -> Result<(LiveIndex, IndexStats)> {
    const BATCH: usize = 4096;
    type Prepped = Vec<(String, u64, Prepared, Derived)>;
    let started = Instant::now();
    let rss_before = rss::resident_bytes();
    let mut index = LiveIndex::new(linker.blocking().clone());
    index.reserve(usize::try_from(store.stats()?.records).unwrap_or(0));
    let mut persons = ahash::AHashSet::new();
    let (scan_busy, prep_busy) = (Mutex::new(Duration::ZERO), Mutex::new(Duration::ZERO));
    let mut insert_busy = Duration::ZERO;
    std::thread::scope(|scope| -> Result<()> {
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<Result<Vec<Vec<u8>>>>(4);
        let (prep_tx, prep_rx) = std::sync::mpsc::sync_channel::<Result<Prepped>>(4);
        let scan_busy = &scan_busy;
        let prep_busy = &prep_busy;
        scope.spawn(move || {
            let t0 = Instant::now();
            let mut waited = Duration::ZERO;
            let mut batch = Vec::with_capacity(BATCH);
            for r in store.encoded_records() {
                match r {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        let _ = raw_tx.send(Err(e));
                        return;
                    }
                }
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let w = Instant::now();
                    if raw_tx.send(Ok(full)).is_err() {
                        return; // a later stage gave up
                    }
                    waited += w.elapsed();
                }
            }
            let _ = raw_tx.send(Ok(batch));
            *scan_busy.lock().unwrap_or_else(PoisonError::into_inner) = t0.elapsed() - waited;
        });
        scope.spawn(move || {
            let mut busy = Duration::ZERO;
            for batch in raw_rx {
                let t = Instant::now();
                // Consuming the batch drops each value in the worker that decoded it.
                let prepped = batch.and_then(|b| {
                    b.into_par_iter()
                        .map(|bytes| {
                            let e = RecordEntry::decode(&bytes)?;
                            let p = prepare(linker, names, &e.record);
                            let derived = Derived::of(&p, &linker.blocking().rules);
                            Ok((key_text(&e.record.key()), e.euid.seq(), p, derived))
                        })
                        .collect::<Result<Prepped>>()
                });
                busy += t.elapsed();
                if prep_tx.send(prepped).is_err() {
                    return;
                }
            }
            *prep_busy.lock().unwrap_or_else(PoisonError::into_inner) = busy;
        });
        for batch in prep_rx {
            let t = Instant::now();
            for (key, euid, p, derived) in batch? {
                persons.insert(euid);
                index.upsert_keyed(&key, euid, p, derived);
            }
            insert_busy += t.elapsed();
        }
        Ok(())
    })?;
    tracing::debug!(
        scan_secs = scan_busy
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .as_secs_f64(),
        decode_prepare_secs = prep_busy
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .as_secs_f64(),
        insert_secs = insert_busy.as_secs_f64(),
        "index rebuild stages (busy time of each)"
    );
    let stats = IndexStats::measure(&index, persons.len(), started, rss_before, false);
    Ok((index, stats))
}
