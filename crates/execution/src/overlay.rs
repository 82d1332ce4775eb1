//! A block's view of module state: reads fall through to the state tree at the parent height,
//! writes are staged per transaction and kept only when the transaction is applied.

use borsh::{BorshDeserialize, BorshSerialize};
use netchain_storage::{Column, KvBackend, StateTree, StorageError};
use netchain_types::codec;
use std::collections::BTreeMap;

struct Entry {
    original: Option<Vec<u8>>,
    current: Option<Vec<u8>>,
}

/// Module state of one block in execution.
pub(crate) struct Overlay<'a, B: KvBackend> {
    state: &'a StateTree<B>,
    base: u64,
    block: BTreeMap<Vec<u8>, Entry>,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a, B: KvBackend> Overlay<'a, B> {
    pub(crate) fn new(state: &'a StateTree<B>, base: u64) -> Self {
        Self {
            state,
            base,
            block: BTreeMap::new(),
            staged: BTreeMap::new(),
        }
    }

    /// The current value of `key` (staged, then this block, then the parent state).
    pub(crate) fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.staged.get(key) {
            return Ok(v.clone());
        }
        if let Some(e) = self.block.get(key) {
            return Ok(e.current.clone());
        }
        let original = self.state.get(key, self.base)?;
        self.block.insert(
            key.to_vec(),
            Entry {
                original: original.clone(),
                current: original.clone(),
            },
        );
        Ok(original)
    }

    /// The current value of `key`, decoded.
    pub(crate) fn get<T: BorshDeserialize>(
        &mut self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => decode_value(key, &bytes).map(Some),
        }
    }

    /// Stages a write for the transaction in progress.
    pub(crate) fn put<T: BorshSerialize>(&mut self, key: Vec<u8>, value: &T) {
        self.staged.insert(key, Some(codec::encode(value)));
    }

    /// Stages a deletion for the transaction in progress.
    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.staged.insert(key, None);
    }

    /// Keeps the staged writes (the transaction was applied).
    pub(crate) fn commit(&mut self) -> Result<(), StorageError> {
        for (key, value) in std::mem::take(&mut self.staged) {
            if !self.block.contains_key(&key) {
                let original = self.state.get(&key, self.base)?;
                self.block.insert(
                    key.clone(),
                    Entry {
                        original: original.clone(),
                        current: original,
                    },
                );
            }
            self.block.get_mut(&key).expect("present").current = value;
        }
        Ok(())
    }

    /// Drops the staged writes (the transaction was rejected).
    pub(crate) fn rollback(&mut self) {
        self.staged.clear();
    }

    /// The block's changed keys, in key order.
    pub(crate) fn into_updates(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        debug_assert!(self.staged.is_empty(), "uncommitted staged writes");
        self.block
            .into_iter()
            .filter(|(_, e)| e.current != e.original)
            .map(|(k, e)| (k, e.current))
            .collect()
    }
}

/// Decodes a stored module value, naming the key when it is corrupt.
pub(crate) fn decode_value<T: BorshDeserialize>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StorageError> {
    T::try_from_slice(bytes).map_err(|e| StorageError::Corrupt {
        col: Column::JmtNodes,
        key_hex: key.iter().map(|b| format!("{b:02x}")).collect(),
        reason: e.to_string(),
    })
}
