//! Shared fixtures for the consensus tests: a 4-validator committee with deterministic keys,
//! hand-built (signed) blocks, votes, certificates and timeouts, and trivial payload sources.

#![allow(dead_code)]

use netchain_consensus::{Action, Core, CoreConfig, Event, PayloadSource, SafetyData, Step};
use netchain_crypto::Keypair;
use netchain_types::{
    hash_parts, Block, Committee, ConsensusMessage, Digest, Payload, Proposal, PublicKey,
    QuorumCert, Signature, SignedTransaction, Timeout, TimeoutCert, Transaction, Validator,
    ValidatorIndex, Vote,
};

pub const CHAIN: &str = "test-chain";
pub const N: usize = 4;

/// A payload source that never has anything (leaders only propose empty blocks, after the
/// empty-block interval).
pub struct NoPayload;

impl PayloadSource for NoPayload {
    fn has_pending(&self) -> bool {
        false
    }
    fn pull(
        &mut self,
        _round: u64,
        _max_txs: usize,
        _max_bytes: usize,
        _ancestors: &[&Block],
    ) -> Vec<SignedTransaction> {
        Vec::new()
    }
}

/// Hands out up to `per_block` dummy transactions per pull until `remaining` runs out. The
/// transactions are not validly signed: the core does not check them.
pub struct DummyPayload {
    pub source: u8,
    pub remaining: u64,
    pub per_block: u64,
    pub nonce: u64,
    /// What `execution_backlogged` answers.
    pub backlogged: bool,
}

impl DummyPayload {
    pub fn new(source: u8, remaining: u64, per_block: u64) -> Self {
        Self {
            source,
            remaining,
            per_block,
            nonce: 0,
            backlogged: false,
        }
    }
}

impl PayloadSource for DummyPayload {
    fn has_pending(&self) -> bool {
        self.remaining > 0
    }
    fn execution_backlogged(&self) -> bool {
        self.backlogged
    }
    fn pull(
        &mut self,
        _round: u64,
        max_txs: usize,
        _max_bytes: usize,
        _ancestors: &[&Block],
    ) -> Vec<SignedTransaction> {
        let n = self.per_block.min(self.remaining).min(max_txs as u64);
        self.remaining -= n;
        (0..n)
            .map(|_| {
                self.nonce += 1;
                dummy_tx(self.source, self.nonce)
            })
            .collect()
    }
}

pub fn dummy_tx(source: u8, nonce: u64) -> SignedTransaction {
    SignedTransaction {
        tx: Transaction {
            chain_id: CHAIN.into(),
            sender: PublicKey([source; 32]),
            nonce,
            payload: Payload::Transfer {
                to: PublicKey([0xee; 32]),
                amount: 1,
                memo: Vec::new(),
            },
        },
        signature: Signature([0; 64]),
    }
}

/// Everything needed to build cores and craft their messages by hand.
pub struct Fixture {
    pub keys: Vec<Keypair>,
    pub committee: Committee,
    pub genesis: Block,
    pub genesis_qc: QuorumCert,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let keys: Vec<_> = (0..N as u8)
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
        let genesis = Block::genesis(hash_parts("test-genesis", &[]), 0);
        let genesis_qc = QuorumCert::genesis(genesis.id());
        Self {
            keys,
            committee,
            genesis,
            genesis_qc,
        }
    }

    pub fn cfg(&self, me: ValidatorIndex) -> CoreConfig {
        CoreConfig::new(CHAIN, self.committee.clone(), me)
    }

    pub fn core(&self, me: ValidatorIndex) -> Core {
        self.core_with(self.cfg(me), SafetyData::default())
    }

    pub fn core_with(&self, cfg: CoreConfig, safety: SafetyData) -> Core {
        let me = cfg.me as usize;
        Core::new(
            cfg,
            self.keys[me].clone(),
            self.genesis.id(),
            self.genesis.clone(),
            self.genesis_qc.clone(),
            safety,
            0,
        )
    }

    pub fn leader(&self, round: u64) -> ValidatorIndex {
        self.committee.leader(round)
    }

    /// A block of `round` by its leader extending `parent` (certified by `qc`).
    pub fn block(
        &self,
        round: u64,
        parent: &Block,
        qc: &QuorumCert,
        tc: Option<TimeoutCert>,
        payload: Vec<SignedTransaction>,
    ) -> Block {
        assert_eq!(qc.block_id, parent.id());
        Block {
            round,
            height: parent.height + 1,
            parent_id: parent.id(),
            qc: qc.clone(),
            tc,
            author: self.leader(round),
            timestamp_ms: round * 10,
            payload,
            batches: Vec::new(),
        }
    }

    /// A child of `parent` in `round` with no TC and no payload.
    pub fn child(&self, round: u64, parent: &Block, qc: &QuorumCert) -> Block {
        self.block(round, parent, qc, None, Vec::new())
    }

    /// The block signed by its author's key.
    pub fn proposal(&self, block: &Block) -> Proposal {
        self.proposal_signed_by(block, block.author as usize)
    }

    pub fn proposal_signed_by(&self, block: &Block, signer: usize) -> Proposal {
        Proposal {
            block: block.clone(),
            signature: self.keys[signer].sign(&Block::proposal_message(CHAIN, &block.id())),
        }
    }

    pub fn proposal_msg(&self, block: &Block) -> ConsensusMessage {
        ConsensusMessage::Proposal(self.proposal(block))
    }

    pub fn vote(&self, block: &Block, author: usize) -> Vote {
        let msg = Vote::signing_message(CHAIN, &block.id(), block.round, block.height);
        Vote {
            block_id: block.id(),
            round: block.round,
            height: block.height,
            author: author as ValidatorIndex,
            signature: self.keys[author].sign(&msg),
        }
    }

    /// A QC for `block` signed by `signers` (ascending).
    pub fn qc(&self, block: &Block, signers: &[usize]) -> QuorumCert {
        QuorumCert {
            block_id: block.id(),
            round: block.round,
            height: block.height,
            votes: signers
                .iter()
                .map(|&i| (i as ValidatorIndex, self.vote(block, i).signature))
                .collect(),
        }
    }

    /// A QC signed by the first quorum of validators.
    pub fn full_qc(&self, block: &Block) -> QuorumCert {
        let signers: Vec<_> = (0..self.committee.quorum()).collect();
        self.qc(block, &signers)
    }

    pub fn timeout(&self, round: u64, high_qc: &QuorumCert, author: usize) -> Timeout {
        Timeout {
            round,
            high_qc: high_qc.clone(),
            author: author as ValidatorIndex,
            signature: self.keys[author].sign(&Timeout::signing_message(
                CHAIN,
                round,
                high_qc.round,
            )),
        }
    }

    /// A TC of `round`: each signer with the round of its high QC (ascending signers).
    pub fn tc(&self, round: u64, signers: &[(usize, u64)]) -> TimeoutCert {
        TimeoutCert {
            round,
            timeouts: signers
                .iter()
                .map(|&(i, hqc)| {
                    (
                        i as ValidatorIndex,
                        hqc,
                        self.keys[i].sign(&Timeout::signing_message(CHAIN, round, hqc)),
                    )
                })
                .collect(),
        }
    }
}

/// Delivers one message to `core` at `now`.
pub fn deliver(
    core: &mut Core,
    now: u64,
    from: ValidatorIndex,
    msg: ConsensusMessage,
    payload: &mut dyn PayloadSource,
) -> Step {
    core.handle(now, Event::Message { from, msg }, payload)
}

/// Delivers one message with no payload source; panics if the core refused it.
pub fn deliver_ok(
    core: &mut Core,
    now: u64,
    from: ValidatorIndex,
    msg: ConsensusMessage,
) -> Vec<Action> {
    let step = deliver(core, now, from, msg, &mut NoPayload);
    assert_eq!(
        step.error, None,
        "unexpected refusal; actions {:?}",
        step.actions
    );
    step.actions
}

/// The votes the actions send, with their recipients.
pub fn votes(actions: &[Action]) -> Vec<(ValidatorIndex, Vote)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: ConsensusMessage::Vote(v),
            } => Some((*to, v.clone())),
            _ => None,
        })
        .collect()
}

pub fn persisted(actions: &[Action]) -> Vec<SafetyData> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistSafety(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn proposals(actions: &[Action]) -> Vec<Proposal> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(ConsensusMessage::Proposal(p)) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub fn broadcast_timeouts(actions: &[Action]) -> Vec<Timeout> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(ConsensusMessage::Timeout(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

pub fn commits(actions: &[Action]) -> Vec<(Vec<Block>, QuorumCert)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { blocks, commit_qc } => Some((blocks.clone(), commit_qc.clone())),
            _ => None,
        })
        .collect()
}

pub fn ids(blocks: &[Block]) -> Vec<Digest> {
    blocks.iter().map(Block::id).collect()
}
