//! The wire types of evident's HTTP API (docs/http-api.md): every request body, reply body and
//! query of `/v1`, the error body `{"error": {"code", "message", ...}}` with the table of error
//! codes, and the limits a client must respect (largest page, largest batch).
//!
//! One definition serves everyone who speaks the API: the server parses requests into these
//! types and builds its replies from them, and the `evident` CLI and the library's HTTP backend
//! build requests from them and decode replies with them, so a field renamed here is renamed
//! for all of them at compile time. The crate depends on serde alone, so a client pulls in no
//! server code; with the `openapi` feature each type also derives its OpenAPI schema
//! (`utoipa`), from which the server generates `/v1/openapi.json`. Doc comments on the types
//! and fields are the schema descriptions, so they are written for API users.
//!
//! Reply types are lenient (unknown fields are ignored, so an older client keeps working with
//! a newer server); request types refuse unknown fields (`deny_unknown_fields`), because a
//! misspelt option must not silently become a default.

pub mod dead_letters;
pub mod error;
pub mod groups;
pub mod limits;
pub mod objects;
pub mod ops;
pub mod params;
pub mod records;
pub mod sql;
pub mod streams;
pub mod topics;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
