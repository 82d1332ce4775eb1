//! Simulated clients: funded accounts that sign transfers and resubmit until acknowledged.
//!
//! A client knows only what a real one would: it signs transfers with consecutive nonces, sends
//! each to some validator, and sends it again (to another validator) while no honest validator
//! has reported it applied. A transaction is acknowledged once an honest validator executed it
//! with an `Applied` receipt; the liveness phase requires every transaction to get there.

use crate::rng::Rng;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::{Payload, PublicKey, SignedTransaction, Transaction, TxId};
use std::collections::BTreeMap;

/// Balance of each client account at genesis.
pub const GENESIS_BALANCE: u64 = 1_000_000;

struct Pending {
    tx: SignedTransaction,
    last_sent_ms: u64,
}

/// The clients of one run.
pub struct Clients {
    keys: Vec<Keypair>,
    next_nonce: Vec<u64>,
    pending: BTreeMap<TxId, Pending>,
    chain_id: String,
    /// Transactions created so far.
    pub created: usize,
    /// Transactions acknowledged so far.
    pub acknowledged: usize,
}

impl Clients {
    /// `count` clients with keys derived from `rng`.
    pub fn new(count: usize, chain_id: &str, rng: &mut Rng) -> Self {
        let keys = (0..count)
            .map(|_| Keypair::from_secret(rng.bytes32()))
            .collect();
        Self {
            keys,
            next_nonce: vec![0; count],
            pending: BTreeMap::new(),
            chain_id: chain_id.into(),
            created: 0,
            acknowledged: 0,
        }
    }

    /// The funded genesis accounts.
    pub fn genesis_accounts(&self) -> Vec<(PublicKey, u64)> {
        self.keys
            .iter()
            .map(|k| (k.public(), GENESIS_BALANCE))
            .collect()
    }

    /// Signs a new transfer from a random client to another.
    pub fn create(&mut self, now: u64, rng: &mut Rng) -> SignedTransaction {
        let from = rng.below(self.keys.len() as u64) as usize;
        let to = (from + 1 + rng.below(self.keys.len() as u64 - 1) as usize) % self.keys.len();
        let tx = Transaction {
            chain_id: self.chain_id.clone(),
            sender: self.keys[from].public(),
            nonce: self.next_nonce[from],
            payload: Payload::Transfer {
                to: self.keys[to].public(),
                amount: rng.range(1, 100),
                memo: Vec::new(),
            },
        };
        self.next_nonce[from] += 1;
        self.created += 1;
        let signed = sign_transaction(&self.keys[from], tx);
        self.pending.insert(
            signed.id(),
            Pending {
                tx: signed.clone(),
                last_sent_ms: now,
            },
        );
        signed
    }

    /// Transactions not acknowledged and not sent for `retry_ms`; marks them sent now.
    pub fn due(&mut self, now: u64, retry_ms: u64) -> Vec<SignedTransaction> {
        self.pending
            .values_mut()
            .filter(|p| p.last_sent_ms + retry_ms <= now)
            .map(|p| {
                p.last_sent_ms = now;
                p.tx.clone()
            })
            .collect()
    }

    /// An honest validator applied these transactions.
    pub fn acknowledge(&mut self, ids: &[TxId]) {
        for id in ids {
            if self.pending.remove(id).is_some() {
                self.acknowledged += 1;
            }
        }
    }

    /// Transactions still waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
