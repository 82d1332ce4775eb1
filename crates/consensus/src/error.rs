//! Why a message was refused.

use netchain_types::{Digest, ValidatorIndex};

/// A message from a peer the core refused; each variant carries the evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The proposal's author is not the leader of its round.
    #[error("round {round}: leader is {leader}, block by {author}")]
    WrongLeader {
        /// Round.
        round: u64,
        /// Expected leader.
        leader: ValidatorIndex,
        /// Actual author.
        author: ValidatorIndex,
    },
    /// A sender index outside the committee.
    #[error("unknown validator index {0}")]
    UnknownValidator(ValidatorIndex),
    /// A signature did not verify.
    #[error("invalid signature on {what} from {author}")]
    BadSignature {
        /// Message kind.
        what: &'static str,
        /// Claimed author.
        author: ValidatorIndex,
    },
    /// A certificate failed verification.
    #[error("invalid {what} certificate for round {round}: {reason}")]
    BadCertificate {
        /// QC or TC.
        what: &'static str,
        /// Its round.
        round: u64,
        /// Why.
        reason: String,
    },
    /// A block whose structure breaks a protocol rule.
    #[error("malformed block {block}: {reason}")]
    MalformedBlock {
        /// Block id.
        block: Digest,
        /// Which rule.
        reason: String,
    },
    /// A block over the size limits.
    #[error("block {block} too large: {txs} transactions, {bytes} bytes")]
    BlockTooLarge {
        /// Block id.
        block: Digest,
        /// Transaction count.
        txs: usize,
        /// Encoded size.
        bytes: usize,
    },
    /// A message for a round that no longer matters.
    #[error("stale message for round {round}, current round {current}")]
    Stale {
        /// Message round.
        round: u64,
        /// Our round.
        current: u64,
    },
    /// A vote sent to a validator that is not the next leader.
    #[error("vote for round {round} sent to non-leader")]
    NotNextLeader {
        /// Vote round.
        round: u64,
    },
    /// Two different votes by one validator in one round.
    #[error("validator {author} voted twice in round {round}")]
    Equivocation {
        /// Round.
        round: u64,
        /// Equivocating validator.
        author: ValidatorIndex,
    },
    /// A sync answer we did not ask for, or whose blocks do not link.
    #[error("unexpected or broken sync response: {0}")]
    BadSync(String),
    /// A bound on buffered state was reached; the message was dropped.
    #[error("buffer full: {0}")]
    BufferFull(&'static str),
}
