//! Read endpoints of the identity registry (Network ID): organizations, identities, and the
//! standing of a key, optionally proven against a certified checkpoint.

use crate::chains::ProofQuery;
use crate::{parse, required_checkpoint, ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use netchain_execution::identity::{
    key_index, member_key, org_key, standing_of, IdentityRecord, KeyEntry, OrgRecord, Standing,
    ORGS_KEY,
};
use netchain_node::{now_ms, Shared};
use netchain_types::{codec, CertifiedCheckpoint, PublicKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Organizations as `GET /v1/identity/orgs` lists them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrgsResponse {
    /// Height the values are from.
    pub height: u64,
    /// The organizations, in the order they were added.
    pub organizations: Vec<OrgRecord>,
}

/// An identity (`GET /v1/identity/orgs/{org}/identities/{name}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentityResponse {
    /// Height the value is from.
    pub height: u64,
    /// The record.
    pub record: IdentityRecord,
}

/// The standing of a key (`GET /v1/identity/keys/{key}?proof=true`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyResponse {
    /// The key.
    pub key: PublicKey,
    /// Height the answer is from (the proof's checkpoint height when a proof was asked for).
    pub height: u64,
    /// Active, unknown, suspended, revoked, rotated or expired, with the record.
    #[serde(flatten)]
    pub standing: Standing,
    /// The proof, when asked for.
    pub proof: Option<KeyProof>,
}

/// Proof of a key's standing: its index entry (or its absence) and its identity record, both
/// against the state root of a checkpoint a quorum of the committee signed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyProof {
    /// The checkpoint.
    pub checkpoint: CertifiedCheckpoint,
    /// Borsh of the index entry (hex), absent for an unregistered key.
    pub entry_hex: Option<String>,
    /// Proof of the index entry or of its absence (hex).
    pub entry_proof_hex: String,
    /// Borsh of the identity record (hex), when the key is registered.
    pub record_hex: Option<String>,
    /// Proof of the identity record (hex).
    pub record_proof_hex: Option<String>,
    /// Block time of the checkpoint's block (expiry is judged against it).
    pub block_time_ms: u64,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/identity/orgs", get(orgs))
        .route("/v1/identity/orgs/{org}", get(org))
        .route("/v1/identity/orgs/{org}/identities/{name}", get(identity))
        .route("/v1/identity/keys/{key}", get(key))
}

fn no_registry() -> ApiError {
    ApiError::not_found("this chain keeps no identity registry")
}

fn require_registry(shared: &Shared, height: u64) -> Result<(), ApiError> {
    match shared.executor.has_identity_registry(height) {
        Ok(true) => Ok(()),
        Ok(false) => Err(no_registry()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

fn org_record(shared: &Shared, id: &str, height: u64) -> Result<OrgRecord, ApiError> {
    shared
        .executor
        .module_value(&org_key(id), height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no organization {id:?}")))
}

async fn orgs(State(shared): State<Arc<Shared>>) -> ApiResult<OrgsResponse> {
    let height = shared.status().height;
    let ids: Vec<String> = shared
        .executor
        .module_value(ORGS_KEY, height)
        .map_err(ApiError::internal)?
        .ok_or_else(no_registry)?;
    let mut organizations = Vec::with_capacity(ids.len());
    for id in ids {
        organizations.push(org_record(&shared, &id, height)?);
    }
    Ok(Json(OrgsResponse {
        height,
        organizations,
    }))
}

async fn org(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<OrgRecord> {
    let height = shared.status().height;
    require_registry(&shared, height)?;
    Ok(Json(org_record(&shared, &id, height)?))
}

async fn identity(
    State(shared): State<Arc<Shared>>,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<IdentityResponse> {
    let height = shared.status().height;
    require_registry(&shared, height)?;
    let record = shared
        .executor
        .module_value(&member_key(&org, &name), height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no identity {org}/{name}")))?;
    Ok(Json(IdentityResponse { height, record }))
}

/// `GET /v1/identity/keys/{key}?proof=true`: with a proof, the answer is as of the newest
/// certified checkpoint this node has executed (and its block time).
async fn key(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(q): Query<ProofQuery>,
) -> ApiResult<KeyResponse> {
    let key: PublicKey = parse("key", &key)?;
    let executed = shared.status().height;
    require_registry(&shared, executed)?;
    if !q.proof.unwrap_or(false) {
        let standing = shared
            .executor
            .identity_standing(&key, executed, now_ms())
            .map_err(ApiError::internal)?;
        return Ok(Json(KeyResponse {
            key,
            height: executed,
            standing,
            proof: None,
        }));
    }
    let cert = required_checkpoint(&shared, executed)?;
    let height = cert.checkpoint.height;
    let block_time_ms = shared
        .store
        .block_at(height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("block {height} missing from the store")))?
        .timestamp_ms;
    let state = shared.executor.state();
    let (entry, entry_proof) = state
        .get_with_proof(&key_index(&key), height)
        .map_err(ApiError::internal)?;
    let (mut record_hex, mut record_proof_hex, mut record) = (None, None, None);
    if let Some(bytes) = &entry {
        let e: KeyEntry = codec::decode(bytes, 1 << 10).map_err(ApiError::internal)?;
        let (value, proof) = state
            .get_with_proof(&member_key(&e.org, &e.name), height)
            .map_err(ApiError::internal)?;
        let value = value.ok_or_else(|| ApiError::internal("index entry without a record"))?;
        record =
            Some(codec::decode::<IdentityRecord>(&value, 1 << 16).map_err(ApiError::internal)?);
        record_hex = Some(hex::encode(&value));
        record_proof_hex = Some(hex::encode(proof.0));
    }
    Ok(Json(KeyResponse {
        key,
        height,
        standing: standing_of(&key, record, block_time_ms),
        proof: Some(KeyProof {
            checkpoint: cert,
            entry_hex: entry.map(hex::encode),
            entry_proof_hex: hex::encode(entry_proof.0),
            record_hex,
            record_proof_hex,
            block_time_ms,
        }),
    }))
}
