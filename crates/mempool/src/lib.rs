//! The mempool: admission of client transactions and their hand-off to the leader's proposals.
//!
//! Design note: transactions are kept per sender in nonce order, and a sender's transactions are
//! handed out only in consecutive nonces starting at the next nonce the chain expects, so a block
//! never carries a nonce gap that execution would reject. Handed-out transactions stay "in flight"
//! under the round of the block that carries them; when the chain commits past that round without
//! them (the block was abandoned after a timeout), they go back into the queue. Every structure
//! has a bound: a full pool refuses new transactions (back-pressure to the client).

use netchain_consensus::PayloadSource;
use netchain_types::{codec, PublicKey, SignedTransaction, TxId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Mempool bounds.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Most transactions held (queued and in flight).
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

/// The pool of a validator.
#[derive(Default)]
pub struct Mempool {
    cfg: MempoolConfig,
    queued: HashMap<PublicKey, BTreeMap<u64, SignedTransaction>>,
    /// Next nonce to hand out per sender.
    next_nonce: HashMap<PublicKey, u64>,
    /// Senders that may have a transaction ready at their next nonce.
    ready: VecDeque<PublicKey>,
    ready_set: HashSet<PublicKey>,
    ids: HashSet<TxId>,
    in_flight: BTreeMap<u64, Vec<SignedTransaction>>,
    count: usize,
    bytes: usize,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Transactions held (queued and in flight).
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

    /// Whether a transaction is held (queued or in a proposed, uncommitted block).
    pub fn contains(&self, id: &TxId) -> bool {
        self.ids.contains(id)
    }

    /// Admits a transaction whose signature and chain id the caller has checked, given the
    /// sender's committed account nonce.
    pub fn insert(
        &mut self,
        tx: SignedTransaction,
        account_nonce: u64,
    ) -> Result<(), MempoolError> {
        let id = tx.id();
        let (sender, nonce) = (tx.tx.sender, tx.tx.nonce);
        if self.ids.contains(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        if nonce < account_nonce {
            return Err(MempoolError::NonceTooLow {
                expected: account_nonce,
                got: nonce,
            });
        }
        if nonce >= account_nonce + self.cfg.nonce_ahead_max {
            return Err(MempoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
            });
        }
        let size = codec::encode(&tx).len();
        if self.count >= self.cfg.txs_max || self.bytes + size > self.cfg.bytes_max {
            return Err(MempoolError::Full("pool"));
        }
        let queue = self.queued.entry(sender).or_default();
        if queue.contains_key(&nonce) {
            return Err(MempoolError::NonceInUse(nonce));
        }
        if queue.len() >= self.cfg.per_sender_max {
            return Err(MempoolError::Full("sender"));
        }
        queue.insert(nonce, tx);
        self.ids.insert(id);
        self.count += 1;
        self.bytes += size;
        let next = self.next_nonce.entry(sender).or_insert(account_nonce);
        *next = (*next).max(account_nonce);
        if nonce == *next {
            self.mark_ready(sender);
        }
        Ok(())
    }

    fn mark_ready(&mut self, sender: PublicKey) {
        if self.ready_set.insert(sender) {
            self.ready.push_back(sender);
        }
    }

    /// Takes transactions for the block of `round`: senders in turn, each sender's transactions
    /// in consecutive nonces.
    pub fn take(&mut self, round: u64, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_txs {
            let Some(sender) = self.ready.pop_front() else {
                break;
            };
            self.ready_set.remove(&sender);
            let next = self.next_nonce.get(&sender).copied().unwrap_or(0);
            let Some(queue) = self.queued.get_mut(&sender) else {
                continue;
            };
            let Some(tx) = queue.remove(&next) else {
                continue;
            };
            let size = codec::encode(&tx).len();
            if bytes + size > max_bytes {
                queue.insert(next, tx);
                self.mark_ready(sender);
                break;
            }
            bytes += size;
            out.push(tx);
            if queue.is_empty() {
                self.queued.remove(&sender);
            }
            self.next_nonce.insert(sender, next + 1);
            if self
                .queued
                .get(&sender)
                .is_some_and(|q| q.contains_key(&(next + 1)))
            {
                self.mark_ready(sender);
            }
        }
        if !out.is_empty() {
            self.in_flight
                .entry(round)
                .or_default()
                .extend(out.iter().cloned());
        }
        out
    }

    /// Tells the pool about committed blocks: `committed` ids leave it, senders' account nonces
    /// move to `nonces`, and transactions in flight in rounds up to `committed_round` that were
    /// not committed return to the queue (their block was abandoned).
    pub fn on_commit(
        &mut self,
        committed_round: u64,
        committed: &[TxId],
        nonces: &[(PublicKey, u64)],
    ) {
        let later = self.in_flight.split_off(&(committed_round + 1));
        let abandoned = std::mem::replace(&mut self.in_flight, later);
        let committed: HashSet<&TxId> = committed.iter().collect();
        for tx in abandoned.into_values().flatten() {
            let id = tx.id();
            if committed.contains(&id) {
                self.forget(&tx);
                continue;
            }
            let sender = tx.tx.sender;
            let next = self.next_nonce.entry(sender).or_insert(tx.tx.nonce);
            *next = (*next).min(tx.tx.nonce);
            self.queued
                .entry(sender)
                .or_default()
                .insert(tx.tx.nonce, tx);
            self.mark_ready(sender);
        }
        for (sender, nonce) in nonces {
            self.advance_sender(*sender, *nonce);
        }
    }

    /// Drops a sender's queued transactions below the account nonce and moves its next nonce up.
    fn advance_sender(&mut self, sender: PublicKey, account_nonce: u64) {
        if let Some(queue) = self.queued.get_mut(&sender) {
            let keep = queue.split_off(&account_nonce);
            let stale = std::mem::replace(queue, keep);
            if queue.is_empty() {
                self.queued.remove(&sender);
            }
            for tx in stale.values() {
                self.forget(tx);
            }
        }
        let next = self.next_nonce.entry(sender).or_insert(account_nonce);
        *next = (*next).max(account_nonce);
        let next = *next;
        if self
            .queued
            .get(&sender)
            .is_some_and(|q| q.contains_key(&next))
        {
            self.mark_ready(sender);
        }
        // Nothing queued and nothing in flight beyond the committed nonce: forget the sender.
        if !self.queued.contains_key(&sender) && next <= account_nonce {
            self.next_nonce.remove(&sender);
        }
    }

    fn forget(&mut self, tx: &SignedTransaction) {
        if self.ids.remove(&tx.id()) {
            self.count -= 1;
            self.bytes = self.bytes.saturating_sub(codec::encode(tx).len());
        }
    }
}

impl Mempool {
    /// Holds back the transactions another leader proposed in `round`: they leave the queue for
    /// the in-flight set of that round, exactly as if this pool had proposed them.
    pub fn mark_proposed(&mut self, round: u64, txs: &[SignedTransaction]) {
        let mut held = Vec::new();
        for tx in txs {
            let (sender, nonce) = (tx.tx.sender, tx.tx.nonce);
            let Some(queue) = self.queued.get_mut(&sender) else {
                continue;
            };
            if queue.get(&nonce) != Some(tx) {
                continue;
            }
            let ours = queue.remove(&nonce).expect("checked above");
            if queue.is_empty() {
                self.queued.remove(&sender);
            }
            let next = self.next_nonce.entry(sender).or_insert(nonce);
            if *next == nonce {
                *next = nonce + 1;
                if self
                    .queued
                    .get(&sender)
                    .is_some_and(|q| q.contains_key(&(nonce + 1)))
                {
                    self.mark_ready(sender);
                }
            }
            held.push(ours);
        }
        if !held.is_empty() {
            self.in_flight.entry(round).or_default().extend(held);
        }
    }
}

impl PayloadSource for Mempool {
    fn on_block(&mut self, round: u64, txs: &[SignedTransaction]) {
        self.mark_proposed(round, txs);
    }

    fn has_pending(&self) -> bool {
        !self.ready.is_empty()
    }

    fn pull(&mut self, round: u64, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        self.take(round, max_txs, max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netchain_types::{Payload, Signature, Transaction};

    fn tx(sender: u8, nonce: u64) -> SignedTransaction {
        SignedTransaction {
            tx: Transaction {
                chain_id: "t".into(),
                sender: PublicKey([sender; 32]),
                nonce,
                payload: Payload::Transfer {
                    to: PublicKey([0; 32]),
                    amount: 1,
                },
            },
            signature: Signature([0; 64]),
        }
    }

    fn nonces(txs: &[SignedTransaction]) -> Vec<(u8, u64)> {
        txs.iter().map(|t| (t.tx.sender.0[0], t.tx.nonce)).collect()
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
        assert!(!m.has_pending());
        assert!(m.take(1, 10, 1 << 20).is_empty());
        m.insert(tx(1, 0), 0).unwrap();
        m.insert(tx(2, 0), 0).unwrap();
        let got = nonces(&m.take(1, 10, 1 << 20));
        assert_eq!(got, vec![(1, 0), (2, 0)]);
        m.insert(tx(1, 1), 0).unwrap();
        let got = nonces(&m.take(2, 10, 1 << 20));
        assert_eq!(got, vec![(1, 1), (1, 2)]);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn commit_removes_and_abandoned_blocks_requeue() {
        let mut m = Mempool::new(MempoolConfig::default());
        for n in 0..3 {
            m.insert(tx(1, n), 0).unwrap();
        }
        let r5 = m.take(5, 2, 1 << 20);
        let r6 = m.take(6, 10, 1 << 20);
        assert_eq!(nonces(&r5), vec![(1, 0), (1, 1)]);
        assert_eq!(nonces(&r6), vec![(1, 2)]);
        // Round 5's block was abandoned; round 6's block is committed later.
        m.on_commit(5, &[], &[(PublicKey([1; 32]), 0)]);
        assert_eq!(m.len(), 3);
        let again = m.take(7, 10, 1 << 20);
        assert_eq!(nonces(&again), vec![(1, 0), (1, 1)]);
        let ids: Vec<_> = again.iter().chain(&r6).map(|t| t.id()).collect();
        m.on_commit(7, &ids, &[(PublicKey([1; 32]), 3)]);
        assert!(m.is_empty());
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn committed_elsewhere_is_dropped() {
        let mut m = Mempool::new(MempoolConfig::default());
        m.insert(tx(1, 0), 0).unwrap();
        m.insert(tx(1, 1), 0).unwrap();
        // Another validator's block committed nonce 0 of sender 1.
        m.on_commit(3, &[tx(1, 0).id()], &[(PublicKey([1; 32]), 1)]);
        assert_eq!(m.len(), 1);
        assert_eq!(nonces(&m.take(4, 10, 1 << 20)), vec![(1, 1)]);
    }

    #[test]
    fn others_proposals_are_held_back_and_requeued_if_abandoned() {
        let mut m = Mempool::new(MempoolConfig::default());
        for n in 0..3 {
            m.insert(tx(1, n), 0).unwrap();
        }
        m.insert(tx(2, 0), 0).unwrap();
        // Another leader proposed sender 1's nonces 0 and 1 in round 4.
        m.mark_proposed(4, &[tx(1, 0), tx(1, 1), tx(9, 0)]);
        assert_eq!(nonces(&m.take(5, 10, 1 << 20)), vec![(1, 2), (2, 0)]);
        assert_eq!(m.len(), 4);
        // A block of round 4 without them committed, so round 4's block was abandoned: its
        // transactions come back, in nonce order (round 5's are still in flight).
        m.on_commit(4, &[], &[(PublicKey([1; 32]), 0)]);
        assert_eq!(nonces(&m.take(6, 10, 1 << 20)), vec![(1, 0), (1, 1)]);
    }

    #[test]
    fn respects_byte_bound() {
        let mut m = Mempool::new(MempoolConfig::default());
        for s in 0..10 {
            m.insert(tx(s, 0), 0).unwrap();
        }
        let one = codec::encode(&tx(0, 0)).len();
        assert_eq!(m.take(1, 100, one * 3).len(), 3);
        assert_eq!(m.take(2, 100, 1 << 20).len(), 7);
    }
}
