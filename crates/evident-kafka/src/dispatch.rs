//! One request frame from a socket to its outcome: the gate (`request::gate`, the same code the
//! fuzz target runs), then the registered handler (`api::route`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::api;
use crate::broker::Broker;
use crate::handler::{Answer, Ctx, Outcome};
use crate::request::{self, Gated};

/// Handles one request frame (without its size prefix).
pub async fn handle(broker: &Arc<Broker>, peer: SocketAddr, frame: Bytes) -> Outcome {
    match request::gate(frame) {
        Err(reason) => {
            broker.metrics.refused();
            Outcome::Now(Answer::Close(reason))
        }
        Ok(Gated::ApiVersionsTooNew { correlation_id, .. }) => {
            broker.metrics.request(ApiKey::ApiVersions);
            Outcome::Now(api::api_versions_too_new(correlation_id, broker.metrics.clone()))
        }
        Ok(Gated::Request { key, version, header, body }) => {
            broker.metrics.request(key);
            let ctx = Ctx { broker, header: &header, peer, version, served: api::SERVED };
            api::route(&ctx, key, body).await
        }
    }
}
