//! Produce: each partition's record batch is appended to the log, and acknowledged only after
//! the fsync that covers it, whatever `acks` says (`acks=1` and `acks=all` mean the same on a
//! single durable node; `acks=0` gets no response, as in Kafka). The partition entries of one
//! request are checked and queued one after another on one blocking task, each passing the
//! cheap checks (topic, partition) before its batch is decompressed within the request's
//! decompression budget ([`records::Budget`]); they are queued without waiting for their sync,
//! so they share the log's group commit. The log applies evident's
//! extensions from the record headers: `evident-expected-version`, `ce_id` idempotence and the
//! key-partition guard; the idempotent producer's duplicates are answered with the original
//! offsets.

use kafka_protocol::error::ResponseError;
use evident_log::PendingAppend;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, Deferred, ErrorCodes};
use crate::error::KafkaError;
use crate::{records, topics};

/// A partition entry's index and its queued append, or why it was refused.
type Queued = (i32, Result<PendingAppend, KafkaError>);

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
    for t in &req.topic_data {
        for p in &t.partition_data {
            ctx.broker.metrics.produced(p.records.as_ref().map_or(0, |r| r.len()));
        }
    }
    // Who gets an answer if the appending task itself fails.
    let shape: Vec<(TopicName, Vec<i32>)> =
        req.topic_data.iter().map(|t| (t.name.clone(), t.partition_data.iter().map(|p| p.index).collect())).collect();
    let log = ctx.broker.log.clone();
    let mut budget = records::Budget::new(ctx.broker.config.decompressed_max_bytes, log.config().batch_size_max);
    // One blocking task appends the entries one after another: the request then holds at most
    // its decompression budget plus the one batch being inflated, whatever its entry count.
    // The appends are deferred (queued, not synced), so the entries still share the next group
    // commit.
    let appended = tokio::task::spawn_blocking(move || {
        req.topic_data
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let parts =
                    t.partition_data.into_iter().map(|p| (p.index, append(&log, &topic, p, &mut budget))).collect();
                (t.name, parts)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let pending: Vec<(TopicName, Vec<Queued>)> = match appended {
        Ok(pending) => pending,
        Err(e) => {
            let e = KafkaError::new(ResponseError::UnknownServerError, format!("evident: append task failed: {e}"));
            shape
                .into_iter()
                .map(|(name, indexes)| (name, indexes.into_iter().map(|i| (i, Err(e.clone()))).collect()))
                .collect()
        }
    };
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

/// Checks one partition entry and queues its batch in the log. The cheap checks come first (the
/// topic is not internal, the partition exists, records are present), so an entry that fails
/// one costs no decompression; only then is the batch inflated, within the request's budget.
/// The topic is looked up again by the append itself: one deleted in between is refused there.
fn append(
    log: &evident_log::Log,
    topic: &str,
    p: PartitionProduceData,
    budget: &mut records::Budget,
) -> Result<PendingAppend, KafkaError> {
    if topics::is_internal(topic) {
        return Err(KafkaError::new(
            ResponseError::InvalidTopicException,
            format!("evident: topic {topic} is internal and written only by evident"),
        ));
    }
    let index = p.index;
    let partition = u32::try_from(index).map_err(|_| {
        KafkaError::new(ResponseError::UnknownTopicOrPartition, format!("evident: partition {index} does not exist"))
    })?;
    // Produce does not create topics: a client learns of a missing one here and creates it
    // through Metadata, where auto-creation happens (as in Kafka).
    log.partition_offsets(topic, partition)?;
    let bytes =
        p.records.ok_or_else(|| KafkaError::new(ResponseError::InvalidRecord, "evident: the partition's records are null"))?;
    let stored = records::to_stored(&bytes, budget)?;
    Ok(log.append_batch_deferred(topic, partition, &stored, None)?)
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.responses {
            t.partition_responses.iter().for_each(|p| each(p.error_code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evident_log::{Log, LogConfig, TopicConfig};

    fn entry(index: i32, batch: &[u8]) -> PartitionProduceData {
        PartitionProduceData::default().with_index(index).with_records(Some(bytes::Bytes::copy_from_slice(batch)))
    }

    fn refusal(result: Result<PendingAppend, KafkaError>) -> KafkaError {
        match result {
            Ok(_) => panic!("the entry was queued, not refused"),
            Err(e) => e,
        }
    }

    /// An entry that fails a cheap check (unknown topic or partition, internal topic, no
    /// records) is refused before its batch is inflated: it costs the request's budget nothing.
    /// Bombs for a real partition spend the budget, and once it is spent the next ones are
    /// refused without inflating.
    #[test]
    fn cheap_checks_come_before_decompression_and_the_budget_is_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("log");
        log.create_topic("t", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
        let bomb = records::tests::zstd_bomb(300 << 10);
        let mut budget = records::Budget::new(700 << 10, 8 << 20);
        let refusals = [
            ("missing", 0, Some(&bomb[..]), ResponseError::UnknownTopicOrPartition),
            ("t", 2, Some(&bomb[..]), ResponseError::UnknownTopicOrPartition),
            ("t", -1, Some(&bomb[..]), ResponseError::UnknownTopicOrPartition),
            ("__consumer_offsets", 0, Some(&bomb[..]), ResponseError::InvalidTopicException),
            ("t", 0, None, ResponseError::InvalidRecord),
        ];
        for (topic, index, batch, code) in refusals {
            let p = match batch {
                Some(b) => entry(index, b),
                None => PartitionProduceData::default().with_index(index).with_records(None),
            };
            let e = refusal(append(&log, topic, p, &mut budget));
            assert_eq!(e.code, code, "{topic}/{index}: {}", e.message);
        }
        assert_eq!(budget.left(), 700 << 10, "the cheap refusals spent budget");
        // Two bombs inflate (and then fail as records: zeros are not records), a third runs
        // the budget out, the fourth is not inflated at all.
        for (n, expected) in [
            (0, ResponseError::CorruptMessage),
            (1, ResponseError::CorruptMessage),
            (2, ResponseError::MessageTooLarge),
            (3, ResponseError::MessageTooLarge),
        ] {
            let e = refusal(append(&log, "t", entry(n % 2, &bomb), &mut budget));
            assert_eq!(e.code, expected, "bomb {n}: {}", e.message);
            if n == 3 {
                assert!(e.message.contains("not decompressed"), "{}", e.message);
            }
        }
        assert_eq!(budget.left(), 0);
    }
}
