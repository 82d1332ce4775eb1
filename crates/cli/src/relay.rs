//! The anchoring relay a service-chain validator runs: on a timer it reads the root's record of
//! this chain and asks [`netchain_execution::relay::Relay`] whether to submit the chain's newest
//! certified checkpoint (validators take turns; anyone relays once the anchor is overdue). The
//! decisions are the same code the simulator drives with crashing relays; this file is the I/O.

use netchain_api::chains::ChainView;
use netchain_client::Client;
use netchain_config::AnchoringConfig;
use netchain_crypto::Keypair;
use netchain_execution::relay::{
    anchor_transaction, extension_proof, newest_executed_checkpoint, Decision, Relay, Schedule,
};
use netchain_node::{now_ms, Shared};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Runs until the process ends.
pub async fn run(
    shared: Arc<Shared>,
    keypair: Keypair,
    root_chain_id: String,
    cfg: AnchoringConfig,
) {
    let roots: Vec<Client> = cfg.root_api.iter().map(|a| Client::new(a)).collect();
    if roots.is_empty() {
        warn!("anchoring configured without root API addresses; not relaying");
        return;
    }
    let committee = shared.committee().validators.clone();
    let schedule = Schedule {
        every_blocks: cfg.every_blocks,
        every_ms: cfg.every_ms,
        interval_ms: cfg.interval_ms,
    };
    let mut relay = Relay::new(schedule, u64::from(shared.me), committee.len() as u64);
    let mut next_root = 0usize;
    let mut warned_epoch = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(cfg.interval_ms.max(100)));
    loop {
        ticker.tick().await;
        let root = &roots[next_root % roots.len()];
        let record = match root
            .get_typed::<ChainView>(&format!("/v1/chains/{}", shared.chain_id))
            .await
        {
            Ok(r) => r.record,
            Err(e) => {
                debug!(error = %e, "root registry not readable (not registered yet, or root down)");
                next_root += 1;
                continue;
            }
        };
        let cert = match newest_executed_checkpoint(&shared.store, shared.status().height) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "reading checkpoints failed");
                continue;
            }
        };
        let certified = cert.as_ref().map(|c| c.checkpoint.height);
        let (epoch, anchored, height) = match relay.decide(now_ms(), &record, &committee, certified)
        {
            Decision::Relay {
                epoch,
                anchored,
                height,
            } => (epoch, anchored, height),
            Decision::NoEpoch => {
                if !warned_epoch {
                    warn!("no root epoch lists this chain's committee; not relaying");
                    warned_epoch = true;
                }
                continue;
            }
            Decision::NotDue | Decision::NotMyTurn | Decision::InFlight => continue,
        };
        let Some(cert) = cert else { continue };
        let proof = match extension_proof(&shared.executor, anchored, height) {
            Ok(Some(p)) => p,
            Ok(None) => {
                warn!(
                    anchored,
                    height, "no history entry for the anchored height here"
                );
                continue;
            }
            Err(e) => {
                warn!(error = %e, "reading the extension proof failed");
                continue;
            }
        };
        let nonce = match root.account(&keypair.public(), false).await {
            Ok(a) => a.nonce,
            Err(_) => continue,
        };
        let tx = anchor_transaction(&keypair, &root_chain_id, nonce, epoch, cert, proof);
        match root.submit(&tx).await {
            Ok(r) => {
                relay.submitted(anchored, now_ms());
                info!(height, anchored, tx = %r.tx_id, "anchor submitted to the root chain")
            }
            Err(e) => {
                debug!(error = %e, "anchor not accepted by the root node");
                next_root += 1;
            }
        }
    }
}
