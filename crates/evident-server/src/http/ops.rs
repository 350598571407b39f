//! Operations routes: `/health`, `/metrics`, `/v1/openapi.json`, and the JSON answers for
//! unknown routes and wrong methods.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};

/// The OpenAPI description, kept beside the code (and checked against the router by tests).
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /health`: 200 while the store acknowledges writes, 503 once a failed write or sync
/// poisoned it (a restart recovers), so a load balancer or supervisor can act.
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let stats = state.log.stats();
    match state.log.poisoned() {
        None => (
            StatusCode::OK,
            Json(json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "next_sequence": stats.next_sequence,
                "durable_position": stats.durable_position,
                "fsync": state.log.config().fsync.to_string(),
            })),
        )
            .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": why, "version": env!("CARGO_PKG_VERSION") })),
        )
            .into_response(),
    }
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (log, groups, metrics) = (state.log.clone(), state.groups.clone(), state.metrics.clone());
    let text = state
        .blocking(move || crate::metrics::render(log, groups, metrics).map_err(|e| ApiError::internal(e.to_string())))
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// `GET /v1/openapi.json`.
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Any unknown route.
pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route {}; see /v1/openapi.json", uri.path()))
}

/// A known route with another method.
pub(super) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take this method; see /v1/openapi.json", uri.path()),
    )
}
