//! Read endpoints of the root chain's registry (service chains, epochs, anchors), and state
//! proofs at a height (what a cross-chain proof needs from a service chain).

use crate::{parse, required_checkpoint, ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use netchain_execution::registry::{
    anchor_key, chain_key, AnchorRecord, ChainRecord, CHAIN_LIST_KEY,
};
use netchain_node::Shared;
use netchain_types::{CertifiedCheckpoint, Digest};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A registered chain as `GET /v1/chains` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainView {
    /// The record.
    #[serde(flatten)]
    pub record: ChainRecord,
    /// Root height the values are from.
    pub height: u64,
}

/// An anchor, optionally with a proof against a certified root checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnchorResponse {
    /// Service chain.
    pub chain_id: String,
    /// The anchor.
    pub anchor: AnchorRecord,
    /// Proof that the root's state holds it, when asked for.
    pub proof: Option<RootProof>,
}

/// A value in the root's state, proven against a checkpoint a quorum of the root signed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootProof {
    /// The root checkpoint.
    pub checkpoint: CertifiedCheckpoint,
    /// Borsh of the value (hex).
    pub value_hex: String,
    /// The state proof (hex).
    pub state_proof_hex: String,
    /// Borsh of the chain's registry record at the same checkpoint (hex): its flag and epochs.
    #[serde(default)]
    pub record_hex: Option<String>,
    /// The record's state proof (hex).
    #[serde(default)]
    pub record_proof_hex: Option<String>,
}

/// A state value at a height with its proof against that height's state root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateProofResponse {
    /// Height.
    pub height: u64,
    /// State root at that height.
    pub state_root: Digest,
    /// Key (hex).
    pub key_hex: String,
    /// Value (hex), absent when the key is not set.
    pub value_hex: Option<String>,
    /// The proof (hex).
    pub state_proof_hex: String,
}

/// Query with an optional proof.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    /// Include a proof.
    pub proof: Option<bool>,
}

/// Query of `GET /v1/state/proof`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// Key (hex).
    pub key: String,
    /// Executed height (default: latest).
    pub height: Option<u64>,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/chains", get(list))
        .route("/v1/chains/{id}", get(chain))
        .route("/v1/chains/{id}/anchors/{height}", get(anchor))
        .route("/v1/state/proof", get(state_proof))
}

fn record(shared: &Shared, id: &str, height: u64) -> Result<ChainRecord, ApiError> {
    shared
        .executor
        .module_value(&chain_key(id), height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("chain {id:?} is not registered here")))
}

async fn list(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<ChainView>> {
    let height = shared.status().height;
    let ids: Vec<String> = shared
        .executor
        .module_value(CHAIN_LIST_KEY, height)
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(ChainView {
            record: record(&shared, &id, height)?,
            height,
        });
    }
    Ok(Json(out))
}

async fn chain(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<ChainView> {
    let height = shared.status().height;
    Ok(Json(ChainView {
        record: record(&shared, &id, height)?,
        height,
    }))
}

/// `GET /v1/chains/{id}/anchors/{height|latest}?proof=true`: the proof is against the newest
/// root checkpoint this node has executed.
async fn anchor(
    State(shared): State<Arc<Shared>>,
    Path((id, which)): Path<(String, String)>,
    Query(q): Query<ProofQuery>,
) -> ApiResult<AnchorResponse> {
    let executed = shared.status().height;
    let rec = record(&shared, &id, executed)?;
    let at = if which == "latest" {
        rec.last_anchor
            .as_ref()
            .map(|a| a.height)
            .ok_or_else(|| ApiError::not_found(format!("chain {id} has no anchor yet")))?
    } else {
        parse::<u64>("height", &which)?
    };
    let key = anchor_key(&id, at);
    let anchor: AnchorRecord = shared
        .executor
        .module_value(&key, executed)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no anchor of {id} at height {at}")))?;
    let proof = if q.proof.unwrap_or(false) {
        let cert = required_checkpoint(&shared, executed)?;
        let (value, proof) = shared
            .executor
            .state()
            .get_with_proof(&key, cert.checkpoint.height)
            .map_err(ApiError::internal)?;
        let value = value.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_checkpoint",
                "the anchor is newer than the newest certified checkpoint; retry shortly",
            )
        })?;
        let (record, record_proof) = shared
            .executor
            .state()
            .get_with_proof(&chain_key(&id), cert.checkpoint.height)
            .map_err(ApiError::internal)?;
        Some(RootProof {
            checkpoint: cert,
            value_hex: hex::encode(value),
            state_proof_hex: hex::encode(proof.0),
            record_hex: record.map(hex::encode),
            record_proof_hex: Some(hex::encode(record_proof.0)),
        })
    } else {
        None
    };
    Ok(Json(AnchorResponse {
        chain_id: id,
        anchor,
        proof,
    }))
}

async fn state_proof(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StateQuery>,
) -> ApiResult<StateProofResponse> {
    let executed = shared.status().height;
    let height = q.height.unwrap_or(executed);
    if height > executed {
        return Err(ApiError::not_found(format!(
            "height {height} is not executed yet (latest {executed})"
        )));
    }
    let key = hex::decode(&q.key).map_err(|e| ApiError::bad("malformed", format!("key: {e}")))?;
    if key.is_empty() || key.len() > 256 {
        return Err(ApiError::bad("malformed", "key: 1 to 256 bytes"));
    }
    let root = shared
        .executor
        .state()
        .root(height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no state at height {height}")))?;
    let (value, proof) = shared
        .executor
        .state()
        .get_with_proof(&key, height)
        .map_err(ApiError::internal)?;
    Ok(Json(StateProofResponse {
        height,
        state_root: Digest(root),
        key_hex: q.key.to_lowercase(),
        value_hex: value.map(hex::encode),
        state_proof_hex: hex::encode(proof.0),
    }))
}
