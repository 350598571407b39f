//! DescribeConfigs for topics (the settings evident keeps, see `topic_config`) and for the
//! broker (the listener's settings a client may care about).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::topic_config;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_read_only(read_only)
}

/// Handles DescribeConfigs.
pub async fn handle(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let keys: Option<Vec<String>> = r.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == name));
            match r.resource_type {
                TOPIC => {
                    let name = r.resource_name.to_string();
                    match broker.log.list_topics().into_iter().find(|m| m.name.as_str() == name) {
                        None => base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_string(format!("evident: unknown topic {name}")))),
                        Some(meta) => base.with_configs(
                            topic_config::describe(&meta.config)
                                .into_iter()
                                .filter(|(n, _, _)| wanted(n))
                                .map(|(n, v, default)| {
                                    entry(n, v, if default { DEFAULT_CONFIG } else { DYNAMIC_TOPIC_CONFIG }, false)
                                })
                                .collect(),
                        ),
                    }
                }
                BROKER => {
                    let c = &broker.config;
                    let all = [
                        ("auto.create.topics.enable", c.auto_create_topics.to_string()),
                        ("num.partitions", c.default_partitions.to_string()),
                        ("socket.request.max.bytes", c.request_max_bytes.to_string()),
                        ("connections.max.idle.ms", c.idle_timeout.as_millis().to_string()),
                        ("default.replication.factor", "1".to_string()),
                    ];
                    base.with_configs(
                        all.into_iter()
                            .filter(|(n, _)| wanted(n))
                            .map(|(n, v)| entry(n, v, STATIC_BROKER_CONFIG, true))
                            .collect(),
                    )
                }
                other => base.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(
                    StrBytes::from_string(format!(
                        "evident: configurations of resource type {other} are not kept (topics: 2, broker: 4)"
                    )),
                )),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| each(r.error_code));
    }
}
