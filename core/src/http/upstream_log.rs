//! The line nginx logs when an upstream's body breaks off while it is
//! passed on — `upstream prematurely closed connection while reading
//! upstream`, a timeout, a reset, a bad chunk — with the request's
//! context, as `ngx_http_upstream_process_request` and its event pipe log
//! it.
//!
//! The body is read long after the proxy's try loop returned, by the
//! client connection's writer, which has the client's request but not
//! the location's settings or the chosen server. What the line needs of
//! those is kept with the answer ([`Origin`]: a few words, the server's
//! name shared, no text made): the line itself is made only when one is
//! written.

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

use crate::http::proxy::{upstream_name, About};
use crate::log::{self, Level};
use crate::upstream::addr::PeerAddr;

/// The request an upstream's answer is for, as its error lines name it.
/// (Kept within 64 bytes: it is written into every proxied answer's
/// header lines, which a larger size makes a call to memcpy.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub conn: u64,
    /// The server's first name (`server:`).
    pub server: Arc<str>,
    /// The URI part of `upstream: "..."` where the proxy made it
    /// (`proxy_pass` with a URI part or with variables, an internal
    /// redirect); `None`: the client's own target (FastCGI names none).
    pub target: Option<Box<str>>,
    /// The client, after realip.
    pub client: IpAddr,
    pub scheme: Scheme,
    /// `proxy_buffering` (on by default): nginx reads a buffered body
    /// with readv(), an unbuffered one with recv(), and its line for a
    /// failed read names the call.
    pub buffering: bool,
}

const _: () = assert!(std::mem::size_of::<Option<Origin>>() <= 64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    FastCgi,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::FastCgi => "fastcgi",
        }
    }
}

/// When, in reading an upstream's body, it broke off: what nginx was
/// doing then, which its line names, when the body is not buffered.
///
/// Unbuffered, nginx passes the body's bytes that came with the head on
/// while it still reads the head (`reading response header from
/// upstream`); then, if there were any, it sends them and goes on
/// reading for as long as the upstream has bytes ready, all of it
/// `sending to client`; what it reads once the upstream made it wait is
/// `reading upstream`. Buffered, every read is `reading upstream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Within the bytes that came with the head.
    WithHead,
    /// In the reads that follow them before the upstream made the proxy
    /// wait.
    Straight,
    /// After a wait.
    Later,
}

/// nginx's `error` line for an upstream body cut short by `why` at
/// `when`; `request` is the client's request, as its connection read it.
#[cold]
#[inline(never)]
pub fn failed(origin: &Origin, peer: &PeerAddr, why: &str, when: When, request: &Parts) {
    let target = match (&origin.target, origin.scheme) {
        (_, Scheme::FastCgi) => "",
        (Some(made), _) => made,
        (None, _) => request.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    let upstream = upstream_name(origin.scheme.as_str(), peer, &target);
    // The read call nginx names: SSL_read() over TLS, else readv() for a
    // buffered body and recv() for an unbuffered one.
    let mut line = match why.strip_prefix(RECV) {
        Some(rest) if origin.scheme == Scheme::Https => format!("SSL_read(){rest}"),
        Some(rest) if origin.buffering => format!("readv(){rest}"),
        _ => why.to_owned(),
    };
    line.push_str(match when {
        _ if origin.buffering => " while reading upstream",
        When::WithHead => " while reading response header from upstream",
        When::Straight => " while sending to client",
        When::Later => " while reading upstream",
    });
    About {
        client: origin.client,
        server: &origin.server,
        request,
        subrequest: None,
        upstream: Some(&upstream),
        headers: &request.headers,
    }
    .write(&mut line);
    log::write(Level::Error, Some(origin.conn), &line);
}

/// How a failed read's message starts: the unbuffered read's call, which
/// a buffered body's line names as readv().
pub const RECV: &str = "recv()";

/// The message of a failed read of an upstream's body, as nginx's
/// `ngx_unix_recv` words it (`recv() failed (104: Connection reset by
/// peer)`), for the errors a peer causes; others are named without their
/// number.
pub fn read_error(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(104) => "recv() failed (104: Connection reset by peer)",
        Some(110) => "recv() failed (110: Connection timed out)",
        Some(113) => "recv() failed (113: No route to host)",
        Some(32) => "recv() failed (32: Broken pipe)",
        _ => "recv() failed",
    }
}
