//! A minimal keep-alive HTTP/1.1 client for the HTTP append benchmark's clients: one blocking
//! `TcpStream` per client, one `write` per request and as few `read`s as the reply needs, the
//! reply's head parsed with `httparse` (hyper's own parser).
//!
//! Why not `reqwest::blocking`: its client runs a tokio runtime on a thread of its own and
//! hands every request to it and the reply back, two thread wake-ups per request on the
//! client's side. With 64 clients on a two-core machine that cost as much CPU as the server's
//! whole append path, so the benchmark measured mostly itself. This client costs what a lean
//! client written for throughput would (the bench is ours; the server is what it measures).
//! It speaks only what the benchmark needs: requests with a `Content-Length` body, replies
//! with `Content-Length` or chunked bodies, no redirects, no TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// Most header lines a reply may carry.
const HEADERS_MAX: usize = 32;
/// Largest reply head accepted.
const HEAD_MAX: usize = 64 << 10;
/// Most bytes one `read` takes.
const READ_CHUNK: usize = 16 << 10;

/// One keep-alive connection.
pub(crate) struct Connection {
    stream: TcpStream,
    /// `host:port`, for the `Host` header.
    host: String,
    /// The request being written (reused).
    out: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// Where a `read` lands before joining `buf`.
    scratch: Box<[u8; READ_CHUNK]>,
}

/// A reply: its status and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Connection {
    /// Connects to `base` (`http://HOST:PORT`).
    pub(crate) fn connect(base: &str, timeout: Duration) -> Result<Self> {
        let host = base.strip_prefix("http://").with_context(|| format!("{base} is not an http:// address"))?;
        let host = host.trim_end_matches('/').to_string();
        let stream = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            host,
            out: Vec::with_capacity(1024),
            buf: Vec::with_capacity(READ_CHUNK),
            scratch: Box::new([0; READ_CHUNK]),
        })
    }

    /// Sends one request and reads its reply. `body` goes with `content_type`, if any.
    pub(crate) fn request(&mut self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Reply> {
        self.out.clear();
        write!(self.out, "{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host)?;
        if let Some((content_type, bytes)) = body {
            write!(self.out, "content-type: {content_type}\r\ncontent-length: {}\r\n\r\n", bytes.len())?;
            self.out.extend_from_slice(bytes);
        } else {
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.out).context("sending the request")?;
        self.read_reply().with_context(|| format!("reading the reply to {method} {path}"))
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let (head_len, status, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = head.parse(&self.buf)? {
                let status = head.code.context("a reply without a status")?;
                let mut length = Length::UntilClose;
                for h in head.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Length::Exact(std::str::from_utf8(h.value)?.trim().parse()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        length = Length::Chunked;
                    }
                }
                break (n, status, length);
            }
            ensure!(self.buf.len() < HEAD_MAX, "a reply head of more than {HEAD_MAX} bytes");
            self.fill()?;
        };
        self.buf.drain(..head_len);
        let body = match length {
            Length::Exact(n) => {
                while self.buf.len() < n {
                    self.fill()?;
                }
                let rest = self.buf.split_off(n);
                std::mem::replace(&mut self.buf, rest)
            }
            Length::Chunked => self.read_chunked()?,
            Length::UntilClose => bail!("a reply with neither Content-Length nor chunked encoding"),
        };
        Ok(Reply { status, body })
    }

    /// A chunked body: `SIZE\r\nDATA\r\n` ... `0\r\n\r\n` (no trailers expected).
    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
                .with_context(|| format!("a bad chunk size {size_text:?}"))?;
            let need = line_end + 2 + size + 2;
            while self.buf.len() < need {
                self.fill()?;
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..need);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    /// Reads what the socket has into the buffer.
    fn fill(&mut self) -> Result<()> {
        let n = self.stream.read(&mut self.scratch[..])?;
        ensure!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

enum Length {
    Exact(usize),
    Chunked,
    UntilClose,
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use super::*;

    /// Serves two requests on one connection: a `Content-Length` reply split over two writes,
    /// then a chunked one; returns the request bodies it read.
    fn serve_two(listener: TcpListener) -> Vec<String> {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut out = stream;
        let mut bodies = Vec::new();
        for reply in 0..2 {
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            bodies.push(String::from_utf8(body).expect("text"));
            if reply == 0 {
                out.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\nhello").expect("write");
                out.flush().expect("flush");
                std::thread::sleep(Duration::from_millis(20));
                out.write_all(b" world").expect("write");
            } else {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                )
                .expect("write");
            }
        }
        bodies
    }

    #[test]
    fn reads_length_and_chunked_replies_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || serve_two(listener));
        let mut conn = Connection::connect(&base, Duration::from_secs(10)).expect("connect");
        let first = conn.request("POST", "/a", Some(("application/json", b"{\"n\":1}"))).expect("first");
        assert_eq!((first.status, first.body.as_slice()), (201, &b"hello world"[..]));
        let second = conn.request("POST", "/b", Some(("application/json", b"[]"))).expect("second");
        assert_eq!((second.status, second.body.as_slice()), (200, &b"abcde"[..]));
        assert_eq!(server.join().expect("server"), vec!["{\"n\":1}".to_string(), "[]".to_string()]);
    }

    #[test]
    fn a_closed_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || drop(listener.accept().expect("accept")));
        let mut conn = Connection::connect(&base, Duration::from_secs(10)).expect("connect");
        server.join().expect("server");
        assert!(conn.request("GET", "/health", None).is_err());
    }
}
