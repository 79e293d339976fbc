//! The upstream socket: [`Stream`], the transport (plain TCP, or TLS for
//! `proxy_pass https://`), and [`TimedIo`], which applies nginx's
//! `proxy_send_timeout` and `proxy_read_timeout` to it. Each bounds the
//! wait between two successive operations, not the whole transfer, so a
//! large body that keeps moving never times out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::clock;
use crate::http::timer::{self, PolledBy};

/// An upstream connection's transport. An enum rather than a type
/// parameter so that the per-worker idle pool and the response body hold
/// one concrete type. TLS is boxed: its state is large and plain
/// connections should not carry its size.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A Unix socket's (`server unix:/path`, `fastcgi_pass unix:/path`).
    Unix(UnixStream),
}

impl Stream {
    /// Whether an idle connection can no longer carry a request: the
    /// upstream closed it, reset it, or sent something nobody asked for.
    /// Costs no system call while nothing happened on the socket (tokio
    /// answers from the readiness it keeps).
    pub fn unusable(&mut self) -> bool {
        match self {
            Stream::Plain(s) => !matches!(
                s.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            Stream::Unix(s) => !matches!(
                s.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            // Records may wait that are no data (TLS 1.3 session tickets
            // come after the handshake), so the socket is read through
            // TLS: only application data, a close or an error count.
            Stream::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                !matches!(
                    Pin::new(&mut **s).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => match Pin::new(&mut **s).poll_read(cx, buf) {
                // A close with no close_notify is a close, as nginx takes
                // it (OpenSSL's SSL_OP_IGNORE_UNEXPECTED_EOF): a body that
                // ends at the close is whole, one cut short is logged as
                // `upstream prematurely closed connection`.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Which wait ran out, carried inside the `io::Error` (kind `TimedOut`)
/// that [`TimedIo`] returns, so the proxy can say what it was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `proxy_send_timeout`: the upstream took nothing for that long.
    Send,
    /// `proxy_read_timeout`: the upstream sent nothing for that long.
    Read,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Timeout::Send => "upstream send timed out",
            Timeout::Read => "upstream read timed out",
        })
    }
}

impl std::error::Error for Timeout {}

impl Timeout {
    /// The timeout an I/O error from [`TimedIo`] stands for, if any.
    pub fn of(e: &io::Error) -> Option<Timeout> {
        if e.kind() != io::ErrorKind::TimedOut {
            return None;
        }
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Timeout>())
            .copied()
    }
}

fn timed_out(which: Timeout) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, which)
}

/// One timer of [`TimedIo`] (and of the client side of a tunnel): armed
/// when an operation first has to wait, disarmed when it makes progress.
/// The timer itself moves only when it must (see [`timer`]).
pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// When the armed wait times out; `None`: disarmed.
    due: Option<Instant>,
    polled_by: PolledBy,
}

impl Deadline {
    /// The operation made progress.
    pub(crate) fn disarm(&mut self) {
        self.due = None;
    }

    pub(crate) fn new() -> Deadline {
        Deadline {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            due: None,
            polled_by: PolledBy::default(),
        }
    }

    /// Called when the operation is pending: whether it has now waited
    /// longer than `timeout`.
    fn expired(&mut self, timeout: Option<Duration>, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = timeout else {
            self.due = None;
            return false;
        };
        let due = *self.due.get_or_insert_with(|| clock::tokio_now() + timeout);
        timer::passed(self.sleep.as_mut(), due, &mut self.polled_by, cx)
    }

    /// An operation that is pending: `Pending` while within `timeout`,
    /// else the error `timed_out` makes (and the timer is disarmed).
    pub(crate) fn wait<T>(
        &mut self,
        timeout: Option<Duration>,
        cx: &mut Context<'_>,
        timed_out: impl FnOnce() -> io::Error,
    ) -> Poll<io::Result<T>> {
        if self.expired(timeout, cx) {
            self.due = None;
            Poll::Ready(Err(timed_out()))
        } else {
            Poll::Pending
        }
    }

    /// Starts (or starts over) the wait now: it runs out `timeout` from
    /// here. The task is registered with the timer, which may still be
    /// set for an earlier deadline: it then wakes the task early, and the
    /// next `wait` moves it on (see [`timer::passed`]).
    fn restart(&mut self, timeout: Option<Duration>, cx: &mut Context<'_>) {
        if timeout.is_some() {
            self.due = None;
            // A deadline from now has not passed.
            let _ = self.expired(timeout, cx);
        }
    }
}

/// An upstream socket whose reads and writes fail with [`Timeout`] after
/// waiting longer than the current timeouts.
///
/// As nginx: the send timeout bounds every wait to write; the read
/// timeout applies only once the whole request was written (nginx arms it
/// when the request is sent), until the response ends. Reads before that
/// (watching for an early answer while a body is still going out) and an
/// idle pooled connection have none, so it may sit for `keepalive_timeout`.
pub struct TimedIo<S> {
    io: S,
    /// The timeouts in milliseconds (small: a connection sits in every
    /// response body).
    send_ms: u32,
    read_ms: u32,
    /// The request was written whole: reads are timed.
    reading: bool,
    read_timer: Deadline,
    write_timer: Deadline,
    /// Bytes read over the connection's life (`$upstream_bytes_received`
    /// counts an exchange's share).
    received: u64,
    /// The current exchange's start (`received` then) and its response
    /// head's bytes.
    exchange: (u64, u64),
}

impl<S> TimedIo<S> {
    pub fn new(io: S) -> TimedIo<S> {
        TimedIo {
            io,
            send_ms: 0,
            read_ms: 0,
            reading: false,
            read_timer: Deadline::new(),
            write_timer: Deadline::new(),
            received: 0,
            exchange: (0, 0),
        }
    }

    /// Bytes read so far on the connection.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The exchange that started when `start` bytes had been read has a
    /// response head `head` bytes long.
    pub fn exchange(&mut self, start: u64, head: u64) {
        self.exchange = (start, head);
    }

    /// Bytes read in the current exchange, and of them the body's.
    pub fn exchange_read(&self) -> (u64, u64) {
        let read = self.received - self.exchange.0;
        (read, read.saturating_sub(self.exchange.1))
    }

    /// A request is about to be sent with these timeouts (locations
    /// differ, so they are set per request).
    pub fn sending(&mut self, send: Duration, read: Duration) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        self.send_ms = ms(send);
        self.read_ms = ms(read);
        self.reading = false;
    }

    /// The request, body included, was written: from now on the upstream
    /// must answer within the read timeout, counted from here.
    pub fn request_sent(&mut self) {
        self.reading = true;
        self.read_timer.disarm();
    }

    /// The exchange is over; the connection goes idle, untimed.
    pub fn idle(&mut self) {
        self.reading = false;
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.reading
            .then(|| Duration::from_millis(u64::from(self.read_ms)))
    }

    /// The send timeout around a write, and the read timeout restarted
    /// after it once the request was written (only a tunnel writes then):
    /// traffic either way keeps a tunnel open, as nginx re-arms the
    /// upstream's read timer on every event of the tunnel. The read side
    /// may be parked already, so the timer is registered here, on the same
    /// task.
    fn timed_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(r) => {
                self.write_timer.disarm();
                if matches!(r, Ok(n) if n > 0) {
                    let timeout = self.read_timeout();
                    self.read_timer.restart(timeout, cx);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = Duration::from_millis(u64::from(self.send_ms));
                self.write_timer
                    .wait(Some(timeout), cx, || timed_out(Timeout::Send))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer.disarm();
                this.received += (buf.filled().len() - before) as u64;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = this.read_timeout();
                this.read_timer
                    .wait(timeout, cx, || timed_out(Timeout::Read))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.timed_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.timed_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
