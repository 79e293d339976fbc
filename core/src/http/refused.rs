//! What nginx logs about a request head it refuses or cleans while it
//! reads it, before it knows the virtual server: the `info` line (`error`
//! for a bad chunked body) with the context `, client: ..., server: ...,
//! request: "...", host: "..."`, and the access log line of a refusal,
//! both the address's default server's.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::{Method, Request, Uri};

use crate::http::access::Record;
use crate::http::h1::explain::{self, Explained, ReadTo};
use crate::http::h1::parse::{self, Bad};
use crate::http::h1::{Limits, Refusal};
use crate::http::head::{BadHead, HeaderNames, ParsedHead};
use crate::log::{self, Level};
use crate::runtime::Server;
use crate::vars::{NgxIp, VarCtx};

/// The connection a head came on, and its address's default server.
pub struct HeadCx<'a> {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub conn: u64,
    pub requests: u64,
    pub server: Option<&'a Server>,
    /// The configuration's `map`s, for the access log's variables.
    pub maps: &'a [crate::map::Map],
}

impl HeadCx<'_> {
    fn server_name(&self) -> &str {
        self.server.map_or("", |s| &*s.name)
    }

    /// nginx's context of a line logged while it reads a head (an
    /// HTTP/2 stream's has no request line yet).
    fn context(&self, request_line: Option<&[u8]>, host: Option<&[u8]>) -> String {
        let mut context = format!(
            ", client: {}, server: {}",
            NgxIp(self.client.ip()),
            self.server_name()
        );
        if let Some(line) = request_line {
            context.push_str(&format!(", request: \"{}\"", String::from_utf8_lossy(line)));
        }
        if let Some(host) = host {
            context.push_str(&format!(", host: \"{}\"", String::from_utf8_lossy(host)));
        }
        context
    }

    /// The access log record of a refused head, whose request is `parts`
    /// as far as it was read and, over HTTP/1, `request_line` as it came.
    fn record(
        &self,
        parts: &Parts,
        head: &ParsedHead,
        request_line: Option<&[u8]>,
    ) -> Option<Box<Record>> {
        let server = self.server?;
        let logs = server.access_log.as_ref()?;
        let vars = VarCtx {
            req: parts,
            head,
            client: self.client,
            peer: self.client,
            local: self.local,
            server_name: &server.name,
            proxy: &crate::vars::ProxyName::NONE,
            conn: self.conn,
            requests: self.requests,
            status: 0,
            // nginx's `$request` is `-` when no request line came.
            request_line: match request_line {
                Some([]) => b"-",
                Some(line) => line,
                None => b"",
            },
            original: None,
            maps: self.maps,
            captures: None,
            named: None,
            statics: None,
            upstream: None,
            answer: None,
        };
        Some(logs.start(&vars, crate::clock::now()))
    }
}

/// A head the HTTP/1 loop refused ([`explain`]): its line in the error
/// log, and its access log record.
pub fn head(
    cx: &HeadCx<'_>,
    bytes: &[u8],
    refusal: Refusal,
    limits: Limits,
) -> Option<Box<Record>> {
    let level = match refusal {
        Refusal::Bad(Bad::ChunkedBody) => Level::Error,
        _ => Level::Info,
    };
    // Worked out only for a line or a record that is written: a client
    // sending bad heads costs no more than it must.
    let logged = cx.server.is_some_and(|s| s.access_log.is_some());
    if !logged && !log::enabled(level) {
        return None;
    }
    let Explained {
        message,
        line,
        read,
        host,
        ignored,
        length,
        ..
    } = explain::explain(bytes, limits, refusal);
    let request_line = &bytes[line];
    if log::enabled(level) {
        for (dropped, host) in ignored {
            ignored_line(cx, request_line, &bytes[dropped], host.map(|h| &bytes[h]));
        }
        let context = cx.context(Some(request_line), host.map(|h| &bytes[h]));
        log::write(level, Some(cx.conn), &format!("{message}{context}"));
    }
    if !logged {
        return None;
    }
    // The headers read and taken, for `$http_user_agent` and the like.
    let (mut parts, ()) = Request::new(()).into_parts();
    for l in read {
        let text = &bytes[l];
        let Some(colon) = text.iter().position(|&c| c == b':') else {
            continue;
        };
        if limits.names.drops(&text[..colon]) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&text[..colon]),
            HeaderValue::from_bytes(text[colon + 1..].trim_ascii()),
        ) {
            parts.headers.append(name, value);
        }
    }
    // nginx has the target of a head refused for its headers (`$uri`,
    // `$request_uri`, `$args`), none of one refused for its request line.
    let head = match refusal {
        Refusal::Bad(Bad::RequestLine) | Refusal::UriTooLong | Refusal::Version => {
            ParsedHead::no_request_line()
        }
        _ => {
            let mut words = request_line.split(|&c| c == b' ');
            if let Some(method) = words.next().and_then(|m| Method::from_bytes(m).ok()) {
                parts.method = method;
            }
            if let Some(uri) = words.next().and_then(|t| Uri::try_from(t).ok()) {
                parts.uri = uri;
            }
            ParsedHead::of_refused(&parts)
        }
    };
    let mut record = cx.record(&parts, &head, Some(request_line))?;
    record.request_length = Some(length);
    Some(record)
}

/// A head refused after it was read whole, for `bad` ([`ParsedHead::parse`]):
/// its line in the error log, and its access log record. `raw` is the
/// head's bytes from an HTTP/1 client (`parse::Head::raw`; empty over
/// HTTP/2).
pub fn parsed(cx: &HeadCx<'_>, parts: &Parts, raw: &[u8], bad: BadHead) -> Option<Box<Record>> {
    let request_line = request_line(raw);
    if log::enabled(Level::Info) {
        let hosts = parts.headers.get_all(HOST);
        let mut values = hosts.iter();
        let first = values.next().map(HeaderValue::as_bytes);
        // Each line as the client spelled its name.
        let line = |value: &[u8]| {
            let name = parse::spelled(raw, &HOST, value).unwrap_or(b"Host");
            format!(
                "{}: {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )
        };
        let message = match (bad, first, values.next()) {
            (BadHead::DuplicateHost, Some(first), Some(second)) => format!(
                "client sent duplicate host header: \"{}\", previous value: \"{}\" while reading client request headers",
                line(second.as_bytes()),
                line(first)
            ),
            _ => bad.message().to_owned(),
        };
        let host = first.filter(|_| bad.in_headers());
        let shown = if raw.is_empty() {
            format!(
                "{} {} {:?}",
                parts.method,
                parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                parts.version
            )
            .into_bytes()
        } else {
            request_line.to_vec()
        };
        let context = cx.context(Some(&shown), host);
        log::write(Level::Info, Some(cx.conn), &format!("{message}{context}"));
    }
    // A lowercase method is a bad request line to nginx.
    let head = match bad {
        BadHead::Method => ParsedHead::no_request_line(),
        _ => ParsedHead::of_refused(parts),
    };
    let mut record = cx.record(parts, &head, (!raw.is_empty()).then_some(request_line))?;
    if !raw.is_empty() {
        let to = match bad {
            BadHead::Method => ReadTo::Nothing,
            // nginx's request line parser takes only a path or an
            // absolute URI; it refuses the path's escapes and dots, and
            // the URI's host, after it.
            BadHead::Request if !parsed_target(request_line) => ReadTo::Nothing,
            BadHead::Request | BadHead::UriHost => ReadTo::RequestLine,
            BadHead::Host => ReadTo::Through(b"host", 0),
            BadHead::DuplicateHost => ReadTo::Through(b"host", 1),
            BadHead::DuplicateLength => ReadTo::Through(b"content-length", 1),
            BadHead::NoHost => ReadTo::Head,
        };
        record.request_length = Some(explain::request_length(&explain::as_came(raw), to));
    }
    Some(record)
}

/// Whether nginx's request line parser takes the target of `line`: a
/// path, or a URI with a scheme of letters.
fn parsed_target(line: &[u8]) -> bool {
    let target = line
        .split(|&c| c == b' ')
        .filter(|w| !w.is_empty())
        .nth(1)
        .unwrap_or_default();
    match target.iter().position(|&c| !c.is_ascii_alphabetic()) {
        _ if target.first() == Some(&b'/') => true,
        Some(i) if i > 0 => target[i..].starts_with(b"://"),
        _ => false,
    }
}

/// nginx's `info` line for each header line dropped for its name
/// (`ignore_invalid_headers`): the host shows when its line came before
/// the dropped one.
pub fn ignored_lines(cx: &HeadCx<'_>, raw: &[u8], names: HeaderNames) {
    if !log::enabled(Level::Info) {
        return;
    }
    let request_line = request_line(raw);
    for (line, host) in explain::dropped_lines(raw, names) {
        ignored_line(cx, request_line, &raw[line], host.map(|h| &raw[h]));
    }
}

/// nginx's `info` line for a header line it ignored for its name.
fn ignored_line(cx: &HeadCx<'_>, request_line: &[u8], text: &[u8], host: Option<&[u8]>) {
    log::write(
        Level::Info,
        Some(cx.conn),
        &format!(
            "client sent invalid header line: \"{}\" while reading client request headers{}",
            String::from_utf8_lossy(text),
            cx.context(Some(request_line), host)
        ),
    );
}

/// [`ignored_lines`] over HTTP/2, where nginx names the header only and
/// has no request line yet.
pub fn ignored_names(cx: &HeadCx<'_>, headers: &HeaderMap, ignored: &[HeaderName]) {
    if !log::enabled(Level::Info) {
        return;
    }
    let context = cx.context(None, headers.get(HOST).map(HeaderValue::as_bytes));
    for name in ignored {
        log::write(
            Level::Info,
            Some(cx.conn),
            &format!(
                "client sent invalid header: \"{name}\" while reading client request headers{context}"
            ),
        );
    }
}

/// The request line of an HTTP/1 head (after any empty lines).
fn request_line(raw: &[u8]) -> &[u8] {
    &raw[explain::request_line(raw).0]
}
