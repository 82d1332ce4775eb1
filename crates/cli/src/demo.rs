//! `netchain demo local-currency`: a city's local currency on a local network.
//!
//! The city (issuer) defines the currency with its bank, registers thousands of merchants across
//! districts and categories (a few outside the allowed ones), and then residents charge, pay by
//! QR (merchant-presented requests and resident-presented authorizations), merchants refund and
//! redeem, and the city issues gift vouchers that residents redeem at shops. Every account sends
//! one transaction at a time and learns its outcome from the node's event stream, so nonces never
//! drift; the books are reconciled on every validator every second and audited against the real
//! balances at the end.

use crate::layout::LayoutParams;
use crate::procs::{netchaind_path, wait_ready, NodeProcess};
use crate::testnet::{prepare_dir, statuses};
use anyhow::bail;
use clap::Args;
use netchain_api::currency::{MerchantView, Reconciliation, WalletView};
use netchain_client::Client;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_execution::currency::Voucher;
use netchain_types::currency::{
    voucher_id, CurrencyOp, CurrencyRules, Deposit, MerchantInfo, PaymentAuthorization,
    PaymentRequest, VoucherOp,
};
use netchain_types::{
    hash_parts, Digest, Payload, PublicKey, Reference, SignedTransaction, Transaction,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `println!`, or `eprintln!` when quiet (so a JSON report alone reaches stdout).
macro_rules! say {
    ($quiet:expr, $($t:tt)*) => {
        if $quiet { eprintln!($($t)*) } else { println!($($t)*) }
    };
}

/// The demo's currency id.
pub const CURRENCY: &str = "CITY";
const TICK: Duration = Duration::from_millis(50);
/// A transaction with no outcome after this long frees its sender (its nonce is re-read).
const INFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
const PAYMENTS_KEPT: usize = 20_000;
const VOUCHERS_KEPT: usize = 20_000;
/// Merchants per registration and deposits per charge: both fit the default 4 KiB transaction.
const MERCHANTS_PER_TX: usize = 32;
const DEPOSITS_PER_TX: usize = 40;
/// Charge transactions the bank keeps in flight.
const BANK_PIPELINE: u32 = 4;

/// Flags of `netchain demo local-currency`.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Data folder (wiped and rewritten).
    #[arg(long, default_value = "demo-data")]
    pub dir: PathBuf,
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Residents (wallet keys).
    #[arg(long, default_value_t = 100_000)]
    pub residents: u32,
    /// Registered merchants.
    #[arg(long, default_value_t = 5_000)]
    pub merchants: u32,
    /// Offered operations per second (charges, payments, refunds, redemptions, vouchers).
    #[arg(long, default_value_t = 1_500)]
    pub rate: u64,
    /// Run this long after setup, then print the summary and exit (default: until Ctrl-C).
    #[arg(long = "for", value_parser = crate::parse_duration)]
    pub duration: Option<Duration>,
    /// Validity of each charged amount (short values show the expiry sweep at work).
    #[arg(long, value_parser = crate::parse_duration, default_value = "10m")]
    pub expiry: Duration,
    /// Chain id.
    #[arg(long, default_value = "city-local")]
    pub chain_id: String,
    /// First P2P port.
    #[arg(long, default_value_t = 7300)]
    pub p2p_port: u16,
    /// First API port.
    #[arg(long, default_value_t = 8300)]
    pub api_port: u16,
    /// Progress to stderr, no live line (for `netchain bench --json`).
    #[arg(skip)]
    pub quiet: bool,
}

/// What a demo run measured.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// Seconds of load.
    pub secs: f64,
    /// Payments committed (merchant- and resident-presented).
    pub payments: u64,
    /// Payments per second.
    pub payments_per_sec: f64,
    /// All operations committed (each deposit of a batched charge counts once).
    pub operations: u64,
    /// Operations per second.
    pub operations_per_sec: f64,
    /// Operations the generator submitted (each deposit counts; setup does not).
    pub submitted: u64,
    /// Refusals by rule code.
    pub refused_by_rule: BTreeMap<String, u64>,
    /// Refusals at admission.
    pub refused_at_admission: u64,
    /// Books that did not balance, validators that disagreed, audit mismatches.
    pub reconciliation_errors: u64,
}

fn key(chain: &str, role: &str, i: u32) -> Keypair {
    Keypair::from_secret(
        hash_parts(
            "netchain/demo/local-currency",
            &[chain.as_bytes(), role.as_bytes(), &i.to_le_bytes()],
        )
        .0,
    )
}

/// Districts where the currency can be spent; merchants outside them exist too.
const DISTRICTS: usize = 25;
const CATEGORIES: [&str; 10] = [
    "grocery",
    "restaurant",
    "cafe",
    "bakery",
    "pharmacy",
    "bookstore",
    "clothing",
    "hardware",
    "academy",
    "salon",
];

fn rules() -> CurrencyRules {
    CurrencyRules {
        regions: (1..=DISTRICTS)
            .map(|d| format!("district-{d:02}"))
            .collect(),
        categories: CATEGORIES.iter().map(|c| c.to_string()).collect(),
        wallet_balance_max: 3_000_000,
        monthly_charge_max: 1_500_000,
        bonus_bps: 1_000,
        require_verified: false,
    }
}

/// Merchant `i`'s registration: 1 in 40 is outside the city, 1 in 40 in a barred category.
fn merchant_info(i: u32, pk: PublicKey) -> MerchantInfo {
    let region = if i % 40 == 7 {
        "outside-city".to_string()
    } else {
        format!("district-{:02}", i as usize % DISTRICTS + 1)
    };
    let category = if i % 40 == 13 {
        "department-store".to_string()
    } else {
        CATEGORIES[(i as usize / DISTRICTS) % CATEGORIES.len()].to_string()
    };
    MerchantInfo {
        merchant: pk,
        region,
        category,
        settlement_account: format!("city-bank-{i:06}"),
    }
}

/// A tiny seeded generator (xorshift*), enough for picking.
struct Pick(u64);

impl Pick {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Who sent a transaction in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Actor {
    Issuer,
    Bank,
    Resident(u32),
    Merchant(u32),
}

/// What a transaction in flight will do if applied.
#[derive(Clone, Debug)]
enum Effect {
    Setup,
    Charge(Vec<(u32, u64, u64)>),
    Pay {
        resident: u32,
        merchant: u32,
        amount: u64,
        payment: Digest,
    },
    Refund {
        resident: u32,
        merchant: u32,
        amount: u64,
    },
    Redeem {
        merchant: u32,
        amount: u64,
    },
    IssueVouchers {
        holder: u32,
        count: u32,
        face: u64,
    },
    RedeemVoucher {
        voucher: usize,
        merchant: u32,
        amount: u64,
    },
}

#[derive(Clone)]
struct Inflight {
    actor: Actor,
    /// A second account whose balance it moves (the payer of a collected payment).
    also: Option<Actor>,
    nonce: u64,
    sent: Instant,
    effect: Effect,
}

#[derive(Default)]
struct Account {
    nonce: u64,
    busy: bool,
    /// Transactions in flight (the bank only; everyone else has at most one).
    pipeline: u32,
    /// What the demo believes the account holds (expiry and refusals can make it less).
    balance: u64,
    /// Principal charged this month, as the demo counts it.
    charged: u64,
}

struct PaymentRec {
    id: Digest,
    resident: u32,
    merchant: u32,
    left: u64,
}

struct VoucherRec {
    id: Digest,
    holder: u32,
    left: u64,
    expires_at_ms: u64,
}

/// What the demo knows, updated by the event reader.
struct Model {
    issuer: Account,
    bank: Account,
    residents: Vec<Account>,
    merchants: Vec<Account>,
    inflight: HashMap<Digest, Inflight>,
    payments: VecDeque<PaymentRec>,
    vouchers: Vec<VoucherRec>,
    funded: Vec<u32>,
    touched_residents: HashSet<u32>,
    touched_merchants: HashSet<u32>,
    applied: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<String, u64>,
    admission_refused: u64,
    /// Transactions submitted by the load (not setup).
    submitted: u64,
    /// Transactions with no outcome after [`INFLIGHT_TIMEOUT`].
    lost: u64,
    /// Why admission last refused a transaction.
    last_refusal: Option<String>,
    /// Deposits waiting for the bank's next charge transaction.
    deposits: Vec<(u32, u64, u64)>,
    pay_times: VecDeque<Instant>,
    events_height: u64,
}

impl Model {
    fn account(&mut self, a: Actor) -> &mut Account {
        match a {
            Actor::Issuer => &mut self.issuer,
            Actor::Bank => &mut self.bank,
            Actor::Resident(i) => &mut self.residents[i as usize],
            Actor::Merchant(i) => &mut self.merchants[i as usize],
        }
    }

    /// Applies a committed transaction's outcome.
    fn outcome(&mut self, id: &Digest, applied: bool, code: Option<&str>) {
        let Some(f) = self.inflight.remove(id) else {
            return;
        };
        // Execution uses up the nonce of every authentic, in-sequence transaction, applied or
        // refused by a rule; only refusals on the signature, chain or nonce leave it.
        let code = code.unwrap_or("unknown").to_string();
        let nonce_used = applied
            || !matches!(
                code.as_str(),
                "bad_nonce" | "bad_signature" | "wrong_chain" | "duplicate"
            );
        if nonce_used {
            let a = self.account(f.actor);
            a.nonce = a.nonce.max(f.nonce + 1);
            if f.actor == Actor::Bank {
                self.bank.pipeline = self.bank.pipeline.saturating_sub(1);
            }
            self.account(f.actor).busy = false;
            if let Some(a) = f.also {
                self.account(a).busy = false;
            }
        } else {
            self.release(&f);
        }
        if !applied {
            if code == "insufficient_funds" || code == "funds_expired" {
                if let Effect::Pay { resident, .. } = f.effect {
                    self.residents[resident as usize].balance = 0;
                }
            }
            *self.rejected.entry(code).or_default() += 1;
            return;
        }
        let name = match f.effect {
            Effect::Setup => "setup",
            Effect::Charge(deposits) => {
                // Every deposit is one operation (the last one is counted below).
                *self.applied.entry("charge").or_default() += deposits.len() as u64 - 1;
                for (r, principal, minted) in deposits {
                    let a = &mut self.residents[r as usize];
                    if a.balance == 0 {
                        self.funded.push(r);
                    }
                    a.balance += minted;
                    a.charged += principal;
                    self.touched_residents.insert(r);
                }
                "charge"
            }
            Effect::Pay {
                resident,
                merchant,
                amount,
                payment,
            } => {
                let r = &mut self.residents[resident as usize];
                r.balance = r.balance.saturating_sub(amount);
                self.merchants[merchant as usize].balance += amount;
                self.touched_merchants.insert(merchant);
                if self.payments.len() >= PAYMENTS_KEPT {
                    self.payments.pop_front();
                }
                self.payments.push_back(PaymentRec {
                    id: payment,
                    resident,
                    merchant,
                    left: amount,
                });
                self.pay_times.push_back(Instant::now());
                "pay"
            }
            Effect::Refund {
                resident,
                merchant,
                amount,
            } => {
                self.residents[resident as usize].balance += amount;
                let m = &mut self.merchants[merchant as usize];
                m.balance = m.balance.saturating_sub(amount);
                "refund"
            }
            Effect::Redeem { merchant, amount } => {
                let m = &mut self.merchants[merchant as usize];
                m.balance = m.balance.saturating_sub(amount);
                "redeem"
            }
            Effect::IssueVouchers {
                holder,
                count,
                face,
            } => {
                for i in 0..count {
                    self.vouchers.push(VoucherRec {
                        id: voucher_id(id, i),
                        holder,
                        left: face,
                        expires_at_ms: netchain_node::now_ms() + 3_600_000,
                    });
                }
                "voucher_issue"
            }
            Effect::RedeemVoucher {
                voucher,
                merchant,
                amount,
            } => {
                if let Some(v) = self.vouchers.get_mut(voucher) {
                    v.left = v.left.saturating_sub(amount);
                }
                self.merchants[merchant as usize].balance += amount;
                self.touched_merchants.insert(merchant);
                "voucher_redeem"
            }
        };
        *self.applied.entry(name).or_default() += 1;
    }

    fn release(&mut self, f: &Inflight) {
        if f.actor == Actor::Bank {
            // The bank pipelines its charges: a refused one rewinds the nonce (the ones after it
            // fail on their nonce and rewind to the same place).
            self.bank.pipeline = self.bank.pipeline.saturating_sub(1);
            self.bank.nonce = self.bank.nonce.min(f.nonce);
        }
        self.account(f.actor).busy = false;
        if let Some(a) = f.also {
            self.account(a).busy = false;
        }
    }

    fn payments_per_sec(&mut self) -> f64 {
        let now = Instant::now();
        while self
            .pay_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.pay_times.pop_front();
        }
        self.pay_times.len() as f64 / 5.0
    }
}

struct Demo {
    chain: String,
    clients: Vec<Client>,
    issuer: Keypair,
    bank: Keypair,
    residents: Vec<Keypair>,
    merchants: Vec<Keypair>,
    model: Mutex<Model>,
    reconciliation_errors: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
    quiet: bool,
}

impl Demo {
    fn keypair(&self, a: Actor) -> &Keypair {
        match a {
            Actor::Issuer => &self.issuer,
            Actor::Bank => &self.bank,
            Actor::Resident(i) => &self.residents[i as usize],
            Actor::Merchant(i) => &self.merchants[i as usize],
        }
    }

    fn sign(&self, a: Actor, nonce: u64, payload: Payload) -> SignedTransaction {
        let kp = self.keypair(a);
        sign_transaction(
            kp,
            Transaction {
                chain_id: self.chain.clone(),
                sender: kp.public(),
                nonce,
                payload,
            },
        )
    }
}

/// Runs the demo; returns whether it met its goals (payments committed, zero reconciliation
/// errors, validators agree).
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    let r = run_report(args).await?;
    Ok(r.reconciliation_errors == 0 && r.payments > 0)
}

/// Runs the demo and returns its figures.
pub async fn run_report(args: DemoArgs) -> anyhow::Result<DemoReport> {
    anyhow::ensure!(args.residents >= 10, "need at least 10 residents");
    anyhow::ensure!(args.merchants >= 40, "need at least 40 merchants");
    anyhow::ensure!(
        args.expiry >= Duration::from_secs(1),
        "expiry of at least 1 s"
    );
    let layout = prepare_dir(
        &args.dir,
        false,
        &LayoutParams {
            chain_id: args.chain_id.clone(),
            validators: args.validators,
            accounts: 1,
            balance: 1,
            p2p_base_port: args.p2p_port,
            api_base_port: args.api_port,
            host: "127.0.0.1".into(),
            organizations: crate::layout::DEFAULT_ORGANIZATIONS,
            registered_senders: false,
            batching: true,
            ordering_only: false,
        },
    )?;
    let binary = netchaind_path();
    let mut procs = Vec::new();
    for (i, file) in layout.node_files.iter().enumerate() {
        let log = layout.validator_dir(i).join("node.log");
        procs.push(NodeProcess::start(&binary, file, &log)?);
    }
    let clients: Vec<Client> = (0..procs.len())
        .map(|i| Client::new(layout.api_address(i)))
        .collect();
    say!(
        args.quiet,
        "netchain demo local-currency: {} validators, chain {}, data in {}",
        procs.len(),
        args.chain_id,
        layout.dir.display()
    );
    let result = drive(&args, clients).await;
    for p in &mut procs {
        p.kill().await;
    }
    result
}

async fn drive(args: &DemoArgs, clients: Vec<Client>) -> anyhow::Result<DemoReport> {
    wait_ready(&clients, Duration::from_secs(30)).await?;
    say!(
        args.quiet,
        "  explorer: http://{}/",
        clients[0].base().trim_start_matches("http://")
    );
    let t = Instant::now();
    let chain = args.chain_id.clone();
    let residents: Vec<Keypair> = (0..args.residents)
        .map(|i| key(&chain, "resident", i))
        .collect();
    let merchants: Vec<Keypair> = (0..args.merchants)
        .map(|i| key(&chain, "merchant", i))
        .collect();
    say!(
        args.quiet,
        "  derived the keys of {} residents and {} merchants in {:.1} s",
        args.residents,
        args.merchants,
        t.elapsed().as_secs_f64()
    );
    let demo = Arc::new(Demo {
        chain: chain.clone(),
        clients: clients.clone(),
        issuer: key(&chain, "issuer", 0),
        bank: key(&chain, "bank", 0),
        model: Mutex::new(Model {
            issuer: Account::default(),
            bank: Account::default(),
            residents: (0..residents.len()).map(|_| Account::default()).collect(),
            merchants: (0..merchants.len()).map(|_| Account::default()).collect(),
            inflight: HashMap::new(),
            payments: VecDeque::new(),
            vouchers: Vec::new(),
            funded: Vec::new(),
            touched_residents: HashSet::new(),
            touched_merchants: HashSet::new(),
            applied: BTreeMap::new(),
            rejected: BTreeMap::new(),
            admission_refused: 0,
            submitted: 0,
            lost: 0,
            last_refusal: None,
            deposits: Vec::new(),
            pay_times: VecDeque::new(),
            events_height: 0,
        }),
        residents,
        merchants,
        reconciliation_errors: Default::default(),
        stop: AtomicBool::new(false),
        quiet: args.quiet,
    });
    let start_height = clients[0].status().await?.height;
    let reader = tokio::spawn(read_events(demo.clone(), start_height));
    setup(&demo, args).await?;
    say!(
        args.quiet,
        "  load: {} operations/s offered (about 70 % payments); Ctrl-C or --for ends the run",
        args.rate
    );
    let load = tokio::spawn(offer_load(demo.clone(), args.rate));
    let started = Instant::now();
    let tty = !args.quiet && std::io::stdout().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last_rec: Option<Reconciliation> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => { say!(args.quiet, ""); break; }
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // Every validator's books, every second.
        for c in &clients {
            if let Ok(r) = c
                .get_typed::<Reconciliation>(&format!("/v1/currencies/{CURRENCY}/reconciliation"))
                .await
            {
                if !r.balanced {
                    demo.reconciliation_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("\nreconciliation error at {}: {r:?}", c.base());
                }
                if c.base() == clients[0].base() {
                    last_rec = Some(r);
                }
            }
        }
        let line = {
            let mut m = demo.model.lock().expect("model");
            let pps = m.payments_per_sec();
            live_line(started.elapsed(), &m, pps, last_rec.as_ref(), &demo)
        };
        if tty {
            print!("\r{line:<150}");
            let _ = std::io::stdout().flush();
        } else if !args.quiet && started.elapsed().as_secs().is_multiple_of(5) {
            println!("{line}");
        }
    }
    let elapsed = started.elapsed();
    demo.stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    if tty {
        say!(args.quiet, "");
    }
    // Let every transaction in flight reach its outcome.
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(20) {
        if demo.model.lock().expect("model").inflight.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reader.abort();
    summary(&demo, elapsed).await
}

fn live_line(
    elapsed: Duration,
    m: &Model,
    pps: f64,
    rec: Option<&Reconciliation>,
    demo: &Demo,
) -> String {
    let get = |k| m.applied.get(k).copied().unwrap_or(0);
    let rejected: u64 = m.rejected.values().sum();
    let top = m
        .rejected
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(String::new(), |(c, n)| format!(" (most: {c} {n})"));
    let books = match rec {
        Some(r) => format!(
            "minted {} = circulating {} + redeemed {} + expired {} {}",
            r.minted,
            r.circulating,
            r.redeemed,
            r.expired_returned,
            if r.balanced { "ok" } else { "MISMATCH" }
        ),
        None => "books: -".into(),
    };
    format!(
        "[{:>4}s] h {} | payments {:>6.0}/s total {} | deposits {} refunds {} redemptions {} vouchers {}/{} | rejected {rejected}{top} | {books} | errors {}",
        elapsed.as_secs(),
        m.events_height,
        pps,
        get("pay"),
        get("charge"),
        get("refund"),
        get("redeem"),
        get("voucher_issue"),
        get("voucher_redeem"),
        demo.reconciliation_errors.load(Ordering::Relaxed),
    )
}

/// Submits `txs` (with their effects) to a node; refused ones free their senders at once.
async fn submit(demo: &Demo, node: usize, txs: Vec<(SignedTransaction, Inflight)>) {
    if txs.is_empty() {
        return;
    }
    let signed: Vec<SignedTransaction> = txs.iter().map(|(t, _)| t.clone()).collect();
    {
        let mut m = demo.model.lock().expect("model");
        for (tx, f) in txs {
            m.submitted += match &f.effect {
                Effect::Setup => 0,
                Effect::Charge(d) => d.len() as u64,
                _ => 1,
            };
            m.inflight.insert(tx.id(), f);
        }
    }
    let result = demo.clients[node % demo.clients.len()]
        .submit_batch(&signed)
        .await;
    let mut m = demo.model.lock().expect("model");
    match result {
        Ok(resp) => {
            for (tx, item) in signed.iter().zip(&resp.results) {
                if !item.accepted {
                    m.admission_refused += 1;
                    m.last_refusal.clone_from(&item.code);
                    if let Some(f) = m.inflight.remove(&tx.id()) {
                        m.release(&f);
                    }
                }
            }
        }
        Err(e) => {
            m.last_refusal = Some(e.to_string());
            for tx in &signed {
                if let Some(f) = m.inflight.remove(&tx.id()) {
                    m.release(&f);
                    m.admission_refused += 1;
                }
            }
        }
    }
}

/// Waits until no transaction is in flight (setup steps are sequential), up to `timeout`.
async fn settle(demo: &Demo, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if demo.model.lock().expect("model").inflight.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("setup transactions did not commit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn setup(demo: &Demo, args: &DemoArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    let define = Payload::Currency(CurrencyOp::Define {
        currency: CURRENCY.into(),
        bank: demo.bank.public(),
        expiry_secs: args.expiry.as_secs(),
        rules: rules(),
    });
    let tx = demo.sign(Actor::Issuer, 0, define);
    submit(demo, 0, vec![(tx, setup_flight(Actor::Issuer, 0))]).await;
    settle(demo, Duration::from_secs(30)).await?;
    {
        let m = demo.model.lock().expect("model");
        if m.issuer.nonce != 1 {
            bail!(
                "defining {CURRENCY} failed: {:?} {:?}",
                m.rejected,
                m.last_refusal
            );
        }
    }
    // Merchants in batches, all from the issuer in nonce order.
    let infos: Vec<MerchantInfo> = demo
        .merchants
        .iter()
        .enumerate()
        .map(|(i, k)| merchant_info(i as u32, k.public()))
        .collect();
    let mut txs = Vec::new();
    for (n, chunk) in infos.chunks(MERCHANTS_PER_TX).enumerate() {
        let nonce = 1 + n as u64;
        let op = CurrencyOp::RegisterMerchants {
            currency: CURRENCY.into(),
            merchants: chunk.to_vec(),
        };
        let tx = demo.sign(Actor::Issuer, nonce, Payload::Currency(op));
        txs.push((tx, setup_flight(Actor::Issuer, nonce)));
    }
    let expected = 1 + txs.len() as u64;
    for part in txs.chunks(500) {
        submit(
            demo,
            0,
            part.iter().map(|(t, f)| (t.clone(), f.clone())).collect(),
        )
        .await;
    }
    settle(demo, Duration::from_secs(120)).await?;
    let nonce = demo.model.lock().expect("model").issuer.nonce;
    if nonce != expected {
        let m = demo.model.lock().expect("model");
        bail!(
            "registering merchants failed (issuer nonce {nonce}, expected {expected}): {:?} {:?}",
            m.rejected,
            m.last_refusal
        );
    }
    say!(
        demo.quiet,
        "  setup: currency {CURRENCY} defined, {} merchants registered in {:.1} s",
        demo.merchants.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn setup_flight(actor: Actor, nonce: u64) -> Inflight {
    Inflight {
        actor,
        also: None,
        nonce,
        sent: Instant::now(),
        effect: Effect::Setup,
    }
}

/// Follows the committed transactions on validator 0 and applies their outcomes to the model.
async fn read_events(demo: Arc<Demo>, from_height: u64) {
    let client = demo.clients[0].clone();
    client
        .follow_txs(from_height, |ev| {
            let mut m = demo.model.lock().expect("model");
            m.events_height = m.events_height.max(ev.height);
            m.outcome(&ev.id, ev.applied, ev.code.as_deref());
        })
        .await;
}

/// Offers the workload at `rate` operations per second until stopped.
async fn offer_load(demo: Arc<Demo>, rate: u64) {
    let mut rng = Pick(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut offered = 0u64;
    let mut ticker = tokio::time::interval(TICK);
    let mut next_node = 0usize;
    while !demo.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let due = (rate as f64 * start.elapsed().as_secs_f64()) as u64;
        let ops = due.saturating_sub(offered).min(rate.max(1));
        offered = due;
        let txs = {
            let mut m = demo.model.lock().expect("model");
            expire_inflight(&mut m);
            plan(&demo, &mut m, &mut rng, ops)
        };
        // Spread over the validators; each batch in its own task so a slow node does not stall.
        let per = txs.len().div_ceil(demo.clients.len()).max(1);
        let mut batches = Vec::new();
        let mut it = txs.into_iter().peekable();
        while it.peek().is_some() {
            batches.push(it.by_ref().take(per).collect::<Vec<_>>());
        }
        let mut handles = Vec::new();
        for batch in batches {
            let d = demo.clone();
            let node = next_node;
            next_node = next_node.wrapping_add(1);
            handles.push(tokio::spawn(async move { submit(&d, node, batch).await }));
        }
        for h in handles {
            let _ = h.await;
        }
    }
}

/// Forgets transactions that never reached an outcome. Their senders stay busy (their next
/// nonce is unknown), so they simply drop out of the workload.
fn expire_inflight(m: &mut Model) {
    let stale: Vec<Digest> = m
        .inflight
        .iter()
        .filter(|(_, f)| f.sent.elapsed() > INFLIGHT_TIMEOUT)
        .map(|(id, _)| *id)
        .collect();
    for id in stale {
        m.inflight.remove(&id);
        m.lost += 1;
    }
}

fn flight(actor: Actor, also: Option<Actor>, nonce: u64, effect: Effect) -> Inflight {
    Inflight {
        actor,
        also,
        nonce,
        sent: Instant::now(),
        effect,
    }
}

/// Chooses `ops` operations in realistic proportions among idle accounts.
fn plan(
    demo: &Demo,
    m: &mut Model,
    rng: &mut Pick,
    ops: u64,
) -> Vec<(SignedTransaction, Inflight)> {
    let mut out = Vec::new();
    let nr = demo.residents.len() as u64;
    let nm = demo.merchants.len() as u64;
    let now = netchain_node::now_ms();
    for _ in 0..ops {
        let roll = rng.below(100);
        if roll < 70 && !m.funded.is_empty() {
            // Payment: two in three by a merchant's QR request, one in three by a resident's QR.
            // A few tries to find an idle resident with money and an idle shop.
            let mut pick = None;
            for _ in 0..4 {
                if m.funded.is_empty() {
                    break;
                }
                let slot = rng.below(m.funded.len() as u64) as usize;
                let r = m.funded[slot];
                if m.residents[r as usize].balance == 0 {
                    m.funded.swap_remove(slot);
                    continue;
                }
                let mi = rng.below(nm) as u32;
                if !m.residents[r as usize].busy && !m.merchants[mi as usize].busy {
                    pick = Some((r, mi));
                    break;
                }
            }
            let Some((r, mi)) = pick else {
                continue;
            };
            let balance = m.residents[r as usize].balance;
            let amount = (1_000 + rng.below(20_000)).min(balance);
            let (payer, shop) = (&demo.residents[r as usize], &demo.merchants[mi as usize]);
            let mut reference = [0u8; 16];
            reference[..8].copy_from_slice(&rng.next().to_le_bytes());
            reference[8..].copy_from_slice(&rng.next().to_le_bytes());
            if rng.below(3) < 2 {
                let request = PaymentRequest {
                    chain_id: demo.chain.clone(),
                    currency: CURRENCY.into(),
                    merchant: shop.public(),
                    amount,
                    reference: Reference(reference),
                    expires_at_ms: now + 120_000,
                };
                let payment = request.id();
                let merchant_signature = shop.sign(&payment);
                let a = &mut m.residents[r as usize];
                a.busy = true;
                let nonce = a.nonce;
                let op = CurrencyOp::Pay {
                    request,
                    merchant_signature,
                };
                let tx = demo.sign(Actor::Resident(r), nonce, Payload::Currency(op));
                let effect = Effect::Pay {
                    resident: r,
                    merchant: mi,
                    amount,
                    payment,
                };
                out.push((tx, flight(Actor::Resident(r), None, nonce, effect)));
            } else {
                let authorization = PaymentAuthorization {
                    chain_id: demo.chain.clone(),
                    currency: CURRENCY.into(),
                    payer: payer.public(),
                    merchant: Some(shop.public()),
                    amount_max: amount,
                    reference: Reference(reference),
                    expires_at_ms: now + 60_000,
                };
                let payment = authorization.id();
                let payer_signature = payer.sign(&payment);
                m.residents[r as usize].busy = true;
                let shop_acct = &mut m.merchants[mi as usize];
                shop_acct.busy = true;
                let nonce = shop_acct.nonce;
                let op = CurrencyOp::Collect {
                    authorization,
                    payer_signature,
                    amount,
                };
                let tx = demo.sign(Actor::Merchant(mi), nonce, Payload::Currency(op));
                let effect = Effect::Pay {
                    resident: r,
                    merchant: mi,
                    amount,
                    payment,
                };
                out.push((
                    tx,
                    flight(Actor::Merchant(mi), Some(Actor::Resident(r)), nonce, effect),
                ));
            }
        } else if roll < 85 || m.funded.is_empty() {
            // Charge: the bank batches confirmed deposits.
            let r = rng.below(nr) as u32;
            let a = &m.residents[r as usize];
            let principal = 100_000 * (1 + rng.below(5));
            let minted = principal + principal / 10;
            if m.deposits.len() >= DEPOSITS_PER_TX
                || a.charged + principal > 1_500_000
                || a.balance + minted > 3_000_000
                || m.deposits.iter().any(|d| d.0 == r)
            {
                continue;
            }
            m.deposits.push((r, principal, minted));
        } else if roll < 88 && !m.payments.is_empty() {
            // Refund part or all of a recent payment.
            let i = rng.below(m.payments.len() as u64) as usize;
            let p = &m.payments[i];
            let (mi, r, id) = (p.merchant, p.resident, p.id);
            let amount = if rng.below(2) == 0 {
                p.left
            } else {
                p.left / 2
            };
            let shop = &m.merchants[mi as usize];
            if amount == 0 || shop.busy || shop.balance < amount || m.residents[r as usize].busy {
                continue;
            }
            m.payments[i].left -= amount;
            let nonce = shop.nonce;
            m.merchants[mi as usize].busy = true;
            m.residents[r as usize].busy = true;
            let op = CurrencyOp::Refund {
                payment: id,
                amount,
            };
            let tx = demo.sign(Actor::Merchant(mi), nonce, Payload::Currency(op));
            let effect = Effect::Refund {
                resident: r,
                merchant: mi,
                amount,
            };
            out.push((
                tx,
                flight(Actor::Merchant(mi), Some(Actor::Resident(r)), nonce, effect),
            ));
        } else if roll < 90 {
            // A merchant with takings redeems them for a bank settlement.
            let mi = rng.below(nm) as u32;
            let shop = &m.merchants[mi as usize];
            if shop.busy || shop.balance < 20_000 {
                continue;
            }
            let amount = shop.balance;
            let nonce = shop.nonce;
            m.merchants[mi as usize].busy = true;
            let op = CurrencyOp::Redeem {
                currency: CURRENCY.into(),
                amount,
            };
            let tx = demo.sign(Actor::Merchant(mi), nonce, Payload::Currency(op));
            let effect = Effect::Redeem {
                merchant: mi,
                amount,
            };
            out.push((tx, flight(Actor::Merchant(mi), None, nonce, effect)));
        } else if roll < 92 {
            // The city issues gift vouchers (one issue in flight at a time; the demo follows
            // every voucher it issued, so it stops issuing at its cap).
            if m.issuer.busy || m.vouchers.len() + 4 > VOUCHERS_KEPT {
                continue;
            }
            let holder = rng.below(nr) as u32;
            let count = 1 + rng.below(4) as u32;
            let face = [10_000, 30_000, 50_000][rng.below(3) as usize];
            let nonce = m.issuer.nonce;
            m.issuer.busy = true;
            let op = VoucherOp::Issue {
                currency: CURRENCY.into(),
                to: demo.residents[holder as usize].public(),
                face_value: face,
                count,
                expires_at_ms: now + 3_600_000,
            };
            let tx = demo.sign(Actor::Issuer, nonce, Payload::Voucher(op));
            let effect = Effect::IssueVouchers {
                holder,
                count,
                face,
            };
            out.push((tx, flight(Actor::Issuer, None, nonce, effect)));
        } else if !m.vouchers.is_empty() {
            // A holder redeems (part of) a voucher at a shop.
            let vi = rng.below(m.vouchers.len() as u64) as usize;
            let v = &m.vouchers[vi];
            let (holder, left, id) = (v.holder, v.left, v.id);
            if left == 0 || v.expires_at_ms <= now {
                continue;
            }
            let mi = rng.below(nm) as u32;
            if m.residents[holder as usize].busy {
                continue;
            }
            let amount = if rng.below(2) == 0 {
                left
            } else {
                left / 2 + 1
            }
            .min(left);
            let nonce = m.residents[holder as usize].nonce;
            m.residents[holder as usize].busy = true;
            let op = VoucherOp::Redeem {
                voucher: id,
                merchant: demo.merchants[mi as usize].public(),
                amount,
            };
            let tx = demo.sign(Actor::Resident(holder), nonce, Payload::Voucher(op));
            let effect = Effect::RedeemVoucher {
                voucher: vi,
                merchant: mi,
                amount,
            };
            out.push((tx, flight(Actor::Resident(holder), None, nonce, effect)));
        }
    }
    if !m.deposits.is_empty() && m.bank.pipeline < BANK_PIPELINE {
        let deposits = std::mem::take(&mut m.deposits);
        let nonce = m.bank.nonce;
        m.bank.nonce += 1;
        m.bank.pipeline += 1;
        let list = deposits
            .iter()
            .map(|&(r, principal, _)| Deposit {
                wallet: demo.residents[r as usize].public(),
                amount: principal,
                reference: hash_parts(
                    "netchain/demo/deposit",
                    &[&rng.next().to_le_bytes(), &r.to_le_bytes()],
                ),
            })
            .collect();
        let op = CurrencyOp::Charge {
            currency: CURRENCY.into(),
            deposits: list,
        };
        let tx = demo.sign(Actor::Bank, nonce, Payload::Currency(op));
        out.push((
            tx,
            flight(Actor::Bank, None, nonce, Effect::Charge(deposits)),
        ));
    }
    out
}

async fn summary(demo: &Demo, elapsed: Duration) -> anyhow::Result<DemoReport> {
    let clients = &demo.clients;
    let st = statuses(clients).await;
    let height = st.iter().flatten().map(|s| s.height).min().unwrap_or(0);
    let (payments, ops, submitted, refused, admission, touched_r, touched_m, vouchers) = {
        let m = demo.model.lock().expect("model");
        let get = |k| m.applied.get(k).copied().unwrap_or(0);
        let payments = get("pay");
        let secs = elapsed.as_secs_f64().max(0.001);
        say!(
            demo.quiet,
            "summary ({secs:.1} s of load, {} validators)",
            clients.len()
        );
        say!(
demo.quiet,
            "  payments committed: {payments} ({:.0} payments/s); deposits charged {}; refunds {}; redemptions {}; voucher issues {}; voucher redemptions {}",
            payments as f64 / secs,
            get("charge"),
            get("refund"),
            get("redeem"),
            get("voucher_issue"),
            get("voucher_redeem")
        );
        let ops: u64 = m
            .applied
            .iter()
            .filter(|(k, _)| **k != "setup")
            .map(|(_, v)| v)
            .sum();
        say!(
            demo.quiet,
            "  all operations committed: {ops} ({:.0}/s)",
            ops as f64 / secs
        );
        say!(
            demo.quiet,
            "  refused by a rule: {:?}; refused at admission: {}; no outcome: {}",
            m.rejected,
            m.admission_refused,
            m.lost
        );
        let touched_r: Vec<u32> = m.touched_residents.iter().copied().collect();
        let touched_m: Vec<u32> = m.touched_merchants.iter().copied().collect();
        let vouchers: Vec<Digest> = m.vouchers.iter().map(|v| v.id).collect();
        (
            payments,
            ops,
            m.submitted,
            m.rejected.clone(),
            m.admission_refused,
            touched_r,
            touched_m,
            vouchers,
        )
    };
    // The same books on every validator at one height.
    let mut recs = Vec::new();
    for c in clients {
        match c
            .get_typed::<Reconciliation>(&format!(
                "/v1/currencies/{CURRENCY}/reconciliation?height={height}"
            ))
            .await
        {
            Ok(r) => recs.push(r),
            Err(e) => say!(demo.quiet, "  {}: no reconciliation ({e})", c.base()),
        }
    }
    let mut errors = demo.reconciliation_errors.load(Ordering::Relaxed);
    let key = |r: &Reconciliation| {
        (
            r.minted,
            r.circulating,
            r.redeemed,
            r.expired_returned,
            r.balanced,
        )
    };
    if recs.is_empty() || recs.iter().any(|r| !r.balanced || key(r) != key(&recs[0])) {
        errors += 1;
    }
    if let Some(r) = recs.first() {
        say!(
demo.quiet,
            "  books at height {height} on {}/{} validators: minted {} (deposits {} + bonus {} + vouchers {}) = circulating {} + redeemed {} + expired {}: {}",
            recs.len(),
            clients.len(),
            r.minted,
            r.minted_principal,
            r.minted_bonus,
            r.vouchers_issued,
            r.circulating,
            r.redeemed,
            r.expired_returned,
            if r.balanced { "balanced" } else { "NOT balanced" }
        );
    }
    // Audit: the real balances of everyone the demo touched add up to `circulating`.
    match audit(&clients[0], demo, &touched_r, &touched_m, &vouchers).await {
        Ok((h, sum, circulating)) if sum == circulating => say!(
demo.quiet,
            "  audit at height {h}: {} wallets + {} merchants + {} vouchers hold {sum} = circulating",
            touched_r.len(),
            touched_m.len(),
            vouchers.len()
        ),
        Ok((h, sum, circulating)) => {
            errors += 1;
            say!(demo.quiet, "  audit at height {h}: balances sum to {sum}, circulating is {circulating}: MISMATCH");
        }
        Err(e) => {
            errors += 1;
            say!(demo.quiet, "  audit failed: {e:#}");
        }
    }
    say!(demo.quiet, "  reconciliation errors: {errors}");
    let secs = elapsed.as_secs_f64().max(0.001);
    Ok(DemoReport {
        secs,
        payments,
        payments_per_sec: payments as f64 / secs,
        operations: ops,
        operations_per_sec: ops as f64 / secs,
        submitted,
        refused_by_rule: refused,
        refused_at_admission: admission,
        reconciliation_errors: errors,
    })
}

/// Sums the real balances of the touched accounts at one height (every read names it).
async fn audit(
    client: &Client,
    demo: &Demo,
    residents: &[u32],
    merchants: &[u32],
    vouchers: &[Digest],
) -> anyhow::Result<(u64, u64, u64)> {
    let rec: Reconciliation = client
        .get_typed(&format!("/v1/currencies/{CURRENCY}/reconciliation"))
        .await?;
    let h = rec.height;
    let mut sum = 0u64;
    for chunk in residents.chunks(64) {
        let futs = chunk.iter().map(|&r| {
            let path = format!(
                "/v1/currencies/{CURRENCY}/wallets/{}?height={h}",
                demo.residents[r as usize].public()
            );
            async move { client.get_typed::<WalletView>(&path).await }
        });
        for w in futures::future::join_all(futs).await {
            let w = w?;
            sum += w.spendable + w.expired;
        }
    }
    for chunk in merchants.chunks(64) {
        let futs = chunk.iter().map(|&i| {
            let path = format!(
                "/v1/currencies/{CURRENCY}/merchants/{}?height={h}",
                demo.merchants[i as usize].public()
            );
            async move { client.get_typed::<MerchantView>(&path).await }
        });
        for mv in futures::future::join_all(futs).await {
            sum += mv?.record.balance;
        }
    }
    for chunk in vouchers.chunks(64) {
        let futs = chunk.iter().map(|id| {
            let path = format!("/v1/vouchers/{id}?height={h}");
            async move { client.get_typed::<Voucher>(&path).await }
        });
        for v in futures::future::join_all(futs).await {
            sum += v?.remaining;
        }
    }
    Ok((h, sum, rec.circulating))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchants_mostly_follow_the_rules() {
        let r = rules();
        let infos: Vec<_> = (0..400)
            .map(|i| merchant_info(i, PublicKey([0; 32])))
            .collect();
        let ok = infos
            .iter()
            .filter(|m| r.regions.contains(&m.region) && r.categories.contains(&m.category))
            .count();
        assert_eq!(
            ok, 380,
            "1 in 40 outside the city and 1 in 40 in a barred category"
        );
        assert!(r.validate().is_ok());
    }
}
