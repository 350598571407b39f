//! SQL views read events whose payloads are in Confluent's wire format (Avro, Protobuf, JSON
//! Schema through the schema registry) by way of this decoder: the schema id in the payload is
//! looked up in the server's registry and the body turned into JSON
//! (`evident_registry::payload::to_json`), which the SQL engine then reads as it reads JSON
//! events. An id the registry does not hold, or a body that is not the schema's data, is an
//! error for that event (the view parks it).

use std::sync::Arc;

use evident_registry::payload::{to_json, wire};
use evident_registry::SchemaSource;

/// The registry-backed decoder of the SQL engine.
pub struct RegistryPayloads(pub Arc<dyn SchemaSource>);

impl evident_sql::source::PayloadDecoder for RegistryPayloads {
    fn decode(&self, payload: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let (id, body) = wire::split(payload).ok()?;
        let Some(schema) = self.0.schema_by_id(id) else {
            return Some(Err(format!("schema id {id} is not in the registry")));
        };
        Some(
            to_json(&schema, body)
                .map_err(|e| format!("payload of schema id {id}: {e}"))
                .and_then(|json| serde_json::to_vec(&json).map_err(|e| e.to_string())),
        )
    }
}
