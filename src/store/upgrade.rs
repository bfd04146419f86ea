//! The store's format version and upgrades between versions.
//!
//! The `meta` tree's `format_version` says which key layout and encoding a store holds.
//! Opening a store checks it before reading anything else (before the journal of a crashed
//! store is replayed): a store of this version opens; an older one is refused with the
//! command that upgrades it (`empi upgrade --data DIR`, [`crate::store::SledStore::upgrade`]),
//! so an operator takes a backup first and chooses the moment; a newer one is refused,
//! naming both versions (an older empi never reads a newer store's layout as its own).
//!
//! | version | what it holds |
//! |---------|---------------|
//! | 1       | records, persons, tasks and their indexes, not-duplicate assertions, history, counters |
//! | 2       | version 1, and the change feed: the `changes` tree and the `feed_seq` and `feed_first` counters ([`super::feed`]) |
//!
//! Upgrading from 1 to 2 writes nothing but the version: a store of version 1 has no
//! events, and its feed starts empty at the upgrade (a consumer starts from sequence 0
//! after taking its first copy of the persons it mirrors).

use crate::error::{Error, Result};

use super::codec::{self, meta, TreeId};
use super::engine::Kv;

/// The oldest format this build upgrades.
pub const OLDEST_UPGRADABLE: u64 = 1;

/// The format this build reads and writes.
pub const CURRENT: u64 = codec::FORMAT_VERSION;

/// What [`crate::store::SledStore::upgrade`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// The format found.
    pub from: u64,
    /// The format now.
    pub to: u64,
}

/// Refuses a store of format `found` unless it is this build's.
///
/// # Errors
/// [`Error::Incompatible`] naming what to do: upgrade an older store, use a newer empi
/// for a newer one.
pub(crate) fn check_format(found: u64) -> Result<()> {
    if found == CURRENT {
        Ok(())
    } else if found < CURRENT {
        Err(Error::Incompatible(format!(
            "store format version {found} is older than this empi's ({CURRENT}): back the \
             data directory up, then run `empi upgrade --data DIR`"
        )))
    } else {
        Err(Error::Incompatible(format!(
            "store format version {found} is newer than this empi reads ({CURRENT}): use the \
             empi that wrote it, or a newer one"
        )))
    }
}

/// The format version recorded in `kv`, `None` for an empty (new) store.
///
/// # Errors
/// Storage errors; [`Error::Corrupt`] for a malformed value.
pub(crate) fn format_of<K: Kv>(kv: &K) -> Result<Option<u64>> {
    kv.get(TreeId::Meta, meta::FORMAT_VERSION)?
        .map(|v| codec::decode_u64(Some(&v)))
        .transpose()
}

/// Brings `kv` from format `from` to [`CURRENT`], one step at a time, each step one
/// transaction (a crash between steps leaves a store of the step's version, which the next
/// run continues from).
///
/// # Errors
/// [`Error::Incompatible`] for a format this build cannot upgrade; storage errors.
pub(crate) fn migrate<K: Kv>(kv: &K, from: u64) -> Result<Upgraded> {
    if from > CURRENT {
        check_format(from)?;
    }
    if from < OLDEST_UPGRADABLE {
        return Err(Error::Incompatible(format!(
            "store format version {from} is older than this empi upgrades ({OLDEST_UPGRADABLE})"
        )));
    }
    for version in from..CURRENT {
        kv.transact(&|tx| {
            // 1 -> 2: the change feed starts empty; its tree and counters need no value.
            tx.insert(
                TreeId::Meta,
                meta::FORMAT_VERSION,
                codec::encode_u64(version + 1),
            )
        })?;
    }
    Ok(Upgraded { from, to: CURRENT })
}
