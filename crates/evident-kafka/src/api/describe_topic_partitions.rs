//! DescribeTopicPartitions (KIP-966): the topics and their partitions, as Metadata gives them,
//! plus the eligible leader replicas, paged by a cursor. The 4.x admin client asks it first for
//! `describeTopics` (`kafka-topics --describe`) and falls back to Metadata only when it is not
//! served. evident is one node that leads every partition, so every partition's replicas and
//! ISR are that node and its eligible-leader lists are empty (as on a one-node Kafka).
//!
//! Paging follows Kafka: topics in name order (all of them when none are named), at most
//! `response_partition_limit` partitions per response, capped by [`PARTITIONS_PER_RESPONSE_MAX`]
//! (Kafka's `max.request.partition.size.limit` default); when the limit cuts a listing,
//! `next_cursor` names the topic and partition to start from. A named topic that does not
//! exist is `UNKNOWN_TOPIC_OR_PARTITION`; it is never created.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use crate::broker::NODE_ID;
use crate::handler::{Ctx, ErrorCodes};
use crate::topics;

/// The most partitions one response carries (Kafka's default `max.request.partition.size.limit`).
pub const PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

fn partition(index: i32) -> DescribeTopicPartitionsResponsePartition {
    DescribeTopicPartitionsResponsePartition::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(NODE_ID))
        .with_leader_epoch(0)
        .with_replica_nodes(vec![BrokerId(NODE_ID)])
        .with_isr_nodes(vec![BrokerId(NODE_ID)])
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
}

/// Handles DescribeTopicPartitions.
pub async fn handle(ctx: &Ctx<'_>, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let log = &ctx.broker.log;
    // (name, its metadata if it exists), in name order.
    let mut wanted: Vec<(String, Option<evident_log::TopicMeta>)> = if req.topics.is_empty() {
        log.list_topics().into_iter().map(|m| (m.name.as_str().to_string(), Some(m))).collect()
    } else {
        let known = log.list_topics();
        req.topics
            .iter()
            .map(|t| {
                let name = t.name.to_string();
                let meta = known.iter().find(|m| m.name.as_str() == name).cloned();
                (name, meta)
            })
            .collect()
    };
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);

    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut budget =
        if req.response_partition_limit > 0 { req.response_partition_limit } else { PARTITIONS_PER_RESPONSE_MAX };
    budget = budget.min(PARTITIONS_PER_RESPONSE_MAX);

    let mut topics_out = Vec::new();
    let mut next_cursor = None;
    for (name, meta) in wanted {
        if start_topic.as_deref().is_some_and(|s| name.as_str() < s) {
            continue;
        }
        let first = if start_topic.as_deref() == Some(name.as_str()) { start_partition } else { 0 };
        let Some(meta) = meta else {
            topics_out.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topics::name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        if budget == 0 {
            // The limit fell on the end of the previous topic: resume at this one.
            next_cursor = Some(Cursor::default().with_topic_name(topics::name(&name)).with_partition_index(first));
            break;
        }
        let count = meta.config.partitions as i32;
        let last = count.min(first.saturating_add(budget));
        let partitions: Vec<_> = (first..last).map(partition).collect();
        budget -= last - first;
        topics_out.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topics::name(&name)))
                .with_topic_id(topics::topic_uuid(meta.id))
                .with_is_internal(topics::is_internal(&name))
                .with_partitions(partitions),
        );
        if last < count {
            next_cursor = Some(Cursor::default().with_topic_name(topics::name(&name)).with_partition_index(last));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics_out).with_next_cursor(next_cursor)
}

impl ErrorCodes for DescribeTopicPartitionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            each(t.error_code);
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
