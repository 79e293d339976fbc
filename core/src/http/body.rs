//! The body of a response to a client. Bodies stream frame by frame in
//! both directions: nothing buffers a whole request or response (the
//! upstream request's body is `upstream_h1::ReqBody`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::http::access::Record;
use crate::http::h1::body::BodyError;
use crate::http::upstream_h1::UpstreamBody;

/// The body sent to a client: a fixed text, or an upstream's body passed
/// through. When an upstream body ends cleanly its connection goes back to
/// the pool at once (before the client has the last bytes); the access
/// log line is written when the body is done or dropped, with the bytes
/// actually sent.
pub struct RespBody {
    kind: Kind,
    sent: u64,
    /// Bytes of the response head (and a `100 Continue` before it), for
    /// `$bytes_sent`. `u32`, as `send_ms`: the body moves with every
    /// response, so it is kept small.
    head: u32,
    record: Option<Box<Record>>,
    /// Dropping it frees the peer; its upstream's pool takes the
    /// connection back.
    hold: Option<PeerHold>,
    /// The location's `send_timeout` in milliseconds ([`NO_SEND_TIMEOUT`]:
    /// none set), for the connection writing this response (a field, not a
    /// response extension: those cost a map per response).
    send_ms: u32,
}

/// `send_ms` when no `send_timeout` was set.
const NO_SEND_TIMEOUT: u32 = u32::MAX;

enum Kind {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
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
            hold: None,
            send_ms: NO_SEND_TIMEOUT,
        }
    }

    pub fn empty() -> RespBody {
        RespBody::full(Bytes::new())
    }

    pub fn upstream(body: UpstreamBody, hold: PeerHold) -> RespBody {
        let mut resp = RespBody {
            kind: Kind::Upstream(body),
            hold: Some(hold),
            sent: 0,
            head: 0,
            record: None,
            send_ms: NO_SEND_TIMEOUT,
        };
        // A body that ended with its head (HEAD, 204, 304, length 0) frees
        // its connection now: nobody may poll it.
        resp.release_idle();
        resp
    }

    /// An upstream body's connection, once free, back to the pool.
    fn release_idle(&mut self) {
        if let (Kind::Upstream(body), Some(hold)) = (&mut self.kind, &self.hold) {
            if let Some(conn) = body.take_idle() {
                crate::http::pool::release(&hold.upstream, hold.peer as u32, conn);
            }
        }
    }

    /// The `send_timeout` for writing this response; without one the
    /// connection's server's applies.
    pub fn set_send_timeout(&mut self, timeout: std::time::Duration) {
        self.send_ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .min(NO_SEND_TIMEOUT - 1);
    }

    pub fn send_timeout(&self) -> Option<std::time::Duration> {
        (self.send_ms != NO_SEND_TIMEOUT)
            .then(|| std::time::Duration::from_millis(u64::from(self.send_ms)))
    }

    pub fn set_record(&mut self, record: Option<Box<Record>>) {
        self.record = record;
    }

    /// The connection wrote the response head, `bytes` long.
    pub fn head_sent(&mut self, bytes: u64) {
        self.head = u32::try_from(bytes).unwrap_or(u32::MAX);
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => {
                let polled = body.poll_data(cx);
                // The connection is free as soon as the last piece is read.
                this.release_idle();
                polled.map(|piece| piece.map(|r| r.map(Frame::data)))
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
            Kind::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(b) => b
                .exact_len()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(self.sent, u64::from(self.head));
        }
    }
}
