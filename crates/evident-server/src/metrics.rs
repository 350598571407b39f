//! `/metrics`: Prometheus (OpenMetrics text) exposition. The server's own counters live here as
//! atomics; the log's (appends, bytes, syncs, the sync latency histogram) and the groups' lag
//! are read at scrape time by a collector, so nothing is sampled twice or goes stale.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use evident_groups::GroupStore;
use evident_log::{Log, SYNC_LATENCY_BOUNDS_US};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Bounds (seconds) of the HTTP request latency histogram.
const REQUEST_BOUNDS_S: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];
/// Status classes counted separately.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open HTTP connections.
    pub open_connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Open live subscriptions.
    pub open_subscriptions: AtomicI64,
    /// Events appended over HTTP.
    pub http_events_appended: AtomicU64,
    /// Payload bytes appended over HTTP.
    pub http_bytes_appended: AtomicU64,
    /// Responses by status class.
    responses: [AtomicU64; 5],
    /// Request latency histogram (not cumulative; last slot = slower than every bound).
    latency: [AtomicU64; REQUEST_BOUNDS_S.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Counts an append.
    pub fn record_append(&self, events: u64, bytes: u64) {
        self.http_events_appended.fetch_add(events, Ordering::Relaxed);
        self.http_bytes_appended.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record_response(&self, status: u16, elapsed: std::time::Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let s = elapsed.as_secs_f64();
        let slot = REQUEST_BOUNDS_S.iter().position(|&b| s <= b).unwrap_or(REQUEST_BOUNDS_S.len());
        self.latency[slot].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Middleware: counts every response by status class and its latency (for a subscription,
/// the time to the response head).
pub async fn track(metrics: Arc<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.record_response(response.status().as_u16(), started.elapsed());
    response
}

/// Reads everything at scrape time.
#[derive(Debug)]
struct Scrape {
    log: Arc<Log>,
    groups: Arc<GroupStore>,
    metrics: Arc<Metrics>,
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.log.stats();
        let m = &self.metrics;
        counter(
            &mut e,
            "evident_log_appends",
            "Batches appended to the log (retries answered from the index excluded).",
            s.appends,
        )?;
        counter(&mut e, "evident_log_bytes_written", "Journal bytes written.", s.bytes_written)?;
        counter(&mut e, "evident_log_syncs", "fdatasync calls by the commit pipeline.", s.syncs)?;
        counter(
            &mut e,
            "evident_log_commit_rounds",
            "Commit rounds (one write and one sync shared by many appends).",
            s.commit_rounds,
        )?;
        counter(&mut e, "evident_log_checkpoints", "Index checkpoints written.", s.checkpoints)?;
        let per_ack = if s.appends == 0 { 0.0 } else { s.syncs as f64 / s.appends as f64 };
        gauge(
            &mut e,
            "evident_log_syncs_per_append",
            "Syncs per acknowledged append; below 1 when group commit shares syncs.",
            per_ack,
        )?;
        gauge(
            &mut e,
            "evident_log_next_sequence",
            "Next store-wide commit sequence (events committed since the store began).",
            s.next_sequence as f64,
        )?;
        gauge(
            &mut e,
            "evident_log_poisoned",
            "1 when a failed write or sync stopped acknowledgements until restart.",
            f64::from(u8::from(self.log.poisoned().is_some())),
        )?;
        {
            let buckets: Vec<(f64, u64)> = SYNC_LATENCY_BOUNDS_US
                .iter()
                .map(|&b| b as f64 / 1e6)
                .chain(std::iter::once(f64::INFINITY))
                .zip(s.sync_latency_counts)
                .collect();
            let count: u64 = s.sync_latency_counts.iter().sum();
            let mut me = e.encode_descriptor(
                "evident_log_sync_latency_seconds",
                "Latency of the commit rounds' fdatasync.",
                None,
                MetricType::Histogram,
            )?;
            me.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                s.sync_latency_sum_us as f64 / 1e6,
                count,
                &buckets,
                None,
            )?;
        }
        counter(
            &mut e,
            "evident_http_events_appended",
            "Events appended over HTTP.",
            m.http_events_appended.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "evident_http_bytes_appended",
            "Event payload bytes appended over HTTP.",
            m.http_bytes_appended.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "evident_http_open_connections",
            "Open HTTP connections.",
            m.open_connections.load(Ordering::Relaxed) as f64,
        )?;
        counter(
            &mut e,
            "evident_http_connections_accepted",
            "HTTP connections accepted.",
            m.connections_accepted.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "evident_http_open_subscriptions",
            "Open live subscriptions (Server-Sent Events).",
            m.open_subscriptions.load(Ordering::Relaxed) as f64,
        )?;
        {
            let mut me = e.encode_descriptor(
                "evident_http_responses",
                "HTTP responses by status class.",
                None,
                MetricType::Counter,
            )?;
            for (class, n) in CLASSES.iter().zip(&m.responses) {
                let labels = [("class", *class)];
                ConstCounter::new(n.load(Ordering::Relaxed)).encode(me.encode_family(&labels)?)?;
            }
        }
        {
            let counts: Vec<u64> = m.latency.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            let buckets: Vec<(f64, u64)> = REQUEST_BOUNDS_S
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(counts.iter().copied())
                .collect();
            let mut me = e.encode_descriptor(
                "evident_http_request_duration_seconds",
                "HTTP request latency to the response head.",
                None,
                MetricType::Histogram,
            )?;
            me.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                counts.iter().sum(),
                &buckets,
                None,
            )?;
        }
        {
            let mut me = e.encode_descriptor(
                "evident_group_lag",
                "Total lag of a consumer group (records behind the high watermarks).",
                None,
                MetricType::Gauge,
            )?;
            for summary in self.groups.list() {
                if let Ok(d) = self.groups.describe(&summary.group) {
                    let labels = [("group", summary.group.as_str())];
                    ConstGauge::new(d.total_lag as i64).encode(me.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// Renders the exposition text.
pub fn render(log: Arc<Log>, groups: Arc<GroupStore>, metrics: Arc<Metrics>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { log, groups, metrics }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
