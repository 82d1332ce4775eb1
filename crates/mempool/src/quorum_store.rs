//! The quorum store: batched dissemination with proofs of availability, without I/O.
//!
//! Design note (after Narwhal's workers and Aptos' Quorum Store): each validator puts the client
//! transactions it admitted into batches and broadcasts them. A peer checks a batch (author,
//! chain, bounds, expiry, its quota for that author), the driver verifies every signature in it
//! off the consensus thread, and the peer then stores the batch and sends the author a signed
//! acknowledgement. `n - f` acknowledgements form a [`ProofOfAvailability`], which the author
//! broadcasts; leaders propose proofs, not transactions, so a block is a few kilobytes whatever
//! the load. Execution takes each committed batch from this store or fetches it from a signer.
//!
//! Bounds: every author has a quota of stored batches and bytes at each peer (a full quota means
//! no acknowledgement, so a flooding author cannot form proofs); an author keeps at most
//! `own_unproven_max` batches waiting for acknowledgements (back-pressure into its mempool and
//! from there to clients); the proof queue, the committed-digest memory and the fetch list are
//! bounded. Batches expire: no block may carry one after its `expires_ms`. A stored batch that was
//! not committed is dropped only once this validator has committed a block whose timestamp is past
//! the batch's expiry: block timestamps never go down along the chain, so no later block can
//! carry it. (Dropping by the local clock instead loses batches that a block carried in time but
//! that was committed late, after a partition, and execution would then wait for them forever;
//! the simulator found this.)

use netchain_consensus::{verify_proofs, ConsensusError, PayloadSource};
use netchain_crypto::{verify, Keypair};
use netchain_types::{
    Batch, BatchInfo, Block, Committee, ConsensusMessage, Digest, ProofOfAvailability, Signature,
    SignedTransaction, ValidatorIndex,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Bounds and timings of the quorum store.
#[derive(Clone, Debug)]
pub struct QuorumStoreConfig {
    /// Most transactions in a batch.
    pub batch_max_txs: usize,
    /// Most encoded bytes of a batch.
    pub batch_max_bytes: usize,
    /// Most encoded bytes of one transaction in a batch (the node's admission limit: a peer
    /// may not slip in what no client could submit).
    pub tx_bytes_max: usize,
    /// How long after its creation a batch may still be included in a block.
    pub batch_ttl_ms: u64,
    /// Most uncommitted batches stored per author.
    pub author_batches_max: usize,
    /// Most uncommitted bytes stored per author.
    pub author_bytes_max: usize,
    /// Most own batches waiting for a quorum of acknowledgements.
    pub own_unproven_max: usize,
    /// Most proofs waiting to be proposed.
    pub proofs_max: usize,
    /// How far ahead of the local clock a batch's expiry may be beyond the TTL.
    pub clock_skew_max_ms: u64,
}

impl Default for QuorumStoreConfig {
    fn default() -> Self {
        Self {
            batch_max_txs: 2_000,
            batch_max_bytes: 1 << 20,
            tx_bytes_max: 4_096,
            batch_ttl_ms: 30_000,
            author_batches_max: 300,
            author_bytes_max: 128 << 20,
            own_unproven_max: 32,
            proofs_max: 10_000,
            clock_skew_max_ms: 30_000,
        }
    }
}

/// Why a batch, acknowledgement or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Structurally unacceptable.
    #[error("batch refused: {0}")]
    Refused(String),
    /// The author's quota (or a queue) is full; the batch is not acknowledged.
    #[error("batch store full: {0}")]
    Full(&'static str),
    /// A signature or certificate did not verify.
    #[error(transparent)]
    Invalid(#[from] ConsensusError),
}

struct Stored {
    batch: Arc<Batch>,
    info: BatchInfo,
    /// Named by a committed block: kept until executed.
    committed: bool,
}

/// Counts of what the store holds (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuorumStoreStats {
    /// Batches held.
    pub batches: usize,
    /// Their encoded bytes.
    pub bytes: usize,
    /// Proofs waiting to be proposed.
    pub proofs: usize,
    /// Own batches waiting for acknowledgements.
    pub own_unproven: usize,
    /// Own batches made (since start).
    pub made: u64,
    /// Own batches that reached a proof of availability (since start).
    pub certified: u64,
    /// Own batches that expired unproven or uncommitted (since start).
    pub expired_own: u64,
    /// Batches taken from fetches (since start).
    pub fetched: u64,
    /// Committed blocks this validator has not executed yet.
    pub execution_backlog: u64,
}

/// What [`QuorumStore::expire`] let go.
#[derive(Debug, Default)]
pub struct Expired {
    /// This validator's own batches that expired unproven or uncommitted: their transactions
    /// may be batched again.
    pub own: Vec<Arc<Batch>>,
    /// Batches dropped from the store (a driver that persisted them deletes them).
    pub dropped: Vec<BatchInfo>,
}

const COMMITTED_REMEMBERED: usize = 100_000;
/// Committed blocks not executed yet from which execution counts as behind.
const EXECUTION_BACKLOG_BLOCKS: u64 = 2;
const WANTED_MAX: usize = 4_096;

/// One validator's quorum store.
pub struct QuorumStore {
    cfg: QuorumStoreConfig,
    chain_id: String,
    committee: Committee,
    me: ValidatorIndex,
    keypair: Keypair,
    last_seq: u64,
    stored: HashMap<Digest, Stored>,
    /// Uncommitted batches and bytes stored per author.
    usage: Vec<(usize, usize)>,
    bytes: usize,
    /// Own batches collecting acknowledgements.
    own: HashMap<Digest, (BatchInfo, BTreeMap<ValidatorIndex, Signature>, u64)>,
    /// Proofs to propose, in (seq, author) order: seqs are creation times, so this is roughly
    /// first-made first-proposed, and each author's batches stay in their order.
    proofs: BTreeMap<(u64, ValidatorIndex, Digest), ProofOfAvailability>,
    proof_keys: HashMap<Digest, (u64, ValidatorIndex, Digest)>,
    proofs_per_author: Vec<usize>,
    committed: HashSet<Digest>,
    committed_order: VecDeque<Digest>,
    /// Timestamp of the newest committed block.
    committed_ms: u64,
    /// Height of the newest block committed, and of the newest this validator executed.
    committed_height: u64,
    executed_height: u64,
    counts: QuorumStoreStats,
    wanted: HashSet<Digest>,
}

impl QuorumStore {
    /// An empty store of validator `me`.
    pub fn new(
        cfg: QuorumStoreConfig,
        chain_id: impl Into<String>,
        committee: Committee,
        me: ValidatorIndex,
        keypair: Keypair,
    ) -> Self {
        let n = committee.size();
        Self {
            cfg,
            chain_id: chain_id.into(),
            committee,
            me,
            keypair,
            last_seq: 0,
            stored: HashMap::new(),
            usage: vec![(0, 0); n],
            bytes: 0,
            own: HashMap::new(),
            proofs: BTreeMap::new(),
            proof_keys: HashMap::new(),
            proofs_per_author: vec![0; n],
            committed: HashSet::new(),
            committed_order: VecDeque::new(),
            committed_ms: 0,
            committed_height: 0,
            executed_height: 0,
            counts: QuorumStoreStats::default(),
            wanted: HashSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QuorumStoreConfig {
        &self.cfg
    }

    /// Whether this validator may make another batch now (back-pressure: few enough of its own
    /// batches wait for acknowledgements and its quota has room).
    pub fn can_batch(&self) -> bool {
        let (count, bytes) = self.usage[self.me as usize];
        self.own.len() < self.cfg.own_unproven_max
            && count < self.cfg.author_batches_max
            && bytes + self.cfg.batch_max_bytes <= self.cfg.author_bytes_max
    }

    /// Makes a batch of `txs` (already checked by this validator), stores it and acknowledges
    /// it. Returns the batch to broadcast, and its proof when this validator alone is a quorum.
    pub fn make_batch(
        &mut self,
        now_ms: u64,
        txs: Vec<SignedTransaction>,
    ) -> (Batch, Option<ProofOfAvailability>) {
        // Sequence numbers are creation times in µs (made strictly increasing), so they keep
        // increasing across restarts and order batches of different authors roughly by age.
        let seq = (self.last_seq + 1).max(now_ms.saturating_mul(1_000));
        self.last_seq = seq;
        let batch = Batch {
            chain_id: self.chain_id.clone(),
            author: self.me,
            seq,
            expires_ms: now_ms + self.cfg.batch_ttl_ms,
            txs,
        };
        let info = batch.info();
        self.counts.made += 1;
        self.store(Arc::new(batch.clone()), info, false);
        let signature = self.keypair.sign(&info.ack_message(&self.chain_id));
        self.own.insert(
            info.digest,
            (info, BTreeMap::from([(self.me, signature)]), now_ms),
        );
        let proof = self.try_certify(&info.digest);
        (batch, proof)
    }

    /// The checks of a peer's batch that come before its signatures are verified: author,
    /// chain, bounds, expiry and the author's quota.
    pub fn check_batch(
        &self,
        now_ms: u64,
        from: ValidatorIndex,
        batch: &Batch,
    ) -> Result<(), BatchError> {
        self.check_batch_with(now_ms, from, batch, &batch.info())
    }

    /// [`QuorumStore::check_batch`] given `info`, which must be `batch.info()`: a driver
    /// computes it once per batch received (encoding and hashing a batch of a megabyte is not
    /// free) and passes it along.
    pub fn check_batch_with(
        &self,
        now_ms: u64,
        from: ValidatorIndex,
        batch: &Batch,
        info: &BatchInfo,
    ) -> Result<(), BatchError> {
        let refused = |r: &str| Err(BatchError::Refused(r.into()));
        if batch.author != from || self.committee.key(from).is_none() {
            return refused("author is not the sender");
        }
        if batch.author == self.me {
            return refused("own batch sent back");
        }
        if batch.chain_id != self.chain_id {
            return refused("another chain's batch");
        }
        if batch.txs.is_empty() || batch.txs.len() > self.cfg.batch_max_txs {
            return refused("transaction count out of bounds");
        }
        if batch.txs.iter().any(|t| t.tx.chain_id != self.chain_id) {
            return refused("a transaction for another chain");
        }
        if batch
            .txs
            .iter()
            .any(|t| netchain_types::codec::encoded_len(t) > self.cfg.tx_bytes_max)
        {
            return refused("a transaction over the size limit");
        }
        if batch.expires_ms < now_ms
            || batch.expires_ms > now_ms + self.cfg.batch_ttl_ms + self.cfg.clock_skew_max_ms
        {
            return refused("expiry out of range");
        }
        // `seq` is the creation time in µs and orders proposals: an author may not date its
        // batches back to go first.
        let made_ms = batch.seq / 1_000;
        if made_ms > now_ms + self.cfg.clock_skew_max_ms
            || made_ms + self.cfg.batch_ttl_ms + self.cfg.clock_skew_max_ms < now_ms
        {
            return refused("sequence number (creation time) out of range");
        }
        let bytes = info.bytes as usize;
        if bytes > self.cfg.batch_max_bytes {
            return refused("too many bytes");
        }
        let (count, used) = self.usage[from as usize];
        if count >= self.cfg.author_batches_max || used + bytes > self.cfg.author_bytes_max {
            return Err(BatchError::Full("author quota"));
        }
        Ok(())
    }

    /// Stores a peer's batch whose every signature the caller verified, after
    /// [`QuorumStore::check_batch`], and returns the acknowledgement to send its author.
    pub fn accept_batch(
        &mut self,
        now_ms: u64,
        batch: Batch,
    ) -> Result<ConsensusMessage, BatchError> {
        let info = batch.info();
        self.accept_batch_with(now_ms, batch, info)
    }

    /// [`QuorumStore::accept_batch`] given `info`, which must be `batch.info()` (see
    /// [`QuorumStore::check_batch_with`]).
    pub fn accept_batch_with(
        &mut self,
        now_ms: u64,
        batch: Batch,
        info: BatchInfo,
    ) -> Result<ConsensusMessage, BatchError> {
        debug_assert_eq!(info, batch.info(), "info must be the batch's own");
        self.check_batch_with(now_ms, batch.author, &batch, &info)?;
        if self.committed.contains(&info.digest) {
            return Err(BatchError::Refused("already committed".into()));
        }
        self.store(Arc::new(batch), info, false);
        let signature = self.keypair.sign(&info.ack_message(&self.chain_id));
        Ok(ConsensusMessage::BatchAck {
            info,
            author: self.me,
            signature,
        })
    }

    /// Own batches still short of a quorum that were last sent at least `after_ms` ago, with the
    /// validators that have not acknowledged them: the driver sends them again (a batch or an
    /// acknowledgement may have been lost, or a busy peer dropped it unchecked).
    pub fn resend_due(
        &mut self,
        now_ms: u64,
        after_ms: u64,
    ) -> Vec<(Arc<Batch>, Vec<ValidatorIndex>)> {
        let mut out = Vec::new();
        for (digest, (_, sigs, sent)) in self.own.iter_mut() {
            if now_ms < sent.saturating_add(after_ms) {
                continue;
            }
            *sent = now_ms;
            let Some(stored) = self.stored.get(digest) else {
                continue;
            };
            let missing = (0..self.committee.size() as ValidatorIndex)
                .filter(|v| !sigs.contains_key(v))
                .collect();
            out.push((stored.batch.clone(), missing));
        }
        out.sort_by_key(|(b, _)| b.seq);
        out
    }

    /// A peer's batch this validator already stores (sent again): acknowledged again without
    /// another signature check. `None` when it is not stored.
    pub fn ack_again(&self, batch: &Batch) -> Option<ConsensusMessage> {
        self.ack_again_digest(&batch.digest(), batch.author)
    }

    /// [`QuorumStore::ack_again`] by digest (computed once by the caller).
    pub fn ack_again_digest(
        &self,
        digest: &Digest,
        batch_author: ValidatorIndex,
    ) -> Option<ConsensusMessage> {
        let info = self.stored.get(digest)?.info;
        (info.author == batch_author && info.author != self.me).then(|| {
            ConsensusMessage::BatchAck {
                info,
                author: self.me,
                signature: self.keypair.sign(&info.ack_message(&self.chain_id)),
            }
        })
    }

    /// An acknowledgement of one of this validator's batches; the proof once a quorum signed.
    pub fn on_ack(
        &mut self,
        info: BatchInfo,
        signer: ValidatorIndex,
        signature: Signature,
    ) -> Result<Option<ProofOfAvailability>, BatchError> {
        let Some((own_info, _, _)) = self.own.get(&info.digest) else {
            return Ok(None); // already certified, expired, or not ours
        };
        if *own_info != info {
            return Err(BatchError::Refused(
                "acknowledgement of a different summary".into(),
            ));
        }
        let key = self
            .committee
            .key(signer)
            .ok_or(ConsensusError::UnknownValidator(signer))?;
        verify(key, &info.ack_message(&self.chain_id), &signature).map_err(|_| {
            ConsensusError::BadSignature {
                what: "batch acknowledgement",
                author: signer,
            }
        })?;
        if let Some((_, sigs, _)) = self.own.get_mut(&info.digest) {
            sigs.insert(signer, signature);
        }
        Ok(self.try_certify(&info.digest))
    }

    fn try_certify(&mut self, digest: &Digest) -> Option<ProofOfAvailability> {
        let (_, sigs, _) = self.own.get(digest)?;
        if sigs.len() < self.committee.quorum() {
            return None;
        }
        let (info, sigs, _) = self.own.remove(digest)?;
        self.counts.certified += 1;
        let proof = ProofOfAvailability {
            info,
            signers: sigs.into_iter().collect(),
        };
        self.queue_proof(proof.clone());
        Some(proof)
    }

    /// A peer's proof: verified and queued for proposals. `Ok(false)` when already known,
    /// committed or expired.
    pub fn on_proof(
        &mut self,
        now_ms: u64,
        proof: ProofOfAvailability,
    ) -> Result<bool, BatchError> {
        let digest = proof.info.digest;
        if self.proof_keys.contains_key(&digest)
            || self.committed.contains(&digest)
            || proof.info.expires_ms < now_ms
        {
            return Ok(false);
        }
        if self.committee.key(proof.info.author).is_none() {
            return Err(BatchError::Refused("author not in committee".into()));
        }
        if self.proofs.len() >= self.cfg.proofs_max {
            return Err(BatchError::Full("proof queue"));
        }
        if self.proofs_per_author[proof.info.author as usize] >= self.cfg.author_batches_max {
            return Err(BatchError::Full("author's proofs"));
        }
        verify_proofs(
            &self.chain_id,
            &self.committee,
            std::slice::from_ref(&proof),
        )?;
        self.queue_proof(proof);
        Ok(true)
    }

    fn queue_proof(&mut self, proof: ProofOfAvailability) {
        let key = (proof.info.seq, proof.info.author, proof.info.digest);
        if self.proof_keys.insert(proof.info.digest, key).is_none() {
            self.proofs_per_author[proof.info.author as usize] += 1;
            self.proofs.insert(key, proof);
        }
    }

    fn unqueue_proof(&mut self, digest: &Digest) {
        if let Some(key) = self.proof_keys.remove(digest) {
            self.proofs.remove(&key);
            self.proofs_per_author[key.1 as usize] -= 1;
        }
    }

    fn store(&mut self, batch: Arc<Batch>, info: BatchInfo, committed: bool) {
        if self.stored.contains_key(&info.digest) {
            return;
        }
        if !committed {
            let usage = &mut self.usage[info.author as usize];
            usage.0 += 1;
            usage.1 += info.bytes as usize;
        }
        self.bytes += info.bytes as usize;
        self.stored.insert(
            info.digest,
            Stored {
                batch,
                info,
                committed,
            },
        );
    }

    fn unstore(&mut self, digest: &Digest) -> Option<Stored> {
        let stored = self.stored.remove(digest)?;
        self.bytes -= stored.info.bytes as usize;
        if !stored.committed {
            let usage = &mut self.usage[stored.info.author as usize];
            usage.0 -= 1;
            usage.1 -= stored.info.bytes as usize;
        }
        Some(stored)
    }

    /// Whether a block committed this batch (as far as this store remembers: the newest
    /// 100,000).
    pub fn is_committed(&self, digest: &Digest) -> bool {
        self.committed.contains(digest)
    }

    /// A stored batch.
    pub fn batch(&self, digest: &Digest) -> Option<Arc<Batch>> {
        self.stored.get(digest).map(|s| s.batch.clone())
    }

    /// Notes that execution needs `digest`, which is not stored: a fetched copy will be accepted.
    pub fn want(&mut self, digest: Digest) {
        if self.wanted.len() < WANTED_MAX {
            self.wanted.insert(digest);
        }
    }

    /// A batch fetched from a peer: stored if it was wanted and its digest matches. The proof in
    /// the committed block vouches for its content, so no signature is checked.
    pub fn on_fetched(&mut self, batch: Batch) -> bool {
        let info = batch.info();
        if !self.wanted.remove(&info.digest) {
            return false;
        }
        self.counts.fetched += 1;
        self.store(Arc::new(batch), info, true);
        true
    }

    /// Batches executed (and persisted by the driver): forgotten here.
    pub fn on_executed(&mut self, digests: &[Digest]) {
        for d in digests {
            self.unstore(d);
            self.wanted.remove(d);
        }
    }

    /// The driver executed every committed block through `height`.
    pub fn executed_through(&mut self, height: u64) {
        self.executed_height = self.executed_height.max(height);
        self.committed_height = self.committed_height.max(height);
    }

    /// After a restart: the timestamp of the executed tip, and the batches this validator
    /// acknowledged and persisted before. Those that expired before the tip, of another chain or
    /// of a stranger are not taken back and are returned (for deletion).
    pub fn restore(&mut self, tip_ms: u64, batches: Vec<Batch>) -> Vec<BatchInfo> {
        self.committed_ms = self.committed_ms.max(tip_ms);
        let mut refused = Vec::new();
        for batch in batches {
            let info = batch.info();
            if batch.chain_id != self.chain_id
                || self.committee.key(batch.author).is_none()
                || info.expires_ms < self.committed_ms
            {
                refused.push(info);
                continue;
            }
            self.last_seq = self.last_seq.max(if batch.author == self.me {
                batch.seq
            } else {
                0
            });
            self.store(Arc::new(batch), info, false);
        }
        refused
    }

    /// Drops what expired: proofs that no block may carry any more (by the local clock), and
    /// uncommitted batches that no block can carry any more (by the newest committed block's
    /// time).
    pub fn expire(&mut self, now_ms: u64) -> Expired {
        let expired_proofs: Vec<Digest> = self
            .proofs
            .values()
            .filter(|p| p.info.expires_ms < now_ms)
            .map(|p| p.info.digest)
            .collect();
        let mut returned = Expired::default();
        for d in &expired_proofs {
            if let Some(key) = self.proof_keys.get(d) {
                if key.1 == self.me {
                    returned.own.extend(self.batch(d));
                }
            }
            self.unqueue_proof(d);
        }
        let own_expired: Vec<Digest> = self
            .own
            .values()
            .filter(|(info, _, _)| info.expires_ms < now_ms)
            .map(|(info, _, _)| info.digest)
            .collect();
        for d in own_expired {
            self.own.remove(&d);
            returned.own.extend(self.batch(&d));
        }
        self.counts.expired_own += returned.own.len() as u64;
        let committed_ms = self.committed_ms;
        let dropped: Vec<Digest> = self
            .stored
            .values()
            .filter(|s| !s.committed && s.info.expires_ms < committed_ms)
            .map(|s| s.info.digest)
            .collect();
        for d in dropped {
            if let Some(s) = self.unstore(&d) {
                returned.dropped.push(s.info);
            }
        }
        returned
    }

    /// What the store holds.
    pub fn stats(&self) -> QuorumStoreStats {
        QuorumStoreStats {
            batches: self.stored.len(),
            bytes: self.bytes,
            proofs: self.proofs.len(),
            own_unproven: self.own.len(),
            execution_backlog: self.committed_height.saturating_sub(self.executed_height),
            ..self.counts
        }
    }
}

impl PayloadSource for QuorumStore {
    fn has_pending(&self) -> bool {
        !self.proofs.is_empty()
    }

    fn pull(
        &mut self,
        _round: u64,
        _max_txs: usize,
        _max_bytes: usize,
        _ancestors: &[&Block],
    ) -> Vec<SignedTransaction> {
        Vec::new()
    }

    fn pull_proofs(
        &mut self,
        _round: u64,
        max_batches: usize,
        ancestors: &[&Block],
        timestamp_ms: u64,
    ) -> Vec<ProofOfAvailability> {
        let in_chain: HashSet<Digest> = ancestors
            .iter()
            .flat_map(|b| b.batches.iter().map(|p| p.info.digest))
            .collect();
        self.proofs
            .values()
            .filter(|p| p.info.expires_ms >= timestamp_ms && !in_chain.contains(&p.info.digest))
            .take(max_batches)
            .cloned()
            .collect()
    }

    fn committed_batch(&self, digest: &Digest) -> bool {
        self.committed.contains(digest)
    }

    fn verified_proof(&self, proof: &ProofOfAvailability) -> bool {
        self.proof_keys
            .get(&proof.info.digest)
            .and_then(|key| self.proofs.get(key))
            .is_some_and(|held| held == proof)
    }

    fn execution_backlogged(&self) -> bool {
        self.committed_height.saturating_sub(self.executed_height) >= EXECUTION_BACKLOG_BLOCKS
    }

    fn on_commit(&mut self, blocks: &[Block]) {
        if let Some(last) = blocks.last() {
            self.committed_ms = self.committed_ms.max(last.timestamp_ms);
            self.committed_height = self.committed_height.max(last.height);
        }
        for proof in blocks.iter().flat_map(|b| &b.batches) {
            let d = proof.info.digest;
            self.unqueue_proof(&d);
            self.own.remove(&d);
            if self.committed.insert(d) {
                self.committed_order.push_back(d);
                if self.committed_order.len() > COMMITTED_REMEMBERED {
                    if let Some(old) = self.committed_order.pop_front() {
                        self.committed.remove(&old);
                    }
                }
            }
            if let Some(s) = self.stored.get_mut(&d) {
                if !s.committed {
                    s.committed = true;
                    let usage = &mut self.usage[s.info.author as usize];
                    usage.0 -= 1;
                    usage.1 -= s.info.bytes as usize;
                }
            }
        }
    }
}
