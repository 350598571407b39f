//! DeleteRecords: moves each partition's log start offset forward, as `AdminClient.deleteRecords`,
//! `kafka-delete-records.sh` and Kafka Streams (purging its repartition topics) ask. The records
//! below the start are never served again (`Log::delete_records`; the move is durable before the
//! answer). Per partition, as Kafka answers: the offset -1 means the high watermark; any other
//! negative offset, or one past the high watermark, is `OFFSET_OUT_OF_RANGE`; an offset at or
//! below the current start changes nothing and answers the current start; an unknown topic or
//! partition is `UNKNOWN_TOPIC_OR_PARTITION`; an internal topic is `INVALID_TOPIC_EXCEPTION`; a
//! topic whose `cleanup.policy` is `compact` is `POLICY_VIOLATION` (Kafka deletes records only
//! under the `delete` policy). `low_watermark` is the log start afterwards, -1 with an error.
//! The request's `timeout_ms` bounds waiting for replicas in Kafka; evident has none to wait for.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};
use crate::topics;

/// The request's offset that stands for the high watermark.
const HIGH_WATERMARK: i64 = -1;

/// Handles DeleteRecords.
pub async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let log = ctx.broker.log.clone();
    let results = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let compacted = log
                    .list_topics()
                    .into_iter()
                    .find(|m| m.name.as_str() == topic)
                    .is_some_and(|m| m.config.cleanup_policy == evident_log::CleanupPolicy::Compact);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                        let moved = (|| -> Result<u64, KafkaError> {
                            let partition = u32::try_from(p.partition_index).map_err(|_| {
                                KafkaError::new(ResponseError::UnknownTopicOrPartition, "negative partition")
                            })?;
                            if topics::is_internal(&topic) {
                                return Err(KafkaError::new(
                                    ResponseError::InvalidTopicException,
                                    format!("evident: records of internal topic {topic} cannot be deleted"),
                                ));
                            }
                            // Unknown topics and partitions are refused by the log, first.
                            log.partition_offsets(&topic, partition)?;
                            if compacted {
                                return Err(KafkaError::new(
                                    ResponseError::PolicyViolation,
                                    format!("evident: records of {topic}/{partition} cannot be deleted: it is compacted"),
                                ));
                            }
                            let offset = match p.offset {
                                HIGH_WATERMARK => None,
                                o => Some(u64::try_from(o).map_err(|_| {
                                    KafkaError::new(ResponseError::OffsetOutOfRange, format!("negative offset {o}"))
                                })?),
                            };
                            Ok(log.delete_records(&topic, partition, offset)?)
                        })();
                        match moved {
                            Ok(start) => base.with_low_watermark(start as i64),
                            Err(e) => base.with_error_code(e.code.code()).with_low_watermark(-1),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    DeleteRecordsResponse::default().with_topics(results)
}

impl ErrorCodes for DeleteRecordsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
