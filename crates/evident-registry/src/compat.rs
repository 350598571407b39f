//! Compatibility checks: may a candidate schema join a subject whose versions are `existing`,
//! at a given [`Compatibility`] level? BACKWARD asks that a reader with the candidate read data
//! written with the latest version (every version when transitive); FORWARD the reverse (old
//! readers read data written with the candidate); FULL both; NONE nothing.
//!
//! The answer is the list of reasons the candidate is refused, each naming the version it
//! breaks against, the direction, and what breaks; empty means compatible.
//!
//! One module per format, each following the rules Confluent's registry applies (the matrix
//! in tests/registry/compat_cases.json pins them, docs/registry-compatibility.md explains them):
//! - [`avro`]: Avro schema resolution, as Apache Avro Java's `SchemaCompatibility` decides it;
//! - [`json`]: Confluent's JSON Schema diff (content models, narrowing and widening);
//! - [`protobuf`]: Confluent's Protobuf diff (fields by number, wire-compatible scalar groups).

mod avro;
mod json;
mod protobuf;

use crate::parse::ParsedSchema;
use crate::schema::Compatibility;

/// How many comparison steps one check may take. Schemas come from clients; one whose nested
/// unions (or combinators, or message types used many times) would make the comparison
/// explode is refused with a reason instead of holding a request thread.
pub(crate) const MAX_STEPS: usize = 200_000;

/// The reason given when [`MAX_STEPS`] runs out.
pub(crate) fn too_complex() -> String {
    format!("the schemas are too complex to compare (more than {MAX_STEPS} steps); the candidate is refused")
}

/// One existing version of the subject, oldest first in the slice passed to [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a> {
    /// Its version number (named in reasons).
    pub version: i32,
    /// The parsed schema.
    pub schema: &'a ParsedSchema,
}

/// The reasons `candidate` may not be registered after `existing` (oldest first) at `level`;
/// empty when it may. Newest versions are checked (and reported) first.
pub fn check(level: Compatibility, candidate: &ParsedSchema, existing: &[Existing<'_>]) -> Vec<String> {
    let against: &[Existing<'_>] =
        if level.transitive() { existing } else { existing.last().map(std::slice::from_ref).unwrap_or(&[]) };
    let mut reasons = Vec::new();
    if level == Compatibility::None {
        return reasons;
    }
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
            if let Err(problems) = differences(candidate, old.schema) {
                reasons.extend(problems.into_iter().map(|why| format!("version {} (BACKWARD): {why}", old.version)));
            }
        }
        if level.forward() {
            if let Err(problems) = differences(old.schema, candidate) {
                reasons.extend(problems.into_iter().map(|why| format!("version {} (FORWARD): {why}", old.version)));
            }
        }
    }
    reasons
}

/// Whether a reader holding `reader` can read every datum written with `writer`; the reasons
/// joined by "; " when not.
pub fn can_read(reader: &ParsedSchema, writer: &ParsedSchema) -> Result<(), String> {
    differences(reader, writer).map_err(|problems| problems.join("; "))
}

/// As [`can_read`], each reason apart.
pub fn differences(reader: &ParsedSchema, writer: &ParsedSchema) -> Result<(), Vec<String>> {
    match (reader, writer) {
        (ParsedSchema::Avro(r), ParsedSchema::Avro(w)) => avro::can_read(r, w),
        (ParsedSchema::Json(r), ParsedSchema::Json(w)) => json::can_read(r, w),
        (ParsedSchema::Protobuf(r), ParsedSchema::Protobuf(w)) => protobuf::can_read(r, w),
        _ => Err(vec![format!("a {} schema cannot read {} data", reader.schema_type(), writer.schema_type())]),
    }
}
