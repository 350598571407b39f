//! The schema registry's HTTP API: Confluent Schema Registry's REST API, served by
//! `evident serve` on its own listener (`--registry-addr`, default 127.0.0.1:8081, the port
//! Confluent's clients expect), so that Confluent's serializers and `SchemaRegistryClient`
//! work unchanged against evident. docs/registry.md lists the routes and codes.
//!
//! Why here and not in `evident-registry`: that crate holds the model and its rules and stays
//! free of HTTP; the listeners (this API, the Kafka port's validation) are the server's, as
//! the main HTTP API is. The handlers only translate between Confluent's wire shapes
//! (`wire.rs`) and [`RegistryStore`].
//!
//! As for the main API, the router and the OpenAPI document come from the same registrations
//! (`utoipa-axum`'s `routes!`): a route cannot be served without being documented, and
//! `GET /openapi.json` on the registry port is generated, never edited.
//!
//! Differences from the main API, all Confluent's: errors are `{"error_code", "message"}`;
//! answers are `application/vnd.schemaregistry.v1+json`; request bodies may be that, the
//! unversioned `application/vnd.schemaregistry+json`, `application/json`,
//! `application/octet-stream` (read as JSON) or untyped (else 415); unknown query parameters are ignored (Confluent's clients send some evident has no
//! use for); unreadable JSON is 400 with error code 400.
//!
//! Extension point: `?verify=stored` on the register and compatibility routes calls the
//! [`StoredVerifier`] installed with [`RegistryState::with_verifier`] (the check against the
//! events stored for the subject); without one such requests are refused with 400.

mod extract;
mod routes;
mod stored;
mod wire;

pub use stored::StoredEvents;

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use evident_registry::{ParsedSchema, RegistryError, RegistryStore};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use wire::SrError;

/// Checks a candidate schema against what is stored for a subject (`?verify=stored`).
pub trait StoredVerifier: Send + Sync {
    /// The problems found (empty: none); each names the stored event it concerns.
    fn verify(&self, subject: &str, candidate: &ParsedSchema) -> Result<Vec<String>, RegistryError>;
}

/// What the registry's handlers share.
#[derive(Clone)]
pub struct RegistryState {
    /// The registry.
    pub store: Arc<RegistryStore>,
    /// Largest request body (413 above).
    pub body_max_bytes: usize,
    /// The `?verify=stored` check, when installed.
    pub verifier: Option<Arc<dyn StoredVerifier>>,
}

impl RegistryState {
    /// The state of a registry API over `store`.
    pub fn new(store: Arc<RegistryStore>, body_max_bytes: usize) -> Self {
        Self { store, body_max_bytes, verifier: None }
    }

    /// Installs the `?verify=stored` check.
    pub fn with_verifier(mut self, verifier: Arc<dyn StoredVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "evident schema registry",
        description = "Confluent Schema Registry's REST API, served by `evident serve` on `--registry-addr`. \
Every error is `{\"error_code\": N, \"message\": \"...\"}` with Confluent's codes (40401 subject not found, \
40402 version not found, 40403 schema not found, 40404/40405 subject soft-deleted / not soft-deleted, \
40406/40407 the same for a version, 40408/40409 no subject-level config / mode, 409 incompatible, \
42201 invalid schema, 42202 invalid version, 42203 invalid compatibility level, 42204 invalid mode, \
42205 operation not permitted, 42206 reference exists, 42207 id does not match, 42208 invalid subject, \
42209 schema too large, 50001 store error; 400 unreadable JSON, 404 unknown route, 405 wrong method, \
413 body too large, 415 unsupported media type). A refused request changes nothing.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8081", description = "The default `--registry-addr`.")),
    // Query parameter schemas named in the routes' tuple `params(...)`, which utoipa does not
    // collect on its own.
    components(schemas(wire::Flag, wire::Verify)),
    tags(
        (name = "subjects", description = "Subjects and their versions: register, look up, list, delete."),
        (name = "schemas", description = "Schemas by id."),
        (name = "config", description = "Compatibility levels, global and per subject."),
        (name = "mode", description = "Modes (READWRITE, READONLY, IMPORT), global and per subject."),
        (name = "compatibility", description = "Compatibility checks without registering."),
        (name = "registry", description = "The root and this description."),
    )
)]
struct RegistryDoc;

fn api() -> OpenApiRouter<RegistryState> {
    OpenApiRouter::with_openapi(RegistryDoc::openapi())
        .routes(routes!(routes::root))
        .routes(routes!(routes::openapi))
        .routes(routes!(routes::schema_types))
        .routes(routes!(routes::list_subjects))
        .routes(routes!(routes::lookup, routes::delete_subject))
        .routes(routes!(routes::register, routes::list_versions))
        .routes(routes!(routes::get_version, routes::delete_version))
        .routes(routes!(routes::get_version_schema))
        .routes(routes!(routes::referenced_by))
        .routes(routes!(routes::schema_by_id))
        .routes(routes!(routes::schema_text_by_id))
        .routes(routes!(routes::subjects_by_id))
        .routes(routes!(routes::versions_by_id))
        .routes(routes!(routes::get_global_config, routes::put_global_config, routes::delete_global_config))
        .routes(routes!(routes::get_subject_config, routes::put_subject_config, routes::delete_subject_config))
        .routes(routes!(routes::get_global_mode, routes::put_global_mode))
        .routes(routes!(routes::get_subject_mode, routes::put_subject_mode, routes::delete_subject_mode))
        .routes(routes!(routes::compatibility_with_version))
        .routes(routes!(routes::compatibility_with_all))
}

/// The registry API's OpenAPI document, generated from the routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

async fn not_found() -> Response {
    SrError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found").into_response()
}

async fn method_not_allowed() -> Response {
    SrError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed").into_response()
}

/// The router of the registry API.
pub fn router(state: RegistryState) -> Router {
    let body_max = state.body_max_bytes;
    let (router, _) = api().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once() {
        let doc = openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for p in [
            "/subjects/{subject}/versions",
            "/schemas/ids/{id}",
            "/config/{subject}",
            "/mode",
            "/compatibility/subjects/{subject}/versions/{version}",
        ] {
            assert!(paths.iter().any(|q| q.as_str() == p), "{p} missing from {paths:?}");
        }
        let mut ids = std::collections::BTreeSet::new();
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.delete].into_iter().flatten() {
                let id = op.operation_id.clone().expect("every operation has an id");
                assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            }
        }
    }

    /// What schemathesis found first: the document must state the media types the API really
    /// uses, or every answer contradicts it.
    #[test]
    fn the_document_states_the_registry_media_types() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut bodies = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let answers = if path == "/openapi.json" { wire::JSON } else { wire::CONTENT_TYPE };
                for (status, response) in op["responses"].as_object().unwrap() {
                    let types: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                    assert_eq!(types, [answers], "{method} {path} {status}");
                }
                if let Some(body) = op.get("requestBody") {
                    bodies += 1;
                    let mut types: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
                    types.sort();
                    assert_eq!(
                        types,
                        [wire::JSON, wire::CONTENT_TYPE_UNVERSIONED, wire::CONTENT_TYPE],
                        "{method} {path}"
                    );
                }
                for param in op["parameters"].as_array().into_iter().flatten() {
                    if ["deleted", "permanent", "normalize", "verbose", "defaultToGlobal", "force"]
                        .contains(&param["name"].as_str().unwrap())
                    {
                        assert_eq!(param["schema"]["$ref"], "#/components/schemas/Flag", "{method} {path}");
                    }
                }
            }
        }
        assert_eq!(bodies, 8);
        assert!(doc["components"]["schemas"]["Flag"]["pattern"].is_string());
    }
}
