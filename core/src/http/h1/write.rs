//! Writing a response: the status line and headers into a pooled buffer,
//! then the body framed by Content-Length, chunked (HTTP/1.1, length
//! unknown) or by closing the connection (HTTP/1.0, length unknown).
//! Small bodies go out with the head in one write; a frame that is not
//! ready yet flushes what is buffered first, so nothing waits in the
//! buffer while the upstream is slow.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, UNIX_EPOCH};

use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LAST_MODIFIED, LOCATION,
    TRANSFER_ENCODING, VARY,
};
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use crate::clock;
use crate::http::body::RespBody;
use crate::http::gzip::VaryAdded;
use crate::http::h1::io::{self, Io};
use crate::http::h1::pool::{Buf, SIZE};

/// What the request says about its response.
pub struct Ask<'a> {
    /// A HEAD request: headers only.
    pub head: bool,
    /// HTTP/1.1 (chunked allowed).
    pub http11: bool,
    /// Keep the connection after this response, if the response allows.
    pub keep_alive: bool,
    /// Send `100 Continue` before the response (the body was not read and
    /// will be discarded, as nginx answers then).
    pub interim: bool,
    /// `send_timeout`: the longest wait for the client to take more.
    pub send: std::time::Duration,
    /// The client's request (none for a head refused as it was read):
    /// the context of the line logged if an upstream's body breaks off.
    pub request: Option<&'a http::request::Parts>,
}

/// How the body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// `limit_rate` and `limit_rate_after` of the location that answered:
/// bytes per second, and how many go out before the pace applies. Carried
/// in the answer's extensions (only where configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitRate {
    pub rate: u64,
    pub after: u64,
    /// The request's start, in Unix seconds (0: unknown, the answer's
    /// start then).
    pub start_secs: u64,
}

/// nginx's write filter pacing (`ngx_http_write_filter`): before a write,
/// `rate * (seconds since the request's start + 1) - (sent - after)`
/// bytes may go, else the writer waits until one more may; after it, a
/// wait of the time those bytes take at the rate. `sent` counts the head
/// too, as nginx's `c->sent`.
impl LimitRate {
    /// Bytes that may go now, `sent` having gone since `start_secs`
    /// (nginx's `limit_rate * (ngx_time() - start_sec + 1) - (sent -
    /// limit_rate_after)`); none or less when the pace is ahead.
    pub fn allowance(&self, start_secs: u64, sent: u64) -> i128 {
        let secs = clock::unix_secs().saturating_sub(start_secs);
        i128::from(self.rate.max(1)) * i128::from(secs + 1)
            - (i128::from(sent) - i128::from(self.after))
    }

    /// Milliseconds until one more byte may go, the allowance being
    /// `allowed` (at most 0).
    pub fn until_allowed(&self, allowed: i128) -> u64 {
        (-allowed * 1000 / i128::from(self.rate.max(1)) + 1) as u64
    }

    /// nginx's delay of the next write after one of `wrote` bytes out of
    /// `allowed`, the count having gone from `sent_before` to
    /// `sent_after`: the time they take at the rate, when the write took
    /// the allowance to within two pages.
    pub fn delay_after(
        &self,
        wrote: usize,
        allowed: i128,
        sent_before: u64,
        sent_after: u64,
    ) -> u64 {
        if (wrote as i128) < allowed - 2 * 4096 {
            return 0;
        }
        let paced = |sent: u64| sent.saturating_sub(self.after);
        (paced(sent_after) - paced(sent_before)) * 1000 / self.rate.max(1)
    }
}

struct Pace {
    limit: LimitRate,
    start_secs: u64,
    sent: u64,
    /// A write took the allowance: the next one waits until then (nginx's
    /// delayed write event). None follows the answer's last write, which
    /// is done at once (its request's counts, as limit_conn's, go back).
    wait_until: Option<tokio::time::Instant>,
}

impl Pace {
    fn new(limit: LimitRate) -> Pace {
        Pace {
            limit,
            start_secs: if limit.start_secs != 0 {
                limit.start_secs
            } else {
                clock::unix_secs()
            },
            sent: 0,
            wait_until: None,
        }
    }

    /// Writes `a` then `b`, paced (boxed: only paced answers have it).
    fn write<'a, I: Io>(
        &'a mut self,
        io: &'a I,
        a: &'a [u8],
        b: &'a [u8],
        send: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let (mut a, mut b) = (a, b);
            while !a.is_empty() || !b.is_empty() {
                if let Some(until) = self.wait_until.take() {
                    tokio::time::sleep_until(until).await;
                }
                let allowed = self.limit.allowance(self.start_secs, self.sent);
                if allowed <= 0 {
                    let ms = self.limit.until_allowed(allowed);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
                let n = usize::try_from(allowed).unwrap_or(usize::MAX);
                let from_a = n.min(a.len());
                let from_b = (n - from_a).min(b.len());
                io::write_two(io, &a[..from_a], &b[..from_b], send).await?;
                a = &a[from_a..];
                b = &b[from_b..];
                let before = self.sent;
                self.sent += (from_a + from_b) as u64;
                let ms = self
                    .limit
                    .delay_after(from_a + from_b, allowed, before, self.sent);
                if ms > 0 {
                    self.wait_until = Some(tokio::time::Instant::now() + Duration::from_millis(ms));
                }
            }
            Ok(())
        })
    }
}

/// Writes `a` then `b`, at `pace` if the answer has one.
macro_rules! put {
    ($pace:expr, $io:expr, $a:expr, $b:expr, $send:expr) => {
        match $pace.as_mut() {
            None => io::write_two($io, $a, $b, $send).await,
            Some(pace) => pace.write($io, $a, $b, $send).await,
        }
    };
}

/// What became of the connection once a response was written.
pub enum Written {
    /// The response was complete and delimited, and nobody asked to
    /// close: the next request may come.
    Keep,
    Close,
    /// A `101 Switching Protocols` head went out: the connection belongs
    /// to the tunnel behind this body now.
    Upgrade(RespBody),
}

/// Writes `resp`, and says what the connection is good for afterwards.
///
/// Borrowed, not taken (a response is a few hundred bytes, copied with
/// each move): the body is finished in place ([`RespBody::finish`]) where
/// it used to be dropped, and handed out for a tunnel.
pub async fn respond<I: Io>(io: &I, resp: &mut Response<RespBody>, ask: &Ask<'_>) -> Written {
    let written = |kept: bool| if kept { Written::Keep } else { Written::Close };
    let status = resp.status();
    // A switch the proxy will carry out: nginx's header filter says
    // `Connection: upgrade` for it, whatever else was asked.
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS && resp.body().has_tunnel();
    let bodiless = ask.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut buf = Buf::take();
    if ask.interim {
        buf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(status.as_str().as_bytes());
    // A proxied answer keeps its upstream's reason phrase, as nginx's.
    match resp.body().passed().and_then(|p| p.reason.as_deref()) {
        Some([]) => {}
        Some(reason) => {
            buf.push(b' ');
            buf.extend_from_slice(reason);
        }
        None => {
            buf.push(b' ');
            buf.extend_from_slice(crate::http::response::status_text(status).as_bytes());
        }
    }
    buf.extend_from_slice(b"\r\n");
    // As nginx's header filter: Server and Date first, in its spelling.
    // Written here for every response rather than put in each response's
    // map (a map allocated and hashed per proxied response).
    let passed = resp.body().passed();
    if !crate::http::response::passed_server(resp, passed) {
        buf.extend_from_slice(b"Server: waypost\r\n");
    }
    if !crate::http::response::passed_date(resp, passed) {
        buf.extend_from_slice(b"Date: ");
        date(&mut buf);
        buf.extend_from_slice(b"\r\n");
    }
    // What decides the framing: the first Content-Length, a Connection
    // asking to close (looked up only in a map that has lines: a proxied
    // answer's are the upstream's, in `passed`).
    let passed = resp.body().passed();
    let mut declared = passed.and_then(|p| p.length);
    let mut close_asked = false;
    let mut close_mark = false;
    let headers = resp.headers();
    if !headers.is_empty() {
        if declared.is_none() {
            if let Some(value) = headers.get(CONTENT_LENGTH) {
                declared = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            }
        }
        for value in headers.get_all(CONNECTION) {
            close_asked |= value
                .as_bytes()
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            // The proxy's own mark, written where nginx writes it.
            close_mark |= value == "close";
        }
    }
    let exact = resp.body().size_hint().exact();
    let out = if bodiless {
        Out::None
    } else if let Some(n) = declared {
        Out::Length(n)
    } else if let Some(n) = exact {
        Out::Length(n)
    } else if ask.http11
        && resp
            .extensions()
            .get::<crate::http::outbound::NoChunked>()
            .is_none()
    {
        Out::Chunked
    } else {
        Out::Close
    };
    let mut keep = ask.keep_alive && !close_asked && out != Out::Close;

    // nginx's header filter: Content-Type, Content-Length, Last-Modified
    // and a Location it made absolute at fixed places, then
    // Transfer-Encoding and Connection, then the other lines in their
    // order, the upstream's before the map's.
    let front = passed.map_or(0, |p| p.front());
    if let Some(lines) = passed.and_then(|p| p.lines.get(..front)) {
        buf.extend_from_slice(lines);
    }
    let made_absolute = !headers.is_empty()
        && resp
            .extensions()
            .get::<crate::http::response::MadeAbsolute>()
            .is_some();
    // (A Last-Modified `add_header` set goes among the others.)
    let listed_modified = !headers.is_empty()
        && resp
            .extensions()
            .get::<crate::http::response::ListedLastModified>()
            .is_some();
    let at_fixed_place = |name: &HeaderName| {
        name == CONTENT_TYPE
            || name == CONTENT_LENGTH
            || (name == LAST_MODIFIED && !listed_modified)
            || (name == LOCATION && made_absolute)
    };
    if !headers.is_empty() {
        for (name, canonical) in [
            (CONTENT_TYPE, &b"Content-Type"[..]),
            (CONTENT_LENGTH, b"Content-Length"),
        ] {
            put_all(&mut buf, headers.get_all(&name), canonical);
        }
    }
    match out {
        Out::Length(n) if declared.is_none() => {
            let _ = write!(&mut *buf, "Content-Length: {n}\r\n");
        }
        Out::None if ask.head && declared.is_none() && !status.is_informational() => {
            // A HEAD answered by a fixed body: its length, as nginx says it
            // (none for one it compresses, none for an upstream's).
            let fixed = !resp.body().from_upstream()
                && !resp.headers().contains_key(http::header::CONTENT_ENCODING);
            if let (Some(n), false, true) = (
                exact,
                status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED,
                fixed,
            ) {
                let _ = write!(&mut *buf, "Content-Length: {n}\r\n");
            }
        }
        _ => {}
    }
    if !headers.is_empty() {
        if !listed_modified {
            put_all(&mut buf, headers.get_all(LAST_MODIFIED), b"Last-Modified");
        }
        if made_absolute {
            put_all(&mut buf, headers.get_all(LOCATION), b"Location");
        }
    }
    if out == Out::Chunked {
        buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if upgrade {
        buf.extend_from_slice(b"Connection: upgrade\r\n");
    } else if close_mark {
        buf.extend_from_slice(b"Connection: close\r\n");
    } else if !close_asked {
        // As nginx, whatever the version: `close` when the connection
        // ends, `keep-alive` when it stays.
        if keep {
            buf.extend_from_slice(b"Connection: keep-alive\r\n");
        } else {
            buf.extend_from_slice(b"Connection: close\r\n");
        }
    }
    // `gzip_vary`'s line, the map's last `Vary`, comes here in nginx.
    let mut varies_before_gzip = usize::MAX;
    if !headers.is_empty() && resp.extensions().get::<VaryAdded>().is_some() {
        varies_before_gzip = headers.get_all(VARY).iter().count().saturating_sub(1);
        buf.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    // The upstream's other lines, as they came (no Date, Connection or
    // Transfer-Encoding among them).
    if let Some(rest) = passed
        .and_then(|p| p.lines.get(front..))
        .filter(|r| !r.is_empty())
    {
        buf.extend_from_slice(rest);
    }
    if !headers.is_empty() {
        // Names `add_header` spelled otherwise than the writer would.
        let spellings = resp.extensions().get::<Spellings>();
        for (name, value) in headers {
            if name == TRANSFER_ENCODING
                || at_fixed_place(name)
                || (name == CONNECTION && (upgrade || value == "close"))
            {
                continue;
            }
            if name == VARY {
                if varies_before_gzip == 0 {
                    continue;
                }
                varies_before_gzip = varies_before_gzip.saturating_sub(1);
            }
            match spellings.and_then(|s| s.of(name)) {
                Some(spelled) => buf.extend_from_slice(spelled.as_bytes()),
                None => title_case(name.as_str().as_bytes(), &mut buf),
            }
            put_value(&mut buf, value.as_bytes());
        }
    }
    buf.extend_from_slice(b"\r\n");
    // `limit_rate`: its pace, for the body's writes (none for most).
    let mut pace = resp
        .extensions()
        .get::<LimitRate>()
        .filter(|l| l.rate > 0)
        .map(|&l| Pace::new(l));
    // `$bytes_sent` counts the head too, as nginx's.
    let body = resp.body_mut();
    body.head_sent(&buf);

    if upgrade {
        return match io::write_all(io, &buf, ask.send).await {
            Ok(()) => Written::Upgrade(std::mem::replace(body, RespBody::empty())),
            Err(_) => Written::Close,
        };
    }
    if out == Out::None {
        body.complete();
        body.finish();
        return written(io::write_all(io, &buf, ask.send).await.is_ok() && keep);
    }
    // A small body from an upstream, all of it within the buffer: copied
    // from the upstream's read buffer into this one as it comes (no frame
    // and no `Bytes` per piece).
    let append = match out {
        Out::Length(n) => {
            body.from_upstream()
                && exact == Some(n)
                && buf.len() as u64 + n <= SIZE as u64
                && pace.is_none()
        }
        _ => false,
    };
    let mut sent = 0u64;
    if append {
        loop {
            let left = match out {
                Out::Length(n) => usize::try_from(n - sent).unwrap_or(0),
                _ => 0,
            };
            let polled =
                std::future::poll_fn(|cx| Poll::Ready(body.poll_append(cx, &mut buf, left)));
            let polled = match polled.await {
                Poll::Ready(polled) => polled,
                Poll::Pending => {
                    // Flush before waiting, as for frames below.
                    if !flush(io, &mut buf, ask.send).await {
                        return Written::Close;
                    }
                    std::future::poll_fn(|cx| body.poll_append(cx, &mut buf, left)).await
                }
            };
            match polled {
                None => break,
                Some(Ok(n)) => sent += n as u64,
                Some(Err(why)) => {
                    // Cut short: as a broken frame below.
                    if let Some(request) = ask.request {
                        body.upstream_failed(why, request);
                    }
                    body.finish();
                    let _ = io::write_all(io, &buf, ask.send).await;
                    return Written::Close;
                }
            }
        }
    }

    if !append {
        loop {
            // Take the next frame if it is ready; flush before waiting for one.
            let polled = {
                let mut next = pin!(body.frame());
                std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await
            };
            let frame = match polled {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    if !buf.is_empty() {
                        let flushed = put!(pace, io, &buf, &[], ask.send).is_ok();
                        buf.clear();
                        if !flushed {
                            return Written::Close;
                        }
                    }
                    body.frame().await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(why)) => {
                    // The body broke (an upstream cut it short): nginx's
                    // line for it, then what came goes out, and the close
                    // tells the client it is not complete (no last chunk,
                    // or fewer bytes than announced).
                    if let Some(request) = ask.request {
                        body.upstream_failed(why, request);
                    }
                    body.finish();
                    let _ = io::write_all(io, &buf, ask.send).await;
                    return Written::Close;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers: not passed on
                },
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if let Out::Length(n) = out {
                if sent > n {
                    // More than announced: the response is broken, stop here.
                    keep = false;
                    break;
                }
            }
            if out == Out::Chunked {
                let before = buf.len();
                let _ = write!(&mut *buf, "{:x}\r\n", data.len());
                // `$body_bytes_sent` counts the chunks' framing, as nginx's.
                body.tunnelled((buf.len() - before + 2) as u64);
            }
            if buf.len() + data.len() + 2 <= SIZE {
                buf.extend_from_slice(&data);
            } else {
                if put!(pace, io, &buf, &data, ask.send).is_err() {
                    return Written::Close;
                }
                buf.clear();
            }
            if out == Out::Chunked {
                buf.extend_from_slice(b"\r\n");
            }
        }
    }
    // The body is done: dropping it now, before the last write, writes
    // the access log line before the client can see the answer (and send
    // its next request, perhaps to another worker).
    if out == Out::Chunked {
        body.tunnelled(LAST_CHUNK.len() as u64);
    }
    body.finish();
    match out {
        Out::Chunked => buf.extend_from_slice(LAST_CHUNK),
        Out::Length(n) if sent != n => keep = false,
        _ => {}
    }
    written(put!(pace, io, &buf, &[], ask.send).is_ok() && keep)
}

/// The end of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes what the buffer holds, before waiting for the body (nothing
/// waits in the buffer while the upstream is slow); false if the client
/// is gone.
async fn flush<I: Io>(io: &I, buf: &mut Buf, send: Duration) -> bool {
    if buf.is_empty() {
        return true;
    }
    let written = io::write_all(io, buf, send).await.is_ok();
    buf.clear();
    written
}

thread_local! {
    /// The Date header's text, made once per second per worker.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    /// The same as a header value, for HTTP/2's map (a clone shares it).
    static DATE_VALUE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((u64::MAX, None)) };
}

/// Header names the config spelled otherwise than [`title_case`] does
/// (`add_header X-XSS-Protection`), for the writer: nginx writes them as
/// given.
#[derive(Clone, Default)]
pub struct Spellings(pub Vec<(http::header::HeaderName, std::sync::Arc<str>)>);

impl Spellings {
    fn of(&self, name: &http::header::HeaderName) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| &**s)
    }
}

/// How the writer spells the lowercase header name `name`.
pub fn spelled(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    title_case(name.as_bytes(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A header name from a map (stored lowercase) as nginx spells the
/// headers it writes: `Content-Type`, `Location`, `X-Custom`.
/// A line `Name: value` for each of `values` (the map's lines of a name
/// nginx writes at a fixed place).
fn put_all(buf: &mut Vec<u8>, values: http::header::GetAll<'_, HeaderValue>, name: &[u8]) {
    for value in values {
        buf.extend_from_slice(name);
        put_value(buf, value.as_bytes());
    }
}

/// `: value` and the line's end.
fn put_value(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

fn title_case(name: &[u8], out: &mut Vec<u8>) {
    // nginx's own spelling of those it makes (auth_basic's challenge,
    // a file's tag).
    match name {
        b"www-authenticate" => return out.extend_from_slice(b"WWW-Authenticate"),
        b"etag" => return out.extend_from_slice(b"ETag"),
        _ => {}
    }
    let mut start = true;
    for &c in name {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = c == b'-';
    }
}

/// The Date line's value for now, as [`date`] writes it (for HTTP/2):
/// made once per second per worker.
pub(crate) fn date_value() -> Option<HeaderValue> {
    let secs = clock::unix_secs();
    let cached = DATE_VALUE.try_with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        if c.0 != secs || c.1.is_none() {
            let mut text = Vec::with_capacity(29);
            date(&mut text);
            *c = (secs, HeaderValue::from_bytes(&text).ok());
        }
        c.1.clone()
    });
    cached.ok().flatten()
}

fn date(out: &mut Vec<u8>) {
    let secs = clock::unix_secs();
    let _ = DATE_CACHE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        if c.0 != secs {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if text.len() == 29 {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            }
        }
        out.extend_from_slice(&c.1);
    });
}

#[cfg(test)]
mod tests {
    use super::title_case;

    #[test]
    fn map_names_are_written_as_nginx_spells_them() {
        for (name, spelled) in [
            ("content-type", "Content-Type"),
            ("location", "Location"),
            ("x-cache-status", "X-Cache-Status"),
            ("www-authenticate", "WWW-Authenticate"),
        ] {
            let mut out = Vec::new();
            title_case(name.as_bytes(), &mut out);
            assert_eq!(out, spelled.as_bytes());
        }
    }
}
