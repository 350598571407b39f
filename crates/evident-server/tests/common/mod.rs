//! The end-to-end test harness: starts the real `evident` binary (`evident serve` on a
//! temporary data directory and a free port, or as a front over a Kafka cluster), talks to it
//! over HTTP (a blocking JSON client, a raw Server-Sent Events reader), runs the CLI against
//! it, and stops it with a signal.
//!
//! Waits are bounded by [`PATIENCE`] only so that a broken server fails the test instead of
//! hanging it; no result depends on how fast the machine is.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod jvm;
pub mod kafka_contents;
pub mod tmpfs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The longest any single wait may take before the test gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_evident");

/// The line `evident serve` prints once it accepts connections.
const LISTENING: &str = "evident: HTTP API listening on http://";

/// The line `evident serve` prints between [`LISTENING`] and [`KAFKA_LISTENING`], naming the
/// schema registry's listener (unless `--registry-addr none`).
const REGISTRY_LISTENING: &str = "evident: schema registry listening on http://";

/// The line `evident serve` prints right after [`LISTENING`], naming the Kafka listener.
const KAFKA_LISTENING: &str = "evident: Kafka protocol listening on ";

/// The last start-up line of `evident serve --storage kafka://...` (no Kafka listener then:
/// the server is a front over the cluster it names), in place of [`KAFKA_LISTENING`].
const KAFKA_STORAGE: &str = "evident: storage is the Kafka cluster at ";

/// How long a server over a Kafka cluster may take to start: it connects to the cluster and
/// joins its ownership group first, which on two busy cores takes longer than a local start.
pub const KAFKA_START_PATIENCE: Duration = Duration::from_secs(120);

/// Whether an environment variable would change how the server or the CLI behaves: `RUST_LOG`
/// and every `EVIDENT_` setting (flags have environment twins, and new ones keep coming), but
/// not the test harness's own `EVIDENT_TEST_` and `EVIDENT_REQUIRE_` switches. Such variables
/// are removed from every child, so that the machine's environment cannot change a test's
/// outcome.
fn scrubbed(name: &str) -> bool {
    name == "RUST_LOG"
        || (name.starts_with("EVIDENT_") && !name.starts_with("EVIDENT_TEST_") && !name.starts_with("EVIDENT_REQUIRE_"))
}

/// A `Command` for the binary with a clean environment, run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(scrubbed) {
            cmd.env_remove(name);
        }
    }
    // Every test server gets its own free Kafka port (tests run in parallel; the default
    // 127.0.0.1:9092 would collide). A test can still override it by flag or env.
    cmd.env("EVIDENT_KAFKA_ADDR", "127.0.0.1:0");
    // The same for the schema registry (default 127.0.0.1:8081).
    cmd.env("EVIDENT_REGISTRY_ADDR", "127.0.0.1:0");
    cmd
}

/// How a server process ended before (or instead of) listening.
#[derive(Debug)]
pub struct Exited {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// Collects a child's output on a thread, forwarding stdout lines to a channel.
fn collect(
    source: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    sink.lock().expect("output lock").push_str(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(line.trim_end().to_string());
                    }
                }
            }
        }
    })
}

/// A child process whose stdout lines arrive on a channel and whose stderr is collected, each by
/// a thread, so that the child never blocks on a full pipe: a script driven by what it prints.
pub struct Piped {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// The whole stderr, once the child closed it.
    pub stderr: JoinHandle<String>,
}

/// Spawns `cmd` with stdin closed and stdout and stderr piped (see [`Piped`]).
pub fn spawn_piped(cmd: &mut Command, what: &str) -> Piped {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut pipe = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    Piped { child, lines, stderr }
}

/// Sends `signal` to process `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
}

/// Waits for `child` to exit, killing it and failing after [`PATIENCE`].
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `evident serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `IP:PORT` the server listens on (as printed by it).
    pub addr: String,
    /// The port it listens on.
    pub port: u16,
    /// `IP:PORT` of its Kafka protocol listener (as printed by it); on a Kafka cluster
    /// (`--storage kafka://`), the cluster's bootstrap (`host:port,...`) it names.
    pub kafka_addr: String,
    /// `IP:PORT` of its schema registry listener (as printed by it), unless disabled.
    pub registry_addr: Option<String>,
    /// Its working directory (its data directory is `dir/data` unless the arguments said
    /// otherwise).
    pub dir: PathBuf,
    tmp: Option<TempDir>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    client: reqwest::blocking::Client,
}

impl Server {
    /// Starts a server on a fresh temporary directory.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh temporary directory with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in_with(tmp.path(), extra);
        server.tmp = Some(tmp);
        server
    }

    /// Starts a server working in `dir` with its data in `dir/data` (reuse `dir` to restart).
    pub fn start_in(dir: &Path) -> Server {
        Self::start_in_with(dir, &[])
    }

    /// As [`Server::start_in`], with extra `serve` flags.
    pub fn start_in_with(dir: &Path, extra: &[&str]) -> Server {
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        let mut args = vec!["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        match Self::launch(dir, &args, &[]) {
            Ok(server) => server,
            Err(e) => panic!(
                "evident serve exited before listening (code {:?})\n--- stdout\n{}\n--- stderr\n{}",
                e.code, e.stdout, e.stderr
            ),
        }
    }

    /// Starts `evident serve --storage kafka://BOOTSTRAP` working in `dir` with its data (the
    /// cluster's mirror) in `dir/data` (reuse `dir` to restart it on the same mirror), with
    /// extra `serve` flags. Its `kafka_addr` is the bootstrap it names.
    pub fn start_on_kafka(dir: &Path, bootstrap: &str, extra: &[&str]) -> Server {
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        let storage = format!("kafka://{bootstrap}");
        let mut args = vec!["serve", "--storage", storage.as_str(), "--data-dir", data, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        match Self::launch_within(dir, &args, &[], KAFKA_START_PATIENCE) {
            Ok(server) => server,
            Err(e) => panic!(
                "evident serve --storage {storage} exited before listening (code {:?})\n--- stdout\n{}\n--- stderr\n{}",
                e.code, e.stdout, e.stderr
            ),
        }
    }

    /// Runs the binary with exactly `args` and `envs` in `dir` and waits until it listens; if
    /// it exits first, returns how. Panics (after killing it) if it neither listens nor exits
    /// within [`PATIENCE`].
    pub fn launch(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Server, Exited> {
        Self::launch_within(dir, args, envs, PATIENCE)
    }

    /// As [`Server::launch`], waiting up to `patience` for the start-up lines.
    pub fn launch_within(
        dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        patience: Duration,
    ) -> Result<Server, Exited> {
        let mut cmd = command(dir);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning evident");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone(), Some(tx)),
            collect(child.stderr.take().expect("stderr"), stderr.clone(), None),
        ];
        let deadline = Instant::now() + patience;
        // The HTTP line, then the Kafka line (printed right after it), or, on a Kafka cluster,
        // the storage line naming it.
        let mut addr = None;
        let mut registry_addr = None;
        let kafka_addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING) {
                        addr = Some(rest.trim().to_string());
                    } else if let Some(rest) = line.strip_prefix(REGISTRY_LISTENING) {
                        registry_addr = Some(rest.trim().to_string());
                    } else if let Some(rest) =
                        line.strip_prefix(KAFKA_LISTENING).or_else(|| line.strip_prefix(KAFKA_STORAGE))
                    {
                        if addr.is_some() {
                            break rest.trim().to_string();
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is ending.
                    let status = wait_exit(&mut child, "evident serve");
                    for r in readers {
                        let _ = r.join();
                    }
                    let stdout = stdout.lock().expect("lock").clone();
                    let stderr = stderr.lock().expect("lock").clone();
                    return Err(Exited { code: status.code(), stdout, stderr });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "evident serve printed no listening line within {patience:?}\n--- stdout\n{}\n--- stderr\n{}",
                        stdout.lock().expect("lock"),
                        stderr.lock().expect("lock")
                    );
                }
            }
        };
        let addr = addr.expect("the HTTP line comes first");
        let port = port_of(&addr);
        let client = reqwest::blocking::Client::builder().timeout(PATIENCE).build().expect("http client");
        Ok(Server {
            child: Some(child),
            addr,
            port,
            kafka_addr,
            registry_addr,
            dir: dir.to_path_buf(),
            tmp: None,
            stdout,
            stderr,
            readers,
            client,
        })
    }

    /// The port of the Kafka protocol listener.
    pub fn kafka_port(&self) -> u16 {
        port_of(&self.kafka_addr)
    }

    /// The Kafka bootstrap address to give clients (`IP:PORT`).
    pub fn kafka_bootstrap(&self) -> String {
        self.kafka_addr.clone()
    }

    /// The URL of `path` (which starts with `/`) on the schema registry's listener.
    pub fn registry_url(&self, path: &str) -> String {
        let addr = self.registry_addr.as_deref().expect("the schema registry is enabled");
        format!("http://{addr}{path}")
    }

    /// Sends a request to the schema registry with an optional body of media type
    /// `content_type` (Confluent's `application/vnd.schemaregistry.v1+json` when `None`);
    /// returns the status, the answer's `content-type` and its body (JSON, or a JSON string).
    pub fn registry_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: Option<&str>,
    ) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method.clone(), self.registry_url(path));
        if let Some(body) = body {
            let ct = content_type.unwrap_or("application/vnd.schemaregistry.v1+json");
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            req = req.body(body.to_string());
        }
        let resp = req.send().unwrap_or_else(|e| panic!("registry {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = resp.text().unwrap_or_else(|e| panic!("registry {method} {path}: reading the body: {e}"));
        (status, content_type, parse_body(&text))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `http://IP:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Sends a request with an optional raw body (sent as `application/json`) and returns the
    /// status and the body parsed as JSON (`Null` when empty, a JSON string when not JSON).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, _, text) = self.request_raw(method, path, body.map(|b| b.as_bytes().to_vec()), &[]);
        (status, parse_body(&text))
    }

    /// Sends a request and returns status, `content-type` and the body text.
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = resp.text().unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        (status, content_type, text)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(&body.to_string()))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.request("DELETE", path, None)
    }

    /// `GET path`, which must answer 200; returns the JSON.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path`, which must answer `status`; returns the JSON.
    pub fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        let (got, reply) = self.post(path, body);
        assert_eq!(got, status, "POST {path} {body}: {reply}");
        reply
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, _, text) = self.request_raw("GET", "/metrics", None, &[]);
        assert_eq!(status, 200, "/metrics: {text}");
        text
    }

    /// The value of an unlabelled (or exactly labelled, e.g. `name{group="g"}`) sample.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    /// Creates a topic (must answer 201).
    pub fn create_topic(&self, name: &str, partitions: u32) -> Value {
        self.post_expect("/v1/topics", &serde_json::json!({ "name": name, "partitions": partitions }), 201)
    }

    /// Appends one event to `topic`/`key` (must answer 201); returns the reply.
    pub fn append(&self, topic: &str, key: &str, event: &Value) -> Value {
        self.post_expect(&format!("/v1/topics/{topic}/streams/{key}"), event, 201)
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code, stdout and stderr.
    pub fn sigterm(&mut self) -> (Option<i32>, String, String) {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends SIGINT and waits for the exit; returns the exit code, stdout and stderr.
    pub fn sigint(&mut self) -> (Option<i32>, String, String) {
        self.stop_with(libc::SIGINT)
    }

    fn stop_with(&mut self, sig: libc::c_int) -> (Option<i32>, String, String) {
        let mut child = self.child.take().expect("server running");
        signal(child.id(), sig);
        let status = wait_exit(&mut child, "evident serve after a signal");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code(), self.stdout(), self.stderr())
    }

    /// Kills the server with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (asserting a clean exit) and starts it again on the same
    /// directory and data; the new server keeps the temporary directory alive.
    pub fn restart(mut self) -> Server {
        let (code, out, err) = self.sigterm();
        assert_eq!(code, Some(0), "shutdown failed\n--- stdout\n{out}\n--- stderr\n{err}");
        let mut next = Server::start_in(&self.dir);
        next.tmp = self.tmp.take();
        next
    }

    /// Kills the server with SIGKILL and starts it again on the same data (a crash and a
    /// restart).
    pub fn crash_restart(mut self) -> Server {
        self.kill9();
        let mut next = Server::start_in(&self.dir);
        next.tmp = self.tmp.take();
        next
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_at(&self.base(), args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The port of an `IP:PORT` address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("bad address {addr}"))
}

/// Parses a response body: JSON, `Null` when empty, else the text as a JSON string.
pub fn parse_body(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

/// The value of a sample in Prometheus text: the line `series value`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Runs the CLI with `--server url` (after the other arguments, where every client command
/// takes it) and returns (exit code, stdout, stderr). Fails after [`PATIENCE`].
pub fn cli_at(url: &str, args: &[&str]) -> (i32, String, String) {
    let dir = std::env::temp_dir();
    let mut cmd = command(&dir);
    cmd.args(args).args(["--server", url]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning the CLI");
    let (out, err) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
    let readers = [
        collect(child.stdout.take().expect("stdout"), out.clone(), None),
        collect(child.stderr.take().expect("stderr"), err.clone(), None),
    ];
    let status = wait_exit(&mut child, &format!("evident {}", args.join(" ")));
    for r in readers {
        let _ = r.join();
    }
    let code = status.code().unwrap_or(-1);
    let out = out.lock().expect("lock").clone();
    let err = err.lock().expect("lock").clone();
    (code, out, err)
}

/// Asserts that `body` is the API's error shape with `code`, and returns the error object.
pub fn assert_error(body: &Value, code: &str) -> Value {
    let error = body.get("error").unwrap_or_else(|| panic!("no error object in {body}"));
    assert!(error.get("code").is_some_and(Value::is_string), "error.code is not a string: {body}");
    assert!(error.get("message").is_some_and(Value::is_string), "error.message is not a string: {body}");
    assert_eq!(error["code"], code, "unexpected error code: {body}");
    error.clone()
}

/// Polls `check` until it returns true; fails after [`PATIENCE`] with `what`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    /// `id:`.
    pub id: Option<String>,
    /// `event:` (None: the default `message`).
    pub event: Option<String>,
    /// `data:` lines joined by newlines.
    pub data: String,
}

impl SseMessage {
    /// The data parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", self.data))
    }
}

/// A Server-Sent Events subscription over a raw HTTP/1.1 connection (chunked body decoded here),
/// so the test controls exactly when it reads and when it disconnects.
pub struct Sse {
    reader: BufReader<TcpStream>,
    /// Response status.
    pub status: u16,
    /// Response headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    chunked: bool,
    /// Decoded body bytes not yet parsed into messages.
    pending: Vec<u8>,
    /// Bytes left in the current chunk.
    chunk_left: usize,
}

impl Sse {
    /// Opens `GET path` with extra request headers.
    pub fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::request(server, "GET", path, headers, None)
    }

    /// Opens `POST path` with a JSON body (a push query).
    pub fn post(server: &Server, path: &str, body: &Value) -> Sse {
        Sse::request(server, "POST", path, &[("Content-Type", "application/json")], Some(&body.to_string()))
    }

    fn request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Sse {
        let stream = TcpStream::connect(&server.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n", server.addr);
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            request.push_str("\r\n");
        }
        (&stream).write_all(request.as_bytes()).expect("send request");
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or_else(|| panic!("bad header {line:?}"));
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        Sse { reader, status, headers, chunked, pending: Vec::new(), chunk_left: 0 }
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Reads a whole non-streaming body (an error reply) as JSON.
    pub fn body_json(mut self) -> Value {
        let length: usize = self.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if self.chunked {
            let mut all = Vec::new();
            while let Some(bytes) = self.read_chunk() {
                all.extend(bytes);
            }
            return parse_body(&String::from_utf8_lossy(&all));
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        parse_body(&String::from_utf8_lossy(&body))
    }

    /// Reads more decoded body bytes; None at the end of the body.
    fn read_chunk(&mut self) -> Option<Vec<u8>> {
        if !self.chunked {
            let mut buf = [0u8; 4096];
            let n = self.reader.read(&mut buf).expect("reading the event stream");
            return (n > 0).then(|| buf[..n].to_vec());
        }
        if self.chunk_left == 0 {
            let mut size_line = String::new();
            if self.reader.read_line(&mut size_line).expect("chunk size") == 0 {
                return None;
            }
            let size_text = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16).unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
            if size == 0 {
                return None;
            }
            self.chunk_left = size;
        }
        let mut buf = vec![0u8; self.chunk_left.min(4096)];
        let n = self.reader.read(&mut buf).expect("reading the event stream");
        if n == 0 {
            return None;
        }
        buf.truncate(n);
        self.chunk_left -= n;
        if self.chunk_left == 0 {
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf).expect("chunk end");
        }
        Some(buf)
    }

    /// The next message (comments skipped); None when the stream ends. Fails if nothing comes
    /// within [`PATIENCE`].
    pub fn next(&mut self) -> Option<SseMessage> {
        loop {
            // A message ends at a blank line.
            if let Some(end) = find_blank_line(&self.pending) {
                let block: Vec<u8> = self.pending.drain(..end.0).collect();
                self.pending.drain(..end.1 - end.0);
                let text = String::from_utf8(block).expect("utf-8 event stream");
                let mut message = SseMessage { id: None, event: None, data: String::new() };
                let mut has_field = false;
                for line in text.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    has_field = true;
                    match field {
                        "id" => message.id = Some(value.to_string()),
                        "event" => message.event = Some(value.to_string()),
                        "data" => {
                            if !message.data.is_empty() {
                                message.data.push('\n');
                            }
                            message.data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if has_field {
                    return Some(message);
                }
                continue;
            }
            let bytes = self.read_chunk()?;
            self.pending.extend(bytes);
        }
    }

    /// The next message, which must be an event (not the end, not an error event).
    pub fn next_event(&mut self) -> SseMessage {
        let message = self.next().expect("the event stream ended");
        assert_eq!(message.event, None, "unexpected SSE event: {message:?}");
        message
    }
}

/// The first blank line in `buf`: (start of the separator, end of it).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buf.len() {
        if buf[i..].starts_with(b"\n\n") {
            return Some((i, i + 2));
        }
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some((i, i + 4));
        }
    }
    None
}

/// Sum of deposits minus withdrawals of a bank account's events (the read model of the
/// walkthrough), replayed in order.
pub fn balance(events: &[Value]) -> i64 {
    events.iter().fold(0, |balance, e| {
        let amount = e["data"]["amount"].as_i64().unwrap_or(0);
        match e["type"].as_str() {
            Some("MoneyDeposited") => balance + amount,
            Some("MoneyWithdrawn") => balance - amount,
            _ => balance,
        }
    })
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the server prints it
/// (`2026-11-22T10:00:00.123Z`).
pub fn rfc3339_ms(text: &str) -> i64 {
    fn bad<T>(text: &str) -> T {
        panic!("not an RFC 3339 UTC time: {text:?}")
    }
    let body = text.strip_suffix('Z').unwrap_or_else(|| bad(text));
    let (date, time) = body.split_once('T').unwrap_or_else(|| bad(text));
    let num = |s: &str| -> i64 { s.parse().unwrap_or_else(|_| bad(text)) };
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = clock.split(':').map(num).collect();
    assert!(d.len() == 3 && t.len() == 3, "not an RFC 3339 UTC time: {text:?}");
    let millis = num(&format!("{fraction:0<3}")[..3]);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + millis
}

/// Sleeps long enough that the next record gets a later millisecond timestamp than every
/// record acknowledged so far (the log stamps records with the server's clock in ms).
pub fn next_millisecond() {
    std::thread::sleep(Duration::from_millis(3));
}

/// What a finished helper process (a Kafka client script, kcat) left.
#[derive(Debug)]
pub struct ToolRun {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ToolRun {
    /// The last non-empty stdout line parsed as JSON (the client scripts' result).
    pub fn json(&self) -> Value {
        let line = self.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the last stdout line is not JSON ({e}): {line:?}\n--- stderr\n{}", self.stderr))
    }
}

/// Runs `cmd` with `stdin` as its standard input, collecting its output; kills it and fails
/// after `limit` (a guard against hangs only).
pub fn run_with_limit(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> ToolRun {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("writing the child's stdin");
    }
    let (out, err) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
    let readers = [
        collect(child.stdout.take().expect("stdout"), out.clone(), None),
        collect(child.stderr.take().expect("stderr"), err.clone(), None),
    ];
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            for r in readers {
                let _ = r.join();
            }
            panic!(
                "{cmd:?} did not finish within {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
                out.lock().expect("lock"),
                err.lock().expect("lock")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for r in readers {
        let _ = r.join();
    }
    let stdout = out.lock().expect("lock").clone();
    let stderr = err.lock().expect("lock").clone();
    ToolRun { code: status.code(), stdout, stderr }
}

/// True when CI demands the real Kafka clients (`EVIDENT_REQUIRE_KAFKA_CLIENTS=1`, set by
/// `scripts/test.sh`): a missing client then fails the test instead of skipping it.
pub fn kafka_clients_required() -> bool {
    std::env::var("EVIDENT_REQUIRE_KAFKA_CLIENTS").is_ok_and(|v| v == "1")
}

/// Reports a missing Kafka client: fails when they are required, else prints a skip line and
/// returns None (so a developer's plain `cargo test` still passes without them).
fn missing_client<T>(test: &str, what: &str) -> Option<T> {
    let help = "run scripts/kafka-clients-setup.sh, then set EVIDENT_TEST_PYTHON=$PWD/target/kafka-venv/bin/python \
                (scripts/test.sh does both)";
    assert!(!kafka_clients_required(), "{test}: {what}, and EVIDENT_REQUIRE_KAFKA_CLIENTS=1 ({help})");
    // Straight to the stderr handle, which the test harness does not capture: the skip must
    // show in a plain `cargo test`.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what} ({help})");
    None
}

/// The Python interpreter that has the Kafka client libraries (`EVIDENT_TEST_PYTHON`), or None
/// (after printing a skip line) when it is not configured and not required.
pub fn kafka_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("EVIDENT_TEST_PYTHON").filter(|v| !v.is_empty()) {
        Some(path) if Path::new(&path).is_file() => Some(PathBuf::from(path)),
        Some(path) => missing_client(test, &format!("EVIDENT_TEST_PYTHON={} does not exist", path.to_string_lossy())),
        None => missing_client(test, "EVIDENT_TEST_PYTHON is not set"),
    }
}

/// `kcat` if it is installed, or None (after printing a skip line) when it is not and not
/// required.
pub fn kcat(test: &str) -> Option<PathBuf> {
    let works = Command::new("kcat").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if works {
        Some(PathBuf::from("kcat"))
    } else {
        missing_client(test, "kcat is not installed")
    }
}

/// The folder of the Python client scripts (`tests/kafka`).
pub fn kafka_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("kafka")
}

// ---------------------------------------------------------------------------------------------
// Hand-built Kafka records, for tests that send what no client library would (a bomb, a value
// no HTTP append accepts). The bit-at-a-time CRC is the definition, not a fast one: tests only.

/// CRC-32C (Castagnoli), as record batches carry it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A zigzag varint, as records encode their lengths and deltas.
pub fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
