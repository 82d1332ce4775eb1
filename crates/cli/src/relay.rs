//! The anchoring relay a service-chain validator runs: every so many blocks it submits the
//! chain's newest certified checkpoint to the root chain, with the proof that it extends the
//! previously anchored block. Validators take turns by checkpoint height; if the turn-holder is
//! down, anyone relays once the root's anchor is overdue. Duplicates are refused by the root as
//! stale, so a second relay costs a little work and changes nothing.

use netchain_api::chains::ChainView;
use netchain_client::Client;
use netchain_config::AnchoringConfig;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_node::Shared;
use netchain_types::registry::{history_key, Anchor, RegistryOp};
use netchain_types::{CertifiedCheckpoint, Payload, Transaction};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    let every = cfg.every_blocks.max(1);
    let n = shared.committee().size() as u64;
    let mut next_root = 0usize;
    // When the next anchor became due (None: not due yet, or just anchored).
    let mut due_since: Option<(u64, Instant)> = None;
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
        let anchored = record.last_anchor.as_ref().map_or(0, |a| a.height);
        // The epoch whose validator set is this chain's committee (the engine keeps its genesis
        // committee; a root epoch with other keys cannot be certified by it).
        let Some(epoch) = record
            .epochs
            .iter()
            .rev()
            .find(|e| e.validators == shared.committee().validators)
            .map(|e| e.epoch)
        else {
            warn!("no root epoch lists this chain's committee; not relaying");
            continue;
        };
        let Some(cert) = newest_executed_checkpoint(&shared) else {
            continue;
        };
        let height = cert.checkpoint.height;
        if height < anchored.saturating_add(every) {
            due_since = None;
            continue;
        }
        let since = match due_since {
            Some((a, t)) if a == anchored => t,
            _ => {
                let now = Instant::now();
                due_since = Some((anchored, now));
                now
            }
        };
        // The turn of the next anchor slot goes round the committee; anyone relays once it has
        // been due for a few rounds (the turn-holder may be down).
        let slot = anchored / every + 1;
        let my_turn = slot % n == u64::from(shared.me);
        let overdue = since.elapsed() > Duration::from_millis(cfg.interval_ms.saturating_mul(3));
        if !my_turn && !overdue {
            continue;
        }
        let proof = match shared
            .executor
            .state()
            .get_with_proof(&history_key(anchored), height)
        {
            Ok((Some(_), proof)) => proof,
            Ok((None, _)) => {
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
        let tx = sign_transaction(
            &keypair,
            Transaction {
                chain_id: root_chain_id.clone(),
                sender: keypair.public(),
                nonce,
                payload: Payload::Registry(RegistryOp::Anchor(Anchor {
                    epoch,
                    checkpoint: cert,
                    extension_proof: proof.0,
                })),
            },
        );
        match root.submit(&tx).await {
            Ok(r) => info!(height, anchored, tx = %r.tx_id, "anchor submitted to the root chain"),
            Err(e) => {
                debug!(error = %e, "anchor not accepted by the root node");
                next_root += 1;
            }
        }
    }
}

/// The newest checkpoint certified by a quorum whose state this node has executed.
fn newest_executed_checkpoint(shared: &Shared) -> Option<CertifiedCheckpoint> {
    let executed = shared.status().height;
    let latest = shared.store.latest_checkpoint().ok()??;
    if latest.checkpoint.height <= executed {
        return Some(latest);
    }
    (executed.saturating_sub(256)..=executed)
        .rev()
        .find_map(|h| shared.store.checkpoint_at(h).ok().flatten())
}
