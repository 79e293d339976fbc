//! The built, immutable configuration a request reads. Published through an
//! `ArcSwap`; a request holds the `Arc` it started with, so a reload never
//! changes a request in flight.

pub mod build;
pub mod carry;
pub mod filter;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::conf::model::{MainConf, NextUpstream};
use crate::http::access::AccessLogs;
use crate::http::allow::Rules;
use crate::http::realip::RealIp;
use crate::upstream::Upstream;
use crate::vars::Template;

pub struct Runtime {
    /// The `map` variables, which every request's variables read.
    pub maps: Box<[crate::map::Map]>,
    /// Filter modules' objects (rate limiting), one per module.
    pub filters: Vec<Arc<filter::Filter>>,
    pub main: MainConf,
    pub upstreams: Vec<Arc<Upstream>>,
    pub listens: Vec<ListenGroup>,
    /// Every file of the configuration, for `-T`.
    pub files: Vec<(std::path::PathBuf, String)>,
    /// `limit_conn_zone`s' counts, which a reload keeps by name and size.
    pub limit_conn_zones: Vec<Arc<crate::http::limit_conn::ZoneState>>,
    /// `proxy_cache_path` zones, which a reload keeps by name and size.
    pub cache_zones: Vec<Arc<crate::cache::Zone>>,
}

/// The servers sharing one listening address, and how a Host picks one.
pub struct ListenGroup {
    pub addr: SocketAddr,
    pub backlog: i32,
    /// `listen`'s socket options.
    pub sockopts: crate::conf::model::SocketOpts,
    pub servers: Vec<Arc<Server>>,
    pub default: usize,
    /// `listen ... ssl`: the handshake's config for each server.
    pub tls: Option<Arc<tls::TlsListen>>,
    /// `listen ... http2`, for every server of the address.
    pub http2: bool,
    /// `listen ... proxy_protocol`: a connection starts with the PROXY
    /// protocol header.
    pub proxy_protocol: bool,
    exact: HashMap<String, usize>,
    /// `*.example.com` and `.example.com` as (suffix with leading dot,
    /// server, whether the bare name matches too: the `.` form).
    leading: Vec<(String, usize, bool)>,
    /// `www.example.*` as (prefix with trailing dot, server).
    trailing: Vec<(String, usize)>,
    /// `~REGEX` names, in the order written, their servers and their
    /// named groups' variables.
    regexes: Vec<(crate::pattern::Regex, usize, crate::vars::GroupVars)>,
}

/// A regex server name's match and its named groups' variables.
pub type ServerGroups<'g, 'h> = (crate::pattern::Captures<'h>, &'g [(u8, u32)]);

impl ListenGroup {
    /// nginx's order: exact name, longest leading wildcard, longest
    /// trailing wildcard, the first regex that matches, then the default
    /// server.
    pub fn server(&self, host: Option<&str>) -> &Arc<Server> {
        &self.servers[self.server_index(host)]
    }

    /// Whether a connection speaks HTTP/2 to server `index`: `http2 on`
    /// there, or `listen ... http2`.
    pub fn http2(&self, index: usize) -> bool {
        self.http2 || self.servers[index].http2
    }

    /// The server for a request's host, and, where a `~REGEX` name chose
    /// it, the regex's groups (`$1`..`$9` unless a regex location sets
    /// them).
    pub fn server_match<'h>(
        &self,
        host: Option<&'h [u8]>,
    ) -> (usize, Option<ServerGroups<'_, 'h>>) {
        let text = host.and_then(|h| std::str::from_utf8(h).ok());
        let index = self.named(text);
        if let (None, Some(h)) = (index, host) {
            for (re, i, named) in &self.regexes {
                if let Some(groups) = re.captures(h) {
                    return (*i, Some((groups, &named[..])));
                }
            }
        }
        (index.unwrap_or(self.default), None)
    }

    /// Whether a request to any server of the address may need its host
    /// matched: more than one server, or a regex name.
    pub fn by_host(&self) -> bool {
        self.servers.len() > 1 || !self.regexes.is_empty()
    }

    /// [`ListenGroup::server`] as an index into `servers` (SNI picks a
    /// certificate with it).
    pub fn server_index(&self, host: Option<&str>) -> usize {
        match self.named(host) {
            Some(i) => i,
            None => host
                .and_then(|h| {
                    self.regexes
                        .iter()
                        .find(|(re, ..)| re.is_match(h.as_bytes()))
                })
                .map_or(self.default, |&(_, i, _)| i),
        }
    }

    /// nginx's order without the regexes: exact name, longest leading
    /// wildcard, longest trailing wildcard.
    fn named(&self, host: Option<&str>) -> Option<usize> {
        host.and_then(|h| {
            self.exact
                .get(h)
                .copied()
                .or_else(|| {
                    self.leading
                        .iter()
                        .filter(|(s, _, bare)| h.ends_with(s.as_str()) || (*bare && h == &s[1..]))
                        .max_by_key(|(s, _, _)| s.len())
                        .map(|&(_, i, _)| i)
                })
                .or_else(|| {
                    self.trailing
                        .iter()
                        .filter(|(p, _)| h.starts_with(p.as_str()))
                        .max_by_key(|(p, _)| p.len())
                        .map(|&(_, i)| i)
                })
        })
    }
}

pub struct Server {
    /// The first `server_name`, for `$server_name` and log lines.
    pub name: std::sync::Arc<str>,
    pub ret: Option<Reply>,
    /// realip with the server's settings, applied before anything else.
    pub realip: Option<RealIp>,
    /// `allow`/`deny` for requests no location takes.
    pub access: Rules,
    /// `limit_conn` for requests no location takes.
    pub limit_conn: Option<Arc<crate::http::limit_conn::Limits>>,
    /// Filter modules (`limit_req`) for requests no location takes.
    pub filters: Box<[FilterRun]>,
    /// `auth_basic` and `satisfy any` for requests no location takes.
    pub auth_basic: Option<Arc<crate::http::auth_basic::AuthBasic>>,
    pub satisfy_any: bool,
    /// `auth_request` for requests no location takes.
    pub auth_request: Option<Arc<crate::http::auth_request::AuthRequest>>,
    /// `mirror` for requests no location takes.
    pub mirror: Option<Arc<crate::http::mirror::Mirror>>,
    /// `merge_slashes` (the default server's applies to an address).
    pub merge_slashes: bool,
    /// The header filters of what the server level answers.
    pub outbound: crate::http::outbound::Outbound,
    pub locations: Locations,
    /// The static modules' settings for requests no location takes.
    pub statics: crate::http::static_files::Static,
    /// The server's `rewrite` lines (with its `return`s), run before a
    /// location is found.
    pub script: Option<Box<crate::http::rewrite::Script>>,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    pub keepalive_time: Duration,
    /// The server level's client limits (the head's timeout; the others
    /// for what no location takes).
    pub client: crate::conf::model::ClientLimits,
    /// The server level's access logs, for what no location answers.
    pub access_log: Option<Arc<crate::http::access::AccessLogs>>,
    /// `http2 on`
    pub http2: bool,
    /// `error_page` at the server level: for a server-level `return` and
    /// what no location takes.
    pub error_pages: Option<Box<ErrorPages>>,
}

/// A level's `error_page` lines, made at load; `None` where it has none.
pub struct ErrorPages {
    pub pages: Box<[ErrorPage]>,
    /// `recursive_error_pages on`
    pub recursive: bool,
}

impl ErrorPages {
    /// The first line for `status`, as nginx looks them up.
    pub fn find(&self, status: u16) -> Option<&ErrorPage> {
        self.pages.iter().find(|p| p.status == status)
    }
}

pub struct ErrorPage {
    pub status: u16,
    /// `=CODE`; `Some(0)`: `=` alone, the target's own status.
    pub overwrite: Option<u16>,
    pub target: ErrorTarget,
}

pub enum ErrorTarget {
    /// An internal redirect to this path and query.
    Uri(http::uri::PathAndQuery),
    /// `@name`
    Named(Box<str>),
    /// Anything else: a redirect with this Location.
    Redirect(HeaderValue),
}

/// Locations of a server: exact matches, prefixes longest first, and
/// regex locations by the level they are written at.
pub struct Locations {
    pub(crate) exact: HashMap<String, usize>,
    pub(crate) prefixes: Vec<(String, usize)>,
    /// The regex locations written at the server level, in order.
    pub(crate) regexes: Box<[usize]>,
    /// Whether the server has regex locations at all.
    pub(crate) any_regex: bool,
    /// `location @name`s, the first of a name written first.
    pub(crate) named: Box<[(Box<str>, usize)]>,
    pub list: Vec<Location>,
}

/// A location found for a request, and the groups of the regex that chose
/// it (`$1`..`$9` for the request).
pub type Found<'a, 'u> = (&'a Location, Option<crate::pattern::Captures<'u>>);

impl Locations {
    /// The location for a normalized URI (`$uri`), as nginx's
    /// `ngx_http_core_find_location`: an exact match; else the regex
    /// locations (see `find_regex`); else the longest prefix.
    pub fn find<'u>(&self, uri: &'u [u8]) -> Option<Found<'_, 'u>> {
        if let Some(&i) = std::str::from_utf8(uri)
            .ok()
            .and_then(|u| self.exact.get(u))
        {
            return Some((&self.list[i], None));
        }
        let prefix = self
            .prefixes
            .iter()
            .find(|(p, _)| uri.starts_with(p.as_bytes()))
            .map(|&(_, i)| i);
        if self.any_regex {
            if let Some(found) = self.find_regex(uri, prefix) {
                return Some(found);
            }
        }
        prefix.map(|i| (&self.list[i], None))
    }

    /// The matches of the regex locations with named groups that
    /// `location` is nested in, nearest first, with their groups'
    /// variables: a nested regex location is tried only once they matched
    /// `uri`, and nginx set their named groups then. Out of line: few
    /// configurations nest regex locations.
    #[inline(never)]
    pub fn outer_groups<'s, 'u>(
        &'s self,
        location: &Location,
        uri: &'u [u8],
    ) -> Vec<(crate::pattern::Captures<'u>, &'s [(u8, u32)])> {
        location
            .outer_named
            .iter()
            .filter_map(|&i| {
                let outer = &self.list[i];
                let groups = outer.regex.as_ref()?.captures(uri)?;
                Some((groups, &outer.named[..]))
            })
            .collect()
    }

    /// The named location `name` (`@...`).
    pub fn named(&self, name: &str) -> Option<&Location> {
        self.named
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|&(_, i)| &self.list[i])
    }

    /// The regex locations nginx tries after the longest prefix: those
    /// nested in it first, then those of each level out to the server's,
    /// in the order written; a `^~` prefix keeps the level above it from
    /// being tried. Out of line: most servers have none.
    #[inline(never)]
    fn find_regex<'u>(&self, uri: &'u [u8], prefix: Option<usize>) -> Option<Found<'_, 'u>> {
        let mut level = prefix;
        let mut skip = false;
        loop {
            let list = match level {
                Some(i) => &self.list[i].regexes[..],
                None => &self.regexes[..],
            };
            if !skip {
                if let Some(found) = self.first_regex(list, uri) {
                    return Some(found);
                }
            }
            let i = level?;
            skip = self.list[i].noregex;
            level = self.list[i].parent;
        }
    }

    /// The first of `list` whose regex matches, or the first of its own
    /// nested regex locations that does.
    fn first_regex<'u>(&self, list: &[usize], uri: &'u [u8]) -> Option<Found<'_, 'u>> {
        for &i in list {
            let location = &self.list[i];
            let Some(groups) = location.regex.as_ref().and_then(|re| re.captures(uri)) else {
                continue;
            };
            // The groups are the last match's, even one without groups
            // (`$1` is then empty, as nginx's after a nested regex).
            return Some(
                self.first_regex(&location.regexes, uri)
                    .unwrap_or((location, Some(groups))),
            );
        }
        None
    }
}

impl Location {
    /// The `allow`/`deny` rules for a request with `method`: the
    /// location's, or `limit_except`'s for a method it does not list.
    #[inline(always)]
    pub fn access_for(&self, method: &http::Method) -> &Rules {
        self.limited(method).map_or(&self.access, |le| &le.access)
    }

    /// `limit_except`, where it takes a request with `method`. (Inlined
    /// to a test of the box on the plain path, which these accessors
    /// take a few times per request; the method's check out of line.)
    #[inline(always)]
    fn limited(&self, method: &http::Method) -> Option<&LimitExcept> {
        match &self.limit_except {
            None => None,
            Some(le) => le.takes(method),
        }
    }

    /// The location's rewrite lines for a request with `method`: none
    /// for a method `limit_except` takes (nginx's rewrite module does not
    /// pass a location's lines to the block's configuration).
    #[inline(always)]
    pub fn script_for(&self, method: &http::Method) -> Option<&crate::http::rewrite::Script> {
        match self.limited(method) {
            Some(_) => None,
            None => self.script.as_deref(),
        }
    }

    /// The handler of a request with `method`: for a method
    /// `limit_except` takes, the block's (see [`LimitExcept::action`]),
    /// else the location's.
    #[inline(always)]
    pub fn action_for(&self, method: &http::Method) -> &Action {
        self.limited(method)
            .and_then(|le| le.action.as_ref())
            .unwrap_or(&self.action)
    }

    /// The static settings of a request with `method`: without the
    /// location's `try_files` for a method `limit_except` takes.
    #[inline(always)]
    pub fn statics_for(&self, method: &http::Method) -> &crate::http::static_files::Static {
        self.limited(method)
            .and_then(|le| le.statics.as_ref())
            .unwrap_or(&self.statics)
    }

    /// The access logs of a request with `method` at this level:
    /// `limit_except`'s for a method it does not list, else the
    /// location's.
    #[inline(always)]
    pub fn logs_for(&self, method: &http::Method) -> Option<&Arc<crate::http::access::AccessLogs>> {
        match self.limited(method).and_then(|le| le.access_log.as_ref()) {
            Some(logs) => logs.as_ref(),
            None => self.access_log.as_ref(),
        }
    }

    /// The access logs of a request answered here: those of a location
    /// `if` that held (`None` for `off`), else [`Location::logs_for`].
    pub fn access_log_for<'a>(
        &'a self,
        parts: &'a http::request::Parts,
    ) -> Option<&'a Arc<crate::http::access::AccessLogs>> {
        let own = self.logs_for(&parts.method);
        match self.script {
            Some(_) => parts
                .extensions
                .get::<crate::http::rewrite::IfAccessLog>()
                .map_or(own, |l| l.0.as_ref()),
            None => own,
        }
    }

    /// `auth_basic` for a request with `method`: the location's, or
    /// `limit_except`'s for a method it does not list.
    pub fn auth_basic_for(
        &self,
        method: &http::Method,
    ) -> Option<&Arc<crate::http::auth_basic::AuthBasic>> {
        match self.limited(method) {
            Some(le) => le.auth_basic.as_ref(),
            None => self.auth_basic.as_ref(),
        }
    }
}

/// A location's `limit_except`.
pub struct LimitExcept {
    /// The methods it lets through with the location's settings.
    pub methods: Box<[http::Method]>,
    pub access: Rules,
    pub auth_basic: Option<Arc<crate::http::auth_basic::AuthBasic>>,
    /// The handler of the other methods: the block's `proxy_pass`, else
    /// the location's (`None`: nginx's proxy module gives the block the
    /// location's upstream), else the static module (no other handler,
    /// `return` included, reaches the block).
    pub action: Option<Action>,
    /// Its `access_log` lines (`None` inside for `off`).
    pub access_log: Option<Option<Arc<AccessLogs>>>,
    /// The location's static settings without its `try_files`, where it
    /// has one (nginx does not pass it to the block).
    pub statics: Option<crate::http::static_files::Static>,
}

impl LimitExcept {
    /// Itself, where it takes a request with `method` (one it does not
    /// list).
    #[inline(never)]
    fn takes(&self, method: &http::Method) -> Option<&LimitExcept> {
        (!self.methods.contains(method)).then_some(self)
    }
}

pub struct Location {
    pub prefix: String,
    /// `~`/`~*`: the pattern, matched against `$uri`.
    pub regex: Option<crate::pattern::Regex>,
    /// Filter modules (`limit_req`) in effect here, for an answer that is
    /// not proxied (a proxied one runs its `Proxy`'s, the upstream's too).
    pub filters: Box<[FilterRun]>,
    /// The regex's named groups and the variables they set, where a
    /// rewrite made the request find this location
    /// ([`crate::vars::UserVars::set_groups`]).
    pub named: crate::vars::GroupVars,
    /// The regex locations written inside this one, in order.
    pub regexes: Box<[usize]>,
    /// The regex locations with named groups this one is nested in,
    /// nearest first (see [`Locations::outer_groups`]).
    pub outer_named: Box<[usize]>,
    /// `^~`
    pub noregex: bool,
    /// The enclosing location, by index in [`Locations::list`].
    pub parent: Option<usize>,
    pub action: Action,
    /// The location's logs, each written once per request, in order;
    /// `None` with `access_log off`.
    pub access_log: Option<Arc<AccessLogs>>,
    /// realip with the location's settings, for requests the server's
    /// settings left alone (nginx's pre-access phase: proxied ones).
    pub realip: Option<RealIp>,
    /// `allow`/`deny`, checked after a `return` and the filter modules.
    pub access: Rules,
    /// `limit_except`: requests with a method it does not list are
    /// checked against its rules and `auth_basic`.
    pub limit_except: Option<Box<LimitExcept>>,
    /// `limit_conn`, checked after a `return` and the filter modules,
    /// before `allow`/`deny`.
    pub limit_conn: Option<Arc<crate::http::limit_conn::Limits>>,
    /// `auth_basic`, checked after `allow`/`deny` as `satisfy` says.
    pub auth_basic: Option<Arc<crate::http::auth_basic::AuthBasic>>,
    pub satisfy_any: bool,
    /// `auth_request`, last of the access phase.
    pub auth_request: Option<Arc<crate::http::auth_request::AuthRequest>>,
    /// `mirror`, once the access phase let the request in.
    pub mirror: Option<Arc<crate::http::mirror::Mirror>>,
    /// The header filters of the location's answers.
    pub outbound: crate::http::outbound::Outbound,
    /// Its `add_header` lines (or its `if` blocks') read what the
    /// upstream answered: a proxied request keeps it for them.
    pub upstream_vars: bool,
    /// `client_max_body_size`, `client_body_timeout`, `send_timeout` here.
    pub client: crate::conf::model::ClientLimits,
    pub error_pages: Option<Box<ErrorPages>>,
    /// `internal`: a client's request that ends here gets 404.
    pub internal: bool,
    /// The location's `rewrite` lines (with its `return`s), run before
    /// its action.
    pub script: Option<Box<crate::http::rewrite::Script>>,
    /// Its root (or alias), for `$document_root` and `$request_filename`.
    pub statics: crate::http::static_files::Static,
}

pub enum Action {
    Proxy(Proxy),
    Reply(Reply),
    /// `metrics;`
    Metrics,
    /// `status;`
    Status,
    /// `stub_status;`
    StubStatus,
    /// `empty_gif`.
    EmptyGif,
    /// Files: nginx's static, index and try_files modules, with the
    /// location's settings (`Location::statics`).
    Static,
    /// `internal`: a client's request gets 404; an internal redirect's
    /// gets the location's own action.
    Internal(Box<Action>),
}

/// A `return`: the status, and the text (a template) that is the body, or
/// for a redirect the Location.
pub struct Reply {
    pub status: u16,
    pub text: Option<ReplyText>,
    /// 301, 302, 303, 307, 308: the text is the Location and the body
    /// nginx's page for the status.
    pub redirect: bool,
    /// The level's `types` and `default_type`, for a text body.
    pub types: crate::http::response::ReplyTypes,
    /// How a Location that is a path is made absolute.
    pub style: crate::conf::model::RedirectStyle,
}

/// A `return` text: fixed at config load, or evaluated per request.
pub enum ReplyText {
    Fixed(Bytes),
    Template(Template),
}

/// A `proxy_set_header` value: fixed at config load when it has no
/// variable (`None`: the header is removed), else evaluated per request.
pub enum HeaderSource {
    Fixed(Option<HeaderValue>),
    Template(Template),
}

/// One `add_header`, its value compiled.
pub struct AddHeader {
    pub name: HeaderName,
    /// The name as the config spelled it, where the writer's spelling of
    /// the lowercase name would differ (`X-XSS-Protection`).
    pub spelled: Option<std::sync::Arc<str>>,
    pub value: HeaderSource,
    /// Added whatever the status (`always`).
    pub always: bool,
}

/// A header set on the upstream request (`proxy_set_header`, or nginx's
/// default `Host` and `Connection`).
pub struct SetHeader {
    pub name: HeaderName,
    /// The name as the config spelled it, which is how nginx sends it.
    pub spelled: Box<str>,
    pub source: HeaderSource,
}

/// A filter a proxied request runs: the filter, the scope its `check`
/// expects, and its index in `Runtime::filters` (for its log variable).
pub struct FilterRun {
    pub filter: Arc<filter::Filter>,
    pub scope: u32,
    pub index: usize,
}

/// A request's tries: the upstream's, at most `proxy_next_upstream_tries`
/// (0: no limit).
pub fn capped_tries(tries: u32, cap: u32) -> u32 {
    match cap {
        0 => tries,
        cap => tries.min(cap),
    }
}

impl Proxy {
    /// `$proxy_host` and `$proxy_port` of a `proxy_pass` without variables.
    pub fn name(&self) -> crate::vars::ProxyName<'_> {
        crate::vars::ProxyName::new(&self.host, &self.port)
    }
}

pub struct Proxy {
    /// Filters to run before the balancer, in order.
    pub filters: Vec<FilterRun>,
    /// `None` with variables in `proxy_pass` (`dynamic`).
    pub upstream: Option<Arc<Upstream>>,
    /// `proxy_pass` with variables: each request's value names the
    /// upstream.
    pub dynamic: Option<Box<crate::upstream::dynamic::DynamicPass>>,
    /// `proxy_next_upstream_tries`, for an upstream `dynamic` names.
    pub tries_cap: u32,
    /// `$proxy_host`
    pub host: String,
    /// `$proxy_port`
    pub port: String,
    /// `proxy_pass http://u/uri`: the matched prefix is replaced by `uri`.
    pub uri: Option<String>,
    /// Headers set on the upstream request, in nginx's order (the
    /// configured ones, then the defaults not configured); an empty value
    /// removes one.
    pub headers: Vec<SetHeader>,
    pub http11: bool,
    pub next_upstream: NextUpstream,
    pub tries: u32,
    pub next_upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    /// `proxy_pass https://`: how connections to the upstream do TLS.
    pub tls: Option<ProxyTls>,
    /// `proxy_redirect`, in order; empty for `off`.
    pub redirects: Box<[Rewrite]>,
    /// `proxy_cookie_domain` and `proxy_cookie_path`; `None` without.
    pub cookies: Option<Box<crate::http::cookie::CookieRules>>,
    /// How `proxy_redirect` makes a rewritten Location absolute.
    pub style: crate::conf::model::RedirectStyle,
    /// `proxy_hide_header` and `proxy_pass_header`; `None` with neither.
    pub header_rules: Option<Box<crate::http::upstream_h1::HeaderRules>>,
    /// `proxy_method`, `proxy_pass_request_headers`,
    /// `proxy_pass_request_body`, `proxy_set_body`; `None` when all are
    /// nginx's defaults (the request as it came).
    pub shape: Option<Box<RequestShape>>,
    /// `proxy_intercept_errors on` where the location has `error_page`s:
    /// an upstream answer with a status they list is replaced.
    pub intercept: bool,
    /// `proxy_ignore_client_abort on`.
    pub ignore_client_abort: bool,
    /// `proxy_buffering`: only how a failed read is logged
    /// ([`crate::http::upstream_log`]); bodies stream either way.
    pub buffering: bool,
    /// `proxy_bind` and `proxy_socket_keepalive`: how upstream sockets
    /// are made; `None` as the system makes them.
    pub socket: Option<Box<SocketSettings>>,
    /// `proxy_cache`; `None`: off.
    pub cache: Option<Box<crate::http::cache::Cache>>,
    /// `fastcgi_pass`: the request goes as FastCGI records.
    pub fastcgi: Option<Box<crate::http::fastcgi::FastCgi>>,
}

/// `proxy_bind` and `proxy_socket_keepalive`.
pub struct SocketSettings {
    /// The local address: fixed, or a template evaluated per request;
    /// `None` without `proxy_bind`.
    pub bind: Option<Bind>,
    pub transparent: bool,
    pub keepalive: bool,
}

pub enum Bind {
    /// The address and its text as written (nginx's log names it so).
    Fixed(std::net::SocketAddr, Box<str>),
    Template(crate::vars::Template),
}

/// How the upstream request differs from the client's.
pub struct RequestShape {
    /// `proxy_method`
    pub method: Option<Template>,
    /// `proxy_pass_request_headers off`: only the proxy's own headers.
    pub headers: bool,
    /// `proxy_pass_request_body off`: no body.
    pub body: bool,
    /// `proxy_set_body`: this body instead of the client's.
    pub set_body: Option<Template>,
}

/// One `proxy_redirect`, as nginx's three handlers: an upstream's
/// Location (or Refresh URL) that starts with the pattern gets the
/// replacement in its place; a regex that finds a match there replaces
/// the whole value, its groups `$1`... in the replacement.
pub enum Rewrite {
    /// Without variables: the usual case, nothing evaluated.
    Plain {
        from: Box<[u8]>,
        to: Box<[u8]>,
    },
    Complex {
        from: Template,
        to: Template,
    },
    /// `~` (`~*` without case).
    Regex {
        re: crate::pattern::Regex,
        to: Template,
    },
}

impl Rewrite {
    /// What replaces the start of `value` (the length it takes, the new
    /// bytes), if the rule applies.
    pub fn apply(&self, value: &[u8], vars: &crate::vars::VarCtx<'_>) -> Option<(usize, Vec<u8>)> {
        match self {
            Rewrite::Plain { from, to } => {
                value.starts_with(from).then(|| (from.len(), to.to_vec()))
            }
            Rewrite::Complex { from, to } => {
                let from = from.eval(vars);
                value
                    .starts_with(&from)
                    .then(|| (from.len(), to.eval(vars)))
            }
            Rewrite::Regex { re, to } => {
                let caps = re.captures(value)?;
                let vars = crate::vars::VarCtx {
                    captures: Some(&caps),
                    ..*vars
                };
                Some((value.len(), to.eval(&vars)))
            }
        }
    }
}

/// The TLS side of an `https://` proxy_pass.
pub struct ProxyTls {
    /// The client configuration, shared by locations with the same
    /// `proxy_ssl_verify`, trusted certificates and `proxy_ssl_server_name`.
    pub client: Arc<crate::upstream::tls::TlsClient>,
    /// The name sent (SNI) and checked: `proxy_ssl_name`, else the
    /// upstream's host; without a port, as nginx uses it.
    pub name: TlsName,
}

pub enum TlsName {
    Fixed(Arc<str>),
    /// `proxy_ssl_name` with variables, evaluated per request.
    Template(Template),
}
