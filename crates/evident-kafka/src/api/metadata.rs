//! Metadata: the one broker (evident itself, at its advertised address) and the topics with
//! their partitions, every one led by that broker. Asking for an unknown topic creates it when
//! auto-creation is on and the client allows it, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::NODE_ID;
use crate::handler::{Ctx, ErrorCodes};
use crate::topics;

fn topic_entry(meta: &evident_log::TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.config.partitions as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topics::name(meta.name.as_str())))
        .with_topic_id(topics::topic_uuid(meta.id))
        .with_is_internal(topics::is_internal(meta.name.as_str()))
        .with_partitions(partitions)
}

/// Handles Metadata.
pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let (host, port) = broker.advertised.clone();
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(host))
        .with_port(i32::from(port))];
    // Before v4 there is no flag: old clients always allowed auto-creation.
    let allow_create = ctx.version < 4 || req.allow_auto_topic_creation;
    let topics = match req.topics {
        None => broker.log.list_topics().iter().map(topic_entry).collect(),
        Some(wanted) => {
            let mut out = Vec::with_capacity(wanted.len());
            for t in wanted {
                let Some(name) = t.name else {
                    // Lookup by topic id (v10+): evident ids are derived, so search them.
                    let found = broker.log.list_topics().into_iter().find(|m| topics::topic_uuid(m.id) == t.topic_id);
                    out.push(match found {
                        Some(meta) => topic_entry(&meta),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    });
                    continue;
                };
                let text = name.0.to_string();
                // Auto-creation appends and syncs a catalog frame: off the async workers.
                let b = broker.clone();
                let lookup = {
                    let text = text.clone();
                    tokio::task::spawn_blocking(move || topics::ensure(&b, &text, allow_create)).await
                };
                out.push(match lookup {
                    Ok(Ok(Some(meta))) => topic_entry(&meta),
                    Ok(Ok(None)) => MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Ok(Err(e)) => MetadataResponseTopic::default().with_name(Some(name)).with_error_code(e.code.code()),
                    Err(_) => MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(ResponseError::UnknownServerError.code()),
                });
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str("evident")))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.topics {
            each(t.error_code);
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}
