//! The response head: httparse does the parsing; this decides the body's
//! framing and whether the connection can be kept (RFC 9112 section 6.3,
//! with the choices hyper's client made before), and keeps the header
//! lines passed to the client, without those that are the proxy's own
//! business, as lines ready to write ([`Passed`]): no map is built for a
//! response that goes to an HTTP/1 client.

use std::mem::MaybeUninit;

use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, StatusCode, Version};

use crate::http::h1::parse::content_length;
use crate::http::upstream_h1::request::{Ask, Reading};

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

/// The upstream's header lines the client gets, in order, as
/// `Name: value\r\n` lines with the names as the upstream spelled them
/// (nginx passes them so). An HTTP/1 client gets them with one copy; only
/// HTTP/2 and a tunnel's `101` make a map of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Passed {
    pub lines: Vec<u8>,
    /// The value of the Content-Length line among them.
    pub length: Option<u64>,
    /// A Location or Refresh line is among them (`proxy_redirect`).
    pub redirect: bool,
    /// The upstream's reason phrase, which nginx passes on, where it is
    /// not the one waypost would write.
    pub reason: Option<Box<[u8]>>,
    /// The upstream's Server and Date lines are among them
    /// (`proxy_pass_header`): the proxy writes none of its own.
    pub server: bool,
    pub date: bool,
    /// The request, for the line logged if the body breaks off.
    pub origin: Option<crate::http::upstream_log::Origin>,
    /// `proxy_redirect` made the Location a path, and it was made
    /// absolute: its line follows the front ones ([`Passed::front`]).
    pub location_front: bool,
    /// A `proxy_redirect` rule rewrote the Location (nginx's
    /// `headers_out.location`): over HTTP/2 it goes to the fixed place
    /// even where it stays among the others over HTTP/1.
    pub location_set: bool,
    /// Bytes of `lines` nginx writes at its fixed places
    /// ([`Passed::front`]); kept by whatever sets the lines.
    pub front: u32,
}

/// `proxy_hide_header` and `proxy_pass_header` of a location.
#[derive(Debug, Default)]
pub struct HeaderRules {
    /// Lowercase names hidden besides nginx's defaults.
    hide: Box<[Box<[u8]>]>,
    /// Lowercase names among nginx's defaults passed all the same.
    pass: Box<[Box<[u8]>]>,
    /// A FastCGI application's lines: nginx's defaults are FastCGI's
    /// (Status and X-Accel-*; Date and Server pass).
    fastcgi: bool,
}

impl HeaderRules {
    /// The rules of `hide` and `pass` (lowercase names); `None` with
    /// neither.
    pub fn new(hide: &[String], pass: &[String]) -> Option<HeaderRules> {
        if hide.is_empty() && pass.is_empty() {
            return None;
        }
        let names = |list: &[String]| list.iter().map(|n| n.as_bytes().into()).collect();
        Some(HeaderRules {
            hide: names(hide),
            pass: names(pass),
            fastcgi: false,
        })
    }

    /// `fastcgi_hide_header` and `fastcgi_pass_header`: always rules, as
    /// the lines the head keeps for a log are dropped by them.
    pub fn fastcgi(hide: &[String], pass: &[String]) -> HeaderRules {
        let names = |list: &[String]| list.iter().map(|n| n.as_bytes().into()).collect();
        HeaderRules {
            hide: names(hide),
            pass: names(pass),
            fastcgi: true,
        }
    }

    /// One of nginx's default hidden lines.
    fn hidden_by_default(&self, name: &[u8]) -> bool {
        if self.fastcgi {
            crate::http::fastcgi::response::hidden(name)
                == Some(crate::http::fastcgi::response::Class::Hidden)
        } else {
            class(name) == Class::Hidden
        }
    }

    /// Whether the response must keep nginx's default hidden headers for
    /// [`HeaderRules::apply`] to choose from.
    pub fn keeps_hidden(&self) -> bool {
        !self.pass.is_empty()
    }

    /// The upstream's lines without the hidden ones: nginx's defaults
    /// (Date, Server, X-Pad, X-Accel-*) and `proxy_hide_header`'s, but
    /// those `proxy_pass_header` names.
    pub fn apply(&self, passed: &mut Passed) {
        let listed =
            |list: &[Box<[u8]>], name: &[u8]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        let mut lines = Vec::with_capacity(passed.lines.len());
        let (mut server, mut date) = (false, false);
        for (name, value) in passed.iter() {
            // nginx's hidden set: its defaults and the hidden names, less
            // the passed ones; the length is never hidden (nginx writes
            // it from the body it sends).
            let hidden = (self.hidden_by_default(name) || listed(&self.hide, name))
                && !listed(&self.pass, name)
                && class(name) != Class::ContentLength;
            if hidden {
                continue;
            }
            server |= name.eq_ignore_ascii_case(b"server");
            date |= name.eq_ignore_ascii_case(b"date");
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value);
            lines.extend_from_slice(b"\r\n");
        }
        passed.set_lines(lines);
        passed.server = server;
        passed.date = date;
    }
}

/// What [`Passed::edit_lines`] does with a line.
pub enum LineEdit {
    Keep,
    Drop,
    Set(Vec<u8>),
}

impl Passed {
    /// Whether a line nginx hides by default is among them (kept for a
    /// log, or for `proxy_pass_header`).
    pub fn has_hidden(&self) -> bool {
        self.iter().any(|(name, _)| class(name) == Class::Hidden)
    }

    /// Each line again as `edit` has it: kept, dropped, or with a new
    /// value.
    pub fn edit_lines(&mut self, edit: impl Fn(&[u8], &[u8]) -> LineEdit) {
        let mut lines = Vec::with_capacity(self.lines.len());
        for (name, value) in self.iter() {
            let set;
            let value = match edit(name, value) {
                LineEdit::Keep => value,
                LineEdit::Drop => continue,
                LineEdit::Set(v) => {
                    set = v;
                    &set[..]
                }
            };
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value);
            lines.extend_from_slice(b"\r\n");
        }
        self.set_lines(lines);
    }

    /// The first line named `name` (lowercase) gets `value`; whether
    /// there was one.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) -> bool {
        self.set(name, value, true)
    }

    /// [`Passed::replace`], the other lines of the name dropped.
    pub fn replace_all(&mut self, name: &[u8], value: &[u8]) -> bool {
        self.set(name, value, false)
    }

    fn set(&mut self, name: &[u8], value: &[u8], keep_others: bool) -> bool {
        let mut lines = Vec::with_capacity(self.lines.len() + value.len());
        let mut done = false;
        for (n, v) in self.iter() {
            let v = if !n.eq_ignore_ascii_case(name) {
                v
            } else if !done {
                done = true;
                value
            } else if keep_others {
                v
            } else {
                continue;
            };
            lines.extend_from_slice(n);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(v);
            lines.extend_from_slice(b"\r\n");
        }
        self.set_lines(lines);
        done
    }

    /// How many bytes of the lines nginx's header filter writes at its
    /// fixed places, before `Connection`: a leading `Content-Type` line,
    /// then a `Content-Length` one (as the head's reading put them), then
    /// a Location that `proxy_redirect` made a path ([`Passed::rewrite`]).
    pub fn front(&self) -> usize {
        (self.front as usize).min(self.lines.len())
    }

    /// The lines, as an edit made them again (in the same order): where
    /// their front ends is found anew.
    pub fn set_lines(&mut self, lines: Vec<u8>) {
        self.lines = lines;
        self.front = self.scan_front() as u32;
    }

    /// [`Passed::front`], read from the lines.
    pub fn scan_front(&self) -> usize {
        let mut at = 0;
        let location: &[u8] = if self.location_front {
            b"Location: "
        } else {
            b"\0"
        };
        for name in [&b"Content-Type: "[..], b"Content-Length: ", location] {
            if self.lines[at..].starts_with(name) {
                match self.lines[at..].iter().position(|&c| c == b'\n') {
                    Some(end) => at += end + 1,
                    None => break,
                }
            }
        }
        at
    }

    /// `name: value` as a line at `at`, and its length: a push where `at`
    /// is the end.
    #[inline(always)]
    fn insert_line(&mut self, at: usize, name: &[u8], value: &[u8]) -> usize {
        let before = self.lines.len();
        if at == before {
            self.push(name, value);
            return self.lines.len() - before;
        }
        self.insert_before(at, name, value)
    }

    #[cold]
    #[inline(never)]
    fn insert_before(&mut self, at: usize, name: &[u8], value: &[u8]) -> usize {
        let line = [name, b": ", value, b"\r\n"].concat();
        let n = line.len();
        self.lines.splice(at..at, line);
        n
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        self.lines.extend_from_slice(name);
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// Each line's name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        lines_of(&self.lines)
    }

    /// The lines in [`Passed::front`], and the others (see [`lines_of`]).
    pub fn front_and_rest(&self) -> (&[u8], &[u8]) {
        self.lines.split_at(self.front())
    }

    /// nginx's `proxy_redirect`: a Location line, or a Refresh line's URL
    /// after `url=`, that starts with a rule's `from` gets the first such
    /// rule's `to` instead; a Location that this makes a path goes through
    /// `absolute` (nginx's header filter with `absolute_redirect on`).
    pub fn rewrite(
        &mut self,
        rule: impl Fn(&[u8]) -> Option<(usize, Vec<u8>)>,
        absolute: impl Fn(&[u8]) -> Vec<u8>,
    ) {
        let mut lines = Vec::with_capacity(self.lines.len() + 64);
        // A Location made absolute moves to nginx's fixed place for it.
        let mut moved = None;
        let mut set = false;
        for (name, value) in self.iter() {
            let location = name.eq_ignore_ascii_case(b"location");
            let at = if location {
                Some(0)
            } else if name.eq_ignore_ascii_case(b"refresh") {
                value
                    .windows(4)
                    .position(|w| w.eq_ignore_ascii_case(b"url="))
                    .map(|i| i + 4)
            } else {
                None
            };
            let rewritten = at.and_then(|at| {
                let tail = &value[at..];
                let (taken, to) = rule(tail)?;
                let new = [&value[..at], &to[..], &tail[taken..]].concat();
                Some(if location && new.first() == Some(&b'/') {
                    // (Still a path under `absolute_redirect off`: then
                    // nginx leaves it among the others.)
                    let made = absolute(&new);
                    let moves = made.first() != Some(&b'/');
                    (made, moves)
                } else {
                    (new, false)
                })
            });
            set |= location && rewritten.is_some();
            let rewritten = match rewritten {
                Some((value, true)) if moved.is_none() && !self.location_front => {
                    moved = Some(value);
                    continue;
                }
                other => other.map(|(value, _)| value),
            };
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(rewritten.as_deref().unwrap_or(value));
            lines.extend_from_slice(b"\r\n");
        }
        self.set_lines(lines);
        self.location_set |= set;
        if let Some(value) = moved {
            let at = self.front();
            let line = [&b"Location: "[..], &value, b"\r\n"].concat();
            self.lines.splice(at..at, line);
            self.location_front = true;
            self.front = self.scan_front() as u32;
        }
    }

    /// Adds the lines to `map` (names lowercased, as HTTP/2 needs).
    pub fn append_to(&self, map: &mut HeaderMap) {
        for (name, value) in self.iter() {
            // httparse took the name as a token and the value as what a
            // HeaderValue holds: neither fails.
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                map.append(n, v);
            }
        }
    }
}

/// `name: value` lines, each `(name, value)`.
pub fn lines_of(lines: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines.split(|&c| c == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|&c| c == b':')?;
        // A value `proxy_redirect` wrote may hold a line end of its own.
        Some((&line[..colon], line.get(colon + 2..).unwrap_or_default()))
    })
}

/// A final response head.
pub struct Head {
    /// Status and version; the headers are in `passed`.
    pub parts: Parts,
    pub passed: Box<Passed>,
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
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// Hop-by-hop headers.
    Skipped,
    /// Server and Date, which the proxy writes itself, and the others
    /// nginx hides by default: skipped unless `proxy_pass_header` may
    /// want them.
    Hidden,
    /// Location and Refresh, which `proxy_redirect` may rewrite.
    Redirect,
    Passed,
}

/// One length check, then at most three comparisons, per header.
fn class(name: &[u8]) -> Class {
    // `lower` is lowercase letters and `-`: a name byte with the 0x20 bit
    // set equals its byte only if it is that letter in either case, or
    // `-` (the other byte that would match, CR, is not in a name).
    let is = |lower: &[u8]| name.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l);
    match name.len() {
        2 if is(b"te") => Class::Skipped,
        // nginx's `proxy_hide_header` defaults: X-Pad and the X-Accel-*
        // headers it reads (waypost does not act on them).
        5 if is(b"x-pad") => Class::Hidden,
        15 if is(b"x-accel-expires") || is(b"x-accel-charset") => Class::Hidden,
        16 if is(b"x-accel-redirect") => Class::Hidden,
        17 if is(b"x-accel-buffering") => Class::Hidden,
        18 if is(b"x-accel-limit-rate") => Class::Hidden,
        4 if is(b"date") => Class::Hidden,
        6 if is(b"server") => Class::Hidden,
        7 if is(b"upgrade") => Class::Upgrade,
        7 if is(b"trailer") => Class::Skipped,
        7 if is(b"refresh") => Class::Redirect,
        8 if is(b"location") => Class::Redirect,
        10 if is(b"connection") => Class::Connection,
        10 if is(b"keep-alive") => Class::Skipped,
        14 if is(b"content-length") => Class::ContentLength,
        16 if is(b"proxy-connection") => Class::Skipped,
        17 if is(b"transfer-encoding") => Class::TransferEncoding,
        _ => Class::Passed,
    }
}

/// Parses the response head at the start of `buf`, for a request whose
/// method is `ask`.
pub fn parse(buf: &[u8], ask: Ask) -> Result<Parsed, Invalid> {
    parse_reading(
        buf,
        Reading {
            ask,
            keep_hidden: false,
        },
    )
}

/// [`parse`], keeping the headers nginx hides by default if `reading`
/// says so.
// Inlined into the exchange's read loop, as it was with one caller (the
// cache's reading of an entry's head is the other).
#[inline(always)]
pub fn parse_reading(buf: &[u8], reading: Reading) -> Result<Parsed, Invalid> {
    let Reading { ask, keep_hidden } = reading;
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots);
    match parsed {
        Ok(httparse::Status::Complete(len)) => build(len, &res, ask, keep_hidden),
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
                Ok(httparse::Status::Complete(len)) => build(len, &res, ask, keep_hidden),
                Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
                Err(_) => Err(Invalid),
            }
        }
        Err(_) => Err(Invalid),
    }
}

/// The head of `len` bytes that httparse read into `res`.
fn build(
    len: usize,
    res: &httparse::Response<'_, '_>,
    ask: Ask,
    keep_hidden: bool,
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
    // that are the proxy's own business skipped, the rest written out as
    // the client will get them.
    let mut passed = Box::new(Passed {
        lines: Vec::with_capacity(len),
        length: None,
        redirect: false,
        server: false,
        date: false,
        origin: None,
        location_front: false,
        location_set: false,
        front: 0,
        reason: match res.reason {
            Some(r) if r == crate::http::response::status_text(status) => None,
            r => Some(r.unwrap_or("").as_bytes().into()),
        },
    });
    // The first Content-Type and the Content-Length passed on go first,
    // in that order and so spelled, where nginx's header filter writes
    // them (the rest keep the upstream's order, after `Connection`).
    // Each is put at the end of the front as it comes: where the lines
    // before it were hidden (an upstream's Server and Date), that is the
    // end of the lines, and nothing moves.
    let mut front = 0;
    let mut typed = false;
    // Where the Content-Length line passed on is.
    let mut length_line = None;
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
                if first && content_length(h.value).is_some() {
                    let n = passed.insert_line(front, b"Content-Length", h.value);
                    length_line = Some(front..front + n);
                    front += n;
                    length_passed = true;
                }
                continue;
            }
            // An upgrade keeps its Upgrade header: it says what the tunnel
            // speaks.
            Class::Upgrade if upgrade => {}
            Class::Hidden if keep_hidden => {}
            Class::Upgrade | Class::Skipped | Class::Hidden => continue,
            Class::Redirect => passed.redirect = true,
            Class::Passed if !typed && is_content_type(name) => {
                typed = true;
                // Before a Content-Length line already there.
                let n = passed.insert_line(0, b"Content-Type", h.value);
                if let Some(line) = &mut length_line {
                    *line = line.start + n..line.end + n;
                }
                front += n;
                continue;
            }
            Class::Passed => {}
        }
        passed.push(name, h.value);
    }
    if let (Some(n), false, false, None) = (length, length_bad, length_passed, chunked_last) {
        // A list of equal lengths goes on as the one length.
        let mut digits = [0u8; 20];
        front += passed.insert_line(
            front,
            b"Content-Length",
            crate::vars::decimal(n, &mut digits),
        );
        length_passed = true;
    }
    if let (Some(_), Some(line)) = (chunked_last, length_line) {
        // The length of a body that Transfer-Encoding frames is not passed
        // on: it says nothing about the body the client gets.
        front -= line.len();
        passed.lines.drain(line);
        length_passed = false;
    }
    // (A head is at most a few hundred kilobytes.)
    passed.front = front as u32;
    if length_passed {
        passed.length = length;
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
    Ok(Parsed::Final(Head {
        parts,
        passed,
        len,
        framing,
        keep_alive,
        upgrade,
    }))
}

/// Whether `name` is Content-Type, in any case: two word compares (a
/// name byte with the 0x20 bit set equals the lowercase letter, or `-`,
/// only if it is that letter in either case).
fn is_content_type(name: &[u8]) -> bool {
    let (Some(head), Some(tail)) = (name.get(..8), name.get(8..)) else {
        return false;
    };
    let (Ok(head), Ok(tail)) = (<[u8; 8]>::try_from(head), <[u8; 4]>::try_from(tail)) else {
        return false;
    };
    u64::from_le_bytes(head) | 0x2020_2020_2020_2020 == u64::from_le_bytes(*b"content-")
        && u32::from_le_bytes(tail) | 0x2020_2020 == u32::from_le_bytes(*b"type")
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

    /// The passed lines as a map.
    fn map(h: &Head) -> HeaderMap {
        let mut m = HeaderMap::new();
        h.passed.append_to(&mut m);
        m
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
        assert_eq!(map(&head_of_head)["content-length"], "7");
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
        assert_eq!(map(&h).len(), 301);
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
            let m = map(&h);
            let lengths: Vec<_> = m.get_all("content-length").iter().collect();
            assert_eq!(lengths, ["3"], "{raw:?}");
            assert_eq!(map(&h).len(), 2, "{raw:?}");
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
        assert_eq!(map(&up)["upgrade"], "websocket");
        assert!(!map(&up).contains_key("connection"));
        let tunnel = head("HTTP/1.1 200 OK\r\n\r\n", Ask::Connect).expect("valid");
        assert!(tunnel.upgrade);
    }

    #[test]
    fn header_names_are_classed_in_any_case() {
        let names: [(&[u8], _); 10] = [
            (b"te", Class::Skipped),
            (b"date", Class::Hidden),
            (b"server", Class::Hidden),
            (b"upgrade", Class::Upgrade),
            (b"trailer", Class::Skipped),
            (b"connection", Class::Connection),
            (b"keep-alive", Class::Skipped),
            (b"content-length", Class::ContentLength),
            (b"proxy-connection", Class::Skipped),
            (b"transfer-encoding", Class::TransferEncoding),
        ];
        for (name, want) in names {
            assert!(class(name) == want, "{name:?}");
            let upper = name.to_ascii_uppercase();
            assert!(class(&upper) == want, "{upper:?}");
            // Any one byte changed (but its case) is another header.
            for i in 0..name.len() {
                for other in [b'x', b'0', b'_', b'.', name[i] ^ 1] {
                    let mut near = name.to_vec();
                    near[i] = other;
                    if near[i].to_ascii_lowercase() != name[i] {
                        assert!(class(&near) == Class::Passed, "{near:?}");
                    }
                }
            }
        }
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
        // As the upstream spelled them, in order (the Content-Length of a
        // chunked body dropped).
        assert_eq!(
            String::from_utf8_lossy(&h.passed.lines),
            "X-A: 1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n"
        );
        assert_eq!(h.passed.length, None);
        let m = map(&h);
        let names: Vec<&str> = m.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a", "set-cookie"]);
        assert_eq!(m.get_all("set-cookie").iter().count(), 2);
        assert_eq!(h.parts.status, 200);
        assert_eq!(h.parts.version, Version::HTTP_11);
    }
}
