//! The checked configuration: what the interpreter builds from the syntax
//! tree and the runtime is built from. Plain data, no sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::conf::syntax::Loc;
use crate::http::allow::Rules;
use crate::http::head::HeaderNames;
use crate::http::realip::RealIp;
use crate::log::Level;
use crate::modules::loader::LoadedModule;

#[derive(Debug)]
pub struct Config {
    pub main: MainConf,
    pub http: HttpConf,
    /// Every file read, for `-T`.
    pub files: Vec<(PathBuf, String)>,
    /// Modules found in the modules directory and named by `load_module`.
    pub modules: Vec<Arc<LoadedModule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
    /// `syslog:...`: each line a syslog message, its severity the line's
    /// level.
    Syslog(crate::log::syslog::Target),
}

#[derive(Debug, Clone)]
pub struct MainConf {
    pub worker_processes: usize,
    pub pid: PathBuf,
    pub error_log: (LogTarget, Level),
    pub worker_connections: usize,
    /// How long a graceful shutdown lets requests run.
    pub worker_shutdown_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Default)]
pub struct HttpConf {
    /// Filter modules' directives at http level (zones, defaults).
    pub filters: Vec<ModuleDirective>,
    pub upstreams: Vec<UpstreamConf>,
    pub servers: Vec<ServerConf>,
    /// `log_format` arguments after the name, by name.
    pub log_formats: HashMap<String, Vec<String>>,
    /// `map` blocks, in order.
    pub maps: Vec<MapConf>,
    /// The variables `set` names anywhere and the named groups of the
    /// configuration's regexes, lowercase, without `$`.
    pub user_vars: Vec<UserVar>,
    /// `limit_conn_zone` lines, in order.
    pub limit_conn_zones: Vec<LimitConnZone>,
    /// `proxy_cache_path` lines, in order.
    pub cache_paths: Vec<CachePathConf>,
    /// nginx's list of upstreams, which a `proxy_pass` with variables
    /// searches: each one's host (lowercase), port (0 for an `upstream`
    /// block) and index into `upstreams`, in the order they were made.
    pub upstream_names: Vec<(String, u16, usize)>,
}

/// A variable `set` or a regex's named group makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserVar {
    pub name: String,
    /// A regex's named group or an `auth_request_set` variable: where
    /// nothing set it, it is "not found" (`-` in a log line), as nginx's
    /// `ngx_http_regex_compile` and auth request module make it even when
    /// `set` names it too; a `set` variable alone is empty (nginx's
    /// `ngx_http_rewrite_var`).
    pub group: bool,
}

/// One `limit_conn_zone`.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConnZone {
    pub name: String,
    /// The key, as written.
    pub key: String,
    pub size: u64,
}

/// `auth_basic` with its `auth_basic_user_file`, in effect at a level.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthBasicConf {
    /// The realm as written (variables allowed; `off` turns it off).
    pub realm: String,
    pub file: std::path::PathBuf,
}

/// `auth_request URI` and the `auth_request_set` lines in effect at a
/// level.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRequestConf {
    /// The subrequest's URI, as written.
    pub uri: String,
    /// `auth_request_set $VAR VALUE`: the variable's index among the user
    /// variables ([`UserVar`]) and the value as written.
    pub sets: Vec<(u32, String)>,
}

/// The `mirror` lines in effect at a level and `mirror_request_body`.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConf {
    /// The subrequests' URIs, as written, in order.
    pub uris: Vec<String>,
    /// `mirror_request_body` (on: the client's body is read whole first
    /// and sent with each mirror).
    pub body: bool,
}

/// The `limit_conn` lines in effect at a level, and their settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConnConf {
    /// (zone, number), in the order written.
    pub limits: Vec<(String, u16)>,
    pub status: u16,
    pub level: crate::log::Level,
    pub dry_run: bool,
}

/// A checked `map` block (`crate::map` builds it).
#[derive(Debug, Clone)]
pub struct MapConf {
    /// The variable, lowercase, without `$`.
    pub name: String,
    /// The source template, as written.
    pub source: String,
    pub hostnames: bool,
    /// `default`'s value, as written.
    pub default: Option<String>,
    pub entries: Vec<MapEntry>,
    /// The `map` line.
    pub loc: Loc,
    /// What the block is: a `map`'s keys (`entries`), or another module's
    /// table over the same kind of variable.
    pub kind: MapKind,
}

/// The block a map-like variable comes from.
#[derive(Debug, Clone)]
pub enum MapKind {
    Map,
    /// `geo`: networks instead of keys (`source` is its `$address`, empty
    /// without one).
    Geo(GeoConf),
    /// `split_clients`: the source's MurmurHash2 against each share's
    /// upper bound, in order; a `*` share (bound 0) takes the rest.
    Split(Vec<(u32, String)>),
}

/// A checked `geo` block (`crate::geo` builds it).
#[derive(Debug, Clone, Default)]
pub struct GeoConf {
    /// `geo $address $var`.
    pub has_source: bool,
    /// Each network once (a repeated one's last value; `delete`d ones
    /// gone), `default` as 0.0.0.0/0 and ::/0.
    pub networks: Vec<(crate::http::realip::Cidr, String)>,
    /// `proxy` addresses: X-Forwarded-For is believed from them.
    pub proxies: Vec<crate::http::realip::Cidr>,
    pub proxy_recursive: bool,
    /// `ranges`, in place of `networks`.
    pub ranges: Option<GeoRanges>,
}

/// A `geo` block's `ranges`: IPv4 ranges (first, last, value) in order,
/// none overlapping, and the `default` value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoRanges {
    pub list: Vec<(u32, u32, String)>,
    pub default: Option<String>,
}

/// One `KEY VALUE;` line of a `map`.
#[derive(Debug, Clone)]
pub struct MapEntry {
    pub key: MapKey,
    /// The value template, as written.
    pub value: String,
    pub loc: Loc,
}

/// A `map` key, lowercased unless a regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapKey {
    Exact(String),
    /// `*.example.com` (`dot: false`) or `.example.com` (`dot: true`, which
    /// matches `example.com` too), by `example.com`; with `hostnames` only.
    Head {
        suffix: String,
        dot: bool,
    },
    /// `www.example.*`, by `www.example`; with `hostnames` only.
    Tail(String),
    /// `~PATTERN`, or `~*PATTERN` (`caseless`).
    Regex {
        pattern: String,
        caseless: bool,
    },
}

#[derive(Debug)]
pub struct UpstreamConf {
    pub name: String,
    pub loc: Loc,
    /// Primaries first, then backups, each in config order.
    pub peers: Vec<PeerConf>,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    /// Index into `Config::modules`; `None` means round_robin.
    pub balancer: Option<usize>,
    /// The balancer module's directives in this block.
    pub balancer_directives: Vec<ModuleDirective>,
    /// Filter modules' directives in the block (`limit_req` in upstream).
    pub filters: Vec<ModuleDirective>,
    /// Made by `proxy_pass http://host:port` with no upstream block.
    pub implicit: bool,
    /// `health_check`: active probes of every peer.
    pub health: Option<HealthCheck>,
}

/// `health_check [interval=T] [timeout=T] [fails=N] [passes=N] [uri=U]
/// [status=CODES] [port=N] [mandatory]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    /// Probes failed in a row that make a peer unhealthy.
    pub fails: u32,
    /// Probes passed in a row that make it healthy again.
    pub passes: u32,
    pub uri: String,
    /// Inclusive ranges of the statuses that pass.
    pub status: Vec<(u16, u16)>,
    /// Probe this port instead of the peer's.
    pub port: Option<u16>,
    /// New peers start unhealthy until a probe passes.
    pub mandatory: bool,
}

impl HealthCheck {
    pub fn passes_status(&self, status: u16) -> bool {
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

#[derive(Debug, Clone)]
pub struct ModuleDirective {
    /// Index into `Config::modules`.
    pub module: usize,
    pub name: String,
    pub args: Vec<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct PeerConf {
    /// The `server` argument as written.
    pub server: String,
    pub addr: crate::upstream::addr::PeerAddr,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: u32,
    pub max_conns: u32,
    pub backup: bool,
    pub down: bool,
    /// `slow_start=T` in milliseconds; 0 for none.
    pub slow_start_ms: u32,
}

#[derive(Debug)]
pub struct ServerConf {
    pub listens: Vec<ListenConf>,
    pub names: Vec<String>,
    pub locations: Vec<LocationConf>,
    /// A server-level `return` answers before any location is chosen.
    pub ret: Option<Return>,
    /// realip with the server's settings (nginx's post-read phase).
    pub realip: Option<RealIp>,
    /// `allow`/`deny` in effect at the server level: for requests no
    /// location takes.
    pub access: Rules,
    /// `limit_conn` in effect at the server level (none: `None`).
    pub limit_conn: Option<LimitConnConf>,
    /// Filter modules' directives in effect at the server level, for the
    /// requests no location takes.
    pub filters: Vec<ModuleDirective>,
    /// `auth_basic` and `satisfy` at the server level.
    pub auth_basic: Option<AuthBasicConf>,
    pub satisfy_any: bool,
    /// `auth_request` at the server level.
    pub auth_request: Option<AuthRequestConf>,
    /// `mirror` at the server level.
    pub mirror: Option<MirrorConf>,
    /// `add_header` in effect at the server level.
    pub add_headers: Vec<AddHeader>,
    /// `types {}` and `default_type` at the server level.
    pub types: ContentTypes,
    /// `charset` at the server level.
    pub charset: Option<CharsetConf>,
    /// `expires` at the server level.
    pub expires: Option<ExpiresConf>,
    pub limit_rate: Option<crate::http::h1::LimitRate>,
    /// `absolute_redirect` and its kin at the server level.
    pub redirect_style: RedirectStyle,
    /// `msie_padding` at the server level.
    pub msie_padding: bool,
    /// `chunked_transfer_encoding` (on): off sends an answer of unknown
    /// length to an HTTP/1.1 client up to the close, as to HTTP/1.0.
    pub chunked: bool,
    /// `merge_slashes`: the address's default server's applies to its
    /// requests, as their URI is read before the server is known.
    pub merge_slashes: bool,
    /// `gzip on` at the server level: for what no location answers.
    pub gzip: Option<GzipConf>,
    /// `gunzip on`, with the level's gzip settings.
    pub gunzip: Option<GzipConf>,
    /// `sub_filter` at the server level, likewise.
    pub sub_filter: Option<SubFilterConf>,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    /// `keepalive_time`: a connection older than this is closed after the
    /// request it serves.
    pub keepalive_time: Duration,
    /// The server level's client limits: the head's timeout, and the
    /// others for requests no location takes.
    pub client: ClientLimits,
    /// The server level's access logs: for a server-level `return` and a
    /// request no location matches (empty: off).
    pub access_log: Vec<AccessLogConf>,
    /// `ssl_certificate`, `ssl_certificate_key`, `ssl_protocols`,
    /// `ssl_session_timeout`, after inheritance.
    pub tls: TlsConf,
    /// `http2 on`
    pub http2: bool,
    /// `error_page` and `recursive_error_pages` at the server level.
    pub error_pages: ErrorPagesConf,
    /// `root`, `index`, `try_files` and their kin at the server level: for
    /// requests no location takes.
    pub statics: StaticConf,
    /// The server level's `rewrite`, `return` and `break` lines in order,
    /// where it has a `rewrite` or `break` (else `ret` answers alone).
    pub script: Vec<RewriteOp>,
    /// `rewrite_log` at the server level.
    pub rewrite_log: bool,
}

/// One line of a level's rewrite phase (nginx's rewrite module), run in
/// the order written.
#[derive(Debug, Clone)]
pub enum RewriteOp {
    Rewrite(RewriteConf),
    Return(Return),
    Break,
    /// `set $VAR VALUE`: the index of VAR in `HttpConf::user_vars`.
    Set(usize, String),
    /// `set $args VALUE`: the request's arguments.
    SetArgs(String),
    /// `if (CONDITION) { ... }`: its lines run when it holds.
    If(IfCond, Vec<RewriteOp>),
    /// A location `if` block's own settings (first in its lines).
    Headers(Box<IfHeaders>),
}

/// A location `if` block's own settings: its `add_header` lines (which
/// replace the location's), its `expires`, `gzip`, `root`, `limit_rate`,
/// `proxy_pass` and `access_log`.
#[derive(Debug, Clone)]
pub struct IfHeaders {
    pub add_headers: Option<Vec<AddHeader>>,
    pub expires: Option<Option<ExpiresConf>>,
    /// Its `gzip on|off` (`None` inside: off), with the location's other
    /// gzip settings.
    pub gzip: Option<Option<GzipConf>>,
    /// Its `root` (as nginx keeps it), over the location's `root` or
    /// `alias`.
    pub root: Option<String>,
    /// Its `limit_rate` and `limit_rate_after` lines, each over the
    /// location's, as nginx merges the `if` block's level: the block's
    /// own until the location's level is merged, then those in effect.
    pub limit_rate: Option<(Option<u64>, Option<u64>)>,
    pub proxy: Option<IfProxy>,
    /// Its `access_log` lines, which replace the location's (none: `off`).
    pub access_log: Option<Vec<AccessLogConf>>,
}

impl IfHeaders {
    /// The `limit_rate` in effect in the block, where it has its own.
    pub fn limit_rate(&self) -> Option<Option<crate::http::h1::LimitRate>> {
        let (rate, after) = self.limit_rate?;
        Some(
            rate.filter(|&r| r > 0)
                .map(|rate| crate::http::h1::LimitRate {
                    rate,
                    after: after.unwrap_or(0),
                    start_secs: 0,
                }),
        )
    }
}

/// A location `if`'s or `limit_except`'s `proxy_pass` (no URI part, as
/// nginx requires there).
#[derive(Debug, Clone)]
pub struct IfProxy {
    pub pass: ProxyPass,
    /// Its `proxy_redirect default`, where none is in effect (none for a
    /// `proxy_pass` with variables, as nginx).
    pub default_redirect: Option<Redirect>,
    /// The upstream entry the reader made for it; `pass.upstream` is set
    /// from it at the end of `http`.
    pub entry: usize,
}

/// An `if`'s condition, as nginx's rewrite module reads it.
#[derive(Debug, Clone)]
pub enum IfCond {
    /// `$VAR`: true unless empty or `0`.
    Var(String),
    /// `$VAR = VALUE`, `$VAR != VALUE` (`negate`).
    Equal {
        var: String,
        value: String,
        negate: bool,
    },
    /// `$VAR ~ REGEX`, `~*` (`caseless`), `!~`, `!~*` (`negate`).
    Regex {
        var: String,
        pattern: String,
        caseless: bool,
        negate: bool,
    },
    /// `-f`, `-d`, `-e`, `-x` (the letter), `!-f` ... (`negate`).
    File {
        path: String,
        test: u8,
        negate: bool,
    },
}

/// `rewrite REGEX REPLACEMENT [FLAG]`.
#[derive(Debug, Clone)]
pub struct RewriteConf {
    pub pattern: String,
    pub replacement: String,
    pub flag: RewriteFlag,
}

/// What a matching `rewrite` does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: the level's next lines run, then the location is found
    /// again for the new URI.
    Next,
    /// `last`: the location is found again at once.
    Last,
    /// `break`: the request stays in the location with the new URI.
    Break,
    /// `redirect` (302), `permanent` (301), or a replacement that is a
    /// URL (302).
    Redirect(u16),
}

/// What nginx's static, index and try_files modules do at a level:
/// `root` or `alias`, `index`, `try_files`, `log_not_found`, `etag`,
/// `if_modified_since`, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConf {
    /// The root or alias as nginx keeps it: one trailing `/` of a root
    /// removed, a path without variables made absolute against the prefix.
    pub root: String,
    /// `alias`: how many bytes of the URI it replaces (the location's
    /// name); [`ALIAS_WHOLE`] in a regex location, where the alias is the
    /// whole path. `None`: `root`.
    pub alias: Option<usize>,
    /// `index` files, in order (`index.html` by default).
    pub index: Vec<String>,
    /// `try_files` of the level itself (nginx does not inherit it).
    pub try_files: Option<Vec<String>>,
    pub log_not_found: bool,
    pub etag: bool,
    pub if_modified_since: IfModifiedSince,
    /// `max_ranges`: how many ranges a request may ask for (0: ranges
    /// are off, and no `Accept-Ranges`); [`MAX_RANGES`] by default.
    pub max_ranges: u32,
    /// `autoindex on` and its settings.
    pub autoindex: Option<AutoindexConf>,
    /// `random_index on`.
    pub random_index: bool,
    /// `disable_symlinks on|if_not_owner [from=PART]`; `None`: off.
    pub disable_symlinks: Option<SymlinksConf>,
    /// `valid_referers` words (`$invalid_referer`), and the server's names
    /// for `server_names`.
    pub referers: Option<(Vec<String>, Vec<String>)>,
    /// `secure_link`, `secure_link_md5`, `secure_link_secret`.
    pub secure_link: Option<SecureLinkConf>,
    /// `fastcgi_split_path_info` and `fastcgi_index`, where either is in
    /// effect (`$fastcgi_script_name`, `$fastcgi_path_info`).
    pub fastcgi_names: Option<(Option<String>, String)>,
    /// `gzip_static on|always` (`true`: always) and the gzip settings
    /// that decide whether a request takes gzip.
    pub gzip_static: Option<(bool, GzipConf)>,
    /// `sub_filter_types` where the level has `sub_filter` lines: a file
    /// of those types is answered without ranges, as nginx's range filter
    /// finds no length after the sub filter.
    pub sub_filter_types: Option<Vec<String>>,
    /// Where a root made of variables that is relative starts.
    pub prefix: std::path::PathBuf,
    /// The location's name (empty at the server level), for nginx's
    /// `"alias" cannot be used in location` alert.
    pub location: String,
}

/// `autoindex on`: `autoindex_exact_size` (default on) and
/// `autoindex_localtime` (default off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoindexConf {
    pub exact_size: bool,
    pub localtime: bool,
    /// `charset utf-8` is in effect: names are counted in characters.
    pub utf8: bool,
    /// `autoindex_format`.
    pub format: AutoindexFormat,
}

/// `autoindex_format html|xml|json|jsonp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoindexFormat {
    #[default]
    Html,
    Xml,
    Json,
    Jsonp,
}

/// `limit_except METHOD ... { ... }`: requests with another method take
/// the block's settings where it has them, the location's where not.
#[derive(Debug, Clone)]
pub struct LimitExceptConf {
    /// Upper case; `GET` brings `HEAD`.
    pub methods: Vec<String>,
    pub access: Rules,
    /// `auth_basic` in effect for those requests (the block's own lines
    /// over the location's).
    pub auth_basic: Option<AuthBasicConf>,
    /// Its `proxy_pass`, which answers those requests with the location's
    /// proxy settings, as an `if` block's.
    pub proxy: Option<IfProxy>,
    /// Its `access_log` lines (empty for `off`), over the location's.
    pub access_log: Option<Vec<AccessLogConf>>,
}

/// nginx's default `max_ranges`: no limit (its `NGX_MAX_INT32_VALUE`).
pub const MAX_RANGES: u32 = i32::MAX as u32;

/// An alias that is the whole path (a regex location's).
pub const ALIAS_WHOLE: usize = usize::MAX;

impl StaticConf {
    /// nginx's defaults: `root html` under `prefix`.
    pub fn new(prefix: &std::path::Path) -> StaticConf {
        StaticConf {
            root: prefix.join("html").display().to_string(),
            alias: None,
            index: vec!["index.html".to_owned()],
            try_files: None,
            log_not_found: true,
            etag: true,
            if_modified_since: IfModifiedSince::Exact,
            max_ranges: MAX_RANGES,
            autoindex: None,
            random_index: false,
            disable_symlinks: None,
            referers: None,
            secure_link: None,
            fastcgi_names: None,
            gzip_static: None,
            sub_filter_types: None,
            prefix: prefix.to_path_buf(),
            location: String::new(),
        }
    }
}

/// `if_modified_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfModifiedSince {
    Off,
    Exact,
    Before,
}

/// A level's secure_link settings in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureLinkConf {
    /// `secure_link` and `secure_link_md5`, either may be missing.
    Md5 {
        link: Option<String>,
        md5: Option<String>,
    },
    /// `secure_link_secret`.
    Secret(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenConf {
    pub addr: SocketAddr,
    pub default_server: bool,
    pub backlog: i32,
    /// `ssl`: for nginx, one `listen ... ssl` makes the whole address TLS.
    pub ssl: bool,
    /// `http2` (nginx before 1.25.1): HTTP/2 for every server of the address.
    pub http2: bool,
    /// `proxy_protocol`: for nginx too, one makes the whole address read
    /// the PROXY protocol header first.
    pub proxy_protocol: bool,
    pub sockopts: SocketOpts,
}

/// The socket options of a `listen` line, set on the listening socket as
/// nginx sets them (the accepted connections inherit them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketOpts {
    /// `reuseport`: SO_REUSEPORT.
    pub reuseport: bool,
    /// `deferred`: TCP_DEFER_ACCEPT.
    pub deferred: bool,
    /// `ipv6only=on|off` (on where it is not said, as nginx).
    pub ipv6only: Option<bool>,
    /// `so_keepalive=on|off|[IDLE]:[INTERVAL]:[COUNT]`.
    pub keepalive: Option<SoKeepalive>,
    /// `rcvbuf=SIZE`, `sndbuf=SIZE`: SO_RCVBUF, SO_SNDBUF.
    pub rcvbuf: Option<i32>,
    pub sndbuf: Option<i32>,
    /// `fastopen=N`: TCP_FASTOPEN's queue.
    pub fastopen: Option<i32>,
}

/// `so_keepalive=`: SO_KEEPALIVE on or off; with `IDLE:INTERVAL:COUNT`,
/// those of them given (0: the system's), as TCP_KEEPIDLE, TCP_KEEPINTVL
/// and TCP_KEEPCNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoKeepalive {
    pub on: bool,
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

/// A revocation list file's lists, read once per configuration load and
/// shared by the servers and locations that name it.
pub type CrlLists = Arc<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>>;

/// A server's TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConf {
    /// `ssl_certificate` and `ssl_certificate_key` pairs, in order.
    pub certificates: Vec<CertificateConf>,
    /// `ssl_protocols`, of the versions rustls has.
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl_session_timeout`: how long a session ticket resumes.
    pub session_timeout: Duration,
    /// `ssl_prefer_server_ciphers`: the server's order of cipher suites
    /// over the client's.
    pub prefer_server_ciphers: bool,
    /// `ssl_ciphers`: the TLS 1.2 cipher suites, by rustls's names, in
    /// order (`None`: all of rustls's).
    pub ciphers: Option<Vec<&'static str>>,
    /// `ssl_session_cache`: how many sessions the server keeps for
    /// resumption by session ID (0: none, nginx's default `none`), and
    /// the `shared:NAME` zone whose one cache the servers naming it share.
    pub session_cache: usize,
    pub session_zone: Option<String>,
    /// `ssl_session_tickets`
    pub session_tickets: bool,
    /// `ssl_dhparam`: read (it must be there, as for nginx), not used:
    /// rustls has no finite-field Diffie-Hellman suites.
    pub dhparam: Option<(PathBuf, Loc)>,
    /// `ssl_ecdh_curve`: the key exchange groups, `:`-separated, in
    /// order (`None`: `auto`, rustls's own).
    pub ecdh_curve: Option<String>,
    /// `ssl_reject_handshake`: TLS connections for this server close
    /// in the handshake.
    pub reject_handshake: bool,
    /// `ssl_verify_client`.
    pub verify_client: VerifyClient,
    /// `ssl_client_certificate`: the CAs a client's certificate is checked
    /// against, named to the client in the handshake.
    pub client_certificate: Option<PathBuf>,
    /// `ssl_trusted_certificate`: more CAs to check against, not named.
    pub trusted_certificate: Option<PathBuf>,
    /// `ssl_crl`: the revocation lists every certificate of a client's
    /// chain is checked against (OpenSSL's `CRL_CHECK_ALL`, as nginx):
    /// the file and its lists, read for a server with certificates.
    pub crl: Option<(PathBuf, CrlLists)>,
    /// `ssl_verify_depth` (default 1): how many CAs may stand between a
    /// client's certificate and the root.
    pub verify_depth: u32,
}

/// `ssl_verify_client`: whether a client is asked for a certificate, and
/// what a request of a connection without a good one gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyClient {
    #[default]
    Off,
    /// Without a certificate, or with one that fails: 400.
    On,
    /// Without one the request goes on; one that fails: 400.
    Optional,
    /// Any certificate, or none: `$ssl_client_verify` tells.
    OptionalNoCa,
}

impl Default for TlsConf {
    fn default() -> Self {
        TlsConf {
            certificates: Vec::new(),
            tls12: true,
            tls13: true,
            session_timeout: Duration::from_secs(300),
            prefer_server_ciphers: false,
            ciphers: None,
            session_cache: 0,
            session_zone: None,
            session_tickets: true,
            dhparam: None,
            ecdh_curve: None,
            reject_handshake: false,
            verify_client: VerifyClient::Off,
            client_certificate: None,
            trusted_certificate: None,
            crl: None,
            verify_depth: 1,
        }
    }
}

/// One `ssl_certificate` and the `ssl_certificate_key` paired with it, each
/// with where it was written (for the errors of loading it).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateConf {
    pub cert: PathBuf,
    pub cert_loc: Loc,
    pub key: PathBuf,
    pub key_loc: Loc,
    /// `ssl_password_file`'s passwords, tried in order on an encrypted
    /// key.
    pub passwords: Option<std::sync::Arc<[Vec<u8>]>>,
}

#[derive(Debug)]
pub struct LocationConf {
    /// The path, or a regex location's pattern.
    pub path: String,
    pub exact: bool,
    /// `^~`: a match stops the regex locations of the level above.
    pub noregex: bool,
    /// `~ PATTERN` or `~* PATTERN`.
    pub regex: Option<LocationRegex>,
    /// The enclosing location, by index in the server's list.
    pub parent: Option<usize>,
    pub action: Action,
    pub proxy: ProxyConf,
    /// The settings of the other kind, where one of the location's `if`
    /// blocks passes otherwise than the location (a `fastcgi_pass` in a
    /// location without one: its FastCGI settings; a `proxy_pass` in a
    /// `fastcgi_pass` location: its proxy settings).
    pub if_other: Option<Box<ProxyConf>>,
    pub client: ClientLimits,
    /// The `access_log` lines in effect, in order; empty with
    /// `access_log off`.
    pub access_log: Vec<AccessLogConf>,
    /// realip with the location's settings (nginx's pre-access phase).
    pub realip: Option<RealIp>,
    /// `allow`/`deny` in effect here.
    pub access: Rules,
    /// `limit_except`: the settings for the methods it does not list.
    pub limit_except: Option<LimitExceptConf>,
    /// `limit_conn` in effect here (none: `None`).
    pub limit_conn: Option<LimitConnConf>,
    /// `auth_basic` and `satisfy` here.
    pub auth_basic: Option<AuthBasicConf>,
    pub satisfy_any: bool,
    /// `auth_request` here.
    pub auth_request: Option<AuthRequestConf>,
    /// `mirror` here.
    pub mirror: Option<MirrorConf>,
    /// `add_header` in effect here.
    pub add_headers: Vec<AddHeader>,
    /// `types {}` and `default_type` here.
    pub types: ContentTypes,
    /// `charset` here (not `off`).
    pub charset: Option<CharsetConf>,
    /// `expires` here (not `off`).
    pub expires: Option<ExpiresConf>,
    /// `limit_rate` (not 0) and `limit_rate_after` here.
    pub limit_rate: Option<crate::http::h1::LimitRate>,
    /// `absolute_redirect` and its kin here.
    pub redirect_style: RedirectStyle,
    /// `msie_padding` here.
    pub msie_padding: bool,
    /// `chunked_transfer_encoding` (on): off sends an answer of unknown
    /// length to an HTTP/1.1 client up to the close, as to HTTP/1.0.
    pub chunked: bool,
    /// `gzip on` here.
    pub gzip: Option<GzipConf>,
    /// `gunzip on`, with the level's gzip settings.
    pub gunzip: Option<GzipConf>,
    /// `sub_filter` lines in effect here, and their settings.
    pub sub_filter: Option<SubFilterConf>,
    /// Filter modules' directives in effect here, after inheritance.
    pub filters: Vec<ModuleDirective>,
    /// `location @name`: reached only by an `error_page`.
    pub named: bool,
    /// `root`, `alias`, `index`, `try_files` and their kin here.
    pub statics: StaticConf,
    /// The location's `rewrite`, `return` and `break` lines in order,
    /// where it has a `rewrite` or `break` (else a `return` is its
    /// action).
    pub script: Vec<RewriteOp>,
    /// `rewrite_log` here.
    pub rewrite_log: bool,
    /// `internal` here or in an enclosing location.
    pub internal: bool,
    pub error_pages: ErrorPagesConf,
}

/// How a Location that is a path is made absolute (nginx's header
/// filter): `absolute_redirect`, `port_in_redirect`,
/// `server_name_in_redirect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectStyle {
    pub absolute: bool,
    pub port: bool,
    pub server_name: bool,
}

impl Default for RedirectStyle {
    fn default() -> Self {
        RedirectStyle {
            absolute: true,
            port: true,
            server_name: false,
        }
    }
}

/// `disable_symlinks` where it is not off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinksConf {
    /// `if_not_owner`: a link is refused only where its owner is not its
    /// target's; else any is.
    pub if_not_owner: bool,
    /// `from=PART` (with variables maybe): the start of the path that is
    /// not checked.
    pub from: Option<String>,
}

/// `expires` at a level (none: `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiresConf {
    Fixed(Expires),
    /// `expires [modified] VALUE` with variables: VALUE read per answer
    /// as [`Expires::parse`] reads it, `off` or a bad value setting
    /// nothing, as nginx's `ngx_http_set_expires` does.
    Var {
        modified: bool,
        value: String,
    },
}

/// What `expires` sets on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    Epoch,
    Max,
    /// Seconds from the request (negative: in the past).
    Access(i64),
    /// `modified`: seconds from the answer's Last-Modified.
    Modified(i64),
    /// `@TIME`: seconds after midnight, local time.
    Daily(i64),
}

impl Expires {
    /// nginx's `ngx_http_parse_expires`: `epoch`, `max`, `off` (`None`;
    /// these three not after `modified`), `@TIME`, `[+|-]TIME`; the error
    /// is nginx's.
    pub fn parse(value: &str, modified: bool) -> Result<Option<Expires>, &'static str> {
        if !modified {
            match value {
                "epoch" => return Ok(Some(Expires::Epoch)),
                "max" => return Ok(Some(Expires::Max)),
                "off" => return Ok(None),
                _ => {}
            }
        }
        let (daily, negative, value) = if let Some(v) = value.strip_prefix('@') {
            if modified {
                return Err("daily time cannot be used with \"modified\" parameter");
            }
            (true, false, v)
        } else if let Some(v) = value.strip_prefix('-') {
            (false, true, v)
        } else {
            (false, false, value.strip_prefix('+').unwrap_or(value))
        };
        let Some(seconds) =
            crate::conf::values::parse_time_sec(value).and_then(|s| i64::try_from(s).ok())
        else {
            return Err("invalid value");
        };
        if daily && seconds > 24 * 60 * 60 {
            return Err("daily time value must be less than 24 hours");
        }
        let seconds = if negative { -seconds } else { seconds };
        Ok(Some(match (daily, modified) {
            (true, _) => Expires::Daily(seconds),
            (false, true) => Expires::Modified(seconds),
            (false, false) => Expires::Access(seconds),
        }))
    }
}

/// `charset NAME` at a level, after inheritance.
#[derive(Debug, Clone, PartialEq)]
pub struct CharsetConf {
    pub name: String,
    /// `charset_types`, lowercase (text/html and the level's own, else
    /// nginx's six defaults); `*`: any.
    pub types: Vec<String>,
}

/// nginx's `ngx_http_charset_default_types`, where no `charset_types` is.
pub const CHARSET_TYPES: [&str; 6] = [
    "text/html",
    "text/xml",
    "text/plain",
    "text/vnd.wap.wml",
    "application/javascript",
    "application/rss+xml",
];

/// A level's `sub_filter` lines and settings, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubFilterConf {
    /// Each string and its replacement, in order.
    pub pairs: Vec<(String, String)>,
    pub once: bool,
    pub last_modified: bool,
    /// Lowercase MIME types, `text/html` among them; `*`: any.
    pub types: Vec<String>,
}

/// `gzip on` and its settings at a level, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzipConf {
    /// `gzip_types`, lowercase, `text/html` among them; `*`: any.
    pub types: Vec<String>,
    pub min_length: u64,
    /// `gzip_comp_level`, 1 to 9.
    pub level: u32,
    pub vary: bool,
    /// `gzip_proxied`, as nginx's bitmask (`GZIP_PROXIED_*`).
    pub proxied: u16,
    /// `gzip_http_version 1.0`: HTTP/1.0 requests too.
    pub http10: bool,
    /// `gzip_disable` regular expressions (matched without case); and
    /// whether `msie6` was among them.
    pub disable: Vec<String>,
    pub msie6: bool,
}

pub const GZIP_PROXIED_OFF: u16 = 0x0002;
pub const GZIP_PROXIED_EXPIRED: u16 = 0x0004;
pub const GZIP_PROXIED_NO_CACHE: u16 = 0x0008;
pub const GZIP_PROXIED_NO_STORE: u16 = 0x0010;
pub const GZIP_PROXIED_PRIVATE: u16 = 0x0020;
pub const GZIP_PROXIED_NO_LM: u16 = 0x0040;
pub const GZIP_PROXIED_NO_ETAG: u16 = 0x0080;
pub const GZIP_PROXIED_AUTH: u16 = 0x0100;
pub const GZIP_PROXIED_ANY: u16 = 0x0200;

/// A regex location's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRegex {
    pub pattern: String,
    /// `~*`
    pub caseless: bool,
}

#[derive(Debug, Clone)]
pub struct AccessLogConf {
    pub path: PathBuf,
    pub format: String,
    /// `buffer=`/`flush=`: the file's setting, whichever `access_log`
    /// gave it.
    pub buffer: Option<crate::log::access::Buffering>,
    /// `if=`, as written.
    pub condition: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Proxy(ProxyPass),
    Return(Return),
    /// `metrics;`: the Prometheus text exposition.
    Metrics,
    /// `status;`: the same data as JSON.
    Status,
    /// `stub_status;`: nginx's connection and request counts.
    StubStatus,
    /// `empty_gif`.
    EmptyGif,
    /// No other handler: nginx's static and index modules serve files.
    None,
}

#[derive(Debug, Clone)]
pub struct ProxyPass {
    /// Index into `HttpConf::upstreams`.
    pub upstream: usize,
    /// `$proxy_host`: the host as written after `http://`, and its port
    /// unless it is the scheme's.
    pub host: String,
    /// `$proxy_port`: the port as written, else the scheme's.
    pub port: String,
    /// The URI part of `proxy_pass http://u/uri`, replacing the matched
    /// location prefix; `None` passes the request URI unchanged.
    pub uri: Option<String>,
    /// `proxy_pass https://`: TLS to the upstream.
    pub tls: bool,
    /// `proxy_pass` with variables: the URL as written, evaluated for
    /// each request (`upstream`, `host` and `uri` then unused; `tls` set,
    /// as nginx readies TLS for it, each request's scheme deciding).
    pub url: Option<String>,
    /// `fastcgi_pass`: the upstream speaks FastCGI.
    pub fastcgi: bool,
}

impl ProxyPass {
    /// `$proxy_host` and `$proxy_port` of a `proxy_pass` without variables.
    pub fn name(&self) -> crate::vars::ProxyName<'_> {
        crate::vars::ProxyName::new(&self.host, &self.port)
    }

    /// A `proxy_pass` with variables in `url`.
    pub fn dynamic(url: &str) -> ProxyPass {
        ProxyPass {
            upstream: usize::MAX,
            host: String::new(),
            port: String::new(),
            uri: None,
            tls: true,
            url: Some(url.to_owned()),
            fastcgi: false,
        }
    }
}

/// One status of an `error_page` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPageConf {
    pub status: u16,
    /// `=CODE`: the answer's status; `Some(0)`: `=` alone (the target's
    /// own); `None`: the error's.
    pub overwrite: Option<u16>,
    /// The URI (its `?args` apart), `@name`, or a redirect's URL.
    pub uri: String,
    pub args: Option<String>,
}

/// The `error_page` lines in effect at a level (a level with any replaces
/// its parent's) and `recursive_error_pages`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPagesConf {
    pub pages: Vec<ErrorPageConf>,
    pub recursive: bool,
}

#[derive(Debug, Clone)]
pub struct Return {
    pub code: u16,
    pub text: Option<String>,
}

/// `types {}` and `default_type` in effect at a level: the MIME type of
/// a text `return` sends, by the extension of `$uri`'s last segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentTypes {
    /// Lowercase extension to type.
    pub by_ext: Arc<HashMap<String, String>>,
    pub default: String,
}

impl Default for ContentTypes {
    /// nginx's without a `types` block (`ngx_http_core_default_types`)
    /// and `default_type text/plain`.
    fn default() -> Self {
        let by_ext = [
            ("html", "text/html"),
            ("gif", "image/gif"),
            ("jpg", "image/jpeg"),
        ]
        .into_iter()
        .map(|(e, t)| (e.to_owned(), t.to_owned()))
        .collect();
        ContentTypes {
            by_ext: Arc::new(by_ext),
            default: "text/plain".to_owned(),
        }
    }
}

/// `proxy_next_upstream` conditions, as nginx's NGX_HTTP_UPSTREAM_FT_* bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUpstream(pub u32);

impl NextUpstream {
    pub const ERROR: u32 = 1 << 1;
    pub const TIMEOUT: u32 = 1 << 2;
    pub const INVALID_HEADER: u32 = 1 << 3;
    pub const HTTP_500: u32 = 1 << 4;
    pub const HTTP_502: u32 = 1 << 5;
    pub const HTTP_503: u32 = 1 << 6;
    pub const HTTP_504: u32 = 1 << 7;
    pub const HTTP_403: u32 = 1 << 8;
    pub const HTTP_404: u32 = 1 << 9;
    pub const HTTP_429: u32 = 1 << 10;
    pub const NON_IDEMPOTENT: u32 = 1 << 14;
    pub const OFF: u32 = 1 << 30;

    pub fn has(self, bit: u32) -> bool {
        self.0 & Self::OFF == 0 && self.0 & bit != 0
    }

    /// The bit for a retryable upstream status, if any.
    pub fn status_bit(status: u16) -> Option<u32> {
        Some(match status {
            500 => Self::HTTP_500,
            502 => Self::HTTP_502,
            503 => Self::HTTP_503,
            504 => Self::HTTP_504,
            403 => Self::HTTP_403,
            404 => Self::HTTP_404,
            429 => Self::HTTP_429,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConf {
    /// Headers set on the upstream request, after nginx's defaults.
    pub set_headers: Vec<(String, String)>,
    /// `proxy_redirect`, in order (empty: `off`, or none in effect).
    pub redirects: Vec<Redirect>,
    /// A `proxy_redirect` (or the location's default) is in effect.
    pub redirects_set: bool,
    pub http11: bool,
    pub next_upstream: NextUpstream,
    pub next_upstream_tries: u32,
    pub next_upstream_timeout: Duration,
    /// `resolver`, for the names a `proxy_pass` with variables gives.
    pub resolver: Option<ResolverConf>,
    /// `resolver_timeout` (default 30 s).
    pub resolver_timeout: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    pub ssl: ProxySsl,
    /// `proxy_hide_header` and `proxy_pass_header` names, lowercase.
    pub hide_headers: Vec<String>,
    pub pass_headers: Vec<String>,
    /// `proxy_cookie_domain` and `proxy_cookie_path` rules, in order.
    pub cookie_domains: Vec<CookieRule>,
    pub cookie_paths: Vec<CookieRule>,
    /// `proxy_cookie_flags COOKIE FLAG...` lines, in order.
    pub cookie_flags: Vec<CookieFlags>,
    /// `proxy_method` and `proxy_set_body`, as written.
    pub method: Option<String>,
    pub set_body: Option<String>,
    /// `proxy_pass_request_headers`, `proxy_pass_request_body` (on).
    pub pass_request_headers: bool,
    pub pass_request_body: bool,
    /// `proxy_intercept_errors on`: an upstream's answer of 300 or more
    /// with an `error_page` for its status is replaced.
    pub intercept_errors: bool,
    /// `proxy_bind ADDRESS [transparent]` (the address as written, with
    /// variables maybe); `None`: off.
    pub bind: Option<(String, bool)>,
    /// `proxy_socket_keepalive on`: SO_KEEPALIVE on upstream sockets.
    pub socket_keepalive: bool,
    /// `proxy_ignore_client_abort on`: a client that leaves while the
    /// upstream is asked does not end the request.
    pub ignore_client_abort: bool,
    /// `proxy_buffering` (on): waypost streams either way; nginx's error
    /// line for a failed read names readv() when on, recv() when off.
    pub buffering: bool,
    /// `proxy_cache ZONE` and its settings; `None`: off.
    pub cache: Option<crate::conf::cache::CacheConf>,
    /// A `fastcgi_pass` location's own settings.
    pub fastcgi: Option<Box<FastCgiConf>>,
}

/// `fastcgi_param` and `fastcgi_keep_conn` in effect at a location (the
/// names it splits are the level's statics').
#[derive(Debug, Clone, Default)]
pub struct FastCgiConf {
    /// NAME, VALUE (as written), `if_not_empty`.
    pub params: Vec<(String, String, bool)>,
    pub keep_conn: bool,
}

/// `proxy_cache_path`: a cache zone's name, its keys zone's size, and
/// where and how it keeps its files.
#[derive(Debug, Clone)]
pub struct CachePathConf {
    /// Declared by `fastcgi_cache_path` (for `fastcgi_cache`).
    pub fastcgi: bool,
    pub name: String,
    pub size: u64,
    pub settings: crate::cache::Settings,
    pub loc: crate::conf::syntax::Loc,
}

/// One `proxy_cookie_flags` line: the cookie and its flags, as written.
pub type CookieFlags = (String, Vec<String>);

/// One `proxy_cookie_domain` or `proxy_cookie_path` line, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieRule {
    pub from: String,
    pub to: String,
}

/// `add_header NAME VALUE [always]`: added to a response of status 200,
/// 201, 204, 206, 301, 302, 303, 304, 307 or 308, or of any with `always`;
/// not when VALUE (with variables) is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHeader {
    pub name: String,
    pub value: String,
    pub always: bool,
}

/// One `proxy_redirect`: an upstream's Location or Refresh URL that
/// starts with `from` gets `to` instead (`default` is worked out with the
/// location whose `proxy_pass` it follows, and inherited as such).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub from: String,
    pub to: String,
}

/// `resolver ADDRESS ... [valid=TIME] [ipv6=on|off]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolverConf {
    /// The name servers' addresses (`unix:` ones left out).
    pub servers: Vec<SocketAddr>,
    /// `valid=`: how long an answer is kept, instead of its TTL.
    pub valid: Option<Duration>,
    /// `ipv6=on` (the default) asks for IPv6 addresses too.
    pub ipv6: bool,
}

/// The `proxy_ssl_*` settings of a level, used by an `https://` proxy_pass.
#[derive(Debug, Clone)]
pub struct ProxySsl {
    /// `proxy_ssl_verify` (default off, as nginx).
    pub verify: bool,
    /// `proxy_ssl_trusted_certificate`, read while the configuration was
    /// checked (only where it verifies, as nginx reads it).
    pub trusted: Option<Arc<rustls::RootCertStore>>,
    /// `proxy_ssl_crl` (its path and lists), read where it verifies.
    pub crl: Option<(PathBuf, CrlLists)>,
    /// `proxy_ssl_server_name` (default off): send SNI.
    pub server_name: bool,
    /// `proxy_ssl_name`, as written; `None`: the upstream's host.
    pub name: Option<String>,
    /// `proxy_ssl_certificate` and `proxy_ssl_certificate_key`: what the
    /// proxy shows an upstream that asks for a client certificate.
    pub client_cert: Option<CertificateConf>,
    /// `proxy_ssl_protocols`: TLS 1.2, TLS 1.3 (nginx's default has both).
    pub tls12: bool,
    pub tls13: bool,
    /// `proxy_ssl_session_reuse` (default on).
    pub session_reuse: bool,
    /// `proxy_ssl_ciphers`: the TLS 1.2 suites it leaves, by OpenSSL
    /// names, in order (`None`: nginx's `DEFAULT`, all of rustls's).
    pub ciphers: Option<Vec<&'static str>>,
}

impl Default for ProxySsl {
    fn default() -> Self {
        ProxySsl {
            verify: false,
            trusted: None,
            crl: None,
            server_name: false,
            name: None,
            client_cert: None,
            tls12: true,
            tls13: true,
            session_reuse: true,
            ciphers: None,
        }
    }
}

impl Default for ProxyConf {
    fn default() -> Self {
        ProxyConf {
            set_headers: Vec::new(),
            redirects: Vec::new(),
            redirects_set: false,
            http11: false,
            next_upstream: NextUpstream(NextUpstream::ERROR | NextUpstream::TIMEOUT),
            next_upstream_tries: 0,
            next_upstream_timeout: Duration::ZERO,
            resolver: None,
            resolver_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            ssl: ProxySsl::default(),
            hide_headers: Vec::new(),
            pass_headers: Vec::new(),
            cookie_domains: Vec::new(),
            cookie_paths: Vec::new(),
            cookie_flags: Vec::new(),
            method: None,
            set_body: None,
            pass_request_headers: true,
            pass_request_body: true,
            intercept_errors: false,
            bind: None,
            socket_keepalive: false,
            ignore_client_abort: false,
            buffering: true,
            cache: None,
            fastcgi: None,
        }
    }
}

/// `client_max_body_size`, `client_header_timeout`,
/// `client_body_timeout`, `send_timeout`, `large_client_header_buffers`,
/// `underscores_in_headers`, `ignore_invalid_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Bytes; 0 disables the check.
    pub max_body: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    pub header_buffers: HeaderBuffers,
    pub names: HeaderNames,
}

/// `large_client_header_buffers NUMBER SIZE`: a request line or header
/// line must fit in SIZE bytes, the whole head in NUMBER such buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuffers {
    pub number: u32,
    pub size: u32,
}

impl Default for HeaderBuffers {
    fn default() -> Self {
        HeaderBuffers {
            number: 4,
            size: 8192,
        }
    }
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            header_buffers: HeaderBuffers::default(),
            names: HeaderNames::default(),
        }
    }
}
