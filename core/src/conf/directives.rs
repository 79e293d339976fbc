//! The core's directive table: where each directive may appear and how many
//! arguments it takes, as nginx's `ngx_command_t` entries. Modules add their
//! own entries at load time; nothing here names a module directive.

use waypost_module_api::{Contexts, DirectiveSpec};

/// A configuration context. `Main` is the top level, `Events` the
/// `events {}` block; the others map to the module API's [`Contexts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    Main,
    Events,
    Http,
    Server,
    Location,
    Upstream,
}

impl Ctx {
    fn bit(self) -> u32 {
        match self {
            Ctx::Main => 1 << 8,
            Ctx::Events => 1 << 9,
            Ctx::Http => Contexts::HTTP.0,
            Ctx::Server => Contexts::SERVER.0,
            Ctx::Location => Contexts::LOCATION.0,
            Ctx::Upstream => Contexts::UPSTREAM.0,
        }
    }
}

const MAIN: u32 = 1 << 8;
const EVENTS: u32 = 1 << 9;
const HTTP: u32 = Contexts::HTTP.0;
const SRV: u32 = Contexts::SERVER.0;
const LOC: u32 = Contexts::LOCATION.0;
const UPS: u32 = Contexts::UPSTREAM.0;
const ANY: u32 = u32::MAX;

/// One table entry.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    contexts: u32,
    pub block: bool,
    pub min: u32,
    pub max: u32,
    /// nginx's NGX_CONF_FLAG: one argument, "on" or "off".
    pub flag: bool,
}

const fn d(name: &'static str, contexts: u32, min: u32, max: u32) -> Spec {
    Spec {
        name,
        contexts,
        block: false,
        min,
        max,
        flag: false,
    }
}
const fn b(name: &'static str, contexts: u32, min: u32, max: u32) -> Spec {
    Spec {
        name,
        contexts,
        block: true,
        min,
        max,
        flag: false,
    }
}
const fn f(name: &'static str, contexts: u32) -> Spec {
    Spec {
        name,
        contexts,
        block: false,
        min: 1,
        max: 1,
        flag: true,
    }
}

const MORE: u32 = u32::MAX;
const PROXY: u32 = HTTP | SRV | LOC;

/// Core directives. Several names appear twice, like nginx's `server`
/// (a block in `http`, a peer line in `upstream`).
pub const CORE: &[Spec] = &[
    // main
    f("daemon", MAIN),
    f("master_process", MAIN),
    d("worker_processes", MAIN, 1, 1),
    d("pid", MAIN, 1, 1),
    d("error_log", MAIN | HTTP | SRV | LOC, 1, MORE),
    d("load_module", MAIN, 1, 1),
    d("user", MAIN, 1, 2),
    d("worker_rlimit_nofile", MAIN, 1, 1),
    d("worker_shutdown_timeout", MAIN, 1, 1),
    f("pcre_jit", MAIN),
    b("events", MAIN, 0, 0),
    b("http", MAIN, 0, 0),
    d("include", ANY, 1, 1),
    // events
    d("worker_connections", EVENTS, 1, 1),
    d("use", EVENTS, 1, 1),
    f("multi_accept", EVENTS),
    f("accept_mutex", EVENTS),
    // http
    b("upstream", HTTP, 1, 1),
    b("map", HTTP, 2, 2),
    b("geo", HTTP, 1, 2),
    b("split_clients", HTTP, 2, 2),
    b("server", HTTP, 0, 0),
    d("access_log", PROXY, 1, MORE),
    d("log_format", HTTP, 2, MORE),
    d("keepalive_timeout", PROXY, 1, 2),
    d("keepalive_requests", PROXY, 1, 1),
    d("keepalive_time", PROXY, 1, 1),
    d("client_max_body_size", PROXY, 1, 1),
    d("client_header_timeout", HTTP | SRV, 1, 1),
    d("large_client_header_buffers", HTTP | SRV, 2, 2),
    // Accepted, checked: waypost reads heads into pooled buffers of its
    // own; the limits are large_client_header_buffers'.
    d("client_header_buffer_size", HTTP | SRV, 1, 1),
    f("underscores_in_headers", HTTP | SRV),
    f("merge_slashes", HTTP | SRV),
    f("msie_padding", PROXY),
    f("ignore_invalid_headers", HTTP | SRV),
    // Accepted so that nginx files load: waypost has no such hash tables.
    d("types_hash_max_size", PROXY, 1, 1),
    d("types_hash_bucket_size", PROXY, 1, 1),
    d("server_names_hash_max_size", HTTP, 1, 1),
    d("server_names_hash_bucket_size", HTTP, 1, 1),
    d("variables_hash_max_size", HTTP, 1, 1),
    d("variables_hash_bucket_size", HTTP, 1, 1),
    d("map_hash_max_size", HTTP, 1, 1),
    d("map_hash_bucket_size", HTTP, 1, 1),
    d("proxy_headers_hash_max_size", PROXY, 1, 1),
    d("proxy_headers_hash_bucket_size", PROXY, 1, 1),
    // charset (no recoding: charset_map is not supported)
    d("charset", PROXY, 1, 1),
    d("charset_types", PROXY, 1, MORE),
    d("source_charset", PROXY, 1, 1),
    f("override_charset", PROXY),
    // gzip
    f("gzip", PROXY),
    d("gzip_types", PROXY, 1, MORE),
    d("gzip_min_length", PROXY, 1, 1),
    d("gzip_comp_level", PROXY, 1, 1),
    f("gzip_vary", PROXY),
    d("gzip_static", PROXY, 1, 1),
    // gunzip
    f("gunzip", PROXY),
    d("gunzip_buffers", PROXY, 2, 2),
    // sub_filter
    d("sub_filter", PROXY, 2, 2),
    f("sub_filter_once", PROXY),
    f("sub_filter_last_modified", PROXY),
    d("sub_filter_types", PROXY, 1, MORE),
    d("gzip_proxied", PROXY, 1, MORE),
    d("gzip_http_version", PROXY, 1, 1),
    d("gzip_disable", PROXY, 1, MORE),
    d("gzip_buffers", PROXY, 2, 2),
    d("client_body_timeout", PROXY, 1, 1),
    d("send_timeout", PROXY, 1, 1),
    f("sendfile", PROXY),
    // Tuning with nothing to tune here (accepted so that nginx files
    // load): caches of open files and log files, output buffering, I/O.
    d("open_file_cache", PROXY, 1, 2),
    d("open_file_cache_valid", PROXY, 1, 1),
    d("open_file_cache_min_uses", PROXY, 1, 1),
    f("open_file_cache_errors", PROXY),
    d("open_log_file_cache", PROXY, 1, 4),
    d("output_buffers", PROXY, 2, 2),
    d("postpone_output", PROXY, 1, 1),
    d("send_lowat", PROXY, 1, 1),
    d("read_ahead", PROXY, 1, 1),
    d("sendfile_max_chunk", PROXY, 1, 1),
    d("directio", PROXY, 1, 1),
    d("directio_alignment", PROXY, 1, 1),
    // Tuning of machinery waypost does not have, or values asking for
    // what it lacks (refused as not supported): `conf::tuning`.
    d("connection_pool_size", HTTP | SRV, 1, 1),
    d("request_pool_size", HTTP | SRV, 1, 1),
    d("client_body_in_file_only", PROXY, 1, 1),
    f("client_body_in_single_buffer", PROXY),
    f("uninitialized_variable_warn", PROXY),
    d("aio", PROXY, 1, 1),
    f("aio_write", PROXY),
    d("proxy_limit_rate", PROXY, 1, 1),
    f("proxy_force_ranges", PROXY),
    d("proxy_ignore_headers", PROXY, 1, MORE),
    d("subrequest_output_buffer_size", PROXY, 1, 1),
    f("msie_refresh", PROXY),
    d("disable_symlinks", PROXY, 1, 2),
    f("reset_timedout_connection", PROXY),
    d("keepalive_disable", PROXY, 1, MORE),
    d("lingering_close", PROXY, 1, 1),
    d("lingering_time", PROXY, 1, 1),
    d("lingering_timeout", PROXY, 1, 1),
    d("http2_max_concurrent_streams", HTTP | SRV, 1, 1),
    d("http2_max_concurrent_pushes", HTTP | SRV, 1, 1),
    d("http2_recv_buffer_size", HTTP, 1, 1),
    d("http2_body_preread_size", HTTP | SRV, 1, 1),
    d("http2_chunk_size", PROXY, 1, 1),
    d("http2_streams_index_size", HTTP | SRV, 1, 1),
    d("http2_push", PROXY, 1, 1),
    f("http2_push_preload", PROXY),
    d("http2_idle_timeout", HTTP | SRV, 1, 1),
    d("http2_max_requests", HTTP | SRV, 1, 1),
    d("http2_max_field_size", HTTP | SRV, 1, 1),
    d("http2_max_header_size", HTTP | SRV, 1, 1),
    d("http2_recv_timeout", HTTP | SRV, 1, 1),
    d("ssl_buffer_size", HTTP | SRV, 1, 1),
    f("ssl_early_data", HTTP | SRV),
    d("ssl_verify_client", HTTP | SRV, 1, 1),
    d("ssl_verify_depth", HTTP | SRV, 1, 1),
    d("proxy_ssl_verify_depth", PROXY, 1, 1),
    // the proxy cache
    d("proxy_cache_path", HTTP, 2, MORE),
    d("proxy_cache", PROXY, 1, 1),
    d("proxy_cache_key", PROXY, 1, 1),
    d("proxy_cache_valid", PROXY, 1, MORE),
    d("proxy_cache_methods", PROXY, 1, MORE),
    d("proxy_cache_min_uses", PROXY, 1, 1),
    d("proxy_cache_use_stale", PROXY, 1, MORE),
    f("proxy_cache_lock", PROXY),
    d("proxy_cache_lock_timeout", PROXY, 1, 1),
    d("proxy_cache_lock_age", PROXY, 1, 1),
    f("proxy_cache_revalidate", PROXY),
    f("proxy_cache_convert_head", PROXY),
    f("proxy_cache_background_update", PROXY),
    d("proxy_cache_max_range_offset", PROXY, 1, 1),
    d("proxy_cache_bypass", PROXY, 1, MORE),
    d("proxy_no_cache", PROXY, 1, MORE),
    // Accepted at nginx's default value, which is waypost's behaviour;
    // the other value is refused as not supported.
    f("proxy_ignore_client_abort", PROXY),
    f("chunked_transfer_encoding", PROXY),
    f("log_subrequest", PROXY),
    f("tcp_nopush", PROXY),
    f("tcp_nodelay", PROXY),
    f("server_tokens", PROXY),
    d("default_type", PROXY, 1, 1),
    b("types", PROXY, 0, 0),
    // server
    d("listen", SRV, 1, MORE),
    d("server_name", SRV, 1, MORE),
    b("location", SRV | LOC, 1, 2),
    b("limit_except", LOC, 1, MORE),
    d("return", SRV | LOC, 1, 2),
    d("rewrite", SRV | LOC, 2, 3),
    d("break", SRV | LOC, 0, 0),
    d("set", SRV | LOC, 2, 2),
    b("if", SRV | LOC, 1, MORE),
    f("rewrite_log", PROXY),
    d("error_page", PROXY, 2, MORE),
    f("recursive_error_pages", PROXY),
    d("internal", LOC, 0, 0),
    // static files
    d("root", PROXY, 1, 1),
    d("alias", LOC, 1, 1),
    d("index", PROXY, 1, MORE),
    d("try_files", SRV | LOC, 2, MORE),
    f("log_not_found", PROXY),
    f("etag", PROXY),
    f("autoindex", PROXY),
    f("random_index", LOC),
    f("autoindex_exact_size", PROXY),
    f("autoindex_localtime", PROXY),
    d("autoindex_format", PROXY, 1, 1),
    d("if_modified_since", PROXY, 1, 1),
    d("max_ranges", PROXY, 1, 1),
    // referer
    d("valid_referers", SRV | LOC, 1, MORE),
    d("secure_link", HTTP | SRV | LOC, 1, 1),
    d("secure_link_md5", HTTP | SRV | LOC, 1, 1),
    d("secure_link_secret", HTTP | SRV | LOC, 1, 1),
    d("referer_hash_max_size", SRV | LOC, 1, 1),
    d("referer_hash_bucket_size", SRV | LOC, 1, 1),
    // TLS and HTTP/2 to clients
    d("ssl_certificate", HTTP | SRV, 1, 1),
    d("ssl_certificate_key", HTTP | SRV, 1, 1),
    d("ssl_protocols", HTTP | SRV, 1, MORE),
    d("ssl_session_timeout", HTTP | SRV, 1, 1),
    f("ssl_prefer_server_ciphers", HTTP | SRV),
    d("ssl_ciphers", HTTP | SRV, 1, 1),
    d("ssl_session_cache", HTTP | SRV, 1, 2),
    f("ssl_session_tickets", HTTP | SRV),
    d("ssl_dhparam", HTTP | SRV, 1, 1),
    d("ssl_password_file", HTTP | SRV, 1, 1),
    d("ssl_ecdh_curve", HTTP | SRV, 1, 1),
    f("ssl_reject_handshake", HTTP | SRV),
    // Read and checked, not acted on (README: OCSP stapling).
    f("ssl_stapling", HTTP | SRV),
    f("ssl_stapling_verify", HTTP | SRV),
    d("ssl_stapling_file", HTTP | SRV, 1, 1),
    d("ssl_stapling_responder", HTTP | SRV, 1, 1),
    d("ssl_trusted_certificate", HTTP | SRV, 1, 1),
    d("ssl_client_certificate", HTTP | SRV, 1, 1),
    d("ssl_crl", HTTP | SRV, 1, 1),
    // For the names a `proxy_pass` with variables gives.
    d("resolver", PROXY, 1, MORE),
    d("resolver_timeout", PROXY, 1, 1),
    f("http2", HTTP | SRV),
    // location and inherited proxy settings
    d("proxy_pass", LOC, 1, 1),
    // waypost: the Prometheus exposition as this location's content
    d("metrics", LOC, 0, 0),
    // waypost: the same data as JSON
    d("status", LOC, 0, 0),
    // An argument (`stub_status on;`, before nginx 1.7.5) is taken and
    // ignored, as nginx does.
    d("stub_status", LOC, 0, 1),
    d("empty_gif", LOC, 0, 0),
    d("limit_rate", PROXY, 1, 1),
    d("limit_rate_after", PROXY, 1, 1),
    d("proxy_set_header", PROXY, 2, 2),
    d("add_header", PROXY, 2, 3),
    d("expires", PROXY, 1, 2),
    f("absolute_redirect", PROXY),
    f("port_in_redirect", PROXY),
    f("server_name_in_redirect", PROXY),
    d("proxy_http_version", PROXY, 1, 1),
    d("proxy_redirect", PROXY, 1, 2),
    d("proxy_hide_header", PROXY, 1, 1),
    d("proxy_cookie_domain", PROXY, 1, 2),
    d("proxy_cookie_path", PROXY, 1, 2),
    d("proxy_cookie_flags", PROXY, 1, MORE),
    d("proxy_pass_header", PROXY, 1, 1),
    d("proxy_next_upstream", PROXY, 1, MORE),
    d("proxy_next_upstream_tries", PROXY, 1, 1),
    d("proxy_next_upstream_timeout", PROXY, 1, 1),
    d("proxy_connect_timeout", PROXY, 1, 1),
    d("proxy_send_timeout", PROXY, 1, 1),
    d("proxy_read_timeout", PROXY, 1, 1),
    f("proxy_intercept_errors", PROXY),
    // Accepted so that nginx files load: waypost streams bodies both
    // ways, as nginx with `proxy_buffering off` and
    // `proxy_request_buffering off`; sizes and paths are checked, unused
    // (`proxy_buffering` names the read call in a failed read's line).
    f("proxy_buffering", PROXY),
    f("proxy_request_buffering", PROXY),
    d("proxy_buffer_size", PROXY, 1, 1),
    d("proxy_buffers", PROXY, 2, 2),
    d("proxy_busy_buffers_size", PROXY, 1, 1),
    d("proxy_max_temp_file_size", PROXY, 1, 1),
    d("proxy_temp_file_write_size", PROXY, 1, 1),
    d("proxy_temp_path", PROXY, 1, 4),
    d("client_body_buffer_size", PROXY, 1, 1),
    d("client_body_temp_path", PROXY, 1, 4),
    // `proxy_pass https://`
    f("proxy_ssl_verify", PROXY),
    d("proxy_ssl_trusted_certificate", PROXY, 1, 1),
    d("proxy_ssl_crl", PROXY, 1, 1),
    f("proxy_ssl_server_name", PROXY),
    d("proxy_ssl_name", PROXY, 1, 1),
    d("proxy_ssl_certificate", PROXY, 1, 1),
    d("proxy_ssl_certificate_key", PROXY, 1, 1),
    d("proxy_ssl_password_file", PROXY, 1, 1),
    d("proxy_ssl_protocols", PROXY, 1, MORE),
    d("proxy_ssl_ciphers", PROXY, 1, 1),
    f("proxy_ssl_session_reuse", PROXY),
    d("proxy_bind", PROXY, 1, 2),
    f("proxy_socket_keepalive", PROXY),
    // fastcgi (its `proxy_` twins: `FASTCGI_TWINS`)
    d("fastcgi_pass", LOC, 1, 1),
    d("fastcgi_param", PROXY, 2, 3),
    d("fastcgi_index", PROXY, 1, 1),
    d("fastcgi_split_path_info", PROXY, 1, 1),
    f("fastcgi_keep_conn", PROXY),
    d("fastcgi_cache_path", HTTP, 2, MORE),
    // realip
    d("set_real_ip_from", PROXY, 1, 1),
    d("real_ip_header", PROXY, 1, 1),
    f("real_ip_recursive", PROXY),
    // access
    d("allow", PROXY, 1, 1),
    d("deny", PROXY, 1, 1),
    // the upstream request's method, headers and body
    d("proxy_method", PROXY, 1, 1),
    f("proxy_pass_request_headers", PROXY),
    f("proxy_pass_request_body", PROXY),
    d("proxy_set_body", PROXY, 1, 1),
    // auth_basic
    d("auth_basic", PROXY, 1, 1),
    d("auth_basic_user_file", PROXY, 1, 1),
    d("satisfy", PROXY, 1, 1),
    // auth_request
    d("auth_request", PROXY, 1, 1),
    d("auth_request_set", PROXY, 2, 2),
    // mirror
    d("mirror", PROXY, 1, 1),
    f("mirror_request_body", PROXY),
    // limit_conn
    d("limit_conn_zone", HTTP, 2, 2),
    d("limit_conn", PROXY, 2, 2),
    d("limit_conn_status", PROXY, 1, 1),
    d("limit_conn_log_level", PROXY, 1, 1),
    f("limit_conn_dry_run", PROXY),
    // upstream
    d("server", UPS, 1, MORE),
    d("keepalive", UPS, 1, 1),
    d("keepalive_timeout", UPS, 1, 1),
    d("keepalive_requests", UPS, 1, 1),
    d("zone", UPS, 1, 2),
    d("health_check", UPS, 0, MORE),
];

impl Spec {
    pub fn allowed_in(&self, ctx: Ctx) -> bool {
        self.contexts & ctx.bit() != 0
    }

    /// The entry for a module's directive.
    pub fn from_module(spec: &DirectiveSpec) -> Spec {
        Spec {
            name: "",
            contexts: spec.contexts.0,
            block: false,
            min: spec.min_args,
            max: spec.max_args,
            flag: false,
        }
    }
}

/// What the table says about a directive read in a context.
pub enum Lookup {
    Found(Spec),
    NotAllowedHere,
    Unknown,
}

/// The `fastcgi_` directives that are their `proxy_` twins for FastCGI
/// (`fastcgi_X` takes where and what `proxy_X` takes, and is read as it
/// into the location's FastCGI settings).
pub const FASTCGI_TWINS: &[&str] = &[
    "next_upstream",
    "next_upstream_tries",
    "next_upstream_timeout",
    "connect_timeout",
    "send_timeout",
    "read_timeout",
    "intercept_errors",
    "hide_header",
    "pass_header",
    "pass_request_headers",
    "pass_request_body",
    "ignore_client_abort",
    "bind",
    "socket_keepalive",
    "buffering",
    "request_buffering",
    "buffer_size",
    "buffers",
    "busy_buffers_size",
    "max_temp_file_size",
    "temp_file_write_size",
    "temp_path",
    "cache",
    "cache_key",
    "cache_valid",
    "cache_methods",
    "cache_min_uses",
    "cache_use_stale",
    "cache_lock",
    "cache_lock_timeout",
    "cache_lock_age",
    "cache_revalidate",
    "cache_background_update",
    "cache_max_range_offset",
    "cache_bypass",
    "no_cache",
    "ignore_headers",
];

/// Finds `name` for `ctx` among the core table and `extra` entries, as
/// nginx's `ngx_conf_handler` does: an entry for another context is skipped,
/// and a name known only elsewhere is "not allowed here".
pub fn lookup(name: &str, ctx: Ctx, extra: impl Iterator<Item = Spec>) -> Lookup {
    // A FastCGI twin is its `proxy_` twin's entry.
    let twin = name
        .strip_prefix("fastcgi_")
        .filter(|rest| FASTCGI_TWINS.contains(rest))
        .map(|rest| format!("proxy_{rest}"));
    let name = twin.as_deref().unwrap_or(name);
    let mut known = false;
    for spec in CORE.iter().copied().filter(|s| s.name == name).chain(extra) {
        known = true;
        if spec.allowed_in(ctx) {
            return Lookup::Found(spec);
        }
    }
    if known {
        Lookup::NotAllowedHere
    } else {
        Lookup::Unknown
    }
}
