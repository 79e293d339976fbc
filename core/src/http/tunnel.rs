//! Upgraded connections (WebSocket, or any other `Upgrade`), as nginx's
//! `ngx_http_upstream_upgrade`: once the upstream has answered
//! `101 Switching Protocols` to a request that asked for an upgrade and the
//! 101 head is with the client, bytes move both ways unchanged, between
//! the client's socket and the upstream connection, until a side closes.
//!
//! nginx's rules (`ngx_http_upstream_process_upgraded`), kept here:
//! - the end of either side ends the tunnel, once what was read from it
//!   has been written to the other: there are no half-closed tunnels;
//! - `proxy_read_timeout` closes a tunnel in which nothing moved for that
//!   long. nginx re-arms the upstream's read timer on every event of the
//!   tunnel, so traffic in either direction keeps it open; here the
//!   upstream socket ([`crate::http::upstream_h1::TimedIo`]) starts its read wait
//!   over after each write to it, which is the same rule;
//! - `proxy_send_timeout` bounds a blocked write to the upstream and
//!   `send_timeout` one to the client; reading from the client has none;
//! - a timeout is logged at `info`: `upstream timed out (110: Connection
//!   timed out) while proxying upgraded connection`;
//! - the connection is used for nothing else afterwards, on either side;
//! - the access log line is written when the tunnel ends, with status 101
//!   and the bytes passed to the client.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::http::body::RespBody;
use crate::http::h1::Io;
use crate::http::proxy::strerror;
use crate::http::upstream_h1::{Deadline, Timeout, Upgraded};
use crate::log::{self, Level};

/// A tunnel waiting for its 101 head to reach the client.
pub struct Tunnel {
    /// The upstream connection, and what it sent past the 101 head.
    upgraded: Box<Upgraded>,
    /// `, client: ..., upstream: "...", host: "..."` for the error log.
    context: String,
    /// The client connection's number, for the error log.
    conn: u64,
}

impl Tunnel {
    pub fn new(upgraded: Box<Upgraded>, context: String, conn: u64) -> Tunnel {
        Tunnel {
            upgraded,
            context,
            conn,
        }
    }
}

/// Runs the tunnel behind `body` (a 101 whose head was written) between
/// the client's socket and the upstream, starting with `early`: what the
/// client sent after its request head, read with it. `send_timeout` is
/// the location's, for writes to the client. Dropping `body` at the end
/// writes the access log line and frees the peer's connection count.
pub async fn run<I: Io>(mut body: RespBody, client: &I, early: Vec<u8>, send_timeout: Duration) {
    let Some(tunnel) = body.take_tunnel() else {
        return;
    };
    let Tunnel {
        upgraded,
        context,
        conn,
    } = *tunnel;
    let Upgraded { stream, leftover } = *upgraded;

    // Atomics only because the task must be `Send`: both directions run on
    // this one task.
    let failed = Failed(AtomicU8::new(0));
    let sent = AtomicU64::new(0);
    let (upstream_read, upstream_write) = tokio::io::split(stream);
    // What the upstream sent with its 101 head goes to the client first.
    let mut from_upstream = Tagged::new(
        leftover.as_ref().chain(upstream_read),
        Side::Upstream,
        &failed,
    );
    let mut to_upstream = Tagged::new(upstream_write, Side::Upstream, &failed);
    let mut from_client = Tagged::new(
        early.as_slice().chain(ClientRead(client)),
        Side::Client,
        &failed,
    );
    let mut to_client = Tagged::new(
        ClientWrite {
            io: client,
            deadline: Deadline::new(),
            timeout: send_timeout,
            sent: &sent,
        },
        Side::Client,
        &failed,
    );
    // Whichever direction ends first (end of stream, all of it written;
    // or an error) ends the tunnel, as nginx finalizes the request then.
    let result = tokio::select! {
        r = tokio::io::copy(&mut from_upstream, &mut to_client) => r,
        r = tokio::io::copy(&mut from_client, &mut to_upstream) => r,
    };
    body.tunnelled(sent.load(Relaxed));
    if let Err(e) = result {
        let (side, op) = failed.get().unwrap_or((Side::Upstream, Op::Read));
        let (level, message) = ended(side, op, &e);
        log::write(
            level,
            Some(conn),
            &format!("{message} while proxying upgraded connection{context}"),
        );
    }
}

/// The error log's level and words for a tunnel that ended on `e`, an
/// `op` on `side`, as nginx's `ngx_connection_error` words them: on the
/// client's side at `info` (nginx logs client errors so), on the
/// upstream's at `error`, timeouts on either side at `info`.
fn ended(side: Side, op: Op, e: &io::Error) -> (Level, String) {
    if Timeout::of(e).is_some() {
        return (
            Level::Info,
            "upstream timed out (110: Connection timed out)".to_owned(),
        );
    }
    if side == Side::Client && e.kind() == io::ErrorKind::TimedOut {
        return (
            Level::Info,
            "client timed out (110: Connection timed out)".to_owned(),
        );
    }
    let call = match op {
        Op::Read => "recv()",
        Op::Write => "send()",
    };
    let message = match e.raw_os_error() {
        Some(errno) => format!("{call} failed ({errno}: {})", strerror(e)),
        None => format!("{call} failed ({e})"),
    };
    let level = match side {
        Side::Client => Level::Info,
        Side::Upstream => Level::Error,
    };
    (level, message)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

/// The first failure's side and operation, 0 while there is none.
struct Failed(AtomicU8);

impl Failed {
    fn set_first(&self, side: Side, op: Op) {
        let code = 1 + u8::from(side == Side::Upstream) * 2 + u8::from(op == Op::Write);
        let _ = self.0.compare_exchange(0, code, Relaxed, Relaxed);
    }

    fn get(&self) -> Option<(Side, Op)> {
        match self.0.load(Relaxed) {
            0 => None,
            code => {
                let code = code - 1;
                let side = if code & 2 != 0 {
                    Side::Upstream
                } else {
                    Side::Client
                };
                let op = if code & 1 != 0 { Op::Write } else { Op::Read };
                Some((side, op))
            }
        }
    }
}

/// A stream of one side that notes where the tunnel's first error came
/// from, so the log can say which side failed and doing what.
struct Tagged<'a, T> {
    io: T,
    side: Side,
    failed: &'a Failed,
}

impl<'a, T> Tagged<'a, T> {
    fn new(io: T, side: Side, failed: &'a Failed) -> Self {
        Tagged { io, side, failed }
    }

    fn note<R>(&self, op: Op, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if let Poll::Ready(Err(_)) = &polled {
            self.failed.set_first(self.side, op);
        }
        polled
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tagged<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.note(Op::Read, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tagged<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(Op::Write, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.note(Op::Write, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Reads from the client's socket, which the connection loop owns and
/// lends (plain or TLS): readiness, then a non-blocking read.
struct ClientRead<'a, I>(&'a I);

impl<I: Io> AsyncRead for ClientRead<'_, I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: it is cleared, wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Writes to the client's socket; a wait longer than `send_timeout` for
/// it to take more fails with `TimedOut`. Counts what it wrote.
struct ClientWrite<'a, I> {
    io: &'a I,
    deadline: Deadline,
    timeout: Duration,
    sent: &'a AtomicU64,
}

impl<I: Io> AsyncWrite for ClientWrite<'_, I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.io.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => match this.io.try_write(buf) {
                    Ok(n) => {
                        this.deadline.disarm();
                        this.sent.fetch_add(n as u64, Relaxed);
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return this
                        .deadline
                        .wait(Some(this.timeout), cx, || io::ErrorKind::TimedOut.into())
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What the transport still holds (TLS records the socket did not
        // take yet).
        let this = self.get_mut();
        loop {
            match this.io.try_flush() {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match this.io.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return this
                        .deadline
                        .wait(Some(this.timeout), cx, || io::ErrorKind::TimedOut.into())
                }
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The tunnel closes both sides whole when it ends.
        Poll::Ready(Ok(()))
    }
}
