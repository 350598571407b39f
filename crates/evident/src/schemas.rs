//! Versions from a schema registry (feature `schemas`): an aggregate's event enum registered as
//! one JSON Schema per event type, and the registered versions used as the events' schema
//! versions.
//!
//! - [`RegistryClient`]: a client of a schema registry's Confluent REST API (evident's own,
//!   `evident serve --registry-addr`, or any Confluent-compatible one), async on `reqwest` like
//!   the HTTP backend.
//! - [`EventSchemas::register`]: at start-up, derives each variant's payload schema from the
//!   enum's `schemars::JsonSchema` and registers it under the subject `<topic>-<EventType>`
//!   (the event-type subject name strategy the server validates appends with). All types are
//!   checked first and nothing is registered unless every one is compatible, so a deployment
//!   whose events changed incompatibly fails to start with the registry's reasons
//!   ([`Error::Schema`]) instead of writing events old readers cannot read.
//! - [`crate::Repository::with_schemas`]: appended events are stamped with their type's
//!   registered version (the `evident-schema-version` header), and stored events are upcast
//!   from the version they carry to the registered current one, so [`crate::Upcasters`] are
//!   keyed by registered versions: the upcaster registered `from` 1 turns a payload of
//!   `orders-OrderPlaced` version 1 into version 2.
//!
//! The payload schema of a variant is the schema schemars derives for its content: a struct
//! variant's object, a newtype variant's inner type, `{"type": "null"}` for a unit variant (the
//! library stores a unit variant's payload as `null`). Subschemas are inlined (schemars'
//! `inline_subschemas`, draft 7), so each subject's schema stands alone and a change to one
//! type's payload makes a new version of that subject only.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode, Url};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::event::DomainEvent;
use crate::{Error, Result};

/// Confluent's media type, which its clients send and accept.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest registry reply read; a larger one is refused, so a broken or hostile registry
/// cannot make the client allocate without bound.
pub const REPLY_MAX_BYTES: usize = 16 << 20;

/// A schema as registered: the subject, its version there, and the registry-wide id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The subject.
    pub subject: String,
    /// The version within the subject (from 1).
    pub version: u32,
    /// The schema's global id.
    pub id: u32,
}

/// The verdict of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    /// Whether the candidate is compatible.
    pub is_compatible: bool,
    /// The registry's reasons when it is not (empty when the registry gives none).
    pub messages: Vec<String>,
}

/// A client of a schema registry's Confluent REST API.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    /// The base URL (a path prefix such as Apicurio's `/apis/ccompat/v7` is kept).
    base: Url,
    client: Client,
}

impl RegistryClient {
    /// A client of the registry at `base` (e.g. `http://127.0.0.1:8081`). Checks the URL;
    /// connects only when used.
    pub fn new(base: &str) -> Result<Self> {
        let url = Url::parse(base).map_err(|e| Error::Rejected(format!("invalid registry URL {base:?}: {e}")))?;
        if url.scheme() != "http" {
            return Err(Error::Rejected(format!(
                "registry URL {base:?}: only http:// is supported by this build (no TLS)"
            )));
        }
        if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) || url.query().is_some() {
            return Err(Error::Rejected(format!("registry URL {base:?} is not an http://host:port[/path] URL")));
        }
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot set up the registry's HTTP client: {e}")))?;
        Ok(Self { base: url, client })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Registers `schema` (a JSON Schema) under `subject`: a new version, or the existing one
    /// when the subject already holds it. Refused ([`Error::Schema`]) when it is invalid or
    /// incompatible with the subject's compatibility level.
    pub async fn register_json(&self, subject: &str, schema: &Value) -> Result<Registered> {
        let body = json_schema_body(schema);
        let reply = self.call(Method::POST, &["subjects", subject, "versions"], &[], Some(&body)).await?;
        let id = number(&reply, "id")?;
        // Confluent's register reply holds only the id; the lookup names the version.
        let version = match reply.get("version").and_then(Value::as_u64) {
            Some(v) => u32::try_from(v).map_err(|_| bad_reply("version", &reply))?,
            None => self.lookup_json(subject, schema).await?.map(|r| r.version).ok_or_else(|| {
                Error::Schema(format!("{subject}: the schema just registered (id {id}) is not found by lookup"))
            })?,
        };
        Ok(Registered { subject: subject.to_string(), version, id })
    }

    /// The version of `subject` holding `schema`, if any.
    pub async fn lookup_json(&self, subject: &str, schema: &Value) -> Result<Option<Registered>> {
        let body = json_schema_body(schema);
        match self.call(Method::POST, &["subjects", subject], &[], Some(&body)).await {
            Ok(reply) => Ok(Some(Registered {
                subject: subject.to_string(),
                version: number(&reply, "version")?,
                id: number(&reply, "id")?,
            })),
            // 40401 no such subject, 40403 the subject does not hold this schema.
            Err(RegistryCall::Refused { error_code: Some(40401 | 40403), .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `schema` is compatible with the latest version of `subject` under its level
    /// (compatible when the subject does not exist yet), with the registry's reasons.
    pub async fn check_json(&self, subject: &str, schema: &Value) -> Result<Compatibility> {
        let body = json_schema_body(schema);
        let segments = ["compatibility", "subjects", subject, "versions", "latest"];
        match self.call(Method::POST, &segments, &[("verbose", "true")], Some(&body)).await {
            Ok(reply) => {
                let is_compatible = reply
                    .get("is_compatible")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| bad_reply("is_compatible", &reply))?;
                let messages = reply
                    .get("messages")
                    .and_then(Value::as_array)
                    .map(|m| m.iter().map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned)).collect())
                    .unwrap_or_default();
                Ok(Compatibility { is_compatible, messages })
            }
            // Nothing registered yet under the subject: anything is compatible.
            Err(RegistryCall::Refused { error_code: Some(40401 | 40402), .. }) => {
                Ok(Compatibility { is_compatible: true, messages: Vec::new() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The schema registered under `subject` at `version`.
    pub async fn schema(&self, subject: &str, version: u32) -> Result<Value> {
        let version = version.to_string();
        let reply = self.call(Method::GET, &["subjects", subject, "versions", &version], &[], None).await?;
        let text = reply.get("schema").and_then(Value::as_str).ok_or_else(|| bad_reply("schema", &reply))?;
        serde_json::from_str(text).map_err(|e| Error::Schema(format!("{subject} version {version} is not JSON: {e}")))
    }

    /// One request; a refusal keeps Confluent's `error_code` for the caller to match.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> std::result::Result<Value, RegistryCall> {
        let mut url = self.base.clone();
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(RegistryCall::Local(format!("{bad:?} cannot be a subject name")));
        }
        url.path_segments_mut()
            .map_err(|()| RegistryCall::Local("the registry URL cannot hold a path".into()))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let what = format!("{method} {}", url.path());
        let mut request = self.client.request(method, url).header("accept", format!("{MEDIA_TYPE}, application/json"));
        if let Some(body) = body {
            request = request.header("content-type", MEDIA_TYPE).body(body.to_string());
        }
        let unavailable = |e: reqwest::Error| RegistryCall::Unavailable(format!("schema registry {what}: {e}"));
        let mut response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if bytes.len() + chunk.len() > REPLY_MAX_BYTES {
                return Err(RegistryCall::Local(format!("{what}: the reply is larger than {REPLY_MAX_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let reply: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return reply.ok_or_else(|| RegistryCall::Local(format!("{what}: the reply is not JSON")));
        }
        let error_code = reply.as_ref().and_then(|r| r.get("error_code")).and_then(Value::as_i64);
        let message = reply
            .as_ref()
            .and_then(|r| r.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect(), str::to_owned);
        if status.is_server_error() {
            return Err(RegistryCall::Unavailable(format!("schema registry {what}: {message} (HTTP {status})")));
        }
        Err(RegistryCall::Refused { status, error_code, message: format!("{what}: {message}") })
    }
}

/// How a registry call failed.
#[derive(Debug)]
enum RegistryCall {
    /// The registry could not be reached or failed (5xx): retrying may help.
    Unavailable(String),
    /// The registry refused the request.
    Refused { status: StatusCode, error_code: Option<i64>, message: String },
    /// The request could not be made or the reply not read.
    Local(String),
}

impl From<RegistryCall> for Error {
    fn from(call: RegistryCall) -> Self {
        match call {
            RegistryCall::Unavailable(m) => Error::Unavailable(m),
            RegistryCall::Refused { status, error_code: Some(code), message } => {
                Error::Schema(format!("{message} (error_code {code}, HTTP {})", status.as_u16()))
            }
            RegistryCall::Refused { status, error_code: None, message } => {
                Error::Schema(format!("{message} (HTTP {})", status.as_u16()))
            }
            RegistryCall::Local(m) => Error::Schema(m),
        }
    }
}

/// Confluent's register/lookup/compatibility body for a JSON Schema.
fn json_schema_body(schema: &Value) -> Value {
    json!({"schemaType": "JSON", "schema": schema.to_string()})
}

fn number(reply: &Value, field: &str) -> Result<u32> {
    reply.get(field).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad_reply(field, reply))
}

fn bad_reply(field: &str, reply: &Value) -> Error {
    let text: String = reply.to_string().chars().take(300).collect();
    Error::Schema(format!("the registry's reply has no valid {field}: {text}"))
}

/// The registered schema version of each event type of an aggregate's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSchemas {
    topic: String,
    types: BTreeMap<String, Registered>,
}

impl EventSchemas {
    /// The subject of `event_type`'s payload schema on `topic`: `<topic>-<EventType>`.
    pub fn subject(topic: &str, event_type: &str) -> String {
        format!("{topic}-{event_type}")
    }

    /// Registers the payload schema of each event type of `E` (see [`Self::payload_schemas`])
    /// under its subject on `topic`, and returns the registered versions.
    ///
    /// Every type is checked against its subject first: if one is incompatible, nothing is
    /// registered and the error ([`Error::Schema`]) names each refused type with the registry's
    /// reasons. A type whose schema is already registered keeps its version.
    pub async fn register<E: DomainEvent + JsonSchema>(client: &RegistryClient, topic: &str) -> Result<Self> {
        let schemas = Self::payload_schemas::<E>()?;
        let mut refusals = Vec::new();
        for (event_type, schema) in &schemas {
            let subject = Self::subject(topic, event_type);
            let verdict = client.check_json(&subject, schema).await?;
            if !verdict.is_compatible {
                let reasons = if verdict.messages.is_empty() {
                    "no reasons given".to_string()
                } else {
                    verdict.messages.join("; ")
                };
                refusals.push(format!("{event_type} (subject {subject}): {reasons}"));
            }
        }
        if !refusals.is_empty() {
            return Err(Error::Schema(format!(
                "the event schemas of topic {topic} are incompatible with the registered ones, so none was \
                 registered: {}",
                refusals.join(" | ")
            )));
        }
        let mut types = BTreeMap::new();
        for (event_type, schema) in &schemas {
            let subject = Self::subject(topic, event_type);
            // The level may be transitive (checked against every version, where the check above
            // looked at the latest only): a refusal here is reported the same way.
            let registered = client.register_json(&subject, schema).await.map_err(|e| match e {
                Error::Schema(why) => Error::Schema(format!("{event_type} (subject {subject}) refused: {why}")),
                other => other,
            })?;
            types.insert(event_type.clone(), registered);
        }
        Ok(Self { topic: topic.to_string(), types })
    }

    /// Versions given directly, for an application that registers its schemas some other way
    /// (or tests): event type → (version, id) on `topic`.
    pub fn from_versions(topic: &str, versions: impl IntoIterator<Item = (String, u32, u32)>) -> Self {
        let types = versions
            .into_iter()
            .map(|(event_type, version, id)| {
                let subject = Self::subject(topic, &event_type);
                (event_type, Registered { subject, version, id })
            })
            .collect();
        Self { topic: topic.to_string(), types }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The registration of `event_type`.
    pub fn get(&self, event_type: &str) -> Option<&Registered> {
        self.types.get(event_type)
    }

    /// The registered version of `event_type`.
    pub fn version(&self, event_type: &str) -> Option<u32> {
        self.types.get(event_type).map(|r| r.version)
    }

    /// Every event type with its registration, by type.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Registered)> {
        self.types.iter().map(|(t, r)| (t.as_str(), r))
    }

    /// The payload JSON Schema of each event type of `E`, by type name (the stored `ce_type`:
    /// serde's variant name, renames included), derived with schemars.
    pub fn payload_schemas<E: JsonSchema>() -> Result<BTreeMap<String, Value>> {
        let settings = SchemaSettings::draft07().with(|s| s.inline_subschemas = true);
        let root = settings.into_generator().into_root_schema_for::<E>().to_value();
        split_variants(&root).map_err(|why| {
            Error::Schema(format!("{}: cannot split the derived schema into event types: {why}", E::schema_name()))
        })
    }
}

/// Splits the schema schemars derives for an externally tagged enum into each variant's
/// payload schema (see the module doc).
fn split_variants(root: &Value) -> std::result::Result<BTreeMap<String, Value>, String> {
    let root = root.as_object().ok_or("the schema is not an object")?;
    // Definitions left after inlining (recursive types) go with every payload schema, so the
    // `$ref`s into them still resolve.
    let definitions = root.get("definitions").or_else(|| root.get("$defs")).cloned();
    let alternatives: Vec<&Value> = match root.get("oneOf").or_else(|| root.get("anyOf")) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err("oneOf is not an array".into()),
        // An enum of a single variant (or of unit variants only) is its alternative.
        None => vec![&Value::Null],
    };
    let root_value = Value::Object(root.clone());
    let mut out = BTreeMap::new();
    for alternative in alternatives {
        let alternative = if alternative.is_null() { &root_value } else { alternative };
        let mut found = Vec::new();
        if let Some(Value::Object(properties)) = alternative.get("properties") {
            // A variant with content: {"properties": {"Type": payload}, "required": ["Type"]}.
            if properties.len() != 1 {
                return Err(format!("an alternative has {} properties, not one", properties.len()));
            }
            let (name, payload) = properties.iter().next().expect("one property");
            found.push((name.clone(), payload.clone()));
        } else if let Some(Value::String(name)) = alternative.get("const") {
            found.push((name.clone(), json!({"type": "null"})));
        } else if let Some(Value::Array(names)) = alternative.get("enum") {
            for name in names {
                let name = name.as_str().ok_or("a unit variant's name is not a string")?;
                found.push((name.to_string(), json!({"type": "null"})));
            }
        } else {
            return Err(format!("an alternative is neither a variant with content nor unit variants: {alternative}"));
        }
        for (name, payload) in found {
            let mut schema = match payload {
                Value::Object(map) => map,
                // `true` (anything) or `false`.
                Value::Bool(true) => Map::new(),
                other => return Err(format!("{name}'s payload schema is {other}")),
            };
            schema.insert("$schema".into(), json!("http://json-schema.org/draft-07/schema#"));
            schema.entry("title").or_insert_with(|| json!(name));
            if let Some(definitions) = &definitions {
                schema.insert("definitions".into(), definitions.clone());
            }
            if out.insert(name.clone(), Value::Object(schema)).is_some() {
                return Err(format!("the event type {name} appears twice"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    struct Line {
        sku: String,
        qty: u32,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    enum OrderEvent {
        Placed {
            lines: Vec<Line>,
            note: Option<String>,
        },
        #[serde(rename = "order-paid")]
        Paid(u64),
        Shipped,
        Cancelled,
    }
    impl DomainEvent for OrderEvent {}

    #[test]
    fn each_variant_gets_its_payload_schema() {
        let schemas = EventSchemas::payload_schemas::<OrderEvent>().expect("splits");
        assert_eq!(schemas.keys().collect::<Vec<_>>(), ["Cancelled", "Placed", "Shipped", "order-paid"]);
        let placed = &schemas["Placed"];
        assert_eq!(placed["type"], "object");
        assert_eq!(placed["title"], "Placed");
        assert_eq!(placed["$schema"], "http://json-schema.org/draft-07/schema#");
        // The line type is inlined: the subject's schema stands alone.
        assert_eq!(placed["properties"]["lines"]["items"]["properties"]["qty"]["type"], "integer");
        assert!(placed.get("definitions").is_none(), "{placed}");
        assert_eq!(schemas["order-paid"]["type"], "integer");
        assert_eq!(schemas["Shipped"]["type"], "null");
        assert_eq!(EventSchemas::subject("orders", "Placed"), "orders-Placed");
    }

    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    enum Single {
        Only { n: i32 },
    }

    #[test]
    fn a_single_variant_enum_is_split_too() {
        let schemas = EventSchemas::payload_schemas::<Single>().expect("splits");
        assert_eq!(schemas["Only"]["properties"]["n"]["type"], "integer");
    }

    #[test]
    fn registry_urls_are_checked() {
        assert!(RegistryClient::new("http://127.0.0.1:8081").is_ok());
        assert!(RegistryClient::new("http://h:1/apis/ccompat/v7").is_ok());
        assert!(matches!(RegistryClient::new("https://h"), Err(Error::Rejected(_))));
        assert!(matches!(RegistryClient::new("nonsense"), Err(Error::Rejected(_))));
    }
}
