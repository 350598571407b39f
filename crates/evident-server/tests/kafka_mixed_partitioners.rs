//! Mixed Kafka clients on one topic (issue 12, part 3). librdkafka hashes keys with CRC32 by
//! default, the Java client and evident's HTTP API with murmur2; evident keeps a key in one
//! partition (the key-partition guard), so one 8-partition topic written by both refuses
//! whichever writes a key second. These tests show the three writers agreeing once they use one
//! hash (librdkafka's `partitioner=murmur2_random`, or the topic config
//! `evident.key.partitioner=crc32`), the refusal naming the producer's partitioner and the way
//! out (in the server's log line and the Java client's exception), and each of librdkafka's
//! partitioners placing keys where `evident_core::partitioner` computes.
//!
//! The librdkafka producer is the `rdkafka` crate (bundled librdkafka); the Java producer is
//! Kafka's own `kafka-console-producer` with its defaults (skipped, with a line, when
//! `scripts/java-setup.sh` has not been run, as the other JVM tests are).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::jvm::{self, Java};
use common::{run_with_limit, Server};
use evident_core::partitioner::KeyPartitioner;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde_json::json;

const PARTITIONS: u32 = 8;
const KEYS: usize = 200;
/// The longest a delivery report or a Java run may take (a hang guard; they take seconds).
const PATIENCE: Duration = Duration::from_secs(120);

fn key(i: usize) -> String {
    format!("order-{i}")
}

/// Delivery reports by key: the partition a record went to, or librdkafka's error text.
type Reports = Arc<Mutex<HashMap<String, Result<i32, String>>>>;

struct Reporter(Reports);

impl ClientContext for Reporter {}

impl ProducerContext for Reporter {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &DeliveryResult<'_>, key: Box<String>) {
        let report = match result {
            Ok(m) => Ok(rdkafka::Message::partition(m)),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().expect("reports").insert(*key, report);
    }
}

/// Sends one record per key to `topic` with librdkafka's `partitioner` (None: its default),
/// letting it choose the partition; the delivery report of each key.
fn librdkafka_send(
    bootstrap: &str,
    topic: &str,
    partitioner: Option<&str>,
    keys: &[String],
    value: impl Fn(&str) -> String,
) -> HashMap<String, Result<i32, String>> {
    let reports = Reports::default();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("acks", "all").set("message.timeout.ms", "30000");
    if let Some(p) = partitioner {
        config.set("partitioner", p);
    }
    let producer: BaseProducer<Reporter> = config.create_with_context(Reporter(reports.clone())).expect("producer");
    for k in keys {
        let payload = value(k);
        let record = BaseRecord::with_opaque_to(topic, Box::new(k.clone())).key(k).payload(&payload);
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer.flush(PATIENCE).expect("flushed");
    let started = Instant::now();
    loop {
        producer.poll(Duration::from_millis(20));
        let got = reports.lock().expect("reports");
        if got.len() == keys.len() {
            return got.clone();
        }
        drop(got);
        assert!(started.elapsed() < PATIENCE, "delivery reports did not all come");
    }
}

/// Runs Kafka's console producer (the Java client with its defaults, murmur2) on `key\tvalue`
/// lines; its stderr, where it prints each send's exception.
fn java_send(java: &Java, bootstrap: &str, topic: &str, lines: &[(String, String)]) -> String {
    let input: String = lines.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    let mut cmd = java.command();
    cmd.arg("org.apache.kafka.tools.ConsoleProducer").args(["--bootstrap-server", bootstrap, "--topic", topic]).args([
        "--reader-property",
        "parse.key=true",
        "--command-property",
        "acks=all",
    ]);
    let run = run_with_limit(&mut cmd, Some(input.as_bytes()), PATIENCE);
    assert_eq!(run.code, Some(0), "console producer\n--- stdout\n{}\n--- stderr\n{}", run.stdout, run.stderr);
    run.stderr
}

/// A stream read back over HTTP: the partition of each event and its `from` field.
fn stream(server: &Server, topic: &str, key: &str) -> Vec<(u64, String)> {
    let body = server.get_ok(&format!("/v1/topics/{topic}/streams/{key}"));
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{topic}/{key}: {body}"))
        .iter()
        .map(|e| (e["partition"].as_u64().expect("partition"), e["data"]["from"].as_str().unwrap_or("?").to_string()))
        .collect()
}

fn http_append_all(server: &Server, topic: &str, keys: &[String]) {
    for k in keys {
        server.append(topic, k, &json!({"events": [{"type": "placed", "data": {"from": "http"}}]}));
    }
}

fn value_from(from: &str) -> impl Fn(&str) -> String + '_ {
    move |_| json!({"from": from}).to_string()
}

/// Each of librdkafka's partitioners places keys where `KeyPartitioner` computes (the hashes
/// checked against the real client, not only against the test vectors of its sources): a fresh
/// topic per partitioner, so the guard does not interfere.
#[test]
fn librdkafka_partitioners_place_keys_where_evident_computes() {
    let server = Server::start();
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let cases = [
        ("consistent", KeyPartitioner::Crc32),
        ("consistent_random", KeyPartitioner::Crc32),
        ("murmur2", KeyPartitioner::Murmur2),
        ("murmur2_random", KeyPartitioner::Murmur2),
        ("fnv1a", KeyPartitioner::Fnv1a),
        ("fnv1a_random", KeyPartitioner::Fnv1a),
    ];
    for (setting, hash) in cases {
        let topic = format!("p-{setting}");
        server.create_topic(&topic, PARTITIONS);
        let reports = librdkafka_send(&server.kafka_bootstrap(), &topic, Some(setting), &keys, value_from(setting));
        for k in &keys {
            let expected = hash.partition(k.as_bytes(), PARTITIONS) as i32;
            assert_eq!(reports[k], Ok(expected), "partitioner={setting}, key {k}");
        }
    }
}

#[test]
fn librdkafka_java_and_http_share_a_topic_once_they_share_a_hash() {
    let Some(java) = jvm::java("librdkafka_java_and_http_share_a_topic_once_they_share_a_hash") else { return };
    let server = Server::start();
    let bootstrap = server.kafka_bootstrap();
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let murmur = |k: &str| KeyPartitioner::Murmur2.partition(k.as_bytes(), PARTITIONS);
    let crc = |k: &str| KeyPartitioner::Crc32.partition(k.as_bytes(), PARTITIONS);

    // One 8-partition topic, the default key partitioner (murmur2): librdkafka told to hash as
    // the Java client does, the Java client with its defaults, and HTTP, the same 200 keys.
    server.create_topic("mixed", PARTITIONS);
    let reports = librdkafka_send(&bootstrap, "mixed", Some("murmur2_random"), &keys, value_from("librdkafka"));
    for k in &keys {
        assert_eq!(reports[k], Ok(murmur(k) as i32), "librdkafka murmur2_random, {k}");
    }
    let lines: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), json!({"from": "java"}).to_string())).collect();
    let java_err = java_send(&java, &bootstrap, "mixed", &lines);
    assert!(!java_err.contains("Exception"), "the Java producer was refused:\n{java_err}");
    http_append_all(&server, "mixed", &keys);
    for k in &keys {
        let events = stream(&server, "mixed", k);
        let expected: Vec<(u64, String)> =
            ["librdkafka", "java", "http"].iter().map(|f| (u64::from(murmur(k)), f.to_string())).collect();
        assert_eq!(events, expected, "stream mixed/{k}: one partition, in the order written");
    }

    // librdkafka with its default partitioner (consistent_random, CRC32): every key CRC32 puts
    // elsewhere is refused (with the rest of its partition's batch), none lands outside its
    // stream's partition, and the server names the partitioner and the way out.
    let reports = librdkafka_send(&bootstrap, "mixed", None, &keys, value_from("librdkafka-default"));
    let moved: Vec<&String> = keys.iter().filter(|k| crc(k) != murmur(k)).collect();
    assert!(moved.len() > KEYS / 2, "CRC32 and murmur2 disagree on most keys: {}", moved.len());
    for k in &moved {
        let report = &reports[*k];
        assert!(
            report.as_ref().is_err_and(|e| e.contains("InvalidRecord") || e.contains("Invalid record")),
            "{k}: {report:?}"
        );
    }
    for (k, report) in &reports {
        if let Ok(p) = report {
            assert_eq!(*p as u32, murmur(k), "{k} was accepted outside its stream's partition");
        }
    }
    // The server logs each refusal at info (below its default level) and warns once a minute
    // per topic with the message the client receives; the key it names is one CRC32 moved.
    let log = server.stderr();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("key-partition guard refused a produce")).collect();
    assert_eq!(warned.len(), 1, "one warn line per topic a minute, not one per refusal:\n{}", warned.join("\n"));
    let sample = warned[0]
        .split("stream mixed/")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no stream named: {}", warned[0]));
    assert!(moved.iter().any(|k| k.as_str() == sample), "{sample} is a key CRC32 moves");
    let message = format!(
        "evident: stream mixed/{sample} lives in partition {} (where the murmur2 partitioner puts its key); a record \
         for it was sent to partition {} (where the crc32 partitioner puts its key). librdkafka's default partitioner \
         (CRC32)? set partitioner=murmur2_random in the producer (this topic places keys with murmur2), or, for keys \
         not yet stored, the topic config evident.key.partitioner=crc32",
        murmur(sample),
        crc(sample)
    );
    assert!(warned[0].contains(&format!("key-partition guard refused a produce: {message}")), "{}", warned[0]);
    for k in &keys {
        let partitions: Vec<u64> = stream(&server, "mixed", k).into_iter().map(|(p, _)| p).collect();
        assert!(partitions.iter().all(|&p| p == u64::from(murmur(k))), "{k}: {partitions:?}");
    }

    // A topic created over Kafka with evident.key.partitioner=crc32 (shown by DescribeConfigs):
    // librdkafka's default and HTTP agree, the Java producer with its defaults is refused.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let topic = NewTopic::new("mixed-crc", PARTITIONS as i32, TopicReplication::Fixed(1))
            .set("evident.key.partitioner", "crc32");
        let created = admin.create_topics([&topic], &AdminOptions::new()).await.expect("create topics");
        assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic("mixed-crc")], &AdminOptions::new())
            .await
            .expect("describe");
        let config = described[0].as_ref().expect("config");
        let entry = config.get("evident.key.partitioner").expect("described");
        assert_eq!((entry.value.as_deref(), entry.is_default), (Some("crc32"), false));
    });
    let reports = librdkafka_send(&bootstrap, "mixed-crc", None, &keys, value_from("librdkafka-default"));
    for k in &keys {
        assert_eq!(reports[k], Ok(crc(k) as i32), "librdkafka default on the crc32 topic, {k}");
    }
    http_append_all(&server, "mixed-crc", &keys);
    for k in &keys {
        let expected: Vec<(u64, String)> =
            ["librdkafka-default", "http"].iter().map(|f| (u64::from(crc(k)), f.to_string())).collect();
        assert_eq!(stream(&server, "mixed-crc", k), expected, "stream mixed-crc/{k}");
    }
    let java_err = java_send(&java, &bootstrap, "mixed-crc", &lines);
    assert!(
        java_err.contains("org.apache.kafka.common.InvalidRecordException: evident: stream mixed-crc/")
            && java_err.contains("The Java client's default partitioner (murmur2, also kafka-python's)?")
            && java_err.contains("evident.key.partitioner=murmur2"),
        "the Java client shows evident's refusal:\n{java_err}"
    );
    for k in &keys {
        let partitions: Vec<u64> = stream(&server, "mixed-crc", k).into_iter().map(|(p, _)| p).collect();
        assert!(partitions.iter().all(|&p| p == u64::from(crc(k))), "{k}: {partitions:?}");
    }
}

/// Changing a topic's partitioner (Kafka's AlterConfigs) moves no stored key: HTTP appends to a
/// key written before go where it lives, and only new keys follow the new hash.
#[test]
fn changing_the_partitioner_moves_no_stored_key() {
    let server = Server::start();
    server.create_topic("moving", PARTITIONS);
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let (old, new) = keys.split_at(KEYS / 2);
    http_append_all(&server, "moving", old);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", server.kafka_bootstrap()).create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let alter = AlterConfig::new(ResourceSpecifier::Topic("moving")).set("evident.key.partitioner", "crc32");
        let altered = admin.alter_configs([&alter], &AdminOptions::new()).await.expect("alter configs");
        assert!(altered.iter().all(|r| r.is_ok()), "{altered:?}");
    });
    let topic = server.get_ok("/v1/topics/moving");
    assert_eq!(topic["config"]["key_partitioner"], "crc32", "{topic}");
    http_append_all(&server, "moving", &keys);
    let moved = old
        .iter()
        .filter(|k| {
            KeyPartitioner::Crc32.partition(k.as_bytes(), PARTITIONS)
                != KeyPartitioner::Murmur2.partition(k.as_bytes(), PARTITIONS)
        })
        .count();
    assert!(moved > 0, "some stored key would move under crc32");
    for (keys, hash, events) in [(old, KeyPartitioner::Murmur2, 2), (new, KeyPartitioner::Crc32, 1)] {
        for k in keys {
            let expected = vec![(u64::from(hash.partition(k.as_bytes(), PARTITIONS)), "http".to_string()); events];
            assert_eq!(stream(&server, "moving", k), expected, "moving/{k}");
        }
    }
}
