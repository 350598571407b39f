//! The schema registry (issue 13): evident's registry beside a real, independent one, the cost
//! of schema validation at produce, and `verify=stored` over a large log.
//!
//! - *Register*: `POST /subjects/{s}/versions` of distinct Avro record schemas, each into its
//!   own subject, one after the other on one keep-alive connection (the lean client of the
//!   HTTP phase, `http_client.rs`); p50/p99 per registration. evident's registrations are
//!   durable when answered (appended to `_schemas`, `fsync = always`); Apicurio's storage is
//!   in-memory H2 (as `scripts/registry-ref.sh` starts it), so it syncs nothing.
//! - *Lookup by id*: `GET /schemas/ids/{id}` over the ids just registered, in turn, with 1 and 8
//!   clients (threads, each on its own connection), for the timed duration; every reply must be
//!   200 and name a schema.
//! - The peer is Apicurio Registry 3.3.3 through its Confluent-compatible API
//!   (`/apis/ccompat/v7`), started by `scripts/registry-ref.sh` (Java 21+; it fetches the app
//!   from Maven Central the first time), skipped with the reason in the header when it cannot
//!   start.
//! - *Produce with validation*: librdkafka through `evident serve`'s Kafka port (the Kafka
//!   phase's producer: acks=all, idempotent, default batching, one partition), Avro records in
//!   Confluent's wire format (magic byte, the schema id registered for `<topic>-value`, the
//!   Avro body; ~200 bytes), to a topic created with `confluent.value.schema.validation=true`
//!   and to one without, the same bytes. The runs go plain, validated, validated, plain (half
//!   the records each), so a drift of the machine's speed over the phase falls on both sides
//!   alike; each figure is records over the two runs' summed time. Then one record that is not
//!   wire format is produced to the validated topic and must be refused, proving the
//!   validation ran.
//! - *verify=stored*: `evident_registry::verify::verify_stored` in process over an embedded
//!   log holding the subject's wire-format records (loaded untimed, batches of 1,000), with a
//!   candidate that adds a field with a default (Avro resolution of every record, writer the
//!   stored id's schema, reader the candidate); events/s over the whole verify, which must
//!   check every record and find no failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use evident_core::batch::{BatchBuilder, NewRecord};
use evident_log::{Log, LogConfig, TopicConfig};
use evident_registry::payload::wire;
use evident_registry::{RegisterOptions, RegistryStore, SchemaId, SchemaInput, SchemaType};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::cli::Plan;
use crate::http_client::Connection;
use crate::kafka::{self, Broker};
use crate::report::{dur, num, Key, Measurement, Report, System};
use crate::stats::Latencies;

/// The script that starts and stops Apicurio Registry (relative to the repository).
const REGISTRY_REF: &str = "scripts/registry-ref.sh";
/// Confluent's request media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long one registry request may take before the workload fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The topics of the produce workloads.
const TOPIC_PLAIN: &str = "registry-bench-plain";
const TOPIC_VALIDATED: &str = "registry-bench-validated";
/// The verify workload's topic (its subject is `<topic>-value`).
const TOPIC_VERIFY: &str = "registry-bench-verify";
/// Records per batch when loading the verify workload's log.
const LOAD_BATCH: usize = 1000;

/// The records' schema: an order event, ~200 bytes encoded with [`record_body`].
const ORDER_SCHEMA: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"bench","fields":[{"name":"id","type":"long"},{"name":"customer","type":"string"},{"name":"amount","type":"double"},{"name":"currency","type":"string"},{"name":"note","type":"string"}]}"#;
/// verify=stored's candidate: [`ORDER_SCHEMA`] with a field added with a default (backward
/// compatible: it reads every stored record, filling the default).
const ORDER_SCHEMA_V2: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"bench","fields":[{"name":"id","type":"long"},{"name":"customer","type":"string"},{"name":"amount","type":"double"},{"name":"currency","type":"string"},{"name":"note","type":"string"},{"name":"channel","type":"string","default":"web"}]}"#;

/// The Avro body of order `id` (before the wire format's five bytes).
fn record_body(schema: &apache_avro::Schema, id: i64) -> Result<Vec<u8>> {
    let value = Avro::Record(vec![
        ("id".into(), Avro::Long(id)),
        ("customer".into(), Avro::String(format!("customer-{:06}", id % 1_000_000))),
        ("amount".into(), Avro::Double(12.5 + (id % 1000) as f64)),
        ("currency".into(), Avro::String("EUR".into())),
        ("note".into(), Avro::String("x".repeat(150))),
    ]);
    let writer = GenericDatumWriter::builder(schema).build().context("an Avro writer")?;
    writer.write_value_to_vec(value).context("encoding an Avro record")
}

/// The i-th distinct schema of the register workload.
fn distinct_schema(i: usize) -> String {
    format!(
        r#"{{"type":"record","name":"Rec{i}","namespace":"bench.register","fields":[{{"name":"id","type":"long"}},{{"name":"f{i}","type":"string"}}]}}"#
    )
}

/// A registry's Confluent API: its origin (`http://HOST:PORT`) and path prefix.
struct Api {
    origin: String,
    prefix: String,
}

impl Api {
    fn new(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").with_context(|| format!("{url} is not an http:// URL"))?;
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        let prefix = if path.is_empty() { String::new() } else { format!("/{}", path.trim_end_matches('/')) };
        Ok(Self { origin: format!("http://{host}"), prefix })
    }

    fn connect(&self) -> Result<Connection> {
        Connection::connect(&self.origin, REQUEST_TIMEOUT)
    }

    /// Registers `schema` (Avro) under `subject`; its id.
    fn register(&self, conn: &mut Connection, subject: &str, schema: &str) -> Result<i32> {
        let body = serde_json::to_vec(&serde_json::json!({ "schema": schema }))?;
        let path = format!("{}/subjects/{subject}/versions", self.prefix);
        let reply = conn.request("POST", &path, Some((CONTENT_TYPE, &body)))?;
        ensure!(reply.status == 200, "POST {path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).context("the registration's reply")?;
        let id = v["id"].as_i64().with_context(|| format!("no id in {v}"))?;
        i32::try_from(id).context("an id out of range")
    }
}

/// Sequential registrations of `n` distinct schemas, each into its own subject.
fn register(system: System, api: &Api, n: usize) -> Result<(Measurement, Vec<i32>)> {
    let mut conn = api.connect()?;
    let mut lat = Latencies::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        ids.push(api.register(&mut conn, &format!("bench-register-{i}-value"), &distinct_schema(i))?);
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    ensure!(distinct.len() == n, "{n} distinct schemas got {} distinct ids", distinct.len());
    let (p50, p99) = lat.p50_p99();
    let m = Measurement::new(
        system,
        Key::RegistryRegister,
        format!("register {} distinct Avro schemas, each into its own subject, sequentially", num(n as f64)),
        n as f64 / secs,
        "registrations/s",
    )
    .latency(p50, p99)
    .note(match system {
        System::Apicurio => "in-memory H2 storage (nothing synced); global rules validity FULL, compatibility BACKWARD",
        _ => "durable when answered (appended to _schemas, fsync=always); compatibility BACKWARD",
    });
    Ok((m, ids))
}

/// `GET /schemas/ids/{id}` over `ids` in turn from `clients` threads for `duration`.
fn lookup(system: System, api: &Api, ids: &[i32], clients: usize, duration: Duration) -> Result<Measurement> {
    ensure!(!ids.is_empty(), "no ids to look up");
    let results: Vec<Result<(u64, Latencies)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || -> Result<(u64, Latencies)> {
                    let mut conn = api.connect()?;
                    let mut lat = Latencies::with_capacity(1 << 16);
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        let id = ids[(c * 7919 + n as usize) % ids.len()];
                        let path = format!("{}/schemas/ids/{id}", api.prefix);
                        let t = Instant::now();
                        let reply = conn.request("GET", &path, None)?;
                        lat.push(t.elapsed());
                        ensure!(
                            reply.status == 200 && memchr::memmem::find(&reply.body, b"\"schema\"").is_some(),
                            "GET {path}: {} {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        );
                        n += 1;
                    }
                    Ok((n, lat))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("a lookup client panicked"))).collect()
    });
    let mut total = 0;
    let mut all = Latencies::with_capacity(1 << 16);
    for r in results {
        let (n, lat) = r?;
        total += n;
        all.merge(lat);
    }
    let (p50, p99) = all.p50_p99();
    Ok(Measurement::new(
        system,
        Key::RegistryLookup { clients },
        format!("GET /schemas/ids/{{id}}, {clients} client(s), {} ids in turn", num(ids.len() as f64)),
        total as f64 / duration.as_secs_f64(),
        "requests/s",
    )
    .latency(p50, p99)
    .note("each client a thread with its own keep-alive connection; every reply checked (200, a schema)"))
}

/// Registers, then looks up by id with 1 and 8 clients, on one registry.
fn registry_workloads(report: &mut Report, failures: &mut Vec<String>, system: System, url: &str, plan: &Plan) {
    let run = |report: &mut Report| -> Result<()> {
        let api = Api::new(url)?;
        let (m, ids) = register(system, &api, plan.registry_schemas)?;
        report.add(m);
        for clients in [1, 8] {
            report.add(lookup(system, &api, &ids, clients, plan.read_duration)?);
        }
        Ok(())
    };
    if let Err(e) = run(report) {
        eprintln!("  FAILED {system} register/lookup: {e:#}");
        failures.push(format!("{system} register/lookup: {e:#}"));
    }
}

/// Creates the plain and the validated topics (one partition each).
fn create_topics(bootstrap: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating the admin client")?;
    let topics = [
        NewTopic::new(TOPIC_PLAIN, 1, TopicReplication::Fixed(1)),
        NewTopic::new(TOPIC_VALIDATED, 1, TopicReplication::Fixed(1)).set("confluent.value.schema.validation", "true"),
    ];
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for r in kafka::block_on(admin.create_topics(&topics, &options)).context("CreateTopics")? {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code}");
        }
    }
    Ok(())
}

/// Produce with validation on and off, ABBA; returns the two rows.
fn produce(broker: &Broker, url: &str, records: u64) -> Result<Vec<Measurement>> {
    let api = Api::new(url)?;
    create_topics(broker.bootstrap())?;
    let mut conn = api.connect()?;
    let id = api.register(&mut conn, &format!("{TOPIC_VALIDATED}-value"), ORDER_SCHEMA)?;
    let schema = apache_avro::Schema::parse_str(ORDER_SCHEMA)?;
    let value = wire::frame(SchemaId(id), &record_body(&schema, 1)?);
    let half = (records / 2).max(2);
    // (records, seconds, p50, p99) summed per side.
    let mut sides = [(0u64, 0f64, Duration::ZERO, Duration::ZERO); 2];
    let mut runs: [Vec<String>; 2] = Default::default();
    for validated in [false, true, true, false] {
        let topic = if validated { TOPIC_VALIDATED } else { TOPIC_PLAIN };
        let m = broker.produce_values(topic, half, &value)?;
        let side = &mut sides[usize::from(validated)];
        let timed = half - 1;
        side.0 += timed;
        side.1 += timed as f64 / m.rate;
        side.2 += m.p50.unwrap_or_default() / 2;
        side.3 += m.p99.unwrap_or_default() / 2;
        runs[usize::from(validated)].push(format!("{} records/s", num(m.rate)));
    }
    // A record that is not wire format must be refused by the validated topic.
    let refused = broker.produce_values(TOPIC_VALIDATED, 2, b"not Confluent wire format");
    ensure!(refused.is_err(), "the validated topic accepted a record that is not in Confluent's wire format");
    Ok([false, true]
        .into_iter()
        .map(|validated| {
            let (n, secs, p50, p99) = sides[usize::from(validated)];
            Measurement::new(
                System::EvidentKafka,
                Key::RegistryProduce { validation: validated },
                format!(
                    "produce {} {}-byte wire-format Avro records, acks=all, idempotent, 1 partition, {}",
                    num(n as f64),
                    value.len(),
                    if validated { "confluent.value.schema.validation=true" } else { "no validation" }
                ),
                n as f64 / secs,
                "records/s",
            )
            .latency(p50, p99)
            .mb(n as f64 * value.len() as f64 / secs / 1e6)
            .note(format!(
                "two runs (order plain, validated, validated, plain) of {} records each: {}; p50/p99 = the runs' means, per record from send() to its delivery report{}",
                num((half - 1) as f64),
                runs[usize::from(validated)].join(", "),
                if validated { "; a non-wire-format record was then refused" } else { "" }
            ))
        })
        .collect())
}

/// verify=stored over `events` wire-format records in an embedded log in `dir`.
fn verify(dir: &Path, events: u64) -> Result<Measurement> {
    let log = Arc::new(Log::open(dir, LogConfig::default()).context("opening the embedded log")?);
    let store = RegistryStore::open(log.clone())?;
    let subject = format!("{TOPIC_VERIFY}-value");
    let input =
        |schema: &str| SchemaInput { schema: schema.into(), schema_type: SchemaType::Avro, references: Vec::new() };
    let id = store.register(&subject, &input(ORDER_SCHEMA), RegisterOptions::default())?.id;
    log.create_topic(TOPIC_VERIFY, TopicConfig { partitions: 1, ..TopicConfig::default() })?;
    let schema = apache_avro::Schema::parse_str(ORDER_SCHEMA)?;
    let load = Instant::now();
    let now = crate::payload::now_ms();
    let mut i = 0u64;
    while i < events {
        let mut b = BatchBuilder::new();
        let n = (events - i).min(LOAD_BATCH as u64);
        for k in 0..n {
            let body = record_body(&schema, (i + k) as i64)?;
            b.push(NewRecord {
                key: None,
                value: Some(wire::frame(id, &body)),
                headers: Vec::new(),
                timestamp_ms: now,
            });
        }
        let outcome = log.append_batch(TOPIC_VERIFY, 0, &b.build(), None)?;
        ensure!(outcome.records.len() as u64 == n, "a load batch was not appended whole");
        i += n;
    }
    let load = load.elapsed();
    let candidate = store.parse(&input(ORDER_SCHEMA_V2))?;
    let start = Instant::now();
    let report = evident_registry::verify::verify_stored(&log, &store, &subject, &candidate, 10)?;
    let elapsed = start.elapsed();
    ensure!(
        report.checked == events && report.failures.is_empty() && !report.stopped_early,
        "verify=stored checked {} of {events} events, failures {:?}",
        report.checked,
        report.failures
    );
    drop(store);
    log.close()?;
    Ok(Measurement::new(
        System::Evident,
        Key::RegistryVerify,
        format!("verify=stored of a candidate Avro schema over {} stored events of its subject", num(events as f64)),
        events as f64 / elapsed.as_secs_f64(),
        "events/s",
    )
    .note(format!(
        "in process (evident_registry::verify::verify_stored over an embedded log); {}-byte wire-format values; candidate adds a field with a default: every event resolved writer→reader; whole verify {}; load (untimed) {}",
        5 + record_body(&schema, 0)?.len(),
        dur(elapsed),
        dur(load)
    )))
}

/// `scripts/registry-ref.sh` of this repository; Err says where it was looked for.
fn registry_ref_script() -> std::result::Result<PathBuf, String> {
    let here = PathBuf::from(REGISTRY_REF);
    if here.is_file() {
        return Ok(here);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(REGISTRY_REF);
    if source.is_file() {
        Ok(source)
    } else {
        Err(format!("no script at {REGISTRY_REF} or {}", source.display()))
    }
}

/// Apicurio, stopped by its script when dropped.
struct Apicurio {
    script: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Apicurio {
    fn start(script: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("bash")
            .arg(script)
            .args(["start", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        // Stopped by Drop from here on, whatever the start said.
        let mut me = Self { script: script.to_path_buf(), dir: dir.to_path_buf(), url: String::new() };
        ensure!(
            out.status.success(),
            "{} start failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        me.url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("REGISTRY_REF_URL="))
            .map(|u| u.trim().trim_matches('\'').to_string())
            .with_context(|| format!("no REGISTRY_REF_URL in the script's output: {stdout}"))?;
        Ok(me)
    }
}

impl Drop for Apicurio {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}

/// The registry phase; returns lines for the results' header (what ran of the peer).
pub fn phase(report: &mut Report, failures: &mut Vec<String>, plan: &Plan, dir: &Path) -> Vec<String> {
    let mut header = Vec::new();
    let fail = |failures: &mut Vec<String>, what: &str, e: anyhow::Error| {
        eprintln!("  FAILED {what}: {e:#}");
        failures.push(format!("{what}: {e:#}"));
    };
    // evident: registry workloads, then produce through the same server's Kafka port.
    match Broker::evident(&dir.join("evident")) {
        Ok(broker) => {
            match broker.registry_url().map(str::to_string) {
                Some(url) => {
                    registry_workloads(report, failures, System::EvidentRegistry, &url, plan);
                    let produced = broker.create_topic().and_then(|()| produce(&broker, &url, plan.registry_records));
                    match produced {
                        Ok(rows) => rows.into_iter().for_each(|m| report.add(m)),
                        Err(e) => fail(failures, "evident Kafka produce with validation", e),
                    }
                }
                None => fail(failures, "evident registry", anyhow::anyhow!("evident serve announced no registry")),
            }
            if let Err(e) = broker.stop() {
                fail(failures, "evident stop", e);
            }
        }
        Err(e) => fail(failures, "evident start", e),
    }
    // The peer.
    match registry_ref_script() {
        Ok(script) => {
            let started = Instant::now();
            match Apicurio::start(&script, &dir.join("apicurio")) {
                Ok(apicurio) => {
                    header.push(format!(
                        "schema registry peer: Apicurio Registry 3.3.3 (ccompat API, in-memory storage) started by {} in {} on 127.0.0.1",
                        script.display(),
                        dur(started.elapsed())
                    ));
                    registry_workloads(report, failures, System::Apicurio, &apicurio.url, plan);
                }
                Err(e) => header.push(format!("schema registry peer: Apicurio skipped (it did not start: {e:#})")),
            }
        }
        Err(at) => header.push(format!("schema registry peer: Apicurio skipped ({at})")),
    }
    let verify_dir = dir.join("verify");
    match verify(&verify_dir, plan.verify_events) {
        Ok(m) => report.add(m),
        Err(e) => fail(failures, "verify=stored", e),
    }
    let _ = std::fs::remove_dir_all(&verify_dir);
    for line in &header {
        eprintln!("  {line}");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_url_splits_into_origin_and_prefix() {
        let a = Api::new("http://127.0.0.1:8080/apis/ccompat/v7").expect("url");
        assert_eq!((a.origin.as_str(), a.prefix.as_str()), ("http://127.0.0.1:8080", "/apis/ccompat/v7"));
        let e = Api::new("http://127.0.0.1:8081").expect("url");
        assert_eq!((e.origin.as_str(), e.prefix.as_str()), ("http://127.0.0.1:8081", ""));
        assert!(Api::new("https://x").is_err());
    }

    #[test]
    fn the_records_decode_with_the_candidate() {
        let writer = apache_avro::Schema::parse_str(ORDER_SCHEMA).expect("schema");
        let reader = apache_avro::Schema::parse_str(ORDER_SCHEMA_V2).expect("schema");
        let body = record_body(&writer, 42).expect("encode");
        assert!((180..=220).contains(&(body.len() + 5)), "{} bytes", body.len() + 5);
        let read = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
            .reader_schema(&reader)
            .build()
            .expect("a reader")
            .read_value(&mut &body[..])
            .expect("resolves");
        let Avro::Record(fields) = read else { panic!("not a record: {read:?}") };
        assert_eq!(fields.last(), Some(&("channel".to_string(), Avro::String("web".into()))));
    }

    #[test]
    fn distinct_schemas_parse_and_differ() {
        let a = apache_avro::Schema::parse_str(&distinct_schema(1)).expect("schema");
        let b = apache_avro::Schema::parse_str(&distinct_schema(2)).expect("schema");
        assert_ne!(a.canonical_form(), b.canonical_form());
    }
}
