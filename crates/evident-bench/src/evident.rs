//! evident's durable appends: single events with an exact expected version (each writer cycles
//! over its own streams, so there are no conflicts and every append is checked), and batches of
//! 100 or 1,000 events to a new stream, either as events (`append_events`) or as a Kafka record
//! batch (`append_batch`). The log runs with its default configuration: `fsync = always`, so an
//! append is acknowledged only after the `fdatasync` that covers it (group commit shares one
//! sync among concurrent appenders).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use evident_core::batch::BatchBuilder;
use evident_core::partitioner::partition_for_key;
use evident_core::{EventData, ExpectedVersion, RecordBatch, Version};
use evident_log::{Log, LogConfig, LogStats, TopicConfig};

use crate::driver;
use crate::payload;
use crate::report::{Key, Measurement, System};

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 8;
/// Streams each single-event writer cycles over.
const STREAMS_PER_WRITER: usize = 100;

/// Length of every batch workload's stream key (see [`batch_key`]).
const KEY_LEN: usize = 23;

/// The fixed-length key of batch `i` of writer `w` in run `run`.
fn batch_key(run: u64, w: usize, i: u64) -> Vec<u8> {
    let key = format!("r{:03}-w{:03}-b{:012}", run % 1000, w % 1000, i % 1_000_000_000_000);
    debug_assert_eq!(key.len(), KEY_LEN);
    key.into_bytes()
}

/// Where the batch CRC sits, and where the bytes it covers start (Kafka record batch v2).
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// A Kafka record batch encoded once; each use writes a new key (of the same length) into
/// every record and recomputes the batch CRC. Encoding is a producer's work, done on another
/// machine in a real deployment, so it is kept out of the timed loop on this 2-core box.
struct KafkaTemplate {
    bytes: Vec<u8>,
    key_at: Vec<usize>,
}

impl KafkaTemplate {
    fn new(events: &[EventData]) -> Result<Self> {
        let key = vec![b'k'; KEY_LEN];
        let now = payload::now_ms();
        let mut b = BatchBuilder::new();
        for e in events {
            b.push(e.to_record(&key, now));
        }
        let bytes = b.build();
        let mut key_at = Vec::with_capacity(events.len());
        {
            let batch = RecordBatch::parse_exact(&bytes)?;
            let base = bytes.as_ptr() as usize;
            for record in batch.records()? {
                let k = record?.key.context("template record without key")?;
                key_at.push(k.as_ptr() as usize - base);
            }
        }
        Ok(Self { bytes, key_at })
    }

    fn with_key(&mut self, key: &[u8]) -> &[u8] {
        for &at in &self.key_at {
            self.bytes[at..at + KEY_LEN].copy_from_slice(key);
        }
        let crc = crc32c::crc32c(&self.bytes[CRC_FROM..]);
        self.bytes[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
        &self.bytes
    }
}

/// An open log for the write workloads.
pub struct Writes {
    log: Arc<Log>,
    runs: AtomicU64,
}

struct Delta {
    syncs: u64,
    rounds: u64,
    bytes: u64,
}

fn delta(before: LogStats, after: LogStats) -> Delta {
    Delta {
        syncs: after.syncs - before.syncs,
        rounds: after.commit_rounds - before.commit_rounds,
        bytes: after.bytes_written - before.bytes_written,
    }
}

impl Writes {
    /// Opens (creating) a log in `dir` with the default configuration.
    pub fn open(dir: &Path) -> Result<Self> {
        let log = Log::open(dir, LogConfig::default())
            .with_context(|| format!("opening evident log in {}", dir.display()))?;
        log.create_topic(TOPIC, TopicConfig { partitions: PARTITIONS, ..TopicConfig::default() })?;
        Ok(Self { log: Arc::new(log), runs: AtomicU64::new(0) })
    }

    /// Single-event appends from `writers` threads for `duration`.
    pub fn append_single(&self, writers: usize, duration: Duration) -> Result<Measurement> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let log = &self.log;
        let before = log.stats();
        let mut out = driver::run(
            writers,
            duration,
            |w| {
                let keys: Vec<Vec<u8>> =
                    (0..STREAMS_PER_WRITER).map(|s| format!("r{run}-w{w}-s{s}").into_bytes()).collect();
                Ok((keys, vec![None::<u64>; STREAMS_PER_WRITER]))
            },
            |(keys, versions), w, i| {
                let s = i as usize % STREAMS_PER_WRITER;
                let expected = match versions[s] {
                    None => ExpectedVersion::NoStream,
                    Some(v) => ExpectedVersion::Exact(Version(v)),
                };
                let event = payload::event(payload::event_id(w as u64, i));
                let outcome = log.append_events(TOPIC, &keys[s], expected, &[event])?;
                let got = outcome.records[0].version;
                let want = versions[s].map_or(0, |v| v + 1);
                ensure!(got == Some(want), "appended at version {got:?}, expected {want}");
                versions[s] = Some(want);
                Ok(())
            },
        )?;
        let d = delta(before, log.stats());
        let secs = out.elapsed.as_secs_f64();
        let (p50, p99) = out.latencies.p50_p99();
        Ok(Measurement::new(
            System::Evident,
            Key::Append { writers },
            format!("1 event per append, {writers} writer(s)"),
            out.rate(),
            "events/s",
        )
        .latency(p50, p99)
        .mb(d.bytes as f64 / secs / 1e6)
        .note(format!(
            "{:.3} syncs per ack ({} syncs, {} appends); {:.1} appends per commit round",
            d.syncs as f64 / out.ops.max(1) as f64,
            d.syncs,
            out.ops,
            out.ops as f64 / d.rounds.max(1) as f64
        )))
    }

    /// Batches of `size` events, each to a new stream (expected version: no stream), from
    /// `writers` threads for `duration`; `kafka` sends a Kafka record batch through
    /// `append_batch` instead of events through `append_events`.
    pub fn append_batches(&self, size: usize, writers: usize, kafka: bool, duration: Duration) -> Result<Measurement> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let log = &self.log;
        let before = log.stats();
        let mut out = driver::run(
            writers,
            duration,
            |w| {
                // Ids need only be unique within a stream, and every batch is a new stream.
                let events: Vec<EventData> =
                    (0..size).map(|j| payload::event(payload::event_id(w as u64, j as u64))).collect();
                let template = if kafka { Some(KafkaTemplate::new(&events)?) } else { None };
                Ok((events, template))
            },
            |(events, template), w, i| {
                let key = batch_key(run, w, i);
                let outcome = match template {
                    Some(t) => log.append_batch(
                        TOPIC,
                        partition_for_key(&key, PARTITIONS),
                        t.with_key(&key),
                        Some(ExpectedVersion::NoStream),
                    )?,
                    None => log.append_events(TOPIC, &key, ExpectedVersion::NoStream, events)?,
                };
                ensure!(outcome.records.len() == size && !outcome.duplicate);
                Ok(())
            },
        )?;
        let d = delta(before, log.stats());
        let secs = out.elapsed.as_secs_f64();
        let (p50, p99) = out.latencies.p50_p99();
        let how = if kafka { "Kafka batch via append_batch" } else { "append_events" };
        let client = if kafka {
            "; the client only re-keys a pre-encoded batch and recomputes its CRC (encoding is a producer's work, off-box)"
        } else {
            ""
        };
        Ok(Measurement::new(
            System::Evident,
            Key::Batch { size, writers, kafka },
            format!("batches of {size} ({how}), {writers} writer(s)"),
            out.ops as f64 * size as f64 / secs,
            "events/s",
        )
        .latency(p50, p99)
        .mb(d.bytes as f64 / secs / 1e6)
        .note(format!(
            "MB/s = journal bytes; {:.2} syncs per batch; p50/p99 per batch{client}",
            d.syncs as f64 / out.ops.max(1) as f64
        )))
    }

    /// Closes the log (final sync and checkpoint).
    pub fn close(self) -> Result<()> {
        self.log.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rekeyed_template_is_a_valid_batch_with_the_new_key() {
        let events: Vec<EventData> = (0..3).map(|j| payload::event(payload::event_id(0, j))).collect();
        let mut t = KafkaTemplate::new(&events).expect("template");
        let key = batch_key(1, 2, 3);
        assert_eq!(key.len(), KEY_LEN);
        let bytes = t.with_key(&key).to_vec();
        let batch = RecordBatch::parse_exact(&bytes).expect("valid CRC");
        let keys: Vec<_> =
            batch.records().expect("records").map(|r| r.expect("record").key.map(<[u8]>::to_vec)).collect();
        assert_eq!(keys, vec![Some(key.clone()); 3]);
    }
}
