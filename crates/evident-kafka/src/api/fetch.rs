//! Fetch: stored batches served as they are (no re-encoding), from the batch holding the
//! requested offset (clients skip the records before it, as with Kafka), within the request's
//! and each partition's byte limits, at least one batch per partition so progress never stalls
//! on a large batch. Long poll: while fewer than `min_bytes` are available the request waits,
//! up to `max_wait_ms`, woken by each commit.

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;

/// Cap on what one request may ask us to hold, whatever `max_bytes` says.
const RESPONSE_MAX_BYTES: usize = 64 << 20;

struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

fn read_all(log: &evident_log::Log, wanted: &[Wanted], max_bytes: usize) -> (Vec<PartitionData>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let base = PartitionData::default().with_partition_index(w.partition).with_last_stable_offset(-1);
        let result = (|| -> Result<PartitionData, KafkaError> {
            let partition = u32::try_from(w.partition)
                .map_err(|_| KafkaError::new(ResponseError::UnknownTopicOrPartition, "negative partition"))?;
            let offset = u64::try_from(w.offset)
                .map_err(|_| KafkaError::new(ResponseError::OffsetOutOfRange, "negative offset"))?;
            // The request's budget runs out across partitions; each still gets at least one
            // batch when it has one and nothing was served yet, as Kafka does.
            let budget = w.max_bytes.min(max_bytes.saturating_sub(total)).max(1);
            let read = log.read_partition(&w.topic, partition, offset, budget)?;
            let mut records = BytesMut::new();
            for b in &read.batches {
                if total > 0 && total + records.len() + b.len() > max_bytes {
                    break;
                }
                records.put_slice(b);
            }
            total += records.len();
            Ok(base
                .clone()
                .with_high_watermark(read.high_watermark as i64)
                .with_last_stable_offset(read.high_watermark as i64)
                .with_log_start_offset(read.log_start_offset as i64)
                .with_records(Some(records.freeze())))
        })();
        out.push(result.unwrap_or_else(|e| {
            base.with_error_code(e.code.code()).with_high_watermark(-1).with_log_start_offset(-1).with_records(None)
        }));
    }
    (out, total)
}

/// Handles Fetch.
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let mut shape: Vec<(kafka_protocol::messages::TopicName, usize)> = Vec::new();
    let mut wanted = Vec::new();
    for t in &req.topics {
        shape.push((t.topic.clone(), t.partitions.len()));
        for p in &t.partitions {
            wanted.push(Wanted {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0).min(RESPONSE_MAX_BYTES),
            });
        }
    }
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0).clamp(1, RESPONSE_MAX_BYTES);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(60_000));
    let wanted = std::sync::Arc::new(wanted);
    let mut commits = ctx.broker.commits.clone();
    let mut shutdown = ctx.broker.shutdown.clone();
    let partitions = loop {
        commits.borrow_and_update();
        let (log, w) = (ctx.broker.log.clone(), wanted.clone());
        let (partitions, total) =
            tokio::task::spawn_blocking(move || read_all(&log, &w, max_bytes)).await.unwrap_or_default();
        let errored = partitions.iter().any(|p| p.error_code != 0);
        if total >= min_bytes.max(1) || min_bytes == 0 || errored || tokio::time::Instant::now() >= deadline {
            break partitions;
        }
        tokio::select! {
            changed = commits.changed() => { if changed.is_err() { break partitions; } }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => break partitions,
        }
    };
    ctx.broker.metrics.fetched(partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum());
    let mut it = partitions.into_iter();
    let responses = shape
        .into_iter()
        .map(|(topic, n)| {
            FetchableTopicResponse::default().with_topic(topic).with_partitions(it.by_ref().take(n).collect())
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.responses {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
