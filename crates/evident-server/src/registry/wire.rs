//! The registry API's wire types (Confluent's JSON shapes, camelCase as Confluent spells them)
//! and its error answer `{"error_code": N, "message": "..."}`.
//!
//! Kept here rather than in `evident-api`: they are Confluent's shapes, not evident's, and only
//! the registry listener speaks them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use evident_registry::{Reference, RegistryError, SchemaType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A reference to another registered schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaReference {
    /// How the referring schema names it (Avro full name, JSON Schema `$ref`, Protobuf import).
    pub name: String,
    /// The subject holding it.
    pub subject: String,
    /// Its version there.
    pub version: i32,
}

impl From<SchemaReference> for Reference {
    fn from(r: SchemaReference) -> Self {
        Reference { name: r.name, subject: r.subject, version: r.version }
    }
}

impl From<&Reference> for SchemaReference {
    fn from(r: &Reference) -> Self {
        SchemaReference { name: r.name.clone(), subject: r.subject.clone(), version: r.version }
    }
}

/// A schema to register, look up or check.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    /// The schema's text (Avro or JSON Schema as a JSON string, Protobuf `.proto` text).
    pub schema: String,
    /// `AVRO` (default), `JSON` or `PROTOBUF`; case-insensitive.
    #[serde(default)]
    pub schema_type: Option<String>,
    /// References to other registered schemas.
    #[serde(default)]
    pub references: Option<Vec<SchemaReference>>,
    /// The id to give (IMPORT mode only).
    #[serde(default)]
    pub id: Option<i32>,
    /// The version to give (IMPORT mode only).
    #[serde(default)]
    pub version: Option<i32>,
}

/// A registration's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The schema's id.
    pub id: i32,
}

/// A subject version.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectVersionSchema {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The schema's id.
    pub id: i32,
    /// Omitted for Avro.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<SchemaReference>>,
    /// The schema's text.
    pub schema: String,
}

/// A schema by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaString {
    /// Omitted for Avro.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// The schema's text (base64 `FileDescriptorProto` with `format=serialized` for Protobuf).
    pub schema: String,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<SchemaReference>>,
}

/// A subject and version holding an id.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
}

/// `PUT /config` body and answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigUpdate {
    /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or
    /// FULL_TRANSITIVE (case-insensitive).
    pub compatibility: String,
}

/// `GET /config` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The level.
    pub compatibility_level: String,
}

/// `PUT /mode` body and answer, `GET /mode` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModeBody {
    /// READWRITE, READONLY or IMPORT (case-insensitive).
    pub mode: String,
}

/// A compatibility check's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatibilityResult {
    /// Whether the schema may follow.
    pub is_compatible: bool,
    /// Why not (with `verbose=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
}

/// Every error: Confluent's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorMessage {
    /// Confluent's error code (40401, 42201, 409, 50001, ...).
    pub error_code: u32,
    /// What went wrong.
    pub message: String,
}

/// An error answer of the registry API.
#[derive(Debug)]
pub struct SrError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl SrError {
    /// An error with an HTTP status and code of its own (400, 413, 415, ...).
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 for a request that cannot be read (malformed JSON, wrong field types, bad query).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 400, message)
    }

    /// 500 for a failure of ours.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, message)
    }
}

impl From<RegistryError> for SrError {
    fn from(e: RegistryError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, code: e.error_code(), message: e.to_string() }
    }
}

impl IntoResponse for SrError {
    fn into_response(self) -> Response {
        let body = ErrorMessage { error_code: self.code, message: self.message };
        sr_json(self.status, &body)
    }
}

/// A JSON answer with the registry's media type.
pub fn sr_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("wire types always serialize");
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// The wire name of a format, omitted for Avro as Confluent does.
pub fn type_field(t: SchemaType) -> Option<String> {
    (t != SchemaType::Avro).then(|| t.as_str().to_string())
}

/// References on the wire, omitted when empty.
pub fn refs_field(refs: &[Reference]) -> Option<Vec<SchemaReference>> {
    (!refs.is_empty()).then(|| refs.iter().map(SchemaReference::from).collect())
}
