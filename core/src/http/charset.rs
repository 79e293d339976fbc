//! `charset NAME`: nginx's charset filter, without recoding. An answer
//! whose Content-Type names no charset and is one of the `charset_types`
//! gets `; charset=NAME` after it; one that names a charset stays as it
//! is. As in nginx, the whole value is the type compared (so `text/html;
//! foo=bar` is not `text/html`), and an encoded answer is no exception.

use http::header::{self, HeaderValue};
use http::Response;

use crate::conf::model::CharsetConf;
use crate::http::body::{header_of, type_of, RespBody};

/// A level's `charset`.
#[derive(Debug)]
pub struct Charset {
    name: String,
    /// Lowercase MIME types; `None`: any (`charset_types *`).
    types: Option<Box<[String]>>,
}

impl Charset {
    pub fn build(conf: &CharsetConf) -> Charset {
        Charset {
            name: conf.name.clone(),
            types: (!conf.types.iter().any(|t| t == "*")).then(|| conf.types.clone().into()),
        }
    }

    pub fn apply(&self, resp: &mut Response<RespBody>) {
        // nginx sets none on a redirect (old browsers took it for the
        // next page's).
        if matches!(resp.status().as_u16(), 301 | 302) {
            return;
        }
        let Some(content_type) = header_of(resp, "content-type") else {
            return;
        };
        if type_of(&content_type).1 {
            return;
        }
        if let Some(types) = &self.types {
            let lower = content_type.to_ascii_lowercase();
            if !types.iter().any(|t| t.as_bytes() == lower) {
                return;
            }
        }
        let value = [&content_type[..], b"; charset=", self.name.as_bytes()].concat();
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return;
        };
        if let Some(mut passed) = resp.body_mut().take_passed() {
            if passed.replace(b"content-type", value.as_bytes()) {
                resp.body_mut().put_passed(passed);
                return;
            }
            resp.body_mut().put_passed(passed);
        }
        resp.headers_mut().insert(header::CONTENT_TYPE, value);
    }
}
