//! What the HTTP contract tests (`tests/contract/mod.rs`) run against: one embedded
//! `evident serve`, or a group of `evident serve --storage kafka://` nodes in front of the
//! suite's Kafka cluster. The same request helpers serve both; on nodes they rotate
//! round-robin over the nodes' URLs, so an append lands on one node and the next read on
//! another: read-your-writes across nodes is part of the contract a node group keeps.
//!
//! The node groups of tests running at once share one cluster, so each group has a namespace
//! of its own: its own ownership group, its own `--topic-prefix` (the tests' topic names are
//! the same as on the embedded server), and consumer-group names made unique by
//! [`Target::group`].

// Each test binary uses its own part (embedded or nodes).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::common::{Server, Sse};

/// One embedded server, or a group of nodes on a Kafka cluster.
pub struct Target {
    /// The running servers: one embedded, or the nodes.
    nodes: Vec<Server>,
    /// The node the next request goes to (round-robin).
    next: AtomicUsize,
    /// Set on nodes: the cluster and this group's namespace.
    cluster: Option<Nodes>,
    /// Servers stopped by the test, kept for their directories (an embedded server's
    /// temporary directory lives as long as its `Server`).
    retired: Vec<Server>,
}

/// A node group's cluster and namespace.
struct Nodes {
    bootstrap: String,
    /// Unique to this group (test, variant, process, time): the ownership group's name and
    /// the prefix of every topic and consumer group the test names.
    namespace: String,
    /// Each node's working directory (its mirror is in `dir/data`): held so that it lives as
    /// long as the nodes (a node restarts in its `Server::dir`).
    #[allow(dead_code)]
    dirs: Vec<tempfile::TempDir>,
}

impl Target {
    /// One embedded `evident serve` on a fresh directory.
    pub fn embedded() -> Target {
        Target { nodes: vec![Server::start()], next: AtomicUsize::new(0), cluster: None, retired: Vec::new() }
    }

    /// `count` nodes on the suite's Kafka cluster (`EVIDENT_TEST_KAFKA_BOOTSTRAP`), in an
    /// ownership group of their own; None, after a skip line, without a cluster (a failure
    /// when `EVIDENT_REQUIRE_KAFKA_CLUSTER=1`, as scripts/test.sh sets it).
    pub fn nodes(test: &str, count: usize) -> Option<Target> {
        let Ok(bootstrap) = std::env::var("EVIDENT_TEST_KAFKA_BOOTSTRAP") else {
            assert!(
                std::env::var("EVIDENT_REQUIRE_KAFKA_CLUSTER").ok().as_deref() != Some("1"),
                "{test}: EVIDENT_TEST_KAFKA_BOOTSTRAP is not set and EVIDENT_REQUIRE_KAFKA_CLUSTER=1"
            );
            eprintln!("SKIPPED {test} on nodes: EVIDENT_TEST_KAFKA_BOOTSTRAP is not set (scripts/test.sh sets it)");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let namespace = format!("c-{test}-{count}n-{}-{nanos}", std::process::id());
        let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let nodes = dirs.iter().map(|d| start_node(d.path().to_path_buf(), &bootstrap, &namespace)).collect();
        Some(Target {
            nodes,
            next: AtomicUsize::new(0),
            cluster: Some(Nodes { bootstrap, namespace, dirs }),
            retired: Vec::new(),
        })
    }

    /// Whether this is a node group on a Kafka cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The name the test's topic `name` has here: itself, on the embedded server and on nodes
    /// alike (the nodes' `--topic-prefix` keeps each group's topics apart on the cluster).
    pub fn topic(&self, name: &str) -> String {
        name.to_string()
    }

    /// The name the test's consumer group `name` has here: itself on the embedded server,
    /// unique to this node group on a cluster (Kafka's consumer groups are the cluster's,
    /// shared by every test).
    pub fn group(&self, name: &str) -> String {
        match &self.cluster {
            None => name.to_string(),
            Some(c) => format!("{}-{name}", c.namespace),
        }
    }

    /// Whether a topic name is one of this target's: every topic a server lists (a node
    /// lists only the topics of its `--topic-prefix`).
    pub fn owns_topic(&self, _name: &str) -> bool {
        true
    }

    /// Whether a consumer group is one this target named (on nodes the cluster's list holds
    /// every group on it, the nodes' own ownership groups among them).
    pub fn owns_group(&self, name: &str) -> bool {
        match &self.cluster {
            None => true,
            Some(c) => name.starts_with(&format!("{}-", c.namespace)),
        }
    }

    /// The server the next request goes to, moving the rotation on.
    pub fn next_node(&self) -> &Server {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.nodes[i % self.nodes.len()]
    }

    /// Node `i` (the embedded server is node 0), for what is per node: the feed's sequences,
    /// a subscription and the gauge that counts it.
    pub fn pinned(&self, i: usize) -> &Server {
        &self.nodes[i % self.nodes.len()]
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.next_node().get(path)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.next_node().post(path, body)
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.next_node().delete(path)
    }

    pub fn get_ok(&self, path: &str) -> Value {
        self.next_node().get_ok(path)
    }

    pub fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        self.next_node().post_expect(path, body, status)
    }

    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        self.next_node().request_raw(method, path, body, headers)
    }

    /// Creates a topic (must answer 201). On nodes, then waits until every node lists it: a
    /// node's topic list and descriptions are its mirror's, which reads the cluster's topics
    /// every 2 s (docs/cluster.md), and the tests go on to describe and subscribe to the
    /// topic through every node.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Value {
        let created = self.next_node().create_topic(name, partitions);
        if self.is_cluster() {
            let start = std::time::Instant::now();
            for node in &self.nodes {
                crate::common::eventually(&format!("node {} to know topic {name}", node.addr), || {
                    node.get(&format!("/v1/topics/{name}")).0 == 200
                });
            }
            println!("topic {name} known to every node after {} ms", start.elapsed().as_millis());
        }
        created
    }

    pub fn append(&self, topic: &str, key: &str, event: &Value) -> Value {
        self.next_node().append(topic, key, event)
    }

    /// Opens a subscription on the next node.
    pub fn sse(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::open(self.next_node(), path, headers)
    }

    /// Stops the first server with SIGTERM (returning its exit code and output) and starts
    /// it again on the same directory: the embedded store's data directory, or the node's
    /// mirror (the data itself lives in Kafka).
    pub fn stop_and_start_again(&mut self) -> (Option<i32>, String, String) {
        let mut old = self.nodes.remove(0);
        let stopped = old.sigterm();
        let dir = old.dir.clone();
        let again = match &self.cluster {
            None => Server::start_in(&dir),
            Some(c) => start_node(dir, &c.bootstrap, &c.namespace),
        };
        self.retired.push(old);
        self.nodes.insert(0, again);
        stopped
    }

    /// [`Target::stop_and_start_again`], asserting a clean exit.
    pub fn restart(mut self) -> Target {
        let (code, out, err) = self.stop_and_start_again();
        assert_eq!(code, Some(0), "shutdown failed\n--- stdout\n{out}\n--- stderr\n{err}");
        self
    }
}

impl Drop for Target {
    /// A failed check on nodes shows the end of what each node logged.
    fn drop(&mut self) {
        if std::thread::panicking() && self.cluster.is_some() {
            for node in self.nodes.iter().chain(&self.retired) {
                let log = node.stderr();
                let lines: Vec<&str> = log.lines().collect();
                println!("--- the last lines of node {}'s stderr", node.addr);
                for line in &lines[lines.len().saturating_sub(40)..] {
                    println!("{line}");
                }
            }
        }
    }
}

/// A node of the group `namespace` working in `dir`: the ownership group and the topic
/// prefix are the namespace, so that each group's topics are its own on the shared cluster.
fn start_node(dir: PathBuf, bootstrap: &str, namespace: &str) -> Server {
    let prefix = format!("{namespace}.");
    Server::start_on_kafka(&dir, bootstrap, &["--ownership-group", namespace, "--topic-prefix", &prefix])
}
