//! `netchain-sim`: runs many seeds of the deterministic simulator and reports seeds per second.

use clap::Parser;
use netchain_sim::{report, run, run_federation, seed_from_env, Options};
use std::time::Instant;

/// Runs seeds `start..start+seeds`; stops at the first violation and prints how to replay it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1_000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Committee size (4 or 7); drawn per seed when absent.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "7"]))]
    validators: Option<String>,
    /// Planted bug: f+1 Twins; succeeds when a safety violation is found.
    #[arg(long)]
    planted: bool,
    /// Scale of the fault phase and client load in percent of the default (long runs use less).
    #[arg(long, default_value_t = 100)]
    scale: u64,
    /// Root chain plus a service chain anchoring to it, with crashing relays (each seed runs both
    /// chains under their own fault plans).
    #[arg(long, conflicts_with = "planted")]
    federation: bool,
    /// Network ID: an identity registry in the genesis, validators admitting peers by it, and
    /// one validator revoked during the run that keeps trying to reach the others.
    #[arg(long)]
    network_id: bool,
    /// Batched dissemination: transactions travel in batches with proofs of availability and
    /// blocks order the proofs.
    #[arg(long)]
    batching: bool,
    /// Print every run's report, not only failures.
    #[arg(long)]
    verbose: bool,
    /// Progress line every this many seeds.
    #[arg(long, default_value_t = 1_000)]
    progress: u64,
}

fn main() {
    let args = Args::parse();
    let opts = Options {
        validators: args
            .validators
            .as_deref()
            .map(|v| v.parse().expect("4 or 7")),
        planted: args.planted,
        scale_percent: args.scale,
        network_id: args.network_id,
        batching: args.batching,
    };
    // SIM_SEED reruns exactly one case.
    let (start, count) = match seed_from_env() {
        Some(seed) => (seed, 1),
        None => (args.start, args.seeds),
    };
    let began = Instant::now();
    let mut found = 0u64;
    for (done, seed) in (start..start.saturating_add(count)).enumerate() {
        let (failed, text) = if args.federation {
            let outcome = run_federation(seed, &opts);
            (outcome.violation.is_some(), outcome.to_string())
        } else {
            let outcome = run(seed, &opts);
            (outcome.violation.is_some(), report(&outcome))
        };
        if args.verbose || failed || count == 1 {
            println!("{text}");
        }
        if failed {
            found += 1;
            if !args.planted {
                eprintln!("FAILED: seed {seed}; rerun with SIM_SEED={seed}");
                std::process::exit(1);
            }
        }
        let done = done as u64 + 1;
        if args.progress > 0 && done.is_multiple_of(args.progress) {
            let secs = began.elapsed().as_secs_f64();
            println!(
                "{done} seeds in {secs:.1} s ({:.1} seeds/s)",
                done as f64 / secs
            );
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{count} seeds ({start}..{}) in {secs:.1} s: {:.1} seeds/s; {found} violations{}",
        start + count,
        count as f64 / secs,
        if args.planted {
            " (planted mode: expected)"
        } else {
            ""
        }
    );
}
