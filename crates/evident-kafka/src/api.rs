//! The Kafka APIs evident serves, each registered once: its key, the versions served, its
//! request type and its handler module (`api/<name>.rs`, exposing `handle`). From the one list
//! below come the ApiVersions table ([`SERVED`]), the gate (`request::gate` refuses what is
//! not in it), the routing ([`route`]) and the sans-IO body decoder the fuzz target runs
//! ([`decode`], which routing uses too). Adding an API is one new file under `api/` and one
//! line here; `api/tests.rs` checks the list against the codec's ranges, the handlers and
//! docs/kafka.md.
//!
//! The ranges are those real clients negotiate (librdkafka 2.0–2.16, kafka-python 3, aiokafka
//! 0.14), within what the codec supports. Transactions at transaction version 1 only (no
//! `transaction.version` feature is advertised, so the Java client stays on TV1); telemetry is
//! left out on purpose: clients then do not try it.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::handler::{Answer, Ctx, Outcome, Respond, ResponseTo, Served};
use crate::metrics::KafkaMetrics;

/// Declares the handler modules and derives the table, the routing and the decoder from one
/// line per API: `Key => module(RequestType) min..=max`.
macro_rules! apis {
    ($($key:ident => $module:ident($request:ty) $min:literal ..= $max:literal,)*) => {
        $(mod $module;)*

        /// Every API served, with its versions: the ApiVersions table and the gate.
        pub const SERVED: &[Served] = &[$(Served { key: ApiKey::$key, min: $min, max: $max },)*];

        /// Decodes the body of a gated request and hands it to its API's handler.
        pub(crate) async fn route(ctx: &Ctx<'_>, key: ApiKey, mut body: Bytes) -> Outcome {
            let metrics = ctx.broker.metrics.clone();
            let to = ResponseTo { key, correlation_id: ctx.header.correlation_id, version: ctx.version, metrics };
            match key {
                $(ApiKey::$key => match body_of::<$request>(key, ctx.version, &mut body) {
                    Ok(request) => $module::handle(ctx, request).await.respond(to),
                    Err(reason) => Outcome::Now(Answer::Close(reason)),
                },)*
                other => Outcome::Now(Answer::Close(format!("API {other:?} is not served"))),
            }
        }

        /// Decodes the body of a request for `key` at `version`, as [`route`] does, without
        /// handling it: the sans-IO half, for the fuzz target and the hostile-input tests.
        pub fn decode(key: ApiKey, version: i16, mut body: Bytes) -> Result<(), String> {
            match key {
                $(ApiKey::$key => body_of::<$request>(key, version, &mut body).map(drop),)*
                other => Err(format!("API {other:?} is not served")),
            }
        }
    };
}

apis! {
    ApiVersions => api_versions(ApiVersionsRequest) 0..=3,
    Metadata => metadata(MetadataRequest) 0..=12,
    DescribeTopicPartitions => describe_topic_partitions(DescribeTopicPartitionsRequest) 0..=0,
    Produce => produce(ProduceRequest) 3..=9,
    Fetch => fetch(FetchRequest) 4..=12,
    ListOffsets => list_offsets(ListOffsetsRequest) 1..=7,
    InitProducerId => init_producer_id(InitProducerIdRequest) 0..=4,
    CreateTopics => create_topics(CreateTopicsRequest) 2..=4,
    DeleteTopics => delete_topics(DeleteTopicsRequest) 1..=4,
    DeleteRecords => delete_records(DeleteRecordsRequest) 0..=2,
    DescribeConfigs => describe_configs(DescribeConfigsRequest) 1..=1,
    AlterConfigs => alter_configs(AlterConfigsRequest) 0..=2,
    IncrementalAlterConfigs => incremental_alter_configs(IncrementalAlterConfigsRequest) 0..=1,
    CreatePartitions => create_partitions(CreatePartitionsRequest) 0..=3,
    OffsetCommit => offset_commit(OffsetCommitRequest) 2..=8,
    OffsetFetch => offset_fetch(OffsetFetchRequest) 1..=7,
    FindCoordinator => find_coordinator(FindCoordinatorRequest) 0..=2,
    JoinGroup => join_group(JoinGroupRequest) 0..=5,
    Heartbeat => heartbeat(HeartbeatRequest) 0..=3,
    LeaveGroup => leave_group(LeaveGroupRequest) 0..=1,
    SyncGroup => sync_group(SyncGroupRequest) 0..=3,
    DescribeGroups => describe_groups(DescribeGroupsRequest) 0..=6,
    ListGroups => list_groups(ListGroupsRequest) 0..=4,
    DeleteGroups => delete_groups(DeleteGroupsRequest) 0..=1,
    OffsetDelete => offset_delete(OffsetDeleteRequest) 0..=0,
    AddPartitionsToTxn => add_partitions_to_txn(AddPartitionsToTxnRequest) 0..=3,
    AddOffsetsToTxn => add_offsets_to_txn(AddOffsetsToTxnRequest) 0..=3,
    EndTxn => end_txn(EndTxnRequest) 0..=3,
    TxnOffsetCommit => txn_offset_commit(TxnOffsetCommitRequest) 0..=3,
    ListTransactions => list_transactions(ListTransactionsRequest) 0..=1,
    DescribeTransactions => describe_transactions(DescribeTransactionsRequest) 0..=0,
    DescribeProducers => describe_producers(DescribeProducersRequest) 0..=0,
}

/// The served versions of `key`, if it is served.
pub fn served(key: ApiKey) -> Option<Served> {
    SERVED.iter().find(|s| s.key == key).copied()
}

/// The answer to an ApiVersions request newer than evident speaks (KIP-511): encoded at v0,
/// `UNSUPPORTED_VERSION` with the table, so the client retries at a version evident speaks.
pub(crate) fn api_versions_too_new(correlation_id: i32, metrics: Arc<KafkaMetrics>) -> Answer {
    let to = ResponseTo { key: ApiKey::ApiVersions, correlation_id, version: 0, metrics };
    to.answer(&api_versions::unsupported_version(SERVED))
}

/// One request body, decoded at `version`; the reason closes the connection otherwise.
fn body_of<R: Decodable>(key: ApiKey, version: i16, body: &mut Bytes) -> Result<R, String> {
    R::decode(body, version).map_err(|e| format!("malformed {key:?} v{version} request: {e}"))
}

#[cfg(test)]
mod tests;
