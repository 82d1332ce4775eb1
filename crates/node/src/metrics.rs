//! Node metrics in the Prometheus / OpenMetrics text format.

use crate::Shared;
use netchain_storage::KvBackend;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

type Labels = Vec<(String, String)>;

/// Every metric a node exports. Counters get `_total` appended by the encoder.
pub struct Metrics {
    registry: Registry,
    /// Height of the last executed block.
    pub height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// Time from a block's proposal to its execution here.
    pub commit_latency_seconds: Histogram,
    /// Transactions applied.
    pub finalized_transactions: Counter,
    /// Committed transactions that execution rejected.
    pub execution_rejections: Counter,
    /// Blocks executed.
    pub blocks_committed: Counter,
    /// Client transactions refused at admission, by reason code.
    pub mempool_rejections: Family<Labels, Counter>,
    mempool_transactions: Gauge,
    mempool_bytes: Gauge,
    peers_connected: Gauge,
    p2p_dropped_messages: Gauge,
    p2p_refused_connections: Gauge,
    p2p_evicted_connections: Gauge,
    storage_bytes: Gauge,
    /// Open event-stream connections.
    pub event_subscribers: Gauge,
    quorum_store_batches: Gauge,
    quorum_store_bytes: Gauge,
    quorum_store_proofs: Gauge,
    quorum_store_own_unproven: Gauge,
    batches_made: Gauge,
    batches_certified: Gauge,
    batches_expired: Gauge,
    batches_fetched: Gauge,
    batches_acked_checked: Gauge,
    batches_acked_stored: Gauge,
    execution_backlog_blocks: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("netchain");
        let m = Self {
            height: Gauge::default(),
            round: Gauge::default(),
            commit_latency_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            finalized_transactions: Counter::default(),
            execution_rejections: Counter::default(),
            blocks_committed: Counter::default(),
            mempool_rejections: Family::default(),
            mempool_transactions: Gauge::default(),
            mempool_bytes: Gauge::default(),
            peers_connected: Gauge::default(),
            p2p_dropped_messages: Gauge::default(),
            p2p_refused_connections: Gauge::default(),
            p2p_evicted_connections: Gauge::default(),
            storage_bytes: Gauge::default(),
            event_subscribers: Gauge::default(),
            quorum_store_batches: Gauge::default(),
            quorum_store_bytes: Gauge::default(),
            quorum_store_proofs: Gauge::default(),
            quorum_store_own_unproven: Gauge::default(),
            batches_made: Gauge::default(),
            batches_certified: Gauge::default(),
            batches_expired: Gauge::default(),
            batches_fetched: Gauge::default(),
            batches_acked_checked: Gauge::default(),
            batches_acked_stored: Gauge::default(),
            execution_backlog_blocks: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "height",
            "Height of the last executed block",
            m.height.clone(),
        );
        registry.register("round", "Current consensus round", m.round.clone());
        registry.register(
            "commit_latency_seconds",
            "Time from a block's proposal to its execution on this node",
            m.commit_latency_seconds.clone(),
        );
        registry.register(
            "finalized_transactions",
            "Transactions applied by committed blocks",
            m.finalized_transactions.clone(),
        );
        registry.register(
            "execution_rejections",
            "Committed transactions rejected by execution",
            m.execution_rejections.clone(),
        );
        registry.register(
            "blocks_committed",
            "Blocks committed and executed",
            m.blocks_committed.clone(),
        );
        registry.register(
            "mempool_rejections",
            "Transactions refused at admission, by reason",
            m.mempool_rejections.clone(),
        );
        registry.register(
            "mempool_transactions",
            "Transactions held in the mempool",
            m.mempool_transactions.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Bytes held in the mempool",
            m.mempool_bytes.clone(),
        );
        registry.register(
            "peers_connected",
            "Peers with an established outbound connection",
            m.peers_connected.clone(),
        );
        registry.register(
            "p2p_dropped_messages",
            "Messages dropped because a peer queue was full (since start)",
            m.p2p_dropped_messages.clone(),
        );
        registry.register(
            "p2p_refused_connections",
            "Inbound connections refused in the handshake (since start)",
            m.p2p_refused_connections.clone(),
        );
        registry.register(
            "p2p_evicted_connections",
            "Open connections closed because the identity registry no longer admits the peer \
             (since start)",
            m.p2p_evicted_connections.clone(),
        );
        registry.register(
            "storage_bytes",
            "Size of the node's store on disk",
            m.storage_bytes.clone(),
        );
        registry.register(
            "event_subscribers",
            "Open event-stream connections",
            m.event_subscribers.clone(),
        );
        registry.register(
            "quorum_store_batches",
            "Batches held by the quorum store (own and peers', until executed or expired)",
            m.quorum_store_batches.clone(),
        );
        registry.register(
            "quorum_store_bytes",
            "Bytes of the batches held by the quorum store",
            m.quorum_store_bytes.clone(),
        );
        registry.register(
            "quorum_store_proofs",
            "Proofs of availability waiting to be proposed",
            m.quorum_store_proofs.clone(),
        );
        registry.register(
            "quorum_store_own_unproven",
            "Own batches waiting for their proof of availability, or proven and held back until an older one is",
            m.quorum_store_own_unproven.clone(),
        );
        registry.register(
            "batches_made",
            "Own batches made (since start)",
            m.batches_made.clone(),
        );
        registry.register(
            "batches_certified",
            "Own batches that reached a proof of availability (since start)",
            m.batches_certified.clone(),
        );
        registry.register(
            "batches_expired",
            "Own batches that expired unproven or uncommitted; their transactions are batched again (since start)",
            m.batches_expired.clone(),
        );
        registry.register(
            "batches_fetched",
            "Committed batches fetched from a peer to execute (since start)",
            m.batches_fetched.clone(),
        );
        registry.register(
            "batches_acked_checked",
            "Checked acknowledgements sent for peers' batches (every signature verified; resends included; since start)",
            m.batches_acked_checked.clone(),
        );
        registry.register(
            "batches_acked_stored",
            "Stored acknowledgements sent for peers' batches (stored without a signature check; resends included; since start)",
            m.batches_acked_stored.clone(),
        );
        registry.register(
            "execution_backlog_blocks",
            "Committed blocks not executed yet (batch mode; from 2, this validator's leader waits backlog_block_interval_ms before proposing)",
            m.execution_backlog_blocks.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts an admission refusal.
    pub fn rejected(&self, code: &str) {
        self.mempool_rejections
            .get_or_create(&vec![("reason".to_string(), code.to_string())])
            .inc();
    }

    /// The text exposition, with scrape-time figures refreshed from `shared`.
    pub fn render(&self, shared: &Shared) -> String {
        {
            let pool = shared.mempool.lock().expect("mempool lock");
            self.mempool_transactions.set(pool.len() as i64);
            self.mempool_bytes.set(pool.bytes() as i64);
        }
        if let Some(qs) = &shared.quorum_store {
            let st = qs.lock().expect("quorum store").stats();
            self.quorum_store_batches.set(st.batches as i64);
            self.quorum_store_bytes.set(st.bytes as i64);
            self.quorum_store_proofs.set(st.proofs as i64);
            self.quorum_store_own_unproven.set(st.own_unproven as i64);
            self.batches_made.set(st.made as i64);
            self.batches_certified.set(st.certified as i64);
            self.batches_expired.set(st.expired_own as i64);
            self.batches_fetched.set(st.fetched as i64);
            self.batches_acked_checked.set(st.acked_checked as i64);
            self.batches_acked_stored.set(st.acked_stored as i64);
            self.execution_backlog_blocks
                .set(st.execution_backlog as i64);
        }
        let net = &shared.network;
        self.peers_connected
            .set(net.peers_connected.load(Ordering::Relaxed) as i64);
        self.p2p_dropped_messages
            .set(net.dropped_total.load(Ordering::Relaxed) as i64);
        self.p2p_refused_connections
            .set(net.refused_total.load(Ordering::Relaxed) as i64);
        self.p2p_evicted_connections
            .set(net.evicted_total.load(Ordering::Relaxed) as i64);
        self.storage_bytes
            .set(shared.store.backend().disk_size_bytes() as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
