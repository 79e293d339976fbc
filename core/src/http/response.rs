//! Responses the proxy makes itself: `return`, and nginx's error pages.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::http::body::RespBody;
use crate::runtime::Reply;

pub fn reply(r: &Reply) -> Response<RespBody> {
    if r.body.is_empty() && r.location.is_none() && r.status >= 400 {
        return error_page(r.status);
    }
    let mut resp = Response::new(RespBody::full(r.body.clone()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    if let Some(location) = &r.location {
        resp.headers_mut().insert(LOCATION, location.clone());
    }
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    server_header(&mut resp);
    resp
}

pub fn server_header<B>(resp: &mut Response<B>) {
    resp.headers_mut()
        .insert(http::header::SERVER, HeaderValue::from_static("waypost"));
}

/// nginx's built-in error page for `status`, with our name in the footer.
pub fn error_page(status: u16) -> Response<RespBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = format!("{} {}", code.as_u16(), reason(code));
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>waypost</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(RespBody::full(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    server_header(&mut resp);
    resp
}

/// The reason nginx prints in its error pages: mostly the standard one, but
/// nginx keeps some older wordings (`ngx_http_special_response.c`).
fn reason(code: StatusCode) -> &'static str {
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
