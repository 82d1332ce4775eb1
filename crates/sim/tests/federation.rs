//! A root chain and a service chain in one seeded run: the service chain's validators relay
//! anchors with the real relay logic, relays crash and restart (alone or with their validator),
//! Byzantine validators' relays forge anchors, and both chains run under their own drawn faults.
//! `SIM_SEED=n cargo test -p netchain-sim --test federation` reruns exactly seed n.

use netchain_sim::{run_federation, seed_from_env, FederationOutcome, Options};

/// Federation runs use a longer fault phase than the single-chain sample (300 %), so relays
/// crash and anchors advance during the faults, not only after them.
fn opts() -> Options {
    Options {
        validators: None,
        scale_percent: 300,
        ..Options::default()
    }
}

fn run_all(seeds: impl IntoIterator<Item = u64>) -> Vec<FederationOutcome> {
    let seeds: Vec<u64> = match seed_from_env() {
        Some(seed) => vec![seed],
        None => seeds.into_iter().collect(),
    };
    seeds
        .into_iter()
        .map(|seed| {
            let outcome = run_federation(seed, &opts());
            if outcome.violation.is_some() {
                panic!("federation run failed; rerun with SIM_SEED={seed}\n{outcome}");
            }
            outcome
        })
        .collect()
}

#[test]
fn same_seed_same_federation_run() {
    let a = run_federation(7, &opts());
    let b = run_federation(7, &opts());
    assert_eq!(a.hash, b.hash, "federation seed 7 is not deterministic");
    assert_eq!(a.anchors.submitted, b.anchors.submitted);
    assert_ne!(a.hash, run_federation(8, &opts()).hash);
}

#[test]
fn anchoring_survives_crashing_relays_and_forgers() {
    let outcomes = run_all(0..80);
    if outcomes.len() == 1 {
        return;
    }
    let count = |f: &dyn Fn(&FederationOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    // Every run anchored the service chain's final height (the run ends only then).
    assert_eq!(
        count(&|o| o.anchors.anchored >= o.anchors.target && o.anchors.target > 0),
        outcomes.len()
    );
    // The sample must cover what it claims to.
    assert!(
        count(&|o| o.anchors.relay_crashes > 0) >= 60,
        "relay crashes"
    );
    assert!(
        count(&|o| o.anchors.advanced_after_crash > 0) >= 60,
        "anchoring resumed after relay crashes"
    );
    assert!(
        count(&|o| o.service.stats.crashes > 0) >= 30,
        "service validators (with their relays) crashed"
    );
    assert!(
        count(&|o| o.anchors.forged > 0) >= 8,
        "forged anchors refused"
    );
    assert!(
        count(&|o| o.anchors.registrations > 1) >= 20,
        "registration retried"
    );
    assert!(
        count(&|o| !o.root.plan.byzantine.is_empty() || !o.root.plan.twins.is_empty()) >= 20,
        "faulty root validators"
    );
}
