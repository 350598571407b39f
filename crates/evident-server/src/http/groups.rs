//! `/v1/groups`: consumer groups: list, describe (members, committed offsets, lag), delete,
//! commit and fetch offsets, and `reset-offsets` with the scopes and strategies of
//! `kafka-consumer-groups --reset-offsets`, a plan unless `"execute": true`. The groups are the
//! embedded store's, or, on a node in front of a Kafka cluster, the cluster's own, asked through
//! the library's `KafkaGroups` (the same model and reset planner; docs/cluster.md names what
//! Kafka does not tell: commit times, members' session timeouts and heartbeats).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use evident::KafkaGroups;
use evident_api::groups::{
    CommitOffsets, CommittedOffset, DateTimeArg, GroupDescription, GroupList, GroupOffsets, GroupState, GroupSummary,
    MemberDescription, PartitionLag, ResetOffsets, ResetPlan, ResetRow, TopicPartitions,
};
use evident_api::params::{GroupPath, OffsetsQuery};
use evident_api::ErrorBody;
use evident_groups::{GroupStore, OffsetCommit, ResetRequest, ResetScope, ResetStrategy, TopicScope};

use super::extract::{parse_duration_ms, parse_time_ms, JsonBody, Params, PathParams};
use super::{ApiError, AppState};

/// The consumer groups a server serves.
#[derive(Clone)]
pub enum Groups {
    /// The embedded store's (`__consumer_offsets` in the log).
    Embedded(Arc<GroupStore>),
    /// The Kafka cluster's, on a node in front of it.
    Cluster(KafkaGroups),
}

impl Groups {
    async fn list(&self) -> Result<Vec<evident_groups::GroupSummary>, ApiError> {
        Ok(match self {
            Self::Embedded(store) => store.list(),
            Self::Cluster(kafka) => kafka.list().await?,
        })
    }

    async fn describe(&self, state: &AppState, group: String) -> Result<evident_groups::GroupDescription, ApiError> {
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                state.blocking(move || Ok(store.describe(&group)?)).await
            }
            Self::Cluster(kafka) => Ok(kafka.describe(&group).await?),
        }
    }

    async fn delete(&self, state: &AppState, group: String) -> Result<(), ApiError> {
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                state.blocking(move || Ok(store.delete(&group)?)).await
            }
            Self::Cluster(kafka) => Ok(kafka.delete(&group).await?),
        }
    }

    async fn committed(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<evident_groups::CommittedOffset>, ApiError> {
        Ok(match self {
            Self::Embedded(store) => store.committed(group, topic)?,
            Self::Cluster(kafka) => kafka.committed(group, topic).await?,
        })
    }

    /// Commits for a group without active members (as Kafka: while members consume for the
    /// group, only they commit; a commit from outside would race their positions).
    async fn commit(&self, state: &AppState, group: String, offsets: Vec<OffsetCommit>) -> Result<(), ApiError> {
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                state
                    .blocking(move || {
                        if store.has_active_members(&group) {
                            let members = store.describe(&group).map(|d| d.members.len()).unwrap_or(0);
                            return Err(evident_groups::Error::GroupNotEmpty { group, members }.into());
                        }
                        Ok(store.commit(&group, &offsets)?)
                    })
                    .await
            }
            // The cluster's groups check their members themselves (and Kafka refuses a commit
            // from outside to a group that has some).
            Self::Cluster(kafka) => Ok(kafka.commit(&group, &offsets).await?),
        }
    }

    async fn reset(
        &self,
        state: &AppState,
        group: String,
        request: ResetRequest,
        execute: bool,
    ) -> Result<Vec<evident_groups::ResetRow>, ApiError> {
        match self {
            Self::Embedded(store) => {
                let store = store.clone();
                state
                    .blocking(move || {
                        Ok(if execute {
                            store.execute_reset(&group, &request)?
                        } else {
                            store.plan_reset(&group, &request)?
                        })
                    })
                    .await
            }
            Self::Cluster(kafka) => Ok(if execute {
                kafka.execute_reset(&group, &request).await?
            } else {
                kafka.plan_reset(&group, &request).await?
            }),
        }
    }
}

/// The wire form of a group state.
fn state_wire(s: evident_groups::GroupState) -> GroupState {
    match s {
        evident_groups::GroupState::Stable => GroupState::Stable,
        evident_groups::GroupState::Empty => GroupState::Empty,
        evident_groups::GroupState::PreparingRebalance => GroupState::PreparingRebalance,
        evident_groups::GroupState::CompletingRebalance => GroupState::CompletingRebalance,
    }
}

fn committed_wire(c: evident_groups::CommittedOffset) -> CommittedOffset {
    CommittedOffset {
        topic: c.topic.as_str().to_string(),
        partition: c.partition,
        offset: c.offset,
        metadata: c.metadata,
        commit_time_ms: c.commit_time_ms,
    }
}

fn description_wire(d: evident_groups::GroupDescription) -> GroupDescription {
    GroupDescription {
        group: d.group,
        state: state_wire(d.state),
        members: d
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                last_heartbeat_ms: m.last_heartbeat_ms,
                assignment: m
                    .assignment
                    .into_iter()
                    .map(|a| TopicPartitions { topic: a.topic.to_string(), partitions: a.partitions })
                    .collect(),
            })
            .collect(),
        offsets: d
            .offsets
            .into_iter()
            .map(|o| PartitionLag {
                topic: o.topic.as_str().to_string(),
                partition: o.partition,
                committed_offset: o.committed_offset,
                metadata: o.metadata,
                commit_time_ms: o.commit_time_ms,
                log_start_offset: o.log_start_offset,
                log_end_offset: o.log_end_offset,
                lag: o.lag,
                member_id: o.member_id,
            })
            .collect(),
        total_lag: d.total_lag,
    }
}

/// List consumer groups.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "groups",
    operation_id = "listGroups",
    responses(
        (status = 200, description = "The groups, by name.", body = GroupList),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn list(State(state): State<AppState>, params: Params) -> Result<Json<GroupList>, ApiError> {
    params.allow(&[])?;
    let groups = state
        .groups()
        .list()
        .await?
        .into_iter()
        .map(|g| GroupSummary {
            group: g.group,
            state: state_wire(g.state),
            members: g.members as u64,
            committed_partitions: g.committed_partitions as u64,
        })
        .collect();
    Ok(Json(GroupList { groups }))
}

/// Describe a group: members, committed offsets and lag.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}",
    tag = "groups",
    operation_id = "describeGroup",
    params(GroupPath),
    responses(
        (status = 200, description = "The group.", body = GroupDescription),
        (status = 400, description = "`invalid_argument`, `invalid_group`.", body = ErrorBody),
        (status = 404, description = "`unknown_group`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn describe(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<Json<GroupDescription>, ApiError> {
    params.allow(&[])?;
    let d = state.groups().describe(&state, group).await?;
    Ok(Json(description_wire(d)))
}

/// Delete a group and its committed offsets.
#[utoipa::path(
    delete,
    path = "/v1/groups/{group}",
    tag = "groups",
    operation_id = "deleteGroup",
    params(GroupPath),
    responses(
        (status = 204, description = "The group was deleted."),
        (status = 400, description = "`invalid_argument`, `invalid_group`.", body = ErrorBody),
        (status = 404, description = "`unknown_group`.", body = ErrorBody),
        (status = 409, description = "`group_not_empty`: the group has active members.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed, or on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.allow(&[])?;
    state.groups().delete(&state, group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fetch a group's committed offsets.
///
/// A group with no committed offset (or none that exists) answers an empty list.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/offsets",
    tag = "groups",
    operation_id = "fetchOffsets",
    params(GroupPath, OffsetsQuery),
    responses(
        (status = 200, description = "The committed offsets, by topic and partition.", body = GroupOffsets),
        (status = 400, description = "`invalid_argument`, `invalid_group`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn fetch_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
) -> Result<Json<GroupOffsets>, ApiError> {
    params.allow(&["topic"])?;
    let offsets = state.groups().committed(&group, params.str("topic")).await?;
    Ok(Json(GroupOffsets { group, offsets: offsets.into_iter().map(committed_wire).collect() }))
}

/// Commit offsets for a group (refused while it has active members).
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/offsets",
    tag = "groups",
    operation_id = "commitOffsets",
    params(GroupPath),
    request_body = CommitOffsets,
    responses(
        (status = 200, description = "Committed; the group's offsets after the commit.", body = GroupOffsets),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_argument` (no offset, too many, metadata too long), `invalid_group`.", body = ErrorBody),
        (status = 404, description = "`unknown_topic`, `unknown_partition`.", body = ErrorBody),
        (status = 409, description = "`group_not_empty`: active members commit for the group.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed, or on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn commit_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<CommitOffsets>,
) -> Result<Json<GroupOffsets>, ApiError> {
    params.allow(&[])?;
    if body.offsets.is_empty() {
        return Err(ApiError::invalid("offsets must hold at least one offset"));
    }
    let offsets: Vec<OffsetCommit> = body
        .offsets
        .into_iter()
        .map(|o| OffsetCommit {
            topic: o.topic,
            partition: o.partition,
            offset: o.offset,
            metadata: o.metadata,
            leader_epoch: None,
        })
        .collect();
    let groups = state.groups();
    groups.commit(&state, group.clone(), offsets).await?;
    let committed = groups.committed(&group, None).await?;
    Ok(Json(GroupOffsets { group, offsets: committed.into_iter().map(committed_wire).collect() }))
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

/// The request a `reset-offsets` body makes: exactly one scope and exactly one strategy.
fn reset_request(body: &ResetOffsets) -> Result<ResetRequest, ApiError> {
    let scope = match (body.all_topics, body.topics.is_empty()) {
        (true, true) => ResetScope::AllTopics,
        (false, false) => ResetScope::Topics(body.topics.iter().map(|t| topic_scope(t)).collect::<Result<_, _>>()?),
        (true, false) => return Err(ApiError::invalid("give topics or all_topics, not both")),
        (false, true) => return Err(ApiError::invalid("a reset needs a scope: topics or all_topics")),
    };
    let mut strategies = Vec::new();
    if body.to_earliest {
        strategies.push(ResetStrategy::ToEarliest);
    }
    if body.to_latest {
        strategies.push(ResetStrategy::ToLatest);
    }
    if body.to_current {
        strategies.push(ResetStrategy::ToCurrent);
    }
    if let Some(n) = body.to_offset {
        strategies.push(ResetStrategy::ToOffset(n));
    }
    if let Some(n) = body.shift_by {
        strategies.push(ResetStrategy::ShiftBy(n));
    }
    if let Some(t) = &body.to_datetime {
        let ms = match t {
            DateTimeArg::Text(s) => parse_time_ms("to_datetime", s)?,
            DateTimeArg::Millis(ms) => *ms,
        };
        strategies.push(ResetStrategy::ToDatetime(ms));
    }
    if let Some(d) = &body.by_duration {
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

/// Reset a group's offsets (`kafka-consumer-groups --reset-offsets`).
///
/// A plan that changes nothing unless `"execute": true`.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/reset-offsets",
    tag = "groups",
    operation_id = "resetOffsets",
    params(GroupPath),
    request_body = ResetOffsets,
    responses(
        (status = 200, description = "The plan, committed when `executed` is true.", body = ResetPlan),
        (status = 400, description = "`malformed_json`, `invalid_argument` (no or several scopes or strategies, bad time or duration, `shift_by` without a committed offset), `invalid_group`.", body = ErrorBody),
        (status = 404, description = "`unknown_topic`, `unknown_partition`.", body = ErrorBody),
        (status = 409, description = "`group_not_empty`: `execute` while the group has active members.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed, or on a node in front of a Kafka cluster, the cluster did not answer.", body = ErrorBody),
    )
)]
pub(super) async fn reset_offsets(
    State(state): State<AppState>,
    PathParams(group): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<ResetOffsets>,
) -> Result<Json<ResetPlan>, ApiError> {
    params.allow(&[])?;
    let request = reset_request(&body)?;
    let execute = body.execute;
    let rows = state.groups().reset(&state, group.clone(), request, execute).await?;
    let offsets = rows
        .into_iter()
        .map(|r| ResetRow {
            topic: r.topic.as_str().to_string(),
            partition: r.partition,
            current_offset: r.current_offset,
            new_offset: r.new_offset,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
        .collect();
    Ok(Json(ResetPlan { group, executed: execute, offsets }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_body_needs_one_scope_and_one_strategy() {
        let ok = ResetOffsets { topics: vec!["orders:0,2".into()], shift_by: Some(-3), ..Default::default() };
        let r = reset_request(&ok).expect("valid");
        assert_eq!(r.strategy, ResetStrategy::ShiftBy(-3));
        assert_eq!(
            r.scope,
            ResetScope::Topics(vec![TopicScope { topic: "orders".into(), partitions: Some(vec![0, 2]) }])
        );
        assert!(reset_request(&ResetOffsets { all_topics: true, ..Default::default() }).is_err());
        assert!(reset_request(&ResetOffsets { to_latest: true, ..Default::default() }).is_err());
        assert!(reset_request(&ResetOffsets {
            all_topics: true,
            to_latest: true,
            to_earliest: true,
            ..Default::default()
        })
        .is_err());
        let r =
            reset_request(&ResetOffsets { all_topics: true, by_duration: Some("PT1M".into()), ..Default::default() })
                .expect("ok");
        assert_eq!(r.strategy, ResetStrategy::ByDuration(60_000));
        assert!(topic_scope("orders:x").is_err());
        assert!(topic_scope(":1").is_err());
    }
}
