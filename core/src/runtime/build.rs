//! Config model to Runtime: each upstream's balancer is built by its
//! module's `init_upstream`, templates and log formats are compiled, and
//! servers are grouped by listening address. All of it at config load, so
//! the request path only reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice, RStr};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use waypost_module_api::{DirectiveArgs, HostApi, InitUpstreamArgs, LogLevel, UpstreamExt};

use super::*;
use crate::conf::model::{self, Config, UpstreamConf};
use crate::conf::syntax::Loc;
use crate::conf::ConfError;
use crate::http::access::{AccessLog, AccessLogs, ConfVar};
use crate::http::charset::Charset;
use crate::http::limit_conn::{Limits, Zone, ZoneState};
use crate::http::outbound::Outbound;
use crate::log::access::Buffering;
use crate::log::Level;
use crate::map::MapNames;
use crate::modules::loader::LoadedModule;
use crate::upstream::{Balancer, PeerSpec, PeerTable, UpstreamParams};

pub(crate) extern "C" fn host_log(level: LogLevel, module: RStr<'_>, message: RStr<'_>) {
    let level = Level::from(level);
    if crate::log::enabled(level) {
        crate::log::write(
            level,
            None,
            &format!("{}: {}", module.as_str(), message.as_str()),
        );
    }
}

/// What `compile` writes into while a module builds one upstream.
pub(crate) struct TemplateBuilder<'a> {
    pub(crate) templates: Vec<crate::vars::Template>,
    /// The configuration's `map` variables, which a module's templates
    /// may use (`hash $mapped`).
    pub(crate) maps: &'a MapNames,
}

pub(crate) extern "C" fn host_compile(
    builder: *mut std::ffi::c_void,
    text: RStr<'_>,
) -> RResult<u32, abi_stable::std_types::RString> {
    // SAFETY: builder is the TemplateBuilder that `upstream` passes for the
    // duration of this init_upstream call, and nothing else touches it then.
    let builder = unsafe { &mut *(builder as *mut TemplateBuilder<'_>) };
    match crate::vars::Template::compile_with(text.as_str(), &|n| builder.maps.var(n)) {
        Ok(t) => {
            builder.templates.push(t);
            RResult::ROk(builder.templates.len() as u32 - 1)
        }
        Err(e) => RResult::RErr(e.to_string().into()),
    }
}

pub fn build(config: Config, previous: Option<&Runtime>) -> Result<Runtime, ConfError> {
    // Filters first: locations and access logs refer to them.
    let filters = super::filter::build(&config, previous.map_or(&[][..], |r| &r.filters[..]))?;
    let workers = config.main.worker_processes;
    let default_balancer = config
        .modules
        .iter()
        .find(|m| m.name == "round_robin")
        .cloned();
    let maps = crate::map::build_all(&config.http.maps, &config.http.user_vars)?;
    let map_names = MapNames::new(&config.http.maps, &config.http.user_vars);
    let limit_zones = limit_conn_zones(
        &config.http.limit_conn_zones,
        previous.map_or(&[][..], |r| &r.limit_conn_zones[..]),
        &map_names,
    )?;
    let cache_zones = cache_zones(
        &config.http.cache_paths,
        previous.map_or(&[][..], |r| &r.cache_zones[..]),
    )?;
    let mut upstreams = Vec::with_capacity(config.http.upstreams.len());
    for up in &config.http.upstreams {
        let module = match up.balancer {
            Some(i) => config.modules[i].clone(),
            None => default_balancer.clone().ok_or_else(|| {
                ConfError::bare(
                    "the default balancer module \"round_robin\" (libwaypost_round_robin.so) was not found; \
                     put it in the modules directory or name it with load_module"
                        .to_owned(),
                )
            })?,
        };
        upstreams.push(Arc::new(upstream(up, module, workers, &map_names)?));
    }
    let known = Upstreams {
        names: config
            .http
            .upstream_names
            .iter()
            .filter_map(|(host, port, i)| {
                Some((host.as_str().into(), *port, upstreams.get(*i)?.clone()))
            })
            .collect(),
        list: &upstreams,
        balancer: default_balancer.clone(),
        workers,
        conf_file: config.files.first().map(|f| f.0.clone()),
        resolvers: Default::default(),
        caches: &cache_zones,
    };
    let mut servers = Vec::with_capacity(config.http.servers.len());
    let mut flat = 0;
    let mut tls = TlsClients::default();
    for (index, s) in config.http.servers.iter().enumerate() {
        let cx = FilterCx {
            built: &filters,
            server: index,
            first_location: flat,
            maps: &map_names,
            limit_zones: &limit_zones,
        };
        servers.push(Arc::new(server(
            s,
            &known,
            &config.http.log_formats,
            &cx,
            &mut tls,
        )?));
        flat += s.locations.len();
    }
    let (mut listens, members) = group_listens(&config.http.servers, &servers, &map_names)?;
    let tls_groups: Vec<_> = listens
        .iter()
        .zip(&members)
        .map(|(g, (members, ssl))| {
            let group = super::tls::Group {
                members,
                default: g.default,
                http2: g.http2,
            };
            (group, *ssl)
        })
        .collect();
    let tls = super::tls::build(&config.http.servers, &tls_groups)?;
    for (g, tls) in listens.iter_mut().zip(tls) {
        g.tls = tls;
    }
    Ok(Runtime {
        maps,
        filters: filters.filters,
        main: config.main,
        upstreams,
        listens,
        files: config.files,
        limit_conn_zones: limit_zones.iter().map(|z| z.state.clone()).collect(),
        cache_zones,
    })
}

/// The `proxy_cache_path` zones: the running configuration's of the same
/// name and size, with its entries (nginx keeps a shared memory zone
/// across a reload), which must then have the same path and levels; or
/// new ones, which read what is on disk.
fn cache_zones(
    confs: &[model::CachePathConf],
    previous: &[Arc<crate::cache::Zone>],
) -> Result<Vec<Arc<crate::cache::Zone>>, ConfError> {
    confs
        .iter()
        .map(|c| {
            let kept = previous
                .iter()
                .find(|z| z.name == c.name && z.keys_size == c.size);
            match kept {
                Some(z) if z.root != c.settings.root => Err(ConfError::bare(format!(
                    "cache \"{}\" uses the \"{}\" cache path while previously it used the \"{}\" cache path",
                    c.name,
                    c.settings.root.display(),
                    z.root.display()
                ))),
                Some(z) if z.levels != c.settings.levels => Err(ConfError::bare(format!(
                    "cache \"{}\" had previously different levels",
                    c.name
                ))),
                Some(z) => {
                    z.update(&c.settings);
                    Ok(z.clone())
                }
                None => crate::cache::Zone::start(&c.name, &c.settings).map_err(|e| {
                    ConfError::bare(format!("cache \"{}\": thread not started: {e}", c.name))
                }),
            }
        })
        .collect()
}

/// A location's `proxy_cache`, its zone found and its values compiled.
fn cache(
    conf: &crate::conf::cache::CacheConf,
    zones: &[Arc<crate::cache::Zone>],
    maps: &MapNames,
) -> Result<crate::http::cache::Cache, ConfError> {
    let zone = zones.iter().find(|z| z.name == conf.zone).ok_or_else(|| {
        ConfError::bare(format!("\"proxy_cache\" zone \"{}\" is unknown", conf.zone))
    })?;
    let compile = |text: &str| {
        crate::vars::Template::compile_with(text, &|n| maps.var(n))
            .map_err(|e| ConfError::bare(e.to_string()))
    };
    let list = |texts: &[String]| {
        texts
            .iter()
            .map(|t| compile(t))
            .collect::<Result<Box<[_]>, _>>()
    };
    Ok(crate::http::cache::Cache {
        zone: zone.clone(),
        key: conf.key.as_deref().map(compile).transpose()?,
        valid: conf.valid.clone().into(),
        methods: conf.methods,
        min_uses: conf.min_uses,
        use_stale: conf.use_stale,
        bypass: list(&conf.bypass)?,
        no_cache: list(&conf.no_cache)?,
        ignore: conf.ignore,
        convert_head: conf.convert_head,
        max_range_offset: conf.max_range_offset,
        lock: conf.lock.then_some((conf.lock_timeout, conf.lock_age)),
    })
}

/// The `limit_conn_zone`s, each with the counts of the running
/// configuration's zone of the same name and size (nginx keeps a shared
/// memory zone across a reload), which must then have the same key.
fn limit_conn_zones(
    confs: &[model::LimitConnZone],
    previous: &[Arc<ZoneState>],
    maps: &MapNames,
) -> Result<Vec<Arc<Zone>>, ConfError> {
    confs
        .iter()
        .map(|z| {
            let kept = previous
                .iter()
                .find(|p| p.name == z.name && p.size == z.size);
            let state = match kept {
                Some(p) if p.key_text != z.key => {
                    return Err(ConfError::bare(format!(
                        "limit_conn_zone \"{}\" uses the \"{}\" key while previously it used the \"{}\" key",
                        z.name, z.key, p.key_text
                    )))
                }
                Some(p) => p.clone(),
                None => Arc::new(ZoneState::new(&z.name, z.size, &z.key)),
            };
            let key = crate::vars::Template::compile_with(&z.key, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?;
            Ok(Arc::new(Zone { state, key }))
        })
        .collect()
}

/// A level's `auth_basic`, its realm compiled.
fn auth_basic(
    conf: Option<&model::AuthBasicConf>,
    maps: &MapNames,
) -> Result<Option<Arc<crate::http::auth_basic::AuthBasic>>, ConfError> {
    let Some(conf) = conf else {
        return Ok(None);
    };
    let realm = crate::vars::Template::compile_with(&conf.realm, &|n| maps.var(n))
        .map_err(|e| ConfError::bare(e.to_string()))?;
    Ok(Some(Arc::new(crate::http::auth_basic::AuthBasic {
        realm,
        file: Arc::new(conf.file.clone()),
    })))
}

/// A level's `auth_request`, its values compiled.
fn auth_request(
    conf: Option<&model::AuthRequestConf>,
    maps: &MapNames,
) -> Result<Option<Arc<crate::http::auth_request::AuthRequest>>, ConfError> {
    conf.map(|c| crate::http::auth_request::AuthRequest::new(c, &|n| maps.var(n)).map(Arc::new))
        .transpose()
}

/// A level's `limit_conn`, its zones found. A zone no `limit_conn_zone`
/// declares is nginx's "zero size shared memory zone", which
/// [`crate::conf::interp::Checked::post_check`] reports (after `-t` has
/// built the runtime, as nginx prints "syntax is ok" first).
fn limits(conf: Option<&model::LimitConnConf>, zones: &[Arc<Zone>]) -> Option<Arc<Limits>> {
    let conf = conf?;
    let list = conf
        .limits
        .iter()
        .filter_map(|(name, n)| {
            zones
                .iter()
                .find(|z| z.state.name == *name)
                .map(|z| (z.clone(), *n))
        })
        .collect();
    Some(Arc::new(Limits {
        list,
        status: conf.status,
        level: conf.level,
        dry_run: conf.dry_run,
    }))
}

/// One upstream's balancer and peer table. Public (hidden) for
/// `core/benches/abi_get.rs`, which measures `get` through the ABI on an
/// upstream built exactly as a config load builds it.
#[doc(hidden)]
pub fn upstream(
    up: &UpstreamConf,
    module: Arc<LoadedModule>,
    workers: usize,
    maps: &MapNames,
) -> Result<Upstream, ConfError> {
    let specs: Vec<PeerSpec> = up
        .peers
        .iter()
        .map(|p| PeerSpec {
            server: p.server.clone(),
            addr: p.addr.clone(),
            weight: p.weight,
            max_fails: p.max_fails,
            fail_timeout: p.fail_timeout,
            max_conns: p.max_conns,
            backup: p.backup,
            down: p.down,
            slow_start_ms: p.slow_start_ms,
        })
        .collect();
    let table = PeerTable::new(&specs);
    let file = up.loc.file.display().to_string();
    let dir_files: Vec<String> = up
        .balancer_directives
        .iter()
        .map(|d| d.loc.file.display().to_string())
        .collect();
    let dir_args: Vec<Vec<RStr<'_>>> = up
        .balancer_directives
        .iter()
        .map(|d| d.args.iter().map(|a| RStr::from_str(a)).collect())
        .collect();
    let directives: Vec<DirectiveArgs<'_>> = up
        .balancer_directives
        .iter()
        .zip(&dir_args)
        .zip(&dir_files)
        .map(|((d, args), file)| DirectiveArgs {
            name: RStr::from_str(&d.name),
            args: RSlice::from_slice(args),
            file: RStr::from_str(file),
            line: d.loc.line,
        })
        .collect();
    let mut templates = TemplateBuilder {
        templates: Vec::new(),
        maps,
    };
    let args = InitUpstreamArgs {
        upstream: RStr::from_str(&up.name),
        file: RStr::from_str(&file),
        line: up.loc.line,
        peers: RSlice::from_slice(&table.configs),
        directives: RSlice::from_slice(&directives),
        workers: workers as u32,
        host: HostApi { log: host_log },
        builder: &mut templates as *mut TemplateBuilder<'_> as *mut std::ffi::c_void,
        compile: host_compile,
    };
    let scope = crate::modules::host::MetricScope {
        module: &module.name,
        upstream: Some(&up.name),
    };
    let ext = UpstreamExt {
        host: *crate::modules::host::HOST_EXT,
        stats: RSlice::from_slice(&table.stats),
        builder: &scope as *const _ as *mut std::ffi::c_void,
    };
    let init = match module.module.init_upstream_ext() {
        Some(init_ext) => init_ext(&args, &ext),
        // Built against ABI 1.0: no per-peer statistics or host services.
        None => (module.module.init_upstream())(&args),
    };
    let object = match init {
        RResult::ROk(object) => object,
        RResult::RErr(e) => {
            let loc = if e.line == 0 {
                up.loc.clone()
            } else {
                Loc {
                    file: Arc::new(PathBuf::from(e.file.as_str())),
                    line: e.line,
                }
            };
            return Err(ConfError::at(e.message.into_string(), loc));
        }
    };
    let balancer = Balancer::new(object, module, &up.name);
    Ok(Upstream::new(
        UpstreamParams {
            name: up.name.clone(),
            keepalive: up.keepalive,
            keepalive_timeout: up.keepalive_timeout,
            keepalive_requests: up.keepalive_requests,
            workers,
            health: up.health.clone(),
        },
        table,
        balancer,
        templates.templates,
    ))
}

/// A `return`, its text compiled (the interpreter checked it).
fn reply(
    r: &model::Return,
    types: &model::ContentTypes,
    style: model::RedirectStyle,
    maps: &MapNames,
) -> Result<Reply, ConfError> {
    let text = match &r.text {
        None => None,
        Some(text) => {
            let template = crate::vars::Template::compile_with(text, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?;
            Some(match template.as_literal() {
                Some(fixed) => ReplyText::Fixed(Bytes::from(fixed.to_owned())),
                None => ReplyText::Template(template),
            })
        }
    };
    Ok(Reply {
        status: r.code,
        text,
        redirect: matches!(r.code, 301 | 302 | 303 | 307 | 308),
        types: crate::http::response::ReplyTypes::new(types),
        style,
    })
}

/// What a server's locations need to know about the filters.
struct FilterCx<'a> {
    built: &'a super::filter::Built,
    /// The server's index.
    server: usize,
    /// The flat index of the server's first location.
    first_location: usize,
    /// The configuration's `map` variables.
    maps: &'a MapNames,
    /// The `limit_conn_zone`s.
    limit_zones: &'a [Arc<Zone>],
}

impl FilterCx<'_> {
    /// A variable a log format may use beyond nginx's: a filter module's
    /// (as the index of its filter), or a map's.
    fn variable(&self, name: &str) -> Option<ConfVar> {
        self.built
            .filters
            .iter()
            .position(|f| f.module.variables.first().is_some_and(|v| v == name))
            .map(ConfVar::Module)
            .or_else(|| self.maps.var(name).map(ConfVar::Var))
    }

    /// The filters a request to location `i` (of this server) runs: the
    /// location's, then the upstream's for modules the location has none
    /// of, so a module limits a request once.
    fn applies(&self, i: usize, upstream: Option<usize>) -> Vec<FilterRun> {
        let mut runs: Vec<FilterRun> = self.built.locations[self.first_location + i]
            .iter()
            .map(|a| self.run(a))
            .collect();
        if let Some(u) = upstream {
            for a in &self.built.upstreams[u] {
                if !runs.iter().any(|r| r.index == a.filter) {
                    runs.push(self.run(a));
                }
            }
        }
        runs
    }

    /// The filters a request no location takes runs: the server level's.
    fn at_server(&self) -> Vec<FilterRun> {
        self.built.servers[self.server]
            .iter()
            .map(|a| self.run(a))
            .collect()
    }

    fn run(&self, a: &super::filter::Applies) -> FilterRun {
        FilterRun {
            filter: self.built.filters[a.filter].clone(),
            scope: a.scope,
            index: a.filter,
        }
    }
}

type LogKey = (PathBuf, String, Option<Buffering>, Option<String>);

/// A level's access logs, compiled; one object per distinct log of the
/// server (`logs`), shared by the levels that write it.
fn access_logs(
    confs: &[model::AccessLogConf],
    logs: &mut HashMap<LogKey, Arc<AccessLog>>,
    formats: &HashMap<String, Vec<String>>,
    filters: &FilterCx<'_>,
) -> Result<Option<Arc<AccessLogs>>, ConfError> {
    let mut list = Vec::with_capacity(confs.len());
    for a in confs {
        let key = (
            a.path.clone(),
            a.format.clone(),
            a.buffer,
            a.condition.clone(),
        );
        if let Some(log) = logs.get(&key) {
            list.push(log.clone());
            continue;
        }
        let log = match formats.get(&a.format) {
            Some(args) => AccessLog::compile(args, a.path.clone(), &|n| filters.variable(n))
                .map_err(|e| ConfError::bare(e.to_string()))?,
            None => AccessLog::combined(a.path.clone()),
        };
        let log = Arc::new(
            log.with_params(a.buffer, a.condition.as_deref(), &|n| filters.variable(n))
                .map_err(|e| ConfError::bare(e.to_string()))?,
        );
        logs.insert(key, log.clone());
        list.push(log);
    }
    Ok(AccessLogs::new(list).map(Arc::new))
}

/// A regex's named groups and the variables they set (the group number,
/// the variable's index): every named group is one (`set_names`).
pub(crate) fn named_vars(regex: &crate::pattern::Regex, maps: &MapNames) -> crate::vars::GroupVars {
    crate::http::rewrite::named_groups(regex)
        .into_iter()
        .filter_map(|(name, group)| match maps.var(&name) {
            Some(crate::vars::Var::User(index, ..)) => Some((group, index)),
            _ => None,
        })
        .collect()
}

/// The configuration's upstreams, for the `proxy_pass` lines.
struct Upstreams<'a> {
    list: &'a [Arc<Upstream>],
    /// What a `proxy_pass` with variables may name.
    names: crate::upstream::dynamic::Names,
    /// Builds the upstreams such a `proxy_pass` makes for addresses.
    balancer: Option<Arc<crate::modules::loader::LoadedModule>>,
    workers: usize,
    conf_file: Option<std::path::PathBuf>,
    /// One per `resolver` line and timeout, shared by the locations.
    resolvers: std::cell::RefCell<
        HashMap<
            (model::ResolverConf, std::time::Duration),
            Arc<crate::upstream::resolver::Resolver>,
        >,
    >,
    /// The `proxy_cache_path` zones, which `proxy_cache` names.
    caches: &'a [Arc<crate::cache::Zone>],
}

/// The `proxy_pass` of location `i` (`l`), or of an `if` in it, with
/// the proxy settings `conf`: the location's redirects style, filters and
/// intercepted errors.
fn location_proxy(
    pass: &model::ProxyPass,
    conf: &model::ProxyConf,
    l: &model::LocationConf,
    i: usize,
    upstreams: &Upstreams<'_>,
    tls: &mut TlsClients,
    filters: &FilterCx<'_>,
) -> Result<Action, ConfError> {
    let mut proxy = proxy(pass, conf, upstreams, tls, filters.maps)?;
    proxy.style = l.redirect_style;
    // The filters of an upstream block apply where it is named as it is.
    let upstream = pass.url.is_none().then_some(pass.upstream);
    proxy.filters = filters.applies(i, upstream);
    proxy.intercept = l.proxy.intercept_errors && !l.error_pages.pages.is_empty();
    Ok(Action::Proxy(proxy))
}

/// The `proxy_pass` of a location's `if` or `limit_except` block: with
/// the location's proxy settings, and its own `proxy_redirect default`
/// where the location has none in effect.
fn block_proxy(
    p: &model::IfProxy,
    l: &model::LocationConf,
    i: usize,
    upstreams: &Upstreams<'_>,
    tls: &mut TlsClients,
    filters: &FilterCx<'_>,
) -> Result<Action, ConfError> {
    // (A pass of the other kind than the location's: its settings.)
    let own = match &l.if_other {
        Some(other) if p.pass.fastcgi != l.proxy.fastcgi.is_some() => &**other,
        _ => &l.proxy,
    };
    let mut conf = std::borrow::Cow::Borrowed(own);
    if !own.redirects_set {
        conf.to_mut().redirects = p.default_redirect.iter().cloned().collect();
    }
    location_proxy(&p.pass, &conf, l, i, upstreams, tls, filters)
}

fn server(
    s: &model::ServerConf,
    upstreams: &Upstreams<'_>,
    formats: &HashMap<String, Vec<String>>,
    filters: &FilterCx<'_>,
    tls: &mut TlsClients,
) -> Result<Server, ConfError> {
    let mut list = Vec::with_capacity(s.locations.len());
    let mut exact = HashMap::new();
    let mut prefixes = Vec::new();
    let mut server_regexes = Vec::new();
    let mut named: Vec<(Box<str>, usize)> = Vec::new();
    let mut logs: HashMap<LogKey, Arc<AccessLog>> = HashMap::new();
    let mut types = crate::http::static_files::TypesCache::default();
    for (i, l) in s.locations.iter().enumerate() {
        let action = match &l.action {
            model::Action::Return(r) => {
                Action::Reply(reply(r, &l.types, l.redirect_style, filters.maps)?)
            }
            model::Action::None => Action::Static,
            model::Action::Metrics => Action::Metrics,
            model::Action::Status => Action::Status,
            model::Action::StubStatus => Action::StubStatus,
            model::Action::EmptyGif => Action::EmptyGif,
            model::Action::Proxy(p) => location_proxy(p, &l.proxy, l, i, upstreams, tls, filters)?,
        };
        let action = if l.internal {
            Action::Internal(Box::new(action))
        } else {
            action
        };
        let access_log = access_logs(&l.access_log, &mut logs, formats, filters)?;
        // A location inside a regex one is reached only through it.
        let mut in_regex = false;
        let mut up = l.parent;
        while let Some(p) = up {
            in_regex |= s.locations[p].regex.is_some();
            up = s.locations[p].parent;
        }
        let regex = match &l.regex {
            Some(r) => Some(crate::vars::regex(&r.pattern, r.caseless).map_err(ConfError::bare)?),
            None => None,
        };
        match (&regex, l.parent) {
            // Never matched by a URI: `error_page` names it.
            _ if l.named => named.push((l.path.as_str().into(), i)),
            (Some(_), None) => server_regexes.push(i),
            // Its parent lists it.
            (Some(_), Some(_)) => {}
            (None, _) if in_regex => {}
            (None, _) if l.exact => {
                exact.insert(l.path.clone(), i);
            }
            (None, _) => prefixes.push((l.path.clone(), i)),
        }
        let regexes = s
            .locations
            .iter()
            .enumerate()
            .filter(|(_, c)| c.parent == Some(i) && c.regex.is_some())
            .map(|(j, _)| j)
            .collect();
        let named = regex
            .as_ref()
            .map(|re| named_vars(re, filters.maps))
            .unwrap_or_default();
        // (Enclosing locations are built before the ones inside them.)
        let mut outer_named = Vec::new();
        let mut up = l.parent;
        while let Some(p) = up {
            if list.get(p).is_some_and(|o: &Location| !o.named.is_empty()) {
                outer_named.push(p);
            }
            up = s.locations[p].parent;
        }
        // The static settings of its `if` and `limit_except` blocks: its
        // own, without its `try_files` (nginx passes it to no block), with
        // a block's `root`.
        let location_types = types.get(&l.types);
        let block_statics = |root: Option<&String>| {
            let conf = match root {
                Some(root) => model::StaticConf {
                    root: root.clone(),
                    alias: None,
                    try_files: None,
                    ..l.statics.clone()
                },
                None => model::StaticConf {
                    try_files: None,
                    ..l.statics.clone()
                },
            };
            crate::http::static_files::Static::new(
                &conf,
                Arc::clone(&location_types),
                l.redirect_style,
                filters.maps,
            )
        };
        let limit_except = match &l.limit_except {
            Some(le) => {
                let action = match (&le.proxy, &l.action) {
                    (Some(p), _) => Some(block_proxy(p, l, i, upstreams, tls, filters)?),
                    (None, model::Action::Proxy(_)) => None,
                    (None, _) => Some(Action::Static),
                };
                let action = action.map(|action| match l.internal {
                    true => Action::Internal(Box::new(action)),
                    false => action,
                });
                let access_log = match &le.access_log {
                    Some(confs) => Some(access_logs(confs, &mut logs, formats, filters)?),
                    None => None,
                };
                let statics = match &l.statics.try_files {
                    Some(_) => Some(block_statics(None)?),
                    None => None,
                };
                Some(Box::new(crate::runtime::LimitExcept {
                    statics,
                    methods: le
                        .methods
                        .iter()
                        .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                        .collect(),
                    access: le.access.clone(),
                    auth_basic: auth_basic(le.auth_basic.as_ref(), filters.maps)?,
                    action,
                    access_log,
                }))
            }
            None => None,
        };
        // (The `if` blocks' `proxy_pass` lines make their TLS clients
        // from inside the script's builder.)
        let if_tls = std::cell::RefCell::new(&mut *tls);
        // An `if` block's `add_header` lines that read the upstream's
        // answer.
        let if_upstream_vars = std::cell::Cell::new(false);
        list.push(Location {
            filters: filters.applies(i, None).into_boxed_slice(),
            named,
            outer_named: outer_named.into_boxed_slice(),
            regex,
            regexes,
            noregex: l.noregex,
            parent: l.parent,
            prefix: l.path.clone(),
            action,
            access_log,
            realip: l.realip.clone(),
            access: l.access.clone(),
            limit_except,
            limit_conn: limits(l.limit_conn.as_ref(), filters.limit_zones),
            auth_basic: auth_basic(l.auth_basic.as_ref(), filters.maps)?,
            satisfy_any: l.satisfy_any,
            auth_request: auth_request(l.auth_request.as_ref(), filters.maps)?,
            mirror: l
                .mirror
                .as_ref()
                .map(|m| Arc::new(crate::http::mirror::Mirror::new(m))),
            outbound: outbound(
                l.limit_rate,
                l.expires.as_ref(),
                &l.add_headers,
                l.msie_padding,
                l.chunked,
                BodyFilters {
                    charset: l.charset.as_ref(),
                    gzip: l.gzip.as_ref(),
                    gunzip: l.gunzip.as_ref(),
                    sub: l.sub_filter.as_ref(),
                },
                filters.maps,
            )?,
            client: l.client,
            error_pages: error_pages(&l.error_pages)?,
            internal: l.internal,
            statics: crate::http::static_files::Static::new(
                &l.statics,
                Arc::clone(&location_types),
                l.redirect_style,
                filters.maps,
            )?,
            script: crate::http::rewrite::Script::new(
                &l.script,
                l.rewrite_log,
                l.redirect_style,
                filters.maps,
                &|r| {
                    Ok(Action::Reply(reply(
                        r,
                        &l.types,
                        l.redirect_style,
                        filters.maps,
                    )?))
                },
                // A location `if`'s own header filters over the location's,
                // and its `proxy_pass` with the location's proxy settings.
                &|h| {
                    let headed = h.add_headers.is_some()
                        || h.expires.is_some()
                        || h.gzip.is_some()
                        || h.limit_rate.is_some();
                    let outbound = match headed {
                        true => Some(outbound(
                            h.limit_rate().unwrap_or(l.limit_rate),
                            h.expires
                                .as_ref()
                                .map_or(l.expires.as_ref(), Option::as_ref),
                            h.add_headers.as_deref().unwrap_or(&l.add_headers),
                            l.msie_padding,
                            l.chunked,
                            BodyFilters {
                                charset: l.charset.as_ref(),
                                gzip: h.gzip.as_ref().map_or(l.gzip.as_ref(), Option::as_ref),
                                gunzip: l.gunzip.as_ref(),
                                sub: l.sub_filter.as_ref(),
                            },
                            filters.maps,
                        )?),
                        false => None,
                    };
                    let handler = match &h.proxy {
                        Some(p) => {
                            let tls = &mut **if_tls.borrow_mut();
                            Some(block_proxy(p, l, i, upstreams, tls, filters)?)
                        }
                        None => None,
                    };
                    if_upstream_vars.set(
                        if_upstream_vars.get()
                            || outbound.as_ref().is_some_and(|o| o.reads_upstream()),
                    );
                    // (Files the location also writes are opened once
                    // more: the writer keeps one per path.)
                    let access_log = h
                        .access_log
                        .as_ref()
                        .map(|confs| access_logs(confs, &mut HashMap::new(), formats, filters))
                        .transpose()?;
                    // Its `root` over the location's `root` or `alias`.
                    let statics = h
                        .root
                        .as_ref()
                        .map(|root| block_statics(Some(root)))
                        .transpose()?;
                    Ok(crate::http::rewrite::IfLevel {
                        outbound,
                        handler,
                        access_log,
                        statics,
                    })
                },
            )?,
            upstream_vars: false,
        });
        if let Some(location) = list.last_mut() {
            location.upstream_vars = location.outbound.reads_upstream() || if_upstream_vars.get();
        }
    }
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let access_log = access_logs(&s.access_log, &mut logs, formats, filters)?;
    Ok(Server {
        access_log,
        // nginx's `server_name` variable and redirect host: the first
        // name, without the leading dot of a `.example.com`.
        name: s
            .names
            .first()
            .map(|n| n.strip_prefix('.').unwrap_or(n).into())
            .unwrap_or_else(|| "".into()),
        ret: s
            .ret
            .as_ref()
            .map(|r| reply(r, &s.types, s.redirect_style, filters.maps))
            .transpose()?,
        realip: s.realip.clone(),
        access: s.access.clone(),
        limit_conn: limits(s.limit_conn.as_ref(), filters.limit_zones),
        filters: filters.at_server().into_boxed_slice(),
        auth_basic: auth_basic(s.auth_basic.as_ref(), filters.maps)?,
        satisfy_any: s.satisfy_any,
        auth_request: auth_request(s.auth_request.as_ref(), filters.maps)?,
        mirror: s
            .mirror
            .as_ref()
            .map(|m| Arc::new(crate::http::mirror::Mirror::new(m))),
        merge_slashes: s.merge_slashes,
        outbound: outbound(
            s.limit_rate,
            s.expires.as_ref(),
            &s.add_headers,
            s.msie_padding,
            s.chunked,
            BodyFilters {
                charset: s.charset.as_ref(),
                gzip: s.gzip.as_ref(),
                gunzip: s.gunzip.as_ref(),
                sub: s.sub_filter.as_ref(),
            },
            filters.maps,
        )?,
        locations: Locations {
            exact,
            prefixes,
            any_regex: !list.iter().all(|l| l.regex.is_none()),
            regexes: server_regexes.into_boxed_slice(),
            named: named.into_boxed_slice(),
            list,
        },
        script: crate::http::rewrite::Script::new(
            &s.script,
            s.rewrite_log,
            s.redirect_style,
            filters.maps,
            &|r| {
                Ok(Action::Reply(reply(
                    r,
                    &s.types,
                    s.redirect_style,
                    filters.maps,
                )?))
            },
            // (A server's `if` takes no header filters nor handler.)
            &|_| {
                Err(ConfError::bare(
                    "header filters in a server's \"if\"".to_owned(),
                ))
            },
        )?,
        statics: crate::http::static_files::Static::new(
            &s.statics,
            types.get(&s.types),
            s.redirect_style,
            filters.maps,
        )?,
        keepalive_timeout: s.keepalive_timeout,
        keepalive_requests: s.keepalive_requests,
        keepalive_time: s.keepalive_time,
        client: s.client,
        http2: s.http2,
        error_pages: error_pages(&s.error_pages)?,
    })
}

/// The TLS client configurations of one load, by their settings: the
/// trusted certificates (by identity: a file is read once), whether they
/// are verified, and SNI. Locations with the same settings share one,
/// and with it its session cache.
#[derive(Default)]
struct TlsClients {
    built: HashMap<TlsClientKey, Arc<crate::upstream::tls::TlsClient>>,
    /// `proxy_ssl_certificate` pairs read, each once.
    certificates:
        HashMap<(std::path::PathBuf, std::path::PathBuf), Arc<rustls::sign::CertifiedKey>>,
}

/// The settings that make one client configuration: the trusted
/// certificates (by identity), verification, SNI, the client certificate
/// (by its files), TLS 1.2, TLS 1.3 and session reuse.
type TlsClientKey = (
    usize,
    Option<std::path::PathBuf>,
    bool,
    bool,
    Option<(std::path::PathBuf, std::path::PathBuf)>,
    bool,
    bool,
    bool,
    Option<Vec<&'static str>>,
);

impl TlsClients {
    fn get(
        &mut self,
        ssl: &model::ProxySsl,
    ) -> Result<Arc<crate::upstream::tls::TlsClient>, ConfError> {
        let trusted = ssl.trusted.as_ref().filter(|_| ssl.verify);
        let files = ssl
            .client_cert
            .as_ref()
            .map(|c| (c.cert.clone(), c.key.clone()));
        let crl = ssl.crl.as_ref().filter(|_| ssl.verify);
        let key = (
            trusted.map_or(0, |t| Arc::as_ptr(t) as usize),
            crl.map(|(path, _)| path.clone()),
            ssl.verify,
            ssl.server_name,
            files.clone(),
            ssl.tls12,
            ssl.tls13,
            ssl.session_reuse,
            ssl.ciphers.clone(),
        );
        if let Some(client) = self.built.get(&key) {
            return Ok(client.clone());
        }
        let certificate = match (&ssl.client_cert, files) {
            (Some(conf), Some(files)) => Some(match self.certificates.get(&files) {
                Some(c) => c.clone(),
                None => {
                    let provider = rustls::crypto::ring::default_provider();
                    let pair = Arc::new(crate::runtime::tls::load_pair(conf, &provider)?);
                    self.certificates.insert(files, pair.clone());
                    pair
                }
            }),
            _ => None,
        };
        let options = crate::upstream::tls::ClientOptions {
            certificate,
            tls12: ssl.tls12,
            tls13: ssl.tls13,
            session_reuse: ssl.session_reuse,
            ciphers: ssl.ciphers.clone(),
            crls: crl.map(|(_, lists)| lists.to_vec()),
        };
        let client = Arc::new(
            crate::upstream::tls::TlsClient::new(trusted.cloned(), ssl.server_name, options)
                .map_err(ConfError::bare)?,
        );
        self.built.insert(key, client.clone());
        Ok(client)
    }
}

/// An `https://` proxy_pass's TLS: the shared client configuration and
/// the name, `proxy_ssl_name` or the upstream's host.
fn proxy_tls(
    p: &model::ProxyPass,
    conf: &model::ProxyConf,
    clients: &mut TlsClients,
    maps: &MapNames,
) -> Result<Option<ProxyTls>, ConfError> {
    if !p.tls {
        return Ok(None);
    }
    let client = clients.get(&conf.ssl)?;
    // With variables in `proxy_pass`, the host each request's value gives.
    let host = match p.url {
        None => p.host.as_str(),
        Some(_) => "$proxy_host",
    };
    let written = conf.ssl.name.as_deref().unwrap_or(host);
    let template = crate::vars::Template::compile_with(written, &|n| maps.var(n))
        .map_err(|e| ConfError::bare(e.to_string()))?;
    let name = match template.as_literal() {
        Some(text) => TlsName::Fixed(Arc::from(crate::upstream::tls::strip_port(text))),
        None => TlsName::Template(template),
    };
    Ok(Some(ProxyTls { client, name }))
}

/// A header value with `$proxy_host` and `$proxy_port` of a fixed
/// `proxy_pass` written in (the value is checked already: one that does
/// not scan stays as it is, for the compiler's message).
fn with_proxy_name(value: &str, p: &model::ProxyPass) -> String {
    use crate::vars::Piece;
    let Ok(pieces) = crate::vars::scan(value) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(value.len());
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var("proxy_host") => out.push_str(&p.host),
            Piece::Var("proxy_port") => out.push_str(&p.port),
            Piece::Var(name) => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
            Piece::Capture(n) => {
                out.push('$');
                out.push(char::from(b'0' + n));
            }
        }
    }
    out
}

/// The configured proxy headers, then nginx's defaults not configured
/// (`ngx_http_proxy_init_headers`: its order, in which they are sent).
fn proxy(
    p: &model::ProxyPass,
    conf: &model::ProxyConf,
    upstreams: &Upstreams<'_>,
    tls: &mut TlsClients,
    maps: &MapNames,
) -> Result<Proxy, ConfError> {
    // Each line, a name set twice too (nginx sends both).
    let mut set: Vec<(String, String)> = conf.set_headers.clone();
    let defaults = if p.fastcgi {
        &[][..]
    } else {
        &[("Host", "$proxy_host"), ("Connection", "close")][..]
    };
    for &(name, value) in defaults {
        if !set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            set.push((name.into(), value.into()));
        }
    }
    let mut headers = Vec::with_capacity(set.len());
    for (spelled, value) in set {
        let name = HeaderName::from_bytes(spelled.as_bytes())
            .map_err(|_| ConfError::bare(format!("invalid header name \"{spelled}\"")))?;
        // `$proxy_host` is known now, unless variables make it; with it
        // substituted most values are fixed and cost nothing per request.
        let value = match p.url {
            None => with_proxy_name(&value, p),
            Some(_) => value,
        };
        let source = header_source(&name, &value, &|n| maps.var(n))?;
        headers.push(SetHeader {
            name,
            spelled: spelled.into(),
            source,
        });
    }
    let (upstream, dynamic) = match &p.url {
        None => {
            let upstream = upstreams.list.get(p.upstream).ok_or_else(|| {
                ConfError::bare(format!("no upstream for \"proxy_pass\" to \"{}\"", p.host))
            })?;
            (Some(upstream.clone()), None)
        }
        Some(url) => (
            None,
            Some(Box::new(dynamic_pass(
                url, p.fastcgi, conf, upstreams, maps,
            )?)),
        ),
    };
    let tries = upstream.as_ref().map_or(0, |u| {
        crate::runtime::capped_tries(u.tries, conf.next_upstream_tries)
    });
    Ok(Proxy {
        filters: Vec::new(),
        upstream,
        dynamic,
        tries_cap: conf.next_upstream_tries,
        host: p.host.clone(),
        port: p.port.clone(),
        uri: p.uri.clone(),
        headers,
        http11: conf.http11,
        next_upstream: conf.next_upstream,
        tries,
        next_upstream_timeout: conf.next_upstream_timeout,
        connect_timeout: conf.connect_timeout,
        send_timeout: conf.send_timeout,
        read_timeout: conf.read_timeout,
        tls: proxy_tls(p, conf, tls, maps)?,
        redirects: redirects(conf, maps)?,
        style: model::RedirectStyle::default(),
        cookies: crate::http::cookie::CookieRules::new(
            &conf.cookie_domains,
            &conf.cookie_paths,
            &conf.cookie_flags,
            maps,
        )?
        .map(Box::new),
        header_rules: match &conf.fastcgi {
            Some(_) => Some(crate::http::upstream_h1::HeaderRules::fastcgi(
                &conf.hide_headers,
                &conf.pass_headers,
            )),
            None => {
                crate::http::upstream_h1::HeaderRules::new(&conf.hide_headers, &conf.pass_headers)
            }
        }
        .map(Box::new),
        shape: shape(conf, maps)?,
        intercept: false,
        ignore_client_abort: conf.ignore_client_abort,
        buffering: conf.buffering,
        socket: socket(conf, maps)?,
        cache: conf
            .cache
            .as_ref()
            .map(|c| cache(c, upstreams.caches, maps).map(Box::new))
            .transpose()?,
        fastcgi: conf
            .fastcgi
            .as_deref()
            .map(|f| fastcgi(f, maps).map(Box::new))
            .transpose()?,
    })
}

/// A `fastcgi_pass` location's params and names, compiled.
fn fastcgi(
    conf: &model::FastCgiConf,
    maps: &MapNames,
) -> Result<crate::http::fastcgi::FastCgi, ConfError> {
    let mut params = Vec::with_capacity(conf.params.len());
    let realpath_of = match conf
        .params
        .iter()
        .any(|(_, value, _)| crate::vars::reads_realpath_root(value))
    {
        true => Some(
            crate::vars::Template::compile("$document_root")
                .map_err(|e| ConfError::bare(e.to_string()))?,
        ),
        false => None,
    };
    for (name, value, if_not_empty) in &conf.params {
        params.push(crate::http::fastcgi::Param {
            name: name.as_bytes().into(),
            value: crate::vars::Template::compile_with(value, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?,
            if_not_empty: *if_not_empty,
        });
    }
    let header_params = conf
        .params
        .iter()
        .filter_map(|(name, _, _)| name.strip_prefix("HTTP_"))
        .filter(|rest| !rest.is_empty())
        .map(|rest| rest.as_bytes().into())
        .collect();
    Ok(crate::http::fastcgi::FastCgi {
        params: params.into(),
        header_params,
        keep_conn: conf.keep_conn,
        realpath_of,
    })
}

/// A `proxy_pass` (or `fastcgi_pass`) with variables.
fn dynamic_pass(
    url: &str,
    fastcgi: bool,
    conf: &model::ProxyConf,
    upstreams: &Upstreams<'_>,
    maps: &MapNames,
) -> Result<crate::upstream::dynamic::DynamicPass, ConfError> {
    let resolver = conf.resolver.as_ref().map(|r| {
        let key = (r.clone(), conf.resolver_timeout);
        upstreams
            .resolvers
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(crate::upstream::resolver::Resolver::new(
                    r.clone(),
                    conf.resolver_timeout,
                    upstreams.workers,
                ))
            })
            .clone()
    });
    let template = crate::vars::Template::compile_with(url, &|n| maps.var(n))
        .map_err(|e| ConfError::bare(e.to_string()))?;
    let balancer = upstreams.balancer.clone().ok_or_else(|| {
        ConfError::bare(
            "the default balancer module \"round_robin\" (libwaypost_round_robin.so) was not found; \
             put it in the modules directory or name it with load_module"
                .to_owned(),
        )
    })?;
    let loc = crate::conf::syntax::Loc {
        file: Arc::new(upstreams.conf_file.clone().unwrap_or_default()),
        line: 0,
    };
    Ok(crate::upstream::dynamic::DynamicPass::new(
        template,
        fastcgi,
        resolver,
        upstreams.names.clone(),
        balancer,
        upstreams.workers,
        loc,
    ))
}

/// `proxy_bind` and `proxy_socket_keepalive`; `None` at nginx's defaults.
fn socket(
    conf: &model::ProxyConf,
    maps: &MapNames,
) -> Result<Option<Box<crate::runtime::SocketSettings>>, ConfError> {
    if conf.bind.is_none() && !conf.socket_keepalive {
        return Ok(None);
    }
    let bind = match &conf.bind {
        None => None,
        Some((text, _)) => {
            let template = crate::vars::Template::compile_with(text, &|n| maps.var(n))
                .map_err(|e| ConfError::bare(e.to_string()))?;
            Some(match template.as_literal() {
                Some(fixed) => {
                    let addr = crate::http::realip::parse_addr_port(fixed.as_bytes())
                        .ok_or_else(|| ConfError::bare(format!("invalid address \"{fixed}\"")))?;
                    crate::runtime::Bind::Fixed(addr, fixed.into())
                }
                None => crate::runtime::Bind::Template(template),
            })
        }
    };
    Ok(Some(Box::new(crate::runtime::SocketSettings {
        bind,
        transparent: conf.bind.as_ref().is_some_and(|b| b.1),
        keepalive: conf.socket_keepalive,
    })))
}

/// A level's `error_page` lines; `None` for none.
fn error_pages(conf: &model::ErrorPagesConf) -> Result<Option<Box<ErrorPages>>, ConfError> {
    if conf.pages.is_empty() {
        return Ok(None);
    }
    let mut pages = Vec::with_capacity(conf.pages.len());
    for p in &conf.pages {
        let unsupported = || {
            ConfError::bare(format!(
                "the \"error_page\" URI \"{}\" is not supported",
                p.uri
            ))
        };
        let target = if p.uri.starts_with('/') {
            let target = match &p.args {
                Some(args) => format!("{}?{args}", p.uri),
                None => p.uri.clone(),
            };
            ErrorTarget::Uri(http::uri::PathAndQuery::try_from(target).map_err(|_| unsupported())?)
        } else if p.uri.starts_with('@') {
            ErrorTarget::Named(p.uri.as_str().into())
        } else {
            ErrorTarget::Redirect(HeaderValue::from_str(&p.uri).map_err(|_| unsupported())?)
        };
        pages.push(ErrorPage {
            status: p.status,
            overwrite: p.overwrite,
            target,
        });
    }
    Ok(Some(Box::new(ErrorPages {
        pages: pages.into_boxed_slice(),
        recursive: conf.recursive,
    })))
}

/// `proxy_method` and the other request-shaping settings, compiled;
/// `None` at nginx's defaults.
fn shape(conf: &model::ProxyConf, maps: &MapNames) -> Result<Option<Box<RequestShape>>, ConfError> {
    if conf.method.is_none()
        && conf.set_body.is_none()
        && conf.pass_request_headers
        && conf.pass_request_body
    {
        return Ok(None);
    }
    let compile = |text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                crate::vars::Template::compile_with(t, &|n| maps.var(n))
                    .map_err(|e| ConfError::bare(e.to_string()))
            })
            .transpose()
    };
    Ok(Some(Box::new(RequestShape {
        method: compile(&conf.method)?,
        headers: conf.pass_request_headers,
        body: conf.pass_request_body,
        set_body: compile(&conf.set_body)?,
    })))
}

/// A header's configured value, compiled: most are fixed, and cost
/// nothing per request; an empty one means no header.
fn header_source(
    name: &HeaderName,
    value: &str,
    scope: crate::vars::Scope<'_>,
) -> Result<HeaderSource, ConfError> {
    let template = crate::vars::Template::compile_with(value, scope)
        .map_err(|e| ConfError::bare(e.to_string()))?;
    Ok(match template.as_literal() {
        Some("") => HeaderSource::Fixed(None),
        Some(text) => HeaderSource::Fixed(Some(HeaderValue::from_str(text).map_err(|_| {
            ConfError::bare(format!("invalid value \"{text}\" of header \"{name}\""))
        })?)),
        None => HeaderSource::Template(template),
    })
}

/// A level's header filters and pace (a server's, or a location's).
fn outbound(
    limit_rate: Option<crate::http::h1::LimitRate>,
    expires: Option<&model::ExpiresConf>,
    lines: &[model::AddHeader],
    msie_padding: bool,
    chunked: bool,
    body: BodyFilters<'_>,
    maps: &MapNames,
) -> Result<Outbound, ConfError> {
    Ok(Outbound {
        sub: body.sub.map(|c| sub_filter(c, maps)).transpose()?,
        limit_rate,
        expires: expires.map(|e| expires_rule(e, maps)).transpose()?,
        add_headers: add_headers(lines, maps)?,
        msie_padding,
        chunked,
        charset: body.charset.map(|c| Box::new(Charset::build(c))),
        gzip: gzip(body.gzip)?,
        gunzip: body
            .gunzip
            .map(|c| crate::http::gunzip::Gunzip::build(c).map(Box::new))
            .transpose()?,
    })
}

/// A level's filters that change the body (or its type's charset).
struct BodyFilters<'a> {
    charset: Option<&'a model::CharsetConf>,
    gunzip: Option<&'a model::GzipConf>,
    gzip: Option<&'a model::GzipConf>,
    sub: Option<&'a model::SubFilterConf>,
}

/// A level's `expires`, a value with variables compiled as `add_header`'s
/// (the upstream's answer is there to read).
fn expires_rule(
    conf: &model::ExpiresConf,
    maps: &MapNames,
) -> Result<crate::http::expires::Rule, ConfError> {
    use crate::http::expires::Rule;
    Ok(match conf {
        model::ExpiresConf::Fixed(e) => Rule::Fixed(*e),
        model::ExpiresConf::Var { modified, value } => Rule::Var {
            modified: *modified,
            value: crate::vars::Template::compile_with(value, &|n| {
                maps.var(n).or_else(|| crate::vars::filter_var(n))
            })
            .map_err(|e| ConfError::bare(e.to_string()))?,
        },
    })
}

/// A level's `add_header` lines, their values compiled (most fixed).
fn add_headers(lines: &[model::AddHeader], maps: &MapNames) -> Result<Box<[AddHeader]>, ConfError> {
    lines
        .iter()
        .map(|a| {
            let name = HeaderName::from_bytes(a.name.as_bytes())
                .map_err(|_| ConfError::bare(format!("invalid header name \"{}\"", a.name)))?;
            let value = header_source(&name, &a.value, &|n| {
                maps.var(n).or_else(|| crate::vars::filter_var(n))
            })?;
            // nginx writes the name as the config spells it.
            let spelled = (crate::http::h1::spelled(name.as_str()) != a.name)
                .then(|| std::sync::Arc::from(a.name.as_str()));
            Ok(AddHeader {
                name,
                spelled,
                value,
                always: a.always,
            })
        })
        .collect()
}

/// A level's `sub_filter` lines, compiled.
fn sub_filter(
    conf: &model::SubFilterConf,
    maps: &MapNames,
) -> Result<Box<crate::http::sub_filter::SubFilter>, ConfError> {
    let template = |t: &str| {
        crate::vars::Template::compile_with(t, &|n| maps.var(n))
            .map_err(|e| ConfError::bare(e.to_string()))
    };
    let pairs = conf
        .pairs
        .iter()
        .map(|(find, with)| {
            use crate::http::sub_filter::Text;
            Ok((
                Text::new(template(find)?, true),
                Text::new(template(with)?, false),
            ))
        })
        .collect::<Result<Box<[_]>, ConfError>>()?;
    let types = (!conf.types.iter().any(|t| t == "*")).then(|| conf.types.clone().into());
    Ok(Box::new(crate::http::sub_filter::SubFilter::new(
        pairs,
        conf.once,
        conf.last_modified,
        types,
    )))
}

/// A level's `gzip on` settings, compiled.
fn gzip(conf: Option<&model::GzipConf>) -> Result<Option<Box<crate::http::gzip::Gzip>>, ConfError> {
    conf.map(|c| crate::http::gzip::Gzip::build(c).map(Box::new))
        .transpose()
}

/// The location's `proxy_redirect` rules, in order (checked when read).
fn redirects(conf: &model::ProxyConf, maps: &MapNames) -> Result<Box<[Rewrite]>, ConfError> {
    let template = |t: &str| {
        crate::vars::Template::compile_with(t, &|n| maps.var(n))
            .map_err(|e| ConfError::bare(e.to_string()))
    };
    conf.redirects
        .iter()
        .map(|r| {
            let to = template(&r.to)?;
            if let Some(pattern) = r.from.strip_prefix('~') {
                let (pattern, caseless) = match pattern.strip_prefix('*') {
                    Some(p) => (p, true),
                    None => (pattern, false),
                };
                let re = crate::vars::regex(pattern, caseless).map_err(ConfError::bare)?;
                return Ok(Rewrite::Regex { re, to });
            }
            let from = template(&r.from)?;
            Ok(match (from.as_literal(), to.as_literal()) {
                (Some(from), Some(to)) => Rewrite::Plain {
                    from: from.as_bytes().into(),
                    to: to.as_bytes().into(),
                },
                _ => Rewrite::Complex { from, to },
            })
        })
        .collect()
}

/// The servers of each listening address, with each group's members as
/// indexes into `confs` and whether any `listen` of it said `ssl`.
type Members = Vec<(Vec<usize>, bool)>;

fn group_listens(
    confs: &[model::ServerConf],
    servers: &[Arc<Server>],
    maps: &MapNames,
) -> Result<(Vec<ListenGroup>, Members), ConfError> {
    let mut groups: Vec<ListenGroup> = Vec::new();
    let mut members: Members = Vec::new();
    for (si, s) in confs.iter().enumerate() {
        for l in &s.listens {
            let at = match groups.iter().position(|g| g.addr == l.addr) {
                Some(g) => g,
                None => {
                    groups.push(ListenGroup {
                        addr: l.addr,
                        backlog: l.backlog,
                        sockopts: l.sockopts,
                        servers: Vec::new(),
                        default: 0,
                        tls: None,
                        http2: false,
                        proxy_protocol: false,
                        exact: HashMap::new(),
                        leading: Vec::new(),
                        trailing: Vec::new(),
                        regexes: Vec::new(),
                    });
                    members.push((Vec::new(), false));
                    groups.len() - 1
                }
            };
            // As nginx: one `listen ... ssl` (or `http2`) of an address
            // makes all of it TLS (HTTP/2).
            members[at].0.push(si);
            members[at].1 |= l.ssl;
            let group = &mut groups[at];
            group.http2 |= l.http2;
            group.proxy_protocol |= l.proxy_protocol;
            // The one `listen` of the address with options (nginx refuses
            // a second) sets them, whichever server it is in.
            if l.sockopts != crate::conf::model::SocketOpts::default() || l.backlog != 511 {
                group.sockopts = l.sockopts;
                group.backlog = l.backlog;
            }
            let index = group.servers.len();
            group.servers.push(servers[si].clone());
            if l.default_server {
                if group.default != index
                    && group.servers.len() > 1
                    && default_marked(confs, &group.addr, si)
                {
                    return Err(ConfError::bare(format!(
                        "a duplicate default server for {}",
                        l.addr
                    )));
                }
                group.default = index;
            }
            for name in &s.names {
                if let Some(pattern) = name.strip_prefix('~') {
                    let re = crate::vars::regex(pattern, true).map_err(ConfError::bare)?;
                    let named = named_vars(&re, maps);
                    group.regexes.push((re, index, named));
                } else if let Some(suffix) = name.strip_prefix('*') {
                    group.leading.push((suffix.to_owned(), index, false));
                } else if name.starts_with('.') {
                    group.leading.push((name.clone(), index, true));
                } else if let Some(prefix) = name.strip_suffix('*') {
                    group.trailing.push((prefix.to_owned(), index));
                } else {
                    group.exact.entry(name.clone()).or_insert(index);
                }
            }
        }
    }
    Ok((groups, members))
}

/// Whether a server before `upto` already marked `addr` default_server.
fn default_marked(confs: &[model::ServerConf], addr: &std::net::SocketAddr, upto: usize) -> bool {
    confs[..upto].iter().any(|s| {
        s.listens
            .iter()
            .any(|l| &l.addr == addr && l.default_server)
    })
}

#[cfg(test)]
mod tests {
    use super::with_proxy_name;

    #[test]
    fn proxy_name_written_in() {
        let p = crate::conf::model::ProxyPass {
            host: "u:81".into(),
            port: "81".into(),
            ..crate::conf::model::ProxyPass::dynamic("")
        };
        let p = crate::conf::model::ProxyPass { url: None, ..p };
        assert_eq!(with_proxy_name("$proxy_host", &p), "u:81");
        assert_eq!(
            with_proxy_name("${proxy_host}x:$proxy_host_b$proxy_port$1a", &p),
            "u:81x:${proxy_host_b}81$1a"
        );
        assert_eq!(with_proxy_name("a$host", &p), "a${host}");
    }
}
