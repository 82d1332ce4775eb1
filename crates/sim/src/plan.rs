//! The fault plan of one run: every knob the simulator turns, drawn from the seed.
//!
//! The plan is drawn first and printed on failure, so a failing seed can be understood (and
//! replayed with `SIM_SEED`) without reading the event log.

use crate::rng::Rng;
use netchain_types::ValidatorIndex;
use std::fmt;

/// What one Byzantine validator does on top of running the real core with its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Byzantine {
    /// Sends two different blocks for its rounds, one to each half of the committee.
    pub equivocate: bool,
    /// Sends a second, conflicting vote alongside each vote.
    pub double_vote: bool,
    /// Signs and sends votes for blocks that do not exist.
    pub unknown_votes: bool,
    /// Sends validly signed messages for stale and far-future rounds.
    pub stale_future: bool,
    /// Corrupts the signature of some of its messages.
    pub bad_signatures: bool,
    /// Proposals whose fields break protocol rules, unasked or broken sync answers.
    pub malformed: bool,
    /// Replaces transaction signatures in its own blocks with garbage (execution must reject).
    pub tamper_payload: bool,
    /// Silently drops this share of its outgoing messages (per mille).
    pub withhold_per_mille: u32,
    /// Batch mode: sends copies of its batches with a forged transaction signature, asking no
    /// honest validator (or only honest ones) to check them, and turns the acknowledgements
    /// they draw into proofs of availability: one that lists its stored-only signers, one that
    /// claims every signer checked. Honest validators must refuse both, and never apply the
    /// forged transaction.
    pub forge_batches: bool,
    /// Batch mode: acknowledges every peer's batch as checked without checking it (signed with
    /// its real key), also batches its core refused: with another Byzantine validator's forged
    /// batch, two checked acknowledgements that vouch for a forged signature. A proof needs
    /// f + 1, so one of them must still be honest.
    pub lie_checks: bool,
}

impl Byzantine {
    /// A random, non-empty set of behaviours.
    pub fn draw(rng: &mut Rng) -> Self {
        loop {
            let b = Self {
                equivocate: rng.chance(500),
                double_vote: rng.chance(400),
                unknown_votes: rng.chance(300),
                stale_future: rng.chance(300),
                bad_signatures: rng.chance(300),
                malformed: rng.chance(400),
                tamper_payload: rng.chance(300),
                withhold_per_mille: if rng.chance(300) {
                    rng.range(100, 1000) as u32
                } else {
                    0
                },
                // Drawn by the plan on its own stream (see `Plan::draw`).
                forge_batches: false,
                lie_checks: false,
            };
            if b != Self::default() {
                return b;
            }
        }
    }
}

/// Every fault and size parameter of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed everything is drawn from.
    pub seed: u64,
    /// Committee size (4 or 7).
    pub validators: usize,
    /// Share of messages dropped during the fault phase (0–300 per mille).
    pub drop_per_mille: u32,
    /// Smallest network delay.
    pub delay_min_ms: u64,
    /// Largest ordinary network delay (a few messages are delayed ten times longer).
    pub delay_max_ms: u64,
    /// Share of messages delivered twice.
    pub duplicate_per_mille: u32,
    /// Share of deliveries followed by a replay of an older message.
    pub replay_per_mille: u32,
    /// Length of a partition epoch (partitions and Twins' sides change at epoch boundaries).
    pub epoch_ms: u64,
    /// Chance per epoch that a partition is in force.
    pub partition_per_mille: u32,
    /// Chance that a partition blocks one direction only.
    pub asymmetric_per_mille: u32,
    /// Chance per epoch that an honest validator crashes.
    pub crash_per_mille: u32,
    /// Most honest validators down at once.
    pub crashed_max: usize,
    /// Longest downtime of a crashed validator in the fault phase.
    pub downtime_max_ms: u64,
    /// Chance that a write not yet synced survives a crash (else it is lost).
    pub unsynced_survive_per_mille: u32,
    /// Chance that a surviving unsynced batch is torn (only some of its keys land).
    pub torn_per_mille: u32,
    /// Clock offset of each validator instance's clock over simulated time.
    pub skew_ms: Vec<u64>,
    /// Longest lag between a commit and its execution.
    pub exec_delay_max_ms: u64,
    /// Byzantine validators and their behaviours.
    pub byzantine: Vec<(ValidatorIndex, Byzantine)>,
    /// Validators run as Twins (two instances with one key).
    pub twins: Vec<ValidatorIndex>,
    /// Client accounts.
    pub clients: usize,
    /// Client transactions submitted during the fault phase.
    pub txs: usize,
    /// Length of the fault phase.
    pub fault_ms: u64,
    /// Bound on the liveness phase: every pending transaction must commit within it.
    pub liveness_ms: u64,
    /// Round timeout of the cores.
    pub round_timeout_ms: u64,
    /// Most blocks per sync or catch-up answer (small values exercise catch-up at low heights).
    pub sync_max_blocks: u32,
    /// Most transactions per block (small values spread nonce chains over several blocks).
    pub block_max_txs: usize,
    /// Planted-bug mode (f+1 Twins).
    pub planted: bool,
    /// Network ID runs: the genesis holds an identity registry, validators admit peers by it,
    /// and this validator is revoked by its organization at this time (simulated ms), then keeps
    /// running and trying to reach the others.
    pub revoke: Option<(ValidatorIndex, u64)>,
    /// Batched dissemination: clients' transactions travel in batches with proofs of
    /// availability and blocks order the proofs (as `[consensus] batching` in the node).
    pub batching: bool,
}

/// Choices made outside the seed (by the test or the command line).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Committee size; drawn from the seed (4 or 7) when absent.
    pub validators: Option<usize>,
    /// Planted bug: f+1 Twins, more faults than the protocol tolerates.
    pub planted: bool,
    /// Scales the fault phase and the client load (percent of the default, 100 when 0).
    pub scale_percent: u64,
    /// Network ID: an identity registry in the genesis, admission by it, and one validator
    /// revoked during the run.
    pub network_id: bool,
    /// Batched dissemination with proofs of availability.
    pub batching: bool,
}

impl Plan {
    /// Draws the plan of `seed`.
    pub fn draw(seed: u64, opts: &Options) -> Self {
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_FA17);
        let validators = opts
            .validators
            .unwrap_or(if rng.chance(700) { 4 } else { 7 });
        let f = (validators - 1) / 3;
        let delay_min_ms = rng.range(1, 10);
        let delay_max_ms = delay_min_ms + *rng.pick(&[5, 20, 60, 200]);
        let mut order: Vec<ValidatorIndex> = (0..validators as ValidatorIndex).collect();
        rng.shuffle(&mut order);
        let (mut byzantine, mut twins) = (Vec::new(), Vec::new());
        if opts.planted {
            twins = order[..f + 1].to_vec();
        } else {
            // Up to f faulty validators, split between Byzantine behaviours and Twins.
            let faulty = match rng.below(10) {
                0..=2 => 0,
                _ => rng.range(1, f as u64) as usize,
            };
            for &v in &order[..faulty] {
                if rng.chance(300) {
                    twins.push(v);
                } else {
                    byzantine.push((v, Byzantine::draw(&mut rng)));
                }
            }
            byzantine.sort_by_key(|b| b.0);
            twins.sort();
            // Drawn apart from the rest, so the other parameters of every seed stay as they were.
            let mut forge = Rng::new(seed ^ 0x00F0_46ED_BA7C);
            for (_, b) in byzantine.iter_mut() {
                b.forge_batches = opts.batching && forge.chance(500);
                b.lie_checks = opts.batching && forge.chance(500);
            }
        }
        let instances = validators + twins.len();
        let skew_max = *rng.pick(&[0, 50, 500, 3_000]);
        let skew_ms = (0..instances).map(|_| rng.range(0, skew_max)).collect();
        let scale = if opts.scale_percent == 0 {
            100
        } else {
            opts.scale_percent
        };
        let txs = (rng.range(3, 8) * scale / 100).max(2) as usize;
        Self {
            seed,
            validators,
            drop_per_mille: rng.range(0, 300) as u32,
            delay_min_ms,
            delay_max_ms,
            duplicate_per_mille: *rng.pick(&[0, 20, 100]),
            replay_per_mille: *rng.pick(&[0, 10, 50]),
            epoch_ms: rng.range(200, 1_500),
            partition_per_mille: *rng.pick(&[0, 200, 500]),
            asymmetric_per_mille: rng.range(0, 500) as u32,
            crash_per_mille: *rng.pick(&[0, 100, 300]),
            crashed_max: rng.range(1, f as u64 + 1) as usize,
            downtime_max_ms: rng.range(100, 2_000),
            unsynced_survive_per_mille: rng.range(0, 1_000) as u32,
            torn_per_mille: *rng.pick(&[0, 200]),
            skew_ms,
            exec_delay_max_ms: *rng.pick(&[0, 5, 50]),
            byzantine,
            twins,
            clients: rng.range(2, 4) as usize,
            txs,
            fault_ms: rng.range(1_000, 2_500) * scale / 100,
            liveness_ms: 30_000,
            round_timeout_ms: *rng.pick(&[200, 300, 500]),
            sync_max_blocks: *rng.pick(&[2, 4, 100]),
            block_max_txs: *rng.pick(&[1, 3, 5_000]),
            planted: false,
            revoke: None,
            batching: opts.batching,
        }
        .planted_if(opts.planted, &mut rng)
        .revoke_if(opts.network_id)
    }

    /// Network ID runs: picks the validator to revoke and when, from a generator of its own
    /// (the rest of the plan is the same as without). A revoked validator is lost to the
    /// committee, so it is a faulty one when f are faulty already, and honest crashes are kept
    /// within what is left of f.
    fn revoke_if(mut self, network_id: bool) -> Self {
        if !network_id {
            return self;
        }
        let mut rng = Rng::new(self.seed ^ 0x1DE7_0000_0000);
        let f = self.f();
        let faulty: Vec<ValidatorIndex> = (0..self.validators as ValidatorIndex)
            .filter(|&v| self.is_faulty(v))
            .collect();
        let honest: Vec<ValidatorIndex> = (0..self.validators as ValidatorIndex)
            .filter(|&v| !self.is_faulty(v))
            .collect();
        let pick_honest = faulty.is_empty() || (faulty.len() < f && rng.chance(600));
        let v = if pick_honest {
            *rng.pick(&honest)
        } else {
            *rng.pick(&faulty)
        };
        if !self.is_faulty(v) {
            let left = f.saturating_sub(faulty.len() + 1);
            self.crashed_max = self.crashed_max.min(left);
        }
        let at = rng.range(self.fault_ms / 5, self.fault_ms * 4 / 5);
        self.revoke = Some((v, at));
        self
    }

    /// Planted mode: f+1 Twins on long, aligned splits and an otherwise kind network, so each
    /// side has the time to commit on its own (the run is expected to break safety).
    fn planted_if(mut self, planted: bool, rng: &mut Rng) -> Self {
        if planted {
            self.planted = true;
            self.drop_per_mille = self.drop_per_mille.min(50);
            self.delay_max_ms = self.delay_max_ms.min(self.delay_min_ms + 20);
            self.partition_per_mille = 0;
            self.crash_per_mille = 0;
            self.epoch_ms = rng.range(1_000, 3_000);
            self.fault_ms = self.fault_ms.max(4_000);
        }
        self
    }

    /// Largest number of faulty validators the committee tolerates.
    pub fn f(&self) -> usize {
        (self.validators - 1) / 3
    }

    /// Whether a validator index is faulty (Byzantine or twinned): its commits are not checked.
    pub fn is_faulty(&self, index: ValidatorIndex) -> bool {
        self.twins.contains(&index) || self.byzantine.iter().any(|b| b.0 == index)
    }

    /// The behaviours of a Byzantine validator.
    pub fn byzantine_of(&self, index: ValidatorIndex) -> Option<&Byzantine> {
        self.byzantine.iter().find(|b| b.0 == index).map(|b| &b.1)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} (rerun: SIM_SEED={})", self.seed, self.seed)?;
        writeln!(
            f,
            "  committee n={} f={} | byzantine {:?} | twins {:?}",
            self.validators,
            self.f(),
            self.byzantine,
            self.twins
        )?;
        writeln!(
            f,
            "  network: drop {}‰, delay {}..{} ms, duplicate {}‰, replay {}‰",
            self.drop_per_mille,
            self.delay_min_ms,
            self.delay_max_ms,
            self.duplicate_per_mille,
            self.replay_per_mille
        )?;
        writeln!(
            f,
            "  partitions: epoch {} ms, {}‰ per epoch, {}‰ asymmetric",
            self.epoch_ms, self.partition_per_mille, self.asymmetric_per_mille
        )?;
        writeln!(
            f,
            "  crashes: {}‰ per epoch, at most {} down, downtime <= {} ms, unsynced writes survive \
             {}‰ (torn {}‰)",
            self.crash_per_mille,
            self.crashed_max,
            self.downtime_max_ms,
            self.unsynced_survive_per_mille,
            self.torn_per_mille
        )?;
        writeln!(
            f,
            "  clocks: skew {:?} ms; execution lag <= {} ms; round timeout {} ms; sync {} blocks, \
             block {} txs",
            self.skew_ms,
            self.exec_delay_max_ms,
            self.round_timeout_ms,
            self.sync_max_blocks,
            self.block_max_txs
        )?;
        if self.planted {
            writeln!(f, "  PLANTED BUG: f+1 Twins (more faults than tolerated)")?;
        }
        if let Some((v, at)) = self.revoke {
            writeln!(f, "  network id: validator {v} revoked at {at} ms")?;
        }
        write!(
            f,
            "  load: {} clients, {} txs; fault phase {} ms, liveness bound {} ms",
            self.clients, self.txs, self.fault_ms, self.liveness_ms
        )
    }
}
