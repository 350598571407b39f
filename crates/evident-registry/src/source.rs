//! [`SchemaSource`]: what payload validation needs of the registry — a schema by id, and
//! whether an id is registered under a subject — so that the Kafka and HTTP front doors depend
//! on this narrow view, not on the store.

use std::sync::Arc;

use crate::parse::ParsedSchema;
use crate::schema::SchemaId;

/// Read access to registered schemas, parsed.
pub trait SchemaSource: Send + Sync {
    /// The schema with this id, parsed; `None` if no such id (or it was permanently deleted).
    fn schema_by_id(&self, id: SchemaId) -> Option<Arc<ParsedSchema>>;

    /// Whether `id` is registered under `subject` in a version not deleted.
    fn subject_has_id(&self, subject: &str, id: SchemaId) -> bool;

    /// The latest live version of `subject`: its id and parsed schema.
    fn latest(&self, subject: &str) -> Option<(SchemaId, Arc<ParsedSchema>)>;
}
