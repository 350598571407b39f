//! The router and the OpenAPI document agree: every documented operation is routed, every
//! method a documented path does not list is refused with 405, and the document holds what a
//! client needs (every error response carries the error schema). The router and the document
//! come from the same `routes!` registrations; these tests catch a route added to the axum
//! router beside them, or an operation whose handler is not reached.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use super::*;

/// A router over a fresh log in a temporary directory (also for the route modules' tests).
pub(super) fn test_router() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Arc::new(Log::open(dir.path(), evident_log::LogConfig::default()).expect("open"));
    let groups = Arc::new(GroupStore::open(log.clone(), Arc::new(evident_log::clock::SystemClock)).expect("groups"));
    let metrics = Arc::new(Metrics::default());
    let (_, commits) = watch::channel(0);
    let (_, shutdown) = watch::channel(false);
    let state = AppState::new(log, Some(groups), metrics, commits, shutdown, 1 << 20);
    (dir, router(state))
}

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{topic}", "t")
        .replace("{key}", "k")
        .replace("{partition}", "0")
        .replace("{group}", "g")
        .replace("{projection}", "p")
}

/// The (method, path) pairs the document lists.
fn documented() -> BTreeSet<(Method, String)> {
    let doc = serde_json::to_value(openapi()).expect("json");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            if item.get(method).is_some() {
                out.insert((Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"), path.clone()));
            }
        }
    }
    out
}

/// The error code of a reply, if it is the JSON error body.
async fn code_of(router: &Router, method: Method, path: &str) -> (StatusCode, Option<String>) {
    let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let code =
        serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    (status, code)
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let (_dir, router) = test_router();
    let documented = documented();
    assert!(documented.len() >= 20, "{documented:?}");
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = concrete(path);
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if method == Method::GET && path == "/v1/subscribe" {
                continue; // An event stream that does not end; routed, as the e2e tests show.
            }
            let (status, code) = code_of(&router, method.clone(), &url).await;
            if documented.contains(&(method.clone(), path.clone())) {
                assert!(
                    code.as_deref() != Some("not_found") && code.as_deref() != Some("method_not_allowed"),
                    "{method} {path} is documented but not routed: {status} {code:?}"
                );
            } else {
                assert_eq!(
                    (status, code.as_deref()),
                    (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
                    "{method} {path} is routed but not documented"
                );
            }
        }
    }
    // A path the document does not list is not routed.
    assert_eq!(code_of(&router, Method::GET, "/v1/nothing").await.1.as_deref(), Some("not_found"));
}

/// Every error response of every operation names the error schema, and every operation has a
/// success response, an id and a tag.
#[test]
fn every_operation_documents_its_errors() {
    let doc = serde_json::to_value(openapi()).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
            assert!(ids.insert(op["operationId"].as_str().expect("operationId").to_string()), "{method} {path}");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path}: tags");
            let ok = path.ends_with("/streams/") || responses.keys().any(|s| s.starts_with('2'));
            assert!(ok, "{method} {path}: no success response");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    if path == "/health" {
                        continue;
                    }
                    assert_eq!(schema, "#/components/schemas/Error", "{method} {path} {status}");
                }
            }
        }
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().expect("the codes are listed");
    assert_eq!(codes.len(), evident_api::ErrorCode::ALL.len());
}
