//! One client connection: read a size-prefixed request, answer it, repeat. Requests on a
//! connection are answered in order, as the protocol requires, by handling them one at a time.
//! A frame whose length is negative or over the limit, a request that does not decode, an
//! unknown API key or an unsupported version closes only this connection (with the reason
//! logged), as Kafka's broker does; other clients are unaffected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::dispatch::{self, Outcome};

/// Serves a connection until the peer closes it, an error, idle timeout or shutdown.
pub async fn serve(broker: Arc<Broker>, mut stream: TcpStream, peer: SocketAddr) {
    let mut shutdown = broker.shutdown.clone();
    loop {
        let mut len_buf = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(broker.config.idle_timeout, stream.read_exact(&mut len_buf)) => r,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match read {
            Err(_) => {
                tracing::debug!(%peer, "closing an idle Kafka connection");
                return;
            }
            Ok(Err(_)) => return, // closed by the peer
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 0 || len as usize > broker.config.request_max_bytes {
            tracing::warn!(%peer, len, max = broker.config.request_max_bytes, "closing a Kafka connection: request size out of bounds");
            return;
        }
        // Bounded above: the length was checked before this allocation.
        let mut frame = vec![0u8; len as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        match dispatch::handle(&broker, peer, Bytes::from(frame)).await {
            Outcome::Reply(bytes) => {
                let size = (bytes.len() as u32).to_be_bytes();
                if stream.write_all(&size).await.is_err() || stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Outcome::NoReply => {}
            Outcome::Close(reason) => {
                tracing::warn!(%peer, %reason, "closing a Kafka connection");
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}
