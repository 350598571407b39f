//! Fetch: stored batches served as they are (no re-encoding), from the batch holding the
//! requested offset (clients skip the records before it, as with Kafka), within the request's
//! and each partition's byte limits, at least one batch per partition so progress never stalls
//! on a large batch. Long poll: while fewer than `min_bytes` are available the request waits,
//! up to `max_wait_ms`, woken by each commit.
//!
//! Every read is charged to the broker-wide fetch budget (`fetch_buffered_max_bytes`): it takes
//! what is free, up to the request's `max_bytes`, and keeps the charge for the bytes it read
//! until the response is written (`handler::Budgeted`). When nothing is free, the response
//! carries the first batch only (uncharged: Kafka's rule that a consumer always progresses), so
//! memory is bounded by the budget plus one batch per fetching connection, however many
//! consumers ask for 2 GiB. A long poll that waits returns its charge first.

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use evident_core::RecordBatch;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::handler::{Budgeted, Ctx, ErrorCodes};
use crate::error::KafkaError;

/// Cap on what one request may ask us to hold, whatever `max_bytes` says.
const RESPONSE_MAX_BYTES: usize = 64 << 20;

struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

fn read_all(
    log: &evident_log::Log,
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, usize) {
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
                // A read_committed consumer gets nothing from the last stable offset on (the
                // first record of the oldest open transaction): a stable offset is a batch's
                // first offset, so whole batches are kept or cut.
                let base_offset = RecordBatch::peek_header(b).map_or(i64::MAX, |h| h.base_offset);
                if read_committed && base_offset >= read.last_stable_offset as i64 {
                    break;
                }
                records.put_slice(b);
            }
            total += records.len();
            // Kafka lists the aborted transactions in the range for read_committed fetches
            // only (null otherwise); consumers drop their records and skip the markers.
            let aborted = read_committed.then(|| {
                read.aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset as i64)
                    })
                    .collect()
            });
            Ok(base
                .clone()
                .with_high_watermark(read.high_watermark as i64)
                .with_last_stable_offset(read.last_stable_offset as i64)
                .with_log_start_offset(read.log_start_offset as i64)
                .with_aborted_transactions(aborted)
                .with_records(Some(records.freeze())))
        })();
        // A partition error carries an empty record set, not a null one, as Kafka encodes it
        // (`MemoryRecords.EMPTY`): librdkafka cannot parse a null set, so it never sees the
        // error and `auto.offset.reset` never runs on OFFSET_OUT_OF_RANGE.
        out.push(result.unwrap_or_else(|e| {
            base.with_error_code(e.code.code())
                .with_high_watermark(-1)
                .with_log_start_offset(-1)
                .with_records(Some(bytes::Bytes::new()))
        }));
    }
    (out, total)
}

/// Takes up to `want` bytes of the fetch budget, whatever is free (nothing when none is).
fn take_budget(budget: &Arc<Semaphore>, want: usize) -> Option<OwnedSemaphorePermit> {
    let free = budget.available_permits().min(want);
    let free = u32::try_from(free).unwrap_or(u32::MAX);
    if free == 0 {
        return None;
    }
    // Another fetch may take some between the look and the take: then serve the first batch.
    budget.clone().try_acquire_many_owned(free).ok()
}

/// Keeps `charge` only for the `used` bytes, returning the rest to the budget.
fn keep_only(mut charge: Option<OwnedSemaphorePermit>, used: usize) -> Option<OwnedSemaphorePermit> {
    let held = charge.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    if used == 0 {
        return None;
    }
    if used < held {
        if let Some(c) = charge.as_mut() {
            drop(c.split(held - used));
        }
    }
    charge
}

/// Handles Fetch.
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> Budgeted<FetchResponse> {
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
    // Kafka's isolation levels: 0 read_uncommitted, 1 read_committed (Fetch v4 on).
    let read_committed = req.isolation_level == 1;
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(60_000));
    let wanted = std::sync::Arc::new(wanted);
    let mut commits = ctx.broker.commits.clone();
    let mut shutdown = ctx.broker.shutdown.clone();
    let (partitions, charge) = loop {
        commits.borrow_and_update();
        let charge = take_budget(&ctx.broker.fetch_bytes, max_bytes);
        // With no budget, a limit of one byte still serves the first batch.
        let granted = charge.as_ref().map_or(1, |c| c.num_permits().max(1));
        let (log, w) = (ctx.broker.log.clone(), wanted.clone());
        let (partitions, total) =
            tokio::task::spawn_blocking(move || read_all(&log, &w, granted, read_committed)).await.unwrap_or_default();
        let errored = partitions.iter().any(|p| p.error_code != 0);
        if total >= min_bytes.max(1) || min_bytes == 0 || errored || tokio::time::Instant::now() >= deadline {
            break (partitions, keep_only(charge, total));
        }
        drop(charge);
        tokio::select! {
            changed = commits.changed() => { if changed.is_err() { break (partitions, None); } }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => break (partitions, None),
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
    Budgeted { response: FetchResponse::default().with_responses(responses), charge }
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.responses {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
