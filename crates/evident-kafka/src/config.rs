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
    /// Most simultaneous connections; more are closed on accept.
    pub connections_max: usize,
    /// A connection with no request for this long is closed (Kafka's `connections.max.idle.ms`).
    pub idle_timeout: Duration,
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
            connections_max: 1024,
            idle_timeout: Duration::from_secs(600),
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}
