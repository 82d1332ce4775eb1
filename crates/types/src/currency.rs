//! Local currency and gift vouchers: the operations of the `currency` and `voucher` native modules
//! and the payment-request text format shown as QR codes.
//!
//! Design note: a currency is defined by its issuer (the city) together with a bank. The issuer
//! grants merchant status (region, category, settlement account) and sets the rules; the bank
//! confirms deposits (which mint tokens plus the city's bonus) and marks residents as verified.
//! Every charged amount is a *lot* with its own expiry; payments spend the lots charged first.
//! Payments are single-use: a merchant-presented request or a resident-presented authorization is
//! signed by the party that shows it, and its hash becomes the payment id, recorded once.

use crate::{
    bytes::{Reference, Signature},
    codec, hash_parts, Digest, PublicKey,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest currency id in bytes.
pub const CURRENCY_ID_MAX: usize = 16;
/// Most entries in one batched operation (merchants, deposits, residents, vouchers).
pub const BATCH_MAX: usize = 64;
/// Most regions or categories in a currency's rules.
pub const RULE_LIST_MAX: usize = 64;
/// Longest region, category, settlement account or memo in bytes.
pub const LABEL_MAX: usize = 64;

/// The rules a currency's issuer sets; enforced on chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyRules {
    /// Merchant regions where the currency can be spent (e.g. districts of the city).
    pub regions: Vec<String>,
    /// Merchant categories where it can be spent.
    pub categories: Vec<String>,
    /// Highest balance one resident wallet may hold (unexpired tokens).
    pub wallet_balance_max: u64,
    /// Most principal one wallet may charge in a calendar month (UTC).
    pub monthly_charge_max: u64,
    /// Bonus minted on each charge, in basis points of the deposit (the city's discount).
    pub bonus_bps: u32,
    /// Whether a wallet must be verified by the bank before it can be charged or pay.
    pub require_verified: bool,
}

impl CurrencyRules {
    /// Checks the rules' own bounds.
    pub fn validate(&self) -> Result<(), String> {
        for (what, list) in [("regions", &self.regions), ("categories", &self.categories)] {
            if list.is_empty() || list.len() > RULE_LIST_MAX {
                return Err(format!("{what}: 1 to {RULE_LIST_MAX} entries"));
            }
            for s in list {
                check_label(what, s)?;
            }
        }
        if self.wallet_balance_max == 0 || self.monthly_charge_max == 0 {
            return Err("limits must be positive".into());
        }
        if self.bonus_bps > 10_000 {
            return Err("bonus_bps is at most 10000 (100 %)".into());
        }
        Ok(())
    }
}

/// Checks a short text label: 1..=LABEL_MAX printable ASCII characters without `&`, `=`, `?`.
pub fn check_label(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > LABEL_MAX {
        return Err(format!("{what}: {s:?} must be 1 to {LABEL_MAX} bytes"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'?'))
    {
        return Err(format!(
            "{what}: {s:?} must be printable ASCII without spaces, & = ?"
        ));
    }
    Ok(())
}

/// Checks a currency id: 1..=16 of `A-Z 0-9 _ -`.
pub fn check_currency_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > CURRENCY_ID_MAX
        || !id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "currency id {id:?} must be 1 to {CURRENCY_ID_MAX} of A-Z 0-9 _ -"
        ));
    }
    Ok(())
}

/// A merchant as the issuer registers it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantInfo {
    /// The merchant's account key (it signs refunds, redemptions and collections).
    pub merchant: PublicKey,
    /// Region of the shop.
    pub region: String,
    /// Business category.
    pub category: String,
    /// Bank account that redemptions are settled to (opaque to the chain).
    pub settlement_account: String,
}

/// A deposit the bank confirms: mints `amount` plus the bonus into `wallet`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// Resident wallet.
    pub wallet: PublicKey,
    /// Deposited principal.
    pub amount: u64,
    /// The bank's reference of the deposit; each is minted once.
    pub reference: Digest,
}

/// A payment request a merchant shows (as a QR code); the payer signs the transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Chain the request is for.
    pub chain_id: String,
    /// Currency.
    pub currency: String,
    /// Merchant to be paid.
    pub merchant: PublicKey,
    /// Amount.
    pub amount: u64,
    /// Merchant's unique reference (e.g. a random value per checkout).
    pub reference: Reference,
    /// Block time after which the request cannot be paid.
    pub expires_at_ms: u64,
}

/// A payment authorization a resident shows (as a QR code); the merchant submits it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorization {
    /// Chain the authorization is for.
    pub chain_id: String,
    /// Currency.
    pub currency: String,
    /// Paying wallet.
    pub payer: PublicKey,
    /// The only merchant that may collect it, when the resident knows it (e.g. from the shop's
    /// ID code). Without it, whoever holds the authorization first can collect it: show it only
    /// to the shop you pay.
    pub merchant: Option<PublicKey>,
    /// Most the merchant may collect with it.
    pub amount_max: u64,
    /// Resident's unique reference.
    pub reference: Reference,
    /// Block time after which it cannot be used.
    pub expires_at_ms: u64,
}

impl PaymentRequest {
    /// Domain of the signed message.
    pub const DOMAIN: &'static str = "netchain/currency/payment-request/v1";

    /// The payment id and the message the merchant signs.
    pub fn id(&self) -> Digest {
        hash_parts(Self::DOMAIN, &[&codec::encode(self)])
    }
}

impl PaymentAuthorization {
    /// Domain of the signed message.
    pub const DOMAIN: &'static str = "netchain/currency/payment-authorization/v1";

    /// The payment id and the message the payer signs.
    pub fn id(&self) -> Digest {
        hash_parts(Self::DOMAIN, &[&codec::encode(self)])
    }
}

/// Operations of the `currency` module.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum CurrencyOp {
    /// Defines a new currency; the sender becomes its issuer.
    Define {
        /// Currency id (A-Z 0-9 _ -, at most 16).
        currency: String,
        /// The bank that confirms deposits and settles redemptions.
        bank: PublicKey,
        /// Validity of each charged amount, in seconds (fixed for the currency's life).
        expiry_secs: u64,
        /// Initial rules.
        rules: CurrencyRules,
    },
    /// Replaces the rules (issuer). Applies to later operations only.
    SetRules {
        /// Currency.
        currency: String,
        /// New rules.
        rules: CurrencyRules,
    },
    /// Registers or updates merchants (issuer).
    RegisterMerchants {
        /// Currency.
        currency: String,
        /// Up to [`BATCH_MAX`] merchants.
        merchants: Vec<MerchantInfo>,
    },
    /// Suspends or reinstates a merchant (issuer).
    SetMerchantActive {
        /// Currency.
        currency: String,
        /// Merchant.
        merchant: PublicKey,
        /// New status.
        active: bool,
    },
    /// Marks resident wallets as identity-verified or not (bank).
    VerifyResidents {
        /// Currency.
        currency: String,
        /// Up to [`BATCH_MAX`] wallets.
        residents: Vec<PublicKey>,
        /// New flag.
        verified: bool,
    },
    /// Confirms deposits and mints them with the bonus (bank).
    Charge {
        /// Currency.
        currency: String,
        /// Up to [`BATCH_MAX`] deposits; all or none are applied.
        deposits: Vec<Deposit>,
    },
    /// Pays a merchant-presented request (signed by the payer).
    Pay {
        /// The request shown by the merchant.
        request: PaymentRequest,
        /// The merchant's signature over [`PaymentRequest::id`].
        merchant_signature: Signature,
    },
    /// Collects a payment with a resident-presented authorization (signed by the merchant).
    Collect {
        /// The authorization shown by the resident.
        authorization: PaymentAuthorization,
        /// The payer's signature over [`PaymentAuthorization::id`].
        payer_signature: Signature,
        /// Amount collected, at most `authorization.amount_max`.
        amount: u64,
    },
    /// Refunds (part of) a payment to its payer (signed by the merchant that was paid).
    Refund {
        /// Payment id.
        payment: Digest,
        /// Amount, at most what is left unrefunded.
        amount: u64,
    },
    /// Burns merchant tokens and records a settlement the bank owes (merchant).
    Redeem {
        /// Currency.
        currency: String,
        /// Amount.
        amount: u64,
    },
    /// Marks a settlement record as paid out (bank).
    ConfirmSettlement {
        /// Currency.
        currency: String,
        /// Settlement sequence number.
        settlement: u64,
    },
}

/// Operations of the `voucher` module.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum VoucherOp {
    /// Issues `count` vouchers of `face_value` to `to` (the currency's issuer). Voucher ids are
    /// [`voucher_id`] of this transaction's id and the index.
    Issue {
        /// Currency whose merchants accept the vouchers.
        currency: String,
        /// First holder.
        to: PublicKey,
        /// Value of each voucher.
        face_value: u64,
        /// Number of vouchers, 1 to [`BATCH_MAX`].
        count: u32,
        /// Block time after which the vouchers cannot be redeemed.
        expires_at_ms: u64,
    },
    /// Gives a voucher (whatever remains of it) to another holder (holder).
    Transfer {
        /// Voucher.
        voucher: Digest,
        /// New holder.
        to: PublicKey,
    },
    /// Redeems `amount` of a voucher at a merchant (holder); the rest remains on the voucher.
    Redeem {
        /// Voucher.
        voucher: Digest,
        /// Merchant of the voucher's currency.
        merchant: PublicKey,
        /// Amount, at most the voucher's remaining value.
        amount: u64,
    },
    /// Returns an expired voucher's remaining value to the issuer (issuer).
    Reclaim {
        /// Voucher.
        voucher: Digest,
    },
}

/// The id of voucher `index` issued by transaction `tx_id`.
pub fn voucher_id(tx_id: &Digest, index: u32) -> Digest {
    hash_parts("netchain/voucher/id/v1", &[&tx_id.0, &index.to_le_bytes()])
}

/// Why a payment QR payload does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment QR payload: {0}")]
pub struct QrError(pub String);

/// A payment QR payload: what a merchant or resident shows.
///
/// Text format (one line, ASCII, fields in this order, `&`-separated `key=value`):
/// - merchant request: `netchain:pay/1?chain=C&currency=X&merchant=HEX64&amount=N&ref=HEX32&exp=MS&sig=HEX128`
/// - resident authorization: `netchain:authorize/1?chain=C&currency=X&payer=HEX64&merchant=HEX64|any&max=N&ref=HEX32&exp=MS&sig=HEX128`
///
/// `sig` is the shower's ed25519 signature over the request's or authorization's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentQr {
    /// Shown by a merchant; the payer pays it with [`CurrencyOp::Pay`].
    Request(PaymentRequest, Signature),
    /// Shown by a resident; the merchant collects with [`CurrencyOp::Collect`].
    Authorization(PaymentAuthorization, Signature),
}

impl fmt::Display for PaymentQr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(r, sig) => write!(
                f,
                "netchain:pay/1?chain={}&currency={}&merchant={}&amount={}&ref={}&exp={}&sig={}",
                r.chain_id, r.currency, r.merchant, r.amount, r.reference, r.expires_at_ms, sig
            ),
            Self::Authorization(a, sig) => write!(
                f,
                "netchain:authorize/1?chain={}&currency={}&payer={}&merchant={}&max={}&ref={}&exp={}&sig={}",
                a.chain_id,
                a.currency,
                a.payer,
                a.merchant.map_or("any".to_string(), |m| m.to_string()),
                a.amount_max,
                a.reference,
                a.expires_at_ms,
                sig
            ),
        }
    }
}

impl std::str::FromStr for PaymentQr {
    type Err = QrError;

    fn from_str(s: &str) -> Result<Self, QrError> {
        let err = |m: &str| QrError(m.to_string());
        if s.len() > 1024 {
            return Err(err("longer than 1024 bytes"));
        }
        let (kind, query) = s.trim().split_once('?').ok_or_else(|| err("missing '?'"))?;
        let fields: Vec<(&str, &str)> = query
            .split('&')
            .map(|kv| kv.split_once('=').ok_or_else(|| err("field without '='")))
            .collect::<Result<_, _>>()?;
        let keys: &[&str] = match kind {
            "netchain:pay/1" => &[
                "chain", "currency", "merchant", "amount", "ref", "exp", "sig",
            ],
            "netchain:authorize/1" => &[
                "chain", "currency", "payer", "merchant", "max", "ref", "exp", "sig",
            ],
            other => return Err(QrError(format!("unknown kind {other:?}"))),
        };
        // The authorization has one more field (the merchant) before the shared tail.
        let tail = usize::from(kind == "netchain:authorize/1");
        if fields.len() != keys.len() || fields.iter().zip(keys).any(|((k, _), want)| k != want) {
            return Err(QrError(format!(
                "fields must be exactly {}",
                keys.join(",")
            )));
        }
        let v = |i: usize| fields[i].1;
        let num = |i: usize| {
            v(i).parse::<u64>()
                .map_err(|_| QrError(format!("{} is not a number", keys[i])))
        };
        let key = |i: usize| {
            v(i).parse::<PublicKey>()
                .map_err(|e| QrError(format!("{}: {e}", keys[i])))
        };
        let reference: Reference = v(4 + tail)
            .parse()
            .map_err(|_| err("ref must be 32 hex characters"))?;
        let sig: Signature = v(6 + tail)
            .parse()
            .map_err(|e| QrError(format!("sig: {e}")))?;
        let chain_id = v(0).to_string();
        if chain_id.is_empty() || chain_id.len() > crate::CHAIN_ID_MAX_BYTES {
            return Err(err("chain id length"));
        }
        let currency = v(1).to_string();
        check_currency_id(&currency).map_err(QrError)?;
        Ok(if kind == "netchain:pay/1" {
            Self::Request(
                PaymentRequest {
                    chain_id,
                    currency,
                    merchant: key(2)?,
                    amount: num(3)?,
                    reference,
                    expires_at_ms: num(5)?,
                },
                sig,
            )
        } else {
            Self::Authorization(
                PaymentAuthorization {
                    chain_id,
                    currency,
                    payer: key(2)?,
                    merchant: match v(3) {
                        "any" => None,
                        _ => Some(key(3)?),
                    },
                    amount_max: num(4)?,
                    reference,
                    expires_at_ms: num(6)?,
                },
                sig,
            )
        })
    }
}

/// A calendar month index (`year * 12 + month - 1`, UTC) of a unix time in milliseconds.
pub fn month_index(unix_ms: u64) -> u32 {
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let days = (unix_ms / 86_400_000) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 12 + month - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_follow_the_calendar() {
        // 2026-01-31T23:59:59.999Z and 2026-02-01T00:00:00Z.
        let jan_end = 1_769_903_999_999;
        assert_eq!(month_index(jan_end), 2026 * 12);
        assert_eq!(month_index(jan_end + 1), 2026 * 12 + 1);
        // 2024-02-29 (leap day) is in February; 2024-03-01 in March.
        assert_eq!(month_index(1_709_164_800_000), 2024 * 12 + 1);
        assert_eq!(month_index(1_709_251_200_000), 2024 * 12 + 2);
        assert_eq!(month_index(0), 1970 * 12);
    }

    fn request() -> PaymentQr {
        PaymentQr::Request(
            PaymentRequest {
                chain_id: "city".into(),
                currency: "SEOUL".into(),
                merchant: PublicKey([7; 32]),
                amount: 12_500,
                reference: Reference([3; 16]),
                expires_at_ms: 1_800_000_000_000,
            },
            Signature([5; 64]),
        )
    }

    #[test]
    fn qr_text_round_trips_and_rejects_garbage() {
        let text = request().to_string();
        assert!(text.starts_with("netchain:pay/1?chain=city&currency=SEOUL&merchant=0707"));
        assert_eq!(text.parse::<PaymentQr>().unwrap(), request());
        let auth = PaymentQr::Authorization(
            PaymentAuthorization {
                chain_id: "city".into(),
                currency: "SEOUL".into(),
                payer: PublicKey([1; 32]),
                merchant: None,
                amount_max: 50_000,
                reference: Reference([4; 16]),
                expires_at_ms: 9,
            },
            Signature([6; 64]),
        );
        assert_eq!(auth.to_string().parse::<PaymentQr>().unwrap(), auth);
        assert!(auth.to_string().contains("&merchant=any&"));
        let PaymentQr::Authorization(mut bound, sig) = auth else {
            unreachable!()
        };
        bound.merchant = Some(PublicKey([7; 32]));
        let bound = PaymentQr::Authorization(bound, sig);
        assert_eq!(bound.to_string().parse::<PaymentQr>().unwrap(), bound);
        for bad in [
            "",
            "netchain:pay/1",
            "netchain:pay/2?chain=city",
            &text.replace("amount=12500", "amount=-1"),
            &text.replace("&ref=", "&reff="),
            &text.replace("currency=SEOUL", "currency=seoul"),
            &text.replace("sig=05", "sig=zz"),
            &format!("{text}&extra=1"),
        ] {
            assert!(bad.parse::<PaymentQr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ops_have_tagged_json() {
        let op = CurrencyOp::Redeem {
            currency: "SEOUL".into(),
            amount: 5,
        };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, r#"{"op":"redeem","currency":"SEOUL","amount":5}"#);
        assert_eq!(serde_json::from_str::<CurrencyOp>(&json).unwrap(), op);
    }
}
