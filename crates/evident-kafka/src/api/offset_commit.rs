//! OffsetCommit: a consumer's committed positions ("next offset to consume"), stored durably
//! by `GroupStore` in one append per request. A member commits for its current generation
//! only; a commit with generation -1 and no member id (a manual or standalone consumer, kcat,
//! an admin tool) is accepted while the group has no members. Each partition is checked on its
//! own, as Kafka does: an unknown topic or partition, or metadata over the store's limit, fails
//! that partition while the others are committed.

use std::collections::HashMap;

use evident_groups::{validate_group, OffsetCommit, METADATA_LEN_MAX};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;

/// Handles OffsetCommit.
pub async fn handle(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let gate = if validate_group(&group).is_err() {
        Err(ResponseError::InvalidGroupId)
    } else {
        ctx.broker.coordinator.validate_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
        )
    };
    // Each partition's result; `None` marks one that goes into the commit.
    let mut results: Vec<(usize, i32, Option<i16>)> = Vec::new();
    let mut commits = Vec::new();
    let mut partitions_of: HashMap<String, Option<u32>> = HashMap::new();
    for (t, topic) in req.topics.iter().enumerate() {
        for p in &topic.partitions {
            let error = match gate {
                Err(e) => Some(e),
                Ok(()) => {
                    let known = *partitions_of.entry(topic.name.to_string()).or_insert_with(|| {
                        ctx.broker.log.topic_offsets(topic.name.as_str()).ok().map(|p| p.len() as u32)
                    });
                    let metadata_len = p.committed_metadata.as_ref().map_or(0, |m| m.len());
                    match (u32::try_from(p.partition_index), known) {
                        (Ok(partition), Some(count)) if partition < count => {
                            if metadata_len > METADATA_LEN_MAX {
                                Some(ResponseError::OffsetMetadataTooLarge)
                            } else if p.committed_offset < 0 {
                                // evident stores offsets as positions; a negative one is not.
                                Some(ResponseError::InvalidCommitOffsetSize)
                            } else {
                                commits.push(OffsetCommit {
                                    topic: topic.name.to_string(),
                                    partition,
                                    offset: p.committed_offset as u64,
                                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                                    // v6+ carries it; -1 (and older versions) mean none.
                                    leader_epoch: (p.committed_leader_epoch >= 0).then_some(p.committed_leader_epoch),
                                });
                                None
                            }
                        }
                        _ => Some(ResponseError::UnknownTopicOrPartition),
                    }
                }
            };
            results.push((t, p.partition_index, error.map(|e| e.code())));
        }
    }
    let mut commit_error = 0;
    if !commits.is_empty() {
        let groups = ctx.broker.groups.clone();
        // The commit waits for the log's sync: off the async workers.
        let outcome = tokio::task::spawn_blocking(move || groups.commit(&group, &commits)).await;
        commit_error = match outcome {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                let e = KafkaError::from(e);
                tracing::warn!(error = %e.message, "offset commit failed");
                e.code.code()
            }
            Err(e) => {
                tracing::error!(error = %e, "offset commit task failed");
                ResponseError::UnknownServerError.code()
            }
        };
    }
    let mut topics: Vec<OffsetCommitResponseTopic> =
        req.topics.iter().map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone())).collect();
    for (t, partition, error) in results {
        topics[t].partitions.push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(error.unwrap_or(commit_error)),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
