//! CreateTopics: partitions (-1 = the default), configuration (see `topic_config`), and
//! `validate_only`. evident is one node: a replication factor other than 1 (or -1, the default)
//! is refused. A manual replica assignment is accepted when it is one Kafka would accept on a
//! one-broker cluster: partitions 0, 1, ... in order, each on this broker alone (`[[1], [1]]`),
//! with the partition count and replication factor left at -1 (Kafka's rules and errors).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::NODE_ID;
use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;
use crate::{topic_config, topics};

/// Kafka's errors for a manual assignment of one partition (`what`, as the message names it)
/// that a single broker cannot hold: a broker other than this one, or more than one replica.
/// CreatePartitions checks its new partitions with it too.
pub(super) fn on_this_broker_alone(what: &str, broker_ids: &[BrokerId]) -> Result<(), KafkaError> {
    if let Some(other) = broker_ids.iter().find(|b| b.0 != NODE_ID) {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "The manual partition assignment includes broker {}, but no broker with that ID is registered (evident is the single broker {NODE_ID}).",
                other.0
            ),
        ));
    }
    if broker_ids.len() != 1 {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "The manual partition assignment of {what} has {} replicas: evident is a single broker, so it is [{NODE_ID}].",
                broker_ids.len()
            ),
        ));
    }
    Ok(())
}

/// The partition count a manual replica assignment gives, None when there is none; Kafka's
/// errors for one a single broker cannot hold.
fn assigned_partitions(t: &CreatableTopic) -> Result<Option<u32>, KafkaError> {
    if t.assignments.is_empty() {
        return Ok(None);
    }
    if t.num_partitions != -1 {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "A numPartitions value must not be set if assignments are specified.",
        ));
    }
    if t.replication_factor != -1 {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            "A replicationFactor value must not be set if assignments are specified.",
        ));
    }
    for (expected, a) in t.assignments.iter().enumerate() {
        if usize::try_from(a.partition_index).ok() != Some(expected) {
            return Err(KafkaError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Partitions should be a consecutive 0-based integer sequence, but got partition {}.", a.partition_index),
            ));
        }
        on_this_broker_alone(&format!("partition {expected}"), &a.broker_ids)?;
    }
    Ok(Some(u32::try_from(t.assignments.len()).unwrap_or(u32::MAX)))
}

/// Handles CreateTopics.
pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker.clone();
    let results = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let result = (|| -> Result<evident_log::TopicMeta, KafkaError> {
                    if topics::is_internal(&name) {
                        return Err(KafkaError::new(
                            ResponseError::InvalidTopicException,
                            format!("evident: topic names starting with __ are reserved: {name}"),
                        ));
                    }
                    if t.replication_factor != -1 && t.replication_factor != 1 {
                        return Err(KafkaError::new(
                            ResponseError::InvalidReplicationFactor,
                            format!(
                                "evident is a single node: replication factor {} is impossible (use 1 or -1)",
                                t.replication_factor
                            ),
                        ));
                    }
                    let assigned = assigned_partitions(&t)?;
                    let mut config = evident_log::TopicConfig {
                        partitions: if let Some(assigned) = assigned {
                            assigned
                        } else if t.num_partitions == -1 {
                            broker.config.default_partitions
                        } else {
                            u32::try_from(t.num_partitions).map_err(|_| {
                                KafkaError::new(
                                    ResponseError::InvalidPartitions,
                                    format!("evident: {} partitions", t.num_partitions),
                                )
                            })?
                        },
                        ..Default::default()
                    };
                    for c in &t.configs {
                        topic_config::apply(&mut config, c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))
                            .map_err(|m| KafkaError::new(ResponseError::InvalidConfig, format!("evident: {m}")))?;
                    }
                    config.validate().map_err(|e| {
                        let code =
                            if config.partitions == 0 || config.partitions > evident_log::TopicConfig::PARTITIONS_MAX {
                                ResponseError::InvalidPartitions
                            } else {
                                ResponseError::InvalidConfig
                            };
                        KafkaError::new(code, format!("evident: {e}"))
                    })?;
                    if req.validate_only {
                        evident_core::TopicName::new(name.clone()).map_err(|e| {
                            KafkaError::new(ResponseError::InvalidTopicException, format!("evident: {e}"))
                        })?;
                        if broker.log.list_topics().iter().any(|m| m.name.as_str() == name) {
                            return Err(KafkaError::new(
                                ResponseError::TopicAlreadyExists,
                                format!("evident: topic {name} already exists"),
                            ));
                        }
                        return Ok(evident_log::TopicMeta {
                            id: 0,
                            name: evident_core::TopicName::new(name.clone())
                                .map_err(|e| KafkaError::new(ResponseError::InvalidTopicException, e.to_string()))?,
                            config,
                            created_ms: 0,
                        });
                    }
                    Ok(broker.log.create_topic(&name, config)?)
                })();
                match result {
                    Ok(meta) => CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_topic_id(if req.validate_only { uuid::Uuid::nil() } else { topics::topic_uuid(meta.id) })
                        .with_num_partitions(meta.config.partitions as i32)
                        .with_replication_factor(1),
                    Err(e) => CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(e.code.code())
                        .with_error_message(Some(StrBytes::from_string(e.message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    CreateTopicsResponse::default().with_topics(results)
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| each(t.error_code));
    }
}
