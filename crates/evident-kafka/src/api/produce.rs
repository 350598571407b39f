//! Produce: each partition's record batch is appended to the log, and acknowledged only after
//! the fsync that covers it, whatever `acks` says (`acks=1` and `acks=all` mean the same on a
//! single durable node; `acks=0` gets no response, as in Kafka). The partition entries of one
//! request are checked and queued one after another on one blocking task, each passing the
//! cheap checks (topic, partition) before its batch is decompressed within the request's
//! decompression budget ([`records::Budget`]) and a reservation from the broker-wide one
//! (`decompressed_total_max_bytes`: [`append_all`]); they are queued without waiting for their sync,
//! so they share the log's group commit. The log applies evident's
//! extensions from the record headers: `evident-expected-version`, `ce_id` idempotence and the
//! key-partition guard; the idempotent producer's duplicates are answered with the original
//! offsets. On a topic with `confluent.{key,value}.schema.validation`, every record's key or
//! value must be data of a schema registered for its subject ([`validate`]); otherwise the
//! partition's batch is refused whole with `INVALID_RECORD` and the failing records in
//! `record_errors`, and nothing of it is stored.

use kafka_protocol::error::ResponseError;
use evident_log::PendingAppend;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
        .with_record_errors(
            e.record_errors
                .iter()
                .map(|(i, m)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*i)
                        .with_batch_index_error_message(Some(StrBytes::from_string(m.clone())))
                })
                .collect(),
        )
}

/// Handles Produce: checks and queues every partition's batch in the log (their offsets are
/// fixed when this returns, in request order), and returns the response to come, once their
/// sync returns (none for `acks=0`).
pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Deferred<ProduceResponse> {
    let acks = req.acks;
    if req.transactional_id.is_some() && ctx.broker.transactions.is_none() {
        let e = crate::transactions::unsupported();
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
    let pending = match append_all(ctx, req).await {
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
                                .with_log_append_time_ms(outcome.log_append_time_ms.unwrap_or(-1))
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

/// Checks and queues every entry of a request, in request order. One blocking task takes the
/// entries one after another: the request then holds at most its decompression budget plus
/// the one batch being inflated, whatever its entry count, and the appends are deferred (queued,
/// not synced), so the entries still share the next group commit. When a compressed batch
/// cannot reserve its inflation from the broker-wide budget, the task stops there and the
/// reservation is awaited here, off the blocking pool (a waiting request must not hold one of
/// its threads: 512 waiting attackers would stall every produce's sync), until half the
/// request's timeout has passed; then a new task resumes at that entry with the reservation.
/// A batch whose reservation does not come in time is answered `REQUEST_TIMED_OUT` (not
/// stored; retriable).
async fn append_all(
    ctx: &Ctx<'_>,
    req: ProduceRequest,
) -> Result<Vec<(TopicName, Vec<Queued>)>, tokio::task::JoinError> {
    let broker = ctx.broker;
    let log = broker.log.clone();
    let shared = broker.decompressed_bytes.clone();
    let total = broker.config.decompressed_total_max_bytes;
    // One batch never inflates past the shared budget, so its reservation can always be met.
    let mut budget =
        records::Budget::new(broker.config.decompressed_max_bytes, log.config().batch_size_max.min(total));
    // Half the request's timeout (the client's own timer started earlier, when it sent the
    // request), so that the answer reaches the client before it gives up on it.
    let timeout = u64::try_from(req.timeout_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map_or(broker.config.request_timeout, std::time::Duration::from_millis)
        .min(broker.config.request_timeout);
    let deadline = tokio::time::Instant::now() + timeout / 2;
    let req_txn = req.transactional_id.as_ref().map(|id| id.to_string());
    let mut grouped: Vec<(TopicName, Vec<Queued>)> = Vec::with_capacity(req.topic_data.len());
    let mut todo: VecDeque<(usize, PartitionProduceData)> = VecDeque::new();
    let mut names = Vec::with_capacity(req.topic_data.len());
    for (t, topic) in req.topic_data.into_iter().enumerate() {
        names.push(topic.name.0.to_string());
        grouped.push((topic.name, Vec::with_capacity(topic.partition_data.len())));
        todo.extend(topic.partition_data.into_iter().map(|p| (t, p)));
    }
    let names = Arc::new(names);
    let mut granted: Option<OwnedSemaphorePermit> = None;
    // A transactional producer's batches are checked against its open transaction.
    let txn: Option<Txn> = match (&req_txn, &broker.transactions) {
        (Some(id), Some(coordinator)) => Some(Arc::new((coordinator.clone(), id.clone()))),
        _ => None,
    };
    loop {
        let (log, names, budget_bytes) = (log.clone(), names.clone(), shared.clone());
        let validation = broker.validation.clone();
        let txn = txn.clone();
        let (done, rest, spent, left_over) = tokio::task::spawn_blocking(move || {
            let mut done = Vec::new();
            while let Some((t, p)) = todo.pop_front() {
                let index = p.index;
                match append(&log, validation.as_deref(), txn.as_deref(), &names[t], p, &mut budget, &budget_bytes, &mut granted) {
                    Step::Done(result) => done.push((t, index, result)),
                    Step::Wait(p) => {
                        todo.push_front((t, p));
                        break;
                    }
                }
            }
            (done, todo, budget, granted)
        })
        .await?;
        for (t, index, result) in done {
            grouped[t].1.push((index, result));
        }
        (todo, budget, granted) = (rest, spent, left_over);
        if todo.is_empty() {
            return Ok(grouped);
        }
        let need = u32::try_from(budget.inflation_max()).unwrap_or(u32::MAX);
        match tokio::time::timeout_at(deadline, shared.clone().acquire_many_owned(need)).await {
            Ok(Ok(permit)) => granted = Some(permit),
            _ => {
                if let Some((t, p)) = todo.pop_front() {
                    let e = KafkaError::new(
                        ResponseError::RequestTimedOut,
                        format!(
                            "evident: not stored: the broker-wide decompression budget ({total} bytes) stayed in use \
                             by other requests for {} ms; retry",
                            (timeout / 2).as_millis()
                        ),
                    );
                    grouped[t].1.push((p.index, Err(e)));
                }
            }
        }
    }
}

/// A transactional producer's coordinator and transactional id.
type Txn = Arc<(Arc<crate::transactions::Transactions>, String)>;

/// What became of one partition entry.
enum Step {
    /// Queued in the log, or refused.
    Done(Result<PendingAppend, KafkaError>),
    /// Its batch is compressed and the broker-wide decompression budget cannot cover its
    /// reservation now: the entry, untouched, to resume once the reservation was awaited.
    Wait(PartitionProduceData),
}

/// Checks one partition entry and queues its batch in the log. The cheap checks come first (the
/// topic is not internal, the partition exists, records are present), so an entry that fails
/// one costs no decompression; only then is the batch inflated, within the request's budget
/// and a reservation from the broker-wide one (`granted`, if one was awaited, else taken now if
/// free). The inflated bytes stay charged to the broker-wide budget until the log has queued
/// them. The topic is looked up again by the append itself: one deleted in between is refused
/// there.
#[allow(clippy::too_many_arguments)] // the entry and what checks and budgets it
fn append(
    log: &evident_log::Log,
    validation: Option<&evident_registry::Validation>,
    txn: Option<&(Arc<crate::transactions::Transactions>, String)>,
    topic: &str,
    p: PartitionProduceData,
    budget: &mut records::Budget,
    shared: &Arc<Semaphore>,
    granted: &mut Option<OwnedSemaphorePermit>,
) -> Step {
    let checked = (|| {
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
        let bytes = p
            .records
            .clone()
            .ok_or_else(|| KafkaError::new(ResponseError::InvalidRecord, "evident: the partition's records are null"))?;
        Ok((partition, bytes))
    })();
    let (partition, bytes) = match checked {
        Ok(checked) => checked,
        Err(e) => return Step::Done(Err(e)),
    };
    let need = budget.inflation_max();
    let mut reserved = None;
    if records::is_compressed(&bytes) && need > 0 {
        let need = u32::try_from(need).unwrap_or(u32::MAX);
        match granted.take().or_else(|| shared.clone().try_acquire_many_owned(need).ok()) {
            Some(permit) => reserved = Some(permit),
            None => return Step::Wait(p),
        }
    }
    let stored = match records::to_stored(&bytes, budget) {
        Ok(stored) => stored,
        Err(e) => return Step::Done(Err(e)),
    };
    // Keep what was inflated; the rest of the reservation goes back at once.
    let _held = reserved.as_mut().and_then(|r| r.split(stored.inflated_len().min(r.num_permits())));
    drop(reserved);
    // A transaction's batch comes only with a transactional id whose open transaction has the
    // partition: one sent otherwise (a hand-built client) would open a transaction in the log
    // that nothing ends, holding the partition's stable offset forever.
    if let Ok(h) = evident_core::RecordBatch::peek_header(&stored) {
        let checked = match txn {
            _ if h.is_control() => Err(KafkaError::new(
                ResponseError::InvalidRecord,
                "evident: control batches (transaction markers) are written by the broker only",
            )),
            None if h.is_transactional() => Err(KafkaError::new(
                ResponseError::TransactionalIdAuthorizationFailed,
                "evident: a transactional batch needs a transactional id and its open transaction",
            )),
            Some((coordinator, id)) if h.is_transactional() => {
                coordinator.check_produce(id, h.producer_id, h.producer_epoch, topic, partition)
            }
            Some((_, id)) => Err(KafkaError::new(
                ResponseError::InvalidTxnState,
                format!("evident: transactional id {id} sent a batch that is not transactional"),
            )),
            None => Ok(()),
        };
        if let Err(e) = checked {
            return Step::Done(Err(e));
        }
    }
    if let Err(e) = validate(log, validation, topic, &stored) {
        return Step::Done(Err(e));
    }
    Step::Done(log.append_batch_deferred(topic, partition, &stored, None).map_err(|e| {
        let guard = matches!(e, evident_log::Error::KeyInOtherPartition { .. });
        let e = KafkaError::from(e);
        if guard {
            warn_key_refusal(topic, &e.message, std::time::Instant::now());
        }
        e
    }))
}

/// Most failing records a refusal lists in `record_errors` (the first ones): bounds the
/// response a batch of bad records makes us write.
const RECORD_ERRORS_MAX: usize = 100;

/// Checks every record of a batch bound for `topic` against the registry, when the topic asks
/// for schema validation: the refusal names the first failing record's subject and reason and
/// lists the failing records by their index in the batch. A batch the log will refuse anyway
/// (not parseable) is left to the log's own refusal.
fn validate(
    log: &evident_log::Log,
    validation: Option<&evident_registry::Validation>,
    topic: &str,
    batch: &[u8],
) -> Result<(), KafkaError> {
    use evident_registry::subject_name::Part;
    let config = log.topic_meta(topic)?.config;
    if !config.value_schema_validation && !config.key_schema_validation {
        return Ok(());
    }
    let refused = |message: String, record_errors: Vec<(i32, String)>| KafkaError {
        code: ResponseError::InvalidRecord,
        message: format!("evident: {message}; nothing of the batch is stored"),
        record_errors,
    };
    let Some(validation) = validation else {
        return Err(refused(
            format!("topic {topic} has schema validation on, and no schema registry runs in this server"),
            Vec::new(),
        ));
    };
    let mut check = validation.batch(topic);
    let mut errors: Vec<(i32, String)> = Vec::new();
    let mut first: Option<String> = None;
    let mut failing = 0usize;
    let mut index = 0i32;
    let mut rest = batch;
    while !rest.is_empty() {
        let Ok((parsed, used)) = evident_core::batch::RecordBatch::parse(rest) else { return Ok(()) };
        rest = &rest[used..];
        let Ok(records) = parsed.validate_records() else { return Ok(()) };
        for record in &records {
            let event_type = record.header(evident_core::envelope::CE_TYPE);
            let mut why = None;
            if config.value_schema_validation && record.header(evident_core::envelope::SCHEMA_ID).is_some() {
                why = Some(format!(
                    "the {} header is set by evident only, on events it validated",
                    evident_core::envelope::SCHEMA_ID
                ));
            }
            for (on, part, strategy, payload) in [
                (config.key_schema_validation, Part::Key, config.key_subject_name_strategy, record.key),
                (config.value_schema_validation, Part::Value, config.value_subject_name_strategy, record.value),
            ] {
                if why.is_some() || !on {
                    continue;
                }
                if let Err(r) = check.check_record(part, strategy.unwrap_or_default(), payload, event_type) {
                    why = Some(format!("{}: {r}", part.as_str()));
                }
            }
            if let Some(why) = why {
                failing += 1;
                if first.is_none() {
                    first = Some(format!("schema validation refused record {index} of the batch: {why}"));
                }
                if errors.len() < RECORD_ERRORS_MAX {
                    errors.push((index, why));
                }
            }
            index = index.saturating_add(1);
        }
    }
    match first {
        None => Ok(()),
        Some(mut message) => {
            if failing > 1 {
                message.push_str(&format!(" (and {} more records)", failing - 1));
            }
            warn_schema_refusal(topic, &message, std::time::Instant::now());
            Err(refused(message, errors))
        }
    }
}

/// Schema refusals reach librdkafka's applications as the bare code (INVALID_RECORD, "Broker
/// failed to validate record"): the subject and the reason are in this warn line, one per topic
/// a minute with the count of refusals it stands for, so a misconfigured producer cannot flood
/// the log.
fn warn_schema_refusal(topic: &str, message: &str, now: std::time::Instant) {
    static LIMITER: std::sync::Mutex<Option<RateLimit>> = std::sync::Mutex::new(None);
    let mut limiter = LIMITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(refusals) = limiter.get_or_insert_with(RateLimit::default).allow(topic, now) {
        tracing::warn!(topic, refusals, "schema validation refused a produce: {message}");
    }
}

/// A producer whose partitioner disagrees with the topic has every keyed batch refused; one warn
/// line per topic a minute (with the count of refusals it stands for) tells the operator which
/// partitioner it uses and the way out, without letting it flood the log. Each refusal is
/// still logged at info by [`partition_error`].
fn warn_key_refusal(topic: &str, message: &str, now: std::time::Instant) {
    static LIMITER: std::sync::Mutex<Option<RateLimit>> = std::sync::Mutex::new(None);
    let mut limiter = LIMITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(refusals) = limiter.get_or_insert_with(RateLimit::default).allow(topic, now) {
        tracing::warn!(topic, refusals, "key-partition guard refused a produce: {message}");
    }
}

/// Per-topic rate limit of a warning: the first event in a window passes, with the number of
/// events it stands for (itself and those held back since the last one that passed).
#[derive(Default)]
struct RateLimit {
    topics: std::collections::HashMap<String, (std::time::Instant, u64)>,
}

impl RateLimit {
    /// One line per topic per window.
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
    /// Topics remembered at most: past it, those outside the window are forgotten (they would
    /// pass anyway), so a client cycling through topic names cannot grow the map unbounded.
    const TOPICS_MAX: usize = 1024;

    fn allow(&mut self, topic: &str, now: std::time::Instant) -> Option<u64> {
        if let Some((since, held)) = self.topics.get_mut(topic) {
            *held += 1;
            if now.duration_since(*since) < Self::WINDOW {
                return None;
            }
            let refusals = *held;
            *since = now;
            *held = 0;
            return Some(refusals);
        }
        if self.topics.len() >= Self::TOPICS_MAX {
            self.topics.retain(|_, (since, _)| now.duration_since(*since) < Self::WINDOW);
            if self.topics.len() >= Self::TOPICS_MAX {
                return None;
            }
        }
        self.topics.insert(topic.to_string(), (now, 0));
        Some(1)
    }
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

    fn refusal(step: Step) -> KafkaError {
        match step {
            Step::Done(Ok(_)) => panic!("the entry was queued, not refused"),
            Step::Done(Err(e)) => e,
            Step::Wait(_) => panic!("the entry waits for the shared budget"),
        }
    }

    /// The first refusal on a topic is warned at once; the next ones within the minute are
    /// held back and counted into the next line; topics are limited apart.
    #[test]
    fn key_refusal_warnings_are_rate_limited_per_topic() {
        let t0 = std::time::Instant::now();
        let s = std::time::Duration::from_secs;
        let mut limit = RateLimit::default();
        assert_eq!(limit.allow("a", t0), Some(1));
        assert_eq!(limit.allow("a", t0 + s(1)), None);
        assert_eq!(limit.allow("b", t0 + s(1)), Some(1));
        assert_eq!(limit.allow("a", t0 + s(59)), None);
        assert_eq!(limit.allow("a", t0 + s(60)), Some(3));
        assert_eq!(limit.allow("a", t0 + s(61)), None);
        // A full table forgets the topics whose window has passed, and holds back the rest.
        let mut full = RateLimit::default();
        for i in 0..RateLimit::TOPICS_MAX {
            assert_eq!(full.allow(&format!("t{i}"), t0), Some(1));
        }
        assert_eq!(full.allow("late", t0 + s(1)), None);
        assert_eq!(full.allow("late", t0 + s(60)), Some(1));
        assert_eq!(full.topics.len(), 1);
    }

    fn shared(bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(bytes))
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
            let e = refusal(append(&log, None, None, topic, p, &mut budget, &shared(1 << 30), &mut None));
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
            let e = refusal(append(&log, None, None, "t", entry(n % 2, &bomb), &mut budget, &shared(1 << 30), &mut None));
            assert_eq!(e.code, expected, "bomb {n}: {}", e.message);
            if n == 3 {
                assert!(e.message.contains("not decompressed"), "{}", e.message);
            }
        }
        assert_eq!(budget.left(), 0);
    }

    /// On a topic with value validation, a batch with one record that is not data of a schema
    /// registered for its subject is refused whole (INVALID_RECORD, record_errors naming it);
    /// a batch of valid records is stored; without a registry the topic refuses everything.
    #[test]
    fn schema_validation_refuses_the_whole_batch() {
        use evident_registry::payload::wire;
        use evident_registry::validation::MemorySource;
        use evident_registry::{parse, SchemaId, SchemaType};
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("log");
        let config = TopicConfig { value_schema_validation: true, ..TopicConfig::default() };
        log.create_topic("orders", config).expect("topic");
        let source = MemorySource::default();
        let schema = r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#;
        source.add("orders-value", 1, parse(SchemaType::Json, schema, &[]).expect("schema"));
        source.add("other-value", 2, parse(SchemaType::Json, "{}", &[]).expect("schema"));
        let validation = evident_registry::Validation::new(Arc::new(source));
        let batch = |values: &[Vec<u8>]| {
            let mut b = evident_core::batch::BatchBuilder::new();
            for v in values {
                b.push(evident_core::batch::NewRecord {
                    key: Some(b"k".to_vec()),
                    value: Some(v.clone()),
                    headers: vec![],
                    timestamp_ms: 1_000,
                });
            }
            b.build()
        };
        let good = wire::frame(SchemaId(1), br#"{"n":1}"#);
        let cases = [
            (vec![good.clone(), wire::frame(SchemaId(1), br#"{"n":"one"}"#)], 1, "/n"),
            (vec![b"{\"n\":1}".to_vec(), good.clone()], 0, "magic byte"),
            (vec![good.clone(), good.clone(), wire::frame(SchemaId(2), b"{}")], 2, "not registered under the subject"),
        ];
        let mut budget = records::Budget::new(1 << 20, 8 << 20);
        for (values, bad, reason) in cases {
            let e = refusal(append(&log, Some(&validation), None, "orders", entry(0, &batch(&values)), &mut budget, &shared(1 << 30), &mut None));
            assert_eq!(e.code, ResponseError::InvalidRecord, "{}", e.message);
            assert!(e.message.contains("orders-value") && e.message.contains(reason), "{}", e.message);
            assert_eq!(e.record_errors.len(), 1, "{:?}", e.record_errors);
            assert_eq!(e.record_errors[0].0, bad);
            assert_eq!(partition_error("orders", 0, &e).record_errors[0].batch_index, bad);
        }
        assert_eq!(log.partition_offsets("orders", 0).expect("offsets").high_watermark, 0, "nothing stored");
        match append(&log, Some(&validation), None, "orders", entry(0, &batch(&[good.clone(), good.clone()])), &mut budget, &shared(1 << 30), &mut None) {
            Step::Done(Ok(pending)) => assert_eq!(pending.wait().expect("stored").base_offset, 0),
            _ => panic!("valid records refused"),
        }
        let e = refusal(append(&log, None, None, "orders", entry(0, &batch(&[good])), &mut budget, &shared(1 << 30), &mut None));
        assert!(e.message.contains("no schema registry"), "{}", e.message);
    }

    fn plain(key: &str) -> Vec<u8> {
        let mut b = evident_core::batch::BatchBuilder::new();
        b.push(evident_core::batch::NewRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
            timestamp_ms: 1_000,
        });
        b.build()
    }

    /// A broker over a fresh log with topic `t` (2 partitions) and a broker-wide decompression
    /// budget of `total` bytes.
    fn broker(dir: &std::path::Path, total: usize) -> Arc<crate::broker::Broker> {
        let log = Arc::new(Log::open(dir, LogConfig::default()).expect("log"));
        log.create_topic("t", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
        let clock = Arc::new(evident_log::clock::ManualClock::new(1_700_000_000_000));
        let groups = Arc::new(evident_groups::GroupStore::open(log.clone(), clock.clone()).expect("groups"));
        let (_, commits) = tokio::sync::watch::channel(0);
        let (_, shutdown) = tokio::sync::watch::channel(false);
        let config = crate::config::KafkaConfig { decompressed_total_max_bytes: total, ..Default::default() };
        Arc::new(crate::broker::Broker::new(log, groups, config, commits, shutdown, clock, 9092))
    }

    /// Runs a Produce of `entries` (partition, batch) to topic `t`; the error code and base
    /// offset of each.
    async fn produce(broker: &Arc<crate::broker::Broker>, entries: &[(i32, &[u8])]) -> Vec<(i16, i64)> {
        let header = kafka_protocol::messages::RequestHeader::default();
        let ctx = Ctx { broker, header: &header, peer: "127.0.0.1:1".parse().expect("addr"), version: 3, served: &[] };
        let parts = entries.iter().map(|(i, b)| entry(*i, b)).collect();
        let topic = kafka_protocol::messages::produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(parts);
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![topic]);
        let response = handle(&ctx, req).await.0.await.expect("acks=all answers");
        response.responses[0].partition_responses.iter().map(|p| (p.error_code, p.base_offset)).collect()
    }

    /// A compressed batch whose reservation the broker-wide budget cannot give before half the
    /// request's timeout is answered `REQUEST_TIMED_OUT` and not stored; the uncompressed
    /// entries around it cost the budget nothing and are stored; nothing stays charged.
    #[tokio::test(start_paused = true)]
    async fn a_compressed_batch_without_shared_budget_in_time_is_refused_as_timed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = broker(dir.path(), 1 << 20);
        let taken = broker.decompressed_bytes.clone().acquire_many_owned(1 << 20).await.expect("all of it");
        let zstd = records::tests::zstd_batch();
        let (a, b) = (plain("a"), plain("b"));
        let answers = produce(&broker, &[(0, &a), (0, &zstd), (1, &b)]).await;
        let codes: Vec<i16> = answers.iter().map(|a| a.0).collect();
        assert_eq!(codes, [0, ResponseError::RequestTimedOut.code(), 0]);
        assert_eq!(answers[2].1, 0);
        assert_eq!(broker.log.partition_offsets("t", 0).expect("p0").high_watermark, 1, "only the plain batch was stored");
        drop(taken);
        assert_eq!(broker.decompressed_bytes.available_permits(), 1 << 20, "nothing stays charged");
    }

    /// A compressed batch that finds the budget in use waits for it, and is stored once it is
    /// released; afterwards the whole budget is free again.
    #[tokio::test(start_paused = true)]
    async fn a_compressed_batch_waits_for_the_shared_budget_then_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = broker(dir.path(), 1 << 20);
        let taken = broker.decompressed_bytes.clone().acquire_many_owned(1 << 20).await.expect("all of it");
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            drop(taken);
        });
        let zstd = records::tests::zstd_batch();
        let answers = produce(&broker, &[(0, &zstd)]).await;
        assert_eq!(answers, [(0, 0)]);
        release.await.expect("released");
        assert_eq!(broker.log.partition_offsets("t", 0).expect("p0").high_watermark, 3, "its three records");
        assert_eq!(broker.decompressed_bytes.available_permits(), 1 << 20);
    }

    /// The inflated bytes are charged while the batch is appended and released after; a batch
    /// never reserves more than the whole shared budget, however small.
    #[test]
    fn the_reservation_is_released_once_the_append_is_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("log");
        log.create_topic("t", TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("topic");
        let mut budget = records::Budget::new(64 << 20, 4096);
        let need = budget.inflation_max();
        let shared = shared(need);
        let zstd = records::tests::zstd_batch();
        let held = shared.clone().try_acquire_many_owned(1).expect("one byte");
        match append(&log, None, None, "t", entry(0, &zstd), &mut budget, &shared, &mut None) {
            Step::Wait(_) => {}
            Step::Done(r) => panic!("reserved {need} bytes with one fewer free: {:?}", r.map(|_| ())),
        }
        drop(held);
        match append(&log, None, None, "t", entry(0, &zstd), &mut budget, &shared, &mut None) {
            Step::Done(Ok(pending)) => assert_eq!(pending.wait().expect("stored").base_offset, 0),
            Step::Done(Err(e)) => panic!("{}", e.message),
            Step::Wait(_) => panic!("the whole budget is free"),
        }
        assert_eq!(shared.available_permits(), need);
    }
}
