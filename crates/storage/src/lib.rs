//! Persistent storage for netchain.
//!
//! # Design
//!
//! * [`KvBackend`] is a tiny column-oriented key-value interface: point reads,
//!   ascending range scans, "greatest key" lookups and atomic multi-column
//!   [`WriteBatch`] commits. `sync = true` means the batch is fsynced before
//!   `write` returns. A batch has last-write-wins semantics per `(column, key)`.
//! * [`MemoryBackend`] (tests, ephemeral nodes) and [`FjallBackend`] (one fjall
//!   `Database`, one keyspace per [`Column`]) implement it; [`FaultyBackend`]
//!   wraps either to inject write failures.
//! * [`StateTree`] is a versioned Jellyfish Merkle Tree (jmt's roots, proofs
//!   and node format, blake3 hashing; updated by our own batched walk, one
//!   pass over a version's sorted keys) whose nodes live in
//!   [`Column::JmtNodes`], each leaf with its
//!   key's value (data folders from before that keep values in
//!   [`Column::JmtValues`], still read). `apply` never writes: it returns the root and a
//!   [`WriteBatch`] the caller commits (typically merged with block data) so
//!   that state and blocks become durable atomically. Versions are block
//!   heights; old versions are kept (no pruning yet), so historical reads and
//!   proofs work.
//! * [`StateProof`] is self-contained (borsh bytes of a jmt
//!   `SparseMerkleProof`) and verifies without any backend.
//! * Data read back from disk is never trusted: decoding failures surface as
//!   [`StorageError::Corrupt`], never as panics.

#![warn(missing_docs)]

mod chain;
mod error;
mod faulty;
mod fjall_backend;
mod kv;
mod memory;
mod state;

pub use chain::{ChainStore, ChainTip};
pub use error::StorageError;
pub use faulty::FaultyBackend;
pub use fjall_backend::FjallBackend;
pub use kv::{Column, KvBackend, KvPair, WriteBatch};
pub use memory::MemoryBackend;
pub use state::{empty_root, Blake3Hasher, StateProof, StateTree};
