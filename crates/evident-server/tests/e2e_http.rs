//! End-to-end tests of the HTTP API against the real `evident serve` binary on its embedded
//! store: the bank-account walkthrough, optimistic concurrency, idempotent retries, topics,
//! partition and store-wide reads, live subscriptions (Server-Sent Events), consumer groups
//! and every offset-reset strategy, durability across a restart, and the operations routes.
//! The tests' bodies are the shared contract (`tests/contract/mod.rs`), which
//! `tests/serve_kafka_contract.rs` also runs on groups of nodes in front of a Kafka cluster.

mod common;
mod contract;

use contract::Target;

/// Each test of the contract, on one embedded server.
macro_rules! embedded {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                contract::$name(Target::embedded());
            }
        )*
    };
}

contract::for_each_test!(embedded);
