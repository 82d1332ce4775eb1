//! The `currency` (restricted local currency) and `voucher` (gift voucher) native modules.
//!
//! Design note: all state lives in the Merkle state tree under `cur/` and `vch/` keys, so every
//! value is provable like an account. A currency keeps its totals, and every operation moves them
//! together with the balances it changes, so at every height
//! `minted = circulating + redeemed + expired_returned` (checked against the real balances by a
//! property test). Each charged amount is a lot whose expiry is rounded up to the currency's expiry
//! bucket (1/256 of the period, so about 257 buckets are live while the sweep keeps up; the queue
//! is capped and charges are refused when it is full); a wallet is queued under the bucket of every
//! lot it receives, and at the start of every block a bounded, deterministic sweep, shared fairly
//! among currencies, returns the expired lots of the queued wallets to the issuer. Expired lots are
//! never spendable, swept or not.
//! Time is the block's proposer timestamp (consensus keeps it monotonic and near the clock).

use crate::overlay::Overlay;
use crate::TxError;
use borsh::{BorshDeserialize, BorshSerialize};
use netchain_crypto::verify;
use netchain_storage::{KvBackend, StorageError};
use netchain_types::currency::{
    check_currency_id, check_label, month_index, CurrencyOp, CurrencyRules, Deposit, MerchantInfo,
    PaymentAuthorization, PaymentRequest, VoucherOp, BATCH_MAX,
};
use netchain_types::{currency::voucher_id, Digest, Payload, PublicKey, Signature};
use serde::{Deserialize, Serialize};

/// Most currencies on one chain.
pub const CURRENCIES_MAX: usize = 256;
/// Wallets visited by the expiry sweep per block, shared by the currencies (each gets at least
/// [`SWEEP_SHARE_MIN`]; the first currency served rotates with the height).
pub const SWEEP_BUDGET: u32 = 1_024;
/// Least sweep work per currency per block.
pub const SWEEP_SHARE_MIN: u32 = 16;
/// Most expiry buckets waiting in one currency.
const PENDING_BUCKETS_MAX: usize = 4_096;
/// Most wallet entries waiting in one currency's expiry queue.
pub const QUEUED_MAX: u64 = 4_000_000;
/// Wallets per expiry-queue chunk.
const CHUNK: u32 = 64;
/// Expiry buckets per expiry period.
const BUCKETS_PER_PERIOD: u64 = 256;
/// Longest expiry period: 10 years.
pub const EXPIRY_SECS_MAX: u64 = 10 * 366 * 86_400;
/// Most lots one wallet holds.
const LOTS_MAX: usize = 1_024;

/// Why a module operation did not apply.
pub(crate) enum Fail {
    Storage(StorageError),
    Reject(TxError),
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

fn rule(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::Reject(TxError::Rule {
        code,
        message: message.into(),
    })
}

type R<T> = Result<T, Fail>;

/// Money totals of one currency.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Totals {
    /// Deposits confirmed by the bank.
    pub minted_principal: u64,
    /// Bonus minted on top of deposits.
    pub minted_bonus: u64,
    /// Face value of vouchers issued.
    pub vouchers_issued: u64,
    /// Held by wallets, merchants and vouchers.
    pub circulating: u64,
    /// Burned by merchant redemptions (owed by the bank).
    pub redeemed: u64,
    /// Expired lots and reclaimed vouchers returned to the issuer.
    pub expired_returned: u64,
    /// Payments made.
    pub payments: u64,
    /// Sum of payments.
    pub payment_volume: u64,
    /// Sum of refunds.
    pub refunded: u64,
    /// Settlements the bank has confirmed as paid out.
    pub settlements_paid: u64,
}

impl Totals {
    /// Everything ever minted (deposits, bonus, vouchers).
    pub fn minted(&self) -> u128 {
        u128::from(self.minted_principal)
            + u128::from(self.minted_bonus)
            + u128::from(self.vouchers_issued)
    }

    /// `minted == circulating + redeemed + expired_returned`.
    pub fn balanced(&self) -> bool {
        self.minted()
            == u128::from(self.circulating)
                + u128::from(self.redeemed)
                + u128::from(self.expired_returned)
    }
}

/// A bucket of the expiry queue.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Pending {
    /// Bucket number (`expires_at_ms / bucket_ms`).
    pub bucket: u64,
    /// Wallets queued in it.
    pub len: u32,
}

/// A currency's on-chain record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CurrencyState {
    /// Id.
    pub id: String,
    /// Issuer (the city): sets rules, registers merchants, issues vouchers.
    pub issuer: PublicKey,
    /// Bank: confirms deposits and settlements, verifies residents.
    pub bank: PublicKey,
    /// Current rules.
    pub rules: CurrencyRules,
    /// Validity of each charged amount.
    pub expiry_ms: u64,
    /// Expiry granularity: lot expiries are rounded up to a multiple of this.
    pub bucket_ms: u64,
    /// Height of definition.
    pub created_height: u64,
    /// Totals.
    pub totals: Totals,
    /// Next settlement sequence number.
    pub next_settlement: u64,
    /// Expiry queue buckets not yet swept, in order.
    pub pending: Vec<Pending>,
    /// Wallets of `pending[0]` already swept.
    pub sweep_pos: u32,
    /// Wallet entries waiting in the expiry queue.
    pub queued: u64,
}

/// One charged amount and when it expires.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Lot {
    /// Block time at which it expires.
    pub expires_at_ms: u64,
    /// Amount.
    pub amount: u64,
}

/// A resident wallet of one currency.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Wallet {
    /// Verified by the bank.
    pub verified: bool,
    /// Lots, oldest expiry first (that is the spending order).
    pub lots: Vec<Lot>,
    /// Month index of `month_charged`.
    pub month: u32,
    /// Principal charged in `month`.
    pub month_charged: u64,
}

impl Wallet {
    /// Unexpired balance at `now`.
    pub fn spendable(&self, now: u64) -> u64 {
        self.lots
            .iter()
            .filter(|l| l.expires_at_ms > now)
            .map(|l| l.amount)
            .sum()
    }

    /// Expired but not yet swept at `now`.
    pub fn expired(&self, now: u64) -> u64 {
        self.lots
            .iter()
            .filter(|l| l.expires_at_ms <= now)
            .map(|l| l.amount)
            .sum()
    }

    /// Every token held, expired or not (what counts as circulating).
    pub fn held(&self) -> u64 {
        self.lots.iter().map(|l| l.amount).sum()
    }

    /// Adds a lot in expiry order; true when no lot with that expiry existed (queue it).
    fn add_lot(&mut self, lot: Lot) -> R<bool> {
        match self
            .lots
            .binary_search_by_key(&lot.expires_at_ms, |l| l.expires_at_ms)
        {
            Ok(i) => {
                let l = &mut self.lots[i];
                l.amount = l
                    .amount
                    .checked_add(lot.amount)
                    .ok_or_else(|| rule("overflow", "wallet balance would overflow"))?;
                Ok(false)
            }
            Err(i) => {
                if self.lots.len() >= LOTS_MAX {
                    return Err(rule("too_many_lots", "wallet holds too many lots"));
                }
                self.lots.insert(i, lot);
                Ok(true)
            }
        }
    }
}

/// A merchant registered for one currency.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Merchant {
    /// Region.
    pub region: String,
    /// Category.
    pub category: String,
    /// Where redemptions are settled.
    pub settlement_account: String,
    /// Accepting payments.
    pub active: bool,
    /// Tokens received and not yet redeemed or refunded.
    pub balance: u64,
    /// Sum of payments and voucher redemptions received.
    pub received: u64,
    /// Sum of refunds given.
    pub refunded: u64,
    /// Sum redeemed for settlement.
    pub redeemed: u64,
}

/// A payment, recorded once under its id.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Payment {
    /// Id (hash of the request or authorization).
    pub id: Digest,
    /// Currency.
    pub currency: String,
    /// Payer.
    pub payer: PublicKey,
    /// Merchant.
    pub merchant: PublicKey,
    /// Amount paid.
    pub amount: u64,
    /// Amount refunded so far.
    pub refunded: u64,
    /// The payer's lots spent and not yet refunded (a refund gives back the last ones first).
    pub lots: Vec<Lot>,
    /// Height.
    pub height: u64,
    /// Block time.
    pub timestamp_ms: u64,
}

/// What the bank owes a merchant after a redemption.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Settlement {
    /// Sequence number within the currency.
    pub seq: u64,
    /// Currency.
    pub currency: String,
    /// Merchant.
    pub merchant: PublicKey,
    /// Merchant's settlement account.
    pub settlement_account: String,
    /// Amount due.
    pub amount: u64,
    /// Height of the redemption.
    pub height: u64,
    /// Block time of the redemption.
    pub timestamp_ms: u64,
    /// Confirmed paid by the bank.
    pub paid: bool,
}

/// A gift voucher.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Voucher {
    /// Id.
    pub id: Digest,
    /// Currency whose merchants accept it.
    pub currency: String,
    /// Current holder.
    pub holder: PublicKey,
    /// Face value.
    pub face_value: u64,
    /// Value left.
    pub remaining: u64,
    /// Block time after which it cannot be redeemed.
    pub expires_at_ms: u64,
    /// Height of issue.
    pub issued_height: u64,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// State key of the list of currency ids.
pub const CURRENCY_LIST_KEY: &[u8] = b"cur/list";

/// State key of a currency.
pub fn currency_key(id: &str) -> Vec<u8> {
    key(&[b"cur/def/", id.as_bytes()])
}

/// State key of a wallet.
pub fn wallet_key(id: &str, pk: &PublicKey) -> Vec<u8> {
    key(&[b"cur/wallet/", id.as_bytes(), b"/", &pk.0])
}

/// State key of a merchant.
pub fn merchant_key(id: &str, pk: &PublicKey) -> Vec<u8> {
    key(&[b"cur/merchant/", id.as_bytes(), b"/", &pk.0])
}

/// State key of a payment.
pub fn payment_key(payment: &Digest) -> Vec<u8> {
    key(&[b"cur/payment/", &payment.0])
}

/// State key of a settlement record.
pub fn settlement_key(id: &str, seq: u64) -> Vec<u8> {
    key(&[b"cur/settlement/", id.as_bytes(), b"/", &seq.to_be_bytes()])
}

/// State key of a deposit reference.
fn deposit_key(id: &str, reference: &Digest) -> Vec<u8> {
    key(&[b"cur/deposit/", id.as_bytes(), b"/", &reference.0])
}

fn chunk_key(id: &str, bucket: u64, chunk: u32) -> Vec<u8> {
    key(&[
        b"cur/expiry/",
        id.as_bytes(),
        b"/",
        &bucket.to_be_bytes(),
        &chunk.to_be_bytes(),
    ])
}

/// State key of a voucher.
pub fn voucher_key(id: &Digest) -> Vec<u8> {
    key(&[b"vch/", &id.0])
}

/// What a module operation sees of its transaction and block.
pub(crate) struct Env<'e> {
    pub chain_id: &'e str,
    pub height: u64,
    pub now: u64,
    pub tx_id: Digest,
    pub sender: PublicKey,
    /// The outcome of the payload's inner signature (request or authorization), when the
    /// executor already checked it in the block's batch.
    pub inner_sig_ok: Option<bool>,
    /// The identity registry accepts transactions only from registered senders.
    pub registered_only: bool,
}

/// The signature inside a payload (a merchant's request, a payer's authorization), for the
/// block's batch check: (signer, message, signature).
pub(crate) fn inner_signature(payload: &Payload) -> Option<(PublicKey, Digest, Signature)> {
    match payload {
        Payload::Currency(CurrencyOp::Pay {
            request,
            merchant_signature,
        }) => Some((request.merchant, request.id(), *merchant_signature)),
        Payload::Currency(CurrencyOp::Collect {
            authorization,
            payer_signature,
            ..
        }) => Some((authorization.payer, authorization.id(), *payer_signature)),
        _ => None,
    }
}

fn add(a: u64, b: u64, what: &str) -> R<u64> {
    a.checked_add(b)
        .ok_or_else(|| rule("overflow", format!("{what} would overflow")))
}

fn positive(amount: u64) -> R<()> {
    if amount == 0 {
        return Err(rule("invalid_amount", "amount must be positive"));
    }
    Ok(())
}

fn load_currency<B: KvBackend>(ov: &mut Overlay<'_, B>, id: &str) -> R<CurrencyState> {
    ov.get(&currency_key(id))?.ok_or_else(|| {
        rule(
            "unknown_currency",
            format!("currency {id:?} is not defined"),
        )
    })
}

fn load_merchant<B: KvBackend>(ov: &mut Overlay<'_, B>, id: &str, pk: &PublicKey) -> R<Merchant> {
    ov.get(&merchant_key(id, pk))?.ok_or_else(|| {
        rule(
            "merchant_not_registered",
            format!("{pk} is not a merchant of {id}"),
        )
    })
}

fn only(who: &PublicKey, env: &Env<'_>, code: &'static str, role: &str) -> R<()> {
    if &env.sender != who {
        return Err(rule(code, format!("only the {role} may do this")));
    }
    Ok(())
}

/// Checks that `m` may accept payments under `rules` (the rule named on refusal).
fn merchant_accepts(m: &Merchant, pk: &PublicKey, rules: &CurrencyRules) -> R<()> {
    if !m.active {
        return Err(rule(
            "merchant_suspended",
            format!("merchant {pk} is suspended"),
        ));
    }
    if !rules.regions.contains(&m.region) {
        return Err(rule(
            "region_not_allowed",
            format!("merchant region {:?} is not an allowed region", m.region),
        ));
    }
    if !rules.categories.contains(&m.category) {
        return Err(rule(
            "category_not_allowed",
            format!(
                "merchant category {:?} is not an allowed category",
                m.category
            ),
        ));
    }
    Ok(())
}

fn batch_len(n: usize) -> R<()> {
    if n == 0 || n > BATCH_MAX {
        return Err(rule("invalid_batch", format!("1 to {BATCH_MAX} entries")));
    }
    Ok(())
}

/// Queues `wallet` for the sweep of the bucket of `expires_at_ms`.
fn enqueue<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    c: &mut CurrencyState,
    wallet: &PublicKey,
    expires_at_ms: u64,
) -> R<()> {
    if c.queued >= QUEUED_MAX {
        return Err(rule(
            "expiry_queue_full",
            "the expiry sweep is behind; try again later",
        ));
    }
    let bucket = expires_at_ms / c.bucket_ms;
    let i = match c.pending.binary_search_by_key(&bucket, |p| p.bucket) {
        Ok(i) => i,
        Err(i) => {
            if c.pending.len() >= PENDING_BUCKETS_MAX {
                return Err(rule(
                    "expiry_queue_full",
                    "the expiry sweep is behind; try again later",
                ));
            }
            c.pending.insert(i, Pending { bucket, len: 0 });
            i
        }
    };
    let len = c.pending[i].len;
    let k = chunk_key(&c.id, bucket, len / CHUNK);
    let mut list: Vec<PublicKey> = ov.get(&k)?.unwrap_or_default();
    list.push(*wallet);
    ov.put(k, &list);
    c.pending[i].len = len + 1;
    c.queued += 1;
    Ok(())
}

/// Gives `lot` to a wallet (queued for its expiry), or returns it to the issuer if it has
/// already expired. Circulating totals are the caller's.
fn give_lot<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    c: &mut CurrencyState,
    env: &Env<'_>,
    pk: &PublicKey,
    w: &mut Wallet,
    lot: Lot,
) -> R<()> {
    if lot.expires_at_ms <= env.now {
        c.totals.expired_returned = add(c.totals.expired_returned, lot.amount, "expired")?;
        c.totals.circulating = c.totals.circulating.saturating_sub(lot.amount);
        return Ok(());
    }
    if w.add_lot(lot)? {
        enqueue(ov, c, pk, lot.expires_at_ms)?;
    }
    Ok(())
}

/// The expiry sweep at the start of a block: returns expired lots of queued wallets to the
/// issuer, oldest bucket first. Each currency gets an equal share of [`SWEEP_BUDGET`] (at least
/// [`SWEEP_SHARE_MIN`]) and the currency served first rotates with the height, so one currency's
/// backlog cannot starve the others.
pub(crate) fn sweep<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    now: u64,
    height: u64,
) -> Result<(), StorageError> {
    let Some(ids) = ov.get::<Vec<String>>(CURRENCY_LIST_KEY)? else {
        return Ok(());
    };
    if ids.is_empty() {
        return Ok(());
    }
    let share = (SWEEP_BUDGET / ids.len() as u32).max(SWEEP_SHARE_MIN);
    let first = (height % ids.len() as u64) as usize;
    for k in 0..ids.len() {
        let id = &ids[(first + k) % ids.len()];
        let mut budget = share;
        let ck = currency_key(id);
        let Some(mut c) = ov.get::<CurrencyState>(&ck)? else {
            continue;
        };
        let mut changed = false;
        while budget > 0 {
            let Some(p) = c.pending.first().copied() else {
                break;
            };
            if now < p.bucket.saturating_mul(c.bucket_ms) {
                break;
            }
            while c.sweep_pos < p.len && budget > 0 {
                let list: Vec<PublicKey> = ov
                    .get(&chunk_key(id, p.bucket, c.sweep_pos / CHUNK))?
                    .unwrap_or_default();
                if let Some(pk) = list.get((c.sweep_pos % CHUNK) as usize) {
                    let wk = wallet_key(id, pk);
                    if let Some(mut w) = ov.get::<Wallet>(&wk)? {
                        let expired = w.expired(now);
                        if expired > 0 {
                            w.lots.retain(|l| l.expires_at_ms > now);
                            c.totals.expired_returned =
                                c.totals.expired_returned.saturating_add(expired);
                            c.totals.circulating = c.totals.circulating.saturating_sub(expired);
                            ov.put(wk, &w);
                        }
                    }
                }
                c.sweep_pos += 1;
                c.queued = c.queued.saturating_sub(1);
                budget -= 1;
                changed = true;
            }
            if c.sweep_pos >= p.len {
                for chunk in 0..p.len.div_ceil(CHUNK) {
                    ov.delete(chunk_key(id, p.bucket, chunk));
                }
                c.pending.remove(0);
                c.sweep_pos = 0;
                changed = true;
            }
        }
        if changed {
            ov.put(ck, &c);
        }
    }
    ov.commit()
}

/// Applies a `currency` operation (writes staged in `ov`).
pub(crate) fn apply_currency<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    op: &CurrencyOp,
) -> R<()> {
    match op {
        CurrencyOp::Define {
            currency,
            bank,
            expiry_secs,
            rules,
        } => define(ov, env, currency, bank, *expiry_secs, rules),
        CurrencyOp::SetRules { currency, rules } => {
            let mut c = load_currency(ov, currency)?;
            only(&c.issuer, env, "not_issuer", "issuer")?;
            rules.validate().map_err(|e| rule("invalid_rules", e))?;
            c.rules = rules.clone();
            ov.put(currency_key(currency), &c);
            Ok(())
        }
        CurrencyOp::RegisterMerchants {
            currency,
            merchants,
        } => register_merchants(ov, env, currency, merchants),
        CurrencyOp::SetMerchantActive {
            currency,
            merchant,
            active,
        } => {
            let c = load_currency(ov, currency)?;
            only(&c.issuer, env, "not_issuer", "issuer")?;
            let mut m = load_merchant(ov, currency, merchant)?;
            m.active = *active;
            ov.put(merchant_key(currency, merchant), &m);
            Ok(())
        }
        CurrencyOp::VerifyResidents {
            currency,
            residents,
            verified,
        } => {
            let c = load_currency(ov, currency)?;
            only(&c.bank, env, "not_bank", "bank")?;
            batch_len(residents.len())?;
            for pk in residents {
                let k = wallet_key(currency, pk);
                let mut w: Wallet = ov.get(&k)?.unwrap_or_default();
                w.verified = *verified;
                ov.put(k, &w);
            }
            Ok(())
        }
        CurrencyOp::Charge { currency, deposits } => charge(ov, env, currency, deposits),
        CurrencyOp::Pay {
            request,
            merchant_signature,
        } => pay_request(ov, env, request, merchant_signature),
        CurrencyOp::Collect {
            authorization,
            payer_signature,
            amount,
        } => collect(ov, env, authorization, payer_signature, *amount),
        CurrencyOp::Refund { payment, amount } => refund(ov, env, payment, *amount),
        CurrencyOp::Redeem { currency, amount } => redeem(ov, env, currency, *amount),
        CurrencyOp::ConfirmSettlement {
            currency,
            settlement,
        } => {
            let mut c = load_currency(ov, currency)?;
            only(&c.bank, env, "not_bank", "bank")?;
            let k = settlement_key(currency, *settlement);
            let mut s: Settlement = ov.get(&k)?.ok_or_else(|| {
                rule(
                    "unknown_settlement",
                    format!("no settlement {settlement} in {currency}"),
                )
            })?;
            if s.paid {
                return Err(rule(
                    "settlement_already_paid",
                    format!("settlement {settlement} is already confirmed"),
                ));
            }
            s.paid = true;
            c.totals.settlements_paid = add(c.totals.settlements_paid, s.amount, "settled")?;
            ov.put(k, &s);
            ov.put(currency_key(currency), &c);
            Ok(())
        }
    }
}

fn define<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    id: &str,
    bank: &PublicKey,
    expiry_secs: u64,
    rules: &CurrencyRules,
) -> R<()> {
    check_currency_id(id).map_err(|e| rule("invalid_currency_id", e))?;
    rules.validate().map_err(|e| rule("invalid_rules", e))?;
    if expiry_secs == 0 || expiry_secs > EXPIRY_SECS_MAX {
        return Err(rule(
            "invalid_rules",
            format!("expiry_secs must be 1 to {EXPIRY_SECS_MAX}"),
        ));
    }
    if ov.get_raw(&currency_key(id))?.is_some() {
        return Err(rule(
            "currency_exists",
            format!("currency {id} already exists"),
        ));
    }
    let mut list: Vec<String> = ov.get(CURRENCY_LIST_KEY)?.unwrap_or_default();
    if list.len() >= CURRENCIES_MAX {
        return Err(rule(
            "too_many_currencies",
            format!("a chain holds at most {CURRENCIES_MAX} currencies"),
        ));
    }
    list.push(id.to_string());
    let expiry_ms = expiry_secs * 1_000;
    let c = CurrencyState {
        id: id.to_string(),
        issuer: env.sender,
        bank: *bank,
        rules: rules.clone(),
        expiry_ms,
        bucket_ms: expiry_ms.div_ceil(BUCKETS_PER_PERIOD).max(1_000),
        created_height: env.height,
        totals: Totals::default(),
        next_settlement: 0,
        pending: Vec::new(),
        sweep_pos: 0,
        queued: 0,
    };
    ov.put(CURRENCY_LIST_KEY.to_vec(), &list);
    ov.put(currency_key(id), &c);
    Ok(())
}

fn register_merchants<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    currency: &str,
    merchants: &[MerchantInfo],
) -> R<()> {
    let c = load_currency(ov, currency)?;
    only(&c.issuer, env, "not_issuer", "issuer")?;
    batch_len(merchants.len())?;
    for info in merchants {
        for (what, s) in [
            ("region", &info.region),
            ("category", &info.category),
            ("settlement_account", &info.settlement_account),
        ] {
            check_label(what, s).map_err(|e| rule("invalid_merchant", e))?;
        }
        let k = merchant_key(currency, &info.merchant);
        let m = match ov.get::<Merchant>(&k)? {
            Some(m) => Merchant {
                region: info.region.clone(),
                category: info.category.clone(),
                settlement_account: info.settlement_account.clone(),
                ..m
            },
            None => Merchant {
                region: info.region.clone(),
                category: info.category.clone(),
                settlement_account: info.settlement_account.clone(),
                active: true,
                balance: 0,
                received: 0,
                refunded: 0,
                redeemed: 0,
            },
        };
        ov.put(k, &m);
    }
    Ok(())
}

fn charge<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    currency: &str,
    deposits: &[Deposit],
) -> R<()> {
    let mut c = load_currency(ov, currency)?;
    only(&c.bank, env, "not_bank", "bank")?;
    batch_len(deposits.len())?;
    let month = month_index(env.now);
    let expires_at_ms = env
        .now
        .saturating_add(c.expiry_ms)
        .div_ceil(c.bucket_ms)
        .saturating_mul(c.bucket_ms);
    for d in deposits {
        positive(d.amount)?;
        let dk = deposit_key(currency, &d.reference);
        if ov.get_raw(&dk)?.is_some() {
            return Err(rule(
                "deposit_reused",
                format!("deposit {} was already charged", d.reference),
            ));
        }
        ov.put(dk, &env.height);
        let wk = wallet_key(currency, &d.wallet);
        let mut w: Wallet = ov.get(&wk)?.unwrap_or_default();
        if c.rules.require_verified && !w.verified {
            return Err(rule(
                "wallet_not_verified",
                format!("wallet {} is not verified by the bank", d.wallet),
            ));
        }
        if w.month != month {
            w.month = month;
            w.month_charged = 0;
        }
        let charged = add(w.month_charged, d.amount, "monthly charge")?;
        if charged > c.rules.monthly_charge_max {
            return Err(rule(
                "monthly_charge_limit",
                format!(
                    "wallet {} would charge {charged} this month, limit {}",
                    d.wallet, c.rules.monthly_charge_max
                ),
            ));
        }
        w.month_charged = charged;
        let bonus = u64::try_from(u128::from(d.amount) * u128::from(c.rules.bonus_bps) / 10_000)
            .map_err(|_| rule("overflow", "bonus would overflow"))?;
        let minted = add(d.amount, bonus, "minted amount")?;
        let balance = add(w.spendable(env.now), minted, "wallet balance")?;
        if balance > c.rules.wallet_balance_max {
            return Err(rule(
                "wallet_balance_limit",
                format!(
                    "wallet {} would hold {balance}, limit {}",
                    d.wallet, c.rules.wallet_balance_max
                ),
            ));
        }
        c.totals.minted_principal = add(c.totals.minted_principal, d.amount, "minted")?;
        c.totals.minted_bonus = add(c.totals.minted_bonus, bonus, "minted bonus")?;
        c.totals.circulating = add(c.totals.circulating, minted, "circulating")?;
        give_lot(
            ov,
            &mut c,
            env,
            &d.wallet,
            &mut w,
            Lot {
                expires_at_ms,
                amount: minted,
            },
        )?;
        ov.put(wk, &w);
    }
    ov.put(currency_key(currency), &c);
    Ok(())
}

/// The checks and moves shared by both payment flows.
#[allow(clippy::too_many_arguments)]
fn pay<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    id: Digest,
    currency: &str,
    payer: &PublicKey,
    merchant_pk: &PublicKey,
    amount: u64,
    expires_at_ms: u64,
) -> R<()> {
    positive(amount)?;
    if env.now >= expires_at_ms {
        return Err(rule("payment_expired", "the payment request has expired"));
    }
    if payer == merchant_pk {
        return Err(rule(
            "self_payment",
            "payer and merchant are the same account",
        ));
    }
    let pk = payment_key(&id);
    if ov.get_raw(&pk)?.is_some() {
        return Err(rule(
            "payment_already_made",
            format!("payment {id} was already made"),
        ));
    }
    let mut c = load_currency(ov, currency)?;
    let mut m = load_merchant(ov, currency, merchant_pk)?;
    merchant_accepts(&m, merchant_pk, &c.rules)?;
    let wk = wallet_key(currency, payer);
    let mut w: Wallet = ov.get(&wk)?.unwrap_or_default();
    if c.rules.require_verified && !w.verified {
        return Err(rule(
            "wallet_not_verified",
            format!("wallet {payer} is not verified by the bank"),
        ));
    }
    let spendable = w.spendable(env.now);
    if spendable < amount {
        let expired = w.expired(env.now);
        let code = if spendable.saturating_add(expired) >= amount {
            "funds_expired"
        } else {
            "insufficient_funds"
        };
        return Err(rule(
            code,
            format!("spendable {spendable} (expired {expired}) is below {amount}"),
        ));
    }
    // First charged, first spent: lots are in expiry order, which is charge order.
    let mut left = amount;
    let mut spent = Vec::new();
    for lot in w.lots.iter_mut().filter(|l| l.expires_at_ms > env.now) {
        if left == 0 {
            break;
        }
        let take = lot.amount.min(left);
        lot.amount -= take;
        left -= take;
        spent.push(Lot {
            expires_at_ms: lot.expires_at_ms,
            amount: take,
        });
    }
    w.lots.retain(|l| l.amount > 0);
    m.balance = add(m.balance, amount, "merchant balance")?;
    m.received = add(m.received, amount, "merchant received")?;
    c.totals.payments += 1;
    c.totals.payment_volume = add(c.totals.payment_volume, amount, "payment volume")?;
    ov.put(
        pk,
        &Payment {
            id,
            currency: currency.to_string(),
            payer: *payer,
            merchant: *merchant_pk,
            amount,
            refunded: 0,
            lots: spent,
            height: env.height,
            timestamp_ms: env.now,
        },
    );
    ov.put(wk, &w);
    ov.put(merchant_key(currency, merchant_pk), &m);
    ov.put(currency_key(currency), &c);
    Ok(())
}

fn pay_request<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    r: &PaymentRequest,
    sig: &Signature,
) -> R<()> {
    if r.chain_id != env.chain_id {
        return Err(rule("wrong_chain", "payment request is for another chain"));
    }
    let id = r.id();
    if !env
        .inner_sig_ok
        .unwrap_or_else(|| verify(&r.merchant, &id, sig).is_ok())
    {
        return Err(rule(
            "bad_request_signature",
            "payment request is not signed by its merchant",
        ));
    }
    pay(
        ov,
        env,
        id,
        &r.currency,
        &env.sender,
        &r.merchant,
        r.amount,
        r.expires_at_ms,
    )
}

fn collect<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    a: &PaymentAuthorization,
    sig: &Signature,
    amount: u64,
) -> R<()> {
    if a.chain_id != env.chain_id {
        return Err(rule("wrong_chain", "authorization is for another chain"));
    }
    let id = a.id();
    if !env
        .inner_sig_ok
        .unwrap_or_else(|| verify(&a.payer, &id, sig).is_ok())
    {
        return Err(rule(
            "bad_authorization_signature",
            "authorization is not signed by its payer",
        ));
    }
    if a.merchant.is_some_and(|m| m != env.sender) {
        return Err(rule(
            "authorization_for_other_merchant",
            "the authorization names another merchant",
        ));
    }
    if amount > a.amount_max {
        return Err(rule(
            "amount_exceeds_authorization",
            format!("{amount} is above the authorized {}", a.amount_max),
        ));
    }
    pay(
        ov,
        env,
        id,
        &a.currency,
        &a.payer,
        &env.sender,
        amount,
        a.expires_at_ms,
    )
}

fn refund<B: KvBackend>(ov: &mut Overlay<'_, B>, env: &Env<'_>, id: &Digest, amount: u64) -> R<()> {
    positive(amount)?;
    let pk = payment_key(id);
    let mut p: Payment = ov
        .get(&pk)?
        .ok_or_else(|| rule("unknown_payment", format!("no payment {id}")))?;
    if env.sender != p.merchant {
        return Err(rule(
            "not_payment_merchant",
            "only the merchant that was paid may refund",
        ));
    }
    let left = p.amount - p.refunded;
    if amount > left {
        return Err(rule(
            "refund_exceeds_payment",
            format!("{amount} is above the {left} left to refund"),
        ));
    }
    let mut c = load_currency(ov, &p.currency)?;
    let mut m = load_merchant(ov, &p.currency, &p.merchant)?;
    if m.balance < amount {
        return Err(rule(
            "insufficient_funds",
            format!("merchant balance {} is below {amount}", m.balance),
        ));
    }
    let wk = wallet_key(&p.currency, &p.payer);
    let mut w: Wallet = ov.get(&wk)?.unwrap_or_default();
    // The lots spent last come back first, with their original expiry.
    let mut todo = amount;
    while todo > 0 {
        let last = p.lots.last_mut().expect("lots cover the unrefunded amount");
        let give = last.amount.min(todo);
        let lot = Lot {
            expires_at_ms: last.expires_at_ms,
            amount: give,
        };
        last.amount -= give;
        if last.amount == 0 {
            p.lots.pop();
        }
        todo -= give;
        give_lot(ov, &mut c, env, &p.payer, &mut w, lot)?;
    }
    m.balance -= amount;
    m.refunded = add(m.refunded, amount, "merchant refunded")?;
    p.refunded += amount;
    c.totals.refunded = add(c.totals.refunded, amount, "refunded")?;
    ov.put(wk, &w);
    ov.put(merchant_key(&p.currency, &p.merchant), &m);
    ov.put(currency_key(&p.currency), &c);
    ov.put(pk, &p);
    Ok(())
}

fn redeem<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    currency: &str,
    amount: u64,
) -> R<()> {
    positive(amount)?;
    let mut c = load_currency(ov, currency)?;
    let mut m = load_merchant(ov, currency, &env.sender)?;
    if m.balance < amount {
        return Err(rule(
            "insufficient_funds",
            format!("merchant balance {} is below {amount}", m.balance),
        ));
    }
    m.balance -= amount;
    m.redeemed = add(m.redeemed, amount, "merchant redeemed")?;
    c.totals.circulating = c.totals.circulating.saturating_sub(amount);
    c.totals.redeemed = add(c.totals.redeemed, amount, "redeemed")?;
    let seq = c.next_settlement;
    c.next_settlement += 1;
    ov.put(
        settlement_key(currency, seq),
        &Settlement {
            seq,
            currency: currency.to_string(),
            merchant: env.sender,
            settlement_account: m.settlement_account.clone(),
            amount,
            height: env.height,
            timestamp_ms: env.now,
            paid: false,
        },
    );
    ov.put(merchant_key(currency, &env.sender), &m);
    ov.put(currency_key(currency), &c);
    Ok(())
}

fn load_voucher<B: KvBackend>(ov: &mut Overlay<'_, B>, id: &Digest) -> R<Voucher> {
    ov.get(&voucher_key(id))?
        .ok_or_else(|| rule("unknown_voucher", format!("no voucher {id}")))
}

/// Applies a `voucher` operation (writes staged in `ov`).
pub(crate) fn apply_voucher<B: KvBackend>(
    ov: &mut Overlay<'_, B>,
    env: &Env<'_>,
    op: &VoucherOp,
) -> R<()> {
    match op {
        VoucherOp::Issue {
            currency,
            to,
            face_value,
            count,
            expires_at_ms,
        } => {
            let mut c = load_currency(ov, currency)?;
            only(&c.issuer, env, "not_issuer", "issuer")?;
            positive(*face_value)?;
            batch_len(*count as usize)?;
            if *expires_at_ms <= env.now {
                return Err(rule("voucher_expired", "expiry is not in the future"));
            }
            let total = face_value
                .checked_mul(u64::from(*count))
                .ok_or_else(|| rule("overflow", "face value times count overflows"))?;
            c.totals.vouchers_issued = add(c.totals.vouchers_issued, total, "vouchers issued")?;
            c.totals.circulating = add(c.totals.circulating, total, "circulating")?;
            for i in 0..*count {
                let id = voucher_id(&env.tx_id, i);
                ov.put(
                    voucher_key(&id),
                    &Voucher {
                        id,
                        currency: currency.clone(),
                        holder: *to,
                        face_value: *face_value,
                        remaining: *face_value,
                        expires_at_ms: *expires_at_ms,
                        issued_height: env.height,
                    },
                );
            }
            ov.put(currency_key(currency), &c);
            Ok(())
        }
        VoucherOp::Transfer { voucher, to } => {
            let mut v = usable_voucher(ov, env, voucher)?;
            v.holder = *to;
            ov.put(voucher_key(voucher), &v);
            Ok(())
        }
        VoucherOp::Redeem {
            voucher,
            merchant,
            amount,
        } => {
            let mut v = usable_voucher(ov, env, voucher)?;
            positive(*amount)?;
            if *amount > v.remaining {
                return Err(rule(
                    "voucher_amount_exceeds_remaining",
                    format!("{amount} is above the {} left on the voucher", v.remaining),
                ));
            }
            let c = load_currency(ov, &v.currency)?;
            if c.rules.require_verified {
                let w: Wallet = ov
                    .get(&wallet_key(&v.currency, &env.sender))?
                    .unwrap_or_default();
                if !w.verified {
                    return Err(rule(
                        "wallet_not_verified",
                        format!("wallet {} is not verified by the bank", env.sender),
                    ));
                }
            }
            let mut m = load_merchant(ov, &v.currency, merchant)?;
            merchant_accepts(&m, merchant, &c.rules)?;
            v.remaining -= amount;
            m.balance = add(m.balance, *amount, "merchant balance")?;
            m.received = add(m.received, *amount, "merchant received")?;
            ov.put(merchant_key(&v.currency, merchant), &m);
            ov.put(voucher_key(voucher), &v);
            Ok(())
        }
        VoucherOp::Reclaim { voucher } => {
            let mut v = load_voucher(ov, voucher)?;
            let mut c = load_currency(ov, &v.currency)?;
            only(&c.issuer, env, "not_issuer", "issuer")?;
            if env.now < v.expires_at_ms {
                return Err(rule("voucher_not_expired", "the voucher has not expired"));
            }
            if v.remaining == 0 {
                return Err(rule("voucher_spent", "nothing is left on the voucher"));
            }
            c.totals.expired_returned = add(c.totals.expired_returned, v.remaining, "expired")?;
            c.totals.circulating = c.totals.circulating.saturating_sub(v.remaining);
            v.remaining = 0;
            ov.put(voucher_key(voucher), &v);
            ov.put(currency_key(&v.currency), &c);
            Ok(())
        }
    }
}

/// A voucher its holder may still use.
fn usable_voucher<B: KvBackend>(ov: &mut Overlay<'_, B>, env: &Env<'_>, id: &Digest) -> R<Voucher> {
    let v = load_voucher(ov, id)?;
    if v.holder != env.sender {
        return Err(rule("not_holder", "only the voucher's holder may use it"));
    }
    if v.remaining == 0 {
        return Err(rule("voucher_spent", "the voucher is fully redeemed"));
    }
    if env.now >= v.expires_at_ms {
        return Err(rule("voucher_expired", "the voucher has expired"));
    }
    Ok(v)
}
