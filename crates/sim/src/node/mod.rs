//! One validator instance, driven the way `netchain-node` drives it, over simulated storage.
//!
//! The driver owns the real [`Core`], [`Mempool`] and [`Executor`]; it performs the core's actions
//! in order (block store writes unsynced, safety data synced), answers sync and catch-up requests
//! from the tree and the store, admits gossiped transactions, and executes committed blocks from a
//! queue that a crash loses (execution lags consensus in the real node too). A restart rebuilds
//! everything from the disk exactly as `Node::start` does.

use crate::disk::SimDisk;
use netchain_consensus::{
    Action, CheckpointAggregator, Core, CoreConfig, Event, PayloadSource, SafetyData,
};
use netchain_crypto::{verify_each, verify_transaction, Keypair};
use netchain_execution::Executor;
use netchain_mempool::{Mempool, MempoolConfig, QuorumStore, QuorumStoreConfig};
use netchain_storage::{ChainStore, ChainTip, WriteBatch};
use netchain_types::registry::Governance;
use netchain_types::{
    codec, Batch, Block, Checkpoint, Committee, ConsensusMessage, Digest, PublicKey, QuorumCert,
    Receipt, SignedTransaction, TxId, ValidatorIndex,
};
use std::collections::VecDeque;
use std::sync::Arc;

mod serve;

use serve::{recover_uncommitted, serve_catch_up, serve_sync, Verified};

/// The chain every instance of a run shares.
pub struct ChainSetup {
    /// Chain id.
    pub chain_id: String,
    /// Validator set.
    pub committee: Committee,
    /// Validator keys, by index.
    pub keys: Vec<Keypair>,
    /// Genesis hash (the genesis block's parent id).
    pub genesis_hash: Digest,
    /// Genesis block.
    pub genesis: Block,
    /// Funded accounts at genesis.
    pub accounts: Vec<(PublicKey, u64)>,
    /// Round timeout of the cores.
    pub round_timeout_ms: u64,
    /// Most blocks per sync answer.
    pub sync_max_blocks: u32,
    /// Most transactions per block.
    pub block_max_txs: usize,
    /// A root chain's governance (its genesis state then holds the chain registry).
    pub governance: Option<Governance>,
    /// Validators sign executed checkpoints and aggregate them into certificates (as the node
    /// does; only runs with anchoring need them).
    pub checkpoints: bool,
    /// The identity registry in the genesis (Network ID runs): validators then admit peers only
    /// while it lists them as active validators of the chain.
    pub identity: Option<netchain_types::identity::IdentityGenesis>,
    /// Admin keys of the registry's organizations, by organization index.
    pub org_admins: Vec<Keypair>,
    /// Batched dissemination with proofs of availability (the node's `[consensus] batching`).
    pub batching: bool,
}

/// Batching parameters of simulated validators: small batches and a short life, so runs make
/// many batches, and partitions and crashes let some expire. The life must stay well above the
/// clocks' skew (up to 3 s here): block timestamps follow the fastest clock, so a validator
/// whose clock is behind by about the life makes batches no block can carry in time (a TTL of
/// 3 s stalled seed 1721 that way).
fn quorum_store_config() -> QuorumStoreConfig {
    QuorumStoreConfig {
        batch_max_txs: 4,
        batch_ttl_ms: 8_000,
        ..QuorumStoreConfig::default()
    }
}

/// A validator cuts a batch at most this often (as in the node).
const BATCH_INTERVAL_MS: u64 = 40;
/// Own batches short of a quorum are sent again after this long (as in the node).
const RESEND_MS: u64 = 1_000;

/// Heights above the last certificate for which checkpoint votes are kept (as in the node).
const CHECKPOINT_WINDOW: u64 = 256;

/// One executed height, as the checkers see it.
#[derive(Clone, Debug)]
pub struct Executed {
    /// Height.
    pub height: u64,
    /// Block id.
    pub block_id: Digest,
    /// State root after the block.
    pub state_root: Digest,
    /// Receipts written for the block.
    pub receipts: Vec<Receipt>,
    /// Sum of all genesis accounts' balances after the block.
    pub total_balance: u128,
    /// Transactions applied whose signature does not verify (checked here, apart from the
    /// executor, which trusts a proof of availability for a batch's signatures).
    pub applied_unverified: Vec<TxId>,
}

/// What handling one input produced, for the world to route and check.
#[derive(Clone, Debug)]
pub enum Effect {
    /// A message to one validator index (possibly this one's: then already delivered locally).
    Send {
        /// Recipient.
        to: ValidatorIndex,
        /// Message.
        msg: ConsensusMessage,
    },
    /// A message to every other validator (already delivered locally).
    Broadcast(ConsensusMessage),
    /// Blocks the core committed, oldest first.
    Committed(Vec<Block>),
    /// A block executed and written durably.
    Executed(Executed),
    /// Execution waits for a committed block's batch (asked of a signer): look again later.
    ExecutionWaits,
    /// A committed block did not extend the executed chain (the node would exit).
    ExecutionGap {
        /// Height of the block.
        height: u64,
        /// Executed tip height.
        tip: u64,
    },
}

struct Running {
    core: Core,
    verified: Verified,
    mempool: Mempool,
    executor: Executor<SimDisk>,
    store: ChainStore<SimDisk>,
    tip: ChainTip,
    exec_queue: VecDeque<(Block, QuorumCert)>,
    checkpoints: Option<CheckpointAggregator>,
    /// Admission answers at one executed height (cleared when the tip moves).
    admitted: (u64, std::collections::BTreeMap<PublicKey, bool>),
    /// Batch mode: the quorum store (memory, lost in a crash).
    qs: Option<QuorumStore>,
    next_batch_ms: u64,
    next_expire_ms: u64,
    /// Fetch attempts so far (picks the signer asked next).
    fetches: usize,
}

/// A validator instance (Twins are two instances with one index and key).
pub struct Instance {
    /// Validator index.
    pub index: ValidatorIndex,
    /// Instance id in the world (distinct for Twins).
    pub id: usize,
    setup: Arc<ChainSetup>,
    disk: Arc<SimDisk>,
    running: Option<Running>,
}

impl Instance {
    /// A stopped instance with an empty disk.
    pub fn new(setup: Arc<ChainSetup>, index: ValidatorIndex, id: usize) -> Self {
        Self {
            index,
            id,
            setup,
            disk: Arc::new(SimDisk::new()),
            running: None,
        }
    }

    /// Whether the process is up.
    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// The disk (survives crashes).
    pub fn disk(&self) -> &Arc<SimDisk> {
        &self.disk
    }

    /// The running core, if up.
    pub fn core(&self) -> Option<&Core> {
        self.running.as_ref().map(|r| &r.core)
    }

    /// The signing key.
    pub fn keypair(&self) -> &Keypair {
        &self.setup.keys[self.index as usize]
    }

    /// The executed tip, if up.
    pub fn tip(&self) -> Option<&ChainTip> {
        self.running.as_ref().map(|r| &r.tip)
    }

    /// Whether committed blocks wait for execution.
    pub fn has_exec_work(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| !r.exec_queue.is_empty())
    }

    /// The process stops; memory (core, mempool, execution queue) is lost.
    pub fn stop(&mut self) {
        self.running = None;
    }

    /// Starts (or restarts) the process from its disk at local time `now`, as `Node::start`
    /// does. Returns the executed tip it resumed from.
    pub fn start(&mut self, now: u64) -> ChainTip {
        let s = &self.setup;
        let store = ChainStore::new(self.disk.clone());
        let executor = Executor::new(s.chain_id.clone(), self.disk.clone());
        if store.genesis_hash().expect("sim disk").is_none() {
            let (state_root, mut batch) = executor
                .genesis_with(
                    &s.accounts,
                    s.governance.as_ref().map(|g| (g, s.genesis_hash)),
                    s.identity.as_ref(),
                )
                .expect("genesis");
            let tip = ChainTip {
                qc: QuorumCert::genesis(s.genesis.id()),
                block: s.genesis.clone(),
                state_root,
                total_txs: 0,
            };
            let mut meta = WriteBatch::new();
            ChainStore::<SimDisk>::put_block(&mut meta, &tip.block);
            ChainStore::<SimDisk>::put_tip(&mut meta, &tip);
            ChainStore::<SimDisk>::put_genesis_hash(&mut meta, &s.genesis_hash);
            batch.extend(meta);
            store.commit(batch).expect("sim disk");
        }
        let tip = store.tip().expect("sim disk").expect("tip after genesis");
        let safety: SafetyData = match store.safety().expect("sim disk") {
            Some(bytes) => codec::decode(&bytes, 1 << 20).expect("safety data decodes"),
            None => SafetyData::default(),
        };
        let recovered = recover_uncommitted(&store, &tip, &safety);
        let cfg = CoreConfig {
            round_timeout_ms: s.round_timeout_ms,
            max_round_timeout_ms: s.round_timeout_ms * 8,
            empty_block_interval_ms: 100,
            // Leaders whose execution waits for batches propose later (as validators do).
            backlog_block_interval_ms: s.round_timeout_ms / 8,
            sync_max_blocks: s.sync_max_blocks,
            block_max_txs: s.block_max_txs,
            ..CoreConfig::new(s.chain_id.clone(), s.committee.clone(), self.index)
        };
        let mut core = Core::new(
            cfg,
            self.keypair().clone(),
            s.genesis.id(),
            tip.block.clone(),
            tip.qc.clone(),
            safety,
            now,
        );
        core.recover(recovered);
        let checkpoints = s.checkpoints.then(|| {
            let certified = store
                .latest_checkpoint()
                .expect("sim disk")
                .map_or(0, |c| c.checkpoint.height);
            CheckpointAggregator::new(s.committee.clone(), certified, CHECKPOINT_WINDOW)
        });
        let qs = s.batching.then(|| {
            let mut qs = QuorumStore::new(
                quorum_store_config(),
                s.chain_id.clone(),
                s.committee.clone(),
                self.index,
                self.keypair().clone(),
            );
            // Acknowledged batches survive the crash on disk, as in the node.
            let pending = store.pending_batches(100_000).expect("sim disk");
            let refused = qs.restore(tip.block.timestamp_ms, pending);
            qs.executed_through(tip.block.height);
            let mut wb = WriteBatch::new();
            for info in &refused {
                store.drop_pending_batch(&mut wb, info).expect("sim disk");
            }
            store.commit(wb).expect("sim disk");
            qs
        });
        self.running = Some(Running {
            qs,
            next_batch_ms: 0,
            next_expire_ms: 0,
            fetches: 0,
            admitted: (u64::MAX, Default::default()),
            checkpoints,
            core,
            mempool: Mempool::new(MempoolConfig::default()),
            executor,
            store,
            tip: tip.clone(),
            exec_queue: VecDeque::new(),
            verified: Verified::default(),
        });
        tip
    }

    /// Handles a message from validator `from` at local time `now`.
    pub fn on_message(
        &mut self,
        now: u64,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(r) = self.running.as_mut() else {
            return out;
        };
        match msg {
            ConsensusMessage::SyncRequest {
                block_id,
                max_blocks,
            } => serve_sync(r, from, block_id, max_blocks, &mut out),
            ConsensusMessage::CatchUpRequest {
                from_height,
                max_blocks,
            } => serve_catch_up(r, from, from_height, max_blocks, &mut out),
            ConsensusMessage::Transactions { txs } => ingest(r, &self.setup.chain_id, txs),
            ConsensusMessage::CheckpointVote {
                checkpoint,
                author,
                signature,
            } => on_checkpoint_vote(r, &self.setup.chain_id, checkpoint, author, signature),
            ConsensusMessage::Batch { batch, checkers } => {
                let check = checkers.contains(&self.index);
                on_batch(r, now, from, batch, check, &mut out)
            }
            ConsensusMessage::BatchAck {
                info,
                author,
                checked,
                signature,
            } => {
                if let Some(qs) = r.qs.as_mut().filter(|_| author == from) {
                    for proof in qs
                        .on_ack(info, author, checked, signature)
                        .unwrap_or_default()
                    {
                        out.push(Effect::Broadcast(ConsensusMessage::Proof(proof)));
                    }
                }
            }
            ConsensusMessage::Proof(proof) => {
                if let Some(qs) = r.qs.as_mut() {
                    let _ = qs.on_proof(now, proof);
                }
            }
            ConsensusMessage::BatchRequest { digest } => {
                let held = r.qs.as_ref().and_then(|qs| qs.batch(&digest));
                let batch = match held {
                    Some(b) => Some((*b).clone()),
                    None => r.store.batch(&digest).expect("sim disk"),
                };
                if let Some(batch) = batch {
                    out.push(Effect::Send {
                        to: from,
                        msg: ConsensusMessage::BatchResponse(batch),
                    });
                }
            }
            ConsensusMessage::BatchResponse(batch) => {
                if let Some(qs) = r.qs.as_mut() {
                    qs.on_fetched(batch);
                }
            }
            msg => self.step(now, Event::Message { from, msg }, &mut out),
        }
        out
    }

    /// Time passed: batches are cut (batch mode) and the core checks its timers.
    pub fn on_tick(&mut self, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(r) = self.running.as_mut() {
            make_batches(r, now, &mut out);
        }
        self.step(now, Event::Tick, &mut out);
        out
    }

    /// Admits a client's transaction (signature, chain, nonce, bounds); on success the caller
    /// gossips it to the other validators.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<(), String> {
        let Some(r) = self.running.as_mut() else {
            return Err("down".into());
        };
        verify_transaction(&tx).map_err(|e| e.to_string())?;
        r.verified.insert(&tx);
        admit(r, &self.setup.chain_id, tx)
    }

    fn step(&mut self, now: u64, event: Event, out: &mut Vec<Effect>) {
        let me = self.index;
        let Some(r) = self.running.as_mut() else {
            return;
        };
        let mut loopback = VecDeque::new();
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let source: &mut dyn PayloadSource = match r.qs.as_mut() {
                Some(qs) => qs,
                None => &mut r.mempool,
            };
            let step = r.core.handle(now, event, source);
            if let Some(e) = &step.error {
                if tracing() {
                    eprintln!("        #{} refused: {e}", self.id);
                }
            }
            for action in step.actions {
                match action {
                    Action::StoreBlock(block) => {
                        r.store.put_uncommitted_block(&block).expect("sim disk")
                    }
                    Action::PersistSafety(safety) => r
                        .store
                        .put_safety(codec::encode(&safety))
                        .expect("sim disk"),
                    Action::Send { to, msg } => {
                        if to == me {
                            loopback.push_back(msg.clone());
                        }
                        out.push(Effect::Send { to, msg });
                    }
                    Action::Broadcast(msg) => {
                        loopback.push_back(msg.clone());
                        out.push(Effect::Broadcast(msg));
                    }
                    Action::Commit { blocks, commit_qc } => {
                        for (i, block) in blocks.iter().enumerate() {
                            let qc = blocks
                                .get(i + 1)
                                .map(|child| child.qc.clone())
                                .unwrap_or_else(|| commit_qc.clone());
                            r.exec_queue.push_back((block.clone(), qc));
                        }
                        out.push(Effect::Committed(blocks));
                    }
                }
            }
            next = loopback
                .pop_front()
                .map(|msg| Event::Message { from: me, msg });
        }
    }

    /// Executes every queued committed block, as the node's execution thread does.
    pub fn execute_queued(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(r) = self.running.as_mut() else {
            return out;
        };
        while let Some((block, qc)) = r.exec_queue.pop_front() {
            if block.height <= r.tip.block.height {
                forget_batches(r, &block);
                continue; // executed before a restart
            }
            if block.height != r.tip.block.height + 1 {
                out.push(Effect::ExecutionGap {
                    height: block.height,
                    tip: r.tip.block.height,
                });
                r.exec_queue.clear();
                break;
            }
            let Some(batches) = resolve_batches(r, self.index, &block, &mut out) else {
                r.exec_queue.push_front((block, qc));
                out.push(Effect::ExecutionWaits);
                break;
            };
            let executed = execute_one(r, self.index, &self.setup.accounts, &block, &batches, qc);
            if r.checkpoints.is_some() {
                let checkpoint = Checkpoint {
                    chain_id: self.setup.chain_id.clone(),
                    height: executed.height,
                    block_id: executed.block_id,
                    state_root: executed.state_root,
                };
                let signature =
                    self.setup.keys[self.index as usize].sign(&checkpoint.signing_message());
                on_checkpoint_vote(
                    r,
                    &self.setup.chain_id,
                    checkpoint.clone(),
                    self.index,
                    signature,
                );
                out.push(Effect::Broadcast(ConsensusMessage::CheckpointVote {
                    checkpoint,
                    author: self.index,
                    signature,
                }));
            }
            out.push(Effect::Executed(executed));
        }
        out
    }

    /// The newest certified checkpoint whose block this instance executed, with the proof that
    /// its state records the block at `anchored`: what the instance's relay would submit.
    pub fn anchor_material(
        &self,
        anchored: u64,
    ) -> Option<(netchain_types::CertifiedCheckpoint, Option<Vec<u8>>)> {
        let r = self.running.as_ref()?;
        let cert =
            netchain_execution::relay::newest_executed_checkpoint(&r.store, r.tip.block.height)
                .expect("sim disk")?;
        let proof = netchain_execution::relay::extension_proof(
            &r.executor,
            anchored,
            cert.checkpoint.height,
        )
        .expect("sim disk");
        Some((cert, proof))
    }

    /// Height of the newest certified checkpoint this instance executed.
    pub fn certified_height(&self) -> Option<u64> {
        let r = self.running.as_ref()?;
        netchain_execution::relay::newest_executed_checkpoint(&r.store, r.tip.block.height)
            .expect("sim disk")
            .map(|c| c.checkpoint.height)
    }

    /// Whether this instance's registry (at its executed tip, by its block time) admits `key` as
    /// a validator of the chain; always without a registry. A stopped instance admits nobody.
    pub fn admits(&mut self, key: &PublicKey) -> bool {
        if self.setup.identity.is_none() {
            return true;
        }
        let Some(r) = self.running.as_mut() else {
            return false;
        };
        let height = r.tip.block.height;
        if r.admitted.0 != height {
            r.admitted = (height, Default::default());
        }
        if let Some(&ok) = r.admitted.1.get(key) {
            return ok;
        }
        let ok = r
            .executor
            .identity_standing(key, height, r.tip.block.timestamp_ms)
            .expect("sim disk")
            .admits_node(
                &self.setup.chain_id,
                netchain_types::identity::NodeRole::Validator,
            );
        r.admitted.1.insert(*key, ok);
        ok
    }

    /// A module value in this instance's executed state (at its tip), if up.
    pub fn read_state<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        let r = self.running.as_ref()?;
        r.executor
            .module_value(key, r.tip.block.height)
            .expect("sim disk")
    }

    /// An account's next nonce in this instance's executed state, if up.
    pub fn nonce(&self, account: &PublicKey) -> Option<u64> {
        let r = self.running.as_ref()?;
        Some(
            r.executor
                .account(account, r.tip.block.height)
                .expect("sim disk")
                .nonce,
        )
    }
}

/// Batch mode: cuts batches of the transactions clients submitted here, and takes back own
/// batches that expired (their transactions are batched again), as the node does.
fn make_batches(r: &mut Running, now: u64, out: &mut Vec<Effect>) {
    let Some(qs) = r.qs.as_mut() else {
        return;
    };
    if now >= r.next_expire_ms {
        r.next_expire_ms = now + 1_000;
        let expired = qs.expire(now);
        for batch in expired.own {
            r.mempool.unbatch(&batch.txs);
        }
        let mut wb = WriteBatch::new();
        for info in &expired.dropped {
            r.store.drop_pending_batch(&mut wb, info).expect("sim disk");
        }
        r.store.commit_unsynced(wb).expect("sim disk");
        for proof in expired.released {
            out.push(Effect::Broadcast(ConsensusMessage::Proof(proof)));
        }
    }
    for again in qs.resend_due(now, RESEND_MS) {
        for to in again.to {
            out.push(Effect::Send {
                to,
                msg: ConsensusMessage::Batch {
                    batch: (*again.batch).clone(),
                    checkers: again.checkers.clone(),
                },
            });
        }
    }
    if now < r.next_batch_ms || !qs.can_batch() {
        return;
    }
    let (max_txs, max_bytes) = (qs.config().batch_max_txs, qs.config().batch_max_bytes);
    let txs = r.mempool.take_batch(max_txs, max_bytes);
    if txs.is_empty() {
        return;
    }
    r.next_batch_ms = now + BATCH_INTERVAL_MS;
    let (batch, checkers, proofs) = qs.make_batch(now, txs);
    r.store
        .put_pending_batch(&batch.info(), &batch)
        .expect("sim disk");
    out.push(Effect::Broadcast(ConsensusMessage::Batch {
        batch,
        checkers,
    }));
    for proof in proofs {
        out.push(Effect::Broadcast(ConsensusMessage::Proof(proof)));
    }
}

/// A peer's batch: checked, every signature verified when its author asks this validator to
/// (`check`), stored and acknowledged to its author, as in the node.
fn on_batch(
    r: &mut Running,
    now: u64,
    from: ValidatorIndex,
    batch: Batch,
    check: bool,
    out: &mut Vec<Effect>,
) {
    let Some(qs) = r.qs.as_mut() else {
        return;
    };
    if batch.author != from {
        return;
    }
    if let Some(ack) = qs.ack_again(&batch, check) {
        out.push(Effect::Send { to: from, msg: ack });
        return;
    }
    // Stored unchecked before and now asked to check: it passed the cheap checks then.
    if qs.stored_checked(&batch.digest()).is_none() && qs.check_batch(now, from, &batch).is_err() {
        return;
    }
    // A copy of a batch a block executed here (as in the node).
    if r.store.batch_executed(&batch.digest()).expect("sim disk") {
        return;
    }
    if check {
        let items: Vec<_> = batch
            .txs
            .iter()
            .map(|t| (t.tx.sender, t.tx.signing_message(), t.signature))
            .collect();
        if !verify_each(&items).into_iter().all(|ok| ok) {
            return;
        }
    }
    let author = batch.author;
    let stored = batch.clone();
    if let Ok(ack) = qs.accept_batch(now, batch, check) {
        // Durable before the acknowledgement leaves, which promises availability.
        r.store
            .put_pending_batch(&stored.info(), &stored)
            .expect("sim disk");
        out.push(Effect::Send {
            to: author,
            msg: ack,
        });
    }
}

/// The batches of a committed block from the quorum store (`None` for one an earlier block
/// executed: it is not executed twice, as in the node); `None` overall (after asking a signer
/// for the first missing one) when one is not here yet.
fn resolve_batches(
    r: &mut Running,
    me: ValidatorIndex,
    block: &Block,
    out: &mut Vec<Effect>,
) -> Option<Vec<Option<Arc<Batch>>>> {
    let mut batches = Vec::with_capacity(block.batches.len());
    for proof in &block.batches {
        let digest = proof.info.digest;
        if r.store.batch_executed(&digest).expect("sim disk") {
            batches.push(None);
            continue;
        }
        let held = r.qs.as_ref().and_then(|qs| qs.batch(&digest));
        if let Some(b) = held {
            batches.push(Some(b));
            continue;
        }
        let signers: Vec<ValidatorIndex> = proof
            .signers
            .iter()
            .map(|s| s.0)
            .filter(|s| *s != me)
            .collect();
        if let (Some(qs), false) = (r.qs.as_mut(), signers.is_empty()) {
            qs.want(digest);
            r.fetches += 1;
            out.push(Effect::Send {
                to: signers[r.fetches % signers.len()],
                msg: ConsensusMessage::BatchRequest { digest },
            });
        }
        return None;
    }
    Some(batches)
}

fn forget_batches(r: &mut Running, block: &Block) {
    if let Some(qs) = r.qs.as_mut() {
        let digests: Vec<Digest> = block.batches.iter().map(|p| p.info.digest).collect();
        qs.on_executed(&digests);
        qs.executed_through(block.height);
    }
}

fn execute_one(
    r: &mut Running,
    me: ValidatorIndex,
    accounts: &[(PublicKey, u64)],
    block: &Block,
    batches: &[Option<Arc<Batch>>],
    qc: QuorumCert,
) -> Executed {
    let verified = &r.verified;
    let inline = block.payload.len();
    let txs: Vec<&SignedTransaction> = block
        .payload
        .iter()
        .chain(batches.iter().flatten().flat_map(|b| b.txs.iter()))
        .collect();
    // Batched transactions are vouched for by their proofs of availability.
    let exec = r
        .executor
        .execute_checked(&block.into(), &txs, &|i, tx| {
            i >= inline || verified.contains(tx)
        })
        .expect("sim disk");
    let mut batch = exec.batch;
    for (proof, b) in block.batches.iter().zip(batches) {
        let body = match b {
            Some(b) if !r.store.has_batch(&proof.info.digest).expect("sim disk") => Some(&**b),
            _ => None,
        };
        ChainStore::<SimDisk>::put_executed_batch(&mut batch, &proof.info, body);
    }
    ChainStore::<SimDisk>::put_block(&mut batch, block);
    let tip = ChainTip {
        block: block.clone(),
        qc,
        state_root: exec.state_root,
        total_txs: r.tip.total_txs + exec.applied,
    };
    ChainStore::<SimDisk>::put_tip(&mut batch, &tip);
    r.store.commit(batch).expect("sim disk");
    r.tip = tip;
    r.mempool.on_executed(block.height, &exec.nonces);
    forget_batches(r, block);
    for b in batches.iter().flatten().filter(|b| b.author == me) {
        r.mempool.unbatch(&b.txs);
    }
    let total_balance = accounts
        .iter()
        .map(|(pk, _)| {
            r.executor
                .account(pk, block.height)
                .expect("sim disk")
                .balance as u128
        })
        .sum();
    let applied_unverified = exec
        .receipts
        .iter()
        .filter(|r| r.outcome == netchain_types::TxOutcome::Applied)
        .filter_map(|r| txs.get(r.index as usize))
        .filter(|tx| verify_transaction(tx).is_err())
        .map(|tx| tx.id())
        .collect();
    Executed {
        height: block.height,
        block_id: block.id(),
        state_root: exec.state_root,
        receipts: exec.receipts,
        total_balance,
        applied_unverified,
    }
}

fn admit(r: &mut Running, chain_id: &str, tx: SignedTransaction) -> Result<(), String> {
    if tx.tx.chain_id != chain_id {
        return Err("wrong chain".into());
    }
    let account = r
        .executor
        .account(&tx.tx.sender, r.tip.block.height)
        .map_err(|e| e.to_string())?;
    r.mempool
        .insert(tx, account.nonce)
        .map_err(|e| e.to_string())
}

fn ingest(r: &mut Running, chain_id: &str, mut txs: Vec<SignedTransaction>) {
    txs.retain(|t| t.tx.chain_id == chain_id);
    let items: Vec<_> = txs
        .iter()
        .map(|t| (t.tx.sender, t.tx.signing_message(), t.signature))
        .collect();
    for (tx, ok) in txs.into_iter().zip(verify_each(&items)) {
        if ok {
            r.verified.insert(&tx);
            // Duplicates and stale nonces are expected here.
            let _ = admit(r, chain_id, tx);
        }
    }
}

/// A checkpoint vote (another validator's or this one's): a completed quorum is stored as the
/// node stores it. Bad votes are dropped, as the node drops them.
fn on_checkpoint_vote(
    r: &mut Running,
    chain_id: &str,
    checkpoint: Checkpoint,
    author: ValidatorIndex,
    signature: netchain_types::Signature,
) {
    let Some(agg) = r.checkpoints.as_mut() else {
        return;
    };
    if checkpoint.chain_id != chain_id {
        return;
    }
    if let Ok(Some(cert)) = agg.add(checkpoint, author, signature) {
        r.store.put_checkpoint(&cert).expect("sim disk");
    }
}

/// Whether `SIM_TRACE` is set (read once): refusals are then printed with the event trace.
fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SIM_TRACE").is_some())
}
