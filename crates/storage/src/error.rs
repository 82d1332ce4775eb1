//! Error type shared by every storage component.

use crate::kv::Column;

/// Errors returned by storage backends, the state tree and proof verification.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The underlying engine (fjall, filesystem) reported an error.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Bytes read from the store could not be decoded.
    #[error("corrupt data in column {col:?} at key {key_hex}: {reason}")]
    Corrupt {
        /// Column holding the bad entry.
        col: Column,
        /// Hex encoding of the entry's key.
        key_hex: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A write was refused by [`crate::FaultyBackend`].
    #[error("injected write fault")]
    InjectedFault,
    /// `StateTree::apply` was called with a version that does not extend the tree.
    #[error("invalid state version {version}: {reason}")]
    InvalidVersion {
        /// The version passed in.
        version: u64,
        /// Why it was rejected.
        reason: String,
    },
    /// A state query named a version that has no root.
    #[error("unknown state version {0}")]
    UnknownVersion(u64),
    /// The Merkle tree library reported an error.
    #[error("merkle tree error: {0}")]
    Tree(String),
    /// A state proof failed to decode or verify.
    #[error("invalid state proof: {0}")]
    InvalidProof(String),
}

impl StorageError {
    /// Builds a [`StorageError::Corrupt`] for `key` in `col`.
    pub fn corrupt(col: Column, key: &[u8], reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            col,
            key_hex: hex(key),
            reason: reason.into(),
        }
    }
}

/// Lower-case hex encoding (kept local to avoid a dependency).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}
