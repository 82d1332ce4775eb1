//! Behaviour of block execution: transfers, rejections, receipts, conservation, determinism and
//! account proofs.

use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::{account_key, BlockInfo, BlockOutput, Executor};
use netchain_storage::{ChainStore, FjallBackend, KvBackend, MemoryBackend};
use netchain_types::{
    Account, Digest, Payload, PublicKey, Receipt, SignedTransaction, Transaction, TxOutcome,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const CHAIN: &str = "netchain-test";

fn key(i: u8) -> Keypair {
    Keypair::from_secret([i + 1; 32])
}

fn pk(i: u8) -> PublicKey {
    key(i).public()
}

fn transfer_on(
    chain: &str,
    from: &Keypair,
    nonce: u64,
    to: PublicKey,
    amount: u64,
) -> SignedTransaction {
    sign_transaction(
        from,
        Transaction {
            chain_id: chain.into(),
            sender: from.public(),
            nonce,
            payload: Payload::Transfer {
                to,
                amount,
                memo: Vec::new(),
            },
        },
    )
}

fn transfer(from: &Keypair, nonce: u64, to: PublicKey, amount: u64) -> SignedTransaction {
    transfer_on(CHAIN, from, nonce, to, amount)
}

/// An executor plus its backend; commits every block's batch before the next one.
struct Node<B: KvBackend> {
    backend: Arc<B>,
    exec: Executor<B>,
    /// Root per height, index 0 = genesis.
    roots: Vec<Digest>,
}

impl<B: KvBackend> Node<B> {
    fn new(backend: B, genesis: &[(PublicKey, u64)]) -> Self {
        let backend = Arc::new(backend);
        let exec = Executor::new(CHAIN, backend.clone());
        let (root, batch) = exec.genesis(genesis).unwrap();
        backend.write(batch, true).unwrap();
        assert_eq!(exec.state().root(0).unwrap(), Some(root.0));
        Self {
            backend,
            exec,
            roots: vec![root],
        }
    }

    fn height(&self) -> u64 {
        self.roots.len() as u64 - 1
    }

    /// Executes and commits the next block; the returned output's batch is already written.
    fn block(&mut self, txs: &[SignedTransaction]) -> BlockOutput {
        let height = self.height() + 1;
        let mut out = self.exec.execute(height, height * 1_000, txs).unwrap();
        self.backend
            .write(std::mem::take(&mut out.batch), true)
            .unwrap();
        assert_eq!(
            self.exec.state().root(height).unwrap(),
            Some(out.state_root.0)
        );
        self.roots.push(out.state_root);
        out
    }

    fn account(&self, pk: &PublicKey) -> Account {
        self.exec.account(pk, self.height()).unwrap()
    }

    fn receipt(&self, tx: &SignedTransaction) -> Option<Receipt> {
        ChainStore::new(self.backend.clone())
            .receipt(&tx.id())
            .unwrap()
    }
}

fn mem_node(genesis: &[(PublicKey, u64)]) -> Node<MemoryBackend> {
    Node::new(MemoryBackend::new(), genesis)
}

fn code(outcome: &TxOutcome) -> &str {
    match outcome {
        TxOutcome::Applied => "applied",
        TxOutcome::Rejected { code, .. } => code,
    }
}

fn acct(balance: u64, nonce: u64) -> Account {
    Account { balance, nonce }
}

#[test]
fn valid_transfers_move_funds_and_bump_nonce() {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 1_000), (b.public(), 50)]);
    let t1 = transfer(&a, 0, b.public(), 300);
    let t2 = transfer(&a, 1, b.public(), 200);
    let out = node.block(&[t1.clone(), t2.clone()]);

    assert_eq!(out.applied, 2);
    assert_ne!(out.state_root, node.roots[0]);
    assert_eq!(out.receipts.len(), 2);
    for (i, (r, t)) in out.receipts.iter().zip([&t1, &t2]).enumerate() {
        assert_eq!(r.tx_id, t.id());
        assert_eq!(r.height, 1);
        assert_eq!(r.index, i as u32);
        assert_eq!(r.outcome, TxOutcome::Applied);
        assert_eq!(node.receipt(t).as_ref(), Some(r));
    }
    assert_eq!(out.nonces, vec![(a.public(), 2)]);
    assert_eq!(node.account(&a.public()), acct(500, 2));
    assert_eq!(node.account(&b.public()), acct(550, 0));
    // History is kept.
    assert_eq!(node.exec.account(&a.public(), 0).unwrap(), acct(1_000, 0));

    // A fresh account (not in genesis) can receive and then spend.
    let c = key(2);
    let out = node.block(&[transfer(&b, 0, c.public(), 100)]);
    assert_eq!(out.applied, 1);
    let out = node.block(&[transfer(&c, 0, a.public(), 40)]);
    assert_eq!(out.applied, 1);
    assert_eq!(node.account(&a.public()), acct(540, 2));
    assert_eq!(node.account(&b.public()), acct(450, 1));
    assert_eq!(node.account(&c.public()), acct(60, 1));
}

#[test]
fn self_transfer_only_bumps_nonce() {
    let a = key(0);
    let mut node = mem_node(&[(a.public(), 100)]);
    let out = node.block(&[transfer(&a, 0, a.public(), 100)]);
    assert_eq!(out.applied, 1);
    assert_eq!(node.account(&a.public()), acct(100, 1));
    // Still checked against the balance.
    let out = node.block(&[transfer(&a, 1, a.public(), 101)]);
    assert_eq!(code(&out.receipts[0].outcome), "insufficient_funds");
}

/// Runs `prefix` blocks, then one block of only `bad`; checks it is rejected with `expected` and
/// that no balance changed. A refusal of an authentic, in-sequence transaction uses up the
/// sender's nonce (so it can never apply later); other refusals leave every account as it was.
/// (The state root changes with every block: each block records its parent in the history.)
fn assert_rejected(prefix: &[Vec<SignedTransaction>], bad: SignedTransaction, expected: &str) {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 1_000), (b.public(), 10)]);
    for block in prefix {
        node.block(block);
    }
    let consumes = !matches!(expected, "bad_signature" | "wrong_chain" | "bad_nonce");
    let before = [node.account(&a.public()), node.account(&b.public())];
    let sender_nonce = node.account(&bad.tx.sender).nonce;
    let out = node.block(std::slice::from_ref(&bad));
    assert_eq!(out.applied, 0, "{expected}");
    if consumes {
        assert_eq!(node.account(&bad.tx.sender).nonce, sender_nonce + 1);
    } else {
        assert_eq!(
            [node.account(&a.public()), node.account(&b.public())],
            before,
            "{expected}: an account changed"
        );
    }
    let balances = |n: &Node<MemoryBackend>| {
        [
            n.account(&a.public()).balance,
            n.account(&b.public()).balance,
        ]
    };
    assert_eq!(
        balances(&node),
        [before[0].balance, before[1].balance],
        "{expected}"
    );
    assert_eq!(
        out.nonces,
        vec![(bad.tx.sender, sender_nonce + u64::from(consumes))]
    );
    // Rejections after an earlier receipt are not re-recorded; otherwise a receipt is written.
    let stored = node.receipt(&bad).expect("receipt stored");
    if let Some(r) = out.receipts.first() {
        assert_eq!(out.receipts.len(), 1);
        assert_eq!(code(&r.outcome), expected, "{r:?}");
        assert_eq!((r.height, r.index, r.tx_id), (node.height(), 0, bad.id()));
        assert_eq!(&stored, r);
        if let TxOutcome::Rejected { message, .. } = &r.outcome {
            assert!(!message.is_empty());
        }
    }
    if consumes {
        // The same signed bytes again: refused on the nonce, nothing moves, first receipt kept.
        let again = node.block(std::slice::from_ref(&bad));
        assert_eq!(again.applied, 0);
        assert_eq!(node.account(&bad.tx.sender).nonce, sender_nonce + 1);
        assert_eq!(node.receipt(&bad).unwrap(), stored);
    }
}

#[test]
fn bad_signature_is_rejected() {
    let (a, b) = (key(0), key(1));
    let mut tx = transfer(&a, 0, b.public(), 5);
    tx.signature.0[3] ^= 0x40;
    assert_rejected(&[], tx, "bad_signature");

    // Signed by someone else than the claimed sender.
    let mut forged = transfer(&b, 0, b.public(), 5);
    forged.tx.sender = a.public();
    forged.signature = b.sign(&forged.tx.signing_message());
    assert_rejected(&[], forged, "bad_signature");

    // Garbage sender key bytes never panic.
    let mut garbage = transfer(&a, 0, b.public(), 5);
    garbage.tx.sender = PublicKey([0xff; 32]);
    assert_rejected(&[], garbage, "bad_signature");
}

#[test]
fn bad_signature_among_valid_ones_is_singled_out() {
    let (a, b, c) = (key(0), key(1), key(2));
    let mut node = mem_node(&[(a.public(), 100), (b.public(), 100), (c.public(), 100)]);
    let mut bad = transfer(&b, 0, c.public(), 10);
    bad.signature.0[40] ^= 1;
    let out = node.block(&[
        transfer(&a, 0, c.public(), 10),
        bad,
        transfer(&c, 0, a.public(), 5),
    ]);
    let codes: Vec<_> = out.receipts.iter().map(|r| code(&r.outcome)).collect();
    assert_eq!(codes, ["applied", "bad_signature", "applied"]);
    assert_eq!(out.applied, 2);
    assert_eq!(node.account(&b.public()), acct(100, 0));
    assert_eq!(node.account(&c.public()), acct(105, 1));
}

#[test]
fn wrong_chain_is_rejected() {
    let (a, b) = (key(0), key(1));
    assert_rejected(
        &[],
        transfer_on("other-chain", &a, 0, b.public(), 5),
        "wrong_chain",
    );
}

#[test]
fn nonce_gap_is_rejected() {
    let (a, b) = (key(0), key(1));
    assert_rejected(&[], transfer(&a, 1, b.public(), 5), "bad_nonce");
    assert_rejected(&[], transfer(&a, u64::MAX, b.public(), 5), "bad_nonce");
}

#[test]
fn insufficient_funds_is_rejected() {
    let (a, b, c) = (key(0), key(1), key(2));
    assert_rejected(&[], transfer(&b, 0, a.public(), 11), "insufficient_funds");
    // An account that does not exist has balance zero.
    assert_rejected(&[], transfer(&c, 0, a.public(), 1), "insufficient_funds");
}

#[test]
fn zero_amount_is_rejected() {
    let (a, b) = (key(0), key(1));
    assert_rejected(&[], transfer(&a, 0, b.public(), 0), "invalid_amount");
}

#[test]
fn replay_in_later_block_is_rejected_and_keeps_applied_receipt() {
    let (a, b) = (key(0), key(1));
    let tx = transfer(&a, 0, b.public(), 5);
    // The replay produces no new receipt: the stored one stays Applied at height 1.
    assert_rejected(&[vec![tx.clone()]], tx.clone(), "bad_nonce");

    let mut node = mem_node(&[(a.public(), 1_000)]);
    node.block(std::slice::from_ref(&tx));
    let first = node.receipt(&tx).unwrap();
    assert_eq!((first.height, &first.outcome), (1, &TxOutcome::Applied));
    let before = (node.account(&a.public()), node.account(&b.public()));
    let out = node.block(std::slice::from_ref(&tx));
    assert_eq!(out.applied, 0);
    assert_eq!(
        (node.account(&a.public()), node.account(&b.public())),
        before
    );
    assert!(out.receipts.is_empty(), "{:?}", out.receipts);
    assert_eq!(node.receipt(&tx), Some(first.clone()));
    // A copy with a broken signature (same id) does not overwrite it either.
    let mut forged = tx.clone();
    forged.signature.0[0] ^= 1;
    let out = node.block(&[forged]);
    assert!(out.receipts.is_empty());
    assert_eq!(node.receipt(&tx), Some(first));
    assert_eq!(node.account(&a.public()), acct(995, 1));
}

#[test]
fn same_tx_twice_in_one_block_applies_once() {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 1_000)]);
    let tx = transfer(&a, 0, b.public(), 5);
    let out = node.block(&[tx.clone(), tx.clone()]);
    assert_eq!(out.applied, 1);
    assert_eq!(out.receipts.len(), 1);
    let r = node.receipt(&tx).unwrap();
    assert_eq!(r, out.receipts[0]);
    assert_eq!((r.height, r.index, r.outcome), (1, 0, TxOutcome::Applied));
    assert_eq!(node.account(&a.public()), acct(995, 1));
    assert_eq!(node.account(&b.public()), acct(5, 0));
    assert_eq!(out.nonces, vec![(a.public(), 1)]);
}

#[test]
fn applied_copy_wins_over_earlier_rejected_copy_in_same_block() {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 1_000)]);
    let genuine = transfer(&a, 0, b.public(), 5);
    // A faulty leader puts a copy with a broken signature (same id) before the genuine one.
    let mut forged = genuine.clone();
    forged.signature.0[7] ^= 1;
    let out = node.block(&[forged, genuine.clone()]);
    assert_eq!(out.applied, 1);
    assert_eq!(node.account(&b.public()), acct(5, 0));
    let r = node.receipt(&genuine).unwrap();
    assert_eq!((r.height, r.index, &r.outcome), (1, 1, &TxOutcome::Applied));
    assert_eq!(out.receipts, vec![r]);

    // Same with a copy that first fails on its nonce and later fits.
    let later = transfer(&a, 2, b.public(), 7);
    let out = node.block(&[later.clone(), transfer(&a, 1, b.public(), 1), later.clone()]);
    assert_eq!(out.applied, 2);
    assert_eq!(node.account(&a.public()), acct(987, 3));
    let r = node.receipt(&later).unwrap();
    assert_eq!((r.height, r.index, &r.outcome), (2, 2, &TxOutcome::Applied));
    assert_eq!(out.receipts.len(), 2);
    assert!(out.receipts.iter().all(|r| r.outcome == TxOutcome::Applied));
}

#[test]
fn overflowing_recipient_is_rejected() {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 100), (b.public(), u64::MAX - 5)]);
    let root = node.roots[0];
    let out = node.block(&[transfer(&a, 0, b.public(), 10)]);
    assert_eq!(code(&out.receipts[0].outcome), "overflow");
    assert_ne!(out.state_root, root, "the refusal uses up the nonce");
    assert_eq!(node.account(&a.public()), acct(100, 1));
    assert_eq!(node.account(&b.public()), acct(u64::MAX - 5, 0));
}

#[test]
fn rejected_only_block_keeps_root_and_next_block_still_executes() {
    let (a, b) = (key(0), key(1));
    let mut node = mem_node(&[(a.public(), 100)]);
    let accounts = |n: &Node<MemoryBackend>| (n.account(&a.public()), n.account(&b.public()));
    let genesis = accounts(&node);
    let out = node.block(&[]);
    assert_eq!(accounts(&node), genesis);
    assert!(out.receipts.is_empty() && out.nonces.is_empty());
    // A nonce gap and a forged signature: no account changes.
    let mut forged = transfer(&b, 0, a.public(), 1);
    forged.signature.0[3] ^= 1;
    let out = node.block(&[transfer(&a, 3, b.public(), 1), forged]);
    assert_eq!(accounts(&node), genesis);
    assert_eq!(out.receipts.len(), 2);
    let out = node.block(&[transfer(&a, 0, b.public(), 1)]);
    assert_eq!(out.applied, 1);
    assert_ne!(out.state_root, node.roots[0]);
    assert_eq!(node.account(&b.public()), acct(1, 0));
}

#[test]
fn nonces_report_final_nonce_per_sender() {
    let (a, b, c, d) = (key(0), key(1), key(2), key(3));
    let mut node = mem_node(&[
        (a.public(), 100),
        (b.public(), 100),
        (c.public(), 100),
        (d.public(), 1),
    ]);
    node.block(&[transfer(&c, 0, a.public(), 1)]);
    let mut bad_sig = transfer(&b, 0, a.public(), 1);
    bad_sig.signature.0[1] ^= 1;
    let out = node.block(&[
        transfer(&a, 0, b.public(), 1),
        transfer(&a, 5, b.public(), 1), // gap
        bad_sig,
        transfer(&a, 1, c.public(), 1),
        transfer(&c, 1, d.public(), 1),
        transfer(&a, 2, c.public(), 1_000), // insufficient funds
        transfer(&d, 0, a.public(), 3),     // insufficient funds (1 + 1 received)
        transfer_on("x", &c, 2, a.public(), 1),
        transfer(&c, 2, a.public(), 1),
    ]);
    // Insufficient funds use up the nonce (a: 0, 1 applied, 2 refused; d: 0 refused).
    let mut expected = vec![
        (a.public(), 3),
        (b.public(), 0),
        (c.public(), 3),
        (d.public(), 1),
    ];
    expected.sort();
    assert_eq!(out.nonces, expected);
    for (pk, n) in &out.nonces {
        assert_eq!(node.account(pk).nonce, *n);
    }
    assert_eq!(out.applied, 4);
}

#[test]
fn account_proofs_verify_against_block_roots() {
    let keys: Vec<_> = (0..4).map(key).collect();
    let absent = pk(9);
    let mut node = mem_node(&[(keys[0].public(), 500), (keys[1].public(), 300)]);
    node.block(&[transfer(&keys[0], 0, keys[2].public(), 50)]);
    node.block(&[
        transfer(&keys[1], 0, keys[3].public(), 20),
        transfer(&keys[2], 0, keys[0].public(), 5),
    ]);
    node.block(&[transfer(&keys[3], 7, keys[0].public(), 1)]); // rejected only
    node.block(&[transfer(&keys[0], 1, keys[1].public(), 100)]);

    let mut pks: Vec<_> = keys.iter().map(|k| k.public()).collect();
    pks.push(absent);
    for h in 0..=node.height() {
        let root = node.roots[h as usize].0;
        for pk in &pks {
            let k = account_key(pk);
            let (value, proof) = node.exec.state().get_with_proof(&k, h).unwrap();
            proof.verify(root, &k, value.as_deref()).unwrap();
            let account = node.exec.account(pk, h).unwrap();
            match &value {
                Some(bytes) => assert_eq!(
                    netchain_types::decode::<Account>(bytes, 64).unwrap(),
                    account
                ),
                None => assert_eq!(account, Account::default()),
            }
            // The proof does not verify a different value.
            let mut other = account;
            other.balance += 1;
            let other_bytes = netchain_types::encode(&other);
            assert!(proof.verify(root, &k, Some(&other_bytes)).is_err());
        }
    }
    for pk in &pks {
        assert_eq!(
            node.exec.account(pk, 2).unwrap(),
            node.exec.account(pk, 3).unwrap()
        );
    }
    assert_eq!(
        node.exec.account(&keys[0].public(), 4).unwrap(),
        acct(355, 2)
    );
    assert_eq!(
        node.exec.account(&keys[0].public(), 1).unwrap(),
        acct(450, 1)
    );
    // A proof for height 1 does not verify against height 4's root (the value changed).
    let k = account_key(&keys[0].public());
    let (v1, p1) = node.exec.state().get_with_proof(&k, 1).unwrap();
    assert!(p1.verify(node.roots[4].0, &k, v1.as_deref()).is_err());
}

// ---- random blocks: conservation, model agreement and determinism ----

const ACCOUNTS: u8 = 8;
/// Genesis holds accounts 0..GENESIS_ACCOUNTS; the others start absent.
const GENESIS_ACCOUNTS: u8 = 6;

#[derive(Clone, Debug)]
enum Fault {
    None,
    BadSignature,
    WrongChain,
    Replay,
    Gap,
}

#[derive(Clone, Debug)]
struct Spec {
    from: u8,
    to: u8,
    amount: u64,
    fault: Fault,
}

fn spec() -> impl Strategy<Value = Spec> {
    let fault = prop_oneof![
        12 => Just(Fault::None),
        1 => Just(Fault::BadSignature),
        1 => Just(Fault::WrongChain),
        1 => Just(Fault::Replay),
        1 => Just(Fault::Gap),
    ];
    let amount = prop_oneof![3 => 1u64..400, 1 => Just(0u64), 1 => 400u64..3_000];
    (0..ACCOUNTS, 0..ACCOUNTS, amount, fault).prop_map(|(from, to, amount, fault)| Spec {
        from,
        to,
        amount,
        fault,
    })
}

fn blocks() -> impl Strategy<Value = Vec<Vec<Spec>>> {
    prop::collection::vec(prop::collection::vec(spec(), 0..14), 1..8)
}

fn genesis_accounts() -> Vec<(PublicKey, u64)> {
    (0..GENESIS_ACCOUNTS)
        .map(|i| (pk(i), 1_000 + 137 * i as u64))
        .collect()
}

/// A simple reference model of the transfer rules.
#[derive(Clone, Default)]
struct Model {
    accounts: BTreeMap<PublicKey, Account>,
}

impl Model {
    fn get(&self, pk: &PublicKey) -> Account {
        self.accounts.get(pk).copied().unwrap_or_default()
    }

    fn apply(&mut self, tx: &SignedTransaction, sig_ok: bool) -> &'static str {
        let t = &tx.tx;
        if t.chain_id != CHAIN {
            return "wrong_chain";
        }
        if !sig_ok {
            return "bad_signature";
        }
        let sender = self.get(&t.sender);
        if sender.nonce != t.nonce {
            return "bad_nonce";
        }
        let Payload::Transfer { to, amount, .. } = t.payload.clone() else {
            unreachable!("the model only makes transfers")
        };
        // Refusals of authentic, in-sequence transactions use up the nonce.
        if amount == 0 {
            self.accounts.entry(t.sender).or_default().nonce += 1;
            return "invalid_amount";
        }
        if sender.balance < amount {
            self.accounts.entry(t.sender).or_default().nonce += 1;
            return "insufficient_funds";
        }
        self.accounts.entry(t.sender).or_default().balance -= amount;
        self.accounts.entry(to).or_default().balance += amount;
        self.accounts.entry(t.sender).or_default().nonce += 1;
        "applied"
    }
}

/// Turns specs into signed transactions, choosing nonces from the model so that most are valid.
fn build_block(model: &Model, specs: &[Spec]) -> (Vec<SignedTransaction>, Vec<bool>) {
    let mut next: BTreeMap<u8, u64> = BTreeMap::new();
    let mut txs = Vec::new();
    let mut sig_ok = Vec::new();
    for s in specs {
        let from = key(s.from);
        let n = next
            .entry(s.from)
            .or_insert_with(|| model.get(&from.public()).nonce);
        let nonce = match s.fault {
            Fault::Replay => n.saturating_sub(1),
            Fault::Gap => *n + 1,
            _ => *n,
        };
        let chain = if matches!(s.fault, Fault::WrongChain) {
            "elsewhere"
        } else {
            CHAIN
        };
        let mut tx = transfer_on(chain, &from, nonce, pk(s.to), s.amount);
        if matches!(s.fault, Fault::BadSignature) {
            tx.signature.0[5] ^= 0x10;
        }
        if matches!(s.fault, Fault::None) {
            *n += 1;
        }
        sig_ok.push(!matches!(s.fault, Fault::BadSignature));
        txs.push(tx);
    }
    (txs, sig_ok)
}

fn all_pks() -> Vec<PublicKey> {
    (0..ACCOUNTS).map(pk).collect()
}

fn supply<B: KvBackend>(node: &Node<B>) -> u128 {
    all_pks()
        .iter()
        .map(|p| node.account(p).balance as u128)
        .sum()
}

/// Executes `specs` on two independent memory nodes, checking against the model, conservation
/// and identical roots. Returns the signed blocks and the roots per height.
fn run_blocks(specs: &[Vec<Spec>]) -> (Vec<Vec<SignedTransaction>>, Vec<Digest>) {
    let genesis = genesis_accounts();
    let total: u128 = genesis.iter().map(|(_, b)| *b as u128).sum();
    let mut n1 = mem_node(&genesis);
    let mut n2 = mem_node(&genesis);
    assert_eq!(n1.roots, n2.roots);
    let mut model = Model::default();
    for (p, b) in &genesis {
        model.accounts.insert(*p, acct(*b, 0));
    }
    let mut signed = Vec::new();
    for block in specs {
        let (txs, sig_ok) = build_block(&model, block);
        let o1 = n1.block(&txs);
        let o2 = n2.block(&txs);
        assert_eq!(o1.state_root, o2.state_root, "height {}", n1.height());
        assert_eq!(o1.receipts, o2.receipts);
        assert_eq!(o1.nonces, o2.nonces);

        // The model predicts every outcome. Each id gets at most one receipt: "applied" if any
        // copy was applied, else the first copy's rejection.
        let mut expected: BTreeMap<Digest, &'static str> = BTreeMap::new();
        let mut applied = 0;
        for (tx, ok) in txs.iter().zip(&sig_ok) {
            let c = model.apply(tx, *ok);
            if c == "applied" {
                applied += 1;
                expected.insert(tx.id(), c);
            } else {
                expected.entry(tx.id()).or_insert(c);
            }
        }
        assert_eq!(o1.applied, applied);
        let mut ids: Vec<_> = o1.receipts.iter().map(|r| r.tx_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), o1.receipts.len(), "one receipt per id");
        for r in &o1.receipts {
            assert_eq!(r.height, n1.height());
            assert_eq!(code(&r.outcome), expected[&r.tx_id], "{r:?}");
            assert_eq!(txs[r.index as usize].id(), r.tx_id);
            assert_eq!(n1.receipt(&txs[r.index as usize]).as_ref(), Some(r));
        }
        for (id, c) in &expected {
            if *c == "applied" {
                assert!(
                    o1.receipts.iter().any(|r| r.tx_id == *id),
                    "applied tx without receipt"
                );
            }
        }
        for p in all_pks() {
            assert_eq!(n1.account(&p), model.get(&p));
        }
        let mut senders: Vec<_> = txs
            .iter()
            .map(|t| (t.tx.sender, model.get(&t.tx.sender).nonce))
            .collect();
        senders.sort();
        senders.dedup();
        assert_eq!(o1.nonces, senders);
        assert_eq!(
            supply(&n1),
            total,
            "supply changed at height {}",
            n1.height()
        );
        signed.push(txs);
    }
    assert_eq!(n1.roots, n2.roots);
    (signed, n1.roots)
}

fn seeded_runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

#[test]
fn random_blocks_conserve_supply_and_are_deterministic() {
    let mut runner = seeded_runner(24);
    let result = runner.run(&blocks(), |specs| {
        run_blocks(&specs);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("netchain-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fjall_backend_gives_same_roots_as_memory() {
    let mut runner = seeded_runner(1);
    let mut specs = Vec::new();
    // Pick a deterministic, non-trivial case: several blocks with transactions.
    while specs.iter().map(Vec::len).sum::<usize>() < 20 {
        specs = blocks().new_tree(&mut runner).unwrap().current();
    }
    let (signed, mem_roots) = run_blocks(&specs);

    let dir = TempDir::new("fjall");
    let mut node = Node::new(FjallBackend::open(&dir.0).unwrap(), &genesis_accounts());
    for txs in &signed {
        node.block(txs);
    }
    assert_eq!(node.roots, mem_roots);
    let total: u128 = genesis_accounts().iter().map(|(_, b)| *b as u128).sum();
    assert_eq!(supply(&node), total);
    // Proofs from the on-disk tree verify against the shared roots.
    let h = node.height();
    for p in all_pks() {
        let k = account_key(&p);
        let (value, proof) = node.exec.state().get_with_proof(&k, h).unwrap();
        proof
            .verify(mem_roots[h as usize].0, &k, value.as_deref())
            .unwrap();
    }
}

#[test]
fn pre_verified_signatures_give_the_same_outcome_with_less_work() {
    let (a, b) = (key(1), key(2));
    let genesis = [(a.public(), 1_000), (b.public(), 1_000)];
    let good = transfer(&a, 0, b.public(), 5);
    let mut forged = transfer(&b, 0, a.public(), 7);
    forged.signature.0[0] ^= 1;
    let block = vec![good.clone(), forged.clone()];
    let plain = mem_node(&genesis).exec.execute(1, 1_000, &block).unwrap();
    // Only the valid one is known as verified: the forged one is still checked and rejected.
    let node = mem_node(&genesis);
    let checked = node
        .exec
        .execute_checked(
            &BlockInfo {
                height: 1,
                timestamp_ms: 1_000,
                parent_id: Digest::default(),
            },
            &block,
            &|_, t| t.signature == good.signature,
        )
        .unwrap();
    assert_eq!(checked.state_root, plain.state_root);
    assert_eq!(checked.receipts, plain.receipts);
    assert_eq!(code(&checked.receipts[1].outcome), "bad_signature");
}
