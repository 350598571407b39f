//! Helpers shared by the handlers that name topics: Kafka's topic ids (derived from evident's
//! store-unique topic ids, so they are stable and never reused), auto-creation, and the
//! internal topics clients may read but not write.

use evident_log::{TopicConfig, TopicMeta};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::KafkaError;

/// A Kafka topic id for an evident topic id: a fixed prefix ("evident\0") and the id, so the
/// same topic always has the same UUID and a deleted topic's UUID is never given to another.
pub fn topic_uuid(id: u32) -> Uuid {
    Uuid::from_u64_pair(0x6576_6964_656e_7400, u64::from(id))
}

/// A Kafka topic name from text.
pub fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

/// Whether a topic is internal to evident (written only by evident).
pub fn is_internal(topic: &str) -> bool {
    evident_groups::is_internal_topic(topic) || topic.starts_with("__")
}

/// The topic, created with the default partition count if it is absent and auto-creation is
/// on (and the name is not reserved).
pub fn ensure(broker: &Broker, topic: &str, auto_create: bool) -> Result<Option<TopicMeta>, KafkaError> {
    if let Some(meta) = broker.log.list_topics().into_iter().find(|t| t.name.as_str() == topic) {
        return Ok(Some(meta));
    }
    if !auto_create || !broker.config.auto_create_topics || is_internal(topic) {
        return Ok(None);
    }
    let config = TopicConfig { partitions: broker.config.default_partitions, ..TopicConfig::default() };
    match broker.log.create_topic(topic, config) {
        Ok(meta) => Ok(Some(meta)),
        // Another client created it meanwhile.
        Err(evident_log::Error::TopicExists(_)) => {
            Ok(broker.log.list_topics().into_iter().find(|t| t.name.as_str() == topic))
        }
        Err(e) => Err(e.into()),
    }
}
