//! A multi-process test network: real `netchaind` processes on loopback.

#![allow(dead_code)]

use netchain_cli::layout::{self, demo_account, Layout, LayoutParams};
use netchain_cli::procs::NodeProcess;
use netchain_client::Client;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::{Payload, PublicKey, SignedTransaction, Transaction};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Networks in one test binary run one at a time (two cores).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn netchaind() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netchaind"))
}

/// A run of `2 * n` free consecutive loopback ports, below the kernel's ephemeral range (from
/// 32768 on Linux: a client connection's source port could take a probed port before the node
/// binds it), and a different run for each network a test binary starts (the previous one's
/// processes may still be dying when the next starts).
pub fn free_base_port(n: usize) -> u16 {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seed = std::process::id() as usize * 7
        + STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 37;
    for attempt in 0..200 {
        let base = 20_000 + ((seed + attempt * 131) % 750) * 16;
        let ok = (0..2 * n).all(|i| TcpListener::bind(("127.0.0.1", (base + i) as u16)).is_ok());
        if ok {
            return base as u16;
        }
    }
    panic!("no free port range");
}

pub struct Net {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    pub procs: Vec<Option<NodeProcess>>,
    pub clients: Vec<Client>,
}

impl Net {
    pub async fn start(validators: usize, accounts: usize) -> Net {
        Self::start_with(validators, accounts, false, |_, _| {}).await
    }

    /// [`Net::start`] where the demo accounts are registered clients and only registered
    /// identities may send (`registered_senders`), and `edit(i, file)` adjusts validator i's
    /// node file first.
    pub async fn start_with(
        validators: usize,
        accounts: usize,
        registered_senders: bool,
        edit: impl Fn(usize, &mut netchain_config::NodeConfig),
    ) -> Net {
        Self::launch(
            validators,
            |p| {
                p.accounts = accounts;
                p.registered_senders = registered_senders;
            },
            edit,
        )
        .await
    }

    /// A network laid out with `params` adjusted (the chain, validators and ports are set
    /// here), and `edit(i, file)` applied to validator i's node file.
    pub async fn launch(
        validators: usize,
        params: impl FnOnce(&mut LayoutParams),
        edit: impl Fn(usize, &mut netchain_config::NodeConfig),
    ) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port(validators);
        let mut p = LayoutParams {
            chain_id: "test-chain".into(),
            validators,
            accounts: 0,
            balance: 1_000_000,
            p2p_base_port: base,
            api_base_port: base + validators as u16,
            host: "127.0.0.1".into(),
            organizations: netchain_cli::layout::DEFAULT_ORGANIZATIONS,
            registered_senders: false,
            batching: true,
            ordering_only: false,
        };
        params(&mut p);
        let layout = layout::write(dir.path(), &p).unwrap();
        for (i, file) in layout.node_files.iter().enumerate() {
            let mut cfg = netchain_config::NodeConfig::load(file).unwrap();
            edit(i, &mut cfg);
            cfg.save(file).unwrap();
        }
        let clients = (0..validators)
            .map(|i| Client::new(layout.api_address(i)))
            .collect();
        let mut net = Net {
            dir,
            layout,
            procs: (0..validators).map(|_| None).collect(),
            clients,
        };
        for i in 0..validators {
            net.start_node(i);
        }
        netchain_cli::procs::wait_ready(&net.clients, Duration::from_secs(30))
            .await
            .unwrap();
        net
    }

    pub fn start_node(&mut self, i: usize) {
        let log = self.layout.validator_dir(i).join("node.log");
        self.procs[i] =
            Some(NodeProcess::start(&netchaind(), &self.layout.node_files[i], &log).unwrap());
    }

    /// SIGKILL, as a crash.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill().await;
        }
    }

    pub fn chain_id(&self) -> String {
        self.layout.genesis.chain_id.clone()
    }

    pub fn p2p_address(&self, i: usize) -> String {
        self.layout.genesis.committee.validators[i]
            .p2p_address
            .clone()
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.layout.validator_dir(i).join("node.log")).unwrap_or_default()
    }

    pub async fn height(&self, i: usize) -> Option<u64> {
        self.clients[i].status().await.ok().map(|s| s.height)
    }

    /// Waits until validator `i` reaches `height`.
    pub async fn wait_height(&self, i: usize, height: u64, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.height(i).await.is_some_and(|h| h >= height) {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "validator {i} did not reach height {height} in {timeout:?} (at {:?}); log tail:\n{}",
                    self.height(i).await,
                    tail(&self.log(i))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that the given validators hold the same block ids at every height in `range` and
    /// the same state root at its end.
    pub async fn assert_agree(&self, who: &[usize], heights: std::ops::RangeInclusive<u64>) {
        let end = *heights.end();
        for h in heights {
            let mut seen = None;
            for &i in who {
                let b = self.clients[i]
                    .block(h)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("validator {i} has no block {h}"));
                let key = (b.id, b.state_root);
                match &seen {
                    None => seen = Some(key),
                    Some(s) => assert_eq!(s, &key, "validators disagree at height {h}"),
                }
                if h == end {
                    assert!(b.state_root.is_some(), "no state root at {h}");
                }
            }
        }
    }

    /// Sum of the balances of the demo accounts as seen by validator `i`.
    pub async fn demo_supply(&self, i: usize) -> u64 {
        let mut sum = 0;
        for a in 0..self.layout.genesis.accounts.len() {
            let pk = demo_account(&self.chain_id(), a).public();
            sum += self.clients[i].account(&pk, false).await.unwrap().balance;
        }
        sum
    }
}

pub fn tail(s: &str) -> String {
    let lines: Vec<_> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn transfer(
    chain_id: &str,
    from: &Keypair,
    nonce: u64,
    to: PublicKey,
    amount: u64,
) -> SignedTransaction {
    sign_transaction(
        from,
        Transaction {
            chain_id: chain_id.to_string(),
            sender: from.public(),
            nonce,
            payload: Payload::Transfer {
                to,
                amount,
                memo: Vec::new(),
            },
        },
    )
}
