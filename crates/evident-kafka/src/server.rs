//! The listener: accepts connections up to the configured limit, serves each on its own task,
//! and stops accepting at shutdown (connections then end after their current request).

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::connection;

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
            if usize::try_from(metrics.connections_open()).unwrap_or(0) >= self.broker.config.connections_max {
                tracing::warn!(%peer, max = self.broker.config.connections_max, "Kafka connection refused: too many connections");
                metrics.connection_refused();
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            // Only this task opens connections, so the limit check above cannot race another open.
            metrics.connection_opened();
            let (broker, metrics) = (self.broker.clone(), metrics.clone());
            tokio::spawn(async move {
                connection::serve(broker, stream, peer).await;
                metrics.connection_closed();
            });
        }
    }
}
