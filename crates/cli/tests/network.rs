//! Multi-process tests: real `netchaind` validators on loopback.

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// Submits `per_account` transfers from each of `accounts` demo accounts (account a sends to
/// a+1), spread over the validators that are up, and returns the ids.
async fn submit_transfers(
    net: &Net,
    accounts: usize,
    per_account: u64,
    first_nonce: u64,
    up: &[usize],
) -> Vec<netchain_types::Digest> {
    let chain = net.chain_id();
    let keys: Vec<_> = (0..accounts).map(|a| demo_account(&chain, a)).collect();
    let mut ids = Vec::new();
    for round in 0..per_account {
        let mut per_node: HashMap<usize, Vec<_>> = HashMap::new();
        for a in 0..accounts {
            let to = keys[(a + 1) % accounts].public();
            let tx = transfer(
                &chain,
                &keys[a],
                first_nonce + round,
                to,
                1 + (a as u64 % 3),
            );
            ids.push(tx.id());
            per_node.entry(up[a % up.len()]).or_default().push(tx);
        }
        for (node, txs) in per_node {
            let resp = net.clients[node].submit_batch(&txs).await.unwrap();
            assert_eq!(
                resp.rejected,
                0,
                "refused: {:?}",
                resp.results.iter().find(|r| !r.accepted)
            );
        }
    }
    ids
}

async fn wait_committed_total(net: &Net, who: &[usize], total: u64, timeout: Duration) {
    let start = Instant::now();
    for &i in who {
        loop {
            let s = net.clients[i].status().await.unwrap();
            if s.committed_txs_total >= total {
                break;
            }
            if start.elapsed() > timeout {
                let mut report = String::new();
                for (j, c) in net.clients.iter().enumerate() {
                    if let Ok(s) = c.status().await {
                        report += &format!(
                            "\n  validator {j}: height {} round {} committed {} mempool {}",
                            s.height, s.round, s.committed_txs_total, s.mempool_size
                        );
                    }
                }
                panic!(
                    "validator {i} committed {} of {total} transactions{report}\nlog of {i}:\n{}",
                    s.committed_txs_total,
                    common::tail(&net.log(i))
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_commit_ten_thousand_transfers_and_agree() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 100).await;
    let supply = net.layout.genesis.supply();
    // 100 clients (accounts), 100 transfers each, spread over all validators.
    let ids = submit_transfers(&net, 100, 100, 0, &[0, 1, 2, 3]).await;
    assert_eq!(ids.len(), 10_000);
    wait_committed_total(&net, &[0, 1, 2, 3], 10_000, LONG).await;
    for id in ids.iter().step_by(97) {
        let s = net.clients[1].tx_status(id).await.unwrap().unwrap();
        assert_eq!(s.status, "committed", "{s:?}");
    }
    let mut heights = Vec::new();
    for i in 0..4 {
        heights.push(net.height(i).await.unwrap());
    }
    let common = *heights.iter().min().unwrap();
    net.assert_agree(&[0, 1, 2, 3], 1..=common).await;
    for i in 0..4 {
        assert_eq!(net.demo_supply(i).await, supply, "supply at validator {i}");
        let s = net.clients[i].status().await.unwrap();
        assert_eq!(s.committed_txs_total, 10_000);
        // No transaction was proposed twice (a copy would be rejected by execution).
        let metrics = reqwest::get(format!("http://{}/metrics", net.layout.api_address(i)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("netchain_execution_rejections_total 0\n"),
            "validator {i} rejected committed transactions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_validator_does_not_stop_the_rest_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let mut net = Net::start(4, 40).await;
    net.wait_height(0, 3, LONG).await;
    net.kill(3).await;
    let h0 = net.height(0).await.unwrap();
    let ids = submit_transfers(&net, 40, 5, 0, &[0, 1, 2]).await;
    wait_committed_total(&net, &[0, 1, 2], ids.len() as u64, LONG).await;
    net.wait_height(0, h0 + 20, LONG).await;
    // Restart (after SIGKILL): it resumes from its store and catches up.
    net.start_node(3);
    let target = net.height(0).await.unwrap();
    net.wait_height(3, target, LONG).await;
    wait_committed_total(&net, &[3], ids.len() as u64, LONG).await;
    net.assert_agree(&[0, 1, 2, 3], target.saturating_sub(30).max(1)..=target)
        .await;
    // And it takes part again: new transfers commit everywhere.
    let more = submit_transfers(&net, 40, 1, 5, &[3]).await;
    wait_committed_total(&net, &[0, 1, 2, 3], (ids.len() + more.len()) as u64, LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_four_down_halts_without_fork_and_resumes() {
    let _serial = SERIAL.lock().await;
    let mut net = Net::start(4, 20).await;
    net.wait_height(0, 3, LONG).await;
    net.kill(2).await;
    net.kill(3).await;
    // Blocks in flight may still finish; after that nothing commits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (net.height(0).await.unwrap(), net.height(1).await.unwrap());
    submit_transfers(&net, 20, 1, 0, &[0, 1]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = (net.height(0).await.unwrap(), net.height(1).await.unwrap());
    assert_eq!(before, after, "a block committed without a quorum");
    assert_eq!(
        net.clients[0].status().await.unwrap().committed_txs_total,
        0
    );
    let common = after.0.min(after.1);
    net.assert_agree(&[0, 1], 1..=common).await;
    // One comes back: 3 of 4 is a quorum again.
    net.start_node(2);
    net.wait_height(0, after.0 + 3, LONG).await;
    wait_committed_total(&net, &[0, 1, 2], 20, LONG).await;
    let h = net
        .height(0)
        .await
        .unwrap()
        .min(net.height(2).await.unwrap());
    net.assert_agree(&[0, 1, 2], 1..=h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_network_killed_and_restarted_resumes_from_disk() {
    let _serial = SERIAL.lock().await;
    let mut net = Net::start(4, 20).await;
    let ids = submit_transfers(&net, 20, 3, 0, &[0, 1, 2, 3]).await;
    wait_committed_total(&net, &[0, 1, 2, 3], ids.len() as u64, LONG).await;
    for i in 0..4 {
        net.kill(i).await;
    }
    for i in 0..4 {
        net.start_node(i);
    }
    netchain_cli::procs::wait_ready(&net.clients, LONG)
        .await
        .unwrap();
    // Everything committed before the crash is still there...
    for i in 0..4 {
        let s = net.clients[i].status().await.unwrap();
        assert!(
            s.committed_txs_total >= ids.len() as u64,
            "validator {i} lost data"
        );
    }
    // ...and the chain goes on.
    let h = net.height(0).await.unwrap();
    let more = submit_transfers(&net, 20, 1, 3, &[0, 1, 2, 3]).await;
    wait_committed_total(&net, &[0, 1, 2, 3], (ids.len() + more.len()) as u64, LONG).await;
    net.wait_height(0, h + 3, LONG).await;
    let common = net
        .height(0)
        .await
        .unwrap()
        .min(net.height(3).await.unwrap());
    net.assert_agree(&[0, 1, 2, 3], 1..=common).await;
    assert_eq!(net.demo_supply(2).await, net.layout.genesis.supply());
}
