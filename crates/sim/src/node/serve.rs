//! The parts of the driver that read the store for others: sync and catch-up answers, the
//! recovery of uncommitted blocks at restart, and the cache of verified signatures.

use super::{Effect, Running};
use crate::disk::SimDisk;
use netchain_consensus::SafetyData;
use netchain_storage::{ChainStore, ChainTip};
use netchain_types::{
    codec, Block, ConsensusMessage, Digest, Signature, SignedTransaction, TxId, ValidatorIndex,
};
use std::collections::{BTreeSet, VecDeque};

/// Bytes served in one sync answer at most (the node bounds by its frame size).
const SYNC_BYTES_MAX: usize = 1 << 20;
/// Most uncommitted blocks walked back on restart (as in the node).
const RECOVER_BLOCKS_MAX: usize = 10_000;

/// Signatures verified at admission, remembered so execution need not check them again (as the
/// node's bounded cache does): (transaction id, signature), oldest forgotten first.
#[derive(Default)]
pub(super) struct Verified {
    keys: BTreeSet<(TxId, Signature)>,
    order: VecDeque<(TxId, Signature)>,
}

/// Entries of the verified-signature cache.
const VERIFIED_MAX: usize = 4_096;

impl Verified {
    pub(super) fn insert(&mut self, tx: &SignedTransaction) {
        let key = (tx.id(), tx.signature);
        if self.keys.insert(key) {
            self.order.push_back(key);
            if self.order.len() > VERIFIED_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }

    pub(super) fn contains(&self, tx: &SignedTransaction) -> bool {
        self.keys.contains(&(tx.id(), tx.signature))
    }
}

fn find_block(r: &Running, id: &Digest) -> Option<Block> {
    if let Some(b) = r.core.block(id) {
        return Some(b.clone());
    }
    r.store.block(id).ok().flatten()
}

pub(super) fn serve_sync(
    r: &Running,
    to: ValidatorIndex,
    block_id: Digest,
    max_blocks: u32,
    out: &mut Vec<Effect>,
) {
    let mut blocks = Vec::new();
    let mut bytes = 0;
    let mut cursor = block_id;
    while blocks.len() < max_blocks.min(100) as usize {
        let Some(block) = find_block(r, &cursor) else {
            break;
        };
        bytes += codec::encode(&block).len();
        if bytes > SYNC_BYTES_MAX && !blocks.is_empty() {
            break;
        }
        cursor = block.parent_id;
        let genesis = block.height == 0;
        blocks.push(block);
        if genesis {
            break;
        }
    }
    if !blocks.is_empty() {
        let msg = ConsensusMessage::SyncResponse { blocks };
        out.push(Effect::Send { to, msg });
    }
}

pub(super) fn serve_catch_up(
    r: &Running,
    to: ValidatorIndex,
    from_height: u64,
    max_blocks: u32,
    out: &mut Vec<Effect>,
) {
    let mut blocks = Vec::new();
    let mut bytes = 0;
    let end = from_height.saturating_add(max_blocks.min(100) as u64);
    for height in from_height..end {
        let Ok(Some(block)) = r.store.block_at(height) else {
            break;
        };
        bytes += codec::encode(&block).len();
        if bytes > SYNC_BYTES_MAX && !blocks.is_empty() {
            break;
        }
        blocks.push(block);
    }
    if !blocks.is_empty() {
        let msg = ConsensusMessage::CatchUpResponse { blocks };
        out.push(Effect::Send { to, msg });
    }
}

/// The stored uncommitted blocks from the executed tip up to the block of the highest QC the
/// safety data recorded, oldest first (empty if the chain is incomplete) — as the node does.
pub(super) fn recover_uncommitted(
    store: &ChainStore<SimDisk>,
    tip: &ChainTip,
    safety: &SafetyData,
) -> Vec<Block> {
    let Some(qc) = &safety.one_chain_qc else {
        return Vec::new();
    };
    let tip_id = tip.block.id();
    let mut chain = Vec::new();
    let mut cursor = qc.block_id;
    while cursor != tip_id && chain.len() < RECOVER_BLOCKS_MAX {
        match store.block(&cursor).expect("sim disk") {
            Some(block) if block.height > tip.block.height => {
                cursor = block.parent_id;
                chain.push(block);
            }
            _ => return Vec::new(),
        }
    }
    chain.reverse();
    chain
}
