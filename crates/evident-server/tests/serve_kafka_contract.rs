//! The HTTP contract tests of `evident serve` (`tests/contract/mod.rs`, which
//! `tests/e2e_http.rs` runs on one embedded server) on groups of two and of three
//! `evident serve --storage kafka://` nodes in front of the suite's Kafka cluster
//! (`EVIDENT_TEST_KAFKA_BOOTSTRAP`, three brokers started by scripts/test.sh), issue 16: each
//! test as `<test>::two_nodes` and `<test>::three_nodes`, its requests rotating over the
//! nodes, so that what one node acknowledges is read through another. Each node group is an
//! ownership group of its own with topic and consumer-group names of its own, so the tests
//! share the cluster without seeing each other. Where a node's documented behaviour differs
//! (docs/cluster.md: Kafka's offsets, per-node sequences and feed, the routes a node does not
//! serve), the contract checks that behaviour on nodes.

mod common;
mod contract;

use contract::Target;

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
