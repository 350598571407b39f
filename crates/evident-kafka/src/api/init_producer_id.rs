//! InitProducerId: hands an idempotent producer its id (epoch 0). Transactional producers are
//! refused until transactions are proven by a test (SPEC §4) with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! the fatal error Kafka gives a client that may not use its transactional id, so the client
//! fails at once instead of retrying (FindCoordinator refuses the same way). The log keeps each
//! producer's sequences, so idempotence holds across restarts.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::handler::{Ctx, ErrorCodes};

/// Handles InitProducerId.
pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        // The response has no message field: the reason is logged instead.
        tracing::debug!(transactional_id = ?req.transactional_id, "transactional producer refused: transactions are not supported");
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
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
