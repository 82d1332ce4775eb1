//! The on-disk layout of a local network: genesis, validator keys and node files, demo accounts.

use anyhow::Context;
use netchain_config::{ConsensusParams, Genesis, GenesisAccount, MempoolParams, NodeConfig};
use netchain_crypto::{KeyFile, Keypair};
use netchain_types::identity::{
    GenesisOrg, IdentityGenesis, IdentityKind, IdentitySpec, NodeRole, Organization,
};
use netchain_types::{Committee, Validator};
use std::path::{Path, PathBuf};

/// Parameters of a local network.
#[derive(Clone, Debug)]
pub struct LayoutParams {
    /// Chain id.
    pub chain_id: String,
    /// Number of validators.
    pub validators: usize,
    /// Number of funded demo accounts.
    pub accounts: usize,
    /// Balance of each demo account.
    pub balance: u64,
    /// First P2P port; validator i uses `p2p_base_port + i`.
    pub p2p_base_port: u16,
    /// First API port; validator i uses `api_base_port + i`.
    pub api_base_port: u16,
    /// Host to bind.
    pub host: String,
    /// Organizations of the consortium (Network ID): the genesis then keeps an identity
    /// registry, each organization's admin key is written to `orgs/<id>/admin.json`, and the
    /// validators are registered under the organizations in turn. 0: no registry.
    pub organizations: usize,
    /// With a registry: the demo accounts are registered as clients (`client-<i>`, under the
    /// organizations in turn) and the chain accepts transactions only from registered identities.
    pub registered_senders: bool,
    /// Batched dissemination with proofs of availability (`[consensus] batching`).
    pub batching: bool,
    /// Ordering-only chain (genesis `ordering_only`): the benchmark's component mode.
    pub ordering_only: bool,
}

impl Default for LayoutParams {
    fn default() -> Self {
        Self {
            chain_id: "netchain-local".into(),
            validators: 4,
            accounts: 1_000,
            balance: 1_000_000_000,
            p2p_base_port: 7100,
            api_base_port: 8100,
            host: "127.0.0.1".into(),
            organizations: DEFAULT_ORGANIZATIONS,
            registered_senders: false,
            batching: true,
            ordering_only: false,
        }
    }
}

/// Organizations a local network's consortium has unless told otherwise.
pub const DEFAULT_ORGANIZATIONS: usize = 3;

/// The id of organization `i` of a local consortium (`org-1`, `org-2` ...).
pub fn org_id(i: usize) -> String {
    format!("org-{}", i + 1)
}

/// The admin key file of organization `org` in a local network folder.
pub fn org_admin_file(dir: &Path, org: &str) -> PathBuf {
    dir.join("orgs").join(org).join("admin.json")
}

/// The founding registry: `n` organizations with fresh admin keys (written under `dir/orgs`),
/// validator `i` registered as `validator-<i>` of organization `i mod n`.
fn consortium(
    dir: &Path,
    n: usize,
    p: &LayoutParams,
    validators: &[Validator],
) -> anyhow::Result<IdentityGenesis> {
    let chain_id = p.chain_id.as_str();
    let mut organizations = Vec::new();
    for i in 0..n {
        let id = org_id(i);
        let admin = Keypair::generate();
        let file = org_admin_file(dir, &id);
        std::fs::create_dir_all(file.parent().expect("has a parent"))?;
        KeyFile::from_keypair(&admin).save(&file)?;
        let mut identities: Vec<IdentitySpec> = validators
            .iter()
            .enumerate()
            .filter(|(v, _)| v % n == i)
            .map(|(v, val)| IdentitySpec {
                name: format!("validator-{v}"),
                key: val.public_key,
                kind: IdentityKind::Node {
                    role: NodeRole::Validator,
                    chains: vec![chain_id.to_string()],
                },
                expires_ms: None,
            })
            .collect();
        if p.registered_senders {
            identities.extend(
                (0..p.accounts)
                    .filter(|a| a % n == i)
                    .map(|a| IdentitySpec {
                        name: format!("client-{a}"),
                        key: demo_account(chain_id, a).public(),
                        kind: IdentityKind::Client {
                            roles: vec!["demo".into()],
                        },
                        expires_ms: None,
                    }),
            );
        }
        organizations.push(GenesisOrg {
            org: Organization {
                id: id.clone(),
                name: format!("Organization {}", i + 1),
                admins: vec![admin.public()],
            },
            identities,
        });
    }
    Ok(IdentityGenesis {
        organizations,
        require_registered_senders: p.registered_senders,
    })
}

/// A written local network.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Root folder.
    pub dir: PathBuf,
    /// The genesis.
    pub genesis: Genesis,
    /// Node file of each validator.
    pub node_files: Vec<PathBuf>,
}

impl Layout {
    /// The genesis file.
    pub fn genesis_file(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// API address of validator `i`.
    pub fn api_address(&self, i: usize) -> &str {
        &self.genesis.committee.validators[i].api_address
    }

    /// Folder of validator `i`.
    pub fn validator_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("validator-{i}"))
    }

    /// Reads a layout written before.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let genesis = Genesis::load(&dir.join("genesis.json"))?;
        let node_files = (0..genesis.committee.size())
            .map(|i| dir.join(format!("validator-{i}")).join("node.toml"))
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            genesis,
            node_files,
        })
    }
}

/// The key of demo account `i` of a chain: derived, so the load generator can sign for it.
/// Demo keys are public knowledge; never fund them on a real chain.
pub fn demo_account(chain_id: &str, i: usize) -> Keypair {
    let seed = blake3::hash(format!("netchain-demo-account/{chain_id}/{i}").as_bytes());
    Keypair::from_secret(*seed.as_bytes())
}

/// Writes a fresh local network into `dir` (which must not hold one already).
pub fn write(dir: &Path, p: &LayoutParams) -> anyhow::Result<Layout> {
    anyhow::ensure!(p.validators >= 1, "need at least one validator");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    anyhow::ensure!(
        !dir.join("genesis.json").exists(),
        "{} already holds a network; remove it or pick another --dir",
        dir.display()
    );
    let mut validators = Vec::new();
    let mut node_files = Vec::new();
    for i in 0..p.validators {
        let vdir = dir.join(format!("validator-{i}"));
        std::fs::create_dir_all(&vdir)?;
        let kp = Keypair::generate();
        KeyFile::from_keypair(&kp).save(&vdir.join("key.json"))?;
        validators.push(Validator {
            public_key: kp.public(),
            p2p_address: format!("{}:{}", p.host, p.p2p_base_port as usize + i),
            api_address: format!("{}:{}", p.host, p.api_base_port as usize + i),
        });
        let node = NodeConfig {
            data_dir: "data".into(),
            key_file: "key.json".into(),
            genesis_file: "../genesis.json".into(),
            p2p_listen: None,
            api_listen: None,
            frame_bytes_max: 16 << 20,
            consensus: ConsensusParams {
                batching: p.batching,
                ..ConsensusParams::default()
            },
            mempool: MempoolParams::default(),
            anchoring: None,
            access: Default::default(),
            registry: None,
        };
        let file = vdir.join("node.toml");
        node.save(&file)?;
        node_files.push(file);
    }
    let accounts = (0..p.accounts)
        .map(|i| GenesisAccount {
            public_key: demo_account(&p.chain_id, i).public(),
            balance: p.balance,
        })
        .collect();
    let identity = match p.organizations {
        0 => None,
        n => Some(consortium(dir, n, p, &validators)?),
    };
    let genesis = Genesis {
        chain_id: p.chain_id.clone(),
        genesis_time_ms: netchain_node::now_ms(),
        committee: Committee { validators },
        accounts,
        role: Default::default(),
        identity,
        ordering_only: p.ordering_only,
    };
    genesis.validate()?;
    genesis.save(&dir.join("genesis.json"))?;
    Ok(Layout {
        dir: dir.to_path_buf(),
        genesis,
        node_files,
    })
}
