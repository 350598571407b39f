//! The listener's configuration and the limits that protect the server from its peers.

use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of the Kafka listener.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Host and port given to clients in Metadata (they connect there after bootstrap);
    /// None: the listening address.
    pub advertised: Option<(String, u16)>,
    /// Largest request frame accepted; the length prefix is checked before anything is
    /// allocated, and a larger one closes the connection (Kafka's `socket.request.max.bytes`).
    pub request_max_bytes: usize,
    /// Most bytes the compressed batches of one Produce request may inflate to, all together
    /// (bounds decompression bombs, however many entries carry them); one batch is further
    /// bounded by the log's largest stored batch. See `records::Budget`.
    pub decompressed_max_bytes: usize,
    /// Bytes being inflated or held inflated until the log has them, across every concurrent
    /// Produce request (evident's own budget; Kafka stores batches compressed and has none). A
    /// compressed batch reserves what it may inflate to before it is inflated and keeps what it
    /// did until its append is queued; a batch that cannot get its reservation waits, within
    /// half the request's timeout, else is answered `REQUEST_TIMED_OUT` (retriable, not
    /// stored). One batch never inflates past this budget. See `api/produce.rs`.
    pub decompressed_total_max_bytes: usize,
    /// Bytes of request frames being received or handled at once, across every connection
    /// (Kafka's `queued.max.request.bytes`): a frame's length is charged before its body is
    /// read and released once the request is handled; a frame that cannot get budget within
    /// the request timeout closes its connection. At least `request_max_bytes`.
    pub queued_request_max_bytes: usize,
    /// Record bytes held by Fetch responses being built or waiting to be written, across every
    /// connection: a fetch takes what budget is free (up to its own limits) and, when none is,
    /// still gets the first batch, so consumers progress without memory growing with their
    /// number. Kafka has no broker-wide equivalent (its `fetch.max.bytes` is per request).
    pub fetch_buffered_max_bytes: usize,
    /// Most simultaneous connections; at the cap, the connection idle the longest (no request
    /// in flight) is closed to admit the newcomer, which is refused only if none is idle.
    pub connections_max: usize,
    /// Most simultaneous connections from one source address (Kafka's
    /// `max.connections.per.ip`), enforced like `connections_max` within that address.
    pub connections_per_ip_max: usize,
    /// A connection with no request for this long is closed (Kafka's `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Once the first byte of a request's size has arrived, the whole request (size and body)
    /// must arrive within this long or the connection is closed. Kafka has no such deadline
    /// (its idle timeout is reset by every byte, so a trickling peer keeps its buffer); the
    /// client-side `request.timeout.ms` (30 s) is the time its own clients give a request.
    pub request_timeout: Duration,
    /// Create a topic when a client asks for metadata of, or produces to, one that does not
    /// exist (Kafka's `auto.create.topics.enable`, on by default as in Kafka).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub default_partitions: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            request_max_bytes: 16 << 20,
            decompressed_max_bytes: 64 << 20,
            decompressed_total_max_bytes: 256 << 20,
            queued_request_max_bytes: 256 << 20,
            fetch_buffered_max_bytes: 256 << 20,
            connections_max: 1024,
            connections_per_ip_max: 1024,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}
