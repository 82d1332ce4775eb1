//! Transactions and accounts.

use crate::{bytes::Signature, codec, hash_parts, Digest, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A transaction id: the domain-separated hash of the signed content (not of the signature, so a
/// re-encoded signature cannot create a second id for the same transaction).
pub type TxId = Digest;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    /// Moves `amount` of the chain's native asset from the sender to `to`.
    Transfer {
        /// Receiving account.
        to: PublicKey,
        /// Amount in the smallest unit.
        amount: u64,
    },
}

/// The signed content of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The chain this transaction is valid on (replay protection across chains).
    pub chain_id: String,
    /// The signing account.
    pub sender: PublicKey,
    /// Must equal the sender's account nonce when executed (replay protection on one chain).
    pub nonce: u64,
    /// The operation.
    pub payload: Payload,
}

impl Transaction {
    /// Domain tag of the signing message.
    pub const SIGNING_DOMAIN: &'static str = "netchain/tx/v1";

    /// The bytes that are signed: a domain-separated hash of the canonical encoding.
    pub fn signing_message(&self) -> Digest {
        hash_parts(Self::SIGNING_DOMAIN, &[&codec::encode(self)])
    }
}

/// A transaction with the sender's signature over [`Transaction::signing_message`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTransaction {
    /// Signed content.
    pub tx: Transaction,
    /// ed25519 signature by `tx.sender`.
    pub signature: Signature,
}

impl SignedTransaction {
    /// The transaction id.
    pub fn id(&self) -> TxId {
        self.tx.signing_message()
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// An account's state.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Account {
    /// Balance of the native asset.
    pub balance: u64,
    /// Nonce the next transaction from this account must carry.
    pub nonce: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedTransaction {
        SignedTransaction {
            tx: Transaction {
                chain_id: "test".into(),
                sender: PublicKey([1; 32]),
                nonce: 3,
                payload: Payload::Transfer {
                    to: PublicKey([2; 32]),
                    amount: 10,
                },
            },
            signature: Signature([9; 64]),
        }
    }

    #[test]
    fn id_ignores_signature_and_codec_round_trips() {
        let a = sample();
        let mut b = a.clone();
        b.signature = Signature([8; 64]);
        assert_eq!(a.id(), b.id());
        let bytes = a.to_bytes();
        assert_eq!(codec::decode::<SignedTransaction>(&bytes, 1024).unwrap(), a);
        let mut c = a.clone();
        c.tx.nonce = 4;
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn json_shape_and_unknown_fields_rejected() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(json.contains("\"type\":\"transfer\""), "{json}");
        let back: SignedTransaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sample());
        let extra = json.replacen("\"nonce\"", "\"evil\":1,\"nonce\"", 1);
        assert!(serde_json::from_str::<SignedTransaction>(&extra).is_err());
    }
}

/// The outcome of one transaction in a committed block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    /// Applied to the state.
    Applied,
    /// Refused by execution; the state did not change.
    Rejected {
        /// Stable machine-readable code.
        code: String,
        /// Human-readable reason.
        message: String,
    },
}

/// Where and how a transaction was executed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// Transaction id.
    pub tx_id: TxId,
    /// Height of the block that carried it.
    pub height: u64,
    /// Position in that block.
    pub index: u32,
    /// Result.
    pub outcome: TxOutcome,
}
