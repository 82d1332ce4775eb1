//! Protocol-rule tests: one `Core`, driven event by event, with messages crafted and signed by
//! hand for the other validators.

mod common;

use common::*;
use netchain_consensus::{verify_qc, verify_tc, Action, ConsensusError, Event, SafetyData};
use netchain_crypto::verify;
use netchain_types::{Block, ConsensusMessage, QuorumCert, Vote};

fn assert_vote_for(actions: &[Action], block: &Block, me: u16, to: u16) {
    let vs = votes(actions);
    assert_eq!(vs.len(), 1, "expected one vote, got {actions:?}");
    let (dest, vote) = &vs[0];
    assert_eq!(*dest, to, "vote must go to the leader of round + 1");
    assert_eq!(vote.block_id, block.id());
    assert_eq!(
        (vote.round, vote.height, vote.author),
        (block.round, block.height, me)
    );
    let f = Fixture::new();
    verify(
        f.committee.key(me).unwrap(),
        &Vote::signing_message(CHAIN, &block.id(), block.round, block.height),
        &vote.signature,
    )
    .expect("vote signature verifies");
    // The safety data recording this vote is persisted before the vote leaves.
    let persist_at = actions
        .iter()
        .position(|a| matches!(a, Action::PersistSafety(s) if s.last_vote.as_ref() == Some(vote)))
        .expect("vote persisted");
    let send_at = actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Send {
                    msg: ConsensusMessage::Vote(_),
                    ..
                }
            )
        })
        .unwrap();
    assert!(
        persist_at < send_at,
        "PersistSafety must precede the vote: {actions:?}"
    );
}

fn no_votes(actions: &[Action]) {
    assert!(votes(actions).is_empty(), "unexpected vote: {actions:?}");
}

// ---- vote safety --------------------------------------------------------------------------------

#[test]
fn votes_once_per_round_and_persists_first() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let actions = deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[0], Action::StoreBlock(b1.clone()));
    assert!(matches!(actions[1], Action::PersistSafety(_)));
    assert_vote_for(&actions, &b1, 0, f.leader(2));
    let safety = &persisted(&actions)[0];
    assert_eq!(safety.last_voted_round, 1);
    assert_eq!(core.safety(), safety);

    // The identical proposal again: no second vote, nothing at all.
    let again = deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    assert!(again.is_empty(), "{again:?}");

    // A different block for the same round by the same leader (equivocation): no vote.
    let mut b1x = b1.clone();
    b1x.timestamp_ms += 1;
    b1x.payload = vec![dummy_tx(1, 1)];
    let step = deliver(&mut core, 0, 1, f.proposal_msg(&b1x), &mut NoPayload);
    no_votes(&step.actions);
    assert!(persisted(&step.actions).is_empty());
    assert_eq!(core.safety().last_voted_round, 1);
    assert_eq!(core.safety().last_vote.as_ref().unwrap().block_id, b1.id());
}

#[test]
fn restart_from_persisted_safety_never_double_votes() {
    let f = Fixture::new();
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let mut b1x = b1.clone();
    b1x.timestamp_ms += 3;

    let mut core = f.core(0);
    let actions = deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    let saved = persisted(&actions).pop().expect("persisted");
    drop(core);

    // Restart (same committed tip, the persisted safety data): neither the same block nor a
    // conflicting one for round 1 gets a vote.
    let mut core = f.core_with(f.cfg(0), saved.clone());
    no_votes(&deliver_ok(&mut core, 5, 1, f.proposal_msg(&b1)));
    let mut fresh = f.core_with(f.cfg(0), saved.clone());
    no_votes(&deliver_ok(&mut fresh, 5, 1, f.proposal_msg(&b1x)));
    // It still takes part in later rounds.
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let actions = deliver_ok(&mut core, 5, 2, f.proposal_msg(&b2));
    assert_vote_for(&actions, &b2, 0, f.leader(3));

    // Restored last_voted_round = 3: rounds 1..=3 get no vote, round 4 does.
    let safety = SafetyData {
        last_voted_round: 3,
        ..SafetyData::default()
    };
    let mut core = f.core_with(f.cfg(0), safety);
    let mut parent = f.genesis.clone();
    let mut qc = f.genesis_qc.clone();
    for round in 1..=4 {
        let b = f.child(round, &parent, &qc);
        let actions = deliver_ok(&mut core, 0, f.leader(round), f.proposal_msg(&b));
        if round <= 3 {
            no_votes(&actions);
        } else {
            assert_vote_for(&actions, &b, 0, f.leader(round + 1));
        }
        qc = f.full_qc(&b);
        parent = b;
    }
}

#[test]
fn restart_after_timeout_neither_votes_nor_times_out_lower() {
    let f = Fixture::new();
    let mut core = f.core(0);
    // Time out round 1 on the local timer.
    let step = core.handle(1_000, Event::Tick, &mut NoPayload);
    let saved = persisted(&step.actions).pop().expect("timeout persisted");
    assert_eq!(saved.last_voted_round, 1);
    assert_eq!(saved.last_timeout.as_ref().unwrap().round, 1);

    let mut core = f.core_with(f.cfg(0), saved.clone());
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    no_votes(&deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1)));
    // Its timer fires in round 1 again: it re-sends the very same timeout, never a new one.
    let step = core.handle(1_000, Event::Tick, &mut NoPayload);
    assert_eq!(
        broadcast_timeouts(&step.actions),
        vec![saved.last_timeout.clone().unwrap()]
    );
}

#[test]
fn votes_go_to_next_leader_including_self() {
    let f = Fixture::new();
    let me = 1;
    let mut core = f.core(me);
    let mut parent = f.genesis.clone();
    let mut qc = f.genesis_qc.clone();
    let mut to_self = false;
    for round in 1..=8 {
        let b = f.child(round, &parent, &qc);
        let actions = deliver_ok(&mut core, 0, f.leader(round), f.proposal_msg(&b));
        assert_vote_for(&actions, &b, me, f.leader(round + 1));
        to_self |= f.leader(round + 1) == me;
        assert_eq!(core.round(), round);
        qc = f.full_qc(&b);
        parent = b;
    }
    assert!(to_self);
}

#[test]
fn no_vote_after_timing_out_the_round() {
    let f = Fixture::new();
    let mut core = f.core(0);
    assert!(core
        .handle(999, Event::Tick, &mut NoPayload)
        .actions
        .is_empty());
    let step = core.handle(1_000, Event::Tick, &mut NoPayload);
    assert!(
        matches!(step.actions[0], Action::PersistSafety(_)),
        "{:?}",
        step.actions
    );
    let ts = broadcast_timeouts(&step.actions);
    assert_eq!(ts.len(), 1);
    assert_eq!((ts[0].round, ts[0].author, ts[0].high_qc.round), (1, 0, 0));
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    no_votes(&deliver_ok(&mut core, 1_001, 1, f.proposal_msg(&b1)));
}

// ---- safety rules (unit) ------------------------------------------------------------------------

#[test]
fn safety_data_rules() {
    let f = Fixture::new();
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let q2 = f.full_qc(&b2);
    let b3 = f.child(3, &b2, &q2);

    let mut s = SafetyData::default();
    assert!(s.safe_to_vote(&b1));
    // Skipping a round without a TC is never safe.
    let skip = f.child(3, &b1, &q1);
    assert!(!s.safe_to_vote(&skip));
    // With a TC for the previous round, safe iff the QC is at least the TC's highest.
    let tc2_low = f.tc(2, &[(0, 1), (1, 0), (2, 1)]);
    let tc2_high = f.tc(2, &[(0, 1), (1, 2), (2, 1)]);
    let mut ok = f.block(3, &b1, &q1, Some(tc2_low), vec![]);
    assert!(s.safe_to_vote(&ok));
    ok.tc = Some(tc2_high);
    assert!(
        !s.safe_to_vote(&ok),
        "QC round 1 below TC's high QC round 2"
    );

    s.record_vote(&b3, f.vote(&b3, 0));
    assert_eq!((s.last_voted_round, s.one_chain_round), (3, 2));
    assert!(!s.safe_to_vote(&b3));
    assert!(!s.safe_to_vote(&b2));
    // Voted for a block carrying QC round 2: refuses to time out with a lower high QC.
    assert!(!s.safe_to_timeout(3, 1));
    assert!(!s.safe_to_timeout(4, 1));
    assert!(s.safe_to_timeout(3, 2));
    assert!(s.safe_to_timeout(4, 3));
    // ...and never in a round below the one it voted in.
    assert!(!s.safe_to_timeout(2, 2));

    let t = f.timeout(5, &q2, 0);
    s.record_timeout(t.clone());
    assert_eq!(s.last_voted_round, 5);
    assert_eq!(s.last_timeout, Some(t));
    let b5 = f.block(
        5,
        &b2,
        &q2,
        Some(f.tc(4, &[(0, 2), (1, 2), (2, 2)])),
        vec![],
    );
    assert!(!s.safe_to_vote(&b5), "no vote in a round already timed out");
}

#[test]
fn core_with_voted_qc_refuses_timeout_with_lower_high_qc() {
    // Persisted: voted for a block carrying a QC of round 5, but (after a restart from an older
    // tip) the core's high QC is genesis: it must not time out.
    let f = Fixture::new();
    let safety = SafetyData {
        last_voted_round: 0,
        one_chain_round: 5,
        ..SafetyData::default()
    };
    let mut core = f.core_with(f.cfg(0), safety.clone());
    let step = core.handle(5_000, Event::Tick, &mut NoPayload);
    assert!(
        broadcast_timeouts(&step.actions).is_empty(),
        "{:?}",
        step.actions
    );
    assert!(persisted(&step.actions).is_empty());
    assert_eq!(core.safety(), &safety);
}

// ---- lock / TC rule -----------------------------------------------------------------------------

#[test]
fn block_justified_by_tc_must_extend_its_highest_qc() {
    let f = Fixture::new();
    let me = 3;
    let mut core = f.core(me);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let q2 = f.full_qc(&b2);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2));
    assert_eq!(core.round(), 2);
    let tc3 = f.tc(3, &[(0, 2), (1, 1), (2, 2)]);

    let refused = |core: &mut netchain_consensus::Core, b: &Block| {
        let before = (core.round(), core.safety().clone(), core.high_qc().clone());
        let step = deliver(core, 0, b.author, f.proposal_msg(b), &mut NoPayload);
        assert!(
            matches!(&step.error, Some(ConsensusError::MalformedBlock { block, .. }) if *block == b.id()),
            "{:?}",
            step.error
        );
        assert!(step.actions.is_empty(), "{:?}", step.actions);
        assert_eq!(
            before,
            (core.round(), core.safety().clone(), core.high_qc().clone())
        );
        assert!(core.block(&b.id()).is_none());
    };
    // Extends QC round 1 while the TC saw a QC of round 2: refused.
    refused(&mut core, &f.block(4, &b1, &q1, Some(tc3.clone()), vec![]));
    // Skips round 3 without a TC: refused.
    refused(&mut core, &f.block(4, &b2, &q2, None, vec![]));
    // TC of the wrong round: refused.
    refused(
        &mut core,
        &f.block(
            4,
            &b2,
            &q2,
            Some(f.tc(2, &[(0, 1), (1, 1), (2, 1)])),
            vec![],
        ),
    );

    // Extends the TC's highest QC: accepted and voted for, in round 4.
    let b4 = f.block(4, &b2, &q2, Some(tc3), vec![]);
    let actions = deliver_ok(&mut core, 0, f.leader(4), f.proposal_msg(&b4));
    assert_eq!(core.round(), 4);
    assert_vote_for(&actions, &b4, me, f.leader(5));
    assert_eq!(core.safety().one_chain_round, 2);
}

// ---- 2-chain commit -----------------------------------------------------------------------------

#[test]
fn consecutive_rounds_commit_the_grandparent() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let q2 = f.full_qc(&b2);
    let b3 = f.child(3, &b2, &q2);
    assert!(commits(&deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1))).is_empty());
    assert!(commits(&deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2))).is_empty());
    assert_eq!(core.committed(), (0, f.genesis.id()));
    let actions = deliver_ok(&mut core, 0, 3, f.proposal_msg(&b3));
    let cs = commits(&actions);
    assert_eq!(cs.len(), 1, "{actions:?}");
    assert_eq!(ids(&cs[0].0), vec![b1.id()]);
    assert_eq!(cs[0].1, q1, "commit QC certifies the committed block");
    assert_eq!(core.committed(), (1, b1.id()));
    // The next block's QC commits the next block.
    let q3 = f.full_qc(&b3);
    let b4 = f.child(4, &b3, &q3);
    let cs = commits(&deliver_ok(&mut core, 0, 0, f.proposal_msg(&b4)));
    assert_eq!(cs.len(), 1);
    assert_eq!(ids(&cs[0].0), vec![b2.id()]);
    assert_eq!(core.committed(), (2, b2.id()));
}

#[test]
fn round_gap_does_not_commit_until_a_consecutive_pair() {
    let f = Fixture::new();
    let mut core = f.core(1);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let q2 = f.full_qc(&b2);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2));
    // Round 3 timed out; B4 extends B2 with the TC.
    let tc3 = f.tc(3, &[(1, 2), (2, 2), (3, 2)]);
    let b4 = f.block(4, &b2, &q2, Some(tc3), vec![]);
    let q4 = f.full_qc(&b4);
    // B4 carries QC(B2) and B2 follows B1 directly: B1 commits.
    let cs = commits(&deliver_ok(&mut core, 0, 0, f.proposal_msg(&b4)));
    assert_eq!(cs.len(), 1);
    assert_eq!(ids(&cs[0].0), vec![b1.id()]);
    // B5 carries QC(B4), but B4 (round 4) is not in the round after its parent B2 (round 2): no
    // commit of B2.
    let b5 = f.child(5, &b4, &q4);
    let q5 = f.full_qc(&b5);
    let actions = deliver_ok(&mut core, 0, 1, f.proposal_msg(&b5));
    assert!(commits(&actions).is_empty(), "{actions:?}");
    assert_eq!(core.committed(), (1, b1.id()));
    // B6 carries QC(B5): B5 follows B4 directly, so B4 commits, and B2 with it.
    let b6 = f.child(6, &b5, &q5);
    let cs = commits(&deliver_ok(&mut core, 0, 2, f.proposal_msg(&b6)));
    assert_eq!(cs.len(), 1);
    assert_eq!(ids(&cs[0].0), vec![b2.id(), b4.id()]);
    assert_eq!(cs[0].1, q4);
    assert_eq!(core.committed(), (3, b4.id()));
}

#[test]
fn leader_forms_qc_from_votes_commits_and_proposes() {
    let f = Fixture::new();
    let me = 3; // leader of round 3
    let mut core = f.core(me);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    let actions = deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2));
    let own = votes(&actions);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].0, me, "own vote for round 2 goes to itself");

    let mut payload = DummyPayload::new(9, 10, 2);
    let mut vote = |core: &mut netchain_consensus::Core, from: u16, v: Vote| {
        core.handle(
            0,
            Event::Message {
                from,
                msg: ConsensusMessage::Vote(v),
            },
            &mut payload,
        )
    };
    let s = vote(&mut core, me, own[0].1.clone());
    assert_eq!((s.error, s.actions.len()), (None, 0));
    let s = vote(&mut core, 0, f.vote(&b2, 0));
    assert_eq!((s.error, s.actions.len()), (None, 0));
    // The same vote again is harmless; a conflicting one is equivocation.
    let s = vote(&mut core, 0, f.vote(&b2, 0));
    assert_eq!((s.error, s.actions.len()), (None, 0));
    let mut b2x = b2.clone();
    b2x.timestamp_ms += 1;
    let s = vote(&mut core, 0, f.vote(&b2x, 0));
    assert_eq!(
        s.error,
        Some(ConsensusError::Equivocation {
            round: 2,
            author: 0
        })
    );
    assert_eq!(core.round(), 2);

    // Third vote: quorum. The QC of B2 commits B1 and the leader proposes round 3 on it.
    let s = vote(&mut core, 1, f.vote(&b2, 1));
    assert_eq!(s.error, None);
    let cs = commits(&s.actions);
    assert_eq!(cs.len(), 1);
    assert_eq!(ids(&cs[0].0), vec![b1.id()]);
    assert_eq!(core.round(), 3);
    assert_eq!(core.high_qc().round, 2);
    let ps = proposals(&s.actions);
    assert_eq!(ps.len(), 1, "{:?}", s.actions);
    let b3 = &ps[0].block;
    assert_eq!(
        (b3.round, b3.height, b3.author, b3.parent_id),
        (3, 3, me, b2.id())
    );
    assert!(b3.tc.is_none());
    assert_eq!(b3.payload.len(), 2);
    verify_qc(CHAIN, &f.committee, &f.genesis.id(), &b3.qc).unwrap();
    assert_eq!(
        b3.qc.votes.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![0, 1, 3]
    );
    verify(
        f.committee.key(me).unwrap(),
        &Block::proposal_message(CHAIN, &b3.id()),
        &ps[0].signature,
    )
    .unwrap();
    // Late votes for round 2 are stale now; the leader does not propose round 3 twice.
    let s = vote(&mut core, 2, f.vote(&b2, 2));
    assert!(matches!(
        s.error,
        Some(ConsensusError::Stale { round: 2, .. })
    ));
    assert!(s.actions.is_empty());
    let s = core.handle(10_000, Event::Tick, &mut payload);
    assert!(proposals(&s.actions).is_empty());
}

/// A leader whose execution is behind waits `backlog_block_interval_ms` after entering its
/// round before it proposes (so its block gathers more); one that is not proposes at once.
#[test]
fn backlogged_leader_waits_before_proposing() {
    let f = Fixture::new();
    let me = 3; // leader of round 3
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    for backlogged in [false, true] {
        let mut cfg = f.cfg(me);
        cfg.backlog_block_interval_ms = 100;
        let mut core = f.core_with(cfg, SafetyData::default());
        deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
        let own = votes(&deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2)));
        let mut payload = DummyPayload::new(9, 10, 2);
        payload.backlogged = backlogged;
        let mut proposed = Vec::new();
        for (from, vote) in [
            (me, own[0].1.clone()),
            (0, f.vote(&b2, 0)),
            (1, f.vote(&b2, 1)),
        ] {
            let s = core.handle(
                1_000,
                Event::Message {
                    from,
                    msg: ConsensusMessage::Vote(vote),
                },
                &mut payload,
            );
            proposed.extend(proposals(&s.actions));
        }
        assert_eq!(core.round(), 3, "the QC of round 2 moved it on");
        if !backlogged {
            assert_eq!(proposed.len(), 1, "proposes at once");
            continue;
        }
        assert!(proposed.is_empty(), "waits while execution is behind");
        let s = core.handle(1_099, Event::Tick, &mut payload);
        assert!(
            proposals(&s.actions).is_empty(),
            "still within the interval"
        );
        let s = core.handle(1_100, Event::Tick, &mut payload);
        let ps = proposals(&s.actions);
        assert_eq!(ps.len(), 1, "proposes once the interval passed");
        assert_eq!((ps[0].block.round, ps[0].block.payload.len()), (3, 2));
    }
}

// ---- timeout certificates -----------------------------------------------------------------------

#[test]
fn timeouts_join_at_f_plus_one_and_form_tc_at_quorum() {
    let f = Fixture::new();
    let me = 2; // leader of round 2
    let mut core = f.core(me);
    let mut payload = DummyPayload::new(7, 10, 3);
    let gqc = f.genesis_qc.clone();
    let mut timeout_from = |core: &mut netchain_consensus::Core, t: netchain_types::Timeout| {
        core.handle(
            10,
            Event::Message {
                from: t.author,
                msg: ConsensusMessage::Timeout(t),
            },
            &mut payload,
        )
    };
    // One timeout (f = 1): nothing.
    let s = timeout_from(&mut core, f.timeout(1, &gqc, 0));
    assert_eq!((s.error, s.actions.len()), (None, 0));
    // f+1: joins, persisting before broadcasting.
    let s = timeout_from(&mut core, f.timeout(1, &gqc, 1));
    assert_eq!(s.error, None);
    assert_eq!(s.actions.len(), 2, "{:?}", s.actions);
    let Action::PersistSafety(saved) = &s.actions[0] else {
        panic!("{:?}", s.actions)
    };
    let own = broadcast_timeouts(&s.actions);
    assert_eq!(own.len(), 1);
    assert_eq!((own[0].round, own[0].author), (1, me));
    assert_eq!(saved.last_timeout.as_ref(), Some(&own[0]));
    assert_eq!(core.round(), 1);
    // Its own timeout comes back (broadcast includes itself): quorum, TC, round 2, and as leader
    // of round 2 it proposes a block carrying the TC.
    let s = timeout_from(&mut core, own[0].clone());
    assert_eq!(s.error, None);
    assert_eq!(core.round(), 2);
    let ps = proposals(&s.actions);
    assert_eq!(ps.len(), 1, "{:?}", s.actions);
    let b2 = ps[0].block.clone();
    assert_eq!((b2.round, b2.height, b2.author), (2, 1, me));
    assert_eq!(b2.qc, gqc);
    let tc = b2.tc.as_ref().expect("block carries the TC");
    assert_eq!(tc.round, 1);
    assert_eq!(
        tc.timeouts.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    verify_tc(CHAIN, &f.committee, tc).unwrap();
    // Late timeouts for round 1 are stale.
    let s = timeout_from(&mut core, f.timeout(1, &gqc, 3));
    assert!(matches!(
        s.error,
        Some(ConsensusError::Stale {
            round: 1,
            current: 2
        })
    ));

    // Another validator that never saw the timeouts accepts the block via its TC and votes.
    let mut other = f.core(0);
    let actions = deliver_ok(
        &mut other,
        10,
        me,
        ConsensusMessage::Proposal(ps[0].clone()),
    );
    assert_eq!(other.round(), 2);
    assert_vote_for(&actions, &b2, 0, f.leader(3));
}

#[test]
fn tc_with_higher_qc_moves_high_qc_and_round() {
    // Timeouts carry high QCs; a TC formed from them advances the round, and a timeout's QC is
    // adopted as high QC.
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    for author in 1..=3 {
        let s = deliver(
            &mut core,
            0,
            author as u16,
            ConsensusMessage::Timeout(f.timeout(2, &q1, author)),
            &mut NoPayload,
        );
        assert_eq!(s.error, None);
    }
    assert_eq!(core.high_qc(), &q1);
    assert_eq!(core.round(), 3);
}

// ---- leaders ------------------------------------------------------------------------------------

#[test]
fn proposal_from_wrong_leader_is_refused() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let mut b1 = f.child(1, &f.genesis, &f.genesis_qc);
    b1.author = 2;
    let p = f.proposal_signed_by(&b1, 2);
    let s = deliver(
        &mut core,
        0,
        2,
        ConsensusMessage::Proposal(p),
        &mut NoPayload,
    );
    assert_eq!(
        s.error,
        Some(ConsensusError::WrongLeader {
            round: 1,
            leader: 1,
            author: 2
        })
    );
    assert!(s.actions.is_empty());
    assert!(core.block(&b1.id()).is_none());
    assert_eq!(core.safety(), &SafetyData::default());
}

// ---- bad inputs ---------------------------------------------------------------------------------

/// Delivers `msg` and checks it was refused with `check` and changed nothing observable.
fn refuse(
    core: &mut netchain_consensus::Core,
    from: u16,
    msg: ConsensusMessage,
    check: impl FnOnce(&ConsensusError) -> bool,
) {
    let before = (
        core.round(),
        core.safety().clone(),
        core.high_qc().clone(),
        core.committed(),
        core.buffered_blocks(),
    );
    let s = deliver(core, 0, from, msg, &mut NoPayload);
    let err = s.error.expect("refused");
    assert!(check(&err), "unexpected error {err:?}");
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    let after = (
        core.round(),
        core.safety().clone(),
        core.high_qc().clone(),
        core.committed(),
        core.buffered_blocks(),
    );
    assert_eq!(before, after);
}

#[test]
fn bad_proposal_signature_is_refused() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let by_other = f.proposal_signed_by(&b1, 2);
    refuse(&mut core, 1, ConsensusMessage::Proposal(by_other), |e| {
        *e == ConsensusError::BadSignature {
            what: "proposal",
            author: 1,
        }
    });
    let mut tampered = f.proposal(&b1);
    tampered.block.timestamp_ms += 1;
    refuse(&mut core, 1, ConsensusMessage::Proposal(tampered), |e| {
        matches!(
            e,
            ConsensusError::BadSignature {
                what: "proposal",
                ..
            }
        )
    });
    // The genuine one still gets the vote.
    assert_vote_for(
        &deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1)),
        &b1,
        0,
        f.leader(2),
    );
}

#[test]
fn bad_quorum_certificates_are_refused() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    let bad_qc =
        |e: &ConsensusError| matches!(e, ConsensusError::BadCertificate { what: "quorum", .. });

    let mut qcs: Vec<QuorumCert> = Vec::new();
    // Too few signatures.
    qcs.push(f.qc(&b1, &[0, 1]));
    // Enough signers, but one signature is forged (made by another key).
    let mut forged = f.qc(&b1, &[0, 1, 2]);
    forged.votes[2].1 = f.keys[0].sign(&Vote::signing_message(CHAIN, &b1.id(), 1, 1));
    qcs.push(forged);
    // Duplicate signer.
    let mut dup = f.qc(&b1, &[0, 1, 2]);
    dup.votes[2] = dup.votes[1];
    qcs.push(dup);
    // Signer outside the committee.
    let mut outsider = f.qc(&b1, &[0, 1, 2]);
    outsider.votes[2].0 = 7;
    qcs.push(outsider);
    // Valid signatures, but over another round than the one claimed.
    let mut moved = f.qc(&b1, &[0, 1, 2]);
    for (i, sig) in moved.votes.iter_mut() {
        *sig = f.keys[*i as usize].sign(&Vote::signing_message(CHAIN, &b1.id(), 2, 1));
    }
    qcs.push(moved);

    for qc in qcs {
        let mut b2 = f.child(2, &b1, &f.full_qc(&b1));
        b2.qc = qc;
        refuse(&mut core, 2, f.proposal_msg(&b2), bad_qc);
        assert_eq!(core.round(), 1);
    }
    // An unsigned "genesis" certificate for a block that is not genesis.
    let fake_parent = netchain_types::hash_parts("not-genesis", &[]);
    let mut b = f.child(1, &f.genesis, &f.genesis_qc);
    b.parent_id = fake_parent;
    b.qc = QuorumCert::genesis(fake_parent);
    // (On a fresh core: this core already has round 1's proposal, so a second one would be
    // refused as equivocation before its certificate is even looked at.)
    let mut fresh = f.core(0);
    refuse(&mut fresh, 1, f.proposal_msg(&b), bad_qc);
    let s = deliver(&mut core, 0, 1, f.proposal_msg(&b), &mut NoPayload);
    assert!(matches!(
        s.error,
        Some(ConsensusError::Equivocation {
            round: 1,
            author: 1
        })
    ));
    // A timeout carrying a bad QC is refused the same way.
    let t = f.timeout(2, &f.qc(&b1, &[0, 1]), 2);
    refuse(&mut core, 2, ConsensusMessage::Timeout(t), bad_qc);
}

#[test]
fn bad_timeouts_are_refused() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let mut t = f.timeout(1, &f.genesis_qc, 2);
    t.signature = f.keys[1].sign(&netchain_types::Timeout::signing_message(CHAIN, 1, 0));
    refuse(&mut core, 2, ConsensusMessage::Timeout(t), |e| {
        *e == ConsensusError::BadSignature {
            what: "timeout",
            author: 2,
        }
    });
    let mut t = f.timeout(1, &f.genesis_qc, 2);
    t.author = 9;
    refuse(&mut core, 2, ConsensusMessage::Timeout(t), |e| {
        *e == ConsensusError::UnknownValidator(9)
    });
    // A TC in a block with a forged timeout signature.
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    deliver_ok(&mut core, 0, 1, f.proposal_msg(&b1));
    let mut tc = f.tc(2, &[(0, 1), (1, 1), (2, 1)]);
    tc.timeouts[1].2 = tc.timeouts[0].2;
    let b3 = f.block(3, &b1, &q1, Some(tc), vec![]);
    refuse(&mut core, 3, f.proposal_msg(&b3), |e| {
        matches!(
            e,
            ConsensusError::BadCertificate {
                what: "timeout",
                round: 2,
                ..
            }
        )
    });
}

#[test]
fn bad_votes_are_refused() {
    let f = Fixture::new();
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    // Validator 2 leads round 2, so it collects round-1 votes.
    let mut leader = f.core(2);
    deliver_ok(&mut leader, 0, 1, f.proposal_msg(&b1));
    // Unknown sender index.
    refuse(
        &mut leader,
        9,
        ConsensusMessage::Vote(f.vote(&b1, 0)),
        |e| *e == ConsensusError::UnknownValidator(9),
    );
    // Unknown vote author.
    let mut v = f.vote(&b1, 0);
    v.author = 4;
    refuse(&mut leader, 0, ConsensusMessage::Vote(v), |e| {
        *e == ConsensusError::UnknownValidator(4)
    });
    // Signature by someone else.
    let mut v = f.vote(&b1, 0);
    v.signature = f.vote(&b1, 1).signature;
    refuse(&mut leader, 0, ConsensusMessage::Vote(v), |e| {
        *e == ConsensusError::BadSignature {
            what: "vote",
            author: 0,
        }
    });
    // A vote sent to a validator that does not lead the next round.
    let mut not_leader = f.core(0);
    deliver_ok(&mut not_leader, 0, 1, f.proposal_msg(&b1));
    refuse(
        &mut not_leader,
        1,
        ConsensusMessage::Vote(f.vote(&b1, 1)),
        |e| *e == ConsensusError::NotNextLeader { round: 1 },
    );
    // Forged votes never add up to a QC: two good ones plus a bad one leave the round alone.
    for i in [0, 1] {
        let s = deliver(
            &mut leader,
            0,
            i as u16,
            ConsensusMessage::Vote(f.vote(&b1, i)),
            &mut NoPayload,
        );
        assert_eq!(s.error, None);
    }
    let mut v = f.vote(&b1, 3);
    v.signature = f.vote(&b1, 0).signature;
    refuse(&mut leader, 3, ConsensusMessage::Vote(v), |e| {
        matches!(e, ConsensusError::BadSignature { .. })
    });
    assert_eq!(leader.round(), 1);
    assert_eq!(leader.high_qc().round, 0);
}

#[test]
fn oversized_blocks_are_refused() {
    let f = Fixture::new();
    let mut cfg = f.cfg(0);
    cfg.block_max_txs = 2;
    cfg.block_max_bytes = 2_000;
    let mut core = f.core_with(cfg, SafetyData::default());
    let too_many = f.block(
        1,
        &f.genesis,
        &f.genesis_qc,
        None,
        (1..=3).map(|n| dummy_tx(1, n)).collect(),
    );
    refuse(
        &mut core,
        1,
        f.proposal_msg(&too_many),
        |e| matches!(e, ConsensusError::BlockTooLarge { block, txs: 3, .. } if *block == too_many.id()),
    );
    let mut too_big = f.block(
        1,
        &f.genesis,
        &f.genesis_qc,
        None,
        vec![dummy_tx(1, 1), dummy_tx(1, 2)],
    );
    too_big.payload[0].tx.chain_id = "x".repeat(2_000);
    refuse(
        &mut core,
        1,
        f.proposal_msg(&too_big),
        |e| matches!(e, ConsensusError::BlockTooLarge { txs: 2, bytes, .. } if *bytes > 2_000),
    );
    let fits = f.block(
        1,
        &f.genesis,
        &f.genesis_qc,
        None,
        vec![dummy_tx(1, 1), dummy_tx(1, 2)],
    );
    assert_vote_for(
        &deliver_ok(&mut core, 0, 1, f.proposal_msg(&fits)),
        &fits,
        0,
        f.leader(2),
    );
}

#[test]
fn block_timestamps_are_checked() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let mut b1 = f.child(1, &f.genesis, &f.genesis_qc);
    b1.timestamp_ms = 1_000_000;
    let s = deliver(&mut core, 0, 1, f.proposal_msg(&b1), &mut NoPayload);
    assert!(
        matches!(s.error, Some(ConsensusError::MalformedBlock { .. })),
        "{:?}",
        s.error
    );
    no_votes(&s.actions);
}

// ---- orphans and sync ---------------------------------------------------------------------------

#[test]
fn orphan_proposal_is_buffered_synced_and_voted() {
    let f = Fixture::new();
    let mut core = f.core(0);
    let b1 = f.child(1, &f.genesis, &f.genesis_qc);
    let q1 = f.full_qc(&b1);
    let b2 = f.child(2, &b1, &q1);
    let actions = deliver_ok(&mut core, 0, 2, f.proposal_msg(&b2));
    no_votes(&actions);
    assert_eq!(
        actions,
        vec![Action::Send {
            to: 2,
            msg: ConsensusMessage::SyncRequest {
                block_id: b1.id(),
                max_blocks: 2
            }
        }]
    );
    assert_eq!(core.round(), 2, "the verified QC moved the round");
    let buffered = core.buffered_blocks();
    // Re-deliveries of the same orphan neither ask again (rate limit) nor take more buffer space.
    for _ in 0..5 {
        assert!(deliver_ok(&mut core, 1, 2, f.proposal_msg(&b2)).is_empty());
    }
    assert_eq!(
        core.buffered_blocks(),
        buffered,
        "duplicate orphans must not fill the buffer"
    );

    // An unrequested sync answer is refused.
    let s = deliver(
        &mut core,
        1,
        2,
        ConsensusMessage::SyncResponse {
            blocks: vec![b2.clone()],
        },
        &mut NoPayload,
    );
    assert!(matches!(s.error, Some(ConsensusError::BadSync(_))));
    // The requested one links B1 in; B2 follows from the buffer and gets the vote.
    let actions = deliver_ok(
        &mut core,
        2,
        2,
        ConsensusMessage::SyncResponse {
            blocks: vec![b1.clone()],
        },
    );
    assert_vote_for(&actions, &b2, 0, f.leader(3));
    assert!(core.block(&b1.id()).is_some() && core.block(&b2.id()).is_some());
}

#[test]
fn far_behind_asks_for_catch_up_and_commits_served_blocks() {
    let f = Fixture::new();
    let mut cfg = f.cfg(0);
    cfg.sync_max_blocks = 4;
    let mut core = f.core_with(cfg, SafetyData::default());
    let mut chain = vec![f.genesis.clone()];
    let mut qc = f.genesis_qc.clone();
    for round in 1..=8 {
        let b = f.child(round, chain.last().unwrap(), &qc);
        qc = f.full_qc(&b);
        chain.push(b);
    }
    let actions = deliver_ok(&mut core, 0, 0, f.proposal_msg(&chain[8]));
    // Validator 0 leads round 8 and lacks the QC's block: it also asks a signer for that block.
    let actions: Vec<_> = actions
        .into_iter()
        .filter(|a| {
            !matches!(
                a,
                Action::Send {
                    msg: ConsensusMessage::SyncRequest { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![Action::Send {
            to: 0,
            msg: ConsensusMessage::CatchUpRequest {
                from_height: 1,
                max_blocks: 4
            }
        }]
    );
    // Serve heights 1..=4: 1..=3 are certified by their children and inserted; B1 commits
    // (QC(B2) with B2 right after B1), and it asks for more from the first uncertified height.
    let actions = deliver_ok(
        &mut core,
        0,
        0,
        ConsensusMessage::CatchUpResponse {
            blocks: chain[1..=4].to_vec(),
        },
    );
    let cs = commits(&actions);
    assert_eq!(cs.len(), 1, "{actions:?}");
    assert_eq!(ids(&cs[0].0), vec![chain[1].id()]);
    assert!(actions.contains(&Action::Send {
        to: 0,
        msg: ConsensusMessage::CatchUpRequest {
            from_height: 4,
            max_blocks: 4
        }
    }));
    // A response whose blocks do not link is refused.
    let s = deliver(
        &mut core,
        0,
        0,
        ConsensusMessage::CatchUpResponse {
            blocks: vec![chain[5].clone(), chain[7].clone()],
        },
        &mut NoPayload,
    );
    assert!(matches!(s.error, Some(ConsensusError::BadSync(_))));
    // The next batch (overlapping what it has) certifies B4, which commits B2.
    let actions = deliver_ok(
        &mut core,
        0,
        0,
        ConsensusMessage::CatchUpResponse {
            blocks: chain[2..=5].to_vec(),
        },
    );
    let cs = commits(&actions);
    assert_eq!(cs.len(), 1, "{actions:?}");
    assert_eq!(ids(&cs[0].0), vec![chain[2].id()]);
    assert_eq!(core.committed(), (2, chain[2].id()));
    assert!(core.block(&chain[4].id()).is_some());
    no_votes(&actions);
}

#[test]
fn leader_restarting_after_proposing_never_proposes_twice() {
    let f = Fixture::new();
    let me = 1; // leader of round 1
    let mut core = f.core(me);
    let mut payload = DummyPayload::new(5, 100, 2);
    let step = core.handle(1, Event::Tick, &mut payload);
    let ps = proposals(&step.actions);
    assert_eq!(ps.len(), 1, "{:?}", step.actions);
    let b1 = ps[0].block.clone();
    assert_eq!((b1.round, b1.author, b1.payload.len()), (1, me, 2));
    // Whatever the restart needs to know about this round is persisted before the proposal leaves.
    let persist_at = step
        .actions
        .iter()
        .position(|a| matches!(a, Action::PersistSafety(_)))
        .expect("round recorded durably before proposing");
    let broadcast_at = step
        .actions
        .iter()
        .position(|a| matches!(a, Action::Broadcast(ConsensusMessage::Proposal(_))))
        .unwrap();
    assert!(persist_at < broadcast_at, "{:?}", step.actions);
    let saved = persisted(&step.actions).pop().unwrap();
    // The leader's own vote: once, for its block, to the next leader.
    assert_vote_for(&step.actions, &b1, me, f.leader(2));
    // Its proposal coming back through the broadcast changes nothing.
    let back = deliver(
        &mut core,
        2,
        me,
        ConsensusMessage::Proposal(ps[0].clone()),
        &mut payload,
    );
    assert_eq!(
        (back.error, back.actions.len()),
        (None, 0),
        "{:?}",
        back.actions
    );

    // Crash right after the proposal went out, restart from the persisted safety data: the
    // leader must not sign a second, different block for round 1.
    let mut restarted = f.core_with(f.cfg(me), saved);
    for now in [3, 500, 999] {
        let step = restarted.handle(now, Event::Tick, &mut payload);
        assert!(
            proposals(&step.actions).is_empty(),
            "re-proposed: {:?}",
            step.actions
        );
    }
    // Nor does it vote again in round 1.
    no_votes(&deliver_ok(
        &mut restarted,
        4,
        me,
        ConsensusMessage::Proposal(ps[0].clone()),
    ));
}
