//! Collects validators' signatures on executed checkpoints into certificates.

use crate::ConsensusError;
use netchain_crypto::verify;
use netchain_types::{CertifiedCheckpoint, Checkpoint, Committee, Signature, ValidatorIndex};
use std::collections::{BTreeMap, HashMap};

/// Aggregates checkpoint votes; keeps at most `window` heights at a time.
pub struct CheckpointAggregator {
    committee: Committee,
    window: u64,
    certified_height: u64,
    pending: BTreeMap<u64, HashMap<Checkpoint, BTreeMap<ValidatorIndex, Signature>>>,
}

impl CheckpointAggregator {
    /// An aggregator accepting votes for heights up to `window` above the last certified one.
    pub fn new(committee: Committee, certified_height: u64, window: u64) -> Self {
        Self {
            committee,
            window,
            certified_height,
            pending: BTreeMap::new(),
        }
    }

    /// Height of the newest certificate produced.
    pub fn certified_height(&self) -> u64 {
        self.certified_height
    }

    /// Adds one vote; returns a certificate when this vote completes a quorum for a height above
    /// the last certified one.
    pub fn add(
        &mut self,
        checkpoint: Checkpoint,
        author: ValidatorIndex,
        signature: Signature,
    ) -> Result<Option<CertifiedCheckpoint>, ConsensusError> {
        let height = checkpoint.height;
        if height <= self.certified_height {
            return Ok(None);
        }
        if height > self.certified_height + self.window {
            return Err(ConsensusError::BufferFull("checkpoint votes beyond window"));
        }
        let key = self
            .committee
            .key(author)
            .ok_or(ConsensusError::UnknownValidator(author))?;
        // One vote per author and height; a replay costs no signature check.
        if self
            .pending
            .get(&height)
            .is_some_and(|by_cp| by_cp.values().any(|sigs| sigs.contains_key(&author)))
        {
            return Ok(None);
        }
        verify(key, &checkpoint.signing_message(), &signature).map_err(|_| {
            ConsensusError::BadSignature {
                what: "checkpoint",
                author,
            }
        })?;
        let by_cp = self.pending.entry(height).or_default();
        let sigs = by_cp.entry(checkpoint.clone()).or_default();
        sigs.insert(author, signature);
        if sigs.len() < self.committee.quorum() {
            return Ok(None);
        }
        let cert = CertifiedCheckpoint {
            checkpoint,
            signatures: sigs.iter().map(|(i, s)| (*i, *s)).collect(),
        };
        self.certified_height = height;
        self.pending = self.pending.split_off(&(height + 1));
        Ok(Some(cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify_checkpoint_cert;
    use netchain_crypto::Keypair;
    use netchain_types::{Digest, Validator};

    #[test]
    fn certifies_at_quorum_and_ignores_junk() {
        let keys: Vec<_> = (0..4u8)
            .map(|i| Keypair::from_secret([i + 1; 32]))
            .collect();
        let committee = Committee {
            validators: keys
                .iter()
                .map(|k| Validator {
                    public_key: k.public(),
                    p2p_address: String::new(),
                    api_address: String::new(),
                })
                .collect(),
        };
        let mut agg = CheckpointAggregator::new(committee.clone(), 0, 100);
        let cp = |root: u8| Checkpoint {
            chain_id: "c".into(),
            height: 5,
            block_id: Digest([1; 32]),
            state_root: Digest([root; 32]),
        };
        let vote = |i: usize, root: u8| {
            (
                cp(root),
                i as u16,
                keys[i].sign(&cp(root).signing_message()),
            )
        };
        let (c, a, s) = vote(0, 1);
        assert_eq!(agg.add(c, a, s).unwrap(), None);
        // A different root from validator 1 does not combine with validator 0's.
        let (c, a, s) = vote(1, 2);
        assert_eq!(agg.add(c, a, s).unwrap(), None);
        // Duplicate from validator 0 ignored; bad signature refused.
        let (c, a, s) = vote(0, 1);
        assert_eq!(agg.add(c, a, s).unwrap(), None);
        let (c, _, s) = vote(2, 1);
        assert!(agg.add(c, 3, s).is_err());
        let (c, a, s) = vote(2, 1);
        assert_eq!(agg.add(c, a, s).unwrap(), None);
        let (c, a, s) = vote(3, 1);
        let cert = agg.add(c, a, s).unwrap().expect("quorum reached");
        verify_checkpoint_cert(&committee, &cert).unwrap();
        assert_eq!(agg.certified_height(), 5);
        let mut tampered = cert.clone();
        tampered.checkpoint.state_root = Digest([9; 32]);
        assert!(verify_checkpoint_cert(&committee, &tampered).is_err());
        let mut far = cp(1);
        far.height = 500;
        let s = keys[0].sign(&far.signing_message());
        assert!(agg.add(far, 0, s).is_err());
    }
}
