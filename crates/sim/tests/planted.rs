//! The checkers must bite: with f+1 Twins (one more faulty validator than the protocol
//! tolerates) the simulator has to find a safety violation within a bounded number of seeds.

use netchain_sim::{report, run, Options};

/// Seeds tried at most; in practice one in a few finds a fork.
const SEEDS_MAX: u64 = 30;

#[test]
fn planted_bug_is_found() {
    for validators in [4, 7] {
        let opts = Options {
            validators: Some(validators),
            planted: true,
            ..Options::default()
        };
        let found = (0..SEEDS_MAX).find_map(|seed| {
            let outcome = run(seed, &opts);
            outcome
                .violation
                .as_ref()
                .is_some_and(|(_, v)| v.is_safety())
                .then_some(outcome)
        });
        let outcome = found.unwrap_or_else(|| {
            panic!("no safety violation in {SEEDS_MAX} seeds with f+1 Twins (n={validators})")
        });
        println!("found (n={validators}):\n{}", report(&outcome));
    }
}
