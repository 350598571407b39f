//! `evident serve`'s configuration: one TOML file (`--config`, or `./evident.toml` when it
//! exists), then `EVIDENT_*` environment variables, then flags; flags win. clap applies "flag
//! over environment"; this module lays the file under both and the defaults under all.
//! Every option has the same name in the three places (`--data-dir`, `EVIDENT_DATA_DIR`,
//! `data_dir`), as SPEC §5 asks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use evident_log::FsyncPolicy;
use serde::Deserialize;

/// Options of `evident serve`.
#[derive(Debug, Default, clap::Args)]
#[command(after_help = "Every option can also be set in evident.toml (same name, snake_case) or in an \
EVIDENT_* environment variable; flags win over the environment, which wins over the file.")]
pub struct ServeArgs {
    /// Configuration file (TOML). Default: ./evident.toml when it exists.
    #[arg(long, env = "EVIDENT_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded log (created if absent) [default: ./data]
    #[arg(long, env = "EVIDENT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API; port 0 picks a free port (the address is printed at start)
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "EVIDENT_HTTP_ADDR", value_name = "IP:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// Address of the Kafka protocol listener; port 0 picks a free port [default: 127.0.0.1:9092]
    #[arg(long, env = "EVIDENT_KAFKA_ADDR", value_name = "IP:PORT")]
    pub kafka_addr: Option<SocketAddr>,
    /// Address of the schema registry (Confluent's REST API); port 0 picks a free port, `none`
    /// disables it [default: 127.0.0.1:8081]
    #[arg(long, env = "EVIDENT_REGISTRY_ADDR", value_name = "IP:PORT|none")]
    pub registry_addr: Option<String>,
    /// Host:port Kafka clients are told to connect to (Metadata); default: the listening address
    #[arg(long, env = "EVIDENT_KAFKA_ADVERTISED_ADDR", value_name = "HOST:PORT")]
    pub kafka_advertised_addr: Option<String>,
    /// Create topics on first use by a Kafka client (Kafka's auto.create.topics.enable)
    /// [default: true]
    #[arg(long, env = "EVIDENT_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics (Kafka's num.partitions) [default: 1]
    #[arg(long, env = "EVIDENT_DEFAULT_PARTITIONS", value_name = "N")]
    pub default_partitions: Option<u32>,
    /// When appends are acknowledged: `always` (after fdatasync; the default), or the relaxed
    /// `interval:<N>ms` and `never`, which can lose acknowledged events on power loss
    #[arg(long, env = "EVIDENT_FSYNC", value_name = "POLICY")]
    pub fsync: Option<String>,
    /// Largest HTTP request body accepted; larger ones get 413 [default: 8388608]
    #[arg(long, env = "EVIDENT_HTTP_BODY_MAX_BYTES", value_name = "BYTES")]
    pub http_body_max_bytes: Option<usize>,
    /// How long shutdown waits for in-flight requests before closing them [default: 10000]
    #[arg(long, env = "EVIDENT_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Most simultaneous HTTP connections; at the cap the longest idle one is closed for the
    /// newcomer, which gets 503 only if every one has a request in flight [default: 1024]
    #[arg(long, env = "EVIDENT_HTTP_CONNECTIONS_MAX", value_name = "N")]
    pub http_connections_max: Option<usize>,
    /// Most simultaneous HTTP connections from one address; at the cap that address's longest
    /// idle connection is closed for the newcomer, as at --http-connections-max [default: 1024]
    #[arg(long, env = "EVIDENT_HTTP_CONNECTIONS_PER_IP_MAX", value_name = "N")]
    pub http_connections_per_ip_max: Option<usize>,
    /// Time a client has to send a request's headers, and the most an idle keep-alive
    /// connection is kept [default: 10000]
    #[arg(long, env = "EVIDENT_HTTP_HEADER_TIMEOUT_MS", value_name = "MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// Time a client has to send a whole request body once its headers are in; slower ones get
    /// 408 and the connection is closed [default: 20000]
    #[arg(long, env = "EVIDENT_HTTP_BODY_TIMEOUT_MS", value_name = "MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// Deadline of a request, from its headers to its response's head; past it the client gets
    /// 503 deadline_exceeded [default: 30000]
    #[arg(long, env = "EVIDENT_HTTP_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub http_request_timeout_ms: Option<u64>,
    /// Most simultaneous live subscriptions (GET /v1/subscribe); more get 503 [default: 256]
    #[arg(long, env = "EVIDENT_HTTP_SUBSCRIPTIONS_MAX", value_name = "N")]
    pub http_subscriptions_max: Option<usize>,
    /// Threads serving HTTP connections, each connection on one of them for its life
    /// [default: the number of CPUs]
    #[arg(long, env = "EVIDENT_HTTP_THREADS", value_name = "N")]
    pub http_threads: Option<usize>,
    /// Most bytes of one read page (stream, partition, /v1/all); a page stops before the event
    /// that would pass it, always holding one, and its next_* cursor continues there [default: 4194304]
    #[arg(long, env = "EVIDENT_HTTP_RESPONSE_MAX_BYTES", value_name = "BYTES")]
    pub http_response_max_bytes: Option<usize>,
    /// Bytes of read pages held at once by all requests; beyond it reads wait their turn
    /// [default: 67108864]
    #[arg(long, env = "EVIDENT_HTTP_RESPONSES_MAX_BYTES", value_name = "BYTES")]
    pub http_responses_max_bytes: Option<usize>,
    /// Bytes of request bodies being received at once by all requests; beyond it a new body gets
    /// 503 with Retry-After [default: 67108864]
    #[arg(long, env = "EVIDENT_HTTP_BODIES_MAX_BYTES", value_name = "BYTES")]
    pub http_bodies_max_bytes: Option<usize>,
    /// Most simultaneous Kafka connections; more are closed on accept [default: 1024]
    #[arg(long, env = "EVIDENT_KAFKA_CONNECTIONS_MAX", value_name = "N")]
    pub kafka_connections_max: Option<usize>,
    /// A Kafka connection with no request for this long is closed (Kafka's
    /// connections.max.idle.ms) [default: 600000]
    #[arg(long, env = "EVIDENT_KAFKA_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub kafka_idle_timeout_ms: Option<u64>,
    /// Largest Kafka request frame; a larger one closes the connection (Kafka's
    /// socket.request.max.bytes) [default: 16777216]
    #[arg(long, env = "EVIDENT_KAFKA_REQUEST_MAX_BYTES", value_name = "BYTES")]
    pub kafka_request_max_bytes: Option<usize>,
    /// Most bytes the compressed batches of one Kafka Produce request may inflate to, together [default: 67108864]
    #[arg(long, env = "EVIDENT_KAFKA_DECOMPRESSED_MAX_BYTES", value_name = "BYTES")]
    pub kafka_decompressed_max_bytes: Option<usize>,
    /// Bytes the compressed batches of every concurrent Kafka Produce request may hold inflated
    /// at once; a batch waits for its share, then is refused as timed out [default: 268435456]
    #[arg(long, env = "EVIDENT_KAFKA_DECOMPRESSED_TOTAL_MAX_BYTES", value_name = "BYTES")]
    pub kafka_decompressed_total_max_bytes: Option<usize>,
    /// Once a Kafka request's first byte arrived, the rest must arrive within this long or the
    /// connection is closed [default: 30000]
    #[arg(long, env = "EVIDENT_KAFKA_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub kafka_request_timeout_ms: Option<u64>,
    /// Bytes of Kafka request frames received or being handled at once, across connections
    /// (Kafka's queued.max.request.bytes) [default: 268435456]
    #[arg(long, env = "EVIDENT_KAFKA_QUEUED_REQUEST_MAX_BYTES", value_name = "BYTES")]
    pub kafka_queued_request_max_bytes: Option<usize>,
    /// Most simultaneous Kafka connections from one address (Kafka's max.connections.per.ip);
    /// at the cap its longest idle connection is closed for the newcomer [default: 1024]
    #[arg(long, env = "EVIDENT_KAFKA_CONNECTIONS_PER_IP_MAX", value_name = "N")]
    pub kafka_connections_per_ip_max: Option<usize>,
    /// Record bytes held by Kafka Fetch responses until written, across connections; a fetch
    /// beyond it gets a smaller response (at least one batch) [default: 268435456]
    #[arg(long, env = "EVIDENT_KAFKA_FETCH_BUFFERED_MAX_BYTES", value_name = "BYTES")]
    pub kafka_fetch_buffered_max_bytes: Option<usize>,
    /// Where events are stored: `embedded` (the log in --data-dir) or `kafka://HOST:PORT,...`
    /// (an Apache Kafka cluster; --data-dir then holds this node's mirror of it; docs/cluster.md)
    /// [default: embedded]
    #[arg(long, env = "EVIDENT_STORAGE", value_name = "embedded|kafka://HOST:PORT,...")]
    pub storage: Option<String>,
    /// With kafka:// storage: the URL other evident nodes forward appends to this node at
    /// [default: http:// and the HTTP listener's address]
    #[arg(long, env = "EVIDENT_NODE_URL", value_name = "URL")]
    pub node_url: Option<String>,
    /// With kafka:// storage: the Kafka consumer group whose assignment shares the partitions
    /// among the evident nodes of one cluster [default: evident-serve]
    #[arg(long, env = "EVIDENT_OWNERSHIP_GROUP", value_name = "GROUP")]
    pub ownership_group: Option<String>,
    /// With kafka:// storage: the prefix of the cluster's topics this node serves (evident's
    /// topic `orders` is Kafka's `PREFIXorders`), so several applications share one cluster
    /// without seeing each other's topics [default: none]
    #[arg(long, env = "EVIDENT_TOPIC_PREFIX", value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
}

/// The configuration file's shape: the same names as the flags, unknown keys refused (a typo
/// must not silently fall back to a default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    kafka_addr: Option<SocketAddr>,
    registry_addr: Option<String>,
    kafka_advertised_addr: Option<String>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    fsync: Option<String>,
    http_body_max_bytes: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    http_connections_max: Option<usize>,
    http_connections_per_ip_max: Option<usize>,
    http_header_timeout_ms: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    http_request_timeout_ms: Option<u64>,
    http_subscriptions_max: Option<usize>,
    http_threads: Option<usize>,
    http_response_max_bytes: Option<usize>,
    http_responses_max_bytes: Option<usize>,
    http_bodies_max_bytes: Option<usize>,
    kafka_connections_max: Option<usize>,
    kafka_idle_timeout_ms: Option<u64>,
    kafka_request_max_bytes: Option<usize>,
    kafka_decompressed_max_bytes: Option<usize>,
    kafka_decompressed_total_max_bytes: Option<usize>,
    kafka_request_timeout_ms: Option<u64>,
    kafka_queued_request_max_bytes: Option<usize>,
    kafka_connections_per_ip_max: Option<usize>,
    kafka_fetch_buffered_max_bytes: Option<usize>,
    storage: Option<String>,
    node_url: Option<String>,
    ownership_group: Option<String>,
    topic_prefix: Option<String>,
}

/// What `storage = "kafka://..."` is given besides its brokers (flags or file keys that apply
/// to Kafka storage only).
#[derive(Debug, Default)]
struct KafkaOptions {
    node_url: Option<String>,
    ownership_group: Option<String>,
    topic_prefix: Option<String>,
}

/// Where events are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded log in the data directory.
    Embedded,
    /// An Apache Kafka cluster; the data directory holds this node's mirror of it.
    Kafka {
        /// `host:port,...` of its brokers.
        bootstrap: String,
        /// The URL other nodes forward to (None: from the HTTP listener's address).
        node_url: Option<String>,
        /// The consumer group sharing the partitions among nodes.
        ownership_group: String,
        /// The prefix of the Kafka topics served (empty: none).
        topic_prefix: String,
    },
}

impl Storage {
    /// Parses `embedded` or `kafka://host:port[,host:port...]`.
    fn parse(text: &str, options: KafkaOptions) -> anyhow::Result<Self> {
        let KafkaOptions { node_url, ownership_group, topic_prefix } = options;
        let text = text.trim();
        if text.eq_ignore_ascii_case("embedded") {
            if node_url.is_some() || ownership_group.is_some() || topic_prefix.is_some() {
                bail!("node_url, ownership_group and topic_prefix apply to kafka:// storage only");
            }
            return Ok(Self::Embedded);
        }
        let Some(list) = text.strip_prefix("kafka://") else {
            bail!("storage must be embedded or kafka://HOST:PORT[,HOST:PORT...], not {text:?}");
        };
        let mut brokers = Vec::new();
        for broker in list.split(',') {
            let broker = broker.trim();
            let valid = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
            if !valid {
                bail!("storage kafka:// needs HOST:PORT brokers separated by commas; {broker:?} is not one");
            }
            brokers.push(broker);
        }
        if let Some(url) = &node_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 512 {
                bail!("node_url must be an http:// or https:// URL of at most 512 bytes, not {url:?}");
            }
        }
        let ownership_group = ownership_group.unwrap_or_else(|| "evident-serve".into());
        if ownership_group.is_empty() || ownership_group.len() > 249 {
            bail!("ownership_group must be 1 to 249 bytes");
        }
        // The library's rule (`KafkaConfig::topic_prefix`), checked here for a start-up message
        // that names the setting.
        let topic_prefix = topic_prefix.unwrap_or_default();
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic_prefix.len() > 200 || !topic_prefix.chars().all(valid) {
            bail!("topic_prefix must be at most 200 letters, digits, '.', '_' or '-', not {topic_prefix:?}");
        }
        Ok(Self::Kafka { bootstrap: brokers.join(","), node_url, ownership_group, topic_prefix })
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Kafka listener settings.
    pub kafka: evident_kafka::KafkaConfig,
    /// Schema registry listen address; `None` when disabled (`none`).
    pub registry_addr: Option<SocketAddr>,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Largest request body.
    pub http_body_max_bytes: usize,
    /// The HTTP listener's limits on connections, slow clients and subscriptions.
    pub http_limits: HttpLimits,
    /// Threads serving HTTP connections (see `serve/workers.rs`).
    pub http_threads: usize,
    /// Graceful-shutdown budget.
    pub shutdown_timeout_ms: u64,
    /// The file read, if any.
    pub config_file: Option<PathBuf>,
    /// Where events are stored.
    pub storage: Storage,
}

/// The HTTP listener's limits (ARCHITECTURE.md, "Limits", gives the reasons for the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most simultaneous connections.
    pub connections_max: usize,
    /// Most simultaneous connections from one source address.
    pub connections_per_ip_max: usize,
    /// Time to receive a request's headers; also the longest idle keep-alive gap, since hyper
    /// starts this clock whenever it waits for the next request on a connection.
    pub header_timeout: Duration,
    /// Time to receive a whole body, counted from the end of its headers.
    pub body_timeout: Duration,
    /// Time from a request's headers to its response's head.
    pub request_timeout: Duration,
    /// Most simultaneous live subscriptions.
    pub subscriptions_max: usize,
    /// Most bytes of one read page (beyond a single larger event).
    pub response_max_bytes: usize,
    /// Bytes of read pages held at once, by every request together.
    pub responses_max_bytes: usize,
    /// Bytes of request bodies being received at once, by every request together.
    pub bodies_max_bytes: usize,
}

impl Default for HttpLimits {
    /// The defaults: a cap as Kafka's listener has (1024, evident's Kafka default too, well
    /// under the usual 1024-descriptor soft limit raised for a server), and the same per source
    /// address, as evident's Kafka listener (Kafka's own `max.connections.per.ip` is unbounded):
    /// a per-address cap below the global one would only cut off the clients sharing an address
    /// (loopback, a NAT, a proxy), and at either cap idle connections are evicted, so a single
    /// address cannot lock others out anyway; an operator with many client hosts lowers it so
    /// one host cannot take every slot from the others' busy connections; a header timeout of
    /// 10 s, tighter than hyper's 30 s because it also bounds idle keep-alive connections (Apache
    /// keeps them 5 s, nginx 75 s); 20 s for a body (Apache's `RequestReadTimeout body=20`), which
    /// still lets an 8 MiB body through at 420 KB/s; 30 s per request, the request timeout Kafka
    /// clients default to (`request.timeout.ms`); and a quarter of the connections for live
    /// subscriptions, so followers can never take every connection from writers. Read pages
    /// take at most 4 MiB each (a thousand 4 KiB events; Kafka's default fetch.max.bytes is
    /// 50 MiB for a client that asked for it, a page is what one HTTP reader holds) and 64 MiB
    /// together, and bodies 64 MiB together (eight of the largest, 8 MiB): the memory an
    /// attacker can make the HTTP listener hold is then bounded by these sums, not by the
    /// connection count times the largest body or page.
    fn default() -> Self {
        Self {
            connections_max: 1024,
            connections_per_ip_max: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            subscriptions_max: 256,
            response_max_bytes: 4 << 20,
            responses_max_bytes: 64 << 20,
            bodies_max_bytes: 64 << 20,
        }
    }
}

/// Default Kafka address: loopback only.
pub const DEFAULT_KAFKA_ADDR: &str = "127.0.0.1:9092";
/// Default schema registry address: loopback only, on the port Confluent's clients expect.
pub const DEFAULT_REGISTRY_ADDR: &str = "127.0.0.1:8081";
/// Default HTTP address: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default body limit: the log's default batch limit, so any batch the log accepts fits.
pub const DEFAULT_BODY_MAX_BYTES: usize = 8 << 20;

impl ServeConfig {
    /// Resolves flags and environment (already merged by clap) over the file over defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let (file, config_file) = match &args.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None if Path::new("evident.toml").exists() => {
                (read_file(Path::new("evident.toml"))?, Some(PathBuf::from("evident.toml")))
            }
            None => (FileConfig::default(), None),
        };
        let fsync_text = args.fsync.or(file.fsync).unwrap_or_else(|| "always".into());
        let fsync: FsyncPolicy = fsync_text.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let http_body_max_bytes =
            args.http_body_max_bytes.or(file.http_body_max_bytes).unwrap_or(DEFAULT_BODY_MAX_BYTES);
        if http_body_max_bytes < 1024 {
            bail!("http_body_max_bytes must be at least 1024, not {http_body_max_bytes}");
        }
        let mut kafka = evident_kafka::KafkaConfig {
            addr: match args.kafka_addr.or(file.kafka_addr) {
                Some(a) => a,
                None => DEFAULT_KAFKA_ADDR.parse().context("default address")?,
            },
            ..evident_kafka::KafkaConfig::default()
        };
        if let Some(adv) = args.kafka_advertised_addr.or(file.kafka_advertised_addr) {
            let (host, port) = adv
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .filter(|(h, p)| !h.is_empty() && *p != 0)
                .ok_or_else(|| anyhow::anyhow!("kafka_advertised_addr must be HOST:PORT, not {adv:?}"))?;
            kafka.advertised = Some((host, port));
        }
        if let Some(auto) = args.auto_create_topics.or(file.auto_create_topics) {
            kafka.auto_create_topics = auto;
        }
        if let Some(n) = args.default_partitions.or(file.default_partitions) {
            if n == 0 || n > evident_log::TopicConfig::PARTITIONS_MAX {
                bail!("default_partitions must be between 1 and {}, not {n}", evident_log::TopicConfig::PARTITIONS_MAX);
            }
            kafka.default_partitions = n;
        }
        if let Some(n) = args.kafka_connections_max.or(file.kafka_connections_max) {
            kafka.connections_max = positive("kafka_connections_max", n)?;
        }
        if let Some(ms) = args.kafka_idle_timeout_ms.or(file.kafka_idle_timeout_ms) {
            kafka.idle_timeout = millis("kafka_idle_timeout_ms", ms)?;
        }
        if let Some(n) = args.kafka_request_max_bytes.or(file.kafka_request_max_bytes) {
            if n < 1024 {
                bail!("kafka_request_max_bytes must be at least 1024, not {n}");
            }
            kafka.request_max_bytes = n;
        }
        if let Some(n) = args.kafka_decompressed_max_bytes.or(file.kafka_decompressed_max_bytes) {
            if n < 1024 {
                bail!("kafka_decompressed_max_bytes must be at least 1024, not {n}");
            }
            kafka.decompressed_max_bytes = n;
        }
        if let Some(n) = args.kafka_decompressed_total_max_bytes.or(file.kafka_decompressed_total_max_bytes) {
            if n < 1024 {
                bail!("kafka_decompressed_total_max_bytes must be at least 1024, not {n}");
            }
            kafka.decompressed_total_max_bytes = n;
        }
        if let Some(ms) = args.kafka_request_timeout_ms.or(file.kafka_request_timeout_ms) {
            kafka.request_timeout = millis("kafka_request_timeout_ms", ms)?;
        }
        if let Some(n) = args.kafka_queued_request_max_bytes.or(file.kafka_queued_request_max_bytes) {
            kafka.queued_request_max_bytes = n;
        }
        if kafka.queued_request_max_bytes < kafka.request_max_bytes {
            bail!(
                "kafka_queued_request_max_bytes ({}) must be at least kafka_request_max_bytes ({})",
                kafka.queued_request_max_bytes,
                kafka.request_max_bytes
            );
        }
        if let Some(n) = args.kafka_connections_per_ip_max.or(file.kafka_connections_per_ip_max) {
            kafka.connections_per_ip_max = positive("kafka_connections_per_ip_max", n)?;
        }
        if let Some(n) = args.kafka_fetch_buffered_max_bytes.or(file.kafka_fetch_buffered_max_bytes) {
            if n < 1024 {
                bail!("kafka_fetch_buffered_max_bytes must be at least 1024, not {n}");
            }
            kafka.fetch_buffered_max_bytes = n;
        }
        let defaults = HttpLimits::default();
        let http_limits = HttpLimits {
            connections_max: match args.http_connections_max.or(file.http_connections_max) {
                Some(n) => positive("http_connections_max", n)?,
                None => defaults.connections_max,
            },
            connections_per_ip_max: match args.http_connections_per_ip_max.or(file.http_connections_per_ip_max) {
                Some(n) => positive("http_connections_per_ip_max", n)?,
                None => defaults.connections_per_ip_max,
            },
            header_timeout: match args.http_header_timeout_ms.or(file.http_header_timeout_ms) {
                Some(ms) => millis("http_header_timeout_ms", ms)?,
                None => defaults.header_timeout,
            },
            body_timeout: match args.http_body_timeout_ms.or(file.http_body_timeout_ms) {
                Some(ms) => millis("http_body_timeout_ms", ms)?,
                None => defaults.body_timeout,
            },
            request_timeout: match args.http_request_timeout_ms.or(file.http_request_timeout_ms) {
                Some(ms) => millis("http_request_timeout_ms", ms)?,
                None => defaults.request_timeout,
            },
            subscriptions_max: match args.http_subscriptions_max.or(file.http_subscriptions_max) {
                Some(n) => positive("http_subscriptions_max", n)?,
                None => defaults.subscriptions_max,
            },
            ..defaults
        };
        fn bytes_at_least(name: &str, value: Option<usize>, default: usize, min: usize) -> anyhow::Result<usize> {
            match value {
                Some(n) if n < min => bail!("{name} must be at least {min}, not {n}"),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        }
        let http_limits = HttpLimits {
            response_max_bytes: bytes_at_least(
                "http_response_max_bytes",
                args.http_response_max_bytes.or(file.http_response_max_bytes),
                defaults.response_max_bytes,
                1024,
            )?,
            responses_max_bytes: bytes_at_least(
                "http_responses_max_bytes",
                args.http_responses_max_bytes.or(file.http_responses_max_bytes),
                defaults.responses_max_bytes,
                1024,
            )?,
            // Below the body limit, the largest body could never be received.
            bodies_max_bytes: bytes_at_least(
                "http_bodies_max_bytes",
                args.http_bodies_max_bytes.or(file.http_bodies_max_bytes),
                defaults.bodies_max_bytes.max(http_body_max_bytes),
                http_body_max_bytes,
            )?,
            ..http_limits
        };
        let http_threads = match args.http_threads.or(file.http_threads) {
            Some(n) => positive("http_threads", n)?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let registry_addr = match args.registry_addr.or(file.registry_addr) {
            Some(text) if text.trim().eq_ignore_ascii_case("none") => None,
            Some(text) => Some(
                text.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| anyhow::anyhow!("registry_addr must be IP:PORT or none, not {text:?}: {e}"))?,
            ),
            None => Some(DEFAULT_REGISTRY_ADDR.parse().context("default address")?),
        };
        let storage = Storage::parse(
            &args.storage.or(file.storage).unwrap_or_else(|| "embedded".into()),
            KafkaOptions {
                node_url: args.node_url.or(file.node_url),
                ownership_group: args.ownership_group.or(file.ownership_group),
                topic_prefix: args.topic_prefix.or(file.topic_prefix),
            },
        )?;
        Ok(Self {
            storage,
            kafka,
            registry_addr,
            http_limits,
            http_threads,
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data")),
            http_addr: match args.http_addr.or(file.http_addr) {
                Some(a) => a,
                None => DEFAULT_HTTP_ADDR.parse().context("default address")?,
            },
            fsync,
            http_body_max_bytes,
            shutdown_timeout_ms: args.shutdown_timeout_ms.or(file.shutdown_timeout_ms).unwrap_or(10_000),
            config_file,
        })
    }
}

/// A count that must be at least 1 (0 would refuse every client, which is never meant).
fn positive(name: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

/// A timeout that must be at least 1 ms (0 would cut every client off; there is no "off").
fn millis(name: &str, ms: u64) -> anyhow::Result<Duration> {
    if ms == 0 {
        bail!("{name} must be at least 1 ms");
    }
    Ok(Duration::from_millis(ms))
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read configuration {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("evident.toml");
        std::fs::write(&path, "data_dir = \"/from/file\"\nhttp_addr = \"127.0.0.1:9999\"\nfsync = \"never\"\n")
            .expect("write");
        let args = ServeArgs {
            config: Some(path.clone()),
            http_addr: Some("127.0.0.1:7777".parse().expect("addr")),
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve(args).expect("resolves");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.http_addr.port(), 7777);
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.http_body_max_bytes, DEFAULT_BODY_MAX_BYTES);
        assert_eq!(c.config_file, Some(path));
        assert_eq!(c.http_limits, HttpLimits::default());
    }

    #[test]
    fn limits_come_from_the_file_and_flags_and_zero_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("evident.toml");
        std::fs::write(
            &path,
            "http_connections_max = 10\nhttp_connections_per_ip_max = 4\nhttp_subscriptions_max = 3\nhttp_body_timeout_ms = 700\nkafka_idle_timeout_ms = 5000\n",
        )
        .expect("write");
        let args = ServeArgs { config: Some(path.clone()), http_header_timeout_ms: Some(250), ..ServeArgs::default() };
        let c = ServeConfig::resolve(args).expect("resolves");
        assert_eq!(c.http_limits.connections_max, 10);
        assert_eq!(c.http_limits.connections_per_ip_max, 4);
        assert_eq!(c.http_limits.subscriptions_max, 3);
        assert_eq!(c.http_limits.body_timeout, Duration::from_millis(700));
        assert_eq!(c.http_limits.header_timeout, Duration::from_millis(250));
        assert_eq!(c.http_limits.request_timeout, HttpLimits::default().request_timeout);
        assert_eq!(c.kafka.idle_timeout, Duration::from_secs(5));
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            http_connections_max: Some(0),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("http_connections_max must be at least 1"), "{err:#}");
    }

    #[test]
    fn storage_is_embedded_or_a_kafka_cluster_and_anything_else_is_refused() {
        let resolve = |storage: Option<&str>, env: &[(&str, &str)]| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("e.toml");
            let file: String = env.iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect();
            std::fs::write(&path, file).expect("write");
            ServeConfig::resolve(ServeArgs {
                config: Some(path),
                storage: storage.map(str::to_string),
                ..ServeArgs::default()
            })
        };
        assert_eq!(resolve(None, &[]).expect("default").storage, Storage::Embedded);
        let kafka = resolve(Some("kafka://127.0.0.1:9092, 127.0.0.1:9093"), &[("node_url", "http://10.0.0.1:8080")])
            .expect("kafka");
        assert_eq!(
            kafka.storage,
            Storage::Kafka {
                bootstrap: "127.0.0.1:9092,127.0.0.1:9093".into(),
                node_url: Some("http://10.0.0.1:8080".into()),
                ownership_group: "evident-serve".into(),
                topic_prefix: String::new(),
            }
        );
        // The file's storage, the flag's over it.
        let from_file = resolve(None, &[("storage", "kafka://h:1"), ("ownership_group", "g")]).expect("file");
        assert!(matches!(from_file.storage, Storage::Kafka { ref ownership_group, .. } if ownership_group == "g"));
        for (bad, why) in [
            ("postgres://x", "storage must be embedded or kafka://"),
            ("kafka://", "is not one"),
            ("kafka://host", "is not one"),
            ("kafka://h:0", "is not one"),
            ("kafka://h:1,,h:2", "is not one"),
        ] {
            let err = resolve(Some(bad), &[]).unwrap_err();
            assert!(format!("{err:#}").contains(why), "{bad}: {err:#}");
        }
        let err = resolve(Some("embedded"), &[("ownership_group", "g")]).unwrap_err();
        assert!(format!("{err:#}").contains("kafka:// storage only"), "{err:#}");
        let err = resolve(Some("embedded"), &[("topic_prefix", "app.")]).unwrap_err();
        assert!(format!("{err:#}").contains("kafka:// storage only"), "{err:#}");
        let prefixed = resolve(Some("kafka://h:1"), &[("topic_prefix", "billing.v1-")]).expect("prefix");
        assert!(matches!(prefixed.storage, Storage::Kafka { ref topic_prefix, .. } if topic_prefix == "billing.v1-"));
        let err = resolve(Some("kafka://h:1"), &[("topic_prefix", "a/b")]).unwrap_err();
        assert!(format!("{err:#}").contains("topic_prefix must be"), "{err:#}");
        let err = resolve(Some("kafka://h:1"), &[("node_url", "ftp://x")]).unwrap_err();
        assert!(format!("{err:#}").contains("node_url must be"), "{err:#}");
    }

    #[test]
    fn unknown_file_keys_and_bad_policies_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("evident.toml");
        std::fs::write(&path, "data_dri = \"x\"\n").expect("write");
        let err = ServeConfig::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err();
        assert!(format!("{err:#}").contains("data_dri"), "{err:#}");
        let err =
            ServeConfig::resolve(ServeArgs { config: Some(dir.path().join("absent.toml")), ..ServeArgs::default() })
                .unwrap_err();
        assert!(format!("{err:#}").contains("cannot read configuration"));
        let dir2 = tempfile::tempdir().expect("tempdir");
        let p2 = dir2.path().join("e.toml");
        std::fs::write(&p2, "").expect("write");
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(p2),
            fsync: Some("sometimes".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("invalid fsync policy"));
    }
}
