//! The registry API's wire types (Confluent's JSON shapes, camelCase as Confluent spells them),
//! its error answer `{"error_code": N, "message": "..."}`, its media types, and the schemas
//! of its query parameters as the OpenAPI document states them.
//!
//! Kept here rather than in `evident-api`: they are Confluent's shapes, not evident's, and only
//! the registry listener speaks them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use evident_registry::{Reference, RegistryError, SchemaType};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// The media type of every answer, and the first a request body may have.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The unversioned media type, which a request body may also have.
pub const CONTENT_TYPE_UNVERSIONED: &str = "application/vnd.schemaregistry+json";
/// Plain JSON, which Confluent's clients also send.
pub const JSON: &str = "application/json";

/// A query flag (`deleted`, `permanent`, `normalize`, `verbose`, `defaultToGlobal`, `force`) as
/// the document states it: `true` or `false` in any case, or empty (`?deleted=`, false, as
/// Confluent's REST layer reads an empty flag). A string with a pattern rather than a boolean
/// because the empty and capitalized forms are accepted; anything else is 400.
pub struct Flag;

impl utoipa::PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])?$"))
            .description(Some("`true` or `false` (any case); empty or absent is false."))
            .into()
    }
}

impl ToSchema for Flag {}

/// `?verify=` as the document states it: only `stored` (the check against the subject's stored
/// events) exists; anything else is 400.
pub struct Verify;

impl utoipa::PartialSchema for Verify {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["stored"]))
            .description(Some("`stored`: decode every event stored for the subject with the candidate schema."))
            .into()
    }
}

impl ToSchema for Verify {}

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

/// A schema to register, look up or check. The examples give the document's readers (and
/// schemathesis, which starts from them) one valid schema of each format.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(
    json!({"schema": r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#}),
    json!({"schemaType": "JSON", "schema": r#"{"type":"object","properties":{"amount":{"type":"number"}}}"#}),
    json!({"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";\nmessage Order { string id = 1; }\n"}),
))]
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
#[schema(examples(json!({"compatibility": "FULL"})))]
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
#[schema(examples(json!({"mode": "READWRITE"})))]
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
