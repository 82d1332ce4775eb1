//! Request and response bodies (shared with the client SDK).

use crate::ApiError;
use netchain_types::{
    Block, CertifiedCheckpoint, Digest, PublicKey, SignedTransaction, Validator, ValidatorIndex,
};
use serde::{Deserialize, Serialize};

/// Error body of every failed request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// A transaction given either as hex of its canonical encoding or as JSON.
#[derive(Clone, Debug)]
pub enum TxInput {
    /// Hex of the borsh encoding.
    Hex(String),
    /// Structured form.
    Json(Box<SignedTransaction>),
    /// The borsh encoding (bulk binary submission).
    Bytes(Vec<u8>),
}

/// Body of `POST /v1/transactions`: exactly one of `tx_hex` and `tx`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Hex of the canonical encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hex: Option<String>,
    /// Structured form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<SignedTransaction>,
}

impl SubmitRequest {
    pub(crate) fn into_input(self) -> Result<TxInput, ApiError> {
        match (self.tx_hex, self.tx) {
            (Some(h), None) => Ok(TxInput::Hex(h)),
            (None, Some(t)) => Ok(TxInput::Json(Box::new(t))),
            _ => Err(ApiError::bad(
                "malformed",
                "give exactly one of tx_hex and tx",
            )),
        }
    }
}

/// Answer to an accepted submission.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Transaction id.
    pub tx_id: Digest,
    /// Always "pending".
    pub status: String,
}

/// Body of `POST /v1/transactions/batch`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Hex encodings.
    #[serde(default)]
    pub txs_hex: Vec<String>,
    /// Structured forms.
    #[serde(default)]
    pub txs: Vec<SignedTransaction>,
}

impl BatchRequest {
    pub(crate) fn into_inputs(self) -> Vec<TxInput> {
        self.txs_hex
            .into_iter()
            .map(TxInput::Hex)
            .chain(self.txs.into_iter().map(|t| TxInput::Json(Box::new(t))))
            .collect()
    }
}

/// Per-transaction result of a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchItem {
    /// Id, when the transaction was accepted.
    pub tx_id: Option<Digest>,
    /// Whether it entered the mempool.
    pub accepted: bool,
    /// Error code when refused.
    pub code: Option<String>,
    /// Error message when refused.
    pub message: Option<String>,
}

/// Answer to a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Accepted count.
    pub accepted: usize,
    /// Refused count.
    pub rejected: usize,
    /// One entry per input, in order.
    pub results: Vec<BatchItem>,
}

/// Answer to a bulk binary submission: counts, and only the refused transactions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BulkResponse {
    /// Accepted count.
    pub accepted: usize,
    /// Refused count.
    pub rejected: usize,
    /// The refused ones, by position in the request.
    pub refused: Vec<BulkRefusal>,
}

/// One refused transaction of a bulk submission.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BulkRefusal {
    /// Position in the request (0-based).
    pub index: usize,
    /// Error code.
    pub code: String,
    /// Error message.
    pub message: String,
}

/// Status of a transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxStatusResponse {
    /// Id.
    pub tx_id: Digest,
    /// "pending", "committed" or "rejected".
    pub status: String,
    /// Height of the block that carried it.
    pub height: Option<u64>,
    /// Position in the block.
    pub index: Option<u32>,
    /// Rejection code.
    pub code: Option<String>,
    /// Rejection reason.
    pub message: Option<String>,
    /// The transaction itself, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<SignedTransaction>,
}

/// Query of `GET /v1/blocks`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockListQuery {
    /// Only blocks below this height (paging backwards); default: from the newest.
    pub before: Option<u64>,
    /// Page size (1..=100, default 20).
    pub limit: Option<u64>,
}

/// A line of the block list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockSummary {
    /// Height.
    pub height: u64,
    /// Id.
    pub id: Digest,
    /// Round.
    pub round: u64,
    /// Proposer.
    pub author: ValidatorIndex,
    /// Proposer timestamp.
    pub timestamp_ms: u64,
    /// Transaction count.
    pub tx_count: usize,
}

/// A validator as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorView {
    /// Index.
    pub index: ValidatorIndex,
    /// Key.
    pub public_key: PublicKey,
    /// P2P address.
    pub p2p_address: String,
    /// API address.
    pub api_address: String,
    /// Time since its last message reached this node (None: never).
    pub last_seen_ms_ago: Option<u64>,
    /// Heard from within the last 5 s.
    pub online: bool,
}

/// Query of `GET /v1/accounts/{key}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AccountQuery {
    /// Include a Merkle proof against the latest certified checkpoint.
    pub proof: Option<bool>,
}

/// A Merkle proof of an account against a certified checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountProof {
    /// Height of the checkpoint.
    pub height: u64,
    /// Borsh encoding (hex) of the account at that height, absent if it did not exist.
    pub account_hex: Option<String>,
    /// Borsh encoding (hex) of the sparse Merkle proof.
    pub state_proof_hex: String,
    /// The checkpoint signed by a quorum of validators.
    pub checkpoint: CertifiedCheckpoint,
}

/// An account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountResponse {
    /// Key.
    pub public_key: PublicKey,
    /// Balance at `height`.
    pub balance: u64,
    /// Nonce at `height`.
    pub nonce: u64,
    /// Executed height the values are from.
    pub height: u64,
    /// Proof, when asked for.
    pub proof: Option<AccountProof>,
}

/// A committed block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockResponse {
    /// Height.
    pub height: u64,
    /// Id.
    pub id: Digest,
    /// Round.
    pub round: u64,
    /// Parent id.
    pub parent_id: Digest,
    /// Proposer index.
    pub author: ValidatorIndex,
    /// Proposer timestamp.
    pub timestamp_ms: u64,
    /// Round of the parent's QC.
    pub qc_round: u64,
    /// Signers of the parent's QC.
    pub qc_signers: Vec<ValidatorIndex>,
    /// State root after executing this block.
    pub state_root: Option<Digest>,
    /// Transaction count.
    pub tx_count: usize,
    /// Transaction ids in order.
    pub transactions: Vec<Digest>,
}

impl BlockResponse {
    /// The view of a block with the state root after it.
    pub fn from_block(b: &Block, txs: &[SignedTransaction], state_root: Option<Digest>) -> Self {
        Self {
            height: b.height,
            id: b.id(),
            round: b.round,
            parent_id: b.parent_id,
            author: b.author,
            timestamp_ms: b.timestamp_ms,
            qc_round: b.qc.round,
            qc_signers: b.qc.votes.iter().map(|v| v.0).collect(),
            state_root,
            tx_count: txs.len(),
            transactions: txs.iter().map(|t| t.id()).collect(),
        }
    }
}

/// A node's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Chain id.
    pub chain_id: String,
    /// This validator's index.
    pub validator_index: ValidatorIndex,
    /// Last executed height.
    pub height: u64,
    /// Its block id.
    pub block_id: Digest,
    /// State root after it.
    pub state_root: Digest,
    /// Consensus round.
    pub round: u64,
    /// Transactions applied since genesis.
    pub committed_txs_total: u64,
    /// Proposer timestamp of the last block.
    pub last_block_time_ms: u64,
    /// When this node executed it.
    pub last_commit_time_ms: u64,
    /// Proposal-to-execution time of the last block.
    pub last_commit_latency_ms: u64,
    /// Height of the newest certified checkpoint.
    pub certified_height: u64,
    /// Transactions in the mempool.
    pub mempool_size: usize,
    /// Peers with a live outbound connection.
    pub peers_connected: u64,
    /// The committee.
    pub validators: Vec<Validator>,
}
