//! fjall (LSM-tree) backend.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};

use crate::kv::{Column, KvBackend, KvPair, WriteBatch};
use crate::StorageError;

/// A [`KvBackend`] over one fjall `Database` with one keyspace per [`Column`].
pub struct FjallBackend {
    db: Database,
    /// Indexed by [`Column::index`].
    keyspaces: Vec<Keyspace>,
}

impl std::fmt::Debug for FjallBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallBackend").finish_non_exhaustive()
    }
}

fn backend_err(e: fjall::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// Block cache of the store.
const BLOCK_CACHE_BYTES: u64 = 64 << 20;
/// Journal size at which sealed memtables are flushed (fjall's minimum is 64 MiB).
const JOURNAL_BYTES: u64 = 128 << 20;
/// One column's memtable before it is sealed and flushed.
const MEMTABLE_BYTES: u64 = 16 << 20;

impl FjallBackend {
    /// Opens (creating if needed) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        // Memory is bounded: with fjall's defaults (64 MiB memtables for each of the 9 columns,
        // 512 MiB of journal before sealed memtables must be flushed) a node's RSS grew from 150
        // to ~500 MB in 90 s of saturation. Small memtables and a smaller journal bound keep it
        // near 250 MB at the same throughput.
        //
        // One background worker: with two or more, fjall 3.1's first worker hands every
        // compaction request back to the queue while another worker compacts, and picks it up
        // again at once: a busy loop that took ~20 % of a validator's CPU under load (profile
        // in docs/BENCHMARKS.md). One worker flushes and compacts in turn.
        let db = Database::builder(path)
            .cache_size(BLOCK_CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .worker_threads(1)
            .open()
            .map_err(backend_err)?;
        let keyspaces = Column::ALL
            .iter()
            .map(|c| {
                db.keyspace(c.name(), || {
                    let opts = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
                    if *c == Column::Blocks {
                        // Blocks and batches are large: kept in blob files beside the tree, so
                        // compactions move only their keys. (An acknowledged batch is written
                        // twice, pending and then executed, and the pending copy deleted: blob
                        // garbage collection reclaims it. Options apply to a column when it
                        // is created, so older data folders keep values in the tree.) The blobs stay
                        // lz4-compressed: without it the ordering benchmark (whose padding
                        // compresses well) became disk-bound at 135k TPS (53k finalized instead
                        // of 134k), though lz4 took ~9 % of a validator's CPU there.
                        opts.with_kv_separation(Some(KvSeparationOptions::default()))
                    } else {
                        opts
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend_err)?;
        tracing::debug!(path = %path.display(), "opened fjall storage");
        Ok(Self { db, keyspaces })
    }

    fn ks(&self, col: Column) -> &Keyspace {
        &self.keyspaces[col.index()]
    }
}

impl KvBackend for FjallBackend {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .ks(col)
            .get(key)
            .map_err(backend_err)?
            .map(|v| v.to_vec()))
    }

    fn contains(&self, col: Column, key: &[u8]) -> Result<bool, StorageError> {
        self.ks(col).contains_key(key).map_err(backend_err)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        // WriteBatch holds one op per key, which matters: fjall gives every
        // item of a batch the same sequence number.
        let mut fb = self.db.batch();
        if sync {
            fb = fb.durability(Some(PersistMode::SyncAll));
        }
        for (col, key, value) in batch.into_ops() {
            match value {
                Some(v) => fb.insert(self.ks(col), key, v),
                None => fb.remove(self.ks(col), key),
            }
        }
        fb.commit().map_err(backend_err)
    }

    fn range(
        &self,
        col: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StorageError> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for guard in self.ks(col).range(start..end).take(limit) {
            let (k, v) = guard.into_inner().map_err(backend_err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last(&self, col: Column) -> Result<Option<KvPair>, StorageError> {
        match self.ks(col).last_key_value() {
            None => Ok(None),
            Some(guard) => {
                let (k, v) = guard.into_inner().map_err(backend_err)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn disk_size_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}
