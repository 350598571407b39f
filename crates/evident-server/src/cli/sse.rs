//! Server-Sent Events on the client side: an incremental `text/event-stream` parser
//! ([`SseParser`], a small pure state machine fed with whatever bytes the socket gives) and the
//! loop that reads one connection's stream into it ([`follow`]). Shared by `evident tail` (which
//! reconnects with `Last-Event-ID`) and `evident sql`'s push queries (which end with the connection).

use std::io::{self, Read as _};

/// The most bytes an unfinished line may hold: the server sends one event per `data:` line, and an
/// event is at most the server's body limit; beyond that the peer is not an evident server.
const LINE_BYTES_MAX: usize = 64 << 20;

/// One dispatched Server-Sent Events message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` type; `message` when the message named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id after this message (ids carry over to later messages, as in browsers).
    pub id: Option<String>,
}

/// An incremental `text/event-stream` parser (the WHATWG rules): lines end with `\n`, `\r\n` or
/// `\r`; `:` starts a comment; `field: value` (one optional space after the colon); a blank line
/// dispatches the message, unless it had no `data`. Bytes may arrive split anywhere, mid-line or
/// mid-`\r\n`.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// A `\r` ended the last line, so a `\n` at the start of the next bytes belongs to it.
    after_cr: bool,
    /// Whether the stream's start (where a byte-order mark may be) is past.
    started: bool,
    data: String,
    has_data: bool,
    event: String,
    /// The id of the message being read (the spec's "last event ID buffer"): it becomes the last
    /// id only when the message is complete, so a message cut off by a dropped connection is
    /// fetched again on resume instead of skipped.
    id_buffer: Option<String>,
    /// The id of the last complete message.
    last_id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// The last event id seen, to resume from with `Last-Event-ID`.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes and returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<SseMessage>> {
        let mut messages = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(message) = self.line_ended(&line) {
                        messages.push(message);
                    }
                }
                _ => {
                    if self.line.len() >= LINE_BYTES_MAX {
                        anyhow::bail!("a line of the event stream is longer than {LINE_BYTES_MAX} bytes");
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(messages)
    }

    /// Starts a new connection: a message cut off by the drop is discarded, as browsers do, but the
    /// last event id stays, to resume from.
    pub fn reset_connection(&mut self) {
        let last_id = self.last_id.take();
        *self = SseParser { id_buffer: last_id.clone(), last_id, ..SseParser::default() };
    }

    /// Handles one complete line.
    fn line_ended(&mut self, line: &[u8]) -> Option<SseMessage> {
        let mut line = String::from_utf8_lossy(line).into_owned();
        if !std::mem::replace(&mut self.started, true) {
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            // An id holding NUL is ignored (the spec's rule); an empty one resets the last id.
            "id" if !value.contains('\0') => self.id_buffer = (!value.is_empty()).then(|| value.to_owned()),
            // `retry` and unknown fields are ignored: reconnection follows our own backoff.
            _ => {}
        }
        None
    }

    /// Ends a message at a blank line.
    fn dispatch(&mut self) -> Option<SseMessage> {
        self.last_id.clone_from(&self.id_buffer);
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let data = std::mem::take(&mut self.data);
        Some(SseMessage {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data,
            id: self.last_id.clone(),
        })
    }
}

/// How reading a connection's event stream ended.
#[derive(Debug)]
pub enum Ended {
    /// The message handler asked to stop.
    Stopped,
    /// The server closed the connection.
    Closed,
    /// Reading failed (the connection was reset, or a keepalive probe went unanswered).
    Failed(io::Error),
}

impl Ended {
    /// Why the connection ended, for a note on stderr.
    pub fn reason(&self) -> String {
        match self {
            Ended::Stopped => "stopped".to_owned(),
            Ended::Closed => "the server closed the connection".to_owned(),
            Ended::Failed(e) => e.to_string(),
        }
    }
}

/// Reads one connection's event stream, handing each message to `on_message` until it returns
/// `false` ([`Ended::Stopped`]) or the connection ends.
pub fn follow(
    response: &mut reqwest::blocking::Response,
    parser: &mut SseParser,
    on_message: &mut dyn FnMut(&SseMessage) -> anyhow::Result<bool>,
) -> anyhow::Result<Ended> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match response.read(&mut buffer) {
            Ok(0) => return Ok(Ended::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Ended::Failed(e)),
        };
        for message in parser.push(&buffer[..n])? {
            if !on_message(&message)? {
                return Ok(Ended::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: Option<&str>, data: &str) -> SseMessage {
        SseMessage { event: "message".into(), data: data.into(), id: id.map(str::to_owned) }
    }

    #[test]
    fn one_message_per_blank_line() {
        let mut parser = SseParser::new();
        let messages = parser.push(b"id: 1\ndata: {\"a\":1}\n\nid: 2\ndata: {\"a\":2}\n\n").unwrap();
        assert_eq!(messages, [message(Some("1"), "{\"a\":1}"), message(Some("2"), "{\"a\":2}")]);
        assert_eq!(parser.last_id(), Some("2"));
    }

    #[test]
    fn bytes_split_anywhere() {
        let stream = b"id: 7\r\ndata: {\"x\":\"y\"}\r\n\r\n: keepalive\r\n\r\nid: 8\rdata:no-space\r\r";
        let whole = SseParser::new().push(stream).unwrap();
        assert_eq!(whole, [message(Some("7"), "{\"x\":\"y\"}"), message(Some("8"), "no-space")]);
        for split in 0..stream.len() {
            let mut parser = SseParser::new();
            let mut messages = parser.push(&stream[..split]).unwrap();
            messages.extend(parser.push(&stream[split..]).unwrap());
            assert_eq!(messages, whole, "split at {split}");
        }
        let mut parser = SseParser::new();
        let one_by_one: Vec<SseMessage> = stream.iter().flat_map(|b| parser.push(&[*b]).unwrap()).collect();
        assert_eq!(one_by_one, whole);
    }

    #[test]
    fn comments_multi_line_data_and_fields() {
        let mut parser = SseParser::new();
        let text = "\u{feff}: hello\nretry: 100\nevent: error\ndata: line 1\ndata\ndata:  line 3\nunknown: x\n\n";
        let messages = parser.push(text.as_bytes()).unwrap();
        assert_eq!(messages, [SseMessage { event: "error".into(), data: "line 1\n\n line 3".into(), id: None }]);
        // A message without data is not dispatched, but its id counts; the event type resets.
        assert_eq!(parser.push(b"id: 9\n\ndata: x\n\n").unwrap(), [message(Some("9"), "x")]);
        // An empty id resets the last id.
        assert_eq!(parser.push(b"id\ndata: y\n\n").unwrap(), [message(None, "y")]);
    }

    #[test]
    fn a_dropped_connection_discards_the_partial_message_but_keeps_the_id() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"id: 3\ndata: a\n\nid: 4\ndata: b").unwrap().len(), 1);
        parser.reset_connection();
        assert_eq!(parser.last_id(), Some("3"));
        assert_eq!(parser.push(b"\n\nid: 4\ndata: b\n\n").unwrap(), [message(Some("4"), "b")]);
    }
}
