//! Read endpoints of the local-currency and voucher modules. Every change goes through
//! `POST /v1/transactions` as a signed `currency` or `voucher` payload.

use crate::{parse, ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use borsh::BorshDeserialize;
use netchain_execution::currency::{
    currency_key, merchant_key, payment_key, settlement_key, voucher_key, wallet_key,
    CurrencyState, Lot, Merchant, Payment, Settlement, Totals, Voucher, Wallet, CURRENCY_LIST_KEY,
};
use netchain_node::Shared;
use netchain_types::currency::{check_currency_id, CurrencyRules};
use netchain_types::{Digest, PublicKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most settlements in one page.
const SETTLEMENTS_PAGE_MAX: u64 = 100;

/// A currency as `GET /v1/currencies/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurrencyView {
    /// Id.
    pub id: String,
    /// Issuer.
    pub issuer: PublicKey,
    /// Bank.
    pub bank: PublicKey,
    /// Rules in force.
    pub rules: CurrencyRules,
    /// Validity of each charged amount (seconds).
    pub expiry_secs: u64,
    /// Expiry granularity (ms).
    pub bucket_ms: u64,
    /// Height of definition.
    pub created_height: u64,
    /// Totals.
    pub totals: Totals,
    /// Settlement records so far.
    pub settlements: u64,
    /// Wallet entries waiting in the expiry queue.
    pub expiry_queue: u64,
    /// Height the values are from.
    pub height: u64,
}

/// `minted = circulating + redeemed + expired_returned` at one height.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Currency.
    pub currency: String,
    /// Height.
    pub height: u64,
    /// Everything minted: deposits, bonus and vouchers.
    pub minted: u64,
    /// Deposits.
    pub minted_principal: u64,
    /// Bonus.
    pub minted_bonus: u64,
    /// Vouchers issued.
    pub vouchers_issued: u64,
    /// Held by wallets, merchants and vouchers.
    pub circulating: u64,
    /// Burned by merchant redemptions.
    pub redeemed: u64,
    /// Returned to the issuer by expiry.
    pub expired_returned: u64,
    /// Whether the equation holds.
    pub balanced: bool,
}

/// A resident wallet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WalletView {
    /// Currency.
    pub currency: String,
    /// Wallet key.
    pub wallet: PublicKey,
    /// Unexpired balance (what can be spent now).
    pub spendable: u64,
    /// Expired, waiting for the sweep to return it to the issuer.
    pub expired: u64,
    /// Verified by the bank.
    pub verified: bool,
    /// Charged this calendar month (UTC).
    pub month_charged: u64,
    /// Lots, spending order.
    pub lots: Vec<Lot>,
    /// Height the values are from.
    pub height: u64,
}

/// A merchant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MerchantView {
    /// Currency.
    pub currency: String,
    /// Merchant key.
    pub merchant: PublicKey,
    /// Record.
    #[serde(flatten)]
    pub record: Merchant,
    /// Height the values are from.
    pub height: u64,
}

/// Query of the reads that can look at a past height.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeightQuery {
    /// Executed height to report (default: the latest).
    pub height: Option<u64>,
}

/// Query of `GET /v1/currencies/{id}/settlements`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementQuery {
    /// List sequence numbers below this one (default: from the newest).
    pub before: Option<u64>,
    /// Page size (default 20, at most 100).
    pub limit: Option<u64>,
    /// Only unpaid (`false`) or paid (`true`) records.
    pub paid: Option<bool>,
}

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/currencies", get(list))
        .route("/v1/currencies/{id}", get(currency))
        .route("/v1/currencies/{id}/reconciliation", get(reconciliation))
        .route("/v1/currencies/{id}/wallets/{key}", get(wallet))
        .route("/v1/currencies/{id}/merchants/{key}", get(merchant))
        .route("/v1/currencies/{id}/settlements", get(settlements))
        .route("/v1/payments/{id}", get(payment))
        .route("/v1/vouchers/{id}", get(voucher))
}

fn read<T: BorshDeserialize>(
    shared: &Shared,
    key: &[u8],
    height: u64,
) -> Result<Option<T>, ApiError> {
    shared
        .executor
        .module_value(key, height)
        .map_err(ApiError::internal)
}

/// The height to read at: `asked` (not above the executed height) or the executed height.
fn at_height(shared: &Shared, asked: Option<u64>) -> Result<u64, ApiError> {
    let executed = shared.status().height;
    match asked {
        Some(h) if h > executed => Err(ApiError::not_found(format!(
            "height {h} is not executed yet (latest {executed})"
        ))),
        Some(h) => Ok(h),
        None => Ok(executed),
    }
}

fn load_currency(shared: &Shared, id: &str, height: u64) -> Result<CurrencyState, ApiError> {
    check_currency_id(id).map_err(|e| ApiError::bad("malformed", e))?;
    read(shared, &currency_key(id), height)?
        .ok_or_else(|| ApiError::not_found(format!("currency {id} is not defined")))
}

fn view(c: CurrencyState, height: u64) -> CurrencyView {
    CurrencyView {
        expiry_secs: c.expiry_ms / 1_000,
        bucket_ms: c.bucket_ms,
        created_height: c.created_height,
        settlements: c.next_settlement,
        expiry_queue: c.queued,
        id: c.id,
        issuer: c.issuer,
        bank: c.bank,
        rules: c.rules,
        totals: c.totals,
        height,
    }
}

async fn list(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<CurrencyView>> {
    let height = shared.status().height;
    let ids: Vec<String> = read(&shared, CURRENCY_LIST_KEY, height)?.unwrap_or_default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(view(load_currency(&shared, &id, height)?, height));
    }
    Ok(Json(out))
}

async fn currency(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<CurrencyView> {
    let height = shared.status().height;
    Ok(Json(view(load_currency(&shared, &id, height)?, height)))
}

async fn reconciliation(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<Reconciliation> {
    let executed = shared.status().height;
    let height = at_height(&shared, q.height)?;
    // Before the currency existed nothing was minted.
    let t = match read::<CurrencyState>(&shared, &currency_key(&id), height)? {
        Some(c) => c.totals,
        None => {
            load_currency(&shared, &id, executed)?;
            Totals::default()
        }
    };
    Ok(Json(Reconciliation {
        currency: id,
        height,
        minted: u64::try_from(t.minted()).unwrap_or(u64::MAX),
        minted_principal: t.minted_principal,
        minted_bonus: t.minted_bonus,
        vouchers_issued: t.vouchers_issued,
        circulating: t.circulating,
        redeemed: t.redeemed,
        expired_returned: t.expired_returned,
        balanced: t.balanced(),
    }))
}

async fn wallet(
    State(shared): State<Arc<Shared>>,
    Path((id, key)): Path<(String, String)>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<WalletView> {
    let pk: PublicKey = parse("wallet key", &key)?;
    let status = shared.status();
    let height = at_height(&shared, q.height)?;
    load_currency(&shared, &id, height)?;
    let w: Wallet = read(&shared, &wallet_key(&id, &pk), height)?.unwrap_or_default();
    // Expiry is judged at the time of the block read (the last executed one by default).
    let now = if height == status.height {
        status.last_block_time_ms
    } else {
        shared
            .store
            .block_at(height)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("block {height} is not stored here")))?
            .timestamp_ms
    };
    Ok(Json(WalletView {
        currency: id,
        wallet: pk,
        spendable: w.spendable(now),
        expired: w.expired(now),
        verified: w.verified,
        month_charged: w.month_charged,
        lots: w.lots,
        height,
    }))
}

async fn merchant(
    State(shared): State<Arc<Shared>>,
    Path((id, key)): Path<(String, String)>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<MerchantView> {
    let pk: PublicKey = parse("merchant key", &key)?;
    let height = at_height(&shared, q.height)?;
    load_currency(&shared, &id, height)?;
    let record = read(&shared, &merchant_key(&id, &pk), height)?
        .ok_or_else(|| ApiError::not_found(format!("{pk} is not a merchant of {id}")))?;
    Ok(Json(MerchantView {
        currency: id,
        merchant: pk,
        record,
        height,
    }))
}

async fn settlements(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<SettlementQuery>,
) -> ApiResult<Vec<Settlement>> {
    let height = shared.status().height;
    let c = load_currency(&shared, &id, height)?;
    let limit = q.limit.unwrap_or(20).clamp(1, SETTLEMENTS_PAGE_MAX);
    // `before` is exclusive, as in `/v1/blocks`.
    let mut seq = q.before.unwrap_or(u64::MAX).min(c.next_settlement);
    let mut out = Vec::new();
    // Scans at most a few pages when filtering by paid status.
    let mut budget = SETTLEMENTS_PAGE_MAX * 10;
    while seq > 0 && (out.len() as u64) < limit && budget > 0 {
        seq -= 1;
        budget -= 1;
        if let Some(s) = read::<Settlement>(&shared, &settlement_key(&id, seq), height)? {
            if q.paid.is_none_or(|p| p == s.paid) {
                out.push(s);
            }
        }
    }
    Ok(Json(out))
}

async fn payment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<Payment> {
    let id: Digest = parse("payment id", &id)?;
    let height = at_height(&shared, q.height)?;
    read(&shared, &payment_key(&id), height)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("payment {id} unknown")))
}

async fn voucher(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<Voucher> {
    let id: Digest = parse("voucher id", &id)?;
    let height = at_height(&shared, q.height)?;
    read(&shared, &voucher_key(&id), height)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("voucher {id} unknown")))
}
