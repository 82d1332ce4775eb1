//! Transactions and accounts.

use crate::{
    bytes::Signature,
    codec,
    currency::{CurrencyOp, VoucherOp},
    hash_parts,
    identity::IdentityOp,
    registry::{RegistryChange, RegistryOp},
    Digest, PublicKey,
};
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
        /// Free-form reference for the parties (invoice number, padding); hex in JSON. Bounded
        /// only by the node's transaction size limit; execution ignores it.
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            with = "crate::bytes::hex_vec"
        )]
        memo: Vec<u8>,
    },
    /// An operation of the local-currency module.
    Currency(CurrencyOp),
    /// An operation of the gift-voucher module.
    Voucher(VoucherOp),
    /// An operation of the root chain's registry of service chains.
    Registry(RegistryOp),
    /// An operation of the identity registry (Network ID).
    Identity(IdentityOp),
}

impl Payload {
    /// The module that executes this payload: `transfer`, `currency` or `voucher`.
    pub fn module(&self) -> &'static str {
        match self {
            Self::Transfer { .. } => "transfer",
            Self::Currency(_) => "currency",
            Self::Voucher(_) => "voucher",
            Self::Registry(_) => "registry",
            Self::Identity(_) => "identity",
        }
    }

    /// The operation's name within its module (`transfer`, `pay`, `charge`, `redeem` ...).
    pub fn op(&self) -> &'static str {
        match self {
            Self::Transfer { .. } => "transfer",
            Self::Currency(op) => match op {
                CurrencyOp::Define { .. } => "define",
                CurrencyOp::SetRules { .. } => "set_rules",
                CurrencyOp::RegisterMerchants { .. } => "register_merchants",
                CurrencyOp::SetMerchantActive { .. } => "set_merchant_active",
                CurrencyOp::VerifyResidents { .. } => "verify_residents",
                CurrencyOp::Charge { .. } => "charge",
                CurrencyOp::Pay { .. } => "pay",
                CurrencyOp::Collect { .. } => "collect",
                CurrencyOp::Refund { .. } => "refund",
                CurrencyOp::Redeem { .. } => "redeem",
                CurrencyOp::ConfirmSettlement { .. } => "confirm_settlement",
            },
            Self::Voucher(op) => match op {
                VoucherOp::Issue { .. } => "issue",
                VoucherOp::Transfer { .. } => "transfer",
                VoucherOp::Redeem { .. } => "redeem",
                VoucherOp::Reclaim { .. } => "reclaim",
            },
            Self::Registry(RegistryOp::Change { change, .. }) => match change {
                RegistryChange::Register(_) => "register_chain",
                RegistryChange::SetValidators { .. } => "set_validators",
            },
            Self::Registry(RegistryOp::Anchor(_)) => "anchor",
            Self::Identity(op) => op.name(),
        }
    }

    /// The other account a payload names (recipient, merchant, payer) and the amount it moves,
    /// where there is one: what event filters and explorers show.
    pub fn counterparty(&self) -> (Option<PublicKey>, Option<u64>) {
        match self {
            Self::Transfer { to, amount, .. } => (Some(*to), Some(*amount)),
            Self::Currency(CurrencyOp::Pay { request, .. }) => {
                (Some(request.merchant), Some(request.amount))
            }
            Self::Currency(CurrencyOp::Collect {
                authorization,
                amount,
                ..
            }) => (Some(authorization.payer), Some(*amount)),
            Self::Currency(CurrencyOp::Refund { amount, .. })
            | Self::Currency(CurrencyOp::Redeem { amount, .. }) => (None, Some(*amount)),
            Self::Currency(CurrencyOp::Charge { deposits, .. }) => (
                (deposits.len() == 1).then(|| deposits[0].wallet),
                Some(
                    deposits
                        .iter()
                        .fold(0u64, |s, d| s.saturating_add(d.amount)),
                ),
            ),
            Self::Voucher(VoucherOp::Issue {
                to,
                face_value,
                count,
                ..
            }) => (
                Some(*to),
                Some(face_value.saturating_mul(u64::from(*count))),
            ),
            Self::Voucher(VoucherOp::Transfer { to, .. }) => (Some(*to), None),
            Self::Voucher(VoucherOp::Redeem {
                merchant, amount, ..
            }) => (Some(*merchant), Some(*amount)),
            _ => (None, None),
        }
    }
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
                    memo: Vec::new(),
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

    #[test]
    fn transfer_memo_is_hex_in_json_and_absent_when_empty() {
        let plain = serde_json::to_string(&sample()).unwrap();
        assert!(!plain.contains("memo"), "{plain}");
        let mut padded = sample();
        padded.tx.payload = Payload::Transfer {
            to: PublicKey([2; 32]),
            amount: 10,
            memo: vec![0xab, 0x01],
        };
        let json = serde_json::to_string(&padded).unwrap();
        assert!(json.contains(r#""memo":"ab01""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SignedTransaction>(&json).unwrap(),
            padded
        );
        let bad = json.replace("ab01", "zz");
        let err = serde_json::from_str::<SignedTransaction>(&bad).unwrap_err();
        assert!(err.to_string().contains("hex"), "{err}");
        // The memo is signed content: changing it changes the id.
        assert_ne!(padded.id(), sample().id());
        assert_eq!(
            codec::encoded_len(&padded),
            codec::encode(&padded).len(),
            "encoded_len agrees with the encoding"
        );
    }

    #[test]
    fn module_payloads_have_flat_json() {
        let p = Payload::Currency(CurrencyOp::Redeem {
            currency: "SEOUL".into(),
            amount: 7,
        });
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"type":"currency","op":"redeem","currency":"SEOUL","amount":7}"#
        );
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
        let extra = json.replace("\"amount\"", "\"evil\":1,\"amount\"");
        assert!(serde_json::from_str::<Payload>(&extra).is_err(), "{extra}");
        assert_eq!(p.module(), "currency");
        assert_eq!(p.op(), "redeem");
    }
}

/// The outcome of one transaction in a committed block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    /// Applied to the state.
    Applied,
    /// Refused by execution: nothing moved; the sender's nonce is used up unless the refusal was
    /// on the signature, the chain id or the nonce itself.
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
