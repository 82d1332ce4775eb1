//! `netchain testnet --service-chains K`: a root chain and K service chains, each its own set of
//! validator processes on loopback. The root's genesis names a governance of three demo keys
//! (two must approve); every service chain is registered on the root with their approvals, and
//! its validators relay anchors to the root. A live line per chain shows height, finalized TPS
//! and, for service chains, the last height the root has anchored.

use crate::layout::{self, Layout, LayoutParams};
use crate::load::{self, LoadStats};
use crate::procs::{netchaind_path, wait_ready, NodeProcess};
use crate::testnet::{committed_total, statuses};
use anyhow::{bail, Context};
use netchain_api::chains::ChainView;
use netchain_client::Client;
use netchain_config::{AnchoringConfig, NodeConfig, RegistrySource};
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::identity::{IdentityKind, IdentitySpec, NodeRole};
use netchain_types::registry::{
    approval_message, Approval, ChainRole, Governance, RegistryChange, RegistryOp, ServiceChain,
};
use netchain_types::{hash_parts, Block, Payload, Transaction};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The root chain's id in a local multi-chain network.
pub const ROOT_CHAIN: &str = "netchain-root";

/// What to start.
#[derive(Clone, Debug)]
pub struct MultiOptions {
    /// Folder (wiped unless `keep`).
    pub dir: PathBuf,
    /// Restart the network already in `dir` (its chains, keys, data and registrations).
    pub keep: bool,
    /// Service chains.
    pub service_chains: usize,
    /// Validators per chain.
    pub validators: usize,
    /// Offered load per chain, transfers per second.
    pub load_tps: u64,
    /// Run this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    /// First P2P port (chain c uses `p2p_port + port_stride * c`).
    pub p2p_port: u16,
    /// First API port (chain c uses `api_port + port_stride * c`).
    pub api_port: u16,
    /// Port distance between chains.
    pub port_stride: u16,
    /// Anchor every this many blocks.
    pub anchor_every_blocks: u64,
    /// Funded demo accounts per chain.
    pub accounts: usize,
}

/// The demo governance keys of a root chain (public knowledge: local use only).
pub fn demo_governor(root: &str, i: u32) -> Keypair {
    Keypair::from_secret(
        hash_parts(
            "netchain-demo-governor",
            &[root.as_bytes(), &i.to_le_bytes()],
        )
        .0,
    )
}

/// One chain of the network.
pub struct Chain {
    /// `root` or the service chain id.
    pub name: String,
    /// Its files.
    pub layout: Layout,
    /// One client per validator.
    pub clients: Vec<Client>,
    /// Validator processes (None: stopped).
    pub procs: Vec<Option<NodeProcess>>,
    stats: Arc<LoadStats>,
    history: Vec<(Instant, u64)>,
    base_total: u64,
}

impl Chain {
    /// Starts validator `i` (again).
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let log = self.layout.validator_dir(i).join("node.log");
        self.procs[i] = Some(NodeProcess::start(
            &netchaind_path(),
            &self.layout.node_files[i],
            &log,
        )?);
        Ok(())
    }

    /// Kills validator `i` (SIGKILL).
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill().await;
        }
    }
}

/// A running root chain with its service chains (root first).
pub struct MultiNet {
    /// The chains, root first.
    pub chains: Vec<Chain>,
}

impl MultiNet {
    /// The height up to which the root has anchored service chain `chain_id` (None: unknown).
    pub async fn anchored(&self, chain_id: &str) -> Option<u64> {
        anchored_height(&self.chains[0].clients, chain_id).await
    }

    /// Stops every process.
    pub async fn stop(&mut self) {
        for c in &mut self.chains {
            for i in 0..c.procs.len() {
                c.kill(i).await;
            }
        }
    }
}

/// Runs the network; returns whether every chain committed, its validators agree, and every
/// service chain was anchored on the root.
pub async fn run(opts: MultiOptions) -> anyhow::Result<bool> {
    let mut net = start(&opts).await?;
    let result = drive(&opts, &mut net.chains).await;
    net.stop().await;
    result
}

/// Writes the chains (or, with `keep`, loads the ones in the folder), starts every validator, and
/// registers on the root the service chains it does not list yet.
pub async fn start(opts: &MultiOptions) -> anyhow::Result<MultiNet> {
    let governors: Vec<Keypair> = (0..3).map(|i| demo_governor(ROOT_CHAIN, i)).collect();
    let holds_network = opts.dir.join("root").join("genesis.json").exists();
    let layouts = if opts.keep && holds_network {
        load_layouts(opts)?
    } else {
        if opts.dir.exists() {
            if !holds_network && std::fs::read_dir(&opts.dir)?.next().is_some() {
                bail!(
                    "{} exists and is not a netchain multi-chain folder; pick another --dir",
                    opts.dir.display()
                );
            }
            std::fs::remove_dir_all(&opts.dir)
                .with_context(|| format!("removing {}", opts.dir.display()))?;
        }
        write_layouts(opts, &governors)?
    };
    let mut net = MultiNet { chains: Vec::new() };
    for (name, layout) in layouts {
        let n = layout.node_files.len();
        let clients = (0..n).map(|i| Client::new(layout.api_address(i))).collect();
        let mut chain = Chain {
            name,
            layout,
            clients,
            procs: (0..n).map(|_| None).collect(),
            stats: Arc::new(LoadStats::default()),
            history: Vec::new(),
            base_total: 0,
        };
        for i in 0..n {
            if let Err(e) = chain.start_node(i) {
                net.chains.push(chain);
                net.stop().await;
                return Err(e);
            }
        }
        net.chains.push(chain);
    }
    if let Err(e) = register_all(&net, &governors).await {
        net.stop().await;
        return Err(e);
    }
    Ok(net)
}

/// The folder's chains, written fresh: the root (with the demo governance) and the service chains.
fn write_layouts(
    opts: &MultiOptions,
    governors: &[Keypair],
) -> anyhow::Result<Vec<(String, Layout)>> {
    let params = |chain_id: &str, c: usize| LayoutParams {
        chain_id: chain_id.into(),
        validators: opts.validators,
        accounts: opts.accounts,
        balance: 1_000_000_000,
        p2p_base_port: opts.p2p_port + opts.port_stride * c as u16,
        api_base_port: opts.api_port + opts.port_stride * c as u16,
        host: "127.0.0.1".into(),
        // The root keeps the consortium's identity registry; service chains follow it.
        organizations: if c == 0 {
            crate::layout::DEFAULT_ORGANIZATIONS
        } else {
            0
        },
        registered_senders: false,
        batching: true,
        ordering_only: false,
    };
    // The root chain, with its governance.
    let mut root = layout::write(&opts.dir.join("root"), &params(ROOT_CHAIN, 0))?;
    root.genesis.role = ChainRole::Root {
        governance: Governance {
            keys: governors.iter().map(Keypair::public).collect(),
            threshold: 2,
        },
    };
    let root_api: Vec<String> = (0..root.genesis.committee.size())
        .map(|i| root.api_address(i).to_string())
        .collect();
    let mut services = Vec::new();
    for c in 1..=opts.service_chains {
        let id = format!("svc-{c}");
        services.push((
            id.clone(),
            layout::write(&opts.dir.join(&id), &params(&id, c))?,
        ));
    }
    // Network ID: the root's registry lists every service chain's validators too (under the
    // organizations in turn); service nodes follow it.
    if let Some(identity) = root.genesis.identity.as_mut() {
        let n = identity.organizations.len();
        for (id, l) in &services {
            for (v, val) in l.genesis.committee.validators.iter().enumerate() {
                identity.organizations[v % n].identities.push(IdentitySpec {
                    name: format!("{id}-validator-{v}"),
                    key: val.public_key,
                    kind: IdentityKind::Node {
                        role: NodeRole::Validator,
                        chains: vec![id.clone()],
                    },
                    expires_ms: None,
                });
            }
        }
    }
    root.genesis.validate()?;
    root.genesis.save(&root.genesis_file())?;
    let mut layouts = vec![("root".to_string(), root.clone())];
    for (id, mut l) in services {
        l.genesis.role = ChainRole::Service {
            root_chain_id: ROOT_CHAIN.into(),
            root_genesis_hash: root.genesis.hash(),
        };
        l.genesis.validate()?;
        l.genesis.save(&l.genesis_file())?;
        for file in &l.node_files {
            let mut cfg = NodeConfig::load(file)?;
            cfg.anchoring = Some(AnchoringConfig {
                root_api: root_api.clone(),
                every_blocks: opts.anchor_every_blocks,
                every_ms: 10_000,
                interval_ms: 1_000,
            });
            cfg.registry = Some(RegistrySource {
                root_api: root_api.clone(),
                root_genesis_file: PathBuf::from("../../root/genesis.json"),
                interval_ms: 1_000,
            });
            cfg.save(file)?;
        }
        layouts.push((id, l));
    }
    Ok(layouts)
}

/// The chains of a network written before (`--keep`): the root and exactly the service chains
/// asked for.
fn load_layouts(opts: &MultiOptions) -> anyhow::Result<Vec<(String, Layout)>> {
    let mut layouts = vec![("root".to_string(), Layout::load(&opts.dir.join("root"))?)];
    let kept = std::fs::read_dir(&opts.dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("svc-"))
        .count();
    if kept != opts.service_chains {
        bail!(
            "{} holds {kept} service chains; run with --service-chains {kept}, or without --keep \
             to start afresh",
            opts.dir.display()
        );
    }
    for c in 1..=opts.service_chains {
        let id = format!("svc-{c}");
        layouts.push((id.clone(), Layout::load(&opts.dir.join(&id))?));
    }
    Ok(layouts)
}

async fn register_all(net: &MultiNet, governors: &[Keypair]) -> anyhow::Result<()> {
    for c in &net.chains {
        wait_ready(&c.clients, Duration::from_secs(60)).await?;
    }
    let root = &net.chains[0].clients[0];
    let root_hash = net.chains[0].layout.genesis.hash();
    let mut nonce = root.account(&governors[0].public(), false).await?.nonce;
    for c in net.chains.iter().skip(1) {
        let id = &c.layout.genesis.chain_id;
        if anchored_height(&net.chains[0].clients, id).await.is_some() {
            continue; // registered in an earlier run (--keep)
        }
        register(root, &root_hash, governors, &c.layout, nonce).await?;
        nonce += 1;
    }
    Ok(())
}

/// Registers a service chain on the root with governors 0 and 1, and waits for the outcome.
async fn register(
    root: &Client,
    root_hash: &netchain_types::Digest,
    governors: &[Keypair],
    chain: &Layout,
    nonce: u64,
) -> anyhow::Result<()> {
    let genesis_block = Block::genesis(chain.genesis.hash(), chain.genesis.genesis_time_ms);
    let change = RegistryChange::Register(ServiceChain {
        chain_id: chain.genesis.chain_id.clone(),
        purpose: format!("local service chain {}", chain.genesis.chain_id),
        genesis_block_id: genesis_block.id(),
        validators: chain.genesis.committee.validators.clone(),
    });
    let msg = approval_message(ROOT_CHAIN, root_hash, &change);
    let approvals = (0..2)
        .map(|i| Approval {
            governor: i as u16,
            signature: governors[i].sign(&msg),
        })
        .collect();
    let submitter = &governors[0];
    let tx = sign_transaction(
        submitter,
        Transaction {
            chain_id: ROOT_CHAIN.into(),
            sender: submitter.public(),
            nonce,
            payload: Payload::Registry(RegistryOp::Change { change, approvals }),
        },
    );
    let id = root.submit(&tx).await?.tx_id;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(s) = root.tx_status(&id).await? {
            match s.status.as_str() {
                "committed" => return Ok(()),
                "rejected" => bail!(
                    "registering {} was refused: {:?}",
                    chain.genesis.chain_id,
                    s.code
                ),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "registering {} did not commit in 30 s",
        chain.genesis.chain_id
    )
}

async fn anchored_height(root: &[Client], chain_id: &str) -> Option<u64> {
    for c in root {
        if let Ok(v) = c
            .get_typed::<ChainView>(&format!("/v1/chains/{chain_id}"))
            .await
        {
            return Some(v.record.last_anchor.map_or(0, |a| a.height));
        }
    }
    None
}

async fn drive(opts: &MultiOptions, chains: &mut [Chain]) -> anyhow::Result<bool> {
    println!(
        "netchain testnet: root chain + {} service chains, {} validators each, data in {}",
        chains.len() - 1,
        opts.validators,
        opts.dir.display()
    );
    for c in chains.iter() {
        println!(
            "  {:<14} api http://{} (explorer at that address)",
            c.layout.genesis.chain_id,
            c.clients[0].base().trim_start_matches("http://")
        );
    }
    let root_clients = chains[0].clients.clone();
    println!(
        "  {} service chains registered on the root (governance: 2 of 3 approvals)",
        chains.len() - 1
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut loads = Vec::new();
    for c in chains.iter_mut() {
        c.base_total = committed_total(&c.clients).await;
        if opts.load_tps > 0 {
            loads.push(tokio::spawn(load::run(
                c.clients.clone(),
                c.layout.genesis.chain_id.clone(),
                c.layout.genesis.accounts.len(),
                opts.load_tps,
                stop.clone(),
                c.stats.clone(),
            )));
        }
    }
    let start = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => { println!(); break; }
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let mut parts = Vec::new();
        for c in chains.iter_mut() {
            let st = statuses(&c.clients).await;
            let up: Vec<_> = st.iter().flatten().collect();
            let total = up.iter().map(|s| s.committed_txs_total).max().unwrap_or(0);
            let height = up.iter().map(|s| s.height).max().unwrap_or(0);
            let now = Instant::now();
            c.history.push((now, total));
            c.history
                .retain(|(t, _)| now.duration_since(*t) <= Duration::from_secs(5));
            let tps = match (c.history.first(), c.history.last()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
                _ => 0.0,
            };
            let anchored = if c.name == "root" {
                String::new()
            } else {
                anchored_height(&root_clients, &c.layout.genesis.chain_id)
                    .await
                    .map_or(" anchored -".into(), |h| format!(" anchored {h}"))
            };
            parts.push(format!(
                "{} h{height} {tps:.0}/s{anchored} up {}/{}",
                c.name,
                up.len(),
                c.clients.len()
            ));
        }
        let line = format!("[{:>4}s] {}", start.elapsed().as_secs(), parts.join(" | "));
        if tty {
            print!("\r{line:<160}");
            let _ = std::io::stdout().flush();
        } else if start.elapsed().as_secs().is_multiple_of(5) {
            println!("{line}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        let _ = l.await;
    }
    if tty {
        println!();
    }
    let elapsed = start.elapsed().as_secs_f64().max(0.001);
    // Throughput counts what committed while the load ran; the drain's commits are shown apart.
    let mut in_window = Vec::with_capacity(chains.len());
    for c in chains.iter() {
        let total = committed_total(&c.clients).await;
        in_window.push(total.saturating_sub(c.base_total));
    }
    // Let the pools drain and the last checkpoints reach the root.
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(15) {
        let mut empty = true;
        for c in chains.iter() {
            empty &= statuses(&c.clients)
                .await
                .iter()
                .flatten()
                .all(|s| s.mempool_size == 0);
        }
        if empty {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("summary ({elapsed:.1} s)");
    let mut ok = true;
    let mut aggregate = 0.0;
    for (c, in_window) in chains.iter().zip(in_window) {
        let st = statuses(&c.clients).await;
        let up: Vec<_> = st.iter().flatten().collect();
        let committed = up
            .iter()
            .map(|s| s.committed_txs_total)
            .max()
            .unwrap_or(0)
            .saturating_sub(c.base_total);
        let height = up.iter().map(|s| s.height).min().unwrap_or(0);
        let mut roots = Vec::new();
        for client in &c.clients {
            if let Ok(Some(b)) = client.block(height).await {
                roots.push((b.id, b.state_root));
            }
        }
        let agree = !roots.is_empty() && roots.iter().all(|r| *r == roots[0]);
        let tps = in_window as f64 / elapsed;
        aggregate += tps;
        let anchored = if c.name == "root" {
            None
        } else {
            anchored_height(&root_clients, &c.layout.genesis.chain_id).await
        };
        println!(
            "  {:<14} {in_window:>8} committed while the load ran ({tps:>6.0} tx/s; {committed} after the drain), height {height}, {}/{} validators agree on the state root{}",
            c.layout.genesis.chain_id,
            roots.iter().filter(|r| **r == roots[0]).count(),
            c.clients.len(),
            anchored.map_or(String::new(), |h| format!(", anchored on the root up to height {h}"))
        );
        ok &= agree && (opts.load_tps == 0 || committed > 0);
        if c.name != "root" {
            ok &= anchored.is_some_and(|h| h > 0);
        }
    }
    println!(
        "  aggregate: {aggregate:.0} tx/s over {} chains on {} cores ({:.0} tx/s per core)",
        chains.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        aggregate / std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
    );
    Ok(ok)
}
