//! The in-order pass over the syntax tree: checks every directive against
//! the directive table (the core's and the modules'), validates its values
//! and builds the [`Config`] model.
//!
//! nginx checks each directive as soon as it is read, so the first error in
//! file order wins, whether it is a syntax error or a bad value. This pass
//! walks the tree in that same order and only reports the parser's syntax
//! error once everything before it has been checked. Checks nginx makes at
//! the end of a block (an upstream without servers) happen at that block's
//! `}`, and those it makes at the end of `http` (implicit upstreams resolved,
//! duplicate locations) at the end of `http`, as in nginx.
//!
//! A few checks nginx makes only after printing "syntax is ok" (its
//! `init_conf` handlers and shared memory) are kept apart in
//! [`Checked::post_check`], so that `-t` prints its lines in nginx's order.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use waypost_module_api::ServerParams;

use crate::conf::directives::{lookup, Ctx, Lookup, Spec};
use crate::conf::model::*;
use crate::conf::syntax::{self, Directive, Loc};
use crate::conf::values::{parse_number, parse_offset, parse_size, parse_time, parse_time_sec};
use crate::conf::ConfError;
use crate::http::access;
use crate::http::allow::{self, Rule, Rules};
use crate::http::head::HeaderNames;
use crate::http::realip::{self, Cidr, RealIp, Source};
use crate::log::access::Buffering;
use crate::log::Level;
use crate::modules::loader::{LoadedModule, Loader};
use crate::upstream::addr::PeerAddr;
use crate::vars::{CompileError, Template, Var};

/// What the interpreter needs from outside: where relative paths start,
/// where shipped modules live, and the module loader.
pub struct Env<'a> {
    pub prefix: &'a Path,
    pub modules_dir: &'a Path,
    pub loader: &'a Loader,
    /// `-g` directives, read before the file as nginx does.
    pub globals: Option<&'a str>,
}

/// A configuration that passed the parse phase (everything nginx checks
/// before it prints "syntax is ok"), with the checks still to come.
pub struct Checked {
    config: Config,
    post: PostChecks,
}

/// What nginx checks after parsing, in its order.
struct PostChecks {
    /// Whether an `events` block was seen.
    events: bool,
    /// How many listening sockets nginx would open.
    listening: usize,
    /// Shared memory zones by name, with their sizes (0: no size given).
    zones: Vec<(String, u64)>,
}

impl Checked {
    /// nginx's checks after "syntax is ok": the core modules' `init_conf`
    /// (the events section and the connection count), then the shared
    /// memory zones. These errors have no file and line.
    pub fn post_check(&self) -> Result<(), ConfError> {
        if !self.post.events {
            return Err(ConfError::bare(
                "no \"events\" section in configuration".to_owned(),
            ));
        }
        let connections = self.config.main.worker_connections;
        if connections < self.post.listening + 1 {
            // One connection per listening socket, plus nginx's channel.
            return Err(ConfError::bare(format!(
                "{connections} worker_connections are not enough for {} listening sockets",
                self.post.listening
            )));
        }
        if let Some((name, _)) = self.post.zones.iter().find(|(_, size)| *size == 0) {
            return Err(ConfError::bare(format!(
                "zero size shared memory zone \"{name}\""
            )));
        }
        Ok(())
    }

    /// The configuration, whether or not [`Self::post_check`] passed.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// [`Self::post_check`], then the configuration.
    pub fn init(self) -> Result<Config, ConfError> {
        self.post_check()?;
        Ok(self.config)
    }
}

/// Reads and checks the configuration at `path`: [`parse`], then
/// [`Checked::init`].
pub fn load(path: &Path, env: &Env<'_>) -> Result<Config, ConfError> {
    parse(path, env)?.init()
}

/// The parse phase: `-g` directives, then the file and its includes, each
/// directive checked in file order.
pub fn parse(path: &Path, env: &Env<'_>) -> Result<Checked, ConfError> {
    interpret(env, path, || syntax::parse_file(path))
}

/// [`parse`] of `contents` as the main file `path`, which is not read
/// (relative includes are looked for in its directory). For the fuzz
/// targets (`crate::fuzzing`), which check configurations that are no
/// file.
#[doc(hidden)]
pub fn parse_contents(path: &Path, contents: &[u8], env: &Env<'_>) -> Result<Checked, ConfError> {
    interpret(env, path, || {
        syntax::parse_contents(path, contents.to_vec())
    })
}

/// The parse phase on the main file that `read` parses.
fn interpret(
    env: &Env<'_>,
    main: &Path,
    read: impl FnOnce() -> syntax::Parsed,
) -> Result<Checked, ConfError> {
    let mut interp = Interp::new(env);
    interp.conf_dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(globals) = env.globals {
        let parsed = syntax::parse_str(globals, "command line");
        interp.main_block(&parsed.items)?;
        if let Some(e) = parsed.error {
            return Err(ConfError::at(e.message, e.loc));
        }
    }
    let parsed = read();
    if let Some(dir) = parsed.files.first().and_then(|(p, _)| p.parent()) {
        interp.conf_dir = dir.to_path_buf();
    }
    interp.main_block(&parsed.items)?;
    if let Some(e) = parsed.error {
        if e.loc.line == 0 {
            return Err(ConfError::bare(e.message));
        }
        return Err(ConfError::at(e.message, e.loc));
    }
    // The modules directory is read when a directive is not the core's, or
    // here for the default balancer of the upstreams, and of those a
    // `proxy_pass` with variables makes.
    if !interp.http.upstreams.is_empty() || interp.dynamic_passes {
        interp.scan_modules();
    }
    let post = PostChecks {
        events: interp.seen_events,
        listening: interp.listening_sockets(),
        zones: interp
            .zones
            .into_iter()
            .map(|(n, size, _)| (n, size))
            .collect(),
    };
    Ok(Checked {
        config: Config {
            main: interp.main,
            http: interp.http,
            files: parsed.files,
            modules: interp.modules,
        },
        post,
    })
}

/// Settings inherited from http to server to location. Each level keeps
/// what it sets itself; nginx merges them once `http` is complete, so a
/// directive after a nested block still applies to it.
#[derive(Clone, Default)]
struct Layer {
    /// Filter modules' directives at this level.
    filters: Vec<ModuleDirective>,
    set_headers: Option<Vec<(String, String)>>,
    http11: Option<bool>,
    /// `add_header` lines: a level that has any replaces its parent's.
    add_headers: Option<Vec<AddHeader>>,
    /// `proxy_redirect` lines: a level that has any replaces its parent's;
    /// `off` is the only one at its level.
    redirects: Option<(bool, Vec<Redirect>)>,
    next_upstream: Option<NextUpstream>,
    tries: Option<u32>,
    next_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    ssl_verify: Option<bool>,
    /// `proxy_ssl_trusted_certificate`, from the configuration's directory.
    ssl_trusted: Option<PathBuf>,
    /// `proxy_ssl_crl`, from the configuration's directory.
    proxy_ssl_crl: Option<PathBuf>,
    ssl_server_name: Option<bool>,
    ssl_name: Option<String>,
    /// `proxy_ssl_certificate` (as written, resolved) and its key.
    proxy_ssl_cert: Option<(String, PathBuf, Loc)>,
    proxy_ssl_key: Option<(PathBuf, Loc)>,
    /// `proxy_ssl_password_file`: its passwords, read where the line is.
    proxy_ssl_passwords: Option<Arc<[Vec<u8>]>>,
    proxy_ssl_protocols: Option<u32>,
    /// `proxy_ssl_ciphers`, as written, with where.
    proxy_ssl_ciphers: Option<(String, Loc)>,
    proxy_ssl_session_reuse: Option<bool>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u64>,
    keepalive_time: Option<Duration>,
    /// `client_max_body_size`; 0 disables the check.
    max_body: Option<u64>,
    header_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    /// `send_timeout` (to the client; `send_timeout` above is the proxy's).
    client_send_timeout: Option<Duration>,
    header_buffers: Option<HeaderBuffers>,
    underscores: Option<bool>,
    ignore_invalid: Option<bool>,
    /// `access_log`: `Some` at a level with any, which replaces the
    /// parent's whole list (nginx's merge).
    access_log: Option<AccessLogs>,
    /// `set_real_ip_from`: a level that sets any replaces its parent's.
    realip_from: Option<Vec<Cidr>>,
    realip_source: Option<Source>,
    realip_recursive: Option<bool>,
    /// `allow` and `deny`, in order: a level that has any replaces its
    /// parent's.
    access: Option<Vec<Rule>>,
    /// `limit_conn` lines (zone, number): a level that has any replaces
    /// its parent's.
    limit_conn: Option<Vec<(String, u16)>>,
    limit_conn_status: Option<u16>,
    limit_conn_level: Option<Level>,
    limit_conn_dry_run: Option<bool>,
    /// `auth_basic`, `auth_basic_user_file` (resolved) and `satisfy any`,
    /// each inherited on its own.
    auth_realm: Option<String>,
    /// `proxy_method`, `proxy_set_body`, `proxy_pass_request_headers`,
    /// `proxy_pass_request_body`.
    proxy_method: Option<String>,
    proxy_set_body: Option<String>,
    pass_request_headers: Option<bool>,
    pass_request_body: Option<bool>,
    /// `proxy_bind` (`Some(None)`: `off`), `proxy_socket_keepalive`.
    proxy_bind: Option<Option<(String, bool)>>,
    proxy_socket_keepalive: Option<bool>,
    proxy_ignore_client_abort: Option<bool>,
    proxy_buffering: Option<bool>,
    /// `resolver` and `resolver_timeout`.
    resolver: Option<ResolverConf>,
    resolver_timeout: Option<Duration>,
    auth_file: Option<PathBuf>,
    satisfy_any: Option<bool>,
    /// `auth_request URI` (`Some(None)`: `off`), with where.
    auth_request: Option<Option<(String, Loc)>>,
    /// `auth_request_set` lines (variable index, value): a level that has
    /// any replaces its parent's.
    auth_request_set: Option<Vec<(u32, String)>>,
    /// `mirror` lines (`Some(None)`: `off`): a level that has any
    /// replaces its parent's; `mirror_request_body`.
    mirror: Option<Option<Vec<String>>>,
    mirror_request_body: Option<bool>,
    /// `ssl_certificate` lines (as written, resolved, where): a level
    /// that has any replaces its parent's, and so for the keys.
    ssl_certificates: Option<Vec<(String, PathBuf, Loc)>>,
    ssl_keys: Option<Vec<(PathBuf, Loc)>>,
    /// `ssl_protocols`, as nginx's bitmask (repeated lines add up).
    ssl_protocols: Option<u32>,
    ssl_session_timeout: Option<Duration>,
    ssl_prefer_server: Option<bool>,
    /// `ssl_ciphers`, as written, with where.
    ssl_ciphers: Option<(String, Loc)>,
    /// `ssl_session_cache`: the sessions kept (0: none), and the shared
    /// zone's name.
    ssl_session_cache: Option<(usize, Option<String>)>,
    ssl_session_tickets: Option<bool>,
    ssl_dhparam: Option<(PathBuf, Loc)>,
    /// `ssl_password_file`: its passwords, read where the line is.
    ssl_passwords: Option<Arc<[Vec<u8>]>>,
    /// `ssl_ecdh_curve`, as written.
    ssl_ecdh_curve: Option<String>,
    ssl_reject_handshake: Option<bool>,
    /// `ssl_verify_client` and `ssl_client_certificate`.
    ssl_verify_client: Option<VerifyClient>,
    ssl_client_certificate: Option<PathBuf>,
    ssl_verify_depth: Option<u32>,
    /// `ssl_crl`, from the configuration's directory.
    ssl_crl: Option<PathBuf>,
    /// `ssl_stapling on`, and `ssl_trusted_certificate` (read to check it,
    /// as nginx loads it; a client's certificate is checked against it).
    ssl_stapling: Option<bool>,
    ssl_trusted_certificate: Option<PathBuf>,
    /// `ssl_stapling_file`: read and checked as nginx loads it.
    ssl_stapling_file: Option<PathBuf>,
    /// The proxy buffer sizes nginx checks against each other when it
    /// merges the levels (waypost has no such buffers).
    buffers: ProxyBuffers,
    gzip: GzipLayer,
    /// `proxy_cache` and its settings.
    cache: crate::conf::cache::CacheLayer,
    /// `types {}` lines (every block of the level, in order; a later
    /// extension replaces an earlier one) and `default_type`.
    types: Option<Arc<HashMap<String, String>>>,
    default_type: Option<String>,
    /// `expires` (`Some(None)`: off).
    expires: Option<Option<ExpiresConf>>,
    /// `limit_rate` and `limit_rate_after`, in bytes.
    limit_rate: Option<u64>,
    limit_rate_after: Option<u64>,
    absolute_redirect: Option<bool>,
    msie_padding: Option<bool>,
    /// `chunked_transfer_encoding on|off`.
    chunked: Option<bool>,
    /// `sub_filter` lines (a level with any replaces its parent's), and
    /// `sub_filter_once`, `sub_filter_last_modified`, `sub_filter_types`.
    sub_filters: Option<Vec<(String, String)>>,
    sub_once: Option<bool>,
    sub_last_modified: Option<bool>,
    sub_types: Option<Vec<String>>,
    merge_slashes: Option<bool>,
    port_in_redirect: Option<bool>,
    server_name_in_redirect: Option<bool>,
    /// `charset` (`off` as written), `charset_types`, `source_charset`.
    charset: Option<String>,
    charset_types: Option<Vec<String>>,
    source_charset: Option<String>,
    /// `proxy_hide_header` and `proxy_pass_header`: each list inherited
    /// on its own, a level with any line replacing its parent's list.
    hide_headers: Option<Vec<String>>,
    pass_headers: Option<Vec<String>>,
    /// `proxy_cookie_domain` and `proxy_cookie_path`: (`off` at the level,
    /// the rules); a level with any line replaces its parent's.
    cookie_domains: Option<(bool, Vec<CookieRule>)>,
    cookie_paths: Option<(bool, Vec<CookieRule>)>,
    /// `proxy_cookie_flags` lines (cookie, flags); `off`: none.
    cookie_flags: Option<(bool, Vec<CookieFlags>)>,
    http2: Option<bool>,
    /// `error_page` lines: a level that has any replaces its parent's.
    error_pages: Option<Vec<ErrorPageConf>>,
    recursive_error_pages: Option<bool>,
    intercept_errors: Option<bool>,
    /// `internal` (location only; nested locations inherit it).
    internal: Option<bool>,
    /// `root` or `alias` as nginx keeps it, and an alias's length (set
    /// by the location that has it).
    root: Option<(String, Option<usize>)>,
    /// `index` lines: a level that has any replaces its parent's.
    index: Option<Vec<String>>,
    /// `try_files`: the level's own, never inherited.
    try_files: Option<Vec<String>>,
    log_not_found: Option<bool>,
    etag: Option<bool>,
    rewrite_log: Option<bool>,
    if_modified_since: Option<IfModifiedSince>,
    max_ranges: Option<u32>,
    /// `valid_referers` words: a level with the directive replaces its
    /// parent's.
    valid_referers: Option<Vec<String>>,
    /// `secure_link`, `secure_link_md5`, `secure_link_secret`.
    secure_link: Option<String>,
    secure_link_md5: Option<String>,
    secure_link_secret: Option<String>,
    autoindex: Option<bool>,
    /// `random_index` (a location's only, as nginx's).
    random_index: Option<bool>,
    /// `disable_symlinks` (`Some(None)`: off).
    disable_symlinks: Option<Option<SymlinksConf>>,
    autoindex_exact_size: Option<bool>,
    autoindex_localtime: Option<bool>,
    autoindex_format: Option<AutoindexFormat>,
    /// The `fastcgi_*` settings `proxy_*` has too (timeouts, tries, hidden
    /// headers ...), kept apart as nginx keeps them: a level of their own,
    /// merged as this one is.
    fcgi: Option<Box<Layer>>,
    /// `fastcgi_param NAME VALUE [if_not_empty]` lines: a level that has
    /// any replaces its parent's.
    fcgi_params: Option<Vec<(String, String, bool)>>,
    fcgi_index: Option<String>,
    /// `fastcgi_split_path_info`: the pattern, as written.
    fcgi_split: Option<String>,
    fcgi_keep_conn: Option<bool>,
}

/// One level's `access_log` lines, in order, and whether one was `off`:
/// nginx's `ngx_http_log_loc_conf_t` (`off` at a level silences it, before
/// or after the others, which are still checked).
#[derive(Clone, Default)]
struct AccessLogs {
    logs: Vec<AccessLogConf>,
    off: bool,
}

impl Layer {
    /// This level's settings, the parent's where this level has none.
    fn merged(&self, parent: &Layer) -> Layer {
        // nginx's merge for module directives: a level that has a directive
        // keeps its own occurrences of it, else it takes the parent's.
        let mut filters = self.filters.clone();
        for d in &parent.filters {
            if !self.filters.iter().any(|own| own.name == d.name) {
                filters.push(d.clone());
            }
        }
        Layer {
            filters,
            set_headers: self
                .set_headers
                .clone()
                .or_else(|| parent.set_headers.clone()),
            http11: self.http11.or(parent.http11),
            redirects: self.redirects.clone().or_else(|| parent.redirects.clone()),
            add_headers: self
                .add_headers
                .clone()
                .or_else(|| parent.add_headers.clone()),
            next_upstream: self.next_upstream.or(parent.next_upstream),
            tries: self.tries.or(parent.tries),
            next_timeout: self.next_timeout.or(parent.next_timeout),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            send_timeout: self.send_timeout.or(parent.send_timeout),
            read_timeout: self.read_timeout.or(parent.read_timeout),
            ssl_verify: self.ssl_verify.or(parent.ssl_verify),
            proxy_ssl_cert: self
                .proxy_ssl_cert
                .clone()
                .or_else(|| parent.proxy_ssl_cert.clone()),
            proxy_ssl_key: self
                .proxy_ssl_key
                .clone()
                .or_else(|| parent.proxy_ssl_key.clone()),
            proxy_ssl_passwords: self
                .proxy_ssl_passwords
                .clone()
                .or_else(|| parent.proxy_ssl_passwords.clone()),
            proxy_ssl_protocols: self.proxy_ssl_protocols.or(parent.proxy_ssl_protocols),
            proxy_ssl_ciphers: self
                .proxy_ssl_ciphers
                .clone()
                .or_else(|| parent.proxy_ssl_ciphers.clone()),
            proxy_ssl_session_reuse: self
                .proxy_ssl_session_reuse
                .or(parent.proxy_ssl_session_reuse),
            proxy_ssl_crl: self
                .proxy_ssl_crl
                .clone()
                .or_else(|| parent.proxy_ssl_crl.clone()),
            ssl_trusted: self
                .ssl_trusted
                .clone()
                .or_else(|| parent.ssl_trusted.clone()),
            ssl_server_name: self.ssl_server_name.or(parent.ssl_server_name),
            ssl_name: self.ssl_name.clone().or_else(|| parent.ssl_name.clone()),
            keepalive_timeout: self.keepalive_timeout.or(parent.keepalive_timeout),
            keepalive_requests: self.keepalive_requests.or(parent.keepalive_requests),
            keepalive_time: self.keepalive_time.or(parent.keepalive_time),
            max_body: self.max_body.or(parent.max_body),
            header_timeout: self.header_timeout.or(parent.header_timeout),
            body_timeout: self.body_timeout.or(parent.body_timeout),
            client_send_timeout: self.client_send_timeout.or(parent.client_send_timeout),
            header_buffers: self.header_buffers.or(parent.header_buffers),
            underscores: self.underscores.or(parent.underscores),
            ignore_invalid: self.ignore_invalid.or(parent.ignore_invalid),
            access_log: self
                .access_log
                .clone()
                .or_else(|| parent.access_log.clone()),
            realip_from: self
                .realip_from
                .clone()
                .or_else(|| parent.realip_from.clone()),
            realip_source: self
                .realip_source
                .clone()
                .or_else(|| parent.realip_source.clone()),
            realip_recursive: self.realip_recursive.or(parent.realip_recursive),
            access: self.access.clone().or_else(|| parent.access.clone()),
            limit_conn: self
                .limit_conn
                .clone()
                .or_else(|| parent.limit_conn.clone()),
            limit_conn_status: self.limit_conn_status.or(parent.limit_conn_status),
            limit_conn_level: self.limit_conn_level.or(parent.limit_conn_level),
            limit_conn_dry_run: self.limit_conn_dry_run.or(parent.limit_conn_dry_run),
            auth_realm: self
                .auth_realm
                .clone()
                .or_else(|| parent.auth_realm.clone()),
            proxy_method: self
                .proxy_method
                .clone()
                .or_else(|| parent.proxy_method.clone()),
            resolver: self.resolver.clone().or_else(|| parent.resolver.clone()),
            resolver_timeout: self.resolver_timeout.or(parent.resolver_timeout),
            proxy_set_body: self
                .proxy_set_body
                .clone()
                .or_else(|| parent.proxy_set_body.clone()),
            pass_request_headers: self.pass_request_headers.or(parent.pass_request_headers),
            pass_request_body: self.pass_request_body.or(parent.pass_request_body),
            proxy_bind: self
                .proxy_bind
                .clone()
                .or_else(|| parent.proxy_bind.clone()),
            proxy_socket_keepalive: self
                .proxy_socket_keepalive
                .or(parent.proxy_socket_keepalive),
            proxy_ignore_client_abort: self
                .proxy_ignore_client_abort
                .or(parent.proxy_ignore_client_abort),
            proxy_buffering: self.proxy_buffering.or(parent.proxy_buffering),
            auth_file: self.auth_file.clone().or_else(|| parent.auth_file.clone()),
            satisfy_any: self.satisfy_any.or(parent.satisfy_any),
            auth_request: self
                .auth_request
                .clone()
                .or_else(|| parent.auth_request.clone()),
            auth_request_set: self
                .auth_request_set
                .clone()
                .or_else(|| parent.auth_request_set.clone()),
            mirror: self.mirror.clone().or_else(|| parent.mirror.clone()),
            mirror_request_body: self.mirror_request_body.or(parent.mirror_request_body),
            ssl_certificates: self
                .ssl_certificates
                .clone()
                .or_else(|| parent.ssl_certificates.clone()),
            ssl_keys: self.ssl_keys.clone().or_else(|| parent.ssl_keys.clone()),
            ssl_protocols: self.ssl_protocols.or(parent.ssl_protocols),
            ssl_session_timeout: self.ssl_session_timeout.or(parent.ssl_session_timeout),
            ssl_prefer_server: self.ssl_prefer_server.or(parent.ssl_prefer_server),
            ssl_ciphers: self
                .ssl_ciphers
                .clone()
                .or_else(|| parent.ssl_ciphers.clone()),
            ssl_session_cache: self
                .ssl_session_cache
                .clone()
                .or_else(|| parent.ssl_session_cache.clone()),
            ssl_session_tickets: self.ssl_session_tickets.or(parent.ssl_session_tickets),
            ssl_ecdh_curve: self
                .ssl_ecdh_curve
                .clone()
                .or_else(|| parent.ssl_ecdh_curve.clone()),
            ssl_reject_handshake: self.ssl_reject_handshake.or(parent.ssl_reject_handshake),
            ssl_verify_client: self.ssl_verify_client.or(parent.ssl_verify_client),
            ssl_verify_depth: self.ssl_verify_depth.or(parent.ssl_verify_depth),
            ssl_crl: self.ssl_crl.clone().or_else(|| parent.ssl_crl.clone()),
            ssl_client_certificate: self
                .ssl_client_certificate
                .clone()
                .or_else(|| parent.ssl_client_certificate.clone()),
            ssl_passwords: self
                .ssl_passwords
                .clone()
                .or_else(|| parent.ssl_passwords.clone()),
            ssl_dhparam: self
                .ssl_dhparam
                .clone()
                .or_else(|| parent.ssl_dhparam.clone()),
            ssl_stapling: self.ssl_stapling.or(parent.ssl_stapling),
            ssl_stapling_file: self
                .ssl_stapling_file
                .clone()
                .or_else(|| parent.ssl_stapling_file.clone()),
            ssl_trusted_certificate: self
                .ssl_trusted_certificate
                .clone()
                .or_else(|| parent.ssl_trusted_certificate.clone()),
            gzip: self.gzip.merged(&parent.gzip),
            cache: self.cache.merged(&parent.cache),
            types: self.types.clone().or_else(|| parent.types.clone()),
            charset: self.charset.clone().or_else(|| parent.charset.clone()),
            expires: self.expires.clone().or_else(|| parent.expires.clone()),
            limit_rate: self.limit_rate.or(parent.limit_rate),
            limit_rate_after: self.limit_rate_after.or(parent.limit_rate_after),
            absolute_redirect: self.absolute_redirect.or(parent.absolute_redirect),
            msie_padding: self.msie_padding.or(parent.msie_padding),
            chunked: self.chunked.or(parent.chunked),
            sub_filters: self
                .sub_filters
                .clone()
                .or_else(|| parent.sub_filters.clone()),
            sub_once: self.sub_once.or(parent.sub_once),
            sub_last_modified: self.sub_last_modified.or(parent.sub_last_modified),
            sub_types: self.sub_types.clone().or_else(|| parent.sub_types.clone()),
            merge_slashes: self.merge_slashes.or(parent.merge_slashes),
            port_in_redirect: self.port_in_redirect.or(parent.port_in_redirect),
            server_name_in_redirect: self
                .server_name_in_redirect
                .or(parent.server_name_in_redirect),
            charset_types: self
                .charset_types
                .clone()
                .or_else(|| parent.charset_types.clone()),
            source_charset: self
                .source_charset
                .clone()
                .or_else(|| parent.source_charset.clone()),
            default_type: self
                .default_type
                .clone()
                .or_else(|| parent.default_type.clone()),
            hide_headers: self
                .hide_headers
                .clone()
                .or_else(|| parent.hide_headers.clone()),
            pass_headers: self
                .pass_headers
                .clone()
                .or_else(|| parent.pass_headers.clone()),
            cookie_domains: self
                .cookie_domains
                .clone()
                .or_else(|| parent.cookie_domains.clone()),
            cookie_flags: self
                .cookie_flags
                .clone()
                .or_else(|| parent.cookie_flags.clone()),
            cookie_paths: self
                .cookie_paths
                .clone()
                .or_else(|| parent.cookie_paths.clone()),
            buffers: ProxyBuffers {
                size: self.buffers.size.or(parent.buffers.size),
                bufs: self.buffers.bufs.or(parent.buffers.bufs),
                busy: self.buffers.busy.or(parent.buffers.busy),
                temp_write: self.buffers.temp_write.or(parent.buffers.temp_write),
                max_temp: self.buffers.max_temp.or(parent.buffers.max_temp),
            },
            http2: self.http2.or(parent.http2),
            error_pages: self
                .error_pages
                .clone()
                .or_else(|| parent.error_pages.clone()),
            recursive_error_pages: self.recursive_error_pages.or(parent.recursive_error_pages),
            root: self.root.clone().or_else(|| parent.root.clone()),
            index: self.index.clone().or_else(|| parent.index.clone()),
            try_files: self.try_files.clone(),
            log_not_found: self.log_not_found.or(parent.log_not_found),
            etag: self.etag.or(parent.etag),
            autoindex: self.autoindex.or(parent.autoindex),
            random_index: self.random_index.or(parent.random_index),
            disable_symlinks: self
                .disable_symlinks
                .clone()
                .or_else(|| parent.disable_symlinks.clone()),
            autoindex_exact_size: self.autoindex_exact_size.or(parent.autoindex_exact_size),
            autoindex_localtime: self.autoindex_localtime.or(parent.autoindex_localtime),
            autoindex_format: self.autoindex_format.or(parent.autoindex_format),
            rewrite_log: self.rewrite_log.or(parent.rewrite_log),
            if_modified_since: self.if_modified_since.or(parent.if_modified_since),
            max_ranges: self.max_ranges.or(parent.max_ranges),
            valid_referers: self
                .valid_referers
                .clone()
                .or_else(|| parent.valid_referers.clone()),
            intercept_errors: self.intercept_errors.or(parent.intercept_errors),
            internal: self.internal.or(parent.internal),
            // nginx's merge: a level's `secure_link_secret` stands alone;
            // a level with neither of the others takes its parent's.
            secure_link: self.secure_link.clone().or_else(|| {
                self.secure_link_secret
                    .is_none()
                    .then(|| parent.secure_link.clone())
                    .flatten()
            }),
            secure_link_md5: self.secure_link_md5.clone().or_else(|| {
                self.secure_link_secret
                    .is_none()
                    .then(|| parent.secure_link_md5.clone())
                    .flatten()
            }),
            secure_link_secret: match (
                &self.secure_link_secret,
                &self.secure_link,
                &self.secure_link_md5,
            ) {
                (Some(secret), _, _) => Some(secret.clone()),
                (None, None, None)
                    if parent.secure_link.is_none() && parent.secure_link_md5.is_none() =>
                {
                    parent.secure_link_secret.clone()
                }
                _ => None,
            },
            fcgi: match (&self.fcgi, &parent.fcgi) {
                (Some(own), Some(up)) => Some(Box::new(own.merged(up))),
                (own, up) => own.clone().or_else(|| up.clone()),
            },
            fcgi_params: self
                .fcgi_params
                .clone()
                .or_else(|| parent.fcgi_params.clone()),
            fcgi_index: self
                .fcgi_index
                .clone()
                .or_else(|| parent.fcgi_index.clone()),
            fcgi_split: self
                .fcgi_split
                .clone()
                .or_else(|| parent.fcgi_split.clone()),
            fcgi_keep_conn: self.fcgi_keep_conn.or(parent.fcgi_keep_conn),
        }
    }

    /// The static modules' settings of a merged level, nginx's defaults
    /// (`root html` under `prefix`) where unset.
    fn statics(&self, prefix: &Path) -> StaticConf {
        let default = StaticConf::new(prefix);
        let (root, alias) = self.root.clone().unwrap_or((default.root, None));
        StaticConf {
            root,
            alias,
            index: self.index.clone().unwrap_or(default.index),
            try_files: self.try_files.clone(),
            log_not_found: self.log_not_found.unwrap_or(true),
            etag: self.etag.unwrap_or(true),
            referers: self.valid_referers.clone().map(|w| (w, Vec::new())),
            gzip_static: self.gzip.static_conf(),
            sub_filter_types: self.sub_filter().map(|s| s.types),
            secure_link: match (
                &self.secure_link_secret,
                &self.secure_link,
                &self.secure_link_md5,
            ) {
                (Some(secret), _, _) => Some(SecureLinkConf::Secret(secret.clone())),
                (None, None, None) => None,
                (None, link, md5) => Some(SecureLinkConf::Md5 {
                    link: link.clone(),
                    md5: md5.clone(),
                }),
            },
            autoindex: self.autoindex.unwrap_or(false).then(|| AutoindexConf {
                exact_size: self.autoindex_exact_size.unwrap_or(true),
                localtime: self.autoindex_localtime.unwrap_or(false),
                utf8: false,
                format: self.autoindex_format.unwrap_or_default(),
            }),
            random_index: self.random_index.unwrap_or(false),
            fastcgi_names: (self.fcgi_split.is_some() || self.fcgi_index.is_some()).then(|| {
                (
                    self.fcgi_split.clone(),
                    self.fcgi_index.clone().unwrap_or_default(),
                )
            }),
            disable_symlinks: self.disable_symlinks.clone().flatten(),
            if_modified_since: self.if_modified_since.unwrap_or(IfModifiedSince::Exact),
            max_ranges: self.max_ranges.unwrap_or(MAX_RANGES),
            prefix: default.prefix,
            location: String::new(),
        }
    }

    /// `error_page` and `recursive_error_pages` in effect at a merged level.
    fn error_pages(&self) -> ErrorPagesConf {
        ErrorPagesConf {
            pages: self.error_pages.clone().unwrap_or_default(),
            recursive: self.recursive_error_pages.unwrap_or(false),
        }
    }

    /// `auth_request` in effect at a merged level. With `auth_basic` and
    /// `satisfy any` too it is refused: which grants and which refusal
    /// answers is not what waypost decides as nginx does there.
    fn auth_request(&self) -> Result<Option<AuthRequestConf>, ConfError> {
        let Some(Some((uri, loc))) = &self.auth_request else {
            return Ok(None);
        };
        if self.satisfy_any == Some(true) && self.auth_basic().is_some() {
            return Err(ConfError::at(
                "\"auth_request\" with \"auth_basic\" and \"satisfy any\" is not supported"
                    .to_owned(),
                loc.clone(),
            ));
        }
        Ok(Some(AuthRequestConf {
            uri: uri.clone(),
            sets: self.auth_request_set.clone().unwrap_or_default(),
        }))
    }

    /// `mirror` in effect at a merged level.
    fn mirror(&self) -> Option<MirrorConf> {
        let uris = self.mirror.clone().flatten()?;
        Some(MirrorConf {
            uris,
            body: self.mirror_request_body.unwrap_or(true),
        })
    }

    /// `auth_basic` in effect at a merged level: a realm and a file.
    fn auth_basic(&self) -> Option<AuthBasicConf> {
        Some(AuthBasicConf {
            realm: self.auth_realm.clone()?,
            file: self.auth_file.clone()?,
        })
    }

    /// `sub_filter` in effect at a merged level, with nginx's defaults.
    fn sub_filter(&self) -> Option<SubFilterConf> {
        Some(SubFilterConf {
            pairs: self.sub_filters.clone()?,
            once: self.sub_once.unwrap_or(true),
            last_modified: self.sub_last_modified.unwrap_or(false),
            types: self
                .sub_types
                .clone()
                .unwrap_or_else(|| vec!["text/html".to_owned()]),
        })
    }

    /// `limit_rate` in effect at a merged level (none for 0, the default).
    fn limit_rate(&self) -> Option<crate::http::h1::LimitRate> {
        let rate = self.limit_rate.filter(|&r| r > 0)?;
        Some(crate::http::h1::LimitRate {
            rate,
            after: self.limit_rate_after.unwrap_or(0),
            start_secs: 0,
        })
    }

    /// `limit_conn` in effect at a merged level, with nginx's defaults.
    fn limit_conn_conf(&self) -> Option<LimitConnConf> {
        let limits = self.limit_conn.clone().filter(|l| !l.is_empty())?;
        Some(LimitConnConf {
            limits,
            status: self.limit_conn_status.unwrap_or(503),
            level: self.limit_conn_level.unwrap_or(Level::Error),
            dry_run: self.limit_conn_dry_run.unwrap_or(false),
        })
    }

    /// The TLS settings of a merged server level (nginx's
    /// `ngx_http_ssl_merge_srv_conf`): a certificate needs a key.
    fn tls(&self) -> Result<TlsConf, ConfError> {
        let d = TlsConf::default();
        let certs = self.ssl_certificates.as_deref().unwrap_or(&[]);
        let keys = self.ssl_keys.as_deref().unwrap_or(&[]);
        if let Some((written, _, _)) = certs.get(keys.len()..).and_then(|c| c.last()) {
            return Err(ConfError::bare(format!(
                "no \"ssl_certificate_key\" is defined for certificate \"{written}\""
            )));
        }
        let protocols = self.ssl_protocols.unwrap_or(TLS12 | TLS13);
        let ciphers = match &self.ssl_ciphers {
            None => None,
            Some((text, loc)) => {
                let suites = crate::runtime::tls::tls12_suites(text);
                // With TLS 1.2 on, a list without a suite rustls has would
                // leave TLS 1.2 clients with no handshake at all.
                if suites.is_empty() && protocols & TLS12 != 0 && !certs.is_empty() {
                    return Err(ConfError::at(
                        format!(
                            "\"ssl_ciphers\" \"{text}\" names no TLS 1.2 cipher suite waypost has \
                             (ECDHE with AES-GCM or ChaCha20-Poly1305)"
                        ),
                        loc.clone(),
                    ));
                }
                Some(suites)
            }
        };
        Ok(TlsConf {
            ciphers,
            session_cache: self
                .ssl_session_cache
                .as_ref()
                .map_or(d.session_cache, |c| c.0),
            session_zone: self.ssl_session_cache.as_ref().and_then(|c| c.1.clone()),
            session_tickets: self.ssl_session_tickets.unwrap_or(d.session_tickets),
            dhparam: self.ssl_dhparam.clone(),
            ecdh_curve: self.ssl_ecdh_curve.clone().filter(|c| c != "auto"),
            reject_handshake: self.ssl_reject_handshake.unwrap_or(false),
            verify_client: self.ssl_verify_client.unwrap_or_default(),
            verify_depth: self.ssl_verify_depth.unwrap_or(d.verify_depth),
            client_certificate: self.ssl_client_certificate.clone(),
            trusted_certificate: self.ssl_trusted_certificate.clone(),
            // Read at the end of `http`, for a server with certificates.
            crl: None,
            certificates: certs
                .iter()
                .zip(keys)
                .map(|((_, cert, cert_loc), (key, key_loc))| CertificateConf {
                    cert: cert.clone(),
                    cert_loc: cert_loc.clone(),
                    key: key.clone(),
                    key_loc: key_loc.clone(),
                    passwords: self.ssl_passwords.clone(),
                })
                .collect(),
            tls12: protocols & TLS12 != 0,
            tls13: protocols & TLS13 != 0,
            session_timeout: self.ssl_session_timeout.unwrap_or(d.session_timeout),
            prefer_server_ciphers: self.ssl_prefer_server.unwrap_or(d.prefer_server_ciphers),
        })
    }

    /// `charset` of a merged level; `None` with `off` or none. A
    /// `source_charset` other than the charset would need recoding, which
    /// nginx does with a `charset_map` (waypost has none).
    fn charset(&self) -> Result<Option<CharsetConf>, ConfError> {
        let Some(name) = self
            .charset
            .as_ref()
            .filter(|c| !c.eq_ignore_ascii_case("off"))
        else {
            return Ok(None);
        };
        if let Some(source) = &self.source_charset {
            if !source.eq_ignore_ascii_case("off") && !source.eq_ignore_ascii_case(name) {
                return Err(ConfError::bare(format!(
                    "no \"charset_map\" between the charsets \"{source}\" and \"{name}\""
                )));
            }
        }
        Ok(Some(CharsetConf {
            name: name.clone(),
            types: self
                .charset_types
                .clone()
                .unwrap_or_else(|| CHARSET_TYPES.iter().map(|t| (*t).to_owned()).collect()),
        }))
    }

    /// How a merged level makes a Location absolute.
    fn redirect_style(&self) -> RedirectStyle {
        let d = RedirectStyle::default();
        RedirectStyle {
            absolute: self.absolute_redirect.unwrap_or(d.absolute),
            port: self.port_in_redirect.unwrap_or(d.port),
            server_name: self.server_name_in_redirect.unwrap_or(d.server_name),
        }
    }

    /// The `return` text's MIME types of a merged level.
    fn content_types(&self) -> ContentTypes {
        let d = ContentTypes::default();
        ContentTypes {
            by_ext: self.types.clone().unwrap_or(d.by_ext),
            default: self.default_type.clone().unwrap_or(d.default),
        }
    }

    /// The realip settings of a merged level; `None` without
    /// `set_real_ip_from`, where nginx's module does nothing.
    fn realip(&self) -> Option<RealIp> {
        Some(RealIp {
            from: self.realip_from.clone()?,
            source: self.realip_source.clone().unwrap_or(Source::XRealIp),
            recursive: self.realip_recursive.unwrap_or(false),
        })
    }

    /// The client-side limits of a merged level, nginx's defaults where
    /// unset.
    fn client(&self) -> ClientLimits {
        let d = ClientLimits::default();
        ClientLimits {
            max_body: self.max_body.unwrap_or(d.max_body),
            header_timeout: self.header_timeout.unwrap_or(d.header_timeout),
            body_timeout: self.body_timeout.unwrap_or(d.body_timeout),
            send_timeout: self.client_send_timeout.unwrap_or(d.send_timeout),
            header_buffers: self.header_buffers.unwrap_or(d.header_buffers),
            names: HeaderNames {
                underscores: self.underscores.unwrap_or(d.names.underscores),
                ignore_invalid: self.ignore_invalid.unwrap_or(d.names.ignore_invalid),
            },
        }
    }

    fn proxy(&self) -> ProxyConf {
        let d = ProxyConf::default();
        ProxyConf {
            hide_headers: self.hide_headers.clone().unwrap_or_default(),
            cookie_domains: self.cookie_domains.clone().map(|c| c.1).unwrap_or_default(),
            cookie_paths: self.cookie_paths.clone().map(|c| c.1).unwrap_or_default(),
            cookie_flags: self.cookie_flags.clone().map(|c| c.1).unwrap_or_default(),
            pass_headers: self.pass_headers.clone().unwrap_or_default(),
            set_headers: self.set_headers.clone().unwrap_or_default(),
            method: self.proxy_method.clone(),
            set_body: self.proxy_set_body.clone(),
            pass_request_headers: self.pass_request_headers.unwrap_or(true),
            pass_request_body: self.pass_request_body.unwrap_or(true),
            intercept_errors: self.intercept_errors.unwrap_or(false),
            bind: self.proxy_bind.clone().flatten(),
            socket_keepalive: self.proxy_socket_keepalive.unwrap_or(false),
            ignore_client_abort: self.proxy_ignore_client_abort.unwrap_or(false),
            buffering: self.proxy_buffering.unwrap_or(true),
            cache: self.cache.conf(),
            fastcgi: None,
            redirects: self
                .redirects
                .as_ref()
                .map_or(d.redirects, |(_, r)| r.clone()),
            redirects_set: self.redirects.is_some(),
            http11: self.http11.unwrap_or(d.http11),
            next_upstream: self.next_upstream.unwrap_or(d.next_upstream),
            next_upstream_tries: self.tries.unwrap_or(d.next_upstream_tries),
            next_upstream_timeout: self.next_timeout.unwrap_or(d.next_upstream_timeout),
            resolver: self.resolver.clone(),
            resolver_timeout: self.resolver_timeout.unwrap_or(d.resolver_timeout),
            connect_timeout: self.connect_timeout.unwrap_or(d.connect_timeout),
            send_timeout: self.send_timeout.unwrap_or(d.send_timeout),
            read_timeout: self.read_timeout.unwrap_or(d.read_timeout),
            ssl: ProxySsl {
                verify: self.ssl_verify.unwrap_or(false),
                trusted: None,
                crl: None,
                server_name: self.ssl_server_name.unwrap_or(false),
                name: self.ssl_name.clone(),
                // Set where an `https://` proxy_pass needs it.
                client_cert: None,
                tls12: self.proxy_ssl_protocols.is_none_or(|m| m & TLS12 != 0),
                tls13: self.proxy_ssl_protocols.is_none_or(|m| m & TLS13 != 0),
                session_reuse: self.proxy_ssl_session_reuse.unwrap_or(true),
                ciphers: self
                    .proxy_ssl_ciphers
                    .as_ref()
                    .map(|(text, _)| crate::runtime::tls::tls12_suites(text)),
            },
        }
    }
}

/// A `fastcgi_pass` location's settings: the `fastcgi_*` ones `proxy_*`
/// has too, at nginx's defaults where none is set, and FastCGI's own.
fn fastcgi_conf(layer: &Layer) -> ProxyConf {
    let mut conf = layer
        .fcgi
        .as_deref()
        .map_or_else(|| Layer::default().proxy(), Layer::proxy);
    // (Only the `fastcgi_` twins reach that level: none of `proxy_pass`'s
    // headers, redirects, cookies or cache.) A `fastcgi_pass` with
    // variables asks the level's `resolver` for a name.
    conf.resolver = layer.resolver.clone();
    // FastCGI has no `_cache_convert_head`: a HEAD is asked and stored as
    // one (nginx leaves the flag off for it).
    if let Some(cache) = conf.cache.as_mut() {
        cache.convert_head = false;
    }
    if let Some(timeout) = layer.resolver_timeout {
        conf.resolver_timeout = timeout;
    }
    conf.fastcgi = Some(Box::new(FastCgiConf {
        params: layer.fcgi_params.clone().unwrap_or_default(),
        keep_conn: layer.fcgi_keep_conn.unwrap_or(false),
    }));
    conf
}

/// nginx's `ngx_http_proxy_set_ssl`, where TLS is used: the trusted
/// certificates and CRL that verify the upstream (read once per file),
/// and the client certificate, which needs its key.
fn proxy_tls_files(
    trusted_cache: &mut HashMap<PathBuf, Arc<rustls::RootCertStore>>,
    crls: &mut HashMap<PathBuf, CrlLists>,
    conf: &mut ProxyConf,
    layer: &Layer,
) -> Result<(), ConfError> {
    if conf.ssl.verify {
        conf.ssl.trusted = Some(trusted(trusted_cache, layer.ssl_trusted.as_deref())?);
        // (Read where it verifies, after the trusted certificates.)
        if let Some(path) = &layer.proxy_ssl_crl {
            conf.ssl.crl = Some((path.clone(), crl_lists(crls, path)?));
        }
    }
    if let Some((written, cert, cert_loc)) = &layer.proxy_ssl_cert {
        let Some((key, key_loc)) = &layer.proxy_ssl_key else {
            return Err(ConfError::bare(format!(
                "no \"proxy_ssl_certificate_key\" is defined for certificate \"{written}\""
            )));
        };
        conf.ssl.client_cert = Some(CertificateConf {
            cert: cert.clone(),
            cert_loc: cert_loc.clone(),
            key: key.clone(),
            key_loc: key_loc.clone(),
            passwords: layer.proxy_ssl_passwords.clone(),
        });
    }
    Ok(())
}

/// Whether a pass of an `if` block in `ops` is one `wanted` says.
fn any_if_pass(ops: &[RewriteOp], wanted: &dyn Fn(&ProxyPass) -> bool) -> bool {
    ops.iter().any(|op| match op {
        RewriteOp::Headers(h) => h.proxy.as_ref().is_some_and(|p| wanted(&p.pass)),
        RewriteOp::If(_, block) => any_if_pass(block, wanted),
        _ => false,
    })
}

/// A `proxy_pass` whose upstream is bound at the end of `http`, once every
/// upstream block is known.
struct PendingPass {
    server: usize,
    location: usize,
    /// Index into `Interp::entries`.
    entry: usize,
}

/// nginx's list of upstreams (`umcf->upstreams`), in the order they were
/// created: by an `upstream` block, or by the first `proxy_pass` to a
/// host and port. A block of a name a `proxy_pass` used before takes that
/// entry over. At the end of `http` each is initialised in this order.
enum UpstreamEntry {
    Block {
        /// Index into `HttpConf::upstreams`.
        index: usize,
        /// The name as the entry's creator wrote it.
        host: String,
        /// Where the entry was created.
        loc: Loc,
    },
    Implicit {
        host: String,
        port: u16,
        no_port: bool,
        /// As written after `http://`, without the URI: the name of the
        /// implicit upstream.
        authority: String,
        loc: Loc,
        /// Index into `HttpConf::upstreams`, once resolved.
        index: Option<usize>,
    },
}

impl UpstreamEntry {
    fn host(&self) -> &str {
        match self {
            UpstreamEntry::Block { host, .. } | UpstreamEntry::Implicit { host, .. } => host,
        }
    }
}

/// What the end of `http` needs to know about one `server` block.
#[derive(Default)]
struct ServerInfo {
    own: Layer,
    /// The `server` block, which nginx names in errors about the server.
    loc: Option<Loc>,
    /// Top-level locations, as indexes into `Interp::locations`.
    locations: Vec<usize>,
}

/// What the end of `http` needs to know about one `location` block.
struct LocationInfo {
    server: usize,
    /// Index into the server's `locations`.
    index: usize,
    parent: Option<usize>,
    own: Layer,
    /// `proxy_redirect default` of the location's `proxy_pass`.
    default_redirect: Option<Redirect>,
    name: String,
    exact: bool,
    named: bool,
    /// `~`/`~*`: not in nginx's static tree (no duplicates checked).
    regex: bool,
    loc: Loc,
    children: Vec<usize>,
    /// `limit_except`: its methods and its own lines (`allow`/`deny`,
    /// `auth_basic`, `auth_basic_user_file`, `proxy_pass`, `access_log`).
    limit_except: Option<LimitExcept>,
}

/// One listening address and the servers on it, as nginx's
/// `ngx_http_conf_addr_t`.
struct ListenAddr {
    addr: SocketAddr,
    servers: Vec<usize>,
    default_server: bool,
    /// The server marked `default_server`; else the first one is.
    default: Option<usize>,
    /// Some `listen` of the address has `ssl`.
    ssl: bool,
    /// Socket options were given (`backlog=`, `reuseport`, ...), which also
    /// makes nginx bind this address even beside a wildcard one.
    set: bool,
}

/// What a shared memory zone is for (nginx's tag): one name, one use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZoneUse {
    Upstream,
    Ssl,
    LimitConn,
    Cache,
    /// `fastcgi_cache_path`'s: nginx tags a zone with the module that
    /// declared it.
    FastCgiCache,
}

struct Interp<'a> {
    env: &'a Env<'a>,
    /// The main file's directory, where relative certificate paths start.
    conf_dir: PathBuf,
    main: MainConf,
    http: HttpConf,
    modules: Vec<Arc<LoadedModule>>,
    /// Module directive name -> (module index, spec).
    module_directives: HashMap<String, (usize, waypost_module_api::DirectiveSpec)>,
    /// The modules directory was read.
    scanned: bool,
    /// A `proxy_pass` with variables was read.
    dynamic_passes: bool,
    /// A `fastcgi_` directive is being read as its `proxy_` twin (into the
    /// FastCGI settings).
    renaming_fastcgi: bool,
    /// Main-context directives seen, `-g` included (nginx's "is duplicate").
    main_seen: HashSet<String>,
    seen_events: bool,
    /// An `events` or `http` block was read: `load_module` is too late.
    modules_used: bool,
    http_layer: Layer,
    servers: Vec<ServerInfo>,
    locations: Vec<LocationInfo>,
    pending: Vec<PendingPass>,
    entries: Vec<UpstreamEntry>,
    listens: Vec<ListenAddr>,
    /// Shared memory zones, as `ngx_shared_memory_add` keeps them: name,
    /// size (0: not given yet) and what uses them.
    zones: Vec<(String, u64, ZoneUse)>,
    /// The first unknown variable of a `return` or `log_format`, in file
    /// order. nginx compiles those as it reads them but reports an unknown
    /// variable only once the whole `http` block is read.
    unknown_var: Option<ConfError>,
    /// The variables the `http` block's `map`s define (read before the
    /// block, as nginx knows them all when it reports unknown variables).
    map_vars: HashSet<String>,
    /// Those of them whose source reads the answer (`$sent_http_*`, or
    /// another such map): only the header filters (`add_header`,
    /// `expires`) may read them, as only there waypost has the answer.
    answer_maps: HashSet<String>,
    /// The same for `proxy_set_header` values, which nginx compiles when
    /// it merges the levels, after the others.
    unknown_header_var: Option<ConfError>,
    /// A malformed `proxy_set_header` value: nginx finds it when merging,
    /// and reports it at the end of the `http` block.
    header_error: Option<String>,
    /// `access_log ... buffer=`: each buffered file's setting (and gzip
    /// level), which every other `access_log` of the file must repeat.
    log_buffers: HashMap<PathBuf, (Buffering, Option<u32>)>,
    /// `proxy_ssl_trusted_certificate` files read, each once.
    trusted: HashMap<PathBuf, Arc<rustls::RootCertStore>>,
    /// `ssl_crl` and `proxy_ssl_crl` files read, each once (a CA's list can run to
    /// megabytes, and many locations name the same).
    crls: HashMap<PathBuf, CrlLists>,
}

/// `ssl_protocols` bits of the versions rustls has.
const TLS12: u32 = 1;
const TLS13: u32 = 2;

pub(super) fn err<T>(message: impl Into<String>, d: &Directive) -> Result<T, ConfError> {
    Err(ConfError::at(message.into(), d.loc.clone()))
}

fn invalid_value<T>(d: &Directive, value: &str) -> Result<T, ConfError> {
    err(
        format!("invalid value \"{value}\" in \"{}\" directive", d.name),
        d,
    )
}

/// nginx's `msec` slots: `"X" directive invalid value`.
pub(super) fn time_arg(d: &Directive, i: usize) -> Result<Duration, ConfError> {
    parse_time(&d.args[i]).map_or_else(
        || err(format!("\"{}\" directive invalid value", d.name), d),
        Ok,
    )
}

/// nginx's `num` slots: `"X" directive invalid number`.
/// The `map`s of an `http` block whose source reads the answer: one
/// that names `$sent_http_*`, or such a map (in any order).
fn answer_maps(items: &[Directive]) -> HashSet<String> {
    let maps: Vec<(String, Vec<String>)> = items
        .iter()
        .filter(|d| d.name == "map" && d.args.len() == 2)
        .filter_map(|d| {
            let name = d.args[1].strip_prefix('$')?.to_ascii_lowercase();
            Some((name, crate::vars::names_in(&d.args[0])))
        })
        .collect();
    let mut answer = HashSet::new();
    loop {
        let before = answer.len();
        for (name, reads) in &maps {
            if reads
                .iter()
                .any(|r| r.starts_with("sent_http_") || answer.contains(r))
            {
                answer.insert(name.clone());
            }
        }
        if answer.len() == before {
            return answer;
        }
    }
}

/// `ssl_password_file`'s passwords, one a line (a CR before the LF
/// dropped), read as nginx's `ngx_ssl_read_password_file` reads them: an
/// empty file is one empty password.
fn password_file(path: &Path) -> Result<Arc<[Vec<u8>]>, String> {
    let text = std::fs::read(path).map_err(|e| {
        format!(
            "open() \"{}\" failed ({}: {})",
            path.display(),
            e.raw_os_error().unwrap_or(0),
            crate::http::proxy::strerror(&e)
        )
    })?;
    let mut passwords: Vec<Vec<u8>> = text
        .strip_suffix(b"\n")
        .unwrap_or(&text)
        .split(|&c| c == b'\n')
        .filter(|_| !text.is_empty())
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .collect();
    if passwords.is_empty() {
        passwords.push(Vec::new());
    }
    Ok(passwords.into())
}

/// `disable_symlinks off|on|if_not_owner [from=PART]`, with nginx's
/// messages; `None` for `off`.
fn disable_symlinks(d: &Directive) -> Result<Option<SymlinksConf>, ConfError> {
    let mut from = None;
    for v in &d.args[1..] {
        match v.strip_prefix("from=") {
            Some(part) if !part.is_empty() => from = Some(part.to_owned()),
            _ => return err(format!("invalid parameter \"{v}\""), d),
        }
    }
    let if_not_owner = match d.args[0].as_str() {
        "off" if from.is_some() => {
            return err("\"from=\" cannot be used with \"off\" parameter", d)
        }
        "off" => return Ok(None),
        "on" => false,
        "if_not_owner" => true,
        v => return err(format!("invalid parameter \"{v}\""), d),
    };
    Ok(Some(SymlinksConf { if_not_owner, from }))
}

/// `expires [modified] TIME|@TIME|epoch|max|off`, as
/// `ngx_http_headers_expires`; `None` for `off`. A value with variables
/// is read per answer.
fn expires(d: &Directive) -> Result<Option<ExpiresConf>, ConfError> {
    let (modified, value) = match &d.args[..] {
        [one] => (false, one.as_str()),
        [word, value] if word == "modified" => (true, value.as_str()),
        _ => return err("\"expires\" directive invalid value", d),
    };
    if value.contains('$') {
        return Ok(Some(ExpiresConf::Var {
            modified,
            value: value.to_owned(),
        }));
    }
    match Expires::parse(value, modified) {
        Ok(e) => Ok(e.map(ExpiresConf::Fixed)),
        Err(why) => err(format!("\"expires\" directive {why}"), d),
    }
}

/// A `gzip_types` or `charset_types` line added to the level's list
/// (`ngx_http_types_slot`): text/html first, then each type once, lowercase,
/// a repeated one warned about.
fn mime_types(level: Option<Vec<String>>, d: &Directive) -> Vec<String> {
    let mut types = level.unwrap_or_else(|| vec!["text/html".to_owned()]);
    for t in &d.args {
        let t = t.to_ascii_lowercase();
        if types.contains(&t) {
            tracing::warn!("duplicate MIME type \"{t}\" in {}", d.loc);
        } else {
            types.push(t);
        }
    }
    types
}

/// A size argument (`8k`, `1m`), as nginx's `ngx_conf_set_size_slot`.
pub(super) fn size_arg(d: &Directive, i: usize) -> Result<u64, ConfError> {
    parse_size(&d.args[i]).map_or_else(
        || err(format!("\"{}\" directive invalid value", d.name), d),
        Ok,
    )
}

/// A level's `gzip` settings, each `None` where the level has none.
#[derive(Clone, Default)]
struct GzipLayer {
    on: Option<bool>,
    /// `gunzip on|off`.
    gunzip: Option<bool>,
    /// `gzip_static`: `Some(true)` for `always`, `Some(false)` for `on`;
    /// `None` inside for `off`.
    static_: Option<Option<bool>>,
    types: Option<Vec<String>>,
    min_length: Option<u64>,
    level: Option<u32>,
    vary: Option<bool>,
    proxied: Option<u16>,
    http10: Option<bool>,
    disable: Option<Vec<String>>,
    msie6: Option<bool>,
}

impl GzipLayer {
    fn merged(&self, parent: &GzipLayer) -> GzipLayer {
        GzipLayer {
            on: self.on.or(parent.on),
            gunzip: self.gunzip.or(parent.gunzip),
            static_: self.static_.or(parent.static_),
            types: self.types.clone().or_else(|| parent.types.clone()),
            min_length: self.min_length.or(parent.min_length),
            level: self.level.or(parent.level),
            vary: self.vary.or(parent.vary),
            proxied: self.proxied.or(parent.proxied),
            http10: self.http10.or(parent.http10),
            disable: self.disable.clone().or_else(|| parent.disable.clone()),
            msie6: self.msie6.or(parent.msie6),
        }
    }

    /// The settings where `gzip on`, with nginx's defaults.
    fn conf(&self) -> Option<GzipConf> {
        if self.on != Some(true) {
            return None;
        }
        Some(self.settings())
    }

    /// `gunzip on`, with the settings that decide whether a request takes
    /// gzip (which apply whether `gzip` is on or not).
    fn gunzip_conf(&self) -> Option<GzipConf> {
        (self.gunzip == Some(true)).then(|| self.settings())
    }

    /// `gzip_static` where it is on (`true`: `always`), with the
    /// settings that decide whether a request takes gzip (which apply
    /// whether `gzip` is on or not).
    fn static_conf(&self) -> Option<(bool, GzipConf)> {
        let always = self.static_.flatten()?;
        Some((always, self.settings()))
    }

    /// The level's settings, with nginx's defaults.
    fn settings(&self) -> GzipConf {
        GzipConf {
            types: self
                .types
                .clone()
                .unwrap_or_else(|| vec!["text/html".to_owned()]),
            min_length: self.min_length.unwrap_or(20),
            level: self.level.unwrap_or(1),
            vary: self.vary.unwrap_or(false),
            proxied: self.proxied.unwrap_or(GZIP_PROXIED_OFF),
            http10: self.http10.unwrap_or(false),
            msie6: self.msie6.unwrap_or(false),
            disable: self.disable.clone().unwrap_or_default(),
        }
    }
}

/// A level's `proxy_buffer_size`, `proxy_buffers` (number, size),
/// `proxy_busy_buffers_size`, `proxy_temp_file_write_size` and
/// `proxy_max_temp_file_size`.
#[derive(Clone, Copy, Default)]
struct ProxyBuffers {
    size: Option<u64>,
    bufs: Option<(u64, u64)>,
    busy: Option<u64>,
    temp_write: Option<u64>,
    max_temp: Option<u64>,
}

impl ProxyBuffers {
    /// `ngx_http_proxy_merge_loc_conf`'s checks of a merged level, with
    /// nginx's defaults (`4k`, `8 4k`, twice the larger buffer, 1024m).
    fn check(&self) -> Result<(), &'static str> {
        let page = page_size();
        let (num, buf) = self.bufs.unwrap_or((8, page));
        if num < 2 {
            return Err("there must be at least 2 \"proxy_buffers\"");
        }
        let size = self.size.unwrap_or(page).max(buf);
        let busy = self.busy.unwrap_or(2 * size);
        if busy < size {
            return Err("\"proxy_busy_buffers_size\" must be equal to or greater than the maximum of the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\"");
        }
        if busy > (num - 1) * buf {
            return Err("\"proxy_busy_buffers_size\" must be less than the size of all \"proxy_buffers\" minus one buffer");
        }
        if self.temp_write.unwrap_or(2 * size) < size {
            return Err("\"proxy_temp_file_write_size\" must be equal to or greater than the maximum of the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\"");
        }
        let max = self.max_temp.unwrap_or(1024 * 1024 * 1024);
        if max != 0 && max < size {
            return Err("\"proxy_max_temp_file_size\" must be equal to zero to disable temporary files usage or must be equal to or greater than the maximum of the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\"");
        }
        Ok(())
    }
}

pub(super) fn number_arg(d: &Directive, i: usize) -> Result<u64, ConfError> {
    parse_number(&d.args[i]).map_or_else(
        || err(format!("\"{}\" directive invalid number", d.name), d),
        Ok,
    )
}

/// The default port of a server without `listen`: nginx's, which depends
/// on whether it may bind privileged ports.
fn default_listen_port() -> u16 {
    // SAFETY: getuid has no failure mode.
    if unsafe { libc::getuid() } == 0 {
        80
    } else {
        8000
    }
}

impl<'a> Interp<'a> {
    fn new(env: &'a Env<'a>) -> Self {
        Interp {
            env,
            conf_dir: PathBuf::new(),
            main: MainConf {
                worker_processes: 1,
                pid: env.prefix.join("logs/waypost.pid"),
                error_log: (
                    LogTarget::File(env.prefix.join("logs/error.log")),
                    Level::Error,
                ),
                worker_connections: 512,
                worker_shutdown_timeout: None,
            },
            http: HttpConf::default(),
            modules: Vec::new(),
            module_directives: HashMap::new(),
            scanned: false,
            dynamic_passes: false,
            renaming_fastcgi: false,
            main_seen: HashSet::new(),
            seen_events: false,
            modules_used: false,
            http_layer: Layer::default(),
            servers: Vec::new(),
            locations: Vec::new(),
            pending: Vec::new(),
            entries: Vec::new(),
            listens: Vec::new(),
            zones: Vec::new(),
            unknown_var: None,
            map_vars: HashSet::new(),
            answer_maps: HashSet::new(),
            unknown_header_var: None,
            header_error: None,
            log_buffers: HashMap::new(),
            trusted: HashMap::new(),
            crls: HashMap::new(),
        }
    }

    /// Registers every shipped module of the modules directory (once), so a
    /// plain nginx `hash` works without `load_module`. A broken file there
    /// is logged and skipped; it only matters if a config uses its
    /// directive. Loading checks every file, so this happens only when a
    /// module is needed: a directive the core does not know, or upstreams.
    fn scan_modules(&mut self) {
        if self.scanned {
            return;
        }
        self.scanned = true;
        for result in self.env.loader.scan_dir(self.env.modules_dir) {
            match result {
                // A module named by `load_module` keeps its directives.
                Ok(module) => self.register(module, false),
                Err(e) => tracing::warn!("{e}, skipped"),
            }
        }
    }

    /// Adds a module and its directives; `replace`: its directives replace
    /// another module's of the same name.
    fn register(&mut self, module: Arc<LoadedModule>, replace: bool) {
        if self.modules.iter().any(|m| Arc::ptr_eq(m, &module)) {
            return;
        }
        let index = self.modules.len();
        for spec in &module.directives {
            let name = spec.name.as_str().to_owned();
            if replace || !self.module_directives.contains_key(&name) {
                self.module_directives.insert(name, (index, *spec));
            }
        }
        self.modules.push(module);
    }

    /// A path relative to the configuration's directory, as nginx's
    /// `ngx_conf_full_name(cycle, name, 1)`.
    fn conf_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.conf_dir.join(p)
        }
    }

    /// `root` and `alias`, as nginx's `ngx_http_core_root`: one of them
    /// per level; a root loses one trailing `/`; a value that does not
    /// start with a variable is made absolute against the prefix. The
    /// location that has an alias sets its length afterwards.
    fn root(&mut self, d: &Directive, layer: &mut Layer) -> Result<(), ConfError> {
        let alias = d.name == "alias";
        if let Some((_, earlier)) = &layer.root {
            if earlier.is_some() == alias {
                return err(format!("\"{}\" directive is duplicate", d.name), d);
            }
            let earlier = if earlier.is_some() { "alias" } else { "root" };
            return err(
                format!(
                    "\"{}\" directive is duplicate, \"{earlier}\" directive was specified earlier",
                    d.name
                ),
                d,
            );
        }
        let value = &d.args[0];
        for var in ["document_root", "realpath_root"] {
            if value.contains(&format!("${var}")) || value.contains(&format!("${{{var}}}")) {
                return err(
                    format!(
                        "the ${var} variable cannot be used in the \"{}\" directive",
                        d.name
                    ),
                    d,
                );
            }
        }
        self.check_vars(self.compile_check(value), d)?;
        let mut root = value.as_str();
        if !alias {
            root = root.strip_suffix('/').unwrap_or(root);
        }
        let root = if value.starts_with('$') || value.starts_with('/') {
            root.to_owned()
        } else {
            self.env.prefix.join(root).display().to_string()
        };
        layer.root = Some((root, alias.then_some(0)));
        Ok(())
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.env.prefix.join(p)
        }
    }

    /// The table check nginx's `ngx_conf_handler` does for every directive:
    /// context, terminator, number of arguments.
    fn check(&mut self, d: &Directive, ctx: Ctx) -> Result<Spec, ConfError> {
        let find = |interp: &Self| {
            let extra = interp
                .module_directives
                .get(&d.name)
                .map(|(_, spec)| Spec::from_module(spec));
            lookup(&d.name, ctx, extra.into_iter())
        };
        let mut found = find(self);
        if !matches!(found, Lookup::Found(_)) && !self.scanned {
            self.scan_modules();
            found = find(self);
        }
        let spec = match found {
            Lookup::Found(spec) => spec,
            Lookup::NotAllowedHere => {
                return err(format!("\"{}\" directive is not allowed here", d.name), d)
            }
            // An nginx directive waypost does not implement says so, for
            // an nginx file brought over; any other is nginx's unknown.
            Lookup::Unknown if NGINX_NOT_SUPPORTED.contains(&d.name.as_str()) => {
                return err(
                    format!(
                        "\"{}\" is an nginx directive waypost does not support",
                        d.name
                    ),
                    d,
                )
            }
            Lookup::Unknown => return err(format!("unknown directive \"{}\"", d.name), d),
        };
        if !spec.block && d.block.is_some() {
            return err(
                format!("directive \"{}\" is not terminated by \";\"", d.name),
                d,
            );
        }
        if spec.block && d.block.is_none() {
            return err(format!("directive \"{}\" has no opening \"{{\"", d.name), d);
        }
        let n = d.args.len() as u32;
        if n < spec.min || n > spec.max {
            return err(
                format!("invalid number of arguments in \"{}\" directive", d.name),
                d,
            );
        }
        Ok(spec)
    }

    /// [`Self::check`], then what nginx's slot handlers check first: a
    /// directive set twice in one block, and a flag's value.
    fn enter(
        &mut self,
        d: &Directive,
        ctx: Ctx,
        seen: &mut HashSet<String>,
    ) -> Result<Spec, ConfError> {
        let spec = self.check(d, ctx)?;
        // `$realpath_root` reads the file system: it is resolved (on the
        // blocking pool) where FastCGI params are made, and nowhere else.
        // (`root` and `alias` refuse it with nginx's own message.)
        if !matches!(d.name.as_str(), "fastcgi_param" | "root" | "alias")
            && d.args.iter().any(|a| crate::vars::reads_realpath_root(a))
        {
            return err(crate::vars::REALPATH_ONLY, d);
        }
        if (spec.flag || is_single(&d.name)) && !seen.insert(d.name.clone()) {
            return err(format!("\"{}\" directive is duplicate", d.name), d);
        }
        if spec.flag && !is_on_off(&d.args[0]) {
            return err(
                format!(
                    "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                    d.args[0], d.name
                ),
                d,
            );
        }
        Ok(spec)
    }

    /// The main context: `-g` directives and the file share one block, as
    /// in nginx, so a directive in both is a duplicate.
    fn main_block(&mut self, items: &[Directive]) -> Result<(), ConfError> {
        let mut seen = std::mem::take(&mut self.main_seen);
        let result = items.iter().try_for_each(|d| {
            self.enter(d, Ctx::Main, &mut seen)?;
            self.main_directive(d, &mut seen)
        });
        self.main_seen = seen;
        result
    }

    fn main_directive(
        &mut self,
        d: &Directive,
        seen: &mut HashSet<String>,
    ) -> Result<(), ConfError> {
        match d.name.as_str() {
            "worker_processes" => {
                self.main.worker_processes = if d.args[0] == "auto" {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    match parse_number(&d.args[0]) {
                        Some(0) => return invalid_value(d, &d.args[0]),
                        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                        None => return err("\"worker_processes\" directive invalid value", d),
                    }
                };
            }
            "worker_rlimit_nofile" => {
                number_arg(d, 0)?;
            }
            "worker_shutdown_timeout" => {
                self.main.worker_shutdown_timeout = Some(time_arg(d, 0)?);
            }
            "user" => user(d, seen)?,
            "pid" => self.main.pid = self.resolve_path(&d.args[0]),
            "error_log" => self.main.error_log = self.error_log(d)?,
            "load_module" => self.load_module(d)?,
            "events" => {
                self.modules_used = true;
                self.seen_events = true;
                if let Some(block) = &d.block {
                    self.events_block(&block.items)?;
                }
            }
            "http" => {
                self.modules_used = true;
                if let Some(block) = &d.block {
                    self.http_block(&block.items)?;
                    if block.complete {
                        self.http_end(Loc {
                            file: Arc::clone(&d.loc.file),
                            line: block.end_line,
                        })?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn load_module(&mut self, d: &Directive) -> Result<(), ConfError> {
        if self.modules_used {
            return err("\"load_module\" directive is specified too late", d);
        }
        let path = self.resolve_path(&d.args[0]);
        if !path.exists() {
            // What dlopen() says about a missing file, as nginx prints it.
            return err(
                format!(
                    "dlopen() \"{0}\" failed ({0}: cannot open shared object file: No such file or directory)",
                    path.display()
                ),
                d,
            );
        }
        match self.env.loader.load(&path) {
            Ok(module) => {
                self.register(module, true);
                Ok(())
            }
            Err(e) => {
                if let Some(detail) = e.detail() {
                    tracing::debug!("{detail}");
                }
                err(e.to_string(), d)
            }
        }
    }

    fn events_block(&mut self, items: &[Directive]) -> Result<(), ConfError> {
        let mut seen = HashSet::new();
        for d in items {
            self.enter(d, Ctx::Events, &mut seen)?;
            match d.name.as_str() {
                "worker_connections" => match parse_number(&d.args[0]) {
                    Some(n) => {
                        self.main.worker_connections = usize::try_from(n).unwrap_or(usize::MAX)
                    }
                    None => return err(format!("invalid number \"{}\"", d.args[0]), d),
                },
                // The event modules nginx has on Linux; waypost uses epoll.
                "use" if !matches!(d.args[0].as_str(), "epoll" | "event_core") => {
                    return err(format!("invalid event type \"{}\"", d.args[0]), d);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `error_log FILE [LEVEL]`, with nginx's `ngx_log_set_levels` rules:
    /// one level, or any `debug_*` names (which mean debug).
    fn error_log(&self, d: &Directive) -> Result<(LogTarget, Level), ConfError> {
        const DEBUG_LEVELS: &[&str] = &[
            "debug_core",
            "debug_alloc",
            "debug_mutex",
            "debug_event",
            "debug_http",
            "debug_mail",
            "debug_stream",
        ];
        let target = match d.args[0].as_str() {
            "stderr" => LogTarget::Stderr,
            p => match p.strip_prefix("syslog:") {
                Some(args) => LogTarget::Syslog(
                    crate::log::syslog::Target::parse(args)
                        .map_err(|e| err::<()>(e, d).unwrap_err())?,
                ),
                None => LogTarget::File(self.resolve_path(p)),
            },
        };
        let mut level = None;
        let mut debug = false;
        for l in &d.args[1..] {
            if let Some(parsed) = Level::parse(l) {
                if level.is_some() || debug {
                    return err(format!("duplicate log level \"{l}\""), d);
                }
                level = Some(parsed);
            } else if DEBUG_LEVELS.contains(&l.as_str()) && level.is_none() {
                debug = true;
            } else {
                return err(format!("invalid log level \"{l}\""), d);
            }
        }
        let default = if debug { Level::Debug } else { Level::Error };
        Ok((target, level.unwrap_or(default)))
    }

    fn http_block(&mut self, items: &[Directive]) -> Result<(), ConfError> {
        let mut own = Layer::default();
        let mut seen = HashSet::new();
        // A `map`'s or `split_clients`'s variable is its second argument,
        // a `geo`'s its last.
        self.map_vars = items
            .iter()
            .filter(|d| {
                (matches!(d.name.as_str(), "map" | "split_clients") && d.args.len() == 2)
                    || d.name == "geo"
            })
            .filter_map(|d| d.args.last()?.strip_prefix('$'))
            .map(str::to_ascii_lowercase)
            .collect();
        // `set`'s variables are known everywhere, wherever it is written.
        let mut user = Vec::new();
        set_names(items, &mut user)?;
        // (A variable nginx knows, supported here or not, is no new one.)
        user.retain(|v| {
            !self.map_vars.contains(&v.name)
                && matches!(Var::parse(&v.name), Err(crate::vars::NameError::Unknown))
        });
        self.map_vars.extend(user.iter().map(|v| v.name.clone()));
        self.http.user_vars = user;
        self.answer_maps = answer_maps(items);
        for d in items {
            self.enter(d, Ctx::Http, &mut seen)?;
            if self.layer_directive(d, &mut own)? {
                continue;
            }
            match d.name.as_str() {
                "map" => self.map_block(d)?,
                "geo" => self.geo_block(d)?,
                "split_clients" => self.split_clients_block(d)?,
                "upstream" => self.upstream_block(d)?,
                "server" => self.server_block(d)?,
                "limit_conn_zone" => self.limit_conn_zone(d)?,
                "proxy_cache_path" | "fastcgi_cache_path" => self.cache_path(d)?,
                "log_format" => {
                    let name = d.args[0].clone();
                    if name == "combined" || self.http.log_formats.contains_key(&name) {
                        return err(format!("duplicate \"log_format\" name \"{name}\""), d);
                    }
                    let checked = self.check_log_format(&d.args[1..]);
                    self.check_vars(checked, d)?;
                    self.http.log_formats.insert(name, d.args[1..].to_vec());
                }
                "error_log" => {
                    self.error_log(d)?;
                }
                _ => {}
            }
        }
        self.http_layer = own;
        Ok(())
    }

    /// A `fastcgi_*` directive: FastCGI's own, or one `proxy_*` has too,
    /// read as that one is into the level's FastCGI settings (its
    /// messages naming the `fastcgi_` directive). Returns whether `d` was
    /// one.
    fn fastcgi_directive(
        &mut self,
        d: &Directive,
        rest: &str,
        layer: &mut Layer,
    ) -> Result<bool, ConfError> {
        match rest {
            "param" => {
                let if_not_empty = match d.args.get(2).map(String::as_str) {
                    None => false,
                    Some("if_not_empty") => true,
                    Some(other) => {
                        return err(format!("invalid parameter \"{other}\""), d);
                    }
                };
                self.check_vars(self.compile_check(&d.args[1]), d)?;
                layer.fcgi_params.get_or_insert_with(Vec::new).push((
                    d.args[0].clone(),
                    d.args[1].clone(),
                    if_not_empty,
                ));
            }
            "index" => layer.fcgi_index = Some(d.args[0].clone()),
            "split_path_info" => {
                let re = crate::pattern::Regex::new(&d.args[0], false)
                    .map_err(|e| ConfError::at(e, d.loc.clone()))?;
                // nginx's `ngx_http_fastcgi_split_path_info`: the script
                // name and the path info are the first two groups.
                if re.captures_len() != 3 {
                    return err(format!("pattern \"{}\" must have 2 captures", d.args[0]), d);
                }
                layer.fcgi_split = Some(d.args[0].clone());
            }
            "keep_conn" => layer.fcgi_keep_conn = Some(d.args[0].eq_ignore_ascii_case("on")),
            rest if crate::conf::directives::FASTCGI_TWINS.contains(&rest) => {
                // A zone named is the FastCGI module's, as nginx tags it.
                if rest == "cache" && d.args[0] != "off" && !d.args[0].contains('$') {
                    self.shared_memory_add(&d.args[0], 0, ZoneUse::FastCgiCache, d)?;
                }
                let proxy = format!("proxy_{rest}");
                let renamed = Directive {
                    name: proxy.clone(),
                    ..d.clone()
                };
                let own = layer.fcgi.get_or_insert_with(Box::default);
                self.renaming_fastcgi = true;
                let done = self.layer_directive(&renamed, own);
                self.renaming_fastcgi = false;
                done.map_err(|mut e| {
                    e.message = e.message.replace(&proxy, &d.name);
                    e
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Directives every level of http shares, into `layer`, the level's own
    /// settings. Returns whether `d` was one.
    fn layer_directive(&mut self, d: &Directive, layer: &mut Layer) -> Result<bool, ConfError> {
        if let Some(rest) = d.name.strip_prefix("fastcgi_") {
            return self.fastcgi_directive(d, rest, layer);
        }
        match d.name.as_str() {
            "proxy_set_header" => {
                self.check_header_value(d)?;
                let headers = layer.set_headers.get_or_insert_with(Vec::new);
                // Set twice in one level: nginx sends both lines.
                headers.push((d.args[0].clone(), d.args[1].clone()));
            }
            "proxy_http_version" => {
                layer.http11 = Some(match d.args[0].as_str() {
                    "1.0" => false,
                    "1.1" => true,
                    v => return err(format!("invalid value \"{v}\""), d),
                })
            }
            "proxy_next_upstream" => {
                // A bitmask: set twice in one level, the values add up.
                let mask = next_upstream(d)?.0 | layer.next_upstream.map_or(0, |m| m.0);
                layer.next_upstream = Some(NextUpstream(mask));
            }
            "add_header" => {
                let always = match d.args.get(2) {
                    None => false,
                    Some(a) if a == "always" => true,
                    Some(a) => return err(format!("invalid parameter \"{a}\""), d),
                };
                let checked = Template::compile_with(&d.args[1], &|n| self.filter_var(n));
                let checked = checked.map(|_| ());
                self.check_vars(checked, d)?;
                if http::HeaderName::from_bytes(d.args[0].as_bytes()).is_err() {
                    return err(format!("invalid header name \"{}\"", d.args[0]), d);
                }
                layer
                    .add_headers
                    .get_or_insert_with(Vec::new)
                    .push(AddHeader {
                        name: d.args[0].clone(),
                        value: d.args[1].clone(),
                        always,
                    });
            }
            "proxy_redirect" => {
                let (off, rules) = layer.redirects.get_or_insert_with(|| (false, Vec::new()));
                match &d.args[..] {
                    // nginx takes no line at a level after `off`.
                    _ if *off => return err("\"proxy_redirect\" directive is duplicate", d),
                    [one] if one == "off" => {
                        if !rules.is_empty() {
                            return err("\"proxy_redirect\" directive is duplicate", d);
                        }
                        *off = true;
                    }
                    // A location's `default` after its `proxy_pass` is taken
                    // in `location_block`, which knows the URL.
                    [one] if one == "default" => {
                        return err(
                            "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
                            d,
                        );
                    }
                    [one] => return err(format!("invalid parameter \"{one}\""), d),
                    [from, to] => {
                        match from.strip_prefix('~') {
                            Some(pattern) => {
                                let (pattern, caseless) = match pattern.strip_prefix('*') {
                                    Some(p) => (p, true),
                                    None => (pattern, false),
                                };
                                compile_regex(pattern, caseless, d)?;
                            }
                            None => self.check_vars(self.compile_check(from), d)?,
                        }
                        self.check_vars(self.compile_check(to), d)?;
                        let (_, rules) = layer.redirects.get_or_insert_with(|| (false, Vec::new()));
                        rules.push(Redirect {
                            from: from.clone(),
                            to: to.clone(),
                        });
                    }
                    _ => {
                        return err(
                            "invalid number of arguments in \"proxy_redirect\" directive",
                            d,
                        )
                    }
                }
            }
            "proxy_next_upstream_tries" => {
                layer.tries = Some(u32::try_from(number_arg(d, 0)?).unwrap_or(u32::MAX))
            }
            "proxy_next_upstream_timeout" => layer.next_timeout = Some(time_arg(d, 0)?),
            "proxy_connect_timeout" => layer.connect_timeout = Some(time_arg(d, 0)?),
            "proxy_send_timeout" => layer.send_timeout = Some(time_arg(d, 0)?),
            "proxy_read_timeout" => layer.read_timeout = Some(time_arg(d, 0)?),
            "proxy_ssl_verify" => layer.ssl_verify = Some(d.args[0].eq_ignore_ascii_case("on")),
            "proxy_ssl_server_name" => {
                layer.ssl_server_name = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            // nginx reads the file only where a location verifies, when
            // the levels are merged (`ngx_http_proxy_set_ssl`).
            "proxy_ssl_trusted_certificate" => layer.ssl_trusted = Some(self.conf_path(&d.args[0])),
            "proxy_ssl_crl" => layer.proxy_ssl_crl = Some(self.conf_path(&d.args[0])),
            "proxy_ssl_certificate" => {
                let path = self.conf_path(&d.args[0]);
                layer.proxy_ssl_cert = Some((d.args[0].clone(), path, d.loc.clone()));
            }
            "proxy_ssl_certificate_key" => {
                layer.proxy_ssl_key = Some((self.conf_path(&d.args[0]), d.loc.clone()));
            }
            "proxy_ssl_password_file" => {
                let path = self.conf_path(&d.args[0]);
                let passwords = password_file(&path).map_err(|e| err::<()>(e, d).unwrap_err())?;
                layer.proxy_ssl_passwords = Some(passwords);
            }
            "proxy_ssl_protocols" => {
                layer.proxy_ssl_protocols = Some(protocols(d, "proxy_ssl_protocols")?);
            }
            "proxy_ssl_ciphers" => {
                layer.proxy_ssl_ciphers = Some((d.args[0].clone(), d.loc.clone()))
            }
            "proxy_ssl_session_reuse" => {
                layer.proxy_ssl_session_reuse = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            // A complex value, compiled as it is read.
            "proxy_ssl_name" => {
                self.check_vars(self.compile_check(&d.args[0]), d)?;
                layer.ssl_name = Some(d.args[0].clone());
            }
            "keepalive_timeout" => {
                layer.keepalive_timeout = Some(time_arg(d, 0)?);
                // The optional "Keep-Alive: timeout=" value, in seconds.
                if let Some(header) = d.args.get(1) {
                    if parse_time_sec(header).is_none() {
                        return err("\"keepalive_timeout\" directive invalid value", d);
                    }
                }
            }
            "keepalive_requests" => layer.keepalive_requests = Some(number_arg(d, 0)?),
            "keepalive_time" => layer.keepalive_time = Some(time_arg(d, 0)?),
            "client_max_body_size" => {
                layer.max_body = Some(parse_offset(&d.args[0]).map_or_else(
                    || err("\"client_max_body_size\" directive invalid value", d),
                    Ok,
                )?)
            }
            "client_header_timeout" => layer.header_timeout = Some(time_arg(d, 0)?),
            "client_body_timeout" => layer.body_timeout = Some(time_arg(d, 0)?),
            "send_timeout" => layer.client_send_timeout = Some(time_arg(d, 0)?),
            "large_client_header_buffers" => {
                // ngx_conf_set_bufs_slot: a positive count and size.
                let number = parse_number(&d.args[0]).and_then(|n| u32::try_from(n).ok());
                let size = parse_size(&d.args[1]).and_then(|n| u32::try_from(n).ok());
                match (number, size) {
                    (Some(number), Some(size)) if number > 0 && size > 0 => {
                        layer.header_buffers = Some(HeaderBuffers { number, size })
                    }
                    _ => return err("\"large_client_header_buffers\" directive invalid value", d),
                }
            }
            "default_type" => layer.default_type = Some(d.args[0].clone()),
            "charset" => {
                if d.args[0].starts_with('$') {
                    return err("variables in \"charset\" are not supported", d);
                }
                layer.charset = Some(d.args[0].clone())
            }
            "expires" => {
                let parsed = expires(d)?;
                if let Some(ExpiresConf::Var { value, .. }) = &parsed {
                    // (Read with the answer, as `add_header`'s values.)
                    let checked = Template::compile_with(value, &|n| self.filter_var(n));
                    self.check_vars(checked.map(|_| ()), d)?;
                }
                layer.expires = Some(parsed);
            }
            "limit_rate" | "limit_rate_after" => {
                let Some(n) = parse_size(&d.args[0]) else {
                    return err(format!("\"{}\" directive invalid value", d.name), d);
                };
                if d.name == "limit_rate" {
                    layer.limit_rate = Some(n);
                } else {
                    layer.limit_rate_after = Some(n);
                }
            }
            "msie_padding" => layer.msie_padding = Some(d.args[0].eq_ignore_ascii_case("on")),
            "chunked_transfer_encoding" => {
                layer.chunked = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "error_page" => {
                let pages = layer.error_pages.get_or_insert_with(Vec::new);
                error_page(d, pages)?;
            }
            "recursive_error_pages" => {
                layer.recursive_error_pages = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "proxy_intercept_errors" => {
                layer.intercept_errors = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "internal" => layer.internal = Some(true),
            "root" | "alias" => self.root(d, layer)?,
            "index" => {
                let list = layer.index.get_or_insert_with(Vec::new);
                for (i, name) in d.args.iter().enumerate() {
                    if name.starts_with('/') && i + 1 != d.args.len() {
                        tracing::warn!(
                            "only the last index in \"index\" directive should be absolute in {}",
                            d.loc
                        );
                    }
                    if name.is_empty() {
                        return err(
                            format!("index \"{}\" in \"index\" directive is invalid", d.args[0]),
                            d,
                        );
                    }
                    self.check_vars(self.compile_check(name), d)?;
                    list.push(name.clone());
                }
            }
            "try_files" => {
                if layer.try_files.is_some() {
                    return err("\"try_files\" directive is duplicate", d);
                }
                for arg in &d.args {
                    self.check_vars(self.compile_check(arg), d)?;
                }
                let last = &d.args[d.args.len() - 1];
                if let Some(code) = last.strip_prefix('=') {
                    if !code.bytes().all(|c| c.is_ascii_digit())
                        || code.is_empty()
                        || code.parse::<u32>().map_or(true, |c| c > 999)
                    {
                        return err(format!("invalid code \"{last}\""), d);
                    }
                }
                layer.try_files = Some(d.args.clone());
            }
            "log_not_found" => layer.log_not_found = Some(d.args[0].eq_ignore_ascii_case("on")),
            "etag" => layer.etag = Some(d.args[0].eq_ignore_ascii_case("on")),
            "autoindex" => layer.autoindex = Some(d.args[0].eq_ignore_ascii_case("on")),
            "random_index" => layer.random_index = Some(d.args[0].eq_ignore_ascii_case("on")),
            "disable_symlinks" => {
                let parsed = disable_symlinks(d)?;
                if let Some(from) = parsed.as_ref().and_then(|s| s.from.as_deref()) {
                    self.check_vars(self.compile_check(from), d)?;
                }
                layer.disable_symlinks = Some(parsed);
            }
            "autoindex_exact_size" => {
                layer.autoindex_exact_size = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "autoindex_localtime" => {
                layer.autoindex_localtime = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "autoindex_format" => {
                layer.autoindex_format = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "html" => AutoindexFormat::Html,
                    "xml" => AutoindexFormat::Xml,
                    "json" => AutoindexFormat::Json,
                    "jsonp" => AutoindexFormat::Jsonp,
                    _ => return err(format!("invalid value \"{}\"", d.args[0]), d),
                })
            }
            "rewrite_log" => layer.rewrite_log = Some(d.args[0].eq_ignore_ascii_case("on")),
            "secure_link" | "secure_link_md5" => {
                self.check_vars(self.compile_check(&d.args[0]), d)?;
                let slot = if d.name == "secure_link" {
                    &mut layer.secure_link
                } else {
                    &mut layer.secure_link_md5
                };
                *slot = Some(d.args[0].clone());
            }
            "secure_link_secret" => layer.secure_link_secret = Some(d.args[0].clone()),
            "valid_referers" => {
                for word in &d.args {
                    if let Some(pattern) = word.strip_prefix('~') {
                        compile_regex(pattern, true, d)?;
                    }
                }
                crate::http::referer::Referers::new(&d.args, &[])
                    .map_err(|e| err::<()>(e, d).unwrap_err())?;
                layer
                    .valid_referers
                    .get_or_insert_with(Vec::new)
                    .extend(d.args.iter().cloned());
            }
            "max_ranges" => {
                // (nginx's `num` slot takes up to `NGX_MAX_INT_T_VALUE`,
                // kept in a 32-bit field.)
                layer.max_ranges = Some(u32::try_from(number_arg(d, 0)?).unwrap_or(u32::MAX));
            }
            "if_modified_since" => {
                layer.if_modified_since = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "off" => IfModifiedSince::Off,
                    "exact" => IfModifiedSince::Exact,
                    "before" => IfModifiedSince::Before,
                    _ => return err(format!("invalid value \"{}\"", d.args[0]), d),
                })
            }
            "merge_slashes" => layer.merge_slashes = Some(d.args[0].eq_ignore_ascii_case("on")),
            "absolute_redirect" => {
                layer.absolute_redirect = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "port_in_redirect" => {
                layer.port_in_redirect = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "server_name_in_redirect" => {
                layer.server_name_in_redirect = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "source_charset" => layer.source_charset = Some(d.args[0].clone()),
            "override_charset" => {
                if d.args[0].eq_ignore_ascii_case("on") {
                    return err(
                        "\"override_charset on\" is not supported: waypost does not recode",
                        d,
                    );
                }
            }
            // Set at a level, the list is text/html and its own (the six
            // defaults are for levels without one).
            "charset_types" => {
                layer.charset_types = Some(mime_types(layer.charset_types.take(), d))
            }
            "types" => {
                let types = layer.types.get_or_insert_with(Default::default);
                let types = Arc::make_mut(types);
                for item in d.block.as_ref().map_or(&[][..], |b| &b.items[..]) {
                    for ext in &item.args {
                        let ext = ext.to_ascii_lowercase();
                        if let Some(old) = types.insert(ext.clone(), item.name.clone()) {
                            tracing::warn!(
                                "duplicate extension \"{ext}\", content type: \"{}\", previous content type: \"{old}\" in {}",
                                item.name,
                                item.loc
                            );
                        }
                    }
                }
            }
            "proxy_cookie_flags" => {
                let (off, rules) = layer
                    .cookie_flags
                    .get_or_insert_with(|| (false, Vec::new()));
                match &d.args[..] {
                    _ if *off => return err("\"proxy_cookie_flags\" directive is duplicate", d),
                    [one, ..] if one == "off" => {
                        if !rules.is_empty() {
                            return err("\"proxy_cookie_flags\" directive is duplicate", d);
                        }
                        *off = true;
                    }
                    [one] => return err(format!("invalid parameter \"{one}\""), d),
                    [cookie, flags @ ..] => {
                        match cookie.strip_prefix('~') {
                            Some(p) => {
                                compile_regex(p, true, d)?;
                            }
                            None => {
                                let checked = self.compile_check(cookie);
                                self.check_vars(checked, d)?;
                            }
                        }
                        rules.push((cookie.clone(), flags.to_vec()));
                    }
                    [] => {
                        return err(
                            "invalid number of arguments in \"proxy_cookie_flags\" directive",
                            d,
                        )
                    }
                }
            }
            "proxy_cookie_domain" | "proxy_cookie_path" => {
                let level = if d.name == "proxy_cookie_domain" {
                    &mut layer.cookie_domains
                } else {
                    &mut layer.cookie_paths
                };
                let (off, rules) = level.get_or_insert_with(|| (false, Vec::new()));
                match &d.args[..] {
                    // nginx takes no line at a level after `off`, nor
                    // `off` after rules.
                    _ if *off => return err(format!("\"{}\" directive is duplicate", d.name), d),
                    [one] if one == "off" => {
                        if !rules.is_empty() {
                            return err(format!("\"{}\" directive is duplicate", d.name), d);
                        }
                        *off = true;
                    }
                    [one] => return err(format!("invalid parameter \"{one}\""), d),
                    [from, to] => {
                        // A regex's `$` is its own; a plain pattern's is a
                        // variable, which waypost does not evaluate there.
                        if !from.starts_with('~') && from.contains('$') {
                            return err(
                                format!(
                                    "variables in the pattern of \"{}\" are not supported",
                                    d.name
                                ),
                                d,
                            );
                        }
                        if let Some(p) = from.strip_prefix('~') {
                            // A domain regex is always without case in
                            // nginx (`~*` is no modifier there).
                            let (p, caseless) = match p.strip_prefix('*') {
                                Some(p) if d.name == "proxy_cookie_path" => (p, true),
                                _ => (p, d.name == "proxy_cookie_domain"),
                            };
                            compile_regex(p, caseless, d)?;
                        }
                        let checked = self.compile_check(to);
                        self.check_vars(checked, d)?;
                        rules.push(CookieRule {
                            from: from.clone(),
                            to: to.clone(),
                        });
                    }
                    _ => {}
                }
            }
            "proxy_hide_header" => layer
                .hide_headers
                .get_or_insert_with(Vec::new)
                .push(d.args[0].to_ascii_lowercase()),
            "proxy_pass_header" => layer
                .pass_headers
                .get_or_insert_with(Vec::new)
                .push(d.args[0].to_ascii_lowercase()),
            "proxy_buffer_size" => layer.buffers.size = Some(size_arg(d, 0)?),
            "proxy_busy_buffers_size" => layer.buffers.busy = Some(size_arg(d, 0)?),
            "proxy_temp_file_write_size" => layer.buffers.temp_write = Some(size_arg(d, 0)?),
            "proxy_max_temp_file_size" => layer.buffers.max_temp = Some(size_arg(d, 0)?),
            "client_body_buffer_size" | "client_header_buffer_size" => {
                size_arg(d, 0)?;
            }
            "proxy_buffers" => {
                let number = parse_number(&d.args[0]).filter(|&n| n > 0);
                match (number, parse_size(&d.args[1]).filter(|&s| s > 0)) {
                    (Some(n), Some(s)) => layer.buffers.bufs = Some((n, s)),
                    _ => return err(format!("\"{}\" directive invalid value", d.name), d),
                }
            }
            // `PATH [LEVEL [LEVEL [LEVEL]]]`: levels are positive numbers.
            "proxy_temp_path" | "client_body_temp_path" => {
                if d.args[1..]
                    .iter()
                    .any(|l| parse_number(l).is_none_or(|n| n == 0))
                {
                    return err(format!("\"{}\" directive invalid value", d.name), d);
                }
            }
            // No hash tables to size here: the value is checked as nginx
            // checks it, and the file loads.
            name if HASH_SIZES.contains(&name) => {
                number_arg(d, 0)?;
            }
            name if crate::conf::tuning::TUNING.contains(&name) => {
                crate::conf::tuning::check(d)?;
            }
            name if crate::conf::cache::DIRECTIVES.contains(&name) => {
                let zone = &d.args[0];
                if name == "proxy_cache"
                    && !self.renaming_fastcgi
                    && zone != "off"
                    && !zone.contains('$')
                {
                    self.shared_memory_add(zone, 0, ZoneUse::Cache, d)?;
                }
                let mut check = |text: &str, d: &Directive| {
                    let checked = self.compile_check(text);
                    self.check_vars(checked, d)
                };
                crate::conf::cache::directive(d, &mut layer.cache, &mut check)?;
            }
            "gzip" => layer.gzip.on = Some(d.args[0].eq_ignore_ascii_case("on")),
            "gunzip" => layer.gzip.gunzip = Some(d.args[0].eq_ignore_ascii_case("on")),
            "gzip_vary" => layer.gzip.vary = Some(d.args[0].eq_ignore_ascii_case("on")),
            "gzip_static" => {
                // (nginx's enum slot takes the words without case.)
                layer.gzip.static_ = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "off" => None,
                    "on" => Some(false),
                    "always" => Some(true),
                    _ => return err(format!("invalid value \"{}\"", d.args[0]), d),
                })
            }
            "gzip_min_length" => layer.gzip.min_length = Some(size_arg(d, 0)?),
            "gzip_comp_level" => {
                let level = number_arg(d, 0)?;
                if !(1..=9).contains(&level) {
                    return err("value must be between 1 and 9", d);
                }
                layer.gzip.level = Some(level as u32);
            }
            "gzip_http_version" => {
                layer.gzip.http10 = Some(match d.args[0].as_str() {
                    "1.0" => true,
                    "1.1" => false,
                    v => return err(format!("invalid value \"{v}\""), d),
                })
            }
            // Repeated at a level, the values add up (nginx's bitmask and
            // arrays).
            "gzip_proxied" => {
                let mut mask = layer.gzip.proxied.unwrap_or(0);
                for v in &d.args {
                    mask |= match v.as_str() {
                        "off" => GZIP_PROXIED_OFF,
                        "expired" => GZIP_PROXIED_EXPIRED,
                        "no-cache" => GZIP_PROXIED_NO_CACHE,
                        "no-store" => GZIP_PROXIED_NO_STORE,
                        "private" => GZIP_PROXIED_PRIVATE,
                        "no_last_modified" => GZIP_PROXIED_NO_LM,
                        "no_etag" => GZIP_PROXIED_NO_ETAG,
                        "auth" => GZIP_PROXIED_AUTH,
                        "any" => GZIP_PROXIED_ANY,
                        _ => return err(format!("invalid value \"{v}\""), d),
                    };
                }
                layer.gzip.proxied = Some(mask);
            }
            "gzip_types" => layer.gzip.types = Some(mime_types(layer.gzip.types.take(), d)),
            "sub_filter" => {
                if d.args[0].is_empty() {
                    return err("empty search pattern", d);
                }
                let pairs = layer.sub_filters.get_or_insert_with(Vec::new);
                if pairs.len() == 255 {
                    return err("number of search patterns exceeds 255", d);
                }
                pairs.push((d.args[0].clone(), d.args[1].clone()));
                self.check_vars(self.compile_check(&d.args[0]), d)?;
                self.check_vars(self.compile_check(&d.args[1]), d)?;
            }
            "sub_filter_once" => layer.sub_once = Some(d.args[0].eq_ignore_ascii_case("on")),
            "sub_filter_last_modified" => {
                layer.sub_last_modified = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "sub_filter_types" => layer.sub_types = Some(mime_types(layer.sub_types.take(), d)),
            "gzip_disable" => {
                // As nginx: `msie6` is a flag inherited on its own; the
                // expressions are a list a level with any line replaces.
                let mut patterns = layer.gzip.disable.take().unwrap_or_default();
                for p in &d.args {
                    if p == "msie6" {
                        layer.gzip.msie6 = Some(true);
                    } else {
                        compile_regex(p, true, d)?;
                        patterns.push(p.clone());
                    }
                }
                layer.gzip.disable = Some(patterns);
            }
            "gzip_buffers" | "gunzip_buffers" | "output_buffers" => {
                let number = parse_number(&d.args[0]).filter(|&n| n > 0);
                if number.is_none() || parse_size(&d.args[1]).is_none_or(|s| s == 0) {
                    return err(format!("\"{}\" directive invalid value", d.name), d);
                }
            }
            // Accepted so that nginx files load, their values checked as
            // nginx checks them; nothing here to tune.
            "postpone_output" | "send_lowat" | "read_ahead" | "sendfile_max_chunk"
            | "directio_alignment" => {
                size_arg(d, 0)?;
                // (nginx has no SO_SNDLOWAT on Linux either.)
                if d.name == "send_lowat" {
                    tracing::warn!("\"send_lowat\" is not supported, ignored in {}", d.loc);
                }
            }
            "directio" if !d.args[0].eq_ignore_ascii_case("off") => {
                size_arg(d, 0)?;
            }
            "open_file_cache_valid" => {
                time_arg(d, 0)?;
            }
            "log_subrequest" => {
                if d.args[0].eq_ignore_ascii_case("on") {
                    return err(format!("\"{} {}\" is not supported", d.name, d.args[0]), d);
                }
            }
            "open_file_cache_min_uses" => {
                number_arg(d, 0)?;
            }
            "open_file_cache" | "open_log_file_cache" if d.args[0] != "off" => {
                for arg in &d.args {
                    let known = ["max=", "inactive=", "min_uses=", "valid="]
                        .iter()
                        .any(|p| arg.starts_with(p));
                    if !known {
                        return err(format!("invalid \"{}\" parameter \"{arg}\"", d.name), d);
                    }
                }
            }
            "ssl_prefer_server_ciphers" => {
                layer.ssl_prefer_server = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "underscores_in_headers" => {
                layer.underscores = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "ignore_invalid_headers" => {
                layer.ignore_invalid = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "access_log" => self.access_log_line(d, &mut layer.access_log)?,
            "set_real_ip_from" => {
                let from = real_ip_from(d)?;
                layer.realip_from.get_or_insert_with(Vec::new).extend(from);
            }
            "real_ip_header" => layer.realip_source = Some(Source::parse(&d.args[0])),
            "allow" | "deny" => {
                let allow = d.name == "allow";
                let rules = access_rule(d)?.into_iter().map(|cidr| Rule { allow, cidr });
                layer.access.get_or_insert_with(Vec::new).extend(rules);
            }
            "proxy_method" | "proxy_set_body" => {
                let checked = self.compile_check(&d.args[0]);
                self.check_vars(checked, d)?;
                let value = Some(d.args[0].clone());
                match d.name.as_str() {
                    "proxy_method" => layer.proxy_method = value,
                    _ => layer.proxy_set_body = value,
                }
            }
            "proxy_pass_request_headers" => {
                layer.pass_request_headers = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "proxy_pass_request_body" => {
                layer.pass_request_body = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "proxy_ignore_client_abort" => {
                layer.proxy_ignore_client_abort = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "proxy_buffering" => layer.proxy_buffering = Some(d.args[0].eq_ignore_ascii_case("on")),
            "proxy_socket_keepalive" => {
                layer.proxy_socket_keepalive = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "proxy_bind" => layer.proxy_bind = Some(self.proxy_bind(d)?),
            "auth_basic" => {
                let checked = self.compile_check(&d.args[0]);
                self.check_vars(checked, d)?;
                layer.auth_realm = Some(d.args[0].clone());
            }
            "auth_basic_user_file" => {
                if d.args[0].contains('$') {
                    return err("variables in \"auth_basic_user_file\" are not supported", d);
                }
                layer.auth_file = Some(self.conf_path(&d.args[0]));
            }
            "auth_request" => {
                let uri = d.args[0].clone();
                layer.auth_request = Some((uri != "off").then(|| (uri, d.loc.clone())));
            }
            // nginx's `ngx_http_mirror`: `off` alone at a level, URIs
            // taken as written (no variables).
            "mirror" => {
                let uri = &d.args[0];
                match &mut layer.mirror {
                    Some(_) if uri == "off" => return err("\"mirror\" directive is duplicate", d),
                    Some(None) => return err("\"mirror\" directive is duplicate", d),
                    Some(Some(uris)) => uris.push(uri.clone()),
                    None => layer.mirror = Some((uri != "off").then(|| vec![uri.clone()])),
                }
            }
            "mirror_request_body" => {
                layer.mirror_request_body = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "auth_request_set" => {
                let index = self.user_var_target(d)?;
                let maps = |n: &str| self.map_var(n);
                let checked = crate::http::auth_request::compile(&d.args[1], &maps).map(|_| ());
                self.check_vars(checked, d)?;
                layer
                    .auth_request_set
                    .get_or_insert_with(Vec::new)
                    .push((index, d.args[1].clone()));
            }
            "satisfy" => {
                // nginx's enum slots compare without case.
                layer.satisfy_any = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "all" => false,
                    "any" => true,
                    v => return err(format!("invalid value \"{v}\""), d),
                })
            }
            "limit_conn" => {
                let zone = &d.args[0];
                self.shared_memory_add(zone, 0, ZoneUse::LimitConn, d)?;
                let limits = layer.limit_conn.get_or_insert_with(Vec::new);
                if limits.iter().any(|(z, _)| z == zone) {
                    return err("\"limit_conn\" directive is duplicate", d);
                }
                let n = &d.args[1];
                let number = match parse_number(n) {
                    Some(n) if n > 0 => n,
                    _ => return err(format!("invalid number of connections \"{n}\""), d),
                };
                let Ok(number) = u16::try_from(number) else {
                    return err("connection limit must be less 65536", d);
                };
                limits.push((zone.clone(), number));
            }
            "limit_conn_status" => {
                let Some(code) = parse_number(&d.args[0]) else {
                    return err("\"limit_conn_status\" directive invalid number", d);
                };
                if !(400..=599).contains(&code) {
                    return err("value must be between 400 and 599", d);
                }
                layer.limit_conn_status = Some(code as u16);
            }
            "limit_conn_log_level" => {
                layer.limit_conn_level = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "info" => Level::Info,
                    "notice" => Level::Notice,
                    "warn" => Level::Warn,
                    "error" => Level::Error,
                    v => return err(format!("invalid value \"{v}\""), d),
                });
            }
            "limit_conn_dry_run" => {
                layer.limit_conn_dry_run = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "real_ip_recursive" => {
                layer.realip_recursive = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "ssl_certificate" => {
                let path = self.conf_path(&d.args[0]);
                layer.ssl_certificates.get_or_insert_with(Vec::new).push((
                    d.args[0].clone(),
                    path,
                    d.loc.clone(),
                ));
            }
            "ssl_certificate_key" => {
                let path = self.conf_path(&d.args[0]);
                layer
                    .ssl_keys
                    .get_or_insert_with(Vec::new)
                    .push((path, d.loc.clone()));
            }
            "ssl_protocols" => {
                let mask = layer.ssl_protocols.unwrap_or(0) | protocols(d, "ssl_protocols")?;
                layer.ssl_protocols = Some(mask);
            }
            "ssl_ciphers" => layer.ssl_ciphers = Some((d.args[0].clone(), d.loc.clone())),
            "ssl_session_cache" => {
                let (sessions, zone) = session_cache(d)?;
                if let Some((name, bytes)) = &zone {
                    self.ssl_zone(name, *bytes, d)?;
                }
                let shared = zone.filter(|_| sessions > 0).map(|z| z.0);
                layer.ssl_session_cache = Some((sessions, shared));
            }
            "ssl_session_tickets" => {
                layer.ssl_session_tickets = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "ssl_dhparam" => layer.ssl_dhparam = Some((self.conf_path(&d.args[0]), d.loc.clone())),
            "ssl_password_file" => {
                let path = self.conf_path(&d.args[0]);
                layer.ssl_passwords =
                    Some(password_file(&path).map_err(|e| err::<()>(e, d).unwrap_err())?);
            }
            "ssl_ecdh_curve" => layer.ssl_ecdh_curve = Some(d.args[0].clone()),
            "ssl_verify_client" => {
                layer.ssl_verify_client = Some(match d.args[0].to_ascii_lowercase().as_str() {
                    "off" => VerifyClient::Off,
                    "on" => VerifyClient::On,
                    "optional" => VerifyClient::Optional,
                    "optional_no_ca" => VerifyClient::OptionalNoCa,
                    _ => return err(format!("invalid value \"{}\"", d.args[0]), d),
                })
            }
            "ssl_verify_depth" => {
                crate::conf::tuning::check(d)?;
                layer.ssl_verify_depth =
                    parse_number(&d.args[0]).map(|n| n.min(u64::from(u32::MAX)) as u32);
            }
            "ssl_client_certificate" => {
                layer.ssl_client_certificate = Some(self.conf_path(&d.args[0]))
            }
            "ssl_crl" => layer.ssl_crl = Some(self.conf_path(&d.args[0])),
            "ssl_reject_handshake" => {
                layer.ssl_reject_handshake = Some(d.args[0].eq_ignore_ascii_case("on"))
            }
            "ssl_stapling" => layer.ssl_stapling = Some(d.args[0].eq_ignore_ascii_case("on")),
            "ssl_trusted_certificate" => {
                layer.ssl_trusted_certificate = Some(self.conf_path(&d.args[0]))
            }
            "ssl_stapling_file" => layer.ssl_stapling_file = Some(self.conf_path(&d.args[0])),
            // Only used for stapling, which waypost does not do.
            "ssl_stapling_verify" | "ssl_stapling_responder" => {}
            "resolver" => layer.resolver = Some(resolver(d)?),
            "resolver_timeout" => match parse_time(&d.args[0]) {
                Some(t) => layer.resolver_timeout = Some(t),
                None => return err("\"resolver_timeout\" directive invalid value", d),
            },
            "ssl_session_timeout" => {
                layer.ssl_session_timeout = Some(
                    parse_time_sec(&d.args[0])
                        .map(Duration::from_secs)
                        .map_or_else(
                            || err("\"ssl_session_timeout\" directive invalid value", d),
                            Ok,
                        )?,
                )
            }
            "http2" => layer.http2 = Some(d.args[0].eq_ignore_ascii_case("on")),
            other => match self.module_directives.get(other) {
                Some(&(module, spec)) if !spec.balancer => layer.filters.push(ModuleDirective {
                    module,
                    name: d.name.clone(),
                    args: d.args.clone(),
                    loc: d.loc.clone(),
                }),
                _ => return Ok(false),
            },
        }
        Ok(true)
    }

    /// One `access_log` line into a level's (`off` marks the level).
    fn access_log_line(
        &mut self,
        d: &Directive,
        level: &mut Option<AccessLogs>,
    ) -> Result<(), ConfError> {
        let log = self.access_log(d)?;
        let level = level.get_or_insert_with(AccessLogs::default);
        match log {
            Some(log) => level.logs.push(log),
            None => level.off = true,
        }
        Ok(())
    }

    /// `access_log PATH [FORMAT [buffer=SIZE] [flush=TIME] [gzip[=N]]
    /// [if=COND]] | off`, checked as nginx's `ngx_http_log_set_log`, in its
    /// order and with its messages; then what waypost does not do (`gzip`,
    /// variables in PATH) is refused.
    fn access_log(&mut self, d: &Directive) -> Result<Option<AccessLogConf>, ConfError> {
        let path = &d.args[0];
        if path == "off" {
            return match d.args.get(1) {
                Some(extra) => err(format!("invalid parameter \"{extra}\""), d),
                None => Ok(None),
            };
        }
        let syslog = path.starts_with("syslog:");
        // nginx finds the format case-insensitively; `combined` comes first.
        let name = d.args.get(1).map_or("combined", String::as_str);
        let format = if name.eq_ignore_ascii_case("combined") {
            "combined".to_owned()
        } else if self.http.log_formats.contains_key(name) {
            name.to_owned()
        } else {
            let mut same: Vec<&String> = self
                .http
                .log_formats
                .keys()
                .filter(|k| k.eq_ignore_ascii_case(name))
                .collect();
            same.sort();
            match same.first() {
                Some(k) => (*k).clone(),
                None => return err(format!("unknown log format \"{name}\""), d),
            }
        };
        let mut size: usize = 0;
        let mut flush = None;
        let mut gzip: Option<(u32, &String)> = None;
        let mut condition = None;
        for v in d.args.iter().skip(2) {
            if let Some(s) = v.strip_prefix("buffer=") {
                match parse_size(s).and_then(|n| usize::try_from(n).ok()) {
                    Some(n) if n > 0 => size = n,
                    _ => return err(format!("invalid buffer size \"{s}\""), d),
                }
            } else if let Some(s) = v.strip_prefix("flush=") {
                match parse_time(s) {
                    Some(t) if !t.is_zero() => flush = Some(t),
                    _ => return err(format!("invalid flush time \"{s}\""), d),
                }
            } else if v == "gzip" || v.starts_with("gzip=") {
                if size == 0 {
                    size = 64 * 1024;
                }
                let level = match v.strip_prefix("gzip=") {
                    None => 1,
                    Some(s) => match parse_number(s) {
                        Some(n @ 1..=9) => n as u32,
                        _ => return err(format!("invalid compression level \"{s}\""), d),
                    },
                };
                gzip = Some((level, v));
            } else if let Some(s) = v.strip_prefix("if=") {
                let checked = self.check_log_vars(|vars| access::check_condition(s, vars));
                self.check_vars(checked, d)?;
                condition = Some(s.to_owned());
            } else {
                return err(format!("invalid parameter \"{v}\""), d);
            }
        }
        if flush.is_some() && size == 0 {
            return err(format!("no buffer is defined for access_log \"{path}\""), d);
        }
        let full = match path.strip_prefix("syslog:") {
            Some(args) => {
                crate::log::syslog::Target::parse(args)
                    .map_err(|e| err::<()>(e, d).unwrap_err())?;
                PathBuf::from(path)
            }
            None => self.resolve_path(path),
        };
        let buffer = (size > 0).then_some(Buffering { size, flush });
        if let Some(b) = buffer {
            if !syslog && path.contains('$') {
                return err("buffered logs cannot have variables in name", d);
            }
            if syslog {
                return err("logs to syslog cannot be buffered", d);
            }
            let level = gzip.map(|g| g.0);
            match self.log_buffers.get(&full) {
                Some(&had) if had != (b, level) => {
                    return err(
                        format!(
                            "access_log \"{path}\" already defined with conflicting parameters"
                        ),
                        d,
                    )
                }
                Some(_) => {}
                None => {
                    self.log_buffers.insert(full.clone(), (b, level));
                }
            }
        }
        // What nginx accepts and waypost does not do.
        if let Some((_, v)) = gzip {
            return err(format!("\"{v}\" is not supported"), d);
        }
        if path.contains('$') {
            return err("variables in the \"access_log\" path are not supported", d);
        }
        Ok(Some(AccessLogConf {
            path: full,
            format,
            buffer,
            condition,
        }))
    }

    /// A compiled `return` text or `log_format`: a malformed `$` or a
    /// variable waypost lacks is an error at `d`; an unknown variable is
    /// kept for the end of `http`, where nginx reports it.
    fn check_vars(
        &mut self,
        result: Result<(), CompileError>,
        d: &Directive,
    ) -> Result<(), ConfError> {
        match result.map_err(|e| self.answer_map_error(e)) {
            Ok(()) => Ok(()),
            Err(e @ CompileError::Unknown(_)) => {
                self.unknown_var
                    .get_or_insert_with(|| ConfError::at(e.to_string(), d.loc.clone()));
                Ok(())
            }
            Err(e) => err(e.to_string(), d),
        }
    }

    /// A `log_format`'s strings, with the variables filter modules declare
    /// (`$limit_req_status`); the modules directory is read first when a
    /// name is unknown, since the format may come before the module's
    /// directives.
    fn check_log_format(&mut self, args: &[String]) -> Result<(), CompileError> {
        self.check_log_vars(|vars| access::check(args, vars))
    }

    /// Runs `check` (a `log_format` or an `access_log ... if=`) with the
    /// variables filter modules declare, reading the modules directory
    /// first if a name is unknown.
    fn check_log_vars(
        &mut self,
        check: impl Fn(access::ModuleVars<'_>) -> Result<(), CompileError>,
    ) -> Result<(), CompileError> {
        let first = {
            let vars = self.module_variables();
            check(&|n| self.log_var(&vars, n))
        };
        if matches!(
            first,
            Err(CompileError::Unknown(_) | CompileError::Unsupported(_))
        ) && !self.scanned
        {
            self.scan_modules();
            let vars = self.module_variables();
            return check(&|n| self.log_var(&vars, n)).map_err(|e| self.answer_map_error(e));
        }
        first.map_err(|e| self.answer_map_error(e))
    }

    /// A variable a log format may use beyond nginx's: a filter module's
    /// (among `modules`) or a map's.
    fn log_var(&self, modules: &[String], name: &str) -> Option<access::ConfVar> {
        if modules.iter().any(|v| v == name) {
            return Some(access::ConfVar::Module(0));
        }
        self.map_var(name).map(access::ConfVar::Var)
    }

    /// Compiles a template to check it, with the `map` variables.
    /// A line of the rewrite module: `rewrite` (its replacement checked
    /// with the regex's named groups as variables), `break`, `set`, or an
    /// `if` block of such lines and `return`s.
    fn rewrite_line(&mut self, d: &Directive, server_level: bool) -> Result<RewriteOp, ConfError> {
        match d.name.as_str() {
            "set" => return self.set_line(d),
            "if" => return self.if_block(d, server_level),
            _ => {}
        }
        let op = rewrite_op(d)?;
        if let RewriteOp::Rewrite(r) = &op {
            let groups = compile_regex(&r.pattern, false, d)?;
            let groups = crate::http::rewrite::named_groups(&groups);
            let checked = {
                let scope = |n: &str| {
                    groups
                        .iter()
                        .any(|(name, _)| name == n)
                        .then_some(Var::Capture(0))
                        .or_else(|| self.map_var(n))
                };
                Template::compile_with(&r.replacement, &scope).map(|_| ())
            };
            self.check_vars(checked, d)?;
        }
        Ok(op)
    }

    /// `auth_request_set $VAR VALUE`'s variable: its index among the user
    /// variables, or nginx's refusal (waypost's for one nginx changes and
    /// waypost does not).
    fn user_var_target(&self, d: &Directive) -> Result<u32, ConfError> {
        let Some(name) = d.args[0].strip_prefix('$').filter(|n| !n.is_empty()) else {
            return err(format!("invalid variable name \"{}\"", d.args[0]), d);
        };
        let name = name.to_ascii_lowercase();
        if let Some(index) = self.http.user_vars.iter().position(|v| v.name == name) {
            return Ok(index as u32);
        }
        let prefixed = ["arg_", "http_", "cookie_", "sent_http_", "upstream_http_"]
            .iter()
            .any(|p| name.starts_with(p));
        if prefixed
            || matches!(name.as_str(), "args" | "limit_rate")
            || self.map_vars.contains(&name)
        {
            return err(
                format!(
                    "\"{}\" of the \"${name}\" variable is not supported",
                    d.name
                ),
                d,
            );
        }
        err(format!("the duplicate \"{name}\" variable"), d)
    }

    /// `set $VAR VALUE`, as nginx's `ngx_http_rewrite_set`.
    fn set_line(&mut self, d: &Directive) -> Result<RewriteOp, ConfError> {
        let Some(name) = d.args[0].strip_prefix('$').filter(|n| !n.is_empty()) else {
            return err(format!("invalid variable name \"{}\"", d.args[0]), d);
        };
        let name = name.to_ascii_lowercase();
        let Some(index) = self.http.user_vars.iter().position(|v| v.name == name) else {
            // A built-in or `map` variable: nginx changes a few of them
            // (`$args`, `$limit_rate`, a map's), refuses the others.
            let prefixed = ["arg_", "http_", "cookie_", "sent_http_", "upstream_http_"]
                .iter()
                .any(|p| name.starts_with(p));
            return match name.as_str() {
                // (`$query_string` is nginx's duplicate of `$args`.)
                "args" => {
                    self.check_vars(self.compile_check(&d.args[1]), d)?;
                    Ok(RewriteOp::SetArgs(d.args[1].clone()))
                }
                "limit_rate" => err(
                    format!("\"set\" of the \"${name}\" variable is not supported"),
                    d,
                ),
                _ if prefixed => err(
                    format!("\"set\" of the \"${name}\" variable is not supported"),
                    d,
                ),
                _ if self.map_vars.contains(&name) => err(
                    format!("\"set\" of the \"${name}\" variable is not supported"),
                    d,
                ),
                _ => err(format!("the duplicate \"{name}\" variable"), d),
            };
        };
        self.check_vars(self.compile_check(&d.args[1]), d)?;
        Ok(RewriteOp::Set(index, d.args[1].clone()))
    }

    /// `if (CONDITION) { ... }` with rewrite module lines, as nginx's
    /// `ngx_http_rewrite_if` reads it.
    fn if_block(&mut self, d: &Directive, server_level: bool) -> Result<RewriteOp, ConfError> {
        let cond = if_condition(d)?;
        match &cond {
            // One variable's name, all of the token (`$1`, `$a~b` are no
            // variables nginx knows).
            IfCond::Var(v) | IfCond::Equal { var: v, .. } | IfCond::Regex { var: v, .. }
                if !is_variable_name(v) =>
            {
                let name = v[1..].to_ascii_lowercase();
                self.check_vars(Err(CompileError::Unknown(name)), d)?;
            }
            _ => {}
        }
        match &cond {
            IfCond::Var(v) => self.check_vars(self.compile_check(v), d)?,
            IfCond::Equal { var, value, .. } => {
                self.check_vars(self.compile_check(var), d)?;
                self.check_vars(self.compile_check(value), d)?;
            }
            IfCond::Regex {
                var,
                pattern,
                caseless,
                ..
            } => {
                self.check_vars(self.compile_check(var), d)?;
                compile_regex(pattern, *caseless, d)?;
            }
            IfCond::File { path, .. } => self.check_vars(self.compile_check(path), d)?,
        }
        let mut ops = Vec::new();
        let mut seen = HashSet::new();
        // A location `if`'s own header filters and handler.
        let mut own = Layer::default();
        let mut proxy = None;
        for item in d.block.as_ref().map_or(&[][..], |b| &b.items[..]) {
            match item.name.as_str() {
                "rewrite" | "break" | "set" | "return" => {
                    self.enter(item, Ctx::Location, &mut seen)?;
                }
                // (`sendfile` tunes what waypost does its own way: checked,
                // as at a location's level.)
                "add_header" | "expires" | "limit_rate" | "limit_rate_after" | "access_log"
                | "gzip" | "root" | "sendfile"
                    if !server_level =>
                {
                    self.enter(item, Ctx::Location, &mut seen)?;
                    self.layer_directive(item, &mut own)?;
                    continue;
                }
                "proxy_pass" if !server_level => {
                    self.enter(item, Ctx::Location, &mut seen)?;
                    proxy = Some(self.if_proxy_pass(item)?);
                    continue;
                }
                "fastcgi_pass" if !server_level => {
                    self.enter(item, Ctx::Location, &mut seen)?;
                    proxy = Some(self.if_fastcgi_pass(item)?);
                    continue;
                }
                // The rewrite module's: nothing for waypost to warn of, and
                // a block's `rewrite_log` changes nothing in nginx (its
                // rewrite phase read the flag of the level it started at,
                // and runs again only at another location).
                "uninitialized_variable_warn" | "rewrite_log" => {
                    self.enter(item, Ctx::Location, &mut seen)?;
                    continue;
                }
                // What nginx refuses in an `if` (a server's takes the
                // rewrite module's lines only; a location's no `location`,
                // `if` or module directive), then what waypost does not
                // take there.
                other if server_level || !NGINX_IN_LOCATION_IF.contains(&other) => {
                    return err(format!("\"{other}\" directive is not allowed here"), item)
                }
                other => {
                    return err(
                        format!("\"{other}\" inside \"if\" is not supported (only rewrite, return, set, break, add_header, expires, limit_rate, limit_rate_after, access_log, proxy_pass, gzip, root, sendfile, rewrite_log and uninitialized_variable_warn)"),
                        item,
                    )
                }
            }
            ops.push(match item.name.as_str() {
                "return" => {
                    let ret = return_args(item)?;
                    self.check_return(&ret, item)?;
                    RewriteOp::Return(ret)
                }
                _ => self.rewrite_line(item, server_level)?,
            });
        }
        let limit_rate = (own.limit_rate.is_some() || own.limit_rate_after.is_some())
            .then_some((own.limit_rate, own.limit_rate_after));
        // Its `access_log` lines (their buffers are set at the end of
        // `http`, once every line of a file is known).
        let access_log = own
            .access_log
            .map(|level| if level.off { Vec::new() } else { level.logs });
        // Its `gzip on|off`: the location's other gzip settings are
        // merged in at the end of `http`.
        let gzip = own.gzip.on.map(|on| on.then(|| own.gzip.settings()));
        let root = own.root.map(|(root, _)| root);
        if own.add_headers.is_some()
            || own.expires.is_some()
            || gzip.is_some()
            || root.is_some()
            || limit_rate.is_some()
            || proxy.is_some()
            || access_log.is_some()
        {
            ops.insert(
                0,
                RewriteOp::Headers(Box::new(IfHeaders {
                    add_headers: own.add_headers,
                    expires: own.expires,
                    gzip,
                    root,
                    limit_rate,
                    proxy,
                    access_log,
                })),
            );
        }
        Ok(RewriteOp::If(cond, ops))
    }

    /// A location `if`'s `fastcgi_pass`, with the location's FastCGI
    /// settings ([`LocationConf::if_other`]).
    fn if_fastcgi_pass(&mut self, d: &Directive) -> Result<IfProxy, ConfError> {
        let (pass, entry) = self.fastcgi_pass(d)?;
        Ok(IfProxy {
            pass,
            default_redirect: None,
            entry,
        })
    }

    /// `fastcgi_pass`, and its upstream entry (`usize::MAX` with
    /// variables: the upstream is found per request).
    fn fastcgi_pass(&mut self, d: &Directive) -> Result<(ProxyPass, usize), ConfError> {
        if d.args[0].contains('$') {
            self.check_vars(self.compile_check(&d.args[0]), d)?;
            self.dynamic_passes = true;
            let pass = ProxyPass {
                tls: false,
                fastcgi: true,
                ..ProxyPass::dynamic(&d.args[0])
            };
            return Ok((pass, usize::MAX));
        }
        let (authority, url) = fastcgi_pass_url(d)?;
        let entry = self.pass_entry(&authority, &url, d)?;
        let pass = ProxyPass {
            upstream: usize::MAX,
            host: String::new(),
            port: String::new(),
            uri: None,
            tls: false,
            url: None,
            fastcgi: true,
        };
        Ok((pass, entry))
    }

    /// A location `if`'s (or `limit_except`'s) `proxy_pass`: nginx's
    /// messages for a URI part.
    fn if_proxy_pass(&mut self, d: &Directive) -> Result<IfProxy, ConfError> {
        if d.args[0].contains('$') {
            self.check_vars(self.compile_check(&d.args[0]), d)?;
            self.dynamic_passes = true;
            return Ok(IfProxy {
                pass: ProxyPass::dynamic(&d.args[0]),
                default_redirect: None,
                entry: usize::MAX,
            });
        }
        let (authority, url, tls) = proxy_pass_url(d)?;
        let entry = self.pass_entry(&authority, &url, d)?;
        if url.uri.is_some() {
            return err(
                "\"proxy_pass\" cannot have URI part in location given by regular expression, \
                 or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
                d,
            );
        }
        let (host, port) = proxy_name(&authority, &url, tls);
        let port = port.into_owned();
        let pass = ProxyPass {
            upstream: usize::MAX,
            host,
            port,
            uri: None,
            tls,
            url: None,
            fastcgi: false,
        };
        let default_redirect = default_redirect_of(&d.args[0], false, "");
        Ok(IfProxy {
            pass,
            default_redirect: Some(default_redirect),
            entry,
        })
    }

    fn compile_check(&self, text: &str) -> Result<(), CompileError> {
        Template::compile_with(text, &|n| self.map_var(n)).map(|_| ())
    }

    /// A `map`'s variable where the request's variables are read: not
    /// one that reads the answer.
    fn map_var(&self, name: &str) -> Option<Var> {
        (self.map_vars.contains(name) && !self.answer_maps.contains(name)).then_some(Var::Map(0))
    }

    /// A variable the header filters read beyond the request's: any
    /// `map`'s, the upstream's answer, `$sent_http_*`.
    fn filter_var(&self, name: &str) -> Option<Var> {
        self.map_vars
            .contains(name)
            .then_some(Var::Map(0))
            .or_else(|| crate::vars::filter_var(name))
    }

    /// An unknown variable that is a `map` reading the answer: said so,
    /// at once.
    fn answer_map_error(&self, e: CompileError) -> CompileError {
        match e {
            CompileError::Unknown(name) if self.answer_maps.contains(&name) => {
                CompileError::Syntax(format!(
                    "the \"${name}\" variable reads the answer ($sent_http_*) and is supported only in \"add_header\" and \"expires\""
                ))
            }
            e => e,
        }
    }

    fn module_variables(&self) -> Vec<String> {
        self.modules
            .iter()
            .flat_map(|m| m.variables.iter().cloned())
            .collect()
    }

    /// `return`'s text (the body, or the redirect's URL) is a template.
    fn check_return(&mut self, ret: &Return, d: &Directive) -> Result<(), ConfError> {
        match &ret.text {
            Some(text) => self.check_vars(self.compile_check(text), d),
            None => Ok(()),
        }
    }

    /// A `proxy_set_header` value, which nginx compiles only when it merges
    /// the levels: a malformed `$` and an unknown variable are reported at
    /// the end of `http`, the first of each kind.
    fn check_header_value(&mut self, d: &Directive) -> Result<(), ConfError> {
        match self.compile_check(&d.args[1]) {
            Ok(()) => Ok(()),
            Err(e @ CompileError::Unknown(_)) => {
                self.unknown_header_var
                    .get_or_insert_with(|| ConfError::at(e.to_string(), d.loc.clone()));
                Ok(())
            }
            Err(CompileError::Syntax(m)) => {
                self.header_error.get_or_insert(m);
                Ok(())
            }
            Err(e) => err(e.to_string(), d),
        }
    }

    /// `map SOURCE $NAME { ... }`, as `ngx_http_map_block`: `default`,
    /// `hostnames`, `volatile` (every map is evaluated where used: there
    /// is no cache to turn off), `include` (read by the parser), and
    /// `KEY VALUE` lines.
    fn map_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        let reads_answer = d.args[1]
            .strip_prefix('$')
            .is_some_and(|n| self.answer_maps.contains(&n.to_ascii_lowercase()));
        let source = match reads_answer {
            true => Template::compile_with(&d.args[0], &|n| self.filter_var(n)).map(|_| ()),
            false => self.compile_check(&d.args[0]),
        };
        self.check_vars(source, d)?;
        let Some(name) = d.args[1].strip_prefix('$') else {
            return err(format!("invalid variable name \"{}\"", d.args[1]), d);
        };
        if crate::vars::builtin(&name.to_ascii_lowercase()) {
            return err(format!("the duplicate \"{name}\" variable"), d);
        }
        let name = name.to_ascii_lowercase();
        let mut map = MapConf {
            name,
            source: d.args[0].clone(),
            hostnames: false,
            default: None,
            entries: Vec::new(),
            loc: d.loc.clone(),
            kind: MapKind::Map,
        };
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            let one = item.args.is_empty() && item.block.is_none();
            if one && item.name == "hostnames" {
                map.hostnames = true;
                continue;
            }
            if one && item.name == "volatile" {
                continue;
            }
            if item.block.is_some() {
                return err("unexpected \"{\"", item);
            }
            let [value] = &item.args[..] else {
                return err("invalid number of the map parameters", item);
            };
            // (As everywhere but `fastcgi_param`: see `enter`.)
            if crate::vars::reads_realpath_root(value) {
                return err(crate::vars::REALPATH_ONLY, item);
            }
            let key = item.name.as_str();
            if key == "default" {
                if map.default.is_some() {
                    return err("duplicate default map parameter", item);
                }
                self.check_vars(self.compile_check(value), item)?;
                map.default = Some(value.clone());
                continue;
            }
            let key = if let Some(pattern) = key.strip_prefix('~') {
                let (pattern, caseless) = match pattern.strip_prefix('*') {
                    Some(p) => (p, true),
                    None => (pattern, false),
                };
                let re = compile_regex(pattern, caseless, item)?;
                // Its named groups are variables of the value.
                let groups: HashSet<String> = re
                    .capture_names()
                    .into_iter()
                    .flatten()
                    .map(str::to_ascii_lowercase)
                    .collect();
                let scope = |n: &str| {
                    groups
                        .contains(n)
                        .then_some(Var::Map(0))
                        .or_else(|| self.map_var(n))
                };
                let checked = Template::compile_with(value, &scope).map(|_| ());
                self.check_vars(checked, item)?;
                MapKey::Regex {
                    pattern: pattern.to_owned(),
                    caseless,
                }
            } else {
                let key = key.strip_prefix('\\').unwrap_or(key);
                let lower = key.to_ascii_lowercase();
                let parsed = if !map.hostnames {
                    MapKey::Exact(lower)
                } else if let Some(suffix) = lower.strip_prefix("*.") {
                    MapKey::Head {
                        suffix: suffix.to_owned(),
                        dot: false,
                    }
                } else if let Some(suffix) = lower.strip_prefix('.') {
                    MapKey::Head {
                        suffix: suffix.to_owned(),
                        dot: true,
                    }
                } else if let Some(prefix) = lower.strip_suffix(".*") {
                    MapKey::Tail(prefix.to_owned())
                } else {
                    MapKey::Exact(lower)
                };
                let wildcard = |text: &str| text.contains('*') || text.is_empty();
                let bad = match &parsed {
                    MapKey::Head { suffix, .. } => wildcard(suffix),
                    MapKey::Tail(prefix) => wildcard(prefix),
                    MapKey::Exact(k) => map.hostnames && k.contains('*'),
                    MapKey::Regex { .. } => false,
                };
                if bad {
                    return err(format!("invalid hostname or wildcard \"{key}\""), item);
                }
                if map
                    .entries
                    .iter()
                    .any(|e| map_keys_conflict(&e.key, &parsed))
                {
                    return err(format!("conflicting parameter \"{key}\""), item);
                }
                self.check_vars(self.compile_check(value), item)?;
                parsed
            };
            map.entries.push(MapEntry {
                key,
                value: value.clone(),
                loc: item.loc.clone(),
            });
        }
        self.http.maps.push(map);
        Ok(())
    }

    /// `geo [$address] $variable { ... }`, as `ngx_http_geo_block` reads
    /// it (networks; `ranges` is refused as not supported).
    fn geo_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        let (source, var) = match &d.args[..] {
            [var] => (None, var),
            [source, var] => (Some(source), var),
            _ => return err("invalid number of arguments in \"geo\" directive", d),
        };
        if let Some(source) = source {
            if !source.starts_with('$') {
                return err(format!("invalid variable name \"{source}\""), d);
            }
            self.check_vars(self.compile_check(source), d)?;
        }
        let Some(name) = var.strip_prefix('$') else {
            return err(format!("invalid variable name \"{var}\""), d);
        };
        if crate::vars::builtin(&name.to_ascii_lowercase()) {
            return err(format!("the duplicate \"{name}\" variable"), d);
        }
        let mut geo = GeoConf {
            has_source: source.is_some(),
            ..GeoConf::default()
        };
        // Insertion order does not matter: the most specific network wins.
        let mut nets: HashMap<Cidr, String> = HashMap::new();
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            if item.block.is_some() {
                return err("unexpected \"{\"", item);
            }
            if let Some(ranges) = geo.ranges.as_mut() {
                match (item.name.as_str(), &item.args[..]) {
                    ("proxy_recursive", []) => geo.proxy_recursive = true,
                    ("proxy", [net]) => geo.proxies.push(geo_network(net, item)?),
                    (name, [value]) => geo_range(ranges, name, value, item)?,
                    _ => return err("invalid number of the geo parameters", item),
                }
                continue;
            }
            match (item.name.as_str(), &item.args[..]) {
                ("ranges", []) => {
                    if !nets.is_empty() {
                        return err(
                            "the \"ranges\" directive must be the first directive inside \"geo\" block",
                            item,
                        );
                    }
                    geo.ranges = Some(GeoRanges::default());
                }
                ("proxy_recursive", []) => geo.proxy_recursive = true,
                ("proxy", [net]) => geo.proxies.push(geo_network(net, item)?),
                ("delete", [net]) => {
                    if nets.remove(&geo_network(net, item)?).is_none() {
                        tracing::warn!("no network \"{net}\" to delete in {}", item.loc);
                    }
                }
                (net, [value]) => {
                    for cidr in geo_networks(net, item)? {
                        if let Some(old) = nets.insert(cidr, value.clone()) {
                            tracing::warn!(
                                "duplicate network \"{net}\", value: \"{value}\", old value: \"{old}\" in {}",
                                item.loc
                            );
                        }
                    }
                }
                _ => return err("invalid number of the geo parameters", item),
            }
        }
        geo.networks = nets.into_iter().collect();
        self.http.maps.push(MapConf {
            name: name.to_ascii_lowercase(),
            source: source.cloned().unwrap_or_default(),
            hostnames: false,
            default: None,
            entries: Vec::new(),
            loc: d.loc.clone(),
            kind: MapKind::Geo(geo),
        });
        Ok(())
    }

    /// `proxy_bind ADDRESS [transparent] | off`, as
    /// `ngx_http_upstream_bind_set_slot` reads it.
    fn proxy_bind(&mut self, d: &Directive) -> Result<Option<(String, bool)>, ConfError> {
        let value = &d.args[0];
        if value == "off" {
            return Ok(None);
        }
        if value.contains('$') {
            self.check_vars(self.compile_check(value), d)?;
        } else if realip::parse_addr_port(value.as_bytes()).is_none() {
            return err(format!("invalid address \"{value}\""), d);
        }
        let transparent = match d.args.get(1).map(String::as_str) {
            None => false,
            Some("transparent") => true,
            Some(other) => return err(format!("invalid parameter \"{other}\""), d),
        };
        Ok(Some((value.clone(), transparent)))
    }

    /// `split_clients STRING $variable { PERCENT% VALUE; ... * VALUE; }`,
    /// as `ngx_http_split_clients_block` reads it.
    fn split_clients_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        self.check_vars(self.compile_check(&d.args[0]), d)?;
        let var = &d.args[1];
        let Some(name) = var.strip_prefix('$') else {
            return err(format!("invalid variable name \"{var}\""), d);
        };
        if crate::vars::builtin(&name.to_ascii_lowercase()) {
            return err(format!("the duplicate \"{name}\" variable"), d);
        }
        let block = d.block.as_ref();
        let items = block.map_or(&[][..], |b| &b.items[..]);
        let mut shares = Vec::with_capacity(items.len());
        // Hundredths of a percent.
        let mut sum: u64 = 0;
        let mut last: u64 = 0;
        for item in items {
            if item.block.is_some() {
                return err("unexpected \"{\"", item);
            }
            let percent = item.name.as_str();
            let hundredths = if percent == "*" {
                0
            } else {
                match percent.strip_suffix('%').and_then(fixed_point_2) {
                    Some(n) if n > 0 => n,
                    _ => return err(format!("invalid percent value \"{percent}\""), item),
                }
            };
            sum = if hundredths == 0 {
                10_000
            } else {
                sum + hundredths
            };
            if sum > 10_000 {
                // Found once the block is read: nginx reports it at its `}`.
                let mut at = d.loc.clone();
                at.line = block.map_or(at.line, |b| b.end_line);
                return Err(ConfError::at(
                    "percent total is greater than 100%".into(),
                    at,
                ));
            }
            let bound = if hundredths == 0 {
                0
            } else {
                last += hundredths * u64::from(u32::MAX) / 10_000;
                last as u32
            };
            // nginx takes the second word, whatever follows it.
            shares.push((bound, item.args.first().cloned().unwrap_or_default()));
        }
        self.http.maps.push(MapConf {
            name: name.to_ascii_lowercase(),
            source: d.args[0].clone(),
            hostnames: false,
            default: None,
            entries: Vec::new(),
            loc: d.loc.clone(),
            kind: MapKind::Split(shares),
        });
        Ok(())
    }

    fn upstream_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        let name = d.args[0].clone();
        // nginx's `ngx_http_upstream_add`: the first entry of this name
        // decides.
        let taken = self
            .entries
            .iter()
            .position(|e| e.host().eq_ignore_ascii_case(&name));
        match taken.map(|i| &self.entries[i]) {
            Some(UpstreamEntry::Block { .. }) => {
                return err(format!("duplicate upstream \"{name}\""), d);
            }
            // A `proxy_pass` before this block gave a port: refused here, at
            // the location of that proxy_pass.
            Some(UpstreamEntry::Implicit {
                no_port: false,
                port,
                loc,
                ..
            }) => {
                return Err(ConfError::bare(format!(
                    "upstream \"{name}\" may not have port {port} in {loc}"
                )));
            }
            _ => {}
        }
        let mut up = UpstreamConf {
            filters: Vec::new(),
            name: name.clone(),
            loc: d.loc.clone(),
            peers: Vec::new(),
            keepalive: 0,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
            balancer: None,
            balancer_directives: Vec::new(),
            implicit: false,
            health: None,
        };
        let mut params = ServerParams::ALL;
        let mut backups = Vec::new();
        let mut seen = HashSet::new();
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            self.enter(item, Ctx::Upstream, &mut seen)?;
            match item.name.as_str() {
                "server" => {
                    for peer in server_line(item, params)? {
                        if peer.backup {
                            backups.push(peer);
                        } else {
                            up.peers.push(peer);
                        }
                    }
                }
                "keepalive" => match parse_number(&item.args[0]) {
                    Some(n) if n > 0 => up.keepalive = usize::try_from(n).unwrap_or(usize::MAX),
                    _ => return invalid_value(item, &item.args[0]),
                },
                "keepalive_timeout" => up.keepalive_timeout = time_arg(item, 0)?,
                "keepalive_requests" => up.keepalive_requests = number_arg(item, 0)?,
                "zone" => self.zone(item)?,
                "health_check" => up.health = Some(health_check(item)?),
                other => {
                    if let Some(&(module, spec)) = self.module_directives.get(other) {
                        if spec.balancer {
                            if up.balancer.is_some() {
                                tracing::warn!("load balancing method redefined in {}", item.loc);
                                up.balancer_directives.clear();
                            }
                            up.balancer = Some(module);
                            params = spec.server_params;
                        }
                        if !spec.balancer {
                            up.filters.push(ModuleDirective {
                                module,
                                name: item.name.clone(),
                                args: item.args.clone(),
                                loc: item.loc.clone(),
                            });
                        } else if up.balancer == Some(module) {
                            up.balancer_directives.push(ModuleDirective {
                                module,
                                name: item.name.clone(),
                                args: item.args.clone(),
                                loc: item.loc.clone(),
                            });
                        }
                    }
                }
            }
        }
        if let Some(block) = d.block.as_ref().filter(|b| b.complete) {
            if up.peers.is_empty() && backups.is_empty() {
                // nginx checks this at the block's `}`.
                return Err(ConfError::at(
                    "no servers are inside upstream".to_owned(),
                    Loc {
                        file: Arc::clone(&d.loc.file),
                        line: block.end_line,
                    },
                ));
            }
        }
        up.peers.extend(backups);
        let index = self.http.upstreams.len();
        self.http.upstreams.push(up);
        // A block of a name a proxy_pass used before takes that entry over,
        // keeping the name and place the proxy_pass gave it.
        let (host, loc) = match taken.map(|i| &self.entries[i]) {
            Some(UpstreamEntry::Implicit { host, loc, .. }) => (host.clone(), loc.clone()),
            _ => (name, d.loc.clone()),
        };
        let entry = UpstreamEntry::Block { index, host, loc };
        match taken {
            Some(i) => self.entries[i] = entry,
            None => self.entries.push(entry),
        }
        Ok(())
    }

    /// `zone NAME [SIZE]` in an upstream, as `ngx_http_upstream_zone` and
    /// `ngx_shared_memory_add`. A zone never given a size is an error after
    /// parsing ([`Checked::post_check`]).
    fn zone(&mut self, d: &Directive) -> Result<(), ConfError> {
        let name = &d.args[0];
        if name.is_empty() {
            return err(format!("invalid zone name \"{name}\""), d);
        }
        let size = match d.args.get(1) {
            None => 0,
            Some(s) => {
                let Some(size) = parse_size(s) else {
                    return err(format!("invalid zone size \"{s}\""), d);
                };
                if size < 8 * page_size() {
                    return err(format!("zone \"{name}\" is too small"), d);
                }
                size
            }
        };
        self.shared_memory_add(name, size, ZoneUse::Upstream, d)
    }

    /// `ngx_shared_memory_add`: a zone's name is one use's, and its size,
    /// once given, is the size of every mention.
    fn shared_memory_add(
        &mut self,
        name: &str,
        size: u64,
        tag: ZoneUse,
        d: &Directive,
    ) -> Result<(), ConfError> {
        match self.zones.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, _, used)) if *used != tag => err(
                format!(
                    "the shared memory zone \"{name}\" is already declared for a different use"
                ),
                d,
            ),
            Some((_, declared, _)) => {
                if *declared == 0 {
                    *declared = size;
                }
                if size != 0 && size != *declared {
                    return err(
                        format!(
                            "the size {size} of shared memory zone \"{name}\" conflicts with already declared size {declared}"
                        ),
                        d,
                    );
                }
                Ok(())
            }
            None => {
                self.zones.push((name.to_owned(), size, tag));
                Ok(())
            }
        }
    }

    /// A `shared:NAME:SIZE` session cache zone.
    fn ssl_zone(&mut self, name: &str, bytes: u64, d: &Directive) -> Result<(), ConfError> {
        self.shared_memory_add(name, bytes, ZoneUse::Ssl, d)
    }

    /// `limit_conn_zone KEY zone=NAME:SIZE`, as
    /// `ngx_http_limit_conn_zone`.
    fn limit_conn_zone(&mut self, d: &Directive) -> Result<(), ConfError> {
        let checked = self.compile_check(&d.args[0]);
        self.check_vars(checked, d)?;
        let arg = &d.args[1];
        let Some(zone) = arg.strip_prefix("zone=") else {
            return err(format!("invalid parameter \"{arg}\""), d);
        };
        let Some((name, size)) = zone.split_once(':') else {
            return err(format!("invalid zone size \"{arg}\""), d);
        };
        let Some(size) = parse_size(size) else {
            return err(format!("invalid zone size \"{arg}\""), d);
        };
        if size < 8 * page_size() {
            return err(format!("zone \"{arg}\" is too small"), d);
        }
        if name.is_empty() {
            return err("\"limit_conn_zone\" must have \"zone\" parameter", d);
        }
        self.shared_memory_add(name, size, ZoneUse::LimitConn, d)?;
        if let Some(bound) = self.http.limit_conn_zones.iter().find(|z| z.name == name) {
            return err(
                format!(
                    "limit_conn_zone \"{name}\" is already bound to key \"{}\"",
                    bound.key
                ),
                d,
            );
        }
        self.http.limit_conn_zones.push(LimitConnZone {
            name: name.to_owned(),
            key: d.args[0].clone(),
            size,
        });
        Ok(())
    }

    /// `proxy_cache_path`: a zone of its own name, on a path no other
    /// cache uses.
    fn cache_path(&mut self, d: &Directive) -> Result<(), ConfError> {
        let (name, size, settings) = crate::conf::cache::path(d, self.env.prefix)?;
        if let Some(other) = self
            .http
            .cache_paths
            .iter()
            .find(|p| p.settings.root == settings.root)
        {
            return err(
                format!(
                    "the same path name \"{}\" used in {} and in {}",
                    settings.root.display(),
                    other.loc,
                    d.loc
                ),
                d,
            );
        }
        let fastcgi = d.name == "fastcgi_cache_path";
        let tag = match fastcgi {
            true => ZoneUse::FastCgiCache,
            false => ZoneUse::Cache,
        };
        self.shared_memory_add(&name, size, tag, d)?;
        if self.http.cache_paths.iter().any(|p| p.name == name) {
            return err(format!("duplicate zone \"{name}\""), d);
        }
        self.http.cache_paths.push(CachePathConf {
            fastcgi,
            name,
            size,
            settings,
            loc: d.loc.clone(),
        });
        Ok(())
    }

    fn server_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        let index = self.http.servers.len();
        self.http.servers.push(ServerConf {
            listens: Vec::new(),
            names: Vec::new(),
            locations: Vec::new(),
            ret: None,
            realip: None,
            access: Rules::default(),
            limit_conn: None,
            filters: Vec::new(),
            auth_basic: None,
            satisfy_any: false,
            auth_request: None,
            mirror: None,
            add_headers: Vec::new(),
            types: ContentTypes::default(),
            charset: None,
            expires: None,
            limit_rate: None,
            redirect_style: RedirectStyle::default(),
            msie_padding: true,
            chunked: true,
            merge_slashes: true,
            gzip: None,
            gunzip: None,
            sub_filter: None,
            access_log: Vec::new(),
            tls: TlsConf::default(),
            http2: false,
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            keepalive_time: Duration::from_secs(3600),
            client: ClientLimits::default(),
            error_pages: ErrorPagesConf::default(),
            statics: StaticConf::new(self.env.prefix),
            script: Vec::new(),
            rewrite_log: false,
        });
        self.servers.push(ServerInfo {
            loc: Some(d.loc.clone()),
            ..ServerInfo::default()
        });
        let mut own = Layer::default();
        let mut seen = HashSet::new();
        let mut script = Vec::new();
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            self.enter(item, Ctx::Server, &mut seen)?;
            if self.layer_directive(item, &mut own)? {
                continue;
            }
            match item.name.as_str() {
                "listen" => {
                    let listen = listen(item)?;
                    self.add_listen(index, &listen, item)?;
                    self.http.servers[index].listens.push(listen.conf);
                }
                "server_name" => {
                    for name in &item.args {
                        // A regex as written (lowercasing `\D` would make
                        // it `\d`); hosts are matched lowercase.
                        if let Some(pattern) = name.strip_prefix('~') {
                            if pattern.is_empty() {
                                return err(format!("empty regex in server name \"{name}\""), item);
                            }
                            compile_regex(pattern, true, item)?;
                            self.http.servers[index].names.push(name.clone());
                            continue;
                        }
                        self.http.servers[index]
                            .names
                            .push(name.to_ascii_lowercase());
                    }
                }
                "return" => {
                    let ret = return_args(item)?;
                    self.check_return(&ret, item)?;
                    script.push(RewriteOp::Return(ret.clone()));
                    // The first `return` runs; later ones are never reached.
                    self.http.servers[index].ret.get_or_insert(ret);
                }
                "rewrite" | "break" | "set" | "if" => script.push(self.rewrite_line(item, true)?),
                "location" => {
                    let location = self.location_block(item, index, None)?;
                    self.servers[index].locations.push(location);
                }
                _ => {}
            }
        }
        self.servers[index].own = own;
        // With a `rewrite` or `break`, the lines run in order; else the
        // first `return` answers.
        if script.iter().any(|op| !matches!(op, RewriteOp::Return(_))) {
            self.http.servers[index].ret = None;
            self.http.servers[index].script = script;
        }
        if self.http.servers[index].listens.is_empty() {
            let conf = ListenConf {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), default_listen_port()),
                default_server: false,
                backlog: 511,
                ssl: false,
                http2: false,
                proxy_protocol: false,
                sockopts: SocketOpts::default(),
            };
            let listen = Listen { conf, set: false };
            self.add_listen(index, &listen, d)?;
            self.http.servers[index].listens.push(listen.conf);
        }
        Ok(())
    }

    /// Registers a `listen` of server `server`, with nginx's checks
    /// (`ngx_http_add_addresses`).
    fn add_listen(
        &mut self,
        server: usize,
        listen: &Listen,
        d: &Directive,
    ) -> Result<(), ConfError> {
        let addr = listen.conf.addr;
        let Some(known) = self.listens.iter_mut().find(|l| l.addr == addr) else {
            self.listens.push(ListenAddr {
                addr,
                servers: vec![server],
                default_server: listen.conf.default_server,
                default: listen.conf.default_server.then_some(server),
                ssl: listen.conf.ssl,
                set: listen.set,
            });
            return Ok(());
        };
        known.ssl |= listen.conf.ssl;
        if known.servers.contains(&server) {
            return err(format!("a duplicate listen {addr}"), d);
        }
        known.servers.push(server);
        if listen.set {
            if known.set {
                return err(format!("duplicate listen options for {addr}"), d);
            }
            known.set = true;
        }
        if listen.conf.default_server {
            if known.default_server {
                return err(format!("a duplicate default server for {addr}"), d);
            }
            known.default_server = true;
            known.default = Some(server);
        }
        Ok(())
    }

    /// The number of listening sockets nginx opens (before it clones the
    /// `reuseport` ones per worker): per port and family, a wildcard address
    /// covers the others unless they have options.
    fn listening_sockets(&self) -> usize {
        let wildcard_on = |l: &ListenAddr| {
            self.listens.iter().any(|o| {
                o.addr.port() == l.addr.port()
                    && o.addr.is_ipv4() == l.addr.is_ipv4()
                    && o.addr.ip().is_unspecified()
            })
        };
        self.listens
            .iter()
            .filter(|l| l.addr.ip().is_unspecified() || l.set || !wildcard_on(l))
            .count()
    }

    fn location_block(
        &mut self,
        d: &Directive,
        server: usize,
        parent: Option<usize>,
    ) -> Result<usize, ConfError> {
        let (modifier, name) = match location_modifier(&d.args) {
            Ok(parsed) => parsed,
            Err(m) => return err(format!("invalid location modifier \"{m}\""), d),
        };
        let name = name.to_owned();
        let (exact, noregex) = (modifier == Modifier::Exact, modifier == Modifier::NoRegex);
        let regex = match modifier {
            Modifier::Regex { caseless } => Some(caseless),
            _ => None,
        };
        let named = modifier == Modifier::Prefix && name.starts_with('@');
        let regex = match regex {
            Some(caseless) => {
                compile_regex(&name, caseless, d)?;
                Some(LocationRegex {
                    pattern: name.clone(),
                    caseless,
                })
            }
            None => None,
        };
        if let Some(p) = parent {
            let outer = &self.locations[p];
            // nginx treats a parent with an empty name as the server level.
            if !outer.name.is_empty() {
                let message = if outer.exact {
                    format!(
                        "location \"{name}\" cannot be inside the exact location \"{}\"",
                        outer.name
                    )
                } else if outer.named {
                    format!(
                        "location \"{name}\" cannot be inside the named location \"{}\"",
                        outer.name
                    )
                } else if named {
                    format!("named location \"{name}\" can be on the server level only")
                } else if regex.is_none() && !name.starts_with(outer.name.as_str()) {
                    format!("location \"{name}\" is outside location \"{}\"", outer.name)
                } else if regex.is_none() && outer.regex {
                    // nginx looks such a location up once the regex
                    // matched; waypost tries only regexes inside one.
                    format!(
                        "location \"{name}\" inside the regular expression location \"{}\" is not supported",
                        outer.name
                    )
                } else {
                    String::new()
                };
                if !message.is_empty() {
                    return err(message, d);
                }
            }
        }
        let parent_index = parent.map(|p| self.locations[p].index);
        let locations = &mut self.http.servers[server].locations;
        let index = locations.len();
        let is_regex = regex.is_some();
        locations.push(LocationConf {
            filters: Vec::new(),
            path: name.clone(),
            exact,
            noregex,
            regex,
            parent: parent_index,
            action: Action::None,
            proxy: ProxyConf::default(),
            if_other: None,
            client: ClientLimits::default(),
            access_log: Vec::new(),
            realip: None,
            access: Rules::default(),
            limit_except: None,
            limit_conn: None,
            auth_basic: None,
            satisfy_any: false,
            auth_request: None,
            mirror: None,
            add_headers: Vec::new(),
            types: ContentTypes::default(),
            charset: None,
            expires: None,
            limit_rate: None,
            redirect_style: RedirectStyle::default(),
            msie_padding: true,
            chunked: true,
            gzip: None,
            gunzip: None,
            sub_filter: None,
            named,
            internal: false,
            error_pages: ErrorPagesConf::default(),
            statics: StaticConf::new(self.env.prefix),
            script: Vec::new(),
            rewrite_log: false,
        });
        let me = self.locations.len();
        self.locations.push(LocationInfo {
            server,
            index,
            parent,
            own: Layer::default(),
            default_redirect: None,
            name,
            exact,
            named,
            regex: is_regex,
            loc: d.loc.clone(),
            children: Vec::new(),
            limit_except: None,
        });
        if let Some(p) = parent {
            self.locations[p].children.push(me);
        }

        let mut own = Layer::default();
        let mut ret = None;
        let mut script = Vec::new();
        let mut proxy = None;
        // `metrics;` or `status;`: the last one written is the handler.
        let mut content = None;
        let mut seen = HashSet::new();
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        // nginx's `proxy_redirect default` for this location, once its
        // `proxy_pass` is read.
        let mut default_redirect = None;
        // nginx makes no default for a `proxy_pass` with variables, and
        // refuses one written after it.
        let mut dynamic_pass = false;
        for item in items {
            self.enter(item, Ctx::Location, &mut seen)?;
            if dynamic_pass && item.name == "proxy_redirect" && item.args == ["default"] {
                return err(
                    "\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables",
                    item,
                );
            }
            if let (Some(default), "proxy_redirect", [arg]) =
                (&default_redirect, item.name.as_str(), &item.args[..])
            {
                if arg == "default" {
                    let (off, rules) = own.redirects.get_or_insert_with(|| (false, Vec::new()));
                    if *off {
                        return err("\"proxy_redirect\" directive is duplicate", item);
                    }
                    rules.push(Redirect::clone(default));
                    continue;
                }
            }
            if item.name == "alias" && named && own.root.is_none() {
                return err(
                    "the \"alias\" directive cannot be used inside the named location",
                    item,
                );
            }
            if self.layer_directive(item, &mut own)? {
                // An alias replaces the location's name in the URI; in a
                // regex location it is the whole path.
                if let ("alias", Some((_, alias))) = (item.name.as_str(), &mut own.root) {
                    *alias = Some(if is_regex {
                        ALIAS_WHOLE
                    } else {
                        self.locations[me].name.len()
                    });
                }
                continue;
            }
            match item.name.as_str() {
                "proxy_pass" if item.args[0].contains('$') => {
                    self.check_vars(self.compile_check(&item.args[0]), item)?;
                    dynamic_pass = true;
                    self.dynamic_passes = true;
                    proxy = Some(ProxyPass::dynamic(&item.args[0]));
                }
                "proxy_pass" => {
                    let (authority, url, tls) = proxy_pass_url(item)?;
                    let path = &self.locations[me].name;
                    default_redirect =
                        Some(default_redirect_of(&item.args[0], url.uri.is_some(), path));
                    let entry = self.pass_entry(&authority, &url, item)?;
                    if (named || is_regex) && url.uri.is_some() {
                        return err(
                            "\"proxy_pass\" cannot have URI part in location given by regular expression, \
                             or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
                            item,
                        );
                    }
                    let (host, port) = proxy_name(&authority, &url, tls);
                    let port = port.into_owned();
                    proxy = Some(ProxyPass {
                        upstream: usize::MAX,
                        host,
                        port,
                        uri: url.uri.clone(),
                        tls,
                        url: None,
                        fastcgi: false,
                    });
                    self.pending.push(PendingPass {
                        server,
                        location: index,
                        entry,
                    });
                }
                "fastcgi_pass" => {
                    let (pass, entry) = self.fastcgi_pass(item)?;
                    // (With variables, the upstream is found per request.)
                    if entry != usize::MAX {
                        self.pending.push(PendingPass {
                            server,
                            location: index,
                            entry,
                        });
                    }
                    proxy = Some(pass);
                }
                "return" => {
                    let parsed = return_args(item)?;
                    self.check_return(&parsed, item)?;
                    script.push(RewriteOp::Return(parsed.clone()));
                    // The first `return` runs (rewrite phase), before any
                    // proxy_pass (content phase).
                    ret.get_or_insert(parsed);
                }
                "rewrite" | "break" | "set" | "if" => script.push(self.rewrite_line(item, false)?),
                // Like stub_status: the location's content handler.
                "metrics" => content = Some(Action::Metrics),
                "status" => content = Some(Action::Status),
                "stub_status" => content = Some(Action::StubStatus),
                "empty_gif" => content = Some(Action::EmptyGif),
                "location" => {
                    self.location_block(item, server, Some(me))?;
                }
                "limit_except" => {
                    if self.locations[me].limit_except.is_some() {
                        return err("\"limit_except\" directive is duplicate", item);
                    }
                    // Its lines checked as a location's (arguments,
                    // repeats), then what the block takes.
                    let lines = item.block.as_ref().map_or(&[][..], |b| &b.items[..]);
                    let mut block_seen = HashSet::new();
                    for line in lines {
                        self.enter(line, Ctx::Location, &mut block_seen)?;
                    }
                    let mut le = limit_except(item)?;
                    for line in lines {
                        match line.name.as_str() {
                            "auth_basic" => {
                                self.check_vars(self.compile_check(&line.args[0]), line)?;
                                le.realm = Some(line.args[0].clone());
                            }
                            "auth_basic_user_file" if line.args[0].contains('$') => {
                                return err(
                                    "variables in \"auth_basic_user_file\" are not supported",
                                    line,
                                );
                            }
                            "auth_basic_user_file" => {
                                le.file = Some(self.conf_path(&line.args[0]));
                            }
                            "proxy_pass" => le.proxy = Some(self.if_proxy_pass(line)?),
                            "access_log" => self.access_log_line(line, &mut le.access_log)?,
                            _ => {}
                        }
                    }
                    self.locations[me].limit_except = Some(le);
                }
                _ => {}
            }
        }
        self.locations[me].own = own;
        self.locations[me].default_redirect = default_redirect;
        // With a `rewrite` or `break`, the lines run in order before the
        // content handler; else the first `return` is the handler.
        if script.iter().any(|op| !matches!(op, RewriteOp::Return(_))) {
            ret = None;
            self.http.servers[server].locations[index].script = script;
        }
        self.http.servers[server].locations[index].action = match (ret, content, proxy) {
            (Some(r), _, _) => Action::Return(r),
            (None, Some(content), _) => content,
            (None, None, Some(p)) => Action::Proxy(p),
            (None, None, None) => Action::None,
        };
        Ok(me)
    }

    /// The upstream entry a `proxy_pass` uses, as `ngx_http_upstream_add`:
    /// an upstream block of its host (which may not be given a port), an
    /// earlier `proxy_pass`'s entry for the same host and port, or a new one.
    fn pass_entry(
        &mut self,
        authority: &str,
        url: &ParsedUrl,
        d: &Directive,
    ) -> Result<usize, ConfError> {
        for (i, entry) in self.entries.iter().enumerate() {
            if !entry.host().eq_ignore_ascii_case(&url.host) {
                continue;
            }
            match entry {
                UpstreamEntry::Block { .. } if !url.no_port => {
                    return err(
                        format!("upstream \"{}\" may not have port {}", url.host, url.port),
                        d,
                    );
                }
                UpstreamEntry::Block { .. } => return Ok(i),
                UpstreamEntry::Implicit { port, .. } if *port == url.port => return Ok(i),
                UpstreamEntry::Implicit { .. } => {}
            }
        }
        self.entries.push(UpstreamEntry::Implicit {
            host: url.host.clone(),
            port: url.port,
            no_port: url.no_port,
            authority: authority.to_owned(),
            loc: d.loc.clone(),
            index: None,
        });
        Ok(self.entries.len() - 1)
    }

    /// End of the http block, in the order of nginx's `ngx_http_block`:
    /// bind every `proxy_pass` to its upstream, creating and resolving
    /// implicit ones; merge the inherited settings (reading the trusted
    /// certificates of `https://` locations that verify); a malformed
    /// `proxy_set_header` value (at `end`, the block's `}`); check each
    /// server's locations for duplicates; last, the first unknown variable.
    fn http_end(&mut self, end: Loc) -> Result<(), ConfError> {
        self.init_upstreams()?;
        // ngx_http_core_merge_srv_conf, server by server.
        for info in &self.servers {
            let buffers = info.own.merged(&self.http_layer).client().header_buffers;
            if buffers.size < CONNECTION_POOL_SIZE {
                return Err(ConfError::at(
                    "the \"large_client_header_buffers\" size must be equal to or greater than \"connection_pool_size\"".into(),
                    end,
                ));
            }
        }
        for pass in std::mem::take(&mut self.pending) {
            let index = self.entry_upstream(pass.entry);
            if let Action::Proxy(p) =
                &mut self.http.servers[pass.server].locations[pass.location].action
            {
                p.upstream = index;
            }
        }
        // And the `proxy_pass` lines of locations' `if` blocks.
        let mut scripts: Vec<Vec<RewriteOp>> = Vec::new();
        for server in &mut self.http.servers {
            for location in &mut server.locations {
                scripts.push(std::mem::take(&mut location.script));
            }
        }
        for script in &mut scripts {
            self.resolve_if_passes(script);
        }
        let mut scripts = scripts.into_iter();
        for server in &mut self.http.servers {
            for location in &mut server.locations {
                location.script = scripts.next().unwrap_or_default();
            }
        }
        // nginx's proxy module merges each location's TLS settings
        // before it compiles its headers.
        self.merge(&end)?;
        if let Some(message) = self.header_error.take() {
            return Err(ConfError::at(message, end));
        }
        for server in 0..self.servers.len() {
            let top = self.servers[server].locations.clone();
            self.check_locations(&top)?;
        }
        self.check_ssl_listens()?;
        // nginx's ngx_http_variables_init_vars, after everything else.
        if let Some(e) = self.unknown_var.take().or(self.unknown_header_var.take()) {
            return Err(e);
        }
        Ok(())
    }

    /// The upstream an entry became (`usize::MAX` for an implicit one not
    /// yet initialised).
    fn entry_upstream(&self, entry: usize) -> usize {
        match &self.entries[entry] {
            UpstreamEntry::Block { index, .. } => *index,
            UpstreamEntry::Implicit { index, .. } => index.unwrap_or(usize::MAX),
        }
    }

    /// Sets the upstream of each `if` block's `proxy_pass` in `ops`, and
    /// its `access_log` lines' buffers.
    fn resolve_if_passes(&self, ops: &mut [RewriteOp]) {
        for op in ops {
            match op {
                RewriteOp::Headers(h) => {
                    if let Some(proxy) = h.proxy.as_mut().filter(|p| p.pass.url.is_none()) {
                        proxy.pass.upstream = self.entry_upstream(proxy.entry);
                    }
                    for a in h.access_log.iter_mut().flatten() {
                        a.buffer = self.log_buffers.get(&a.path).map(|b| b.0);
                    }
                }
                RewriteOp::If(_, block) => self.resolve_if_passes(block),
                _ => {}
            }
        }
    }

    /// nginx's `ngx_http_upstream_init_main_conf`, entry by entry: a block
    /// needs a server that is not a backup; an implicit upstream's host is
    /// resolved now.
    fn init_upstreams(&mut self) -> Result<(), ConfError> {
        for i in 0..self.entries.len() {
            match &self.entries[i] {
                UpstreamEntry::Block { index, host, loc } => {
                    if self.http.upstreams[*index].peers.iter().all(|p| p.backup) {
                        return Err(ConfError::bare(format!(
                            "no servers in upstream \"{host}\" in {loc}"
                        )));
                    }
                }
                UpstreamEntry::Implicit {
                    host,
                    port,
                    authority,
                    loc,
                    ..
                } => {
                    let addrs = match unix_peer(host) {
                        Some(Ok(path)) => vec![path],
                        _ => resolve_host(host, *port)
                            .ok_or_else(|| {
                                ConfError::at(
                                    format!("host not found in upstream \"{host}\""),
                                    loc.clone(),
                                )
                            })?
                            .into_iter()
                            .map(PeerAddr::Inet)
                            .collect(),
                    };
                    let upstream = implicit_upstream(authority, loc, addrs);
                    let index = self.http.upstreams.len();
                    self.http.upstreams.push(upstream);
                    if let UpstreamEntry::Implicit { index: slot, .. } = &mut self.entries[i] {
                        *slot = Some(index);
                    }
                }
            }
        }
        self.http.upstream_names = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let port = match entry {
                    UpstreamEntry::Block { .. } => 0,
                    UpstreamEntry::Implicit { port, .. } => *port,
                };
                (
                    entry.host().to_ascii_lowercase(),
                    port,
                    self.entry_upstream(i),
                )
            })
            .collect();
        Ok(())
    }

    /// nginx's merge: a level whose `proxy_cache` names a zone no
    /// `proxy_cache_path` declared fails where `http` ends.
    fn cache_zone_known(&self, layer: &Layer, end: &Loc) -> Result<(), ConfError> {
        let known = |zone: &str, fastcgi: bool| {
            self.http
                .cache_paths
                .iter()
                .any(|p| p.name == zone && p.fastcgi == fastcgi)
        };
        if let Some(zone) = layer.cache.zone().filter(|z| !known(z, false)) {
            return Err(ConfError::at(
                format!("\"proxy_cache\" zone \"{zone}\" is unknown"),
                end.clone(),
            ));
        }
        let fcgi = layer.fcgi.as_deref();
        if let Some(zone) = fcgi
            .and_then(|f| f.cache.zone())
            .filter(|z| !known(z, true))
        {
            return Err(ConfError::at(
                format!("\"fastcgi_cache\" zone \"{zone}\" is unknown"),
                end.clone(),
            ));
        }
        Ok(())
    }

    /// nginx's merge: each server inherits from http, each location from
    /// its parent, whatever the order of the directives.
    fn merge(&mut self, end: &Loc) -> Result<(), ConfError> {
        let buffers = |layer: &Layer| {
            layer
                .buffers
                .check()
                .map_err(|m| ConfError::at(m.to_owned(), end.clone()))
        };
        let mut server_layers = Vec::with_capacity(self.servers.len());
        for (i, info) in self.servers.iter().enumerate() {
            let layer = info.own.merged(&self.http_layer);
            buffers(&layer)?;
            self.cache_zone_known(&layer, end)?;
            secure_link_alone(&info.own, end)?;
            let server = &mut self.http.servers[i];
            server.tls = layer.tls()?;
            // nginx loads these for a server with certificates only.
            if !server.tls.certificates.is_empty() {
                if let Some(path) = &layer.ssl_trusted_certificate {
                    trusted(&mut self.trusted, Some(path))?;
                }
                if let Some(path) = &layer.ssl_crl {
                    server.tls.crl = Some((path.clone(), crl_lists(&mut self.crls, path)?));
                }
                if layer.ssl_stapling == Some(true) {
                    if let Some(file) = &layer.ssl_stapling_file {
                        // nginx reads it for each certificate; once tells.
                        crate::conf::ocsp::check_response_file(file).map_err(ConfError::bare)?;
                    }
                    for c in &server.tls.certificates {
                        tracing::warn!(
                            "\"ssl_stapling\" ignored, OCSP stapling is not supported for certificate \"{}\"",
                            c.cert.display()
                        );
                    }
                }
            }
            server.http2 = layer.http2.unwrap_or(false);
            if let Some(t) = layer.keepalive_timeout {
                server.keepalive_timeout = t;
            }
            if let Some(n) = layer.keepalive_requests {
                server.keepalive_requests = n;
            }
            if let Some(t) = layer.keepalive_time {
                server.keepalive_time = t;
            }
            server.client = layer.client();
            server.realip = layer.realip();
            server.access = Rules::new(layer.access.clone().unwrap_or_default());
            server.limit_conn = layer.limit_conn_conf();
            server.filters = layer.filters.clone();
            server.auth_basic = layer.auth_basic();
            server.satisfy_any = layer.satisfy_any.unwrap_or(false);
            server.auth_request = layer.auth_request()?;
            server.mirror = layer.mirror();
            server.add_headers = layer.add_headers.clone().unwrap_or_default();
            server.gzip = layer.gzip.conf();
            server.gunzip = layer.gzip.gunzip_conf();
            server.sub_filter = layer.sub_filter();
            server.types = layer.content_types();
            server.charset = layer.charset()?;
            server.expires = layer.expires.clone().flatten();
            server.limit_rate = layer.limit_rate();
            server.redirect_style = layer.redirect_style();
            server.msie_padding = layer.msie_padding.unwrap_or(true);
            server.chunked = layer.chunked.unwrap_or(true);
            server.merge_slashes = layer.merge_slashes.unwrap_or(true);
            server.error_pages = layer.error_pages();
            server.statics = layer.statics(self.env.prefix);
            if let Some((_, names)) = &mut server.statics.referers {
                names.clone_from(&server.names);
            }
            server.rewrite_log = layer.rewrite_log.unwrap_or(false);
            let logs = self.access_logs(&layer);
            self.http.servers[i].access_log = logs;
            server_layers.push(layer);
        }
        self.http.filters = self.http_layer.filters.clone();
        // Parents come before their children in `locations`.
        let mut merged: Vec<Layer> = Vec::with_capacity(self.locations.len());
        for info in &self.locations {
            let parent = match info.parent {
                Some(p) => &merged[p],
                None => &server_layers[info.server],
            };
            let mut layer = info.own.merged(parent);
            // nginx's merge: a location with a `proxy_pass` and no
            // `proxy_redirect` in effect gets `default`, which its nested
            // locations inherit as it is.
            if let (None, Some(default)) = (&layer.redirects, &info.default_redirect) {
                layer.redirects = Some((false, vec![default.clone()]));
            }
            buffers(&layer)?;
            secure_link_alone(&info.own, end)?;
            self.cache_zone_known(&layer, end)?;
            let location = &self.http.servers[info.server].locations[info.index];
            let mut proxy = match &location.action {
                Action::Proxy(p) if p.fastcgi => fastcgi_conf(&layer),
                _ => layer.proxy(),
            };
            // (A `limit_except` block's `proxy_pass` with its upstream.)
            let le_pass = info
                .limit_except
                .as_ref()
                .and_then(|le| le.proxy.clone())
                .map(|mut p| {
                    if p.pass.url.is_none() {
                        p.pass.upstream = self.entry_upstream(p.entry);
                    }
                    p
                });
            // The settings of the other kind, where an `if` (or, in a
            // FastCGI location, `limit_except`) passes otherwise.
            let mut if_other = match &location.action {
                Action::Proxy(p) if p.fastcgi => (any_if_pass(&location.script, &|p| !p.fastcgi)
                    || le_pass.is_some())
                .then(|| Box::new(layer.proxy())),
                _ => any_if_pass(&location.script, &|p| p.fastcgi)
                    .then(|| Box::new(fastcgi_conf(&layer))),
            };
            // nginx warns and caches every answer under one empty key:
            // waypost refuses it (README: differences).
            for conf in std::iter::once(&proxy).chain(if_other.as_deref()) {
                if conf.fastcgi.is_some() && conf.cache.as_ref().is_some_and(|c| c.key.is_none()) {
                    return Err(ConfError::at(
                        "no \"fastcgi_cache_key\" for \"fastcgi_cache\"".to_owned(),
                        end.clone(),
                    ));
                }
            }
            // Every `proxy_pass` that may speak TLS: the location's, its
            // `limit_except`'s and its `if` blocks'.
            let https = matches!(&location.action, Action::Proxy(p) if p.tls)
                || le_pass.as_ref().is_some_and(|p| p.pass.tls)
                // (`https://`, or with variables.)
                || any_if_pass(&location.script, &|p| p.tls && !p.fastcgi);
            if https {
                // The proxy settings those passes use.
                let conf = match if_other.as_deref_mut() {
                    Some(other) if other.fastcgi.is_none() => other,
                    _ => &mut proxy,
                };
                proxy_tls_files(&mut self.trusted, &mut self.crls, conf, &layer)?;
            }
            // (`valid_referers server_names`.)
            let server_names = layer
                .valid_referers
                .is_some()
                .then(|| self.http.servers[info.server].names.clone());
            let le_logs = info
                .limit_except
                .as_ref()
                .and_then(|le| le.access_log.as_ref())
                .map(|level| self.level_logs(level));
            let location = &mut self.http.servers[info.server].locations[info.index];
            location.proxy = proxy;
            location.if_other = if_other;
            location.client = layer.client();
            location.realip = layer.realip();
            location.access = Rules::new(layer.access.clone().unwrap_or_default());
            // `limit_except`'s rules, else the location's (its block
            // inherits them).
            location.limit_except = info.limit_except.as_ref().map(|le| LimitExceptConf {
                methods: le.methods.clone(),
                access: le
                    .rules
                    .clone()
                    .map_or_else(|| location.access.clone(), Rules::new),
                // Its own lines over the location's, each.
                auth_basic: le
                    .realm
                    .clone()
                    .or_else(|| layer.auth_realm.clone())
                    .zip(le.file.clone().or_else(|| layer.auth_file.clone()))
                    .map(|(realm, file)| AuthBasicConf { realm, file }),
                proxy: le_pass,
                access_log: le_logs,
            });
            location.limit_conn = layer.limit_conn_conf();
            location.auth_basic = layer.auth_basic();
            location.satisfy_any = layer.satisfy_any.unwrap_or(false);
            location.auth_request = layer.auth_request()?;
            location.mirror = layer.mirror();
            location.add_headers = layer.add_headers.clone().unwrap_or_default();
            location.gzip = layer.gzip.conf();
            location.gunzip = layer.gzip.gunzip_conf();
            location.sub_filter = layer.sub_filter();
            location.types = layer.content_types();
            location.charset = layer.charset()?;
            location.expires = layer.expires.clone().flatten();
            location.limit_rate = layer.limit_rate();
            merge_if_levels(&mut location.script, &layer);
            location.redirect_style = layer.redirect_style();
            location.msie_padding = layer.msie_padding.unwrap_or(true);
            location.chunked = layer.chunked.unwrap_or(true);
            location.filters = layer.filters.clone();
            location.error_pages = layer.error_pages();
            location.internal = layer.internal.unwrap_or(false);
            location.statics = layer.statics(self.env.prefix);
            if let (Some(names), Some((_, all))) = (server_names, &mut location.statics.referers) {
                *all = names;
            }
            if let (Some(auto), Some(charset)) =
                (&mut location.statics.autoindex, &location.charset)
            {
                auto.utf8 = charset.name.eq_ignore_ascii_case("utf-8");
            }
            location.statics.location = info.name.clone();
            location.rewrite_log = layer.rewrite_log.unwrap_or(false);
            let logs = self.access_logs(&layer);
            self.http.servers[info.server].locations[info.index].access_log = logs;
            merged.push(layer);
        }
        Ok(())
    }

    /// nginx's `ngx_http_ssl_init`: the default server of a TLS address
    /// needs a certificate (the others fall back to its one).
    fn check_ssl_listens(&self) -> Result<(), ConfError> {
        for l in self.listens.iter().filter(|l| l.ssl) {
            let default = l.default.unwrap_or(l.servers[0]);
            let tls = &self.http.servers[default].tls;
            if tls.certificates.is_empty() && !tls.reject_handshake {
                let message = match &self.servers[default].loc {
                    Some(loc) => format!(
                        "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in {loc}"
                    ),
                    None => {
                        "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"
                            .to_owned()
                    }
                };
                return Err(ConfError::bare(message));
            }
        }
        Ok(())
    }

    /// The access logs a level writes: its own, or its parents', or
    /// nginx's default `logs/access.log combined`; none when `off`.
    fn access_logs(&self, layer: &Layer) -> Vec<AccessLogConf> {
        match &layer.access_log {
            Some(level) => self.level_logs(level),
            None => vec![AccessLogConf {
                path: self.env.prefix.join("logs/access.log"),
                format: "combined".to_owned(),
                buffer: None,
                condition: None,
            }],
        }
    }

    /// One level's `access_log` lines (none for `off`), each with its
    /// file's buffering: nginx's open file is the file's, so a line
    /// without `buffer=` writes through another's.
    fn level_logs(&self, level: &AccessLogs) -> Vec<AccessLogConf> {
        let mut logs = if level.off {
            Vec::new()
        } else {
            level.logs.clone()
        };
        for a in &mut logs {
            a.buffer = self.log_buffers.get(&a.path).map(|b| b.0);
        }
        logs
    }

    /// nginx's `ngx_http_init_static_location_trees`: the prefix and exact
    /// locations of one level sorted by name, nested levels checked first;
    /// two exact or two prefix locations of the same name are an error at
    /// the later one.
    fn check_locations(&self, level: &[usize]) -> Result<(), ConfError> {
        let mut sorted: Vec<&LocationInfo> = level
            .iter()
            .map(|&i| &self.locations[i])
            .filter(|l| !l.named && !l.regex)
            .collect();
        // Stable, so equal names keep their file order; exact ones first.
        sorted.sort_by(|a, b| a.name.cmp(&b.name).then(b.exact.cmp(&a.exact)));
        for l in &sorted {
            self.check_locations(&l.children)?;
        }
        let mut previous: Option<(&str, bool, bool)> = None;
        for l in sorted {
            match &mut previous {
                Some((name, exact, prefix)) if *name == l.name => {
                    if (l.exact && *exact) || (!l.exact && *prefix) {
                        return Err(ConfError::at(
                            format!("duplicate location \"{}\"", l.name),
                            l.loc.clone(),
                        ));
                    }
                    *exact |= l.exact;
                    *prefix |= !l.exact;
                }
                _ => previous = Some((l.name.as_str(), l.exact, !l.exact)),
            }
        }
        Ok(())
    }
}

/// nginx's `connection_pool_size` on 64-bit systems (not configurable
/// here): the smallest `large_client_header_buffers` size it takes.
const CONNECTION_POOL_SIZE: u32 = 512;

/// nginx's `ngx_http_proxy_set_ssl` for a location that verifies: the
/// trusted certificates are required, and read now (each file once).
fn trusted(
    cache: &mut HashMap<PathBuf, Arc<rustls::RootCertStore>>,
    path: Option<&Path>,
) -> Result<Arc<rustls::RootCertStore>, ConfError> {
    let Some(path) = path else {
        return Err(ConfError::bare(
            "no proxy_ssl_trusted_certificate for proxy_ssl_verify".to_owned(),
        ));
    };
    if let Some(roots) = cache.get(path) {
        return Ok(roots.clone());
    }
    let roots = crate::upstream::tls::load_trusted(path).map_err(ConfError::bare)?;
    cache.insert(path.to_path_buf(), roots.clone());
    Ok(roots)
}

/// `resolver ADDRESS ... [valid=TIME] [ipv6=on|off]`, checked as
/// `ngx_resolver_create` checks it (addresses resolved now, port 53 by
/// default); kept for the names a `proxy_pass` with variables gives.
fn resolver(d: &Directive) -> Result<ResolverConf, ConfError> {
    let in_resolver =
        |e: &str, arg: &str| ConfError::at(format!("{e} in resolver \"{arg}\""), d.loc.clone());
    let mut servers = 0;
    let mut conf = ResolverConf {
        servers: Vec::new(),
        valid: None,
        ipv6: true,
    };
    for arg in &d.args {
        if let Some(v) = arg.strip_prefix("valid=") {
            match parse_time_sec(v) {
                Some(secs) => conf.valid = Some(Duration::from_secs(secs)),
                None => return err(format!("invalid parameter: {arg}"), d),
            }
            continue;
        }
        if let Some(v) = arg.strip_prefix("ipv6=") {
            if v != "on" && v != "off" {
                return err(format!("invalid parameter: {arg}"), d);
            }
            conf.ipv6 = v == "on";
            continue;
        }
        servers += 1;
        // `ngx_parse_url`'s order: a socket path, a URI part (none
        // allowed here), the host, the port.
        if let Some(path) = arg.strip_prefix("unix:") {
            unix_path(path).map_err(|e| in_resolver(e, arg))?;
            continue;
        }
        let url = parse_url(arg, 53, false).map_err(|e| in_resolver(e, arg))?;
        match resolve_host(&url.host, url.port) {
            Some(addrs) => conf.servers.extend(addrs),
            None => return Err(in_resolver("host not found", arg)),
        }
    }
    if servers == 0 {
        return err("no name servers defined", d);
    }
    Ok(conf)
}

/// `on`/`off` in any case, as nginx's flag slot compares.
fn is_on_off(v: &str) -> bool {
    v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("off")
}

/// A revocation list file's lists: read once per configuration load,
/// the servers and locations that name it sharing them (a CA's list can
/// run to megabytes).
fn crl_lists(read: &mut HashMap<PathBuf, CrlLists>, path: &Path) -> Result<CrlLists, ConfError> {
    if let Some(lists) = read.get(path) {
        return Ok(lists.clone());
    }
    let lists = crate::upstream::tls::load_crls(path).map_err(ConfError::bare)?;
    let lists = Arc::new(lists);
    read.insert(path.to_owned(), lists.clone());
    Ok(lists)
}

/// nginx's hash table sizes, accepted with their values checked: waypost
/// has no such tables.
const HASH_SIZES: &[&str] = &[
    "types_hash_max_size",
    "types_hash_bucket_size",
    "server_names_hash_max_size",
    "server_names_hash_bucket_size",
    "variables_hash_max_size",
    "variables_hash_bucket_size",
    "map_hash_max_size",
    "map_hash_bucket_size",
    "referer_hash_max_size",
    "referer_hash_bucket_size",
    "proxy_headers_hash_max_size",
    "proxy_headers_hash_bucket_size",
];

/// Directives nginx refuses to see twice in one block (besides flags,
/// which all are).
fn is_single(name: &str) -> bool {
    matches!(
        name,
        "worker_processes"
            | "pid"
            | "events"
            | "http"
            | "worker_rlimit_nofile"
            | "worker_shutdown_timeout"
            | "worker_connections"
            | "use"
            | "default_type"
            | "keepalive"
            | "keepalive_timeout"
            | "keepalive_requests"
            | "keepalive_time"
            | "client_max_body_size"
            | "client_header_timeout"
            | "large_client_header_buffers"
            | "client_body_timeout"
            | "send_timeout"
            | "proxy_pass"
            | "secure_link"
            | "gzip_static"
            | "secure_link_md5"
            | "secure_link_secret"
            | "proxy_http_version"
            | "proxy_next_upstream_tries"
            | "proxy_next_upstream_timeout"
            | "proxy_connect_timeout"
            | "proxy_send_timeout"
            | "proxy_read_timeout"
            | "proxy_ssl_trusted_certificate"
            | "proxy_ssl_certificate"
            | "proxy_ssl_certificate_key"
            | "proxy_ssl_protocols"
            | "proxy_ssl_name"
            | "real_ip_header"
            | "limit_conn_status"
            | "limit_conn_log_level"
            | "resolver"
            | "resolver_timeout"
            | "auth_basic"
            | "auth_basic_user_file"
            | "proxy_method"
            | "proxy_bind"
            | "limit_rate"
            | "limit_rate_after"
            | "proxy_set_body"
            | "internal"
            | "satisfy"
            | "ssl_trusted_certificate"
            | "ssl_stapling_file"
            | "ssl_stapling_responder"
            | "ssl_session_timeout"
            | "ssl_ciphers"
            | "proxy_ssl_ciphers"
            | "ssl_dhparam"
            | "ssl_password_file"
            | "ssl_ecdh_curve"
            | "proxy_buffer_size"
            | "proxy_buffers"
            | "proxy_busy_buffers_size"
            | "proxy_max_temp_file_size"
            | "proxy_temp_file_write_size"
            | "proxy_temp_path"
            | "client_body_buffer_size"
            | "client_header_buffer_size"
            | "client_body_temp_path"
            | "charset"
            | "source_charset"
            | "expires"
            | "gzip_min_length"
            | "gzip_comp_level"
            | "gzip_http_version"
            | "gzip_buffers"
            | "gunzip_buffers"
    ) || HASH_SIZES.contains(&name)
}

/// `user USER [GROUP]`: nginx looks both up, but only when it runs as root
/// (otherwise it warns and ignores the directive, duplicates included).
fn user(d: &Directive, seen: &mut HashSet<String>) -> Result<(), ConfError> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    if !seen.insert(d.name.clone()) {
        return err("\"user\" directive is duplicate", d);
    }
    let name = &d.args[0];
    let group = d.args.get(1).unwrap_or(name);
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    // SAFETY: the pointers are valid C strings for the calls; only the
    // returned pointers' nullness is used.
    if unsafe { libc::getpwnam(c(name).as_ptr()) }.is_null() {
        return err(format!("getpwnam(\"{name}\") failed"), d);
    }
    // SAFETY: as above.
    if unsafe { libc::getgrnam(c(group).as_ptr()) }.is_null() {
        return err(format!("getgrnam(\"{group}\") failed"), d);
    }
    Ok(())
}

/// `ssl_protocols` and `proxy_ssl_protocols`: the TLS versions named,
/// those rustls has (1.2, 1.3) as bits; older ones are accepted and never
/// used.
fn protocols(d: &Directive, name: &str) -> Result<u32, ConfError> {
    let mut mask = 0;
    for v in &d.args {
        mask |= match v.to_ascii_lowercase().as_str() {
            "sslv2" | "sslv3" | "tlsv1" | "tlsv1.1" => 0,
            "tlsv1.2" => TLS12,
            "tlsv1.3" => TLS13,
            _ => return err(format!("invalid value \"{v}\""), d),
        };
    }
    // rustls has TLS 1.2 and 1.3 only: a list without either would leave
    // no protocol at all.
    if mask == 0 {
        return err(
            format!(
                "\"{name}\" enables neither TLSv1.2 nor TLSv1.3, the only versions waypost supports"
            ),
            d,
        );
    }
    Ok(mask)
}

/// `ngx_atofp(text, 2)`: a decimal with at most two digits after the
/// point, in hundredths.
fn fixed_point_2(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2
        || (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut n: u64 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n * 10u64.pow(2 - frac.len() as u32))
}

/// A `geo` network, as `ngx_http_geo_cidr_value`: `255.255.255.255` (which
/// `ngx_ptocidr` cannot read), else an address or CIDR.
fn geo_network(net: &str, d: &Directive) -> Result<Cidr, ConfError> {
    if net == "255.255.255.255" {
        return Ok(Cidr::V4 {
            addr: u32::MAX,
            mask: u32::MAX,
        });
    }
    match realip::parse_cidr(net) {
        Some((cidr, exact)) => {
            if !exact {
                tracing::warn!("low address bits of {net} are meaningless in {}", d.loc);
            }
            Ok(cidr)
        }
        None => err(format!("invalid network \"{net}\""), d),
    }
}

/// One line of a `geo` block in `ranges` mode, as nginx's
/// `ngx_http_geo_range` and `ngx_http_geo_add_range`: `default VALUE`,
/// `delete A-B`, or `A-B VALUE`; a range inside one already there splits
/// it (an equal one replaces its value, with a warning), any other
/// overlap is an error.
fn geo_range(
    GeoRanges {
        list: ranges,
        default,
    }: &mut GeoRanges,
    name: &str,
    value: &str,
    d: &Directive,
) -> Result<(), ConfError> {
    if name == "default" {
        if let Some(old) = default.replace(value.to_owned()) {
            tracing::warn!(
                "duplicate default geo range value: \"{value}\", old value: \"{old}\" in {}",
                d.loc
            );
        }
        return Ok(());
    }
    let (net, delete) = if name == "delete" {
        (value, true)
    } else {
        (name, false)
    };
    let parsed = net.split_once('-').and_then(|(a, b)| {
        let a: std::net::Ipv4Addr = a.parse().ok()?;
        let b: std::net::Ipv4Addr = b.parse().ok()?;
        (u32::from(a) <= u32::from(b)).then_some((u32::from(a), u32::from(b)))
    });
    let Some((s, e)) = parsed else {
        return err(format!("invalid range \"{net}\""), d);
    };
    if delete {
        match ranges.iter().position(|r| (r.0, r.1) == (s, e)) {
            Some(i) => {
                ranges.remove(i);
            }
            None => tracing::warn!("no address range \"{net}\" to delete in {}", d.loc),
        }
        return Ok(());
    }
    let value = value.to_owned();
    let at = ranges.partition_point(|r| r.1 < s);
    match ranges.get(at).cloned() {
        // No overlap: in its place.
        None => ranges.push((s, e, value)),
        Some((rs, _, _)) if e < rs => ranges.insert(at, (s, e, value)),
        Some((rs, re, old)) if (rs, re) == (s, e) => {
            tracing::warn!(
                "duplicate range \"{net}\", value: \"{value}\", old value: \"{old}\" in {}",
                d.loc
            );
            ranges[at].2 = value;
        }
        // Inside one: it splits it.
        Some((rs, re, old)) if rs <= s && e <= re => {
            let mut parts = Vec::with_capacity(3);
            if rs < s {
                parts.push((rs, s - 1, old.clone()));
            }
            parts.push((s, e, value));
            if e < re {
                parts.push((e + 1, re, old));
            }
            ranges.splice(at..=at, parts);
        }
        Some((rs, re, _)) => {
            let ip = |n: u32| std::net::Ipv4Addr::from(n);
            return err(
                format!("range \"{net}\" overlaps \"{}-{}\"", ip(rs), ip(re)),
                d,
            );
        }
    }
    Ok(())
}

/// The networks a `geo` line names: `default` is both 0.0.0.0/0 and ::/0.
fn geo_networks(net: &str, d: &Directive) -> Result<Vec<Cidr>, ConfError> {
    if net == "default" {
        return Ok(vec![
            Cidr::V4 { addr: 0, mask: 0 },
            Cidr::V6 {
                addr: [0; 16],
                mask: [0; 16],
            },
        ]);
    }
    Ok(vec![geo_network(net, d)?])
}

/// `set_real_ip_from ADDR|CIDR|HOST|unix:`, as `ngx_http_realip_from`: a
/// host name stands for each of its addresses.
fn real_ip_from(d: &Directive) -> Result<Vec<Cidr>, ConfError> {
    let value = &d.args[0];
    if value == "unix:" {
        return Ok(vec![Cidr::Unix]);
    }
    if let Some((trusted, exact)) = realip::parse_cidr(value) {
        if !exact {
            tracing::warn!("low address bits of {value} are meaningless in {}", d.loc);
        }
        return Ok(vec![trusted]);
    }
    // getaddrinfo, as nginx resolves it (a bracketed address is no host).
    let resolved = if value.starts_with('[') {
        None
    } else {
        resolve_host(value, 0)
    };
    match resolved {
        Some(addrs) => Ok(addrs.iter().map(|a| realip::exact(a.ip())).collect()),
        None => err(format!("host not found in set_real_ip_from \"{value}\""), d),
    }
}

/// A `~`/`~*` pattern of `d` (a `location`, a `map` line). nginx's PCRE
/// takes a few patterns the `regex` crate does not (look-around,
/// backreferences), which are refused by name here.
fn compile_regex(
    pattern: &str,
    caseless: bool,
    d: &Directive,
) -> Result<crate::pattern::Regex, ConfError> {
    crate::vars::regex(pattern, caseless).map_err(|e| {
        ConfError::at(
            format!("regular expression \"{pattern}\" is not valid or not supported: {e}"),
            d.loc.clone(),
        )
    })
}

/// `ssl_session_cache off|none|[builtin[:N]] [shared:NAME:SIZE]`, as
/// `ngx_http_ssl_session_cache` and `ngx_ssl_session_cache` read it: the
/// last of `off`, `none` and `builtin` decides (the first two keep
/// nothing, whatever zone is named), else the sessions of `builtin` (N;
/// 0 is OpenSSL's unlimited) and of the zone (about 4,000 a megabyte,
/// nginx's figure), in one cache that every server naming the zone
/// shares. Capped at [`MAX_SESSIONS`], since rustls reserves room for all
/// of them at once.
fn session_cache(d: &Directive) -> Result<(usize, Option<(String, u64)>), ConfError> {
    // nginx's default builtin size, in sessions.
    const BUILTIN: usize = 20480;
    #[derive(PartialEq)]
    enum Builtin {
        Unset,
        Off,
        None,
        Sessions(usize),
    }
    let mut builtin = Builtin::Unset;
    let mut zone: Option<(String, usize, u64)> = None;
    for value in &d.args {
        let invalid = || err(format!("invalid session cache \"{value}\""), d);
        match value.as_str() {
            "off" => builtin = Builtin::Off,
            "none" => builtin = Builtin::None,
            "builtin" => builtin = Builtin::Sessions(BUILTIN),
            v => {
                if let Some(n) = v.strip_prefix("builtin:").filter(|n| !n.is_empty()) {
                    let Some(n) = n
                        .parse::<usize>()
                        .ok()
                        .filter(|_| n.bytes().all(|c| c.is_ascii_digit()))
                    else {
                        return invalid();
                    };
                    builtin = Builtin::Sessions(if n == 0 { MAX_SESSIONS } else { n });
                } else if let Some(rest) = v.strip_prefix("shared:").filter(|r| !r.is_empty()) {
                    let Some((name, size)) = rest.split_once(':').filter(|(n, _)| !n.is_empty())
                    else {
                        return invalid();
                    };
                    let Some(bytes) = parse_size(size) else {
                        return invalid();
                    };
                    if bytes < 8 * page_size() {
                        return err(format!("session cache \"{value}\" is too small"), d);
                    }
                    let sessions = usize::try_from(bytes / 256).unwrap_or(usize::MAX);
                    zone = Some((name.to_owned(), sessions, bytes));
                } else {
                    return invalid();
                }
            }
        }
    }
    // The zone is declared even when `off` or `none` keep nothing.
    let sessions = match (&builtin, &zone) {
        (Builtin::Off | Builtin::None, _) | (Builtin::Unset, None) => 0,
        (Builtin::Unset, Some((_, z, _))) => *z,
        (Builtin::Sessions(n), z) => (*n).max(z.as_ref().map_or(0, |z| z.1)),
    };
    Ok((sessions.min(MAX_SESSIONS), zone.map(|z| (z.0, z.2))))
}

/// The most sessions one cache keeps (a 64 MB shared zone's, by nginx's
/// 4,000 a megabyte).
const MAX_SESSIONS: usize = 262_144;

/// Whether two `map` keys are the same key of nginx's combined hash: a
/// `.example.com` is `example.com` and `*.example.com` both.
fn map_keys_conflict(a: &MapKey, b: &MapKey) -> bool {
    use MapKey::*;
    match (a, b) {
        (Exact(x), Exact(y)) | (Tail(x), Tail(y)) => x == y,
        (Head { suffix: x, .. }, Head { suffix: y, .. }) => x == y,
        (
            Exact(x),
            Head {
                suffix: y,
                dot: true,
            },
        )
        | (
            Head {
                suffix: y,
                dot: true,
            },
            Exact(x),
        ) => x == y,
        _ => false,
    }
}

/// `allow`/`deny ADDR|CIDR|unix:|all`, as `ngx_http_access_rule`.
fn access_rule(d: &Directive) -> Result<Vec<Cidr>, ConfError> {
    let value = &d.args[0];
    match allow::parse(value) {
        Ok((cidrs, exact)) => {
            if !exact {
                tracing::warn!("low address bits of {value} are meaningless in {}", d.loc);
            }
            Ok(cidrs)
        }
        Err(allow::InvalidParameter) => err(format!("invalid parameter \"{value}\""), d),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn next_upstream(d: &Directive) -> Result<NextUpstream, ConfError> {
    let mut mask = 0;
    for a in &d.args {
        mask |= match a.to_ascii_lowercase().as_str() {
            "error" => NextUpstream::ERROR,
            "timeout" => NextUpstream::TIMEOUT,
            "invalid_header" => NextUpstream::INVALID_HEADER,
            "http_500" => NextUpstream::HTTP_500,
            "http_502" => NextUpstream::HTTP_502,
            "http_503" => NextUpstream::HTTP_503,
            "http_504" => NextUpstream::HTTP_504,
            "http_403" => NextUpstream::HTTP_403,
            "http_404" => NextUpstream::HTTP_404,
            "http_429" => NextUpstream::HTTP_429,
            "non_idempotent" => NextUpstream::NON_IDEMPOTENT,
            "off" => NextUpstream::OFF,
            _ => return err(format!("invalid value \"{a}\""), d),
        };
    }
    Ok(NextUpstream(mask))
}

/// One `server` line of an upstream block, as `ngx_http_upstream_server`:
/// parameters first (each checked against what the balancer supports),
/// then the address, resolved now.
/// `health_check` parameters, each `name=value` once at most or
/// `mandatory`; anything else is nginx's `invalid parameter "..."`.
fn health_check(d: &Directive) -> Result<HealthCheck, ConfError> {
    let mut check = HealthCheck {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        fails: 1,
        passes: 1,
        uri: "/".to_owned(),
        status: vec![(200, 399)],
        port: None,
        mandatory: false,
    };
    let positive = |n: &str| parse_number(n).filter(|&n| n > 0);
    for v in &d.args {
        let invalid = || err(format!("invalid parameter \"{v}\""), d);
        let (name, value) = v.split_once('=').unwrap_or((v.as_str(), ""));
        match name {
            "interval" => match parse_time(value).filter(|t| !t.is_zero()) {
                Some(t) => check.interval = t,
                None => return invalid(),
            },
            "timeout" => match parse_time(value).filter(|t| !t.is_zero()) {
                Some(t) => check.timeout = t,
                None => return invalid(),
            },
            "fails" => match positive(value).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => check.fails = n,
                None => return invalid(),
            },
            "passes" => match positive(value).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => check.passes = n,
                None => return invalid(),
            },
            "uri" if value.starts_with('/') => check.uri = value.to_owned(),
            "port" => match positive(value).and_then(|n| u16::try_from(n).ok()) {
                Some(p) => check.port = Some(p),
                None => return invalid(),
            },
            "status" => match status_ranges(value) {
                Some(ranges) => check.status = ranges,
                None => return invalid(),
            },
            "mandatory" if !v.contains('=') => check.mandatory = true,
            _ => return invalid(),
        }
    }
    Ok(check)
}

/// `200`, `200-399`, `200,204,300-399`: statuses 100..=599.
fn status_ranges(s: &str) -> Option<Vec<(u16, u16)>> {
    let code = |c: &str| {
        parse_number(c)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=599).contains(n))
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((lo, hi)) => Some((code(lo)?, code(hi)?)).filter(|(lo, hi)| lo <= hi),
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

fn server_line(d: &Directive, params: ServerParams) -> Result<Vec<PeerConf>, ConfError> {
    let mut weight = 1;
    let mut max_fails = 1;
    let mut fail_timeout = 10;
    let mut max_conns = 0;
    let mut backup = false;
    let mut down = false;
    let mut slow_start_ms = 0;
    let not_supported = |v: &str| {
        err(
            format!("balancing method does not support parameter \"{v}\""),
            d,
        )
    };
    let invalid = |v: &str| err(format!("invalid parameter \"{v}\""), d);
    let u32_of = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    for v in &d.args[1..] {
        if let Some(n) = v.strip_prefix("weight=") {
            if !params.contains(ServerParams::WEIGHT) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) if n > 0 => weight = u32_of(n),
                _ => return invalid(v),
            }
        } else if let Some(n) = v.strip_prefix("max_conns=") {
            if !params.contains(ServerParams::MAX_CONNS) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) => max_conns = u32_of(n),
                None => return invalid(v),
            }
        } else if let Some(n) = v.strip_prefix("max_fails=") {
            if !params.contains(ServerParams::MAX_FAILS) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) => max_fails = u32_of(n),
                None => return invalid(v),
            }
        } else if let Some(t) = v.strip_prefix("fail_timeout=") {
            if !params.contains(ServerParams::FAIL_TIMEOUT) {
                return not_supported(v);
            }
            match parse_time_sec(t) {
                Some(t) => fail_timeout = u32_of(t),
                None => return invalid(v),
            }
        } else if let Some(t) = v.strip_prefix("slow_start=") {
            // waypost (nginx Plus has it): the core ramps the weight, for
            // every balancer that uses SmoothWeights.
            match parse_time(t) {
                Some(t) => slow_start_ms = u32::try_from(t.as_millis()).unwrap_or(u32::MAX),
                None => return invalid(v),
            }
        } else if v == "backup" {
            if !params.contains(ServerParams::BACKUP) {
                return not_supported(v);
            }
            backup = true;
        } else if v == "down" {
            if !params.contains(ServerParams::DOWN) {
                return not_supported(v);
            }
            down = true;
        } else {
            return invalid(v);
        }
    }
    let server = d.args[0].clone();
    let in_upstream =
        |what: &str| ConfError::at(format!("{what} in upstream \"{server}\""), d.loc.clone());
    let addrs = match unix_peer(&server) {
        Some(Ok(path)) => vec![path],
        Some(Err(e)) => return Err(in_upstream(e)),
        None => {
            let url = parse_url(&server, 80, false).map_err(in_upstream)?;
            let found = resolve_host(&url.host, url.port);
            let found = found.ok_or_else(|| in_upstream("host not found"))?;
            found.into_iter().map(PeerAddr::Inet).collect()
        }
    };
    Ok(addrs
        .into_iter()
        .map(|addr| PeerConf {
            server: server.clone(),
            addr,
            weight,
            max_fails,
            fail_timeout,
            max_conns,
            backup,
            down,
            slow_start_ms,
        })
        .collect())
}

/// An address as nginx's `ngx_parse_url` splits it (inet and inet6 forms).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedUrl {
    /// The host as written (an IPv6 address keeps its brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// No port was written (`port` is the default).
    pub(crate) no_port: bool,
    /// The URI part, from the first `/` (or `?`), when allowed.
    pub(crate) uri: Option<String>,
}

/// nginx's `ngx_parse_unix_domain_url`: the path after `unix:`, which
/// must fit a socket address's `sun_path` with its closing NUL.
pub(crate) fn unix_path(path: &str) -> Result<&str, &'static str> {
    const SUN_PATH: usize = 108;
    match path.len() {
        0 => Err("no path in the unix domain socket"),
        n if n + 1 > SUN_PATH => Err("too long path in the unix domain socket"),
        _ => Ok(path),
    }
}

/// nginx's `ngx_parse_inet_url`/`ngx_parse_inet6_url` without resolving:
/// the error is nginx's `u->err` ("invalid host", "invalid port", "no host",
/// "invalid IPv6 address").
pub(crate) fn parse_url(
    url: &str,
    default_port: u16,
    uri_part: bool,
) -> Result<ParsedUrl, &'static str> {
    // (host as written, the address inside brackets, port text, URI)
    let (host, v6, port, uri) = if let Some(inner) = url.strip_prefix('[') {
        let close = inner.find(']').ok_or("invalid host")?;
        let after = &inner[close + 1..];
        let (port_part, uri) = match after.find('/') {
            Some(_) if !uri_part => return Err("invalid host"),
            Some(i) => (&after[..i], Some(&after[i..])),
            None => (after, None),
        };
        let port = match port_part {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("invalid host")?),
        };
        (&url[..close + 2], Some(&inner[..close]), port, uri)
    } else {
        let (hostport, uri) = match url.find(['/', '?']) {
            Some(_) if !uri_part => return Err("invalid host"),
            Some(i) => (&url[..i], Some(&url[i..])),
            None => (url, None),
        };
        // The first colon starts the port, as in nginx.
        match hostport.split_once(':') {
            Some((host, port)) => (host, None, Some(port), uri),
            None => (hostport, None, None, uri),
        }
    };
    let (port, no_port) = match port {
        Some(p) => match parse_number(p) {
            Some(n @ 1..=65535) => (n as u16, false),
            _ => return Err("invalid port"),
        },
        None => (default_port, true),
    };
    match v6 {
        Some("") => return Err("no host"),
        Some(addr) if addr.parse::<Ipv6Addr>().is_err() => return Err("invalid IPv6 address"),
        _ if host.is_empty() => return Err("no host"),
        _ => {}
    }
    Ok(ParsedUrl {
        host: host.to_owned(),
        port,
        no_port,
        uri: uri.map(str::to_owned),
    })
}

/// nginx's `ngx_http_proxy_set_vars`: `$proxy_host`, the host and the
/// port as written unless it is the scheme's, and `$proxy_port`, that
/// port or the scheme's (`proxy_pass http://h:80` sends `Host: h`).
pub(crate) fn proxy_name(
    authority: &str,
    url: &ParsedUrl,
    tls: bool,
) -> (String, std::borrow::Cow<'static, str>) {
    // A Unix socket's: nginx's `Host: localhost`, and no port.
    if unix_peer(&url.host).is_some() {
        return ("localhost".to_owned(), "".into());
    }
    let (default, text) = if tls { (443, "443") } else { (80, "80") };
    if url.no_port || url.port == default {
        return (url.host.clone(), text.into());
    }
    // The authority is the host, `:` and the port's text.
    let port = authority.get(url.host.len() + 1..).unwrap_or_default();
    (authority.to_owned(), port.to_owned().into())
}

/// nginx's `ngx_inet_addr`: a dotted quad, leading zeros allowed.
pub(crate) fn inet_addr(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut octet: u32 = 0;
    for c in s.bytes() {
        match c {
            b'0'..=b'9' => {
                octet = octet * 10 + u32::from(c - b'0');
                if octet > 255 {
                    return None;
                }
            }
            b'.' if n < 3 => {
                octets[n] = octet as u8;
                n += 1;
                octet = 0;
            }
            _ => return None,
        }
    }
    if n != 3 {
        return None;
    }
    octets[3] = octet as u8;
    Some(Ipv4Addr::from(octets))
}

thread_local! {
    /// Set while [`offline`] runs: host names are not resolved.
    static OFFLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a parse on this thread) with host names left unresolved:
/// `localhost` is 127.0.0.1 and any other name is not found. For the fuzz
/// targets (`crate::fuzzing`), which must not send the names they make up
/// to the system's DNS resolver.
#[doc(hidden)]
pub fn offline<R>(f: impl FnOnce() -> R) -> R {
    let outer = OFFLINE.replace(true);
    let result = f();
    OFFLINE.set(outer);
    result
}

/// The addresses of a host from [`parse_url`]: a literal as is, a name
/// through the resolver (each address once). `None`: not found.
pub(crate) fn resolve_host(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| vec![SocketAddr::new(IpAddr::V6(ip), port)]);
    }
    if let Some(ip) = inet_addr(host) {
        return Some(vec![SocketAddr::new(IpAddr::V4(ip), port)]);
    }
    if OFFLINE.get() {
        return host
            .eq_ignore_ascii_case("localhost")
            .then(|| vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]);
    }
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    // getaddrinfo repeats an address once per socket type; nginx asks for
    // SOCK_STREAM only.
    let mut seen = HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    (!addrs.is_empty()).then_some(addrs)
}

/// The upstream `proxy_pass http://AUTHORITY` makes without a block.
pub(crate) fn implicit_upstream(authority: &str, loc: &Loc, addrs: Vec<PeerAddr>) -> UpstreamConf {
    UpstreamConf {
        filters: Vec::new(),
        name: authority.to_owned(),
        loc: loc.clone(),
        peers: addrs
            .into_iter()
            .map(|addr| PeerConf {
                server: authority.to_owned(),
                addr,
                weight: 1,
                max_fails: 1,
                fail_timeout: 10,
                max_conns: 0,
                backup: false,
                down: false,
                slow_start_ms: 0,
            })
            .collect(),
        keepalive: 0,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
        balancer: None,
        balancer_directives: Vec::new(),
        implicit: true,
        health: None,
    }
}

/// `host`, `host:port`, `[v6]:port` of a `listen`. `None` for a malformed port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let colon = if s.starts_with('[') {
        s.find(']')
            .and_then(|end| s[end..].find(':').map(|c| end + c))
    } else {
        s.rfind(':')
    };
    match colon {
        None => Some((s, None)),
        Some(c) => {
            let port = parse_number(&s[c + 1..]).filter(|&p| p > 0 && p <= 65535)?;
            Some((&s[..c], Some(port as u16)))
        }
    }
}

/// A `listen` directive: the model's part and what nginx's address
/// checks need.
struct Listen {
    conf: ListenConf,
    /// Socket options were given (nginx's `lsopt.set`).
    set: bool,
}

fn listen(d: &Directive) -> Result<Listen, ConfError> {
    let spec = &d.args[0];
    let addr = if let Some(port) = parse_number(spec) {
        if port == 0 || port > 65535 {
            return err(
                format!("invalid port in \"{spec}\" of the \"listen\" directive"),
                d,
            );
        }
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port as u16)
    } else {
        let (host, port) = split_host_port(spec).ok_or_else(|| {
            ConfError::at(
                format!("invalid port in \"{spec}\" of the \"listen\" directive"),
                d.loc.clone(),
            )
        })?;
        let port = port.unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host == "*" {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else if let Ok(ip) = host.parse() {
            ip
        } else {
            match resolve_host(host, port) {
                Some(addrs) => addrs[0].ip(),
                None => {
                    return err(
                        format!("host not found in \"{spec}\" of the \"listen\" directive"),
                        d,
                    )
                }
            }
        };
        SocketAddr::new(ip, port)
    };
    let mut listen = Listen {
        conf: ListenConf {
            addr,
            default_server: false,
            backlog: 511,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            sockopts: SocketOpts::default(),
        },
        set: false,
    };
    let opts = &mut listen.conf.sockopts;
    for p in &d.args[1..] {
        if p == "default_server" || p == "default" {
            listen.conf.default_server = true;
        } else if p == "ssl" {
            listen.conf.ssl = true;
        } else if p == "http2" {
            listen.conf.http2 = true;
        } else if p == "proxy_protocol" {
            listen.conf.proxy_protocol = true;
        } else if let Some(n) = p.strip_prefix("backlog=") {
            listen.set = true;
            match parse_number(n).and_then(|n| i32::try_from(n).ok()) {
                Some(n) if n != 0 => listen.conf.backlog = n,
                _ => return err(format!("invalid backlog \"{p}\""), d),
            }
        } else if p == "bind" {
            // (Every address is bound on its own here.)
            listen.set = true;
        } else if p == "reuseport" {
            opts.reuseport = true;
            listen.set = true;
        } else if p == "deferred" {
            opts.deferred = true;
            listen.set = true;
        } else if let Some(flag) = p.strip_prefix("ipv6only=o") {
            opts.ipv6only = Some(match flag {
                "n" => true,
                "ff" => false,
                _ => return err(format!("invalid ipv6only flags \"{}\"", &p[9..]), d),
            });
            listen.set = true;
        } else if let Some(value) = p.strip_prefix("so_keepalive=") {
            opts.keepalive = Some(so_keepalive(value).ok_or_else(|| {
                ConfError::at(
                    format!("invalid so_keepalive value: \"{value}\""),
                    d.loc.clone(),
                )
            })?);
            listen.set = true;
        } else if let Some(size) = p.strip_prefix("rcvbuf=").or(p.strip_prefix("sndbuf=")) {
            let Some(n) = parse_size(size).and_then(|n| i32::try_from(n).ok()) else {
                return err(format!("invalid {} \"{p}\"", &p[..6]), d);
            };
            if p.starts_with('r') {
                opts.rcvbuf = Some(n);
            } else {
                opts.sndbuf = Some(n);
            }
            listen.set = true;
        } else if let Some(n) = p.strip_prefix("fastopen=") {
            let Some(n) = atoi(n).and_then(|n| i32::try_from(n).ok()) else {
                return err(format!("invalid fastopen \"{p}\""), d);
            };
            opts.fastopen = Some(n);
            listen.set = true;
        } else {
            return err(format!("invalid parameter \"{p}\""), d);
        }
    }
    Ok(listen)
}

/// nginx's secure_link merge of a server or location level: its
/// `secure_link_secret` is not to be with the other two, which it is
/// told at the end of `http`.
fn secure_link_alone(own: &Layer, end: &Loc) -> Result<(), ConfError> {
    if own.secure_link_secret.is_some()
        && (own.secure_link.is_some() || own.secure_link_md5.is_some())
    {
        return Err(ConfError::at(
            "\"secure_link_secret\" cannot be mixed with \"secure_link\" and \"secure_link_md5\""
                .into(),
            end.clone(),
        ));
    }
    Ok(())
}

/// `so_keepalive=`'s value, as nginx reads it: `on`, `off`, or
/// `[IDLE]:[INTERVAL]:[COUNT]` (times and a number), not all empty.
fn so_keepalive(value: &str) -> Option<SoKeepalive> {
    match value {
        "on" | "off" => {
            return Some(SoKeepalive {
                on: value == "on",
                idle: 0,
                interval: 0,
                count: 0,
            })
        }
        _ => {}
    }
    let mut parts = value.splitn(3, ':');
    let time = |part: Option<&str>| match part {
        None | Some("") => Some(0),
        Some(t) => parse_time_sec(t).and_then(|s| u32::try_from(s).ok()),
    };
    let idle = time(parts.next())?;
    let interval = time(parts.next())?;
    let count = match parts.next() {
        None | Some("") => 0,
        Some(n) => u32::try_from(atoi(n)?).ok()?,
    };
    (idle != 0 || interval != 0 || count != 0).then_some(SoKeepalive {
        on: true,
        idle,
        interval,
        count,
    })
}

/// nginx's `ngx_http_core_error_page`: `CODE ... [=[RESPONSE]] URI`, each
/// code 300 to 599 but 499; the URI's `?args` kept apart when it is a
/// path. Codes 494 to 497 answer 400 unless `=` says otherwise.
fn error_page(d: &Directive, pages: &mut Vec<ErrorPageConf>) -> Result<(), ConfError> {
    let (uri, codes) = match d.args.split_last() {
        Some(split) => split,
        None => return err("invalid number of arguments in \"error_page\" directive", d),
    };
    let (overwrite, codes) = match codes.split_last() {
        Some((last, rest)) if last.starts_with('=') => {
            if rest.is_empty() {
                return err(format!("invalid value \"{last}\""), d);
            }
            let overwrite = match &last[1..] {
                "" => 0,
                // Past 999 nginx writes a status line no client reads;
                // refused here (an `http` status has three digits).
                n => match atoi(n).filter(|&n| n <= 999) {
                    Some(n) => n as u16,
                    None => return err(format!("invalid value \"{last}\""), d),
                },
            };
            (Some(overwrite), rest)
        }
        _ => (None, codes),
    };
    if uri.contains('$') {
        return err("variables in \"error_page\" are not supported", d);
    }
    let (path, args) = match uri.split_once('?') {
        Some((path, args)) if uri.starts_with('/') => (path.to_owned(), Some(args.to_owned())),
        _ => (uri.clone(), None),
    };
    for code in codes {
        let status = match atoi(code) {
            Some(499) | None => return err(format!("invalid value \"{code}\""), d),
            Some(n) => n,
        };
        if !(300..=599).contains(&status) {
            return err(format!("value \"{code}\" must be between 300 and 599"), d);
        }
        let overwrite = match (overwrite, status) {
            (None, 494..=497) => Some(400),
            (o, _) => o,
        };
        pages.push(ErrorPageConf {
            status: status as u16,
            overwrite,
            uri: path.clone(),
            args: args.clone(),
        });
    }
    Ok(())
}

/// nginx's `ngx_atoi`: digits only, not empty, no overflow.
fn atoi(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The variables `set` names in `items` and the blocks inside them, in
/// order, each once.
fn set_names(items: &[Directive], out: &mut Vec<UserVar>) -> Result<(), ConfError> {
    fn add(out: &mut Vec<UserVar>, name: String, group: bool) {
        match out.iter_mut().find(|v| v.name == name) {
            Some(v) => v.group |= group,
            None => out.push(UserVar { name, group }),
        }
    }
    for d in items {
        if let (true, Some(name)) = (
            d.name == "set" || d.name == "auth_request_set",
            d.args.first().and_then(|a| a.strip_prefix('$')),
        ) {
            // nginx's `auth_request_set` variable is "not found" where the
            // subrequest did not set it, as a regex's named group is.
            add(out, name.to_ascii_lowercase(), d.name == "auth_request_set");
        }
        // The named groups of a regex are variables too (nginx's
        // `ngx_http_regex_compile`): an `if`'s, a regex location's, a
        // regex server name's and a `rewrite`'s.
        for (pattern, caseless) in regexes_of(d) {
            if let Ok(regex) = crate::vars::regex(&pattern, caseless) {
                for written in regex.capture_names().into_iter().flatten() {
                    let name = written.to_ascii_lowercase();
                    // nginx's variables a group may not be (those it may:
                    // the changeable ones, `$arg_*`, most `$http_*`, ...).
                    let declared = crate::vars::builtin(&name) || NGINX_DECLARED.contains(&&*name);
                    if declared && !NGINX_CHANGEABLE.contains(&&*name) {
                        return err(format!("the duplicate \"{written}\" variable"), d);
                    }
                    add(out, name, true);
                }
            }
        }
        if let Some(block) = &d.block {
            set_names(&block.items, out)?;
        }
    }
    Ok(())
}

/// A `limit_except` block as read: its methods (GET takes HEAD along),
/// `allow`/`deny` lines, and what the caller reads: `auth_basic` and
/// `auth_basic_user_file` (it knows the configuration's directory),
/// `proxy_pass` and `access_log`.
struct LimitExcept {
    methods: Vec<String>,
    rules: Option<Vec<Rule>>,
    realm: Option<String>,
    file: Option<PathBuf>,
    /// Its `proxy_pass`, read as an `if` block's.
    proxy: Option<IfProxy>,
    /// Its `access_log` lines, over the location's.
    access_log: Option<AccessLogs>,
}

fn limit_except(d: &Directive) -> Result<LimitExcept, ConfError> {
    const METHODS: &[&str] = &[
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "MKCOL",
        "COPY",
        "MOVE",
        "OPTIONS",
        "PROPFIND",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
        "PATCH",
    ];
    let mut methods = Vec::new();
    for m in &d.args {
        let upper = m.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return err(format!("invalid method \"{m}\""), d);
        }
        if upper == "GET" {
            methods.push("HEAD".to_owned());
        }
        methods.push(upper);
    }
    let mut rules: Option<Vec<Rule>> = None;
    for item in d.block.as_ref().map_or(&[][..], |b| &b.items[..]) {
        match item.name.as_str() {
            "allow" | "deny" => {
                let allow = item.name == "allow";
                let cidrs = access_rule(item)?;
                let list = rules.get_or_insert_with(Vec::new);
                list.extend(cidrs.into_iter().map(|cidr| Rule { allow, cidr }));
            }
            "auth_basic" | "auth_basic_user_file" | "proxy_pass" | "access_log" => {}
            other => {
                return err(
                    format!(
                    "\"{other}\" inside \"limit_except\" is not supported (only allow, deny, auth_basic, auth_basic_user_file, proxy_pass and access_log)"
                ),
                    item,
                )
            }
        }
    }
    Ok(LimitExcept {
        methods,
        rules,
        realm: None,
        file: None,
        proxy: None,
        access_log: None,
    })
}

/// Directives of nginx's stock http modules that waypost does not
/// implement: refused by name rather than as unknown.
const NGINX_NOT_SUPPORTED: &[&str] = &[
    "proxy_store",
    "fastcgi_store",
    "fastcgi_store_access",
    "fastcgi_catch_stderr",
    "fastcgi_limit_rate",
    "fastcgi_force_ranges",
    "uwsgi_pass",
    "uwsgi_param",
    "scgi_pass",
    "grpc_pass",
    "memcached_pass",
    "ssi",
    "slice",
    "dav_methods",
    "userid",
    "add_trailer",
    "image_filter",
    "xslt_stylesheet",
    "perl",
    "ssl_ocsp",
    "ssl_ocsp_responder",
    "ssl_ocsp_cache",
    "ssl_conf_command",
    "proxy_ssl_conf_command",
];

/// Variables nginx's core declares under the `http_` and `sent_http_`
/// prefixes: a regex's named group may not take their names.
const NGINX_DECLARED: &[&str] = &[
    "http_host",
    "http_user_agent",
    "http_referer",
    "http_via",
    "http_x_forwarded_for",
    "http_cookie",
    "sent_http_content_type",
    "sent_http_content_length",
    "sent_http_location",
    "sent_http_last_modified",
    "sent_http_connection",
    "sent_http_keep_alive",
    "sent_http_transfer_encoding",
    "sent_http_cache_control",
    "sent_http_link",
];

/// nginx's variables a regex's named group may take the name of.
const NGINX_CHANGEABLE: &[&str] = &[
    "args",
    "limit_rate",
    "proxy_host",
    "proxy_port",
    "invalid_referer",
    "ssl_protocol",
    "ssl_cipher",
    "msie",
    "modern_browser",
    "ancient_browser",
];

/// How a `location` matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Prefix,
    /// `=`
    Exact,
    /// `^~`
    NoRegex,
    /// `~`, `~*`
    Regex {
        caseless: bool,
    },
}

/// A `location`'s modifier and name or pattern, in nginx's forms: `= P`,
/// `^~ P`, `~ R`, `~* R`, and the same modifiers glued to the name; the
/// modifier nginx does not know is the error.
fn location_modifier(args: &[String]) -> Result<(Modifier, &str), &str> {
    let glued = [
        ("=", Modifier::Exact),
        ("^~", Modifier::NoRegex),
        ("~*", Modifier::Regex { caseless: true }),
        ("~", Modifier::Regex { caseless: false }),
    ];
    match (args[0].as_str(), args.get(1)) {
        (m, Some(p)) => match glued.iter().find(|(g, _)| *g == m) {
            Some(&(_, modifier)) => Ok((modifier, p.as_str())),
            None => Err(m),
        },
        (p, None) => Ok(glued
            .iter()
            .find_map(|&(g, modifier)| Some((modifier, p.strip_prefix(g)?)))
            .unwrap_or((Modifier::Prefix, p))),
    }
}

/// The regexes a directive has, with whether each ignores case: an
/// `if`'s, a regex location's, a regex server name's (hosts are matched
/// without case), a `rewrite`'s.
fn regexes_of(d: &Directive) -> Vec<(String, bool)> {
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    match (d.name.as_str(), &args[..]) {
        ("if", _) => match if_condition(d) {
            Ok(IfCond::Regex {
                pattern, caseless, ..
            }) => vec![(pattern, caseless)],
            _ => Vec::new(),
        },
        ("location", _) => match location_modifier(&d.args) {
            Ok((Modifier::Regex { caseless }, pattern)) => vec![(pattern.to_owned(), caseless)],
            _ => Vec::new(),
        },
        ("server_name", names) => names
            .iter()
            .filter_map(|n| n.strip_prefix('~'))
            .map(|p| (p.to_owned(), true))
            .collect(),
        ("rewrite", [p, ..]) => vec![((*p).to_owned(), false)],
        _ => Vec::new(),
    }
}

/// Directives nginx 1.22 takes in a location's `if` (besides the rewrite
/// module's: `rewrite`, `return`, `set`, `break`, `rewrite_log`,
/// `uninitialized_variable_warn`, which a server's `if` takes too; checked
/// against its `-t`), which waypost refuses there as not supported where
/// it does not read them; any other is "not allowed here", as nginx says.
const NGINX_IN_LOCATION_IF: &[&str] = &[
    "root",
    "limit_rate",
    "limit_rate_after",
    "access_log",
    "error_page",
    "expires",
    "add_header",
    "add_trailer",
    "proxy_pass",
    "gzip",
    "charset",
    "source_charset",
    "override_charset",
    "sendfile",
    "ssi",
    "post_action",
    "fastcgi_pass",
    "uwsgi_pass",
    "scgi_pass",
    "grpc_pass",
    "memcached_pass",
];

/// Whether `token` is `$` and one variable's name (nginx reads all of
/// an `if`'s token as the name).
fn is_variable_name(token: &str) -> bool {
    let name = token.strip_prefix('$').unwrap_or_default();
    let name = name
        .strip_prefix('{')
        .and_then(|n| n.strip_suffix('}'))
        .unwrap_or(name);
    !name.is_empty()
        && !name.bytes().all(|c| c.is_ascii_digit())
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// An `if`'s condition, as nginx's `ngx_http_rewrite_if_condition`: the
/// arguments between `(` and `)` (glued to the first and last or apart).
fn if_condition(d: &Directive) -> Result<IfCond, ConfError> {
    let invalid = |arg: &str| err(format!("invalid condition \"{arg}\""), d);
    let mut args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    match args.first().copied() {
        Some("(") => {
            args.remove(0);
        }
        Some(a) if a.starts_with('(') => args[0] = &a[1..],
        Some(a) => return invalid(a),
        None => return invalid(""),
    }
    match args.last().copied() {
        Some(")") => {
            args.pop();
        }
        Some(a) if a.ends_with(')') => {
            let n = args.len() - 1;
            args[n] = &a[..a.len() - 1];
        }
        Some(a) => return invalid(a),
        None => return invalid(""),
    }
    let Some(&first) = args.first().filter(|a| !a.is_empty()) else {
        return invalid(")");
    };
    if first.len() > 1 && first.starts_with('$') {
        if args.len() != 1 && args.len() != 3 {
            return invalid(first);
        }
        let var = first.to_owned();
        let Some((&op, &value)) = args.get(1).zip(args.get(2)) else {
            return Ok(IfCond::Var(var));
        };
        let value = value.to_owned();
        return match op {
            "=" | "!=" => Ok(IfCond::Equal {
                var,
                value,
                negate: op == "!=",
            }),
            "~" | "~*" | "!~" | "!~*" => Ok(IfCond::Regex {
                var,
                pattern: value,
                caseless: op.ends_with('*'),
                negate: op.starts_with('!'),
            }),
            _ => err(format!("unexpected \"{op}\" in condition"), d),
        };
    }
    let negate = first.starts_with('!');
    let test = first.strip_prefix('!').unwrap_or(first);
    if test.len() == 2 && test.starts_with('-') {
        if args.len() != 2 {
            return invalid(first);
        }
        let letter = test.as_bytes()[1];
        if !matches!(letter, b'f' | b'd' | b'e' | b'x') {
            return invalid(first);
        }
        return Ok(IfCond::File {
            path: args[1].to_owned(),
            test: letter,
            negate,
        });
    }
    invalid(first)
}

/// The settings of each `if` block in a location's `script` that has its
/// own, merged over the location's as nginx merges the block's level: a
/// `limit_rate_after` of the location applies under the block's rate,
/// and the block's `gzip on` compresses with the location's gzip settings.
fn merge_if_levels(script: &mut [RewriteOp], location: &Layer) {
    for op in script {
        match op {
            RewriteOp::Headers(h) => {
                if let Some((rate, after)) = &mut h.limit_rate {
                    *rate = rate.or(location.limit_rate);
                    *after = after.or(location.limit_rate_after);
                }
                // `gzip on` in the block: the location's gzip settings.
                if let Some(Some(conf)) = &mut h.gzip {
                    *conf = location.gzip.settings();
                }
            }
            RewriteOp::If(_, block) => merge_if_levels(block, location),
            _ => {}
        }
    }
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]` or
/// `break`, as nginx's `ngx_http_rewrite`: a replacement starting with
/// `http://`, `https://` or `$scheme` is a redirect.
fn rewrite_op(d: &Directive) -> Result<RewriteOp, ConfError> {
    if d.name == "break" {
        return Ok(RewriteOp::Break);
    }
    let pattern = &d.args[0];
    compile_regex(pattern, false, d)?;
    let replacement = &d.args[1];
    if replacement.is_empty() {
        return err("empty replacement", d);
    }
    let url = ["http://", "https://", "$scheme"]
        .iter()
        .any(|p| replacement.starts_with(p));
    let mut flag = if url {
        RewriteFlag::Redirect(302)
    } else {
        RewriteFlag::Next
    };
    if let Some(f) = d.args.get(2) {
        flag = match f.as_str() {
            "last" if url => flag,
            "break" if url => flag,
            "last" => RewriteFlag::Last,
            "break" => RewriteFlag::Break,
            "redirect" => RewriteFlag::Redirect(302),
            "permanent" => RewriteFlag::Redirect(301),
            other => return err(format!("invalid parameter \"{other}\""), d),
        };
    }
    Ok(RewriteOp::Rewrite(RewriteConf {
        pattern: pattern.clone(),
        replacement: replacement.clone(),
        flag,
    }))
}

fn return_args(d: &Directive) -> Result<Return, ConfError> {
    let first = &d.args[0];
    if d.args.len() == 1
        && (first.starts_with("http://")
            || first.starts_with("https://")
            || first.starts_with("$scheme"))
    {
        return Ok(Return {
            code: 302,
            text: Some(first.clone()),
        });
    }
    match parse_number(first) {
        Some(code) if code <= 999 => Ok(Return {
            code: code as u16,
            text: d.args.get(1).cloned(),
        }),
        _ => err(format!("invalid return code \"{first}\""), d),
    }
}

/// `s` without `prefix` (ASCII), compared without case; `None` when `s`
/// does not start with it. Unlike `s[..prefix.len()]`, it takes any text:
/// the byte after the prefix's length may be inside a character.
fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // Equal to ASCII bytes, so a character boundary follows.
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &s[prefix.len()..])
}

/// `proxy_pass http[s]://authority[/uri]`, checked as nginx's
/// `ngx_http_proxy_pass` (the host is resolved at the end of `http`).
/// Returns the authority as written (`$proxy_host`), the parsed URL and
/// whether it is `https://`.
/// nginx's `proxy_redirect default` for `proxy_pass URL` (as written) in
/// the location `path`: the URL by the path, or the URL and `/` by `/`
/// when it has no URI part.
fn default_redirect_of(url: &str, has_uri: bool, path: &str) -> Redirect {
    if has_uri {
        Redirect {
            from: url.to_owned(),
            to: path.to_owned(),
        }
    } else {
        Redirect {
            from: format!("{url}/"),
            to: "/".to_owned(),
        }
    }
}

/// A peer written `unix:PATH`: the socket, or nginx's reason to refuse
/// the path; `None` for another address.
pub(crate) fn unix_peer(text: &str) -> Option<Result<PeerAddr, &'static str>> {
    let path = strip_prefix_ignore_case(text, "unix:")?;
    Some(unix_path(path).map(|p| PeerAddr::Unix(Path::new(p).into())))
}

/// `fastcgi_pass ADDRESS`: a host and port, an upstream's name, or
/// `unix:PATH`; no scheme and no URI.
fn fastcgi_pass_url(d: &Directive) -> Result<(String, ParsedUrl), ConfError> {
    let rest = d.args[0].as_str();
    match unix_peer(rest) {
        Some(Ok(_)) => {
            // Its own implicit upstream: no block has such a name.
            let url = ParsedUrl {
                host: rest.to_owned(),
                port: 0,
                no_port: false,
                uri: None,
            };
            return Ok((rest.to_owned(), url));
        }
        Some(Err(e)) => return err(format!("{e} in upstream \"{rest}\""), d),
        None => {}
    }
    // (No URI part, as nginx parses it: a `/` or `?` is a bad host.)
    let parsed = parse_url(rest, 80, false)
        .map_err(|e| ConfError::at(format!("{e} in upstream \"{rest}\""), d.loc.clone()))?;
    Ok((rest.to_owned(), parsed))
}

fn proxy_pass_url(d: &Directive) -> Result<(String, ParsedUrl, bool), ConfError> {
    let url = &d.args[0];
    let (rest, tls) = if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        (rest, false)
    } else if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        (rest, true)
    } else {
        return err("invalid URL prefix", d);
    };
    if let Some(after) = strip_prefix_ignore_case(rest, "unix:") {
        // `unix:PATH[:URI]`, as nginx's `ngx_parse_unix_domain_url`.
        let (path, uri) = match after.find(':') {
            Some(i) => (&after[..i], Some(after[i + 1..].to_owned())),
            None => (after, None),
        };
        let authority = format!("unix:{path}");
        if let Err(e) = unix_path(path) {
            return err(format!("{e} in upstream \"{rest}\""), d);
        }
        if tls {
            return err(
                format!("https to a unix domain socket is not supported in upstream \"{rest}\""),
                d,
            );
        }
        let url = ParsedUrl {
            host: authority.clone(),
            port: 0,
            no_port: false,
            uri: uri.filter(|u| !u.is_empty()),
        };
        return Ok((authority, url, tls));
    }
    let parsed = parse_url(rest, if tls { 443 } else { 80 }, true)
        .map_err(|e| ConfError::at(format!("{e} in upstream \"{rest}\""), d.loc.clone()))?;
    let authority = match rest.find(['/', '?']) {
        Some(i) => &rest[..i],
        None => rest,
    };
    Ok((authority.to_owned(), parsed, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, no_port: bool, uri: Option<&str>) -> ParsedUrl {
        ParsedUrl {
            host: host.to_owned(),
            port,
            no_port,
            uri: uri.map(str::to_owned),
        }
    }

    #[test]
    fn url_prefixes_on_any_text() {
        // Found by the `config` fuzz target: the byte after `http://`'s
        // length inside a character panicked (`url[..7]`).
        assert_eq!(strip_prefix_ignore_case("HTTP://a", "http://"), Some("a"));
        assert_eq!(strip_prefix_ignore_case("htt\u{fffd}]:9", "http://"), None);
        assert_eq!(strip_prefix_ignore_case("unix\u{e9}", "unix:"), None);
        assert_eq!(strip_prefix_ignore_case("http", "http://"), None);
        let d = |arg: &str| Directive {
            name: "proxy_pass".to_owned(),
            args: vec![arg.to_owned()],
            block: None,
            loc: Loc {
                file: Arc::new(PathBuf::from("t.conf")),
                line: 1,
            },
        };
        for url in [
            "htt\u{fffd}\u{fffd}]:9",
            "https:/\u{e9}",
            "http:/\u{20ac}",
            "https:/\u{20ac}",
        ] {
            let e = proxy_pass_url(&d(url)).expect_err(url);
            assert_eq!(e.message, "invalid URL prefix");
        }
        let (authority, _, tls) = proxy_pass_url(&d("http://unix\u{e9}")).expect("a host");
        assert!(!tls);
        assert_eq!(authority, "unix\u{e9}");
        // An upstream `server` that starts like `unix:`.
        let server = |arg: &str| Directive {
            name: "server".to_owned(),
            ..d(arg)
        };
        let e = offline(|| server_line(&server("unix\u{e9}x"), ServerParams::ALL))
            .expect_err("not resolved");
        assert_eq!(e.message, "host not found in upstream \"unix\u{e9}x\"");
    }

    #[test]
    fn urls_as_nginx_splits_them() {
        assert_eq!(parse_url("a", 80, false), Ok(url("a", 80, true, None)));
        assert_eq!(parse_url("a:81", 80, false), Ok(url("a", 81, false, None)));
        assert_eq!(
            parse_url("a:81/x?y", 80, true),
            Ok(url("a", 81, false, Some("/x?y")))
        );
        assert_eq!(
            parse_url("a?b", 80, true),
            Ok(url("a", 80, true, Some("?b")))
        );
        assert_eq!(
            parse_url("[::1]:81", 80, false),
            Ok(url("[::1]", 81, false, None))
        );
        assert_eq!(
            parse_url("[::1]", 80, false),
            Ok(url("[::1]", 80, true, None))
        );
        assert_eq!(parse_url("a/x", 80, false), Err("invalid host"));
        assert_eq!(parse_url("a:0", 80, false), Err("invalid port"));
        assert_eq!(parse_url("a:65536", 80, false), Err("invalid port"));
        assert_eq!(parse_url("a:b:c", 80, false), Err("invalid port"));
        assert_eq!(parse_url("a:", 80, false), Err("invalid port"));
        assert_eq!(parse_url("", 80, false), Err("no host"));
        assert_eq!(parse_url(":80", 80, false), Err("no host"));
        assert_eq!(parse_url("/x", 80, true), Err("no host"));
        assert_eq!(parse_url("[::1", 80, false), Err("invalid host"));
        assert_eq!(parse_url("[::1]x", 80, false), Err("invalid host"));
        assert_eq!(parse_url("[]:80", 80, false), Err("no host"));
        assert_eq!(parse_url("[zz]:80", 80, false), Err("invalid IPv6 address"));
    }

    #[test]
    fn dotted_quads_as_nginx_reads_them() {
        assert_eq!(inet_addr("127.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_addr("127.000.0.01"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(inet_addr("256.0.0.1"), None);
        assert_eq!(inet_addr("1.2.3"), None);
        assert_eq!(inet_addr("1.2.3.4.5"), None);
        assert_eq!(inet_addr("localhost"), None);
    }
}
