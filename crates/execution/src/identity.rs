//! The `identity` native module (Network ID): organizations, and the nodes, clients and devices
//! they register, with rotation, suspension and revocation; and the admission question every
//! node asks of it ("is this key active, for this chain and role, now?").
//!
//! Design note: state lives under `id/`: the list of organization ids, one record per
//! organization, one record per identity (`id/member/<org>/<name>`), and an index from every key
//! ever registered to its identity (`id/key/<key>`). A rotated key keeps its index entry, so it
//! is refused as rotated and can never be registered again; a revoked identity stays revoked.
//! Only an organization's own admins sign for it; a new organization needs approvals from
//! admins of more than half of the existing ones. All of it is read with proofs like any state.

use crate::currency::Fail;
use crate::overlay::Overlay;
use crate::{Executor, TxError};
use borsh::{BorshDeserialize, BorshSerialize};
use netchain_crypto::verify;
use netchain_storage::{KvBackend, StorageError};
use netchain_types::identity::{
    add_org_message, check_admins, check_identity, check_org, key_proof_message, IdentityGenesis,
    IdentityKind, IdentityOp, IdentitySpec, IdentityStatus, NodeRole, OrgApproval, Organization,
    ANY_CHAIN, MEMBERS_MAX, ORGS_MAX,
};
use netchain_types::{codec, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

type R<T> = Result<T, Fail>;

/// One state write: key and value (None deletes).
pub type StateWrite = (Vec<u8>, Option<Vec<u8>>);

fn rule(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::Reject(TxError::Rule {
        code,
        message: message.into(),
    })
}

/// State key of the list of organization ids (present only where the registry is kept).
pub const ORGS_KEY: &[u8] = b"id/orgs";
/// State key of the registry's policy.
pub const POLICY_KEY: &[u8] = b"id/policy";

/// What the registry requires of transactions.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct IdentityPolicy {
    /// Only active registered identities may send transactions (identity and registry
    /// operations excepted).
    pub require_registered_senders: bool,
}

/// State key of an organization's record.
pub fn org_key(org: &str) -> Vec<u8> {
    [b"id/org/".as_slice(), org.as_bytes()].concat()
}

/// State key of an identity's record.
pub fn member_key(org: &str, name: &str) -> Vec<u8> {
    [
        b"id/member/".as_slice(),
        org.as_bytes(),
        b"/",
        name.as_bytes(),
    ]
    .concat()
}

/// State key of the organizations a key is an admin of.
pub fn admin_key(key: &PublicKey) -> Vec<u8> {
    [b"id/admin/".as_slice(), &key.0].concat()
}

/// State key of the index entry of a key (every key ever registered has one).
pub fn key_index(key: &PublicKey) -> Vec<u8> {
    [b"id/key/".as_slice(), &key.0].concat()
}

/// An organization and its counters.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OrgRecord {
    /// The organization (id, name, admins).
    pub org: Organization,
    /// Identities it has registered (revoked ones included).
    pub members: u32,
    /// Height that added it (0: genesis).
    pub added_height: u64,
}

/// A registered identity.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Its organization.
    pub org: String,
    /// Name, current key, kind and expiry.
    pub identity: IdentitySpec,
    /// Active, suspended or revoked.
    pub status: IdentityStatus,
    /// Height of registration (0: genesis).
    pub registered_height: u64,
    /// Height of the last change.
    pub updated_height: u64,
    /// How many times its key was rotated.
    pub rotations: u32,
}

/// Where a key points in the index.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Organization.
    pub org: String,
    /// Identity name.
    pub name: String,
}

/// What the registry says of a key at some state and time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "standing", rename_all = "snake_case")]
pub enum Standing {
    /// Registered, active and not expired.
    Active {
        /// The identity.
        record: IdentityRecord,
    },
    /// Never registered.
    Unknown,
    /// The identity is suspended.
    Suspended {
        /// The identity.
        record: IdentityRecord,
    },
    /// The identity is revoked.
    Revoked {
        /// The identity.
        record: IdentityRecord,
    },
    /// The key was rotated away; the identity now uses another key.
    Rotated {
        /// The identity.
        record: IdentityRecord,
    },
    /// The identity's expiry has passed.
    Expired {
        /// The identity.
        record: IdentityRecord,
    },
}

impl Standing {
    /// The identity record, for every standing but `Unknown`.
    pub fn record(&self) -> Option<&IdentityRecord> {
        match self {
            Self::Unknown => None,
            Self::Active { record }
            | Self::Suspended { record }
            | Self::Revoked { record }
            | Self::Rotated { record }
            | Self::Expired { record } => Some(record),
        }
    }

    /// A short word for logs and errors.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Active { .. } => "active",
            Self::Unknown => "unregistered",
            Self::Suspended { .. } => "suspended",
            Self::Revoked { .. } => "revoked",
            Self::Rotated { .. } => "rotated",
            Self::Expired { .. } => "expired",
        }
    }

    /// Whether this admits a node of `role` on chain `chain_id`.
    pub fn admits_node(&self, chain_id: &str, role: NodeRole) -> bool {
        match self {
            Self::Active { record } => match &record.identity.kind {
                IdentityKind::Node { role: r, chains } => {
                    *r == role && chains.iter().any(|c| c == chain_id || c == ANY_CHAIN)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether this admits a client or device (any active identity that is not a node).
    pub fn admits_client(&self) -> bool {
        matches!(self, Self::Active { record } if !matches!(record.identity.kind, IdentityKind::Node { .. }))
    }
}

/// The standing of `key` given its index entry and identity record, at block time `now_ms`.
pub fn standing_of(key: &PublicKey, record: Option<IdentityRecord>, now_ms: u64) -> Standing {
    let Some(record) = record else {
        return Standing::Unknown;
    };
    if record.identity.key != *key {
        return Standing::Rotated { record };
    }
    match record.status {
        IdentityStatus::Revoked => Standing::Revoked { record },
        IdentityStatus::Suspended => Standing::Suspended { record },
        IdentityStatus::Active => {
            if record.identity.expires_ms.is_some_and(|e| now_ms >= e) {
                Standing::Expired { record }
            } else {
                Standing::Active { record }
            }
        }
    }
}

/// Whether the registry (as the overlay sees it) requires registered senders.
pub(crate) fn requires_registered_senders<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
) -> Result<bool, StorageError> {
    Ok(ov
        .get::<IdentityPolicy>(POLICY_KEY)?
        .is_some_and(|p| p.require_registered_senders))
}

/// The standing of `key` as the overlay sees it (this block's changes included).
pub(crate) fn standing_in<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    key: &PublicKey,
    now_ms: u64,
) -> Result<Standing, StorageError> {
    let record = match ov.get::<KeyEntry>(&key_index(key))? {
        None => None,
        Some(e) => ov.get::<IdentityRecord>(&member_key(&e.org, &e.name))?,
    };
    Ok(standing_of(key, record, now_ms))
}

/// Whether `key` may send transactions where senders must be registered (as the overlay sees
/// it): an active identity, an admin of some organization, or one of the root's governors.
/// `Err` carries the standing to report.
pub(crate) fn sender_allowed_in<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    key: &PublicKey,
    now_ms: u64,
) -> Result<Result<(), &'static str>, StorageError> {
    let standing = standing_in(ov, key, now_ms)?;
    if matches!(standing, Standing::Active { .. }) {
        return Ok(Ok(()));
    }
    if ov
        .get::<Vec<String>>(&admin_key(key))?
        .is_some_and(|orgs| !orgs.is_empty())
    {
        return Ok(Ok(()));
    }
    if ov
        .get::<netchain_types::registry::Governance>(crate::registry::GOVERNANCE_KEY)?
        .is_some_and(|g| g.keys.contains(key))
    {
        return Ok(Ok(()));
    }
    Ok(Err(standing.label()))
}

impl<B: KvBackend> Executor<B> {
    /// Where senders must be registered: whether `key` may send as of `version` (an active
    /// identity, an organization admin or a governor); `Err` carries the standing to report.
    pub fn sender_allowed(
        &self,
        key: &PublicKey,
        version: u64,
        now_ms: u64,
    ) -> Result<Result<(), &'static str>, StorageError> {
        let standing = self.identity_standing(key, version, now_ms)?;
        if matches!(standing, Standing::Active { .. }) {
            return Ok(Ok(()));
        }
        if self
            .module_value::<Vec<String>>(&admin_key(key), version)?
            .is_some_and(|orgs| !orgs.is_empty())
        {
            return Ok(Ok(()));
        }
        if self
            .module_value::<netchain_types::registry::Governance>(
                crate::registry::GOVERNANCE_KEY,
                version,
            )?
            .is_some_and(|g| g.keys.contains(key))
        {
            return Ok(Ok(()));
        }
        Ok(Err(standing.label()))
    }

    /// Whether the registry as of `version` accepts transactions only from registered senders.
    pub fn requires_registered_senders(&self, version: u64) -> Result<bool, StorageError> {
        Ok(self
            .module_value::<IdentityPolicy>(POLICY_KEY, version)?
            .is_some_and(|p| p.require_registered_senders))
    }

    /// Whether this chain keeps an identity registry (its genesis had an `identity` section).
    pub fn has_identity_registry(&self, version: u64) -> Result<bool, StorageError> {
        Ok(self.state().get(ORGS_KEY, version)?.is_some())
    }

    /// The standing of `key` in the registry as of `version`, at time `now_ms`.
    pub fn identity_standing(
        &self,
        key: &PublicKey,
        version: u64,
        now_ms: u64,
    ) -> Result<Standing, StorageError> {
        let record = match self.module_value::<KeyEntry>(&key_index(key), version)? {
            None => None,
            Some(e) => {
                self.module_value::<IdentityRecord>(&member_key(&e.org, &e.name), version)?
            }
        };
        Ok(standing_of(key, record, now_ms))
    }
}

/// The genesis writes of a registry: organizations, identities and the key index (the
/// registry is checked first; the error names what is wrong).
pub fn genesis_updates(g: &IdentityGenesis) -> Result<Vec<StateWrite>, String> {
    g.validate()?;
    let mut updates = Vec::new();
    let mut ids = Vec::new();
    let mut admins: std::collections::BTreeMap<PublicKey, Vec<String>> = Default::default();
    for go in &g.organizations {
        ids.push(go.org.id.clone());
        for a in &go.org.admins {
            admins.entry(*a).or_default().push(go.org.id.clone());
        }
        for spec in &go.identities {
            let record = IdentityRecord {
                org: go.org.id.clone(),
                identity: spec.clone(),
                status: IdentityStatus::Active,
                registered_height: 0,
                updated_height: 0,
                rotations: 0,
            };
            updates.push((
                member_key(&go.org.id, &spec.name),
                Some(codec::encode(&record)),
            ));
            updates.push((
                key_index(&spec.key),
                Some(codec::encode(&KeyEntry {
                    org: go.org.id.clone(),
                    name: spec.name.clone(),
                })),
            ));
        }
        let rec = OrgRecord {
            org: go.org.clone(),
            members: go.identities.len() as u32,
            added_height: 0,
        };
        updates.push((org_key(&go.org.id), Some(codec::encode(&rec))));
    }
    updates.push((ORGS_KEY.to_vec(), Some(codec::encode(&ids))));
    for (key, orgs) in admins {
        updates.push((admin_key(&key), Some(codec::encode(&orgs))));
    }
    updates.push((
        POLICY_KEY.to_vec(),
        Some(codec::encode(&IdentityPolicy {
            require_registered_senders: g.require_registered_senders,
        })),
    ));
    Ok(updates)
}

/// What an identity operation sees of its transaction and block.
pub(crate) struct Env<'e> {
    pub chain_id: &'e str,
    pub height: u64,
    pub now: u64,
    pub sender: PublicKey,
}

/// Applies an `identity` operation (writes staged in `ov`).
pub(crate) fn apply<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    op: &IdentityOp,
) -> R<()> {
    let orgs: Vec<String> = ov.get(ORGS_KEY)?.ok_or_else(|| {
        rule(
            "no_identity_registry",
            "this chain keeps no identity registry (its genesis has no identity section)",
        )
    })?;
    match op {
        IdentityOp::AddOrg { org, approvals } => add_org(ov, env, orgs, org, approvals),
        IdentityOp::SetAdmins { org, admins } => {
            let mut rec = admin_org(ov, env, org)?;
            check_admins(admins).map_err(|e| rule("invalid_admins", e))?;
            for old in &rec.org.admins {
                index_admin(ov, old, org, false)?;
            }
            for new in admins {
                index_admin(ov, new, org, true)?;
            }
            rec.org.admins = admins.clone();
            ov.put(org_key(org), &rec);
            Ok(())
        }
        IdentityOp::Register {
            org,
            identity,
            key_proof,
        } => register(ov, env, org, identity, key_proof),
        IdentityOp::Rotate {
            org,
            name,
            new_key,
            key_proof,
        } => {
            let mut org_rec = admin_org(ov, env, org)?;
            let mut rec = load_member(ov, org, name)?;
            if rec.status == IdentityStatus::Revoked {
                return Err(rule("revoked", format!("{org}/{name} is revoked")));
            }
            check_key_proof(env, org, name, new_key, key_proof)?;
            key_unused(ov, new_key)?;
            // Every key ever used keeps its index entry: rotations count against the
            // organization's bound like registrations.
            if org_rec.members >= MEMBERS_MAX {
                return Err(rule(
                    "too_many_identities",
                    format!("at most {MEMBERS_MAX} identities and rotations per organization"),
                ));
            }
            org_rec.members += 1;
            ov.put(org_key(org), &org_rec);
            ov.put(
                key_index(new_key),
                &KeyEntry {
                    org: org.clone(),
                    name: name.clone(),
                },
            );
            rec.identity.key = *new_key;
            rec.rotations = rec.rotations.saturating_add(1);
            rec.updated_height = env.height;
            ov.put(member_key(org, name), &rec);
            Ok(())
        }
        IdentityOp::SetStatus { org, name, status } => {
            admin_org(ov, env, org)?;
            let mut rec = load_member(ov, org, name)?;
            if rec.status == IdentityStatus::Revoked {
                return Err(rule(
                    "revoked",
                    format!("{org}/{name} is revoked; revocation is final"),
                ));
            }
            if rec.status == *status {
                return Err(rule(
                    "no_change",
                    format!("{org}/{name} is already {status:?}").to_lowercase(),
                ));
            }
            rec.status = *status;
            rec.updated_height = env.height;
            ov.put(member_key(org, name), &rec);
            Ok(())
        }
    }
}

/// The organization `org`, if the sender is one of its admins.
fn admin_org<B: KvBackend>(ov: &mut Overlay<'_, B>, env: &Env<'_>, org: &str) -> R<OrgRecord> {
    let rec: OrgRecord = ov
        .get(&org_key(org))?
        .ok_or_else(|| rule("unknown_org", format!("no organization {org:?}")))?;
    if !rec.org.admins.contains(&env.sender) {
        return Err(rule(
            "not_org_admin",
            format!("the sender is not an admin of {org}"),
        ));
    }
    Ok(rec)
}

fn load_member<B: KvBackend>(ov: &mut Overlay<'_, B>, org: &str, name: &str) -> R<IdentityRecord> {
    ov.get(&member_key(org, name))?
        .ok_or_else(|| rule("unknown_identity", format!("no identity {org}/{name}")))
}

/// Adds or removes `org` in the admin index of `key`.
fn index_admin<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    key: &PublicKey,
    org: &str,
    add: bool,
) -> R<()> {
    let k = admin_key(key);
    let mut orgs: Vec<String> = ov.get(&k)?.unwrap_or_default();
    orgs.retain(|o| o != org);
    if add {
        orgs.push(org.to_string());
    }
    if orgs.is_empty() {
        ov.delete(k);
    } else {
        ov.put(k, &orgs);
    }
    Ok(())
}

/// The identity key's consent: its signature over the registration it is part of.
fn check_key_proof(
    env: &Env<'_>,
    org: &str,
    name: &str,
    key: &PublicKey,
    proof: &netchain_types::Signature,
) -> R<()> {
    verify(key, &key_proof_message(env.chain_id, org, name, key), proof).map_err(|_| {
        rule(
            "bad_key_proof",
            "the identity key's signature over this registration does not verify (only the \
             key's holder can let it be registered)",
        )
    })
}

fn key_unused<B: KvBackend>(ov: &mut Overlay<'_, B>, key: &PublicKey) -> R<()> {
    if ov.get_raw(&key_index(key))?.is_some() {
        return Err(rule(
            "key_in_use",
            format!("key {key} is or was registered; keys are never reused"),
        ));
    }
    Ok(())
}

fn add_org<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    mut orgs: Vec<String>,
    org: &Organization,
    approvals: &[OrgApproval],
) -> R<()> {
    check_org(org).map_err(|e| rule("invalid_org", e))?;
    if orgs.contains(&org.id) {
        return Err(rule("org_exists", format!("{} exists", org.id)));
    }
    if orgs.len() >= ORGS_MAX {
        return Err(rule(
            "too_many_orgs",
            format!("at most {ORGS_MAX} organizations"),
        ));
    }
    let needed = orgs.len() / 2 + 1;
    if approvals.len() > orgs.len() {
        return Err(rule("bad_approval", "more approvals than organizations"));
    }
    let msg = add_org_message(env.chain_id, org);
    let mut seen = BTreeSet::new();
    for a in approvals {
        if !seen.insert(a.org.clone()) {
            return Err(rule("bad_approval", format!("{} approves twice", a.org)));
        }
        let approver: OrgRecord = ov
            .get(&org_key(&a.org))?
            .ok_or_else(|| rule("bad_approval", format!("no organization {:?}", a.org)))?;
        if !approver.org.admins.contains(&a.admin) {
            return Err(rule(
                "bad_approval",
                format!("{} is not an admin of {}", a.admin, a.org),
            ));
        }
        verify(&a.admin, &msg, &a.signature).map_err(|_| {
            rule(
                "bad_approval",
                format!("{}'s approval signature does not verify", a.org),
            )
        })?;
    }
    if seen.len() < needed {
        return Err(rule(
            "insufficient_approvals",
            format!(
                "{} of {} organizations approve; more than half ({needed}) must",
                seen.len(),
                orgs.len()
            ),
        ));
    }
    orgs.push(org.id.clone());
    ov.put(ORGS_KEY.to_vec(), &orgs);
    for a in &org.admins {
        index_admin(ov, a, &org.id, true)?;
    }
    ov.put(
        org_key(&org.id),
        &OrgRecord {
            org: org.clone(),
            members: 0,
            added_height: env.height,
        },
    );
    Ok(())
}

fn register<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    org: &str,
    spec: &IdentitySpec,
    key_proof: &netchain_types::Signature,
) -> R<()> {
    let mut rec = admin_org(ov, env, org)?;
    check_identity(spec).map_err(|e| rule("invalid_identity", e))?;
    check_key_proof(env, org, &spec.name, &spec.key, key_proof)?;
    if spec.expires_ms.is_some_and(|e| e <= env.now) {
        return Err(rule("invalid_identity", "expiry is in the past"));
    }
    if ov.get_raw(&member_key(org, &spec.name))?.is_some() {
        return Err(rule(
            "identity_exists",
            format!("{org}/{} exists", spec.name),
        ));
    }
    if rec.members >= MEMBERS_MAX {
        return Err(rule(
            "too_many_identities",
            format!("at most {MEMBERS_MAX} identities per organization"),
        ));
    }
    key_unused(ov, &spec.key)?;
    rec.members += 1;
    ov.put(org_key(org), &rec);
    ov.put(
        key_index(&spec.key),
        &KeyEntry {
            org: org.to_string(),
            name: spec.name.clone(),
        },
    );
    ov.put(
        member_key(org, &spec.name),
        &IdentityRecord {
            org: org.to_string(),
            identity: spec.clone(),
            status: IdentityStatus::Active,
            registered_height: env.height,
            updated_height: env.height,
            rotations: 0,
        },
    );
    Ok(())
}
