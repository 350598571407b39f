//! Hostile HTTP clients against the real binary (issue 11, probe rows 8e, 8g, 8d, 2a): reads of
//! large events that would build huge pages, request bodies held open to pin memory, JSON
//! nested deeper than parsers accept stored over Kafka, and idle connections held to lock others
//! out. Each case checks the bound the server promises (pages within `--http-response-max-bytes`,
//! bodies within `--http-bodies-max-bytes`, every page parseable, connections within
//! `--http-connections-max` and `--http-connections-per-ip-max`) and that exact paging and other
//! clients keep working meanwhile.
//!
//! Connections from another address than 127.0.0.1 bind 127.0.0.2 before connecting: Linux
//! routes all of 127.0.0.0/8 to the loopback interface, so the server sees a second client host.
//!
//! Memory figures come from `/proc/<pid>/status` (`VmHWM`, the peak resident set): a bound
//! that is far above what the budgets allow and far below what the unbounded server took, so
//! the test fails on a regression and not on noise. Waits are bounded by `PATIENCE`; nothing
//! asserts how long anything took.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{crc32c, metric_value, varint, Server, Sse, PATIENCE};
use serde_json::{json, Value};

/// Peak and current resident memory of the server, in MiB.
fn memory_mib(server: &Server) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// One event whose `data` is a JSON string of `len` bytes.
fn large_event(i: usize, len: usize) -> Value {
    json!({"type": "Large", "id": format!("large-{i}"), "data": "x".repeat(len)})
}

/// Reads every event of `path` (a page route with a `?` already in it) by following
/// `cursor_field` from `start_param`; returns the events and the largest page in bytes.
fn read_by_cursor(server: &Server, path: &str, events_field: &str, cursor: (&str, &str)) -> (Vec<Value>, usize) {
    let (start_param, cursor_field) = cursor;
    let client = reqwest::blocking::Client::new();
    let (mut events, mut largest, mut from) = (Vec::new(), 0usize, None::<u64>);
    for _ in 0..1000 {
        let url = match from {
            Some(f) => server.url(&format!("{path}&{start_param}={f}")),
            None => server.url(path),
        };
        let body = client.get(url).send().expect("GET").bytes().expect("body");
        largest = largest.max(body.len());
        // Every page parses with serde_json's default recursion limit.
        let page: Value = serde_json::from_slice(&body).expect("a page parses");
        events.extend(page[events_field].as_array().expect("events").iter().cloned());
        match page[cursor_field].as_u64() {
            Some(next) => from = Some(next),
            None => return (events, largest),
        }
    }
    panic!("the cursor did not end");
}

/// 8e: `limit=10000` over 1 MiB events. Every page stays within the byte budget (one event
/// larger than the budget still reads, alone), paging by the cursor returns every event
/// exactly once in order on all three page routes, the CLI and the library read them all,
/// and eight such reads at once stay within the server-wide budget while appends go on.
#[test]
fn large_events_page_within_the_byte_budget_and_paging_stays_exact() {
    const BUDGET: usize = 3 << 20;
    const EVENTS: usize = 40;
    const EVENT_BYTES: usize = 1 << 20;
    let budget = BUDGET.to_string();
    let server = Server::start_with(&["--http-response-max-bytes", &budget, "--http-responses-max-bytes", "16777216"]);
    server.create_topic("big", 1);
    for i in 0..EVENTS {
        server.post_expect("/v1/topics/big/streams/s", &large_event(i, EVENT_BYTES), 201);
    }
    // One event larger than the page budget.
    server.post_expect("/v1/topics/big/streams/s", &large_event(EVENTS, 5 << 20), 201);
    let ids: Vec<String> = (0..=EVENTS).map(|i| format!("large-{i}")).collect();
    let id_list =
        |events: &[Value]| events.iter().map(|e| e["id"].as_str().expect("id").to_string()).collect::<Vec<_>>();

    for (path, field, cursor) in [
        ("/v1/all?limit=10000", "events", ("from_sequence", "next_sequence")),
        ("/v1/topics/big/streams/s?limit=10000", "events", ("from_version", "next_version")),
        ("/v1/topics/big/partitions/0/records?limit=10000", "records", ("offset", "next_offset")),
    ] {
        let (events, largest) = read_by_cursor(&server, path, field, cursor);
        assert_eq!(id_list(&events), ids, "{path}: every event once, in order");
        assert!(largest <= (5 << 20) + 4096, "{path}: the largest page is the lone large event's, not more: {largest}");
        // The first page stops at the budget: two 1 MiB events fit in 3 MiB, a third does not.
        let first: Value = serde_json::from_str(&server.request_raw("GET", path, None, &[]).2).expect("page");
        assert_eq!(first[field].as_array().expect("events").len(), 2, "{path}");
    }
    let backward = server.get_ok("/v1/topics/big/streams/s?direction=backward&limit=10000");
    assert_eq!(backward["events"].as_array().expect("events").len(), 1, "the lone large event, alone");
    assert_eq!(backward["next_version"], EVENTS as u64 - 1, "backward paging continues below it");

    // The CLI and the library follow the cursor rather than stop at a short page.
    let (code, out, err) = server.cli(&["read", "--all", "--json"]);
    assert_eq!(code, 0, "{err}");
    let cli: Vec<Value> = serde_json::from_str(&out).expect("the CLI's JSON array");
    assert_eq!(id_list(&cli), ids);
    let backend = evident::HttpBackend::new(server.base()).expect("backend");
    let all =
        evident::blocking::wait(evident::Backend::read_all(&backend, evident::Sequence(0), 10_000)).expect("read_all");
    assert_eq!(all.len(), EVENTS + 1, "the library's read_all");
    let stream = evident::blocking::wait(evident::Backend::read_stream(
        &backend,
        "big",
        "s",
        &evident::StreamQuery { limit: 10_000, ..Default::default() },
    ))
    .expect("read_stream");
    assert_eq!(stream.events.len(), EVENTS + 1, "the library's stream read follows next_version");

    // Eight unbounded reads at once: the budgets bound the server's memory, and a writer is
    // served meanwhile.
    let (peak_before, _) = memory_mib(&server);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let client = reqwest::blocking::Client::builder().timeout(PATIENCE).build().expect("client");
                    let body =
                        client.get(server.url("/v1/all?limit=10000")).send().expect("GET").bytes().expect("body");
                    assert!(body.len() <= BUDGET, "{}", body.len());
                })
            })
            .collect();
        for i in 0..20 {
            server.post_expect("/v1/topics/big/streams/small", &json!({"type": "Small", "data": {"i": i}}), 201);
        }
        for r in readers {
            r.join().expect("reader");
        }
    });
    let (peak_after, _) = memory_mib(&server);
    // Unbounded, one such read built a 46 MiB page and eight took several hundred MiB.
    assert!(peak_after - peak_before < 120.0, "peak RSS grew {:.0} MiB", peak_after - peak_before);
}

/// A raw connection that sends a request's head declaring `length` body bytes and then only
/// `sent` of them.
fn stalled_body(server: &Server, length: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        s,
        "POST /v1/topics/t/streams/k HTTP/1.1\r\nHost: evident\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("head");
    s.write_all(&vec![b' '; sent]).expect("part of the body");
    s
}

/// The status of the reply on `s` (None when the server closed without one).
fn status_of(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// 8g: slow 6 MiB bodies. Beyond the server-wide body budget a new body is refused at once with
/// 503 and Retry-After (nothing read; a client still sending its body may see the connection
/// reset instead, as with any early refusal); small appends still pass while the budget has room;
/// the stalled bodies are cut by the body timeout, after which the budget is free again.
#[test]
fn stalled_bodies_are_bounded_by_the_body_budget_and_cut_by_the_timeout() {
    let server = Server::start_with(&[
        "--http-bodies-max-bytes",
        "14680064",
        "--http-body-timeout-ms",
        "5000",
        "--fsync",
        "never",
    ]);
    server.create_topic("t", 1);
    const SIX: usize = 6 << 20;
    // Two bodies take 12 of the 14 MiB; a third is then refused at once. A probe that reaches
    // the server before both heads can itself take a share and get one of them refused: then
    // the round is tried again with fresh connections.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut held = loop {
        assert!(std::time::Instant::now() < deadline, "two stalled bodies never held the budget together");
        let mut held: Vec<TcpStream> = (0..2).map(|_| stalled_body(&server, SIX, 1024)).collect();
        // Time for the server to read both heads before the probe, so the probe does not take
        // a share itself (on a loaded machine that cost whole rounds).
        std::thread::sleep(std::time::Duration::from_millis(200));
        // At most 3 s of probing: the held bodies must still be within their 5 s timeout after.
        let refused = (0..10).any(|_| {
            // A short wait for the answer: a probe the budget took is dropped, which gives its
            // share back.
            let mut third = stalled_body(&server, SIX, 0);
            third.set_read_timeout(Some(std::time::Duration::from_millis(300))).expect("timeout");
            match status_of(&mut third) {
                Some((503, text)) => {
                    assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
                    true
                }
                _ => false,
            }
        });
        // Both stalled bodies still wait (a reply would mean the budget refused one).
        let waiting = |s: &mut TcpStream| {
            s.set_read_timeout(Some(std::time::Duration::from_millis(100))).expect("timeout");
            let still = matches!(s.read(&mut [0u8; 1]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
            s.set_read_timeout(Some(PATIENCE)).expect("timeout");
            still
        };
        if refused && held.iter_mut().all(waiting) {
            break held;
        }
    };
    // A small append fits in what is left.
    server.post_expect("/v1/topics/t/streams/small", &json!({"type": "Small"}), 201);
    // The stalled bodies are cut (408) and their share comes back.
    for s in &mut held {
        let (status, _) = status_of(s).expect("a reply to the stalled body");
        assert_eq!(status, 408);
    }
    common::eventually("the budget is free again", || {
        let (status, _) =
            server.post("/v1/topics/t/streams/big", &json!({"type": "Big", "data": "z".repeat(SIX - 1024)}));
        status == 201
    });
}

// ---------------------------------------------------------------------------------------------
// 8d over Kafka: a minimal Produce v3 of one record (no headers), enough to store a value no
// HTTP append would accept.

/// A v2 record batch of one keyed record without headers.
fn one_record_batch(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut rec = vec![0u8];
    varint(&mut rec, 0);
    varint(&mut rec, 0);
    varint(&mut rec, key.len() as i64);
    rec.extend_from_slice(key);
    varint(&mut rec, value.len() as i64);
    rec.extend_from_slice(value);
    varint(&mut rec, 0);
    let mut records = Vec::new();
    varint(&mut records, rec.len() as i64);
    records.extend_from_slice(&rec);
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&records);
    let length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Produces `batch` to partition 0 of `topic` (Produce v3, acks=all); the partition's error code.
fn produce(server: &Server, topic: &str, batch: &[u8]) -> i16 {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let mut p = Vec::new();
    p.extend_from_slice(&0i16.to_be_bytes()); // Produce
    p.extend_from_slice(&3i16.to_be_bytes());
    p.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    string(&mut p, "http-hostile");
    p.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    p.extend_from_slice(&(-1i16).to_be_bytes()); // acks=all
    p.extend_from_slice(&30_000i32.to_be_bytes());
    p.extend_from_slice(&1i32.to_be_bytes());
    string(&mut p, topic);
    p.extend_from_slice(&1i32.to_be_bytes());
    p.extend_from_slice(&0i32.to_be_bytes());
    p.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    p.extend_from_slice(batch);
    let mut s = TcpStream::connect(&server.kafka_addr).expect("connect to Kafka");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(&(p.len() as i32).to_be_bytes()).expect("size");
    s.write_all(&p).expect("request");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("response");
    // correlation id, topics count, topic name, partitions count, partition index, error code.
    let name_len = i16::from_be_bytes([body[8], body[9]]) as usize;
    let at = 10 + name_len + 4 + 4;
    i16::from_be_bytes([body[at], body[at + 1]])
}

/// 8d: a Kafka producer stores JSON nested 100,000 deep (and one just past what a page can
/// carry). Every HTTP read, the CLI, the library and a topic subscription still parse; the
/// value comes as `data_base64`, while an event at the deepest renderable depth stays `data`.
#[test]
fn json_too_deep_for_parsers_stored_over_kafka_reads_as_base64() {
    let server = Server::start();
    server.create_topic("nest", 1);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for (key, depth) in [("deep", 100_000usize), ("edge", 125), ("fine", 124)] {
        assert_eq!(produce(&server, "nest", &one_record_batch(key.as_bytes(), nested(depth).as_bytes())), 0, "{key}");
    }
    let page = server.get_ok("/v1/all");
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert!(events[0].get("data").is_none() && events[0]["data_base64"].is_string(), "100,000 deep: base64");
    assert!(events[1]["data_base64"].is_string(), "125 deep: base64");
    assert!(events[2]["data"].is_array(), "124 deep, the most a page carries: JSON");
    for path in ["/v1/topics/nest/partitions/0/records", "/v1/topics/nest/streams/deep"] {
        let (status, _, text) = server.request_raw("GET", path, None, &[]);
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let (code, out, err) = server.cli(&["read", "--all", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON").as_array().map(Vec::len), Some(3));
    let backend = evident::HttpBackend::new(server.base()).expect("backend");
    let all =
        evident::blocking::wait(evident::Backend::read_all(&backend, evident::Sequence(0), 10)).expect("read_all");
    assert_eq!(all.len(), 3, "the library reads past the deep event");
    let mut sse = common::Sse::open(&server, "/v1/subscribe?topic=nest", &[]);
    for _ in 0..3 {
        sse.next_event().json();
    }
}

/// Live subscribers follow the shared feed: many on one topic each get every event once, in
/// order, while appends go on; deleting the topic ends a live subscription with the
/// `subscription_ended` message (live subscriptions check their topic once a second).
#[test]
fn live_subscribers_share_the_feed_and_a_deleted_topic_ends_them() {
    let server = Server::start();
    server.create_topic("feed", 2);
    server.append("feed", "a", &json!({"type": "Before"}));
    let mut subs: Vec<common::Sse> =
        (0..20).map(|_| common::Sse::open(&server, "/v1/subscribe?topic=feed", &[])).collect();
    // Catch-up: the event appended before subscribing.
    for s in &mut subs {
        assert_eq!(s.next_event().json()["type"], "Before");
    }
    // Live: events committed after every subscriber caught up, across partitions and streams.
    let mut sequences = Vec::new();
    for i in 0..50 {
        let key = format!("k{}", i % 7);
        let reply = server.append("feed", &key, &json!({"type": "Live", "data": {"i": i}}));
        sequences.push(reply["events"][0]["sequence"].as_u64().expect("sequence"));
    }
    for s in &mut subs {
        let got: Vec<u64> = (0..50).map(|_| s.next_event().json()["sequence"].as_u64().expect("sequence")).collect();
        assert_eq!(got, sequences, "every live event once, in commit order");
    }
    let (status, _) = server.delete("/v1/topics/feed");
    assert!(status == 200 || status == 204, "{status}");
    let last = subs[0].next().expect("a last message");
    assert_eq!(last.event.as_deref(), Some("error"), "{last:?}");
    assert_eq!(last.json()["error"]["code"], "subscription_ended");
}

// ---------------------------------------------------------------------------------------------
// 2a: idle connections held to lock other clients out.

/// A TCP connection to the server from `source` (any address of 127.0.0.0/8).
fn connect_from(server: &Server, source: [u8; 4]) -> TcpStream {
    let target: SocketAddr = server.addr.parse().expect("server address");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::from(source), 0))?;
            socket.connect(target).await
        })
        .unwrap_or_else(|e| panic!("connecting from {source:?}: {e}"))
        .into_std()
        .expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    stream
}

/// A keep-alive client on one connection, which fails the test if the server closes it.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn from(server: &Server, source: [u8; 4]) -> Client {
        Client { reader: BufReader::new(connect_from(server, source)) }
    }

    /// Sends a request and reads its `Content-Length` reply: the status and the body text.
    fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: evident\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
        let mut status_line = String::new();
        let n = self.reader.read_line(&mut status_line).expect("status line");
        assert!(n > 0, "the server closed this client's connection before answering {method} {path}");
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn append(&mut self, i: usize) {
        let event = json!({"type": "Deposited", "id": format!("legit-{i}"), "data": {"i": i}});
        let (status, body) = self.request("POST", "/v1/topics/t/streams/legit", Some(&event));
        assert_eq!(status, 201, "{body}");
    }

    fn metric(&mut self, series: &str) -> f64 {
        let (status, text) = self.request("GET", "/metrics", None);
        assert_eq!(status, 200);
        metric_value(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics"))
    }
}

/// Whether the server has closed `s` (a read sees the end or a reset rather than waiting).
fn closed_by_server(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// One address holds far more idle connections than its cap (silent ones, ones trickling a
/// head, ones that made a request and went quiet) while a live subscription from the same
/// address streams and a client on 127.0.0.2 keeps appending on one keep-alive connection.
/// At the per-address cap the address's longest idle connections are closed, so it never holds
/// more than its cap; the subscription (a request in flight) and the other address are never
/// touched, nothing is refused, and the store is healthy afterwards.
#[test]
fn one_address_is_held_to_its_cap_by_evicting_its_idle_connections() {
    const PER_IP: usize = 8;
    // A header timeout far beyond the test: only eviction can close the idle connections.
    let server = Server::start_with(&[
        "--http-connections-max",
        "64",
        "--http-connections-per-ip-max",
        &PER_IP.to_string(),
        "--http-header-timeout-ms",
        "600000",
    ]);
    let mut legit = Client::from(&server, [127, 0, 0, 2]);
    let (status, body) = legit.request("POST", "/v1/topics", Some(&json!({"name": "t", "partitions": 1})));
    assert_eq!(status, 201, "{body}");
    legit.append(0);
    let mut subscription = Sse::open(&server, "/v1/subscribe?topic=t", &[]);
    assert_eq!(subscription.status, 200);
    assert_eq!(subscription.next_event().json()["id"], "legit-0");

    const ATTACK: usize = 120;
    let mut attacker = Vec::new();
    for i in 0..ATTACK {
        let mut s = connect_from(&server, [127, 0, 0, 1]);
        match i % 3 {
            // Says nothing.
            0 => {}
            // Trickles a partial head.
            1 => s.write_all(b"GET /hea").expect("partial head"),
            // Makes one request, reads the reply and goes quiet.
            _ => {
                s.write_all(b"GET /health HTTP/1.1\r\nHost: evident\r\n\r\n").expect("request");
                let mut reply = [0u8; 512];
                assert!(s.read(&mut reply).expect("reply") > 0);
            }
        }
        attacker.push(s);
        if i % 10 == 9 {
            legit.append(i);
        }
    }
    // The address holds at most its cap, the subscription included: the rest were closed.
    common::eventually("the address to be held to its cap", || {
        attacker.iter().filter(|s| !closed_by_server(s)).count() < PER_IP
    });
    // The newest connection was admitted (the evictions made room; nothing was refused).
    assert!(!closed_by_server(attacker.last().expect("attacker")), "the newest connection was closed");
    let evicted = legit.metric("evident_http_connections_evicted_total{cap=\"address\"}");
    assert!(evicted >= (ATTACK + 1 - PER_IP) as f64, "{evicted} evictions at the address cap");
    assert_eq!(legit.metric("evident_http_connections_evicted_total{cap=\"listener\"}"), 0.0);
    assert_eq!(legit.metric("evident_http_connections_refused_total{cap=\"address\"}"), 0.0);
    // The subscription streamed through it all, and 127.0.0.2's connection was never closed.
    legit.append(ATTACK);
    for i in (9..ATTACK).step_by(10).chain([ATTACK]) {
        assert_eq!(subscription.next_event().json()["id"], format!("legit-{i}"));
    }
    let (status, body) = legit.request("GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["status"], "ok", "{body}");
    let (status, body) = legit.request("GET", "/v1/topics/t/streams/legit", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["events"].as_array().map(Vec::len), Some(14));
}

/// Probe 2a: idle connections far beyond the server's cap, all from one address that is
/// allowed all of them (the default per-address cap equals the global one, as on loopback or
/// behind a proxy). Newcomers are admitted by closing the longest idle connections, so the
/// server holds at most its cap and a client from another address is still served at once,
/// not after the header timeout.
#[test]
fn idle_connections_beyond_the_cap_cannot_lock_another_client_out() {
    const MAX: usize = 32;
    let server =
        Server::start_with(&["--http-connections-max", &MAX.to_string(), "--http-header-timeout-ms", "600000"]);
    server.create_topic("t", 1);
    let attacker: Vec<TcpStream> = (0..10 * MAX).map(|_| connect_from(&server, [127, 0, 0, 1])).collect();
    // A newcomer from another address is served while the attacker's sockets are still open.
    let mut legit = Client::from(&server, [127, 0, 0, 2]);
    legit.append(0);
    let (status, _) = legit.request("GET", "/v1/topics/t/streams/legit", None);
    assert_eq!(status, 200);
    common::eventually("the server to hold at most its cap", || {
        attacker.iter().filter(|s| !closed_by_server(s)).count() < MAX
    });
    let open = legit.metric("evident_http_open_connections");
    assert!(open <= MAX as f64, "{open} connections open over a cap of {MAX}");
    let evicted = legit.metric("evident_http_connections_evicted_total{cap=\"listener\"}");
    assert!(evicted >= (10 * MAX + 1 - MAX) as f64, "{evicted} evictions at the listener cap");
    assert_eq!(legit.metric("evident_http_connections_refused_total{cap=\"listener\"}"), 0.0);
    let (status, body) = legit.request("GET", "/health", None);
    assert_eq!(status, 200, "{body}");
}
