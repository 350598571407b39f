//! What every connection shares: the log, the consumer groups, the configuration, the commit
//! signal that wakes long-polling fetches, and the producer-id allocator.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use evident_groups::GroupStore;
use evident_log::clock::Clock;
use evident_log::Log;
use tokio::sync::{watch, Semaphore};

use crate::config::KafkaConfig;
use crate::connections::Connections;
use crate::coordinator::Coordinator;
use crate::metrics::KafkaMetrics;

/// The node id evident gives itself in Metadata and FindCoordinator (a single broker).
pub const NODE_ID: i32 = 1;

/// The broker's shared state.
pub struct Broker {
    /// The embedded log.
    pub log: Arc<Log>,
    /// Consumer groups (shared with the HTTP API).
    pub groups: Arc<GroupStore>,
    /// Configuration.
    pub config: KafkaConfig,
    /// The visible commit sequence, published on every commit.
    pub commits: watch::Receiver<u64>,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The last producer id handed out.
    last_producer_id: AtomicI64,
    /// The host and port clients are told to connect to.
    pub(crate) advertised: (String, u16),
    /// Group membership and rebalances (the classic consumer-group protocol).
    pub(crate) coordinator: Coordinator,
    /// The transaction coordinator; None: transactional ids are refused.
    pub transactions: Option<Arc<crate::transactions::Transactions>>,
    /// The listener's counters, read by the server's `/metrics`.
    pub metrics: Arc<KafkaMetrics>,
    /// The open connections, admitted within the connection caps.
    pub(crate) connections: Arc<Connections>,
    /// Bytes of request frames being read or handled (`queued_request_max_bytes`), one permit
    /// a byte.
    pub(crate) request_bytes: Arc<Semaphore>,
    /// Record bytes held by Fetch responses until written (`fetch_buffered_max_bytes`).
    pub(crate) fetch_bytes: Arc<Semaphore>,
    /// Bytes of compressed batches being inflated or held inflated until queued in the log,
    /// across every Produce request (`decompressed_total_max_bytes`).
    pub(crate) decompressed_bytes: Arc<Semaphore>,
    /// Schema validation of produced records, when the server has a registry (topics turn it
    /// on with `confluent.{key,value}.schema.validation`).
    pub(crate) validation: Option<Arc<evident_registry::Validation>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Broker {
    /// The shared state of a listener; `bound_port` is the port actually bound (for an
    /// advertised address defaulting to the listening one when the port was 0).
    pub fn new(
        log: Arc<Log>,
        groups: Arc<GroupStore>,
        config: KafkaConfig,
        commits: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        clock: Arc<dyn Clock>,
        bound_port: u16,
    ) -> Self {
        let advertised = config.advertised.clone().unwrap_or_else(|| (config.addr.ip().to_string(), bound_port));
        let coordinator = Coordinator::new(groups.clone(), clock.clone());
        let connections = Arc::new(Connections::new(config.connections_max, config.connections_per_ip_max));
        // Each budget at least one largest frame (or response), within what a semaphore holds.
        let request_bytes = config.queued_request_max_bytes.max(config.request_max_bytes).min(Semaphore::MAX_PERMITS);
        let fetch_bytes = config.fetch_buffered_max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        // Reservations are `u32` permits; one batch's never exceeds the whole budget.
        let decompressed_bytes =
            config.decompressed_total_max_bytes.min(Semaphore::MAX_PERMITS).clamp(1, u32::MAX as usize);
        Self {
            log,
            groups,
            config,
            commits,
            shutdown,
            clock,
            last_producer_id: AtomicI64::new(0),
            advertised,
            coordinator,
            metrics: Arc::default(),
            connections,
            request_bytes: Arc::new(Semaphore::new(request_bytes)),
            fetch_bytes: Arc::new(Semaphore::new(fetch_bytes)),
            decompressed_bytes: Arc::new(Semaphore::new(decompressed_bytes)),
            validation: None,
            transactions: None,
        }
    }

    /// The same broker, counting into `metrics` (shared with whoever exposes them).
    pub fn with_metrics(mut self, metrics: Arc<KafkaMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same broker, validating produced records against `schemas` on the topics that ask
    /// for it. Without a registry, a topic that asks has every produce refused: validation
    /// that cannot run must not pass records unchecked.
    pub fn with_schemas(mut self, schemas: Option<Arc<dyn evident_registry::SchemaSource>>) -> Self {
        self.validation = schemas.map(|s| Arc::new(evident_registry::Validation::new(s)));
        self
    }

    /// The same broker, coordinating transactions with `transactions`.
    pub fn with_transactions(mut self, transactions: Arc<crate::transactions::Transactions>) -> Self {
        self.transactions = Some(transactions);
        self
    }

    /// A producer id no other producer has had. Ids are `now_ms * 1000` or one past the last
    /// handed out, whichever is larger: unique within a run, and after a restart larger than
    /// any earlier one unless more than a thousand were handed out per millisecond of the
    /// previous run (the log also keeps each producer's epoch and sequences per partition,
    /// so a reused id would be fenced, not silently merged).
    pub fn next_producer_id(&self) -> i64 {
        let floor = self.clock.now_ms().saturating_mul(1000);
        let mut current = self.last_producer_id.load(Ordering::Relaxed);
        loop {
            let next = floor.max(current + 1);
            match self.last_producer_id.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}
