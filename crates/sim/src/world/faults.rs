//! The fault schedule of a run: partitions and Twins' sides per epoch, crashes with torn
//! unsynced writes, restarts, the heal that starts the liveness phase, and the event trace.

use super::{Instance, World};
use crate::checker::Violation;
use crate::queue::Ev;
use netchain_types::{ConsensusMessage, ValidatorIndex};

impl World {
    pub(super) fn redraw_epoch(&mut self) {
        let n = self.instances.len();
        self.blocked.clear();
        if !self.healed && self.rng.chance(self.plan.partition_per_mille) {
            let group: Vec<bool> = (0..n).map(|_| self.rng.chance(500)).collect();
            let asymmetric = self.rng.chance(self.plan.asymmetric_per_mille);
            for a in (0..n).filter(|&a| group[a]) {
                for b in (0..n).filter(|&b| !group[b]) {
                    self.blocked.insert((a, b));
                    if !asymmetric {
                        self.blocked.insert((b, a));
                    }
                }
            }
        }
        // Twins: every other instance talks to one twin of each twinned validator. With "aligned"
        // sides (in the fault phase), all twins split the committee the same way and honest
        // validators on different sides do not hear each other either: the Twins paper's
        // per-round partitions, and the strongest attack.
        let aligned = !self.healed && (self.plan.planted || self.rng.chance(500));
        let base: Vec<u8> = (0..n)
            .map(|i| {
                if self.plan.twins.contains(&self.instances[i].index) {
                    self.twin_no[i]
                } else {
                    self.rng.below(2) as u8
                }
            })
            .collect();
        self.split = (aligned && !self.plan.twins.is_empty()).then(|| base.clone());
        for &t in &self.plan.twins.clone() {
            let side = if aligned {
                base.clone()
            } else {
                (0..n).map(|_| self.rng.below(2) as u8).collect()
            };
            self.sides.insert(t, side);
        }
    }

    pub(super) fn maybe_crash(&mut self) {
        if self.healed || !self.rng.chance(self.plan.crash_per_mille) {
            return;
        }
        let honest_up: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].is_up() && !self.plan.is_faulty(self.instances[i].index))
            .collect();
        let down = (0..self.plan.validators)
            .filter(|&i| !self.plan.is_faulty(i as ValidatorIndex) && !self.instances[i].is_up())
            .count();
        if honest_up.is_empty() || down >= self.plan.crashed_max {
            return;
        }
        let i = *self.rng.pick(&honest_up);
        self.instances[i].stop();
        let loss = self.instances[i].disk().crash(
            &mut self.rng,
            self.plan.unsynced_survive_per_mille,
            self.plan.torn_per_mille,
        );
        self.stats.crashes += 1;
        self.stats.lost_writes += (loss.lost + loss.torn) as u64;
        self.record(6, i, &[]);
        let at = self.now + self.rng.range(50, self.plan.downtime_max_ms);
        self.queue.push(at, Ev::Restart(i));
    }

    pub(super) fn restart(&mut self, i: usize) -> Result<(), Violation> {
        if self.instances[i].is_up() {
            return Ok(());
        }
        let now = self.local_now(i);
        let tip = self.instances[i].start(now);
        self.record(7, i, &tip.block.id().0);
        self.checker
            .on_restart(self.instances[i].index, tip.block.height, tip.block.id())
    }

    pub(super) fn heal(&mut self) -> Result<(), Violation> {
        self.healed = true;
        self.blocked.clear();
        self.record(8, 0, &[]);
        for i in 0..self.instances.len() {
            self.restart(i)?;
        }
        Ok(())
    }
}

/// One line per event on stderr (`SIM_TRACE=1`), for reading a failing seed.
pub(super) fn trace_event(at: u64, ev: &Ev, instances: &[Instance]) {
    let what = match ev {
        Ev::Tick(_) => return,
        Ev::Deliver { to, from, msg } => {
            let round = |r: u64| format!("r{r}");
            let kind = match msg {
                ConsensusMessage::Proposal(p) => format!(
                    "proposal {} {} h{} qc{}",
                    round(p.block.round),
                    p.block.id(),
                    p.block.height,
                    p.block.qc.round
                ),
                ConsensusMessage::Vote(v) => {
                    format!("vote {} {} by {}", round(v.round), v.block_id, v.author)
                }
                ConsensusMessage::Timeout(t) => {
                    format!(
                        "timeout {} hqc{} by {}",
                        round(t.round),
                        t.high_qc.round,
                        t.author
                    )
                }
                other => format!("{other:?}").chars().take(80).collect(),
            };
            let state = instances[*to]
                .core()
                .map(|c| format!("[round {} hqc {}]", c.round(), c.high_qc().round))
                .unwrap_or_else(|| "[down]".into());
            format!("deliver {from}->#{to} {state}: {kind}")
        }
        other => format!("{other:?}"),
    };
    eprintln!("{at:>7} {what}");
}
