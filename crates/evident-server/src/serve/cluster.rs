//! `evident serve --storage kafka://HOST:PORT,...`: the HTTP API as a node in front of an
//! Apache Kafka cluster (docs/cluster.md). Kafka stores and replicates; this node keeps its
//! mirror of the cluster in the data directory (the library's `KafkaBackend`), joins the
//! ownership group that shares the partitions among the nodes, and serves the HTTP API
//! (`http::cluster` says how appends, forwarding and reads work). Kafka clients talk to the
//! cluster directly: no Kafka listener here, and no schema registry (Confluent's runs beside
//! Kafka); consumer groups, dead letters and SQL answer `501 not_on_cluster`.
//!
//! Start-up opens the mirror and joins the cluster before announcing anything: a cluster that
//! cannot be reached stops the start with the client's reason, as a bad data directory does.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use evident::{KafkaBackend, KafkaConfig};
use tokio::sync::watch;

use super::config::ServeConfig;
use super::{connections, notifier, requests, workers, Signals};
use crate::http;
use crate::http::cluster::Cluster;
use crate::metrics::Metrics;

/// What `--storage kafka://` names.
pub struct ClusterStorage {
    /// `host:port,...` of the brokers.
    pub bootstrap: String,
    /// The URL other nodes forward to (None: from the HTTP listener's address).
    pub node_url: Option<String>,
    /// The ownership group.
    pub ownership_group: String,
    /// The prefix of the Kafka topics served (empty: none).
    pub topic_prefix: String,
}

/// Serves the HTTP API on `listener` in front of the cluster until a shutdown signal.
pub fn run(config: ServeConfig, storage: ClusterStorage, listener: std::net::TcpListener) -> anyhow::Result<ExitCode> {
    let http_addr = listener.local_addr().context("reading the HTTP socket address")?;
    let node_url = storage.node_url.unwrap_or_else(|| format!("http://{http_addr}"));
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;

    let threads = Arc::new(workers::ConnectionThreads::start(config.http_threads)?);
    let runtime = super::runtime()?;
    let mut kafka = KafkaConfig::new(storage.bootstrap.clone(), config.data_dir.clone());
    kafka.owner_group = Some(storage.ownership_group.clone());
    kafka.node_address = Some(node_url.clone());
    kafka.topic_prefix = storage.topic_prefix.clone();
    let backend = KafkaBackend::open(kafka)
        .with_context(|| format!("cannot open the mirror of the Kafka cluster at {}", storage.bootstrap))?;
    // Every page, stream read and subscription renders the cluster's offsets from the mirror.
    http::render_kafka_offsets();
    let mirror = backend.mirror();
    let cluster = Arc::new(Cluster::new(backend, node_url.clone()).context("starting the forwarding client")?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let notifier = notifier::Notifier::start(mirror.clone());
    let metrics = Arc::new(Metrics::default());
    let state = super::app_state(&config, mirror.clone(), None, metrics.clone(), notifier.subscribe(), shutdown_rx)
        .with_cluster(cluster.clone());
    let signals = {
        let _entered = runtime.enter();
        Signals::install()?
    };
    println!("evident {}: mirror in {}", env!("CARGO_PKG_VERSION"), config.data_dir.display());
    if let Some(file) = &config.config_file {
        println!("evident: configuration from {}", file.display());
    }
    println!("evident: HTTP API listening on http://{http_addr}");
    println!("evident: schema registry disabled");
    println!("evident: node {node_url} of ownership group {}", storage.ownership_group);
    if !storage.topic_prefix.is_empty() {
        println!("evident: serving the cluster's topics named {}*", storage.topic_prefix);
    }
    // The last start-up line (what a supervisor or the test harness waits for).
    println!("evident: storage is the Kafka cluster at {}", storage.bootstrap);

    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("registering the HTTP socket")?;
        let limits = config.http_limits;
        let gate = requests::Gate::new(limits);
        let app = http::router(state)
            .layer(axum::middleware::from_fn(move |req, next| requests::guard(gate.clone(), req, next)));
        let (signal_tx, signal_rx) = watch::channel(false);
        let server = tokio::spawn(connections::serve(listener, app, limits, metrics, threads, signal_rx));
        signals.wait().await;
        println!("evident: shutting down");
        let _ = shutdown_tx.send(true);
        let _ = signal_tx.send(true);
        match tokio::time::timeout(Duration::from_millis(config.shutdown_timeout_ms), server).await {
            Ok(joined) => joined.context("HTTP server task"),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within the shutdown timeout");
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    notifier.stop();
    // Leaves the ownership group now (its partitions move at once, not after the session
    // timeout) and stops the mirror; the mirror log is closed, synced, last.
    drop(cluster);
    let closed = mirror.close().context("closing the mirror");
    served?;
    closed?;
    println!("evident: stopped");
    Ok(ExitCode::SUCCESS)
}
