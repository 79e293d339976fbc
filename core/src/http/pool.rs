//! Upstream connections: connect (and TLS for `proxy_pass https://`), and
//! keep idle ones per worker for `keepalive N`. Each worker has its own
//! idle list, so taking a connection takes a lock no other thread uses.
//! An idle connection is reused only by a request that would have made
//! the same one: same peer, plain or TLS with the same settings and name.
//!
//! Every connection's socket is wrapped in [`TimedIo`], which applies
//! nginx's `proxy_send_timeout` and `proxy_read_timeout`: each bounds the
//! wait between two successive operations, not the whole transfer, so a
//! large body that keeps moving never times out.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::http::body::ReqBody;
use crate::upstream::tls::{self, TlsClient};
use crate::upstream::Upstream;

pub type Sender = SendRequest<ReqBody>;

struct Idle {
    peer: u32,
    tls: Option<TlsKey>,
    sender: Sender,
    timers: Arc<IoTimers>,
    since: Instant,
    requests: u64,
}

/// What a TLS connection was made with: the client configuration and the
/// name sent and verified.
pub struct TlsKey {
    id: u32,
    name: Box<str>,
}

/// How a request wants its connection: TLS with `client`, to `name`.
#[derive(Clone, Copy)]
pub struct TlsTarget<'a> {
    pub client: &'a TlsClient,
    pub name: &'a str,
}

impl TlsTarget<'_> {
    fn matches(&self, key: Option<&TlsKey>) -> bool {
        key.is_some_and(|k| k.id == self.client.id && *k.name == *self.name)
    }
}

#[repr(align(64))]
struct WorkerIdle {
    list: Mutex<Vec<Idle>>,
    /// `list.len()`, stored under the lock after each change, so metrics
    /// read it without taking the lock.
    len: AtomicUsize,
}

pub struct UpstreamPool {
    workers: Box<[WorkerIdle]>,
    capacity: usize,
}

/// A connection in use, with the count of requests it has carried.
pub struct Conn {
    pub sender: Sender,
    /// The timeouts of the connection's socket, set for the request in flight.
    pub timers: Arc<IoTimers>,
    pub requests: u64,
    pub reused: bool,
    tls: Option<TlsKey>,
}

pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    /// The TLS handshake took longer than `proxy_connect_timeout`.
    TlsTimeout,
    /// The TLS handshake failed (certificate refused included).
    Tls(std::io::Error),
    Handshake(hyper::Error),
}

impl UpstreamPool {
    pub fn new(workers: usize, capacity: usize) -> UpstreamPool {
        UpstreamPool {
            workers: (0..workers.max(1))
                .map(|_| WorkerIdle {
                    list: Mutex::new(Vec::new()),
                    len: AtomicUsize::new(0),
                })
                .collect(),
            capacity,
        }
    }

    /// This worker's idle list, and its length for metrics.
    fn idle(&self) -> (MutexGuard<'_, Vec<Idle>>, &AtomicUsize) {
        let w = &self.workers[crate::worker::index() as usize % self.workers.len()];
        (w.list.lock().unwrap_or_else(|e| e.into_inner()), &w.len)
    }

    /// Idle connections kept, over all workers (`metrics;`). One that the
    /// upstream closed or that outlived `keepalive_timeout` counts until
    /// the worker next looks at its list.
    pub fn idle_count(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.len.load(Ordering::Relaxed))
            .sum()
    }

    /// The most recently used idle connection to `peer` that is still open
    /// and was made as `tls` asks.
    fn take(&self, peer: u32, tls: Option<TlsTarget<'_>>, timeout: Duration) -> Option<Idle> {
        if self.capacity == 0 {
            return None;
        }
        let (mut idle, len) = self.idle();
        let now = Instant::now();
        idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
        let found = idle.iter().rposition(|c| {
            c.peer == peer
                && match &tls {
                    None => c.tls.is_none(),
                    Some(t) => t.matches(c.tls.as_ref()),
                }
        });
        let c = found.map(|pos| idle.swap_remove(pos));
        len.store(idle.len(), Ordering::Relaxed);
        c
    }

    fn put(
        &self,
        peer: u32,
        tls: Option<TlsKey>,
        sender: Sender,
        timers: Arc<IoTimers>,
        requests: u64,
    ) {
        let (mut idle, len) = self.idle();
        if idle.len() >= self.capacity {
            // nginx drops the least recently used cached connection.
            idle.remove(0);
        }
        idle.push(Idle {
            peer,
            tls,
            sender,
            timers,
            since: Instant::now(),
            requests,
        });
        len.store(idle.len(), Ordering::Relaxed);
    }
}

/// The timeouts of one request's exchange with an upstream.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

/// A reused idle connection to peer `i`, or a new one (with TLS when
/// `tls` says), with its timers set for a request about to be sent.
pub async fn checkout(
    up: &Upstream,
    i: usize,
    timeouts: Timeouts,
    tls: Option<TlsTarget<'_>>,
) -> Result<Conn, ConnectError> {
    while let Some(idle) = up.pool.take(i as u32, tls, up.keepalive_timeout) {
        let mut sender = idle.sender;
        if sender.ready().await.is_ok() {
            idle.timers.sending(timeouts);
            return Ok(Conn {
                sender,
                timers: idle.timers,
                requests: idle.requests,
                reused: true,
                tls: idle.tls,
            });
        }
    }
    let (sender, timers) = connect(up.addrs[i], timeouts.connect, tls).await?;
    timers.sending(timeouts);
    Ok(Conn {
        sender,
        timers,
        requests: 0,
        reused: false,
        tls: tls.map(|t| TlsKey {
            id: t.client.id,
            name: t.name.into(),
        }),
    })
}

/// Connects to `addr`, then, for TLS, shakes hands within `timeout` again
/// (nginx arms `proxy_connect_timeout` anew for the handshake).
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<TlsTarget<'_>>,
) -> Result<(Sender, Arc<IoTimers>), ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let timers = Arc::new(IoTimers::default());
    let io = TimedIo::new(stream, timers.clone());
    let transport = match tls {
        None => Transport::Plain(io),
        Some(t) => {
            let name = tls::server_name(t.name, addr.ip());
            match tokio::time::timeout(timeout, t.client.connector.connect(name, io)).await {
                Err(_) => return Err(ConnectError::TlsTimeout),
                Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                Ok(Ok(s)) => Transport::Tls(Box::new(s)),
            }
        }
    };
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(transport))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        // Errors surface on the request that was using the connection.
        // After a 101 the connection is handed to the request's tunnel.
        let _ = conn.with_upgrades().await;
    });
    Ok((sender, timers))
}

/// An upstream connection's byte stream: the socket, or TLS over it.
/// Either way the socket is a [`TimedIo`], so the proxy's timeouts apply
/// to what moves on the wire.
pub enum Transport {
    Plain(TimedIo),
    Tls(Box<tokio_rustls::client::TlsStream<TimedIo>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Transport::Tls(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Transport::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(io) => io.is_write_vectored(),
            Transport::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_flush(cx),
            Transport::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Transport::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

/// Returns a connection to the pool once its response body has ended.
pub struct Release {
    pub upstream: Arc<Upstream>,
    pub peer: u32,
    pub conn: Conn,
}

impl Release {
    pub fn reuse(self) {
        let up = &self.upstream;
        let requests = self.conn.requests + 1;
        self.conn.timers.idle();
        if up.keepalive > 0 && requests < up.keepalive_requests && !self.conn.sender.is_closed() {
            up.pool.put(
                self.peer,
                self.conn.tls,
                self.conn.sender,
                self.conn.timers,
                requests,
            );
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
    /// The timeout behind a hyper error, if that is what it was.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Timeout> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(t) = e.downcast_ref::<Timeout>() {
                return Some(*t);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<Timeout>()) {
                    return Some(*t);
                }
            }
            cur = e.source();
        }
        None
    }
}

/// The timeouts a connection's socket applies, set per request by the
/// proxy (locations differ) and shared with the socket wrapper.
///
/// As nginx: the send timeout runs while a request is in flight, and the
/// read timeout only once the whole request was handed over (nginx arms
/// it when the request is sent), until the response ends. An idle pooled
/// connection has neither, so it may sit for `keepalive_timeout`.
#[derive(Debug, Default)]
pub struct IoTimers {
    send_ms: AtomicU64,
    read_ms: AtomicU64,
    sending: AtomicBool,
    reading: AtomicBool,
}

impl IoTimers {
    /// A request is about to be sent.
    pub fn sending(&self, t: Timeouts) {
        self.send_ms.store(millis(t.send), Ordering::Relaxed);
        self.read_ms.store(millis(t.read), Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
        self.sending.store(true, Ordering::Release);
    }

    /// The request, body included, was handed to the connection: from now
    /// on the upstream must answer within the read timeout.
    pub fn request_sent(&self) {
        self.reading.store(true, Ordering::Release);
    }

    /// The exchange is over; the connection goes idle.
    pub fn idle(&self) {
        self.sending.store(false, Ordering::Relaxed);
        self.reading.store(false, Ordering::Release);
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.reading
            .load(Ordering::Acquire)
            .then(|| Duration::from_millis(self.read_ms.load(Ordering::Relaxed)))
    }

    fn send_timeout(&self) -> Option<Duration> {
        self.sending
            .load(Ordering::Acquire)
            .then(|| Duration::from_millis(self.send_ms.load(Ordering::Relaxed)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One timer of [`TimedIo`] (and of the client side of a tunnel): armed
/// when an operation first has to wait, disarmed when it makes progress.
pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Deadline {
    /// The operation made progress.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    pub(crate) fn new() -> Deadline {
        Deadline {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// Called when the operation is pending: whether it has now waited
    /// longer than `timeout`.
    pub(crate) fn expired(&mut self, timeout: Option<Duration>, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = timeout else {
            self.armed = false;
            return false;
        };
        if !self.armed {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + timeout);
            self.armed = true;
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// Starts (or starts over) the wait now, registering the task to be
    /// woken when it runs out.
    fn restart(&mut self, timeout: Option<Duration>, cx: &mut Context<'_>) {
        let Some(timeout) = timeout else {
            return;
        };
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + timeout);
        self.armed = true;
        let _ = self.sleep.as_mut().poll(cx);
    }
}

/// An upstream socket whose reads and writes fail with
/// [`Timeout`] after waiting longer than the current timeouts.
pub struct TimedIo {
    io: TcpStream,
    timers: Arc<IoTimers>,
    read: Deadline,
    write: Deadline,
}

impl TimedIo {
    pub fn new(io: TcpStream, timers: Arc<IoTimers>) -> TimedIo {
        TimedIo {
            io,
            timers,
            read: Deadline::new(),
            write: Deadline::new(),
        }
    }
}

fn timed_out(which: Timeout) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, which)
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.read.expired(this.timers.read_timeout(), cx) {
                    this.read.armed = false;
                    Poll::Ready(Err(timed_out(Timeout::Read)))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl TimedIo {
    /// The send timeout around a write, and the read timeout restarted
    /// after it: once the whole request was handed over, the wait for the
    /// answer starts after the last byte written, as nginx's. The read
    /// side may be parked already, so the timer is registered here, on the
    /// same task.
    fn timed_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(r) => {
                self.write.armed = false;
                if matches!(r, Ok(n) if n > 0) {
                    self.read.restart(self.timers.read_timeout(), cx);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.write.expired(self.timers.send_timeout(), cx) {
                    self.write.armed = false;
                    Poll::Ready(Err(timed_out(Timeout::Send)))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for TimedIo {
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
