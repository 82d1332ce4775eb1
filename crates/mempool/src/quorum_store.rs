//! The quorum store: batched dissemination with proofs of availability, without I/O.
//!
//! Design note (after Narwhal's workers and Aptos' Quorum Store): each validator puts the client
//! transactions it admitted into batches and broadcasts them. A peer checks a batch (author,
//! chain, bounds, expiry, its quota for that author); if the author asked it to check the batch,
//! the driver verifies every signature in it off the consensus thread; the peer then stores the
//! batch and sends the author a signed acknowledgement, checked or stored (see
//! `netchain_types::batch`). `n - f` acknowledgements, at least `f + 1` of them checked (the
//! author's own counts), form a [`ProofOfAvailability`], which the author broadcasts; leaders
//! propose proofs, not transactions, so a block is a few kilobytes whatever the load. Execution
//! takes each committed batch from this store or fetches it from a signer.
//!
//! Checkers: the author asks `f` peers to check each batch, in turn (a turn per second),
//! passing over a peer that left a check it was asked for unanswered
//! ([`QuorumStore::checkers`]); a batch still short of checked acknowledgements when it is sent
//! again asks every peer it sends it to. An author's proofs go out in the order its batches were
//! made (a proof waits for the older ones'), so a sender's transactions that two batches carry
//! are proposed, and execute, in nonce order.
//!
//! Bounds: every author has a quota of stored batches and bytes at each peer (a full quota means
//! no acknowledgement, so a flooding author cannot form proofs); an author keeps at most
//! `own_unproven_max` batches without a released proof (back-pressure into its mempool and
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
    /// Most own batches waiting for their proof, or proven and held back for an older one's.
    pub own_unproven_max: usize,
    /// Most proofs waiting to be proposed.
    pub proofs_max: usize,
    /// How far ahead of the local clock a batch's expiry may be beyond the TTL.
    pub clock_skew_max_ms: u64,
    /// Whether transactions carry signatures to check and nonces to keep in order. Off on an
    /// ordering-only chain: a check is free there, so every peer is asked to "check" (a proof
    /// forms from the fastest `n - f`), and proofs go out as they form, not held in batch order.
    pub checked_and_ordered: bool,
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
            checked_and_ordered: true,
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
    /// This validator verified every signature in it (its own batches, and peers' batches it
    /// checked). Not kept across a restart: a batch restored from disk counts as unchecked.
    checked: bool,
}

/// One of this validator's batches collecting acknowledgements.
struct Own {
    info: BatchInfo,
    /// Signers, their signatures, and whether each is a checked acknowledgement.
    acks: BTreeMap<ValidatorIndex, (Signature, bool)>,
    /// When the batch was last sent.
    sent_ms: u64,
    /// The peers asked to check it, and when.
    checkers: Vec<ValidatorIndex>,
    asked_ms: u64,
}

impl Own {
    fn checked(&self) -> usize {
        self.acks.values().filter(|(_, checked)| *checked).count()
    }
}

/// A peer asked to check a batch that has not answered with a checked acknowledgement after
/// this long is passed over as a checker until it answers one; it is asked to check a batch
/// besides the regular checkers (a probe, which no proof waits for) every [`PROBE_MS`].
const CHECK_LATE_MS: u64 = 500;
const PROBE_MS: u64 = 5_000;
/// A proof held back for an older own batch's is released anyway after this long (checked when
/// [`QuorumStore::expire`] runs): a batch that cannot be proven holds up its author's others
/// for seconds, not until it expires.
const HOLD_MAX_MS: u64 = 2_000;
/// How long the same peers are asked to check an author's batches.
const CHECKER_WINDOW_MS: u64 = 1_000;

/// Counts of what the store holds (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuorumStoreStats {
    /// Batches held.
    pub batches: usize,
    /// Their encoded bytes.
    pub bytes: usize,
    /// Proofs waiting to be proposed.
    pub proofs: usize,
    /// Own batches waiting for their proof, or proven and held back for an older one's.
    pub own_unproven: usize,
    /// Own batches made (since start).
    pub made: u64,
    /// Own batches that reached a proof of availability (since start).
    pub certified: u64,
    /// Own batches that expired unproven or uncommitted (since start).
    pub expired_own: u64,
    /// Batches taken from fetches (since start).
    pub fetched: u64,
    /// Checked acknowledgements this validator signed for peers' batches (since start).
    pub acked_checked: u64,
    /// Stored (unchecked) acknowledgements this validator signed for peers' batches (since
    /// start).
    pub acked_stored: u64,
    /// Committed blocks this validator has not executed yet.
    pub execution_backlog: u64,
}

/// One of [`QuorumStore::resend_due`]'s batches to send again.
#[derive(Debug)]
pub struct Resend {
    /// The batch.
    pub batch: Arc<Batch>,
    /// To whom.
    pub to: Vec<ValidatorIndex>,
    /// Whom to ask to check it.
    pub checkers: Vec<ValidatorIndex>,
}

/// What [`QuorumStore::expire`] let go.
#[derive(Debug, Default)]
pub struct Expired {
    /// This validator's own batches that expired unproven or uncommitted: their transactions
    /// may be batched again.
    pub own: Vec<Arc<Batch>>,
    /// Batches dropped from the store (a driver that persisted them deletes them).
    pub dropped: Vec<BatchInfo>,
    /// Own proofs no longer held back now that the older batches expired (to broadcast).
    pub released: Vec<ProofOfAvailability>,
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
    own: HashMap<Digest, Own>,
    /// Own batches' proofs held back, by sequence number, until every older own batch has its
    /// proof or expired: proofs go out in the order the batches were made, so a sender's
    /// transactions in two of them are ordered (and execute) in nonce order.
    held: BTreeMap<u64, (ProofOfAvailability, u64)>,
    /// Validators passed over as checkers (each left a check unanswered, and has not answered
    /// one since), and when each was last probed.
    suspect: Vec<bool>,
    probed_ms: Vec<u64>,
    /// When each validator last sent a checked acknowledgement (local time of the last
    /// [`QuorumStore::checkers`] call before it).
    last_checked_ms: Vec<u64>,
    /// The time of the last [`QuorumStore::checkers`] call.
    clock_ms: u64,
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
            held: BTreeMap::new(),
            suspect: vec![false; n],
            probed_ms: vec![0; n],
            last_checked_ms: vec![0; n],
            clock_ms: 0,
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
        self.own.len() + self.held.len() < self.cfg.own_unproven_max
            && count < self.cfg.author_batches_max
            && bytes + self.cfg.batch_max_bytes <= self.cfg.author_bytes_max
    }

    /// Makes a batch of `txs` (already checked by this validator), stores it and acknowledges
    /// it. Returns the batch to broadcast, the peers to ask to check it (see
    /// [`QuorumStore::checkers`]), and its proof when this validator alone is a quorum (see
    /// [`QuorumStore::on_ack`]).
    pub fn make_batch(
        &mut self,
        now_ms: u64,
        txs: Vec<SignedTransaction>,
    ) -> (Batch, Vec<ValidatorIndex>, Vec<ProofOfAvailability>) {
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
        self.store(Arc::new(batch.clone()), info, false, true);
        let signature = self.keypair.sign(&info.ack_message(&self.chain_id));
        let checkers = self.checkers(now_ms);
        self.own.insert(
            info.digest,
            Own {
                info,
                acks: BTreeMap::from([(self.me, (signature, true))]),
                sent_ms: now_ms,
                checkers: checkers.clone(),
                asked_ms: now_ms,
            },
        );
        let proofs = self.try_certify(&info.digest);
        (batch, checkers, proofs)
    }

    /// The `f` peers to ask to check a new batch: in turn, a turn per `CHECKER_WINDOW_MS`, so
    /// the checks spread evenly, passing over a peer that has left a check it was asked for
    /// unanswered for `CHECK_LATE_MS` until it answers one (unless too few others remain); such
    /// a peer is added as an extra checker every `PROBE_MS`, which no proof waits for.
    pub fn checkers(&mut self, now_ms: u64) -> Vec<ValidatorIndex> {
        self.clock_ms = self.clock_ms.max(now_ms);
        if !self.cfg.checked_and_ordered {
            return (0..self.committee.size() as ValidatorIndex)
                .filter(|v| *v != self.me)
                .collect();
        }
        let need = self.committee.max_faulty();
        if need == 0 {
            return Vec::new();
        }
        for own in self.own.values() {
            if now_ms < own.asked_ms.saturating_add(CHECK_LATE_MS) {
                continue;
            }
            for v in &own.checkers {
                // Late, and no checked acknowledgement of anything from it since.
                if !own.acks.get(v).is_some_and(|(_, checked)| *checked)
                    && self.last_checked_ms[*v as usize] < own.asked_ms
                {
                    let v = *v as usize;
                    if !self.suspect[v] {
                        self.suspect[v] = true;
                        self.probed_ms[v] = now_ms;
                    }
                }
            }
        }
        let peers: Vec<ValidatorIndex> = (0..self.committee.size() as ValidatorIndex)
            .filter(|v| *v != self.me)
            .collect();
        let trusted: Vec<ValidatorIndex> = peers
            .iter()
            .copied()
            .filter(|v| !self.suspect[*v as usize])
            .collect();
        let probing = trusted.len() >= need;
        let pool = if probing { trusted } else { peers.clone() };
        // One turn per window: consecutive batches go to the same checkers, which check them in
        // order, so their proofs form in order too. Offset by this validator's index, so in
        // each window the authors' checks fall on different peers.
        let turn = (now_ms / CHECKER_WINDOW_MS) as usize + self.me as usize * need;
        let start = turn % pool.len().max(1);
        let mut chosen: Vec<ValidatorIndex> = (0..need.min(pool.len()))
            .map(|i| pool[(start + i) % pool.len()])
            .collect();
        // Suspects are probed now and then, on top of the regular checkers: one that answers
        // takes its turns again.
        if probing {
            for v in peers {
                let at = &mut self.probed_ms[v as usize];
                if self.suspect[v as usize] && now_ms >= at.saturating_add(PROBE_MS) {
                    *at = now_ms;
                    chosen.push(v);
                }
            }
        }
        chosen.sort_unstable();
        chosen
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

    /// Stores a peer's batch after [`QuorumStore::check_batch`], and returns the
    /// acknowledgement to send its author: a checked one when `checked` (the caller verified
    /// every signature in it), else a stored one. A batch stored unchecked before is marked
    /// checked when it now is.
    pub fn accept_batch(
        &mut self,
        now_ms: u64,
        batch: Batch,
        checked: bool,
    ) -> Result<ConsensusMessage, BatchError> {
        let info = batch.info();
        self.accept_batch_with(now_ms, batch, info, checked)
    }

    /// [`QuorumStore::accept_batch`] given `info`, which must be `batch.info()` (see
    /// [`QuorumStore::check_batch_with`]).
    pub fn accept_batch_with(
        &mut self,
        now_ms: u64,
        batch: Batch,
        info: BatchInfo,
        checked: bool,
    ) -> Result<ConsensusMessage, BatchError> {
        debug_assert_eq!(info, batch.info(), "info must be the batch's own");
        if self.committed.contains(&info.digest) {
            return Err(BatchError::Refused("already committed".into()));
        }
        let author = batch.author;
        match self.stored.get_mut(&info.digest) {
            // Stored before (unchecked, or checked meanwhile): its quota is taken already.
            Some(s) if s.info.author == author && author != self.me => {
                s.checked |= checked;
            }
            Some(_) => return Err(BatchError::Refused("author is not the sender".into())),
            None => {
                self.check_batch_with(now_ms, author, &batch, &info)?;
                self.store(Arc::new(batch), info, false, checked);
            }
        }
        self.ack_again_digest(&info.digest, author, false)
            .ok_or_else(|| BatchError::Refused("not stored".into()))
    }

    /// Own batches still short of a proof that were last sent at least `after_ms` ago: the
    /// driver sends each again to the validators listed, asking those in the second list to
    /// check it (a batch or an acknowledgement may have been lost, a busy peer dropped it, or a
    /// checker did not answer). The validators listed are those that have not acknowledged it,
    /// and, while it is short of checked acknowledgements, as many peers as checks are missing
    /// are asked to check it: first those whose acknowledgement is a stored one (they are up),
    /// then those not passed over as checkers, then the others.
    pub fn resend_due(&mut self, now_ms: u64, after_ms: u64) -> Vec<Resend> {
        let need_checked = self.committee.max_faulty() + 1;
        let n = self.committee.size() as ValidatorIndex;
        let mut out = Vec::new();
        for (digest, own) in self.own.iter_mut() {
            if now_ms < own.sent_ms.saturating_add(after_ms) {
                continue;
            }
            own.sent_ms = now_ms;
            let Some(stored) = self.stored.get(digest) else {
                continue;
            };
            let short = own.checked() < need_checked;
            let to: Vec<ValidatorIndex> = (0..n)
                .filter(|v| match own.acks.get(v) {
                    None => true,
                    Some((_, checked)) => short && !checked,
                })
                .collect();
            // As many new checkers as checks are missing: first those that acknowledged it as
            // stored (they are up), then the others not passed over, then the rest.
            let checkers = if short {
                let mut candidates: Vec<ValidatorIndex> =
                    to.iter().copied().filter(|v| *v != self.me).collect();
                candidates
                    .sort_by_key(|v| (!own.acks.contains_key(v), self.suspect[*v as usize], *v));
                candidates.truncate(need_checked - own.checked());
                candidates.sort_unstable();
                candidates
            } else {
                Vec::new()
            };
            if short {
                own.checkers = checkers.clone();
                own.asked_ms = now_ms;
            }
            // Stored signers not asked to check have nothing to add.
            let to = to
                .into_iter()
                .filter(|v| !own.acks.contains_key(v) || checkers.contains(v))
                .collect();
            out.push(Resend {
                batch: stored.batch.clone(),
                to,
                checkers,
            });
        }
        out.sort_by_key(|r| r.batch.seq);
        out
    }

    /// A peer's batch this validator already stores (sent again): acknowledged again without
    /// another signature check, checked if this validator checked it, else stored. `None` when
    /// it is not stored, or when `want_checked` and it was stored unchecked (the caller then
    /// checks it and passes it to [`QuorumStore::accept_batch`]).
    pub fn ack_again(&mut self, batch: &Batch, want_checked: bool) -> Option<ConsensusMessage> {
        self.ack_again_digest(&batch.digest(), batch.author, want_checked)
    }

    /// [`QuorumStore::ack_again`] by digest (computed once by the caller).
    pub fn ack_again_digest(
        &mut self,
        digest: &Digest,
        batch_author: ValidatorIndex,
        want_checked: bool,
    ) -> Option<ConsensusMessage> {
        let stored = self.stored.get(digest)?;
        let (info, checked) = (stored.info, stored.checked);
        if info.author != batch_author || info.author == self.me || (want_checked && !checked) {
            return None;
        }
        if checked {
            self.counts.acked_checked += 1;
        } else {
            self.counts.acked_stored += 1;
        }
        Some(ConsensusMessage::BatchAck {
            info,
            author: self.me,
            checked,
            signature: self
                .keypair
                .sign(&info.acknowledgement_message(&self.chain_id, checked)),
        })
    }

    /// Whether a batch is stored here, and whether this validator checked it.
    pub fn stored_checked(&self, digest: &Digest) -> Option<bool> {
        self.stored.get(digest).map(|s| s.checked)
    }

    /// An acknowledgement of one of this validator's batches. A batch has its proof once a
    /// quorum signed, `f + 1` of them checked; proofs are released (returned, to broadcast, and
    /// queued for proposals) in the order the batches were made: a proof waits for the older
    /// batches' proofs (or their expiry). A checked acknowledgement replaces a stored one of the
    /// same signer, never the reverse.
    pub fn on_ack(
        &mut self,
        info: BatchInfo,
        signer: ValidatorIndex,
        checked: bool,
        signature: Signature,
    ) -> Result<Vec<ProofOfAvailability>, BatchError> {
        let Some(own) = self.own.get(&info.digest) else {
            return Ok(Vec::new()); // already certified, expired, or not ours
        };
        if own.info != info {
            return Err(BatchError::Refused(
                "acknowledgement of a different summary".into(),
            ));
        }
        let key = self
            .committee
            .key(signer)
            .ok_or(ConsensusError::UnknownValidator(signer))?;
        if own
            .acks
            .get(&signer)
            .is_some_and(|(_, had)| *had && !checked)
        {
            return Ok(Vec::new()); // a stored acknowledgement after a checked one adds nothing
        }
        verify(
            key,
            &info.acknowledgement_message(&self.chain_id, checked),
            &signature,
        )
        .map_err(|_| ConsensusError::BadSignature {
            what: "batch acknowledgement",
            author: signer,
        })?;
        if checked {
            self.suspect[signer as usize] = false;
            self.last_checked_ms[signer as usize] = self.clock_ms;
        }
        if let Some(own) = self.own.get_mut(&info.digest) {
            own.acks.insert(signer, (signature, checked));
        }
        Ok(self.try_certify(&info.digest))
    }

    fn try_certify(&mut self, digest: &Digest) -> Vec<ProofOfAvailability> {
        let Some(own) = self.own.get(digest) else {
            return Vec::new();
        };
        if own.acks.len() < self.committee.quorum()
            || own.checked() < self.committee.max_faulty() + 1
        {
            return Vec::new();
        }
        let Some(own) = self.own.remove(digest) else {
            return Vec::new();
        };
        self.counts.certified += 1;
        let proof = ProofOfAvailability::from_acknowledgements(
            own.info,
            own.acks
                .into_iter()
                .map(|(v, (sig, checked))| (v, sig, checked)),
        );
        self.held.insert(proof.info.seq, (proof, self.clock_ms));
        self.release()
    }

    /// Held proofs older than every own batch still short of a proof: queued and returned.
    fn release(&mut self) -> Vec<ProofOfAvailability> {
        let oldest_unproven = if self.cfg.checked_and_ordered {
            self.own
                .values()
                .map(|own| own.info.seq)
                .min()
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        self.release_below(oldest_unproven)
    }

    /// Held proofs of batches older than `seq`: queued and returned, oldest first.
    fn release_below(&mut self, seq: u64) -> Vec<ProofOfAvailability> {
        let waiting = self.held.split_off(&seq);
        let released: Vec<ProofOfAvailability> = std::mem::replace(&mut self.held, waiting)
            .into_values()
            .map(|(proof, _)| proof)
            .collect();
        for proof in &released {
            self.queue_proof(proof.clone());
        }
        released
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

    fn store(&mut self, batch: Arc<Batch>, info: BatchInfo, committed: bool, checked: bool) {
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
                checked,
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
        self.store(Arc::new(batch), info, true, false);
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
    /// of a stranger are not taken back and are returned (for deletion). Its own batches collect
    /// acknowledgements again, from the next [`QuorumStore::resend_due`].
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
            // A peer's batch counts as unchecked (whether this validator checked it is not
            // kept); its own were checked at admission.
            let own = batch.author == self.me;
            self.store(Arc::new(batch), info, false, own);
            if own && !self.own.contains_key(&info.digest) {
                // Its own batches collect acknowledgements again (the ones before the restart
                // are gone): sent to every peer at the next `resend_due`, as a batch short of
                // its quorum is, asking as many to check it as checks are missing.
                let signature = self.keypair.sign(&info.ack_message(&self.chain_id));
                self.own.insert(
                    info.digest,
                    Own {
                        info,
                        acks: BTreeMap::from([(self.me, (signature, true))]),
                        sent_ms: 0,
                        checkers: Vec::new(),
                        asked_ms: 0,
                    },
                );
            }
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
            .filter(|own| own.info.expires_ms < now_ms)
            .map(|own| own.info.digest)
            .collect();
        for d in own_expired {
            self.own.remove(&d);
            returned.own.extend(self.batch(&d));
        }
        // Held proofs of expired batches go with them; the rest may go out now.
        let held_expired: Vec<u64> = self
            .held
            .values()
            .filter(|(p, _)| p.info.expires_ms < now_ms)
            .map(|(p, _)| p.info.seq)
            .collect();
        for seq in held_expired {
            if let Some((p, _)) = self.held.remove(&seq) {
                returned.own.extend(self.batch(&p.info.digest));
            }
        }
        returned.released = self.release();
        // Held too long (an older batch is not getting its proof): out of order, but out.
        let overdue = self
            .held
            .values()
            .filter(|(_, since)| since.saturating_add(HOLD_MAX_MS) <= now_ms)
            .map(|(p, _)| p.info.seq)
            .max();
        if let Some(seq) = overdue {
            let more = self.release_below(seq.saturating_add(1));
            returned.released.extend(more);
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
            own_unproven: self.own.len() + self.held.len(),
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
