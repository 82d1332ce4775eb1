//! The `registry` native module of a root chain: service chains, their validator-set epochs, and
//! their anchors (certified checkpoints that must extend one another).
//!
//! Design note: registry changes carry approvals from the governing keys written into the state
//! at genesis; anchors carry a quorum certificate of the chain's registered validators for the
//! epoch they name, and a Merkle proof that the new checkpoint's state records the previously
//! anchored block in its block history, so the root accepts only a chain of checkpoints. A second,
//! different certified checkpoint for an anchored height can only come from more than f faulty
//! validators: it is kept as evidence and the chain is flagged (its anchors are refused until the
//! governance installs a new validator set).

use crate::currency::Fail;
use crate::overlay::Overlay;
use crate::TxError;
use borsh::{BorshDeserialize, BorshSerialize};
use netchain_crypto::{verify, verify_quorum};
use netchain_storage::{KvBackend, StateProof};
use netchain_types::registry::{
    approval_message, history_key, Anchor, Approval, Governance, RegistryChange, RegistryOp,
    ServiceChain, PURPOSE_MAX, SERVICE_VALIDATORS_MAX,
};
use netchain_types::{
    codec, CertifiedCheckpoint, Committee, Digest, Validator, CHAIN_ID_MAX_BYTES,
};
use serde::{Deserialize, Serialize};

/// Most registered service chains.
pub const CHAINS_MAX: usize = 1_024;
/// Validator-set epochs kept per chain (those an anchor may still name).
const EPOCHS_KEPT: usize = 16;

type R<T> = Result<T, Fail>;

fn rule(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::Reject(TxError::Rule {
        code,
        message: message.into(),
    })
}

/// State key of the governance (written at genesis on a root chain).
pub const GOVERNANCE_KEY: &[u8] = b"reg/governance";
/// State key of the root chain's genesis hash (written at genesis; approvals are bound to it).
pub const GENESIS_HASH_KEY: &[u8] = b"reg/genesis_hash";
/// State key of the list of registered chain ids.
pub const CHAIN_LIST_KEY: &[u8] = b"reg/list";

/// State key of a chain's record.
pub fn chain_key(chain_id: &str) -> Vec<u8> {
    [b"reg/chain/".as_slice(), chain_id.as_bytes()].concat()
}

/// State key of a chain's anchor at `height`.
pub fn anchor_key(chain_id: &str, height: u64) -> Vec<u8> {
    [
        b"reg/anchor/".as_slice(),
        chain_id.as_bytes(),
        b"/",
        &height.to_be_bytes(),
    ]
    .concat()
}

/// State key of conflict evidence for a chain at `height`.
pub fn evidence_key(chain_id: &str, height: u64) -> Vec<u8> {
    [
        b"reg/evidence/".as_slice(),
        chain_id.as_bytes(),
        b"/",
        &height.to_be_bytes(),
    ]
    .concat()
}

/// A validator set and the epoch it serves.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Epoch {
    /// Epoch number (0 at registration).
    pub epoch: u64,
    /// Validators.
    pub validators: Vec<Validator>,
    /// Root height at which it was installed.
    pub since_root_height: u64,
}

/// An accepted anchor.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// Service-chain height.
    pub height: u64,
    /// Its block.
    pub block_id: Digest,
    /// Its state root.
    pub state_root: Digest,
    /// Epoch whose quorum certified it.
    pub epoch: u64,
    /// Root height that accepted it.
    pub root_height: u64,
}

/// A registered service chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChainRecord {
    /// Id, purpose and genesis block.
    pub chain: ServiceChain,
    /// Validator sets an anchor may still name, oldest first (the last is current).
    pub epochs: Vec<Epoch>,
    /// Newest anchor.
    pub last_anchor: Option<AnchorRecord>,
    /// Anchors accepted.
    pub anchors: u64,
    /// Conflicting certified checkpoints were seen (more than f faulty validators).
    pub flagged: bool,
    /// Root height of registration.
    pub registered_height: u64,
}

impl ChainRecord {
    /// The current epoch.
    pub fn current_epoch(&self) -> &Epoch {
        self.epochs.last().expect("a chain always has an epoch")
    }
}

/// Two certified checkpoints of one height that differ.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Evidence {
    /// The anchored one.
    pub anchored: AnchorRecord,
    /// The conflicting certificate.
    pub conflicting: CertifiedCheckpoint,
    /// Epoch the conflicting one claims.
    pub epoch: u64,
    /// Root height that recorded it.
    pub root_height: u64,
}

/// What a registry operation sees of its transaction and block.
pub(crate) struct Env<'e> {
    pub chain_id: &'e str,
    pub height: u64,
}

fn check_validators(validators: &[Validator]) -> R<Committee> {
    if validators.is_empty() || validators.len() > SERVICE_VALIDATORS_MAX {
        return Err(rule(
            "invalid_validators",
            format!("1 to {SERVICE_VALIDATORS_MAX} validators"),
        ));
    }
    let mut keys: Vec<_> = validators.iter().map(|v| v.public_key).collect();
    keys.sort();
    keys.dedup();
    if keys.len() != validators.len() {
        return Err(rule("invalid_validators", "duplicate validator key"));
    }
    for v in validators {
        for a in [&v.p2p_address, &v.api_address] {
            if a.is_empty() || a.len() > 128 {
                return Err(rule("invalid_validators", "addresses are 1 to 128 bytes"));
            }
        }
    }
    Ok(Committee {
        validators: validators.to_vec(),
    })
}

fn check_chain_id(id: &str) -> R<()> {
    if id.is_empty()
        || id.len() > CHAIN_ID_MAX_BYTES
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(rule(
            "invalid_chain_id",
            format!("chain id {id:?}: 1 to {CHAIN_ID_MAX_BYTES} of a-z 0-9 -"),
        ));
    }
    Ok(())
}

/// Checks approvals: distinct governors in ascending order, each signature valid, at least the
/// threshold of them.
fn check_approvals(
    g: &Governance,
    root: &str,
    genesis_hash: &Digest,
    change: &RegistryChange,
    approvals: &[Approval],
) -> R<()> {
    let msg = approval_message(root, genesis_hash, change);
    let mut last: Option<u16> = None;
    for a in approvals {
        if last.is_some_and(|l| a.governor <= l) {
            return Err(rule(
                "bad_approval",
                "approvals must be by ascending governor index",
            ));
        }
        last = Some(a.governor);
        let key = g
            .keys
            .get(a.governor as usize)
            .ok_or_else(|| rule("bad_approval", format!("no governor {}", a.governor)))?;
        if verify(key, &msg, &a.signature).is_err() {
            return Err(rule(
                "bad_approval",
                format!("governor {}'s signature does not verify", a.governor),
            ));
        }
    }
    if approvals.len() < g.threshold as usize {
        return Err(rule(
            "insufficient_approvals",
            format!("{} approvals, {} needed", approvals.len(), g.threshold),
        ));
    }
    Ok(())
}

/// Applies a `registry` operation (writes staged in `ov`).
pub(crate) fn apply<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    op: &RegistryOp,
) -> R<()> {
    let governance: Governance = ov.get(GOVERNANCE_KEY)?.ok_or_else(|| {
        rule(
            "not_root_chain",
            "this chain keeps no registry (its genesis is not a root chain's)",
        )
    })?;
    match op {
        RegistryOp::Change { change, approvals } => {
            let genesis_hash: Digest = ov.get(GENESIS_HASH_KEY)?.unwrap_or_default();
            check_approvals(&governance, env.chain_id, &genesis_hash, change, approvals)?;
            match change {
                RegistryChange::Register(chain) => register(ov, env, chain),
                RegistryChange::SetValidators {
                    chain_id,
                    epoch,
                    validators,
                } => set_validators(ov, env, chain_id, *epoch, validators),
            }
        }
        RegistryOp::Anchor(anchor) => accept_anchor(ov, env, anchor),
    }
}

fn register<B: KvBackend>(ov: &mut Overlay<'_, B>, env: &Env<'_>, chain: &ServiceChain) -> R<()> {
    check_chain_id(&chain.chain_id)?;
    if chain.chain_id == env.chain_id {
        return Err(rule(
            "invalid_chain_id",
            "the root chain cannot register itself",
        ));
    }
    if chain.purpose.len() > PURPOSE_MAX {
        return Err(rule(
            "invalid_purpose",
            format!("at most {PURPOSE_MAX} bytes"),
        ));
    }
    check_validators(&chain.validators)?;
    let key = chain_key(&chain.chain_id);
    if ov.get_raw(&key)?.is_some() {
        return Err(rule(
            "chain_exists",
            format!("chain {} is already registered", chain.chain_id),
        ));
    }
    let mut list: Vec<String> = ov.get(CHAIN_LIST_KEY)?.unwrap_or_default();
    if list.len() >= CHAINS_MAX {
        return Err(rule(
            "too_many_chains",
            format!("at most {CHAINS_MAX} chains"),
        ));
    }
    list.push(chain.chain_id.clone());
    ov.put(CHAIN_LIST_KEY.to_vec(), &list);
    ov.put(
        key,
        &ChainRecord {
            chain: chain.clone(),
            epochs: vec![Epoch {
                epoch: 0,
                validators: chain.validators.clone(),
                since_root_height: env.height,
            }],
            last_anchor: None,
            anchors: 0,
            flagged: false,
            registered_height: env.height,
        },
    );
    Ok(())
}

fn load_chain<B: KvBackend>(ov: &mut Overlay<'_, B>, chain_id: &str) -> R<ChainRecord> {
    ov.get(&chain_key(chain_id))?.ok_or_else(|| {
        rule(
            "unregistered_chain",
            format!("chain {chain_id:?} is not registered"),
        )
    })
}

fn set_validators<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    chain_id: &str,
    epoch: u64,
    validators: &[Validator],
) -> R<()> {
    let mut rec = load_chain(ov, chain_id)?;
    let current = rec.current_epoch().epoch;
    if epoch != current + 1 {
        return Err(rule(
            "wrong_epoch",
            format!("the next epoch is {}, not {epoch}", current + 1),
        ));
    }
    check_validators(validators)?;
    if rec.flagged {
        // A new validator set is how the consortium recovers a chain whose old set equivocated:
        // the old sets can no longer certify anything.
        rec.epochs.clear();
        rec.flagged = false;
    }
    rec.epochs.push(Epoch {
        epoch,
        validators: validators.to_vec(),
        since_root_height: env.height,
    });
    if rec.epochs.len() > EPOCHS_KEPT {
        rec.epochs.remove(0);
    }
    ov.put(chain_key(chain_id), &rec);
    Ok(())
}

fn accept_anchor<B: KvBackend>(ov: &mut Overlay<'_, B>, env: &Env<'_>, anchor: &Anchor) -> R<()> {
    let cp = &anchor.checkpoint.checkpoint;
    let mut rec = load_chain(ov, &cp.chain_id)?;
    let epoch = rec
        .epochs
        .iter()
        .find(|e| e.epoch == anchor.epoch)
        .ok_or_else(|| {
            rule(
                "unknown_epoch",
                format!("no epoch {} for {}", anchor.epoch, cp.chain_id),
            )
        })?;
    // Cheap checks first; the certificate (a quorum of signature checks) only after them.
    let committee = Committee {
        validators: epoch.validators.clone(),
    };
    let verify_certificate = || -> R<()> {
        let msg = cp.signing_message();
        let signed: Vec<_> = anchor
            .checkpoint
            .signatures
            .iter()
            .map(|(i, s)| (*i, msg, *s))
            .collect();
        verify_quorum(&committee, &signed)
            .map_err(|e| rule("bad_certificate", format!("checkpoint certificate: {e}")))
    };
    // The same height anchored before: the same block is stale; another block is evidence.
    let ak = anchor_key(&cp.chain_id, cp.height);
    if let Some(anchored) = ov.get::<AnchorRecord>(&ak)? {
        if anchored.block_id == cp.block_id && anchored.state_root == cp.state_root {
            return Err(rule(
                "stale_anchor",
                format!("height {} is already anchored", cp.height),
            ));
        }
        if rec.flagged {
            return Err(rule(
                "chain_flagged",
                "the chain is already flagged; evidence is kept once",
            ));
        }
        verify_certificate()?;
        ov.put(
            evidence_key(&cp.chain_id, cp.height),
            &Evidence {
                anchored,
                conflicting: anchor.checkpoint.clone(),
                epoch: anchor.epoch,
                root_height: env.height,
            },
        );
        rec.flagged = true;
        ov.put(chain_key(&cp.chain_id), &rec);
        return Ok(());
    }
    if rec.flagged {
        return Err(rule(
            "chain_flagged",
            "conflicting checkpoints were seen; anchors wait for a new validator set",
        ));
    }
    let (prev_height, prev_block) = match &rec.last_anchor {
        Some(l) => (l.height, l.block_id),
        None => (0, rec.chain.genesis_block_id),
    };
    if cp.height <= prev_height {
        return Err(rule(
            "stale_anchor",
            format!(
                "height {} is not above the last anchor {prev_height}",
                cp.height
            ),
        ));
    }
    verify_certificate()?;
    // Extension: the new state records the previous anchor's block in its history.
    let proof = StateProof(anchor.extension_proof.clone());
    if proof
        .verify(
            cp.state_root.0,
            &history_key(prev_height),
            Some(&codec::encode(&prev_block)),
        )
        .is_err()
    {
        return Err(rule(
            "anchor_gap",
            format!(
                "no proof that height {} extends the anchored block at height {prev_height}",
                cp.height
            ),
        ));
    }
    let record = AnchorRecord {
        height: cp.height,
        block_id: cp.block_id,
        state_root: cp.state_root,
        epoch: anchor.epoch,
        root_height: env.height,
    };
    ov.put(ak, &record);
    rec.anchors += 1;
    rec.last_anchor = Some(record);
    // Epochs older than the newest anchor's can no longer be named.
    rec.epochs.retain(|e| e.epoch >= anchor.epoch);
    ov.put(chain_key(&cp.chain_id), &rec);
    Ok(())
}
