//! `netchain`: keys, genesis, a local network in one command, transactions, queries, proofs.

/// mimalloc: the nodes allocate and free many small buffers per transaction (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use netchain_cli::bench::{self, BenchArgs};
use netchain_cli::currency_cli::{self, print_json, CurrencyCommand, VoucherCommand};
use netchain_cli::demo::{self, DemoArgs};
use netchain_cli::layout::{self, LayoutParams};
use netchain_cli::parse_duration;
use netchain_cli::testnet::{self, TestnetOptions};
use netchain_client::{verify_account_proof, Client};
use netchain_config::Genesis;
use netchain_crypto::{KeyFile, Keypair};
use netchain_types::{Digest, Payload, PublicKey};
use std::path::PathBuf;
use std::time::Duration;

/// netchain: a permissioned BFT blockchain.
#[derive(Parser)]
#[command(name = "netchain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Writes a genesis, validator keys and node files for a local network.
    Genesis(GenesisArgs),
    /// Starts a local network of validator processes with a demo load and a live status line.
    Testnet(TestnetArgs),
    /// Sends transactions.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Reads from a node.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Verifies an account's proof using only the committee keys from a genesis file.
    Verify(VerifyArgs),
    /// Local currency: define, merchants, charge, pay, refund, redeem, settle, reconcile.
    #[command(subcommand)]
    Currency(CurrencyCommand),
    /// Gift vouchers: issue, transfer, redeem, reclaim.
    #[command(subcommand)]
    Voucher(VoucherCommand),
    /// Network ID: organizations, nodes, clients; rotate, suspend, revoke; show with proof.
    #[command(subcommand)]
    Id(netchain_cli::id_cli::IdCommand),
    /// Load at a fixed rate or a ramp to saturation; TPS, latency percentiles, CPU per process.
    Bench(BenchArgs),
    /// Realistic workloads on a local network.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Subcommand)]
enum DemoCommand {
    /// A city's local currency: residents charge and pay, merchants refund and redeem, vouchers.
    LocalCurrency(DemoArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Creates a key pair and writes it to a key file.
    New {
        /// Key file to write.
        #[arg(long, default_value = "key.json")]
        out: PathBuf,
    },
    /// Prints the public key of a key file.
    Show {
        /// Key file.
        #[arg(long, default_value = "key.json")]
        key: PathBuf,
    },
}

#[derive(Args, Clone)]
struct LayoutArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Chain id.
    #[arg(long, default_value = "netchain-local")]
    chain_id: String,
    /// Funded demo accounts (keys derived from the chain id: for local use only).
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Balance of each demo account.
    #[arg(long, default_value_t = 1_000_000_000)]
    balance: u64,
    /// First P2P port (validator i uses base + i).
    #[arg(long, default_value_t = 7100)]
    p2p_port: u16,
    /// First API port (validator i uses base + i).
    #[arg(long, default_value_t = 8100)]
    api_port: u16,
    /// Organizations of the consortium (Network ID): the chain keeps an identity registry and
    /// admits peers by it; admin keys go to `<dir>/orgs/<org>/admin.json`. 0: no registry.
    #[arg(long, default_value_t = netchain_cli::layout::DEFAULT_ORGANIZATIONS)]
    organizations: usize,
    /// Accept transactions from anyone. By default (with a registry) the demo accounts are
    /// registered as clients and only registered identities may send transactions.
    #[arg(long)]
    open_writes: bool,
    /// Gossip transactions and carry them in blocks instead of batches with proofs of
    /// availability.
    #[arg(long)]
    no_batching: bool,
}

impl LayoutArgs {
    fn params(&self) -> LayoutParams {
        LayoutParams {
            chain_id: self.chain_id.clone(),
            validators: self.validators,
            accounts: self.accounts,
            balance: self.balance,
            p2p_base_port: self.p2p_port,
            api_base_port: self.api_port,
            host: "127.0.0.1".into(),
            organizations: self.organizations,
            registered_senders: self.organizations > 0 && !self.open_writes,
            batching: !self.no_batching,
            ordering_only: false,
        }
    }
}

#[derive(Args)]
struct GenesisArgs {
    /// Folder to write into.
    #[arg(long, default_value = "testnet-data")]
    dir: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
}

#[derive(Args)]
struct TestnetArgs {
    /// Data folder (wiped and rewritten unless --keep).
    #[arg(long, default_value = "testnet-data")]
    dir: PathBuf,
    /// Resume the network already in --dir instead of starting a new chain.
    #[arg(long)]
    keep: bool,
    /// Offered demo load in transactions per second (0 for none).
    #[arg(long, default_value_t = 1000)]
    load: u64,
    /// Run this long, print a summary and exit (e.g. 30s, 2m); default: until Ctrl-C.
    #[arg(long = "for", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Also start this many service chains anchored to a root chain (each with --validators
    /// validators, ports 100 apart; the load is offered to every chain).
    #[arg(long, default_value_t = 0)]
    service_chains: usize,
    /// With --service-chains: anchor every this many blocks.
    #[arg(long, default_value_t = 50)]
    anchor_every: u64,
    #[command(flatten)]
    layout: LayoutArgs,
}

#[derive(Subcommand)]
enum TxCommand {
    /// Transfers the native asset.
    Transfer {
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
        /// Sender key file.
        #[arg(long)]
        key: PathBuf,
        /// Recipient public key (hex).
        #[arg(long)]
        to: PublicKey,
        /// Amount.
        #[arg(long)]
        amount: u64,
        /// Nonce (default: the account's next nonce).
        #[arg(long)]
        nonce: Option<u64>,
        /// Wait until the transaction is committed or rejected.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
enum QueryCommand {
    /// An account's balance and nonce (with --proof, its Merkle proof).
    Account {
        /// Public key (hex).
        key: PublicKey,
        /// Include the proof.
        #[arg(long)]
        proof: bool,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// A committed block by height (or "latest").
    Block {
        /// Height.
        height: String,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// A transaction's status.
    Tx {
        /// Transaction id (hex).
        id: Digest,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// The node's chain status.
    Status {
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// Account public key (hex).
    #[arg(long)]
    account: PublicKey,
    /// Genesis file holding the committee.
    #[arg(long, default_value = "testnet-data/genesis.json")]
    genesis: PathBuf,
    /// Node API address to fetch the proof from (with --root-genesis: a service-chain node).
    #[arg(long, default_value = "127.0.0.1:8100")]
    node: String,
    /// Cross-chain proof: the root chain's genesis; the account is on service chain --chain and
    /// is proven through the root's latest anchor of it, with only the root committee's keys.
    #[arg(long, requires = "chain")]
    root_genesis: Option<PathBuf>,
    /// With --root-genesis: the service chain's id.
    #[arg(long)]
    chain: Option<String>,
    /// With --root-genesis: a root-chain node's API address.
    #[arg(long, default_value = "127.0.0.1:8100")]
    root_node: String,
    /// With --root-genesis: refuse a proof through a root checkpoint below this height.
    #[arg(long, default_value_t = 0)]
    min_root_height: u64,
}

async fn transfer(
    node: String,
    key: PathBuf,
    to: PublicKey,
    amount: u64,
    nonce: Option<u64>,
    wait: bool,
) -> anyhow::Result<()> {
    let signer = currency_cli::Signer {
        node,
        key,
        nonce,
        no_wait: !wait,
    };
    currency_cli::send(
        &signer,
        Payload::Transfer {
            to,
            amount,
            memo: Vec::new(),
        },
    )
    .await?;
    Ok(())
}

async fn verify_cross_chain(
    args: &VerifyArgs,
    root_genesis: &std::path::Path,
) -> anyhow::Result<()> {
    let chain = args.chain.as_deref().context("--chain is required")?;
    let genesis = Genesis::load(root_genesis)?;
    let root = Client::new(&args.root_node);
    let anchor: netchain_api::chains::AnchorResponse = root
        .get_typed(&format!("/v1/chains/{chain}/anchors/latest?proof=true"))
        .await
        .context("fetching the root's latest anchor with its proof")?;
    let key = hex::encode(netchain_execution::account_key(&args.account));
    let state: netchain_api::chains::StateProofResponse = Client::new(&args.node)
        .get_typed(&format!(
            "/v1/state/proof?key={key}&height={}",
            anchor.anchor.height
        ))
        .await
        .context("fetching the account's proof from the service chain")?;
    match netchain_client::verify_cross_chain_account(
        &genesis.committee,
        &genesis.chain_id,
        chain,
        &args.account,
        args.min_root_height,
        &anchor,
        &state,
    ) {
        Ok(v) => {
            let (balance, nonce) = v.account.map_or((0, 0), |a| (a.balance, a.nonce));
            println!(
                "verified: on {chain} at height {} (state root {}), account {} has balance {balance}, nonce {nonce}; anchored on {} and certified by a quorum of its committee at root height {}",
                v.height, v.state_root, args.account, genesis.chain_id, v.root_height
            );
            Ok(())
        }
        Err(e) => bail!("cross-chain proof does NOT verify: {e}"),
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(root_genesis) = &args.root_genesis {
        return verify_cross_chain(&args, root_genesis).await;
    }
    let genesis = Genesis::load(&args.genesis)?;
    let client = Client::new(&args.node);
    let resp = client.account(&args.account, true).await?;
    match verify_account_proof(&genesis.committee, &genesis.chain_id, &args.account, &resp) {
        Ok(v) => {
            let (balance, nonce) = v.account.map_or((0, 0), |a| (a.balance, a.nonce));
            println!(
                "verified: account {} has balance {balance}, nonce {nonce} at height {} (state root {}, certified by {} of {} validators)",
                args.account,
                v.height,
                v.state_root,
                resp.proof.as_ref().map_or(0, |p| p.checkpoint.signatures.len()),
                genesis.committee.size()
            );
            Ok(())
        }
        Err(e) => bail!("proof does NOT verify: {e}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    netchain_cli::procs::no_transparent_huge_pages();
    match cli.command {
        Command::Keys(KeysCommand::New { out }) => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists; not overwriting a key",
                out.display()
            );
            let kp = Keypair::generate();
            KeyFile::from_keypair(&kp).save(&out)?;
            println!("{}", kp.public());
        }
        Command::Keys(KeysCommand::Show { key }) => {
            println!("{}", KeyFile::load(&key)?.public());
        }
        Command::Genesis(args) => {
            let l = layout::write(&args.dir, &args.layout.params())?;
            println!(
                "wrote {} ({} validators, {} funded accounts, supply {})",
                l.genesis_file().display(),
                l.genesis.committee.size(),
                l.genesis.accounts.len(),
                l.genesis.supply()
            );
        }
        Command::Testnet(args) if args.service_chains > 0 => {
            let ok = netchain_cli::multichain::run(netchain_cli::multichain::MultiOptions {
                dir: args.dir,
                keep: args.keep,
                service_chains: args.service_chains,
                validators: args.layout.validators,
                load_tps: args.load,
                duration: args.duration,
                p2p_port: args.layout.p2p_port,
                api_port: args.layout.api_port,
                port_stride: 100,
                anchor_every_blocks: args.anchor_every,
                accounts: args.layout.accounts,
            })
            .await?;
            if !ok {
                bail!("the run did not meet its goals (see the summary)");
            }
        }
        Command::Testnet(args) => {
            let ok = testnet::run(TestnetOptions {
                layout: args.layout.params(),
                dir: args.dir,
                keep: args.keep,
                load_tps: args.load,
                duration: args.duration,
            })
            .await?;
            if !ok {
                bail!("the run did not meet its goals (see the summary)");
            }
        }
        Command::Tx(TxCommand::Transfer {
            node,
            key,
            to,
            amount,
            nonce,
            wait,
        }) => transfer(node, key, to, amount, nonce, wait).await?,
        Command::Query(q) => match q {
            QueryCommand::Account { key, proof, node } => {
                print_json(&Client::new(&node).account(&key, proof).await?)?
            }
            QueryCommand::Block { height, node } => print_json(
                &Client::new(&node)
                    .get_json(&format!("/v1/blocks/{height}"))
                    .await?,
            )?,
            QueryCommand::Tx { id, node } => match Client::new(&node).tx_status(&id).await? {
                Some(s) => print_json(&s)?,
                None => bail!("transaction {id} unknown to the node"),
            },
            QueryCommand::Status { node } => print_json(&Client::new(&node).status().await?)?,
        },
        Command::Verify(args) => verify(args).await?,
        Command::Bench(args) => bench::run(args).await?,
        Command::Currency(cmd) => currency_cli::run_currency(cmd).await?,
        Command::Voucher(cmd) => currency_cli::run_voucher(cmd).await?,
        Command::Id(cmd) => netchain_cli::id_cli::run(cmd).await?,
        Command::Demo(DemoCommand::LocalCurrency(args)) => {
            if !demo::run(args).await? {
                bail!("the demo did not meet its goals (see the summary)");
            }
        }
    }
    Ok(())
}
