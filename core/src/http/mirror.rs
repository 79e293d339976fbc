//! `mirror`: nginx's `ngx_http_mirror_module`. Once the access phase let
//! a (main) request in, each `mirror` URI gets a subrequest with the
//! request's method, arguments and headers, and its body when
//! `mirror_request_body` is on (the body is then read whole first, and
//! the request's own handler gets it from memory). The subrequests go
//! through the server's locations (an `internal` one included) without
//! an access phase; they are not logged and their answers are dropped.
//!
//! They run on their own tasks, so the request's answer goes out without
//! waiting for them; an HTTP/1 connection reads its next request once
//! they are done, as nginx finalizes a request after its background
//! subrequests.
//!
//! Off the request path: the access phases of a level with `mirror` run
//! in `auth_request`'s out-of-line code, which calls [`start`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use crate::conf::model::MirrorConf;
use crate::http::body::RespBody;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::server::{Conn, Req};
use crate::runtime::Runtime;

/// A level's `mirror` URIs and `mirror_request_body`.
#[derive(Debug)]
pub struct Mirror {
    uris: Box<[Box<str>]>,
    body: bool,
}

impl Mirror {
    pub fn new(conf: &MirrorConf) -> Mirror {
        Mirror {
            uris: conf.uris.iter().map(|u| u.as_str().into()).collect(),
            body: conf.body,
        }
    }
}

/// The mirror subrequests of a request, for its connection to wait on
/// before its next request. (Behind a lock only because a response's
/// extensions must be `Sync`; one task takes it.)
#[derive(Clone)]
pub struct Mirrored(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl Mirrored {
    /// Until every subrequest is done.
    pub async fn wait(self) {
        let handles = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            // A subrequest that panicked is over all the same.
            let _ = handle.await;
        }
    }
}

/// `resp`, marked with the subrequests its connection waits for (with
/// those of an internal redirect's target that mirrored again).
pub fn attach(mut resp: Response<RespBody>, mirrored: Option<Mirrored>) -> Response<RespBody> {
    if let Some(m) = mirrored {
        if let Some(inner) = resp.extensions_mut().remove::<Mirrored>() {
            let more = std::mem::take(&mut *inner.0.lock().unwrap_or_else(|e| e.into_inner()));
            m.0.lock().unwrap_or_else(|e| e.into_inner()).extend(more);
        }
        resp.extensions_mut().insert(m);
    }
    resp
}

/// nginx's pre-content phase for `mirror`: reads the body whole first if
/// the mirrors get it (`body` becomes that copy), then starts the
/// subrequests. `Err` when the body could not be read (the connection
/// answers that itself).
pub(crate) async fn start(
    req: &Req<'_>,
    mirror: &Mirror,
    body: &mut ClientBody,
    client: SocketAddr,
) -> Result<Option<Mirrored>, ()> {
    // An internal redirect's target mirrors again, as nginx's does.
    let bytes = if mirror.body && !http_body::Body::is_end_stream(body) {
        let taken = std::mem::replace(body, ClientBody::empty());
        let bytes = Box::pin(taken.collect()).await.map_err(|_| ())?.to_bytes();
        *body = ClientBody::full(bytes.clone());
        Some(bytes)
    } else {
        None
    };
    let Some(detached) = Detached::new(req, client) else {
        return Ok(None);
    };
    let detached = Arc::new(detached);
    let handles = mirror
        .uris
        .iter()
        .map(|uri| spawn(detached.clone(), uri.clone(), bytes.clone()))
        .collect();
    Ok(Some(Mirrored(Arc::new(Mutex::new(handles)))))
}

/// What a subrequest that outlives its request's handler needs of the
/// request: owned copies, and the configuration its server belongs to.
struct Detached {
    rt: Arc<Runtime>,
    group: usize,
    server: usize,
    conn: Conn,
    local: SocketAddr,
    requests: u64,
    /// The request as it is at the level with `mirror`, and the client's
    /// own (`$request_uri`, the log's request line).
    parts: Parts,
    original: Option<Parts>,
    head: ParsedHead,
    raw: Box<[u8]>,
    /// The limits the request met (nginx checks them once per request).
    pre_access: u8,
    client: SocketAddr,
}

impl Detached {
    fn new(req: &Req<'_>, client: SocketAddr) -> Option<Detached> {
        let (conn, rt, group, server) = req.conn.detached(req.server)?;
        let mut pre_access = 0;
        for which in [
            crate::http::proxy::PreAccess::REQ,
            crate::http::proxy::PreAccess::CONN,
        ] {
            if req.pre_access.met(which) {
                pre_access |= which;
            }
        }
        Some(Detached {
            rt,
            group,
            server,
            conn,
            local: req.local,
            requests: req.requests,
            parts: copy(req.parts),
            original: req.original.map(copy),
            head: req.head.clone(),
            raw: req.raw.into(),
            pre_access,
            client,
        })
    }
}

/// A request head's copy (`Parts` is not `Clone`).
fn copy(parts: &Parts) -> Parts {
    let mut next = http::Request::new(());
    *next.method_mut() = parts.method.clone();
    *next.uri_mut() = parts.uri.clone();
    *next.version_mut() = parts.version;
    *next.headers_mut() = parts.headers.clone();
    *next.extensions_mut() = parts.extensions.clone();
    next.into_parts().0
}

/// A plain function with a named return type: the task's future holds a
/// location's whole answer, whose code starts mirrors itself.
fn spawn(d: Arc<Detached>, uri: Box<str>, body: Option<Bytes>) -> JoinHandle<()> {
    tokio::spawn(run(d, uri, body))
}

/// One mirror subrequest: `uri` with the request's arguments, its method
/// and headers; its answer read to the end and dropped (so an upstream
/// connection goes back to its pool).
async fn run(d: Arc<Detached>, uri: Box<str>, body: Option<Bytes>) {
    let Some(server) =
        d.rt.listens
            .get(d.group)
            .and_then(|g| g.servers.get(d.server))
    else {
        return;
    };
    let pre_access = crate::http::proxy::PreAccess::default();
    pre_access.meet(d.pre_access);
    let main = Req {
        parts: &d.parts,
        original: d.original.as_ref(),
        head: &d.head,
        raw: &d.raw,
        conn: &d.conn,
        local: d.local,
        requests: d.requests,
        server,
        maps: &d.rt.maps,
        captures: None,
        named: None,
        err_status: 0,
        changes: crate::http::error_page::MAX_URI_CHANGES + 1,
        pre_access: &pre_access,
        statics: None,
        subrequest: false,
        auth_done: true,
        granted: true,
        mirror_after_try: None,
    };
    let target = match d.parts.uri.query() {
        Some(args) => format!("{uri}?{args}"),
        None => uri.to_string(),
    };
    let Ok(target) = http::uri::PathAndQuery::try_from(target) else {
        return;
    };
    let body = body.map_or_else(ClientBody::empty, ClientBody::full);
    let (answer, ()) = crate::http::auth_request::run_subrequest(
        &main,
        d.parts.method.clone(),
        target,
        body,
        d.client,
        |_, _| (),
    )
    .await;
    let mut body = answer.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}
