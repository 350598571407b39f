//! JSON Schemas (drafts 4, 6, 7, 2019-09 and 2020-12, by `$schema`; draft 7 when absent, as
//! Confluent's clients assume), checked by the `jsonschema` crate. A reference is another
//! registered JSON Schema, reachable from this one by `$ref` to the reference's name.

use serde_json::Value;

use super::{sorted_json, ParseError, ResolvedReference};
use crate::schema::SchemaType;

/// A parsed JSON Schema.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    /// The schema document.
    pub schema: Value,
    /// The referenced documents, by the name `$ref` uses, dependencies first.
    pub references: Vec<(String, Value)>,
}

impl JsonSchema {
    /// The document re-serialized compactly.
    pub fn canonical(&self) -> String {
        self.schema.to_string()
    }

    /// The document with object keys sorted.
    pub fn normalized(&self) -> String {
        sorted_json(&self.schema)
    }

    /// A validator for instances of this schema; a `$ref` resolves only to the registered
    /// references (by name, or by a URI ending in `/name`), never to the network.
    pub fn validator(&self) -> Result<jsonschema::Validator, ParseError> {
        let mut options = jsonschema::options().with_retriever(References(self.references.clone()));
        if self.schema.get("$schema").is_none() {
            options = options.with_draft(jsonschema::Draft::Draft7);
        }
        options.build(&self.schema).map_err(|e| ParseError::new(SchemaType::Json, e.to_string()))
    }
}

/// Resolves `$ref`s to registered references only.
struct References(Vec<(String, Value)>);

impl jsonschema::Retrieve for References {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let uri = uri.as_str();
        let found = self
            .0
            .iter()
            .find(|(name, _)| uri == name || uri.strip_suffix(name.as_str()).is_some_and(|head| head.ends_with('/')));
        match found {
            Some((_, document)) => Ok(document.clone()),
            None => Err(format!("$ref {uri:?} names no registered reference of this schema").into()),
        }
    }
}

pub(super) fn parse(text: &str, references: &[ResolvedReference]) -> Result<JsonSchema, ParseError> {
    let invalid = |reason: String| ParseError::new(SchemaType::Json, reason);
    let schema: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return Err(invalid("a JSON Schema is an object or a boolean".into()));
    }
    let references = references
        .iter()
        .map(|r| {
            serde_json::from_str(&r.schema)
                .map(|v| (r.name.clone(), v))
                .map_err(|e| invalid(format!("reference {:?} is not JSON: {e}", r.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = JsonSchema { schema, references };
    // Building the validator checks the document against its draft's meta-schema and
    // resolves every `$ref`.
    parsed.validator()?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_schemas_validate_instances() {
        let s =
            parse(r#"{"type":"object","properties":{"amount":{"type":"number"}},"required":["amount"]}"#, &[]).unwrap();
        let v = s.validator().unwrap();
        assert!(v.is_valid(&serde_json::json!({"amount": 3})));
        assert!(!v.is_valid(&serde_json::json!({"amount": "3"})));
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(parse(r#"{"type": 12}"#, &[]).is_err());
        assert!(parse("[1,2]", &[]).is_err());
        assert!(parse("{", &[]).is_err());
    }

    #[test]
    fn references_resolve_by_name() {
        let money = ResolvedReference {
            name: "money.json".into(),
            schema_type: SchemaType::Json,
            schema: r#"{"type":"object","properties":{"cents":{"type":"integer"}},"required":["cents"]}"#.into(),
        };
        let order = r#"{"type":"object","properties":{"total":{"$ref":"money.json"}}}"#;
        let s = parse(order, &[money]).unwrap();
        let v = s.validator().unwrap();
        assert!(v.is_valid(&serde_json::json!({"total": {"cents": 5}})));
        assert!(!v.is_valid(&serde_json::json!({"total": {"cents": "5"}})));
    }
}
