//! The root chain's registry: governance approvals, service-chain registration and epochs, and
//! anchors that must be certified by the registered validators and extend the previous anchor.

use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::registry::{
    anchor_key, chain_key, evidence_key, AnchorRecord, ChainRecord, Evidence,
};
use netchain_execution::{BlockInfo, Executor};
use netchain_storage::{ChainStore, KvBackend, MemoryBackend};
use netchain_types::registry::{
    approval_message, history_key, Anchor, Approval, Governance, RegistryChange, RegistryOp,
    ServiceChain,
};
use netchain_types::{
    hash_parts, CertifiedCheckpoint, Checkpoint, Digest, Payload, SignedTransaction, Transaction,
    TxOutcome, Validator,
};
use std::sync::Arc;

const ROOT: &str = "root";
const SVC: &str = "svc-1";

fn kp(tag: &str, i: u32) -> Keypair {
    Keypair::from_secret(hash_parts("registry-test", &[tag.as_bytes(), &i.to_le_bytes()]).0)
}

/// The root's genesis hash (approvals are bound to it).
fn root_genesis() -> Digest {
    hash_parts("registry-test-root-genesis", &[])
}

fn governors() -> Vec<Keypair> {
    (0..3).map(|i| kp("gov", i)).collect()
}

fn validators(tag: &str) -> (Vec<Keypair>, Vec<Validator>) {
    let keys: Vec<Keypair> = (0..4).map(|i| kp(tag, i)).collect();
    let vals = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Validator {
            public_key: k.public(),
            p2p_address: format!("127.0.0.1:{}", 9000 + i),
            api_address: format!("127.0.0.1:{}", 9100 + i),
        })
        .collect();
    (keys, vals)
}

/// A chain's executor driven block by block with synthetic block ids.
struct Chain {
    backend: Arc<MemoryBackend>,
    exec: Executor<MemoryBackend>,
    height: u64,
    /// Block id per height (index 0: genesis).
    ids: Vec<Digest>,
    roots: Vec<Digest>,
    fork: u8,
}

impl Chain {
    fn new(chain_id: &str, governance: Option<&Governance>, fork: u8) -> Self {
        let backend = Arc::new(MemoryBackend::new());
        let exec = Executor::new(chain_id, backend.clone());
        let (root, batch) = match governance {
            Some(g) => exec.genesis_root(&[], g, root_genesis()).unwrap(),
            None => exec.genesis(&[]).unwrap(),
        };
        backend.write(batch, true).unwrap();
        Self {
            backend,
            exec,
            height: 0,
            ids: vec![hash_parts(
                "block",
                &[chain_id.as_bytes(), &0u64.to_le_bytes()],
            )],
            roots: vec![root],
            fork,
        }
    }

    /// Executes the next block; returns each transaction's outcome code.
    fn block(&mut self, txs: &[SignedTransaction]) -> Vec<String> {
        self.height += 1;
        let info = BlockInfo {
            height: self.height,
            timestamp_ms: 1_000 * self.height,
            parent_id: self.ids[self.height as usize - 1],
        };
        let mut out = self
            .exec
            .execute_checked(&info, txs, &|_, _| false)
            .unwrap();
        self.backend
            .write(std::mem::take(&mut out.batch), true)
            .unwrap();
        self.ids.push(hash_parts(
            "block",
            &[&[self.fork], &self.height.to_le_bytes(), &out.state_root.0],
        ));
        self.roots.push(out.state_root);
        let store = ChainStore::new(self.backend.clone());
        txs.iter()
            .map(|t| match store.receipt(&t.id()).unwrap().unwrap().outcome {
                TxOutcome::Applied => "applied".into(),
                TxOutcome::Rejected { code, .. } => code,
            })
            .collect()
    }

    /// A checkpoint of `height` signed by the given signers of `keys`.
    fn checkpoint(&self, height: u64, keys: &[Keypair], signers: &[usize]) -> CertifiedCheckpoint {
        let checkpoint = Checkpoint {
            chain_id: SVC.into(),
            height,
            block_id: self.ids[height as usize],
            state_root: self.roots[height as usize],
        };
        let msg = checkpoint.signing_message();
        CertifiedCheckpoint {
            signatures: signers
                .iter()
                .map(|&i| (i as u16, keys[i].sign(&msg)))
                .collect(),
            checkpoint,
        }
    }

    /// Proof at `height` that the history holds block `of`.
    fn extension(&self, height: u64, of: u64) -> Vec<u8> {
        let (value, proof) = self
            .exec
            .state()
            .get_with_proof(&history_key(of), height)
            .unwrap();
        assert!(value.is_some(), "history of {of} at {height}");
        proof.0
    }
}

struct Root {
    chain: Chain,
    relay: Keypair,
}

impl Root {
    fn new() -> Self {
        let g = Governance {
            keys: governors().iter().map(Keypair::public).collect(),
            threshold: 2,
        };
        Self {
            chain: Chain::new(ROOT, Some(&g), 0),
            relay: kp("relay", 0),
        }
    }

    fn send(&mut self, op: RegistryOp) -> String {
        let nonce = self
            .chain
            .exec
            .account(&self.relay.public(), self.chain.height)
            .unwrap()
            .nonce;
        let tx = sign_transaction(
            &self.relay,
            Transaction {
                chain_id: ROOT.into(),
                sender: self.relay.public(),
                nonce,
                payload: Payload::Registry(op),
            },
        );
        self.chain.block(&[tx]).remove(0)
    }

    fn change(&mut self, change: RegistryChange, signers: &[usize]) -> String {
        let msg = approval_message(ROOT, &root_genesis(), &change);
        let gov = governors();
        let approvals = signers
            .iter()
            .map(|&i| Approval {
                governor: i as u16,
                signature: gov[i].sign(&msg),
            })
            .collect();
        self.send(RegistryOp::Change { change, approvals })
    }

    fn anchor(&mut self, epoch: u64, checkpoint: CertifiedCheckpoint, proof: Vec<u8>) -> String {
        self.send(RegistryOp::Anchor(Anchor {
            epoch,
            checkpoint,
            extension_proof: proof,
        }))
    }

    fn record(&self) -> ChainRecord {
        self.chain
            .exec
            .module_value(&chain_key(SVC), self.chain.height)
            .unwrap()
            .unwrap()
    }
}

fn register(root: &mut Root, svc: &Chain, vals: &[Validator]) -> String {
    root.change(
        RegistryChange::Register(ServiceChain {
            chain_id: SVC.into(),
            purpose: "local currency".into(),
            genesis_block_id: svc.ids[0],
            validators: vals.to_vec(),
        }),
        &[0, 2],
    )
}

#[test]
fn registration_needs_the_governance_threshold() {
    let mut root = Root::new();
    let svc = Chain::new(SVC, None, 0);
    let (_, vals) = validators("v");
    let change = RegistryChange::Register(ServiceChain {
        chain_id: SVC.into(),
        purpose: "local currency".into(),
        genesis_block_id: svc.ids[0],
        validators: vals.clone(),
    });
    assert_eq!(root.change(change.clone(), &[1]), "insufficient_approvals");
    // A forged approval (signed by a key that is not governor 1).
    let msg = approval_message(ROOT, &root_genesis(), &change);
    let forged = RegistryOp::Change {
        change: change.clone(),
        approvals: vec![
            Approval {
                governor: 0,
                signature: governors()[0].sign(&msg),
            },
            Approval {
                governor: 1,
                signature: kp("intruder", 0).sign(&msg),
            },
        ],
    };
    assert_eq!(root.send(forged), "bad_approval");
    // Approvals for another root chain's change do not count here.
    let other = approval_message("other-root", &root_genesis(), &change);
    let replayed = RegistryOp::Change {
        change: change.clone(),
        approvals: (0..2)
            .map(|i| Approval {
                governor: i,
                signature: governors()[i as usize].sign(&other),
            })
            .collect(),
    };
    assert_eq!(root.send(replayed), "bad_approval");
    // Nor approvals made for a root with the same chain id and governors but another genesis
    // (a re-genesis of the network).
    let regenesis = approval_message(ROOT, &hash_parts("another-genesis", &[]), &change);
    let replayed = RegistryOp::Change {
        change: change.clone(),
        approvals: (0..2)
            .map(|i| Approval {
                governor: i,
                signature: governors()[i as usize].sign(&regenesis),
            })
            .collect(),
    };
    assert_eq!(root.send(replayed), "bad_approval");
    assert_eq!(
        root.change(change.clone(), &[1, 0]),
        "bad_approval",
        "order"
    );
    assert_eq!(register(&mut root, &svc, &vals), "applied");
    assert_eq!(register(&mut root, &svc, &vals), "chain_exists");
    let rec = root.record();
    assert_eq!(
        (rec.current_epoch().epoch, rec.anchors, rec.flagged),
        (0, 0, false)
    );
    // A chain whose genesis is not a root's keeps no registry.
    let mut plain = Root {
        chain: Chain::new(ROOT, None, 0),
        relay: kp("relay", 0),
    };
    assert_eq!(plain.change(change, &[0, 1]), "not_root_chain");
}

#[test]
fn anchors_are_certified_increasing_and_chained() {
    let mut root = Root::new();
    let mut svc = Chain::new(SVC, None, 0);
    let (keys, vals) = validators("v");
    // An anchor before registration.
    for _ in 0..6 {
        svc.block(&[]);
    }
    let cp3 = svc.checkpoint(3, &keys, &[0, 1, 2]);
    assert_eq!(
        root.anchor(0, cp3.clone(), svc.extension(3, 0)),
        "unregistered_chain"
    );
    assert_eq!(register(&mut root, &svc, &vals), "applied");
    // Forged certificates: too few signers, a stranger's signature, a wrong index.
    assert_eq!(
        root.anchor(0, svc.checkpoint(3, &keys, &[0, 1]), svc.extension(3, 0)),
        "bad_certificate"
    );
    let mut stranger = cp3.clone();
    stranger.signatures[2].1 = kp("stranger", 0).sign(&cp3.checkpoint.signing_message());
    assert_eq!(
        root.anchor(0, stranger, svc.extension(3, 0)),
        "bad_certificate"
    );
    let mut tampered = cp3.clone();
    tampered.checkpoint.state_root = Digest([9; 32]);
    assert_eq!(
        root.anchor(0, tampered, svc.extension(3, 0)),
        "bad_certificate"
    );
    assert_eq!(
        root.anchor(7, cp3.clone(), svc.extension(3, 0)),
        "unknown_epoch"
    );
    // The first anchor extends the registered genesis block.
    assert_eq!(root.anchor(0, cp3.clone(), svc.extension(3, 0)), "applied");
    let rec = root.record();
    let last = rec.last_anchor.clone().unwrap();
    assert_eq!(
        (last.height, last.block_id, rec.anchors),
        (3, svc.ids[3], 1)
    );
    // The same anchor again, and an older height: stale.
    assert_eq!(root.anchor(0, cp3, svc.extension(3, 0)), "stale_anchor");
    assert_eq!(
        root.anchor(0, svc.checkpoint(2, &keys, &[1, 2, 3]), svc.extension(2, 0)),
        "stale_anchor"
    );
    // A gap: the proof must show the anchored block 3, not some other height.
    let cp6 = svc.checkpoint(6, &keys, &[0, 2, 3]);
    assert_eq!(
        root.anchor(0, cp6.clone(), svc.extension(6, 4)),
        "anchor_gap"
    );
    assert_eq!(root.anchor(0, cp6.clone(), vec![1, 2, 3]), "anchor_gap");
    assert_eq!(root.anchor(0, cp6, svc.extension(6, 3)), "applied");
    let anchored: AnchorRecord = root
        .chain
        .exec
        .module_value(&anchor_key(SVC, 6), root.chain.height)
        .unwrap()
        .unwrap();
    assert_eq!(anchored.state_root, svc.roots[6]);
    // A fork certified by the same validators (more than f faulty) that never held block 6:
    // its history does not extend the anchor.
    let mut fork = Chain::new(SVC, None, 1);
    for _ in 0..8 {
        fork.block(&[]);
    }
    assert_ne!(fork.ids[6], svc.ids[6]);
    assert_eq!(
        root.anchor(
            0,
            fork.checkpoint(8, &keys, &[0, 1, 2]),
            fork.extension(8, 6)
        ),
        "anchor_gap"
    );
}

#[test]
fn conflicting_certificates_are_evidence_and_a_new_epoch_recovers() {
    let mut root = Root::new();
    let mut svc = Chain::new(SVC, None, 0);
    let mut fork = Chain::new(SVC, None, 1);
    let (keys, vals) = validators("v");
    for _ in 0..4 {
        svc.block(&[]);
        fork.block(&[]);
    }
    assert_eq!(register(&mut root, &svc, &vals), "applied");
    assert_eq!(
        root.anchor(0, svc.checkpoint(4, &keys, &[0, 1, 2]), svc.extension(4, 0)),
        "applied"
    );
    // The same validators certify a different block 4: kept as evidence, chain flagged.
    let conflicting = fork.checkpoint(4, &keys, &[1, 2, 3]);
    assert_eq!(root.anchor(0, conflicting.clone(), vec![]), "applied");
    let ev: Evidence = root
        .chain
        .exec
        .module_value(&evidence_key(SVC, 4), root.chain.height)
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.anchored.block_id, ev.conflicting),
        (svc.ids[4], conflicting.clone())
    );
    assert!(root.record().flagged);
    assert_eq!(
        root.anchor(0, conflicting.clone(), vec![]),
        "chain_flagged",
        "evidence is kept once"
    );
    svc.block(&[]);
    svc.block(&[]);
    assert_eq!(
        root.anchor(0, svc.checkpoint(6, &keys, &[0, 1, 2]), svc.extension(6, 4)),
        "chain_flagged"
    );
    // The governance installs a new validator set (epoch 1): anchors resume, certified by it.
    let (new_keys, new_vals) = validators("w");
    let next = |epoch| RegistryChange::SetValidators {
        chain_id: SVC.into(),
        epoch,
        validators: new_vals.clone(),
    };
    assert_eq!(root.change(next(2), &[0, 1]), "wrong_epoch");
    assert_eq!(root.change(next(1), &[0]), "insufficient_approvals");
    assert_eq!(root.change(next(1), &[0, 1]), "applied");
    let rec = root.record();
    assert!(!rec.flagged);
    assert_eq!(rec.current_epoch().epoch, 1);
    assert_eq!(rec.epochs.len(), 1, "the set that equivocated is retired");
    // The old set can neither anchor as epoch 0 nor re-flag the chain with the old evidence.
    assert_eq!(
        root.anchor(0, svc.checkpoint(6, &keys, &[0, 1, 2]), svc.extension(6, 4)),
        "unknown_epoch"
    );
    assert_eq!(root.anchor(0, conflicting, vec![]), "unknown_epoch");
    // The old set can no longer certify for epoch 1; the new one can.
    assert_eq!(
        root.anchor(1, svc.checkpoint(6, &keys, &[0, 1, 2]), svc.extension(6, 4)),
        "bad_certificate"
    );
    assert_eq!(
        root.anchor(
            1,
            svc.checkpoint(6, &new_keys, &[0, 1, 3]),
            svc.extension(6, 4)
        ),
        "applied"
    );
    // After an epoch-1 anchor, epoch 0 is gone.
    svc.block(&[]);
    assert_eq!(
        root.anchor(0, svc.checkpoint(7, &keys, &[0, 1, 2]), svc.extension(7, 6)),
        "unknown_epoch"
    );
}
