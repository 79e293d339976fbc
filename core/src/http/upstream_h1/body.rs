//! The response body, read by the client's response writer straight from
//! the upstream connection it owns: decoded (Content-Length, chunked, or
//! until the close) from the buffer the head was read into, then from the
//! socket. Once it ended cleanly on a connection the upstream keeps, the
//! connection is ready to go back to the idle pool; a body cut short
//! fails, so the client's response ends without looking complete.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;

use crate::http::h1::body::BodyError;
use crate::http::h1::decode::{Decoder, Invalid};
use crate::http::h1::io::ReadBuf;
use crate::http::h1::pool::SIZE;
use crate::http::upstream_h1::conn::Conn;
use crate::http::upstream_h1::stream::Timeout;
use crate::http::upstream_log::When;

/// Reads below this go through the read buffer; above, straight into a
/// piece of their own (no copy for large bodies).
const DIRECT_MIN: u64 = 16 * 1024;
const DIRECT_MAX: u64 = 64 * 1024;

pub(super) enum Decode {
    Framed(Decoder),
    /// Until the upstream closes.
    UntilClose,
    /// A FastCGI application's STDOUT records, to END_REQUEST.
    FastCgi(Box<crate::http::fastcgi::response::BodyReader>),
}

pub struct UpstreamBody {
    /// The connection: while the body is read, then, if the body ended
    /// cleanly and the connection can carry another request, until it is
    /// taken back to the pool.
    conn: Option<Conn>,
    /// The buffer the head was read into, while the body is read.
    buf: Option<ReadBuf>,
    decode: Decode,
    /// The connection may carry another request after this body.
    reusable: bool,
    /// How far the reads got, for the line of a failure.
    when: When,
}

fn failed<T>(what: &'static str, when: When) -> Poll<Option<Result<T, BodyError>>> {
    Poll::Ready(Some(Err(BodyError {
        why: what,
        upstream: Some(when),
    })))
}

/// A failed read's message, as nginx's error line has it.
fn io_failure(e: &std::io::Error) -> &'static str {
    match Timeout::of(e) {
        Some(_) => "upstream timed out (110: Connection timed out)",
        None => crate::http::upstream_log::read_error(e),
    }
}

impl UpstreamBody {
    pub(super) fn new(conn: Conn, buf: ReadBuf, decode: Decode, reusable: bool) -> UpstreamBody {
        let when = if buf.is_empty() {
            When::Later
        } else {
            When::WithHead
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            buf: Some(buf),
            decode,
            reusable,
            when,
        };
        if matches!(&body.decode, Decode::Framed(Decoder::Done)) {
            body.end();
        }
        body
    }

    /// A body that is over before it starts (after an upgrade).
    pub(super) fn empty() -> UpstreamBody {
        UpstreamBody {
            conn: None,
            buf: None,
            decode: Decode::Framed(Decoder::Done),
            reusable: false,
            when: When::Later,
        }
    }

    /// Bytes the exchange read so far, and of them the body's, as they
    /// came (chunk framing included): `$upstream_bytes_received` and
    /// `$upstream_response_length`, as nginx counts them. `None` once the
    /// connection is gone (back to the pool, or closed).
    pub fn read(&self) -> Option<(u64, u64)> {
        self.conn.as_ref().map(Conn::exchange_read)
    }

    /// The connection once the body is over (taken once), and whether it
    /// can carry another request: the body ended cleanly on a connection
    /// the upstream keeps. One that cannot is to be closed, once what it
    /// read is counted.
    pub fn take_done(&mut self) -> Option<(Conn, bool)> {
        if self.buf.is_some() {
            return None;
        }
        self.conn.take().map(|conn| (conn, self.reusable))
    }

    /// A FastCGI body's stderr is logged with this connection and context
    /// (nginx's `, client: ...`).
    pub fn stderr_context(&mut self, conn: u64, context: String) {
        if let Decode::FastCgi(f) = &mut self.decode {
            f.context = Some(Box::new((conn, context)));
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.buf.is_none()
    }

    /// Bytes still to come, when known.
    pub fn exact_len(&self) -> Option<u64> {
        match (&self.buf, &self.decode) {
            (None, _) => Some(0),
            (Some(_), Decode::Framed(Decoder::Length(n))) => Some(*n),
            _ => None,
        }
    }

    /// The body is over: the buffer goes back to the worker's pool, and
    /// the connection waits for [`UpstreamBody::take_done`], reusable if
    /// it can carry another request and nothing unexpected is left on it.
    fn end(&mut self) {
        let clean = self.buf.take().is_some_and(|buf| buf.is_empty());
        self.reusable &= clean;
        if let (Some(conn), true) = (self.conn.as_mut(), self.reusable) {
            conn.idle();
        }
    }

    /// The body failed: the connection is to be closed (by whoever takes
    /// it with [`UpstreamBody::take_done`], once what it read is counted).
    fn fail(&mut self) {
        self.buf = None;
        self.reusable = false;
    }

    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.poll_piece(cx, usize::MAX, &mut Owned)
    }

    /// The next piece of the body (at most `max` bytes) appended to `out`,
    /// and its length: one copy, from the upstream's buffer to the
    /// client's, and no allocation.
    pub fn poll_append(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Poll<Option<Result<usize, BodyError>>> {
        self.poll_piece(cx, max, &mut Append(out))
    }

    fn poll_piece<S: Sink>(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut S,
    ) -> Poll<Option<Result<S::Piece, BodyError>>> {
        loop {
            let (Some(conn), Some(buf)) = (self.conn.as_mut(), self.buf.as_mut()) else {
                return Poll::Ready(None);
            };
            let run = match &mut self.decode {
                Decode::Framed(d) => match d.decode_with(buf, max, &mut |data| sink.copy(data)) {
                    Ok(Some(piece)) => {
                        if d.is_done() {
                            self.end();
                        }
                        return Poll::Ready(Some(Ok(piece)));
                    }
                    Ok(None) if d.is_done() => {
                        self.end();
                        return Poll::Ready(None);
                    }
                    Ok(None) => d.raw_run(),
                    Err(Invalid) => {
                        self.fail();
                        return failed("upstream sent invalid chunked response", self.when);
                    }
                },
                Decode::FastCgi(f) => match f.decode(buf, max, &mut |data| sink.copy(data)) {
                    Ok(Some(piece)) => {
                        if f.is_done() {
                            self.end();
                        }
                        return Poll::Ready(Some(Ok(piece)));
                    }
                    Ok(None) if f.is_done() => {
                        self.end();
                        return Poll::Ready(None);
                    }
                    Ok(None) => 0,
                    // (Logged by the reader, with the record's own words.)
                    Err(e) => {
                        self.fail();
                        return Poll::Ready(Some(Err(BodyError::new(e))));
                    }
                },
                Decode::UntilClose => {
                    if !buf.is_empty() {
                        let n = buf.data().len().min(max);
                        let piece = sink.copy(&buf.data()[..n]);
                        buf.consume(n);
                        return Poll::Ready(Some(Ok(piece)));
                    }
                    0
                }
            };
            let run = run.min(DIRECT_MAX).min(max as u64);
            if self.when == When::WithHead {
                self.when = When::Straight;
            }
            if buf.is_empty() && run >= DIRECT_MIN {
                let mut direct = BytesMut::with_capacity(run as usize);
                return match poll_read_into(cx, &mut conn.io, &mut direct) {
                    Poll::Pending => {
                        self.when = When::Later;
                        Poll::Pending
                    }
                    Poll::Ready(Ok(0)) => {
                        self.fail();
                        failed("upstream prematurely closed connection", self.when)
                    }
                    Poll::Ready(Ok(n)) => {
                        if let Decode::Framed(d) = &mut self.decode {
                            d.took_raw(n as u64);
                            if d.is_done() {
                                self.end();
                            }
                        }
                        Poll::Ready(Some(Ok(sink.owned(direct.freeze()))))
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail();
                        failed(io_failure(&e), self.when)
                    }
                };
            }
            match buf.poll_fill(cx, &mut conn.io, SIZE) {
                Poll::Pending => {
                    self.when = When::Later;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    let at_close = match &self.decode {
                        Decode::UntilClose => true,
                        Decode::FastCgi(f) => f.ends_at_close,
                        Decode::Framed(_) => false,
                    };
                    if at_close {
                        // The close is the end of this body, and of the
                        // connection.
                        self.fail();
                        return Poll::Ready(None);
                    }
                    self.fail();
                    return failed("upstream prematurely closed connection", self.when);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.fail();
                    return failed(io_failure(&e), self.when);
                }
            }
        }
    }
}

/// Where a piece of the body goes.
trait Sink {
    type Piece;
    /// A piece that is a slice of the read buffer.
    fn copy(&mut self, data: &[u8]) -> Self::Piece;
    /// A piece read straight from the socket into its own bytes.
    fn owned(&mut self, data: Bytes) -> Self::Piece;
}

/// Each piece as `Bytes` of its own.
struct Owned;

impl Sink for Owned {
    type Piece = Bytes;

    fn copy(&mut self, data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }

    fn owned(&mut self, data: Bytes) -> Bytes {
        data
    }
}

/// Each piece appended to a buffer; the piece is its length.
struct Append<'a>(&'a mut Vec<u8>);

impl Sink for Append<'_> {
    type Piece = usize;

    fn copy(&mut self, data: &[u8]) -> usize {
        self.0.extend_from_slice(data);
        data.len()
    }

    fn owned(&mut self, data: Bytes) -> usize {
        self.copy(&data)
    }
}

/// Reads into the spare capacity of `into`.
fn poll_read_into<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut R,
    into: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut spare = tokio::io::ReadBuf::uninit(into.spare_capacity_mut());
    match Pin::new(io).poll_read(cx, &mut spare) {
        Poll::Ready(Ok(())) => {
            let n = spare.filled().len();
            // SAFETY: `poll_read` initialized the first `n` bytes of the
            // spare capacity, which follow `len`.
            unsafe { into.set_len(into.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}
