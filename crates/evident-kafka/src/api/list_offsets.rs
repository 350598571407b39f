//! ListOffsets: the earliest offset (-2), the latest (-1, the high watermark), the record with
//! the largest timestamp (-3, MAX_TIMESTAMP, which v7 advertises: KIP-734), or the first offset
//! at or after a timestamp, per partition; a record found by time only below the reader's end
//! (read_committed: the last stable offset). Any other negative timestamp (-4, the earliest local
//! offset of tiered storage, v8+) is not advertised.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Handles ListOffsets.
pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let log = ctx.broker.log.clone();
    let read_committed = req.isolation_level == 1;
    let answer = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let base = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                        let Ok(partition) = u32::try_from(p.partition_index) else {
                            return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        let result = (|| -> Result<(i64, i64), KafkaError> {
                            let offsets = log.partition_offsets(&topic, partition)?;
                            // A record found by time is answered only below the end the reader's
                            // isolation level sees, as Kafka does: under read_committed a record
                            // of an open transaction is not found (-1, -1).
                            let fetchable = if read_committed { offsets.last_stable_offset } else { offsets.high_watermark };
                            let visible = |found: Option<(u64, i64)>| match found {
                                Some((offset, ts)) if offset < fetchable => (ts, offset as i64),
                                _ => (-1, -1),
                            };
                            Ok(match p.timestamp {
                                // A read_committed consumer's end is the last stable offset.
                                LATEST if read_committed => (-1, offsets.last_stable_offset as i64),
                                LATEST => (-1, offsets.high_watermark as i64),
                                EARLIEST => (-1, offsets.log_start_offset as i64),
                                // Kafka answers -1 and -1 for an empty partition.
                                MAX_TIMESTAMP => visible(log.record_with_max_timestamp(&topic, partition)?),
                                // Kafka answers the found record's own timestamp.
                                ts => visible(log.record_at_or_after(&topic, partition, ts)?),
                            })
                        })();
                        match result {
                            Ok((timestamp, offset)) => base.with_timestamp(timestamp).with_offset(offset),
                            Err(e) => base.with_error_code(e.code.code()).with_offset(-1).with_timestamp(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    ListOffsetsResponse::default().with_topics(answer)
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
