//! Batched dissemination (a quorum store): validators put client transactions into batches and
//! broadcast them; peers that stored a batch and checked every signature in it sign an
//! acknowledgement; a quorum of acknowledgements is a proof of availability, and consensus orders
//! proofs (a few hundred bytes) instead of transaction bytes.
//!
//! Why a proof lets execution skip signature checks: an honest validator acknowledges a batch only
//! after verifying every transaction's signature in it. A proof carries `n - f` distinct
//! committee signatures, so at least `f + 1` of them are honest, and at least one honest
//! validator checked every signature of exactly these bytes (the acknowledgement signs the
//! batch's digest). Signature validity is a pure function of those bytes, so skipping the check
//! gives the same result on every validator.

use crate::{codec, hash_parts, Digest, Signature, SignedTransaction, ValidatorIndex};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Client transactions one validator disseminates together.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Batch {
    /// Chain the batch belongs to.
    pub chain_id: String,
    /// Validator that made it.
    pub author: ValidatorIndex,
    /// The author's sequence number (increasing; orders an author's batches).
    pub seq: u64,
    /// After this time (author's clock, ms since the Unix epoch) no block may include it.
    pub expires_ms: u64,
    /// The transactions, in the order they execute.
    pub txs: Vec<SignedTransaction>,
}

impl Batch {
    /// The batch's digest: the hash of its canonical encoding.
    pub fn digest(&self) -> Digest {
        hash_parts("netchain/batch/v1", &[&codec::encode(self)])
    }

    /// The summary acknowledgements and proofs sign.
    pub fn info(&self) -> BatchInfo {
        let encoded = codec::encode(self);
        BatchInfo {
            author: self.author,
            seq: self.seq,
            digest: hash_parts("netchain/batch/v1", &[&encoded]),
            tx_count: self.txs.len() as u32,
            bytes: encoded.len() as u32,
            expires_ms: self.expires_ms,
        }
    }
}

/// What acknowledgements and proofs of availability sign about a batch.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct BatchInfo {
    /// Validator that made the batch.
    pub author: ValidatorIndex,
    /// Its sequence number.
    pub seq: u64,
    /// [`Batch::digest`].
    pub digest: Digest,
    /// Transactions in it.
    pub tx_count: u32,
    /// Its encoded size.
    pub bytes: u32,
    /// [`Batch::expires_ms`].
    pub expires_ms: u64,
}

impl BatchInfo {
    /// The message an acknowledgement signs: "I store this batch and every signature in it
    /// verifies".
    pub fn ack_message(&self, chain_id: &str) -> Digest {
        hash_parts(
            "netchain/batch-ack/v1",
            &[chain_id.as_bytes(), &codec::encode(self)],
        )
    }
}

/// `n - f` acknowledgements of one batch: it is available (at least `f + 1` honest validators
/// store it) and its signatures were checked.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProofOfAvailability {
    /// The batch.
    pub info: BatchInfo,
    /// Signers and their signatures over [`BatchInfo::ack_message`], by ascending index.
    pub signers: Vec<(ValidatorIndex, Signature)>,
}
