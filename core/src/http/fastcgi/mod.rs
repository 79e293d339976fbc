//! `fastcgi_pass`: the request asked of a FastCGI application (PHP-FPM
//! and the like), as nginx's `ngx_http_fastcgi_module` asks it.
//!
//! The proxy's path is the same as `proxy_pass`'s (the balancer, tries,
//! timeouts, the idle pool, the answer's filters); only the bytes on the
//! upstream connection differ:
//! - here: the settings ([`FastCgi`]), `$fastcgi_script_name` and
//!   `$fastcgi_path_info` ([`Names`]), the request's records ([`request`]);
//! - `record`: the record framing, both ways;
//! - `response`: the application's records read back into a response head
//!   (its CGI header lines) and body, its stderr lines for the log.

pub mod record;
pub mod response;

use http::request::Parts;
use http::Method;

use crate::http::h1::pool::Buf;
use crate::http::upstream_h1::{Framing, RequestHead};
use crate::pattern::Regex;
use crate::vars::{Template, VarCtx};

/// A location's FastCGI settings, compiled.
pub struct FastCgi {
    /// `fastcgi_param` lines, in order.
    pub params: Box<[Param]>,
    /// The request headers the params set already, as nginx matches them:
    /// uppercase, `-` as `_`, without `HTTP_`. Those are not sent again.
    pub header_params: Box<[Box<[u8]>]>,
    /// `fastcgi_keep_conn on`: the application keeps the connection.
    pub keep_conn: bool,
    /// `$document_root`, where a param reads `$realpath_root`: resolved
    /// on the blocking pool before the params are made.
    pub realpath_of: Option<crate::vars::Template>,
}

/// One `fastcgi_param NAME VALUE [if_not_empty]`.
pub struct Param {
    pub name: Box<[u8]>,
    pub value: Template,
    /// `if_not_empty`: not sent when the value is empty.
    pub if_not_empty: bool,
}

/// A level's `fastcgi_split_path_info` and `fastcgi_index`: what
/// `$fastcgi_script_name` and `$fastcgi_path_info` make of the URI, at
/// any phase (a `try_files $fastcgi_script_name` too), as nginx's.
pub struct Names {
    /// Its two groups are the script name and the path info.
    pub split: Option<Regex>,
    /// Appended to a script name ending in `/`.
    pub index: Box<str>,
}

impl Names {
    /// `$fastcgi_script_name` of `uri`, appended to `out`.
    pub fn script_name(&self, uri: &[u8], out: &mut Vec<u8>) {
        let script = self.split(uri).0;
        out.extend_from_slice(script);
        if script.ends_with(b"/") {
            out.extend_from_slice(self.index.as_bytes());
        }
    }

    /// The script name (before the index) and the path info of `uri`.
    pub fn split<'u>(&self, uri: &'u [u8]) -> (&'u [u8], &'u [u8]) {
        let Some(re) = &self.split else {
            return (uri, b"");
        };
        match re.captures(uri) {
            Some(c) => {
                let group = |i| c.get(i).map_or(&b""[..], |m| m.as_bytes());
                (group(1), group(2))
            }
            None => (uri, b""),
        }
    }
}

/// The params' record is longer than one record carries (nginx's alert
/// `fastcgi request record is too big`); its length.
#[derive(Debug)]
pub struct TooBig(pub usize);

/// A header name as nginx makes it a param's (after `HTTP_`): uppercase,
/// `-` as `_`.
fn param_byte(c: u8) -> u8 {
    match c {
        b'-' => b'_',
        c => c.to_ascii_uppercase(),
    }
}

/// The request's records but its body: BEGIN_REQUEST, the params (the
/// configured ones, then, with `pass_headers`, the client's headers as
/// `HTTP_*`), and, with no body to follow, the end of stdin. A body goes
/// as STDIN records ([`Framing::FastCgi`]). Everything is written into
/// the request's pooled buffer, with no other allocation.
pub fn request(
    f: &FastCgi,
    parts: &Parts,
    vars: &VarCtx<'_>,
    pass_headers: bool,
    has_body: bool,
) -> Result<RequestHead, TooBig> {
    let mut buf = Buf::take();
    record::begin_request(&mut buf, f.keep_conn);
    // The params go straight after their record's header, written once
    // their length is known.
    let header_at = buf.len();
    buf.extend_from_slice(&[0; 8]);
    for p in f.params.iter() {
        // The value first, where it ends up; its lengths and name are
        // put before it once its length is known.
        let at = buf.len();
        p.value.eval_into(vars, &mut buf);
        let len = buf.len() - at;
        if p.if_not_empty && len == 0 {
            continue;
        }
        let mut prefix = [0u8; 8];
        let n = record::lengths(&mut prefix, p.name.len(), len);
        buf.splice(at..at, prefix[..n].iter().chain(p.name.iter()).copied());
    }
    for (h, v) in parts.headers.iter().filter(|_| pass_headers) {
        let name = h.as_str().as_bytes();
        let set = f.header_params.iter().any(|p| {
            p.len() == name.len() && p.iter().zip(name).all(|(&a, &b)| a == param_byte(b))
        });
        if set {
            continue;
        }
        let mut prefix = [0u8; 8];
        let n = record::lengths(&mut prefix, 5 + name.len(), v.len());
        buf.extend_from_slice(&prefix[..n]);
        buf.extend_from_slice(b"HTTP_");
        buf.extend(name.iter().map(|&c| param_byte(c)));
        buf.extend_from_slice(v.as_bytes());
    }
    let len = buf.len() - header_at - 8;
    if len > record::MAX_CONTENT {
        return Err(TooBig(len));
    }
    if len == 0 {
        buf.truncate(header_at);
    } else {
        let pad = record::padding(len);
        buf[header_at..header_at + 8].copy_from_slice(&record::header(record::PARAMS, len, pad));
        buf.extend_from_slice(&record::PADDING[..pad]);
    }
    buf.extend_from_slice(&record::header(record::PARAMS, 0, 0));
    let framing = if has_body {
        Framing::FastCgi
    } else {
        buf.extend_from_slice(&record::header(record::STDIN, 0, 0));
        Framing::None
    };
    Ok(RequestHead::fastcgi(
        buf,
        framing,
        f.keep_conn,
        parts.method == Method::HEAD,
    ))
}
