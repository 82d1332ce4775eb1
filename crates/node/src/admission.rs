//! Admission of transactions into the mempool (from clients and from peers) and their gossip.

use crate::Shared;
use bytes::Bytes;
use netchain_crypto::verify_each;
use netchain_mempool::MempoolError;
use netchain_network::Network;
use netchain_types::{codec, ConsensusMessage, SignedTransaction, TxId};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Transactions gossiped in one message at most.
pub const GOSSIP_BATCH_MAX: usize = 2_000;
const GOSSIP_WAIT: Duration = Duration::from_millis(5);

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Signed for another chain.
    #[error("transaction for chain {got:?}, this is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's chain.
        got: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The mempool refused it.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// Reading the account failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The chain accepts transactions only from registered identities, and the sender is not
    /// an active one.
    #[error("the sender is {0} in the identity registry and no organization admin or governor; only they may send transactions here")]
    Unregistered(&'static str),
}

impl AdmitError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongChain { .. } => "wrong_chain",
            Self::BadSignature => "bad_signature",
            Self::Mempool(e) => e.code(),
            Self::Storage(_) => "internal",
            Self::Unregistered(_) => "unregistered_sender",
        }
    }
}

/// Signatures this node checked recently, so execution need not check them again. Keyed by the
/// hash of (transaction id, signature): the id covers the signed content, so a hit means exactly
/// this signature on exactly this content verified. Bounded, oldest forgotten first.
pub struct VerifiedCache {
    inner: Mutex<VerifiedSet>,
    capacity: usize,
}

#[derive(Default)]
struct VerifiedSet {
    keys: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(VerifiedSet::default()),
            capacity,
        }
    }

    fn key(tx: &SignedTransaction) -> [u8; 32] {
        *blake3::Hasher::new()
            .update(&tx.id().0)
            .update(&tx.signature.0)
            .finalize()
            .as_bytes()
    }

    /// Records verified transactions.
    pub fn insert_all<'a>(&self, txs: impl IntoIterator<Item = &'a SignedTransaction>) {
        let mut guard = self.inner.lock().expect("verified cache lock");
        let v = &mut *guard;
        for tx in txs {
            let k = Self::key(tx);
            if v.keys.insert(k) {
                v.order.push_back(k);
                if v.order.len() > self.capacity {
                    if let Some(old) = v.order.pop_front() {
                        v.keys.remove(&old);
                    }
                }
            }
        }
    }

    /// Whether this exact signature on this exact content was verified here.
    pub fn contains(&self, tx: &SignedTransaction) -> bool {
        let k = Self::key(tx);
        self.inner
            .lock()
            .expect("verified cache lock")
            .keys
            .contains(&k)
    }
}

impl Shared {
    /// Checks a client's transaction (chain, signature, nonce, pool bounds), admits it and passes
    /// it on to the other validators.
    pub fn admit(&self, tx: SignedTransaction) -> Result<TxId, AdmitError> {
        self.admit_batch(vec![tx])
            .pop()
            .expect("one result per transaction")
    }

    /// [`Shared::admit`] for many transactions, with one batched signature check.
    pub fn admit_batch(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxId, AdmitError>> {
        let ok = self.check_signatures(&txs);
        self.admit_batch_checked(txs, ok)
    }

    /// One batched signature check: whether each transaction's signature verifies. An
    /// ordering-only chain checks none (every one passes).
    pub fn check_signatures(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        if self.ordering_only {
            return vec![true; txs.len()];
        }
        Self::verify_signatures(txs)
    }

    /// One batched signature check, whatever the chain.
    pub fn verify_signatures(txs: &[SignedTransaction]) -> Vec<bool> {
        let items: Vec<_> = txs
            .iter()
            .map(|t| (t.tx.sender, t.tx.signing_message(), t.signature))
            .collect();
        verify_each(&items)
    }

    /// [`Shared::admit_batch`] with the signatures already checked by
    /// [`Shared::check_signatures`] (`ok[i]` for `txs[i]`).
    pub fn admit_batch_checked(
        &self,
        txs: Vec<SignedTransaction>,
        ok: Vec<bool>,
    ) -> Vec<Result<TxId, AdmitError>> {
        if self.ordering_only {
            return self.admit_unordered(txs);
        }
        self.verified
            .insert_all(txs.iter().zip(&ok).filter(|(_, ok)| **ok).map(|(t, _)| t));
        txs.into_iter()
            .zip(ok)
            .map(|(tx, ok)| {
                let result = if ok {
                    self.admit_verified(tx.clone())
                } else {
                    Err(AdmitError::BadSignature)
                };
                let id = result.inspect_err(|e| self.metrics.rejected(e.code()))?;
                // Best effort: a full gossip queue only means other leaders learn of it later.
                // With batching, the transaction travels in this validator's next batch instead.
                if !self.batching {
                    let _ = self.tx_gossip.try_send(tx);
                }
                Ok(id)
            })
            .collect()
    }

    /// Ordering-only chain: admits transactions for the chain in arrival order, with no
    /// signature, nonce or duplicate checks (nothing executes them); only the pool's bounds hold.
    fn admit_unordered(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxId, AdmitError>> {
        // Ids are hashed before the pool's lock is taken.
        let ids: Vec<TxId> = txs.iter().map(SignedTransaction::id).collect();
        let mut mempool = self.mempool.lock().expect("mempool lock");
        txs.into_iter()
            .zip(ids)
            .map(|(tx, id)| {
                if tx.tx.chain_id != self.chain_id {
                    return Err(AdmitError::WrongChain {
                        expected: self.chain_id.clone(),
                        got: tx.tx.chain_id.clone(),
                    });
                }
                mempool.insert_unordered(tx)?;
                Ok(id)
            })
            .map(|r| r.inspect_err(|e| self.metrics.rejected(e.code())))
            .collect()
    }

    /// Admits a transaction whose signature is already checked.
    fn admit_verified(&self, tx: SignedTransaction) -> Result<TxId, AdmitError> {
        if tx.tx.chain_id != self.chain_id {
            return Err(AdmitError::WrongChain {
                expected: self.chain_id.clone(),
                got: tx.tx.chain_id.clone(),
            });
        }
        let height = self.mempool.lock().expect("mempool lock").executed_height();
        if self.registered_senders {
            let allowed = self
                .executor
                .sender_allowed(&tx.tx.sender, height, crate::now_ms())
                .map_err(|e| AdmitError::Storage(e.to_string()))?;
            if let Err(standing) = allowed {
                return Err(AdmitError::Unregistered(standing));
            }
        }
        let sender = tx.tx.sender;
        let nonce_at = |height| {
            self.executor
                .account(&sender, height)
                .map(|a| a.nonce)
                .map_err(|e| AdmitError::Storage(e.to_string()))
        };
        let nonce = nonce_at(height)?;
        let id = tx.id();
        self.mempool
            .lock()
            .expect("mempool lock")
            .insert_as_of(tx, height, nonce, nonce_at)?;
        Ok(id)
    }
}

/// Batches admitted client transactions and broadcasts them to the peers.
pub(crate) fn spawn_gossip(network: Network, mut rx: mpsc::Receiver<SignedTransaction>) {
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut txs = vec![first];
            let deadline = tokio::time::Instant::now() + GOSSIP_WAIT;
            while txs.len() < GOSSIP_BATCH_MAX {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(tx)) => txs.push(tx),
                    _ => break,
                }
            }
            let msg = ConsensusMessage::Transactions { txs };
            network.broadcast(Bytes::from(codec::encode(&msg)));
        }
    });
}

/// Admits transactions gossiped by peers (batch-verified off the consensus task).
pub(crate) fn spawn_ingest(shared: Arc<Shared>, mut rx: mpsc::Receiver<Vec<SignedTransaction>>) {
    std::thread::Builder::new()
        .name("tx-ingest".into())
        .spawn(move || {
            while let Some(mut txs) = rx.blocking_recv() {
                if shared.ordering_only {
                    // Peers there only batch; a gossiped transaction would sit in the
                    // nonce-ordered pool forever (nothing executes nonces forward).
                    continue;
                }
                // Only what a client could have submitted here is worth a signature check.
                txs.retain(|t| {
                    t.tx.chain_id == shared.chain_id
                        && codec::encode(t).len() <= shared.tx_bytes_max
                });
                let items: Vec<_> = txs
                    .iter()
                    .map(|t| (t.tx.sender, t.tx.signing_message(), t.signature))
                    .collect();
                let ok = verify_each(&items);
                shared
                    .verified
                    .insert_all(txs.iter().zip(&ok).filter(|(_, ok)| **ok).map(|(t, _)| t));
                for (tx, ok) in txs.into_iter().zip(ok) {
                    if ok {
                        // Duplicates and stale nonces are expected here; nothing to report.
                        let _ = shared.admit_verified(tx);
                    }
                }
            }
        })
        .expect("spawning ingest thread");
}
