//! The validator set of one chain.

use crate::PublicKey;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A validator's position in the committee; leaders and certificate signers are named by index.
pub type ValidatorIndex = u16;

/// One validator of the committee.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    /// Consensus and network identity key.
    pub public_key: PublicKey,
    /// Peer-to-peer address (`host:port`).
    pub p2p_address: String,
    /// HTTP API address (`host:port`).
    pub api_address: String,
}

/// The validator set: `n = 3f + 1` tolerates `f` faulty members.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Committee {
    /// Members in index order.
    pub validators: Vec<Validator>,
}

impl Committee {
    /// Number of validators.
    pub fn size(&self) -> usize {
        self.validators.len()
    }

    /// Largest number of faulty validators tolerated.
    pub fn max_faulty(&self) -> usize {
        self.size().saturating_sub(1) / 3
    }

    /// Signatures needed for a certificate: `n - f` (2f+1 when n = 3f+1).
    pub fn quorum(&self) -> usize {
        self.size() - self.max_faulty()
    }

    /// Leader of a round (round-robin).
    pub fn leader(&self, round: u64) -> ValidatorIndex {
        (round % self.size() as u64) as ValidatorIndex
    }

    /// Public key of a member, if the index is in range.
    pub fn key(&self, index: ValidatorIndex) -> Option<&PublicKey> {
        self.validators.get(index as usize).map(|v| &v.public_key)
    }

    /// Index of the member with this key.
    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.validators
            .iter()
            .position(|v| &v.public_key == key)
            .map(|i| i as ValidatorIndex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee(n: usize) -> Committee {
        Committee {
            validators: (0..n)
                .map(|i| Validator {
                    public_key: PublicKey([i as u8; 32]),
                    p2p_address: String::new(),
                    api_address: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!((committee(4).max_faulty(), committee(4).quorum()), (1, 3));
        assert_eq!((committee(7).max_faulty(), committee(7).quorum()), (2, 5));
        assert_eq!((committee(1).max_faulty(), committee(1).quorum()), (0, 1));
        assert_eq!(committee(5).quorum(), 4);
    }

    #[test]
    fn leader_rotates() {
        let c = committee(4);
        let leaders: Vec<_> = (0..8).map(|r| c.leader(r)).collect();
        assert_eq!(leaders, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(c.index_of(&PublicKey([2; 32])), Some(2));
        assert_eq!(c.index_of(&PublicKey([9; 32])), None);
    }
}
