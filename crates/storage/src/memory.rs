//! In-memory backend.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::kv::{Column, KvBackend, KvPair, WriteBatch};
use crate::StorageError;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`KvBackend`] keeping one `BTreeMap` per column behind a lock.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    cols: RwLock<[Table; Column::ALL.len()]>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, [Table; Column::ALL.len()]> {
        // A panic while holding the lock cannot leave a half-applied batch
        // (batches are applied in one loop without fallible steps), so
        // recovering from poisoning is safe.
        self.cols.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, [Table; Column::ALL.len()]> {
        self.cols.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvBackend for MemoryBackend {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read()[col.index()].get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<(), StorageError> {
        let mut cols = self.write_lock();
        for (col, key, value) in batch.into_ops() {
            let table = &mut cols[col.index()];
            match value {
                Some(v) => table.insert(key, v),
                None => table.remove(&key),
            };
        }
        Ok(())
    }

    fn range(
        &self,
        col: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let cols = self.read();
        Ok(cols[col.index()]
            .range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, col: Column) -> Result<Option<KvPair>, StorageError> {
        Ok(self.read()[col.index()]
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn disk_size_bytes(&self) -> u64 {
        0
    }
}
