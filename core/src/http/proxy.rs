//! The proxy's try loop, as nginx's `ngx_http_upstream`: the balancer's
//! `init_peer` once, then per try `get`, a pooled or new connection, the
//! request, the response head, `free` with the outcome, and the
//! `proxy_next_upstream` rules deciding whether to try again.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use abi_stable::std_types::{RSlice, RStr};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use waypost_module_api::{
    FilterAction, FreeAction, GetResult, InitPeerResult, PeersView, RequestView, TryOutcome,
    TryState,
};

use crate::clock::{self, Mono};
use crate::conf::model::NextUpstream;
use crate::http::access::Record;
use crate::http::body::{PeerHold, RespBody};
use crate::http::cache;
use crate::http::fastcgi;
use crate::http::h1::parse::spelled;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::pool::{self, Timeouts, TlsTarget};
use crate::http::response::error_page;
use crate::http::upstream_h1::{
    self, ConnectError, ErrorKind, Framing, HeadWriter, ReqBody, RequestHead, Timeout,
};
use crate::http::upstream_log;
use crate::log::{self, Level};
use crate::runtime::filter::LogContext;
use crate::runtime::{HeaderSource, Location, Proxy, Server, TlsName};
use crate::upstream::addr::PeerAddr;
use crate::upstream::balancer::PeerState;
use crate::upstream::dynamic::Chosen;
use crate::upstream::peers::Tried;
use crate::upstream::Upstream;
use crate::vars::UpstreamSeen;
use crate::vars::{NgxIp, ProxyName, Var, VarCtx};

/// What the request path knows about the client connection.
pub struct ClientCx<'a> {
    /// The client, after realip.
    pub client: SocketAddr,
    /// The connection's peer.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub conn: u64,
    /// Requests on this connection so far, this one included.
    pub requests: u64,
    /// The request's normalized URI and validated host.
    pub head: &'a ParsedHead,
    /// The head's bytes from an HTTP/1 client (`parse::Head::raw`; empty over
    /// HTTP/2): its header names' spelling, for the upstream request.
    pub raw: &'a [u8],
    pub server: &'a Server,
    /// The configuration's `map`s.
    pub maps: &'a [crate::map::Map],
    /// The groups of the regex location that took the request.
    pub captures: Option<&'a crate::pattern::Captures<'a>>,
    /// The groups whose named ones are variables ([`VarCtx::named`]).
    pub named: crate::vars::NamedRef<'a>,
    /// The client's request where an internal redirect (`error_page`)
    /// made the one handled: error log lines show its request line.
    pub original: Option<&'a Parts>,
    /// Which limits of nginx's pre-access phase the request met already:
    /// `limit_conn` and the filter modules (`limit_req`) apply once per
    /// request, where an internal redirect may meet them again.
    pub pre_access: &'a PreAccess,
    /// The status an `error_page` redirect answers with (nginx's
    /// `err_status`, what `$status` shows meanwhile); 0 otherwise.
    pub err_status: u16,
    /// The static settings of the level (`$document_root`).
    pub statics: Option<&'a crate::http::static_files::Static>,
    /// The access phase let the request in already (an `auth_request`
    /// subrequest has none; `satisfy any` and its subrequest granted it).
    pub granted: bool,
}

/// nginx's `, client: ..., server: ..., request: "...", upstream: "..."`,
/// and the host and referrer the request has.
fn context(cx: &ClientCx<'_>, parts: &Parts, upstream: &str) -> String {
    let mut line = String::new();
    write_context(cx, parts, Some(upstream), &mut line);
    line
}

/// nginx's context of a line logged before the upstream is chosen (a
/// filter's): `, client: ..., server: ..., request: "..."`, and `, host:
/// "..."` and `, referrer: "..."` when the request has them.
pub(crate) fn request_context(cx: &ClientCx<'_>, parts: &Parts, line: &mut String) {
    write_context(cx, parts, None, line);
}

/// nginx's `ngx_http_log_error_handler`: the client's request line, an
/// `auth_request` subrequest's URI, the upstream, the host and referrer.
fn write_context(cx: &ClientCx<'_>, parts: &Parts, upstream: Option<&str>, line: &mut String) {
    let subrequest = parts
        .extensions
        .get::<crate::http::auth_request::Subrequest>()
        .map(|_| parts.uri.path());
    let asked = cx.original.unwrap_or(parts);
    let about = About {
        client: cx.client.ip(),
        server: &cx.server.name,
        request: asked,
        subrequest,
        upstream,
        headers: &parts.headers,
    };
    about.write(line);
}

/// What nginx's context of a request's error log line names.
pub(crate) struct About<'a> {
    /// The client, after realip.
    pub client: IpAddr,
    pub server: &'a str,
    /// The client's request (its line).
    pub request: &'a Parts,
    /// An `auth_request` subrequest's URI.
    pub subrequest: Option<&'a str>,
    pub upstream: Option<&'a str>,
    /// The request's headers (host, referrer).
    pub headers: &'a http::HeaderMap,
}

impl About<'_> {
    /// `, client: ..., server: ..., request: "..."`, then the subrequest,
    /// the upstream, the host and the referrer where there are.
    pub fn write(&self, line: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            line,
            ", client: {}, server: {}, request: \"{} {} {:?}\"",
            NgxIp(self.client),
            self.server,
            self.request.method,
            self.request
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str()),
            self.request.version,
        );
        if let Some(uri) = self.subrequest {
            let _ = write!(line, ", subrequest: \"{uri}\"");
        }
        if let Some(upstream) = self.upstream {
            let _ = write!(line, ", upstream: \"{upstream}\"");
        }
        for (name, label) in [(header::HOST, "host"), (header::REFERER, "referrer")] {
            if let Some(v) = self.headers.get(name) {
                let _ = write!(
                    line,
                    ", {label}: \"{}\"",
                    String::from_utf8_lossy(v.as_bytes())
                );
            }
        }
    }
}

/// The error text of an I/O error without Rust's " (os error N)" suffix.
pub fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// A failure of the proxy's own making (`proxy_bind`'s address), not the
/// upstream's: 500, and no other try (nginx finalizes the request).
const FT_LOCAL: u32 = 1 << 31;
/// The same, of a kind nginx logs at `alert` (a socket option), not `crit`.
const FT_LOCAL_ALERT: u32 = 1 << 29;

/// A try that produced no usable response head.
struct Failure {
    ft: u32,
    /// Whether any of the request reached the upstream.
    sent: bool,
    message: String,
    /// nginx logs it at `crit` (a Unix socket's `connect()` that failed
    /// otherwise than refused), else at `error`.
    crit: bool,
}

/// nginx's final status for a failure type (`ngx_http_upstream_next`),
/// decided before the non-idempotent flag is added: a POST that timed out
/// after it was sent still answers 504.
fn final_status(ft: u32) -> u16 {
    match ft & !NextUpstream::NON_IDEMPOTENT {
        FT_LOCAL | FT_LOCAL_ALERT => 500,
        NextUpstream::TIMEOUT | NextUpstream::HTTP_504 => 504,
        NextUpstream::HTTP_500 => 500,
        NextUpstream::HTTP_503 => 503,
        NextUpstream::HTTP_403 => 403,
        NextUpstream::HTTP_404 => 404,
        NextUpstream::HTTP_429 => 429,
        _ => 502,
    }
}

fn allows(mask: NextUpstream, ft: u32) -> bool {
    mask.0 & NextUpstream::OFF == 0 && mask.0 & ft == ft
}

/// Per-request context behind the module's `RequestView` callbacks.
struct HookCx<'a> {
    vars: VarCtx<'a>,
    /// The templates `eval` resolves: the balancer's, or the filter's
    /// whose hook runs.
    templates: std::cell::Cell<&'a [crate::vars::Template]>,
    /// Values computed for `variable` calls, alive until the request ends
    /// so the slices handed to the module stay valid.
    scratch: UnsafeCell<Vec<String>>,
}

extern "C" fn hook_header(ctx: *const c_void, name: RStr<'_>) -> RStr<'static> {
    // SAFETY: ctx is the HookCx of the request whose hook is running; the
    // returned slice borrows its headers, valid for the hook's duration.
    let cx = unsafe { &*(ctx as *const HookCx<'static>) };
    cx.vars
        .req
        .headers
        .get(name.as_str())
        .and_then(|v| v.to_str().ok())
        .map_or(RStr::from_str(""), RStr::from_str)
}

extern "C" fn hook_variable(ctx: *const c_void, name: RStr<'_>) -> RStr<'static> {
    // SAFETY: as in hook_header. Values are pushed to scratch and never
    // removed, and a String's heap buffer does not move when the Vec grows.
    let cx = unsafe { &*(ctx as *const HookCx<'static>) };
    // A map's variable too; the last map of a name is the one in effect.
    let maps = |n: &str| {
        let i = cx.vars.maps.iter().rposition(|m| m.name == n)?;
        Some(Var::Map(u32::try_from(i).ok()?))
    };
    let Ok(var) = Var::parse_in(name.as_str(), &maps) else {
        return RStr::from_str("");
    };
    let mut bytes = Vec::new();
    var.eval(&cx.vars, &mut bytes);
    let value = text(bytes);
    let scratch = unsafe { &mut *cx.scratch.get() };
    scratch.push(value);
    let s: &str = scratch.last().map_or("", |s| s.as_str());
    RStr::from_str(unsafe { &*(s as *const str) })
}

extern "C" fn hook_eval(ctx: *const c_void, id: u32) -> RStr<'static> {
    // SAFETY: as in hook_variable.
    let cx = unsafe { &*(ctx as *const HookCx<'static>) };
    let Some(template) = cx.templates.get().get(id as usize) else {
        return RStr::from_str("");
    };
    if let Some(s) = template.as_str(&cx.vars) {
        return RStr::from_str(s);
    }
    if let Some(slice) = template.as_slice(&cx.vars) {
        if let Ok(s) = std::str::from_utf8(slice) {
            return RStr::from_str(s);
        }
    }
    let value = text(template.eval(&cx.vars));
    let scratch = unsafe { &mut *cx.scratch.get() };
    scratch.push(value);
    let s: &str = scratch.last().map_or("", |s| s.as_str());
    RStr::from_str(unsafe { &*(s as *const str) })
}

/// A value as text for a module: bytes that are not UTF-8 (a decoded
/// `$uri`, obs-text in a header) are replaced, as modules see `str`.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn peers_view<'a>(up: &'a Upstream, tried: &'a Tried, now: u64) -> PeersView<'a> {
    PeersView {
        config: RSlice::from_slice(&up.configs),
        live: RSlice::from_slice(&up.live),
        tried: RSlice::from_slice(tried.words()),
        primary: up.primary,
        primary_weight: up.primary_weight,
        single: up.single,
        now,
        worker: crate::worker::index(),
    }
}

/// The upstream request's target: the request URI as sent, or with
/// `proxy_pass http://u/uri`, the location prefix of the normalized URI
/// replaced by `uri` (the rest escaped again if the request had escapes),
/// as nginx's `ngx_http_proxy_create_request`.
///
/// Public (hidden) for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub fn upstream_uri(
    parts: &Parts,
    head: &ParsedHead,
    p: &Proxy,
    location: &Location,
    internal: bool,
) -> Uri {
    let Some(replacement) = &p.uri else {
        return parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    };
    let uri = head.uri(&parts.uri);
    // After `rewrite ... break` nginx sends the whole URI (its location
    // no longer valid), escaped, without the replacement.
    let broken = parts
        .extensions
        .get::<crate::http::rewrite::Broken>()
        .is_some();
    let (replacement, skip) = match broken {
        true => ("", 0),
        false => (replacement.as_str(), location.prefix.len()),
    };
    let rest = uri.get(skip..).unwrap_or(b"");
    let mut target = Vec::with_capacity(replacement.len() + rest.len() + 16);
    target.extend_from_slice(replacement.as_bytes());
    // nginx escapes the URI again when the client's had escapes or an
    // internal redirect (a rewrite) made it.
    if head.quoted || broken || internal {
        escape_uri(rest, &mut target);
    } else {
        target.extend_from_slice(rest);
    }
    // (nginx adds `?` only before arguments.)
    if let Some(q) = parts.uri.query().filter(|q| !q.is_empty()) {
        target.push(b'?');
        target.extend_from_slice(q.as_bytes());
    }
    Uri::from_maybe_shared(bytes::Bytes::from(target)).unwrap_or_else(|_| Uri::from_static("/"))
}

/// `ngx_escape_uri` with `NGX_ESCAPE_URI`: control characters, space,
/// the characters of `"#%<>?\^{|}` and the backquote, DEL and bytes above
/// it as `%XX`.
fn escape_uri(src: &[u8], out: &mut Vec<u8>) {
    crate::http::escape_into(src, out, |_, c| {
        c <= 0x20 || c >= 0x7f || b"\"#%<>?\\^`{|}".contains(&c)
    });
}

/// Request headers that never go upstream as the client sent them: those
/// nginx's proxy defaults replace or clear (`Proxy-Connection` and
/// `Trailer`, hop-by-hop too, go up as nginx sends them).
fn dropped(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "expect" | "upgrade" | "transfer-encoding" | "host"
    )
}

/// The upstream request's head, in nginx's order: the request line with
/// `target`, the headers `proxy_set_header` sets (one with an empty value
/// left out, as nginx) and nginx's `Host` and `Connection`, the body's
/// framing, then the client's headers but those [`dropped`] or set, as
/// the client spelled their names (read back from `raw`).
/// Written once, straight into a pooled buffer, and sent as is on every
/// try.
///
/// Public (hidden) for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub fn upstream_head(
    parts: &Parts,
    raw: &[u8],
    p: &Proxy,
    vars: &VarCtx<'_>,
    target: &str,
    framing: Framing,
    cached: Option<&cache::Pending>,
) -> RequestHead {
    let shape = p.shape.as_deref();
    // `proxy_method`: a value that is no method leaves the client's.
    let method = shape
        .and_then(|s| s.method.as_ref())
        .and_then(|t| Method::from_bytes(&t.eval(vars)).ok());
    let mut w = HeadWriter::new(
        method.as_ref().unwrap_or(&parts.method),
        target,
        p.http11,
        framing,
    );
    // A HEAD the cache asks as GET (`proxy_cache_convert_head`), over
    // `proxy_method`; nginx asks for a whole answer to store: the
    // client's conditions and ranges are its own to meet.
    let cacheable = match cached {
        Some(c) => {
            if c.as_get {
                w.as_get();
            }
            c.cacheable()
        }
        None => false,
    };
    for set in &p.headers {
        match &set.source {
            HeaderSource::Fixed(None) => {}
            HeaderSource::Fixed(Some(value)) => w.set(&set.spelled, &set.name, value.as_bytes()),
            HeaderSource::Template(template) => {
                w.set_with(&set.spelled, &set.name, |out| template.eval_into(vars, out));
            }
        }
    }
    // An empty body is announced as `Content-Length: 0` when the client
    // announced one and the body is its to pass, or when `proxy_set_body`
    // made it (as nginx's `$proxy_internal_body_length`).
    let announced = match shape {
        Some(s) if s.set_body.is_some() => true,
        Some(s) if !s.body => false,
        _ => vars.head.content_length,
    };
    w.framing(announced);
    let keep_hidden = p.header_rules.as_ref().is_some_and(|r| r.keeps_hidden());
    let pass_headers = shape.is_none_or(|s| s.headers);
    for (name, value) in parts.headers.iter().filter(|_| pass_headers) {
        // (The cache's whole answer: no client conditions or ranges.)
        let left_out = dropped(name) || (cacheable && cache::asks_whole(name));
        if !left_out && !p.headers.iter().any(|set| set.name == name) {
            let value = value.as_bytes();
            let spelled = spelled(raw, name, value).unwrap_or(name.as_str().as_bytes());
            w.header(spelled, name, value);
        }
    }
    let mut head = w.finish();
    if keep_hidden {
        head.keep_hidden();
    }
    head
}

fn timed_out_failure(while_: &str) -> Failure {
    Failure {
        crit: false,
        ft: NextUpstream::TIMEOUT,
        sent: true,
        message: format!("upstream timed out (110: Connection timed out) while {while_}"),
    }
}

/// A connection that could not be made, as nginx logs it. Out of line
/// (cold), as every failure path: the request path's code stays compact.
#[cold]
#[inline(never)]
fn connect_failure(e: ConnectError, with: TryWith<'_>) -> Failure {
    match e {
        ConnectError::Bind(e, call, alert) => Failure {
            crit: false,
            ft: if alert { FT_LOCAL_ALERT } else { FT_LOCAL },
            sent: false,
            message: format!(
                "{call} failed ({}: {}) while connecting to upstream",
                e.raw_os_error().unwrap_or(0),
                strerror(&e)
            ),
        },
        ConnectError::Timeout => Failure {
            crit: false,
            ft: NextUpstream::TIMEOUT,
            sent: false,
            message: "upstream timed out (110: Connection timed out) while connecting to upstream"
                .into(),
        },
        ConnectError::Io(e) => Failure {
            crit: false,
            ft: NextUpstream::ERROR,
            sent: false,
            message: format!(
                "connect() failed ({}: {}) while connecting to upstream",
                e.raw_os_error().unwrap_or(0),
                strerror(&e)
            ),
        },
        ConnectError::Unix(e, path) => Failure {
            // nginx's `ngx_event_connect_peer`: its `connect()` fails at
            // once, and only these are `error`s.
            crit: !matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED | libc::EAGAIN | libc::ECONNRESET | libc::ENETDOWN)
                    | Some(libc::ENETUNREACH | libc::EHOSTDOWN | libc::EHOSTUNREACH)
            ),
            ft: NextUpstream::ERROR,
            sent: false,
            message: format!(
                "connect() to unix:{} failed ({}: {}) while connecting to upstream",
                path.display(),
                e.raw_os_error().unwrap_or(0),
                strerror(&e)
            ),
        },
        // A refused certificate or a failed handshake is a failed
        // connection to nginx (`NGX_HTTP_UPSTREAM_FT_ERROR`): the peer
        // counts a failure and the next one is tried.
        ConnectError::TlsTimeout => Failure {
            crit: false,
            ft: NextUpstream::TIMEOUT,
            sent: false,
            message:
                "upstream timed out (110: Connection timed out) while SSL handshaking to upstream"
                    .into(),
        },
        ConnectError::Tls(e) => Failure {
            crit: false,
            ft: NextUpstream::ERROR,
            sent: false,
            message: format!(
                "{} while SSL handshaking to upstream",
                crate::upstream::tls::handshake_error(&e, with.tls.map_or("", |t| t.name))
            ),
        },
    }
}

/// What one try needs besides the request: the connection's TLS, and
/// whether the client asked for an upgrade.
#[derive(Clone, Copy)]
struct TryWith<'a> {
    tls: Option<TlsTarget<'a>>,
    /// The request has an `Upgrade` header (nginx's `r->headers_in.upgrade`):
    /// only then may the upstream switch protocols.
    upgrade: bool,
}

/// Sends one request to peer `i` and waits for the response head.
///
/// `body` is taken only once a connection is there: if connecting fails,
/// or the request never left (nothing of it was written), the body stays
/// for the next try (nginx retries even a POST that never left).
///
/// `progress` tells how far it got.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    up: &Upstream,
    i: usize,
    p: &Proxy,
    with: TryWith<'_>,
    head: &RequestHead,
    body: &mut Option<ReqBody>,
    progress: &Progress,
    local: Option<&upstream_h1::Local>,
    bytes: &mut (u64, u64),
    reader: &mut dyn upstream_h1::ReadHead,
) -> Result<upstream_h1::Response, Failure> {
    let timeouts = Timeouts {
        connect: p.connect_timeout,
        send: p.send_timeout,
        read: p.read_timeout,
    };
    loop {
        *bytes = (0, 0);
        progress.connecting();
        let conn = pool::checkout(up, i, timeouts, with.tls, local)
            .await
            .map_err(|e| connect_failure(e, with))?;
        progress.connected_now();
        let reused = conn.reused;
        let mut req_body = body.take().unwrap_or(ReqBody::Empty);
        let e = match upstream_h1::exchange(conn, head, &mut req_body, reader).await {
            // A switch nobody asked for: nginx 1.22 passes it on as an
            // ordinary response, reading its body until the upstream
            // closes; the client gets a 101 it cannot use. Refused as an
            // invalid header instead (README: differences).
            Ok(resp)
                if resp.parts.status == http::StatusCode::SWITCHING_PROTOCOLS && !with.upgrade =>
            {
                return Err(unsolicited_switch());
            }
            Ok(resp) => return Ok(resp),
            Err(e) => {
                *bytes = e.bytes;
                e
            }
        };
        if !e.sent {
            // The request never left: keep its body.
            if !matches!(req_body, ReqBody::Empty) {
                *body = Some(req_body);
            }
            // An idle keepalive connection the upstream closed: try a
            // fresh connection without counting a try (nginx gives the
            // attempt back).
            if reused {
                continue;
            }
        }
        return Err(exchange_failure(e));
    }
}

#[cold]
#[inline(never)]
fn unsolicited_switch() -> Failure {
    Failure {
        crit: false,
        ft: NextUpstream::INVALID_HEADER,
        sent: true,
        message: "upstream sent unsolicited \"101 Switching Protocols\" while reading response header from upstream".into(),
    }
}

/// A request that got no response head, as nginx logs it (cold).
#[cold]
#[inline(never)]
fn exchange_failure(e: upstream_h1::Error) -> Failure {
    let timed_out = |t| match t {
        Timeout::Read => timed_out_failure("reading response header from upstream"),
        Timeout::Send => timed_out_failure("sending request to upstream"),
    };
    if !e.sent {
        return match e.kind {
            ErrorKind::Timeout(t) => timed_out(t),
            _ => Failure {
                crit: false,
                ft: NextUpstream::ERROR,
                sent: false,
                message: "upstream prematurely closed connection while sending request to upstream"
                    .into(),
            },
        };
    }
    match e.kind {
        ErrorKind::Timeout(t) => timed_out(t),
        ErrorKind::FastCgi(message) => Failure {
            crit: false,
            ft: NextUpstream::INVALID_HEADER,
            sent: true,
            message: format!("{message} while reading response header from upstream"),
        },
        ErrorKind::Invalid => Failure {
            crit: false,
            ft: NextUpstream::INVALID_HEADER,
            sent: true,
            message: "upstream sent invalid header while reading response header from upstream"
                .into(),
        },
        ErrorKind::Io(io) if io.raw_os_error().is_some() => Failure {
            crit: false,
            ft: NextUpstream::ERROR,
            sent: true,
            message: format!(
                "recv() failed ({}: {}) while reading response header from upstream",
                io.raw_os_error().unwrap_or(0),
                strerror(&io)
            ),
        },
        ErrorKind::Io(_) | ErrorKind::Closed | ErrorKind::Body => Failure {
            crit: false,
            ft: NextUpstream::ERROR,
            sent: true,
            message:
                "upstream prematurely closed connection while reading response header from upstream"
                    .into(),
        },
    }
}

/// The location's filter modules, in order: the longest delay they ask
/// for and the clock reading at the last one's end (each hook is timed
/// from the previous one's end), or the answer one gave instead. Out of
/// line: most locations have none, and the request path's code stays
/// compact without it.
#[inline(never)]
fn filters<'a>(
    runs: &'a [crate::runtime::FilterRun],
    upstream: Option<&str>,
    cx: &ClientCx<'_>,
    parts: &Parts,
    hook_cx: &HookCx<'a>,
    request_view: &RequestView<'_>,
    mut module_values: Option<&mut &mut Vec<(usize, &'static str)>>,
) -> Result<(u64, Mono), Box<Response<RespBody>>> {
    let mut delay = 0;
    let mut at = Mono::read();
    let request_context = |line: &mut String| request_context(cx, parts, line);
    let log_cx = LogContext {
        conn: cx.conn,
        context: &request_context,
    };
    for run in runs {
        hook_cx.templates.set(&run.filter.templates);
        let (result, end) = run.filter.check(run.scope, request_view, &log_cx, at);
        at = end;
        if !result.variable.is_empty() {
            // A limit applied here (`$limit_req_status` set): an internal
            // redirect's target does not apply the module's again.
            cx.pre_access.meet(PreAccess::REQ);
            if let Some(values) = module_values.as_mut() {
                values.push((run.index, result.variable.as_str()));
            }
        }
        match result.action {
            FilterAction::Pass => {}
            FilterAction::Delay(ms) => delay = delay.max(ms),
            FilterAction::Reject(r) => return Err(Box::new(rejection(r))),
            FilterAction::Error(msg) => {
                return Err(Box::new(match upstream {
                    Some(name) => hook_error(cx, parts, name, &msg, 500),
                    None => {
                        let mut line = msg.into_string();
                        request_context(&mut line);
                        log::write(Level::Error, Some(cx.conn), &line);
                        error_page(500)
                    }
                }))
            }
        }
    }
    Ok((delay, at))
}

/// The filter modules (`limit_req`) of a location that does not proxy:
/// nginx's pre-access phase comes before every content handler (files,
/// `stub_status`, a 404). The answer one gave instead, else none once the
/// delay they asked for is over.
pub(crate) async fn location_filters(
    runs: &[crate::runtime::FilterRun],
    parts: &Parts,
    cx: &ClientCx<'_>,
    vars: VarCtx<'_>,
    mut module_values: Option<&mut Vec<(usize, &'static str)>>,
) -> Option<Response<RespBody>> {
    // The module's view holds pointers (not Send): gone before the wait.
    let decided = {
        let hook_cx = HookCx {
            vars,
            templates: std::cell::Cell::new(&[]),
            scratch: UnsafeCell::new(Vec::new()),
        };
        let mut addr = ClientAddr::new();
        let view = request_view(parts, cx, &hook_cx, &mut addr);
        filters(
            runs,
            None,
            cx,
            parts,
            &hook_cx,
            &view,
            module_values.as_mut(),
        )
    };
    match decided {
        Err(resp) => Some(*resp),
        Ok((0, _)) => None,
        Ok((delay_ms, _)) => {
            let delayed = Delayed { cx, parts };
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            std::mem::forget(delayed);
            None
        }
    }
}

/// The limits of nginx's pre-access phase a request met already (its
/// `r->main->limit_req_status` and `limit_conn_set`): each applies once
/// per request, at the first level that has it, an internal redirect's
/// target included. Shared by the request's redirects.
#[derive(Debug, Default)]
pub struct PreAccess(std::sync::atomic::AtomicU8);

impl PreAccess {
    /// The filter modules (`limit_req`).
    pub const REQ: u8 = 1;
    /// `limit_conn`.
    pub const CONN: u8 = 2;

    /// Marks `which` met; whether it was before.
    pub fn meet(&self, which: u8) -> bool {
        self.0.fetch_or(which, Relaxed) & which != 0
    }

    /// Whether `which` was met.
    pub fn met(&self, which: u8) -> bool {
        self.0.load(Relaxed) & which != 0
    }
}

/// Whether the request meets `limit_conn` here for the first time.
fn conn_first(cx: &ClientCx<'_>) -> bool {
    !cx.pre_access.meet(PreAccess::CONN)
}

/// `limit_conn` for a proxied request: the counts it holds, or nginx's
/// answer for a refusal. Out of line: most locations have none, and the
/// request path's code stays compact without it.
#[inline(never)]
fn limit_conn(
    limits: &crate::http::limit_conn::Limits,
    vars: &VarCtx<'_>,
    cx: &ClientCx<'_>,
    parts: &Parts,
    status: &mut u8,
) -> Result<Option<crate::http::limit_conn::Hold>, Box<Response<RespBody>>> {
    crate::http::limit_conn::check(limits, vars, cx, parts, status)
        .map_err(|code| Box::new(crate::http::response::finalized(code)))
}

/// `$limit_conn_status` into the access log's record, when a limit applied.
/// A request refused before nginx's content phase: its log line shows
/// `$proxy_host` not found, as the proxy module had not set it yet.
/// (Out of line: only refusals pay for capturing the line again.)
#[cold]
#[inline(never)]
pub(crate) fn not_proxied(record: Option<&mut Record>, vars: &VarCtx<'_>) {
    if let Some(r) = record {
        r.recapture(&VarCtx {
            proxy: &ProxyName::NONE,
            ..*vars
        });
    }
}

fn set_conn_status(record: Option<&mut Record>, status: u8) {
    if let (Some(r), true) = (record, status != 0) {
        r.limit_conn = status;
    }
}

/// The answer a module gave instead of proxying.
fn rejection(r: waypost_module_api::Rejection) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(r.body.into_string()));
    *resp.status_mut() =
        http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
    if !r.content_type.is_empty() {
        if let Ok(v) = HeaderValue::from_str(r.content_type.as_str()) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
    }
    for h in &r.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(h.0.as_bytes()),
            HeaderValue::from_str(h.1.as_str()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    // nginx's limit_req finalizes the request with the status.
    let status = resp.status().as_u16();
    resp.extensions_mut()
        .insert(crate::http::response::Special(status));
    resp
}

/// Reads a client body to its end and lets it go.
async fn drain(mut body: ClientBody) -> Result<(), ()> {
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| ())?;
    }
    Ok(())
}

/// How this request's upstream sockets are made: `proxy_bind`'s address
/// (with variables, evaluated now: empty binds nothing, and one that is
/// no address is nginx's `invalid local address` and binds nothing).
#[cold]
#[inline(never)]
fn socket_settings(
    s: &crate::runtime::SocketSettings,
    vars: &VarCtx<'_>,
    cx: &ClientCx<'_>,
    parts: &Parts,
) -> upstream_h1::Local {
    let bind = match &s.bind {
        None => None,
        Some(crate::runtime::Bind::Fixed(addr, name)) => Some((*addr, name.clone())),
        Some(crate::runtime::Bind::Template(t)) => {
            let value = t.eval(vars);
            if value.is_empty() {
                None
            } else if let Some(addr) = crate::http::realip::parse_addr_port(&value) {
                Some((addr, String::from_utf8_lossy(&value).into()))
            } else {
                let mut line = format!(
                    "invalid local address \"{}\"",
                    String::from_utf8_lossy(&value)
                );
                request_context(cx, parts, &mut line);
                log::write(Level::Error, Some(cx.conn), &line);
                None
            }
        }
    };
    upstream_h1::Local {
        bind,
        transparent: s.transparent,
        keepalive: s.keepalive,
    }
}

/// The client's address as the module's view of a request shows it, in
/// buffers that live as long as the view.
struct ClientAddr {
    text: [u8; 48],
    octets: [u8; 16],
}

impl ClientAddr {
    fn new() -> ClientAddr {
        ClientAddr {
            text: [0; 48],
            octets: [0; 16],
        }
    }
}

/// The module's view of the request, for filters' `check` and the
/// balancer's `init_peer`. Inlined: it is on every proxied request's
/// path, and a call costs more than it.
#[inline(always)]
fn request_view<'a>(
    parts: &'a Parts,
    cx: &ClientCx<'_>,
    hook_cx: &'a HookCx<'_>,
    addr: &'a mut ClientAddr,
) -> RequestView<'a> {
    let client_addr = NgxIp(cx.client.ip()).text(&mut addr.text);
    let octets = match cx.client.ip() {
        IpAddr::V4(v4) => {
            addr.octets[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            addr.octets = v6.octets();
            16
        }
    };
    RequestView {
        method: RStr::from_str(parts.method.as_str()),
        uri: RStr::from_str(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        client_addr: RStr::from_str(client_addr),
        client_ip: RSlice::from_slice(&addr.octets[..octets]),
        ctx: hook_cx as *const HookCx<'_> as *const c_void,
        header: hook_header,
        variable: hook_variable,
        eval: hook_eval,
    }
}

/// The balancer's `init_peer` for a request: the delay it asks for, and
/// the TLS name of `proxy_ssl_name` with variables; or the answer it
/// gave instead.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn init_peer<'a>(
    state: &mut PeerState<'_>,
    p: &Proxy,
    up: &'a Upstream,
    tried: &Tried,
    request_view: &RequestView<'_>,
    hook_cx: &HookCx<'a>,
    cx: &ClientCx<'_>,
    parts: &Parts,
) -> Result<(u64, Option<String>), Box<Response<RespBody>>> {
    hook_cx.templates.set(&up.templates);
    let delay_ms = match state.init(request_view, &peers_view(up, tried, clock::unix_secs())) {
        InitPeerResult::Ready => 0,
        InitPeerResult::Delay(ms) => ms,
        InitPeerResult::Reject(r) => return Err(Box::new(rejection(r))),
        InitPeerResult::Error(msg) => {
            return Err(Box::new(hook_error(cx, parts, &up.name, &msg, 502)))
        }
    };
    // `proxy_ssl_name` with variables: this request's name.
    let tls_name = match p.tls.as_ref().map(|t| &t.name) {
        Some(TlsName::Template(t)) => {
            let name = text(t.eval(&hook_cx.vars));
            Some(crate::upstream::tls::strip_port(&name).to_owned())
        }
        _ => None,
    };
    Ok((delay_ms, tls_name))
}

/// `init_peer` once the access phase let the request in (`auth_basic`),
/// and the delay it asks for.
#[inline(never)]
async fn init_after_access<'a>(
    state: &mut PeerState<'_>,
    p: &Proxy,
    up: &'a Upstream,
    tried: &Tried,
    vars: VarCtx<'a>,
    cx: &ClientCx<'_>,
    parts: &Parts,
) -> Result<Option<String>, Box<Response<RespBody>>> {
    let (delay_ms, tls_name) = {
        let hook_cx = HookCx {
            vars,
            templates: std::cell::Cell::new(&up.templates),
            scratch: UnsafeCell::new(Vec::new()),
        };
        let mut addr = ClientAddr::new();
        let view = request_view(parts, cx, &hook_cx, &mut addr);
        init_peer(state, p, up, tried, &view, &hook_cx, cx, parts)?
    };
    if delay_ms > 0 {
        state.waiting();
        let delayed = Delayed { cx, parts };
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        std::mem::forget(delayed);
    }
    Ok(tls_name)
}

/// What [`run`] leaves its caller besides the answer.
#[derive(Default)]
pub struct Carried {
    /// `limit_conn`'s counts, where the answer is not the upstream's
    /// (they go with an upstream's answer).
    pub conn_hold: Option<crate::http::limit_conn::Hold>,
    /// What the upstream answered, where `add_header` reads it (the
    /// caller makes it, for the location's `upstream_vars`).
    pub seen: Option<Box<UpstreamSeen>>,
}

/// Proxies one request (its head `parts`, borrowed from the handler's
/// frame rather than moved in: a head is a few hundred bytes, copied
/// with each move) to `p`'s upstream.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    parts: &Parts,
    body: ClientBody,
    p: &Proxy,
    chosen: Option<&Chosen>,
    location: &Location,
    cx: &ClientCx<'_>,
    mut record: Option<&mut Record>,
    carried: &mut Carried,
) -> Response<RespBody> {
    let conn_hold = &mut carried.conn_hold;
    let mut seen = carried.seen.as_deref_mut();
    // The location's upstream, or the one its `proxy_pass` with variables
    // named for this request.
    let (upstream, proxy, tries) = match (chosen, &p.upstream) {
        (Some(c), _) => (
            &c.upstream,
            ProxyName::new(&c.host, &c.port),
            crate::runtime::capped_tries(c.upstream.tries, p.tries_cap),
        ),
        (None, Some(u)) => (u, p.name(), p.tries),
        (None, None) => return error_page(500),
    };
    let up: &Upstream = upstream;
    let proxy_tls = p.tls.as_ref().filter(|_| chosen.is_none_or(|c| c.tls));
    let mut tried = Tried::new(up.configs.len());
    // Peers down by health checks count as tried, so no balancer, whatever
    // ABI it was built for, picks one.
    if up.unhealthy.load(std::sync::atomic::Ordering::Relaxed) != 0 {
        for (i, stats) in up.stats.iter().enumerate() {
            if stats.health.load(std::sync::atomic::Ordering::Relaxed) != 0 {
                tried.set(i);
            }
        }
    }
    let mut state = PeerState::new(&up.balancer);
    // `deny`: known once the filters ran, answered after their delay.
    let mut denied = false;
    // The module's view of the request lives only for init_peer (it is not
    // Send). Filters' variables go straight to the access log's record (no
    // allocation when nothing is logged).
    let mut module_values = record.as_deref_mut().map(|r| &mut r.module_values);
    let vars = || VarCtx {
        req: parts,
        head: cx.head,
        client: cx.client,
        peer: cx.peer,
        local: cx.local,
        server_name: &cx.server.name,
        proxy: &proxy,
        conn: cx.conn,
        requests: cx.requests,
        status: cx.err_status,
        request_line: b"",
        original: cx.original,
        maps: cx.maps,
        captures: cx.captures,
        named: cx.named,
        statics: cx.statics,
        upstream: None,
        answer: None,
    };
    // `limit_conn`'s counts (`conn_hold`), held until the answer is done:
    // with a response from the upstream, or, on any other answer, by the
    // caller.
    let mut conn_status = 0;
    let mut filter_delayed = false;
    // A refusal of the pre-access phase (not one of `init_peer`).
    let mut refused_before = false;
    let prepared: Result<(u64, Option<String>), Box<Response<RespBody>>> = (|| {
        let hook_cx = HookCx {
            vars: vars(),
            templates: std::cell::Cell::new(&up.templates),
            scratch: UnsafeCell::new(Vec::new()),
        };
        let mut addr = ClientAddr::new();
        let request_view = request_view(parts, cx, &hook_cx, &mut addr);

        // Filter modules first (limit_req), each once, in order: a
        // rejection answers now, delays add up to the longest.
        let filter_delay = if p.filters.is_empty() || cx.pre_access.met(PreAccess::REQ) {
            0
        } else {
            let (delay, end) = filters(
                &p.filters,
                Some(&up.name),
                cx,
                parts,
                &hook_cx,
                &request_view,
                module_values.as_mut(),
            )
            .inspect_err(|_| refused_before = true)?;
            state.hook_ended(end);
            delay
        };
        // limit_conn after limit_req: a request it delays is counted
        // once its delay is over (below).
        filter_delayed = filter_delay > 0;
        if !filter_delayed {
            if let Some(limits) = location.limit_conn.as_ref().filter(|_| conn_first(cx)) {
                *conn_hold = limit_conn(limits, &vars(), cx, parts, &mut conn_status)
                    .inspect_err(|_| refused_before = true)?;
            }
        }
        // Without `auth_basic` the rules alone decide, now; with it,
        // the access phase runs below, as `satisfy` says.
        let rules = location.access_for(&parts.method);
        let auth_basic = location
            .auth_basic_for(&parts.method)
            .filter(|_| !cx.granted);
        if auth_basic.is_none() && !cx.granted && !rules.is_empty() && !rules.allows(cx.client.ip())
        {
            denied = true;
            return Ok((filter_delay, None));
        }
        if auth_basic.is_some() {
            // The password check waits on a file and a hash: the
            // balancer's `init_peer` runs once it let the request in, as
            // nginx's content phase follows its access phase.
            return Ok((filter_delay, None));
        }
        let (init_delay, tls_name) = init_peer(
            &mut state,
            p,
            up,
            &tried,
            &request_view,
            &hook_cx,
            cx,
            parts,
        )?;
        Ok((filter_delay.max(init_delay), tls_name))
    })();
    let tls_name = match prepared {
        Ok((0, name)) => name,
        Ok((delay_ms, name)) => {
            // A module's delay (limit_req): the request waits on a timer;
            // if the client goes away meanwhile, the connection drops
            // this future (and `delayed` logs it).
            // Boxed, as the body read below: rare paths kept out of the
            // size of every request's future.
            state.waiting();
            let delayed = Delayed { cx, parts };
            Box::pin(tokio::time::sleep(std::time::Duration::from_millis(
                delay_ms,
            )))
            .await;
            std::mem::forget(delayed);
            let limits = location.limit_conn.as_ref().filter(|_| filter_delayed);
            if let Some(limits) = limits.filter(|_| conn_first(cx)) {
                match limit_conn(limits, &vars(), cx, parts, &mut conn_status) {
                    Ok(hold) => *conn_hold = hold,
                    Err(resp) => {
                        set_conn_status(record.as_deref_mut(), conn_status);
                        not_proxied(record, &vars());
                        return *resp;
                    }
                }
            }
            name
        }
        Err(resp) => {
            set_conn_status(record.as_deref_mut(), conn_status);
            if refused_before {
                not_proxied(record, &vars());
            }
            return *resp;
        }
    };
    set_conn_status(record.as_deref_mut(), conn_status);
    if denied {
        not_proxied(record, &vars());
        return crate::http::allow::forbidden(cx, parts);
    }
    let tls_name = match location
        .auth_basic_for(&parts.method)
        .filter(|_| !cx.granted)
    {
        None => tls_name,
        Some(auth) => {
            state.waiting();
            // Boxed: most requests have no password to check, and the
            // request's future stays their size.
            let refused = Box::pin(crate::http::allow::access_phase(
                location.access_for(&parts.method),
                Some(auth),
                location.satisfy_any,
                parts,
                &vars(),
                cx,
            ))
            .await;
            if let Some(resp) = refused {
                not_proxied(record, &vars());
                return resp;
            }
            match Box::pin(init_after_access(
                &mut state,
                p,
                up,
                &tried,
                vars(),
                cx,
                parts,
            ))
            .await
            {
                Ok(name) => name,
                Err(resp) => return *resp,
            }
        }
    };
    // From here nginx asks the upstream, and with
    // `proxy_ignore_client_abort on` no longer watches the client.
    if p.ignore_client_abort && parts.version < Version::HTTP_2 {
        crate::http::h1::ignore_client_abort();
    }
    let with = TryWith {
        tls: proxy_tls.map(|t| TlsTarget {
            client: &t.client,
            name: match (&t.name, &tls_name) {
                (TlsName::Fixed(name), _) => name,
                (TlsName::Template(_), Some(name)) => name,
                (TlsName::Template(_), None) => "",
            },
        }),
        upgrade: cx.head.upgrade,
    };
    let scheme = if p.fastcgi.is_some() {
        "fastcgi"
    } else if proxy_tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Read only when `proxy_next_upstream_timeout` needs it.
    let started = (!p.next_upstream_timeout.is_zero()).then(clock::now);
    // (GET and HEAD first: one test for most requests.)
    let non_idempotent = !matches!(parts.method, Method::GET | Method::HEAD)
        && (matches!(parts.method, Method::POST | Method::PATCH)
            || parts.method.as_str() == "LOCK");
    // `proxy_set_body` replaces the client's body, `proxy_pass_request_body
    // off` drops it (the connection discards what it left unread).
    let shape = p.shape.as_deref();
    let set_body = shape
        .and_then(|s| s.set_body.as_ref())
        .map(|t| bytes::Bytes::from(t.eval(&vars())));
    let pass_body = set_body.is_none() && shape.is_none_or(|s| s.body);
    let body_empty = match &set_body {
        Some(b) => b.is_empty(),
        None => !pass_body || body.is_end_stream(),
    };
    let length = match &set_body {
        Some(b) => Some(b.len() as u64),
        None => body.size_hint().exact(),
    };
    // An HTTP/1.0 upstream needs the length before the body: a chunked
    // body is read whole first, as nginx's request buffering does (within
    // client_max_body_size and client_body_timeout, which the connection
    // enforces while it is read).
    let chunked_to_http10 = pass_body && !p.http11 && !body_empty && length.is_none();
    let (buffered, mut body) = if !pass_body {
        // nginx reads the body it does not send: client_max_body_size and
        // client_body_timeout apply to it as to any other.
        if !body.is_end_stream() {
            state.waiting();
            if Box::pin(drain(body)).await.is_err() {
                // The connection answers (413, 400) or closes.
                return error_page(400);
            }
        }
        (set_body, None)
    } else if chunked_to_http10 {
        state.waiting();
        let collected = Box::pin(body.collect()).await;
        match collected {
            Ok(collected) => (Some(collected.to_bytes()), None),
            // The connection answers a body it could not read (400, 413)
            // or closes; this answer is not used.
            Err(_) => return error_page(400),
        }
    } else {
        // The client's body, until a try takes it: it streams, so only a
        // try that never sent it can hand it on to the next.
        let client = ReqBody::Client { body, unsent: None };
        (None, (!body_empty).then_some(client))
    };
    // The body can be sent again on another try when there is none or it
    // was read whole.
    let replayable = body_empty || buffered.is_some();
    let mut tries_left = tries;
    // Made only when `proxy_pass` has a URI part; otherwise the request's
    // own target (no `Uri` built, no reference count taken).
    let rewritten = p
        .uri
        .is_some()
        .then(|| upstream_uri(parts, cx.head, p, location, cx.original.is_some()));
    let framing = match (&buffered, length) {
        _ if body_empty => Framing::None,
        (Some(b), _) => Framing::Length(b.len() as u64),
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::Chunked,
    };
    // A `proxy_pass` with variables sends its value's URI part as it is.
    // (FastCGI has none: the log names the address alone.)
    let chosen_uri = chosen.and_then(|c| c.uri.as_deref());
    let target = match chosen_uri {
        _ if p.fastcgi.is_some() => "",
        Some(uri) => uri,
        None => rewritten
            .as_ref()
            .unwrap_or(&parts.uri)
            .path_and_query()
            .map_or("/", |pq| pq.as_str()),
    };
    // `proxy_cache`: an entry answers, or the upstream is asked with the
    // cache in mind. (Boxed: most locations cache nothing.)
    let mut cached = None;
    if let Some(c) = p.cache.as_deref() {
        let proxied = |key: &mut Vec<u8>| {
            key.extend_from_slice(scheme.as_bytes());
            key.extend_from_slice(b"://");
            key.extend_from_slice(proxy.host.as_bytes());
            key.extend_from_slice(target.as_bytes());
        };
        match Box::pin(cache::look(c, &vars(), &parts.method, proxied)).await {
            cache::Looked::Off => {}
            cache::Looked::Entry(answer, status) => {
                let (record, seen) = (record.as_deref_mut(), seen.as_deref_mut());
                return from_cache(*answer, status, p, cx, parts, &vars(), record, seen);
            }
            cache::Looked::Ask(pending) => {
                if let Some(r) = record.as_deref_mut() {
                    r.cache_status = pending.status.as_str();
                }
                if let Some(s) = seen.as_deref_mut() {
                    s.cache = pending.status.as_str();
                }
                cached = Some(pending);
            }
        }
    }
    let mut req_head = match &p.fastcgi {
        None => upstream_head(
            parts,
            cx.raw,
            p,
            &vars(),
            target,
            framing,
            cached.as_deref(),
        ),
        Some(f) => {
            // A chunked body read whole: `$content_length` (the params'
            // CONTENT_LENGTH) is its length from now on, as nginx's.
            let read = match (&buffered, cx.head.content_length) {
                (Some(b), false) => {
                    let mut head = cx.head.clone();
                    head.body_length = Some(b.len() as u64);
                    Some(head)
                }
                _ => None,
            };
            let vars = match &read {
                Some(head) => VarCtx { head, ..vars() },
                None => vars(),
            };
            // (`fastcgi_pass_request_headers`, as the request's shape.)
            let pass_headers = p.shape.as_deref().is_none_or(|s| s.headers);
            let has_body = framing != Framing::None;
            // (Boxed: few locations read `$realpath_root`.)
            let real = match &f.realpath_of {
                Some(root) => Box::pin(realpath_root(root.eval(&vars), cx, parts)).await,
                None => None,
            };
            let _real = crate::vars::RealpathScope::enter(real);
            match fastcgi::request(f, parts, &vars, pass_headers, has_body) {
                Ok(head) => head,
                Err(too_big) => return fastcgi_too_big(too_big, cx, parts),
            }
        }
    };
    // nginx's `$upstream_http_*` reads every line the upstream sent, the
    // ones it hides from the client (Server, Date, X-Accel-*) too: they
    // are kept for the record and dropped after it took its copy. The
    // cache reads and stores them all too.
    let log_hidden = record.as_deref().is_some_and(Record::wants_upstream_head) || seen.is_some();
    let keep_hidden = log_hidden || cached.is_some();
    if keep_hidden {
        req_head.keep_hidden();
    }
    // `proxy_bind` and `proxy_socket_keepalive`, once per request as
    // nginx's `ngx_http_upstream_set_local`.
    // (Boxed: one word in this future's state where it is not used.)
    let local = p
        .socket
        .as_deref()
        .map(|s| Box::new(socket_settings(s, &vars(), cx, parts)));

    loop {
        if let Some(b) = &buffered {
            body = Some(ReqBody::Buffered(b.clone()));
        }
        let now = clock::unix_secs();
        // The clock read at get's end is the try's start.
        let (chosen, try_started) = state.get(&peers_view(up, &tried, now));
        let i = match chosen {
            GetResult::Peer(i) => i as usize,
            GetResult::Busy => {
                // nginx's NOLIVE, which `proxy_cache_use_stale error` takes.
                if let Some(answer) = stale(p, cached.as_deref_mut(), NextUpstream::ERROR) {
                    let (r, s) = (record.as_deref_mut(), seen.as_deref_mut());
                    return from_cache(*answer, cache::Status::Stale, p, cx, parts, &vars(), r, s);
                }
                if let Some(s) = seen.as_deref_mut() {
                    push_list(&mut s.addr, &up.name);
                    push_list(&mut s.status, "502");
                    s.tries.start();
                    s.tries.end();
                }
                return no_live_upstreams(
                    cx,
                    parts,
                    record,
                    &format!("{scheme}://{}{}", up.name, target),
                    &up.name,
                );
            }
            GetResult::Error(msg) => return hook_error(cx, parts, &up.name, &msg, 502),
        };
        tried.set(i);
        up.on_select(i, now);
        let timed = record.is_some() || seen.is_some();
        if let Some(r) = record.as_deref_mut() {
            // The peer's address as text, made at config load.
            push_list(&mut r.upstream_addr, up.configs[i].addr.as_str());
            r.try_start();
        }
        if let Some(s) = seen.as_deref_mut() {
            push_list(&mut s.addr, up.configs[i].addr.as_str());
            s.tries.start();
        }

        let progress = Progress::new(timed);
        let in_flight = InFlight {
            up,
            peer: i,
            state: &mut state,
            tried: &tried,
            started: try_started,
            record: record.as_deref_mut(),
            seen: seen.as_deref_mut(),
            progress: &progress,
            cx,
            parts,
            upstream: (scheme, target),
        };
        let mut bytes = (0, 0);
        // How the answer's head is read: one code path for both (a
        // reader each), so the request path compiles as it would
        // without FastCGI.
        let mut http = upstream_h1::HttpRead::new(&req_head);
        let mut fastcgi = req_head
            .is_fastcgi()
            .then(|| upstream_h1::FastCgiRead::new(&req_head));
        let reader: &mut dyn upstream_h1::ReadHead = match &mut fastcgi {
            Some(f) => f,
            None => &mut http,
        };
        let mut result = attempt(
            up,
            i,
            p,
            with,
            &req_head,
            &mut body,
            &progress,
            local.as_deref(),
            &mut bytes,
            reader,
        )
        .await;
        if let Some(f) = &mut fastcgi {
            fastcgi_stderr(&f.take_stderr(), &mut result, cx, parts, &up.addrs[i]);
        }
        // From here `release` or the response's `PeerHold` gives it back.
        in_flight.handed_on();
        let connected = progress.connected();
        let now = clock::unix_secs();
        let timed_out = started
            .is_some_and(|s| clock::now().saturating_duration_since(s) >= p.next_upstream_timeout);

        match result {
            Ok(resp) => {
                let status = resp.parts.status.as_u16();
                if let Some(r) = record.as_deref_mut() {
                    push_status(&mut r.upstream_status, status);
                    r.try_reached(connected, true);
                    r.upstream_head(Some(&resp.passed.lines));
                    if r.wants_bytes() {
                        let (read, _) = resp.body.read().unwrap_or_default();
                        r.try_bytes(resp.sent, read, 0);
                    }
                }
                if let Some(s) = seen.as_deref_mut() {
                    push_status(&mut s.status, status);
                    s.head.clone_from(&resp.passed.lines);
                    s.tries.reached(connected, true);
                    let (read, _) = resp.body.read().unwrap_or_default();
                    s.tries.bytes(resp.sent, read, 0);
                }
                if let Some(bit) = NextUpstream::status_bit(status) {
                    // ngx_http_upstream_test_next: retry on a listed status
                    // only with tries left, a body that can be sent again
                    // and time left; a POST also needs non_idempotent.
                    // Otherwise the upstream's response is passed on.
                    let mask = if non_idempotent {
                        bit | NextUpstream::NON_IDEMPOTENT
                    } else {
                        bit
                    };
                    if tries_left > 1 && allows(p.next_upstream, mask) && replayable && !timed_out {
                        let try_state = if status == 403 || status == 404 {
                            TryState::Next
                        } else {
                            TryState::Failed
                        };
                        release(
                            up,
                            &mut state,
                            &tried,
                            i,
                            try_state,
                            status,
                            try_started,
                            now,
                            &mut tries_left,
                        );
                        drop(resp);
                        if let Some(s) = seen.as_deref_mut() {
                            s.tries.end();
                        }
                        if tries_left == 0 {
                            return error_page(final_status(bit));
                        }
                        continue;
                    }
                }
                release(
                    up,
                    &mut state,
                    &tried,
                    i,
                    TryState::Ok,
                    status,
                    try_started,
                    now,
                    &mut tries_left,
                );
                // `proxy_cache_use_stale http_500 ...`: the expired entry
                // in place of the upstream's error.
                if let Some(answer) = NextUpstream::status_bit(status)
                    .and_then(|bit| stale(p, cached.as_deref_mut(), bit))
                {
                    let (r, s) = (record.as_deref_mut(), seen.as_deref_mut());
                    return from_cache(*answer, cache::Status::Stale, p, cx, parts, &vars(), r, s);
                }
                if p.intercept && status >= 300 {
                    if let Some(page) = intercepted(location, status, &resp.passed) {
                        return page;
                    }
                }
                let upstream_h1::Response {
                    parts: head,
                    mut passed,
                    body: upstream_body,
                    upgraded,
                    ..
                } = resp;
                // Stored as the upstream sent it, before the location
                // hides or rewrites lines.
                let fill = match (cached.as_deref_mut(), &p.cache) {
                    (Some(pending), Some(c)) if upgraded.is_none() => {
                        pending.fill(c, head.status, &passed, &vars())
                    }
                    _ => None,
                };
                pass_lines(p, &mut passed, keep_hidden, cx, parts, vars);
                let hold = PeerHold::new(upstream.clone(), i, conn_hold.take());
                if let Some(upgraded) = upgraded {
                    let upstream = format!("{scheme}://{}{}", up.addrs[i], target);
                    return switched(upgraded, head, &passed, hold, cx, parts, &upstream);
                }
                // The target as the upstream got it, for a line logged if
                // the body breaks off (the client's own target is read
                // from its request then: nothing copied for most).
                let asked = match chosen_uri {
                    _ if p.fastcgi.is_some() => None,
                    None if rewritten.is_none() && cx.original.is_none() => None,
                    _ => Some(made_target(target)),
                };
                passed.origin = Some(upstream_log::Origin {
                    conn: cx.conn,
                    server: cx.server.name.clone(),
                    target: asked,
                    client: cx.client.ip(),
                    scheme: if p.fastcgi.is_some() {
                        upstream_log::Scheme::FastCgi
                    } else if proxy_tls.is_some() {
                        upstream_log::Scheme::Https
                    } else {
                        upstream_log::Scheme::Http
                    },
                    buffering: p.buffering,
                });
                let mut resp =
                    Response::from_parts(head, RespBody::upstream(upstream_body, passed, hold));
                *resp.version_mut() = Version::HTTP_11;
                if let Some(fill) = fill {
                    resp.body_mut().fill(fill);
                    // An answer being stored meets the client's conditions
                    // as one from the cache does.
                    if let Some(answer) =
                        cache::not_modified(&mut resp, &parts.headers, if_modified_since(cx))
                    {
                        return answer;
                    }
                }
                return resp;
            }
            Err(failure) if matches!(failure.ft, FT_LOCAL | FT_LOCAL_ALERT) => {
                // The upstream is not at fault: nginx logs it (a bind at
                // `crit`, the socket option before it at `alert`) and
                // answers 500 with no other try.
                let addr = &up.addrs[i];
                let level = if failure.ft == FT_LOCAL_ALERT {
                    Level::Alert
                } else {
                    Level::Crit
                };
                log_try(level, cx, parts, &failure.message, scheme, addr, &target);
                if let Some(s) = seen.as_deref_mut() {
                    s.tries.end();
                }
                release(
                    up,
                    &mut state,
                    &tried,
                    i,
                    TryState::Ok,
                    0,
                    try_started,
                    now,
                    &mut tries_left,
                );
                return error_page(500);
            }
            Err(failure) => {
                let status = final_status(failure.ft);
                let mut ft = failure.ft;
                if failure.sent && non_idempotent {
                    ft |= NextUpstream::NON_IDEMPOTENT;
                }
                if let Some(r) = record.as_deref_mut() {
                    push_status(&mut r.upstream_status, status);
                    r.try_reached(connected, false);
                    r.upstream_head(None);
                    r.try_bytes(bytes.0, bytes.1, 0);
                }
                if let Some(s) = seen.as_deref_mut() {
                    push_status(&mut s.status, status);
                    s.head.clear();
                    s.tries.reached(connected, false);
                    s.tries.bytes(bytes.0, bytes.1, 0);
                    s.tries.end();
                }
                let (message, addr) = (&failure.message, &up.addrs[i]);
                let level = if failure.crit {
                    Level::Crit
                } else {
                    Level::Error
                };
                log_try(level, cx, parts, message, scheme, addr, &target);
                release(
                    up,
                    &mut state,
                    &tried,
                    i,
                    TryState::Failed,
                    0,
                    try_started,
                    now,
                    &mut tries_left,
                );
                // The streamed body went to this try and cannot be sent again.
                let body_gone = !replayable && body.is_none();
                if tries_left == 0 || !allows(p.next_upstream, ft) || body_gone || timed_out {
                    let ft = failure.ft & !NextUpstream::NON_IDEMPOTENT;
                    if let Some(answer) = stale(p, cached.as_deref_mut(), ft) {
                        let (r, s) = (record.as_deref_mut(), seen.as_deref_mut());
                        return from_cache(
                            *answer,
                            cache::Status::Stale,
                            p,
                            cx,
                            parts,
                            &vars(),
                            r,
                            s,
                        );
                    }
                    return error_page(status);
                }
            }
        }
    }
}

/// The location's hiding and rewriting of an upstream's lines
/// (`proxy_hide_header`, `proxy_pass_header`, `proxy_redirect`,
/// `proxy_cookie_*`); `hidden_kept`: the lines nginx hides by default
/// were kept (for a log, for the cache) and go now.
#[inline(always)]
fn pass_lines<'v>(
    p: &Proxy,
    passed: &mut upstream_h1::Passed,
    hidden_kept: bool,
    cx: &ClientCx<'_>,
    parts: &Parts,
    // (Made only where a rule needs it.)
    vars: impl Fn() -> VarCtx<'v>,
) {
    match &p.header_rules {
        Some(rules) => rules.apply(passed),
        None if hidden_kept && passed.has_hidden() => {
            upstream_h1::HeaderRules::default().apply(passed)
        }
        None => {}
    }
    if passed.redirect && p.redirects.is_empty() {
        own_location(passed);
    } else if passed.redirect {
        redirect(passed, p, cx, parts, &vars());
    }
    if let Some(cookies) = &p.cookies {
        cookies.apply(passed, &vars());
    }
}

/// The location's `if_modified_since`, which the cache's 304s follow.
fn if_modified_since(cx: &ClientCx<'_>) -> crate::conf::model::IfModifiedSince {
    cx.statics
        .map_or(crate::conf::model::IfModifiedSince::Exact, |s| {
            s.if_modified_since
        })
}

/// `proxy_cache_use_stale`: the expired entry the request found, where
/// the failure or status (`ft`, `proxy_next_upstream`'s bit) is listed.
#[inline]
fn stale(p: &Proxy, cached: Option<&mut cache::Pending>, ft: u32) -> Option<Box<cache::Answer>> {
    let (pending, c) = (cached?, p.cache.as_deref()?);
    pending.stale_for(c, ft)
}

/// An answer from the cache (`status`: a hit, an entry being renewed, or
/// an expired one `proxy_cache_use_stale` serves), as an upstream's
/// goes out: the location's header rules, the client's conditions and
/// ranges.
#[allow(clippy::too_many_arguments)]
#[cold]
fn from_cache(
    mut answer: cache::Answer,
    status: cache::Status,
    p: &Proxy,
    cx: &ClientCx<'_>,
    parts: &Parts,
    vars: &VarCtx<'_>,
    record: Option<&mut Record>,
    seen: Option<&mut UpstreamSeen>,
) -> Response<RespBody> {
    // nginx's `$upstream_http_*` read the stored answer's lines; a hit
    // leaves `$upstream_addr` and `$upstream_status` unset, a stale
    // answer the tries that failed.
    if let Some(r) = record {
        r.cache_status = status.as_str();
        r.upstream_head(Some(&answer.passed.lines));
    }
    if let Some(s) = seen {
        s.cache = status.as_str();
        s.head.clone_from(&answer.passed.lines);
    }
    pass_lines(p, &mut answer.passed, true, cx, parts, || *vars);
    let max_ranges = cx.statics.map_or(u32::MAX, |s| s.max_ranges);
    answer.respond(parts, if_modified_since(cx), max_ranges)
}

/// `proxy_intercept_errors on`: an upstream's answer whose status has an
/// `error_page` becomes nginx's special response for it (its body and
/// headers dropped, but a 401's `WWW-Authenticate`), which the
/// `error_page` then replaces.
#[cold]
#[inline(never)]
fn intercepted(
    location: &Location,
    status: u16,
    passed: &upstream_h1::Passed,
) -> Option<Response<RespBody>> {
    location.error_pages.as_ref()?.find(status)?;
    let mut page = crate::http::response::error_page(status);
    if status == 401 {
        let challenge = passed
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(b"www-authenticate"))
            .and_then(|(_, value)| HeaderValue::from_bytes(value).ok());
        if let Some(value) = challenge {
            page.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    Some(page)
}

/// `proxy_redirect` on a response with a Location or Refresh line (cold:
/// out of the request path's code).
#[cold]
#[inline(never)]
fn redirect(
    passed: &mut upstream_h1::Passed,
    p: &Proxy,
    cx: &ClientCx<'_>,
    parts: &Parts,
    vars: &VarCtx<'_>,
) {
    let host = cx.head.host(&parts.uri, &parts.headers);
    let rule = |value: &[u8]| p.redirects.iter().find_map(|r| r.apply(value, vars));
    passed.rewrite(rule, |path| {
        crate::http::response::absolute_url(path, host, parts, cx.local, p.style, &cx.server.name)
    });
}

/// Without `proxy_redirect` rules (`off`, FastCGI), an upstream's Location
/// that is not a path is the answer's own, as nginx's
/// `ngx_http_upstream_rewrite_location` takes it (HTTP/2 writes it at the
/// fixed place).
#[cold]
#[inline(never)]
fn own_location(passed: &mut upstream_h1::Passed) {
    let own = passed
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"location"))
        .is_some_and(|(_, value)| value.first() != Some(&b'/'));
    passed.location_set = own;
}

/// A `101 Switching Protocols` passed on: the response that carries the
/// tunnel (cold: out of the request path's code).
///
/// The try is over for the balancer (`free` ran, as a success), but the
/// peer's connection stays counted until the tunnel ends (`hold`): nginx
/// frees the peer when it finalizes the request, at the tunnel's end, and
/// always as a success, so least_conn and max_conns see open tunnels as
/// the connections they are. The upstream connection is the tunnel's and
/// never goes back to the pool.
#[cold]
#[inline(never)]
fn switched(
    upgraded: Box<upstream_h1::Upgraded>,
    mut head: http::response::Parts,
    passed: &upstream_h1::Passed,
    hold: PeerHold,
    cx: &ClientCx<'_>,
    parts: &Parts,
    upstream: &str,
) -> Response<RespBody> {
    let tunnel = crate::http::tunnel::Tunnel::new(upgraded, context(cx, parts, upstream), cx.conn);
    // The 101's headers (Upgrade) go out through the map.
    passed.append_to(&mut head.headers);
    crate::http::response::PassedOwn::mark(passed, &mut head.extensions);
    let mut resp = Response::from_parts(head, RespBody::tunnel(tunnel, hold));
    *resp.version_mut() = Version::HTTP_11;
    resp
}

/// `$realpath_root`: `root` with its links resolved, on the blocking
/// pool; where it cannot be, nginx's `crit` line and no value.
async fn realpath_root(root: Vec<u8>, cx: &ClientCx<'_>, parts: &Parts) -> Option<Vec<u8>> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let path = root.clone();
    let real = crate::http::static_files::blocking(move || {
        std::fs::canonicalize(std::ffi::OsStr::from_bytes(&path))
    })
    .await;
    match real {
        Ok(real) => Some(real.into_os_string().into_vec()),
        Err(e) => {
            let mut line = format!(
                "realpath() \"{}\" failed ({}: {})",
                String::from_utf8_lossy(&root),
                e.raw_os_error().unwrap_or(0),
                strerror(&e)
            );
            request_context(cx, parts, &mut line);
            log::write(Level::Crit, Some(cx.conn), &line);
            None
        }
    }
}

/// Every peer down or busy: nginx's "no live upstreams" (cold: the
/// failure paths stay out of the request path's code).
#[cold]
#[inline(never)]
fn no_live_upstreams(
    cx: &ClientCx<'_>,
    parts: &Parts,
    record: Option<&mut Record>,
    upstream: &str,
    name: &str,
) -> Response<RespBody> {
    if let Some(r) = record {
        push_list(&mut r.upstream_addr, name);
        push_list(&mut r.upstream_status, "502");
        r.try_start();
    }
    log::write(
        Level::Error,
        Some(cx.conn),
        &format!(
            "no live upstreams while connecting to upstream{}",
            context(cx, parts, upstream)
        ),
    );
    error_page(502)
}

/// A `proxy_pass` with variables whose value named no upstream: nginx's
/// line for it, and its answer.
#[cold]
pub(crate) fn not_chosen(
    cx: &ClientCx<'_>,
    parts: &Parts,
    e: &crate::upstream::dynamic::NotChosen,
) -> Response<RespBody> {
    let mut line = e.message.clone();
    request_context(cx, parts, &mut line);
    log::write(Level::Error, Some(cx.conn), &line);
    error_page(e.status)
}

/// A module hook's error: logged with the request, answered `status`.
#[cold]
#[inline(never)]
fn hook_error(
    cx: &ClientCx<'_>,
    parts: &Parts,
    upstream: &str,
    msg: &str,
    status: u16,
) -> Response<RespBody> {
    log::write(
        Level::Error,
        Some(cx.conn),
        &format!("{}{}", msg, context(cx, parts, upstream)),
    );
    error_page(status)
}

/// A try's end, logged as nginx does: a failure (`error`), or a client
/// that left (`info`).
#[cold]
#[inline(never)]
fn log_try(
    level: Level,
    cx: &ClientCx<'_>,
    parts: &Parts,
    message: &str,
    scheme: &str,
    addr: &PeerAddr,
    uri: &impl std::fmt::Display,
) {
    let upstream = upstream_name(scheme, addr, uri);
    log::write(
        level,
        Some(cx.conn),
        &format!("{}{}", message, context(cx, parts, &upstream)),
    );
}

/// The target an upstream was asked, where it is not the client's own,
/// kept for the line logged if the body breaks off.
#[cold]
#[inline(never)]
fn made_target(target: &str) -> Box<str> {
    target.into()
}

/// The upstream as nginx's log lines name it: `SCHEME://PEER[URI]`, with
/// its `uri_separator` (`:`) after a Unix socket's path.
pub(crate) fn upstream_name(scheme: &str, addr: &PeerAddr, uri: &impl std::fmt::Display) -> String {
    let separator = if addr.inet().is_some() { "" } else { ":" };
    format!("{scheme}://{addr}{separator}{uri}")
}

/// A FastCGI application's stderr read with the head: nginx's lines; and
/// the context the body's own is logged with.
#[inline(never)]
fn fastcgi_stderr(
    stderr: &[Vec<u8>],
    result: &mut Result<upstream_h1::Response, Failure>,
    cx: &ClientCx<'_>,
    parts: &Parts,
    addr: &PeerAddr,
) {
    for text in stderr {
        let line = crate::http::fastcgi::response::stderr_line(text);
        let line = format!("{line} while reading response header from upstream");
        log_try(Level::Error, cx, parts, &line, "fastcgi", addr, &"");
    }
    if let Ok(resp) = result {
        let upstream = upstream_name("fastcgi", addr, &"");
        resp.body
            .stderr_context(cx.conn, context(cx, parts, &upstream));
    }
}

/// nginx's alert for params longer than one record (500).
#[cold]
#[inline(never)]
fn fastcgi_too_big(
    too_big: fastcgi::TooBig,
    cx: &ClientCx<'_>,
    parts: &Parts,
) -> Response<RespBody> {
    let mut line = format!("fastcgi request record is too big: {}", too_big.0);
    request_context(cx, parts, &mut line);
    log::write(Level::Alert, Some(cx.conn), &line);
    error_page(500)
}

/// `$upstream_status`'s next item.
fn push_status(list: &mut String, status: u16) {
    push_list(list, "");
    push_digits(list, u32::from(status));
}

fn push_digits(out: &mut String, n: u32) {
    let mut buf = [0u8; 20];
    let digits = crate::vars::decimal(u64::from(n), &mut buf);
    out.push_str(std::str::from_utf8(digits).unwrap_or(""));
}

fn push_list(list: &mut String, item: &str) {
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(item);
}

/// How far a try got, shared by the try and its [`InFlight`] guard
/// (an atomic only because a future's shared parts must be `Sync`: one
/// request's future touches it, on one thread at a time).
struct Progress {
    /// The try's start, when an access log wants `$upstream_connect_time`.
    base: Option<Instant>,
    /// 0 while connecting; once connected, nanoseconds after `base` plus
    /// one (1 without `base`).
    connected: AtomicU64,
}

impl Progress {
    fn new(timed: bool) -> Progress {
        Progress {
            base: timed.then(clock::now),
            connected: AtomicU64::new(0),
        }
    }

    /// A new connection is being made (again).
    fn connecting(&self) {
        self.connected.store(0, Relaxed);
    }

    fn connected_now(&self) {
        let nanos = self.base.map_or(0, |base| {
            clock::now().saturating_duration_since(base).as_nanos()
        });
        let mark = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.connected.store(mark, Relaxed);
    }

    /// When the connection was there, if an access log wants it.
    fn connected(&self) -> Option<Instant> {
        match (self.base, self.connected.load(Relaxed)) {
            (Some(base), n) if n > 0 => Some(base + std::time::Duration::from_nanos(n - 1)),
            _ => None,
        }
    }

    /// Connected: the request is being sent, or its answer awaited.
    fn sending(&self) -> bool {
        self.connected.load(Relaxed) != 0
    }
}

/// A try waiting for the upstream. If the request is dropped then (the
/// client closed its connection, or reset its HTTP/2 stream), this ends
/// the try as nginx finalizes a request with 499: the peer is given back
/// (`on_select`'s count: `least_conn`, `max_conns`), the module's `free`
/// runs as for a success without a status (nginx's state 0), the access
/// log's `$upstream_status` gets `-`, and the upstream connection, in the
/// try's future, is closed. Without it each such request left the peer
/// counted busy for good.
struct InFlight<'a, 's> {
    up: &'a Upstream,
    peer: usize,
    state: &'a mut PeerState<'s>,
    tried: &'a Tried,
    started: Mono,
    record: Option<&'a mut Record>,
    seen: Option<&'a mut UpstreamSeen>,
    progress: &'a Progress,
    cx: &'a ClientCx<'a>,
    parts: &'a Parts,
    /// The scheme and the request's target upstream, for the log.
    upstream: (&'a str, &'a str),
}

impl InFlight<'_, '_> {
    /// The try ended: [`release`] or the response's `PeerHold` gives the
    /// connection back.
    fn handed_on(self) {
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_, '_> {
    #[cold]
    fn drop(&mut self) {
        self.up.release_conn(self.peer);
        if let Some(r) = self.record.as_deref_mut() {
            push_list(&mut r.upstream_status, "-");
            r.try_reached(self.progress.connected(), false);
        }
        if let Some(s) = self.seen.as_deref_mut() {
            push_list(&mut s.status, "-");
            s.tries.reached(self.progress.connected(), false);
        }
        let mut tries_left = 0;
        release(
            self.up,
            self.state,
            self.tried,
            self.peer,
            TryState::Ok,
            0,
            self.started,
            clock::unix_secs(),
            &mut tries_left,
        );
        if !client_left(self.parts) {
            return;
        }
        let action = if self.progress.sending() {
            "sending request to"
        } else {
            "connecting to"
        };
        let message = format!(
            "epoll_wait() reported that client prematurely closed connection, so upstream connection is closed too while {action} upstream"
        );
        let (scheme, target) = self.upstream;
        let addr = &self.up.addrs[self.peer];
        log_try(
            Level::Info,
            self.cx,
            self.parts,
            &message,
            scheme,
            addr,
            &target,
        );
    }
}

/// Whether a request dropped now is to be logged at `info` as one whose
/// client left: over HTTP/1 (an HTTP/2 stream's end is the connection's
/// business: nginx logs the RST_STREAM it got there), not for a body the
/// connection could not read, nor while a panic unwinds.
fn client_left(parts: &Parts) -> bool {
    parts.version != Version::HTTP_2
        && log::enabled(Level::Info)
        && crate::http::access::unanswered_status() == 499
        && !std::thread::panicking()
}

/// A request a module delayed (limit_req): if it is dropped while it
/// waits, the client left, which nginx logs at `info` (the 499 is the
/// access log's, [`crate::http::access::Unanswered`]).
struct Delayed<'a> {
    cx: &'a ClientCx<'a>,
    parts: &'a Parts,
}

impl Drop for Delayed<'_> {
    #[cold]
    fn drop(&mut self) {
        if !client_left(self.parts) {
            return;
        }
        let mut line = String::from("client prematurely closed connection");
        request_context(self.cx, self.parts, &mut line);
        log::write(Level::Info, Some(self.cx.conn), &line);
    }
}

/// The end of a try: the core's failure accounting, then the module's
/// `free`, then one try fewer (none left for a single peer, as nginx).
#[allow(clippy::too_many_arguments)]
fn release(
    up: &Upstream,
    state: &mut PeerState<'_>,
    tried: &Tried,
    i: usize,
    try_state: TryState,
    status: u16,
    try_started: Mono,
    now: u64,
    tries_left: &mut u32,
) {
    // A response passed on keeps its peer busy until its body is done
    // (`PeerHold`); anything else frees it now.
    if try_state != TryState::Ok {
        up.release_conn(i);
    }
    up.on_release(i, try_state, now);
    // Read, not the loop's time: modules weigh peers by microseconds.
    let end = Mono::read();
    let elapsed_us = end.nanos_since(try_started) / 1000;
    if status != 0 {
        up.on_response(i, status, elapsed_us);
    }
    let outcome = TryOutcome {
        peer: i as u32,
        state: try_state,
        status,
        elapsed_us,
    };
    let action = state.free(&peers_view(up, tried, now), outcome, end);
    *tries_left = tries_left.saturating_sub(1);
    if up.single || action == FreeAction::StopRetries {
        *tries_left = 0;
    }
}
