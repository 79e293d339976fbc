//! The safe layer a module author writes against.
//!
//! Implement [`Module`] (what the module declares and how it builds an
//! upstream object) and [`Balancer`] (the per-request hooks), then call
//! [`export_module!`](crate::export_module) once. The macro exports the ABI
//! version tag and the abi_stable root module, and every hook runs behind a
//! panic barrier: a panic inside the module becomes an error result that
//! fails the try, because a panic that crossed `extern "C"` would abort the
//! whole proxy.
//!
//! ```
//! use waypost_module_api::prelude::*;
//! use waypost_module_api::testing::PeerSet;
//!
//! /// nginx's `least_conn`, without its weights.
//! struct LeastConn;
//! impl Balancer for LeastConn {
//!     type Request = ();
//!     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
//!     fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
//!         (0..peers.len()).filter(|&i| peers.is_eligible(i)).min_by_key(|&i| peers.conns(i))
//!     }
//! }
//!
//! let mut set = PeerSet::new(&[1, 1]);
//! set.set_conns(0, 2);
//! assert_eq!(set.with_peers(|peers| LeastConn.get(&mut (), peers)), Some(1));
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::mem::{align_of, size_of};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, Tuple2};

use crate::abi::{
    BalancerVTable, ConfigError, DirectiveArgs, DirectiveSpec, FreeAction, GetResult, HostApi,
    HostExtRef, InitPeerResult, InitUpstreamArgs, LogLevel, MetricCell, MetricKind,
    Module as RawModule, ModuleInfo, ModuleRef, PeerConfig, PeerStats, PeerStorage, PeersView,
    Rejection, RequestView, TryOutcome, UpstreamExt, UpstreamObject, ABI_VERSION,
};

/// A module: its name, its directives and how it builds an upstream object.
///
/// ```
/// use waypost_module_api::prelude::*;
///
/// struct First;
/// impl Balancer for First {
///     type Request = ();
///     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
///     fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
///         (0..peers.len()).find(|&i| peers.is_eligible(i))
///     }
/// }
///
/// struct FirstModule;
/// impl Module for FirstModule {
///     const NAME: &'static str = "first";
///     const DIRECTIVES: &'static [DirectiveSpec] =
///         &[DirectiveSpec::balancer("first", 0, 0, ServerParams::ALL)];
///     type Upstream = First;
///     fn init_upstream(_: &UpstreamConfig<'_>) -> Result<First, ConfigError> { Ok(First) }
/// }
/// // In a cdylib crate: waypost_module_api::export_module!(FirstModule);
/// ```
pub trait Module: 'static {
    /// Short name used in log lines.
    const NAME: &'static str;
    /// The directives the module owns; a balancing directive selects it.
    const DIRECTIVES: &'static [DirectiveSpec];
    /// The upstream object built for each `upstream {}` block.
    type Upstream: Balancer;
    /// Builds the upstream object at config load, or refuses the config.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    /// use waypost_module_api::testing::PeerSet;
    /// # struct Random { peers: usize }
    /// # impl Balancer for Random {
    /// #     type Request = ();
    /// #     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
    /// #     fn get(&self, _: &mut (), _: &Peers<'_>) -> Option<usize> { Some(0) }
    /// # }
    /// // `Random { peers: usize }` (hidden here) is the balancer.
    /// struct RandomModule;
    /// impl Module for RandomModule {
    ///     const NAME: &'static str = "random";
    ///     const DIRECTIVES: &'static [DirectiveSpec] =
    ///         &[DirectiveSpec::balancer("random", 0, 0, ServerParams::ALL)];
    ///     type Upstream = Random;
    ///     fn init_upstream(config: &UpstreamConfig<'_>) -> Result<Random, ConfigError> {
    ///         Ok(Random { peers: config.peers().len() })
    ///     }
    /// }
    ///
    /// let upstream = PeerSet::new(&[1, 1])
    ///     .with_args(&[], |args| RandomModule::init_upstream(&UpstreamConfig::new(args)))
    ///     .unwrap();
    /// assert_eq!(upstream.peers, 2);
    /// ```
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<Self::Upstream, ConfigError>;
}

/// The per-request hooks of a balancer, called on the proxy's worker
/// threads. They must not block: no I/O, no waiting on locks held long.
///
/// ```
/// use waypost_module_api::prelude::*;
///
/// /// Always the first eligible peer, and never retry.
/// struct First;
/// impl Balancer for First {
///     type Request = ();
///     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
///     fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
///         (0..peers.len()).find(|&i| peers.is_eligible(i))
///     }
///     fn free(&self, _: &mut (), _: &Peers<'_>, _: &TryOutcome) -> FreeAction {
///         FreeAction::StopRetries
///     }
/// }
/// ```
pub trait Balancer: Send + Sync + 'static {
    /// Per-request state. Up to 64 bytes it lives in the core's request
    /// storage with no allocation.
    type Request: Send + 'static;

    /// Once per request: build the state, or answer the client instead.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// Sticky sessions: the `backend` cookie names the peer.
    /// struct Sticky;
    /// impl Balancer for Sticky {
    ///     type Request = usize;
    ///     fn init_peer(&self, req: &Request<'_>, peers: &Peers<'_>) -> Result<usize, Rejection> {
    ///         match req.var("cookie_backend").parse::<usize>() {
    ///             Ok(i) if i < peers.len() => Ok(i),
    ///             _ => Err(Rejection::new(400, "text/plain", "bad backend cookie\n")),
    ///         }
    ///     }
    ///     fn get(&self, chosen: &mut usize, peers: &Peers<'_>) -> Option<usize> {
    ///         peers.is_eligible(*chosen).then_some(*chosen)
    ///     }
    /// }
    /// ```
    fn init_peer(
        &self,
        request: &Request<'_>,
        peers: &Peers<'_>,
    ) -> Result<Self::Request, Rejection>;

    /// How long to hold the request before its first try, decided in
    /// `init_peer` (a rate limiter's delay). The default is no delay.
    ///
    /// ```
    /// # use waypost_module_api::prelude::*;
    /// # use std::time::Duration;
    /// struct Slow;
    /// impl Balancer for Slow {
    ///     type Request = Duration;
    ///     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<Duration, Rejection> {
    ///         Ok(Duration::from_millis(100))
    ///     }
    ///     fn delay(&self, wait: &Duration) -> Duration { *wait }
    ///     fn get(&self, _: &mut Duration, peers: &Peers<'_>) -> Option<usize> {
    ///         (0..peers.len()).find(|&i| peers.is_eligible(i))
    ///     }
    /// }
    /// ```
    fn delay(&self, state: &Self::Request) -> std::time::Duration {
        let _ = state;
        std::time::Duration::ZERO
    }

    /// Once per try: the index of the peer to use, or `None` when no peer is
    /// available (the core answers 502 and logs "no live upstreams").
    ///
    /// ```
    /// use std::time::Duration;
    /// use waypost_module_api::prelude::*;
    /// use waypost_module_api::testing::PeerSet;
    ///
    /// /// The eligible peer with the lowest latency; an unmeasured one first.
    /// struct Fastest;
    /// impl Balancer for Fastest {
    ///     type Request = ();
    ///     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<(), Rejection> { Ok(()) }
    ///     fn get(&self, _: &mut (), peers: &Peers<'_>) -> Option<usize> {
    ///         (0..peers.len())
    ///             .filter(|&i| peers.is_eligible(i))
    ///             .min_by_key(|&i| peers.latency(i).unwrap_or_default())
    ///     }
    /// }
    ///
    /// let set = PeerSet::new(&[1, 1]);
    /// set.set_latency(0, Duration::from_millis(9));
    /// set.set_latency(1, Duration::from_millis(2));
    /// assert_eq!(set.with_peers(|peers| Fastest.get(&mut (), peers)), Some(1));
    /// ```
    fn get(&self, state: &mut Self::Request, peers: &Peers<'_>) -> Option<usize>;

    /// After each try, with its outcome. The core has already updated the
    /// peer's live counters.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    /// use waypost_module_api::testing::PeerSet;
    ///
    /// /// At most two tries per request, whatever `proxy_next_upstream` says.
    /// struct TwoTries;
    /// impl Balancer for TwoTries {
    ///     type Request = u32; // tries so far
    ///     fn init_peer(&self, _: &Request<'_>, _: &Peers<'_>) -> Result<u32, Rejection> { Ok(0) }
    ///     fn get(&self, tries: &mut u32, peers: &Peers<'_>) -> Option<usize> {
    ///         *tries += 1;
    ///         (0..peers.len()).find(|&i| peers.is_eligible(i))
    ///     }
    ///     fn free(&self, tries: &mut u32, _: &Peers<'_>, _: &TryOutcome) -> FreeAction {
    ///         if *tries >= 2 { FreeAction::StopRetries } else { FreeAction::Continue }
    ///     }
    /// }
    ///
    /// let failed = TryOutcome { peer: 1, state: TryState::Failed, status: 502, elapsed_us: 0 };
    /// let set = PeerSet::new(&[1, 1, 1]);
    /// let action = set.with_peers(|peers| TwoTries.free(&mut 2, peers, &failed));
    /// assert_eq!(action, FreeAction::StopRetries);
    /// ```
    fn free(
        &self,
        state: &mut Self::Request,
        peers: &Peers<'_>,
        outcome: &TryOutcome,
    ) -> FreeAction {
        let _ = (state, peers, outcome);
        FreeAction::Continue
    }
}

impl Rejection {
    /// A rejection with a body and its content type.
    ///
    /// ```
    /// let r = waypost_module_api::Rejection::new(429, "application/json", "{}");
    /// assert_eq!(r.status, 429);
    /// ```
    pub fn new(status: u16, content_type: &str, body: &str) -> Rejection {
        Rejection {
            status,
            content_type: RString::from(content_type),
            body: RString::from(body),
            headers: abi_stable::std_types::RVec::new(),
        }
    }

    /// Adds a response header.
    ///
    /// ```
    /// let r = waypost_module_api::Rejection::new(429, "", "").with_header("Retry-After", "1");
    /// assert_eq!(r.headers.len(), 1);
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Rejection {
        self.headers.push(abi_stable::std_types::Tuple2(
            RString::from(name),
            RString::from(value),
        ));
        self
    }
}

impl ConfigError {
    /// An error located at the upstream block itself.
    ///
    /// ```
    /// let e = waypost_module_api::ConfigError::new("no servers are inside upstream");
    /// assert_eq!(e.line, 0);
    /// ```
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: RString::from(message.into()),
            file: RString::new(),
            line: 0,
        }
    }
}

/// The `upstream {}` block a module is asked to serve.
///
/// ```
/// # use waypost_module_api::prelude::*;
/// fn check(config: &UpstreamConfig<'_>) -> Result<(), ConfigError> {
///     for d in config.directives() {
///         if d.args().len() > 1 && d.arg(1) != "consistent" {
///             return Err(d.error(format!("invalid parameter \"{}\"", d.arg(1))));
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct UpstreamConfig<'a> {
    raw: &'a InitUpstreamArgs<'a>,
    ext: Option<&'a UpstreamExt<'a>>,
}

impl<'a> UpstreamConfig<'a> {
    /// Wraps the raw arguments. The core and tests use this; modules receive
    /// it ready-made.
    ///
    /// ```
    /// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[1, 1]);
    /// set.with_args(&[], |args| assert_eq!(UpstreamConfig::new(args).peers().len(), 2));
    /// ```
    pub fn new(raw: &'a InitUpstreamArgs<'a>) -> Self {
        UpstreamConfig { raw, ext: None }
    }

    /// Wraps the raw arguments and the ABI 1.1 services.
    ///
    /// ```
    /// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[1]);
    /// set.with_args(&[], |args| {
    ///     let config = UpstreamConfig::with_ext(args, None);
    ///     assert_eq!(config.workers(), 1);
    /// });
    /// ```
    pub fn with_ext(raw: &'a InitUpstreamArgs<'a>, ext: Option<&'a UpstreamExt<'a>>) -> Self {
        UpstreamConfig { raw, ext }
    }

    /// Registers a counter exported with the core's metrics as
    /// `waypost_module_NAME_total{module="..",upstream=".."}`. `name` is
    /// `[a-z_][a-z0-9_]*`. The same name in a later configuration (after a
    /// reload) continues the same count. Without a core (unit tests) the
    /// counter works but is exported nowhere.
    ///
    /// ```
    /// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[1]);
    /// set.with_args(&[], |args| {
    ///     let probes = UpstreamConfig::new(args).counter("probes", "Probes sent").unwrap();
    ///     probes.inc();
    ///     assert_eq!(probes.get(), 1);
    /// });
    /// ```
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, ConfigError> {
        self.metric(MetricKind::Counter, name, help)
            .map(|cell| Counter { cell })
    }

    /// Registers a gauge exported as `waypost_module_NAME{module="..",upstream=".."}`;
    /// see [`UpstreamConfig::counter`].
    ///
    /// ```
    /// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[1]);
    /// set.with_args(&[], |args| {
    ///     let ring = UpstreamConfig::new(args).gauge("ring_points", "Points on the ring").unwrap();
    ///     ring.set(-3);
    ///     assert_eq!(ring.get(), -3);
    /// });
    /// ```
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, ConfigError> {
        self.metric(MetricKind::Gauge, name, help)
            .map(|cell| Gauge { cell })
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
    ) -> Result<&'static MetricCell, ConfigError> {
        register_metric(self.ext.map(|e| (e.host, e.builder)), kind, name, help, &[])
            .map_err(|e| self.error(e))
    }

    /// The upstream's name.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// // PeerSet's arguments describe `upstream test { ... }`.
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     assert_eq!(UpstreamConfig::new(args).name(), "test");
    /// });
    /// ```
    pub fn name(&self) -> &'a str {
        self.raw.upstream.as_str()
    }

    /// Every peer, primaries first.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1, 3]).with_args(&[], |args| {
    ///     let peers = UpstreamConfig::new(args).peers();
    ///     assert_eq!(peers[1].weight, 3);
    ///     assert_eq!(peers[1].addr.as_str(), "p1");
    /// });
    /// ```
    pub fn peers(&self) -> &'a [PeerConfig<'a>] {
        self.raw.peers.as_slice()
    }

    /// The number of primary (non-backup) peers.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let mut set = PeerSet::new(&[1, 1, 1]);
    /// set.config_mut(2).backup = true;
    /// set.with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     assert_eq!((config.primary(), config.peers().len()), (2, 3));
    /// });
    /// ```
    pub fn primary(&self) -> usize {
        self.peers().iter().take_while(|p| !p.backup).count()
    }

    /// This module's directives in the block, in order.
    ///
    /// ```
    /// use abi_stable::std_types::{RSlice, RStr};
    /// use waypost_module_api::{testing::PeerSet, DirectiveArgs, UpstreamConfig};
    ///
    /// let seed = [RStr::from_str("42")];
    /// let raw = DirectiveArgs {
    ///     name: "hash_seed".into(),
    ///     args: RSlice::from_slice(&seed),
    ///     file: "test.conf".into(),
    ///     line: 2,
    /// };
    /// PeerSet::new(&[1]).with_args(&[raw], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     let seed = config.directives().find(|d| d.name() == "hash_seed").map(|d| d.arg(0));
    ///     assert_eq!(seed, Some("42"));
    /// });
    /// ```
    pub fn directives(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.raw
            .directives
            .as_slice()
            .iter()
            .map(|raw| Directive { raw })
    }

    /// How many worker threads call the hooks.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, wrr::SmoothWeights, UpstreamConfig};
    /// PeerSet::new(&[1, 1]).with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     // Per-worker state, indexed by `Peers::worker` in the hooks.
    ///     let _weights = SmoothWeights::new(config.peers(), config.workers());
    ///     assert_eq!(config.workers(), 1);
    /// });
    /// ```
    pub fn workers(&self) -> usize {
        self.raw.workers.max(1) as usize
    }

    /// Compiles a template (`"$host$uri"`, `${arg_a}x`) for
    /// [`Request::eval`]; the error is nginx's message for an unknown
    /// variable, to report with [`Directive::error`].
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// `hash KEY;`: the key compiled once, at config load.
    /// fn key(config: &UpstreamConfig<'_>) -> Result<Template, ConfigError> {
    ///     let d = config.directives().find(|d| d.name() == "hash");
    ///     let d = d.ok_or_else(|| config.error("\"hash\" directive is missing"))?;
    ///     config.compile(d.arg(0)).map_err(|e| d.error(e))
    /// }
    /// ```
    pub fn compile(&self, text: &str) -> Result<Template, String> {
        match (self.raw.compile)(self.raw.builder, RStr::from_str(text)) {
            RResult::ROk(id) => Ok(Template(id)),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }

    /// An error located at the `upstream` block.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let e = PeerSet::new(&[1]).with_args(&[], |args| {
    ///     UpstreamConfig::new(args).error("no servers are inside upstream")
    /// });
    /// assert_eq!((e.file.as_str(), e.line), ("test.conf", 1));
    /// ```
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: RString::from(message.into()),
            file: RString::from(self.raw.file.as_str()),
            line: self.raw.line,
        }
    }
}

/// One of the module's directives as written in the config.
///
/// ```
/// use waypost_module_api::prelude::*;
///
/// /// `hash KEY [consistent];`: whether the ring variant is asked for.
/// fn consistent(config: &UpstreamConfig<'_>) -> Result<bool, ConfigError> {
///     match config.directives().find(|d| d.name() == "hash") {
///         Some(d) if d.args().len() == 2 && d.arg(1) != "consistent" => {
///             Err(d.error(format!("invalid parameter \"{}\"", d.arg(1))))
///         }
///         Some(d) => Ok(d.args().len() == 2),
///         None => Ok(false),
///     }
/// }
/// ```
#[derive(Clone, Copy)]
pub struct Directive<'a> {
    raw: &'a DirectiveArgs<'a>,
}

impl<'a> Directive<'a> {
    pub(crate) fn from_raw(raw: &'a DirectiveArgs<'a>) -> Self {
        Directive { raw }
    }

    /// The directive name.
    ///
    /// ```
    /// # use abi_stable::std_types::{RSlice, RStr};
    /// # use waypost_module_api::{Directive, DirectiveArgs};
    /// # let words = [RStr::from_str("$request_uri"), RStr::from_str("consistent")];
    /// # let raw = DirectiveArgs {
    /// #     name: "hash".into(),
    /// #     args: RSlice::from_slice(&words),
    /// #     file: "/etc/waypost/waypost.conf".into(),
    /// #     line: 12,
    /// # };
    /// // `raw` is `hash $request_uri consistent;`.
    /// assert_eq!(Directive::new(&raw).name(), "hash");
    /// ```
    pub fn name(&self) -> &'a str {
        self.raw.name.as_str()
    }

    /// Its arguments.
    ///
    /// ```
    /// # use abi_stable::std_types::{RSlice, RStr};
    /// # use waypost_module_api::{Directive, DirectiveArgs};
    /// # let words = [RStr::from_str("$request_uri"), RStr::from_str("consistent")];
    /// # let raw = DirectiveArgs {
    /// #     name: "hash".into(),
    /// #     args: RSlice::from_slice(&words),
    /// #     file: "/etc/waypost/waypost.conf".into(),
    /// #     line: 12,
    /// # };
    /// // `raw` is `hash $request_uri consistent;`.
    /// let args = Directive::new(&raw).args();
    /// assert_eq!(args.len(), 2);
    /// assert_eq!(args[0].as_str(), "$request_uri");
    /// ```
    pub fn args(&self) -> &'a [RStr<'a>] {
        self.raw.args.as_slice()
    }

    /// Argument `i`, or "" past the end.
    ///
    /// ```
    /// # use abi_stable::std_types::{RSlice, RStr};
    /// # use waypost_module_api::{Directive, DirectiveArgs};
    /// # let words = [RStr::from_str("$request_uri"), RStr::from_str("consistent")];
    /// # let raw = DirectiveArgs {
    /// #     name: "hash".into(),
    /// #     args: RSlice::from_slice(&words),
    /// #     file: "/etc/waypost/waypost.conf".into(),
    /// #     line: 12,
    /// # };
    /// // `raw` is `hash $request_uri consistent;`.
    /// let d = Directive::new(&raw);
    /// assert_eq!(d.arg(1), "consistent");
    /// assert_eq!(d.arg(2), "");
    /// ```
    pub fn arg(&self, i: usize) -> &'a str {
        self.raw.args.as_slice().get(i).map_or("", |a| a.as_str())
    }

    /// A config error at this directive's file and line.
    ///
    /// ```
    /// # use abi_stable::std_types::{RSlice, RStr};
    /// # use waypost_module_api::{Directive, DirectiveArgs};
    /// # let words = [RStr::from_str("$request_uri"), RStr::from_str("consistent")];
    /// # let raw = DirectiveArgs {
    /// #     name: "hash".into(),
    /// #     args: RSlice::from_slice(&words),
    /// #     file: "/etc/waypost/waypost.conf".into(),
    /// #     line: 12,
    /// # };
    /// // `raw` is `hash $request_uri consistent;`, line 12.
    /// let e = Directive::new(&raw).error("invalid parameter \"consistent\"");
    /// assert_eq!((e.file.as_str(), e.line), ("/etc/waypost/waypost.conf", 12));
    /// ```
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: RString::from(message.into()),
            file: RString::from(self.raw.file.as_str()),
            line: self.raw.line,
        }
    }
}

/// The request being balanced.
///
/// ```
/// # use waypost_module_api::prelude::*;
/// fn key<'a>(request: &Request<'a>) -> &'a str {
///     let id = request.var("arg_app_id");
///     if id.is_empty() { request.client_addr() } else { id }
/// }
/// ```
pub struct Request<'a> {
    raw: &'a RequestView<'a>,
}

impl<'a> Request<'a> {
    /// Wraps the raw view.
    ///
    /// ```
    /// # use std::ffi::c_void;
    /// # use abi_stable::std_types::{RSlice, RStr};
    /// use waypost_module_api::{Request, RequestView};
    /// # extern "C" fn header(_: *const c_void, _: RStr<'_>) -> RStr<'static> { "".into() }
    /// # extern "C" fn variable(_: *const c_void, name: RStr<'_>) -> RStr<'static> {
    /// #     if name.as_str() == "arg_id" { "7".into() } else { "".into() }
    /// # }
    /// # extern "C" fn eval(_: *const c_void, _: u32) -> RStr<'static> { "".into() }
    ///
    /// // A view as the core builds it (callbacks hidden), for `GET /?id=7` from 192.0.2.1.
    /// let raw = RequestView {
    ///     method: "GET".into(),
    ///     uri: "/?id=7".into(),
    ///     client_addr: "192.0.2.1".into(),
    ///     client_ip: RSlice::from_slice(&[192, 0, 2, 1]),
    ///     ctx: std::ptr::null(),
    ///     header,
    ///     variable,
    ///     eval,
    /// };
    /// let request = Request::new(&raw);
    /// assert_eq!(request.var("arg_id"), "7");
    /// assert_eq!(request.client_ip(), [192, 0, 2, 1]);
    /// ```
    pub fn new(raw: &'a RequestView<'a>) -> Self {
        Request { raw }
    }

    /// The method, e.g. `GET`.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// Only idempotent requests may be retried on another peer.
    /// fn retryable(request: &Request<'_>) -> bool {
    ///     matches!(request.method(), "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
    /// }
    /// ```
    pub fn method(&self) -> &'a str {
        self.raw.method.as_str()
    }

    /// The request target as received (`$request_uri`).
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// Static files go to the first peer, everything else anywhere.
    /// fn is_static(request: &Request<'_>) -> bool {
    ///     request.uri().starts_with("/static/")
    /// }
    /// ```
    pub fn uri(&self) -> &'a str {
        self.raw.uri.as_str()
    }

    /// The client address as text (`$remote_addr`).
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// fn banned(request: &Request<'_>) -> Rejection {
    ///     let body = format!("{} is not allowed\n", request.client_addr());
    ///     Rejection::new(403, "text/plain", &body)
    /// }
    /// ```
    pub fn client_addr(&self) -> &'a str {
        self.raw.client_addr.as_str()
    }

    /// The client address bytes: 4 for IPv4, 16 for IPv6, empty otherwise.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// nginx's `ip_hash` key: an IPv4 address's first three bytes, all of an IPv6 one.
    /// fn ip_hash_key<'a>(request: &Request<'a>) -> &'a [u8] {
    ///     let ip = request.client_ip();
    ///     if ip.len() == 4 { &ip[..3] } else { ip }
    /// }
    /// ```
    pub fn client_ip(&self) -> &'a [u8] {
        self.raw.client_ip.as_slice()
    }

    /// A request header by case-insensitive name; "" when absent.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// The tenant a request belongs to, or the client when it names none.
    /// fn tenant<'a>(request: &Request<'a>) -> &'a str {
    ///     match request.header("X-Tenant") {
    ///         "" => request.client_addr(),
    ///         tenant => tenant,
    ///     }
    /// }
    /// ```
    pub fn header(&self, name: &str) -> &'a str {
        (self.raw.header)(self.raw.ctx, RStr::from_str(name)).as_str()
    }

    /// A variable by name without `$` (`arg_id`, `http_host`, `uri`); ""
    /// when unknown or absent. Parses the name on every call: prefer
    /// [`Request::eval`] with a template compiled at `init_upstream`.
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// /// `?debug=1` requests go to the canary peer.
    /// fn wants_canary(request: &Request<'_>) -> bool {
    ///     request.var("arg_debug") == "1"
    /// }
    /// ```
    pub fn var(&self, name: &str) -> &'a str {
        (self.raw.variable)(self.raw.ctx, RStr::from_str(name)).as_str()
    }

    /// The value of a template compiled by [`UpstreamConfig::compile`].
    ///
    /// ```
    /// use waypost_module_api::prelude::*;
    ///
    /// struct Sticky { key: Template }
    ///
    /// fn init(config: &UpstreamConfig<'_>) -> Result<Sticky, ConfigError> {
    ///     let key = config.compile("$cookie_route").map_err(|e| config.error(e))?;
    ///     Ok(Sticky { key })
    /// }
    ///
    /// fn key<'a>(sticky: &Sticky, request: &Request<'a>) -> &'a str {
    ///     request.eval(sticky.key)
    /// }
    /// ```
    pub fn eval(&self, template: Template) -> &'a str {
        (self.raw.eval)(self.raw.ctx, template.0).as_str()
    }
}

/// A template compiled at config load by [`UpstreamConfig::compile`],
/// evaluated per request by [`Request::eval`].
///
/// ```
/// # use waypost_module_api::prelude::*;
/// struct Keyed { key: Template }
/// fn key<'a>(k: &Keyed, request: &Request<'a>) -> &'a str {
///     request.eval(k.key)
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template(pub u32);

/// The upstream's peers as one request sees them: configuration, live
/// counters the core keeps, and which peers this request already tried.
///
/// Indexes run over primaries first (`0..primary()`), then backups.
///
/// ```
/// use waypost_module_api::testing::PeerSet;
/// let mut set = PeerSet::new(&[1, 1, 1]);
/// set.mark_tried(1);
/// let eligible = set.with_peers(|peers| {
///     (0..peers.len()).filter(|&i| peers.is_eligible(i)).count()
/// });
/// assert_eq!(eligible, 2);
/// ```
pub struct Peers<'a> {
    raw: &'a PeersView<'a>,
    stats: &'a [PeerStats],
}

/// What a peer's statistics read as without a core to keep them.
static NO_STATS: PeerStats = PeerStats {
    requests: AtomicU64::new(0),
    latency_us: AtomicU64::new(0),
    slot: AtomicU64::new(0),
    health: std::sync::atomic::AtomicU32::new(0),
    slow_start_ms: 0,
    recovered_ns: AtomicU64::new(0),
    reserved: [const { AtomicU64::new(0) }; 3],
};

impl<'a> Peers<'a> {
    /// Wraps the raw view, without per-peer statistics (they read as 0).
    ///
    /// ```
    /// # use abi_stable::std_types::RSlice;
    /// # use waypost_module_api::{testing::PeerSet, PeerLive, PeersView};
    /// # let set = PeerSet::new(&[1, 1]);
    /// # let live = [PeerLive::default(), PeerLive::default()];
    /// # let raw = PeersView {
    /// #     config: RSlice::from_slice(set.configs()),
    /// #     live: RSlice::from_slice(&live),
    /// #     tried: RSlice::from_slice(&[0]),
    /// #     primary: 2,
    /// #     primary_weight: 2,
    /// #     single: false,
    /// #     now: 1_000,
    /// #     worker: 0,
    /// # };
    /// use waypost_module_api::Peers;
    /// // `raw`: the view of two peers the core passes a hook.
    /// let peers = Peers::new(&raw);
    /// assert_eq!(peers.len(), 2);
    /// assert_eq!(peers.requests(0), 0); // no statistics: they read as 0
    /// ```
    pub fn new(raw: &'a PeersView<'a>) -> Self {
        Peers { raw, stats: &[] }
    }

    /// Wraps the raw view and the per-peer statistics the core keeps
    /// (ABI 1.1), index for index.
    ///
    /// ```
    /// # use abi_stable::std_types::RSlice;
    /// # use waypost_module_api::{testing::PeerSet, PeerLive, PeersView};
    /// # let set = PeerSet::new(&[1, 1]);
    /// # let live = [PeerLive::default(), PeerLive::default()];
    /// # let raw = PeersView {
    /// #     config: RSlice::from_slice(set.configs()),
    /// #     live: RSlice::from_slice(&live),
    /// #     tried: RSlice::from_slice(&[0]),
    /// #     primary: 2,
    /// #     primary_weight: 2,
    /// #     single: false,
    /// #     now: 1_000,
    /// #     worker: 0,
    /// # };
    /// use std::sync::atomic::Ordering;
    /// use waypost_module_api::{PeerStats, Peers};
    /// let stats = [PeerStats::default(), PeerStats::default()];
    /// stats[1].requests.store(5, Ordering::Relaxed);
    /// // `raw`: the view of two peers the core passes a hook.
    /// let peers = Peers::with_stats(&raw, &stats);
    /// assert_eq!(peers.requests(1), 5);
    /// ```
    pub fn with_stats(raw: &'a PeersView<'a>, stats: &'a [PeerStats]) -> Self {
        Peers { raw, stats }
    }

    fn stats(&self, i: usize) -> &'a PeerStats {
        self.stats.get(i).unwrap_or(&NO_STATS)
    }

    /// Tries started on peer `i` under this configuration.
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[1, 1]);
    /// set.with_peers(|peers| assert_eq!(peers.requests(1), 0));
    /// ```
    pub fn requests(&self, i: usize) -> u64 {
        self.stats(i).requests.load(Ordering::Relaxed)
    }

    /// Recent time to response header on peer `i`, an EWMA the core keeps;
    /// `None` before the first response.
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// # use std::time::Duration;
    /// let set = PeerSet::new(&[1, 1]);
    /// set.set_latency(0, Duration::from_millis(3));
    /// set.with_peers(|peers| {
    ///     assert_eq!(peers.latency(0), Some(Duration::from_millis(3)));
    ///     assert_eq!(peers.latency(1), None);
    /// });
    /// ```
    pub fn latency(&self, i: usize) -> Option<Duration> {
        match self.stats(i).latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The module's own word for peer `i`, shared by every worker and kept
    /// for the life of the configuration; the core never touches it.
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// # use std::sync::atomic::Ordering;
    /// let set = PeerSet::new(&[1]);
    /// set.with_peers(|peers| {
    ///     peers.slot(0).fetch_add(1, Ordering::Relaxed);
    ///     assert_eq!(peers.slot(0).load(Ordering::Relaxed), 1);
    /// });
    /// ```
    pub fn slot(&self, i: usize) -> &'a AtomicU64 {
        &self.stats(i).slot
    }

    /// How much of peer `i`'s weight applies at `now_ns` ([`now_ns`]), in
    /// thousandths: 1000, or less while `slow_start=` ramps a peer that
    /// just became available again from 0 to its full weight.
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[4]);
    /// set.set_slow_start(0, 10_000, 1_000_000_000); // 10 s, back at t = 1 s
    /// set.with_peers(|peers| {
    ///     assert_eq!(peers.weight_permille(0, 3_500_000_000), 250); // 2.5 s in
    ///     assert_eq!(peers.weight_permille(0, 20_000_000_000), 1000);
    /// });
    /// ```
    pub fn weight_permille(&self, i: usize, now_ns: u64) -> u32 {
        let stats = self.stats(i);
        let window_ns = u64::from(stats.slow_start_ms) * 1_000_000;
        let since = stats.recovered_ns.load(Ordering::Relaxed);
        if window_ns == 0 || since == 0 {
            return 1000;
        }
        let elapsed = now_ns.saturating_sub(since);
        if elapsed >= window_ns {
            1000
        } else {
            (elapsed * 1000 / window_ns) as u32
        }
    }

    /// Peer `i`'s `slow_start=` in milliseconds, 0 for none.
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1]);
    /// set.set_slow_start(0, 30_000, 0);
    /// assert_eq!(set.view().slow_start_ms(0), 30_000);
    /// ```
    pub fn slow_start_ms(&self, i: usize) -> u32 {
        self.stats(i).slow_start_ms
    }

    /// Whether active health checks hold peer `i` down (then it is not
    /// available).
    ///
    /// ```
    /// # use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[1, 1]);
    /// set.stats(1).health.store(1, std::sync::atomic::Ordering::Relaxed);
    /// set.with_peers(|peers| {
    ///     assert!(peers.is_unhealthy(1) && !peers.is_available(1));
    ///     assert!(!peers.is_unhealthy(0));
    /// });
    /// ```
    pub fn is_unhealthy(&self, i: usize) -> bool {
        self.stats(i).health.load(Ordering::Relaxed) != 0
    }

    /// Number of peers, backups included.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1, 1]);
    /// set.config_mut(2).backup = true;
    /// assert_eq!(set.view().len(), 3); // backups included
    /// ```
    pub fn len(&self) -> usize {
        self.raw.config.len()
    }

    /// Whether there are no peers at all.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// assert!(!PeerSet::new(&[1]).view().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.raw.config.is_empty()
    }

    /// Number of primary peers; backups are `primary()..len()`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1, 1]);
    /// set.config_mut(2).backup = true;
    /// let peers = set.view();
    /// assert_eq!(peers.primary(), 2);
    /// assert_eq!((peers.primary()..peers.len()).collect::<Vec<_>>(), [2]); // the backups
    /// ```
    pub fn primary(&self) -> usize {
        self.raw.primary as usize
    }

    /// Sum of primary weights, `down` peers included, as nginx's
    /// `total_weight` (so marking a peer down does not remap hash keys).
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[3, 1]);
    /// set.config_mut(1).down = true;
    /// assert_eq!(set.view().primary_weight(), 4);
    /// ```
    pub fn primary_weight(&self) -> u32 {
        self.raw.primary_weight
    }

    /// One primary and no backup: failures are not counted against it.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// assert!(PeerSet::new(&[1]).view().single());
    /// assert!(!PeerSet::new(&[1, 1]).view().single());
    /// ```
    pub fn single(&self) -> bool {
        self.raw.single
    }

    /// The configuration of peer `i`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[2]);
    /// let peers = set.view();
    /// let p = peers.config(0);
    /// assert_eq!((p.server.as_str(), p.max_fails, p.fail_timeout), ("p0", 1, 10));
    /// ```
    pub fn config(&self, i: usize) -> &'a PeerConfig<'a> {
        &self.raw.config.as_slice()[i]
    }

    /// Configured weight of peer `i`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let set = PeerSet::new(&[5, 1]);
    /// assert_eq!(set.view().weight(0), 5);
    /// ```
    pub fn weight(&self, i: usize) -> u32 {
        self.config(i).weight
    }

    /// Tries in flight on peer `i`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.set_conns(0, 4);
    /// let peers = set.view();
    /// let least = (0..peers.len()).min_by_key(|&i| peers.conns(i));
    /// assert_eq!(least, Some(1));
    /// ```
    pub fn conns(&self, i: usize) -> u32 {
        self.raw.live.as_slice()[i].conns.load(Ordering::Relaxed)
    }

    /// Failures counted on peer `i`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.set_failed(1, 2, set.now);
    /// assert_eq!(set.view().fails(1), 2);
    /// ```
    pub fn fails(&self, i: usize) -> u32 {
        self.raw.live.as_slice()[i].fails.load(Ordering::Relaxed)
    }

    /// Whether this request already tried peer `i`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]);
    /// set.mark_tried(0);
    /// assert!(set.view().is_tried(0));
    /// assert!(!set.view().is_tried(1));
    /// ```
    pub fn is_tried(&self, i: usize) -> bool {
        self.raw
            .tried
            .as_slice()
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether peer `i` may take a try now, by nginx's rules: not `down`,
    /// not disabled by `max_fails` within `fail_timeout` (ignored for a
    /// single peer), not at `max_conns`.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1]); // max_fails=1 fail_timeout=10
    /// set.set_failed(0, 1, set.now);
    /// assert!(!set.view().is_available(0));
    /// set.now += 11; // fail_timeout has passed
    /// assert!(set.view().is_available(0));
    /// ```
    pub fn is_available(&self, i: usize) -> bool {
        let config = self.config(i);
        if config.down || self.stats(i).health.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let live = &self.raw.live.as_slice()[i];
        if !self.raw.single && config.max_fails > 0 {
            let fails = live.fails.load(Ordering::Relaxed);
            let checked = live.checked.load(Ordering::Relaxed);
            if fails >= config.max_fails
                && self.raw.now.saturating_sub(checked) <= u64::from(config.fail_timeout)
            {
                return false;
            }
        }
        config.max_conns == 0 || live.conns.load(Ordering::Relaxed) < config.max_conns
    }

    /// Available and not yet tried by this request.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1, 1, 1]);
    /// set.mark_tried(0);
    /// set.config_mut(1).down = true;
    /// let peers = set.view();
    /// assert_eq!((0..3).filter(|&i| peers.is_eligible(i)).collect::<Vec<_>>(), [2]);
    /// ```
    pub fn is_eligible(&self, i: usize) -> bool {
        !self.is_tried(i) && self.is_available(i)
    }

    /// Cached wall-clock time in seconds.
    ///
    /// ```
    /// use waypost_module_api::testing::PeerSet;
    /// let mut set = PeerSet::new(&[1]);
    /// set.now = 1_700_000_000;
    /// assert_eq!(set.view().now(), 1_700_000_000);
    /// ```
    pub fn now(&self) -> u64 {
        self.raw.now
    }

    /// The worker thread running this hook, below `UpstreamConfig::workers`.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// let set = PeerSet::new(&[1, 1]);
    /// // At `init_upstream`: one entry per worker.
    /// let last: Vec<Mutex<usize>> = set.with_args(&[], |args| {
    ///     (0..UpstreamConfig::new(args).workers()).map(|_| Mutex::new(0)).collect()
    /// });
    /// // In a hook: this worker's entry, a lock no other thread takes.
    /// set.with_peers(|peers| *last[peers.worker()].lock().unwrap() = 1);
    /// assert_eq!(*last[0].lock().unwrap(), 1);
    /// ```
    pub fn worker(&self) -> usize {
        self.raw.worker as usize
    }
}

pub(crate) static HOST: OnceLock<HostApi> = OnceLock::new();
/// The ABI 1.1 services, set at the first `init_upstream_ext`.
pub(crate) static HOST_EXT: OnceLock<HostExtRef> = OnceLock::new();

/// Nanoseconds on the core's monotonic clock, the same for every module and
/// worker (before the core loaded the module, a clock of the module's own).
///
/// Inside a hook it is the time the core called the hook, read once for
/// the hook's timing (in the `get` right after `init_peer`, the time
/// `init_peer` was called: the core times the two together), as an nginx
/// module reads the worker's cached `ngx_current_msec`: it does not
/// advance during the call, so it cannot time work inside one hook. On a
/// thread of the module's own it is a fresh reading.
///
/// ```
/// let a = waypost_module_api::sdk::now_ns();
/// assert!(waypost_module_api::sdk::now_ns() >= a);
/// ```
pub fn now_ns() -> u64 {
    match HOST_EXT.get() {
        Some(host) => (host.monotonic_ns())(),
        None => {
            static START: OnceLock<Instant> = OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }
}

/// 64 random bits from the calling worker's fast generator (not
/// cryptographic); before the core loaded the module, a generator of the
/// module's own.
///
/// ```
/// let (a, b) = (waypost_module_api::sdk::random(), waypost_module_api::sdk::random());
/// assert_ne!(a, b);
/// ```
pub fn random() -> u64 {
    match HOST_EXT.get() {
        Some(host) => (host.random())(),
        None => {
            thread_local! {
                static STATE: Cell<u64> = Cell::new(
                    (&STATE as *const _ as u64) ^ now_ns().rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15,
                );
            }
            STATE.with(|s| {
                let (next, out) = wyrand(s.get());
                s.set(next);
                out
            })
        }
    }
}

/// One step of wyrand: the next state and 64 output bits.
///
/// ```
/// let (state, out) = waypost_module_api::sdk::wyrand(1);
/// assert_ne!(state, 1);
/// assert_ne!(out, 0);
/// ```
pub fn wyrand(state: u64) -> (u64, u64) {
    let s = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
    (s, ((t >> 64) as u64) ^ (t as u64))
}

/// Registers a metric with the core, or, with no core (unit tests), makes
/// a cell of the module's own, leaked like the core's (metrics live as long
/// as the process).
pub(crate) fn register_metric(
    host: Option<(HostExtRef, *mut c_void)>,
    kind: MetricKind,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
) -> Result<&'static MetricCell, String> {
    let Some((host, builder)) = host else {
        return Ok(Box::leak(Box::default()));
    };
    let labels: Vec<Tuple2<RStr<'_>, RStr<'_>>> = labels
        .iter()
        .map(|(k, v)| Tuple2(RStr::from_str(k), RStr::from_str(v)))
        .collect();
    match (host.register_metric())(
        builder,
        kind,
        RStr::from_str(name),
        RStr::from_str(help),
        RSlice::from_slice(&labels),
    ) {
        RResult::ROk(cell) => Ok(cell),
        RResult::RErr(e) => Err(e.into_string()),
    }
}

/// A module counter exported with the core's metrics; see
/// [`UpstreamConfig::counter`]. Adding is one relaxed atomic add.
///
/// ```
/// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
/// let set = PeerSet::new(&[1]);
/// set.with_args(&[], |args| {
///     let c = UpstreamConfig::new(args).counter("hits", "Hits").unwrap();
///     c.add(2);
///     assert_eq!(c.get(), 2);
/// });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    cell: &'static MetricCell,
}

impl Counter {
    pub(crate) fn from_cell(cell: &'static MetricCell) -> Counter {
        Counter { cell }
    }

    /// Adds one.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     let fallbacks = config.counter("fallbacks", "Picks of a backup").unwrap();
    ///     fallbacks.inc();
    ///     assert_eq!(fallbacks.get(), 1);
    /// });
    /// ```
    pub fn inc(&self) {
        self.add(1)
    }

    /// Adds `n`.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     let rebuilt = config.counter("points_built", "Ring points built").unwrap();
    ///     rebuilt.add(160);
    ///     assert_eq!(rebuilt.get(), 160);
    /// });
    /// ```
    pub fn add(&self, n: u64) {
        self.cell.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     let c = UpstreamConfig::new(args).counter("retries", "Retries").unwrap();
    ///     assert_eq!(c.get(), 0);
    /// });
    /// ```
    pub fn get(&self) -> u64 {
        self.cell.value.load(Ordering::Relaxed)
    }
}

/// A module gauge exported with the core's metrics; see
/// [`UpstreamConfig::gauge`].
///
/// ```
/// # use waypost_module_api::{testing::PeerSet, UpstreamConfig};
/// let set = PeerSet::new(&[1]);
/// set.with_args(&[], |args| {
///     let g = UpstreamConfig::new(args).gauge("level", "Level").unwrap();
///     g.set(5);
///     g.add(-7);
///     assert_eq!(g.get(), -2);
/// });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Gauge {
    cell: &'static MetricCell,
}

impl Gauge {
    pub(crate) fn from_cell(cell: &'static MetricCell) -> Gauge {
        Gauge { cell }
    }

    /// Sets the level.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1, 1]).with_args(&[], |args| {
    ///     let config = UpstreamConfig::new(args);
    ///     let live = config.gauge("peers", "Peers in the ring").unwrap();
    ///     live.set(config.peers().len() as i64);
    ///     assert_eq!(live.get(), 2);
    /// });
    /// ```
    pub fn set(&self, value: i64) {
        self.cell.value.store(value as u64, Ordering::Relaxed);
    }

    /// Moves the level by `delta`.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     let waiting = UpstreamConfig::new(args).gauge("waiting", "Delayed requests").unwrap();
    ///     waiting.add(1); // a request starts waiting
    ///     waiting.add(-1); // and goes on
    ///     assert_eq!(waiting.get(), 0);
    /// });
    /// ```
    pub fn add(&self, delta: i64) {
        self.cell.value.fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// The current level.
    ///
    /// ```
    /// use waypost_module_api::{testing::PeerSet, UpstreamConfig};
    /// PeerSet::new(&[1]).with_args(&[], |args| {
    ///     let g = UpstreamConfig::new(args).gauge("skew", "Skew").unwrap();
    ///     g.set(-4);
    ///     assert_eq!(g.get(), -4);
    /// });
    /// ```
    pub fn get(&self) -> i64 {
        self.cell.value.load(Ordering::Relaxed) as i64
    }
}
/// The module's `NAME`, set when the core first initialises it (each
/// module library has its own copy of this static).
pub(crate) static NAME: OnceLock<&'static str> = OnceLock::new();

/// Writes a line to the proxy's error log: tagged with the module's name,
/// or, from a filter's `check`, as nginx writes a request's line (with
/// `client: ..., request: ...`). The type parameter is not used; it is kept
/// so existing calls compile.
///
/// ```
/// use waypost_module_api::{sdk::log, LogLevel};
/// log::<()>(LogLevel::Notice, "ring rebuilt"); // a no-op until the core loaded the module
/// ```
pub fn log<M: ?Sized>(level: LogLevel, message: &str) {
    if let Some(host) = HOST.get() {
        (host.log)(
            level,
            RStr::from_str(NAME.get().copied().unwrap_or("module")),
            RStr::from_str(message),
        );
    }
}

pub(crate) fn log_named(level: LogLevel, module: &str, message: &str) {
    if let Some(host) = HOST.get() {
        (host.log)(level, RStr::from_str(module), RStr::from_str(message));
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// A panic caught at the barrier: its payload and where it happened.
pub(crate) struct Caught {
    payload: Box<dyn Any + Send>,
    at: Option<String>,
}

thread_local! {
    /// Set while a hook runs behind the barrier.
    static BARRIER: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic behind the barrier happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook in this module's copy of std: a panic
/// behind the barrier is reported in the proxy's error log (one line, with
/// its location), not printed with a backtrace on stderr on every request.
/// Other panics go to the hook that was there before.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if BARRIER.get() {
                LOCATION.set(
                    info.location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                );
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` behind the panic barrier.
pub(crate) fn barrier<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    let outer = BARRIER.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    BARRIER.set(outer);
    result.map_err(|payload| Caught {
        payload,
        at: LOCATION.take(),
    })
}

pub(crate) fn panicked(module: &str, hook: &str, caught: &Caught) -> RString {
    let message = panic_message(&*caught.payload);
    RString::from(match &caught.at {
        Some(at) => format!("module \"{module}\" panicked in {hook} at {at}: {message}"),
        None => format!("module \"{module}\" panicked in {hook}: {message}"),
    })
}

/// Whether `T` lives inline in [`PeerStorage`] rather than boxed.
const fn inline<T>() -> bool {
    size_of::<T>() <= PeerStorage::SIZE && align_of::<T>() <= align_of::<PeerStorage>()
}

unsafe fn state_mut<'s, T>(storage: *mut PeerStorage) -> &'s mut T {
    if inline::<T>() {
        &mut *(storage as *mut T)
    } else {
        &mut **(storage as *mut *mut T)
    }
}

/// A balancer with what the core handed it at `init_upstream_ext`.
struct Hosted<B> {
    balancer: B,
    /// The core's per-peer statistics: valid until `drop_upstream`.
    stats: *const PeerStats,
    len: usize,
}

impl<B> Hosted<B> {
    fn peers<'a>(&'a self, raw: &'a PeersView<'a>) -> Peers<'a> {
        // SAFETY: the core keeps the slice alive and unmoved until it drops
        // this object (UpstreamExt::stats).
        let stats = unsafe { std::slice::from_raw_parts(self.stats, self.len) };
        Peers::with_stats(raw, stats)
    }
}

/// The C shims for a module, instantiated by [`export_module!`](crate::export_module).
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
/// // What `export_module!(FirstModule)` exports: the root module of a balancer.
/// let root = Shims::<FirstModule>::root_module();
/// assert!(root.init_filter().is_none());
/// ```
pub struct Shims<M>(std::marker::PhantomData<M>);

impl<M: Module> Shims<M> {
    const VTABLE: BalancerVTable = BalancerVTable {
        init_peer: Self::init_peer,
        get: Self::get,
        free: Self::free,
        drop_peer: Self::drop_peer,
        drop_upstream: Self::drop_upstream,
    };

    /// The root module value the library exports.
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
    /// let root = Shims::<FirstModule>::root_module();
    /// assert_eq!(root.abi_version(), waypost_module_api::ABI_VERSION);
    /// assert_eq!((root.info())().name.as_str(), "first");
    /// ```
    pub fn root_module() -> ModuleRef {
        RawModule {
            abi_version: ABI_VERSION,
            info: Self::info,
            init_upstream: Self::init_upstream,
            init_filter: None,
            init_upstream_ext: Some(Self::init_upstream_ext),
            init_filter_ext: None,
        }
        .leak_into_prefix()
    }

    extern "C" fn info() -> ModuleInfo {
        install_panic_hook();
        ModuleInfo {
            name: RStr::from_str(M::NAME),
            directives: RSlice::from_slice(M::DIRECTIVES),
            variables: RSlice::from_slice(&[]),
        }
    }

    /// The ABI 1.0 entry, called only by a core older than this SDK.
    extern "C" fn init_upstream(
        _args: &InitUpstreamArgs<'_>,
    ) -> RResult<UpstreamObject, ConfigError> {
        RResult::RErr(ConfigError::new(format!(
            "module \"{}\" needs waypost with module ABI 1.{} or later",
            M::NAME,
            crate::abi::ABI_MINOR
        )))
    }

    extern "C" fn init_upstream_ext(
        args: &InitUpstreamArgs<'_>,
        ext: &UpstreamExt<'_>,
    ) -> RResult<UpstreamObject, ConfigError> {
        let _ = HOST.set(args.host);
        let _ = HOST_EXT.set(ext.host);
        let _ = NAME.set(M::NAME);
        install_panic_hook();
        let result = barrier(|| M::init_upstream(&UpstreamConfig::with_ext(args, Some(ext))));
        match result {
            Ok(Ok(balancer)) => RResult::ROk(UpstreamObject {
                this: Box::into_raw(Box::new(Hosted {
                    balancer,
                    stats: ext.stats.as_ptr(),
                    len: ext.stats.len(),
                })) as *mut c_void,
                vtable: &Self::VTABLE,
            }),
            Ok(Err(e)) => RResult::RErr(e),
            Err(caught) => RResult::RErr(ConfigError::new(
                panicked(M::NAME, "init_upstream", &caught).into_string(),
            )),
        }
    }

    unsafe extern "C" fn init_peer(
        this: *const c_void,
        request: &RequestView<'_>,
        peers: &PeersView<'_>,
        storage: *mut PeerStorage,
    ) -> InitPeerResult {
        let hosted = &*(this as *const Hosted<M::Upstream>);
        let upstream = &hosted.balancer;
        let result = barrier(|| upstream.init_peer(&Request::new(request), &hosted.peers(peers)));
        match result {
            Ok(Ok(state)) => {
                let delay =
                    catch_unwind(AssertUnwindSafe(|| upstream.delay(&state))).unwrap_or_default();
                if inline::<<M::Upstream as Balancer>::Request>() {
                    std::ptr::write(storage as *mut _, state);
                } else {
                    std::ptr::write(storage as *mut *mut _, Box::into_raw(Box::new(state)));
                }
                if delay.is_zero() {
                    InitPeerResult::Ready
                } else {
                    InitPeerResult::Delay(delay.as_millis().min(u128::from(u64::MAX)) as u64)
                }
            }
            Ok(Err(rejection)) => InitPeerResult::Reject(rejection),
            Err(caught) => InitPeerResult::Error(panicked(M::NAME, "init_peer", &caught)),
        }
    }

    unsafe extern "C" fn get(
        this: *const c_void,
        storage: *mut PeerStorage,
        peers: &PeersView<'_>,
    ) -> GetResult {
        let hosted = &*(this as *const Hosted<M::Upstream>);
        let state = state_mut::<<M::Upstream as Balancer>::Request>(storage);
        match barrier(|| hosted.balancer.get(state, &hosted.peers(peers))) {
            Ok(Some(i)) if i < peers.config.len() => GetResult::Peer(i as u32),
            Ok(Some(i)) => GetResult::Error(RString::from(format!(
                "module \"{}\" chose peer {i} of {}",
                M::NAME,
                peers.config.len()
            ))),
            Ok(None) => GetResult::Busy,
            Err(caught) => GetResult::Error(panicked(M::NAME, "get", &caught)),
        }
    }

    unsafe extern "C" fn free(
        this: *const c_void,
        storage: *mut PeerStorage,
        peers: &PeersView<'_>,
        outcome: TryOutcome,
    ) -> FreeAction {
        let hosted = &*(this as *const Hosted<M::Upstream>);
        let state = state_mut::<<M::Upstream as Balancer>::Request>(storage);
        match barrier(|| hosted.balancer.free(state, &hosted.peers(peers), &outcome)) {
            Ok(action) => action,
            Err(caught) => {
                log_named(
                    LogLevel::Error,
                    M::NAME,
                    panicked(M::NAME, "free", &caught).as_str(),
                );
                FreeAction::StopRetries
            }
        }
    }

    unsafe extern "C" fn drop_peer(storage: *mut PeerStorage) {
        type S<M> = <<M as Module>::Upstream as Balancer>::Request;
        let dropped = barrier(|| {
            if inline::<S<M>>() {
                std::ptr::drop_in_place(storage as *mut S<M>);
            } else {
                drop(Box::from_raw(*(storage as *mut *mut S<M>)));
            }
        });
        if let Err(caught) = dropped {
            log_named(
                LogLevel::Error,
                M::NAME,
                panicked(M::NAME, "drop", &caught).as_str(),
            );
        }
    }

    unsafe extern "C" fn drop_upstream(this: *mut c_void) {
        let dropped = barrier(|| {
            drop(Box::from_raw(this as *mut Hosted<M::Upstream>));
        });
        if let Err(caught) = dropped {
            log_named(
                LogLevel::Error,
                M::NAME,
                panicked(M::NAME, "drop", &caught).as_str(),
            );
        }
    }
}

/// Exports a [`Module`] from a `cdylib` crate: the ABI version tag and the
/// abi_stable root module. Call it once, at the crate root.
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
/// #     const DIRECTIVES: &'static [DirectiveSpec] = &[];
/// #     type Upstream = First;
/// #     fn init_upstream(_: &UpstreamConfig<'_>) -> Result<First, ConfigError> { Ok(First) }
/// # }
/// // `FirstModule` (hidden above) is a balancer module.
/// // At the root of the module's cdylib crate:
/// waypost_module_api::export_module!(FirstModule);
/// # fn main() {
/// // The first symbol the core reads from the library.
/// assert_eq!(waypost_abi_version, waypost_module_api::ABI_VERSION);
/// # }
/// ```
///
/// It refuses to build with `panic = "abort"`, since the panic barrier
/// around every hook needs unwinding.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        $crate::__export_root!($crate::sdk::Shims::<$module>::root_module);
    };
}

/// The exports every module library has: the ABI version tag and the
/// abi_stable library header whose loader returns `$root()`. Spelled with
/// paths through this crate (what `#[export_root_module]` generates), so
/// module crates need no direct abi_stable dependency.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root {
    ($root:path) => {
        #[cfg(panic = "abort")]
        compile_error!(
            "waypost modules need panic = \"unwind\": the SDK turns a panic in a hook into an error, and abort would kill the proxy"
        );

        /// ABI version tag, read by the core before anything else.
        #[no_mangle]
        pub static waypost_abi_version: u32 = $crate::ABI_VERSION;

        /// The abi_stable library header.
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static WAYPOST_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader($root)
            }
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::ModuleRef>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_catches_a_panic_with_its_location() {
        install_panic_hook();
        let caught = barrier(|| -> u32 { panic!("boom {}", 7) }).expect_err("panicked");
        let message = panicked("m", "get", &caught);
        let line = line!() - 2;
        assert!(
            message
                .as_str()
                .starts_with("module \"m\" panicked in get at "),
            "{message}"
        );
        assert!(
            message.as_str().contains(&format!("sdk.rs:{line}:")),
            "{message}"
        );
        assert!(message.as_str().ends_with(": boom 7"), "{message}");
        assert_eq!(barrier(|| 5).ok(), Some(5));
        // Outside the barrier, nothing was recorded.
        assert!(LOCATION.take().is_none());
    }

    #[test]
    fn exported_header_name_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
