//! `/metrics`: OpenMetrics text exposition (`prometheus-client`'s encoder, which writes
//! `# EOF`, `_total` counters and `le="+Inf"` buckets). The server's own counters live here as
//! atomics; the log's (appends, bytes, syncs, the sync latency histogram), the Kafka listener's
//! (owned by `evident-kafka`: requests by API, errors by code, produce and fetch bytes,
//! connections) and the groups' lag (per group and per partition) are read at scrape time by a
//! collector, so nothing is sampled twice or goes stale.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use evident_groups::GroupStore;
use evident_kafka::connections::Cap;
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
/// The connection caps, as the `cap` label names them.
const CAPS: [(Cap, &str); 2] = [(Cap::Listener, "listener"), (Cap::Address, "address")];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open HTTP connections.
    pub open_connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Connections refused because every connection in the cap's scope was busy, by cap
    /// ([`CAPS`] order).
    connections_refused: [AtomicU64; 2],
    /// Idle connections closed to admit a newcomer, by cap ([`CAPS`] order).
    connections_evicted: [AtomicU64; 2],
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
    /// The Kafka listener's counters (it counts; this module only reads them).
    pub kafka: Arc<evident_kafka::KafkaMetrics>,
}

impl Metrics {
    /// Counts a connection refused at `cap` (every connection in its scope busy).
    pub fn connection_refused(&self, cap: Cap) {
        self.connections_refused[Self::cap_index(cap)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an idle connection closed at `cap` to admit a newcomer.
    pub fn connection_evicted(&self, cap: Cap) {
        self.connections_evicted[Self::cap_index(cap)].fetch_add(1, Ordering::Relaxed);
    }

    /// The cap's place in [`CAPS`].
    fn cap_index(cap: Cap) -> usize {
        match cap {
            Cap::Listener => 0,
            Cap::Address => 1,
        }
    }

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
    groups: Option<Arc<GroupStore>>,
    metrics: Arc<Metrics>,
    sql: Option<Arc<evident_sql::Engine>>,
    cluster: Option<Arc<crate::http::cluster::Cluster>>,
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
        counter(
            &mut e,
            "evident_log_checkpoint_failures",
            "Background index checkpoints that failed to be written (retried with backoff; the log keeps serving).",
            s.checkpoint_failures,
        )?;
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
        let health = self.log.health();
        gauge(
            &mut e,
            "evident_log_degraded",
            "1 when the store serves but a condition needs attention (see /health's reasons: damage found by reads, a failing checkpoint).",
            f64::from(u8::from(health.status == evident_log::HealthStatus::Degraded)),
        )?;
        counter(
            &mut e,
            "evident_log_damaged_reads",
            "Reads refused because they met bytes whose checksum does not match (never served; /health lists where).",
            health.damage.reads,
        )?;
        gauge(
            &mut e,
            "evident_log_damaged_positions",
            "Distinct damaged positions reads have met (the first 16; /health lists them).",
            health.damage.sites.len() as f64,
        )?;
        gauge(
            &mut e,
            "evident_log_recovery_truncated_bytes",
            "Bytes the last start's recovery cut as a torn tail (0: none).",
            health.recovery.truncation.as_ref().map_or(0.0, |t| t.bytes as f64),
        )?;
        {
            let buckets: Vec<(f64, u64)> = SYNC_LATENCY_BOUNDS_US
                .iter()
                .map(|&b| b as f64 / 1e6)
                // The encoder writes `le="+Inf"` for f64::MAX only (f64::INFINITY would be
                // `le="inf"`, which OpenMetrics parsers refuse).
                .chain(std::iter::once(f64::MAX))
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
        for (name, help, counts) in [
            (
                "evident_http_connections_refused",
                "HTTP connections refused (503) because every connection within a cap had a request in flight.",
                &m.connections_refused,
            ),
            (
                "evident_http_connections_evicted",
                "Idle HTTP connections closed to admit a newcomer at a connection cap.",
                &m.connections_evicted,
            ),
        ] {
            let mut me = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((_, cap), n) in CAPS.iter().zip(counts) {
                ConstCounter::new(n.load(Ordering::Relaxed)).encode(me.encode_family(&[("cap", *cap)])?)?;
            }
        }
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
                // The encoder writes `le="+Inf"` for f64::MAX only (f64::INFINITY would be
                // `le="inf"`, which OpenMetrics parsers refuse).
                .chain(std::iter::once(f64::MAX))
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
        self.encode_kafka(&mut e)?;
        self.encode_sql(&mut e)?;
        self.encode_cluster(&mut e)?;
        let described: Vec<_> = match &self.groups {
            Some(groups) => {
                groups.list().into_iter().filter_map(|summary| groups.describe(&summary.group).ok()).collect()
            }
            None => Vec::new(),
        };
        {
            let mut me = e.encode_descriptor(
                "evident_group_lag",
                "Total lag of a consumer group (records behind the high watermarks).",
                None,
                MetricType::Gauge,
            )?;
            for d in &described {
                let labels = [("group", d.group.as_str())];
                ConstGauge::new(d.total_lag as i64).encode(me.encode_family(&labels)?)?;
            }
        }
        {
            let mut me = e.encode_descriptor(
                "evident_group_partition_lag",
                "Lag of a consumer group on one partition (high watermark minus committed offset), for partitions with a commit.",
                None,
                MetricType::Gauge,
            )?;
            for d in &described {
                for row in &d.offsets {
                    let Some(lag) = row.lag else { continue };
                    let partition = row.partition.to_string();
                    let labels =
                        [("group", d.group.as_str()), ("topic", row.topic.as_str()), ("partition", partition.as_str())];
                    ConstGauge::new(lag as i64).encode(me.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl Scrape {
    /// With Kafka storage: this node's ownership, its mirror's lag and its forwarding.
    fn encode_cluster(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(cluster) = &self.cluster else { return Ok(()) };
        let backend = &cluster.backend;
        gauge(
            e,
            "evident_cluster_owned_partitions",
            "Partitions the ownership group assigned to this node.",
            backend.owned_partitions().len() as f64,
        )?;
        gauge(
            e,
            "evident_cluster_held_partitions",
            "Partitions whose transactional id this node holds (it appends to them without taking the id).",
            backend.held_partitions().len() as f64,
        )?;
        counter(
            e,
            "evident_cluster_rebalances",
            "Changes of this node's assignment seen in the ownership group.",
            backend.rebalances(),
        )?;
        gauge(
            e,
            "evident_cluster_mirror_lag_records",
            "Committed records on the cluster not yet in this node's mirror (as of the Kafka client's last statistics).",
            backend.mirror_lag() as f64,
        )?;
        counter(
            e,
            "evident_cluster_mirror_skipped",
            "Records the mirror left out because a plain Kafka producer repeated an event id in a stream.",
            backend.mirror_skipped(),
        )?;
        counter(
            e,
            "evident_cluster_forwarded",
            "Appends this node forwarded to their partition's owner.",
            cluster.forwarded.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "evident_cluster_forward_failures",
            "Forwards that did not reach the owner (the append was made here instead).",
            cluster.forward_failures.load(Ordering::Relaxed),
        )
    }

    /// The SQL views' families, one series per view.
    fn encode_sql(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(sql) = &self.sql else { return Ok(()) };
        let views = sql.statuses();
        type Pick = fn(&evident_sql::ViewStatus) -> f64;
        type Count = fn(&evident_sql::ViewStatus) -> u64;
        let gauges: [(&str, &str, Pick); 4] = [
            (
                "evident_sql_view_position",
                "Commit sequence of the last source event the view applied (-1: none yet).",
                |v| v.position.map_or(-1.0, |p| p as f64),
            ),
            ("evident_sql_view_lag", "Source events the view has not applied yet.", |v| v.lag as f64),
            ("evident_sql_view_rows", "Rows of a table view.", |v| v.rows as f64),
            ("evident_sql_view_failed", "1 when the view stopped on an error (SHOW TABLES has the reason).", |v| {
                f64::from(u8::from(v.status != "running"))
            }),
        ];
        for (name, help, pick) in gauges {
            let mut me = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for v in &views {
                ConstGauge::new(pick(v))
                    .encode(me.encode_family(&[("view", v.name.as_str()), ("kind", v.kind.keyword())])?)?;
            }
        }
        let counters: [(&str, &str, Count); 3] = [
            (
                "evident_sql_view_applied",
                "Source events the view applied since the server started (rate() of it is the view's throughput).",
                |v| v.applied,
            ),
            (
                "evident_sql_view_parked",
                "Source events parked in the view's dead-letter topic since the server started.",
                |v| v.parked,
            ),
            (
                "evident_sql_view_late",
                "Events dropped because their window had closed (windowed tables), since the view started.",
                |v| v.late,
            ),
        ];
        for (name, help, pick) in counters {
            let mut me = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for v in &views {
                ConstCounter::new(pick(v))
                    .encode(me.encode_family(&[("view", v.name.as_str()), ("kind", v.kind.keyword())])?)?;
            }
        }
        Ok(())
    }

    /// The Kafka listener's families.
    fn encode_kafka(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let k = self.metrics.kafka.snapshot();
        {
            let mut me = e.encode_descriptor(
                "evident_kafka_requests",
                "Kafka requests answered, by API.",
                None,
                MetricType::Counter,
            )?;
            for (api, n) in &k.requests {
                ConstCounter::new(*n).encode(me.encode_family(&[("api", api.as_str())])?)?;
            }
        }
        counter(
            e,
            "evident_kafka_requests_refused",
            "Kafka requests refused unread (unknown API, version not served, malformed); each closes its connection.",
            k.requests_refused,
        )?;
        {
            let mut me = e.encode_descriptor(
                "evident_kafka_errors",
                "Error codes sent to Kafka clients, at every level of a response (request, topic, partition).",
                None,
                MetricType::Counter,
            )?;
            for error in &k.errors {
                let code = error.code.map_or_else(|| "other".to_string(), |c| c.to_string());
                let labels = [("code", code.as_str()), ("error", error.name.as_str())];
                ConstCounter::new(error.count).encode(me.encode_family(&labels)?)?;
            }
        }
        counter(e, "evident_kafka_produce_bytes", "Record-batch bytes received in Produce requests.", k.produce_bytes)?;
        counter(e, "evident_kafka_fetch_bytes", "Record-batch bytes sent in Fetch responses.", k.fetch_bytes)?;
        gauge(e, "evident_kafka_open_connections", "Open Kafka connections.", k.connections_open as f64)?;
        counter(e, "evident_kafka_connections_accepted", "Kafka connections accepted.", k.connections_accepted)?;
        counter(
            e,
            "evident_kafka_connections_refused",
            "Kafka connections refused at the connection limit.",
            k.connections_refused,
        )?;
        counter(
            e,
            "evident_kafka_connections_evicted",
            "Kafka connections closed to admit a newcomer at a connection limit (idle ones first).",
            k.connections_evicted,
        )
    }
}

/// Renders the exposition text.
pub fn render(
    log: Arc<Log>,
    groups: Option<Arc<GroupStore>>,
    metrics: Arc<Metrics>,
    sql: Option<Arc<evident_sql::Engine>>,
    cluster: Option<Arc<crate::http::cluster::Cluster>>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { log, groups, metrics, sql, cluster }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The exposition against the OpenMetrics text format: checked here for what the format
    //! requires and Prometheus's parsers rely on (`# EOF`, a `+Inf` bucket in every histogram,
    //! `_total` counters), with the Kafka listener's and the per-partition lag families present;
    //! and, when `EVIDENT_TEST_PYTHON` names an interpreter (CI's `target/kafka-venv`), parsed
    //! by the reference parser of the `prometheus_client` Python package, which refuses
    //! anything invalid.

    use std::sync::Arc;

    use evident_core::BatchBuilder;
    use evident_groups::{GroupStore, OffsetCommit};
    use evident_log::clock::ManualClock;
    use evident_log::{Log, LogConfig, TopicConfig};

    use super::*;

    fn scrape() -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
        log.create_topic("orders", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
        let mut batch = BatchBuilder::new();
        for _ in 0..5 {
            batch.push_parts(None, Some(b"x"), &[], 1_700_000_000_000);
        }
        log.append_batch("orders", 1, &batch.build(), None).expect("append");
        let groups =
            Arc::new(GroupStore::open(log.clone(), Arc::new(ManualClock::new(1_700_000_000_000))).expect("groups"));
        let commit =
            OffsetCommit { topic: "orders".into(), partition: 1, offset: 2, metadata: None, leader_epoch: None };
        groups.commit("billing", &[commit]).expect("commit");
        let metrics = Arc::new(Metrics::default());
        metrics.record_response(200, std::time::Duration::from_millis(3));
        render(log, Some(groups), metrics, None, None).expect("render")
    }

    #[test]
    fn the_exposition_is_openmetrics_with_kafka_and_partition_lag() {
        let text = scrape();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let histograms: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram")).collect();
        assert_eq!(histograms.len(), 2, "{text}");
        for h in histograms {
            assert!(text.contains(&format!("{h}_bucket{{le=\"+Inf\"}} ")), "{h} has no +Inf bucket:\n{text}");
            assert!(text.contains(&format!("{h}_count ")) && text.contains(&format!("{h}_sum ")), "{h}:\n{text}");
        }
        for line in [
            "evident_group_partition_lag{group=\"billing\",topic=\"orders\",partition=\"1\"} 3",
            "evident_group_lag{group=\"billing\"} 3",
            "evident_kafka_requests_total{api=\"Fetch\"} 0",
            "evident_kafka_open_connections 0.0",
            "evident_kafka_produce_bytes_total 0",
            "evident_http_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "evident_log_damaged_reads_total 0",
            "evident_log_degraded 0.0",
            "evident_log_recovery_truncated_bytes 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        let Ok(python) = std::env::var("EVIDENT_TEST_PYTHON") else { return };
        let parse =
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                     n = sum(1 for _ in p(sys.stdin.read()))\nprint(n)";
        let mut child = std::process::Command::new(python)
            .args(["-c", parse])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("parser");
        assert!(
            out.status.success(),
            "the OpenMetrics parser refused it: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let families: usize = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count");
        assert_eq!(families, text.lines().filter(|l| l.starts_with("# TYPE ")).count());
    }
}
