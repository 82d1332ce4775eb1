//! The HTTP/JSON API of a node.
//!
//! Design note: reads come only from what execution has committed (the block store, the state
//! tree at an executed height, certified checkpoints); the only write is admission into the
//! mempool, after the same checks execution applies (decode within a size bound, chain id,
//! signature, nonce). Every error is JSON `{ "code", "message" }` with a stable code.

#![recursion_limit = "512"]

pub mod auth;
pub mod chains;
pub mod currency;
pub mod events;
mod explorer;
pub mod identity;
mod openapi;
mod types;

pub use types::*;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use netchain_execution::account_key;
use netchain_node::Shared;
use netchain_types::{codec, Digest, PublicKey, SignedTransaction, TxOutcome};
use std::sync::Arc;

/// An API error: HTTP status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Largest request body (a full batch of hex-encoded transactions fits).
const BODY_BYTES_MAX: usize = 16 << 20;

/// The router of all endpoints.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/batch", post(submit_batch))
        .route("/v1/transactions/bulk", post(submit_bulk))
        .route("/v1/transactions/{id}", get(tx_status))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/status", get(status))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/blocks", get(block_list))
        .route("/v1/validators", get(validators))
        .route("/v1/events", get(events::events))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(explorer::routes())
        .merge(currency::routes())
        .merge(chains::routes())
        .merge(identity::routes())
        .route("/v1/auth/session", post(auth::open_session))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::guard,
        ))
        .layer(axum::Extension(Arc::new(auth::Auth::new(&shared))))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared)
}

/// Serves the API until the process ends.
pub async fn serve(shared: Arc<Shared>, address: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "api listening");
    axum::serve(listener, router(shared)).await
}

fn decode_tx(shared: &Shared, input: TxInput) -> Result<SignedTransaction, ApiError> {
    match input {
        TxInput::Hex(hex) => {
            let bytes = hex::decode(hex.trim_start_matches("0x"))
                .map_err(|e| ApiError::bad("malformed", format!("tx hex: {e}")))?;
            decode_tx(shared, TxInput::Bytes(bytes))
        }
        TxInput::Bytes(bytes) => {
            if bytes.len() > shared.tx_bytes_max {
                return Err(ApiError::bad(
                    "oversize",
                    format!("{} bytes, limit {}", bytes.len(), shared.tx_bytes_max),
                ));
            }
            codec::decode(&bytes, shared.tx_bytes_max)
                .map_err(|e| ApiError::bad("malformed", e.to_string()))
        }
        TxInput::Json(tx) => {
            let len = codec::encode(&tx).len();
            if len > shared.tx_bytes_max {
                return Err(ApiError::bad(
                    "oversize",
                    format!("{len} bytes, limit {}", shared.tx_bytes_max),
                ));
            }
            Ok(*tx)
        }
    }
}

/// Admits a transaction through the node's admission checks.
fn admit_error(e: netchain_node::AdmitError) -> ApiError {
    let status = match e.code() {
        "mempool_full" => StatusCode::SERVICE_UNAVAILABLE,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        "unregistered_sender" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

async fn submit(
    State(shared): State<Arc<Shared>>,
    axum::Extension(auth): axum::Extension<Arc<auth::Auth>>,
    body: Result<Json<SubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad("malformed", e.body_text()))?;
    let tx = decode_tx(&shared, req.into_input()?)?;
    let ok = shared.check_signatures(std::slice::from_ref(&tx));
    if ok[0] && !shared.ordering_only {
        auth.take_sender(&tx.tx.sender)?;
    }
    let tx_id = shared
        .admit_batch_checked(vec![tx], ok)
        .pop()
        .expect("one result")
        .map_err(admit_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SubmitResponse {
            tx_id,
            status: "pending".into(),
        }),
    ))
}

fn admit_all(
    shared: &Shared,
    auth: &auth::Auth,
    inputs: Vec<TxInput>,
) -> (usize, usize, Vec<BatchItem>) {
    let mut results = Vec::with_capacity(inputs.len());
    let (mut accepted, mut rejected) = (0, 0);
    // Decode everything, check all signatures in one batch, hold each authentic sender to its
    // rate (a forger naming someone else's key cannot use up that key's rate), then admit.
    let decoded: Vec<Result<SignedTransaction, ApiError>> =
        inputs.into_iter().map(|i| decode_tx(shared, i)).collect();
    let good: Vec<SignedTransaction> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().cloned())
        .collect();
    let ok = shared.check_signatures(&good);
    let mut limited = Vec::with_capacity(good.len());
    for (tx, ok) in good.iter().zip(&ok) {
        // An ordering-only chain checks no signature, so a sender is only a name there: no
        // per-sender rate can hold anyone (the per-client request rate still does).
        limited.push(if *ok && !shared.ordering_only {
            auth.take_sender(&tx.tx.sender).err()
        } else {
            None
        });
    }
    let (admit_txs, admit_ok): (Vec<_>, Vec<_>) = good
        .into_iter()
        .zip(ok)
        .zip(&limited)
        .filter(|(_, l)| l.is_none())
        .map(|(pair, _)| pair)
        .unzip();
    let mut admitted_ok = shared.admit_batch_checked(admit_txs, admit_ok).into_iter();
    let mut admitted = limited.into_iter().map(|l| match l {
        Some(e) => Err(e),
        None => admitted_ok
            .next()
            .expect("one admission result per transaction within its rate")
            .map_err(admit_error),
    });
    for d in decoded {
        let result = d.and_then(|_| {
            admitted
                .next()
                .expect("one admission result per decoded transaction")
        });
        results.push(match result {
            Ok(id) => {
                accepted += 1;
                BatchItem {
                    tx_id: Some(id),
                    accepted: true,
                    code: None,
                    message: None,
                }
            }
            Err(e) => {
                rejected += 1;
                BatchItem {
                    tx_id: None,
                    accepted: false,
                    code: Some(e.code.to_string()),
                    message: Some(e.message),
                }
            }
        });
    }
    (accepted, rejected, results)
}

async fn submit_batch(
    State(shared): State<Arc<Shared>>,
    axum::Extension(auth): axum::Extension<Arc<auth::Auth>>,
    body: Result<Json<BatchRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<BatchResponse> {
    let Json(req) = body.map_err(|e| ApiError::bad("malformed", e.body_text()))?;
    let inputs = req.into_inputs();
    if inputs.len() > shared.submit_batch_max {
        return Err(ApiError::bad(
            "oversize",
            format!(
                "{} transactions, limit {}",
                inputs.len(),
                shared.submit_batch_max
            ),
        ));
    }
    // Signature checks and state reads are CPU and disk work: keep them off the async workers
    // that also carry consensus and the network.
    let worker = shared.clone();
    let (accepted, rejected, results) =
        tokio::task::spawn_blocking(move || admit_all(&worker, &auth, inputs))
            .await
            .map_err(ApiError::internal)?;
    Ok(Json(BatchResponse {
        accepted,
        rejected,
        results,
    }))
}

/// `POST /v1/transactions/bulk`: the binary submit path for load generators and gateways. The
/// body is a sequence of frames, each a 4-byte little-endian length and that many bytes of a
/// transaction's canonical (borsh) encoding; `Content-Type` is not looked at. A body that does
/// not split into whole frames, or holds more than the batch limit, is refused whole. The answer
/// lists only refused transactions (by position), so it stays small when most are accepted.
async fn submit_bulk(
    State(shared): State<Arc<Shared>>,
    axum::Extension(auth): axum::Extension<Arc<auth::Auth>>,
    body: axum::body::Bytes,
) -> ApiResult<types::BulkResponse> {
    let mut inputs = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        if inputs.len() >= shared.submit_batch_max {
            return Err(ApiError::bad(
                "oversize",
                format!("more than {} transactions", shared.submit_batch_max),
            ));
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(ApiError::bad("malformed", "a frame's length is cut short"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(ApiError::bad(
                "malformed",
                format!(
                    "frame {} claims {len} bytes, {} left",
                    inputs.len(),
                    tail.len()
                ),
            ));
        }
        inputs.push(TxInput::Bytes(tail[..len].to_vec()));
        rest = &tail[len..];
    }
    let worker = shared.clone();
    let (accepted, rejected, results) =
        tokio::task::spawn_blocking(move || admit_all(&worker, &auth, inputs))
            .await
            .map_err(ApiError::internal)?;
    let refused = results
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.accepted)
        .map(|(index, r)| types::BulkRefusal {
            index,
            code: r.code.unwrap_or_default(),
            message: r.message.unwrap_or_default(),
        })
        .collect();
    Ok(Json(types::BulkResponse {
        accepted,
        rejected,
        refused,
    }))
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| ApiError::bad("malformed", format!("{what}: {e}")))
}

async fn tx_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<TxStatusResponse> {
    let id: Digest = parse("transaction id", &id)?;
    if let Some(r) = shared.store.receipt(&id).map_err(ApiError::internal)? {
        let tx = shared
            .store
            .block_at(r.height)
            .map_err(ApiError::internal)?
            .map(|b| shared.store.block_transaction(&b, r.index as usize))
            .transpose()
            .map_err(ApiError::internal)?
            .flatten();
        let (status, code, message) = match r.outcome {
            TxOutcome::Applied => ("committed", None, None),
            TxOutcome::Rejected { code, message } => ("rejected", Some(code), Some(message)),
        };
        return Ok(Json(TxStatusResponse {
            tx_id: id,
            status: status.into(),
            height: Some(r.height),
            index: Some(r.index),
            code,
            message,
            tx,
        }));
    }
    if shared.mempool.lock().expect("mempool lock").contains(&id) {
        return Ok(Json(TxStatusResponse {
            tx_id: id,
            status: "pending".into(),
            height: None,
            index: None,
            code: None,
            message: None,
            tx: None,
        }));
    }
    Err(ApiError::not_found(format!("transaction {id} unknown")))
}

async fn account(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<AccountResponse> {
    let pk: PublicKey = parse("account key", &key)?;
    let height = shared.status().height;
    let acct = shared
        .executor
        .account(&pk, height)
        .map_err(ApiError::internal)?;
    let proof = if q.proof.unwrap_or(false) {
        let cert = required_checkpoint(&shared, height)?;
        let (value, proof) = shared
            .executor
            .state()
            .get_with_proof(&account_key(&pk), cert.checkpoint.height)
            .map_err(ApiError::internal)?;
        Some(AccountProof {
            height: cert.checkpoint.height,
            account_hex: value.map(hex::encode),
            state_proof_hex: hex::encode(proof.0),
            checkpoint: cert,
        })
    } else {
        None
    };
    Ok(Json(AccountResponse {
        public_key: pk,
        balance: acct.balance,
        nonce: acct.nonce,
        height,
        proof,
    }))
}

/// The newest certified checkpoint at or below `executed`: a quorum may certify a height this
/// node has not executed yet, and a proof needs the state of that height here.
pub(crate) fn provable_checkpoint(
    shared: &Shared,
    executed: u64,
) -> Result<Option<netchain_types::CertifiedCheckpoint>, ApiError> {
    netchain_execution::relay::newest_executed_checkpoint(&shared.store, executed)
        .map_err(ApiError::internal)
}

/// [`provable_checkpoint`], or 503 `no_checkpoint` when there is none yet.
pub(crate) fn required_checkpoint(
    shared: &Shared,
    executed: u64,
) -> Result<netchain_types::CertifiedCheckpoint, ApiError> {
    provable_checkpoint(shared, executed)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_checkpoint",
            "no certified checkpoint this node has executed yet; retry shortly",
        )
    })
}

async fn block(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> ApiResult<BlockResponse> {
    let block = if key.len() == 64 {
        let id: Digest = parse("block id", &key)?;
        shared
            .store
            .block(&id)
            .map_err(ApiError::internal)?
            .filter(|b| {
                // Only committed blocks: the store also keeps proposals that may never commit.
                shared
                    .store
                    .block_at(b.height)
                    .ok()
                    .flatten()
                    .is_some_and(|c| c.id() == id)
            })
            .ok_or_else(|| ApiError::not_found(format!("no committed block {id}")))?
    } else {
        let height: u64 = if key == "latest" {
            shared.status().height
        } else {
            parse("height", &key)?
        };
        shared
            .store
            .block_at(height)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("no committed block at height {height}")))?
    };
    let height = block.height;
    let root = shared
        .executor
        .state()
        .root(height)
        .map_err(ApiError::internal)?
        .map(Digest);
    let txs = shared
        .store
        .block_transactions(&block)
        .map_err(ApiError::internal)?;
    Ok(Json(BlockResponse::from_block(&block, &txs, root)))
}

/// Most blocks in one list page.
const BLOCK_PAGE_MAX: u64 = 100;

async fn block_list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<BlockListQuery>,
) -> ApiResult<Vec<BlockSummary>> {
    let tip = shared.status().height;
    let top = q.before.map_or(tip, |b| b.saturating_sub(1).min(tip));
    let limit = q.limit.unwrap_or(20).clamp(1, BLOCK_PAGE_MAX);
    let mut out = Vec::new();
    let mut h = top;
    while out.len() < limit as usize {
        let Some(b) = shared.store.block_at(h).map_err(ApiError::internal)? else {
            break;
        };
        out.push(BlockSummary {
            height: b.height,
            id: b.id(),
            round: b.round,
            author: b.author,
            timestamp_ms: b.timestamp_ms,
            tx_count: b.tx_count(),
        });
        if h == 0 {
            break;
        }
        h -= 1;
    }
    Ok(Json(out))
}

async fn validators(State(shared): State<Arc<Shared>>) -> Json<Vec<ValidatorView>> {
    let now = netchain_node::now_ms();
    let views = shared
        .committee()
        .validators
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let seen = if i == shared.me as usize {
                now
            } else {
                shared
                    .network
                    .peer_last_seen_ms
                    .get(i)
                    .map_or(0, |s| s.load(std::sync::atomic::Ordering::Relaxed))
            };
            ValidatorView {
                index: i as u16,
                public_key: v.public_key,
                p2p_address: v.p2p_address.clone(),
                api_address: v.api_address.clone(),
                last_seen_ms_ago: (seen > 0).then(|| now.saturating_sub(seen)),
                online: seen > 0 && now.saturating_sub(seen) < 5_000,
            }
        })
        .collect();
    Json(views)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(&shared),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<StatusResponse> {
    let s = shared.status();
    let mempool_size = shared.mempool.lock().expect("mempool lock").len();
    Json(StatusResponse {
        chain_id: shared.chain_id.clone(),
        validator_index: shared.me,
        height: s.height,
        block_id: s.block_id,
        state_root: s.state_root,
        round: s.round,
        committed_txs_total: s.committed_txs_total,
        last_block_time_ms: s.last_block_time_ms,
        last_commit_time_ms: s.last_commit_time_ms,
        last_commit_latency_ms: s.last_commit_latency_ms,
        certified_height: s.certified_height,
        mempool_size,
        peers_connected: shared
            .network
            .peers_connected
            .load(std::sync::atomic::Ordering::Relaxed),
        validators: shared.committee().validators.clone(),
    })
}

async fn latest_checkpoint(
    State(shared): State<Arc<Shared>>,
) -> ApiResult<netchain_types::CertifiedCheckpoint> {
    shared
        .store
        .latest_checkpoint()
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no certified checkpoint yet"))
}
