//! Hostile frames on the Kafka port (RELIABILITY.md T8), over raw TCP against a real
//! `evident serve`: sizes out of bounds, unknown keys, versions outside the advertised ranges,
//! a future ApiVersions (KIP-511 reply), garbage and impossible lengths after a valid header, a
//! record batch with a bad CRC, and a truncated frame. Each case must get its defined reply or
//! a closed connection (never a hang, never a crash); afterwards the server still answers on a
//! connection opened before them and on new ones, and a produce/fetch round trip works.
//!
//! The resource budgets (reliability probe 2b, 2c, 2e, 5b, 5d) are attacked the same way, with
//! the server's peak RSS read from /proc while an ordinary client keeps producing or fetching.
//!
//! The few requests needed are encoded by hand (non-flexible versions: ApiVersions v0,
//! Produce v3, Fetch v4, Metadata v1), with the record batch and its CRC-32C built here.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{crc32c, varint, Server, PATIENCE};

/// The server's default request size limit (`KafkaConfig::request_max_bytes`).
const REQUEST_MAX_BYTES: i32 = 16 << 20;

const API_PRODUCE: i16 = 0;
const API_FETCH: i16 = 1;
const API_METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;

const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;

// ---------------------------------------------------------------------------------------------
// Encoding

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// An uncompressed v2 record batch of keyed records (no producer id), CRC set.
fn record_batch(records: &[(&str, &str)], timestamp: i64) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        varint(&mut rec, 0); // timestamp delta
        varint(&mut rec, i as i64); // offset delta
        varint(&mut rec, key.len() as i64);
        rec.extend_from_slice(key.as_bytes());
        varint(&mut rec, value.len() as i64);
        rec.extend_from_slice(value.as_bytes());
        varint(&mut rec, 0); // headers
        varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&0i32.to_be_bytes()); // batch length, set below
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
    b.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A request header v1 (v2 when `flexible`: an empty tagged-field section follows).
fn header(key: i16, version: i16, correlation: i32, flexible: bool) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation.to_be_bytes());
    string(&mut h, "hostile");
    if flexible {
        h.push(0);
    }
    h
}

/// A frame: the i32 size, then `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn api_versions_v0(correlation: i32) -> Vec<u8> {
    frame(&header(API_VERSIONS, 0, correlation, false))
}

fn produce_v3(correlation: i32, topic: &str, partition: i32, batch: &[u8]) -> Vec<u8> {
    let mut p = header(API_PRODUCE, 3, correlation, false);
    p.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    p.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    p.extend_from_slice(&30_000i32.to_be_bytes()); // timeout
    p.extend_from_slice(&1i32.to_be_bytes()); // topics
    string(&mut p, topic);
    p.extend_from_slice(&1i32.to_be_bytes()); // partitions
    p.extend_from_slice(&partition.to_be_bytes());
    p.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    p.extend_from_slice(batch);
    frame(&p)
}

fn fetch_v4(correlation: i32, topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut p = header(API_FETCH, 4, correlation, false);
    p.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    p.extend_from_slice(&1_000i32.to_be_bytes()); // max wait
    p.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    p.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max bytes
    p.push(0); // isolation level
    p.extend_from_slice(&1i32.to_be_bytes()); // topics
    string(&mut p, topic);
    p.extend_from_slice(&1i32.to_be_bytes()); // partitions
    p.extend_from_slice(&partition.to_be_bytes());
    p.extend_from_slice(&offset.to_be_bytes());
    p.extend_from_slice(&(1i32 << 20).to_be_bytes()); // partition max bytes
    frame(&p)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A cursor over a response.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let bytes = self
            .buf
            .get(self.pos..self.pos + n)
            .unwrap_or_else(|| panic!("response truncated: {} bytes wanted at {} of {}", n, self.pos, self.buf.len()));
        self.pos += n;
        bytes
    }

    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }

    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    fn string(&mut self) -> String {
        let len = self.i16();
        assert!(len >= 0, "null string in a response");
        String::from_utf8(self.take(len as usize).to_vec()).expect("utf-8 string")
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.i32();
        (len >= 0).then(|| self.take(len as usize))
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// The ApiVersions v0 response: (error code, [(key, min, max)]).
fn parse_api_versions_v0(body: &mut Cursor<'_>) -> (i16, Vec<(i16, i16, i16)>) {
    let error = body.i16();
    let n = body.i32();
    let table = (0..n).map(|_| (body.i16(), body.i16(), body.i16())).collect();
    assert!(body.done(), "bytes left after the ApiVersions v0 response");
    (error, table)
}

// ---------------------------------------------------------------------------------------------
// Connections

/// How the server answered one request.
#[derive(Debug)]
enum Answer {
    /// It closed the connection (EOF or reset).
    Closed,
    /// A response frame (without its size prefix).
    Reply(Vec<u8>),
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(&server.kafka_addr).unwrap_or_else(|e| {
        panic!(
            "connecting to the Kafka port: {e} (server alive: {})\n--- server stderr\n{}",
            server_alive(server),
            server.stderr()
        )
    });
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("write timeout");
    stream
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
}

/// Reads the next response frame, or sees the connection closed; fails if neither happens
/// within [`PATIENCE`].
fn answer(stream: &mut TcpStream, what: &str) -> Answer {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if is_closed(&e) => return Answer::Closed,
        Err(e) => panic!("{what}: the server neither answered nor closed the connection: {e}"),
    }
    let len = i32::from_be_bytes(len);
    assert!(len >= 4, "{what}: response size {len}");
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).unwrap_or_else(|e| panic!("{what}: reading a {len}-byte response: {e}"));
    Answer::Reply(body)
}

/// Sends `bytes` (the server may close before reading them all) and returns its answer.
fn send(server: &Server, bytes: &[u8], what: &str) -> Answer {
    let mut stream = connect(server);
    match stream.write_all(bytes) {
        Ok(()) => answer(&mut stream, what),
        Err(e) if is_closed(&e) || e.kind() == ErrorKind::BrokenPipe => Answer::Closed,
        Err(e) => panic!("{what}: writing: {e}"),
    }
}

/// The request must close the connection.
fn expect_closed(server: &Server, bytes: &[u8], what: &str) {
    match send(server, bytes, what) {
        Answer::Closed => {}
        Answer::Reply(body) => panic!("{what}: expected the connection closed, got a {}-byte reply", body.len()),
    }
}

/// The request must either close the connection or get a reply to its correlation id.
fn expect_closed_or_reply(server: &Server, bytes: &[u8], correlation: i32, what: &str) -> &'static str {
    match send(server, bytes, what) {
        Answer::Closed => "closed",
        Answer::Reply(body) => {
            assert_eq!(Cursor::new(&body).i32(), correlation, "{what}: reply to another correlation id");
            "replied"
        }
    }
}

/// Sends one request on `stream` and returns the response body after the correlation id.
fn round_trip(stream: &mut TcpStream, request: &[u8], correlation: i32, what: &str) -> Vec<u8> {
    stream.write_all(request).unwrap_or_else(|e| panic!("{what}: writing: {e}"));
    match answer(stream, what) {
        Answer::Reply(body) => {
            assert_eq!(Cursor::new(&body).i32(), correlation, "{what}: reply to another correlation id");
            body[4..].to_vec()
        }
        Answer::Closed => panic!("{what}: the server closed the connection"),
    }
}

/// Produces `batch` to `topic`/0 with Produce v3; returns (error code, base offset).
fn produce(stream: &mut TcpStream, correlation: i32, topic: &str, batch: &[u8], what: &str) -> (i16, i64) {
    let body = round_trip(stream, &produce_v3(correlation, topic, 0, batch), correlation, what);
    let mut c = Cursor::new(&body);
    assert_eq!(c.i32(), 1, "{what}: topics in the response");
    assert_eq!(c.string(), topic);
    assert_eq!(c.i32(), 1, "{what}: partitions in the response");
    assert_eq!(c.i32(), 0, "{what}: partition index");
    let error = c.i16();
    let base_offset = c.i64();
    let _log_append_time = c.i64();
    let _throttle = c.i32();
    assert!(c.done(), "{what}: bytes left after the Produce v3 response");
    (error, base_offset)
}

/// True while the server process runs (not exited, not a zombie waiting to be reaped).
fn server_alive(server: &Server) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    // The state letter follows the parenthesised command name.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

#[test]
fn hostile_frames_get_their_defined_answer_and_the_server_keeps_serving() {
    let server = Server::start();
    server.create_topic("hostile", 1);
    server.create_topic("survivor", 1);

    // A well-behaved connection opened before the hostile ones.
    let mut before = connect(&server);
    let body = round_trip(&mut before, &api_versions_v0(1), 1, "ApiVersions v0 before");
    let (error, table) = parse_api_versions_v0(&mut Cursor::new(&body));
    assert_eq!(error, 0);
    let api_versions = table.iter().find(|(k, _, _)| *k == API_VERSIONS).expect("ApiVersions is advertised");
    assert_eq!(api_versions.1, 0, "ApiVersions v0 is served");

    let mut cases = 0;
    let mut outcomes = Vec::new();

    // Sizes out of bounds: closed before anything is allocated.
    for (len, what) in [
        (i32::MAX, "size 2 GiB - 1"),
        (REQUEST_MAX_BYTES + 1, "size one over the limit"),
        (-1, "size -1"),
        (i32::MIN, "size i32::MIN"),
        (0, "size 0"),
        (7, "size shorter than any request header"),
    ] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 64]);
        expect_closed(&server, &bytes, what);
        cases += 1;
    }

    // ApiVersions at a future version (KIP-511): UNSUPPORTED_VERSION at v0, with the table.
    for version in [4, 99, i16::MAX] {
        let what = format!("ApiVersions v{version}");
        let mut request = header(API_VERSIONS, version, 7, true);
        request.extend_from_slice(&[0, 0, 0]); // empty compact strings and tagged fields
        match send(&server, &frame(&request), &what) {
            Answer::Reply(body) => {
                let mut c = Cursor::new(&body);
                assert_eq!(c.i32(), 7, "{what}: correlation id");
                let (error, table) = parse_api_versions_v0(&mut c);
                assert_eq!(error, UNSUPPORTED_VERSION, "{what}: error code");
                assert!(table.contains(api_versions), "{what}: the table lacks ApiVersions: {table:?}");
            }
            Answer::Closed => panic!("{what}: closed instead of the KIP-511 reply"),
        }
        cases += 1;
    }

    // Unknown API keys and versions outside each advertised range: closed or answered.
    for key in [999, -1, i16::MAX] {
        let what = format!("unknown API key {key}");
        outcomes.push((what.clone(), expect_closed_or_reply(&server, &frame(&header(key, 0, 11, false)), 11, &what)));
        cases += 1;
    }
    for &(key, min, max) in &table {
        let mut versions = vec![max.saturating_add(1), 99];
        if key != API_VERSIONS {
            versions.push(min - 1);
        }
        for version in versions {
            if key == API_VERSIONS && version > max {
                continue; // the KIP-511 case above
            }
            let what = format!("API key {key} v{version} (served: v{min}..v{max})");
            let request = frame(&header(key, version, 13, false));
            outcomes.push((what.clone(), expect_closed_or_reply(&server, &request, 13, &what)));
            cases += 1;
        }
    }

    // Garbage and impossible lengths after a valid header.
    let mut garbage_cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut request = header(API_VERSIONS, 3, 17, true);
    request.extend_from_slice(&[0xff; 32]);
    garbage_cases.push(("ApiVersions v3 + 32 bytes of 0xff".into(), request));
    let mut request = header(API_METADATA, 1, 17, false);
    request.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
    garbage_cases.push(("Metadata v1 + garbage".into(), request));
    let mut request = header(API_METADATA, 1, 17, false);
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&i16::MAX.to_be_bytes()); // a topic name of 32767 bytes, 2 present
    request.extend_from_slice(b"ab");
    garbage_cases.push(("Metadata v1 with a string length past the frame".into(), request));
    let mut request = header(API_METADATA, 1, 17, false);
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&(-7i16).to_be_bytes()); // a negative (non-null) string length
    garbage_cases.push(("Metadata v1 with a string length of -7".into(), request));
    let mut request = API_METADATA.to_be_bytes().to_vec();
    request.extend_from_slice(&1i16.to_be_bytes());
    request.extend_from_slice(&17i32.to_be_bytes());
    request.extend_from_slice(&i16::MAX.to_be_bytes()); // client id longer than the frame
    garbage_cases.push(("a client id longer than the frame".into(), request));
    let mut batch = record_batch(&[("k", "v")], 1_700_000_000_000);
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // record count i32::MAX...
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes()); // ...with a valid CRC
    let produce_huge_count = produce_v3(17, "hostile", 0, &batch);
    garbage_cases.push(("Produce v3 with a record count of i32::MAX".into(), produce_huge_count[4..].to_vec()));
    for (what, request) in garbage_cases {
        outcomes.push((what.clone(), expect_closed_or_reply(&server, &frame(&request), 17, &what)));
        cases += 1;
    }

    // A batch with a bad CRC: CORRUPT_MESSAGE for the partition, and the connection stays open.
    let mut conn = connect(&server);
    let mut batch = record_batch(&[("k1", "one"), ("k2", "two")], 1_700_000_000_000);
    let last = batch.len() - 1;
    batch[last] ^= 0x55;
    let (error, base) = produce(&mut conn, 21, "hostile", &batch, "Produce with a bad CRC");
    assert_eq!((error, base), (CORRUPT_MESSAGE, -1), "Produce with a bad CRC");
    let body = round_trip(&mut conn, &api_versions_v0(22), 22, "ApiVersions after the bad CRC");
    assert_eq!(parse_api_versions_v0(&mut Cursor::new(&body)).0, 0);
    cases += 1;

    // A truncated frame, then the client closes its side: the server closes too.
    let mut conn = connect(&server);
    let mut bytes = 100i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&header(API_VERSIONS, 0, 23, false)[..6]);
    conn.write_all(&bytes).expect("writing a truncated frame");
    conn.shutdown(Shutdown::Write).expect("shutdown");
    assert!(matches!(answer(&mut conn, "truncated frame"), Answer::Closed), "truncated frame: a reply");
    cases += 1;

    // The server survived all of it: alive, no panic, and serving.
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
    let body = round_trip(&mut before, &api_versions_v0(31), 31, "ApiVersions on the connection opened before");
    assert_eq!(parse_api_versions_v0(&mut Cursor::new(&body)).0, 0);
    let mut fresh = connect(&server);
    let body = round_trip(&mut fresh, &api_versions_v0(32), 32, "ApiVersions on a new connection");
    let (error, again) = parse_api_versions_v0(&mut Cursor::new(&body));
    assert_eq!((error, &again), (0, &table));

    let mut conn = connect(&server);
    let records = [("acct-1", "opened"), ("acct-2", "opened"), ("acct-1", "deposited")];
    let (error, base) = produce(&mut conn, 41, "survivor", &record_batch(&records, 1_700_000_000_000), "Produce");
    assert_eq!((error, base), (0, 0), "Produce after the hostile frames");
    let body = round_trip(&mut conn, &fetch_v4(42, "survivor", 0, 0), 42, "Fetch");
    let mut c = Cursor::new(&body);
    let _throttle = c.i32();
    assert_eq!(c.i32(), 1, "topics in the Fetch response");
    assert_eq!(c.string(), "survivor");
    assert_eq!(c.i32(), 1, "partitions in the Fetch response");
    assert_eq!(c.i32(), 0, "partition index");
    assert_eq!(c.i16(), 0, "Fetch error code");
    assert_eq!(c.i64(), 3, "high watermark");
    let _last_stable = c.i64();
    let aborted = c.i32();
    assert!(aborted <= 0, "aborted transactions: {aborted}");
    let fetched = c.bytes().expect("records");
    assert!(c.done(), "bytes left after the Fetch v4 response");
    let mut b = Cursor::new(fetched);
    assert_eq!(b.i64(), 0, "base offset of the fetched batch");
    let length = b.i32();
    assert_eq!(fetched.len(), 12 + length as usize, "one whole batch");
    let _epoch = b.i32();
    assert_eq!(b.i8(), 2, "magic");
    let crc = b.i32() as u32;
    assert_eq!(crc, crc32c(&fetched[21..]), "the fetched batch's CRC");
    assert_eq!(i32::from_be_bytes(fetched[57..61].try_into().expect("4 bytes")), 3, "records in the batch");
    let text = String::from_utf8_lossy(fetched);
    for (key, value) in records {
        assert!(text.contains(key) && text.contains(value), "{key}/{value} missing from the fetched batch");
    }

    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "the server panicked:\n{stderr}");
    let closed = outcomes.iter().filter(|(_, o)| *o == "closed").count();
    for (what, outcome) in &outcomes {
        println!("  {what}: {outcome}");
    }
    println!(
        "kafka hostile frames: cases={cases} passed={cases} closed_or_replied={}/{} server_panics=0",
        closed,
        outcomes.len()
    );
}

/// A request body (after the header) of API `key` at `version` that declares an array of
/// `i32::MAX` entries and then ends: `prefix` holds the fields before the array.
struct HugeArray {
    what: &'static str,
    key: i16,
    version: i16,
    prefix: Vec<u8>,
}

fn huge_array_cases() -> Vec<HugeArray> {
    let s = |text: &str| {
        let mut out = Vec::new();
        string(&mut out, text);
        out
    };
    let cat = |parts: &[&[u8]]| parts.concat();
    vec![
        HugeArray { what: "Metadata v1 topics", key: API_METADATA, version: 1, prefix: vec![] },
        HugeArray {
            what: "Produce v3 topic_data",
            key: API_PRODUCE,
            version: 3,
            prefix: cat(&[&(-1i16).to_be_bytes(), &(-1i16).to_be_bytes(), &30_000i32.to_be_bytes()]),
        },
        HugeArray {
            what: "Fetch v4 topics",
            key: API_FETCH,
            version: 4,
            prefix: cat(&[
                &(-1i32).to_be_bytes(),
                &0i32.to_be_bytes(),
                &1i32.to_be_bytes(),
                &1024i32.to_be_bytes(),
                &[0],
            ]),
        },
        HugeArray { what: "ListOffsets v1 topics", key: 2, version: 1, prefix: (-1i32).to_be_bytes().to_vec() },
        HugeArray {
            what: "OffsetCommit v2 topics",
            key: 8,
            version: 2,
            prefix: cat(&[&s("g"), &1i32.to_be_bytes(), &s("m"), &(-1i64).to_be_bytes()]),
        },
        HugeArray { what: "OffsetFetch v1 topics", key: 9, version: 1, prefix: s("g") },
        HugeArray {
            what: "JoinGroup v0 protocols",
            key: 11,
            version: 0,
            prefix: cat(&[&s("g"), &10_000i32.to_be_bytes(), &s(""), &s("consumer")]),
        },
        HugeArray {
            what: "SyncGroup v0 assignments",
            key: 14,
            version: 0,
            prefix: cat(&[&s("g"), &1i32.to_be_bytes(), &s("m")]),
        },
        HugeArray { what: "DescribeGroups v0 groups", key: 15, version: 0, prefix: vec![] },
        HugeArray { what: "CreateTopics v2 topics", key: 19, version: 2, prefix: vec![] },
        HugeArray { what: "DeleteTopics v1 topic_names", key: 20, version: 1, prefix: vec![] },
        HugeArray { what: "DescribeConfigs v1 resources", key: 32, version: 1, prefix: vec![] },
        HugeArray { what: "DeleteGroups v0 groups_names", key: 42, version: 0, prefix: vec![] },
    ]
}

/// RELIABILITY.md T8's "array count i32::MAX in 8 bytes" (kafka-protocol-rs #152): a 29-byte
/// frame must not make the server allocate for two billion entries. Each API on a fresh
/// server, so that every one that fails is named.
#[test]
fn an_array_count_of_i32_max_closes_the_connection_and_nothing_else() {
    let mut failed = Vec::new();
    for case in huge_array_cases() {
        let server = Server::start();
        let mut request = header(case.key, case.version, 51, false);
        request.extend_from_slice(&case.prefix);
        request.extend_from_slice(&i32::MAX.to_be_bytes());
        request.extend_from_slice(&[0u8; 4]);
        let outcome = expect_closed_or_reply(&server, &frame(&request), 51, case.what);
        // The server must still be there and serving.
        let alive = server_alive(&server)
            && TcpStream::connect(&server.kafka_addr)
                .ok()
                .map(|mut s| {
                    s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
                    s.write_all(&api_versions_v0(52)).is_ok()
                        && matches!(answer(&mut s, "ApiVersions"), Answer::Reply(_))
                })
                .unwrap_or(false);
        println!(
            "  {} with an array of i32::MAX entries: {outcome}, server {}",
            case.what,
            if alive { "alive" } else { "DEAD" }
        );
        if !alive {
            let stderr = server.stderr();
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
            failed.push(format!("{} (frame {}): {last}", case.what, hex(&frame(&request))));
        }
    }
    assert!(failed.is_empty(), "the server died on:\n{}", failed.join("\n"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Decompression bombs spread over the entries of one Produce request (reliability probe 5d)

const MESSAGE_TOO_LARGE: i16 = 10;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// A zstd frame that inflates to `size` zero bytes, written by hand from RFC 8878: a frame
/// header with a 128 KiB window and no content size, then RLE blocks (a 3-byte header and the
/// one byte to repeat) of 128 KiB each. 63 MiB take 2 KiB, the probe's bomb.
fn zstd_rle_frame(size: usize) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec(); // magic
    f.push(0x00); // frame header descriptor: no content size, no checksum, no dictionary
    f.push(7 << 3); // window descriptor: 2^(10 + 7) bytes
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let last = u32::from(left == 0);
        let block_header = last | (1 << 1) | ((n as u32) << 3); // RLE block of n bytes
        f.extend_from_slice(&block_header.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

/// A v2 batch claiming one record, compressed with zstd, whose records inflate to `size`
/// bytes (zeros: the budget is spent before anything would check them as records).
fn zstd_bomb_batch(size: usize) -> Vec<u8> {
    let mut b = record_batch(&[("k", "v")], 1_700_000_000_000);
    b.truncate(61);
    b.extend_from_slice(&zstd_rle_frame(size));
    b[21..23].copy_from_slice(&4i16.to_be_bytes()); // attributes: zstd
    let length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A topic's partition entries in a Produce request: (partition, batch).
type Entries<'a> = Vec<(i32, &'a [u8])>;

/// A Produce v3 request (acks all) of several topics, each with its (partition, batch) entries;
/// partitions may repeat.
fn produce_v3_entries(correlation: i32, topics: &[(&str, Entries<'_>)]) -> Vec<u8> {
    let mut p = header(API_PRODUCE, 3, correlation, false);
    p.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    p.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    p.extend_from_slice(&30_000i32.to_be_bytes()); // timeout
    p.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (topic, entries) in topics {
        string(&mut p, topic);
        p.extend_from_slice(&(entries.len() as i32).to_be_bytes());
        for (partition, batch) in entries {
            p.extend_from_slice(&partition.to_be_bytes());
            p.extend_from_slice(&(batch.len() as i32).to_be_bytes());
            p.extend_from_slice(batch);
        }
    }
    frame(&p)
}

/// The error code of every partition entry of a Produce v3 response, by topic, in order.
fn produce_v3_errors(body: &[u8]) -> Vec<(String, Vec<i16>)> {
    let mut c = Cursor::new(body);
    let topics = c.i32();
    let mut out = Vec::new();
    for _ in 0..topics {
        let name = c.string();
        let parts = c.i32();
        let mut errors = Vec::new();
        for _ in 0..parts {
            let _index = c.i32();
            errors.push(c.i16());
            let _base_offset = c.i64();
            let _log_append_time = c.i64();
        }
        out.push((name, errors));
    }
    let _throttle = c.i32();
    assert!(c.done(), "bytes left after the Produce v3 response");
    out
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib * 1024
}

/// Probe 5d, which took the server to 3.3 GiB with one 131 KiB request: requests of many
/// entries, each a 2 KiB zstd batch inflating to 63 MiB (repeating partitions, naming a topic
/// that does not exist and an internal one), sent by four connections at once. Every entry is
/// refused with its error, the server's peak RSS stays under 400 MiB (without the per-request
/// budget and the cheap checks first, each request alone would inflate 64 × 63 MiB), and an
/// ordinary producer is served afterwards.
#[test]
fn decompression_bombs_over_many_entries_are_bounded_per_request() {
    const PEAK_RSS_MAX: u64 = 400 << 20;
    const CONNECTIONS: usize = 4;
    const REQUESTS: usize = 2;
    let server = Server::start();
    server.create_topic("bombed", 4);
    let bomb = zstd_bomb_batch(63 << 20);
    let bombed: Entries<'_> = (0..48).map(|i| (i % 4, &bomb[..])).collect();
    let nowhere: Entries<'_> = (0..16).map(|_| (0, &bomb[..])).collect();
    let internal: Entries<'_> = vec![(0, &bomb[..])];
    let request = produce_v3_entries(61, &[("bombed", bombed), ("nowhere", nowhere), ("__bombed", internal)]);
    assert!(request.len() < 160 << 10, "the probe's size: {} bytes", request.len());

    std::thread::scope(|s| {
        for n in 0..CONNECTIONS {
            let (server, request) = (&server, &request);
            s.spawn(move || {
                let mut conn = connect(server);
                for r in 0..REQUESTS {
                    let what = format!("bomb request {r} on connection {n}");
                    let errors = produce_v3_errors(&round_trip(&mut conn, request, 61, &what));
                    let expected = [
                        ("bombed".to_string(), vec![MESSAGE_TOO_LARGE; 48]),
                        ("nowhere".to_string(), vec![UNKNOWN_TOPIC_OR_PARTITION; 16]),
                        ("__bombed".to_string(), vec![INVALID_TOPIC_EXCEPTION]),
                    ];
                    assert_eq!(errors, expected, "{what}");
                }
            });
        }
    });

    let peak = peak_rss(server.pid());
    println!("decompression bombs: {} requests of 65 entries, peak RSS {} MiB", CONNECTIONS * REQUESTS, peak >> 20);
    assert!(peak < PEAK_RSS_MAX, "peak RSS {} MiB over {} MiB", peak >> 20, PEAK_RSS_MAX >> 20);
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());

    // Nothing was stored, and an ordinary producer is served.
    let mut conn = connect(&server);
    let (error, base) =
        produce(&mut conn, 62, "bombed", &record_batch(&[("acct-1", "opened")], 1_700_000_000_000), "Produce");
    assert_eq!((error, base), (0, 0), "Produce after the bombs");
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "the server panicked:\n{stderr}");
}

const REQUEST_TIMED_OUT: i16 = 7;

/// `batch` (uncompressed, from [`record_batch`]) rewritten as a zstd batch: its records in one
/// raw (stored) zstd block, which every decoder accepts. Written by hand from RFC 8878 so the
/// test needs no compressor.
fn zstd_raw_batch(batch: &[u8]) -> Vec<u8> {
    let records = &batch[61..];
    assert!(records.len() < 128 << 10, "one raw block");
    let mut b = batch[..61].to_vec();
    b.extend_from_slice(&0xFD2F_B528u32.to_le_bytes()); // magic
    b.push(0x00); // frame header descriptor: no content size, no checksum, no dictionary
    b.push(7 << 3); // window descriptor: 128 KiB
    let block_header = 1 | ((records.len() as u32) << 3); // last, raw, its size
    b.extend_from_slice(&block_header.to_le_bytes()[..3]);
    b.extend_from_slice(records);
    b[21..23].copy_from_slice(&4i16.to_be_bytes()); // attributes: zstd
    let length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Sixteen connections at once, each sending requests of eight zstd bombs (each cut off at the
/// log's 8 MiB batch limit): without a broker-wide budget each request holds its own 8 MiB
/// batch being inflated, so N connections hold N times it (the per-request budget bounds only
/// what one request inflates in all). With `--kafka-decompressed-total-max-bytes` at 32 MiB,
/// at most four batches inflate at once and the others wait their turn: every bomb is refused
/// (`MESSAGE_TOO_LARGE`, or `REQUEST_TIMED_OUT` if it waited half the request timeout), the
/// server's RSS grows by at most the budget plus 32 MiB (frames, threads, the heap; measured:
/// +42 MiB, and +132 MiB with the budget lifted to 4 GiB), and a producer on another
/// connection, alternating plain and valid zstd batches, is acknowledged throughout, in
/// order. Afterwards the whole budget is free: a compressed batch is stored at once.
#[test]
fn concurrent_decompression_bombs_share_one_broker_wide_budget() {
    const CONNECTIONS: usize = 16;
    const REQUESTS: usize = 2;
    const ENTRIES: usize = 8;
    const BUDGET: u64 = 32 << 20;
    let server = Server::start_with(&["--kafka-decompressed-total-max-bytes", &BUDGET.to_string()]);
    server.create_topic("storm", 4);
    server.create_topic("steady", 1);
    let bomb = zstd_bomb_batch(63 << 20);
    let entries: Entries<'_> = (0..ENTRIES as i32).map(|i| (i % 4, &bomb[..])).collect();
    let request = produce_v3_entries(71, &[("storm", entries)]);
    let before = rss(server.pid());
    let stop = AtomicBool::new(false);
    let (produced, slowest, refusals) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut conn = connect(&server);
            let (mut n, mut slowest) = (0i64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) || n < 4 {
                let plain = record_batch(&[("acct-1", "deposited")], 1_700_000_000_000);
                let batch = if n % 2 == 0 { plain } else { zstd_raw_batch(&plain) };
                let started = Instant::now();
                let (error, base) = produce(&mut conn, 2000 + n as i32, "steady", &batch, "produce during the storm");
                assert_eq!((error, base), (0, n), "produce {n} (zstd: {}) during the storm", n % 2 == 1);
                slowest = slowest.max(started.elapsed());
                n += 1;
            }
            (n, slowest)
        });
        let attackers: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let (server, request) = (&server, &request);
                s.spawn(move || {
                    let mut conn = connect(server);
                    let mut refusals = [0usize; 2];
                    for r in 0..REQUESTS {
                        let what = format!("bomb request {r} on connection {c}");
                        let errors = produce_v3_errors(&round_trip(&mut conn, request, 71, &what));
                        assert_eq!(errors.len(), 1, "{what}");
                        for code in &errors[0].1 {
                            match *code {
                                MESSAGE_TOO_LARGE => refusals[0] += 1,
                                REQUEST_TIMED_OUT => refusals[1] += 1,
                                other => panic!("{what}: error {other}"),
                            }
                        }
                    }
                    refusals
                })
            })
            .collect();
        let mut refusals = [0usize; 2];
        for a in attackers {
            let r = a.join().expect("attacker");
            refusals[0] += r[0];
            refusals[1] += r[1];
        }
        stop.store(true, Ordering::Relaxed);
        let (n, slowest) = producer.join().expect("producer");
        (n, slowest, refusals)
    });
    let peak = peak_rss(server.pid());
    let grown = peak.saturating_sub(before);
    println!(
        "decompression storm: {CONNECTIONS} connections x {REQUESTS} requests x {ENTRIES} bombs, {} too large, {} timed \
         out; RSS {} -> peak {} MiB (+{} MiB, budget {} MiB); {produced} produced alongside, slowest {slowest:?}",
        refusals[0],
        refusals[1],
        before >> 20,
        peak >> 20,
        grown >> 20,
        BUDGET >> 20
    );
    assert_eq!(refusals[0] + refusals[1], CONNECTIONS * REQUESTS * ENTRIES);
    assert!(refusals[0] > 0, "no bomb was inflated at all");
    assert!(grown < BUDGET + (32 << 20), "RSS grew by {} MiB with a {} MiB budget", grown >> 20, BUDGET >> 20);
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());

    // Nothing is poisoned and nothing stays charged: a compressed batch is stored at once.
    let mut conn = connect(&server);
    let batch = zstd_raw_batch(&record_batch(&[("acct-2", "opened")], 1_700_000_000_000));
    assert_eq!(produce(&mut conn, 72, "storm", &batch, "zstd produce after the storm"), (0, 0));
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "the server panicked:\n{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Connection and memory budgets (reliability probe 2b, 2c, 2e, 5b)

/// The process's resident set now (`VmRSS`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

/// Waits until the server closes `stream` (EOF or reset), reading and discarding anything it
/// sends; panics after [`PATIENCE`].
fn wait_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_closed(&e) => return,
            Err(e) => panic!("{what}: still open: {e}"),
        }
    }
}

/// A producer on its own connection that produces one small batch after another to `topic`
/// until `stop`; returns how many it produced (each acknowledged, in order) and the slowest.
fn keep_producing(server: &Server, topic: &str, stop: &AtomicBool) -> (usize, Duration) {
    let mut conn = connect(server);
    let (mut n, mut slowest) = (0usize, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let batch = record_batch(&[("acct-1", "deposited")], 1_700_000_000_000);
        let (error, base) = produce(&mut conn, 1000 + n as i32, topic, &batch, "produce during the attack");
        assert_eq!((error, base), (0, n as i64), "produce {n} during the attack");
        slowest = slowest.max(started.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    (n, slowest)
}

/// Probe 2e: 16 connections announce 16 MiB frames and send all but the last byte (without
/// budgets, 256 MiB held until the 10-minute idle timeout; 64 such held 1 GiB). With a 64 MiB
/// budget of queued request bytes and a 2 s request deadline, the server holds at most the
/// budget (plus 64 KiB per connection), closes every one of them at the deadline, and a
/// producer, whose small requests are not charged, is served throughout.
#[test]
fn withheld_frame_bodies_are_bounded_by_the_budget_and_cut_at_the_request_deadline() {
    const ATTACKERS: usize = 16;
    const FRAME: usize = 16 << 20;
    const BUDGET: u64 = 64 << 20;
    let server = Server::start_with(&[
        "--kafka-request-timeout-ms",
        "2000",
        "--kafka-queued-request-max-bytes",
        &BUDGET.to_string(),
    ]);
    server.create_topic("steady", 1);
    let before = rss(server.pid());
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (produced, slowest, closed_after) = std::thread::scope(|s| {
        let producer = s.spawn(|| keep_producing(&server, "steady", &stop));
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|n| {
                let server = &server;
                s.spawn(move || {
                    let mut conn = connect(server);
                    conn.write_all(&(FRAME as i32).to_be_bytes()).expect("size");
                    let chunk = vec![0u8; 1 << 20];
                    let mut sent = 0;
                    // Connections without budget are not read: their writes stall, then fail
                    // when the server closes them.
                    while sent < FRAME - 1 {
                        let n = chunk.len().min(FRAME - 1 - sent);
                        if conn.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        sent += n;
                    }
                    wait_closed(&mut conn, &format!("attacker {n}"));
                    started.elapsed()
                })
            })
            .collect();
        let closed_after: Vec<Duration> = attackers.into_iter().map(|a| a.join().expect("attacker")).collect();
        stop.store(true, Ordering::Relaxed);
        let (produced, slowest) = producer.join().expect("producer");
        (produced, slowest, closed_after)
    });
    let peak = peak_rss(server.pid());
    let grown = peak.saturating_sub(before);
    let last_closed = closed_after.iter().max().copied().unwrap_or_default();
    println!(
        "withheld bodies: {ATTACKERS} x 16 MiB frames, all closed by {last_closed:?}, RSS {} -> peak {} MiB \
         (+{} MiB), {produced} produces meanwhile (slowest {slowest:?})",
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    assert!(
        closed_after.iter().all(|t| *t >= Duration::from_millis(1500)),
        "closed before the deadline: {closed_after:?}"
    );
    assert!(grown < BUDGET + (32 << 20), "RSS grew by {} MiB, over the {} MiB budget", grown >> 20, BUDGET >> 20);
    assert!(produced >= 20, "only {produced} produces during the attack");
    assert!(slowest < Duration::from_secs(1), "a produce took {slowest:?} during the attack");
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
}

/// Probe 2b/2c: an attacker holds every connection the listener admits, half of them fully
/// idle and half with a size sent and the body withheld. Real clients still get in (the
/// longest idle connection is closed to admit each), one that keeps producing is never the one
/// closed, and the withheld frames are closed at the request deadline.
#[test]
fn an_attacker_holding_every_connection_does_not_lock_clients_out() {
    const CAP: usize = 64;
    let server =
        Server::start_with(&["--kafka-connections-max", &CAP.to_string(), "--kafka-request-timeout-ms", "2000"]);
    server.create_topic("steady", 1);
    server.create_topic("newcomers", 1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let producer = s.spawn(|| keep_producing(&server, "steady", &stop));
        std::thread::sleep(Duration::from_millis(100));
        // Twice the cap: the first ones are evicted by the later ones, never the producer.
        let mut held: Vec<(TcpStream, bool)> = Vec::new();
        for n in 0..2 * CAP {
            let mut conn = connect(&server);
            let partial = n % 2 == 1;
            if partial {
                conn.write_all(&1000i32.to_be_bytes()).expect("size");
                conn.write_all(&[0u8; 10]).expect("part of the body");
            }
            held.push((conn, partial));
        }
        // Newcomers connect and produce while the attacker holds the listener.
        for n in 0..10 {
            let mut conn = connect(&server);
            let batch = record_batch(&[("acct-2", "opened")], 1_700_000_000_000);
            let what = format!("newcomer {n}");
            let (error, base) = produce(&mut conn, 2000 + n, "newcomers", &batch, &what);
            assert_eq!((error, base), (0, i64::from(n)), "{what}");
        }
        // The partial frames are all closed by the deadline (if not evicted before).
        let started = Instant::now();
        for (i, (conn, partial)) in held.iter_mut().enumerate() {
            if *partial {
                wait_closed(conn, &format!("attacker connection {i} with a withheld body"));
            }
        }
        println!(
            "lock-out: {} attacker connections at a cap of {CAP}; 10 newcomers served; partial frames closed within {:?}",
            2 * CAP,
            started.elapsed()
        );
        stop.store(true, Ordering::Relaxed);
        let (produced, slowest) = producer.join().expect("the producer kept its connection");
        println!("lock-out: {produced} produces on the first connection meanwhile (slowest {slowest:?})");
        assert!(produced >= 5, "only {produced} produces during the attack");
    });
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
}

/// A Fetch v4 request for `topic`/0 from `offset`, with the same `max_bytes` for the request
/// and the partition, and no wait.
fn fetch_v4_max(correlation: i32, topic: &str, offset: i64, max_bytes: i32) -> Vec<u8> {
    let mut p = header(API_FETCH, 4, correlation, false);
    p.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    p.extend_from_slice(&0i32.to_be_bytes()); // max wait
    p.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    p.extend_from_slice(&max_bytes.to_be_bytes());
    p.push(0); // isolation level
    p.extend_from_slice(&1i32.to_be_bytes()); // topics
    string(&mut p, topic);
    p.extend_from_slice(&1i32.to_be_bytes()); // partitions
    p.extend_from_slice(&0i32.to_be_bytes());
    p.extend_from_slice(&offset.to_be_bytes());
    p.extend_from_slice(&max_bytes.to_be_bytes()); // partition max bytes
    frame(&p)
}

/// The (high watermark, next offset after the last whole batch, batches) of a Fetch v4
/// response of one partition.
fn parse_fetch_v4(body: &[u8], what: &str) -> (i64, Option<i64>, usize) {
    let mut c = Cursor::new(body);
    let _throttle = c.i32();
    assert_eq!(c.i32(), 1, "{what}: topics");
    let _topic = c.string();
    assert_eq!(c.i32(), 1, "{what}: partitions");
    let _index = c.i32();
    assert_eq!(c.i16(), 0, "{what}: error code");
    let high_watermark = c.i64();
    let _last_stable = c.i64();
    let aborted = c.i32();
    assert!(aborted <= 0, "{what}: aborted transactions");
    let records = c.bytes().unwrap_or_default();
    let (mut next, mut batches, mut at) = (None, 0, 0);
    while at + 61 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        if at + 12 + length > records.len() {
            break; // a partial batch at the end, as Kafka may send
        }
        let last_delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().expect("4 bytes"));
        next = Some(base + i64::from(last_delta) + 1);
        batches += 1;
        at += 12 + length;
    }
    (high_watermark, next, batches)
}

/// Probe 5b: sixteen fetches of `max_bytes = 2^31 - 1` at once held 1.24 GiB. Here eight
/// connections each pipeline four such fetches of a 32 MiB partition and do not read their
/// replies (without a budget held until written: 8 x 4 x 32 MiB), while a consumer reads the
/// whole partition. With an 8 MiB fetch budget the server stays within the budget plus a batch
/// per response, and the consumer still gets every batch in order, each response non-empty.
#[test]
fn concurrent_huge_fetches_are_bounded_by_the_fetch_budget() {
    const BATCHES: i64 = 32;
    const BUDGET: u64 = 8 << 20;
    let server = Server::start_with(&["--kafka-fetch-buffered-max-bytes", &BUDGET.to_string()]);
    server.create_topic("big", 1);
    let value = "x".repeat(1 << 20);
    let mut conn = connect(&server);
    for n in 0..BATCHES {
        let batch = record_batch(&[("acct-1", &value)], 1_700_000_000_000);
        assert_eq!(produce(&mut conn, 3000 + n as i32, "big", &batch, "filling"), (0, n), "filling batch {n}");
    }
    let before = peak_rss(server.pid());
    let mut hoarders: Vec<TcpStream> = (0..8)
        .map(|n| {
            let mut conn = connect(&server);
            for r in 0..4 {
                conn.write_all(&fetch_v4_max(4000 + r, "big", 0, i32::MAX))
                    .unwrap_or_else(|e| panic!("hoarder {n}: {e}"));
            }
            conn
        })
        .collect();
    // Give the server time to answer them all into its queues (nobody reads).
    std::thread::sleep(Duration::from_millis(500));
    let mut consumer = connect(&server);
    let (mut offset, mut responses) = (0i64, 0);
    while offset < BATCHES {
        let what = format!("consumer fetch at {offset}");
        let body = round_trip(
            &mut consumer,
            &fetch_v4_max(5000 + responses, "big", offset, i32::MAX),
            5000 + responses,
            &what,
        );
        let (high_watermark, next, batches) = parse_fetch_v4(&body, &what);
        assert_eq!(high_watermark, BATCHES, "{what}");
        assert!(batches >= 1, "{what}: no whole batch");
        offset = next.expect("a batch");
        responses += 1;
    }
    let peak = peak_rss(server.pid());
    let grown = peak.saturating_sub(before);
    println!(
        "huge fetches: 32 pipelined by non-reading clients + a consumer ({responses} responses for {BATCHES} MiB), \
         peak RSS {} -> {} MiB (+{} MiB)",
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    // The budget, plus up to a batch per uncharged response and their encoded copies.
    assert!(grown < 160 << 20, "RSS grew by {} MiB with an {} MiB fetch budget", grown >> 20, BUDGET >> 20);
    // The hoarders get their replies once they read.
    for (n, conn) in hoarders.iter_mut().enumerate() {
        for r in 0..4 {
            let what = format!("hoarder {n} reply {r}");
            match answer(conn, &what) {
                Answer::Reply(body) => {
                    let (_, _, batches) = parse_fetch_v4(&body[4..], &what);
                    assert!(batches >= 1, "{what}: no batch");
                }
                Answer::Closed => panic!("{what}: closed"),
            }
        }
    }
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
}

// ---------------------------------------------------------------------------------------------
// JoinGroup floods (reliability probe 5e, 5f)

const API_JOIN_GROUP: i16 = 11;
const INVALID_REQUEST: i16 = 42;
const MEMBER_ID_REQUIRED: i16 = 79;

/// A JoinGroup v4 (consumer protocol type, one protocol "range" with `metadata`).
fn join_group_v4(correlation: i32, group: &str, member_id: &str, metadata: &[u8]) -> Vec<u8> {
    let mut p = header(API_JOIN_GROUP, 4, correlation, false);
    string(&mut p, group);
    p.extend_from_slice(&10_000i32.to_be_bytes()); // session timeout
    p.extend_from_slice(&10_000i32.to_be_bytes()); // rebalance timeout
    string(&mut p, member_id);
    string(&mut p, "consumer");
    p.extend_from_slice(&1i32.to_be_bytes()); // protocols
    string(&mut p, "range");
    p.extend_from_slice(&(metadata.len() as i32).to_be_bytes());
    p.extend_from_slice(metadata);
    frame(&p)
}

/// A JoinGroup v4 response: (error code, generation, member id).
fn parse_join_group_v4(body: &[u8]) -> (i16, i32, String) {
    let mut c = Cursor::new(body);
    let _throttle = c.i32();
    let error = c.i16();
    let generation = c.i32();
    let _protocol = c.string();
    let _leader = c.string();
    (error, generation, c.string())
}

/// Probe 5e: 10,050 first joins in 0.7 s used to fill a group's member slots with pending ids
/// and lock its consumers out for up to 30 minutes. Here two connections flood first joins on
/// the group while a real consumer joins it (MEMBER_ID_REQUIRED, then with its id): it gets a
/// generation. A join with more than 1 MiB of protocol metadata gets INVALID_REQUEST.
#[test]
fn a_flood_of_first_joins_does_not_lock_a_consumer_out_of_its_group() {
    let server = Server::start();
    let stop = AtomicBool::new(false);
    let flooded = std::thread::scope(|s| {
        let flooders: Vec<_> = (0..2)
            .map(|_| {
                let (server, stop) = (&server, &stop);
                s.spawn(move || {
                    let mut conn = connect(server);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) || n < 11_000 {
                        let body = round_trip(&mut conn, &join_group_v4(7, "victims", "", b"x"), 7, "flood");
                        assert_eq!(parse_join_group_v4(&body).0, MEMBER_ID_REQUIRED, "flooding join {n}");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Let the flood pass the group's 10,000 member slots, then join as a real consumer.
        std::thread::sleep(Duration::from_millis(1500));
        let mut consumer = connect(&server);
        let body = round_trip(&mut consumer, &join_group_v4(8, "victims", "", b"real"), 8, "first join");
        let (error, _, member_id) = parse_join_group_v4(&body);
        assert_eq!(error, MEMBER_ID_REQUIRED, "the real consumer's first join");
        let started = Instant::now();
        let body = round_trip(&mut consumer, &join_group_v4(9, "victims", &member_id, b"real"), 9, "join with its id");
        let (error, generation, joined_as) = parse_join_group_v4(&body);
        let waited = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let flooded: usize = flooders.into_iter().map(|f| f.join().expect("flooder")).sum();
        assert_eq!((error, joined_as.as_str()), (0, member_id.as_str()), "the real consumer joins during the flood");
        assert!(generation >= 1, "generation {generation}");
        println!("join flood: {flooded} first joins; the real consumer joined generation {generation} in {waited:?}");
        flooded
    });
    assert!(flooded > 10_000, "the flood passed the group size: {flooded}");

    let mut conn = connect(&server);
    let body = round_trip(&mut conn, &join_group_v4(10, "fat", "", &vec![0u8; (1 << 20) + 1]), 10, "fat join");
    assert_eq!(parse_join_group_v4(&body).0, INVALID_REQUEST, "a join with over 1 MiB of metadata");
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
}

const API_SYNC_GROUP: i16 = 14;
const GROUP_MAX_SIZE_REACHED: i16 = 81;

/// A SyncGroup v1 that assigns `assignment` to the member itself (a group of one, whose
/// leader it is).
fn sync_group_v1(correlation: i32, group: &str, generation: i32, member_id: &str, assignment: &[u8]) -> Vec<u8> {
    let mut p = header(API_SYNC_GROUP, 1, correlation, false);
    string(&mut p, group);
    p.extend_from_slice(&generation.to_be_bytes());
    string(&mut p, member_id);
    p.extend_from_slice(&1i32.to_be_bytes()); // assignments
    string(&mut p, member_id);
    p.extend_from_slice(&(assignment.len() as i32).to_be_bytes());
    p.extend_from_slice(assignment);
    frame(&p)
}

/// Probe 5f: 15 MiB of protocol metadata per member used to be accepted and held. The caps are
/// 1 MiB per join (over it: INVALID_REQUEST), 64 MiB per group and 256 MiB for every group
/// together (over them: GROUP_MAX_SIZE_REACHED). Five groups of 66 members each join with just
/// under 1 MiB each (330 MiB offered): 256 members are admitted (256 MiB held), at most 64 in a
/// group, and the other 74 are refused. The server's RSS
/// grows by at most what the caps allow to be held (256 MiB) plus one encoded leader response
/// per full group (each carries its group's 64 MiB of member metadata, as Kafka's does) plus
/// 64 MiB for frames in flight; a real consumer with small metadata still joins its own group,
/// syncs, and fetches what was produced.
#[test]
fn protocol_metadata_is_bounded_per_join_per_group_and_in_all() {
    const GROUPS: usize = 5;
    const MEMBERS: usize = 66;
    const CAP_TOTAL: u64 = 256 << 20;
    const CAP_GROUP: u64 = 64 << 20;
    let server = Server::start();
    let before = rss(server.pid());
    // "range" (5 bytes) and the metadata count together, just under the per-join cap.
    let metadata = vec![7u8; (1 << 20) - 100];
    let mut members = Vec::new();
    let mut admitted = [0usize; GROUPS];
    let mut refused = [0usize; GROUPS];
    for (g, refused_here) in refused.iter_mut().enumerate() {
        let group = format!("fat-{g}");
        for m in 0..MEMBERS {
            let what = format!("member {m} of {group}");
            let mut conn = connect(&server);
            let body = round_trip(&mut conn, &join_group_v4(20, &group, "", &metadata), 20, &what);
            let (error, _, member_id) = parse_join_group_v4(&body);
            // A full group (or all groups full) refuses the first join already.
            if error == GROUP_MAX_SIZE_REACHED {
                *refused_here += 1;
                continue;
            }
            assert_eq!(error, MEMBER_ID_REQUIRED, "{what}: first join");
            // The join with its id waits for the join phase to end: read the answers later.
            conn.write_all(&join_group_v4(21, &group, &member_id, &metadata)).expect("join with its id");
            members.push((g, conn, what));
        }
    }
    for (g, conn, what) in &mut members {
        let body = match answer(conn, what) {
            Answer::Reply(body) => body,
            Answer::Closed => panic!("{what}: closed"),
        };
        assert_eq!(Cursor::new(&body).i32(), 21, "{what}: correlation");
        match parse_join_group_v4(&body[4..]).0 {
            0 => admitted[*g] += 1,
            GROUP_MAX_SIZE_REACHED => refused[*g] += 1,
            other => panic!("{what}: error {other}"),
        }
    }
    let peak = peak_rss(server.pid());
    let grown = peak.saturating_sub(before);
    let bound = CAP_TOTAL + 4 * CAP_GROUP + (64 << 20);
    println!(
        "fat joins: {} members x {} KiB offered; admitted per group {admitted:?}, refused {refused:?}; RSS {} -> \
         peak {} MiB (+{} MiB, bound {} MiB)",
        GROUPS * MEMBERS,
        metadata.len() >> 10,
        before >> 20,
        peak >> 20,
        grown >> 20,
        bound >> 20
    );
    // Joins of different connections race, so which members get in varies; how many does not.
    assert_eq!(admitted.iter().sum::<usize>(), 256, "256 MiB in all: {admitted:?}");
    assert!(admitted.iter().all(|&n| n <= 64), "64 MiB per group: {admitted:?}");
    assert_eq!(refused.iter().sum::<usize>(), GROUPS * MEMBERS - 256);
    assert!(grown < bound, "RSS grew by {} MiB, over {} MiB", grown >> 20, bound >> 20);

    // Over the per-join cap: INVALID_REQUEST.
    let mut conn = connect(&server);
    let body = round_trip(&mut conn, &join_group_v4(22, "fatter", "", &vec![0u8; 1 << 20]), 22, "fat join");
    assert_eq!(parse_join_group_v4(&body).0, INVALID_REQUEST, "a join with over 1 MiB of metadata");

    // A real consumer, its subscription a few bytes, still joins its group (the caps have room
    // for it), syncs, and reads what was produced.
    server.create_topic("accounts", 1);
    let mut consumer = connect(&server);
    let (error, _) =
        produce(&mut consumer, 30, "accounts", &record_batch(&[("acct-1", "opened")], 1_700_000_000_000), "produce");
    assert_eq!(error, 0, "produce during the fat groups");
    let body = round_trip(&mut consumer, &join_group_v4(31, "readers", "", b"sub"), 31, "real first join");
    let (error, _, member_id) = parse_join_group_v4(&body);
    assert_eq!(error, MEMBER_ID_REQUIRED);
    let body = round_trip(&mut consumer, &join_group_v4(32, "readers", &member_id, b"sub"), 32, "real join");
    let (error, generation, joined_as) = parse_join_group_v4(&body);
    assert_eq!((error, joined_as.as_str()), (0, member_id.as_str()), "the real consumer joins");
    let body =
        round_trip(&mut consumer, &sync_group_v1(33, "readers", generation, &member_id, b"accounts/0"), 33, "sync");
    let mut c = Cursor::new(&body);
    let _throttle = c.i32();
    assert_eq!(c.i16(), 0, "SyncGroup");
    assert_eq!(c.bytes(), Some(&b"accounts/0"[..]), "its assignment");
    let body = round_trip(&mut consumer, &fetch_v4(34, "accounts", 0, 0), 34, "fetch");
    let (high_watermark, next, batches) = parse_fetch_v4(&body, "fetch");
    assert_eq!((high_watermark, next, batches), (1, Some(1), 1), "the consumer reads the record");
    assert!(server_alive(&server), "the server died\n--- stderr\n{}", server.stderr());
    drop(members);
}
