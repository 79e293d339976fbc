//! Why a request head was refused, in nginx's words: the line nginx logs
//! for each refusal while it reads a head (`ngx_http_process_request_line`,
//! `ngx_http_process_request_headers`, `ngx_http_process_request_header`),
//! worked out again from the head's bytes, only for a head refused.

use std::ops::Range;

use super::parse::{self, Bad, Limits, Refusal};
use crate::http::head::HeaderNames;

/// A refusal as nginx logs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Explained {
    /// The line's text before its context, e.g. `client sent invalid
    /// method while reading client request line`.
    pub message: String,
    /// nginx logs a bad chunked body at `error`, the rest at `info`.
    pub error: bool,
    /// The request line (`$request` and the context's `request:`), in
    /// the bytes explained.
    pub line: Range<usize>,
    /// The header lines read before the failure, without their line
    /// ends (`$http_user_agent` and the like in the access log).
    pub read: Vec<Range<usize>>,
    /// The Host value among them (the context's `host:`).
    pub host: Option<Range<usize>>,
    /// Those nginx ignored for their names (`ignore_invalid_headers`),
    /// each logged before the refusal's line, with the Host value read
    /// before it.
    pub ignored: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// `$request_length`: what nginx had read when it refused.
    pub length: u64,
}

/// How far nginx read a head it refused: `$request_length` counts the
/// request line once it parsed it, then each header line it took (one
/// it ignored for its name too), then the empty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTo {
    /// Nothing: the request line itself was refused.
    Nothing,
    /// The request line, whose target or host was refused after it.
    RequestLine,
    /// The lines before the header line at this offset, which was refused.
    Before(usize),
    /// Through the `nth` (from 0) line of the header `name` (lowercase),
    /// which that line's handler refused (a second Host, a bad Host).
    Through(&'static [u8], usize),
    /// The whole head: refused for what its lines said together.
    Head,
}

/// The head `raw` as it came: a head read without the lines nginx ignores
/// for their names is the request line, the lines kept, the empty line,
/// then all the header lines as they came (`parse::set_aside`).
pub fn as_came(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (_, end) = request_line(raw);
    let lf = |from| line_feed(raw, from);
    // The line feed that ends the last line kept, then the empty line's.
    let kept_end = match header_lines(raw, end).last() {
        Some(l) => lf(l.end),
        None => Some(end),
    };
    let Some((kept_end, blank_end)) = kept_end.and_then(|k| Some((k, lf(k + 1)?))) else {
        return raw.into();
    };
    let tail = blank_end + 1;
    if tail >= raw.len() {
        return raw.into();
    }
    let first = end + 1;
    let mut head = raw[..first].to_vec();
    head.extend_from_slice(&raw[tail..]);
    head.extend_from_slice(&raw[kept_end + 1..tail]);
    head.into()
}

/// Where the first line feed at or after `from` is.
fn line_feed(buf: &[u8], from: usize) -> Option<usize> {
    let at = buf.get(from..)?.iter().position(|&c| c == b'\n')?;
    Some(from + at)
}

/// nginx's `$request_length` for the head at the start of `buf`, refused
/// once it had read `to` (empty lines before the request line are not
/// counted).
pub fn request_length(buf: &[u8], to: ReadTo) -> u64 {
    let (line, end) = request_line(buf);
    // Past the line feed at or after `from`.
    let past = |from| line_feed(buf, from).map_or(buf.len(), |i| i + 1);
    let lines = || header_lines(buf, end);
    let head = || {
        let last = lines().last().map_or(end, |l| past(l.end) - 1);
        past(last + 1)
    };
    let stop = match to {
        ReadTo::Nothing => return 0,
        ReadTo::RequestLine => past(end),
        ReadTo::Before(at) => at,
        ReadTo::Through(name, nth) => lines()
            .iter()
            .filter(|l| value_of(&buf[(*l).clone()], name).is_some())
            .nth(nth)
            .map_or_else(head, |l| past(l.end)),
        ReadTo::Head => head(),
    };
    stop.min(buf.len()).saturating_sub(line.start) as u64
}

const REQUEST_LINE: &str = " while reading client request line";
const HEADERS: &str = " while reading client request headers";

/// nginx's `NGX_MAX_ERROR_STR - 300`: how much of a too long header
/// line its message shows.
const SHOWN: usize = 1748;

/// Why `buf`, the head (and what came with it) that `refusal` refused,
/// was refused.
pub fn explain(buf: &[u8], limits: Limits, refusal: Refusal) -> Explained {
    let (mut line, end) = request_line(buf);
    let start = line.start;
    if refusal == Refusal::UriTooLong {
        // What nginx had of it: one large buffer.
        line.end = line.end.min(start + limits.line);
    }
    let lines = header_lines(buf, end);
    let (message, at) = match refusal {
        Refusal::UriTooLong => (format!("client sent too long URI{REQUEST_LINE}"), None),
        Refusal::Version => (format!("client sent invalid version{REQUEST_LINE}"), None),
        Refusal::HeaderTooLarge => {
            // The first line past the limit, else the one being read
            // when the head passed its limit.
            let long = lines
                .iter()
                .find(|l| l.len() + 1 > limits.line)
                .or(lines.last())
                .cloned()
                .unwrap_or(end..end);
            let shown = &buf[long.start..long.end.min(long.start + SHOWN)];
            (
                format!(
                    "client sent too long header line: \"{}...\"{HEADERS}",
                    String::from_utf8_lossy(shown)
                ),
                Some(long.start),
            )
        }
        Refusal::NotImplemented => {
            let coding = lines
                .iter()
                .find_map(|l| value_of(&buf[l.clone()], b"transfer-encoding"))
                .unwrap_or_default();
            (
                format!(
                    "client sent unknown \"Transfer-Encoding\": \"{}\"{HEADERS}",
                    String::from_utf8_lossy(coding)
                ),
                None,
            )
        }
        Refusal::Bad(Bad::RequestLine) => (invalid_request_line(&buf[line.clone()]), None),
        Refusal::Bad(Bad::HeaderLine) => invalid_header_line(buf, &lines, limits),
        Refusal::Bad(why) => (framing(buf, &lines, why), None),
        Refusal::TooLarge => (
            "client intended to send too large chunked body".to_owned(),
            None,
        ),
    };
    let error = matches!(refusal, Refusal::Bad(Bad::ChunkedBody));
    // The header lines nginx had read: those before the failing line,
    // or all once the head was read whole.
    let read: Vec<Range<usize>> = if matches!(
        refusal,
        Refusal::Bad(Bad::RequestLine) | Refusal::UriTooLong | Refusal::Version
    ) {
        Vec::new()
    } else {
        lines
            .into_iter()
            .take_while(|l| at.is_none_or(|at| l.start < at))
            .collect()
    };
    let ignored = match refusal {
        // The head as read, perhaps re-read without its dropped lines.
        Refusal::Bad(Bad::ChunkedBody) => dropped_lines(buf, limits.names),
        _ => dropped_among(buf, &read, limits.names),
    };
    let host = read.iter().find_map(|l| {
        let value = value_of(&buf[l.clone()], b"host")?;
        let from = value.as_ptr() as usize - buf.as_ptr() as usize;
        Some(from..from + value.len())
    });
    let to = match refusal {
        Refusal::Bad(Bad::RequestLine) | Refusal::UriTooLong | Refusal::Version => ReadTo::Nothing,
        Refusal::Bad(Bad::HeaderLine) | Refusal::HeaderTooLarge => {
            at.map_or(ReadTo::Head, ReadTo::Before)
        }
        // Content-Length and Transfer-Encoding take one line each: the
        // second is refused as it is read.
        Refusal::Bad(Bad::DuplicateLength) => ReadTo::Through(b"content-length", 1),
        Refusal::Bad(Bad::DuplicateCoding) => ReadTo::Through(b"transfer-encoding", 1),
        _ => ReadTo::Head,
    };
    Explained {
        message,
        error,
        line,
        read,
        host,
        ignored,
        length: request_length(buf, to),
    }
}

/// The header lines of the head `raw` that were dropped for their names
/// (`ignore_invalid_headers`), in order, as nginx shows them in its `info`
/// line (without the spaces after the value), each with the Host value
/// read before it (the line's `host:`). A head re-read without them has
/// its lines as they came after its blank line (`parse::set_aside`).
pub fn dropped_lines(raw: &[u8], names: HeaderNames) -> Vec<(Range<usize>, Option<Range<usize>>)> {
    let (_, end) = request_line(raw);
    let kept = header_lines(raw, end);
    // The blank line's line feed, the second from the last header line's
    // end (or the request line's).
    let blank = kept.last().map_or(end, |l| l.end);
    let blank = raw[blank..]
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'\n')
        .nth(1)
        .map_or(raw.len(), |(i, _)| blank + i);
    let sent = header_lines(raw, blank);
    dropped_among(raw, if sent.is_empty() { &kept } else { &sent }, names)
}

/// Of the header `lines` of `buf`, those nginx drops for their names,
/// each with the Host value read before it.
fn dropped_among(
    buf: &[u8],
    lines: &[Range<usize>],
    names: HeaderNames,
) -> Vec<(Range<usize>, Option<Range<usize>>)> {
    let mut host = None;
    let mut dropped = Vec::new();
    for l in lines {
        let text = &buf[l.clone()];
        if parse::nginx_drops(text, names) {
            dropped.push((shown(buf, l), host.clone()));
        } else if host.is_none() {
            host = value_of(text, b"host").map(|v| {
                let from = v.as_ptr() as usize - buf.as_ptr() as usize;
                from..from + v.len()
            });
        }
    }
    dropped
}

/// A line as nginx shows it: without the whitespace after its value.
fn shown(buf: &[u8], line: &Range<usize>) -> Range<usize> {
    line.start..line.start + buf[line.clone()].trim_ascii_end().len()
}

/// nginx's words for a request line it refuses: its method is `A-Z`,
/// `_` and `-` up to a space, or else the method is what it refuses.
fn invalid_request_line(text: &[u8]) -> String {
    let method = text.iter().position(|&c| c == b' ').map(|i| &text[..i]);
    let what = match method {
        Some(m)
            if !m.is_empty()
                && m.iter()
                    .all(|&c| c.is_ascii_uppercase() || c == b'_' || c == b'-') =>
        {
            "request"
        }
        _ => "method",
    };
    format!("client sent invalid {what}{REQUEST_LINE}")
}

/// nginx's words for the first header line it refuses: the line up to
/// the byte that ended it, that byte escaped, then `...`; and where the
/// line starts.
fn invalid_header_line(
    buf: &[u8],
    lines: &[Range<usize>],
    limits: Limits,
) -> (String, Option<usize>) {
    let refused = lines.iter().find(|l| {
        // Taken, or ignored for its name: not the one refused.
        let text = &buf[(*l).clone()];
        !(taken_whole(text) || parse::nginx_drops(text, limits.names))
    });
    let Some(l) = refused else {
        return (format!("client sent invalid header line{HEADERS}"), None);
    };
    let text = &buf[l.clone()];
    let name = match text.iter().position(|&c| c == b':') {
        Some(0) => &text[..1],
        Some(n) => &text[..n],
        None => text,
    };
    let stop = if name == b":" {
        Some(0)
    } else {
        name.iter().position(|&c| c <= 0x20 || c == 0x7f)
    };
    let shown = match stop {
        Some(i) => format!(
            "{}\\x{:02x}...",
            String::from_utf8_lossy(&text[..i]),
            text[i]
        ),
        None => String::from_utf8_lossy(text).into_owned(),
    };
    (
        format!("client sent invalid header line: \"{shown}\"{HEADERS}"),
        Some(l.start),
    )
}

/// A header line httparse takes as it is.
fn taken_whole(line: &[u8]) -> bool {
    let mut slots = [httparse::EMPTY_HEADER; 1];
    let mut with_end = line.to_vec();
    with_end.extend_from_slice(b"\r\n\r\n");
    matches!(
        httparse::parse_headers(&with_end, &mut slots),
        Ok(httparse::Status::Complete(_))
    )
}

/// nginx's words for the framing rule `why` the head broke, naming
/// the lines of a repeated header (the second, then the first).
fn framing(buf: &[u8], lines: &[Range<usize>], why: Bad) -> String {
    let repeated = |name: &[u8]| {
        let mut found = lines
            .iter()
            .map(|l| &buf[l.clone()])
            .filter(|text| value_of(text, name).is_some());
        let first = found.next().unwrap_or_default();
        let second = found.next().unwrap_or_default();
        format!(
            "client sent duplicate header line: \"{}\", previous value: \"{}\"{HEADERS}",
            as_logged(second),
            as_logged(first)
        )
    };
    match why {
        Bad::DuplicateLength => repeated(b"content-length"),
        Bad::DuplicateCoding => repeated(b"transfer-encoding"),
        Bad::InvalidLength => format!("client sent invalid \"Content-Length\" header{HEADERS}"),
        Bad::CodingInHttp10 => {
            format!("client sent HTTP/1.0 request with \"Transfer-Encoding\" header{HEADERS}")
        }
        Bad::LengthAndCoding => format!(
            "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time{HEADERS}"
        ),
        Bad::ChunkedBody => "client sent invalid chunked body".to_owned(),
        Bad::RequestLine | Bad::HeaderLine => format!("client sent invalid request{REQUEST_LINE}"),
    }
}

/// The value of `line` when it is a `name` header line (any case).
pub fn value_of<'b>(line: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    let (n, value) = line.split_at(line.iter().position(|&c| c == b':')?);
    n.eq_ignore_ascii_case(name)
        .then(|| value[1..].trim_ascii())
}

/// A header line as nginx prints one: `Name: value`.
fn as_logged(line: &[u8]) -> String {
    match line.iter().position(|&c| c == b':') {
        Some(i) => format!(
            "{}: {}",
            String::from_utf8_lossy(&line[..i]),
            String::from_utf8_lossy(line[i + 1..].trim_ascii())
        ),
        None => String::from_utf8_lossy(line).into_owned(),
    }
}

/// The header lines after the request line that ends at `end`, up to the
/// empty line or the end of `buf`, without their line ends.
fn header_lines(buf: &[u8], end: usize) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut start = end + 1;
    while start < buf.len() {
        let stop = buf[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(buf.len(), |i| start + i);
        let line = start..trim_cr(buf, start, stop);
        if line.is_empty() {
            break;
        }
        lines.push(line);
        start = stop + 1;
    }
    lines
}

/// The request line of the head at the start of `buf` (after any empty
/// lines, which httparse skips as nginx does), without its line end, and
/// where its line feed is (the end of `buf` without one).
pub fn request_line(buf: &[u8]) -> (Range<usize>, usize) {
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len());
    let end = buf[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(buf.len(), |i| start + i);
    (start..trim_cr(buf, start, end), end)
}

fn trim_cr(buf: &[u8], start: usize, end: usize) -> usize {
    if end > start && buf.get(end - 1) == Some(&b'\r') {
        end - 1
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head read without an ignored line is counted as it came.
    #[test]
    fn heads_as_they_came() {
        let plain: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(&*as_came(plain), plain);
        let set_aside =
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nX@Y: 1\r\nHost: a\r\nHost: b\r\n";
        let came = b"GET / HTTP/1.1\r\nX@Y: 1\r\nHost: a\r\nHost: b\r\n\r\n";
        assert_eq!(&*as_came(set_aside), &came[..]);
        assert_eq!(
            request_length(&as_came(set_aside), ReadTo::Through(b"host", 1)),
            42
        );
        assert_eq!(request_length(&as_came(set_aside), ReadTo::Head), 44);
        assert_eq!(request_length(b"\r\nGET / HTTP/1.1\n\n", ReadTo::Head), 16);
        assert_eq!(
            request_length(b"GET / HTTP/1.1\r\n", ReadTo::RequestLine),
            16
        );
        assert_eq!(request_length(b"GET / HTTP/1.1\r\nHost", ReadTo::Head), 20);
    }

    /// Any bytes, with any refusal, are explained without a panic, and
    /// the request line and host are places in them.
    #[test]
    fn any_bytes_are_explained() {
        let pieces: [&[u8]; 12] = [
            b"GET",
            b" ",
            b"/",
            b"\r\n",
            b"\n",
            b":",
            b"Host",
            b"a",
            b"\x01",
            b"\xc3",
            b"HTTP/1.1",
            b"Transfer-Encoding: chunked\r\n",
        ];
        let refusals = [
            Refusal::Bad(Bad::RequestLine),
            Refusal::Bad(Bad::HeaderLine),
            Refusal::Bad(Bad::DuplicateLength),
            Refusal::Bad(Bad::DuplicateCoding),
            Refusal::Bad(Bad::ChunkedBody),
            Refusal::HeaderTooLarge,
            Refusal::UriTooLong,
            Refusal::NotImplemented,
            Refusal::Version,
            Refusal::TooLarge,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut pick = seed;
            for _ in 0..(pick % 16) {
                buf.extend_from_slice(pieces[(pick % 12) as usize]);
                pick = pick.rotate_right(5);
            }
            let limits = Limits {
                line: 8,
                ..Limits::default()
            };
            let refusal = refusals[(seed % 10) as usize];
            let why = explain(&buf, limits, refusal);
            assert!(why.message.starts_with("client "), "{}", why.message);
            assert!(why.line.end <= buf.len());
            assert!(why.host.is_none_or(|h| h.end <= buf.len()));
        }
    }

    #[test]
    fn the_line_nginx_refuses_is_shown_up_to_its_bad_byte() {
        let why = explain(
            b"GET / HTTP/1.1\r\nHost: h\r\nX_Ok: 1\r\nX Y: 2\r\n\r\n",
            Limits::default(),
            Refusal::Bad(Bad::HeaderLine),
        );
        assert_eq!(
            why.message,
            "client sent invalid header line: \"X\\x20...\" while reading client request headers"
        );
        assert_eq!(why.line, 0..14);
        assert_eq!(why.host, Some(22..23));
    }
}
