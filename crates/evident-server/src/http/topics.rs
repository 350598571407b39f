//! `/v1/topics`: create, list, describe, delete. Names starting with `__` belong to evident's
//! internal topics (`__consumer_offsets`): they cannot be created, deleted or written over
//! HTTP, and are listed only on request.
//!
//! Retention and compaction settings are stored but not enforced yet; the reply to a creation
//! says so in `warnings`, so nobody learns it from a full disk.
//!
//! The schema validation settings (Kafka's `confluent.*` topic configs) are set at creation
//! here; changing them later is Kafka's AlterConfigs, as for every other setting: the HTTP API
//! has no route that alters a topic.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_api::params::{TopicListQuery, TopicPath};
use evident_api::topics::{
    CleanupPolicy, CreateTopic, CreatedTopic, KeyPartitioner, KeySubjectNameStrategy, PartitionOffsets,
    SubjectNameStrategy, Topic, TopicConfig, TopicDescription, TopicList,
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
        value_schema_validation: c.value_schema_validation,
        key_schema_validation: c.key_schema_validation,
        value_subject_name_strategy: c.value_subject_name_strategy.map(|s| match s {
            evident_log::SubjectNameStrategy::Topic => SubjectNameStrategy::Topic,
            evident_log::SubjectNameStrategy::Record => SubjectNameStrategy::Record,
            evident_log::SubjectNameStrategy::TopicRecord => SubjectNameStrategy::TopicRecord,
            evident_log::SubjectNameStrategy::EventType => SubjectNameStrategy::EventType,
        }),
        key_subject_name_strategy: c.key_subject_name_strategy.and_then(|s| match s {
            evident_log::SubjectNameStrategy::Topic => Some(KeySubjectNameStrategy::Topic),
            evident_log::SubjectNameStrategy::Record => Some(KeySubjectNameStrategy::Record),
            evident_log::SubjectNameStrategy::TopicRecord => Some(KeySubjectNameStrategy::TopicRecord),
            // Never stored: every front door refuses the event-type strategy for keys. Shown
            // as not set rather than failing every reply that names the topic.
            evident_log::SubjectNameStrategy::EventType => None,
        }),
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
        value_schema_validation: c.value_schema_validation,
        key_schema_validation: c.key_schema_validation,
        value_subject_name_strategy: c.value_subject_name_strategy.map(|s| match s {
            SubjectNameStrategy::Topic => evident_log::SubjectNameStrategy::Topic,
            SubjectNameStrategy::Record => evident_log::SubjectNameStrategy::Record,
            SubjectNameStrategy::TopicRecord => evident_log::SubjectNameStrategy::TopicRecord,
            SubjectNameStrategy::EventType => evident_log::SubjectNameStrategy::EventType,
        }),
        key_subject_name_strategy: c.key_subject_name_strategy.map(|s| match s {
            KeySubjectNameStrategy::Topic => evident_log::SubjectNameStrategy::Topic,
            KeySubjectNameStrategy::Record => evident_log::SubjectNameStrategy::Record,
            KeySubjectNameStrategy::TopicRecord => evident_log::SubjectNameStrategy::TopicRecord,
        }),
        // Kafka's message.timestamp.type: the HTTP API does not set it (Kafka's CreateTopics
        // and AlterConfigs do).
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
/// stored but not enforced yet: the reply's `warnings` names each such setting given. Schema
/// validation (`value_schema_validation`, `key_schema_validation` and the subject name
/// strategies) is set here and changed with Kafka's AlterConfigs (`confluent.*` names).
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
    if let Some(cluster) = &state.cluster {
        return create_on_cluster(&state, cluster, &body.name, &config, warnings).await;
    }
    let log = state.log.clone();
    let stored = config_log(&config);
    let meta = state.blocking(move || Ok(log.create_topic(&body.name, stored)?)).await?;
    Ok((StatusCode::CREATED, Json(CreatedTopic { topic: topic_wire(&meta), warnings })).into_response())
}

/// Creates a topic on the Kafka cluster (replication factor 3 and `min.insync.replicas` 2 on
/// three brokers or more) and answers it once this node's mirror follows it. Only the
/// partitions and the cleanup policy are set through evident there; any other setting is
/// refused (`400 invalid_config`) rather than dropped: the cluster's own tools set them.
async fn create_on_cluster(
    state: &AppState,
    cluster: &super::cluster::Cluster,
    name: &str,
    config: &evident_api::topics::TopicConfig,
    warnings: Vec<String>,
) -> Result<Response, ApiError> {
    let defaults = evident_api::topics::TopicConfig::default();
    let compacted = config.cleanup_policy == evident_api::topics::CleanupPolicy::Compact;
    let rest = evident_api::topics::TopicConfig {
        partitions: defaults.partitions,
        cleanup_policy: defaults.cleanup_policy,
        ..config.clone()
    };
    if rest != defaults {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_config",
            "with --storage kafka:// a topic is created with partitions and cleanup_policy only; \
             set its other configs on the cluster (kafka-configs --alter)",
        ));
    }
    let exists = || ApiError::of(evident_api::ErrorCode::TopicExists, format!("topic {name} already exists"));
    if state.log.topic_meta(name).is_ok() {
        return Err(exists());
    }
    // The cluster decides (this node's mirror may not list a topic another node just created).
    let spec = evident::TopicSpec { partitions: config.partitions, compacted };
    if !cluster.backend.create_topic(name, spec).await.map_err(super::cluster::from_backend)? {
        return Err(exists());
    }
    let meta = state.log.topic_meta(name)?;
    // Kafka enforces the cleanup policy (the mirror's copy names it), so nothing is left to
    // warn about: every other setting was refused above.
    debug_assert!(warnings.iter().all(|w| w.starts_with("cleanup_policy")), "{warnings:?}");
    Ok((StatusCode::CREATED, Json(CreatedTopic { topic: topic_wire(&meta), warnings: Vec::new() })).into_response())
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
    // On a node, the list is the cluster's as of this request (another node may just have
    // created a topic).
    if let Some(cluster) = &state.cluster {
        cluster.backend.refresh_topics().await.map_err(super::cluster::from_backend)?;
    }
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
    // On a node, the mirror first knows the topic (another node may just have created it) and
    // holds every committed record; the offsets shown are then Kafka's.
    let kafka_ends = match &state.cluster {
        Some(cluster) => match cluster.backend.catch_up_topic(&topic).await.map_err(super::cluster::from_backend)? {
            Some(ends) => Some(ends),
            None => return Err(evident_log::Error::UnknownTopic(topic).into()),
        },
        None => None,
    };
    let d = state.log.describe_topic(&topic)?;
    let mut partition_offsets: Vec<PartitionOffsets> = d
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
    if let Some(ends) = kafka_ends {
        let log = state.log.clone();
        let t = topic.clone();
        let firsts = state
            .blocking(move || {
                let mut firsts = Vec::new();
                for p in &d_partitions(&log, &t)? {
                    let first = if p.high_watermark > p.log_start_offset {
                        log.read_partition_events(&t, p.partition, p.log_start_offset, 1)?
                            .first()
                            .and_then(super::cluster::kafka_offset)
                    } else {
                        None
                    };
                    firsts.push(first);
                }
                Ok(firsts)
            })
            .await?;
        for ((row, end), first) in partition_offsets.iter_mut().zip(ends).zip(firsts) {
            row.high_watermark = end;
            row.log_start_offset = first.unwrap_or(end).min(end);
        }
    }
    Ok(Json(TopicDescription {
        topic: topic_wire(&d.meta),
        streams: d.streams as u64,
        // The records held (on a node, the mirror's count: Kafka's offsets have gaps).
        records: d.partitions.iter().map(|p| p.high_watermark - p.log_start_offset).sum(),
        size_bytes: d.partition_bytes.iter().sum(),
        partition_offsets,
    }))
}

/// A topic's partitions as the log holds them (the mirror's, on a node).
fn d_partitions(log: &evident_log::Log, topic: &str) -> Result<Vec<evident_log::PartitionOffsets>, ApiError> {
    Ok(log.describe_topic(topic)?.partitions)
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
        (status = 501, description = "`not_on_cluster`: the server's storage is a Kafka cluster (`--storage kafka://`), which does not serve this route (docs/cluster.md).", body = evident_api::ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    PathParams(topic): PathParams<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.allow(&[])?;
    refuse_internal(&topic)?;
    state.embedded_only("topic deletions", "delete the topic on the cluster (kafka-topics --delete)")?;
    let log = state.log.clone();
    state.blocking(move || Ok(log.delete_topic(&topic)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use evident_log::SubjectNameStrategy as LogStrategy;
    use serde_json::{json, Value};
    use tower::ServiceExt as _;

    use super::*;

    /// Every schema validation setting the log can hold from a front door survives log → wire →
    /// log, and every wire configuration survives wire → log → wire: nothing set over Kafka is
    /// lost by an HTTP reply, nothing set over HTTP is lost in the catalog.
    #[test]
    fn schema_validation_settings_map_both_ways() {
        let values = [None, Some(LogStrategy::Topic), Some(LogStrategy::Record), Some(LogStrategy::TopicRecord)];
        let keys = values;
        let values = values.into_iter().chain([Some(LogStrategy::EventType)]);
        for value in values {
            for key in keys {
                for (v, k) in [(false, false), (true, false), (false, true), (true, true)] {
                    let log = evident_log::TopicConfig {
                        partitions: 3,
                        value_schema_validation: v,
                        key_schema_validation: k,
                        value_subject_name_strategy: value,
                        key_subject_name_strategy: key,
                        ..evident_log::TopicConfig::default()
                    };
                    let wire = config_wire(&log);
                    assert_eq!(config_log(&wire), log, "{wire:?}");
                    assert_eq!(config_wire(&config_log(&wire)), wire);
                }
            }
        }
        // The defaults agree: an HTTP topic with no config is a Kafka topic with none.
        assert_eq!(config_log(&TopicConfig::default()), evident_log::TopicConfig::default());
        assert_eq!(config_wire(&evident_log::TopicConfig::default()), TopicConfig::default());
    }

    async fn post(body: Value) -> (StatusCode, Value) {
        let (_dir, router) = super::super::tests::test_router();
        let request = Request::post("/v1/topics")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("a JSON reply"))
    }

    #[tokio::test]
    async fn a_bad_strategy_name_is_a_400_with_the_choices() {
        for (field, bad) in [
            ("value_subject_name_strategy", "TopicName"),
            ("value_subject_name_strategy", "io.confluent.kafka.serializers.subject.Nope"),
            // evident's event-type strategy names values only, as over Kafka.
            ("key_subject_name_strategy", "EventTypeNameStrategy"),
        ] {
            let (status, body) = post(json!({"name": "orders", "config": {field: bad}})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={bad}: {body}");
            assert_eq!(body["error"]["code"], "malformed_json", "{body}");
            let message = body["error"]["message"].as_str().expect("message");
            assert!(message.contains(bad) && message.contains("TopicRecordNameStrategy"), "{message}");
        }
        let (status, body) = post(json!({"name": "orders", "config": {"value_schema_validation": "yes"}})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // The full class name is accepted, as Kafka's config is, and answered with the short one.
        let (status, body) = post(json!({"name": "orders", "config": {
            "value_schema_validation": true,
            "value_subject_name_strategy": "evident.subject.EventTypeNameStrategy",
            "key_subject_name_strategy": "io.confluent.kafka.serializers.subject.RecordNameStrategy"}}))
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["config"]["value_schema_validation"], true, "{body}");
        assert_eq!(body["config"]["key_schema_validation"], false, "{body}");
        assert_eq!(body["config"]["value_subject_name_strategy"], "EventTypeNameStrategy", "{body}");
        assert_eq!(body["config"]["key_subject_name_strategy"], "RecordNameStrategy", "{body}");
        assert_eq!(body["warnings"], json!([]), "{body}");
    }
}
