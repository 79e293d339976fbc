//! Metrics in Prometheus text format (`metrics;` in a location): the peers'
//! counters the core keeps, module panics, and the counters and gauges
//! modules register. Registration happens at config load; the request path
//! only bumps atomics.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use waypost_module_api::{MetricCell, MetricKind};

use crate::runtime::Runtime;

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

/// The whole exposition, for the running configuration.
pub fn render(runtime: &Runtime) -> String {
    let mut out = String::with_capacity(4096);
    let upstreams = &runtime.upstreams;

    type PeerValue = fn(&crate::upstream::Upstream, usize) -> f64;
    let peer_series: [(&str, &str, &str, PeerValue); 4] = [
        (
            "waypost_upstream_peer_requests_total",
            "counter",
            "Tries started on the peer under the running configuration.",
            |u, i| u.stats[i].requests.load(Relaxed) as f64,
        ),
        (
            "waypost_upstream_peer_active",
            "gauge",
            "Tries in flight on the peer.",
            |u, i| f64::from(u.live[i].conns.load(Relaxed)),
        ),
        (
            "waypost_upstream_peer_fails",
            "gauge",
            "Failures counted against the peer by max_fails rules.",
            |u, i| f64::from(u.live[i].fails.load(Relaxed)),
        ),
        (
            "waypost_upstream_peer_latency_seconds",
            "gauge",
            "EWMA of the time to the response header (0 before the first).",
            |u, i| u.stats[i].latency_us.load(Relaxed) as f64 / 1e6,
        ),
    ];
    for (name, kind, help, value) in peer_series {
        help_line(&mut out, name, kind, help);
        for up in upstreams {
            for i in 0..up.configs.len() {
                out.push_str(name);
                out.push_str("{upstream=\"");
                label(&mut out, &up.name);
                out.push_str("\",peer=\"");
                label(&mut out, &up.addrs[i].to_string());
                let _ = writeln!(out, "\"}} {}", value(up, i));
            }
        }
    }

    help_line(
        &mut out,
        "waypost_module_panics_total",
        "counter",
        "Module hooks that panicked (the try failed).",
    );
    let mut seen: Vec<&str> = Vec::new();
    for up in upstreams {
        let module = &up.balancer.module;
        if !seen.contains(&module.name.as_str()) {
            seen.push(&module.name);
            out.push_str("waypost_module_panics_total{module=\"");
            label(&mut out, &module.name);
            let _ = writeln!(out, "\"}} {}", module.panics.load(Relaxed));
        }
    }

    let all = MODULE_METRICS.lock().unwrap_or_else(|p| p.into_inner());
    let mut families: Vec<(&str, &str)> = all
        .iter()
        .map(|m| (m.module.as_str(), m.name.as_str()))
        .collect();
    families.sort_unstable();
    families.dedup();
    for (module, name) in families {
        let members: Vec<&ModuleMetric> = all
            .iter()
            .filter(|m| m.module == module && m.name == name)
            .collect();
        let Some(first) = members.first() else {
            continue;
        };
        let (family, kind) = match first.kind {
            MetricKind::Counter => (format!("waypost_module_{name}_total"), "counter"),
            MetricKind::Gauge => (format!("waypost_module_{name}"), "gauge"),
        };
        help_line(&mut out, &family, kind, &first.help);
        for m in members {
            out.push_str(&family);
            out.push_str("{module=\"");
            label(&mut out, &m.module);
            for (k, v) in &m.labels {
                out.push_str("\",");
                out.push_str(k);
                out.push_str("=\"");
                label(&mut out, v);
            }
            let value = m.cell.value.load(Relaxed);
            match m.kind {
                MetricKind::Counter => {
                    let _ = writeln!(out, "\"}} {value}");
                }
                MetricKind::Gauge => {
                    let _ = writeln!(out, "\"}} {}", value as i64);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
