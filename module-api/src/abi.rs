//! The binary interface between the waypost core and a module library.
//!
//! Everything here is `#[repr(C)]` and derives [`StableAbi`], so that
//! abi_stable can compare the layout the core was built with against the one
//! a library was built with before a single hook runs. Module authors do not
//! use these types directly: the safe layer in [`crate::sdk`] wraps them.
//!
//! The shape follows nginx's upstream modules: `init_upstream` runs once per
//! `upstream {}` block at config load, `init_peer` once per request, `get`
//! once per try and `free` after each try. Per-request state lives in storage
//! the core owns ([`PeerStorage`]), so a balancer whose state fits in 64 bytes
//! costs no allocation per request.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};

/// The ABI major version this crate speaks.
///
/// The core reads the library's `waypost_abi_version` symbol before anything
/// else and refuses a library whose major version differs, with a one-line
/// message. Minor additions go through abi_stable prefix types instead.
///
/// ```
/// assert_eq!(waypost_module_api::ABI_VERSION, 1);
/// ```
pub const ABI_VERSION: u32 = 1;

/// The ABI minor version this crate speaks: what was added after 1.0,
/// through prefix types, so modules built against an older minor keep
/// loading.
///
/// - 1.1: [`Module::init_upstream_ext`] with [`UpstreamExt`]: per-peer
///   [`PeerStats`] (total tries, a latency EWMA, a state slot), and
///   [`HostExt`] (monotonic clock, fast random numbers, counters and
///   gauges exported with the core's metrics).
///
/// ```
/// assert!(waypost_module_api::ABI_MINOR >= 1);
/// ```
pub const ABI_MINOR: u32 = 1;

/// Name of the exported `u32` static holding [`ABI_VERSION`], NUL-terminated
/// for `dlsym`.
///
/// ```
/// assert!(waypost_module_api::ABI_VERSION_SYMBOL.ends_with(b"\0"));
/// ```
pub const ABI_VERSION_SYMBOL: &[u8] = b"waypost_abi_version\0";

/// Bit set of the configuration contexts a directive may appear in.
///
/// ```
/// use waypost_module_api::Contexts;
/// let c = Contexts::UPSTREAM.with(Contexts::LOCATION);
/// assert!(c.contains(Contexts::LOCATION));
/// assert!(!c.contains(Contexts::HTTP));
/// ```
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contexts(pub u32);

impl Contexts {
    /// The `http {}` block.
    pub const HTTP: Contexts = Contexts(1);
    /// A `server {}` block inside `http`.
    pub const SERVER: Contexts = Contexts(2);
    /// A `location {}` block.
    pub const LOCATION: Contexts = Contexts(4);
    /// An `upstream {}` block.
    pub const UPSTREAM: Contexts = Contexts(8);

    /// Both sets together.
    pub const fn with(self, other: Contexts) -> Contexts {
        Contexts(self.0 | other.0)
    }

    /// Whether every context of `other` is in `self`.
    pub const fn contains(self, other: Contexts) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Bit set of the `server` parameters a balancer supports, as nginx's
/// `NGX_HTTP_UPSTREAM_*` flags. A parameter outside the set is refused with
/// `balancing method does not support parameter "X"`.
///
/// ```
/// use waypost_module_api::ServerParams;
/// let hash = ServerParams::ALL.without(ServerParams::BACKUP);
/// assert!(!hash.contains(ServerParams::BACKUP));
/// assert!(hash.contains(ServerParams::WEIGHT));
/// ```
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerParams(pub u32);

impl ServerParams {
    /// `weight=N`
    pub const WEIGHT: ServerParams = ServerParams(1);
    /// `max_fails=N`
    pub const MAX_FAILS: ServerParams = ServerParams(2);
    /// `fail_timeout=T`
    pub const FAIL_TIMEOUT: ServerParams = ServerParams(4);
    /// `max_conns=N`
    pub const MAX_CONNS: ServerParams = ServerParams(8);
    /// `backup`
    pub const BACKUP: ServerParams = ServerParams(16);
    /// `down`
    pub const DOWN: ServerParams = ServerParams(32);
    /// Every parameter, as round robin supports.
    pub const ALL: ServerParams = ServerParams(63);

    /// The set without `other`.
    pub const fn without(self, other: ServerParams) -> ServerParams {
        ServerParams(self.0 & !other.0)
    }

    /// Whether every parameter of `other` is in `self`.
    pub const fn contains(self, other: ServerParams) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A directive a module owns, so the core can check it without knowing it.
///
/// ```
/// use waypost_module_api::{Contexts, DirectiveSpec, ServerParams};
/// let d = DirectiveSpec::balancer("hash", 1, 2, ServerParams::ALL.without(ServerParams::BACKUP));
/// assert_eq!(d.name.as_str(), "hash");
/// assert!(d.contexts.contains(Contexts::UPSTREAM));
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct DirectiveSpec {
    /// The directive's name, as written in a config file.
    pub name: RStr<'static>,
    /// Where it may appear.
    pub contexts: Contexts,
    /// Fewest arguments.
    pub min_args: u32,
    /// Most arguments; `u32::MAX` for no limit.
    pub max_args: u32,
    /// Whether the directive selects this module as the upstream's balancer
    /// (like nginx's `hash` or `least_conn`).
    pub balancer: bool,
    /// With `balancer`, the `server` parameters the balancing method accepts.
    pub server_params: ServerParams,
}

impl DirectiveSpec {
    /// A balancing directive of an `upstream` block.
    pub const fn balancer(
        name: &'static str,
        min_args: u32,
        max_args: u32,
        server_params: ServerParams,
    ) -> DirectiveSpec {
        DirectiveSpec {
            name: RStr::from_str(name),
            contexts: Contexts::UPSTREAM,
            min_args,
            max_args,
            balancer: true,
            server_params,
        }
    }

    /// Any other directive of the module.
    pub const fn plain(
        name: &'static str,
        contexts: Contexts,
        min_args: u32,
        max_args: u32,
    ) -> DirectiveSpec {
        DirectiveSpec {
            name: RStr::from_str(name),
            contexts,
            min_args,
            max_args,
            balancer: false,
            server_params: ServerParams::ALL,
        }
    }
}

/// What a module declares about itself; read once when it is loaded.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ModuleInfo {
    /// Short name, used in log lines (`round_robin`, `hash`).
    pub name: RStr<'static>,
    /// The directives the module owns.
    pub directives: RSlice<'static, DirectiveSpec>,
    /// Variables a filter module sets per request (`limit_req_status`),
    /// usable in `log_format`; the first one is what
    /// [`FilterResult::variable`] carries.
    pub variables: RSlice<'static, RStr<'static>>,
}

/// One occurrence of a module directive in an upstream block.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct DirectiveArgs<'a> {
    /// The directive name.
    pub name: RStr<'a>,
    /// Its arguments, quotes and escapes already processed.
    pub args: RSlice<'a, RStr<'a>>,
    /// Absolute path of the file it was read from (or `command line`).
    pub file: RStr<'a>,
    /// The line nginx would report for it.
    pub line: u32,
}

/// A config error returned by a module: printed by the core as
/// `waypost: [emerg] MESSAGE in FILE:LINE`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// nginx-style message without location, e.g. `invalid parameter "x"`.
    pub message: RString,
    /// File of the offending directive; empty for the upstream block itself.
    pub file: RString,
    /// Line of the offending directive; 0 for the upstream block itself.
    pub line: u32,
}

/// A configured peer: one `server` line's parameters, per resolved address.
/// Primary peers come first, then backups.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct PeerConfig<'a> {
    /// The `server` argument exactly as written (`127.0.0.1:8081`,
    /// `example.com`): what `hash ... consistent` hashes.
    pub server: RStr<'a>,
    /// The resolved socket address, `ip:port`.
    pub addr: RStr<'a>,
    /// `weight=`, at least 1.
    pub weight: u32,
    /// `max_fails=`; 0 disables failure accounting.
    pub max_fails: u32,
    /// `fail_timeout=` in seconds.
    pub fail_timeout: u32,
    /// `max_conns=`; 0 for no limit.
    pub max_conns: u32,
    /// `backup`
    pub backup: bool,
    /// `down`
    pub down: bool,
}

/// Live per-peer counters the core keeps, shared by every request and worker.
/// Modules read them; the core alone writes them.
#[repr(C)]
#[derive(StableAbi, Debug, Default)]
pub struct PeerLive {
    /// Failures counted by nginx's rules (reset on success after a check).
    pub fails: AtomicU32,
    /// Tries in flight on this peer.
    pub conns: AtomicU32,
    /// Wall-clock second of the last failure.
    pub accessed: AtomicU64,
    /// Wall-clock second of the last failure or probe.
    pub checked: AtomicU64,
}

/// Per-peer counters the core keeps beyond [`PeerLive`] (ABI 1.1), a cache
/// line each so that workers updating different peers do not contend.
///
/// The slice lives as long as the upstream object: a module may keep it
/// (the SDK does) and read it from any hook.
///
/// ```
/// use std::sync::atomic::Ordering;
/// let stats = waypost_module_api::PeerStats::default();
/// stats.slot.store(42, Ordering::Relaxed);
/// assert_eq!(stats.latency_us.load(Ordering::Relaxed), 0);
/// ```
#[repr(C, align(64))]
#[derive(StableAbi, Debug, Default)]
pub struct PeerStats {
    /// Tries started on this peer under the current configuration.
    pub requests: AtomicU64,
    /// Time from choosing the peer to its response header, an exponentially
    /// weighted moving average over the tries that got one (each sample
    /// weighs 1/8), in microseconds; 0 until the first sample.
    pub latency_us: AtomicU64,
    /// The module's own per-peer word: the core never reads or writes it,
    /// and it starts at 0 with each configuration.
    pub slot: AtomicU64,
    /// Reserved for later minor versions; zero.
    pub reserved: [AtomicU64; 5],
}

/// Whether a module metric only grows or goes up and down.
///
/// ```
/// assert_ne!(waypost_module_api::MetricKind::Counter, waypost_module_api::MetricKind::Gauge);
/// ```
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count, exported as `..._total`.
    Counter,
    /// A level that goes up and down.
    Gauge,
}

/// The value of one module metric, owned by the core, which exports it; the
/// module writes it with plain atomics, no call across the ABI. A gauge
/// stores an `i64` as its two's-complement bits.
///
/// ```
/// use std::sync::atomic::Ordering;
/// let cell = waypost_module_api::MetricCell::default();
/// cell.value.fetch_add(2, Ordering::Relaxed);
/// assert_eq!(cell.value.load(Ordering::Relaxed), 2);
/// ```
#[repr(C)]
#[derive(StableAbi, Debug, Default)]
pub struct MetricCell {
    /// The value.
    pub value: AtomicU64,
}

/// Host services added in ABI 1.1. A prefix type: later minors append
/// fields, which a module reads through accessors returning `Option`.
///
/// Modules use it through [`crate::sdk::now_ns`], [`crate::sdk::random`]
/// and [`crate::sdk::UpstreamConfig::counter`].
///
/// ```
/// use waypost_module_api::abi::{HostExt, HostExtRef};
/// fn clock(host: HostExtRef) -> u64 { (host.monotonic_ns())() }
/// ```
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostExtRef)))]
#[sabi(missing_field(panic))]
pub struct HostExt {
    /// Nanoseconds on a monotonic clock since an arbitrary start, the same
    /// for every module and worker in the process.
    pub monotonic_ns: extern "C" fn() -> u64,
    /// 64 random bits from the calling worker's generator: fast, not
    /// cryptographic.
    pub random: extern "C" fn() -> u64,
    /// Registers a module metric for the upstream being initialised
    /// (`builder` from [`UpstreamExt`]); the core exports it as
    /// `waypost_module_NAME{module="..",upstream=".."}` (`_total` appended
    /// for a counter). Registering the same name again, in this or a later
    /// configuration, returns the same cell, so counters survive reloads.
    #[sabi(last_prefix_field)]
    pub register_metric: extern "C" fn(
        builder: *mut c_void,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
    ) -> RResult<&'static MetricCell, RString>,
}

/// What [`Module::init_upstream_ext`] receives beside [`InitUpstreamArgs`].
///
/// ```
/// fn peers(ext: &waypost_module_api::UpstreamExt<'_>) -> usize { ext.stats.len() }
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct UpstreamExt<'a> {
    /// ABI 1.1 host services.
    pub host: HostExtRef,
    /// Per-peer statistics, index for index with the peers; valid until
    /// the upstream object is dropped.
    pub stats: RSlice<'a, PeerStats>,
    /// The core's builder for this upstream, for `register_metric`; valid
    /// during the call only.
    pub builder: *mut c_void,
}

/// What `get` sees: the peers, their live state and this request's tries.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct PeersView<'a> {
    /// Every peer, primaries first.
    pub config: RSlice<'a, PeerConfig<'a>>,
    /// Live state, index for index with `config`.
    pub live: RSlice<'a, PeerLive>,
    /// Bitmap of peers this request already tried, one bit per index.
    pub tried: RSlice<'a, u64>,
    /// How many leading peers are primaries; the rest are backups.
    pub primary: u32,
    /// Sum of primary weights including `down` peers.
    pub primary_weight: u32,
    /// One primary peer and no backups: nginx ignores max_fails then.
    pub single: bool,
    /// Cached wall-clock time in whole seconds, as nginx's `ngx_time()`.
    pub now: u64,
    /// Index of the worker thread running this hook, `0..workers`.
    pub worker: u32,
}

/// The request as a module sees it. Strings borrow from the request and are
/// valid only during the hook.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct RequestView<'a> {
    /// `GET`, `POST`, ...
    pub method: RStr<'a>,
    /// The request target as received, path and query (`$request_uri`).
    pub uri: RStr<'a>,
    /// The client's address as text (`$remote_addr`).
    pub client_addr: RStr<'a>,
    /// The client's address bytes: 4 for IPv4, 16 for IPv6, 0 otherwise.
    pub client_ip: RSlice<'a, u8>,
    /// Opaque request handle for the callbacks below.
    pub ctx: *const c_void,
    /// Looks up a request header by case-insensitive name.
    pub header: extern "C" fn(ctx: *const c_void, name: RStr<'_>) -> RStr<'a>,
    /// Evaluates a variable by name without `$` (`arg_id`, `http_host`,
    /// `remote_addr`); an unknown or missing variable is empty.
    pub variable: extern "C" fn(ctx: *const c_void, name: RStr<'_>) -> RStr<'a>,
    /// Evaluates a template compiled at `init_upstream` by its id. A
    /// template that is one variable holding a slice of the request costs
    /// no copy.
    pub eval: extern "C" fn(ctx: *const c_void, template: u32) -> RStr<'a>,
}

/// Per-request storage owned by the core. A balancer's per-request state is
/// written here in place when it fits, or boxed and its pointer stored here.
#[repr(C, align(16))]
#[derive(StableAbi)]
pub struct PeerStorage {
    /// Raw bytes; only the SDK interprets them.
    pub bytes: [u64; 8],
}

impl PeerStorage {
    /// Size in bytes of the inline area.
    pub const SIZE: usize = 64;

    /// Empty storage.
    pub const fn new() -> PeerStorage {
        PeerStorage { bytes: [0; 8] }
    }
}

impl Default for PeerStorage {
    fn default() -> Self {
        PeerStorage::new()
    }
}

/// An answer a module gives instead of proxying (a rate limiter's 429).
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of `body`; empty for none.
    pub content_type: RString,
    /// Response body.
    pub body: RString,
    /// Extra response headers, name and value.
    pub headers: RVec<Tuple2<RString, RString>>,
}

/// Result of `init_peer`.
#[repr(C, u8)]
#[derive(StableAbi, Debug)]
pub enum InitPeerResult {
    /// State was written into the storage; proceed to `get`.
    Ready,
    /// State was written; wait this many milliseconds, then proceed to
    /// `get` (a rate limiter's delay). The wait never blocks a thread.
    Delay(u64),
    /// Answer the client now; storage is untouched.
    Reject(Rejection),
    /// The hook panicked or failed; the message names why. The core logs it
    /// and answers 502.
    Error(RString),
}

/// Result of `get`.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum GetResult {
    /// Use the peer at this index.
    Peer(u32),
    /// No peer is available: nginx's `NGX_BUSY`, "no live upstreams".
    Busy,
    /// The hook panicked or failed; the core logs it and fails the try.
    Error(RString),
}

/// How a try ended, as nginx's `NGX_PEER_FAILED` / `NGX_PEER_NEXT` states.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryState {
    /// The response was passed on, or will be.
    Ok,
    /// The peer failed (error, timeout, invalid header, or a listed 5xx that
    /// led to a retry); the core has counted the failure.
    Failed,
    /// A 403 or 404 led to a retry: not the peer's fault.
    Next,
}

/// What `free` learns about a finished try.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct TryOutcome {
    /// The peer that was tried.
    pub peer: u32,
    /// How it went.
    pub state: TryState,
    /// The upstream's status, 0 if no header arrived.
    pub status: u16,
    /// Time from choosing the peer to the end of the try, in microseconds.
    pub elapsed_us: u64,
}

/// Result of `free`.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeAction {
    /// Let `proxy_next_upstream` decide.
    Continue,
    /// Make no further tries for this request.
    StopRetries,
}

/// Severity of a module's log line, as nginx's levels.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `warn`
    Warn,
    /// `error`
    Error,
    /// `crit`
    Crit,
}

/// Services the core offers a module.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostApi {
    /// Writes a line to the core's error log.
    pub log: extern "C" fn(level: LogLevel, module: RStr<'_>, message: RStr<'_>),
}

/// What `init_upstream` receives.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct InitUpstreamArgs<'a> {
    /// The upstream's name (`backend` in `upstream backend {}`).
    pub upstream: RStr<'a>,
    /// File of the `upstream` block.
    pub file: RStr<'a>,
    /// Line of the `upstream` block.
    pub line: u32,
    /// The peers, primaries first.
    pub peers: RSlice<'a, PeerConfig<'a>>,
    /// This module's directives in the block, in order (may be empty for the
    /// default balancer).
    pub directives: RSlice<'a, DirectiveArgs<'a>>,
    /// How many worker threads will call the hooks; `PeersView::worker` is
    /// below it. Per-worker state needs no lock shared by all requests.
    pub workers: u32,
    /// Core services.
    pub host: HostApi,
    /// The core's builder for this upstream, for `compile`.
    pub builder: *mut c_void,
    /// Compiles a template such as `"$host$uri"` or `${arg_a}x` once, at
    /// config load; requests evaluate it with `RequestView::eval`. An
    /// unknown variable gives nginx's `unknown "name" variable`.
    pub compile: extern "C" fn(builder: *mut c_void, text: RStr<'_>) -> RResult<u32, RString>,
}

/// Hooks of one upstream object, as a C vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct BalancerVTable {
    /// Once per request: write per-request state into `storage`.
    pub init_peer: unsafe extern "C" fn(
        this: *const c_void,
        request: &RequestView<'_>,
        peers: &PeersView<'_>,
        storage: *mut PeerStorage,
    ) -> InitPeerResult,
    /// Once per try: choose a peer.
    pub get: unsafe extern "C" fn(
        this: *const c_void,
        storage: *mut PeerStorage,
        peers: &PeersView<'_>,
    ) -> GetResult,
    /// After each try.
    pub free: unsafe extern "C" fn(
        this: *const c_void,
        storage: *mut PeerStorage,
        peers: &PeersView<'_>,
        outcome: TryOutcome,
    ) -> FreeAction,
    /// Drops the per-request state written by `init_peer`.
    pub drop_peer: unsafe extern "C" fn(storage: *mut PeerStorage),
    /// Drops the upstream object; runs when the last request of a retired
    /// configuration ends.
    pub drop_upstream: unsafe extern "C" fn(this: *mut c_void),
}

/// An upstream object built by `init_upstream`. The core calls its hooks
/// through `vtable` and drops it with `drop_upstream`.
#[repr(C)]
#[derive(StableAbi)]
pub struct UpstreamObject {
    /// The module's state, opaque to the core.
    pub this: *mut c_void,
    /// The hooks.
    pub vtable: &'static BalancerVTable,
}

/// Where a filter module's directives apply.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// A `location` block (with what it inherits from server and http).
    Location,
    /// An `upstream` block: applies to requests proxied to it.
    Upstream,
}

/// One scope of a filter: the module's directives in effect there, after
/// nginx's inheritance (a level without a directive takes its parent's).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct ScopeArgs<'a> {
    /// Location or upstream.
    pub kind: ScopeKind,
    /// The location's path or the upstream's name.
    pub name: RStr<'a>,
    /// The module's directives in effect, in order.
    pub directives: RSlice<'a, DirectiveArgs<'a>>,
}

/// What `init_filter` receives: the module's whole configuration.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct InitFilterArgs<'a> {
    /// The module's directives written at `http` level (zones, defaults).
    pub http: RSlice<'a, DirectiveArgs<'a>>,
    /// Every location and upstream, in config order; `check` names them by
    /// index.
    pub scopes: RSlice<'a, ScopeArgs<'a>>,
    /// The filter object of the configuration being replaced, built by this
    /// same library, or null. A module hands its state over from it (rate
    /// limiter counters survive a reload).
    pub previous: *const c_void,
    /// Worker threads calling `check`.
    pub workers: u32,
    /// Core services.
    pub host: HostApi,
    /// The core's template builder, for `compile`.
    pub builder: *mut c_void,
    /// Compiles a template, as in [`InitUpstreamArgs::compile`].
    pub compile: extern "C" fn(builder: *mut c_void, text: RStr<'_>) -> RResult<u32, RString>,
}

/// What a filter decides for a request.
#[repr(C, u8)]
#[derive(StableAbi, Debug)]
pub enum FilterAction {
    /// Go on.
    Pass,
    /// Go on after this many milliseconds (a timer; no thread waits).
    Delay(u64),
    /// Answer the client with this instead.
    Reject(Rejection),
    /// The hook panicked or failed: the core logs it and answers 500.
    Error(RString),
}

/// A filter's decision and the value of its variable for this request.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FilterResult {
    /// What to do.
    pub action: FilterAction,
    /// The value of the module's first declared variable (`PASSED`); empty
    /// when the filter did not apply.
    pub variable: RStr<'static>,
}

/// Hooks of a filter object.
#[repr(C)]
#[derive(StableAbi)]
pub struct FilterVTable {
    /// Once per request in a scope where the module's directives apply.
    pub check: unsafe extern "C" fn(
        this: *const c_void,
        scope: u32,
        request: &RequestView<'_>,
    ) -> FilterResult,
    /// Drops the object when the last request of its configuration ends.
    pub drop_filter: unsafe extern "C" fn(this: *mut c_void),
}

/// A filter module's object for one configuration.
#[repr(C)]
#[derive(StableAbi)]
pub struct FilterObject {
    /// The module's state, opaque to the core.
    pub this: *mut c_void,
    /// The hooks.
    pub vtable: &'static FilterVTable,
}

/// The root module every library exports, checked by abi_stable on load.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ModuleRef)))]
#[sabi(missing_field(panic))]
pub struct Module {
    /// Equal to the library's [`ABI_VERSION`]; the core checks the exported
    /// symbol before loading, this copy guards against a mismatched symbol.
    pub abi_version: u32,
    /// What the module declares.
    pub info: extern "C" fn() -> ModuleInfo,
    /// Once per `upstream {}` block that uses the module, at config load.
    #[sabi(last_prefix_field)]
    pub init_upstream:
        extern "C" fn(args: &InitUpstreamArgs<'_>) -> RResult<UpstreamObject, ConfigError>,
    /// Once per configuration for a filter module (rate limiting), with
    /// all of its directives; `None` for a balancer.
    pub init_filter:
        Option<extern "C" fn(args: &InitFilterArgs<'_>) -> RResult<FilterObject, ConfigError>>,
    /// ABI 1.1: `init_upstream` with the host services added in 1.1. The
    /// core calls it instead of `init_upstream` when the module has it; a
    /// module built against 1.0 lacks the field and gets `init_upstream`.
    #[sabi(missing_field(default))]
    pub init_upstream_ext: Option<
        extern "C" fn(
            args: &InitUpstreamArgs<'_>,
            ext: &UpstreamExt<'_>,
        ) -> RResult<UpstreamObject, ConfigError>,
    >,
}

impl RootModule for ModuleRef {
    declare_root_module_statics! {ModuleRef}
    const BASE_NAME: &'static str = "waypost_module";
    const NAME: &'static str = "waypost_module";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The root module's layout as released in ABI 1.0, frozen.
///
/// abi_stable accepts a library whose prefix type has *more* fields than
/// the loader expects, not fewer: its layout check would refuse a module
/// built against 1.0 now that [`Module`] has gained a field. The core
/// therefore checks an older library against this frozen layout and then
/// reads it as the current [`ModuleRef`], whose accessors for fields the
/// library lacks return their defaults (the library's prefix metadata
/// records how many fields it has).
///
/// ```
/// use waypost_module_api::abi::v1_0;
/// let _: Option<v1_0::ModuleRef> = None;
/// ```
pub mod v1_0 {
    use super::*;

    /// [`super::Module`] as of ABI 1.0 (the same name, so the layouts
    /// compare).
    ///
    /// ```
    /// fn abi(m: waypost_module_api::abi::v1_0::ModuleRef) -> u32 { m.abi_version() }
    /// ```
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = ModuleRef)))]
    #[sabi(missing_field(panic))]
    pub struct Module {
        /// See [`super::Module::abi_version`].
        pub abi_version: u32,
        /// See [`super::Module::info`].
        pub info: extern "C" fn() -> ModuleInfo,
        /// See [`super::Module::init_upstream`].
        #[sabi(last_prefix_field)]
        pub init_upstream:
            extern "C" fn(args: &InitUpstreamArgs<'_>) -> RResult<UpstreamObject, ConfigError>,
        /// See [`super::Module::init_filter`].
        pub init_filter:
            Option<extern "C" fn(args: &InitFilterArgs<'_>) -> RResult<FilterObject, ConfigError>>,
    }

    impl RootModule for ModuleRef {
        declare_root_module_statics! {ModuleRef}
        const BASE_NAME: &'static str = "waypost_module";
        const NAME: &'static str = "waypost_module";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }
}
