//! Request parsing that answers bad input with the API's JSON errors: path segments, query
//! parameters (unknown ones are refused, so a typo such as `?form_version=3` is not silently
//! ignored), JSON bodies (a missing field is `missing_field`, anything else malformed is
//! `malformed_json`, an oversized body is `413`), dates and durations.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Path parameters, with JSON errors.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::invalid(format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// Query parameters, parsed on demand by name.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(Self(map)),
            Err(e) => Err(ApiError::invalid(format!("invalid query string: {}", e.body_text()))),
        }
    }
}

impl Params {
    /// Refuses parameters not in `allowed`.
    pub fn allow(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self.0.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        Err(ApiError::invalid(format!(
            "unknown query parameter {}; this route takes {}",
            unknown.join(", "),
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        )))
    }

    /// A parameter's raw text.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A non-negative integer parameter.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.str(name).map(|v| parse_u64(name, v)).transpose()
    }

    /// A count between `min` and `max`, `default` when absent.
    pub fn count(&self, name: &str, default: usize, min: usize, max: usize) -> Result<usize, ApiError> {
        match self.u64(name)? {
            None => Ok(default),
            Some(n) if (min as u64..=max as u64).contains(&n) => Ok(n as usize),
            Some(n) => Err(ApiError::invalid(format!("{name} must be between {min} and {max}, not {n}"))),
        }
    }

    /// A time: RFC 3339, or milliseconds since the epoch.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name).map(|v| parse_time_ms(name, v)).transpose()
    }

    /// A boolean (`true`/`false`).
    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.str(name) {
            None | Some("false") => Ok(false),
            Some("true") | Some("") => Ok(true),
            Some(other) => Err(ApiError::invalid(format!("{name} must be true or false, not {other:?}"))),
        }
    }
}

/// Parses a non-negative decimal integer, naming the parameter on failure.
pub fn parse_u64(name: &str, v: &str) -> Result<u64, ApiError> {
    if let Some(rest) = v.strip_prefix('-') {
        if rest.parse::<u64>().is_ok() {
            return Err(ApiError::invalid(format!("{name} must not be negative, not {v}")));
        }
    }
    v.parse::<u64>().map_err(|_| ApiError::invalid(format!("{name} must be a non-negative integer, not {v:?}")))
}

/// Parses a time: RFC 3339 with a zone (`2026-11-22T10:00:00Z`), a civil date-time without one
/// (taken as UTC; `2026-11-22T10:00:00.000`, Kafka's `--to-datetime` format), or milliseconds
/// since the epoch.
pub fn parse_time_ms(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(ts) = v.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(dt) = v.parse::<jiff::civil::DateTime>() {
        if let Ok(zoned) = dt.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(zoned.timestamp().as_millisecond());
        }
    }
    Err(ApiError::invalid(format!(
        "{name} must be an RFC 3339 time (2026-11-22T10:00:00Z), a date-time in UTC (2026-11-22T10:00:00.000) or milliseconds since the epoch, not {v:?}"
    )))
}

/// Parses an ISO 8601 duration (`PT1H`, `P1DT2H30M`) into milliseconds; days are 24 hours.
pub fn parse_duration_ms(name: &str, v: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid(format!("{name} must be an ISO 8601 duration such as PT1H or P1DT2H, not {v:?}"));
    let span: jiff::Span = v.parse().map_err(|_| bad())?;
    let total = span.total(jiff::SpanTotal::from(jiff::Unit::Millisecond).days_are_24_hours()).map_err(|_| bad())?;
    if total < 0.0 || !total.is_finite() {
        return Err(ApiError::invalid(format!("{name} must not be negative, not {v:?}")));
    }
    Ok(total as i64)
}

/// A JSON body, with JSON errors and the body limit answered as 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        // Every such body is a JSON object; serde would also take a struct from an array.
        if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            if *first != b'{' {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    "the request body must be a JSON object",
                ));
            }
        }
        parse_json(&bytes).map(Self)
    }
}

/// Reads the whole body, answering an oversized one with 413.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body exceeds the server's limit (--http-body-max-bytes)",
            )
        } else {
            ApiError::invalid(format!("cannot read the request body: {}", e.body_text()))
        }
    })
}

/// Deserializes JSON, telling a missing field apart from malformed input.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the request body is empty; JSON expected",
        ));
    }
    serde_json::from_slice(bytes).map_err(json_error)
}

/// Maps a serde_json error to the API's codes.
pub fn json_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    if text.starts_with("missing field") {
        ApiError::new(StatusCode::BAD_REQUEST, "missing_field", text)
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("invalid JSON body: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time_ms("t", "1000").expect("ms"), 1000);
        assert_eq!(parse_time_ms("t", "1970-01-01T00:00:01Z").expect("rfc3339"), 1000);
        assert_eq!(parse_time_ms("t", "1970-01-01T00:00:01.500").expect("civil"), 1500);
        assert!(parse_time_ms("t", "yesterday").is_err());
        assert_eq!(parse_duration_ms("d", "PT1H").expect("1h"), 3_600_000);
        assert_eq!(parse_duration_ms("d", "P1DT1M").expect("1d1m"), 86_460_000);
        assert!(parse_duration_ms("d", "an hour").is_err());
        assert!(parse_duration_ms("d", "-PT1H").is_err());
    }

    #[test]
    fn integers_name_their_parameter() {
        assert_eq!(parse_u64("limit", "5").expect("5"), 5);
        assert!(parse_u64("limit", "-1").unwrap_err().message.contains("negative"));
        assert!(parse_u64("limit", "x").unwrap_err().message.contains("limit"));
    }
}
