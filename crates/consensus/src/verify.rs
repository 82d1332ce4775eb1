//! Certificate verification against the committee.

use crate::ConsensusError;
use netchain_crypto::{verify_batch, verify_quorum};
use netchain_types::{
    CertifiedCheckpoint, Committee, Digest, ProofOfAvailability, QuorumCert, Timeout, TimeoutCert,
    Vote,
};

/// Verifies a QC: the genesis QC is valid only for the genesis block; any other needs a quorum of
/// valid vote signatures.
pub fn verify_qc(
    chain_id: &str,
    committee: &Committee,
    genesis_id: &Digest,
    qc: &QuorumCert,
) -> Result<(), ConsensusError> {
    let bad = |reason: String| ConsensusError::BadCertificate {
        what: "quorum",
        round: qc.round,
        reason,
    };
    if qc.is_genesis() {
        return if &qc.block_id == genesis_id {
            Ok(())
        } else {
            Err(bad("unsigned certificate for a non-genesis block".into()))
        };
    }
    if qc.round == 0 {
        return Err(bad("round 0 is reserved for genesis".into()));
    }
    let msg = Vote::signing_message(chain_id, &qc.block_id, qc.round, qc.height);
    let signed: Vec<_> = qc.votes.iter().map(|(i, s)| (*i, msg, *s)).collect();
    verify_quorum(committee, &signed).map_err(|e| bad(e.to_string()))
}

/// Verifies a TC: a quorum of valid timeout signatures for its round.
pub fn verify_tc(
    chain_id: &str,
    committee: &Committee,
    tc: &TimeoutCert,
) -> Result<(), ConsensusError> {
    let signed: Vec<_> = tc
        .timeouts
        .iter()
        .map(|(i, hqc, s)| (*i, Timeout::signing_message(chain_id, tc.round, *hqc), *s))
        .collect();
    verify_quorum(committee, &signed).map_err(|e| ConsensusError::BadCertificate {
        what: "timeout",
        round: tc.round,
        reason: e.to_string(),
    })
}

/// Verifies a certified checkpoint (what a light client does with only the committee's keys).
pub fn verify_checkpoint_cert(
    committee: &Committee,
    cert: &CertifiedCheckpoint,
) -> Result<(), ConsensusError> {
    let msg = cert.checkpoint.signing_message();
    let signed: Vec<_> = cert.signatures.iter().map(|(i, s)| (*i, msg, *s)).collect();
    verify_quorum(committee, &signed).map_err(|e| ConsensusError::BadCertificate {
        what: "checkpoint",
        round: cert.checkpoint.height,
        reason: e.to_string(),
    })
}

/// Verifies proofs of availability: each has a quorum of distinct committee signers (strictly
/// ascending), at least `f + 1` of them over its batch's checked acknowledgement message and the
/// others (listed as stored-only) over its stored one. All signatures are checked in one batch.
pub fn verify_proofs(
    chain_id: &str,
    committee: &Committee,
    proofs: &[ProofOfAvailability],
) -> Result<(), ConsensusError> {
    let bad = |proof: &ProofOfAvailability, reason: String| ConsensusError::BadCertificate {
        what: "availability",
        round: proof.info.seq,
        reason,
    };
    let mut items = Vec::new();
    for proof in proofs {
        if committee.key(proof.info.author).is_none() {
            return Err(bad(
                proof,
                format!("author {} not in committee", proof.info.author),
            ));
        }
        if proof.signers.len() < committee.quorum() {
            return Err(bad(
                proof,
                format!(
                    "{} signers, quorum is {}",
                    proof.signers.len(),
                    committee.quorum()
                ),
            ));
        }
        // Signers first: strictly ascending committee members (so at most n of them, before
        // anything else looks at the lists).
        let mut last = None;
        for (index, _) in &proof.signers {
            if last.is_some_and(|l| *index <= l) {
                return Err(bad(proof, "signers not strictly ascending".into()));
            }
            last = Some(*index);
            if committee.key(*index).is_none() {
                return Err(bad(proof, format!("signer {index} not in committee")));
            }
        }
        if proof.stored_only.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(
                proof,
                "stored-only signers not strictly ascending".into(),
            ));
        }
        if let Some(v) = proof
            .stored_only
            .iter()
            .find(|v| proof.signers.binary_search_by_key(*v, |(s, _)| *s).is_err())
        {
            return Err(bad(proof, format!("stored-only signer {v} did not sign")));
        }
        // At least f + 1 checked acknowledgements: one of them is an honest validator's.
        let checked = proof.signers.len() - proof.stored_only.len();
        if checked < committee.max_faulty() + 1 {
            return Err(bad(
                proof,
                format!(
                    "{checked} checked acknowledgements, {} needed",
                    committee.max_faulty() + 1
                ),
            ));
        }
        let (ack, store) = (
            proof.info.ack_message(chain_id),
            proof.info.store_message(chain_id),
        );
        for (index, sig) in &proof.signers {
            let key = committee
                .key(*index)
                .ok_or_else(|| bad(proof, format!("signer {index} not in committee")))?;
            let msg = if proof.checked_by(*index) { ack } else { store };
            items.push((*key, msg, *sig));
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    verify_batch(&items).map_err(|e| ConsensusError::BadCertificate {
        what: "availability",
        round: proofs[0].info.seq,
        reason: e.to_string(),
    })
}
