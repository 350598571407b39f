//! The library's error type. Each variant says what a caller can do about it: retry
//! (`Unavailable`), reload and retry (`WrongExpectedVersion`, which the repository does itself),
//! fix the request (`Rejected`), fix the data or the code (`Decode`, `Encode`), or give up on the
//! command (`Domain`).

use evident_core::{ExpectedVersion, Version};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not where the append expected it; nothing was appended.
    #[error("wrong expected version for stream {stream}: expected {expected}, stream is at {}", display_version(*.current))]
    WrongExpectedVersion {
        /// `topic/key`.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version (None: no event).
        current: Option<Version>,
    },
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The backend refused the request as invalid (bad name, oversized event, id reused...).
    #[error("rejected by the store: {0}")]
    Rejected(String),
    /// The store could not be reached or failed (I/O, network, a poisoned log); retrying later
    /// may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored event or snapshot could not be decoded into the expected type.
    #[error("decode error: {0}")]
    Decode(String),
    /// A value could not be encoded.
    #[error("encode error: {0}")]
    Encode(String),
    /// The aggregate refused the command (its own error, rendered).
    #[error("command refused: {0}")]
    Domain(String),
    /// Concurrent writers kept moving the stream; the retry policy gave up.
    #[error("gave up after {attempts} attempts: stream {stream} kept changing")]
    RetriesExhausted {
        /// `topic/key`.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Another runner of the same projection moved its checkpoint (or resolved its parked
    /// event) first: this runner's transaction was rolled back and it must stop, since two
    /// runners of one projection would apply events twice.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The library was used where it cannot run: its async API outside a tokio runtime, the
    /// [`crate::blocking`] facade inside one (where it would block an executor thread), or a
    /// runner whose previous call was cancelled mid-way. A programming error, named instead of
    /// a panic.
    #[error("misuse: {0}")]
    Misuse(String),
    /// A schema registry refused a schema (invalid, or incompatible with the registered
    /// versions: the registry's reasons are in the message), or an event type has no registered
    /// schema where one is required.
    #[error("schema error: {0}")]
    Schema(String),
    /// A projection's read-model store failed.
    #[error("sink error: {0}")]
    Sink(String),
}

fn display_version(v: Option<Version>) -> String {
    v.map_or_else(|| "no_stream".to_string(), |v| v.to_string())
}

/// The tokio runtime the async API runs on, or [`Error::Misuse`] outside one.
#[cfg_attr(not(any(feature = "embedded", feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn runtime() -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Misuse(
            "evident's async API must run inside a tokio runtime; synchronous code uses evident::blocking".into(),
        )
    })
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
