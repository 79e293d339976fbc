//! The safe layer for filter modules: code that decides, per request,
//! whether it goes on, waits or is answered at once (a rate limiter).
//!
//! A filter module implements [`FilterModule`] and [`Filter`] and calls
//! [`export_filter!`](crate::export_filter). The core hands
//! `init_filter` every occurrence of the module's directives: those at
//! `http` level, and for each location and upstream the ones in effect
//! there after nginx's inheritance. `check` then runs once per request in
//! each scope where the module's directives apply.
//!
//! ```
//! use std::time::Duration;
//! use waypost_module_api::filter::{Check, Filter};
//! use waypost_module_api::Request;
//!
//! /// Lets reads through and holds writes back for 10 ms.
//! struct SlowWrites;
//! impl Filter for SlowWrites {
//!     fn check(&self, _scope: usize, request: &Request<'_>) -> Check {
//!         match request.method() {
//!             "GET" | "HEAD" => Check::pass(""),
//!             _ => Check::delay(Duration::from_millis(10), "DELAYED"),
//!         }
//!     }
//! }
//! ```

use std::ffi::c_void;
use std::time::Duration;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RSlice, RStr};

use crate::abi::{
    ConfigError, DirectiveArgs, DirectiveSpec, FilterAction, FilterExt, FilterObject, FilterResult,
    FilterVTable, InitFilterArgs, InitUpstreamArgs, MetricKind, Module as RawModule, ModuleInfo,
    ModuleRef, Rejection, RequestView, ScopeArgs, ScopeKind, UpstreamObject, ABI_VERSION,
};
use crate::sdk::{
    barrier, install_panic_hook, panicked, register_metric, Counter, Directive, Gauge, Request,
    Template, HOST, HOST_EXT,
};

/// A filter module: its name, directives, variables and how it builds its
/// object for a configuration.
///
/// ```
/// use waypost_module_api::prelude::*;
/// use waypost_module_api::filter::*;
///
/// /// `deny_all;` in a location answers 403.
/// struct DenyAll { scopes: Vec<bool> }
/// impl Filter for DenyAll {
///     fn check(&self, scope: usize, _: &Request<'_>) -> Check {
///         if self.scopes[scope] {
///             Check::reject(Rejection::new(403, "text/plain", "denied\n"), "DENIED")
///         } else {
///             Check::pass("")
///         }
///     }
/// }
///
/// struct DenyAllModule;
/// impl FilterModule for DenyAllModule {
///     const NAME: &'static str = "deny_all";
///     const DIRECTIVES: &'static [DirectiveSpec] =
///         &[DirectiveSpec::plain("deny_all", Contexts::LOCATION, 0, 0)];
///     const VARIABLES: &'static [&'static str] = &["deny_all_status"];
///     type Filter = DenyAll;
///     fn init_filter(config: &FilterConfig<'_>, _: Option<&DenyAll>) -> Result<DenyAll, ConfigError> {
///         Ok(DenyAll { scopes: config.scopes().map(|s| s.directives().next().is_some()).collect() })
///     }
/// }
/// // In the cdylib: waypost_module_api::export_filter!(DenyAllModule);
/// ```
pub trait FilterModule: 'static {
    /// Short name used in log lines.
    const NAME: &'static str;
    /// The directives the module owns.
    const DIRECTIVES: &'static [DirectiveSpec];
    /// Variables the module sets per request, for `log_format`; the first
    /// one's value is [`Check::variable`].
    const VARIABLES: &'static [&'static str];
    /// The object built for a configuration.
    type Filter: Filter;
    /// Builds the object at config load. `previous` is the object of the
    /// configuration being replaced when the same library built it: take
    /// shared state from it so that a reload keeps counters.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use waypost_module_api::filter::*;
    /// use waypost_module_api::prelude::*;
    ///
    /// struct Counting { seen: Arc<AtomicU64> }
    /// impl Filter for Counting {
    ///     fn check(&self, _: usize, _: &Request<'_>) -> Check {
    ///         self.seen.fetch_add(1, Ordering::Relaxed);
    ///         Check::pass("")
    ///     }
    /// }
    ///
    /// struct CountingModule;
    /// impl FilterModule for CountingModule {
    ///     const NAME: &'static str = "counting";
    ///     const DIRECTIVES: &'static [DirectiveSpec] =
    ///         &[DirectiveSpec::plain("count", Contexts::LOCATION, 0, 0)];
    ///     const VARIABLES: &'static [&'static str] = &[];
    ///     type Filter = Counting;
    ///     fn init_filter(
    ///         _: &FilterConfig<'_>,
    ///         previous: Option<&Counting>,
    ///     ) -> Result<Counting, ConfigError> {
    ///         // A reload keeps counting where the old configuration stopped.
    ///         let seen = previous.map(|p| Arc::clone(&p.seen)).unwrap_or_default();
    ///         Ok(Counting { seen })
    ///     }
    /// }
    /// ```
    fn init_filter(
        config: &FilterConfig<'_>,
        previous: Option<&Self::Filter>,
    ) -> Result<Self::Filter, ConfigError>;
}

/// The per-request hook of a filter. It must not block.
///
/// ```
/// use waypost_module_api::filter::{Check, Filter};
/// use waypost_module_api::{Rejection, Request};
///
/// /// Refuses methods other than GET and HEAD.
/// struct ReadOnly;
/// impl Filter for ReadOnly {
///     fn check(&self, _scope: usize, request: &Request<'_>) -> Check {
///         match request.method() {
///             "GET" | "HEAD" => Check::pass(""),
///             _ => {
///                 let refusal = Rejection::new(405, "", "").with_header("Allow", "GET, HEAD");
///                 Check::reject(refusal, "REJECTED")
///             }
///         }
///     }
/// }
/// ```
pub trait Filter: Send + Sync + 'static {
    /// Decides for a request in scope `scope` (an index into
    /// [`FilterConfig::scopes`]). Called only where the module has
    /// directives in effect.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waypost_module_api::filter::{Check, Filter};
    /// use waypost_module_api::Request;
    ///
    /// /// `delay_all MS;`: each scope's delay, read at `init_filter`.
    /// struct DelayAll { delays: Vec<Option<Duration>> }
    /// impl Filter for DelayAll {
    ///     fn check(&self, scope: usize, _: &Request<'_>) -> Check {
    ///         match self.delays[scope] {
    ///             Some(wait) => Check::delay(wait, "DELAYED"),
    ///             None => Check::pass("PASSED"),
    ///         }
    ///     }
    /// }
    /// ```
    fn check(&self, scope: usize, request: &Request<'_>) -> Check;
}

/// A filter's decision and the value of its variable.
///
/// ```
/// use waypost_module_api::filter::Check;
/// let c = Check::delay(std::time::Duration::from_millis(50), "DELAYED");
/// assert_eq!(c.variable, "DELAYED");
/// ```
pub struct Check {
    /// What happens to the request.
    pub action: Action,
    /// The value of the module's first variable for this request.
    pub variable: &'static str,
}

/// What happens to a request.
///
/// ```
/// use waypost_module_api::filter::{Action, Check};
/// let check = Check::delay(std::time::Duration::from_millis(5), "DELAYED");
/// assert!(matches!(check.action, Action::Delay(wait) if wait.as_millis() == 5));
/// ```
pub enum Action {
    /// It goes on.
    Pass,
    /// It goes on after this wait (a timer; no thread waits).
    Delay(Duration),
    /// It is answered with this.
    Reject(Rejection),
}

impl Check {
    /// The request goes on.
    ///
    /// ```
    /// use waypost_module_api::filter::{Action, Check};
    /// let check = Check::pass("PASSED");
    /// assert!(matches!(check.action, Action::Pass));
    /// assert_eq!(check.variable, "PASSED");
    /// ```
    pub fn pass(variable: &'static str) -> Check {
        Check {
            action: Action::Pass,
            variable,
        }
    }

    /// The request goes on after `wait`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waypost_module_api::filter::Check;
    /// // Over the rate but within `burst`: serve it later, as `limit_req` does.
    /// let check = Check::delay(Duration::from_millis(200), "DELAYED");
    /// assert_eq!(check.variable, "DELAYED");
    /// ```
    pub fn delay(wait: Duration, variable: &'static str) -> Check {
        Check {
            action: Action::Delay(wait),
            variable,
        }
    }

    /// The request is answered with `rejection`.
    ///
    /// ```
    /// use waypost_module_api::filter::{Action, Check};
    /// use waypost_module_api::Rejection;
    /// let check = Check::reject(Rejection::new(503, "", ""), "REJECTED");
    /// assert!(matches!(check.action, Action::Reject(ref r) if r.status == 503));
    /// ```
    pub fn reject(rejection: Rejection, variable: &'static str) -> Check {
        Check {
            action: Action::Reject(rejection),
            variable,
        }
    }
}

/// A filter module's whole configuration.
///
/// ```
/// use waypost_module_api::filter::FilterConfig;
/// use waypost_module_api::ConfigError;
///
/// /// Per scope, whether `deny_all;` is in effect there.
/// fn deny_all(config: &FilterConfig<'_>) -> Result<Vec<bool>, ConfigError> {
///     Ok(config.scopes().map(|s| s.directives().any(|d| d.name() == "deny_all")).collect())
/// }
/// ```
pub struct FilterConfig<'a> {
    raw: &'a InitFilterArgs<'a>,
    ext: Option<&'a FilterExt>,
}

impl<'a> FilterConfig<'a> {
    /// Wraps the raw arguments.
    ///
    /// ```
    /// use std::ffi::c_void;
    /// use abi_stable::std_types::{RResult, RSlice, RStr, RString};
    /// use waypost_module_api::filter::FilterConfig;
    /// use waypost_module_api::{HostApi, InitFilterArgs, LogLevel, ScopeArgs, ScopeKind};
    ///
    /// extern "C" fn log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}
    /// extern "C" fn compile(_: *mut c_void, _: RStr<'_>) -> RResult<u32, RString> {
    ///     RResult::RErr("no templates in this test".into())
    /// }
    /// let scopes = [ScopeArgs {
    ///     kind: ScopeKind::Location,
    ///     name: "/".into(),
    ///     directives: RSlice::from_slice(&[]),
    /// }];
    /// // The arguments a test passes to `init_filter` for one `location /`.
    /// let raw = InitFilterArgs {
    ///     http: RSlice::from_slice(&[]),
    ///     scopes: RSlice::from_slice(&scopes),
    ///     previous: std::ptr::null(),
    ///     workers: 2,
    ///     host: HostApi { log },
    ///     builder: std::ptr::null_mut(),
    ///     compile,
    /// };
    /// let config = FilterConfig::new(&raw);
    /// assert_eq!(config.scopes().next().unwrap().name(), "/");
    /// assert_eq!(config.workers(), 2);
    /// ```
    pub fn new(raw: &'a InitFilterArgs<'a>) -> Self {
        FilterConfig { raw, ext: None }
    }

    /// Wraps the raw arguments and the ABI 1.1 services (what the SDK
    /// hands a filter when the core has them).
    ///
    /// ```
    /// # use waypost_module_api::filter::FilterConfig;
    /// fn plain<'a>(raw: &'a waypost_module_api::InitFilterArgs<'a>) -> FilterConfig<'a> {
    ///     FilterConfig::with_ext(raw, None)
    /// }
    /// ```
    pub fn with_ext(raw: &'a InitFilterArgs<'a>, ext: Option<&'a FilterExt>) -> Self {
        FilterConfig { raw, ext }
    }

    /// Registers a counter exported with the core's metrics as
    /// `waypost_module_NAME_total{module="..",LABEL="VALUE",...}`; the same
    /// name and labels after a reload continue the same count. Without a
    /// core (unit tests) it counts but is exported nowhere.
    ///
    /// ```
    /// # use waypost_module_api::filter::FilterConfig;
    /// # use waypost_module_api::ConfigError;
    /// fn passed(config: &FilterConfig<'_>, zone: &str) -> Result<u64, ConfigError> {
    ///     let c = config.counter("limit_req_passed", "Requests passed.", &[("zone", zone)])?;
    ///     c.inc();
    ///     Ok(c.get())
    /// }
    /// ```
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, ConfigError> {
        self.metric(MetricKind::Counter, name, help, labels)
            .map(Counter::from_cell)
    }

    /// Registers a gauge; see [`FilterConfig::counter`].
    ///
    /// ```
    /// # use waypost_module_api::filter::FilterConfig;
    /// # use waypost_module_api::ConfigError;
    /// fn keys(config: &FilterConfig<'_>) -> Result<(), ConfigError> {
    ///     config.gauge("zone_keys", "Keys held.", &[("zone", "one")])?.set(0);
    ///     Ok(())
    /// }
    /// ```
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, ConfigError> {
        self.metric(MetricKind::Gauge, name, help, labels)
            .map(Gauge::from_cell)
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<&'static crate::abi::MetricCell, ConfigError> {
        register_metric(
            self.ext.map(|e| (e.host, e.builder)),
            kind,
            name,
            help,
            labels,
        )
        .map_err(ConfigError::new)
    }

    /// The module's directives at `http` level, in order.
    ///
    /// ```
    /// use waypost_module_api::filter::FilterConfig;
    /// use waypost_module_api::ConfigError;
    ///
    /// /// The zone names of `limit_req_zone KEY zone=NAME:SIZE rate=R;` lines.
    /// fn zones<'a>(config: &FilterConfig<'a>) -> Result<Vec<&'a str>, ConfigError> {
    ///     config
    ///         .http()
    ///         .filter(|d| d.name() == "limit_req_zone")
    ///         .map(|d| match d.arg(1).strip_prefix("zone=") {
    ///             Some(zone) => Ok(zone.split(':').next().unwrap_or(zone)),
    ///             None => Err(d.error(format!("invalid parameter \"{}\"", d.arg(1)))),
    ///         })
    ///         .collect()
    /// }
    /// ```
    pub fn http(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.raw.http.as_slice().iter().map(Directive::new)
    }

    /// Every location and upstream, in config order.
    ///
    /// ```
    /// use waypost_module_api::filter::FilterConfig;
    ///
    /// /// The names of the scopes where the module has a directive, for a log line.
    /// fn active<'a>(config: &FilterConfig<'a>) -> Vec<&'a str> {
    ///     config.scopes().filter(|s| s.directives().next().is_some()).map(|s| s.name()).collect()
    /// }
    /// ```
    pub fn scopes(&self) -> impl Iterator<Item = Scope<'a>> + 'a {
        self.raw.scopes.as_slice().iter().map(|raw| Scope { raw })
    }

    /// How many worker threads call `check`.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use waypost_module_api::filter::FilterConfig;
    ///
    /// /// One counter per worker thread: no lock shared by all requests.
    /// fn shards(config: &FilterConfig<'_>) -> Vec<Mutex<u64>> {
    ///     (0..config.workers()).map(|_| Mutex::new(0)).collect()
    /// }
    /// ```
    pub fn workers(&self) -> usize {
        self.raw.workers.max(1) as usize
    }

    /// Compiles a template for [`Request::eval`]; the error is nginx's
    /// message for an unknown variable.
    ///
    /// ```
    /// use waypost_module_api::filter::FilterConfig;
    /// use waypost_module_api::{ConfigError, Template};
    ///
    /// /// The key of `limit_req_zone KEY ...`, compiled once per configuration.
    /// fn key(config: &FilterConfig<'_>) -> Result<Option<Template>, ConfigError> {
    ///     match config.http().find(|d| d.name() == "limit_req_zone") {
    ///         Some(d) => config.compile(d.arg(0)).map(Some).map_err(|e| d.error(e)),
    ///         None => Ok(None),
    ///     }
    /// }
    /// ```
    pub fn compile(&self, text: &str) -> Result<Template, String> {
        match (self.raw.compile)(self.raw.builder, RStr::from_str(text)) {
            RResult::ROk(id) => Ok(Template(id)),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }
}

/// A location or upstream and the module's directives in effect there.
///
/// ```
/// use waypost_module_api::filter::Scope;
///
/// /// `limit_req zone=NAME`: the zone a scope uses, if any.
/// fn zone<'a>(scope: &Scope<'a>) -> Option<&'a str> {
///     scope.directives().find(|d| d.name() == "limit_req")?.arg(0).strip_prefix("zone=")
/// }
/// ```
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    raw: &'a ScopeArgs<'a>,
}

impl<'a> Scope<'a> {
    /// Location or upstream.
    ///
    /// ```
    /// use waypost_module_api::filter::Scope;
    /// use waypost_module_api::{ConfigError, ScopeKind};
    ///
    /// /// A directive that only makes sense in a `location`.
    /// fn check(scope: &Scope<'_>) -> Result<(), ConfigError> {
    ///     match (scope.kind(), scope.directives().next()) {
    ///         (ScopeKind::Upstream, Some(d)) => {
    ///             Err(d.error("\"deny_all\" directive is not allowed here"))
    ///         }
    ///         _ => Ok(()),
    ///     }
    /// }
    /// ```
    pub fn kind(&self) -> ScopeKind {
        self.raw.kind
    }

    /// The location's path or the upstream's name.
    ///
    /// ```
    /// use waypost_module_api::filter::Scope;
    /// use waypost_module_api::{sdk::log, LogLevel};
    ///
    /// fn report(scope: &Scope<'_>) {
    ///     log::<()>(LogLevel::Info, &format!("rate limited: {}", scope.name()));
    /// }
    /// ```
    pub fn name(&self) -> &'a str {
        self.raw.name.as_str()
    }

    /// The module's directives in effect, in order.
    ///
    /// ```
    /// use waypost_module_api::filter::Scope;
    ///
    /// /// `limit_req ... nodelay;`
    /// fn nodelay(scope: &Scope<'_>) -> bool {
    ///     scope.directives().any(|d| d.args().iter().any(|a| a.as_str() == "nodelay"))
    /// }
    /// ```
    pub fn directives(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.raw.directives.as_slice().iter().map(Directive::new)
    }
}

impl<'a> Directive<'a> {
    /// Wraps a raw directive.
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
    /// // `raw` is `hash $request_uri consistent;` as the core passes it.
    /// let d = Directive::new(&raw);
    /// assert_eq!((d.name(), d.arg(0)), ("hash", "$request_uri"));
    /// ```
    pub fn new(raw: &'a DirectiveArgs<'a>) -> Self {
        Directive::from_raw(raw)
    }
}

/// The C shims for a filter module, instantiated by
/// [`export_filter!`](crate::export_filter).
///
/// ```
/// # use waypost_module_api::prelude::*;
/// # use waypost_module_api::filter::*;
/// # struct DenyAll;
/// # impl Filter for DenyAll {
/// #     fn check(&self, _: usize, _: &Request<'_>) -> Check {
/// #         Check::reject(Rejection::new(403, "", ""), "DENIED")
/// #     }
/// # }
/// # struct DenyAllModule;
/// # impl FilterModule for DenyAllModule {
/// #     const NAME: &'static str = "deny_all";
/// #     const DIRECTIVES: &'static [DirectiveSpec] =
/// #         &[DirectiveSpec::plain("deny_all", Contexts::LOCATION, 0, 0)];
/// #     const VARIABLES: &'static [&'static str] = &["deny_all_status"];
/// #     type Filter = DenyAll;
/// #     fn init_filter(_: &FilterConfig<'_>, _: Option<&DenyAll>) -> Result<DenyAll, ConfigError> {
/// #         Ok(DenyAll)
/// #     }
/// # }
/// // `DenyAllModule` (hidden above) is a filter module.
/// // What `export_filter!(DenyAllModule)` exports: a root module with `init_filter`.
/// let root = FilterShims::<DenyAllModule>::root_module();
/// assert!(root.init_filter().is_some());
/// ```
pub struct FilterShims<M>(std::marker::PhantomData<M>);

impl<M: FilterModule> FilterShims<M> {
    const VTABLE: FilterVTable = FilterVTable {
        check: Self::check,
        drop_filter: Self::drop_filter,
    };

    /// The root module value the library exports.
    ///
    /// ```
    /// # use waypost_module_api::prelude::*;
    /// # use waypost_module_api::filter::*;
    /// # struct DenyAll;
    /// # impl Filter for DenyAll {
    /// #     fn check(&self, _: usize, _: &Request<'_>) -> Check {
    /// #         Check::reject(Rejection::new(403, "", ""), "DENIED")
    /// #     }
    /// # }
    /// # struct DenyAllModule;
    /// # impl FilterModule for DenyAllModule {
    /// #     const NAME: &'static str = "deny_all";
    /// #     const DIRECTIVES: &'static [DirectiveSpec] =
    /// #         &[DirectiveSpec::plain("deny_all", Contexts::LOCATION, 0, 0)];
    /// #     const VARIABLES: &'static [&'static str] = &["deny_all_status"];
    /// #     type Filter = DenyAll;
    /// #     fn init_filter(_: &FilterConfig<'_>, _: Option<&DenyAll>) -> Result<DenyAll, ConfigError> {
    /// #         Ok(DenyAll)
    /// #     }
    /// # }
    /// // `DenyAllModule` (hidden above) is a filter module.
    /// let root = FilterShims::<DenyAllModule>::root_module();
    /// let info = (root.info())();
    /// assert_eq!(info.name.as_str(), "deny_all");
    /// assert_eq!(info.variables[0].as_str(), "deny_all_status");
    /// ```
    pub fn root_module() -> ModuleRef {
        RawModule {
            abi_version: ABI_VERSION,
            info: Self::info,
            init_upstream: Self::init_upstream,
            init_filter: Some(Self::init_filter),
            init_upstream_ext: None,
            init_filter_ext: Some(Self::init_filter_ext),
        }
        .leak_into_prefix()
    }

    extern "C" fn info() -> ModuleInfo {
        install_panic_hook();
        // Called once per load: the leak is bounded by the libraries loaded.
        let variables: &'static [RStr<'static>] = Box::leak(
            M::VARIABLES
                .iter()
                .map(|v| RStr::from_str(v))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        ModuleInfo {
            name: RStr::from_str(M::NAME),
            directives: RSlice::from_slice(M::DIRECTIVES),
            variables: RSlice::from_slice(variables),
        }
    }

    extern "C" fn init_upstream(_: &InitUpstreamArgs<'_>) -> RResult<UpstreamObject, ConfigError> {
        RResult::RErr(ConfigError::new(format!(
            "module \"{}\" is not a balancer",
            M::NAME
        )))
    }

    /// The ABI 1.0 entry: a core without the 1.1 services (metrics are then
    /// kept but not exported).
    extern "C" fn init_filter(args: &InitFilterArgs<'_>) -> RResult<FilterObject, ConfigError> {
        Self::init(args, None)
    }

    extern "C" fn init_filter_ext(
        args: &InitFilterArgs<'_>,
        ext: &FilterExt,
    ) -> RResult<FilterObject, ConfigError> {
        let _ = HOST_EXT.set(ext.host);
        Self::init(args, Some(ext))
    }

    fn init(
        args: &InitFilterArgs<'_>,
        ext: Option<&FilterExt>,
    ) -> RResult<FilterObject, ConfigError> {
        let _ = HOST.set(args.host);
        let _ = crate::sdk::NAME.set(M::NAME);
        install_panic_hook();
        // SAFETY: the core passes the previous object only when this same
        // library built it, so it is an M::Filter.
        let previous = unsafe { (args.previous as *const M::Filter).as_ref() };
        match barrier(|| M::init_filter(&FilterConfig::with_ext(args, ext), previous)) {
            Ok(Ok(filter)) => RResult::ROk(FilterObject {
                this: Box::into_raw(Box::new(filter)) as *mut c_void,
                vtable: &Self::VTABLE,
            }),
            Ok(Err(e)) => RResult::RErr(e),
            Err(caught) => RResult::RErr(ConfigError::new(
                panicked(M::NAME, "init_filter", &caught).into_string(),
            )),
        }
    }

    unsafe extern "C" fn check(
        this: *const c_void,
        scope: u32,
        request: &RequestView<'_>,
    ) -> FilterResult {
        let filter = &*(this as *const M::Filter);
        match barrier(|| filter.check(scope as usize, &Request::new(request))) {
            Ok(check) => FilterResult {
                action: match check.action {
                    Action::Pass => FilterAction::Pass,
                    Action::Delay(wait) => {
                        FilterAction::Delay(wait.as_millis().min(u128::from(u64::MAX)) as u64)
                    }
                    Action::Reject(r) => FilterAction::Reject(r),
                },
                variable: RStr::from_str(check.variable),
            },
            Err(caught) => FilterResult {
                action: FilterAction::Error(panicked(M::NAME, "check", &caught)),
                variable: RStr::from_str(""),
            },
        }
    }

    unsafe extern "C" fn drop_filter(this: *mut c_void) {
        let _ = barrier(|| drop(Box::from_raw(this as *mut M::Filter)));
    }
}

/// Exports a [`FilterModule`] from a `cdylib` crate, as
/// [`export_module!`](crate::export_module) does for a balancer.
///
/// ```
/// # use waypost_module_api::prelude::*;
/// # use waypost_module_api::filter::*;
/// # struct DenyAll;
/// # impl Filter for DenyAll {
/// #     fn check(&self, _: usize, _: &Request<'_>) -> Check { Check::pass("") }
/// # }
/// # struct DenyAllModule;
/// # impl FilterModule for DenyAllModule {
/// #     const NAME: &'static str = "deny_all";
/// #     const DIRECTIVES: &'static [DirectiveSpec] = &[];
/// #     const VARIABLES: &'static [&'static str] = &[];
/// #     type Filter = DenyAll;
/// #     fn init_filter(_: &FilterConfig<'_>, _: Option<&DenyAll>) -> Result<DenyAll, ConfigError> {
/// #         Ok(DenyAll)
/// #     }
/// # }
/// // `DenyAllModule` (hidden above) is a filter module.
/// // At the root of the module's cdylib crate:
/// waypost_module_api::export_filter!(DenyAllModule);
/// # fn main() {
/// assert_eq!(waypost_abi_version, waypost_module_api::ABI_VERSION);
/// # }
/// ```
#[macro_export]
macro_rules! export_filter {
    ($module:ty) => {
        $crate::__export_root!($crate::filter::FilterShims::<$module>::root_module);
    };
}
