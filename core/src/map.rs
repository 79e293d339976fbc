//! `map`: nginx's `ngx_http_map_module`. A variable whose value is looked
//! up from another value (the source, a template such as `$http_upgrade`
//! or `"$arg_a:$arg_b"`), evaluated where it is used.
//!
//! The lookup is nginx's: the source, lowercased, against the exact keys
//! (lowercased when read); with `hostnames`, a trailing dot dropped first,
//! then the most specific `*.example.com`/`.example.com` key, then the most
//! specific `www.example.*` key; then the `~` (and `~*`, without case)
//! regular expressions in order, against the source as it is; then
//! `default`, else the empty value. A value is a template: text and
//! variables, and, after a regex, its groups (`$1`, `$name`).
//!
//! Built at config load from the checked [`MapConf`]s; one map's source or
//! values may use another's variable, in any order, but not in a cycle.

use std::collections::HashMap;

use crate::pattern::Regex;

use crate::conf::model::{MapConf, MapKey, MapKind, UserVar};
use crate::conf::ConfError;
use crate::vars::{Template, Var, VarCtx};

/// The map variables of a configuration, by lowercase name (a later `map`
/// of a name replaces an earlier one, as in nginx).
#[derive(Default)]
pub struct MapNames(HashMap<String, Var>);

impl MapNames {
    /// The variables of `maps`, and of `set` (`user`, by index).
    pub fn new(maps: &[MapConf], user: &[UserVar]) -> MapNames {
        let mut names = HashMap::new();
        for (i, v) in user.iter().enumerate() {
            let var = Var::User(i as u32, v.group);
            names.insert(v.name.clone(), var);
        }
        for (i, m) in maps.iter().enumerate() {
            names.insert(m.name.clone(), Var::Map(i as u32));
        }
        MapNames(names)
    }

    /// The variable `name` (lowercase, without `$`) if a map or `set`
    /// defines it.
    pub fn var(&self, name: &str) -> Option<Var> {
        self.0.get(name).cloned()
    }
}

/// One compiled `map` block.
#[derive(Debug)]
pub struct Map {
    /// The variable, lowercase, without `$`.
    pub name: String,
    source: Template,
    hostnames: bool,
    values: Vec<Template>,
    /// Lowercased key -> index in `values`.
    exact: HashMap<Box<[u8]>, usize>,
    /// `*.example.com` and `.example.com` by `example.com`; the flag says
    /// whether the name itself matches too (the `.` form).
    head: HashMap<Box<[u8]>, (usize, bool)>,
    /// `www.example.*` by `www.example`.
    tail: HashMap<Box<[u8]>, usize>,
    regexes: Vec<(Regex, usize)>,
    default: Option<Template>,
    /// A `geo` or `split_clients` block's table (boxed: maps are the
    /// usual kind).
    other: Option<Box<Other>>,
}

/// The tables of the map-like variables of other modules.
#[derive(Debug)]
enum Other {
    Geo(crate::geo::Geo),
    /// Each share's upper bound (0: the rest) and value.
    Split(Box<[(u32, Box<[u8]>)]>),
}

fn compile(text: &str, scope: &dyn Fn(&str) -> Option<Var>) -> Result<Template, ConfError> {
    Template::compile_with(text, scope).map_err(|e| ConfError::bare(e.to_string()))
}

impl Map {
    /// Builds `conf`; `names` resolves the other maps' variables.
    pub fn build(conf: &MapConf, names: &MapNames) -> Result<Map, ConfError> {
        let scope = |n: &str| names.var(n);
        let mut map = Map {
            name: conf.name.clone(),
            // (A source that reads the answer was checked to be read
            // only by the header filters.)
            source: compile(&conf.source, &|n| {
                names.var(n).or_else(|| crate::vars::sent_var(n))
            })?,
            hostnames: conf.hostnames,
            values: Vec::with_capacity(conf.entries.len()),
            exact: HashMap::new(),
            head: HashMap::new(),
            tail: HashMap::new(),
            regexes: Vec::new(),
            default: conf
                .default
                .as_deref()
                .map(|d| compile(d, &scope))
                .transpose()?,
            other: match &conf.kind {
                MapKind::Map => None,
                MapKind::Geo(g) => Some(Box::new(Other::Geo(crate::geo::Geo::build(g)))),
                MapKind::Split(shares) => Some(Box::new(Other::Split(
                    shares
                        .iter()
                        .map(|(bound, value)| (*bound, value.as_bytes().into()))
                        .collect(),
                ))),
            },
        };
        for entry in &conf.entries {
            let i = map.values.len();
            let value = match &entry.key {
                MapKey::Regex { pattern, caseless } => {
                    let re = crate::vars::regex(pattern, *caseless)
                        .map_err(|e| ConfError::at(e, entry.loc.clone()))?;
                    // The regex's named groups are variables of its value.
                    let groups: Vec<(String, u8)> = re
                        .capture_names()
                        .into_iter()
                        .enumerate()
                        .filter_map(|(g, n)| Some((n?.to_ascii_lowercase(), u8::try_from(g).ok()?)))
                        .collect();
                    let scope = |n: &str| {
                        groups
                            .iter()
                            .find(|(name, _)| name == n)
                            .map(|&(_, g)| Var::Capture(g))
                            .or_else(|| names.var(n))
                    };
                    let value = compile(&entry.value, &scope)?;
                    map.regexes.push((re, i));
                    value
                }
                MapKey::Exact(key) => {
                    map.exact.insert(key.as_bytes().into(), i);
                    compile(&entry.value, &scope)?
                }
                MapKey::Head { suffix, dot } => {
                    map.head.insert(suffix.as_bytes().into(), (i, *dot));
                    compile(&entry.value, &scope)?
                }
                MapKey::Tail(prefix) => {
                    map.tail.insert(prefix.as_bytes().into(), i);
                    compile(&entry.value, &scope)?
                }
            };
            map.values.push(value);
        }
        Ok(map)
    }

    /// The maps whose variables this one's templates use.
    pub fn uses(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(&self.source)
            .chain(&self.values)
            .chain(&self.default)
            .flat_map(Template::maps)
    }

    /// Appends the value for the request to `out`.
    pub fn eval(&self, cx: &VarCtx<'_>, out: &mut Vec<u8>) {
        let mut source = Vec::new();
        match self.other.as_deref() {
            None => {}
            Some(Other::Geo(geo)) => {
                let ip = if geo.has_source {
                    self.source.eval_into(cx, &mut source);
                    geo.address(&source, cx)
                } else {
                    geo.client(cx)
                };
                return out.extend_from_slice(geo.find(ip));
            }
            Some(Other::Split(shares)) => {
                self.source.eval_into(cx, &mut source);
                let hash = murmur_hash2(&source);
                if let Some((_, value)) = shares
                    .iter()
                    .find(|(bound, _)| hash < *bound || *bound == 0)
                {
                    out.extend_from_slice(value);
                }
                return;
            }
        }
        self.source.eval_into(cx, &mut source);
        if self.hostnames && source.last() == Some(&b'.') {
            source.pop();
        }
        if let Some(value) = self.find(&source) {
            return value.eval_into(cx, out);
        }
        // nginx tries the regexes only on a source that is not empty.
        for (re, i) in self.regexes.iter().filter(|_| !source.is_empty()) {
            if let Some(groups) = re.captures(&source) {
                let with_groups = VarCtx {
                    captures: Some(&groups),
                    ..*cx
                };
                return self.values[*i].eval_into(&with_groups, out);
            }
        }
        if let Some(d) = &self.default {
            d.eval_into(cx, out);
        }
    }

    /// The exact and wildcard keys (nginx's combined hash).
    fn find(&self, source: &[u8]) -> Option<&Template> {
        let lower = source.to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&lower[..]) {
            return Some(&self.values[i]);
        }
        if !self.hostnames {
            return None;
        }
        if let Some(&(i, true)) = self.head.get(&lower[..]) {
            return Some(&self.values[i]);
        }
        // The longest suffix after a dot is the most specific key.
        for (at, _) in lower.iter().enumerate().filter(|(_, &c)| c == b'.') {
            if let Some(&(i, _)) = self.head.get(&lower[at + 1..]) {
                return Some(&self.values[i]);
            }
        }
        for (at, _) in lower.iter().enumerate().rev().filter(|(_, &c)| c == b'.') {
            if let Some(&i) = self.tail.get(&lower[..at]) {
                return Some(&self.values[i]);
            }
        }
        None
    }
}

/// nginx's `ngx_murmur_hash2`, which `split_clients` uses.
fn murmur_hash2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Builds every map, refusing a cycle of map variables (nginx finds one
/// only when a request evaluates it, and answers 500).
pub fn build_all(confs: &[MapConf], user: &[UserVar]) -> Result<Box<[Map]>, ConfError> {
    let names = MapNames::new(confs, user);
    let maps = confs
        .iter()
        .map(|c| Map::build(c, &names))
        .collect::<Result<Vec<_>, _>>()?;
    // 0: not seen, 1: on the current path, 2: done.
    let mut state = vec![0u8; maps.len()];
    fn visit(i: usize, maps: &[Map], state: &mut [u8], confs: &[MapConf]) -> Result<(), ConfError> {
        match state[i] {
            1 => {
                return Err(ConfError::at(
                    format!("cycle in the \"{}\" map variable", confs[i].name),
                    confs[i].loc.clone(),
                ))
            }
            2 => return Ok(()),
            _ => {}
        }
        state[i] = 1;
        for j in maps[i].uses() {
            visit(j as usize, maps, state, confs)?;
        }
        state[i] = 2;
        Ok(())
    }
    for i in 0..maps.len() {
        visit(i, &maps, &mut state, confs)?;
    }
    Ok(maps.into_boxed_slice())
}
