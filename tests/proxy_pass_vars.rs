//! `proxy_pass` with variables side by side with nginx: an address from
//! `set` or a `map`, an `upstream` block's name (which must come without
//! a port), the URI part sent as it is, the request's own target without
//! one, after a `rewrite ... break` and in a location's `if`; a name with
//! no `resolver` (502), a bad scheme, port or an empty value (500) with
//! nginx's error lines; no `proxy_redirect default` for it; `$proxy_host`
//! (not found where `deny` refuses the request, a fixed `proxy_pass` too)
//! and `$upstream_addr` in the access log; `$proxy_port`. Then the configuration errors,
//! and a reload that changes the upstream block a value names.

use waypost_tests::{
    assert_among, assert_t_cases, exchange, free_ports, request_lines, wrap_http, Server, Waypost,
};

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format pv '$request_uri $status [$proxy_host] [$upstream_addr]';\n\
             \x20   upstream grp {{ server 127.0.0.1:{back}; }}\n\
             \x20   map $arg_to $mapped {{ g grp; default 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/pv.log pv;\n\
             \x20       set $addr 127.0.0.1:{back};\n\
             \x20       location /a/ {{ proxy_pass http://$addr; }}\n\
             \x20       location /u/ {{ proxy_pass http://127.0.0.1:{back}/x$uri?z=$arg_z; }}\n\
             \x20       location /q/ {{ proxy_pass http://$addr?$args; }}\n\
             \x20       location /g/ {{ set $b grp; proxy_pass http://$b; }}\n\
             \x20       location /gp/ {{ set $b grp:80; proxy_pass http://$b; }}\n\
             \x20       location /G/ {{ set $b GRP; proxy_pass HTTP://$b; }}\n\
             \x20       location /m/ {{ proxy_pass http://$mapped; }}\n\
             \x20       location /h/ {{ set $b nohost.invalid; proxy_pass http://$b; }}\n\
             \x20       location /p/ {{ set $b ftp://x; proxy_pass $b; }}\n\
             \x20       location /pd/ {{ deny all; set $b ftp://x; proxy_pass $b; }}\n\
             \x20       location /sd/ {{ deny all; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /vd/ {{ deny all; proxy_pass http://$addr; }}\n\
             \x20       location /n/ {{ set $b http://127.0.0.1:99999; proxy_pass $b; }}\n\
             \x20       location /e/ {{ set $b \"\"; proxy_pass http://$b; }}\n\
             \x20       location /r/ {{ rewrite ^/r/(.*)$ /moved/$1 break; proxy_pass http://$addr; }}\n\
             \x20       location /i/ {{\n\
             \x20           if ($arg_go) {{ proxy_pass http://$addr; }}\n\
             \x20           proxy_pass http://127.0.0.1:{back}/other/;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{back};\n\
             \x20       location /g/redir {{ return 302 http://$host/elsewhere; }}\n\
             \x20       location / {{ return 200 \"[$request_uri] [$http_host]\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

const TARGETS: &[&str] = &[
    "/a/b?c=1",
    "/a/%41b",
    "/u/k?z=2",
    "/q/x?a=1&b=2",
    "/g/x",
    "/g/redir",
    "/gp/x",
    "/G/x",
    "/m/x?to=g",
    "/m/y",
    "/h/",
    "/p/",
    "/pd/",
    "/sd/",
    "/vd/",
    "/n/",
    "/e/",
    "/r/a%20b?k=v",
    "/i/x?go=1",
    "/i/x",
];

/// What a run shows: each target's status, Location and body; the access
/// log's lines; the error log's `[error]` lines (the backend's port as
/// BACK in all).
struct Seen {
    answers: Vec<String>,
    log: Vec<String>,
    errors: Vec<String>,
}

/// Sends `targets` to the server on `port` and reads what it logged.
fn observe(server: &Server, port: u16, back: u16, targets: &[&str]) -> Seen {
    let answers = send(port, back, targets);
    let (log, errors) = logged(server, back, targets.len());
    Seen {
        answers,
        log,
        errors,
    }
}

/// Each target's status, Location and body.
fn send(port: u16, back: u16, targets: &[&str]) -> Vec<String> {
    let back = back.to_string();
    targets
        .iter()
        .map(|t| {
            let answer = exchange(
                port,
                &format!("GET {t} HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n"),
            );
            let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
            let location = answer
                .lines()
                .find_map(|l| l.strip_prefix("Location: "))
                .unwrap_or("")
                .trim()
                .to_owned();
            let body = answer.rsplit("\r\n\r\n").next().unwrap_or("").trim();
            let body = if status == "200" { body } else { "" };
            format!("{t} -> {status} {location} {body}").replace(&back, "BACK")
        })
        .collect()
}

/// The access log's `lines` lines and the error log's `[error]` lines.
fn logged(server: &Server, back: u16, lines: usize) -> (Vec<String>, Vec<String>) {
    let back = back.to_string();
    let log = server
        .wait_lines("logs/pv.log", lines)
        .iter()
        .map(|l| l.replace(&back, "BACK"))
        .collect();
    let errors = request_lines(&server.read("logs/error.log"))
        .into_iter()
        .filter(|l| l.starts_with("[error]"))
        .map(|l| l.replace(&back, "BACK"))
        .collect();
    (log, errors)
}

fn run(nginx: bool) -> Seen {
    let ports = free_ports(2);
    let server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
    observe(&server, ports[0], ports[1], TARGETS)
}

/// Compares waypost's run with nginx's, part by part.
fn assert_same(ours: &Seen, theirs: &Seen) {
    let what = "waypost (left) and nginx (right)";
    assert_eq!(ours.answers, theirs.answers, "answers: {what}");
    assert_eq!(ours.errors, theirs.errors, "error log: {what}");
    assert_eq!(ours.log, theirs.log, "access log: {what}");
}

#[test]
fn proxy_pass_with_variables_as_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same(&ours, &theirs);
    // What nginx answered, so that a change in either program shows.
    assert_among(
        &theirs.answers,
        &[
            "/a/b?c=1 -> 200  [/a/b?c=1] [127.0.0.1:BACK]",
            "/a/%41b -> 200  [/a/%41b] [127.0.0.1:BACK]",
            "/u/k?z=2 -> 200  [/x/u/k?z=2] [127.0.0.1:BACK]",
            "/q/x?a=1&b=2 -> 200  [/?a=1&b=2] [127.0.0.1:BACK]",
            "/g/x -> 200  [/g/x] [grp]",
            "/g/redir -> 302 http://grp/elsewhere ",
            "/gp/x -> 502  ",
            "/G/x -> 200  [/G/x] [GRP]",
            "/m/x?to=g -> 200  [/m/x?to=g] [grp]",
            "/m/y -> 200  [/m/y] [127.0.0.1:BACK]",
            "/h/ -> 502  ",
            "/p/ -> 500  ",
            // Access is decided first, as nginx's phases go.
            "/pd/ -> 403  ",
            "/r/a%20b?k=v -> 200  [/moved/a%20b?k=v] [127.0.0.1:BACK]",
            "/i/x?go=1 -> 200  [/i/x?go=1] [127.0.0.1:BACK]",
            "/i/x -> 200  [/other/x] [127.0.0.1:BACK]",
        ],
    );
    assert_among(
        &theirs.errors,
        &[
            "[error] no resolver defined to resolve nohost.invalid, client: 127.0.0.1, server: , request: \"GET /h/ HTTP/1.1\", host: \"front\"",
            "[error] invalid URL prefix in \"ftp://x\", client: 127.0.0.1, server: , request: \"GET /p/ HTTP/1.1\", host: \"front\"",
            "[error] invalid port in upstream \"127.0.0.1:99999\", client: 127.0.0.1, server: , request: \"GET /n/ HTTP/1.1\", host: \"front\"",
            "[error] invalid URL prefix in \"http://\", client: 127.0.0.1, server: , request: \"GET /e/ HTTP/1.1\", host: \"front\"",
        ],
    );
}

/// `$proxy_host` and `$proxy_port` as nginx sets them: the port as
/// written, else the scheme's (and the host without a port that is the
/// scheme's), for a fixed `proxy_pass` and one with variables; in the
/// upstream request's headers and the access log.
#[test]
fn proxy_port_as_nginx() {
    let conf = |port: u16, back: u16, nginx: bool| {
        wrap_http(
            &format!(
                "    log_format pp '$request_uri $status [$proxy_host] [$proxy_port]';\n\
                 \x20   upstream grp {{ server 127.0.0.1:{back}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/pp.log pp;\n\
                 \x20       proxy_set_header X-Port \"$proxy_host|$proxy_port|${{proxy_port}}x\";\n\
                 \x20       location /s/ {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /u/ {{ proxy_pass http://grp; }}\n\
                 \x20       location /d/ {{ set $b 127.0.0.1:{back}; proxy_pass http://$b; }}\n\
                 \x20       location /dg/ {{ set $b grp; proxy_pass http://$b; }}\n\
                 \x20       location /ds/ {{ set $b https://grp; proxy_pass $b; }}\n\
                 \x20       location /p80/ {{ proxy_pass http://127.0.0.2:80; }}\n\
                 \x20       location /d443/ {{ set $b https://127.0.0.2:443; proxy_pass $b; }}\n\
                 \x20       location /no/ {{ deny all; proxy_pass http://grp; }}\n\
                 \x20       location /r/ {{ return 200 \"[$proxy_host] [$proxy_port]\"; }}\n\
                 \x20   }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{back};\n\
                 \x20       location / {{ return 200 \"[$http_host] [$http_x_port]\"; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        )
    };
    let targets = [
        "/s/", "/u/", "/d/", "/dg/", "/ds/", "/p80/", "/d443/", "/no/", "/r/",
    ];
    let run = |nginx: bool| {
        let ports = free_ports(2);
        let server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
        let answers = send(ports[0], ports[1], &targets);
        let back = ports[1].to_string();
        let log: Vec<String> = server
            .wait_lines("logs/pp.log", targets.len())
            .iter()
            .map(|l| l.replace(&back, "BACK"))
            .collect();
        (answers, log)
    };
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours, theirs, "waypost (left) and nginx (right)");
    assert_among(
        &theirs.0,
        &[
            "/s/ -> 200  [127.0.0.1:BACK] [127.0.0.1:BACK|BACK|BACKx]",
            "/u/ -> 200  [grp] [grp|80|80x]",
            "/d/ -> 200  [127.0.0.1:BACK] [127.0.0.1:BACK|BACK|BACKx]",
            "/dg/ -> 200  [grp] [grp|80|80x]",
            "/r/ -> 200  [] []",
        ],
    );
    assert_among(
        &theirs.1,
        &[
            "/ds/ 502 [grp] [443]",
            "/p80/ 502 [127.0.0.2] [80]",
            "/d443/ 502 [127.0.0.2] [443]",
            "/no/ 403 [-] [-]",
            "/r/ 200 [-] [-]",
        ],
    );
}

#[test]
fn proxy_pass_variables_errors_as_nginx() {
    let emerg = |m: &str, line: u32| format!("[emerg] {m} in CONF:{line} (exit Some(1))");
    let location = |lines: &str| {
        format!("http {{\n    server {{\n        location / {{\n            {lines}\n        }}\n    }}\n}}\n")
    };
    let cases = vec![
        (
            location("set $b x;\n            proxy_pass http://$b;\n            proxy_redirect default;"),
            emerg("\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables", 9),
            Waypost::Same,
        ),
        (
            location("proxy_pass http://$nowhere;"),
            "[emerg] unknown \"nowhere\" variable (exit Some(1))".into(),
            // The README's difference: waypost names the line.
            Waypost::Exactly(emerg("unknown \"nowhere\" variable", 7)),
        ),
        (
            location("set $b x;\n            proxy_pass http://$b;\n            proxy_redirect http://a/ /;"),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
        (
            location("set $b x;\n            proxy_pass $b;"),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("proxy-pass-vars", &cases);
}

/// A reload that moves the `upstream` block a value names to another
/// backend: requests after it go there.
#[test]
fn reload_changes_the_named_upstream() {
    let ports = free_ports(3);
    let conf = |back: u16| {
        wrap_http(
            &format!(
                "    upstream grp {{ server 127.0.0.1:{back}; }}\n\
                 \x20   server {{ listen 127.0.0.1:{}; set $b grp; location / {{ proxy_pass http://$b; }} }}\n\
                 \x20   server {{ listen 127.0.0.1:{}; return 200 \"one\\n\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{}; return 200 \"two\\n\"; }}\n",
                ports[0], ports[1], ports[2]
            ),
            false,
        )
    };
    let server = Server::waypost(&conf(ports[1]), &ports);
    let get = || exchange(ports[0], "GET / HTTP/1.0\r\n\r\n");
    assert!(get().ends_with("\r\n\r\none\n"), "{}", get());
    server.reload_with(&conf(ports[2]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !get().ends_with("\r\n\r\ntwo\n") {
        assert!(std::time::Instant::now() < deadline, "still: {}", get());
        std::thread::yield_now();
    }
}

/// A name server on loopback for the `resolver` tests: `app.test` has
/// the A record 127.0.0.1 (TTL 60 s) and no other; other names do not
/// exist. It keeps the questions it was asked (name, type).
struct Dns {
    port: u16,
    asked: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
}

impl Dns {
    fn start() -> Dns {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        let port = socket.local_addr().expect("dns addr").port();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some((question, answer)) = dns_answer(&buf[..n]) {
                    log.lock().expect("dns log").push(question);
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Dns { port, asked }
    }

    fn asked(&self) -> Vec<(String, u16)> {
        self.asked.lock().expect("dns log").clone()
    }
}

/// The answer to a DNS query, and its question.
fn dns_answer(query: &[u8]) -> Option<((String, u16), Vec<u8>)> {
    let mut at = 12;
    let mut labels = Vec::new();
    while *query.get(at)? != 0 {
        let n = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + n)?).to_lowercase());
        at += 1 + n;
    }
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let question = query.get(12..at + 5)?;
    let name = labels.join(".");
    let (rcode, found): (u8, &[[u8; 4]]) = match (name.as_str(), qtype) {
        ("app.test", 1) => (0, &[[127, 0, 0, 1]]),
        ("two.test", 1) => (0, &[[127, 0, 0, 1], [127, 0, 0, 2]]),
        ("two.test", _) => (0, &[]),
        ("app.test", _) => (0, &[]),
        _ => (3, &[]),
    };
    let mut out = query[..2].to_vec();
    out.extend([0x81, 0x80 | rcode, 0, 1, 0, found.len() as u8, 0, 0, 0, 0]);
    out.extend(question);
    for addr in found {
        out.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend(addr);
    }
    Some(((name, qtype), out))
}

fn resolver_conf(port: u16, back: u16, dns: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format pv '$request_uri $status [$proxy_host] [$upstream_addr]';\n\
             \x20   resolver 127.0.0.1:{dns} valid=30s ipv6=off;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/pv.log pv;\n\
             \x20       location /d/ {{ set $b app.test:{back}; proxy_pass http://$b; }}\n\
             \x20       location /dx/ {{ set $b nothere.test:{back}; proxy_pass http://$b; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{back};\n\
             \x20       location / {{ return 200 \"[$request_uri] [$http_host]\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

const RESOLVED: &[&str] = &["/d/x", "/d/y?a=1", "/dx/", "/dx/again"];

/// What a run of [`resolver_conf`] shows, and the questions asked.
fn run_resolver(nginx: bool) -> (Seen, Vec<(String, u16)>) {
    let ports = free_ports(2);
    let dns = Dns::start();
    let conf = resolver_conf(ports[0], ports[1], dns.port, nginx);
    let server = Server::either(nginx, &conf, &ports);
    let seen = observe(&server, ports[0], ports[1], RESOLVED);
    (seen, dns.asked())
}

#[test]
fn resolver_as_nginx() {
    let (ours, our_questions) = run_resolver(false);
    let (theirs, their_questions) = run_resolver(true);
    assert_same(&ours, &theirs);
    // One A question for `app.test`, kept for `valid=30s`; the name that
    // does not exist is asked for again.
    assert_eq!(
        our_questions, their_questions,
        "questions: waypost (left) and nginx (right)"
    );
    let asked: Vec<(&str, u16)> = their_questions
        .iter()
        .map(|(n, t)| (n.as_str(), *t))
        .collect();
    assert_eq!(
        asked,
        [("app.test", 1), ("nothere.test", 1), ("nothere.test", 1)]
    );
    assert_eq!(
        theirs.answers,
        [
            "/d/x -> 200  [/d/x] [app.test:BACK]",
            "/d/y?a=1 -> 200  [/d/y?a=1] [app.test:BACK]",
            "/dx/ -> 502  ",
            "/dx/again -> 502  ",
        ]
    );
    let want = "[error] nothere.test could not be resolved (3: Host not found), client: 127.0.0.1, server: , request: \"GET /dx/ HTTP/1.1\", host: \"front\"";
    assert!(
        theirs.errors.iter().any(|l| l == want),
        "{want}\n{:#?}",
        theirs.errors
    );
}

/// A backend that starts late on 127.0.0.1 and 127.0.0.2, `port`: each
/// connection gets one small answer.
fn late_backend(port: u16) {
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let listener = std::net::TcpListener::bind((ip, port)).expect("bind late backend");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let _ = std::io::Write::write_all(
                    &mut stream,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlate\n",
                );
            }
        });
    }
}

fn resolver_conf2(ports: &[u16], dns: u16, silent: u16, nginx: bool) -> String {
    let [port, back, late] = ports[..] else {
        unreachable!("three ports")
    };
    wrap_http(
        &format!(
            "    log_format pv '$request_uri $status [$proxy_host]';\n\
             \x20   log_format rt '$request_uri $request_time';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/pv.log pv;\n\
             \x20       access_log logs/rt.log rt;\n\
             \x20       location /d6/ {{ resolver 127.0.0.1:{dns} valid=30s; set $b app.test:{back}; proxy_pass http://$b; }}\n\
             \x20       location /d2/ {{\n\
             \x20           resolver 127.0.0.1:{silent} 127.0.0.1:{dns} ipv6=off;\n\
             \x20           resolver_timeout 8s;\n\
             \x20           set $b app.test:{back};\n\
             \x20           proxy_pass http://$b;\n\
             \x20       }}\n\
             \x20       location /dd/ {{ resolver 127.0.0.1:{dns} ipv6=off; set $b two.test:{late}; proxy_pass http://$b; }}\n\
             \x20       location /dn/ {{\n\
             \x20           deny all;\n\
             \x20           resolver 127.0.0.1:{silent};\n\
             \x20           resolver_timeout 3s;\n\
             \x20           proxy_pass http://$arg_h;\n\
             \x20       }}\n\
             \x20       location /dt/ {{\n\
             \x20           resolver 127.0.0.1:{silent} ipv6=off;\n\
             \x20           resolver_timeout 1s;\n\
             \x20           set $b app.test;\n\
             \x20           proxy_pass http://$b:{back};\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{back};\n\
             \x20       location / {{ return 200 \"[$request_uri]\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

struct Resolved2 {
    answers: Vec<String>,
    log: Vec<String>,
    questions: Vec<(String, u16)>,
    /// `$request_time` of the request whose name timed out.
    timed_out_after: f64,
    /// The error line of that request.
    timed_out: Option<String>,
    /// `$request_time` of a denied request whose name nobody answers.
    denied_after: f64,
}

fn run_resolver2(nginx: bool) -> Resolved2 {
    let ports = free_ports(3);
    let dns = Dns::start();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind silent");
    let silent_port = silent.local_addr().expect("silent addr").port();
    let conf = resolver_conf2(&ports, dns.port, silent_port, nginx);
    let server = Server::either(nginx, &conf, &ports[..2]);
    let mut answers = send(
        ports[0],
        ports[1],
        &["/d6/a", "/d6/b", "/d2/", "/dd/a", "/dt/", "/dn/?h=x.test"],
    );
    // Both of `two.test`'s addresses failed; the backend starts, and the
    // next request gets it.
    late_backend(ports[2]);
    answers.extend(send(ports[0], ports[1], &["/dd/b"]));
    let (log, errors) = logged(&server, ports[1], answers.len());
    let timed_out = errors.into_iter().find(|l| l.contains("GET /dt/"));
    let log = log
        .iter()
        .map(|l| l.replace(&ports[2].to_string(), "LATE"))
        .collect();
    let times = server.wait_lines("logs/rt.log", answers.len());
    let time_of = |uri: &str| -> f64 {
        times
            .iter()
            .find_map(|l| l.strip_prefix(uri))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let timed_out_after = time_of("/dt/ ");
    let denied_after = time_of("/dn/?h=x.test ");
    let mut questions = dns.asked();
    // Asked at once, A and AAAA come in either order.
    questions.sort();
    Resolved2 {
        answers,
        log,
        questions,
        timed_out_after,
        timed_out,
        denied_after,
    }
}

/// IPv6 questions kept like the others, a name server that does not
/// answer passed over for the next, failed addresses not remembered from
/// one request to the next, and the time spent resolving counted in
/// `$request_time`.
#[test]
fn resolver_retries_and_forgets_as_nginx() {
    let ours = run_resolver2(false);
    let theirs = run_resolver2(true);
    let what = "waypost (left) and nginx (right)";
    assert_eq!(ours.answers, theirs.answers, "answers: {what}");
    assert_eq!(ours.log, theirs.log, "access log: {what}");
    assert_eq!(ours.questions, theirs.questions, "questions: {what}");
    assert_eq!(
        theirs.answers,
        [
            "/d6/a -> 200  [/d6/a]",
            "/d6/b -> 200  [/d6/b]",
            "/d2/ -> 200  [/d2/]",
            "/dd/a -> 502  ",
            "/dt/ -> 502  ",
            "/dn/?h=x.test -> 403  ",
            "/dd/b -> 200  late",
        ]
    );
    for run in [&ours, &theirs] {
        assert!(run.timed_out_after >= 0.9, "{}", run.timed_out_after);
        // Access is decided before the name is asked for: no wait.
        assert!(
            (0.0..1.0).contains(&run.denied_after),
            "{}",
            run.denied_after
        );
    }
    assert_eq!(ours.timed_out, theirs.timed_out, "{what}");
    assert_eq!(
        theirs.timed_out.as_deref(),
        Some("[error] app.test could not be resolved (110: Operation timed out), client: 127.0.0.1, server: , request: \"GET /dt/ HTTP/1.1\", host: \"front\"")
    );
}
