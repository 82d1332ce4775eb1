//! Network ID: the identity registry's types (organizations, their nodes, clients and devices)
//! and the operations of the `identity` native module.
//!
//! Design note: a chain whose genesis has an `identity` section keeps the registry in its state
//! (the root chain of a network, or a standalone chain that is its own root). Organizations hold
//! admin keys; adding one needs approvals from admins of more than half of the active
//! organizations. Everything under an organization (its nodes, clients and devices) is registered,
//! rotated, suspended, resumed and revoked by transactions that one of its own admins signs, so no
//! organization can act for another. Every key ever used stays indexed, so a rotated or revoked
//! key is refused by name rather than forgotten. Nodes and transports admit a peer only while its
//! key is active for their chain and role.

use crate::{codec, hash_parts, Digest, PublicKey, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest organization id in bytes (`a-z 0-9 -`).
pub const ORG_ID_MAX: usize = 32;
/// Longest organization display name or identity name in bytes.
pub const NAME_MAX: usize = 64;
/// Most admin keys of one organization.
pub const ADMINS_MAX: usize = 8;
/// Most organizations in a registry.
pub const ORGS_MAX: usize = 256;
/// Most identities (nodes, clients, devices) one organization may register.
pub const MEMBERS_MAX: u32 = 100_000;
/// Most chains one node identity may serve.
pub const CHAINS_PER_NODE_MAX: usize = 16;
/// Most roles of a client or device identity.
pub const ROLES_MAX: usize = 8;
/// Longest role label in bytes.
pub const ROLE_MAX: usize = 32;
/// Chain list entry that admits a node on every chain of the network.
pub const ANY_CHAIN: &str = "*";

/// An organization of the consortium.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Its id (`a-z 0-9 -`, 1 to 32 bytes).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Admin keys (1 to 8, distinct); any one of them signs for the organization.
    pub admins: Vec<PublicKey>,
}

/// What a node does in the network.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Votes in a chain's committee.
    Validator,
    /// Follows a chain and serves reads.
    FullNode,
    /// Relays anchors to the root chain.
    Relay,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validator => "validator",
            Self::FullNode => "full_node",
            Self::Relay => "relay",
        })
    }
}

/// What kind of identity a key is.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IdentityKind {
    /// A node: its role and the chains it may connect to (`*` for all).
    Node {
        /// Role.
        role: NodeRole,
        /// Chain ids.
        chains: Vec<String>,
    },
    /// An application or person using the API.
    Client {
        /// Application-defined roles (e.g. `teller`, `auditor`).
        roles: Vec<String>,
    },
    /// A device (meter, terminal) using the API.
    Device {
        /// Application-defined roles.
        roles: Vec<String>,
    },
}

impl IdentityKind {
    /// `node`, `client` or `device`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Node { .. } => "node",
            Self::Client { .. } => "client",
            Self::Device { .. } => "device",
        }
    }
}

/// Where an identity stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Admitted.
    Active,
    /// Refused until resumed.
    Suspended,
    /// Refused for good.
    Revoked,
}

/// An identity as the organization registers it. (JSON: the kind's fields sit beside the others,
/// so unknown fields cannot be refused here; the kind refuses its own.)
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IdentitySpec {
    /// Name within the organization (1 to 64 bytes).
    pub name: String,
    /// Its key.
    pub key: PublicKey,
    /// Node, client or device.
    #[serde(flatten)]
    pub kind: IdentityKind,
    /// Block time (ms since the Unix epoch) after which it is refused; None: no expiry.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// An admin of an existing organization approving a new one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgApproval {
    /// The approving organization.
    pub org: String,
    /// One of its admin keys.
    pub admin: PublicKey,
    /// Signature over [`add_org_message`].
    pub signature: Signature,
}

/// The message an identity's key signs to let organization `org` register (or rotate to) it as
/// `name` on chain `chain_id`.
pub fn key_proof_message(chain_id: &str, org: &str, name: &str, key: &PublicKey) -> Digest {
    hash_parts(
        "netchain/identity/key-proof/v1",
        &[chain_id.as_bytes(), org.as_bytes(), name.as_bytes(), &key.0],
    )
}

/// The message admins of existing organizations sign to approve adding `org` on chain
/// `chain_id`.
pub fn add_org_message(chain_id: &str, org: &Organization) -> Digest {
    hash_parts(
        "netchain/identity/add-org/v1",
        &[chain_id.as_bytes(), &codec::encode(org)],
    )
}

/// Longest life of a one-time access token.
pub const TOKEN_LIFETIME_MAX_MS: u64 = 5 * 60_000;

/// A one-time access token: a registered client's signed request for a session with one node,
/// usable once, until `expires_ms`. Replayed, expired, foreign (another node's or another
/// chain's) and unregistered clients' tokens are refused by the node.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessToken {
    /// Chain the node serves.
    pub chain_id: String,
    /// The client's key (an active client or device identity).
    pub client: PublicKey,
    /// The node the session is for (its validator key).
    pub node: PublicKey,
    /// Fresh random bytes: each token is used once.
    pub nonce: crate::Reference,
    /// Wall-clock time it was made, ms since the Unix epoch (a node refuses tokens made before
    /// it started, so a restart cannot reopen them).
    pub issued_ms: u64,
    /// Wall-clock expiry, ms since the Unix epoch (at most five minutes after `issued_ms`).
    pub expires_ms: u64,
    /// The client's signature over [`AccessToken::signing_message`].
    pub signature: Signature,
}

impl AccessToken {
    /// The message the client signs.
    pub fn signing_message(&self) -> Digest {
        hash_parts(
            "netchain/identity/access-token/v1",
            &[
                self.chain_id.as_bytes(),
                &self.client.0,
                &self.node.0,
                &self.nonce.0,
                &self.issued_ms.to_le_bytes(),
                &self.expires_ms.to_le_bytes(),
            ],
        )
    }
}

/// Operations of the `identity` module.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum IdentityOp {
    /// Adds an organization, approved by admins of more than half of the active ones.
    AddOrg {
        /// The new organization.
        org: Organization,
        /// Approvals, one per approving organization.
        approvals: Vec<OrgApproval>,
    },
    /// Replaces an organization's admin keys (signed by one of its current admins).
    SetAdmins {
        /// Organization.
        org: String,
        /// New admin keys.
        admins: Vec<PublicKey>,
    },
    /// Registers a node, client or device under the sender's organization.
    Register {
        /// Organization (the sender must be one of its admins).
        org: String,
        /// The identity.
        identity: IdentitySpec,
        /// The identity key's signature over [`key_proof_message`]: only the key's holder can
        /// let an organization register it (no one can claim another's key).
        key_proof: Signature,
    },
    /// Replaces an identity's key; the old key is refused from then on.
    Rotate {
        /// Organization.
        org: String,
        /// Identity name.
        name: String,
        /// The new key.
        new_key: PublicKey,
        /// The new key's signature over [`key_proof_message`].
        key_proof: Signature,
    },
    /// Sets an identity's status: `suspended`, `active` (resume) or `revoked` (final).
    SetStatus {
        /// Organization.
        org: String,
        /// Identity name.
        name: String,
        /// New status.
        status: IdentityStatus,
    },
}

impl IdentityOp {
    /// The operation's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AddOrg { .. } => "add_org",
            Self::SetAdmins { .. } => "set_admins",
            Self::Register { .. } => "register",
            Self::Rotate { .. } => "rotate",
            Self::SetStatus {
                status: IdentityStatus::Revoked,
                ..
            } => "revoke",
            Self::SetStatus {
                status: IdentityStatus::Suspended,
                ..
            } => "suspend",
            Self::SetStatus {
                status: IdentityStatus::Active,
                ..
            } => "resume",
        }
    }
}

/// The registry a genesis starts with: the founding organizations and their identities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityGenesis {
    /// Founding organizations (at least one).
    pub organizations: Vec<GenesisOrg>,
    /// Transactions are accepted only from active registered identities (clients, devices,
    /// nodes); identity and registry operations are exempt, since their own rules say who may
    /// sign them. Enforced by execution, so a block cannot smuggle in a stranger's transaction.
    #[serde(default)]
    pub require_registered_senders: bool,
}

/// A founding organization with the identities it starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisOrg {
    /// The organization.
    #[serde(flatten)]
    pub org: Organization,
    /// Its nodes, clients and devices.
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
}

impl IdentityGenesis {
    /// Checks the founding registry: 1 to 256 organizations with valid fields, no organization,
    /// identity name (within its organization) or key twice.
    pub fn validate(&self) -> Result<(), String> {
        if self.organizations.is_empty() || self.organizations.len() > ORGS_MAX {
            return Err(format!("1 to {ORGS_MAX} organizations"));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for go in &self.organizations {
            check_org(&go.org)?;
            if !ids.insert(go.org.id.as_str()) {
                return Err(format!("organization {} twice", go.org.id));
            }
            if go.identities.len() > MEMBERS_MAX as usize {
                return Err(format!("at most {MEMBERS_MAX} identities per organization"));
            }
            let mut names = std::collections::BTreeSet::new();
            for spec in &go.identities {
                check_identity(spec).map_err(|e| format!("{}/{}: {e}", go.org.id, spec.name))?;
                if !names.insert(spec.name.as_str()) {
                    return Err(format!("{}/{} twice", go.org.id, spec.name));
                }
                if !keys.insert(spec.key) {
                    return Err(format!("key {} registered twice", spec.key));
                }
            }
        }
        Ok(())
    }
}

/// Checks an organization id: 1 to 32 bytes of `a-z 0-9 -`.
pub fn valid_org_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ORG_ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks an organization's fields; the message says what is wrong.
pub fn check_org(org: &Organization) -> Result<(), String> {
    if !valid_org_id(&org.id) {
        return Err(format!(
            "organization id {:?}: 1 to {ORG_ID_MAX} of a-z 0-9 -",
            org.id
        ));
    }
    if org.name.len() > NAME_MAX {
        return Err(format!("organization name: at most {NAME_MAX} bytes"));
    }
    check_admins(&org.admins)
}

/// Checks a list of admin keys: 1 to 8, distinct.
pub fn check_admins(admins: &[PublicKey]) -> Result<(), String> {
    if admins.is_empty() || admins.len() > ADMINS_MAX {
        return Err(format!("1 to {ADMINS_MAX} admin keys"));
    }
    let mut keys = admins.to_vec();
    keys.sort();
    keys.dedup();
    if keys.len() != admins.len() {
        return Err("duplicate admin key".into());
    }
    Ok(())
}

/// Checks an identity's fields; the message says what is wrong.
pub fn check_identity(spec: &IdentitySpec) -> Result<(), String> {
    if spec.name.is_empty() || spec.name.len() > NAME_MAX || spec.name.contains('/') {
        return Err(format!("identity name: 1 to {NAME_MAX} bytes, no '/'"));
    }
    match &spec.kind {
        IdentityKind::Node { chains, .. } => {
            if chains.is_empty() || chains.len() > CHAINS_PER_NODE_MAX {
                return Err(format!("a node serves 1 to {CHAINS_PER_NODE_MAX} chains"));
            }
            if chains
                .iter()
                .any(|c| c != ANY_CHAIN && !crate::valid_chain_id(c))
            {
                return Err("chains: chain ids or \"*\"".into());
            }
        }
        IdentityKind::Client { roles } | IdentityKind::Device { roles } => {
            if roles.len() > ROLES_MAX || roles.iter().any(|r| r.is_empty() || r.len() > ROLE_MAX) {
                return Err(format!(
                    "at most {ROLES_MAX} roles of 1 to {ROLE_MAX} bytes"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_json() {
        let org = Organization {
            id: "telco-a".into(),
            name: "Telco A".into(),
            admins: vec![PublicKey([1; 32])],
        };
        assert!(check_org(&org).is_ok());
        assert!(check_org(&Organization {
            id: "Telco".into(),
            ..org.clone()
        })
        .is_err());
        assert!(check_org(&Organization {
            admins: vec![PublicKey([1; 32]); 2],
            ..org.clone()
        })
        .is_err());
        let node = IdentitySpec {
            name: "validator-0".into(),
            key: PublicKey([2; 32]),
            kind: IdentityKind::Node {
                role: NodeRole::Validator,
                chains: vec!["netchain-root".into()],
            },
            expires_ms: None,
        };
        assert!(check_identity(&node).is_ok());
        let json = serde_json::to_string(&node).unwrap();
        assert!(json.contains("\"kind\":\"node\""), "{json}");
        assert_eq!(serde_json::from_str::<IdentitySpec>(&json).unwrap(), node);
        let bad = IdentitySpec {
            kind: IdentityKind::Node {
                role: NodeRole::Relay,
                chains: vec!["Bad Chain".into()],
            },
            ..node.clone()
        };
        assert!(check_identity(&bad).is_err());
        assert!(check_identity(&IdentitySpec {
            name: "a/b".into(),
            ..node
        })
        .is_err());
    }
}
