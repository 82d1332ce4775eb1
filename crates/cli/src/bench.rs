//! `netchain bench`: open-loop load at a fixed rate (or a ramp to saturation) against a network it
//! starts or one it is pointed at, with every transaction's submit-to-commit latency taken from
//! the event stream, and the CPU each process used.

use crate::demo::{self, DemoArgs};
use crate::layout::{demo_account, LayoutParams};
use crate::multichain::{self, MultiNet, MultiOptions};
use crate::procs::{netchaind_path, wait_ready, NodeProcess};
use crate::testnet::prepare_dir;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use netchain_client::Client;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::{codec, Digest, Payload, SignedTransaction, Transaction};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(10);
/// Submit requests in flight at once (open loop, but bounded).
pub(crate) const REQUESTS_IN_FLIGHT: usize = 64;
/// How long to wait for the last commits after the offer ends.
const DRAIN: Duration = Duration::from_secs(20);

/// Which workload to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Signed transfers among funded accounts.
    Transfer,
    /// The city demo's mix of local-currency operations (`netchain demo local-currency`).
    LocalCurrency,
}

/// Which part of the system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// Everything: signed transactions checked, batched, ordered, executed and persisted.
    Full,
    /// The ordering layer alone, as the ordering-only research prototypes are measured:
    /// dissemination in batches with proofs of availability, consensus, and persistence of the
    /// batches and blocks, on an ordering-only chain (genesis `ordering_only`) where nothing is
    /// signature-checked or executed. Transactions are opaque padded bytes made on the fly.
    Ordering,
    /// One validator's share of the full pipeline in one process, the other validators
    /// simulated: their batches of signed transfers are decoded, every signature verified,
    /// the batches stored, and blocks of them executed, state committed and stored. Closed
    /// loop: `--rate × --duration` transactions, as fast as they go.
    Validator,
}

/// Flags of `netchain bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Workload.
    #[arg(long, value_enum, default_value = "transfer")]
    pub workload: Workload,
    /// Disseminate transactions by gossip and carry them in blocks, instead of batches with
    /// proofs of availability (for comparison).
    #[arg(long)]
    pub no_batching: bool,
    /// What to measure: the full pipeline, or the ordering layer alone (component mode).
    #[arg(long, value_enum, default_value = "full")]
    pub component: Component,
    /// Encoded size of each transaction in bytes: transfers are padded with a memo up to it
    /// (a transfer without a memo is ~165 B; smaller sizes are not padded).
    #[arg(long, default_value_t = 512)]
    pub tx_size: usize,
    /// Override `[consensus] min_block_interval_ms` of the network the bench starts (how long a
    /// leader waits for batches before proposing; 0 proposes at once).
    #[arg(long)]
    pub min_block_interval_ms: Option<u64>,
    /// Override `[consensus] backlog_block_interval_ms` of the network the bench starts (how
    /// long a leader whose execution is behind waits for batches before proposing; 0 never).
    #[arg(long)]
    pub backlog_block_interval_ms: Option<u64>,
    /// Offered transactions per second (open loop).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Ramp: start at --rate and raise it by half each step until the network saturates.
    #[arg(long)]
    pub ramp: bool,
    /// How long to offer load (each step, with --ramp).
    #[arg(long, value_parser = crate::parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Funded sending accounts.
    #[arg(long, default_value_t = 4_000)]
    pub accounts: usize,
    /// Validators of the network the bench starts.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Target a running network instead (comma-separated API addresses); its demo accounts
    /// (derived from the chain id, as `netchain testnet` makes them) send the load.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// Data folder of the network the bench starts (wiped).
    #[arg(long, default_value = "bench-data")]
    pub dir: PathBuf,
    /// First P2P port of the network the bench starts.
    #[arg(long, default_value_t = 7500)]
    pub p2p_port: u16,
    /// First API port of the network the bench starts.
    #[arg(long, default_value_t = 8500)]
    pub api_port: u16,
    /// Print one JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Start a root chain and this many service chains and offer --rate to every chain at once
    /// (per-chain and aggregate figures).
    #[arg(long, default_value_t = 0)]
    pub service_chains: usize,
}

/// Figures of one chain in a multi-chain run.
#[derive(Clone, Debug, Serialize)]
pub struct ChainStep {
    /// Chain id.
    pub chain_id: String,
    /// Its step.
    pub step: StepReport,
}

/// The report of a multi-chain run.
#[derive(Clone, Debug, Serialize)]
pub struct MultiReport {
    /// Validators per chain.
    pub validators: usize,
    /// Logical CPUs.
    pub cpus: usize,
    /// Per chain, root first.
    pub chains: Vec<ChainStep>,
    /// Sum of the chains' finalized TPS.
    pub aggregate_tps: f64,
    /// Aggregate per logical CPU.
    pub aggregate_tps_per_cpu: f64,
}

/// CPU a process used during the measurement.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessCpu {
    /// `validator-N` or `bench`.
    pub process: String,
    /// CPU seconds (user + system).
    pub cpu_secs: f64,
    /// Average share of one core.
    pub cpu_percent: f64,
}

/// The result of one load step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// Offered rate.
    pub offered_tps: u64,
    /// Seconds of offered load.
    pub offer_secs: f64,
    /// Transactions offered.
    pub offered: u64,
    /// Refused at admission (mempool full, ...).
    pub refused_at_admission: u64,
    /// Committed and applied.
    pub committed: u64,
    /// Committed but rejected by execution.
    pub rejected_in_execution: u64,
    /// Those rejections by code (`bad_nonce`, `duplicate`, ...).
    pub rejected_codes: BTreeMap<String, u64>,
    /// Committed and applied after a copy of the same transaction was committed and rejected
    /// (counted in `committed`; a sign that a sender's transactions were ordered out of turn).
    pub applied_after_rejection: u64,
    /// Neither committed nor refused when the drain ended.
    pub missing: u64,
    /// Committed per second, from the first submission to the last commit seen.
    pub finalized_tps: f64,
    /// Transactions the latency percentiles are taken over: every committed one, or in the
    /// ordering component a sample (one in `ordering::SAMPLE_EVERY`).
    pub latency_samples: u64,
    /// Submit-to-commit latency percentiles (ms).
    pub latency_ms_p50: Option<u64>,
    /// 95th percentile.
    pub latency_ms_p95: Option<u64>,
    /// 99th percentile.
    pub latency_ms_p99: Option<u64>,
    /// CPU per process during the step (the processes the bench started, and itself).
    pub cpu: Vec<ProcessCpu>,
    /// CPU microseconds per committed transaction, all processes together.
    pub cpu_us_per_tx: Option<f64>,
    /// Blocks that committed the step's transactions.
    pub blocks: u64,
    /// Median of the step's transactions per such block.
    pub txs_per_block_p50: Option<u64>,
    /// Most of the step's transactions in one block.
    pub txs_per_block_max: Option<u64>,
}

/// Blocks, median and largest of the non-zero transaction counts per block.
pub(crate) fn block_sizes(mut counts: Vec<u64>) -> (u64, Option<u64>, Option<u64>) {
    counts.retain(|&c| c > 0);
    counts.sort_unstable();
    (
        counts.len() as u64,
        counts.get(counts.len() / 2).copied(),
        counts.last().copied(),
    )
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Workload.
    pub workload: Workload,
    /// Full pipeline or ordering layer alone.
    pub component: Component,
    /// Validators.
    pub validators: usize,
    /// Encoded size of one transaction (bytes).
    pub tx_bytes: usize,
    /// Machine: logical CPUs.
    pub cpus: usize,
    /// Steps (one without --ramp).
    pub steps: Vec<StepReport>,
    /// With --ramp: the highest finalized TPS of a step that kept up with its offer.
    pub saturation_tps: Option<f64>,
}

/// Runs the bench; prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.workload == Workload::LocalCurrency {
        return local_currency(args).await;
    }
    anyhow::ensure!(
        args.tx_size <= netchain_config::MempoolParams::default().tx_bytes_max,
        "--tx-size {} is over the nodes' transaction limit ({} B)",
        args.tx_size,
        netchain_config::MempoolParams::default().tx_bytes_max
    );
    if args.service_chains > 0 {
        anyhow::ensure!(
            args.component == Component::Full,
            "--service-chains measures the full pipeline (drop --component)"
        );
        return multi_chain(args).await;
    }
    if args.component == Component::Validator {
        anyhow::ensure!(
            args.target.is_empty() && args.workload == Workload::Transfer && !args.ramp,
            "the validator component runs in this process on transfers (drop --target, --ramp)"
        );
        let run = args.clone();
        tokio::task::spawn_blocking(move || crate::validator_bench::run(&run))
            .await
            .context("validator bench")??;
        return Ok(());
    }
    let ordering = args.component == Component::Ordering;
    anyhow::ensure!(
        !ordering
            || (!args.no_batching && args.workload == Workload::Transfer && args.target.is_empty()),
        "the ordering component starts its own ordering-only network, on batches, with opaque \
         transactions (drop --no-batching, --workload and --target)"
    );
    let mut procs: Vec<NodeProcess> = Vec::new();
    let (clients, chain) = if args.target.is_empty() {
        let layout = prepare_dir(
            &args.dir,
            false,
            &LayoutParams {
                chain_id: "netchain-bench".into(),
                validators: args.validators,
                accounts: if ordering { 1 } else { args.accounts },
                balance: 1_000_000_000_000,
                p2p_base_port: args.p2p_port,
                api_base_port: args.api_port,
                host: "127.0.0.1".into(),
                organizations: crate::layout::DEFAULT_ORGANIZATIONS,
                registered_senders: false,
                batching: !args.no_batching,
                ordering_only: ordering,
            },
        )?;
        let binary = netchaind_path();
        if args.min_block_interval_ms.is_some() || args.backlog_block_interval_ms.is_some() {
            for file in &layout.node_files {
                let mut cfg = netchain_config::NodeConfig::load(file)?;
                let c = &mut cfg.consensus;
                c.min_block_interval_ms = args
                    .min_block_interval_ms
                    .unwrap_or(c.min_block_interval_ms);
                c.backlog_block_interval_ms = args
                    .backlog_block_interval_ms
                    .unwrap_or(c.backlog_block_interval_ms);
                cfg.validate()?;
                cfg.save(file)?;
            }
        }
        for (i, file) in layout.node_files.iter().enumerate() {
            let log = layout.validator_dir(i).join("node.log");
            procs.push(NodeProcess::start(&binary, file, &log)?);
        }
        let clients: Vec<Client> = (0..procs.len())
            .map(|i| Client::new(layout.api_address(i)))
            .collect();
        (clients, layout.genesis.chain_id.clone())
    } else {
        let clients: Vec<Client> = args.target.iter().map(|a| Client::new(a)).collect();
        wait_ready(&clients, Duration::from_secs(10)).await?;
        let chain = clients[0].status().await?.chain_id;
        (clients, chain)
    };
    let pids: Vec<(String, u32)> = procs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.child.id().map(|pid| (format!("validator-{i}"), pid)))
        .collect();
    let result = if ordering {
        crate::ordering_bench::drive(&args, &clients, &chain, &pids).await
    } else {
        drive(&args, &clients, &chain, &pids).await
    };
    for p in &mut procs {
        p.kill().await;
    }
    let report = result?;
    print_report(&report, args.json)?;
    Ok(())
}

fn print_report(report: &BenchReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "bench: {:?} ({:?}), {} validators, {} B per transaction, {} CPUs",
        report.workload, report.component, report.validators, report.tx_bytes, report.cpus
    );
    for s in &report.steps {
        let p = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v} ms"));
        println!(
            "  offered {:>7} tx/s for {:.0} s: finalized {:>8.0} tx/s | latency p50 {} p95 {} p99 {} | committed {} rejected {}{} refused {} missing {}",
            s.offered_tps,
            s.offer_secs,
            s.finalized_tps,
            p(s.latency_ms_p50),
            p(s.latency_ms_p95),
            p(s.latency_ms_p99),
            s.committed,
            s.rejected_in_execution,
            if s.rejected_codes.is_empty() {
                String::new()
            } else {
                let codes: Vec<String> =
                    s.rejected_codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
                format!(" ({})", codes.join(", "))
            },
            s.refused_at_admission,
            s.missing
        );
        if s.applied_after_rejection > 0 {
            println!(
                "    {} committed after a rejected copy of the same transaction",
                s.applied_after_rejection
            );
        }
        let cpu: Vec<String> = s
            .cpu
            .iter()
            .map(|c| format!("{} {:.0} %", c.process, c.cpu_percent))
            .collect();
        if !cpu.is_empty() {
            println!(
                "    CPU: {} | {} µs CPU per committed transaction",
                cpu.join(", "),
                s.cpu_us_per_tx.map_or("-".into(), |v| format!("{v:.0}"))
            );
        }
        if s.blocks > 0 {
            println!(
                "    blocks: {} with these transactions, {} per block at the median, {} at most",
                s.blocks,
                s.txs_per_block_p50.unwrap_or(0),
                s.txs_per_block_max.unwrap_or(0)
            );
        }
    }
    if let Some(t) = report.saturation_tps {
        println!("  saturation: {t:.0} finalized tx/s");
    }
    Ok(())
}

/// The demo accounts of `chain` and their next nonces, checking they are funded.
async fn accounts_of(
    client: &Client,
    chain: &str,
    accounts: usize,
) -> anyhow::Result<(Vec<Keypair>, Vec<u64>)> {
    let keys: Vec<Keypair> = (0..accounts).map(|i| demo_account(chain, i)).collect();
    // Next nonce of every account (a targeted network may have used them).
    let mut nonces = vec![0u64; keys.len()];
    for (chunk_start, chunk) in keys.chunks(64).enumerate().map(|(i, c)| (i * 64, c)) {
        let futs = chunk.iter().map(|k| {
            let pk = k.public();
            async move { client.account(&pk, false).await }
        });
        for (i, a) in futures::future::join_all(futs)
            .await
            .into_iter()
            .enumerate()
        {
            let a = a.context("reading account nonces")?;
            anyhow::ensure!(
                a.balance > 0,
                "account {} has no funds: is --accounts larger than the network's demo accounts?",
                chunk_start + i
            );
            nonces[chunk_start + i] = a.nonce;
        }
    }
    Ok((keys, nonces))
}

async fn drive(
    args: &BenchArgs,
    clients: &[Client],
    chain: &str,
    pids: &[(String, u32)],
) -> anyhow::Result<BenchReport> {
    wait_ready(clients, Duration::from_secs(30)).await?;
    let (keys, mut nonces) = accounts_of(&clients[0], chain, args.accounts).await?;
    let mut tx_bytes = 0;
    let (steps, saturation_tps) = ramp(args, async |rate, _| {
        let total = rate * args.duration.as_secs().max(1);
        let per_account = total.div_ceil(keys.len() as u64);
        if per_account > 900 {
            bail!(
                "{total} transactions over {} accounts is {per_account} per account, above the mempool's per-sender bound: raise --accounts",
                keys.len()
            );
        }
        let txs = presign(
            chain,
            &keys,
            &mut nonces,
            total as usize,
            args.tx_size,
            !args.json,
        );
        tx_bytes = codec::encode(&txs[0]).len();
        offer(clients, txs, rate, pids, !args.json).await
    })
    .await?;
    Ok(BenchReport {
        workload: args.workload,
        component: args.component,
        validators: clients.len(),
        tx_bytes,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        steps,
        saturation_tps,
    })
}

/// Runs `step(rate, index)` at `--rate`; with `--ramp`, again at half as much more each time
/// until a step does not keep up (90 % of the offer finalized, p50 under 2 s), at most 10 steps.
/// Returns the steps and, with `--ramp`, the highest finalized rate of a step that kept up.
pub(crate) async fn ramp(
    args: &BenchArgs,
    mut step: impl AsyncFnMut(u64, usize) -> anyhow::Result<StepReport>,
) -> anyhow::Result<(Vec<StepReport>, Option<f64>)> {
    let mut steps = Vec::new();
    let mut rate = args.rate.max(1);
    let mut saturation = None;
    loop {
        let report = step(rate, steps.len()).await?;
        let kept_up = report.finalized_tps >= 0.9 * rate as f64
            && report.latency_ms_p50.is_some_and(|p| p < 2_000);
        if kept_up {
            saturation = Some(report.finalized_tps);
        }
        steps.push(report);
        if !args.ramp || !kept_up || steps.len() >= 10 {
            break;
        }
        rate += rate / 2;
    }
    Ok((steps, if args.ramp { saturation } else { None }))
}

/// The memo that pads a transfer like `tx` to `size` encoded bytes (empty when it is that large
/// already).
pub(crate) fn padding_for(tx: &SignedTransaction, size: usize) -> Vec<u8> {
    vec![0x5a; size.saturating_sub(codec::encoded_len(tx))]
}

/// Signs `total` transfers round-robin over the accounts, padded to `tx_size` bytes, on every
/// core, with a progress line.
pub(crate) fn presign(
    chain: &str,
    keys: &[Keypair],
    nonces: &mut [u64],
    total: usize,
    tx_size: usize,
    progress: bool,
) -> Vec<SignedTransaction> {
    let n = keys.len();
    // Every transfer encodes to the same size (fixed-width fields and one chain id), so one
    // unpadded sample gives the memo length for all.
    let memo = padding_for(
        &sign_transaction(
            &keys[0],
            Transaction {
                chain_id: chain.to_string(),
                sender: keys[0].public(),
                nonce: 0,
                payload: Payload::Transfer {
                    to: keys[0].public(),
                    amount: 1,
                    memo: Vec::new(),
                },
            },
        ),
        tx_size,
    );
    let plan: Vec<(usize, u64)> = (0..total)
        .map(|k| {
            let a = k % n;
            (a, nonces[a] + (k / n) as u64)
        })
        .collect();
    for (a, nonce) in nonces.iter_mut().enumerate() {
        *nonce += (total / n + usize::from(a < total % n)) as u64;
    }
    let done = AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = total.div_ceil(threads).max(1);
    let start = Instant::now();
    let mut out: Vec<Vec<SignedTransaction>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .chunks(chunk)
            .map(|part| {
                let (done, memo) = (&done, &memo);
                s.spawn(move || {
                    part.iter()
                        .map(|&(a, nonce)| {
                            let to = keys[(a + 1) % n].public();
                            let tx = sign_transaction(
                                &keys[a],
                                Transaction {
                                    chain_id: chain.to_string(),
                                    sender: keys[a].public(),
                                    nonce,
                                    payload: Payload::Transfer {
                                        to,
                                        amount: 1,
                                        memo: memo.clone(),
                                    },
                                },
                            );
                            done.fetch_add(1, Ordering::Relaxed);
                            tx
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        while progress && handles.iter().any(|h| !h.is_finished()) {
            let d = done.load(Ordering::Relaxed) as usize;
            print!(
                "\r  pre-signing {d}/{total} [{:<30}]",
                "#".repeat((d * 30 / total.max(1)).min(30))
            );
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_millis(100));
        }
        for h in handles {
            out.push(h.join().expect("signing thread"));
        }
    });
    if progress {
        println!(
            "\r  pre-signed {total} transactions in {:.1} s{:30}",
            start.elapsed().as_secs_f64(),
            ""
        );
    }
    out.into_iter().flatten().collect()
}

/// CPU seconds (user + system) of a process, from /proc (None where unavailable).
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds so far of each process, then of the bench itself.
pub(crate) fn cpu_snapshot(pids: &[(String, u32)]) -> Vec<Option<f64>> {
    pids.iter()
        .map(|(_, p)| cpu_secs(Some(*p)))
        .chain([cpu_secs(None)])
        .collect()
}

/// CPU each process (then the bench) used since `before`, over `elapsed` seconds.
pub(crate) fn cpu_used(
    pids: &[(String, u32)],
    before: &[Option<f64>],
    elapsed: f64,
) -> Vec<ProcessCpu> {
    let after = cpu_snapshot(pids);
    let names = pids.iter().map(|(n, _)| n.clone()).chain(["bench".into()]);
    names
        .zip(before.iter().zip(&after))
        .filter_map(|(process, (b, a))| {
            let used = a.as_ref()? - b.as_ref()?;
            Some(ProcessCpu {
                process,
                cpu_secs: used,
                cpu_percent: 100.0 * used / elapsed,
            })
        })
        .collect()
}

/// p50, p95 and p99 of `values` (sorted in place).
pub(crate) fn percentiles(values: &mut [u64]) -> [Option<u64>; 3] {
    values.sort_unstable();
    [50.0, 95.0, 99.0].map(|p: f64| {
        (!values.is_empty())
            .then(|| values[((p / 100.0) * (values.len() - 1) as f64).round() as usize])
    })
}

struct Tracker {
    /// Submission time (µs since start) per transaction index; 0 = not sent yet.
    sent_us: Vec<u64>,
    /// Outcome per index: 0 pending, 1 applied, 2 rejected in execution, 3 refused at admission.
    outcome: Vec<u8>,
    /// The rejection code of each index with outcome 2.
    codes: HashMap<u32, String>,
    /// Indexes applied after a rejected copy.
    reapplied: u64,
    latencies_ms: Vec<u64>,
    last_commit_us: u64,
    /// Transactions applied per block height (at most one entry per committed block).
    per_height: BTreeMap<u64, u64>,
}

/// Offers `txs` at `rate` and measures them.
async fn offer(
    clients: &[Client],
    txs: Vec<SignedTransaction>,
    rate: u64,
    pids: &[(String, u32)],
    progress: bool,
) -> anyhow::Result<StepReport> {
    let total = txs.len();
    let index: HashMap<Digest, u32> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id(), i as u32))
        .collect();
    let tracker = Arc::new(Mutex::new(Tracker {
        sent_us: vec![0; total],
        outcome: vec![0; total],
        codes: HashMap::new(),
        reapplied: 0,
        latencies_ms: Vec::with_capacity(total),
        last_commit_us: 0,
        per_height: BTreeMap::new(),
    }));
    let start = Instant::now();
    let from = clients[0].status().await?.height;
    let reader = tokio::spawn(read_commits(
        clients[0].clone(),
        from,
        index,
        tracker.clone(),
        start,
    ));
    let cpu_before = cpu_snapshot(pids);
    let permits = Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT));
    let txs = Arc::new(txs);
    let mut sent = 0usize;
    let mut ticker = tokio::time::interval(TICK);
    let mut next_node = 0usize;
    let tty = progress && std::io::stdout().is_terminal();
    let mut last_print = Instant::now();
    while sent < total {
        ticker.tick().await;
        let due = ((rate as f64 * start.elapsed().as_secs_f64()) as usize).min(total);
        // One request per validator per tick.
        let n = clients.len();
        let span = due - sent;
        if span == 0 {
            continue;
        }
        let per = span.div_ceil(n);
        let now_us = start.elapsed().as_micros() as u64;
        {
            let mut t = tracker.lock().expect("tracker");
            for i in sent..due {
                t.sent_us[i] = now_us.max(1);
            }
        }
        let mut lo = sent;
        while lo < due {
            let hi = (lo + per).min(due);
            let client = clients[next_node % n].clone();
            next_node = next_node.wrapping_add(1);
            let permit = permits.clone().acquire_owned().await.expect("semaphore");
            let (txs, tracker) = (txs.clone(), tracker.clone());
            tokio::spawn(async move {
                let result = client.submit_bulk(&txs[lo..hi]).await;
                let mut t = tracker.lock().expect("tracker");
                match result {
                    Ok(resp) => {
                        for r in resp.refused.iter().filter(|r| r.index < hi - lo) {
                            if t.outcome[lo + r.index] == 0 {
                                t.outcome[lo + r.index] = 3;
                            }
                        }
                    }
                    Err(_) => {
                        for k in lo..hi {
                            if t.outcome[k] == 0 {
                                t.outcome[k] = 3;
                            }
                        }
                    }
                }
                drop(permit);
            });
            lo = hi;
        }
        sent = due;
        if tty && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let committed = tracker.lock().expect("tracker").latencies_ms.len();
            print!(
                "\r  [{:>3}s] offered {sent}, committed {committed}   ",
                start.elapsed().as_secs()
            );
            let _ = std::io::stdout().flush();
        }
    }
    let offer_secs = start.elapsed().as_secs_f64();
    // Wait for the outcomes of what was offered.
    let drain = Instant::now();
    while drain.elapsed() < DRAIN {
        if tracker
            .lock()
            .expect("tracker")
            .outcome
            .iter()
            .all(|&o| o != 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.abort();
    if tty {
        println!();
    }
    let cpu = cpu_used(pids, &cpu_before, start.elapsed().as_secs_f64());
    let t = tracker.lock().expect("tracker");
    let count = |v: u8| t.outcome.iter().filter(|&&o| o == v).count() as u64;
    let committed = count(1);
    let window = (t.last_commit_us as f64 / 1e6).max(0.001);
    let mut lat = t.latencies_ms.clone();
    let pct = percentiles(&mut lat);
    let cpu_total: f64 = cpu.iter().map(|c| c.cpu_secs).sum();
    let (blocks, txs_per_block_p50, txs_per_block_max) =
        block_sizes(t.per_height.values().copied().collect());
    Ok(StepReport {
        offered_tps: rate,
        offer_secs,
        offered: total as u64,
        refused_at_admission: count(3),
        committed,
        rejected_in_execution: count(2),
        rejected_codes: t.codes.values().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.clone()).or_insert(0) += 1;
            m
        }),
        applied_after_rejection: t.reapplied,
        missing: count(0),
        finalized_tps: committed as f64 / window,
        latency_samples: lat.len() as u64,
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

/// Follows committed transactions on one node and records each one's latency.
async fn read_commits(
    client: Client,
    from_height: u64,
    index: HashMap<Digest, u32>,
    tracker: Arc<Mutex<Tracker>>,
    start: Instant,
) {
    client
        .follow_txs(from_height, |ev| {
            let Some(&i) = index.get(&ev.id) else {
                return;
            };
            let now_us = start.elapsed().as_micros() as u64;
            let mut t = tracker.lock().expect("tracker");
            let i = i as usize;
            // The first outcome counts, except that a copy applied after a rejected one (a
            // nonce that only fit later) did change the state: its receipt says applied.
            match (t.outcome[i], ev.applied) {
                (1, _) | (2, false) => {} // a duplicate copy
                (was, true) => {
                    t.outcome[i] = 1;
                    if was == 2 {
                        t.reapplied += 1;
                    }
                    t.codes.remove(&(i as u32));
                    let sent = t.sent_us[i];
                    t.latencies_ms.push(now_us.saturating_sub(sent) / 1_000);
                    t.last_commit_us = now_us;
                    *t.per_height.entry(ev.height).or_insert(0) += 1;
                }
                (_, false) => {
                    t.outcome[i] = 2;
                    let code = ev.code.unwrap_or_else(|| "unknown".into());
                    t.codes.insert(i as u32, code);
                }
            }
        })
        .await;
}

/// Every chain of a root + service-chain network offered `--rate` at once.
async fn multi_chain(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.target.is_empty() && !args.ramp,
        "--service-chains starts its own network and runs one step (drop --target and --ramp)"
    );
    let mut net = multichain::start(&MultiOptions {
        keep: false,
        dir: args.dir.clone(),
        service_chains: args.service_chains,
        validators: args.validators,
        load_tps: 0,
        duration: None,
        p2p_port: args.p2p_port,
        api_port: args.api_port,
        port_stride: 100,
        anchor_every_blocks: 50,
        accounts: args.accounts,
    })
    .await?;
    let result = multi_chain_steps(&args, &net).await;
    net.stop().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "bench: transfers on a root chain + {} service chains, {} validators each, {} CPUs",
        args.service_chains, report.validators, report.cpus
    );
    for c in &report.chains {
        let s = &c.step;
        let p = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v} ms"));
        println!(
            "  {:<14} offered {:>6} tx/s: finalized {:>7.0} tx/s | latency p50 {} p99 {} | committed {} missing {}",
            c.chain_id,
            s.offered_tps,
            s.finalized_tps,
            p(s.latency_ms_p50),
            p(s.latency_ms_p99),
            s.committed,
            s.missing
        );
    }
    println!(
        "  aggregate: {:.0} finalized tx/s ({:.0} per CPU)",
        report.aggregate_tps, report.aggregate_tps_per_cpu
    );
    Ok(())
}

async fn multi_chain_steps(args: &BenchArgs, net: &MultiNet) -> anyhow::Result<MultiReport> {
    let total = args.rate.max(1) * args.duration.as_secs().max(1);
    anyhow::ensure!(
        total.div_ceil(args.accounts as u64) <= 900,
        "{total} transactions per chain over {} accounts exceeds the per-sender bound: raise --accounts",
        args.accounts
    );
    // Pre-sign every chain's workload first, then offer to all chains at once.
    let mut work = Vec::new();
    for c in &net.chains {
        let chain = c.layout.genesis.chain_id.clone();
        let (keys, mut nonces) = accounts_of(&c.clients[0], &chain, args.accounts).await?;
        let txs = presign(
            &chain,
            &keys,
            &mut nonces,
            total as usize,
            args.tx_size,
            !args.json,
        );
        let pids: Vec<(String, u32)> = c
            .procs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.as_ref()
                    .and_then(|p| p.child.id())
                    .map(|pid| (format!("{chain}/validator-{i}"), pid))
            })
            .collect();
        work.push((chain, c.clients.clone(), txs, pids));
    }
    let runs = work
        .into_iter()
        .map(|(chain, clients, txs, pids)| async move {
            let step = offer(&clients, txs, args.rate.max(1), &pids, false).await?;
            anyhow::Ok(ChainStep {
                chain_id: chain,
                step,
            })
        });
    let chains: Vec<ChainStep> = futures::future::join_all(runs)
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let aggregate_tps: f64 = chains.iter().map(|c| c.step.finalized_tps).sum();
    Ok(MultiReport {
        validators: args.validators,
        cpus,
        chains,
        aggregate_tps,
        aggregate_tps_per_cpu: aggregate_tps / cpus as f64,
    })
}

/// The local-currency workload: the city demo at the given rate, reported like a bench step.
async fn local_currency(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.target.is_empty(),
        "the local-currency workload starts its own network (drop --target)"
    );
    let mut steps = Vec::new();
    let mut rate = args.rate.max(1);
    let mut saturation = None;
    loop {
        let report = demo::run_report(DemoArgs {
            dir: args.dir.clone(),
            validators: args.validators,
            residents: 100_000,
            merchants: 5_000,
            rate,
            duration: Some(args.duration),
            expiry: Duration::from_secs(600),
            chain_id: "city-bench".into(),
            p2p_port: args.p2p_port,
            api_port: args.api_port,
            quiet: args.json,
        })
        .await?;
        // Kept up: (nearly) every submitted operation reached an outcome within the run.
        let outcomes = report.operations + report.refused_by_rule.values().sum::<u64>();
        // and the generator could submit (nearly) what was asked: its accounts were not all
        // waiting on outcomes.
        let kept_up = report.submitted as f64 >= 0.8 * rate as f64 * report.secs
            && outcomes as f64 >= 0.9 * report.submitted as f64;
        if kept_up {
            saturation = Some(report.operations_per_sec);
        }
        steps.push((rate, report));
        if !args.ramp || !kept_up || steps.len() >= 8 {
            break;
        }
        rate += rate / 2;
    }
    if args.json {
        let json: Vec<_> = steps
            .iter()
            .map(|(rate, r)| serde_json::json!({ "offered_ops": rate, "report": r }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "workload": "local-currency",
                "steps": json,
                "saturation_ops": saturation,
            }))?
        );
    } else {
        for (rate, r) in &steps {
            println!(
                "  offered {rate} ops/s: {:.0} payments/s, {:.0} operations/s committed, reconciliation errors {}",
                r.payments_per_sec, r.operations_per_sec, r.reconciliation_errors
            );
        }
    }
    if steps.iter().any(|(_, r)| r.reconciliation_errors > 0) {
        bail!("the books did not reconcile");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_count_blocks_with_transactions() {
        assert_eq!(block_sizes(vec![]), (0, None, None));
        assert_eq!(block_sizes(vec![0, 0]), (0, None, None));
        assert_eq!(block_sizes(vec![5, 0, 1, 9]), (3, Some(5), Some(9)));
        assert_eq!(block_sizes(vec![4, 2, 8, 6]), (4, Some(6), Some(8)));
    }
}
