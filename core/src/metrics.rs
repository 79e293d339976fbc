//! Metrics in Prometheus text format (`metrics;` in a location) and as JSON
//! (`status;`): the peers' counters and states the core keeps, upstream
//! connections, reloads, module panics, and the counters and gauges
//! modules register. Registration happens at config load; the request path
//! only bumps atomics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use waypost_module_api::{MetricCell, MetricKind};

use crate::runtime::Runtime;
use crate::upstream::Upstream;

struct ModuleMetric {
    module: String,
    /// After `module`: `upstream` for a balancer's, then the module's own.
    labels: Vec<(String, String)>,
    name: String,
    help: String,
    kind: MetricKind,
    cell: &'static MetricCell,
}

/// Every module metric ever registered. Cells are leaked on purpose: a
/// registration in a later configuration returns the same cell (counters
/// keep counting across reloads), so they number the distinct names, not
/// the reloads.
static MODULE_METRICS: Mutex<Vec<ModuleMetric>> = Mutex::new(Vec::new());

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_label(name: &str) -> bool {
    valid_name(name) && name != "module"
}

/// A module's counter or gauge with these labels; the same cell for the
/// same (module, labels, name).
pub fn register_module(
    module: &str,
    labels: Vec<(String, String)>,
    kind: MetricKind,
    name: &str,
    help: &str,
) -> Result<&'static MetricCell, String> {
    if !valid_name(name) {
        return Err(format!(
            "invalid metric name \"{name}\" in module \"{module}\": [a-z_][a-z0-9_]* expected"
        ));
    }
    if let Some((bad, _)) = labels.iter().find(|(k, _)| !valid_label(k)) {
        return Err(format!(
            "invalid label name \"{bad}\" for metric \"{name}\" in module \"{module}\""
        ));
    }
    let mut all = MODULE_METRICS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = all.iter().find(|m| m.module == module && m.name == name) {
        if m.kind != kind {
            return Err(format!(
                "metric \"{name}\" of module \"{module}\" is registered both as a counter and as a gauge"
            ));
        }
    }
    if let Some(m) = all
        .iter()
        .find(|m| m.module == module && m.name == name && m.labels == labels)
    {
        return Ok(m.cell);
    }
    let cell: &'static MetricCell = Box::leak(Box::default());
    all.push(ModuleMetric {
        module: module.to_owned(),
        labels,
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        cell,
    });
    Ok(cell)
}

/// Escapes a label value as the text format wants.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn help_line(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Reloads that succeeded and that failed, over the process's life.
static RELOADS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Counts a reload: `ok`, or failed (the running configuration stays).
pub fn reload_done(ok: bool) {
    RELOADS[usize::from(!ok)].fetch_add(1, Relaxed);
}

/// Counts one reload when dropped: failed, unless [`Reload::succeeded`]
/// was called, so every early return after an error counts as a failure.
pub struct Reload {
    ok: bool,
}

impl Reload {
    pub fn start() -> Reload {
        Reload { ok: false }
    }

    pub fn succeeded(mut self) {
        self.ok = true;
    }
}

impl Drop for Reload {
    fn drop(&mut self) {
        reload_done(self.ok);
    }
}

/// A peer's state, as `waypost_upstream_peer_state` and `status;` show it.
const STATES: [&str; 4] = ["up", "down", "unhealthy", "failed"];

/// Index into [`STATES`]: `down` in the configuration, else down by health
/// checks, else disabled by max_fails within fail_timeout (module-api's
/// `Peers::is_available` rule), else up.
fn peer_state(up: &Upstream, i: usize, now: u64) -> usize {
    let config = &up.configs[i];
    if config.down {
        return 1;
    }
    if up.stats[i].health.load(Relaxed) != 0 {
        return 2;
    }
    let live = &up.live[i];
    if !up.single
        && config.max_fails > 0
        && live.fails.load(Relaxed) >= config.max_fails
        && now.saturating_sub(live.checked.load(Relaxed)) <= u64::from(config.fail_timeout)
    {
        return 3;
    }
    0
}

/// Status classes, as the `code` label and `status;` name them.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

struct PeerSnap<'a> {
    server: &'a str,
    addr: String,
    state: usize,
    requests: u64,
    responses: [u64; 5],
    failures: u64,
    active: u32,
    fails: u32,
    latency_seconds: f64,
    /// Health probes passed, failed; `None` without `health_check`.
    probes: Option<[u64; 2]>,
}

struct UpstreamSnap<'a> {
    name: &'a str,
    peers: Vec<PeerSnap<'a>>,
    active: u64,
    idle: u64,
}

struct MetricSnap {
    module: String,
    labels: Vec<(String, String)>,
    /// The exposed family: `waypost_module_NAME[_total]`.
    family: String,
    help: String,
    kind: MetricKind,
    value: u64,
}

impl MetricSnap {
    fn value(&self) -> Number {
        match self.kind {
            MetricKind::Counter => Number::Unsigned(self.value),
            MetricKind::Gauge => Number::Signed(self.value as i64),
        }
    }
}

enum Number {
    Unsigned(u64),
    Signed(i64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Unsigned(n) => n.fmt(f),
            Number::Signed(n) => n.fmt(f),
        }
    }
}

/// Every value read once, so that both formats show the same numbers.
struct Snapshot<'a> {
    upstreams: Vec<UpstreamSnap<'a>>,
    /// Balancer modules' panics, by module, in the upstreams' order.
    panics: Vec<(&'a str, u64)>,
    /// Hooks slower than 1 ms, by module (balancers, then filters).
    slow_hooks: Vec<(&'a str, u64)>,
    /// Module metrics, sorted by family and module, registration order
    /// within.
    module_metrics: Vec<MetricSnap>,
    /// Reloads ok, failed.
    reloads: [u64; 2],
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn snapshot(runtime: &Runtime) -> Snapshot<'_> {
    let now = now_secs();
    let upstreams = runtime
        .upstreams
        .iter()
        .map(|up| {
            let peers: Vec<PeerSnap<'_>> = (0..up.configs.len())
                .map(|i| PeerSnap {
                    server: up.configs[i].server.as_str(),
                    addr: up.addrs[i].to_string(),
                    state: peer_state(up, i, now),
                    requests: up.stats[i].requests.load(Relaxed),
                    responses: std::array::from_fn(|c| up.counts[i].responses[c].load(Relaxed)),
                    failures: up.counts[i].failures.load(Relaxed),
                    active: up.live[i].conns.load(Relaxed),
                    fails: up.live[i].fails.load(Relaxed),
                    latency_seconds: up.stats[i].latency_us.load(Relaxed) as f64 / 1e6,
                    probes: up.health.as_ref().map(|_| {
                        [
                            up.probes[i].passed.load(Relaxed),
                            up.probes[i].failed.load(Relaxed),
                        ]
                    }),
                })
                .collect();
            UpstreamSnap {
                name: &up.name,
                active: peers.iter().map(|p| u64::from(p.active)).sum(),
                idle: up.pool.idle_count() as u64,
                peers,
            }
        })
        .collect();

    let mut panics: Vec<(&str, u64)> = Vec::new();
    for up in &runtime.upstreams {
        let module = &up.balancer.module;
        if !panics.iter().any(|(name, _)| *name == module.name) {
            panics.push((&module.name, module.panics.load(Relaxed)));
        }
    }

    let mut slow_hooks: Vec<(&str, u64)> = Vec::new();
    let modules = runtime
        .upstreams
        .iter()
        .map(|up| &up.balancer.module)
        .chain(runtime.filters.iter().map(|f| &f.module));
    for module in modules {
        if !slow_hooks.iter().any(|(name, _)| *name == module.name) {
            slow_hooks.push((&module.name, module.slow_hooks.load(Relaxed)));
        }
    }

    let all = MODULE_METRICS.lock().unwrap_or_else(|p| p.into_inner());
    let mut module_metrics: Vec<MetricSnap> = all
        .iter()
        .map(|m| MetricSnap {
            module: m.module.clone(),
            labels: m.labels.clone(),
            family: match m.kind {
                MetricKind::Counter => format!("waypost_module_{}_total", m.name),
                MetricKind::Gauge => format!("waypost_module_{}", m.name),
            },
            help: m.help.clone(),
            kind: m.kind,
            value: m.cell.value.load(Relaxed),
        })
        .collect();
    drop(all);
    // By family, so that each is one group under one HELP line even when
    // two modules register the same name; stable, so registration order
    // within.
    module_metrics.sort_by(|a, b| (&a.family, &a.module).cmp(&(&b.family, &b.module)));

    Snapshot {
        upstreams,
        panics,
        slow_hooks,
        module_metrics,
        reloads: [RELOADS[0].load(Relaxed), RELOADS[1].load(Relaxed)],
    }
}

/// `{upstream="..",peer=".."` (open: the caller adds labels and the `}`).
fn peer_labels(out: &mut String, name: &str, up: &UpstreamSnap<'_>, peer: &PeerSnap<'_>) {
    out.push_str(name);
    out.push_str("{upstream=\"");
    label(out, up.name);
    out.push_str("\",peer=\"");
    label(out, &peer.addr);
    out.push('"');
}

/// The whole exposition, for the running configuration.
pub fn render(runtime: &Runtime) -> String {
    let snap = snapshot(runtime);
    let mut out = String::with_capacity(4096);

    type PeerValue = fn(&PeerSnap<'_>) -> String;
    let peer_series: [(&str, &str, &str, PeerValue); 5] = [
        (
            "waypost_upstream_peer_requests_total",
            "counter",
            "Tries started on the peer under the running configuration.",
            |p| p.requests.to_string(),
        ),
        (
            "waypost_upstream_peer_failures_total",
            "counter",
            "Tries on the peer that failed (no usable response, or a status proxy_next_upstream counts as failed).",
            |p| p.failures.to_string(),
        ),
        (
            "waypost_upstream_peer_active",
            "gauge",
            "Tries in flight on the peer.",
            |p| p.active.to_string(),
        ),
        (
            "waypost_upstream_peer_fails",
            "gauge",
            "Failures counted against the peer by max_fails rules.",
            |p| p.fails.to_string(),
        ),
        (
            "waypost_upstream_peer_latency_seconds",
            "gauge",
            "EWMA of the time to the response header (0 before the first).",
            |p| p.latency_seconds.to_string(),
        ),
    ];
    for (name, kind, help, value) in peer_series {
        help_line(&mut out, name, kind, help);
        for up in &snap.upstreams {
            for peer in &up.peers {
                peer_labels(&mut out, name, up, peer);
                let _ = writeln!(out, "}} {}", value(peer));
            }
        }
    }

    let name = "waypost_upstream_peer_responses_total";
    help_line(
        &mut out,
        name,
        "counter",
        "Response headers received from the peer, by status class, under the running configuration.",
    );
    for up in &snap.upstreams {
        for peer in &up.peers {
            for (class, n) in CLASSES.iter().zip(peer.responses) {
                peer_labels(&mut out, name, up, peer);
                let _ = writeln!(out, ",code=\"{class}\"}} {n}");
            }
        }
    }

    let name = "waypost_upstream_peer_state";
    help_line(
        &mut out,
        name,
        "gauge",
        "1 for the peer's current state (up, down in the configuration, unhealthy by health checks, failed by max_fails), 0 for the others.",
    );
    for up in &snap.upstreams {
        for peer in &up.peers {
            for (i, state) in STATES.iter().enumerate() {
                peer_labels(&mut out, name, up, peer);
                let _ = writeln!(out, ",state=\"{state}\"}} {}", u8::from(i == peer.state));
            }
        }
    }

    let name = "waypost_upstream_peer_health_checks_total";
    help_line(
        &mut out,
        name,
        "counter",
        "Active health check probes of the peer, by result (upstreams with health_check).",
    );
    for up in &snap.upstreams {
        for peer in &up.peers {
            let Some(probes) = peer.probes else { continue };
            for (result, n) in ["passed", "failed"].iter().zip(probes) {
                peer_labels(&mut out, name, up, peer);
                let _ = writeln!(out, ",result=\"{result}\"}} {n}");
            }
        }
    }

    let name = "waypost_upstream_connections";
    help_line(
        &mut out,
        name,
        "gauge",
        "Upstream connections: active (tries in flight) and idle (kept by keepalive).",
    );
    for up in &snap.upstreams {
        for (state, n) in [("active", up.active), ("idle", up.idle)] {
            out.push_str(name);
            out.push_str("{upstream=\"");
            label(&mut out, up.name);
            let _ = writeln!(out, "\",state=\"{state}\"}} {n}");
        }
    }

    let name = "waypost_reloads_total";
    help_line(
        &mut out,
        name,
        "counter",
        "Configuration reloads, by result (failed: the running configuration stayed).",
    );
    for (result, n) in ["ok", "failed"].iter().zip(snap.reloads) {
        let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
    }

    help_line(
        &mut out,
        "waypost_module_panics_total",
        "counter",
        "Module hooks that panicked (the try failed).",
    );
    for (module, n) in &snap.panics {
        out.push_str("waypost_module_panics_total{module=\"");
        label(&mut out, module);
        let _ = writeln!(out, "\"}} {n}");
    }

    help_line(
        &mut out,
        "waypost_module_slow_hooks_total",
        "counter",
        "Module hook calls that took 1 ms or more (a hook cannot be pre-empted: its worker waited).",
    );
    for (module, n) in &snap.slow_hooks {
        out.push_str("waypost_module_slow_hooks_total{module=\"");
        label(&mut out, module);
        let _ = writeln!(out, "\"}} {n}");
    }

    let mut family: Option<&str> = None;
    for m in &snap.module_metrics {
        if family != Some(m.family.as_str()) {
            family = Some(&m.family);
            let kind = match m.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            help_line(&mut out, &m.family, kind, &m.help);
        }
        out.push_str(&m.family);
        out.push_str("{module=\"");
        label(&mut out, &m.module);
        for (k, v) in &m.labels {
            out.push_str("\",");
            out.push_str(k);
            out.push_str("=\"");
            label(&mut out, v);
        }
        let _ = writeln!(out, "\"}} {}", m.value());
    }
    out
}

/// `status;`: the same numbers as [`render`], as JSON for people and
/// scripts.
pub fn status(runtime: &Runtime) -> String {
    let snap = snapshot(runtime);
    let mut upstreams = Map::new();
    for up in &snap.upstreams {
        let peers: Vec<Value> = up
            .peers
            .iter()
            .map(|p| {
                let responses: Map<String, Value> = CLASSES
                    .iter()
                    .zip(p.responses)
                    .map(|(class, n)| ((*class).to_owned(), n.into()))
                    .collect();
                let mut peer = json!({
                    "server": p.server,
                    "addr": p.addr,
                    "state": STATES[p.state],
                    "requests": p.requests,
                    "responses": responses,
                    "failures": p.failures,
                    "active": p.active,
                    "fails": p.fails,
                    "latency_seconds": p.latency_seconds,
                });
                if let (Some([passed, failed]), Some(map)) = (p.probes, peer.as_object_mut()) {
                    map.insert(
                        "health_checks".to_owned(),
                        json!({ "passed": passed, "failed": failed }),
                    );
                }
                peer
            })
            .collect();
        upstreams.insert(
            up.name.to_owned(),
            json!({
                "peers": peers,
                "connections": { "active": up.active, "idle": up.idle },
            }),
        );
    }

    // Module name -> panics (balancers) and metrics.
    let mut by_module: BTreeMap<&str, (Option<u64>, Vec<Value>)> = BTreeMap::new();
    for (name, n) in &snap.panics {
        by_module.entry(name).or_default().0 = Some(*n);
    }
    let mut slow: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, n) in &snap.slow_hooks {
        by_module.entry(name).or_default();
        slow.insert(name, *n);
    }
    for m in &snap.module_metrics {
        let labels: Map<String, Value> = m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        let value: Value = match m.value() {
            Number::Unsigned(n) => n.into(),
            Number::Signed(n) => n.into(),
        };
        let kind = match m.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        by_module.entry(&m.module).or_default().1.push(json!({
            "name": m.family,
            "type": kind,
            "labels": labels,
            "value": value,
        }));
    }
    let modules: Map<String, Value> = by_module
        .into_iter()
        .map(|(name, (panics, metrics))| {
            let mut entry = Map::new();
            if let Some(n) = panics {
                entry.insert("panics".to_owned(), n.into());
            }
            if let Some(n) = slow.get(name) {
                entry.insert("slow_hooks".to_owned(), (*n).into());
            }
            entry.insert("metrics".to_owned(), metrics.into());
            (name.to_owned(), entry.into())
        })
        .collect();

    let body = json!({
        "upstreams": upstreams,
        "reloads": { "ok": snap.reloads[0], "failed": snap.reloads[1] },
        "modules": modules,
    });
    let mut text = body.to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_count_by_class_and_reloads_by_result() {
        let counts = crate::upstream::peers::PeerCounts::default();
        for status in [100, 200, 204, 299, 301, 404, 499, 502, 599, 0, 99, 600, 999] {
            counts.response(status);
        }
        let by_class = counts.responses.each_ref().map(|c| c.load(Relaxed));
        assert_eq!(by_class, [1, 3, 1, 2, 2]);

        // The only test that reloads: the counts start at 0.
        {
            let _failed = Reload::start();
        }
        Reload::start().succeeded();
        reload_done(false);
        assert_eq!(RELOADS.each_ref().map(|c| c.load(Relaxed)), [1, 2]);
    }

    #[test]
    fn same_name_same_cell_and_kinds_do_not_mix() {
        let up = |u: &str| vec![("upstream".to_owned(), u.to_owned())];
        let a = register_module("m", up("u"), MetricKind::Counter, "hits", "Hits").unwrap();
        let b = register_module("m", up("u"), MetricKind::Counter, "hits", "Hits").unwrap();
        assert!(std::ptr::eq(a, b));
        let other = register_module("m", up("v"), MetricKind::Counter, "hits", "Hits").unwrap();
        assert!(!std::ptr::eq(a, other));
        assert!(
            register_module("m", up("u"), MetricKind::Gauge, "hits", "Hits")
                .unwrap_err()
                .contains("both as a counter and as a gauge")
        );
        assert!(
            register_module("m", up("u"), MetricKind::Gauge, "Bad-Name", "")
                .unwrap_err()
                .starts_with("invalid metric name \"Bad-Name\"")
        );
        let module_label = vec![("module".to_owned(), "x".to_owned())];
        assert!(
            register_module("m", module_label, MetricKind::Gauge, "g", "")
                .unwrap_err()
                .starts_with("invalid label name \"module\"")
        );
    }
}
