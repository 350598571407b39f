//! What a handler of one Kafka API sees and gives back: the context of a request ([`Ctx`]),
//! and the [`Outcome`] the connection acts on. A leaf module: handlers (`api/*.rs`), the
//! registry (`api.rs`), the gate (`request.rs`) and the connection import it, and it imports
//! none of them, so routing and handlers never import each other.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::sync::OwnedSemaphorePermit;

use crate::broker::Broker;
use crate::metrics::KafkaMetrics;

/// One API evident serves, at the versions it advertises (ApiVersions) and accepts (the gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The API.
    pub key: ApiKey,
    /// The oldest version served.
    pub min: i16,
    /// The newest version served.
    pub max: i16,
}

impl Served {
    /// Whether `version` is served.
    pub fn serves(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// What a handler knows about the request it answers.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The shared state.
    pub broker: &'a Arc<Broker>,
    /// The request header (client id, correlation id).
    pub header: &'a RequestHeader,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request's version.
    pub version: i16,
    /// Every API served, for ApiVersions (passed in rather than imported, so the ApiVersions
    /// handler does not import the registry that routes to it).
    pub served: &'static [Served],
}

/// The final answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// Send these bytes (response header and body, without the size prefix).
    Reply(BytesMut),
    /// Send these bytes, and return their charge to a broker-wide budget once they are written
    /// (a Fetch response: see [`Budgeted`]).
    Held(BytesMut, OwnedSemaphorePermit),
    /// Send nothing (a produce with `acks=0`).
    NoReply,
    /// Close the connection, for this reason.
    Close(String),
}

/// A request's answer to come: a produce whose appends are queued but not yet synced.
pub type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What to do after a request.
pub enum Outcome {
    /// The answer is ready.
    Now(Answer),
    /// The answer comes when this finishes; the connection reads the next request meanwhile
    /// and writes answers in request order. A pending answer is final by its type: it cannot
    /// defer again.
    Later(Pending),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Now(answer) => write!(f, "Now({answer:?})"),
            Outcome::Later(_) => f.write_str("Later"),
        }
    }
}

/// Where a response goes: the API, the correlation id and the version to encode it at, and
/// the counters its error codes are added to.
#[derive(Debug, Clone)]
pub struct ResponseTo {
    /// The API answered.
    pub key: ApiKey,
    /// The request's correlation id.
    pub correlation_id: i32,
    /// The version to encode at.
    pub version: i16,
    /// The listener's counters.
    pub metrics: Arc<KafkaMetrics>,
}

impl ResponseTo {
    /// Counts the response's error codes, then encodes it.
    pub fn answer<R: Encodable + ErrorCodes>(&self, body: &R) -> Answer {
        body.error_codes(&mut |code| self.metrics.error(code));
        self.encode(body)
    }

    /// Encodes the response header and `body`; a response the codec cannot encode at this
    /// version (a handler bug) closes the connection with the reason.
    pub fn encode<R: Encodable>(&self, body: &R) -> Answer {
        let mut out = BytesMut::new();
        let header = ResponseHeader::default().with_correlation_id(self.correlation_id);
        if let Err(e) = header.encode(&mut out, self.key.response_header_version(self.version)) {
            return Answer::Close(format!("cannot encode the response header: {e}"));
        }
        match body.encode(&mut out, self.version) {
            Ok(()) => Answer::Reply(out),
            Err(e) => Answer::Close(format!("cannot encode the {:?} v{} response: {e}", self.key, self.version)),
        }
    }
}

/// The error codes a response carries, at every level (top, topic, partition), for the
/// errors-by-code metric. Each handler module implements it for its response, beside `handle`,
/// so a new API cannot be registered without it.
pub trait ErrorCodes {
    /// Calls `each` with every error code in the response (zeros included).
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

/// What a handler returns: a response now (any encodable response), or later ([`Deferred`]).
pub trait Respond {
    /// The outcome for the connection.
    fn respond(self, to: ResponseTo) -> Outcome;
}

impl<R: Encodable + ErrorCodes> Respond for R {
    fn respond(self, to: ResponseTo) -> Outcome {
        Outcome::Now(to.answer(&self))
    }
}

/// A response that is ready only later (Produce: after the sync that covers its appends);
/// `None` means no response at all (`acks=0`).
pub struct Deferred<R>(pub Pin<Box<dyn Future<Output = Option<R>> + Send>>);

impl<R: Encodable + ErrorCodes + Send + 'static> Respond for Deferred<R> {
    fn respond(self, to: ResponseTo) -> Outcome {
        let Deferred(later) = self;
        Outcome::Later(Box::pin(async move {
            match later.await {
                Some(response) => to.answer(&response),
                None => Answer::NoReply,
            }
        }))
    }
}

/// A response whose bytes are charged to a broker-wide budget (the Fetch budget) until the
/// connection has written them: a client that does not read its replies keeps the charge, so
/// the budget bounds what such clients make the server hold.
pub struct Budgeted<R> {
    /// The response.
    pub response: R,
    /// Its charge; None when it holds nothing worth charging.
    pub charge: Option<OwnedSemaphorePermit>,
}

impl<R: Encodable + ErrorCodes> Respond for Budgeted<R> {
    fn respond(self, to: ResponseTo) -> Outcome {
        match (to.answer(&self.response), self.charge) {
            (Answer::Reply(bytes), Some(charge)) => Outcome::Now(Answer::Held(bytes, charge)),
            (answer, _) => Outcome::Now(answer),
        }
    }
}
