//! The explorer in a real browser, and `/metrics` through a Prometheus parser, on a local
//! four-validator network.
//!
//! The browser is Debian's `chromium`, run headless with a virtual-time budget: `--dump-dom`
//! gives the DOM after the page's scripts ran for that much (virtual) time, `--screenshot`
//! saves what it drew. Where no chromium is installed the browser test prints `SKIPPED` and
//! passes (`.ci/run` installs it).

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::currency::{CurrencyOp, CurrencyRules, Deposit};
use netchain_types::{Digest, Payload, Transaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);
/// Wall-clock limit of one browser run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// The chromium binary: `$CHROMIUM` if set, else `chromium` or `chromium-browser` on `PATH`,
/// else `/usr/bin/chromium`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let fallback = PathBuf::from("/usr/bin/chromium");
    fallback.is_file().then_some(fallback)
}

/// Headless chromium, one fresh profile per run.
struct Browser {
    binary: PathBuf,
}

impl Browser {
    async fn run(&self, extra: &[String], url: &str) -> std::process::Output {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        let out = tokio::time::timeout(BROWSER_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("chromium did not finish in {BROWSER_TIMEOUT:?} on {url}"))
            .expect("running chromium");
        assert!(
            out.status.success(),
            "chromium failed on {url} ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The DOM after `budget_ms` of virtual time.
    async fn dom(&self, url: &str, budget_ms: u64) -> String {
        let out = self
            .run(
                &[
                    format!("--virtual-time-budget={budget_ms}"),
                    "--dump-dom".into(),
                ],
                url,
            )
            .await;
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A PNG of the page after `budget_ms` of virtual time.
    async fn screenshot(&self, url: &str, budget_ms: u64, file: &Path) {
        let _ = std::fs::remove_file(file);
        self.run(
            &[
                format!("--virtual-time-budget={budget_ms}"),
                format!("--screenshot={}", file.display()),
            ],
            url,
        )
        .await;
        let png = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} is not a rendered page ({} bytes)",
            file.display(),
            png.len()
        );
    }
}

/// `target/test-artifacts/`, created.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap_or(dir)
}

/// Text of the element with `id` (first one), with the tags of its children stripped.
fn text_of(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let mut rest = &dom[start + dom[start..].find('>')? + 1..];
    let (mut text, mut depth) = (String::new(), 0usize);
    while let Some(lt) = rest.find('<') {
        text.push_str(&rest[..lt]);
        let gt = lt + rest[lt..].find('>')?;
        let tag = &rest[lt..=gt];
        if tag.starts_with("</") {
            if depth == 0 {
                return Some(text.trim().to_string());
            }
            depth -= 1;
        } else if !tag.ends_with("/>") {
            depth += 1;
        }
        rest = &rest[gt + 1..];
    }
    None
}

/// Value of attribute `attr` on the element with `id`.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

/// The `href`s of `<a class="block-link" ...>` elements, in document order.
fn block_links(dom: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("class=\"block-link\"") {
        let tag_start = rest[..i].rfind('<').unwrap_or(0);
        let tag_end = i + rest[i..].find('>').unwrap_or(0);
        let tag = &rest[tag_start..tag_end];
        if let Some(h) = tag.find("href=\"") {
            let v = &tag[h + 6..];
            out.push(v[..v.find('"').unwrap_or(v.len())].to_string());
        }
        rest = &rest[tag_end.max(i + 1)..];
    }
    out
}

/// A number as the page formats it ("12,345").
fn number(s: &str) -> Option<u64> {
    s.replace(',', "").trim().parse().ok()
}

/// A light background load: `accounts` demo accounts each send a transfer every `period`,
/// round-robin over the validators, until `stop`.
fn start_load(
    net: &Net,
    accounts: usize,
    period: Duration,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let chain = net.chain_id();
    let clients = net.clients.clone();
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let keys: Vec<_> = (0..accounts).map(|a| demo_account(&chain, a)).collect();
        let mut nonce = 0;
        let mut sent = 0;
        while !flag.load(Ordering::Relaxed) {
            let txs: Vec<_> = (0..accounts)
                .map(|a| {
                    transfer(
                        &chain,
                        &keys[a],
                        nonce,
                        keys[(a + 1) % accounts].public(),
                        1,
                    )
                })
                .collect();
            let client = &clients[nonce as usize % clients.len()];
            if let Ok(r) = client.submit_batch(&txs).await {
                sent += r.accepted as u64;
            }
            nonce += 1;
            tokio::time::sleep(period).await;
        }
        sent
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_shows_a_live_chain_and_opens_a_block() {
    let Some(binary) = find_chromium() else {
        println!(
            "SKIPPED explorer_shows_a_live_chain_and_opens_a_block: no chromium (looked at $CHROMIUM, \
             PATH and /usr/bin/chromium); install the chromium package (apt-get install chromium) to run it"
        );
        return;
    };
    let browser = Browser { binary };
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 8).await;
    let (stop, load) = start_load(&net, 8, Duration::from_millis(200));
    net.wait_height(0, 3, LONG).await;
    let base = format!("http://{}", net.layout.api_address(0));

    // The overview after several seconds of (virtual) page time: height, chart, block list.
    let first = browser.dom(&format!("{base}/"), 6_000).await;
    let h1 = text_of(&first, "height")
        .and_then(|t| number(&t))
        .unwrap_or_else(|| panic!("no height on the overview:\n{first}"));
    let samples: u64 = attr_of(&first, "tps-chart", "data-samples")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no chart on the overview:\n{first}"));
    assert!(samples > 0, "the chart has no samples");
    assert_eq!(
        text_of(&first, "chain-id").as_deref(),
        Some("test-chain"),
        "chain id"
    );
    let links = block_links(&first);
    assert!(
        !links.is_empty(),
        "no block links on the overview:\n{first}"
    );
    assert!(
        first.contains("class=\"val validator\""),
        "no validators listed"
    );

    // Loaded again a moment later, the height has risen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = browser.dom(&format!("{base}/"), 3_000).await;
    let h2 = text_of(&second, "height").and_then(|t| number(&t)).unwrap();
    assert!(
        h2 > h1,
        "height did not rise between loads ({h1} then {h2})"
    );

    // The first row's link opens that block's page.
    let link = &links[0];
    let height: u64 = link
        .strip_prefix("#/block/")
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("unexpected block link {link}"));
    let block = net.clients[0].block(height).await.unwrap().unwrap();
    let page = browser.dom(&format!("{base}/{link}"), 3_000).await;
    assert_eq!(
        attr_of(&page, "block-page", "data-height").as_deref(),
        Some(height.to_string().as_str()),
        "block page of {link}:\n{page}"
    );
    assert_eq!(
        text_of(&page, "block-id").as_deref(),
        Some(block.id.to_string().as_str())
    );
    assert!(page.contains(&block.id.to_string()));

    // Screenshots as test artifacts.
    let dir = artifacts_dir();
    let overview_png = dir.join("explorer-overview.png");
    let block_png = dir.join("explorer-block.png");
    browser
        .screenshot(&format!("{base}/"), 8_000, &overview_png)
        .await;
    browser
        .screenshot(&format!("{base}/{link}"), 3_000, &block_png)
        .await;
    println!("explorer screenshots:");
    println!("  {}", overview_png.display());
    println!("  {}", block_png.display());

    // A local currency: the list and its page with the books.
    let (issuer, bank) = (
        Keypair::from_secret([41; 32]),
        Keypair::from_secret([42; 32]),
    );
    let chain = net.chain_id();
    let rules = CurrencyRules {
        regions: vec!["north".into()],
        categories: vec!["cafe".into()],
        wallet_balance_max: 1_000_000,
        monthly_charge_max: 1_000_000,
        bonus_bps: 1_000,
        require_verified: false,
    };
    let define = Payload::Currency(CurrencyOp::Define {
        currency: "TOWN".into(),
        bank: bank.public(),
        expiry_secs: 3_600,
        rules,
    });
    let charge = Payload::Currency(CurrencyOp::Charge {
        currency: "TOWN".into(),
        deposits: vec![Deposit {
            wallet: issuer.public(),
            amount: 10_000,
            reference: Digest([5; 32]),
        }],
    });
    for (kp, payload) in [(&issuer, define), (&bank, charge)] {
        let tx = sign_transaction(
            kp,
            Transaction {
                chain_id: chain.clone(),
                sender: kp.public(),
                nonce: 0,
                payload,
            },
        );
        let id = net.clients[0].submit(&tx).await.unwrap().tx_id;
        let start = Instant::now();
        loop {
            let s = net.clients[0].tx_status(&id).await.unwrap();
            if s.as_ref().is_some_and(|s| s.status != "pending") {
                assert_eq!(s.unwrap().status, "committed");
                break;
            }
            assert!(start.elapsed() < LONG, "currency transaction not committed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let list = browser.dom(&format!("{base}/#/currencies"), 3_000).await;
    assert!(
        list.contains("id=\"currency-table\""),
        "no currency table:\n{list}"
    );
    assert!(list.contains("#/currency/TOWN"), "TOWN not listed:\n{list}");
    let page = browser.dom(&format!("{base}/#/currency/TOWN"), 3_000).await;
    assert_eq!(
        attr_of(&page, "currency-page", "data-currency").as_deref(),
        Some("TOWN"),
        "currency page:\n{page}"
    );
    assert_eq!(
        text_of(&page, "books-minted").and_then(|t| number(&t)),
        Some(11_000),
        "10,000 deposited + 10 % bonus"
    );
    assert!(
        page.contains("data-balanced=\"true\""),
        "books not shown balanced"
    );
    let currency_png = dir.join("explorer-currency.png");
    browser
        .screenshot(&format!("{base}/#/currency/TOWN"), 3_000, &currency_png)
        .await;
    println!("  {}", currency_png.display());

    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 0, "the background load sent nothing");
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

/// The value of the unlabelled sample `name`.
fn value(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    use prometheus_parse::Value;
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no sample {name} in /metrics"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a number: {other:?}"),
    }
}

async fn metrics(net: &Net, i: usize) -> (String, String) {
    let resp = reqwest::get(format!("http://{}/metrics", net.layout.api_address(i)))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (ctype, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_under_load() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 8).await;
    net.wait_height(0, 2, LONG).await;
    let (ctype, text) = metrics(&net, 0).await;
    assert!(
        ctype.starts_with("application/openmetrics-text") || ctype.starts_with("text/plain"),
        "content type {ctype}"
    );
    let before = scrape(&text);
    for name in [
        "netchain_height",
        "netchain_round",
        "netchain_finalized_transactions_total",
        "netchain_blocks_committed_total",
        "netchain_mempool_transactions",
        "netchain_peers_connected",
        "netchain_storage_bytes",
        "netchain_event_subscribers",
    ] {
        value(&before, name);
    }
    assert!(
        before
            .samples
            .iter()
            .any(|s| s.metric == "netchain_commit_latency_seconds"
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "no commit latency histogram"
    );
    for s in &before.samples {
        assert!(s.metric.starts_with("netchain_"), "unprefixed {}", s.metric);
    }

    // 8 accounts x 10 transfers.
    let chain = net.chain_id();
    let keys: Vec<_> = (0..8).map(|a| demo_account(&chain, a)).collect();
    let mut sent = 0u64;
    for nonce in 0..10 {
        let txs: Vec<_> = (0..8)
            .map(|a| transfer(&chain, &keys[a], nonce, keys[(a + 1) % 8].public(), 2))
            .collect();
        let r = net.clients[(nonce % 4) as usize]
            .submit_batch(&txs)
            .await
            .unwrap();
        assert_eq!(
            r.rejected,
            0,
            "{:?}",
            r.results.iter().find(|r| !r.accepted)
        );
        sent += txs.len() as u64;
    }
    let base_total = value(&before, "netchain_finalized_transactions_total");
    let base_height = value(&before, "netchain_height");
    let start = Instant::now();
    let after = loop {
        let (_, text) = metrics(&net, 0).await;
        let now = scrape(&text);
        if value(&now, "netchain_finalized_transactions_total") >= base_total + sent as f64 {
            break now;
        }
        assert!(
            start.elapsed() < LONG,
            "finalized transactions did not reach {} in {LONG:?}:\n{text}",
            base_total + sent as f64
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        value(&after, "netchain_height") > base_height,
        "height did not move"
    );
    assert!(
        value(&after, "netchain_blocks_committed_total")
            > value(&before, "netchain_blocks_committed_total")
    );
    // The node's status agrees with its metrics.
    let status = net.clients[0].status().await.unwrap();
    assert!(
        status.committed_txs_total as f64 >= value(&after, "netchain_finalized_transactions_total")
    );
    // Execution keeps up once the load is done: every validator's backlog drains (a leader
    // with one waits before proposing, so one that never drained would slow the chain).
    for i in 0..4 {
        let start = Instant::now();
        loop {
            let (_, text) = metrics(&net, i).await;
            let backlog = value(&scrape(&text), "netchain_execution_backlog_blocks");
            if backlog < 2.0 {
                break;
            }
            assert!(
                start.elapsed() < LONG,
                "validator {i}: execution backlog {backlog} blocks"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
