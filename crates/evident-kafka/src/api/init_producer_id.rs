//! InitProducerId: hands an idempotent producer its id (epoch 0), and a transactional producer
//! the id and epoch its transactional id has (a new session bumps the epoch, fencing the
//! previous one, and aborts its open transaction; `transactions.rs`). Without a transaction
//! coordinator a transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal,
//! so the client fails at once. The log keeps each producer's sequences, so idempotence holds
//! across restarts.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::handler::{Ctx, ErrorCodes};

/// Handles InitProducerId.
pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(id) = &req.transactional_id {
        let refused = |code: ResponseError| {
            InitProducerIdResponse::default().with_error_code(code.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        };
        let Some(txns) = ctx.broker.transactions.clone() else {
            // The response has no message field: the reason is logged instead.
            tracing::debug!(transactional_id = ?req.transactional_id, "transactional producer refused: no transaction coordinator");
            return refused(ResponseError::TransactionalIdAuthorizationFailed);
        };
        let id = id.to_string();
        let known = (req.producer_id.0 >= 0 && req.producer_epoch >= 0).then_some((req.producer_id.0, req.producer_epoch));
        let timeout = req.transaction_timeout_ms;
        let broker = ctx.broker.clone();
        let answer =
            tokio::task::spawn_blocking(move || txns.init_producer(&id, timeout, known, || broker.next_producer_id()))
                .await;
        return match answer {
            Ok(Ok((pid, epoch))) => InitProducerIdResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
            Ok(Err(e)) => {
                tracing::debug!(transactional_id = ?req.transactional_id, "InitProducerId refused: {}", e.message);
                refused(e.code)
            }
            Err(_) => refused(ResponseError::UnknownServerError),
        };
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: a producer that knows its id asks for an epoch bump after a fatal error;
        // its sequences restart at 0 under the new epoch, which the log accepts.
        if let Some(epoch) = req.producer_epoch.checked_add(1) {
            return InitProducerIdResponse::default().with_producer_id(req.producer_id).with_producer_epoch(epoch);
        }
    }
    InitProducerIdResponse::default().with_producer_id(ProducerId(ctx.broker.next_producer_id())).with_producer_epoch(0)
}

impl ErrorCodes for InitProducerIdResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
