//! The Kafka listener's counters: requests by API, error codes sent, record bytes produced and
//! fetched, connections. Plain atomics, bumped on the request path without a lock and read by
//! the server's `/metrics` at scrape time (`evident-server/src/metrics.rs`), so this crate
//! depends on no metrics library.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::api::SERVED;

/// Error codes counted one by one: Kafka's codes run from -1 (UNKNOWN_SERVER_ERROR) to a little
/// over 120; anything outside `-1..ERROR_CODES_MAX - 1` is counted as "other".
const ERROR_CODES_MAX: usize = 160;

/// The listener's counters.
#[derive(Debug)]
pub struct KafkaMetrics {
    /// Requests answered, by position in [`SERVED`].
    requests: Vec<AtomicU64>,
    /// Requests refused by the gate (unknown API, version not served, malformed): each closes
    /// its connection.
    requests_refused: AtomicU64,
    /// Error codes sent, by code + 1 (the last slot: any other code).
    errors: Vec<AtomicU64>,
    /// Record bytes received in Produce requests.
    produce_bytes: AtomicU64,
    /// Record bytes sent in Fetch responses.
    fetch_bytes: AtomicU64,
    /// Open connections.
    connections_open: AtomicI64,
    /// Connections accepted since start.
    connections_accepted: AtomicU64,
    /// Connections refused at the connection limit.
    connections_refused: AtomicU64,
    /// Idle connections closed to admit another at a connection cap.
    connections_evicted: AtomicU64,
}

impl Default for KafkaMetrics {
    fn default() -> Self {
        Self {
            requests: SERVED.iter().map(|_| AtomicU64::new(0)).collect(),
            requests_refused: AtomicU64::new(0),
            errors: (0..=ERROR_CODES_MAX).map(|_| AtomicU64::new(0)).collect(),
            produce_bytes: AtomicU64::new(0),
            fetch_bytes: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_evicted: AtomicU64::new(0),
        }
    }
}

/// A snapshot for a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSnapshot {
    /// Requests answered, by API name (every served API, zeros included).
    pub requests: Vec<(String, u64)>,
    /// Requests refused by the gate.
    pub requests_refused: u64,
    /// Error codes sent (non-zero counts only).
    pub errors: Vec<ErrorCount>,
    /// Record bytes received in Produce requests.
    pub produce_bytes: u64,
    /// Record bytes sent in Fetch responses.
    pub fetch_bytes: u64,
    /// Open connections.
    pub connections_open: i64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused at the limit.
    pub connections_refused: u64,
    /// Idle connections closed to admit another at a connection cap.
    pub connections_evicted: u64,
}

/// How often one error code was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// The code; `None` for codes outside the counted range, counted together.
    pub code: Option<i16>,
    /// Kafka's name of the code (`UNKNOWN_TOPIC_OR_PARTITION`), or `OTHER`/`UNKNOWN`.
    pub name: String,
    /// Times sent.
    pub count: u64,
}

/// Kafka's constant name of an error code, as its documentation and tools spell it.
fn error_name(code: Option<i16>) -> String {
    let Some(error) = code.and_then(ResponseError::try_from_code) else {
        return if code.is_some() { "UNKNOWN".into() } else { "OTHER".into() };
    };
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

impl KafkaMetrics {
    pub(crate) fn request(&self, key: ApiKey) {
        if let Some(i) = SERVED.iter().position(|s| s.key == key) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn refused(&self) {
        self.requests_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error code sent to a client (0, no error, is not counted).
    pub(crate) fn error(&self, code: i16) {
        if code == 0 {
            return;
        }
        let slot =
            usize::try_from(i32::from(code) + 1).ok().filter(|&s| s < ERROR_CODES_MAX).unwrap_or(ERROR_CODES_MAX);
        self.errors[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn produced(&self, bytes: usize) {
        self.produce_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn fetched(&self, bytes: usize) {
        self.fetch_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_evicted(&self) {
        self.connections_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> KafkaSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KafkaSnapshot {
            requests: SERVED.iter().zip(&self.requests).map(|(s, n)| (format!("{:?}", s.key), load(n))).collect(),
            requests_refused: load(&self.requests_refused),
            errors: self
                .errors
                .iter()
                .enumerate()
                .filter(|(_, n)| load(n) > 0)
                .map(|(slot, n)| {
                    let code = (slot < ERROR_CODES_MAX).then(|| i16::try_from(slot).map_or(i16::MAX, |s| s - 1));
                    ErrorCount { code, name: error_name(code), count: load(n) }
                })
                .collect(),
            produce_bytes: load(&self.produce_bytes),
            fetch_bytes: load(&self.fetch_bytes),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_accepted: load(&self.connections_accepted),
            connections_refused: load(&self.connections_refused),
            connections_evicted: load(&self.connections_evicted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_counted_by_code() {
        let m = KafkaMetrics::default();
        for code in [0, 3, 3, -1, 87, 500, -7] {
            m.error(code);
        }
        m.request(ApiKey::Fetch);
        m.request(ApiKey::DescribeAcls); // not served: not counted
        let s = m.snapshot();
        let errors: Vec<(Option<i16>, &str, u64)> =
            s.errors.iter().map(|e| (e.code, e.name.as_str(), e.count)).collect();
        assert_eq!(
            errors,
            [
                (Some(-1), "UNKNOWN_SERVER_ERROR", 1),
                (Some(3), "UNKNOWN_TOPIC_OR_PARTITION", 2),
                (Some(87), "INVALID_RECORD", 1),
                (None, "OTHER", 2)
            ]
        );
        assert_eq!(s.requests.iter().find(|(api, _)| api == "Fetch"), Some(&("Fetch".to_string(), 1)));
        assert_eq!(s.requests.iter().map(|(_, n)| n).sum::<u64>(), 1);
    }
}
