//! Genesis and node configuration, with validation that names what is wrong.
//!
//! Design note: the genesis file (JSON) is shared by every node of a chain and hashed into the
//! genesis block, so two nodes with different genesis files can never agree on a block. The node
//! file (TOML) is per node: where its key, genesis and data live, and its tunables, every one with
//! its unit in the name.

use netchain_types::identity::IdentityGenesis;
use netchain_types::registry::ChainRole;
use netchain_types::{hash_parts, Committee, Digest, PublicKey, CHAIN_ID_MAX_BYTES};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// File.
        path: String,
        /// Reason.
        reason: String,
    },
    /// The file does not parse.
    #[error("{path}: parse error: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Reason.
        reason: String,
    },
    /// A value breaks a rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Rule broken.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A funded account at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// Account key.
    pub public_key: PublicKey,
    /// Initial balance.
    pub balance: u64,
}

/// The genesis of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id.
    pub chain_id: String,
    /// Genesis block timestamp.
    pub genesis_time_ms: u64,
    /// Validators.
    pub committee: Committee,
    /// Funded accounts.
    pub accounts: Vec<GenesisAccount>,
    /// Root chain (with its registry's governance), service chain of a root, or standalone.
    #[serde(default, skip_serializing_if = "ChainRole::is_standalone")]
    pub role: ChainRole,
    /// The identity registry (Network ID) this chain keeps, with its founding organizations;
    /// when present, peers are admitted only while the registry lists their keys as active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityGenesis>,
    /// Ordering-only chain (the benchmark's component mode, docs/BENCHMARKS.md): validators
    /// disseminate, order and persist transactions but neither check their signatures or nonces
    /// nor execute them; the state stays the genesis state. Needs batching.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordering_only: bool,
}

impl Genesis {
    /// Checks the rules: chain id form, committee size and distinct keys, supply within u64.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.chain_id.is_empty() || self.chain_id.len() > CHAIN_ID_MAX_BYTES {
            return Err(invalid(
                "chain_id",
                format!("must be 1..={CHAIN_ID_MAX_BYTES} bytes"),
            ));
        }
        if !self
            .chain_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("chain_id", "use a-z, 0-9 and '-'"));
        }
        let n = self.committee.size();
        if n == 0 || n > 256 {
            return Err(invalid(
                "committee",
                format!("{n} validators; need 1..=256"),
            ));
        }
        let mut keys: Vec<_> = self
            .committee
            .validators
            .iter()
            .map(|v| v.public_key)
            .collect();
        keys.sort();
        keys.dedup();
        if keys.len() != n {
            return Err(invalid("committee", "duplicate validator key"));
        }
        match &self.role {
            ChainRole::Standalone => {}
            ChainRole::Root { governance } => {
                governance
                    .validate()
                    .map_err(|e| invalid("role.governance", e))?;
            }
            ChainRole::Service { root_chain_id, .. } => {
                if root_chain_id == &self.chain_id || root_chain_id.is_empty() {
                    return Err(invalid(
                        "role.root_chain_id",
                        "must name another chain (the root)",
                    ));
                }
            }
        }
        if let Some(id) = &self.identity {
            id.validate().map_err(|e| invalid("identity", e))?;
        }
        let mut supply: u64 = 0;
        for a in &self.accounts {
            supply = supply
                .checked_add(a.balance)
                .ok_or_else(|| invalid("accounts", "total supply exceeds u64"))?;
        }
        Ok(())
    }

    /// Total supply.
    pub fn supply(&self) -> u64 {
        self.accounts.iter().map(|a| a.balance).sum()
    }

    /// Hash of the canonical JSON form; goes into the genesis block.
    pub fn hash(&self) -> Digest {
        let json = serde_json::to_vec(self).expect("genesis serializes");
        hash_parts("netchain/genesis/v1", &[&json])
    }

    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let genesis: Self = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Writes the genesis file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write(
            path,
            &serde_json::to_string_pretty(self).expect("genesis serializes"),
        )
    }
}

/// Consensus tunables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusParams {
    /// Base round timeout.
    pub round_timeout_ms: u64,
    /// Cap on the backed-off round timeout.
    pub max_round_timeout_ms: u64,
    /// Idle leaders wait this long before an empty block.
    pub empty_block_interval_ms: u64,
    /// A leader proposes this long after entering its round at the earliest, so blocks gather
    /// more batches: fewer, larger blocks cost less per transaction (every block costs a round
    /// of votes, a safety-data sync and a synced block write on each validator) at up to this
    /// much more latency per round. 0: propose at once.
    pub min_block_interval_ms: u64,
    /// Batch mode: a leader whose own execution is behind (2 or more committed blocks not
    /// executed yet) proposes this long after entering its round at the earliest: under load,
    /// blocks then gather more batches and execution catches up (each block costs a state-tree
    /// commit and a synced write), while an idle network still proposes at once. 0: never wait
    /// for it. Capped at a quarter of `round_timeout_ms` (see
    /// [`ConsensusParams::backlog_block_interval`]), so a short round timeout with the default
    /// here still loads.
    pub backlog_block_interval_ms: u64,
    /// Most transactions per block.
    pub block_max_txs: usize,
    /// Most bytes per block.
    pub block_max_bytes: usize,
    /// Batched dissemination: client transactions travel in batches with proofs of
    /// availability, and blocks order the proofs. Off: transactions are gossiped and blocks
    /// carry them.
    pub batching: bool,
    /// Most transactions per batch.
    pub batch_max_txs: usize,
    /// Most bytes per batch.
    pub batch_max_bytes: usize,
    /// How long a batch may wait to be ordered before it expires (its transactions are then
    /// batched again).
    pub batch_ttl_ms: u64,
    /// Most batches per block.
    pub block_max_batches: usize,
}

impl ConsensusParams {
    /// `backlog_block_interval_ms` within a quarter of the round timeout (a leader that waits
    /// longer would time its own round out).
    pub fn backlog_block_interval(&self) -> u64 {
        self.backlog_block_interval_ms
            .min(self.round_timeout_ms / 4)
    }
}

impl Default for ConsensusParams {
    fn default() -> Self {
        Self {
            round_timeout_ms: 1_000,
            max_round_timeout_ms: 10_000,
            empty_block_interval_ms: 200,
            min_block_interval_ms: 0,
            backlog_block_interval_ms: 150,
            block_max_txs: 5_000,
            block_max_bytes: 4 << 20,
            batching: true,
            batch_max_txs: 2_000,
            batch_max_bytes: 1 << 20,
            batch_ttl_ms: 30_000,
            block_max_batches: 64,
        }
    }
}

/// Mempool and API tunables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolParams {
    /// Most transactions held.
    pub txs_max: usize,
    /// Most transactions accepted in one batch request.
    pub submit_batch_max: usize,
    /// Largest accepted transaction.
    pub tx_bytes_max: usize,
}

impl Default for MempoolParams {
    fn default() -> Self {
        Self {
            txs_max: 200_000,
            submit_batch_max: 10_000,
            tx_bytes_max: 4_096,
        }
    }
}

/// One node's configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where blocks and state live.
    pub data_dir: PathBuf,
    /// The validator key file.
    pub key_file: PathBuf,
    /// The chain's genesis file.
    pub genesis_file: PathBuf,
    /// P2P listen address; defaults to this validator's committee address.
    #[serde(default)]
    pub p2p_listen: Option<String>,
    /// API listen address; defaults to this validator's committee API address.
    #[serde(default)]
    pub api_listen: Option<String>,
    /// Largest peer frame.
    #[serde(default = "default_frame_bytes_max")]
    pub frame_bytes_max: usize,
    /// Consensus tunables.
    #[serde(default)]
    pub consensus: ConsensusParams,
    /// Mempool tunables.
    #[serde(default)]
    pub mempool: MempoolParams,
    /// On a service chain: where and how often to anchor to the root chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchoring: Option<AnchoringConfig>,
    /// Client access: reads open or for registered clients, per-identity rates.
    #[serde(default)]
    pub access: AccessConfig,
    /// Network ID on a chain that keeps no registry (a service chain): follow the root chain's
    /// registry and admit peers by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySource>,
}

/// Where a service chain's node reads the identity registry: the root chain's API, with every
/// answer's proof checked against the root committee in the root's genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    /// API addresses of root-chain nodes (tried in turn).
    pub root_api: Vec<String>,
    /// The root chain's genesis file (its committee keys check the proofs; its hash must be the
    /// one this chain's genesis names).
    pub root_genesis_file: PathBuf,
    /// How often to read the registry, in milliseconds.
    #[serde(default = "default_registry_interval_ms")]
    pub interval_ms: u64,
}

fn default_registry_interval_ms() -> u64 {
    1_000
}

/// Who may read from this node's API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadAccess {
    /// Anyone.
    #[default]
    Open,
    /// Registered clients with a session opened by a one-time token.
    Registered,
}

/// Client access to the API (Network ID).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// `open` or `registered`.
    #[serde(default)]
    pub reads: ReadAccess,
    /// Requests per second one client's sessions may make (bursts of twice that); 0: no limit.
    #[serde(default = "default_client_requests_per_sec")]
    pub client_requests_per_sec: u32,
    /// Transactions per second one sender may submit here (bursts of twice that); 0: no limit.
    #[serde(default = "default_sender_txs_per_sec")]
    pub sender_txs_per_sec: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            reads: ReadAccess::Open,
            client_requests_per_sec: default_client_requests_per_sec(),
            sender_txs_per_sec: default_sender_txs_per_sec(),
        }
    }
}

fn default_client_requests_per_sec() -> u32 {
    100
}

fn default_sender_txs_per_sec() -> u32 {
    1_000
}

/// How a service-chain validator relays anchors to its root chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchoringConfig {
    /// API addresses of root-chain nodes (tried in turn).
    pub root_api: Vec<String>,
    /// Anchor when the chain is this many blocks past its last anchor.
    #[serde(default = "default_anchor_every_blocks")]
    pub every_blocks: u64,
    /// Anchor a newer certified checkpoint once it has waited this long, in milliseconds, even
    /// when fewer than `every_blocks` blocks came after the last anchor (a quiet chain).
    #[serde(default = "default_anchor_every_ms")]
    pub every_ms: u64,
    /// How often to look, in milliseconds.
    #[serde(default = "default_anchor_interval_ms")]
    pub interval_ms: u64,
}

fn default_anchor_every_ms() -> u64 {
    10_000
}

fn default_anchor_every_blocks() -> u64 {
    50
}

fn default_anchor_interval_ms() -> u64 {
    1_000
}

fn default_frame_bytes_max() -> usize {
    16 << 20
}

impl NodeConfig {
    /// Reads and validates a node file; relative paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data_dir, &mut cfg.key_file, &mut cfg.genesis_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(r) = cfg.registry.as_mut() {
            if r.root_genesis_file.is_relative() {
                r.root_genesis_file = base.join(&r.root_genesis_file);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the tunables.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.consensus;
        if c.round_timeout_ms < 50 || c.round_timeout_ms > c.max_round_timeout_ms {
            return Err(invalid(
                "consensus.round_timeout_ms",
                "must be >= 50 and <= max_round_timeout_ms",
            ));
        }
        if c.empty_block_interval_ms >= c.round_timeout_ms {
            return Err(invalid(
                "consensus.empty_block_interval_ms",
                "must be below round_timeout_ms",
            ));
        }
        if c.block_max_txs == 0 || c.block_max_bytes < 64 << 10 {
            return Err(invalid(
                "consensus.block_max_*",
                "block_max_txs >= 1, block_max_bytes >= 65536",
            ));
        }
        if c.batch_max_txs == 0
            || c.batch_max_bytes < 64 << 10
            || c.block_max_batches == 0
            || c.batch_ttl_ms < 1_000
        {
            return Err(invalid(
                "consensus.batch_*",
                "batch_max_txs >= 1, batch_max_bytes >= 65536, block_max_batches >= 1, \
                 batch_ttl_ms >= 1000",
            ));
        }
        if c.min_block_interval_ms.saturating_mul(4) > c.round_timeout_ms {
            return Err(invalid(
                "consensus.min_block_interval_ms",
                "at most a quarter of round_timeout_ms (a leader that waits longer times out)",
            ));
        }
        if self.mempool.tx_bytes_max + 1_024 > c.batch_max_bytes {
            return Err(invalid(
                "consensus.batch_max_bytes",
                "must exceed mempool.tx_bytes_max by 1 KiB (a batch holds at least one)",
            ));
        }
        if self.frame_bytes_max < c.block_max_bytes.max(c.batch_max_bytes) + (64 << 10) {
            return Err(invalid(
                "frame_bytes_max",
                "must exceed block_max_bytes and batch_max_bytes by 64 KiB",
            ));
        }
        if self.mempool.txs_max == 0 || self.mempool.submit_batch_max == 0 {
            return Err(invalid("mempool", "bounds must be positive"));
        }
        if let Some(r) = &self.registry {
            if r.root_api.is_empty() || r.interval_ms < 100 {
                return Err(invalid(
                    "registry",
                    "root_api must list a node, interval_ms >= 100",
                ));
            }
        }
        if let Some(a) = &self.anchoring {
            if a.root_api.is_empty()
                || a.every_blocks == 0
                || a.interval_ms < 100
                || a.every_ms < a.interval_ms
            {
                return Err(invalid(
                    "anchoring",
                    "root_api must list a node, every_blocks >= 1, interval_ms >= 100, \
                     every_ms >= interval_ms",
                ));
            }
        }
        Ok(())
    }

    /// Writes the node file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write(
            path,
            &toml::to_string_pretty(self).expect("config serializes"),
        )
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), ConfigError> {
    std::fs::write(path, text).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netchain_types::Validator;

    fn genesis() -> Genesis {
        Genesis {
            chain_id: "local-1".into(),
            genesis_time_ms: 1,
            committee: Committee {
                validators: (0..4u8)
                    .map(|i| Validator {
                        public_key: PublicKey([i; 32]),
                        p2p_address: format!("127.0.0.1:{}", 7000 + i as u16),
                        api_address: format!("127.0.0.1:{}", 8000 + i as u16),
                    })
                    .collect(),
            },
            accounts: vec![GenesisAccount {
                public_key: PublicKey([9; 32]),
                balance: 100,
            }],
            role: ChainRole::Standalone,
            identity: None,
            ordering_only: false,
        }
    }

    #[test]
    fn roles_are_validated_and_standalone_keeps_the_hash() {
        let plain = genesis();
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("role"),
            "a standalone genesis has no role field: {json}"
        );
        let mut root = genesis();
        root.role = ChainRole::Root {
            governance: netchain_types::registry::Governance {
                keys: vec![PublicKey([1; 32]), PublicKey([2; 32])],
                threshold: 2,
            },
        };
        root.validate().unwrap();
        assert_ne!(root.hash(), plain.hash());
        if let ChainRole::Root { governance } = &mut root.role {
            governance.threshold = 3;
        }
        assert!(root.validate().is_err());
        let mut service = genesis();
        service.role = ChainRole::Service {
            root_chain_id: "local-1".into(),
            root_genesis_hash: Digest([0; 32]),
        };
        assert!(
            service.validate().is_err(),
            "a chain cannot be its own root"
        );
    }

    #[test]
    fn genesis_rules() {
        genesis().validate().unwrap();
        let mut g = genesis();
        g.chain_id = "Bad Id".into();
        assert!(matches!(
            g.validate(),
            Err(ConfigError::Invalid {
                field: "chain_id",
                ..
            })
        ));
        let mut g = genesis();
        g.committee.validators[1].public_key = PublicKey([0; 32]);
        assert!(g.validate().is_err());
        let mut g = genesis();
        g.accounts.push(GenesisAccount {
            public_key: PublicKey([8; 32]),
            balance: u64::MAX,
        });
        assert!(g.validate().is_err());
        let mut g = genesis();
        assert_eq!(g.hash(), genesis().hash());
        g.genesis_time_ms = 2;
        assert_ne!(g.hash(), genesis().hash());
    }

    #[test]
    fn node_config_round_trip_and_rules() {
        let dir = std::env::temp_dir().join(format!("netchain-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = NodeConfig {
            data_dir: "data".into(),
            key_file: "key.json".into(),
            genesis_file: "genesis.json".into(),
            p2p_listen: None,
            api_listen: None,
            frame_bytes_max: default_frame_bytes_max(),
            consensus: ConsensusParams::default(),
            mempool: MempoolParams::default(),
            anchoring: None,
            access: AccessConfig::default(),
            registry: None,
        };
        let path = dir.join("node.toml");
        cfg.save(&path).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        assert_eq!(loaded.data_dir, dir.join("data"));
        std::fs::write(&path, "data_dir = 1").unwrap();
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        let mut bad = cfg.clone();
        bad.consensus.empty_block_interval_ms = 5_000;
        assert!(bad.validate().is_err());
        // A node file from before backlog_block_interval_ms, with a short round timeout, loads:
        // the default wait is capped at a quarter of the timeout.
        std::fs::write(
            &path,
            "data_dir = \"data\"\nkey_file = \"key.json\"\ngenesis_file = \"g.json\"\n\
             [consensus]\nround_timeout_ms = 200\nempty_block_interval_ms = 50\n",
        )
        .unwrap();
        let short = NodeConfig::load(&path).unwrap();
        short.validate().unwrap();
        assert_eq!(short.consensus.backlog_block_interval_ms, 150);
        assert_eq!(short.consensus.backlog_block_interval(), 50);
        assert_eq!(cfg.consensus.backlog_block_interval(), 150);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
