//! `netchain testnet`: a local network of validator processes with a demo load and a live view.

use crate::layout::{self, Layout, LayoutParams};
use crate::load::{self, LoadStats};
use crate::procs::{netchaind_path, wait_ready, NodeProcess};
use anyhow::Context;
use netchain_api::StatusResponse;
use netchain_client::Client;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to start.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    /// Layout parameters.
    pub layout: LayoutParams,
    /// Data folder.
    pub dir: PathBuf,
    /// Keep an existing network in `dir` instead of starting fresh.
    pub keep: bool,
    /// Offered load in transactions per second (0: none).
    pub load_tps: u64,
    /// Stop after this long and print a summary (None: until Ctrl-C).
    pub duration: Option<Duration>,
}

/// The status of every node (None where it does not answer).
/// The highest `committed_txs_total` among the validators that answer (0 if none does).
pub async fn committed_total(clients: &[Client]) -> u64 {
    statuses(clients)
        .await
        .iter()
        .flatten()
        .map(|s| s.committed_txs_total)
        .max()
        .unwrap_or(0)
}

pub async fn statuses(clients: &[Client]) -> Vec<Option<StatusResponse>> {
    let futures: Vec<_> = clients.iter().map(|c| c.status()).collect();
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await.ok());
    }
    out
}

/// Runs the network; returns whether the run met its goals (commits, one shared state root).
pub async fn run(opts: TestnetOptions) -> anyhow::Result<bool> {
    let layout = prepare(&opts)?;
    let binary = netchaind_path();
    let mut procs = Vec::new();
    for (i, file) in layout.node_files.iter().enumerate() {
        let log = layout.validator_dir(i).join("node.log");
        procs.push(NodeProcess::start(&binary, file, &log)?);
    }
    let n = procs.len();
    let clients: Vec<Client> = (0..n).map(|i| Client::new(layout.api_address(i))).collect();
    println!(
        "netchain testnet: {n} validators, chain {}, data in {} (logs: validator-*/node.log)",
        layout.genesis.chain_id,
        layout.dir.display()
    );
    wait_ready(&clients, Duration::from_secs(30)).await?;
    for (i, c) in clients.iter().enumerate() {
        println!(
            "  validator {i}: api http://{}",
            c.base().trim_start_matches("http://")
        );
    }
    println!(
        "  explorer: http://{}/",
        clients[0].base().trim_start_matches("http://")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats::default());
    let load_task = (opts.load_tps > 0).then(|| {
        tokio::spawn(load::run(
            clients.clone(),
            layout.genesis.chain_id.clone(),
            layout.genesis.accounts.len(),
            opts.load_tps,
            stop.clone(),
            stats.clone(),
        ))
    });
    let start = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let mut exited = vec![false; n];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let base_total = committed_total(&clients).await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => { println!(); break; }
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let st = statuses(&clients).await;
        let up: Vec<&StatusResponse> = st.iter().flatten().collect();
        let total = up.iter().map(|s| s.committed_txs_total).max().unwrap_or(0);
        let now = Instant::now();
        history.push((now, total));
        history.retain(|(t, _)| now.duration_since(*t) <= Duration::from_secs(5));
        let tps = match (history.first(), history.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
            _ => 0.0,
        };
        let hmin = up.iter().map(|s| s.height).min().unwrap_or(0);
        let hmax = up.iter().map(|s| s.height).max().unwrap_or(0);
        let lat = up
            .iter()
            .map(|s| s.last_commit_latency_ms)
            .max()
            .unwrap_or(0);
        let p50 = stats
            .latency_percentile(50.0)
            .map_or("-".into(), |v| format!("{v}"));
        for (i, p) in procs.iter_mut().enumerate() {
            if let Ok(Some(code)) = p.child.try_wait() {
                if !exited[i] {
                    exited[i] = true;
                    eprintln!("\nvalidator {i} exited ({code}); see its node.log");
                }
            }
        }
        let line = format!(
            "[{:>4}s] height {hmin}..{hmax} | up {}/{n} | finalized {:>8.0} tx/s | total {} | block latency {lat} ms | submit->commit p50 {p50} ms",
            start.elapsed().as_secs(),
            up.len(),
            tps,
            total.saturating_sub(base_total),
        );
        if tty {
            print!("\r{line:<130}");
            let _ = std::io::stdout().flush();
        } else if start.elapsed().as_secs().is_multiple_of(5) {
            println!("{line}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = load_task {
        let _ = t.await;
    }
    if tty {
        println!();
    }
    let elapsed = start.elapsed();
    // What committed while the load ran is the throughput; what the pools still held is counted
    // after a drain, apart.
    let in_window = committed_total(&clients).await.saturating_sub(base_total);
    let drain_start = Instant::now();
    while drain_start.elapsed() < Duration::from_secs(15) {
        let st = statuses(&clients).await;
        if st.iter().flatten().all(|s| s.mempool_size == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = drain_start.elapsed();
    let ok = summary(
        &clients,
        &stats,
        base_total,
        (elapsed, in_window, drained),
        opts.load_tps > 0,
    )
    .await;
    for p in &mut procs {
        p.kill().await;
    }
    Ok(ok)
}

fn prepare(opts: &TestnetOptions) -> anyhow::Result<Layout> {
    prepare_dir(&opts.dir, opts.keep, &opts.layout)
}

/// Loads the network in `dir` (with `keep`) or wipes it and writes a fresh one; refuses to wipe
/// a folder that does not hold a netchain network.
pub fn prepare_dir(
    dir: &std::path::Path,
    keep: bool,
    params: &LayoutParams,
) -> anyhow::Result<Layout> {
    if dir.join("genesis.json").exists() {
        if keep {
            return Layout::load(dir);
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    } else if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} exists and is not a netchain testnet folder; pick another --dir",
            dir.display()
        );
    }
    layout::write(dir, params)
}

async fn summary(
    clients: &[Client],
    stats: &LoadStats,
    base_total: u64,
    (elapsed, in_window, drained): (Duration, u64, Duration),
    expect_txs: bool,
) -> bool {
    let st = statuses(clients).await;
    let up: Vec<&StatusResponse> = st.iter().flatten().collect();
    let committed = up
        .iter()
        .map(|s| s.committed_txs_total)
        .max()
        .unwrap_or(0)
        .saturating_sub(base_total);
    let height = up.iter().map(|s| s.height).min().unwrap_or(0);
    let mut roots = Vec::new();
    for c in clients {
        if let Ok(Some(b)) = c.block(height).await {
            roots.push((b.id, b.state_root));
        }
    }
    let agree = !roots.is_empty() && roots.iter().all(|r| *r == roots[0]);
    let secs = elapsed.as_secs_f64().max(0.001);
    let pct = |p| {
        stats
            .latency_percentile(p)
            .map_or("-".into(), |v| format!("{v} ms"))
    };
    println!("summary ({:.1} s, {} validators answering)", secs, up.len());
    println!(
        "  committed transactions: {committed} (offered {}, accepted {}, refused {})",
        stats.submitted.load(Ordering::Relaxed),
        stats.accepted.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
    );
    if let Some(r) = stats.last_rejection.lock().expect("rej").as_ref() {
        println!("  last refusal: {r}");
    }
    println!(
        "  finalized throughput: {:.0} tx/s while the load ran ({in_window} committed in {secs:.1} s; \
         {} more in the {:.1} s drain after it)",
        in_window as f64 / secs,
        committed.saturating_sub(in_window),
        drained.as_secs_f64()
    );
    println!(
        "  submit->commit latency: p50 {}, p95 {}, p99 {} ({} samples)",
        pct(50.0),
        pct(95.0),
        pct(99.0),
        stats.latencies_ms.lock().expect("lat").len()
    );
    match roots.first() {
        Some((id, Some(root))) => println!(
            "  state root at height {height}: {root} (block {id}); {}/{} validators agree: {}",
            roots.iter().filter(|r| **r == roots[0]).count(),
            clients.len(),
            if agree { "yes" } else { "NO" }
        ),
        _ => println!("  no common block to compare"),
    }
    agree && roots.len() == up.len() && (!expect_txs || committed > 0)
}
