//! The voting safety rules and the data they keep.

use borsh::{BorshDeserialize, BorshSerialize};
use netchain_types::{Block, QuorumCert, Timeout, Vote};

/// What a validator must remember across restarts so it never signs conflicting messages.
/// Persisted (durably) before any vote or timeout that changed it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SafetyData {
    /// Highest round in which this validator voted or timed out.
    pub last_voted_round: u64,
    /// Highest round of a QC carried by a block this validator voted for (1-chain round).
    pub one_chain_round: u64,
    /// The QC of `one_chain_round`: a restarted validator resumes from it, since the timeout rule
    /// will not let it time out with anything lower.
    pub one_chain_qc: Option<QuorumCert>,
    /// Highest round of the parent of such a QC (2-chain round).
    pub preferred_round: u64,
    /// The last vote, re-sent unchanged if asked to vote again in its round.
    pub last_vote: Option<Vote>,
    /// The last timeout, re-sent unchanged for its round.
    pub last_timeout: Option<Timeout>,
}

impl SafetyData {
    /// Jolteon's voting rule: vote once per round, and only for a block that extends the QC of the
    /// previous round, or, after a timeout, a QC at least as high as every QC in the TC.
    pub fn safe_to_vote(&self, block: &Block) -> bool {
        if block.round <= self.last_voted_round {
            return false;
        }
        if block.round == block.qc.round + 1 {
            return true;
        }
        match &block.tc {
            Some(tc) => block.round == tc.round + 1 && block.qc.round >= tc.max_high_qc_round(),
            None => false,
        }
    }

    /// Records a vote for `block` (call only after [`SafetyData::safe_to_vote`]).
    pub fn record_vote(&mut self, block: &Block, vote: Vote) {
        self.last_voted_round = block.round;
        if block.qc.round >= self.one_chain_round {
            self.one_chain_round = block.qc.round;
            self.one_chain_qc = Some(block.qc.clone());
        }
        self.last_vote = Some(vote);
    }

    /// Records the 2-chain round learned from a voted block's QC parent.
    pub fn observe_parent_round(&mut self, parent_round: u64) {
        self.preferred_round = self.preferred_round.max(parent_round);
    }

    /// Jolteon's timeout rule: time out in `round` only with a high QC no lower than any QC this
    /// validator voted on, and never in a round it already left behind.
    pub fn safe_to_timeout(&self, round: u64, high_qc_round: u64) -> bool {
        round >= self.last_voted_round && high_qc_round >= self.one_chain_round
    }

    /// Records a timeout (no vote may follow in that round).
    pub fn record_timeout(&mut self, timeout: Timeout) {
        self.last_voted_round = self.last_voted_round.max(timeout.round);
        self.last_timeout = Some(timeout);
    }
}
