//! The registry against everything that must agree with it: the codec's supported ranges, the
//! gate, the handlers (every advertised API and version is routed to a handler whose response
//! decodes as that API's response) and docs/kafka.md's version table. A served-but-not-
//! advertised, advertised-but-not-routed or undocumented API fails here, not at run time.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use evident_log::clock::ManualClock;
use evident_log::{Log, LogConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::watch;

use super::*;
use crate::broker::Broker;
use crate::config::KafkaConfig;
use crate::handler::{Answer, Outcome};
use crate::request::{decode_request, Decoded};

/// Every key the codec knows.
fn every_key() -> Vec<ApiKey> {
    (0..=i16::MAX).filter_map(|raw| ApiKey::try_from(raw).ok()).collect()
}

/// A default request of `key`, as the codec builds it.
fn default_request(key: ApiKey) -> RequestKind {
    macro_rules! kinds {
        ($($k:ident),*) => {
            match key {
                $(ApiKey::$k => RequestKind::$k(Default::default()),)*
                other => panic!("no default request for {other:?}: add it to this list"),
            }
        };
    }
    kinds!(
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        ListTransactions,
        DescribeTransactions,
        DescribeProducers,
        ApiVersions,
        Metadata,
        Produce,
        Fetch,
        ListOffsets,
        InitProducerId,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        DescribeConfigs,
        AlterConfigs,
        IncrementalAlterConfigs,
        CreatePartitions,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        DeleteGroups,
        OffsetDelete,
        DescribeTopicPartitions
    )
}

/// A default request of `key` at `version`, framed as a client sends it (without the size).
fn frame(key: ApiKey, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(41)
        .with_client_id(Some(StrBytes::from_static_str("registry-test")))
        .encode(&mut out, key.request_header_version(version))
        .expect("header");
    match default_request(key) {
        // acks=0 would get no reply at all; acks=1 gets an (empty) one to check.
        RequestKind::Produce(p) => p.with_acks(1).encode(&mut out, version).expect("body"),
        other => other.encode(&mut out, version).expect("body"),
    }
    out.freeze()
}

#[test]
fn advertised_ranges_lie_within_the_codec_and_keys_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for s in SERVED {
        assert!(seen.insert(s.key), "{:?} is registered twice", s.key);
        let codec = s.key.valid_versions();
        assert!(s.min <= s.max, "{:?}: empty range {}..={}", s.key, s.min, s.max);
        assert!(
            codec.min <= s.min && s.max <= codec.max,
            "{:?} {}..={} outside the codec's {codec:?}",
            s.key,
            s.min,
            s.max
        );
    }
}

#[test]
fn the_gate_passes_exactly_what_is_advertised() {
    for key in every_key() {
        let codec = key.valid_versions();
        for version in codec.min..=codec.max {
            let decoded = decode_request(&frame_or_header(key, version));
            match served(key) {
                Some(s) if s.serves(version) => {
                    assert_eq!(decoded, Ok(Decoded { key, version }), "{key:?} v{version} is advertised");
                }
                Some(_) if key == ApiKey::ApiVersions && version > 0 => {
                    assert_eq!(decoded, Ok(Decoded { key, version }), "a too-new ApiVersions is answered");
                }
                _ => {
                    let refused = decoded.expect_err("not advertised, so refused");
                    assert!(refused.contains("not served"), "{key:?} v{version}: {refused}");
                }
            }
        }
    }
}

/// A frame for any key: a full default request where the test knows how to build one, else
/// only the header's fixed bytes (the gate refuses those before reading more).
fn frame_or_header(key: ApiKey, version: i16) -> Bytes {
    if served(key).is_some_and(|s| s.serves(version)) {
        return frame(key, version);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(key as i16).to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&41i32.to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    Bytes::from(out)
}

#[tokio::test]
async fn every_advertised_version_is_routed_to_its_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let groups = Arc::new(evident_groups::GroupStore::open(log.clone(), clock.clone()).expect("groups"));
    let (_commits_tx, commits) = watch::channel(0);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let broker = Arc::new(Broker::new(log, groups, KafkaConfig::default(), commits, shutdown, clock, 9092));
    let peer = "127.0.0.1:5000".parse().expect("addr");
    for s in SERVED {
        for version in s.min..=s.max {
            let answer = match crate::dispatch::handle(&broker, peer, frame(s.key, version)).await {
                Outcome::Now(answer) => answer,
                Outcome::Later(pending) => pending.await,
            };
            let Answer::Reply(reply) = answer else { panic!("{:?} v{version}: {answer:?}", s.key) };
            let mut reply = reply.freeze();
            let header = ResponseHeader::decode(&mut reply, s.key.response_header_version(version)).expect("header");
            assert_eq!(header.correlation_id, 41);
            ResponseKind::decode(s.key, &mut reply, version)
                .unwrap_or_else(|e| panic!("{:?} v{version}: the reply is not its response: {e}", s.key));
            assert!(reply.is_empty(), "{:?} v{version}: {} bytes after the response", s.key, reply.len());
        }
    }
    // Every request was counted under its API, and the refusals (a default JoinGroup has no
    // group id, ...) under their codes.
    let counted = broker.metrics.snapshot();
    for (s, (api, n)) in SERVED.iter().zip(&counted.requests) {
        assert_eq!(
            (api.as_str(), *n),
            (format!("{:?}", s.key).as_str(), u64::from((s.max - s.min + 1).unsigned_abs()))
        );
    }
    let invalid_group_id = kafka_protocol::error::ResponseError::InvalidGroupId.code();
    assert!(counted.errors.iter().any(|e| e.code == Some(invalid_group_id) && e.count > 0), "{:?}", counted.errors);
}

/// docs/kafka.md's "APIs and versions" table: API name to (min, max).
fn documented() -> BTreeMap<String, (i16, i16)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kafka.md");
    let doc = std::fs::read_to_string(path).expect("docs/kafka.md");
    let section = doc.split("## APIs and versions").nth(1).expect("the section").split("\n## ").next().expect("body");
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (name, versions) = (cells[1], cells[2]);
        let range = match versions.split_once('–') {
            Some((lo, hi)) => (lo.parse().expect("min"), hi.parse().expect("max")),
            None => {
                let v = versions.parse().expect("version");
                (v, v)
            }
        };
        assert!(table.insert(name.to_string(), range).is_none(), "{name} is listed twice");
    }
    table
}

#[test]
fn the_documented_table_is_the_registry() {
    let served: BTreeMap<String, (i16, i16)> =
        SERVED.iter().map(|s| (format!("{:?}", s.key), (s.min, s.max))).collect();
    assert_eq!(documented(), served, "docs/kafka.md's table must list exactly the served APIs and versions");
}
