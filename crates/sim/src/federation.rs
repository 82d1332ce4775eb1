//! A root chain and one service chain that anchors to it, in one seeded run.
//!
//! Each chain is a whole simulated committee ([`World`]) with its own drawn fault plan (drops,
//! partitions, crashes with torn writes, skew, Byzantine validators, Twins); both advance on one
//! clock, event by event, always the earliest first. Every service-chain validator runs the
//! real anchoring relay ([`netchain_execution::relay`]): on a timer it reads the root's record of
//! its chain from some root validator, decides by turn or overdue, and submits the newest
//! certified checkpoint with its extension proof to that validator. Relays crash and restart on
//! their own (losing their memory) and go down with their validator; a Byzantine validator's
//! relay sometimes submits forged anchors (tampered root or height, garbage proof, wrong
//! epoch). A governor registers the service chain on the root at the start, with a threshold of
//! approvals, retrying until it is recorded.
//!
//! On top of each chain's own checkers, the federation checks at every step of its clock that
//! no honest root validator's state holds an anchor that differs from what the service chain's
//! honest validators executed at that height, that the anchored height never goes down as the
//! root grows, and that the chain is never flagged. After both chains heal, the anchored height
//! must reach the service chain's height within a bound, whatever the relays went
//! through: once both chains have healed and every client transaction has committed, the anchor
//! must reach the service chain's height at that moment within a bound.

use crate::checker::Violation;
use crate::rng::Rng;
use crate::world::{ChainSpec, World};
use crate::{Options, Outcome, Plan};
use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::registry::{chain_key, ChainRecord};
use netchain_execution::relay::{anchor_transaction, Decision, Relay, Schedule};
use netchain_types::registry::{
    approval_message, Approval, Governance, RegistryChange, RegistryOp, ServiceChain,
};
use netchain_types::{hash_parts, Payload, Transaction, ValidatorIndex};
use std::collections::BTreeMap;
use std::fmt;

const ROOT: &str = "root";
const SERVICE: &str = "svc";
/// Federation checks run this often (simulated ms).
const CHECK_MS: u64 = 50;
/// The registration is resent this often until it is recorded.
const REGISTER_RETRY_MS: u64 = 1_000;
/// Once both chains have settled, the anchor must reach the service chain's height within this.
const ANCHOR_LIVENESS_MS: u64 = 30_000;

/// What one seed means for the relays (each chain's own plan is drawn separately).
#[derive(Clone, Debug)]
pub struct RelayPlan {
    /// Anchor every this many service-chain blocks.
    pub every_blocks: u64,
    /// Anchor a newer checkpoint after this long even if fewer blocks came.
    pub every_ms: u64,
    /// Relay timer.
    pub interval_ms: u64,
    /// Chance per relay timer that a relay crashes (per mille), in the fault phase.
    pub crash_per_mille: u32,
    /// Longest downtime of a crashed relay.
    pub downtime_max_ms: u64,
    /// Chance that a Byzantine validator's relay forges the anchor it submits.
    pub forge_per_mille: u32,
}

impl RelayPlan {
    fn schedule(&self) -> Schedule {
        Schedule {
            every_blocks: self.every_blocks,
            every_ms: self.every_ms,
            interval_ms: self.interval_ms,
        }
    }

    fn draw(rng: &mut Rng) -> Self {
        Self {
            every_blocks: *rng.pick(&[1, 3, 10]),
            every_ms: *rng.pick(&[1_000, 3_000]),
            interval_ms: *rng.pick(&[100, 250, 1_000]),
            crash_per_mille: *rng.pick(&[20, 60, 150]),
            downtime_max_ms: rng.range(200, 3_000),
            forge_per_mille: *rng.pick(&[0, 300, 1_000]),
        }
    }
}

/// Counters of the anchoring side of a run.
#[derive(Clone, Debug, Default)]
pub struct AnchorStats {
    /// Anchors the root accepted (its record's count at the end, as seen by an honest validator).
    pub accepted: u64,
    /// Highest anchored height seen on an honest root validator.
    pub anchored: u64,
    /// Anchor transactions relays got admitted by a root validator.
    pub submitted: u64,
    /// Forged anchors submitted by Byzantine validators' relays.
    pub forged: u64,
    /// Relay crashes (on their own; host crashes are in the service chain's counters).
    pub relay_crashes: u64,
    /// Registration attempts.
    pub registrations: u64,
    /// Service-chain height the anchor had to reach once both chains settled.
    pub target: u64,
    /// Times the anchored height advanced after a relay had crashed.
    pub advanced_after_crash: u64,
    /// Simulated time at the end.
    pub end_ms: u64,
}

/// How a federated run ended.
#[derive(Clone, Debug)]
pub struct FederationOutcome {
    /// The seed.
    pub seed: u64,
    /// The relays' plan.
    pub relays: RelayPlan,
    /// The root chain's run.
    pub root: Outcome,
    /// The service chain's run.
    pub service: Outcome,
    /// Anchoring counters.
    pub anchors: AnchorStats,
    /// blake3 of both chains' event hashes and the federation's own events.
    pub hash: [u8; 32],
    /// The first broken invariant: which chain ("root", "svc" or "anchoring"), when, what.
    pub violation: Option<(&'static str, u64, Violation)>,
}

impl fmt::Display for FederationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.violation {
            Some((who, at, v)) => writeln!(f, "VIOLATION ({who}) at {at} ms: {v}")?,
            None => writeln!(f, "ok")?,
        }
        writeln!(
            f,
            "federation seed {} (rerun: SIM_SEED={}); relays {:?}",
            self.seed, self.seed, self.relays
        )?;
        writeln!(f, "anchoring: {:?}", self.anchors)?;
        writeln!(f, "root chain:\n{}", self.root.plan)?;
        write!(f, "service chain:\n{}", self.service.plan)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FedEv {
    RelayTick(usize),
    RelayRestart(usize),
    Register,
    Check,
}

struct RelayState {
    relay: Relay,
    up: bool,
    /// Whether the host validator was up at the last tick (a host restart resets the relay).
    host_was_up: bool,
    next_root: usize,
    key: Keypair,
}

struct Federation {
    seed: u64,
    plan: RelayPlan,
    root: World,
    svc: World,
    rng: Rng,
    queue: BTreeMap<(u64, u64), FedEv>,
    seq: u64,
    now: u64,
    relays: Vec<RelayState>,
    governors: Vec<Keypair>,
    governance: Governance,
    registered: bool,
    /// Anchored height by root height, as honest root validators' states showed it.
    anchored_at: BTreeMap<u64, u64>,
    /// Set when both chains have settled: (time, service height to reach).
    target: Option<(u64, u64)>,
    stats: AnchorStats,
    hasher: blake3::Hasher,
}

/// Runs federation seed `seed`: a root chain and a service chain with crashing relays.
pub fn run_federation(seed: u64, opts: &Options) -> FederationOutcome {
    let mut rng = Rng::new(seed ^ 0xFEDE_4A71_0000);
    let plan = RelayPlan::draw(&mut rng);
    let root_seed = rng.next_u64();
    let svc_seed = rng.next_u64();
    let governors: Vec<Keypair> = (0..3)
        .map(|_| Keypair::from_secret(rng.bytes32()))
        .collect();
    let governance = Governance {
        keys: governors.iter().map(|k| k.public()).collect(),
        threshold: 2,
    };
    // The root carries every relay's anchors on top of its clients' transfers: with one
    // transaction per block (a plan the single-chain runs use to spread nonce chains) and a slow
    // faulty committee, it would run out of capacity rather than break.
    let mut root_plan = Plan::draw(root_seed, opts);
    root_plan.block_max_txs = root_plan.block_max_txs.max(5);
    let root = World::new(
        root_plan,
        ChainSpec {
            chain_id: ROOT.into(),
            governance: Some(governance.clone()),
            checkpoints: false,
            identity: false,
        },
    );
    let svc = World::new(
        Plan::draw(svc_seed, opts),
        ChainSpec {
            chain_id: SERVICE.into(),
            governance: None,
            checkpoints: true,
            identity: false,
        },
    );
    let n = svc.plan.validators;
    let relays = (0..n)
        .map(|i| RelayState {
            relay: Relay::new(plan.schedule(), i as u64, n as u64),
            up: true,
            host_was_up: true,
            next_root: i,
            key: svc.setup.keys[i].clone(),
        })
        .collect();
    let fed = Federation {
        seed,
        plan,
        root,
        svc,
        rng,
        queue: BTreeMap::new(),
        seq: 0,
        now: 0,
        relays,
        governors,
        governance,
        registered: false,
        anchored_at: BTreeMap::new(),
        target: None,
        stats: AnchorStats::default(),
        hasher: blake3::Hasher::new(),
    };
    fed.run()
}

enum Next {
    Root,
    Svc,
    Fed,
}

impl Federation {
    fn push(&mut self, at: u64, ev: FedEv) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn run(mut self) -> FederationOutcome {
        self.root.schedule_start();
        self.svc.schedule_start();
        for r in 0..self.relays.len() {
            let at = self.rng.range(1, self.plan.interval_ms);
            self.push(at, FedEv::RelayTick(r));
        }
        let at = self.rng.range(1, 200);
        self.push(at, FedEv::Register);
        self.push(CHECK_MS, FedEv::Check);
        let violation = loop {
            let next = [
                (self.root.next_at(), Next::Root),
                (self.svc.next_at(), Next::Svc),
                (self.queue.keys().next().map(|k| k.0), Next::Fed),
            ]
            .into_iter()
            .filter_map(|(t, w)| t.map(|t| (t, w)))
            .min_by_key(|(t, _)| *t);
            let Some((_, which)) = next else { break None };
            let result = match which {
                Next::Root => self
                    .root
                    .step()
                    .and_then(|()| self.root.check_bounds(!self.root.settled()))
                    .map_err(|v| (ROOT, self.root.now, v)),
                Next::Svc => self
                    .svc
                    .step()
                    .and_then(|()| self.svc.check_bounds(!self.svc.settled()))
                    .map_err(|v| (SERVICE, self.svc.now, v)),
                Next::Fed => {
                    let ((at, _), ev) = self.queue.pop_first().expect("peeked");
                    self.now = at;
                    self.handle(ev).map_err(|v| ("anchoring", at, v))
                }
            };
            if let Err(v) = result {
                break Some(v);
            }
            if self.done() {
                break None;
            }
        };
        self.stats.end_ms = self.now;
        let (root, service) = (self.root.finish(None), self.svc.finish(None));
        self.hasher.update(&root.hash);
        self.hasher.update(&service.hash);
        FederationOutcome {
            seed: self.seed,
            relays: self.plan,
            root,
            service,
            anchors: self.stats,
            hash: *self.hasher.finalize().as_bytes(),
            violation,
        }
    }

    /// Both chains settled and the anchor reached the target.
    fn done(&self) -> bool {
        self.root.settled()
            && self.svc.settled()
            && self
                .target
                .is_some_and(|(_, target)| self.stats.anchored >= target)
    }

    fn handle(&mut self, ev: FedEv) -> Result<(), Violation> {
        self.hasher.update(&self.now.to_le_bytes());
        match ev {
            FedEv::RelayTick(r) => {
                self.push(self.now + self.plan.interval_ms, FedEv::RelayTick(r));
                self.relay_tick(r);
                Ok(())
            }
            FedEv::RelayRestart(r) => {
                self.hasher.update(&[1, r as u8]);
                self.relays[r].up = true;
                Ok(())
            }
            FedEv::Register => {
                if !self.registered {
                    self.register();
                    self.push(self.now + REGISTER_RETRY_MS, FedEv::Register);
                }
                Ok(())
            }
            FedEv::Check => {
                self.push(self.now + CHECK_MS, FedEv::Check);
                self.check()
            }
        }
    }

    fn faults_over(&self) -> bool {
        self.root.healed && self.svc.healed
    }

    /// Relay `r` as a freshly started process has it (no memory).
    fn fresh_relay(&self, r: usize) -> Relay {
        Relay::new(self.plan.schedule(), r as u64, self.relays.len() as u64)
    }

    fn relay_tick(&mut self, r: usize) {
        let host_up = self.svc.instances[r].is_up();
        let fresh = self.fresh_relay(r);
        let state = &mut self.relays[r];
        if !host_up {
            state.host_was_up = false;
            return;
        }
        if !state.host_was_up {
            // The validator process restarted: its relay starts afresh.
            state.host_was_up = true;
            state.relay = fresh.clone();
        }
        if !self.relays[r].up {
            return;
        }
        if !self.faults_over() && self.rng.chance(self.plan.crash_per_mille) {
            self.stats.relay_crashes += 1;
            self.hasher.update(&[2, r as u8]);
            let state = &mut self.relays[r];
            state.up = false;
            state.relay = fresh;
            let at = self.now + self.rng.range(50, self.plan.downtime_max_ms);
            self.push(at, FedEv::RelayRestart(r));
            return;
        }
        // The root validator this relay talks to (its API), round robin on failure.
        let k = self.relays[r].next_root % self.root.plan.validators;
        let Some(record) = self.root.instances[k].read_state::<ChainRecord>(&chain_key(SERVICE))
        else {
            self.relays[r].next_root += 1;
            return;
        };
        let certified = self.svc.instances[r].certified_height();
        let now = self.svc.local_now(r);
        let committee = self.svc.setup.committee.validators.clone();
        let decision = self.relays[r]
            .relay
            .decide(now, &record, &committee, certified);
        let Decision::Relay {
            mut epoch,
            anchored,
            height: _,
        } = decision
        else {
            return;
        };
        let Some((mut cert, Some(mut proof))) = self.svc.instances[r].anchor_material(anchored)
        else {
            return;
        };
        let key = self.relays[r].key.clone();
        let Some(nonce) = self.root.instances[k].nonce(&key.public()) else {
            return;
        };
        let byzantine = self.svc.plan.is_faulty(r as ValidatorIndex);
        if byzantine && self.rng.chance(self.plan.forge_per_mille) {
            self.stats.forged += 1;
            match self.rng.below(4) {
                0 => cert.checkpoint.state_root.0[0] ^= 1,
                1 => cert.checkpoint.height += 1 + self.rng.below(5),
                2 => proof = self.rng.bytes32().to_vec(),
                _ => epoch += 1,
            }
        }
        let tx = anchor_transaction(&key, ROOT, nonce, epoch, cert, proof);
        self.hasher.update(&tx.id().0);
        if self.root.submit_external(self.now, k, tx) {
            self.stats.submitted += 1;
            self.relays[r].relay.submitted(anchored, now);
        } else {
            self.relays[r].next_root += 1;
        }
    }

    /// A governor submits the registration, approved by two of the three governing keys.
    fn register(&mut self) {
        let change = RegistryChange::Register(ServiceChain {
            chain_id: SERVICE.into(),
            purpose: "simulated service chain".into(),
            genesis_block_id: self.svc.setup.genesis.id(),
            validators: self.svc.setup.committee.validators.clone(),
        });
        let msg = approval_message(ROOT, &self.root.setup.genesis_hash, &change);
        let mut signers: Vec<u16> = vec![0, 1, 2];
        self.rng.shuffle(&mut signers);
        let mut approvals: Vec<Approval> = signers[..self.governance.threshold as usize]
            .iter()
            .map(|&g| Approval {
                governor: g,
                signature: self.governors[g as usize].sign(&msg),
            })
            .collect();
        approvals.sort_by_key(|a| a.governor);
        let up: Vec<usize> = (0..self.root.plan.validators)
            .filter(|&i| self.root.instances[i].is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let k = *self.rng.pick(&up);
        let sender = &self.governors[0];
        let Some(nonce) = self.root.instances[k].nonce(&sender.public()) else {
            return;
        };
        let tx = sign_transaction(
            sender,
            Transaction {
                chain_id: ROOT.into(),
                sender: sender.public(),
                nonce,
                payload: Payload::Registry(RegistryOp::Change { change, approvals }),
            },
        );
        self.stats.registrations += 1;
        self.hasher
            .update(&hash_parts("sim/register", &[&tx.id().0]).0);
        self.root.submit_external(self.now, k, tx);
    }

    /// The anchoring invariants, on every honest root validator's executed state.
    fn check(&mut self) -> Result<(), Violation> {
        if self.target.is_none() && self.root.settled() && self.svc.settled() {
            let target = self.svc.checker.committed_height();
            self.target = Some((self.now, target));
            self.stats.target = target;
        }
        for i in 0..self.root.plan.validators {
            if self.root.plan.is_faulty(i as ValidatorIndex) {
                continue;
            }
            let inst = &self.root.instances[i];
            let Some(tip) = inst.tip().map(|t| t.block.height) else {
                continue;
            };
            let Some(record) = inst.read_state::<ChainRecord>(&chain_key(SERVICE)) else {
                continue;
            };
            self.registered = true;
            if record.flagged {
                return Err(Violation::ChainFlagged { root_height: tip });
            }
            let anchored = match &record.last_anchor {
                None => 0,
                Some(a) => {
                    match self.svc.checker.executed_at(a.height) {
                        None => {
                            return Err(Violation::AnchorMismatch {
                                height: a.height,
                                what: "never executed by an honest validator",
                            })
                        }
                        Some((block, _)) if block != a.block_id => {
                            return Err(Violation::AnchorMismatch {
                                height: a.height,
                                what: "block id",
                            })
                        }
                        Some((_, root)) if root != a.state_root => {
                            return Err(Violation::AnchorMismatch {
                                height: a.height,
                                what: "state root",
                            })
                        }
                        Some(_) => {}
                    }
                    a.height
                }
            };
            if let Some((_, &before)) = self.anchored_at.range(..tip).next_back() {
                if before > anchored {
                    return Err(Violation::AnchorRegressed {
                        before,
                        after: anchored,
                        root_height: tip,
                    });
                }
            }
            if let Some((&later, &after)) = self.anchored_at.range(tip + 1..).next() {
                if anchored > after {
                    return Err(Violation::AnchorRegressed {
                        before: anchored,
                        after,
                        root_height: later,
                    });
                }
            }
            self.anchored_at.insert(tip, anchored);
            if anchored >= self.stats.anchored {
                if anchored > self.stats.anchored && self.stats.relay_crashes > 0 {
                    self.stats.advanced_after_crash += 1;
                }
                self.stats.anchored = anchored;
                self.stats.accepted = self.stats.accepted.max(record.anchors);
            }
        }
        if let Some((since, target)) = self.target {
            if self.stats.anchored < target && self.now > since + ANCHOR_LIVENESS_MS {
                return Err(Violation::AnchorLiveness {
                    anchored: self.stats.anchored,
                    target,
                });
            }
        }
        Ok(())
    }
}
