//! Upstream connections: a pooled one or a new one per try (TLS for
//! `proxy_pass https://`), and idle ones kept per worker for
//! `keepalive N`. Each worker has its own idle list, so taking a
//! connection takes a lock no other thread uses. An idle connection is
//! reused only by a request that would have made the same one: same peer,
//! plain or TLS with the same settings and name. An
//! idle connection is only its socket (see `upstream_h1::Conn`): no task
//! watches it, and one the upstream closed meanwhile is noticed from the
//! socket's readiness when the worker next looks at its list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock;
use crate::http::upstream_h1::{Conn, ConnectError};
use crate::upstream::tls::TlsClient;
use crate::upstream::Upstream;

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

    /// The key a connection made for this target is kept under.
    pub fn key(&self) -> TlsKey {
        TlsKey {
            id: self.client.id,
            name: self.name.into(),
        }
    }
}

struct Idle {
    peer: u32,
    conn: Conn,
    since: Instant,
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
    /// upstream closed counts until a request would have used it or
    /// `keepalive_timeout` passes; one past `keepalive_timeout`, until the
    /// worker next takes a connection.
    pub fn idle_count(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.len.load(Ordering::Relaxed))
            .sum()
    }

    /// The most recently used idle connection to `peer` that is still open
    /// at `now` and was made as `tls` asks.
    fn take(
        &self,
        peer: u32,
        tls: Option<TlsTarget<'_>>,
        timeout: Duration,
        now: Instant,
    ) -> Option<Conn> {
        if self.capacity == 0 {
            return None;
        }
        let (mut idle, len) = self.idle();
        // Kept since after `fresh`: one subtraction, then a comparison per
        // connection.
        let fresh = now.checked_sub(timeout);
        idle.retain(|c| fresh.is_none_or(|f| c.since > f));
        // Only the connection about to be used is asked whether the
        // upstream closed it (a closed one is dropped and the next tried):
        // asking every idle connection at every request cost a read
        // attempt each, ~2k instructions per request with 100 kept.
        // Others the upstream closed go when their turn comes, or at
        // `keepalive_timeout`.
        let found = loop {
            let Some(pos) = idle.iter().rposition(|c| {
                c.peer == peer
                    && match &tls {
                        None => c.conn.tls.is_none(),
                        Some(t) => t.matches(c.conn.tls.as_ref()),
                    }
            }) else {
                break None;
            };
            let mut c = idle.swap_remove(pos);
            if !c.conn.unusable() {
                break Some(c.conn);
            }
        };
        len.store(idle.len(), Ordering::Relaxed);
        found
    }

    fn put(&self, peer: u32, conn: Conn) {
        let (mut idle, len) = self.idle();
        if idle.len() >= self.capacity {
            // nginx drops the least recently used cached connection.
            idle.remove(0);
        }
        idle.push(Idle {
            peer,
            conn,
            since: clock::now(),
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
/// `tls` says), with its timeouts set for a request about to be sent;
/// `now` is the try's start.
pub async fn checkout(
    up: &Upstream,
    i: usize,
    timeouts: Timeouts,
    tls: Option<TlsTarget<'_>>,
    local: Option<&crate::http::upstream_h1::Local>,
) -> Result<Conn, ConnectError> {
    let mut conn = match up
        .pool
        .take(i as u32, tls, up.keepalive_timeout, clock::now())
    {
        Some(mut conn) => {
            conn.reused = true;
            conn
        }
        // Boxed: a rare path (keep-alive connections serve most
        // requests) whose future would otherwise widen every request's.
        None => Box::pin(Conn::connect(&up.addrs[i], timeouts.connect, tls, local)).await?,
    };
    conn.sending(timeouts.send, timeouts.read);
    Ok(conn)
}

/// A connection whose response ended cleanly: back to the pool, within
/// `keepalive` and `keepalive_requests` (its count includes the request
/// just done), or closed.
pub fn release(up: &Upstream, peer: u32, conn: Conn) {
    if up.keepalive > 0 && u64::from(conn.requests) < up.keepalive_requests {
        up.pool.put(peer, conn);
    }
}
