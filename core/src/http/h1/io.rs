//! Reading into and writing from pooled buffers on a `&TcpStream`, with
//! readiness waits. Every read and write is a `try_` call after a
//! readiness wait, so a future dropped while waiting loses nothing.
//!
//! The read buffer also fills from any `AsyncRead` ([`ReadBuf::poll_fill`]),
//! for the upstream client.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::h1::pool::Buf;

/// What the connection loop reads and writes through, shared (`&self`)
/// between the request body's reader and the response's writer: a
/// `TcpStream`'s readiness API. Plain TCP is the stream itself; TLS
/// (`http::tls::TlsIo`) has the same shape over rustls. The loop is
/// generic over it, so a plain connection runs the code it ran before.
pub trait Io: Sync {
    /// Ready when a read may give bytes (or the end).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
    /// Ready when a write may take bytes (an upgraded connection's tunnel
    /// polls rather than awaits).
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Sends what the transport itself still holds (TLS records);
    /// `WouldBlock` while some wait for the socket.
    fn try_flush(&self) -> io::Result<()>;
    /// Ends the sending side (after a TLS close_notify).
    fn shutdown_write(&self);
    /// After a readiness event: whether the client has closed its side
    /// (`true`), or sent more (`false`: a pipelined request, left where
    /// it is for the loop). `WouldBlock` when neither, with the readiness
    /// cleared.
    fn try_closed(&self) -> io::Result<bool>;
}

impl Io for TcpStream {
    #[inline]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline]
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }

    #[inline]
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    #[inline]
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::writable(self)
    }

    #[inline]
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    /// A read that leaves room in the buffer has drained the socket (epoll
    /// is edge-triggered), so the readiness is cleared, as tokio's own
    /// `poll_read` does and nginx's `ngx_unix_recv` (`rev->ready = 0`):
    /// the next read then waits for the next event instead of costing a
    /// `recv()` that answers EAGAIN. `try_read_buf` keeps the readiness
    /// until such an EAGAIN: after each response the loop looks for a
    /// pipelined request, and at 50 connections 17% of requests paid it.
    /// The readiness is cleared through `try_io`'s WouldBlock, which keeps
    /// an event that came after the read.
    #[inline]
    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let mut drained = 0;
        let read = self.try_io(tokio::io::Interest::READABLE, || {
            let room = buf.chunk_mut().len();
            let n = TcpStream::try_read_buf(self, buf)?;
            if n > 0 && n < room {
                drained = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match read {
            Err(e) if drained > 0 && e.kind() == io::ErrorKind::WouldBlock => Ok(drained),
            read => read,
        }
    }

    #[inline]
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    #[inline]
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    #[inline]
    fn try_flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write);
    }

    /// A one-byte `MSG_PEEK`, as nginx's broken-connection check without
    /// EPOLLRDHUP: 0 is the end, an error (a reset) too.
    fn try_closed(&self) -> io::Result<bool> {
        let peeked = self.try_io(tokio::io::Interest::READABLE, || {
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
            socket2::SockRef::from(self).peek(&mut byte)
        });
        match peeked {
            Ok(n) => Ok(n == 0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(_) => Ok(true),
        }
    }
}

/// nginx's broken-connection check (`proxy_ignore_client_abort off`):
/// whether the client closed while its request waits for an answer.
/// Registers for the next readiness event otherwise. `watching` turns
/// off when the client sent more instead (a pipelined request: nginx
/// reads it once the answer is out), so the event is not looked at again.
pub fn poll_closed<I: Io>(io: &I, cx: &mut Context<'_>, watching: &mut bool) -> bool {
    // Each WouldBlock cleared the readiness, so the next poll registers;
    // the bound only guards against a transport that keeps reporting it.
    for _ in 0..4 {
        match io.poll_read_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => match io.try_closed() {
                Ok(true) => return true,
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            },
        }
    }
    *watching = false;
    false
}

/// A pooled read buffer: unconsumed bytes are `buf[pos..]`.
pub struct ReadBuf {
    buf: Buf,
    pos: usize,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: Buf::take(),
            pos: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Makes room to read into, keeping at most `max` unconsumed bytes:
    /// an `OutOfMemory` error when `max` bytes are already waiting.
    #[inline(always)]
    fn room(&mut self, max: usize) -> io::Result<()> {
        let spare = self.buf.capacity() - self.buf.len();
        if self.pos > 0 && spare < 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            if self.buf.len() >= max {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
            let grow = (self.buf.capacity() * 2).min(max) - self.buf.len();
            self.buf.reserve_exact(grow);
        }
        Ok(())
    }

    /// Reads what the socket has, keeping at most `max` unconsumed bytes:
    /// `Ok(0)` at end of stream, `WouldBlock` when nothing is there, and
    /// an `OutOfMemory` error when `max` bytes are already waiting.
    pub fn try_fill<I: Io>(&mut self, io: &I, max: usize) -> io::Result<usize> {
        self.room(max)?;
        io.try_read_buf(&mut *self.buf)
    }

    /// [`ReadBuf::try_fill`] from any reader, as a poll: `Ok(0)` at end of
    /// stream. Inlined: it is the upstream read of every response, and
    /// LLVM otherwise keeps it out of line as `proxy::run` grows.
    #[inline(always)]
    pub fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        self.room(max)?;
        let mut spare = tokio::io::ReadBuf::uninit(self.buf.spare_capacity_mut());
        match Pin::new(io).poll_read(cx, &mut spare) {
            Poll::Ready(Ok(())) => {
                let n = spare.filled().len();
                let len = self.buf.len() + n;
                // SAFETY: `poll_read` initialized the first `n` bytes of
                // the spare capacity (`filled`), which follow `len`.
                unsafe { self.buf.set_len(len) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Everything unconsumed, as a piece of its own; the buffer is empty
    /// after.
    pub fn take_all(&mut self) -> bytes::Bytes {
        let piece = bytes::Bytes::copy_from_slice(self.data());
        self.consume(piece.len());
        piece
    }

    /// [`ReadBuf::try_fill`], waiting for the socket until `deadline`
    /// (a `TimedOut` error after it).
    pub async fn fill<I: Io>(
        &mut self,
        io: &I,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        loop {
            match self.try_fill(io, max) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable(io, deadline).await?,
                r => return r,
            }
        }
    }
}

/// Waits until the socket is readable, or `deadline`.
pub async fn readable<I: Io>(io: &I, deadline: Option<Instant>) -> io::Result<()> {
    match deadline {
        None => io.readable().await,
        Some(d) => match tokio::time::timeout_at(d, io.readable()).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        },
    }
}

/// Writes all of `a` then all of `b`, in as few system calls as the
/// socket allows (one `writev` usually). A wait for the socket longer
/// than `timeout` (nginx's `send_timeout`: between two successive
/// writes) fails with `TimedOut`.
pub async fn write_two<I: Io>(
    io: &I,
    mut a: &[u8],
    mut b: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let written = if a.is_empty() {
            io.try_write(b)
        } else if b.is_empty() {
            io.try_write(a)
        } else {
            io.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                let from_a = n.min(a.len());
                a = &a[from_a..];
                n -= from_a;
                b = &b[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(timeout, io.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    // TLS records the transport could not send at once.
    loop {
        match io.try_flush() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(timeout, io.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub async fn write_all<I: Io>(io: &I, a: &[u8], timeout: Duration) -> io::Result<()> {
    write_two(io, a, &[], timeout).await
}

#[cfg(test)]
impl ReadBuf {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}
