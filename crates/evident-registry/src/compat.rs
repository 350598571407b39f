//! Compatibility checks: may a candidate schema join a subject whose versions are `existing`,
//! at a given [`Compatibility`] level? BACKWARD asks that a reader with the candidate read data
//! written with the latest version (all versions when transitive); FORWARD the reverse; FULL both.
//!
//! The answer is the list of reasons the candidate is refused, each naming the version it
//! breaks against and what breaks (Confluent's `verbose=true` messages); empty means compatible.
//!
//! Status: Avro is checked by schema resolution (`apache-avro`'s reader/writer rules); JSON
//! Schema and Protobuf rules are being written (see docs/registry.md).

use crate::parse::ParsedSchema;
use crate::schema::Compatibility;

/// One existing version of the subject, oldest first in the slice passed to [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a> {
    /// Its version number (named in reasons).
    pub version: i32,
    /// The parsed schema.
    pub schema: &'a ParsedSchema,
}

/// The reasons `candidate` may not be registered after `existing` (oldest first) at `level`;
/// empty when it may.
pub fn check(level: Compatibility, candidate: &ParsedSchema, existing: &[Existing<'_>]) -> Vec<String> {
    let against: &[Existing<'_>] =
        if level.transitive() { existing } else { existing.last().map(std::slice::from_ref).unwrap_or(&[]) };
    let mut reasons = Vec::new();
    for old in against.iter().rev() {
        if old.schema.schema_type() != candidate.schema_type() {
            reasons.push(format!(
                "version {}: the schema type changed from {} to {}",
                old.version,
                old.schema.schema_type(),
                candidate.schema_type()
            ));
            continue;
        }
        if level.backward() {
            if let Err(why) = can_read(candidate, old.schema) {
                reasons.push(format!("version {} (BACKWARD): {why}", old.version));
            }
        }
        if level.forward() {
            if let Err(why) = can_read(old.schema, candidate) {
                reasons.push(format!("version {} (FORWARD): {why}", old.version));
            }
        }
    }
    reasons
}

/// Whether a reader holding `reader` can read every datum written with `writer`.
pub fn can_read(reader: &ParsedSchema, writer: &ParsedSchema) -> Result<(), String> {
    match (reader, writer) {
        (ParsedSchema::Avro(r), ParsedSchema::Avro(w)) => {
            apache_avro::schema_compatibility::SchemaCompatibility::can_read(&w.schema, &r.schema)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        (ParsedSchema::Json(_), ParsedSchema::Json(_)) | (ParsedSchema::Protobuf(_), ParsedSchema::Protobuf(_)) => {
            Err(format!("{} compatibility rules are not written yet", reader.schema_type()))
        }
        _ => Err(format!("a {} schema cannot read {} data", reader.schema_type(), writer.schema_type())),
    }
}
