//! The event envelope: CloudEvents' Kafka protocol binding in binary mode. An event's attributes
//! travel as record headers (`ce_id`, `ce_type`, ...) and its payload is the record value, so a
//! plain Kafka consumer sees an ordinary record and a CloudEvents SDK sees an event.

use crate::batch::NewRecord;

/// Header holding the event id, unique per stream; the idempotence key.
pub const CE_ID: &str = "ce_id";
/// Header holding the event type, e.g. `MoneyDeposited`.
pub const CE_TYPE: &str = "ce_type";
/// Header holding the event source.
pub const CE_SOURCE: &str = "ce_source";
/// Header holding the CloudEvents spec version.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// Header holding the event time (RFC 3339).
pub const CE_TIME: &str = "ce_time";
/// Header holding the payload's media type.
pub const CONTENT_TYPE: &str = "content-type";
/// Header by which a Kafka producer states the expected version of the record's stream, on the
/// first record of each key in a batch.
pub const EXPECTED_VERSION: &str = "evident-expected-version";
/// Header evident sets on an event it validated against a registered schema (HTTP appends to a
/// topic with `confluent.value.schema.validation`): the schema's id, in decimal. Reserved:
/// clients cannot set it, so a reader can trust it (unlike `ce_dataschema`, a CloudEvents
/// attribute the producer chooses).
pub const SCHEMA_ID: &str = "evident-schema-id";
/// Header on each record of the local mirror a process keeps of an Apache Kafka cluster (the
/// library's Kafka backend, `evident serve --storage kafka://`): the record's offset in its
/// Kafka partition, in decimal, which readers report as the event's offset. Reserved: clients
/// cannot set it.
pub const KAFKA_OFFSET: &str = "evident-kafka-offset";
/// Longest event id evident accepts; ids are compared and indexed, so they are bounded.
pub const ID_LEN_MAX: usize = 256;

/// A record header.
pub type Header = (String, Option<Vec<u8>>);

/// An event to append, as the API layers build it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventData {
    /// Event id (`ce_id`), unique within its stream.
    pub id: String,
    /// Event type (`ce_type`).
    pub event_type: String,
    /// Source (`ce_source`), if any.
    pub source: Option<String>,
    /// Payload media type, e.g. `application/json`.
    pub content_type: Option<String>,
    /// Time (`ce_time`), RFC 3339, if the producer set one.
    pub time: Option<String>,
    /// Further headers, kept in order after the CloudEvents ones.
    pub extra_headers: Vec<Header>,
    /// The payload.
    pub data: Vec<u8>,
}

impl EventData {
    /// An event with an id, a type and a JSON payload.
    pub fn json(id: impl Into<String>, event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            event_type: event_type.into(),
            content_type: Some("application/json".into()),
            data: data.into(),
            ..Self::default()
        }
    }

    /// Appends the Kafka record carrying this event under `key`, stamped `timestamp_ms`, to
    /// `batch` (without building the intermediate [`NewRecord`]).
    pub fn push_to(&self, batch: &mut crate::batch::BatchBuilder, key: &[u8], timestamp_ms: i64) {
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(6 + self.extra_headers.len());
        headers.push((CE_ID, Some(self.id.as_bytes())));
        headers.push((CE_TYPE, Some(self.event_type.as_bytes())));
        headers.push((CE_SPECVERSION, Some(b"1.0")));
        if let Some(source) = &self.source {
            headers.push((CE_SOURCE, Some(source.as_bytes())));
        }
        if let Some(time) = &self.time {
            headers.push((CE_TIME, Some(time.as_bytes())));
        }
        if let Some(ct) = &self.content_type {
            headers.push((CONTENT_TYPE, Some(ct.as_bytes())));
        }
        headers.extend(self.extra_headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        batch.push_parts(Some(key), Some(&self.data), &headers, timestamp_ms);
    }

    /// The Kafka record carrying this event under `key`, stamped `timestamp_ms`.
    pub fn to_record(&self, key: &[u8], timestamp_ms: i64) -> NewRecord {
        let mut headers: Vec<Header> = vec![
            (CE_ID.into(), Some(self.id.as_bytes().to_vec())),
            (CE_TYPE.into(), Some(self.event_type.as_bytes().to_vec())),
            (CE_SPECVERSION.into(), Some(b"1.0".to_vec())),
        ];
        if let Some(source) = &self.source {
            headers.push((CE_SOURCE.into(), Some(source.as_bytes().to_vec())));
        }
        if let Some(time) = &self.time {
            headers.push((CE_TIME.into(), Some(time.as_bytes().to_vec())));
        }
        if let Some(ct) = &self.content_type {
            headers.push((CONTENT_TYPE.into(), Some(ct.as_bytes().to_vec())));
        }
        headers.extend(self.extra_headers.iter().cloned());
        NewRecord { key: Some(key.to_vec()), value: Some(self.data.clone()), headers, timestamp_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, RecordBatch};

    #[test]
    fn envelope_travels_in_headers() {
        let event = EventData::json("id-1", "MoneyDeposited", br#"{"amount":5}"#.to_vec());
        let mut b = BatchBuilder::new();
        b.push(event.to_record(b"acct-1", 10));
        let bytes = b.build();
        let batch = RecordBatch::parse_exact(&bytes).expect("valid");
        let records = batch.validate_records().expect("valid");
        assert_eq!(records[0].header(CE_ID), Some(&b"id-1"[..]));
        assert_eq!(records[0].header(CE_TYPE), Some(&b"MoneyDeposited"[..]));
        assert_eq!(records[0].header(CONTENT_TYPE), Some(&b"application/json"[..]));
        assert_eq!(records[0].value, Some(&br#"{"amount":5}"#[..]));
    }
}
