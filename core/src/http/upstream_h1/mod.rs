//! The upstream side of HTTP/1.x: our own client on `httparse`, as
//! `h1` is for the client side.
//!
//! Why not hyper's client: it runs a task per connection, so every
//! request crossed two channels and woke two tasks, and parsed the
//! response into a map only to have the proxy strip it. Here the
//! request's own future writes the request and reads the response head on
//! the socket it took from the pool; the response body then reads from
//! that socket as the client's writer asks for it, and puts the
//! connection back in the worker's idle pool when it ended cleanly.
//! Buffers come from the worker's pool (`h1::pool`) and are held only
//! while a request is in flight.
//!
//! - `stream`: the transport ([`Stream`]) and the send/read timeouts
//! - `conn`: a connection and its keep-alive state
//! - `request`: the request head, written once, and the request body
//! - `send`: writing a request (head, then the body framed)
//! - `head`: the response head (httparse), its framing and persistence
//! - `body`: the response body

mod body;
mod conn;
pub mod head;
mod request;
mod send;
mod stream;

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::response::Parts;

use crate::http::fastcgi;
use crate::http::h1::decode::Decoder;
use crate::http::h1::io::ReadBuf;
pub use body::UpstreamBody;
pub use conn::{Conn, ConnectError, Local};
pub use head::{lines_of, HeaderRules, LineEdit, Passed};
use head::{Framing as BodyFraming, Head, Parsed, HEAD_MAX};
pub use request::{Ask, Framing, HeadWriter, Reading, ReqBody, RequestHead};
use send::{SendError, Sender};
pub(crate) use stream::Deadline;
pub use stream::{Stream, TimedIo, Timeout};

/// An upstream's response: its head, and its body to read.
pub struct Response {
    /// Status and version.
    pub parts: Parts,
    /// The header lines the client gets.
    pub passed: Box<Passed>,
    pub body: UpstreamBody,
    /// After `101 Switching Protocols` (or a successful CONNECT): the
    /// connection, for a tunnel. The body is empty then.
    pub upgraded: Option<Box<Upgraded>>,
    /// Bytes of the request written (`$upstream_bytes_sent`).
    pub sent: u64,
}

/// A connection switched to another protocol: the transport (its timers
/// still on: `proxy_read_timeout` and `proxy_send_timeout` bound a
/// tunnel's waits on the upstream), and what the upstream already sent
/// past the response head.
pub struct Upgraded {
    pub stream: Box<TimedIo<Stream>>,
    pub leftover: Bytes,
}

/// What went wrong before a response head came.
#[derive(Debug)]
pub enum ErrorKind {
    /// The upstream closed before a whole response head.
    Closed,
    Io(io::Error),
    Timeout(Timeout),
    /// A response head nobody can read, or one past [`HEAD_MAX`].
    Invalid,
    /// The client's body failed while being sent.
    Body,
    /// A FastCGI answer nobody can read: nginx's log line for it.
    FastCgi(String),
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    /// Some of the request was written: without it the request never
    /// left, and its body is intact for another try.
    pub sent: bool,
    /// Bytes written and read in the exchange (`$upstream_bytes_sent`,
    /// `$upstream_bytes_received`).
    pub bytes: (u64, u64),
}

fn kind_of(e: io::Error) -> ErrorKind {
    if let Some(t) = Timeout::of(&e) {
        ErrorKind::Timeout(t)
    } else if e.kind() == io::ErrorKind::OutOfMemory {
        ErrorKind::Invalid
    } else {
        ErrorKind::Io(e)
    }
}

/// How a response head is read off the connection: HTTP's
/// ([`HttpRead`]), or a FastCGI application's records ([`FastCgiRead`]).
/// (One exchange for both, the reader behind a pointer: the request path
/// compiles once, as it would with HTTP alone.)
pub trait ReadHead: Send {
    /// The final head in `buf`, if it is there.
    fn parse(&mut self, buf: &mut ReadBuf) -> Result<Option<Head>, ErrorKind>;
    /// For FastCGI, the reader of the body after the head.
    fn body(&mut self) -> Option<Box<fastcgi::response::BodyReader>>;
}

/// An HTTP response's head, for the request `head`.
pub struct HttpRead(Reading);

impl HttpRead {
    pub fn new(head: &RequestHead) -> HttpRead {
        HttpRead(head.reading())
    }
}

impl ReadHead for HttpRead {
    fn parse(&mut self, buf: &mut ReadBuf) -> Result<Option<Head>, ErrorKind> {
        parse(buf, self.0)
    }

    fn body(&mut self) -> Option<Box<fastcgi::response::BodyReader>> {
        None
    }
}

/// A FastCGI application's answer up to its head; its stderr lines.
pub struct FastCgiRead {
    records: Box<fastcgi::response::HeadReader>,
    /// Keep the lines nginx hides by default.
    keep_hidden: bool,
    /// `fastcgi_keep_conn on`: the connection's close is not the end of
    /// the answer.
    keep_conn: bool,
}

impl FastCgiRead {
    pub fn new(head: &RequestHead) -> FastCgiRead {
        FastCgiRead {
            records: Box::default(),
            keep_hidden: head.keep_hidden,
            keep_conn: head.keep_alive,
        }
    }

    /// What the application wrote to stderr with the head, a log line
    /// each.
    pub fn take_stderr(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.records.stderr)
    }
}

impl ReadHead for FastCgiRead {
    fn parse(&mut self, buf: &mut ReadBuf) -> Result<Option<Head>, ErrorKind> {
        self.records
            .parse(buf, self.keep_hidden, HEAD_MAX)
            .map_err(|e| ErrorKind::FastCgi(e.0))
    }

    fn body(&mut self) -> Option<Box<fastcgi::response::BodyReader>> {
        let keep_conn = self.keep_conn;
        self.records.body.take().map(|mut body| {
            body.ends_at_close = !keep_conn;
            Box::new(body)
        })
    }
}

/// Sends `head` and `body` on `conn` and reads the response head, as
/// `reader` reads it.
///
/// While the request is still going out (a body arriving slowly, an
/// upstream slow to take it), the socket is watched for an answer: a
/// final response then ends the sending, and the connection is not kept.
pub async fn exchange(
    mut conn: Conn,
    head: &RequestHead,
    body: &mut ReqBody,
    reader: &mut dyn ReadHead,
) -> Result<Response, Error> {
    let mut sender = Sender::new(head);
    let mut buf = ReadBuf::new();
    let start = conn.io.received();
    let mut sending = true;
    // Both phases in one poll function: the future holds one state, not
    // one per phase (it lives inside every proxied request's future).
    let parsed = poll_fn(|cx| {
        if sending {
            match send_phase(cx, &mut conn, &mut sender, body, &mut buf, reader) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(kind)) => return Poll::Ready(Err(kind)),
                Poll::Ready(Ok(early)) => {
                    sending = false;
                    // The response is awaited (or, after an early head,
                    // its body) within the read timeout from here.
                    conn.io.request_sent();
                    if let Some(h) = early {
                        return Poll::Ready(Ok(h));
                    }
                }
            }
        }
        read_head(cx, &mut conn, &mut buf, reader)
    })
    .await;
    let sent = sender.written != 0;
    match parsed {
        Ok(h) => {
            let reusable = head.keep_alive && sender.done();
            let fastcgi = reader.body();
            Ok(response(
                conn,
                buf,
                h,
                fastcgi,
                reusable,
                start,
                sender.written,
            ))
        }
        Err(kind) => {
            let bytes = (sender.written, conn.io.received() - start);
            sender.give_back(body);
            Err(Error { kind, sent, bytes })
        }
    }
}

/// Writes the request; meanwhile, reads what the upstream sends, for an
/// early answer.
fn send_phase(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    sender: &mut Sender<'_>,
    body: &mut ReqBody,
    buf: &mut ReadBuf,
    reader: &mut dyn ReadHead,
) -> Poll<Result<Option<Head>, ErrorKind>> {
    loop {
        match sender.poll(cx, &mut conn.io, body) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(None)),
            Poll::Ready(Err(SendError::Io(e))) => return Poll::Ready(Err(kind_of(e))),
            Poll::Ready(Err(SendError::Body)) => return Poll::Ready(Err(ErrorKind::Body)),
            Poll::Pending => {}
        }
        match buf.poll_fill(cx, &mut conn.io, HEAD_MAX) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(ErrorKind::Closed)),
            Poll::Ready(Ok(_)) => match reader.parse(buf) {
                Ok(Some(h)) => return Poll::Ready(Ok(Some(h))),
                Ok(None) => {}
                Err(kind) => return Poll::Ready(Err(kind)),
            },
            Poll::Ready(Err(e)) => return Poll::Ready(Err(kind_of(e))),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Reads until a final response head.
fn read_head(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    buf: &mut ReadBuf,
    reader: &mut dyn ReadHead,
) -> Poll<Result<Head, ErrorKind>> {
    loop {
        if let Some(h) = reader.parse(buf)? {
            return Poll::Ready(Ok(h));
        }
        match buf.poll_fill(cx, &mut conn.io, HEAD_MAX) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(ErrorKind::Closed)),
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(kind_of(e))),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// The final head in `buf`, if it is there, interim ones skipped (and
/// consumed with it).
fn parse(buf: &mut ReadBuf, ask: Reading) -> Result<Option<Head>, ErrorKind> {
    while !buf.is_empty() {
        match head::parse_reading(buf.data(), ask).map_err(|_| ErrorKind::Invalid)? {
            Parsed::Partial => return Ok(None),
            Parsed::Interim(len) => buf.consume(len),
            Parsed::Final(h) => {
                buf.consume(h.len);
                return Ok(Some(h));
            }
        }
    }
    Ok(None)
}

/// The response of an exchange that started with `start` bytes read on
/// the connection and wrote `sent`.
fn response(
    mut conn: Conn,
    mut buf: ReadBuf,
    head: Head,
    fastcgi: Option<Box<fastcgi::response::BodyReader>>,
    reusable: bool,
    start: u64,
    sent: u64,
) -> Response {
    // What was read is the head and the start of the body.
    let read = conn.io.received() - start;
    conn.io.exchange(start, read - buf.data().len() as u64);
    if head.upgrade {
        let leftover = buf.take_all();
        return Response {
            parts: head.parts,
            passed: head.passed,
            body: UpstreamBody::empty(),
            upgraded: Some(Box::new(Upgraded {
                stream: conn.io,
                leftover,
            })),
            sent,
        };
    }
    let decode = match (fastcgi, head.framing) {
        (Some(reader), _) => body::Decode::FastCgi(reader),
        (None, framing) => framed(framing),
    };
    Response {
        parts: head.parts,
        passed: head.passed,
        body: UpstreamBody::new(conn, buf, decode, reusable && head.keep_alive),
        upgraded: None,
        sent,
    }
}

fn framed(framing: BodyFraming) -> body::Decode {
    match framing {
        BodyFraming::None => body::Decode::Framed(Decoder::Done),
        BodyFraming::Length(n) => body::Decode::Framed(Decoder::length(n)),
        BodyFraming::Chunked => body::Decode::Framed(Decoder::chunked()),
        BodyFraming::Close => body::Decode::UntilClose,
    }
}
