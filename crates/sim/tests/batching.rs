//! Batched dissemination in the simulator: validators put their clients' transactions into
//! batches, peers verify, store and acknowledge them, proofs of availability go into blocks, and
//! execution takes each committed batch from its store or fetches it from a signer. Everything
//! else (drops, partitions, crashes that lose the store's memory, Byzantine validators, Twins)
//! goes on as in the other runs, and every checker applies: agreement, state, exactly-once and
//! liveness. `SIM_SEED=n cargo test -p netchain-sim --test batching` reruns seed n.

mod common;

use common::run_all;
use netchain_sim::Options;

#[test]
fn batches_with_proofs_of_availability_keep_every_property() {
    let opts = Options {
        batching: true,
        ..Options::default()
    };
    let outcomes = run_all(0..300, &opts);
    if outcomes.len() == 1 {
        return;
    }
    let count =
        |f: &dyn Fn(&netchain_sim::Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    // Every run committed every client transaction, through batches.
    assert_eq!(
        count(&|o| o.stats.acknowledged == o.stats.txs),
        outcomes.len()
    );
    assert_eq!(count(&|o| o.stats.batches_committed > 0), outcomes.len());
    // Some executions had to fetch a batch they did not hold (dropped batch messages, crashes).
    assert!(count(&|o| o.stats.batch_fetches > 0) >= 30, "fetches");
    // And the fault mix is the usual one.
    assert!(
        count(&|o| !o.plan.byzantine.is_empty()) >= 60,
        "Byzantine runs"
    );
    assert!(count(&|o| !o.plan.twins.is_empty()) >= 20, "Twins runs");
    // Byzantine authors sent batches with a forged signature and made proofs of them from the
    // acknowledgements they drew; no honest validator accepted one (the checker's
    // `AppliedUnverified` verifies every applied transaction's signature itself).
    assert!(
        count(&|o| o.stats.batches_forged > 0) >= 20,
        "forged batches"
    );
    assert!(count(&|o| o.stats.proofs_forged > 0) >= 12, "forged proofs");
    // And Byzantine checkers acknowledged batches as checked without checking them.
    assert!(count(&|o| o.stats.checks_lied > 0) >= 40, "lying checkers");
    assert!(count(&|o| o.stats.crashes > 0) >= 40, "crash/restart runs");
    assert!(count(&|o| o.plan.validators == 7) >= 50, "7-validator runs");
}

#[test]
fn ten_times_the_load_with_long_faults_commits_everything() {
    // Ten times the transactions and a ten times longer fault phase: many batches, expiries and
    // crashes. (Before batches were dropped by committed block time rather than the local clock,
    // seeds here stalled execution for good on a batch every validator had dropped.)
    let opts = Options {
        batching: true,
        scale_percent: 1_000,
        ..Options::default()
    };
    let outcomes = run_all(0..16, &opts);
    if outcomes.len() == 1 {
        return;
    }
    assert!(outcomes.iter().all(|o| o.stats.acknowledged == o.stats.txs));
    assert!(outcomes.iter().filter(|o| o.stats.crashes > 0).count() >= 8);
    assert!(
        outcomes
            .iter()
            .filter(|o| o.stats.batch_fetches > 0)
            .count()
            >= 8
    );
}
