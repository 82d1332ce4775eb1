//! The demo load generator: signed transfers among the demo accounts at a steady rate, spread over
//! the validators, with the submit-to-commit latency of every accepted transaction, taken from
//! validator 0's event stream.
//!
//! (Until stop 12 the latency came from polling 256 sampled transactions' status one request at
//! a time, evicting the oldest sample when full: under load the slow transactions were the ones
//! evicted and a polling pass took seconds, so the figure said ~45 ms while blocks took seconds.)

use crate::layout::demo_account;
use netchain_client::Client;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::{Digest, Payload, Transaction};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);
/// Accepted transactions waiting for their commit event at most; beyond it new ones are not
/// timed (never the oldest dropped: that would keep only the fast ones).
const PENDING_MAX: usize = 200_000;
/// Latencies kept at most (the first ones of a long run).
const LATENCIES_MAX: usize = 1_000_000;
/// A timed transaction with no commit event after this long is forgotten (its event came before
/// its submit answer, or it was lost with a node); counted in `untimed`.
const PENDING_FORGET: Duration = Duration::from_secs(120);

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
    /// Submit-to-commit latencies in ms of the accepted transactions committed so far.
    pub latencies_ms: Mutex<Vec<u64>>,
    /// Accepted transactions whose commit was never seen within two minutes (not in the
    /// latencies).
    pub untimed: AtomicU64,
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
    let pending: Arc<Mutex<HashMap<Digest, Instant>>> = Arc::default();
    let follower = {
        let (client, pending, stats) = (clients[0].clone(), pending.clone(), stats.clone());
        let from = client.status().await.map_or(0, |s| s.height);
        tokio::spawn(async move {
            client
                .follow_txs(from, |ev| {
                    let Some(sent) = pending.lock().expect("pending").remove(&ev.id) else {
                        return;
                    };
                    if ev.applied {
                        let mut l = stats.latencies_ms.lock().expect("latencies");
                        if l.len() < LATENCIES_MAX {
                            l.push(sent.elapsed().as_millis() as u64);
                        }
                    }
                })
                .await
        })
    };
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut next_account = 0usize;
    let mut ticker = tokio::time::interval(TICK);
    // A node whose request failed is skipped for a while; its accounts go to the next node (the
    // validators pass transactions on to each other, so any of them will do).
    let mut down_until = vec![Instant::now(); clients.len()];
    let mut next_purge = Instant::now() + PENDING_FORGET;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let now = Instant::now();
        if now >= next_purge {
            next_purge = now + PENDING_FORGET / 24;
            let mut p = pending.lock().expect("pending");
            let before = p.len();
            p.retain(|_, sent| now.duration_since(*sent) < PENDING_FORGET);
            stats
                .untimed
                .fetch_add((before - p.len()) as u64, Ordering::Relaxed);
        }
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
                    payload: Payload::Transfer {
                        to,
                        amount: 1,
                        memo: Vec::new(),
                    },
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
                let sent_at = Instant::now();
                (node, batch, sent_at, client.submit_bulk(&txs).await)
            }));
        }
        for h in handles {
            let Ok((node, batch, sent_at, result)) = h.await else {
                continue;
            };
            stats
                .submitted
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match result {
                Ok(resp) => {
                    let mut refusals: Vec<Option<String>> = vec![None; batch.len()];
                    for r in resp.refused {
                        if let Some(slot) = refusals.get_mut(r.index) {
                            *slot = Some(r.code);
                        }
                    }
                    let mut timed = pending.lock().expect("pending");
                    for ((a, tx), refusal) in batch.iter().zip(refusals) {
                        if refusal.is_none() {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            if timed.len() < PENDING_MAX {
                                // Timed from the request's start: the client's view.
                                timed.insert(tx.id(), sent_at);
                            }
                        } else {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            *stats.last_rejection.lock().expect("rej") = refusal.clone();
                            if refusal.as_deref() == Some("nonce_too_high") {
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
    follower.abort();
}
