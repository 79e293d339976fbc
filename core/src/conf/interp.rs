//! The in-order pass over the syntax tree: checks every directive against
//! the directive table (the core's and the modules'), validates its values
//! and builds the [`Config`] model.
//!
//! nginx checks each directive as soon as it is read, so the first error in
//! file order wins, whether it is a syntax error or a bad value. This pass
//! walks the tree in that same order and only reports the parser's syntax
//! error once everything before it has been checked.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use waypost_module_api::ServerParams;

use crate::conf::directives::{lookup, Ctx, Lookup, Spec};
use crate::conf::model::*;
use crate::conf::syntax::{self, Directive, Loc};
use crate::conf::values::{parse_number, parse_time};
use crate::conf::ConfError;
use crate::log::Level;
use crate::modules::loader::{LoadedModule, Loader};

/// What the interpreter needs from outside: where relative paths start,
/// where shipped modules live, and the module loader.
pub struct Env<'a> {
    pub prefix: &'a Path,
    pub modules_dir: &'a Path,
    pub loader: &'a Loader,
    /// `-g` directives, read before the file as nginx does.
    pub globals: Option<&'a str>,
}

/// Reads and checks the configuration at `path`.
pub fn load(path: &Path, env: &Env<'_>) -> Result<Config, ConfError> {
    let mut interp = Interp::new(env);
    interp.scan_modules();
    let mut files = Vec::new();
    if let Some(globals) = env.globals {
        let parsed = syntax::parse_str(globals, "command line");
        interp.block(&parsed.items, Ctx::Main)?;
        if let Some(e) = parsed.error {
            return Err(ConfError::at(e.message, e.loc));
        }
    }
    let parsed = syntax::parse_file(path);
    files.extend(parsed.files);
    interp.block(&parsed.items, Ctx::Main)?;
    if let Some(e) = parsed.error {
        if e.loc.line == 0 {
            return Err(ConfError::bare(e.message));
        }
        return Err(ConfError::at(e.message, e.loc));
    }
    Ok(Config {
        main: interp.main,
        http: interp.http,
        files,
        modules: interp.modules,
    })
}

/// Settings inherited from http to server to location, nginx's merge.
#[derive(Clone, Default)]
struct Layer {
    set_headers: Option<Vec<(String, String)>>,
    http11: Option<bool>,
    next_upstream: Option<NextUpstream>,
    tries: Option<u32>,
    next_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u64>,
    access_log: Option<Option<AccessLogConf>>,
}

impl Layer {
    fn proxy(&self) -> ProxyConf {
        let d = ProxyConf::default();
        ProxyConf {
            set_headers: self.set_headers.clone().unwrap_or_default(),
            http11: self.http11.unwrap_or(d.http11),
            next_upstream: self.next_upstream.unwrap_or(d.next_upstream),
            next_upstream_tries: self.tries.unwrap_or(d.next_upstream_tries),
            next_upstream_timeout: self.next_timeout.unwrap_or(d.next_upstream_timeout),
            connect_timeout: self.connect_timeout.unwrap_or(d.connect_timeout),
            send_timeout: self.send_timeout.unwrap_or(d.send_timeout),
            read_timeout: self.read_timeout.unwrap_or(d.read_timeout),
        }
    }
}

/// A `proxy_pass` whose upstream is resolved at the end of `http`, once
/// every upstream block is known.
struct PendingPass {
    server: usize,
    location: usize,
    authority: String,
    loc: Loc,
}

struct Interp<'a> {
    env: &'a Env<'a>,
    main: MainConf,
    http: HttpConf,
    modules: Vec<Arc<LoadedModule>>,
    /// Module directive name -> (module index, spec).
    module_directives: HashMap<String, (usize, waypost_module_api::DirectiveSpec)>,
    pending: Vec<PendingPass>,
    seen_http: bool,
}

fn err<T>(message: impl Into<String>, d: &Directive) -> Result<T, ConfError> {
    Err(ConfError::at(message.into(), d.loc.clone()))
}

fn invalid_value<T>(d: &Directive, value: &str) -> Result<T, ConfError> {
    err(
        format!("invalid value \"{value}\" in \"{}\" directive", d.name),
        d,
    )
}

fn time_arg(d: &Directive, i: usize) -> Result<Duration, ConfError> {
    let v = &d.args[i];
    parse_time(v).map_or_else(
        || err(format!("\"{}\" directive invalid value", d.name), d),
        Ok,
    )
}

fn number_arg(d: &Directive, i: usize) -> Result<u64, ConfError> {
    let v = &d.args[i];
    parse_number(v).map_or_else(|| invalid_value(d, v), Ok)
}

impl<'a> Interp<'a> {
    fn new(env: &'a Env<'a>) -> Self {
        Interp {
            env,
            main: MainConf {
                worker_processes: 1,
                pid: env.prefix.join("logs/waypost.pid"),
                error_log: (
                    LogTarget::File(env.prefix.join("logs/error.log")),
                    Level::Error,
                ),
                worker_connections: 512,
            },
            http: HttpConf::default(),
            modules: Vec::new(),
            module_directives: HashMap::new(),
            pending: Vec::new(),
            seen_http: false,
        }
    }

    /// Registers every shipped module of the modules directory, so a plain
    /// nginx `hash` works without `load_module`. A broken file there is
    /// logged and skipped; it only matters if a config uses its directive.
    fn scan_modules(&mut self) {
        for result in self.env.loader.scan_dir(self.env.modules_dir) {
            match result {
                Ok(module) => self.register(module),
                Err(e) => tracing::warn!("{e}, skipped"),
            }
        }
    }

    fn register(&mut self, module: Arc<LoadedModule>) {
        if self.modules.iter().any(|m| Arc::ptr_eq(m, &module)) {
            return;
        }
        let index = self.modules.len();
        for spec in &module.directives {
            self.module_directives
                .insert(spec.name.as_str().to_owned(), (index, *spec));
        }
        self.modules.push(module);
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.env.prefix.join(p)
        }
    }

    /// The table check nginx's `ngx_conf_handler` does for every directive.
    fn check(&self, d: &Directive, ctx: Ctx) -> Result<Spec, ConfError> {
        let extra = self
            .module_directives
            .get(&d.name)
            .map(|(_, spec)| Spec::from_module(spec));
        let spec = match lookup(&d.name, ctx, extra.into_iter()) {
            Lookup::Found(spec) => spec,
            Lookup::NotAllowedHere => {
                return err(format!("\"{}\" directive is not allowed here", d.name), d)
            }
            Lookup::Unknown => return err(format!("unknown directive \"{}\"", d.name), d),
        };
        if !spec.block && d.block.is_some() {
            return err(
                format!("directive \"{}\" is not terminated by \";\"", d.name),
                d,
            );
        }
        if spec.block && d.block.is_none() {
            return err(format!("directive \"{}\" has no opening \"{{\"", d.name), d);
        }
        let n = d.args.len() as u32;
        if n < spec.min || n > spec.max {
            return err(
                format!("invalid number of arguments in \"{}\" directive", d.name),
                d,
            );
        }
        if spec.flag && d.args[0] != "on" && d.args[0] != "off" {
            return err(
                format!(
                    "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                    d.args[0], d.name
                ),
                d,
            );
        }
        Ok(spec)
    }

    fn block(&mut self, items: &[Directive], ctx: Ctx) -> Result<(), ConfError> {
        let mut seen = HashSet::new();
        for d in items {
            self.check(d, ctx)?;
            if is_single(&d.name) && !seen.insert(d.name.as_str()) {
                return err(format!("\"{}\" directive is duplicate", d.name), d);
            }
            match ctx {
                Ctx::Main => self.main_directive(d)?,
                Ctx::Events => self.events_directive(d)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn main_directive(&mut self, d: &Directive) -> Result<(), ConfError> {
        match d.name.as_str() {
            "worker_processes" => {
                self.main.worker_processes = if d.args[0] == "auto" {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    match parse_number(&d.args[0]) {
                        Some(n) if n > 0 => n as usize,
                        _ => return invalid_value(d, &d.args[0]),
                    }
                };
            }
            "pid" => self.main.pid = self.resolve_path(&d.args[0]),
            "error_log" => self.main.error_log = self.error_log(d)?,
            "load_module" => {
                let path = self.resolve_path(&d.args[0]);
                match self.env.loader.load(&path) {
                    Ok(module) => self.register(module),
                    Err(e) => {
                        if let Some(detail) = e.detail() {
                            tracing::debug!("{detail}");
                        }
                        return err(e.to_string(), d);
                    }
                }
            }
            "events" => {
                if let Some(block) = &d.block {
                    self.block(&block.items, Ctx::Events)?;
                }
            }
            "http" => {
                if self.seen_http {
                    return err("\"http\" directive is duplicate", d);
                }
                self.seen_http = true;
                if let Some(block) = &d.block {
                    self.http_block(&block.items)?;
                    if block.complete {
                        self.http_end()?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn events_directive(&mut self, d: &Directive) -> Result<(), ConfError> {
        if d.name == "worker_connections" {
            match parse_number(&d.args[0]) {
                Some(n) if n > 0 => self.main.worker_connections = n as usize,
                _ => return invalid_value(d, &d.args[0]),
            }
        }
        Ok(())
    }

    fn error_log(&self, d: &Directive) -> Result<(LogTarget, Level), ConfError> {
        let target = match d.args[0].as_str() {
            "stderr" => LogTarget::Stderr,
            p => LogTarget::File(self.resolve_path(p)),
        };
        let level = match d.args.get(1) {
            None => Level::Error,
            Some(l) => match Level::parse(l) {
                Some(level) => level,
                None => return invalid_value(d, l),
            },
        };
        Ok((target, level))
    }

    fn http_block(&mut self, items: &[Directive]) -> Result<(), ConfError> {
        let mut layer = Layer::default();
        let mut seen = HashSet::new();
        for d in items {
            self.check(d, Ctx::Http)?;
            if is_single(&d.name) && !seen.insert(d.name.as_str()) {
                return err(format!("\"{}\" directive is duplicate", d.name), d);
            }
            if self.layer_directive(d, &mut layer)? {
                continue;
            }
            match d.name.as_str() {
                "upstream" => self.upstream_block(d)?,
                "server" => self.server_block(d, &layer)?,
                "log_format" => {
                    let name = d.args[0].clone();
                    if name == "combined" || self.http.log_formats.contains_key(&name) {
                        return err(format!("duplicate \"log_format\" name \"{name}\""), d);
                    }
                    self.http.log_formats.insert(name, d.args[1..].concat());
                }
                "error_log" => {
                    self.error_log(d)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Directives every level of http shares. Returns whether `d` was one.
    fn layer_directive(&mut self, d: &Directive, layer: &mut Layer) -> Result<bool, ConfError> {
        match d.name.as_str() {
            "proxy_set_header" => {
                let headers = layer.set_headers.get_or_insert_with(Vec::new);
                if headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(&d.args[0]))
                {
                    // nginx keeps the last; so do we, in place.
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&d.args[0]));
                }
                headers.push((d.args[0].clone(), d.args[1].clone()));
            }
            "proxy_http_version" => {
                layer.http11 = Some(match d.args[0].as_str() {
                    "1.0" => false,
                    "1.1" => true,
                    v => {
                        return err(
                            format!("invalid value \"{v}\" in \"{}\" directive", d.name),
                            d,
                        )
                    }
                })
            }
            "proxy_next_upstream" => layer.next_upstream = Some(next_upstream(d)?),
            "proxy_next_upstream_tries" => layer.tries = Some(number_arg(d, 0)? as u32),
            "proxy_next_upstream_timeout" => layer.next_timeout = Some(time_arg(d, 0)?),
            "proxy_connect_timeout" => layer.connect_timeout = Some(time_arg(d, 0)?),
            "proxy_send_timeout" => layer.send_timeout = Some(time_arg(d, 0)?),
            "proxy_read_timeout" => layer.read_timeout = Some(time_arg(d, 0)?),
            "keepalive_timeout" => layer.keepalive_timeout = Some(time_arg(d, 0)?),
            "keepalive_requests" => layer.keepalive_requests = Some(number_arg(d, 0)?),
            "access_log" => layer.access_log = Some(self.access_log(d)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn access_log(&self, d: &Directive) -> Result<Option<AccessLogConf>, ConfError> {
        if d.args[0] == "off" {
            return Ok(None);
        }
        let format = d
            .args
            .get(1)
            .cloned()
            .unwrap_or_else(|| "combined".to_owned());
        if format != "combined" && !self.http.log_formats.contains_key(&format) {
            return err(format!("unknown log format \"{format}\""), d);
        }
        if let Some(extra) = d.args.get(2) {
            return err(format!("invalid parameter \"{extra}\""), d);
        }
        Ok(Some(AccessLogConf {
            path: self.resolve_path(&d.args[0]),
            format,
        }))
    }

    fn upstream_block(&mut self, d: &Directive) -> Result<(), ConfError> {
        let name = d.args[0].clone();
        if self
            .http
            .upstreams
            .iter()
            .any(|u| !u.implicit && u.name == name)
        {
            return err(format!("duplicate upstream \"{name}\""), d);
        }
        let mut up = UpstreamConf {
            name,
            loc: d.loc.clone(),
            peers: Vec::new(),
            keepalive: 0,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
            balancer: None,
            balancer_directives: Vec::new(),
            implicit: false,
        };
        let mut params = ServerParams::ALL;
        let mut backups = Vec::new();
        let mut seen = HashSet::new();
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            self.check(item, Ctx::Upstream)?;
            if is_single(&item.name) && !seen.insert(item.name.as_str()) {
                return err(format!("\"{}\" directive is duplicate", item.name), item);
            }
            match item.name.as_str() {
                "server" => {
                    for peer in server_line(item, params)? {
                        if peer.backup {
                            backups.push(peer);
                        } else {
                            up.peers.push(peer);
                        }
                    }
                }
                "keepalive" => match parse_number(&item.args[0]) {
                    Some(n) if n > 0 => up.keepalive = n as usize,
                    _ => return invalid_value(item, &item.args[0]),
                },
                "keepalive_timeout" => up.keepalive_timeout = time_arg(item, 0)?,
                "keepalive_requests" => up.keepalive_requests = number_arg(item, 0)?,
                "zone" => {}
                other => {
                    if let Some(&(module, spec)) = self.module_directives.get(other) {
                        if spec.balancer {
                            if up.balancer.is_some() {
                                tracing::warn!("load balancing method redefined in {}", item.loc);
                                up.balancer_directives.clear();
                            }
                            up.balancer = Some(module);
                            params = spec.server_params;
                        }
                        if up.balancer == Some(module) {
                            up.balancer_directives.push(ModuleDirective {
                                name: item.name.clone(),
                                args: item.args.clone(),
                                loc: item.loc.clone(),
                            });
                        }
                    }
                }
            }
        }
        up.peers.extend(backups);
        self.http.upstreams.push(up);
        Ok(())
    }

    fn server_block(&mut self, d: &Directive, http: &Layer) -> Result<(), ConfError> {
        let mut layer = http.clone();
        let mut server = ServerConf {
            listens: Vec::new(),
            names: Vec::new(),
            locations: Vec::new(),
            ret: None,
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
        };
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        let mut seen = HashSet::new();
        // Locations are built after the server's own directives are known,
        // since they inherit them whatever the order (nginx merges at the
        // end of the block).
        let mut locations = Vec::new();
        for item in items {
            self.check(item, Ctx::Server)?;
            if is_single(&item.name) && !seen.insert(item.name.as_str()) {
                return err(format!("\"{}\" directive is duplicate", item.name), item);
            }
            if self.layer_directive(item, &mut layer)? {
                continue;
            }
            match item.name.as_str() {
                "listen" => server.listens.push(listen(item)?),
                "server_name" => {
                    for name in &item.args {
                        if name.starts_with('~') {
                            return err(
                                format!(
                                    "regular expression server names are not supported: \"{name}\""
                                ),
                                item,
                            );
                        }
                        server.names.push(name.to_ascii_lowercase());
                    }
                }
                "return" => server.ret = Some(return_args(item)?),
                "location" => locations.push(item),
                _ => {}
            }
        }
        if server.listens.is_empty() {
            server.listens.push(ListenConf {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80),
                default_server: false,
                backlog: 511,
            });
        }
        server.keepalive_timeout = layer.keepalive_timeout.unwrap_or(server.keepalive_timeout);
        server.keepalive_requests = layer
            .keepalive_requests
            .unwrap_or(server.keepalive_requests);
        let index = self.http.servers.len();
        self.http.servers.push(server);
        for item in locations {
            self.location_block(item, &layer, index)?;
        }
        Ok(())
    }

    fn location_block(
        &mut self,
        d: &Directive,
        parent: &Layer,
        server: usize,
    ) -> Result<(), ConfError> {
        let (exact, path) = match (d.args[0].as_str(), d.args.get(1)) {
            ("=", Some(p)) => (true, p.clone()),
            ("^~", Some(p)) => (false, p.clone()),
            ("~" | "~*", Some(_)) => {
                return err("regular expression locations are not supported", d);
            }
            (m, Some(_)) => return err(format!("invalid location modifier \"{m}\""), d),
            (p, None) => (false, p.to_owned()),
        };
        let mut layer = parent.clone();
        let mut action = Action::None;
        let mut nested = Vec::new();
        let mut seen = HashSet::new();
        let mut pass: Option<(String, Loc)> = None;
        let items = d.block.as_ref().map_or(&[][..], |b| &b.items[..]);
        for item in items {
            self.check(item, Ctx::Location)?;
            if is_single(&item.name) && !seen.insert(item.name.as_str()) {
                return err(format!("\"{}\" directive is duplicate", item.name), item);
            }
            if self.layer_directive(item, &mut layer)? {
                continue;
            }
            match item.name.as_str() {
                "proxy_pass" => {
                    let (authority, uri) = proxy_pass_url(item)?;
                    action = Action::Proxy(ProxyPass {
                        upstream: usize::MAX,
                        host: authority.clone(),
                        uri,
                    });
                    pass = Some((authority, item.loc.clone()));
                }
                "return" => {
                    if !matches!(action, Action::Proxy(_)) {
                        action = Action::Return(return_args(item)?);
                    }
                }
                "location" => nested.push(item),
                _ => {}
            }
        }
        let location = LocationConf {
            path,
            exact,
            action,
            proxy: layer.proxy(),
            access_log: layer.access_log.clone().unwrap_or_else(|| {
                Some(AccessLogConf {
                    path: self.env.prefix.join("logs/access.log"),
                    format: "combined".to_owned(),
                })
            }),
        };
        let locations = &mut self.http.servers[server].locations;
        let index = locations.len();
        locations.push(location);
        if let Some((authority, loc)) = pass {
            self.pending.push(PendingPass {
                server,
                location: index,
                authority,
                loc,
            });
        }
        for item in nested {
            self.location_block(item, &layer, server)?;
        }
        Ok(())
    }

    /// End of the http block: bind every `proxy_pass` to its upstream,
    /// creating and resolving implicit ones, then check each upstream,
    /// in the order nginx's `init_main_conf` would.
    fn http_end(&mut self) -> Result<(), ConfError> {
        for pass in std::mem::take(&mut self.pending) {
            let explicit = self
                .http
                .upstreams
                .iter()
                .position(|u| !u.implicit && u.name == pass.authority);
            let index = match explicit {
                Some(i) => i,
                None => match self
                    .http
                    .upstreams
                    .iter()
                    .position(|u| u.implicit && u.name == pass.authority)
                {
                    Some(i) => i,
                    None => {
                        let peers = resolve(&pass.authority, 80)
                            .map_err(|m| ConfError::at(m, pass.loc.clone()))?;
                        self.http.upstreams.push(UpstreamConf {
                            name: pass.authority.clone(),
                            loc: pass.loc.clone(),
                            peers: peers
                                .into_iter()
                                .map(|addr| PeerConf {
                                    server: pass.authority.clone(),
                                    addr,
                                    weight: 1,
                                    max_fails: 1,
                                    fail_timeout: 10,
                                    max_conns: 0,
                                    backup: false,
                                    down: false,
                                })
                                .collect(),
                            keepalive: 0,
                            keepalive_timeout: Duration::from_secs(60),
                            keepalive_requests: 1000,
                            balancer: None,
                            balancer_directives: Vec::new(),
                            implicit: true,
                        });
                        self.http.upstreams.len() - 1
                    }
                },
            };
            if let Action::Proxy(p) =
                &mut self.http.servers[pass.server].locations[pass.location].action
            {
                p.upstream = index;
            }
        }
        for up in &self.http.upstreams {
            if up.peers.is_empty() {
                return Err(ConfError::at(
                    "no servers are inside upstream".to_owned(),
                    up.loc.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// Directives nginx refuses to see twice in one block.
fn is_single(name: &str) -> bool {
    matches!(
        name,
        "daemon"
            | "master_process"
            | "worker_processes"
            | "pid"
            | "events"
            | "worker_connections"
            | "keepalive"
            | "keepalive_timeout"
            | "keepalive_requests"
            | "proxy_pass"
            | "proxy_http_version"
            | "proxy_next_upstream_tries"
            | "proxy_next_upstream_timeout"
            | "proxy_connect_timeout"
            | "proxy_send_timeout"
            | "proxy_read_timeout"
            | "proxy_next_upstream"
    )
}

fn next_upstream(d: &Directive) -> Result<NextUpstream, ConfError> {
    let mut mask = 0;
    for a in &d.args {
        mask |= match a.as_str() {
            "error" => NextUpstream::ERROR,
            "timeout" => NextUpstream::TIMEOUT,
            "invalid_header" => NextUpstream::INVALID_HEADER,
            "http_500" => NextUpstream::HTTP_500,
            "http_502" => NextUpstream::HTTP_502,
            "http_503" => NextUpstream::HTTP_503,
            "http_504" => NextUpstream::HTTP_504,
            "http_403" => NextUpstream::HTTP_403,
            "http_404" => NextUpstream::HTTP_404,
            "http_429" => NextUpstream::HTTP_429,
            "non_idempotent" => NextUpstream::NON_IDEMPOTENT,
            "off" => NextUpstream::OFF,
            v => return err(format!("invalid value \"{v}\""), d),
        };
    }
    Ok(NextUpstream(mask))
}

/// One `server` line of an upstream block, as `ngx_http_upstream_server`:
/// parameters first (each checked against what the balancer supports),
/// then the address, resolved now.
fn server_line(d: &Directive, params: ServerParams) -> Result<Vec<PeerConf>, ConfError> {
    let mut weight = 1;
    let mut max_fails = 1;
    let mut fail_timeout = 10;
    let mut max_conns = 0;
    let mut backup = false;
    let mut down = false;
    let not_supported = |v: &str| {
        err(
            format!("balancing method does not support parameter \"{v}\""),
            d,
        )
    };
    let invalid = |v: &str| err(format!("invalid parameter \"{v}\""), d);
    for v in &d.args[1..] {
        if let Some(n) = v.strip_prefix("weight=") {
            if !params.contains(ServerParams::WEIGHT) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) if n > 0 && n <= u64::from(u32::MAX) => weight = n as u32,
                _ => return invalid(v),
            }
        } else if let Some(n) = v.strip_prefix("max_conns=") {
            if !params.contains(ServerParams::MAX_CONNS) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) if n <= u64::from(u32::MAX) => max_conns = n as u32,
                _ => return invalid(v),
            }
        } else if let Some(n) = v.strip_prefix("max_fails=") {
            if !params.contains(ServerParams::MAX_FAILS) {
                return not_supported(v);
            }
            match parse_number(n) {
                Some(n) if n <= u64::from(u32::MAX) => max_fails = n as u32,
                _ => return invalid(v),
            }
        } else if let Some(t) = v.strip_prefix("fail_timeout=") {
            if !params.contains(ServerParams::FAIL_TIMEOUT) {
                return not_supported(v);
            }
            match parse_time(t) {
                Some(t) => fail_timeout = t.as_secs().min(u64::from(u32::MAX)) as u32,
                None => return invalid(v),
            }
        } else if v == "backup" {
            if !params.contains(ServerParams::BACKUP) {
                return not_supported(v);
            }
            backup = true;
        } else if v == "down" {
            if !params.contains(ServerParams::DOWN) {
                return not_supported(v);
            }
            down = true;
        } else {
            return invalid(v);
        }
    }
    let server = d.args[0].clone();
    let addrs = resolve(&server, 80).map_err(|m| ConfError::at(m, d.loc.clone()))?;
    Ok(addrs
        .into_iter()
        .map(|addr| PeerConf {
            server: server.clone(),
            addr,
            weight,
            max_fails,
            fail_timeout,
            max_conns,
            backup,
            down,
        })
        .collect())
}

/// Splits `host[:port]` as nginx's `ngx_parse_url` and resolves it.
fn resolve(url: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    if url.len() >= 5 && url[..5].eq_ignore_ascii_case("unix:") {
        return Err(format!(
            "unix domain sockets are not supported in upstream \"{url}\""
        ));
    }
    if let Ok(addr) = url.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) =
        split_host_port(url).ok_or_else(|| format!("invalid port in upstream \"{url}\""))?;
    let port = port.unwrap_or(default_port);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("no host in upstream \"{url}\""));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let not_found = || format!("host not found in upstream \"{url}\"");
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| not_found())?
        .collect();
    // getaddrinfo repeats an address once per socket type; nginx asks for
    // SOCK_STREAM only.
    let mut seen = HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if addrs.is_empty() {
        return Err(not_found());
    }
    Ok(addrs)
}

/// `host`, `host:port`, `[v6]:port`. `None` for a malformed port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let colon = if s.starts_with('[') {
        s.find(']')
            .and_then(|end| s[end..].find(':').map(|c| end + c))
    } else {
        s.rfind(':')
    };
    match colon {
        None => Some((s, None)),
        Some(c) => {
            let port = parse_number(&s[c + 1..]).filter(|&p| p > 0 && p <= 65535)?;
            Some((&s[..c], Some(port as u16)))
        }
    }
}

fn listen(d: &Directive) -> Result<ListenConf, ConfError> {
    let spec = &d.args[0];
    let addr = if let Some(port) = parse_number(spec) {
        if port == 0 || port > 65535 {
            return err(
                format!("invalid port in \"{spec}\" of the \"listen\" directive"),
                d,
            );
        }
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port as u16)
    } else {
        let (host, port) = split_host_port(spec).ok_or_else(|| {
            ConfError::at(
                format!("invalid port in \"{spec}\" of the \"listen\" directive"),
                d.loc.clone(),
            )
        })?;
        let port = port.unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host == "*" {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else if let Ok(ip) = host.parse() {
            ip
        } else {
            match resolve(host, port) {
                Ok(addrs) => addrs[0].ip(),
                Err(_) => {
                    return err(
                        format!("host not found in \"{spec}\" of the \"listen\" directive"),
                        d,
                    )
                }
            }
        };
        SocketAddr::new(ip, port)
    };
    let mut conf = ListenConf {
        addr,
        default_server: false,
        backlog: 511,
    };
    for p in &d.args[1..] {
        if p == "default_server" || p == "default" {
            conf.default_server = true;
        } else if let Some(n) = p.strip_prefix("backlog=") {
            match n.parse::<i32>() {
                Ok(n) if n != 0 => conf.backlog = n,
                _ => return err(format!("invalid backlog \"{n}\""), d),
            }
        } else if p == "reuseport"
            || p == "deferred"
            || p.starts_with("ipv6only=")
            || p.starts_with("so_keepalive=")
            || p.starts_with("rcvbuf=")
            || p.starts_with("sndbuf=")
        {
            // Accepted so that nginx files load; the socket options that
            // matter here are set by the listener itself.
        } else {
            return err(format!("invalid parameter \"{p}\""), d);
        }
    }
    Ok(conf)
}

fn return_args(d: &Directive) -> Result<Return, ConfError> {
    let first = &d.args[0];
    if d.args.len() == 1
        && (first.starts_with("http://")
            || first.starts_with("https://")
            || first.starts_with("$scheme"))
    {
        return Ok(Return {
            code: 302,
            text: Some(first.clone()),
        });
    }
    match parse_number(first) {
        Some(code) if code <= 999 => Ok(Return {
            code: code as u16,
            text: d.args.get(1).cloned(),
        }),
        _ => err(format!("invalid return code \"{first}\""), d),
    }
}

/// `http://authority[/uri]` -> (authority, uri).
fn proxy_pass_url(d: &Directive) -> Result<(String, Option<String>), ConfError> {
    let url = &d.args[0];
    let rest = if url.len() >= 7 && url[..7].eq_ignore_ascii_case("http://") {
        &url[7..]
    } else if url.len() >= 8 && url[..8].eq_ignore_ascii_case("https://") {
        return err("https upstreams are not supported yet", d);
    } else {
        return err(format!("invalid URL prefix in \"{url}\""), d);
    };
    let (authority, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return err(
            format!("no host in \"{url}\" of the \"proxy_pass\" directive"),
            d,
        );
    }
    Ok((authority.to_owned(), uri))
}
