//! EndTxn (v0–v3, transaction version 1): commits or aborts the producer's open transaction,
//! answering once the markers and the log's end frame are durable and, on a commit, the
//! transaction's consumer offsets are stored.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::handler::{Ctx, ErrorCodes};
use crate::transactions::{blocking, unsupported};

/// Handles EndTxn.
pub async fn handle(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let result = match &ctx.broker.transactions {
        None => Err(unsupported()),
        Some(txns) => {
            let (txns, id) = (txns.clone(), req.transactional_id.to_string());
            let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
            blocking(move || txns.end_txn(&id, pid, epoch, commit)).await
        }
    };
    EndTxnResponse::default().with_error_code(result.err().map_or(0, |e| e.code.code()))
}

impl ErrorCodes for EndTxnResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
