//! The HTTP API's cost over the embedded log. The real server (`evident serve`, the binary built
//! next to this one) runs as a child process on 127.0.0.1 with its data on the benchmark's disk
//! and its default durability (`fsync = always`); the same workload runs in process against an
//! embedded log in a sibling directory, back to back, so the ratio HTTP / embedded is the price
//! of the API (HTTP parsing, JSON in and out, the hop to the server's blocking pool) and not of
//! a change in the disk's flush regime.
//!
//! - *Appends*: one event per request (the append benchmark's event: the 216-byte `OrderPlaced`
//!   payload, an id, ~60 bytes of metadata headers), each client on its own stream with the exact
//!   expected version, as an event-sourced application appends; 1 and 64 clients, each a thread
//!   with its own keep-alive connection (a lean blocking HTTP/1.1 client, `http_client.rs`:
//!   `reqwest::blocking` cost the clients as much CPU as the server's append path), the reply
//!   decoded into types. The embedded side appends the very [`EventData`] the server builds
//!   from that JSON.
//! - *Read*: one 1,000-event stream (appended as one batch), read whole with
//!   `GET …/streams/{key}?limit=1000` and decoded on the client with `serde_json` into a
//!   [`serde_json::Value`] tree, against `Log::read_stream` of the same 1,000 events; and the
//!   same read in the streamed format (`Accept: application/x-ndjson`), each line decoded.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use evident_core::{EventData, ExpectedVersion, Version};
use evident_log::{Log, LogConfig, StreamReadOptions, TopicConfig};
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::driver;
use crate::http_client::Connection;
use crate::machine;
use crate::payload;
use crate::report::{dur, num, Key, Measurement, System};
use crate::stats::{median, Latencies};

const TOPIC: &str = "bench";
/// As the embedded append benchmark's topic.
const PARTITIONS: u32 = 8;
/// The stream of the read workload.
const READ_KEY: &str = "read-1000";
/// Events in it.
const READ_EVENTS: usize = 1000;
/// What the server stamps as `ce_source` on an event that names none.
const SERVER_SOURCE: &str = "/evident/http";
/// The append benchmark's metadata, as record headers (the HTTP API reserves `ce_*` headers
/// for the CloudEvents attributes it knows, so the names lose the `ce_` prefix here).
const HEADERS: [(&str, &str); 3] =
    [("causationid", "cmd-42"), ("correlationid", "9b2f6a4e-1c3d-4e5f-8a7b-6c5d4e3f2a1b"), ("userid", "u-42")];
/// The line `evident serve` prints once it listens, followed by the address.
const LISTENING: &str = "evident: HTTP API listening on http://";
/// The line it prints next, once the Kafka listener is bound, followed by `IP:PORT`.
const KAFKA_LISTENING: &str = "evident: Kafka protocol listening on ";
/// The schema registry's line (printed before the Kafka line, which ends the wait).
const REGISTRY_LISTENING: &str = "evident: schema registry listening on http://";
/// How long the server may take to start, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One event as the HTTP API takes it (CloudEvents JSON).
fn event_json(id: &str) -> String {
    let headers: Vec<String> = HEADERS.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
    format!(
        "{{\"type\":\"{}\",\"id\":\"{id}\",\"data\":{},\"headers\":{{{}}}}}",
        payload::EVENT_TYPE,
        payload::DATA,
        headers.join(",")
    )
}

/// An append request body: `events` (JSON texts) at `expected` (None: the stream must not exist).
fn append_body<'a>(expected: Option<u64>, events: impl IntoIterator<Item = &'a str>) -> String {
    let expected = expected.map_or_else(|| "\"no_stream\"".to_string(), |v| v.to_string());
    let events: Vec<&str> = events.into_iter().collect();
    format!("{{\"expected_version\":{expected},\"events\":[{}]}}", events.join(","))
}

/// The event the server builds from [`event_json`]: what the embedded side appends.
fn embedded_event(id: String) -> EventData {
    let mut e = EventData::json(id, payload::EVENT_TYPE, payload::DATA.as_bytes().to_vec());
    e.source = Some(SERVER_SOURCE.into());
    e.extra_headers = HEADERS.iter().map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec()))).collect();
    e
}

fn expected_version(current: Option<u64>) -> ExpectedVersion {
    current.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(Version(v)))
}

/// The `evident` binary built next to this one.
fn server_binary() -> Result<PathBuf> {
    let bin = std::env::current_exe().context("locating evident-bench")?.with_file_name("evident");
    ensure!(
        bin.is_file(),
        "the evident server binary is missing at {} (build it with cargo build --release -p evident-server)",
        bin.display()
    );
    Ok(bin)
}

/// A running `evident serve` (HTTP API and Kafka listener), stopped with SIGTERM when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// The Kafka listener's `127.0.0.1:PORT`.
    pub(crate) kafka: String,
    /// The schema registry's `http://127.0.0.1:PORT` (empty if not announced).
    pub(crate) registry: String,
    /// The server's stdout, line by line (drained by a thread so the pipe never fills).
    stdout: Mutex<Receiver<String>>,
}

impl Server {
    /// Starts `evident serve` with its data in `dir/data` and `dir` as working directory (so no
    /// `evident.toml` of the caller's is read); waits until both listeners are announced.
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, &[])
    }

    /// [`Server::start`] with more flags.
    pub(crate) fn start_with(dir: &Path, flags: &[&str]) -> Result<Self> {
        let bin = server_binary()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"])
            .args(["--fsync", "always"])
            .args(flags)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EVIDENT_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("the server's stdout")?;
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            base: String::new(),
            kafka: String::new(),
            registry: String::new(),
            stdout: Mutex::new(stdout),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let next = server
                .stdout
                .lock()
                .map_err(|_| anyhow::anyhow!("the server's output channel is poisoned"))?
                .recv_timeout(deadline.saturating_duration_since(Instant::now()));
            match next {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(LISTENING) {
                        server.base = format!("http://{}", addr.trim());
                        eprintln!("  {line}");
                    } else if let Some(addr) = line.strip_prefix(REGISTRY_LISTENING) {
                        server.registry = format!("http://{}", addr.trim());
                        eprintln!("  {line}");
                    } else if let Some(addr) = line.strip_prefix(KAFKA_LISTENING) {
                        server.kafka = addr.trim().to_string();
                        eprintln!("  {line}");
                    } else if let Some(bootstrap) = line.strip_prefix(ON_KAFKA_CLUSTER) {
                        // `--storage kafka://`: Kafka clients use the cluster itself.
                        server.kafka = bootstrap.trim().to_string();
                    } else {
                        seen.push(line);
                    }
                    if !server.base.is_empty() && !server.kafka.is_empty() {
                        return Ok(server);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = server.child.as_mut().map(|c| c.wait()).transpose()?;
                    server.child = None;
                    bail!(
                        "evident serve exited before listening ({}); its output: {:?}",
                        status.map_or("?".into(), |s| s.to_string()),
                        seen
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("evident serve did not listen within {} s; its output: {seen:?}", START_TIMEOUT.as_secs())
                }
            }
        }
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for a clean exit (killing the server after [`STOP_TIMEOUT`]).
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).stdout(Stdio::null()).status();
        if !signalled.as_ref().is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("could not send SIGTERM to evident serve (pid {pid}): {signalled:?}; killed it");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "evident serve exited with {status} after SIGTERM");
                // The rest of its output (the drain thread ends at the pipe's end).
                let rx =
                    self.stdout.get_mut().map_err(|_| anyhow::anyhow!("the server's output channel is poisoned"))?;
                let mut out = Vec::new();
                while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
                    out.push(line);
                }
                ensure!(
                    out.iter().any(|l| l == "evident: stopped"),
                    "evident serve exited without its stopped line: {out:?}"
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("evident serve did not stop within {} s of SIGTERM; killed it", STOP_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("  {e:#}");
        }
    }
}

/// The last start-up line of `evident serve --storage kafka://` (no Kafka listener of its own).
const ON_KAFKA_CLUSTER: &str = "evident: storage is the Kafka cluster at ";

/// How long a benchmark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the append benchmark reads of an append's reply (decoded into types, as a client
/// application would; the rest of the reply is skipped).
#[derive(Deserialize)]
struct AppendReply {
    events: Vec<AppendedEvent>,
}

/// One appended event's position in the reply.
#[derive(Deserialize)]
struct AppendedEvent {
    version: Option<u64>,
}

/// A keep-alive client of its own (one connection, reused; no proxy).
fn client() -> Result<Client> {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// Sends `body` to `url`; returns the reply's body, which must come with `want`.
fn post(client: &Client, url: &str, body: String, want: StatusCode) -> Result<impl AsRef<[u8]>> {
    let resp = client.post(url).header(CONTENT_TYPE, "application/json").body(body).send()?;
    let status = resp.status();
    let bytes = resp.bytes()?;
    ensure!(status == want, "POST {url} answered {status}: {}", String::from_utf8_lossy(&bytes));
    Ok(bytes)
}

/// CPU time (user + system, all threads) of the server and of this process (the clients, or
/// the embedded log): used so far, or during a workload.
#[derive(Clone, Copy, Default)]
struct Cpu {
    server: Option<Duration>,
    client: Option<Duration>,
}

impl Cpu {
    fn delta(before: Cpu, after: Cpu) -> Cpu {
        let d = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        Cpu { server: d(before.server, after.server), client: d(before.client, after.client) }
    }

    fn per(t: Option<Duration>, ops: u64) -> String {
        match t {
            Some(t) if ops > 0 => dur(Duration::from_secs_f64(t.as_secs_f64() / ops as f64)),
            _ => "?".into(),
        }
    }

    fn server_per(&self, ops: u64) -> String {
        Self::per(self.server, ops)
    }

    fn client_per(&self, ops: u64) -> String {
        Self::per(self.client, ops)
    }
}

/// A timed workload: what the driver measured, and the CPU it took.
struct Timed {
    out: driver::Outcome,
    cpu: Cpu,
}

impl Timed {
    /// Rounds of one workload as one: operations, time, latencies and CPU added up.
    fn merge(rounds: Vec<Timed>) -> Timed {
        let mut all = Timed {
            out: driver::Outcome { ops: 0, elapsed: Duration::ZERO, latencies: Latencies::default() },
            cpu: Cpu { server: Some(Duration::ZERO), client: Some(Duration::ZERO) },
        };
        for t in rounds {
            all.out.ops += t.out.ops;
            all.out.elapsed += t.out.elapsed;
            all.out.latencies.merge(t.out.latencies);
            let add = |a: Option<Duration>, b: Option<Duration>| Some(a? + b?);
            all.cpu = Cpu { server: add(all.cpu.server, t.cpu.server), client: add(all.cpu.client, t.cpu.client) };
        }
        all
    }
}

/// The server, an embedded log beside it, and the workloads over both.
pub struct Http {
    server: Server,
    log: Log,
    runs: AtomicU64,
}

impl Http {
    /// Starts the server in `dir/server` and opens the embedded log in `dir/embedded`, each
    /// with the benchmark's topic.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, &[])
    }

    /// [`Http::start`] with more server flags.
    fn start_with(dir: &Path, flags: &[&str]) -> Result<Self> {
        let server_dir = dir.join("server");
        std::fs::create_dir_all(&server_dir)?;
        let server = Server::start_with(&server_dir, flags)?;
        let topic = format!("{{\"name\":\"{TOPIC}\",\"partitions\":{PARTITIONS}}}");
        post(&client()?, &format!("{}/v1/topics", server.base), topic, StatusCode::CREATED)?;
        let embedded = dir.join("embedded");
        let log = Log::open(&embedded, LogConfig::default())
            .with_context(|| format!("opening evident log in {}", embedded.display()))?;
        log.create_topic(TOPIC, TopicConfig { partitions: PARTITIONS, ..TopicConfig::default() })?;
        Ok(Self { server, log, runs: AtomicU64::new(0) })
    }

    fn cpu(&self) -> Cpu {
        let pid = self.server.pid();
        Cpu { server: pid.and_then(|p| machine::cpu_time(&p.to_string())), client: machine::cpu_time("self") }
    }

    fn stream_url(&self, key: &str) -> String {
        format!("{}/v1/topics/{TOPIC}/streams/{key}", self.server.base)
    }

    /// Single-event appends in process, `writers` threads each on its own stream.
    fn append_embedded(&self, writers: usize, duration: Duration) -> Result<Timed> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let log = &self.log;
        let before = self.cpu();
        let out = driver::run(
            writers,
            duration,
            |w| Ok((format!("r{run}-c{w}").into_bytes(), None::<u64>)),
            |(key, current), w, i| {
                let event = embedded_event(payload::event_id(w as u64, i));
                let outcome = log.append_events(TOPIC, key, expected_version(*current), &[event])?;
                let want = current.map_or(0, |v| v + 1);
                let got = outcome.records[0].version;
                ensure!(got == Some(want), "appended at version {got:?}, expected {want}");
                *current = Some(want);
                Ok(())
            },
        )?;
        Ok(Timed { out, cpu: Cpu::delta(before, self.cpu()) })
    }

    /// Single-event appends over HTTP, `clients` threads each with its own keep-alive
    /// connection ([`Connection`], a lean blocking client, so the clients' CPU is not what the
    /// benchmark measures) and its own stream.
    fn append_http(&self, clients: usize, duration: Duration) -> Result<Timed> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("/v1/topics/{TOPIC}/streams/");
        let before = self.cpu();
        let out = driver::run(
            clients,
            duration,
            |w| {
                // Open the keep-alive connection before the clock starts.
                let mut conn = Connection::connect(&self.server.base, REQUEST_TIMEOUT)?;
                let health = conn.request("GET", "/health", None)?;
                ensure!(health.status == 200, "GET /health answered {}", health.status);
                Ok((conn, format!("{prefix}r{run}-c{w}"), None::<u64>))
            },
            |(conn, path, current), w, i| {
                let body = append_body(*current, [event_json(&payload::event_id(w as u64, i)).as_str()]);
                let reply = conn.request("POST", path, Some(("application/json", body.as_bytes())))?;
                ensure!(
                    reply.status == 201,
                    "POST {path} answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
                let reply: AppendReply = serde_json::from_slice(&reply.body).context("decoding the append reply")?;
                let want = current.map_or(0, |v| v + 1);
                let got = reply.events.first().and_then(|e| e.version);
                ensure!(got == Some(want), "appended at version {got:?}, expected {want}");
                *current = Some(want);
                Ok(())
            },
        )?;
        Ok(Timed { out, cpu: Cpu::delta(before, self.cpu()) })
    }

    /// Single-event appends with `clients` concurrent writers, in process and over HTTP, in
    /// `rounds` interleaved rounds of `round` each (embedded, HTTP, embedded, ...), so both
    /// sides see the same flush regime. Rows: the embedded figure, the HTTP figure (each over
    /// all its rounds) and the ratio HTTP / embedded (the median of the per-round ratios).
    pub fn appends(&self, clients: usize, rounds: usize, round: Duration) -> Result<Vec<Measurement>> {
        let (mut embedded, mut http) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            embedded.push(self.append_embedded(clients, round)?);
            http.push(self.append_http(clients, round)?);
        }
        let ratios: Vec<f64> = embedded.iter().zip(&http).map(|(e, h)| h.out.rate() / e.out.rate()).collect();
        let list = |v: &[Timed]| v.iter().map(|t| num(t.out.rate())).collect::<Vec<_>>().join(", ");
        let per_round = format!(
            "median of {} rounds of {:.2} s; embedded events/s: {}; HTTP events/s: {}",
            ratios.len(),
            round.as_secs_f64(),
            list(&embedded),
            list(&http)
        );
        let request_bytes = append_body(Some(0), [event_json(&payload::event_id(0, 0)).as_str()]).len();
        let mut embedded = Timed::merge(embedded);
        let mut http = Timed::merge(http);
        let (p50, p99) = embedded.out.latencies.p50_p99();
        let embedded_row = Measurement::new(
            System::Evident,
            Key::HttpAppend { clients },
            format!("1 event per append, {clients} writer(s), in process"),
            embedded.out.rate(),
            "events/s",
        )
        .latency(p50, p99)
        .note(format!(
            "Log::append_events with the exact expected version; one stream per writer; CPU per append {} (all threads)",
            embedded.cpu.client_per(embedded.out.ops)
        ));
        let (p50, p99) = http.out.latencies.p50_p99();
        let http_row = Measurement::new(
            System::EvidentHttp,
            Key::HttpAppend { clients },
            format!("1 event per append, {clients} client(s), POST …/streams/{{key}}"),
            http.out.rate(),
            "events/s",
        )
        .latency(p50, p99)
        .note(format!(
            "exact expected_version, event id; one stream and one keep-alive connection per client; request body {request_bytes} bytes; reply decoded; CPU per append: server {}, clients {}",
            http.cpu.server_per(http.out.ops),
            http.cpu.client_per(http.out.ops)
        ));
        let ratio_row = Measurement::new(
            System::EvidentHttp,
            Key::HttpAppendPaired { clients },
            format!("HTTP / embedded, {clients} client(s), interleaved rounds"),
            median(&ratios),
            "x",
        )
        .note(per_round);
        Ok(vec![embedded_row, http_row, ratio_row])
    }

    /// Appends the read workload's 1,000 events, as one batch, to both stores.
    pub fn load_read_stream(&self) -> Result<()> {
        let ids: Vec<String> = (0..READ_EVENTS as u64).map(|n| payload::event_id(9, n)).collect();
        let events: Vec<EventData> = ids.iter().cloned().map(embedded_event).collect();
        let outcome = self.log.append_events(TOPIC, READ_KEY.as_bytes(), ExpectedVersion::NoStream, &events)?;
        ensure!(outcome.records.len() == READ_EVENTS);
        let json: Vec<String> = ids.iter().map(|id| event_json(id)).collect();
        let body = append_body(None, json.iter().map(String::as_str));
        let reply = post(&client()?, &self.stream_url(READ_KEY), body, StatusCode::CREATED)?;
        let reply: Value = serde_json::from_slice(reply.as_ref())?;
        ensure!(reply["events"].as_array().map(Vec::len) == Some(READ_EVENTS), "the batch append did not append 1,000");
        Ok(())
    }

    /// `Log::read_stream` of the 1,000 events, back to back for `duration`.
    pub fn read_embedded(&self, duration: Duration) -> Result<Measurement> {
        let options = StreamReadOptions { limit: READ_EVENTS, ..StreamReadOptions::default() };
        let mut lat = Latencies::with_capacity(1 << 14);
        let before = self.cpu();
        let start = Instant::now();
        while start.elapsed() < duration || lat.len() < 10 {
            let t = Instant::now();
            let read = self.log.read_stream(TOPIC, READ_KEY.as_bytes(), &options)?;
            lat.push(t.elapsed());
            ensure!(read.events.len() == READ_EVENTS, "the stream has {} events", read.events.len());
            black_box(&read);
        }
        let secs = start.elapsed().as_secs_f64();
        let reads = lat.len() as f64;
        let cpu = Cpu::delta(before, self.cpu()).client_per(lat.len() as u64);
        let (p50, p99) = lat.p50_p99();
        Ok(Measurement::new(
            System::Evident,
            Key::HttpRead,
            "read one 1,000-event stream, in process",
            reads * READ_EVENTS as f64 / secs,
            "events/s",
        )
        .latency(p50, p99)
        .note(format!("{} reads/s; Log::read_stream, limit 1,000; CPU per read {cpu}", num(reads / secs))))
    }

    /// `GET …/streams/{key}?limit=1000`, every reply decoded into JSON trees, back to back for
    /// `duration`: as one JSON page, or (`ndjson`) with `Accept: application/x-ndjson`, one
    /// event per line, each line decoded into its own tree.
    pub fn read_http(&self, duration: Duration, ndjson: bool) -> Result<Measurement> {
        let client = client()?;
        let url = format!("{}?limit={READ_EVENTS}", self.stream_url(READ_KEY));
        let accept = if ndjson { "application/x-ndjson" } else { "application/json" };
        let mut lat = Latencies::with_capacity(1 << 12);
        let mut decode = Latencies::with_capacity(1 << 12);
        let mut body_bytes = 0u64;
        let get = |client: &Client| -> Result<_> {
            let resp = client.get(&url).header(reqwest::header::ACCEPT, accept).send()?;
            let status = resp.status();
            let bytes = resp.bytes()?;
            ensure!(status == StatusCode::OK, "GET {url} answered {status}: {}", String::from_utf8_lossy(&bytes));
            Ok(bytes)
        };
        // The events of a reply, decoded; checks the count and the last version.
        let events = |bytes: &[u8]| -> Result<Vec<Value>> {
            let events = if ndjson {
                bytes
                    .split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(|line| serde_json::from_slice(line).context("decoding an NDJSON line"))
                    .collect::<Result<Vec<Value>>>()?
            } else {
                let page: Value = serde_json::from_slice(bytes).context("decoding the stream page")?;
                match page {
                    Value::Object(mut page) => match page.remove("events") {
                        Some(Value::Array(events)) => events,
                        _ => bail!("the stream page has no events array"),
                    },
                    _ => bail!("the stream page is not an object"),
                }
            };
            ensure!(events.len() == READ_EVENTS, "the read has {} events", events.len());
            ensure!(events[READ_EVENTS - 1]["version"].as_u64() == Some(READ_EVENTS as u64 - 1));
            Ok(events)
        };
        events(&get(&client)?)?; // opens the connection, checks the format
        let before = self.cpu();
        let start = Instant::now();
        while start.elapsed() < duration || lat.len() < 10 {
            let t = Instant::now();
            let bytes = get(&client)?;
            let t_body = Instant::now();
            let decoded = events(&bytes)?;
            let done = Instant::now();
            lat.push(done - t);
            decode.push(done - t_body);
            body_bytes += bytes.len() as u64;
            black_box(&decoded);
        }
        let secs = start.elapsed().as_secs_f64();
        let reads = lat.len() as f64;
        let cpu = Cpu::delta(before, self.cpu());
        let (server_cpu, client_cpu) = (cpu.server_per(lat.len() as u64), cpu.client_per(lat.len() as u64));
        let (p50, p99) = lat.p50_p99();
        let decode_p50 = decode.percentile(0.5);
        let (key, what, format) = if ndjson {
            (
                Key::HttpReadNdjson,
                "read one 1,000-event stream as NDJSON, GET …/streams/{key}?limit=1000, Accept: application/x-ndjson",
                "one event per line, each line decoded with serde_json into a Value tree",
            )
        } else {
            (
                Key::HttpRead,
                "read one 1,000-event stream, GET …/streams/{key}?limit=1000",
                "decoded with serde_json into a Value tree",
            )
        };
        Ok(Measurement::new(System::EvidentHttp, key, what, reads * READ_EVENTS as f64 / secs, "events/s")
            .latency(p50, p99)
            .mb(body_bytes as f64 / secs / 1e6)
            .note(format!(
                "{} reads/s; reply {} KB, {format} on the client (decode p50 {}); CPU per read: server {server_cpu}, client {client_cpu}; MB/s = response bodies",
                num(reads / secs),
                num(body_bytes as f64 / reads / 1e3),
                dur(decode_p50)
            )))
    }

    /// Stops the server (SIGTERM, clean exit checked) and closes the embedded log.
    pub fn stop(mut self) -> Result<()> {
        let stopped = self.server.stop();
        self.log.close()?;
        stopped
    }
}

/// SSE fan-out (issue 11): `clients` concurrent single-event HTTP appends for `duration` with no
/// subscriber, then with `subscribers` live subscriptions to the topic reading every event, on
/// the same server. Rows: both throughputs and their ratio. The subscribers are tasks on one
/// event-loop thread, each counting the messages it receives; after the loaded round
/// every subscriber must have received every event appended since it subscribed, once (the
/// count is checked, as the ids are positions in order).
pub fn sse_fanout(dir: &Path, clients: usize, subscribers: usize, duration: Duration) -> Result<Vec<Measurement>> {
    use std::sync::Arc;

    let max = (subscribers + 16).to_string();
    let h = Http::start_with(dir, &["--http-subscriptions-max", &max])?;
    let alone = h.append_http(clients, duration)?;
    // Subscribe from the head, so the subscribers read only what the loaded round appends.
    let head: Value = {
        let url = format!("{}/v1/all?from_sequence={}&limit=1", h.server.base, u64::MAX);
        serde_json::from_slice(&client()?.get(&url).send()?.bytes()?).context("decoding the head")?
    };
    let head = head["head_sequence"].as_u64().context("head_sequence")?;
    let addr = h.server.base.trim_start_matches("http://").to_string();
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let connected = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The subscribers are tasks on one thread's event loop (as the probe's asyncio readers
    // were): a socket that becomes readable while the loop runs costs no thread wake-up, so
    // the bench's own CPU, on the same two cores as the server, stays small.
    let readers = {
        let (counts, connected) = (counts.clone(), connected.clone());
        std::thread::Builder::new().name("sse-subscribers".into()).spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..subscribers {
                    let (addr, counts, connected, stopped) =
                        (addr.clone(), counts.clone(), connected.clone(), stopped.clone());
                    tasks.spawn(subscriber(i, addr, head, counts, connected, stopped));
                }
                while let Some(done) = tasks.join_next().await {
                    done??;
                }
                Ok(())
            })
        })?
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::Relaxed) < subscribers as u64 {
        ensure!(
            Instant::now() < deadline,
            "only {} of {subscribers} subscribers connected",
            connected.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let loaded = h.append_http(clients, duration)?;
    // Let the subscribers drain what is in flight, then check every one got every event.
    let appended = loaded.out.ops;
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < appended) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.send_replace(true);
    readers.join().map_err(|_| anyhow::anyhow!("the subscribers' thread panicked"))??;
    let short = counts.iter().filter(|c| c.load(Ordering::Relaxed) != appended).count();
    ensure!(short == 0, "{short} of {subscribers} subscribers did not receive exactly the {appended} events appended");
    let row = |t: &mut Timed, subs: usize| {
        let (p50, p99) = t.out.latencies.p50_p99();
        Measurement::new(
            System::EvidentHttp,
            Key::SseFanout { clients, subscribers: subs },
            format!(
                "1 event per append, {clients} client{}, {subs} SSE subscribers reading the topic",
                if clients == 1 { "" } else { "s" }
            ),
            t.out.rate(),
            "events/s",
        )
        .latency(p50, p99)
        .note(format!(
            "CPU per append: server {}, clients and subscribers {}",
            t.cpu.server_per(t.out.ops),
            t.cpu.client_per(t.out.ops)
        ))
    };
    let (mut alone, mut loaded) = (alone, loaded);
    let ratio = loaded.out.rate() / alone.out.rate();
    let rows = vec![
        row(&mut alone, 0),
        row(&mut loaded, subscribers),
        Measurement::new(
            System::EvidentHttp,
            Key::SseFanoutRatio { clients },
            format!("append throughput with {subscribers} subscribers / with none"),
            ratio,
            "x",
        )
        .note(format!("every subscriber received all {appended} events of the loaded round, once (target >= 0.7x)")),
    ];
    eprintln!(
        "  sse_fanout: {} events/s alone, {} events/s with {subscribers} subscribers: {ratio:.2}x",
        num(alone.out.rate()),
        num(loaded.out.rate())
    );
    h.stop()?;
    Ok(rows)
}

/// One SSE subscriber of the fan-out phase: subscribes to the topic from `head` and counts
/// the messages it receives into `counts[i]` until `stopped` turns true.
async fn subscriber(
    i: usize,
    addr: String,
    head: u64,
    counts: std::sync::Arc<Vec<AtomicU64>>,
    connected: std::sync::Arc<AtomicU64>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    let request = format!(
        "GET /v1/subscribe?topic={TOPIC}&from_sequence={head} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    // A message id marker (`\nid:`) may be split across reads: the last bytes of a read are
    // kept in front of the next one. memchr's searcher keeps the counting cheap.
    const MARK: &[u8] = b"\nid:";
    let finder = memchr::memmem::Finder::new(MARK);
    // As large as the server's chunks (256 KiB): one read per delivery.
    let mut buf = vec![0u8; 256 << 10];
    let (mut seen_head, mut kept) = (false, 0);
    loop {
        let n = tokio::select! {
            read = s.read(&mut buf[kept..]) => read?,
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        };
        ensure!(n > 0, "subscriber {i}: the server closed the stream");
        let filled = kept + n;
        if !seen_head {
            ensure!(
                buf[..filled].starts_with(b"HTTP/1.1 200"),
                "subscriber {i}: {}",
                String::from_utf8_lossy(&buf[..filled])
            );
            seen_head = true;
            connected.fetch_add(1, Ordering::Relaxed);
        }
        let found = finder.find_iter(&buf[..filled]).count();
        counts[i].fetch_add(found as u64, Ordering::Relaxed);
        // Keep fewer bytes than a whole marker, so none is counted twice.
        kept = filled.min(MARK.len() - 1);
        buf.copy_within(filled - kept..filled, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_event_carries_the_append_benchmark_payload() {
        let id = payload::event_id(3, 4);
        let v: Value = serde_json::from_str(&event_json(&id)).expect("valid JSON");
        assert_eq!(v["type"], payload::EVENT_TYPE);
        assert_eq!(v["id"], id.as_str());
        let data: Value = serde_json::from_str(payload::DATA).expect("data");
        assert_eq!(v["data"], data);
        assert_eq!(v["headers"]["correlationid"], "9b2f6a4e-1c3d-4e5f-8a7b-6c5d4e3f2a1b");
        let body: Value = serde_json::from_str(&append_body(Some(7), [event_json(&id).as_str()])).expect("body");
        assert_eq!(body["expected_version"], 7);
        let body: Value = serde_json::from_str(&append_body(None, ["{}", "{}"])).expect("body");
        assert_eq!(body["expected_version"], "no_stream");
        assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn the_embedded_event_is_what_the_server_builds() {
        let e = embedded_event("x".into());
        assert_eq!(e.data, payload::DATA.as_bytes());
        assert_eq!(e.source.as_deref(), Some(SERVER_SOURCE));
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        assert_eq!(e.extra_headers.len(), HEADERS.len());
    }
}
