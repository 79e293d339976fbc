//! The client's request body as an `http_body::Body`, fed by the
//! connection task.
//!
//! The connection task owns the socket and the read buffer; the body is
//! polled elsewhere (by the request's handler, which writes it to the
//! upstream). They meet in a one-slot shared state, per request: the
//! connection reads and decodes (Content-Length or chunked) only when the
//! body has been polled and its slot is empty, so a slow upstream slows
//! the client down instead of filling memory, and the first poll is when
//! `100 Continue` goes out, as nginx sends it when it starts reading.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::http::h1::decode::{Chunk, Decoder, Invalid};
use crate::http::h1::io::{self, Io, ReadBuf};
use crate::http::h1::parse::Framing;
use crate::http::h2::H2Body;

/// Why a body ended early: a client's, or an answer's on its way out.
#[derive(Debug, Clone, Copy)]
pub struct BodyError {
    pub why: &'static str,
    /// An upstream's body broke off, and when: the proxy logs nginx's
    /// line for it when the answer ends ([`crate::http::upstream_log`]).
    /// Other failures (`None`) are logged where they happen, or not at
    /// all.
    pub upstream: Option<crate::http::upstream_log::When>,
}

impl BodyError {
    pub const fn new(why: &'static str) -> BodyError {
        BodyError {
            why,
            upstream: None,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.why)
    }
}

impl std::error::Error for BodyError {}

#[derive(Default)]
struct State {
    /// The next piece, waiting for the body's poll.
    chunk: Option<Bytes>,
    end: bool,
    failed: Option<BodyError>,
    /// The body was polled at least once.
    polled: bool,
    /// The body was dropped.
    gone: bool,
    consumer: Option<Waker>,
    producer: Option<Waker>,
    /// The location's limits, set by the handler once it knows the
    /// location (before it polls the body): `client_max_body_size` (0:
    /// none) and `client_body_timeout`.
    limits: Option<(u64, Duration)>,
}

struct Shared(Mutex<State>);

impl Shared {
    /// A mutex per request, between two parties on the same worker:
    /// uncontended. A poisoned one still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The request body handed to the request's handler.
pub struct ClientBody {
    shared: Option<Arc<Shared>>,
    /// Bytes still to come for a Content-Length body.
    remaining: Option<u64>,
    done: bool,
    /// The body of a request that came over HTTP/2 (`http::h2`) instead:
    /// boxed, so an HTTP/1 body stays as small as it was.
    h2: Option<Box<H2Body>>,
}

impl ClientBody {
    pub fn empty() -> ClientBody {
        ClientBody {
            shared: None,
            remaining: Some(0),
            done: true,
            h2: None,
        }
    }

    /// A body read whole before its handler runs (`mirror_request_body`):
    /// one piece, then the end, with its exact length.
    pub fn full(bytes: Bytes) -> ClientBody {
        let remaining = Some(bytes.len() as u64);
        let state = State {
            chunk: (!bytes.is_empty()).then_some(bytes),
            end: true,
            ..State::default()
        };
        ClientBody {
            shared: Some(Arc::new(Shared(Mutex::new(state)))),
            remaining,
            done: false,
            h2: None,
        }
    }

    /// An HTTP/2 stream's body.
    pub fn h2(body: Box<H2Body>) -> ClientBody {
        ClientBody {
            shared: None,
            remaining: None,
            done: false,
            h2: Some(body),
        }
    }
}

impl ClientBody {
    /// The location's `client_max_body_size` (0: no limit) and
    /// `client_body_timeout`, for the connection reading this body.
    pub fn set_limits(&mut self, max_body: u64, timeout: Duration) {
        if let Some(shared) = &self.shared {
            shared.lock().limits = Some((max_body, timeout));
        } else if let Some(h2) = &mut self.h2 {
            h2.set_limits(max_body, timeout);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(shared) = &this.shared else {
            return match &mut this.h2 {
                Some(h2) => h2.poll_frame(cx),
                None => Poll::Ready(None),
            };
        };
        if this.done {
            return Poll::Ready(None);
        }
        let mut st = shared.lock();
        st.polled = true;
        if let Some(data) = st.chunk.take() {
            if let Some(r) = &mut this.remaining {
                *r = r.saturating_sub(data.len() as u64);
            }
            wake(&mut st.producer);
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(e) = st.failed {
            this.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        if st.end {
            this.done = true;
            return Poll::Ready(None);
        }
        park(&mut st.consumer, cx);
        wake(&mut st.producer);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        if let Some(h2) = &self.h2 {
            return h2.is_end_stream();
        }
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(h2) = &self.h2 {
            return h2.size_hint();
        }
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let mut st = shared.lock();
            st.gone = true;
            st.consumer = None;
            wake(&mut st.producer);
        }
    }
}

/// What one [`Pump::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A piece was handed to the body.
    Delivered,
    /// The whole body was read.
    Finished,
    /// The body was dropped before its end.
    Gone,
    /// The client sent a body that cannot be read (bad chunk): 400.
    Invalid,
    /// The client closed, or the socket failed: the connection closes
    /// without answer (logged as 400, as nginx).
    Closed,
    /// `client_body_timeout` passed between two reads: the same, logged
    /// as 408.
    TimedOut,
    /// A chunked body past `client_max_body_size`: 413.
    TooLarge,
}

/// Reads below this go through the read buffer; above, straight into a
/// fresh buffer handed over whole (no copy for large bodies).
const DIRECT_MIN: u64 = 16 * 1024;
const DIRECT_MAX: u64 = 64 * 1024;

/// nginx's defaults, for a body whose handler set no limits.
const DEFAULT_LIMITS: (u64, Duration) = (1024 * 1024, Duration::from_secs(60));

/// The connection's side of a request body.
pub struct Pump {
    shared: Arc<Shared>,
    decoder: Decoder,
    /// Body bytes handed over so far.
    received: u64,
    /// Body bytes read so far as they came, chunk framing included
    /// (`$request_length`).
    raw: u64,
    /// `Expect: 100-continue` not answered yet.
    pub continue_pending: bool,
}

impl Pump {
    /// The body for a request framed as `framing`, and its pump (`None`
    /// for a request without body).
    pub fn new(framing: Framing, expect_continue: bool) -> (ClientBody, Option<Pump>) {
        let (decoder, remaining) = match framing {
            Framing::None => return (ClientBody::empty(), None),
            Framing::Length(n) => (Decoder::length(n), Some(n)),
            Framing::Chunked => (Decoder::chunked(), None),
        };
        let shared = Arc::new(Shared(Mutex::new(State::default())));
        let body = ClientBody {
            shared: Some(shared.clone()),
            remaining,
            done: false,
            h2: None,
        };
        let pump = Pump {
            shared,
            decoder,
            received: 0,
            raw: 0,
            continue_pending: expect_continue,
        };
        (body, Some(pump))
    }

    /// Body bytes read so far as they came on the wire (chunk sizes
    /// and line ends included, as nginx counts them).
    pub fn read_raw(&self) -> u64 {
        self.raw
    }

    /// Whether the body was polled: someone started reading it.
    pub fn started(&self) -> bool {
        self.shared.lock().polled
    }

    pub fn finished(&self) -> bool {
        self.decoder.is_done()
    }

    /// Checks what is already buffered for a body nginx would refuse at
    /// once (a bad first chunk size), before the request goes anywhere.
    pub fn precheck(&self, buf: &ReadBuf) -> Result<(), BodyError> {
        if self.decoder == Decoder::chunked() {
            if let Err(httparse::InvalidChunkSize) = httparse::parse_chunk_size(buf.data()) {
                return Err(BodyError::new("client sent invalid chunked body"));
            }
        }
        Ok(())
    }

    /// The body will not be read by anyone: it fails for whoever still
    /// holds it, and the connection reads the rest to discard it.
    pub fn abandon(&mut self) {
        let mut st = self.shared.lock();
        if !st.end && st.failed.is_none() {
            st.failed = Some(BodyError::new("request body abandoned"));
        }
        st.chunk = None;
        wake(&mut st.consumer);
    }

    fn deliver(&mut self, piece: Option<Bytes>) {
        let mut st = self.shared.lock();
        match piece {
            Some(data) => {
                self.received += data.len() as u64;
                st.chunk = Some(data)
            }
            None => st.end = true,
        }
        wake(&mut st.consumer);
    }

    fn fail(&self, e: BodyError) {
        let mut st = self.shared.lock();
        st.failed = Some(e);
        wake(&mut st.consumer);
    }

    /// Waits until the body wants its next piece (polled, slot empty),
    /// then reads and hands over one. Cancel-safe: the state changes only
    /// after the waits.
    pub async fn step<I: Io>(&mut self, io: &I, buf: &mut ReadBuf) -> Step {
        if self.finished() {
            return Step::Finished;
        }
        let gone = std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.gone {
                Poll::Ready(true)
            } else if st.polled && st.chunk.is_none() {
                Poll::Ready(false)
            } else {
                park(&mut st.producer, cx);
                Poll::Pending
            }
        })
        .await;
        if gone {
            return Step::Gone;
        }
        let (max_body, timeout) = self.shared.lock().limits.unwrap_or(DEFAULT_LIMITS);
        if self.continue_pending {
            if io::write_all(io, b"HTTP/1.1 100 Continue\r\n\r\n", timeout)
                .await
                .is_err()
            {
                return Step::Closed;
            }
            self.continue_pending = false;
        }
        self.next(io, buf, max_body, timeout).await
    }

    /// Whether the body, with the chunk being read in full, is past
    /// `max_body` (nginx checks each chunk's size as it comes).
    fn over(&self, max_body: u64, piece: u64) -> bool {
        let pending = match self.decoder {
            Decoder::Chunked(Chunk::Data(n)) => n,
            _ => 0,
        };
        max_body != 0 && self.received.saturating_add(piece).saturating_add(pending) > max_body
    }

    /// Reads the rest of the body and drops it (after the response, to
    /// keep the connection), each read waiting until `deadline`.
    pub async fn discard<I: Io>(
        &mut self,
        io: &I,
        buf: &mut ReadBuf,
        deadline: tokio::time::Instant,
    ) -> bool {
        self.abandon();
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(_)) => continue,
                Ok(None) if self.finished() => return true,
                Ok(None) => {}
                Err(_) => return false,
            }
            match buf
                .fill(io, crate::http::h1::pool::SIZE, Some(deadline))
                .await
            {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    /// One piece of the body: decoded from the buffer, read into it, or
    /// for long runs of data read straight into a buffer of its own.
    async fn next<I: Io>(
        &mut self,
        io: &I,
        buf: &mut ReadBuf,
        max_body: u64,
        timeout: Duration,
    ) -> Step {
        loop {
            let before = buf.data().len();
            let decoded = self.decoder.decode(buf);
            self.raw += (before - buf.data().len()) as u64;
            // A Content-Length body past the limit was refused before the
            // handler read it; a chunked one is cut when it gets there.
            let piece = match &decoded {
                Ok(Some(p)) => p.len() as u64,
                _ => 0,
            };
            if matches!(self.decoder, Decoder::Chunked(_)) && self.over(max_body, piece) {
                self.fail(BodyError::new(
                    "client intended to send too large chunked body",
                ));
                return Step::TooLarge;
            }
            match decoded {
                Ok(Some(piece)) => {
                    self.deliver(Some(piece));
                    if self.finished() {
                        self.deliver(None);
                    }
                    return Step::Delivered;
                }
                Ok(None) if self.finished() => {
                    self.deliver(None);
                    return Step::Finished;
                }
                Ok(None) => {}
                Err(Invalid) => {
                    self.fail(BodyError::new("client sent invalid chunked body"));
                    return Step::Invalid;
                }
            }
            let run = self.decoder.raw_run();
            let read = if buf.is_empty() && run >= DIRECT_MIN {
                let mut direct = BytesMut::with_capacity(run.min(DIRECT_MAX) as usize);
                loop {
                    match io.try_read_buf(&mut direct) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            let deadline = tokio::time::Instant::now() + timeout;
                            if io::readable(io, Some(deadline)).await.is_err() {
                                break Err(e);
                            }
                        }
                        r => break r,
                    }
                }
                .map(|n| {
                    if n > 0 {
                        self.raw += n as u64;
                        self.decoder.took_raw(n as u64);
                        self.deliver(Some(direct.freeze()));
                        if self.finished() {
                            self.deliver(None);
                        }
                    }
                    (n, true)
                })
            } else {
                let deadline = tokio::time::Instant::now() + timeout;
                buf.fill(io, crate::http::h1::pool::SIZE, Some(deadline))
                    .await
                    .map(|n| (n, false))
            };
            match read {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.fail(BodyError::new("client timed out"));
                    return Step::TimedOut;
                }
                Ok((0, _)) | Err(_) => {
                    self.fail(BodyError::new("client prematurely closed connection"));
                    return Step::Closed;
                }
                Ok((_, true)) => return Step::Delivered,
                Ok((_, false)) => {}
            }
        }
    }
}
