//! `limit_req`: nginx's request rate limiting (`ngx_http_limit_req_module.c`)
//! as a waypost filter module, loaded from `libwaypost_limit_req.so`, plus
//! a fixed per-second (or per-minute) window, `mode=window`.
//!
//! Anatomy of a waypost filter: directives, init_filter (zones from the
//! `http` level, then the limits and settings in effect in each scope),
//! check (once per request). The layers below it are tested without a
//! proxy:
//!
//! - [`zone`]: a zone's per-key state (sharded hash tables with an LRU
//!   list each) and the two algorithms, [`Zone::account`] for one limit,
//!   [`Zone::lookup`]/[`Zone::commit`]/[`Zone::release`] for several;
//! - [`limits`]: nginx's handler over the limits of a scope,
//!   [`ScopeLimits::decide`] with the keys and the clock given, and
//!   [`ScopeLimits::verdict`] for the answer, log line and variable;
//! - [`counters`]: requests per zone and result, the module's metrics;
//! - [`cluster`]: `cluster=`, buckets and windows shared by several
//!   instances through Redis, exchanged by a background thread.

use std::collections::HashMap;
use std::sync::Arc;

use waypost_module_api::filter::{Check, Filter, FilterConfig, FilterModule};
use waypost_module_api::prelude::*;

pub mod cluster;
pub mod counters;
pub mod limits;
pub mod zone;

pub use cluster::{ClusterSpec, OnClusterError};

pub use counters::{RequestResult, ZoneCounters};
pub use limits::{Decision, Limit, MissingKey, ScopeLimits, Settings, MAX_KEY, NODELAY};
pub use zone::{Mode, Now, Outcome, Pin, Rate, Zone, ZoneSpec, MIN_ZONE_SIZE, NODE_BYTES};

/// Where the per-scope directives may appear.
const SCOPES: Contexts = Contexts::HTTP
    .with(Contexts::SERVER)
    .with(Contexts::LOCATION)
    .with(Contexts::UPSTREAM);

/// Directives: `limit_req_zone` (http), `limit_req`, `limit_req_status`,
/// `limit_req_log_level`, `limit_req_dry_run` and the extension
/// `limit_req_missing_key` (http, server, location, upstream). Variable:
/// `$limit_req_status`.
pub struct LimitReqModule;

impl FilterModule for LimitReqModule {
    const NAME: &'static str = "limit_req";
    const DIRECTIVES: &'static [DirectiveSpec] = &[
        DirectiveSpec::plain("limit_req_zone", Contexts::HTTP, 3, 7),
        DirectiveSpec::plain("limit_req", SCOPES, 1, 3),
        DirectiveSpec::plain("limit_req_status", SCOPES, 1, 1),
        DirectiveSpec::plain("limit_req_log_level", SCOPES, 1, 1),
        DirectiveSpec::plain("limit_req_dry_run", SCOPES, 1, 1),
        DirectiveSpec::plain("limit_req_missing_key", SCOPES, 1, 1),
    ];
    const VARIABLES: &'static [&'static str] = &["limit_req_status"];
    type Filter = LimitReq;

    /// init_filter: zones from the `http` level (taking over the state of
    /// the previous configuration's zones of the same name and size), then
    /// each scope's limits and settings.
    fn init_filter(
        config: &FilterConfig<'_>,
        previous: Option<&LimitReq>,
    ) -> Result<LimitReq, ConfigError> {
        LimitReq::from_config(config, previous)
    }
}

/// The filter object of one configuration.
pub struct LimitReq {
    /// Every zone, in the order first mentioned.
    zones: Vec<Arc<Zone>>,
    /// Per scope index: its limits, or `None` where no `limit_req` applies.
    scopes: Vec<Option<Arc<ScopeLimits>>>,
    /// Per scope index: the counters of each limit's zone, in the limits'
    /// order (empty for filters made with [`LimitReq::new`]).
    counters: Vec<Vec<ZoneCounters>>,
    /// The counters of each zone of `zones`.
    zone_counters: Vec<ZoneCounters>,
    /// The cluster zones, exchanged by the sync thread while this
    /// configuration lives (the thread stops with the last one).
    _sync: Option<cluster::Registration>,
}

impl Filter for LimitReq {
    /// check: each zone's key evaluated, nginx's handler, the answer.
    fn check(&self, scope: usize, request: &Request<'_>) -> Check {
        let Some(Some(limits)) = self.scopes.get(scope) else {
            return Check::pass("");
        };
        let mut log = |level: LogLevel, message: &str| {
            waypost_module_api::sdk::log::<LimitReqModule>(level, message)
        };
        let decision = limits.decide(
            limits.now(),
            |zone| request.eval(zone.template()).as_bytes(),
            &mut log,
        );
        if let Some((limit, result)) = RequestResult::of(&decision, limits.settings.dry_run) {
            if let Some(c) = self.counters.get(scope).and_then(|c| c.get(limit)) {
                c.count(result);
            }
        }
        limits.verdict(&decision, &mut log)
    }
}

impl LimitReq {
    /// A filter over ready-made zones and scopes (tests, benches).
    pub fn new(zones: Vec<Arc<Zone>>, scopes: Vec<Option<Arc<ScopeLimits>>>) -> LimitReq {
        LimitReq {
            zones,
            scopes,
            counters: Vec::new(),
            zone_counters: Vec::new(),
            _sync: None,
        }
    }

    /// Requests of zone `zone` counted with `result` (see [`counters`]).
    pub fn requests(&self, zone: &str, result: RequestResult) -> Option<u64> {
        let i = self.zones.iter().position(|z| z.name() == zone)?;
        self.zone_counters.get(i).map(|c| c.get(result))
    }

    /// The zone named `name`.
    pub fn zone(&self, name: &str) -> Option<&Arc<Zone>> {
        self.zones.iter().find(|z| z.name() == name)
    }

    /// Whether this configuration and `other` have their cluster zones
    /// exchanged by the same thread.
    pub fn same_sync_thread(&self, other: &LimitReq) -> bool {
        match (&self._sync, &other._sync) {
            (Some(a), Some(b)) => a.same_thread(b),
            _ => false,
        }
    }

    /// The limits of scope `index`, if any `limit_req` applies there.
    pub fn scope(&self, index: usize) -> Option<&ScopeLimits> {
        self.scopes.get(index)?.as_deref()
    }

    /// Parses the configuration, nginx's checks and messages included.
    pub fn from_config(
        config: &FilterConfig<'_>,
        previous: Option<&LimitReq>,
    ) -> Result<LimitReq, ConfigError> {
        let mut parser = Parser::default();
        // Syntax first, as nginx reads the file: the http level (zones
        // and the defaults), then what each scope has in effect.
        parser.list(config, config.http(), true)?;
        let scopes = config
            .scopes()
            .map(|scope| parser.list(config, scope.directives(), false))
            .collect::<Result<Vec<_>, _>>()?;

        // Then, in the order zones were first mentioned, what nginx checks
        // when it creates the shared memory: an undefined zone, a zone
        // whose key changed across a reload.
        let mut zones: HashMap<&str, Arc<Zone>> = HashMap::new();
        let mut ordered = Vec::new();
        for name in &parser.mentions {
            let Some(&i) = parser.index.get(name.as_str()) else {
                return Err(ConfigError::new(format!(
                    "zero size shared memory zone \"{name}\""
                )));
            };
            let def = &parser.zones[i];
            let old = previous
                .and_then(|p| p.zone(name))
                .filter(|old| old.spec().size == def.spec.size && old.spec().mode == def.spec.mode);
            let zone = match old {
                Some(old) if old.spec().key != def.spec.key => {
                    return Err(ConfigError::new(format!(
                        "limit_req \"{name}\" uses the \"{}\" key while previously it used the \"{}\" key",
                        def.spec.key,
                        old.spec().key
                    )))
                }
                Some(old) => Zone::reusing(def.spec.clone(), def.template, old),
                None => Zone::new(def.spec.clone(), def.template),
            };
            let zone = match def.spec.cluster {
                Some(_) => {
                    zone.with_cluster_metrics(cluster::ClusterMetrics::register(config, name)?)
                }
                None => zone,
            };
            let zone = Arc::new(zone);
            zones.insert(name, zone.clone());
            ordered.push(zone);
        }

        // Every zone's series exist from the start, at 0 (or, after a
        // reload, where they were).
        let zone_counters = ordered
            .iter()
            .map(|z| ZoneCounters::register(config, z.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let counters_of = |zone: &str| {
            ordered
                .iter()
                .position(|z| z.name() == zone)
                .and_then(|i| zone_counters.get(i).copied())
        };
        let counters = scopes
            .iter()
            .map(|conf| {
                conf.limits
                    .iter()
                    .filter_map(|l| counters_of(&l.zone))
                    .collect()
            })
            .collect();

        let scopes = scopes
            .into_iter()
            .map(|conf| {
                if conf.limits.is_empty() {
                    return None;
                }
                let limits = conf
                    .limits
                    .into_iter()
                    .map(|l| Limit {
                        zone: zones[l.zone.as_str()].clone(),
                        burst: l.burst,
                        delay: l.delay,
                    })
                    .collect();
                Some(Arc::new(ScopeLimits::new(limits, conf.settings)))
            })
            .collect();
        // Cluster zones go to the process's sync thread (the one already
        // running for the previous configuration, if any: registered
        // before the previous configuration goes, they are exchanged
        // without a gap).
        let clustered: Vec<Arc<Zone>> = ordered
            .iter()
            .filter(|z| z.spec().cluster.is_some())
            .cloned()
            .collect();
        let cluster = if clustered.is_empty() {
            None
        } else {
            Some(cluster::Syncer::register(clustered).map_err(ConfigError::new)?)
        };
        Ok(LimitReq {
            zones: ordered,
            scopes,
            counters,
            zone_counters,
            _sync: cluster,
        })
    }
}

/// A `limit_req_zone` line, parsed.
struct ZoneDef {
    spec: ZoneSpec,
    template: Template,
}

/// A `limit_req` line, parsed; the zone is resolved after parsing.
struct LimitDef {
    zone: String,
    burst: u64,
    delay: u64,
}

/// A list of directives in effect, parsed.
struct ListConf {
    limits: Vec<LimitDef>,
    settings: Settings,
}

#[derive(Default)]
struct Parser {
    zones: Vec<ZoneDef>,
    index: HashMap<String, usize>,
    /// Zone names in the order first mentioned (nginx's list of shared
    /// memory zones).
    mentions: Vec<String>,
}

impl Parser {
    fn mention(&mut self, name: &str) {
        if !self.mentions.iter().any(|m| m == name) {
            self.mentions.push(name.to_owned());
        }
    }

    /// One level's directives (the http level, or a scope's directives in
    /// effect): every directive is checked, duplicates included.
    fn list<'a>(
        &mut self,
        config: &FilterConfig<'_>,
        directives: impl Iterator<Item = Directive<'a>>,
        http: bool,
    ) -> Result<ListConf, ConfigError> {
        let mut limits: Vec<LimitDef> = Vec::new();
        let mut status = None;
        let mut log_level = None;
        let mut dry_run = None;
        let mut missing_key = None;
        for d in directives {
            match d.name() {
                "limit_req_zone" if http => self.zone(config, &d)?,
                "limit_req" => {
                    let limit = self.limit(&d)?;
                    if limits.iter().any(|l| l.zone == limit.zone) {
                        return Err(duplicate(&d));
                    }
                    limits.push(limit);
                }
                "limit_req_status" => {
                    if status.is_some() {
                        return Err(duplicate(&d));
                    }
                    let n = atoi(d.arg(0))
                        .ok_or_else(|| d.error("\"limit_req_status\" directive invalid number"))?;
                    if !(400..=599).contains(&n) {
                        return Err(d.error("value must be between 400 and 599"));
                    }
                    status = Some(n as u16);
                }
                "limit_req_log_level" => {
                    if log_level.is_some() {
                        return Err(duplicate(&d));
                    }
                    let v = d.arg(0);
                    log_level = Some(match v.to_ascii_lowercase().as_str() {
                        "info" => LogLevel::Info,
                        "notice" => LogLevel::Notice,
                        "warn" => LogLevel::Warn,
                        "error" => LogLevel::Error,
                        _ => return Err(d.error(format!("invalid value \"{v}\""))),
                    });
                }
                "limit_req_dry_run" => {
                    if dry_run.is_some() {
                        return Err(duplicate(&d));
                    }
                    let v = d.arg(0);
                    dry_run = Some(if v.eq_ignore_ascii_case("on") {
                        true
                    } else if v.eq_ignore_ascii_case("off") {
                        false
                    } else {
                        return Err(d.error(format!(
                            "invalid value \"{v}\" in \"limit_req_dry_run\" directive, it must be \"on\" or \"off\""
                        )));
                    });
                }
                "limit_req_missing_key" => {
                    if missing_key.is_some() {
                        return Err(duplicate(&d));
                    }
                    let v = d.arg(0);
                    missing_key = Some(if v.eq_ignore_ascii_case("pass") {
                        MissingKey::Pass
                    } else if v.eq_ignore_ascii_case("reject") {
                        MissingKey::Reject
                    } else {
                        return Err(d.error(format!("invalid value \"{v}\"")));
                    });
                }
                _ => {}
            }
        }
        let default = Settings::default();
        Ok(ListConf {
            limits,
            settings: Settings {
                status: status.unwrap_or(default.status),
                log_level: log_level.unwrap_or(default.log_level),
                dry_run: dry_run.unwrap_or(default.dry_run),
                missing_key: missing_key.unwrap_or(default.missing_key),
            },
        })
    }

    /// `limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m [mode=leaky|window]
    /// [cluster=redis://HOST:PORT[/DB] [sync=T] [on_cluster_error=local|allow|deny]]`
    /// (`ngx_http_limit_req_zone`, and the extensions).
    fn zone(&mut self, config: &FilterConfig<'_>, d: &Directive<'_>) -> Result<(), ConfigError> {
        let key = d.arg(0);
        // nginx prints an unknown variable without a location.
        let template = config.compile(key).map_err(ConfigError::new)?;
        let mut name = "";
        let mut size = 0;
        let mut rate = Rate::per_second(1);
        let mut mode = Mode::Leaky;
        let mut url = None;
        let mut sync = None;
        let mut on_error = None;
        for arg in &d.args()[1..] {
            let arg = arg.as_str();
            if let Some(rest) = arg.strip_prefix("zone=") {
                let Some((n, s)) = rest.split_once(':') else {
                    return Err(d.error(format!("invalid zone size \"{arg}\"")));
                };
                name = n;
                size =
                    parse_size(s).ok_or_else(|| d.error(format!("invalid zone size \"{arg}\"")))?;
                if size < MIN_ZONE_SIZE {
                    return Err(d.error(format!("zone \"{arg}\" is too small")));
                }
            } else if let Some(rest) = arg.strip_prefix("rate=") {
                let (n, per_minute) = match (rest.strip_suffix("r/s"), rest.strip_suffix("r/m")) {
                    (Some(n), _) => (n, false),
                    (_, Some(n)) => (n, true),
                    _ => (rest, false),
                };
                let n = atoi(n)
                    .filter(|&n| n > 0 && n <= u64::MAX / 1000)
                    .ok_or_else(|| d.error(format!("invalid rate \"{arg}\"")))?;
                rate = Rate {
                    requests: n,
                    per_minute,
                };
            } else if let Some(m) = arg.strip_prefix("mode=") {
                mode = match m {
                    "leaky" => Mode::Leaky,
                    "window" => Mode::Window,
                    _ => return Err(d.error(format!("invalid mode \"{arg}\""))),
                };
            } else if let Some(u) = arg.strip_prefix("cluster=") {
                if !cluster::valid_url(u) {
                    return Err(d.error(format!(
                        "invalid cluster \"{arg}\", it must be \"redis://HOST:PORT[/DB]\""
                    )));
                }
                url = Some(u);
            } else if let Some(t) = arg.strip_prefix("sync=") {
                sync = Some((
                    arg,
                    cluster::parse_sync(t).ok_or_else(|| {
                        d.error(format!(
                            "invalid sync \"{arg}\", it must be from 10ms to 60s"
                        ))
                    })?,
                ));
            } else if let Some(v) = arg.strip_prefix("on_cluster_error=") {
                on_error = Some((
                    arg,
                    match v {
                        "local" => OnClusterError::Local,
                        "allow" => OnClusterError::Allow,
                        "deny" => OnClusterError::Deny,
                        _ => {
                            return Err(d.error(format!(
                                "invalid on_cluster_error \"{arg}\", it must be \"local\", \"allow\" or \"deny\""
                            )))
                        }
                    },
                ));
            } else {
                return Err(d.error(format!("invalid parameter \"{arg}\"")));
            }
        }
        if name.is_empty() {
            return Err(d.error("\"limit_req_zone\" must have \"zone\" parameter"));
        }
        let cluster = match url {
            Some(url) => Some(ClusterSpec {
                url: url.to_owned(),
                sync_ms: sync.map_or(cluster::DEFAULT_SYNC_MS, |(_, ms)| ms),
                on_error: on_error.map_or(OnClusterError::Local, |(_, e)| e),
            }),
            None => {
                if let Some((arg, _)) = sync
                    .map(|(a, _)| (a, ()))
                    .or(on_error.map(|(a, _)| (a, ())))
                {
                    return Err(d.error(format!("\"{arg}\" requires \"cluster=\"")));
                }
                None
            }
        };
        self.mention(name);
        if let Some(&i) = self.index.get(name) {
            let old = &self.zones[i].spec;
            return Err(d.error(if old.size != size {
                format!(
                    "the size {size} of shared memory zone \"{name}\" conflicts with already declared size {}",
                    old.size
                )
            } else {
                format!(
                    "limit_req_zone \"{name}\" is already bound to key \"{}\"",
                    old.key
                )
            }));
        }
        self.index.insert(name.to_owned(), self.zones.len());
        self.zones.push(ZoneDef {
            spec: ZoneSpec {
                name: name.to_owned(),
                key: key.to_owned(),
                size,
                rate,
                mode,
                cluster,
            },
            template,
        });
        Ok(())
    }

    /// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`
    /// (`ngx_http_limit_req`).
    fn limit(&mut self, d: &Directive<'_>) -> Result<LimitDef, ConfigError> {
        let mut zone = None;
        let mut burst = 0;
        let mut delay = 0;
        for arg in d.args() {
            let arg = arg.as_str();
            if let Some(name) = arg.strip_prefix("zone=") {
                self.mention(name);
                zone = Some(name);
            } else if let Some(n) = arg.strip_prefix("burst=") {
                burst = atoi(n)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| d.error(format!("invalid burst value \"{arg}\"")))?;
            } else if let Some(n) = arg.strip_prefix("delay=") {
                delay = atoi(n)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| d.error(format!("invalid delay value \"{arg}\"")))?;
            } else if arg == "nodelay" {
                delay = u64::MAX;
            } else {
                return Err(d.error(format!("invalid parameter \"{arg}\"")));
            }
        }
        let Some(zone) = zone else {
            return Err(d.error("\"limit_req\" must have \"zone\" parameter"));
        };
        Ok(LimitDef {
            zone: zone.to_owned(),
            burst: burst.saturating_mul(1000),
            delay: if delay == u64::MAX {
                NODELAY
            } else {
                delay.saturating_mul(1000)
            },
        })
    }
}

fn duplicate(d: &Directive<'_>) -> ConfigError {
    d.error(format!("\"{}\" directive is duplicate", d.name()))
}

/// nginx's `ngx_atoi`: decimal digits only, no sign, no overflow.
fn atoi(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().map(|n| n as u64)
}

/// nginx's `ngx_parse_size`: bytes, or `k`/`K`, `m`/`M` suffixed.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, scale) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    let n = atoi(digits)?;
    n.checked_mul(scale).filter(|&n| n <= i64::MAX as u64)
}

waypost_module_api::export_filter!(LimitReqModule);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;
