//! [`SledStore`]: the production store, one sled database directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::error::{Error, Result};

use super::codec::{self, TreeId};
use super::engine::{scan_start, Engine, Kv, KvIter, KvTx, TxError, TxResult};

/// Maps a sled error: corruption is [`Error::Corrupt`], everything else [`Error::Storage`].
fn sled_err(e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => Error::Corrupt(format!("sled: {e}")),
        other => Error::Storage(format!("sled: {other}")),
    }
}

pub(crate) struct SledKv {
    db: sled::Db,
    /// One tree per [`TreeId`], indexed by `TreeId as usize`.
    trees: Vec<sled::Tree>,
}

impl SledKv {
    fn tree(&self, t: TreeId) -> &sled::Tree {
        &self.trees[t as usize]
    }
}

struct SledTx<'a> {
    views: &'a [TransactionalTree],
}

impl KvTx for SledTx<'_> {
    fn get(&self, tree: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        Ok(self.views[tree as usize].get(key)?.map(|v| v.to_vec()))
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: Vec<u8>) -> TxResult<()> {
        self.views[tree as usize].insert(key, value)?;
        Ok(())
    }

    fn remove(&self, tree: TreeId, key: &[u8]) -> TxResult<()> {
        self.views[tree as usize].remove(key)?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, tree: TreeId, prefix: &[u8], after: Option<&[u8]>) -> KvIter<'_> {
        let start = scan_start(prefix, after);
        let prefix = prefix.to_vec();
        Box::new(
            self.tree(tree)
                .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
                .take_while(move |item| match item {
                    Ok((k, _)) => k.starts_with(&prefix),
                    Err(_) => true,
                })
                .map(|item| {
                    item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(sled_err)
                }),
        )
    }

    fn increment(&self, key: &'static [u8]) -> Result<u64> {
        let mut malformed = false;
        let new = self
            .tree(TreeId::Meta)
            .update_and_fetch(key, |old| match old {
                None => Some(codec::encode_u64(1)),
                Some(b) => match <[u8; 8]>::try_from(b) {
                    Ok(n) => Some(codec::encode_u64(u64::from_be_bytes(n) + 1)),
                    // Never reset a malformed id counter: that could reuse ids.
                    Err(_) => {
                        malformed = true;
                        Some(b.to_vec())
                    }
                },
            })
            .map_err(sled_err)?;
        if malformed {
            return Err(Error::Corrupt(format!(
                "counter {} is not 8 bytes",
                String::from_utf8_lossy(key)
            )));
        }
        codec::decode_u64(new.as_deref())
    }

    fn transact<R>(&self, f: &dyn Fn(&dyn KvTx) -> TxResult<R>) -> Result<R> {
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        let result = trees
            .as_slice()
            .transaction(|views: &Vec<TransactionalTree>| {
                f(&SledTx { views }).map_err(|e| match e {
                    TxError::Abort(e) => ConflictableTransactionError::Abort(e),
                    TxError::Sled(e) => e.into(),
                })
            });
        match result {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(sled_err(e)),
        }
    }
}

/// The production store: a sled database in one directory.
///
/// Opening takes sled's lock on the directory, so one process at a time.
pub struct SledStore {
    pub(crate) engine: Engine<SledKv>,
    path: PathBuf,
}

impl SledStore {
    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory (e.g. another process holds
    /// it); [`Error::Corrupt`] when it holds another format version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new().path(&path).open().map_err(sled_err)?;
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sled_err)?;
        let flush_db = db.clone();
        let flusher = Arc::new(move || flush_db.flush().map(drop).map_err(sled_err));
        let engine = Engine::new(SledKv { db, trees }, flusher)?;
        Ok(SledStore { engine, path })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the database occupies on disk.
    ///
    /// # Errors
    /// [`Error::Storage`] from sled.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.engine.kv.db.size_on_disk().map_err(sled_err)
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl_store_via_engine!(SledStore);
