//! The thread that executes committed blocks and persists them.

use crate::{now_ms, Shared};
use bytes::Bytes;
use netchain_crypto::Keypair;
use netchain_network::Network;
use netchain_storage::{ChainStore, ChainTip};
use netchain_types::{codec, Batch, Block, Checkpoint, ConsensusMessage, QuorumCert};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// How long execution waits for a missing batch before asking the next signer.
const FETCH_RETRY: Duration = Duration::from_millis(200);
const FETCH_POLL: Duration = Duration::from_millis(2);

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
                        forget_batches(&shared, block);
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
                    let batches = match resolve_batches(&shared, &network, block) {
                        Ok(b) => b,
                        Err(e) => {
                            error!(error = %e, height = block.height, "reading batches failed; exiting");
                            std::process::exit(70);
                        }
                    };
                    match execute_one(&shared, &keypair, &mut tip, block, &batches, qc) {
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

fn forget_batches(shared: &Shared, block: &Block) {
    if let Some(qs) = &shared.quorum_store {
        let digests: Vec<_> = block.batches.iter().map(|p| p.info.digest).collect();
        let mut qs = qs.lock().expect("quorum store");
        qs.on_executed(&digests);
        qs.executed_through(block.height);
    }
}

/// The batches a committed block names, from the quorum store or else fetched: all missing
/// ones are asked for at once, each of one of its signers (a proof means at least f + 1 honest
/// validators stored the batch, and those that executed it keep it in their block store), then
/// again of the next validator every 200 ms until one answers. `None` for a batch an earlier
/// block executed already: it is not executed twice (a Byzantine leader may name it again;
/// every validator skips it alike, since its block store says so).
fn resolve_batches(
    shared: &Shared,
    network: &Network,
    block: &Block,
) -> anyhow::Result<Vec<Option<Arc<Batch>>>> {
    let mut out: Vec<Option<Arc<Batch>>> = Vec::with_capacity(block.batches.len());
    let mut missing = Vec::new();
    for (i, proof) in block.batches.iter().enumerate() {
        let digest = proof.info.digest;
        if shared.store.batch_executed(&digest)? {
            out.push(None);
            continue;
        }
        let held = shared
            .quorum_store
            .as_ref()
            .and_then(|qs| qs.lock().expect("quorum store").batch(&digest));
        if held.is_none() {
            missing.push(i);
        }
        out.push(held);
    }
    let started = Instant::now();
    let mut attempt = 0usize;
    let mut warned = false;
    while !missing.is_empty() {
        for &i in &missing {
            let proof = &block.batches[i];
            let digest = proof.info.digest;
            if let Some(qs) = &shared.quorum_store {
                qs.lock().expect("quorum store").want(digest);
            }
            // First the signers (they promised it), from a place that differs per batch, then
            // every other validator (those that executed the block hold it too).
            let mut order: Vec<_> = proof.signers.iter().map(|s| s.0).collect();
            let start = digest.0[0] as usize % order.len().max(1);
            order.rotate_left(start);
            for v in 0..shared.committee().size() as netchain_types::ValidatorIndex {
                if !order.contains(&v) {
                    order.push(v);
                }
            }
            order.retain(|v| *v != shared.me);
            if let Some(&to) = order.get(attempt % order.len().max(1)) {
                let msg = ConsensusMessage::BatchRequest { digest };
                network.send(to, Bytes::from(codec::encode(&msg)));
            }
        }
        attempt += 1;
        let asked = Instant::now();
        while !missing.is_empty() && asked.elapsed() < FETCH_RETRY {
            std::thread::sleep(FETCH_POLL);
            missing.retain(|&i| {
                let digest = block.batches[i].info.digest;
                let held = shared
                    .quorum_store
                    .as_ref()
                    .and_then(|qs| qs.lock().expect("quorum store").batch(&digest));
                match held {
                    Some(b) => {
                        out[i] = Some(b);
                        false
                    }
                    None => true,
                }
            });
        }
        if !warned && !missing.is_empty() && started.elapsed() > Duration::from_secs(5) {
            warned = true;
            warn!(
                height = block.height,
                missing = missing.len(),
                "waiting for committed batches"
            );
        }
    }
    Ok(out)
}

fn execute_one(
    shared: &Shared,
    keypair: &Keypair,
    tip: &mut ChainTip,
    block: &Block,
    batches: &[Option<Arc<Batch>>],
    qc: QuorumCert,
) -> anyhow::Result<ConsensusMessage> {
    // Transactions this block brings (a batch an earlier block executed is not counted again).
    let count = block.payload.len() + batches.iter().flatten().map(|b| b.txs.len()).sum::<usize>();
    let (mut batch, state_root, applied, nonces) = if shared.ordering_only {
        // Ordering-only chain: the block and its batches are stored and nothing is executed;
        // an empty execution gives the state its version at this height (the registry and the
        // API read the state at the executed height).
        let out = shared
            .executor
            .execute_checked::<netchain_types::SignedTransaction>(&block.into(), &[], &|_, _| {
                true
            })?;
        (out.batch, out.state_root, count as u64, Vec::new())
    } else {
        let inline = block.payload.len();
        let txs: Vec<&netchain_types::SignedTransaction> = block
            .payload
            .iter()
            .chain(batches.iter().flatten().flat_map(|b| b.txs.iter()))
            .collect();
        // Batched transactions' signatures are vouched for by their proofs of availability
        // (see `netchain_types::batch`); the block's own, by this node's cache of what it
        // verified.
        let out = shared
            .executor
            .execute_checked(&block.into(), &txs, &|i, tx| {
                i >= inline || shared.verified.contains(tx)
            })?;
        (out.batch, out.state_root, out.applied, out.nonces)
    };
    for (proof, b) in block.batches.iter().zip(batches) {
        // A batch acknowledged here is stored already; a fetched one is stored now. (One an
        // earlier block executed, `None`, is only taken off the acknowledged index.)
        let body = match b {
            Some(b) if !shared.store.has_batch(&proof.info.digest)? => Some(&**b),
            _ => None,
        };
        ChainStore::<crate::Backend>::put_executed_batch(&mut batch, &proof.info, body);
    }
    ChainStore::<crate::Backend>::put_block(&mut batch, block);
    let new_tip = ChainTip {
        block: block.clone(),
        qc,
        state_root,
        total_txs: tip.total_txs + applied,
    };
    ChainStore::<crate::Backend>::put_tip(&mut batch, &new_tip);
    shared.store.commit(batch)?;
    *tip = new_tip;
    forget_batches(shared, block);
    {
        let mut mempool = shared.mempool.lock().expect("mempool lock");
        mempool.on_executed(block.height, &nonces);
        // Own transactions refused without using their nonce may be batched again.
        for b in batches.iter().flatten().filter(|b| b.author == shared.me) {
            mempool.unbatch(&b.txs);
        }
    }
    let now = now_ms();
    let block_id = block.id();
    {
        let mut status = shared.status.write().expect("status lock");
        status.height = block.height;
        status.block_id = block_id;
        status.state_root = state_root;
        status.committed_txs_total = tip.total_txs;
        status.last_block_time_ms = block.timestamp_ms;
        status.last_commit_time_ms = now;
        status.last_commit_latency_ms = now.saturating_sub(block.timestamp_ms);
    }
    let m = &shared.metrics;
    m.height.set(block.height as i64);
    m.blocks_committed.inc();
    m.finalized_transactions.inc_by(applied);
    m.execution_rejections.inc_by(count as u64 - applied);
    m.commit_latency_seconds
        .observe(now.saturating_sub(block.timestamp_ms) as f64 / 1000.0);
    shared.executed.send_replace(block.height);
    if count > 0 {
        info!(
            height = block.height,
            txs = count,
            batches = block.batches.len(),
            applied,
            root = %state_root,
            "committed"
        );
    }
    let checkpoint = Checkpoint {
        chain_id: shared.chain_id.clone(),
        height: block.height,
        block_id,
        state_root,
    };
    let signature = keypair.sign(&checkpoint.signing_message());
    Ok(ConsensusMessage::CheckpointVote {
        checkpoint,
        author: shared.me,
        signature,
    })
}
