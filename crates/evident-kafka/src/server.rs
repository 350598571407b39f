//! The listener: admits connections within the connection caps (at a cap, the longest idle
//! connection makes room: see `connections`), serves each on its own task, and stops accepting
//! at shutdown (connections then end after their current request).

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::connection;
use crate::connections::Cap;

/// A running Kafka listener.
#[derive(Debug)]
pub struct KafkaServer {
    listener: TcpListener,
    broker: Arc<Broker>,
}

impl KafkaServer {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener, broker: Arc<Broker>) -> Self {
        Self { listener, broker }
    }

    /// Accepts and serves connections until shutdown.
    pub async fn run(self) {
        let metrics = self.broker.metrics.clone();
        let mut shutdown = self.broker.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Kafka connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match self.broker.connections.admit(peer.ip()) {
                Ok((slot, evicted)) => {
                    if evicted.is_some() {
                        tracing::debug!(%peer, "Kafka connection cap reached: the longest idle connection was closed");
                        metrics.connection_evicted();
                    }
                    slot
                }
                Err(refused) => {
                    let scope = match refused {
                        Cap::Listener => "the listener",
                        Cap::Address => "this address",
                    };
                    tracing::warn!(%peer, "Kafka connection refused: every connection of {scope} is busy at its cap");
                    metrics.connection_refused();
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            metrics.connection_opened();
            let (broker, metrics) = (self.broker.clone(), metrics.clone());
            tokio::spawn(async move {
                connection::serve(broker, stream, peer, slot).await;
                metrics.connection_closed();
            });
        }
    }
}
