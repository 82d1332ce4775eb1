//! The task that owns the consensus core.

use crate::admission::GOSSIP_BATCH_MAX;
use crate::{now_ms, Shared};
use bytes::Bytes;
use netchain_consensus::{Action, CheckpointAggregator, Core, Event};
use netchain_network::Network;
use netchain_types::{
    codec, Block, ConsensusMessage, Digest, QuorumCert, SignedTransaction, ValidatorIndex,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

const TICK_MS: u64 = 10;
/// Heights above the last certified checkpoint for which checkpoint votes are kept.
const CHECKPOINT_WINDOW: u64 = 1_000;

struct ConsensusTask {
    shared: Arc<Shared>,
    core: Core,
    network: Network,
    tx_commit: mpsc::Sender<(Vec<Block>, QuorumCert)>,
    tx_ingest: mpsc::Sender<Vec<SignedTransaction>>,
    checkpoints: CheckpointAggregator,
    loopback: VecDeque<ConsensusMessage>,
    sync_bytes_max: usize,
    halted: bool,
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    core: Core,
    network: Network,
    mut rx_inbound: mpsc::Receiver<netchain_network::Inbound<ConsensusMessage>>,
    tx_commit: mpsc::Sender<(Vec<Block>, QuorumCert)>,
    tx_ingest: mpsc::Sender<Vec<SignedTransaction>>,
    frame_bytes_max: usize,
) {
    let certified = shared.status().certified_height;
    let checkpoints =
        CheckpointAggregator::new(shared.committee().clone(), certified, CHECKPOINT_WINDOW);
    let mut task = ConsensusTask {
        shared,
        core,
        network,
        tx_commit,
        tx_ingest,
        checkpoints,
        loopback: VecDeque::new(),
        sync_bytes_max: frame_bytes_max / 2,
        halted: false,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx_inbound.recv() => match msg {
                    Some(inbound) => {
                        let (from, msg) = inbound.into_parts();
                        task.on_message(from, msg).await
                    }
                    None => return,
                },
                _ = tick.tick() => task.step(Event::Tick).await,
            }
            if task.halted {
                error!("consensus halted: safety data could not be persisted");
                return;
            }
        }
    });
}

impl ConsensusTask {
    async fn on_message(&mut self, from: ValidatorIndex, msg: ConsensusMessage) {
        match msg {
            ConsensusMessage::SyncRequest {
                block_id,
                max_blocks,
            } => self.serve_sync(from, block_id, max_blocks),
            ConsensusMessage::CatchUpRequest {
                from_height,
                max_blocks,
            } => self.serve_catch_up(from, from_height, max_blocks),
            ConsensusMessage::Transactions { txs } => {
                if txs.len() > GOSSIP_BATCH_MAX || self.tx_ingest.try_send(txs).is_err() {
                    debug!(
                        from,
                        "gossiped transactions dropped (oversized or ingest busy)"
                    );
                }
            }
            ConsensusMessage::CheckpointVote { checkpoint, .. }
                if checkpoint.chain_id != self.shared.chain_id =>
            {
                debug!(from, "checkpoint vote for another chain dropped");
            }
            ConsensusMessage::CheckpointVote {
                checkpoint,
                author,
                signature,
            } => match self.checkpoints.add(checkpoint, author, signature) {
                Ok(Some(cert)) => {
                    let height = cert.checkpoint.height;
                    if let Err(e) = self.shared.store.put_checkpoint(&cert) {
                        error!(error = %e, "storing checkpoint failed");
                    } else {
                        self.shared.status.write().expect("status").certified_height = height;
                    }
                }
                Ok(None) => {}
                Err(e) => debug!(from, error = %e, "checkpoint vote refused"),
            },
            msg => self.step(Event::Message { from, msg }).await,
        }
    }

    async fn step(&mut self, event: Event) {
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let step = match self
                .shared
                .quorum_store
                .as_ref()
                .filter(|_| self.shared.batching)
            {
                Some(qs) => {
                    let mut qs = qs.lock().expect("quorum store");
                    self.core.handle(now_ms(), event, &mut *qs)
                }
                None => {
                    let mut mempool = self.shared.mempool.lock().expect("mempool lock");
                    self.core.handle(now_ms(), event, &mut *mempool)
                }
            };
            if let Some(e) = step.error {
                debug!(error = %e, "consensus refused a message");
            }
            for action in step.actions {
                if !self.perform(action).await {
                    self.halted = true;
                    return;
                }
            }
            let me = self.shared.me;
            next = self
                .loopback
                .pop_front()
                .map(|msg| Event::Message { from: me, msg });
        }
        self.shared.status.write().expect("status").round = self.core.round();
        self.shared.metrics.round.set(self.core.round() as i64);
    }

    /// Performs one action; false if the node must stop (safety data not durable).
    async fn perform(&mut self, action: Action) -> bool {
        match action {
            Action::StoreBlock(block) => {
                if let Err(e) = self.shared.store.put_uncommitted_block(&block) {
                    error!(error = %e, "storing block failed");
                    return false;
                }
            }
            Action::PersistSafety(safety) => {
                if let Err(e) = self.shared.store.put_safety(codec::encode(&safety)) {
                    error!(error = %e, "persisting safety data failed");
                    return false;
                }
            }
            Action::Send { to, msg } => {
                if to == self.shared.me {
                    self.loopback.push_back(msg);
                } else {
                    self.network.send(to, Bytes::from(codec::encode(&msg)));
                }
            }
            Action::Broadcast(msg) => {
                self.network.broadcast(Bytes::from(codec::encode(&msg)));
                self.loopback.push_back(msg);
            }
            Action::Commit { blocks, commit_qc } => {
                if !self.shared.batching {
                    // The quorum store is not the core's payload source here; it still learns
                    // of commits (its garbage collection goes by committed time).
                    if let Some(qs) = &self.shared.quorum_store {
                        use netchain_consensus::PayloadSource;
                        qs.lock().expect("quorum store").on_commit(&blocks);
                    }
                }
                if self.tx_commit.send((blocks, commit_qc)).await.is_err() {
                    warn!("execution stopped; dropping committed blocks");
                }
            }
        }
        true
    }

    fn find_block(&self, id: &Digest) -> Option<Block> {
        if let Some(b) = self.core.block(id) {
            return Some(b.clone());
        }
        self.shared.store.block(id).ok().flatten()
    }

    /// Whether `to` is draining what we send: a peer that asks for blocks and does not read gets
    /// no more answers until its queue empties.
    fn peer_backlogged(&self, to: ValidatorIndex) -> bool {
        self.network.queued_bytes(to) > self.sync_bytes_max
    }

    fn serve_sync(&mut self, to: ValidatorIndex, block_id: Digest, max_blocks: u32) {
        if self.peer_backlogged(to) {
            return;
        }
        let mut blocks = Vec::new();
        let mut bytes = 0;
        let mut cursor = block_id;
        while blocks.len() < max_blocks.min(100) as usize {
            let Some(block) = self.find_block(&cursor) else {
                break;
            };
            bytes += codec::encode(&block).len();
            if bytes > self.sync_bytes_max && !blocks.is_empty() {
                break;
            }
            cursor = block.parent_id;
            let genesis = block.height == 0;
            blocks.push(block);
            if genesis {
                break;
            }
        }
        if !blocks.is_empty() {
            let msg = ConsensusMessage::SyncResponse { blocks };
            self.network.send(to, Bytes::from(codec::encode(&msg)));
        }
    }

    fn serve_catch_up(&mut self, to: ValidatorIndex, from_height: u64, max_blocks: u32) {
        if self.peer_backlogged(to) {
            return;
        }
        let mut blocks = Vec::new();
        let mut bytes = 0;
        let end = from_height.saturating_add(max_blocks.min(100) as u64);
        for height in from_height..end {
            let Ok(Some(block)) = self.shared.store.block_at(height) else {
                break;
            };
            bytes += codec::encode(&block).len();
            if bytes > self.sync_bytes_max && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        if !blocks.is_empty() {
            let msg = ConsensusMessage::CatchUpResponse { blocks };
            self.network.send(to, Bytes::from(codec::encode(&msg)));
        }
    }
}
