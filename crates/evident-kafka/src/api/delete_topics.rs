//! DeleteTopics, by name or (v6+) by topic id. Internal topics cannot be deleted.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;
use crate::topics;

/// Handles DeleteTopics.
pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = ctx.broker.clone();
    let results = tokio::task::spawn_blocking(move || {
        // Before v6 topics come as names; from v6 as (name or id).
        let mut wanted: Vec<(Option<String>, uuid::Uuid)> =
            req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
        wanted.extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
        wanted
            .into_iter()
            .map(|(name, id)| {
                let name = name.or_else(|| {
                    broker
                        .log
                        .list_topics()
                        .into_iter()
                        .find(|m| topics::topic_uuid(m.id) == id)
                        .map(|m| m.name.to_string())
                });
                let result = match &name {
                    None => Err(KafkaError::new(ResponseError::UnknownTopicId, "evident: no topic has this id")),
                    Some(n) if topics::is_internal(n) => Err(KafkaError::new(
                        ResponseError::InvalidTopicException,
                        format!("evident: topic {n} is internal and cannot be deleted"),
                    )),
                    Some(n) => broker.log.delete_topic(n).map_err(KafkaError::from),
                };
                let base = DeletableTopicResult::default().with_name(name.map(|n| topics::name(&n))).with_topic_id(id);
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
    DeleteTopicsResponse::default().with_responses(results)
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| each(t.error_code));
    }
}
