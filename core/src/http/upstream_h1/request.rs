//! The upstream request: its head written once into a pooled buffer
//! (request line, the headers the proxy chose, the body's framing) and
//! sent as is on every try, and its body.

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Method;

use crate::http::h1::parse::content_length;
use crate::http::h1::pool::Buf;
use crate::http::h1::ClientBody;

/// How the request body is delimited on the way up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length`: the client's, or the length of a body read whole.
    Length(u64),
    /// A body of unknown length to an HTTP/1.1 upstream.
    Chunked,
}

/// The body sent to an upstream.
pub enum ReqBody {
    Empty,
    /// The client's body, streamed as it arrives. `unsent` is a piece
    /// taken from it by a try that wrote nothing: the next try sends it
    /// first (nginx retries even a POST that never left).
    Client {
        body: ClientBody,
        unsent: Option<Bytes>,
    },
    /// A body read whole before the request is sent: a chunked body for
    /// an HTTP/1.0 upstream, which needs its length up front (nginx
    /// buffers every body by default). It can be sent again on a retry.
    Buffered(Bytes),
}

/// A request head, ready to be sent on any number of tries.
pub struct RequestHead {
    buf: Buf,
    pub(super) framing: Framing,
    /// The upstream may keep the connection after answering: HTTP/1.1
    /// without `Connection: close`.
    pub(super) keep_alive: bool,
    /// The method says the response has no body (HEAD), or is a tunnel
    /// when successful (CONNECT).
    pub(super) method: Ask,
}

/// What the request's method says about its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Head,
    Connect,
    Other,
}

impl RequestHead {
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Writes a request head: the request line first, then each header, then
/// [`HeadWriter::finish`] adds the body's framing. Header names are
/// written as the `http` crate keeps them (lowercase), as hyper did.
pub struct HeadWriter {
    buf: Buf,
    framing: Framing,
    http11: bool,
    close: bool,
    length_written: bool,
    method: Ask,
}

impl HeadWriter {
    /// `target` is the request target (origin form), `framing` the
    /// body's, decided by the caller.
    pub fn new(method: &Method, target: &str, http11: bool, framing: Framing) -> HeadWriter {
        let mut buf = Buf::take();
        buf.extend_from_slice(method.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(target.as_bytes());
        buf.extend_from_slice(if http11 {
            b" HTTP/1.1\r\n"
        } else {
            b" HTTP/1.0\r\n"
        });
        let method = match *method {
            Method::HEAD => Ask::Head,
            Method::CONNECT => Ask::Connect,
            _ => Ask::Other,
        };
        HeadWriter {
            buf,
            framing,
            http11,
            close: false,
            length_written: false,
            method,
        }
    }

    /// Adds a header whose value is known valid (an `http::HeaderValue`'s
    /// bytes). The body's framing headers are this writer's: a
    /// Transfer-Encoding never passes, and a Content-Length only when it
    /// is the body's own.
    pub fn header(&mut self, name: &HeaderName, value: &[u8]) {
        if !self.framing_allows(name, value) {
            return;
        }
        self.length_written |= name == CONTENT_LENGTH;
        self.close |= asks_close(name, value);
        self.buf.extend_from_slice(name.as_str().as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Adds a header whose value `fill` appends to the head in place (a
    /// template's, evaluated with no buffer of its own). An empty value
    /// drops the header, as nginx does, and so does a value that is not
    /// a valid header value (a control character).
    pub fn header_with(&mut self, name: &HeaderName, fill: impl FnOnce(&mut Vec<u8>)) {
        let line = self.buf.len();
        self.buf.extend_from_slice(name.as_str().as_bytes());
        self.buf.extend_from_slice(b": ");
        let start = self.buf.len();
        fill(&mut self.buf);
        let value = &self.buf[start..];
        // `http::HeaderValue`'s rule: visible ASCII, obs-text and tab.
        let valid = value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if value.is_empty() || !valid || !self.framing_allows(name, value) {
            self.buf.truncate(line);
            return;
        }
        let close = asks_close(name, value);
        self.length_written |= name == CONTENT_LENGTH;
        self.close |= close;
        self.buf.extend_from_slice(b"\r\n");
    }

    fn framing_allows(&self, name: &HeaderName, value: &[u8]) -> bool {
        if name == TRANSFER_ENCODING {
            return false;
        }
        if name != CONTENT_LENGTH {
            return true;
        }
        match self.framing {
            // A bodiless request's length passes as the client sent it.
            Framing::None => true,
            Framing::Length(n) => !self.length_written && content_length(value) == Some(n),
            Framing::Chunked => false,
        }
    }

    pub fn finish(mut self) -> RequestHead {
        match self.framing {
            Framing::Length(n) if !self.length_written => {
                use std::io::Write as _;
                let _ = write!(&mut *self.buf, "content-length: {n}\r\n");
            }
            Framing::Chunked => self
                .buf
                .extend_from_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        self.buf.extend_from_slice(b"\r\n");
        RequestHead {
            buf: self.buf,
            framing: self.framing,
            keep_alive: self.http11 && !self.close,
            method: self.method,
        }
    }
}

/// A `Connection` header asking to close after the response.
fn asks_close(name: &HeaderName, value: &[u8]) -> bool {
    name == CONNECTION
        && value
            .split(|&c| c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;

    fn text(head: &RequestHead) -> &str {
        std::str::from_utf8(head.bytes()).expect("ascii")
    }

    #[test]
    fn heads_carry_the_body_framing() {
        let mut w = HeadWriter::new(&Method::POST, "/a?b", true, Framing::Length(3));
        w.header(&HOST, b"u");
        w.header(&CONTENT_LENGTH, b"3");
        w.header(&TRANSFER_ENCODING, b"chunked");
        let head = w.finish();
        assert_eq!(
            text(&head),
            "POST /a?b HTTP/1.1\r\nhost: u\r\ncontent-length: 3\r\n\r\n"
        );
        assert!(head.keep_alive);

        let mut w = HeadWriter::new(&Method::POST, "/", true, Framing::Chunked);
        w.header(&CONTENT_LENGTH, b"3");
        w.header(&CONNECTION, b"close");
        let head = w.finish();
        assert_eq!(
            text(&head),
            "POST / HTTP/1.1\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert!(!head.keep_alive);

        // A length that is not the body's never goes up.
        let mut w = HeadWriter::new(&Method::PUT, "/", false, Framing::Length(5));
        w.header(&CONTENT_LENGTH, b"4");
        let head = w.finish();
        assert_eq!(text(&head), "PUT / HTTP/1.0\r\ncontent-length: 5\r\n\r\n");
        assert!(!head.keep_alive);
        assert_eq!(head.method, Ask::Other);
    }

    #[test]
    fn template_values_are_checked_in_place() {
        let name = HeaderName::from_static("x-v");
        let mut w = HeadWriter::new(&Method::HEAD, "/", true, Framing::None);
        w.header_with(&name, |b| b.extend_from_slice(b"ok\tvalue"));
        w.header_with(&name, |_| {});
        w.header_with(&name, |b| b.extend_from_slice(b"bad\r\nx-injected: 1"));
        w.header_with(&CONNECTION, |b| b.extend_from_slice(b"keep-alive, Close"));
        let head = w.finish();
        assert_eq!(
            text(&head),
            "HEAD / HTTP/1.1\r\nx-v: ok\tvalue\r\nconnection: keep-alive, Close\r\n\r\n"
        );
        assert!(!head.keep_alive);
        assert_eq!(head.method, Ask::Head);
    }
}
