//! Network ID at the transport: a committee member that the admission policy (the identity
//! registry) does not admit gets zero bytes back; once admitted members are revoked, their open
//! connections are closed in both directions as soon as the policy signals the change, and they
//! come back only when admitted again.

use bytes::Bytes;
use netchain_crypto::Keypair;
use netchain_network::{hello_frame, Admission, Inbound, Network, NetworkConfig};
use netchain_types::{codec, Committee, PublicKey, Validator};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const CHAIN: &str = "admission-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the peer sends back within a second (until it closes).
async fn answer_to_hello(address: &str, key: &Keypair, to: &PublicKey) -> Vec<u8> {
    let hello = hello_frame(CHAIN, key, to);
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    s.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&hello).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Whether a message from `from` arrives within `wait` (returns at the first one).
async fn arrives_from(
    rx: &mut mpsc::Receiver<Inbound<Vec<u8>>>,
    from: u16,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if m.into_parts().0 == from {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_members_get_nothing_and_revocation_cuts_open_connections() {
    let keys: Vec<Keypair> = (1..=3u8).map(|i| Keypair::from_secret([i; 32])).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let committee = Committee {
        validators: (0..3)
            .map(|i| Validator {
                public_key: keys[i].public(),
                p2p_address: format!("127.0.0.1:{}", ports[i]),
                api_address: "127.0.0.1:1".into(),
            })
            .collect(),
    };
    // The registry as validators 0 and 1 see it: everyone admitted at first.
    let admitted: Arc<RwLock<BTreeSet<PublicKey>>> =
        Arc::new(RwLock::new(keys.iter().map(|k| k.public()).collect()));
    let (signal, changes) = watch::channel(0u64);
    let policy = {
        let admitted = admitted.clone();
        Admission {
            admits: Arc::new(move |k: &PublicKey| admitted.read().unwrap().contains(k)),
            changes,
        }
    };
    let cfg = |me: usize, admission: Option<Admission>| NetworkConfig {
        chain_id: CHAIN.into(),
        committee: committee.clone(),
        me: me as u16,
        listen_address: format!("127.0.0.1:{}", ports[me]),
        frame_bytes_max: 64 * 1024,
        peer_queue_max: 1_000,
        peer_queue_bytes_max: 1 << 20,
        handshake_timeout_ms: 3_000,
        inbound_bytes_max: 1 << 20,
        admission,
    };
    let mut rx = Vec::new();
    let mut nets = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (tx, r) = mpsc::channel::<Inbound<Vec<u8>>>(1_000);
        // Validator 2 runs without the policy: a revoked node that keeps trying.
        let admission = (i < 2).then(|| policy.clone());
        nets.push(
            Network::start(cfg(i, admission), key.clone(), tx)
                .await
                .unwrap(),
        );
        rx.push(r);
    }
    let msg = Bytes::from(codec::encode(&vec![1u8; 16]));
    // Connected: 2 reaches 0, and 0 reaches 2.
    let until_delivered = |net: Network, to: u16| {
        let msg = msg.clone();
        async move {
            for _ in 0..50 {
                net.send(to, msg.clone());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::spawn(until_delivered(nets[2].clone(), 0));
    tokio::spawn(until_delivered(nets[0].clone(), 2));
    assert!(arrives_from(&mut rx[0], 2, Duration::from_secs(5)).await);
    assert!(arrives_from(&mut rx[2], 0, Duration::from_secs(5)).await);

    // Revoke validator 2 in the registry 0 and 1 follow, and signal it (one executed block).
    admitted.write().unwrap().remove(&keys[2].public());
    signal.send_replace(1);
    // Its open connections close in both directions; it keeps sending, nothing arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in rx.iter_mut() {
        while r.try_recv().is_ok() {} // what arrived before the revocation
    }
    for _ in 0..10 {
        nets[2].send(0, msg.clone());
        nets[2].send(1, msg.clone());
        nets[0].send(2, msg.clone());
    }
    assert!(
        !arrives_from(&mut rx[0], 2, Duration::from_secs(2)).await,
        "a revoked peer's messages still arrive"
    );
    assert!(
        !arrives_from(&mut rx[2], 0, Duration::from_millis(200)).await,
        "a node still sends to a revoked peer"
    );
    assert!(
        nets[0]
            .stats()
            .evicted_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "no connection was evicted"
    );
    // Knocking as the revoked key: zero bytes back. As an admitted key: a Welcome.
    let to0 = keys[0].public();
    let addr0 = format!("127.0.0.1:{}", ports[0]);
    assert!(answer_to_hello(&addr0, &keys[2], &to0).await.is_empty());
    assert!(!answer_to_hello(&addr0, &keys[1], &to0).await.is_empty());
    // The others still talk to each other.
    nets[1].send(0, msg.clone());
    assert!(arrives_from(&mut rx[0], 1, Duration::from_secs(5)).await);

    // Admitted again: the connections come back.
    admitted.write().unwrap().insert(keys[2].public());
    signal.send_replace(2);
    tokio::spawn(until_delivered(nets[2].clone(), 0));
    assert!(arrives_from(&mut rx[0], 2, Duration::from_secs(10)).await);
}
