//! The Jolteon state machine.

use crate::{verify_proofs, verify_qc, verify_tc, ConsensusError, SafetyData};
use netchain_crypto::{verify, Keypair};
use netchain_types::{
    codec, Block, Committee, ConsensusMessage, Digest, ProofOfAvailability, Proposal, QuorumCert,
    Signature, SignedTransaction, Timeout, TimeoutCert, ValidatorIndex, Vote,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Parameters of the core; all bounds carry their unit.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Chain id (signed into every vote and proposal).
    pub chain_id: String,
    /// The validator set.
    pub committee: Committee,
    /// This validator's index.
    pub me: ValidatorIndex,
    /// Round timeout after a round that made progress.
    pub round_timeout_ms: u64,
    /// Cap of the exponentially growing timeout after consecutive timed-out rounds.
    pub max_round_timeout_ms: u64,
    /// A leader with nothing to propose waits this long before proposing an empty block.
    pub empty_block_interval_ms: u64,
    /// A leader proposes this long after entering its round at the earliest (larger blocks).
    pub min_block_interval_ms: u64,
    /// A leader whose execution is behind ([`PayloadSource::execution_backlogged`]) proposes
    /// this long after entering its round at the earliest (when more than
    /// `min_block_interval_ms`): larger blocks cost less per transaction to execute.
    pub backlog_block_interval_ms: u64,
    /// Most transactions in a block.
    pub block_max_txs: usize,
    /// Most encoded bytes of a block.
    pub block_max_bytes: usize,
    /// Most proofs of availability (batches) in a block.
    pub block_max_batches: usize,
    /// Most blocks asked for or served in one sync message.
    pub sync_max_blocks: u32,
    /// Most proposals buffered while their ancestors are fetched.
    pub pending_blocks_max: usize,
    /// How far ahead of the local clock a block timestamp may be.
    pub clock_skew_max_ms: u64,
}

impl CoreConfig {
    /// Defaults for a committee (tests and local networks).
    pub fn new(chain_id: impl Into<String>, committee: Committee, me: ValidatorIndex) -> Self {
        Self {
            chain_id: chain_id.into(),
            committee,
            me,
            round_timeout_ms: 1_000,
            max_round_timeout_ms: 10_000,
            empty_block_interval_ms: 200,
            min_block_interval_ms: 0,
            backlog_block_interval_ms: 0,
            block_max_txs: 5_000,
            block_max_bytes: 4 << 20,
            block_max_batches: 64,
            sync_max_blocks: 100,
            pending_blocks_max: 200,
            clock_skew_max_ms: 30_000,
        }
    }
}

/// Source of transactions for the leader's proposals (the mempool).
pub trait PayloadSource {
    /// Whether any transaction is waiting.
    fn has_pending(&self) -> bool;
    /// Takes transactions for the block of `round`, within the bounds. `ancestors` are the
    /// uncommitted blocks the new block extends (its parent first): their transactions must not
    /// be proposed again, and a sender's nonces continue after theirs.
    fn pull(
        &mut self,
        round: u64,
        max_txs: usize,
        max_bytes: usize,
        ancestors: &[&Block],
    ) -> Vec<SignedTransaction>;
    /// Takes proofs of availability for the block of `round` (batch mode): none that `ancestors`
    /// already carry, and none expired at `timestamp_ms`, the new block's timestamp.
    fn pull_proofs(
        &mut self,
        _round: u64,
        _max_batches: usize,
        _ancestors: &[&Block],
        _timestamp_ms: u64,
    ) -> Vec<ProofOfAvailability> {
        Vec::new()
    }
    /// Whether a committed block already carried this batch (a block carrying it again is
    /// refused; a source may forget old ones, so this is a best effort that honest leaders never
    /// need).
    fn committed_batch(&self, _digest: &Digest) -> bool {
        false
    }
    /// Whether this source verified exactly this proof already (a block carrying it then
    /// needs no second check of its signatures).
    fn verified_proof(&self, _proof: &ProofOfAvailability) -> bool {
        false
    }
    /// Told, as soon as it happens, that these blocks (oldest first) are committed.
    fn on_commit(&mut self, _blocks: &[Block]) {}
    /// Whether this validator's execution is behind the committed chain (its leader then
    /// waits up to `backlog_block_interval_ms` so its blocks gather more).
    fn execution_backlogged(&self) -> bool {
        false
    }
}

/// An input to the core.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // messages dominate; boxing every event buys nothing
pub enum Event {
    /// A message from validator `from` (possibly this validator itself).
    Message {
        /// Sender.
        from: ValidatorIndex,
        /// Message.
        msg: ConsensusMessage,
    },
    /// Time passed: check timers and whether to propose.
    Tick,
}

/// An output of the core, performed by the driver in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Store a block that joined the block tree (uncommitted), so a restart can recover the
    /// certified chain its safety data refers to. Performed before any later action.
    StoreBlock(Block),
    /// Durably store the safety data before performing any later action.
    PersistSafety(SafetyData),
    /// Send to one validator (may be this one).
    Send {
        /// Recipient.
        to: ValidatorIndex,
        /// Message.
        msg: ConsensusMessage,
    },
    /// Send to every validator, this one included.
    Broadcast(ConsensusMessage),
    /// These blocks are final, oldest first; `commit_qc` certifies the last one.
    Commit {
        /// Newly committed blocks.
        blocks: Vec<Block>,
        /// QC of the last block.
        commit_qc: QuorumCert,
    },
}

/// What one call of [`Core::handle`] produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// Why the input was (partly) refused, if it was.
    pub error: Option<ConsensusError>,
}

struct PendingBlock {
    block: Block,
    signature: Option<Signature>,
    from: ValidatorIndex,
}

/// The consensus state machine of one validator.
pub struct Core {
    cfg: CoreConfig,
    keypair: Keypair,
    genesis_id: Digest,
    safety: SafetyData,
    round: u64,
    round_started_ms: u64,
    round_deadline_ms: u64,
    consecutive_timeouts: u32,
    high_qc: QuorumCert,
    last_tc: Option<TimeoutCert>,
    /// Uncommitted blocks plus the committed tip.
    blocks: HashMap<Digest, Block>,
    committed_id: Digest,
    committed_round: u64,
    committed_height: u64,
    /// Blocks waiting for their parent, keyed by parent id.
    pending: HashMap<Digest, Vec<PendingBlock>>,
    pending_count: usize,
    /// Sync requests in flight: block id -> (time asked, attempts so far).
    sync_requested: HashMap<Digest, (u64, usize)>,
    catch_up_until_ms: u64,
    votes: BTreeMap<u64, HashMap<ValidatorIndex, Vote>>,
    timeouts: BTreeMap<u64, BTreeMap<ValidatorIndex, Timeout>>,
    proposed_round: u64,
    /// First valid proposal seen per round (equivocation guard), pruned at commit.
    proposals: BTreeMap<u64, Digest>,
    /// Peer a catch-up request is outstanding with.
    catch_up_peer: Option<ValidatorIndex>,
    /// First height of the last catch-up started for an orphan block, and how many times in a
    /// row it was wanted again from there (see `request_ancestors`).
    catch_up_from: u64,
    catch_up_repeats: u64,
    /// When each validator's stale timeout was last answered (see `on_timeout`).
    answered_ms: BTreeMap<ValidatorIndex, u64>,
    out: Vec<Action>,
}

const SYNC_RETRY_MS: u64 = 500;
const SYNC_REQUESTS_MAX: usize = 64;
const VOTE_ROUNDS_AHEAD_MAX: u64 = 100;
const PROPOSALS_TRACKED_MAX: usize = 1_000;

impl Core {
    /// A core resuming from the committed tip `tip` (certified by `tip_qc`) and persisted safety
    /// data. For a new chain, `tip` is the genesis block and `tip_qc` the genesis QC.
    pub fn new(
        cfg: CoreConfig,
        keypair: Keypair,
        genesis_id: Digest,
        tip: Block,
        tip_qc: QuorumCert,
        safety: SafetyData,
        now_ms: u64,
    ) -> Self {
        assert_eq!(tip_qc.block_id, tip.id(), "tip QC must certify the tip");
        assert!(cfg.committee.key(cfg.me) == Some(&keypair.public()));
        let tip_id = tip.id();
        // Resume no lower than the last round this validator signed in: the timeout rule would
        // refuse any earlier round.
        let round = (tip_qc.round + 1).max(safety.last_voted_round);
        let mut core = Self {
            round_deadline_ms: now_ms + cfg.round_timeout_ms,
            cfg,
            keypair,
            genesis_id,
            safety,
            round,
            round_started_ms: now_ms,
            consecutive_timeouts: 0,
            high_qc: tip_qc,
            last_tc: None,
            committed_id: tip_id,
            committed_round: tip.round,
            committed_height: tip.height,
            blocks: HashMap::from([(tip_id, tip)]),
            pending: HashMap::new(),
            pending_count: 0,
            sync_requested: HashMap::new(),
            catch_up_until_ms: 0,
            votes: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            proposed_round: 0,
            proposals: BTreeMap::new(),
            catch_up_peer: None,
            catch_up_from: 0,
            catch_up_repeats: 0,
            answered_ms: BTreeMap::new(),
            out: Vec::new(),
        };
        core.proposed_round = core.safety.last_voted_round;
        core
    }

    /// After a restart: re-inserts the stored uncommitted blocks (oldest first, extending the
    /// committed tip) and resumes from the highest QC the safety data recorded. Blocks that do
    /// not link are ignored. Returns how many blocks were recovered.
    pub fn recover(&mut self, blocks: Vec<Block>) -> usize {
        let mut recovered = 0;
        for block in blocks {
            if block.round <= self.committed_round || !self.blocks.contains_key(&block.parent_id) {
                continue;
            }
            self.blocks.insert(block.id(), block);
            recovered += 1;
        }
        if let Some(qc) = self.safety.one_chain_qc.clone() {
            if qc.round > self.high_qc.round && self.blocks.contains_key(&qc.block_id) {
                self.high_qc = qc;
                self.round = self.round.max(self.high_qc.round + 1);
            }
        }
        recovered
    }

    /// Current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Highest known QC.
    pub fn high_qc(&self) -> &QuorumCert {
        &self.high_qc
    }

    /// Height and id of the last committed block.
    pub fn committed(&self) -> (u64, Digest) {
        (self.committed_height, self.committed_id)
    }

    /// The safety data as last persisted.
    pub fn safety(&self) -> &SafetyData {
        &self.safety
    }

    /// An uncommitted block (or the committed tip) by id.
    pub fn block(&self, id: &Digest) -> Option<&Block> {
        self.blocks.get(id)
    }

    /// Number of blocks held in memory (uncommitted tree and pending).
    pub fn buffered_blocks(&self) -> usize {
        self.blocks.len() + self.pending_count
    }

    /// Processes one event at time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, event: Event, payload: &mut dyn PayloadSource) -> Step {
        let result = match event {
            Event::Tick => {
                self.on_tick(now_ms, payload);
                Ok(())
            }
            Event::Message { from, msg } => self.on_message(now_ms, from, msg, payload),
        };
        Step {
            actions: std::mem::take(&mut self.out),
            error: result.err(),
        }
    }

    fn on_message(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        msg: ConsensusMessage,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        if self.cfg.committee.key(from).is_none() {
            return Err(ConsensusError::UnknownValidator(from));
        }
        match msg {
            ConsensusMessage::Proposal(p) => self.on_proposal(now, from, p, payload),
            ConsensusMessage::Vote(v) => self.on_vote(now, v, payload),
            ConsensusMessage::Timeout(t) => self.on_timeout(now, from, t, payload),
            ConsensusMessage::SyncResponse { blocks } => {
                self.on_sync_response(now, from, blocks, payload)
            }
            ConsensusMessage::CatchUpResponse { blocks } => {
                self.on_catch_up_response(now, from, blocks, payload)
            }
            // Requests are served by the driver from its block store; transactions go to the
            // mempool and checkpoint votes to the checkpoint aggregator.
            ConsensusMessage::SyncRequest { .. }
            | ConsensusMessage::CatchUpRequest { .. }
            | ConsensusMessage::Transactions { .. }
            | ConsensusMessage::Batch { .. }
            | ConsensusMessage::BatchAck { .. }
            | ConsensusMessage::Proof(_)
            | ConsensusMessage::BatchRequest { .. }
            | ConsensusMessage::BatchResponse(_)
            | ConsensusMessage::CheckpointVote { .. } => Ok(()),
        }
    }

    // ---- proposals -------------------------------------------------------------------------

    fn check_block(
        &self,
        block: &Block,
        id: &Digest,
        payload: &dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        let malformed = |reason: &str| ConsensusError::MalformedBlock {
            block: *id,
            reason: reason.into(),
        };
        let leader = self.cfg.committee.leader(block.round);
        if block.author != leader {
            return Err(ConsensusError::WrongLeader {
                round: block.round,
                leader,
                author: block.author,
            });
        }
        if block.qc.block_id != block.parent_id {
            return Err(malformed("parent id differs from the QC's block"));
        }
        if block.qc.round >= block.round {
            return Err(malformed("QC round not below block round"));
        }
        if block.qc.height.checked_add(1) != Some(block.height) {
            return Err(malformed("height is not parent height + 1"));
        }
        match &block.tc {
            None if block.round != block.qc.round + 1 => {
                return Err(malformed("round skips without a timeout certificate"))
            }
            Some(tc) if tc.round.checked_add(1) != Some(block.round) => {
                return Err(malformed("timeout certificate not for the previous round"))
            }
            Some(tc) if block.qc.round < tc.max_high_qc_round() => {
                return Err(malformed("QC older than the timeout certificate's highest"))
            }
            _ => {}
        }
        let bytes = codec::encode(block).len();
        if block.payload.len() > self.cfg.block_max_txs || bytes > self.cfg.block_max_bytes {
            return Err(ConsensusError::BlockTooLarge {
                block: *id,
                txs: block.payload.len(),
                bytes,
            });
        }
        if block.batches.len() > self.cfg.block_max_batches {
            return Err(malformed("too many batches"));
        }
        let mut digests = HashSet::with_capacity(block.batches.len());
        for proof in &block.batches {
            if !digests.insert(proof.info.digest) {
                return Err(malformed("a batch twice"));
            }
            if proof.info.expires_ms < block.timestamp_ms {
                return Err(malformed("a batch expired before the block's time"));
            }
            if payload.committed_batch(&proof.info.digest) {
                return Err(malformed("a batch a committed block carried"));
            }
        }
        if !block.batches.is_empty() {
            // Nor one an uncommitted ancestor carries (execution also skips a batch executed
            // before, whatever the voters knew).
            let mut cursor = self.blocks.get(&block.parent_id);
            while let Some(b) = cursor {
                if b.round <= self.committed_round {
                    break;
                }
                if b.batches.iter().any(|p| digests.contains(&p.info.digest)) {
                    return Err(malformed("a batch an ancestor carries"));
                }
                cursor = self.blocks.get(&b.parent_id);
            }
        }
        verify_qc(
            &self.cfg.chain_id,
            &self.cfg.committee,
            &self.genesis_id,
            &block.qc,
        )?;
        if let Some(tc) = &block.tc {
            verify_tc(&self.cfg.chain_id, &self.cfg.committee, tc)?;
        }
        let unverified: Vec<ProofOfAvailability> = block
            .batches
            .iter()
            .filter(|p| !payload.verified_proof(p))
            .cloned()
            .collect();
        verify_proofs(&self.cfg.chain_id, &self.cfg.committee, &unverified)?;
        Ok(())
    }

    fn on_proposal(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        p: Proposal,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        let id = p.block.id();
        if p.block.round <= self.committed_round {
            return Err(ConsensusError::Stale {
                round: p.block.round,
                current: self.round,
            });
        }
        if self.blocks.contains_key(&id) {
            return Ok(());
        }
        // Cheap checks first: the leader's own signature (one verification) before the block's
        // certificates (2f+1) and hashing its payload.
        let leader = self.cfg.committee.leader(p.block.round);
        if p.block.author != leader {
            return Err(ConsensusError::WrongLeader {
                round: p.block.round,
                leader,
                author: p.block.author,
            });
        }
        let author_key = self
            .cfg
            .committee
            .key(p.block.author)
            .ok_or(ConsensusError::UnknownValidator(p.block.author))?;
        verify(
            author_key,
            &Block::proposal_message(&self.cfg.chain_id, &id),
            &p.signature,
        )
        .map_err(|_| ConsensusError::BadSignature {
            what: "proposal",
            author: p.block.author,
        })?;
        // One proposal per round: a second, different one from the leader is equivocation.
        match self.proposals.get(&p.block.round) {
            Some(first) if *first != id => {
                return Err(ConsensusError::Equivocation {
                    round: p.block.round,
                    author: p.block.author,
                })
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.check_block(&p.block, &id, payload)?;
        if self.proposals.len() >= PROPOSALS_TRACKED_MAX {
            self.proposals.pop_first();
        }
        self.proposals.insert(p.block.round, id);
        // Certificates first: they may move this validator into the block's round.
        self.process_qc(now, &p.block.qc, payload);
        if let Some(tc) = &p.block.tc {
            self.process_tc(now, tc, payload);
        }
        self.insert_or_buffer(
            now,
            PendingBlock {
                block: p.block,
                signature: Some(p.signature),
                from,
            },
            payload,
        )
    }

    /// Inserts a verified (or hash-certified) block whose parent is known, or buffers it and
    /// asks for its ancestors. A block with the proposer's signature may get this validator's vote.
    fn insert_or_buffer(
        &mut self,
        now: u64,
        pb: PendingBlock,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        let id = pb.block.id();
        if pb.block.round <= self.committed_round || self.blocks.contains_key(&id) {
            return Ok(());
        }
        let parent_id = pb.block.parent_id;
        let Some(parent) = self.blocks.get(&parent_id) else {
            self.request_ancestors(now, pb.from, &pb.block);
            // A re-delivered orphan takes no second slot (else replays fill the buffer).
            if let Some(same) = self
                .pending
                .get_mut(&parent_id)
                .and_then(|siblings| siblings.iter_mut().find(|s| s.block.id() == id))
            {
                if same.signature.is_none() {
                    same.signature = pb.signature;
                }
                return Ok(());
            }
            if self.pending_count >= self.cfg.pending_blocks_max {
                return Err(ConsensusError::BufferFull("pending blocks"));
            }
            self.pending_count += 1;
            self.pending.entry(parent_id).or_default().push(pb);
            return Ok(());
        };
        // The future bound applies to fresh proposals only: certified blocks are already final
        // for a quorum, and a node with a slow clock must still be able to sync them.
        let from_future = pb.signature.is_some()
            && pb.block.timestamp_ms > now.saturating_add(self.cfg.clock_skew_max_ms);
        if pb.block.timestamp_ms < parent.timestamp_ms || from_future {
            return Err(ConsensusError::MalformedBlock {
                block: id,
                reason: "timestamp before parent's or too far ahead".into(),
            });
        }
        let qc = pb.block.qc.clone();
        self.out.push(Action::StoreBlock(pb.block.clone()));
        self.blocks.insert(id, pb.block);
        // The block's QC may now complete a 2-chain (its parent was missing before).
        self.process_qc(now, &qc, payload);
        if pb.signature.is_some() {
            self.try_vote(&id);
        }
        if let Some(children) = self.pending.remove(&id) {
            self.pending_count -= children.len();
            for child in children {
                let _ = self.insert_or_buffer(now, child, payload);
            }
        }
        self.try_propose(now, payload);
        Ok(())
    }

    fn request_ancestors(&mut self, now: u64, from: ValidatorIndex, block: &Block) {
        let far = block.height > self.committed_height + self.cfg.sync_max_blocks as u64;
        if far {
            // Asking again from the same height means catch-up brought nothing to commit: the
            // gap is (also) uncommitted blocks, which catch-up does not serve and only sync can
            // fetch (commits may even wait for us). Alternate between the two.
            let from_height = self.committed_height + 1;
            if from_height == self.catch_up_from {
                self.catch_up_repeats += 1;
            } else {
                (self.catch_up_from, self.catch_up_repeats) = (from_height, 0);
            }
        }
        if far && self.catch_up_repeats.is_multiple_of(2) {
            if now >= self.catch_up_until_ms {
                self.catch_up_until_ms = now + SYNC_RETRY_MS;
                self.catch_up_peer = Some(from);
                self.out.push(Action::Send {
                    to: from,
                    msg: ConsensusMessage::CatchUpRequest {
                        from_height: self.committed_height + 1,
                        max_blocks: self.cfg.sync_max_blocks,
                    },
                });
            }
            return;
        }
        let max_blocks = (block.height.saturating_sub(self.committed_height))
            .clamp(1, self.cfg.sync_max_blocks as u64) as u32;
        // The sender first, then the signers of the block's QC (they voted for the parent).
        let mut peers = vec![from];
        peers.extend(self.signers_but_me(&block.qc, Some(from)));
        self.request_block(now, &peers, block.parent_id, max_blocks);
    }

    /// The signers of `qc` other than this validator and `except`.
    fn signers_but_me(
        &self,
        qc: &QuorumCert,
        except: Option<ValidatorIndex>,
    ) -> Vec<ValidatorIndex> {
        qc.votes
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| *i != self.cfg.me && Some(*i) != except)
            .collect()
    }

    /// Asks `from` for block `id` and up to `max_blocks - 1` ancestors (rate-limited per id).
    /// Each retry asks the next of `peers` (all of which should hold the block): a peer that does
    /// not answer (crashed, cut off, Byzantine) must not be asked forever while others could.
    fn request_block(&mut self, now: u64, peers: &[ValidatorIndex], id: Digest, max_blocks: u32) {
        let attempts = match self.sync_requested.get(&id) {
            Some((asked, _)) if now < asked + SYNC_RETRY_MS => return,
            Some((_, attempts)) => *attempts,
            None => 0,
        };
        if peers.is_empty() {
            return;
        }
        if self.sync_requested.len() >= SYNC_REQUESTS_MAX {
            self.sync_requested
                .retain(|_, (t, _)| now < *t + SYNC_RETRY_MS);
            if self.sync_requested.len() >= SYNC_REQUESTS_MAX {
                return;
            }
        }
        self.sync_requested.insert(id, (now, attempts + 1));
        self.out.push(Action::Send {
            to: peers[attempts % peers.len()],
            msg: ConsensusMessage::SyncRequest {
                block_id: id,
                max_blocks,
            },
        });
    }

    fn try_vote(&mut self, id: &Digest) {
        let Some(block) = self.blocks.get(id) else {
            return;
        };
        if block.round != self.round || !self.safety.safe_to_vote(block) {
            return;
        }
        let id = *id;
        let msg = Vote::signing_message(&self.cfg.chain_id, &id, block.round, block.height);
        let vote = Vote {
            block_id: id,
            round: block.round,
            height: block.height,
            author: self.cfg.me,
            signature: self.keypair.sign(&msg),
        };
        let next_leader = self.cfg.committee.leader(block.round + 1);
        let parent_qc_round = self.blocks.get(&block.parent_id).map(|p| p.qc.round);
        self.safety.record_vote(block, vote.clone());
        if let Some(round) = parent_qc_round {
            self.safety.observe_parent_round(round);
        }
        self.out.push(Action::PersistSafety(self.safety.clone()));
        self.out.push(Action::Send {
            to: next_leader,
            msg: ConsensusMessage::Vote(vote),
        });
    }

    // ---- votes and certificates ------------------------------------------------------------

    fn on_vote(
        &mut self,
        now: u64,
        vote: Vote,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        if vote.round == u64::MAX || self.cfg.committee.leader(vote.round + 1) != self.cfg.me {
            return Err(ConsensusError::NotNextLeader { round: vote.round });
        }
        if vote.round < self.round.saturating_sub(1) || vote.round <= self.high_qc.round {
            return Err(ConsensusError::Stale {
                round: vote.round,
                current: self.round,
            });
        }
        if vote.round > self.round + VOTE_ROUNDS_AHEAD_MAX {
            return Err(ConsensusError::BufferFull("votes too far ahead"));
        }
        // A replayed vote costs nothing: same author, round and signature as one already counted.
        if self
            .votes
            .get(&vote.round)
            .and_then(|m| m.get(&vote.author))
            .is_some_and(|prev| prev == &vote)
        {
            return Ok(());
        }
        let key = self
            .cfg
            .committee
            .key(vote.author)
            .ok_or(ConsensusError::UnknownValidator(vote.author))?;
        let msg =
            Vote::signing_message(&self.cfg.chain_id, &vote.block_id, vote.round, vote.height);
        verify(key, &msg, &vote.signature).map_err(|_| ConsensusError::BadSignature {
            what: "vote",
            author: vote.author,
        })?;
        let round_votes = self.votes.entry(vote.round).or_default();
        if let Some(prev) = round_votes.get(&vote.author) {
            return if prev.block_id == vote.block_id {
                Ok(())
            } else {
                Err(ConsensusError::Equivocation {
                    round: vote.round,
                    author: vote.author,
                })
            };
        }
        round_votes.insert(vote.author, vote.clone());
        let mut signers: Vec<_> = round_votes
            .values()
            .filter(|v| v.block_id == vote.block_id && v.height == vote.height)
            .map(|v| (v.author, v.signature))
            .collect();
        if signers.len() < self.cfg.committee.quorum() {
            return Ok(());
        }
        signers.sort_by_key(|(i, _)| *i);
        let qc = QuorumCert {
            block_id: vote.block_id,
            round: vote.round,
            height: vote.height,
            votes: signers,
        };
        self.process_qc(now, &qc, payload);
        Ok(())
    }

    fn process_qc(&mut self, now: u64, qc: &QuorumCert, payload: &mut dyn PayloadSource) {
        if qc.round > self.high_qc.round {
            self.high_qc = qc.clone();
        }
        self.try_commit(qc, payload);
        if qc.round >= self.round {
            self.consecutive_timeouts = 0;
            self.advance_round(now, qc.round + 1, payload);
        }
    }

    fn process_tc(&mut self, now: u64, tc: &TimeoutCert, payload: &mut dyn PayloadSource) {
        if self.last_tc.as_ref().is_none_or(|t| t.round < tc.round) {
            self.last_tc = Some(tc.clone());
        }
        if tc.round >= self.round {
            self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
            self.advance_round(now, tc.round + 1, payload);
        }
    }

    fn round_timeout_ms(&self) -> u64 {
        let factor = 1u64 << self.consecutive_timeouts.min(6);
        (self.cfg.round_timeout_ms * factor).min(self.cfg.max_round_timeout_ms)
    }

    fn advance_round(&mut self, now: u64, round: u64, payload: &mut dyn PayloadSource) {
        if round <= self.round {
            return;
        }
        self.round = round;
        self.round_started_ms = now;
        self.round_deadline_ms = now + self.round_timeout_ms();
        let keep_from = round.saturating_sub(1);
        self.votes = self.votes.split_off(&keep_from);
        self.timeouts = self.timeouts.split_off(&keep_from);
        self.try_propose(now, payload);
    }

    /// The 2-chain rule: a QC for block B whose parent P is from the previous round commits P.
    fn try_commit(&mut self, qc: &QuorumCert, payload: &mut dyn PayloadSource) {
        let Some(b) = self.blocks.get(&qc.block_id) else {
            return;
        };
        let Some(p) = self.blocks.get(&b.parent_id) else {
            return;
        };
        if b.round != p.round + 1 || p.round <= self.committed_round {
            return;
        }
        let commit_qc = b.qc.clone();
        let mut chain = Vec::new();
        let mut cursor = p.clone();
        loop {
            let parent = cursor.parent_id;
            chain.push(cursor);
            if parent == self.committed_id {
                break;
            }
            match self.blocks.get(&parent) {
                Some(block) => cursor = block.clone(),
                None => return, // ancestry not complete yet; commit once it is
            }
        }
        chain.reverse();
        let tip = chain.last().expect("non-empty chain");
        self.committed_id = tip.id();
        self.committed_round = tip.round;
        self.committed_height = tip.height;
        let committed_round = self.committed_round;
        let committed_id = self.committed_id;
        self.blocks
            .retain(|id, blk| blk.round > committed_round || *id == committed_id);
        self.pending.retain(|_, children| {
            children.retain(|c| c.block.round > committed_round);
            !children.is_empty()
        });
        self.pending_count = self.pending.values().map(Vec::len).sum();
        self.proposals = self.proposals.split_off(&(committed_round + 1));
        // Before anything else this step proposes: the source must not offer these again.
        payload.on_commit(&chain);
        self.out.push(Action::Commit {
            blocks: chain,
            commit_qc,
        });
    }

    // ---- timeouts ---------------------------------------------------------------------------

    fn on_tick(&mut self, now: u64, payload: &mut dyn PayloadSource) {
        if now >= self.round_deadline_ms {
            self.local_timeout(now);
        }
        self.try_propose(now, payload);
    }

    fn local_timeout(&mut self, now: u64) {
        self.round_deadline_ms = now + self.round_timeout_ms();
        let round = self.round;
        let timeout = match &self.safety.last_timeout {
            Some(t) if t.round == round => t.clone(),
            _ => {
                if !self.safety.safe_to_timeout(round, self.high_qc.round) {
                    return;
                }
                let msg = Timeout::signing_message(&self.cfg.chain_id, round, self.high_qc.round);
                let t = Timeout {
                    round,
                    high_qc: self.high_qc.clone(),
                    author: self.cfg.me,
                    signature: self.keypair.sign(&msg),
                };
                self.safety.record_timeout(t.clone());
                self.out.push(Action::PersistSafety(self.safety.clone()));
                t
            }
        };
        self.out
            .push(Action::Broadcast(ConsensusMessage::Timeout(timeout)));
    }

    fn on_timeout(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        t: Timeout,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        if t.round < self.round {
            // The sender still times out a round we left: it missed the timeouts that formed the
            // certificate we advanced with, and nothing else would carry it (if the others moved
            // on too, none of them times out that round again). Hand it the ones we hold; only to
            // the author itself, so nobody can direct this traffic at a third party, and at most
            // once per retry interval: the answer holds our own timeout, which a peer that is
            // not behind (it got an old copy) would answer in turn, and so on forever.
            let answered = self.answered_ms.get(&from).copied();
            if from == t.author
                && t.round + 1 == self.round
                && answered.is_none_or(|at| now >= at + SYNC_RETRY_MS)
            {
                self.answered_ms.insert(from, now);
                if let Some(held) = self.timeouts.get(&t.round) {
                    for timeout in held.values().filter(|h| h.author != from) {
                        self.out.push(Action::Send {
                            to: from,
                            msg: ConsensusMessage::Timeout(timeout.clone()),
                        });
                    }
                }
            }
            return Err(ConsensusError::Stale {
                round: t.round,
                current: self.round,
            });
        }
        let key = self
            .cfg
            .committee
            .key(t.author)
            .ok_or(ConsensusError::UnknownValidator(t.author))?;
        // A replayed timeout costs nothing (its high QC would otherwise be verified again).
        if self
            .timeouts
            .get(&t.round)
            .and_then(|m| m.get(&t.author))
            .is_some_and(|prev| prev == &t)
        {
            return Ok(());
        }
        let msg = Timeout::signing_message(&self.cfg.chain_id, t.round, t.high_qc.round);
        verify(key, &msg, &t.signature).map_err(|_| ConsensusError::BadSignature {
            what: "timeout",
            author: t.author,
        })?;
        if t.high_qc.round >= t.round {
            return Err(ConsensusError::BadCertificate {
                what: "timeout",
                round: t.round,
                reason: "high QC not below the timed-out round".into(),
            });
        }
        verify_qc(
            &self.cfg.chain_id,
            &self.cfg.committee,
            &self.genesis_id,
            &t.high_qc,
        )?;
        self.process_qc(now, &t.high_qc, payload);
        if t.round < self.round {
            return Ok(());
        }
        if t.round > self.round + VOTE_ROUNDS_AHEAD_MAX {
            return Err(ConsensusError::BufferFull("timeouts too far ahead"));
        }
        let round = t.round;
        let entry = self.timeouts.entry(round).or_default();
        entry.insert(t.author, t);
        let count = entry.len();
        // Join a timeout that f+1 validators (so at least one honest) already declared, also for
        // a round ahead of ours: a validator that missed the certificate others advanced with
        // (it was down or cut off) could otherwise never reach their round, and without it no
        // round may gather a quorum again.
        if count > self.cfg.committee.max_faulty()
            && round >= self.round
            && self
                .safety
                .last_timeout
                .as_ref()
                .is_none_or(|lt| lt.round < round)
        {
            self.advance_round(now, round, payload);
            self.local_timeout(now);
        }
        let entry = &self.timeouts[&round];
        if entry.len() >= self.cfg.committee.quorum() {
            let tc = TimeoutCert {
                round,
                timeouts: entry
                    .values()
                    .map(|t| (t.author, t.high_qc.round, t.signature))
                    .collect(),
            };
            self.process_tc(now, &tc, payload);
        }
        Ok(())
    }

    // ---- proposing --------------------------------------------------------------------------

    fn try_propose(&mut self, now: u64, payload: &mut dyn PayloadSource) {
        let round = self.round;
        if self.cfg.committee.leader(round) != self.cfg.me || self.proposed_round >= round {
            return;
        }
        let Some(parent) = self.blocks.get(&self.high_qc.block_id) else {
            // A QC formed from votes for a block this leader never received: fetch it from the
            // signers, who have it.
            let signers = self.signers_but_me(&self.high_qc, None);
            let id = self.high_qc.block_id;
            self.request_block(now, &signers, id, 1);
            return;
        };
        let tc = if self.high_qc.round + 1 == round {
            None
        } else {
            match &self.last_tc {
                Some(tc) if tc.round + 1 == round => Some(tc.clone()),
                _ => return,
            }
        };
        let carries = |b: &Block| !b.payload.is_empty() || !b.batches.is_empty();
        let busy_ancestry = carries(parent)
            || self
                .blocks
                .get(&parent.parent_id)
                .is_some_and(|gp| carries(gp) && gp.round > 0);
        if !payload.has_pending()
            && !busy_ancestry
            && now < self.round_started_ms + self.cfg.empty_block_interval_ms
        {
            return;
        }
        let wait = if payload.execution_backlogged() {
            self.cfg
                .min_block_interval_ms
                .max(self.cfg.backlog_block_interval_ms)
        } else {
            self.cfg.min_block_interval_ms
        };
        if now < self.round_started_ms + wait {
            return;
        }
        let mut block = Block {
            round,
            height: parent.height + 1,
            parent_id: parent.id(),
            qc: self.high_qc.clone(),
            tc,
            author: self.cfg.me,
            timestamp_ms: now.max(parent.timestamp_ms),
            payload: Vec::new(),
            batches: Vec::new(),
        };
        // Everything but the payload (QC and TC grow with the committee) counts against the bound.
        let overhead = codec::encode(&block).len() + 16;
        let mut ancestors = Vec::new();
        let mut cursor = self.blocks.get(&block.parent_id);
        while let Some(b) = cursor {
            if b.round <= self.committed_round {
                break;
            }
            ancestors.push(b);
            cursor = self.blocks.get(&b.parent_id);
        }
        block.payload = payload.pull(
            round,
            self.cfg.block_max_txs,
            self.cfg.block_max_bytes.saturating_sub(overhead),
            &ancestors,
        );
        block.batches = payload.pull_proofs(
            round,
            self.cfg.block_max_batches,
            &ancestors,
            block.timestamp_ms,
        );
        // Proofs count against the byte bound too (a large committee's proofs are large).
        while !block.batches.is_empty() && codec::encode(&block).len() > self.cfg.block_max_bytes {
            let keep = block.batches.len() / 2;
            block.batches.truncate(keep);
        }
        let id = block.id();
        let signature = self
            .keypair
            .sign(&Block::proposal_message(&self.cfg.chain_id, &id));
        self.proposed_round = round;
        let proposal = Action::Broadcast(ConsensusMessage::Proposal(Proposal {
            block: block.clone(),
            signature,
        }));
        // Vote for our own block now, so the safety data persisted ahead of the proposal records
        // this round: `proposed_round` is restored from `last_voted_round`, and a leader that
        // restarts after proposing must not propose a second, different block for the round.
        // (Our own proposal coming back through the broadcast is then a known block: no-op.)
        self.out.push(Action::StoreBlock(block.clone()));
        self.blocks.insert(id, block);
        let mark = self.out.len();
        self.try_vote(&id);
        let persisted = matches!(self.out.get(mark), Some(Action::PersistSafety(_)));
        self.out
            .insert(if persisted { mark + 1 } else { mark }, proposal);
    }

    // ---- sync -------------------------------------------------------------------------------

    fn on_sync_response(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        blocks: Vec<Block>,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        let Some(first) = blocks.first() else {
            return Ok(());
        };
        if blocks.len() > self.cfg.sync_max_blocks as usize {
            return Err(ConsensusError::BadSync("too many blocks".into()));
        }
        let first_id = first.id();
        if self.sync_requested.remove(&first_id).is_none() {
            return Err(ConsensusError::BadSync(format!(
                "block {first_id} not requested"
            )));
        }
        // Newest first; each block must be the parent of the one before. The newest was named by
        // a verified QC, so the hash chain makes every block here certified.
        for pair in blocks.windows(2) {
            if pair[1].id() != pair[0].parent_id {
                return Err(ConsensusError::BadSync("blocks do not link".into()));
            }
        }
        self.insert_certified(now, from, blocks.into_iter().rev(), payload);
        Ok(())
    }

    fn on_catch_up_response(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        blocks: Vec<Block>,
        payload: &mut dyn PayloadSource,
    ) -> Result<(), ConsensusError> {
        if self.catch_up_peer != Some(from) {
            return Err(ConsensusError::BadSync(
                "catch-up response not asked for".into(),
            ));
        }
        if blocks.len() > self.cfg.sync_max_blocks as usize {
            return Err(ConsensusError::BadSync("too many blocks".into()));
        }
        // Ascending; block i+1 carries the QC certifying block i, which we verify. The last block
        // has no certificate here and is left for the next request.
        let mut certified = Vec::new();
        for pair in blocks.windows(2) {
            let (block, child) = (&pair[0], &pair[1]);
            if child.parent_id != block.id() || child.qc.block_id != child.parent_id {
                return Err(ConsensusError::BadSync("blocks do not link".into()));
            }
            verify_qc(
                &self.cfg.chain_id,
                &self.cfg.committee,
                &self.genesis_id,
                &child.qc,
            )?;
            certified.push(block.clone());
        }
        let Some(next_height) = certified.last().map(|b| b.height.saturating_add(1)) else {
            self.catch_up_until_ms = 0;
            self.catch_up_peer = None;
            return Ok(());
        };
        self.insert_certified(now, from, certified.into_iter(), payload);
        // Keep going from the first block not certified yet while the peer has more (a batch
        // may be cut short by its byte bound, and need not commit anything by itself).
        self.catch_up_until_ms = now + SYNC_RETRY_MS;
        self.out.push(Action::Send {
            to: from,
            msg: ConsensusMessage::CatchUpRequest {
                from_height: next_height.max(self.committed_height + 1),
                max_blocks: self.cfg.sync_max_blocks,
            },
        });
        Ok(())
    }

    /// Inserts certified blocks, oldest first, as if their QCs had been received.
    fn insert_certified(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        blocks: impl Iterator<Item = Block>,
        payload: &mut dyn PayloadSource,
    ) {
        for block in blocks {
            let pb = PendingBlock {
                block,
                signature: None,
                from,
            };
            if let Err(e) = self.insert_or_buffer(now, pb, payload) {
                tracing::debug!(error = %e, "synced block not inserted");
            }
        }
    }
}
