//! `/v1/topics`: create, list, describe, delete. Names starting with `__` belong to evident's
//! internal topics (`__consumer_offsets`): they cannot be created, deleted or written over
//! HTTP, and are listed only on request.
//!
//! Retention and compaction settings are stored but not enforced yet; the reply to a creation
//! says so in `warnings`, so nobody learns it from a full disk.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_api::params::{TopicListQuery, TopicPath};
use evident_api::topics::{
    CleanupPolicy, CreateTopic, CreatedTopic, KeyPartitioner, PartitionOffsets, Topic, TopicConfig, TopicDescription,
    TopicList,
};
use evident_api::ErrorBody;
use evident_log::TopicMeta;

use super::event_json::rfc3339;
use super::extract::{JsonBody, Params, PathParams};
use super::{ApiError, AppState};

/// Whether a topic is internal to evident.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__") || evident_groups::is_internal_topic(name)
}

/// Refuses writes to internal topics.
pub fn refuse_internal(name: &str) -> Result<(), ApiError> {
    if is_internal(name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "internal_topic",
            format!("topic {name} is internal to evident and cannot be changed over the API"),
        ));
    }
    Ok(())
}

/// The wire form of a stored configuration.
fn config_wire(c: &evident_log::TopicConfig) -> TopicConfig {
    TopicConfig {
        partitions: c.partitions,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        cleanup_policy: match c.cleanup_policy {
            evident_log::CleanupPolicy::Delete => CleanupPolicy::Delete,
            evident_log::CleanupPolicy::Compact => CleanupPolicy::Compact,
        },
        key_partition_guard: c.key_partition_guard,
        key_partitioner: match c.key_partitioner {
            evident_core::partitioner::KeyPartitioner::Murmur2 => KeyPartitioner::Murmur2,
            evident_core::partitioner::KeyPartitioner::Crc32 => KeyPartitioner::Crc32,
            evident_core::partitioner::KeyPartitioner::Fnv1a => KeyPartitioner::Fnv1a,
        },
    }
}

/// The log's form of a requested configuration.
fn config_log(c: &TopicConfig) -> evident_log::TopicConfig {
    evident_log::TopicConfig {
        partitions: c.partitions,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        cleanup_policy: match c.cleanup_policy {
            CleanupPolicy::Delete => evident_log::CleanupPolicy::Delete,
            CleanupPolicy::Compact => evident_log::CleanupPolicy::Compact,
        },
        key_partition_guard: c.key_partition_guard,
        key_partitioner: match c.key_partitioner {
            KeyPartitioner::Murmur2 => evident_core::partitioner::KeyPartitioner::Murmur2,
            KeyPartitioner::Crc32 => evident_core::partitioner::KeyPartitioner::Crc32,
            KeyPartitioner::Fnv1a => evident_core::partitioner::KeyPartitioner::Fnv1a,
        },
        // Kafka's message.timestamp.type and the confluent.* schema validation settings: the
        // HTTP API does not set them (Kafka's CreateTopics and AlterConfigs do).
        ..evident_log::TopicConfig::default()
    }
}

fn topic_wire(meta: &TopicMeta) -> Topic {
    Topic {
        name: meta.name.as_str().to_string(),
        id: meta.id,
        partitions: meta.config.partitions,
        internal: is_internal(meta.name.as_str()),
        created: rfc3339(meta.created_ms),
        config: config_wire(&meta.config),
    }
}

/// Create a topic.
///
/// Retention (`retention_ms`, `retention_bytes`) and compaction (`cleanup_policy: compact`) are
/// stored but not enforced yet: the reply's `warnings` names each such setting given.
#[utoipa::path(
    post,
    path = "/v1/topics",
    tag = "topics",
    operation_id = "createTopic",
    request_body = CreateTopic,
    responses(
        (status = 201, description = "The topic was created.", body = CreatedTopic),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_topic_name` (Kafka's rules, or a reserved `__` name), `invalid_config`, `invalid_argument`.", body = ErrorBody),
        (status = 409, description = "`topic_exists`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store refuses writes until restarted.", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<AppState>,
    params: Params,
    JsonBody(body): JsonBody<CreateTopic>,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    if is_internal(&body.name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_topic_name",
            format!("topic names starting with __ are reserved for evident's internal topics: {}", body.name),
        ));
    }
    let mut config = body.config.unwrap_or_default();
    if let Some(p) = body.partitions {
        if config.partitions != TopicConfig::default().partitions && config.partitions != p {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                "partitions is given twice (top level and config) with different values",
            ));
        }
        config.partitions = p;
    }
    let warnings = config.unenforced_warnings();
    let log = state.log.clone();
    let stored = config_log(&config);
    let meta = state.blocking(move || Ok(log.create_topic(&body.name, stored)?)).await?;
    Ok((StatusCode::CREATED, Json(CreatedTopic { topic: topic_wire(&meta), warnings })).into_response())
}

/// List topics.
#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    operation_id = "listTopics",
    params(TopicListQuery),
    responses(
        (status = 200, description = "The topics, sorted by name.", body = TopicList),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
    )
)]
pub(super) async fn list(State(state): State<AppState>, params: Params) -> Result<Json<TopicList>, ApiError> {
    params.allow(&["internal"])?;
    let internal = params.bool("internal")?;
    let mut topics = state.log.list_topics();
    topics.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let topics = topics.iter().filter(|t| internal || !is_internal(t.name.as_str())).map(topic_wire).collect();
    Ok(Json(TopicList { topics }))
}

/// Describe a topic: its configuration, counts and each partition's offsets.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}",
    tag = "topics",
    operation_id = "describeTopic",
    params(TopicPath),
    responses(
        (status = 200, description = "The topic.", body = TopicDescription),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
        (status = 404, description = "`unknown_topic`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
    )
)]
pub(super) async fn describe(
    State(state): State<AppState>,
    PathParams(topic): PathParams<String>,
    params: Params,
) -> Result<Json<TopicDescription>, ApiError> {
    params.allow(&[])?;
    let d = state.log.describe_topic(&topic)?;
    let partition_offsets: Vec<PartitionOffsets> = d
        .partitions
        .iter()
        .zip(&d.partition_bytes)
        .map(|(p, bytes)| PartitionOffsets {
            partition: p.partition,
            log_start_offset: p.log_start_offset,
            high_watermark: p.high_watermark,
            size_bytes: *bytes,
        })
        .collect();
    Ok(Json(TopicDescription {
        topic: topic_wire(&d.meta),
        streams: d.streams as u64,
        records: d.partitions.iter().map(|p| p.high_watermark - p.log_start_offset).sum(),
        size_bytes: d.partition_bytes.iter().sum(),
        partition_offsets,
    }))
}

/// Delete a topic and its records.
#[utoipa::path(
    delete,
    path = "/v1/topics/{topic}",
    tag = "topics",
    operation_id = "deleteTopic",
    params(TopicPath),
    responses(
        (status = 204, description = "The topic was deleted."),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
        (status = 403, description = "`internal_topic`: internal topics cannot be deleted.", body = ErrorBody),
        (status = 404, description = "`unknown_topic`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    PathParams(topic): PathParams<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.allow(&[])?;
    refuse_internal(&topic)?;
    let log = state.log.clone();
    state.blocking(move || Ok(log.delete_topic(&topic)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
