//! The HTTP API in front of an Apache Kafka cluster (`evident serve --storage kafka://`,
//! docs/cluster.md). Kafka stores and replicates the events; this node keeps a mirror of the
//! cluster (the library's `KafkaBackend`: an evident log in the data directory, fed by a
//! `read_committed` consumer) and serves reads from it, each after the mirror caught up with
//! the partition's last stable offset, so a read sees every append acknowledged before it by
//! any node. Appends go to Kafka through the backend: the expected version and event ids are
//! checked against the caught-up mirror with the embedded log's own rules, then the events are
//! produced in a transaction whose transactional id is the partition's lock.
//!
//! **Ownership and forwarding.** The nodes of one cluster join a consumer group
//! (`--ownership-group`) whose assignment shares the partitions; each node takes the
//! transactional ids of its partitions. An append for a partition another node owns is
//! forwarded to that node's `--node-url` (one hop: a forwarded request, marked with
//! [`FORWARDED_BY`], is appended where it lands), so each partition's id stays with one node
//! instead of moving at every append. Forwarding is an optimisation, never what makes an
//! append safe: the id's epoch fences any other writer, so when the owner cannot be reached
//! the receiving node appends itself, correctly, and the owner takes the id back later.
//!
//! **Offsets.** Events carry their Kafka offsets (`evident-kafka-offset` in the mirror,
//! rendered as `offset`); sequences are this node's mirror's commit order, stable while its
//! data directory is kept, and differ between nodes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use evident::{KafkaAppendError, KafkaBackend, KafkaGroups};
use evident_api::ErrorCode;
use evident_core::{EventData, ExpectedVersion};
use evident_log::AppendOutcome;

use super::ApiError;

/// Request header of an append forwarded by another node (its URL): appended where it lands.
pub const FORWARDED_BY: &str = "evident-forwarded-by";

/// How long a forwarded append may take: the owner's append waits for Kafka (bounded by the
/// backend's timeout) and this node's request deadline bounds the whole anyway.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// This node's part of a cluster.
pub struct Cluster {
    /// The library's Kafka backend (its mirror is the server's log).
    pub backend: KafkaBackend,
    /// The cluster's consumer groups (`/v1/groups`).
    pub groups: KafkaGroups,
    /// The URL other nodes reach this one at.
    pub node_url: String,
    client: reqwest::Client,
    /// Appends forwarded to their partition's owner.
    pub forwarded: AtomicU64,
    /// Forwards that failed to reach the owner (then appended here).
    pub forward_failures: AtomicU64,
    /// Owners a forward failed to reach, and until when they are not tried again: a dead
    /// node's partitions stay assigned to it until its session timeout, and a host that does
    /// not answer would otherwise cost every append the connect timeout.
    unreachable: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long an owner a forward could not reach is not tried again (its appends are made
/// here meanwhile).
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_url", &self.node_url).finish_non_exhaustive()
    }
}

/// What became of an append request.
pub enum Appended {
    /// Appended by this node.
    Here(AppendOutcome),
    /// Forwarded: the owner's response, as it answered.
    Forwarded(Response),
}

impl Cluster {
    /// This node, reachable at `node_url`, over `backend`.
    pub fn new(backend: KafkaBackend, groups: KafkaGroups, node_url: String) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A node forwards to its peers directly, never through a proxy of the environment.
            .no_proxy()
            .build()?;
        Ok(Self {
            backend,
            groups,
            node_url,
            client,
            forwarded: AtomicU64::new(0),
            forward_failures: AtomicU64::new(0),
            unreachable: Default::default(),
        })
    }

    /// Appends `events` (parsed from `body`, the request as received, with its `query`) to
    /// `topic`/`key` at `expected`: forwarded to the partition's owner when another node owns
    /// it and the request was not forwarded already, else appended here.
    #[allow(clippy::too_many_arguments)]
    pub async fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Appended, ApiError> {
        if !headers.contains_key(FORWARDED_BY) {
            // Not knowing the owner (the group settling, a describe failing) is not an error:
            // this node appends.
            if let Ok(Some(owner)) = self.backend.owner_address(topic, key).await {
                if owner != self.node_url && self.reachable(&owner) {
                    match self.forward(&owner, topic, key, headers, query, body).await {
                        Ok(response) => {
                            self.forwarded.fetch_add(1, Ordering::Relaxed);
                            return Ok(Appended::Forwarded(response));
                        }
                        Err(e) => {
                            self.forward_failures.fetch_add(1, Ordering::Relaxed);
                            self.lock_unreachable().insert(owner.clone(), std::time::Instant::now() + UNREACHABLE_FOR);
                            tracing::warn!(%owner, %topic, error = %e, "cluster: forwarding an append failed; appending here (not forwarding to that node for 2 s)");
                        }
                    }
                }
            }
        }
        match self.backend.append_outcome(topic, key, expected, events).await {
            Ok(outcome) => Ok(Appended::Here(outcome)),
            Err(KafkaAppendError::Refused(e)) => Err(ApiError::from(e)),
            // Failed at Kafka, it may have been committed before the failure was seen: its
            // outcome is unknown, and a retry with the same ids is idempotent.
            Err(KafkaAppendError::Failed(evident::Error::Unavailable(why))) => Err(ApiError::of(
                ErrorCode::OutcomeUnknown,
                format!("the append to {topic}/{key} may or may not be on the Kafka cluster: {why}"),
            )
            .with_event_ids(|| events.iter().map(|e| e.id.to_string()).collect())),
            Err(KafkaAppendError::Failed(e)) => Err(from_backend(e)),
        }
    }

    /// Whether `owner` may be forwarded to (no failed forward in the last [`UNREACHABLE_FOR`]).
    fn reachable(&self, owner: &str) -> bool {
        let mut unreachable = self.lock_unreachable();
        match unreachable.get(owner) {
            Some(until) if *until > std::time::Instant::now() => false,
            Some(_) => {
                unreachable.remove(owner);
                true
            }
            None => true,
        }
    }

    fn lock_unreachable(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
        self.unreachable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the request to `owner` and answers its response (status, content type, body). A
    /// request that cannot be sent or whose response cannot be read is an error (appended
    /// here instead): the owner did not take it, or its answer is lost, and an append here
    /// with the same event ids is then an idempotent retry either way.
    async fn forward(
        &self,
        owner: &str,
        topic: &str,
        key: &str,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        let mut url = reqwest::Url::parse(owner).map_err(|e| format!("the owner's URL {owner:?}: {e}"))?;
        url.path_segments_mut()
            .map_err(|()| format!("the owner's URL {owner:?} cannot take a path"))?
            .pop_if_empty()
            .extend(["v1", "topics", topic, "streams", key]);
        url.set_query(query);
        let mut request = self.client.post(url).header(FORWARDED_BY, &self.node_url).body(body.to_vec());
        if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
            request = request.header(reqwest::header::CONTENT_TYPE, ct.as_bytes());
        }
        let reply = request.send().await.map_err(|e| causes(&e))?;
        let status = StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = reply.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.as_bytes().to_vec());
        let bytes = reply.bytes().await.map_err(|e| causes(&e))?;
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        if let Some(ct) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
            response.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
        }
        Ok(response)
    }

    /// Waits until the mirror holds `topic`/`key`'s partition up to its last stable offset.
    pub async fn catch_up_stream(&self, topic: &str, key: &str) -> Result<(), ApiError> {
        self.backend.catch_up_stream(topic, key).await.map(|_| ()).map_err(from_backend)
    }

    /// The mirror offset to read `topic`/`partition` from for Kafka offset `offset` (None:
    /// past the end), once the mirror caught up with the partition's last stable offset.
    pub async fn mirror_offset(&self, topic: &str, partition: u32, offset: u64) -> Result<Option<u64>, ApiError> {
        self.backend.mirror_offset_of(topic, partition, offset).await.map_err(from_backend)
    }
}

/// The Kafka offset a record of the mirror carries (`evident-kafka-offset`).
pub fn kafka_offset(e: &evident_log::Event) -> Option<u64> {
    e.header(evident_core::envelope::KAFKA_OFFSET).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

/// An error and its causes, one line (reqwest's own text names only the URL).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A library error of the Kafka backend as the API's error.
pub fn from_backend(e: evident::Error) -> ApiError {
    use evident::Error as E;
    match e {
        E::UnknownTopic(topic) => ApiError::of(ErrorCode::UnknownTopic, format!("unknown topic {topic}")),
        E::Rejected(why) => ApiError::of(ErrorCode::InvalidArgument, why),
        E::Unavailable(why) => ApiError::of(ErrorCode::Unavailable, format!("the Kafka cluster: {why}")),
        other => ApiError::of(ErrorCode::Unavailable, other.to_string()),
    }
}

/// The refusal of a route the embedded store serves and a cluster front does not.
pub fn not_on_cluster(what: &str, instead: &str) -> ApiError {
    ApiError::of(
        ErrorCode::NotOnCluster,
        format!("{what} are not served with --storage kafka:// (the storage is a Kafka cluster): {instead}"),
    )
}
