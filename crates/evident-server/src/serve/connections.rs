//! A listener wrapper that counts open HTTP connections for `/metrics`: the count goes up on
//! accept and down when the connection's socket is dropped, however it ends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// A TCP listener whose connections are counted.
pub struct Counted {
    inner: TcpListener,
    metrics: Arc<Metrics>,
}

impl Counted {
    /// Wraps `inner`.
    pub fn new(inner: TcpListener, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

/// An accepted connection; dropping it decrements the gauge.
pub struct CountedStream {
    inner: TcpStream,
    metrics: Arc<Metrics>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl axum::serve::Listener for Counted {
    type Io = CountedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Small responses (acks) must not wait for Nagle's timer.
                    let _ = stream.set_nodelay(true);
                    self.metrics.open_connections.fetch_add(1, Ordering::Relaxed);
                    self.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    return (CountedStream { inner: stream, metrics: self.metrics.clone() }, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, as
                    // axum's own TcpListener does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
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
