//! The hash module through the real binary, side by side with nginx:
//! `hash $arg_a`, `hash $arg_a consistent` and `ip_hash`, with equal and
//! unequal weights, a `down` server and a dead one. For every request the
//! peers tried (`$upstream_addr`, logged one line per request) must be the
//! same through nginx and through waypost. Also nginx's refusal of
//! `backup`, and its quirk of accepting a `backup` written before `hash`.
//!
//! Requests go out on raw sockets so that ip_hash sees many client
//! addresses: any source address on 127.0.0.0/8 reaches a loopback listener.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use waypost_tests::{addr, free_port, free_ports, nginx_bin, run_waypost, Server, TempDir};

/// One request: the client's source address and the path.
#[derive(Clone)]
struct Req {
    src: [u8; 4],
    path: String,
}

fn key(k: &str) -> Req {
    Req {
        src: [127, 0, 0, 1],
        path: format!("/?a={k}"),
    }
}

/// Keys 1..=n, with a few requests without the argument or with it empty
/// (round robin, as nginx since 1.17.1) mixed in.
fn keys(n: usize) -> Vec<Req> {
    let mut reqs = Vec::with_capacity(n + n / 50);
    for k in 1..=n {
        reqs.push(key(&k.to_string()));
        if k % 100 == 0 {
            reqs.push(Req {
                src: [127, 0, 0, 1],
                path: "/".into(),
            });
        }
        if k % 100 == 50 {
            reqs.push(key(""));
        }
    }
    reqs
}

/// Clients 127.0.i.2 for i in 1..=30 (nginx's own test), then 127.a.b.2:
/// 150 addresses in all, two requests each.
fn clients() -> Vec<Req> {
    let mut srcs: Vec<[u8; 4]> = (1..=30).map(|i| [127, 0, i, 2]).collect();
    srcs.extend((1..=4u8).flat_map(|a| (1..=30u8).map(move |b| [127, a, b * 7, 2])));
    srcs.iter()
        .chain(srcs.iter())
        .map(|&src| Req {
            src,
            path: "/".into(),
        })
        .collect()
}

/// `GET path` from `src` to 127.0.0.1:`port`: (status, body).
fn request(port: u16, req: &Req) -> (u16, String) {
    let mut stream = waypost_tests::connect_from(req.src, port);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        req.path
    )
    .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, body.to_owned())
}

/// `return 200 "backend N\n"` servers on `ports`.
fn backend_servers(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| {
            format!("    server {{ listen 127.0.0.1:{p}; location / {{ return 200 \"backend {p}\\n\"; }} }}\n")
        })
        .collect()
}

fn conf(proxy: u16, upstream: &str, nginx: bool) -> String {
    waypost_tests::upstream_proxy_conf(proxy, upstream, nginx)
}

/// Runs `reqs` one after another; each request's `$upstream_addr` with the
/// peers' addresses replaced by their letters, and its status.
fn run(server: &Server, port: u16, reqs: &[Req], letters: &[(char, u16)]) -> Vec<(String, u16)> {
    let statuses: Vec<u16> = reqs
        .iter()
        .map(|r| {
            let (status, body) = request(port, r);
            if status == 200 {
                let p = body.trim().trim_start_matches("backend ");
                assert!(
                    letters.iter().any(|(_, q)| q.to_string() == p),
                    "unexpected body {body:?}"
                );
            }
            status
        })
        .collect();
    let lines = server.wait_lines("logs/up.log", reqs.len());
    assert_eq!(lines.len(), reqs.len(), "one access log line per request");
    lines
        .into_iter()
        .map(|line| {
            letters
                .iter()
                .fold(line, |l, (c, p)| l.replace(&addr(*p), &c.to_string()))
        })
        .zip(statuses)
        .collect()
}

/// Distinct free ports for the peers `template` names (`{A}`, `{B}`...).
/// `compare_at` starts backends on the live ones; nothing listens on the
/// dead ones.
fn peer_ports(template: &str) -> Vec<(char, u16)> {
    let names: Vec<char> = ('A'..='F')
        .filter(|c| template.contains(&format!("{{{c}}}")))
        .collect();
    let ports = free_ports(names.len());
    names.into_iter().zip(ports).collect()
}

/// Runs `template` (an upstream block's lines, `{A}`, `{B}`... standing
/// for peers; `dead` ones have nothing listening) through nginx and
/// waypost with `reqs`, requires the same peers for every request, and
/// returns them (as letters, e.g. `B, C` for a retry).
fn compare(template: &str, dead: &[char], reqs: &[Req]) -> Vec<String> {
    compare_at(template, &peer_ports(template), dead, reqs)
}

/// `compare` with the peers on given ports (`letters`).
fn compare_at(template: &str, letters: &[(char, u16)], dead: &[char], reqs: &[Req]) -> Vec<String> {
    let live_ports: Vec<u16> = letters
        .iter()
        .filter(|(c, _)| !dead.contains(c))
        .map(|&(_, p)| p)
        .collect();
    let mut upstream = template.to_owned();
    for (c, p) in letters {
        upstream = upstream.replace(&format!("{{{c}}}"), &addr(*p));
    }

    let backend_conf = format!(
        "worker_processes 1;\nerror_log logs/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n{}}}\n",
        backend_servers(&live_ports)
    );
    let _backends = Server::waypost(&backend_conf, &live_ports);

    let [nginx_port, waypost_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let nginx = Server::nginx(&conf(nginx_port, &upstream, true), &[nginx_port]);
    let wp = Server::waypost(&conf(waypost_port, &upstream, false), &[waypost_port]);

    let theirs = run(&nginx, nginx_port, reqs, letters);
    let ours = run(&wp, waypost_port, reqs, letters);
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            o, t,
            "request {i} ({}{:?}) differs for\n{upstream}(left: waypost, right: nginx)",
            reqs[i].path, reqs[i].src
        );
    }
    ours.into_iter().map(|(line, _)| line).collect()
}

const EQUAL: &str = "server {A};\nserver {B};\nserver {C};\n";
const WEIGHTED: &str = "server {A} weight=2;\nserver {B} weight=3;\nserver {C};\n";

fn with(method: &str, servers: &str) -> String {
    format!("{method}\n{servers}")
}

/// The first `n` lines as one string of letters (each a single peer).
fn letters(lines: &[String], n: usize) -> String {
    lines[..n].concat()
}

#[test]
fn hash_same_peers_as_nginx_and_the_spec_table() {
    let reqs = keys(1000);
    let lines = compare(&with("hash $arg_a;", EQUAL), &[], &reqs);
    // Spec 2.4, keys 1..10 (the ports do not matter without `consistent`).
    assert_eq!(letters(&lines, 10), "BCBABAACCA");
    let lines = compare(&with("hash $arg_a;", WEIGHTED), &[], &reqs);
    assert_eq!(letters(&lines, 10), "BCBAAABBCB");
}

#[test]
fn consistent_same_peers_as_nginx() {
    let reqs = keys(1000);
    compare(&with("hash $arg_a consistent;", EQUAL), &[], &reqs);
    compare(&with("hash $arg_a consistent;", WEIGHTED), &[], &reqs);
}

/// The ring hashes the server strings, so the spec's table holds only on
/// ports 8081..8083: checked when they are free on this machine.
#[test]
fn consistent_spec_table_on_ports_8081_to_8083() {
    let ports = [('A', 8081), ('B', 8082), ('C', 8083)];
    let free = ports
        .iter()
        .all(|&(_, p)| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    if !free {
        eprintln!("ports 8081..8083 are in use: the table check is skipped");
        return;
    }
    let reqs: Vec<Req> = (1..=10).map(|k| key(&k.to_string())).collect();
    let lines = compare_at(&with("hash $arg_a consistent;", EQUAL), &ports, &[], &reqs);
    assert_eq!(letters(&lines, 10), "ACACACABAB");
    let lines = compare_at(
        &with("hash $arg_a consistent;", WEIGHTED),
        &ports,
        &[],
        &reqs,
    );
    assert_eq!(letters(&lines, 10), "ABBCBAABAB");
}

#[test]
fn ip_hash_same_peers_as_nginx() {
    let reqs = clients();
    let lines = compare(&with("ip_hash;", EQUAL), &[], &reqs);
    // nginx's upstream_ip_hash.t: 127.0.i.2 go to peers 0, 1, 2, 0, ...
    let expected: String = (0..30).map(|i| ['A', 'B', 'C'][i % 3]).collect();
    assert_eq!(letters(&lines, 30), expected);
    compare(&with("ip_hash;", WEIGHTED), &[], &reqs);
    let two = compare(&with("ip_hash;", "server {A};\nserver {B};\n"), &[], &reqs);
    assert_eq!(two[..30].iter().filter(|l| *l == "A").count(), 15);
}

/// With `{B}` marked down the keys on B move, and only they.
fn down_moves_only_its_keys(method: &str, reqs: &[Req]) {
    // The same ports for both runs: a consistent ring hashes them.
    let ports = peer_ports(EQUAL);
    let up = compare_at(&with(method, EQUAL), &ports, &[], reqs);
    let down = compare_at(
        &with(method, "server {A};\nserver {B} down;\nserver {C};\n"),
        &ports,
        &[],
        reqs,
    );
    let mut moved = 0;
    for (i, (u, d)) in up.iter().zip(&down).enumerate() {
        if method.starts_with("hash") && (reqs[i].path == "/" || reqs[i].path == "/?a=") {
            continue; // no key: round robin
        }
        if u == "B" {
            assert_ne!(d, "B", "request {i}");
            moved += 1;
        } else {
            assert_eq!(u, d, "request {i} ({}) moved", reqs[i].path);
        }
    }
    assert!(
        moved > reqs.len() / 5,
        "{method}: only {moved} requests were on B"
    );
}

#[test]
fn down_server_moves_only_its_keys_as_nginx() {
    down_moves_only_its_keys("hash $arg_a;", &keys(300));
    down_moves_only_its_keys("hash $arg_a consistent;", &keys(300));
    down_moves_only_its_keys("ip_hash;", &clients());
}

#[test]
fn dead_server_retries_as_nginx() {
    let reqs = keys(300);
    for method in ["hash $arg_a;", "hash $arg_a consistent;", "ip_hash;"] {
        let reqs = if method == "ip_hash;" {
            clients()
        } else {
            reqs.clone()
        };
        // Disabled after its first failure (for the whole run).
        let lines = compare(
            &with(
                method,
                "server {A};\nserver {B} fail_timeout=60s;\nserver {C} weight=2;\n",
            ),
            &['B'],
            &reqs,
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("B, ")).count(),
            1,
            "{method}: {lines:?}"
        );
        // Never disabled: every request for B tries it, then moves on.
        let lines = compare(
            &with(
                method,
                "server {A};\nserver {B} max_fails=0;\nserver {C} weight=2;\n",
            ),
            &['B'],
            &reqs,
        );
        assert!(
            lines.iter().filter(|l| l.starts_with("B, ")).count() > 10,
            "{method}"
        );
        // Two dead of three, one tolerating two failures.
        compare(
            &with(
                method,
                "server {A} max_fails=2 fail_timeout=60s;\nserver {B} fail_timeout=60s;\nserver {C};\n",
            ),
            &['A', 'B'],
            &reqs,
        );
    }
}

/// `-t` of `conf` through waypost and then nginx, written to the same
/// path: (exit code, stderr) for each.
fn check_config(upstream: &str) -> ((Option<i32>, String), (Option<i32>, String)) {
    let dir = TempDir::new("hash-t");
    let port = free_port();
    let path = dir.write("test.conf", &conf(port, upstream, false));
    let path_arg = path.display().to_string();
    let wp = run_waypost(&dir, &["-t", "-c", &path_arg]);
    dir.write("test.conf", &conf(port, upstream, true));
    let nginx = Command::new(nginx_bin())
        .args(["-t", "-p", &format!("{}/", dir.path.display())])
        .args(["-e", "logs/startup.log", "-c", &path_arg])
        .output()
        .expect("run nginx -t");
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    (
        (wp.status.code(), text(&wp)),
        (nginx.status.code(), text(&nginx)),
    )
}

/// The `[emerg]` lines without the program's prefix.
fn emerg(stderr: &str, prefix: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("[emerg]"))
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn backup_refused_as_nginx() {
    for method in ["hash $arg_a;", "hash $arg_a consistent;", "ip_hash;"] {
        let upstream = format!(
            "        {method}\n        server 127.0.0.1:1;\n        server 127.0.0.1:2 backup;\n"
        );
        let ((wp_code, wp), (nginx_code, nginx)) = check_config(&upstream);
        assert_eq!(wp_code, Some(1), "{wp}");
        assert_eq!(nginx_code, Some(1), "{nginx}");
        let ours = emerg(&wp, "waypost: ");
        assert_eq!(
            ours,
            emerg(&nginx, "nginx: "),
            "waypost:\n{wp}\nnginx:\n{nginx}"
        );
        assert_eq!(ours.len(), 1, "{wp}");
        assert!(
            ours[0]
                .starts_with("[emerg] balancing method does not support parameter \"backup\" in "),
            "{wp}"
        );
        assert!(ours[0].ends_with("test.conf:10"), "{wp}");
    }
}

#[test]
fn backup_before_the_directive_loads_as_nginx() {
    for method in ["hash $arg_a;", "hash $arg_a consistent;", "ip_hash;"] {
        let upstream = format!("        server 127.0.0.1:1;\n        server 127.0.0.1:2 backup;\n        {method}\n        server 127.0.0.1:3;\n");
        let ((wp_code, wp), (nginx_code, nginx)) = check_config(&upstream);
        assert_eq!(nginx_code, Some(0), "{nginx}");
        assert_eq!(wp_code, Some(0), "{wp}");
    }
    // And balances as nginx: a dead primary's retries, the backup only
    // when round robin runs out of primaries.
    for method in ["hash $arg_a;", "hash $arg_a consistent;", "ip_hash;"] {
        let reqs = if method == "ip_hash;" {
            clients()
        } else {
            keys(100)
        };
        compare(
            &format!("server {{A}};\nserver {{D}} backup;\n{method}\nserver {{B}} max_fails=0;\nserver {{C}};\n"),
            &['B'],
            &reqs,
        );
    }
}

#[test]
fn invalid_second_argument_as_nginx() {
    let ((wp_code, wp), (nginx_code, nginx)) =
        check_config("        hash $arg_a foo;\n        server 127.0.0.1:1;\n");
    assert_eq!((wp_code, nginx_code), (Some(1), Some(1)), "{wp}\n{nginx}");
    let ours = emerg(&wp, "waypost: ");
    assert_eq!(
        ours,
        emerg(&nginx, "nginx: "),
        "waypost:\n{wp}\nnginx:\n{nginx}"
    );
    assert!(
        ours[0].starts_with("[emerg] invalid parameter \"foo\" in "),
        "{wp}"
    );
}
