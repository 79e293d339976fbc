//! Filter modules in the runtime: one object per module per configuration
//! (built by its `init_filter`), and the scopes (locations, upstreams) where
//! its directives apply. A request runs each filter that applies to it once.
//!
//! A line a filter logs while it checks a request is the request's line,
//! as nginx writes it: the connection number, the message, then
//! `, client: ..., server: ..., request: "...", host: "..."`.

use std::cell::Cell;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice, RStr};
use waypost_module_api::{
    DirectiveArgs, FilterObject, FilterResult, HostApi, InitFilterArgs, LogLevel, RequestView,
    ScopeArgs, ScopeKind,
};

use crate::conf::model::{Action, Config, ModuleDirective};
use crate::conf::syntax::Loc;
use crate::conf::ConfError;
use crate::log::{self, Level};
use crate::modules::loader::LoadedModule;
use crate::runtime::build::{host_compile, host_log, TemplateBuilder};
use crate::vars::Template;

/// The request a filter checks, for the lines it logs meanwhile.
pub struct LogContext<'a> {
    /// The client connection's number (nginx's `*N`).
    pub conn: u64,
    /// Appends nginx's `, client: ..., server: ..., request: "...", host:
    /// "..."` for the request; run only when a line is written.
    pub context: &'a dyn Fn(&mut String),
}

thread_local! {
    /// The request whose `check` runs on this thread, if any.
    static CURRENT: Cell<*const LogContext<'static>> = const { Cell::new(std::ptr::null()) };
}

/// Clears `CURRENT` when the check ends, even by unwinding.
struct Current;

impl Current {
    fn set(cx: &LogContext<'_>) -> Current {
        let p = std::ptr::from_ref(cx).cast::<LogContext<'static>>();
        CURRENT.with(|c| c.set(p));
        Current
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }
}

/// The log callback filter modules get: within a `check`, the line is the
/// request's (nginx's format, no module tag); otherwise as any module's.
extern "C" fn filter_log(level: LogLevel, module: RStr<'_>, message: RStr<'_>) {
    let current = CURRENT.with(Cell::get);
    if current.is_null() {
        return host_log(level, module, message);
    }
    let level = Level::from(level);
    if !log::enabled(level) {
        return;
    }
    // SAFETY: CURRENT points at the LogContext of the check running on
    // this thread; `Filter::check` clears it before the context goes.
    let cx = unsafe { &*current };
    let mut line = String::with_capacity(message.len() + 128);
    line.push_str(message.as_str());
    (cx.context)(&mut line);
    log::write(level, Some(cx.conn), &line);
}

pub struct Filter {
    object: FilterObject,
    pub module: Arc<LoadedModule>,
    /// Templates the module compiled at `init_filter`, by id.
    pub templates: Vec<Template>,
}

// SAFETY: the SDK requires `Filter: Send + Sync` of every filter object,
// and the vtable functions are plain `extern "C"` functions.
unsafe impl Send for Filter {}
unsafe impl Sync for Filter {}

impl Filter {
    /// Runs the module's `check`, timed from `start` (a clock reading
    /// taken just before); what it logs meanwhile is `log`'s request's
    /// line. Also returns the reading at its end.
    pub fn check(
        &self,
        scope: u32,
        request: &RequestView<'_>,
        log: &LogContext<'_>,
        start: crate::clock::Mono,
    ) -> (FilterResult, crate::clock::Mono) {
        let _current = Current::set(log);
        // SAFETY: `this` belongs to this vtable; the view lives for the call.
        crate::modules::watch::timed_from(&self.module, "check", start, || unsafe {
            (self.object.vtable.check)(self.object.this, scope, request)
        })
    }

    /// Whether `other` was built by the same library, so its object may be
    /// handed to this module's `init_filter` as the previous instance.
    fn same_library(&self, module: &LoadedModule) -> bool {
        self.module.sha256 == module.sha256 && self.module.name == module.name
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: built by this vtable's init_filter; dropped once.
        unsafe { (self.object.vtable.drop_filter)(self.object.this) }
    }
}

/// A filter that applies to a location or upstream: the filter's index in
/// `Runtime::filters` and the scope index its `check` expects.
#[derive(Clone, Copy, Debug)]
pub struct Applies {
    pub filter: usize,
    pub scope: u32,
}

/// The filters of a configuration and, per location (servers in order,
/// their locations in order) and per upstream, which apply.
pub struct Built {
    pub filters: Vec<Arc<Filter>>,
    /// Indexed as `Config::http.servers[s].locations[l]`, flattened.
    pub locations: Vec<Vec<Applies>>,
    /// Indexed as `Config::http.upstreams`.
    pub upstreams: Vec<Vec<Applies>>,
    /// Indexed as `Config::http.servers`: for requests no location takes.
    pub servers: Vec<Vec<Applies>>,
}

fn args<'a>(
    dirs: &'a [&'a ModuleDirective],
    files: &'a [String],
    strs: &'a [Vec<RStr<'a>>],
) -> Vec<DirectiveArgs<'a>> {
    dirs.iter()
        .zip(files)
        .zip(strs)
        .map(|((d, file), a)| DirectiveArgs {
            name: RStr::from_str(&d.name),
            args: RSlice::from_slice(a),
            file: RStr::from_str(file),
            line: d.loc.line,
        })
        .collect()
}

/// The owned pieces behind one list of `DirectiveArgs`.
struct Owned<'a> {
    dirs: Vec<&'a ModuleDirective>,
    files: Vec<String>,
    strs: Vec<Vec<RStr<'a>>>,
}

impl<'a> Owned<'a> {
    fn new(all: &'a [ModuleDirective], module: usize) -> Owned<'a> {
        Owned::from_dirs(all.iter().filter(|d| d.module == module).collect())
    }

    /// The module's directives of `inner`, then those of `outer` whose
    /// name `inner` does not have (nginx's merge of one level into the
    /// next, as `Layer::merged`).
    fn merged(
        inner: &'a [ModuleDirective],
        outer: &'a [ModuleDirective],
        module: usize,
    ) -> Owned<'a> {
        let own: Vec<&ModuleDirective> = inner.iter().filter(|d| d.module == module).collect();
        let taken: Vec<&ModuleDirective> = outer
            .iter()
            .filter(|d| d.module == module && !own.iter().any(|o| o.name == d.name))
            .collect();
        Owned::from_dirs(own.into_iter().chain(taken).collect())
    }

    fn from_dirs(dirs: Vec<&'a ModuleDirective>) -> Owned<'a> {
        Owned {
            files: dirs
                .iter()
                .map(|d| d.loc.file.display().to_string())
                .collect(),
            strs: dirs
                .iter()
                .map(|d| d.args.iter().map(|a| RStr::from_str(a)).collect())
                .collect(),
            dirs,
        }
    }
}

/// Runs `init_filter` of every filter module the configuration uses.
pub fn build(config: &Config, previous: &[Arc<Filter>]) -> Result<Built, ConfError> {
    let maps = crate::map::MapNames::new(&config.http.maps, &config.http.user_vars);
    let locations: Vec<&[ModuleDirective]> = config
        .http
        .servers
        .iter()
        .flat_map(|s| s.locations.iter().map(|l| &l.filters[..]))
        .collect();
    let upstreams: Vec<&[ModuleDirective]> = config
        .http
        .upstreams
        .iter()
        .map(|u| &u.filters[..])
        .collect();
    // The upstream each location proxies to.
    let proxied: Vec<Option<usize>> = config
        .http
        .servers
        .iter()
        .flat_map(|s| {
            s.locations.iter().map(|l| match &l.action {
                // (One with variables names its upstream per request.)
                Action::Proxy(p) if p.url.is_none() => Some(p.upstream),
                _ => None,
            })
        })
        .collect();
    let mut built = Built {
        filters: Vec::new(),
        locations: vec![Vec::new(); locations.len()],
        upstreams: vec![Vec::new(); upstreams.len()],
        servers: vec![Vec::new(); config.http.servers.len()],
    };
    let workers = config.main.worker_processes as u32;
    for (m, module) in config.modules.iter().enumerate() {
        let Some(init) = module.module.init_filter() else {
            continue;
        };
        let used = |dirs: &[ModuleDirective]| dirs.iter().any(|d| d.module == m);
        if !used(&config.http.filters)
            && !locations.iter().any(|d| used(d))
            && !upstreams.iter().any(|d| used(d))
        {
            continue;
        }
        let http = Owned::new(&config.http.filters, m);
        let http_args = args(&http.dirs, &http.files, &http.strs);
        // An upstream block is the innermost level for the requests
        // proxied to it: a location's scope is the upstream's directives
        // merged over the location's, so that a request is checked once,
        // against one list of limits, with the location's (and so the
        // server's and http's) settings where the upstream has none.
        let through = |i: usize| proxied[i].filter(|&u| used(upstreams[u]));
        let scopes_owned: Vec<(ScopeKind, String, Owned<'_>)> = config
            .http
            .servers
            .iter()
            .flat_map(|s| s.locations.iter())
            .enumerate()
            .map(|(i, l)| {
                let dirs = match through(i) {
                    Some(u) => Owned::merged(upstreams[u], &l.filters, m),
                    None => Owned::new(&l.filters, m),
                };
                (ScopeKind::Location, l.path.clone(), dirs)
            })
            .chain(config.http.upstreams.iter().map(|u| {
                (
                    ScopeKind::Upstream,
                    u.name.clone(),
                    Owned::new(&u.filters, m),
                )
            }))
            // A server's level, as a location with its settings.
            .chain(config.http.servers.iter().map(|s| {
                (
                    ScopeKind::Location,
                    String::new(),
                    Owned::new(&s.filters, m),
                )
            }))
            .collect();
        let scope_dirs: Vec<Vec<DirectiveArgs<'_>>> = scopes_owned
            .iter()
            .map(|(_, _, o)| args(&o.dirs, &o.files, &o.strs))
            .collect();
        let scopes: Vec<ScopeArgs<'_>> = scopes_owned
            .iter()
            .zip(&scope_dirs)
            .map(|((kind, name, _), dirs)| ScopeArgs {
                kind: *kind,
                name: RStr::from_str(name),
                directives: RSlice::from_slice(dirs),
            })
            .collect();
        let prev = previous.iter().find(|f| f.same_library(module));
        let mut templates = TemplateBuilder {
            templates: Vec::new(),
            maps: &maps,
        };
        let init_args = InitFilterArgs {
            http: RSlice::from_slice(&http_args),
            scopes: RSlice::from_slice(&scopes),
            previous: prev.map_or(std::ptr::null(), |f| f.object.this as *const c_void),
            workers,
            host: HostApi { log: filter_log },
            builder: &mut templates as *mut TemplateBuilder<'_> as *mut c_void,
            compile: host_compile,
        };
        let scope = crate::modules::host::MetricScope {
            module: &module.name,
            upstream: None,
        };
        let ext = waypost_module_api::FilterExt {
            host: *crate::modules::host::HOST_EXT,
            builder: &scope as *const _ as *mut c_void,
        };
        let result = match module.module.init_filter_ext() {
            Some(init_ext) => init_ext(&init_args, &ext),
            None => init(&init_args),
        };
        let object = match result {
            RResult::ROk(object) => object,
            RResult::RErr(e) => {
                // A module error without a place is printed bare, as nginx
                // prints `zero size shared memory zone "x"`.
                if e.line == 0 {
                    return Err(ConfError::bare(e.message.into_string()));
                }
                let loc = Loc {
                    file: Arc::new(PathBuf::from(e.file.as_str())),
                    line: e.line,
                };
                return Err(ConfError::at(e.message.into_string(), loc));
            }
        };
        let index = built.filters.len();
        built.filters.push(Arc::new(Filter {
            object,
            module: module.clone(),
            templates: templates.templates,
        }));
        let n_locations = locations.len();
        for (i, dirs) in locations.iter().enumerate() {
            if used(dirs) || through(i).is_some() {
                built.locations[i].push(Applies {
                    filter: index,
                    scope: i as u32,
                });
            }
        }
        for (u, dirs) in upstreams.iter().enumerate() {
            if used(dirs) {
                built.upstreams[u].push(Applies {
                    filter: index,
                    scope: (n_locations + u) as u32,
                });
            }
        }
        let first_server = n_locations + upstreams.len();
        for (s, server) in config.http.servers.iter().enumerate() {
            if used(&server.filters) {
                built.servers[s].push(Applies {
                    filter: index,
                    scope: (first_server + s) as u32,
                });
            }
        }
    }
    Ok(built)
}
