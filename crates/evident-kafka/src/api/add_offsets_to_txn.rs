//! AddOffsetsToTxn (transaction version 1): a consumer group's offsets will be committed with
//! the producer's open transaction (TxnOffsetCommit then sends them).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::{blocking, unsupported};

/// Handles AddOffsetsToTxn.
pub async fn handle(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let result = match &ctx.broker.transactions {
        None => Err(unsupported()),
        Some(txns) => {
            let (txns, id, group) = (txns.clone(), req.transactional_id.to_string(), req.group_id.to_string());
            let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
            match evident_groups::validate_group(&group) {
                Err(e) => Err(crate::error::KafkaError::from(e)),
                Ok(()) => blocking(move || txns.add_group(&id, pid, epoch, &group)).await,
            }
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(result.err().map_or(0, |e| e.code.code()))
}

impl ErrorCodes for AddOffsetsToTxnResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
