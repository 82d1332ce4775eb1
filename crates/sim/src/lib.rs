//! Deterministic simulation of whole netchain committees, with faults and Byzantine validators.
//!
//! Design note: one seed drives one run. From it the simulator draws a fault [`Plan`] (drop rate,
//! delays, duplication and replay, partitions, crashes, torn writes, clock skew, Byzantine
//! behaviours, Twins), then runs 4 or 7 validator instances — each the real consensus `Core`,
//! `Mempool` and `Executor` over a simulated disk — plus clients, on one thread, over one event
//! queue ordered by (simulated time, sequence number). Nothing reads the wall clock, the OS
//! random source or a hash map's iteration order to make a decision, so a seed replays exactly;
//! the blake3 hash of the event sequence ([`Outcome::hash`]) proves it.
//!
//! Checkers ([`checker`]) watch every step: agreement, a committed chain that only grows (also
//! across restarts), one state root and one receipt set per height, every acknowledged
//! transaction applied exactly once with balances conserved, and no honest validator signing two
//! votes in a round or a vote after its timeout. After the fault phase the network heals and
//! every client transaction must commit within a bound (liveness). The planted-bug mode (f+1
//! Twins) proves the checkers bite: it must find a safety violation.
//!
//! Modules: [`rng`] (the PRNG), [`plan`] (what a seed means), [`disk`] (synced vs unsynced
//! writes), [`node`] (one validator driven as the node drives it), [`byzantine`] (message-level
//! adversaries), [`clients`], [`queue`] (the event queue), [`world`] (one run).

#![warn(missing_docs)]

pub mod byzantine;
pub mod checker;
pub mod clients;
pub mod disk;
pub mod federation;
pub mod node;
pub mod plan;
pub mod queue;
pub mod rng;
pub mod world;

pub use checker::Violation;
pub use federation::{run_federation, FederationOutcome};
pub use plan::{Options, Plan};
pub use world::{run, Outcome, Stats};

/// The seed named by the `SIM_SEED` environment variable, if set (decimal or 0x-hex).
pub fn seed_from_env() -> Option<u64> {
    let s = std::env::var("SIM_SEED").ok()?;
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A human-readable account of a run: the plan, the counters and the violation if any.
pub fn report(outcome: &Outcome) -> String {
    let s = &outcome.stats;
    let verdict = match &outcome.violation {
        Some((at, v)) => format!("VIOLATION at {at} ms: {v}"),
        None => "ok".into(),
    };
    format!(
        "{verdict}\n{}\n  run: {} events, {} delivered, {} dropped, {} copies, {} crashes \
         ({} unsynced writes lost/torn), height {}, txs {}/{} acknowledged, {} simulated ms, \
         hash {}{}{}",
        outcome.plan,
        s.events,
        s.delivered,
        s.dropped,
        s.copies,
        s.crashes,
        s.lost_writes,
        s.height,
        s.acknowledged,
        s.txs,
        s.sim_ms,
        hex(&outcome.hash[..8]),
        if outcome.plan.revoke.is_some() {
            format!(
                "; network id: revocation executed {}, {} messages refused",
                s.revoked, s.refused
            )
        } else {
            String::new()
        },
        if outcome.plan.batching {
            format!(
                "; batching: {} proofs committed (all instances), {} batch fetches, {} forged batches, {} forged proofs, {} lying checks",
                s.batches_committed, s.batch_fetches, s.batches_forged, s.proofs_forged, s.checks_lied
            )
        } else {
            String::new()
        }
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
