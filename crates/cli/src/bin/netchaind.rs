//! `netchaind`: runs one validator.

/// mimalloc: the nodes allocate and free many small buffers per transaction (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use netchain_config::NodeConfig;
use netchain_crypto::KeyFile;
use netchain_node::Node;
use netchain_types::registry::ChainRole;
use std::path::PathBuf;

/// Runs one netchain validator.
#[derive(Parser)]
#[command(name = "netchaind", version, about)]
struct Args {
    /// Node configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    netchain_cli::procs::no_transparent_huge_pages();
    init_logs(args.log_json);
    netchain_cli::procs::crash_stop_on_panic();
    let cfg = NodeConfig::load(&args.config)?;
    let api_override = cfg.api_listen.clone();
    let anchoring = cfg.anchoring.clone();
    let key_file = cfg.key_file.clone();
    // A service chain follows the root's identity registry when its node file says where.
    let admission = match netchain_cli::registry_follower::from_config(&cfg)? {
        Some((follower, policy)) => {
            tokio::spawn(follower.run());
            Some(policy)
        }
        None => None,
    };
    let node = Node::start_with(cfg, admission).await?;
    let shared = node.shared.clone();
    // A service chain's validators relay its anchors to the root chain.
    match (&shared.genesis.role, anchoring) {
        (ChainRole::Service { root_chain_id, .. }, Some(anchoring)) => {
            let keypair = KeyFile::load(&key_file)?;
            tokio::spawn(netchain_cli::relay::run(
                shared.clone(),
                keypair,
                root_chain_id.clone(),
                anchoring,
            ));
        }
        (ChainRole::Service { .. }, None) => {
            tracing::warn!("service chain without [anchoring] in the node file: not anchoring")
        }
        _ => {}
    }
    let api_address = api_override.unwrap_or_else(|| {
        shared.committee().validators[shared.me as usize]
            .api_address
            .clone()
    });
    let listener_shared = shared.clone();
    let api = tokio::spawn(async move { netchain_api::serve(listener_shared, &api_address).await });
    tracing::info!(
        validator = shared.me,
        chain = %shared.chain_id,
        height = shared.status().height,
        "validator started"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        r = api => { r.context("api task")?.context("api server")?; }
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = term.recv() => tracing::info!("terminated; stopping"),
    }
    Ok(())
}
