//! `netchain bench --component ordering`: the ordering layer alone, measured the way the
//! ordering-only research prototypes are (opaque fixed-size transactions, no signature checks,
//! no execution). The bench starts an ordering-only chain (genesis `ordering_only`), makes the
//! transactions on the fly from one template (only the nonce changes), offers them open-loop,
//! counts what committed from validator 0's block events, and times one transaction in
//! [`SAMPLE_EVERY`] from submission to its commit (those come from a sample sender whose events
//! the node streams alone, so the measuring costs the validators little).

use crate::bench::{
    cpu_snapshot, cpu_used, padding_for, BenchArgs, BenchReport, StepReport, REQUESTS_IN_FLIGHT,
};
use anyhow::Context;
use netchain_client::Client;
use netchain_types::{
    codec, Digest, Payload, PublicKey, Signature, SignedTransaction, Transaction,
};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One transaction in this many is a latency sample.
pub const SAMPLE_EVERY: u64 = 64;
/// The sender the samples name (nothing checks senders on an ordering-only chain).
const SAMPLE_SENDER: PublicKey = PublicKey([0x5b; 32]);
/// The sender every other transaction names.
const BULK_SENDER: PublicKey = PublicKey([0x5a; 32]);
const TICK: Duration = Duration::from_millis(10);
/// How long to wait for the last commits after the offer ends.
const DRAIN: Duration = Duration::from_secs(15);
/// Most transactions in one submit request (the node refuses more than its `submit_batch_max`
/// whole; a tick that catches up after waiting for a free request slot splits its share).
const REQUEST_TXS_MAX: u64 = 2_000;

/// Transactions of one size made from a template: the encoding of a padded transfer whose
/// nonce (and, for samples, sender) is patched in place.
struct Maker {
    chain: String,
    template: Vec<u8>,
    nonce_at: usize,
    sender_at: usize,
    memo: Vec<u8>,
}

impl Maker {
    fn new(chain: &str, size: usize) -> anyhow::Result<Self> {
        let tx = |nonce: u64, memo: Vec<u8>| SignedTransaction {
            tx: Transaction {
                chain_id: chain.to_string(),
                sender: BULK_SENDER,
                nonce,
                payload: Payload::Transfer {
                    to: PublicKey([0; 32]),
                    amount: 1,
                    memo,
                },
            },
            signature: Signature([0; 64]),
        };
        let memo = padding_for(&tx(0, Vec::new()), size);
        // A marker nonce finds where the nonce sits in the encoding.
        const MARK: u64 = 0x0123_4567_89ab_cdef;
        let template = codec::encode(&tx(MARK, memo.clone()));
        let nonce_at = template
            .windows(8)
            .position(|w| w == MARK.to_le_bytes())
            .context("finding the nonce in the template")?;
        let sender_at = template
            .windows(32)
            .position(|w| w == BULK_SENDER.0)
            .context("finding the sender in the template")?;
        Ok(Self {
            chain: chain.to_string(),
            template,
            nonce_at,
            sender_at,
            memo,
        })
    }

    fn size(&self) -> usize {
        self.template.len()
    }

    /// Appends transaction `nonce` as a bulk frame to `body`.
    fn frame(&self, nonce: u64, body: &mut Vec<u8>) {
        body.extend_from_slice(&(self.template.len() as u32).to_le_bytes());
        let at = body.len();
        body.extend_from_slice(&self.template);
        body[at + self.nonce_at..at + self.nonce_at + 8].copy_from_slice(&nonce.to_le_bytes());
        if nonce.is_multiple_of(SAMPLE_EVERY) {
            body[at + self.sender_at..at + self.sender_at + 32].copy_from_slice(&SAMPLE_SENDER.0);
        }
    }

    /// The id of sample `nonce` (as the node reports it).
    fn sample_id(&self, nonce: u64) -> Digest {
        SignedTransaction {
            tx: Transaction {
                chain_id: self.chain.clone(),
                sender: SAMPLE_SENDER,
                nonce,
                payload: Payload::Transfer {
                    to: PublicKey([0; 32]),
                    amount: 1,
                    memo: self.memo.clone(),
                },
            },
            signature: Signature([0; 64]),
        }
        .id()
    }
}

#[derive(Default)]
struct Tally {
    /// Sample id → submission time (µs since the step started).
    samples: HashMap<Digest, u64>,
    latencies_ms: Vec<u64>,
    committed: u64,
    refused: u64,
    last_commit_us: u64,
    /// Transactions per committed block with any (one entry per block).
    block_txs: Vec<u64>,
}

/// Runs the steps (one, or a ramp) against an ordering-only chain.
pub async fn drive(
    args: &BenchArgs,
    clients: &[Client],
    chain: &str,
    pids: &[(String, u32)],
) -> anyhow::Result<BenchReport> {
    crate::procs::wait_ready(clients, Duration::from_secs(30)).await?;
    let maker = Arc::new(Maker::new(chain, args.tx_size)?);
    let (steps, saturation_tps) = crate::bench::ramp(args, async |rate, index| {
        // Nonces of different steps never meet, so neither do sample ids.
        let first_nonce = (index as u64) << 40;
        offer(
            clients,
            &maker,
            rate,
            args.duration,
            first_nonce,
            pids,
            !args.json,
        )
        .await
    })
    .await?;
    Ok(BenchReport {
        workload: args.workload,
        component: args.component,
        validators: clients.len(),
        tx_bytes: maker.size(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        steps,
        saturation_tps,
    })
}

async fn offer(
    clients: &[Client],
    maker: &Arc<Maker>,
    rate: u64,
    duration: Duration,
    first_nonce: u64,
    pids: &[(String, u32)],
    progress: bool,
) -> anyhow::Result<StepReport> {
    let total = rate * duration.as_secs().max(1);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let from = clients[0].status().await?.height + 1;
    let blocks = {
        let tally = tally.clone();
        let client = clients[0].clone();
        tokio::spawn(async move {
            client
                .follow_blocks(from, |_, count, _| {
                    let mut t = tally.lock().expect("tally");
                    t.committed += count;
                    if count > 0 {
                        t.last_commit_us = start.elapsed().as_micros() as u64;
                        t.block_txs.push(count);
                    }
                })
                .await
        })
    };
    let samples = {
        let tally = tally.clone();
        let client = clients[0].clone();
        tokio::spawn(async move {
            client
                .follow_txs_of(from, Some(SAMPLE_SENDER), |ev| {
                    let now_us = start.elapsed().as_micros() as u64;
                    let mut t = tally.lock().expect("tally");
                    if let Some(sent) = t.samples.remove(&ev.id) {
                        t.latencies_ms.push(now_us.saturating_sub(sent) / 1_000);
                    }
                })
                .await
        })
    };
    let cpu_before = cpu_snapshot(pids);
    let permits = Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT));
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(TICK);
    let mut next_node = 0usize;
    let tty = progress && std::io::stdout().is_terminal();
    let mut last_print = Instant::now();
    while sent < total {
        ticker.tick().await;
        let due = ((rate as f64 * start.elapsed().as_secs_f64()) as u64).min(total);
        if due == sent {
            continue;
        }
        // One request per validator per tick.
        let n = clients.len() as u64;
        let per = (due - sent).div_ceil(n).min(REQUEST_TXS_MAX);
        let now_us = (start.elapsed().as_micros() as u64).max(1);
        let mut lo = sent;
        while lo < due {
            let hi = (lo + per).min(due);
            let mut body = Vec::with_capacity((hi - lo) as usize * (maker.size() + 4));
            for k in lo..hi {
                maker.frame(first_nonce + k, &mut body);
            }
            {
                let mut t = tally.lock().expect("tally");
                let first_sample = (first_nonce + lo).next_multiple_of(SAMPLE_EVERY);
                for nonce in (first_sample..first_nonce + hi).step_by(SAMPLE_EVERY as usize) {
                    t.samples.insert(maker.sample_id(nonce), now_us);
                }
            }
            let client = clients[next_node % clients.len()].clone();
            next_node = next_node.wrapping_add(1);
            let permit = permits.clone().acquire_owned().await.expect("semaphore");
            let tally = tally.clone();
            let count = hi - lo;
            let maker = maker.clone();
            tokio::spawn(async move {
                // Refused transactions are never ordered: their samples are not waited for.
                let refused: Vec<u64> = match client.submit_bulk_body(body).await {
                    Ok(resp) => resp.refused.iter().map(|r| lo + r.index as u64).collect(),
                    Err(_) => (lo..lo + count).collect(),
                };
                let mut t = tally.lock().expect("tally");
                t.refused += refused.len() as u64;
                for k in refused {
                    let nonce = first_nonce + k;
                    if nonce.is_multiple_of(SAMPLE_EVERY) {
                        t.samples.remove(&maker.sample_id(nonce));
                    }
                }
                drop(permit);
            });
            lo = hi;
        }
        sent = due;
        if tty && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let committed = tally.lock().expect("tally").committed;
            print!(
                "\r  [{:>3}s] offered {sent}, ordered {committed}   ",
                start.elapsed().as_secs()
            );
            let _ = std::io::stdout().flush();
        }
    }
    let offer_secs = start.elapsed().as_secs_f64();
    // Every request answered, then the commits of what was accepted, and every accepted
    // sample's event (the sample stream may trail the block stream).
    let _ = permits.acquire_many(REQUESTS_IN_FLIGHT as u32).await;
    let drain = Instant::now();
    while drain.elapsed() < DRAIN {
        let done = {
            let t = tally.lock().expect("tally");
            t.committed + t.refused >= total && t.samples.is_empty()
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocks.abort();
    samples.abort();
    if tty {
        println!();
    }
    let cpu = cpu_used(pids, &cpu_before, start.elapsed().as_secs_f64());
    let mut t = tally.lock().expect("tally");
    let window = (t.last_commit_us as f64 / 1e6).max(0.001);
    let committed = t.committed;
    let pct = crate::bench::percentiles(&mut t.latencies_ms);
    let cpu_total: f64 = cpu.iter().map(|c| c.cpu_secs).sum();
    let (blocks, txs_per_block_p50, txs_per_block_max) =
        crate::bench::block_sizes(std::mem::take(&mut t.block_txs));
    Ok(StepReport {
        offered_tps: rate,
        offer_secs,
        offered: total,
        refused_at_admission: t.refused,
        committed,
        rejected_in_execution: 0,
        rejected_codes: Default::default(),
        applied_after_rejection: 0,
        missing: total.saturating_sub(committed + t.refused),
        finalized_tps: committed as f64 / window,
        latency_samples: t.latencies_ms.len() as u64,
        latency_ms_p50: pct[0],
        latency_ms_p95: pct[1],
        latency_ms_p99: pct[2],
        cpu_us_per_tx: (committed > 0 && !cpu.is_empty())
            .then(|| cpu_total * 1e6 / committed as f64),
        cpu,
        blocks,
        txs_per_block_p50,
        txs_per_block_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_template_with_the_nonce_and_sample_sender_patched() {
        let maker = Maker::new("netchain-bench", 512).unwrap();
        assert_eq!(maker.size(), 512);
        let mut body = Vec::new();
        maker.frame(SAMPLE_EVERY + 1, &mut body);
        maker.frame(SAMPLE_EVERY * 3, &mut body);
        let (len, rest) = body.split_at(4);
        assert_eq!(u32::from_le_bytes(len.try_into().unwrap()), 512);
        let plain: SignedTransaction = codec::decode(&rest[..512], 4096).unwrap();
        assert_eq!(plain.tx.nonce, SAMPLE_EVERY + 1);
        assert_eq!(plain.tx.sender, BULK_SENDER);
        let sample: SignedTransaction = codec::decode(&rest[516..], 4096).unwrap();
        assert_eq!(sample.tx.nonce, SAMPLE_EVERY * 3);
        assert_eq!(sample.tx.sender, SAMPLE_SENDER);
        assert_eq!(sample.id(), maker.sample_id(SAMPLE_EVERY * 3));
        assert_eq!(codec::encoded_len(&sample), 512);
    }
}
