//! The quorum-store task: the first stop of every message from peers. It handles batches,
//! acknowledgements, proofs and batch fetches itself and passes everything else on to the
//! consensus task, so dissemination (and the execution thread's fetches of committed batches)
//! keeps going while consensus waits for execution.

use crate::{now_ms, Shared};
use bytes::Bytes;
use netchain_network::{Inbound, Network};
use netchain_types::{codec, Batch, BatchInfo, ConsensusMessage, Digest, ValidatorIndex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

/// A validator cuts a batch of what its clients sent at most this often (or sooner when a full
/// batch is waiting).
const BATCH_INTERVAL_MS: u64 = 40;
/// Most batches made in one go.
const BATCHES_PER_TICK_MAX: usize = 8;
/// Peers' batches waiting for their signature check (each at most `batch_max_bytes`).
const BATCH_CHECK_QUEUE: usize = 64;
const TICK_MS: u64 = 10;
/// Messages for consensus queued here at most while it is busy.
const CONSENSUS_PENDING_MAX: usize = 20_000;
/// An own batch short of a proof is sent again after this long to those that have not
/// acknowledged it (and, while it lacks checked acknowledgements, to enough stored signers,
/// asked to check it; see `QuorumStore::resend_due`).
const RESEND_MS: u64 = 1_000;
/// Most peers' batches checked and stored with one sync.
const CHECKS_PER_SYNC_MAX: usize = 16;

struct BatchTask {
    shared: Arc<Shared>,
    network: Network,
    tx_check: mpsc::Sender<ToCheck>,
    next_batch_ms: u64,
    next_expire_ms: u64,
    /// Answers to a peer wait while more than this is queued to it.
    serve_bytes_max: usize,
    /// Peers' batches with the signature checker (a copy sent again meanwhile is not checked
    /// twice), bounded in all and per author.
    checking: Checking,
}

/// Peers' batches with the signature checker, by digest. Bounded in all (the checker's queues)
/// and per author, to a fair share of the checker's input queue: an author that floods batches
/// (or a Byzantine one) has its extra batches dropped (they come back with its resends) instead
/// of crowding out the others', whose proofs would otherwise stall.
struct Checking {
    digests: HashMap<Digest, ValidatorIndex>,
    per_author: Vec<usize>,
    total_max: usize,
    author_max: usize,
}

impl Checking {
    fn new(validators: usize) -> Self {
        Self {
            digests: HashMap::new(),
            per_author: vec![0; validators],
            // Both queues, the round being checked, the one waiting to be stored and the one
            // being stored.
            total_max: 2 * BATCH_CHECK_QUEUE + 3 * CHECKS_PER_SYNC_MAX,
            author_max: BATCH_CHECK_QUEUE.div_ceil(validators.max(1)),
        }
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.digests.contains_key(digest)
    }

    /// Whether `author` (a committee member) may have one more batch checked now.
    fn has_room(&self, author: ValidatorIndex) -> bool {
        self.digests.len() < self.total_max
            && self
                .per_author
                .get(author as usize)
                .is_some_and(|n| *n < self.author_max)
    }

    fn insert(&mut self, digest: Digest, author: ValidatorIndex) {
        if self.digests.insert(digest, author).is_none() {
            if let Some(n) = self.per_author.get_mut(author as usize) {
                *n += 1;
            }
        }
    }

    fn remove(&mut self, digest: &Digest) {
        if let Some(author) = self.digests.remove(digest) {
            if let Some(n) = self.per_author.get_mut(author as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Starts the task. Messages for consensus wait in a queue of at most `CONSENSUS_PENDING_MAX`
/// while the consensus task is busy (it may wait for execution, which may wait for a batch
/// fetch answered through this task). They give back their sender's inbound byte budget when
/// queued here, so the network keeps reading; when the queue is full, newer ones are dropped
/// (consensus recovers them by sync and timeouts).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    network: Network,
    mut rx_network: mpsc::Receiver<Inbound<ConsensusMessage>>,
    tx_consensus: mpsc::Sender<Inbound<ConsensusMessage>>,
    frame_bytes_max: usize,
) {
    let (tx_check, rx_check) = mpsc::channel::<ToCheck>(BATCH_CHECK_QUEUE);
    let (tx_checked, mut rx_checked) = mpsc::channel::<Checked>(BATCH_CHECK_QUEUE);
    spawn_batch_checker(shared.clone(), rx_check, tx_checked);
    let validators = shared.committee().size();
    let mut task = BatchTask {
        shared,
        network,
        tx_check,
        next_batch_ms: 0,
        next_expire_ms: 0,
        serve_bytes_max: frame_bytes_max / 2,
        checking: Checking::new(validators),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: VecDeque<(ValidatorIndex, ConsensusMessage)> = VecDeque::new();
        loop {
            tokio::select! {
                msg = rx_network.recv() => match msg {
                    Some(inbound) => {
                        if let Some(other) = task.on_message(inbound) {
                            if pending.len() < CONSENSUS_PENDING_MAX {
                                pending.push_back(other.into_parts());
                            } else {
                                debug!("consensus busy: message dropped");
                            }
                        }
                    }
                    None => return,
                },
                permit = tx_consensus.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some((from, msg)) = pending.pop_front() {
                            permit.send(Inbound::local(from, msg));
                        }
                    }
                    Err(_) => return,
                },
                Some(checked) = rx_checked.recv() => task.on_checked_batch(checked),
                _ = tick.tick() => task.make_batches(),
            }
        }
    });
}

impl BatchTask {
    /// Handles a quorum-store message; returns any other message (for consensus).
    fn on_message(
        &mut self,
        inbound: Inbound<ConsensusMessage>,
    ) -> Option<Inbound<ConsensusMessage>> {
        let from = inbound.from();
        match inbound.msg() {
            ConsensusMessage::Batch { .. }
            | ConsensusMessage::BatchAck { .. }
            | ConsensusMessage::Proof(_)
            | ConsensusMessage::BatchRequest { .. }
            | ConsensusMessage::BatchResponse(_) => {}
            _ => return Some(inbound),
        }
        let (_, msg) = inbound.into_parts();
        match msg {
            ConsensusMessage::Batch { batch, checkers } => self.on_batch(from, batch, &checkers),
            ConsensusMessage::BatchAck {
                info,
                author,
                checked,
                signature,
            } => self.on_batch_ack(from, info, author, checked, signature),
            ConsensusMessage::Proof(proof) => {
                if let Some(qs) = &self.shared.quorum_store {
                    let result = qs.lock().expect("quorum store").on_proof(now_ms(), proof);
                    if let Err(e) = result {
                        debug!(from, error = %e, "proof of availability refused");
                    }
                }
            }
            ConsensusMessage::BatchRequest { digest } => self.serve_batch(from, digest),
            ConsensusMessage::BatchResponse(batch) => {
                if let Some(qs) = &self.shared.quorum_store {
                    if !qs.lock().expect("quorum store").on_fetched(batch) {
                        debug!(from, "unrequested or altered batch dropped");
                    }
                }
            }
            _ => {}
        }
        None
    }

    fn peer_backlogged(&self, to: ValidatorIndex) -> bool {
        self.network.queued_bytes(to) > self.serve_bytes_max
    }

    /// Batch mode: cuts batches of the transactions clients sent here and broadcasts them, and
    /// lets expired batches go (their transactions are batched again).
    fn make_batches(&mut self) {
        let Some(qs) = &self.shared.quorum_store else {
            return;
        };
        let now = now_ms();
        let mut made = Vec::new();
        let mut released = Vec::new();
        let resend;
        {
            let mut qs = qs.lock().expect("quorum store");
            resend = qs.resend_due(now, RESEND_MS);
            if now >= self.next_expire_ms {
                self.next_expire_ms = now + 1_000;
                let mut expired = qs.expire(now);
                released = std::mem::take(&mut expired.released);
                if !expired.own.is_empty() {
                    let mut mempool = self.shared.mempool.lock().expect("mempool lock");
                    let again: usize = if self.shared.ordering_only {
                        for b in expired.own.iter().rev() {
                            mempool.requeue_unordered(&b.txs);
                        }
                        expired.own.iter().map(|b| b.txs.len()).sum()
                    } else {
                        expired.own.iter().map(|b| mempool.unbatch(&b.txs)).sum()
                    };
                    debug!(batches = expired.own.len(), again, "own batches expired");
                }
                if !expired.dropped.is_empty() {
                    let mut wb = netchain_storage::WriteBatch::new();
                    let dropped = expired
                        .dropped
                        .iter()
                        .try_for_each(|info| self.shared.store.drop_pending_batch(&mut wb, info))
                        .and_then(|()| self.shared.store.commit_unsynced(wb));
                    if let Err(e) = dropped {
                        warn!(error = %e, "deleting expired batches failed");
                    }
                }
            }
            if self.shared.batching && now >= self.next_batch_ms {
                let (max_txs, max_bytes) = {
                    let c = qs.config();
                    // Room for the batch's own fields.
                    (c.batch_max_txs, c.batch_max_bytes.saturating_sub(1_024))
                };
                for _ in 0..BATCHES_PER_TICK_MAX {
                    if !qs.can_batch() {
                        break;
                    }
                    let txs = self
                        .shared
                        .mempool
                        .lock()
                        .expect("mempool lock")
                        .take_batch(max_txs, max_bytes);
                    if txs.is_empty() {
                        break;
                    }
                    let full = txs.len() >= max_txs;
                    made.push(qs.make_batch(now, txs));
                    if !full {
                        break;
                    }
                }
                if !made.is_empty() {
                    self.next_batch_ms = now + BATCH_INTERVAL_MS;
                }
            }
        }
        // Proofs released by the expiry of older batches (their batches are stored already).
        self.broadcast_proofs(released);
        if !made.is_empty() {
            // Our own acknowledgement promises the batches survive a crash: stored (one sync,
            // outside the quorum store's lock) before anyone sees them.
            let refs: Vec<_> = made.iter().map(|(b, _, _)| (b.info(), b)).collect();
            let stored =
                tokio::task::block_in_place(|| self.shared.store.put_pending_batches(&refs));
            if let Err(e) = stored {
                error!(error = %e, "storing own batches failed; not sent");
                return;
            }
        }
        for (batch, checkers, proofs) in made {
            let msg = ConsensusMessage::Batch { batch, checkers };
            self.network.broadcast(Bytes::from(codec::encode(&msg)));
            self.broadcast_proofs(proofs);
        }
        for again in resend {
            let msg = ConsensusMessage::Batch {
                batch: (*again.batch).clone(),
                checkers: again.checkers,
            };
            let bytes = Bytes::from(codec::encode(&msg));
            for to in again.to.into_iter().filter(|v| *v != self.shared.me) {
                self.network.send(to, bytes.clone());
            }
        }
    }

    /// A peer's batch: cheap checks here, then (when its author asks this validator to check
    /// it) its signatures on the checker thread, which stores it before it is acknowledged.
    fn on_batch(&mut self, from: ValidatorIndex, batch: Batch, checkers: &[ValidatorIndex]) {
        let Some(qs) = &self.shared.quorum_store else {
            return;
        };
        if batch.author != from {
            debug!(from, "batch relayed by another validator dropped");
            return;
        }
        let check = checkers.contains(&self.shared.me);
        // Encoded and hashed once here; the checker and the store take this along.
        let info = batch.info();
        let digest = info.digest;
        if self.checking.contains(&digest) {
            return; // a copy of one being checked
        }
        // A copy of a batch a block executed (the quorum store's memory of commits is bounded
        // and starts empty after a restart; the store's marker is not).
        if self.shared.store.batch_executed(&digest).unwrap_or(true) {
            return;
        }
        let (checked, stored) = {
            let mut qs = qs.lock().expect("quorum store");
            if qs.is_committed(&digest) {
                return;
            }
            match qs.ack_again_digest(&digest, from, check) {
                Some(ack) => (Ok(Some(ack)), false),
                // Stored unchecked, and now asked to check it: it passed the cheap checks, and
                // is on disk already.
                None if qs.stored_checked(&digest).is_some() => (Ok(None), true),
                None => (
                    qs.check_batch_with(now_ms(), from, &batch, &info)
                        .map(|_| None),
                    false,
                ),
            }
        };
        match checked {
            Ok(Some(ack)) => {
                self.network.send(from, Bytes::from(codec::encode(&ack)));
                return;
            }
            Ok(None) => {}
            Err(e) => {
                debug!(from, error = %e, "batch refused");
                return;
            }
        }
        if !self.checking.has_room(from) {
            debug!(from, "batch dropped: signature checks are behind");
            return;
        }
        match self.tx_check.try_send(ToCheck {
            batch,
            info,
            check,
            stored,
        }) {
            Ok(()) => {
                self.checking.insert(digest, from);
            }
            Err(_) => debug!(from, "batch dropped: signature checks are behind"),
        }
    }

    /// A peer's batch back from the checker: if every signature verified, or none was to be
    /// checked (it is then stored durably), kept and acknowledged.
    fn on_checked_batch(&mut self, checked: Checked) {
        let Checked {
            batch,
            info,
            ok,
            checked,
            ..
        } = checked;
        self.checking.remove(&info.digest);
        let Some(qs) = &self.shared.quorum_store else {
            return;
        };
        if !ok {
            return;
        }
        let author = batch.author;
        let mut qs = qs.lock().expect("quorum store");
        match qs.accept_batch_with(now_ms(), batch, info, checked) {
            Ok(ack) => {
                drop(qs);
                self.network.send(author, Bytes::from(codec::encode(&ack)));
            }
            Err(e) => {
                debug!(author, error = %e, "batch not acknowledged");
                if qs.stored_checked(&info.digest).is_some() {
                    // Held (and acknowledged as stored) before this check: kept as it was.
                    return;
                }
                // Stored by the checker but not kept: its index entry goes, and its bytes too
                // unless a block committed (or executed) the batch meanwhile. Decided and
                // written under the quorum store's lock, so no commit slips in between (a
                // commit is marked there before execution sees it).
                let mut wb = netchain_storage::WriteBatch::new();
                let store = &self.shared.store;
                let dropped = if qs.is_committed(&info.digest) {
                    netchain_storage::ChainStore::<crate::Backend>::drop_pending_index(
                        &mut wb, &info,
                    );
                    Ok(())
                } else {
                    store.drop_pending_batch(&mut wb, &info)
                };
                if let Err(e) = dropped.and_then(|()| store.commit_unsynced(wb)) {
                    warn!(error = %e, "deleting a refused batch failed");
                }
            }
        }
    }

    fn on_batch_ack(
        &mut self,
        from: ValidatorIndex,
        info: netchain_types::BatchInfo,
        signer: ValidatorIndex,
        checked: bool,
        signature: netchain_types::Signature,
    ) {
        let Some(qs) = &self.shared.quorum_store else {
            return;
        };
        if signer != from {
            debug!(
                from,
                signer, "acknowledgement relayed by another validator dropped"
            );
            return;
        }
        let result = qs
            .lock()
            .expect("quorum store")
            .on_ack(info, signer, checked, signature);
        match result {
            Ok(proofs) => self.broadcast_proofs(proofs),
            Err(e) => debug!(from, error = %e, "acknowledgement refused"),
        }
    }

    /// Own batches' proofs of availability, to every validator (in the order given).
    fn broadcast_proofs(&self, proofs: Vec<netchain_types::ProofOfAvailability>) {
        for proof in proofs {
            let msg = ConsensusMessage::Proof(proof);
            self.network.broadcast(Bytes::from(codec::encode(&msg)));
        }
    }

    /// A peer executing a committed block asks for one of its batches.
    fn serve_batch(&mut self, to: ValidatorIndex, digest: Digest) {
        if self.peer_backlogged(to) {
            return;
        }
        let held = self
            .shared
            .quorum_store
            .as_ref()
            .and_then(|qs| qs.lock().expect("quorum store").batch(&digest));
        let batch = match held {
            Some(b) => Some((*b).clone()),
            None => self.shared.store.batch(&digest).ok().flatten(),
        };
        if let Some(batch) = batch {
            let msg = ConsensusMessage::BatchResponse(batch);
            self.network.send(to, Bytes::from(codec::encode(&msg)));
        }
    }
}

/// Verifies every signature of the peers' batches this validator was asked to check, off the
/// consensus task, and stores those whose signatures all verify, and the others' (durably: an
/// acknowledgement promises availability, and a checked one vouches for every signature), then
/// passes them on to be acknowledged. Two threads: `batch-check` verifies a round while
/// `batch-store` syncs the round before it (at most one round waits between).
fn spawn_batch_checker(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<ToCheck>,
    tx: mpsc::Sender<Checked>,
) {
    let (to_store, checked) = std::sync::mpsc::sync_channel::<CheckedRound>(1);
    let store = shared.clone();
    std::thread::Builder::new()
        .name("batch-store".into())
        .spawn(move || {
            for CheckedRound { good, bad } in checked {
                // The acknowledgement promises availability, also after a crash.
                // Batches stored before (unchecked, now checked) are not written again.
                let refs: Vec<_> = good
                    .iter()
                    .filter(|c| !c.stored)
                    .map(|c| (c.info, &c.batch))
                    .collect();
                let stored = refs.is_empty() || {
                    match store.store.put_pending_batches(&refs) {
                        Ok(()) => true,
                        Err(e) => {
                            error!(error = %e, "storing batches failed; not acknowledged");
                            false
                        }
                    }
                };
                let results = good
                    .into_iter()
                    .map(|c| Checked { ok: stored, ..c })
                    .chain(bad);
                for result in results {
                    if tx.blocking_send(result).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("spawning batch store");
    std::thread::Builder::new()
        .name("batch-check".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                // Whatever else is waiting joins this round: one sync for all of them.
                let mut round = vec![first];
                while round.len() < CHECKS_PER_SYNC_MAX {
                    match rx.try_recv() {
                        Ok(b) => round.push(b),
                        Err(_) => break,
                    }
                }
                let mut good = Vec::with_capacity(round.len());
                let mut bad = Vec::new();
                for ToCheck {
                    batch,
                    info,
                    check,
                    stored,
                } in round
                {
                    let invalid = if check {
                        let ok = shared.check_signatures(&batch.txs);
                        ok.iter().position(|ok| !ok)
                    } else {
                        None
                    };
                    match invalid {
                        Some(index) => {
                            warn!(
                                author = batch.author,
                                seq = batch.seq,
                                index,
                                "batch with an invalid signature refused"
                            );
                            bad.push(Checked {
                                batch,
                                info,
                                ok: false,
                                checked: true,
                                stored,
                            });
                        }
                        None => good.push(Checked {
                            batch,
                            info,
                            ok: true,
                            checked: check,
                            stored,
                        }),
                    }
                }
                if to_store.send(CheckedRound { good, bad }).is_err() {
                    return;
                }
            }
        })
        .expect("spawning batch checker");
}

/// A peer's batch for the checker thread, and whether its author asked this validator to
/// verify its signatures (else it is only stored).
struct ToCheck {
    batch: Batch,
    info: BatchInfo,
    check: bool,
    /// Already stored durably (unchecked before): not written again.
    stored: bool,
}

/// A peer's batch back from the checker: `ok` when it is to be acknowledged (every signature
/// verified, or none was to be, and it is stored), `checked` when its signatures were verified.
struct Checked {
    batch: Batch,
    info: BatchInfo,
    ok: bool,
    checked: bool,
    /// Stored durably before it was sent to the checker.
    stored: bool,
}

/// One round of peers' batches after the signature check: those to store and acknowledge, and
/// those refused.
struct CheckedRound {
    good: Vec<Checked>,
    bad: Vec<Checked>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One author flooding batches gets at most its share of the checker; the others still
    /// get theirs, and a finished check frees a place.
    #[test]
    fn a_flooding_author_cannot_crowd_out_the_others() {
        let mut c = Checking::new(4);
        let digest = |author: u8, i: u8| {
            Digest([
                author, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0,
            ])
        };
        let mut flooded = 0;
        for i in 0..200u8 {
            if c.has_room(1) {
                c.insert(digest(1, i), 1);
                flooded += 1;
            }
        }
        assert_eq!(
            flooded,
            BATCH_CHECK_QUEUE / 4,
            "a quarter of the input queue"
        );
        for author in [0u16, 2, 3] {
            assert!(c.has_room(author), "author {author} still has room");
            c.insert(digest(author as u8, 0), author);
        }
        assert!(!c.has_room(9), "a stranger has no share");
        assert!(c.contains(&digest(1, 0)));
        c.remove(&digest(1, 0));
        assert!(!c.contains(&digest(1, 0)));
        assert!(c.has_room(1), "a finished check frees a place");
        // Removing twice or something never inserted changes nothing.
        c.remove(&digest(1, 0));
        c.remove(&digest(7, 7));
        assert_eq!(c.per_author, vec![1, BATCH_CHECK_QUEUE / 4 - 1, 1, 1]);
    }
}
