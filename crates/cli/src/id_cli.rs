//! `netchain id ...`: the identity registry (Network ID) from the command line: organizations,
//! nodes, clients and devices; rotation, suspension and revocation; a key's standing with a
//! proof checked against the committee keys in the genesis file.

use crate::currency_cli::{print_json, send, Signer};
use crate::parse_duration;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use netchain_api::identity::{IdentityResponse, KeyResponse, OrgsResponse};
use netchain_client::Client;
use netchain_config::Genesis;
use netchain_crypto::{KeyFile, Keypair};
use netchain_execution::identity::OrgRecord;
use netchain_types::identity::{
    add_org_message, key_proof_message, IdentityKind, IdentityOp, IdentitySpec, IdentityStatus,
    NodeRole, OrgApproval, Organization,
};
use netchain_types::{Payload, PublicKey};
use std::path::PathBuf;

/// `netchain id ...`
#[derive(Subcommand)]
pub enum IdCommand {
    /// Organizations: add (with approvals of more than half of the existing ones), approve,
    /// replace admins, show.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Nodes: register a node key under an organization.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Clients and devices: register an API key under an organization.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Replaces an identity's key; the old key is refused from the next block on.
    Rotate {
        #[command(flatten)]
        signer: Signer,
        /// Organization (the signer must be one of its admins).
        #[arg(long)]
        org: String,
        /// Identity name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        new: IdentityKeyArgs,
    },
    /// Signs, with an identity's key, its consent to be registered (or rotated to) as
    /// `--org`/`--name`, and prints the proof for `--key-proof` (for an admin who does not hold
    /// the key).
    ProveKey {
        /// Node API address (for the chain id).
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// The identity's key file.
        #[arg(long)]
        key: PathBuf,
        /// Organization that will register it.
        #[arg(long)]
        org: String,
        /// Name it will have.
        #[arg(long)]
        name: String,
    },
    /// Revokes an identity for good: nodes close its connections within one block.
    Revoke(StatusArgs),
    /// Suspends an identity (refused until resumed).
    Suspend(StatusArgs),
    /// Resumes a suspended identity.
    Resume(StatusArgs),
    /// Signs a one-time access token for a node with a client key and prints it (JSON for
    /// `POST /v1/auth/session`).
    Token {
        /// Node API address (the token is bound to this node).
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// Key file of the registered client or device.
        #[arg(long)]
        key: PathBuf,
        /// How long the token stays usable (at most 5m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        valid: std::time::Duration,
    },
    /// Opens a session on a node with a fresh one-time token and prints the session secret
    /// (send it as `Authorization: Bearer <session>`).
    Session {
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// Key file of the registered client or device.
        #[arg(long)]
        key: PathBuf,
    },
    /// Shows a key's standing (`--key`), or an identity (`--org` and `--name`).
    Show {
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// Public key to look up.
        #[arg(long, conflicts_with_all = ["org", "name"])]
        key: Option<PublicKey>,
        /// Organization of the identity to show.
        #[arg(long, requires = "name")]
        org: Option<String>,
        /// Name of the identity to show.
        #[arg(long, requires = "org")]
        name: Option<String>,
        /// Check the answer's proof against the committee keys of this genesis file.
        #[arg(long, requires = "key")]
        verify: Option<PathBuf>,
    },
}

/// Which identity to change.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    signer: Signer,
    /// Organization (the signer must be one of its admins).
    #[arg(long)]
    org: String,
    /// Identity name.
    #[arg(long)]
    name: String,
}

/// The organization being added or approved.
#[derive(Args, Clone)]
pub struct NewOrg {
    /// Organization id (a-z 0-9 -).
    #[arg(long)]
    id: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// Admin public keys, comma-separated (1 to 8).
    #[arg(long, value_delimiter = ',', required = true)]
    admins: Vec<PublicKey>,
}

impl NewOrg {
    fn org(&self) -> Organization {
        Organization {
            id: self.id.clone(),
            name: self.name.clone(),
            admins: self.admins.clone(),
        }
    }
}

/// `netchain id org ...`
#[derive(Subcommand)]
pub enum OrgCommand {
    /// Adds an organization. Approvals come from `--approve ORG=ADMIN_KEY_FILE` (signed here)
    /// and `--approval FILE` (made by `netchain id org approve`); more than half of the
    /// organizations must approve.
    Add {
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        org: NewOrg,
        /// An approving organization and the key file of one of its admins.
        #[arg(long = "approve", value_name = "ORG=KEY_FILE")]
        approve: Vec<String>,
        /// An approval made elsewhere (JSON from `netchain id org approve`).
        #[arg(long = "approval", value_name = "FILE")]
        approvals: Vec<PathBuf>,
    },
    /// Signs one organization's approval of a new organization and prints it as JSON.
    Approve {
        /// Node API address (for the chain id).
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        #[command(flatten)]
        org: NewOrg,
        /// The approving organization.
        #[arg(long = "as")]
        approver: String,
        /// Key file of one of its admins.
        #[arg(long)]
        key: PathBuf,
    },
    /// Replaces an organization's admin keys.
    SetAdmins {
        #[command(flatten)]
        signer: Signer,
        /// Organization (the signer must be one of its admins).
        #[arg(long)]
        org: String,
        /// New admin public keys, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        admins: Vec<PublicKey>,
    },
    /// Lists the organizations, or shows one.
    Show {
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// Organization id (default: all).
        #[arg(long)]
        id: Option<String>,
    },
}

/// A node's role.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Votes in a committee.
    Validator,
    /// Follows a chain and serves reads.
    FullNode,
    /// Relays anchors to the root chain.
    Relay,
}

impl From<RoleArg> for NodeRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Validator => NodeRole::Validator,
            RoleArg::FullNode => NodeRole::FullNode,
            RoleArg::Relay => NodeRole::Relay,
        }
    }
}

/// An identity's key and its consent: its key file (signed here), or its public key with a
/// proof made by `netchain id prove-key`.
#[derive(Args)]
pub struct IdentityKeyArgs {
    /// The identity's key file (its holder's consent is signed with it here).
    #[arg(long, conflicts_with_all = ["public_key", "key_proof"], required_unless_present = "public_key")]
    identity_key: Option<PathBuf>,
    /// The identity's public key (with `--key-proof`).
    #[arg(long, requires = "key_proof")]
    public_key: Option<PublicKey>,
    /// The key's consent from `netchain id prove-key` (hex).
    #[arg(long, requires = "public_key")]
    key_proof: Option<netchain_types::Signature>,
}

impl IdentityKeyArgs {
    /// The key and its proof for registering it as `org`/`name` on `chain`.
    fn resolve(
        &self,
        chain: &str,
        org: &str,
        name: &str,
    ) -> anyhow::Result<(PublicKey, netchain_types::Signature)> {
        match (&self.identity_key, self.public_key, self.key_proof) {
            (Some(file), _, _) => {
                let kp: Keypair = KeyFile::load(file)?;
                let proof = kp.sign(&key_proof_message(chain, org, name, &kp.public()));
                Ok((kp.public(), proof))
            }
            (None, Some(pk), Some(proof)) => Ok((pk, proof)),
            _ => bail!("give --identity-key FILE, or --public-key with --key-proof"),
        }
    }
}

/// Fields every new identity has.
#[derive(Args)]
pub struct NewIdentity {
    #[command(flatten)]
    signer: Signer,
    /// Organization (the signer must be one of its admins).
    #[arg(long)]
    org: String,
    /// Name within the organization.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    key: IdentityKeyArgs,
    /// Refused after this long (e.g. 30d, 12h); default: no expiry.
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<std::time::Duration>,
}

/// `netchain id node ...`
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Registers a node.
    Add {
        #[command(flatten)]
        identity: NewIdentity,
        /// Role.
        #[arg(long, value_enum, default_value = "validator")]
        role: RoleArg,
        /// Chains it may connect to, comma-separated (`*` for all).
        #[arg(long, value_delimiter = ',', required = true)]
        chains: Vec<String>,
    },
}

/// `netchain id client ...`
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Registers a client (or, with `--device`, a device).
    Add {
        #[command(flatten)]
        identity: NewIdentity,
        /// Application roles, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Register a device rather than a client.
        #[arg(long)]
        device: bool,
    },
}

/// Runs `netchain id ...`.
pub async fn run(cmd: IdCommand) -> anyhow::Result<()> {
    match cmd {
        IdCommand::Org(c) => run_org(c).await,
        IdCommand::Node(NodeCommand::Add {
            identity,
            role,
            chains,
        }) => {
            register(
                identity,
                IdentityKind::Node {
                    role: role.into(),
                    chains,
                },
            )
            .await
        }
        IdCommand::Client(ClientCommand::Add {
            identity,
            roles,
            device,
        }) => {
            let kind = if device {
                IdentityKind::Device { roles }
            } else {
                IdentityKind::Client { roles }
            };
            register(identity, kind).await
        }
        IdCommand::Rotate {
            signer,
            org,
            name,
            new,
        } => {
            let chain = chain_id(&signer.node).await?;
            let (new_key, key_proof) = new.resolve(&chain, &org, &name)?;
            op(
                &signer,
                IdentityOp::Rotate {
                    org,
                    name,
                    new_key,
                    key_proof,
                },
            )
            .await
        }
        IdCommand::ProveKey {
            node,
            key,
            org,
            name,
        } => {
            let chain = chain_id(&node).await?;
            let kp: Keypair = KeyFile::load(&key)?;
            let proof = kp.sign(&key_proof_message(&chain, &org, &name, &kp.public()));
            println!("public key {}", kp.public());
            println!("key proof  {proof}");
            Ok(())
        }
        IdCommand::Revoke(a) => set_status(a, IdentityStatus::Revoked).await,
        IdCommand::Suspend(a) => set_status(a, IdentityStatus::Suspended).await,
        IdCommand::Resume(a) => set_status(a, IdentityStatus::Active).await,
        IdCommand::Show {
            node,
            key,
            org,
            name,
            verify,
        } => show(&node, key, org, name, verify).await,
        IdCommand::Token { node, key, valid } => {
            let kp: Keypair = KeyFile::load(&key)?;
            let token = Client::new(&node)
                .access_token(&kp, valid.as_millis() as u64)
                .await?;
            print_json(&netchain_api::auth::SessionRequest { token })
        }
        IdCommand::Session { node, key } => {
            let kp: Keypair = KeyFile::load(&key)?;
            let c = Client::new(&node);
            let token = c.access_token(&kp, 60_000).await?;
            print_json(&c.open_session(&token).await?)
        }
    }
}

async fn op(signer: &Signer, op: IdentityOp) -> anyhow::Result<()> {
    send(signer, Payload::Identity(op)).await.map(|_| ())
}

async fn set_status(a: StatusArgs, status: IdentityStatus) -> anyhow::Result<()> {
    op(
        &a.signer,
        IdentityOp::SetStatus {
            org: a.org,
            name: a.name,
            status,
        },
    )
    .await
}

async fn register(n: NewIdentity, kind: IdentityKind) -> anyhow::Result<()> {
    let expires_ms = n
        .expires_in
        .map(|d| netchain_node::now_ms().saturating_add(d.as_millis() as u64));
    let chain = chain_id(&n.signer.node).await?;
    let (key, key_proof) = n.key.resolve(&chain, &n.org, &n.name)?;
    op(
        &n.signer,
        IdentityOp::Register {
            org: n.org,
            identity: IdentitySpec {
                name: n.name,
                key,
                kind,
                expires_ms,
            },
            key_proof,
        },
    )
    .await
}

async fn chain_id(node: &str) -> anyhow::Result<String> {
    Ok(Client::new(node)
        .status()
        .await
        .context("reading node status")?
        .chain_id)
}

fn approval(
    chain: &str,
    org: &Organization,
    approver: &str,
    key: &std::path::Path,
) -> anyhow::Result<OrgApproval> {
    let kp: Keypair = KeyFile::load(key)?;
    Ok(OrgApproval {
        org: approver.to_string(),
        admin: kp.public(),
        signature: kp.sign(&add_org_message(chain, org)),
    })
}

async fn run_org(cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Add {
            signer,
            org,
            approve,
            approvals,
        } => {
            let chain = chain_id(&signer.node).await?;
            let org = org.org();
            let mut all = Vec::new();
            for a in &approve {
                let Some((approver, file)) = a.split_once('=') else {
                    bail!("--approve takes ORG=KEY_FILE, got {a:?}");
                };
                all.push(approval(
                    &chain,
                    &org,
                    approver,
                    std::path::Path::new(file),
                )?);
            }
            for file in &approvals {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let a: OrgApproval = serde_json::from_str(&text)
                    .with_context(|| format!("parsing the approval in {}", file.display()))?;
                all.push(a);
            }
            op(
                &signer,
                IdentityOp::AddOrg {
                    org,
                    approvals: all,
                },
            )
            .await
        }
        OrgCommand::Approve {
            node,
            org,
            approver,
            key,
        } => {
            let chain = chain_id(&node).await?;
            print_json(&approval(&chain, &org.org(), &approver, &key)?)
        }
        OrgCommand::SetAdmins {
            signer,
            org,
            admins,
        } => op(&signer, IdentityOp::SetAdmins { org, admins }).await,
        OrgCommand::Show { node, id } => {
            let c = Client::new(&node);
            match id {
                Some(id) => print_json(
                    &c.get_typed::<OrgRecord>(&format!("/v1/identity/orgs/{id}"))
                        .await?,
                ),
                None => print_json(&c.get_typed::<OrgsResponse>("/v1/identity/orgs").await?),
            }
        }
    }
}

async fn show(
    node: &str,
    key: Option<PublicKey>,
    org: Option<String>,
    name: Option<String>,
    verify: Option<PathBuf>,
) -> anyhow::Result<()> {
    let c = Client::new(node);
    if let (Some(org), Some(name)) = (org, name) {
        let r: IdentityResponse = c
            .get_typed(&format!("/v1/identity/orgs/{org}/identities/{name}"))
            .await?;
        return print_json(&r);
    }
    let Some(key) = key else {
        bail!("give --key, or --org and --name");
    };
    let proof = if verify.is_some() { "?proof=true" } else { "" };
    let answer: KeyResponse = c
        .get_typed(&format!("/v1/identity/keys/{key}{proof}"))
        .await?;
    if let Some(path) = verify {
        let genesis = Genesis::load(&path)?;
        let standing = netchain_client::verify_key_standing(
            &genesis.committee,
            &genesis.chain_id,
            &key,
            netchain_node::now_ms(),
            &answer,
        )
        .map_err(|e| anyhow::anyhow!("proof refused: {e}"))?;
        print_json(&answer.standing)?;
        println!(
            "verified: {key} is {} as of height {} (checkpoint signed by a quorum of {})",
            standing.label(),
            answer.height,
            path.display()
        );
        return Ok(());
    }
    print_json(&answer)
}
