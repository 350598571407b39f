//! The gaps librdkafka's own test suite found in evident (issue 12, part 4), each pinned at the
//! protocol level over a real TCP connection, with requests encoded by `kafka-protocol` as a
//! client would, and each answer checked against what Apache Kafka answers (probed on a real
//! broker from `scripts/kafka-ref.sh`; docs/kafka.md keeps the table): partition errors in
//! Fetch carry an empty record set, ListOffsets MAX_TIMESTAMP finds the record with the largest
//! timestamp (and by time, under read_committed, nothing past the last stable offset), the committed leader epoch survives OffsetCommit → OffsetFetch, keyless records
//! are refused on a compacted topic, `message.timestamp.type=LogAppendTime` stamps each batch
//! with its append time, AlterConfigs and IncrementalAlterConfigs change a topic's settings, a
//! one-broker replica assignment is accepted, and a
//! transactional id is refused with the fatal error Kafka gives, so clients fail at once.

mod support;

use bytes::Bytes;
use evident_core::{BatchBuilder, NewRecord};
use evident_log::{CleanupPolicy, TopicConfig};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use support::{Server, Wire, T0};

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const INVALID_REQUEST: i16 = 42;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const INVALID_RECORD: i16 = 87;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_CONFIG: i16 = 40;

async fn start() -> Server {
    support::start(&[
        ("orders", TopicConfig { partitions: 2, ..TopicConfig::default() }),
        ("latest", TopicConfig { cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() }),
        ("stamped", TopicConfig { log_append_time: true, ..TopicConfig::default() }),
    ])
    .await
}

/// One client connection speaking the Kafka protocol.
struct Client {
    wire: Wire,
}

impl Client {
    async fn connect(server: &Server) -> Self {
        Self { wire: Wire::connect(server.addr, "gaps").await }
    }

    async fn send<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, request: &Req) -> Resp {
        self.wire.send(key, version, request).await
    }

    /// Produces one batch (v9) and returns the partition's answer.
    async fn produce(&mut self, topic: &str, partition: i32, batch: Vec<u8>) -> (i16, Option<String>, i64) {
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch))),
            ]),
        ]);
        let response: ProduceResponse = self.send(ApiKey::Produce, 9, &request).await;
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.error_message.as_ref().map(|m| m.to_string()), p.base_offset)
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A batch of records `(key, timestamp)`.
fn batch(records: &[(Option<&str>, i64)]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (key, ts) in records {
        b.push(NewRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
            timestamp_ms: *ts,
        });
    }
    b.build()
}

#[tokio::test]
async fn a_fetch_partition_error_carries_an_empty_record_set() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    assert_eq!(client.produce("orders", 0, batch(&[(Some("a"), T0), (Some("a"), T0)])).await.0, NONE);
    let fetch = |offset| {
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(topic_name("orders")).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)]),
        ])
    };
    for version in [4, 11, 12] {
        let response: FetchResponse = client.send(ApiKey::Fetch, version, &fetch(100)).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "v{version}");
        // Kafka sends MemoryRecords.EMPTY: a zero-length set, never null (-1), which librdkafka
        // cannot parse.
        assert_eq!(p.records.as_deref(), Some(&[][..]), "v{version}: the records of an errored partition");
        assert_eq!((p.high_watermark, p.log_start_offset), (-1, -1));
    }
    let response: FetchResponse = client.send(ApiKey::Fetch, 12, &fetch(0)).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (NONE, 2));
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn list_offsets_max_timestamp_finds_the_record_with_the_largest_timestamp() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let request = |partition| {
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("orders"))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-3)])])
    };
    // An empty partition: -1 and -1, as Kafka answers.
    let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &request(1)).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (NONE, -1, -1));
    // The largest timestamp is in the middle of the first batch, not its last record, and
    // later batches are older: offset 1; a tie later (offset 4) does not win.
    assert_eq!(
        client.produce("orders", 1, batch(&[(Some("a"), T0), (Some("a"), T0 + 50), (Some("a"), T0 + 10)])).await.0,
        NONE
    );
    assert_eq!(client.produce("orders", 1, batch(&[(Some("a"), T0 + 20), (Some("a"), T0 + 50)])).await.0, NONE);
    let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &request(1)).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (NONE, 1, T0 + 50));
}

/// ListOffsets by time answers a record only below the end the reader's isolation level sees,
/// as Kafka does: under read_committed, not one of a transaction still open (-1, -1); once it
/// commits, found. The transaction is written to the log directly (this broker has no
/// coordinator), as its coordinator would.
#[tokio::test]
async fn list_offsets_by_time_under_read_committed_stops_at_the_last_stable_offset() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let mut open = BatchBuilder::new().idempotent(9, 0, 0).transactional();
    open.push_parts(Some(b"a"), Some(b"v"), &[], T0 + 100);
    server.log.append_batch("orders", 0, &open.build(), None).expect("an open transaction's record");
    let request = |isolation| {
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation).with_topics(vec![
            ListOffsetsTopic::default().with_name(topic_name("orders")).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(T0 + 100),
            ]),
        ])
    };
    let found = |r: ListOffsetsResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(found(client.send(ApiKey::ListOffsets, 7, &request(1)).await), (NONE, -1, -1), "read_committed");
    assert_eq!(found(client.send(ApiKey::ListOffsets, 7, &request(0)).await), (NONE, 0, T0 + 100), "read_uncommitted");
    server.log.end_transaction(9, 0, true, 0).expect("commit");
    assert_eq!(found(client.send(ApiKey::ListOffsets, 7, &request(1)).await), (NONE, 0, T0 + 100), "committed");
}

#[tokio::test]
async fn the_committed_leader_epoch_is_stored_and_fetched_back() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("epochs")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name("orders")).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)
                .with_committed_leader_epoch(7),
            OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(3)
                .with_committed_leader_epoch(-1),
        ])]);
    let response: OffsetCommitResponse = client.send(ApiKey::OffsetCommit, 8, &commit).await;
    assert!(response.topics[0].partitions.iter().all(|p| p.error_code == NONE), "{response:?}");
    let fetch =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("epochs"))).with_topics(Some(
            vec![OffsetFetchRequestTopic::default().with_name(topic_name("orders")).with_partition_indexes(vec![0, 1])],
        ));
    let response: OffsetFetchResponse = client.send(ApiKey::OffsetFetch, 7, &fetch).await;
    let got: Vec<(i64, i32)> =
        response.topics[0].partitions.iter().map(|p| (p.committed_offset, p.committed_leader_epoch)).collect();
    assert_eq!(got, [(5, 7), (3, -1)]);
    // All topics (a null list) answers the same.
    let response: OffsetFetchResponse = client.send(ApiKey::OffsetFetch, 7, &fetch.clone().with_topics(None)).await;
    assert_eq!(response.topics[0].partitions[0].committed_leader_epoch, 7);
}

#[tokio::test]
async fn a_keyless_record_is_refused_on_a_compacted_topic() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let (code, message, _) = client.produce("latest", 0, batch(&[(Some("a"), T0), (None, T0)])).await;
    assert_eq!(code, INVALID_RECORD);
    assert_eq!(
        message.as_deref(),
        Some("evident: Compacted topic cannot accept message without key in topic partition latest-0.")
    );
    assert_eq!(server.log.partition_offsets("latest", 0).expect("offsets").high_watermark, 0, "nothing stored");
    assert_eq!(client.produce("latest", 0, batch(&[(Some("a"), T0)])).await.0, NONE);
    // A topic that is not compacted takes keyless records.
    assert_eq!(client.produce("orders", 0, batch(&[(None, T0)])).await.0, NONE);
}

#[tokio::test]
async fn a_replica_assignment_on_this_broker_is_accepted_and_others_are_refused() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let assignment = |partition: i32, brokers: &[i32]| {
        CreatableReplicaAssignment::default()
            .with_partition_index(partition)
            .with_broker_ids(brokers.iter().map(|&b| BrokerId(b)).collect())
    };
    let topic = |name: &str, assignments: Vec<CreatableReplicaAssignment>| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(assignments)
    };
    let request = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        topic("assigned", vec![assignment(0, &[1]), assignment(1, &[1])]),
        topic("elsewhere", vec![assignment(0, &[2])]),
        topic("replicated", vec![assignment(0, &[1, 1])]),
        topic("gapped", vec![assignment(1, &[1])]),
        topic("counted", vec![assignment(0, &[1])]).with_num_partitions(1),
    ]);
    let response: CreateTopicsResponse = client.send(ApiKey::CreateTopics, 4, &request).await;
    // (num_partitions is a v5+ field: the partition count is checked in the log below.)
    let got: Vec<(String, i16)> = response.topics.iter().map(|t| (t.name.to_string(), t.error_code)).collect();
    assert_eq!(
        got,
        [
            ("assigned".to_string(), NONE),
            ("elsewhere".to_string(), INVALID_REPLICA_ASSIGNMENT),
            ("replicated".to_string(), INVALID_REPLICA_ASSIGNMENT),
            ("gapped".to_string(), INVALID_REPLICA_ASSIGNMENT),
            ("counted".to_string(), INVALID_REQUEST),
        ]
    );
    assert_eq!(server.log.topic_offsets("assigned").expect("created").len(), 2);
    assert!(server.log.topic_offsets("elsewhere").is_err(), "a refused topic is not created");
}

#[tokio::test]
async fn a_partition_growth_assigned_to_this_broker_is_accepted_and_others_are_refused() {
    // librdkafka's admin test (0081) grows topics with new partitions assigned to the brokers
    // Metadata lists: on evident, `[[1]]` per new partition.
    let server = start().await;
    let mut client = Client::connect(&server).await;
    for name in ["grown", "elsewhere", "replicated", "miscounted"] {
        server.log.create_topic(name, TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("created");
    }
    let assignment = |brokers: &[i32]| {
        CreatePartitionsAssignment::default().with_broker_ids(brokers.iter().map(|&b| BrokerId(b)).collect())
    };
    let grow = |name: &str, count: i32, assignments: Vec<CreatePartitionsAssignment>| {
        CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(Some(assignments))
    };
    let request = CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        grow("grown", 3, vec![assignment(&[1]), assignment(&[1])]),
        grow("elsewhere", 2, vec![assignment(&[2])]),
        grow("replicated", 2, vec![assignment(&[1, 1])]),
        grow("miscounted", 3, vec![assignment(&[1])]),
    ]);
    let response: CreatePartitionsResponse = client.send(ApiKey::CreatePartitions, 3, &request).await;
    let got: Vec<(String, i16)> = response.results.iter().map(|t| (t.name.to_string(), t.error_code)).collect();
    assert_eq!(
        got,
        [
            ("grown".to_string(), NONE),
            ("elsewhere".to_string(), INVALID_REPLICA_ASSIGNMENT),
            ("replicated".to_string(), INVALID_REPLICA_ASSIGNMENT),
            ("miscounted".to_string(), INVALID_REPLICA_ASSIGNMENT),
        ]
    );
    assert_eq!(server.log.topic_offsets("grown").expect("exists").len(), 3);
    for refused in ["elsewhere", "replicated", "miscounted"] {
        assert_eq!(server.log.topic_offsets(refused).expect("exists").len(), 1, "{refused} did not grow");
    }
}

#[tokio::test]
async fn without_a_transaction_coordinator_a_transactional_id_is_refused_with_a_fatal_error() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("tx-1")).with_key_type(1);
    let response: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, 2, &find).await;
    assert_eq!(response.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert!(response.error_message.as_deref().is_some_and(|m| m.contains("transactions")), "{response:?}");
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse = client.send(ApiKey::InitProducerId, 4, &init).await;
    assert_eq!((response.error_code, response.producer_id.0), (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1));
    // A group coordinator is still found.
    let find = find.with_key_type(0);
    let response: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, 2, &find).await;
    assert_eq!((response.error_code, response.node_id.0), (NONE, 1));
}

/// A transactional batch sent without a transactional id (no client does; a hand-built one
/// could) is refused with the same fatal error and stores nothing: it would otherwise open a
/// transaction in the log that no coordinator ends, and hold the partition's last stable offset
/// (where read_committed consumers stop) forever.
#[tokio::test]
async fn a_transactional_batch_without_a_transactional_id_is_refused() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    for (what, bits, code) in
        [("transactional", 0x10u8, TRANSACTIONAL_ID_AUTHORIZATION_FAILED), ("control", 0x30, INVALID_RECORD)]
    {
        let mut bytes = BatchBuilder::new().idempotent(42, 0, 0);
        bytes.push_parts(Some(b"a"), Some(b"v"), &[], T0);
        let mut bytes = bytes.build();
        bytes[22] |= bits;
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let (got, _, _) = client.produce("orders", 0, bytes).await;
        assert_eq!(got, code, "{what} batch");
    }
    let offsets = server.log.partition_offsets("orders", 0).expect("offsets");
    assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (0, 0));
    assert!(server.log.open_transactions().is_empty());
}

#[tokio::test]
async fn a_log_append_time_topic_stamps_each_batch_with_its_append_time() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    let wall =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    let before = wall();
    // Sent with create times in the past; the broker's time replaces them.
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(topic_name("stamped")).with_partition_data(vec![
            PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch(&[(Some("a"), T0), (Some("a"), T0 + 5)])))),
        ]),
    ]);
    let response: ProduceResponse = client.send(ApiKey::Produce, 9, &request).await;
    let after = wall();
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, NONE);
    let stamped = p.log_append_time_ms;
    assert!((before..=after).contains(&stamped), "log_append_time_ms {stamped} not within [{before}, {after}]");
    // A CreateTime topic answers -1, as Kafka does.
    let (code, _, _) = client.produce("orders", 0, batch(&[(Some("a"), T0)])).await;
    assert_eq!(code, NONE);

    // Fetched: the timestamp-type bit and the max timestamp are the broker's, the CRC valid.
    let fetch =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(topic_name("stamped")).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]),
        ]);
    let response: FetchResponse = client.send(ApiKey::Fetch, 12, &fetch).await;
    let records = response.responses[0].partitions[0].records.clone().expect("records");
    let batch = evident_core::RecordBatch::parse_exact(&records).expect("a valid batch, CRC included");
    let header = batch.header();
    assert_eq!(header.attributes & evident_core::batch::LOG_APPEND_TIME, evident_core::batch::LOG_APPEND_TIME);
    assert_eq!((header.base_timestamp, header.max_timestamp), (T0, stamped));

    // ListOffsets by time and MAX_TIMESTAMP see the append time.
    let list = |timestamp| {
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("stamped"))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)])])
    };
    for timestamp in [-3, T0 + 1_000] {
        let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &list(timestamp)).await;
        let p = &response.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset, p.timestamp), (NONE, 0, stamped), "ListOffsets {timestamp}");
    }
}

/// The topic's settings as DescribeConfigs reports them: (name, value).
async fn described(client: &mut Client, topic: &str) -> Vec<(String, String)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None),
    ]);
    let response: DescribeConfigsResponse = client.send(ApiKey::DescribeConfigs, 1, &request).await;
    let result = &response.results[0];
    assert_eq!(result.error_code, NONE, "{result:?}");
    result.configs.iter().map(|c| (c.name.to_string(), c.value.as_deref().unwrap_or_default().to_string())).collect()
}

fn setting<'a>(described: &'a [(String, String)], name: &str) -> &'a str {
    described.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn alter_configs_replaces_and_incremental_alter_configs_changes_topic_settings() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::incremental_alter_configs_request as inc;

    let server = start().await;
    let mut client = Client::connect(&server).await;
    let incremental = |topic: &str, ops: &[(&str, i8, Option<&str>)], validate_only| {
        IncrementalAlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(
                    ops.iter()
                        .map(|(name, op, value)| {
                            inc::AlterableConfig::default()
                                .with_name(StrBytes::from_string(name.to_string()))
                                .with_config_operation(*op)
                                .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ])
    };
    // SET two settings; a validate-only request changes nothing.
    let only_check = incremental("orders", &[("retention.ms", 0, Some("1000"))], true);
    let response: IncrementalAlterConfigsResponse = client.send(ApiKey::IncrementalAlterConfigs, 1, &only_check).await;
    assert_eq!(response.responses[0].error_code, NONE);
    assert_eq!(setting(&described(&mut client, "orders").await, "retention.ms"), "-1");
    let set = incremental(
        "orders",
        &[("retention.ms", 0, Some("86400000")), ("message.timestamp.type", 0, Some("LogAppendTime"))],
        false,
    );
    let response: IncrementalAlterConfigsResponse = client.send(ApiKey::IncrementalAlterConfigs, 1, &set).await;
    assert_eq!(response.responses[0].error_code, NONE, "{response:?}");
    let now = described(&mut client, "orders").await;
    assert_eq!(
        (setting(&now, "retention.ms"), setting(&now, "message.timestamp.type"), setting(&now, "cleanup.policy")),
        ("86400000", "LogAppendTime", "delete")
    );
    // The change is the log's: a new batch is stamped.
    let (code, _, _) = client.produce("orders", 0, batch(&[(Some("a"), T0)])).await;
    assert_eq!(code, NONE);
    let meta = server.log.list_topics().into_iter().find(|m| m.name.as_str() == "orders").expect("topic");
    assert!(meta.config.log_append_time && meta.config.partitions == 2);
    // DELETE returns a setting to its default; the other stays.
    let delete = incremental("orders", &[("retention.ms", 1, None)], false);
    let response: IncrementalAlterConfigsResponse = client.send(ApiKey::IncrementalAlterConfigs, 1, &delete).await;
    assert_eq!(response.responses[0].error_code, NONE);
    let now = described(&mut client, "orders").await;
    assert_eq!((setting(&now, "retention.ms"), setting(&now, "message.timestamp.type")), ("-1", "LogAppendTime"));
    // Refusals: an unknown name, a bad value, APPEND on a one-value setting, an unknown topic.
    for (topic, op, expected) in [
        ("orders", ("retention.mss", 0, Some("1")), INVALID_CONFIG),
        ("orders", ("message.timestamp.type", 0, Some("Sometime")), INVALID_CONFIG),
        ("orders", ("cleanup.policy", 2, Some("compact")), INVALID_CONFIG),
        ("missing", ("retention.ms", 0, Some("1")), UNKNOWN_TOPIC_OR_PARTITION),
    ] {
        let response: IncrementalAlterConfigsResponse =
            client.send(ApiKey::IncrementalAlterConfigs, 1, &incremental(topic, &[op], false)).await;
        assert_eq!(response.responses[0].error_code, expected, "{op:?} on {topic}: {response:?}");
    }

    // AlterConfigs replaces the whole set: what is not listed returns to its default.
    let replace = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("orders"))
        .with_configs(vec![AlterableConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("compact")))])]);
    let response: AlterConfigsResponse = client.send(ApiKey::AlterConfigs, 2, &replace).await;
    assert_eq!(response.responses[0].error_code, NONE, "{response:?}");
    let now = described(&mut client, "orders").await;
    assert_eq!((setting(&now, "cleanup.policy"), setting(&now, "message.timestamp.type")), ("compact", "CreateTime"));
    // Broker settings are static.
    let broker = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_static_str("1"))]);
    let response: AlterConfigsResponse = client.send(ApiKey::AlterConfigs, 0, &broker).await;
    assert_eq!(response.responses[0].error_code, INVALID_REQUEST);
}

/// DeleteRecords (v0-2): each partition's answer as Kafka 4.4 gives it, then Fetch below the
/// start `OFFSET_OUT_OF_RANGE` and ListOffsets EARLIEST the start.
#[tokio::test]
async fn delete_records_moves_the_log_start_and_answers_each_partition_as_kafka() {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    const POLICY_VIOLATION: i16 = 44;
    let server = start().await;
    let mut client = Client::connect(&server).await;
    for _ in 0..3 {
        assert_eq!(client.produce("orders", 0, batch(&[(Some("a"), T0), (Some("a"), T0 + 1)])).await.0, NONE);
    }
    assert_eq!(client.produce("latest", 0, batch(&[(Some("k"), T0)])).await.0, NONE);
    let request = |topics: &[(&str, &[(i32, i64)])]| {
        DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    DeleteRecordsTopic::default().with_name(topic_name(t)).with_partitions(
                        ps.iter()
                            .map(|&(p, o)| DeleteRecordsPartition::default().with_partition_index(p).with_offset(o))
                            .collect(),
                    )
                })
                .collect(),
        )
    };
    let answers = |r: &DeleteRecordsResponse| -> Vec<(String, i32, i16, i64)> {
        r.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code, p.low_watermark))
            })
            .collect()
    };
    let first = request(&[
        ("orders", &[(0, 3), (1, -1), (2, 0)]),
        ("latest", &[(0, 1)]),
        ("__consumer_offsets", &[(0, 0)]),
        ("missing", &[(0, 0)]),
    ]);
    for version in 0..=2 {
        let response: DeleteRecordsResponse = client.send(ApiKey::DeleteRecords, version, &first).await;
        let want = [
            ("orders", 0, NONE, 3),
            ("orders", 1, NONE, 0),
            ("orders", 2, UNKNOWN_TOPIC_OR_PARTITION, -1),
            ("latest", 0, POLICY_VIOLATION, -1),
            ("__consumer_offsets", 0, INVALID_TOPIC_EXCEPTION, -1),
            ("missing", 0, UNKNOWN_TOPIC_OR_PARTITION, -1),
        ]
        .map(|(t, p, e, w)| (t.to_string(), p, e, w));
        assert_eq!(answers(&response), want, "v{version}");
    }
    // Back (no change), past the high watermark, negative, then the high watermark.
    let second = request(&[("orders", &[(0, 1)])]);
    let response: DeleteRecordsResponse = client.send(ApiKey::DeleteRecords, 2, &second).await;
    assert_eq!(answers(&response), [("orders".to_string(), 0, NONE, 3)]);
    for offset in [7, -2] {
        let response: DeleteRecordsResponse =
            client.send(ApiKey::DeleteRecords, 2, &request(&[("orders", &[(0, offset)])])).await;
        assert_eq!(answers(&response), [("orders".to_string(), 0, OFFSET_OUT_OF_RANGE, -1)], "offset {offset}");
    }
    let response: DeleteRecordsResponse =
        client.send(ApiKey::DeleteRecords, 2, &request(&[("orders", &[(0, 5)])])).await;
    assert_eq!(answers(&response), [("orders".to_string(), 0, NONE, 5)]);
    assert_eq!(server.log.partition_offsets("orders", 0).expect("offsets").log_start_offset, 5);

    let fetch = |offset| {
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(topic_name("orders")).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)]),
        ])
    };
    let response: FetchResponse = client.send(ApiKey::Fetch, 12, &fetch(4)).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!((p.error_code, p.records.as_deref()), (OFFSET_OUT_OF_RANGE, Some(&[][..])));
    let response: FetchResponse = client.send(ApiKey::Fetch, 12, &fetch(5)).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark, p.log_start_offset), (NONE, 6, 5));
    let earliest =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("orders"))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)])]);
    let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &earliest).await;
    assert_eq!(response.topics[0].partitions[0].offset, 5);
}
