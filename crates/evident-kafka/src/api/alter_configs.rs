//! AlterConfigs: replaces a topic's configuration, as Kafka does: the settings listed are set,
//! every other one goes back to its default (use IncrementalAlterConfigs to change one setting).
//! The settings are the ones CreateTopics takes (`topic_config`): the ones evident keeps are
//! stored, durably, with the topic; Kafka's tuning settings are accepted and ignored; any other
//! name is `INVALID_CONFIG`. `validate_only` checks without storing. The partition count is not
//! a setting (CreatePartitions grows it). Broker settings are static (flags, environment or
//! file), so altering them is `INVALID_REQUEST`, as Kafka answers for a setting it cannot
//! change dynamically.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};
use crate::{topic_config, topics};

/// Config resource types (Kafka's `ConfigResource.Type`).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Alters one resource: `change` builds the new topic configuration from the current one.
/// Shared with IncrementalAlterConfigs.
pub(super) fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&evident_log::TopicConfig) -> Result<evident_log::TopicConfig, KafkaError>,
) -> Result<(), KafkaError> {
    match resource_type {
        TOPIC => {}
        BROKER => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                "evident: broker settings are set at start-up (flags, environment or file), not dynamically",
            ))
        }
        other => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("evident: configurations of resource type {other} are not kept (topics: 2)"),
            ))
        }
    }
    if topics::is_internal(name) {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("evident: topic {name} is internal: its configuration is evident's"),
        ));
    }
    let Some(meta) = broker.log.list_topics().into_iter().find(|m| m.name.as_str() == name) else {
        return Err(KafkaError::new(ResponseError::UnknownTopicOrPartition, format!("evident: unknown topic {name}")));
    };
    let config = change(&meta.config)?;
    config.validate().map_err(|e| KafkaError::new(ResponseError::InvalidConfig, format!("evident: {e}")))?;
    if !validate_only {
        broker.log.alter_topic_config(name, config)?;
    }
    Ok(())
}

/// Applies one setting, with `INVALID_CONFIG` and Kafka's wording for a refusal.
pub(super) fn set(config: &mut evident_log::TopicConfig, name: &str, value: Option<&str>) -> Result<(), KafkaError> {
    topic_config::apply(config, name, value)
        .map_err(|m| KafkaError::new(ResponseError::InvalidConfig, format!("evident: {m}")))
}

/// The answer for one resource.
pub(super) fn outcome(resource_type: i8, name: StrBytes, result: Result<(), KafkaError>) -> AlterConfigsResourceResponse {
    let base = AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(name);
    match result {
        Ok(()) => base.with_error_message(None),
        Err(e) => base.with_error_code(e.code.code()).with_error_message(Some(StrBytes::from_string(e.message))),
    }
}

/// Handles AlterConfigs.
pub async fn handle(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let broker = ctx.broker.clone();
    let responses = tokio::task::spawn_blocking(move || {
        req.resources
            .into_iter()
            .map(|r| {
                let result = alter_resource(&broker, r.resource_type, r.resource_name.as_str(), req.validate_only, |current| {
                    // Everything not listed returns to its default; the partitions stay.
                    let mut config =
                        evident_log::TopicConfig { partitions: current.partitions, ..evident_log::TopicConfig::default() };
                    for c in &r.configs {
                        set(&mut config, c.name.as_str(), c.value.as_deref())?;
                    }
                    Ok(config)
                });
                outcome(r.resource_type, r.resource_name, result)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    AlterConfigsResponse::default().with_responses(responses)
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| each(r.error_code));
    }
}
