//! `netchain bench --component validator`: one validator's share of the full pipeline, in one
//! process, with the other validators simulated. Their batches of signed, padded transfers are
//! made and encoded before the clock starts (they would arrive from the network); the pipeline
//! then decodes each batch, verifies the signatures of its share (`f + 1` of the `n` validators
//! check each transaction: its author at admission, and the `f` peers the author asks before
//! they acknowledge; so half of the batches here, with 4 validators), stores it durably (a
//! second thread syncs a round while the next is checked), and executes
//! blocks of the batches in order, committing state, block and batches with one sync per block,
//! as the validator's `batch-check`, `batch-store` and `execution` threads do.
//! Closed loop: `--rate × --duration` transactions go through as fast as the pipeline goes.
//!
//! What it leaves out, so read it as an upper bound for one validator alone on the machine:
//! consensus (votes, proposals, safety-data syncs), acknowledgement and proof signatures, the
//! network, HTTP admission, the mempool and event streams; and signature checks use every core
//! while execution runs beside them.

use crate::bench::BenchArgs;
use crate::layout::demo_account;
use anyhow::{bail, Context};
use netchain_crypto::Keypair;
use netchain_execution::{BlockInfo, Executor};
use netchain_node::{Backend, Shared};
use netchain_storage::{ChainStore, ChainTip, FjallBackend, WriteBatch};
use netchain_types::{codec, Batch, BatchInfo, Block, Digest, QuorumCert};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Validators the simulated network has (batches are authored by them in turn).
const VALIDATORS: u16 = 4;
/// Most batches one block carries (the default `block_max_batches`).
const BLOCK_BATCHES_MAX: usize = 64;
/// Batches stored with one sync at most (as the node's checker does).
const BATCHES_PER_SYNC_MAX: usize = 16;
/// Checked batches waiting for execution at most.
const QUEUE: usize = 64;

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ValidatorReport {
    /// Transactions through the pipeline (all applied).
    pub transactions: u64,
    /// Encoded size of one.
    pub tx_bytes: usize,
    /// Batches and blocks.
    pub batches: u64,
    /// Blocks executed.
    pub blocks: u64,
    /// Seconds from the first batch decoded to the last block committed.
    pub secs: f64,
    /// Transactions per second through the whole pipeline.
    pub tps: f64,
    /// Seconds the checking stage (decode, verify) was busy.
    pub check_busy_secs: f64,
    /// Seconds the storing stage (the checked batches, one sync per round) was busy.
    pub store_busy_secs: f64,
    /// Seconds the execution stage (execute, commit state, store the block) was busy.
    pub execute_busy_secs: f64,
    /// CPU seconds of the process during the run, and per transaction.
    pub cpu_secs: f64,
    /// CPU microseconds per transaction.
    pub cpu_us_per_tx: f64,
    /// Logical CPUs.
    pub cpus: usize,
}

/// Runs the validator component; prints and returns the report.
pub fn run(args: &BenchArgs) -> anyhow::Result<ValidatorReport> {
    let chain = "netchain-bench";
    anyhow::ensure!(args.accounts >= 1, "--accounts must be at least 1");
    let defaults = netchain_config::ConsensusParams::default();
    let total = (args.rate.max(1) * args.duration.as_secs().max(1)) as usize;
    let dir = args.dir.join("validator");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let backend = Arc::new(FjallBackend::open(&dir.join("db"))?);
    let store = ChainStore::new(backend.clone());
    let executor = Executor::new(chain.to_string(), backend);
    let keys: Vec<Keypair> = (0..args.accounts).map(|i| demo_account(chain, i)).collect();
    let balances: Vec<_> = keys.iter().map(|k| (k.public(), 1_000_000_000)).collect();
    let (root, genesis) = executor.genesis_with(&balances, None, None)?;
    store.commit(genesis)?;
    let mut nonces = vec![0u64; keys.len()];
    let txs = crate::bench::presign(chain, &keys, &mut nonces, total, args.tx_size, !args.json);
    let tx_bytes = codec::encode(&txs[0]).len();
    // The peers' batches as they come off the wire, cut as a validator cuts them (by count
    // and bytes, with room for the batch's own fields).
    let batch_txs = defaults
        .batch_max_txs
        .min((defaults.batch_max_bytes - 1_024) / tx_bytes)
        .max(1);
    let mut wire = Vec::new();
    let mut txs = txs.into_iter().peekable();
    let mut seq = 0u64;
    while txs.peek().is_some() {
        let batch = Batch {
            chain_id: chain.into(),
            author: (seq % u64::from(VALIDATORS)) as u16,
            seq: 1_000 + seq,
            expires_ms: u64::MAX,
            txs: txs.by_ref().take(batch_txs).collect(),
        };
        wire.push(codec::encode(&batch));
        seq += 1;
    }
    let batches = wire.len() as u64;
    if !args.json {
        println!("  {batches} batches of up to {batch_txs} transactions ({tx_bytes} B each)");
    }

    let cpu_before = crate::bench::cpu_snapshot(&[]);
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Batch, BatchInfo)>(QUEUE);
    let (check, exec) = std::thread::scope(|s| {
        let store = &store;
        let checker = s.spawn(move || check_stage(store, wire, tx));
        let executor = s.spawn(move || execute_stage(store, &executor, root, rx));
        (checker.join(), executor.join())
    });
    let (check_busy, store_busy) =
        check.map_err(|_| anyhow::anyhow!("checking stage panicked"))??;
    let (blocks, applied, execute_busy) =
        exec.map_err(|_| anyhow::anyhow!("execution stage panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    let cpu = crate::bench::cpu_used(&[], &cpu_before, secs);
    let cpu_secs = cpu.first().map_or(0.0, |c| c.cpu_secs);
    if applied != total as u64 {
        bail!("only {applied} of {total} transactions applied");
    }
    let report = ValidatorReport {
        transactions: applied,
        tx_bytes,
        batches,
        blocks,
        secs,
        tps: applied as f64 / secs,
        check_busy_secs: check_busy.as_secs_f64(),
        store_busy_secs: store_busy.as_secs_f64(),
        execute_busy_secs: execute_busy.as_secs_f64(),
        cpu_secs,
        cpu_us_per_tx: cpu_secs * 1e6 / applied.max(1) as f64,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "bench: one validator's pipeline, {} transactions of {} B, {} CPUs\n  {:.0} tx/s over {:.1} s ({} blocks) | busy: check {:.1} s, store {:.1} s, execution {:.1} s | {:.1} µs CPU per transaction",
            report.transactions,
            report.tx_bytes,
            report.cpus,
            report.tps,
            report.secs,
            report.blocks,
            report.check_busy_secs,
            report.store_busy_secs,
            report.execute_busy_secs,
            report.cpu_us_per_tx
        );
    }
    Ok(report)
}

/// Decodes each batch and verifies its signatures, a round at a time; a second thread stores
/// each round (one sync) while the next is checked, then hands its batches to execution, as
/// the node's `batch-check` and `batch-store` threads do. Returns how long the checking
/// thread and the storing thread were busy.
fn check_stage(
    store: &ChainStore<Backend>,
    wire: Vec<Vec<u8>>,
    out: std::sync::mpsc::SyncSender<(Batch, BatchInfo)>,
) -> anyhow::Result<(Duration, Duration)> {
    let (to_store, checked) = std::sync::mpsc::sync_channel::<Vec<(BatchInfo, Batch)>>(1);
    std::thread::scope(|s| {
        let storing = s.spawn(move || -> anyhow::Result<Duration> {
            let mut busy = Duration::ZERO;
            for round in checked {
                let t = Instant::now();
                let refs: Vec<_> = round.iter().map(|(i, b)| (*i, b)).collect();
                store.put_pending_batches(&refs)?;
                busy += t.elapsed();
                for (info, batch) in round {
                    if out.send((batch, info)).is_err() {
                        bail!("execution stage stopped");
                    }
                }
            }
            Ok(busy)
        });
        let mut busy = Duration::ZERO;
        // Batch i is authored by validator i mod n; this validator checks f + 1 authors' out of
        // n (its own clients' at admission, and those of the f peers whose batches it is asked
        // to check).
        let checks = (usize::from(VALIDATORS) - 1) / 3 + 1;
        for (r, round) in wire.chunks(BATCHES_PER_SYNC_MAX).enumerate() {
            let t = Instant::now();
            let mut checked = Vec::with_capacity(round.len());
            for (j, bytes) in round.iter().enumerate() {
                let batch: Batch = codec::decode(bytes, 64 << 20).context("decoding a batch")?;
                let info = batch.info();
                let index = r * BATCHES_PER_SYNC_MAX + j;
                if index % usize::from(VALIDATORS) < checks
                    && !Shared::verify_signatures(&batch.txs).iter().all(|ok| *ok)
                {
                    bail!("a batch with a bad signature");
                }
                checked.push((info, batch));
            }
            busy += t.elapsed();
            if to_store.send(checked).is_err() {
                break;
            }
        }
        drop(to_store);
        let store_busy = storing
            .join()
            .map_err(|_| anyhow::anyhow!("storing stage panicked"))??;
        Ok((busy, store_busy))
    })
}

/// Executes blocks of whatever checked batches are waiting (up to a block's worth), storing
/// each block with its batches and state in one synced write. Returns (blocks, transactions
/// applied, busy time).
fn execute_stage(
    store: &ChainStore<Backend>,
    executor: &Executor<Backend>,
    genesis_root: Digest,
    rx: std::sync::mpsc::Receiver<(Batch, BatchInfo)>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let mut busy = Duration::ZERO;
    let mut parent = Block::genesis(genesis_root, 0);
    let mut state_root;
    let (mut blocks, mut applied) = (0u64, 0u64);
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < BLOCK_BATCHES_MAX {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let t = Instant::now();
        let block = Block {
            round: parent.round + 1,
            height: parent.height + 1,
            parent_id: parent.id(),
            qc: QuorumCert::genesis(parent.id()),
            tc: None,
            author: 0,
            timestamp_ms: parent.timestamp_ms + 100,
            payload: Vec::new(),
            batches: Vec::new(),
        };
        let txs: Vec<_> = batches.iter().flat_map(|(b, _)| b.txs.iter()).collect();
        // Covered by the batches' proofs of availability (checked above, as a peer would).
        let out = executor.execute_checked(&BlockInfo::from(&block), &txs, &|_, _| true)?;
        let mut wb: WriteBatch = out.batch;
        // Stored when checked, as an acknowledged batch is.
        for (_, info) in &batches {
            ChainStore::<Backend>::put_executed_batch(&mut wb, info, None);
        }
        ChainStore::<Backend>::put_block(&mut wb, &block);
        applied += out.applied;
        state_root = out.state_root;
        ChainStore::<Backend>::put_tip(
            &mut wb,
            &ChainTip {
                block: block.clone(),
                qc: QuorumCert::genesis(block.id()),
                state_root,
                total_txs: applied,
            },
        );
        store.commit(wb)?;
        busy += t.elapsed();
        blocks += 1;
        parent = block;
    }
    Ok((blocks, applied, busy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn every_transaction_goes_through_and_the_chain_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from([
            "bench",
            "--component",
            "validator",
            "--rate",
            "2500",
            "--duration",
            "2s",
            "--accounts",
            "50",
            "--tx-size",
            "300",
            "--json",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        let report = run(&cli.bench).unwrap();
        assert_eq!(report.transactions, 5_000);
        assert_eq!(report.tx_bytes, 300);
        assert_eq!(report.batches, 3);
        assert!(report.blocks >= 1 && report.tps > 0.0);
        // The store holds the executed chain: its tip counts every transaction, and no batch is
        // left pending.
        let backend = Arc::new(FjallBackend::open(&dir.path().join("validator/db")).unwrap());
        let store = ChainStore::new(backend);
        let tip = store.tip().unwrap().unwrap();
        assert_eq!((tip.block.height, tip.total_txs), (report.blocks, 5_000));
        assert!(store.pending_batches(10).unwrap().is_empty());
    }
}
