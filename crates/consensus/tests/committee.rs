//! A 4-validator committee in memory: a FIFO network of (from, to, message), a simulated clock
//! advanced by ticks, and a driver that performs each core's actions in order and answers sync
//! requests from the blocks it has seen. Deterministic: no sockets, threads or randomness.

mod common;

use common::*;
use netchain_consensus::{verify_qc, Action, ConsensusError, Core, CoreConfig, Event, SafetyData};
use netchain_types::{Block, ConsensusMessage, Digest, QuorumCert, ValidatorIndex};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Simulated time per network hop (one pass over the queue).
const HOP_MS: u64 = 5;

struct Node {
    core: Core,
    payload: DummyPayload,
    /// The safety data as last persisted by the driver.
    safety: SafetyData,
    /// Committed blocks; index h-1 holds height h.
    committed: Vec<Block>,
    /// QC of the last committed block (what a restart resumes from).
    commit_qc: QuorumCert,
    /// Every block this node's driver has seen (proposals, sync answers, commits).
    store: HashMap<Digest, Block>,
    /// The block this node voted for in each round.
    voted: HashMap<u64, Digest>,
    /// Timeouts this node signed, by round (must be one per round).
    timed_out: HashMap<u64, u64>,
    sync_requests: usize,
    catch_up_requests: usize,
}

struct Net {
    f: Fixture,
    nodes: Vec<Node>,
    queue: VecDeque<(ValidatorIndex, ValidatorIndex, ConsensusMessage)>,
    now: u64,
    /// Messages from or to these validators are dropped.
    cut: HashSet<ValidatorIndex>,
    /// These validators are not ticked either (crashed).
    crashed: HashSet<ValidatorIndex>,
    /// Every proposal broadcast: round -> (author, block id).
    proposed: BTreeMap<u64, Vec<(ValidatorIndex, Digest)>>,
    errors: Vec<(ValidatorIndex, ConsensusError)>,
}

impl Net {
    fn new(tune: impl Fn(&mut CoreConfig)) -> Self {
        let f = Fixture::new();
        let nodes = (0..N as u16)
            .map(|i| {
                let mut cfg = f.cfg(i);
                tune(&mut cfg);
                let mut store = HashMap::new();
                store.insert(f.genesis.id(), f.genesis.clone());
                Node {
                    core: f.core_with(cfg, SafetyData::default()),
                    payload: DummyPayload::new(i as u8 + 1, 40, 3),
                    safety: SafetyData::default(),
                    committed: Vec::new(),
                    commit_qc: f.genesis_qc.clone(),
                    store,
                    voted: HashMap::new(),
                    timed_out: HashMap::new(),
                    sync_requests: 0,
                    catch_up_requests: 0,
                }
            })
            .collect();
        Self {
            f,
            nodes,
            queue: VecDeque::new(),
            now: 0,
            cut: HashSet::new(),
            crashed: HashSet::new(),
            proposed: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// Checks an outgoing signed message against what the node persisted before it.
    fn check_outgoing(&mut self, i: ValidatorIndex, msg: &ConsensusMessage) {
        let node = &mut self.nodes[i as usize];
        match msg {
            ConsensusMessage::Vote(v) => {
                assert_eq!(v.author, i);
                assert!(
                    node.safety.last_voted_round >= v.round
                        && node.safety.last_vote.as_ref() == Some(v),
                    "node {i} sent a vote for round {} before persisting it",
                    v.round
                );
                let prev = node.voted.insert(v.round, v.block_id);
                assert!(
                    prev.is_none_or(|p| p == v.block_id),
                    "node {i} voted twice in round {}",
                    v.round
                );
            }
            ConsensusMessage::Timeout(t) if t.author == i => {
                assert!(
                    node.safety.last_voted_round >= t.round,
                    "node {i} sent a timeout for round {} before persisting it",
                    t.round
                );
                let prev = node.timed_out.insert(t.round, t.high_qc.round);
                assert!(
                    prev.is_none_or(|p| p == t.high_qc.round),
                    "node {i} signed two timeouts for round {}",
                    t.round
                );
            }
            ConsensusMessage::Proposal(p) => {
                assert_eq!(p.block.author, i);
                assert_eq!(
                    p.block.author,
                    self.f.leader(p.block.round),
                    "proposer rotation"
                );
                let round = self.proposed.entry(p.block.round).or_default();
                assert!(round.is_empty(), "round {} proposed twice", p.block.round);
                round.push((i, p.block.id()));
            }
            _ => {}
        }
    }

    fn apply(&mut self, i: ValidatorIndex, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::StoreBlock(b) => {
                    self.nodes[i as usize].store.insert(b.id(), b);
                }
                Action::PersistSafety(s) => {
                    let node = &mut self.nodes[i as usize];
                    assert!(s.last_voted_round >= node.safety.last_voted_round);
                    node.safety = s;
                }
                Action::Send { to, msg } => {
                    self.check_outgoing(i, &msg);
                    self.queue.push_back((i, to, msg));
                }
                Action::Broadcast(msg) => {
                    self.check_outgoing(i, &msg);
                    for to in 0..N as u16 {
                        self.queue.push_back((i, to, msg.clone()));
                    }
                }
                Action::Commit { blocks, commit_qc } => {
                    let genesis_id = self.f.genesis.id();
                    verify_qc(CHAIN, &self.f.committee, &genesis_id, &commit_qc)
                        .expect("commit QC verifies");
                    assert_eq!(commit_qc.block_id, blocks.last().expect("non-empty").id());
                    let node = &mut self.nodes[i as usize];
                    for b in blocks {
                        let parent = node.committed.last().map_or(genesis_id, Block::id);
                        assert_eq!(
                            b.height as usize,
                            node.committed.len() + 1,
                            "heights contiguous"
                        );
                        assert_eq!(b.parent_id, parent, "node {i}: committed chain links");
                        node.store.insert(b.id(), b.clone());
                        node.committed.push(b);
                    }
                    node.commit_qc = commit_qc;
                }
            }
        }
        let node = &self.nodes[i as usize];
        assert_eq!(node.core.committed().0 as usize, node.committed.len());
    }

    /// What the driver (not the core) does with sync requests: answer from its store.
    fn serve(&mut self, at: ValidatorIndex, from: ValidatorIndex, msg: &ConsensusMessage) -> bool {
        let node = &mut self.nodes[at as usize];
        let answer = match msg {
            ConsensusMessage::SyncRequest {
                block_id,
                max_blocks,
            } => {
                let mut blocks = Vec::new();
                let mut cursor = *block_id;
                while blocks.len() < *max_blocks as usize {
                    let Some(b) = node.store.get(&cursor) else {
                        break;
                    };
                    cursor = b.parent_id;
                    blocks.push(b.clone());
                }
                ConsensusMessage::SyncResponse { blocks }
            }
            ConsensusMessage::CatchUpRequest {
                from_height,
                max_blocks,
            } => {
                let start = (*from_height as usize)
                    .saturating_sub(1)
                    .min(node.committed.len());
                let blocks = node.committed[start..]
                    .iter()
                    .take(*max_blocks as usize)
                    .cloned()
                    .collect();
                ConsensusMessage::CatchUpResponse { blocks }
            }
            _ => return false,
        };
        self.queue.push_back((at, from, answer));
        true
    }

    fn deliver(&mut self, from: ValidatorIndex, to: ValidatorIndex, msg: ConsensusMessage) {
        if self.cut.contains(&from) || self.cut.contains(&to) {
            return;
        }
        match &msg {
            ConsensusMessage::SyncRequest { .. } => self.nodes[from as usize].sync_requests += 1,
            ConsensusMessage::CatchUpRequest { .. } => {
                self.nodes[from as usize].catch_up_requests += 1
            }
            _ => {}
        }
        if self.serve(to, from, &msg) {
            return;
        }
        let seen: Vec<Block> = match &msg {
            ConsensusMessage::Proposal(p) => vec![p.block.clone()],
            ConsensusMessage::SyncResponse { blocks }
            | ConsensusMessage::CatchUpResponse { blocks } => blocks.clone(),
            _ => Vec::new(),
        };
        let node = &mut self.nodes[to as usize];
        let step = node
            .core
            .handle(self.now, Event::Message { from, msg }, &mut node.payload);
        if step.error.is_none() {
            for b in seen {
                node.store.insert(b.id(), b);
            }
        }
        if let Some(e) = step.error {
            self.errors.push((to, e));
        }
        self.apply(to, step.actions);
    }

    /// One hop: deliver everything queued so far, then advance the clock and tick every live node.
    fn step(&mut self) {
        for _ in 0..self.queue.len() {
            let (from, to, msg) = self.queue.pop_front().unwrap();
            self.deliver(from, to, msg);
        }
        self.now += HOP_MS;
        for i in 0..N as u16 {
            if self.crashed.contains(&i) {
                continue;
            }
            let node = &mut self.nodes[i as usize];
            let step = node.core.handle(self.now, Event::Tick, &mut node.payload);
            assert_eq!(step.error, None);
            self.apply(i, step.actions);
        }
    }

    /// Restarts validator `i`: a new core from its last committed block and persisted safety
    /// data; everything else in memory is lost (the driver's store survives, as a database would).
    fn restart(&mut self, i: ValidatorIndex) {
        let node = &mut self.nodes[i as usize];
        let tip = node
            .committed
            .last()
            .cloned()
            .unwrap_or_else(|| self.f.genesis.clone());
        node.core = Core::new(
            self.f.cfg(i),
            self.f.keys[i as usize].clone(),
            self.f.genesis.id(),
            tip,
            node.commit_qc.clone(),
            node.safety.clone(),
            self.now,
        );
        // What the node does on restart: walk back from the recorded highest QC's block to the
        // committed tip through the stored blocks.
        let tip_id = node.core.committed().1;
        let mut chain = Vec::new();
        if let Some(qc) = &node.safety.one_chain_qc {
            let mut cursor = qc.block_id;
            while cursor != tip_id {
                match node.store.get(&cursor) {
                    Some(b) => {
                        cursor = b.parent_id;
                        chain.push(b.clone());
                    }
                    None => {
                        chain.clear();
                        break;
                    }
                }
            }
        }
        chain.reverse();
        node.core.recover(chain);
    }

    fn run_until(&mut self, max_steps: usize, done: impl Fn(&Net) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!(
            "no progress after {max_steps} steps: heights {:?}, rounds {:?}, errors {:?}",
            self.heights(),
            self.nodes
                .iter()
                .map(|n| n.core.round())
                .collect::<Vec<_>>(),
            self.errors.iter().rev().take(10).collect::<Vec<_>>()
        );
    }

    fn heights(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.committed.len()).collect()
    }

    /// Agreement: every height committed by two nodes holds the same block on both.
    fn assert_agreement(&self) {
        let longest = self.nodes.iter().max_by_key(|n| n.committed.len()).unwrap();
        for (i, node) in self.nodes.iter().enumerate() {
            for (h, b) in node.committed.iter().enumerate() {
                assert_eq!(
                    b.id(),
                    longest.committed[h].id(),
                    "node {i} disagrees at height {}",
                    h + 1
                );
            }
        }
    }

    /// Only refusals an honest run can produce (late messages, duplicate sync answers).
    fn assert_benign_errors(&self) {
        for (i, e) in &self.errors {
            assert!(
                matches!(e, ConsensusError::Stale { .. } | ConsensusError::BadSync(_)),
                "node {i} refused an honest message: {e:?}"
            );
        }
    }
}

fn committed_rounds_well_formed(net: &Net, node: usize) {
    let chain = &net.nodes[node].committed;
    for pair in chain.windows(2) {
        assert!(
            pair[0].round < pair[1].round,
            "rounds increase along the chain"
        );
    }
    for b in chain {
        assert_eq!(b.author, net.f.leader(b.round));
        let proposed = &net.proposed[&b.round];
        assert_eq!(
            proposed,
            &vec![(b.author, b.id())],
            "committed what was proposed"
        );
    }
}

#[test]
fn honest_committee_agrees_and_rotates_leaders() {
    let mut net = Net::new(|_| {});
    net.run_until(5_000, |n| n.heights().iter().all(|&h| h >= 20));
    net.assert_agreement();
    net.assert_benign_errors();
    for i in 0..N {
        committed_rounds_well_formed(&net, i);
    }
    // Every validator led, in round-robin order, and its blocks were committed.
    let chain = &net.nodes[0].committed;
    let authors: HashSet<_> = chain.iter().map(|b| b.author).collect();
    assert_eq!(authors.len(), N);
    let rounds: Vec<_> = net.proposed.keys().copied().collect();
    for (r, who) in &net.proposed {
        assert_eq!(who[0].0 as u64, r % N as u64);
    }
    assert!(rounds.windows(2).all(|w| w[0] < w[1]));
    // No timeouts were needed: the committed chain is in consecutive rounds.
    assert!(chain.windows(2).all(|w| w[1].round == w[0].round + 1));
    assert!(chain.iter().all(|b| b.tc.is_none()));
    // The dummy transactions made it in, each once.
    let txs: Vec<_> = chain
        .iter()
        .flat_map(|b| b.payload.iter().map(|t| t.id()))
        .collect();
    assert!(!txs.is_empty());
    assert_eq!(
        txs.len(),
        txs.iter().collect::<HashSet<_>>().len(),
        "no duplicate tx"
    );
    // And blocks keep coming after the mempools dry up (empty blocks).
    net.run_until(20_000, |n| n.heights().iter().all(|&h| h >= 80));
    net.assert_agreement();
    assert!(net.nodes[0].committed.iter().any(|b| b.payload.is_empty()));
}

#[test]
fn three_of_four_make_progress_with_one_crashed() {
    let mut net = Net::new(|_| {});
    net.cut.insert(3);
    net.crashed.insert(3);
    net.run_until(20_000, |n| n.heights()[..3].iter().all(|&h| h >= 20));
    net.assert_agreement();
    net.assert_benign_errors();
    assert!(net.nodes[3].committed.is_empty());
    for i in 0..3 {
        committed_rounds_well_formed(&net, i);
    }
    let chain = &net.nodes[0].committed;
    // Validator 3 never proposed, its rounds timed out, and TCs carried the others past them.
    assert!(chain.iter().all(|b| b.author != 3));
    let with_tc: Vec<_> = chain.iter().filter_map(|b| b.tc.as_ref()).collect();
    assert!(!with_tc.is_empty());
    for tc in with_tc {
        assert_eq!(
            net.f.leader(tc.round),
            3,
            "only the crashed leader's rounds time out"
        );
        assert!(tc.timeouts.iter().all(|t| t.0 != 3));
    }
    assert!(net.nodes[..3].iter().all(|n| n.core.round() > 20));
}

#[test]
fn restarts_from_persisted_safety_keep_agreement_and_never_double_vote() {
    let mut net = Net::new(|_| {});
    let mut steps = 0u64;
    let mut restarts = 0;
    let mut next = 0;
    let mut healthy_at = 0;
    while net.heights().iter().any(|&h| h < 60) {
        net.step();
        steps += 1;
        assert!(steps < 40_000, "no progress: heights {:?}", net.heights());
        // Rolling restarts: one validator at a time, mid-round, in-flight messages kept, each once
        // all validators (the last one restarted included) committed 3 more blocks.
        let min_height = net.heights().into_iter().min().unwrap();
        if min_height >= healthy_at + 3 && steps.is_multiple_of(3) {
            net.restart(next);
            next = (next + 1) % N as ValidatorIndex;
            restarts += 1;
            healthy_at = min_height;
        }
    }
    assert!(restarts >= 8, "{restarts} restarts");
    // Double votes and unpersisted votes/timeouts are caught in `check_outgoing`, across restarts
    // (the driver's record of what each validator signed survives them).
    net.assert_agreement();
    net.assert_benign_errors();
    for i in 0..N {
        committed_rounds_well_formed(&net, i);
    }
}

/// Every validator restarts at once (power loss, coordinated upgrade): each resumes from its
/// persisted safety data, the stored uncommitted blocks and the QC behind `one_chain_round`, so the
/// timeout rule lets it time out and the chain goes on.
#[test]
fn full_network_restart_resumes() {
    let mut net = Net::new(|_| {});
    net.run_until(2_000, |n| n.heights().iter().all(|&h| h >= 10));
    net.queue.clear();
    for i in 0..N as u16 {
        net.restart(i);
    }
    let target = net.heights().into_iter().max().unwrap() + 5;
    net.run_until(20_000, |n| n.heights().iter().all(|&h| h >= target));
    net.assert_agreement();
}

#[test]
fn disconnected_validator_catches_up_after_reconnecting() {
    let mut net = Net::new(|cfg| cfg.sync_max_blocks = 10);
    net.run_until(2_000, |n| n.heights().iter().all(|&h| h >= 5));
    // Cut validator 3 off (it keeps running and timing out on its own).
    net.cut.insert(3);
    let left_at = net.nodes[3].committed.len();
    net.run_until(40_000, |n| {
        n.heights()[..3].iter().all(|&h| h >= left_at + 40)
    });
    assert!(net.nodes[3].committed.len() <= left_at + 2);
    net.assert_agreement();
    // Reconnect: it must fetch what it missed and follow the chain again.
    net.cut.clear();
    let target = net.heights().into_iter().max().unwrap() + 10;
    net.run_until(40_000, |n| n.heights().iter().all(|&h| h >= target));
    net.assert_agreement();
    net.assert_benign_errors();
    let n3 = &net.nodes[3];
    assert!(n3.catch_up_requests > 0, "far behind: catch-up requests");
    assert!(n3.sync_requests > 0, "near the tip: sync requests");
    // Back in business: it votes and proposes again.
    let now_round = n3.core.round();
    let before = net.proposed.values().flatten().filter(|p| p.0 == 3).count();
    net.run_until(10_000, |n| {
        n.nodes[3].core.round() > now_round + 8
            && n.proposed.values().flatten().filter(|p| p.0 == 3).count() > before
    });
    let votes_late = net.nodes[3]
        .voted
        .keys()
        .filter(|&&r| r > now_round)
        .count();
    assert!(votes_late > 0);
    net.run_until(10_000, |n| n.heights().iter().all(|&h| h >= target + 10));
    net.assert_agreement();
    committed_rounds_well_formed(&net, 3);
}
