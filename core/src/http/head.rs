//! What nginx works out from a request head before any phase runs, and
//! the checks it makes there (`ngx_http_parse_request_line`,
//! `ngx_http_process_request_uri`, `ngx_http_process_host`): the
//! normalized URI (`$uri`, which locations match) and the validated host
//! (`$host`, which picks the server). A request nginx refuses here gets
//! 400.
//!
//! Most requests cost nothing beyond a scan: the URI is normalized only
//! when it has `%`, `//` or `/.`, and the host is copied only when it has
//! capitals.

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Uri, Version};

/// The request's normalized URI and validated host.
#[derive(Debug, Default, Clone)]
pub struct ParsedHead {
    /// `$uri` when normalizing changed the path; `None`: the path as sent.
    uri: Option<Box<[u8]>>,
    /// The path had a `%` (nginx's `quoted_uri`).
    pub quoted: bool,
    host: Host,
    /// The request has an `Upgrade` header (a WebSocket handshake).
    pub upgrade: bool,
    /// The request has a `Content-Length` (nginx passes a 0 on).
    pub content_length: bool,
    /// The length of a body without one, once read whole before it went
    /// upstream: `$content_length` from then on, as nginx's
    /// `content_length_n`.
    pub body_length: Option<u64>,
    /// How much of the target a refused head had, for its access log line.
    pub unparsed: Unparsed,
}

/// What nginx reads of a User-Agent (`ngx_http_user_agent`), for
/// `gzip_disable msie6` and `msie_padding`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UserAgent {
    pub msie: bool,
    /// MSIE 4 or 5, or 6 without `SV1` after its version.
    pub msie6: bool,
    pub chrome: bool,
}

impl UserAgent {
    pub fn of(agent: &[u8]) -> UserAgent {
        let find = |s: &[u8], from: usize| {
            agent
                .get(from..)
                .and_then(|a| a.windows(s.len()).position(|w| w == s))
                .map(|i| from + i)
        };
        let mut ua = UserAgent::default();
        if let Some(at) = find(b"MSIE ", 0).filter(|&at| at + 7 < agent.len()) {
            ua.msie = true;
            if agent[at + 6] == b'.' {
                ua.msie6 = match agent[at + 5] {
                    b'4' | b'5' => true,
                    b'6' => find(b"SV1", at + 8).is_none(),
                    _ => false,
                };
            }
        }
        let opera = find(b"Opera", 0).is_some();
        if opera {
            ua.msie = false;
            ua.msie6 = false;
        }
        if !ua.msie && !opera && find(b"Gecko/", 0).is_none() {
            ua.chrome = find(b"Chrome/", 0).is_some();
        }
        ua
    }
}

/// What nginx had of the target of a head it refused, which its `$uri`,
/// `$request_uri` and `$args` show.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Unparsed {
    /// All of it (a request, or a head refused for its headers).
    #[default]
    No,
    /// The request line, but a path it could not normalize: `$uri` is
    /// empty, `$request_uri` and `$args` not found.
    Path,
    /// No request line: none of them is found.
    Line,
}

/// Where the validated host is, as the prefix of its source that is the
/// host (without port or trailing dot), or a lowercased copy.
#[derive(Debug, Default, Clone)]
enum Host {
    #[default]
    None,
    Uri(usize),
    Header(usize),
    Owned(Box<[u8]>),
}

/// A request nginx answers with 400 before any phase.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest;

/// Why nginx answers a head 400 before any phase: each its own `info`
/// line ([`BadHead::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHead {
    /// Not `A-Z`, `_` and `-`.
    Method,
    /// The target: not `/` or an absolute URI, a bad escape, `..` above
    /// the root.
    Request,
    /// The host of an absolute URI.
    UriHost,
    Host,
    DuplicateHost,
    NoHost,
    DuplicateLength,
}

impl BadHead {
    /// nginx's words, before the line's context. nginx's line for
    /// [`BadHead::DuplicateHost`] also names both lines, which the
    /// caller adds (they are in the request).
    pub fn message(self) -> &'static str {
        match self {
            BadHead::Method => "client sent invalid method while reading client request line",
            BadHead::Request => "client sent invalid request while reading client request line",
            BadHead::UriHost => {
                "client sent invalid host in request line while reading client request line"
            }
            BadHead::Host => "client sent invalid host header while reading client request headers",
            BadHead::DuplicateHost | BadHead::DuplicateLength => {
                "client sent duplicate header line while reading client request headers"
            }
            BadHead::NoHost => {
                "client sent HTTP/1.1 request without \"Host\" header while reading client request headers"
            }
        }
    }

    /// Whether nginx had read the headers (its line shows the host).
    pub fn in_headers(self) -> bool {
        !matches!(self, BadHead::Method | BadHead::Request | BadHead::UriHost)
    }
}

impl ParsedHead {
    /// The head of an internal redirect's request: nginx takes its URI as
    /// given (not decoded or normalized again), which `$uri` and the
    /// location choice then see.
    /// It is the client's head otherwise: its host (an absolute-form
    /// request's too) and whether its path had escapes.
    pub fn redirected(base: &ParsedHead, base_req: &Parts, uri: &[u8]) -> ParsedHead {
        let mut head = base.clone();
        if let Some(host) = base.host(&base_req.uri, &base_req.headers) {
            head.host = Host::Owned(host.into());
        }
        head.uri = Some(uri.into());
        head
    }

    // Inlined into its one caller on the request path: a `Result` with a
    // reason was built, then copied out (31 instructions a request).
    #[inline(always)]
    pub fn parse(req: &Parts) -> Result<ParsedHead, BadHead> {
        ParsedHead::parse_merging(req, true)
    }

    /// [`ParsedHead::parse`] with the address's `merge_slashes`.
    #[inline(always)]
    pub fn parse_merging(req: &Parts, merge_slashes: bool) -> Result<ParsedHead, BadHead> {
        // nginx's request line: an uppercase method (`A-Z`, `_`, `-`) and
        // a target starting with `/` or an absolute URI.
        if !req
            .method
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
        {
            return Err(BadHead::Method);
        }
        let path = req.uri.path();
        if !path.starts_with('/') {
            return Err(BadHead::Request);
        }
        let mut head = ParsedHead::default();
        if let Some(authority) = req.uri.authority() {
            if authority.as_str().contains('@') {
                return Err(BadHead::UriHost);
            }
            // After the host (and port) nginx takes `/`, `?` or the end
            // of the target, no `#`. The `http` crate drops the fragment
            // of `http://h#x`, leaving a target with no path at all,
            // which would go upstream as an empty request target.
            if req
                .uri
                .path_and_query()
                .is_some_and(|pq| Uri::from(pq.clone()).path().is_empty())
            {
                return Err(BadHead::Request);
            }
            head.host =
                host(authority.as_str().as_bytes(), Host::Uri).map_err(|_| BadHead::UriHost)?;
        }
        // One pass over the headers for the few this looks at: cheaper
        // than a lookup each for the heads clients send.
        let (mut host_line, mut hosts, mut lengths) = (None, 0u8, 0u8);
        for (name, value) in req.headers.iter() {
            if *name == header::HOST {
                hosts = hosts.saturating_add(1);
                host_line.get_or_insert(value);
            } else if *name == header::CONTENT_LENGTH {
                lengths = lengths.saturating_add(1);
            } else if *name == header::UPGRADE {
                head.upgrade = true;
            }
        }
        match (host_line, hosts) {
            (Some(_), 2..) => return Err(BadHead::DuplicateHost),
            (Some(value), _) => {
                // Checked even when the request line named the host.
                let from_header =
                    host(value.as_bytes(), Host::Header).map_err(|_| BadHead::Host)?;
                if matches!(head.host, Host::None) {
                    head.host = from_header;
                }
            }
            (None, _) => {
                if req.version > Version::HTTP_10 {
                    return Err(BadHead::NoHost);
                }
            }
        }
        if lengths > 1 {
            return Err(BadHead::DuplicateLength);
        }
        head.content_length = lengths == 1;
        let bytes = path.as_bytes();
        head.quoted = bytes.contains(&b'%');
        if head.quoted || complex(bytes) {
            let normalized = normalize_with(bytes, merge_slashes).map_err(|_| BadHead::Request)?;
            if normalized != bytes {
                head.uri = Some(normalized.into_boxed_slice());
            }
        }
        Ok(head)
    }

    /// A head refused for its request line: nginx has none of its target.
    pub fn no_request_line() -> ParsedHead {
        ParsedHead {
            unparsed: Unparsed::Line,
            ..ParsedHead::default()
        }
    }

    /// The target of a head refused for another reason than its request
    /// line, as nginx had it when it refused the head: normalized, or
    /// [`Unparsed::Path`] when it could not be.
    #[cold]
    pub fn of_refused(req: &Parts) -> ParsedHead {
        let mut head = ParsedHead::default();
        let bytes = req.uri.path().as_bytes();
        if !bytes.starts_with(b"/") {
            head.unparsed = Unparsed::Line;
        } else if bytes.contains(&b'%') || complex(bytes) {
            match normalize(bytes) {
                Ok(normalized) if normalized != bytes => {
                    head.uri = Some(normalized.into_boxed_slice())
                }
                Ok(_) => {}
                Err(_) => head.unparsed = Unparsed::Path,
            }
        }
        head
    }

    /// `$uri`
    pub fn uri<'r>(&'r self, uri: &'r Uri) -> &'r [u8] {
        match &self.uri {
            Some(u) => u,
            None => uri.path().as_bytes(),
        }
    }

    /// The host from the request line or the Host header, lowercased,
    /// without port; `None` when the request named none.
    pub fn host<'r>(&'r self, uri: &'r Uri, headers: &'r HeaderMap) -> Option<&'r [u8]> {
        match &self.host {
            Host::None => None,
            Host::Uri(n) => Some(&uri.authority()?.as_str().as_bytes()[..*n]),
            Host::Header(n) => Some(&headers.get(header::HOST)?.as_bytes()[..*n]),
            Host::Owned(h) => Some(h),
        }
    }
}

/// `underscores_in_headers` and `ignore_invalid_headers`: which request
/// header names nginx takes (`ngx_http_parse_header_line`'s `lowcase`
/// table; `ngx_http_v2_validate_header` over HTTP/2). A name of letters,
/// digits and `-` is valid, with `_` too when `underscores`; a header
/// with another name is dropped, and logged at `info`, when
/// `ignore_invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderNames {
    pub underscores: bool,
    pub ignore_invalid: bool,
}

impl Default for HeaderNames {
    /// nginx's: `underscores_in_headers off`, `ignore_invalid_headers on`.
    fn default() -> Self {
        HeaderNames {
            underscores: false,
            ignore_invalid: true,
        }
    }
}

/// What a byte of a header name is to nginx, by table: one load and a
/// test per byte of every header name of every request.
const NAME_CHAR: u8 = 1;
const NAME_UNDERSCORE: u8 = 2;

static NAME_BYTES: [u8; 256] = {
    let mut t = [0; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => NAME_CHAR,
            b'_' => NAME_UNDERSCORE,
            _ => 0,
        };
        c += 1;
    }
    t
};

impl HeaderNames {
    /// Whether the header named `name` is dropped: an invalid name, with
    /// `ignore_invalid_headers on`.
    pub fn drops(self, name: &[u8]) -> bool {
        self.ignore_invalid && !self.valid(name)
    }

    /// Whether nginx takes `name` as a valid header name.
    pub fn valid(self, name: &[u8]) -> bool {
        let allowed = if self.underscores {
            NAME_CHAR | NAME_UNDERSCORE
        } else {
            NAME_CHAR
        };
        name.iter()
            .all(|&c| NAME_BYTES[usize::from(c)] & allowed != 0)
    }
}

/// `ngx_http_validate_host`: the host without port or trailing dot; no
/// `..`, `/`, `\`, NUL or control characters; not empty.
/// What [`host`] does with a byte (nginx's `ngx_http_validate_host`
/// switch as a table): most bytes of a host name need nothing, and the
/// loop tests that with one load and one comparison per byte, where the
/// chain of cases cost about 20 instructions per byte of every request's
/// Host.
const PLAIN: u8 = 0;
const DOT: u8 = 1;
const COLON: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const UPPER: u8 = 5;
const BAD: u8 = 6;

static HOST_BYTES: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'.' => DOT,
            b':' => COLON,
            b'[' => OPEN,
            b']' => CLOSE,
            // nginx's `ngx_path_separator` is `/` on Unix: a backslash
            // passes (its Windows build refuses it too).
            b'/' | 0..=0x20 | 0x7f => BAD,
            b'A'..=b'Z' => UPPER,
            _ => PLAIN,
        };
        c += 1;
    }
    t
};

fn host(h: &[u8], at: fn(usize) -> Host) -> Result<Host, BadRequest> {
    #[derive(PartialEq)]
    enum State {
        Usual,
        Literal,
        Rest,
    }
    let mut state = State::Usual;
    let mut dot_pos = h.len();
    let mut host_len = h.len();
    let mut upper = false;
    // From one byte that needs something to the next: the search for it
    // is a tight loop, where one `match` over every byte was a jump
    // through a table per byte.
    let mut from = 0;
    while let Some(n) = h[from..]
        .iter()
        .position(|&c| HOST_BYTES[usize::from(c)] != PLAIN)
    {
        let i = from + n;
        from = i + 1;
        match HOST_BYTES[usize::from(h[i])] {
            DOT => {
                if i > 0 && dot_pos == i - 1 {
                    return Err(BadRequest);
                }
                dot_pos = i;
            }
            COLON => {
                if state == State::Usual {
                    host_len = i;
                    state = State::Rest;
                }
            }
            OPEN => {
                if i == 0 {
                    state = State::Literal;
                }
            }
            CLOSE => {
                if state == State::Literal {
                    host_len = i + 1;
                    state = State::Rest;
                }
            }
            UPPER => upper = true,
            _ => return Err(BadRequest),
        }
    }
    if host_len > 0 && dot_pos == host_len - 1 {
        host_len -= 1;
    }
    if host_len == 0 {
        return Err(BadRequest);
    }
    Ok(if upper {
        Host::Owned(h[..host_len].to_ascii_lowercase().into_boxed_slice())
    } else {
        at(host_len)
    })
}

/// Whether nginx's request line parser would flag the path complex: a
/// `//` or a `/.`.
fn complex(path: &[u8]) -> bool {
    path.windows(2)
        .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// nginx's `usual` table: bytes that need no attention in a path.
fn usual(c: u8) -> bool {
    !(c <= 0x20 || c == 0x7f || matches!(c, b'#' | b'%' | b'+' | b'.' | b'/' | b'?'))
}

/// `ngx_http_parse_complex_uri` on a path, with `merge_slashes on`:
/// percent-decoding (a decoded `/` or `.` counts as one), merged slashes,
/// `.` and `..` segments resolved. Refused: a bad escape, a decoded NUL,
/// `..` above the root.
pub fn normalize(path: &[u8]) -> Result<Vec<u8>, BadRequest> {
    normalize_with(path, true)
}

/// [`normalize`], slashes merged or not (`merge_slashes`).
pub fn normalize_with(path: &[u8], merge: bool) -> Result<Vec<u8>, BadRequest> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Usual,
        Slash,
        Dot,
        DotDot,
        Quoted,
        QuotedSecond,
    }
    let mut u: Vec<u8> = Vec::with_capacity(path.len());
    let mut state = S::Usual;
    let mut quoted_state = S::Usual;
    let mut decoded = 0u8;
    let mut p = 0;
    let mut ch = match path.first() {
        Some(&c) => c,
        None => return Ok(u),
    };
    p += 1;
    // nginx reads `ch = *p++` after each character it consumes; a decoded
    // escape is looked at again in the state the `%` interrupted.
    let next = |p: &mut usize| {
        let c = path.get(*p).copied().unwrap_or(0);
        *p += 1;
        c
    };
    // Back to the segment before `..`: `u -= 4`, then to the last `/`.
    let up = |u: &mut Vec<u8>| -> Result<(), BadRequest> {
        let mut i = u.len() as isize - 4;
        loop {
            if i < 0 {
                return Err(BadRequest);
            }
            if u[i as usize] == b'/' {
                u.truncate(i as usize + 1);
                return Ok(());
            }
            i -= 1;
        }
    };
    while p <= path.len() {
        match state {
            S::Usual => {
                if usual(ch) {
                    u.push(ch);
                    ch = next(&mut p);
                    continue;
                }
                match ch {
                    b'/' => {
                        state = S::Slash;
                        u.push(ch);
                    }
                    b'%' => {
                        quoted_state = state;
                        state = S::Quoted;
                    }
                    _ => u.push(ch),
                }
                ch = next(&mut p);
            }
            S::Slash => {
                if usual(ch) {
                    state = S::Usual;
                    u.push(ch);
                    ch = next(&mut p);
                    continue;
                }
                match ch {
                    b'/' if !merge => u.push(ch),
                    b'/' => {}
                    b'.' => {
                        state = S::Dot;
                        u.push(ch);
                    }
                    b'%' => {
                        quoted_state = state;
                        state = S::Quoted;
                    }
                    _ => {
                        state = S::Usual;
                        u.push(ch);
                    }
                }
                ch = next(&mut p);
            }
            S::Dot => {
                if usual(ch) {
                    state = S::Usual;
                    u.push(ch);
                    ch = next(&mut p);
                    continue;
                }
                match ch {
                    b'/' => {
                        state = S::Slash;
                        u.pop();
                    }
                    b'.' => {
                        state = S::DotDot;
                        u.push(ch);
                    }
                    b'%' => {
                        quoted_state = state;
                        state = S::Quoted;
                    }
                    _ => {
                        state = S::Usual;
                        u.push(ch);
                    }
                }
                ch = next(&mut p);
            }
            S::DotDot => {
                if usual(ch) {
                    state = S::Usual;
                    u.push(ch);
                    ch = next(&mut p);
                    continue;
                }
                match ch {
                    b'/' => {
                        up(&mut u)?;
                        state = S::Slash;
                    }
                    b'%' => {
                        quoted_state = state;
                        state = S::Quoted;
                    }
                    _ => {
                        state = S::Usual;
                        u.push(ch);
                    }
                }
                ch = next(&mut p);
            }
            S::Quoted => {
                let c = ch | 0x20;
                decoded = match ch {
                    b'0'..=b'9' => ch - b'0',
                    _ if (b'a'..=b'f').contains(&c) => c - b'a' + 10,
                    _ => return Err(BadRequest),
                };
                state = S::QuotedSecond;
                ch = next(&mut p);
            }
            S::QuotedSecond => {
                let c = ch | 0x20;
                if ch.is_ascii_digit() {
                    ch = (decoded << 4) + (ch - b'0');
                    if ch == b'%' || ch == b'#' {
                        state = S::Usual;
                        u.push(ch);
                        ch = next(&mut p);
                        continue;
                    }
                    if ch == 0 {
                        return Err(BadRequest);
                    }
                    state = quoted_state;
                } else if (b'a'..=b'f').contains(&c) {
                    ch = (decoded << 4) + (c - b'a') + 10;
                    if ch == b'?' {
                        state = S::Usual;
                        u.push(ch);
                        ch = next(&mut p);
                        continue;
                    }
                    state = quoted_state;
                } else {
                    return Err(BadRequest);
                }
            }
        }
    }
    match state {
        S::Quoted | S::QuotedSecond => return Err(BadRequest),
        S::Dot => {
            u.pop();
        }
        S::DotDot => up(&mut u)?,
        _ => {}
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, BadRequest> {
        normalize(p.as_bytes()).map(|u| String::from_utf8_lossy(&u).into_owned())
    }

    #[test]
    fn paths_as_nginx_normalizes_them() {
        assert_eq!(n("/a//b/./c/../d"), Ok("/a/b/d".into()));
        assert_eq!(n("/%41%2F"), Ok("/A/".into()));
        assert_eq!(n("/a/%2e%2e/b"), Ok("/b".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/a/b/."), Ok("/a/b/".into()));
        assert_eq!(n("/a/./"), Ok("/a/".into()));
        assert_eq!(n("////"), Ok("/".into()));
        assert_eq!(n("/a%2F..%2Fb"), Ok("/b".into()));
        assert_eq!(n("/a/..%2Fb"), Ok("/b".into()));
        assert_eq!(n("/a/b%2F.."), Ok("/a/".into()));
        assert_eq!(n("/a%25%23%3f%3F%2b"), Ok("/a%#??+".into()));
        assert_eq!(n("/a/..b/c"), Ok("/a/..b/c".into()));
        assert_eq!(n("/a/.b/./c/."), Ok("/a/.b/c/".into()));
        assert_eq!(n("/.%2F"), Ok("/".into()));
        assert_eq!(n("/a/%2E%2E/%2e"), Ok("/".into()));
        assert_eq!(n("/a%0Ab"), Ok("/a\nb".into()));
        assert_eq!(n("/../x"), Err(BadRequest));
        assert_eq!(n("/%2e%2e"), Err(BadRequest));
        assert_eq!(n("/%zz"), Err(BadRequest));
        assert_eq!(n("/a%2"), Err(BadRequest));
        assert_eq!(n("/a%00b"), Err(BadRequest));
    }

    #[test]
    fn absolute_targets_as_nginx_takes_them() {
        let parse = |target: &str| {
            let (parts, ()) = http::Request::get(target)
                .version(Version::HTTP_10)
                .body(())
                .expect("a request")
                .into_parts();
            ParsedHead::parse(&parts)
                .map(|h| String::from_utf8_lossy(h.uri(&parts.uri)).into_owned())
        };
        assert_eq!(parse("http://h"), Ok("/".into()));
        assert_eq!(parse("http://h:8080?a"), Ok("/".into()));
        assert_eq!(parse("http://h/x#y"), Ok("/x".into()));
        assert_eq!(parse("/x#y"), Ok("/x".into()));
        // Found by the `upstream_headers` fuzz target: the upstream
        // request target was empty.
        assert_eq!(parse("http://h#x"), Err(BadHead::Request));
        assert_eq!(parse("http://h:80#"), Err(BadHead::Request));
    }

    #[test]
    fn hosts_as_nginx_validates_them() {
        let h = |s: &str| match host(s.as_bytes(), Host::Header) {
            Ok(Host::Header(n)) => Ok(s[..n].to_owned()),
            Ok(Host::Owned(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Ok(_) => unreachable!(),
            Err(e) => Err(e),
        };
        assert_eq!(h("Foo.Bar:99"), Ok("foo.bar".into()));
        assert_eq!(h("a:b:c"), Ok("a".into()));
        assert_eq!(h("a."), Ok("a".into()));
        assert_eq!(h("[::1]:80"), Ok("[::1]".into()));
        assert_eq!(h("[::1"), Ok("[::1".into()));
        assert_eq!(h("a_b"), Ok("a_b".into()));
        assert_eq!(h(""), Err(BadRequest));
        assert_eq!(h(":80"), Err(BadRequest));
        assert_eq!(h("."), Err(BadRequest));
        assert_eq!(h("a..b"), Err(BadRequest));
        assert_eq!(h("a/b"), Err(BadRequest));
        // nginx 1.22 on Linux: 200, `$host` "a\b".
        assert_eq!(h("A\\b"), Ok("a\\b".into()));
    }

    #[test]
    fn every_byte_of_a_host_is_taken_as_nginx_takes_it() {
        // nginx's cases, byte by byte: which end a host name, which are
        // refused, which are lowercased; the rest pass as they are.
        for c in 0..=255u8 {
            let name = [b'a', c, b'b'];
            let got = match host(&name, Host::Header) {
                Ok(Host::Header(n)) => Ok(name[..n].to_vec()),
                Ok(Host::Owned(b)) => Ok(b.into_vec()),
                Ok(_) => unreachable!(),
                Err(e) => Err(e),
            };
            let want = match c {
                0..=0x20 | 0x7f | b'/' => Err(BadRequest),
                b':' => Ok(b"a".to_vec()),
                b'A'..=b'Z' => Ok(vec![b'a', c.to_ascii_lowercase(), b'b']),
                _ => Ok(name.to_vec()),
            };
            assert_eq!(got, want, "byte {c:#04x}");
        }
    }
}
