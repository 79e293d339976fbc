//! `gzip on`: nginx's gzip filter. A response is compressed as it streams
//! when nginx would compress it: a 200, 403 or 404 with a body (no HEAD),
//! to a request that accepts gzip (`Accept-Encoding`, its `q` not 0), over
//! HTTP/1.1 or later (`gzip_http_version`), from a client `gzip_disable`
//! does not name, not through a proxy unless `gzip_proxied` says so (a
//! request with `Via`), not encoded already, of a `gzip_types` type, and
//! not known to be shorter than `gzip_min_length`. Its Content-Length and
//! Accept-Ranges go, its ETag is made weak (or goes, if it is not a
//! quoted one), `Content-Encoding: gzip` is added, and
//! `Vary: Accept-Encoding` with `gzip_vary on`.

use crate::pattern::Regex;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, Version};

use crate::conf::model::{self, GzipConf};
use crate::conf::ConfError;
use crate::http::body::{header_of, known_length, type_of, RespBody};
use crate::http::upstream_h1::{LineEdit, Passed};

/// An answer gzip_static marked as one that could have been another (a
/// `.gz` was there): `Vary: Accept-Encoding` goes with it once, from the
/// gzip filter or after it.
#[derive(Clone, Copy)]
pub struct GzipVary;

/// The map's last `Vary` is the one `gzip_vary` added: the HTTP/1 writer
/// puts it where nginx's header filter writes it, right after
/// `Connection`, and not among the other lines.
#[derive(Clone, Copy)]
pub struct VaryAdded;

/// Adds `gzip_vary`'s line to `resp`.
pub fn add_vary(resp: &mut Response<RespBody>) {
    resp.headers_mut()
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp.extensions_mut().insert(VaryAdded);
}

/// gzip_static's answer to whether the request takes gzip, which the gzip
/// filter keeps (nginx's `r->gzip_tested`).
#[derive(Clone, Copy)]
pub struct GzipTested(pub bool);

/// A level's compiled `gzip` settings.
#[derive(Debug)]
pub struct Gzip {
    /// Lowercase MIME types; `None`: any (`gzip_types *`).
    types: Option<Box<[String]>>,
    min_length: u64,
    level: u32,
    vary: bool,
    proxied: u16,
    http10: bool,
    disable: Box<[Regex]>,
    msie6: bool,
}

impl Gzip {
    pub fn build(conf: &GzipConf) -> Result<Gzip, ConfError> {
        let disable = conf
            .disable
            .iter()
            .map(|p| crate::vars::regex(p, true).map_err(ConfError::bare))
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Gzip {
            types: (!conf.types.iter().any(|t| t == "*")).then(|| conf.types.clone().into()),
            min_length: conf.min_length,
            level: conf.level,
            vary: conf.vary,
            proxied: conf.proxied,
            http10: conf.http10,
            disable,
            msie6: conf.msie6,
        })
    }

    /// Compresses `resp` to `req` where nginx would: first what the
    /// response must be (which earns it `Vary` with `gzip_vary on`), then
    /// what the request must be (`ngx_http_gzip_ok`).
    pub fn apply(&self, req: &Parts, resp: &mut Response<RespBody>) {
        let tested = resp.extensions_mut().remove::<GzipTested>();
        if !self.compressible(resp) {
            return;
        }
        if self.vary {
            // (One line, gzip_static's mark or not.)
            resp.extensions_mut().remove::<GzipVary>();
            add_vary(resp);
        }
        let takes = match tested {
            // gzip_static asked already, before the answer had headers.
            Some(GzipTested(ok)) => ok,
            None => self.takes(req, resp),
        };
        if !takes {
            return;
        }
        let passed = resp
            .body_mut()
            .take_passed()
            .map(|p| for_changed_body(p, false));
        // A HEAD gets the headers of the compressed answer, and no body
        // to compress.
        if req.method == Method::HEAD {
            if let Some(passed) = passed {
                resp.body_mut().put_passed(passed);
            }
        } else {
            resp.body_mut().gzip(self.level, passed);
        }
        let headers = resp.headers_mut();
        crate::http::response::remove_in_order(headers, &header::CONTENT_LENGTH);
        crate::http::response::remove_in_order(headers, &header::ACCEPT_RANGES);
        weaken_etag(headers);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }

    /// The request's side alone (`ngx_http_gzip_ok` before there is a
    /// response, as `gzip_static` asks it): the version, Accept-Encoding,
    /// a proxy's `Via` under `gzip_proxied`, `gzip_disable`.
    pub fn takes_gzip(&self, req: &Parts) -> bool {
        self.takes(req, &Response::new(RespBody::empty()))
    }

    /// `ngx_http_gzip_ok`: the version, Accept-Encoding, a proxy's `Via`
    /// under `gzip_proxied` (which reads `resp`), `gzip_disable`.
    pub(crate) fn takes(&self, req: &Parts, resp: &Response<RespBody>) -> bool {
        (req.version >= Version::HTTP_11 || self.http10)
            && accepts_gzip(&req.headers)
            && (!req.headers.contains_key(header::VIA) || self.proxied_ok(req, resp))
            && !self.disabled(&req.headers)
    }

    /// `gzip_vary on`.
    pub fn vary(&self) -> bool {
        self.vary
    }

    /// The response's side: a 200, 403 or 404, not encoded, of a
    /// `gzip_types` type, not known to be shorter than `gzip_min_length`.
    fn compressible(&self, resp: &Response<RespBody>) -> bool {
        if !matches!(resp.status().as_u16(), 200 | 403 | 404) {
            return false;
        }
        let found = |name: &str| header_of(resp, name);
        if found("content-encoding").is_some_and(|v| !v.is_empty()) {
            return false;
        }
        let Some(content_type) = found("content-type") else {
            return false;
        };
        if let Some(types) = &self.types {
            // As nginx, the value before a charset, else the whole of it:
            // `text/html; foo=bar` is not `text/html`.
            let mime = type_of(&content_type).0.to_ascii_lowercase();
            if !types.iter().any(|t| t.as_bytes() == mime) {
                return false;
            }
        }
        known_length(resp).is_none_or(|n| n >= self.min_length)
    }

    /// `gzip_disable`: the User-Agent matches one of the expressions, or
    /// is MSIE 4 to 6 (`msie6`, as nginx tells it).
    fn disabled(&self, headers: &HeaderMap) -> bool {
        let Some(agent) = headers.get(header::USER_AGENT).map(HeaderValue::as_bytes) else {
            return false;
        };
        if self.msie6 && crate::http::head::UserAgent::of(agent).msie6 {
            return true;
        }
        self.disable.iter().any(|re| re.is_match(agent))
    }

    /// `gzip_proxied`, for a request that came through a proxy (`Via`), as
    /// `ngx_http_gzip_ok` decides from the response.
    fn proxied_ok(&self, req: &Parts, resp: &Response<RespBody>) -> bool {
        let p = self.proxied;
        if p & model::GZIP_PROXIED_OFF != 0 {
            return false;
        }
        if p & model::GZIP_PROXIED_ANY != 0 {
            return true;
        }
        if p & model::GZIP_PROXIED_AUTH != 0 && req.headers.contains_key(header::AUTHORIZATION) {
            return true;
        }
        let found = |name: &str| header_of(resp, name);
        if let Some(expires) = found("expires") {
            if p & model::GZIP_PROXIED_EXPIRED == 0 {
                return false;
            }
            let time = |v: &[u8]| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| httpdate::parse_http_date(t).ok())
            };
            let Some(expires) = time(&expires) else {
                return false;
            };
            let date = match found("date") {
                Some(d) => match time(&d) {
                    Some(d) => d,
                    None => return false,
                },
                None => std::time::SystemTime::now(),
            };
            return expires < date;
        }
        if let Some(cc) = found("cache-control") {
            let has = |token: &[u8]| {
                cc.split(|&c| c == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
            };
            return (p & model::GZIP_PROXIED_NO_CACHE != 0 && has(b"no-cache"))
                || (p & model::GZIP_PROXIED_NO_STORE != 0 && has(b"no-store"))
                || (p & model::GZIP_PROXIED_PRIVATE != 0 && has(b"private"));
        }
        if p & model::GZIP_PROXIED_NO_LM != 0 && found("last-modified").is_some() {
            return false;
        }
        if p & model::GZIP_PROXIED_NO_ETAG != 0 && found("etag").is_some() {
            return false;
        }
        true
    }
}

/// `ngx_http_gzip_accept_encoding` on the first Accept-Encoding, as
/// nginx reads it: the first `gzip` at the start or after `,` or a space;
/// then spaces, and `,` or the end (yes), or `;` then spaces and a `q=`
/// whose value is not 0 (`ngx_http_gzip_quantity`); anything else, no.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes)
    else {
        return false;
    };
    let mut from = 0;
    let at = loop {
        let Some(i) = v[from..]
            .windows(4)
            .position(|w| w.eq_ignore_ascii_case(b"gzip"))
        else {
            return false;
        };
        let at = from + i;
        if at == 0 || matches!(v[at - 1], b',' | b' ') {
            break at;
        }
        from = at + 4;
    };
    let mut rest = v[at + 4..].iter();
    loop {
        match rest.next() {
            None | Some(b',') => return true,
            Some(b' ') => {}
            Some(b';') => break,
            Some(_) => return false,
        }
    }
    loop {
        match rest.next() {
            None => return true,
            Some(b'q' | b'Q') => break,
            Some(b' ') => {}
            Some(_) => return false,
        }
    }
    match rest.as_slice() {
        [b'=', _, ..] => quantity(&rest.as_slice()[1..]) != 0,
        _ => false,
    }
}

/// nginx's `ngx_http_gzip_quantity`, in hundredths as nginx counts them
/// (the digits after the point are added as they are, at most three).
fn quantity(p: &[u8]) -> u32 {
    let mut p = p.iter();
    let q = match p.next() {
        Some(&c @ (b'0' | b'1')) => u32::from(c - b'0') * 100,
        _ => return 0,
    };
    match p.next() {
        None | Some(b',' | b' ') => return q,
        Some(b'.') => {}
        Some(_) => return 0,
    }
    let (mut q, mut n) = (q, 0);
    for &c in p {
        match c {
            b',' | b' ' => break,
            b'0'..=b'9' => {
                q += u32::from(c - b'0');
                n += 1;
            }
            _ => return 0,
        }
    }
    if q > 100 || n > 3 {
        return 0;
    }
    q
}

/// nginx's `ngx_http_weak_etag`: `W/` before a quoted ETag; one that is
/// not quoted goes.
pub(crate) fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG).map(|v| v.as_bytes().to_vec()) else {
        return;
    };
    if let Some(weak) = weak(&etag) {
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, v);
            return;
        }
    }
    if !etag.starts_with(b"W/") {
        crate::http::response::remove_in_order(headers, &header::ETAG);
    }
}

/// The weak form of an ETag: `None` when it is weak already or goes.
pub(crate) fn weak(etag: &[u8]) -> Option<Vec<u8>> {
    if etag.starts_with(b"W/") || etag.first() != Some(&b'"') {
        return None;
    }
    Some([&b"W/"[..], etag].concat())
}

/// An upstream's header lines for an answer whose body a filter changes:
/// without Content-Length and Accept-Ranges, the ETag weak; `decoded`
/// (gunzip), without its Content-Encoding too.
pub(crate) fn for_changed_body(mut passed: Box<Passed>, decoded: bool) -> Box<Passed> {
    passed.edit_lines(|name, value| {
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"accept-ranges")
            || (decoded && name.eq_ignore_ascii_case(b"content-encoding"))
        {
            LineEdit::Drop
        } else if name.eq_ignore_ascii_case(b"etag") {
            etag_weakened(value)
        } else {
            LineEdit::Keep
        }
    });
    passed.length = None;
    passed
}

/// An upstream's ETag line for a changed body, as `ngx_http_weak_etag`:
/// weak, or gone where it is not a quoted one.
pub(crate) fn etag_weakened(value: &[u8]) -> LineEdit {
    match weak(value) {
        Some(weak) => LineEdit::Set(weak),
        None if value.starts_with(b"W/") => LineEdit::Keep,
        None => LineEdit::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("value"),
        );
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_as_nginx_reads_it() {
        for yes in [
            "gzip",
            "deflate, gzip",
            "gzip;q=0.5",
            "br,gzip ; q=1",
            "GZIP",
            "gzip;q=0.01",
            "gzip;q=0.001",
            "gzip  , br",
            "gzip;",
        ] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "deflate",
            "x-gzip",
            "gzip;q=0",
            "gzip;q=0.0",
            "gzip;q=0.000",
            "gzipx, gzip",
            "gzip;q=x",
            "gzip;level=1",
            "gzip; q = 1",
            "gzip;q=1.0000",
        ] {
            assert!(!accepts(no), "{no}");
        }
    }

    #[test]
    fn etags_weakened_or_dropped() {
        assert_eq!(weak(b"\"abc\""), Some(b"W/\"abc\"".to_vec()));
        assert_eq!(weak(b"W/\"abc\""), None);
        assert_eq!(weak(b"abc"), None);
    }
}
