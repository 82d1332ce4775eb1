//! Core data types of netchain and their one canonical codec.
//!
//! Design note: every value that is signed, hashed or sent between nodes is encoded with borsh
//! (deterministic, no optional fields, trailing bytes rejected), so one encoding defines identity.
//! Byte arrays show as lowercase hex in JSON. This crate has no I/O and no crypto: signatures are
//! carried here as bytes and checked by `netchain-crypto`.

pub mod batch;
pub mod bytes;
pub mod codec;
pub mod committee;
pub mod consensus;
pub mod currency;
pub mod identity;
pub mod registry;
pub mod tx;

pub use batch::{Batch, BatchInfo, ProofOfAvailability};
pub use bytes::{Digest, PublicKey, Reference, Signature};
pub use codec::{decode, encode, CodecError};
pub use committee::{Committee, Validator, ValidatorIndex};
pub use consensus::{
    Block, CertifiedCheckpoint, Checkpoint, ConsensusMessage, Proposal, QuorumCert, Timeout,
    TimeoutCert, Vote,
};
pub use tx::{Account, Payload, Receipt, SignedTransaction, Transaction, TxId, TxOutcome};

/// Upper bound on a chain id's length in bytes.
pub const CHAIN_ID_MAX_BYTES: usize = 32;

/// Whether `id` is a well-formed chain id: 1 to 32 bytes of `a-z 0-9 -`.
pub fn valid_chain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CHAIN_ID_MAX_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Domain-separated blake3 hash of `parts`: `blake3(domain || 0x00 || parts...)`.
pub fn hash_parts(domain: &str, parts: &[&[u8]]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain.as_bytes());
    hasher.update(&[0]);
    for part in parts {
        hasher.update(part);
    }
    Digest(*hasher.finalize().as_bytes())
}
