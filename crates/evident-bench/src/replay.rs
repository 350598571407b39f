//! evident's reads over a one-partition topic of N events (1,000,000 by default): a replay of
//! the whole partition with `read_partition` (the Kafka Fetch path) decoding every record of
//! every batch, a replay with `read_all` (commit order, each event materialised), and reads of
//! one 1,000-event stream whose events are contiguous (appended as one batch) or scattered
//! (one event every ~1,000 in the log, interleaved with ~10,000 other streams).
//!
//! The data set is written with batches of 1,000 records through `append_batch`; the page cache
//! is warm when the reads run (the same holds for the SQL peers, whose tables fit in memory).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use evident_core::batch::BatchBuilder;
use evident_core::RecordBatch;
use evident_log::{Log, LogConfig, StreamReadOptions, TopicConfig};

use crate::payload;
use crate::report::{Key, Measurement, System};
use crate::stats::{median, Latencies};

const TOPIC: &str = "replay";
/// The stream whose events are spread over the whole log.
pub const SCATTERED: &str = "scattered";
/// The stream whose events were appended as one batch.
pub const CONTIG: &str = "contig";
/// Events in each of the two read streams.
pub const STREAM_EVENTS: u64 = 1000;
/// Other streams the filler events rotate over.
pub const FILLER_STREAMS: u64 = 9973;
/// Bytes asked of each `read_partition` call (a large Kafka fetch).
const FETCH_BYTES: usize = 8 << 20;
/// Events per `read_all` page (a catch-up subscription's page).
const PAGE: usize = 10_000;

/// The stream of filler event `g` (0-based over the `events - 1000` filler-or-scattered
/// events), given the stride of the scattered stream. Shared with the SQL peers, so every
/// system holds the same layout.
pub fn stream_of(g: u64, stride: u64) -> String {
    if g.is_multiple_of(stride) && g / stride < STREAM_EVENTS {
        SCATTERED.to_string()
    } else {
        format!("load-{}", g % FILLER_STREAMS)
    }
}

/// Distance between two events of the scattered stream for a data set of `events`.
pub fn stride(events: u64) -> u64 {
    ((events - STREAM_EVENTS) / STREAM_EVENTS).max(1)
}

/// The read data set, open.
pub struct Reads {
    log: Log,
    events: u64,
}

impl Reads {
    /// Creates the data set of `events` events in `dir`; returns it with the load's row.
    pub fn load(dir: &Path, events: u64) -> Result<(Self, Measurement)> {
        ensure!(
            events >= 2 * STREAM_EVENTS && events.is_multiple_of(1000),
            "the read data set needs a multiple of 1,000 events, at least 2,000"
        );
        let log = Log::open(dir, LogConfig::default())
            .with_context(|| format!("opening evident log in {}", dir.display()))?;
        log.create_topic(TOPIC, TopicConfig::default())?;
        let stride = stride(events);
        let filler = events - STREAM_EVENTS;
        let start = Instant::now();
        let now = payload::now_ms();
        let mut g = 0u64;
        while g < filler {
            let mut b = BatchBuilder::new();
            for _ in 0..1000 {
                let key = stream_of(g, stride);
                b.push(payload::record(key.as_bytes(), payload::event_id(0, g), now));
                g += 1;
            }
            log.append_batch(TOPIC, 0, &b.build(), None)?;
        }
        let mut b = BatchBuilder::new();
        for v in 0..STREAM_EVENTS {
            b.push(payload::record(CONTIG.as_bytes(), payload::event_id(1, v), now));
        }
        log.append_batch(TOPIC, 0, &b.build(), Some(evident_core::ExpectedVersion::NoStream))?;
        let secs = start.elapsed().as_secs_f64();
        let stats = log.stats();
        let m = Measurement::new(
            System::Evident,
            Key::Load,
            format!("load {} events (batches of 1,000, fsync always)", crate::report::num(events as f64)),
            events as f64 / secs,
            "events/s",
        )
        .mb(stats.bytes_written as f64 / secs / 1e6)
        .note(format!("{:.1} s; journal {:.0} MB", secs, stats.bytes_written as f64 / 1e6));
        Ok((Self { log, events }, m))
    }

    /// Reads the partition start to end with `read_partition`, decoding every record; returns
    /// the records seen and the bytes read.
    fn scan_partition(&self) -> Result<(u64, u64)> {
        let mut offset = 0u64;
        let mut records = 0u64;
        let mut bytes = 0u64;
        loop {
            let read = self.log.read_partition(TOPIC, 0, offset, FETCH_BYTES)?;
            for batch in &read.batches {
                bytes += batch.len() as u64;
                let parsed = RecordBatch::parse_exact(batch)?;
                let h = *parsed.header();
                let base = h.base_offset as u64;
                for (i, record) in parsed.records()?.enumerate() {
                    let record = record?;
                    if base + (i as u64) < offset {
                        continue; // a fetch may start inside its first batch
                    }
                    black_box((record.key, record.value, record.header_count()));
                    records += 1;
                }
                offset = offset.max(base + h.last_offset_delta as u64 + 1);
            }
            if offset >= read.high_watermark || read.batches.is_empty() {
                break;
            }
        }
        Ok((records, bytes))
    }

    /// Reads everything with `read_all`, page by page; returns the events seen.
    fn scan_all(&self) -> Result<u64> {
        let mut from = 0u64;
        let mut n = 0u64;
        loop {
            let page = self.log.read_all(from, PAGE)?;
            let Some(last) = page.last() else { break };
            from = last.sequence + 1;
            n += page.len() as u64;
            black_box(&page);
        }
        Ok(n)
    }

    /// Replays the partition `repeats` times; the row holds the median rate.
    pub fn replay_partition(&self, repeats: usize) -> Result<Measurement> {
        let mut rates = Vec::new();
        let mut mbs = Vec::new();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let (n, bytes) = self.scan_partition()?;
            let secs = t.elapsed().as_secs_f64();
            ensure!(n == self.events, "read_partition replay saw {n} records of {}", self.events);
            rates.push(n as f64 / secs);
            mbs.push(bytes as f64 / secs / 1e6);
            times.push(secs);
        }
        Ok(Measurement::new(
            System::Evident,
            Key::ScanPartition,
            format!(
                "replay {} events: read_partition ({} MiB fetches) + decode every record",
                crate::report::num(self.events as f64),
                FETCH_BYTES >> 20
            ),
            median(&rates),
            "events/s",
        )
        .mb(median(&mbs))
        .note(format!("median of {repeats}; {:.3} s per replay", median(&times))))
    }

    /// Replays with `read_all` `repeats` times; the row holds the median rate.
    pub fn replay_all(&self, repeats: usize) -> Result<Measurement> {
        let mut rates = Vec::new();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let n = self.scan_all()?;
            let secs = t.elapsed().as_secs_f64();
            ensure!(n == self.events, "read_all replay saw {n} events of {}", self.events);
            rates.push(n as f64 / secs);
            times.push(secs);
        }
        Ok(Measurement::new(
            System::Evident,
            Key::ScanAll,
            format!(
                "replay {} events: read_all, pages of {}",
                crate::report::num(self.events as f64),
                crate::report::num(PAGE as f64)
            ),
            median(&rates),
            "events/s",
        )
        .note(format!(
            "median of {repeats}; {:.3} s per replay; each event materialised with its version",
            median(&times)
        )))
    }

    /// Reads one 1,000-event stream back to back for `duration`.
    pub fn read_stream(&self, scattered: bool, duration: Duration) -> Result<Measurement> {
        let key = if scattered { SCATTERED } else { CONTIG };
        let options = StreamReadOptions { limit: STREAM_EVENTS as usize, ..StreamReadOptions::default() };
        let mut lat = Latencies::with_capacity(1 << 14);
        let start = Instant::now();
        let mut events = 0u64;
        while start.elapsed() < duration || lat.len() < 10 {
            let t = Instant::now();
            let read = self.log.read_stream(TOPIC, key.as_bytes(), &options)?;
            lat.push(t.elapsed());
            ensure!(read.events.len() as u64 == STREAM_EVENTS, "stream {key} has {} events", read.events.len());
            events += read.events.len() as u64;
            black_box(&read);
        }
        let secs = start.elapsed().as_secs_f64();
        let (p50, p99) = lat.p50_p99();
        Ok(Measurement::new(
            System::Evident,
            if scattered { Key::StreamScattered } else { Key::StreamContig },
            format!(
                "read one 1,000-event stream ({}) among {}",
                if scattered { "scattered" } else { "contiguous" },
                crate::report::num(self.events as f64)
            ),
            events as f64 / secs,
            "events/s",
        )
        .latency(p50, p99)
        .note("p50/p99 per stream read (read_stream)"))
    }

    /// Closes the log.
    pub fn close(self) -> Result<()> {
        self.log.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_1000_events_in_the_scattered_stream() {
        for events in [2_000u64, 100_000, 1_000_000] {
            let s = stride(events);
            let n = (0..events - STREAM_EVENTS).filter(|&g| stream_of(g, s) == SCATTERED).count();
            assert_eq!(n as u64, STREAM_EVENTS, "{events}");
        }
    }
}
