//! `limit_req` through the real binary: timed request patterns run through
//! nginx and waypost with the same configuration give the same admit,
//! delay and reject pattern (nginx's 503 is waypost's 429 by design), the
//! log lines are nginx's, and the extensions (`mode=window`,
//! `limit_req_missing_key`, JSON answers with `Retry-After`, limits in
//! `upstream` blocks) hold; zones stay bounded under many keys and keep
//! their counters across a reload.
//!
//! Patterns use `rate=5r/s` (a request drains in 200 ms) and are designed
//! so that each outcome holds with tens of milliseconds of slack either
//! way: requests in a quick burst are 10 ms apart, and pauses leave the
//! bucket half a request away from any threshold. The pauses are the
//! stimulus; no assertion waits on a sleep.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use waypost_tests::{free_ports, serial, KeepAlive as Client, Reply, Server, NGINX_TEMP_PATHS};

// ---------------------------------------------------------------- helpers

/// Waits until `check` holds, polling; fails the test after `secs`.
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `GET path` on a new connection.
fn get(port: u16, path: &str) -> Reply {
    Client::connect(port).get(path)
}

/// The `http` block contents both proxies run: `body` (zones, formats)
/// and a backend `server { listen BACK; location / { return 200 "ok"; } }`.
fn http_block(back: u16, body: &str) -> String {
    format!(
        "    access_log off;\n\
         \x20   keepalive_requests 1000000;\n\
         {body}\
         \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"ok\"; }} }}\n"
    )
}

/// The nginx configuration around `http`: one process, its files under the
/// prefix.
fn nginx_conf(http: &str) -> String {
    format!(
        "master_process off;\n\
         worker_processes 1;\n\
         pid logs/nginx.pid;\n\
         error_log logs/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n{NGINX_TEMP_PATHS}{http}}}\n"
    )
}

/// The waypost configuration around the same `http`.
fn waypost_conf(http: &str) -> String {
    format!(
        "worker_processes 2;\n\
         pid logs/waypost.pid;\n\
         error_log logs/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n{http}}}\n"
    )
}

/// The error log lines containing `text`.
fn log_lines(server: &Server, text: &str) -> Vec<String> {
    server
        .read("logs/error.log")
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_owned)
        .collect()
}

/// An error log line without its time, pid, thread and connection number:
/// `[error] limiting requests, ...`.
fn normalized(line: &str) -> String {
    let level_at = line.find('[').expect("a level");
    let rest = &line[level_at..];
    let (level, rest) = rest.split_once(' ').expect("level");
    let (_, message) = rest.split_once(": ").expect("pid#tid: ");
    let message = match message.strip_prefix('*') {
        Some(m) => m.split_once(' ').expect("*conn message").1,
        None => message,
    };
    format!("{level} {message}")
}

/// The VmRSS of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// waypost with its own TMPDIR (its private module directory belongs to
/// the test), for tests that reload.
fn start_waypost(conf: &str, ports: &[u16]) -> Server {
    Server::waypost_private(conf, ports)
}

/// Replaces the config file whole, then sends SIGHUP.
fn reload(server: &Server, conf: &str) {
    server.reload_with(conf);
}

// ------------------------------------------------------- timed patterns

/// One step of a pattern: a request (path and query, without `i=`), or a
/// pause before the next one.
#[derive(Clone, Copy)]
enum Step {
    Get(&'static str),
    Pause(u64),
}
use Step::{Get, Pause};

/// The time between two requests of a burst.
const GAP: Duration = Duration::from_millis(10);

/// What a proxy did with one request: the status (nginx's 503 shown as
/// 429), `$limit_req_status`, and how long the answer took.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    lr: String,
    elapsed: Duration,
}

/// Plays `steps` against `port`, each request on its own connection
/// (opened beforehand, so that a delayed request holds nobody up) and
/// numbered by `i=` (from `first`); returns the replies in order.
fn play(port: u16, steps: &[Step], first: usize) -> Vec<(u16, Duration)> {
    let n = steps.iter().filter(|s| matches!(s, Get(_))).count();
    let mut conns: Vec<Client> = (0..n).map(|_| Client::connect(port)).collect();
    conns.reverse();
    let mut waiting = Vec::new();
    let mut id = first;
    for step in steps {
        match *step {
            Get(path) => {
                let mut c = conns.pop().expect("a connection per request");
                let sep = if path.contains('?') { '&' } else { '?' };
                let path = format!("{path}{sep}i={id}");
                id += 1;
                let sent = Instant::now();
                c.send(&path);
                waiting.push(std::thread::spawn(move || {
                    let r = c.recv();
                    (r.status, sent.elapsed())
                }));
                std::thread::sleep(GAP);
            }
            Pause(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
    }
    waiting
        .into_iter()
        .map(|t| t.join().expect("request thread"))
        .collect()
}

/// Each request's `$arg_i $limit_req_status $status` line, by `i`.
fn access_lines(server: &Server, n: usize) -> BTreeMap<usize, (String, u16)> {
    server
        .wait_lines("logs/lr.log", n)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{l}");
            (
                f[0].parse().expect("i"),
                (f[1].to_owned(), f[2].parse().expect("status")),
            )
        })
        .collect()
}

/// Plays every pattern on `server` in turn; the outcome of each request.
fn play_all(server: &Server, port: u16, patterns: &[(&str, Vec<Step>)], nginx: bool) -> Vec<Seen> {
    let mut replies = Vec::new();
    for (_, steps) in patterns {
        replies.extend(play(port, steps, replies.len()));
    }
    let lines = access_lines(server, replies.len());
    replies
        .into_iter()
        .enumerate()
        .map(|(i, (status, elapsed))| {
            let (lr, logged) = lines[&i].clone();
            assert_eq!(logged, status, "request {i}");
            Seen {
                status: if nginx && status == 503 { 429 } else { status },
                lr,
                elapsed,
            }
        })
        .collect()
}

/// Short names for `$limit_req_status` values.
fn short(lr: &str) -> &'static str {
    match lr {
        "PASSED" => "P",
        "DELAYED" => "D",
        "REJECTED" => "R",
        "DELAYED_DRY_RUN" => "d",
        "REJECTED_DRY_RUN" => "r",
        "-" => "-",
        other => panic!("unexpected $limit_req_status {other:?}"),
    }
}

#[test]
fn timed_patterns_match_nginx() {
    let _serial = serial();
    let [wp_port, wp_back, nx_port, nx_back] = free_ports(4)[..] else {
        unreachable!()
    };
    let body = |proxy: u16, back: u16| {
        let loc = |path: &str, limits: &str| {
            format!(
                "        location /{path}/ {{ {limits} proxy_pass http://127.0.0.1:{back}; }}\n"
            )
        };
        http_block(
            back,
            &format!(
                "    log_format lr '$arg_i $limit_req_status $status';\n\
                 \x20   limit_req_zone $arg_k zone=a:1m rate=5r/s;\n\
                 \x20   limit_req_zone $arg_k zone=b:1m rate=5r/s;\n\
                 \x20   limit_req_zone $arg_k zone=c:1m rate=5r/s;\n\
                 \x20   limit_req_zone $arg_k zone=d:1m rate=5r/s;\n\
                 \x20   limit_req_zone $arg_u zone=user:1m rate=5r/s;\n\
                 \x20   limit_req_zone $arg_a zone=app:1m rate=5r/s;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{proxy};\n\
                 \x20       access_log logs/lr.log lr;\n\
                 {}{}{}{}{}{}\
                 \x20   }}\n",
                loc("a", "limit_req zone=a;"),
                loc("b", "limit_req zone=b burst=3 nodelay;"),
                loc("c", "limit_req zone=c burst=4 delay=2;"),
                loc("d", "limit_req zone=d burst=1; limit_req_dry_run on;"),
                loc(
                    "e",
                    "limit_req zone=user burst=2 delay=1; limit_req zone=app burst=1 nodelay;"
                ),
                loc("none", ""),
            ),
        )
    };

    // Expected outcomes, worked out with nginx's arithmetic (excess in
    // thousandths after each request, 5r/s draining 50 per 10 ms).
    let patterns: Vec<(&str, Vec<Step>)> = vec![
        // burst=0: 0 P, 950 R, 900 R; 400 ms later drained: P; then 950
        // R; 120 ms after that P still 400 over: R; 430 ms after it: P.
        (
            "P R R P R R P",
            vec![
                Get("/a/?k=1"),
                Get("/a/?k=1"),
                Get("/a/?k=1"),
                Pause(400),
                Get("/a/?k=1"),
                Get("/a/?k=1"),
                Pause(100),
                Get("/a/?k=1"),
                Pause(300),
                Get("/a/?k=1"),
            ],
        ),
        // burst=3 nodelay: 0, 950, 1900, 2850 P; 3800, 3750 R (rejections
        // are not saved). 250 ms later: 2850-1400+1000 = 2450 P, then
        // 3400 R; a second later drained: P.
        (
            "P P P P R R P R P",
            vec![
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Pause(250),
                Get("/b/?k=1"),
                Get("/b/?k=1"),
                Pause(1000),
                Get("/b/?k=1"),
            ],
        ),
        // burst=4 delay=2: 0, 950, 1900 P; 2850 D (170 ms), 3800 D
        // (360 ms); 4750 R. Another key meanwhile: P. 440 ms later:
        // 3800-2350+1000 = 2450 D (90 ms), 3400 D, 4350 R.
        (
            "P P P D D R P D D R",
            vec![
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=2"),
                Pause(440),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
                Get("/c/?k=1"),
            ],
        ),
        // Dry run, burst=1 (every excess would wait): 0 P, 950 d, 1900 r
        // (not saved), 1850 r; a second later: P.
        (
            "P d r r P",
            vec![
                Get("/d/?k=1"),
                Get("/d/?k=1"),
                Get("/d/?k=1"),
                Get("/d/?k=1"),
                Pause(1000),
                Get("/d/?k=1"),
            ],
        ),
        // user burst=2 delay=1, then app burst=1 nodelay:
        // (1,1) P; (1,1) user 950 app 950 P; (1,1) app 1900 R, user not
        // saved; (1,2) user 1850 D; (1,3) user 2800 R; (2,2) app 900 P;
        // (2,1) app 1700 R. A second and a half later, all drained: P.
        (
            "P P R D R P R P",
            vec![
                Get("/e/?u=1&a=1"),
                Get("/e/?u=1&a=1"),
                Get("/e/?u=1&a=1"),
                Get("/e/?u=1&a=2"),
                Get("/e/?u=1&a=3"),
                Get("/e/?u=2&a=2"),
                Get("/e/?u=2&a=1"),
                Pause(1500),
                Get("/e/?u=1&a=1"),
            ],
        ),
        // Empty keys are not limited; a location without limit_req has
        // no value.
        (
            "- - - - -",
            vec![
                Get("/a/"),
                Get("/a/?k="),
                Get("/a/"),
                Get("/none/?k=1"),
                Get("/none/?k=1"),
            ],
        ),
    ];

    let wp_conf = waypost_conf(&body(wp_port, wp_back));
    let nx_conf = nginx_conf(&body(nx_port, nx_back));
    let wp = Server::waypost(&wp_conf, &[wp_port, wp_back]);
    let nx = Server::nginx(&nx_conf, &[nx_port, nx_back]);
    // Both at once, with the same stimulus.
    let (wp_seen, nx_seen) = std::thread::scope(|s| {
        let w = s.spawn(|| play_all(&wp, wp_port, &patterns, false));
        let n = s.spawn(|| play_all(&nx, nx_port, &patterns, true));
        (w.join().expect("waypost"), n.join().expect("nginx"))
    });

    let mut at = 0;
    for (expected, steps) in &patterns {
        let n = steps.iter().filter(|s| matches!(s, Get(_))).count();
        let shown = |seen: &[Seen]| {
            seen[at..at + n]
                .iter()
                .map(|s| short(&s.lr))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let codes = |seen: &[Seen]| {
            seen[at..at + n]
                .iter()
                .map(|s| s.status)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&nx_seen),
            *expected,
            "nginx: {:?}",
            &nx_seen[at..at + n]
        );
        assert_eq!(
            shown(&wp_seen),
            shown(&nx_seen),
            "waypost: {:?}",
            &wp_seen[at..at + n]
        );
        assert_eq!(codes(&wp_seen), codes(&nx_seen));
        for (w, x) in wp_seen[at..at + n].iter().zip(&nx_seen[at..at + n]) {
            let expected_status = if w.lr == "REJECTED" { 429 } else { 200 };
            assert_eq!(w.status, expected_status, "{w:?}");
            // A delay is at least 50 ms here (the shortest is 90 ms at
            // the nominal times).
            if w.lr == "DELAYED" {
                assert!(w.elapsed >= Duration::from_millis(50), "{w:?}");
                assert!(x.elapsed >= Duration::from_millis(50), "{x:?}");
            }
        }
        at += n;
    }

    // The delays' and rejections' log lines, without their context.
    for server in [&wp, &nx] {
        let limited = log_lines(server, "limiting requests");
        let delayed = log_lines(server, "delaying request");
        assert_eq!(
            limited.len(),
            wp_seen
                .iter()
                .filter(|s| s.lr.starts_with("REJECTED"))
                .count()
        );
        assert_eq!(
            delayed.len(),
            wp_seen
                .iter()
                .filter(|s| s.lr.starts_with("DELAYED"))
                .count()
        );
        assert!(limited.iter().all(|l| l.contains("[error]")), "{limited:?}");
        assert!(delayed.iter().all(|l| l.contains("[warn]")), "{delayed:?}");
    }
}

#[test]
fn log_lines_are_nginx_lines() {
    let _serial = serial();
    let [wp_port, wp_back, nx_port, nx_back] = free_ports(4)[..] else {
        unreachable!()
    };
    // 1r/m drains 16 thousandths a second: the second request's excess
    // is exactly 1.000.
    let body = |proxy: u16, back: u16| {
        http_block(
            back,
            &format!(
                "    limit_req_zone $arg_k zone=m:1m rate=1r/m;\n\
                 \x20   limit_req_zone $arg_k zone=n:1m rate=1r/m;\n\
                 \x20   limit_req_zone $arg_k zone=w:1m rate=1r/m;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{proxy};\n\
                 \x20       location /m/ {{ limit_req zone=m; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /n/ {{ limit_req zone=n burst=1; limit_req_dry_run on; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /w/ {{ limit_req zone=w; limit_req_log_level warn; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20   }}\n"
            ),
        )
    };
    let wp = Server::waypost(&waypost_conf(&body(wp_port, wp_back)), &[wp_port, wp_back]);
    let nx = Server::nginx(&nginx_conf(&body(nx_port, nx_back)), &[nx_port, nx_back]);
    let mut lines = Vec::new();
    for (server, port) in [(&wp, wp_port), (&nx, nx_port)] {
        for path in ["/m/?k=a", "/m/?k=a", "/n/?k=a", "/n/?k=a", "/n/?k=a"] {
            get(port, path);
        }
        let mut c = Client::connect(port);
        c.send("/w/?k=a");
        c.recv();
        c.send_raw(
            b"GET /w/?k=a HTTP/1.1\r\nHost: example.com\r\nReferer: http://r.example/\r\n\r\n",
        );
        c.recv();
        let mut found = Vec::new();
        eventually("four limit_req lines", 10, || {
            found = server
                .read("logs/error.log")
                .lines()
                .filter(|l| l.contains("by zone"))
                .map(|l| normalized(l).replace(&port.to_string(), "PORT"))
                .collect();
            found.len() >= 4
        });
        lines.push(found);
    }
    let expected = [
        "[error] limiting requests, excess: 1.000 by zone \"m\", client: 127.0.0.1, server: , request: \"GET /m/?k=a HTTP/1.1\", host: \"127.0.0.1:PORT\"",
        "[warn] delaying request, dry run, excess: 1.000, by zone \"n\", client: 127.0.0.1, server: , request: \"GET /n/?k=a HTTP/1.1\", host: \"127.0.0.1:PORT\"",
        "[error] limiting requests, dry run, excess: 2.000 by zone \"n\", client: 127.0.0.1, server: , request: \"GET /n/?k=a HTTP/1.1\", host: \"127.0.0.1:PORT\"",
        "[warn] limiting requests, excess: 1.000 by zone \"w\", client: 127.0.0.1, server: , request: \"GET /w/?k=a HTTP/1.1\", host: \"example.com\", referrer: \"http://r.example/\"",
    ];
    assert_eq!(lines[1], expected, "nginx");
    assert_eq!(lines[0], lines[1], "waypost's lines are nginx's");
}

#[test]
fn inheritance_matches_nginx() {
    let [wp_a, wp_b, wp_back, nx_a, nx_b, nx_back] = free_ports(6)[..] else {
        unreachable!()
    };
    // 1r/m, nodelay: sequential requests, no timing involved.
    let body = |a: u16, b: u16, back: u16| {
        let proxy = format!("proxy_pass http://127.0.0.1:{back};");
        http_block(
            back,
            &format!(
                "    limit_req_zone $arg_k zone=h:1m rate=1r/m;\n\
                 \x20   limit_req_zone $arg_k zone=s:1m rate=1r/m;\n\
                 \x20   limit_req_zone $arg_k zone=l:1m rate=1r/m;\n\
                 \x20   limit_req_zone $arg_j zone=l2:1m rate=1r/m;\n\
                 \x20   limit_req zone=h burst=3 nodelay;\n\
                 \x20   limit_req_status 429;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{a};\n\
                 \x20       location / {{ {proxy} }}\n\
                 \x20   }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{b};\n\
                 \x20       limit_req zone=s burst=1 nodelay;\n\
                 \x20       limit_req_status 403;\n\
                 \x20       location /inherit/ {{ {proxy} }}\n\
                 \x20       location /own/ {{ limit_req zone=l; {proxy} }}\n\
                 \x20       location /two/ {{ limit_req zone=l2; limit_req zone=h nodelay burst=1; limit_req_status 599; {proxy} }}\n\
                 \x20   }}\n"
            ),
        )
    };
    let wp = Server::waypost(
        &waypost_conf(&body(wp_a, wp_b, wp_back)),
        &[wp_a, wp_b, wp_back],
    );
    let nx = Server::nginx(
        &nginx_conf(&body(nx_a, nx_b, nx_back)),
        &[nx_a, nx_b, nx_back],
    );
    let run = |a: u16, b: u16| -> Vec<Vec<u16>> {
        let seq = |port: u16, path: &str, n: usize| -> Vec<u16> {
            let mut c = Client::connect(port);
            (0..n).map(|_| c.get(path).status).collect()
        };
        vec![
            seq(a, "/?k=1", 6),
            seq(b, "/inherit/?k=1", 4),
            seq(b, "/own/?k=1", 3),
            seq(b, "/two/?j=1&k=2", 1),
            seq(b, "/two/?j=2&k=2", 1),
            // Rejected by h: j=3 was not counted by l2.
            seq(b, "/two/?j=3&k=2", 1),
            seq(b, "/two/?j=3&k=3", 1),
        ]
    };
    let (w, n) = (run(wp_a, wp_b), run(nx_a, nx_b));
    assert_eq!(
        n,
        [
            vec![200, 200, 200, 200, 429, 429],
            vec![200, 200, 403, 403],
            vec![200, 403, 403],
            vec![200],
            vec![200],
            vec![599],
            vec![200],
        ]
    );
    assert_eq!(w, n);
    drop((wp, nx));
}

// -------------------------------------------------------------- window

#[test]
fn window_admits_exactly_n_per_key_per_second_under_16_clients() {
    let _serial = serial();
    let [port, back] = free_ports(2)[..] else {
        unreachable!()
    };
    const N: usize = 40;
    let conf = waypost_conf(&http_block(
        back,
        &format!(
            "    limit_req_zone $arg_k zone=win:1m rate={N}r/s mode=window;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ limit_req zone=win; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20   }}\n"
        ),
    ));
    let wp = Server::waypost(&conf, &[port, back]);

    let wall_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
    };
    // Windows: start 50 ms into a second, stop sending 800 ms into it, so
    // that every request is checked within the window. A round that
    // overran its second (a stalled machine) proves nothing and is run
    // again, in another second.
    let mut clients: Vec<Client> = (0..16).map(|_| Client::connect(port)).collect();
    let mut rounds = 0;
    for attempt in 0..6 {
        if rounds == 2 {
            break;
        }
        let second = loop {
            let now = wall_ms();
            if (50..100).contains(&(now % 1000)) {
                break now / 1000;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let stop = second * 1000 + 800;
        let counts: Arc<Mutex<BTreeMap<(String, u16), usize>>> = Arc::default();
        let retry_after: Arc<Mutex<Vec<String>>> = Arc::default();
        std::thread::scope(|s| {
            for (t, c) in clients.iter_mut().enumerate() {
                let counts = counts.clone();
                let retry_after = retry_after.clone();
                s.spawn(move || {
                    let mut n = 0;
                    while wall_ms() < stop {
                        let key = ["x", "y"][(t + n) % 2];
                        let r = c.get(&format!("/?k={key}&a={attempt}"));
                        if let Some(v) = r.header("retry-after") {
                            retry_after.lock().unwrap().push(v.to_owned());
                        }
                        *counts
                            .lock()
                            .unwrap()
                            .entry((key.to_owned(), r.status))
                            .or_default() += 1;
                        n += 1;
                    }
                });
            }
        });
        if wall_ms() / 1000 != second {
            continue;
        }
        rounds += 1;
        let counts = counts.lock().unwrap();
        for key in ["x", "y"] {
            let ok = counts.get(&(key.to_owned(), 200)).copied().unwrap_or(0);
            let rejected = counts.get(&(key.to_owned(), 429)).copied().unwrap_or(0);
            assert_eq!(ok, N, "key {key}: {counts:?}");
            assert!(rejected > 0, "the clients asked for more: {counts:?}");
        }
        assert_eq!(counts.len(), 4, "only 200 and 429: {counts:?}");
        // Rejected within the window's second: the next one is 1 s away
        // at most.
        let retry_after = retry_after.lock().unwrap();
        assert!(retry_after.iter().all(|v| v == "1"), "{retry_after:?}");
    }
    assert_eq!(rounds, 2, "two rounds within their second");
    // Windows neither delay nor log delays.
    assert!(log_lines(&wp, "delaying").is_empty());
}

// ------------------------------------------------ missing key, answers

#[test]
fn missing_key_json_answers_dry_run_and_status() {
    let [port, back] = free_ports(2)[..] else {
        unreachable!()
    };
    let loc = |path: &str, text: &str| {
        format!("        location /{path}/ {{ {text} proxy_pass http://127.0.0.1:{back}; }}\n")
    };
    let conf = waypost_conf(&http_block(
        back,
        &format!(
            "    log_format lr '$uri $limit_req_status $status';\n\
             \x20   limit_req_zone $arg_app zone=apps:1m rate=1r/m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/lr.log lr;\n\
             {}{}{}{}\
             \x20   }}\n",
            loc("pass", "limit_req zone=apps;"),
            loc(
                "reject",
                "limit_req zone=apps; limit_req_missing_key reject;"
            ),
            loc(
                "dry",
                "limit_req zone=apps; limit_req_dry_run on; limit_req_missing_key reject;"
            ),
            loc("s503", "limit_req zone=apps; limit_req_status 503;"),
        ),
    ));
    let wp = Server::waypost(&conf, &[port, back]);
    let mut c = Client::connect(port);

    // pass (the default): a request without the key is not limited.
    for _ in 0..3 {
        let r = c.get("/pass/");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    // reject: 401 and nginx-style JSON.
    let r = c.get("/reject/?other=1");
    assert_eq!(r.status, 401);
    assert_eq!(r.body, "{\"message\":\"Unauthorized\"}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("retry-after"), None);
    // An empty value is a missing key too.
    assert_eq!(c.get("/reject/?app=").status, 401);

    // With the key: 1r/m, burst 0: one, then 429 with JSON and the whole
    // seconds until the key is admitted again (62.5 s after the first).
    let r = c.get("/reject/?app=one");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = c.get("/reject/?app=one");
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "{\"message\":\"Too Many Requests\"}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((62..=63).contains(&retry), "Retry-After: {retry}");

    // Dry run: never rejects, for a missing key either.
    for _ in 0..2 {
        let r = c.get("/dry/?app=two");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(c.get("/dry/").status, 200);

    // limit_req_status 503: the same JSON.
    assert_eq!(c.get("/s503/?app=three").status, 200);
    let r = c.get("/s503/?app=three");
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "{\"message\":\"Too Many Requests\"}");
    assert!(r.header("retry-after").is_some());

    let lines = wp.wait_lines("logs/lr.log", 12);
    assert_eq!(
        lines,
        [
            "/pass/ - 200",
            "/pass/ - 200",
            "/pass/ - 200",
            "/reject/ REJECTED 401",
            "/reject/ REJECTED 401",
            "/reject/ PASSED 200",
            "/reject/ REJECTED 429",
            "/dry/ PASSED 200",
            "/dry/ REJECTED_DRY_RUN 200",
            "/dry/ REJECTED_DRY_RUN 200",
            "/s503/ PASSED 200",
            "/s503/ REJECTED 503",
        ]
    );
    let empty = log_lines(&wp, "empty key");
    assert_eq!(empty.len(), 3, "{empty:?}");
    assert!(
        empty[0].contains(
            "[error] ",
        ) && empty[0].contains(
            "limiting requests, empty key \"$arg_app\" by zone \"apps\", client: 127.0.0.1, server: , request: \"GET /reject/?other=1 HTTP/1.1\""
        ),
        "{empty:?}"
    );
    assert!(
        empty[2].contains("limiting requests, dry run, empty key \"$arg_app\" by zone \"apps\""),
        "{empty:?}"
    );
    let dry = log_lines(
        &wp,
        "limiting requests, dry run, excess: 1.000 by zone \"apps\"",
    );
    assert_eq!(dry.len(), 1, "{dry:?}");
}

// ------------------------------------------------- full zone, eviction

#[test]
fn a_full_zone_removes_its_least_recently_used_keys() {
    let _serial = serial();
    let [port, back] = free_ports(2)[..] else {
        unreachable!()
    };
    // The smallest zone: 32k, 256 keys. 1r/m: no key drains within the test.
    let conf = waypost_conf(&http_block(
        back,
        &format!(
            "    log_format lr '$limit_req_status';\n\
             \x20   limit_req_zone $arg_k zone=small:32k rate=1r/m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/lr.log lr;\n\
             \x20       location / {{ limit_req zone=small; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20   }}\n"
        ),
    ));
    let wp = Server::waypost(&conf, &[port, back]);
    let mut c = Client::connect(port);
    assert_eq!(c.get("/?k=victim").status, 200);
    assert_eq!(c.get("/?k=victim").status, 429);

    // 100 other keys fit beside it: it keeps its state.
    let paths: Vec<String> = (0..100).map(|i| format!("/?k=few{i}")).collect();
    c.send_all(paths.iter().map(String::as_str));
    for _ in &paths {
        assert_eq!(c.recv().status, 200);
    }
    assert_eq!(c.get("/?k=victim").status, 429);

    // 5,000 fresh keys: every one is admitted (none is stale, so the
    // least recently used are removed by force), and the victim's state
    // went with them.
    let paths: Vec<String> = (0..5000).map(|i| format!("/?k=fresh{i}")).collect();
    for chunk in paths.chunks(100) {
        c.send_all(chunk.iter().map(String::as_str));
        for _ in chunk {
            assert_eq!(c.recv().status, 200);
        }
    }
    assert_eq!(c.get("/?k=victim").status, 200);
    // The alert is for a node in use by a request, not for a full zone.
    assert!(log_lines(&wp, "could not allocate node").is_empty());
    let lines = wp.wait_lines("logs/lr.log", 5104);
    assert_eq!(lines.iter().filter(|l| *l == "REJECTED").count(), 2);
}

/// A backend answering `200 ok` to every request on every connection,
/// kept alive; returns its port.
fn fast_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                let mut buf = vec![0u8; 65536];
                // The end of the last read, for a "\r\n\r\n" across reads.
                let mut tail: Vec<u8> = Vec::new();
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    tail.extend_from_slice(&buf[..n]);
                    let ends = tail.windows(4).filter(|w| w == b"\r\n\r\n").count();
                    let keep = tail.len().saturating_sub(3);
                    let last = tail.windows(4).rposition(|w| w == b"\r\n\r\n");
                    tail.drain(..last.map_or(keep, |i| (i + 4).max(keep)));
                    let out = reply.repeat(ends);
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn many_distinct_keys_keep_memory_bounded() {
    let _serial = serial();
    let port = free_ports(1)[0];
    let back = fast_backend();
    // 1m: 8,192 keys. Keys of 40 bytes, stored on the heap. The backend
    // is a plain socket answering on kept-alive connections, so that the
    // proxy's own work dominates.
    let conf = waypost_conf(&format!(
        "    access_log off;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   limit_req_zone $arg_k zone=keys:1m rate=1r/m;\n\
         \x20   upstream back {{ server 127.0.0.1:{back}; keepalive 8; }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{\n\
         \x20           limit_req zone=keys;\n\
         \x20           proxy_pass http://back;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20       }}\n\
         \x20   }}\n"
    ));
    let wp = Server::waypost(&conf, &[port]);
    const CONNS: usize = 4;
    const BATCH: usize = 100;
    let send = |from: usize, to: usize| {
        std::thread::scope(|s| {
            for t in 0..CONNS {
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    let mut i = from + t;
                    let mut paths = Vec::with_capacity(BATCH);
                    while i < to {
                        paths.clear();
                        while paths.len() < BATCH && i < to {
                            paths.push(format!("/?k={i:0>40}"));
                            i += CONNS;
                        }
                        c.send_all(paths.iter().map(String::as_str));
                        for _ in &paths {
                            assert_eq!(c.recv().status, 200, "every key is new");
                        }
                    }
                });
            }
        });
    };
    // Fill the zone a few times over, then measure; then ten times more.
    send(0, 40_000);
    let before = rss_kib(wp.pid());
    send(40_000, 200_000);
    let after = rss_kib(wp.pid());
    eprintln!("VmRSS after 40,000 keys: {before} KiB; after 200,000: {after} KiB");
    // 160,000 more keys of 40 bytes kept would take over 20 MiB.
    assert!(
        after < before + 4 * 1024,
        "VmRSS grew from {before} KiB to {after} KiB"
    );
    assert!(log_lines(&wp, "could not allocate node").is_empty());
}

// ------------------------------------------------------------- reload

#[test]
fn counters_survive_a_reload_and_a_new_key_is_refused() {
    let [port, back] = free_ports(2)[..] else {
        unreachable!()
    };
    let conf = |key: &str, rate: &str, size: &str, v: &str| {
        format!(
            "worker_processes 2;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\n\
             events {{}}\nhttp {{\n{}}}\n",
            http_block(
                back,
                &format!(
                    "    limit_req_zone {key} zone=r:{size} rate={rate};\n\
                     \x20   server {{\n\
                     \x20       listen 127.0.0.1:{port};\n\
                     \x20       location / {{ limit_req zone=r burst=2 nodelay; proxy_pass http://127.0.0.1:{back}; }}\n\
                     \x20       location = /v {{ return 200 \"{v}\"; }}\n\
                     \x20   }}\n"
                ),
            )
        )
    };
    let wp = start_waypost(&conf("$arg_k", "1r/m", "1m", "one"), &[port, back]);
    let statuses = |path: &str, n: usize| -> Vec<u16> {
        let mut c = Client::connect(port);
        (0..n).map(|_| c.get(path).status).collect()
    };
    assert_eq!(statuses("/?k=a", 4), [200, 200, 200, 429]);
    let reloads = || log_lines(&wp, "configuration reloaded").len();
    let serving = |v: &str| {
        let r = get(port, "/v");
        r.status == 200 && r.body == v
    };

    // Unchanged zone, another change elsewhere: still rejected.
    reload(&wp, &conf("$arg_k", "1r/m", "1m", "two"));
    eventually("reload 1", 20, || reloads() >= 1);
    eventually("the new config serving", 10, || serving("two"));
    assert_eq!(statuses("/?k=a", 1), [429]);
    assert_eq!(statuses("/?k=b", 1), [200]);

    // The rate changed, name and size did not: the state is kept.
    reload(&wp, &conf("$arg_k", "2r/m", "1m", "three"));
    eventually("reload 2", 20, || reloads() >= 2);
    eventually("the new config serving", 10, || serving("three"));
    assert_eq!(statuses("/?k=a", 1), [429]);

    // Another key for the zone: refused with nginx's message, the old
    // configuration serves on with its counters.
    reload(&wp, &conf("$arg_x", "2r/m", "1m", "four"));
    let msg = "limit_req \"r\" uses the \"$arg_x\" key while previously it used the \"$arg_k\" key";
    eventually("the reload refused", 20, || !log_lines(&wp, msg).is_empty());
    let line = &log_lines(&wp, msg)[0];
    assert!(
        line.contains(&format!("[emerg] {}#", wp.pid())) && line.ends_with(msg),
        "{line}"
    );
    assert_eq!(reloads(), 2);
    assert!(serving("three"));
    assert_eq!(statuses("/?k=a", 1), [429]);

    // Another size: a new zone, empty.
    reload(&wp, &conf("$arg_k", "2r/m", "2m", "five"));
    eventually("reload 3", 20, || reloads() >= 3);
    eventually("the new config serving", 10, || serving("five"));
    assert_eq!(statuses("/?k=a", 1), [200]);
}

// ------------------------------------------------------------ upstream

#[test]
fn limits_in_an_upstream_block_apply_to_requests_proxied_to_it() {
    let [port, back] = free_ports(2)[..] else {
        unreachable!()
    };
    let conf = waypost_conf(&http_block(
        back,
        &format!(
            "    log_format lr '$uri $limit_req_status $status';\n\
             \x20   limit_req_zone $arg_k zone=up:1m rate=1r/m;\n\
             \x20   limit_req_zone $arg_k zone=own:1m rate=1r/m;\n\
             \x20   limit_req_status 503;\n\
             \x20   upstream u {{\n\
             \x20       server 127.0.0.1:{back};\n\
             \x20       limit_req zone=up burst=1 nodelay;\n\
             \x20   }}\n\
             \x20   upstream plain {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/lr.log lr;\n\
             \x20       location /via/ {{ proxy_pass http://u; }}\n\
             \x20       location /via429/ {{ limit_req_status 429; proxy_pass http://u; }}\n\
             \x20       location /plain/ {{ proxy_pass http://plain; }}\n\
             \x20       location /own/ {{ limit_req zone=own; proxy_pass http://plain; }}\n\
             \x20       location /both/ {{ limit_req zone=own; proxy_pass http://u; }}\n\
             \x20       location = /ret {{ return 200 \"r\"; }}\n\
             \x20   }}\n"
        ),
    ));
    let wp = Server::waypost(&conf, &[port, back]);
    let statuses = |path: &str, n: usize| -> Vec<u16> {
        let mut c = Client::connect(port);
        (0..n).map(|_| c.get(path).status).collect()
    };
    // The upstream's limit, with the status set at http level.
    assert_eq!(statuses("/via/?k=a", 3), [200, 200, 503]);
    // The location's own setting applies to it as well; the key's state
    // is the upstream zone's, shared by every location proxying there.
    assert_eq!(statuses("/via429/?k=a", 1), [429]);
    assert_eq!(statuses("/via429/?k=b", 3), [200, 200, 429]);
    // Another upstream is not limited; a location's own limit is.
    assert_eq!(statuses("/plain/?k=a", 3), [200, 200, 200]);
    assert_eq!(statuses("/own/?k=a", 2), [200, 503]);
    // The upstream block is the innermost level: its limit_req lines
    // replace the location's (zone own is not consulted).
    assert_eq!(statuses("/both/?k=c", 3), [200, 200, 503]);
    assert_eq!(statuses("/own/?k=c", 2), [200, 503]);
    // return answers before limit_req runs, as in nginx.
    assert_eq!(statuses("/ret?k=a", 3), [200, 200, 200]);

    // Each location's lines, in order (one connection each; two workers
    // hand their lines to the log writer separately, so lines of
    // different connections may come in another order).
    let lines = wp.wait_lines("logs/lr.log", 20);
    let of = |prefix: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(
        of("/via/ "),
        ["/via/ PASSED 200", "/via/ PASSED 200", "/via/ REJECTED 503"]
    );
    assert_eq!(
        of("/plain/ "),
        ["/plain/ - 200", "/plain/ - 200", "/plain/ - 200"]
    );
    assert_eq!(of("/ret "), ["/ret - 200", "/ret - 200", "/ret - 200"]);
}

/// Both proxies on `locations` (a server's lines under `root` the test
/// tree, with a `1r/m` zone on `$arg_k`, `limit_req_status 503` and an
/// access log of `$uri $status $limit_req_status`), each of `paths` asked
/// three times on one connection: the statuses, and the access log lines
/// as `logged` shows them, sorted (a line is written as its answer ends: the
/// order of two connections' lines is not compared). nginx's first.
fn three_each(
    tree: &std::path::Path,
    locations: &str,
    paths: &[&str],
    logged: &dyn Fn(&str) -> Option<String>,
) -> [(Vec<u16>, Vec<String>); 2] {
    let [wp, nx] = free_ports(2)[..] else {
        unreachable!()
    };
    let body = |port: u16| {
        format!(
            "    access_log off;\n\
             \x20   log_format lr '$uri $status $limit_req_status';\n\
             \x20   limit_req_zone $arg_k zone=z:1m rate=1r/m;\n\
             \x20   limit_req_status 503;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/lr.log lr;\n\
             \x20       root {dir};\n\
             {locations}\
             \x20   }}\n",
            dir = tree.display()
        )
    };
    let run = |port: u16, server: &Server| -> (Vec<u16>, Vec<String>) {
        let mut statuses = Vec::new();
        for path in paths {
            let mut c = Client::connect(port);
            for _ in 0..3 {
                statuses.push(c.get(path).status);
            }
        }
        let lines = server.wait_lines("logs/lr.log", 3 * paths.len());
        let mut lines: Vec<String> = lines.iter().filter_map(|l| logged(l)).collect();
        lines.sort();
        (statuses, lines)
    };
    let n = Server::nginx(&nginx_conf(&body(nx)), &[nx]);
    let theirs = run(nx, &n);
    let w = Server::waypost(&waypost_conf(&body(wp)), &[wp]);
    let ours = run(wp, &w);
    [theirs, ours]
}

/// limit_req limits requests a location answers itself, as nginx's
/// pre-access phase does: files (`try_files ... =204`, a file, a 404),
/// `stub_status`; a `return` answers before it, never limited. Logged
/// with `$limit_req_status`.
#[test]
fn limits_apply_to_answers_that_are_not_proxied() {
    let tree = waypost_tests::TempDir::new("limit-req-static");
    tree.write("f/x.txt", "file x\n");
    let [theirs, ours] = three_each(
        &tree.path,
        "        limit_req zone=z burst=1 nodelay;\n\
         \x20       location /t/ { try_files /none =204; }\n\
         \x20       location /f/ { }\n\
         \x20       location /st { stub_status; }\n\
         \x20       location /r/ { return 200 \"r\\n\"; }\n",
        &[
            "/t/?k=1",
            "/f/x.txt?k=2",
            "/f/none?k=3",
            "/st?k=4",
            "/r/?k=5",
        ],
        &|l| Some(l.to_owned()),
    );
    assert_eq!(
        theirs.0,
        [204, 204, 503, 200, 200, 503, 404, 404, 503, 200, 200, 503, 200, 200, 200],
        "nginx"
    );
    assert_eq!(ours, theirs);
}

/// limit_req at the target of an internal redirect (`try_files ... @app`,
/// `error_page ... = @app`, an `index` file's location) limits, as nginx's
/// does where the first location had none; a request limited at the
/// first location is counted once, and its `$limit_req_status` logged
/// (with `$uri` as `try_files` left it, the file it found).
#[test]
fn limits_apply_at_an_internal_redirect_target_once() {
    let tree = waypost_tests::TempDir::new("limit-req-redirect");
    tree.write("f/x.txt", "file x\n");
    tree.write("ix/index.html", "index\n");
    let [theirs, ours] = three_each(
        &tree.path,
        "        location /tf/ { try_files /none @lim; }\n\
         \x20       location /ep/ { error_page 404 = @lim; }\n\
         \x20       location /lt/ { limit_req zone=z burst=1 nodelay; try_files /none @lim; }\n\
         \x20       location = /ix/index.html { limit_req zone=z burst=1 nodelay; }\n\
         \x20       location @lim { limit_req zone=z burst=1 nodelay; try_files /f/x.txt =404; }\n",
        &["/tf/?k=1", "/ep/?k=2", "/lt/?k=3", "/ix/?k=4"],
        &|l| Some(l.to_owned()),
    );
    assert_eq!(
        theirs.0,
        [200, 200, 503, 200, 200, 503, 200, 200, 503, 200, 200, 503],
        "nginx"
    );
    assert_eq!(ours, theirs);
}

/// A request no location takes is limited by the server's `limit_req`
/// lines, as nginx's (a static-only server without `location` blocks),
/// and logged with `$limit_req_status`.
#[test]
fn limits_apply_where_no_location_takes_the_request() {
    let tree = waypost_tests::TempDir::new("limit-req-server");
    tree.write("a.txt", "a\n");
    let [theirs, ours] = three_each(
        &tree.path,
        "        limit_req zone=z burst=1 nodelay;\n",
        &["/a.txt?k=1", "/none?k=2"],
        &|l| Some(l.to_owned()),
    );
    assert_eq!(theirs.0, [200, 200, 503, 404, 404, 503], "nginx");
    assert_eq!(ours, theirs);
}
