//! Avro schemas, parsed by the Apache project's `apache-avro` crate. References are Avro named
//! types (records, enums, fixed) defined by other registered schemas; they are parsed first and
//! the referring schema may then use their full names.

use apache_avro::Schema;

use super::{sorted_json, ParseError, ResolvedReference};
use crate::payload::avro::Plan;
use crate::schema::SchemaType;

/// A parsed Avro schema.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    /// The schema itself.
    pub schema: Schema,
    /// The named schemas its references define, dependencies first.
    pub references: Vec<Schema>,
    /// The schema compiled for checking payloads, once, here.
    plan: Plan,
}

impl AvroSchema {
    fn new(schema: Schema, references: Vec<Schema>) -> Result<Self, String> {
        let plan = Plan::compile(&schema, &references)?;
        Ok(Self { schema, references, plan })
    }

    /// The compiled form validation checks payloads with.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The schema as `apache-avro` writes it back: every attribute kept (defaults, aliases,
    /// docs, logical types), formatting gone.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.schema).unwrap_or_else(|e| unreachable!("an Avro schema always serializes: {e}"))
    }

    /// The canonical text with object keys sorted.
    pub fn normalized(&self) -> String {
        let value = serde_json::to_value(&self.schema).unwrap_or_else(|e| unreachable!("serializes: {e}"));
        sorted_json(&value)
    }

    /// Avro's Parsing Canonical Form (names resolved, docs, defaults and aliases dropped): what
    /// decides whether two writers' data decodes the same way.
    pub fn parsing_canonical_form(&self) -> String {
        self.schema.canonical_form()
    }
}

pub(super) fn parse(text: &str, references: &[ResolvedReference]) -> Result<AvroSchema, ParseError> {
    let invalid = |e: apache_avro::Error| ParseError::new(SchemaType::Avro, e.to_string());
    // A bare type name ("string") is valid Avro JSON only quoted; Confluent accepts both the
    // quoted form and a JSON document, as does the crate.
    if references.is_empty() {
        let schema = Schema::parse_str(text).map_err(invalid)?;
        return AvroSchema::new(schema, Vec::new()).map_err(|e| ParseError::new(SchemaType::Avro, e));
    }
    let (schema, references) =
        Schema::parse_str_with_list(text, references.iter().map(|r| r.schema.as_str())).map_err(invalid)?;
    AvroSchema::new(schema, references).map_err(|e| ParseError::new(SchemaType::Avro, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
        {"name":"order_id","type":"string"},{"name":"amount","type":"double","default":0.0}]}"#;

    #[test]
    fn formatting_does_not_change_the_canonical_text() {
        let a = parse(ORDER, &[]).unwrap();
        let b = parse(&ORDER.replace('\n', " ").replace("  ", ""), &[]).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert!(a.canonical().contains("default"), "defaults are kept: {}", a.canonical());
        assert!(!a.parsing_canonical_form().contains("default"));
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_reason() {
        let e = parse(r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#, &[]).unwrap_err();
        assert_eq!(e.schema_type, SchemaType::Avro);
        assert!(!e.reason.is_empty());
        assert!(parse("not json", &[]).is_err());
    }

    #[test]
    fn references_define_named_types() {
        let money = ResolvedReference {
            name: "shop.Money".into(),
            schema_type: SchemaType::Avro,
            schema: r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#
                .into(),
        };
        let order =
            r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}"#;
        assert!(parse(order, &[]).is_err(), "unknown without the reference");
        let parsed = parse(order, &[money]).unwrap();
        assert_eq!(parsed.references.len(), 1);
    }
}
