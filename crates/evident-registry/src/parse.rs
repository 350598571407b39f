//! A schema's text into a [`ParsedSchema`]: what the registry checks before it stores anything
//! (an invalid schema is refused with 42201 and the parser's reason) and what compatibility
//! checks and payload validation work on.
//!
//! References arrive resolved: the caller (the store) passes the transitive closure of the
//! schema's references as [`ResolvedReference`]s, dependencies before their dependents, each
//! under the name the referring schema uses. Parsing never looks anywhere else (no network, no
//! files), so a schema means the same thing wherever it is parsed.
//!
//! Two derived texts decide when two registrations are "the same schema" (and so get the same
//! id): [`ParsedSchema::canonical`], insensitive to whitespace and formatting only, compared by
//! default; and [`ParsedSchema::normalized`], also insensitive to the order of object keys,
//! compared when a request asks `normalize=true`.

mod avro;
mod json;
mod protobuf;

use crate::schema::SchemaType;

pub use avro::AvroSchema;
pub use json::JsonSchema;
pub use protobuf::ProtobufSchema;

/// A referenced schema, resolved by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedReference {
    /// The name the referring schema uses (Avro full name, JSON Schema `$ref`, Protobuf import).
    pub name: String,
    /// The referenced schema's format (references stay within one format).
    pub schema_type: SchemaType,
    /// The referenced schema's text as registered.
    pub schema: String,
}

/// Why a schema text is not a valid schema (Confluent's 42201).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {schema_type} schema: {reason}")]
pub struct ParseError {
    /// The format the text was parsed as.
    pub schema_type: SchemaType,
    /// The parser's reason.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(schema_type: SchemaType, reason: impl Into<String>) -> Self {
        Self { schema_type, reason: reason.into() }
    }
}

/// A parsed, valid schema of one of the three formats.
#[derive(Debug, Clone)]
pub enum ParsedSchema {
    /// An Avro schema (with the named types its references define).
    Avro(AvroSchema),
    /// A JSON Schema (with the documents its references name).
    Json(JsonSchema),
    /// A Protobuf file (with the files it imports).
    Protobuf(ProtobufSchema),
}

impl ParsedSchema {
    /// The schema's format.
    pub fn schema_type(&self) -> SchemaType {
        match self {
            ParsedSchema::Avro(_) => SchemaType::Avro,
            ParsedSchema::Json(_) => SchemaType::Json,
            ParsedSchema::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// The schema's text with formatting removed: two registrations with equal canonical
    /// texts and equal references are the same schema.
    pub fn canonical(&self) -> String {
        match self {
            ParsedSchema::Avro(s) => s.canonical(),
            ParsedSchema::Json(s) => s.canonical(),
            ParsedSchema::Protobuf(s) => s.canonical(),
        }
    }

    /// The canonical text also made insensitive to the order of object keys (Confluent's
    /// `normalize=true`).
    pub fn normalized(&self) -> String {
        match self {
            ParsedSchema::Avro(s) => s.normalized(),
            ParsedSchema::Json(s) => s.normalized(),
            ParsedSchema::Protobuf(s) => s.normalized(),
        }
    }
}

/// Parses `text` as a schema of `schema_type`, its references resolved as `references`
/// (transitive closure, dependencies first).
pub fn parse(
    schema_type: SchemaType,
    text: &str,
    references: &[ResolvedReference],
) -> Result<ParsedSchema, ParseError> {
    if let Some(r) = references.iter().find(|r| r.schema_type != schema_type) {
        return Err(ParseError::new(
            schema_type,
            format!("reference {:?} is a {} schema; references must be of the same format", r.name, r.schema_type),
        ));
    }
    match schema_type {
        SchemaType::Avro => avro::parse(text, references).map(ParsedSchema::Avro),
        SchemaType::Json => json::parse(text, references).map(ParsedSchema::Json),
        SchemaType::Protobuf => protobuf::parse(text, references).map(ParsedSchema::Protobuf),
    }
}

/// `value` serialized compactly with every object's keys sorted, whatever order the parser
/// kept them in.
pub(crate) fn sorted_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

/// Writes `value` with object keys in sorted order (serde_json keeps insertion order when its
/// `preserve_order` feature is on somewhere in the build, so the sort is done by hand).
fn write_sorted(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_json_ignores_key_order_and_whitespace() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"z":0,"y":1}], "c": null}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}"#).unwrap();
        assert_eq!(sorted_json(&a), sorted_json(&b));
        assert_eq!(sorted_json(&a), r#"{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}"#);
    }

    #[test]
    fn references_of_another_format_are_refused() {
        let r = ResolvedReference { name: "x".into(), schema_type: SchemaType::Json, schema: "{}".into() };
        let e = parse(SchemaType::Avro, r#""string""#, &[r]).unwrap_err();
        assert!(e.reason.contains("same format"), "{e}");
    }
}
