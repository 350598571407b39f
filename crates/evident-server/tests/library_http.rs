//! The library's HTTP backend (`evident::HttpBackend`) against the real `evident serve`:
//! appends, reads, idempotent retries, version conflicts, unknown topics, keys that need
//! encoding, the store-wide feed, waiting for commits, a repository running over HTTP, and the
//! same events appended through the embedded and the HTTP backends reading back identically.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use evident::backend::{Direction, StreamPage};
use evident::blocking::Repository;
use evident::{
    Aggregate, Backend, DomainEvent, EmbeddedBackend, Error, EventData, ExpectedVersion, HttpBackend, RecordedEvent,
    RetryPolicy, SnapshotPolicy, StreamQuery, TopicSpec,
};
use evident_core::{Sequence, Version};
use serde::{Deserialize, Serialize};

fn backend(server: &Server) -> HttpBackend {
    HttpBackend::new(server.base()).expect("backend")
}

fn json_event(id: &str, event_type: &str, data: &str) -> EventData {
    let mut e = EventData::json(id, event_type, data.as_bytes().to_vec());
    e.source = Some("/tests".into());
    e
}

fn exact(v: u64) -> ExpectedVersion {
    ExpectedVersion::Exact(Version(v))
}

fn read(b: &dyn Backend, topic: &str, key: &str) -> StreamPage {
    evident::blocking::wait(b.read_stream(topic, key, &StreamQuery::default())).expect("read")
}

fn ids(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_deref().unwrap_or("-")).collect()
}

#[test]
fn append_read_and_retry_idempotently() {
    let server = Server::start();
    let b = backend(&server);
    evident::blocking::wait(b.ensure_topic("bank", TopicSpec::default())).expect("create");
    evident::blocking::wait(b.ensure_topic("bank", TopicSpec { partitions: 3, compacted: true }))
        .expect("an existing topic is fine");
    let (_, topic) = server.get("/v1/topics/bank");
    assert_eq!(topic["partitions"], 1, "an existing topic is left as it is: {topic}");
    evident::blocking::wait(b.ensure_topic("snapshots", TopicSpec { partitions: 2, compacted: true })).expect("create");
    let (_, topic) = server.get("/v1/topics/snapshots");
    assert_eq!((topic["partitions"].as_u64(), topic["config"]["cleanup_policy"].as_str()), (Some(2), Some("compact")));

    let events = [json_event("e0", "Opened", r#"{"owner":"ada"}"#), json_event("e1", "Deposited", r#"{"amount":5}"#)];
    let appended =
        evident::blocking::wait(b.append("bank", "acc-1", ExpectedVersion::NoStream, &events)).expect("append");
    assert_eq!((appended.first_version, appended.last_version, appended.duplicate), (Version(0), Version(1), false));
    let retry = evident::blocking::wait(b.append("bank", "acc-1", ExpectedVersion::NoStream, &events))
        .expect("an idempotent retry");
    assert_eq!(retry, evident::Appended { duplicate: true, ..appended }, "the original positions");
    let more = evident::blocking::wait(b.append(
        "bank",
        "acc-1",
        exact(1),
        &[json_event("e2", "Deposited", r#"{"amount":7}"#)],
    ))
    .expect("ok");
    assert_eq!((more.first_version, more.last_version), (Version(2), Version(2)));
    assert!(more.last_sequence > appended.last_sequence);

    let page = read(&b, "bank", "acc-1");
    assert_eq!(page.current_version, Some(Version(2)));
    assert_eq!(ids(&page.events), ["e0", "e1", "e2"]);
    let first = &page.events[0];
    assert_eq!((first.topic.as_str(), first.key.as_deref(), first.version), ("bank", Some("acc-1"), Some(Version(0))));
    assert_eq!(first.event_type.as_deref(), Some("Opened"));
    assert_eq!(first.data, br#"{"owner":"ada"}"#);
    assert_eq!(first.header_str("ce_source"), Some("/tests"));
    assert_eq!(first.header_str("content-type"), Some("application/json"));
    let now = jiff::Timestamp::now().as_millisecond();
    assert!((now - 60_000..=now).contains(&first.timestamp_ms), "timestamp {}", first.timestamp_ms);

    let q = |from, limit, direction, as_of_version| StreamQuery {
        from_version: from,
        limit,
        direction,
        as_of_version,
        as_of_time_ms: None,
    };
    let page =
        evident::blocking::wait(b.read_stream("bank", "acc-1", &q(None, 2, Direction::Backward, None))).expect("read");
    assert_eq!((ids(&page.events), page.current_version), (vec!["e2", "e1"], Some(Version(2))));
    let page =
        evident::blocking::wait(b.read_stream("bank", "acc-1", &q(Some(Version(1)), 10, Direction::Forward, None)))
            .expect("read");
    assert_eq!(ids(&page.events), ["e1", "e2"]);
    let page =
        evident::blocking::wait(b.read_stream("bank", "acc-1", &q(None, 10, Direction::Forward, Some(Version(1)))))
            .expect("read");
    assert_eq!((ids(&page.events), page.current_version), (vec!["e0", "e1"], Some(Version(2))));
    let page =
        evident::blocking::wait(b.read_stream("bank", "acc-1", &q(None, 0, Direction::Forward, None))).expect("read");
    assert_eq!((page.events.len(), page.current_version), (0, Some(Version(2))), "limit 0: the version alone");
    let before_all = StreamQuery { as_of_time_ms: Some(first.timestamp_ms - 1), ..StreamQuery::default() };
    let page = evident::blocking::wait(b.read_stream("bank", "acc-1", &before_all)).expect("read");
    assert_eq!((page.events.len(), page.current_version), (0, Some(Version(2))), "as of a time before the stream");
    let at_first = StreamQuery { as_of_time_ms: Some(first.timestamp_ms), ..StreamQuery::default() };
    let page = evident::blocking::wait(b.read_stream("bank", "acc-1", &at_first)).expect("read");
    assert!(ids(&page.events).starts_with(&["e0"]), "as of the first event's time");
}

#[test]
fn conflicts_unknown_topics_and_refusals_map_to_the_library_errors() {
    let server = Server::start();
    let b = backend(&server);
    evident::blocking::wait(b.ensure_topic("bank", TopicSpec::default())).expect("create");
    evident::blocking::wait(b.append(
        "bank",
        "k",
        ExpectedVersion::Any,
        &[json_event("a", "A", "1"), json_event("b", "B", "2")],
    ))
    .expect("append");
    match evident::blocking::wait(b.append("bank", "k", exact(5), &[json_event("c", "C", "3")])) {
        Err(Error::WrongExpectedVersion { stream, expected, current }) => {
            assert_eq!((stream.as_str(), expected, current), ("bank/k", exact(5), Some(Version(1))));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    match evident::blocking::wait(b.append("bank", "k", ExpectedVersion::NoStream, &[json_event("c", "C", "3")])) {
        Err(Error::WrongExpectedVersion { current: Some(Version(1)), .. }) => {}
        other => panic!("expected a version conflict, got {other:?}"),
    }
    match evident::blocking::wait(b.append("bank", "new", ExpectedVersion::StreamExists, &[json_event("c", "C", "3")]))
    {
        Err(Error::WrongExpectedVersion { current: None, expected: ExpectedVersion::StreamExists, .. }) => {}
        other => panic!("expected a version conflict, got {other:?}"),
    }
    match evident::blocking::wait(b.append("nope", "k", ExpectedVersion::Any, &[json_event("c", "C", "3")])) {
        Err(Error::UnknownTopic(t)) => assert_eq!(t, "nope"),
        other => panic!("expected an unknown topic, got {other:?}"),
    }
    match evident::blocking::wait(b.append("bank", "k", ExpectedVersion::Any, &[json_event("a", "A", "999")])) {
        Err(Error::Rejected(message)) => assert!(message.contains("id"), "{message}"),
        other => panic!("an id reused with other content is refused, got {other:?}"),
    }
    assert!(matches!(
        evident::blocking::wait(b.append("bank", "k", ExpectedVersion::Any, &[])),
        Err(Error::Rejected(_))
    ));
    assert!(matches!(
        evident::blocking::wait(b.ensure_topic("bad name!", TopicSpec::default())),
        Err(Error::Rejected(_))
    ));
    assert_eq!(read(&b, "nope", "k"), StreamPage::default(), "an unknown topic is an empty page");
    assert_eq!(read(&b, "bank", "nobody"), StreamPage::default(), "an unknown stream is an empty page");
    assert_eq!(read(&b, "bank", ""), StreamPage::default());

    // A server that is not there is unavailable, not a refusal.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let gone = HttpBackend::new(format!("http://127.0.0.1:{port}")).expect("backend");
    assert!(matches!(evident::blocking::wait(gone.head_sequence()), Err(Error::Unavailable(_))));
    assert!(matches!(
        evident::blocking::wait(gone.append("bank", "k", ExpectedVersion::Any, &[json_event("x", "X", "1")])),
        Err(Error::Unavailable(_))
    ));
}

#[test]
fn keys_are_encoded_whatever_they_hold() {
    let server = Server::start();
    let b = backend(&server);
    evident::blocking::wait(b.ensure_topic("t", TopicSpec::default())).expect("create");
    let keys = ["a/b", "with space", "ünï/☃", "100%", "%2F", "?x#y&z=1", "...", "a+b", "back\\slash", ".hidden", "~"];
    for (i, key) in keys.iter().enumerate() {
        let appended = evident::blocking::wait(b.append(
            "t",
            key,
            ExpectedVersion::NoStream,
            &[json_event(&format!("e{i}"), "K", "1")],
        ))
        .expect(key);
        assert_eq!(appended.first_version, Version(0), "{key:?} is a stream of its own");
    }
    for (i, key) in keys.iter().enumerate() {
        let page = read(&b, "t", key);
        assert_eq!(page.events.len(), 1, "{key:?}");
        assert_eq!(page.events[0].key.as_deref(), Some(*key));
        assert_eq!(page.events[0].id, Some(format!("e{i}")));
    }
    let (_, topic) = server.get("/v1/topics/t");
    assert_eq!(topic["streams"], keys.len());
    for unaddressable in [".", ".."] {
        assert!(matches!(
            evident::blocking::wait(b.append("t", unaddressable, ExpectedVersion::Any, &[json_event("x", "X", "1")])),
            Err(Error::Rejected(_))
        ));
    }
}

#[test]
fn read_all_and_head_sequence() {
    let server = Server::start();
    let b = backend(&server);
    let head0 = evident::blocking::wait(b.head_sequence()).expect("head");
    assert!(evident::blocking::wait(b.read_all(Sequence(0), 100)).expect("read").is_empty());
    evident::blocking::wait(b.ensure_topic("a", TopicSpec::default())).expect("create");
    evident::blocking::wait(b.ensure_topic("b", TopicSpec { partitions: 4, compacted: false })).expect("create");
    for i in 0..30 {
        let topic = if i % 3 == 0 { "a" } else { "b" };
        evident::blocking::wait(b.append(
            topic,
            &format!("k{}", i % 7),
            ExpectedVersion::Any,
            &[json_event(&format!("e{i}"), "E", "1")],
        ))
        .expect("append");
    }
    let all = evident::blocking::wait(b.read_all(Sequence(0), 1000)).expect("read");
    assert_eq!(all.len(), 30);
    let names: Vec<String> = (0..30).map(|i| format!("e{i}")).collect();
    assert_eq!(ids(&all), names.iter().map(String::as_str).collect::<Vec<_>>(), "commit order");
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let head = evident::blocking::wait(b.head_sequence()).expect("head");
    assert_eq!(head, all.last().expect("last").sequence.next());
    assert!(head > head0);
    let page = evident::blocking::wait(b.read_all(all[10].sequence, 5)).expect("read");
    assert_eq!(ids(&page), ids(&all[10..15]));
    assert!(evident::blocking::wait(b.read_all(head, 10)).expect("read").is_empty());
    assert!(evident::blocking::wait(b.read_all(Sequence(0), 0)).expect("read").is_empty());
    // Pages follow `next_sequence` across internal records (a committed consumer offset).
    server.post_expect(
        "/v1/groups/g/offsets",
        &serde_json::json!({"offsets": [{"topic": "a", "partition": 0, "offset": 1}]}),
        200,
    );
    evident::blocking::wait(b.append("a", "k0", ExpectedVersion::Any, &[json_event("after", "E", "1")]))
        .expect("append");
    let tail = evident::blocking::wait(b.read_all(head, 10)).expect("read");
    assert_eq!(ids(&tail), ["after"], "the internal record is skipped, the event after it found");
    assert!(evident::blocking::wait(b.head_sequence()).expect("head") > tail[0].sequence);
}

#[test]
fn wait_for_sequence_times_out_or_wakes_up() {
    let server = Server::start();
    let b = backend(&server);
    evident::blocking::wait(b.ensure_topic("t", TopicSpec::default())).expect("create");
    evident::blocking::wait(b.append("t", "k", ExpectedVersion::Any, &[json_event("first", "E", "1")]))
        .expect("append");
    let head = evident::blocking::wait(b.head_sequence()).expect("head");
    assert!(
        evident::blocking::wait(b.wait_for_sequence(Sequence(0), Duration::from_secs(5))).expect("wait"),
        "already there"
    );
    assert!(
        evident::blocking::wait(b.wait_for_sequence(Sequence(0), Duration::ZERO)).expect("wait"),
        "already there, no wait"
    );
    assert!(!evident::blocking::wait(b.wait_for_sequence(head, Duration::ZERO)).expect("wait"));

    let start = Instant::now();
    assert!(
        !evident::blocking::wait(b.wait_for_sequence(head, Duration::from_millis(400))).expect("wait"),
        "nothing comes"
    );
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(390) && waited < Duration::from_secs(5), "waited {waited:?}");

    let writer = {
        let b = b.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            evident::blocking::wait(b.append("t", "k", ExpectedVersion::Any, &[json_event("second", "E", "2")]))
                .expect("append")
        })
    };
    let start = Instant::now();
    assert!(
        evident::blocking::wait(b.wait_for_sequence(head, Duration::from_secs(20))).expect("wait"),
        "woken by the append"
    );
    let waited = start.elapsed();
    let appended = writer.join().expect("writer");
    assert!(waited < Duration::from_secs(10), "woken promptly, not at the deadline: {waited:?}");
    assert_eq!(appended.last_sequence, head);
    assert_eq!(ids(&evident::blocking::wait(b.read_all(head, 10)).expect("read")), ["second"]);
}

#[test]
fn a_wait_ends_with_the_server() {
    let mut server = Server::start();
    let b = backend(&server);
    let head = evident::blocking::wait(b.head_sequence()).expect("head");
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        (evident::blocking::wait(b.wait_for_sequence(head, Duration::from_secs(60))), start.elapsed())
    });
    // The subscription is open once the server counts it.
    common::eventually("the wait's subscription", || server.metric("evident_http_open_subscriptions") == Some(1.0));
    let (code, _, stderr) = server.sigterm();
    assert_eq!(code, Some(0), "{stderr}");
    let (result, waited) = waiter.join().expect("waiter");
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(waited < Duration::from_secs(30), "ended with the server, not at the deadline: {waited:?}");
}

/// Appends the same events through `b`, in the same order: the cases the library produces and
/// the ones the HTTP API can carry.
fn same_writes(b: &dyn Backend) -> Vec<evident::Appended> {
    evident::blocking::wait(b.ensure_topic("orders", TopicSpec { partitions: 3, compacted: false })).expect("create");
    evident::blocking::wait(b.ensure_topic("orders-snapshots", TopicSpec { partitions: 1, compacted: true }))
        .expect("create");
    let h = |k: &str, v: Option<&[u8]>| (k.to_string(), v.map(<[u8]>::to_vec));
    let mut full = json_event("full", "Placed", "{ \"items\" : [1, 2.50, \"é\\u00e9\"] ,\"n\":null }");
    full.time = Some("2026-01-02T03:04:05.678+01:00".into());
    full.extra_headers = vec![
        h("ce_subject", Some(b"order/7")),
        h("ce_dataschema", Some(b"https://example.com/schema")),
        h("evident-schema-version", Some(b"2")),
        h("flag", None),
        h("tenant", Some("acmé".as_bytes())),
    ];
    let mut binary = EventData {
        id: "bin".into(),
        event_type: "Blob".into(),
        source: Some("/tests".into()),
        content_type: Some("application/octet-stream".into()),
        data: vec![0, 159, 255, b'{'],
        ..EventData::default()
    };
    binary.extra_headers = vec![h("z-last", Some(b""))];
    let text_json = EventData {
        content_type: Some("text/plain".into()),
        data: b"{\"looks\": \"like JSON\"}".to_vec(),
        ..json_event("txt", "Note", "")
    };
    let empty = json_event("empty", "Empty", "");
    let null = json_event("null", "Null", "null");
    let custom_type = EventData {
        content_type: Some("application/cloudevents+json; charset=utf-8".into()),
        ..json_event("ct", "Ct", "[]")
    };
    let mut out = vec![
        evident::blocking::wait(b.append("orders", "o-1", ExpectedVersion::NoStream, &[full, binary])).expect("append"),
        evident::blocking::wait(b.append(
            "orders",
            "o/2 ☃",
            ExpectedVersion::Any,
            &[text_json, empty, null, custom_type],
        ))
        .expect("append"),
    ];
    for i in 0..5 {
        let e = json_event(&format!("m{i}"), "Moved", &format!("{{\"to\":{i}}}"));
        out.push(
            evident::blocking::wait(b.append("orders", &format!("o-{}", i % 3), ExpectedVersion::Any, &[e]))
                .expect("append"),
        );
    }
    let mut snapshot = json_event("snapshot-3", "$snapshot", r#"{"state":{"n":3}}"#);
    snapshot.extra_headers = vec![h("evident-schema-version", Some(b"1")), h("evident-snapshot-version", Some(b"3"))];
    out.push(
        evident::blocking::wait(b.append("orders-snapshots", "o-1", ExpectedVersion::Any, &[snapshot]))
            .expect("append"),
    );
    out
}

/// `e` with its timestamp set aside (the two stores' clocks differ).
fn without_time(e: &RecordedEvent) -> RecordedEvent {
    RecordedEvent { timestamp_ms: 0, ..e.clone() }
}

#[test]
fn the_embedded_and_the_http_backends_read_the_same_records() {
    let server = Server::start();
    let http = backend(&server);
    let dir = tempfile::tempdir().expect("tmp");
    let embedded = EmbeddedBackend::open(dir.path()).expect("open");
    let before = jiff::Timestamp::now().as_millisecond();
    let via_embedded = same_writes(&embedded);
    let via_http = same_writes(&http);
    let after = jiff::Timestamp::now().as_millisecond();
    assert_eq!(via_embedded, via_http, "the same positions");

    let e_all = evident::blocking::wait(embedded.read_all(Sequence(0), 1000)).expect("read");
    let h_all = evident::blocking::wait(http.read_all(Sequence(0), 1000)).expect("read");
    assert_eq!(
        e_all.len(),
        via_embedded.iter().map(|a| a.last_version.0 - a.first_version.0 + 1).sum::<u64>() as usize
    );
    assert_eq!(h_all.len(), e_all.len());
    for (e, h) in e_all.iter().zip(&h_all) {
        assert_eq!(without_time(h), without_time(e), "event {:?}", e.id);
        assert!((before..=after).contains(&h.timestamp_ms), "{:?}: timestamp {}", h.id, h.timestamp_ms);
    }
    assert_eq!(
        evident::blocking::wait(embedded.head_sequence()).expect("head"),
        evident::blocking::wait(http.head_sequence()).expect("head")
    );

    let full = &h_all[0];
    assert_eq!(full.data, "{ \"items\" : [1, 2.50, \"é\\u00e9\"] ,\"n\":null }".as_bytes(), "JSON text byte for byte");
    assert_eq!(full.header_str("ce_time"), Some("2026-01-02T03:04:05.678+01:00"));
    assert_eq!(full.header_str("ce_subject"), Some("order/7"));
    assert_eq!(full.schema_version().expect("version"), 2);
    assert_eq!(h_all[1].data, [0, 159, 255, b'{']);

    for (topic, key) in [("orders", "o-1"), ("orders", "o/2 ☃"), ("orders", "o-2"), ("orders-snapshots", "o-1")] {
        for query in [
            StreamQuery::default(),
            StreamQuery { direction: Direction::Backward, limit: 2, ..StreamQuery::default() },
            StreamQuery { from_version: Some(Version(1)), as_of_version: Some(Version(2)), ..StreamQuery::default() },
        ] {
            let e = evident::blocking::wait(embedded.read_stream(topic, key, &query)).expect("read");
            let h = evident::blocking::wait(http.read_stream(topic, key, &query)).expect("read");
            assert_eq!(h.current_version, e.current_version, "{topic}/{key} {query:?}");
            let strip = |p: &StreamPage| p.events.iter().map(without_time).collect::<Vec<_>>();
            assert_eq!(strip(&h), strip(&e), "{topic}/{key} {query:?}");
        }
    }
}

#[test]
fn stream_reads_longer_than_a_server_page_are_one_snapshot() {
    let server = Server::start();
    let b = backend(&server);
    evident::blocking::wait(b.ensure_topic("long", TopicSpec::default())).expect("create");
    let events: Vec<EventData> = (0..10_050).map(|i| json_event(&format!("e{i}"), "E", &i.to_string())).collect();
    for chunk in events.chunks(2_500) {
        evident::blocking::wait(b.append("long", "k", ExpectedVersion::Any, chunk)).expect("append");
    }
    let page =
        evident::blocking::wait(b.read_stream("long", "k", &StreamQuery { limit: 20_000, ..StreamQuery::default() }))
            .expect("read");
    assert_eq!(page.events.len(), 10_050);
    assert_eq!(page.current_version, Some(Version(10_049)));
    assert!(page.events.iter().enumerate().all(|(i, e)| e.version == Some(Version(i as u64))));
    let back = StreamQuery { limit: 10_020, direction: Direction::Backward, ..StreamQuery::default() };
    let page = evident::blocking::wait(b.read_stream("long", "k", &back)).expect("read");
    assert_eq!(page.events.len(), 10_020);
    assert_eq!((page.events[0].version, page.events[10_019].version), (Some(Version(10_049)), Some(Version(30))));
    assert_eq!(evident::blocking::wait(b.read_all(Sequence(0), 10_040)).expect("read").len(), 10_040);
}

// ----- a repository over HTTP -----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { n: i64 },
    Reset,
}
impl DomainEvent for CounterEvent {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[derive(Debug)]
enum CounterCommand {
    Add(i64),
    Reset,
}

impl Aggregate for Counter {
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = String;
    const TOPIC: &'static str = "counters";

    fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, String> {
        match command {
            CounterCommand::Add(n) if *n <= 0 => Err(format!("cannot add {n}")),
            CounterCommand::Add(n) => Ok(vec![CounterEvent::Added { n: *n }]),
            CounterCommand::Reset if self.total == 0 => Ok(vec![]),
            CounterCommand::Reset => Ok(vec![CounterEvent::Reset]),
        }
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added { n } => self.total += n,
            CounterEvent::Reset => self.total = 0,
        }
    }
}

#[test]
fn a_repository_runs_over_http() {
    let server = Server::start();
    let backend: Arc<dyn Backend> = Arc::new(backend(&server));
    let repo = Repository::<Counter>::new(backend.clone()).with_snapshots(SnapshotPolicy::EveryEvents(3));
    repo.ensure_topics().expect("topics");
    for n in 1..=4 {
        let done = repo.execute("c-1", &CounterCommand::Add(n)).expect("execute");
        assert_eq!(done.version, Some(Version(n as u64 - 1)));
    }
    assert!(matches!(repo.execute("c-1", &CounterCommand::Add(0)), Err(evident::CommandError::Domain(_))));
    let first = repo.execute_idempotent("c-1", "cmd-1", &CounterCommand::Add(10)).expect("execute");
    assert!(!first.duplicate);
    let again = repo.execute_idempotent("c-1", "cmd-1", &CounterCommand::Add(10)).expect("execute");
    assert!(again.duplicate, "a command id runs once");
    assert_eq!(again.state.total, 20);

    let loaded = repo.load("c-1").expect("load");
    assert_eq!((loaded.state.total, loaded.version), (20, Some(Version(4))));
    assert_eq!(loaded.snapshot_version, Some(Version(2)), "the snapshot taken at the third event");
    assert_eq!(loaded.events_replayed, 2);
    let from_events = repo.load_from_events("c-1").expect("load");
    assert_eq!((from_events.state.total, from_events.events_replayed), (20, 5));
    let past = repo.load_at("c-1", evident::At::Version(Version(1))).expect("load");
    assert_eq!(past.state.total, 3);

    // Writers racing on one aggregate: every command lands once, after retries.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let retry = RetryPolicy { max_attempts: 1000, ..RetryPolicy::default() };
            let repo = Repository::<Counter>::new(backend.clone()).with_retry(retry);
            std::thread::spawn(move || {
                for _ in 0..10 {
                    repo.execute("c-2", &CounterCommand::Add(1)).expect("execute");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let loaded = Repository::<Counter>::new(backend.clone()).load("c-2").expect("load");
    assert_eq!((loaded.state.total, loaded.version), (40, Some(Version(39))));
    repo.execute("c-2", &CounterCommand::Reset).expect("reset");
    assert_eq!(repo.load("c-2").expect("load").state.total, 0);
}
