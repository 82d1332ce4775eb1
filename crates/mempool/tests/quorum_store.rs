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
    let (batch, mut proof) = qs[author].make_batch(now, txs);
    for &i in ackers {
        qs[i]
            .check_batch(now, author as u16, &batch)
            .expect("batch passes the checks");
        let ack = qs[i]
            .accept_batch(now, batch.clone())
            .expect("acknowledged");
        let ConsensusMessage::BatchAck {
            info,
            author: signer,
            signature,
        } = ack
        else {
            panic!("not an acknowledgement: {ack:?}");
        };
        if let Some(p) = qs[author].on_ack(info, signer, signature).unwrap() {
            assert!(proof.is_none(), "a second proof for one batch");
            proof = Some(p);
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
        let ack = qs[2].accept_batch(NOW, batch.clone()).unwrap();
        let ConsensusMessage::BatchAck {
            info,
            author,
            signature,
        } = ack
        else {
            panic!()
        };
        (
            batch.clone(),
            qs[0].on_ack(info, author, signature).unwrap(),
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
    let (batch, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
    let info = batch.info();
    // Signed by validator 2's key but claiming validator 1.
    let forged = f.keys[2].sign(&info.ack_message(CHAIN));
    assert!(matches!(
        qs[0].on_ack(info, 1, forged),
        Err(BatchError::Invalid(ConsensusError::BadSignature { .. }))
    ));
    // A different summary of the same digest (another tx count).
    let mut altered = info;
    altered.tx_count += 1;
    let sig = f.keys[1].sign(&altered.ack_message(CHAIN));
    assert!(matches!(
        qs[0].on_ack(altered, 1, sig),
        Err(BatchError::Refused(_))
    ));
    // An acknowledgement signed for another chain.
    let sig = f.keys[1].sign(&info.ack_message("other-chain"));
    assert!(qs[0].on_ack(info, 1, sig).is_err());
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
    let (batch, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0)]);
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
    let (b3, _) = qs[0].make_batch(NOW + 2, vec![signed_tx(1, 2)]);
    assert_eq!(
        qs[1].check_batch(NOW + 2, 0, &b3),
        Err(BatchError::Full("author quota"))
    );
    assert!(qs[1].accept_batch(NOW + 2, b3.clone()).is_err());
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
    let (batch, _) = qs[0].make_batch(NOW, vec![signed_tx(1, 0), signed_tx(2, 0)]);
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
}
