//! `evident-registry`: the schema registry inside evident. It keeps Confluent Schema Registry's
//! model — subjects holding numbered versions of schemas, schema ids global to the registry and
//! never reused, compatibility levels and modes globally and per subject, references between
//! schemas — and understands the three formats Confluent's clients send: Avro, JSON Schema and
//! Protobuf.
//!
//! Module map:
//! - [`schema`]: the vocabulary shared by the store, the REST API and the checks (formats,
//!   references, compatibility levels, modes, ids and versions).
//! - [`parse`]: a schema's text (with its references resolved) into a [`ParsedSchema`], its
//!   canonical and normalized forms; invalid schemas are refused here with a reason.
//! - [`compat`]: whether a candidate schema may follow a subject's versions at a compatibility
//!   level, with the reasons when not.
//! - [`source`]: the narrow read view payload validation uses ([`SchemaSource`]).
//! - [`payload`]: Confluent's wire format and payloads decoded or validated against a schema.
//! - [`subject_name`]: the subject name strategies (Confluent's three and the event type's).
//! - [`validation`]: validation at the store, per Kafka record and per HTTP event.
//! - [`verify`]: `verify=stored`, a candidate schema tried on every stored event of a subject.
//! - [`store`]: the registry kept durably in the log's `_schemas` topic ([`RegistryStore`]),
//!   with Confluent's operations (register, look up, delete, configure).
//! - [`error`]: the registry's errors with Confluent's error codes and HTTP statuses.
//!
//! Architecture invariant: this crate never fetches anything from the network (a JSON Schema's
//! remote `$ref` and a Protobuf import resolve only against registered references and the
//! well-known types), so what a schema means depends only on what the registry stores.

pub mod compat;
pub mod error;
pub mod parse;
pub mod payload;
pub mod schema;
pub mod source;
pub mod subject_name;
pub mod validation;
pub mod verify;
pub mod store;

pub use error::RegistryError;
pub use parse::{parse, ParseError, ParsedSchema, ResolvedReference};
pub use schema::{Compatibility, Mode, Reference, SchemaId, SchemaType, SubjectVersion};
pub use source::SchemaSource;
pub use validation::{Refusal, Validation};
pub use store::{
    validate_subject, RegisterOptions, Registered, RegistryStore, SchemaById, SchemaInput, SubjectSchema, VersionSpec,
    REFERENCES_CLOSURE_MAX, REFERENCES_MAX, SCHEMAS_TOPIC, SCHEMA_LEN_MAX, SUBJECT_LEN_MAX,
};
