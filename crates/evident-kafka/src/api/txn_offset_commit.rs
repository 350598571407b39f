//! TxnOffsetCommit (v0–v3): consumer offsets held with the producer's open transaction and
//! committed to the group store when it commits (dropped when it aborts). The group must have
//! been added (AddOffsetsToTxn), and the group metadata sent (v3+: member id, generation) must be
//! the group's current one (KIP-447: a zombie's offsets are refused). Every partition must
//! exist; the request is taken whole or not.

use evident_groups::METADATA_LEN_MAX;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::{blocking, unsupported, TxnOffset};

/// Handles TxnOffsetCommit.
pub async fn handle(ctx: &Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let mut offsets = Vec::new();
    let mut refusal: Option<KafkaError> = None;
    for t in &req.topics {
        let topic = t.name.to_string();
        let partitions = ctx.broker.log.topic_meta(&topic).map(|m| m.config.partitions).ok();
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            let check = match (u32::try_from(p.partition_index), partitions, u64::try_from(p.committed_offset)) {
                (Ok(partition), Some(n), Ok(offset)) if partition < n => {
                    if metadata.as_ref().is_some_and(|m| m.len() > METADATA_LEN_MAX) {
                        Err(KafkaError::new(ResponseError::OffsetMetadataTooLarge, "evident: offset metadata too large"))
                    } else {
                        offsets.push(TxnOffset {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition,
                            offset,
                            metadata,
                            leader_epoch: (p.committed_leader_epoch >= 0).then_some(p.committed_leader_epoch),
                        });
                        Ok(())
                    }
                }
                (_, _, Err(_)) => Err(KafkaError::new(ResponseError::InvalidCommitOffsetSize, "evident: a negative offset")),
                _ => Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, format!("evident: {topic} has no such partition"))),
            };
            if let Err(e) = check {
                refusal.get_or_insert(e);
            }
        }
    }
    let result = match (&ctx.broker.transactions, refusal) {
        (None, _) => Err(unsupported()),
        (Some(_), Some(e)) => Err(e),
        (Some(txns), None) => {
            let (txns, id) = (txns.clone(), req.transactional_id.to_string());
            let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
            // The producer and its transaction first, then the group metadata (v3+; before,
            // generation -1 and no member: taken), as Kafka checks them. Both checks only read
            // state under a lock; the store waits for a sync, off the async workers.
            let checked = txns.check_offsets(&id, pid, epoch, &group).and_then(|()| {
                let instance = req.group_instance_id.as_deref();
                ctx.broker.coordinator.validate_txn_commit(&group, &req.member_id, instance, req.generation_id).map_err(
                    |code| {
                        let why = format!("evident: the group metadata of {id}'s offsets is not group {group}'s current one");
                        KafkaError::new(code, why)
                    },
                )
            });
            match checked {
                Err(e) => Err(e),
                Ok(()) => blocking(move || txns.add_offsets(&id, pid, epoch, &group, offsets)).await,
            }
        }
    };
    let code = result.err().map_or(0, |e| e.code.code());
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code))
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
