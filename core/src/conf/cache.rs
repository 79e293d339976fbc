//! The proxy cache's directives, as nginx's proxy module and
//! `ngx_http_file_cache` read them: `proxy_cache_path` (http), and
//! `proxy_cache` with the settings that go with it at every level,
//! inherited level by level as nginx merges them.

use std::path::Path;
use std::time::Duration;

use crate::cache::{ignore, Valid};
use crate::conf::interp::{err, number_arg, time_arg};
use crate::conf::model::NextUpstream;
use crate::conf::syntax::Directive;
use crate::conf::values::{parse_number, parse_offset, parse_size, parse_time, parse_time_sec};
use crate::conf::ConfError;

/// The level directives [`directive`] takes (contexts and argument
/// counts are in the directive table).
pub(super) const DIRECTIVES: &[&str] = &[
    "proxy_cache",
    "proxy_cache_key",
    "proxy_cache_valid",
    "proxy_cache_methods",
    "proxy_cache_min_uses",
    "proxy_cache_use_stale",
    "proxy_cache_lock",
    "proxy_cache_lock_timeout",
    "proxy_cache_lock_age",
    "proxy_cache_revalidate",
    "proxy_cache_convert_head",
    "proxy_cache_background_update",
    "proxy_cache_max_range_offset",
    "proxy_cache_bypass",
    "proxy_no_cache",
    "proxy_ignore_headers",
];

/// `proxy_cache_use_stale updating`, beside `proxy_next_upstream`'s bits.
pub const STALE_UPDATING: u32 = 1 << 12;

/// `proxy_cache_methods` bits.
pub const GET: u8 = 1;
pub const HEAD: u8 = 2;
pub const POST: u8 = 4;

/// A level's cache lines, each inherited on its own.
#[derive(Debug, Clone, Default)]
pub(super) struct CacheLayer {
    /// `proxy_cache ZONE` (`Some(None)`: `off`).
    zone: Option<Option<String>>,
    key: Option<String>,
    valid: Option<Vec<Valid>>,
    methods: Option<u8>,
    min_uses: Option<u32>,
    use_stale: Option<u32>,
    bypass: Option<Vec<String>>,
    no_cache: Option<Vec<String>>,
    ignore: Option<u8>,
    lock: Option<bool>,
    lock_timeout: Option<Duration>,
    lock_age: Option<Duration>,
    revalidate: Option<bool>,
    convert_head: Option<bool>,
    background_update: Option<bool>,
    max_range_offset: Option<u64>,
}

/// A location's proxy cache, merged, with nginx's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConf {
    pub zone: String,
    /// `proxy_cache_key`; `None`: nginx's, the proxied URL.
    pub key: Option<String>,
    pub valid: Vec<Valid>,
    /// GET and HEAD always, POST if listed.
    pub methods: u8,
    pub min_uses: u32,
    /// `proxy_next_upstream`'s bits, and [`STALE_UPDATING`].
    pub use_stale: u32,
    pub bypass: Vec<String>,
    pub no_cache: Vec<String>,
    /// [`crate::cache::ignore`] bits.
    pub ignore: u8,
    pub lock: bool,
    pub lock_timeout: Duration,
    pub lock_age: Duration,
    pub convert_head: bool,
    /// `proxy_cache_max_range_offset`; `None`: no limit.
    pub max_range_offset: Option<u64>,
}

impl CacheLayer {
    pub(super) fn merged(&self, parent: &CacheLayer) -> CacheLayer {
        CacheLayer {
            zone: self.zone.clone().or_else(|| parent.zone.clone()),
            key: self.key.clone().or_else(|| parent.key.clone()),
            valid: self.valid.clone().or_else(|| parent.valid.clone()),
            methods: self.methods.or(parent.methods),
            min_uses: self.min_uses.or(parent.min_uses),
            use_stale: self.use_stale.or(parent.use_stale),
            bypass: self.bypass.clone().or_else(|| parent.bypass.clone()),
            no_cache: self.no_cache.clone().or_else(|| parent.no_cache.clone()),
            ignore: self.ignore.or(parent.ignore),
            lock: self.lock.or(parent.lock),
            lock_timeout: self.lock_timeout.or(parent.lock_timeout),
            lock_age: self.lock_age.or(parent.lock_age),
            revalidate: self.revalidate.or(parent.revalidate),
            convert_head: self.convert_head.or(parent.convert_head),
            background_update: self.background_update.or(parent.background_update),
            max_range_offset: self.max_range_offset.or(parent.max_range_offset),
        }
    }

    /// The zone a merged level names, to check that it is declared.
    pub(super) fn zone(&self) -> Option<&str> {
        self.zone.as_ref()?.as_deref()
    }

    /// The merged level's settings where `proxy_cache` names a zone.
    pub(super) fn conf(&self) -> Option<CacheConf> {
        let zone = self.zone()?.to_owned();
        let use_stale = self.use_stale.unwrap_or(NextUpstream::OFF);
        Some(CacheConf {
            zone,
            key: self.key.clone(),
            valid: self.valid.clone().unwrap_or_default(),
            methods: self.methods.unwrap_or(0) | GET | HEAD,
            min_uses: self.min_uses.unwrap_or(1),
            use_stale: if use_stale & NextUpstream::OFF != 0 {
                0
            } else {
                use_stale
            },
            bypass: self.bypass.clone().unwrap_or_default(),
            no_cache: self.no_cache.clone().unwrap_or_default(),
            ignore: self.ignore.unwrap_or(0),
            lock: self.lock.unwrap_or(false),
            lock_timeout: self.lock_timeout.unwrap_or(Duration::from_secs(5)),
            lock_age: self.lock_age.unwrap_or(Duration::from_secs(5)),
            convert_head: self.convert_head.unwrap_or(true),
            max_range_offset: self.max_range_offset,
        })
    }
}

fn duplicate<T>(d: &Directive) -> Result<T, ConfError> {
    err(format!("\"{}\" directive is duplicate", d.name), d)
}

fn invalid<T>(value: &str, d: &Directive) -> Result<T, ConfError> {
    err(format!("invalid value \"{value}\""), d)
}

fn flag(d: &Directive) -> bool {
    d.args[0].eq_ignore_ascii_case("on")
}

/// One of [`DIRECTIVES`] at a level; `check` compiles a value with
/// variables (unknown ones are the caller's to report).
pub(super) fn directive(
    d: &Directive,
    layer: &mut CacheLayer,
    check: &mut dyn FnMut(&str, &Directive) -> Result<(), ConfError>,
) -> Result<(), ConfError> {
    match d.name.as_str() {
        "proxy_cache" => {
            if layer.zone.is_some() {
                return duplicate(d);
            }
            let value = &d.args[0];
            if value == "off" {
                layer.zone = Some(None);
                return Ok(());
            }
            if value.contains('$') {
                return err("variables in \"proxy_cache\" are not supported", d);
            }
            layer.zone = Some(Some(value.clone()));
        }
        "proxy_cache_key" => {
            if layer.key.is_some() {
                return duplicate(d);
            }
            check(&d.args[0], d)?;
            layer.key = Some(d.args[0].clone());
        }
        "proxy_cache_valid" => {
            let n = d.args.len() - 1;
            let Some(secs) = parse_time_sec(&d.args[n]) else {
                return err(format!("invalid time value \"{}\"", d.args[n]), d);
            };
            let lines = layer.valid.get_or_insert_with(Vec::new);
            if n == 0 {
                lines.push(Valid {
                    statuses: [200, 301, 302].into(),
                    any: false,
                    secs,
                });
                return Ok(());
            }
            for arg in &d.args[..n] {
                if arg == "any" {
                    lines.push(Valid {
                        statuses: [].into(),
                        any: true,
                        secs,
                    });
                    continue;
                }
                match parse_number(arg).filter(|&s| (100..=599).contains(&s)) {
                    Some(status) => lines.push(Valid {
                        statuses: [status as u16].into(),
                        any: false,
                        secs,
                    }),
                    None => return err(format!("invalid status \"{arg}\""), d),
                }
            }
        }
        "proxy_cache_methods" => {
            // A bitmask slot: lines add up, a value twice is warned about.
            let bits = layer.methods.get_or_insert(0);
            for m in &d.args {
                let bit = match m.to_ascii_uppercase().as_str() {
                    "GET" => GET,
                    "HEAD" => HEAD,
                    "POST" => POST,
                    _ => return invalid(m, d),
                };
                if *bits & bit != 0 {
                    tracing::warn!("duplicate value \"{m}\" in {}", d.loc);
                }
                *bits |= bit;
            }
        }
        "proxy_cache_min_uses" => {
            if layer.min_uses.is_some() {
                return duplicate(d);
            }
            layer.min_uses = Some(u32::try_from(number_arg(d, 0)?).unwrap_or(u32::MAX));
        }
        "proxy_cache_use_stale" => {
            let mut bits = layer.use_stale.unwrap_or(0);
            for v in &d.args {
                bits |= match v.to_ascii_lowercase().as_str() {
                    "error" => NextUpstream::ERROR,
                    "timeout" => NextUpstream::TIMEOUT,
                    "invalid_header" => NextUpstream::INVALID_HEADER,
                    "updating" => STALE_UPDATING,
                    "http_500" => NextUpstream::HTTP_500,
                    "http_502" => NextUpstream::HTTP_502,
                    "http_503" => NextUpstream::HTTP_503,
                    "http_504" => NextUpstream::HTTP_504,
                    "http_403" => NextUpstream::HTTP_403,
                    "http_404" => NextUpstream::HTTP_404,
                    "http_429" => NextUpstream::HTTP_429,
                    "non_idempotent" => NextUpstream::NON_IDEMPOTENT,
                    "off" => NextUpstream::OFF,
                    _ => return invalid(v, d),
                };
            }
            layer.use_stale = Some(bits);
        }
        "proxy_cache_lock" => layer.lock = Some(flag(d)),
        "proxy_cache_lock_timeout" | "proxy_cache_lock_age" => {
            let slot = if d.name == "proxy_cache_lock_age" {
                &mut layer.lock_age
            } else {
                &mut layer.lock_timeout
            };
            if slot.is_some() {
                return duplicate(d);
            }
            *slot = Some(time_arg(d, 0)?);
        }
        "proxy_cache_revalidate" => {
            if flag(d) {
                return err("\"proxy_cache_revalidate on\" is not supported", d);
            }
            layer.revalidate = Some(false);
        }
        "proxy_cache_background_update" => {
            if flag(d) {
                return err("\"proxy_cache_background_update on\" is not supported", d);
            }
            layer.background_update = Some(false);
        }
        "proxy_cache_convert_head" => layer.convert_head = Some(flag(d)),
        "proxy_cache_max_range_offset" => {
            if layer.max_range_offset.is_some() {
                return duplicate(d);
            }
            match parse_offset(&d.args[0]) {
                Some(n) => layer.max_range_offset = Some(n),
                None => return err(format!("\"{}\" directive invalid value", d.name), d),
            }
        }
        "proxy_cache_bypass" | "proxy_no_cache" => {
            for arg in &d.args {
                check(arg, d)?;
            }
            let slot = if d.name == "proxy_no_cache" {
                &mut layer.no_cache
            } else {
                &mut layer.bypass
            };
            slot.get_or_insert_with(Vec::new)
                .extend(d.args.iter().cloned());
        }
        "proxy_ignore_headers" => {
            let mut bits = layer.ignore.unwrap_or(0);
            for v in &d.args {
                bits |= match v.to_ascii_lowercase().as_str() {
                    "x-accel-expires" => ignore::X_ACCEL_EXPIRES,
                    "expires" => ignore::EXPIRES,
                    "cache-control" => ignore::CACHE_CONTROL,
                    "set-cookie" => ignore::SET_COOKIE,
                    "vary" => ignore::VARY,
                    "x-accel-buffering" => ignore::X_ACCEL_BUFFERING,
                    "x-accel-redirect" | "x-accel-limit-rate" | "x-accel-charset" => 0,
                    _ => return invalid(v, d),
                };
            }
            layer.ignore = Some(bits);
        }
        _ => {}
    }
    Ok(())
}

/// `proxy_cache_path PATH [levels=] keys_zone=NAME:SIZE [...]`, as
/// `ngx_http_file_cache_set_slot`: the zone's name, its size, and its
/// settings.
pub(super) fn path(
    d: &Directive,
    prefix: &Path,
) -> Result<(String, u64, crate::cache::Settings), ConfError> {
    let mut root = d.args[0].clone();
    if root.len() > 1 && root.ends_with('/') {
        root.pop();
    }
    let root = prefix.join(root);
    let mut levels = Vec::new();
    let mut zone: Option<(String, u64)> = None;
    let mut inactive = 600;
    let mut max_size = 0;
    for arg in &d.args[1..] {
        if let Some(v) = arg.strip_prefix("levels=") {
            levels = parse_levels(v)
                .map_or_else(|| err(format!("invalid \"levels\" \"{arg}\""), d), Ok)?;
        } else if let Some(v) = arg.strip_prefix("use_temp_path=") {
            if v != "on" && v != "off" {
                return err(
                    format!("invalid use_temp_path value \"{arg}\", it must be \"on\" or \"off\""),
                    d,
                );
            }
        } else if let Some(v) = arg.strip_prefix("keys_zone=") {
            let parsed = v
                .split_once(':')
                .and_then(|(name, size)| Some((name.to_owned(), parse_size(size)?)));
            match parsed {
                // nginx's floor: two pages.
                Some((_, size)) if size < 8192 => {
                    return err(format!("keys zone \"{arg}\" is too small"), d)
                }
                Some(z) => zone = Some(z),
                None => return err(format!("invalid keys zone size \"{arg}\""), d),
            }
        } else if let Some(v) = arg.strip_prefix("inactive=") {
            match parse_time_sec(v) {
                Some(s) => inactive = s,
                None => return err(format!("invalid inactive value \"{arg}\""), d),
            }
        } else if let Some(v) = arg.strip_prefix("max_size=") {
            match parse_offset(v) {
                Some(s) => max_size = s,
                None => return err(format!("invalid max_size value \"{arg}\""), d),
            }
        } else if let Some(v) = arg.strip_prefix("min_free=") {
            if parse_offset(v).is_none() {
                return err(format!("invalid min_free value \"{arg}\""), d);
            }
        } else if let Some((name, v)) = arg.split_once('=').filter(|(n, _)| {
            matches!(
                *n,
                "manager_files"
                    | "loader_files"
                    | "manager_sleep"
                    | "loader_sleep"
                    | "manager_threshold"
                    | "loader_threshold"
            )
        }) {
            let ok = if name.ends_with("_files") {
                parse_number(v).is_some_and(|n| n > 0)
            } else {
                parse_time(v).is_some()
            };
            if !ok {
                return err(format!("invalid {name} value \"{arg}\""), d);
            }
        } else {
            return err(format!("invalid parameter \"{arg}\""), d);
        }
    }
    let Some((name, size)) = zone.filter(|(n, _)| !n.is_empty()) else {
        return err(
            format!("\"{}\" must have \"keys_zone\" parameter", d.name),
            d,
        );
    };
    let settings = crate::cache::Settings {
        root,
        levels: levels.into(),
        inactive,
        max_size,
        // nginx: about 8,000 keys a megabyte.
        max_keys: (size / 128).max(1),
        keys_size: size,
    };
    Ok((name, size, settings))
}

/// `levels=1:2`: up to three levels of one or two characters.
fn parse_levels(v: &str) -> Option<Vec<u8>> {
    let levels: Vec<u8> = v
        .split(':')
        .map(|l| match l {
            "1" => Some(1),
            "2" => Some(2),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!levels.is_empty() && levels.len() <= 3).then_some(levels)
}
