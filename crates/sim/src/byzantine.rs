//! Byzantine behaviours layered on a validator that runs the real core with its own key.
//!
//! The adversary sees every message its core wants to send and may rewrite, split, duplicate or
//! drop it; it also injects messages of its own at random times. Everything it signs is signed
//! with its real key, so honest validators must refuse it by protocol rules, not by signatures
//! alone (except where the behaviour is exactly a bad signature).

use crate::node::ChainSetup;
use crate::plan::Byzantine;
use crate::rng::Rng;
use netchain_consensus::Core;
use netchain_crypto::Keypair;
use netchain_types::{
    Batch, BatchInfo, Block, ConsensusMessage, Digest, ProofOfAvailability, Proposal, Signature,
    SignedTransaction, Timeout, ValidatorIndex, Vote,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// One validator index.
    To(ValidatorIndex),
    /// Every other validator.
    All,
    /// These validators.
    Only(Vec<ValidatorIndex>),
}

/// A Byzantine validator's message layer.
pub struct Adversary {
    index: ValidatorIndex,
    behaviour: Byzantine,
    keypair: Keypair,
    setup: Arc<ChainSetup>,
    rng: Rng,
    /// Conflicting blocks it sent, by round (for double votes).
    twins: BTreeMap<u64, Digest>,
    /// Transactions it has passed on (to replay in later blocks).
    seen_txs: Vec<SignedTransaction>,
    /// Its forged batches, by digest, with the acknowledgements they drew.
    forged: BTreeMap<Digest, Forged>,
    /// Their digests, oldest first (the oldest is forgotten first).
    forged_order: VecDeque<Digest>,
    /// Proofs it made for forged batches, to slip into its proposals.
    forged_proofs: Vec<ProofOfAvailability>,
    /// Draws of the batch forgery only (so runs without it draw as before).
    forge_rng: Rng,
    /// Forged batches sent.
    pub batches_forged: u64,
    /// Proofs of availability made for forged batches (sent alone or in proposals).
    pub proofs_forged: u64,
    /// Acknowledgements it sent as checked without checking.
    pub checks_lied: u64,
}

/// A batch sent with a forged transaction signature.
struct Forged {
    info: BatchInfo,
    /// Acknowledgements (its own included): signature and whether the signer said it checked.
    acks: BTreeMap<ValidatorIndex, (Signature, bool)>,
    /// Proofs were made from them already.
    proved: bool,
}

/// Old transactions kept for replays.
const SEEN_TXS_MAX: usize = 64;
/// Forged batches followed at once.
const FORGED_MAX: usize = 32;
/// Proofs of forged batches kept for proposals.
const FORGED_PROOFS_MAX: usize = 8;

impl Adversary {
    /// The layer of validator `index` with `behaviour`.
    pub fn new(
        index: ValidatorIndex,
        behaviour: Byzantine,
        setup: Arc<ChainSetup>,
        mut rng: Rng,
    ) -> Self {
        let forge_rng = if behaviour.forge_batches {
            rng.fork()
        } else {
            Rng::new(0)
        };
        Self {
            keypair: setup.keys[index as usize].clone(),
            index,
            behaviour,
            setup,
            rng,
            twins: BTreeMap::new(),
            seen_txs: Vec::new(),
            forged: BTreeMap::new(),
            forged_order: VecDeque::new(),
            forged_proofs: Vec::new(),
            forge_rng,
            batches_forged: 0,
            proofs_forged: 0,
            checks_lied: 0,
        }
    }

    fn chain(&self) -> &str {
        &self.setup.chain_id
    }

    fn others(&self) -> Vec<ValidatorIndex> {
        (0..self.setup.committee.size() as ValidatorIndex)
            .filter(|&i| i != self.index)
            .collect()
    }

    fn sign_block(&self, block: Block) -> Proposal {
        let signature = self
            .keypair
            .sign(&Block::proposal_message(self.chain(), &block.id()));
        Proposal { block, signature }
    }

    fn vote(&self, block_id: Digest, round: u64, height: u64) -> Vote {
        let msg = Vote::signing_message(self.chain(), &block_id, round, height);
        Vote {
            block_id,
            round,
            height,
            author: self.index,
            signature: self.keypair.sign(&msg),
        }
    }

    fn corrupt(&mut self, sig: &mut Signature) {
        let i = self.rng.below(64) as usize;
        sig.0[i] ^= 1 << self.rng.below(8);
    }

    /// Rewrites what the core wants to send.
    pub fn outgoing(
        &mut self,
        route: Route,
        msg: ConsensusMessage,
    ) -> Vec<(Route, ConsensusMessage)> {
        let b = self.behaviour.clone();
        if let ConsensusMessage::Transactions { txs } = &msg {
            for tx in txs {
                if self.seen_txs.len() >= SEEN_TXS_MAX {
                    self.seen_txs.remove(0);
                }
                self.seen_txs.push(tx.clone());
            }
        }
        if b.withhold_per_mille > 0 && self.rng.chance(b.withhold_per_mille) {
            return Vec::new();
        }
        let mut out = match msg {
            ConsensusMessage::Proposal(p) => self.proposal(route, p),
            ConsensusMessage::Batch { batch, checkers } if b.forge_batches => {
                self.batch(route, batch, checkers)
            }
            ConsensusMessage::BatchAck {
                info,
                checked: false,
                ..
            } if b.lie_checks => vec![(route, self.lying_ack(&info))],
            ConsensusMessage::Vote(v) if b.double_vote => {
                let other = self
                    .twins
                    .get(&v.round)
                    .copied()
                    .unwrap_or(Digest(self.rng.bytes32()));
                let v2 = self.vote(other, v.round, v.height);
                let mut both = vec![
                    (route.clone(), ConsensusMessage::Vote(v)),
                    (route, ConsensusMessage::Vote(v2)),
                ];
                if self.rng.chance(500) {
                    both.swap(0, 1);
                }
                both
            }
            msg => vec![(route, msg)],
        };
        if b.bad_signatures {
            for (_, msg) in out.iter_mut() {
                if !self.rng.chance(300) {
                    continue;
                }
                match msg {
                    ConsensusMessage::Proposal(p) => self.corrupt(&mut p.signature),
                    ConsensusMessage::Vote(v) => self.corrupt(&mut v.signature),
                    ConsensusMessage::Timeout(t) => self.corrupt(&mut t.signature),
                    _ => {}
                }
            }
        }
        out
    }

    /// Its batch as its core sent it and, sometimes, a copy with one transaction's signature
    /// forged, whose checkers are nobody, itself, or every other validator.
    fn batch(
        &mut self,
        route: Route,
        batch: Batch,
        checkers: Vec<ValidatorIndex>,
    ) -> Vec<(Route, ConsensusMessage)> {
        let mut out = Vec::new();
        if !batch.txs.is_empty() && self.forge_rng.chance(500) {
            let mut forged = batch.clone();
            let i = self.forge_rng.below(forged.txs.len() as u64) as usize;
            let bit = self.forge_rng.below(8);
            forged.txs[i].signature.0[self.forge_rng.below(64) as usize] ^= 1 << bit;
            let asked = match self.forge_rng.below(3) {
                0 => Vec::new(),
                1 => vec![self.index],
                _ => self.others(),
            };
            let info = forged.info();
            let own = self
                .keypair
                .sign(&info.acknowledgement_message(self.chain(), true));
            self.forged.insert(
                info.digest,
                Forged {
                    info,
                    acks: BTreeMap::from([(self.index, (own, true))]),
                    proved: false,
                },
            );
            self.forged_order.push_back(info.digest);
            if self.forged_order.len() > FORGED_MAX {
                if let Some(old) = self.forged_order.pop_front() {
                    self.forged.remove(&old);
                }
            }
            self.batches_forged += 1;
            out.push((
                Route::All,
                ConsensusMessage::Batch {
                    batch: forged,
                    checkers: asked,
                },
            ));
        }
        out.push((route, ConsensusMessage::Batch { batch, checkers }));
        out
    }

    /// Sees what reaches its validator: acknowledgements of its forged batches become proofs
    /// once there are a quorum of them (n - f signers), one proof that lists who only stored
    /// the batch (too few checks, unless an honest validator vouched for a forged signature)
    /// and one that claims every signer checked it (their signatures are over the stored
    /// message). Both go to every validator.
    pub fn incoming(
        &mut self,
        from: ValidatorIndex,
        msg: &ConsensusMessage,
    ) -> Vec<(Route, ConsensusMessage)> {
        if let ConsensusMessage::Batch { batch, .. } = msg {
            if self.behaviour.lie_checks && batch.author == from && from != self.index {
                return vec![(Route::To(from), self.lying_ack(&batch.info()))];
            }
            return Vec::new();
        }
        let ConsensusMessage::BatchAck {
            info,
            author,
            checked,
            signature,
        } = msg
        else {
            return Vec::new();
        };
        let n = self.setup.committee.size();
        let quorum = n - (n - 1) / 3;
        let Some(f) = self.forged.get_mut(&info.digest) else {
            return Vec::new();
        };
        if *author != from || f.info != *info || f.proved {
            return Vec::new();
        }
        f.acks.insert(*author, (*signature, *checked));
        if f.acks.len() < quorum {
            return Vec::new();
        }
        f.proved = true;
        let truthful = ProofOfAvailability::from_acknowledgements(
            f.info,
            f.acks
                .iter()
                .map(|(v, (sig, checked))| (*v, *sig, *checked)),
        );
        let lying = ProofOfAvailability {
            stored_only: Vec::new(),
            ..truthful.clone()
        };
        self.proofs_forged += 2;
        for p in [&truthful, &lying] {
            if self.forged_proofs.len() >= FORGED_PROOFS_MAX {
                self.forged_proofs.remove(0);
            }
            self.forged_proofs.push(p.clone());
        }
        vec![
            (Route::All, ConsensusMessage::Proof(truthful)),
            (Route::All, ConsensusMessage::Proof(lying)),
        ]
    }

    /// A checked acknowledgement of `info`, whatever its batch holds.
    fn lying_ack(&mut self, info: &BatchInfo) -> ConsensusMessage {
        self.checks_lied += 1;
        ConsensusMessage::BatchAck {
            info: *info,
            author: self.index,
            checked: true,
            signature: self
                .keypair
                .sign(&info.acknowledgement_message(self.chain(), true)),
        }
    }

    fn proposal(&mut self, route: Route, p: Proposal) -> Vec<(Route, ConsensusMessage)> {
        let b = self.behaviour.clone();
        let mut p = p;
        if b.forge_batches && !self.forged_proofs.is_empty() && self.forge_rng.chance(300) {
            // A proof of a forged batch among its block's, re-signed: only the proof's own
            // rules can refuse the block.
            let i = self.forge_rng.below(self.forged_proofs.len() as u64) as usize;
            p.block.batches.push(self.forged_proofs[i].clone());
            p = self.sign_block(p.block);
            self.proofs_forged += 1;
        }
        if b.tamper_payload {
            self.tamper(&mut p.block.payload);
            p = self.sign_block(p.block);
        }
        if b.malformed && self.rng.chance(300) {
            p = self.malform(p);
        }
        if !b.equivocate {
            return vec![(route, ConsensusMessage::Proposal(p))];
        }
        // A second block for the round: different content, same parent, validly signed.
        let mut other = p.block.clone();
        if other.payload.pop().is_none() {
            other.timestamp_ms += 1 + self.rng.below(5);
        }
        self.twins.insert(other.round, other.id());
        if self.twins.len() > 64 {
            self.twins.pop_first();
        }
        let second = self.sign_block(other);
        let mut peers = self.others();
        self.rng.shuffle(&mut peers);
        let half = peers.split_off(peers.len() / 2);
        vec![
            (Route::Only(peers), ConsensusMessage::Proposal(p)),
            (Route::Only(half), ConsensusMessage::Proposal(second)),
        ]
    }

    /// Forged signatures, copies within the block, and replays of old (maybe committed) ones:
    /// execution must reject all of them and never apply a transaction twice.
    fn tamper(&mut self, payload: &mut Vec<SignedTransaction>) {
        match self.rng.below(3) {
            0 if !payload.is_empty() => {
                let i = self.rng.below(payload.len() as u64) as usize;
                let mut sig = payload[i].signature;
                self.corrupt(&mut sig);
                payload[i].signature = sig;
            }
            1 if !payload.is_empty() => {
                let i = self.rng.below(payload.len() as u64) as usize;
                let copy = payload[i].clone();
                let at = self.rng.below(payload.len() as u64 + 1) as usize;
                payload.insert(at, copy);
            }
            _ if !self.seen_txs.is_empty() => {
                let old = self.rng.pick(&self.seen_txs).clone();
                let at = self.rng.below(payload.len() as u64 + 1) as usize;
                payload.insert(at, old);
            }
            _ => {}
        }
    }

    /// A proposal with one field breaking a rule, re-signed so only the rule can refuse it.
    fn malform(&mut self, p: Proposal) -> Proposal {
        let mut block = p.block;
        match self.rng.below(7) {
            0 => block.height += 1,
            1 => block.qc.round += 1,
            2 => block.tc = None,
            3 => block.timestamp_ms += 3_600_000,
            4 => block.parent_id = Digest(self.rng.bytes32()),
            5 => block.qc.votes.truncate(1),
            _ => {
                block.author = (self.index + 1) % self.setup.committee.size() as ValidatorIndex;
            }
        }
        self.sign_block(block)
    }

    /// Unprompted messages, sent at random times.
    pub fn inject(&mut self, core: Option<&Core>) -> Vec<(Route, ConsensusMessage)> {
        let Some(core) = core else {
            return Vec::new();
        };
        let b = self.behaviour.clone();
        let n = self.setup.committee.size() as u64;
        let round = core.round();
        let high_qc = core.high_qc().clone();
        let mut out = Vec::new();
        if b.unknown_votes {
            let r = round + self.rng.below(3);
            let unknown = Digest(self.rng.bytes32());
            let v = self.vote(unknown, r, high_qc.height + 1);
            out.push((
                Route::To(self.setup.committee.leader(r + 1)),
                ConsensusMessage::Vote(v),
            ));
        }
        if b.stale_future {
            let r = match self.rng.below(3) {
                0 => round.saturating_sub(1 + self.rng.below(5)),
                1 => round + 1_000 + self.rng.below(1_000),
                _ => u64::MAX - self.rng.below(2),
            };
            let signature =
                self.keypair
                    .sign(&Timeout::signing_message(self.chain(), r, high_qc.round));
            let t = Timeout {
                round: r,
                high_qc: high_qc.clone(),
                author: self.index,
                signature,
            };
            out.push((Route::All, ConsensusMessage::Timeout(t)));
            let v = self.vote(high_qc.block_id, r, high_qc.height);
            out.push((Route::All, ConsensusMessage::Vote(v)));
            // A far-future proposal of a round this validator leads.
            let mut fr = round + 200 + self.rng.below(n);
            while self.setup.committee.leader(fr) != self.index {
                fr += 1;
            }
            if let Some(parent) = core.block(&high_qc.block_id) {
                let block = Block {
                    round: fr,
                    height: parent.height + 1,
                    parent_id: parent.id(),
                    qc: high_qc.clone(),
                    tc: None,
                    author: self.index,
                    timestamp_ms: parent.timestamp_ms,
                    payload: Vec::new(),
                    batches: Vec::new(),
                };
                out.push((
                    Route::All,
                    ConsensusMessage::Proposal(self.sign_block(block)),
                ));
            }
        }
        if b.malformed {
            out.push(self.bad_sync(core));
        }
        out
    }

    /// Unasked or broken sync traffic, and requests that cost the peer work.
    fn bad_sync(&mut self, core: &Core) -> (Route, ConsensusMessage) {
        let tip = core.block(&core.high_qc().block_id).cloned();
        let msg = match (self.rng.below(4), tip) {
            (0, Some(block)) => {
                let mut unlinked = block.clone();
                unlinked.parent_id = Digest(self.rng.bytes32());
                ConsensusMessage::SyncResponse {
                    blocks: vec![block, unlinked],
                }
            }
            (1, Some(block)) => ConsensusMessage::CatchUpResponse {
                blocks: vec![block.clone(), block],
            },
            (2, _) => ConsensusMessage::SyncRequest {
                block_id: Digest(self.rng.bytes32()),
                max_blocks: u32::MAX,
            },
            _ => ConsensusMessage::CatchUpRequest {
                from_height: self.rng.below(u64::MAX),
                max_blocks: u32::MAX,
            },
        };
        (Route::All, msg)
    }
}
