//! ListTransactions (v0–v1): the transactional ids this coordinator knows, with their producer
//! id and state, filtered by state, producer id and (v1) how long their transaction has been
//! open, as `kafka-transactions list` asks. A state filter Kafka does not know is listed back
//! in `unknown_state_filters`, as Kafka does; Kafka lists every id that is not Dead.

use std::collections::BTreeSet;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::{unsupported, TxnState};

/// Kafka's transaction state names (`TransactionState` in Kafka's coordinator).
const KNOWN_STATES: [&str; 8] =
    ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "PrepareEpochFence", "Dead"];

/// Handles ListTransactions.
pub async fn handle(ctx: &Ctx<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let Some(txns) = &ctx.broker.transactions else {
        return ListTransactionsResponse::default().with_error_code(unsupported().code.code());
    };
    let unknown: Vec<StrBytes> =
        req.state_filters.iter().filter(|s| !KNOWN_STATES.contains(&s.as_str())).cloned().collect();
    let states: BTreeSet<&str> = req.state_filters.iter().map(|s| s.as_str()).collect();
    let producers: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = ctx.broker.clock.now_ms();
    let listed = txns
        .list()
        .into_iter()
        .filter(|(_, m)| states.is_empty() || states.contains(m.state.name()))
        .filter(|(_, m)| producers.is_empty() || producers.contains(&m.producer_id))
        // v1: only transactions open longer than the filter (-1: no filter).
        .filter(|(_, m)| {
            req.duration_filter < 0
                || (m.state == TxnState::Ongoing && now.saturating_sub(m.started_ms) > req.duration_filter)
        })
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(listed)
}

impl ErrorCodes for ListTransactionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
