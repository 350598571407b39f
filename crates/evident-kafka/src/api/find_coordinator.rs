//! FindCoordinator: evident is a single broker, so it coordinates every group and every
//! transactional id itself. A listener without a transaction coordinator refuses transactional
//! ids with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the error Kafka gives a client that may not
//! use its transactional id: clients treat it as fatal, so `init_transactions` fails at once (a
//! retriable error made librdkafka retry until its transaction timeout, a hang to the user).
//! Any other key type is an invalid request.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::NODE_ID;
use crate::handler::{Ctx, ErrorCodes};

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator's key type for transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Handles FindCoordinator (v0–v2: one key per request).
pub async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let refusal = match req.key_type {
        KEY_TYPE_GROUP => None,
        KEY_TYPE_TRANSACTION if ctx.broker.transactions.is_some() => None,
        KEY_TYPE_TRANSACTION => Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            crate::transactions::TRANSACTIONS_UNSUPPORTED.to_string(),
        )),
        other => Some((ResponseError::InvalidRequest, format!("unknown coordinator key type {other}"))),
    };
    match refusal {
        None => {
            let (host, port) = &ctx.broker.advertised;
            FindCoordinatorResponse::default()
                .with_error_message(None)
                .with_node_id(BrokerId(NODE_ID))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(i32::from(*port))
        }
        Some((code, message)) => FindCoordinatorResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1),
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
