//! The HTTP listener's connection layer: accepts connections up to a cap, serves each with
//! hyper's HTTP/1.1 (the protocol `axum::serve` spoke here before; HTTP/2 was never enabled),
//! cuts off a client that is too slow to send its headers, and drains connections at shutdown.
//!
//! `axum::serve` has no connection cap and sets no timer, so hyper's header read timeout was
//! off and a client could hold a connection forever by sending one header byte at a time. This
//! loop is the same few lines as axum's with the limits added. A connection over the cap is not
//! just dropped, as the Kafka listener does (Kafka clients reconnect with backoff): an HTTP client
//! would see a bare reset, so it gets a fixed `503` with the API's JSON error body and
//! `Connection: close`, written by a small task that gives the client a moment to read it.
//!
//! Accepting happens here, on the shared runtime; each accepted connection is then handed to
//! one of the connection threads (`workers.rs`) and served there for its whole life.

use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::config::HttpLimits;
use super::workers::ConnectionThreads;
use crate::metrics::Metrics;

/// Refusals being written at once; past this, an excess connection is closed without a reply,
/// so a flood of connections cannot make the refusals themselves a cost.
const REFUSALS_MAX: usize = 64;
/// How long a refusal waits for the client to read the reply and close.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// The most a refusal reads (and discards) of a request before closing: closing a socket with
/// unread input makes the kernel send a reset, which can destroy the reply before the client
/// reads it.
const REFUSAL_DRAIN_BYTES: usize = 64 << 10;

/// Serves `app` on `listener`, each connection on one of `threads`, until `stop` turns true,
/// then lets the open connections finish their current request (an idle keep-alive connection
/// closes at once) and returns when every connection has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    threads: Arc<ConnectionThreads>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper starts the header clock whenever it waits for a request head, including between
    // requests on a keep-alive connection, so this also closes idle connections.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning, as
                // axum's own listener does.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small responses (acks) must not wait for Nagle's timer.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, peer, limits.connections_max, &refusals);
            continue;
        };
        // The socket leaves this runtime's reactor and joins the connection thread's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "handing an HTTP connection to its thread failed");
                continue;
            }
        };
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let (builder, app, gauge, mut stop) = (builder.clone(), app.clone(), metrics.clone(), stop.clone());
        let handed = threads.run(Box::new(move || {
            let stream = match TcpStream::from_std(stream) {
                Ok(inner) => CountedStream { inner, metrics: gauge },
                Err(e) => {
                    // Dropping the job closes the socket and frees its slot.
                    gauge.open_connections.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "registering an HTTP connection failed");
                    return;
                }
            };
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::spawn(async move {
                let _slot = slot;
                let mut conn = pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = stopped(&mut stop) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = ended {
                    // Header timeouts (slow or idle clients), resets and malformed requests:
                    // the client's business, not the operator's.
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
            });
        }));
        if !handed {
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(%peer, "an HTTP connection thread has ended; connection closed");
        }
    }
    // Every slot back means every connection task has ended.
    let all = u32::try_from(limits.connections_max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Resolves when `stop` turns true (or its sender is gone), holding no borrow of the value, so
/// the future stays `Send` across the select's await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

/// Answers a connection over the cap with `503` and closes it.
fn refuse(mut stream: TcpStream, peer: SocketAddr, max: usize, refusals: &Arc<Semaphore>) {
    tracing::warn!(%peer, max, "HTTP connection refused: too many connections (--http-connections-max)");
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let body = format!(
            "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"the server already holds {max} HTTP connections (--http-connections-max); retry later\"}}}}"
        );
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(reply.as_bytes()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < REFUSAL_DRAIN_BYTES {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
    });
}

/// An accepted connection; dropping it decrements the open-connections gauge, however the
/// connection ends.
struct CountedStream {
    inner: TcpStream,
    metrics: Arc<Metrics>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
