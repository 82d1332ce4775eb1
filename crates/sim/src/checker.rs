//! Invariant checkers, run on every step against the honest validators.
//!
//! The checkers keep their own record outside the validators (so it survives their crashes):
//! the committed chain by height, the executed state by height, every transaction applied, and
//! every vote and timeout each honest validator has sent.

use crate::node::Executed;
use netchain_types::{
    codec, hash_parts, Block, ConsensusMessage, Digest, TxId, TxOutcome, ValidatorIndex,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken invariant, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two honest validators committed different blocks at one height.
    Agreement {
        /// Height.
        height: u64,
        /// Block committed first (by anyone).
        first: Digest,
        /// The other block.
        other: Digest,
        /// Validator committing the other block.
        validator: ValidatorIndex,
    },
    /// A commit that does not extend the validator's committed chain.
    BrokenChain {
        /// Validator.
        validator: ValidatorIndex,
        /// Height of the block.
        height: u64,
        /// What is wrong.
        reason: String,
    },
    /// Different state (root or receipts) at one executed height.
    StateDivergence {
        /// Height.
        height: u64,
        /// Validator disagreeing with the first record.
        validator: ValidatorIndex,
        /// Which part differs.
        what: &'static str,
    },
    /// A transaction applied at two heights.
    AppliedTwice {
        /// Transaction.
        tx: TxId,
        /// First height.
        first: u64,
        /// Second height.
        second: u64,
    },
    /// An honest validator applied a transaction whose signature does not verify.
    AppliedUnverified {
        /// Transaction.
        tx: TxId,
        /// Height.
        height: u64,
        /// Validator.
        validator: ValidatorIndex,
    },
    /// Sum of balances changed.
    BalanceNotConserved {
        /// Height.
        height: u64,
        /// Expected sum.
        expected: u128,
        /// Actual sum.
        got: u128,
    },
    /// An honest validator signed two different votes in one round.
    DoubleVote {
        /// Validator.
        validator: ValidatorIndex,
        /// Round.
        round: u64,
    },
    /// An honest validator voted in a round after timing out in it.
    VoteAfterTimeout {
        /// Validator.
        validator: ValidatorIndex,
        /// Round.
        round: u64,
    },
    /// Execution met a committed block that does not follow its tip.
    ExecutionGap {
        /// Validator.
        validator: ValidatorIndex,
        /// Block height.
        height: u64,
        /// Executed tip.
        tip: u64,
    },
    /// Far more messages than any run needs: a message loop between validators.
    MessageStorm {
        /// Messages delivered so far.
        delivered: u64,
    },
    /// The root chain accepted an anchor that is not the service chain's executed block and
    /// state at that height.
    AnchorMismatch {
        /// Service-chain height.
        height: u64,
        /// What differs (or "never executed by an honest validator").
        what: &'static str,
    },
    /// The root's anchored height went down from one root height to a later one.
    AnchorRegressed {
        /// Anchored height at the lower root height.
        before: u64,
        /// Anchored height at the higher root height.
        after: u64,
        /// The higher root height.
        root_height: u64,
    },
    /// The root flagged the service chain although at most f of its validators are faulty.
    ChainFlagged {
        /// Root height.
        root_height: u64,
    },
    /// The root's anchor did not reach the service chain's height at heal within the bound.
    AnchorLiveness {
        /// Anchored height at the end.
        anchored: u64,
        /// Height it had to reach.
        target: u64,
    },
    /// Transactions still pending when the liveness bound ran out.
    Liveness {
        /// Pending transactions.
        pending: usize,
        /// Highest height committed by any honest validator.
        height: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl Violation {
    /// Whether this is a safety violation (as opposed to a liveness failure).
    pub fn is_safety(&self) -> bool {
        !matches!(
            self,
            Violation::Liveness { .. }
                | Violation::MessageStorm { .. }
                | Violation::AnchorLiveness { .. }
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct ExecRecord {
    block_id: Digest,
    state_root: Digest,
    receipts: Digest,
}

/// The checkers' record of the run.
pub struct Checker {
    honest: Vec<bool>,
    total_balance: u128,
    chain: BTreeMap<u64, Digest>,
    executed: BTreeMap<u64, ExecRecord>,
    applied: BTreeMap<TxId, u64>,
    votes: BTreeMap<(ValidatorIndex, u64), Digest>,
    timeouts: BTreeSet<(ValidatorIndex, u64)>,
    /// Transactions whose `Applied` receipt an honest validator wrote (acknowledged to clients).
    pub acknowledged: BTreeSet<TxId>,
}

impl Checker {
    /// A checker for a committee where `honest[i]` says whether validator i is honest.
    pub fn new(honest: Vec<bool>, genesis: &Block, total_balance: u128) -> Self {
        Self {
            honest,
            total_balance,
            chain: BTreeMap::from([(0, genesis.id())]),
            executed: BTreeMap::new(),
            applied: BTreeMap::new(),
            votes: BTreeMap::new(),
            timeouts: BTreeSet::new(),
            acknowledged: BTreeSet::new(),
        }
    }

    fn is_honest(&self, v: ValidatorIndex) -> bool {
        self.honest.get(v as usize).copied().unwrap_or(false)
    }

    /// Highest height any honest validator committed.
    pub fn committed_height(&self) -> u64 {
        self.chain.keys().next_back().copied().unwrap_or(0)
    }

    /// Block id and state root an honest validator executed at `height`, if any did.
    pub fn executed_at(&self, height: u64) -> Option<(Digest, Digest)> {
        self.executed
            .get(&height)
            .map(|r| (r.block_id, r.state_root))
    }

    /// Blocks the core of `v` committed (oldest first).
    pub fn on_commit(&mut self, v: ValidatorIndex, blocks: &[Block]) -> Result<(), Violation> {
        if !self.is_honest(v) {
            return Ok(());
        }
        for block in blocks {
            let id = block.id();
            let broken = |reason: &str| Violation::BrokenChain {
                validator: v,
                height: block.height,
                reason: reason.into(),
            };
            // The committed chain only grows by extension: each block's parent is the block
            // committed at the height below (by anyone honest, so also across restarts).
            match self.chain.get(&(block.height.wrapping_sub(1))) {
                Some(parent) if *parent != block.parent_id => {
                    return Err(broken("parent is not the committed block below"))
                }
                None => return Err(broken("committed above a height never committed")),
                Some(_) => {}
            }
            match self.chain.get(&block.height) {
                Some(first) if *first != id => {
                    return Err(Violation::Agreement {
                        height: block.height,
                        first: *first,
                        other: id,
                        validator: v,
                    })
                }
                Some(_) => {}
                None => {
                    self.chain.insert(block.height, id);
                }
            }
        }
        Ok(())
    }

    /// A restarted validator resumed from executed tip `(height, id)`: it must be on the chain.
    pub fn on_restart(
        &mut self,
        v: ValidatorIndex,
        height: u64,
        id: Digest,
    ) -> Result<(), Violation> {
        if !self.is_honest(v) {
            return Ok(());
        }
        match self.chain.get(&height) {
            Some(c) if *c == id => Ok(()),
            _ => Err(Violation::BrokenChain {
                validator: v,
                height,
                reason: "restarted from a tip that is not the committed block".into(),
            }),
        }
    }

    /// `v` executed a height; returns the transactions acknowledged by it for the first time.
    pub fn on_execute(&mut self, v: ValidatorIndex, e: &Executed) -> Result<Vec<TxId>, Violation> {
        if !self.is_honest(v) {
            return Ok(Vec::new());
        }
        if self.chain.get(&e.height) != Some(&e.block_id) {
            return Err(Violation::BrokenChain {
                validator: v,
                height: e.height,
                reason: "executed a block that is not the committed one".into(),
            });
        }
        if let Some(&tx) = e.applied_unverified.first() {
            return Err(Violation::AppliedUnverified {
                tx,
                height: e.height,
                validator: v,
            });
        }
        if e.total_balance != self.total_balance {
            return Err(Violation::BalanceNotConserved {
                height: e.height,
                expected: self.total_balance,
                got: e.total_balance,
            });
        }
        let record = ExecRecord {
            block_id: e.block_id,
            state_root: e.state_root,
            receipts: hash_parts("sim/receipts", &[&codec::encode(&e.receipts)]),
        };
        if let Some(first) = self.executed.get(&e.height) {
            let what = if first.state_root != record.state_root {
                "state root"
            } else if first.receipts != record.receipts {
                "receipts"
            } else {
                return Ok(Vec::new());
            };
            return Err(Violation::StateDivergence {
                height: e.height,
                validator: v,
                what,
            });
        }
        self.executed.insert(e.height, record);
        let mut acked = Vec::new();
        for r in &e.receipts {
            if r.outcome != TxOutcome::Applied {
                continue;
            }
            if let Some(&first) = self.applied.get(&r.tx_id) {
                return Err(Violation::AppliedTwice {
                    tx: r.tx_id,
                    first,
                    second: e.height,
                });
            }
            self.applied.insert(r.tx_id, e.height);
            self.acknowledged.insert(r.tx_id);
            acked.push(r.tx_id);
        }
        Ok(acked)
    }

    /// A message an honest validator signed and sent (votes and timeouts are checked).
    pub fn on_sent(&mut self, v: ValidatorIndex, msg: &ConsensusMessage) -> Result<(), Violation> {
        if !self.is_honest(v) {
            return Ok(());
        }
        match msg {
            ConsensusMessage::Vote(vote) if vote.author == v => {
                if self.timeouts.contains(&(v, vote.round)) {
                    return Err(Violation::VoteAfterTimeout {
                        validator: v,
                        round: vote.round,
                    });
                }
                match self.votes.get(&(v, vote.round)) {
                    Some(prev) if *prev != vote.block_id => Err(Violation::DoubleVote {
                        validator: v,
                        round: vote.round,
                    }),
                    Some(_) => Ok(()),
                    None => {
                        self.votes.insert((v, vote.round), vote.block_id);
                        Ok(())
                    }
                }
            }
            ConsensusMessage::Timeout(t) if t.author == v => {
                self.timeouts.insert((v, t.round));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reports an execution gap of `v`.
    pub fn on_gap(&mut self, v: ValidatorIndex, height: u64, tip: u64) -> Result<(), Violation> {
        if !self.is_honest(v) {
            return Ok(());
        }
        Err(Violation::ExecutionGap {
            validator: v,
            height,
            tip,
        })
    }
}
