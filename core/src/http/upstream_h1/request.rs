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
    /// A body to a FastCGI application: STDIN records, then an empty one.
    FastCgi,
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
    /// Keep the headers nginx hides by default (`proxy_pass_header`).
    pub(super) keep_hidden: bool,
    /// FastCGI records (`fastcgi_pass`), not HTTP.
    pub(super) fastcgi: bool,
}

/// How to read the response to a request: its method's say, and whether
/// the headers nginx hides by default are kept for `proxy_pass_header`.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub ask: Ask,
    pub keep_hidden: bool,
}

/// What the request's method says about its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Head,
    Connect,
    Other,
}

impl RequestHead {
    /// A FastCGI request's records (`crate::http::fastcgi::request`);
    /// `keep_conn` asked the application to keep the connection.
    pub fn fastcgi(buf: Buf, framing: Framing, keep_conn: bool, head: bool) -> RequestHead {
        RequestHead {
            buf,
            framing,
            keep_alive: keep_conn,
            method: if head { Ask::Head } else { Ask::Other },
            keep_hidden: false,
            fastcgi: true,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// FastCGI records (`fastcgi_pass`), not HTTP.
    pub fn is_fastcgi(&self) -> bool {
        self.fastcgi
    }

    /// Keep the headers nginx hides by default in the response (Date,
    /// Server, X-Pad, X-Accel-*), for `proxy_pass_header` to choose from.
    pub fn keep_hidden(&mut self) {
        self.keep_hidden = true;
    }

    pub(super) fn reading(&self) -> Reading {
        Reading {
            ask: self.method,
            keep_hidden: self.keep_hidden,
        }
    }
}

/// Writes a request head in nginx's order: the request line, the headers
/// the proxy sets ([`HeadWriter::set`], as the config spells them), the
/// body's framing ([`HeadWriter::framing`]: `Content-Length` or
/// `Transfer-Encoding`), then the client's headers ([`HeadWriter::header`],
/// as the client spelled them).
pub struct HeadWriter {
    buf: Buf,
    framing: Framing,
    http11: bool,
    close: bool,
    length_written: bool,
    /// The framing headers are written.
    framed: bool,
    method: Ask,
}

impl HeadWriter {
    /// `target` is the request target (origin form), `framing` the
    /// body's, decided by the caller.
    pub fn new(method: &Method, target: &str, http11: bool, framing: Framing) -> HeadWriter {
        let mut buf = Buf::take();
        // (The common ones spelled here: `as_str` is not always inlined.)
        let name = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::HEAD => "HEAD",
            _ => method.as_str(),
        };
        buf.extend_from_slice(name.as_bytes());
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
            framed: false,
            method,
        }
    }

    /// The request asked as GET, whatever the method it was started with
    /// (the cache asks a HEAD so, `proxy_cache_convert_head`).
    #[cold]
    pub fn as_get(&mut self) {
        let end = self.buf.iter().position(|&c| c == b' ').unwrap_or(0);
        self.buf.splice(..end, *b"GET");
        self.method = Ask::Other;
    }

    /// Adds a client's header, its name `spelled` as the client did,
    /// whose value is known valid (an `http::HeaderValue`'s bytes). The
    /// body's framing headers are this writer's: the client's never pass.
    pub fn header(&mut self, spelled: &[u8], name: &HeaderName, value: &[u8]) {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            return;
        }
        self.close |= asks_close(name, value);
        self.line(spelled, value);
    }

    // Inlined: its small fixed pieces are then stores, not memcpy calls.
    #[inline(always)]
    fn line(&mut self, spelled: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(spelled);
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Adds a header the proxy sets, `spelled` so, whose value is known
    /// valid. A Transfer-Encoding never passes, and a Content-Length only
    /// when it is the body's own.
    pub fn set(&mut self, spelled: &str, name: &HeaderName, value: &[u8]) {
        if !self.framing_allows(name, value) {
            return;
        }
        self.length_written |= name == CONTENT_LENGTH;
        self.close |= asks_close(name, value);
        self.line(spelled.as_bytes(), value);
    }

    /// [`HeadWriter::set`] with a value `fill` appends to the head in
    /// place (a template's, evaluated with no buffer of its own). An
    /// empty value drops the header, as nginx does, and so does a value
    /// that is not a valid header value (a control character).
    pub fn set_with(&mut self, spelled: &str, name: &HeaderName, fill: impl FnOnce(&mut Vec<u8>)) {
        let line = self.buf.len();
        self.buf.extend_from_slice(spelled.as_bytes());
        self.buf.extend_from_slice(b": ");
        let start = self.buf.len();
        fill(&mut self.buf);
        let value = &self.buf[start..];
        // `http::HeaderValue`'s rule: visible ASCII, obs-text and tab;
        // and a line break that folds the value onto a line starting with
        // a tab or space, as nginx sends `$ssl_client_cert` (no break can
        // end the header or start another).
        let valid = value.iter().enumerate().all(|(i, &b)| {
            b == b'\t'
                || (b >= 0x20 && b != 0x7f)
                || (b == b'\n' && matches!(value.get(i + 1), Some(b'\t' | b' ')))
        });
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
            // A bodiless request's only length is 0: any other (a
            // `proxy_set_header Content-Length $http_x` the client fills)
            // would make a kept upstream connection read the next request
            // as this one's body. nginx sends whatever is set.
            Framing::None => !self.length_written && content_length(value) == Some(0),
            Framing::Length(n) => !self.length_written && content_length(value) == Some(n),
            Framing::Chunked | Framing::FastCgi => false,
        }
    }

    /// The body's framing, where nginx writes it (its default headers
    /// after the configured ones): `Content-Length` for a body of known
    /// length (`announced`: also `Content-Length: 0` for a bodiless
    /// request that said so), `Transfer-Encoding: chunked` for one of
    /// unknown length to an HTTP/1.1 upstream.
    pub fn framing(&mut self, announced: bool) {
        match self.framing {
            Framing::Length(n) if !self.length_written => {
                use std::io::Write as _;
                let _ = write!(&mut *self.buf, "Content-Length: {n}\r\n");
            }
            Framing::None if announced && !self.length_written => {
                self.buf.extend_from_slice(b"Content-Length: 0\r\n");
            }
            Framing::Chunked if !self.framed => self
                .buf
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        self.length_written = true;
        self.framed = true;
    }

    /// The head's end, after the framing if [`HeadWriter::framing`] was
    /// not called.
    pub fn finish(mut self) -> RequestHead {
        if !self.framed {
            self.framing(false);
        }
        self.buf.extend_from_slice(b"\r\n");
        RequestHead {
            buf: self.buf,
            framing: self.framing,
            keep_alive: self.http11 && !self.close,
            method: self.method,
            keep_hidden: false,
            fastcgi: false,
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
    fn heads_carry_the_body_framing_where_nginx_puts_it() {
        // Set headers as spelled, the framing, then the client's (whose
        // own framing headers never pass).
        let mut w = HeadWriter::new(&Method::POST, "/a?b", true, Framing::Length(3));
        w.set("Host", &HOST, b"u");
        w.framing(false);
        w.header(b"X-a", &HeaderName::from_static("x-a"), b"1");
        w.header(b"content-length", &CONTENT_LENGTH, b"3");
        w.header(b"Transfer-Encoding", &TRANSFER_ENCODING, b"chunked");
        let head = w.finish();
        assert_eq!(
            text(&head),
            "POST /a?b HTTP/1.1\r\nHost: u\r\nContent-Length: 3\r\nX-a: 1\r\n\r\n"
        );
        assert!(head.keep_alive);

        let mut w = HeadWriter::new(&Method::POST, "/", true, Framing::Chunked);
        w.set("Connection", &CONNECTION, b"close");
        w.set("content-length", &CONTENT_LENGTH, b"3");
        w.framing(false);
        let head = w.finish();
        assert_eq!(
            text(&head),
            "POST / HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(!head.keep_alive);

        // A set length that is not the body's never goes up, nor one
        // other than 0 without a body.
        let mut w = HeadWriter::new(&Method::GET, "/", true, Framing::None);
        w.set("Content-Length", &CONTENT_LENGTH, b"7");
        w.framing(false);
        assert_eq!(text(&w.finish()), "GET / HTTP/1.1\r\n\r\n");
        let mut w = HeadWriter::new(&Method::PUT, "/", false, Framing::Length(5));
        w.set("Content-Length", &CONTENT_LENGTH, b"4");
        w.framing(false);
        let head = w.finish();
        assert_eq!(text(&head), "PUT / HTTP/1.0\r\nContent-Length: 5\r\n\r\n");
        assert!(!head.keep_alive);
        assert_eq!(head.method, Ask::Other);

        // A bodiless request that announced its length of 0 keeps it.
        for (announced, expected) in [
            (true, "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
            (false, "POST / HTTP/1.0\r\n\r\n"),
        ] {
            let mut w = HeadWriter::new(&Method::POST, "/", false, Framing::None);
            w.framing(announced);
            assert_eq!(text(&w.finish()), expected);
        }
    }

    #[test]
    fn template_values_are_checked_in_place() {
        let name = HeaderName::from_static("x-v");
        let mut w = HeadWriter::new(&Method::HEAD, "/", true, Framing::None);
        w.set_with("X-V", &name, |b| b.extend_from_slice(b"ok\tvalue"));
        w.set_with("X-V", &name, |_| {});
        w.set_with("X-V", &name, |b| {
            b.extend_from_slice(b"bad\r\nx-injected: 1")
        });
        w.set_with("Connection", &CONNECTION, |b| {
            b.extend_from_slice(b"keep-alive, Close")
        });
        let head = w.finish();
        assert_eq!(
            text(&head),
            "HEAD / HTTP/1.1\r\nX-V: ok\tvalue\r\nConnection: keep-alive, Close\r\n\r\n"
        );
        assert!(!head.keep_alive);
        assert_eq!(head.method, Ask::Head);
    }
}
