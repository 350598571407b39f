//! The event every workload writes, identical for every system: a 216-byte JSON `OrderPlaced`
//! payload (the team's peer baseline used the same one) plus about 100 bytes of metadata
//! (correlation id, causation id, user id). PostgreSQL and SQLite store the metadata as a JSON
//! column; evident carries it as CloudEvents extension attributes in record headers.

use evident_core::batch::NewRecord;
use evident_core::EventData;

/// The event payload (216 bytes of JSON).
pub const DATA: &str = r#"{"orderId": "5f1c7c2e-8d3b-4a51-9b7e-2f6d3c1a9e44", "customerId": "c-000123", "items": [{"sku": "SKU-12345", "qty": 2, "price": 1999}, {"sku": "SKU-67890", "qty": 1, "price": 4999}], "currency": "EUR", "total": 8997}"#;

/// The event metadata as the SQL peers store it (100 bytes of JSON).
pub const METADATA: &str =
    r#"{"correlationId": "9b2f6a4e-1c3d-4e5f-8a7b-6c5d4e3f2a1b", "causationId": "cmd-42", "userId": "u-42"}"#;

/// The event type.
pub const EVENT_TYPE: &str = "OrderPlaced";

/// A UUID-shaped event id (36 characters), unique for each `(writer, n)`.
pub fn event_id(writer: u64, n: u64) -> String {
    format!("{:08x}-{:04x}-4000-8000-{:012x}", writer as u32, (writer >> 32) as u16, n & 0xffff_ffff_ffff)
}

/// The event with id `id`, as evident's API takes it.
pub fn event(id: String) -> EventData {
    let mut e = EventData::json(id, EVENT_TYPE, DATA.as_bytes().to_vec());
    e.extra_headers = vec![
        ("ce_correlationid".into(), Some(b"9b2f6a4e-1c3d-4e5f-8a7b-6c5d4e3f2a1b".to_vec())),
        ("ce_causationid".into(), Some(b"cmd-42".to_vec())),
        ("ce_userid".into(), Some(b"u-42".to_vec())),
    ];
    e
}

/// The event with id `id` as evident's HTTP API takes it: the same metadata as plain headers
/// (the API reserves the `ce_` names it does not take as CloudEvents fields).
pub fn event_over_http(id: String) -> EventData {
    let mut e = event(id);
    for (name, _) in &mut e.extra_headers {
        if let Some(plain) = name.strip_prefix("ce_") {
            *name = plain.to_string();
        }
    }
    e
}

/// The same event as a Kafka record under `key` (what a Kafka producer would send).
pub fn record(key: &[u8], id: String, timestamp_ms: i64) -> NewRecord {
    event(id).to_record(key, timestamp_ms)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_match_the_peer_baseline() {
        assert_eq!(DATA.len(), 216);
        assert_eq!(METADATA.len(), 100);
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = event_id(1, 2);
        assert_eq!(a.len(), 36);
        assert_ne!(a, event_id(2, 1));
        assert_ne!(a, event_id(1, 3));
    }
}
