//! The client side of HTTP/1.x: our own connection loop on `httparse`,
//! with `http` types at the edges (the handler gets a
//! `Request<ClientBody>` and answers a `Response<RespBody>`).
//!
//! Why not hyper's server: it keeps its read and write buffers for the
//! life of a connection, about 15 KB per idle keep-alive connection
//! against nginx's 600 B. Here a connection between requests is a task
//! waiting for readability with no buffer; it takes one from the worker's
//! pool when bytes arrive and gives it back when the request (head, body,
//! response) is done and nothing pipelined is left. The per-request work
//! runs in a boxed future, so the idle task stays small too.
//!
//! - `pool`: the per-worker buffer pool (the upstream client's too)
//! - `io`: reads and writes on a shared `&TcpStream` (or `&TlsIo`: the
//!   loop is generic over [`Io`], built once per transport), and the read
//!   buffer (which fills from any `AsyncRead` for the upstream client)
//! - `parse`: the head (httparse) into `http` types, body framing rules
//! - `decode`: Content-Length and chunked bodies from a read buffer
//!   (request bodies here, response bodies in the upstream client)
//! - `body`: the request body the handler streams upstream
//! - `write`: response encoding
//! - `idle`: the worker's idle connections, counted and woken after a
//!   reload or a stop (a thread-local list of wakers)

pub mod body;
pub(crate) mod decode;
pub mod explain;
pub mod idle;
pub(crate) mod io;
pub mod parse;
pub(crate) mod pool;
mod write;
pub(crate) use write::date_value;
pub use write::{spelled, LimitRate, Spellings};

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{Method, Response, Version};
use tokio::time::Instant;

use crate::clock;
use crate::http::access;
use crate::http::body::RespBody;
use crate::http::response::{error_page, error_page_with};
use crate::http::stats;
use crate::http::timer;
pub use body::ClientBody;
use body::{Pump, Step};
pub use io::Io;
use io::ReadBuf;
pub use parse::Limits;
pub use parse::Refusal;

/// What a connection asks of the server.
pub trait Service: Sync {
    /// Answers one request: its head, which the busy period holds (a
    /// head is a few hundred bytes, copied with each move), the head's
    /// bytes (`parse::Head::raw`, which says how they are laid out), the
    /// rules header lines were dropped by if any were
    /// (`parse::Head::dropped`), and its body; the answer
    /// goes into `answer` (a few hundred bytes: not moved out through the
    /// future's output).
    /// The future lives inside the busy period's (one allocation per
    /// request, not two).
    fn call<'a>(
        &'a self,
        parts: &'a mut Parts,
        raw: &'a [u8],
        dropped: Option<crate::http::head::HeaderNames>,
        body: ClientBody,
        answer: &'a mut Option<Answer>,
    ) -> impl Future<Output = ()> + Send + 'a;
    /// A head refused before any handler ran (`head`: its bytes, or all
    /// that came of it): logged as nginx logs it ([`explain`]), and the
    /// access log record for its error page, if the address's default
    /// server has an access log.
    fn refused(
        &self,
        head: &[u8],
        refusal: Refusal,
        limits: Limits,
    ) -> Option<Box<crate::http::access::Record>>;
    /// After a reload: whether the connection may carry on (its listening
    /// address is still configured).
    fn repin(&self) -> bool;
    /// A graceful stop began: idle connections close, busy ones after
    /// their response. Idle connections look after
    /// [`idle::wake_all`] (a reload or a stop) and [`idle::ask_to_close`].
    fn quitting(&self) -> bool;
}

/// A response, and its `send_timeout` (its location's; without one the
/// server's applies). Beside the response rather than in its extensions:
/// those are a map allocated per request.
pub type Answer = (Response<RespBody>, Option<Duration>);

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A connection's settings: the default server's of its address, as
/// nginx reads a head before it knows the virtual server. Milliseconds in
/// `u32` (4 bytes rather than a `Duration`'s 16 in every idle task).
pub struct Settings {
    /// `keepalive_timeout`; zero disables keep-alive.
    keepalive_ms: u32,
    /// `client_header_timeout`
    header_ms: u32,
    /// `send_timeout`, for answers no location gave (refusals).
    send_ms: u32,
    /// `large_client_header_buffers`: the longest line and head.
    line_max: u32,
    head_max: u32,
    /// `underscores_in_headers`, `ignore_invalid_headers`.
    names: crate::http::head::HeaderNames,
}

impl Settings {
    pub fn new(keepalive: Duration, header: Duration, send: Duration, limits: Limits) -> Settings {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Settings {
            keepalive_ms: millis(keepalive),
            header_ms: millis(header),
            send_ms: millis(send),
            line_max: clamp(limits.line),
            head_max: clamp(limits.head),
            names: limits.names,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            line: self.line_max as usize,
            head: self.head_max as usize,
            names: self.names,
        }
    }

    fn keepalive(&self) -> Duration {
        Duration::from_millis(u64::from(self.keepalive_ms))
    }

    /// `client_header_timeout`: how long a request head may take to
    /// arrive; past it nginx closes without an answer.
    fn head_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.header_ms))
    }

    fn send_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.send_ms))
    }
}

/// nginx's `lingering_timeout`: after an answer that left request bytes
/// unread, how long to read and drop them before closing, so the client
/// gets the answer rather than a reset.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_MAX: usize = 1 << 20;

/// Serves one client connection until it closes, times out, or a graceful
/// stop or reload ends it.
///
/// An `async move` block rather than an `async fn`, with the idle wait
/// written inline: a function's arguments would be stored twice in its
/// future (as arguments, then as the locals they are moved to), and this
/// future is what every idle connection holds. Idle, it is the stream,
/// the service, one timer and a slot in the worker's [`idle`] list;
/// readiness comes through `poll_read_ready` (no waiter node).
// Not `async fn` on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub fn serve<I: Io + Send, S: Service + Send>(
    io: I,
    svc: S,
    settings: Settings,
) -> impl Future<Output = ()> + Send {
    async move {
        // nginx's client_header_timeout runs from accept to the end of the
        // first head, however the bytes come; later heads get it from
        // their first byte (the keep-alive wait comes before).
        let mut head_deadline = Some(clock::tokio_now() + settings.head_timeout());
        // The connection's one timer between requests, left where it is
        // while the connection keeps busy (see [`timer`]): it may fire
        // for nothing once per `keepalive_timeout`, and moves on then.
        let mut sleep = pin!(tokio::time::sleep_until(
            head_deadline.unwrap_or_else(|| clock::tokio_now() + settings.keepalive())
        ));
        let mut polled = false;
        loop {
            // Idle: no buffer, only a readiness wait.
            let mut wait = IdleWait {
                io: &io,
                sleep: sleep.as_mut(),
                polled: &mut polled,
                due: head_deadline.unwrap_or_else(|| clock::tokio_now() + settings.keepalive()),
                waiting: idle::Waiting::idle(),
            };
            // Only a connection that was idle when the worker ran short
            // closes for it (not one accepted since).
            let mut woken = false;
            let readable = loop {
                // A stop closes an idle connection now, and so does a
                // reload that removed its listening address, or a worker
                // short of connections. Read in the same poll as the wait
                // registers: what changes them runs on this thread, after.
                if svc.quitting() || !svc.repin() || (woken && idle::take_close()) {
                    return;
                }
                if let Some(readable) = (&mut wait).await {
                    break readable;
                }
                woken = true;
            };
            drop(wait);
            if !readable {
                return;
            }
            match boxed(|| busy(&io, &svc, &settings, head_deadline)).await {
                End::Idle => head_deadline = None,
                End::Nothing => {}
                End::Close => return,
                End::Linger => {
                    Box::pin(linger(&io)).await;
                    return;
                }
            }
        }
    }
}

/// An idle connection's wait: `Some(true)` once its next bytes are there,
/// `Some(false)` at its deadline (or on an error), `None` when the
/// worker's idle connections are woken (a stop, a reload, a worker short
/// of connections). A struct and not a closure: a closure would hold a
/// reference to each of these, where this holds the deadline and the
/// idle list's slot themselves, and every idle connection's task holds
/// it (24 bytes less, which with `Conn` 8 bytes smaller keep the task in
/// a 512-byte allocation: `Client`'s note in `server.rs`).
struct IdleWait<'a, I> {
    io: &'a I,
    sleep: Pin<&'a mut tokio::time::Sleep>,
    polled: &'a mut bool,
    due: tokio::time::Instant,
    waiting: idle::Waiting,
}

impl<I: Io> Future for IdleWait<'_, I> {
    type Output = Option<bool>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<bool>> {
        let this = self.get_mut();
        if let Poll::Ready(r) = this.io.poll_read_ready(cx) {
            return Poll::Ready(Some(r.is_ok()));
        }
        if timer::passed(this.sleep.as_mut(), this.due, this.polled, cx) {
            return Poll::Ready(Some(false));
        }
        if Pin::new(&mut this.waiting).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// `Box::pin(make())` without the copy: a future is as large as its
/// largest state (kilobytes here) and `Box::pin` builds it on the stack
/// then copies all of it into the box; written into the allocation, only
/// its arguments are stored. (It works for `busy`, whose arguments are
/// references, as the handler's are: the head is borrowed from `busy`.)
#[inline(always)]
pub(crate) fn boxed<F>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// The head's length as it came, without the empty lines before it
/// (nginx's count for `$request_length`). Not `raw`'s: that may be the
/// head without the lines nginx ignored, followed by all of them.
fn head_length(head: &parse::Head) -> usize {
    let blank = head
        .raw
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    head.len.saturating_sub(blank)
}

/// How a busy period ended.
enum End {
    /// Requests answered, nothing buffered: wait for the next.
    Idle,
    /// Readiness with nothing to read: wait again, as before.
    Nothing,
    Close,
    /// Close after reading and dropping what the client still sends.
    Linger,
}

/// Answers the requests that are there (several when pipelined), holding
/// a pooled buffer until none is left.
///
/// `first_deadline`: when the first head must be in (the connection's
/// first request); later ones get `client_header_timeout` from their
/// first byte.
async fn busy<I: Io, S: Service>(
    io: &I,
    svc: &S,
    settings: &Settings,
    first_deadline: Option<Instant>,
) -> End {
    let limits = settings.limits();
    let mut first_deadline = first_deadline;
    let mut buf = ReadBuf::new();
    // Readiness can be reported with nothing to read: then back to idle,
    // without holding the buffer.
    match buf.try_fill(io, limits.head) {
        Ok(0) => return End::Close,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return End::Nothing,
        Err(_) => return End::Close,
    }
    // `stub_status`: reading from the first byte, writing once the head
    // is in; dropped on every way out.
    let mut phase = stats::Phase::reading();
    // `$pipe`: the request was in the buffer when the one before ended.
    let mut pipelined = false;
    loop {
        // The head.
        let deadline = first_deadline
            .take()
            .unwrap_or_else(|| clock::tokio_now() + settings.head_timeout());
        let mut parsed = None;
        let head = loop {
            match parse::parse_into(buf.data(), limits, &mut parsed) {
                Ok(true) => match parsed.as_mut() {
                    Some(head) => break head,
                    None => return End::Close,
                },
                Ok(false) => {}
                Err(refusal) => {
                    let record = svc.refused(buf.data(), refusal, limits);
                    return refuse(io, settings, refusal, record).await;
                }
            }
            match buf.fill(io, limits.head, Some(deadline)).await {
                Ok(0) => return End::Close,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                    let refusal = Refusal::HeaderTooLarge;
                    let record = svc.refused(buf.data(), refusal, limits);
                    return refuse(io, settings, refusal, record).await;
                }
                // A timeout closes without an answer, as hyper and nginx
                // do for a head that does not come.
                Err(_) => return End::Close,
            }
        };
        buf.consume(head.len);
        phase.writing();
        let ask_head = head.parts.method == Method::HEAD;
        let http11 = head.parts.version == Version::HTTP_11;
        let keep_alive = head.keep_alive && settings.keepalive_ms != 0;
        let (body, mut pump) = Pump::new(head.framing, head.expect_continue);
        if let Some(p) = &pump {
            if p.precheck(&buf).is_err() {
                // The head is fine: its chunked body's first bytes are not.
                let refusal = Refusal::Bad(parse::Bad::ChunkedBody);
                let mut record = svc.refused(&head.raw, refusal, limits);
                if let Some(r) = record.as_deref_mut() {
                    // The head as it came (`raw` may be without lines
                    // nginx ignored).
                    r.request_length = Some(head_length(head) as u64);
                }
                return refuse(io, settings, refusal, record).await;
            }
        }

        // The handler runs while the body streams to it, and while the
        // client is watched for leaving (nginx's broken-connection check).
        // The handler writes its answer into `answered`, where it stays
        // (an answer is a few hundred bytes, copied with each move).
        let mut answered = None;
        let failed = {
            // Declared first, dropped last: the handler, if unfinished,
            // is dropped at the end of this block with the status its
            // log line shows set, and nothing else runs in between.
            let dropping = access::Dropping::new();
            let answer = pin!(svc.call(
                &mut head.parts,
                &head.raw,
                head.dropped.then_some(limits.names),
                body,
                &mut answered,
            ));
            let failed = drive(answer, &mut None, &mut pump, io, &mut buf, true).await;
            if let Some(step) = failed {
                dropping.set(match step {
                    Step::Invalid | Step::Closed => 400,
                    Step::TimedOut => 408,
                    Step::TooLarge => 413,
                    _ => 499,
                });
            }
            failed
        };
        match failed {
            None => {}
            // The handler's access log guard logged these.
            Some(Step::Invalid) => {
                let refusal = Refusal::Bad(parse::Bad::ChunkedBody);
                return refuse(io, settings, refusal, None).await;
            }
            Some(Step::TooLarge) => return refuse(io, settings, Refusal::TooLarge, None).await,
            Some(_) => return End::Close,
        }
        // Borrowed where it is, written from there.
        let Some((resp, send)) = answered.as_mut() else {
            return End::Close;
        };
        let send = *send;
        // `return 444` and the like: no answer, the connection closes.
        if resp.body().is_close() {
            return End::Close;
        }

        // `$request_length`: the head (not the empty lines before it, as
        // nginx counts) and the body bytes read so far.
        let read = || head_length(head) as u64 + pump.as_ref().map_or(0, |p| p.read_raw());
        resp.body_mut().request_read(read, pipelined);
        // The response, while the body may still stream.
        let unread = pump.as_ref().is_some_and(|p| !p.finished());
        let ask = write::Ask {
            head: ask_head,
            http11,
            keep_alive: keep_alive && !svc.quitting(),
            // nginx's special responses (errors it finalizes with) mark
            // the expectation tested: no `100 Continue` before them.
            interim: unread
                && pump.as_ref().is_some_and(|p| p.continue_pending)
                && resp
                    .extensions()
                    .get::<crate::http::response::Special>()
                    .is_none(),
            send: send.unwrap_or_else(|| settings.send_timeout()),
            request: Some(&head.parts),
        };
        if ask.interim {
            if let Some(p) = &mut pump {
                p.continue_pending = false;
            }
        }
        let written = {
            let written = pin!(write::respond(io, resp, &ask));
            let mut out = None;
            if drive(written, &mut out, &mut pump, io, &mut buf, false)
                .await
                .is_some()
            {
                return End::Close;
            }
            match out {
                Some(written) => written,
                None => return End::Close,
            }
        };
        let keep = match written {
            write::Written::Keep => true,
            write::Written::Close => false,
            write::Written::Upgrade(body) => {
                // What the client sent past its request is the tunnel's
                // now; a request body still coming would be read as
                // tunnel bytes, so such a connection just closes.
                if pump.as_ref().is_some_and(|p| !p.finished()) {
                    return End::Close;
                }
                let early = buf.data().to_vec();
                let send = ask.send;
                drop(buf);
                // The request and the 101's husk are not kept for the
                // tunnel's life (hours, for a WebSocket).
                drop(answered);
                drop(parsed);
                Box::pin(crate::http::tunnel::run(body, io, early, send)).await;
                return End::Close;
            }
        };
        // An answer being stored that the client did not take whole (a
        // HEAD asked as GET, a 304): the rest is read and stored before
        // the connection goes on, as nginx finishes such a request.
        if resp.body().filling() {
            // (Boxed: the loop's future stays its size.)
            Box::pin(resp.body_mut().finish_filling()).await;
        }
        // `mirror`: the next request waits for the mirror subrequests,
        // as nginx finalizes a request after them. (Most answers carry
        // no extensions: one test.)
        if !resp.extensions().is_empty() {
            if let Some(mirrored) = resp
                .extensions_mut()
                .remove::<crate::http::mirror::Mirrored>()
            {
                mirrored.wait().await;
            }
        }
        let unread = pump.as_ref().is_some_and(|p| !p.finished());
        if !keep {
            return if unread || !buf.is_empty() {
                End::Linger
            } else {
                End::Close
            };
        }
        // A body nobody started reading (a `return`, an error before the
        // upstream) is read and dropped, to keep the connection, as nginx
        // discards it. One abandoned halfway (the upstream failed while
        // taking it) is not waited for: the connection closes.
        if pump.as_ref().is_some_and(|p| unread && p.started()) {
            return End::Close;
        }
        if let Some(p) = pump.as_mut().filter(|_| unread) {
            let deadline = Instant::now() + settings.head_timeout();
            if !p.discard(io, &mut buf, deadline).await {
                return End::Close;
            }
        }
        if svc.quitting() {
            return End::Close;
        }
        if buf.is_empty() {
            return End::Idle;
        }
        // Pipelined: the next request is already here.
        phase.next();
        pipelined = true;
    }
}

thread_local! {
    /// Set by the proxy as it starts asking the upstream under
    /// `proxy_ignore_client_abort on`; [`drive`] takes it right after the
    /// poll of the request that set it (nothing else runs on the thread
    /// in between), and stops watching for the client to leave.
    static IGNORE_CLIENT_ABORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `proxy_ignore_client_abort on`: the request being polled over HTTP/1
/// goes on if its client leaves, as nginx's does once it asks the
/// upstream (a `limit_req` delay before that still ends with 499).
pub fn ignore_client_abort() {
    IGNORE_CLIENT_ABORT.set(true);
}

/// Polls the request's `fut` once, and takes what it said of its client
/// leaving ([`ignore_client_abort`]).
fn poll_request<F: Future>(
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
    watch: &mut bool,
) -> Poll<F::Output> {
    // (Set by this poll only: a task elsewhere cannot leave it.)
    IGNORE_CLIENT_ABORT.set(false);
    let polled = fut.poll(cx);
    *watch &= !IGNORE_CLIENT_ABORT.replace(false);
    polled
}

/// Runs `fut` while handing the request body to it, until `fut` is done
/// and its output is in `out` (written there, not returned: an answer is
/// a few hundred bytes, copied with each move). Fails when the body does
/// (the step that failed): the answer is not wanted any more.
///
/// With `watch`, once no body is left to read: fails with
/// [`Step::Gone`] if the client closes before `fut` is done, as nginx
/// (`proxy_ignore_client_abort off`) ends a request whose client left,
/// and logs 499; until `fut` says otherwise ([`ignore_client_abort`]).
async fn drive<F: Future, I: Io>(
    mut fut: Pin<&mut F>,
    out: &mut Option<F::Output>,
    pump: &mut Option<Pump>,
    io: &I,
    buf: &mut ReadBuf,
    mut watch: bool,
) -> Option<Step> {
    let mut active = pump.as_ref().is_some_and(|p| !p.finished());
    loop {
        let Some(p) = pump.as_mut().filter(|_| active) else {
            return std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = poll_request(fut.as_mut(), cx, &mut watch) {
                    *out = Some(done);
                    return Poll::Ready(None);
                }
                if watch && io::poll_closed(io, cx, &mut watch) {
                    return Poll::Ready(Some(Step::Gone));
                }
                Poll::Pending
            })
            .await;
        };
        // `fut` first (as a biased select), then one step of the body,
        // whose future lives until it is done or `fut` is.
        let step = {
            let mut step = pin!(p.step(io, buf));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = poll_request(fut.as_mut(), cx, &mut watch) {
                    *out = Some(done);
                    return Poll::Ready(None);
                }
                step.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match step {
            None => return None,
            Some(Step::Delivered) => {}
            Some(Step::Finished | Step::Gone) => active = false,
            Some(step @ (Step::Invalid | Step::Closed | Step::TimedOut | Step::TooLarge)) => {
                return Some(step)
            }
        }
    }
}

/// Answers a request nginx refuses while reading it, then closes; the
/// access log line, if any, is written with the answer.
async fn refuse<I: Io>(
    io: &I,
    settings: &Settings,
    refusal: Refusal,
    record: Option<Box<crate::http::access::Record>>,
) -> End {
    let mut resp = match refusal {
        Refusal::HeaderTooLarge => error_page_with(400, "Request Header Or Cookie Too Large"),
        r => error_page(r.status()),
    };
    if let Some(mut record) = record {
        record.status = resp.status().as_u16();
        resp.body_mut().set_record(Some(record));
    }
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    let ask = write::Ask {
        head: false,
        http11: true,
        keep_alive: false,
        interim: false,
        send: settings.send_timeout(),
        request: None,
    };
    write::respond(io, &mut resp, &ask).await;
    End::Linger
}

/// Closes the sending side, then reads and drops what the client still
/// sends until it closes, [`LINGER`] passes or [`LINGER_MAX`] bytes came.
async fn linger<I: Io>(io: &I) {
    io.shutdown_write();
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 512];
    let mut left = LINGER_MAX;
    loop {
        match io.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) if n >= left => return,
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if io::readable(io, Some(deadline)).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
