//! Rust SDK for a netchain node's HTTP API, used by the CLI, the load generator and tests.
//!
//! Design note: a thin typed wrapper over the JSON API (the request and response types are the
//! API crate's own), plus light-client verification: an account proof is checked with nothing but
//! the committee's public keys.

use netchain_api::{
    AccountResponse, BatchRequest, BatchResponse, BlockResponse, ErrorBody, StatusResponse,
    SubmitRequest, SubmitResponse, TxStatusResponse,
};
use netchain_consensus::verify_checkpoint_cert;
use netchain_execution::account_key;
use netchain_storage::StateProof;
use netchain_types::{codec, Account, Committee, Digest, PublicKey, SignedTransaction};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A client-side error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not complete.
    #[error("http: {0}")]
    Http(String),
    /// The node answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Reason.
        message: String,
    },
    /// The answer did not decode.
    #[error("bad response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, if the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one node.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Session secret sent as `Authorization: Bearer` (nodes that serve registered clients).
    session: Option<String>,
}

impl Client {
    /// A client of the node whose API listens on `address` (`host:port` or a URL).
    pub fn new(address: &str) -> Self {
        let base = if address.starts_with("http") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            base,
            http,
            session: None,
        }
    }

    /// This client, sending `session` with every request.
    pub fn with_session(mut self, session: &str) -> Self {
        self.session = Some(session.to_string());
        self
    }

    /// Signs a one-time access token for the node this client talks to, valid for `valid_ms`.
    /// The node's validator key and chain come from its `/v1/status`: trust on first use. A
    /// caller that knows the node's key (from the genesis) uses [`access_token_for`] instead,
    /// so a server posing as that node cannot obtain a token for it.
    pub async fn access_token(
        &self,
        client: &netchain_crypto::Keypair,
        valid_ms: u64,
    ) -> Result<netchain_types::identity::AccessToken, ClientError> {
        let status = self.status().await?;
        let node = status
            .validators
            .get(status.validator_index as usize)
            .ok_or_else(|| ClientError::Decode("status names no validator key".into()))?
            .public_key;
        access_token_for(client, &status.chain_id, node, valid_ms)
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Trades a one-time token for a session (`POST /v1/auth/session`).
    pub async fn open_session(
        &self,
        token: &netchain_types::identity::AccessToken,
    ) -> Result<netchain_api::auth::SessionResponse, ClientError> {
        self.post(
            "/v1/auth/session",
            &netchain_api::auth::SessionRequest {
                token: token.clone(),
            },
        )
        .await
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.session {
            Some(s) => req.bearer_auth(s),
            None => req,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn parse<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                code: "http".into(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::parse(resp).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .authorized(self.http.post(format!("{}{path}", self.base)))
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::parse(resp).await
    }

    /// Submits one transaction.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<SubmitResponse, ClientError> {
        let body = SubmitRequest {
            tx_hex: Some(hex::encode(codec::encode(tx))),
            tx: None,
        };
        self.post("/v1/transactions", &body).await
    }

    /// Submits many transactions in one binary request (`POST /v1/transactions/bulk`): the
    /// answer lists only the refused ones, by position.
    pub async fn submit_bulk(
        &self,
        txs: &[SignedTransaction],
    ) -> Result<netchain_api::BulkResponse, ClientError> {
        let mut body = Vec::with_capacity(txs.len() * 200);
        for tx in txs {
            let bytes = codec::encode(tx);
            body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            body.extend_from_slice(&bytes);
        }
        self.submit_bulk_body(body).await
    }

    /// [`Client::submit_bulk`] with the body already framed: each transaction's canonical
    /// encoding after its 4-byte little-endian length.
    pub async fn submit_bulk_body(
        &self,
        body: Vec<u8>,
    ) -> Result<netchain_api::BulkResponse, ClientError> {
        let resp = self
            .authorized(
                self.http
                    .post(format!("{}/v1/transactions/bulk", self.base))
                    .header("content-type", "application/octet-stream"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::parse(resp).await
    }

    /// Submits many transactions in one request.
    pub async fn submit_batch(
        &self,
        txs: &[SignedTransaction],
    ) -> Result<BatchResponse, ClientError> {
        let body = BatchRequest {
            txs_hex: txs.iter().map(|t| hex::encode(codec::encode(t))).collect(),
            txs: Vec::new(),
        };
        self.post("/v1/transactions/batch", &body).await
    }

    /// Status of a transaction; `None` if the node does not know it.
    pub async fn tx_status(&self, id: &Digest) -> Result<Option<TxStatusResponse>, ClientError> {
        match self.get(&format!("/v1/transactions/{id}")).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.code() == Some("not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An account, optionally with its proof.
    pub async fn account(
        &self,
        pk: &PublicKey,
        proof: bool,
    ) -> Result<AccountResponse, ClientError> {
        self.get(&format!("/v1/accounts/{pk}?proof={proof}")).await
    }

    /// A committed block; `None` if not (yet) committed.
    pub async fn block(&self, height: u64) -> Result<Option<BlockResponse>, ClientError> {
        match self.get(&format!("/v1/blocks/{height}")).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.code() == Some("not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status").await
    }

    /// Raw GET of a path, for tools that print JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.get(path).await
    }

    /// Typed GET of a path (the currency and voucher endpoints, for example).
    pub async fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get(path).await
    }

    /// Opens the event stream (`GET /v1/events?{query}`), e.g. `type=tx&cursor=12:0`.
    pub async fn events(&self, query: &str) -> Result<EventStream, ClientError> {
        // The stream lives as long as it is read: no overall timeout, only for connecting.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self
            .authorized(http.get(format!("{}/v1/events?{query}", self.base)))
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(Self::parse::<serde_json::Value>(resp)
                .await
                .err()
                .unwrap_or_else(|| ClientError::Http("event stream refused".into())));
        }
        Ok(EventStream {
            resp,
            buf: String::new(),
        })
    }
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEvent {
    /// Cursor (`height:index`).
    pub id: String,
    /// `block`, `tx` or `resume`.
    pub kind: String,
    /// JSON data.
    pub data: String,
}

/// An open event stream.
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

/// Largest event the stream reader buffers.
const EVENT_BYTES_MAX: usize = 1 << 20;

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ClientError> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut ev = StreamEvent {
                    id: String::new(),
                    kind: String::new(),
                    data: String::new(),
                };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.kind = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.trim());
                    }
                }
                if ev.data.is_empty() {
                    continue; // keep-alive comment
                }
                return Ok(Some(ev));
            }
            if self.buf.len() > EVENT_BYTES_MAX {
                return Err(ClientError::Decode("event larger than 1 MiB".into()));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::Http(e.to_string())),
            }
        }
    }
}

/// A verified account value: the checkpoint height and the account (None if absent there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// Height of the certified checkpoint the proof is against.
    pub height: u64,
    /// State root of that checkpoint.
    pub state_root: Digest,
    /// The account at that height.
    pub account: Option<Account>,
}

/// Checks an account proof using only the committee's keys: the checkpoint must carry a quorum of
/// valid signatures, and the Merkle proof must tie the account value to its state root.
pub fn verify_account_proof(
    committee: &Committee,
    chain_id: &str,
    pk: &PublicKey,
    resp: &AccountResponse,
) -> Result<VerifiedAccount, String> {
    let proof = resp.proof.as_ref().ok_or("response carries no proof")?;
    let cp = &proof.checkpoint.checkpoint;
    if cp.chain_id != chain_id {
        return Err(format!("checkpoint is for chain {:?}", cp.chain_id));
    }
    if cp.height != proof.height {
        return Err("proof height differs from the checkpoint's".into());
    }
    verify_checkpoint_cert(committee, &proof.checkpoint).map_err(|e| e.to_string())?;
    let value = match &proof.account_hex {
        Some(h) => Some(hex::decode(h).map_err(|e| format!("account hex: {e}"))?),
        None => None,
    };
    let state_proof =
        StateProof(hex::decode(&proof.state_proof_hex).map_err(|e| format!("proof hex: {e}"))?);
    state_proof
        .verify(cp.state_root.0, &account_key(pk), value.as_deref())
        .map_err(|e| format!("Merkle proof: {e}"))?;
    let account = match value {
        Some(bytes) => Some(codec::decode::<Account>(&bytes, 64).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(VerifiedAccount {
        height: cp.height,
        state_root: cp.state_root,
        account,
    })
}

/// An account of a service chain, proven through the root chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrossChainAccount {
    /// Root checkpoint height the proof goes through.
    pub root_height: u64,
    /// Service-chain height of the anchor.
    pub height: u64,
    /// Service-chain state root at that height (as the root anchored it).
    pub state_root: Digest,
    /// The account there (None: absent).
    pub account: Option<Account>,
    /// The validator-set epoch that certified the anchor.
    pub epoch: u64,
}

/// Checks that account `pk` of service chain `chain_id` has the given value in a checkpoint the
/// root chain anchored, using nothing but the root committee's keys: the root checkpoint carries
/// a quorum of root signatures; a Merkle proof ties the anchor record (service height, block,
/// state root) to that root checkpoint's state; a second Merkle proof ties the account to the
/// anchored service state root.
///
/// The root's record of the chain is proven at the same root checkpoint: a chain the root has
/// flagged (conflicting certified checkpoints, more than f faulty validators) is refused. A root
/// checkpoint below `min_root_height` is refused as too old (a root node may serve an older
/// anchor; the caller says how fresh it needs the answer).
pub fn verify_cross_chain_account(
    root_committee: &Committee,
    root_chain_id: &str,
    chain_id: &str,
    pk: &PublicKey,
    min_root_height: u64,
    anchor: &netchain_api::chains::AnchorResponse,
    state: &netchain_api::chains::StateProofResponse,
) -> Result<CrossChainAccount, String> {
    use netchain_execution::registry::{anchor_key, chain_key, AnchorRecord, ChainRecord};
    let proof = anchor
        .proof
        .as_ref()
        .ok_or("the anchor carries no root proof")?;
    let root = &proof.checkpoint.checkpoint;
    if root.chain_id != root_chain_id {
        return Err(format!("root checkpoint is for chain {:?}", root.chain_id));
    }
    verify_checkpoint_cert(root_committee, &proof.checkpoint)
        .map_err(|e| format!("root checkpoint: {e}"))?;
    if root.height < min_root_height {
        return Err(format!(
            "the root checkpoint is at height {}, older than the minimum {min_root_height}",
            root.height
        ));
    }
    let chain_bytes = hex::decode(
        proof
            .record_hex
            .as_deref()
            .ok_or("the root proof carries no record of the chain")?,
    )
    .map_err(|e| format!("record hex: {e}"))?;
    let chain_proof = StateProof(
        hex::decode(proof.record_proof_hex.as_deref().unwrap_or_default())
            .map_err(|e| format!("record proof hex: {e}"))?,
    );
    chain_proof
        .verify(root.state_root.0, &chain_key(chain_id), Some(&chain_bytes))
        .map_err(|e| format!("the root does not hold this chain record: {e}"))?;
    let chain: ChainRecord =
        codec::decode(&chain_bytes, 1 << 20).map_err(|e| format!("chain record: {e}"))?;
    if chain.flagged {
        return Err(format!(
            "{chain_id} is flagged on the root: conflicting certified checkpoints were seen"
        ));
    }
    let record_bytes = hex::decode(&proof.value_hex).map_err(|e| format!("anchor hex: {e}"))?;
    let record: AnchorRecord =
        codec::decode(&record_bytes, 4_096).map_err(|e| format!("anchor record: {e}"))?;
    let root_proof =
        StateProof(hex::decode(&proof.state_proof_hex).map_err(|e| format!("proof hex: {e}"))?);
    root_proof
        .verify(
            root.state_root.0,
            &anchor_key(chain_id, record.height),
            Some(&record_bytes),
        )
        .map_err(|e| format!("the root does not hold this anchor: {e}"))?;
    if state.height != record.height || state.state_root != record.state_root {
        return Err(format!(
            "the service proof is for height {} (root {}), the anchor for {} (root {})",
            state.height, state.state_root, record.height, record.state_root
        ));
    }
    let value = match &state.value_hex {
        Some(h) => Some(hex::decode(h).map_err(|e| format!("account hex: {e}"))?),
        None => None,
    };
    let service_proof =
        StateProof(hex::decode(&state.state_proof_hex).map_err(|e| format!("proof hex: {e}"))?);
    service_proof
        .verify(record.state_root.0, &account_key(pk), value.as_deref())
        .map_err(|e| format!("the anchored service state does not hold this account: {e}"))?;
    let account = match value {
        Some(bytes) => Some(codec::decode::<Account>(&bytes, 64).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(CrossChainAccount {
        root_height: root.height,
        height: record.height,
        state_root: record.state_root,
        account,
        epoch: record.epoch,
    })
}

/// A one-time access token signed by `client` for the node whose validator key is `node` on
/// chain `chain_id`, valid for `valid_ms` from now.
pub fn access_token_for(
    client: &netchain_crypto::Keypair,
    chain_id: &str,
    node: PublicKey,
    valid_ms: u64,
) -> Result<netchain_types::identity::AccessToken, getrandom::Error> {
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut token = netchain_types::identity::AccessToken {
        chain_id: chain_id.to_string(),
        client: client.public(),
        node,
        nonce: netchain_types::Reference(nonce),
        issued_ms: now,
        expires_ms: now.saturating_add(valid_ms),
        signature: Default::default(),
    };
    token.signature = client.sign(&token.signing_message());
    Ok(token)
}

/// Checks a key's standing in the identity registry of chain `chain_id` from a
/// `GET /v1/identity/keys/{key}?proof=true` answer, with nothing but that chain's committee
/// keys: the checkpoint carries a quorum of signatures; Merkle proofs tie the key's index entry
/// (or its absence) and its identity record to the checkpoint's state root. The standing is
/// recomputed from the proven values. The answer must be about `key` and its height must be the
/// checkpoint's. Expiry is judged at `now_ms` or the block time the node reports, whichever is
/// later: the node cannot make an expired identity look active by reporting an old time.
pub fn verify_key_standing(
    committee: &Committee,
    chain_id: &str,
    key: &PublicKey,
    now_ms: u64,
    answer: &netchain_api::identity::KeyResponse,
) -> Result<netchain_execution::identity::Standing, String> {
    use netchain_execution::identity::{
        key_index, member_key, standing_of, IdentityRecord, KeyEntry,
    };
    if answer.key != *key {
        return Err(format!("the answer is about {}, not {key}", answer.key));
    }
    let proof = answer.proof.as_ref().ok_or("the answer carries no proof")?;
    let cp = &proof.checkpoint.checkpoint;
    if cp.chain_id != chain_id {
        return Err(format!("checkpoint is for chain {:?}", cp.chain_id));
    }
    if answer.height != cp.height {
        return Err(format!(
            "the answer claims height {}, its checkpoint is at {}",
            answer.height, cp.height
        ));
    }
    verify_checkpoint_cert(committee, &proof.checkpoint).map_err(|e| format!("checkpoint: {e}"))?;
    let hex_bytes = |h: &str, what: &str| hex::decode(h).map_err(|e| format!("{what} hex: {e}"));
    let entry = match &proof.entry_hex {
        Some(h) => Some(hex_bytes(h, "entry")?),
        None => None,
    };
    StateProof(hex_bytes(&proof.entry_proof_hex, "entry proof")?)
        .verify(cp.state_root.0, &key_index(&answer.key), entry.as_deref())
        .map_err(|e| format!("key index: {e}"))?;
    let record = match entry {
        None => None,
        Some(bytes) => {
            let e: KeyEntry = codec::decode(&bytes, 1 << 10).map_err(|e| e.to_string())?;
            let value = hex_bytes(
                proof.record_hex.as_deref().ok_or("no identity record")?,
                "record",
            )?;
            let record_proof = proof
                .record_proof_hex
                .as_deref()
                .ok_or("no identity record proof")?;
            StateProof(hex_bytes(record_proof, "record proof")?)
                .verify(cp.state_root.0, &member_key(&e.org, &e.name), Some(&value))
                .map_err(|e| format!("identity record: {e}"))?;
            Some(codec::decode::<IdentityRecord>(&value, 1 << 16).map_err(|e| e.to_string())?)
        }
    };
    let standing = standing_of(&answer.key, record, now_ms.max(proof.block_time_ms));
    let reported = standing_of(
        &answer.key,
        answer.standing.record().cloned(),
        now_ms.max(proof.block_time_ms),
    );
    if standing != reported {
        return Err(format!(
            "the node says {}, the proof says {}",
            answer.standing.label(),
            standing.label()
        ));
    }
    Ok(standing)
}

/// A committed transaction as the event stream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxEvent {
    /// Transaction id.
    pub id: Digest,
    /// Height of the block that carried it.
    pub height: u64,
    /// Whether it applied (on an ordering-only chain: was ordered; nothing executes there).
    pub applied: bool,
    /// Rejection code (`duplicate` for a copy without a receipt of its own).
    pub code: Option<String>,
}

impl Client {
    /// Follows committed transactions from `from_height` on, calling `on_tx` for each, for as
    /// long as the caller's task lives: reconnects after errors and resumes where a lagging
    /// subscription was cut.
    pub async fn follow_txs(&self, from_height: u64, on_tx: impl FnMut(TxEvent)) {
        self.follow_txs_of(from_height, None, on_tx).await
    }

    /// [`Client::follow_txs`], only for transactions `account` sends or receives (the node
    /// still reads every block's transactions, but hashes, looks up and sends only these).
    pub async fn follow_txs_of(
        &self,
        from_height: u64,
        account: Option<PublicKey>,
        mut on_tx: impl FnMut(TxEvent),
    ) {
        let filter = account.map(|a| format!("&account={a}")).unwrap_or_default();
        let cursor = format!("{from_height}:0");
        self.follow(&format!("type=tx{filter}"), cursor, |data| {
            let (Some(id), Some(status)) = (
                data["id"].as_str().and_then(|s| s.parse::<Digest>().ok()),
                data["status"].as_str(),
            ) else {
                return;
            };
            on_tx(TxEvent {
                id,
                height: data["height"].as_u64().unwrap_or(0),
                applied: status == "applied" || status == "ordered",
                code: data["code"].as_str().map(str::to_string),
            });
        })
        .await
    }

    /// Follows committed blocks from `from_height` on, calling `on_block(height, tx_count,
    /// proposer timestamp)` for each, for as long as the caller's task lives (reconnecting and
    /// resuming like [`Client::follow_txs`]). Reads no transaction on the node.
    pub async fn follow_blocks(&self, from_height: u64, mut on_block: impl FnMut(u64, u64, u64)) {
        let cursor = format!("{}:{}", from_height.saturating_sub(1), u32::MAX);
        self.follow("type=block", cursor, |data| {
            if let (Some(h), Some(n)) = (data["height"].as_u64(), data["tx_count"].as_u64()) {
                on_block(h, n, data["timestamp_ms"].as_u64().unwrap_or(0));
            }
        })
        .await
    }

    /// The event stream with `query`, after `cursor`, each event's JSON data to `on_event`, for
    /// as long as the caller's task lives: reconnects after errors (with a pause) and resumes
    /// from the cursor a lagging subscription is given.
    async fn follow(
        &self,
        query: &str,
        mut cursor: String,
        mut on_event: impl FnMut(&serde_json::Value),
    ) {
        loop {
            let Ok(mut stream) = self.events(&format!("{query}&cursor={cursor}")).await else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            };
            while let Ok(Some(ev)) = stream.next().await {
                let Ok(data) = serde_json::from_str::<serde_json::Value>(&ev.data) else {
                    continue;
                };
                if ev.kind == "resume" {
                    if let Some(c) = data["cursor"].as_str() {
                        cursor = c.to_string();
                    }
                    break;
                }
                cursor = ev.id;
                on_event(&data);
            }
            // The stream ended (node restart, or told to resume): not a tight reconnect loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
