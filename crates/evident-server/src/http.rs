//! The HTTP API (`/v1`, `/health`, `/metrics`): routing and the state the handlers share. Each
//! resource has its module; `error` turns every failure into the JSON error body and status
//! of docs/http-api.md, and `extract` parses paths, queries and bodies so that bad input gets
//! those errors too instead of axum's plain-text rejections.
//!
//! The router and the OpenAPI document are built from the same registrations: each handler
//! carries its `#[utoipa::path]` (method, path, parameters, bodies, every status it answers),
//! the wire types of `evident-api` carry their schemas, and `routes!` adds a handler to the
//! router and its operation to the document at once (`utoipa-axum`). A route cannot be served
//! without being documented, and `/v1/openapi.json` is generated, never edited by hand.
//!
//! Calls into the log that may wait (appends wait for their fsync; reads may fault pages in)
//! run on the blocking pool, so the async workers keep serving other connections.

mod budget;
pub mod cluster;
mod dead_letters;
mod error;
mod event_json;
mod extract;
mod groups;
mod ops;
mod records;
mod sql;
mod sse;
mod streams;
mod subscribe;
mod topics;

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use evident_groups::GroupStore;
use evident_log::Log;
pub use groups::Groups;
use tokio::sync::{watch, Semaphore};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorReason};
pub use event_json::render_kafka_offsets;

use crate::metrics::Metrics;

/// What every handler can reach. One shared allocation: axum clones the state for every
/// request, and cloning one `Arc` is one atomic increment where cloning the fields was seven
/// (two of them `watch` receivers), a measured cost at 64 concurrent appenders.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`] (reached through it by `Deref`).
pub struct Shared {
    /// The embedded log; with Kafka storage, this node's mirror of the cluster (read-only
    /// here: appends go to the cluster through `cluster`).
    pub log: Arc<Log>,
    /// The embedded store's consumer groups (None with Kafka storage: the cluster keeps them,
    /// and [`AppState::groups`] asks it).
    groups: Option<Arc<GroupStore>>,
    /// This node's part of a Kafka cluster, with `--storage kafka://`.
    pub cluster: Option<Arc<cluster::Cluster>>,
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
    /// The byte budgets of read pages (`budget.rs`).
    pub responses: budget::ResponseBudget,
    /// The shared reader live subscriptions follow, started by the first (`subscribe.rs`).
    pub feed: Arc<OnceLock<Arc<subscribe::Feed>>>,
    /// Schema validation of appended events, when the server has a registry (topics turn it
    /// on with `confluent.value.schema.validation`).
    pub validation: Option<Arc<evident_registry::Validation>>,
    /// The SQL engine (`POST /v1/sql`), when the server runs one.
    pub sql: Option<Arc<evident_sql::Engine>>,
}

impl AppState {
    /// Bundles the shared state.
    pub fn new(
        log: Arc<Log>,
        groups: Option<Arc<GroupStore>>,
        metrics: Arc<Metrics>,
        commits: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        body_max_bytes: usize,
    ) -> Self {
        let subscriptions_max = Semaphore::MAX_PERMITS;
        let subscriptions = Arc::new(Semaphore::new(subscriptions_max));
        Self(Arc::new(Shared {
            log,
            groups,
            cluster: None,
            metrics,
            commits,
            shutdown,
            body_max_bytes,
            subscriptions,
            subscriptions_max,
            responses: budget::ResponseBudget::unbounded(),
            feed: Arc::new(OnceLock::new()),
            validation: None,
            sql: None,
        }))
    }

    /// Bounds read pages to `per_response` bytes each (beyond a single larger event) and
    /// `total` bytes for every page held at once (unbounded until called).
    pub fn with_response_budget(self, per_response: usize, total: usize) -> Self {
        let mut shared = self.shared_copy();
        shared.responses = budget::ResponseBudget::new(per_response, total);
        Self(Arc::new(shared))
    }

    /// A copy of the fields, sharing the semaphores, for the builder methods.
    fn shared_copy(&self) -> Shared {
        Shared {
            log: self.log.clone(),
            groups: self.groups.clone(),
            cluster: self.cluster.clone(),
            metrics: self.metrics.clone(),
            commits: self.commits.clone(),
            shutdown: self.shutdown.clone(),
            body_max_bytes: self.body_max_bytes,
            subscriptions: self.subscriptions.clone(),
            subscriptions_max: self.subscriptions_max,
            responses: self.responses.clone(),
            feed: self.feed.clone(),
            validation: self.validation.clone(),
            sql: self.sql.clone(),
        }
    }

    /// Serves the API in front of a Kafka cluster (`log` is then the cluster's mirror).
    pub fn with_cluster(self, cluster: Arc<cluster::Cluster>) -> Self {
        let mut shared = self.shared_copy();
        shared.cluster = Some(cluster);
        Self(Arc::new(shared))
    }

    /// The consumer groups: the embedded store's, or the Kafka cluster's on a node in front of
    /// one.
    pub fn groups(&self) -> Groups {
        match (&self.groups, &self.cluster) {
            (Some(store), _) => Groups::Embedded(store.clone()),
            (None, Some(cluster)) => Groups::Cluster(cluster.groups.clone()),
            (None, None) => unreachable!("a server has an embedded group store or a cluster"),
        }
    }

    /// Refuses a route that only the embedded store serves (`what`, plural) with Kafka storage.
    pub fn embedded_only(&self, what: &str, instead: &str) -> Result<(), ApiError> {
        match self.cluster {
            Some(_) => Err(cluster::not_on_cluster(what, instead)),
            None => Ok(()),
        }
    }

    /// Serves SQL with `engine`.
    pub fn with_sql(self, engine: Option<Arc<evident_sql::Engine>>) -> Self {
        let mut shared = self.shared_copy();
        shared.sql = engine;
        Self(Arc::new(shared))
    }

    /// Validates appended events against `schemas` on the topics that ask for it. Without a
    /// registry such a topic refuses every append: validation that cannot run must not pass
    /// events unchecked.
    pub fn with_schemas(self, schemas: Option<Arc<dyn evident_registry::SchemaSource>>) -> Self {
        let mut shared = self.shared_copy();
        shared.validation = schemas.map(|s| Arc::new(evident_registry::Validation::new(s)));
        Self(Arc::new(shared))
    }

    /// Caps live subscriptions at `max` (unbounded until called).
    pub fn with_subscriptions_max(self, max: usize) -> Self {
        let mut shared = self.shared_copy();
        shared.subscriptions = Arc::new(Semaphore::new(max));
        shared.subscriptions_max = max;
        Self(Arc::new(shared))
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

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of the document that belong to no single route: title, the conventions every
/// route shares, tags, the default server.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "evident",
        description = "The HTTP API of evident, an event store.\n\nEverything is JSON except `/metrics` \
(OpenMetrics text) and `/v1/subscribe` (Server-Sent Events). Every error, on every route, is \
`{\"error\": {\"code\", \"message\", ...}}` (see the `Error` schema); `code` is stable and meant for \
programs (the `ErrorCode` schema lists every code), `message` for people. A refused request never \
changes stored data. An unknown route is `404 not_found`; a known route with another method is \
`405 method_not_allowed`; a request target (path and query) longer than 16 KiB is \
`414 uri_too_long`. Every `/v1` route except `/v1/openapi.json` refuses query parameters it does \
not take (`400 invalid_argument`). Request bodies are limited by `--http-body-max-bytes` \
(default 8 MiB, `413 payload_too_large`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "The default `--http-addr`.")),
    tags(
        (name = "topics", description = "Create, list, describe and delete topics."),
        (name = "streams", description = "Entity streams (topic + key): append with an expected version, read by version."),
        (name = "records", description = "Reads by position: a partition by offset, everything by commit sequence."),
        (name = "subscriptions", description = "Live subscriptions over Server-Sent Events."),
        (name = "groups", description = "Consumer groups and their committed offsets (kept in `__consumer_offsets`)."),
        (name = "dead-letters", description = "Projections' dead-letter queues: list parked events, ask for a retry or a skip."),
        (name = "sql", description = "SQL: materialized views over topics, pull and push queries (docs/sql.md)."),
        (name = "operations", description = "Health, metrics and this description."),
    ),
    // `Event` by name: the read pages hold it as a generic argument, which utoipa does not collect.
    components(schemas(evident_api::ErrorCode, evident_api::streams::Event))
)]
struct ApiDoc;

/// Every route with its documentation: the one list both the router and the document come from.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(topics::list, topics::create))
        .routes(routes!(topics::describe, topics::delete))
        .routes(routes!(streams::empty_key))
        .routes(routes!(streams::read, streams::append))
        .routes(routes!(records::partition))
        .routes(routes!(records::all))
        .routes(routes!(subscribe::subscribe))
        .routes(routes!(groups::list))
        .routes(routes!(groups::describe, groups::delete))
        .routes(routes!(groups::fetch_offsets, groups::commit_offsets))
        .routes(routes!(groups::reset_offsets))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::describe))
        .routes(routes!(dead_letters::retry))
        .routes(routes!(dead_letters::skip))
        .routes(routes!(sql::execute))
}

/// The OpenAPI document of the API, generated from the routes.
///
/// A handler documented for several methods (`method(get, post)`) gives each operation the same
/// `operationId`, which OpenAPI requires to be unique: each gets its method as a suffix.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            ("Get", &mut item.get),
            ("Post", &mut item.post),
            ("Put", &mut item.put),
            ("Patch", &mut item.patch),
            ("Delete", &mut item.delete),
        ];
        let mut operations: Vec<_> =
            operations.into_iter().filter_map(|(m, op)| op.as_mut().map(|op| (m, op))).collect();
        let ids: Vec<Option<String>> = operations.iter().map(|(_, op)| op.operation_id.clone()).collect();
        for (method, op) in &mut operations {
            if let Some(id) = &op.operation_id {
                if ids.iter().filter(|other| other.as_ref() == Some(id)).count() > 1 {
                    op.operation_id = Some(format!("{id}{method}"));
                }
            }
        }
    }
    doc
}

/// The document as served, rendered once.
fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let body_max = state.body_max_bytes;
    let metrics = state.metrics.clone();
    let (router, _) = api().split_for_parts();
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn(ops::refuse_long_uri))
        .layer(axum::middleware::from_fn(move |req, next| crate::metrics::track(metrics.clone(), req, next)))
        .with_state(state)
}

#[cfg(test)]
mod tests;
