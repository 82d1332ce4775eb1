//! The mempool: admission of client transactions and their hand-off to the leader's proposals,
//! or (batch mode, [`QuorumStore`]) to batches disseminated with proofs of availability.
//!
//! Design note: transactions are kept per sender in nonce order until they are committed. A
//! leader asks for a payload together with the uncommitted blocks its new block extends; for each
//! sender the pool hands out the consecutive nonces that follow both the committed nonce and the
//! nonces already in those blocks, so a block never carries a nonce gap or a transaction its
//! ancestors already carry, and a transaction in an abandoned block (one the chain did not
//! extend) is simply offered again. Commits are reported as soon as consensus decides them, so the
//! pool never waits for execution. Every structure has a bound: a full pool refuses new
//! transactions (back-pressure to the client).

mod quorum_store;

pub use quorum_store::{
    BatchError, Expired, QuorumStore, QuorumStoreConfig, QuorumStoreStats, Resend,
};

use netchain_consensus::PayloadSource;
use netchain_types::{codec, Block, PublicKey, SignedTransaction, TxId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// Mempool bounds.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub txs_max: usize,
    /// Most encoded bytes held.
    pub bytes_max: usize,
    /// Most transactions held per sender.
    pub per_sender_max: usize,
    /// How far ahead of the account nonce a transaction may be.
    pub nonce_ahead_max: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            txs_max: 200_000,
            bytes_max: 256 << 20,
            per_sender_max: 1_000,
            nonce_ahead_max: 1_000,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Already held.
    #[error("transaction {0} already pending")]
    Duplicate(TxId),
    /// The nonce is already used by the chain.
    #[error("nonce {got} already used; account nonce is {expected}")]
    NonceTooLow {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// The nonce is too far ahead.
    #[error("nonce {got} too far ahead of account nonce {expected}")]
    NonceTooHigh {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// Another pending transaction of the sender has this nonce.
    #[error("another pending transaction uses nonce {0}")]
    NonceInUse(u64),
    /// The pool (or the sender's share) is full.
    #[error("mempool full: {0}")]
    Full(&'static str),
}

impl MempoolError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Duplicate(_) => "duplicate",
            Self::NonceTooLow { .. } => "nonce_too_low",
            Self::NonceTooHigh { .. } => "nonce_too_high",
            Self::NonceInUse(_) => "nonce_in_use",
            Self::Full(_) => "mempool_full",
        }
    }
}

struct SenderQueue {
    /// Nonce the chain expects next (as far as this pool knows).
    committed_nonce: u64,
    /// Batch mode: the first nonce not yet put into a batch (below `committed_nonce` it means
    /// nothing).
    batched: u64,
    txs: BTreeMap<u64, SignedTransaction>,
}

/// The pool of a validator.
#[derive(Default)]
pub struct Mempool {
    cfg: MempoolConfig,
    senders: BTreeMap<PublicKey, SenderQueue>,
    ids: HashSet<TxId>,
    count: usize,
    bytes: usize,
    /// Round-robin position among senders.
    cursor: Option<PublicKey>,
    /// Round-robin position among senders for batches.
    batch_cursor: Option<PublicKey>,
    /// Senders that may have a transaction ready for a batch (a superset: every change that
    /// can make one ready adds its sender; [`Mempool::take_batch`] drops those it finds with
    /// none), so cutting a batch looks at these instead of every sender in the pool.
    batch_candidates: BTreeSet<PublicKey>,
    /// Nonces committed by consensus but not executed yet, with the height that committed them:
    /// a transaction gossiped late must not be admitted again on the strength of the (older)
    /// executed state. Bounded by the commit-to-execution gap.
    committed_recent: HashMap<PublicKey, (u64, u64)>,
    /// Whether some sender's next nonce is in the pool (cached; cleared by every change).
    ready: std::cell::Cell<Option<bool>>,
    /// Ordering-only chains: transactions in arrival order with their encoded sizes, until a
    /// batch takes them (counted in `count` and `bytes` until then).
    unordered: VecDeque<(SignedTransaction, usize)>,
    /// Height of the newest block whose nonces [`Mempool::on_executed`] reported.
    executed_height: u64,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// An empty pool of a node whose executed chain ends at `height`.
    pub fn at_height(cfg: MempoolConfig, height: u64) -> Self {
        Self {
            executed_height: height,
            ..Self::new(cfg)
        }
    }

    /// Height of the newest executed block this pool was told of. The account nonce passed to
    /// [`Mempool::insert`] must be read at exactly this height, with no other call in between
    /// (hold the lock, or check that this did not move): a sender's queue created from an older
    /// read would expect a nonce that a later block already used, and no later report about
    /// that block would correct it, so the sender's transactions here would wait forever.
    pub fn executed_height(&self) -> u64 {
        self.executed_height
    }

    /// Transactions held (including those in proposed, uncommitted blocks).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a transaction is held (not committed yet).
    pub fn contains(&self, id: &TxId) -> bool {
        self.ids.contains(id)
    }

    /// Admits a transaction whose signature and chain id the caller has checked, given the
    /// sender's account nonce in the executed state at [`Mempool::executed_height`].
    pub fn insert(
        &mut self,
        tx: SignedTransaction,
        account_nonce: u64,
    ) -> Result<(), MempoolError> {
        self.ready.set(None);
        let id = tx.id();
        let (sender, nonce) = (tx.tx.sender, tx.tx.nonce);
        if self.ids.contains(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        let recent = self.committed_recent.get(&sender).map_or(0, |r| r.0);
        let floor = self
            .senders
            .get(&sender)
            .map_or(account_nonce, |q| q.committed_nonce.max(account_nonce))
            .max(recent);
        if nonce < floor {
            return Err(MempoolError::NonceTooLow {
                expected: floor,
                got: nonce,
            });
        }
        if nonce >= floor.saturating_add(self.cfg.nonce_ahead_max) {
            return Err(MempoolError::NonceTooHigh {
                expected: floor,
                got: nonce,
            });
        }
        let size = codec::encoded_len(&tx);
        if self.count >= self.cfg.txs_max || self.bytes + size > self.cfg.bytes_max {
            return Err(MempoolError::Full("pool"));
        }
        let queue = self.senders.entry(sender).or_insert(SenderQueue {
            committed_nonce: floor,
            batched: 0,
            txs: BTreeMap::new(),
        });
        queue.committed_nonce = floor;
        if queue.txs.contains_key(&nonce) {
            return Err(MempoolError::NonceInUse(nonce));
        }
        if queue.txs.len() >= self.cfg.per_sender_max {
            return Err(MempoolError::Full("sender"));
        }
        queue.txs.insert(nonce, tx);
        self.batch_candidates.insert(sender);
        self.ids.insert(id);
        self.count += 1;
        self.bytes += size;
        Ok(())
    }

    /// [`Mempool::insert`] with the sender's account nonce read at `read_height` without the
    /// pool's lock (account reads are slow). When a block was executed since, the read may be
    /// stale and `reread(height)` reads it again at [`Mempool::executed_height`] (under the
    /// lock, where no newer block can be reported).
    pub fn insert_as_of<E: From<MempoolError>>(
        &mut self,
        tx: SignedTransaction,
        read_height: u64,
        account_nonce: u64,
        reread: impl FnOnce(u64) -> Result<u64, E>,
    ) -> Result<(), E> {
        let nonce = if read_height == self.executed_height {
            account_nonce
        } else {
            reread(self.executed_height)?
        };
        Ok(self.insert(tx, nonce)?)
    }

    /// Ordering-only chains: admits a transaction in arrival order with no nonce or duplicate
    /// check (nothing executes it; a copy sent twice is ordered twice). Only the pool's bounds
    /// hold. [`Mempool::take_batch`] hands these out first, and they leave the pool then.
    pub fn insert_unordered(&mut self, tx: SignedTransaction) -> Result<(), MempoolError> {
        let size = codec::encoded_len(&tx);
        if self.count >= self.cfg.txs_max || self.bytes + size > self.cfg.bytes_max {
            return Err(MempoolError::Full("pool"));
        }
        self.count += 1;
        self.bytes += size;
        self.unordered.push_back((tx, size));
        Ok(())
    }

    /// Ordering-only chains: transactions of an own batch that expired unordered go back to
    /// the front of the arrival-order lane (in their order), to be batched again. They were
    /// admitted, so they are taken back even above the pool's bounds (by at most a batch).
    pub fn requeue_unordered(&mut self, txs: &[SignedTransaction]) {
        for tx in txs.iter().rev() {
            let size = codec::encoded_len(tx);
            self.count += 1;
            self.bytes += size;
            self.unordered.push_front((tx.clone(), size));
        }
    }

    /// Takes transactions for a block extending `ancestors` (the uncommitted blocks between the
    /// committed tip and the new block): senders in turn, each sender's consecutive nonces after
    /// those its ancestors carry.
    pub fn take(
        &mut self,
        max_txs: usize,
        max_bytes: usize,
        ancestors: &[&Block],
    ) -> Vec<SignedTransaction> {
        let mut in_chain: HashMap<PublicKey, u64> = HashMap::new();
        for tx in ancestors.iter().flat_map(|b| &b.payload) {
            let next = in_chain.entry(tx.tx.sender).or_insert(0);
            *next = (*next).max(tx.tx.nonce.saturating_add(1));
        }
        let start = self.cursor;
        let order = in_turn_after(self.senders.keys().copied(), start);
        let mut out = Vec::new();
        let mut bytes = 0;
        for sender in order {
            if out.len() >= max_txs {
                break;
            }
            let queue = &self.senders[&sender];
            let first = queue
                .committed_nonce
                .max(in_chain.get(&sender).copied().unwrap_or(0));
            if take_consecutive(&queue.txs, first, max_txs, max_bytes, &mut out, &mut bytes).1 {
                break;
            }
            self.cursor = Some(sender);
        }
        out
    }

    /// Batch mode: takes transactions not yet in a batch (senders in turn, each sender's
    /// consecutive nonces), and marks them batched. They stay in the pool, counted against its
    /// bounds, until execution moves their sender's nonce past them. Ordering-only chains'
    /// transactions (the arrival-order lane) come first and leave the pool here; the quorum
    /// store's quotas bound them from then on.
    pub fn take_batch(&mut self, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some((_, size)) = self.unordered.front() {
            if out.len() >= max_txs || bytes + size > max_bytes {
                return out;
            }
            let (tx, size) = self.unordered.pop_front().expect("front exists");
            bytes += size;
            self.count -= 1;
            self.bytes -= size;
            out.push(tx);
        }
        let order = in_turn_after(self.batch_candidates.iter().copied(), self.batch_cursor);
        for sender in order {
            if out.len() >= max_txs {
                break;
            }
            let Some(queue) = self.senders.get_mut(&sender) else {
                self.batch_candidates.remove(&sender);
                continue;
            };
            let first = queue.committed_nonce.max(queue.batched);
            let (taken, full) =
                take_consecutive(&queue.txs, first, max_txs, max_bytes, &mut out, &mut bytes);
            let next = first + taken as u64;
            if taken > 0 {
                queue.batched = next;
            }
            if !queue.txs.contains_key(&next) {
                self.batch_candidates.remove(&sender);
            }
            if full {
                break;
            }
            self.batch_cursor = Some(sender);
        }
        out
    }

    /// Batch mode: these transactions' batch expired, or was executed with some of them refused
    /// without using their nonce: those still pooled (and their senders' later nonces) may be
    /// batched again. Returns how many of them were still pooled.
    pub fn unbatch(&mut self, txs: &[SignedTransaction]) -> usize {
        let mut again = 0;
        for tx in txs {
            let Some(queue) = self.senders.get_mut(&tx.tx.sender) else {
                continue;
            };
            if queue.txs.get(&tx.tx.nonce) == Some(tx) {
                queue.batched = queue.batched.min(tx.tx.nonce);
                again += 1;
                self.batch_candidates.insert(tx.tx.sender);
            }
        }
        again
    }

    /// Tells the pool that consensus committed `blocks` (before execution): their transactions
    /// leave it, and each sender's committed nonce moves past them.
    pub fn on_commit(&mut self, blocks: &[Block]) {
        self.ready.set(None);
        for (block, tx) in blocks
            .iter()
            .flat_map(|b| b.payload.iter().map(move |t| (b, t)))
        {
            let sender = tx.tx.sender;
            let recent = self.committed_recent.entry(sender).or_insert((0, 0));
            *recent = (recent.0.max(tx.tx.nonce.saturating_add(1)), block.height);
            let Some(queue) = self.senders.get_mut(&sender) else {
                continue;
            };
            queue.committed_nonce = queue.committed_nonce.max(tx.tx.nonce.saturating_add(1));
            self.batch_candidates.insert(sender);
            if queue.txs.get(&tx.tx.nonce) == Some(tx) {
                queue.txs.remove(&tx.tx.nonce);
                if self.ids.remove(&tx.id()) {
                    self.count -= 1;
                    self.bytes = self.bytes.saturating_sub(codec::encoded_len(tx));
                }
            }
            self.drop_stale(sender);
        }
    }

    /// Tells the pool the senders' nonces after executing the block at `height`. Usually what
    /// [`Mempool::on_commit`]
    /// assumed; lower when a committed transaction was rejected (its nonce is still free, so the
    /// client may send another transaction with it).
    pub fn on_executed(&mut self, height: u64, nonces: &[(PublicKey, u64)]) {
        self.ready.set(None);
        self.executed_height = self.executed_height.max(height);
        // Executed state now covers every commit up to `height`.
        self.committed_recent.retain(|_, (_, h)| *h > height);
        for (sender, nonce) in nonces {
            if let Some(queue) = self.senders.get_mut(sender) {
                queue.committed_nonce = *nonce;
                self.batch_candidates.insert(*sender);
                self.drop_stale(*sender);
            }
        }
    }

    /// Drops a sender's queued transactions below its committed nonce, and the sender itself
    /// once nothing is queued.
    fn drop_stale(&mut self, sender: PublicKey) {
        self.ready.set(None);
        let Some(queue) = self.senders.get_mut(&sender) else {
            return;
        };
        let keep = queue.txs.split_off(&queue.committed_nonce);
        let stale = std::mem::replace(&mut queue.txs, keep);
        if queue.txs.is_empty() {
            self.senders.remove(&sender);
            self.batch_candidates.remove(&sender);
        }
        for tx in stale.values() {
            if self.ids.remove(&tx.id()) {
                self.count -= 1;
                self.bytes = self.bytes.saturating_sub(codec::encoded_len(tx));
            }
        }
    }
}

/// `keys` (in ascending order) starting after `cursor` and wrapping round (round-robin).
fn in_turn_after(
    keys: impl Iterator<Item = PublicKey>,
    cursor: Option<PublicKey>,
) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = keys.collect();
    if let Some(c) = cursor {
        let after = keys.partition_point(|k| *k <= c);
        keys.rotate_left(after);
    }
    keys
}

/// Appends a sender's consecutive nonces from `first` on (stopping at the first gap) to `out`,
/// within `max_txs` in `out` and `max_bytes` in `bytes`. Returns how many it took and whether
/// the byte bound stopped it (then no other sender fits either).
fn take_consecutive(
    txs: &BTreeMap<u64, SignedTransaction>,
    first: u64,
    max_txs: usize,
    max_bytes: usize,
    out: &mut Vec<SignedTransaction>,
    bytes: &mut usize,
) -> (usize, bool) {
    let mut taken = 0;
    for ((nonce, tx), expected) in txs.range(first..).zip(first..) {
        if *nonce != expected || out.len() >= max_txs {
            break;
        }
        let size = codec::encoded_len(tx);
        if *bytes + size > max_bytes {
            return (taken, true);
        }
        *bytes += size;
        taken += 1;
        out.push(tx.clone());
    }
    (taken, false)
}

impl PayloadSource for Mempool {
    /// True when some sender's next transaction is here. Transactions waiting behind a nonce
    /// gap cannot be proposed, so they do not make the leader propose (empty) blocks at once.
    fn has_pending(&self) -> bool {
        if let Some(ready) = self.ready.get() {
            return ready;
        }
        let ready = self
            .senders
            .values()
            .any(|q| q.txs.keys().next() == Some(&q.committed_nonce));
        self.ready.set(Some(ready));
        ready
    }

    fn on_commit(&mut self, blocks: &[Block]) {
        Mempool::on_commit(self, blocks);
    }

    fn pull(
        &mut self,
        _round: u64,
        max_txs: usize,
        max_bytes: usize,
        ancestors: &[&Block],
    ) -> Vec<SignedTransaction> {
        self.take(max_txs, max_bytes, ancestors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netchain_types::{Digest, Payload, QuorumCert, Signature, Transaction};

    fn tx(sender: u8, nonce: u64) -> SignedTransaction {
        SignedTransaction {
            tx: Transaction {
                chain_id: "t".into(),
                sender: PublicKey([sender; 32]),
                nonce,
                payload: Payload::Transfer {
                    to: PublicKey([0; 32]),
                    amount: 1,
                    memo: Vec::new(),
                },
            },
            signature: Signature([0; 64]),
        }
    }

    fn block(round: u64, payload: Vec<SignedTransaction>) -> Block {
        Block {
            round,
            height: round,
            parent_id: Digest::default(),
            qc: QuorumCert::genesis(Digest::default()),
            tc: None,
            author: 0,
            timestamp_ms: 0,
            payload,
            batches: Vec::new(),
        }
    }

    fn nonces(txs: &[SignedTransaction]) -> Vec<(u8, u64)> {
        txs.iter().map(|t| (t.tx.sender.0[0], t.tx.nonce)).collect()
    }

    const BIG: usize = 1 << 20;

    #[test]
    fn transactions_behind_a_gap_are_not_pending() {
        let mut m = Mempool::new(MempoolConfig::default());
        assert!(!m.has_pending());
        m.insert(tx(1, 2), 0).unwrap();
        assert!(
            !m.has_pending(),
            "nonce 2 waits for 0 and 1: nothing to propose"
        );
        assert!(m.take(10, BIG, &[]).is_empty());
        m.insert(tx(1, 0), 0).unwrap();
        assert!(m.has_pending());
        m.on_commit(&[block(1, vec![tx(1, 0)])]);
        assert!(!m.has_pending(), "nonce 1 is still missing");
        m.insert(tx(1, 1), 0).unwrap();
        assert!(m.has_pending());
        assert_eq!(nonces(&m.take(10, BIG, &[])), vec![(1, 1), (1, 2)]);
    }

    #[test]
    fn batches_take_each_transaction_once_and_again_only_when_it_is_still_unused() {
        let mut m = Mempool::new(MempoolConfig::default());
        for n in 0..3 {
            m.insert(tx(1, n), 0).unwrap();
        }
        m.insert(tx(2, 0), 0).unwrap();
        m.insert(tx(3, 1), 0).unwrap(); // behind a gap: never batched
        let first = m.take_batch(3, BIG);
        assert_eq!(first.len(), 3);
        let second = m.take_batch(10, BIG);
        let mut all = nonces(&first);
        all.extend(nonces(&second));
        all.sort();
        assert_eq!(all, vec![(1, 0), (1, 1), (1, 2), (2, 0)]);
        assert!(m.take_batch(10, BIG).is_empty(), "everything is batched");
        assert_eq!(
            m.len(),
            5,
            "batched transactions stay pooled until executed"
        );

        // Executed: sender 1's nonce 0 applied, nonces 1 and 2 refused without using them (as
        // when another batch ordered first carried a later nonce); sender 2 applied.
        m.on_executed(1, &[(PublicKey([1; 32]), 1), (PublicKey([2; 32]), 1)]);
        let executed: Vec<_> = first.iter().chain(&second).cloned().collect();
        assert_eq!(
            m.unbatch(&executed),
            2,
            "only the unused ones are still pooled"
        );
        assert_eq!(nonces(&m.take_batch(10, BIG)), vec![(1, 1), (1, 2)]);
        // An expired batch of already executed transactions gives nothing back.
        assert_eq!(m.unbatch(&[tx(2, 0)]), 0);
        assert!(m.take_batch(10, BIG).is_empty());
    }

    /// Cutting a batch looks only at candidate senders: after any sequence of admissions,
    /// commits, executions (some refusing nonces), expiries and batches, every sender with a
    /// transaction ready for a batch is a candidate, and a batch with room takes them all.
    #[test]
    fn batch_candidates_cover_every_ready_sender() {
        fn ready(m: &Mempool) -> Vec<PublicKey> {
            m.senders
                .iter()
                .filter(|(_, q)| q.txs.contains_key(&q.committed_nonce.max(q.batched)))
                .map(|(s, _)| *s)
                .collect()
        }
        for seed in 1..=40u64 {
            let mut state = seed;
            let mut next = move |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n
            };
            let mut m = Mempool::new(MempoolConfig::default());
            let mut chain = [0u64; 6]; // each sender's next nonce on the chain
            let mut batches: Vec<Vec<SignedTransaction>> = Vec::new();
            let mut height = 0;
            for _ in 0..300 {
                match next(7) {
                    0 | 1 => {
                        let s = next(6) as usize;
                        let _ = m.insert(tx(s as u8, chain[s] + next(4)), chain[s]);
                    }
                    2 => {
                        let b = m.take_batch(1 + next(4) as usize, BIG);
                        if !b.is_empty() {
                            batches.push(b);
                        }
                    }
                    3 if !batches.is_empty() => {
                        // A batch executes: its transactions in nonce order apply, the rest
                        // are refused without using their nonce (and are batched again).
                        let b = batches.remove(next(batches.len() as u64) as usize);
                        height += 1;
                        let mut touched = BTreeMap::new();
                        for t in &b {
                            let s = t.tx.sender.0[0] as usize;
                            if t.tx.nonce == chain[s] && next(5) != 0 {
                                chain[s] += 1;
                            }
                            touched.insert(t.tx.sender, chain[s]);
                        }
                        let touched: Vec<_> = touched.into_iter().collect();
                        m.on_executed(height, &touched);
                        m.unbatch(&b);
                    }
                    4 if !batches.is_empty() => {
                        let b = batches.remove(next(batches.len() as u64) as usize);
                        m.unbatch(&b); // expired
                    }
                    5 => {
                        // Another validator's batch uses a sender's next nonce.
                        let s = next(6) as usize;
                        chain[s] += 1;
                        height += 1;
                        m.on_executed(height, &[(PublicKey([s as u8; 32]), chain[s])]);
                    }
                    _ => {}
                }
                for s in ready(&m) {
                    assert!(m.batch_candidates.contains(&s), "seed {seed}: {s:?} ready");
                }
            }
            let _ = m.take_batch(BIG, BIG);
            assert!(
                ready(&m).is_empty(),
                "seed {seed}: a batch with room takes all"
            );
        }
    }

    #[test]
    fn keys_in_turn_after_a_cursor() {
        let k = |b: u8| PublicKey([b; 32]);
        let keys = [k(1), k(3), k(5)];
        assert_eq!(in_turn_after(keys.into_iter(), None), keys);
        assert_eq!(
            in_turn_after(keys.into_iter(), Some(k(3))),
            [k(5), k(1), k(3)]
        );
        // A cursor that left the set still continues after its place.
        assert_eq!(
            in_turn_after(keys.into_iter(), Some(k(4))),
            [k(5), k(1), k(3)]
        );
        assert_eq!(in_turn_after(keys.into_iter(), Some(k(9))), keys);
    }

    /// A sender's nonce read before a block using its next nonce was executed (a race between
    /// admission and execution): the pool asks for it again, so the sender's transaction is
    /// batched at once instead of waiting forever for a nonce the chain already used.
    #[test]
    fn stale_nonce_read_is_read_again() {
        let mut m = Mempool::at_height(MempoolConfig::default(), 4);
        assert_eq!(m.executed_height(), 4);
        // Read at height 4: sender 1 has used nonces 0..=1 (expects 2).
        let (read_height, read_nonce) = (m.executed_height(), 2);
        // Meanwhile block 5 executes sender 1's nonce 2 (sent to another validator); the pool
        // holds nothing of sender 1, so no queue learns of it.
        m.on_executed(5, &[(PublicKey([1; 32]), 3)]);
        assert_eq!(m.executed_height(), 5);
        let mut asked = Vec::new();
        m.insert_as_of::<MempoolError>(tx(1, 3), read_height, read_nonce, |h| {
            asked.push(h);
            Ok(3)
        })
        .unwrap();
        assert_eq!(asked, vec![5], "read again at the newest executed height");
        assert_eq!(nonces(&m.take_batch(10, BIG)), vec![(1, 3)]);
        // A read at the current height is used as it is.
        m.insert_as_of::<MempoolError>(tx(2, 0), 5, 0, |_| panic!("not stale"))
            .unwrap();
        assert_eq!(nonces(&m.take_batch(10, BIG)), vec![(2, 0)]);
        // Without the second read the sender's queue would expect nonce 2 and never batch 3.
        let mut stale = Mempool::at_height(MempoolConfig::default(), 5);
        stale.insert(tx(1, 3), 2).unwrap();
        assert!(stale.take_batch(10, BIG).is_empty());
    }

    #[test]
    fn admission_errors() {
        let mut m = Mempool::new(MempoolConfig {
            txs_max: 3,
            nonce_ahead_max: 10,
            ..MempoolConfig::default()
        });
        m.insert(tx(1, 5), 5).unwrap();
        assert_eq!(
            m.insert(tx(1, 5), 5),
            Err(MempoolError::Duplicate(tx(1, 5).id()))
        );
        assert!(matches!(
            m.insert(tx(1, 4), 5),
            Err(MempoolError::NonceTooLow { .. })
        ));
        assert!(matches!(
            m.insert(tx(1, 15), 5),
            Err(MempoolError::NonceTooHigh { .. })
        ));
        let mut other = tx(1, 5);
        other.tx.payload = Payload::Transfer {
            to: PublicKey([9; 32]),
            amount: 2,
            memo: Vec::new(),
        };
        assert_eq!(m.insert(other, 5), Err(MempoolError::NonceInUse(5)));
        m.insert(tx(2, 0), 0).unwrap();
        m.insert(tx(3, 0), 0).unwrap();
        assert_eq!(m.insert(tx(4, 0), 0), Err(MempoolError::Full("pool")));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn hands_out_consecutive_nonces_only() {
        let mut m = Mempool::new(MempoolConfig::default());
        m.insert(tx(1, 2), 0).unwrap(); // gap: nonce 0 and 1 missing
        assert!(m.take(10, BIG, &[]).is_empty());
        m.insert(tx(1, 0), 0).unwrap();
        m.insert(tx(2, 0), 0).unwrap();
        let mut got = nonces(&m.take(10, BIG, &[]));
        got.sort();
        assert_eq!(got, vec![(1, 0), (2, 0)]);
        m.insert(tx(1, 1), 0).unwrap();
        let got = nonces(&m.take(10, BIG, &[]));
        let ones: Vec<_> = got.iter().filter(|(s, _)| *s == 1).collect();
        assert_eq!(
            ones,
            vec![&(1, 0), &(1, 1), &(1, 2)],
            "in nonce order: {got:?}"
        );
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn skips_what_ancestors_carry_and_reoffers_abandoned() {
        let mut m = Mempool::new(MempoolConfig::default());
        for n in 0..4 {
            m.insert(tx(1, n), 0).unwrap();
        }
        m.insert(tx(2, 0), 0).unwrap();
        // Extending a block that carries sender 1's nonces 0 and 1: hand out from nonce 2.
        let b5 = block(5, vec![tx(1, 0), tx(1, 1)]);
        let got = nonces(&m.take(10, BIG, &[&b5]));
        assert!(got.contains(&(1, 2)) && got.contains(&(1, 3)) && got.contains(&(2, 0)));
        assert!(!got.contains(&(1, 0)));
        // Block 5 was abandoned: a block not extending it gets sender 1's nonces from 0 again.
        let got = nonces(&m.take(10, BIG, &[]));
        assert!(got.contains(&(1, 0)) && got.contains(&(1, 1)), "{got:?}");
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn commit_removes_and_execution_corrects_nonces() {
        let mut m = Mempool::new(MempoolConfig::default());
        for n in 0..3 {
            m.insert(tx(1, n), 0).unwrap();
        }
        m.on_commit(&[block(4, vec![tx(1, 0), tx(1, 1)])]);
        assert_eq!(m.len(), 1);
        assert_eq!(nonces(&m.take(10, BIG, &[])), vec![(1, 2)]);
        // Execution says nonce 1 was rejected (funds): the nonce is free again, 2 must wait.
        m.on_executed(4, &[(PublicKey([1; 32]), 1)]);
        assert!(m.take(10, BIG, &[]).is_empty());
        // The client sends nonce 1 again (here the same transaction, now that it has funds).
        m.insert(tx(1, 1), 1).unwrap();
        assert_eq!(nonces(&m.take(10, BIG, &[])), vec![(1, 1), (1, 2)]);
        let last = m.take(10, BIG, &[]);
        m.on_commit(&[block(6, last)]);
        assert!(m.is_empty());
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn late_gossip_of_a_committed_transaction_is_refused_until_executed() {
        let mut m = Mempool::new(MempoolConfig::default());
        // Sender 1 is unknown to this pool; a block committing its nonce 0 arrives first.
        m.on_commit(&[block(7, vec![tx(1, 0)])]);
        // The copy gossiped late, while execution still says nonce 0: refused.
        assert!(matches!(
            m.insert(tx(1, 0), 0),
            Err(MempoolError::NonceTooLow { .. })
        ));
        m.insert(tx(1, 1), 0).unwrap();
        m.on_executed(7, &[(PublicKey([1; 32]), 1)]);
        assert!(m.committed_recent.is_empty());
        assert_eq!(nonces(&m.take(10, BIG, &[])), vec![(1, 1)]);
    }

    #[test]
    fn committed_elsewhere_is_dropped() {
        let mut m = Mempool::new(MempoolConfig::default());
        m.insert(tx(1, 0), 0).unwrap();
        m.insert(tx(1, 1), 0).unwrap();
        let mut rival = tx(1, 0);
        rival.tx.payload = Payload::Transfer {
            to: PublicKey([5; 32]),
            amount: 3,
            memo: Vec::new(),
        };
        // Another validator's block committed a different nonce-0 transaction of sender 1.
        m.on_commit(&[block(3, vec![rival])]);
        assert_eq!(m.len(), 1);
        assert_eq!(nonces(&m.take(10, BIG, &[])), vec![(1, 1)]);
    }

    #[test]
    fn respects_byte_bound() {
        let mut m = Mempool::new(MempoolConfig::default());
        for s in 0..10 {
            m.insert(tx(s, 0), 0).unwrap();
        }
        let one = codec::encode(&tx(0, 0)).len();
        assert_eq!(m.take(100, one * 3, &[]).len(), 3);
        assert_eq!(m.take(100, BIG, &[]).len(), 10);
        assert_eq!(m.take(4, BIG, &[]).len(), 4);
    }

    #[test]
    fn unordered_lane_keeps_arrival_order_and_the_pool_bounds() {
        let mut m = Mempool::new(MempoolConfig {
            txs_max: 5,
            ..MempoolConfig::default()
        });
        // No nonce or duplicate checks: a copy and a nonce far ahead are both taken.
        let txs = [tx(1, 9_999), tx(1, 9_999), tx(2, 0), tx(3, 7), tx(1, 0)];
        for t in &txs {
            m.insert_unordered(t.clone()).unwrap();
        }
        assert_eq!(
            m.insert_unordered(tx(4, 0)),
            Err(MempoolError::Full("pool")),
            "the pool's bound holds"
        );
        let one = codec::encoded_len(&txs[0]);
        assert_eq!(m.bytes(), 5 * one);
        // Batches take them in arrival order within both bounds, and they leave the pool.
        assert_eq!(m.take_batch(2, usize::MAX), txs[..2].to_vec());
        assert_eq!(m.take_batch(10, 2 * one + 1), txs[2..4].to_vec());
        assert_eq!((m.len(), m.bytes()), (1, one));
        assert!(
            !m.has_pending(),
            "unordered transactions are never proposed inline"
        );
        assert_eq!(m.take(10, usize::MAX, &[]), Vec::new());
        assert_eq!(m.take_batch(10, usize::MAX), txs[4..].to_vec());
        assert!(m.is_empty() && m.bytes() == 0);
        m.insert_unordered(tx(4, 0)).unwrap();
        // An expired batch's transactions go back first, in their order.
        m.requeue_unordered(&txs[..2]);
        assert_eq!((m.len(), m.bytes()), (3, 3 * one));
        assert_eq!(
            m.take_batch(10, usize::MAX),
            vec![txs[0].clone(), txs[1].clone(), tx(4, 0)]
        );
    }
}
