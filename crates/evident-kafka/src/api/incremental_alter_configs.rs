//! IncrementalAlterConfigs (what `kafka-configs --alter` and the admin clients send): changes
//! the settings listed and leaves the others, as Kafka does. SET sets a setting, DELETE returns
//! it to its default. APPEND and SUBTRACT apply to Kafka's list settings; every setting evident
//! keeps holds one value (even `cleanup.policy`, a list in Kafka, where `delete,compact` is
//! allowed), so they are `INVALID_CONFIG` with Kafka's message for a setting that is not a list
//! (probed on Kafka 4.4: "Can't APPEND to key retention.ms because its type is not LIST."). Resources, validation and storage are AlterConfigs' (`alter_configs`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{alter_resource, outcome, set};
use crate::error::KafkaError;
use crate::handler::{Ctx, ErrorCodes};
use crate::topic_config;

/// Kafka's `AlterConfigOp.OpType`.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Handles IncrementalAlterConfigs.
pub async fn handle(ctx: &Ctx<'_>, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let broker = ctx.broker.clone();
    let responses = tokio::task::spawn_blocking(move || {
        req.resources
            .into_iter()
            .map(|r| {
                let result = alter_resource(&broker, r.resource_type, r.resource_name.as_str(), req.validate_only, |current| {
                    let mut config = current.clone();
                    let defaults = topic_config::describe(&evident_log::TopicConfig::default());
                    for c in &r.configs {
                        let name = c.name.as_str();
                        match c.config_operation {
                            SET => set(&mut config, name, c.value.as_deref())?,
                            // A strategy returns to "not set", which HTTP appends read differently
                            // from an explicit TopicNameStrategy.
                            DELETE if topic_config::unset(&mut config, name) => {}
                            DELETE => match defaults.iter().find(|(n, _, _)| *n == name) {
                                Some((_, value, _)) => set(&mut config, name, Some(value))?,
                                // An ignored Kafka setting has nothing to reset; an unknown
                                // name is refused as SET refuses it.
                                None if topic_config::is_ignored(name) => {}
                                None => set(&mut config, name, None)?,
                            },
                            APPEND | SUBTRACT => {
                                // Kafka's words for a setting that is not a list; evident's
                                // cleanup.policy is one value (delete or compact), not Kafka's list.
                                let op = if c.config_operation == APPEND { "APPEND" } else { "SUBTRACT" };
                                return Err(KafkaError::new(
                                    ResponseError::InvalidConfig,
                                    format!("evident: Can't {op} to key {name} because its type is not LIST."),
                                ));
                            }
                            other => {
                                return Err(KafkaError::new(
                                    ResponseError::InvalidRequest,
                                    format!("evident: unknown config operation {other}"),
                                ))
                            }
                        }
                    }
                    Ok(config)
                });
                let AlterConfigsResourceResponse { error_code, error_message, resource_type, resource_name, .. } =
                    outcome(r.resource_type, r.resource_name, result);
                IncrementalResult::default()
                    .with_error_code(error_code)
                    .with_error_message(error_message)
                    .with_resource_type(resource_type)
                    .with_resource_name(resource_name)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| each(r.error_code));
    }
}
