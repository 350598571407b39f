//! Goal (reliability test T1 over HTTP, the "Must show" of the HTTP API): `kill -9` of
//! `evident serve` in the middle of concurrent HTTP appends never loses a 2xx-acknowledged
//! event, never stores one twice and never moves one, and the server restarts cleanly every
//! time.
//!
//! Method: the test starts the real `evident` binary (`serve --data-dir <dir> --http-addr
//! 127.0.0.1:0`, fsync `always`) on one data directory, again and again. Each cycle, eight
//! client threads with keep-alive connections append batches of 1 to 5 events to streams only
//! they write (`s<client>-<n>` in topic `crash`, 2 partitions). Every event has its own id
//! (`<key>-<counter>`) and content derived from it, and every batch states the exact
//! `expected_version` its client believes the stream is at. Each 2xx answer is recorded in the
//! ledger (id, key, partition, version, offset, sequence). After a random 50–400 ms the test
//! SIGKILLs the server while the clients are mid-request; each client stops at its first failed
//! request, which is then "in doubt": it may or may not have been committed.
//!
//! After each restart (health 200 within 30 s), before any client runs again, the test reads
//! every stream back (`GET /v1/topics/crash/streams/<key>`, paged) and everything in commit
//! order (`GET /v1/all`) and checks:
//! - each stream holds exactly its acknowledged events, in acknowledgement order, at the
//!   version, partition, offset and sequence the acknowledgement gave, with versions dense from
//!   0 and offsets and sequences increasing, followed by either nothing or the whole in-doubt
//!   batch of its client (a batch is atomic: a part of one is a violation);
//! - every id appears once; contents are what was sent;
//! - `/v1/all` has strictly increasing sequences, dense offsets from 0 in each partition, each
//!   acknowledged event at its acknowledged position, and nothing that was never sent.
//!
//! Then each in-doubt request is retried once, unchanged (same ids, same content, same
//! `expected_version`). The store checks event-id idempotence before the expected version, and
//! nobody else writes the stream, so exactly two answers are correct:
//! - `200` with `duplicate: true` if the read-back found the batch: the batch had been
//!   committed, and the answer must give exactly the positions the read-back found;
//! - `201` if the read-back did not find it: the stream is still at the version the client
//!   believed, so the append must succeed now, at the next versions.
//!
//! Anything else is a violation: a `409 wrong_expected_version` means the stream holds more or
//! less than acknowledged, `409 partial_duplicate` a torn batch, and `201` for a batch the
//! read-back had found means a second copy. The same reasoning makes every client request a
//! check: an exact `expected_version` that the server refuses means a lost or duplicated event.
//!
//! At the end the server is restarted and checked once more, stopped with SIGTERM (exit 0),
//! started again and checked after the clean shutdown too. The test prints
//! `http crash loop: cycles=… acked=… in_doubt=… in_doubt_committed=… lost=0 duplicated=0
//! misordered=0 …`. Any violation (the safety counts and `other`: torn batches, unknown
//! events, unexpected answers, a failed restart) fails the test at the cycle that found it,
//! with the seed and the server's stderr.
//!
//! Every check reads the whole store, so a run costs quadratically in cycles: the default
//! takes about 60–80 s in release on 2 cores. Knobs: `EVIDENT_HTTP_CRASH_CYCLES` (default 40)
//! and `EVIDENT_HTTP_CRASH_SEED` (default: the time; printed, and repeats the kill delays and
//! the workload, not the exact timing).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const CLIENTS: usize = 8;
const STREAMS_PER_CLIENT: usize = 3;
/// The server's largest read page.
const READ_LIMIT: usize = 10_000;
/// How long a restart may take until `/health` answers 200, and a graceful stop until exit.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A client request that takes longer is abandoned (the kill ends every request long before).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most violation details kept for the failure message.
const DETAILS_MAX: usize = 40;

// ---------------------------------------------------------------------------------------------
// The workload's names and contents: deterministic, so what is read back can be checked
// against the id alone, and a retry sends exactly the same bytes.
// ---------------------------------------------------------------------------------------------

fn stream_key(client: usize, n: usize) -> String {
    format!("s{client}-{n}")
}

/// FNV-1a: the same in every process and Rust release.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn event_type(id: &str) -> String {
    format!("Crash{}", fnv1a(id) % 4)
}

/// 0 to 511 bytes of padding, so requests and frames vary in size.
fn padding(id: &str) -> String {
    "x".repeat(((fnv1a(id) >> 8) % 512) as usize)
}

fn event_json(id: &str) -> Value {
    json!({ "type": event_type(id), "id": id, "data": { "id": id, "pad": padding(id) } })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Violations and figures.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// An acknowledged event is not where it was acknowledged, nor anywhere else.
    Lost,
    /// An id is stored twice, or the stream holds more than was acknowledged.
    Duplicated,
    /// An event is at another version, offset or sequence than acknowledged, or an order rule
    /// (dense versions, increasing sequences, dense partition offsets) is broken.
    Misordered,
    /// Anything else that must not happen: torn batches, unknown events, wrong content,
    /// unexpected HTTP answers, a server that does not restart.
    Other,
}

#[derive(Debug, Default)]
struct Violations {
    lost: u64,
    duplicated: u64,
    misordered: u64,
    other: u64,
    details: Vec<String>,
    /// (kind, id) already counted: an event found lost (or moved, or doubled) by both the
    /// stream read and `/v1/all` counts once.
    counted: HashSet<(Kind, String)>,
}

impl Violations {
    fn record(&mut self, kind: Kind, detail: String) {
        match kind {
            Kind::Lost => self.lost += 1,
            Kind::Duplicated => self.duplicated += 1,
            Kind::Misordered => self.misordered += 1,
            Kind::Other => self.other += 1,
        }
        if self.details.len() < DETAILS_MAX {
            self.details.push(format!("{kind:?}: {detail}"));
        }
    }

    /// Records a violation about one event, once per kind and id.
    fn record_event(&mut self, kind: Kind, id: &str, detail: String) {
        if self.counted.insert((kind, id.to_string())) {
            self.record(kind, detail);
        }
    }

    fn total(&self) -> u64 {
        self.lost + self.duplicated + self.misordered + self.other
    }
}

/// Counters the client threads share.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    acked_events: AtomicU64,
    acked_batches: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// The ledger: what each client was told.
// ---------------------------------------------------------------------------------------------

/// Where an event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    partition: u32,
    version: u64,
    offset: u64,
    sequence: u64,
}

#[derive(Debug, Clone)]
struct Acked {
    id: String,
    pos: Position,
}

/// One stream as its only writer knows it.
#[derive(Debug)]
struct StreamModel {
    key: String,
    /// Every acknowledged event, in acknowledgement order (= version order).
    acked: Vec<Acked>,
    /// Ids made so far (`<key>-<counter>`, counting from 1).
    ids_made: u64,
}

impl StreamModel {
    fn expected_version(&self) -> Value {
        match self.acked.len() {
            0 => json!("no_stream"),
            n => json!(n - 1),
        }
    }
}

/// A batch as sent.
#[derive(Debug, Clone)]
struct Batch {
    /// Index of the stream in its client's list.
    stream: usize,
    ids: Vec<String>,
    /// The body, kept so a retry sends exactly the same request.
    body: Value,
}

/// A request whose outcome the client never learned.
#[derive(Debug, Clone)]
struct InDoubt {
    batch: Batch,
    /// The connection was never established: nothing can have been sent (counted, and
    /// retried like the others).
    never_connected: bool,
}

struct ClientState {
    index: usize,
    streams: Vec<StreamModel>,
    in_doubt: Option<InDoubt>,
}

fn url(base: &str, path: &str) -> String {
    format!("{base}{path}")
}

fn stream_url(base: &str, key: &str) -> String {
    url(base, &format!("/v1/topics/{TOPIC}/streams/{key}"))
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("?")
}

/// Checks an append answer (`201`, or `200` duplicate) against the batch and the stream's
/// model: the ids in order, versions continuing the acknowledged ones, offsets and sequences
/// consecutive within the batch and after the stream's last event, the stream's partition.
fn check_append_answer(
    model: &StreamModel,
    batch: &Batch,
    body: &Value,
    duplicate: bool,
) -> Result<Vec<Position>, (Kind, String)> {
    let shape = |what: &str| (Kind::Other, format!("{}: {what} in answer {body}", model.key));
    if body["duplicate"].as_bool() != Some(duplicate) || body["key"].as_str() != Some(&model.key) {
        return Err(shape("wrong duplicate flag or key"));
    }
    let partition = body["partition"].as_u64().and_then(|p| u32::try_from(p).ok()).ok_or_else(|| shape("partition"))?;
    let events = body["events"].as_array().ok_or_else(|| shape("no events"))?;
    if events.len() != batch.ids.len() {
        return Err(shape("wrong event count"));
    }
    let mut positions = Vec::with_capacity(events.len());
    for (i, (e, id)) in events.iter().zip(&batch.ids).enumerate() {
        if e["id"].as_str() != Some(id) {
            return Err(shape(&format!("event {i} is not {id}")));
        }
        let field = |name: &str| e[name].as_u64().ok_or_else(|| shape(&format!("event {i} has no {name}")));
        positions.push(Position {
            partition,
            version: field("version")?,
            offset: field("offset")?,
            sequence: field("sequence")?,
        });
    }
    let base_version = model.acked.len() as u64;
    let (first, last) = (positions[0], model.acked.last().map(|a| a.pos));
    for (i, p) in positions.iter().enumerate() {
        let i = i as u64;
        if p.version != base_version + i || p.offset != first.offset + i || p.sequence != first.sequence + i {
            let detail = format!(
                "{} {}: answered {p:?}, expected version {} and offsets/sequences consecutive from {first:?}",
                model.key,
                batch.ids[i as usize],
                base_version + i
            );
            return Err((Kind::Misordered, detail));
        }
    }
    if let Some(last) = last {
        if first.partition != last.partition || first.offset <= last.offset || first.sequence <= last.sequence {
            let detail = format!("{}: batch placed at {first:?}, after the stream's last event at {last:?}", model.key);
            return Err((Kind::Misordered, detail));
        }
    }
    Ok(positions)
}

/// Records an acknowledged batch in the stream's model.
fn record_acked(model: &mut StreamModel, batch: &Batch, positions: &[Position]) {
    for (id, pos) in batch.ids.iter().zip(positions) {
        model.acked.push(Acked { id: id.clone(), pos: *pos });
    }
}

/// One client: appends to its own streams until a request fails (the server was killed) or
/// `stop` is set. A failed request becomes the client's in-doubt batch.
fn client_loop(
    client: &mut ClientState,
    base: &str,
    seed: u64,
    stop: &AtomicBool,
    counters: &Counters,
    violations: &Mutex<Violations>,
) {
    let violation = |kind: Kind, detail: String| violations.lock().expect("violations lock").record(kind, detail);
    let http = match reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => return violation(Kind::Other, format!("client {}: building an HTTP client: {e}", client.index)),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let s = rng.gen_range(0..client.streams.len());
        let model = &mut client.streams[s];
        let ids: Vec<String> = (0..rng.gen_range(1..=5))
            .map(|_| {
                model.ids_made += 1;
                format!("{}-{}", model.key, model.ids_made)
            })
            .collect();
        let events: Vec<Value> = ids.iter().map(|id| event_json(id)).collect();
        let body = json!({ "expected_version": model.expected_version(), "events": events });
        let batch = Batch { stream: s, ids, body };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = match http.post(stream_url(base, &model.key)).json(&batch.body).send() {
            Ok(response) => response,
            Err(e) => {
                client.in_doubt = Some(InDoubt { batch, never_connected: e.is_connect() });
                return;
            }
        };
        let status = response.status().as_u16();
        let answer: Value = match response.json() {
            Ok(answer) => answer,
            Err(_) => {
                // The status line arrived but the body did not: still in doubt.
                client.in_doubt = Some(InDoubt { batch, never_connected: false });
                return;
            }
        };
        match status {
            201 => match check_append_answer(model, &batch, &answer, false) {
                Ok(positions) => {
                    record_acked(model, &batch, &positions);
                    counters.acked_events.fetch_add(positions.len() as u64, Ordering::Relaxed);
                    counters.acked_batches.fetch_add(1, Ordering::Relaxed);
                }
                Err((kind, detail)) => {
                    violation(kind, detail);
                    return;
                }
            },
            409 if error_code(&answer) == "wrong_expected_version" => {
                // Only this client writes the stream: the server disagrees with the ledger.
                let believed = model.acked.len() as i64 - 1;
                let current = answer["error"]["current_version"].as_i64().unwrap_or(-1);
                let kind = if current < believed { Kind::Lost } else { Kind::Duplicated };
                let detail = format!(
                    "{}: append expecting version {believed} (all acknowledged) refused, stream is at {current}: {answer}",
                    model.key
                );
                violation(kind, detail);
                return;
            }
            _ => {
                violation(Kind::Other, format!("{}: append answered {status} {answer}", model.key));
                client.in_doubt = Some(InDoubt { batch, never_connected: false });
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.
// ---------------------------------------------------------------------------------------------

/// Sends a signal to the server, a child of this process that has not been reaped yet.
#[allow(unsafe_code)]
fn send_signal(child: &Child, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) only takes integers and touches no memory of this process. The pid is
    // our own child, which has not been waited for, so it cannot have been reused.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

struct Server {
    child: Option<Child>,
    base: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// From spawn until `/health` answered 200 (recovery included).
    start_time: Duration,
}

const LISTENING: &str = "evident: HTTP API listening on http://";

impl Server {
    /// Starts `evident serve` on `data` and waits until `/health` answers 200.
    fn start(data: &Path, logs: &Path) -> Result<Self, String> {
        let started = Instant::now();
        let stdout_path = logs.join("server.stdout");
        let stderr_path = logs.join("server.stderr");
        let stdout = File::create(&stdout_path).map_err(|e| format!("creating {}: {e}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path).map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_evident"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"])
            .current_dir(data)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            // Nothing from the test's environment may relax the configuration (fsync above all).
            if name.to_string_lossy().starts_with("EVIDENT_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().map_err(|e| format!("spawning the server: {e}"))?;
        let mut server =
            Self { child: Some(child), base: String::new(), stdout_path, stderr_path, start_time: Duration::ZERO };
        server.base = server.wait_for_address(started)?;
        server.wait_healthy(started)?;
        server.start_time = started.elapsed();
        Ok(server)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_for_address(&mut self, started: Instant) -> Result<String, String> {
        loop {
            let out = std::fs::read_to_string(&self.stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().find_map(|l| l.strip_prefix(LISTENING)) {
                let addr: std::net::SocketAddr =
                    line.trim().parse().map_err(|e| format!("bad address in {line:?}: {e}"))?;
                return Ok(format!("http://{addr}"));
            }
            if let Some(status) = self.exited() {
                return Err(format!("the server exited ({status}) before listening:\n{}", self.stderr()));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("the server did not print its address within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_healthy(&mut self, started: Instant) -> Result<(), String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        loop {
            if let Ok(response) = http.get(url(&self.base, "/health")).send() {
                let status = response.status().as_u16();
                let body: Value = response.json().unwrap_or(Value::Null);
                if status == 200 {
                    if body["fsync"] != "always" {
                        return Err(format!("the server does not fsync before acknowledging: {body}"));
                    }
                    return Ok(());
                }
                return Err(format!("/health answered {status} {body}"));
            }
            if let Some(status) = self.exited() {
                return Err(format!("the server exited ({status}) before it was healthy:\n{}", self.stderr()));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("/health did not answer 200 within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `kill -9`, then reaps the process and checks that the signal is what ended it.
    fn kill9(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Err("no server to kill".into());
        };
        send_signal(&child, libc::SIGKILL).map_err(|e| format!("kill -9: {e}"))?;
        let status = child.wait().map_err(|e| format!("waiting for the killed server: {e}"))?;
        match status.signal() {
            Some(libc::SIGKILL) => Ok(()),
            _ => Err(format!("the server ended with {status} before the kill:\n{}", self.stderr())),
        }
    }

    /// SIGTERM, then waits up to [`START_TIMEOUT`] for the exit status.
    fn terminate(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("no server to stop".into());
        };
        send_signal(&child, libc::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("waiting for the server: {e}"))? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the server did not exit within {START_TIMEOUT:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back and checking.
// ---------------------------------------------------------------------------------------------

/// An event as read back.
#[derive(Debug, Clone)]
struct ReadEvent {
    id: String,
    key: String,
    pos: Position,
}

/// Parses an event of a read page, checking its content against its id.
fn parse_read_event(e: &Value, v: &mut Violations) -> Option<ReadEvent> {
    let field = |name: &str| e[name].as_u64();
    let (Some(id), Some(key), Some(partition), Some(version), Some(offset), Some(sequence)) = (
        e["id"].as_str(),
        e["key"].as_str(),
        field("partition").and_then(|p| u32::try_from(p).ok()),
        field("version"),
        field("offset"),
        field("sequence"),
    ) else {
        v.record(Kind::Other, format!("an event read back lacks a field: {e}"));
        return None;
    };
    let content_ok = e["topic"] == TOPIC
        && e["type"].as_str() == Some(&event_type(id))
        && e["data"]["id"] == id
        && e["data"]["pad"].as_str() == Some(&padding(id));
    if !content_ok {
        v.record(Kind::Other, format!("{id}: content read back is not what was sent: {e}"));
    }
    Some(ReadEvent { id: id.into(), key: key.into(), pos: Position { partition, version, offset, sequence } })
}

fn get_json(http: &reqwest::blocking::Client, url: &str) -> Result<(u16, Value), String> {
    let response = http.get(url).send().map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.json().map_err(|e| format!("GET {url}: body: {e}"))?;
    Ok((status, body))
}

/// Reads a whole stream, page by page (empty if the stream does not exist).
fn read_stream(http: &reqwest::blocking::Client, base: &str, key: &str, v: &mut Violations) -> Vec<ReadEvent> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page_url = format!("{}?limit={READ_LIMIT}&from_version={from}", stream_url(base, key));
        let (status, body) = match get_json(http, &page_url) {
            Ok(answer) => answer,
            Err(e) => {
                v.record(Kind::Other, e);
                return events;
            }
        };
        match status {
            200 => {}
            404 if from == 0 && error_code(&body) == "stream_not_found" => return events,
            _ => {
                v.record(Kind::Other, format!("GET {page_url} answered {status} {body}"));
                return events;
            }
        }
        for e in body["events"].as_array().map_or(&[][..], Vec::as_slice) {
            if let Some(event) = parse_read_event(e, v) {
                if event.key != key {
                    v.record(Kind::Other, format!("reading stream {key} returned {event:?}"));
                }
                events.push(event);
            }
        }
        let stream_end = body["current_version"].as_u64().map(|c| c + 1);
        match body["next_version"].as_u64() {
            Some(next) if next > from => from = next,
            _ => {
                if stream_end != Some(events.len() as u64) {
                    let detail = format!(
                        "{key}: current_version {:?} but {} events read",
                        body["current_version"],
                        events.len()
                    );
                    v.record(Kind::Misordered, detail);
                }
                return events;
            }
        }
    }
}

/// Reads `/v1/all`, page by page.
fn read_all(http: &reqwest::blocking::Client, base: &str, v: &mut Violations) -> Vec<ReadEvent> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page_url = url(base, &format!("/v1/all?limit={READ_LIMIT}&from_sequence={from}"));
        let body = match get_json(http, &page_url) {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                v.record(Kind::Other, format!("GET {page_url} answered {status} {body}"));
                return events;
            }
            Err(e) => {
                v.record(Kind::Other, e);
                return events;
            }
        };
        for e in body["events"].as_array().map_or(&[][..], Vec::as_slice) {
            if let Some(event) = parse_read_event(e, v) {
                events.push(event);
            }
        }
        match body["next_sequence"].as_u64() {
            Some(next) if next > from => from = next,
            _ => return events,
        }
    }
}

/// Checks one stream read back against its model and its client's in-doubt batch. Returns
/// the stored positions of the in-doubt batch if the stream holds it (all of it).
fn check_stream(
    model: &StreamModel,
    in_doubt: Option<&Batch>,
    read: &[ReadEvent],
    v: &mut Violations,
) -> Option<Vec<Position>> {
    let key = &model.key;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, e) in read.iter().enumerate() {
        if let Some(first) = seen.insert(&e.id, i) {
            v.record_event(Kind::Duplicated, &e.id, format!("{key}: {} at versions {first} and {i}", e.id));
        }
        if e.pos.version != i as u64 {
            v.record(Kind::Misordered, format!("{key}: event {i} read back has version {}", e.pos.version));
        }
        if i > 0 {
            let prev = read[i - 1].pos;
            if e.pos.partition != prev.partition || e.pos.offset <= prev.offset || e.pos.sequence <= prev.sequence {
                v.record(Kind::Misordered, format!("{key}: {} at {:?} after {prev:?}", e.id, e.pos));
            }
        }
    }
    for (i, acked) in model.acked.iter().enumerate() {
        match read.get(i) {
            Some(e) if e.id == acked.id => {
                if e.pos != acked.pos {
                    let detail =
                        format!("{key}: {} acknowledged at {:?}, read back at {:?}", acked.id, acked.pos, e.pos);
                    v.record_event(Kind::Misordered, &acked.id, detail);
                }
            }
            _ => match seen.get(acked.id.as_str()) {
                Some(&j) => {
                    let detail = format!("{key}: {} acknowledged at version {i}, read back at version {j}", acked.id);
                    v.record_event(Kind::Misordered, &acked.id, detail);
                }
                None => {
                    let detail = format!(
                        "{key}: {} acknowledged at {:?} is gone ({} events read)",
                        acked.id,
                        acked.pos,
                        read.len()
                    );
                    v.record_event(Kind::Lost, &acked.id, detail);
                }
            },
        }
    }
    let tail = read.get(model.acked.len()..).unwrap_or(&[]);
    if tail.is_empty() {
        return None;
    }
    let tail_ids: Vec<&str> = tail.iter().map(|e| e.id.as_str()).collect();
    match in_doubt {
        Some(batch) if tail_ids == batch.ids => Some(tail.iter().map(|e| e.pos).collect()),
        Some(batch) if tail.len() < batch.ids.len() && tail_ids.iter().zip(&batch.ids).all(|(t, b)| t == b) => {
            let detail = format!("{key}: torn batch: {} of the in-doubt batch {:?} stored", tail.len(), batch.ids);
            v.record(Kind::Other, detail);
            None
        }
        _ => {
            for id in &tail_ids {
                let detail = format!(
                    "{key}: {id} is among {} events beyond the {} acknowledged: {tail_ids:?} (in doubt: {:?})",
                    tail.len(),
                    model.acked.len(),
                    in_doubt.map(|b| &b.ids)
                );
                v.record_event(Kind::Duplicated, id, detail);
            }
            None
        }
    }
}

/// What a check found, beyond violations.
#[derive(Default)]
struct CheckReport {
    /// Client index → positions of its in-doubt batch, if stored.
    in_doubt_found: HashMap<usize, Vec<Position>>,
    events_read: u64,
}

/// Checks everything the server holds against the ledger (see the module comment).
fn check_store(base: &str, clients: &[ClientState], v: &mut Violations) -> CheckReport {
    let mut report = CheckReport::default();
    let http = match reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => {
            v.record(Kind::Other, format!("HTTP client: {e}"));
            return report;
        }
    };
    match get_json(&http, &url(base, &format!("/v1/topics/{TOPIC}"))) {
        Ok((200, body)) if body["partitions"] == PARTITIONS => {}
        Ok((status, body)) => v.record(Kind::Other, format!("topic {TOPIC}: {status} {body}")),
        Err(e) => v.record(Kind::Other, e),
    }
    // id → (key, position) of everything that may be stored: acknowledged, or in doubt and
    // found whole in its stream.
    let mut known: HashMap<String, (String, Position)> = HashMap::new();
    for client in clients {
        let in_doubt = client.in_doubt.as_ref().map(|d| &d.batch);
        for (s, model) in client.streams.iter().enumerate() {
            let read = read_stream(&http, base, &model.key, v);
            report.events_read += read.len() as u64;
            let own_doubt = in_doubt.filter(|b| b.stream == s);
            if let Some(found) = check_stream(model, own_doubt, &read, v) {
                for (id, pos) in own_doubt.map_or(&[][..], |b| b.ids.as_slice()).iter().zip(&found) {
                    known.insert(id.clone(), (model.key.clone(), *pos));
                }
                report.in_doubt_found.insert(client.index, found);
            }
            for acked in &model.acked {
                known.insert(acked.id.clone(), (model.key.clone(), acked.pos));
            }
        }
    }
    let all = read_all(&http, base, v);
    report.events_read += all.len() as u64;
    let mut last_sequence: Option<u64> = None;
    let mut partition_next = [0u64; PARTITIONS as usize];
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for e in &all {
        if last_sequence.is_some_and(|last| e.pos.sequence <= last) {
            v.record(Kind::Misordered, format!("/v1/all: sequence {} after {last_sequence:?}", e.pos.sequence));
        }
        last_sequence = Some(e.pos.sequence);
        match partition_next.get_mut(e.pos.partition as usize) {
            Some(next) => {
                if e.pos.offset != *next {
                    let detail =
                        format!("/v1/all: partition {} offset {} where {next} was due", e.pos.partition, e.pos.offset);
                    v.record(Kind::Misordered, detail);
                }
                *next = e.pos.offset + 1;
            }
            None => v.record(Kind::Other, format!("/v1/all: {e:?} is in a partition topic {TOPIC} lacks")),
        }
        if let Some(first) = seen.insert(&e.id, e.pos.sequence) {
            let detail = format!("/v1/all: {} at sequences {first} and {}", e.id, e.pos.sequence);
            v.record_event(Kind::Duplicated, &e.id, detail);
        }
        match known.get(&e.id) {
            Some((key, pos)) if *key == e.key && *pos == e.pos => {}
            Some((key, pos)) => {
                let detail = format!("/v1/all: {} of {key} known at {pos:?}, read at {:?} in {}", e.id, e.pos, e.key);
                v.record_event(Kind::Misordered, &e.id, detail);
            }
            None => {
                let detail = format!("/v1/all: {e:?} was never acknowledged nor in doubt");
                v.record_event(Kind::Duplicated, &e.id, detail);
            }
        }
    }
    for (id, (key, pos)) in &known {
        if !seen.contains_key(id.as_str()) {
            v.record_event(Kind::Lost, id, format!("/v1/all: {id} of {key} at {pos:?} is missing"));
        }
    }
    report
}

/// What the in-doubt retries found.
#[derive(Default)]
struct RetryFigures {
    in_doubt: u64,
    never_connected: u64,
    committed: u64,
    fresh: u64,
}

/// Retries each in-doubt batch once, unchanged, and checks the answer against what the
/// read-back found (rules in the module comment). The batch then joins the ledger.
fn retry_in_doubt(
    base: &str,
    clients: &mut [ClientState],
    report: &CheckReport,
    figures: &mut RetryFigures,
    v: &mut Violations,
) {
    let http = match reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => return v.record(Kind::Other, format!("HTTP client: {e}")),
    };
    for client in clients.iter_mut() {
        let Some(doubt) = client.in_doubt.take() else {
            continue;
        };
        figures.in_doubt += 1;
        figures.never_connected += u64::from(doubt.never_connected);
        let batch = &doubt.batch;
        let model = &mut client.streams[batch.stream];
        let found = report.in_doubt_found.get(&client.index);
        let target = stream_url(base, &model.key);
        let (status, answer) = match http.post(&target).json(&batch.body).send() {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json::<Value>().unwrap_or(Value::Null))
            }
            Err(e) => {
                v.record(Kind::Other, format!("{}: retry of in-doubt {:?} failed: {e}", model.key, batch.ids));
                continue;
            }
        };
        let (want_status, kind_if_not) = match found {
            Some(_) => (200, Kind::Duplicated),
            None => (201, Kind::Other),
        };
        if status != want_status {
            let detail = format!(
                "{}: retry of in-doubt {:?} (read back: {}) answered {status} {answer}",
                model.key,
                batch.ids,
                if found.is_some() { "stored" } else { "not stored" }
            );
            v.record(kind_if_not, detail);
            continue;
        }
        match check_append_answer(model, batch, &answer, found.is_some()) {
            Ok(positions) => {
                if let Some(found) = found {
                    if *found != positions {
                        let detail =
                            format!("{}: in-doubt batch stored at {found:?}, retry answered {positions:?}", model.key);
                        v.record(Kind::Misordered, detail);
                    }
                    figures.committed += 1;
                } else {
                    figures.fresh += 1;
                }
                record_acked(model, batch, &positions);
            }
            Err((kind, detail)) => v.record(kind, format!("retry: {detail}")),
        }
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

struct Run {
    seed: u64,
    violations: Violations,
}

impl Run {
    /// Fails the test if anything was found.
    fn check(&self, when: &str, server: Option<&Server>) {
        if self.violations.total() > 0 {
            self.fail(when, server);
        }
    }

    /// Fails the test, naming the seed, the violations and the server's last words.
    fn fail(&self, when: &str, server: Option<&Server>) -> ! {
        let v = &self.violations;
        panic!(
            "http crash loop failed {when} (EVIDENT_HTTP_CRASH_SEED={}): lost={} duplicated={} misordered={} \
             other={}\n  {}\nserver stderr (last lines):\n{}",
            self.seed,
            v.lost,
            v.duplicated,
            v.misordered,
            v.other,
            v.details.join("\n  "),
            server.map(Server::stderr).unwrap_or_default()
        );
    }

    fn start(&mut self, data: &Path, logs: &Path, when: &str) -> Server {
        match Server::start(data, logs) {
            Ok(server) => server,
            Err(e) => {
                self.violations.record(Kind::Other, format!("restart: {e}"));
                self.fail(when, None)
            }
        }
    }
}

/// The crash loop: start, check, retry the in-doubt, append from 8 clients, kill -9; repeat.
#[test]
fn http_crash_loop_kill9() {
    let cycles = env_u64("EVIDENT_HTTP_CRASH_CYCLES").unwrap_or(40);
    let seed = env_u64("EVIDENT_HTTP_CRASH_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    println!("http crash loop: seed={seed} cycles={cycles} (EVIDENT_HTTP_CRASH_SEED repeats the schedule)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run { seed, violations: Violations::default() };
    let mut clients: Vec<ClientState> = (0..CLIENTS)
        .map(|c| ClientState {
            index: c,
            streams: (0..STREAMS_PER_CLIENT)
                .map(|n| StreamModel { key: stream_key(c, n), acked: Vec::new(), ids_made: 0 })
                .collect(),
            in_doubt: None,
        })
        .collect();
    let counters = Counters::default();
    let mut retries = RetryFigures::default();
    let mut start_times = Vec::new();
    let mut events_read = 0u64;
    let started = Instant::now();

    for cycle in 0..cycles {
        let when = format!("at cycle {cycle}");
        let mut server = run.start(&data, tmp.path(), &when);
        start_times.push(server.start_time);
        if cycle == 0 {
            let http = reqwest::blocking::Client::new();
            let created = http
                .post(url(&server.base, "/v1/topics"))
                .json(&json!({ "name": TOPIC, "partitions": PARTITIONS }))
                .send()
                .map(|r| r.status().as_u16());
            assert_eq!(created.ok(), Some(201), "creating topic {TOPIC}");
        }
        let report = check_store(&server.base, &clients, &mut run.violations);
        events_read += report.events_read;
        retry_in_doubt(&server.base, &mut clients, &report, &mut retries, &mut run.violations);
        run.check(&when, Some(&server));

        let delay = Duration::from_millis(rng.gen_range(50..=400));
        let stop = AtomicBool::new(false);
        let shared_violations = Mutex::new(Violations::default());
        let base = server.base.clone();
        let kill_result = std::thread::scope(|s| {
            for client in clients.iter_mut() {
                let client_seed = rng.gen();
                let (base, stop, counters, violations) = (&base, &stop, &counters, &shared_violations);
                s.spawn(move || client_loop(client, base, client_seed, stop, counters, violations));
            }
            std::thread::sleep(delay);
            let killed = server.kill9();
            stop.store(true, Ordering::Relaxed);
            killed
        });
        let found = shared_violations.into_inner().expect("violations lock");
        for detail in found.details.iter().take(DETAILS_MAX) {
            run.violations.details.push(format!("(client) {detail}"));
        }
        run.violations.lost += found.lost;
        run.violations.duplicated += found.duplicated;
        run.violations.misordered += found.misordered;
        run.violations.other += found.other;
        if let Err(e) = kill_result {
            run.violations.record(Kind::Other, e);
        }
        run.check(&when, Some(&server));
    }

    // After the last kill: recover, check, retry, check that the retries landed.
    let mut server = run.start(&data, tmp.path(), "after the last kill");
    start_times.push(server.start_time);
    let report = check_store(&server.base, &clients, &mut run.violations);
    events_read += report.events_read;
    retry_in_doubt(&server.base, &mut clients, &report, &mut retries, &mut run.violations);
    events_read += check_store(&server.base, &clients, &mut run.violations).events_read;
    run.check("after the last kill", Some(&server));

    // A graceful stop exits 0, and what it leaves opens and checks clean too.
    for when in ["at the first graceful stop", "at the stop after the graceful restart"] {
        match server.terminate() {
            Ok(status) if status.code() == Some(0) => {}
            Ok(status) => run.violations.record(Kind::Other, format!("SIGTERM: the server exited with {status}")),
            Err(e) => run.violations.record(Kind::Other, e),
        }
        let stdout = std::fs::read_to_string(&server.stdout_path).unwrap_or_default();
        if !stdout.contains("evident: stopped") {
            run.violations.record(Kind::Other, format!("SIGTERM: no \"evident: stopped\" in the output:\n{stdout}"));
        }
        run.check(when, Some(&server));
        if when.starts_with("at the first") {
            server = run.start(&data, tmp.path(), "after the graceful stop");
            start_times.push(server.start_time);
            events_read += check_store(&server.base, &clients, &mut run.violations).events_read;
            run.check("after the graceful stop", Some(&server));
        }
    }

    start_times.sort();
    let acked: u64 = clients.iter().flat_map(|c| &c.streams).map(|s| s.acked.len() as u64).sum();
    let v = &run.violations;
    println!(
        "http crash loop: cycles={cycles} acked={acked} acked_by_client={} batches_acked={} requests={} \
         in_doubt={} in_doubt_committed={} in_doubt_fresh={} in_doubt_never_connected={} lost={} duplicated={} \
         misordered={} other={} events_read_back={events_read} restart_to_healthy_ms_p50={:.1} p99={:.1} max={:.1} \
         wall_s={:.1} seed={seed}",
        counters.acked_events.load(Ordering::Relaxed),
        counters.acked_batches.load(Ordering::Relaxed),
        counters.requests.load(Ordering::Relaxed),
        retries.in_doubt,
        retries.committed,
        retries.fresh,
        retries.never_connected,
        v.lost,
        v.duplicated,
        v.misordered,
        v.other,
        percentile_ms(&start_times, 0.50),
        percentile_ms(&start_times, 0.99),
        percentile_ms(&start_times, 1.0),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!((v.lost, v.duplicated, v.misordered), (0, 0, 0), "safety counts");
    if cycles >= 10 {
        assert!(acked > 0, "the loop acknowledged nothing");
        assert!(retries.in_doubt > 0, "no request was ever in doubt: the kills missed the appends");
    }
}
