//! The quorum store: batches, acknowledgements, proofs of availability, bounds and expiry, and
//! the core's checks of the proofs a block carries.

// The consensus crate's test fixtures (committee keys, hand-built blocks and proposals).
#[path = "../../consensus/tests/common/mod.rs"]
mod common;

use common::*;
use netchain_consensus::{verify_proofs, ConsensusError, PayloadSource};
use netchain_crypto::{sign_transaction, Keypair};
use netchain_mempool::{BatchError, QuorumStore, QuorumStoreConfig};
use netchain_types::{
    Batch, Block, ConsensusMessage, Payload, ProofOfAvailability, PublicKey, SignedTransaction,
    Transaction,
};

const NOW: u64 = 1_000_000;

fn signed_tx(sender: u8, nonce: u64) -> SignedTransaction {
    let key = Keypair::from_secret([sender; 32]);
    sign_transaction(
        &key,
        Transaction {
            chain_id: CHAIN.into(),
            sender: key.public(),
            nonce,
            payload: Payload::Transfer {
                to: PublicKey([0xee; 32]),
                amount: 1,
                memo: Vec::new(),
            },
        },
    )
}

fn stores(f: &Fixture, cfg: &QuorumStoreConfig) -> Vec<QuorumStore> {
    (0..f.keys.len())
        .map(|i| {
            QuorumStore::new(
                cfg.clone(),
                CHAIN,
                f.committee.clone(),
                i as u16,
                f.keys[i].clone(),
            )
        })
        .collect()
}

/// Validator `author` makes a batch; `ackers` store it and acknowledge; the proof, if formed.
fn disseminate(
    qs: &mut [QuorumStore],
    author: usize,
    txs: Vec<SignedTransaction>,
    ackers: &[usize],
    now: u64,
) -> (Batch, Option<ProofOfAvailability>) {
    let (batch, _, made) = qs[author].make_batch(now, txs);
    let digest = batch.digest();
    let mut proof = made.into_iter().find(|p| p.info.digest == digest);
    for &i in ackers {
        qs[i]
            .check_batch(now, author as u16, &batch)
            .expect("batch passes the checks");
        for p in ack_to_author(qs, i, &batch, true, now).1 {
            if p.info.digest == digest {
                assert!(proof.is_none(), "a second proof for one batch");
                proof = Some(p);
            }
        }
    }
    (batch, proof)
}

#[test]
fn a_quorum_of_acknowledgements_makes_a_proof_that_verifies_and_is_proposed_once() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let txs = vec![signed_tx(1, 0), signed_tx(2, 0)];
    // Own acknowledgement plus one peer: 2 of 4, below the quorum of 3.
    let (batch, proof) = disseminate(&mut qs, 0, txs.clone(), &[1], NOW);
    assert!(proof.is_none());
    // A third signer completes it.
    let (_, proof) = {
        let ack = qs[2].accept_batch(NOW, batch.clone(), true).unwrap();
        let ConsensusMessage::BatchAck {
            info,
            author,
            checked,
            signature,
        } = ack
        else {
            panic!()
        };
        (
            batch.clone(),
            qs[0]
                .on_ack(info, author, checked, signature)
                .unwrap()
                .pop(),
        )
    };
    let proof = proof.expect("quorum reached");
    assert_eq!(proof.info, batch.info());
    assert_eq!(proof.info.tx_count, 2);
    assert_eq!(
        proof.signers.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&proof)).unwrap();
    // The stores that acknowledged hold the batch; the one that did not does not.
    assert_eq!(qs[1].batch(&proof.info.digest).unwrap().txs, txs);
    assert!(qs[3].batch(&proof.info.digest).is_none());

    // Every validator queues the proof; a leader proposes it unless an ancestor carries it.
    assert!(qs[3].on_proof(NOW, proof.clone()).unwrap());
    assert!(!qs[3].on_proof(NOW, proof.clone()).unwrap(), "known twice");
    assert!(qs[3].has_pending());
    assert_eq!(qs[3].pull_proofs(1, 10, &[], NOW), vec![proof.clone()]);
    let mut carrier = f.child(1, &f.genesis, &f.genesis_qc);
    carrier.batches = vec![proof.clone()];
    assert!(qs[3].pull_proofs(2, 10, &[&carrier], NOW).is_empty());
    // Committed: gone from the queue, and not queued again if it comes back.
    qs[3].on_commit(std::slice::from_ref(&carrier));
    assert!(!qs[3].has_pending());
    assert!(!qs[3].on_proof(NOW, proof).unwrap());
}

#[test]
fn forged_or_altered_acknowledgements_and_proofs_are_refused() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (batch, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let info = batch.info();
    // Signed by validator 2's key but claiming validator 1.
    let forged = f.keys[2].sign(&info.ack_message(CHAIN));
    assert!(matches!(
        qs[0].on_ack(info, 1, true, forged),
        Err(BatchError::Invalid(ConsensusError::BadSignature { .. }))
    ));
    // A different summary of the same digest (another tx count).
    let mut altered = info;
    altered.tx_count += 1;
    let sig = f.keys[1].sign(&altered.ack_message(CHAIN));
    assert!(matches!(
        qs[0].on_ack(altered, 1, true, sig),
        Err(BatchError::Refused(_))
    ));
    // An acknowledgement signed for another chain.
    let sig = f.keys[1].sign(&info.ack_message("other-chain"));
    assert!(qs[0].on_ack(info, 1, true, sig).is_err());
    // Still no proof after all that.
    assert_eq!(qs[0].stats().own_unproven, 1);

    // Proofs: too few signers, a repeated signer, a stranger's signature, a wrong signature.
    let (_, proof) = disseminate(&mut qs, 1, vec![signed_tx(3, 0)], &[0, 2], NOW);
    let proof = proof.unwrap();
    let mut too_few = proof.clone();
    too_few.signers.pop();
    let mut repeated = proof.clone();
    repeated.signers[2] = repeated.signers[1];
    let mut stranger = proof.clone();
    stranger.signers[2].0 = 9;
    let mut wrong = proof.clone();
    wrong.info.seq += 1;
    for bad in [too_few, repeated, stranger, wrong] {
        assert!(
            verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&bad)).is_err(),
            "{bad:?}"
        );
        assert!(qs[3].on_proof(NOW, bad).is_err());
    }
    assert!(!qs[3].has_pending());
}

#[test]
fn peers_check_author_chain_bounds_and_expiry_before_acknowledging() {
    let f = Fixture::new();
    let cfg = QuorumStoreConfig {
        batch_max_txs: 2,
        ..QuorumStoreConfig::default()
    };
    let mut qs = stores(&f, &cfg);
    let (batch, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    // Relayed by someone other than its author.
    assert!(qs[1].check_batch(NOW, 2, &batch).is_err());
    // Another chain's.
    let mut other = batch.clone();
    other.chain_id = "other".into();
    assert!(qs[1].check_batch(NOW, 0, &other).is_err());
    // A transaction for another chain inside.
    let mut foreign = batch.clone();
    foreign.txs[0].tx.chain_id = "other".into();
    assert!(qs[1].check_batch(NOW, 0, &foreign).is_err());
    // Empty, too many transactions.
    let mut empty = batch.clone();
    empty.txs.clear();
    assert!(qs[1].check_batch(NOW, 0, &empty).is_err());
    let mut big = batch.clone();
    big.txs = vec![signed_tx(1, 0), signed_tx(1, 1), signed_tx(1, 2)];
    assert!(qs[1].check_batch(NOW, 0, &big).is_err());
    // A transaction no client could have submitted (over the size limit).
    let mut fat = batch.clone();
    fat.txs[0].tx.payload = Payload::Transfer {
        to: PublicKey([0xee; 32]),
        amount: 1,
        memo: vec![0; cfg.tx_bytes_max],
    };
    assert!(qs[1].check_batch(NOW, 0, &fat).is_err());
    // Expired, or expiring implausibly late.
    assert!(qs[1].check_batch(batch.expires_ms + 1, 0, &batch).is_err());
    let mut late = batch.clone();
    late.expires_ms = NOW + 10 * cfg.batch_ttl_ms;
    assert!(qs[1].check_batch(NOW, 0, &late).is_err());
    // Dated back (its creation time orders proposals) or ahead.
    let mut early = batch.clone();
    early.seq = (NOW - 2 * cfg.batch_ttl_ms - cfg.clock_skew_max_ms) * 1_000;
    assert!(qs[1].check_batch(NOW, 0, &early).is_err());
    let mut ahead = batch.clone();
    ahead.seq = (NOW + 2 * cfg.clock_skew_max_ms) * 1_000;
    assert!(qs[1].check_batch(NOW, 0, &ahead).is_err());
    // The original passes.
    qs[1].check_batch(NOW, 0, &batch).unwrap();
}

#[test]
fn an_authors_quota_bounds_what_peers_store_until_commit() {
    let f = Fixture::new();
    let cfg = QuorumStoreConfig {
        author_batches_max: 2,
        ..QuorumStoreConfig::default()
    };
    let mut qs = stores(&f, &cfg);
    let (_, p1) = disseminate(&mut qs, 0, vec![signed_tx(1, 0)], &[1, 2], NOW);
    let (_, _p2) = disseminate(&mut qs, 0, vec![signed_tx(1, 1)], &[1, 2], NOW + 1);
    assert!(!qs[0].can_batch(), "the author's own quota is full");
    let (b3, _, _) = qs[0].make_batch(NOW + 2, vec![signed_tx(1, 2)]);
    assert_eq!(
        qs[1].check_batch(NOW + 2, 0, &b3),
        Err(BatchError::Full("author quota"))
    );
    assert!(qs[1].accept_batch(NOW + 2, b3.clone(), true).is_err());
    // Committing the first batch frees one place.
    let mut block = f.child(1, &f.genesis, &f.genesis_qc);
    block.batches = vec![p1.unwrap()];
    qs[1].on_commit(std::slice::from_ref(&block));
    qs[1].check_batch(NOW + 2, 0, &b3).unwrap();
    // Executed: forgotten.
    let d = block.batches[0].info.digest;
    assert!(qs[1].batch(&d).is_some());
    qs[1].on_executed(&[d]);
    assert!(qs[1].batch(&d).is_none());
}

/// Execution counts as behind from two committed blocks not executed yet, and not after the
/// driver reports them executed (or after a restart at an executed tip).
#[test]
fn execution_is_backlogged_from_two_unexecuted_committed_blocks() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default()).remove(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let b2 = f.child(2, &b1, &f.full_qc(&b1));
    assert!(!qs.execution_backlogged());
    qs.on_commit(std::slice::from_ref(&b1));
    assert!(
        !qs.execution_backlogged(),
        "one block behind is the normal pipeline"
    );
    qs.on_commit(std::slice::from_ref(&b2));
    assert!(qs.execution_backlogged());
    qs.executed_through(1);
    assert!(!qs.execution_backlogged());
    qs.executed_through(2);
    assert!(!qs.execution_backlogged());
    // A restarted validator starts at its executed tip.
    let mut restarted = stores(&f, &QuorumStoreConfig::default()).remove(0);
    restarted.executed_through(40);
    let mut b41 = f.child(3, &b2, &f.full_qc(&b2));
    b41.height = 41;
    restarted.on_commit(std::slice::from_ref(&b41));
    assert!(!restarted.execution_backlogged());
}

#[test]
fn expired_batches_are_not_proposed_and_come_back_to_their_author() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (proven, proof) = disseminate(&mut qs, 0, vec![signed_tx(1, 0)], &[1, 2], NOW);
    let proof = proof.unwrap();
    let (unproven, none) = disseminate(&mut qs, 0, vec![signed_tx(1, 1)], &[1], NOW);
    assert!(none.is_none());
    qs[3].on_proof(NOW, proof.clone()).unwrap();
    let expiry = proof.info.expires_ms;
    assert_eq!(qs[3].pull_proofs(1, 10, &[], expiry).len(), 1);
    assert!(qs[3].pull_proofs(1, 10, &[], expiry + 1).is_empty());
    // A proof that arrives expired is not queued.
    assert!(!qs[2].on_proof(expiry + 1, proof.clone()).unwrap());

    // The author gets both batches back at expiry, to batch their transactions again.
    let expired = qs[0].expire(expiry + 1);
    assert!(expired.dropped.is_empty(), "kept a while for late fetches");
    let mut back: Vec<_> = expired.own.into_iter().map(|b| b.digest()).collect();
    back.sort();
    let mut want = vec![proven.digest(), unproven.digest()];
    want.sort();
    assert_eq!(back, want);
    assert!(!qs[0].has_pending());
    // Peers keep an expired batch until they commit a block timed after its expiry: before that,
    // a block carrying it (timed before the expiry) may still be committed.
    qs[1].expire(expiry + 60_000);
    assert!(qs[1].batch(&proven.digest()).is_some());
    let mut late = f.child(1, &f.genesis, &f.genesis_qc);
    late.timestamp_ms = expiry;
    qs[1].on_commit(std::slice::from_ref(&late));
    assert!(qs[1].expire(expiry + 60_000).dropped.is_empty());
    late.timestamp_ms = expiry + 1;
    qs[1].on_commit(std::slice::from_ref(&late));
    let expired = qs[1].expire(expiry + 60_000);
    assert!(qs[1].batch(&proven.digest()).is_none());
    let mut dropped: Vec<_> = expired.dropped.iter().map(|i| i.digest).collect();
    dropped.sort();
    assert_eq!(dropped, want, "both, for deletion from disk");
    assert_eq!(qs[1].stats().batches, 0);
    assert_eq!(qs[1].stats().bytes, 0);
}

#[test]
fn only_wanted_batches_with_the_right_digest_are_taken_from_fetches() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (batch, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0), signed_tx(2, 0)]);
    assert!(!qs[3].on_fetched(batch.clone()), "not asked for");
    qs[3].want(batch.digest());
    let mut altered = batch.clone();
    altered.txs.pop();
    assert!(!qs[3].on_fetched(altered), "different content");
    assert!(qs[3].batch(&batch.digest()).is_none());
    assert!(qs[3].on_fetched(batch.clone()));
    assert_eq!(qs[3].batch(&batch.digest()).unwrap().txs, batch.txs);
}

#[test]
fn proofs_are_pulled_oldest_first_within_the_bound() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let mut made = Vec::new();
    for (k, author) in [2usize, 0, 1, 2].into_iter().enumerate() {
        let ackers: Vec<usize> = (0..4).filter(|i| *i != author).take(2).collect();
        let (_, p) = disseminate(
            &mut qs,
            author,
            vec![signed_tx(10 + k as u8, 0)],
            &ackers,
            NOW + k as u64,
        );
        made.push(p.unwrap());
    }
    // Validator 3 hears of them newest first.
    for p in made.iter().rev() {
        qs[3].on_proof(NOW, p.clone()).unwrap();
    }
    assert_eq!(qs[3].pull_proofs(1, 3, &[], NOW), made[..3].to_vec());
}

#[test]
fn the_core_refuses_a_block_carrying_an_invalid_or_repeated_proof_and_votes_for_a_valid_one() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (_, proof) = disseminate(&mut qs, 2, vec![signed_tx(1, 0)], &[0, 1], 0);
    let proof = proof.unwrap();
    let me = 3;
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);

    let mut weak = proof.clone();
    weak.signers.truncate(2);
    let mut expired = proof.clone();
    expired.info.expires_ms = 0;
    for (batches, what) in [
        (vec![weak], "too few signers"),
        (vec![proof.clone(), proof.clone()], "repeated"),
        (vec![expired], "expired"),
    ] {
        let mut core = f.core(me);
        let mut b = b1.clone();
        b.batches = batches;
        let step = deliver(&mut core, 0, b.author, f.proposal_msg(&b), &mut NoPayload);
        assert!(step.error.is_some(), "{what}: accepted");
        assert!(votes(&step.actions).is_empty(), "{what}: voted");
    }
    // A store that verified the proof lets the core skip its signatures, but only for exactly
    // that proof: one with the same batch and a forged signature is checked and refused.
    let mut holder = QuorumStore::new(
        QuorumStoreConfig::default(),
        CHAIN,
        f.committee.clone(),
        me,
        f.keys[me as usize].clone(),
    );
    holder.on_proof(0, proof.clone()).unwrap();
    let mut forged = proof.clone();
    forged.signers[1].1 = f.keys[3].sign(&forged.info.ack_message(CHAIN));
    let mut b = b1.clone();
    b.batches = vec![forged];
    let mut core = f.core(me);
    let step = deliver(&mut core, 0, b.author, f.proposal_msg(&b), &mut holder);
    assert!(step.error.is_some(), "forged signature accepted");
    assert!(votes(&step.actions).is_empty());

    // A batch an uncommitted ancestor carries, or one a committed block carried, is refused.
    let mut core = f.core(me);
    let mut first = b1.clone();
    first.batches = vec![proof.clone()];
    assert!(deliver(
        &mut core,
        0,
        first.author,
        f.proposal_msg(&first),
        &mut NoPayload
    )
    .error
    .is_none());
    let q1 = f.full_qc(&first);
    let mut again = f.child(2, &first, &q1);
    again.batches = vec![proof.clone()];
    let step = deliver(
        &mut core,
        0,
        again.author,
        f.proposal_msg(&again),
        &mut NoPayload,
    );
    assert!(step.error.is_some(), "a batch an ancestor carries accepted");
    assert!(votes(&step.actions).is_empty());
    let mut remembers = QuorumStore::new(
        QuorumStoreConfig::default(),
        CHAIN,
        f.committee.clone(),
        me,
        f.keys[me as usize].clone(),
    );
    remembers.on_commit(std::slice::from_ref(&first));
    let mut core = f.core(me);
    let mut later = b1.clone();
    later.batches = vec![proof.clone()];
    let step = deliver(
        &mut core,
        0,
        later.author,
        f.proposal_msg(&later),
        &mut remembers,
    );
    assert!(step.error.is_some(), "a committed batch accepted again");
    assert!(remembers.is_committed(&proof.info.digest));

    let mut core = f.core(me);
    let mut good: Block = b1.clone();
    good.batches = vec![proof];
    let step = deliver(
        &mut core,
        0,
        good.author,
        f.proposal_msg(&good),
        &mut NoPayload,
    );
    assert!(step.error.is_none(), "{:?}", step.error);
    assert_eq!(votes(&step.actions).len(), 1);
}

#[test]
fn a_leader_proposes_the_proofs_it_holds() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (_, proof) = disseminate(&mut qs, 1, vec![signed_tx(1, 0)], &[0, 2], 0);
    let proof = proof.unwrap();
    // Validator 1 leads round 1.
    let leader = f.leader(1) as usize;
    let mut source = QuorumStore::new(
        QuorumStoreConfig::default(),
        CHAIN,
        f.committee.clone(),
        leader as u16,
        f.keys[leader].clone(),
    );
    source.on_proof(0, proof.clone()).unwrap();
    let mut core = f.core(leader as u16);
    let step = core.handle(
        0,
        netchain_consensus::Event::Tick,
        &mut source as &mut dyn PayloadSource,
    );
    let proposed = proposals(&step.actions);
    assert_eq!(proposed.len(), 1, "{:?}", step.actions);
    assert_eq!(proposed[0].block.batches, vec![proof]);
    assert!(proposed[0].block.payload.is_empty());
    assert_eq!(proposed[0].block.tx_count(), 1);
}

#[test]
fn acknowledged_batches_come_back_after_a_restart_unless_expired_before_the_tip() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (old, _) = disseminate(&mut qs, 0, vec![signed_tx(1, 0)], &[1], NOW);
    let (new, _) = disseminate(&mut qs, 0, vec![signed_tx(2, 0)], &[1], NOW + 10_000);
    let mut foreign = new.clone();
    foreign.chain_id = "other".into();
    // Validator 1 restarts with an empty memory; its executed tip is timed after the first
    // batch's expiry.
    let mut restarted = QuorumStore::new(
        QuorumStoreConfig::default(),
        CHAIN,
        f.committee.clone(),
        1,
        f.keys[1].clone(),
    );
    let refused = restarted.restore(old.expires_ms + 1, vec![old.clone(), new.clone(), foreign]);
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().any(|i| i.digest == old.digest()));
    assert!(restarted.batch(&old.digest()).is_none());
    assert_eq!(restarted.batch(&new.digest()).unwrap().txs, new.txs);
    // Whether it checked the batch before is not kept: it counts as stored, so asked to check
    // it, validator 1 checks it again instead of acknowledging it checked.
    assert_eq!(restarted.stored_checked(&new.digest()), Some(false));
    assert!(restarted.ack_again(&new, true).is_none());
    let Some(ConsensusMessage::BatchAck { checked, .. }) = restarted.ack_again(&new, false) else {
        panic!("no acknowledgement");
    };
    assert!(!checked);
}

/// A validator restarted with its own batch unproven sends it again at once (its
/// acknowledgements are gone), to every peer, asking one to check it; the acknowledgements make a
/// proof that verifies.
#[test]
fn own_batches_restored_after_a_restart_collect_acknowledgements_again() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    // Validator 0's batch: only validator 1 acknowledged it (stored, unchecked) before the crash.
    let (batch, _, made) = qs[0].make_batch(NOW, vec![signed_tx(1, 0), signed_tx(2, 0)]);
    assert!(made.is_empty());
    ack_to_author(&mut qs, 1, &batch, false, NOW);
    qs[0] = QuorumStore::new(
        QuorumStoreConfig::default(),
        CHAIN,
        f.committee.clone(),
        0,
        f.keys[0].clone(),
    );
    assert!(qs[0].restore(NOW, vec![batch.clone()]).is_empty());
    let resend = qs[0].resend_due(NOW + 1, 1_000);
    assert_eq!(resend.len(), 1, "sent again at once");
    assert_eq!(resend[0].batch.digest(), batch.digest());
    assert_eq!(resend[0].to, vec![1, 2, 3]);
    assert_eq!(resend[0].checkers, vec![1], "one check missing (f = 1)");
    // Nothing more until the resend interval has passed.
    assert!(qs[0].resend_due(NOW + 2, 1_000).is_empty());
    // Validator 1 checks the batch it stored; validator 2 stores it: with the author's own, a
    // quorum of 3, two of them checked.
    let (checked, none) = ack_to_author(&mut qs, 1, &batch, true, NOW + 2);
    assert!(checked && none.is_empty());
    let (_, proofs) = ack_to_author(&mut qs, 2, &batch, false, NOW + 2);
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].info.digest, batch.digest());
    assert!(proofs[0].checked_by(0) && proofs[0].checked_by(1) && !proofs[0].checked_by(2));
    verify_proofs(CHAIN, &f.committee, &proofs).unwrap();
}

/// Validator `i` stores `batch` and acknowledges it (checked or not); the author takes it in.
/// Whether the acknowledgement is a checked one, and the proofs the author releases.
fn ack_to_author(
    qs: &mut [QuorumStore],
    i: usize,
    batch: &Batch,
    check: bool,
    now: u64,
) -> (bool, Vec<ProofOfAvailability>) {
    let ack = qs[i].accept_batch(now, batch.clone(), check).unwrap();
    let ConsensusMessage::BatchAck {
        info,
        author: signer,
        checked,
        signature,
    } = ack
    else {
        panic!("not an acknowledgement: {ack:?}");
    };
    let released = qs[batch.author as usize]
        .on_ack(info, signer, checked, signature)
        .unwrap();
    (checked, released)
}

/// [`ack_to_author`], and this batch's proof if released.
fn acknowledge(
    qs: &mut [QuorumStore],
    i: usize,
    batch: &Batch,
    check: bool,
    now: u64,
) -> (bool, Option<ProofOfAvailability>) {
    let digest = batch.digest();
    let (checked, released) = ack_to_author(qs, i, batch, check, now);
    (
        checked,
        released.into_iter().find(|p| p.info.digest == digest),
    )
}

#[test]
fn a_proof_needs_f_plus_one_checked_acknowledgements_and_says_which_are_stored() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (batch, checkers, proof) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    assert!(proof.is_empty());
    // f = 1 peer is asked to check.
    assert_eq!(checkers.len(), 1);
    let checker = checkers[0] as usize;
    let others: Vec<usize> = (1..4).filter(|v| *v != checker).collect();
    // The two others store it unchecked: a quorum of 3 signers, but only the author's ack is
    // checked (1 < f + 1): no proof.
    for &o in &others {
        let (checked, proof) = acknowledge(&mut qs, o, &batch, false, NOW);
        assert!(!checked);
        assert!(proof.is_none(), "a proof with one checked acknowledgement");
    }
    // A stored acknowledgement cannot be passed off as a checked one.
    let stored_sig = f.keys[others[0]].sign(&batch.info().store_message(CHAIN));
    assert!(matches!(
        qs[0].on_ack(batch.info(), others[0] as u16, true, stored_sig),
        Err(BatchError::Invalid(ConsensusError::BadSignature { .. }))
    ));
    // The checker's checked acknowledgement completes it.
    let (checked, proof) = acknowledge(&mut qs, checker, &batch, true, NOW);
    assert!(checked);
    let proof = proof.expect("f + 1 checked of a quorum");
    let mut stored_only: Vec<u16> = others.iter().map(|v| *v as u16).collect();
    stored_only.sort_unstable();
    assert_eq!(proof.stored_only, stored_only);
    assert_eq!(proof.signers.len(), 4);
    assert!(proof.checked_by(0) && proof.checked_by(checker as u16));
    verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&proof)).unwrap();

    // Tampered proofs: a stored signer claimed as checked, a checked one claimed as stored
    // (its signature then checks against the wrong message), too few checked left, a
    // stored-only entry that did not sign, stored-only out of order.
    let mut claimed_checked = proof.clone();
    claimed_checked.stored_only.remove(0);
    let mut claimed_stored = proof.clone();
    claimed_stored.stored_only.push(0);
    claimed_stored.stored_only.sort_unstable();
    let mut one_checked = proof.clone();
    one_checked.signers.retain(|(v, _)| *v as usize != checker);
    let mut phantom = proof.clone();
    phantom.signers.retain(|(v, _)| *v as usize != others[1]);
    let mut unordered = proof.clone();
    unordered.stored_only.reverse();
    for bad in [
        claimed_checked,
        claimed_stored,
        one_checked,
        phantom,
        unordered,
    ] {
        assert!(
            verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&bad)).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn checkers_take_turns_and_a_silent_one_is_passed_over_until_it_checks_again() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    // Within a turn (a second), an author asks the same peer, so its batches are checked, and
    // proven, in order; the next turns ask the other peers in turn.
    let mut n = 0u8;
    let mut make = |qs: &mut [QuorumStore], author: usize, at: u64| {
        n += 1;
        qs[author].make_batch(at, vec![signed_tx(n, 0)])
    };
    let mut turns = Vec::new();
    for turn in 0..3u64 {
        let at = NOW + turn * 1_000;
        // Each checker answers at once.
        let (batch, first, _) = make(&mut qs, 0, at);
        assert_eq!(first.len(), 1);
        acknowledge(&mut qs, first[0] as usize, &batch, true, at);
        for later in [1, 500, 999] {
            let (batch, checkers, _) = make(&mut qs, 0, at + later);
            assert_eq!(checkers, first);
            acknowledge(&mut qs, first[0] as usize, &batch, true, at + later);
        }
        turns.push(first[0]);
    }
    turns.sort_unstable();
    assert_eq!(turns, vec![1, 2, 3]);
    // In one turn the four authors ask four different peers, none itself.
    let at = NOW + 10_000;
    let asked: Vec<u16> = (0..4).map(|a| make(&mut qs, a, at).1[0]).collect();
    for (author, checker) in asked.iter().enumerate() {
        assert_ne!(*checker as usize, author);
    }
    let mut distinct = asked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{asked:?}");

    // A peer that leaves a check unanswered for half a second is passed over, until it
    // answers a check.
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let t = (NOW..NOW + 3_000)
        .step_by(1_000)
        .find(|t| qs[0].checkers(*t) == vec![3])
        .expect("a turn of peer 3");
    let (silent, asked, _) = make(&mut qs, 0, t);
    assert_eq!(asked, vec![3]);
    assert_eq!(make(&mut qs, 0, t + 499).1, vec![3], "not late yet");
    let (batch, passed_over, _) = make(&mut qs, 0, t + 500);
    assert_eq!(passed_over.len(), 1);
    assert_ne!(passed_over[0], 3);
    acknowledge(&mut qs, passed_over[0] as usize, &batch, true, t + 500);
    // Still passed over in its next turn...
    let t2 = (t + 1_000..t + 4_000)
        .step_by(1_000)
        .find(|t| {
            let mut probe = stores(&f, &QuorumStoreConfig::default());
            probe[0].checkers(*t) == vec![3]
        })
        .expect("the next turn of peer 3");
    let (batch, instead, _) = make(&mut qs, 0, t2);
    assert_ne!(instead, vec![3]);
    acknowledge(&mut qs, instead[0] as usize, &batch, true, t2);
    // It is probed (asked besides the regular checker, which the proof does not wait for)
    // every 5 s from when it was passed over, not before.
    let probe_at = t + 500 + 5_000;
    let (batch, before, _) = make(&mut qs, 0, probe_at - 1);
    assert_eq!(before.len(), 1);
    acknowledge(&mut qs, before[0] as usize, &batch, true, probe_at - 1);
    let (probe, probed, _) = make(&mut qs, 0, probe_at);
    assert_eq!(probed.len(), 2, "{probed:?}");
    assert!(probed.contains(&3));
    let regular = *probed.iter().find(|v| **v != 3).unwrap();
    acknowledge(&mut qs, regular as usize, &probe, true, probe_at);
    assert_eq!(
        make(&mut qs, 0, probe_at + 1).1.len(),
        1,
        "one probe per 5 s"
    );
    // ...until it answers a check it was asked for: then it takes its turns again.
    acknowledge(&mut qs, 3, &silent, true, probe_at + 1);
    let t3 = (probe_at + 1_000..probe_at + 4_000)
        .step_by(1_000)
        .find(|t| {
            let mut fresh = stores(&f, &QuorumStoreConfig::default());
            fresh[0].checkers(*t) == vec![3]
        })
        .expect("a turn of peer 3");
    assert_eq!(make(&mut qs, 0, t3).1, vec![3]);
}

#[test]
fn a_batch_short_of_checks_is_sent_again_asking_its_stored_signers_to_check_it() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (batch, checkers, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let checker = checkers[0] as usize;
    let others: Vec<usize> = (1..4).filter(|v| *v != checker).collect();
    for &o in &others {
        acknowledge(&mut qs, o, &batch, false, NOW);
    }
    // Not yet due.
    assert!(qs[0].resend_due(NOW + 10, 1_000).is_empty());
    // Due: one check is missing, so one peer is asked to check, one known to be up (it
    // acknowledged it as stored); sent to it and to the silent checker (no acknowledgement
    // yet), not to the other stored signer.
    let again = qs[0].resend_due(NOW + 1_000, 1_000);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].checkers, vec![others[0] as u16]);
    let mut to = vec![checker as u16, others[0] as u16];
    to.sort_unstable();
    assert_eq!(again[0].to, to);
    // A stored signer asked to check: no acknowledgement from what it stored unchecked...
    let o = others[0];
    assert!(qs[o].ack_again(&batch, true).is_none());
    assert_eq!(qs[o].stored_checked(&batch.digest()), Some(false));
    // ...but a stored one when not asked to check.
    let Some(ConsensusMessage::BatchAck { checked, .. }) = qs[o].ack_again(&batch, false) else {
        panic!("no acknowledgement");
    };
    assert!(!checked);
    // Once it checked, its checked acknowledgement completes the proof.
    let (checked, proof) = acknowledge(&mut qs, o, &batch, true, NOW + 1_000);
    assert!(checked);
    let proof = proof.expect("proof");
    assert_eq!(proof.stored_only, vec![others[1] as u16]);
    verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&proof)).unwrap();
    assert_eq!(qs[o].stored_checked(&batch.digest()), Some(true));
    // A stored acknowledgement arriving after a checked one does not take its place.
    let late_stored = f.keys[o].sign(&batch.info().store_message(CHAIN));
    assert!(qs[0]
        .on_ack(batch.info(), o as u16, false, late_stored)
        .unwrap()
        .is_empty());
    // Enough checked but short of signers: sent only to those missing, none asked to check.
    let (b2, c2, _) = qs[0].make_batch(NOW + 2_000, vec![signed_tx(2, 0)]);
    acknowledge(&mut qs, c2[0] as usize, &b2, true, NOW + 2_000);
    let again = qs[0].resend_due(NOW + 3_000, 1_000);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].to.len(), 2);
    assert!(again[0].checkers.is_empty());
}

/// Validator `i` acknowledges `batch` checked; the sequence numbers of the proofs its author
/// releases.
fn release_after_ack(qs: &mut [QuorumStore], i: usize, batch: &Batch) -> Vec<u64> {
    let (_, released) = ack_to_author(qs, i, batch, true, NOW);
    released.into_iter().map(|p| p.info.seq).collect()
}

#[test]
fn an_authors_proofs_go_out_in_the_order_its_batches_were_made() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (a, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let (b, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 1)]);
    let (c, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 2)]);
    // The newer batches are proven first: their proofs wait for the oldest's.
    for batch in [&c, &b] {
        assert!(release_after_ack(&mut qs, 1, batch).is_empty());
        assert!(release_after_ack(&mut qs, 2, batch).is_empty());
    }
    assert!(!qs[0].has_pending(), "a held proof is not proposed");
    assert_eq!(qs[0].stats().own_unproven, 3);
    assert!(release_after_ack(&mut qs, 1, &a).is_empty());
    // The oldest's proof releases all three, oldest first.
    assert_eq!(release_after_ack(&mut qs, 2, &a), vec![a.seq, b.seq, c.seq]);
    assert_eq!(qs[0].pull_proofs(1, 10, &[], NOW).len(), 3);
    assert_eq!(qs[0].stats().own_unproven, 0);

    // An older batch that expires unproven releases the newer proofs held behind it.
    let (d, _, _) = qs[0].make_batch(NOW + 1, vec![signed_tx(2, 0)]);
    let (e, _, _) = qs[0].make_batch(NOW + 2_000, vec![signed_tx(2, 1)]);
    release_after_ack(&mut qs, 1, &e);
    assert!(release_after_ack(&mut qs, 2, &e).is_empty());
    let expired = qs[0].expire(d.expires_ms + 1);
    // (The three proven ones expired unproposed too, and come back with it.)
    let back: Vec<u64> = expired.own.iter().map(|b| b.seq).collect();
    assert!(back.contains(&d.seq) && !back.contains(&e.seq), "{back:?}");
    assert_eq!(
        expired
            .released
            .iter()
            .map(|p| p.info.seq)
            .collect::<Vec<_>>(),
        vec![e.seq]
    );
}

#[test]
fn proofs_lying_about_which_signers_checked_are_refused_on_the_rule_they_break() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    // Signed by hand: the author and peers 1 and 2 checked, peer 3 stored.
    let (batch, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let info = batch.info();
    let proof = ProofOfAvailability {
        info,
        signers: (0..4u16)
            .map(|v| {
                let msg = info.acknowledgement_message(CHAIN, v != 3);
                (v, f.keys[v as usize].sign(&msg))
            })
            .collect(),
        stored_only: vec![3],
    };
    verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&proof)).unwrap();
    let reason =
        |p: &ProofOfAvailability| match verify_proofs(CHAIN, &f.committee, std::slice::from_ref(p))
        {
            Err(ConsensusError::BadCertificate { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
    // A checked signer listed as stored: enough checked remain (2), so its signature, checked
    // against the stored message, fails.
    let mut checked_as_stored = proof.clone();
    checked_as_stored.stored_only = vec![1, 3];
    assert!(!reason(&checked_as_stored).contains("checked acknowledgements"));
    // A stored-only entry that did not sign, with the count still enough.
    let mut phantom = proof.clone();
    phantom.stored_only = vec![3, 9];
    assert!(
        reason(&phantom).contains("did not sign"),
        "{}",
        reason(&phantom)
    );
    // The same signer twice.
    let mut twice = proof.clone();
    twice.stored_only = vec![3, 3];
    assert!(reason(&twice).contains("not strictly ascending"));
    // Far more signers than the committee: refused on the first entry out of order, before
    // the stored-only list is looked at.
    let mut flood = proof.clone();
    let filler = flood.signers[0];
    flood.signers = std::iter::repeat_n(filler, 100_000)
        .chain(proof.signers.clone())
        .collect();
    flood.stored_only = (1..=5_000).collect();
    assert!(reason(&flood).contains("signers not strictly ascending"));
}

#[test]
fn a_stored_acknowledgement_after_a_checked_one_keeps_the_checked_one() {
    let f = Fixture::new();
    let mut qs = stores(&f, &QuorumStoreConfig::default());
    let (batch, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    // Peer 1 checks it (2 signers, 2 checked: no quorum yet), then sends a stored one.
    acknowledge(&mut qs, 1, &batch, true, NOW);
    let stored = f.keys[1].sign(&batch.info().store_message(CHAIN));
    assert!(qs[0]
        .on_ack(batch.info(), 1, false, stored)
        .unwrap()
        .is_empty());
    // Peer 2's stored acknowledgement completes the quorum; only peer 2 is stored-only.
    let (_, proof) = acknowledge(&mut qs, 2, &batch, false, NOW);
    let proof = proof.expect("proof");
    assert_eq!(proof.stored_only, vec![2]);
    verify_proofs(CHAIN, &f.committee, std::slice::from_ref(&proof)).unwrap();
}

#[test]
fn held_proofs_count_against_the_own_batch_bound_and_are_released_after_two_seconds() {
    let f = Fixture::new();
    let cfg = QuorumStoreConfig {
        own_unproven_max: 2,
        ..QuorumStoreConfig::default()
    };
    let mut qs = stores(&f, &cfg);
    let (a, _, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let (b, _, _) = qs[0].make_batch(NOW, vec![signed_tx(2, 0)]);
    assert!(!qs[0].can_batch());
    // b proven, held behind a: still two waiting.
    release_after_ack(&mut qs, 1, &b);
    assert!(release_after_ack(&mut qs, 2, &b).is_empty());
    assert!(!qs[0].can_batch());
    // a never gets its proof: b goes out anyway once held 2 s (at an expiry pass).
    assert!(qs[0].expire(NOW + 1_999).released.is_empty());
    let released = qs[0].expire(NOW + 2_000).released;
    assert_eq!(
        released.iter().map(|p| p.info.seq).collect::<Vec<_>>(),
        vec![b.seq]
    );
    assert!(qs[0].can_batch());
    // a's proof, when it comes, goes out at once (nothing older waits).
    release_after_ack(&mut qs, 1, &a);
    assert_eq!(release_after_ack(&mut qs, 2, &a), vec![a.seq]);
}

#[test]
fn an_ordering_only_store_asks_every_peer_and_releases_proofs_as_they_form() {
    let f = Fixture::new();
    let cfg = QuorumStoreConfig {
        checked_and_ordered: false,
        ..QuorumStoreConfig::default()
    };
    let mut qs = stores(&f, &cfg);
    let (a, checkers, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    assert_eq!(checkers, vec![1, 2, 3]);
    let (b, _, _) = qs[0].make_batch(NOW, vec![signed_tx(2, 0)]);
    // The younger batch's proof goes out at once, ahead of the older one's.
    release_after_ack(&mut qs, 1, &b);
    assert_eq!(release_after_ack(&mut qs, 2, &b), vec![b.seq]);
    release_after_ack(&mut qs, 3, &a);
    assert_eq!(release_after_ack(&mut qs, 2, &a), vec![a.seq]);
}
