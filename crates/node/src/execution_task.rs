//! The thread that executes committed blocks and persists them.

use crate::{now_ms, Shared};
use bytes::Bytes;
use netchain_crypto::Keypair;
use netchain_network::Network;
use netchain_storage::{ChainStore, ChainTip};
use netchain_types::{codec, Block, Checkpoint, ConsensusMessage, QuorumCert};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{error, info};

pub(crate) fn spawn(
    shared: Arc<Shared>,
    keypair: Keypair,
    mut tip: ChainTip,
    mut rx_commit: mpsc::Receiver<(Vec<Block>, QuorumCert)>,
    tx_inbound: mpsc::Sender<netchain_network::Inbound<ConsensusMessage>>,
    network: Network,
) {
    std::thread::Builder::new()
        .name("execution".into())
        .spawn(move || {
            while let Some((blocks, commit_qc)) = rx_commit.blocking_recv() {
                for (i, block) in blocks.iter().enumerate() {
                    let qc = blocks
                        .get(i + 1)
                        .map(|child| child.qc.clone())
                        .unwrap_or_else(|| commit_qc.clone());
                    if block.height <= tip.block.height {
                        continue; // executed before a restart
                    }
                    if block.height != tip.block.height + 1 {
                        error!(
                            height = block.height,
                            tip = tip.block.height,
                            "committed block does not extend the executed chain; exiting"
                        );
                        std::process::exit(70);
                    }
                    match execute_one(&shared, &keypair, &mut tip, block, qc) {
                        Ok(vote) => {
                            network.broadcast(Bytes::from(codec::encode(&vote)));
                            // Never block here: the consensus task may itself wait on this thread.
                            let _ = tx_inbound
                                .try_send(netchain_network::Inbound::local(shared.me, vote));
                        }
                        Err(e) => {
                            // Storage failed under us: stop the whole validator (crash-stop) rather
                            // than keep voting with a state it cannot record. A restart resumes from
                            // the last durable block.
                            error!(error = %e, height = block.height, "execution failed; exiting");
                            std::process::exit(70);
                        }
                    }
                }
            }
        })
        .expect("spawning execution thread");
}

fn execute_one(
    shared: &Shared,
    keypair: &Keypair,
    tip: &mut ChainTip,
    block: &Block,
    qc: QuorumCert,
) -> anyhow::Result<ConsensusMessage> {
    let out = shared
        .executor
        .execute_checked(&block.into(), &block.payload, &|tx| {
            shared.verified.contains(tx)
        })?;
    let mut batch = out.batch;
    ChainStore::<crate::Backend>::put_block(&mut batch, block);
    let new_tip = ChainTip {
        block: block.clone(),
        qc,
        state_root: out.state_root,
        total_txs: tip.total_txs + out.applied,
    };
    ChainStore::<crate::Backend>::put_tip(&mut batch, &new_tip);
    shared.store.commit(batch)?;
    *tip = new_tip;
    shared
        .mempool
        .lock()
        .expect("mempool lock")
        .on_executed(block.height, &out.nonces);
    let now = now_ms();
    let block_id = block.id();
    {
        let mut status = shared.status.write().expect("status lock");
        status.height = block.height;
        status.block_id = block_id;
        status.state_root = out.state_root;
        status.committed_txs_total = tip.total_txs;
        status.last_block_time_ms = block.timestamp_ms;
        status.last_commit_time_ms = now;
        status.last_commit_latency_ms = now.saturating_sub(block.timestamp_ms);
    }
    let m = &shared.metrics;
    m.height.set(block.height as i64);
    m.blocks_committed.inc();
    m.finalized_transactions.inc_by(out.applied);
    m.execution_rejections
        .inc_by(block.payload.len() as u64 - out.applied);
    m.commit_latency_seconds
        .observe(now.saturating_sub(block.timestamp_ms) as f64 / 1000.0);
    shared.executed.send_replace(block.height);
    if !block.payload.is_empty() {
        info!(
            height = block.height,
            txs = block.payload.len(),
            applied = out.applied,
            root = %out.state_root,
            "committed"
        );
    }
    let checkpoint = Checkpoint {
        chain_id: shared.chain_id.clone(),
        height: block.height,
        block_id,
        state_root: out.state_root,
    };
    let signature = keypair.sign(&checkpoint.signing_message());
    Ok(ConsensusMessage::CheckpointVote {
        checkpoint,
        author: shared.me,
        signature,
    })
}
