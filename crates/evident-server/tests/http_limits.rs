//! The HTTP listener's limits against the real binary: the connection cap (idle connections
//! make room, busy ones refuse), the header and body
//! read timeouts (a slowloris client is cut off), the cap on live subscriptions, and the info
//! line of a refused write. In every case the server keeps serving the other clients.
//!
//! Timeouts here are short (hundreds of milliseconds) so the tests are quick, but nothing
//! asserts how long anything took: a test only waits (bounded by `PATIENCE`) for the server to
//! cut a client off, and a slow machine only makes it wait longer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{assert_error, eventually, Server, Sse, PATIENCE};
use serde_json::{json, Value};

/// A raw keep-alive connection that sends requests and reads `Content-Length` replies.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(server: &Server) -> Conn {
        let stream = TcpStream::connect(&server.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        Conn { reader: BufReader::new(stream) }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// `GET path` on this connection; the status and the body as JSON.
    fn get(&mut self, path: &str) -> (u16, Value) {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: evident\r\n\r\n").as_bytes()).expect("send");
        self.reply().expect("a reply")
    }

    /// Reads one reply; None when the server closed the connection instead.
    fn reply(&mut self) -> Option<(u16, Value)> {
        let mut status_line = String::new();
        match self.reader.read_line(&mut status_line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').expect("header");
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Waits until the server closes the connection, discarding whatever it sends.
    fn wait_closed(&mut self) {
        let mut sink = [0u8; 1024];
        loop {
            match self.reader.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("the server did not close the connection within {PATIENCE:?}")
                }
                Err(_) => return, // reset: closed too
            }
        }
    }
}

fn event(id: &str) -> Value {
    json!({ "type": "Deposited", "id": id, "data": { "amount": 5 } })
}

/// At the connection cap a newcomer is admitted by closing the connection idle the longest
/// (here the one answered least recently); it is refused with 503 only when every connection
/// has a request in flight, as live subscriptions do for as long as they stream (they are
/// never evicted). Either way the other clients keep being served.
#[test]
fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_get_503() {
    // A long header timeout: the held connections must not be closed as idle meanwhile.
    let server = Server::start_with(&["--http-connections-max", "2", "--http-header-timeout-ms", "600000"]);
    server.create_topic("t", 1);
    let mut first = Conn::open(&server);
    assert_eq!(first.get("/health").0, 200);
    let mut second = Conn::open(&server);
    assert_eq!(second.get("/health").0, 200);
    // Over the cap: the connection answered least recently goes, the newcomer is served.
    let mut third = Conn::open(&server);
    assert_eq!(third.get("/health").0, 200);
    first.wait_closed();
    assert_eq!(second.get("/v1/topics").0, 200);
    assert_eq!(third.get("/health").0, 200);

    // A subscription and an append whose body is still arriving take both slots (each evicting
    // an idle connection) and hold them: both have a request in flight. The subscription's
    // response head and the append's `100 Continue` show that the server has read each request.
    let mut subscription = Sse::open(&server, "/v1/subscribe?topic=t&key=acc", &[]);
    assert_eq!(subscription.status, 200);
    let body = br#"{"type":"Deposited","id":"e1","data":{}}"#;
    let mut append = Conn::open(&server);
    let head = format!(
        "POST /v1/topics/t/streams/acc HTTP/1.1\r\nHost: evident\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    append.send(head.as_bytes()).expect("head");
    assert_eq!(append.reply().map(|(status, _)| status), Some(100));
    append.send(&body[..10]).expect("part of the body");
    second.wait_closed();
    third.wait_closed();
    let mut refused = Conn::open(&server);
    let (status, body_json) = refused.get("/health");
    assert_eq!(status, 503, "{body_json}");
    let error = assert_error(&body_json, "too_many_connections");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("--http-connections-max")), "{body_json}");
    refused.wait_closed();

    // The append completes and the subscription delivers it; its connection, idle again, then
    // makes room for a newcomer.
    append.send(&body[10..]).expect("the rest of the body");
    assert_eq!(append.reply().map(|(status, _)| status), Some(201));
    assert_eq!(subscription.next().expect("an event").json()["id"], "e1");
    assert_eq!(Conn::open(&server).get("/health").0, 200);
    append.wait_closed();
    let metrics = server.metrics();
    let evicted = common::metric_value(&metrics, "evident_http_connections_evicted_total{cap=\"listener\"}");
    assert!(evicted.is_some_and(|n| n >= 4.0), "{evicted:?}");
    let refused = common::metric_value(&metrics, "evident_http_connections_refused_total{cap=\"listener\"}");
    assert_eq!(refused, Some(1.0));
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_and_others_are_served() {
    let server = Server::start_with(&["--http-header-timeout-ms", "300"]);
    let mut slow = Conn::open(&server);
    slow.send(b"GET /health HTTP/1.1\r\nHost: evident\r\nX-Slow: ").expect("send");
    // Trickle a byte at a time until the server hangs up (a write fails) or PATIENCE runs out.
    let started = Instant::now();
    let mut cut_off = false;
    while started.elapsed() < PATIENCE {
        if slow.send(b"a").is_err() {
            cut_off = true;
            break;
        }
        // Another client is served while the slow one holds its connection.
        assert_eq!(server.get("/health").0, 200);
        let mut probe = [0u8; 1];
        slow.reader.get_ref().set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        match slow.reader.get_mut().read(&mut probe) {
            Ok(0) => {
                cut_off = true;
                break;
            }
            Ok(_) => {} // hyper may answer 408 before closing; the close follows
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut_off = true;
                break;
            }
        }
    }
    assert!(cut_off, "a client sending one header byte at a time was never cut off");
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn a_client_trickling_its_body_gets_408_and_nothing_is_appended() {
    let server = Server::start_with(&["--http-body-timeout-ms", "300"]);
    server.create_topic("t", 1);
    let body = event("e-slow").to_string();
    let mut slow = Conn::open(&server);
    let head = format!(
        "POST /v1/topics/t/streams/slow HTTP/1.1\r\nHost: evident\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.send(head.as_bytes()).expect("send head");
    slow.send(&body.as_bytes()[..5]).expect("send a little");
    // Others are served, appends included, while the slow body is pending.
    server.append("t", "fast", &event("e-fast"));
    // Trickle the rest slowly, stopping as soon as the server answers (a write can fail then).
    let reply = std::thread::scope(|s| {
        let writer = slow.reader.get_ref().try_clone().expect("clone");
        let rest = body.as_bytes()[5..body.len() - 1].to_vec();
        s.spawn(move || {
            for byte in rest {
                if (&writer).write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        slow.reply()
    });
    let (status, body) = reply.expect("a reply before the close");
    assert_eq!(status, 408, "{body}");
    assert_error(&body, "request_timeout");
    slow.wait_closed();
    let (status, body) = server.get("/v1/topics/t/streams/slow");
    assert_eq!(status, 404, "nothing was appended: {body}");
    assert_eq!(server.get_ok("/v1/topics/t/streams/fast")["events"].as_array().map(Vec::len), Some(1));
}

#[test]
fn subscriptions_over_the_cap_get_503_and_the_open_ones_keep_flowing() {
    let server = Server::start_with(&["--http-subscriptions-max", "2"]);
    server.create_topic("t", 1);
    let path = "/v1/subscribe?topic=t&key=acc";
    let mut a = Sse::open(&server, path, &[]);
    let b = Sse::open(&server, path, &[]);
    assert_eq!((a.status, b.status), (200, 200));
    let refused = Sse::open(&server, path, &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let body = refused.body_json();
    let error = assert_error(&body, "too_many_subscriptions");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("--http-subscriptions-max")), "{body}");

    // Appends and reads go on; the open subscriptions deliver.
    server.append("t", "acc", &event("e1"));
    let first = a.next().expect("an event");
    assert_eq!(first.json()["id"], "e1");

    // A closed subscription frees its slot; the server notices at its next write at the latest.
    drop(b);
    let mut n = 1;
    eventually("a freed subscription slot", || {
        n += 1;
        server.append("t", "acc", &event(&format!("e{n}")));
        let next = Sse::open(&server, path, &[]);
        next.status == 200
    });
    assert_eq!(a.next().expect("still flowing").json()["id"], "e2");
}

#[test]
fn refused_writes_are_logged_at_info_with_their_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::launch(
        tmp.path(),
        &["serve", "--data-dir", data.to_str().expect("utf-8"), "--http-addr", "127.0.0.1:0"],
        &[("RUST_LOG", "info")],
    )
    .unwrap_or_else(|e| panic!("the server did not start: {}", e.stderr));
    server.create_topic("t", 1);
    let (status, body) = server.post("/v1/topics/t/streams/acc", &json!({ "type": "A", "colour": "red" }));
    assert_eq!(status, 400, "{body}");
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    let (status, body) =
        server.request("POST", "/v1/topics/t/streams/acc", Some(&format!(r#"{{"type":"A","data":{deep}}}"#)));
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "data_too_deep");
    // A refused read is the client's business, not a refused write: not logged.
    assert_eq!(server.get("/v1/topics/absent").0, 404);
    eventually("the refusals in the log", || {
        let err = server.stderr();
        err.contains("write refused") && err.contains("malformed_json") && err.contains("data_too_deep")
    });
    let err = server.stderr();
    assert!(err.lines().filter(|l| l.contains("write refused")).all(|l| l.contains("INFO")), "{err}");
    assert!(!err.lines().any(|l| l.contains("write refused") && l.contains("/v1/topics/absent")), "{err}");
}
