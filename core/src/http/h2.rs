//! HTTP/2 to clients, on hyper's server (`http2 on`, `listen ... http2`):
//! over TLS when ALPN chose `h2`, or cleartext when a connection opens
//! with the client preface (h2c by prior knowledge). Each stream's request
//! is turned into what the HTTP/1 loop hands the handler (origin-form
//! target, `Host` from `:authority`, cookies joined), so routing,
//! proxying (to HTTP/1.x upstreams) and logging are the same code.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use crate::http::body::RespBody;
use crate::http::gzip::VaryAdded;
use crate::http::h1::body::BodyError;
use crate::http::h1::ClientBody;
use crate::http::head::HeaderNames;
use crate::http::response::{
    error_page, ErrorPage, Http1Close, ListedLastModified, MadeAbsolute, OwnLocation,
};
use crate::http::tls::Https;
use crate::http::upstream_h1::{lines_of, Passed};

/// The client preface of HTTP/2 (RFC 9113, 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// nginx's `http2_max_concurrent_streams` default.
const MAX_STREAMS: u32 = 128;

/// hyper's HTTP/2 server, with nginx's stream limit.
pub fn builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.max_concurrent_streams(MAX_STREAMS);
    b
}

/// What a connection's task and its streams share.
#[derive(Default)]
pub struct Streams {
    /// Streams whose response is not done.
    active: AtomicUsize,
    /// Streams started so far.
    started: AtomicU64,
    /// A response asked to close the connection (`keepalive_requests`
    /// reached): the connection sends GOAWAY and ends after the streams
    /// in flight.
    pub goaway: Notify,
}

impl Streams {
    pub fn start(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// A stream counted active until its response body is done.
pub struct Active(Arc<Streams>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a stream's request body ended, when not well.
#[derive(Default)]
pub struct Outcome(AtomicU8);

const TOO_LARGE: u8 = 1;
const TIMED_OUT: u8 = 2;

/// An HTTP/2 request's body with the location's limits:
/// `client_max_body_size` (413) and `client_body_timeout` (408).
pub struct H2Body {
    /// `None` once dropped (see `Drop`).
    inner: Option<Incoming>,
    max: u64,
    timeout: Duration,
    received: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    outcome: Arc<Outcome>,
}

impl H2Body {
    pub fn set_limits(&mut self, max_body: u64, timeout: Duration) {
        self.max = max_body;
        self.timeout = timeout;
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(inner) = &mut self.inner else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = &mut self.timer {
                        t.as_mut().reset(tokio::time::Instant::now() + self.timeout);
                    }
                    let Some(data) = frame.data_ref() else {
                        // Trailers do not go to an HTTP/1 upstream.
                        continue;
                    };
                    self.received += data.len() as u64;
                    if self.max != 0 && self.received > self.max {
                        self.outcome.0.store(TOO_LARGE, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::new(
                            "client intended to send too large body",
                        ))));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(_))) => {
                    return Poll::Ready(Some(Err(BodyError::new(
                        "client prematurely closed stream",
                    ))))
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let timeout = self.timeout;
                    let timer = self
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
                        self.outcome.0.store(TIMED_OUT, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::new("client timed out"))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    pub fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// How long, and how much of, a body nobody read is taken and dropped.
const DISCARD_TIME: Duration = Duration::from_secs(5);
const DISCARD_MAX: u64 = 1 << 20;

impl Drop for H2Body {
    /// A body left unread (a `return`, a 413, an upstream that failed) is
    /// read and dropped, as nginx discards it: a stream whose request side
    /// is still open when everything else lets go of it is reset, and the
    /// reset can overtake the end of its response.
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(discard(body));
        }
    }
}

async fn discard(mut body: Incoming) {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + DISCARD_TIME;
    let mut read = 0u64;
    while read < DISCARD_MAX {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

use std::future::Future as _;

/// A stream's request as the handler takes it, where its body reports
/// how it ended, and the headers dropped for their names
/// (`ignore_invalid_headers`, which nginx logs).
pub fn request(
    req: Request<Incoming>,
    https: Option<Arc<crate::http::tls::Session>>,
    names: HeaderNames,
) -> (Request<ClientBody>, Arc<Outcome>, Vec<HeaderName>) {
    let (mut parts, body) = req.into_parts();
    // Names with capitals or bytes outside the token set never get here:
    // the h2 crate fails the connection's header decoding (nginx refuses
    // a stream for capitals, ignores `x@y`: README).
    let mut ignored = Vec::new();
    for name in parts.headers.keys() {
        if names.drops(name.as_str().as_bytes()) {
            ignored.push(name.clone());
        }
    }
    for name in &ignored {
        parts.headers.remove(name);
    }
    // `:authority` is the Host, as nginx makes a Host header of it.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    // The target in origin form, as an HTTP/1 request line has it.
    if let Some(pq) = parts.uri.path_and_query() {
        parts.uri = Uri::from(pq.clone());
    }
    // HTTP/2 may split the cookies; HTTP/1 upstreams get one line
    // (RFC 9113, 8.2.3), as nginx sends them.
    let mut cookies = parts.headers.get_all(header::COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for c in parts.headers.get_all(header::COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(c.as_bytes());
        }
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            parts.headers.insert(header::COOKIE, v);
        }
    }
    if let Some(session) = https {
        parts.extensions.insert(Https(session));
    }
    let outcome = Arc::new(Outcome::default());
    let body = H2Body {
        inner: Some(body),
        max: 0,
        timeout: Duration::from_secs(60),
        received: 0,
        timer: None,
        outcome: outcome.clone(),
    };
    (
        Request::from_parts(parts, ClientBody::h2(Box::new(body))),
        outcome,
        ignored,
    )
}

/// No answer for a stream (`return 444`): hyper resets it
/// (`INTERNAL_ERROR`), as nginx does when it closes a stream's request
/// without one.
#[derive(Debug)]
pub struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request closed without an answer")
    }
}

impl std::error::Error for NoAnswer {}

/// The handler's response as the stream sends it: connection headers
/// out (a `close` becomes GOAWAY), or the refusal the body's end called
/// for; no body to a HEAD (`head`); [`NoAnswer`] for a response that is
/// none (its log line is written as it is dropped).
pub fn response(
    resp: Response<RespBody>,
    parts: http::request::Parts,
    outcome: &Outcome,
    active: Active,
    streams: &Streams,
) -> Result<Response<H2Resp>, NoAnswer> {
    let refusal = match outcome.0.load(Ordering::Relaxed) {
        TOO_LARGE => 413,
        TIMED_OUT => 408,
        _ => 0,
    };
    let mut resp = if refusal == 0 {
        resp
    } else {
        // The answer the handler had is not sent; its log line tells
        // the refusal.
        let mut resp = resp;
        let record = resp.body_mut().take_record();
        let mut refused = error_page(refusal);
        if let Some(mut record) = record {
            record.status = refusal;
            refused.body_mut().set_record(Some(record));
        }
        refused
    };
    if resp.body().is_close() {
        return Err(NoAnswer);
    }
    if parts.method == http::Method::HEAD {
        RespBody::head_only(&mut resp);
    }
    // hyper polls no body that is over already (`$request_completion`).
    if http_body::Body::is_end_stream(resp.body()) {
        resp.body_mut().complete();
    }
    // The map, which is what hyper sends, made again in nginx's order with
    // an upstream's lines in it.
    // (The request is kept where the body may break off: its line names
    // it.)
    let passed = resp.body_mut().take_passed();
    let close = resp.headers().get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&c| c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let gzip_vary = resp.extensions().get::<VaryAdded>().is_some();
    // The length hyper would add at the end, where nginx puts it.
    let length = if http_body::Body::is_end_stream(resp.body()) {
        None
    } else {
        http_body::Body::size_hint(resp.body()).exact()
    };
    let map = std::mem::take(resp.headers_mut());
    let order = Order {
        passed_server: crate::http::response::passed_server(&resp, passed.as_deref()),
        passed_date: crate::http::response::passed_date(&resp, passed.as_deref()),
        own_location: resp.extensions().get::<MadeAbsolute>().is_some()
            || resp.extensions().get::<OwnLocation>().is_some(),
        listed_modified: resp.extensions().get::<ListedLastModified>().is_some(),
        gzip_vary,
        length,
    };
    *resp.headers_mut() = in_nginx_order(map, passed.as_deref(), order);
    let mut request = None;
    if let Some(mut passed) = passed {
        if passed.origin.is_some() {
            passed.lines = Vec::new();
            resp.body_mut().put_passed(passed);
            request = Some(Box::new(parts));
        }
    }
    // An error page's close is HTTP/1's: nginx keeps an HTTP/2
    // connection after any stream's answer.
    if close
        && resp.extensions().get::<ErrorPage>().is_none()
        && resp.extensions().get::<Http1Close>().is_none()
    {
        streams.goaway.notify_one();
    }
    // `limit_rate`: the stream's DATA at nginx's pace.
    let pace = resp
        .extensions()
        .get::<crate::http::h1::LimitRate>()
        .filter(|l| l.rate > 0)
        .map(|&limit| Box::new(Pace::new(limit)));
    Ok(resp.map(|body| H2Resp {
        body,
        pace,
        request,
        _active: active,
    }))
}

/// The answer's lines in the order of nginx's HTTP/2 header filter:
/// server and date (ours, unless the upstream's are passed on; an
/// `add_header Server` goes among the others), content-type,
/// content-length, last-modified (but one `add_header` set) and the
/// answer's own location (nginx's `headers_out.location`: waypost's, or
/// the upstream's a `proxy_redirect` rewrote, absolute or not),
/// `gzip_vary`'s vary, then the others in order, the upstream's before
/// the map's; without the lines HTTP/2 has none of (connection,
/// keep-alive, proxy-connection, upgrade, transfer-encoding).
fn in_nginx_order(map: http::HeaderMap, passed: Option<&Passed>, order: Order) -> http::HeaderMap {
    use header::{
        CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, LAST_MODIFIED, LOCATION, SERVER,
        TRANSFER_ENCODING, VARY,
    };
    let Order {
        passed_server,
        passed_date,
        own_location,
        listed_modified,
        gzip_vary,
        length,
    } = order;
    // (Names, not values: a capacity past the map's limit panics.)
    let mut out = http::HeaderMap::with_capacity(map.keys_len() + 8);
    if !passed_server {
        out.append(SERVER, HeaderValue::from_static("waypost"));
    }
    if !passed_date {
        if let Some(now) = crate::http::h1::date_value() {
            out.append(DATE, now);
        }
    }
    let not_h2 = |name: &HeaderName| {
        name == CONNECTION
            || name == TRANSFER_ENCODING
            || name == "keep-alive"
            || name == "proxy-connection"
            || name == "upgrade"
    };
    // (`skip_location`: the first Location line went to the fixed place.)
    let lines = |out: &mut http::HeaderMap, lines: &[u8], mut skip_location: bool| {
        for (name, value) in lines_of(lines) {
            // httparse took the name as a token and the value as what a
            // HeaderValue holds: neither fails.
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                if skip_location && n == LOCATION {
                    skip_location = false;
                    continue;
                }
                if !not_h2(&n) {
                    out.append(n, v);
                }
            }
        }
    };
    let rest = passed.map(|p| {
        let (front, rest) = p.front_and_rest();
        lines(&mut out, front, false);
        rest
    });
    let at_fixed_place = |name: &HeaderName| {
        name == CONTENT_TYPE
            || name == CONTENT_LENGTH
            || (name == LAST_MODIFIED && !listed_modified)
            || (name == LOCATION && own_location)
    };
    let fixed = |out: &mut http::HeaderMap, name: HeaderName| {
        for value in map.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    };
    fixed(&mut out, CONTENT_TYPE);
    fixed(&mut out, CONTENT_LENGTH);
    if let (false, Some(n)) = (out.contains_key(CONTENT_LENGTH), length) {
        out.append(CONTENT_LENGTH, HeaderValue::from(n));
    }
    if !listed_modified {
        fixed(&mut out, LAST_MODIFIED);
    }
    if own_location {
        fixed(&mut out, LOCATION);
    }
    // The upstream's Location a `proxy_redirect` rewrote (one made
    // absolute is among the front lines already).
    let mut skip_location = false;
    if let (Some(p), Some(rest)) = (passed, rest) {
        if p.location_set && !p.location_front {
            let rewritten = lines_of(rest).find(|(n, _)| n.eq_ignore_ascii_case(b"location"));
            if let Some(Ok(v)) = rewritten.map(|(_, v)| HeaderValue::from_bytes(v)) {
                out.append(LOCATION, v);
                skip_location = true;
            }
        }
    }
    // `gzip_vary`'s, the map's last vary.
    let mut varies_before_gzip = usize::MAX;
    if gzip_vary {
        varies_before_gzip = map.get_all(VARY).iter().count().saturating_sub(1);
        out.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(rest) = rest {
        lines(&mut out, rest, skip_location);
    }
    let mut last = None;
    for (name, value) in map {
        // (`None`: another value of the name before.)
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        if at_fixed_place(&name) || not_h2(&name) {
            continue;
        }
        if name == VARY {
            if varies_before_gzip == 0 {
                continue;
            }
            varies_before_gzip = varies_before_gzip.saturating_sub(1);
        }
        out.append(name, value);
    }
    out
}

/// What [`in_nginx_order`] needs of the answer besides its lines.
struct Order {
    /// It carries the upstream's Server or Date (`PassedOwn`).
    passed_server: bool,
    passed_date: bool,
    /// Its Location is its own (`OwnLocation`, `MadeAbsolute`).
    own_location: bool,
    /// Its Last-Modified is `add_header`'s (`ListedLastModified`).
    listed_modified: bool,
    /// Its last Vary is `gzip_vary`'s (`VaryAdded`).
    gzip_vary: bool,
    /// The body's length where it has one and is not over already.
    length: Option<u64>,
}

/// A response body on a stream, which counts the stream active until it
/// is done.
pub struct H2Resp {
    body: RespBody,
    /// `limit_rate`'s pace (boxed: most answers have none).
    pace: Option<Box<Pace>>,
    /// The client's request, where an upstream's body is passed on: the
    /// context of the line logged if it breaks off.
    request: Option<Box<Parts>>,
    _active: Active,
}

/// nginx's write filter pace for a stream's DATA (as the HTTP/1 writer's):
/// `rate * (seconds since the request's start + 1) - (sent - after)`
/// bytes may go; a piece that took the allowance to within two pages
/// delays the next one by the time it takes at the rate.
struct Pace {
    limit: crate::http::h1::LimitRate,
    start_secs: u64,
    sent: u64,
    /// Bytes of a piece past what could go yet.
    pending: Option<Bytes>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Pace {
    fn new(limit: crate::http::h1::LimitRate) -> Pace {
        Pace {
            start_secs: if limit.start_secs != 0 {
                limit.start_secs
            } else {
                crate::clock::unix_secs()
            },
            limit,
            sent: 0,
            pending: None,
            wait: None,
        }
    }

    fn wait_ms(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        self.wait = Some(Box::pin(tokio::time::sleep_until(until)));
    }

    /// The next DATA of `body`, paced.
    fn poll(
        &mut self,
        body: &mut RespBody,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            if let Some(wait) = &mut self.wait {
                std::task::ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            let data = match self.pending.take() {
                Some(data) => data,
                None => match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                    other => return Poll::Ready(other),
                },
            };
            let allowed = self.limit.allowance(self.start_secs, self.sent);
            if allowed <= 0 {
                self.pending = Some(data);
                self.wait_ms(self.limit.until_allowed(allowed));
                continue;
            }
            let n = usize::try_from(allowed)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let mut now = data;
            let rest = now.split_off(n);
            if !rest.is_empty() {
                self.pending = Some(rest);
            }
            let before = self.sent;
            self.sent += n as u64;
            let ms = self.limit.delay_after(n, allowed, before, self.sent);
            if ms > 0 {
                self.wait_ms(ms);
            }
            return Poll::Ready(Some(Ok(Frame::data(now))));
        }
    }
}

impl Body for H2Resp {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.pace {
            None => Pin::new(&mut this.body).poll_frame(cx),
            Some(pace) => pace.poll(&mut this.body, cx),
        };
        if let (Poll::Ready(Some(Err(why))), Some(request)) = (&polled, &this.request) {
            this.body.upstream_failed(*why, request);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && self.pace.as_ref().is_none_or(|p| p.pending.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let held = self
            .pace
            .as_ref()
            .and_then(|p| p.pending.as_ref())
            .map_or(0, |b| b.len() as u64);
        let inner = self.body.size_hint();
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + held),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                hint
            }
        }
    }
}
