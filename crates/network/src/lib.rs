//! Authenticated, framed transport between validators.
//!
//! Design note: every validator dials every other one and uses that connection only to send;
//! it receives on the connections others dial to it. A connection opens with a three-message
//! handshake bound to the committee keys: the initiator's signed `Hello` names both keys, the
//! chain and a fresh nonce; the responder sends nothing at all until that `Hello` verifies against
//! a committee key (a stranger gets zero bytes), answers with a signed `Welcome` carrying its own
//! nonce, and the initiator proves liveness by signing that nonce (`Confirm`), so a recorded
//! `Hello` cannot be replayed into a session. Frames are length-prefixed with a hard size bound;
//! an oversized or undecodable frame closes that connection only. Every queue is bounded: a full
//! per-peer queue drops the message (consensus recovers lost messages by timeouts and sync).
//!
//! Network ID: with an [`Admission`] policy (the identity registry), a peer must also be admitted
//! by it. The responder asks before it sends a single byte (an unregistered, suspended, rotated
//! or revoked key gets nothing back), the dialer asks before it connects, and every open
//! connection asks again whenever the policy signals a change (the node signals after each
//! executed block): a connection whose peer is no longer admitted is closed at once, in both
//! directions, and stays closed until the registry admits that key again.

mod handshake;

use borsh::BorshDeserialize;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netchain_crypto::Keypair;
use netchain_types::{Committee, PublicKey, ValidatorIndex};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, info, warn};

pub use handshake::{hello_frame, HandshakeError};

/// Whether a peer key may hold a connection now, and a signal that the answer may have changed.
#[derive(Clone)]
pub struct Admission {
    /// The policy: true while `key` is admitted.
    pub admits: Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>,
    /// Bumped whenever the policy's answers may have changed (e.g. after each executed block).
    pub changes: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

impl Admission {
    fn check(admission: &Option<Admission>, key: &PublicKey) -> bool {
        admission.as_ref().is_none_or(|a| (a.admits)(key))
    }
}

/// How often open connections are checked again without a change signal (expiries pass on
/// an idle chain too).
const ADMISSION_RECHECK: Duration = Duration::from_secs(2);

/// Resolves when the admission policy signals a change, or after [`ADMISSION_RECHECK`]; never
/// without a policy.
async fn admission_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match changes {
        Some(rx) => {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        // The signal is gone: fall back to the periodic check alone.
                        tokio::time::sleep(ADMISSION_RECHECK).await;
                    }
                }
                _ = tokio::time::sleep(ADMISSION_RECHECK) => {}
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Transport parameters.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Chain id (bound into the handshake).
    pub chain_id: String,
    /// The committee: keys and addresses.
    pub committee: Committee,
    /// This validator.
    pub me: ValidatorIndex,
    /// Address to listen on.
    pub listen_address: String,
    /// Largest frame accepted or sent.
    pub frame_bytes_max: usize,
    /// Messages queued per peer before new ones are dropped.
    pub peer_queue_max: usize,
    /// Bytes queued per peer before new messages are dropped.
    pub peer_queue_bytes_max: usize,
    /// Time allowed for a handshake.
    pub handshake_timeout_ms: u64,
    /// Bytes of received messages from one peer waiting to be processed; when they are used
    /// up, this node stops reading from that peer (TCP back-pressure) until some are processed.
    pub inbound_bytes_max: usize,
    /// Network ID: peers must also be admitted by this policy (None: the committee suffices).
    pub admission: Option<Admission>,
}

/// A received message. It holds its share of the sending peer's inbound byte budget until it is
/// taken apart by the consumer.
pub struct Inbound<M> {
    from: ValidatorIndex,
    msg: M,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<M> Inbound<M> {
    /// A message this node gives itself (no budget).
    pub fn local(from: ValidatorIndex, msg: M) -> Self {
        Self {
            from,
            msg,
            _budget: None,
        }
    }

    /// Sender.
    pub fn from(&self) -> ValidatorIndex {
        self.from
    }

    /// The message (the budget stays held).
    pub fn msg(&self) -> &M {
        &self.msg
    }

    /// Sender and message; the budget is released.
    pub fn into_parts(self) -> (ValidatorIndex, M) {
        (self.from, self.msg)
    }
}

/// Counters of the transport.
#[derive(Debug, Default)]
pub struct NetworkStats {
    /// Messages dropped because a peer queue was full.
    pub dropped_total: AtomicU64,
    /// Connections refused in the handshake.
    pub refused_total: AtomicU64,
    /// Connections closed for a malformed or oversized frame.
    pub bad_frames_total: AtomicU64,
    /// Open connections closed because the peer is no longer admitted (revoked, suspended,
    /// rotated away, expired).
    pub evicted_total: AtomicU64,
    /// Peers with an established outbound connection.
    pub peers_connected: AtomicU64,
    /// Per validator index: when a message from it last arrived (ms since the Unix epoch; 0 never).
    pub peer_last_seen_ms: Vec<AtomicU64>,
}

/// Handle for sending to peers.
#[derive(Clone)]
pub struct Network {
    me: ValidatorIndex,
    peers: Arc<Vec<Option<PeerQueue>>>,
    stats: Arc<NetworkStats>,
    queue_bytes_max: usize,
}

/// The outbound queue of one peer, bounded by count (channel) and by bytes (counter).
#[derive(Clone)]
struct PeerQueue {
    tx: mpsc::Sender<Bytes>,
    bytes: Arc<AtomicUsize>,
}

/// Concurrent unauthenticated handshakes at most; more connections wait for a slot.
const HANDSHAKES_MAX: usize = 64;

fn codec(frame_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame_bytes_max)
        .new_codec()
}

impl Network {
    /// Binds the listener, starts one dialer per peer, and delivers every decoded message from
    /// an authenticated peer to `tx_inbound`.
    pub async fn start<M>(
        cfg: NetworkConfig,
        keypair: Keypair,
        tx_inbound: mpsc::Sender<Inbound<M>>,
    ) -> std::io::Result<Self>
    where
        M: BorshDeserialize + Send + 'static,
    {
        let listener = TcpListener::bind(&cfg.listen_address).await?;
        info!(address = %cfg.listen_address, "p2p listening");
        let stats = Arc::new(NetworkStats {
            peer_last_seen_ms: (0..cfg.committee.size())
                .map(|_| AtomicU64::new(0))
                .collect(),
            ..NetworkStats::default()
        });
        let cfg = Arc::new(cfg);
        let mut peers = Vec::new();
        for (index, validator) in cfg.committee.validators.iter().enumerate() {
            let index = index as ValidatorIndex;
            if index == cfg.me {
                peers.push(None);
                continue;
            }
            let (tx, rx) = mpsc::channel(cfg.peer_queue_max);
            let bytes = Arc::new(AtomicUsize::new(0));
            peers.push(Some(PeerQueue {
                tx,
                bytes: bytes.clone(),
            }));
            tokio::spawn(dial_loop(
                cfg.clone(),
                keypair.clone(),
                index,
                validator.p2p_address.clone(),
                rx,
                bytes,
                stats.clone(),
            ));
        }
        // One inbound byte budget per peer, so a flooding peer stalls only itself.
        let budgets: Arc<Vec<Arc<tokio::sync::Semaphore>>> = Arc::new(
            (0..cfg.committee.size())
                .map(|_| Arc::new(tokio::sync::Semaphore::new(inbound_permits(&cfg))))
                .collect(),
        );
        tokio::spawn(accept_loop(
            listener,
            cfg.clone(),
            keypair,
            tx_inbound,
            stats.clone(),
            budgets,
        ));
        Ok(Self {
            me: cfg.me,
            peers: Arc::new(peers),
            stats,
            queue_bytes_max: cfg.peer_queue_bytes_max,
        })
    }

    /// Queues `bytes` for `to`; returns false if dropped (queue full or unknown peer).
    pub fn send(&self, to: ValidatorIndex, bytes: Bytes) -> bool {
        let Some(Some(peer)) = self.peers.get(to as usize) else {
            return false;
        };
        let len = bytes.len();
        let queued = peer.bytes.fetch_add(len, Ordering::Relaxed);
        let ok = queued + len <= self.queue_bytes_max && peer.tx.try_send(bytes).is_ok();
        if !ok {
            peer.bytes.fetch_sub(len, Ordering::Relaxed);
            self.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Bytes waiting to be sent to `to` (0 for unknown peers).
    pub fn queued_bytes(&self, to: ValidatorIndex) -> usize {
        match self.peers.get(to as usize) {
            Some(Some(peer)) => peer.bytes.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Queues `bytes` for every peer (not this validator).
    pub fn broadcast(&self, bytes: Bytes) {
        for to in 0..self.peers.len() as ValidatorIndex {
            if to != self.me {
                self.send(to, bytes.clone());
            }
        }
    }

    /// Transport counters.
    pub fn stats(&self) -> &Arc<NetworkStats> {
        &self.stats
    }
}

async fn dial_loop(
    cfg: Arc<NetworkConfig>,
    keypair: Keypair,
    peer: ValidatorIndex,
    address: String,
    mut rx: mpsc::Receiver<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
    stats: Arc<NetworkStats>,
) {
    let mut backoff_ms = 50;
    let mut pending: Option<Bytes> = None;
    let peer_key = cfg.committee.key(peer).copied().expect("peer in committee");
    let mut changes = cfg.admission.as_ref().map(|a| a.changes.clone());
    loop {
        if !Admission::check(&cfg.admission, &peer_key) {
            // Not admitted (revoked, suspended ...): do not even connect; look again when the
            // registry changes.
            debug!(
                peer,
                "peer not admitted by the identity registry; not dialing"
            );
            tokio::select! {
                _ = admission_changed(&mut changes) => {}
                _ = tokio::time::sleep(Duration::from_millis(2_000)) => {}
            }
            continue;
        }
        let stream = match TcpStream::connect(&address).await {
            Ok(s) => s,
            Err(e) => {
                debug!(peer, %address, error = %e, "dial failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(2_000);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, codec(cfg.frame_bytes_max));
        let hs = tokio::time::timeout(
            Duration::from_millis(cfg.handshake_timeout_ms),
            handshake::initiate(&mut framed, &cfg.chain_id, &keypair, &peer_key),
        )
        .await;
        match hs {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(peer, error = %e, "handshake failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(2_000);
                continue;
            }
            Err(_) => {
                debug!(peer, "handshake timed out");
                continue;
            }
        }
        backoff_ms = 50;
        stats.peers_connected.fetch_add(1, Ordering::Relaxed);
        debug!(peer, "connected");
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                    _ = admission_changed(&mut changes) => {
                        if Admission::check(&cfg.admission, &peer_key) {
                            continue;
                        }
                        info!(peer, "peer no longer admitted by the identity registry; closing");
                        stats.evicted_total.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                },
            };
            let len = msg.len();
            if len > cfg.frame_bytes_max {
                // Never sendable: drop it rather than wedge the link on it.
                warn!(peer, len, "message over the frame bound dropped");
                queued_bytes.fetch_sub(len, Ordering::Relaxed);
                stats.dropped_total.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(e) = framed.send(msg.clone()).await {
                debug!(peer, error = %e, "send failed; reconnecting");
                pending = Some(msg);
                break;
            }
            queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        stats.peers_connected.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop<M>(
    listener: TcpListener,
    cfg: Arc<NetworkConfig>,
    keypair: Keypair,
    tx_inbound: mpsc::Sender<Inbound<M>>,
    stats: Arc<NetworkStats>,
    budgets: Arc<Vec<Arc<tokio::sync::Semaphore>>>,
) where
    M: BorshDeserialize + Send + 'static,
{
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(serve_inbound(
            permit,
            stream,
            remote.to_string(),
            cfg.clone(),
            keypair.clone(),
            Inbox {
                tx: tx_inbound.clone(),
                budgets: budgets.clone(),
            },
            stats.clone(),
        ));
    }
}

/// Permits of one peer's inbound budget (one per byte, at least one frame's worth).
fn inbound_permits(cfg: &NetworkConfig) -> usize {
    cfg.inbound_bytes_max
        .max(cfg.frame_bytes_max)
        .min(tokio::sync::Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize)
}

/// Where received messages go, and each peer's inbound byte budget.
struct Inbox<M> {
    tx: mpsc::Sender<Inbound<M>>,
    budgets: Arc<Vec<Arc<tokio::sync::Semaphore>>>,
}

async fn serve_inbound<M>(
    permit: tokio::sync::OwnedSemaphorePermit,
    stream: TcpStream,
    remote: String,
    cfg: Arc<NetworkConfig>,
    keypair: Keypair,
    inbox: Inbox<M>,
    stats: Arc<NetworkStats>,
) where
    M: BorshDeserialize + Send + 'static,
{
    // Until the peer is authenticated, frames are handshake-sized: a stranger cannot make this
    // node reserve a large buffer.
    let mut framed = Framed::new(stream, codec(handshake::HANDSHAKE_FRAME_BYTES_MAX));
    let hs = tokio::time::timeout(
        Duration::from_millis(cfg.handshake_timeout_ms),
        handshake::respond(
            &mut framed,
            &cfg.chain_id,
            &keypair,
            &cfg.committee,
            &|key| Admission::check(&cfg.admission, key),
        ),
    )
    .await;
    drop(permit);
    let from = match hs {
        Ok(Ok(from)) => from,
        Ok(Err(e)) => {
            stats.refused_total.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, error = %e, "inbound refused");
            return;
        }
        Err(_) => {
            stats.refused_total.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, "inbound handshake timed out");
            return;
        }
    };
    framed.codec_mut().set_max_frame_length(cfg.frame_bytes_max);
    let Some(budget) = inbox.budgets.get(from as usize).cloned() else {
        return;
    };
    let permits_max = inbound_permits(&cfg);
    let peer_key = cfg
        .committee
        .key(from)
        .copied()
        .expect("authenticated peer in committee");
    let mut changes = cfg.admission.as_ref().map(|a| a.changes.clone());
    loop {
        let frame = tokio::select! {
            f = framed.next() => match f {
                Some(f) => f,
                None => return,
            },
            _ = admission_changed(&mut changes) => {
                if Admission::check(&cfg.admission, &peer_key) {
                    continue;
                }
                info!(peer = from, "peer no longer admitted by the identity registry; closing");
                stats.evicted_total.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                stats.bad_frames_total.fetch_add(1, Ordering::Relaxed);
                warn!(peer = from, error = %e, "bad frame; closing connection");
                return;
            }
        };
        if let Some(seen) = stats.peer_last_seen_ms.get(from as usize) {
            seen.store(handshake::now_ms(), Ordering::Relaxed);
        }
        let msg = match M::try_from_slice(&frame) {
            Ok(m) => m,
            Err(e) => {
                stats.bad_frames_total.fetch_add(1, Ordering::Relaxed);
                warn!(peer = from, error = %e, "undecodable message; closing connection");
                return;
            }
        };
        // Wait for room in this peer's budget: while it is used up, nothing more is read from
        // the connection, and the peer's sends back up in TCP.
        let cost = frame.len().clamp(1, permits_max) as u32;
        let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
            return;
        };
        let inbound = Inbound {
            from,
            msg,
            _budget: Some(permit),
        };
        if inbox.tx.send(inbound).await.is_err() {
            return;
        }
    }
}
