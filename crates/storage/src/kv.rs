//! Column names, write batches and the backend trait.

use crate::StorageError;

/// A logical column (fjall keyspace) of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Miscellaneous metadata (latest height, schema version, ...).
    Meta,
    /// Consensus safety data (last vote etc.), written with sync.
    Safety,
    /// Blocks by hash.
    Blocks,
    /// Height -> block hash index.
    Heights,
    /// Transaction index.
    Txs,
    /// Transaction receipts.
    Receipts,
    /// Finality checkpoints.
    Checkpoints,
    /// Jellyfish Merkle Tree nodes (leaves carry their key's value).
    JmtNodes,
    /// Jellyfish Merkle Tree values, versioned: written by older versions only (leaves now
    /// carry their values), still read for leaves those wrote.
    JmtValues,
}

impl Column {
    /// Every column, in declaration order.
    pub const ALL: [Column; 9] = [
        Column::Meta,
        Column::Safety,
        Column::Blocks,
        Column::Heights,
        Column::Txs,
        Column::Receipts,
        Column::Checkpoints,
        Column::JmtNodes,
        Column::JmtValues,
    ];

    /// Stable name, used as the on-disk keyspace name.
    pub fn name(&self) -> &'static str {
        match self {
            Column::Meta => "meta",
            Column::Safety => "safety",
            Column::Blocks => "blocks",
            Column::Heights => "heights",
            Column::Txs => "txs",
            Column::Receipts => "receipts",
            Column::Checkpoints => "checkpoints",
            Column::JmtNodes => "jmt_nodes",
            Column::JmtValues => "jmt_values",
        }
    }

    /// Position of the column in [`Column::ALL`].
    pub fn index(&self) -> usize {
        *self as usize
    }
}

/// One operation of a [`WriteBatch`]: a column, a key, and the value (`None`: delete).
type Op = (Column, Vec<u8>, Option<Vec<u8>>);

/// A set of puts and deletes applied atomically by [`KvBackend::write`].
///
/// Later operations on the same `(column, key)` replace earlier ones, so a
/// batch holds at most one operation per key.
///
/// Operations are appended as they come and put in `(column, key)` order, one per key, once:
/// when the batch is consumed (or read). A block's batch has thousands of operations, and
/// appending them then sorting once costs a fraction of keeping an ordered map up to date on
/// every put. A batch that keeps overwriting the same keys is compacted as it grows, so it
/// never holds much more than twice its distinct keys.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
    /// Length of `ops` when it was last put in order with one operation per key.
    compacted_len: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, op: Op) {
        self.ops.push(op);
        if self.ops.len() > 2 * self.compacted_len + 4_096 {
            self.compact();
        }
    }

    /// Puts `ops` in `(column, key)` order and keeps only the last operation on each key.
    fn compact(&mut self) {
        self.ops = normalized(std::mem::take(&mut self.ops));
        self.compacted_len = self.ops.len();
    }

    /// Sets `key` to `value` in `col`.
    pub fn put(&mut self, col: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.push((col, key.into(), Some(value.into())));
    }

    /// Deletes `key` from `col`.
    pub fn delete(&mut self, col: Column, key: impl Into<Vec<u8>>) {
        self.push((col, key.into(), None));
    }

    /// Number of distinct keys touched.
    pub fn len(&self) -> usize {
        self.ordered().len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends `other`; its operations win over ours on the same key.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.reserve(other.ops.len());
        for op in other.ops {
            self.push(op);
        }
    }

    /// Operations in `(column, key)` order, the last one on each key; `None` value means
    /// delete.
    pub fn iter(&self) -> impl Iterator<Item = (Column, &[u8], Option<&[u8]>)> {
        self.ordered()
            .into_iter()
            .map(|(c, k, v)| (*c, k.as_slice(), v.as_deref()))
    }

    /// Consumes the batch, yielding `(column, key, value-or-delete)` in `(column, key)`
    /// order, the last operation on each key.
    pub fn into_ops(self) -> impl Iterator<Item = (Column, Vec<u8>, Option<Vec<u8>>)> {
        normalized(self.ops).into_iter()
    }

    /// References to the operations in order, the last one on each key.
    fn ordered(&self) -> Vec<&Op> {
        let mut refs: Vec<(usize, &Op)> = self.ops.iter().enumerate().collect();
        // Latest first among equal keys, so the first of each run is the one that counts.
        refs.sort_unstable_by(|(ia, a), (ib, b)| (a.0, &a.1).cmp(&(b.0, &b.1)).then(ib.cmp(ia)));
        refs.dedup_by(|(_, op), (_, kept)| op.0 == kept.0 && op.1 == kept.1);
        refs.into_iter().map(|(_, op)| op).collect()
    }
}

/// `ops` in `(column, key)` order with only the last operation on each key.
fn normalized(mut ops: Vec<Op>) -> Vec<Op> {
    // Reversed, then a stable sort: among equal keys the latest comes first and is kept.
    ops.reverse();
    ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    ops.dedup_by(|op, kept| op.0 == kept.0 && op.1 == kept.1);
    ops
}

impl PartialEq for WriteBatch {
    /// Equal when applying either gives the same result.
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for WriteBatch {}

/// A `(key, value)` pair returned by scans.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A key-value store with named columns and atomic multi-column batches.
pub trait KvBackend: Send + Sync + 'static {
    /// Value stored under `key` in `col`.
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Whether `key` is in `col` (a backend that keeps large values apart answers without
    /// reading them).
    fn contains(&self, col: Column, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self.get(col, key)?.is_some())
    }

    /// Applies `batch` atomically across columns. With `sync` the batch is
    /// durable (fsynced) before returning and survives a process kill.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError>;

    /// Entries with `start <= key < end` in ascending key order, at most `limit`.
    fn range(
        &self,
        col: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StorageError>;

    /// The entry with the greatest key in `col`.
    fn last(&self, col: Column) -> Result<Option<KvPair>, StorageError>;

    /// Approximate bytes used on disk (0 for in-memory backends).
    fn disk_size_bytes(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The batch against an ordered map that takes every operation as it comes: the same
    /// operations, in the same order, one per key, whether read, consumed, or compacted on
    /// the way (enough operations on few keys to compact many times).
    #[test]
    fn write_batch_matches_an_ordered_map() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (ops, keys) in [
            (0, 1),
            (1, 1),
            (50, 4),
            (3_000, 64),
            (20_000, 300),
            (9_000, 9_000),
        ] {
            let mut batch = WriteBatch::new();
            let mut other = WriteBatch::new();
            // Every operation as made, per batch.
            let mut logs: [Vec<Op>; 2] = [Vec::new(), Vec::new()];
            for i in 0..ops {
                let r = next();
                let col = Column::ALL[(r % 3) as usize];
                let key = ((r >> 8) % keys).to_be_bytes()[4..].to_vec();
                let value = (r >> 40).to_le_bytes().to_vec();
                // A third of the operations go to a second batch appended at the end.
                let (target, log) = if i % 3 == 2 {
                    (&mut other, &mut logs[1])
                } else {
                    (&mut batch, &mut logs[0])
                };
                if r % 7 == 0 {
                    target.delete(col, key.clone());
                    log.push((col, key, None));
                } else {
                    target.put(col, key.clone(), value.clone());
                    log.push((col, key, Some(value)));
                }
            }
            // The model: the first batch's operations in order, then the second's.
            let mut model: BTreeMap<(Column, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
            for (c, k, v) in logs.into_iter().flatten() {
                model.insert((c, k), v);
            }
            batch.extend(other);
            assert_eq!(batch.len(), model.len());
            assert_eq!(batch.is_empty(), model.is_empty());
            let read: Vec<_> = batch
                .iter()
                .map(|(c, k, v)| (c, k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            let expected: Vec<_> = model.into_iter().map(|((c, k), v)| (c, k, v)).collect();
            assert_eq!(read, expected);
            assert!(batch.ops.len() <= 2 * batch.compacted_len + 4_096);
            let consumed: Vec<_> = batch.clone().into_ops().collect();
            assert_eq!(consumed, expected);
        }
    }

    #[test]
    fn batches_are_equal_when_they_write_the_same() {
        let mut a = WriteBatch::new();
        a.put(Column::Meta, b"k".to_vec(), b"1".to_vec());
        a.put(Column::Blocks, b"j".to_vec(), b"2".to_vec());
        a.put(Column::Meta, b"k".to_vec(), b"3".to_vec());
        let mut b = WriteBatch::new();
        b.put(Column::Blocks, b"j".to_vec(), b"2".to_vec());
        b.put(Column::Meta, b"k".to_vec(), b"3".to_vec());
        assert_eq!(a, b);
        b.delete(Column::Meta, b"k".to_vec());
        assert_ne!(a, b);
    }
}
