//! The safe layer for filter modules: code that decides, per request,
//! whether it goes on, waits or is answered at once (a rate limiter).
//!
//! A filter module implements [`FilterModule`] and [`Filter`] and calls
//! [`export_filter!`](crate::export_filter). The core hands
//! `init_filter` every occurrence of the module's directives: those at
//! `http` level, and for each location and upstream the ones in effect
//! there after nginx's inheritance. `check` then runs once per request in
//! each scope where the module's directives apply.

use std::ffi::c_void;
use std::time::Duration;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RSlice, RStr};

use crate::abi::{
    ConfigError, DirectiveArgs, DirectiveSpec, FilterAction, FilterObject, FilterResult,
    FilterVTable, InitFilterArgs, InitUpstreamArgs, Module as RawModule, ModuleInfo, ModuleRef,
    Rejection, RequestView, ScopeArgs, ScopeKind, UpstreamObject, ABI_VERSION,
};
use crate::sdk::{barrier, install_panic_hook, panicked, Directive, Request, Template, HOST};

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
    fn init_filter(
        config: &FilterConfig<'_>,
        previous: Option<&Self::Filter>,
    ) -> Result<Self::Filter, ConfigError>;
}

/// The per-request hook of a filter. It must not block.
pub trait Filter: Send + Sync + 'static {
    /// Decides for a request in scope `scope` (an index into
    /// [`FilterConfig::scopes`]). Called only where the module has
    /// directives in effect.
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
    pub fn pass(variable: &'static str) -> Check {
        Check {
            action: Action::Pass,
            variable,
        }
    }

    /// The request goes on after `wait`.
    pub fn delay(wait: Duration, variable: &'static str) -> Check {
        Check {
            action: Action::Delay(wait),
            variable,
        }
    }

    /// The request is answered with `rejection`.
    pub fn reject(rejection: Rejection, variable: &'static str) -> Check {
        Check {
            action: Action::Reject(rejection),
            variable,
        }
    }
}

/// A filter module's whole configuration.
pub struct FilterConfig<'a> {
    raw: &'a InitFilterArgs<'a>,
}

impl<'a> FilterConfig<'a> {
    /// Wraps the raw arguments.
    pub fn new(raw: &'a InitFilterArgs<'a>) -> Self {
        FilterConfig { raw }
    }

    /// The module's directives at `http` level, in order.
    pub fn http(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.raw.http.as_slice().iter().map(Directive::new)
    }

    /// Every location and upstream, in config order.
    pub fn scopes(&self) -> impl Iterator<Item = Scope<'a>> + 'a {
        self.raw.scopes.as_slice().iter().map(|raw| Scope { raw })
    }

    /// How many worker threads call `check`.
    pub fn workers(&self) -> usize {
        self.raw.workers.max(1) as usize
    }

    /// Compiles a template for [`Request::eval`]; the error is nginx's
    /// message for an unknown variable.
    pub fn compile(&self, text: &str) -> Result<Template, String> {
        match (self.raw.compile)(self.raw.builder, RStr::from_str(text)) {
            RResult::ROk(id) => Ok(Template(id)),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }
}

/// A location or upstream and the module's directives in effect there.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    raw: &'a ScopeArgs<'a>,
}

impl<'a> Scope<'a> {
    /// Location or upstream.
    pub fn kind(&self) -> ScopeKind {
        self.raw.kind
    }

    /// The location's path or the upstream's name.
    pub fn name(&self) -> &'a str {
        self.raw.name.as_str()
    }

    /// The module's directives in effect, in order.
    pub fn directives(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.raw.directives.as_slice().iter().map(Directive::new)
    }
}

impl<'a> Directive<'a> {
    /// Wraps a raw directive.
    pub fn new(raw: &'a DirectiveArgs<'a>) -> Self {
        Directive::from_raw(raw)
    }
}

/// The C shims for a filter module, instantiated by
/// [`export_filter!`](crate::export_filter).
pub struct FilterShims<M>(std::marker::PhantomData<M>);

impl<M: FilterModule> FilterShims<M> {
    const VTABLE: FilterVTable = FilterVTable {
        check: Self::check,
        drop_filter: Self::drop_filter,
    };

    /// The root module value the library exports.
    pub fn root_module() -> ModuleRef {
        RawModule {
            abi_version: ABI_VERSION,
            info: Self::info,
            init_upstream: Self::init_upstream,
            init_filter: Some(Self::init_filter),
            init_upstream_ext: None,
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

    extern "C" fn init_filter(args: &InitFilterArgs<'_>) -> RResult<FilterObject, ConfigError> {
        let _ = HOST.set(args.host);
        let _ = crate::sdk::NAME.set(M::NAME);
        install_panic_hook();
        // SAFETY: the core passes the previous object only when this same
        // library built it, so it is an M::Filter.
        let previous = unsafe { (args.previous as *const M::Filter).as_ref() };
        match barrier(|| M::init_filter(&FilterConfig::new(args), previous)) {
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
/// ```ignore
/// waypost_module_api::export_filter!(LimitReqModule);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($module:ty) => {
        $crate::__export_root!($crate::filter::FilterShims::<$module>::root_module);
    };
}
