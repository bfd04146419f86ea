//! The in-memory backend of [`MemoryStore`]: the same store logic and key layout over
//! in-memory ordered maps, for tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::Result;

use super::codec::{self, TreeId};
use super::engine::{scan_start, Kv, KvIter, KvStore, KvTx, OverlayTx, TxResult};
use super::group_commit::Flusher;

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// The in-memory backend of [`MemoryStore`]: one ordered map per tree.
pub struct MemKv {
    trees: Mutex<Vec<Tree>>,
}

impl MemKv {
    fn lock(&self) -> MutexGuard<'_, Vec<Tree>> {
        // A transaction touches the trees only after its closure succeeded, in a loop of
        // plain map inserts; a panic elsewhere cannot leave them half-written, so a poisoned
        // lock still guards consistent trees.
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for MemKv {
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()[tree as usize].get(key).cloned())
    }

    fn scan(&self, tree: TreeId, prefix: &[u8], after: Option<&[u8]>) -> KvIter<'_> {
        // A snapshot: the lock is not held while the caller iterates.
        let items: Vec<(Vec<u8>, Vec<u8>)> = self.lock()[tree as usize]
            .range((scan_start(prefix, after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::new(items.into_iter().map(Ok))
    }

    fn increment(&self, key: &'static [u8]) -> Result<u64> {
        let mut trees = self.lock();
        let meta = &mut trees[TreeId::Meta as usize];
        let n = codec::decode_u64(meta.get(key).map(Vec::as_slice))? + 1;
        meta.insert(key.to_vec(), codec::encode_u64(n));
        Ok(n)
    }

    fn transact<R>(&self, f: &dyn Fn(&dyn KvTx) -> TxResult<R>) -> Result<R> {
        let mut trees = self.lock();
        let base: &[Tree] = &trees;
        let tx =
            OverlayTx::new(|tree: TreeId, key: &[u8]| Ok(base[tree as usize].get(key).cloned()));
        let result = f(&tx)?;
        for ((tree, key), value) in tx.into_writes() {
            let t = &mut trees[tree as usize];
            match value {
                Some(v) => t.insert(key, v),
                None => t.remove(&key),
            };
        }
        Ok(result)
    }
}

impl KvStore<MemKv> {
    /// An empty store whose flushes are instant.
    pub fn new() -> Self {
        Self::with_flush_latency(Duration::ZERO)
    }

    /// An empty store whose flushes take `latency`, like an fsync would (to exercise group
    /// commit without a disk).
    pub fn with_flush_latency(latency: Duration) -> Self {
        Self::with_flusher(Arc::new(move || {
            if !latency.is_zero() {
                std::thread::sleep(latency);
            }
            Ok(())
        }))
    }

    /// An empty store whose flushes run `flusher` (tests: flushes that fail).
    pub(crate) fn with_flusher(flusher: Flusher) -> Self {
        let kv = MemKv {
            trees: Mutex::new(vec![Tree::new(); TreeId::ALL.len()]),
        };
        match KvStore::over(kv, flusher) {
            Ok(store) => store,
            // Engine::new only fails on an unreadable format version, and these maps are
            // empty: there is none yet.
            Err(e) => unreachable!("fresh memory store: {e}"),
        }
    }
}

impl Default for KvStore<MemKv> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for KvStore<MemKv> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}
