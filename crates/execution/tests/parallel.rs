//! The parallel read phase changes nothing: blocks of random transfers with conflicts (a few hot
//! accounts, chains of nonces, overdrafts, self-transfers, zero amounts, replays, gaps, forged
//! signatures, another chain's transactions) executed with one thread and with several give the
//! same state roots, receipts, nonces and balances, block after block.

use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::{BlockInfo, Executor};
use netchain_storage::{ChainStore, KvBackend, MemoryBackend};
use netchain_types::{hash_parts, Digest, Payload, PublicKey, SignedTransaction, Transaction};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const CHAIN: &str = "parallel-test";

struct Run {
    backend: Arc<MemoryBackend>,
    exec: Executor<MemoryBackend>,
}

impl Run {
    fn new(threads: usize, genesis: &[(PublicKey, u64)]) -> Self {
        let backend = Arc::new(MemoryBackend::new());
        let exec = Executor::new(CHAIN, backend.clone()).with_threads(threads);
        let (_, batch) = exec.genesis(genesis).unwrap();
        backend.write(batch, true).unwrap();
        Self { backend, exec }
    }

    /// Executes a block; returns (state root, receipts' encoding, sorted new nonces).
    fn block(
        &self,
        height: u64,
        txs: &[SignedTransaction],
    ) -> (Digest, Vec<String>, Vec<(PublicKey, u64)>) {
        let info = BlockInfo {
            height,
            timestamp_ms: 1_000 * height,
            parent_id: hash_parts("parent", &[&height.to_le_bytes()]),
        };
        let mut out = self
            .exec
            .execute_checked(&info, txs, &|_, _| false)
            .unwrap();
        self.backend
            .write(std::mem::take(&mut out.batch), true)
            .unwrap();
        let store = ChainStore::new(self.backend.clone());
        let receipts = txs
            .iter()
            .map(|t| format!("{:?}", store.receipt(&t.id()).unwrap().map(|r| r.outcome)))
            .collect();
        let mut nonces = out.nonces;
        nonces.sort();
        (out.state_root, receipts, nonces)
    }
}

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::from_secret(hash_parts("parallel-key", &[&i.to_le_bytes()]).0))
        .collect()
}

/// A block of `n` transactions drawn from `seed` over `accounts` accounts (few accounts: many
/// conflicts). `next` holds each sender's next nonce as the generator believes it.
fn random_block(
    keys: &[Keypair],
    next: &mut BTreeMap<usize, u64>,
    seed: u64,
    n: usize,
) -> Vec<SignedTransaction> {
    let mut s = seed | 1;
    let mut rnd = move |m: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % m
    };
    let stranger = PublicKey(hash_parts("stranger", &[&seed.to_le_bytes()]).0);
    (0..n)
        .map(|_| {
            let from = rnd(keys.len() as u64) as usize;
            let nonce = next.entry(from).or_insert(0);
            let used = match rnd(20) {
                0 => nonce.saturating_sub(1), // replay of a used nonce
                1 => *nonce + 2,              // a gap
                _ => {
                    *nonce += 1;
                    *nonce - 1
                }
            };
            let to = match rnd(10) {
                0 => keys[from].public(), // to itself
                1 => stranger,            // to a fresh account
                _ => keys[rnd(keys.len() as u64) as usize].public(),
            };
            let amount = match rnd(10) {
                0 => 0,         // refused
                1 => 5_000_000, // overdraft
                _ => 1 + rnd(1_000),
            };
            let chain = if rnd(50) == 0 { "other-chain" } else { CHAIN };
            let mut tx = sign_transaction(
                &keys[from],
                Transaction {
                    chain_id: chain.into(),
                    sender: keys[from].public(),
                    nonce: used,
                    payload: Payload::Transfer {
                        to,
                        amount,
                        memo: Vec::new(),
                    },
                },
            );
            if rnd(40) == 0 {
                tx.signature.0[3] ^= 1; // forged
            }
            tx
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn parallel_reads_give_the_sequential_result(
        seed in any::<u64>(),
        accounts in 3usize..40,
        sizes in proptest::collection::vec(256usize..700, 2..4),
    ) {
        let keys = keys(accounts);
        let genesis: Vec<_> = keys.iter().map(|k| (k.public(), 100_000)).collect();
        let one = Run::new(1, &genesis);
        let many = Run::new(4, &genesis);
        let mut next = BTreeMap::new();
        for (i, n) in sizes.iter().enumerate() {
            let txs = random_block(&keys, &mut next, seed.wrapping_add(i as u64), *n);
            let height = i as u64 + 1;
            prop_assert_eq!(one.block(height, &txs), many.block(height, &txs), "block {}", height);
        }
        for k in &keys {
            let h = sizes.len() as u64;
            prop_assert_eq!(
                one.exec.account(&k.public(), h).unwrap(),
                many.exec.account(&k.public(), h).unwrap()
            );
        }
    }
}
