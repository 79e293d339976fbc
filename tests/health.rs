//! Active health checks: a dead peer is found by probes alone, no request
//! is tried on it afterwards, it comes back after `passes`; the state
//! survives a reload; `mandatory` peers start down; slow_start ramps a
//! recovered peer's share.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, get, read_head, run_waypost, Server, TempDir};

/// Waits until the error log has a line containing `needle`, and returns it.
fn log_line(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.read("logs/error.log");
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no \"{needle}\" in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend on `port` answering 200 "back" to every request, from its own
/// thread, until dropped.
struct Backend {
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn start(port: u16) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if read_head(&mut stream).is_some() {
                            let _ = stream.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nback\n",
                            );
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend { stop }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn conf(proxy: u16, live: u16, dead: u16, check: &str, dead_params: &str) -> String {
    format!(
        "error_log logs/error.log notice;\n\
         events {{}}\n\
         http {{\n\
         \x20   log_format up '$upstream_addr $status';\n\
         \x20   upstream app {{\n\
         \x20       server 127.0.0.1:{live};\n\
         \x20       server 127.0.0.1:{dead} {dead_params};\n\
         \x20       {check}\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://app; access_log logs/up.log up; }} location = /metrics {{ metrics; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{live}; access_log off; location / {{ return 200 \"live\\n\"; }} }}\n\
         }}\n"
    )
}

#[test]
fn a_dead_peer_is_found_by_probes_alone_skipped_and_back_after_passes() {
    let [proxy, live, dead] = free_ports(3)[..] else {
        unreachable!()
    };
    let check = "health_check interval=100ms timeout=500ms fails=2 passes=2;";
    let text = conf(proxy, live, dead, check, "");
    let server = Server::waypost(&text, &[proxy, live]);

    // No request has been sent: the probes alone find it.
    let line = log_line(&server, "is down");
    assert!(
        line.contains(&format!(
            "[warn] {}#0: peer 127.0.0.1:{dead} of upstream \"app\" is down: connect() failed (111: Connection refused)",
            server.pid()
        )),
        "{line}"
    );
    for _ in 0..20 {
        let r = get(proxy, "/");
        assert_eq!((r.status, r.body.as_str()), (200, "live\n"));
    }
    let lines = server.wait_lines("logs/up.log", 20);
    assert!(
        lines.iter().all(|l| *l == format!("127.0.0.1:{live} 200")),
        "{lines:?}"
    );
    // The metrics say so too.
    let metrics = get(proxy, "/metrics").body;
    let peer = format!("upstream=\"app\",peer=\"127.0.0.1:{dead}\"");
    assert!(
        metrics.contains(&format!(
            "waypost_upstream_peer_state{{{peer},state=\"unhealthy\"}} 1"
        )),
        "{metrics}"
    );
    let failed_probes = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "waypost_upstream_peer_health_checks_total{{{peer},result=\"failed\"}} "
            ))
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failed_probes >= 2, "{metrics}");

    // A reload keeps the peer down: nothing is tried on it, and no new
    // "is down" line is needed.
    server.reload_with(&format!("{text}# reloaded\n"));
    log_line(&server, "configuration reloaded");
    for _ in 0..10 {
        assert_eq!(get(proxy, "/").body, "live\n");
    }
    let lines = server.wait_lines("logs/up.log", 30);
    assert!(lines
        .iter()
        .all(|l| l.starts_with(&format!("127.0.0.1:{live} "))));

    // It comes back after two passed probes, and takes requests again.
    let _backend = Backend::start(dead);
    let line = log_line(&server, "is up");
    assert!(
        line.contains(&format!("peer 127.0.0.1:{dead} of upstream \"app\" is up")),
        "{line}"
    );
    let bodies: Vec<String> = (0..10).map(|_| get(proxy, "/").body).collect();
    assert!(bodies.iter().any(|b| b == "back\n"), "{bodies:?}");
    assert_eq!(
        server.read("logs/error.log").matches("is down").count(),
        1,
        "the reload must not have re-detected the peer"
    );
}

#[test]
fn mandatory_peers_start_down_until_a_probe_passes() {
    let [proxy, live, other] = free_ports(3)[..] else {
        unreachable!()
    };
    // The backend answers 200, which `status=204` does not accept: with
    // `mandatory` the peers never come up, so every request is refused.
    let text = conf(
        proxy,
        live,
        other,
        "health_check interval=100ms status=204 mandatory;",
        "down",
    );
    let server = Server::waypost(&text, &[proxy, live]);
    let r = get(proxy, "/");
    assert_eq!(r.status, 502);
    log_line(&server, "no live upstreams");
    // Accepting 200 (a reload), the peer comes up after its first probe.
    server.reload_with(&text.replace("status=204", "status=200-299"));
    let up = log_line(&server, "is up");
    assert!(
        up.contains(&format!("peer 127.0.0.1:{live} of upstream")),
        "{up}"
    );
    assert_eq!(get(proxy, "/").body, "live\n");
}

#[test]
fn slow_start_ramps_a_recovered_peer_up_to_its_share() {
    let [proxy, live, back] = free_ports(3)[..] else {
        unreachable!()
    };
    let check = "health_check interval=100ms fails=1 passes=1;";
    let text = conf(proxy, live, back, check, "slow_start=3s");
    let server = Server::waypost(&text, &[proxy, live]);
    log_line(&server, "is down");
    let _backend = Backend::start(back);
    log_line(&server, "is up");
    let recovered = Instant::now();
    // Just after it came back its weight is a small part of the other's:
    // in the first half second it gets far less than its half.
    let mut early = [0usize; 2];
    while recovered.elapsed() < Duration::from_millis(500) {
        let body = get(proxy, "/").body;
        early[usize::from(body == "back\n")] += 1;
    }
    assert!(
        early[1] * 4 < early[0] + early[1],
        "early share {early:?} (live, back)"
    );
    // Once the ramp is over, the two weigh the same again.
    while recovered.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut late = [0usize; 2];
    for _ in 0..100 {
        let body = get(proxy, "/").body;
        late[usize::from(body == "back\n")] += 1;
    }
    assert!((45..=55).contains(&late[1]), "late share {late:?}");
}

#[test]
fn bad_health_check_parameters_are_refused_with_their_line() {
    let dir = TempDir::new("health-conf");
    for (param, shown) in [
        ("interval=0", "interval=0"),
        ("fails=x", "fails=x"),
        ("status=700", "status=700"),
        ("uri=health", "uri=health"),
        ("port=70000", "port=70000"),
        ("bogus", "bogus"),
    ] {
        dir.write(
            "bad.conf",
            &format!(
                "events {{}}\nhttp {{\n    upstream u {{\n        server 127.0.0.1:9;\n        health_check {param};\n    }}\n}}\n"
            ),
        );
        let out = run_waypost(&dir, &["-t", "-c", "bad.conf"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!(
                "[emerg] invalid parameter \"{shown}\" in {}:5",
                dir.path.join("bad.conf").display()
            )),
            "{stderr}"
        );
    }
}
