//! The HTTP contract tests of `evident serve` (`tests/contract/mod.rs`, which
//! `tests/e2e_http.rs` runs on one embedded server) on groups of two and of three
//! `evident serve --storage kafka://` nodes in front of the suite's Kafka cluster
//! (`EVIDENT_TEST_KAFKA_BOOTSTRAP`, three brokers started by scripts/test.sh), issue 16: each
//! test as `<test>::two_nodes` and `<test>::three_nodes`, its requests rotating over the
//! nodes, so that what one node acknowledges is read through another. Each node group is an
//! ownership group of its own with topic and consumer-group names of its own, so the tests
//! share the cluster without seeing each other. Where a node's documented behaviour differs
//! (docs/cluster.md: Kafka's offsets, per-node sequences and feed, the routes a node does not
//! serve), the contract checks that behaviour on nodes. Last, the library's HTTP backend on
//! nodes: the bank example, unchanged, through one node of two (its appends forwarded to the
//! other node where it owns the partition).

mod common;
mod contract;

// The example's `main` is not called here; it tests the library's `kafka` feature, which this
// crate does not declare.
#[allow(dead_code, unexpected_cfgs)]
#[path = "../../evident/examples/bank.rs"]
mod bank;

use std::sync::Arc;

use contract::Target;
use evident::projection::Sink;
use evident::{Backend, HttpBackend};

/// Each test of the contract on two nodes and on three.
macro_rules! on_nodes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::{contract, Target};

                #[test]
                fn two_nodes() {
                    if let Some(nodes) = Target::nodes(stringify!($name), 2) {
                        contract::$name(nodes);
                    }
                }

                #[test]
                fn three_nodes() {
                    if let Some(nodes) = Target::nodes(stringify!($name), 3) {
                        contract::$name(nodes);
                    }
                }
            }
        )*
    };
}

contract::for_each_test!(on_nodes);

/// The library's `HttpBackend` served by nodes: the bank example (aggregates, retries on
/// conflicts, snapshots in a compacted topic, a projection into SQLite) runs unchanged through
/// one node of two, and gives the results it gives on the embedded log (examples_http.rs).
/// Its projection reads that node's feed (`/v1/all`, whose sequences are the node's own).
#[test]
fn the_bank_example_runs_unchanged_through_a_node() {
    let Some(nodes) = Target::nodes("bank-example", 2) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::sqlite(dir.path().join("rm.sqlite")).expect("sink");
    let backend: Arc<dyn Backend> = Arc::new(HttpBackend::new(nodes.pinned(0).base()).expect("backend"));
    let report = bank::run(backend, sink, "n").expect("the example runs through a node");
    assert_eq!(report.alice, 9_500);
    assert_eq!(report.alice_before_withdrawal, 12_000);
    let bob: u64 = (0..249u64).map(|i| 100 + i % 7).sum();
    assert_eq!(report.bob, bob);
    assert_eq!(report.bob_snapshot, Some(evident::Version(199)), "the snapshot written through a node is used");
    assert_eq!(report.bob_replayed, 50);
    assert_eq!(report.balances, vec![("alice-n".to_string(), 9500), ("bob-n".to_string(), bob as i64)]);
    // What node 0 acknowledged, node 1 serves: the same events at the same versions and Kafka
    // offsets (sequences are each node's own).
    let stream = "/v1/topics/bank-account-events/streams/alice-n";
    let positions = |page: serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> {
        let events = page["events"].as_array().expect("events").clone();
        events.into_iter().map(|e| (e["version"].clone(), e["offset"].clone(), e["id"].clone())).collect()
    };
    let on_0 = positions(nodes.pinned(0).get_ok(stream));
    assert!(!on_0.is_empty());
    assert_eq!(positions(nodes.pinned(1).get_ok(stream)), on_0);
}
