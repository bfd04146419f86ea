//! Building the live index when the service opens: from the index snapshot when it matches
//! the store (the store read through beside it), otherwise by rebuilding from the store.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::linker::Linker;
use crate::prepare::NameCache;
use crate::store::Store;

use super::index::LiveIndex;
use super::{rebuild, rss, snapshot, ServiceConfig};

/// What building the index on start found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexStats {
    /// Records indexed.
    pub records: u64,
    /// Distinct persons among them.
    pub persons: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Growth of resident memory while building, when the platform reports it. Includes
    /// the store's own page cache filled by the scan, so it overstates the index itself.
    pub rss_growth_bytes: Option<u64>,
    /// Whether the index was loaded from a snapshot rather than rebuilt from the store.
    pub from_snapshot: bool,
}

impl IndexStats {
    /// What building `index` took, since `started` and a resident size of `rss_before`.
    pub(super) fn measure(
        index: &LiveIndex,
        persons: usize,
        started: Instant,
        rss_before: Option<u64>,
        from_snapshot: bool,
    ) -> IndexStats {
        IndexStats {
            records: index.len() as u64,
            persons: persons as u64,
            elapsed: started.elapsed(),
            rss_growth_bytes: rss_before
                .zip(rss::resident_bytes())
                .map(|(a, b)| b.saturating_sub(a)),
            from_snapshot,
        }
    }
}

/// The index over `store`: loaded from the snapshot `config` names when it matches,
/// rebuilt otherwise; logged either way (counts, time, memory; never patient data).
///
/// A snapshot spares reading the store, so it could hide a store that cannot be read: the
/// store is read through beside loading it ([`Store::verify_readable`]), and the service
/// refuses to start, as a rebuild would, when that fails.
///
/// # Errors
/// Store errors while rebuilding or reading through.
pub(super) fn build_index(
    store: &dyn Store,
    linker: &Linker,
    config: &ServiceConfig,
    names: &NameCache,
) -> Result<(LiveIndex, IndexStats)> {
    let (loaded, readable) = match config.snapshot.as_deref().filter(|p| p.exists()) {
        None => (None, None),
        Some(path) => std::thread::scope(|scope| {
            let verified = scope.spawn(|| store.verify_readable());
            let loaded = snapshot::load(path, store, linker);
            let readable = loaded.is_some().then(|| {
                verified.join().unwrap_or_else(|_| {
                    Err(Error::Corrupt("reading the store through panicked".into()))
                })
            });
            (loaded, readable)
        }),
    };
    if let Some(readable) = readable {
        let entries = readable.inspect_err(|e| {
            tracing::error!(error = %e, "the store cannot be read through; not starting from the index snapshot");
        })?;
        tracing::debug!(entries, "store read through beside the index snapshot");
    }
    let (index, stats) = match loaded {
        Some(loaded) => loaded,
        None => rebuild::rebuild(store, linker, names)?,
    };
    tracing::info!(
        records = stats.records,
        persons = stats.persons,
        secs = stats.elapsed.as_secs_f64(),
        rss_growth_mib = stats.rss_growth_bytes.map(|b| b / (1 << 20)),
        from_snapshot = stats.from_snapshot,
        "index rebuilt"
    );
    Ok((index, stats))
}
