//! Filter modules in the runtime: one object per module per configuration
//! (built by its `init_filter`), and the scopes (locations, upstreams) where
//! its directives apply. A request runs each filter that applies to it once.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice, RStr};
use waypost_module_api::{
    DirectiveArgs, FilterObject, FilterResult, HostApi, InitFilterArgs, RequestView, ScopeArgs,
    ScopeKind,
};

use crate::conf::model::{Config, ModuleDirective};
use crate::conf::syntax::Loc;
use crate::conf::ConfError;
use crate::modules::loader::LoadedModule;
use crate::runtime::build::{host_compile, host_log, TemplateBuilder};
use crate::vars::Template;

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
    pub fn check(&self, scope: u32, request: &RequestView<'_>) -> FilterResult {
        // SAFETY: `this` belongs to this vtable; the view lives for the call.
        unsafe { (self.object.vtable.check)(self.object.this, scope, request) }
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
        let dirs: Vec<&ModuleDirective> = all.iter().filter(|d| d.module == module).collect();
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
    let mut built = Built {
        filters: Vec::new(),
        locations: vec![Vec::new(); locations.len()],
        upstreams: vec![Vec::new(); upstreams.len()],
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
        let scopes_owned: Vec<(ScopeKind, String, Owned<'_>)> = config
            .http
            .servers
            .iter()
            .flat_map(|s| {
                s.locations.iter().map(|l| {
                    (
                        ScopeKind::Location,
                        l.path.clone(),
                        Owned::new(&l.filters, m),
                    )
                })
            })
            .chain(config.http.upstreams.iter().map(|u| {
                (
                    ScopeKind::Upstream,
                    u.name.clone(),
                    Owned::new(&u.filters, m),
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
        };
        let init_args = InitFilterArgs {
            http: RSlice::from_slice(&http_args),
            scopes: RSlice::from_slice(&scopes),
            previous: prev.map_or(std::ptr::null(), |f| f.object.this as *const c_void),
            workers,
            host: HostApi { log: host_log },
            builder: &mut templates as *mut TemplateBuilder as *mut c_void,
            compile: host_compile,
        };
        let object = match init(&init_args) {
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
            if used(dirs) {
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
    }
    Ok(built)
}
