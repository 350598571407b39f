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

embedded!(
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
