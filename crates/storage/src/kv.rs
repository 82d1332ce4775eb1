//! Column names, write batches and the backend trait.

use std::collections::BTreeMap;

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
    /// Jellyfish Merkle Tree nodes.
    JmtNodes,
    /// Jellyfish Merkle Tree values, versioned.
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

/// A set of puts and deletes applied atomically by [`KvBackend::write`].
///
/// Later operations on the same `(column, key)` replace earlier ones, so a
/// batch holds at most one operation per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: BTreeMap<(Column, Vec<u8>), Option<Vec<u8>>>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` in `col`.
    pub fn put(&mut self, col: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.insert((col, key.into()), Some(value.into()));
    }

    /// Deletes `key` from `col`.
    pub fn delete(&mut self, col: Column, key: impl Into<Vec<u8>>) {
        self.ops.insert((col, key.into()), None);
    }

    /// Number of distinct keys touched.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends `other`; its operations win over ours on the same key.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// Operations in `(column, key)` order; `None` value means delete.
    pub fn iter(&self) -> impl Iterator<Item = (Column, &[u8], Option<&[u8]>)> {
        self.ops
            .iter()
            .map(|((c, k), v)| (*c, k.as_slice(), v.as_deref()))
    }

    /// Consumes the batch, yielding `(column, key, value-or-delete)`.
    pub fn into_ops(self) -> impl Iterator<Item = (Column, Vec<u8>, Option<Vec<u8>>)> {
        self.ops.into_iter().map(|((c, k), v)| (c, k, v))
    }
}

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
