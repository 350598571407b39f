//! The HTTP API (`/v1`, `/health`, `/metrics`): routing and the state the handlers share. Each
//! resource has its module; `error` turns every failure into the JSON error body and status
//! of docs/http-api.md, and `extract` parses paths, queries and bodies so that bad input gets
//! those errors too instead of axum's plain-text rejections.
//!
//! Calls into the log that may wait (appends wait for their fsync; reads may fault pages in)
//! run on the blocking pool, so the async workers keep serving other connections.

mod dead_letters;
mod error;
mod event_json;
mod extract;
mod groups;
mod ops;
mod records;
mod streams;
mod subscribe;
mod topics;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use evident_groups::GroupStore;
use evident_log::Log;
use tokio::sync::{watch, Semaphore};

pub use error::{ApiError, ErrorReason};

use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The embedded log.
    pub log: Arc<Log>,
    /// Consumer groups.
    pub groups: Arc<GroupStore>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The visible commit sequence, published on every commit (wakes subscriptions).
    pub commits: watch::Receiver<u64>,
    /// Turns true when the server is shutting down (ends subscriptions).
    pub shutdown: watch::Receiver<bool>,
    /// Largest request body.
    pub body_max_bytes: usize,
    /// Slots for live subscriptions (one permit per open subscription).
    pub subscriptions: Arc<Semaphore>,
    /// How many slots `subscriptions` started with (named in the 503).
    pub subscriptions_max: usize,
}

impl AppState {
    /// Bundles the shared state.
    pub fn new(
        log: Arc<Log>,
        groups: Arc<GroupStore>,
        metrics: Arc<Metrics>,
        commits: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        body_max_bytes: usize,
    ) -> Self {
        let subscriptions_max = Semaphore::MAX_PERMITS;
        let subscriptions = Arc::new(Semaphore::new(subscriptions_max));
        Self { log, groups, metrics, commits, shutdown, body_max_bytes, subscriptions, subscriptions_max }
    }

    /// Caps live subscriptions at `max` (unbounded until called).
    pub fn with_subscriptions_max(mut self, max: usize) -> Self {
        self.subscriptions = Arc::new(Semaphore::new(max));
        self.subscriptions_max = max;
        self
    }

    /// Runs a blocking call into the log or the group store on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
    }
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let body_max = state.body_max_bytes;
    let metrics = state.metrics.clone();
    Router::new()
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route("/v1/topics/{topic}", get(topics::describe).delete(topics::delete))
        .route("/v1/topics/{topic}/streams/", get(streams::empty_key).post(streams::empty_key))
        .route("/v1/topics/{topic}/streams/{key}", get(streams::read).post(streams::append))
        .route("/v1/topics/{topic}/partitions/{partition}/records", get(records::partition))
        .route("/v1/all", get(records::all))
        .route("/v1/subscribe", get(subscribe::subscribe))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{group}", get(groups::describe).delete(groups::delete))
        .route("/v1/groups/{group}/offsets", get(groups::fetch_offsets).post(groups::commit_offsets))
        .route("/v1/groups/{group}/reset-offsets", post(groups::reset_offsets))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/{projection}", get(dead_letters::describe))
        .route("/v1/dead-letters/{projection}/retry", post(dead_letters::retry))
        .route("/v1/dead-letters/{projection}/skip", post(dead_letters::skip))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn(move |req, next| crate::metrics::track(metrics.clone(), req, next)))
        .with_state(state)
}
