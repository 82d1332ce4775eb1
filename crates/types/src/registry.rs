//! The root chain's registry of service chains and their anchors.
//!
//! Design note: a root chain's genesis names the consortium's governing keys and how many of them
//! must approve a change. Registering a service chain or giving it a new validator set (a new
//! epoch) is a transaction carrying that many approvals. A service chain anchors itself by
//! submitting a checkpoint certified by a quorum of its registered validators; to show that the
//! new checkpoint extends the previous anchor, it carries a Merkle proof, against the new state
//! root, that the chain's block history (`history_key`) holds the previously anchored block at
//! its height. Every engine writes that history: block `h` records its parent's id under
//! `history_key(h - 1)`.

use crate::{codec, hash_parts, CertifiedCheckpoint, Digest, PublicKey, Signature, Validator};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Most governing keys.
pub const GOVERNORS_MAX: usize = 64;
/// Longest purpose text in bytes.
pub const PURPOSE_MAX: usize = 128;
/// Most validators of a service chain.
pub const SERVICE_VALIDATORS_MAX: usize = 256;

/// The consortium's governing keys and how many must approve a registry change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// Governing keys (their order gives each one's index in approvals).
    pub keys: Vec<PublicKey>,
    /// Approvals needed.
    pub threshold: u32,
}

impl Governance {
    /// Checks the bounds: 1..=64 distinct keys, 1 <= threshold <= keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys.is_empty() || self.keys.len() > GOVERNORS_MAX {
            return Err(format!("1 to {GOVERNORS_MAX} governing keys"));
        }
        let mut keys = self.keys.clone();
        keys.sort();
        keys.dedup();
        if keys.len() != self.keys.len() {
            return Err("duplicate governing key".into());
        }
        if self.threshold == 0 || self.threshold as usize > self.keys.len() {
            return Err(format!(
                "threshold {} must be 1 to {}",
                self.threshold,
                self.keys.len()
            ));
        }
        Ok(())
    }
}

/// What a chain is, as its genesis says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChainRole {
    /// A chain on its own (no registry, not anchored).
    #[default]
    Standalone,
    /// The root network chain: holds the registry of service chains and their anchors.
    Root {
        /// Who may change the registry.
        governance: Governance,
    },
    /// A service chain that anchors to a root chain.
    Service {
        /// The root's chain id.
        root_chain_id: String,
        /// The root's genesis hash.
        root_genesis_hash: Digest,
    },
}

impl ChainRole {
    /// Whether this is the default (so genesis files without a role keep their hash).
    pub fn is_standalone(&self) -> bool {
        matches!(self, Self::Standalone)
    }
}

/// A service chain as the root registers it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceChain {
    /// Its chain id.
    pub chain_id: String,
    /// What it is for (e.g. "local currency of Seoul").
    pub purpose: String,
    /// Id of its genesis block (its first anchor must extend it).
    pub genesis_block_id: Digest,
    /// Its validators: keys and network addresses (epoch 0).
    pub validators: Vec<Validator>,
}

/// A governing key's approval of a registry change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Index of the governing key.
    pub governor: u16,
    /// Its signature over the change's [`approval_message`].
    pub signature: Signature,
}

/// A registry change that needs approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryChange {
    /// Registers a new service chain.
    Register(ServiceChain),
    /// Replaces a chain's validator set from `epoch` on (the next epoch).
    SetValidators {
        /// Chain.
        chain_id: String,
        /// The new epoch: the current one plus one.
        epoch: u64,
        /// The new validators.
        validators: Vec<Validator>,
    },
}

/// The message governing keys sign to approve `change` on the root chain `root_chain_id` whose
/// genesis hash is `root_genesis_hash` (so an approval cannot be replayed on another network that
/// reuses the chain id and the governing keys).
pub fn approval_message(
    root_chain_id: &str,
    root_genesis_hash: &Digest,
    change: &RegistryChange,
) -> Digest {
    hash_parts(
        "netchain/registry/approval/v2",
        &[
            root_chain_id.as_bytes(),
            &root_genesis_hash.0,
            &codec::encode(change),
        ],
    )
}

/// A service chain's checkpoint submitted to the root chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The validator-set epoch whose quorum certified the checkpoint.
    pub epoch: u64,
    /// The certified checkpoint (its `chain_id` names the service chain).
    pub checkpoint: CertifiedCheckpoint,
    /// Hex-free bytes of a state proof, against `checkpoint.state_root`, that
    /// `history_key(previous anchored height)` holds the previously anchored block id (or the
    /// genesis block id at height 0 for the first anchor).
    pub extension_proof: Vec<u8>,
}

/// Operations of the `registry` module (root chain only).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryOp {
    /// A change approved by at least the threshold of governing keys.
    Change {
        /// The change.
        change: RegistryChange,
        /// Approvals, by ascending governor index.
        approvals: Vec<Approval>,
    },
    /// A service chain's anchor (anyone may relay it: the certificate is what counts).
    Anchor(Anchor),
}

/// State key under which block `height`'s id is recorded (by block `height + 1`).
pub fn history_key(height: u64) -> Vec<u8> {
    let mut k = b"hist/".to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governance_bounds() {
        let g = |n: u8, t| Governance {
            keys: (0..n).map(|i| PublicKey([i; 32])).collect(),
            threshold: t,
        };
        assert!(g(3, 2).validate().is_ok());
        assert!(g(3, 0).validate().is_err());
        assert!(g(3, 4).validate().is_err());
        assert!(g(0, 0).validate().is_err());
        let mut dup = g(2, 1);
        dup.keys[1] = dup.keys[0];
        assert!(dup.validate().is_err());
    }

    #[test]
    fn role_json_and_default() {
        assert!(ChainRole::default().is_standalone());
        let r = ChainRole::Service {
            root_chain_id: "root".into(),
            root_genesis_hash: Digest([1; 32]),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with(r#"{"kind":"service""#), "{json}");
        assert_eq!(serde_json::from_str::<ChainRole>(&json).unwrap(), r);
    }
}
