//! DescribeProducers (v0): the idempotent and transactional producers that wrote into each
//! partition (id, epoch, last sequence, last timestamp, the coordinator epoch of their last
//! marker, and where their open transaction starts), as `kafka-transactions describe-producers`
//! and `find-hanging` ask. An unknown topic or partition is `UNKNOWN_TOPIC_OR_PARTITION`.
//!
//! evident keeps a producer's state for as long as the log lives (Kafka expires it after
//! `producer.id.expiration.ms` without writes), so a long-idle producer is still listed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};

/// Handles DescribeProducers.
pub async fn handle(ctx: &Ctx<'_>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    let producers = u32::try_from(index)
                        .map_err(|_| KafkaError::new(ResponseError::UnknownTopicOrPartition, "negative partition"))
                        .and_then(|p| Ok(ctx.broker.log.partition_producers(t.name.as_str(), p)?));
                    match producers {
                        Ok(producers) => base.with_active_producers(producers.iter().map(state).collect()),
                        Err(e) => base
                            .with_error_code(e.code.code())
                            .with_error_message(Some(StrBytes::from_string(e.message))),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// One producer, in Kafka's terms (-1 where there is nothing to tell).
fn state(p: &evident_log::ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(i32::from(p.epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.current_txn_start_offset.map_or(-1, |o| o as i64))
}

impl ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}
