//! Round robin through the real binary: nginx's smooth weighted sequence,
//! the failure example of the spec (section 1.9), backup and down peers, and
//! the same upstream configs run through nginx and waypost side by side,
//! which must choose the same peers in the same order.
//!
//! Every proxy logs `$upstream_addr` to `logs/up.log`, one line per request,
//! so a test reads each request's attempts as the proxy itself saw them.

use waypost_tests::{addr, free_port, free_ports, get, tries, Server, NGINX_TEMP_PATHS};

/// `return 200 "backend N\n"` servers on `ports` (N counting from 1).
fn backend_servers(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "    server {{ listen 127.0.0.1:{p}; location / {{ return 200 \"backend {}\\n\"; }} }}\n",
                i + 1
            )
        })
        .collect()
}

/// A waypost config: upstream `u` with `servers` (the lines inside the
/// block), a proxy on `proxy` logging `$upstream_addr`, with `extra` in
/// its location, and the demo `backends`.
fn waypost_conf(proxy: u16, servers: &str, extra: &str, backends: &[u16]) -> String {
    format!(
        "worker_processes 1;\n\
         error_log logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   log_format up '$upstream_addr';\n\
         \x20   access_log off;\n\
         \x20   upstream u {{\n{servers}    }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       location / {{ proxy_pass http://u; access_log logs/up.log up; {extra} }}\n\
         \x20   }}\n\
         {}}}\n",
        backend_servers(backends)
    )
}

/// The same proxy for nginx: one process (`master_process off`, so that
/// killing it leaves no worker behind), its files under the prefix.
fn nginx_conf(proxy: u16, servers: &str, extra: &str) -> String {
    format!(
        "master_process off;\n\
         worker_processes 1;\n\
         pid logs/nginx.pid;\n\
         error_log logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
                  {NGINX_TEMP_PATHS}\
         \x20   log_format up '$upstream_addr';\n\
         \x20   access_log off;\n\
         \x20   upstream u {{\n{servers}    }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       location / {{ proxy_pass http://u; access_log logs/up.log up; {extra} }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// `n` GETs to `port` one after another, then each request's
/// `$upstream_addr` line and response (status, body).
fn run(server: &Server, port: u16, n: usize) -> (Vec<String>, Vec<(u16, String)>) {
    let responses: Vec<(u16, String)> = (0..n)
        .map(|_| {
            let r = get(port, "/");
            (r.status, r.body)
        })
        .collect();
    let lines = server.wait_lines("logs/up.log", n);
    assert_eq!(lines.len(), n, "one access log line per request: {lines:?}");
    (lines, responses)
}

#[test]
fn weights_5_1_1_give_nginx_sequence() {
    let ports = free_ports(4);
    let (proxy, backends) = (ports[0], &ports[1..]);
    let servers = format!(
        "        server {} weight=5;\n        server {};\n        server {};\n",
        addr(backends[0]),
        addr(backends[1]),
        addr(backends[2])
    );
    let wp = Server::waypost(&waypost_conf(proxy, &servers, "", backends), &ports);

    let (lines, responses) = run(&wp, proxy, 14);
    let order: Vec<usize> = responses
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body.trim()
                .strip_prefix("backend ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        })
        .collect();
    assert_eq!(order, [1, 1, 2, 1, 3, 1, 1, 1, 1, 2, 1, 3, 1, 1]);
    let expected: Vec<String> = order.iter().map(|&n| addr(backends[n - 1])).collect();
    assert_eq!(lines, expected);
}

/// A = dead, weight 3, max_fails 3; B weight 1; C weight 2 (spec 1.9).
fn failure_example_servers(a: u16, b: u16, c: u16) -> String {
    format!(
        "        server {} weight=3 max_fails=3;\n        server {};\n        server {} weight=2;\n",
        addr(a),
        addr(b),
        addr(c)
    )
}

#[test]
fn failure_example_matches_nginx_sequence() {
    let ports = free_ports(3);
    let (proxy, b, c) = (ports[0], ports[1], ports[2]);
    let a = free_port(); // nothing listens here
    let wp = Server::waypost(
        &waypost_conf(proxy, &failure_example_servers(a, b, c), "", &[b, c]),
        &ports,
    );

    let (lines, responses) = run(&wp, proxy, 12);
    for (status, body) in &responses {
        assert_eq!(*status, 200, "{body}");
    }
    let expected = [
        tries(&[a, c]),
        tries(&[b]),
        tries(&[c]),
        tries(&[a, c]),
        tries(&[b]),
        tries(&[a, c]),
        tries(&[c]),
        tries(&[c]),
        tries(&[c]),
        tries(&[b]),
        tries(&[c]),
        tries(&[c]),
    ];
    assert_eq!(lines, expected);
    // Each failed attempt on A was logged nginx's way.
    let errors = wp.read("logs/error.log");
    let refused = format!(
        "connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://{}/\"",
        addr(a)
    );
    assert_eq!(errors.matches(&refused).count(), 3, "{errors}");
}

#[test]
fn backup_is_used_only_when_no_primary_is_available() {
    let ports = free_ports(7);
    let (live_proxy, dead_proxy, down_proxy) = (ports[0], ports[1], ports[2]);
    let (a, b, backup) = (ports[3], ports[4], ports[5]);
    let dead = [free_port(), free_port()];
    let up_live = format!(
        "        server {};\n        server {};\n        server {} backup;\n",
        addr(a),
        addr(b),
        addr(backup)
    );
    let up_dead = format!(
        "        server {};\n        server {};\n        server {} backup;\n",
        addr(dead[0]),
        addr(dead[1]),
        addr(backup)
    );
    let up_down = format!(
        "        server {} down;\n        server {} backup;\n",
        addr(a),
        addr(backup)
    );
    // Three upstreams in one config: rename `u` per proxy.
    let conf = waypost_conf(live_proxy, &up_live, "", &[a, b, backup]);
    let conf = conf.replace(
        "    server {\n",
        &format!(
            "    upstream dead {{\n{up_dead}    }}\n\
             \x20   upstream down {{\n{up_down}    }}\n\
             \x20   server {{ listen 127.0.0.1:{dead_proxy}; location / {{ proxy_pass http://dead; access_log logs/dead.log up; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{down_proxy}; location / {{ proxy_pass http://down; access_log logs/down.log up; }} }}\n\
             \x20   server {{\n"
        ),
    );
    let wp = Server::waypost(&conf, &ports[..6]);

    // Both primaries live: the backup never answers.
    let (lines, responses) = run(&wp, live_proxy, 6);
    assert!(responses.iter().all(|(s, _)| *s == 200), "{responses:?}");
    assert_eq!(lines, [a, b, a, b, a, b].map(addr));

    // Both primaries dead: the first request tries them, then the backup;
    // later ones go straight to the backup while the primaries are
    // disabled (max_fails 1, fail_timeout 10s).
    for _ in 0..3 {
        assert_eq!(get(dead_proxy, "/").body, "backend 3\n");
    }
    let lines = wp.wait_lines("logs/dead.log", 3);
    assert_eq!(
        lines,
        [
            tries(&[dead[0], dead[1], backup]),
            addr(backup),
            addr(backup)
        ]
    );

    // The only primary is down: the backup serves, the down peer is never
    // tried.
    for _ in 0..3 {
        assert_eq!(get(down_proxy, "/").body, "backend 3\n");
    }
    assert_eq!(wp.wait_lines("logs/down.log", 3), [backup; 3].map(addr));
}

#[test]
fn down_peer_is_never_chosen() {
    let ports = free_ports(4);
    let (proxy, backends) = (ports[0], &ports[1..]);
    let servers = format!(
        "        server {};\n        server {} weight=5 down;\n        server {};\n",
        addr(backends[0]),
        addr(backends[1]),
        addr(backends[2])
    );
    let wp = Server::waypost(&waypost_conf(proxy, &servers, "", backends), &ports);
    let (lines, responses) = run(&wp, proxy, 6);
    assert!(responses.iter().all(|(s, _)| *s == 200), "{responses:?}");
    let (a, c) = (addr(backends[0]), addr(backends[2]));
    assert_eq!(lines, [&a, &c, &a, &c, &a, &c].map(String::as_str));
}

/// Runs `servers` (with `{A}`, `{B}`... standing for peers: live ones
/// served by a shared backend instance, dead ones nothing listens on)
/// through nginx and through waypost, `n` requests each, and requires the
/// same `$upstream_addr` lines and statuses.
fn compare(template: &str, dead: &[char], extra: &str, n: usize) {
    let names: Vec<char> = ('A'..='F')
        .filter(|c| template.contains(&format!("{{{c}}}")))
        .collect();
    let live: Vec<char> = names
        .iter()
        .copied()
        .filter(|c| !dead.contains(c))
        .collect();
    let live_ports = free_ports(live.len());
    let mut servers = template.to_owned();
    for (c, p) in live.iter().zip(&live_ports) {
        servers = servers.replace(&format!("{{{c}}}"), &addr(*p));
    }
    for c in dead {
        servers = servers.replace(&format!("{{{c}}}"), &addr(free_port()));
    }

    // The backends: one waypost with a `return` server per live peer.
    let backend_conf = format!(
        "worker_processes 1;\nerror_log logs/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n{}}}\n",
        backend_servers(&live_ports)
    );
    let _backends = (!live_ports.is_empty()).then(|| Server::waypost(&backend_conf, &live_ports));

    let [nginx_port, waypost_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let nginx = Server::nginx(&nginx_conf(nginx_port, &servers, extra), &[nginx_port]);
    let wp = Server::waypost(
        &waypost_conf(waypost_port, &servers, extra, &[]),
        &[waypost_port],
    );

    let (nginx_lines, nginx_responses) = run(&nginx, nginx_port, n);
    let (wp_lines, wp_responses) = run(&wp, waypost_port, n);
    assert_eq!(
        wp_lines, nginx_lines,
        "peer sequences differ for\n{servers}(left: waypost, right: nginx)"
    );
    let statuses = |r: &[(u16, String)]| r.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(statuses(&wp_responses), statuses(&nginx_responses));
    let bodies = |r: &[(u16, String)]| {
        r.iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(&wp_responses), bodies(&nginx_responses));
}

#[test]
fn same_sequence_as_nginx_weights_5_1_1() {
    compare(
        "server {A} weight=5;\nserver {B};\nserver {C};\n",
        &[],
        "",
        21,
    );
}

#[test]
fn same_sequence_as_nginx_failure_example() {
    compare(
        "server {A} weight=3 max_fails=3;\nserver {B};\nserver {C} weight=2;\n",
        &['A'],
        "",
        12,
    );
}

#[test]
fn same_sequence_as_nginx_backup() {
    // Dead primaries, one tolerating two failures: the first requests try
    // the primaries before a backup answers; then the backups share 1:2.
    compare(
        "server {A} max_fails=2;\nserver {B};\nserver {C} backup;\nserver {D} backup weight=2;\n",
        &['A', 'B'],
        "",
        8,
    );
    // A live primary: the backups are never used, even when the dead
    // primary's failure leads to a retry.
    compare(
        "server {A};\nserver {B};\nserver {C} backup;\n",
        &['A'],
        "",
        5,
    );
}

#[test]
fn same_sequence_as_nginx_down() {
    compare(
        "server {A} weight=2;\nserver {B} weight=5 down;\nserver {C};\nserver {D} down backup;\nserver {E} backup;\n",
        &[],
        "",
        9,
    );
    // Down and dead together: the dead peer's retries skip the down one.
    compare(
        "server {A} down;\nserver {B};\nserver {C} weight=2;\n",
        &['B'],
        "",
        6,
    );
}

#[test]
fn same_sequence_as_nginx_tries_and_no_live_upstreams() {
    // proxy_next_upstream_tries 2: A and B fail, then 502; the next request
    // skips them (disabled) and fails on C before D answers.
    compare(
        "server {A};\nserver {B};\nserver {C};\nserver {D};\n",
        &['A', 'B', 'C'],
        "proxy_next_upstream_tries 2;",
        5,
    );
    // Every peer dead: 502 after trying both, then the group name.
    compare("server {A};\nserver {B};\n", &['A', 'B'], "", 3);
}
