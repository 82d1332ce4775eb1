//! Consensus data: blocks, votes, quorum and timeout certificates, checkpoints, messages.

use crate::batch::{Batch, BatchInfo, ProofOfAvailability};
use crate::{codec, hash_parts, Digest, Signature, SignedTransaction, ValidatorIndex};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// 2f+1 votes for one block in one round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct QuorumCert {
    /// Certified block.
    pub block_id: Digest,
    /// Round of the certified block.
    pub round: u64,
    /// Height of the certified block.
    pub height: u64,
    /// Signers and their vote signatures, by ascending index.
    pub votes: Vec<(ValidatorIndex, Signature)>,
}

impl QuorumCert {
    /// The certificate of the genesis block: round 0, no signatures, valid by definition.
    pub fn genesis(genesis_id: Digest) -> Self {
        Self {
            block_id: genesis_id,
            round: 0,
            height: 0,
            votes: Vec::new(),
        }
    }

    /// Whether this is the (unsigned) genesis certificate.
    pub fn is_genesis(&self) -> bool {
        self.round == 0 && self.height == 0 && self.votes.is_empty()
    }
}

/// A validator's vote for a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Vote {
    /// Voted block.
    pub block_id: Digest,
    /// Its round.
    pub round: u64,
    /// Its height.
    pub height: u64,
    /// Voter.
    pub author: ValidatorIndex,
    /// Signature over [`Vote::signing_message`].
    pub signature: Signature,
}

impl Vote {
    /// The signed message of a vote.
    pub fn signing_message(chain_id: &str, block_id: &Digest, round: u64, height: u64) -> Digest {
        hash_parts(
            "netchain/vote/v1",
            &[
                chain_id.as_bytes(),
                &block_id.0,
                &round.to_le_bytes(),
                &height.to_le_bytes(),
            ],
        )
    }
}

/// A validator's statement that round `round` timed out, with its highest QC.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Timeout {
    /// Timed-out round.
    pub round: u64,
    /// Highest QC the author knows.
    pub high_qc: QuorumCert,
    /// Author.
    pub author: ValidatorIndex,
    /// Signature over [`Timeout::signing_message`] with `high_qc.round`.
    pub signature: Signature,
}

impl Timeout {
    /// The signed message of a timeout.
    pub fn signing_message(chain_id: &str, round: u64, high_qc_round: u64) -> Digest {
        hash_parts(
            "netchain/timeout/v1",
            &[
                chain_id.as_bytes(),
                &round.to_le_bytes(),
                &high_qc_round.to_le_bytes(),
            ],
        )
    }
}

/// 2f+1 timeouts for one round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TimeoutCert {
    /// Timed-out round.
    pub round: u64,
    /// Signers, the round of their highest QC, and their signatures.
    pub timeouts: Vec<(ValidatorIndex, u64, Signature)>,
}

impl TimeoutCert {
    /// Highest QC round among the signers: a proposal justified by this TC must extend a QC at
    /// least this high.
    pub fn max_high_qc_round(&self) -> u64 {
        self.timeouts.iter().map(|t| t.1).max().unwrap_or(0)
    }
}

/// A block: an ordered payload extending the block certified by `qc`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// Consensus round.
    pub round: u64,
    /// Distance from genesis (parent height + 1).
    pub height: u64,
    /// Parent block id (equals `qc.block_id`); for genesis, the genesis config hash.
    pub parent_id: Digest,
    /// Certificate of the parent.
    pub qc: QuorumCert,
    /// Present when `round != qc.round + 1`: the TC of round `round - 1`.
    pub tc: Option<TimeoutCert>,
    /// Proposer (leader of `round`).
    pub author: ValidatorIndex,
    /// Proposer's clock when proposing, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Ordered transactions carried in the block itself (executed first).
    pub payload: Vec<SignedTransaction>,
    /// Proofs of availability of batches whose transactions execute after `payload`, batch by
    /// batch in this order.
    pub batches: Vec<ProofOfAvailability>,
}

impl Block {
    /// The block id: hash of the canonical encoding.
    pub fn id(&self) -> Digest {
        hash_parts("netchain/block/v1", &[&codec::encode(self)])
    }

    /// The genesis block of a chain whose genesis configuration hashes to `genesis_hash`.
    pub fn genesis(genesis_hash: Digest, timestamp_ms: u64) -> Self {
        Self {
            round: 0,
            height: 0,
            parent_id: genesis_hash,
            qc: QuorumCert::genesis(Digest::default()),
            tc: None,
            author: 0,
            timestamp_ms,
            payload: Vec::new(),
            batches: Vec::new(),
        }
    }

    /// Transactions the block orders: those it carries plus those of its batches.
    pub fn tx_count(&self) -> usize {
        self.payload.len()
            + self
                .batches
                .iter()
                .map(|p| p.info.tx_count as usize)
                .sum::<usize>()
    }

    /// The message a proposer signs.
    pub fn proposal_message(chain_id: &str, block_id: &Digest) -> Digest {
        hash_parts("netchain/proposal/v1", &[chain_id.as_bytes(), &block_id.0])
    }
}

/// A block with its proposer's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Proposal {
    /// The block.
    pub block: Block,
    /// Signature over [`Block::proposal_message`].
    pub signature: Signature,
}

/// The state after executing the committed chain up to `height`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Checkpoint {
    /// Chain the checkpoint belongs to.
    pub chain_id: String,
    /// Committed height.
    pub height: u64,
    /// Block at that height.
    pub block_id: Digest,
    /// Merkle root over all accounts after executing that block.
    pub state_root: Digest,
}

impl Checkpoint {
    /// The message validators sign.
    pub fn signing_message(&self) -> Digest {
        hash_parts("netchain/checkpoint/v1", &[&codec::encode(self)])
    }
}

/// A checkpoint signed by a quorum of the committee: a client holding the committee's keys can
/// trust its state root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CertifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Signers and signatures, by ascending index.
    pub signatures: Vec<(ValidatorIndex, Signature)>,
}

/// Everything validators send each other.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMessage {
    /// A leader's block.
    Proposal(Proposal),
    /// A vote, sent to the next leader.
    Vote(Vote),
    /// A round timeout, broadcast.
    Timeout(Timeout),
    /// Asks for a block and up to `max_blocks - 1` of its ancestors.
    SyncRequest {
        /// Newest block wanted.
        block_id: Digest,
        /// Bound on the answer.
        max_blocks: u32,
    },
    /// Blocks newest first, each the parent of the one before.
    SyncResponse {
        /// The blocks.
        blocks: Vec<Block>,
    },
    /// Asks for committed blocks from `from_height` on (catch-up of a validator far behind).
    CatchUpRequest {
        /// First height wanted.
        from_height: u64,
        /// Bound on the answer.
        max_blocks: u32,
    },
    /// Committed blocks in ascending height order.
    CatchUpResponse {
        /// The blocks.
        blocks: Vec<Block>,
    },
    /// Client transactions a validator admitted, passed on so any leader can propose them.
    Transactions {
        /// The transactions.
        txs: Vec<SignedTransaction>,
    },
    /// A batch of client transactions, from its author to every validator.
    Batch {
        /// The batch.
        batch: Batch,
        /// The validators the author asks to check its signatures (the others store it and
        /// acknowledge it unchecked).
        checkers: Vec<ValidatorIndex>,
    },
    /// A validator stores a batch (and, when `checked`, verified its signatures); sent to the
    /// batch's author.
    BatchAck {
        /// The batch.
        info: BatchInfo,
        /// Signer.
        author: ValidatorIndex,
        /// Whether the signer verified every signature in the batch.
        checked: bool,
        /// Signature over [`BatchInfo::acknowledgement_message`] of `checked`.
        signature: Signature,
    },
    /// A batch's proof of availability, from its author to every validator.
    Proof(ProofOfAvailability),
    /// Asks for a batch by digest (to execute a committed block that names it).
    BatchRequest {
        /// The batch wanted.
        digest: Digest,
    },
    /// A batch asked for with [`ConsensusMessage::BatchRequest`].
    BatchResponse(Batch),
    /// A validator's signature on an executed checkpoint.
    CheckpointVote {
        /// The checkpoint.
        checkpoint: Checkpoint,
        /// Signer.
        author: ValidatorIndex,
        /// Signature over [`Checkpoint::signing_message`].
        signature: Signature,
    },
}
