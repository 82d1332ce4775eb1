//! The event stream: committed blocks, transactions and transfers as server-sent events, each
//! with a cursor `height:index` (index 0 is the block, index i+1 its i-th transaction). A client
//! that reconnects with `?cursor=` (or the `Last-Event-ID` header) gets exactly the events after
//! it, also across a node restart, because events are read back from committed storage rather
//! than kept in memory. A subscriber holds at most one block's events; one that falls more than
//! `LAG_HEIGHTS_MAX` behind the chain gets a `resume` event with its cursor and is closed.

use crate::ApiError;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use netchain_node::Shared;
use netchain_types::{PublicKey, TxOutcome};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Open event streams at most per node.
pub const SUBSCRIBERS_MAX: i64 = 512;
/// How far behind the chain a subscriber may fall before it is told to resume later.
pub const LAG_HEIGHTS_MAX: u64 = 10_000;

/// Position in the event sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// Block height.
    pub height: u64,
    /// 0 for the block, i + 1 for its i-th transaction.
    pub index: u32,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.height, self.index)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (h, i) = s.split_once(':').ok_or("cursor is height:index")?;
        Ok(Self {
            height: h.parse().map_err(|_| "bad cursor height")?,
            index: i.parse().map_err(|_| "bad cursor index")?,
        })
    }
}

/// Query of `GET /v1/events`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Resume after this cursor; absent: start with the next committed block.
    pub cursor: Option<String>,
    /// Only events touching this account (sender or recipient).
    pub account: Option<PublicKey>,
    /// Only this event type: `block` or `tx`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only transactions of this module (`transfer`, `currency`, `voucher`).
    pub module: Option<String>,
}

/// One event's data (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventData {
    /// Cursor of this event.
    pub cursor: String,
    /// `block` or `tx`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Block height.
    pub height: u64,
    /// Block id (block events) or transaction id (tx events).
    pub id: String,
    /// Block: transaction count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_count: Option<usize>,
    /// Block: proposer timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// Tx: module of the payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Tx: operation within the module (`transfer`, `pay`, `charge` ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Tx: sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<PublicKey>,
    /// Tx: recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PublicKey>,
    /// Tx: amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// Tx: `applied` or `rejected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Tx: rejection code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

struct Filter {
    account: Option<PublicKey>,
    kind: Option<String>,
    module: Option<String>,
}

impl Filter {
    fn keeps(&self, e: &EventData) -> bool {
        if self.kind.as_ref().is_some_and(|k| k != &e.kind) {
            return false;
        }
        if self.module.is_some() && e.module != self.module {
            return false;
        }
        if let Some(a) = &self.account {
            return e.sender.as_ref() == Some(a) || e.to.as_ref() == Some(a);
        }
        true
    }
}

impl Filter {
    /// Whether a transaction can pass (the cheap part of [`Filter::keeps`], before its id and
    /// outcome are looked up).
    fn may_keep_tx(&self, tx: &netchain_types::SignedTransaction) -> bool {
        if self.kind.as_ref().is_some_and(|k| k != "tx") {
            return false;
        }
        if self
            .module
            .as_ref()
            .is_some_and(|m| m != tx.tx.payload.module())
        {
            return false;
        }
        match &self.account {
            Some(a) => tx.tx.sender == *a || tx.tx.payload.counterparty().0.as_ref() == Some(a),
            None => true,
        }
    }
}

/// The events of one committed block at or after `from_index` that `filter` keeps. Transactions
/// the filter cannot keep are neither hashed nor looked up, and a stream of block events only
/// reads no transaction at all.
fn block_events(
    shared: &Shared,
    height: u64,
    from_index: u32,
    filter: &Filter,
) -> Result<Vec<EventData>, String> {
    let block = shared
        .store
        .block_at(height)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("block {height} missing"))?;
    let txs = if filter.kind.as_deref() == Some("block") {
        Vec::new()
    } else {
        shared
            .store
            .block_transactions(&block)
            .map_err(|e| e.to_string())?
    };
    let mut out = Vec::new();
    if from_index == 0 {
        out.push(EventData {
            cursor: Cursor { height, index: 0 }.to_string(),
            kind: "block".into(),
            height,
            id: block.id().to_string(),
            tx_count: Some(block.tx_count()),
            timestamp_ms: Some(block.timestamp_ms),
            module: None,
            op: None,
            sender: None,
            to: None,
            amount: None,
            status: None,
            code: None,
        });
    }
    for (i, tx) in txs.iter().enumerate() {
        let index = i as u32 + 1;
        if index < from_index || !filter.may_keep_tx(tx) {
            continue;
        }
        let id = tx.id();
        // A copy of a transaction already executed elsewhere has no receipt of its own here.
        let receipt = if shared.ordering_only {
            None
        } else {
            shared.store.receipt(&id).map_err(|e| e.to_string())?
        };
        let (status, code) = match receipt {
            _ if shared.ordering_only => ("ordered", None),
            Some(r) if r.height == height && r.index == i as u32 => match r.outcome {
                TxOutcome::Applied => ("applied", None),
                TxOutcome::Rejected { code, .. } => ("rejected", Some(code)),
            },
            _ => ("rejected", Some("duplicate".to_string())),
        };
        let (to, amount) = tx.tx.payload.counterparty();
        out.push(EventData {
            cursor: Cursor { height, index }.to_string(),
            kind: "tx".into(),
            height,
            id: id.to_string(),
            tx_count: None,
            timestamp_ms: None,
            module: Some(tx.tx.payload.module().into()),
            op: Some(tx.tx.payload.op().into()),
            sender: Some(tx.tx.sender),
            to,
            amount,
            status: Some(status.into()),
            code,
        });
    }
    Ok(out)
}

struct StreamState {
    shared: Arc<Shared>,
    filter: Filter,
    /// Next event position to read.
    next: Cursor,
    buffer: VecDeque<EventData>,
    executed: tokio::sync::watch::Receiver<u64>,
    done: bool,
    /// The session the stream was opened with: the stream ends when it no longer stands.
    session: Option<(Arc<crate::auth::Auth>, String)>,
    _guard: SubscriberGuard,
}

struct SubscriberGuard(Arc<Shared>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.metrics.event_subscribers.dec();
    }
}

fn sse_event(e: &EventData) -> Event {
    Event::default()
        .id(e.cursor.clone())
        .event(e.kind.clone())
        .data(serde_json::to_string(e).expect("event serializes"))
}

async fn next_event(mut st: StreamState) -> Option<(Event, StreamState)> {
    loop {
        if st.done {
            return None;
        }
        if let Some((auth, bearer)) = &st.session {
            if !auth.session_valid(&st.shared, bearer) {
                return None; // revoked client, or the session ended
            }
        }
        if let Some(e) = st.buffer.pop_front() {
            return Some((sse_event(&e), st));
        }
        let tip = *st.executed.borrow();
        if st.next.height > tip {
            if st.executed.changed().await.is_err() {
                return None;
            }
            continue;
        }
        if tip - st.next.height > LAG_HEIGHTS_MAX {
            st.done = true;
            let resume = Event::default().event("resume").data(
                serde_json::json!({
                    "cursor": previous(st.next).to_string(),
                    "reason": "subscriber too far behind; reconnect with this cursor"
                })
                .to_string(),
            );
            return Some((resume, st));
        }
        let height = st.next.height;
        let events = match block_events(&st.shared, height, st.next.index, &st.filter) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(height, error = %e, "event stream read failed");
                st.done = true;
                continue;
            }
        };
        st.next = Cursor {
            height: height + 1,
            index: 0,
        };
        st.buffer = events.into_iter().filter(|e| st.filter.keeps(e)).collect();
    }
}

/// The cursor just before `c` (what a client resumes from to get `c` next).
fn previous(c: Cursor) -> Cursor {
    if c.index > 0 {
        Cursor {
            height: c.height,
            index: c.index - 1,
        }
    } else {
        Cursor {
            height: c.height.saturating_sub(1),
            index: u32::MAX,
        }
    }
}

/// `GET /v1/events`: server-sent events, resumable by cursor.
pub async fn events(
    State(shared): State<Arc<Shared>>,
    axum::Extension(auth): axum::Extension<Arc<crate::auth::Auth>>,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let header_cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let next = match q.cursor.or(header_cursor) {
        Some(c) => {
            let c: Cursor = c
                .parse()
                .map_err(|e: String| ApiError::bad("malformed", e))?;
            match c.index.checked_add(1) {
                Some(index) => Cursor {
                    height: c.height,
                    index,
                },
                None => Cursor {
                    height: c.height.saturating_add(1),
                    index: 0,
                },
            }
        }
        None => Cursor {
            height: shared.status().height + 1,
            index: 0,
        },
    };
    if let Some(k) = &q.kind {
        if k != "block" && k != "tx" {
            return Err(ApiError::bad("malformed", "type is block or tx"));
        }
    }
    if shared.metrics.event_subscribers.get() >= SUBSCRIBERS_MAX {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("at most {SUBSCRIBERS_MAX} event streams per node"),
        ));
    }
    shared.metrics.event_subscribers.inc();
    let state = StreamState {
        executed: shared.executed.subscribe(),
        filter: Filter {
            account: q.account,
            kind: q.kind,
            module: q.module,
        },
        next,
        buffer: VecDeque::new(),
        done: false,
        session: headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|b| (auth, b.trim().to_string())),
        _guard: SubscriberGuard(shared.clone()),
        shared,
    };
    let stream = stream::unfold(state, next_event).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

use futures::StreamExt as _;
