//! Shared helpers of the simulator's test suite.

#![allow(dead_code)]

use netchain_sim::{report, run, seed_from_env, Options, Outcome};

/// Runs `seeds` (or only `SIM_SEED` when set) and panics with the seed and fault plan of the
/// first run that breaks an invariant. Returns the outcomes.
pub fn run_all(seeds: impl IntoIterator<Item = u64>, opts: &Options) -> Vec<Outcome> {
    let seeds: Vec<u64> = match seed_from_env() {
        Some(seed) => vec![seed],
        None => seeds.into_iter().collect(),
    };
    let mut outcomes = Vec::new();
    for seed in seeds {
        let outcome = run(seed, opts);
        if outcome.violation.is_some() {
            panic!(
                "simulation failed; rerun with SIM_SEED={seed}\n{}",
                report(&outcome)
            );
        }
        outcomes.push(outcome);
    }
    outcomes
}
