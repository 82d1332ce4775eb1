//! Batched dissemination (a quorum store): validators put client transactions into batches and
//! broadcast them; peers store a batch and sign an acknowledgement; a quorum of acknowledgements
//! is a proof of availability, and consensus orders proofs (a few hundred bytes) instead of
//! transaction bytes.
//!
//! Two kinds of acknowledgement: *checked* ("I store this batch and every signature in it
//! verifies", over [`BatchInfo::ack_message`]) and *stored* ("I store this batch", over
//! [`BatchInfo::store_message`]). The author names, with each batch it sends, the peers it asks
//! to check it; the others store it and acknowledge at once, without verifying a signature.
//!
//! Why a proof lets execution skip signature checks: a proof carries `n - f` distinct committee
//! signatures, and at least `f + 1` of them are checked acknowledgements. At most `f` signers are
//! faulty, so at least one honest validator verified every transaction's signature in exactly
//! these bytes (the acknowledgement signs the batch's digest); signature validity is a pure
//! function of those bytes, so skipping the check gives the same result on every validator. The
//! `n - f` signers still promise availability: at least `f + 1` honest validators stored the
//! batch. Each transaction is so verified `f + 1` times in all (its author's admission check
//! counts when the author is honest) instead of `n` times.

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

    /// The message a stored (unchecked) acknowledgement signs: "I store this batch".
    pub fn store_message(&self, chain_id: &str) -> Digest {
        hash_parts(
            "netchain/batch-stored/v1",
            &[chain_id.as_bytes(), &codec::encode(self)],
        )
    }

    /// [`BatchInfo::ack_message`] when `checked`, else [`BatchInfo::store_message`].
    pub fn acknowledgement_message(&self, chain_id: &str, checked: bool) -> Digest {
        if checked {
            self.ack_message(chain_id)
        } else {
            self.store_message(chain_id)
        }
    }
}

/// `n - f` acknowledgements of one batch, at least `f + 1` of them checked: it is available (at
/// least `f + 1` honest validators store it) and an honest validator checked its signatures.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProofOfAvailability {
    /// The batch.
    pub info: BatchInfo,
    /// Signers and their signatures, by ascending index: over [`BatchInfo::ack_message`], or
    /// over [`BatchInfo::store_message`] for those listed in `stored_only`.
    pub signers: Vec<(ValidatorIndex, Signature)>,
    /// Signers whose acknowledgement is a stored one, by ascending index.
    pub stored_only: Vec<ValidatorIndex>,
}

impl ProofOfAvailability {
    /// The proof made of acknowledgements given in ascending signer order: each signer, its
    /// signature and whether its acknowledgement is a checked one.
    pub fn from_acknowledgements(
        info: BatchInfo,
        acks: impl IntoIterator<Item = (ValidatorIndex, Signature, bool)>,
    ) -> Self {
        let mut signers = Vec::new();
        let mut stored_only = Vec::new();
        for (signer, signature, checked) in acks {
            signers.push((signer, signature));
            if !checked {
                stored_only.push(signer);
            }
        }
        Self {
            info,
            signers,
            stored_only,
        }
    }

    /// Whether `signer`'s acknowledgement in this proof is a checked one.
    pub fn checked_by(&self, signer: ValidatorIndex) -> bool {
        self.stored_only.binary_search(&signer).is_err()
    }
}
