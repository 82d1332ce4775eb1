//! Client access (Network ID): sessions opened with one-time access tokens, reads that can
//! require a session, and per-identity rate limits.
//!
//! A registered client signs an [`AccessToken`] for one node (offline: `netchain id token`) and
//! trades it once for a session (`POST /v1/auth/session`). The node refuses a token for another
//! node or chain, an expired one, one used before, and one whose client is not an active client
//! or device in the registry. A session is a bearer secret (`Authorization: Bearer <hex>`); each
//! request made with it is checked against the registry again (a revoked client's sessions stop
//! at once) and against the client's request rate. Where `reads = "registered"`, every read needs
//! a session. Submitted transactions are held to a per-sender rate as well. Every table is
//! bounded: expired entries go first; a table still full refuses new entries.

use crate::ApiError;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use netchain_config::{AccessConfig, ReadAccess};
use netchain_crypto::verify;
use netchain_node::{now_ms, Shared};
use netchain_types::identity::{AccessToken, TOKEN_LIFETIME_MAX_MS};
use netchain_types::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Sessions open at once at most.
const SESSIONS_MAX: usize = 10_000;
/// Used token nonces remembered (until their tokens expire) at most.
const USED_TOKENS_MAX: usize = 100_000;
/// Identities with a rate bucket at most.
const BUCKETS_MAX: usize = 100_000;
/// A session's life.
pub const SESSION_TTL_MS: u64 = 10 * 60_000;
/// Sessions one client may hold at once on one node.
const SESSIONS_PER_CLIENT_MAX: usize = 16;
/// Session openings per second on one node (each costs a signature check), bursts of twice that.
const OPENINGS_PER_SEC: u32 = 200;
/// How far a token's issue time may be ahead of this node's clock.
const TOKEN_CLOCK_SKEW_MS: u64 = 60_000;

/// `POST /v1/auth/session` body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The one-time token.
    pub token: AccessToken,
}

/// An opened session.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SessionResponse {
    /// The bearer secret (hex): `Authorization: Bearer <session>`.
    pub session: String,
    /// The client it belongs to.
    pub client: PublicKey,
    /// When it ends (ms since the Unix epoch).
    pub expires_ms: u64,
}

struct Session {
    client: PublicKey,
    expires_ms: u64,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<[u8; 32], Session>,
    used: HashMap<(PublicKey, [u8; 16]), u64>,
    buckets: HashMap<PublicKey, Bucket>,
}

/// The access state of one node's API.
pub struct Auth {
    cfg: AccessConfig,
    node: PublicKey,
    /// Tokens made before this (the node's start) are refused: the used-token table does not
    /// survive a restart.
    started_ms: u64,
    tables: Mutex<Tables>,
}

/// The bucket key of session openings (one for the whole node).
const OPENINGS: PublicKey = PublicKey([0; 32]);

impl Auth {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            cfg: shared.access.clone(),
            node: shared.committee().validators[shared.me as usize].public_key,
            started_ms: now_ms(),
            tables: Mutex::new(Tables::default()),
        }
    }

    /// Takes one request from `who`'s bucket (`per_sec` a second, bursts of twice that).
    fn take(&self, who: &PublicKey, per_sec: u32, now: u64) -> Result<(), ApiError> {
        if per_sec == 0 {
            return Ok(());
        }
        let rate = f64::from(per_sec);
        let burst = rate * 2.0;
        let mut t = self.tables.lock().expect("auth lock");
        if !t.buckets.contains_key(who) && t.buckets.len() >= BUCKETS_MAX {
            // A bucket that has refilled is the same as no bucket: drop those.
            t.buckets.retain(|_, b| {
                b.tokens + (now.saturating_sub(b.last_ms) as f64 / 1000.0) * rate < burst
            });
            if t.buckets.len() >= BUCKETS_MAX {
                return Err(rate_limited("too many identities are at their rate limit"));
            }
        }
        let b = t.buckets.entry(*who).or_insert(Bucket {
            tokens: burst,
            last_ms: now,
        });
        b.tokens = (b.tokens + (now.saturating_sub(b.last_ms) as f64 / 1000.0) * rate).min(burst);
        b.last_ms = now;
        if b.tokens < 1.0 {
            return Err(rate_limited(format!(
                "{who} is over its rate of {per_sec} per second"
            )));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// A transaction sender's share of the submission rate.
    pub(crate) fn take_sender(&self, sender: &PublicKey) -> Result<(), ApiError> {
        self.take(sender, self.cfg.sender_txs_per_sec, now_ms())
    }
}

fn rate_limited(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Whether `client` is an active client or device in this node's registry now.
fn client_active(shared: &Shared, client: &PublicKey) -> Result<bool, ApiError> {
    let height = shared.status().height;
    Ok(shared
        .executor
        .identity_standing(client, height, now_ms())
        .map_err(ApiError::internal)?
        .admits_client())
}

/// `POST /v1/auth/session`: trades a one-time token for a session.
pub(crate) async fn open_session(
    State(shared): State<Arc<Shared>>,
    Extension(auth): Extension<Arc<Auth>>,
    Json(req): Json<SessionRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let token = req.token;
    let now = now_ms();
    auth.take(&OPENINGS, OPENINGS_PER_SEC, now)?;
    if token.chain_id != shared.chain_id {
        return Err(unauthorized(
            "foreign_token",
            format!("the token is for chain {:?}", token.chain_id),
        ));
    }
    if token.node != auth.node {
        return Err(unauthorized(
            "foreign_token",
            "the token is for another node",
        ));
    }
    if token.expires_ms <= now {
        return Err(unauthorized("token_expired", "the token has expired"));
    }
    if token.expires_ms.saturating_sub(token.issued_ms) > TOKEN_LIFETIME_MAX_MS
        || token.issued_ms > now.saturating_add(TOKEN_CLOCK_SKEW_MS)
    {
        return Err(unauthorized(
            "token_expired",
            "tokens live at most five minutes from their issue time",
        ));
    }
    if token.issued_ms < auth.started_ms {
        return Err(unauthorized(
            "token_expired",
            "the token was made before this node started; make a new one",
        ));
    }
    verify(&token.client, &token.signing_message(), &token.signature)
        .map_err(|_| unauthorized("bad_signature", "the token's signature does not verify"))?;
    if !client_active(&shared, &token.client)? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unregistered_client",
            "the token's key is not an active client or device in the identity registry",
        ));
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(ApiError::internal)?;
    let expires_ms = now + SESSION_TTL_MS;
    let mut t = auth.tables.lock().expect("auth lock");
    let used_key = (token.client, token.nonce.0);
    if t.used.contains_key(&used_key) {
        return Err(unauthorized("token_replayed", "the token was used before"));
    }
    if t.used.len() >= USED_TOKENS_MAX {
        t.used.retain(|_, expires| *expires > now);
    }
    if t.sessions.len() >= SESSIONS_MAX {
        t.sessions.retain(|_, s| s.expires_ms > now);
    }
    let held = t
        .sessions
        .values()
        .filter(|s| s.client == token.client && s.expires_ms > now)
        .count();
    if held >= SESSIONS_PER_CLIENT_MAX {
        return Err(rate_limited(format!(
            "a client holds at most {SESSIONS_PER_CLIENT_MAX} sessions here"
        )));
    }
    if t.used.len() >= USED_TOKENS_MAX || t.sessions.len() >= SESSIONS_MAX {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            "the node holds as many sessions as it can; retry later",
        ));
    }
    t.used.insert(used_key, token.expires_ms);
    t.sessions.insert(
        secret,
        Session {
            client: token.client,
            expires_ms,
        },
    );
    Ok(Json(SessionResponse {
        session: hex::encode(secret),
        client: token.client,
        expires_ms,
    }))
}

/// Requests that never need a session: opening one, the node's liveness, and submitting
/// transactions (they are signed; where senders must be registered, execution checks them).
fn open_request(method: &Method, path: &str) -> bool {
    path == "/v1/auth/session"
        || path == "/v1/status"
        || path == "/metrics"
        || (method == Method::POST && path.starts_with("/v1/transactions"))
}

/// Checks the session (where one is given or required) and the identity's request rate.
pub(crate) async fn guard(
    State(shared): State<Arc<Shared>>,
    Extension(auth): Extension<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let needs_session =
        auth.cfg.reads == ReadAccess::Registered && !open_request(request.method(), &path);
    match bearer {
        Some(b) => {
            if let Err(e) = check_session(&shared, &auth, &b) {
                return e.into_response();
            }
        }
        None if needs_session => {
            return unauthorized(
                "session_required",
                "this node serves reads to registered clients only: open a session with a \
                 one-time token (POST /v1/auth/session) and send Authorization: Bearer <session>",
            )
            .into_response()
        }
        None => {}
    }
    next.run(request).await
}

impl Auth {
    /// Whether the session `bearer` still stands (exists, unexpired, client active); long
    /// responses (the event stream) ask again as they go.
    pub(crate) fn session_valid(&self, shared: &Shared, bearer: &str) -> bool {
        session_client(self, bearer)
            .is_ok_and(|client| client_active(shared, &client).unwrap_or(false))
    }
}

/// The client of an open, unexpired session.
fn session_client(auth: &Auth, bearer: &str) -> Result<PublicKey, ApiError> {
    let mut secret = [0u8; 32];
    hex::decode_to_slice(bearer, &mut secret)
        .map_err(|_| unauthorized("unknown_session", "malformed session"))?;
    let now = now_ms();
    let t = auth.tables.lock().expect("auth lock");
    match t.sessions.get(&secret) {
        Some(s) if s.expires_ms > now => Ok(s.client),
        Some(_) => Err(unauthorized("session_expired", "the session has ended")),
        None => Err(unauthorized("unknown_session", "no such session here")),
    }
}

fn check_session(shared: &Shared, auth: &Auth, bearer: &str) -> Result<(), ApiError> {
    let client = session_client(auth, bearer)?;
    let now = now_ms();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(bearer, &mut secret).expect("checked above");
    if !client_active(shared, &client)? {
        auth.tables
            .lock()
            .expect("auth lock")
            .sessions
            .remove(&secret);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unregistered_client",
            "the session's client is no longer active in the identity registry",
        ));
    }
    auth.take(&client, auth.cfg.client_requests_per_sec, now)
}
