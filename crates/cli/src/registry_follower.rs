//! Network ID on a service chain: the chain keeps no identity registry of its own, so its nodes
//! follow the root chain's. On a timer, the follower asks a root node for the standing of every
//! key of this chain's committee, with proofs, and checks each answer with the root committee's
//! keys from the root genesis (`netchain_client::verify_key_standing`). An answer proven at an
//! older root checkpoint than one already seen is ignored, so a root node cannot roll a
//! revocation back. A peer is admitted while the root's registry lists it as an active
//! validator of this chain. When an answer changes, the transport is signalled, and it closes
//! the connections of keys no longer admitted. The follower fails closed: before the first
//! answer nobody is admitted. When the root cannot be reached, the last proven answers stay in
//! force.

use anyhow::{bail, Context};
use netchain_api::identity::KeyResponse;
use netchain_client::Client;
use netchain_config::{Genesis, RegistrySource};
use netchain_network::Admission;
use netchain_types::identity::NodeRole;
use netchain_types::registry::ChainRole;
use netchain_types::PublicKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// The follower of one service-chain node.
pub struct Follower {
    chain_id: String,
    keys: Vec<PublicKey>,
    root: Genesis,
    source: RegistrySource,
    admitted: Arc<RwLock<HashMap<PublicKey, bool>>>,
    signal: watch::Sender<u64>,
}

impl Follower {
    /// A follower for the node whose genesis is `genesis`, reading `source`; returns it with the
    /// admission policy to hand to the node. Refuses a root genesis whose hash is not the one
    /// this chain's genesis names.
    pub fn new(genesis: &Genesis, source: RegistrySource) -> anyhow::Result<(Self, Admission)> {
        let root = Genesis::load(&source.root_genesis_file)?;
        match &genesis.role {
            ChainRole::Service {
                root_chain_id,
                root_genesis_hash,
            } => {
                if root.chain_id != *root_chain_id || root.hash() != *root_genesis_hash {
                    bail!(
                        "{} is not the genesis of root chain {root_chain_id} ({root_genesis_hash})",
                        source.root_genesis_file.display()
                    );
                }
            }
            _ => bail!("[registry] is for service chains; this chain's genesis is not one"),
        }
        if root.identity.is_none() {
            bail!("the root chain's genesis keeps no identity registry");
        }
        let admitted: Arc<RwLock<HashMap<PublicKey, bool>>> = Arc::default();
        let (signal, changes) = watch::channel(0);
        let policy = {
            let admitted = admitted.clone();
            Admission {
                admits: Arc::new(move |k: &PublicKey| {
                    admitted
                        .read()
                        .expect("registry lock")
                        .get(k)
                        .copied()
                        .unwrap_or(false)
                }),
                changes,
            }
        };
        let follower = Self {
            chain_id: genesis.chain_id.clone(),
            keys: genesis
                .committee
                .validators
                .iter()
                .map(|v| v.public_key)
                .collect(),
            root,
            source,
            admitted,
            signal,
        };
        Ok((follower, policy))
    }

    /// Runs until the process ends.
    pub async fn run(self) {
        let roots: Vec<Client> = self
            .source
            .root_api
            .iter()
            .map(|a| Client::new(a))
            .collect();
        let mut next = 0usize;
        // Per key, the root height of the newest answer taken.
        let mut newest: HashMap<PublicKey, u64> = HashMap::new();
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.source.interval_ms.max(100)));
        loop {
            ticker.tick().await;
            let root = &roots[next % roots.len()];
            let mut changed = false;
            for key in &self.keys {
                let answer = match root
                    .get_typed::<KeyResponse>(&format!("/v1/identity/keys/{key}?proof=true"))
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(error = %e, "root registry not readable");
                        break;
                    }
                };
                let standing = match netchain_client::verify_key_standing(
                    &self.root.committee,
                    &self.root.chain_id,
                    key,
                    netchain_node::now_ms(),
                    &answer,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "root registry answer refused");
                        break;
                    }
                };
                let seen = newest.entry(*key).or_insert(0);
                if answer.height < *seen {
                    continue; // older than what is already known of this key
                }
                *seen = answer.height;
                let ok = standing.admits_node(&self.chain_id, NodeRole::Validator);
                let mut map = self.admitted.write().expect("registry lock");
                if map.insert(*key, ok) != Some(ok) {
                    changed = true;
                    info!(%key, standing = standing.label(), root_height = answer.height, "registry standing of a peer");
                }
            }
            // Round robin over the root nodes every time (not only on failure): one lagging or
            // lying node cannot hold an answer back while honest ones move on.
            next += 1;
            if changed {
                self.signal.send_modify(|n| *n += 1);
            }
        }
    }
}

/// The follower and policy for a node file, if it names a `[registry]` source.
pub fn from_config(
    cfg: &netchain_config::NodeConfig,
) -> anyhow::Result<Option<(Follower, Admission)>> {
    let Some(source) = cfg.registry.clone() else {
        return Ok(None);
    };
    let genesis = Genesis::load(&cfg.genesis_file)?;
    if genesis.identity.is_some() {
        return Ok(None); // the chain's own registry is in force
    }
    Follower::new(&genesis, source)
        .context("setting up the root registry follower")
        .map(Some)
}
