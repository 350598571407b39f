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
//! - *Body budget*: the bytes of request bodies being received at once, by every connection
//!   together, are bounded (`bodies_max_bytes`, a byte semaphore). A body with a
//!   `Content-Length` reserves its length before a byte of it is read; a chunked one reserves
//!   each chunk as it arrives. A body the budget cannot take is answered `503 unavailable`
//!   with `Retry-After: 1` and `Connection: close` (its bytes are not read). The reservation
//!   is held until the response is ready, since the handler holds the bytes that long. Without
//!   it, 32 connections trickling 8 MiB bodies held 258 MiB until the body timeout, and the
//!   connection cap times the body limit (8 GiB by default) was the only bound.
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
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use super::config::HttpLimits;
use crate::http::{ApiError, ErrorReason};

/// What the middleware needs: the limits, and the server-wide budget of body bytes.
pub struct Gate {
    limits: HttpLimits,
    bodies: Arc<Semaphore>,
}

impl Gate {
    /// The gate of a server with these limits.
    pub fn new(limits: HttpLimits) -> Arc<Self> {
        let budget = limits.bodies_max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Gate { limits, bodies: Arc::new(Semaphore::new(budget)) })
    }
}

/// Bytes of the body budget a request holds; given back when the last holder (the body, the
/// middleware) is gone, however the request ends.
struct Held {
    bodies: Arc<Semaphore>,
    bytes: std::sync::atomic::AtomicUsize,
    /// Set when a chunk found the budget spent: the request is answered 503.
    refused: AtomicBool,
}

impl Held {
    /// Takes `n` more bytes of the budget, if it has them.
    fn take(&self, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else { return false };
        match self.bodies.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                self.bytes.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.bodies.add_permits(*self.bytes.get_mut());
    }
}

/// The 503 of a body the budget cannot take. Written here rather than through `ApiError`,
/// which logs 5xx answers at error level: a flood of refused bodies is load, not a fault of the
/// server, and must not flood the log (the refused write is logged at info below).
fn bodies_busy(limits: &HttpLimits) -> Response {
    let body = format!(
        "{{\"error\":{{\"code\":\"unavailable\",\"message\":\"the server is receiving as many request body bytes as it allows ({} bytes, --http-bodies-max-bytes); retry later\"}}}}",
        limits.bodies_max_bytes
    );
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The middleware (install with `axum::middleware::from_fn`).
pub async fn guard(gate: Arc<Gate>, mut req: Request, next: Next) -> Response {
    let limits = &gate.limits;
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    // The URI is shared bytes: cloning it costs no allocation, unlike copying its path.
    let route = write.then(|| (req.method().clone(), req.uri().clone()));
    // A request without a body (most reads) skips the timer, the budget and their allocation.
    let (late, held) = if req.body().size_hint().exact() == Some(0) {
        (None, None)
    } else {
        let held = Arc::new(Held {
            bodies: gate.bodies.clone(),
            bytes: std::sync::atomic::AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        });
        // A declared length is reserved whole, before reading: two large bodies never each
        // get half of the budget and both fail. A length over the body limit is left to the
        // handler's 413.
        let declared = req.body().size_hint().exact().and_then(|n| usize::try_from(n).ok());
        let prepaid = match declared {
            Some(n) if n <= limits.bodies_max_bytes => {
                if !held.take(n) {
                    return bodies_busy(limits);
                }
                true
            }
            _ => false,
        };
        let late = Arc::new(AtomicBool::new(false));
        let timed = TimedBody {
            inner: std::mem::take(req.body_mut()),
            deadline: tokio::time::Instant::now() + limits.body_timeout,
            timer: None,
            late: late.clone(),
            held: (!prepaid).then(|| held.clone()),
        };
        *req.body_mut() = Body::new(timed);
        (Some(late), Some(held))
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
    if held.as_ref().is_some_and(|h| h.refused.load(Ordering::Relaxed)) {
        response = bodies_busy(limits);
    }
    // The budget is held until here: the handler kept the bytes until its response was ready.
    drop(held);
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
    /// The budget to take each chunk from (None: the declared length was reserved whole).
    held: Option<Arc<Held>>,
}

/// The error a body ends with when the budget cannot take its next chunk; [`guard`] replaces
/// the handler's answer with `503`.
#[derive(Debug, thiserror::Error)]
#[error("the server's budget of request body bytes is spent")]
struct BodiesBusy;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // Data already received is taken even past the deadline: only waiting is bounded.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let (Some(held), Some(Ok(f))) = (&this.held, &frame) {
                if let Some(data) = f.data_ref() {
                    if !held.take(data.len()) {
                        held.refused.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(axum::Error::new(BodiesBusy))));
                    }
                }
            }
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
        let gate = Gate::new(limits);
        let app = app.layer(axum::middleware::from_fn(move |req, next| guard(gate.clone(), req, next)));
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
    fn bodies_beyond_the_budget_get_503_and_the_budget_comes_back() {
        let mut small = limits(5_000);
        small.bodies_max_bytes = 100;
        let gate = Gate::new(small);
        let app = Router::new()
            .route("/append", post(|body: Bytes| async move { format!("{{\"len\":{}}}", body.len()) }))
            .layer(axum::middleware::from_fn({
                let gate = gate.clone();
                move |req, next| guard(gate.clone(), req, next)
            }));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let call = |req: Request| {
                let app = app.clone();
                async move {
                    let response = TowerToHyperService::new(app).call(req).await.expect("infallible");
                    let retry = response.headers().get(header::RETRY_AFTER).is_some();
                    (response.status().as_u16(), retry)
                }
            };
            // A declared length within the budget passes; over it, 503 before reading.
            assert_eq!(
                call(Request::post("/append").body(Body::from(vec![b'x'; 100])).expect("req")).await,
                (200, false)
            );
            assert_eq!(gate.bodies.available_permits(), 100, "given back after the response");
            // A chunked body is charged chunk by chunk: the second chunk passes the budget.
            let chunks = futures_util::stream::iter([
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 60])),
                Ok(Bytes::from(vec![b'x'; 60])),
            ]);
            assert_eq!(call(Request::post("/append").body(Body::from_stream(chunks)).expect("req")).await, (503, true));
            assert_eq!(gate.bodies.available_permits(), 100, "a refused body gives back what it took");
            // While one body holds the budget, the next declared one is refused at once.
            let held = gate.bodies.clone().try_acquire_many_owned(80).expect("take most of it");
            assert_eq!(
                call(Request::post("/append").body(Body::from(vec![b'x'; 30])).expect("req")).await,
                (503, true)
            );
            drop(held);
            assert_eq!(
                call(Request::post("/append").body(Body::from(vec![b'x'; 30])).expect("req")).await,
                (200, false)
            );
        });
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
        let gate = Gate::new(limits(1));
        let app = app.layer(axum::middleware::from_fn(move |req, next| guard(gate.clone(), req, next)));
        let status = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move { TowerToHyperService::new(app).call(req).await.expect("infallible").status() });
        assert_eq!(status, StatusCode::OK);
    }
}
