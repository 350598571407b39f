//! CreatePartitions: grows a topic (partitions are only ever added, as in Kafka). Existing
//! streams stay in their partitions (the key-partition guard keeps them there); new keys
//! spread over all partitions. A manual replica assignment of the new partitions is accepted
//! when a one-broker Kafka would accept it: one entry per new partition, each on this broker
//! alone (`[[1]]`; librdkafka's admin test sends exactly that); Kafka's errors otherwise.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;
use crate::topics;

/// Kafka's checks of a manual assignment of `added` new partitions, on a single broker.
fn check_assignments(assignments: &[CreatePartitionsAssignment], added: u32) -> Result<(), KafkaError> {
    if usize::try_from(added).ok() != Some(assignments.len()) {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                assignments.len()
            ),
        ));
    }
    for (i, a) in assignments.iter().enumerate() {
        super::create_topics::on_this_broker_alone(&format!("new partition {i}"), &a.broker_ids)?;
    }
    Ok(())
}

/// Handles CreatePartitions.
pub async fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = ctx.broker.clone();
    let results = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let result = (|| -> Result<(), KafkaError> {
                    if topics::is_internal(&name) {
                        return Err(KafkaError::new(
                            ResponseError::InvalidTopicException,
                            format!("evident: topic {name} is internal"),
                        ));
                    }
                    let count = u32::try_from(t.count).map_err(|_| {
                        KafkaError::new(ResponseError::InvalidPartitions, format!("evident: {} partitions", t.count))
                    })?;
                    let meta =
                        broker.log.list_topics().into_iter().find(|m| m.name.as_str() == name).ok_or_else(|| {
                            KafkaError::new(
                                ResponseError::UnknownTopicOrPartition,
                                format!("evident: unknown topic {name}"),
                            )
                        })?;
                    if count <= meta.config.partitions || count > evident_log::TopicConfig::PARTITIONS_MAX {
                        return Err(KafkaError::new(
                            ResponseError::InvalidPartitions,
                            format!(
                                "evident: topic {name} has {} partitions; it can grow to at most {}, not {count}",
                                meta.config.partitions,
                                evident_log::TopicConfig::PARTITIONS_MAX
                            ),
                        ));
                    }
                    if let Some(assignments) = t.assignments.as_deref().filter(|a| !a.is_empty()) {
                        check_assignments(assignments, count - meta.config.partitions)?;
                    }
                    if req.validate_only {
                        return Ok(());
                    }
                    broker.log.create_partitions(&name, count)?;
                    Ok(())
                })();
                let base = CreatePartitionsTopicResult::default().with_name(t.name);
                match result {
                    Ok(()) => base,
                    Err(e) => {
                        base.with_error_code(e.code.code()).with_error_message(Some(StrBytes::from_string(e.message)))
                    }
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    CreatePartitionsResponse::default().with_results(results)
}

impl ErrorCodes for CreatePartitionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| each(r.error_code));
    }
}
