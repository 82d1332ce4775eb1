//! One run: the committee, the network between its instances, the clients, the fault schedule
//! and the checkers, advanced one event at a time.

use crate::byzantine::{Adversary, Route};
use crate::checker::{Checker, Violation};
use crate::clients::Clients;
use crate::node::{ChainSetup, Effect, Instance};
use crate::plan::{Options, Plan};
use crate::queue::{Ev, Queue};
use crate::rng::Rng;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::identity::{
    GenesisOrg, IdentityGenesis, IdentityKind, IdentityOp, IdentitySpec, IdentityStatus, NodeRole,
    Organization,
};
use netchain_types::{
    codec, hash_parts, Block, Committee, ConsensusMessage, Validator, ValidatorIndex,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod faults;

use faults::trace_event;

/// Whether `SIM_TRACE` is set (read once).
fn trace_on() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SIM_TRACE").is_some())
}

/// Timer tick of every instance (as in the node).
const TICK_MS: u64 = 10;
/// Messages in flight at most; more are dropped (a full network buffer).
const MESSAGES_IN_FLIGHT_MAX: usize = 20_000;
/// Old messages kept for replays.
const HISTORY_MAX: usize = 128;
/// Messages delivered in one run at most; runs need a few thousand, so more is a message loop.
const DELIVERIES_MAX: u64 = 2_000_000;
/// A client resends an unacknowledged transaction after this long.
const RETRY_MS: u64 = 1_000;
/// Execution waiting for a batch looks again after this long.
const EXEC_RETRY_MS: u64 = 50;

/// Counters of one run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped (loss, partitions, Twins' sides, full network).
    pub dropped: u64,
    /// Extra copies delivered (duplicates and replays).
    pub copies: u64,
    /// Crashes of honest validators.
    pub crashes: u64,
    /// Unsynced writes lost or torn at crashes.
    pub lost_writes: u64,
    /// Highest height committed by an honest validator.
    pub height: u64,
    /// Client transactions created.
    pub txs: usize,
    /// Client transactions acknowledged.
    pub acknowledged: usize,
    /// Simulated time at the end.
    pub sim_ms: u64,
    /// Messages dropped because the sender or the receiver did not admit the other (Network ID).
    pub refused: u64,
    /// Network ID runs: an honest validator executed the revocation.
    pub revoked: bool,
    /// Batch mode: proofs of availability in committed blocks (summed over instances).
    pub batches_committed: u64,
    /// Batch mode: requests for a committed batch that an executing instance did not hold.
    pub batch_fetches: u64,
    /// Batch mode: batches with a forged signature that Byzantine validators sent.
    pub batches_forged: u64,
    /// Batch mode: proofs of availability Byzantine validators made for forged batches.
    pub proofs_forged: u64,
    /// Batch mode: acknowledgements Byzantine validators sent as checked without checking.
    pub checks_lied: u64,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The fault plan.
    pub plan: Plan,
    /// blake3 of the event sequence.
    pub hash: [u8; 32],
    /// The first broken invariant and its simulated time, if any.
    pub violation: Option<(u64, Violation)>,
    /// Counters.
    pub stats: Stats,
}

/// Runs the seed under `opts`.
pub fn run(seed: u64, opts: &Options) -> Outcome {
    let plan = Plan::draw(seed, opts);
    let spec = ChainSpec {
        identity: plan.revoke.is_some(),
        ..ChainSpec::default()
    };
    World::new(plan, spec).run()
}

/// Which chain a world runs (the single-chain runs use the default).
#[derive(Clone, Debug)]
pub(crate) struct ChainSpec {
    /// Chain id.
    pub chain_id: String,
    /// Root chain governance in the genesis state.
    pub governance: Option<netchain_types::registry::Governance>,
    /// Validators sign and aggregate checkpoints.
    pub checkpoints: bool,
    /// An identity registry of three organizations with the validators registered under them.
    pub identity: bool,
}

impl Default for ChainSpec {
    fn default() -> Self {
        Self {
            chain_id: "sim".into(),
            governance: None,
            checkpoints: false,
            identity: false,
        }
    }
}

pub(crate) struct World {
    pub(crate) plan: Plan,
    pub(crate) setup: Arc<ChainSetup>,
    pub(crate) instances: Vec<Instance>,
    twin_no: Vec<u8>,
    adversaries: Vec<Option<Adversary>>,
    rng: Rng,
    client_rng: Rng,
    queue: Queue,
    pub(crate) now: u64,
    blocked: BTreeSet<(usize, usize)>,
    sides: BTreeMap<ValidatorIndex, Vec<u8>>,
    /// Twins' aligned split in force: instances on different sides do not hear each other.
    split: Option<Vec<u8>>,
    pub(crate) healed: bool,
    exec_scheduled: Vec<bool>,
    history: VecDeque<(ValidatorIndex, ConsensusMessage)>,
    pub(crate) checker: Checker,
    clients: Clients,
    submits_left: usize,
    hasher: blake3::Hasher,
    pub(crate) stats: Stats,
}

fn setup(plan: &Plan, spec: ChainSpec, rng: &mut Rng, clients: &Clients) -> ChainSetup {
    let keys: Vec<_> = (0..plan.validators)
        .map(|_| Keypair::from_secret(rng.bytes32()))
        .collect();
    let committee = Committee {
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| Validator {
                public_key: k.public(),
                p2p_address: format!("{}-{i}.sim:7000", spec.chain_id),
                api_address: format!("{}-{i}.sim:8080", spec.chain_id),
            })
            .collect(),
    };
    let genesis_hash = hash_parts("sim/genesis", &[&plan.seed.to_le_bytes()]);
    let (identity, org_admins) = if spec.identity {
        registry(&spec.chain_id, &committee, rng)
    } else {
        (None, Vec::new())
    };
    ChainSetup {
        chain_id: spec.chain_id,
        committee,
        keys,
        genesis_hash,
        genesis: Block::genesis(genesis_hash, 0),
        accounts: clients.genesis_accounts(),
        round_timeout_ms: plan.round_timeout_ms,
        sync_max_blocks: plan.sync_max_blocks,
        block_max_txs: plan.block_max_txs,
        governance: spec.governance,
        checkpoints: spec.checkpoints,
        batching: plan.batching,
        identity,
        org_admins,
    }
}

/// Organizations of a simulated consortium.
const ORGS: usize = 3;

/// A consortium of three organizations; validator i is `validator-<i>` of organization i mod 3.
fn registry(
    chain_id: &str,
    committee: &Committee,
    rng: &mut Rng,
) -> (Option<IdentityGenesis>, Vec<Keypair>) {
    let admins: Vec<Keypair> = (0..ORGS)
        .map(|_| Keypair::from_secret(rng.bytes32()))
        .collect();
    let organizations = admins
        .iter()
        .enumerate()
        .map(|(o, admin)| GenesisOrg {
            org: Organization {
                id: format!("org-{o}"),
                name: format!("Org {o}"),
                admins: vec![admin.public()],
            },
            identities: committee
                .validators
                .iter()
                .enumerate()
                .filter(|(i, _)| i % ORGS == o)
                .map(|(i, v)| IdentitySpec {
                    name: format!("validator-{i}"),
                    key: v.public_key,
                    kind: IdentityKind::Node {
                        role: NodeRole::Validator,
                        chains: vec![chain_id.to_string()],
                    },
                    expires_ms: None,
                })
                .collect(),
        })
        .collect();
    let identity = IdentityGenesis {
        organizations,
        require_registered_senders: false,
    };
    (Some(identity), admins)
}

impl World {
    pub(crate) fn new(plan: Plan, spec: ChainSpec) -> Self {
        let mut rng = Rng::new(plan.seed);
        let mut client_rng = rng.fork();
        let clients = Clients::new(plan.clients, &spec.chain_id, &mut client_rng);
        let setup = Arc::new(setup(&plan, spec, &mut rng, &clients));
        let mut instances = Vec::new();
        let mut twin_no = Vec::new();
        for i in 0..plan.validators {
            instances.push(Instance::new(setup.clone(), i as ValidatorIndex, i));
            twin_no.push(0);
        }
        for &t in &plan.twins {
            let id = instances.len();
            instances.push(Instance::new(setup.clone(), t, id));
            twin_no.push(1);
        }
        let adversaries = instances
            .iter()
            .map(|inst| {
                let b = plan.byzantine_of(inst.index)?;
                Some(Adversary::new(
                    inst.index,
                    b.clone(),
                    setup.clone(),
                    rng.fork(),
                ))
            })
            .collect();
        let honest = (0..plan.validators)
            .map(|i| !plan.is_faulty(i as ValidatorIndex))
            .collect();
        let total = clients.genesis_accounts().iter().map(|a| a.1 as u128).sum();
        let checker = Checker::new(honest, &setup.genesis, total);
        Self {
            exec_scheduled: vec![false; instances.len()],
            submits_left: plan.txs,
            plan,
            setup,
            instances,
            twin_no,
            adversaries,
            rng,
            client_rng,
            queue: Queue::new(MESSAGES_IN_FLIGHT_MAX),
            now: 0,
            blocked: BTreeSet::new(),
            sides: BTreeMap::new(),
            split: None,
            healed: false,
            history: VecDeque::new(),
            checker,
            clients,
            hasher: blake3::Hasher::new(),
            stats: Stats::default(),
        }
    }

    pub(crate) fn local_now(&self, i: usize) -> u64 {
        self.now + self.plan.skew_ms[i]
    }

    pub(crate) fn schedule_start(&mut self) {
        for i in 0..self.instances.len() {
            let now = self.local_now(i);
            self.instances[i].start(now);
            let first = self.rng.range(1, TICK_MS);
            self.queue.push(first, Ev::Tick(i));
            if self.adversaries[i].is_some() {
                let at = self.rng.range(20, 200);
                self.queue.push(at, Ev::Inject(i));
            }
        }
        self.redraw_epoch();
        self.queue.push(self.plan.epoch_ms, Ev::Epoch);
        for _ in 0..self.plan.txs {
            let at = self.client_rng.range(1, self.plan.fault_ms * 4 / 5);
            self.queue.push(at, Ev::Submit);
        }
        self.queue.push(RETRY_MS / 4, Ev::Retry);
        self.queue.push(self.plan.fault_ms, Ev::Heal);
        if let Some((_, at)) = self.plan.revoke {
            self.queue.push(at, Ev::Revoke);
        }
    }

    fn run(mut self) -> Outcome {
        self.schedule_start();
        let violation = loop {
            if self.next_at().is_none() {
                break None;
            }
            if let Err(v) = self.step() {
                break Some((self.now, v));
            }
            if self.settled() {
                break None;
            }
            if let Err(v) = self.check_bounds(true) {
                break Some((self.now, v));
            }
        };
        self.finish(violation)
    }

    /// Time of the next event, if any.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.queue.next_at()
    }

    /// Processes the next event.
    pub(crate) fn step(&mut self) -> Result<(), Violation> {
        let Some((at, ev)) = self.queue.pop() else {
            return Ok(());
        };
        self.now = at;
        self.stats.events += 1;
        if trace_on() {
            trace_event(at, &ev, &self.instances);
        }
        self.handle(ev)
    }

    /// Healed, every client transaction submitted and acknowledged (and, in Network ID runs,
    /// the revocation executed by an honest validator).
    pub(crate) fn settled(&self) -> bool {
        self.healed
            && self.submits_left == 0
            && self.clients.pending() == 0
            && (self.plan.revoke.is_none() || self.stats.revoked)
    }

    /// The message-storm bound and (when `deadline`) the liveness bound.
    pub(crate) fn check_bounds(&self, deadline: bool) -> Result<(), Violation> {
        if self.stats.delivered > DELIVERIES_MAX {
            let delivered = self.stats.delivered;
            return Err(Violation::MessageStorm { delivered });
        }
        if deadline && self.now > self.plan.fault_ms + self.plan.liveness_ms {
            return Err(Violation::Liveness {
                pending: self.clients.pending(),
                height: self.checker.committed_height(),
            });
        }
        Ok(())
    }

    /// The outcome, with the counters filled in.
    pub(crate) fn finish(mut self, violation: Option<(u64, Violation)>) -> Outcome {
        self.stats.sim_ms = self.now;
        self.stats.height = self.checker.committed_height();
        self.stats.txs = self.clients.created;
        self.stats.acknowledged = self.clients.acknowledged;
        for adv in self.adversaries.iter().flatten() {
            self.stats.batches_forged += adv.batches_forged;
            self.stats.proofs_forged += adv.proofs_forged;
            self.stats.checks_lied += adv.checks_lied;
        }
        Outcome {
            plan: self.plan,
            hash: *self.hasher.finalize().as_bytes(),
            violation,
            stats: self.stats,
        }
    }

    /// A transaction from outside the world's clients (a relay, an operator) submitted to
    /// instance `i` at the world's time `now`: admitted and gossiped as a client's would be.
    /// False when the instance is down or refuses it.
    pub(crate) fn submit_external(
        &mut self,
        now: u64,
        i: usize,
        tx: netchain_types::SignedTransaction,
    ) -> bool {
        self.now = self.now.max(now);
        if !self.instances[i].is_up() {
            return false;
        }
        self.record(9, i, &tx.id().0);
        if self.instances[i].submit(tx.clone()).is_err() {
            return false;
        }
        if !self.plan.batching {
            let msg = ConsensusMessage::Transactions { txs: vec![tx] };
            self.out(i, Route::All, msg);
        }
        true
    }

    fn record(&mut self, kind: u8, instance: usize, extra: &[u8]) {
        self.hasher.update(&self.now.to_le_bytes());
        self.hasher.update(&[kind]);
        self.hasher.update(&(instance as u32).to_le_bytes());
        self.hasher.update(extra);
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::Deliver { to, from, msg } => self.deliver(to, from, msg),
            Ev::Tick(i) => {
                self.queue.push(self.now + TICK_MS, Ev::Tick(i));
                let now = self.local_now(i);
                let effects = self.instances[i].on_tick(now);
                self.effects(i, effects)
            }
            Ev::Exec(i) => {
                self.exec_scheduled[i] = false;
                self.record(2, i, &[]);
                let effects = self.instances[i].execute_queued();
                self.effects(i, effects)
            }
            Ev::Restart(i) => self.restart(i),
            Ev::Inject(i) => {
                let at = self.now + self.rng.range(20, 200);
                self.queue.push(at, Ev::Inject(i));
                let core = self.instances[i].core();
                let msgs = match self.adversaries[i].as_mut() {
                    Some(adv) => adv.inject(core),
                    None => Vec::new(),
                };
                for (route, msg) in msgs {
                    self.route(i, route, msg);
                }
                Ok(())
            }
            Ev::Epoch => {
                self.queue.push(self.now + self.plan.epoch_ms, Ev::Epoch);
                self.redraw_epoch();
                self.maybe_crash();
                Ok(())
            }
            Ev::Submit => {
                self.submits_left -= 1;
                let tx = self.clients.create(self.now, &mut self.client_rng);
                self.submit(tx)
            }
            Ev::Retry => {
                self.queue.push(self.now + RETRY_MS / 4, Ev::Retry);
                let retry = if self.healed { RETRY_MS / 2 } else { RETRY_MS };
                for tx in self.clients.due(self.now, retry) {
                    self.submit(tx)?;
                }
                Ok(())
            }
            Ev::Heal => self.heal(),
            Ev::Revoke => {
                self.revoke();
                Ok(())
            }
        }
    }

    /// The revoked validator's organization revokes it (resent every second until an honest
    /// validator has executed it).
    fn revoke(&mut self) {
        let Some((v, _)) = self.plan.revoke else {
            return;
        };
        let org = v as usize % ORGS;
        let (org_id, name) = (format!("org-{org}"), format!("validator-{v}"));
        let done = (0..self.plan.validators).any(|i| {
            !self.plan.is_faulty(i as ValidatorIndex)
                && self.instances[i]
                    .read_state::<netchain_execution::identity::IdentityRecord>(
                        &netchain_execution::identity::member_key(&org_id, &name),
                    )
                    .is_some_and(|r| r.status == IdentityStatus::Revoked)
        });
        if done {
            self.stats.revoked = true;
            return;
        }
        self.queue.push(self.now + RETRY_MS, Ev::Revoke);
        let up: Vec<usize> = (0..self.plan.validators)
            .filter(|&i| {
                self.instances[i].is_up()
                    && !self.plan.is_faulty(i as ValidatorIndex)
                    && i != v as usize
            })
            .collect();
        if up.is_empty() {
            return;
        }
        let i = *self.rng.pick(&up);
        let admin = self.setup.org_admins[org].clone();
        let Some(nonce) = self.instances[i].nonce(&admin.public()) else {
            return;
        };
        let tx = sign_transaction(
            &admin,
            netchain_types::Transaction {
                chain_id: self.setup.chain_id.clone(),
                sender: admin.public(),
                nonce,
                payload: netchain_types::Payload::Identity(IdentityOp::SetStatus {
                    org: org_id,
                    name,
                    status: IdentityStatus::Revoked,
                }),
            },
        );
        let now = self.now;
        self.submit_external(now, i, tx);
    }

    /// The validator key of instance `i`.
    fn key_of(&self, i: usize) -> netchain_types::PublicKey {
        self.setup.committee.validators[self.instances[i].index as usize].public_key
    }

    fn deliver(
        &mut self,
        to: usize,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    ) -> Result<(), Violation> {
        if !self.instances[to].is_up() {
            return Ok(());
        }
        let from_key = self.setup.committee.validators[from as usize].public_key;
        if !self.instances[to].admits(&from_key) {
            // Network ID: the receiver's registry no longer admits the sender.
            self.stats.refused += 1;
            return Ok(());
        }
        self.stats.delivered += 1;
        let bytes = codec::encode(&msg);
        self.record(1, to, &bytes);
        self.hasher.update(&from.to_le_bytes());
        if !self.healed && self.plan.replay_per_mille > 0 {
            self.maybe_replay();
            if self.history.len() >= HISTORY_MAX {
                self.history.pop_front();
            }
            self.history.push_back((from, msg.clone()));
        }
        let extra = match self.adversaries[to].as_mut() {
            Some(adv) => adv.incoming(from, &msg),
            None => Vec::new(),
        };
        for (route, m) in extra {
            self.route(to, route, m);
        }
        let now = self.local_now(to);
        let effects = self.instances[to].on_message(now, from, msg);
        self.effects(to, effects)
    }

    fn maybe_replay(&mut self) {
        if self.history.is_empty() || !self.rng.chance(self.plan.replay_per_mille) {
            return;
        }
        let (from, msg) = self.history[self.rng.below(self.history.len() as u64) as usize].clone();
        let to = self.rng.below(self.instances.len() as u64) as usize;
        if self.instances[to].index == from {
            return;
        }
        let at = self.now + self.rng.range(1, 500);
        if self.queue.push(at, Ev::Deliver { to, from, msg }) {
            self.stats.copies += 1;
        }
    }

    fn effects(&mut self, src: usize, effects: Vec<Effect>) -> Result<(), Violation> {
        let v = self.instances[src].index;
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => {
                    self.checker.on_sent(v, &msg)?;
                    if matches!(msg, ConsensusMessage::BatchRequest { .. }) {
                        self.stats.batch_fetches += 1;
                    }
                    if to != v {
                        self.out(src, Route::To(to), msg);
                    }
                }
                Effect::Broadcast(msg) => {
                    self.checker.on_sent(v, &msg)?;
                    self.out(src, Route::All, msg);
                }
                Effect::Committed(blocks) => {
                    for b in &blocks {
                        self.record(3, src, &b.id().0);
                        self.stats.batches_committed += b.batches.len() as u64;
                    }
                    self.checker.on_commit(v, &blocks)?;
                    if !self.exec_scheduled[src] {
                        self.exec_scheduled[src] = true;
                        let at = self.now + self.rng.range(0, self.plan.exec_delay_max_ms);
                        self.queue.push(at, Ev::Exec(src));
                    }
                }
                Effect::Executed(e) => {
                    self.record(4, src, &e.state_root.0);
                    let acked = self.checker.on_execute(v, &e)?;
                    self.clients.acknowledge(&acked);
                }
                Effect::ExecutionGap { height, tip } => self.checker.on_gap(v, height, tip)?,
                Effect::ExecutionWaits => {
                    if !self.exec_scheduled[src] {
                        self.exec_scheduled[src] = true;
                        self.queue.push(self.now + EXEC_RETRY_MS, Ev::Exec(src));
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends what instance `src` wants sent, through its adversary layer if it has one.
    fn out(&mut self, src: usize, route: Route, msg: ConsensusMessage) {
        match self.adversaries[src].as_mut() {
            Some(adv) => {
                for (r, m) in adv.outgoing(route, msg) {
                    self.route(src, r, m);
                }
            }
            None => self.route(src, route, msg),
        }
    }

    fn route(&mut self, src: usize, route: Route, msg: ConsensusMessage) {
        let from = self.instances[src].index;
        let targets: Vec<ValidatorIndex> = match route {
            Route::To(j) => vec![j],
            Route::All => (0..self.plan.validators as ValidatorIndex).collect(),
            Route::Only(list) => list,
        };
        for j in targets {
            if j == from || j as usize >= self.plan.validators {
                continue;
            }
            match self.target(src, j) {
                Some(dst) => self.send(src, dst, from, msg.clone()),
                None => self.stats.dropped += 1,
            }
        }
    }

    /// The instance of validator `j` that `src` reaches now (Twins: the one on `src`'s side), or
    /// None when `src` is a twin and `j`'s instance is not on its side.
    fn target(&self, src: usize, j: ValidatorIndex) -> Option<usize> {
        let dst = match self.sides.get(&j) {
            Some(side) => {
                let want = side[src];
                (0..self.instances.len())
                    .find(|&i| self.instances[i].index == j && self.twin_no[i] == want)?
            }
            None => j as usize,
        };
        let from = self.instances[src].index;
        match self.sides.get(&from) {
            Some(side) if side[dst] != self.twin_no[src] => None,
            _ => Some(dst),
        }
    }

    fn send(&mut self, src: usize, dst: usize, from: ValidatorIndex, msg: ConsensusMessage) {
        let dst_key = self.key_of(dst);
        if !self.instances[src].admits(&dst_key) {
            // Network ID: the sender does not connect to a peer its registry does not admit.
            self.stats.refused += 1;
            return;
        }
        let split = self.split.as_ref().is_some_and(|s| s[src] != s[dst]);
        if !self.healed
            && (split
                || self.blocked.contains(&(src, dst))
                || self.rng.chance(self.plan.drop_per_mille))
        {
            self.stats.dropped += 1;
            return;
        }
        let copies = if !self.healed && self.rng.chance(self.plan.duplicate_per_mille) {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut delay = self
                .rng
                .range(self.plan.delay_min_ms, self.plan.delay_max_ms);
            if self.rng.chance(20) {
                delay *= 10;
            }
            let ev = Ev::Deliver {
                to: dst,
                from,
                msg: msg.clone(),
            };
            if !self.queue.push(self.now + delay, ev) {
                self.stats.dropped += 1;
            } else if copy > 0 {
                self.stats.copies += 1;
            }
        }
    }

    fn submit(&mut self, tx: netchain_types::SignedTransaction) -> Result<(), Violation> {
        let candidates: Vec<usize> = (0..self.instances.len())
            .filter(|&i| {
                self.instances[i].is_up()
                    && (!self.healed || !self.plan.is_faulty(self.instances[i].index))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let i = *self.client_rng.pick(&candidates);
        self.record(5, i, &tx.id().0);
        // With batching, the validator's next batch carries it instead of gossip.
        if self.instances[i].submit(tx.clone()).is_ok() && !self.plan.batching {
            let msg = ConsensusMessage::Transactions { txs: vec![tx] };
            self.out(i, Route::All, msg);
        }
        Ok(())
    }
}
