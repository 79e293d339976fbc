//! What happens to an answer on its way out, in nginx's filter order:
//! the headers filter (`expires`, then `add_header`), the gunzip filter,
//! the special response's `msie_padding`, the sub, charset and gzip
//! filters. One level's settings (the location's, else the server's)
//! apply.

use http::header::{ACCEPT_RANGES, ETAG, LAST_MODIFIED};
use http::request::Parts;
use http::Response;

use crate::http::body::RespBody;
use crate::http::charset::Charset;
use crate::http::gzip::Gzip;
use crate::http::response::{remove_in_order, ListedLastModified};
use crate::http::upstream_h1::LineEdit;
use crate::runtime::{AddHeader, HeaderSource};
use crate::vars::VarCtx;

/// A level's header filters.
pub struct Outbound {
    pub expires: Option<crate::http::expires::Rule>,
    pub add_headers: Box<[AddHeader]>,
    pub msie_padding: bool,
    /// `chunked_transfer_encoding off`: marks the answer [`NoChunked`].
    pub chunked: bool,
    pub charset: Option<Box<Charset>>,
    pub gzip: Option<Box<Gzip>>,
    /// `gunzip on`, after `add_header` and before `sub_filter`.
    pub gunzip: Option<Box<crate::http::gunzip::Gunzip>>,
    /// `limit_rate` (not 0) and `limit_rate_after`: the writer's pace.
    pub limit_rate: Option<crate::http::h1::LimitRate>,
    /// `sub_filter`: before charset and gzip, as nginx's filter order.
    pub sub: Option<Box<crate::http::sub_filter::SubFilter>>,
}

impl Outbound {
    /// Whether an `add_header` or `expires` value reads what the
    /// upstream answered.
    pub fn reads_upstream(&self) -> bool {
        self.expires.as_ref().is_some_and(|e| e.reads_upstream())
            || self
                .add_headers
                .iter()
                .any(|a| matches!(&a.value, HeaderSource::Template(t) if t.reads_upstream()))
    }
}

impl Outbound {
    /// Runs the filters on `resp`, the answer to `req`; `vars` gives the
    /// request's variables with the answer's status, for `add_header`.
    pub fn apply<'v>(
        &self,
        resp: &mut Response<RespBody>,
        req: &Parts,
        vars: impl Fn(u16) -> VarCtx<'v>,
    ) {
        // What the upstream answered, kept by the proxy where a line
        // reads it.
        let seen = match (&self.expires, self.add_headers.is_empty()) {
            (None, true) => None,
            _ => resp.extensions_mut().remove::<UpstreamSeenExt>(),
        };
        let with_answer = |status| VarCtx {
            upstream: seen.as_ref().map(|s| &*s.0),
            ..vars(status)
        };
        if let Some(expires) = &self.expires {
            crate::http::expires::apply(expires, resp, with_answer);
        }
        if let Some(limit) = self.limit_rate {
            resp.extensions_mut().insert(limit);
        }
        if !self.chunked {
            resp.extensions_mut().insert(NoChunked);
        }
        if !self.add_headers.is_empty() {
            add_headers(resp, &self.add_headers, with_answer);
        }
        if self.expires.is_some() || !self.add_headers.is_empty() {
            ranges_last(resp.headers_mut());
        }
        if let Some(gunzip) = &self.gunzip {
            gunzip.apply(req, resp);
        }
        if self.msie_padding {
            crate::http::response::msie_padding(resp, &req.headers);
        }
        if let Some(sub) = &self.sub {
            sub.apply(resp, &vars(resp.status().as_u16()));
        }
        if let Some(charset) = &self.charset {
            charset.apply(resp);
        }
        if let Some(gzip) = &self.gzip {
            gzip.apply(req, resp);
        }
        if resp
            .extensions_mut()
            .remove::<crate::http::gzip::GzipVary>()
            .is_some()
        {
            crate::http::gzip::add_vary(resp);
        }
    }
}

/// `chunked_transfer_encoding off` where the answer was made: one of
/// unknown length goes to an HTTP/1.1 client up to the close, as to
/// HTTP/1.0 (nginx's chunked filter then turns keep-alive off).
#[derive(Clone, Copy)]
pub struct NoChunked;

/// The response extension that carries a proxied request's
/// [`crate::vars::UpstreamSeen`] to the header filters.
#[derive(Clone)]
pub struct UpstreamSeenExt(pub Box<crate::vars::UpstreamSeen>);

/// nginx's `add_header`: each line whose status it applies to (or
/// `always`), unless its value is empty. A value reads the answer as the
/// lines before it left it (`$sent_http_*`), as nginx's.
fn add_headers<'v>(
    resp: &mut Response<RespBody>,
    added: &[AddHeader],
    vars: impl Fn(u16) -> VarCtx<'v>,
) {
    let status = resp.status().as_u16();
    let listed = matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    );
    for a in added.iter().filter(|a| listed || a.always) {
        let value = match &a.value {
            HeaderSource::Fixed(v) => v.clone(),
            HeaderSource::Template(t) => {
                let answer = &*resp;
                let vars = VarCtx {
                    answer: Some(answer),
                    ..vars(status)
                };
                let text = t.eval(&vars);
                match http::HeaderValue::from_bytes(&text) {
                    Ok(v) if !v.is_empty() => Some(v),
                    // (Empty: the line is not added, or the validator goes.)
                    _ if text.is_empty() => None,
                    // No header value: nothing done.
                    _ => continue,
                }
            }
        };
        if a.name == ETAG || a.name == LAST_MODIFIED {
            set_validator(resp, &a.name, value.as_ref());
            continue;
        }
        let Some(value) = value else {
            continue;
        };
        if let Some(spelled) = &a.spelled {
            let names = resp
                .extensions_mut()
                .get_or_insert_default::<crate::http::h1::Spellings>();
            names
                .0
                .push((a.name.clone(), std::sync::Arc::clone(spelled)));
        }
        resp.headers_mut().append(a.name.clone(), value);
    }
}

/// A file's Accept-Ranges after the lines `expires` and `add_header` added,
/// as nginx's range filter adds it after its headers filter.
fn ranges_last(headers: &mut http::HeaderMap) {
    if headers.contains_key(ACCEPT_RANGES) && headers.keys().last() != Some(&ACCEPT_RANGES) {
        let ranges: Vec<_> = headers.get_all(ACCEPT_RANGES).iter().cloned().collect();
        remove_in_order(headers, &ACCEPT_RANGES);
        for value in ranges {
            headers.append(ACCEPT_RANGES, value);
        }
    }
}

/// `add_header ETag` and `add_header Last-Modified` set the answer's one,
/// as nginx's headers filter does, rather than add another: in place of
/// the upstream's line, or of a file's ETag; a file's Last-Modified goes
/// and the added one comes among the other lines; an empty value removes
/// it.
fn set_validator(
    resp: &mut Response<RespBody>,
    name: &http::header::HeaderName,
    value: Option<&http::HeaderValue>,
) {
    let lower = name.as_str().as_bytes();
    if let Some(passed) = resp.body_mut().passed_mut() {
        // nginx's `headers_out` points at the last such line it copied.
        let lines = passed
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(lower))
            .count();
        if lines > 0 {
            let seen = std::cell::Cell::new(0);
            passed.edit_lines(|n, _| {
                if !n.eq_ignore_ascii_case(lower) {
                    return LineEdit::Keep;
                }
                seen.set(seen.get() + 1);
                match value {
                    _ if seen.get() < lines => LineEdit::Keep,
                    Some(v) => LineEdit::Set(v.as_bytes().to_vec()),
                    None => LineEdit::Drop,
                }
            });
            return;
        }
    }
    let headers = resp.headers_mut();
    if *name == ETAG {
        match value {
            Some(v) if headers.contains_key(ETAG) => {
                headers.insert(ETAG, v.clone());
            }
            Some(v) => {
                headers.append(ETAG, v.clone());
            }
            None => remove_in_order(headers, &ETAG),
        }
        return;
    }
    remove_in_order(headers, &LAST_MODIFIED);
    if let Some(v) = value {
        headers.append(LAST_MODIFIED, v.clone());
        resp.extensions_mut().insert(ListedLastModified);
    }
}
