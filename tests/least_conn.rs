//! The `least_conn` and `random` modules through the real binary.
//!
//! `least_conn` runs side by side with nginx: with requests one after
//! another every peer has 0 connections, so every choice is a tie broken by
//! the smooth weighted round robin, and the peers tried (`$upstream_addr`,
//! one access log line per request) must be nginx's, with weights, `down`,
//! dead and backup servers. With requests held by a backend, the busy peers
//! are avoided, by connections per weight, as nginx does.
//!
//! `random` is not deterministic, in nginx either: it runs through waypost
//! only, and its shares are checked against bounds that a correct
//! implementation misses with a probability below one in a million.
//!
//! The backends are threads of this test: each answers `backend PORT`, and
//! holds a request for `/slow` until the test opens the gate, so "a request
//! in flight on a peer" is a state the test sets up rather than a race.

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use waypost_tests::{addr, free_port, get, nginx_bin, read_head, run_waypost, Server, TempDir};

/// Requests for `/slow` wait here until the test opens it.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The port of each `/slow` request that arrived, in order.
    arrived: Vec<u16>,
    open: bool,
}

/// Backends on `ports`, one thread per connection.
struct Backends {
    ports: Vec<u16>,
    gate: Arc<Gate>,
}

impl Backends {
    fn start(n: usize) -> Backends {
        let gate = Arc::new(Gate::default());
        let ports = (0..n)
            .map(|_| {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let port = listener.local_addr().expect("addr").port();
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    for stream in listener.incoming().flatten() {
                        let gate = Arc::clone(&gate);
                        std::thread::spawn(move || serve(stream, port, &gate));
                    }
                });
                port
            })
            .collect();
        Backends { ports, gate }
    }

    /// Waits until `n` requests for `/slow` arrived; their ports.
    fn wait_slow(&self, n: usize) -> Vec<u16> {
        let state = self.gate.state.lock().unwrap();
        let (state, timeout) = self
            .gate
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| s.arrived.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "{} of {n} slow requests arrived",
            state.arrived.len()
        );
        state.arrived.clone()
    }

    /// Lets the held requests answer (and later ones pass at once).
    fn open(&self) {
        self.gate.state.lock().unwrap().open = true;
        self.gate.changed.notify_all();
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.open();
    }
}

/// One request per connection: `backend PORT`, after the gate for `/slow`.
fn serve(mut stream: TcpStream, port: u16, gate: &Gate) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("/");
    if path.starts_with("/slow") {
        let mut state = gate.state.lock().unwrap();
        state.arrived.push(port);
        gate.changed.notify_all();
        // At most 30 s, so that a failed test leaves no thread behind.
        let _ = gate
            .changed
            .wait_timeout_while(state, Duration::from_secs(30), |s| !s.open)
            .unwrap();
    }
    let body = format!("backend {port}\n");
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn conf(proxy: u16, upstream: &str, nginx: bool) -> String {
    waypost_tests::upstream_proxy_conf(proxy, upstream, nginx)
}

/// Which proxy runs a config.
#[derive(Clone, Copy, Debug)]
enum Proxy {
    Nginx,
    Waypost,
}

/// `template` (`{A}`, `{B}`... for peers) with live peers on `backends`
/// and the `dead` ones on ports nothing listens on; the letter of each port.
fn fill(template: &str, backends: &Backends, dead: &[char]) -> (String, HashMap<u16, char>) {
    let names: Vec<char> = ('A'..='F')
        .filter(|c| template.contains(&format!("{{{c}}}")))
        .collect();
    let mut live = backends.ports.iter();
    let mut letters = HashMap::new();
    let mut upstream = template.to_owned();
    for c in names {
        let port = if dead.contains(&c) {
            free_port()
        } else {
            *live.next().expect("enough backends")
        };
        letters.insert(port, c);
        upstream = upstream.replace(&format!("{{{c}}}"), &addr(port));
    }
    (upstream, letters)
}

/// Starts `proxy` on upstream `upstream`.
fn start(proxy: Proxy, upstream: &str) -> (Server, u16) {
    let port = free_port();
    let server = match proxy {
        Proxy::Nginx => Server::nginx(&conf(port, upstream, true), &[port]),
        Proxy::Waypost => Server::waypost(&conf(port, upstream, false), &[port]),
    };
    (server, port)
}

/// An `$upstream_addr` line (or a body's port) with ports as letters.
fn lettered(line: &str, letters: &HashMap<u16, char>) -> String {
    letters.iter().fold(line.to_owned(), |l, (p, c)| {
        l.replace(&addr(*p), &c.to_string())
            .replace(&format!("backend {p}"), &c.to_string())
    })
}

/// `n` GETs one after another: each request's `$upstream_addr` in letters,
/// with its status.
fn sequential(server: &Server, port: u16, n: usize, letters: &HashMap<u16, char>) -> Vec<String> {
    let before = server.read("logs/up.log").lines().count();
    let statuses: Vec<u16> = (0..n).map(|_| get(port, "/").status).collect();
    let lines = server.wait_lines("logs/up.log", before + n);
    assert_eq!(lines.len(), before + n, "one access log line per request");
    lines[before..]
        .iter()
        .zip(statuses)
        .map(|(line, status)| format!("{} {status}", lettered(line, letters)))
        .collect()
}

/// Runs `template` (`least_conn;` and the servers) through nginx and
/// waypost, `n` requests one after another; requires the same peers and
/// statuses for every request and returns them.
fn compare(template: &str, dead: &[char], n: usize) -> Vec<String> {
    let backends = Backends::start(6);
    let (upstream, letters) = fill(template, &backends, dead);
    let mut runs = [Proxy::Nginx, Proxy::Waypost].map(|proxy| {
        let (server, port) = start(proxy, &upstream);
        sequential(&server, port, n, &letters)
    });
    let [theirs, ours] = &mut runs;
    assert_eq!(
        ours, theirs,
        "peer sequences differ for\n{upstream}(left: waypost, right: nginx)"
    );
    std::mem::take(ours)
}

#[test]
fn idle_peers_take_turns_as_nginx_weights_5_1_1() {
    let lines = compare(
        "least_conn;\nserver {A} weight=5;\nserver {B};\nserver {C};\n",
        &[],
        21,
    );
    let order: String = lines.iter().map(|l| &l[..1]).collect();
    assert_eq!(order, "AABACAAAABACAAAABACAA");
}

#[test]
fn idle_peers_take_turns_as_nginx_weights_3_1_2() {
    let lines = compare(
        "least_conn;\nserver {A} weight=3;\nserver {B};\nserver {C} weight=2;\n",
        &[],
        18,
    );
    let order: String = lines.iter().map(|l| &l[..1]).collect();
    assert_eq!(order, "ACABCAACABCAACABCA");
}

#[test]
fn down_servers_as_nginx() {
    let lines = compare(
        "least_conn;\nserver {A} weight=2;\nserver {B} weight=5 down;\nserver {C};\nserver {D} down backup;\nserver {E} backup;\n",
        &[],
        9,
    );
    assert!(lines
        .iter()
        .all(|l| l.starts_with('A') || l.starts_with('C')));
    // The only primary down: the backups share by weight.
    compare(
        "least_conn;\nserver {A} down;\nserver {B} backup;\nserver {C} backup weight=2;\n",
        &[],
        6,
    );
}

#[test]
fn dead_servers_as_nginx() {
    // Spec 1.9's failure example: A dead, weight 3, max_fails 3.
    let lines = compare(
        "least_conn;\nserver {A} weight=3 max_fails=3;\nserver {B};\nserver {C} weight=2;\n",
        &['A'],
        12,
    );
    assert_eq!(
        lines,
        [
            "A, C 200", "B 200", "C 200", "A, C 200", "B 200", "A, C 200", "C 200", "C 200",
            "C 200", "B 200", "C 200", "C 200"
        ]
    );
    // Never disabled: every request that picks it tries it, then moves on.
    compare(
        "least_conn;\nserver {A};\nserver {B} max_fails=0;\nserver {C} weight=2;\n",
        &['B'],
        9,
    );
    // Dead primaries, one tolerating two failures, then the backups.
    compare(
        "least_conn;\nserver {A} max_fails=2;\nserver {B};\nserver {C} backup;\nserver {D} backup weight=2;\n",
        &['A', 'B'],
        8,
    );
    // Every peer dead: 502 after trying both, then no live upstreams.
    let lines = compare("least_conn;\nserver {A};\nserver {B};\n", &['A', 'B'], 3);
    assert_eq!(lines, ["A, B 502", "u 502", "u 502"]);
    // A single server is never marked failed.
    compare("least_conn;\nserver {A};\n", &['A'], 3);
}

/// What a proxy did with requests held on peers: the peers of the `held`
/// slow requests (in arrival order), of the `fast` requests sent while
/// they were held, and of `after` requests once they completed.
#[derive(Debug, PartialEq)]
struct Busy {
    held: Vec<char>,
    fast: Vec<char>,
    after: Vec<String>,
}

/// Sends `held` requests for `/slow` one at a time, each after the last
/// arrived at its backend (so each choice sees the previous ones in
/// flight), then `fast` requests one after another, then lets the slow
/// ones answer and sends `after` more.
fn busy(proxy: Proxy, template: &str, held: usize, fast: usize, after: usize) -> Busy {
    let backends = Backends::start(4);
    let (upstream, letters) = fill(template, &backends, &[]);
    let (server, port) = start(proxy, &upstream);
    let letter = |p: &u16| letters[p];

    let slow: Vec<JoinHandle<u16>> = (0..held)
        .map(|n| {
            let request = std::thread::spawn(move || get(port, "/slow").status);
            backends.wait_slow(n + 1);
            request
        })
        .collect();
    let held_on: Vec<char> = backends.wait_slow(held).iter().map(letter).collect();
    let fast_on: Vec<char> = (0..fast)
        .map(|_| {
            let r = get(port, "/");
            assert_eq!(r.status, 200, "{}", r.body);
            let p: u16 = r
                .body
                .trim()
                .trim_start_matches("backend ")
                .parse()
                .unwrap();
            letter(&p)
        })
        .collect();
    backends.open();
    for request in slow {
        assert_eq!(request.join().expect("slow request"), 200);
    }
    // Every request so far is logged, so every peer is released.
    server.wait_lines("logs/up.log", held + fast);
    let after_on = sequential(&server, port, after, &letters);
    Busy {
        held: held_on,
        fast: fast_on,
        after: after_on,
    }
}

/// Runs `busy` through nginx and waypost; requires the same peers.
fn compare_busy(template: &str, held: usize, fast: usize, after: usize) -> Busy {
    let theirs = busy(Proxy::Nginx, template, held, fast, after);
    let ours = busy(Proxy::Waypost, template, held, fast, after);
    assert_eq!(ours, theirs, "{template}(left: waypost, right: nginx)");
    ours
}

#[test]
fn busy_peers_are_avoided_as_nginx() {
    // A and B each hold a request: every other request goes to C.
    let run = compare_busy(
        "least_conn;\nserver {A};\nserver {B};\nserver {C};\n",
        2,
        5,
        6,
    );
    assert_eq!(run.held, ['A', 'B']);
    assert_eq!(run.fast, ['C'; 5]);
    // Weights divide the connections: A (weight 2) holding one request
    // is less busy than B holding one.
    let run = compare_busy("least_conn;\nserver {A} weight=2;\nserver {B};\n", 2, 4, 6);
    assert_eq!(run.held, ['A', 'B']);
    assert_eq!(run.fast, ['A'; 4]);
    // Three held on A (weight 3) against one on B: 3/3 = 1/1, a tie
    // broken by round robin over both.
    compare_busy(
        "least_conn;\nserver {A} weight=3;\nserver {B};\nserver {C} down;\n",
        4,
        6,
        4,
    );
}

#[test]
fn round_robin_does_not_avoid_busy_peers() {
    // The same held requests without least_conn: C is not preferred.
    let run = busy(
        Proxy::Waypost,
        "server {A};\nserver {B};\nserver {C};\n",
        2,
        6,
        0,
    );
    assert_eq!(run.held, ['A', 'B']);
    assert_eq!(run.fast, ['C', 'A', 'B', 'C', 'A', 'B']);
}

/// `n` requests through waypost with `template`: how many each peer got,
/// and the peers in order.
fn counts(template: &str, n: usize) -> (HashMap<char, usize>, String) {
    let backends = Backends::start(6);
    let (upstream, letters) = fill(template, &backends, &[]);
    let (server, port) = start(Proxy::Waypost, &upstream);
    let mut counts = HashMap::new();
    let mut order = String::new();
    for line in sequential(&server, port, n, &letters) {
        assert!(line.ends_with(" 200"), "{line}");
        let peer = line.chars().next().unwrap();
        *counts.entry(peer).or_default() += 1;
        order.push(peer);
    }
    (counts, order)
}

/// `count` is within `slack` of `share * n`.
fn assert_near(counts: &HashMap<char, usize>, peer: char, expected: f64, slack: f64) {
    let got = counts.get(&peer).copied().unwrap_or(0) as f64;
    assert!(
        (got - expected).abs() <= slack,
        "{peer}: {got} requests, expected {expected} ± {slack}: {counts:?}"
    );
}

#[test]
fn random_follows_the_weights_and_never_uses_a_down_peer() {
    // 1,200 requests, weights 1:2:3: 200, 400, 600 expected, with a
    // standard deviation of at most 17.3; ±95 is 5.5 of them.
    let (counts, order) = counts(
        "random;\nserver {A};\nserver {B} weight=2;\nserver {C} weight=3;\nserver {D} weight=4 down;\n",
        1_200,
    );
    assert_eq!(counts.get(&'D'), None, "{counts:?}");
    assert_near(&counts, 'A', 200.0, 95.0);
    assert_near(&counts, 'B', 400.0, 95.0);
    assert_near(&counts, 'C', 600.0, 95.0);
    // Not round robin's shares by another way: the smooth sequence never
    // gives weight 1 of 6 twice in a row; random does, about 33 times in
    // 1,199 pairs.
    assert!(order.contains("AA"), "{order}");
}

#[test]
fn random_two_with_idle_peers_keeps_the_second_draw() {
    // Equal load: the second of two distinct draws wins, so the shares
    // are 1/4, 2/5 and 7/20 for weights 1:2:3 (nginx's, too).
    let (counts, _) = counts(
        "random two least_conn;\nserver {A};\nserver {B} weight=2;\nserver {C} weight=3;\nserver {D} down;\n",
        1_200,
    );
    assert_eq!(counts.get(&'D'), None, "{counts:?}");
    assert_near(&counts, 'A', 300.0, 95.0);
    assert_near(&counts, 'B', 480.0, 95.0);
    assert_near(&counts, 'C', 420.0, 95.0);
}

#[test]
fn random_two_avoids_a_busy_peer() {
    // Of any two of three peers, at least one is idle and wins. (`two`
    // alone means least_conn.)
    for method in ["random two;", "random two least_conn;"] {
        let run = busy(
            Proxy::Waypost,
            &format!("{method}\nserver {{A}};\nserver {{B}};\nserver {{C}};\n"),
            1,
            30,
            0,
        );
        let busy = run.held[0];
        assert!(!run.fast.contains(&busy), "{method}: {run:?}");
        assert!(
            ['A', 'B', 'C']
                .iter()
                .filter(|&&c| c != busy)
                .all(|c| run.fast.contains(c)),
            "{method}: {run:?}"
        );
    }
}

/// `-t` of an upstream block through waypost and nginx: (exit code,
/// `[emerg]` lines without the program's prefix) for each.
fn check(upstream: &str) -> [(Option<i32>, Vec<String>); 2] {
    let dir = TempDir::new("lc-t");
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
    let emerg = |o: &std::process::Output, prefix: &str| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.contains("[emerg]"))
            .map(|l| l.strip_prefix(prefix).unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    };
    [
        (wp.status.code(), emerg(&wp, "waypost: ")),
        (nginx.status.code(), emerg(&nginx, "nginx: ")),
    ]
}

#[test]
fn directives_accepted_and_refused_as_nginx() {
    let accepted = [
        "least_conn;\nserver 127.0.0.1:1 weight=2 max_fails=2 fail_timeout=5s max_conns=10;\nserver 127.0.0.1:2 backup;\nserver 127.0.0.1:3 down;\n",
        "random;\nserver 127.0.0.1:1 weight=2 max_fails=2 fail_timeout=5s max_conns=10;\nserver 127.0.0.1:3 down;\n",
        "random two;\nserver 127.0.0.1:1;\n",
        "random two least_conn;\nserver 127.0.0.1:1;\n",
        // nginx checks a server's parameters when it reads the line: a
        // backup written before `random` is not refused.
        "server 127.0.0.1:2 backup;\nrandom;\nserver 127.0.0.1:1;\n",
    ];
    for upstream in accepted {
        let [(wp_code, wp), (nginx_code, nginx)] = check(upstream);
        assert_eq!(nginx_code, Some(0), "{upstream}{nginx:?}");
        assert_eq!(wp_code, Some(0), "{upstream}{wp:?}");
    }
    let refused = [
        (
            "least_conn two;\nserver 127.0.0.1:1;\n",
            "invalid number of arguments in \"least_conn\" directive",
        ),
        (
            "random least_conn;\nserver 127.0.0.1:1;\n",
            "invalid parameter \"least_conn\"",
        ),
        (
            "random two fewest;\nserver 127.0.0.1:1;\n",
            "invalid parameter \"fewest\"",
        ),
        (
            "random two least_conn x;\nserver 127.0.0.1:1;\n",
            "invalid number of arguments in \"random\" directive",
        ),
        (
            "random;\nserver 127.0.0.1:1;\nserver 127.0.0.1:2 backup;\n",
            "balancing method does not support parameter \"backup\"",
        ),
    ];
    for (upstream, message) in refused {
        let [(wp_code, wp), (nginx_code, nginx)] = check(upstream);
        assert_eq!(
            (wp_code, nginx_code),
            (Some(1), Some(1)),
            "{upstream}{wp:?}{nginx:?}"
        );
        assert_eq!(wp, nginx, "{upstream}(left: waypost, right: nginx)");
        assert_eq!(wp.len(), 1, "{wp:?}");
        assert!(
            wp[0].starts_with(&format!("[emerg] {message} in ")),
            "{wp:?}"
        );
    }
}
