//! Micro-benchmarks of the per-transaction costs: signature checks, hashing, block execution and
//! state commitment. Run with `cargo bench -p netchain-execution`; results go to docs/BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netchain_crypto::{sign_transaction, verify, verify_batch, verify_each, Keypair};
use netchain_execution::{BlockInfo, Executor};

fn info(height: u64, timestamp_ms: u64) -> BlockInfo {
    BlockInfo {
        height,
        timestamp_ms,
        parent_id: Digest::default(),
    }
}
use netchain_storage::{KvBackend, MemoryBackend, StateTree};
use netchain_types::currency::{CurrencyOp, CurrencyRules, Deposit, MerchantInfo, PaymentRequest};
use netchain_types::{
    hash_parts, Digest, Payload, PublicKey, Reference, SignedTransaction, Transaction,
};
use std::hint::black_box;
use std::sync::Arc;

const CHAIN: &str = "bench";

fn key(i: u32) -> Keypair {
    Keypair::from_secret(hash_parts("bench-key", &[&i.to_le_bytes()]).0)
}

fn tx(kp: &Keypair, nonce: u64, payload: Payload) -> SignedTransaction {
    sign_transaction(
        kp,
        Transaction {
            chain_id: CHAIN.into(),
            sender: kp.public(),
            nonce,
            payload,
        },
    )
}

fn transfers(keys: &[Keypair], n: usize) -> Vec<SignedTransaction> {
    (0..n)
        .map(|i| {
            let to = keys[(i + 1) % keys.len()].public();
            tx(
                &keys[i % keys.len()],
                (i / keys.len()) as u64,
                Payload::Transfer {
                    to,
                    amount: 1,
                    memo: Vec::new(),
                },
            )
        })
        .collect()
}

fn crypto(c: &mut Criterion) {
    let kp = key(0);
    let txs = transfers(&(0..512).map(key).collect::<Vec<_>>(), 512);
    let items: Vec<(PublicKey, Digest, netchain_types::Signature)> = txs
        .iter()
        .map(|t| (t.tx.sender, t.tx.signing_message(), t.signature))
        .collect();
    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ed25519_verify_single", |b| {
        b.iter(|| verify(&items[0].0, &items[0].1, &items[0].2).unwrap())
    });
    g.bench_function("ed25519_sign_transaction", |b| {
        let to = key(1).public();
        b.iter(|| {
            tx(
                &kp,
                0,
                Payload::Transfer {
                    to,
                    amount: 1,
                    memo: Vec::new(),
                },
            )
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("ed25519_verify_batch_64", |b| {
        b.iter(|| verify_batch(&items[..64]).unwrap())
    });
    g.throughput(Throughput::Elements(512));
    g.bench_function("ed25519_verify_batch_512", |b| {
        b.iter(|| verify_batch(&items).unwrap())
    });
    // verify_each: all valid (split over the cores), and with one forged signature (found by
    // halving the failed batch), against checking every signature one by one.
    g.bench_function("verify_each_512_valid", |b| {
        b.iter(|| assert!(verify_each(&items).iter().all(|ok| *ok)))
    });
    let mut forged = items.clone();
    forged[300].2 .0[0] ^= 1;
    g.bench_function("verify_each_512_one_forged", |b| {
        b.iter(|| assert_eq!(verify_each(&forged).iter().filter(|ok| !**ok).count(), 1))
    });
    g.bench_function("verify_one_by_one_512", |b| {
        b.iter(|| {
            forged
                .iter()
                .filter(|(pk, m, sig)| verify(pk, m, sig).is_ok())
                .count()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Elements(1));
    let node = [7u8; 64];
    g.bench_function("blake3_merkle_node_64B", |b| {
        b.iter(|| blake3::hash(black_box(&node)))
    });
    g.bench_function("transaction_id", |b| b.iter(|| black_box(&txs[0]).id()));
    g.finish();
}

/// An executor with `accounts` funded at genesis, state committed.
fn executor(accounts: &[Keypair]) -> (Arc<MemoryBackend>, Executor<MemoryBackend>) {
    let backend = Arc::new(MemoryBackend::new());
    let exec = Executor::new(CHAIN, backend.clone());
    let genesis: Vec<_> = accounts.iter().map(|k| (k.public(), 1_000_000)).collect();
    let (_, batch) = exec.genesis(&genesis).unwrap();
    backend.write(batch, true).unwrap();
    (backend, exec)
}

fn execution(c: &mut Criterion) {
    let keys: Vec<Keypair> = (0..2_000).map(key).collect();
    let block = transfers(&keys, 2_000);
    let mut g = c.benchmark_group("execution");
    g.sample_size(20);
    g.throughput(Throughput::Elements(block.len() as u64));
    // Signatures checked at admission (the common case): execution and state root only.
    g.bench_function("transfers_2000_presigned_checked", |b| {
        b.iter_batched(
            || executor(&keys),
            |(_, exec)| {
                exec.execute_checked(&info(1, 1_000), &block, &|_, _| true)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    // The same on one thread (no parallel account reads): the parallel read phase's gain.
    g.bench_function("transfers_2000_presigned_checked_one_thread", |b| {
        b.iter_batched(
            || {
                let (backend, exec) = executor(&keys);
                (backend, exec.with_threads(1))
            },
            |(_, exec)| {
                exec.execute_checked(&info(1, 1_000), &block, &|_, _| true)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("transfers_2000_with_signature_checks", |b| {
        b.iter_batched(
            || executor(&keys),
            |(_, exec)| exec.execute(1, 1_000, &block).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("transfers_2000_with_signature_checks_one_thread", |b| {
        b.iter_batched(
            || {
                let (backend, exec) = executor(&keys);
                (backend, exec.with_threads(1))
            },
            |(_, exec)| exec.execute(1, 1_000, &block).unwrap(),
            BatchSize::PerIteration,
        )
    });
    // Local-currency payments: a merchant-signed request each, checked in execution.
    let issuer = key(90_000);
    let bank = key(90_001);
    let shop = key(90_002);
    let payers: Vec<Keypair> = (0..1_000).map(|i| key(100_000 + i)).collect();
    let setup = vec![
        tx(
            &issuer,
            0,
            Payload::Currency(CurrencyOp::Define {
                currency: "CITY".into(),
                bank: bank.public(),
                expiry_secs: 86_400,
                rules: CurrencyRules {
                    regions: vec!["r".into()],
                    categories: vec!["c".into()],
                    wallet_balance_max: u64::MAX / 4,
                    monthly_charge_max: u64::MAX / 4,
                    bonus_bps: 1_000,
                    require_verified: false,
                },
            }),
        ),
        tx(
            &issuer,
            1,
            Payload::Currency(CurrencyOp::RegisterMerchants {
                currency: "CITY".into(),
                merchants: vec![MerchantInfo {
                    merchant: shop.public(),
                    region: "r".into(),
                    category: "c".into(),
                    settlement_account: "a".into(),
                }],
            }),
        ),
    ];
    let charges: Vec<SignedTransaction> = payers
        .chunks(50)
        .enumerate()
        .map(|(n, chunk)| {
            let deposits = chunk
                .iter()
                .enumerate()
                .map(|(i, p)| Deposit {
                    wallet: p.public(),
                    amount: 100_000,
                    reference: hash_parts("dep", &[&(n * 50 + i).to_le_bytes()]),
                })
                .collect();
            tx(
                &bank,
                n as u64,
                Payload::Currency(CurrencyOp::Charge {
                    currency: "CITY".into(),
                    deposits,
                }),
            )
        })
        .collect();
    let payments: Vec<SignedTransaction> = payers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let request = PaymentRequest {
                chain_id: CHAIN.into(),
                currency: "CITY".into(),
                merchant: shop.public(),
                amount: 5_000,
                reference: Reference(r),
                expires_at_ms: u64::MAX,
            };
            let merchant_signature = shop.sign(&request.id());
            tx(
                p,
                0,
                Payload::Currency(CurrencyOp::Pay {
                    request,
                    merchant_signature,
                }),
            )
        })
        .collect();
    let prepared = || {
        let (backend, exec) = executor(&[]);
        for (h, block) in [(1, &setup), (2, &charges)] {
            let out = exec.execute(h, 1_000, block).unwrap();
            assert_eq!(out.applied as usize, block.len());
            backend.write(out.batch, true).unwrap();
        }
        (backend, exec)
    };
    g.throughput(Throughput::Elements(payments.len() as u64));
    g.bench_function("currency_payments_1000_presigned_checked", |b| {
        b.iter_batched(
            prepared,
            |(_, exec)| {
                let out = exec
                    .execute_checked(&info(3, 2_000), &payments, &|_, _| true)
                    .unwrap();
                assert_eq!(out.applied as usize, payments.len());
                out
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn state(c: &mut Criterion) {
    let mut g = c.benchmark_group("state");
    g.sample_size(20);
    for n in [1_000usize, 10_000] {
        let updates: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..n)
            .map(|i| {
                (
                    hash_parts("k", &[&i.to_le_bytes()]).0.to_vec(),
                    Some(vec![1u8; 40]),
                )
            })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("jmt_commit_{n}_fresh_keys"), |b| {
            b.iter_batched(
                || {
                    let backend = Arc::new(MemoryBackend::new());
                    let tree = StateTree::new(backend.clone());
                    let (_, batch) = tree.apply(0, vec![]).unwrap();
                    backend.write(batch, true).unwrap();
                    (tree, updates.clone())
                },
                |(tree, updates)| tree.apply(1, updates).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    // A block's worth of changes to accounts that exist (what transfers do): the tree walks,
    // re-hashes and rewrites the paths to 1,000 leaves among 4,000 or 100,000. Only `apply` is
    // timed; each version is written before the next.
    for keys in [4_000u32, 100_000] {
        let per_block = 1_000u32;
        let key = |i: u32| hash_parts("acct", &[&i.to_le_bytes()]).0.to_vec();
        let backend = Arc::new(MemoryBackend::new());
        let tree = StateTree::new(backend.clone());
        let (_, batch) = tree
            .apply(
                0,
                (0..keys).map(|i| (key(i), Some(vec![1u8; 50]))).collect(),
            )
            .unwrap();
        backend.write(batch, true).unwrap();
        let mut version = 0u64;
        let mut next = 0u32;
        g.throughput(Throughput::Elements(per_block as u64));
        g.bench_function(format!("jmt_update_{per_block}_of_{keys}_keys"), |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    version += 1;
                    let updates = (0..per_block)
                        .map(|_| {
                            next = (next + 1) % keys;
                            (key(next), Some(vec![version as u8; 50]))
                        })
                        .collect();
                    let start = std::time::Instant::now();
                    let (_, batch) = tree.apply(version, updates).unwrap();
                    spent += start.elapsed();
                    backend.write(batch, true).unwrap();
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, crypto, execution, state);
criterion_main!(benches);
