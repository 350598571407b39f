//! CreateTopics: partitions (-1 = the default), configuration (see `topic_config`), and
//! `validate_only`. evident is one node: a replication factor other than 1 (or -1, the default)
//! is refused, as is a manual replica assignment.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;
use crate::{topic_config, topics};

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
                    if !t.assignments.is_empty() {
                        return Err(KafkaError::new(
                            ResponseError::InvalidReplicaAssignment,
                            "evident is a single node: manual replica assignments are not accepted",
                        ));
                    }
                    let mut config = evident_log::TopicConfig {
                        partitions: if t.num_partitions == -1 {
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
