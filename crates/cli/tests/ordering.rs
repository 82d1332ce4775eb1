//! An ordering-only chain (genesis `ordering_only`, the benchmark's component mode): four real
//! validators order and store unsigned transactions without executing them.

mod common;

use common::{Net, SERIAL};
use netchain_types::{Payload, PublicKey, Signature, SignedTransaction, Transaction};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn opaque(chain: &str, sender: u8, nonce: u64, memo: usize) -> SignedTransaction {
    SignedTransaction {
        tx: Transaction {
            chain_id: chain.into(),
            sender: PublicKey([sender; 32]),
            nonce,
            payload: Payload::Transfer {
                to: PublicKey([0; 32]),
                amount: 0,
                memo: vec![7; memo],
            },
        },
        // Not a signature at all: nothing checks it on this chain.
        signature: Signature([0xab; 64]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordering_only_chain_orders_and_stores_unchecked_transactions() {
    let _serial = SERIAL.lock().await;
    let net = Net::launch(4, |p| p.ordering_only = true, |_, _| {}).await;
    let chain = net.chain_id();
    let from = net.clients[0].status().await.unwrap().height + 1;

    // Follow what validator 0 orders: block transaction counts, and the probe sender's events.
    let ordered = Arc::new(Mutex::new(0u64));
    let blocks = {
        let (ordered, client) = (ordered.clone(), net.clients[0].clone());
        tokio::spawn(async move {
            client
                .follow_blocks(from, |_, n, _| *ordered.lock().unwrap() += n)
                .await
        })
    };
    let probes = Arc::new(Mutex::new(Vec::new()));
    let probe_reader = {
        let (probes, client) = (probes.clone(), net.clients[0].clone());
        tokio::spawn(async move {
            client
                .follow_txs_of(from, Some(PublicKey([9; 32])), |ev| {
                    probes.lock().unwrap().push(ev)
                })
                .await
        })
    };

    // Unsigned transactions, arbitrary nonces, a copy sent twice: all are ordered. One for
    // another chain is refused, and so is one over the size limit.
    let mut expected = 0u64;
    let mut probe_ids = HashSet::new();
    for (node, client) in net.clients.iter().enumerate() {
        let mut txs: Vec<_> = (0..300u64)
            .map(|k| opaque(&chain, node as u8, k * 7 % 50, 400))
            .collect();
        txs.push(txs[0].clone());
        let probe = opaque(&chain, 9, node as u64, 10);
        probe_ids.insert(probe.id());
        txs.push(probe);
        txs.push(opaque("other-chain", 1, 0, 10));
        txs.push(opaque(&chain, 1, 0, 5_000));
        let resp = client.submit_bulk(&txs).await.unwrap();
        assert_eq!(resp.accepted, 302, "{resp:?}");
        let codes: Vec<_> = resp.refused.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["wrong_chain", "oversize"], "{resp:?}");
        expected += 302;
    }

    let start = Instant::now();
    while *ordered.lock().unwrap() < expected || probes.lock().unwrap().len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ordered {} of {expected}, {} of 4 probes; log tail:\n{}",
            ordered.lock().unwrap(),
            probes.lock().unwrap().len(),
            common::tail(&net.log(0))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocks.abort();
    probe_reader.abort();
    assert_eq!(
        *ordered.lock().unwrap(),
        expected,
        "nothing ordered twice or lost"
    );
    let probes = probes.lock().unwrap().clone();
    let seen: HashSet<_> = probes.iter().map(|e| e.id).collect();
    assert_eq!(
        seen, probe_ids,
        "the filtered stream names exactly the probes"
    );
    assert!(probes
        .iter()
        .all(|e| e.applied && e.code.is_none() && e.height >= from));

    // Every validator stored the same chain (and state: only the block history changes it),
    // and nothing executed: no sender's nonce moved.
    let top = net.height(0).await.unwrap();
    for i in 0..4 {
        net.wait_height(i, top, Duration::from_secs(30)).await;
    }
    net.assert_agree(&[0, 1, 2, 3], from..=top).await;
    for i in 0..4 {
        let s = net.clients[i].status().await.unwrap();
        assert!(s.committed_txs_total >= expected);
        for sender in [0u8, 1, 9] {
            let a = net.clients[i]
                .account(&PublicKey([sender; 32]), false)
                .await
                .unwrap();
            assert_eq!(
                (a.nonce, a.balance),
                (0, 0),
                "validator {i} executed {sender}"
            );
        }
    }
}
