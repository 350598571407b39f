//! OffsetFetch: a group's committed offsets for the partitions asked (or all of them, when the
//! topic list is null, v2+), with the committed leader epoch (v5+). A partition without one is answered offset -1 with empty metadata
//! and no error, as Kafka does, so the consumer applies its `auto.offset.reset`. With
//! `require_stable` (v7+), a partition whose offsets an unfinished transaction holds is answered
//! `UNSTABLE_OFFSET_COMMIT`, as Kafka does.

use std::collections::{BTreeMap, HashMap};

use evident_groups::{validate_group, CommittedOffset};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;

/// Kafka's "no committed offset".
const NO_OFFSET: i64 = -1;

/// One partition's answer: its committed offset, metadata and leader epoch (-1 when the commit
/// carried none, v5+), or Kafka's "none" when there is no commit.
fn partition(index: i32, committed: Option<&CommittedOffset>, error: i16) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(committed.map_or(NO_OFFSET, |c| c.offset as i64))
        .with_committed_leader_epoch(committed.and_then(|c| c.leader_epoch).unwrap_or(-1))
        .with_metadata(Some(StrBytes::from_string(committed.and_then(|c| c.metadata.clone()).unwrap_or_default())))
        .with_error_code(error)
}

/// Handles OffsetFetch (v1–v7: one group per request).
pub async fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let group = req.group_id.as_str();
    let committed = match validate_group(group) {
        Err(_) => Err(ResponseError::InvalidGroupId),
        Ok(()) => ctx.broker.groups.committed(group, None).map_err(|e| KafkaError::from(e).code),
    };
    let committed = match committed {
        Ok(committed) => committed,
        Err(e) => {
            // v1 has no top-level error code: the error goes to every partition instead.
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|&p| partition(p, None, if ctx.version < 2 { e.code() } else { 0 }))
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
                })
                .collect();
            let top = if ctx.version >= 2 { e.code() } else { 0 };
            return OffsetFetchResponse::default().with_error_code(top).with_topics(topics);
        }
    };
    // v7+: a consumer that asks for stable offsets (kafka-clients always does) gets
    // UNSTABLE_OFFSET_COMMIT, and no offset, for a partition whose offsets an unfinished
    // transaction holds; it retries until the transaction ends (KIP-447).
    let pending = match (&ctx.broker.transactions, req.require_stable) {
        (Some(txns), true) => txns.pending_offsets(group),
        _ => Default::default(),
    };
    let unstable = |topic: &str, p: i32| {
        u32::try_from(p).is_ok_and(|p| pending.iter().any(|(t, q)| t.as_str() == topic && *q == p))
    };
    let answer = |topic: &str, p: i32, committed: Option<&CommittedOffset>| {
        if unstable(topic, p) {
            partition(p, None, ResponseError::UnstableOffsetCommit.code())
        } else {
            partition(p, committed, 0)
        }
    };
    let topics = match req.topics {
        Some(asked) => {
            let by_partition: HashMap<(&str, u32), &CommittedOffset> =
                committed.iter().map(|c| ((c.topic.as_str(), c.partition), c)).collect();
            asked
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|&p| {
                            let found = u32::try_from(p).ok().and_then(|p| by_partition.get(&(t.name.as_str(), p)));
                            answer(t.name.as_str(), p, found.copied())
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
                })
                .collect()
        }
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
            for c in &committed {
                by_topic.entry(c.topic.as_str()).or_default().push(answer(c.topic.as_str(), c.partition as i32, Some(c)));
            }
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect()
        }
    };
    OffsetFetchResponse::default().with_topics(topics)
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
