//! Bugs the simulator found in the cores, each pinned by the seed that found it (which fails
//! without the fix) and, where the rule is local, by a hand-driven test of the core itself.

mod common;

use common::run_all;
use netchain_consensus::{Action, Core, CoreConfig, Event, PayloadSource, SafetyData};
use netchain_crypto::Keypair;
use netchain_sim::Options;
use netchain_types::{
    hash_parts, Block, Committee, ConsensusMessage, QuorumCert, SignedTransaction, Timeout,
    Validator, ValidatorIndex, Vote,
};

/// Liveness: a validator that missed the timeouts forming the certificate the others advanced
/// with stayed one round behind forever (the others never time out that round again, and with
/// one Byzantine validator withholding, no round gathers a quorum). Fixed in `Core::on_timeout`:
/// a stale timeout from its author is answered with the timeouts held for that round.
#[test]
fn seed_3110_laggard_gets_the_timeouts_it_missed() {
    run_all([3110], &Options::default());
}

/// Liveness: a validator more than `sync_max_blocks` behind asked for catch-up again and again
/// from the same height, but catch-up serves committed blocks only, and the gap was uncommitted
/// blocks (commits were waiting for this very validator): it never synced them. Fixed in
/// `Core::request_ancestors`: a repeated catch-up from the same height alternates with sync.
#[test]
fn seed_243_catch_up_that_brings_nothing_falls_back_to_sync() {
    run_all([243], &Options::default());
}

/// Liveness (a bug in the first fix above, found by the 100 000-seed run): two validators that
/// had both left a round answered each other's old timeouts of that round with their held ones,
/// each answer holding the answerer's own timeout, which the other answered again: a message
/// storm (487 million messages dropped in 30 simulated seconds, nothing committed). Fixed by
/// answering one validator at most once per retry interval.
#[test]
fn seed_26544_stale_timeout_answers_do_not_ping_pong() {
    let opts = Options {
        scale_percent: 50,
        ..Options::default()
    };
    let outcomes = run_all([26544], &opts);
    if let Some(o) = outcomes.first().filter(|o| o.plan.seed == 26544) {
        assert!(o.stats.delivered < 200_000, "message storm: {:?}", o.stats);
    }
}

/// Liveness: a leader that formed a QC for a block it never received asked the first signer for
/// it, and on every retry the same one; that signer was Byzantine and withheld, so the leader
/// never proposed and nothing committed. Fixed in `Core::request_block`: retries go round the
/// validators that hold the block (the QC's signers; for an orphan, its sender first).
#[test]
fn seed_33357_block_requests_rotate_among_holders() {
    let opts = Options {
        scale_percent: 50,
        ..Options::default()
    };
    run_all([33357], &opts);
}

const CHAIN: &str = "regress";

struct NoPayload;

impl PayloadSource for NoPayload {
    fn has_pending(&self) -> bool {
        false
    }
    fn pull(&mut self, _: u64, _: usize, _: usize, _: &[&Block]) -> Vec<SignedTransaction> {
        Vec::new()
    }
}

struct Fixture {
    keys: Vec<Keypair>,
    committee: Committee,
    genesis: Block,
}

impl Fixture {
    fn new() -> Self {
        let keys: Vec<_> = (0..4u8)
            .map(|i| Keypair::from_secret([i + 1; 32]))
            .collect();
        let committee = Committee {
            validators: keys
                .iter()
                .map(|k| Validator {
                    public_key: k.public(),
                    p2p_address: String::new(),
                    api_address: String::new(),
                })
                .collect(),
        };
        let genesis = Block::genesis(hash_parts("regress-genesis", &[]), 0);
        Self {
            keys,
            committee,
            genesis,
        }
    }

    fn core(&self, me: ValidatorIndex) -> Core {
        Core::new(
            CoreConfig::new(CHAIN, self.committee.clone(), me),
            self.keys[me as usize].clone(),
            self.genesis.id(),
            self.genesis.clone(),
            QuorumCert::genesis(self.genesis.id()),
            SafetyData::default(),
            0,
        )
    }

    fn timeout(&self, round: u64, author: ValidatorIndex) -> ConsensusMessage {
        let high_qc = QuorumCert::genesis(self.genesis.id());
        let msg = Timeout::signing_message(CHAIN, round, high_qc.round);
        ConsensusMessage::Timeout(Timeout {
            round,
            high_qc,
            author,
            signature: self.keys[author as usize].sign(&msg),
        })
    }
}

fn deliver(core: &mut Core, from: ValidatorIndex, msg: ConsensusMessage) -> Vec<Action> {
    core.handle(10, Event::Message { from, msg }, &mut NoPayload)
        .actions
}

fn broadcast_timeout_rounds(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(ConsensusMessage::Timeout(t)) => Some(t.round),
            _ => None,
        })
        .collect()
}

/// Liveness (first found with seed 5 of an earlier plan, before the fix above masked most of
/// its cases): f+1 timeouts for a round ahead of ours come from at least one honest validator
/// that is there; we must join it (move to that round and time out), else validators two rounds
/// apart never meet. Fixed in `Core::on_timeout` (the join rule now covers later rounds).
#[test]
fn f_plus_one_timeouts_for_a_later_round_are_joined() {
    let f = Fixture::new();
    let mut core = f.core(0);
    assert_eq!(core.round(), 1);
    assert!(broadcast_timeout_rounds(&deliver(&mut core, 1, f.timeout(3, 1))).is_empty());
    let actions = deliver(&mut core, 2, f.timeout(3, 2));
    assert_eq!(
        core.round(),
        3,
        "f+1 timeouts for round 3 must move us there"
    );
    assert_eq!(broadcast_timeout_rounds(&actions), vec![3]);
}

/// The core-level half of seed 3110: after advancing with the timeouts of round 1, a stale
/// round-1 timeout from a validator that missed them is answered with those timeouts.
#[test]
fn stale_timeout_is_answered_with_the_held_timeouts() {
    let f = Fixture::new();
    let mut core = f.core(1);
    deliver(&mut core, 2, f.timeout(1, 2));
    let joined = deliver(&mut core, 3, f.timeout(1, 3));
    let own = joined
        .iter()
        .find_map(|a| match a {
            Action::Broadcast(m @ ConsensusMessage::Timeout(_)) => Some(m.clone()),
            _ => None,
        })
        .expect("joined the timeout");
    deliver(&mut core, 1, own);
    assert_eq!(core.round(), 2, "TC of round 1 formed");
    let answer = deliver(&mut core, 0, f.timeout(1, 0));
    let mut sent: Vec<_> = answer
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to: 0,
                msg: ConsensusMessage::Timeout(t),
            } if t.round == 1 => Some(t.author),
            _ => None,
        })
        .collect();
    sent.sort();
    assert_eq!(sent, vec![1, 2, 3]);
    // A third party relaying someone else's stale timeout gets nothing.
    assert!(deliver(&mut core, 2, f.timeout(1, 0)).is_empty());
    // Asked again at once (an old copy, or a peer answering our answer): no second answer.
    assert!(deliver(&mut core, 0, f.timeout(1, 0)).is_empty());
}

/// The core-level half of seed 33357: the retry of a block request asks another signer.
#[test]
fn block_request_retries_ask_another_signer() {
    let f = Fixture::new();
    let mut core = f.core(2); // leader of round 2: collects the votes of round 1
    let unknown = Block {
        round: 1,
        height: 1,
        parent_id: f.genesis.id(),
        qc: QuorumCert::genesis(f.genesis.id()),
        tc: None,
        author: 1,
        timestamp_ms: 1,
        payload: Vec::new(),
        batches: Vec::new(),
    };
    let mut asked = Vec::new();
    for voter in [0u16, 1, 3] {
        let msg = Vote::signing_message(CHAIN, &unknown.id(), 1, 1);
        let vote = Vote {
            block_id: unknown.id(),
            round: 1,
            height: 1,
            author: voter,
            signature: f.keys[voter as usize].sign(&msg),
        };
        asked.extend(sync_targets(&deliver(
            &mut core,
            voter,
            ConsensusMessage::Vote(vote),
        )));
    }
    assert_eq!(core.round(), 2, "QC of round 1 formed");
    for now in [700, 1_300] {
        let tick = core.handle(now, Event::Tick, &mut NoPayload).actions;
        asked.extend(sync_targets(&tick));
    }
    assert_eq!(asked, vec![0, 1, 3], "each retry asks the next signer");
}

fn sync_targets(actions: &[Action]) -> Vec<ValidatorIndex> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: ConsensusMessage::SyncRequest { .. },
            } => Some(*to),
            _ => None,
        })
        .collect()
}
