//! The fixed sample of seeds CI runs: 4- and 7-validator committees under the full fault mix
//! (drops, delays, duplicates, replays, partitions, crashes with torn writes, clock skew,
//! Byzantine validators, Twins), every checker on every step, and a liveness phase at the end.
//! `SIM_SEED=n cargo test -p netchain-sim` reruns exactly seed n in each test.

mod common;

use common::run_all;
use netchain_sim::{run, Options};

#[test]
fn same_seed_same_run_and_seeds_differ() {
    let opts = Options::default();
    for seed in [3, 11] {
        let a = run(seed, &opts);
        let b = run(seed, &opts);
        assert_eq!(a.hash, b.hash, "seed {seed} is not deterministic");
        assert_eq!(a.stats.events, b.stats.events);
    }
    assert_ne!(run(3, &opts).hash, run(4, &opts).hash);
    let seven = Options {
        validators: Some(7),
        ..Options::default()
    };
    assert_eq!(run(5, &seven).hash, run(5, &seven).hash);
}

#[test]
fn four_validators() {
    let opts = Options {
        validators: Some(4),
        ..Options::default()
    };
    let outcomes = run_all(0..2_000, &opts);
    let count =
        |f: &dyn Fn(&netchain_sim::Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    // The sample must cover every kind of fault, else it proves little.
    if outcomes.len() > 1 {
        assert!(
            count(&|o| !o.plan.byzantine.is_empty()) >= 400,
            "Byzantine runs"
        );
        assert!(count(&|o| !o.plan.twins.is_empty()) >= 160, "Twins runs");
        assert!(count(&|o| o.stats.crashes > 0) >= 320, "crash/restart runs");
        assert!(
            count(&|o| o.stats.copies > 0) >= 320,
            "duplicate/replay runs"
        );
        assert!(
            count(&|o| o.plan.partition_per_mille > 0) >= 320,
            "partition runs"
        );
        assert!(count(&|o| o.stats.acknowledged == o.stats.txs) == outcomes.len());
    }
}

#[test]
fn seven_validators() {
    let opts = Options {
        validators: Some(7),
        ..Options::default()
    };
    let outcomes = run_all(1_000..1_400, &opts);
    if outcomes.len() > 1 {
        assert!(outcomes.iter().any(|o| o.plan.byzantine.len() == 2));
        assert!(outcomes.iter().any(|o| !o.plan.twins.is_empty()));
        assert!(outcomes.iter().any(|o| o.stats.crashes > 0));
    }
}
