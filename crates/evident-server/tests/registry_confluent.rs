//! Confluent's own Python clients, unchanged, against evident's schema registry and Kafka port,
//! and against a real reference registry in the same run (issue 13): confluent-kafka's
//! `SchemaRegistryClient` and its Avro, JSON Schema and Protobuf serializers and deserializers,
//! driven by `tests/registry/confluent_suite.py` (round trips of the seeds' OrderPlaced through
//! Kafka, evolution accepted and refused per compatibility level with Confluent's error codes,
//! an old reader schema reading new data, lookups, versions, deletes, references).
//!
//! evident must pass every check. The same suite runs against Apicurio Registry 3.3.3 (its
//! Confluent-compatible API; `scripts/registry-ref.sh`), with a real Apache Kafka from
//! `scripts/kafka-ref.sh` for the produce/consume checks, and must pass every check there too
//! except the departures from Confluent's documented behaviour listed, with their reasons, in
//! the suite's `KNOWN_DIFFERENCES`. So a check that is wrong (passes nowhere) is caught, and a
//! listed difference that Apicurio turns out to pass is flagged for removal.
//!
//! Needs the Python clients (`scripts/kafka-clients-setup.sh`, `EVIDENT_TEST_PYTHON`; required
//! when `EVIDENT_REQUIRE_KAFKA_CLIENTS=1`). The reference registry runs when
//! `REGISTRY_REF_HOME` names the unpacked Apicurio (`scripts/registry-ref.sh fetch` prints it),
//! and is required when `EVIDENT_REQUIRE_REGISTRY_REF=1`; the reference Kafka when Kafka's jars
//! are set up (`KAFKA_JAVA_LIB` …, required when `EVIDENT_REQUIRE_KAFKA_JAVA=1`), else the
//! reference runs the registry checks only. `scripts/test.sh` sets all of them; without them
//! (a plain `cargo test`) the missing parts print a skip line.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::jvm::{java, repo_root, Reference as KafkaReference};
use common::{kafka_python, run_with_limit, Server, ToolRun};

const TEST: &str = "registry_confluent";

/// The longest one run of the suite may take (a hang guard; it takes well under a minute).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

/// The longest the reference registry may take to start (it takes ~6 s on a quiet machine).
const REF_START_LIMIT: Duration = Duration::from_secs(300);

fn suite_path() -> PathBuf {
    repo_root().join("tests/registry/confluent_suite.py")
}

/// One check's line: its status (PASS, FAIL, SKIP, XFAIL, XPASS) and detail.
type Results = BTreeMap<String, (String, String)>;

fn run_suite(python: &Path, url: &str, bootstrap: &str, reference: Option<&str>) -> (ToolRun, Results) {
    let mut cmd = Command::new(python);
    cmd.arg(suite_path()).args([url, bootstrap]);
    if let Some(r) = reference {
        cmd.args(["--reference", r]);
    }
    let run = run_with_limit(&mut cmd, None, SUITE_LIMIT);
    let mut results = Results::new();
    for line in run.stdout.lines() {
        let Some((status, rest)) = line.split_once(' ') else { continue };
        if !matches!(status, "PASS" | "FAIL" | "SKIP" | "XFAIL" | "XPASS") {
            continue;
        }
        let (name, detail) = rest.split_once(": ").unwrap_or((rest.trim_end_matches(':'), ""));
        results.insert(name.to_string(), (status.to_string(), detail.to_string()));
    }
    (run, results)
}

/// The names of the checks, as the suite lists them.
fn check_names(python: &Path) -> Vec<String> {
    let mut cmd = Command::new(python);
    cmd.arg(suite_path()).args(["-", "-", "--list"]);
    let run = run_with_limit(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "confluent_suite.py --list failed\n--- stderr\n{}", run.stderr);
    run.stdout.lines().map(str::to_string).collect()
}

fn count(results: &Results) -> String {
    let mut counts = BTreeMap::<&str, usize>::new();
    for (status, _) in results.values() {
        *counts.entry(status.as_str()).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(" ")
}

/// Apicurio Registry from `scripts/registry-ref.sh`, stopped when dropped (so also when the test
/// panics).
struct RegistryRef {
    dir: tempfile::TempDir,
    url: String,
}

impl RegistryRef {
    /// The reference registry, or None (after a skip line) when it is not set up and not
    /// required.
    fn start() -> Option<RegistryRef> {
        let required = std::env::var("EVIDENT_REQUIRE_REGISTRY_REF").is_ok_and(|v| v == "1");
        let home = std::env::var_os("REGISTRY_REF_HOME").map(PathBuf::from);
        if !home.as_ref().is_some_and(|h| h.join("quarkus-run.jar").is_file()) {
            let help =
                "run `eval \"$(scripts/registry-ref.sh fetch)\"` and export REGISTRY_REF_HOME (scripts/test.sh does)";
            assert!(
                !required,
                "{TEST}: the reference registry is not set up, and EVIDENT_REQUIRE_REGISTRY_REF=1 ({help})"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED {TEST} against the reference registry: not set up ({help})");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/registry-ref.sh")).args(["start", "--port", "0", "--dir"]).arg(dir.path());
        let run = run_with_limit(&mut cmd, None, REF_START_LIMIT);
        let url = run.stdout.lines().find_map(|l| l.strip_prefix("REGISTRY_REF_URL=")).map(str::to_string);
        let reference = RegistryRef { dir, url: url.clone().unwrap_or_default() };
        assert!(
            run.code == Some(0) && url.is_some(),
            "registry-ref.sh start failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            run.code,
            run.stdout,
            run.stderr
        );
        Some(reference)
    }
}

impl Drop for RegistryRef {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/registry-ref.sh")).args(["stop", "--dir"]).arg(self.dir.path());
        let run = run_with_limit(&mut cmd, None, Duration::from_secs(60));
        if run.code != Some(0) {
            let _ = writeln!(std::io::stderr(), "registry-ref.sh stop failed: {}", run.stderr);
        }
    }
}

/// The lines of `results` whose status is not in `ok`, for a failure message.
fn offenders(results: &Results, ok: &[&str]) -> Vec<String> {
    results
        .iter()
        .filter(|(_, (status, _))| !ok.contains(&status.as_str()))
        .map(|(name, (status, detail))| format!("{status} {name}: {detail}"))
        .collect()
}

#[test]
fn confluent_clients_against_evident_and_the_reference() {
    let Some(python) = kafka_python(TEST) else { return };
    let names = check_names(&python);
    assert!(names.len() >= 30, "the suite lists only {} checks: {names:?}", names.len());

    // The reference side (Apicurio, and a real Kafka when Kafka's jars are here) starts in
    // parallel with evident's run: a JVM takes seconds to start on a small machine.
    let reference = std::thread::spawn({
        let python = python.clone();
        move || {
            let registry = RegistryRef::start()?;
            let kafka = java(TEST).map(|_| KafkaReference::start());
            let bootstrap = kafka.as_ref().map_or_else(|| "-".to_string(), |k| k.bootstrap.clone());
            if kafka.is_none() {
                let _ =
                    writeln!(std::io::stderr(), "{TEST}: the reference runs the registry checks only (no Kafka jars)");
            }
            let (run, results) = run_suite(&python, &registry.url, &bootstrap, Some("apicurio"));
            Some((run, results, kafka.is_some()))
        }
    });

    let server = Server::start();
    let (run, evident) = run_suite(&python, &server.registry_url(""), &server.kafka_bootstrap(), None);
    let reference = reference.join().expect("the reference thread");

    // evident: every check, and every check passes.
    let missing: Vec<&String> = names.iter().filter(|n| !evident.contains_key(*n)).collect();
    let bad = offenders(&evident, &["PASS"]);
    assert!(
        run.code == Some(0) && bad.is_empty() && missing.is_empty(),
        "Confluent's clients against evident: exit {:?}; not passing:\n{}\nno result: {missing:?}\n--- stdout\n{}\n--- stderr\n{}",
        run.code,
        bad.join("\n"),
        run.stdout,
        run.stderr
    );
    let mut figures = format!("evident {}", count(&evident));

    if let Some((run, results, with_kafka)) = reference {
        // The reference: every check ran; each passes or is a listed known difference; a listed
        // difference that passes is reported too (the list must be trimmed); produce/consume
        // checks may be skipped only when no reference Kafka ran.
        let missing: Vec<&String> = names.iter().filter(|n| !results.contains_key(*n)).collect();
        let ok: &[&str] = if with_kafka { &["PASS", "XFAIL"] } else { &["PASS", "XFAIL", "SKIP"] };
        let bad = offenders(&results, ok);
        assert!(
            run.code == Some(0) && bad.is_empty() && missing.is_empty(),
            "Confluent's clients against Apicurio Registry (the reference): exit {:?}; neither passing nor a \
             known difference:\n{}\nno result: {missing:?}\n--- stdout\n{}\n--- stderr\n{}",
            run.code,
            bad.join("\n"),
            run.stdout,
            run.stderr
        );
        figures += &format!(
            ", Apicurio Registry 3.3.3 {}{}",
            count(&results),
            if with_kafka { "" } else { " (registry only)" }
        );
    }
    println!("registry conformance (confluent-kafka serdes): checks={} {figures}", names.len());
}
