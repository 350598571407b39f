//! DescribeTransactions (v0): each transactional id's state, timeout, start time, producer id
//! and epoch, and the partitions of its open transaction, as `kafka-transactions describe`
//! prints them. An id the coordinator does not know: `TRANSACTIONAL_ID_NOT_FOUND`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::unsupported;

/// Handles DescribeTransactions.
pub async fn handle(ctx: &Ctx<'_>, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let known: BTreeMap<String, crate::transactions::TxnMeta> =
        ctx.broker.transactions.as_ref().map(|t| t.list().into_iter().collect()).unwrap_or_default();
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default().with_transactional_id(id.clone());
            if ctx.broker.transactions.is_none() {
                return base.with_error_code(unsupported().code.code()).with_producer_id(ProducerId(-1));
            }
            let Some(m) = known.get(id.as_str()) else {
                return base.with_error_code(ResponseError::TransactionalIdNotFound.code()).with_producer_id(ProducerId(-1));
            };
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, p) in &m.partitions {
                topics.entry(topic.as_str()).or_default().push(i32::try_from(*p).unwrap_or(i32::MAX));
            }
            base.with_transaction_state(StrBytes::from_static_str(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.started_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default().with_topic(TopicName(StrBytes::from_string(t.to_string()))).with_partitions(ps)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

impl ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.transaction_states.iter().for_each(|s| each(s.error_code));
    }
}
