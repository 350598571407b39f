//! Payloads against schemas: Confluent's wire format ([`wire`]) and whether the bytes after it
//! decode as (Avro, Protobuf) or validate against (JSON Schema) a registered schema. Used by
//! validation at the store (the id a record names must be registered for its subject and the
//! payload must be that schema's data) and by `verify=stored` (stored payloads read with a
//! candidate schema).
//!
//! Confluent's broker-side validation only checks that the id is registered for the subject;
//! evident also decodes the payload, so a record whose bytes are not the schema's data (a bug in
//! a hand-rolled serializer, a payload framed with the wrong id) is refused at the door rather
//! than found by a consumer years later.

pub mod avro;
pub mod wire;

use std::fmt;

use apache_avro::reader::datum::GenericDatumReader;
use prost_reflect::{DynamicMessage, MessageDescriptor};

use crate::parse::{AvroSchema, JsonSchema, ParsedSchema, ProtobufSchema};

pub use wire::WireError;

/// Why a payload is not valid for a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong, in words.
    pub reason: String,
    /// For JSON, the JSON Pointer of the failing instance (`""` is the whole document).
    pub path: Option<String>,
}

impl Invalid {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), path: None }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "at {:?}: {}", if path.is_empty() { "/" } else { path }, self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl From<WireError> for Invalid {
    fn from(e: WireError) -> Self {
        Invalid::new(e.to_string())
    }
}

/// Checks the bytes after the wire-format id (`body`) against `schema`. For JSON Schema,
/// `validator` is the schema's compiled validator when the caller keeps one (building one per
/// payload is costly); without it one is built.
pub fn check(schema: &ParsedSchema, body: &[u8], validator: Option<&jsonschema::Validator>) -> Result<(), Invalid> {
    match schema {
        ParsedSchema::Avro(s) => check_avro(s, body),
        ParsedSchema::Json(s) => match validator {
            Some(v) => validate_json(v, body),
            None => validate_json(&json_validator(s)?, body),
        },
        ParsedSchema::Protobuf(s) => decode_protobuf(s, body).map(|_| ()),
    }
}

/// Checks that `body` is one Avro datum of `schema` (without decoding it: [`avro`]).
pub fn check_avro(schema: &AvroSchema, body: &[u8]) -> Result<(), Invalid> {
    schema.plan().check(body).map_err(|f| Invalid {
        reason: format!("not valid Avro for the schema: {}", f.reason),
        path: Some(f.pointer()),
    })
}

/// Decodes an Avro datum written with `writer`, resolved to `reader` when given (the schema
/// resolution a consumer holding `reader` performs). Every byte must belong to the datum.
pub fn read_avro(
    writer: &AvroSchema,
    reader: Option<&AvroSchema>,
    body: &[u8],
) -> Result<apache_avro::types::Value, Invalid> {
    // Checked first: the decoder recurses as deep as the data nests, and trusts lengths.
    check_avro(writer, body)?;
    let invalid = |e: apache_avro::Error| Invalid::new(format!("not valid Avro for the schema: {e}"));
    let writer_schemata: Vec<_> = writer.references.iter().chain(std::iter::once(&writer.schema)).collect();
    let mut bytes = body;
    let value = match reader {
        None => GenericDatumReader::builder(&writer.schema)
            .writer_schemata(writer_schemata)
            .map_err(invalid)?
            .build()
            .map_err(invalid)?
            .read_value(&mut bytes),
        Some(reader) => {
            let reader_schemata: Vec<_> = reader.references.iter().chain(std::iter::once(&reader.schema)).collect();
            GenericDatumReader::builder(&writer.schema)
                .writer_schemata(writer_schemata)
                .map_err(invalid)?
                .reader_schema(&reader.schema)
                .reader_schemata(reader_schemata)
                .map_err(invalid)?
                .build()
                .map_err(invalid)?
                .read_value(&mut bytes)
        }
    }
    .map_err(|e| match reader {
        Some(_) => Invalid::new(format!("cannot be read with the schema: {e}")),
        None => invalid(e),
    })?;
    if !bytes.is_empty() {
        return Err(Invalid::new(format!("not valid Avro for the schema: {} bytes left after the datum", bytes.len())));
    }
    Ok(value)
}

/// A payload's body (after the wire-format id) as JSON, decoded with `schema`: what SQL views
/// read of Avro and Protobuf events. Avro follows apache-avro's JSON mapping (records as
/// objects, unions as their branch's value, bytes as arrays of numbers); Protobuf messages
/// become objects of their set fields by field name (64-bit integers as numbers, enums as
/// their number, bytes as base64). A JSON Schema payload is the JSON itself.
pub fn to_json(schema: &ParsedSchema, body: &[u8]) -> Result<serde_json::Value, Invalid> {
    match schema {
        ParsedSchema::Avro(s) => {
            let value = read_avro(s, None, body)?;
            serde_json::Value::try_from(value).map_err(|e| Invalid::new(format!("Avro value without a JSON form: {e}")))
        }
        ParsedSchema::Protobuf(s) => Ok(protobuf_json(&prost_reflect::Value::Message(decode_protobuf(s, body)?))),
        ParsedSchema::Json(_) => serde_json::from_slice(body).map_err(|e| Invalid::new(format!("not JSON: {e}"))),
    }
}

fn protobuf_json(v: &prost_reflect::Value) -> serde_json::Value {
    use prost_reflect::{MapKey, Value as P};
    use serde_json::Value as J;
    match v {
        P::Bool(b) => J::Bool(*b),
        P::I32(n) => J::from(*n),
        P::I64(n) => J::from(*n),
        P::U32(n) => J::from(*n),
        P::U64(n) => J::from(*n),
        P::F32(n) => serde_json::Number::from_f64(f64::from(*n)).map_or(J::Null, J::Number),
        P::F64(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        P::String(t) => J::String(t.clone()),
        P::Bytes(b) => {
            use base64::Engine as _;
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        P::EnumNumber(n) => J::from(*n),
        P::Message(m) => J::Object(m.fields().map(|(f, v)| (f.name().to_string(), protobuf_json(v))).collect()),
        P::List(items) => J::Array(items.iter().map(protobuf_json).collect()),
        P::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                        MapKey::String(s) => s.clone(),
                    };
                    (key, protobuf_json(v))
                })
                .collect(),
        ),
    }
}

/// `schema`'s validator, or the reason it cannot be built.
pub fn json_validator(schema: &JsonSchema) -> Result<jsonschema::Validator, Invalid> {
    schema.validator().map_err(|e| Invalid::new(e.to_string()))
}

/// Parses `body` as JSON and validates it; the first failure with its instance path.
pub fn validate_json(validator: &jsonschema::Validator, body: &[u8]) -> Result<(), Invalid> {
    let instance: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Invalid::new(format!("not JSON: {e}")))?;
    validate_json_value(validator, &instance)
}

/// Validates a JSON value; the first failure with its instance path.
pub fn validate_json_value(validator: &jsonschema::Validator, instance: &serde_json::Value) -> Result<(), Invalid> {
    match validator.iter_errors(instance).next() {
        None => Ok(()),
        Some(e) => Err(Invalid { reason: e.to_string(), path: Some(e.instance_path().to_string()) }),
    }
}

/// Decodes a Protobuf body (message indexes, then the message) with `schema`; the message's
/// descriptor and value.
pub fn decode_protobuf(schema: &ProtobufSchema, body: &[u8]) -> Result<DynamicMessage, Invalid> {
    let (indexes, message) = wire::message_indexes(body)?;
    let descriptor = protobuf_message(schema, &indexes)?;
    let name = descriptor.full_name().to_string();
    DynamicMessage::decode(descriptor, message).map_err(|e| Invalid::new(format!("not a valid Protobuf {name}: {e}")))
}

/// The message of `schema`'s file that `indexes` names.
pub fn protobuf_message(schema: &ProtobufSchema, indexes: &[usize]) -> Result<MessageDescriptor, Invalid> {
    let mut iter = indexes.iter();
    let first = *iter.next().ok_or_else(|| Invalid::new("no Protobuf message index"))?;
    let mut message = schema
        .file
        .messages()
        .nth(first)
        .ok_or_else(|| Invalid::new(format!("message index {indexes:?} names no message of the schema")))?;
    for &i in iter {
        let child = message.child_messages().nth(i);
        message =
            child.ok_or_else(|| Invalid::new(format!("message index {indexes:?} names no message of the schema")))?;
    }
    Ok(message)
}

/// The record name RecordNameStrategy puts in a subject: an Avro named type's full name, a JSON
/// Schema's `title`, or the full name of the Protobuf message `body`'s indexes name (Confluent's
/// serializers use the same).
pub fn record_name(schema: &ParsedSchema, body: &[u8]) -> Result<String, Invalid> {
    match schema {
        ParsedSchema::Avro(s) => s
            .schema
            .name()
            .map(|n| n.fullname(None))
            .ok_or_else(|| Invalid::new("the schema is not a named Avro type, so it has no record name")),
        ParsedSchema::Json(s) => s
            .schema
            .get("title")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Invalid::new("the JSON Schema has no \"title\", so it has no record name")),
        ParsedSchema::Protobuf(s) => {
            let (indexes, _) = wire::message_indexes(body)?;
            Ok(protobuf_message(s, &indexes)?.full_name().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as AvroValue;
    use prost_reflect::prost::Message;
    use prost_reflect::ReflectMessage;

    use super::*;
    use crate::parse::parse;
    use crate::schema::SchemaType;

    const ORDER_V1: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
        {"name":"order_id","type":"string"},{"name":"amount","type":"double"}]}"#;
    const ORDER_V2: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
        {"name":"order_id","type":"string"},{"name":"amount","type":"double"},
        {"name":"currency","type":"string","default":"EUR"}]}"#;

    fn avro(text: &str) -> AvroSchema {
        match parse(SchemaType::Avro, text, &[]).unwrap() {
            ParsedSchema::Avro(s) => s,
            _ => unreachable!(),
        }
    }

    pub(crate) fn avro_order(order_id: &str, amount: f64) -> Vec<u8> {
        let s = avro(ORDER_V1);
        let record = AvroValue::Record(vec![
            ("order_id".into(), AvroValue::String(order_id.into())),
            ("amount".into(), AvroValue::Double(amount)),
        ]);
        apache_avro::writer::datum::GenericDatumWriter::builder(&s.schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap()
    }

    #[test]
    fn avro_payloads_decode_or_are_refused() {
        let v1 = ParsedSchema::Avro(avro(ORDER_V1));
        let good = avro_order("o-1", 12.5);
        assert_eq!(check(&v1, &good, None), Ok(()));
        let e = check(&v1, &good[..good.len() - 3], None).unwrap_err();
        assert!(e.reason.starts_with("not valid Avro"), "{e}");
        let mut long = good.clone();
        long.push(7);
        assert!(check(&v1, &long, None).unwrap_err().reason.contains("1 bytes left"));
        // A string length that claims more than the payload holds.
        assert!(check(&v1, &[0xfe, 0xff, 0xff, 0xff, 0x0f], None).is_err());
    }

    #[test]
    fn avro_reads_with_a_reader_schema() {
        let (v1, v2) = (avro(ORDER_V1), avro(ORDER_V2));
        let value = read_avro(&v1, Some(&v2), &avro_order("o-1", 1.0)).unwrap();
        let AvroValue::Record(fields) = value else { panic!("record") };
        assert_eq!(fields[2], ("currency".to_string(), AvroValue::String("EUR".into())));
        // Without the default, v1 data cannot be read by a reader that needs the field.
        let v3 = avro(&ORDER_V2.replace(r#","default":"EUR""#, ""));
        let e = read_avro(&v1, Some(&v3), &avro_order("o-1", 1.0)).unwrap_err();
        assert!(e.reason.starts_with("cannot be read"), "{e}");
    }

    #[test]
    fn json_payloads_are_validated_with_the_failing_path() {
        let ParsedSchema::Json(s) = parse(
            SchemaType::Json,
            r#"{"title":"OrderPlaced","type":"object","properties":{"amount":{"type":"number"},
                "lines":{"type":"array","items":{"type":"object","properties":{"qty":{"type":"integer"}}}}},
                "required":["amount"]}"#,
            &[],
        )
        .unwrap() else {
            unreachable!()
        };
        let v = json_validator(&s).unwrap();
        assert_eq!(validate_json(&v, br#"{"amount":3,"lines":[{"qty":1}]}"#), Ok(()));
        let e = validate_json(&v, br#"{"amount":3,"lines":[{"qty":1},{"qty":"two"}]}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("/lines/1/qty"));
        assert!(e.reason.contains("integer"), "{e}");
        let e = validate_json(&v, br#"{"lines":[]}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some(""));
        assert!(e.reason.contains("amount"), "{e}");
        assert!(validate_json(&v, b"{not json").unwrap_err().reason.starts_with("not JSON"));
        let json = ParsedSchema::Json(s);
        assert_eq!(record_name(&json, b"").unwrap(), "OrderPlaced");
        assert_eq!(check(&json, br#"{"amount":1}"#, None), Ok(()));
    }

    const PROTO: &str = r#"syntax = "proto3"; package shop;
        message OrderPlaced { string order_id = 1; double amount = 2; message Line { int32 qty = 1; } }
        message OrderShipped { string order_id = 1; }"#;

    #[test]
    fn protobuf_payloads_decode_the_indexed_message() {
        let parsed = parse(SchemaType::Protobuf, PROTO, &[]).unwrap();
        let ParsedSchema::Protobuf(s) = &parsed else { unreachable!() };
        let shipped = protobuf_message(s, &[1]).unwrap();
        let mut message = DynamicMessage::new(shipped.clone());
        message.set_field_by_name("order_id", prost_reflect::Value::String("o-1".into()));
        let mut body = wire::encode_message_indexes(&[1]);
        body.extend(message.encode_to_vec());
        let decoded = decode_protobuf(s, &body).unwrap();
        assert_eq!(decoded.descriptor().full_name(), "shop.OrderShipped");
        assert_eq!(record_name(&parsed, &body).unwrap(), "shop.OrderShipped");
        assert_eq!(protobuf_message(s, &[0, 0]).unwrap().full_name(), "shop.OrderPlaced.Line");
        assert!(protobuf_message(s, &[2]).is_err());
        assert!(protobuf_message(s, &[1, 0]).is_err());
        // Field 1 with wire type 2 claiming 100 bytes of 3.
        let mut bad = wire::encode_message_indexes(&[0]);
        bad.extend([0x0a, 100, 1, 2, 3]);
        let e = check(&parsed, &bad, None).unwrap_err();
        assert!(e.reason.contains("shop.OrderPlaced"), "{e}");
    }

    #[test]
    fn avro_record_names() {
        let parsed = ParsedSchema::Avro(avro(ORDER_V1));
        assert_eq!(record_name(&parsed, b"").unwrap(), "shop.OrderPlaced");
        assert!(record_name(&ParsedSchema::Avro(avro(r#""string""#)), b"").is_err());
    }
}
