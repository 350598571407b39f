//! Produce: each partition's record batch is appended to the log, and acknowledged only after
//! the fsync that covers it, whatever `acks` says (`acks=1` and `acks=all` mean the same on a
//! single durable node; `acks=0` gets no response, as in Kafka). The partitions of one request
//! are appended concurrently, so they share the log's group commit. The log applies evident's
//! extensions from the record headers: `evident-expected-version`, `ce_id` idempotence and the
//! key-partition guard; the idempotent producer's duplicates are answered with the original
//! offsets.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, Deferred, ErrorCodes};
use crate::error::KafkaError;
use crate::{records, topics};

/// A partition's refusal, as the response carries it. Every refused write is logged here at
/// info with its reason (the message names the stream and its version where that applies), as
/// the HTTP API logs its refused writes: an operator can see why a producer's batch failed
/// without capturing traffic.
fn partition_error(topic: &str, index: i32, e: &KafkaError) -> PartitionProduceResponse {
    tracing::info!(topic, partition = index, code = ?e.code, reason = %e.message, "produce refused");
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code.code())
        .with_base_offset(-1)
        .with_log_start_offset(-1)
        .with_log_append_time_ms(-1)
        .with_error_message(Some(StrBytes::from_string(e.message.clone())))
}

/// Handles Produce: checks and queues every partition's batch in the log (their offsets are
/// fixed when this returns, in request order), and returns the response to come, once their
/// sync returns (none for `acks=0`).
pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Deferred<ProduceResponse> {
    let acks = req.acks;
    if req.transactional_id.is_some() {
        let e = KafkaError::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            "evident: transactions are not supported yet",
        );
        let responses: Vec<TopicProduceResponse> = req
            .topic_data
            .into_iter()
            .map(|t| {
                let parts = t.partition_data.iter().map(|p| partition_error(&t.name, p.index, &e)).collect();
                TopicProduceResponse::default().with_name(t.name).with_partition_responses(parts)
            })
            .collect();
        return Deferred(Box::pin(async move { (acks != 0).then(|| ProduceResponse::default().with_responses(responses)) }));
    }
    let max = ctx.broker.config.decompressed_max_bytes;
    // Queue every partition's append concurrently (they share the next group commit).
    let mut queued = Vec::new();
    for t in req.topic_data {
        let topic = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partition_data {
            ctx.broker.metrics.produced(p.records.as_ref().map_or(0, |r| r.len()));
            let index = p.index;
            let log = ctx.broker.log.clone();
            let topic = topic.clone();
            parts.push((
                index,
                tokio::task::spawn_blocking(move || -> Result<evident_log::PendingAppend, KafkaError> {
                    if topics::is_internal(&topic) {
                        return Err(KafkaError::new(
                            ResponseError::InvalidTopicException,
                            format!("evident: topic {topic} is internal and written only by evident"),
                        ));
                    }
                    let partition = u32::try_from(index).map_err(|_| {
                        KafkaError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("evident: partition {index} does not exist"),
                        )
                    })?;
                    let bytes = p.records.ok_or_else(|| {
                        KafkaError::new(ResponseError::InvalidRecord, "evident: the partition's records are null")
                    })?;
                    let stored = records::to_stored(&bytes, max)?;
                    Ok(log.append_batch_deferred(&topic, partition, &stored, None)?)
                }),
            ));
        }
        queued.push((t.name, parts));
    }
    let mut pending = Vec::with_capacity(queued.len());
    for (name, parts) in queued {
        let mut out = Vec::with_capacity(parts.len());
        for (index, task) in parts {
            let result = task.await.unwrap_or_else(|e| {
                Err(KafkaError::new(ResponseError::UnknownServerError, format!("evident: append task failed: {e}")))
            });
            out.push((index, result));
        }
        pending.push((name, out));
    }
    Deferred(Box::pin(async move {
        // Waiting for the sync blocks a thread: off the async workers.
        let responses = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .map(|(name, parts)| {
                    let out = parts
                        .into_iter()
                        .map(|(index, result)| match result.and_then(|p| p.wait().map_err(KafkaError::from)) {
                            Ok(outcome) => PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(outcome.base_offset as i64)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(0),
                            Err(e) => partition_error(&name, index, &e),
                        })
                        .collect();
                    TopicProduceResponse::default().with_name(name).with_partition_responses(out)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }))
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.responses {
            t.partition_responses.iter().for_each(|p| each(p.error_code));
        }
    }
}
