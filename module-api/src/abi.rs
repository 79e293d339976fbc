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
//!
//! ```
//! use waypost_module_api::abi::{ModuleRef, ABI_VERSION};
//!
//! /// The first thing the core checks in a library's root module.
//! fn compatible(root: ModuleRef) -> bool {
//!     root.abi_version() == ABI_VERSION
//! }
//! ```

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
    ///
    /// ```
    /// use waypost_module_api::{Contexts, DirectiveSpec};
    /// // `limit_req_zone` defines a zone once, at `http` level.
    /// let zone = DirectiveSpec::plain("limit_req_zone", Contexts::HTTP, 3, 3);
    /// assert!(!zone.contexts.contains(Contexts::LOCATION));
    /// ```
    pub const HTTP: Contexts = Contexts(1);
    /// A `server {}` block inside `http`.
    ///
    /// ```
    /// use waypost_module_api::{Contexts, DirectiveSpec};
    /// let anywhere = Contexts::HTTP.with(Contexts::SERVER).with(Contexts::LOCATION);
    /// let limit = DirectiveSpec::plain("limit_req", anywhere, 1, 3);
    /// assert!(limit.contexts.contains(Contexts::SERVER));
    /// ```
    pub const SERVER: Contexts = Contexts(2);
    /// A `location {}` block.
    ///
    /// ```
    /// use waypost_module_api::{Contexts, DirectiveSpec};
    /// let deny = DirectiveSpec::plain("deny_all", Contexts::LOCATION, 0, 0);
    /// assert!(!deny.contexts.contains(Contexts::UPSTREAM));
    /// ```
    pub const LOCATION: Contexts = Contexts(4);
    /// An `upstream {}` block.
    ///
    /// ```
    /// use waypost_module_api::{Contexts, DirectiveSpec, ServerParams};
    /// // Balancing directives always belong to an `upstream {}` block.
    /// let hash = DirectiveSpec::balancer("hash", 1, 2, ServerParams::ALL);
    /// assert_eq!(hash.contexts, Contexts::UPSTREAM);
    /// ```
    pub const UPSTREAM: Contexts = Contexts(8);

    /// Both sets together.
    ///
    /// ```
    /// use waypost_module_api::Contexts;
    /// let c = Contexts::SERVER.with(Contexts::LOCATION);
    /// assert_eq!(c, Contexts(2 | 4));
    /// ```
    pub const fn with(self, other: Contexts) -> Contexts {
        Contexts(self.0 | other.0)
    }

    /// Whether every context of `other` is in `self`.
    ///
    /// ```
    /// use waypost_module_api::Contexts;
    /// let c = Contexts::HTTP.with(Contexts::SERVER);
    /// assert!(c.contains(Contexts::HTTP));
    /// assert!(c.contains(Contexts::HTTP.with(Contexts::SERVER)));
    /// assert!(!c.contains(Contexts::SERVER.with(Contexts::LOCATION)));
    /// ```
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
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// // A balancer that ignores weights refuses `weight=`.
    /// let unweighted = ServerParams::ALL.without(ServerParams::WEIGHT);
    /// assert!(!unweighted.contains(ServerParams::WEIGHT));
    /// ```
    pub const WEIGHT: ServerParams = ServerParams(1);
    /// `max_fails=N`
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// let no_failure_accounting = ServerParams::ALL
    ///     .without(ServerParams::MAX_FAILS)
    ///     .without(ServerParams::FAIL_TIMEOUT);
    /// assert!(!no_failure_accounting.contains(ServerParams::MAX_FAILS));
    /// ```
    pub const MAX_FAILS: ServerParams = ServerParams(2);
    /// `fail_timeout=T`
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// let params = ServerParams::ALL.without(ServerParams::FAIL_TIMEOUT);
    /// assert!(!params.contains(ServerParams::FAIL_TIMEOUT));
    /// assert!(params.contains(ServerParams::MAX_FAILS));
    /// ```
    pub const FAIL_TIMEOUT: ServerParams = ServerParams(4);
    /// `max_conns=N`
    ///
    /// ```
    /// use waypost_module_api::{DirectiveSpec, ServerParams};
    /// let least_conn = DirectiveSpec::balancer("least_conn", 0, 0, ServerParams::ALL);
    /// assert!(least_conn.server_params.contains(ServerParams::MAX_CONNS));
    /// ```
    pub const MAX_CONNS: ServerParams = ServerParams(8);
    /// `backup`
    ///
    /// ```
    /// use waypost_module_api::{DirectiveSpec, ServerParams};
    /// // As nginx's `hash`: `backup` makes no sense when a key picks the peer.
    /// let params = ServerParams::ALL.without(ServerParams::BACKUP);
    /// let hash = DirectiveSpec::balancer("hash", 1, 2, params);
    /// assert!(!hash.server_params.contains(ServerParams::BACKUP));
    /// ```
    pub const BACKUP: ServerParams = ServerParams(16);
    /// `down`
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// assert!(ServerParams::ALL.without(ServerParams::BACKUP).contains(ServerParams::DOWN));
    /// ```
    pub const DOWN: ServerParams = ServerParams(32);
    /// Every parameter, as round robin supports.
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// use ServerParams as P;
    /// for p in [P::WEIGHT, P::MAX_FAILS, P::FAIL_TIMEOUT, P::MAX_CONNS, P::BACKUP, P::DOWN] {
    ///     assert!(P::ALL.contains(p));
    /// }
    /// ```
    pub const ALL: ServerParams = ServerParams(63);

    /// The set without `other`.
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// let params = ServerParams::ALL.without(ServerParams::BACKUP);
    /// assert!(!params.contains(ServerParams::BACKUP));
    /// assert!(params.contains(ServerParams::WEIGHT));
    /// ```
    pub const fn without(self, other: ServerParams) -> ServerParams {
        ServerParams(self.0 & !other.0)
    }

    /// Whether every parameter of `other` is in `self`.
    ///
    /// ```
    /// use waypost_module_api::ServerParams;
    /// let params = ServerParams::ALL.without(ServerParams::DOWN);
    /// assert!(params.contains(ServerParams::WEIGHT));
    /// assert!(!params.contains(ServerParams::ALL));
    /// ```
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
    ///
    /// ```
    /// use waypost_module_api::{DirectiveSpec, ServerParams};
    /// // `hash KEY [consistent];`
    /// const DIRECTIVES: &[DirectiveSpec] = &[DirectiveSpec::balancer(
    ///     "hash",
    ///     1,
    ///     2,
    ///     ServerParams::ALL.without(ServerParams::BACKUP),
    /// )];
    /// assert!(DIRECTIVES[0].balancer);
    /// assert_eq!((DIRECTIVES[0].min_args, DIRECTIVES[0].max_args), (1, 2));
    /// ```
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
    ///
    /// ```
    /// use waypost_module_api::{Contexts, DirectiveSpec};
    /// // `hash_seed N;`, a setting beside the balancing directive.
    /// let seed = DirectiveSpec::plain("hash_seed", Contexts::UPSTREAM, 1, 1);
    /// assert!(!seed.balancer);
    /// assert_eq!(seed.name.as_str(), "hash_seed");
    /// ```
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
///
/// ```
/// # use waypost_module_api::prelude::*;
/// # struct First;
/// # impl Balancer for First {
/// #     type Request = ();
/// #     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
/// #     fn get(&self, _: &mut (), _: &Peers<'_>) -> Option<usize> { Some(0) }
/// # }
/// # struct FirstModule;
/// # impl Module for FirstModule {
/// #     const NAME: &'static str = "first";
/// #     const DIRECTIVES: &'static [DirectiveSpec] =
/// #         &[DirectiveSpec::balancer("first", 0, 0, ServerParams::ALL)];
/// #     type Upstream = First;
/// #     fn init_upstream(_: &UpstreamConfig<'_>) -> Result<First, ConfigError> { Ok(First) }
/// # }
/// // `FirstModule` (hidden above) is a balancer module.
/// use waypost_module_api::sdk::Shims;
/// // What the core reads once from a loaded library.
/// let info = (Shims::<FirstModule>::root_module().info())();
/// assert_eq!(info.name.as_str(), "first");
/// assert_eq!(info.directives[0].name.as_str(), "first");
/// assert!(info.variables.is_empty());
/// ```
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
///
/// ```
/// use abi_stable::std_types::{RSlice, RStr};
/// use waypost_module_api::{testing::PeerSet, DirectiveArgs, UpstreamConfig};
///
/// // `hash $request_uri consistent;` at line 3, as a unit test passes it.
/// let words = [RStr::from_str("$request_uri"), RStr::from_str("consistent")];
/// let hash = DirectiveArgs {
///     name: "hash".into(),
///     args: RSlice::from_slice(&words),
///     file: "test.conf".into(),
///     line: 3,
/// };
/// PeerSet::new(&[1, 1]).with_args(&[hash], |args| {
///     let d = UpstreamConfig::new(args).directives().next().unwrap();
///     assert_eq!(d.arg(1), "consistent");
/// });
/// ```
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
///
/// ```
/// use waypost_module_api::ConfigError;
/// let e = ConfigError::new("no servers are inside upstream");
/// // The core prints it with its location; the upstream block's when `line` is 0.
/// assert_eq!(e.message.as_str(), "no servers are inside upstream");
/// assert!(e.file.is_empty());
/// ```
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
///
/// ```
/// use waypost_module_api::testing::PeerSet;
/// let set = PeerSet::new(&[3]);
/// let peer = &set.configs()[0];
/// assert_eq!((peer.server.as_str(), peer.weight), ("p0", 3));
/// assert!(!peer.backup && !peer.down);
/// ```
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
///
/// ```
/// use std::sync::atomic::Ordering;
/// use waypost_module_api::PeerLive;
/// let live = PeerLive::default();
/// live.conns.fetch_add(1, Ordering::Relaxed); // the core, as a try starts
/// assert_eq!(live.conns.load(Ordering::Relaxed), 1);
/// assert_eq!(live.fails.load(Ordering::Relaxed), 0);
/// ```
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
    /// Active health checks (`health_check` in the upstream): 0 while the
    /// peer passes them (or is not checked), 1 while it is down by them. A
    /// peer down by health checks is not available to any balancer.
    pub health: AtomicU32,
    /// `server ... slow_start=T` in milliseconds, 0 for none; fixed for the
    /// configuration.
    pub slow_start_ms: u32,
    /// [`crate::sdk::now_ns`] when the peer last became available again
    /// (health checks passed, or a probe after `fail_timeout` succeeded);
    /// 0 if it never was unavailable. With `slow_start_ms`, its weight
    /// ramps from 0 over that time ([`crate::sdk::Peers::weight_permille`]).
    pub recovered_ns: AtomicU64,
    /// Reserved for later minor versions; zero.
    pub reserved: [AtomicU64; 3],
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

/// Host services added in ABI 1.1.
///
/// A prefix type, but one the core builds and the module reads: it cannot
/// grow. abi_stable checks the module's layout of it as it checks a table
/// the module provides, and refuses a module built with fewer fields than
/// the core has ("too many fields", tried with a `loop_ns` field added in
/// a 1.2 draft). A later minor adds a new entry point in [`Module`] with a
/// table of its own instead.
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
    /// for every module and worker in the process. Called inside a hook,
    /// the reading the core timed the hook from (for the `get` right after
    /// `init_peer`, `init_peer`'s; it does not advance during the call, as
    /// nginx's cached time); elsewhere, a fresh one.
    pub monotonic_ns: extern "C" fn() -> u64,
    /// 64 random bits from the calling worker's generator: fast, not
    /// cryptographic.
    pub random: extern "C" fn() -> u64,
    /// Registers a module metric for the upstream being initialised
    /// (`builder` from [`UpstreamExt`]); the core exports it as
    /// `waypost_module_NAME{module="..",upstream=".."}` (`_total` appended
    /// for a counter). Registering the same name again, in this or a later
    /// configuration, returns the same cell, so counters survive reloads.
    ///
    /// `labels` are added after `module` and `upstream` (a filter module's
    /// metrics have no `upstream`): `[("zone", "one")]` gives
    /// `waypost_module_NAME{module="limit_req",zone="one"}`.
    #[sabi(last_prefix_field)]
    pub register_metric: extern "C" fn(
        builder: *mut c_void,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
        labels: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
    ) -> RResult<&'static MetricCell, RString>,
}

/// What [`Module::init_filter_ext`] receives beside [`InitFilterArgs`].
///
/// ```
/// fn has_builder(ext: &waypost_module_api::FilterExt) -> bool { !ext.builder.is_null() }
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FilterExt {
    /// ABI 1.1 host services.
    pub host: HostExtRef,
    /// The core's builder for this filter, for `register_metric`; valid
    /// during the call only.
    pub builder: *mut c_void,
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
///
/// ```
/// use waypost_module_api::{Peers, PeersView};
///
/// /// What the SDK makes of the view the core passes to `get`.
/// fn backups(raw: &PeersView<'_>) -> usize {
///     let peers = Peers::new(raw);
///     peers.len() - peers.primary()
/// }
/// ```
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
///
/// ```
/// use std::ffi::c_void;
/// use abi_stable::std_types::{RSlice, RStr};
/// use waypost_module_api::{Request, RequestView};
///
/// extern "C" fn header(_: *const c_void, name: RStr<'_>) -> RStr<'static> {
///     if name.as_str().eq_ignore_ascii_case("host") { "example.com".into() } else { "".into() }
/// }
/// extern "C" fn variable(_: *const c_void, _: RStr<'_>) -> RStr<'static> { "".into() }
/// extern "C" fn eval(_: *const c_void, _: u32) -> RStr<'static> { "".into() }
///
/// // A request as the core would show it to a module.
/// let raw = RequestView {
///     method: "GET".into(),
///     uri: "/index.html".into(),
///     client_addr: "192.0.2.1".into(),
///     client_ip: RSlice::from_slice(&[192, 0, 2, 1]),
///     ctx: std::ptr::null(),
///     header,
///     variable,
///     eval,
/// };
/// assert_eq!(Request::new(&raw).header("Host"), "example.com");
/// ```
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
///
/// ```
/// use std::mem::{align_of, size_of};
/// use waypost_module_api::PeerStorage;
/// // One per request, owned by the core; the SDK writes the balancer's state in it.
/// let storage = PeerStorage::default();
/// assert_eq!(size_of::<PeerStorage>(), PeerStorage::SIZE);
/// assert_eq!(align_of::<PeerStorage>(), 16);
/// assert_eq!(storage.bytes, [0; 8]);
/// ```
#[repr(C, align(16))]
#[derive(StableAbi)]
pub struct PeerStorage {
    /// Raw bytes; only the SDK interprets them.
    pub bytes: [u64; 8],
}

impl PeerStorage {
    /// Size in bytes of the inline area.
    ///
    /// ```
    /// use waypost_module_api::PeerStorage;
    /// /// A balancer's per-request state: which peers it skipped, the last choice.
    /// struct State { skipped: u64, last: usize }
    /// // It fits, so a request costs no allocation.
    /// assert!(std::mem::size_of::<State>() <= PeerStorage::SIZE);
    /// ```
    pub const SIZE: usize = 64;

    /// Empty storage.
    ///
    /// ```
    /// use waypost_module_api::PeerStorage;
    /// const EMPTY: PeerStorage = PeerStorage::new();
    /// assert!(EMPTY.bytes.iter().all(|&b| b == 0));
    /// ```
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
///
/// ```
/// use waypost_module_api::prelude::*;
///
/// /// An `init_peer` that answers 401 to a request without credentials.
/// fn require_auth(request: &Request<'_>) -> Result<(), Rejection> {
///     if request.header("authorization").is_empty() {
///         return Err(Rejection::new(401, "text/plain", "login first\n")
///             .with_header("WWW-Authenticate", "Basic realm=\"waypost\""));
///     }
///     Ok(())
/// }
/// ```
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
///
/// ```
/// use waypost_module_api::InitPeerResult;
///
/// /// What the core does with the answer of `init_peer`.
/// fn describe(result: &InitPeerResult) -> String {
///     match result {
///         InitPeerResult::Ready => "first try".into(),
///         InitPeerResult::Delay(ms) => format!("first try in {ms} ms"),
///         InitPeerResult::Reject(r) => format!("answer {}", r.status),
///         InitPeerResult::Error(e) => format!("502: {e}"),
///     }
/// }
/// assert_eq!(describe(&InitPeerResult::Delay(20)), "first try in 20 ms");
/// ```
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
///
/// ```
/// use waypost_module_api::GetResult;
///
/// /// How the SDK turns `Balancer::get`'s answer into a result.
/// fn result(choice: Option<usize>) -> GetResult {
///     choice.map_or(GetResult::Busy, |i| GetResult::Peer(i as u32))
/// }
/// assert_eq!(result(Some(2)), GetResult::Peer(2));
/// assert_eq!(result(None), GetResult::Busy);
/// ```
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
///
/// ```
/// use waypost_module_api::{TryOutcome, TryState};
///
/// /// Whether a try counts against the peer (a 404 does not).
/// fn peer_at_fault(outcome: &TryOutcome) -> bool {
///     outcome.state == TryState::Failed
/// }
/// let not_found = TryOutcome { peer: 0, state: TryState::Next, status: 404, elapsed_us: 900 };
/// assert!(!peer_at_fault(&not_found));
/// ```
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryState {
    /// The response was passed on, or will be. Also a try whose client
    /// left while it waited (`status` 0): not the peer's fault, and
    /// nginx frees it with state 0 too.
    Ok,
    /// The peer failed (error, timeout, invalid header, or a listed 5xx that
    /// led to a retry); the core has counted the failure.
    Failed,
    /// A 403 or 404 led to a retry: not the peer's fault.
    Next,
}

/// What `free` learns about a finished try.
///
/// ```
/// use waypost_module_api::{TryOutcome, TryState};
///
/// /// Whether the peer answered at all (a timeout leaves `status` at 0).
/// fn answered(outcome: &TryOutcome) -> bool {
///     outcome.status != 0
/// }
/// let timeout = TryOutcome { peer: 1, state: TryState::Failed, status: 0, elapsed_us: 60_000_000 };
/// assert!(!answered(&timeout));
/// ```
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
///
/// ```
/// use waypost_module_api::{FreeAction, TryOutcome, TryState};
///
/// /// Do not retry elsewhere after an upstream said 429.
/// fn after_try(outcome: &TryOutcome) -> FreeAction {
///     if outcome.status == 429 { FreeAction::StopRetries } else { FreeAction::Continue }
/// }
/// let busy = TryOutcome { peer: 0, state: TryState::Failed, status: 429, elapsed_us: 0 };
/// assert_eq!(after_try(&busy), FreeAction::StopRetries);
/// ```
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeAction {
    /// Let `proxy_next_upstream` decide.
    Continue,
    /// Make no further tries for this request.
    StopRetries,
}

/// Severity of a module's log line, as nginx's levels.
///
/// ```
/// use waypost_module_api::{sdk::log, LogLevel};
/// log::<()>(LogLevel::Warn, "peer p1 ignored: zero weight");
/// assert!(LogLevel::Error > LogLevel::Warn);
/// ```
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
///
/// ```
/// use abi_stable::std_types::RStr;
/// use waypost_module_api::{HostApi, LogLevel};
///
/// // What a core (or a test) hands a module for logging.
/// extern "C" fn log(level: LogLevel, module: RStr<'_>, message: RStr<'_>) {
///     eprintln!("[{level:?}] {module}: {message}");
/// }
/// let host = HostApi { log };
/// (host.log)(LogLevel::Info, "hash".into(), "ring rebuilt".into());
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostApi {
    /// Writes a line to the core's error log.
    pub log: extern "C" fn(level: LogLevel, module: RStr<'_>, message: RStr<'_>),
}

/// What `init_upstream` receives.
///
/// ```
/// use waypost_module_api::testing::PeerSet;
/// PeerSet::new(&[1, 1]).with_args(&[], |args| {
///     assert_eq!(args.upstream.as_str(), "test");
///     assert_eq!(args.peers.len(), 2);
///     assert!(args.directives.is_empty());
/// });
/// ```
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
///
/// ```
/// use waypost_module_api::*;
///
/// /// How the core ends a request: `free` the last try, then drop the state.
/// unsafe fn finish(
///     upstream: &UpstreamObject,
///     storage: &mut PeerStorage,
///     peers: &PeersView<'_>,
///     outcome: TryOutcome,
/// ) -> FreeAction {
///     let vtable: &BalancerVTable = upstream.vtable;
///     unsafe {
///         let action = (vtable.free)(upstream.this, storage, peers, outcome);
///         (vtable.drop_peer)(storage);
///         action
///     }
/// }
/// ```
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
///
/// ```
/// use waypost_module_api::{GetResult, PeerStorage, PeersView, UpstreamObject};
///
/// /// How the core asks an upstream object for a peer.
/// unsafe fn get(
///     upstream: &UpstreamObject,
///     storage: &mut PeerStorage,
///     peers: &PeersView<'_>,
/// ) -> GetResult {
///     unsafe { (upstream.vtable.get)(upstream.this, storage, peers) }
/// }
/// ```
#[repr(C)]
#[derive(StableAbi)]
pub struct UpstreamObject {
    /// The module's state, opaque to the core.
    pub this: *mut c_void,
    /// The hooks.
    pub vtable: &'static BalancerVTable,
}

/// Where a filter module's directives apply.
///
/// ```
/// use waypost_module_api::{filter::Scope, ScopeKind};
///
/// /// Whether a filter's scope is a `location` (not an `upstream`).
/// fn is_location(scope: &Scope<'_>) -> bool {
///     scope.kind() == ScopeKind::Location
/// }
/// ```
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
///
/// ```
/// use abi_stable::std_types::RSlice;
/// use waypost_module_api::{ScopeArgs, ScopeKind};
/// // `location /api { }` with none of the module's directives in effect.
/// let scope = ScopeArgs {
///     kind: ScopeKind::Location,
///     name: "/api".into(),
///     directives: RSlice::from_slice(&[]),
/// };
/// assert_eq!(scope.name.as_str(), "/api");
/// assert!(scope.directives.is_empty());
/// ```
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
///
/// ```
/// use waypost_module_api::InitFilterArgs;
///
/// /// Whether `init_filter` runs for a reload, with an object to take state from.
/// fn is_reload(args: &InitFilterArgs<'_>) -> bool {
///     !args.previous.is_null()
/// }
/// ```
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
///
/// ```
/// use waypost_module_api::FilterAction;
///
/// /// The status the core answers with, if it answers at once.
/// fn status(action: &FilterAction) -> Option<u16> {
///     match action {
///         FilterAction::Pass | FilterAction::Delay(_) => None,
///         FilterAction::Reject(r) => Some(r.status),
///         FilterAction::Error(_) => Some(500),
///     }
/// }
/// assert_eq!(status(&FilterAction::Delay(100)), None);
/// ```
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
///
/// ```
/// use waypost_module_api::{FilterAction, FilterResult};
/// let result = FilterResult { action: FilterAction::Pass, variable: "PASSED".into() };
/// // The core sets the module's variable (`$limit_req_status`) from it.
/// assert_eq!(result.variable.as_str(), "PASSED");
/// ```
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
///
/// ```
/// use waypost_module_api::{FilterObject, FilterVTable};
///
/// /// How the core retires a filter object once its configuration is unused.
/// unsafe fn retire(filter: FilterObject) {
///     let vtable: &FilterVTable = filter.vtable;
///     unsafe { (vtable.drop_filter)(filter.this) }
/// }
/// ```
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
///
/// ```
/// use waypost_module_api::{FilterObject, FilterResult, RequestView};
///
/// /// How the core runs a filter for a request in scope `scope`.
/// unsafe fn check(filter: &FilterObject, scope: u32, request: &RequestView<'_>) -> FilterResult {
///     unsafe { (filter.vtable.check)(filter.this, scope, request) }
/// }
/// ```
#[repr(C)]
#[derive(StableAbi)]
pub struct FilterObject {
    /// The module's state, opaque to the core.
    pub this: *mut c_void,
    /// The hooks.
    pub vtable: &'static FilterVTable,
}

/// The root module every library exports, checked by abi_stable on load.
///
/// ```
/// # use waypost_module_api::prelude::*;
/// # struct First;
/// # impl Balancer for First {
/// #     type Request = ();
/// #     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
/// #     fn get(&self, _: &mut (), _: &Peers<'_>) -> Option<usize> { Some(0) }
/// # }
/// # struct FirstModule;
/// # impl Module for FirstModule {
/// #     const NAME: &'static str = "first";
/// #     const DIRECTIVES: &'static [DirectiveSpec] =
/// #         &[DirectiveSpec::balancer("first", 0, 0, ServerParams::ALL)];
/// #     type Upstream = First;
/// #     fn init_upstream(_: &UpstreamConfig<'_>) -> Result<First, ConfigError> { Ok(First) }
/// # }
/// // `FirstModule` (hidden above) is a balancer module.
/// use waypost_module_api::{sdk::Shims, ModuleRef, ABI_VERSION};
/// // The root module `export_module!(FirstModule)` exports, as the core reads it.
/// let root: ModuleRef = Shims::<FirstModule>::root_module();
/// assert_eq!(root.abi_version(), ABI_VERSION);
/// assert!(root.init_filter().is_none()); // a balancer
/// assert!(root.init_upstream_ext().is_some()); // built against ABI 1.1
/// ```
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
    /// ABI 1.1: `init_filter` with the host services added in 1.1; the core
    /// calls it instead of `init_filter` when present.
    #[sabi(missing_field(default))]
    pub init_filter_ext: Option<
        extern "C" fn(
            args: &InitFilterArgs<'_>,
            ext: &FilterExt,
        ) -> RResult<FilterObject, ConfigError>,
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
