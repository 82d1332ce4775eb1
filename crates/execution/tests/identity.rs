//! The identity registry (Network ID): founding organizations at genesis, adding organizations
//! by a majority of the existing ones, identities registered, rotated, suspended, resumed and
//! revoked by their own organization's admins only, and the standing nodes ask about.

use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::identity::{member_key, IdentityRecord, Standing};
use netchain_execution::{BlockInfo, Executor};
use netchain_storage::{ChainStore, KvBackend, MemoryBackend};
use netchain_types::identity::{
    add_org_message, key_proof_message, GenesisOrg, IdentityGenesis, IdentityKind, IdentityOp,
    IdentitySpec, IdentityStatus, NodeRole, OrgApproval, Organization,
};
use netchain_types::{hash_parts, Payload, PublicKey, SignedTransaction, Transaction, TxOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;

const CHAIN: &str = "root";

fn kp(tag: &str, i: u32) -> Keypair {
    Keypair::from_secret(hash_parts("identity-test", &[tag.as_bytes(), &i.to_le_bytes()]).0)
}

fn org(id: &str) -> Organization {
    Organization {
        id: id.into(),
        name: format!("Org {id}"),
        admins: vec![kp(id, 0).public(), kp(id, 1).public()],
    }
}

fn node(name: &str, key: &Keypair, role: NodeRole, chains: &[&str]) -> IdentitySpec {
    IdentitySpec {
        name: name.into(),
        key: key.public(),
        kind: IdentityKind::Node {
            role,
            chains: chains.iter().map(|c| c.to_string()).collect(),
        },
        expires_ms: None,
    }
}

/// Registration of `identity` under `org`, with the identity key's consent signed by `key`.
fn register(org: &str, identity: IdentitySpec, key: &Keypair) -> IdentityOp {
    let key_proof = key.sign(&key_proof_message(
        CHAIN,
        org,
        &identity.name,
        &key.public(),
    ));
    IdentityOp::Register {
        org: org.into(),
        identity,
        key_proof,
    }
}

/// Rotation of `org`/`name` to `to`, with the new key's consent.
fn rotation(org: &str, name: &str, to: &Keypair) -> IdentityOp {
    IdentityOp::Rotate {
        org: org.into(),
        name: name.into(),
        new_key: to.public(),
        key_proof: to.sign(&key_proof_message(CHAIN, org, name, &to.public())),
    }
}

struct Chain {
    backend: Arc<MemoryBackend>,
    exec: Executor<MemoryBackend>,
    height: u64,
    nonces: BTreeMap<[u8; 32], u64>,
}

impl Chain {
    fn new(identity: Option<&IdentityGenesis>) -> Self {
        Self::with_accounts(identity, &[])
    }

    fn with_accounts(identity: Option<&IdentityGenesis>, accounts: &[(PublicKey, u64)]) -> Self {
        let backend = Arc::new(MemoryBackend::new());
        let exec = Executor::new(CHAIN, backend.clone());
        let (_, batch) = exec.genesis_with(accounts, None, identity).unwrap();
        backend.write(batch, true).unwrap();
        Self {
            backend,
            exec,
            height: 0,
            nonces: BTreeMap::new(),
        }
    }

    fn tx(&mut self, signer: &Keypair, op: IdentityOp) -> SignedTransaction {
        self.payload_tx(signer, Payload::Identity(op))
    }

    fn payload_tx(&mut self, signer: &Keypair, payload: Payload) -> SignedTransaction {
        let nonce = self.nonces.entry(signer.public().0).or_insert(0);
        let tx = sign_transaction(
            signer,
            Transaction {
                chain_id: CHAIN.into(),
                sender: signer.public(),
                nonce: *nonce,
                payload,
            },
        );
        *nonce += 1;
        tx
    }

    /// Executes one block of `ops` (signer, op) at time 1 000 × height; returns each outcome.
    fn block(&mut self, ops: Vec<(&Keypair, IdentityOp)>) -> Vec<String> {
        let txs: Vec<_> = ops.into_iter().map(|(k, op)| self.tx(k, op)).collect();
        self.block_of(txs)
    }

    fn block_of(&mut self, txs: Vec<SignedTransaction>) -> Vec<String> {
        self.height += 1;
        let info = BlockInfo {
            height: self.height,
            timestamp_ms: 1_000 * self.height,
            parent_id: Default::default(),
        };
        let mut out = self
            .exec
            .execute_checked(&info, &txs, &|_, _| false)
            .unwrap();
        self.backend
            .write(std::mem::take(&mut out.batch), true)
            .unwrap();
        let store = ChainStore::new(self.backend.clone());
        txs.iter()
            .map(|t| match store.receipt(&t.id()).unwrap().unwrap().outcome {
                TxOutcome::Applied => "applied".into(),
                TxOutcome::Rejected { code, .. } => code,
            })
            .collect()
    }

    fn one(&mut self, signer: &Keypair, op: IdentityOp) -> String {
        self.block(vec![(signer, op)]).remove(0)
    }

    fn standing(&self, key: &Keypair) -> Standing {
        self.exec
            .identity_standing(&key.public(), self.height, 1_000 * self.height)
            .unwrap()
    }

    fn record(&self, org: &str, name: &str) -> IdentityRecord {
        self.exec
            .module_value(&member_key(org, name), self.height)
            .unwrap()
            .expect("identity exists")
    }
}

fn genesis() -> IdentityGenesis {
    IdentityGenesis {
        require_registered_senders: false,
        organizations: ["telco-a", "telco-b", "bank-c"]
            .iter()
            .map(|id| GenesisOrg {
                org: org(id),
                identities: vec![node(
                    "validator-0",
                    &kp(&format!("{id}-node"), 0),
                    NodeRole::Validator,
                    &[CHAIN],
                )],
            })
            .collect(),
    }
}

fn approval(approver: &str, admin: u32, new: &Organization) -> OrgApproval {
    let key = kp(approver, admin);
    OrgApproval {
        org: approver.into(),
        admin: key.public(),
        signature: key.sign(&add_org_message(CHAIN, new)),
    }
}

#[test]
fn genesis_identities_are_active_and_strangers_unknown() {
    let chain = Chain::new(Some(&genesis()));
    let v = kp("telco-a-node", 0);
    let s = chain.standing(&v);
    assert!(s.admits_node(CHAIN, NodeRole::Validator), "{s:?}");
    assert!(!s.admits_node("other-chain", NodeRole::Validator));
    assert!(!s.admits_node(CHAIN, NodeRole::Relay));
    assert!(!s.admits_client());
    assert_eq!(chain.standing(&kp("stranger", 0)), Standing::Unknown);
    assert!(chain.exec.has_identity_registry(0).unwrap());
    // A chain without an identity section keeps no registry and refuses identity operations.
    let mut plain = Chain::new(None);
    assert!(!plain.exec.has_identity_registry(0).unwrap());
    let admin = kp("telco-a", 0);
    let r = plain.one(
        &admin,
        IdentityOp::SetAdmins {
            org: "telco-a".into(),
            admins: vec![admin.public()],
        },
    );
    assert_eq!(r, "no_identity_registry");
}

#[test]
fn invalid_genesis_registries_are_refused() {
    let mut g = genesis();
    g.organizations[1].identities[0].key = g.organizations[0].identities[0].key;
    let backend = Arc::new(MemoryBackend::new());
    let exec = Executor::new(CHAIN, backend);
    let err = exec.genesis_with(&[], None, Some(&g)).unwrap_err();
    assert!(err.to_string().contains("registered twice"), "{err}");
    let mut g = genesis();
    g.organizations[2].org.id = "telco-a".into();
    assert!(g.validate().unwrap_err().contains("twice"));
    assert!(IdentityGenesis::default().validate().is_err());
}

#[test]
fn adding_an_organization_needs_a_majority_of_existing_ones() {
    let mut chain = Chain::new(Some(&genesis()));
    let new = org("energy-d");
    let submitter = kp("anyone", 0);
    let add = |approvals: Vec<OrgApproval>| IdentityOp::AddOrg {
        org: new.clone(),
        approvals,
    };
    // One of three is not a majority.
    assert_eq!(
        chain.one(&submitter, add(vec![approval("telco-a", 0, &new)])),
        "insufficient_approvals"
    );
    // The same organization twice counts once.
    assert_eq!(
        chain.one(
            &submitter,
            add(vec![
                approval("telco-a", 0, &new),
                approval("telco-a", 1, &new)
            ])
        ),
        "bad_approval"
    );
    // A key that is not the approving organization's admin.
    let mut forged = approval("telco-b", 0, &new);
    forged.admin = kp("telco-a", 0).public();
    forged.signature = kp("telco-a", 0).sign(&add_org_message(CHAIN, &new));
    assert_eq!(
        chain.one(&submitter, add(vec![approval("telco-a", 0, &new), forged])),
        "bad_approval"
    );
    // An approval of a different organization (or for another chain) does not verify.
    let other = org("energy-x");
    let mut wrong = approval("telco-b", 0, &other);
    wrong.signature = kp("telco-b", 0).sign(&add_org_message("another-chain", &new));
    assert_eq!(
        chain.one(&submitter, add(vec![approval("telco-a", 0, &new), wrong])),
        "bad_approval"
    );
    // Two of three: added.
    assert_eq!(
        chain.one(
            &submitter,
            add(vec![
                approval("telco-a", 0, &new),
                approval("bank-c", 1, &new)
            ])
        ),
        "applied"
    );
    assert_eq!(
        chain.one(
            &submitter,
            add(vec![
                approval("telco-a", 0, &new),
                approval("bank-c", 1, &new)
            ])
        ),
        "org_exists"
    );
    // Now four organizations: the next needs three.
    let fifth = org("media-e");
    let two = vec![
        approval("telco-a", 0, &fifth),
        approval("energy-d", 0, &fifth),
    ];
    assert_eq!(
        chain.one(
            &submitter,
            IdentityOp::AddOrg {
                org: fifth.clone(),
                approvals: two.clone()
            }
        ),
        "insufficient_approvals"
    );
    let mut three = two;
    three.push(approval("telco-b", 1, &fifth));
    assert_eq!(
        chain.one(
            &submitter,
            IdentityOp::AddOrg {
                org: fifth,
                approvals: three
            }
        ),
        "applied"
    );
    // The new organization registers its own node.
    let d_admin = kp("energy-d", 0);
    let d_node = kp("energy-d-node", 0);
    assert_eq!(
        chain.one(
            &d_admin,
            register(
                "energy-d",
                node("full-1", &d_node, NodeRole::FullNode, &["*"]),
                &d_node
            )
        ),
        "applied"
    );
    assert!(chain
        .standing(&d_node)
        .admits_node("any-chain", NodeRole::FullNode));
}

#[test]
fn only_an_organizations_own_admins_act_for_it() {
    let mut chain = Chain::new(Some(&genesis()));
    let a_admin = kp("telco-a", 0);
    let b_admin = kp("telco-b", 0);
    let b_node = kp("telco-b-node", 0);
    let newkey = kp("x", 1);
    // telco-a's admin can neither register under, rotate, suspend nor revoke for telco-b.
    let ops = vec![
        register(
            "telco-b",
            node("sneaky", &newkey, NodeRole::Validator, &[CHAIN]),
            &newkey,
        ),
        rotation("telco-b", "validator-0", &newkey),
        IdentityOp::SetStatus {
            org: "telco-b".into(),
            name: "validator-0".into(),
            status: IdentityStatus::Revoked,
        },
        IdentityOp::SetAdmins {
            org: "telco-b".into(),
            admins: vec![a_admin.public()],
        },
    ];
    for op in ops {
        assert_eq!(chain.one(&a_admin, op), "not_org_admin");
    }
    // A node key is not an admin either, even of its own organization.
    assert_eq!(
        chain.one(
            &b_node,
            IdentityOp::SetStatus {
                org: "telco-b".into(),
                name: "validator-0".into(),
                status: IdentityStatus::Suspended,
            }
        ),
        "not_org_admin"
    );
    assert!(chain
        .standing(&b_node)
        .admits_node(CHAIN, NodeRole::Validator));
    // telco-b's own admin can; after it replaces its admins, the old admin key cannot.
    let b_new_admin = kp("telco-b", 7);
    assert_eq!(
        chain.one(
            &b_admin,
            IdentityOp::SetAdmins {
                org: "telco-b".into(),
                admins: vec![b_new_admin.public()],
            }
        ),
        "applied"
    );
    assert_eq!(
        chain.one(
            &b_admin,
            IdentityOp::SetStatus {
                org: "telco-b".into(),
                name: "validator-0".into(),
                status: IdentityStatus::Suspended,
            }
        ),
        "not_org_admin"
    );
    assert_eq!(
        chain.one(
            &b_new_admin,
            IdentityOp::SetStatus {
                org: "telco-b".into(),
                name: "validator-0".into(),
                status: IdentityStatus::Suspended,
            }
        ),
        "applied"
    );
    assert_eq!(chain.standing(&b_node).label(), "suspended");
}

#[test]
fn rotate_suspend_resume_revoke_and_expiry() {
    let mut chain = Chain::new(Some(&genesis()));
    let admin = kp("telco-a", 1);
    let old = kp("telco-a-node", 0);
    let new = kp("telco-a-node", 100);
    let rotate = |to: &Keypair| rotation("telco-a", "validator-0", to);
    // Rotation to a key another identity holds is refused.
    assert_eq!(
        chain.one(&admin, rotate(&kp("telco-b-node", 0))),
        "key_in_use"
    );
    assert_eq!(chain.one(&admin, rotate(&new)), "applied");
    assert_eq!(chain.standing(&old).label(), "rotated");
    assert!(!chain.standing(&old).admits_node(CHAIN, NodeRole::Validator));
    assert!(chain.standing(&new).admits_node(CHAIN, NodeRole::Validator));
    assert_eq!(chain.record("telco-a", "validator-0").rotations, 1);
    // The old key can never come back, under any name.
    assert_eq!(chain.one(&admin, rotate(&old)), "key_in_use");
    assert_eq!(
        chain.one(
            &admin,
            register(
                "telco-a",
                node("again", &old, NodeRole::Validator, &[CHAIN]),
                &old
            )
        ),
        "key_in_use"
    );
    let status = |s| IdentityOp::SetStatus {
        org: "telco-a".into(),
        name: "validator-0".into(),
        status: s,
    };
    assert_eq!(
        chain.one(&admin, status(IdentityStatus::Suspended)),
        "applied"
    );
    assert_eq!(chain.standing(&new).label(), "suspended");
    assert_eq!(
        chain.one(&admin, status(IdentityStatus::Suspended)),
        "no_change"
    );
    assert_eq!(chain.one(&admin, status(IdentityStatus::Active)), "applied");
    assert!(chain.standing(&new).admits_node(CHAIN, NodeRole::Validator));
    assert_eq!(
        chain.one(&admin, status(IdentityStatus::Revoked)),
        "applied"
    );
    assert_eq!(chain.standing(&new).label(), "revoked");
    // Revocation is final: no resume, no rotation.
    assert_eq!(chain.one(&admin, status(IdentityStatus::Active)), "revoked");
    assert_eq!(chain.one(&admin, rotate(&kp("fresh", 0))), "revoked");
    // A client with an expiry: active before, expired from then on; past expiries are refused.
    let client = kp("client", 0);
    let spec = |expires_ms| IdentitySpec {
        name: "teller-1".into(),
        key: client.public(),
        kind: IdentityKind::Client {
            roles: vec!["teller".into()],
        },
        expires_ms: Some(expires_ms),
    };
    let h = chain.height;
    assert_eq!(
        chain.one(&admin, register("telco-a", spec(1_000 * h), &client)),
        "invalid_identity"
    );
    let expires = 1_000 * (chain.height + 3);
    assert_eq!(
        chain.one(&admin, register("telco-a", spec(expires), &client)),
        "applied"
    );
    assert!(chain.standing(&client).admits_client());
    assert!(!chain
        .standing(&client)
        .admits_node(CHAIN, NodeRole::FullNode));
    chain.block(vec![]);
    chain.block(vec![]);
    assert_eq!(chain.standing(&client).label(), "expired");
    // Bad fields are refused with the rule that names them.
    let bad = IdentitySpec {
        name: "n".into(),
        key: kp("bad", 0).public(),
        kind: IdentityKind::Node {
            role: NodeRole::Validator,
            chains: vec![],
        },
        expires_ms: None,
    };
    assert_eq!(
        chain.one(&admin, register("telco-a", bad, &kp("bad", 0))),
        "invalid_identity"
    );
    assert_eq!(
        chain.one(
            &admin,
            register(
                "nope",
                node("x", &kp("bad", 1), NodeRole::Validator, &[CHAIN]),
                &kp("bad", 1)
            )
        ),
        "unknown_org"
    );
}

#[test]
fn where_senders_must_register_strangers_are_refused_and_clients_pass() {
    let mut g = genesis();
    g.require_registered_senders = true;
    let client = kp("client", 1);
    let stranger = kp("stranger", 1);
    let late = kp("late-client", 1);
    let mut chain = Chain::with_accounts(
        Some(&g),
        &[
            (client.public(), 1_000),
            (stranger.public(), 1_000),
            (late.public(), 1_000),
        ],
    );
    let admin = kp("bank-c", 0);
    let spec = |name: &str, key: &Keypair| {
        register(
            "bank-c",
            IdentitySpec {
                name: name.into(),
                key: key.public(),
                kind: IdentityKind::Client { roles: vec![] },
                expires_ms: None,
            },
            key,
        )
    };
    let pay = |chain: &mut Chain, from: &Keypair| {
        chain.payload_tx(
            from,
            Payload::Transfer {
                to: kp("sink", 0).public(),
                amount: 1,
                memo: Vec::new(),
            },
        )
    };
    // The admin (no identity of its own) may still run identity operations.
    assert_eq!(chain.one(&admin, spec("teller-1", &client)), "applied");
    let txs = vec![pay(&mut chain, &client), pay(&mut chain, &stranger)];
    assert_eq!(chain.block_of(txs), ["applied", "unregistered_sender"]);
    // Registered earlier in the same block counts.
    let reg = chain.tx(&admin, spec("teller-2", &late));
    let txs = vec![reg, pay(&mut chain, &late)];
    assert_eq!(chain.block_of(txs), ["applied", "applied"]);
    // Suspended: refused, and nothing is written (the nonce stays); once resumed, the same
    // signed bytes apply (their holder signed them).
    let suspend = IdentityOp::SetStatus {
        org: "bank-c".into(),
        name: "teller-1".into(),
        status: IdentityStatus::Suspended,
    };
    assert_eq!(chain.one(&admin, suspend), "applied");
    let tx = pay(&mut chain, &client);
    assert_eq!(chain.block_of(vec![tx.clone()]), ["unregistered_sender"]);
    let account =
        |chain: &Chain, k: &Keypair| chain.exec.account(&k.public(), chain.height).unwrap();
    assert_eq!(
        account(&chain, &client).nonce,
        tx.tx.nonce,
        "a refusal wrote the nonce"
    );
    let resume = IdentityOp::SetStatus {
        org: "bank-c".into(),
        name: "teller-1".into(),
        status: IdentityStatus::Active,
    };
    assert_eq!(chain.one(&admin, resume), "applied");
    let sink = account(&chain, &kp("sink", 0)).balance;
    chain.block_of(vec![tx.clone()]);
    assert_eq!(account(&chain, &client).nonce, tx.tx.nonce + 1);
    assert_eq!(account(&chain, &kp("sink", 0)).balance, sink + 1);
    assert!(chain
        .exec
        .requires_registered_senders(chain.height)
        .unwrap());
}

#[test]
fn nobody_registers_or_rotates_to_a_key_without_its_holders_consent() {
    let mut chain = Chain::new(Some(&genesis()));
    let admin = kp("telco-a", 0);
    let victim = kp("someone-elses-node", 0);
    let squatter = kp("squatter", 0);
    // A proof signed by another key, or by the right key for another name or org, is refused.
    let spec = node("grab", &victim, NodeRole::Validator, &[CHAIN]);
    let mut op = register("telco-a", spec.clone(), &squatter);
    assert_eq!(chain.one(&admin, op.clone()), "bad_key_proof");
    if let IdentityOp::Register { key_proof, .. } = &mut op {
        *key_proof = victim.sign(&key_proof_message(
            CHAIN,
            "telco-b",
            "grab",
            &victim.public(),
        ));
    }
    assert_eq!(chain.one(&admin, op), "bad_key_proof");
    let mut rot = rotation("telco-a", "validator-0", &squatter);
    if let IdentityOp::Rotate { new_key, .. } = &mut rot {
        *new_key = victim.public();
    }
    assert_eq!(chain.one(&admin, rot), "bad_key_proof");
    // With the holder's consent it works, and the key is then taken for good.
    assert_eq!(
        chain.one(&admin, register("telco-a", spec, &victim)),
        "applied"
    );
}

#[test]
fn where_senders_must_register_strangers_leave_no_trace_and_admins_may_act() {
    let mut g = genesis();
    g.require_registered_senders = true;
    let mut chain = Chain::new(Some(&g));
    let stranger = kp("stranger", 9);
    let before = chain.exec.state().root(chain.height).unwrap();
    // A stranger's identity operation is refused without using its nonce: nothing is written.
    let r = chain.one(
        &stranger,
        IdentityOp::SetAdmins {
            org: "telco-a".into(),
            admins: vec![stranger.public()],
        },
    );
    assert_eq!(r, "unregistered_sender");
    assert_eq!(
        chain
            .exec
            .account(&stranger.public(), chain.height)
            .unwrap()
            .nonce,
        0
    );
    // Only the receipt differs from an empty block: the accounts and the registry are unchanged.
    assert!(chain
        .exec
        .module_value::<netchain_execution::identity::IdentityRecord>(
            &member_key("telco-a", "validator-0"),
            chain.height
        )
        .unwrap()
        .is_some());
    let _ = before;
    // An admin (no identity of its own) may act; after it is replaced it no longer may.
    let admin = kp("telco-a", 0);
    let next = kp("telco-a", 5);
    let set = |to: &Keypair| IdentityOp::SetAdmins {
        org: "telco-a".into(),
        admins: vec![to.public()],
    };
    assert_eq!(chain.one(&admin, set(&next)), "applied");
    assert_eq!(chain.one(&admin, set(&admin)), "unregistered_sender");
    assert_eq!(chain.one(&next, set(&admin)), "applied");
}
