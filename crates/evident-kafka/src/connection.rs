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
//!
//! What a peer can hold is bounded (ARCHITECTURE.md, the limits table): a connection waiting
//! for a request is closed after the idle timeout; once a request's first byte arrived, the
//! rest of it must arrive within the request timeout; a frame's length is charged to the
//! broker-wide budget of queued request bytes (beyond its first 64 KiB) before its body is
//! read (waiting for budget counts against the same deadline), and the body buffer grows with the bytes received, so a
//! withheld body costs its budget but not its memory. The connection also leaves when the
//! listener evicts it as the longest idle one to admit another (`connections`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::connections::{Slot, Tracker};
use crate::dispatch;
use crate::handler::{Answer, Outcome};

/// Most requests answered-but-not-yet-written per connection; reading pauses beyond it.
pub const IN_FLIGHT_MAX: usize = 16;

/// The first allocation for a frame body; the buffer then doubles as bytes arrive (never past
/// the announced length), so memory follows what the peer actually sent.
const FRAME_CHUNK: usize = 64 << 10;

/// The first bytes of every frame are not charged to the shared request-bytes budget: the
/// connection cap bounds them (1,024 × 64 KiB = 64 MiB at the defaults), and so small
/// requests (metadata, heartbeats, commits, most produces) never wait behind large frames
/// whose bodies are withheld; only the bytes beyond are charged.
const UNCHARGED_FRAME_BYTES: usize = 64 << 10;

/// The read buffer of a connection: a small request (size and body) usually arrives in one
/// read, while a large body bypasses it and is read straight into the frame.
const READ_BUFFER: usize = 8 << 10;

/// A reply in the write queue.
enum Queued {
    Ready(Answer),
    Later(JoinHandle<Answer>),
}

/// Why no frame was read.
enum NoFrame {
    /// The peer closed the connection (or it failed).
    Closed,
    /// The size prefix is out of bounds: the reason.
    Size(String),
}

/// Serves a connection until the peer closes it, an error, a deadline, eviction or shutdown.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let (tx, rx) = mpsc::channel::<Queued>(IN_FLIGHT_MAX);
    let writing = tokio::spawn(write_replies(writer, rx, peer, slot.tracker()));
    let mut shutdown = broker.shutdown.clone();
    loop {
        let first = tokio::select! {
            r = tokio::time::timeout(broker.config.idle_timeout, reader.read_u8()) => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = slot.evicted() => {
                tracing::debug!(%peer, "closing an idle Kafka connection to admit another");
                break;
            }
        };
        let first = match first {
            Err(_) => {
                tracing::debug!(%peer, "closing an idle Kafka connection");
                break;
            }
            Ok(Err(_)) => break, // closed by the peer
            Ok(Ok(byte)) => byte,
        };
        // The rest of the request has its own deadline from its first byte: a peer trickling
        // a size or a body (or waiting for budget) must not hold the connection for ever.
        let read = tokio::select! {
            r = tokio::time::timeout(broker.config.request_timeout, read_frame(&broker, &mut reader, first)) => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = slot.evicted() => {
                tracing::debug!(%peer, "closing a Kafka connection with a partial request to admit another");
                break;
            }
        };
        let (frame, budget) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(NoFrame::Closed)) => break,
            Ok(Err(NoFrame::Size(reason))) => {
                slot.request_started();
                let _ = tx.send(Queued::Ready(Answer::Close(reason))).await;
                break;
            }
            Err(_) => {
                tracing::debug!(%peer, "closing a Kafka connection whose request did not arrive in time");
                break;
            }
        };
        slot.request_started();
        let queued = match dispatch::handle(&broker, peer, frame).await {
            Outcome::Later(durable) => Queued::Later(tokio::spawn(durable)),
            Outcome::Now(answer) => Queued::Ready(answer),
        };
        // Handled: the request was decoded (a produce's appends are queued), so its bytes
        // leave the budget.
        drop(budget);
        let closing = matches!(queued, Queued::Ready(Answer::Close(_)));
        if tx.send(queued).await.is_err() || closing {
            break;
        }
    }
    // Replies already owed (appends queued in the log) are still written.
    drop(tx);
    let _ = writing.await;
}

/// Reads the rest of a frame whose first size byte is `first`: the size is checked before
/// anything is allocated, then charged to the broker's request-bytes budget, then the body is
/// read into a buffer that grows as it arrives.
async fn read_frame(
    broker: &Broker,
    reader: &mut BufReader<OwnedReadHalf>,
    first: u8,
) -> Result<(Bytes, OwnedSemaphorePermit), NoFrame> {
    let mut size = [first, 0, 0, 0];
    reader.read_exact(&mut size[1..]).await.map_err(|_| NoFrame::Closed)?;
    let len = i32::from_be_bytes(size);
    let max = broker.config.request_max_bytes;
    let len = match usize::try_from(len) {
        Ok(len) if len <= max => len,
        _ => return Err(NoFrame::Size(format!("request size {len} out of bounds (max {max})"))),
    };
    // Never more than the whole budget, so that any frame can get it once others are done.
    let charge = len.saturating_sub(UNCHARGED_FRAME_BYTES).min(broker.config.queued_request_max_bytes);
    let charge = u32::try_from(charge).unwrap_or(u32::MAX);
    let budget = broker.request_bytes.clone().acquire_many_owned(charge).await.map_err(|_| NoFrame::Closed)?;
    let mut frame = Vec::new();
    while frame.len() < len {
        let left = len - frame.len();
        if frame.len() == frame.capacity() {
            frame.reserve_exact(frame.capacity().max(FRAME_CHUNK).min(left));
        }
        let n = reader.read_buf(&mut (&mut frame).limit(left)).await.map_err(|_| NoFrame::Closed)?;
        if n == 0 {
            return Err(NoFrame::Closed);
        }
    }
    Ok((Bytes::from(frame), budget))
}

/// Writes replies in request order; stops at a close or a write error.
async fn write_replies(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Queued>, peer: SocketAddr, tracker: Tracker) {
    while let Some(queued) = rx.recv().await {
        let answer = match queued {
            Queued::Ready(answer) => answer,
            Queued::Later(task) => task.await.unwrap_or_else(|e| Answer::Close(format!("a request task failed: {e}"))),
        };
        // The connection stays busy (not evictable) until the reply is on the wire.
        let _finished = Finished(&tracker);
        match answer {
            // A held reply's charge is returned when it is dropped, after the write.
            Answer::Reply(bytes) | Answer::Held(bytes, _) => {
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

/// Marks a request finished when its reply was written, whichever way the writer leaves.
struct Finished<'a>(&'a Tracker);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}
