//! Request parsing for the registry API, answering bad input with Confluent's error shape:
//! bodies (media type checked, size bounded: 413; unreadable JSON or wrong field types: 400
//! with error code 400, as Confluent's REST layer answers Jackson's parse and mapping errors),
//! query flags (`true`/`false` only), path segments (versions: 42202; ids: 40403; a segment
//! that is not UTF-8 once percent-decoded: 400, where axum's own rejection would be plain text).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use evident_registry::{SchemaId, VersionSpec};
use serde::de::DeserializeOwned;

use super::wire::{SrError, CONTENT_TYPE, CONTENT_TYPE_UNVERSIONED, JSON};
use super::RegistryState;

/// Media types a request body may have (or none). `application/octet-stream` is read as JSON,
/// as Confluent's resources do (their `GENERIC_REQUEST`: what ad hoc clients send when they name
/// no type); the OpenAPI document states it in the bodies' description, not as a media type,
/// as nothing but JSON is read under it.
const ACCEPTED: [&str; 4] = [CONTENT_TYPE, CONTENT_TYPE_UNVERSIONED, JSON, OCTET_STREAM];

/// Confluent's `GENERIC_REQUEST`.
const OCTET_STREAM: &str = "application/octet-stream";

/// Path parameters, refused with the registry's error shape.
pub struct SrPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for SrPath<T> {
    type Rejection = SrError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, SrError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(e) => Err(SrError::bad_request(format!("Invalid path: {}", e.body_text()))),
        }
    }
}

/// A JSON body of the registry API.
pub struct SrBody<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<RegistryState> for SrBody<T> {
    type Rejection = SrError;
    async fn from_request(req: Request, state: &RegistryState) -> Result<Self, SrError> {
        if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
            let text = value.to_str().unwrap_or("");
            let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !ACCEPTED.contains(&essence.as_str()) {
                return Err(SrError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    415,
                    format!("Unsupported media type {text:?}: send {}", ACCEPTED.join(", ")),
                ));
            }
        }
        // The router's `DefaultBodyLimit` bounds what `Bytes` reads.
        let limit = state.body_max_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                SrError::new(StatusCode::PAYLOAD_TOO_LARGE, 413, format!("Request body larger than {limit} bytes"))
            } else {
                SrError::bad_request(format!("Cannot read the request body: {}", e.body_text()))
            }
        })?;
        serde_json::from_slice(&bytes).map(SrBody).map_err(|e| SrError::bad_request(format!("Invalid JSON body: {e}")))
    }
}

/// Query parameters; Confluent ignores those a route does not take, and so does this API.
pub struct SrQuery(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for SrQuery {
    type Rejection = SrError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, SrError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(Self(map)),
            Err(e) => Err(SrError::bad_request(format!("Invalid query string: {}", e.body_text()))),
        }
    }
}

impl SrQuery {
    /// A flag: absent is false; `true`/`false` in any case; anything else is refused (400).
    pub fn flag(&self, name: &str) -> Result<bool, SrError> {
        match self.0.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" || v.is_empty() => Ok(false),
            Some(v) => Err(SrError::bad_request(format!("Query parameter {name} must be true or false, not {v:?}"))),
        }
    }

    /// A parameter's text.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A version path segment (42202 if not `latest` or 1..2^31-1).
pub fn version(text: &str) -> Result<VersionSpec, SrError> {
    text.parse::<VersionSpec>().map_err(SrError::from)
}

/// An id path segment (40403 if not a positive 32-bit number: no schema has it).
pub fn schema_id(text: &str) -> Result<SchemaId, SrError> {
    match text.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(SchemaId(n)),
        _ => Err(SrError::new(StatusCode::NOT_FOUND, 40403, format!("Schema {text} not found"))),
    }
}
