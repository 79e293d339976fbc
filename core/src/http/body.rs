//! Body types of the proxy. Bodies stream frame by frame in both
//! directions: nothing buffers a whole request or response.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::http::access::Record;
use crate::http::h1::body::{BodyError, ClientBody};
use crate::http::pool::{IoTimers, Release};

/// The body sent to an upstream. A client body tells the connection's
/// timers when it has been handed over entirely, which starts the wait for
/// the upstream's answer (`proxy_read_timeout`).
pub enum ReqBody {
    Empty,
    Client(ClientBody, Option<Arc<IoTimers>>),
    /// A body read whole before the request is sent: a chunked body for
    /// an HTTP/1.0 upstream, which needs its length up front (nginx
    /// buffers every body by default). It can be sent again on a retry.
    Buffered(Option<Bytes>),
}

impl ReqBody {
    /// Tells the timers, once, that the whole body was handed over.
    fn sent(timers: &mut Option<Arc<IoTimers>>) {
        if let Some(t) = timers.take() {
            t.request_sent();
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Client(b, timers) => {
                let polled = Pin::new(&mut *b).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => ReqBody::sent(timers),
                    Poll::Ready(Some(Ok(_))) if b.is_end_stream() => ReqBody::sent(timers),
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Buffered(b) => b.is_none(),
            ReqBody::Client(b, timers) => {
                let end = b.is_end_stream();
                if end {
                    if let Some(t) = timers {
                        t.request_sent();
                    }
                }
                end
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Buffered(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Client(b, _) => b.size_hint(),
        }
    }
}

/// The body sent to a client: a fixed text, an upstream's body passed
/// through, or none but a tunnel after a `101 Switching Protocols`. When
/// an upstream body ends cleanly its connection goes back to the pool;
/// the access log line is written when the body (or the tunnel) is done
/// or dropped, with the bytes actually sent.
pub struct RespBody {
    kind: Kind,
    sent: u64,
    /// Bytes of the response head (and a `100 Continue` before it), for
    /// `$bytes_sent`.
    head: u64,
    record: Option<Box<Record>>,
    /// Held, never read: dropping it frees the peer.
    _hold: Option<PeerHold>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming, Option<Release>),
    /// The upstream switched protocols: the client connection runs the
    /// tunnel once the 101 head is written (`crate::http::tunnel`).
    Tunnel(Option<Box<crate::http::tunnel::Tunnel>>),
}

/// Keeps a peer's connection counted as in use while its response body is
/// passed on: dropped with the body, at its end or when the client goes.
pub struct PeerHold {
    pub upstream: std::sync::Arc<crate::upstream::Upstream>,
    pub peer: usize,
}

impl Drop for PeerHold {
    fn drop(&mut self) {
        self.upstream.release_conn(self.peer);
    }
}

impl RespBody {
    pub fn full(bytes: impl Into<Bytes>) -> RespBody {
        let bytes = bytes.into();
        RespBody {
            kind: Kind::Full(if bytes.is_empty() { None } else { Some(bytes) }),
            sent: 0,
            head: 0,
            record: None,
            _hold: None,
        }
    }

    pub fn empty() -> RespBody {
        RespBody::full(Bytes::new())
    }

    pub fn upstream(body: Incoming, release: Option<Release>, hold: PeerHold) -> RespBody {
        RespBody {
            kind: Kind::Upstream(body, release),
            _hold: Some(hold),
            sent: 0,
            head: 0,
            record: None,
        }
    }

    /// The answer to an upgrade: no body, the tunnel to run after the head.
    pub fn tunnel(tunnel: crate::http::tunnel::Tunnel, hold: PeerHold) -> RespBody {
        RespBody {
            kind: Kind::Tunnel(Some(Box::new(tunnel))),
            _hold: Some(hold),
            sent: 0,
            head: 0,
            record: None,
        }
    }

    /// Whether a tunnel waits behind this (empty) body.
    pub fn has_tunnel(&self) -> bool {
        matches!(self.kind, Kind::Tunnel(Some(_)))
    }

    /// The tunnel, taken to run; the body (peer hold, log record) stays
    /// with the caller until the tunnel ends.
    pub fn take_tunnel(&mut self) -> Option<Box<crate::http::tunnel::Tunnel>> {
        match &mut self.kind {
            Kind::Tunnel(t) => t.take(),
            _ => None,
        }
    }

    /// Bytes the tunnel passed to the client, for `$body_bytes_sent`.
    pub fn tunnelled(&mut self, bytes: u64) {
        self.sent += bytes;
    }

    pub fn set_record(&mut self, record: Option<Box<Record>>) {
        self.record = record;
    }

    /// The access log record, for an answer sent in this one's place.
    pub fn take_record(&mut self) -> Option<Box<Record>> {
        self.record.take()
    }

    /// The connection wrote the response head, `bytes` long.
    pub fn head_sent(&mut self, bytes: u64) {
        self.head = bytes;
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Tunnel(_) => Poll::Ready(None),
            Kind::Upstream(body, release) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                // hyper stops polling a body once it reports its end, so the
                // connection goes back to the pool as soon as the last frame
                // is out, not only on a final `None`.
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    _ => false,
                };
                if ended {
                    if let Some(release) = release.take() {
                        release.reuse();
                    }
                }
                polled
            }
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(b, _) => b.is_end_stream(),
            Kind::Tunnel(_) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(b, _) => b.size_hint(),
            Kind::Tunnel(_) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(self.sent, self.head);
        }
    }
}
