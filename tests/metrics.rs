//! `metrics;`: the Prometheus exposition, read with a real text-format
//! parser; counts match the requests sent. Module metrics (ABI 1.1) and
//! the alert for a module whose hooks keep failing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use waypost_tests::{built_module, free_ports, get, Server};

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
    let (server, proxy, text) = panicky_proxy();
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
    // A hook that takes 5 ms (the fixture spins in `get`; the `init_peer`
    // right before it is timed with it) is counted and logged with the
    // module's name.
    assert_eq!(
        scrape(proxy)["waypost_module_slow_hooks_total{module=\"panicky\"}"],
        0.0
    );
    assert_eq!(get(proxy, "/?spin=5").status, 200);
    assert_eq!(
        scrape(proxy)["waypost_module_slow_hooks_total{module=\"panicky\"}"],
        1.0
    );
    let log = server.read("logs/error.log");
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("hook init_peer+get took"))
        .collect();
    assert_eq!(slow.len(), 1, "{log}");
    assert!(
        slow[0].contains("[warn]")
            && slow[0].contains("module \"panicky\" hook init_peer+get took "),
        "{}",
        slow[0]
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

/// A client that goes away while its request waits for the upstream's
/// answer ends the try at once, as nginx's (499): the peer's connection
/// stops counting as in use (`least_conn`, `max_conns`) long before
/// `proxy_read_timeout`. (tests/client_abort.rs has the rest of it.)
#[test]
fn a_peer_is_given_back_when_the_client_of_its_try_leaves() {
    use std::io::Write;
    let (_server, proxy, requests, active) = stalled_upstream();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", proxy)).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reached the backend");
    assert_eq!(scrape(proxy)[&active], 1.0);
    drop(client);
    eventually("the peer given back", || scrape(proxy)[&active] == 0.0);
}

/// An HTTP/2 client that gives up on a request (curl's `--max-time`: it
/// resets the stream and closes) while the request waits for the
/// upstream: the stream's request is dropped mid-try, and the peer's
/// in-use count must come back with it.
#[test]
fn a_cancelled_http2_request_gives_the_peer_back() {
    let (_server, proxy, requests, active) = stalled_upstream();
    let url = format!("http://127.0.0.1:{proxy}/");
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "1", &url])
        .output()
        .expect("run curl (apt-get install curl)");
    assert!(!curl.status.success(), "curl got an answer");
    requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reached the backend");
    eventually("the peer given back", || scrape(proxy)[&active] == 0.0);
}

/// waypost (HTTP/1.1 and h2c on one port) in front of a backend that reads
/// requests and never answers, then one that answers; `location /` waits
/// up to 60 s for an answer. Returns the server, its port, a channel that
/// hears of each request the stalling backend read, and the name of that
/// peer's in-use gauge.
fn stalled_upstream() -> (Server, u16, std::sync::mpsc::Receiver<String>, String) {
    let [proxy, b] = free_ports(2)[..] else {
        unreachable!()
    };
    let stalled = waypost_tests::stalled();
    let (a, requests) = (stalled.port, stalled.heads);
    // The stalling backend first: round robin sends it the first request.
    let text = format!(
        "worker_processes 1;\n\
         error_log logs/error.log notice;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream app {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       http2 on;\n\
         \x20       location / {{ proxy_pass http://app; proxy_read_timeout 60s; }}\n\
         \x20       location = /metrics {{ metrics; }}\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{b}; location / {{ return 200 b; }} }}\n\
         }}\n"
    );
    let server = Server::waypost(&text, &[proxy, b]);
    let active = format!("waypost_upstream_peer_active{{peer=\"127.0.0.1:{a}\",upstream=\"app\"}}");
    (server, proxy, requests, active)
}

/// waypost with upstream `app` balanced by the `panicky` fixture over two
/// backends; its port and configuration text.
fn panicky_proxy() -> (Server, u16, String) {
    let so = built_module("libpanicky_module.so");
    let [proxy, a, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let module_line = format!("load_module {};\n", so.display());
    let text = conf(proxy, [a, b], &module_line, "panicky;");
    (Server::waypost(&text, &[proxy, a, b]), proxy, text)
}

/// A slow `init_peer` is reported whether the `get` after it is timed
/// with it or not: alone when the request waits in between (here the
/// module's own delay), with its `get` otherwise.
#[test]
fn a_slow_init_peer_is_counted_alone_or_with_its_get() {
    let (server, proxy, _) = panicky_proxy();
    let slow = || scrape(proxy)["waypost_module_slow_hooks_total{module=\"panicky\"}"];
    assert_eq!(slow(), 0.0);
    assert_eq!(get(proxy, "/?spin_init=5&delay=1").status, 200);
    assert_eq!(slow(), 1.0);
    let log = server.read("logs/error.log");
    assert!(
        log.contains("module \"panicky\" hook init_peer took "),
        "{log}"
    );
    assert_eq!(get(proxy, "/?spin_init=5").status, 200);
    assert_eq!(slow(), 2.0);
    // Not asserted: that a fast request adds nothing. Its hooks take
    // microseconds, but a loaded machine (a build beside the tests) can
    // preempt one past the millisecond, as it would in production.
}

/// The `panicky` balancer behind `limit_req zone=z burst=5` keyed on
/// `$arg_k` at 2 requests a second: a key's second request within half a
/// second is delayed, between `init_peer` and `get`.
fn panicky_behind_limit_req() -> (Server, u16) {
    let [panicky, limit_req] =
        ["libpanicky_module.so", "libwaypost_limit_req.so"].map(built_module);
    let [proxy, a, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let modules = format!(
        "load_module {};\nload_module {};\n",
        panicky.display(),
        limit_req.display()
    );
    let text = conf(
        proxy,
        [a, b],
        &modules,
        "panicky; limit_req zone=z burst=5;",
    )
    .replace(
        "http {\n",
        "http {\n    limit_req_zone $arg_k zone=z:1m rate=2r/s;\n",
    );
    (Server::waypost(&text, &[proxy, a, b]), proxy)
}

const DELAYED: &str =
    "waypost_module_limit_req_requests_total{module=\"limit_req\",result=\"delayed\",zone=\"z\"}";
const PANICKY_SLOW: &str = "waypost_module_slow_hooks_total{module=\"panicky\"}";

/// A request that waits between `init_peer` and `get` (limit_req's delay,
/// up to half a second) does not count the wait as a hook's time. A hook
/// may still pass the 1 ms mark when a loaded machine pre-empts it (the
/// full suite runs beside it): what must not be there is a hook of the
/// delay's length, which the first slow hook's warning would show.
#[test]
fn a_delay_between_init_peer_and_get_is_not_a_slow_hook() {
    let (server, proxy) = panicky_behind_limit_req();
    for _ in 0..2 {
        assert_eq!(get(proxy, "/?k=one").status, 200);
    }
    let m = scrape(proxy);
    assert_eq!(m[DELAYED], 1.0);
    if m[PANICKY_SLOW] > 0.0 {
        let lines = slow_hook_lines(&server);
        assert!(!lines.is_empty(), "a slow hook counted and none logged");
    }
}

/// The slow-hook lines the panicky module's hooks logged, each checked to
/// hold no limit_req delay (under 100 ms).
fn slow_hook_lines(server: &Server) -> Vec<String> {
    let log = server.read("logs/error.log");
    let lines: Vec<String> = log
        .lines()
        .filter(|l| l.contains("module \"panicky\" hook"))
        .map(str::to_owned)
        .collect();
    for line in &lines {
        let ms: f64 = line
            .split(" took ")
            .nth(1)
            .and_then(|t| t.split(" ms").next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::MAX);
        assert!(ms < 100.0, "the delay counted as a hook's time: {line}");
    }
    lines
}

/// A slow `init_peer` that answers Ready and is then held by limit_req's
/// delay is counted, alone, before the wait: its line is there, and no
/// hook's time holds the delay. (Another hook may pass the 1 ms mark
/// when a loaded machine pre-empts it, as above: not counted against.)
#[test]
fn a_slow_init_peer_before_a_filter_delay_is_counted_alone() {
    let (server, proxy) = panicky_behind_limit_req();
    assert_eq!(get(proxy, "/?k=one").status, 200);
    assert_eq!(get(proxy, "/?k=one&spin_init=5").status, 200);
    let m = scrape(proxy);
    assert_eq!(m[DELAYED], 1.0);
    assert!(m[PANICKY_SLOW] >= 1.0, "{}", m[PANICKY_SLOW]);
    let lines = slow_hook_lines(&server);
    assert!(
        lines.iter().any(|l| l.contains("hook init_peer took ")),
        "{lines:?}"
    );
}

/// A balancer's per-request state is dropped through the module when the
/// request ends, also when `init_peer` asked for a delay (its state is
/// written then too): the `panicky` fixture counts the drops.
#[test]
fn request_states_are_dropped_also_after_an_init_peer_delay() {
    let (_server, proxy, _) = panicky_proxy();
    let seen = "waypost_module_requests_seen_total{module=\"panicky\",upstream=\"app\"}";
    let done = "waypost_module_requests_done_total{module=\"panicky\",upstream=\"app\"}";
    for path in ["/", "/?delay=20", "/", "/?delay=20", "/?delay=1"] {
        assert_eq!(get(proxy, path).status, 200);
    }
    // The scrape itself goes to the metrics location, not through the
    // balancer.
    eventually("every request state dropped", || {
        let m = scrape(proxy);
        m[seen] == 5.0 && m[done] == 5.0
    });
}

// ------------------------------------------- responses, failures, states

/// Polls until `check` holds; fails the test after ten seconds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `{peer="127.0.0.1:PORT",upstream="app"}` plus `extra` (labels sorted).
fn peer_key(name: &str, port: u16, extra: Option<(&str, &str)>) -> String {
    match extra {
        // `code` sorts before `peer`, `state` after it.
        Some(("code", v)) => {
            format!("{name}{{code=\"{v}\",peer=\"127.0.0.1:{port}\",upstream=\"app\"}}")
        }
        Some((k, v)) => format!("{name}{{peer=\"127.0.0.1:{port}\",{k}=\"{v}\",upstream=\"app\"}}"),
        None => format!("{name}{{peer=\"127.0.0.1:{port}\",upstream=\"app\"}}"),
    }
}

/// The peer's responses by class, 1xx to 5xx.
fn classes(m: &HashMap<String, f64>, port: u16) -> [f64; 5] {
    ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| {
        m[&peer_key(
            "waypost_upstream_peer_responses_total",
            port,
            Some(("code", c)),
        )]
    })
}

/// The peer's state: the one state series at 1, the others at 0.
fn state(m: &HashMap<String, f64>, port: u16) -> &'static str {
    let on: Vec<&'static str> = ["up", "down", "unhealthy", "failed"]
        .into_iter()
        .filter(|s| {
            let v = m[&peer_key("waypost_upstream_peer_state", port, Some(("state", s)))];
            assert!(v == 0.0 || v == 1.0, "{v}");
            v == 1.0
        })
        .collect();
    assert_eq!(on.len(), 1, "{on:?}");
    on[0]
}

/// `status;` as JSON.
fn status(port: u16) -> serde_json::Value {
    let r = get(port, "/status");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_str(&r.body).expect("valid JSON")
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `status;` shows exactly what `metrics;` does: every JSON number is the
/// sample it stands for, and no sample is left out.
fn assert_status_matches_metrics(port: u16) -> serde_json::Value {
    let m = scrape(port);
    let s = status(port);
    let mut seen = 0;
    let mut check = |key: String, value: f64| {
        assert_eq!(m.get(&key), Some(&value), "{key}");
        seen += 1;
    };
    for (name, up) in s["upstreams"].as_object().expect("upstreams") {
        for peer in up["peers"].as_array().expect("peers") {
            let addr = peer["addr"].as_str().expect("addr");
            let labels = format!("peer=\"{addr}\",upstream=\"{name}\"");
            for (series, field) in [
                ("requests_total", "requests"),
                ("failures_total", "failures"),
                ("active", "active"),
                ("fails", "fails"),
                ("latency_seconds", "latency_seconds"),
            ] {
                check(
                    format!("waypost_upstream_peer_{series}{{{labels}}}"),
                    num(&peer[field]),
                );
            }
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                check(
                    format!("waypost_upstream_peer_responses_total{{code=\"{class}\",{labels}}}"),
                    num(&peer["responses"][class]),
                );
            }
            let current = peer["state"].as_str().expect("state");
            for st in ["up", "down", "unhealthy", "failed"] {
                check(
                    format!(
                        "waypost_upstream_peer_state{{peer=\"{addr}\",state=\"{st}\",upstream=\"{name}\"}}"
                    ),
                    f64::from(u8::from(st == current)),
                );
            }
        }
        for st in ["active", "idle"] {
            check(
                format!("waypost_upstream_connections{{state=\"{st}\",upstream=\"{name}\"}}"),
                num(&up["connections"][st]),
            );
        }
    }
    for result in ["ok", "failed"] {
        check(
            format!("waypost_reloads_total{{result=\"{result}\"}}"),
            num(&s["reloads"][result]),
        );
    }
    for (module, entry) in s["modules"].as_object().expect("modules") {
        if let Some(n) = entry.get("panics") {
            check(
                format!("waypost_module_panics_total{{module=\"{module}\"}}"),
                num(n),
            );
        }
        if let Some(n) = entry.get("slow_hooks") {
            check(
                format!("waypost_module_slow_hooks_total{{module=\"{module}\"}}"),
                num(n),
            );
        }
        for metric in entry["metrics"].as_array().expect("metrics") {
            let mut labels: Vec<(String, String)> = metric["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_owned()))
                .collect();
            labels.push(("module".into(), module.clone()));
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let name = metric["name"].as_str().expect("name");
            check(
                format!("{name}{{{}}}", labels.join(",")),
                num(&metric["value"]),
            );
        }
    }
    assert_eq!(seen, m.len(), "samples in metrics; but not in status;");
    s
}

/// One upstream `app` with `servers` (lines inside the block) and a
/// backend answering 200 on `/` and 404 on `/missing`; `location_extra`
/// goes into the proxied location, `http_extra` into `http`.
fn app_conf(
    proxy: u16,
    backend: u16,
    servers: &str,
    location_extra: &str,
    http_extra: &str,
) -> String {
    format!(
        "worker_processes 1;\n\
         error_log logs/error.log notice;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         {http_extra}\
         \x20   upstream app {{ {servers} }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       location / {{ proxy_pass http://app; {location_extra} }}\n\
         \x20       location /free {{ proxy_pass http://app; }}\n\
         \x20       location = /metrics {{ metrics; }}\n\
         \x20       location = /status {{ status; }}\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{backend};\n\
         \x20       location / {{ return 200 ok; }}\n\
         \x20       location /missing {{ return 404; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

#[test]
fn responses_by_class_and_idle_keepalive_connections() {
    let [proxy, backend] = free_ports(2)[..] else {
        unreachable!()
    };
    let servers = format!("server 127.0.0.1:{backend}; keepalive 8;");
    let keepalive = "proxy_http_version 1.1; proxy_set_header Connection \"\";";
    let text = app_conf(proxy, backend, &servers, keepalive, "");
    let server = Server::waypost(&text, &[proxy, backend]);
    for _ in 0..7 {
        assert_eq!(get(proxy, "/").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(proxy, "/missing").status, 404);
    }
    // The connection goes back to the pool as the body ends.
    eventually("an idle upstream connection", || {
        scrape(proxy)["waypost_upstream_connections{state=\"idle\",upstream=\"app\"}"] > 0.0
    });
    let m = scrape(proxy);
    assert_eq!(classes(&m, backend), [0.0, 7.0, 0.0, 3.0, 0.0]);
    assert_eq!(
        m[&peer_key("waypost_upstream_peer_requests_total", backend, None)],
        10.0
    );
    assert_eq!(
        m[&peer_key("waypost_upstream_peer_failures_total", backend, None)],
        0.0
    );
    assert_eq!(state(&m, backend), "up");
    assert_eq!(
        m["waypost_upstream_connections{state=\"active\",upstream=\"app\"}"],
        0.0
    );
    // Keep-alive: the ten requests shared far fewer connections.
    let idle = m["waypost_upstream_connections{state=\"idle\",upstream=\"app\"}"];
    assert!((1.0..=2.0).contains(&idle), "{idle}");

    let s = assert_status_matches_metrics(proxy);
    let peer = &s["upstreams"]["app"]["peers"][0];
    assert_eq!(peer["server"], format!("127.0.0.1:{backend}").as_str());
    assert_eq!(peer["state"], "up");
    assert_eq!(peer["responses"]["2xx"], 7);
    assert_eq!(peer["responses"]["4xx"], 3);
    assert_eq!(s["reloads"], serde_json::json!({ "ok": 0, "failed": 0 }));
    drop(server);
}

#[test]
fn a_dead_peer_fails_and_a_down_peer_shows_down() {
    let [proxy, backend, dead, off] = free_ports(4)[..] else {
        unreachable!()
    };
    // `dead` and `off`: ports nothing listens on.
    let servers = format!(
        "server 127.0.0.1:{backend} max_fails=1; server 127.0.0.1:{dead} max_fails=1; \
         server 127.0.0.1:{off} down;"
    );
    let server = Server::waypost(
        &app_conf(proxy, backend, &servers, "", ""),
        &[proxy, backend],
    );
    // Round robin tries the dead peer on the second request; the try
    // fails, the request goes on to the live one, and max_fails=1 takes
    // the dead peer out for fail_timeout (10 s): one failure in all.
    for _ in 0..4 {
        assert_eq!(get(proxy, "/").status, 200);
    }
    let m = scrape(proxy);
    let value = |name: &str, port: u16| m[&peer_key(name, port, None)];
    assert_eq!(value("waypost_upstream_peer_requests_total", backend), 4.0);
    assert_eq!(value("waypost_upstream_peer_requests_total", dead), 1.0);
    assert_eq!(value("waypost_upstream_peer_requests_total", off), 0.0);
    assert_eq!(value("waypost_upstream_peer_failures_total", backend), 0.0);
    assert_eq!(value("waypost_upstream_peer_failures_total", dead), 1.0);
    assert_eq!(value("waypost_upstream_peer_fails", dead), 1.0);
    assert_eq!(classes(&m, backend), [0.0, 4.0, 0.0, 0.0, 0.0]);
    assert_eq!(classes(&m, dead), [0.0; 5]);
    assert_eq!(state(&m, backend), "up");
    assert_eq!(state(&m, dead), "failed");
    assert_eq!(state(&m, off), "down");

    let s = assert_status_matches_metrics(proxy);
    let states: Vec<&str> = s["upstreams"]["app"]["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["up", "failed", "down"]);
    assert_eq!(s["upstreams"]["app"]["peers"][1]["failures"], 1);
    drop(server);
}

#[test]
fn limit_req_counters_and_reloads_ok_and_failed() {
    let [proxy, backend] = free_ports(2)[..] else {
        unreachable!()
    };
    let zone = "    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;\n";
    let servers = format!("server 127.0.0.1:{backend};");
    let text = app_conf(proxy, backend, &servers, "limit_req zone=one;", zone);
    let server = Server::waypost(&text, &[proxy, backend]);
    let series = |result: &str| {
        format!(
            "waypost_module_limit_req_requests_total{{module=\"limit_req\",result=\"{result}\",zone=\"one\"}}"
        )
    };
    let counts = |m: &HashMap<String, f64>| {
        [
            "passed",
            "delayed",
            "rejected",
            "delayed_dry_run",
            "rejected_dry_run",
        ]
        .map(|r| m[&series(r)])
    };
    // Every series is there before the first request.
    assert_eq!(counts(&scrape(proxy)), [0.0; 5]);
    // One a minute, no burst: the first passes, the second is rejected.
    assert_eq!(get(proxy, "/").status, 200);
    assert_eq!(get(proxy, "/").status, 429);
    let m = scrape(proxy);
    assert_eq!(counts(&m), [1.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(m["waypost_reloads_total{result=\"ok\"}"], 0.0);
    assert_eq!(m["waypost_reloads_total{result=\"failed\"}"], 0.0);
    let s = assert_status_matches_metrics(proxy);
    assert_eq!(
        s["modules"]["limit_req"]["metrics"]
            .as_array()
            .expect("metrics")
            .len(),
        5
    );

    // A reload: counted ok; the zone and its counters go on.
    server.reload_with(&format!("{text}# reloaded\n"));
    eventually("the reload counted", || {
        scrape(proxy)["waypost_reloads_total{result=\"ok\"}"] == 1.0
    });
    assert_eq!(get(proxy, "/").status, 429);
    assert_eq!(counts(&scrape(proxy)), [1.0, 0.0, 2.0, 0.0, 0.0]);

    // A broken configuration: counted failed, the running one stays.
    server.reload_with(&format!("{text}bogus_directive;\n"));
    eventually("the failed reload counted", || {
        scrape(proxy)["waypost_reloads_total{result=\"failed\"}"] == 1.0
    });
    assert!(server.read("logs/error.log").contains("bogus_directive"));
    assert_eq!(get(proxy, "/free").status, 200);
    assert_eq!(get(proxy, "/").status, 429);
    let m = scrape(proxy);
    assert_eq!(m["waypost_reloads_total{result=\"ok\"}"], 1.0);
    assert_eq!(counts(&m), [1.0, 0.0, 3.0, 0.0, 0.0]);
    let s = assert_status_matches_metrics(proxy);
    assert_eq!(s["reloads"], serde_json::json!({ "ok": 1, "failed": 1 }));
}
