//! AddPartitionsToTxn (v0–v3, transaction version 1): the partitions a transactional producer
//! is about to write join its open transaction. Every partition must exist; if one does not,
//! none is added (Kafka answers the others `OPERATION_NOT_ATTEMPTED`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::unsupported;

/// Handles AddPartitionsToTxn.
pub async fn handle(ctx: &Ctx<'_>, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.to_string();
    let mut wanted: Vec<(String, u32)> = Vec::new();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    for t in &req.v3_and_below_topics {
        let topic = t.name.to_string();
        let partitions = ctx.broker.log.topic_meta(&topic).map(|m| m.config.partitions).ok();
        for &p in &t.partitions {
            match (u32::try_from(p), partitions) {
                (Ok(p), Some(n)) if p < n && !crate::topics::is_internal(&topic) => wanted.push((topic.clone(), p)),
                _ => unknown.push((topic.clone(), p)),
            }
        }
    }
    let outcome = match (&ctx.broker.transactions, unknown.is_empty()) {
        (None, _) => Err(unsupported().code),
        (Some(_), false) => Err(ResponseError::OperationNotAttempted),
        (Some(txns), true) => {
            let (txns, pid, epoch) = (txns.clone(), req.v3_and_below_producer_id.0, req.v3_and_below_producer_epoch);
            let w = wanted.clone();
            tokio::task::spawn_blocking(move || txns.add_partitions(&id, pid, epoch, &w))
                .await
                .unwrap_or_else(|e| Err(crate::error::KafkaError::new(ResponseError::UnknownServerError, e.to_string())))
                .map_err(|e| e.code)
        }
    };
    let code_of = |topic: &str, p: i32| -> i16 {
        if unknown.iter().any(|(t, q)| t == topic && *q == p) {
            return ResponseError::UnknownTopicOrPartition.code();
        }
        match outcome {
            Ok(()) => 0,
            Err(code) => code.code(),
        }
    };
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_of(t.name.as_str(), p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

impl ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for t in &self.results_by_topic_v3_and_below {
            t.results_by_partition.iter().for_each(|p| each(p.partition_error_code));
        }
    }
}
