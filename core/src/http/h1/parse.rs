//! The request head: httparse does the parsing, this turns its result
//! into `http` types and decides the body's framing as RFC 9112 and nginx
//! do, refusing what could be read two ways (request smuggling).

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING,
};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

use crate::http::head::HeaderNames;

/// What nginx takes in a head: `large_client_header_buffers` (a request
/// line or a header line must fit in `line` bytes, the whole head in
/// `head`, the number of buffers times their size), and the header names
/// of `underscores_in_headers` and `ignore_invalid_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub line: usize,
    pub head: usize,
    pub names: HeaderNames,
}

impl Default for Limits {
    /// nginx's defaults: `4 8k`, no underscores, invalid names dropped.
    fn default() -> Limits {
        Limits {
            line: 8192,
            head: 4 * 8192,
            names: HeaderNames::default(),
        }
    }
}

/// Header slots on the stack; a head with more is parsed again with as
/// many as it has lines (nginx has no count limit, only sizes).
const HEADERS: usize = 100;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed head.
pub struct Head {
    pub parts: Parts,
    /// The head's copy, which the URI and the header values are slices
    /// of: the header names as the client spelled them are read back from
    /// it for the upstream request ([`spelled`]). The head as it came,
    /// unless lines were dropped by a re-read ([`set_aside`]): then the
    /// request line and the kept lines up to the blank line, followed by
    /// all the header lines as they came.
    pub raw: Bytes,
    /// Bytes of the head in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// Header lines were dropped for their names (`ignore_invalid_headers`):
    /// [`super::explain::dropped_lines`] finds them in `raw` for the log.
    /// (A flag: the head is built for every request and almost never
    /// drops a line.)
    pub dropped: bool,
    /// HTTP/1.1 with `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The client asked to keep the connection (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// A head nginx refuses before any phase; the connection closes after the
/// error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400, for the reason nginx logs ([`super::explain`]).
    Bad(Bad),
    /// 400 "Request Header Or Cookie Too Large"
    HeaderTooLarge,
    /// 414: the request line does not fit a large buffer.
    UriTooLong,
    /// 501: a Transfer-Encoding other than chunked.
    NotImplemented,
    /// 505
    Version,
    /// 413: a chunked body past `client_max_body_size`.
    TooLarge,
}

/// Why a head is a 400: each has its own line in nginx's error log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// The method, the target or the version.
    RequestLine,
    /// A header line nginx does not take (a space in its name, ...).
    HeaderLine,
    DuplicateLength,
    InvalidLength,
    DuplicateCoding,
    /// Transfer-Encoding from HTTP/1.0.
    CodingInHttp10,
    LengthAndCoding,
    /// The first bytes of a chunked body (the head is fine).
    ChunkedBody,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Bad(_) | Refusal::HeaderTooLarge => 400,
            Refusal::UriTooLong => 414,
            Refusal::NotImplemented => 501,
            Refusal::Version => 505,
            Refusal::TooLarge => 413,
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` when it is not
/// complete yet (the caller reads more, up to `limits.head`).
pub fn parse(buf: &[u8], limits: Limits) -> Result<Option<Head>, Refusal> {
    let mut head = None;
    parse_into(buf, limits, &mut head)?;
    Ok(head)
}

/// [`parse`] into `slot`, where the head is built in place (a head is a
/// few hundred bytes, copied with each move): `Ok(false)` when it is not
/// complete yet.
pub fn parse_into(buf: &[u8], limits: Limits, slot: &mut Option<Head>) -> Result<bool, Refusal> {
    // Uninitialised: zeroing 100 slots wrote 3.2 KB per request (~170
    // instructions, 50 cache lines) for the few a head fills.
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADERS];
    let mut req = httparse::Request::new(&mut []);
    // httparse's own settings on the way of every head: the lenient ones
    // (`config`) only where a head needs them.
    match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => {
            check_whole(&buf[..len], limits)?;
            build(buf, len, len, &req, limits, false, slot).map(|()| true)
        }
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            Ok(false)
        }
        // Rare: a head with more lines than slots, or a line httparse
        // refuses that nginx may ignore.
        Err(httparse::Error::TooManyHeaders) => {
            parse_slowly(buf, limits, limits.names.ignore_invalid, slot)
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue)
            if limits.names.ignore_invalid =>
        {
            parse_slowly(buf, limits, true, slot)
        }
        Err(e @ (httparse::Error::Token | httparse::Error::NewLine)) => {
            let lenient = match e {
                httparse::Error::Token => high_bytes_encoded(buf),
                _ => version_spaces_dropped(buf),
            };
            match lenient {
                Lenient::Copy(copy) => parse_copy(buf, &copy, limits, slot),
                Lenient::More => {
                    check_partial(buf, limits)?;
                    Ok(false)
                }
                // More than one space between the line's parts.
                Lenient::No if spaced(buf) => {
                    parse_slowly(buf, limits, limits.names.ignore_invalid, slot)
                }
                Lenient::No => Err(refusal(e, buf, &req)),
            }
        }
        Err(e) => Err(refusal(e, buf, &req)),
    }
}

/// What a head httparse refused may still be, as nginx reads it.
enum Lenient {
    /// A copy of the head it takes as it is.
    Copy(Vec<u8>),
    /// Its request line is not all there yet, and may be so.
    More,
    /// Refused.
    No,
}

/// The request line of `buf` after the empty lines before it (httparse
/// and nginx skip them): its start, and its end (the `\n`) if it came.
fn request_line(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let first = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let end = buf[first..]
        .iter()
        .position(|&c| c == b'\n')
        .map(|n| first + n);
    Some((first, end))
}

/// Whether the request line has two spaces in a row (nginx skips them
/// around the target; [`config`] has httparse skip them too).
fn spaced(buf: &[u8]) -> bool {
    request_line(buf).is_some_and(|(first, end)| {
        buf[first..end.unwrap_or(buf.len())]
            .windows(2)
            .any(|w| w == b"  ")
    })
}

/// A copy of `buf` with the bytes from 0x80 of its request target
/// percent-encoded, when they are not UTF-8: httparse refuses such a
/// target, nginx takes it (`$uri` has the bytes, decoded again).
#[cold]
#[inline(never)]
fn high_bytes_encoded(buf: &[u8]) -> Lenient {
    let Some((first, end)) = request_line(buf) else {
        return Lenient::No;
    };
    let line = &buf[..end.unwrap_or(buf.len())];
    let target = || {
        let start = first + line[first..].iter().position(|&c| c == b' ')?;
        let start = start + line[start..].iter().position(|&c| c != b' ')?;
        let len = line[start..].iter().position(|&c| c == b' ');
        Some((start, len.map(|n| start + n)))
    };
    match (target(), end) {
        (Some((start, Some(stop))), Some(_)) => {
            let target = &line[start..stop];
            if std::str::from_utf8(target).is_ok() {
                return Lenient::No;
            }
            let mut copy = Vec::with_capacity(buf.len() + 2 * target.len());
            copy.extend_from_slice(&buf[..start]);
            crate::http::escape_into(target, &mut copy, |_, c| c >= 0x80);
            copy.extend_from_slice(&buf[stop..]);
            Lenient::Copy(copy)
        }
        // The line is still coming: more if its target has such bytes.
        (Some((start, stop)), None)
            if line[start..stop.unwrap_or(line.len())]
                .iter()
                .any(|&c| c >= 0x80) =>
        {
            Lenient::More
        }
        _ => Lenient::No,
    }
}

/// A copy of `buf` without the spaces after its request line's version
/// (`GET / HTTP/1.1 `): nginx takes them, httparse does not.
#[cold]
#[inline(never)]
fn version_spaces_dropped(buf: &[u8]) -> Lenient {
    let Some((first, end)) = request_line(buf) else {
        return Lenient::No;
    };
    let line = &buf[first..end.unwrap_or(buf.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let kept = line.trim_ascii_end();
    let spaced = kept.len() < line.len() && line[kept.len()..].iter().all(|&c| c == b' ');
    let version = kept.len().checked_sub(8).and_then(|at| kept.get(at..));
    let versioned = version.is_some_and(|v| v.starts_with(b"HTTP/") && v[6] == b'.');
    match (spaced && versioned, end) {
        (false, _) => Lenient::No,
        (true, None) => Lenient::More,
        (true, Some(_)) => {
            let cut = first + kept.len();
            let rest = first + line.len();
            Lenient::Copy([&buf[..cut], &buf[rest..]].concat())
        }
    }
}

/// [`parse_into`] of `copy`, a copy of `buf` whose request line is longer
/// or shorter: the head's length is given back in `buf`'s bytes.
fn parse_copy(
    buf: &[u8],
    copy: &[u8],
    limits: Limits,
    slot: &mut Option<Head>,
) -> Result<bool, Refusal> {
    // nginx's size limits are the bytes that came: a longer copy has as
    // much more room, a shorter one as much less.
    let resized = |n: usize| (n + copy.len()).saturating_sub(buf.len());
    let limits = Limits {
        line: resized(limits.line),
        head: resized(limits.head),
        ..limits
    };
    let done = parse_into(copy, limits, slot)?;
    if let Some(head) = slot.as_mut().filter(|_| done) {
        // The copies differ in the request line only, inside the head.
        head.len = head.len + buf.len() - copy.len();
    }
    Ok(done)
}

/// httparse's settings for a head it refused as it came
/// ([`parse_slowly`]): spaces between the request line's parts as nginx
/// takes them (`GET  /a  HTTP/1.1`).
fn config() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config.allow_multiple_spaces_in_request_line_delimiters(true);
    config
}

/// [`parse_into`] for a head httparse cannot take as it comes: with as
/// many header slots as it has lines and, with `skipping`, re-read from a
/// copy without the lines nginx drops for their names ([`set_aside`]).
/// httparse is called as for every request: with one configuration, its
/// parser is compiled for it.
fn parse_slowly(
    buf: &[u8],
    limits: Limits,
    skipping: bool,
    slot: &mut Option<Head>,
) -> Result<bool, Refusal> {
    let lines = buf.iter().filter(|&&c| c == b'\n').count();
    let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); lines];
    let mut req = httparse::Request::new(&mut []);
    let copy;
    let (head, set_aside) = match skipping.then(|| set_aside(buf, limits.names)) {
        Some(None) => {
            check_partial(buf, limits)?;
            return Ok(false);
        }
        Some(Some(set)) if set.dropped => {
            copy = set;
            (&copy.head[..], Some(copy.len))
        }
        _ => (buf, None),
    };
    match config().parse_request_with_uninit_headers(&mut req, head, &mut slots) {
        Ok(httparse::Status::Complete(len)) => {
            // The limits are the head's as it came; the copy is its bytes
            // and its lines again, all kept as the head's.
            let (raw, consumed) = set_aside.map_or((len, len), |came| (head.len(), came));
            check_whole(&buf[..consumed], limits)?;
            let dropped = set_aside.is_some();
            build(head, raw, consumed, &req, limits, dropped, slot).map(|()| true)
        }
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            Ok(false)
        }
        Err(e) => Err(refusal(e, head, &req)),
    }
}

/// A head re-read without the lines nginx drops.
struct SetAside {
    /// The request line, the header lines nginx keeps, the blank line,
    /// then all the header lines as they came, where the log finds the
    /// dropped ones in their order ([`super::explain::dropped_lines`]).
    head: Vec<u8>,
    /// The head's length in the connection's buffer.
    len: usize,
    /// Lines were dropped (else the head is read as it came).
    dropped: bool,
}

/// The whole head at the start of `buf` without the header lines nginx
/// drops for their names ([`nginx_drops`]); `None` while the head is not
/// whole.
fn set_aside(buf: &[u8], names: HeaderNames) -> Option<SetAside> {
    // The request line, after any empty lines (httparse skips them).
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let first = start + buf[start..].iter().position(|&c| c == b'\n')? + 1;
    let mut head = buf[..first].to_vec();
    let mut at = first;
    let mut dropped = false;
    loop {
        let end = at + buf[at..].iter().position(|&c| c == b'\n')? + 1;
        let line = &buf[at..end];
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            head.extend_from_slice(line);
            head.extend_from_slice(&buf[first..at]);
            return Some(SetAside {
                head,
                len: end,
                dropped,
            });
        }
        if nginx_drops(text, names) {
            dropped = true;
        } else {
            head.extend_from_slice(line);
        }
        at = end;
    }
}

/// Whether nginx drops the header line `text` for its name
/// (`ngx_http_parse_header_line` and `ignore_invalid_headers`): a name
/// `names` does not take (`X_Y` without `underscores_in_headers`, `X.Y`,
/// `X@Y`, `é`). It refuses a line whose name is empty or has a space or a
/// control character, or that has a NUL. Two lines nginx takes are
/// refused here (README): one without a colon (nginx: a header with an
/// empty value), and one whose name nginx keeps but whose value has a
/// control character.
pub(crate) fn nginx_drops(text: &[u8], names: HeaderNames) -> bool {
    let Some(colon) = text.iter().position(|&c| c == b':') else {
        return false;
    };
    let name = &text[..colon];
    // A bare CR (the line's own was taken off) or a NUL anywhere is
    // nginx's 400: left in, httparse refuses the line. Dropped, a line
    // `X@Y: a\rContent-Length: 5` would hide a length another reader of
    // the stream sees.
    !name.is_empty()
        && !name.iter().any(|&c| c <= 0x20 || c == 0x7f)
        && !text.iter().any(|&c| c == 0 || c == b'\r')
        && names.drops(name)
}

/// nginx's refusal of a head httparse refuses: 505 for a version from
/// `HTTP/2` on (nginx stops at the major digit), else 400 for the request
/// line (`HTTP/1.1x`, `FOO/1.1`, a space in the target) or for a header
/// line, when the request line was whole.
fn refusal(e: httparse::Error, buf: &[u8], req: &httparse::Request<'_, '_>) -> Refusal {
    let version = req.path.and_then(|path| {
        let after = path.as_ptr() as usize - buf.as_ptr() as usize + path.len() + 1;
        buf.get(after..)
    });
    let line_whole = version.is_some_and(|v| {
        let rest = v.get(b"HTTP/1.1".len()..).unwrap_or_default();
        req.version.is_some() && (rest.starts_with(b"\r\n") || rest.starts_with(b"\n"))
    });
    match (e, version.and_then(|v| v.strip_prefix(b"HTTP/"))) {
        (httparse::Error::Version, Some([b'2'..=b'9', ..])) => Refusal::Version,
        (
            httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine,
            _,
        ) if line_whole => Refusal::Bad(Bad::HeaderLine),
        _ => Refusal::Bad(Bad::RequestLine),
    }
}

/// nginx's size rules on a head still arriving: a request line longer
/// than a large buffer is 414, a header line longer than one or a head
/// longer than all four is 400 "Request Header Or Cookie Too Large".
/// Cheap for ordinary heads: nothing is scanned below one buffer.
pub fn check_partial(buf: &[u8], limits: Limits) -> Result<(), Refusal> {
    if buf.len() <= limits.line {
        return Ok(());
    }
    check_lines(buf, limits.line)?;
    if buf.len() >= limits.head {
        return Err(Refusal::HeaderTooLarge);
    }
    Ok(())
}

/// The line-length rules on the head in `buf` (complete or not).
fn check_lines(buf: &[u8], max: usize) -> Result<(), Refusal> {
    let mut lines = buf.split(|&c| c == b'\n');
    if lines.next().is_some_and(|l| l.len() + 1 > max) {
        return Err(Refusal::UriTooLong);
    }
    if lines.any(|l| l.len() + 1 > max) {
        return Err(Refusal::HeaderTooLarge);
    }
    Ok(())
}

/// nginx's size rules on a whole head: a head read in one go can be past
/// a limit without ever being seen partial.
fn check_whole(head: &[u8], limits: Limits) -> Result<(), Refusal> {
    if head.len() > limits.line {
        check_lines(head, limits.line)?;
        if head.len() > limits.head {
            return Err(Refusal::HeaderTooLarge);
        }
    }
    Ok(())
}

/// The head parsed in `req` from `buf[..len]`, `consumed` bytes of the
/// connection's buffer, into `slot`.
fn build(
    buf: &[u8],
    len: usize,
    consumed: usize,
    req: &httparse::Request<'_, '_>,
    limits: Limits,
    dropped: bool,
    slot: &mut Option<Head>,
) -> Result<(), Refusal> {
    // One copy of the head; the URI and header values are slices of it.
    let head = head_bytes(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let slice = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        head.slice(start..start + s.len())
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::Bad(Bad::RequestLine));
    };
    let line = Refusal::Bad(Bad::RequestLine);
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = Method::from_bytes(method.as_bytes()).map_err(|_| line)?;
    parts.uri = match Uri::from_maybe_shared(slice(path.as_bytes())) {
        Ok(uri) => uri,
        Err(_) => encoded_target(path.as_bytes()).ok_or(line)?,
    };
    parts.version = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Filled in place: the empty map `Parts` came with costs 60
    // instructions to drop once replaced.
    let headers = &mut parts.headers;
    headers.reserve(req.headers.len());
    // The headers the framing and persistence rules read are noted on the
    // way into the map: no lookups after.
    let mut seen = Seen::default();
    let mut dropped = dropped;
    for h in req.headers.iter() {
        if limits.names.drops(h.name.as_bytes()) {
            dropped = true;
            continue;
        }
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Refusal::Bad(Bad::HeaderLine))?;
        if name == CONTENT_LENGTH {
            seen.lengths = seen.lengths.saturating_add(1);
            seen.length.get_or_insert(h.value);
        } else if name == TRANSFER_ENCODING {
            seen.codings = seen.codings.saturating_add(1);
            seen.coding.get_or_insert(h.value);
        } else if name == EXPECT {
            seen.expect.get_or_insert(h.value);
        } else if name == CONNECTION {
            seen.close |= lists(h.value, b"close");
            seen.keep_alive |= lists(h.value, b"keep-alive");
        }
        // SAFETY (an invariant, not memory safety): httparse takes a value
        // only of HTAB, SP, visible ASCII and bytes from 0x80
        // (`HEADER_VALUE_MAP`), exactly the bytes `HeaderValue` allows;
        // its own check was a second pass over every value byte of every
        // request. Debug builds (the tests, the fuzzer) still check.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(slice(h.value)) };
        headers.append(name, value);
    }
    let framing = framing(&seen, parts.version)?;
    let expect_continue = parts.version == Version::HTTP_11
        && seen
            .expect
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let keep_alive = if parts.version == Version::HTTP_11 {
        !seen.close
    } else {
        seen.keep_alive
    };
    *slot = Some(Head {
        parts,
        raw: head,
        len: consumed,
        framing,
        dropped,
        expect_continue,
        keep_alive,
    });
    Ok(())
}

/// An origin-form target with bytes nginx takes and `http`'s `Uri`
/// refuses, with those bytes percent-encoded: `<`, `>` and a backquote
/// in the path, `"`, `<` and `>` in the query, and bytes from 0x80 when
/// they are not UTF-8 (`curl 'http://h/caf\xe9'`, JSON in a query). A
/// client's 400 would be worse than the one difference left: `$uri` is
/// decoded as nginx's, but `$request_uri`, `$args` and the upstream
/// request line show those bytes as `%XX` where nginx passes them raw.
/// A fragment (`#...`) stays out of the URI, as for any target.
#[cold]
#[inline(never)]
fn encoded_target(target: &[u8]) -> Option<Uri> {
    // An absolute-form target's path is taken so after its authority.
    let path_at = match target.first() {
        Some(b'/') => 0,
        _ => {
            let scheme = target.iter().position(|&c| c == b':')?;
            let rest = target.get(scheme..)?.strip_prefix(b"://")?;
            scheme + 3 + rest.iter().position(|&c| c == b'/' || c == b'?')?
        }
    };
    let (authority, target) = target.split_at(path_at);
    let end = target
        .iter()
        .position(|&c| c == b'#')
        .unwrap_or(target.len());
    let high = std::str::from_utf8(&target[..end]).is_err();
    let query = target[..end].iter().position(|&c| c == b'?').unwrap_or(end);
    let mut out = Vec::with_capacity(authority.len() + end + 32);
    out.extend_from_slice(authority);
    crate::http::escape_into(&target[..end], &mut out, |i, c| match c {
        b'<' | b'>' => true,
        b'`' => i < query,
        b'"' => i > query,
        0x80.. => high,
        _ => false,
    });
    Uri::from_maybe_shared(Bytes::from(out)).ok()
}

/// A header's name as the client spelled it, read back from `raw`, the
/// head its `value` is a slice of ([`Head::raw`]): the bytes before the
/// value, past the whitespace and the colon, when they are `name` but for
/// case. `None` when the value is not in `raw` (an empty one, a header
/// set since, an HTTP/2 request's).
pub fn spelled<'r>(raw: &'r [u8], name: &HeaderName, value: &[u8]) -> Option<&'r [u8]> {
    // Addresses compared, never followed: the value's place in `raw`.
    let at = (value.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    if value.is_empty() || at + value.len() > raw.len() {
        return None;
    }
    let before = raw[..at].trim_ascii_end().strip_suffix(b":")?;
    let n = name.as_str().len();
    let spelled = before.get(before.len().checked_sub(n)?..)?;
    spelled
        .eq_ignore_ascii_case(name.as_str().as_bytes())
        .then_some(spelled)
}

/// A head's copy, made for slicing: most heads fit an [`Inline`] copy,
/// whose bytes share one allocation with their reference count.
/// `Bytes::copy_from_slice` takes two once the copy is sliced (the copy,
/// then the shared header at the first slice), on every request. The
/// price: a head of 257 bytes keeps a 1 KB copy alive as long as its URI
/// or a header value is.
fn head_bytes(head: &[u8]) -> Bytes {
    match head.len() {
        0..=256 => Bytes::from_owner(Inline::<256>::new(head)),
        257..=1024 => Bytes::from_owner(Inline::<1024>::new(head)),
        _ => Bytes::copy_from_slice(head),
    }
}

/// Up to `N` bytes kept inline (see [`head_bytes`]).
struct Inline<const N: usize> {
    len: usize,
    data: [u8; N],
}

impl<const N: usize> Inline<N> {
    fn new(bytes: &[u8]) -> Inline<N> {
        debug_assert!(bytes.len() <= N, "head_bytes picks a size that fits");
        let mut data = [0; N];
        let len = bytes.len().min(N);
        data[..len].copy_from_slice(&bytes[..len]);
        Inline { len, data }
    }
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// What the framing and persistence rules need from a head's headers.
#[derive(Default)]
struct Seen<'a> {
    /// Content-Length lines, and the first one's value.
    lengths: u8,
    length: Option<&'a [u8]>,
    /// Transfer-Encoding lines, and the first one's value.
    codings: u8,
    coding: Option<&'a [u8]>,
    /// The first Expect line's value.
    expect: Option<&'a [u8]>,
    /// A Connection line lists `close`, `keep-alive`.
    close: bool,
    keep_alive: bool,
}

/// Whether a comma-separated header value lists `token`.
fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The body's framing, as nginx 1.22 decides it
/// (`ngx_http_process_request_header`): Transfer-Encoding only from
/// HTTP/1.1, never with Content-Length, only `chunked`; one
/// Content-Length of digits.
fn framing(seen: &Seen<'_>, version: Version) -> Result<Framing, Refusal> {
    // nginx's order: a repeated line as the headers are read, then the
    // length, then the coding.
    if seen.lengths > 1 {
        return Err(Refusal::Bad(Bad::DuplicateLength));
    }
    if seen.codings > 1 {
        return Err(Refusal::Bad(Bad::DuplicateCoding));
    }
    let length = match seen.length {
        Some(v) => Some(content_length(v).ok_or(Refusal::Bad(Bad::InvalidLength))?),
        None => None,
    };
    match seen.coding {
        None => Ok(length.map_or(Framing::None, |n| {
            if n == 0 {
                Framing::None
            } else {
                Framing::Length(n)
            }
        })),
        Some(_) if version < Version::HTTP_11 => Err(Refusal::Bad(Bad::CodingInHttp10)),
        Some(te) if te.eq_ignore_ascii_case(b"chunked") => match length {
            Some(_) => Err(Refusal::Bad(Bad::LengthAndCoding)),
            None => Ok(Framing::Chunked),
        },
        Some(_) => Err(Refusal::NotImplemented),
    }
}

/// nginx's `ngx_atoof`: digits only, no sign, no list, no overflow (a
/// Content-Length value, both ways through the proxy).
pub(crate) fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_nginx_takes_and_http_refuses_are_percent_encoded() {
        let cases: &[(&[u8], &str)] = &[
            (b"/a?x=\"<>`", "/a?x=%22%3C%3E`"),
            (b"/a<b>`\"{|}", "/a%3Cb%3E%60\"{|}"),
            (b"/a\x80b?c=\xe6", "/a%80b?c=%E6"),
            // UTF-8 is taken as it is, as before.
            ("/caf\u{e9}?q=\u{e9}<".as_bytes(), "/caf\u{e9}?q=\u{e9}%3C"),
            (b"/a<b#fr<ag", "/a%3Cb"),
            (b"http://x/a<b?c=\"d\"", "http://x/a%3Cb?c=%22d%22"),
            (b"http://x/caf\xe9?a=\"b\"", "http://x/caf%E9?a=%22b%22"),
            (b"http://x?c=\"d\"<", "http://x/?c=%22d%22%3C"),
        ];
        for &(target, want) in cases {
            let mut raw = b"GET ".to_vec();
            raw.extend_from_slice(target);
            raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            let head = parse(&raw, Limits::default());
            let uri = head.map(|h| h.map(|h| h.parts.uri.to_string()));
            assert_eq!(uri.ok().flatten().as_deref(), Some(want), "{target:?}");
        }
    }

    #[test]
    fn spaces_around_the_target_and_after_the_version_as_nginx() {
        for raw in [
            &b"GET  /a   HTTP/1.1\r\nHost: x\r\n\r\nGET"[..],
            b"GET /a HTTP/1.1  \r\nHost: x\r\n\r\nGET",
            b"GET /a HTTP/1.1 \nHost: x\n\nGET",
        ] {
            let head = parse(raw, Limits::default());
            let head = head.ok().flatten();
            let uri = head.as_ref().map(|h| h.parts.uri.to_string());
            assert_eq!(uri.as_deref(), Some("/a"), "{raw:?}");
            // The head's length is counted in the bytes that came.
            assert_eq!(head.map(|h| h.len), Some(raw.len() - 3), "{raw:?}");
        }
        // A longer copy (a target's bytes encoded) is counted so too, and
        // after empty lines.
        for raw in [
            &b"GET /a\xe6 HTTP/1.1\r\nHost: x\r\n\r\nGET"[..],
            b"\r\n\nGET /a\xe6 HTTP/1.1\r\nHost: x\r\n\r\nGET",
        ] {
            let head = parse(raw, Limits::default()).ok().flatten();
            assert_eq!(head.map(|h| h.len), Some(raw.len() - 3), "{raw:?}");
        }
        // The size limit is the line that came, not its longer copy.
        let mut raw = b"GET /".to_vec();
        raw.extend(std::iter::repeat_n(0xe9, 400));
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let limits = Limits {
            line: 1024,
            head: 4096,
            ..Limits::default()
        };
        assert!(matches!(parse(&raw, limits), Ok(Some(_))));
        // A line still coming is waited for.
        for raw in [
            &b"GET /a HTTP/1.1 "[..],
            b"GET /a HTTP/1.1 \r",
            b"GET /a\xe9 HTTP/1.1",
            b"GET /a\xe9 HT",
            b"\r\nGET /a\xe9",
        ] {
            assert!(matches!(parse(raw, Limits::default()), Ok(None)), "{raw:?}");
        }
        for raw in [
            &b"GET /a HTTP/1.1 x\r\nHost: x\r\n\r\n"[..],
            b"GET /a \r\n\r\n",
        ] {
            assert!(parse(raw, Limits::default()).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn header_values_httparse_takes_are_the_ones_header_value_allows() {
        // What `build`'s unchecked HeaderValue relies on, byte by byte.
        for b in (0..=255u8).filter(|&b| b != b'\r' && b != b'\n') {
            let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX: a".to_vec();
            raw.extend_from_slice(&[b, b'b', b'\r', b'\n', b'\r', b'\n']);
            let taken = matches!(parse(&raw, Limits::default()), Ok(Some(_)));
            let allowed = HeaderValue::from_bytes(&[b'a', b, b'b']).is_ok();
            assert_eq!(taken, allowed, "byte {b:#04x}");
        }
    }

    #[test]
    fn content_lengths_as_ngx_atoof_reads_them() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"18"), Some(18));
        assert_eq!(content_length(b"007"), Some(7));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+5",
            b"-5",
            b"5 ",
            b"1,1",
            b"0x10",
            b"5/",
            b"5:",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn framing_of(raw: &str) -> Result<Framing, Refusal> {
        parse(raw.as_bytes(), Limits::default()).map(|h| h.map_or(Framing::None, |h| h.framing))
    }

    #[test]
    fn heads_and_framing() {
        let h = parse(
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nX: 1\r\nX: 2\r\n\r\nrest",
            Limits::default(),
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(h.len, 42);
        assert_eq!(h.parts.uri.path(), "/a");
        assert_eq!(h.parts.headers.get_all("x").iter().count(), 2);
        assert!(h.keep_alive);
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n", Limits::default())
            .expect("valid")
            .is_none());
        let ok = |r: &str| framing_of(r);
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for (bad, why) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Bad::LengthAndCoding,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Bad::DuplicateLength,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Bad::InvalidLength),
            ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Bad::InvalidLength),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Bad::InvalidLength,
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Bad::CodingInHttp10,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Bad::DuplicateCoding,
            ),
            ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Bad::HeaderLine),
            ("GET / HTTP/1.1\rHost: x\r\n\r\n", Bad::RequestLine),
            ("GET / HTTP/1.1x\r\nHost: x\r\n\r\n", Bad::RequestLine),
            ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", Bad::RequestLine),
        ] {
            assert_eq!(ok(bad), Err(Refusal::Bad(why)), "{bad:?}");
        }
        // nginx: a coding it does not know is 501 even beside a length.
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(Refusal::NotImplemented)
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(Refusal::NotImplemented)
        );
        assert_eq!(ok("GET / HTTP/2.0\r\n\r\n"), Err(Refusal::Version));
    }

    #[test]
    fn heads_of_every_copy_size_keep_their_bytes() {
        // Inline copies up to 256 and 1024 bytes, a plain copy past that;
        // pads 202/203 and 970/971 make heads of 256/257 and 1024/1025.
        for pad in [0, 200, 202, 203, 600, 970, 971, 3000] {
            let value = "v".repeat(pad);
            let text =
                format!("GET /p?q=1 HTTP/1.1\r\nHost: h\r\nX-Pad: {value}\r\nX-Last: end\r\n\r\n");
            let h = parse(text.as_bytes(), Limits::default())
                .expect("valid")
                .expect("complete");
            assert_eq!(h.len, text.len());
            assert_eq!(h.parts.uri, "/p?q=1");
            assert_eq!(h.parts.headers["x-pad"], value.as_str());
            assert_eq!(h.parts.headers["x-last"], "end");
        }
    }

    #[test]
    fn sizes_as_nginx() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(
            parse(long_line.as_bytes(), Limits::default()).err(),
            Some(Refusal::UriTooLong)
        );
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            parse(long_header.as_bytes(), Limits::default()).err(),
            Some(Refusal::HeaderTooLarge)
        );
        let many: String = (0..300).map(|i| format!("X{i}: a\r\n")).collect();
        let h = parse(
            format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
            Limits::default(),
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(h.parts.headers.len(), 300);
    }

    #[test]
    fn configured_buffers_set_the_limits() {
        let limits = Limits {
            line: 1024,
            head: 2 * 1024,
            ..Limits::default()
        };
        let line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100));
        assert_eq!(
            parse(line.as_bytes(), limits).err(),
            Some(Refusal::UriTooLong)
        );
        let header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1100));
        assert_eq!(
            parse(header.as_bytes(), limits).err(),
            Some(Refusal::HeaderTooLarge)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: aaaaaaaa\r\n".repeat(200));
        assert_eq!(
            parse(many.as_bytes(), limits).err(),
            Some(Refusal::HeaderTooLarge)
        );
        // The same heads pass nginx's default buffers.
        assert!(parse(line.as_bytes(), Limits::default()).is_ok_and(|h| h.is_some()));
        assert!(parse(many.as_bytes(), Limits::default()).is_ok_and(|h| h.is_some()));
    }

    #[test]
    fn header_names_are_read_back_as_the_client_spelled_them() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-CASE:\t v\r\nEmpty:\r\nx-low:w\r\n\r\n";
        let head = parse(raw, Limits::default())
            .expect("valid")
            .expect("complete");
        let got: Vec<Option<String>> = head
            .parts
            .headers
            .iter()
            .map(|(name, value)| {
                spelled(&head.raw, name, value.as_bytes())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            })
            .collect();
        assert_eq!(
            got,
            [
                Some("Host".to_owned()),
                Some("X-Mixed-CASE".to_owned()),
                None,
                Some("x-low".to_owned())
            ]
        );
        // A value from elsewhere is not read back.
        let name = HeaderName::from_static("host");
        assert_eq!(spelled(&head.raw, &name, b"a"), None);
    }

    /// The header lines of `raw`'s head that were dropped, as text, and
    /// the names kept.
    fn dropped(raw: &[u8], names: HeaderNames) -> Result<(Vec<String>, Vec<String>), Refusal> {
        let limits = Limits {
            names,
            ..Limits::default()
        };
        let head = parse(raw, limits)?.expect("complete");
        let found = super::super::explain::dropped_lines(&head.raw, names);
        assert_eq!(head.dropped, !found.is_empty());
        let lines = found
            .iter()
            .map(|(r, _)| String::from_utf8_lossy(&head.raw[r.clone()]).into_owned())
            .collect();
        let kept = head.parts.headers.keys().map(|n| n.to_string()).collect();
        Ok((lines, kept))
    }

    #[test]
    fn header_names_nginx_does_not_take_are_dropped_as_nginx_drops_them() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX_U: 1\r\nX.D: 2  \r\nX@A: 3\r\nX-Ok: 4\r\n\xc3\xa9: 5\r\nE_:\r\n\r\n";
        assert_eq!(
            dropped(raw, HeaderNames::default()),
            Ok((
                ["X_U: 1", "X.D: 2", "X@A: 3", "\u{e9}: 5", "E_:"]
                    .map(String::from)
                    .to_vec(),
                ["host", "x-ok"].map(String::from).to_vec()
            ))
        );
        // `underscores_in_headers on`: `_` is a name's byte.
        let underscores = HeaderNames {
            underscores: true,
            ignore_invalid: true,
        };
        assert_eq!(
            dropped(raw, underscores).map(|(_, kept)| kept),
            Ok(["host", "x_u", "x-ok", "e_"].map(String::from).to_vec())
        );
        // `ignore_invalid_headers off`: every name httparse takes is kept;
        // one outside the token set is refused (nginx takes it).
        let keep = HeaderNames {
            underscores: false,
            ignore_invalid: false,
        };
        let tokens = b"GET / HTTP/1.1\r\nHost: h\r\nX_U: 1\r\nX.D: 2\r\n\r\n";
        assert_eq!(
            dropped(tokens, keep).map(|(_, kept)| kept),
            Ok(["host", "x_u", "x.d"].map(String::from).to_vec())
        );
        assert_eq!(
            dropped(raw, keep).err(),
            Some(Refusal::Bad(Bad::HeaderLine))
        );
    }

    #[test]
    fn header_lines_nginx_refuses_are_refused() {
        for line in [
            &b"X Y: 1"[..],
            b"XY : 1",
            b": 1",
            b" folded",
            b"X\x01Y: 1",
            // A bare CR in a line nginx would drop: its 400, and no
            // hidden length or coding.
            b"X_Y: a\rContent-Length: 5",
            b"X@Y: a\rTransfer-Encoding: chunked",
            b"X@Y: a\x00",
            // Taken by nginx, refused here (README).
            b"NoColon",
            b"X-Ctl: a\x01b",
            b"X-Del: a\x7fb",
        ] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\nX-After: 1\r\n\r\n");
            assert_eq!(
                dropped(&raw, HeaderNames::default()).err(),
                Some(Refusal::Bad(Bad::HeaderLine)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_head_re_read_without_its_dropped_lines_is_the_head_as_it_came() {
        let first = b"GET / HTTP/1.1\r\nX@A: 1\r\nHost: h\r\nX_B: 2\r\nX-Ok: 3\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = parse(&buf, Limits::default())
            .expect("valid")
            .expect("complete");
        // What follows it (a pipelined request, a body) is left as it is.
        assert_eq!(head.len, first.len());
        let names: Vec<String> = head.parts.headers.keys().map(|n| n.to_string()).collect();
        assert_eq!(names, ["host", "x-ok"]);
        let raw = &head.raw;
        let found: Vec<(String, Option<String>)> =
            super::super::explain::dropped_lines(raw, HeaderNames::default())
                .into_iter()
                .map(|(l, h)| {
                    let text =
                        |r: std::ops::Range<usize>| String::from_utf8_lossy(&raw[r]).into_owned();
                    (text(l), h.map(text))
                })
                .collect();
        assert_eq!(
            found,
            [
                ("X@A: 1".to_owned(), None),
                ("X_B: 2".to_owned(), Some("h".to_owned()))
            ]
        );
        // The same without the line httparse refuses: read as it came.
        let fast = b"GET / HTTP/1.1\nX_B: 2\nHost: h\nX_C: 3\n\n";
        let head = parse(fast, Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(head.len, fast.len());
        let found: Vec<Option<bool>> =
            super::super::explain::dropped_lines(&head.raw, HeaderNames::default())
                .into_iter()
                .map(|(_, h)| h.map(|h| &head.raw[h] == b"h"))
                .collect();
        assert_eq!(found, [None, Some(true)]);
        // The size limits are the head's as it came, not its copy's.
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n".to_vec();
        for _ in 0..3 {
            big.extend_from_slice(format!("X-Big: {}\r\n", "a".repeat(8000)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        let head = parse(&big, Limits::default())
            .expect("within 4 8k")
            .expect("complete");
        assert_eq!(head.len, big.len());
    }

    #[test]
    fn dropped_lines_are_found_in_a_head_still_arriving_and_past_the_slots() {
        // Partial: the refused line comes before the head is whole.
        let partial = b"GET / HTTP/1.1\r\nX@A: 1\r\nHost: h\r\n";
        assert!(matches!(parse(partial, Limits::default()), Ok(None)));
        // More lines than the stack's slots, lines dropped before and
        // past them.
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX{A: 1\r\n".to_vec();
        for i in 0..150 {
            raw.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"X@C: 3\r\nX_B: 2\r\n\r\n");
        let (lines, kept) = dropped(&raw, HeaderNames::default()).expect("valid");
        assert_eq!(lines, ["X{A: 1", "X@C: 3", "X_B: 2"]);
        assert_eq!(kept.len(), 151);
    }

    /// Heads made of pieces that take every path (lines httparse refuses
    /// that nginx drops or refuses, bare CR and LF, framing headers,
    /// more lines than the slots) parse without a panic; a head taken is
    /// the head as it came, and nothing dropped is a framing header.
    #[test]
    fn any_head_is_read_or_refused() {
        let pieces: [&[u8]; 14] = [
            b"GET / HTTP/1.1\r\n",
            b"Host: h\r\n",
            b"X@Y: 1\r\n",
            b"X_Y: 2\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b":",
            b"a",
            b"\xc3\xa9",
            b"\x00",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut pick = seed;
            let mut buf = pieces[0].to_vec();
            // Now and then more lines than the slots.
            let extra = if round % 97 == 0 { 120 } else { 0 };
            for i in 0..(pick % 12 + extra) {
                buf.extend_from_slice(pieces[((pick >> (i % 8)) % 14) as usize]);
                pick = pick.rotate_right(7) ^ i;
            }
            buf.extend_from_slice(b"\r\n\r\n");
            if let Ok(Some(head)) = parse(&buf, Limits::default()) {
                assert!(head.len <= buf.len());
                assert!(buf[..head.len].ends_with(b"\n"));
                if head.dropped {
                    let names = HeaderNames::default();
                    for (l, _) in super::super::explain::dropped_lines(&head.raw, names) {
                        let text = &head.raw[l];
                        assert!(nginx_drops(text, names), "{text:?}");
                    }
                }
            }
        }
    }
}
