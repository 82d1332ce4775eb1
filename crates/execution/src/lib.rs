//! Deterministic execution of committed blocks.
//!
//! Design note: the executor is a pure function of (state at height h-1, block h): it reads
//! accounts from the Merkle state tree, checks every transaction (one batched signature check with
//! the same ZIP-215 rule the mempool uses), applies the valid ones in block order, and returns the
//! new state root with one write batch holding the state changes and receipts. It never reads the
//! clock or OS randomness and iterates only ordered maps, so every validator computes the same root.
//! Signatures are checked here again because a faulty leader can put anything in a block.
//!
//! Parallelism that cannot change a result: signature checks are split over the cores
//! (`verify_each`), and a large block's declared accounts (senders, transfer recipients) are read
//! at the parent version on all cores before the block is applied in order from that cache
//! (`tests/parallel.rs` compares one thread with several on random conflicting blocks).

pub mod currency;
pub mod identity;
mod overlay;
pub mod registry;
pub mod relay;

use borsh::BorshDeserialize;
use currency::{Env, Fail};
use netchain_crypto::verify_each;
use netchain_storage::{ChainStore, KvBackend, StateTree, StorageError, WriteBatch};
use netchain_types::{
    codec, Account, Digest, Payload, PublicKey, Receipt, SignedTransaction, TxOutcome,
};
use overlay::Overlay;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Why execution refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The signature does not verify for the sender.
    #[error("signature does not verify for sender {0}")]
    BadSignature(PublicKey),
    /// Signed for another chain.
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's chain.
        got: String,
    },
    /// Nonce is not the account's next nonce (replay or gap).
    #[error("nonce {got} does not match account nonce {expected}")]
    BadNonce {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// Balance below the amount.
    #[error("balance {balance} is below amount {amount}")]
    InsufficientFunds {
        /// Sender balance.
        balance: u64,
        /// Transfer amount.
        amount: u64,
    },
    /// Zero-amount transfer.
    #[error("amount must be positive")]
    InvalidAmount,
    /// A balance would exceed the maximum.
    #[error("recipient balance would overflow")]
    Overflow,
    /// The chain accepts transactions only from registered identities, organization admins and
    /// governors, and the sender is none of them. Nothing is written for it (not even a nonce),
    /// so strangers cannot grow the state.
    #[error("the sender is {standing} in the identity registry and no organization admin or governor; only they may send transactions here")]
    Unregistered {
        /// The sender's standing (`unregistered`, `revoked` ...).
        standing: &'static str,
    },
    /// A module rule refused the operation; the code names the rule.
    #[error("{message}")]
    Rule {
        /// Stable machine-readable code (e.g. `region_not_allowed`).
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
}

impl TxError {
    /// Whether the refusal uses up the sender's nonce: every refusal of a transaction that is
    /// authentic and in sequence (a bad signature, another chain or a wrong nonce are not).
    pub fn consumes_nonce(&self) -> bool {
        !matches!(
            self,
            Self::BadSignature(_)
                | Self::WrongChain { .. }
                | Self::BadNonce { .. }
                | Self::Unregistered { .. }
        )
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSignature(_) => "bad_signature",
            Self::WrongChain { .. } => "wrong_chain",
            Self::BadNonce { .. } => "bad_nonce",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::InvalidAmount => "invalid_amount",
            Self::Overflow => "overflow",
            Self::Unregistered { .. } => "unregistered_sender",
            Self::Rule { code, .. } => code,
        }
    }
}

/// The block being executed, as far as execution needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Height.
    pub height: u64,
    /// Proposer timestamp (the modules' clock).
    pub timestamp_ms: u64,
    /// Parent block id (recorded in the block history).
    pub parent_id: Digest,
}

impl From<&netchain_types::Block> for BlockInfo {
    fn from(b: &netchain_types::Block) -> Self {
        Self {
            height: b.height,
            timestamp_ms: b.timestamp_ms,
            parent_id: b.parent_id,
        }
    }
}

/// What executing one block produced.
#[derive(Debug)]
pub struct BlockOutput {
    /// State root after the block.
    pub state_root: Digest,
    /// Receipts, one per transaction seen for the first time.
    pub receipts: Vec<Receipt>,
    /// State changes and receipts to write (atomically, with the block).
    pub batch: WriteBatch,
    /// Applied transactions.
    pub applied: u64,
    /// New nonces of the senders of this block.
    pub nonces: Vec<(PublicKey, u64)>,
}

struct Cached {
    original: Account,
    current: Account,
}

type Accounts = BTreeMap<PublicKey, Cached>;

/// Executes blocks on the state tree of one chain.
pub struct Executor<B: KvBackend> {
    chain_id: String,
    state: StateTree<B>,
    store: ChainStore<B>,
    /// Threads for the block's read phase (1: everything on the calling thread).
    threads: usize,
}

/// Blocks with fewer transactions than this read their accounts on the calling thread.
const PARALLEL_READ_MIN_TXS: usize = 256;

/// State-tree key of an account.
pub fn account_key(pk: &PublicKey) -> Vec<u8> {
    let mut key = b"acct/".to_vec();
    key.extend_from_slice(&pk.0);
    key
}

impl<B: KvBackend> Executor<B> {
    /// An executor over `backend`.
    pub fn new(chain_id: impl Into<String>, backend: Arc<B>) -> Self {
        Self {
            chain_id: chain_id.into(),
            state: StateTree::new(backend.clone()),
            store: ChainStore::new(backend),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }

    /// The same executor with `threads` threads for the read phase (1: none besides the
    /// caller's). The results never depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Reads, in parallel, the accounts at `base` that the block's transactions declare (every
    /// sender, every transfer's recipient) into `accounts`. Reads of one committed version are
    /// pure, so this changes only how fast the block runs, never what it does; the apply phase
    /// then runs in block order from the cache.
    fn prefetch_accounts<T: Borrow<SignedTransaction>>(
        &self,
        base: u64,
        txs: &[T],
        accounts: &mut Accounts,
    ) -> Result<(), StorageError> {
        if self.threads < 2 || txs.len() < PARALLEL_READ_MIN_TXS {
            return Ok(());
        }
        let keys: Vec<PublicKey> = txs
            .iter()
            .map(Borrow::borrow)
            .flat_map(|t: &SignedTransaction| {
                let to = match &t.tx.payload {
                    Payload::Transfer { to, .. } => Some(*to),
                    _ => None,
                };
                std::iter::once(t.tx.sender).chain(to)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let chunk = keys.len().div_ceil(self.threads);
        let read: Vec<Result<Vec<(PublicKey, Account)>, StorageError>> =
            std::thread::scope(|scope| {
                let parts: Vec<_> = keys
                    .chunks(chunk.max(1))
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|pk| Ok((*pk, self.account(pk, base)?)))
                                .collect()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .map(|h| h.join().expect("account read thread"))
                    .collect()
            });
        for part in read {
            for (pk, original) in part? {
                accounts.insert(
                    pk,
                    Cached {
                        original,
                        current: original,
                    },
                );
            }
        }
        Ok(())
    }

    /// The state tree.
    pub fn state(&self) -> &StateTree<B> {
        &self.state
    }

    /// An account at a version (height); absent accounts are zero.
    pub fn account(&self, pk: &PublicKey, version: u64) -> Result<Account, StorageError> {
        let key = account_key(pk);
        match self.state.get(&key, version)? {
            Some(bytes) => Account::try_from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                col: netchain_storage::Column::JmtNodes,
                key_hex: hex_key(&key),
                reason: e.to_string(),
            }),
            None => Ok(Account::default()),
        }
    }

    /// The genesis state (version 0).
    pub fn genesis(
        &self,
        accounts: &[(PublicKey, u64)],
    ) -> Result<(Digest, WriteBatch), StorageError> {
        self.genesis_with(accounts, None, None)
    }

    /// The genesis state with a root chain's registry governance and/or an identity registry.
    /// An invalid identity section is refused (as a backend error naming the problem; genesis
    /// files are validated before this).
    pub fn genesis_with(
        &self,
        accounts: &[(PublicKey, u64)],
        root: Option<(&netchain_types::registry::Governance, Digest)>,
        identity: Option<&netchain_types::identity::IdentityGenesis>,
    ) -> Result<(Digest, WriteBatch), StorageError> {
        let mut sorted: BTreeMap<PublicKey, Account> = BTreeMap::new();
        for (pk, balance) in accounts {
            sorted.entry(*pk).or_default().balance += balance;
        }
        let mut updates: Vec<_> = sorted
            .iter()
            .map(|(pk, a)| (account_key(pk), Some(codec::encode(a))))
            .collect();
        if let Some((g, genesis_hash)) = root {
            updates.push((registry::GOVERNANCE_KEY.to_vec(), Some(codec::encode(g))));
            updates.push((
                registry::GENESIS_HASH_KEY.to_vec(),
                Some(codec::encode(&genesis_hash)),
            ));
        }
        if let Some(id) = identity {
            let writes = identity::genesis_updates(id)
                .map_err(|e| StorageError::Backend(format!("invalid identity genesis: {e}")))?;
            updates.extend(writes);
        }
        let (root, batch) = self.state.apply(0, updates)?;
        Ok((Digest(root), batch))
    }

    /// A module value at a version (height), decoded; `None` when absent.
    pub fn module_value<T: BorshDeserialize>(
        &self,
        key: &[u8],
        version: u64,
    ) -> Result<Option<T>, StorageError> {
        match self.state.get(key, version)? {
            None => Ok(None),
            Some(bytes) => overlay::decode_value(key, &bytes).map(Some),
        }
    }

    /// The genesis state of a root chain: the accounts, the registry's governance and the
    /// chain's genesis hash (approvals are bound to it).
    pub fn genesis_root(
        &self,
        accounts: &[(PublicKey, u64)],
        governance: &netchain_types::registry::Governance,
        genesis_hash: Digest,
    ) -> Result<(Digest, WriteBatch), StorageError> {
        self.genesis_with(accounts, Some((governance, genesis_hash)), None)
    }

    /// Executes `txs` as the block at `height` with proposer time `timestamp_ms` on the state
    /// of `height - 1`. For tests and benchmarks: the block history records a zero parent id
    /// (nodes use [`Executor::execute_checked`] with the real block).
    pub fn execute(
        &self,
        height: u64,
        timestamp_ms: u64,
        txs: &[SignedTransaction],
    ) -> Result<BlockOutput, StorageError> {
        let block = BlockInfo {
            height,
            timestamp_ms,
            parent_id: Digest::default(),
        };
        self.execute_checked(&block, txs, &|_, _| false)
    }

    /// [`Executor::execute`], skipping the signature check of transactions for which
    /// `verified(index, tx)` says this node has already checked exactly that signature on exactly
    /// that content (at admission), or a proof of availability vouches for it. The outcome is the
    /// same; only the work is saved. `txs` may be the transactions or references to them (a
    /// block's batches are executed without copying their transactions).
    pub fn execute_checked<T: Borrow<SignedTransaction>>(
        &self,
        block: &BlockInfo,
        txs: &[T],
        verified: &dyn Fn(usize, &SignedTransaction) -> bool,
    ) -> Result<BlockOutput, StorageError> {
        let (height, timestamp_ms) = (block.height, block.timestamp_ms);
        assert!(height > 0, "genesis is not executed");
        let base = height - 1;
        let mut sig_ok = vec![true; txs.len()];
        let tx_at = |i: usize| -> &SignedTransaction { txs[i].borrow() };
        let unchecked: Vec<usize> = (0..txs.len()).filter(|&i| !verified(i, tx_at(i))).collect();
        let mut items: Vec<_> = unchecked
            .iter()
            .map(|&i| {
                let t = tx_at(i);
                (t.tx.sender, t.tx.signing_message(), t.signature)
            })
            .collect();
        // Signatures inside payloads (payment requests and authorizations) join the same batch.
        let inner: Vec<(usize, (PublicKey, Digest, netchain_types::Signature))> = txs
            .iter()
            .map(Borrow::borrow)
            .enumerate()
            .filter_map(|(i, t)| currency::inner_signature(&t.tx.payload).map(|s| (i, s)))
            .collect();
        items.extend(inner.iter().map(|(_, s)| *s));
        let results = verify_each(&items);
        let (outer, inner_results) = results.split_at(unchecked.len());
        for (&i, &ok) in unchecked.iter().zip(outer) {
            sig_ok[i] = ok;
        }
        let mut inner_ok: Vec<Option<bool>> = vec![None; txs.len()];
        for ((i, _), &ok) in inner.iter().zip(inner_results) {
            inner_ok[*i] = Some(ok);
        }
        let mut accounts = Accounts::new();
        self.prefetch_accounts(base, txs, &mut accounts)?;
        let mut modules = Overlay::new(&self.state, base);
        let registered_only = identity::requires_registered_senders(&mut modules)?;
        currency::sweep(&mut modules, timestamp_ms, height)?;
        let mut batch = WriteBatch::new();
        let mut receipts = Vec::with_capacity(txs.len());
        let mut seen = HashMap::with_capacity(txs.len());
        let mut applied = 0;
        for (index, (tx, ok)) in txs.iter().map(Borrow::borrow).zip(sig_ok).enumerate() {
            let id = tx.id();
            let env = Env {
                chain_id: &self.chain_id,
                height,
                now: timestamp_ms,
                tx_id: id,
                sender: tx.tx.sender,
                inner_sig_ok: inner_ok[index],
                registered_only,
            };
            let outcome = match self.apply(base, tx, ok, &mut accounts, &mut modules, &env)? {
                Ok(()) => {
                    applied += 1;
                    TxOutcome::Applied
                }
                Err(e) => {
                    // A refusal of a properly signed transaction with the right nonce is final:
                    // the nonce is used up, so the same signed bytes can never apply later
                    // (after the payer's balance grows, say).
                    if e.consumes_nonce() {
                        self.cached(base, &tx.tx.sender, &mut accounts)?.nonce += 1;
                    }
                    TxOutcome::Rejected {
                        code: e.code().into(),
                        message: e.to_string(),
                    }
                }
            };
            let applied_now = matches!(outcome, TxOutcome::Applied);
            let receipt = Receipt {
                tx_id: id,
                height,
                index: index as u32,
                outcome,
            };
            // A transaction id keeps its first receipt: a copy included again (a replay, or the
            // same transaction sent to two validators) must not overwrite "applied". The one
            // exception is a copy that is applied after an earlier copy in this block was
            // rejected (e.g. a forged signature or a nonce that only fit later): the state did
            // change, so its receipt must say so.
            if let Some(&at) = seen.get(&id) {
                if applied_now {
                    receipts[at] = receipt;
                }
                continue;
            }
            if !applied_now && self.store.receipt(&id)?.is_some() {
                continue;
            }
            seen.insert(id, receipts.len());
            receipts.push(receipt);
        }
        for receipt in &receipts {
            ChainStore::<B>::put_receipt(&mut batch, receipt);
        }
        let mut nonces = BTreeMap::new();
        for tx in txs.iter().map(Borrow::borrow) {
            if let std::collections::btree_map::Entry::Vacant(e) = nonces.entry(tx.tx.sender) {
                e.insert(self.cached(base, &tx.tx.sender, &mut accounts)?.nonce);
            }
        }
        // Only accounts whose value changed enter the state tree.
        let mut updates: Vec<_> = accounts
            .iter()
            .filter(|(_, c)| c.current != c.original)
            .map(|(pk, c)| (account_key(pk), Some(codec::encode(&c.current))))
            .collect();
        updates.extend(modules.into_updates());
        // The block history: this block records its parent, so a later state root proves which
        // block stood at every earlier height (what anchors on a root chain rely on).
        updates.push((
            netchain_types::registry::history_key(height - 1),
            Some(codec::encode(&block.parent_id)),
        ));
        let (root, state_batch) = self.state.apply(height, updates)?;
        batch.extend(state_batch);
        Ok(BlockOutput {
            state_root: Digest(root),
            receipts,
            batch,
            applied,
            nonces: nonces.into_iter().collect(),
        })
    }

    fn cached<'a>(
        &self,
        base: u64,
        pk: &PublicKey,
        accounts: &'a mut Accounts,
    ) -> Result<&'a mut Account, StorageError> {
        if !accounts.contains_key(pk) {
            let original = self.account(pk, base)?;
            accounts.insert(
                *pk,
                Cached {
                    original,
                    current: original,
                },
            );
        }
        Ok(&mut accounts.get_mut(pk).expect("just inserted").current)
    }

    fn apply(
        &self,
        base: u64,
        tx: &SignedTransaction,
        sig_ok: bool,
        accounts: &mut Accounts,
        modules: &mut Overlay<'_, B>,
        env: &Env<'_>,
    ) -> Result<Result<(), TxError>, StorageError> {
        let t = &tx.tx;
        if t.chain_id != self.chain_id {
            return Ok(Err(TxError::WrongChain {
                expected: self.chain_id.clone(),
                got: t.chain_id.clone(),
            }));
        }
        if !sig_ok {
            return Ok(Err(TxError::BadSignature(t.sender)));
        }
        let sender = *self.cached(base, &t.sender, accounts)?;
        if sender.nonce != t.nonce {
            return Ok(Err(TxError::BadNonce {
                expected: sender.nonce,
                got: t.nonce,
            }));
        }
        if env.registered_only {
            if let Err(standing) = identity::sender_allowed_in(modules, &t.sender, env.now)? {
                return Ok(Err(TxError::Unregistered { standing }));
            }
        }
        match &t.payload {
            Payload::Transfer { to, amount, .. } => {
                let amount = *amount;
                if amount == 0 {
                    return Ok(Err(TxError::InvalidAmount));
                }
                if sender.balance < amount {
                    return Ok(Err(TxError::InsufficientFunds {
                        balance: sender.balance,
                        amount,
                    }));
                }
                if to != &t.sender {
                    let receiver = self.cached(base, to, accounts)?;
                    if receiver.balance.checked_add(amount).is_none() {
                        return Ok(Err(TxError::Overflow));
                    }
                    receiver.balance += amount;
                    self.cached(base, &t.sender, accounts)?.balance -= amount;
                }
                self.cached(base, &t.sender, accounts)?.nonce += 1;
                Ok(Ok(()))
            }
            Payload::Currency(op) => {
                let result = currency::apply_currency(modules, env, op);
                self.finish_module(base, t, result, accounts, modules)
            }
            Payload::Voucher(op) => {
                let result = currency::apply_voucher(modules, env, op);
                self.finish_module(base, t, result, accounts, modules)
            }
            Payload::Identity(op) => {
                let ienv = identity::Env {
                    chain_id: &self.chain_id,
                    height: env.height,
                    now: env.now,
                    sender: t.sender,
                };
                let result = identity::apply(modules, &ienv, op);
                self.finish_module(base, t, result, accounts, modules)
            }
            Payload::Registry(op) => {
                let renv = registry::Env {
                    chain_id: &self.chain_id,
                    height: env.height,
                };
                let result = registry::apply(modules, &renv, op);
                self.finish_module(base, t, result, accounts, modules)
            }
        }
    }

    /// Keeps a module operation's writes and bumps the nonce if it applied; drops them if not.
    fn finish_module(
        &self,
        base: u64,
        t: &netchain_types::Transaction,
        result: Result<(), Fail>,
        accounts: &mut Accounts,
        modules: &mut Overlay<'_, B>,
    ) -> Result<Result<(), TxError>, StorageError> {
        match result {
            Ok(()) => {
                modules.commit()?;
                self.cached(base, &t.sender, accounts)?.nonce += 1;
                Ok(Ok(()))
            }
            Err(Fail::Reject(e)) => {
                modules.rollback();
                Ok(Err(e))
            }
            Err(Fail::Storage(e)) => {
                modules.rollback();
                Err(e)
            }
        }
    }
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
