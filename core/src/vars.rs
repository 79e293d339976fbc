//! Variables and compiled templates (`"$host$uri"`, `${arg_a}x`), as
//! nginx's `ngx_http_variables.c` and `ngx_http_script_compile`.
//!
//! A template is split into literal and variable parts once, at config
//! load; evaluating it walks the parts and copies slices of the request.
//! Values are bytes, as in nginx: `$uri` is percent-decoded and may hold
//! any byte, header values may hold obs-text.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use http::header::{self, HeaderName};
use http::request::Parts;

use crate::http::head::{ParsedHead, Unparsed};
use crate::http::tls::Https;
use crate::map::Map;

/// What a variable can read: the request head and the connection.
#[derive(Clone, Copy)]
pub struct VarCtx<'a> {
    pub req: &'a Parts,
    /// The normalized URI and validated Host of the request.
    pub head: &'a ParsedHead,
    /// The client, after realip (`$remote_addr`, `$remote_port`).
    pub client: SocketAddr,
    /// The connection's peer (`$realip_remote_addr`, `$realip_remote_port`).
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `$server_name`: the server's first name.
    pub server_name: &'a str,
    /// `$proxy_host` and `$proxy_port`: empty outside a proxied location.
    /// (By reference: a request's contexts are copied about.)
    pub proxy: &'a ProxyName<'a>,
    /// `$connection`
    pub conn: u64,
    /// `$connection_requests`
    pub requests: u64,
    /// `$status` while the request is handled: the `return` code, else 0
    /// (printed `000`, as nginx does before a status is known).
    pub status: u16,
    /// `$request` as the client sent it, for a head refused before it
    /// could be a request (`GET / HTTP/1.1x`); empty: from `req`.
    pub request_line: &'a [u8],
    /// The client's request where an internal redirect (`error_page`)
    /// made `req`: `$request` and `$request_uri` are its.
    pub original: Option<&'a Parts>,
    /// The configuration's `map` variables (`Var::Map` indexes them).
    pub maps: &'a [Map],
    /// A `map` regex's groups, while the value of its entry is evaluated.
    pub captures: Option<&'a crate::pattern::Captures<'a>>,
    /// The matches whose named groups are variables where nothing set
    /// them: the request's regex location's, then its regex server name's.
    pub named: NamedRef<'a>,
    /// The static settings of the level the request is at, for
    /// `$document_root` and `$request_filename`.
    pub statics: Option<&'a crate::http::static_files::Static>,
    /// What the upstream said, once it answered (`$upstream_addr`,
    /// `$upstream_status`, `$upstream_http_*`, `$upstream_cookie_*` in
    /// `add_header`); `None` before, where nginx has them not found.
    pub upstream: Option<&'a UpstreamSeen>,
    /// The answer while the header filters (`expires`, `add_header`) run,
    /// for `$sent_http_*`; `None` elsewhere, where they are not found.
    pub answer: Option<&'a http::Response<crate::http::body::RespBody>>,
}

/// nginx's `$proxy_host` (the host, and the port unless it is the
/// scheme's) and `$proxy_port` (the port, the scheme's by default).
/// Not found ([`ProxyName::NONE`]) until the proxy handles the request; empty
/// but found after a `proxy_pass` value that named nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProxyName<'a> {
    pub host: &'a str,
    pub port: &'a str,
    found: bool,
}

impl<'a> ProxyName<'a> {
    /// Not found: the proxy has not handled the request.
    pub const NONE: ProxyName<'static> = ProxyName {
        host: "",
        port: "",
        found: false,
    };

    pub fn new(host: &'a str, port: &'a str) -> ProxyName<'a> {
        ProxyName {
            host,
            port,
            found: true,
        }
    }
}

/// A request's upstream tries as `add_header` reads them: the addresses
/// and statuses, `, `-separated, and the last response's header lines as
/// the upstream sent them.
#[derive(Debug, Default, Clone)]
pub struct UpstreamSeen {
    pub addr: String,
    pub status: String,
    pub head: Vec<u8>,
    /// `$upstream_cache_status` (empty: not found).
    pub cache: &'static str,
    /// Each try's times and bytes so far.
    pub tries: crate::http::access::Tries,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    BinaryRemoteAddr,
    RealipRemoteAddr,
    RealipRemotePort,
    RemoteUser,
    Request,
    RequestUri,
    /// `$uri`, `$document_uri`
    Uri,
    /// `$args`, `$query_string`
    Args,
    IsArgs,
    /// `$arg_NAME`, name as written (compared without case).
    Arg(Box<str>),
    /// `$http_NAME`, as a header name (`x_foo` is `x-foo`).
    Http(HeaderName),
    /// `$http_NAME` whose name is no valid header name: always empty.
    NoHeader,
    /// `$cookie_NAME`
    Cookie(Box<str>),
    Host,
    Hostname,
    Scheme,
    Https,
    RequestMethod,
    ServerPort,
    ServerAddr,
    ServerName,
    ServerProtocol,
    ContentLength,
    ContentType,
    Connection,
    ConnectionRequests,
    /// `$connections_active` and the others of `stub_status`: index into
    /// [`crate::http::stats::totals`].
    Connections(u8),
    Pid,
    Msec,
    TimeLocal,
    TimeIso8601,
    Status,
    /// `$body_bytes_sent`, `$bytes_sent` before anything was sent: `0`.
    BytesSent,
    ProxyHost,
    ProxyPort,
    /// `$nginx_version`: the nginx release whose behaviour waypost
    /// follows.
    NginxVersion,
    /// `$fastcgi_script_name`
    FastcgiScriptName,
    /// `$fastcgi_path_info`
    FastcgiPathInfo,
    ProxyAddXForwardedFor,
    /// `$proxy_protocol_addr` (0), `_port` (1), `_server_addr` (2),
    /// `_server_port` (3): the connection's PROXY protocol header.
    ProxyProtocol(u8),
    /// `$1`..`$9`, or a named group of a `map` entry's regex in the
    /// entry's value: the group of that regex; elsewhere empty (waypost
    /// has no regex locations), as in nginx without a match.
    Capture(u8),
    /// A `map` variable: the index of its map in [`VarCtx::maps`].
    Map(u32),
    /// A `set` variable or a regex's named group (nginx's variables of
    /// one kind): its index in the request's [`UserVars`], and whether a
    /// regex's group has its name. Where nothing set it, the group of that
    /// name of the request's regex location, else of its regex server
    /// name ([`VarCtx::named`]); else empty, and "not found" (`-` in a
    /// log line) if a group has the name ([`crate::conf::model::UserVar`]).
    User(u32, bool),
    /// `$document_root`: the level's root or alias.
    DocumentRoot,
    /// `$request_filename`: the path the URI maps to there.
    RequestFilename,
    /// `$realpath_root`: `$document_root` with its links resolved
    /// (`realpath()`), as a [`RealpathScope`] gives it (`fastcgi_param`).
    RealpathRoot,
    /// `$ssl_protocol`, `$ssl_cipher`, `$ssl_server_name`,
    /// `$ssl_session_reused`: the TLS session's (not found on a plain
    /// connection).
    SslProtocol,
    SslCipher,
    SslServerName,
    SslSessionReused,
    /// `$ssl_client_*`: the client's certificate (`ssl_verify_client`).
    SslClient(ClientVar),
    /// `$request_id`: 32 hex digits, the same for the whole request.
    RequestId,
    /// `$upstream_cache_status`: what `proxy_cache` made of the request
    /// (`MISS`, `HIT` ...); not found where it did not look.
    UpstreamCacheStatus,
    /// `$invalid_referer`: `1` where the level's `valid_referers` refuse
    /// the Referer, else empty.
    InvalidReferer,
    /// `$secure_link`, `$secure_link_expires`: the level's secure_link.
    SecureLink,
    SecureLinkExpires,
    /// `$upstream_addr`, `$upstream_status`, `$upstream_http_NAME` (the
    /// name lowercase, `-` for `_`), `$upstream_cookie_NAME`.
    UpstreamAddr,
    UpstreamStatus,
    UpstreamHttp(Box<[u8]>),
    UpstreamCookie(Box<[u8]>),
    /// `$upstream_response_time`, `$upstream_bytes_sent`, ...
    UpstreamTry(crate::http::access::TryField),
    /// `$sent_http_NAME` (the name lowercase, `-` for `_`) in the header
    /// filters: the answer's header as they see it.
    SentHttp(Box<[u8]>),
}

thread_local! {
    /// `$realpath_root` for the evaluation under way on this thread
    /// ([`RealpathScope`]).
    static REALPATH_ROOT: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
    /// Whether `$document_root` or `$request_filename` is being evaluated
    /// on this thread.
    static IN_ROOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `$realpath_root`'s value for the templates evaluated while it lives.
/// Resolving the root reads the file system, which the request path
/// does on the blocking pool, before its (synchronous) evaluation: the
/// value is handed to it here, on the same thread, with no wait between.
pub struct RealpathScope(());

impl RealpathScope {
    pub fn enter(real: Option<Vec<u8>>) -> RealpathScope {
        let _ = REALPATH_ROOT.try_with(|r| *r.borrow_mut() = real);
        RealpathScope(())
    }
}

impl Drop for RealpathScope {
    fn drop(&mut self) {
        let _ = REALPATH_ROOT.try_with(|r| r.borrow_mut().take());
    }
}

/// The refusal of `$realpath_root` outside `fastcgi_param`.
pub const REALPATH_ONLY: &str =
    "the $realpath_root variable is supported only in \"fastcgi_param\"";

/// Whether `text` reads `$realpath_root`.
pub fn reads_realpath_root(text: &str) -> bool {
    // (Variable names have no case.)
    let text = text.to_ascii_lowercase();
    text.contains("$realpath_root") || text.contains("${realpath_root}")
}

/// Marks an evaluation of the root as under way until dropped; `None`
/// when one already is (a cycle).
struct RootGuard;

impl RootGuard {
    fn enter() -> Option<RootGuard> {
        (!IN_ROOT.replace(true)).then_some(RootGuard)
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        IN_ROOT.set(false);
    }
}

/// A regex's named groups and the variables they set (group number,
/// variable index).
pub type GroupVars = Box<[(u8, u32)]>;

/// A regex's match and its named groups' variables (group number,
/// variable index): the group's value is the variable's.
pub type Named<'a> = Option<(&'a crate::pattern::Captures<'a>, &'a [(u8, u32)])>;

/// The matches whose named groups are variables, kept where the
/// request's server and location were chosen.
pub struct NamedGroups<'a> {
    /// The regex location's.
    pub location: Named<'a>,
    /// The matches of the regex locations it is nested in, nearest first
    /// ([`crate::runtime::Locations::outer_groups`]): it was reached
    /// through them, and nginx set their named groups then.
    pub outer: &'a [(crate::pattern::Captures<'a>, &'a [(u8, u32)])],
    /// The regex server name's.
    pub server: Named<'a>,
}

impl<'a> NamedGroups<'a> {
    /// The matches, the one whose group of a name counts first (nginx sets
    /// them in the order it matches, the server name's first).
    fn in_order(&self) -> impl Iterator<Item = Named<'_>> {
        let outer = self.outer.iter().map(|(caps, named)| Some((caps, *named)));
        std::iter::once(self.location)
            .chain(outer)
            .chain(std::iter::once(self.server))
    }
}

/// A request's [`NamedGroups`], by reference: the contexts copied along a
/// request stay small.
pub type NamedRef<'a> = Option<&'a NamedGroups<'a>>;

/// The request's arguments are a `set $args`'s: found, even empty.
#[derive(Clone, Copy, Debug)]
pub struct ArgsSet;

/// The values `set` gave a request's variables, kept with its head (an
/// extension of its `Parts`): `None` where none was set.
#[derive(Clone, Debug, Default)]
pub struct UserVars(pub Vec<Option<bytes::Bytes>>);

impl UserVars {
    /// Variable `index` is `value` from now on.
    pub fn set(&mut self, index: u32, value: bytes::Bytes) {
        let index = index as usize;
        if self.0.len() <= index {
            self.0.resize(index + 1, None);
        }
        self.0[index] = Some(value);
    }

    /// A regex's named groups, `named` (group, variable), from its match
    /// `caps`: an unmatched group is empty, as nginx's.
    pub fn set_groups(&mut self, named: &[(u8, u32)], caps: &crate::pattern::Captures<'_>) {
        for &(group, index) in named {
            let value = caps.get(usize::from(group)).map(|m| m.as_bytes());
            self.set(
                index,
                bytes::Bytes::copy_from_slice(value.unwrap_or_default()),
            );
        }
    }
}

/// The groups of the regex that ran last for a request in its rewrite
/// phases (a `rewrite`'s or an `if`'s), kept with its head: `$1`..`$9`
/// are theirs from then on.
#[derive(Clone, Debug)]
pub struct Captured {
    pub subject: bytes::Bytes,
    pub groups: std::sync::Arc<[Option<(usize, usize)>]>,
}

impl Captured {
    pub fn new(subject: &[u8], caps: &crate::pattern::Captures<'_>) -> Captured {
        Captured {
            subject: bytes::Bytes::copy_from_slice(subject),
            groups: caps
                .iter()
                .map(|m| m.map(|m| (m.start(), m.end())))
                .collect(),
        }
    }

    /// A regex that did not match: no groups.
    pub fn none() -> Captured {
        Captured {
            subject: bytes::Bytes::new(),
            groups: std::sync::Arc::from(Vec::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn group(&self, n: u8) -> &[u8] {
        match self.groups.get(usize::from(n)) {
            Some(Some((start, end))) => self.subject.get(*start..*end).unwrap_or_default(),
            _ => b"",
        }
    }
}

/// Why a variable name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// nginx does not know it either: `unknown "name" variable`.
    Unknown,
    /// nginx 1.22 knows it (another module's, or a value waypost does not
    /// compute); waypost refuses it rather than answer empty.
    Unsupported,
}

/// Variables nginx 1.22 (as Debian builds it) knows that waypost does not
/// provide. Names are lowercase.
/// `$nginx_version`: the release waypost's behaviour is compared with.
pub const NGINX_VERSION: &str = "1.22.1";

const UNSUPPORTED: &[&str] = &[
    "ancient_browser",
    "connection_time",
    "date_gmt",
    "date_local",
    "fastcgi_path_info",
    "fastcgi_script_name",
    "gzip_ratio",
    "http2",
    "limit_conn_status",
    "limit_rate",
    "limit_req_status",
    "modern_browser",
    "msie",
    "pipe",
    "proxy_internal_body_length",
    "proxy_internal_chunked",
    "request_body",
    "request_body_file",
    "request_completion",
    "request_length",
    "request_time",
    "slice_range",
    "ssl_alpn_protocol",
    "ssl_ciphers",
    "ssl_client_i_dn_legacy",
    "ssl_client_s_dn_legacy",
    "ssl_curves",
    "ssl_early_data",
    "ssl_session_id",
    "tcpinfo_rcv_space",
    "tcpinfo_rtt",
    "tcpinfo_rttvar",
    "tcpinfo_snd_cwnd",
    "uid_got",
    "uid_reset",
    "uid_set",
    "upstream_addr",
    "upstream_bytes_received",
    "upstream_bytes_sent",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_length",
    "upstream_response_time",
    "upstream_status",
];

/// Prefixes of nginx variables waypost does not provide.
const UNSUPPORTED_PREFIXES: &[&str] = &[
    "sent_http_",
    "sent_trailer_",
    "upstream_http_",
    "upstream_trailer_",
    "upstream_cookie_",
];

/// `$sent_http_NAME` where the header filters read it (`name`
/// lowercase): any header but the three nginx makes up as it writes the
/// head (`connection`, `keep_alive`, `transfer_encoding`), which stay not
/// supported.
pub fn sent_var(name: &str) -> Option<Var> {
    let header = name.strip_prefix("sent_http_")?;
    if matches!(header, "connection" | "keep_alive" | "transfer_encoding") {
        return None;
    }
    Some(Var::SentHttp(header.replace('_', "-").into_bytes().into()))
}

/// The variables the header filters (`add_header`, `expires`) read
/// beyond the request's: the upstream's answer and `$sent_http_*`.
pub fn filter_var(name: &str) -> Option<Var> {
    upstream_var(name).or_else(|| sent_var(name))
}

/// The variables of the upstream's answer `add_header` reads (`name`
/// lowercase). Elsewhere nginx reads them at times waypost does not (a
/// `map` of them in a log line), so they are refused there.
pub fn upstream_var(name: &str) -> Option<Var> {
    if let Some(field) = crate::http::access::TryField::named(name) {
        return Some(Var::UpstreamTry(field));
    }
    Some(match name {
        "upstream_addr" => Var::UpstreamAddr,
        "upstream_status" => Var::UpstreamStatus,
        n => match n.strip_prefix("upstream_http_") {
            Some(h) => Var::UpstreamHttp(h.replace('_', "-").into_bytes().into()),
            None => Var::UpstreamCookie(n.strip_prefix("upstream_cookie_")?.as_bytes().into()),
        },
    })
}

/// A `~`/`~*` pattern (a regex `location`, a `map` key), compiled as
/// nginx's PCRE would match it: bytes, not UTF-8 characters (`.` is one
/// byte, `\w` ASCII).
pub fn regex(pattern: &str, caseless: bool) -> Result<crate::pattern::Regex, String> {
    crate::pattern::Regex::new(pattern, caseless)
}

/// Whether nginx 1.22 has a variable of exactly this name (lowercase), not
/// one of a prefixed family (`arg_*`, `http_*`, ...): a `map` may not
/// define it (`the duplicate "host" variable`).
pub fn builtin(name: &str) -> bool {
    match Var::parse(name) {
        Ok(Var::Arg(_) | Var::Http(_) | Var::NoHeader | Var::Cookie(_)) => false,
        Ok(_) => true,
        Err(NameError::Unsupported) => UNSUPPORTED.contains(&name),
        Err(NameError::Unknown) => false,
    }
}

/// Variables a configuration defines, by lowercase name: `map`'s, and a
/// regex's named groups in its entry's value.
pub type Scope<'a> = &'a dyn Fn(&str) -> Option<Var>;

impl Var {
    /// [`Self::parse`], with the configuration's own variables first.
    pub fn parse_in(name: &str, scope: Scope<'_>) -> Result<Var, NameError> {
        match scope(&name.to_ascii_lowercase()) {
            Some(var) => Ok(var),
            None => Var::parse(name),
        }
    }

    /// The variable called `name` (without `$`). Names are case-insensitive,
    /// as in nginx.
    pub fn parse(name: &str) -> Result<Var, NameError> {
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "binary_remote_addr" => Var::BinaryRemoteAddr,
            "realip_remote_addr" => Var::RealipRemoteAddr,
            "realip_remote_port" => Var::RealipRemotePort,
            "remote_user" => Var::RemoteUser,
            "request" => Var::Request,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "document_root" => Var::DocumentRoot,
            "realpath_root" => Var::RealpathRoot,
            "request_filename" => Var::RequestFilename,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "host" => Var::Host,
            "hostname" => Var::Hostname,
            "scheme" => Var::Scheme,
            "https" => Var::Https,
            "request_method" => Var::RequestMethod,
            "server_port" => Var::ServerPort,
            "server_addr" => Var::ServerAddr,
            "server_name" => Var::ServerName,
            "server_protocol" => Var::ServerProtocol,
            "content_length" => Var::ContentLength,
            "content_type" => Var::ContentType,
            "connection" => Var::Connection,
            "connection_requests" => Var::ConnectionRequests,
            "connections_active" => Var::Connections(0),
            "connections_reading" => Var::Connections(4),
            "connections_writing" => Var::Connections(5),
            "connections_waiting" => Var::Connections(6),
            "pid" => Var::Pid,
            "msec" => Var::Msec,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "status" => Var::Status,
            "body_bytes_sent" | "bytes_sent" => Var::BytesSent,
            "proxy_host" => Var::ProxyHost,
            "fastcgi_script_name" => Var::FastcgiScriptName,
            "nginx_version" => Var::NginxVersion,
            "fastcgi_path_info" => Var::FastcgiPathInfo,
            "proxy_port" => Var::ProxyPort,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            "proxy_protocol_addr" => Var::ProxyProtocol(0),
            "proxy_protocol_port" => Var::ProxyProtocol(1),
            "proxy_protocol_server_addr" => Var::ProxyProtocol(2),
            "proxy_protocol_server_port" => Var::ProxyProtocol(3),
            "ssl_protocol" => Var::SslProtocol,
            "ssl_cipher" => Var::SslCipher,
            "ssl_server_name" => Var::SslServerName,
            "ssl_session_reused" => Var::SslSessionReused,
            "ssl_client_verify" => Var::SslClient(ClientVar::Verify),
            "ssl_client_s_dn" => Var::SslClient(ClientVar::Subject),
            "ssl_client_i_dn" => Var::SslClient(ClientVar::Issuer),
            "ssl_client_serial" => Var::SslClient(ClientVar::Serial),
            "ssl_client_fingerprint" => Var::SslClient(ClientVar::Fingerprint),
            "ssl_client_raw_cert" => Var::SslClient(ClientVar::RawCert),
            "ssl_client_escaped_cert" => Var::SslClient(ClientVar::EscapedCert),
            "ssl_client_cert" => Var::SslClient(ClientVar::Cert),
            "ssl_client_v_start" => Var::SslClient(ClientVar::Start),
            "ssl_client_v_end" => Var::SslClient(ClientVar::End),
            "ssl_client_v_remain" => Var::SslClient(ClientVar::Remain),
            "request_id" => Var::RequestId,
            "upstream_cache_status" => Var::UpstreamCacheStatus,
            "invalid_referer" => Var::InvalidReferer,
            "secure_link" => Var::SecureLink,
            "secure_link_expires" => Var::SecureLinkExpires,
            n if UNSUPPORTED.contains(&n) => return Err(NameError::Unsupported),

            n if UNSUPPORTED_PREFIXES.iter().any(|p| n.starts_with(p)) => {
                return Err(NameError::Unsupported)
            }
            n => {
                if let Some(a) = n.strip_prefix("arg_") {
                    Var::Arg(a.into())
                } else if let Some(h) = n.strip_prefix("http_") {
                    match HeaderName::from_bytes(h.replace('_', "-").as_bytes()) {
                        Ok(h) => Var::Http(h),
                        Err(_) => Var::NoHeader,
                    }
                } else if let Some(c) = n.strip_prefix("cookie_") {
                    Var::Cookie(c.into())
                } else {
                    return Err(NameError::Unknown);
                }
            }
        })
    }

    /// The value when it is a slice of the request already known to be
    /// text (the request line's parts): a module takes it without a
    /// UTF-8 check.
    pub fn str_slice<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r str> {
        let req = cx.req;
        if cx.head.unparsed != Unparsed::No
            && matches!(self, Var::RequestUri | Var::Args | Var::Arg(_))
        {
            return Some("");
        }
        Some(match self {
            Var::RequestUri => request_uri(cx.original.unwrap_or(req)),
            Var::Args => req.uri.query().unwrap_or(""),
            Var::Arg(name) => arg(req.uri.query().unwrap_or(""), name).unwrap_or(""),
            // A subrequest's is its main request's (it is itself a GET).
            Var::RequestMethod => req
                .extensions
                .get::<crate::http::auth_request::Subrequest>()
                .map_or(req.method.as_str(), |s| s.0.as_str()),
            _ => return None,
        })
    }

    /// The value when it is a slice of the request, with no copy.
    pub fn slice<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r [u8]> {
        let req = cx.req;
        Some(match self {
            Var::RequestUri | Var::Args | Var::Arg(_) | Var::RequestMethod => {
                return self.str_slice(cx).map(str::as_bytes)
            }
            Var::Uri if cx.head.unparsed != Unparsed::No => b"",
            Var::Uri => cx.head.uri(&req.uri),
            Var::IsArgs => {
                if cx.head.unparsed == Unparsed::No
                    && req.uri.query().is_some_and(|q| !q.is_empty())
                {
                    b"?"
                } else {
                    b""
                }
            }
            Var::Cookie(name) => cookie(&req.headers, name).unwrap_or(b""),
            Var::ServerName => cx.server_name.as_bytes(),
            Var::ProxyHost => cx.proxy.host.as_bytes(),
            Var::NginxVersion => NGINX_VERSION.as_bytes(),
            Var::ProxyPort => cx.proxy.port.as_bytes(),
            Var::Host => cx
                .head
                .host(&req.uri, &req.headers)
                .unwrap_or(cx.server_name.as_bytes()),
            Var::Http(name) => {
                if joined(name) && req.headers.get_all(name).iter().nth(1).is_some() {
                    return None;
                }
                req.headers.get(name).map_or(&b""[..], |v| v.as_bytes())
            }
            Var::ContentLength => match req.headers.get(header::CONTENT_LENGTH) {
                Some(v) => v.as_bytes(),
                None if cx.head.body_length.is_some() => return None,
                None => b"",
            },
            Var::ContentType => first(&req.headers, &header::CONTENT_TYPE),
            // A TLS connection marks its requests (`http::tls::Https`).
            Var::Scheme => match req.extensions.get::<Https>() {
                Some(_) => b"https",
                None => b"http",
            },
            Var::Https => match req.extensions.get::<Https>() {
                Some(_) => b"on",
                None => b"",
            },
            Var::NoHeader => b"",
            Var::UpstreamCacheStatus => cx.upstream.map_or(&b""[..], |u| u.cache.as_bytes()),
            Var::InvalidReferer => match cx.statics.and_then(|s| s.referers()) {
                Some(r) if !r.valid(req.headers.get(header::REFERER).map(|v| v.as_bytes())) => b"1",
                _ => b"",
            },
            Var::ProxyProtocol(0) => proxied(req).map_or(&b""[..], |p| p.src_addr.as_bytes()),
            Var::ProxyProtocol(2) => proxied(req).map_or(&b""[..], |p| p.dst_addr.as_bytes()),
            Var::SslProtocol => tls(req).map_or(&b""[..], |s| s.protocol.as_bytes()),
            Var::SslCipher => tls(req).map_or(&b""[..], |s| s.cipher.as_bytes()),
            Var::SslServerName => tls(req)
                .and_then(|s| s.server_name.as_deref())
                .map_or(&b""[..], str::as_bytes),
            Var::SslSessionReused => match tls(req) {
                Some(s) if s.reused => b"r",
                Some(_) => b".",
                None => b"",
            },
            // The groups of the regex at hand (a location's, a map
            // entry's), else of the rewrite phases' last one.
            Var::Capture(n) => match (cx.captures, req.extensions.get::<Captured>()) {
                (Some(c), _) => c.get(usize::from(*n)).map_or(&b""[..], |m| m.as_bytes()),
                (None, Some(c)) => c.group(*n),
                (None, None) => b"",
            },
            Var::User(i, ..) => user(cx, *i).unwrap_or_default(),
            Var::SslClient(ClientVar::Verify) => {
                tls(req).map_or(&b""[..], |s| s.client_verify().as_bytes())
            }
            Var::SslClient(field) => match (field, tls(req).and_then(|s| s.client.as_deref())) {
                (_, None) => b"",
                (ClientVar::Subject, Some(c)) => c.subject.as_bytes(),
                (ClientVar::Issuer, Some(c)) => c.issuer.as_bytes(),
                (ClientVar::Serial, Some(c)) => c.serial.as_bytes(),
                (ClientVar::Fingerprint, Some(c)) => c.fingerprint.as_bytes(),
                (ClientVar::RawCert, Some(c)) => c.pem.as_bytes(),
                (ClientVar::Start, Some(c)) => c.start.as_bytes(),
                (ClientVar::End, Some(c)) => c.end.as_bytes(),
                // Made below.
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Appends the value to `out`.
    pub fn eval(&self, cx: &VarCtx<'_>, out: &mut Vec<u8>) {
        if let Some(s) = self.slice(cx) {
            out.extend_from_slice(s);
            return;
        }
        let req = cx.req;
        match self {
            Var::RemoteAddr => NgxIp(cx.client.ip()).append_to(out),
            Var::RemotePort => write_port(out, cx.client.port()),
            Var::BinaryRemoteAddr => match cx.client.ip() {
                IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
            },
            Var::ProxyProtocol(n) => {
                if let Some(p) = proxied(req) {
                    write_port(out, if *n == 1 { p.src_port } else { p.dst_port });
                }
            }
            Var::RealipRemoteAddr => NgxIp(cx.peer.ip()).append_to(out),
            Var::RealipRemotePort => write_port(out, cx.peer.port()),
            Var::RemoteUser => {
                if let Some(user) = remote_user(&req.headers) {
                    out.extend_from_slice(&user);
                }
            }
            Var::Request if !cx.request_line.is_empty() => {
                out.extend_from_slice(cx.request_line);
            }
            Var::Request => {
                let req = cx.original.unwrap_or(req);
                out.extend_from_slice(req.method.as_str().as_bytes());
                out.push(b' ');
                if req.uri.scheme().is_some() {
                    let _ = write!(out, "{}", req.uri);
                } else {
                    out.extend_from_slice(request_uri(req).as_bytes());
                }
                out.push(b' ');
                out.extend_from_slice(protocol(req.version).as_bytes());
            }
            Var::Http(name) => {
                // `$http_cookie` and `$http_x_forwarded_for` join repeated
                // headers (nginx 1.22); others give the first.
                let sep: &[u8] = if *name == header::COOKIE {
                    b"; "
                } else {
                    b", "
                };
                for (i, v) in req.headers.get_all(name).iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(sep);
                    }
                    out.extend_from_slice(v.as_bytes());
                }
            }
            Var::Hostname => out.extend_from_slice(hostname().as_bytes()),
            Var::ServerPort => {
                let _ = write!(out, "{}", cx.local.port());
            }
            Var::ServerAddr => {
                let _ = write!(out, "{}", NgxIp(cx.local.ip()));
            }
            Var::ServerProtocol => out.extend_from_slice(protocol(req.version).as_bytes()),
            Var::Connection => {
                let _ = write!(out, "{}", cx.conn);
            }
            Var::ConnectionRequests => {
                let _ = write!(out, "{}", cx.requests);
            }
            Var::Connections(i) => {
                let n = crate::http::stats::totals()[usize::from(*i)];
                let _ = write!(out, "{n}");
            }
            Var::Pid => {
                let _ = write!(out, "{}", std::process::id());
            }
            Var::Msec => out.extend_from_slice(msec().as_bytes()),
            Var::TimeLocal => time_local_into(out),
            Var::TimeIso8601 => time_iso8601_into(out),
            Var::Status => {
                let _ = write!(out, "{:03}", cx.status);
            }
            Var::BytesSent => out.push(b'0'),
            Var::RealpathRoot => {
                let _ = REALPATH_ROOT.try_with(|r| {
                    if let Some(real) = r.borrow().as_deref() {
                        out.extend_from_slice(real);
                    }
                });
            }
            Var::DocumentRoot | Var::RequestFilename => {
                // A root made of a variable that reads these again (through
                // a `map`) is a cycle: nginx's value is then none.
                let Some(_inside) = RootGuard::enter() else {
                    return;
                };
                // (A location `if` that held with a `root`: its.)
                let statics = match req.extensions.get::<crate::http::rewrite::IfStatics>() {
                    Some(own) => Some(&*own.0),
                    None => cx.statics,
                };
                if let Some((path, root)) =
                    statics.and_then(|st| st.path(cx.head.uri(&req.uri), cx))
                {
                    let end = if *self == Var::DocumentRoot {
                        root
                    } else {
                        path.len()
                    };
                    out.extend_from_slice(&path[..end]);
                }
            }
            Var::Map(i) => {
                if let Some(map) = cx.maps.get(*i as usize) {
                    map.eval(cx, out);
                }
            }
            Var::RequestId => request_id(cx.conn, cx.requests, out),
            Var::SslClient(field) => {
                if let Some(c) = tls(req).and_then(|s| s.client.as_deref()) {
                    match field {
                        ClientVar::EscapedCert => c.escaped(out),
                        ClientVar::Cert => c.tabbed(out),
                        ClientVar::Remain => {
                            let _ = write!(out, "{}", c.remain(crate::clock::unix_secs() as i64));
                        }
                        _ => {}
                    }
                }
            }
            Var::UpstreamAddr => {
                if let Some(u) = cx.upstream {
                    out.extend_from_slice(u.addr.as_bytes());
                }
            }
            Var::UpstreamStatus => {
                if let Some(u) = cx.upstream {
                    out.extend_from_slice(u.status.as_bytes());
                }
            }
            Var::UpstreamHttp(name) => {
                if let Some(v) = cx
                    .upstream
                    .and_then(|u| crate::http::access::header_value(&u.head, name, false))
                {
                    out.extend_from_slice(&v);
                }
            }
            Var::UpstreamCookie(name) => {
                if let Some(v) = cx
                    .upstream
                    .and_then(|u| crate::http::access::set_cookie(&u.head, name))
                {
                    out.extend_from_slice(v);
                }
            }
            Var::UpstreamTry(field) => {
                if let Some(u) = cx.upstream {
                    u.tries.at_header(*field, out);
                }
            }
            Var::SentHttp(name) => {
                if let Some(v) = cx.answer.and_then(|a| sent_header(a, name)) {
                    out.extend_from_slice(&v);
                }
            }
            Var::SecureLink => {
                if let Some(link) = cx.statics.and_then(|s| s.secure_link()) {
                    link.value(cx, out);
                }
            }
            Var::SecureLinkExpires => {
                if let Some(link) = cx.statics.and_then(|s| s.secure_link()) {
                    link.expires(cx, out);
                }
            }
            // The level's settings split the URI as it is now; without
            // them, nginx's value is the URI.
            Var::FastcgiScriptName => match cx.statics.and_then(|s| s.fastcgi()) {
                Some(names) => names.script_name(cx.head.uri(&req.uri), out),
                None => Var::Uri.eval(cx, out),
            },
            // A body read whole: its length (the header's is a slice).
            Var::ContentLength => {
                if let Some(n) = cx.head.body_length {
                    let mut digits = [0u8; 20];
                    out.extend_from_slice(decimal(n, &mut digits));
                }
            }
            Var::FastcgiPathInfo => {
                if let Some(names) = cx.statics.and_then(|s| s.fastcgi()) {
                    out.extend_from_slice(names.split(cx.head.uri(&req.uri)).1);
                }
            }
            Var::ProxyAddXForwardedFor => {
                for v in req.headers.get_all("x-forwarded-for") {
                    out.extend_from_slice(v.as_bytes());
                    out.extend_from_slice(b", ");
                }
                NgxIp(cx.client.ip()).append_to(out);
            }
            // The slices, handled above.
            Var::RequestUri
            | Var::Uri
            | Var::Args
            | Var::IsArgs
            | Var::Arg(_)
            | Var::NoHeader
            | Var::Cookie(_)
            | Var::Host
            | Var::Scheme
            | Var::Https
            | Var::RequestMethod
            | Var::ServerName
            | Var::ContentType
            | Var::ProxyHost
            | Var::ProxyPort
            | Var::NginxVersion
            | Var::Capture(_)
            | Var::User(..)
            | Var::SslProtocol
            | Var::SslCipher
            | Var::SslServerName
            | Var::SslSessionReused
            | Var::UpstreamCacheStatus
            | Var::InvalidReferer => {}
        }
    }

    /// Whether nginx would call the variable "not found" for this request
    /// (an access log line shows `-` for it; an empty value found is empty).
    pub fn missing(&self, cx: &VarCtx<'_>) -> bool {
        let req = cx.req;
        let unparsed = cx.head.unparsed;
        match self {
            // What nginx had not read of a refused head's target.
            Var::Uri => unparsed == Unparsed::Line,
            Var::RequestUri | Var::Args | Var::Arg(_) if unparsed != Unparsed::No => true,
            Var::Arg(name) => arg(req.uri.query().unwrap_or(""), name).is_none(),
            Var::Cookie(name) => cookie(&req.headers, name).is_none(),
            Var::Http(name) => !req.headers.contains_key(name),
            Var::NoHeader => true,
            // nginx sets no args for an empty query (`/x?`), but a `set
            // $args ""` sets empty ones.
            Var::Args => {
                req.uri.query().is_none_or(str::is_empty)
                    && req.extensions.get::<ArgsSet>().is_none()
            }
            Var::ContentLength => {
                !req.headers.contains_key(header::CONTENT_LENGTH) && cx.head.body_length.is_none()
            }
            Var::ContentType => !req.headers.contains_key(header::CONTENT_TYPE),
            Var::RemoteUser => remote_user(&req.headers).is_none(),
            // Both set by the proxy module, once it handles the request.
            Var::ProxyHost | Var::ProxyPort => !cx.proxy.found,
            Var::ProxyProtocol(_) => proxied(req).is_none(),
            // Never set, nor a group of the request's regexes.
            Var::User(i, true) => user(cx, *i).is_none(),
            Var::SslProtocol | Var::SslCipher | Var::SslSessionReused => tls(req).is_none(),
            Var::SslServerName => tls(req).is_none_or(|s| s.server_name.is_none()),
            Var::SslClient(ClientVar::Verify) => tls(req).is_none(),
            Var::SslClient(_) => tls(req).is_none_or(|s| s.client.is_none()),
            Var::UpstreamCacheStatus => cx.upstream.is_none_or(|u| u.cache.is_empty()),
            Var::UpstreamAddr | Var::UpstreamStatus => {
                cx.upstream.is_none_or(|u| u.addr.is_empty())
            }
            Var::UpstreamHttp(name) => cx
                .upstream
                .and_then(|u| crate::http::access::header_value(&u.head, name, false))
                .is_none(),
            Var::UpstreamCookie(name) => cx
                .upstream
                .and_then(|u| crate::http::access::set_cookie(&u.head, name))
                .is_none(),
            Var::UpstreamTry(_) => cx.upstream.is_none_or(|u| u.tries.is_empty()),
            Var::SentHttp(name) => cx.answer.and_then(|a| sent_header(a, name)).is_none(),
            Var::SecureLink => cx
                .statics
                .and_then(|s| s.secure_link())
                .is_none_or(|l| !l.value(cx, &mut Vec::new())),
            Var::SecureLinkExpires => cx
                .statics
                .and_then(|s| s.secure_link())
                .is_none_or(|l| !l.expires(cx, &mut Vec::new())),
            _ => false,
        }
    }
}

/// The request's TLS session, if it came over TLS.
/// What the connection's PROXY protocol header said, if it had one.
fn proxied(req: &Parts) -> Option<&crate::http::proxy_protocol::Addrs> {
    req.extensions
        .get::<crate::http::proxy_protocol::ProxyProtocol>()
        .map(|p| &*p.0)
}

fn tls(req: &Parts) -> Option<&crate::http::tls::Session> {
    req.extensions.get::<Https>().map(|h| &*h.0)
}

/// Which `$ssl_client_*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientVar {
    Verify,
    Subject,
    Issuer,
    Serial,
    Fingerprint,
    RawCert,
    EscapedCert,
    Cert,
    Start,
    End,
    Remain,
}

/// `$request_id`: 128 bits made from the request's connection and number
/// under a key drawn once per process, as 32 lowercase hex digits. The
/// pair names one request of the process, so the value is the same
/// wherever the request evaluates it (a header, the log line), and no two
/// requests share one; without the key it cannot be predicted, as
/// nginx's random bytes cannot.
fn request_id(conn: u64, requests: u64, out: &mut Vec<u8>) {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(std::hash::RandomState::new);
    for half in 0u8..2 {
        let bits = key.hash_one((conn, requests, half));
        let _ = write!(out, "{bits:016x}");
    }
}

/// A `set` variable's or a named group's value: what the request's
/// rewrite lines set, else the group of that name of its regex location,
/// else of its regex server name.
fn user<'r>(cx: &VarCtx<'r>, index: u32) -> Option<&'r [u8]> {
    let set = cx.req.extensions.get::<UserVars>();
    match set.and_then(|v| v.0.get(index as usize)?.as_deref()) {
        Some(value) => Some(value),
        // A group that took no part in the match is empty, as nginx's.
        None => cx.named?.in_order().flatten().find_map(|(caps, named)| {
            let &(group, _) = named.iter().find(|&&(_, i)| i == index)?;
            Some(
                caps.get(usize::from(group))
                    .map_or(&b""[..], |m| m.as_bytes()),
            )
        }),
    }
}

/// `$sent_http_NAME` of `answer`: its line of NAME, the upstream's lines
/// first (nginx 1.22 joins Cache-Control's and Link's with `, `).
fn sent_header(
    answer: &http::Response<crate::http::body::RespBody>,
    name: &[u8],
) -> Option<Vec<u8>> {
    let name = std::str::from_utf8(name).ok()?;
    let passed = answer.body().passed();
    let lines = passed
        .into_iter()
        .flat_map(|p| p.iter())
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
        .chain(answer.headers().get_all(name).iter().map(|v| v.as_bytes()));
    if !crate::http::access::joined_when_sent(name.as_bytes()) {
        return lines.take(1).next().map(<[u8]>::to_vec);
    }
    let mut all: Option<Vec<u8>> = None;
    for v in lines {
        match all.as_mut() {
            Some(a) => {
                a.extend_from_slice(b", ");
                a.extend_from_slice(v);
            }
            None => all = Some(v.to_vec()),
        }
    }
    all
}

/// Headers whose variable joins repeated lines.
fn joined(name: &HeaderName) -> bool {
    *name == header::COOKIE || name.as_str() == "x-forwarded-for"
}

fn first<'r>(headers: &'r http::HeaderMap, name: &HeaderName) -> &'r [u8] {
    headers.get(name).map_or(&b""[..], |v| v.as_bytes())
}

/// nginx's `$remote_port`: empty for port 0 (a realip address without one).
fn write_port(out: &mut Vec<u8>, port: u16) {
    if port > 0 {
        let _ = write!(out, "{port}");
    }
}

/// `$request_uri`: the request target as sent (origin form).
pub fn request_uri(req: &Parts) -> &str {
    req.uri.path_and_query().map_or("/", |p| p.as_str())
}

/// An address as nginx prints it (`ngx_sock_ntop`): IPv6 with the longest
/// run of zero words shortened, and nginx's IPv4-mapped and -compatible
/// forms (`::ffff:1.2.3.4`, `::1.2.3.4`).
pub struct NgxIp(pub IpAddr);

impl NgxIp {
    /// The text into `out`, its length returned: IPv4 by hand, without
    /// the formatting machinery (it is done for every proxied request).
    pub fn write_to(&self, out: &mut [u8; 48]) -> usize {
        if let IpAddr::V4(v4) = self.0 {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    out[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    out[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                out[n] = b'0' + octet % 10;
                n += 1;
            }
            return n;
        }
        use std::io::Write;
        let mut w = &mut out[..];
        let _ = write!(w, "{self}");
        48 - w.len()
    }

    /// The text, in `out`: without a UTF-8 check (83 instructions per
    /// proxied request for the view handed to modules).
    pub fn text<'a>(&self, out: &'a mut [u8; 48]) -> &'a str {
        let n = self.write_to(out);
        let bytes = &out[..n];
        debug_assert!(bytes.is_ascii());
        // SAFETY: `write_to` writes only ASCII: digits and dots for IPv4,
        // and `Display`'s hex digits, colons and dots for IPv6.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Appends the text to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let mut text = [0u8; 48];
        let n = self.write_to(&mut text);
        out.extend_from_slice(&text[..n]);
    }
}

impl std::fmt::Display for NgxIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v6 = match self.0 {
            IpAddr::V4(_) => {
                let mut buf = [0u8; 48];
                return f.write_str(self.text(&mut buf));
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        // ngx_inet6_ntop: the first longest run (of two words or more).
        let (mut zero, mut max) = (usize::MAX, 1);
        let (mut last, mut n) = (usize::MAX, 0);
        for i in (0..16).step_by(2) {
            if v6[i] != 0 || v6[i + 1] != 0 {
                if max < n {
                    zero = last;
                    max = n;
                }
                n = 0;
                continue;
            }
            if n == 0 {
                last = i;
            }
            n += 1;
        }
        if max < n {
            zero = last;
            max = n;
        }
        let mut end = 16;
        if zero == 0 {
            if (max == 5 && v6[10] == 0xff && v6[11] == 0xff)
                || max == 6
                || (max == 7 && v6[14] != 0 && v6[15] != 1)
            {
                end = 12;
            }
            f.write_str(":")?;
        }
        let mut i = 0;
        while i < end {
            if i == zero {
                f.write_str(":")?;
                i += max * 2;
                continue;
            }
            write!(f, "{:x}", u16::from(v6[i]) << 8 | u16::from(v6[i + 1]))?;
            if i < 14 {
                f.write_str(":")?;
            }
            i += 2;
        }
        if end == 12 {
            write!(f, "{}.{}.{}.{}", v6[12], v6[13], v6[14], v6[15])?;
        }
        Ok(())
    }
}

/// The value of query argument `name`, as `ngx_http_arg`: the first
/// `name=` (without case) at the start or after `&`; not unescaped.
/// `None`: no such argument.
pub fn arg<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    if name.is_empty() {
        return None;
    }
    // On bytes (`&` and `=` are ASCII, so the value's ends are character
    // boundaries): splitting the `str` by a `char` cost ~130 instructions
    // per request with `limit_req` keyed on an argument.
    let (q, n) = (query.as_bytes(), name.as_bytes());
    let mut start = 0;
    while start + n.len() < q.len() {
        let pair = &q[start..];
        // The name as written first: one short memcmp instead of a case
        // fold per byte (~80 instructions for a six-letter name).
        let name_here = &pair[..n.len()];
        if pair[n.len()] == b'=' && (name_here == n || name_here.eq_ignore_ascii_case(n)) {
            let from = start + n.len() + 1;
            let end = q[from..]
                .iter()
                .position(|&c| c == b'&')
                .map_or(q.len(), |i| from + i);
            return query.get(from..end);
        }
        match pair.iter().position(|&c| c == b'&') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    None
}

/// `$cookie_NAME`, as nginx 1.22's `ngx_http_parse_multi_header_lines`:
/// names compare without case, spaces around `=` are skipped, the value
/// ends at `;`, and items are separated by `;` or `,`.
pub fn cookie<'r>(headers: &'r http::HeaderMap, name: &str) -> Option<&'r [u8]> {
    let name = name.as_bytes();
    for h in headers.get_all(header::COOKIE) {
        let v = h.as_bytes();
        if name.len() > v.len() {
            continue;
        }
        let mut start = 0;
        while start < v.len() {
            if v.len() - start >= name.len()
                && v[start..start + name.len()].eq_ignore_ascii_case(name)
            {
                let mut p = start + name.len();
                while p < v.len() && v[p] == b' ' {
                    p += 1;
                }
                if p < v.len() && v[p] == b'=' {
                    p += 1;
                    while p < v.len() && v[p] == b' ' {
                        p += 1;
                    }
                    let end = v[p..]
                        .iter()
                        .position(|&c| c == b';')
                        .map_or(v.len(), |e| p + e);
                    return Some(&v[p..end]);
                }
                start = p;
            }
            // skip to the next item
            while start < v.len() {
                let c = v[start];
                start += 1;
                if c == b';' || c == b',' {
                    break;
                }
            }
            while start < v.len() && v[start] == b' ' {
                start += 1;
            }
        }
    }
    None
}

/// `$remote_user`: the user of `Authorization: Basic`, as
/// `ngx_http_auth_basic_user` decodes it.
fn remote_user(headers: &http::HeaderMap) -> Option<Vec<u8>> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"Basic ") {
        return None;
    }
    let encoded = &v[6..];
    let start = encoded.iter().position(|&c| c != b' ')?;
    let mut auth = decode_base64(&encoded[start..])?;
    let colon = auth.iter().position(|&c| c == b':')?;
    if colon == 0 {
        return None;
    }
    auth.truncate(colon);
    Some(auth)
}

/// `ngx_decode_base64`: the standard alphabet, stopping at `=`.
fn decode_base64(src: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let len = src.iter().position(|&c| c == b'=').unwrap_or(src.len());
    if len % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(len * 3 / 4);
    for chunk in src[..len].chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => {}
        }
    }
    Some(out)
}

/// `$hostname`, read once (syslog messages carry it too).
pub(crate) fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// `$msec`: seconds with milliseconds.
pub fn msec() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn offset(tm: &libc::tm) -> (char, i64, i64) {
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    (sign, off.abs() / 3600, (off.abs() % 3600) / 60)
}

/// `n` in decimal, in `buf`: without the formatting machinery, which costs
/// more than the rest of an access log line.
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `$server_protocol`, and the end of `$request`.
pub fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `$time_local`: `22/Nov/2026:04:05:06 +0000`
pub fn time_local_into(out: &mut Vec<u8>) {
    with_local_time(|t| out.extend_from_slice(t.local.as_bytes()));
}

/// `$time_iso8601`: `2026-11-22T04:05:06+00:00`
pub fn time_iso8601_into(out: &mut Vec<u8>) {
    with_local_time(|t| out.extend_from_slice(t.iso8601.as_bytes()));
}

/// The current second in both formats, made once a second per thread
/// (as nginx caches its time strings): formatting and `localtime_r` at
/// every request cost more than the rest of an access log line.
struct LocalTime {
    second: i64,
    local: String,
    iso8601: String,
}

fn with_local_time(f: impl FnOnce(&LocalTime)) {
    thread_local! {
        static CACHE: std::cell::RefCell<LocalTime> = const {
            std::cell::RefCell::new(LocalTime {
                second: i64::MIN,
                local: String::new(),
                iso8601: String::new(),
            })
        };
    }
    let second = crate::clock::unix_secs() as i64;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != second {
            let (tm, now) = crate::log::local_now();
            let (sign, h, m) = offset(&tm);
            cache.second = now;
            cache.local = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{h:02}{m:02}",
                tm.tm_mday,
                MONTHS[tm.tm_mon.clamp(0, 11) as usize],
                tm.tm_year + 1900,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec
            );
            cache.iso8601 = format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{h:02}:{m:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec
            );
        }
        f(&cache);
    });
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(Var),
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// A malformed `$` (nginx's message, reported where it is written).
    Syntax(String),
    /// `unknown "name" variable`
    Unknown(String),
    /// A variable nginx has and waypost does not.
    Unsupported(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Syntax(m) => f.write_str(m),
            CompileError::Unknown(name) => write!(f, "unknown \"{name}\" variable"),
            CompileError::Unsupported(name) => {
                write!(f, "the \"${name}\" variable is not supported")
            }
        }
    }
}

/// Reads the variable name starting at `i` (after `$`, and after `{` when
/// `bracket`), as nginx's script and log compilers do: the name, and where
/// the text goes on (past the closing `}`).
pub fn scan_name(text: &str, mut i: usize, bracket: bool) -> Result<(&str, usize), CompileError> {
    let b = text.as_bytes();
    let start = i;
    let mut closed = false;
    while i < b.len() {
        let c = b[i];
        if c == b'}' && bracket {
            closed = true;
            break;
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            i += 1;
            continue;
        }
        break;
    }
    let name = &text[start..i];
    if bracket && !closed {
        return Err(CompileError::Syntax(format!(
            "the closing bracket in \"{name}\" variable is missing"
        )));
    }
    Ok((name, if closed { i + 1 } else { i }))
}

/// The variables `text` names, lowercase (none where it is malformed: its
/// own check reports that).
pub fn names_in(text: &str) -> Vec<String> {
    scan(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Splits `text` as `ngx_http_script_compile`: literal runs and variable
/// names (`$name`, `${name}`, `$1`..`$9`). `None` when there is no `$`.
pub fn scan(text: &str) -> Result<Vec<Piece<'_>>, CompileError> {
    let b = text.as_bytes();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            i += 1;
            if i == b.len() {
                return Err(CompileError::Syntax("invalid variable name".into()));
            }
            if (b'1'..=b'9').contains(&b[i]) {
                pieces.push(Piece::Capture(b[i] - b'0'));
                i += 1;
                continue;
            }
            let bracket = b[i] == b'{';
            if bracket {
                i += 1;
                if i == b.len() {
                    return Err(CompileError::Syntax("invalid variable name".into()));
                }
            }
            let (name, next) = scan_name(text, i, bracket)?;
            i = next;
            if name.is_empty() {
                return Err(CompileError::Syntax("invalid variable name".into()));
            }
            pieces.push(Piece::Var(name));
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != b'$' {
            i += 1;
        }
        pieces.push(Piece::Text(&text[start..i]));
    }
    Ok(pieces)
}

/// One piece of a template's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
    Capture(u8),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `text` with nginx's rules and messages.
    pub fn compile(text: &str) -> Result<Template, CompileError> {
        Template::compile_with(text, &|_| None)
    }

    /// [`Self::compile`], where `scope` names variables of the
    /// configuration (`map`'s, a regex's named groups) before the built-in
    /// ones.
    pub fn compile_with(text: &str, scope: Scope<'_>) -> Result<Template, CompileError> {
        let mut parts = Vec::new();
        for piece in scan(text)? {
            match piece {
                Piece::Text(t) => match parts.last_mut() {
                    Some(Part::Text(prev)) => prev.push_str(t),
                    _ => parts.push(Part::Text(t.to_owned())),
                },
                Piece::Capture(n) => parts.push(Part::Var(Var::Capture(n))),
                Piece::Var(name) => {
                    parts.push(Part::Var(Var::parse_in(name, scope).map_err(|e| {
                        let name = name.to_ascii_lowercase();
                        match e {
                            NameError::Unknown => CompileError::Unknown(name),
                            NameError::Unsupported => CompileError::Unsupported(name),
                        }
                    })?))
                }
            }
        }
        Ok(Template { parts })
    }

    /// The `map` variables the template uses.
    pub fn maps(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(Var::Map(i)) => Some(*i),
            _ => None,
        })
    }

    /// Whether it reads what the upstream answered (`$upstream_addr`,
    /// `$upstream_status`, `$upstream_http_*`, `$upstream_cookie_*`, the
    /// tries' times and bytes).
    pub fn reads_upstream(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Var(
                    Var::UpstreamAddr
                        | Var::UpstreamCacheStatus
                        | Var::UpstreamStatus
                        | Var::UpstreamHttp(_)
                        | Var::UpstreamCookie(_)
                        | Var::UpstreamTry(_)
                )
            )
        })
    }

    /// The template's text if it has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The value with no copy, when the template is a single variable
    /// that is a slice of the request.
    pub fn as_slice<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r [u8]> {
        match self.parts.as_slice() {
            [Part::Var(v)] => v.slice(cx),
            _ => None,
        }
    }

    /// [`Self::as_slice`] for a variable whose value is known to be text.
    pub fn as_str<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r str> {
        match self.parts.as_slice() {
            [Part::Var(v)] => v.str_slice(cx),
            _ => None,
        }
    }

    pub fn eval_into(&self, cx: &VarCtx<'_>, out: &mut Vec<u8>) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(v) => v.eval(cx, out),
            }
        }
    }

    /// [`Self::eval_into`] with each regex group's value written by
    /// `capture` (nginx escapes a rewrite's groups in places).
    pub fn eval_capturing(
        &self,
        cx: &VarCtx<'_>,
        out: &mut Vec<u8>,
        capture: &dyn Fn(&[u8], &mut Vec<u8>),
    ) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(Var::Capture(n)) => {
                    let group = cx
                        .captures
                        .and_then(|c| c.get(usize::from(*n)))
                        .map_or(&b""[..], |m| m.as_bytes());
                    capture(group, out);
                }
                Part::Var(v) => v.eval(cx, out),
            }
        }
    }

    /// The value as a new buffer.
    pub fn eval(&self, cx: &VarCtx<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        self.eval_into(cx, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_templates() {
        let t = Template::compile("$host$uri").expect("compiles");
        assert_eq!(t.parts, vec![Part::Var(Var::Host), Part::Var(Var::Uri)]);
        let t = Template::compile("${arg_a}x").expect("compiles");
        assert_eq!(
            t.parts,
            vec![Part::Var(Var::Arg("a".into())), Part::Text("x".into())]
        );
        let t = Template::compile("$ARG_A$1x").expect("compiles");
        assert_eq!(
            t.parts,
            vec![
                Part::Var(Var::Arg("a".into())),
                Part::Var(Var::Capture(1)),
                Part::Text("x".into())
            ]
        );
        assert_eq!(
            Template::compile("$nosuch"),
            Err(CompileError::Unknown("nosuch".to_owned()))
        );
        assert_eq!(
            Template::compile("$a.b"),
            Err(CompileError::Unknown("a".to_owned()))
        );
        assert_eq!(
            Template::compile("$0x"),
            Err(CompileError::Unknown("0x".to_owned()))
        );
        assert_eq!(
            Template::compile("$upstream_response_time"),
            Err(CompileError::Unsupported(
                "upstream_response_time".to_owned()
            ))
        );
        assert_eq!(
            Template::compile("plain").expect("compiles").as_literal(),
            Some("plain")
        );
    }

    #[test]
    fn syntax_errors_as_nginx() {
        let e = |t: &str| Template::compile(t).expect_err(t).to_string();
        assert_eq!(e("a$"), "invalid variable name");
        assert_eq!(e("${}"), "invalid variable name");
        assert_eq!(e("$$"), "invalid variable name");
        assert_eq!(e("a$-b"), "invalid variable name");
        assert_eq!(
            e("${arg_a"),
            "the closing bracket in \"arg_a\" variable is missing"
        );
        assert_eq!(
            e("${ x}"),
            "the closing bracket in \"\" variable is missing"
        );
        assert_eq!(
            e("${a-b}"),
            "the closing bracket in \"a\" variable is missing"
        );
        assert_eq!(e("${1}"), "unknown \"1\" variable");
    }

    #[test]
    fn args() {
        assert_eq!(arg("a=1&b=2", "b"), Some("2"));
        assert_eq!(arg("a=1&B=2", "b"), Some("2"));
        assert_eq!(arg("a", "a"), None);
        assert_eq!(arg("a=&a=2", "a"), Some(""));
        assert_eq!(arg("a&a=2", "a"), Some("2"));
        assert_eq!(arg("xa=1&a=3", "a"), Some("3"));
        assert_eq!(arg("", "a"), None);
        // A pair shorter than the name, then the name; a value up to the
        // next `&` only; a name at the very end without a value.
        assert_eq!(arg("a&ab=1", "ab"), Some("1"));
        assert_eq!(arg("ab=1&c=2", "ab"), Some("1"));
        assert_eq!(arg("c=2&ab", "ab"), None);
        assert_eq!(arg("c=2&ab=", "ab"), Some(""));
        assert_eq!(arg("k=\u{e9}t\u{e9}&x=1", "k"), Some("\u{e9}t\u{e9}"));
    }

    #[test]
    fn cookies() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, "a=1;c=2;  c=3".parse().expect("value"));
        h.append(header::COOKIE, "D = 4 ; e=5".parse().expect("value"));
        assert_eq!(cookie(&h, "c"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "d"), Some(&b"4 "[..]));
        assert_eq!(cookie(&h, "e"), Some(&b"5"[..]));
        assert_eq!(cookie(&h, "x"), None);
    }

    #[test]
    fn basic_user() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic dXNlcjpwYXNz".parse().expect("value"),
        );
        assert_eq!(remote_user(&h), Some(b"user".to_vec()));
        h.insert(
            header::AUTHORIZATION,
            "Basic OnBhc3M=".parse().expect("value"),
        );
        assert_eq!(remote_user(&h), None);
    }

    #[test]
    fn addresses_as_nginx_prints_them() {
        let f = |s: &str| NgxIp(s.parse().expect("address")).to_string();
        assert_eq!(f("127.0.0.1"), "127.0.0.1");
        assert_eq!(f("0.0.0.0"), "0.0.0.0");
        assert_eq!(f("255.255.255.255"), "255.255.255.255");
        assert_eq!(f("10.100.9.200"), "10.100.9.200");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(f("1::"), "1::");
        assert_eq!(f("1:0:2:0:0:3:0:4"), "1:0:2::3:0:4");
        // The no-formatter path writes the same text.
        for a in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "10.0.200.7",
            "::1",
        ] {
            let mut out = Vec::new();
            NgxIp(a.parse().expect("address")).append_to(&mut out);
            assert_eq!(out, f(a).as_bytes(), "{a}");
        }
    }
}
