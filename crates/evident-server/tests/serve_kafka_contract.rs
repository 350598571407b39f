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

on_nodes!(
    bank_account_walkthrough,
    expected_version_conflicts_append_nothing,
    idempotent_retries_answer_the_original_positions,
    topics_create_list_describe_delete,
    partition_reads_from_an_offset_or_a_timestamp,
    everything_in_commit_order_without_internal_topics,
    subscribe_to_a_stream_catch_up_live_and_resume,
    subscribe_to_a_topic_a_partition_and_unknown_targets,
    disconnecting_a_subscriber_closes_its_subscription,
    consumer_groups_commit_fetch_list_describe_delete,
    reset_offsets_every_strategy_and_scope,
    data_and_group_offsets_survive_a_restart,
    health_metrics_and_openapi,
    a_stalled_subscriber_does_not_stall_appends,
    a_too_long_uri_is_414_with_the_json_error,
    topic_creation_warns_about_unenforced_settings,
);
