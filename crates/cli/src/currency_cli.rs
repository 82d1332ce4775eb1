//! `netchain currency ...` and `netchain voucher ...`: every flow of the local-currency and
//! gift-voucher modules from the command line.

use crate::parse_duration;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use netchain_client::Client;
use netchain_crypto::{sign_transaction, KeyFile, Keypair};
use netchain_types::currency::{
    CurrencyOp, CurrencyRules, Deposit, MerchantInfo, PaymentAuthorization, PaymentQr,
    PaymentRequest, VoucherOp,
};
use netchain_types::{hash_parts, Digest, Payload, PublicKey, Reference, Transaction};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where to send and who signs.
#[derive(Args, Clone)]
pub struct Signer {
    /// Node API address.
    #[arg(long, default_value = "127.0.0.1:8100")]
    pub node: String,
    /// Key file of the signing account.
    #[arg(long)]
    pub key: PathBuf,
    /// Nonce (default: the account's next nonce).
    #[arg(long)]
    pub nonce: Option<u64>,
    /// Return after submission instead of waiting for the commit.
    #[arg(long)]
    pub no_wait: bool,
}

/// The rules of a currency as flags.
#[derive(Args, Clone)]
pub struct RulesArgs {
    /// Allowed merchant regions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub regions: Vec<String>,
    /// Allowed merchant categories, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub categories: Vec<String>,
    /// Highest balance of one wallet.
    #[arg(long, default_value_t = 2_000_000)]
    pub wallet_max: u64,
    /// Most principal one wallet may charge per calendar month.
    #[arg(long, default_value_t = 500_000)]
    pub monthly_max: u64,
    /// Bonus on charging, in basis points (1000 = 10 %).
    #[arg(long, default_value_t = 1_000)]
    pub bonus_bps: u32,
    /// Wallets must be verified by the bank before charging or paying.
    #[arg(long)]
    pub require_verified: bool,
}

impl RulesArgs {
    fn rules(&self) -> CurrencyRules {
        CurrencyRules {
            regions: self.regions.clone(),
            categories: self.categories.clone(),
            wallet_balance_max: self.wallet_max,
            monthly_charge_max: self.monthly_max,
            bonus_bps: self.bonus_bps,
            require_verified: self.require_verified,
        }
    }
}

/// `netchain currency ...`
#[derive(Subcommand)]
pub enum CurrencyCommand {
    /// Defines a currency; the signer becomes its issuer.
    Define {
        #[command(flatten)]
        signer: Signer,
        /// Currency id (A-Z 0-9 _ -).
        #[arg(long)]
        currency: String,
        /// The bank's public key.
        #[arg(long)]
        bank: PublicKey,
        /// Validity of each charged amount (e.g. 365d, 90d, 1h).
        #[arg(long, value_parser = parse_duration, default_value = "365d")]
        expiry: Duration,
        #[command(flatten)]
        rules: RulesArgs,
    },
    /// Replaces a currency's rules (issuer).
    SetRules {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        #[command(flatten)]
        rules: RulesArgs,
    },
    /// Registers or updates a merchant (issuer).
    AddMerchant {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Merchant public key.
        #[arg(long)]
        merchant: PublicKey,
        /// Region of the shop.
        #[arg(long)]
        region: String,
        /// Business category.
        #[arg(long)]
        category: String,
        /// Bank account for settlements.
        #[arg(long)]
        settlement_account: String,
    },
    /// Suspends or reinstates a merchant (issuer).
    SetMerchant {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Merchant public key.
        #[arg(long)]
        merchant: PublicKey,
        /// `active` or `suspended`.
        #[arg(long, value_parser = ["active", "suspended"])]
        status: String,
    },
    /// Marks residents as verified (or not, with --unverify) (bank).
    Verify {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Resident public keys, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        residents: Vec<PublicKey>,
        /// Clear the flag instead.
        #[arg(long)]
        unverify: bool,
    },
    /// Confirms a deposit and mints it with the bonus (bank).
    Charge {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Resident wallet.
        #[arg(long)]
        wallet: PublicKey,
        /// Deposited amount.
        #[arg(long)]
        amount: u64,
        /// The bank's deposit reference (any text; each is minted once).
        #[arg(long)]
        reference: String,
    },
    /// Prints a signed payment request for a customer to pay (merchant; offline).
    Request {
        /// Merchant key file.
        #[arg(long)]
        key: PathBuf,
        /// Chain id.
        #[arg(long)]
        chain: String,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Amount.
        #[arg(long)]
        amount: u64,
        /// How long it can be paid.
        #[arg(long, value_parser = parse_duration, default_value = "5m")]
        valid: Duration,
    },
    /// Prints a signed payment authorization for a merchant to collect (resident; offline).
    Authorize {
        /// Resident key file.
        #[arg(long)]
        key: PathBuf,
        /// Chain id.
        #[arg(long)]
        chain: String,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Most the merchant may collect.
        #[arg(long)]
        max: u64,
        /// Only this merchant may collect it (recommended when known: otherwise anyone who sees
        /// the code first can collect it).
        #[arg(long)]
        merchant: Option<PublicKey>,
        /// How long it can be used.
        #[arg(long, value_parser = parse_duration, default_value = "2m")]
        valid: Duration,
    },
    /// Pays a merchant's payment request (resident).
    Pay {
        #[command(flatten)]
        signer: Signer,
        /// The request's QR text (`netchain:pay/1?...`).
        #[arg(long)]
        qr: String,
    },
    /// Collects a payment with a resident's authorization (merchant).
    Collect {
        #[command(flatten)]
        signer: Signer,
        /// The authorization's QR text (`netchain:authorize/1?...`).
        #[arg(long)]
        qr: String,
        /// Amount to collect.
        #[arg(long)]
        amount: u64,
    },
    /// Refunds (part of) a payment to its payer (merchant).
    Refund {
        #[command(flatten)]
        signer: Signer,
        /// Payment id.
        #[arg(long)]
        payment: Digest,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Redeems merchant tokens for a bank settlement (merchant).
    Redeem {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Confirms a settlement as paid out (bank).
    ConfirmSettlement {
        #[command(flatten)]
        signer: Signer,
        /// Currency.
        #[arg(long)]
        currency: String,
        /// Settlement sequence number.
        #[arg(long)]
        settlement: u64,
    },
    /// Shows a currency (or all, without an id).
    Show {
        /// Currency.
        currency: Option<String>,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Shows a wallet.
    Wallet {
        /// Currency.
        currency: String,
        /// Wallet key.
        wallet: PublicKey,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Shows a merchant.
    Merchant {
        /// Currency.
        currency: String,
        /// Merchant key.
        merchant: PublicKey,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Shows a payment.
    Payment {
        /// Payment id.
        id: Digest,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Lists settlement records, newest first.
    Settlements {
        /// Currency.
        currency: String,
        /// Only unpaid ones.
        #[arg(long)]
        unpaid: bool,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Reports minted = circulating + redeemed + expired at a height (default: latest).
    Reconcile {
        /// Currency.
        currency: String,
        /// Height.
        #[arg(long)]
        height: Option<u64>,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
    /// Decodes a payment QR text and checks its signature.
    Decode {
        /// The QR text.
        qr: String,
    },
}

/// `netchain voucher ...`
#[derive(Subcommand)]
pub enum VoucherCommand {
    /// Issues vouchers (the currency's issuer).
    Issue {
        #[command(flatten)]
        signer: Signer,
        /// Currency whose merchants accept them.
        #[arg(long)]
        currency: String,
        /// First holder.
        #[arg(long)]
        to: PublicKey,
        /// Value of each voucher.
        #[arg(long)]
        face_value: u64,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How long they can be redeemed.
        #[arg(long, value_parser = parse_duration, default_value = "365d")]
        valid: Duration,
    },
    /// Gives a voucher to another holder (holder).
    Transfer {
        #[command(flatten)]
        signer: Signer,
        /// Voucher id.
        #[arg(long)]
        voucher: Digest,
        /// New holder.
        #[arg(long)]
        to: PublicKey,
    },
    /// Redeems (part of) a voucher at a merchant (holder).
    Redeem {
        #[command(flatten)]
        signer: Signer,
        /// Voucher id.
        #[arg(long)]
        voucher: Digest,
        /// Merchant.
        #[arg(long)]
        merchant: PublicKey,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Returns an expired voucher's value to the issuer (issuer).
    Reclaim {
        #[command(flatten)]
        signer: Signer,
        /// Voucher id.
        #[arg(long)]
        voucher: Digest,
    },
    /// Shows a voucher.
    Show {
        /// Voucher id.
        id: Digest,
        /// Node API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        node: String,
    },
}

/// Prints a value as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn random_reference() -> Reference {
    let mut r = [0u8; 16];
    getrandom::getrandom(&mut r).expect("OS randomness");
    Reference(r)
}

/// Signs `payload` with the key file, submits it and (unless `no_wait`) waits for the outcome.
/// Returns the transaction id; a rejection is an error carrying the rule's code.
pub async fn send(signer: &Signer, payload: Payload) -> anyhow::Result<Digest> {
    let kp: Keypair = KeyFile::load(&signer.key)?;
    let client = Client::new(&signer.node);
    let status = client.status().await.context("reading node status")?;
    let nonce = match signer.nonce {
        Some(n) => n,
        None => client.account(&kp.public(), false).await?.nonce,
    };
    let tx = sign_transaction(
        &kp,
        Transaction {
            chain_id: status.chain_id,
            sender: kp.public(),
            nonce,
            payload,
        },
    );
    let resp = client.submit(&tx).await?;
    println!("submitted {} (nonce {nonce})", resp.tx_id);
    if signer.no_wait {
        return Ok(resp.tx_id);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(s) = client.tx_status(&resp.tx_id).await? {
            if s.status != "pending" {
                print_json(&s)?;
                if s.status == "rejected" {
                    bail!(
                        "transaction rejected: {}",
                        s.code.as_deref().unwrap_or("unknown")
                    );
                }
                return Ok(resp.tx_id);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("not committed within 60 s")
}

/// Runs a `currency` subcommand.
pub async fn run_currency(cmd: CurrencyCommand) -> anyhow::Result<()> {
    use CurrencyCommand as C;
    let cur = |op| Payload::Currency(op);
    match cmd {
        C::Define {
            signer,
            currency,
            bank,
            expiry,
            rules,
        } => {
            send(
                &signer,
                cur(CurrencyOp::Define {
                    currency,
                    bank,
                    expiry_secs: expiry.as_secs(),
                    rules: rules.rules(),
                }),
            )
            .await?;
        }
        C::SetRules {
            signer,
            currency,
            rules,
        } => {
            send(
                &signer,
                cur(CurrencyOp::SetRules {
                    currency,
                    rules: rules.rules(),
                }),
            )
            .await?;
        }
        C::AddMerchant {
            signer,
            currency,
            merchant,
            region,
            category,
            settlement_account,
        } => {
            let info = MerchantInfo {
                merchant,
                region,
                category,
                settlement_account,
            };
            send(
                &signer,
                cur(CurrencyOp::RegisterMerchants {
                    currency,
                    merchants: vec![info],
                }),
            )
            .await?;
        }
        C::SetMerchant {
            signer,
            currency,
            merchant,
            status,
        } => {
            let op = CurrencyOp::SetMerchantActive {
                currency,
                merchant,
                active: status == "active",
            };
            send(&signer, cur(op)).await?;
        }
        C::Verify {
            signer,
            currency,
            residents,
            unverify,
        } => {
            let op = CurrencyOp::VerifyResidents {
                currency,
                residents,
                verified: !unverify,
            };
            send(&signer, cur(op)).await?;
        }
        C::Charge {
            signer,
            currency,
            wallet,
            amount,
            reference,
        } => {
            let deposit = Deposit {
                wallet,
                amount,
                reference: deposit_reference(&reference),
            };
            send(
                &signer,
                cur(CurrencyOp::Charge {
                    currency,
                    deposits: vec![deposit],
                }),
            )
            .await?;
        }
        C::Request {
            key,
            chain,
            currency,
            amount,
            valid,
        } => {
            let kp: Keypair = KeyFile::load(&key)?;
            let request = PaymentRequest {
                chain_id: chain,
                currency,
                merchant: kp.public(),
                amount,
                reference: random_reference(),
                expires_at_ms: netchain_node::now_ms() + valid.as_millis() as u64,
            };
            let sig = kp.sign(&request.id());
            println!("{}", PaymentQr::Request(request, sig));
        }
        C::Authorize {
            key,
            chain,
            currency,
            max,
            merchant,
            valid,
        } => {
            let kp: Keypair = KeyFile::load(&key)?;
            let auth = PaymentAuthorization {
                chain_id: chain,
                currency,
                payer: kp.public(),
                merchant,
                amount_max: max,
                reference: random_reference(),
                expires_at_ms: netchain_node::now_ms() + valid.as_millis() as u64,
            };
            let sig = kp.sign(&auth.id());
            println!("{}", PaymentQr::Authorization(auth, sig));
        }
        C::Pay { signer, qr } => match qr.parse::<PaymentQr>()? {
            PaymentQr::Request(request, merchant_signature) => {
                println!("payment id {}", request.id());
                let op = CurrencyOp::Pay {
                    request,
                    merchant_signature,
                };
                send(&signer, cur(op)).await?;
            }
            PaymentQr::Authorization(..) => {
                bail!("this is a resident's authorization: a merchant collects it with `collect`")
            }
        },
        C::Collect { signer, qr, amount } => match qr.parse::<PaymentQr>()? {
            PaymentQr::Authorization(authorization, payer_signature) => {
                println!("payment id {}", authorization.id());
                let op = CurrencyOp::Collect {
                    authorization,
                    payer_signature,
                    amount,
                };
                send(&signer, cur(op)).await?;
            }
            PaymentQr::Request(..) => {
                bail!("this is a merchant's request: a resident pays it with `pay`")
            }
        },
        C::Refund {
            signer,
            payment,
            amount,
        } => {
            send(&signer, cur(CurrencyOp::Refund { payment, amount })).await?;
        }
        C::Redeem {
            signer,
            currency,
            amount,
        } => {
            send(&signer, cur(CurrencyOp::Redeem { currency, amount })).await?;
        }
        C::ConfirmSettlement {
            signer,
            currency,
            settlement,
        } => {
            let op = CurrencyOp::ConfirmSettlement {
                currency,
                settlement,
            };
            send(&signer, cur(op)).await?;
        }
        C::Show { currency, node } => {
            let path = match currency {
                Some(id) => format!("/v1/currencies/{id}"),
                None => "/v1/currencies".into(),
            };
            print_json(&Client::new(&node).get_json(&path).await?)?;
        }
        C::Wallet {
            currency,
            wallet,
            node,
        } => print_json(
            &Client::new(&node)
                .get_json(&format!("/v1/currencies/{currency}/wallets/{wallet}"))
                .await?,
        )?,
        C::Merchant {
            currency,
            merchant,
            node,
        } => print_json(
            &Client::new(&node)
                .get_json(&format!("/v1/currencies/{currency}/merchants/{merchant}"))
                .await?,
        )?,
        C::Payment { id, node } => print_json(
            &Client::new(&node)
                .get_json(&format!("/v1/payments/{id}"))
                .await?,
        )?,
        C::Settlements {
            currency,
            unpaid,
            node,
        } => {
            let filter = if unpaid { "?paid=false" } else { "" };
            print_json(
                &Client::new(&node)
                    .get_json(&format!("/v1/currencies/{currency}/settlements{filter}"))
                    .await?,
            )?
        }
        C::Reconcile {
            currency,
            height,
            node,
        } => {
            let q = height.map_or(String::new(), |h| format!("?height={h}"));
            let r = Client::new(&node)
                .get_json(&format!("/v1/currencies/{currency}/reconciliation{q}"))
                .await?;
            print_json(&r)?;
            if r["balanced"] != serde_json::Value::Bool(true) {
                bail!("the books do NOT reconcile");
            }
        }
        C::Decode { qr } => {
            let parsed: PaymentQr = qr.parse()?;
            let (json, signed) = match &parsed {
                PaymentQr::Request(r, sig) => (
                    serde_json::json!({ "kind": "merchant_request", "payment_id": r.id(), "request": r }),
                    netchain_crypto::verify(&r.merchant, &r.id(), sig).is_ok(),
                ),
                PaymentQr::Authorization(a, sig) => (
                    serde_json::json!({ "kind": "resident_authorization", "payment_id": a.id(), "authorization": a }),
                    netchain_crypto::verify(&a.payer, &a.id(), sig).is_ok(),
                ),
            };
            print_json(&json)?;
            if !signed {
                bail!("the signature does NOT verify");
            }
            println!("signature verifies");
        }
    }
    Ok(())
}

/// The on-chain reference of a bank deposit reference text.
pub fn deposit_reference(text: &str) -> Digest {
    hash_parts("netchain/currency/deposit-reference/v1", &[text.as_bytes()])
}

/// Runs a `voucher` subcommand.
pub async fn run_voucher(cmd: VoucherCommand) -> anyhow::Result<()> {
    use VoucherCommand as V;
    let v = |op| Payload::Voucher(op);
    match cmd {
        V::Issue {
            signer,
            currency,
            to,
            face_value,
            count,
            valid,
        } => {
            let tx = send(
                &signer,
                v(VoucherOp::Issue {
                    currency,
                    to,
                    face_value,
                    count,
                    expires_at_ms: netchain_node::now_ms() + valid.as_millis() as u64,
                }),
            )
            .await?;
            for i in 0..count {
                println!("voucher {}", netchain_types::currency::voucher_id(&tx, i));
            }
        }
        V::Transfer {
            signer,
            voucher,
            to,
        } => {
            send(&signer, v(VoucherOp::Transfer { voucher, to })).await?;
        }
        V::Redeem {
            signer,
            voucher,
            merchant,
            amount,
        } => {
            send(
                &signer,
                v(VoucherOp::Redeem {
                    voucher,
                    merchant,
                    amount,
                }),
            )
            .await?;
        }
        V::Reclaim { signer, voucher } => {
            send(&signer, v(VoucherOp::Reclaim { voucher })).await?;
        }
        V::Show { id, node } => print_json(
            &Client::new(&node)
                .get_json(&format!("/v1/vouchers/{id}"))
                .await?,
        )?,
    }
    Ok(())
}
