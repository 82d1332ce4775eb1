//! Fault-injecting wrapper for error-path tests.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::kv::{Column, KvBackend, KvPair, WriteBatch};
use crate::StorageError;

/// Wraps a backend and fails writes once a configured number have succeeded.
///
/// Reads always pass through. A failed write applies nothing.
#[derive(Debug)]
pub struct FaultyBackend<B> {
    inner: B,
    /// Remaining writes allowed; `u64::MAX` means unlimited.
    writes_left: AtomicU64,
}

impl<B: KvBackend> FaultyBackend<B> {
    /// Wraps `inner`; writes succeed until [`Self::fail_writes_after`] is called.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            writes_left: AtomicU64::new(u64::MAX),
        }
    }

    /// Lets the next `n` writes succeed, then fails every later write with
    /// [`StorageError::InjectedFault`].
    pub fn fail_writes_after(&self, n: u64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.writes_left.store(u64::MAX, Ordering::SeqCst);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: KvBackend> KvBackend for FaultyBackend<B> {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(col, key)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let allowed = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                u64::MAX => Some(n),
                0 => None,
                _ => Some(n - 1),
            })
            .is_ok();
        if !allowed {
            tracing::debug!("faulty backend: injecting write failure");
            return Err(StorageError::InjectedFault);
        }
        self.inner.write(batch, sync)
    }

    fn range(
        &self,
        col: Column,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StorageError> {
        self.inner.range(col, start, end, limit)
    }

    fn last(&self, col: Column) -> Result<Option<KvPair>, StorageError> {
        self.inner.last(col)
    }

    fn disk_size_bytes(&self) -> u64 {
        self.inner.disk_size_bytes()
    }
}
