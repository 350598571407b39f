//! `evident serve`: opens the embedded log, the consumer-group store and the schema registry,
//! binds the HTTP API, the schema registry's API and the Kafka listener, and runs until SIGINT
//! or SIGTERM. Shutdown stops accepting connections, ends live subscriptions,
//! lets in-flight requests (appends among them) finish within a budget, then closes the log,
//! which syncs what it holds, and exits 0.
//!
//! Start-up failures (an address in use, an unwritable or locked data directory, a corrupted
//! log) stop with one message naming the cause and a non-zero exit, before anything listens.

mod cluster;
mod config;
mod connections;
mod notifier;
mod payloads;
mod requests;
mod workers;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use evident_groups::GroupStore;
use evident_kafka::{Broker, KafkaServer};
use evident_log::clock::SystemClock;
use evident_log::{Log, LogConfig};
use evident_registry::RegistryStore;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

pub use config::ServeArgs;
use config::{ServeConfig, Storage};

use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::registry::{self, RegistryState};

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Quiet by default: warnings and errors only; RUST_LOG=info (or evident_server=debug, ...)
    // shows more.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: a log file or a supervisor's pipe
        // gets plain text that grep and log shippers read as written.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = ServeConfig::resolve(args)?;

    // Bind first: a port in use is the most common start-up mistake, and finding it before
    // replaying the log answers at once.
    let listener = std::net::TcpListener::bind(config.http_addr)
        .with_context(|| format!("cannot listen on {} (HTTP API)", config.http_addr))?;
    listener.set_nonblocking(true).context("configuring the HTTP socket")?;
    if let Storage::Kafka { bootstrap, node_url, ownership_group, topic_prefix } = config.storage.clone() {
        let storage = cluster::ClusterStorage { bootstrap, node_url, ownership_group, topic_prefix };
        return cluster::run(config, storage, listener);
    }
    let http_addr = listener.local_addr().context("reading the HTTP socket address")?;
    let kafka_listener = std::net::TcpListener::bind(config.kafka.addr)
        .with_context(|| format!("cannot listen on {} (Kafka protocol)", config.kafka.addr))?;
    kafka_listener.set_nonblocking(true).context("configuring the Kafka socket")?;
    let kafka_addr = kafka_listener.local_addr().context("reading the Kafka socket address")?;
    let registry_listener = match config.registry_addr {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} (schema registry)"))?;
            listener.set_nonblocking(true).context("configuring the schema registry socket")?;
            Some(listener)
        }
        None => None,
    };
    let registry_addr = match &registry_listener {
        Some(l) => Some(l.local_addr().context("reading the schema registry socket address")?),
        None => None,
    };

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let log_config = LogConfig { fsync: config.fsync, ..LogConfig::default() };
    let log = Arc::new(
        Log::open(&config.data_dir, log_config)
            .with_context(|| format!("cannot open the log in {}", config.data_dir.display()))?,
    );
    let report = log.recovery_report().clone();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        replayed_frames = report.replay.frames,
        took_ms = report.duration.as_millis() as u64,
        "log opened"
    );
    let clock: Arc<dyn evident_log::clock::Clock> = Arc::new(SystemClock);
    let groups = Arc::new(GroupStore::open(log.clone(), clock.clone()).context("cannot load consumer groups")?);
    let schemas = Arc::new(RegistryStore::open(log.clone()).context("cannot load the schema registry")?);
    // Replays `__transaction_state` and finishes the transactions a crash left decided.
    let transactions = Arc::new(
        evident_kafka::transactions::Transactions::open(log.clone(), groups.clone(), clock.clone())
            .map_err(|why| anyhow::anyhow!(why))
            .context("cannot load the transaction coordinator")?,
    );

    // Starts every SQL view; each catches up from its topic's last position in the background.
    // Events in Confluent's wire format are read through the registry.
    let decoder = Arc::new(payloads::RegistryPayloads(schemas.clone() as Arc<dyn evident_registry::SchemaSource>));
    let sql = evident_sql::Engine::open_with(log.clone(), Some(decoder)).context("cannot load the SQL views")?;

    let threads = Arc::new(workers::ConnectionThreads::start(config.http_threads)?);
    let runtime = runtime()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let notifier = notifier::Notifier::start(log.clone());
    let metrics = Arc::new(Metrics::default());
    let broker = Arc::new(
        Broker::new(
            log.clone(),
            groups.clone(),
            config.kafka.clone(),
            notifier.subscribe(),
            shutdown_rx.clone(),
            clock,
            kafka_addr.port(),
        )
        .with_metrics(metrics.kafka.clone())
        .with_schemas(Some(schemas.clone() as Arc<dyn evident_registry::SchemaSource>))
        .with_transactions(transactions.clone()),
    );
    // Transactions open longer than their timeout are aborted (their producer fenced), checked
    // every second, as Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    // (10 s by default) does.
    {
        let (transactions, mut stop) = (transactions.clone(), shutdown_rx.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let t = transactions.clone();
                let _ = tokio::task::spawn_blocking(move || t.abort_expired()).await;
            }
        });
    }
    let state = app_state(&config, log.clone(), Some(groups), metrics.clone(), notifier.subscribe(), shutdown_rx)
        .with_schemas(Some(schemas.clone() as Arc<dyn evident_registry::SchemaSource>))
        .with_sql(Some(sql.clone()));
    // Install the signal handlers before announcing the address: a supervisor (or a test) may
    // signal as soon as it reads the line, and an uninstalled handler means the default action,
    // death without closing the log.
    let signals = {
        let _entered = runtime.enter();
        Signals::install()?
    };
    println!("evident {}: data in {}, fsync {}", env!("CARGO_PKG_VERSION"), config.data_dir.display(), config.fsync);
    if let Some(file) = &config.config_file {
        println!("evident: configuration from {}", file.display());
    }
    println!("evident: HTTP API listening on http://{http_addr}");
    // Between the HTTP and the Kafka lines: whoever waits for the Kafka line (the test
    // harness) has seen this one by then.
    match registry_addr {
        Some(addr) => println!("evident: schema registry listening on http://{addr}"),
        None => println!("evident: schema registry disabled"),
    }
    println!("evident: Kafka protocol listening on {kafka_addr}");

    let accept_threads = threads.clone();
    // `?verify=stored` reads the log the rest of the server shares.
    let verify_log = log.clone();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("registering the HTTP socket")?;
        let kafka_listener =
            tokio::net::TcpListener::from_std(kafka_listener).context("registering the Kafka socket")?;
        let kafka = tokio::spawn(KafkaServer::new(kafka_listener, broker).run());
        let limits = config.http_limits;
        let gate = requests::Gate::new(limits);
        let registry_gate = gate.clone();
        let app = http::router(state)
            .layer(axum::middleware::from_fn(move |req, next| requests::guard(gate.clone(), req, next)));
        let (signal_tx, signal_rx) = watch::channel(false);
        // The registry's listener has the HTTP API's limits (connections, slow clients, the
        // body budget it shares with it) and its connection threads.
        let registry = match registry_listener {
            Some(listener) => {
                let listener =
                    tokio::net::TcpListener::from_std(listener).context("registering the schema registry socket")?;
                let verifier = Arc::new(registry::StoredEvents::new(verify_log, schemas.clone()));
                let app =
                    registry::router(RegistryState::new(schemas, config.http_body_max_bytes).with_verifier(verifier))
                        .layer(axum::middleware::from_fn(move |req, next| {
                            requests::guard(registry_gate.clone(), req, next)
                        }));
                Some(tokio::spawn(connections::serve(
                    listener,
                    app,
                    limits,
                    metrics.clone(),
                    accept_threads.clone(),
                    signal_rx.clone(),
                )))
            }
            None => None,
        };
        let server = tokio::spawn(connections::serve(listener, app, limits, metrics, accept_threads, signal_rx));
        signals.wait().await;
        println!("evident: shutting down");
        // Live subscriptions never end on their own: tell them first, then stop accepting and
        // let in-flight requests finish.
        let _ = shutdown_tx.send(true);
        let _ = signal_tx.send(true);
        let _ = kafka.await;
        match tokio::time::timeout(Duration::from_millis(config.shutdown_timeout_ms), server).await {
            Ok(joined) => joined.context("HTTP server task")?,
            Err(_) => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
        }
        if let Some(registry) = registry {
            match tokio::time::timeout(Duration::from_millis(config.shutdown_timeout_ms), registry).await {
                Ok(joined) => joined.context("schema registry server task")?,
                Err(_) => tracing::warn!("in-flight registry requests did not finish within the shutdown timeout"),
            }
        }
        anyhow::Ok(())
    });
    // Appends still running in blocking threads (after a shutdown timeout) complete or fail
    // against the closed log; nothing is acknowledged without its sync either way.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The connection threads end once the accept loop's handle is gone; the log closes after.
    drop(threads);
    notifier.stop();
    sql.close();
    let closed = log.close().context("closing the log");
    served?;
    closed?;
    println!("evident: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The multi-threaded runtime that accepts connections (and runs the Kafka listener and the
/// blocking pool).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("evident-http")
        .build()
        .context("starting the async runtime")
}

/// The HTTP API's shared state over `log` with the configured limits (both storages).
fn app_state(
    config: &ServeConfig,
    log: Arc<Log>,
    groups: Option<Arc<GroupStore>>,
    metrics: Arc<Metrics>,
    commits: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) -> AppState {
    AppState::new(log, groups, metrics, commits, shutdown, config.http_body_max_bytes)
        .with_subscriptions_max(config.http_limits.subscriptions_max)
        .with_response_budget(config.http_limits.response_max_bytes, config.http_limits.responses_max_bytes)
}

/// SIGTERM and SIGINT, installed once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (needs a runtime context).
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Waits for either.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
