//! The local currency from the command line on a real network: every `netchain currency` and
//! `netchain voucher` flow as a user would run it, and the city demo with its books reconciled.

mod common;

use common::{free_base_port, Net, SERIAL};
use netchain_crypto::{KeyFile, Keypair};
use std::path::{Path, PathBuf};
use std::process::Command;

fn netchain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netchain"))
}

struct Cli {
    node: String,
    dir: PathBuf,
}

impl Cli {
    fn key(&self, name: &str) -> (String, Keypair) {
        let kp = Keypair::from_secret(*blake3::hash(name.as_bytes()).as_bytes());
        let path = self.dir.join(format!("{name}.json"));
        if !path.exists() {
            KeyFile::from_keypair(&kp).save(&path).unwrap();
        }
        (path.display().to_string(), kp)
    }

    /// Runs `netchain args... --node N` (when `node`); returns (success, stdout, stderr).
    fn run(&self, args: &[&str], node: bool) -> (bool, String, String) {
        let mut cmd = Command::new(netchain());
        cmd.args(args);
        if node {
            cmd.args(["--node", &self.node]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, true);
        assert!(ok, "netchain {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Runs a command that must be refused with `code`.
    fn refused(&self, args: &[&str], code: &str) {
        let (ok, out, err) = self.run(args, true);
        assert!(!ok, "netchain {args:?} should fail with {code}:\n{out}");
        assert!(
            err.contains(code) || out.contains(code),
            "netchain {args:?}: expected {code}:\n{out}\n{err}"
        );
    }

    fn offline(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, false);
        assert!(ok, "netchain {args:?} failed:\n{out}\n{err}");
        out
    }
}

fn json(out: &str) -> serde_json::Value {
    let start = out.find(['{', '[']).expect("json output");
    let end = out.rfind('}').max(out.rfind(']')).unwrap();
    serde_json::from_str(&out[start..=end]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn field(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_works_from_the_command_line() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        node: net.layout.api_address(0).to_string(),
        dir: dir.path().to_path_buf(),
    };
    let chain = net.chain_id();
    let (issuer, _) = cli.key("issuer");
    let (bank, bank_kp) = cli.key("bank");
    let (shop, shop_kp) = cli.key("shop");
    let (resident, resident_kp) = cli.key("resident");
    let (bank_pk, shop_pk, resident_pk) = (
        bank_kp.public().to_string(),
        shop_kp.public().to_string(),
        resident_kp.public().to_string(),
    );
    cli.ok(&[
        "currency",
        "define",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--bank",
        &bank_pk,
        "--regions",
        "north,south",
        "--categories",
        "cafe,grocery",
        "--bonus-bps",
        "1000",
        "--monthly-max",
        "100000",
        "--expiry",
        "1h",
    ]);
    cli.ok(&[
        "currency",
        "add-merchant",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--merchant",
        &shop_pk,
        "--region",
        "north",
        "--category",
        "cafe",
        "--settlement-account",
        "kb-1234",
    ]);
    cli.refused(
        &[
            "currency",
            "add-merchant",
            "--key",
            &bank,
            "--currency",
            "TOWN",
            "--merchant",
            &shop_pk,
            "--region",
            "north",
            "--category",
            "cafe",
            "--settlement-account",
            "x",
        ],
        "not_issuer",
    );
    let charge = [
        "currency",
        "charge",
        "--key",
        &bank,
        "--currency",
        "TOWN",
        "--wallet",
        &resident_pk,
        "--amount",
        "50000",
        "--reference",
        "deposit-0001",
    ];
    cli.ok(&charge);
    cli.refused(&charge, "deposit_reused");
    cli.refused(
        &[
            "currency",
            "charge",
            "--key",
            &bank,
            "--currency",
            "TOWN",
            "--wallet",
            &resident_pk,
            "--amount",
            "50001",
            "--reference",
            "deposit-0002",
        ],
        "monthly_charge_limit",
    );
    // Merchant-presented QR, paid by the resident, once.
    let qr = cli.offline(&[
        "currency",
        "request",
        "--key",
        &shop,
        "--chain",
        &chain,
        "--currency",
        "TOWN",
        "--amount",
        "12000",
    ]);
    let qr = qr.trim();
    assert!(qr.starts_with("netchain:pay/1?"), "{qr}");
    let decoded = cli.offline(&["currency", "decode", qr]);
    assert!(decoded.contains("signature verifies"), "{decoded}");
    let paid = cli.ok(&["currency", "pay", "--key", &resident, "--qr", qr]);
    let payment = field(&paid, "payment id");
    cli.refused(
        &["currency", "pay", "--key", &resident, "--qr", qr],
        "payment_already_made",
    );
    let tampered = qr.replace("amount=12000", "amount=1");
    cli.refused(
        &["currency", "pay", "--key", &resident, "--qr", &tampered],
        "bad_request_signature",
    );
    // Resident-presented QR, collected by the merchant.
    let auth = cli.offline(&[
        "currency",
        "authorize",
        "--key",
        &resident,
        "--chain",
        &chain,
        "--currency",
        "TOWN",
        "--max",
        "5000",
        "--merchant",
        &shop_pk,
    ]);
    let auth = auth.trim();
    cli.refused(
        &[
            "currency", "collect", "--key", &shop, "--qr", auth, "--amount", "5001",
        ],
        "amount_exceeds_authorization",
    );
    cli.ok(&[
        "currency", "collect", "--key", &shop, "--qr", auth, "--amount", "4000",
    ]);
    let wallet = json(&cli.ok(&["currency", "wallet", "TOWN", &resident_pk]));
    assert_eq!(wallet["spendable"], 55_000 - 12_000 - 4_000);
    // Refund, redemption and settlement.
    cli.refused(
        &[
            "currency",
            "refund",
            "--key",
            &shop,
            "--payment",
            &payment,
            "--amount",
            "12001",
        ],
        "refund_exceeds_payment",
    );
    cli.ok(&[
        "currency",
        "refund",
        "--key",
        &shop,
        "--payment",
        &payment,
        "--amount",
        "2000",
    ]);
    let p = json(&cli.ok(&["currency", "payment", &payment]));
    assert_eq!(p["refunded"], 2_000);
    cli.ok(&[
        "currency",
        "redeem",
        "--key",
        &shop,
        "--currency",
        "TOWN",
        "--amount",
        "10000",
    ]);
    let s = json(&cli.ok(&["currency", "settlements", "TOWN", "--unpaid"]));
    assert_eq!(
        (&s[0]["amount"], &s[0]["settlement_account"]),
        (&serde_json::json!(10_000), &serde_json::json!("kb-1234"))
    );
    cli.ok(&[
        "currency",
        "confirm-settlement",
        "--key",
        &bank,
        "--currency",
        "TOWN",
        "--settlement",
        "0",
    ]);
    cli.refused(
        &[
            "currency",
            "confirm-settlement",
            "--key",
            &bank,
            "--currency",
            "TOWN",
            "--settlement",
            "0",
        ],
        "settlement_already_paid",
    );
    // Suspension closes the shop to payments.
    cli.ok(&[
        "currency",
        "set-merchant",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--merchant",
        &shop_pk,
        "--status",
        "suspended",
    ]);
    let qr2 = cli.offline(&[
        "currency",
        "request",
        "--key",
        &shop,
        "--chain",
        &chain,
        "--currency",
        "TOWN",
        "--amount",
        "100",
    ]);
    cli.refused(
        &["currency", "pay", "--key", &resident, "--qr", qr2.trim()],
        "merchant_suspended",
    );
    cli.ok(&[
        "currency",
        "set-merchant",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--merchant",
        &shop_pk,
        "--status",
        "active",
    ]);
    // Rules: a category the city drops is refused by name.
    cli.ok(&[
        "currency",
        "set-rules",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--regions",
        "north",
        "--categories",
        "grocery",
        "--monthly-max",
        "100000",
    ]);
    // (A fresh request: the same signed transaction again would only show its first receipt.)
    let qr3 = cli.offline(&[
        "currency",
        "request",
        "--key",
        &shop,
        "--chain",
        &chain,
        "--currency",
        "TOWN",
        "--amount",
        "100",
    ]);
    cli.refused(
        &["currency", "pay", "--key", &resident, "--qr", qr3.trim()],
        "category_not_allowed",
    );
    // Vouchers: issue, transfer, partial redemption, exactly once.
    let issued = cli.ok(&[
        "voucher",
        "issue",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--to",
        &resident_pk,
        "--face-value",
        "30000",
        "--valid",
        "1d",
    ]);
    let voucher = field(&issued, "voucher");
    cli.ok(&[
        "currency",
        "set-rules",
        "--key",
        &issuer,
        "--currency",
        "TOWN",
        "--regions",
        "north",
        "--categories",
        "cafe",
        "--monthly-max",
        "100000",
    ]);
    cli.ok(&[
        "voucher",
        "redeem",
        "--key",
        &resident,
        "--voucher",
        &voucher,
        "--merchant",
        &shop_pk,
        "--amount",
        "20000",
    ]);
    let v = json(&cli.ok(&["voucher", "show", &voucher]));
    assert_eq!(v["remaining"], 10_000);
    cli.ok(&[
        "voucher",
        "transfer",
        "--key",
        &resident,
        "--voucher",
        &voucher,
        "--to",
        &bank_pk,
    ]);
    cli.refused(
        &[
            "voucher",
            "redeem",
            "--key",
            &resident,
            "--voucher",
            &voucher,
            "--merchant",
            &shop_pk,
            "--amount",
            "1",
        ],
        "not_holder",
    );
    cli.ok(&[
        "voucher",
        "redeem",
        "--key",
        &bank,
        "--voucher",
        &voucher,
        "--merchant",
        &shop_pk,
        "--amount",
        "10000",
    ]);
    cli.refused(
        &[
            "voucher",
            "redeem",
            "--key",
            &bank,
            "--voucher",
            &voucher,
            "--merchant",
            &shop_pk,
            "--amount",
            "1",
        ],
        "voucher_spent",
    );
    // The books: 55,000 charged + 30,000 in vouchers; 10,000 redeemed.
    let rec = json(&cli.ok(&["currency", "reconcile", "TOWN"]));
    assert_eq!(
        (
            &rec["minted"],
            &rec["redeemed"],
            &rec["circulating"],
            &rec["balanced"]
        ),
        (
            &serde_json::json!(85_000),
            &serde_json::json!(10_000),
            &serde_json::json!(75_000),
            &serde_json::json!(true)
        )
    );
    let shown = json(&cli.ok(&["currency", "show", "TOWN"]));
    assert_eq!(shown["totals"]["payments"], 2);
    let m = json(&cli.ok(&["currency", "merchant", "TOWN", &shop_pk]));
    assert_eq!(m["balance"], 12_000 + 4_000 - 2_000 - 10_000 + 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_city_demo_runs_30s_with_books_that_reconcile() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(4);
    let data = dir.path().join("demo");
    let out = tokio::process::Command::new(netchain())
        .args([
            "demo",
            "local-currency",
            "--for",
            "30s",
            "--rate",
            "300",
            "--dir",
        ])
        .arg(&data)
        .args(["--p2p-port", &base.to_string()])
        .args(["--api-port", &(base + 4).to_string()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("100000 residents and 5000 merchants"),
        "{stdout}"
    );
    assert!(stdout.contains("reconciliation errors: 0"), "{stdout}");
    let payments: u64 = field(&stdout, "  payments committed:")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(payments > 1_000, "{stdout}");
    assert!(
        stdout.contains("= circulating"),
        "audit line missing: {stdout}"
    );
    assert!(Path::new(&data).join("genesis.json").exists());
}
