//! The byte budgets of HTTP read responses. A page of events is rendered into one buffer before
//! it is sent (its `Content-Length` is known, and rendering is the fast path of reads), so
//! without a bound `GET /v1/all?limit=10000` over 1 MiB events built a 300 MiB body, and eight
//! such reads at once took 2.6 GiB. Two bounds:
//!
//! - *Per response* (`--http-response-max-bytes`): a page stops taking events once its body
//!   would pass the budget. It always holds at least one event (a single event larger than the
//!   budget still reads), and its `next_*` cursor names the first event left out, so a reader
//!   that follows the cursor misses nothing. The limit stays a count of events; the byte budget
//!   is what bounds memory.
//! - *Across responses* (`--http-responses-max-bytes`): every page reserves, before it is
//!   rendered, the bytes it is likely to take (the events' stored bytes as rendered, capped by
//!   the per-response budget) from one byte semaphore, and holds them until its body has been
//!   handed to the connection. When the budget is spent a read waits (in arrival order, as
//!   tokio's semaphore queues) rather than fails: the request deadline bounds the wait, and a
//!   burst of large reads is served at the rate memory allows instead of all at once.
//!
//! NDJSON stream reads are not budgeted: they are rendered and sent 64 KiB at a time, so they
//! never hold more than a chunk. Live subscriptions hold one page of events (see `subscribe`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use evident_log::Event;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::event_json::rendering_bytes_max_likely;

/// The read responses' byte budgets (one per server, shared by every connection thread; a
/// clone shares the server-wide budget).
#[derive(Debug, Clone)]
pub struct ResponseBudget {
    /// Most bytes one page takes (beyond a single larger event).
    pub per_response: usize,
    /// Bytes of rendered pages held at once, by every request together.
    total: Arc<Semaphore>,
    total_max: usize,
}

impl ResponseBudget {
    /// Budgets of `per_response` bytes per page and `total` bytes for all pages at once.
    pub fn new(per_response: usize, total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self { per_response, total: Arc::new(Semaphore::new(total)), total_max: total }
    }

    /// Without bounds (tests of handlers that do not test budgets).
    pub fn unbounded() -> Self {
        Self::new(usize::MAX, Semaphore::MAX_PERMITS)
    }

    /// Reserves what a page of (a prefix of) `events` is likely to take, waiting until the
    /// server-wide budget has it. The reservation never exceeds the whole budget, so one large
    /// page waits for the others to finish rather than forever.
    pub async fn reserve(&self, events: &[Event]) -> Reservation {
        let likely = page_bytes_likely(events, self.per_response).min(self.total_max);
        let permits = u32::try_from(likely).unwrap_or(u32::MAX);
        // The semaphore is never closed, so acquiring fails only if it were: then serve without
        // holding anything rather than fail a read.
        let permit = self.total.clone().acquire_many_owned(permits).await.ok();
        Reservation { permit }
    }

    /// Bytes of the server-wide budget free now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }
}

/// The likely size of a page holding `events` within `budget`: the events' rendering, summed
/// until it passes the budget (the event that passes it is counted: a page holds at least one).
pub fn page_bytes_likely(events: &[Event], budget: usize) -> usize {
    let mut sum = PAGE_FIXED_BYTES;
    for e in events {
        sum = sum.saturating_add(rendering_bytes_max_likely(std::slice::from_ref(e)));
        if sum > budget {
            break;
        }
    }
    sum
}

/// The page's fields around its events (names, positions, cursors).
const PAGE_FIXED_BYTES: usize = 256;

/// A share of the server-wide budget, held by a response's body until it is sent.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// The `200 application/json` response carrying `body`. The reservation shrinks to the
    /// body's real size (the estimate is an upper bound for most events) and is released when
    /// the connection has taken the body.
    pub fn respond(self, body: Vec<u8>) -> Response {
        let mut permit = self.permit;
        if let Some(p) = permit.as_mut() {
            let held = p.num_permits();
            if held > body.len() {
                drop(p.split(held - body.len()));
            }
        }
        let held = HeldBody { data: Some(Bytes::from(body)), _permit: permit };
        let mut response = Response::new(Body::new(held));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// A body of one buffer that keeps its reservation until hyper has taken the buffer, which it
/// does when the previous bytes of the connection are written.
struct HeldBody {
    data: Option<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl HttpBody for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.data.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => {
                // The body is out: give the budget back now rather than when hyper drops it.
                this._permit = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_holds_its_share_until_its_body_is_taken() {
        let budget = ResponseBudget::new(1 << 20, 10_000);
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async {
            let reservation = budget.reserve(&[]).await;
            assert_eq!(budget.available(), 10_000 - PAGE_FIXED_BYTES, "an empty page reserves its fields");
            let response = reservation.respond(vec![b'x'; 100]);
            assert_eq!(budget.available(), 10_000 - 100, "shrunk to the body's size");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
            assert_eq!(body.len(), 100);
            assert_eq!(budget.available(), 10_000, "released once sent");
        });
    }

    #[test]
    fn a_page_larger_than_the_whole_budget_waits_for_the_others_not_forever() {
        let budget = ResponseBudget::new(usize::MAX, 300);
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async {
            let first = budget.reserve(&[]).await;
            // A second page waits while the first holds most of the budget...
            let second = tokio::time::timeout(std::time::Duration::from_millis(20), budget.reserve(&[])).await;
            assert!(second.is_err(), "waits while the budget is spent");
            drop(first);
            // ...and gets it once the first is gone.
            let _second = budget.reserve(&[]).await;
            assert_eq!(budget.available(), 300 - PAGE_FIXED_BYTES);
        });
    }
}
