//! A root chain and two service chains as real processes: both service chains are registered
//! and anchored; one loses its quorum (two of four validators, and their relays, killed) while
//! the root and the other service chain keep committing and anchoring; once it recovers, its
//! anchoring resumes from where it stopped. Network ID across chains: a service chain's nodes
//! follow the root's identity registry, so a revocation on the root cuts a service validator
//! off its own chain.

mod common;

use common::{free_base_port, tail, SERIAL};
use netchain_api::chains::{AnchorResponse, StateProofResponse};
use netchain_cli::layout::demo_account;
use netchain_cli::multichain::{self, MultiNet, MultiOptions, ROOT_CHAIN};
use netchain_client::verify_cross_chain_account;
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

/// An account of svc-2 proven through the root's anchor with only the root committee's keys;
/// every kind of tampering is refused; the CLI does the same.
async fn cross_chain_proof(net: &MultiNet) {
    let root = &net.chains[0];
    let svc = &net.chains[2];
    let pk = demo_account("svc-2", 0).public();
    let start = Instant::now();
    let anchor: AnchorResponse = loop {
        // The newest anchor may be newer than the newest certified root checkpoint: retry.
        match root.clients[0]
            .get_typed("/v1/chains/svc-2/anchors/latest?proof=true")
            .await
        {
            Ok(a) => break a,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no anchor proof: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let key = hex::encode(netchain_execution::account_key(&pk));
    let state: StateProofResponse = svc.clients[0]
        .get_typed(&format!(
            "/v1/state/proof?key={key}&height={}",
            anchor.anchor.height
        ))
        .await
        .unwrap();
    let committee = &root.layout.genesis.committee;
    let v = verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &anchor, &state)
        .unwrap();
    assert_eq!(v.height, anchor.anchor.height);
    assert_eq!(v.account.unwrap().balance, 1_000_000_000);
    // Tampering: a richer account, another anchor record, a forged root signature, the wrong
    // chain, and the service chain's own committee posing as the root's.
    let mut richer = state.clone();
    let mut acct = v.account.unwrap();
    acct.balance += 1;
    richer.value_hex = Some(hex::encode(netchain_types::encode(&acct)));
    let mut moved = anchor.clone();
    let p = moved.proof.as_mut().unwrap();
    let mut record: netchain_execution::registry::AnchorRecord =
        netchain_types::decode(&hex::decode(&p.value_hex).unwrap(), 4_096).unwrap();
    record.state_root = netchain_types::Digest([7; 32]);
    p.value_hex = hex::encode(netchain_types::encode(&record));
    let mut forged = anchor.clone();
    forged.proof.as_mut().unwrap().checkpoint.signatures[0].1 .0[5] ^= 1;
    let svc_committee = &svc.layout.genesis.committee;
    // The chain record, proven at the same root checkpoint: flagged is refused, and so is a
    // record the proof does not hold, or none.
    let mut flagged = anchor.clone();
    let p = flagged.proof.as_mut().unwrap();
    let mut chain: netchain_execution::registry::ChainRecord = netchain_types::decode(
        &hex::decode(p.record_hex.as_ref().unwrap()).unwrap(),
        1 << 20,
    )
    .unwrap();
    assert!(!chain.flagged);
    chain.flagged = true;
    p.record_hex = Some(hex::encode(netchain_types::encode(&chain)));
    let mut no_record = anchor.clone();
    no_record.proof.as_mut().unwrap().record_hex = None;
    let too_old = v.root_height + 1;
    for (what, result) in [
        (
            "flagged chain (record not in the proof)",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &flagged, &state),
        ),
        (
            "no chain record",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &no_record, &state),
        ),
        (
            "root checkpoint older than asked",
            verify_cross_chain_account(
                committee, ROOT_CHAIN, "svc-2", &pk, too_old, &anchor, &state,
            ),
        ),
        (
            "richer account",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &anchor, &richer),
        ),
        (
            "moved anchor",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &moved, &state),
        ),
        (
            "forged root signature",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-2", &pk, 0, &forged, &state),
        ),
        (
            "wrong chain",
            verify_cross_chain_account(committee, ROOT_CHAIN, "svc-1", &pk, 0, &anchor, &state),
        ),
        (
            "wrong committee",
            verify_cross_chain_account(svc_committee, ROOT_CHAIN, "svc-2", &pk, 0, &anchor, &state),
        ),
    ] {
        assert!(result.is_err(), "{what} was accepted");
    }
    // The command line.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_netchain"))
        .args([
            "verify",
            "--account",
            &pk.to_string(),
            "--chain",
            "svc-2",
            "--root-genesis",
        ])
        .arg(root.layout.genesis_file())
        .args(["--root-node", root.layout.api_address(0)])
        .args(["--node", svc.layout.api_address(0)])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("verified: on svc-2"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_service_chain_does_not_stop_the_others_and_resumes_anchoring() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(12);
    let opts = MultiOptions {
        keep: false,
        dir: dir.path().join("net"),
        service_chains: 2,
        validators: 4,
        load_tps: 0,
        duration: None,
        p2p_port: base,
        api_port: base + 4,
        port_stride: 8,
        anchor_every_blocks: 5,
        accounts: 20,
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
    cross_chain_proof(&net).await;
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
    // org-1 revokes svc-2's validator 3 on the root: svc-2's other validators, which follow the
    // root's registry with proofs, close their connections with it; svc-2 goes on with three.
    let admin: netchain_crypto::Keypair = netchain_crypto::KeyFile::load(
        &netchain_cli::layout::org_admin_file(&net.chains[0].layout.dir, "org-1"),
    )
    .unwrap();
    let revoke = netchain_crypto::sign_transaction(
        &admin,
        netchain_types::Transaction {
            chain_id: ROOT_CHAIN.into(),
            sender: admin.public(),
            nonce: 0,
            payload: netchain_types::Payload::Identity(
                netchain_types::identity::IdentityOp::SetStatus {
                    org: "org-1".into(),
                    name: "svc-2-validator-3".into(),
                    status: netchain_types::identity::IdentityStatus::Revoked,
                },
            ),
        },
    );
    net.chains[0].clients[0].submit(&revoke).await.unwrap();
    let n = &net;
    wait_for(
        n,
        "svc-2 cutting off its revoked validator",
        long,
        || async move {
            let mut cut = 0;
            for c in &n.chains[2].clients[..3] {
                let text = match reqwest::get(format!("{}/metrics", c.base())).await {
                    Ok(r) => r.text().await.ok(),
                    Err(_) => None,
                };
                if let Some(text) = text {
                    let evicted = text
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("netchain_p2p_evicted_connections ")?
                                .parse::<f64>()
                                .ok()
                        })
                        .unwrap_or(0.0);
                    cut += usize::from(evicted >= 1.0);
                }
            }
            cut == 3
        },
    )
    .await;
    let svc2 = height(&net, 2).await;
    let n = &net;
    wait_for(n, "svc-2 committing with three", long, || async move {
        height(n, 2).await > svc2 + 3
    })
    .await;
    net.stop().await;
    // `--keep`: the same chains restart from their data; nothing is registered twice and
    // anchoring goes on from where it was.
    let before = view.record.last_anchor.map_or(0, |a| a.height);
    let mut net = multichain::start(&MultiOptions { keep: true, ..opts })
        .await
        .unwrap();
    let n = &net;
    wait_for(
        n,
        "svc-1 anchoring after the restart",
        long,
        || async move { n.anchored("svc-1").await.is_some_and(|h| h > before) },
    )
    .await;
    net.stop().await;
}
