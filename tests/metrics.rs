//! `metrics;`: the Prometheus exposition, read with a real text-format
//! parser; counts match the requests sent. Module metrics (ABI 1.1) and
//! the alert for a module whose hooks keep failing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use waypost_tests::{bin_dir, free_ports, get, Server};

/// Parses the exposition as a scraper would and returns every sample as
/// `name{label="v",...}` (labels sorted) -> value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let lines = r.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid text format");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample kind {other:?}"),
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), value)
        })
        .collect()
}

fn conf(proxy: u16, backends: [u16; 2], module_line: &str, balancer: &str) -> String {
    let [a, b] = backends;
    format!(
        "{module_line}worker_processes 1;\n\
         error_log logs/error.log notice;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream app {{ {balancer} server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       location / {{ proxy_pass http://app; }}\n\
         \x20       location = /metrics {{ metrics; }}\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{a}; location / {{ return 200 a; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{b}; location / {{ return 200 b; }} }}\n\
         }}\n"
    )
}

#[test]
fn peer_counters_match_the_requests_sent() {
    let [proxy, a, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let server = Server::waypost(&conf(proxy, [a, b], "", ""), &[proxy, a, b]);
    for _ in 0..10 {
        assert_eq!(get(proxy, "/").status, 200);
    }
    let m = scrape(proxy);
    let tries = |port: u16| {
        m[&format!(
            "waypost_upstream_peer_requests_total{{peer=\"127.0.0.1:{port}\",upstream=\"app\"}}"
        )]
    };
    // Round robin over two equal peers: five each.
    assert_eq!((tries(a), tries(b)), (5.0, 5.0));
    for port in [a, b] {
        let key = format!("{{peer=\"127.0.0.1:{port}\",upstream=\"app\"}}");
        assert_eq!(m[&format!("waypost_upstream_peer_active{key}")], 0.0);
        assert_eq!(m[&format!("waypost_upstream_peer_fails{key}")], 0.0);
        let latency = m[&format!("waypost_upstream_peer_latency_seconds{key}")];
        assert!(latency > 0.0 && latency < 5.0, "{latency}");
    }
    assert_eq!(
        m["waypost_module_panics_total{module=\"round_robin\"}"],
        0.0
    );
    drop(server);
}

#[test]
fn module_metrics_are_exported_and_survive_a_reload_and_failing_hooks_raise_an_alert() {
    let so = bin_dir().join("libpanicky_module.so");
    assert!(so.is_file(), "run `cargo build --workspace` first");
    let [proxy, a, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let module_line = format!("load_module {};\n", so.display());
    let text = conf(proxy, [a, b], &module_line, "panicky;");
    let server = Server::waypost(&text, &[proxy, a, b]);
    let seen = "waypost_module_requests_seen_total{module=\"panicky\",upstream=\"app\"}";
    let panics = "waypost_module_panics_total{module=\"panicky\"}";

    for _ in 0..3 {
        assert_eq!(get(proxy, "/").status, 200);
    }
    assert_eq!(scrape(proxy)[seen], 3.0);

    // Ten failing hooks in a row: every try fails (502) and the upstream
    // raises one alert naming the module.
    for _ in 0..10 {
        assert_eq!(get(proxy, "/?panic=1").status, 502);
    }
    let m = scrape(proxy);
    assert_eq!(m[panics], 10.0);
    assert_eq!(m[seen], 13.0);
    let log = server.read("logs/error.log");
    let alerts: Vec<&str> = log.lines().filter(|l| l.contains("[alert]")).collect();
    assert_eq!(alerts.len(), 1, "{log}");
    assert!(
        alerts[0].ends_with("module \"panicky\" failed 10 times in a row in upstream \"app\""),
        "{}",
        alerts[0]
    );
    // A success in between restarts the run: nine more failures raise none.
    assert_eq!(get(proxy, "/").status, 200);
    for _ in 0..9 {
        assert_eq!(get(proxy, "/?panic=1").status, 502);
    }
    let log = server.read("logs/error.log");
    assert_eq!(log.lines().filter(|l| l.contains("[alert]")).count(), 1);

    // A reload builds a new upstream object; the module's counter goes on
    // from where it was, as a Prometheus counter must.
    server.reload_with(&format!("{text}# reloaded\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .read("logs/error.log")
        .contains("configuration reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            server.read("logs/error.log")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = scrape(proxy)[seen];
    assert!(before >= 23.0, "{before}");
    assert_eq!(get(proxy, "/").status, 200);
    assert_eq!(scrape(proxy)[seen], before + 1.0);
}
