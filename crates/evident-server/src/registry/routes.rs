//! The registry API's handlers, one per Confluent route, each documented for the OpenAPI
//! document by its `#[utoipa::path]`. They translate between the wire and
//! [`evident_registry::RegistryStore`]; every rule lives in the store. Calls that parse a
//! schema or write (and so wait for the log's fsync) run on the blocking pool.
//!
//! Each documented answer names its media type (`CONTENT_TYPE`, Confluent's
//! `application/vnd.schemaregistry.v1+json`: utoipa would guess `application/json`), each body
//! the three media types accepted, and each route every status it can answer: 400 wherever a
//! query flag, the query string, a path segment or a body can be unreadable; 422 (42208) wherever
//! a subject is named; 413, 415 wherever a body is read; 500 (50001) wherever the log is written
//! or read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use evident_registry::{
    Compatibility, Mode, ParsedSchema, RegisterOptions, RegistryStore, SchemaInput, SchemaType, SubjectSchema,
};

use super::extract::{schema_id, version, SrBody, SrPath, SrQuery};
use super::wire::{
    refs_field, sr_json, type_field, CompatibilityResult, Config, ConfigUpdate, ErrorMessage, Flag, ModeBody,
    RegisterResponse, SchemaRequest, SchemaString, SrError, SubjectVersion, SubjectVersionSchema, Verify, CONTENT_TYPE,
    CONTENT_TYPE_UNVERSIONED, JSON,
};
use super::RegistryState;

type Answer = Result<Response, SrError>;

// Descriptions the routes' documentation shares.
const SUBJECT: &str = "The subject: 1 to 1024 bytes, no control characters (else 42208); percent-encode `/`.";
const VERSION: &str = "`latest`, `-1` (latest) or 1..2^31-1 (else 42202).";
const ID: &str = "The schema id (anything but a positive 32-bit number: 40403).";
const VERIFY: &str = "`stored`: also decode the subject's stored events with the schema; each one it cannot \
read is a reason (400 where the server has no such check).";
const BODY: &str = "Also read as JSON when untyped or `application/octet-stream`, as Confluent reads them.";
const BAD_QUERY: &str = "A query flag other than true/false, or an unreadable query string or path (error code 400).";
const BAD_PATH: &str = "An unreadable path (error code 400).";
const BAD_BODY: &str = "Unreadable JSON or wrong field types in the body, a query flag other than true/false, an \
unreadable query string or path (error code 400).";
const TOO_LARGE: &str = "Body larger than `--http-body-max-bytes`.";
const BAD_MEDIA: &str = "A body media type other than the registry's two, `application/json`, \
`application/octet-stream` or none.";
const STORE_FAILED: &str = "50001: the store failed (full disk, I/O); nothing was changed.";
const RAW_TEXT: &str = "The schema text as registered, unquoted, as Confluent answers it: a JSON document for Avro \
and JSON Schema, `.proto` source for Protobuf (so no JSON schema is stated).";

fn ok<T: serde::Serialize>(body: &T) -> Answer {
    Ok(sr_json(StatusCode::OK, body))
}

/// A raw schema text answer (`.../schema` routes): the text itself, as Confluent answers.
fn raw(text: &str) -> Answer {
    let mut response = axum::response::IntoResponse::into_response((StatusCode::OK, text.to_string()));
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(super::wire::CONTENT_TYPE));
    Ok(response)
}

fn input(body: SchemaRequest) -> Result<SchemaInput, SrError> {
    let schema_type = match body.schema_type.as_deref() {
        None | Some("") => SchemaType::Avro,
        Some(t) => {
            t.parse::<SchemaType>().map_err(|why| SrError::from(evident_registry::RegistryError::InvalidSchema(why)))?
        }
    };
    Ok(SchemaInput {
        schema: body.schema,
        schema_type,
        references: body.references.unwrap_or_default().into_iter().map(Into::into).collect(),
    })
}

fn version_wire(s: SubjectSchema) -> SubjectVersionSchema {
    SubjectVersionSchema {
        subject: s.subject,
        version: s.version,
        id: s.id.0,
        schema_type: type_field(s.schema_type),
        references: refs_field(&s.references),
        schema: s.schema.to_string(),
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &RegistryState,
    f: impl FnOnce(&RegistryStore) -> Result<T, SrError> + Send + 'static,
) -> Result<T, SrError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| SrError::internal(format!("worker failed: {e}")))?
}

/// `?verify=stored`: the extension point where the check against stored events plugs in.
/// Without a verifier installed the request is refused rather than silently unchecked.
fn wants_verify(
    state: &RegistryState,
    q: &SrQuery,
) -> Result<Option<std::sync::Arc<dyn super::StoredVerifier>>, SrError> {
    match q.str("verify") {
        None => Ok(None),
        Some("stored") => match &state.verifier {
            Some(v) => Ok(Some(v.clone())),
            None => Err(SrError::bad_request("verify=stored is not available on this server")),
        },
        Some(other) => Err(SrError::bad_request(format!("verify must be \"stored\", not {other:?}"))),
    }
}

/// Answers `{}`: the root, which clients probe.
#[utoipa::path(get, path = "/", tag = "registry", operation_id = "root",
    responses((status = 200, description = "An empty object.", body = Object, content_type = CONTENT_TYPE)))]
pub(super) async fn root() -> Answer {
    ok(&serde_json::json!({}))
}

/// The schema formats this registry understands.
#[utoipa::path(get, path = "/schemas/types", tag = "schemas", operation_id = "getSchemaTypes",
    responses((status = 200, description = "`[\"JSON\",\"PROTOBUF\",\"AVRO\"]`.", body = Vec<String>, content_type = CONTENT_TYPE)))]
pub(super) async fn schema_types() -> Answer {
    let types: Vec<&str> = SchemaType::ALL.iter().map(|t| t.as_str()).collect();
    ok(&types)
}

/// List subjects (`deleted=true` adds soft-deleted ones; `subjectPrefix` filters).
#[utoipa::path(get, path = "/subjects", tag = "subjects", operation_id = "listSubjects",
    params(("deleted" = Option<Flag>, Query, description = "Include soft-deleted subjects."),
           ("subjectPrefix" = Option<String>, Query, description = "Only subjects starting with this.")),
    responses((status = 200, description = "Subject names, sorted.", body = Vec<String>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn list_subjects(State(state): State<RegistryState>, q: SrQuery) -> Answer {
    let deleted = q.flag("deleted")?;
    ok(&state.store.subjects(q.str("subjectPrefix"), deleted))
}

/// Register a schema under a subject (its id; the existing one if already registered).
#[utoipa::path(post, path = "/subjects/{subject}/versions", tag = "subjects", operation_id = "register",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("normalize" = Option<Flag>, Query, description = "Compare normalized forms."),
           ("verify" = Option<Verify>, Query, description = VERIFY)),
    request_body(description = BODY, content(
        (SchemaRequest = CONTENT_TYPE), (SchemaRequest = CONTENT_TYPE_UNVERSIONED), (SchemaRequest = JSON))),
    responses((status = 200, description = "The schema's id.", body = RegisterResponse, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 409, description = "Incompatible (409), with the reasons.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42201 invalid schema, 42202 version already used (IMPORT), 42205 not permitted by the mode, 42207 id holds another schema, 42208 invalid subject, 42209 schema too large.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn register(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
    SrBody(body): SrBody<SchemaRequest>,
) -> Answer {
    let options = RegisterOptions { normalize: q.flag("normalize")?, id: body.id, version: body.version };
    let verifier = wants_verify(&state, &q)?;
    let input = input(body)?;
    let registered = blocking(&state, move |store| {
        if let Some(verifier) = verifier {
            let parsed = store.parse(&input)?;
            let problems = verifier.verify(&subject, &parsed)?;
            if !problems.is_empty() {
                return Err(evident_registry::RegistryError::Incompatible { subject, reasons: problems }.into());
            }
        }
        Ok(store.register(&subject, &input, options)?)
    })
    .await?;
    ok(&RegisterResponse { id: registered.id.0 })
}

/// The version of a subject holding a schema.
#[utoipa::path(post, path = "/subjects/{subject}", tag = "subjects", operation_id = "lookupSchema",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("normalize" = Option<Flag>, Query, description = "Compare normalized forms."),
           ("deleted" = Option<Flag>, Query, description = "Soft-deleted versions count too.")),
    request_body(description = BODY, content(
        (SchemaRequest = CONTENT_TYPE), (SchemaRequest = CONTENT_TYPE_UNVERSIONED), (SchemaRequest = JSON))),
    responses((status = 200, description = "The version holding the schema.", body = SubjectVersionSchema, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40403 schema not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42201 invalid schema, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn lookup(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
    SrBody(body): SrBody<SchemaRequest>,
) -> Answer {
    let (normalize, deleted) = (q.flag("normalize")?, q.flag("deleted")?);
    let input = input(body)?;
    let found = blocking(&state, move |store| Ok(store.lookup(&subject, &input, normalize, deleted)?)).await?;
    ok(&version_wire(found))
}

/// Soft-delete every live version of a subject, or (`permanent=true`) remove a soft-deleted
/// subject for good.
#[utoipa::path(delete, path = "/subjects/{subject}", tag = "subjects", operation_id = "deleteSubject",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("permanent" = Option<Flag>, Query, description = "Remove a soft-deleted subject for good.")),
    responses((status = 200, description = "The versions deleted.", body = Vec<i32>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40404 already soft-deleted, 40405 not soft-deleted first.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42205 read-only, 42206 referenced, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn delete_subject(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let permanent = q.flag("permanent")?;
    let versions = blocking(&state, move |store| Ok(store.delete_subject(&subject, permanent)?)).await?;
    ok(&versions)
}

/// A subject's versions.
#[utoipa::path(get, path = "/subjects/{subject}/versions", tag = "subjects", operation_id = "listVersions",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("deleted" = Option<Flag>, Query, description = "Soft-deleted versions too.")),
    responses((status = 200, description = "Version numbers.", body = Vec<i32>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn list_versions(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let deleted = q.flag("deleted")?;
    ok(&state.store.versions(&subject, deleted)?)
}

/// One version of a subject (`latest` or a number).
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}", tag = "subjects", operation_id = "getVersion",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("version" = String, Path, description = VERSION, example = "latest"),
           ("deleted" = Option<Flag>, Query, description = "A soft-deleted version may be named.")),
    responses((status = 200, description = "The version.", body = SubjectVersionSchema, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40402 version not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42202 invalid version, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn get_version(
    State(state): State<RegistryState>,
    SrPath((subject, v)): SrPath<(String, String)>,
    q: SrQuery,
) -> Answer {
    let deleted = q.flag("deleted")?;
    ok(&version_wire(state.store.version(&subject, version(&v)?, deleted)?))
}

/// Delete one version: softly, or (`permanent=true`) a soft-deleted one for good.
#[utoipa::path(delete, path = "/subjects/{subject}/versions/{version}", tag = "subjects", operation_id = "deleteVersion",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("version" = String, Path, description = VERSION, example = "latest"),
           ("permanent" = Option<Flag>, Query, description = "Remove a soft-deleted version for good.")),
    responses((status = 200, description = "The version deleted.", body = i32, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401, 40402, 40406 already soft-deleted, 40407 not soft-deleted first.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42202 invalid version, 42205 read-only, 42206 referenced, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn delete_version(
    State(state): State<RegistryState>,
    SrPath((subject, v)): SrPath<(String, String)>,
    q: SrQuery,
) -> Answer {
    let permanent = q.flag("permanent")?;
    let spec = version(&v)?;
    let deleted = blocking(&state, move |store| Ok(store.delete_version(&subject, spec, permanent)?)).await?;
    ok(&deleted)
}

/// One version's schema text, raw.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}/schema", tag = "subjects", operation_id = "getVersionSchema",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("version" = String, Path, description = VERSION, example = "latest"),
           ("deleted" = Option<Flag>, Query, description = "A soft-deleted version may be named.")),
    responses((status = 200, description = RAW_TEXT, content(("application/vnd.schemaregistry.v1+json"))),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40402 version not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42202 invalid version, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn get_version_schema(
    State(state): State<RegistryState>,
    SrPath((subject, v)): SrPath<(String, String)>,
    q: SrQuery,
) -> Answer {
    let deleted = q.flag("deleted")?;
    raw(&state.store.version(&subject, version(&v)?, deleted)?.schema)
}

/// Ids of the schemas that reference this version.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}/referencedby", tag = "subjects", operation_id = "getReferencedBy",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("version" = String, Path, description = VERSION, example = "latest")),
    responses((status = 200, description = "Schema ids.", body = Vec<i32>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_PATH, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40402 version not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42202 invalid version, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn referenced_by(
    State(state): State<RegistryState>,
    SrPath((subject, v)): SrPath<(String, String)>,
) -> Answer {
    let ids: Vec<i32> = state.store.referenced_by(&subject, version(&v)?)?.into_iter().map(|id| id.0).collect();
    ok(&ids)
}

/// A schema by id (`format=serialized`: a Protobuf schema as a base64 `FileDescriptorProto`).
#[utoipa::path(get, path = "/schemas/ids/{id}", tag = "schemas", operation_id = "getSchemaById",
    params(("id" = i32, Path, description = ID, example = 1),
           ("subject" = Option<String>, Query, description = "Accepted: a context selector in Confluent, no filter here."),
           ("format" = Option<String>, Query, description = "`serialized`: a Protobuf schema as a base64 `FileDescriptorProto`; other values answer the text as registered.")),
    responses((status = 200, description = "The schema.", body = SchemaString, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40403 schema not found.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn schema_by_id(State(state): State<RegistryState>, SrPath(id): SrPath<String>, q: SrQuery) -> Answer {
    let id = schema_id(&id)?;
    // `subject` only picks a context in Confluent (evident has the default one only), so it
    // does not restrict the answer: a deserializer passing its subject still finds the id.
    let found = state.store.schema(id, None)?;
    let mut text = found.schema.to_string();
    match q.str("format") {
        None | Some("") => {}
        Some("serialized") => {
            if found.schema_type == SchemaType::Protobuf {
                use evident_registry::SchemaSource as _;
                if let Some(parsed) = state.store.schema_by_id(id) {
                    if let ParsedSchema::Protobuf(p) = parsed.as_ref() {
                        text = p.serialized();
                    }
                }
            }
        }
        // Confluent answers other formats (`resolved`, `default`) with the text as stored.
        Some(_) => {}
    }
    ok(&SchemaString {
        schema_type: type_field(found.schema_type),
        schema: text,
        references: refs_field(&found.references),
    })
}

/// A schema's text by id, raw.
#[utoipa::path(get, path = "/schemas/ids/{id}/schema", tag = "schemas", operation_id = "getSchemaTextById",
    params(("id" = i32, Path, description = ID, example = 1),
           ("subject" = Option<String>, Query, description = "Accepted: a context selector in Confluent, no filter here.")),
    responses((status = 200, description = RAW_TEXT, content(("application/vnd.schemaregistry.v1+json"))),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40403 schema not found.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn schema_text_by_id(
    State(state): State<RegistryState>,
    SrPath(id): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let _ = q.str("subject"); // a context selector in Confluent; see `schema_by_id`
    raw(&state.store.schema(schema_id(&id)?, None)?.schema)
}

/// The subjects holding an id.
#[utoipa::path(get, path = "/schemas/ids/{id}/subjects", tag = "schemas", operation_id = "getSubjectsById",
    params(("id" = i32, Path, description = ID, example = 1),
           ("deleted" = Option<Flag>, Query, description = "Subjects whose versions holding it are soft-deleted too.")),
    responses((status = 200, description = "Subjects.", body = Vec<String>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40403 schema not found.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn subjects_by_id(
    State(state): State<RegistryState>,
    SrPath(id): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let deleted = q.flag("deleted")?;
    ok(&state.store.id_subjects(schema_id(&id)?, deleted)?)
}

/// The subject versions holding an id.
#[utoipa::path(get, path = "/schemas/ids/{id}/versions", tag = "schemas", operation_id = "getVersionsById",
    params(("id" = i32, Path, description = ID, example = 1),
           ("deleted" = Option<Flag>, Query, description = "Soft-deleted versions too.")),
    responses((status = 200, description = "Subject versions.", body = Vec<SubjectVersion>, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40403 schema not found.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn versions_by_id(
    State(state): State<RegistryState>,
    SrPath(id): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let deleted = q.flag("deleted")?;
    let versions: Vec<SubjectVersion> = state
        .store
        .id_versions(schema_id(&id)?, deleted)?
        .into_iter()
        .map(|sv| SubjectVersion { subject: sv.subject, version: sv.version })
        .collect();
    ok(&versions)
}

fn level(text: &str) -> Result<Compatibility, SrError> {
    text.parse::<Compatibility>()
        .map_err(|_| evident_registry::RegistryError::InvalidCompatibility(
            "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive".into(),
        ).into())
}

fn mode_of(text: &str) -> Result<Mode, SrError> {
    text.parse::<Mode>().map_err(|why| evident_registry::RegistryError::InvalidMode(why).into())
}

/// The global compatibility level.
#[utoipa::path(get, path = "/config", tag = "config", operation_id = "getGlobalConfig",
    responses((status = 200, description = "The level.", body = Config, content_type = CONTENT_TYPE)))]
pub(super) async fn get_global_config(State(state): State<RegistryState>) -> Answer {
    ok(&Config { compatibility_level: state.store.effective_compatibility(None).to_string() })
}

/// Set the global compatibility level.
#[utoipa::path(put, path = "/config", tag = "config", operation_id = "putGlobalConfig",
    request_body(description = BODY, content(
        (ConfigUpdate = CONTENT_TYPE), (ConfigUpdate = CONTENT_TYPE_UNVERSIONED), (ConfigUpdate = JSON))),
    responses((status = 200, description = "The level set.", body = ConfigUpdate, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42203 invalid level.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn put_global_config(
    State(state): State<RegistryState>,
    SrBody(body): SrBody<ConfigUpdate>,
) -> Answer {
    let l = level(&body.compatibility)?;
    blocking(&state, move |store| Ok(store.set_compatibility(None, l)?)).await?;
    ok(&ConfigUpdate { compatibility: l.to_string() })
}

/// Reset the global compatibility level to the default (BACKWARD).
#[utoipa::path(delete, path = "/config", tag = "config", operation_id = "deleteGlobalConfig",
    responses((status = 200, description = "The level removed.", body = Config, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn delete_global_config(State(state): State<RegistryState>) -> Answer {
    let previous = blocking(&state, move |store| Ok(store.delete_compatibility(None)?)).await?;
    ok(&Config { compatibility_level: previous.to_string() })
}

/// A subject's compatibility level (40408 if it has none, unless `defaultToGlobal=true`).
#[utoipa::path(get, path = "/config/{subject}", tag = "config", operation_id = "getSubjectConfig",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("defaultToGlobal" = Option<Flag>, Query, description = "Answer the global level when the subject has none.")),
    responses((status = 200, description = "The level.", body = Config, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40408 no subject-level level.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn get_subject_config(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
) -> Answer {
    // Read before it is needed, so a bad flag is refused whether or not the subject has a level.
    let default_to_global = q.flag("defaultToGlobal")?;
    evident_registry::validate_subject(&subject)?;
    let level = match state.store.compatibility(Some(&subject)) {
        Some(l) => l,
        None if default_to_global => state.store.effective_compatibility(None),
        None => return Err(evident_registry::RegistryError::SubjectCompatibilityNotConfigured(subject).into()),
    };
    ok(&Config { compatibility_level: level.to_string() })
}

/// Set a subject's compatibility level.
#[utoipa::path(put, path = "/config/{subject}", tag = "config", operation_id = "putSubjectConfig",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value")),
    request_body(description = BODY, content(
        (ConfigUpdate = CONTENT_TYPE), (ConfigUpdate = CONTENT_TYPE_UNVERSIONED), (ConfigUpdate = JSON))),
    responses((status = 200, description = "The level set.", body = ConfigUpdate, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42203 invalid level, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn put_subject_config(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    SrBody(body): SrBody<ConfigUpdate>,
) -> Answer {
    let l = level(&body.compatibility)?;
    blocking(&state, move |store| Ok(store.set_compatibility(Some(&subject), l)?)).await?;
    ok(&ConfigUpdate { compatibility: l.to_string() })
}

/// Remove a subject's compatibility level (it follows the global one again).
#[utoipa::path(delete, path = "/config/{subject}", tag = "config", operation_id = "deleteSubjectConfig",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value")),
    responses((status = 200, description = "The level removed.", body = Config, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_PATH, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40408 no subject-level level.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn delete_subject_config(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
) -> Answer {
    let previous = blocking(&state, move |store| Ok(store.delete_compatibility(Some(&subject))?)).await?;
    ok(&Config { compatibility_level: previous.to_string() })
}

/// The global mode.
#[utoipa::path(get, path = "/mode", tag = "mode", operation_id = "getGlobalMode",
    responses((status = 200, description = "The mode.", body = ModeBody, content_type = CONTENT_TYPE)))]
pub(super) async fn get_global_mode(State(state): State<RegistryState>) -> Answer {
    ok(&ModeBody { mode: state.store.effective_mode(None).to_string() })
}

/// Set the global mode (IMPORT needs an empty registry unless `force=true`).
#[utoipa::path(put, path = "/mode", tag = "mode", operation_id = "putGlobalMode",
    params(("force" = Option<Flag>, Query, description = "Enter IMPORT although the registry holds schemas.")),
    request_body(description = BODY, content(
        (ModeBody = CONTENT_TYPE), (ModeBody = CONTENT_TYPE_UNVERSIONED), (ModeBody = JSON))),
    responses((status = 200, description = "The mode set.", body = ModeBody, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42204 invalid mode, 42205 IMPORT into a non-empty registry without `force`.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn put_global_mode(
    State(state): State<RegistryState>,
    q: SrQuery,
    SrBody(body): SrBody<ModeBody>,
) -> Answer {
    let m = mode_of(&body.mode)?;
    let force = q.flag("force")?;
    blocking(&state, move |store| Ok(store.set_mode(None, m, force)?)).await?;
    ok(&ModeBody { mode: m.to_string() })
}

/// A subject's mode (40409 if it has none, unless `defaultToGlobal=true`).
#[utoipa::path(get, path = "/mode/{subject}", tag = "mode", operation_id = "getSubjectMode",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("defaultToGlobal" = Option<Flag>, Query, description = "Answer the global mode when the subject has none.")),
    responses((status = 200, description = "The mode.", body = ModeBody, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_QUERY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40409 no subject-level mode.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn get_subject_mode(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
) -> Answer {
    let default_to_global = q.flag("defaultToGlobal")?; // as in `get_subject_config`
    evident_registry::validate_subject(&subject)?;
    let mode = match state.store.mode(Some(&subject)) {
        Some(m) => m,
        None if default_to_global => state.store.effective_mode(None),
        None => return Err(evident_registry::RegistryError::SubjectModeNotConfigured(subject).into()),
    };
    ok(&ModeBody { mode: mode.to_string() })
}

/// Set a subject's mode.
#[utoipa::path(put, path = "/mode/{subject}", tag = "mode", operation_id = "putSubjectMode",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("force" = Option<Flag>, Query, description = "Enter IMPORT although the subject holds schemas.")),
    request_body(description = BODY, content(
        (ModeBody = CONTENT_TYPE), (ModeBody = CONTENT_TYPE_UNVERSIONED), (ModeBody = JSON))),
    responses((status = 200, description = "The mode set.", body = ModeBody, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42204 invalid mode, 42205 IMPORT into a non-empty subject without `force`, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn put_subject_mode(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
    SrBody(body): SrBody<ModeBody>,
) -> Answer {
    let m = mode_of(&body.mode)?;
    let force = q.flag("force")?;
    blocking(&state, move |store| Ok(store.set_mode(Some(&subject), m, force)?)).await?;
    ok(&ModeBody { mode: m.to_string() })
}

/// Remove a subject's mode.
#[utoipa::path(delete, path = "/mode/{subject}", tag = "mode", operation_id = "deleteSubjectMode",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value")),
    responses((status = 200, description = "The mode removed.", body = ModeBody, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_PATH, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40409 no subject-level mode.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn delete_subject_mode(State(state): State<RegistryState>, SrPath(subject): SrPath<String>) -> Answer {
    let previous = blocking(&state, move |store| Ok(store.delete_mode(&subject)?)).await?;
    ok(&ModeBody { mode: previous.to_string() })
}

async fn compatibility(
    state: RegistryState,
    subject: String,
    against: Option<String>,
    q: SrQuery,
    body: SchemaRequest,
) -> Answer {
    let verbose = q.flag("verbose")?;
    let normalize = q.flag("normalize")?;
    let verifier = wants_verify(&state, &q)?;
    let against = against.map(|v| version(&v)).transpose()?;
    let input = input(body)?;
    let reasons = blocking(&state, move |store| {
        let mut reasons = store.check_compatibility(&subject, &input, against, normalize)?;
        if let Some(verifier) = verifier {
            let parsed = store.parse(&input)?;
            reasons.extend(verifier.verify(&subject, &parsed)?);
        }
        Ok(reasons)
    })
    .await?;
    ok(&CompatibilityResult { is_compatible: reasons.is_empty(), messages: verbose.then_some(reasons) })
}

/// Whether a schema may follow one version of a subject.
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions/{version}", tag = "compatibility", operation_id = "checkCompatibilityWithVersion",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("version" = String, Path, description = VERSION, example = "latest"),
           ("verbose" = Option<Flag>, Query, description = "Give the reasons as `messages`."),
           ("normalize" = Option<Flag>, Query, description = "Accepted (identity does not matter to a check)."),
           ("verify" = Option<Verify>, Query, description = VERIFY)),
    request_body(description = BODY, content(
        (SchemaRequest = CONTENT_TYPE), (SchemaRequest = CONTENT_TYPE_UNVERSIONED), (SchemaRequest = JSON))),
    responses((status = 200, description = "The verdict (`messages` with `verbose=true`).", body = CompatibilityResult, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 404, description = "40401 subject not found, 40402 version not found.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42201 invalid schema, 42202 invalid version, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn compatibility_with_version(
    State(state): State<RegistryState>,
    SrPath((subject, v)): SrPath<(String, String)>,
    q: SrQuery,
    SrBody(body): SrBody<SchemaRequest>,
) -> Answer {
    compatibility(state, subject, Some(v), q, body).await
}

/// Whether a schema may follow the subject's versions its level covers.
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions", tag = "compatibility", operation_id = "checkCompatibility",
    params(("subject" = String, Path, description = SUBJECT, example = "orders-value"),
           ("verbose" = Option<Flag>, Query, description = "Give the reasons as `messages`."),
           ("normalize" = Option<Flag>, Query, description = "Accepted (identity does not matter to a check)."),
           ("verify" = Option<Verify>, Query, description = VERIFY)),
    request_body(description = BODY, content(
        (SchemaRequest = CONTENT_TYPE), (SchemaRequest = CONTENT_TYPE_UNVERSIONED), (SchemaRequest = JSON))),
    responses((status = 200, description = "The verdict (`messages` with `verbose=true`); a subject without live versions accepts anything.", body = CompatibilityResult, content_type = CONTENT_TYPE),
              (status = 400, description = BAD_BODY, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 413, description = TOO_LARGE, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 415, description = BAD_MEDIA, body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 422, description = "42201 invalid schema, 42208 invalid subject.", body = ErrorMessage, content_type = CONTENT_TYPE),
              (status = 500, description = STORE_FAILED, body = ErrorMessage, content_type = CONTENT_TYPE)))]
pub(super) async fn compatibility_with_all(
    State(state): State<RegistryState>,
    SrPath(subject): SrPath<String>,
    q: SrQuery,
    SrBody(body): SrBody<SchemaRequest>,
) -> Answer {
    compatibility(state, subject, None, q, body).await
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "registry", operation_id = "registryOpenapi",
    responses((status = 200, description = "The document.", body = Object)))]
pub(super) async fn openapi() -> Response {
    let mut response = axum::response::IntoResponse::into_response((StatusCode::OK, super::openapi_json().to_string()));
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    response
}
