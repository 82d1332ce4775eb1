//! Network ID in the simulator: the genesis holds an identity registry of three organizations,
//! every validator admits peers only while its own executed registry lists them, and during the
//! fault phase one validator (honest or faulty) is revoked by its organization. The revoked
//! validator keeps running and keeps trying to reach the others; everything else (drops,
//! partitions, crashes, Byzantine validators, Twins) goes on as in the other runs. Every
//! checker applies: agreement, state, exactly-once, and liveness with the revoked validator
//! cut off. `SIM_SEED=n cargo test -p netchain-sim --test network_id` reruns seed n.

mod common;

use common::run_all;
use netchain_sim::Options;

#[test]
fn a_revoked_validator_that_keeps_trying_changes_nothing_for_the_rest() {
    let opts = Options {
        network_id: true,
        ..Options::default()
    };
    let outcomes = run_all(0..300, &opts);
    if outcomes.len() == 1 {
        return;
    }
    let count =
        |f: &dyn Fn(&netchain_sim::Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    // Every run executed the revocation before it ended, and committed every client transaction.
    assert_eq!(count(&|o| o.stats.revoked), outcomes.len());
    assert_eq!(
        count(&|o| o.stats.acknowledged == o.stats.txs),
        outcomes.len()
    );
    // The revoked validator kept trying and was refused.
    assert!(count(&|o| o.stats.refused > 0) >= 250, "refusals");
    let revoked_faulty = |o: &netchain_sim::Outcome| {
        let (v, _) = o.plan.revoke.unwrap();
        o.plan.is_faulty(v)
    };
    assert!(
        count(&|o| !revoked_faulty(o)) >= 60,
        "honest validators revoked"
    );
    assert!(count(&revoked_faulty) >= 30, "faulty validators revoked");
    assert!(count(&|o| o.plan.validators == 7) >= 50, "7-validator runs");
    assert!(count(&|o| o.stats.crashes > 0) >= 30, "crashes besides");
}
