//! A validator: wiring of the consensus core, mempool, executor, storage and transport.
//!
//! Design note: wiring only. One task owns the consensus [`Core`] and feeds it peer messages and
//! 10 ms ticks; it performs the core's actions in order (safety data is fsynced before the vote it
//! protects leaves the node) and serves block-sync requests from the block store. Committed blocks
//! go through a bounded channel to the execution thread, which executes, writes block + state +
//! receipts in one synced batch, signs the checkpoint, and tells the mempool. The API reads only
//! what execution has written ([`Shared`]).

mod admission;
mod batch_task;
mod consensus_task;
mod execution_task;
mod metrics;

pub use metrics::Metrics;

use anyhow::{bail, Context};
use netchain_config::{Genesis, NodeConfig};
use netchain_consensus::{Core, CoreConfig, SafetyData};
use netchain_crypto::{KeyFile, Keypair};
use netchain_execution::Executor;
use netchain_mempool::{Mempool, MempoolConfig, QuorumStore, QuorumStoreConfig};
use netchain_network::{Admission, Inbound, Network, NetworkConfig, NetworkStats};
use netchain_storage::{ChainStore, ChainTip, FjallBackend, WriteBatch};
use netchain_types::identity::NodeRole;
use netchain_types::{Block, Committee, ConsensusMessage, Digest, QuorumCert, ValidatorIndex};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

pub use admission::{AdmitError, VerifiedCache};

/// The backend a node runs on.
pub type Backend = FjallBackend;

/// Live figures of a node.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    /// Height of the last executed block.
    pub height: u64,
    /// Its id.
    pub block_id: Digest,
    /// State root after it.
    pub state_root: Digest,
    /// Current consensus round.
    pub round: u64,
    /// Transactions applied since genesis.
    pub committed_txs_total: u64,
    /// Proposer timestamp of the last executed block.
    pub last_block_time_ms: u64,
    /// When this node executed it.
    pub last_commit_time_ms: u64,
    /// Time from the block's proposal to its execution here.
    pub last_commit_latency_ms: u64,
    /// Height of the newest certified checkpoint.
    pub certified_height: u64,
}

/// State shared with the API.
pub struct Shared {
    /// Chain id.
    pub chain_id: String,
    /// Genesis.
    pub genesis: Genesis,
    /// This validator.
    pub me: ValidatorIndex,
    /// Block store.
    pub store: ChainStore<Backend>,
    /// Executor (account reads and proofs).
    pub executor: Executor<Backend>,
    /// Mempool.
    pub mempool: Mutex<Mempool>,
    /// Batched dissemination (`[consensus] batching`): the batches, acknowledgements and proofs
    /// of availability. Lock order: the quorum store before the mempool.
    pub quorum_store: Option<Mutex<QuorumStore>>,
    /// Whether this node makes batches and proposes proofs (`[consensus] batching`); without,
    /// it gossips its clients' transactions and proposes them in blocks.
    pub batching: bool,
    /// Live figures.
    pub status: RwLock<NodeStatus>,
    /// Transport counters.
    pub network: Arc<NetworkStats>,
    /// Largest accepted transaction in bytes.
    pub tx_bytes_max: usize,
    /// Most transactions in one submit request.
    pub submit_batch_max: usize,
    /// Admitted client transactions on their way to the peers.
    tx_gossip: mpsc::Sender<netchain_types::SignedTransaction>,
    /// Metrics.
    pub metrics: Metrics,
    /// Transaction signatures this node has checked (execution skips them).
    pub verified: admission::VerifiedCache,
    /// Height of the last executed block, for event-stream subscribers to wait on.
    pub executed: tokio::sync::watch::Sender<u64>,
    /// The identity registry accepts transactions only from registered senders (fixed at
    /// genesis); admission refuses others up front.
    pub registered_senders: bool,
    /// Client access to the API (sessions, read policy, per-identity rates).
    pub access: netchain_config::AccessConfig,
    /// Ordering-only chain (genesis `ordering_only`): transactions are admitted without
    /// signature or nonce checks, batched, ordered and stored, never executed.
    pub ordering_only: bool,
}

impl Shared {
    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.genesis.committee
    }

    /// A snapshot of the live figures.
    pub fn status(&self) -> NodeStatus {
        self.status.read().expect("status lock").clone()
    }
}

/// Milliseconds since the Unix epoch (the node's clock; the core gets it as an input).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes the genesis state and block into an empty store, or checks that the store belongs to
/// this genesis.
fn init_or_check_genesis(
    store: &ChainStore<Backend>,
    executor: &Executor<Backend>,
    genesis: &Genesis,
) -> anyhow::Result<()> {
    let hash = genesis.hash();
    match store.genesis_hash()? {
        Some(h) if h == hash => return Ok(()),
        Some(h) => bail!("data directory holds chain with genesis {h}, config has genesis {hash}"),
        None => {}
    }
    let accounts: Vec<_> = genesis
        .accounts
        .iter()
        .map(|a| (a.public_key, a.balance))
        .collect();
    let root = match &genesis.role {
        netchain_types::registry::ChainRole::Root { governance } => Some((governance, hash)),
        _ => None,
    };
    let (state_root, mut batch) =
        executor.genesis_with(&accounts, root, genesis.identity.as_ref())?;
    let block = Block::genesis(hash, genesis.genesis_time_ms);
    let tip = ChainTip {
        qc: QuorumCert::genesis(block.id()),
        block,
        state_root,
        total_txs: 0,
    };
    let mut meta = WriteBatch::new();
    ChainStore::<Backend>::put_block(&mut meta, &tip.block);
    ChainStore::<Backend>::put_tip(&mut meta, &tip);
    ChainStore::<Backend>::put_genesis_hash(&mut meta, &hash);
    batch.extend(meta);
    store.commit(batch)?;
    Ok(())
}

/// Commits (each one or more blocks) waiting for execution at most. When execution falls behind,
/// consensus waits on this queue: the chain then runs at execution's pace instead of committing
/// ahead of it. At 1,000 a node under overload held ~20 s of committed blocks in memory (RSS
/// 150 → 487 MB in 90 s, block latency 21 s); 32 keeps it to well under a second of blocks.
const EXECUTION_QUEUE_COMMITS: usize = 32;

/// Transaction signatures remembered as verified (32 bytes each, twice).
const VERIFIED_CACHE_ENTRIES: usize = 500_000;

/// Most uncommitted blocks walked back on restart.
const RECOVER_BLOCKS_MAX: usize = 10_000;

/// Most acknowledged batches read back at a restart (the per-author quotas keep far fewer).
const PENDING_BATCHES_RESTORED_MAX: usize = 100_000;

/// The stored uncommitted blocks from the committed tip up to the block of the highest QC the
/// safety data recorded, oldest first (empty if the chain is incomplete).
fn recover_uncommitted(
    store: &ChainStore<Backend>,
    tip: &ChainTip,
    safety: &SafetyData,
) -> anyhow::Result<Vec<Block>> {
    let Some(qc) = &safety.one_chain_qc else {
        return Ok(Vec::new());
    };
    let tip_id = tip.block.id();
    let mut chain = Vec::new();
    let mut cursor = qc.block_id;
    while cursor != tip_id && chain.len() < RECOVER_BLOCKS_MAX {
        match store.block(&cursor)? {
            Some(block) if block.height > tip.block.height => {
                cursor = block.parent_id;
                chain.push(block);
            }
            _ => return Ok(Vec::new()),
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Network ID: on a chain that keeps an identity registry, peers are admitted only while the
/// registry (as of this node's newest executed block) lists their key as an active validator
/// node of this chain; the policy is asked again after every executed block, so a revocation
/// closes the revoked key's connections within one block. None on chains without a registry.
fn registry_admission(
    genesis: &Genesis,
    backend: &Arc<Backend>,
    executed: &tokio::sync::watch::Sender<u64>,
    keypair: &Keypair,
) -> anyhow::Result<Option<Admission>> {
    if genesis.identity.is_none() {
        return Ok(None);
    }
    let reader = Executor::new(genesis.chain_id.clone(), backend.clone());
    let heights = executed.subscribe();
    let chain = genesis.chain_id.clone();
    let admits = move |key: &netchain_types::PublicKey| {
        let height = *heights.borrow();
        match reader.identity_standing(key, height, now_ms()) {
            Ok(s) => s.admits_node(&chain, NodeRole::Validator),
            Err(e) => {
                tracing::warn!(error = %e, "reading the identity registry failed; peer refused");
                false
            }
        }
    };
    if !admits(&keypair.public()) {
        tracing::warn!(
            key = %keypair.public(),
            "this node's key is not an active validator in the identity registry; peers will \
             refuse it"
        );
    }
    Ok(Some(Admission {
        admits: Arc::new(admits),
        changes: executed.subscribe(),
    }))
}

/// A running validator.
pub struct Node {
    /// State shared with the API.
    pub shared: Arc<Shared>,
}

impl Node {
    /// Opens storage, restores the consensus state, connects to peers and starts the tasks.
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Self> {
        Self::start_with(cfg, None).await
    }

    /// [`Node::start`] with an admission policy from outside (a service chain following the
    /// root's identity registry); a chain with its own registry uses that instead.
    pub async fn start_with(
        cfg: NodeConfig,
        external_admission: Option<Admission>,
    ) -> anyhow::Result<Self> {
        let genesis = Genesis::load(&cfg.genesis_file)?;
        if genesis.ordering_only && !cfg.consensus.batching {
            bail!(
                "this chain is ordering-only (genesis ordering_only): it needs [consensus] \
                 batching = true, since only batches carry unchecked transactions"
            );
        }
        let keypair: Keypair = KeyFile::load(&cfg.key_file)?;
        let me = genesis
            .committee
            .index_of(&keypair.public())
            .with_context(|| format!("key {} is not in the committee", keypair.public()))?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let backend = Arc::new(
            FjallBackend::open(&cfg.data_dir.join("db"))
                .with_context(|| format!("opening store in {}", cfg.data_dir.display()))?,
        );
        let store = ChainStore::new(backend.clone());
        let executor = Executor::new(genesis.chain_id.clone(), backend.clone());
        init_or_check_genesis(&store, &executor, &genesis)?;
        let tip = store.tip()?.context("store has no tip after genesis")?;
        let safety: SafetyData = match store.safety()? {
            Some(bytes) => borsh::from_slice(&bytes).context("decoding safety data")?,
            None => SafetyData::default(),
        };
        let genesis_id = Block::genesis(genesis.hash(), genesis.genesis_time_ms).id();
        let validator = &genesis.committee.validators[me as usize];
        let p = &cfg.consensus;
        let core_cfg = CoreConfig {
            round_timeout_ms: p.round_timeout_ms,
            max_round_timeout_ms: p.max_round_timeout_ms,
            empty_block_interval_ms: p.empty_block_interval_ms,
            min_block_interval_ms: p.min_block_interval_ms,
            backlog_block_interval_ms: p.backlog_block_interval(),
            block_max_txs: p.block_max_txs,
            block_max_bytes: p.block_max_bytes,
            block_max_batches: p.block_max_batches,
            ..CoreConfig::new(genesis.chain_id.clone(), genesis.committee.clone(), me)
        };
        let recovered = recover_uncommitted(&store, &tip, &safety)?;
        let mut core = Core::new(
            core_cfg,
            keypair.clone(),
            genesis_id,
            tip.block.clone(),
            tip.qc.clone(),
            safety,
            now_ms(),
        );
        let n = core.recover(recovered);
        tracing::info!(
            height = tip.block.height,
            recovered_blocks = n,
            round = core.round(),
            "consensus state restored"
        );
        let (tx_inbound, rx_inbound) = mpsc::channel::<Inbound<ConsensusMessage>>(1_000);
        // Peers' messages go to the quorum-store task first (see `batch_task`).
        let (tx_network, rx_network) = mpsc::channel::<Inbound<ConsensusMessage>>(1_000);
        let (executed, _) = tokio::sync::watch::channel(tip.block.height);
        if cfg.access.reads == netchain_config::ReadAccess::Registered && genesis.identity.is_none()
        {
            bail!(
                "[access] reads = \"registered\" needs an identity registry on this chain; this \
                 chain keeps none (service chains follow the root's for peers only)"
            );
        }
        let admission = match registry_admission(&genesis, &backend, &executed, &keypair)? {
            Some(own) => Some(own),
            None => external_admission,
        };
        let network = Network::start(
            NetworkConfig {
                chain_id: genesis.chain_id.clone(),
                committee: genesis.committee.clone(),
                me,
                listen_address: cfg
                    .p2p_listen
                    .clone()
                    .unwrap_or_else(|| validator.p2p_address.clone()),
                frame_bytes_max: cfg.frame_bytes_max,
                peer_queue_max: 10_000,
                peer_queue_bytes_max: 4 * cfg.frame_bytes_max,
                handshake_timeout_ms: 3_000,
                inbound_bytes_max: 4 * cfg.frame_bytes_max,
                admission,
            },
            keypair.clone(),
            tx_network,
        )
        .await
        .context("starting p2p transport")?;
        let status = NodeStatus {
            height: tip.block.height,
            block_id: tip.block.id(),
            state_root: tip.state_root,
            committed_txs_total: tip.total_txs,
            last_block_time_ms: tip.block.timestamp_ms,
            certified_height: store
                .latest_checkpoint()?
                .map(|c| c.checkpoint.height)
                .unwrap_or(0),
            ..NodeStatus::default()
        };
        let (tx_gossip, rx_gossip) = mpsc::channel(100_000);
        let (tx_ingest, rx_ingest) = mpsc::channel(64);
        let metrics = Metrics::default();
        metrics.height.set(tip.block.height as i64);
        let registered_senders = executor.requires_registered_senders(tip.block.height)?;
        // Every node keeps a quorum store, also with `batching = false`: it then makes no batches
        // and proposes transactions, but still acknowledges, serves and fetches peers' batches,
        // so blocks from batching leaders execute here too.
        let quorum_store = {
            let mut qs = QuorumStore::new(
                QuorumStoreConfig {
                    batch_max_txs: p.batch_max_txs,
                    batch_max_bytes: p.batch_max_bytes,
                    tx_bytes_max: cfg.mempool.tx_bytes_max,
                    batch_ttl_ms: p.batch_ttl_ms,
                    checked_and_ordered: !genesis.ordering_only,
                    ..QuorumStoreConfig::default()
                },
                genesis.chain_id.clone(),
                genesis.committee.clone(),
                me,
                keypair.clone(),
            );
            // Batches acknowledged before a restart are still promised.
            let pending = store.pending_batches(PENDING_BATCHES_RESTORED_MAX)?;
            let restored = pending.len();
            let refused = qs.restore(tip.block.timestamp_ms, pending);
            qs.executed_through(tip.block.height);
            if !refused.is_empty() {
                let mut wb = WriteBatch::new();
                for info in &refused {
                    store.drop_pending_batch(&mut wb, info)?;
                }
                store.commit(wb)?;
            }
            tracing::info!(
                restored,
                dropped = refused.len(),
                "acknowledged batches restored"
            );
            Some(Mutex::new(qs))
        };
        let shared = Arc::new(Shared {
            ordering_only: genesis.ordering_only,
            quorum_store,
            batching: p.batching,
            registered_senders,
            access: cfg.access.clone(),
            verified: admission::VerifiedCache::new(VERIFIED_CACHE_ENTRIES),
            tx_gossip,
            metrics,
            executed,
            chain_id: genesis.chain_id.clone(),
            me,
            store,
            executor,
            mempool: Mutex::new(Mempool::at_height(
                MempoolConfig {
                    txs_max: cfg.mempool.txs_max,
                    ..MempoolConfig::default()
                },
                tip.block.height,
            )),
            status: RwLock::new(status),
            network: network.stats().clone(),
            tx_bytes_max: cfg.mempool.tx_bytes_max,
            submit_batch_max: cfg.mempool.submit_batch_max,
            genesis,
        });
        admission::spawn_gossip(network.clone(), rx_gossip);
        admission::spawn_ingest(shared.clone(), rx_ingest);
        batch_task::spawn(
            shared.clone(),
            network.clone(),
            rx_network,
            tx_inbound.clone(),
            cfg.frame_bytes_max,
        );
        let (tx_commit, rx_commit) = mpsc::channel(EXECUTION_QUEUE_COMMITS);
        execution_task::spawn(
            shared.clone(),
            keypair,
            tip,
            rx_commit,
            tx_inbound,
            network.clone(),
        );
        consensus_task::spawn(
            shared.clone(),
            core,
            network,
            rx_inbound,
            tx_commit,
            tx_ingest,
            cfg.frame_bytes_max,
        );
        Ok(Self { shared })
    }
}
