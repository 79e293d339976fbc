//! Upstream connections: connect, and keep idle ones per worker for
//! `keepalive N`. Each worker has its own idle list, so taking a connection
//! takes a lock no other thread uses.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::body::ReqBody;
use crate::upstream::Upstream;

pub type Sender = SendRequest<ReqBody>;

struct Idle {
    peer: u32,
    sender: Sender,
    since: Instant,
    requests: u64,
}

#[repr(align(64))]
struct WorkerIdle(Mutex<Vec<Idle>>);

pub struct UpstreamPool {
    workers: Box<[WorkerIdle]>,
    capacity: usize,
}

/// A connection in use, with the count of requests it has carried.
pub struct Conn {
    pub sender: Sender,
    pub requests: u64,
    pub reused: bool,
}

pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    Handshake(hyper::Error),
}

impl UpstreamPool {
    pub fn new(workers: usize, capacity: usize) -> UpstreamPool {
        UpstreamPool {
            workers: (0..workers.max(1))
                .map(|_| WorkerIdle(Mutex::new(Vec::new())))
                .collect(),
            capacity,
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        let w = &self.workers[crate::worker::index() as usize % self.workers.len()];
        w.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection to `peer` that is still open.
    fn take(&self, peer: u32, timeout: Duration) -> Option<(Sender, u64)> {
        if self.capacity == 0 {
            return None;
        }
        let mut idle = self.idle();
        let now = Instant::now();
        idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
        let pos = idle.iter().rposition(|c| c.peer == peer)?;
        let c = idle.swap_remove(pos);
        Some((c.sender, c.requests))
    }

    fn put(&self, peer: u32, sender: Sender, requests: u64) {
        let mut idle = self.idle();
        if idle.len() >= self.capacity {
            // nginx drops the least recently used cached connection.
            idle.remove(0);
        }
        idle.push(Idle {
            peer,
            sender,
            since: Instant::now(),
            requests,
        });
    }
}

/// A reused idle connection to peer `i`, or a new one.
pub async fn checkout(
    up: &Upstream,
    i: usize,
    connect_timeout: Duration,
) -> Result<Conn, ConnectError> {
    while let Some((mut sender, requests)) = up.pool.take(i as u32, up.keepalive_timeout) {
        if sender.ready().await.is_ok() {
            return Ok(Conn {
                sender,
                requests,
                reused: true,
            });
        }
    }
    let sender = connect(up.addrs[i], connect_timeout).await?;
    Ok(Conn {
        sender,
        requests: 0,
        reused: false,
    })
}

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        // Errors surface on the request that was using the connection.
        let _ = conn.await;
    });
    Ok(sender)
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
        if up.keepalive > 0 && requests < up.keepalive_requests && !self.conn.sender.is_closed() {
            up.pool.put(self.peer, self.conn.sender, requests);
        }
    }
}
