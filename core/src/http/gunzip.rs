//! `gunzip on`: nginx's gunzip filter. An answer encoded with gzip
//! (`Content-Encoding: gzip`) is decompressed as it streams for a request
//! that does not take gzip, as `ngx_http_gzip_ok` decides with the level's
//! gzip settings (`gzip_http_version`, `gzip_proxied`, `gzip_disable`,
//! whether `gzip` is on or not): its Content-Encoding, Content-Length and
//! Accept-Ranges go and its ETag is made weak. An answer it could
//! decompress gets `Vary: Accept-Encoding` under `gzip_vary on`, whichever
//! the request. It runs after `add_header` and before `sub_filter`,
//! `charset` and `gzip`, as in nginx's filter order.

use http::header;
use http::request::Parts;
use http::{Method, Response};

use crate::conf::model::GzipConf;
use crate::conf::ConfError;
use crate::http::body::{header_of, RespBody};
use crate::http::gzip::{Gzip, GzipTested, GzipVary};

/// A level's `gunzip on`, with the gzip settings that decide whether a
/// request takes gzip.
#[derive(Debug)]
pub struct Gunzip(Gzip);

impl Gunzip {
    pub fn build(conf: &GzipConf) -> Result<Gunzip, ConfError> {
        Gzip::build(conf).map(Gunzip)
    }

    /// Decompresses `resp` to `req` where nginx would.
    pub fn apply(&self, req: &Parts, resp: &mut Response<RespBody>) {
        let gzipped =
            header_of(resp, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"gzip"));
        if !gzipped {
            return;
        }
        if self.0.vary() {
            resp.extensions_mut().insert(GzipVary);
        }
        // gzip_static's answer, where it asked (nginx's `r->gzip_tested`).
        let takes = match resp.extensions().get::<GzipTested>() {
            Some(GzipTested(ok)) => *ok,
            None => self.0.takes(req, resp),
        };
        if takes {
            return;
        }
        let passed = resp
            .body_mut()
            .take_passed()
            .map(|p| crate::http::gzip::for_changed_body(p, true));
        // A HEAD gets the headers of the decompressed answer, and no body.
        match (req.method == Method::HEAD, passed) {
            (true, Some(passed)) => resp.body_mut().put_passed(passed),
            (true, None) => {}
            (false, passed) => resp.body_mut().gunzip(passed),
        }
        let headers = resp.headers_mut();
        crate::http::response::remove_in_order(headers, &header::CONTENT_ENCODING);
        crate::http::response::remove_in_order(headers, &header::CONTENT_LENGTH);
        crate::http::response::remove_in_order(headers, &header::ACCEPT_RANGES);
        crate::http::gzip::weaken_etag(headers);
    }
}
