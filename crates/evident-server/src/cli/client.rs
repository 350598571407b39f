//! The blocking HTTP client the commands share: it builds URLs under the server's base URL (path
//! segments percent-encoded), sends JSON, and turns every failure into an error a person can act
//! on: the server's own `{"error": {"code", "message"}}` as an [`ApiError`], or a connection
//! failure that names the server and suggests starting one.
//!
//! Requests are built from `evident-api`'s types and replies decoded into them ([`decode`]), the
//! ones the server itself is written against, so the two cannot drift apart. Replies are kept as
//! JSON as well, because `--json` prints the server's document as it came (a newer server's
//! extra fields included).

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use evident_api::{ErrorBody, ErrorCode};
use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// How long a connection attempt may take before the server is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole request (not a subscription) may take: a page of 10,000 events is far below it,
/// and a server that hangs longer than this is better reported than waited for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Keepalive probes on subscriptions, which have no overall timeout, so a peer that vanished without
/// closing the connection is noticed and the subscription reconnects.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// An error reply of the server: its HTTP status and, when the body had the documented shape, its
/// stable `code` and its `message` (which names the stream's current version on a conflict).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status of the reply.
    pub status: StatusCode,
    /// The stable, machine-readable error code (`wrong_expected_version`), when the body had one
    /// this build knows (a newer server's code is still in `body`, and shown).
    pub code: Option<ErrorCode>,
    /// The message for people (or the raw body when it was not the documented JSON).
    pub message: String,
    /// The whole error body when it had the documented shape (with `current_version` and the
    /// other fields some codes carry).
    pub body: Option<ErrorBody>,
    /// That body as the server sent it, fields this build does not know included (a SQL syntax
    /// error's `line` and `column`), for `--json`.
    pub document: Option<Value>,
}

impl ApiError {
    /// Decodes an error reply's body; anything but the documented JSON keeps the raw text, so a
    /// proxy's HTML error page still reaches the user.
    pub fn from_body(status: StatusCode, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(parsed) => ApiError {
                status,
                code: ErrorCode::from_code(&parsed.error.code),
                message: parsed.error.message.clone(),
                body: Some(parsed),
                document: serde_json::from_str(body).ok(),
            },
            Err(_) => {
                let text = body.trim();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    super::output::truncate(text, 300)
                };
                ApiError { status, code: None, message, body: None, document: None }
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Some(body) => write!(f, "{} ({}, HTTP {})", self.message, body.error.code, self.status.as_u16()),
            None => write!(f, "{} (HTTP {})", self.message, self.status.as_u16()),
        }
    }
}

impl std::error::Error for ApiError {}

/// The server could not be reached, or did not answer in time: nothing was refused, so a
/// script may retry (exit code 3, distinct from a refusal's 1).
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// The command line asks for something that cannot be sent (a bad `--server`, a name that
/// cannot be a path segment): a usage error (exit code 2), found before any request.
#[derive(Debug, Clone)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A connection to one evident server's HTTP API.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: HttpClient,
}

impl Client {
    /// A client of the server at `server` (`http://host:port`, or `host:port`).
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let http = HttpClient::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Client { base: parse_server(server)?, http })
    }

    /// A client for subscriptions: no overall timeout (a subscription lasts as long as the user
    /// wants), but TCP keepalive so a dead peer is detected.
    pub fn for_streaming(server: &str) -> anyhow::Result<Self> {
        let http = HttpClient::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(None)
            .tcp_keepalive(TCP_KEEPALIVE)
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Client { base: parse_server(server)?, http })
    }

    /// The URL of `segments` (each one percent-encoded as a single path segment, so a key holding
    /// `/` or `?` stays one segment) under the base URL, with the query parameters whose value is
    /// present.
    ///
    /// An empty segment, `.` or `..` is refused: URL normalization (WHATWG, which `Url` follows)
    /// would drop or collapse it even percent-encoded, and the request would silently go to
    /// another route.
    pub fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> anyhow::Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(
                Usage(format!("{bad:?} cannot be used as a topic name, stream key or group name over HTTP")).into()
            );
        }
        let mut url = self.base.clone();
        {
            // The base URL was checked to be able to hold a path in `parse_server`.
            let mut path = url.path_segments_mut().expect("an http URL has a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        let present: Vec<(&str, &str)> =
            query.iter().filter_map(|(name, value)| value.as_deref().map(|v| (*name, v))).collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        Ok(url)
    }

    /// The server's base URL, for messages.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `GET url`, expecting JSON.
    pub fn get(&self, url: Url) -> anyhow::Result<Value> {
        let response = self.send(self.http.get(url.clone()).header(ACCEPT, "application/json"), &url)?;
        json_body(response, &url)
    }

    /// `POST url` with a JSON body (one of `evident-api`'s request types), expecting JSON.
    pub fn post(&self, url: Url, body: &impl Serialize) -> anyhow::Result<Value> {
        let body = serde_json::to_string(body).context("encoding the request body")?;
        let request = self
            .http
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(request, &url)?;
        json_body(response, &url)
    }

    /// `POST url` with a JSON body, accepting the media types `accept`, returning the response with
    /// its body unread: for a reply that may be a JSON document or a stream, told apart by its
    /// `Content-Type` (`evident sql`: a push query answers `text/event-stream`).
    pub fn post_for_response(&self, url: Url, body: &impl Serialize, accept: &str) -> anyhow::Result<Response> {
        let body = serde_json::to_string(body).context("encoding the request body")?;
        let request =
            self.http.post(url.clone()).header(ACCEPT, accept).header(CONTENT_TYPE, "application/json").body(body);
        self.send(request, &url)
    }

    /// `DELETE url`; a `204 No Content` (the documented reply) is `None`.
    pub fn delete(&self, url: Url) -> anyhow::Result<Option<Value>> {
        let response = self.send(self.http.delete(url.clone()).header(ACCEPT, "application/json"), &url)?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        json_body(response, &url).map(Some)
    }

    /// `GET url` for a Server-Sent Events stream, resuming after `last_event_id` when given; the
    /// response's body is the stream.
    pub fn subscribe(&self, url: Url, last_event_id: Option<&str>) -> anyhow::Result<Response> {
        let mut request = self.http.get(url.clone()).header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        self.send(request, &url)
    }

    /// Sends a request and turns a failure to reach the server or an error status into an error.
    fn send(&self, request: RequestBuilder, url: &Url) -> anyhow::Result<Response> {
        let response = request.send().map_err(|e| self.transport_error(e, url))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().unwrap_or_default();
        Err(ApiError::from_body(status, &body).into())
    }

    /// Explains a failure below HTTP: the server is not there, too slow, or went away.
    pub fn transport_error(&self, error: reqwest::Error, url: &Url) -> anyhow::Error {
        let cause = root_cause(&error);
        let message = if error.is_connect() {
            format!(
                "cannot connect to the evident server at {} ({cause}); is it running? Start one with \
                 `evident serve`, or point --server / EVIDENT_SERVER at it",
                self.base
            )
        } else if error.is_timeout() {
            format!("the evident server at {} did not answer {} in time", self.base, url.path())
        } else {
            format!("request to {url} failed: {cause}")
        };
        anyhow!(Unreachable(message))
    }
}

/// Reads a successful reply's JSON body.
pub fn json_body(response: Response, url: &Url) -> anyhow::Result<Value> {
    let text = response.text().with_context(|| format!("reading the reply to {url}"))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("the reply to {url} is not JSON"))
}

/// A reply decoded into its `evident-api` type, for the text output. A reply that does not fit
/// the type is an error naming what was expected, not a table of blanks.
pub fn decode<T: DeserializeOwned>(reply: &Value, what: &str) -> anyhow::Result<T> {
    T::deserialize(reply).with_context(|| format!("the server's reply is not {what}"))
}

/// The innermost cause of an error (for reqwest that is the OS error, "Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Parses `--server`: a URL, or `host:port` to which `http://` is added. Only plain HTTP is built
/// in, so `https://` is refused here with a clear message instead of failing on every request.
fn parse_server(server: &str) -> anyhow::Result<Url> {
    let text = server.trim();
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let url = Url::parse(&with_scheme).map_err(|e| Usage(format!("--server {server:?} is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(Usage(format!(
            "--server {server:?}: only http:// is supported (this build of evident has no TLS)"
        ))
        .into());
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(Usage(format!("--server {server:?} is not an http://host:port URL")).into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(parse_server("127.0.0.1:8080").unwrap().as_str(), "http://127.0.0.1:8080/");
        assert_eq!(parse_server("localhost:9000").unwrap().as_str(), "http://localhost:9000/");
        assert_eq!(parse_server("http://h:1/prefix/").unwrap().as_str(), "http://h:1/prefix/");
        assert!(parse_server("https://h").is_err());
        assert!(parse_server("").is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let client = Client::new("http://127.0.0.1:8080").unwrap();
        let url =
            client.url(&["v1", "topics", "bank", "streams", "acc/1 ?#%"], &[("limit", Some("5".into()))]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/v1/topics/bank/streams/acc%2F1%20%3F%23%25?limit=5");
        let prefixed = Client::new("http://h:1/api/").unwrap();
        assert_eq!(prefixed.url(&["v1", "all"], &[("from_sequence", None)]).unwrap().as_str(), "http://h:1/api/v1/all");
        assert!(client.url(&["v1", "topics", "bank", "streams", ".."], &[]).is_err());
        assert!(client.url(&["v1", "topics", "bank", "streams", ""], &[]).is_err());
    }

    #[test]
    fn error_bodies() {
        let body =
            r#"{"error":{"code":"wrong_expected_version","message":"stream bank/a is at 5","current_version":5}}"#;
        let error = ApiError::from_body(StatusCode::CONFLICT, body);
        assert_eq!(error.to_string(), "stream bank/a is at 5 (wrong_expected_version, HTTP 409)");
        let error = ApiError::from_body(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert_eq!(error.to_string(), "<html>proxy</html> (HTTP 502)");
        let error = ApiError::from_body(StatusCode::NOT_FOUND, "");
        assert_eq!(error.to_string(), "Not Found (HTTP 404)");
    }
}
