//! The demo load generator: signed transfers among the demo accounts at a steady rate, spread over
//! the validators, with sampled submit-to-commit latency.

use crate::layout::demo_account;
use netchain_client::Client;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::{Digest, Payload, Transaction};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
const SAMPLES_MAX: usize = 256;
const LATENCIES_MAX: usize = 100_000;

/// Figures of a load run.
#[derive(Default)]
pub struct LoadStats {
    /// Transactions offered.
    pub submitted: AtomicU64,
    /// Accepted into a mempool.
    pub accepted: AtomicU64,
    /// Refused at admission.
    pub rejected: AtomicU64,
    /// Requests that failed outright (node down).
    pub failed_requests: AtomicU64,
    /// Sampled submit-to-commit latencies in ms.
    pub latencies_ms: Mutex<Vec<u64>>,
    /// Last refusal reason.
    pub last_rejection: Mutex<Option<String>>,
}

impl LoadStats {
    /// Latency percentile `p` (0..=100) of the samples, if any.
    pub fn latency_percentile(&self, p: f64) -> Option<u64> {
        let mut v = self.latencies_ms.lock().expect("latencies").clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        Some(v[idx.min(v.len() - 1)])
    }
}

struct Sample {
    id: Digest,
    node: usize,
    sent: Instant,
}

/// Offers `rate_tps` transfers per second until `stop` is set.
pub async fn run(
    clients: Vec<Client>,
    chain_id: String,
    accounts: usize,
    rate_tps: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    let keys: Vec<Keypair> = (0..accounts).map(|i| demo_account(&chain_id, i)).collect();
    let mut nonces = vec![0u64; accounts];
    // Resume from the chain's nonces (a kept network, or a second run).
    for (i, k) in keys.iter().enumerate() {
        if let Ok(a) = clients[i % clients.len()].account(&k.public(), false).await {
            nonces[i] = a.nonce;
        }
    }
    let samples = Arc::new(Mutex::new(VecDeque::<Sample>::new()));
    let poller = tokio::spawn(poll_samples(
        clients.clone(),
        samples.clone(),
        stop.clone(),
        stats.clone(),
    ));
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut next_account = 0usize;
    let mut ticker = tokio::time::interval(TICK);
    // A node whose request failed is skipped for a while; its accounts go to the next node (the
    // validators pass transactions on to each other, so any of them will do).
    let mut down_until = vec![Instant::now(); clients.len()];
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let now = Instant::now();
        let up: Vec<usize> = (0..clients.len())
            .filter(|&i| down_until[i] <= now)
            .collect();
        let due = (rate_tps as f64 * start.elapsed().as_secs_f64()) as u64;
        let count = due.saturating_sub(sent).min(rate_tps.max(1) * 2) as usize;
        sent = due;
        if count == 0 {
            continue;
        }
        let mut per_node: Vec<Vec<(usize, netchain_types::SignedTransaction)>> =
            vec![Vec::new(); clients.len()];
        for _ in 0..count.min(accounts) {
            let a = next_account;
            next_account = (next_account + 1) % accounts;
            let to = keys[(a + 1 + a % 7) % accounts].public();
            let tx = sign_transaction(
                &keys[a],
                Transaction {
                    chain_id: chain_id.clone(),
                    sender: keys[a].public(),
                    nonce: nonces[a],
                    payload: Payload::Transfer { to, amount: 1 },
                },
            );
            nonces[a] += 1;
            let node = if up.is_empty() {
                a % clients.len()
            } else {
                up[a % up.len()]
            };
            per_node[node].push((a, tx));
        }
        let mut handles = Vec::new();
        let mut resync = Vec::new();
        for (node, batch) in per_node.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let client = clients[node].clone();
            handles.push(tokio::spawn(async move {
                let txs: Vec<_> = batch.iter().map(|(_, t)| t.clone()).collect();
                (node, batch, client.submit_batch(&txs).await)
            }));
        }
        for h in handles {
            let Ok((node, batch, result)) = h.await else {
                continue;
            };
            stats
                .submitted
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match result {
                Ok(resp) => {
                    let mut sampled = false;
                    for ((a, tx), item) in batch.iter().zip(&resp.results) {
                        if item.accepted {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            if !sampled {
                                sampled = true;
                                let mut s = samples.lock().expect("samples");
                                if s.len() >= SAMPLES_MAX {
                                    s.pop_front();
                                }
                                s.push_back(Sample {
                                    id: tx.id(),
                                    node,
                                    sent: Instant::now(),
                                });
                            }
                        } else {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            *stats.last_rejection.lock().expect("rej") = item.code.clone();
                            if item.code.as_deref() == Some("nonce_too_high") {
                                // A gap (a node died holding earlier ones): start over from
                                // the chain's nonce.
                                resync.push(*a);
                            }
                            // Reuse the nonce so the account's sequence has no gap.
                            nonces[*a] = nonces[*a].min(tx.tx.nonce);
                        }
                    }
                }
                Err(e) => {
                    down_until[node] = Instant::now() + Duration::from_secs(2);
                    stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                    *stats.last_rejection.lock().expect("rej") = Some(e.to_string());
                    for (a, tx) in &batch {
                        nonces[*a] = nonces[*a].min(tx.tx.nonce);
                    }
                }
            }
        }
        if let Some(&node) = up.first() {
            for a in resync {
                if let Ok(acct) = clients[node].account(&keys[a].public(), false).await {
                    nonces[a] = acct.nonce;
                }
            }
        }
    }
    let _ = poller.await;
}

async fn poll_samples(
    clients: Vec<Client>,
    samples: Arc<Mutex<VecDeque<Sample>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    let mut ticker = tokio::time::interval(TICK);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let batch: Vec<(Digest, usize, Instant)> = samples
            .lock()
            .expect("samples")
            .iter()
            .map(|s| (s.id, s.node, s.sent))
            .collect();
        for (id, node, sent) in batch {
            let done = match clients[node].tx_status(&id).await {
                Ok(Some(s)) => s.status != "pending",
                Ok(None) => {
                    // Unknown to the node (e.g. it restarted): stop tracking, record nothing.
                    samples.lock().expect("samples").retain(|s| s.id != id);
                    false
                }
                Err(_) => false,
            };
            if done {
                let latency = sent.elapsed().as_millis() as u64;
                let mut l = stats.latencies_ms.lock().expect("latencies");
                if l.len() < LATENCIES_MAX {
                    l.push(latency);
                }
                samples.lock().expect("samples").retain(|s| s.id != id);
            }
        }
    }
}
