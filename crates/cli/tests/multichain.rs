//! A root chain and two service chains as real processes: both service chains are registered
//! and anchored; one loses its quorum (two of four validators, and their relays, killed) while
//! the root and the other service chain keep committing and anchoring; once it recovers, its
//! anchoring resumes from where it stopped.

mod common;

use common::{free_base_port, tail, SERIAL};
use netchain_cli::multichain::{self, MultiNet, MultiOptions};
use std::time::{Duration, Instant};

async fn height(net: &MultiNet, chain: usize) -> u64 {
    let mut best = 0;
    for c in &net.chains[chain].clients {
        if let Ok(s) = c.status().await {
            best = best.max(s.height);
        }
    }
    best
}

/// Waits until `f` holds, or fails with the logs of validator 0 of every chain.
async fn wait_for<F, Fut>(net: &MultiNet, what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs: Vec<String> = net
        .chains
        .iter()
        .map(|c| {
            let log = std::fs::read_to_string(c.layout.validator_dir(0).join("node.log"))
                .unwrap_or_default();
            format!("--- {} validator 0:\n{}", c.name, tail(&log))
        })
        .collect();
    panic!("timed out waiting for {what}\n{}", logs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_service_chain_does_not_stop_the_others_and_resumes_anchoring() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(12);
    let opts = MultiOptions {
        dir: dir.path().join("net"),
        service_chains: 2,
        validators: 4,
        load_tps: 0,
        duration: None,
        p2p_port: base,
        api_port: base + 4,
        port_stride: 8,
        anchor_every_blocks: 5,
    };
    let mut net = multichain::start(&opts).await.unwrap();
    let long = Duration::from_secs(60);
    // Both service chains registered and anchored.
    for id in ["svc-1", "svc-2"] {
        let n = &net;
        wait_for(n, &format!("a first anchor of {id}"), long, || async move {
            n.anchored(id).await.is_some_and(|h| h > 0)
        })
        .await;
    }
    // svc-1 loses its quorum.
    net.chains[1].kill(2).await;
    net.chains[1].kill(3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let halted_at = height(&net, 1).await;
    let anchored_at = net.anchored("svc-1").await.unwrap();
    let root_before = height(&net, 0).await;
    let svc2_before = net.anchored("svc-2").await.unwrap();
    // The root and svc-2 keep going, svc-2's anchors keep arriving.
    let n = &net;
    wait_for(
        n,
        "svc-2 anchoring while svc-1 is down",
        long,
        || async move {
            n.anchored("svc-2")
                .await
                .is_some_and(|h| h > svc2_before + 10)
        },
    )
    .await;
    assert!(height(&net, 0).await > root_before, "the root stalled");
    assert!(
        height(&net, 1).await <= halted_at + 1,
        "svc-1 committed without a quorum"
    );
    assert_eq!(net.anchored("svc-1").await, Some(anchored_at));
    // svc-1 recovers: it commits again and its anchors resume past the old one.
    net.chains[1].start_node(2).unwrap();
    net.chains[1].start_node(3).unwrap();
    let n = &net;
    wait_for(n, "svc-1 anchoring again", long, || async move {
        n.anchored("svc-1").await.is_some_and(|h| h > halted_at)
    })
    .await;
    // The root's record of svc-1 is one chain of anchors, never flagged.
    let view: netchain_api::chains::ChainView = net.chains[0].clients[0]
        .get_typed("/v1/chains/svc-1")
        .await
        .unwrap();
    assert!(!view.record.flagged);
    assert!(view.record.anchors >= 2);
    net.stop().await;
}
