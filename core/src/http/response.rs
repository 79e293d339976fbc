//! Responses the proxy makes itself: `return`, and nginx's error pages.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};

use crate::http::tls::Https;
use http::{HeaderValue, Response, StatusCode};

use crate::conf::model::RedirectStyle;
use crate::http::body::RespBody;
use crate::runtime::{Reply, ReplyText};
use crate::vars::VarCtx;

/// A `return`, as nginx's `ngx_http_script_return_code` and
/// `ngx_http_send_response`: without text (or with an empty fixed one)
/// 444, 408 and 499 close the connection without an answer (nginx
/// finalizes the request with them), any other 4xx or 5xx sends nginx's
/// page; a redirect sends the text as Location (made absolute when it
/// starts with `/`) with nginx's page for the status; anything else sends
/// the text as a body of the level's type for the URI (`types`,
/// `default_type`).
pub fn reply(r: &Reply, vars: &VarCtx<'_>) -> Response<RespBody> {
    let empty_fixed = match &r.text {
        None => true,
        Some(ReplyText::Fixed(b)) => b.is_empty(),
        Some(ReplyText::Template(_)) => false,
    };
    if r.status >= 400 && empty_fixed {
        return match r.status {
            408 | 444 | 499 => unanswered(r.status),
            status => error_page(status),
        };
    }
    let text = match &r.text {
        None => Bytes::new(),
        Some(ReplyText::Fixed(b)) => b.clone(),
        Some(ReplyText::Template(t)) => Bytes::from(t.eval(vars)),
    };
    if r.redirect {
        let mut resp = error_page(r.status);
        let made = text.first() == Some(&b'/') && r.style.absolute;
        let location = if made {
            absolute(&text, vars, r.style)
        } else {
            text
        };
        if let Ok(v) = HeaderValue::from_maybe_shared(location) {
            resp.headers_mut().insert(LOCATION, v);
            resp.extensions_mut().insert(OwnLocation);
        }
        if made {
            resp.extensions_mut().insert(MadeAbsolute);
        }
        return resp;
    }
    let mut resp = Response::new(RespBody::full(text));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    // nginx's header filter sends a 204 without type or length.
    if r.status != 204 {
        resp.headers_mut()
            .insert(CONTENT_TYPE, r.types.for_uri(vars.head.uri(&vars.req.uri)));
    }
    resp
}

/// A level's `types {}` and `default_type` for a text `return`, as header
/// values made at load (a `return 200 "ok"` allocates nothing for them).
pub struct ReplyTypes {
    by_ext: std::collections::HashMap<String, HeaderValue>,
    default: HeaderValue,
}

impl ReplyTypes {
    pub fn new(types: &crate::conf::model::ContentTypes) -> ReplyTypes {
        let value =
            |t: &str| HeaderValue::from_str(t).unwrap_or(HeaderValue::from_static("text/plain"));
        ReplyTypes {
            by_ext: types
                .by_ext
                .iter()
                .map(|(e, t)| (e.clone(), value(t)))
                .collect(),
            default: value(&types.default),
        }
    }

    /// nginx's `ngx_http_set_content_type`: the type of the extension
    /// after the last `.` of the URI's last segment, without case; else
    /// the default.
    pub fn for_uri(&self, uri: &[u8]) -> HeaderValue {
        let last = uri.rsplit(|&c| c == b'/').next().unwrap_or_default();
        // A dot that starts the segment is no extension's (nginx's
        // ngx_http_set_exten: `/.gif` has none).
        let Some(dot) = last.iter().rposition(|&c| c == b'.').filter(|&d| d > 0) else {
            return self.default.clone();
        };
        let ext = &last[dot + 1..];
        // Lowercased on the stack (an extension longer than this is no
        // type's).
        let mut lower = [0u8; 32];
        let Some(slot) = lower.get_mut(..ext.len()) else {
            return self.default.clone();
        };
        slot.copy_from_slice(ext);
        slot.make_ascii_lowercase();
        std::str::from_utf8(slot)
            .ok()
            .and_then(|e| self.by_ext.get(e))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// A response extension: its Location was a path made absolute here, as
/// nginx's header filter makes it, which writes such a line at its fixed
/// place (before `Connection`) rather than among the other lines.
#[derive(Clone, Copy)]
pub struct MadeAbsolute;

/// A response extension: its Location is the answer's own (`return`, a
/// `rewrite` redirect, a directory's, `error_page`'s: nginx's
/// `headers_out.location`), which nginx's HTTP/2 filter writes at its
/// fixed place whether or not it was made absolute; one `add_header`
/// put there goes among the others.
#[derive(Clone, Copy)]
pub struct OwnLocation;

/// A response extension: its Last-Modified is one `add_header` set, which
/// nginx writes among the other lines rather than at its header filter's
/// fixed place (where a file's goes).
#[derive(Clone, Copy)]
pub struct ListedLastModified;

/// A response extension: the upstream's header lines, moved into the map
/// (a cached answer's ranges, a 101's tunnel), had a Server or a Date
/// line (`proxy_pass_header`, a FastCGI application's), which is sent
/// instead of ours, as nginx's `headers_out.server` and `.date`. One in
/// the map without it is one `add_header` put there, sent after ours, as
/// nginx sends both.
#[derive(Clone, Copy)]
pub struct PassedOwn {
    pub server: bool,
    pub date: bool,
}

impl PassedOwn {
    /// Marks `extensions` as [`Passed`]'s lines (moved into the map) say.
    pub fn mark(passed: &crate::http::upstream_h1::Passed, extensions: &mut http::Extensions) {
        if passed.server || passed.date {
            extensions.insert(PassedOwn {
                server: passed.server,
                date: passed.date,
            });
        }
    }
}

/// Whether the answer carries the upstream's Server line (ours is not
/// sent then).
pub fn passed_server<B>(
    resp: &Response<B>,
    passed: Option<&crate::http::upstream_h1::Passed>,
) -> bool {
    passed.is_some_and(|p| p.server)
        || resp
            .extensions()
            .get::<PassedOwn>()
            .is_some_and(|o| o.server)
}

/// Whether the answer carries the upstream's Date line (ours is not sent
/// then).
pub fn passed_date<B>(
    resp: &Response<B>,
    passed: Option<&crate::http::upstream_h1::Passed>,
) -> bool {
    passed.is_some_and(|p| p.date) || resp.extensions().get::<PassedOwn>().is_some_and(|o| o.date)
}

/// Removes `name`'s lines from `map`, the others keeping their order
/// (`HeaderMap::remove` moves the last name into the gap, and the writers
/// send the map's lines in its order).
pub fn remove_in_order(map: &mut http::HeaderMap, name: &http::header::HeaderName) {
    if !map.contains_key(name) {
        return;
    }
    if map.keys().last() == Some(name) {
        map.remove(name);
        return;
    }
    let old = std::mem::take(map);
    let mut last: Option<http::header::HeaderName> = None;
    for (n, value) in old {
        // (`None`: another value of the name before.)
        let n = match n {
            Some(n) => {
                last = Some(n.clone());
                n
            }
            None => match &last {
                Some(n) => n.clone(),
                None => continue,
            },
        };
        if n != name {
            map.append(n, value);
        }
    }
}

/// nginx's header filter: a Location starting with `/` gets, with
/// `absolute_redirect on` (the default), the connection's scheme, the
/// request's host (the server's first name with `server_name_in_redirect
/// on`; else the local address) and, with `port_in_redirect on`, the local
/// port unless it is the scheme's (80, or 443 over TLS).
fn absolute(path: &[u8], vars: &VarCtx<'_>, style: RedirectStyle) -> Bytes {
    let host = vars.head.host(&vars.req.uri, &vars.req.headers);
    Bytes::from(absolute_url(
        path,
        host,
        vars.req,
        vars.local,
        style,
        vars.server_name,
    ))
}

/// [`absolute`] for the request `req` whose validated host is `host`, on
/// the connection's local address `local`.
pub fn absolute_url(
    path: &[u8],
    host: Option<&[u8]>,
    req: &http::request::Parts,
    local: std::net::SocketAddr,
    style: RedirectStyle,
    server_name: &str,
) -> Vec<u8> {
    use std::io::Write as _;
    if !style.absolute {
        return path.to_vec();
    }
    let https = req.extensions.get::<Https>().is_some();
    let mut out = Vec::with_capacity(path.len() + 40);
    out.extend_from_slice(if https { b"https://" } else { b"http://" });
    match host {
        _ if style.server_name => out.extend_from_slice(server_name.as_bytes()),
        Some(host) => out.extend_from_slice(host),
        None => {
            let _ = write!(out, "{}", crate::vars::NgxIp(local.ip()));
        }
    }
    let port = local.port();
    if style.port && port != if https { 443 } else { 80 } {
        let _ = write!(out, ":{port}");
    }
    out.extend_from_slice(path);
    out
}

/// No answer: the connection closes, and the access log shows `status`
/// (nginx's 444 "close", 408 "request timed out", 499 "client closed
/// request").
pub fn unanswered(status: u16) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::close());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp
}

/// What nginx makes of a request it finalizes with `status` (a
/// `limit_conn_status`): 408, 444 and 499 end it without an answer, any
/// other its special response.
pub fn finalized(status: u16) -> Response<RespBody> {
    match status {
        408 | 444 | 499 => unanswered(status),
        _ => error_page(status),
    }
}

/// nginx's special response for `status` (`ngx_http_special_response_handler`),
/// with our name in the footer: its page where nginx has one, else no body
/// and no type (`return 418`, `limit_conn_status 599`); 494 to 497 as the
/// 400 pages nginx makes of them, 498 with the 404 page. After 400, 413,
/// 414, 495 to 497, 500 and 501 nginx closes an HTTP/1 connection.
pub fn error_page(status: u16) -> Response<RespBody> {
    let detail = match status {
        494 => Some("Request Header Or Cookie Too Large"),
        495 => Some("The SSL certificate error"),
        496 => Some("No required SSL certificate was sent"),
        497 => Some("The plain HTTP request was sent to HTTPS port"),
        _ => None,
    };
    let mut resp = match detail {
        Some(detail) => error_page_with(400, detail),
        None => page(status),
    };
    // HTTP/1 only: over HTTP/2 nginx ignores it, and so does h2.rs for
    // an answer marked `ErrorPage`.
    if matches!(status, 400 | 413 | 414 | 495..=497 | 500 | 501) {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        resp.extensions_mut().insert(Http1Close);
    }
    resp.extensions_mut().insert(Special(status));
    resp
}

/// Marks nginx's special response (a request finalized with a status):
/// what `error_page` replaces, by the code it was finalized with (494 to
/// 497 answer 400). An upstream's own answer is not one.
#[derive(Clone, Copy)]
pub struct Special(pub u16);

/// Marks a `Connection: close` nginx sends over HTTP/1 only (after a 400,
/// 413 ...): over HTTP/2 the connection goes on.
#[derive(Clone, Copy)]
pub struct Http1Close;

/// Whether nginx 1.22 has a page of its own for `status`.
fn has_page(status: u16) -> bool {
    matches!(
        status,
        301..=303 | 307 | 308 | 400..=406 | 408..=416 | 421 | 429 | 498 | 500..=505 | 507
    )
}

fn page(status: u16) -> Response<RespBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !has_page(code.as_u16()) {
        let mut resp = Response::new(RespBody::full(Bytes::new()));
        *resp.status_mut() = code;
        return resp;
    }
    // 498 (nginx's "canceled") shows the 404 page.
    let shown = if status == 498 {
        StatusCode::NOT_FOUND
    } else {
        code
    };
    let title = format!("{} {}", shown.as_u16(), reason(shown));
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>waypost</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(RespBody::full(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp.extensions_mut().insert(ErrorPage);
    resp
}

/// Marks an answer made by [`error_page`]: nginx's special response, which
/// `msie_padding` pads.
#[derive(Clone, Copy)]
pub struct ErrorPage;

/// nginx's `msie_padding` (on by default): a 4xx or 5xx page it makes
/// gets six comment lines more for MSIE and Chrome (as nginx tells them:
/// not Opera, not `Gecko/`), whose "friendly" error pages replace a short
/// one.
pub fn msie_padding(resp: &mut Response<RespBody>, req: &http::HeaderMap) {
    const PADDING: &[u8] = b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";
    if resp.status().as_u16() < 400 || resp.extensions().get::<ErrorPage>().is_none() {
        return;
    }
    let Some(agent) = req.get(http::header::USER_AGENT).map(HeaderValue::as_bytes) else {
        return;
    };
    let ua = crate::http::head::UserAgent::of(agent);
    if ua.msie || ua.chrome {
        resp.body_mut().pad(PADDING);
    }
}

/// nginx's page for a 400 with a reason below the title, as for
/// "Request Header Or Cookie Too Large".
pub fn error_page_with(status: u16, detail: &str) -> Response<RespBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h1 = format!("{} {}", code.as_u16(), reason(code));
    let body = format!(
        "<html>\r\n<head><title>{} {detail}</title></head>\r\n<body>\r\n<center><h1>{h1}</h1></center>\r\n<center>{detail}</center>\r\n<hr><center>waypost</center>\r\n</body>\r\n</html>\r\n",
        code.as_u16()
    );
    let mut resp = Response::new(RespBody::full(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp.extensions_mut().insert(ErrorPage);
    resp
}

/// `status;`: the same data as `metrics;`, as JSON.
pub fn status_page(runtime: &crate::runtime::Runtime) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(Bytes::from(crate::metrics::status(runtime))));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `stub_status;`: nginx's counts as its page (GET and HEAD only).
pub fn stub_status_page(parts: &http::request::Parts) -> Response<RespBody> {
    if parts.method != http::Method::GET && parts.method != http::Method::HEAD {
        return error_page(405);
    }
    let mut resp = Response::new(RespBody::full(Bytes::from(crate::http::stats::page())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// `metrics;`: the running configuration's metrics, Prometheus text format.
pub fn metrics_page(runtime: &crate::runtime::Runtime) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(Bytes::from(crate::metrics::render(runtime))));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The reason nginx prints in its error pages: mostly the standard one, but
/// nginx keeps some older wordings (`ngx_http_special_response.c`).
/// The reason phrase of nginx's status line (`ngx_http_status_lines`) for
/// an answer waypost makes; empty where nginx has none, which then writes
/// the code and a space. (Its error pages' titles differ for 302 and 401:
/// [`reason`].)
pub fn status_text(code: StatusCode) -> &'static str {
    match code.as_u16() {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// The title of nginx's page for a status.
pub fn reason(code: StatusCode) -> &'static str {
    match code.as_u16() {
        401 => "Authorization Required",
        405 => "Not Allowed",
        408 => "Request Time-out",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        416 => "Requested Range Not Satisfiable",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => code.canonical_reason().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn error_pages_use_nginx_titles() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let body = |status| {
            let collected = rt.block_on(error_page(status).into_body().collect());
            let bytes = collected.expect("body").to_bytes();
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        };
        assert!(body(504).contains("<title>504 Gateway Time-out</title>"));
        assert!(body(502).contains("<center><h1>502 Bad Gateway</h1></center>"));
        assert!(body(503).contains("503 Service Temporarily Unavailable"));
    }
}
