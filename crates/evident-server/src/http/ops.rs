//! Operations routes: `/health`, `/metrics`, `/v1/openapi.json`, the JSON answers for unknown
//! routes and wrong methods, and the cap on the request target's length (`414`).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_api::limits::URI_LEN_MAX;
use evident_api::ops::{
    DamagedPosition, Health, HealthDamage, HealthReason, HealthReasonCode, HealthStatus, LastRecovery,
    RecoveryTruncation,
};
use evident_api::{ErrorBody, ErrorCode};
use evident_log::{HealthStatus as LogStatus, ReasonCode};

use super::{ApiError, AppState};

/// The store's health: `ok`, `degraded` or `poisoned`, with a reason per condition.
///
/// `200 ok` when nothing needs attention. `200 degraded` when the store serves but a condition
/// needs a human: reads met damaged bytes (never served; `damage` says where), the background
/// index checkpoint keeps failing, the disk is full. It stays 200 because the store still
/// answers everything it can (the damaged region aside), as a Kafka broker keeps serving its
/// other log directories when one fails: taking it out of a load balancer would turn a partial
/// fault into a total one. `503 poisoned` once a failed write or sync refuses writes until a
/// restart, so a supervisor can restart it. `last_recovery` reports what the last start cut or
/// rebuilt, for information.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    responses(
        (status = 200, description = "`ok`: the store serves reads and writes; or `degraded`: it serves, \
            but a condition in `reasons` needs attention.", body = Health),
        (status = 503, description = "`poisoned`: writes are refused until the store is restarted.", body = Health),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let health = state.log.health();
    let poisoned = health.status == LogStatus::Poisoned;
    let stats = (!poisoned).then(|| state.log.stats());
    let body = Health {
        status: match health.status {
            LogStatus::Ok => HealthStatus::Ok,
            LogStatus::Degraded => HealthStatus::Degraded,
            LogStatus::Poisoned => HealthStatus::Poisoned,
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
        next_sequence: stats.map(|s| s.next_sequence),
        durable_position: stats.map(|s| s.durable_position),
        fsync: (!poisoned).then(|| state.log.config().fsync.to_string()),
        reason: if poisoned { state.log.poisoned() } else { None },
        reasons: health.reasons.into_iter().map(wire_reason).collect(),
        damage: (health.damage.reads > 0).then(|| HealthDamage {
            reads: health.damage.reads,
            positions: health.damage.sites.into_iter().map(wire_site).collect(),
            unlisted_reads: health.damage.unlisted_reads,
        }),
        last_recovery: Some(LastRecovery {
            truncation: health.recovery.truncation.map(|t| RecoveryTruncation {
                file: t.file.display().to_string(),
                from_byte: t.from_byte,
                to_byte: t.to_byte,
                journal_position: t.journal_position,
                bytes: t.bytes,
                segments_removed: t.segments_removed.iter().map(|p| p.display().to_string()).collect(),
                intact_frames_cut: t.intact_frames_cut,
                intact_bytes_cut: t.intact_bytes_cut,
                why: t.why,
            }),
            checkpoint_rebuilt: health.recovery.checkpoint_rebuilt,
            frames_replayed: health.recovery.frames_replayed,
            duration_ms: health.recovery.duration_ms,
        }),
    };
    let status = if poisoned { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

fn wire_reason(reason: evident_log::HealthReason) -> HealthReason {
    let code = match reason.code {
        ReasonCode::Poisoned => HealthReasonCode::Poisoned,
        ReasonCode::CheckpointFailing => HealthReasonCode::CheckpointFailing,
        ReasonCode::Damaged => HealthReasonCode::Damaged,
        ReasonCode::DiskFull => HealthReasonCode::DiskFull,
    };
    HealthReason { code, message: reason.message }
}

fn wire_site(site: evident_log::DamageSite) -> DamagedPosition {
    DamagedPosition {
        file: site.file.display().to_string(),
        byte: site.byte,
        topic: site.topic.map(|t| t.as_str().to_string()),
        partition: site.partition,
        offset: site.offset,
        sequence: site.sequence,
        what: site.what,
        first_seen_ms: site.first_seen_ms,
        last_seen_ms: site.last_seen_ms,
        reads: site.reads,
    }
}

/// Metrics in OpenMetrics text.
///
/// The log's counters and sync latency histogram, the HTTP and Kafka listeners' counters, and
/// each consumer group's lag.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text exposition.", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 500, description = "`internal`.", body = ErrorBody),
    )
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (log, groups, metrics, sql, cluster) =
        (state.log.clone(), state.groups.clone(), state.metrics.clone(), state.sql.clone(), state.cluster.clone());
    let text = state
        .blocking(move || {
            crate::metrics::render(log, groups, metrics, sql, cluster).map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// This description (OpenAPI 3.1).
///
/// Generated from the handlers and the wire types of the server that answers, so it describes
/// exactly the routes it serves.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document.", body = Object, content_type = "application/json"))
)]
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi_json()).into_response()
}

/// Any unknown route.
pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::of(ErrorCode::NotFound, format!("no route {}; see /v1/openapi.json", uri.path()))
}

/// A known route with another method.
pub(super) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::of(ErrorCode::MethodNotAllowed, format!("{} does not take this method; see /v1/openapi.json", uri.path()))
}

/// Answers a request whose target (path and query) is longer than [`URI_LEN_MAX`] with `414`
/// and the JSON error body, before any routing or parsing: no route takes so long a target, and
/// bounding it bounds what a query string can make the server parse.
pub(super) async fn refuse_long_uri(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if len > URI_LEN_MAX {
        return ApiError::of(
            ErrorCode::UriTooLong,
            format!("the request target is {len} bytes long; at most {URI_LEN_MAX} are allowed"),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    //! `/health` through the router: `503 poisoned` with the reason after a failed sync (the
    //! damaged and ok states are tested against the real binary in `tests/health_http.rs`),
    //! and the OpenAPI document lists the three states.

    use std::path::Path;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use evident_core::{EventData, ExpectedVersion};
    use evident_groups::GroupStore;
    use evident_log::clock::ManualClock;
    use evident_log::storage::{SimFaults, SimStorage};
    use evident_log::{Log, LogConfig, TopicConfig};
    use serde_json::Value;
    use tokio::sync::watch;
    use tower::ServiceExt as _;

    use crate::http::{openapi, router, AppState};
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn a_poisoned_store_answers_503_poisoned_with_the_reason() {
        let sim = SimStorage::new();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let log = Arc::new(
            Log::open_with(Arc::new(sim.clone()), Path::new("/data"), LogConfig::default(), clock.clone())
                .expect("open"),
        );
        let groups = Arc::new(GroupStore::open(log.clone(), clock).expect("groups"));
        log.create_topic("t", TopicConfig::default()).expect("topic");
        let (_, commits) = watch::channel(0);
        let (_, shutdown) = watch::channel(false);
        let app =
            router(AppState::new(log.clone(), Some(groups), Arc::new(Metrics::default()), commits, shutdown, 1 << 20));
        let get = || Request::builder().uri("/health").body(Body::empty()).expect("request");

        let response = app.clone().oneshot(get()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);

        sim.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });
        let event = EventData::json("e1", "Noted", b"{}".to_vec());
        log.append_events("t", b"k", ExpectedVersion::Any, &[event]).expect_err("the sync fails");
        let response = app.oneshot(get()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["status"], "poisoned", "{body}");
        assert_eq!(body["reasons"][0]["code"], "poisoned", "{body}");
        assert!(body["reason"].as_str().is_some_and(|r| r.contains("sync")), "{body}");
        assert!(body.get("next_sequence").is_none() && body["last_recovery"].is_object(), "{body}");
    }

    #[test]
    fn the_document_lists_the_three_states_and_the_reason_codes() {
        let doc = serde_json::to_value(openapi()).expect("json");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["HealthStatus"]["enum"], serde_json::json!(["ok", "degraded", "poisoned"]), "{schemas}");
        let codes = serde_json::json!(["poisoned", "checkpoint_failing", "damaged", "disk_full"]);
        assert_eq!(schemas["HealthReasonCode"]["enum"], codes);
        let responses = &doc["paths"]["/health"]["get"]["responses"];
        assert!(responses["200"].is_object() && responses["503"].is_object(), "{responses}");
    }
}
