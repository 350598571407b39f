//! One client connection: read size-prefixed requests, answer them in the order they came, as
//! the protocol requires. Requests are handled one after another, so their effects apply in
//! order (an idempotent producer's batches reach the log in sequence); a produce only queues
//! its appends before the next request is read, and its reply follows once they are synced, so
//! a client with several requests in flight (librdkafka keeps up to five) gets them into one
//! group commit instead of one sync each. Replies are written by a second task, in request
//! order, with at most [`IN_FLIGHT_MAX`] outstanding.
//!
//! A frame whose length is negative or over the limit, a request that does not decode, an
//! unknown API key or an unsupported version closes only this connection (with the reason
//! logged), as Kafka's broker does; other clients are unaffected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::dispatch;
use crate::handler::{Answer, Outcome};

/// Most requests answered-but-not-yet-written per connection; reading pauses beyond it.
pub const IN_FLIGHT_MAX: usize = 16;

/// A reply in the write queue.
enum Queued {
    Ready(Answer),
    Later(JoinHandle<Answer>),
}

/// Serves a connection until the peer closes it, an error, idle timeout or shutdown.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Queued>(IN_FLIGHT_MAX);
    let writing = tokio::spawn(write_replies(writer, rx, peer));
    let mut shutdown = broker.shutdown.clone();
    loop {
        let mut len_buf = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(broker.config.idle_timeout, reader.read_exact(&mut len_buf)) => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match read {
            Err(_) => {
                tracing::debug!(%peer, "closing an idle Kafka connection");
                break;
            }
            Ok(Err(_)) => break, // closed by the peer
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 0 || len as usize > broker.config.request_max_bytes {
            let reason = format!("request size {len} out of bounds (max {})", broker.config.request_max_bytes);
            let _ = tx.send(Queued::Ready(Answer::Close(reason))).await;
            break;
        }
        // Bounded above: the length was checked before this allocation.
        let mut frame = vec![0u8; len as usize];
        // The body has the same deadline as the wait for a request: a peer trickling a frame
        // byte by byte must not hold the connection (and its buffer) forever.
        match tokio::time::timeout(broker.config.idle_timeout, reader.read_exact(&mut frame)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break, // closed by the peer
            Err(_) => {
                tracing::debug!(%peer, "closing a Kafka connection whose request body did not arrive in time");
                break;
            }
        }
        let queued = match dispatch::handle(&broker, peer, Bytes::from(frame)).await {
            Outcome::Later(durable) => Queued::Later(tokio::spawn(durable)),
            Outcome::Now(answer) => Queued::Ready(answer),
        };
        let closing = matches!(queued, Queued::Ready(Answer::Close(_)));
        if tx.send(queued).await.is_err() || closing {
            break;
        }
    }
    // Replies already owed (appends queued in the log) are still written.
    drop(tx);
    let _ = writing.await;
}

/// Writes replies in request order; stops at a close or a write error.
async fn write_replies(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Queued>, peer: SocketAddr) {
    while let Some(queued) = rx.recv().await {
        let answer = match queued {
            Queued::Ready(answer) => answer,
            Queued::Later(task) => task.await.unwrap_or_else(|e| Answer::Close(format!("a request task failed: {e}"))),
        };
        match answer {
            Answer::Reply(bytes) => {
                let size = (bytes.len() as u32).to_be_bytes();
                if writer.write_all(&size).await.is_err() || writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::NoReply => {}
            Answer::Close(reason) => {
                tracing::warn!(%peer, %reason, "closing a Kafka connection");
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}
