//! Simulated storage: a key-value backend that knows which writes were synced.
//!
//! A write with `sync = true` makes itself and every earlier write durable (a journal flush, as
//! in fjall). Writes without sync are visible to the running process but sit in a log; at a crash
//! each of them independently survives or is lost, and a surviving batch may be torn (only some
//! of its keys land). That is the worst a real disk may do to unsynced data.

use crate::rng::Rng;
use netchain_storage::{Column, KvBackend, KvPair, StorageError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::Mutex;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;
type Tables = Vec<Table>;

#[derive(Default)]
struct State {
    /// What the running process sees.
    live: Tables,
    /// What survives a crash for certain.
    durable: Tables,
    /// Unsynced batches, oldest first.
    unsynced: Vec<WriteBatch>,
}

/// A simulated disk of one validator; survives the validator's crashes.
pub struct SimDisk {
    state: Mutex<State>,
}

/// What a crash did to the unsynced writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashLoss {
    /// Unsynced batches lost entirely.
    pub lost: usize,
    /// Unsynced batches that landed only partly.
    pub torn: usize,
    /// Unsynced batches that landed whole.
    pub kept: usize,
}

fn apply(tables: &mut Tables, batch: &WriteBatch) {
    for (col, key, value) in batch.iter() {
        let table = &mut tables[col.index()];
        match value {
            Some(v) => table.insert(key.to_vec(), v.to_vec()),
            None => table.remove(key),
        };
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        let empty = vec![Table::new(); Column::ALL.len()];
        Self {
            state: Mutex::new(State {
                live: empty.clone(),
                durable: empty,
                unsynced: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process died: unsynced writes survive with `survive_per_mille`, surviving ones are torn
    /// with `torn_per_mille`, and the process view is reset to what is on disk.
    pub fn crash(&self, rng: &mut Rng, survive_per_mille: u32, torn_per_mille: u32) -> CrashLoss {
        let mut st = self.lock();
        let mut loss = CrashLoss::default();
        for batch in std::mem::take(&mut st.unsynced) {
            if !rng.chance(survive_per_mille) {
                loss.lost += 1;
                continue;
            }
            if rng.chance(torn_per_mille) {
                let mut part = WriteBatch::new();
                for (col, key, value) in batch.iter() {
                    if rng.chance(500) {
                        match value {
                            Some(v) => part.put(col, key.to_vec(), v.to_vec()),
                            None => part.delete(col, key.to_vec()),
                        }
                    }
                }
                apply(&mut st.durable, &part);
                loss.torn += 1;
            } else {
                apply(&mut st.durable, &batch);
                loss.kept += 1;
            }
        }
        st.live = st.durable.clone();
        loss
    }

    /// Unsynced batches waiting for the next sync.
    pub fn unsynced_len(&self) -> usize {
        self.lock().unsynced.len()
    }
}

impl KvBackend for SimDisk {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().live[col.index()].get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut st = self.lock();
        apply(&mut st.live, &batch);
        if sync {
            let pending = std::mem::take(&mut st.unsynced);
            for b in &pending {
                apply(&mut st.durable, b);
            }
            apply(&mut st.durable, &batch);
        } else {
            st.unsynced.push(batch);
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
        let st = self.lock();
        Ok(st.live[col.index()]
            .range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, col: Column) -> Result<Option<KvPair>, StorageError> {
        Ok(self.lock().live[col.index()]
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn disk_size_bytes(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(disk: &SimDisk, key: u8, sync: bool) {
        let mut b = WriteBatch::new();
        b.put(Column::Blocks, vec![key], vec![key]);
        disk.write(b, sync).unwrap();
    }

    #[test]
    fn synced_writes_survive_and_flush_earlier_ones() {
        let disk = SimDisk::new();
        put(&disk, 1, false);
        put(&disk, 2, true);
        put(&disk, 3, false);
        assert_eq!(disk.get(Column::Blocks, &[3]).unwrap(), Some(vec![3]));
        let loss = disk.crash(&mut Rng::new(1), 0, 0);
        assert_eq!(loss.lost, 1);
        assert!(disk.get(Column::Blocks, &[1]).unwrap().is_some());
        assert!(disk.get(Column::Blocks, &[2]).unwrap().is_some());
        assert!(disk.get(Column::Blocks, &[3]).unwrap().is_none());
    }

    #[test]
    fn unsynced_writes_may_survive() {
        let disk = SimDisk::new();
        put(&disk, 1, false);
        let loss = disk.crash(&mut Rng::new(1), 1000, 0);
        assert_eq!(loss.kept, 1);
        assert!(disk.get(Column::Blocks, &[1]).unwrap().is_some());
        assert_eq!(disk.unsynced_len(), 0);
    }
}
