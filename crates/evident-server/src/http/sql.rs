//! `POST /v1/sql`: one SQL statement, run by the SQL engine (`evident-sql`). Queries answer
//! `{"columns", "rows"}`, statements `{"status", "statement", "message"}`; a push query
//! (`... EMIT CHANGES`) answers `text/event-stream`: a `header` event with the columns, then a
//! message per change `{"op": "upsert"|"delete", "row": [...]}`, until the client leaves, the
//! query's LIMIT is reached, or the server shuts down. Errors are the API's JSON errors, with
//! the SQL codes (`sql_syntax` with line and column, `sql_invalid`, `unknown_view`, ...).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use evident_api::sql::{SqlColumn, SqlRequest, SqlResponse};
use evident_api::{ErrorBody, ErrorCode};
use evident_sql::{Outcome, PushQuery, Request, SqlError};

use super::extract::{JsonBody, Params};
use super::sse;
use super::{ApiError, AppState};

/// How often a quiet push query sends a keep-alive comment (and notices a closed client).
const PUSH_POLL: Duration = Duration::from_secs(5);

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        let code = match &e {
            SqlError::Syntax { .. } => ErrorCode::SqlSyntax,
            SqlError::Unsupported(_) => ErrorCode::SqlUnsupported,
            SqlError::Invalid(_) => ErrorCode::SqlInvalid,
            SqlError::UnknownTopic(_) => ErrorCode::UnknownTopic,
            SqlError::UnknownView(_) => ErrorCode::UnknownView,
            SqlError::Exists(_) => ErrorCode::ViewExists,
            SqlError::InUse { .. } => ErrorCode::ViewInUse,
            SqlError::NotCaughtUp { .. } => ErrorCode::NotCaughtUp,
            SqlError::ViewFailed { .. } => ErrorCode::ViewFailed,
            SqlError::TooLarge(_) => ErrorCode::ResultTooLarge,
            SqlError::Corrupted(_) => ErrorCode::Corrupted,
            SqlError::Log(_) => {
                let SqlError::Log(log) = e else { unreachable!("matched above") };
                return ApiError::from(log);
            }
        };
        ApiError::of(code, e.to_string())
    }
}

#[utoipa::path(
    post,
    path = "/v1/sql",
    tag = "sql",
    operation_id = "executeSql",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "A query's `columns` and `rows`, or a statement's `status`, `statement` and `message`. A push query (`EMIT CHANGES`) answers `text/event-stream` instead: an event `header` with `{\"columns\"}`, then one message per change, `{\"op\": \"upsert\"|\"delete\", \"row\": [...]}`.", body = SqlResponse),
        (status = 400, description = "`malformed_json`, `missing_field`, `sql_syntax` (with line, column and a hint).", body = ErrorBody),
        (status = 404, description = "`unknown_topic`, `unknown_view`.", body = ErrorBody),
        (status = 409, description = "`view_exists`, `view_in_use`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`, `result_too_large`.", body = ErrorBody),
        (status = 422, description = "`sql_invalid` (unknown column or function, type error), `sql_unsupported`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`not_caught_up` (`min_sequence` not applied in time), `view_failed`, `unavailable`.", body = ErrorBody),
    )
)]
pub(super) async fn execute(
    State(state): State<AppState>,
    params: Params,
    JsonBody(body): JsonBody<SqlRequest>,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    state.embedded_only("SQL views", "the SQL engine runs over the embedded store only (docs/cluster.md)")?;
    let Some(engine) = state.sql.clone() else {
        return Err(ApiError::of(ErrorCode::Unsupported, "this server runs without the SQL engine"));
    };
    if body.timeout_ms.is_some_and(|t| t > 30_000) {
        return Err(ApiError::invalid("timeout_ms is at most 30000"));
    }
    let req =
        Request { sql: body.sql, min_sequence: body.min_sequence, timeout: body.timeout_ms.map(Duration::from_millis) };
    let outcome = state.blocking(move || engine.execute(&req).map_err(ApiError::from)).await?;
    Ok(match outcome {
        Outcome::Rows { columns, rows } => Json(SqlResponse {
            columns: Some(columns.into_iter().map(|c| SqlColumn { name: c.name, ty: c.ty }).collect()),
            rows: Some(rows.into_iter().map(|r| r.iter().map(to_json).collect()).collect()),
            status: None,
            statement: None,
            message: None,
        })
        .into_response(),
        Outcome::Done { statement, message } => (
            StatusCode::OK,
            Json(SqlResponse {
                columns: None,
                rows: None,
                status: Some("ok".into()),
                statement: Some(statement),
                message: Some(message),
            }),
        )
            .into_response(),
        Outcome::Push(query) => push(state, *query)?,
    })
}

fn to_json(v: &evident_sql::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Streams a push query: a blocking reader feeds a channel the response body drains.
fn push(state: AppState, mut query: PushQuery) -> Result<Response, ApiError> {
    // A push query holds a live subscription's slot, as `/v1/subscribe` does.
    let permit = state.subscriptions.clone().try_acquire_owned().map_err(|_| {
        ApiError::of(
            ErrorCode::TooManySubscriptions,
            format!("the server serves {} live subscriptions and push queries, its limit", state.subscriptions_max),
        )
    })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut first = BytesMut::new();
    let columns: Vec<SqlColumn> =
        query.columns.iter().map(|c| SqlColumn { name: c.name.clone(), ty: c.ty.clone() }).collect();
    sse::write_message(&mut first, Some("header"), None, &serde_json::json!({ "columns": columns }).to_string());
    let _ = tx.try_send(first.freeze());
    let mut shutdown = state.shutdown.clone();
    tokio::task::spawn_blocking(move || loop {
        let _permit = &permit;
        if *shutdown.borrow_and_update() || tx.is_closed() {
            return;
        }
        let mut out = BytesMut::new();
        match query.next(PUSH_POLL) {
            Ok(Some(rows)) if rows.is_empty() => out.extend_from_slice(sse::KEEP_ALIVE),
            Ok(Some(rows)) => {
                for r in rows {
                    let row: Vec<serde_json::Value> = r.row.iter().map(to_json).collect();
                    sse::write_message(
                        &mut out,
                        None,
                        None,
                        &serde_json::json!({ "op": r.op, "row": row }).to_string(),
                    );
                }
            }
            Ok(None) => return,
            Err(e) => {
                let e = ApiError::from(e);
                let body = serde_json::json!({ "error": { "code": e.code, "message": e.message } });
                sse::write_message(&mut out, Some("error"), None, &body.to_string());
                let _ = tx.blocking_send(out.freeze());
                return;
            }
        }
        if tx.blocking_send(out.freeze()).is_err() {
            return;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok(sse::response(stream))
}
