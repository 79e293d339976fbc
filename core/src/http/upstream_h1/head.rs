//! The response head: httparse does the parsing; this decides the body's
//! framing and whether the connection can be kept (RFC 9112 section 6.3,
//! with the choices hyper's client made before), and builds the
//! `http::response::Parts` passed to the client without the headers that
//! are the proxy's own business.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::response::Parts;
use http::{HeaderMap, StatusCode, Version};

use crate::http::h1::parse::content_length;
use crate::http::upstream_h1::request::Ask;

/// Header slots on the stack; a head with more is parsed again with as
/// many as it has lines.
const HEADERS: usize = 100;

/// The longest response head read before it is refused as invalid
/// (hyper's read buffer limit).
pub const HEAD_MAX: usize = 8192 + 4096 * 100;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// A response head nobody can read: bad syntax, bad or contradictory
/// framing, too many headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// A final response head.
pub struct Head {
    pub parts: Parts,
    /// Bytes of the head in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// The upstream may take another request on the connection once the
    /// body is read.
    pub keep_alive: bool,
    /// The connection is a tunnel from here (`101 Switching Protocols`,
    /// or a successful CONNECT).
    pub upgrade: bool,
}

pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// An interim `1xx` response of this many bytes, skipped (not 101).
    Interim(usize),
    Final(Head),
}

/// What a response header is to the proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Passed, with no name lookup.
    ContentType,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// Hop-by-hop, or Server and Date, which the proxy writes itself.
    Skipped,
    Passed,
}

/// One length check, then at most two comparisons, per header.
fn class(name: &[u8]) -> Class {
    // `lower` is lowercase letters and `-`: a name byte with the 0x20 bit
    // set equals its byte only if it is that letter in either case, or
    // `-` (the other byte that would match, CR, is not in a name).
    let is = |lower: &[u8]| name.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l);
    match name.len() {
        2 if is(b"te") => Class::Skipped,
        4 if is(b"date") => Class::Skipped,
        6 if is(b"server") => Class::Skipped,
        7 if is(b"upgrade") => Class::Upgrade,
        7 if is(b"trailer") => Class::Skipped,
        10 if is(b"connection") => Class::Connection,
        10 if is(b"keep-alive") => Class::Skipped,
        12 if is(b"content-type") => Class::ContentType,
        14 if is(b"content-length") => Class::ContentLength,
        16 if is(b"proxy-connection") => Class::Skipped,
        17 if is(b"transfer-encoding") => Class::TransferEncoding,
        _ => Class::Passed,
    }
}

/// Parses the response head at the start of `buf`, for a request whose
/// method is `ask`.
pub fn parse(buf: &[u8], ask: Ask) -> Result<Parsed, Invalid> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots);
    match parsed {
        Ok(httparse::Status::Complete(len)) => build(buf, len, &res, ask),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            // Rare: as many slots as the head has lines (nginx has no count
            // limit, only a size).
            let lines = buf.iter().filter(|&&c| c == b'\n').count();
            let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); lines];
            let mut res = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
            {
                Ok(httparse::Status::Complete(len)) => build(buf, len, &res, ask),
                Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
                Err(_) => Err(Invalid),
            }
        }
        Err(_) => Err(Invalid),
    }
}

/// The head of `len` bytes that httparse read into `res`.
fn build(
    buf: &[u8],
    len: usize,
    res: &httparse::Response<'_, '_>,
    ask: Ask,
) -> Result<Parsed, Invalid> {
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err(Invalid);
    };
    let status = StatusCode::from_u16(code).map_err(|_| Invalid)?;
    if status.is_informational() && code != 101 {
        return Ok(Parsed::Interim(len));
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let upgrade = code == 101 || (ask == Ask::Connect && status.is_success());

    // One pass: the framing and persistence headers are read, the headers
    // that are the proxy's own business skipped, the rest kept. One copy
    // of the head; header values are slices of it.
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(res.headers.len());
    let mut chunked_last = None;
    let mut length: Option<u64> = None;
    let mut length_bad = false;
    let mut keep_alive = version == Version::HTTP_11;
    let mut saw_close = false;
    // The first Content-Length line is passed on when it is a number;
    // others (repeats, lists) are not, and a list stands as its value.
    let mut length_passed = false;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let kind = class(name);
        match kind {
            Class::TransferEncoding => {
                // Only the last line's last coding counts.
                chunked_last = Some(last_is_chunked(h.value));
                continue;
            }
            Class::Connection => {
                // Once a line asks to close, a later keep-alive does not
                // undo it.
                if saw_close || has_token(h.value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(h.value, b"keep-alive");
                }
                continue;
            }
            Class::ContentLength => {
                let first = length.is_none() && !length_bad;
                // Several values (lines or a list) must agree.
                for v in h.value.split(|&c| c == b',') {
                    match (content_length(v.trim_ascii()), length) {
                        (Some(n), Some(l)) if l != n => length_bad = true,
                        (Some(n), _) => length = Some(n),
                        (None, _) => length_bad = true,
                    }
                }
                if !first || content_length(h.value).is_none() {
                    continue;
                }
                length_passed = true;
            }
            // An upgrade keeps its Upgrade header: it says what the tunnel
            // speaks.
            Class::Upgrade if upgrade => {}
            Class::Upgrade | Class::Skipped => continue,
            Class::ContentType | Class::Passed => {}
        }
        let start = h.value.as_ptr() as usize - base;
        // SAFETY: httparse took only tab, visible ASCII and obs-text
        // (0x80-0xff) into a value, which is what a HeaderValue holds.
        let value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(copy.slice(start..start + h.value.len()))
        };
        let name = match kind {
            Class::ContentType => CONTENT_TYPE,
            Class::ContentLength => CONTENT_LENGTH,
            _ => HeaderName::from_bytes(name).map_err(|_| Invalid)?,
        };
        headers.append(name, value);
    }
    if let (Some(n), false, false, None) = (length, length_bad, length_passed, chunked_last) {
        // A list of equal lengths goes on as the one length.
        headers.append(CONTENT_LENGTH, HeaderValue::from(n));
    }
    if chunked_last.is_some() && headers.contains_key(CONTENT_LENGTH) {
        // The length of a body that Transfer-Encoding frames is not passed
        // on: it says nothing about the body the client gets. Rare: the
        // map is rebuilt, in order, without it.
        let mut name = None;
        for (n, value) in std::mem::take(&mut headers) {
            name = n.or(name);
            if let Some(n) = name.as_ref().filter(|n| **n != CONTENT_LENGTH) {
                headers.append(n.clone(), value);
            }
        }
    }
    let framing = if upgrade || code == 204 || code == 304 || ask == Ask::Head {
        Framing::None
    } else if let Some(chunked) = chunked_last {
        if version == Version::HTTP_10 {
            return Err(Invalid);
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if length_bad {
        return Err(Invalid);
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let keep_alive = keep_alive && !upgrade && framing != Framing::Close;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Parsed::Final(Head {
        parts,
        len,
        framing,
        keep_alive,
        upgrade,
    }))
}

/// Whether a comma-separated list has `token`.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether a Transfer-Encoding line ends with `chunked`.
fn last_is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&c| c == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, ask: Ask) -> Result<Head, Invalid> {
        match parse(raw.as_bytes(), ask)? {
            Parsed::Final(h) => Ok(h),
            Parsed::Partial => panic!("partial: {raw:?}"),
            Parsed::Interim(_) => panic!("interim: {raw:?}"),
        }
    }

    fn framing(raw: &str) -> Result<(Framing, bool), Invalid> {
        head(raw, Ask::Other).map(|h| (h.framing, h.keep_alive))
    }

    #[test]
    fn framing_as_rfc_9112() {
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", (Framing::Length(12), true)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", (Framing::Length(0), true)),
            ("HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 5\r\n\r\n", (Framing::Length(5), true)),
            ("HTTP/1.1 200 OK\r\ntRaNsFeR-eNcOdInG: chunked\r\nCONNECTION: Close\r\n\r\n", (Framing::Chunked, false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", (Framing::Length(5), true)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", (Framing::Chunked, true)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", (Framing::Chunked, true)),
            // Transfer-Encoding wins over Content-Length.
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", (Framing::Chunked, true)),
            // A coding that is not chunked, or no framing at all: until
            // the close, and the connection cannot be kept.
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", (Framing::Close, false)),
            ("HTTP/1.1 200 OK\r\n\r\n", (Framing::Close, false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", (Framing::Length(1), false)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: x, CLOSE\r\nConnection: keep-alive\r\n\r\n", (Framing::Length(1), false)),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", (Framing::Length(1), false)),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n", (Framing::Length(1), true)),
            // No body whatever the headers say.
            ("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", (Framing::None, true)),
            ("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", (Framing::None, true)),
        ];
        for (raw, want) in cases {
            assert_eq!(framing(raw), Ok(want), "{raw:?}");
        }
        let head_of_head =
            head("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", Ask::Head).expect("valid");
        assert_eq!(head_of_head.framing, Framing::None);
        assert_eq!(head_of_head.parts.headers["content-length"], "7");
    }

    #[test]
    fn invalid_heads() {
        for raw in [
            "HTTP/1.1 abc\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw.as_bytes(), Ask::Other), Err(Invalid)),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn many_headers_as_nginx_takes_them() {
        let many: String = (0..300).map(|i| format!("X{i}: a\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok");
        let h = head(&raw, Ask::Other).expect("valid");
        assert_eq!(h.parts.headers.len(), 301);
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(h.len, raw.len() - 2);
    }

    #[test]
    fn one_content_length_goes_on() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: 1\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nX: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 3\r\n\r\n",
        ] {
            let h = head(raw, Ask::Other).expect("valid");
            let lengths: Vec<_> = h.parts.headers.get_all("content-length").iter().collect();
            assert_eq!(lengths, ["3"], "{raw:?}");
            assert_eq!(h.parts.headers.len(), 2, "{raw:?}");
        }
    }

    #[test]
    fn interim_partial_and_upgrade() {
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", Ask::Other),
            Ok(Parsed::Partial)
        ));
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert!(matches!(parse(raw, Ask::Other), Ok(Parsed::Interim(25))));
        assert!(matches!(
            parse(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                Ask::Other
            ),
            Ok(Parsed::Interim(_))
        ));
        let up = head(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            Ask::Other,
        )
        .expect("valid");
        assert!(up.upgrade && !up.keep_alive);
        assert_eq!(up.framing, Framing::None);
        assert_eq!(up.parts.headers["upgrade"], "websocket");
        assert!(!up.parts.headers.contains_key("connection"));
        let tunnel = head("HTTP/1.1 200 OK\r\n\r\n", Ask::Connect).expect("valid");
        assert!(tunnel.upgrade);
    }

    #[test]
    fn proxy_headers_are_skipped_while_building() {
        let h = head(
            "HTTP/1.1 200 OK\r\nServer: backend\r\nDate: x\r\nConnection: keep-alive\r\n\
             Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\
             Upgrade: h2c\r\nProxy-Connection: x\r\nTrailer: T\r\nTE: t\r\n\
             X-A: 1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n",
            Ask::Other,
        )
        .expect("valid");
        let names: Vec<&str> = h.parts.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a", "set-cookie"]);
        assert_eq!(h.parts.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(h.parts.status, 200);
        assert_eq!(h.parts.version, Version::HTTP_11);
    }
}
