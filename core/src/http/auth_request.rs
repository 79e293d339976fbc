//! `auth_request`: nginx's access check by a subrequest
//! (`ngx_http_auth_request_module`). The subrequest goes to the URI as a
//! GET with the client's headers and no body, through the server's
//! locations (an `internal` one included) and their handlers, skipping
//! their access phase; it is not logged. Its answer decides: 2xx lets the
//! request in, 401 (with the subrequest's first WWW-Authenticate) and 403
//! are the request's answer, anything else is a 500 with nginx's `auth
//! request unexpected status` line. `auth_request_set` variables take
//! their values from the subrequest (`$upstream_http_*` its upstream's
//! headers) whatever it answered.
//!
//! Off the request path: a location with `auth_request` is answered here
//! (boxed), then by the location's own handler. A level with `mirror`
//! comes here too: its pre-access and access phases run here, then its
//! mirrors start ([`crate::http::mirror`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{Method, Response};

use crate::conf::model::AuthRequestConf;
use crate::conf::ConfError;
use crate::http::allow::Rules;
use crate::http::body::RespBody;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::response::error_page;
use crate::http::server::{at_location, server_level, Req};
use crate::log::Level;
use crate::runtime::{Action, Location};
use crate::vars::{CompileError, NameError, Scope, UserVars, Var, VarCtx};

/// A level's `auth_request` and its `auth_request_set` lines, compiled.
#[derive(Debug)]
pub struct AuthRequest {
    /// The subrequest's URI.
    uri: http::uri::PathAndQuery,
    /// Each variable's index and its value's pieces.
    sets: Box<[(u32, Box<[Piece]>)]>,
}

/// A piece of an `auth_request_set` value: nginx evaluates it in the
/// subrequest, so the upstream's variables are the subrequest's.
#[derive(Debug)]
pub enum Piece {
    Text(Box<[u8]>),
    Var(Var),
    /// `$upstream_http_NAME` (lowercase, `_` as `-`).
    UpstreamHttp(Box<[u8]>),
    /// `$upstream_cookie_NAME`
    UpstreamCookie(Box<[u8]>),
    /// `$upstream_status`
    UpstreamStatus,
    /// `$sent_http_NAME`: the subrequest's answer's header.
    SentHttp(Box<[u8]>),
}

/// Compiles an `auth_request_set` value: nginx's variables, the
/// configuration's (`scope`), and the subrequest's answer's.
pub fn compile(text: &str, scope: Scope<'_>) -> Result<Vec<Piece>, CompileError> {
    let mut pieces = Vec::new();
    for piece in crate::vars::scan(text)? {
        pieces.push(match piece {
            crate::vars::Piece::Text(t) => Piece::Text(t.as_bytes().into()),
            crate::vars::Piece::Capture(n) => Piece::Var(Var::Capture(n)),
            crate::vars::Piece::Var(name) => {
                let lower = name.to_ascii_lowercase();
                let header = |h: &str| h.replace('_', "-").into_bytes().into_boxed_slice();
                if let Some(h) = lower.strip_prefix("upstream_http_") {
                    Piece::UpstreamHttp(header(h))
                } else if let Some(c) = lower.strip_prefix("upstream_cookie_") {
                    Piece::UpstreamCookie(c.as_bytes().into())
                } else if let Some(h) = lower.strip_prefix("sent_http_") {
                    Piece::SentHttp(header(h))
                } else if lower == "upstream_status" {
                    Piece::UpstreamStatus
                } else {
                    Piece::Var(Var::parse_in(name, scope).map_err(|e| match e {
                        NameError::Unknown => CompileError::Unknown(lower),
                        NameError::Unsupported => CompileError::Unsupported(lower),
                    })?)
                }
            }
        });
    }
    Ok(pieces)
}

impl AuthRequest {
    pub fn new(conf: &AuthRequestConf, scope: Scope<'_>) -> Result<AuthRequest, ConfError> {
        let uri = http::uri::PathAndQuery::try_from(conf.uri.as_str()).map_err(|_| {
            ConfError::bare(format!("invalid URI \"{}\" in \"auth_request\"", conf.uri))
        })?;
        let sets = conf
            .sets
            .iter()
            .map(|(index, value)| {
                compile(value, scope)
                    .map(|p| (*index, p.into_boxed_slice()))
                    .map_err(|e| ConfError::bare(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuthRequest {
            uri,
            sets: sets.into(),
        })
    }
}

/// Marks a subrequest's head: `$request_method` is its main request's
/// method (the subrequest itself is a GET), as nginx's.
#[derive(Clone, Debug)]
pub struct Subrequest(pub Method);

/// What the access phase decided for a request that has `auth_request`.
enum Decision {
    /// Neither asked nor refused: another check decides (`deny` with
    /// `satisfy all`, `allow` with `satisfy any`).
    Skip,
    /// The subrequest let it in; the request's variables as it left them.
    Granted(Option<Box<Parts>>),
    /// The answer, and the variables as the subrequest left them.
    Refused(Box<Response<RespBody>>, Option<Box<Parts>>),
}

/// A location's answer where `auth_request` is in effect: nginx's
/// pre-access phase (the filter modules such as `limit_req`, then
/// `limit_conn`), its access phase (`allow`/`deny`, `auth_basic`, then the
/// subrequest, as `satisfy` says), then the location's own answer with
/// the variables the subrequest set.
pub(crate) async fn at(
    req: &Req<'_>,
    body: ClientBody,
    location: &Location,
    action: &Action,
    client: SocketAddr,
    realip: bool,
    started: Option<std::time::Instant>,
) -> Response<RespBody> {
    let ar = location.auth_request.as_deref();
    let mirror = location.mirror.as_deref();
    if ar.is_none() && mirror.is_none() {
        return at_location(req, body, location, action, client, realip, started).await;
    }
    // `$request_time` counts the subrequest too.
    let started = Some(started.unwrap_or_else(crate::clock::now));
    // realip's location pass first, as the handler's (it runs once).
    let mut client = client;
    if realip {
        if let Some(real) = location
            .realip
            .as_ref()
            .and_then(|r| r.apply(req.conn.client, &req.parts.headers, &req.parts.extensions))
        {
            client = real;
        }
    }
    let level = Access {
        rules: location.access_for(&req.parts.method),
        auth_basic: location.auth_basic_for(&req.parts.method).map(|a| &**a),
        satisfy_any: location.satisfy_any,
        // A location `if` that held logs with its own lines.
        logs: location.access_log_for(req.parts),
        filters: match action {
            Action::Proxy(p) => &p.filters,
            _ => &location.filters,
        },
        limit_conn: location.limit_conn.as_deref(),
        at: req
            .server
            .locations
            .list
            .iter()
            .position(|l| std::ptr::eq(l, location)),
    };
    let passed = match checked(req, ar, &level, client, started).await {
        Ok(passed) => passed,
        Err(resp) => return *resp,
    };
    let mut next = passed.req(req);
    let mut body = body;
    let mirror = mirror.filter(|_| passed.allowed);
    // A static location's `try_files` runs first (it may redirect).
    let after_try =
        matches!(action, Action::Static) && location.statics_for(&req.parts.method).has_try_files();
    let Ok(mirrored) = pre_content(&mut next, mirror, after_try, &mut body, client).await else {
        // The connection answers a body it could not read (400, 413) or
        // closes; this answer is not used.
        return error_page(400);
    };
    let resp = at_location(&next, body, location, action, client, false, started).await;
    crate::http::mirror::attach(passed.kept(resp, req, &level), mirrored)
}

/// A request no location takes, where the server has `auth_request`:
/// as [`at`], with the server's settings.
pub(crate) async fn at_server(
    req: &Req<'_>,
    body: ClientBody,
    client: SocketAddr,
    started: Option<std::time::Instant>,
) -> Response<RespBody> {
    let server = req.server;
    let ar = server.auth_request.as_deref();
    let mirror = server.mirror.as_deref();
    if ar.is_none() && mirror.is_none() {
        return server_level(req, body, client, started).await;
    }
    let started = Some(started.unwrap_or_else(crate::clock::now));
    let level = Access {
        rules: &server.access,
        auth_basic: server.auth_basic.as_deref(),
        satisfy_any: server.satisfy_any,
        logs: server.access_log.as_ref(),
        filters: &server.filters,
        limit_conn: server.limit_conn.as_deref(),
        at: None,
    };
    let passed = match checked(req, ar, &level, client, started).await {
        Ok(passed) => passed,
        Err(resp) => return *resp,
    };
    let mut next = passed.req(req);
    let mut body = body;
    let mirror = mirror.filter(|_| passed.allowed);
    let after_try = server.statics.has_try_files();
    let Ok(mirrored) = pre_content(&mut next, mirror, after_try, &mut body, client).await else {
        return error_page(400);
    };
    let resp = server_level(&next, body, client, started).await;
    crate::http::mirror::attach(passed.kept(resp, req, &level), mirrored)
}

/// nginx's pre-content phase for the level's `mirror` (`None`: none, or
/// the request was not let in): the mirrors start now, or once
/// `try_files` (`after_try`) let the request stay at the level.
async fn pre_content<'a>(
    next: &mut Req<'a>,
    mirror: Option<&'a crate::http::mirror::Mirror>,
    after_try: bool,
    body: &mut ClientBody,
    client: SocketAddr,
) -> Result<Option<crate::http::mirror::Mirrored>, ()> {
    match mirror {
        Some(m) if after_try => {
            next.mirror_after_try = Some(m);
            Ok(None)
        }
        Some(m) => crate::http::mirror::start(next, m, body, client).await,
        None => Ok(None),
    }
}

/// The settings of the level `auth_request` is at.
struct Access<'a> {
    rules: &'a Rules,
    auth_basic: Option<&'a crate::http::auth_basic::AuthBasic>,
    satisfy_any: bool,
    logs: Option<&'a Arc<crate::http::access::AccessLogs>>,
    filters: &'a [crate::runtime::FilterRun],
    limit_conn: Option<&'a crate::http::limit_conn::Limits>,
    /// The location's index in the server's (`None`: the server level).
    at: Option<usize>,
}

/// What the pre-access phase left: the filter modules' variables,
/// `$limit_conn_status` and the counts held until the answer is done.
#[derive(Default)]
struct PreAccess {
    module_values: Vec<(usize, &'static str)>,
    conn_status: u8,
    hold: Option<crate::http::limit_conn::Hold>,
}

/// A request the access phase let go on: as the subrequest left it,
/// whether it is let in (else the level's own checks decide: `deny` with
/// `satisfy all`, `allow` with `satisfy any`), and the pre-access phase's
/// results.
struct Passed {
    parts: Option<Box<Parts>>,
    granted: bool,
    /// Let in, by the subrequest or by the rules (`allow` with `satisfy
    /// any`): nginx's pre-content phase (`mirror`) runs.
    allowed: bool,
    pre: PreAccess,
}

impl Passed {
    /// The request for the level's own answer (its access checks do not
    /// run again once the request is let in).
    fn req<'a>(&'a self, req: &Req<'a>) -> Req<'a> {
        Req {
            parts: self.parts.as_deref().unwrap_or(req.parts),
            auth_done: true,
            granted: self.granted,
            ..*req
        }
    }

    /// The level's answer with what the access phases left: the counts
    /// held, the limits' variables in its log line, and the request as
    /// the subrequest left it for the header filters and `error_page`.
    fn kept(
        self,
        mut resp: Response<RespBody>,
        req: &Req<'_>,
        level: &Access<'_>,
    ) -> Response<RespBody> {
        let pre = self.pre;
        // With the upstream's answer, the counts go with its peer (as the
        // proxy keeps them); else with the answer.
        let left = pre
            .hold
            .and_then(|hold| resp.body_mut().keep_limits(hold).err());
        crate::http::limit_conn::Kept::attach(&mut resp, left);
        if let Some(record) = resp.body_mut().record_mut() {
            if record.module_values.is_empty() {
                record.module_values = pre.module_values;
            }
            if record.limit_conn == 0 {
                record.limit_conn = pre.conn_status;
            }
        }
        answered_with(&mut resp, self.parts, req, level.at);
        resp
    }
}

/// Marks `resp` as made with `parts` (the variables the subrequest set),
/// unless an internal redirect already marked it.
fn answered_with(
    resp: &mut Response<RespBody>,
    parts: Option<Box<Parts>>,
    req: &Req<'_>,
    at: Option<usize>,
) {
    use crate::http::static_files::{AnsweredAt, Final};
    let Some(parts) = parts else {
        return;
    };
    if resp.extensions().get::<AnsweredAt>().is_none() {
        let last = Final {
            parts: *parts,
            head: req.head.clone(),
        };
        resp.extensions_mut()
            .insert(AnsweredAt(at, Some(Arc::new(last)), req.changes));
    }
}

/// The pre-access and access phases' verdict, or the answer, logged
/// with the level's logs.
async fn checked(
    req: &Req<'_>,
    ar: Option<&AuthRequest>,
    level: &Access<'_>,
    client: SocketAddr,
    started: Option<std::time::Instant>,
) -> Result<Passed, Box<Response<RespBody>>> {
    use crate::http::proxy::PreAccess as Met;
    let cx = req.client_cx(client);
    let mut pre = PreAccess::default();
    // Logged with 499 should the client leave meanwhile (a delay, a slow
    // auth backend), as nginx logs it; else it is the refusal's record,
    // or none (the level's answer has its own).
    let started = started.unwrap_or_else(crate::clock::now);
    let mut waiting = crate::http::access::Unanswered(
        level
            .logs
            .map(|logs| logs.start(&req.vars(client, 0, &crate::vars::ProxyName::NONE), started)),
    );
    let refused = 'phases: {
        if !level.filters.is_empty() && !req.pre_access.met(Met::REQ) {
            let refused = crate::http::proxy::location_filters(
                level.filters,
                req.parts,
                &cx,
                req.vars(client, 0, &crate::vars::ProxyName::NONE),
                Some(&mut pre.module_values),
            )
            .await;
            if let Some(resp) = refused {
                break 'phases (Box::new(resp), None);
            }
        }
        if let Some(limits) = level.limit_conn.filter(|_| !req.pre_access.meet(Met::CONN)) {
            let vars = req.vars(client, 0, &crate::vars::ProxyName::NONE);
            match crate::http::limit_conn::check(
                limits,
                &vars,
                &cx,
                req.parts,
                &mut pre.conn_status,
            ) {
                Ok(hold) => pre.hold = hold,
                Err(code) => {
                    break 'phases (Box::new(crate::http::response::finalized(code)), None)
                }
            }
        }
        match decide(req, ar, level, client).await {
            Decision::Skip => {
                if let Some(record) = waiting.0.take() {
                    record.recycle();
                }
                return Ok(Passed {
                    parts: None,
                    granted: false,
                    allowed: level.satisfy_any,
                    pre,
                });
            }
            Decision::Granted(parts) => {
                if let Some(record) = waiting.0.take() {
                    record.recycle();
                }
                return Ok(Passed {
                    parts,
                    granted: true,
                    allowed: true,
                    pre,
                });
            }
            Decision::Refused(resp, parts) => (resp, parts),
        }
    };
    let (mut resp, parts) = refused;
    if let Some(mut record) = waiting.0.take() {
        // The variables as the subrequest left them.
        let next = Req {
            parts: parts.as_deref().unwrap_or(req.parts),
            ..*req
        };
        let status = resp.status().as_u16();
        record.recapture(&next.vars(client, status, &crate::vars::ProxyName::NONE));
        record.status = status;
        record.module_values = std::mem::take(&mut pre.module_values);
        record.limit_conn = pre.conn_status;
        resp.body_mut().set_record(Some(record));
    }
    crate::http::limit_conn::Kept::attach(&mut resp, pre.hold.take());
    answered_with(&mut resp, parts, req, level.at);
    Err(resp)
}

/// nginx's access phase with `auth_request` last: `allow`/`deny` and
/// `auth_basic` first decide whether the subrequest is made.
async fn decide(
    req: &Req<'_>,
    ar: Option<&AuthRequest>,
    level: &Access<'_>,
    client: SocketAddr,
) -> Decision {
    // Without `auth_request` (a level with `mirror`): the level's own
    // access phase decides, here.
    let Some(ar) = ar else {
        let cx = req.client_cx(client);
        let vars = req.vars(client, 0, &crate::vars::ProxyName::NONE);
        let refused = crate::http::server::access(
            level.rules,
            level.auth_basic,
            level.satisfy_any,
            req.parts,
            &vars,
            &cx,
        )
        .await;
        return match refused {
            Some(resp) => Decision::Refused(Box::new(resp), None),
            None => Decision::Granted(None),
        };
    };
    let ruled = if level.rules.is_empty() {
        None
    } else {
        level.rules.decide(client.ip())
    };
    match (level.satisfy_any, ruled) {
        // `allow` is enough; `deny` refuses before anything is asked.
        (true, Some(true)) | (false, Some(false)) => return Decision::Skip,
        _ => {}
    }
    if let (false, Some(auth)) = (level.satisfy_any, level.auth_basic) {
        let cx = req.client_cx(client);
        let refused = crate::http::allow::access_phase(
            &Rules::default(),
            Some(auth),
            false,
            req.parts,
            &req.vars(client, 0, &crate::vars::ProxyName::NONE),
            &cx,
        )
        .await;
        if let Some(resp) = refused {
            return Decision::Refused(Box::new(resp), None);
        }
    }
    let (status, answer, parts) = subrequest(req, ar, client).await;
    match status {
        200..=299 => Decision::Granted(parts),
        401 => {
            let mut resp = error_page(401);
            let challenge = answer.headers().get(WWW_AUTHENTICATE).cloned().or_else(|| {
                answer.body().passed().and_then(|p| {
                    p.iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(b"www-authenticate"))
                        .and_then(|(_, v)| http::HeaderValue::from_bytes(v).ok())
                })
            });
            if let Some(challenge) = challenge {
                resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            }
            Decision::Refused(Box::new(resp), parts)
        }
        // With `satisfy any` and a `deny` that held too, nginx's
        // post-access phase logs the rules' refusal.
        403 if level.satisfy_any && ruled == Some(false) => {
            req.log_line(
                client,
                Level::Error,
                "access forbidden by rule while sending to client".to_owned(),
            );
            Decision::Refused(Box::new(error_page(403)), parts)
        }
        403 => Decision::Refused(Box::new(error_page(403)), parts),
        _ => {
            req.log_line(
                client,
                Level::Error,
                format!("auth request unexpected status: {status} while sending to client"),
            );
            Decision::Refused(Box::new(error_page(500)), parts)
        }
    }
}

/// Makes the subrequest: its status, its answer (its body not read), and
/// the main request with the `auth_request_set` variables set.
async fn subrequest(
    req: &Req<'_>,
    ar: &AuthRequest,
    client: SocketAddr,
) -> (u16, Response<RespBody>, Option<Box<Parts>>) {
    let (answer, vars) = run_subrequest(
        req,
        Method::GET,
        ar.uri.clone(),
        ClientBody::empty(),
        client,
        |sub, answer| {
            (!ar.sets.is_empty()).then(|| {
                let vars = sub.vars(
                    client,
                    answer.status().as_u16(),
                    &crate::vars::ProxyName::NONE,
                );
                ar.sets
                    .iter()
                    .map(|(index, pieces)| (*index, evaluate(pieces, &vars, answer)))
                    .collect::<Vec<_>>()
            })
        },
    )
    .await;
    let status = answer.status().as_u16();
    let main = match vars {
        None => None,
        Some(set) => {
            let mut values = req
                .parts
                .extensions
                .get::<UserVars>()
                .cloned()
                .unwrap_or_default();
            for (index, value) in set {
                values.set(index, value);
            }
            let mut main = http::Request::new(());
            *main.method_mut() = req.parts.method.clone();
            *main.uri_mut() = req.parts.uri.clone();
            *main.version_mut() = req.parts.version;
            *main.headers_mut() = req.parts.headers.clone();
            *main.extensions_mut() = req.parts.extensions.clone();
            main.extensions_mut().insert(values);
            Some(Box::new(main.into_parts().0))
        }
    };
    (status, answer, main)
}

/// A subrequest of `req` (`auth_request`, `mirror`) to `target` with
/// `method`: the request's headers and variables, a rewrite level of its
/// own, `$request_method` the main request's; answered through the
/// server's locations (an `internal` one included), without an access
/// phase. `after` reads the subrequest with its answer, before the
/// answer's body is read.
pub(crate) async fn run_subrequest<T>(
    req: &Req<'_>,
    method: Method,
    target: http::uri::PathAndQuery,
    body: ClientBody,
    client: SocketAddr,
    after: impl FnOnce(&Req<'_>, &Response<RespBody>) -> T,
) -> (Response<RespBody>, T) {
    let mut next = http::Request::new(());
    *next.method_mut() = method;
    *next.version_mut() = req.parts.version;
    *next.headers_mut() = req.parts.headers.clone();
    *next.extensions_mut() = req.parts.extensions.clone();
    crate::http::rewrite::new_level(next.extensions_mut());
    next.extensions_mut().remove::<crate::vars::ArgsSet>();
    next.extensions_mut()
        .insert(Subrequest(req.parts.method.clone()));
    let head = ParsedHead::redirected(req.head, req.parts, target.path().as_bytes());
    *next.uri_mut() = http::Uri::from(target);
    let mut parts = next.into_parts().0;
    crate::http::rewrite::set_location_groups(req.server, &head, &mut parts);
    let found = req.server.locations.find(head.uri(&parts.uri));
    let (location, groups) = match found {
        Some((location, groups)) => (Some(location), groups),
        None => (None, None),
    };
    // The main request's limits' marks: nginx checks them once per
    // request, the subrequest's location's where the main request met
    // none.
    let sub = Req {
        subrequest: true,
        auth_done: true,
        granted: true,
        ..req.redirected(&parts, &head, groups.as_ref(), 0, req.changes)
    };
    let answer = dispatch(&sub, location, body, client).await;
    let read = after(&sub, &answer);
    (answer, read)
}

/// A subrequest's answer (`sub`, for the location found for it, an
/// `internal` one included), as its server and location make it; not
/// logged (nginx's `log_subrequest off`).
async fn dispatch(
    sub: &Req<'_>,
    location: Option<&Location>,
    body: ClientBody,
    client: SocketAddr,
) -> Response<RespBody> {
    let started = Some(crate::clock::now());
    let scripted = sub.server.script.is_some()
        || location.is_some_and(|l| l.script_for(&sub.parts.method).is_some());
    let mut answer = if let Some(ret) = &sub.server.ret {
        crate::http::response::reply(
            ret,
            &sub.vars(client, ret.status, &crate::vars::ProxyName::NONE),
        )
    } else if scripted {
        crate::http::rewrite::serve(sub, body, location, client, false, started, false).await
    } else {
        match location {
            Some(location) => {
                let action = match location.action_for(&sub.parts.method) {
                    Action::Internal(action) => action,
                    action => action,
                };
                Box::pin(at_location(
                    sub, body, location, action, client, false, started,
                ))
                .await
            }
            None => Box::pin(server_level(sub, body, client, started)).await,
        }
    };
    if let Some(record) = answer.body_mut().take_record() {
        record.recycle();
    }
    answer
}

/// An `auth_request_set` value, in the subrequest: its variables, and its
/// answer's (`$upstream_*` where an upstream answered it).
fn evaluate(pieces: &[Piece], vars: &VarCtx<'_>, answer: &Response<RespBody>) -> Bytes {
    let passed = answer.body().passed();
    let upstream = answer.body().from_upstream();
    let line = |name: &[u8]| {
        passed.and_then(|p| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_vec())
        })
    };
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Var(v) => v.eval(vars, &mut out),
            Piece::UpstreamHttp(name) => {
                if let Some(v) = line(name) {
                    out.extend_from_slice(&v);
                }
            }
            Piece::UpstreamCookie(name) => {
                if let Some(v) =
                    passed.and_then(|p| crate::http::access::cookie_set(p.iter(), name))
                {
                    out.extend_from_slice(v);
                }
            }
            Piece::UpstreamStatus if upstream => {
                out.extend_from_slice(answer.status().as_str().as_bytes());
            }
            Piece::UpstreamStatus => {}
            Piece::SentHttp(name) => {
                let sent = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| answer.headers().get(n))
                    .map(|v| v.as_bytes().to_vec());
                if let Some(v) = sent.or_else(|| line(name)) {
                    out.extend_from_slice(&v);
                }
            }
        }
    }
    Bytes::from(out)
}
