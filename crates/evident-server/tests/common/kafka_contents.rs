//! What a Kafka topic holds, read back by a plain `read_committed` librdkafka consumer (no
//! group, from the beginning up to each partition's end at the start): per key, the event ids
//! (`ce_id`) in offset order, or every record with its partition and offset. The tests of the
//! library's Kafka backend and of `evident serve --storage kafka://` check their appends
//! against this, a reader that shares nothing with the backend.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One committed record of a topic, as a plain consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's key (lossy UTF-8; empty for none).
    pub key: String,
    /// Its `ce_id` header (empty for none).
    pub id: String,
    /// The partition it is in.
    pub partition: i32,
    /// Its Kafka offset (transaction markers take offsets too, so these have gaps).
    pub offset: i64,
}

/// Per key, the event ids of `topic` (with `partitions` partitions) in offset order.
pub fn event_ids_by_key(bootstrap: &str, topic: &str, partitions: u32) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records(bootstrap, topic, partitions) {
        out.entry(r.key).or_default().push(r.id);
    }
    out
}

/// Every committed record of `topic` (with `partitions` partitions): each partition's in
/// offset order (partitions interleaved as they arrived).
pub fn records(bootstrap: &str, topic: &str, partitions: u32) -> Vec<StoredRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "evident-tests-contents")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30)).expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let positions = consumer.position().expect("position");
        let done = positions.elements().iter().all(|e| match e.offset() {
            Offset::Offset(o) => o >= ends[&e.partition()],
            _ => ends[&e.partition()] == 0,
        });
        if done {
            return out;
        }
        assert!(Instant::now() < deadline, "reading {topic} back did not finish: {positions:?} of {ends:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_id").and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push(StoredRecord { key, id, partition: m.partition(), offset: m.offset() });
        }
    }
}
