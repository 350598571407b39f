//! Operations routes: `/health`, `/metrics`, `/v1/openapi.json`, the JSON answers for unknown
//! routes and wrong methods, and the cap on the request target's length (`414`).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_api::limits::URI_LEN_MAX;
use evident_api::ops::{Health, HealthStatus};
use evident_api::{ErrorBody, ErrorCode};

use super::{ApiError, AppState};

/// Whether the store acknowledges writes.
///
/// 200 while the store acknowledges writes, 503 once a failed write or sync poisoned it (a
/// restart recovers), so a load balancer or supervisor can act.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    responses(
        (status = 200, description = "The store serves reads and writes.", body = Health),
        (status = 503, description = "The store is poisoned and refuses writes until restarted.", body = Health),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION").to_string();
    match state.log.poisoned() {
        None => {
            let stats = state.log.stats();
            let health = Health {
                status: HealthStatus::Ok,
                version,
                next_sequence: Some(stats.next_sequence),
                durable_position: Some(stats.durable_position),
                fsync: Some(state.log.config().fsync.to_string()),
                reason: None,
            };
            (StatusCode::OK, Json(health)).into_response()
        }
        Some(why) => {
            let health = Health {
                status: HealthStatus::Unavailable,
                version,
                next_sequence: None,
                durable_position: None,
                fsync: None,
                reason: Some(why.to_string()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response()
        }
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
    let (log, groups, metrics) = (state.log.clone(), state.groups.clone(), state.metrics.clone());
    let text = state
        .blocking(move || crate::metrics::render(log, groups, metrics).map_err(|e| ApiError::internal(e.to_string())))
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
