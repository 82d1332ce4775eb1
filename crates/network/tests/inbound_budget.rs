//! A peer that sends faster than this node processes is held to its inbound byte budget: the
//! messages waiting for processing never exceed it, reading from the peer pauses (TCP
//! back-pressure), and once processing resumes every message arrives, none lost.

use bytes::Bytes;
use netchain_crypto::Keypair;
use netchain_network::{Inbound, Network, NetworkConfig};
use netchain_types::{codec, Committee, Validator};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const MESSAGE_BYTES: usize = 10_000;
const MESSAGES: usize = 100;
const BUDGET: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_held_to_its_inbound_budget_and_nothing_is_lost() {
    let keys = [Keypair::from_secret([1; 32]), Keypair::from_secret([2; 32])];
    let ports = [free_port(), free_port()];
    let committee = Committee {
        validators: (0..2)
            .map(|i| Validator {
                public_key: keys[i].public(),
                p2p_address: format!("127.0.0.1:{}", ports[i]),
                api_address: "127.0.0.1:1".into(),
            })
            .collect(),
    };
    let cfg = |me: usize| NetworkConfig {
        chain_id: "budget-test".into(),
        committee: committee.clone(),
        me: me as u16,
        listen_address: format!("127.0.0.1:{}", ports[me]),
        frame_bytes_max: 16 * 1024,
        peer_queue_max: 10_000,
        peer_queue_bytes_max: 4 << 20,
        handshake_timeout_ms: 3_000,
        inbound_bytes_max: BUDGET,
        admission: None,
    };
    let (tx0, mut rx0) = mpsc::channel::<Inbound<Vec<u8>>>(10_000);
    let (tx1, _rx1) = mpsc::channel::<Inbound<Vec<u8>>>(10_000);
    let _receiver = Network::start(cfg(0), keys[0].clone(), tx0).await.unwrap();
    let sender = Network::start(cfg(1), keys[1].clone(), tx1).await.unwrap();
    let payload = Bytes::from(codec::encode(&vec![7u8; MESSAGE_BYTES]));
    for _ in 0..MESSAGES {
        assert!(sender.send(0, payload.clone()), "outbound queue refused");
    }
    // Nobody processes: what waits stays within the budget, however long the peer pushes.
    let start = Instant::now();
    let mut queued = 0;
    while start.elapsed() < Duration::from_secs(3) {
        queued = rx0.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let most = BUDGET / MESSAGE_BYTES;
    assert!(queued > 0, "nothing arrived at all");
    assert!(
        queued <= most,
        "{queued} messages of {MESSAGE_BYTES} B wait, the budget holds {most}"
    );
    // Processing resumes: every message arrives, from the right peer, intact.
    let mut got = 0;
    while got < MESSAGES {
        let inbound = tokio::time::timeout(Duration::from_secs(10), rx0.recv())
            .await
            .expect("messages stopped arriving")
            .unwrap();
        let (from, msg) = inbound.into_parts();
        assert_eq!((from, msg.len()), (1, MESSAGE_BYTES));
        got += 1;
    }
}
