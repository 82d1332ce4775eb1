//! Typed access to the committed chain: blocks by height and id, receipts, checkpoints, the
//! committed tip and the consensus safety data.

use crate::{Column, KvBackend, StorageError, WriteBatch};
use borsh::{BorshDeserialize, BorshSerialize};
use netchain_types::{
    Batch, BatchInfo, Block, CertifiedCheckpoint, Digest, QuorumCert, Receipt, SignedTransaction,
    TxId,
};
use std::sync::Arc;

const META_TIP: &[u8] = b"tip";
const META_GENESIS: &[u8] = b"genesis";
const SAFETY_KEY: &[u8] = b"safety";
/// Batches share the blocks' column under this prefix (block ids are exactly 32 bytes).
const BATCH_PREFIX: &[u8] = b"batch";

fn batch_key(digest: &Digest) -> Vec<u8> {
    [BATCH_PREFIX, &digest.0].concat()
}

/// Batches a validator acknowledged (not executed yet), by expiry then digest: an index (empty
/// values); the batch itself is stored once, under its batch key.
const PENDING_PREFIX: &[u8] = b"qbatch";
/// Batches a committed block executed (empty values): a block naming one again skips it.
const EXECUTED_PREFIX: &[u8] = b"xbatch";

fn executed_key(digest: &Digest) -> Vec<u8> {
    [EXECUTED_PREFIX, &digest.0].concat()
}

fn pending_key(expires_ms: u64, digest: &Digest) -> Vec<u8> {
    [PENDING_PREFIX, &expires_ms.to_be_bytes(), &digest.0].concat()
}

/// The last executed block: what a restarted node resumes from.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChainTip {
    /// The block.
    pub block: Block,
    /// The QC certifying it.
    pub qc: QuorumCert,
    /// State root after executing it.
    pub state_root: Digest,
    /// Transactions applied so far (all heights).
    pub total_txs: u64,
}

/// Typed views over a [`KvBackend`].
pub struct ChainStore<B: KvBackend> {
    backend: Arc<B>,
}

impl<B: KvBackend> Clone for ChainStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
        }
    }
}

fn decode<T: BorshDeserialize>(col: Column, key: &[u8], bytes: &[u8]) -> Result<T, StorageError> {
    borsh::from_slice(bytes).map_err(|e| StorageError::corrupt(col, key, e.to_string()))
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("encoding into a Vec cannot fail")
}

impl<B: KvBackend> ChainStore<B> {
    /// A store over `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn get<T: BorshDeserialize>(&self, col: Column, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.backend.get(col, key)? {
            Some(bytes) => decode(col, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Adds a committed block at its height to `batch`.
    pub fn put_block(batch: &mut WriteBatch, block: &Block) {
        let id = block.id();
        batch.put(Column::Blocks, id.0.to_vec(), encode(block));
        batch.put(
            Column::Heights,
            block.height.to_be_bytes().to_vec(),
            id.0.to_vec(),
        );
    }

    /// Adds an executed batch (named by a committed block) to `wb`: marks it executed and
    /// takes it off the acknowledged index. `body` is the batch when it is not stored yet (it
    /// was fetched, not acknowledged here); an acknowledged batch is stored already.
    pub fn put_executed_batch(wb: &mut WriteBatch, info: &BatchInfo, body: Option<&Batch>) {
        if let Some(batch) = body {
            wb.put(Column::Blocks, batch_key(&info.digest), encode(batch));
        }
        wb.put(Column::Blocks, executed_key(&info.digest), Vec::new());
        wb.delete(Column::Blocks, pending_key(info.expires_ms, &info.digest));
    }

    /// Whether a committed block executed the batch with this digest.
    pub fn batch_executed(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.backend.contains(Column::Blocks, &executed_key(digest))
    }

    /// Stores, durably, a batch this validator is about to acknowledge (its acknowledgement
    /// promises the batch is available, also after a crash).
    pub fn put_pending_batch(&self, info: &BatchInfo, batch: &Batch) -> Result<(), StorageError> {
        self.put_pending_batches(&[(*info, batch)])
    }

    /// [`ChainStore::put_pending_batch`] for several batches, with one sync.
    pub fn put_pending_batches(&self, batches: &[(BatchInfo, &Batch)]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::new();
        for (info, batch) in batches {
            wb.put(Column::Blocks, batch_key(&info.digest), encode(*batch));
            wb.put(
                Column::Blocks,
                pending_key(info.expires_ms, &info.digest),
                Vec::new(),
            );
        }
        self.backend.write(wb, true)
    }

    /// Adds the removal of an acknowledged batch that is not kept (expired uncommitted, or
    /// refused after it was stored) to `wb`: its index entry, and its bytes unless a block
    /// executed a batch with this digest (a late or repeated copy of an executed batch must not
    /// take the executed one's bytes with it: events, peers' fetches and block reads need them).
    pub fn drop_pending_batch(
        &self,
        wb: &mut WriteBatch,
        info: &BatchInfo,
    ) -> Result<(), StorageError> {
        Self::drop_pending_index(wb, info);
        if !self.batch_executed(&info.digest)? {
            wb.delete(Column::Blocks, batch_key(&info.digest));
        }
        Ok(())
    }

    /// Adds the removal of an acknowledged batch's index entry only to `wb` (its bytes stay:
    /// a block committed it).
    pub fn drop_pending_index(wb: &mut WriteBatch, info: &BatchInfo) {
        wb.delete(Column::Blocks, pending_key(info.expires_ms, &info.digest));
    }

    /// The acknowledged batches stored (after a restart), at most `limit`. Entries that do not
    /// decode are skipped.
    pub fn pending_batches(&self, limit: usize) -> Result<Vec<Batch>, StorageError> {
        let mut end = PENDING_PREFIX.to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        let mut out = Vec::new();
        for (key, _) in self
            .backend
            .range(Column::Blocks, PENDING_PREFIX, &end, limit)?
        {
            let Some(digest) = key
                .strip_prefix(PENDING_PREFIX)
                .filter(|rest| rest.len() == 8 + 32)
                .and_then(|rest| <[u8; 32]>::try_from(&rest[8..]).ok())
            else {
                continue;
            };
            if self.batch_executed(&Digest(digest))? {
                continue; // a late copy of an executed batch: not pending
            }
            if let Some(bytes) = self
                .backend
                .get(Column::Blocks, &batch_key(&Digest(digest)))?
            {
                if let Ok(batch) = borsh::from_slice(&bytes) {
                    out.push(batch);
                }
            }
        }
        Ok(out)
    }

    /// Whether a batch with this digest is stored, acknowledged or executed (its bytes are not
    /// read).
    pub fn has_batch(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.backend.contains(Column::Blocks, &batch_key(digest))
    }

    /// An executed batch by digest.
    pub fn batch(&self, digest: &Digest) -> Result<Option<Batch>, StorageError> {
        self.get(Column::Blocks, &batch_key(digest))
    }

    /// A committed block's transactions in execution order: those it carries, then those of
    /// its batches, batch by batch.
    pub fn block_transactions(
        &self,
        block: &Block,
    ) -> Result<Vec<SignedTransaction>, StorageError> {
        let mut txs = block.payload.clone();
        for proof in &block.batches {
            let key = batch_key(&proof.info.digest);
            let batch: Batch = self.get(Column::Blocks, &key)?.ok_or_else(|| {
                StorageError::corrupt(Column::Blocks, &key, "batch of a committed block missing")
            })?;
            txs.extend(batch.txs);
        }
        Ok(txs)
    }

    /// The transaction at `index` of a committed block's execution order (reads at most one
    /// batch).
    pub fn block_transaction(
        &self,
        block: &Block,
        index: usize,
    ) -> Result<Option<SignedTransaction>, StorageError> {
        if let Some(tx) = block.payload.get(index) {
            return Ok(Some(tx.clone()));
        }
        let mut first = block.payload.len();
        for proof in &block.batches {
            let count = proof.info.tx_count as usize;
            if index < first + count {
                return Ok(self
                    .batch(&proof.info.digest)?
                    .and_then(|b| b.txs.into_iter().nth(index - first)));
            }
            first += count;
        }
        Ok(None)
    }

    /// Stores a block that is not committed yet (by id only, no height), without fsync: it
    /// survives a process crash, and the next synced write (the safety data that follows it)
    /// makes it durable.
    pub fn put_uncommitted_block(&self, block: &Block) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(Column::Blocks, block.id().0.to_vec(), encode(block));
        self.backend.write(batch, false)
    }

    /// Adds a receipt to `batch`.
    pub fn put_receipt(batch: &mut WriteBatch, receipt: &Receipt) {
        batch.put(Column::Receipts, receipt.tx_id.0.to_vec(), encode(receipt));
    }

    /// Adds the new tip to `batch`.
    pub fn put_tip(batch: &mut WriteBatch, tip: &ChainTip) {
        batch.put(Column::Meta, META_TIP.to_vec(), encode(tip));
    }

    /// Adds the genesis hash to `batch`.
    pub fn put_genesis_hash(batch: &mut WriteBatch, hash: &Digest) {
        batch.put(Column::Meta, META_GENESIS.to_vec(), hash.0.to_vec());
    }

    /// The genesis hash this store was initialized with.
    pub fn genesis_hash(&self) -> Result<Option<Digest>, StorageError> {
        self.get::<[u8; 32]>(Column::Meta, META_GENESIS)
            .map(|o| o.map(Digest))
    }

    /// The last executed block, if any.
    pub fn tip(&self) -> Result<Option<ChainTip>, StorageError> {
        self.get(Column::Meta, META_TIP)
    }

    /// A committed block by height.
    pub fn block_at(&self, height: u64) -> Result<Option<Block>, StorageError> {
        let Some(id) = self.backend.get(Column::Heights, &height.to_be_bytes())? else {
            return Ok(None);
        };
        let id: [u8; 32] = id.try_into().map_err(|_| {
            StorageError::corrupt(Column::Heights, &height.to_be_bytes(), "id length")
        })?;
        self.block(&Digest(id))
    }

    /// A committed block by id.
    pub fn block(&self, id: &Digest) -> Result<Option<Block>, StorageError> {
        self.get(Column::Blocks, &id.0)
    }

    /// A transaction's receipt.
    pub fn receipt(&self, id: &TxId) -> Result<Option<Receipt>, StorageError> {
        self.get(Column::Receipts, &id.0)
    }

    /// Stores a certified checkpoint (durably).
    pub fn put_checkpoint(&self, cert: &CertifiedCheckpoint) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(
            Column::Checkpoints,
            cert.checkpoint.height.to_be_bytes().to_vec(),
            encode(cert),
        );
        self.backend.write(batch, true)
    }

    /// The newest certified checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<CertifiedCheckpoint>, StorageError> {
        match self.backend.last(Column::Checkpoints)? {
            Some((key, bytes)) => decode(Column::Checkpoints, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The certified checkpoint of a height.
    pub fn checkpoint_at(&self, height: u64) -> Result<Option<CertifiedCheckpoint>, StorageError> {
        self.get(Column::Checkpoints, &height.to_be_bytes())
    }

    /// Persists consensus safety data durably (before the vote it protects is sent).
    pub fn put_safety(&self, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(Column::Safety, SAFETY_KEY.to_vec(), bytes);
        self.backend.write(batch, true)
    }

    /// The persisted safety data, encoded.
    pub fn safety(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.backend.get(Column::Safety, SAFETY_KEY)
    }

    /// Writes a batch durably.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.backend.write(batch, true)
    }

    /// Writes `batch` without waiting for it to be durable (for what may be lost in a crash).
    pub fn commit_unsynced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.backend.write(batch, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use netchain_types::TxOutcome;

    #[test]
    fn batches_are_stored_once_from_acknowledgement_to_execution() {
        let store = ChainStore::new(Arc::new(MemoryBackend::default()));
        let batch = |seq: u64| Batch {
            chain_id: "c".into(),
            author: 1,
            seq,
            expires_ms: 1_000 + seq,
            txs: Vec::new(),
        };
        let (a, b, c) = (batch(1), batch(2), batch(3));
        store
            .put_pending_batches(&[(a.info(), &a), (b.info(), &b)])
            .unwrap();
        assert_eq!(
            store.pending_batches(10).unwrap(),
            vec![a.clone(), b.clone()]
        );
        // Readable (served to peers) while pending, but not executed.
        assert_eq!(store.batch(&a.digest()).unwrap(), Some(a.clone()));
        assert!(store.has_batch(&a.digest()).unwrap());
        assert!(!store.batch_executed(&a.digest()).unwrap());
        // `a` executes (already stored), `c` executes after a fetch, `b` expires unexecuted.
        let mut wb = WriteBatch::new();
        ChainStore::<MemoryBackend>::put_executed_batch(&mut wb, &a.info(), None);
        ChainStore::<MemoryBackend>::put_executed_batch(&mut wb, &c.info(), Some(&c));
        store.drop_pending_batch(&mut wb, &b.info()).unwrap();
        store.commit(wb).unwrap();
        assert!(store.pending_batches(10).unwrap().is_empty());
        for x in [&a, &c] {
            assert_eq!(store.batch(&x.digest()).unwrap().as_ref(), Some(x));
            assert!(store.batch_executed(&x.digest()).unwrap());
        }
        assert_eq!(store.batch(&b.digest()).unwrap(), None);
        assert!(!store.batch_executed(&b.digest()).unwrap());
        // A late copy of executed `a`, acknowledged and then dropped, leaves `a`'s bytes, and
        // is not restored as pending meanwhile.
        store.put_pending_batches(&[(a.info(), &a)]).unwrap();
        assert!(store.pending_batches(10).unwrap().is_empty());
        let mut wb = WriteBatch::new();
        store.drop_pending_batch(&mut wb, &a.info()).unwrap();
        store.commit(wb).unwrap();
        assert_eq!(store.batch(&a.digest()).unwrap(), Some(a));
    }

    #[test]
    fn blocks_receipts_tip_round_trip() {
        let store = ChainStore::new(Arc::new(MemoryBackend::default()));
        let genesis = Block::genesis(Digest([1; 32]), 7);
        let mut b1 = genesis.clone();
        b1.height = 1;
        b1.round = 1;
        b1.parent_id = genesis.id();
        let receipt = Receipt {
            tx_id: Digest([5; 32]),
            height: 1,
            index: 0,
            outcome: TxOutcome::Applied,
        };
        let tip = ChainTip {
            block: b1.clone(),
            qc: QuorumCert::genesis(b1.id()),
            state_root: Digest([3; 32]),
            total_txs: 1,
        };
        let mut batch = WriteBatch::new();
        ChainStore::<MemoryBackend>::put_block(&mut batch, &genesis);
        ChainStore::<MemoryBackend>::put_block(&mut batch, &b1);
        ChainStore::<MemoryBackend>::put_receipt(&mut batch, &receipt);
        ChainStore::<MemoryBackend>::put_tip(&mut batch, &tip);
        store.commit(batch).unwrap();
        assert_eq!(store.block_at(1).unwrap(), Some(b1.clone()));
        assert_eq!(store.block(&genesis.id()).unwrap(), Some(genesis));
        assert_eq!(store.block_at(2).unwrap(), None);
        assert_eq!(store.receipt(&Digest([5; 32])).unwrap(), Some(receipt));
        assert_eq!(store.tip().unwrap(), Some(tip));
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let backend = Arc::new(MemoryBackend::default());
        let mut batch = WriteBatch::new();
        batch.put(Column::Meta, META_TIP.to_vec(), vec![1, 2, 3]);
        backend.write(batch, false).unwrap();
        let store = ChainStore::new(backend);
        assert!(matches!(store.tip(), Err(StorageError::Corrupt { .. })));
    }
}
