//! `/v1/topics`: create, list, describe, delete. Names starting with `__` belong to evident's
//! internal topics (`__consumer_offsets`): they cannot be created, deleted or written over
//! HTTP, and are listed only on request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_log::{TopicConfig, TopicMeta};
use serde::Deserialize;
use serde_json::{json, Value};

use super::event_json::rfc3339;
use super::extract::{JsonBody, Params, PathParams};
use super::{ApiError, AppState};

/// Whether a topic is internal to evident.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTopic {
    name: String,
    #[serde(default)]
    partitions: Option<u32>,
    #[serde(default)]
    config: Option<TopicConfig>,
}

fn topic_json(meta: &TopicMeta) -> Value {
    json!({
        "name": meta.name.as_str(),
        "id": meta.id,
        "partitions": meta.config.partitions,
        "internal": is_internal(meta.name.as_str()),
        "created": rfc3339(meta.created_ms),
        "config": meta.config,
    })
}

/// `POST /v1/topics`.
pub(super) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateTopic>,
) -> Result<Response, ApiError> {
    if is_internal(&body.name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_topic_name",
            format!("topic names starting with __ are reserved for evident's internal topics: {}", body.name),
        ));
    }
    let mut config = body.config.unwrap_or_default();
    if let Some(p) = body.partitions {
        if body.partitions.is_some() && config.partitions != TopicConfig::default().partitions && config.partitions != p
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                "partitions is given twice (top level and config) with different values",
            ));
        }
        config.partitions = p;
    }
    let log = state.log.clone();
    let meta = state.blocking(move || Ok(log.create_topic(&body.name, config)?)).await?;
    Ok((StatusCode::CREATED, Json(topic_json(&meta))).into_response())
}

/// `GET /v1/topics`.
pub(super) async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Value>, ApiError> {
    params.allow(&["internal"])?;
    let internal = params.bool("internal")?;
    let mut topics = state.log.list_topics();
    topics.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let topics: Vec<Value> =
        topics.iter().filter(|t| internal || !is_internal(t.name.as_str())).map(topic_json).collect();
    Ok(Json(json!({ "topics": topics })))
}

/// `GET /v1/topics/{topic}`.
pub(super) async fn describe(
    State(state): State<AppState>,
    PathParams(topic): PathParams<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    let d = state.log.describe_topic(&topic)?;
    let mut out = topic_json(&d.meta);
    let partitions: Vec<Value> = d
        .partitions
        .iter()
        .zip(&d.partition_bytes)
        .map(|(p, bytes)| {
            json!({
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "size_bytes": bytes,
            })
        })
        .collect();
    let records: u64 = d.partitions.iter().map(|p| p.high_watermark - p.log_start_offset).sum();
    out["streams"] = json!(d.streams);
    out["records"] = json!(records);
    out["size_bytes"] = json!(d.partition_bytes.iter().sum::<u64>());
    out["partition_offsets"] = Value::Array(partitions);
    Ok(Json(out))
}

/// `DELETE /v1/topics/{topic}`.
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
