//! Certificate verification against the committee.

use crate::ConsensusError;
use netchain_crypto::verify_quorum;
use netchain_types::{
    CertifiedCheckpoint, Committee, Digest, QuorumCert, Timeout, TimeoutCert, Vote,
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
