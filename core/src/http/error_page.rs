//! `error_page`: what nginx's special response handler does with an
//! answer waypost made itself (a special response) when the level in
//! effect lists its status: an internal redirect to a URI or a named
//! location, or a redirect to a URL (`ngx_http_special_response_handler`,
//! `ngx_http_send_error_page`). Off the request path: only an answer with
//! a status of 300 or more, at a level with `error_page`s, comes here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use http::header::{HeaderName, CONNECTION, LOCATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::http::body::RespBody;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::proxy::request_context;
use crate::http::response::{error_page, Http1Close, Special};
use crate::http::server::{at_location, Req};
use crate::log::{self, Level};
use crate::runtime::{Action, ErrorPages, ErrorTarget, Location};

/// nginx's `NGX_HTTP_MAX_URI_CHANGES`: internal redirects a request may
/// make before it is answered 500.
pub(crate) const MAX_URI_CHANGES: u8 = 10;

type Redirected<'a> =
    Pin<Box<dyn Future<Output = (Response<RespBody>, Option<&'a Location>)> + Send + 'a>>;

/// Marks the 500 of a request that made nginx's 10 internal redirects:
/// no `error_page` applies to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutOfRedirects;

/// The code of the special response `resp` (the one a request was
/// finalized with: 494 to 497 answer 400), if `error_page` may replace it.
pub fn special(resp: &Response<RespBody>) -> Option<u16> {
    resp.extensions()
        .get::<Special>()
        .map(|s| s.0)
        .filter(|&code| code >= 300)
}

/// The answer for the special response `resp` of a level whose
/// `error_page`s are `pages`, and the location that made it (whose
/// header filters apply), if an internal redirect reached one. Only one
/// `error_page` applies to a request unless the level it is at has
/// `recursive_error_pages on`; once none does, the special response goes
/// out as it is.
#[cold]
#[inline(never)]
pub(crate) fn apply<'a>(
    req: &'a Req<'a>,
    pages: &'a ErrorPages,
    client: SocketAddr,
    resp: Response<RespBody>,
) -> Redirected<'a> {
    Box::pin(async move {
        let mut resp = resp;
        // The request's `limit_conn` counts, given back when it ends.
        let held = resp
            .extensions_mut()
            .remove::<crate::http::limit_conn::Kept>();
        let mut pages = Some(pages);
        let mut last = None;
        // nginx keeps these in the main request: `$request_time` counts
        // from the start, `$limit_conn_status` and the filter modules'
        // values stay.
        let first = resp.body().record();
        let started = first.map_or_else(crate::clock::now, |r| r.started());
        let kept = first.map(|r| (r.limit_conn, r.module_values.clone(), r.upstream_tries()));
        // The request as the last internal redirect made it.
        let mut current: Option<(Parts, ParsedHead)> = None;
        // A request out of redirects (a rewrite cycle) gets nginx's page.
        let mut changes = match resp.extensions().get::<OutOfRedirects>() {
            Some(_) => 0,
            None => req.changes,
        };
        let mut used = false;
        while let Some(level) = pages.filter(|_| !used && changes != 0) {
            if !level.recursive {
                used = true;
            }
            let Some(status) = special(&resp) else {
                break;
            };
            let Some(page) = level.find(status) else {
                break;
            };
            let (path, name) = match &page.target {
                ErrorTarget::Redirect(url) => {
                    let code = page
                        .overwrite
                        .filter(|c| matches!(c, 301 | 302 | 303 | 307 | 308))
                        .unwrap_or(302);
                    let mut moved = error_page(code);
                    moved.headers_mut().insert(LOCATION, url.clone());
                    moved
                        .extensions_mut()
                        .insert(crate::http::response::OwnLocation);
                    carry(&resp, &mut moved, &[CONNECTION, WWW_AUTHENTICATE]);
                    let record = resp.body_mut().take_record();
                    moved.body_mut().set_record(record);
                    resp = moved;
                    set_status(&mut resp, code);
                    break;
                }
                ErrorTarget::Uri(target) => (Some(target), None),
                ErrorTarget::Named(name) => (None, Some(name)),
            };
            changes -= 1;
            let base = current.as_ref().map_or(req.parts, |(p, _)| p);
            // A server-level `return` answers in the server's rewrite
            // phase, which nginx runs again for the new URI.
            if let (Some(ret), Some(_)) = (&req.server.ret, path) {
                let again = crate::http::response::reply(
                    ret,
                    &req.vars(client, ret.status, &crate::vars::ProxyName::NONE),
                );
                resp = replaced(resp, again);
                pages = req.server.error_pages.as_deref();
                continue;
            }
            if changes == 0 {
                let what = match (path, name) {
                    (Some(path), _) => {
                        format!("while internally redirecting to \"{}\"", path.path())
                    }
                    (_, name) => format!(
                        "while redirect to named location \"{}\"",
                        name.map_or("", |n| &**n)
                    ),
                };
                log_error(
                    req,
                    base,
                    client,
                    &format!("rewrite or internal redirection cycle {what}"),
                );
                resp = replaced(resp, error_page(500));
                break;
            }
            let mut next = discarded(base, path);
            // The new URI as given, the client's host and escapes.
            let base_head = current.as_ref().map_or(req.head, |(_, h)| h);
            let head = match path {
                Some(path) => ParsedHead::redirected(base_head, base, path.path().as_bytes()),
                None => ParsedHead::parse(&next).unwrap_or_default(),
            };
            if path.is_some() {
                crate::http::rewrite::set_location_groups(req.server, &head, &mut next);
            }
            let (parts, head) = current.insert((next, head));
            let found = match name {
                Some(name) => match req.server.locations.named(name) {
                    Some(location) => Some((location, None)),
                    None => {
                        let line = format!("could not find named location \"{name}\"");
                        log_error(req, parts, client, &line);
                        resp = replaced(resp, error_page(500));
                        continue;
                    }
                },
                None => req.server.locations.find(head.uri(&parts.uri)),
            };
            let (location, groups) = match found {
                Some((location, groups)) => (Some(location), groups),
                None => (None, None),
            };
            // What `$status` shows at the target.
            let err_status = match page.overwrite {
                Some(0) => 0,
                Some(code) => code,
                None => status,
            };
            let next_req = req.redirected(parts, head, groups.as_ref(), err_status, changes);
            // nginx runs the rewrite phases again for the new request
            // (a named location's only).
            let scripted = req.server.script.is_some()
                || location.is_some_and(|l| l.script_for(&next_req.parts.method).is_some());
            let mut answer = match location {
                _ if scripted => {
                    crate::http::rewrite::serve(
                        &next_req,
                        ClientBody::empty(),
                        location,
                        client,
                        false,
                        Some(started),
                        name.is_some(),
                    )
                    .await
                }
                Some(location) => {
                    // The client's request reaches an `internal` location here.
                    let action = match location.action_for(&next_req.parts.method) {
                        Action::Internal(action) => action,
                        action => action,
                    };
                    let answer = at_location(
                        &next_req,
                        ClientBody::empty(),
                        location,
                        action,
                        client,
                        false,
                        Some(started),
                    );
                    Box::pin(answer).await
                }
                // No location takes the URI: the server level's access
                // phase and files, logged with its logs.
                None => {
                    crate::http::server::server_level(
                        &next_req,
                        ClientBody::empty(),
                        client,
                        Some(started),
                    )
                    .await
                }
            };
            // `index` or `try_files` took it further.
            let location = match answer
                .extensions()
                .get::<crate::http::static_files::AnsweredAt>()
            {
                Some(at) => at.0.map(|i| &req.server.locations.list[i]),
                None => location,
            };
            carry(
                &resp,
                &mut answer,
                &[CONNECTION, WWW_AUTHENTICATE, LOCATION],
            );
            if let Some(record) = resp.body_mut().take_record() {
                record.recycle();
            }
            // (Limits apply once per request: the first level's values
            // where it met them, else the target's own.)
            if let (Some((conn, values, tries)), Some(record)) =
                (&kept, answer.body_mut().record_mut())
            {
                if *conn != 0 {
                    record.limit_conn = *conn;
                }
                if !values.is_empty() {
                    record.module_values.clone_from(values);
                }
                record.keep_upstream_tries(tries);
            }
            resp = answer;
            last = location;
            pages = location.map_or(req.server.error_pages.as_deref(), |l| {
                l.error_pages.as_deref()
            });
            if special(&resp).is_some() {
                continue;
            }
            // The target's answer goes out with the error's status, the
            // one `=CODE` gives, or its own with `=` alone.
            match page.overwrite {
                Some(0) => {}
                // nginx sets the status before its filters: a file's 304
                // or 206 under `=200` stays.
                Some(200) if matches!(resp.status().as_u16(), 206 | 304) => {}
                Some(code) => set_status(&mut resp, code),
                None => set_status(&mut resp, status),
            }
            break;
        }
        if let Some(held) = held {
            resp.extensions_mut().insert(held);
        }
        (resp, last)
    })
}

/// The request an internal redirect makes of `base`: to `path` with the
/// method GET (HEAD stays HEAD), or for a named location as it was. Its
/// body is discarded.
fn discarded(base: &Parts, path: Option<&http::uri::PathAndQuery>) -> Parts {
    let mut next = http::Request::new(());
    *next.version_mut() = base.version;
    *next.headers_mut() = base.headers.clone();
    *next.extensions_mut() = base.extensions.clone();
    crate::http::rewrite::new_level(next.extensions_mut());
    match path {
        Some(path) => {
            *next.uri_mut() = http::Uri::from(path.clone());
            // The new URI's arguments, not a `set $args`'s.
            next.extensions_mut().remove::<crate::vars::ArgsSet>();
            if base.method == Method::HEAD {
                *next.method_mut() = Method::HEAD;
            }
        }
        None => {
            *next.uri_mut() = base.uri.clone();
            *next.method_mut() = base.method.clone();
        }
    }
    // The lines that framed the body stay (`$content_length`), as in
    // nginx; the body itself is gone.
    next.into_parts().0
}

/// `resp`'s headers named in `names` that `to` lacks: nginx keeps the
/// headers a special response had (a 401's challenge, a redirect's
/// Location) and its decision to close the connection.
fn carry(from: &Response<RespBody>, to: &mut Response<RespBody>, names: &[HeaderName]) {
    for name in names {
        if let Some(value) = from.headers().get(name) {
            if !to.headers().contains_key(name) {
                to.headers_mut().insert(name.clone(), value.clone());
                if name == CONNECTION {
                    if let Some(&mark) = from.extensions().get::<Http1Close>() {
                        to.extensions_mut().insert(mark);
                    }
                }
            }
        }
    }
}

/// `page` in the place of `resp`, with its record.
fn replaced(mut resp: Response<RespBody>, mut page: Response<RespBody>) -> Response<RespBody> {
    carry(&resp, &mut page, &[CONNECTION]);
    let record = resp.body_mut().take_record();
    page.body_mut().set_record(record);
    let status = page.status().as_u16();
    set_status(&mut page, status);
    page
}

/// The answer's status (nginx's `err_status`), written with nginx's
/// reason phrase, and in its access log line.
fn set_status(resp: &mut Response<RespBody>, status: u16) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if resp.status() != code {
        *resp.status_mut() = code;
        if let Some(passed) = resp.body_mut().passed_mut() {
            passed.reason = None;
        }
    }
    if let Some(record) = resp.body_mut().record_mut() {
        record.status = status;
    }
}

fn log_error(req: &Req<'_>, parts: &Parts, client: SocketAddr, message: &str) {
    let mut line = message.to_owned();
    request_context(&req.client_cx(client), parts, &mut line);
    log::write(Level::Error, Some(req.conn.id), &line);
}
