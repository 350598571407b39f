//! The JVM side of the Kafka conformance tests (issues 12 and 14), shared by `kafka_jvm_tools.rs`
//! (Kafka's command-line tools), `kafka_java_client.rs` (the Java client and Kafka Streams),
//! `kafka_java_transactions.rs`, `kafka_streams_eos.rs` and the transaction tests: where
//! `scripts/java-setup.sh` put Kafka's jars and the compiled Java programs, a `java` command on
//! them, a real Apache Kafka broker (`scripts/kafka-ref.sh`) to run every probe against beside
//! evident, and the comparison of a probe program's lines on the two servers. Also a
//! three-node reference cluster one broker of which a test kills with SIGKILL and starts again
//! (`kafka_ref_cluster.rs`, issue 16's fault tests).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::run_with_limit;

/// Where `scripts/java-setup.sh` put the jars, the compiled runner and the log4j configs.
pub struct Java {
    pub lib: PathBuf,
    pub classes: PathBuf,
    pub conf: PathBuf,
}

fn java_required() -> bool {
    std::env::var("EVIDENT_REQUIRE_KAFKA_JAVA").is_ok_and(|v| v == "1")
}

/// The JVM side, or None (after a skip line) when it is not installed and not required.
pub fn java(test: &str) -> Option<Java> {
    let dir = |key: &str| std::env::var_os(key).map(PathBuf::from).filter(|p| p.is_dir());
    match (dir("KAFKA_JAVA_LIB"), dir("KAFKA_JAVA_CLASSES"), dir("KAFKA_JAVA_CONF")) {
        (Some(lib), Some(classes), Some(conf)) => Some(Java { lib, classes, conf }),
        _ => {
            let help = "run `eval \"$(scripts/java-setup.sh)\"` and export KAFKA_JAVA_LIB KAFKA_JAVA_CLASSES \
                        KAFKA_JAVA_CONF (scripts/test.sh does)";
            assert!(!java_required(), "{test}: Kafka's jars are not set up, and EVIDENT_REQUIRE_KAFKA_JAVA=1 ({help})");
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: Kafka's jars are not set up ({help})");
            None
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A real Apache Kafka from `scripts/kafka-ref.sh`, stopped when dropped, so also when the test
/// panics: one combined broker+controller ([`Reference::start`]), or a cluster of three
/// ([`Reference::start_nodes`]: replication factor 3, min.insync.replicas 2) one node of which
/// can crash and rejoin ([`Reference::kill9_node`], [`Reference::resume_node`]).
pub struct Reference {
    pub dir: tempfile::TempDir,
    /// Every node's client listener, `host:port,...`, in node order.
    pub bootstrap: String,
    /// How many nodes the reference has (1 or 3).
    pub nodes: usize,
}

/// A three-node reference (the same type: the name says what a test relies on).
pub type Cluster = Reference;

impl Reference {
    /// One node, as the conformance tests use it.
    pub fn start() -> Reference {
        Reference::start_nodes(1)
    }

    /// `nodes` (1 or 3) combined broker+controller nodes on free ports of 127.0.0.1; waits
    /// (bounded) until every node serves.
    pub fn start_nodes(nodes: usize) -> Reference {
        Reference::launch(nodes, &[])
    }

    /// As [`Reference::start_nodes`], each node running as a system user of its own, so that
    /// one can be cut off the network ([`Reference::cut_node`]; needs root and nft).
    pub fn start_nodes_cuttable(nodes: usize) -> Reference {
        Reference::launch(nodes, &["--own-users"])
    }

    fn launch(nodes: usize, extra: &[&str]) -> Reference {
        assert!(nodes == 1 || nodes == 3, "kafka-ref.sh runs 1 or 3 nodes, not {nodes}");
        let dir = tempfile::tempdir().expect("tempdir");
        // Node i listens on P+2i (clients) and P+2i+1 (controller).
        let port = free_port_run(2 * nodes as u16);
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/kafka-ref.sh"))
            .args(["start", "--nodes", &nodes.to_string(), "--port", &port.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(dir.path());
        let run = run_with_limit(&mut cmd, None, Duration::from_secs(300));
        let bootstrap = run.stdout.lines().find_map(|l| l.strip_prefix("KAFKA_REF_BOOTSTRAP=")).map(str::to_string);
        // Built before the check, so that a failed start still stops whatever did start.
        let reference = Reference { dir, bootstrap: bootstrap.clone().unwrap_or_default(), nodes };
        assert!(
            run.code == Some(0) && bootstrap.is_some(),
            "kafka-ref.sh start failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            run.code,
            run.stdout,
            run.stderr
        );
        reference
    }

    /// Node `i`'s client listener (`host:port`); its Kafka node id (broker id) is `i + 1`.
    pub fn node_address(&self, i: usize) -> &str {
        self.bootstrap.split(',').nth(i).unwrap_or_else(|| panic!("no node {i} in {}", self.bootstrap))
    }

    /// Kills every node with SIGKILL (a crash: no controlled shutdown), keeping their storage.
    pub fn kill9(&self) {
        self.script(&["kill"], Duration::from_secs(60));
    }

    /// Starts the killed nodes again on the same storage and ports, and waits until they serve
    /// (they recover their logs first, as after any crash).
    pub fn resume(&self) {
        self.script(&["resume"], Duration::from_secs(300));
    }

    /// Kills node `i` alone with SIGKILL, keeping its storage; the other nodes run on.
    pub fn kill9_node(&self, i: usize) {
        assert!(i < self.nodes, "no node {i} in a {}-node reference", self.nodes);
        self.script(&["kill", "--node", &i.to_string()], Duration::from_secs(60));
    }

    /// Starts killed node `i` again on its storage and ports, and waits until it serves (it has
    /// logged that it started and accepts connections; catching up with the leaders and
    /// rejoining the ISRs comes after).
    pub fn resume_node(&self, i: usize) {
        assert!(i < self.nodes, "no node {i} in a {}-node reference", self.nodes);
        self.script(&["resume", "--node", &i.to_string()], Duration::from_secs(300));
    }

    /// Cuts node `i` off the network (every packet its sockets send is dropped: clients and
    /// peers reach it no more, nor it them) while it runs on; started with
    /// [`Reference::start_nodes_cuttable`].
    pub fn cut_node(&self, i: usize) {
        assert!(i < self.nodes, "no node {i} in a {}-node reference", self.nodes);
        self.script(&["cut", "--node", &i.to_string()], Duration::from_secs(30));
    }

    /// Ends node `i`'s cut.
    pub fn heal_node(&self, i: usize) {
        assert!(i < self.nodes, "no node {i} in a {}-node reference", self.nodes);
        self.script(&["heal", "--node", &i.to_string()], Duration::from_secs(30));
    }

    fn script(&self, args: &[&str], limit: Duration) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/kafka-ref.sh")).args(args).arg("--dir").arg(self.dir.path());
        let run = run_with_limit(&mut cmd, None, limit);
        assert_eq!(
            run.code,
            Some(0),
            "kafka-ref.sh {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout,
            run.stderr
        );
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/kafka-ref.sh")).args(["stop", "--dir"]).arg(self.dir.path());
        let run = run_with_limit(&mut cmd, None, Duration::from_secs(120));
        if run.code != Some(0) {
            let _ = writeln!(std::io::stderr(), "kafka-ref.sh stop failed: {}", run.stderr);
        }
    }
}

/// A port P such that P and P+1 (the reference's client and controller listeners) are free now.
pub fn free_port_pair() -> u16 {
    free_port_run(2)
}

/// A port P such that P..P+count are all free now (a reference of count/2 nodes).
pub fn free_port_run(count: u16) -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port.checked_add(count - 1).is_some()
            && (1..count).all(|k| TcpListener::bind(("127.0.0.1", port + k)).is_ok())
        {
            return port;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

impl Java {
    /// `java` with Kafka's jars and the compiled programs on the class path, logging as Kafka's
    /// tools do (WARN and above, to stderr), with a bounded heap (two JVMs and two servers share
    /// a small machine).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("java");
        cmd.arg("-Xmx512m")
            // Programs print with the platform charset; fix it so that both runs read alike.
            .arg("-Dfile.encoding=UTF-8")
            .arg(format!("-Dlog4j2.configurationFile={}", self.conf.join("log4j2-tools.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*:{}", self.lib.display(), self.classes.display()));
        cmd
    }

    /// Starts Java program `class` with `args` beside the test: its stdout lines arrive on the
    /// channel (read by a thread, so the program never blocks on a full pipe), its stderr goes
    /// to `log`.
    pub fn spawn_program(&self, class: &str, args: &[&str], log: &Path) -> (Child, mpsc::Receiver<String>) {
        let mut cmd = self.command();
        cmd.arg(class)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("the program's log"));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {class} {args:?}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, lines)
    }
}

/// One run of a Kafka command-line tool by the tool runner (`java/tool-runner/ToolRunner.java`):
/// its main class, arguments (`{B}` stands for the bootstrap address, `{DIR}` for the work
/// directory) and standard input.
pub struct Tool<'a> {
    pub name: &'a str,
    pub main: &'a str,
    pub args: &'a [String],
    pub stdin: &'a str,
}

/// What one tool did, as the runner recorded it.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub millis: u64,
    pub timed_out: bool,
}

/// The longest one tool may run in the runner before it is recorded as timed out.
const TOOL_LIMIT_MS: u64 = 60_000;

/// Runs `tools` in turn against `bootstrap` in one JVM (one JVM per tool costs 1-3 s each on 2
/// cores); returns the outcomes by tool name. The whole run is bounded by `limit`.
pub fn run_tools<'a>(
    java: &Java,
    work: &Path,
    label: &str,
    bootstrap: &str,
    tools: impl IntoIterator<Item = Tool<'a>>,
    limit: Duration,
) -> std::collections::BTreeMap<String, ToolOutcome> {
    let fill = |s: &str| s.replace("{B}", bootstrap).replace("{DIR}", work.to_str().expect("utf-8 path"));
    let spec: Vec<serde_json::Value> = tools
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "main": t.main,
                "args": t.args.iter().map(|a| fill(a)).collect::<Vec<_>>(),
                "stdin": t.stdin,
                "timeout_ms": TOOL_LIMIT_MS,
            })
        })
        .collect();
    let spec_path = work.join(format!("probes-{label}.json"));
    let results_path = work.join(format!("results-{label}.jsonl"));
    std::fs::write(&spec_path, serde_json::to_vec(&spec).expect("json")).expect("writing the probes");
    let mut cmd = java.command();
    // The runner takes back and runs the shutdown hooks a tool registers (see ToolRunner.java).
    cmd.args(["--add-opens", "java.base/java.lang=ALL-UNNAMED"]).arg("ToolRunner").arg(&spec_path).arg(&results_path);
    let run = run_with_limit(&mut cmd, None, limit);
    assert_eq!(
        run.code,
        Some(0),
        "the tool runner failed on {label}\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    std::fs::read_to_string(&results_path)
        .expect("reading the results")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a result line");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let outcome = ToolOutcome {
                code: v["code"].as_i64(),
                stdout: text("stdout"),
                stderr: text("stderr"),
                millis: v["millis"].as_u64().unwrap_or_default(),
                timed_out: v["timed_out"].as_bool().unwrap_or_default(),
            };
            (text("name"), outcome)
        })
        .collect()
}

/// One probe's line, as a probe program (`ClientProbes`, `TxnProbes`) wrote it: one JSON object
/// per line, `{"name", "result", "millis"}`.
pub struct ProbeLine {
    pub result: String,
    pub millis: u64,
}

/// A probe program's results file: (name, line), in the order the probes ran.
pub fn probe_lines(results: &Path) -> Vec<(String, ProbeLine)> {
    let text = std::fs::read_to_string(results).expect("reading the results");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a result line");
            let name = v["name"].as_str().expect("name").to_string();
            let result = v["result"].as_str().expect("result").to_string();
            (name, ProbeLine { result, millis: v["millis"].as_u64().unwrap_or_default() })
        })
        .collect()
}

/// What the probes' lines are checked against.
pub struct ProbeRules<'a> {
    /// Probe name, and what its line on Kafka must contain (the probe's own checks), so that a
    /// probe that passes nowhere fails.
    pub kafka_must_hold: &'a [(&'a str, &'a [&'a str])],
    /// Whether every probe needs a `kafka_must_hold` entry; without one, a probe's line on Kafka
    /// must at least not be an exception.
    pub every_probe_checked: bool,
    /// Where evident answers differently by design: probe name, evident's exact line, why. Any
    /// other line from evident must equal Kafka's.
    pub known_differences: &'a [(&'a str, &'a str, &'a str)],
}

/// Compares the lines of the same probes run against evident and against Kafka: prints one
/// row per probe (name, both times, the verdict) and returns the problems, one per probe.
pub fn compare_probe_lines(
    evident: &[(String, ProbeLine)],
    kafka: &[(String, ProbeLine)],
    rules: &ProbeRules<'_>,
) -> Vec<String> {
    assert_eq!(
        evident.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        kafka.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "both runs must report the same probes"
    );
    for (name, _) in rules.kafka_must_hold {
        assert!(kafka.iter().any(|(n, _)| n == name), "kafka_must_hold names a probe that did not run: {name}");
    }
    let width = evident.iter().map(|(n, _)| n.len()).max().unwrap_or_default();
    println!("{:<width$} {:>7} {:>7}  result", "probe", "ms(e)", "ms(k)");
    let mut failures = Vec::new();
    for ((name, e), (_, k)) in evident.iter().zip(kafka) {
        let mut problems = Vec::new();
        match rules.kafka_must_hold.iter().find(|(n, _)| n == name) {
            Some((_, musts)) => {
                for must in *musts {
                    if !k.result.contains(must) {
                        problems.push(format!("Kafka's line does not hold {must:?}"));
                    }
                }
            }
            None if rules.every_probe_checked => problems.push("the probe has no kafka_must_hold entry".to_string()),
            None if k.result.starts_with("EXCEPTION") => problems.push("the probe fails on Kafka".to_string()),
            None => {}
        }
        let verdict = match rules.known_differences.iter().find(|(n, ..)| n == name) {
            Some((_, want, because)) => {
                if e.result != *want {
                    problems.push(format!(
                        "evident's line is not the known difference (revisit the known differences: {because})\n  want: {want}"
                    ));
                }
                "differs by design"
            }
            None => {
                if e.result != k.result {
                    problems.push("the lines differ".to_string());
                }
                "same"
            }
        };
        let verdict = if problems.is_empty() { verdict } else { "DIFFERS" };
        println!("{name:<width$} {:>7} {:>7}  {verdict}", e.millis, k.millis);
        println!("    {}", e.result);
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n  evident: {}\n  Kafka:   {}", problems.join("; "), e.result, k.result));
        }
    }
    failures
}

/// The last `n` lines of a program's output (a stack trace is long).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
