//! What every HTTP request passes through before the router: the body timeout, the request
//! deadline, and the info-level log line of a refused write.
//!
//! - *Body timeout*: the body of a request must arrive within `body_timeout` of its headers.
//!   hyper bounds only the headers, so a client could otherwise hold a connection, and the
//!   handler waiting on it, by trickling a body a byte at a time. A late body answers `408` with
//!   `Connection: close`; hyper then drops the rest of the body with the connection.
//! - *Deadline*: the response's head must be ready within `request_timeout`. Streamed responses
//!   (subscriptions, NDJSON reads) answer their head at once and are bounded by the client
//!   (a subscription ends when it disconnects), so the deadline limits what a request can hold
//!   while it waits: a blocking-pool thread, a slot in the append queue. A late request answers
//!   `503 deadline_exceeded`; an append may still complete after it (the work already handed to
//!   the log is not cancelled), which the message says: a retry with the same event ids is safe.
//! - *Refused writes*: a write (any method but GET and HEAD) answered 4xx or 5xx is logged at
//!   info with its status, code and message, so an operator can see why a producer's events did
//!   not land without turning on debug logs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::config::HttpLimits;
use crate::http::{ApiError, ErrorReason};

/// The middleware (install with `axum::middleware::from_fn`).
pub async fn guard(limits: HttpLimits, mut req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    // The URI is shared bytes: cloning it costs no allocation, unlike copying its path.
    let route = write.then(|| (req.method().clone(), req.uri().clone()));
    // A request without a body (most reads) skips the timer and its allocation.
    let late = if req.body().size_hint().exact() == Some(0) {
        None
    } else {
        let late = Arc::new(AtomicBool::new(false));
        let timed = TimedBody {
            inner: std::mem::take(req.body_mut()),
            deadline: tokio::time::Instant::now() + limits.body_timeout,
            timer: None,
            late: late.clone(),
        };
        *req.body_mut() = Body::new(timed);
        Some(late)
    };
    let mut response = match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            format!(
                "the request did not complete within {} ms (--http-request-timeout-ms); an append may still \
                 complete: retrying it with the same event ids is safe",
                limits.request_timeout.as_millis()
            ),
        )
        .into_response(),
    };
    if late.is_some_and(|l| l.load(Ordering::Relaxed)) {
        response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms (--http-body-timeout-ms)",
                limits.body_timeout.as_millis()
            ),
        )
        .into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some((method, uri)) = route {
        let path = uri.path();
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            match response.extensions().get::<ErrorReason>() {
                Some(reason) => tracing::info!(
                    %method, path, status = status.as_u16(), code = reason.code, reason = %reason.message,
                    "write refused"
                ),
                None => tracing::info!(%method, path, status = status.as_u16(), "write refused"),
            }
        }
    }
    response
}

/// The error a late body ends with; the handler sees a body read failure, and [`guard`]
/// replaces its answer with `408`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A request body that fails once its deadline passes. The timer is armed only when the body
/// first makes its reader wait: a small body usually arrives with its headers, and then costs
/// no timer at all.
struct TimedBody {
    inner: Body,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // Data already received is taken even past the deadline: only waiting is bounded.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::{get, post};
    use axum::Router;
    use hyper::service::Service as _;
    use hyper_util::service::TowerToHyperService;

    use super::*;

    fn limits(ms: u64) -> HttpLimits {
        HttpLimits {
            body_timeout: Duration::from_millis(ms),
            request_timeout: Duration::from_millis(ms),
            ..HttpLimits::default()
        }
    }

    /// Sends `req` through `app` behind the guard; the status, the `Connection` header and the
    /// error code.
    fn send(app: Router, limits: HttpLimits, req: Request) -> (u16, Option<String>, String) {
        let app = app.layer(axum::middleware::from_fn(move |req, next| guard(limits, req, next)));
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async move {
            let response = TowerToHyperService::new(app).call(req).await.expect("infallible");
            let status = response.status().as_u16();
            let connection = response.headers().get(header::CONNECTION).map(|v| v.to_str().expect("text").to_string());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
            (status, connection, json["error"]["code"].as_str().unwrap_or_default().to_string())
        })
    }

    #[test]
    fn a_request_past_its_deadline_gets_503() {
        let app = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let req = Request::get("/slow").body(Body::empty()).expect("request");
        let (status, _, code) = send(app, limits(50), req);
        assert_eq!((status, code.as_str()), (503, "deadline_exceeded"));
    }

    #[test]
    fn a_body_that_does_not_arrive_in_time_gets_408_and_closes_the_connection() {
        let app = Router::new().route("/append", post(|_body: Bytes| async { "read it all" }));
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let req = Request::post("/append").body(Body::from_stream(never)).expect("request");
        let mut slow = limits(50);
        slow.request_timeout = Duration::from_secs(600);
        let (status, connection, code) = send(app.clone(), slow, req);
        assert_eq!((status, code.as_str()), (408, "request_timeout"));
        assert_eq!(connection.as_deref(), Some("close"));
        // A body that is all there is read however short the timeout.
        let req = Request::post("/append").body(Body::from("{}")).expect("request");
        let app = app.layer(axum::middleware::from_fn(move |req, next| guard(limits(1), req, next)));
        let status = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move { TowerToHyperService::new(app).call(req).await.expect("infallible").status() });
        assert_eq!(status, StatusCode::OK);
    }
}
