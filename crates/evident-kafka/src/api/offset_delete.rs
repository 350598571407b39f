//! OffsetDelete: deletes a group's committed offsets of some partitions (tombstones in
//! `__consumer_offsets`), as `kafka-consumer-groups --delete-offsets` asks. The group must exist
//! (`GROUP_ID_NOT_FOUND`) and have no members: Kafka refuses only the partitions of topics the
//! members subscribe to (`GROUP_SUBSCRIBED_TO_TOPIC`); evident does not track subscriptions, so
//! it answers every partition of an active group so. An unknown topic or partition fails that
//! partition (`UNKNOWN_TOPIC_OR_PARTITION`) and the others are deleted.

use std::collections::HashMap;

use evident_groups::validate_group;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};

/// Handles OffsetDelete.
pub async fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    if validate_group(&group).is_err() {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    // Members known to the coordinator (a group mid-rebalance has no members in the store yet).
    let active = ctx.broker.coordinator.describe(&group).is_some_and(|g| !g.members.is_empty());

    let mut partitions_of: HashMap<String, Option<u32>> = HashMap::new();
    let mut deletes = Vec::new();
    // Each partition's own error, if it has one before the deletion.
    let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let known = *partitions_of
            .entry(topic.name.to_string())
            .or_insert_with(|| ctx.broker.log.topic_offsets(topic.name.as_str()).ok().map(|p| p.len() as u32));
        let mut row = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            row.push(match (u32::try_from(p.partition_index), known) {
                (Ok(partition), Some(count)) if partition < count => {
                    if active {
                        Some(ResponseError::GroupSubscribedToTopic)
                    } else {
                        deletes.push((topic.name.to_string(), partition));
                        None
                    }
                }
                _ => Some(ResponseError::UnknownTopicOrPartition),
            });
        }
        errors.push(row);
    }

    let groups = ctx.broker.groups.clone();
    let name = group.clone();
    // Run even with nothing to delete: it answers whether the group exists. The tombstones wait
    // for the log's sync: off the async workers.
    let outcome = tokio::task::spawn_blocking(move || groups.delete_offsets(&name, &deletes)).await;
    let group_error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(evident_groups::Error::GroupNotEmpty { .. })) => {
            // Members joined in between: their topics are in use, as above.
            for e in errors.iter_mut().flatten() {
                e.get_or_insert(ResponseError::GroupSubscribedToTopic);
            }
            None
        }
        Ok(Err(e)) => Some(KafkaError::from(e).code),
        Err(e) => {
            tracing::error!(error = %e, "offset deletion task failed");
            Some(ResponseError::UnknownServerError)
        }
    };
    if let Some(e) = group_error {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    let topics = req
        .topics
        .iter()
        .zip(errors)
        .map(|(topic, row)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(row)
                .map(|(p, e)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
