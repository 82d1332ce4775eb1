//! Overload: four real validators throttled to a few hundred transfers per second are offered
//! as much as one test process can send (well over ten times that) for half a minute. Every
//! queue must stay within its bound (the mempool refuses with `mempool_full`, the quorum store
//! keeps to its quotas), each validator's memory must level off, and an honest client that
//! retries refused transactions must keep committing all along.

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use netchain_client::Client;
use netchain_crypto::Keypair;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const FLOOD_ACCOUNTS: usize = 2_000;
const MEMPOOL_MAX: usize = 2_000;
const FLOOD: Duration = Duration::from_secs(30);

/// Resident memory of a process, from /proc (Linux), in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn metric(client_api: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{client_api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends transfers from `keys` to validator `client` as fast as it answers; a refused
/// transaction is offered again (same nonce) in the next round.
async fn flood(
    client: Client,
    chain: String,
    keys: Vec<Keypair>,
    stop: Arc<AtomicBool>,
    offered: Arc<AtomicU64>,
    refused_full: Arc<AtomicU64>,
) {
    let mut nonces = vec![0u64; keys.len()];
    while !stop.load(Ordering::Relaxed) {
        let txs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let to = keys[(i + 1) % keys.len()].public();
                transfer(&chain, k, nonces[i], to, 1)
            })
            .collect();
        let Ok(resp) = client.submit_batch(&txs).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        offered.fetch_add(txs.len() as u64, Ordering::Relaxed);
        for (i, item) in resp.results.iter().enumerate() {
            match item.code.as_deref() {
                _ if item.accepted => nonces[i] += 1,
                Some("duplicate") => nonces[i] += 1,
                Some("mempool_full") => {
                    refused_full.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_overload_keeps_memory_bounded_and_honest_clients_committing() {
    let _serial = SERIAL.lock().await;
    // Throttled: one batch of at most 20 transfers per block, a small mempool.
    let net = Net::start_with(VALIDATORS, FLOOD_ACCOUNTS + 1, false, |_, cfg| {
        cfg.consensus.batch_max_txs = 20;
        cfg.consensus.block_max_batches = 1;
        cfg.mempool.txs_max = MEMPOOL_MAX;
    })
    .await;
    let chain = net.chain_id();
    let pids: Vec<u32> = net
        .procs
        .iter()
        .map(|p| p.as_ref().unwrap().child.id().unwrap())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let refused_full = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    let per = FLOOD_ACCOUNTS / VALIDATORS;
    for v in 0..VALIDATORS {
        let keys = (v * per..(v + 1) * per)
            .map(|a| demo_account(&chain, a))
            .collect();
        floods.push(tokio::spawn(flood(
            net.clients[v].clone(),
            chain.clone(),
            keys,
            stop.clone(),
            offered.clone(),
            refused_full.clone(),
        )));
    }

    // The honest client: one transfer at a time, retried while refused, waiting for each commit.
    let honest = demo_account(&chain, FLOOD_ACCOUNTS);
    let to = demo_account(&chain, 0).public();
    let start = Instant::now();
    let mut honest_commits = Vec::new();
    let mut nonce = 0;
    let mut rss_mid = vec![0u64; VALIDATORS];
    let mut committed_mid = 0;
    while start.elapsed() < FLOOD {
        if rss_mid[0] == 0 && start.elapsed() > FLOOD / 3 {
            rss_mid = pids.iter().map(|p| rss_bytes(*p).unwrap_or(0)).collect();
            committed_mid = net.clients[0].status().await.unwrap().committed_txs_total;
        }
        let tx = transfer(&chain, &honest, nonce, to, 1);
        let node = nonce as usize % VALIDATORS;
        match net.clients[node]
            .submit_batch(std::slice::from_ref(&tx))
            .await
        {
            Ok(r) if r.results[0].accepted => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(s)) = net.clients[node].tx_status(&tx.id()).await {
                if s.status == "committed" {
                    honest_commits.push(start.elapsed());
                    nonce += 1;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let rss_end: Vec<u64> = pids.iter().map(|p| rss_bytes(*p).unwrap_or(0)).collect();
    let committed_end = net.clients[0].status().await.unwrap().committed_txs_total;
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        let _ = f.await;
    }

    let offered = offered.load(Ordering::Relaxed);
    let committed = committed_end - committed_mid;
    let window = FLOOD.as_secs_f64() * 2.0 / 3.0;
    eprintln!(
        "offered {offered} in {:?}, committed {committed} in the last {window:.0} s, {} \
         refused as mempool_full; honest commits at {honest_commits:?}; RSS mid {rss_mid:?}, \
         end {rss_end:?}",
        FLOOD,
        refused_full.load(Ordering::Relaxed)
    );
    // It was an overload: the chain committed far less than was offered, and pools were full.
    assert!(
        offered as f64 > 10.0 * committed as f64 * FLOOD.as_secs_f64() / window,
        "not a 10x overload: offered {offered}, committed {committed} in {window:.0} s"
    );
    assert!(
        refused_full.load(Ordering::Relaxed) > 0,
        "no back-pressure seen"
    );
    // The honest client committed all along: at least one transfer in each third.
    for third in 0..3 {
        let (a, b) = (FLOOD * third / 3, FLOOD * (third + 1) / 3);
        assert!(
            honest_commits.iter().any(|t| *t >= a && *t < b),
            "no honest commit between {a:?} and {b:?}: {honest_commits:?}"
        );
    }
    // Every bound held, and memory levelled off.
    for v in 0..VALIDATORS {
        let api = net.layout.api_address(v);
        let pool = metric(api, "netchain_mempool_transactions").await;
        assert!(pool <= MEMPOOL_MAX as f64, "validator {v}: {pool} pooled");
        let batches = metric(api, "netchain_quorum_store_batches").await;
        assert!(
            batches <= (300 * VALIDATORS) as f64,
            "validator {v}: {batches} batches"
        );
        let (mid, end) = (rss_mid[v], rss_end[v]);
        assert!(
            end <= mid + mid / 2 + (32 << 20),
            "validator {v}: RSS grew from {} MB to {} MB in the last two thirds",
            mid >> 20,
            end >> 20
        );
    }
}
