//! `/v1/groups`: consumer groups: list, describe (members, committed offsets, lag), delete,
//! commit and fetch offsets, and `reset-offsets` with the scopes and strategies of
//! `kafka-consumer-groups --reset-offsets`, a plan unless `"execute": true`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use evident_groups::{OffsetCommit, ResetRequest, ResetScope, ResetStrategy, TopicScope};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{parse_duration_ms, parse_time_ms, JsonBody, Params, PathParams};
use super::{ApiError, AppState};

/// `GET /v1/groups`.
pub(super) async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    Ok(Json(json!({ "groups": state.groups.list() })))
}

/// `GET /v1/groups/{group}`.
pub(super) async fn describe(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    let groups = state.groups.clone();
    let d = state.blocking(move || Ok(groups.describe(&group)?)).await?;
    Ok(Json(json!(d)))
}

/// `DELETE /v1/groups/{group}`.
pub(super) async fn delete(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.allow(&[])?;
    let groups = state.groups.clone();
    state.blocking(move || Ok(groups.delete(&group)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/groups/{group}/offsets`.
pub(super) async fn fetch_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["topic"])?;
    let offsets = state.groups.committed(&group, params.str("topic"))?;
    Ok(Json(json!({ "group": group, "offsets": offsets })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitBody {
    offsets: Vec<OffsetCommit>,
}

/// `POST /v1/groups/{group}/offsets`.
pub(super) async fn commit_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<CommitBody>,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    if body.offsets.is_empty() {
        return Err(ApiError::invalid("offsets must hold at least one offset"));
    }
    let groups = state.groups.clone();
    let g = group.clone();
    let committed = state
        .blocking(move || {
            // As Kafka: while members consume for the group, only they commit (a commit from
            // outside would race their positions).
            if groups.has_active_members(&g) {
                let members = groups.describe(&g).map(|d| d.members.len()).unwrap_or(0);
                return Err(evident_groups::Error::GroupNotEmpty { group: g, members }.into());
            }
            groups.commit(&g, &body.offsets)?;
            Ok(groups.committed(&g, None)?)
        })
        .await?;
    Ok(Json(json!({ "group": group, "offsets": committed })))
}

/// The body of `reset-offsets`: the flags of `kafka-consumer-groups --reset-offsets`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetBody {
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    all_topics: bool,
    #[serde(default)]
    to_earliest: bool,
    #[serde(default)]
    to_latest: bool,
    #[serde(default)]
    to_current: bool,
    #[serde(default)]
    to_offset: Option<i64>,
    #[serde(default)]
    shift_by: Option<i64>,
    #[serde(default)]
    to_datetime: Option<Value>,
    #[serde(default)]
    by_duration: Option<String>,
    #[serde(default)]
    execute: bool,
}

/// Parses `t` or `t:0,2` (Kafka's `--topic` syntax).
fn topic_scope(text: &str) -> Result<TopicScope, ApiError> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let parts = list
                .split(',')
                .map(|p| {
                    p.trim().parse::<u32>().map_err(|_| {
                        ApiError::invalid(format!("topic scope {text:?}: partition {p:?} is not a partition number"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (topic, Some(parts))
        }
    };
    if topic.is_empty() {
        return Err(ApiError::invalid(format!("topic scope {text:?} names no topic")));
    }
    Ok(TopicScope { topic: topic.to_string(), partitions })
}

impl ResetBody {
    fn request(&self) -> Result<ResetRequest, ApiError> {
        let scope = match (self.all_topics, self.topics.is_empty()) {
            (true, true) => ResetScope::AllTopics,
            (false, false) => ResetScope::Topics(self.topics.iter().map(|t| topic_scope(t)).collect::<Result<_, _>>()?),
            (true, false) => return Err(ApiError::invalid("give topics or all_topics, not both")),
            (false, true) => return Err(ApiError::invalid("a reset needs a scope: topics or all_topics")),
        };
        let mut strategies = Vec::new();
        if self.to_earliest {
            strategies.push(ResetStrategy::ToEarliest);
        }
        if self.to_latest {
            strategies.push(ResetStrategy::ToLatest);
        }
        if self.to_current {
            strategies.push(ResetStrategy::ToCurrent);
        }
        if let Some(n) = self.to_offset {
            strategies.push(ResetStrategy::ToOffset(n));
        }
        if let Some(n) = self.shift_by {
            strategies.push(ResetStrategy::ShiftBy(n));
        }
        if let Some(t) = &self.to_datetime {
            let ms = match t {
                Value::String(s) => parse_time_ms("to_datetime", s)?,
                Value::Number(n) => n.as_i64().ok_or_else(|| ApiError::invalid("to_datetime is out of range"))?,
                _ => return Err(ApiError::invalid("to_datetime must be a date-time string or milliseconds")),
            };
            strategies.push(ResetStrategy::ToDatetime(ms));
        }
        if let Some(d) = &self.by_duration {
            strategies.push(ResetStrategy::ByDuration(parse_duration_ms("by_duration", d)?));
        }
        match strategies.as_slice() {
            [one] => Ok(ResetRequest { scope, strategy: *one }),
            [] => Err(ApiError::invalid(
                "a reset needs a strategy: to_earliest, to_latest, to_current, to_offset, shift_by, to_datetime or by_duration",
            )),
            _ => Err(ApiError::invalid("give exactly one reset strategy")),
        }
    }
}

/// `POST /v1/groups/{group}/reset-offsets`.
pub(super) async fn reset_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    let request = body.request()?;
    let execute = body.execute;
    let groups = state.groups.clone();
    let g = group.clone();
    let rows = state
        .blocking(move || {
            Ok(if execute { groups.execute_reset(&g, &request)? } else { groups.plan_reset(&g, &request)? })
        })
        .await?;
    Ok(Json(json!({ "group": group, "executed": execute, "offsets": rows })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_body_needs_one_scope_and_one_strategy() {
        let ok = ResetBody { topics: vec!["orders:0,2".into()], shift_by: Some(-3), ..Default::default() };
        let r = ok.request().expect("valid");
        assert_eq!(r.strategy, ResetStrategy::ShiftBy(-3));
        assert_eq!(
            r.scope,
            ResetScope::Topics(vec![TopicScope { topic: "orders".into(), partitions: Some(vec![0, 2]) }])
        );
        assert!(ResetBody { all_topics: true, ..Default::default() }.request().is_err());
        assert!(ResetBody { to_latest: true, ..Default::default() }.request().is_err());
        assert!(ResetBody { all_topics: true, to_latest: true, to_earliest: true, ..Default::default() }
            .request()
            .is_err());
        let r = ResetBody { all_topics: true, by_duration: Some("PT1M".into()), ..Default::default() }
            .request()
            .expect("ok");
        assert_eq!(r.strategy, ResetStrategy::ByDuration(60_000));
        assert!(topic_scope("orders:x").is_err());
        assert!(topic_scope(":1").is_err());
    }
}
