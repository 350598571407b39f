//! The HTTP listener's connection layer: admits connections within two caps, serves each with
//! hyper's HTTP/1.1 (the protocol `axum::serve` spoke here before; HTTP/2 was never enabled),
//! cuts off a client that is too slow to send its headers, and drains connections at shutdown.
//!
//! `axum::serve` has no connection cap and sets no timer, so hyper's header read timeout was
//! off and a client could hold a connection forever by sending one header byte at a time. This
//! loop is the same few lines as axum's with the limits added.
//!
//! The caps, `--http-connections-max` and `--http-connections-per-ip-max`, are kept by the
//! registry the Kafka listener uses (`evident_kafka::connections`), with the same rule: at a
//! cap, the connection of that scope idle the longest is closed to admit the newcomer, first
//! those that never had a request answered (sockets that connect and say nothing, or trickle a
//! partial head), then the least recently answered. Refusing the newcomer instead, as this
//! listener did, lets whoever holds idle sockets lock everyone else out until the header
//! timeout closes them (reliability probe: 2,000 idle connections held every slot), and a
//! per-address cap alone cannot help on loopback, behind a NAT or a proxy, where every client
//! shares one address. Evicting costs a real client little: an idle keep-alive connection
//! closed between requests is what the header timeout does anyway, and HTTP clients reconnect.
//!
//! A connection is busy from a request's head until its response body has been written (or
//! dropped): a live subscription is a request in flight for as long as it streams, so it is
//! never evicted, and neither is a request being read, handled or answered. Only when every
//! connection in the scope is busy is the newcomer refused: not just dropped, as the Kafka
//! listener does (Kafka clients reconnect with backoff), since an HTTP client would see a bare
//! reset, but answered with a fixed `503` carrying the API's JSON error body and `Connection:
//! close`, written by a small task that gives the client a moment to read it.
//!
//! An evicted connection closes at once: hyper's graceful shutdown would wait out a partial
//! head for the whole header timeout. A request that arrived after the eviction chose the
//! connection (the registry decides on the accepting thread, the connection learns of it on its
//! own) is answered first, then the connection closes. Like any keep-alive timeout, an eviction
//! can cross a request still in transit from the client; that request was not read, and clients
//! resend a request whose connection closed before any reply.
//!
//! Accepting happens here, on the shared runtime; each accepted connection is then handed to
//! one of the connection threads (`workers.rs`) and served there for its whole life.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use evident_kafka::connections::{Cap, Connections, Slot, Tracker};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

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
    let open = Arc::new(Connections::new(limits.connections_max, limits.connections_per_ip_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    // Every connection task holds a sender; the receiver ends when the last one is dropped.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let app = TowerToHyperService::new(app);
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
        let slot = match open.admit(peer.ip()) {
            Ok((slot, evicted)) => {
                if let Some(cap) = evicted {
                    metrics.connection_evicted(cap);
                    tracing::debug!(%peer, cap = flag(cap), "HTTP connection cap reached: the longest idle connection is closed for the newcomer");
                }
                Arc::new(slot)
            }
            Err(cap) => {
                metrics.connection_refused(cap);
                refuse(stream, peer, cap, &limits, &refusals);
                continue;
            }
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
        let (builder, app, gauge, mut stop, alive) =
            (builder.clone(), app.clone(), metrics.clone(), stop.clone(), alive.clone());
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
            let service = Tracked { app, slot: slot.clone() };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _alive = alive;
                let mut conn = pin!(conn);
                // Biased, the connection first: a request already in the socket is read (and
                // makes the connection busy) before an eviction is looked at.
                let ended = tokio::select! {
                    biased;
                    ended = conn.as_mut() => ended,
                    _ = slot.evicted() => {
                        if slot.is_idle() {
                            tracing::debug!(%peer, "closing an idle HTTP connection to admit another");
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
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
    drop(alive);
    let _ = all_ended.recv().await;
}

/// Resolves when `stop` turns true (or its sender is gone), holding no borrow of the value, so
/// the future stays `Send` across the select's await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

/// The flag that sets `cap`.
fn flag(cap: Cap) -> &'static str {
    match cap {
        Cap::Listener => "--http-connections-max",
        Cap::Address => "--http-connections-per-ip-max",
    }
}

/// Answers a connection refused at `cap` with `503` and closes it.
fn refuse(mut stream: TcpStream, peer: SocketAddr, cap: Cap, limits: &HttpLimits, refusals: &Arc<Semaphore>) {
    let (max, whose) = match cap {
        Cap::Listener => (limits.connections_max, "the server's"),
        Cap::Address => (limits.connections_per_ip_max, "this address's"),
    };
    let flag = flag(cap);
    tracing::warn!(%peer, max, "HTTP connection refused: every one of {whose} connections has a request in flight ({flag})");
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let body = format!(
            "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"every one of {whose} {max} HTTP connections has a request in flight ({flag}); retry later\"}}}}"
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

/// The application as one connection's hyper service: the connection is busy from each
/// request's head until its response body is written or dropped (what eviction reads).
struct Tracked {
    app: TowerToHyperService<Router>,
    slot: Arc<Slot>,
}

impl Service<Request<Incoming>> for Tracked {
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = InFlightFuture<<TowerToHyperService<Router> as Service<Request<Incoming>>>::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.slot.request_started();
        InFlightFuture { inner: self.app.call(req), in_flight: Some(InFlight(self.slot.tracker())) }
    }
}

/// One request in flight; dropping it marks the request answered.
struct InFlight(Tracker);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The application's response future, whose response carries the request's [`InFlight`] in
/// its body; dropped before it resolves (the connection closed), it ends the request.
struct InFlightFuture<F> {
    inner: F,
    in_flight: Option<InFlight>,
}

impl<F> Future for InFlightFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<InFlightBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(result) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        let in_flight = this.in_flight.take();
        Poll::Ready(result.map(|response| response.map(|body| InFlightBody { body, _in_flight: in_flight })))
    }
}

/// A response body that keeps its request in flight until hyper has written it (or dropped it:
/// the connection closed). A live subscription's body lasts as long as the subscription.
struct InFlightBody {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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
