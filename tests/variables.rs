//! Variables side by side with nginx.
//!
//! One config runs in both programs; `return` texts print variables, and
//! requests written byte for byte on raw sockets (odd URIs, repeated and
//! missing arguments, cookies, hosts) must get the same status, Location
//! and body. realip (X-Real-IP, X-Forwarded-For with and without
//! `real_ip_recursive`, untrusted sources, the server's and the location's
//! settings), ip_hash behind realip, and unknown variables in the config
//! are compared the same way.
//!
//! What differs by nature is replaced before comparing: the listening
//! port (`{port}`), the client's own port (`{cport}`), and the server's
//! name in error pages.

use std::io::{Read, Write};
use std::time::Duration;

use waypost_tests::{connect_from, free_ports, run_nginx, run_waypost, wrap_http, Server, TempDir};

/// A response as compared: status, Location, body.
#[derive(Debug, PartialEq, Eq)]
struct Resp {
    status: u16,
    location: Option<String>,
    body: String,
}

/// Sends `request` exactly as given from `src` and reads the response to
/// the end (requests are HTTP/1.0 or say `Connection: close`).
fn send(port: u16, src: [u8; 4], request: &[u8]) -> Resp {
    // A client address other than 127.0.0.1 can get the server's port
    // number as its own (another address); then the two placeholders
    // below cannot be told apart: connect again.
    let (mut stream, cport) = loop {
        let stream = connect_from(src, port);
        let cport = stream.local_addr().expect("local address").port();
        if cport != port {
            break (stream, cport);
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let location = head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    // Bytes as \xHH so that a raw byte of $uri compares as text.
    let body: String = raw[end + 4..]
        .iter()
        .map(|&c| {
            if c.is_ascii() {
                (c as char).to_string()
            } else {
                format!("\\x{c:02X}")
            }
        })
        .collect();
    let fill = |s: String| {
        s.replace(&port.to_string(), "{port}")
            .replace(&cport.to_string(), "{cport}")
            .replace("nginx/1.22.1", "SERVER")
            .replace("waypost", "SERVER")
    };
    Resp {
        status,
        location: location.map(fill),
        body: fill(body),
    }
}

/// Every variable both programs have, in one `return` text.
const VARS: &str =
    "ra=$remote_addr|bra=$binary_remote_addr|rp=$remote_port|rra=$realip_remote_addr|\
uri=$uri|du=$document_uri|args=$args|qs=$query_string|ia=$is_args|a=$arg_a|ax=${arg_a}x|A=$ARG_A|\
b=$arg_b|e=$arg_|hx=$http_x_foo|hxff=$http_x_forwarded_for|hc=$http_cookie|hh=$http_host|\
ua=$http_user_agent|c=$cookie_c|d=$cookie_D|host=$host|ru=$request_uri|m=$request_method|\
req=$request|sp=$server_port|sn=$server_name|sa=$server_addr|proto=$server_protocol|\
scheme=$scheme|https=$https|cl=$content_length|ct=$content_type|user=$remote_user|st=$status|\
cap=$1|end";

/// An access log line of request variables (the time and sizes differ by
/// nature).
const LOGGED: &str = "$remote_addr|$remote_user|$request|$status|$uri|$args|$is_args|$arg_a|\
$arg_b|$cookie_c|$http_x_foo|$http_referer|$http_cookie|$host|$content_length|$content_type|\
$request_uri|$proxy_host|$binary_remote_addr|$http_user_agent";

fn vars_conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format v '{LOGGED}';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name Example.COM other;\n\
             \x20       location / {{ access_log logs/vars.log v; return 200 \"{VARS}\\n\"; }}\n\
             \x20       location /sub/ {{ return 200 \"sub uri=$uri args=$args ${{arg_a}}x\\n\"; }}\n\
             \x20       location = /exact {{ return 200 \"exact uri=$uri\\n\"; }}\n\
             \x20       location /redirect/ {{ return 302 \"/to$uri?$args\"; }}\n\
             \x20       location /away {{ return 301 \"http://$host:1$request_uri\"; }}\n\
             \x20       location /nf {{ return 404; }}\n\
             \x20       location /nft {{ return 404 \"not here: $uri\\n\"; }}\n\
             \x20       location /empty {{ return 200 \"$arg_none\"; }}\n\
             \x20       location /status {{ return 201 \"$status $request_method\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `GET path HTTP/1.0` with extra header lines.
fn get10(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.0\r\n{headers}\r\n").into_bytes()
}

/// `GET path HTTP/1.1` with a Host and `Connection: close`.
fn get11(path: &str, host: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("root", get10("/", "")),
        ("merged slashes and dots", get10("/a//b/./c/../d", "")),
        ("escapes", get10("/%41%2F", "")),
        ("escaped dots", get10("/a/%2e%2e/b", "")),
        ("escaped slashes", get10("/a%2F..%2Fb", "")),
        ("trailing dot-dot", get10("/a/b/..", "")),
        ("dot slash", get10("/a/./", "")),
        ("only slashes", get10("////", "")),
        ("escaped specials", get10("/a%25%23%3f%3F%2b", "")),
        ("utf-8 escapes", get10("/%C3%A9?x=%C3%A9", "")),
        ("a byte that is not utf-8", get10("/%FF", "")),
        ("escaped newline", get10("/a%0Ab", "")),
        ("escaped space", get10("/p%20q?x=%41", "")),
        ("dot-dot above root", get10("/../x", "")),
        ("escaped dot-dot above root", get10("/%2e%2e", "")),
        ("bad escape", get10("/%zz", "")),
        ("escaped NUL", get10("/a%00b", "")),
        ("cut escape", get10("/a%2", "")),
        ("dot-dot inside a name", get10("/a/..b/c", "")),
        ("repeated args", get10("/x?a=1&A=2&b=3", "")),
        ("empty then set", get10("/x?b=1&a=&a=3", "")),
        ("arg without =", get10("/x?a", "")),
        ("arg without = then set", get10("/x?a&a=2", "")),
        ("empty query", get10("/x?", "")),
        ("arg as a suffix", get10("/x?xa=1&a=%20b+c", "")),
        ("arg case", get10("/x?B=up&b=low", "")),
        (
            "cookies in two headers",
            get10("/", "Cookie: c=1; D=2\r\nCookie: c=3; e=4\r\n"),
        ),
        ("repeated cookie", get10("/", "Cookie: a=1;c=2;  c=3\r\n")),
        ("cookie case and spaces", get10("/", "Cookie: C = 5 ; d=6\r\n")),
        (
            "headers repeated",
            get10(
                "/",
                "X-Foo: x1\r\nX-Foo: x2\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n",
            ),
        ),
        (
            "host with port",
            get11("/h", "Foo.Example.COM:8080", "User-Agent: t/1\r\n"),
        ),
        ("host with trailing dot", get11("/h", "a.", "")),
        ("IPv6 host", get11("/h", "[::1]:80", "")),
        ("host with two colons", get11("/h", "a:b:c", "")),
        ("no host, HTTP/1.0", get10("/h", "")),
        (
            "no host, HTTP/1.1",
            b"GET /h HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("host with two dots", get11("/h", "a..b", "")),
        ("host with a slash", get11("/h", "a/b", "")),
        ("host with a backslash", get11("/h", "A\\b", "")),
        ("empty host", get11("/h", "", "")),
        (
            "two hosts",
            b"GET /h HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "absolute URI",
            get11("http://Abs.Host:5/p?q", "other", ""),
        ),
        (
            "POST",
            b"POST /p?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Type: text/x\r\nConnection: close\r\n\r\nabc"
                .to_vec(),
        ),
        ("lowercase method", b"get / HTTP/1.0\r\n\r\n".to_vec()),
        ("method with - and _", b"M-X_Y /m HTTP/1.0\r\n\r\n".to_vec()),
        ("asterisk", b"OPTIONS * HTTP/1.0\r\n\r\n".to_vec()),
        (
            "basic auth user",
            get10("/", "Authorization: Basic dXNlcjpwYXNz\r\n"),
        ),
        ("basic auth without user", get10("/", "Authorization: Basic OnBhc3M=\r\n")),
        ("header with a raw byte", {
            let mut r = b"GET / HTTP/1.0\r\nX-Foo: caf".to_vec();
            r.extend_from_slice(b"\xe9\r\n\r\n");
            r
        }),
        ("location by normalized uri", get10("/a/../sub/x?a=1", "")),
        ("location by escaped slash", get10("/sub%2Fy", "")),
        ("exact location", get10("/exact", "")),
        ("exact location after dot", get10("/./exact", "")),
        ("relative redirect", get10("/redirect/x?a=1", "")),
        (
            "relative redirect with host",
            get11("/redirect/y", "Red.Example:81", ""),
        ),
        ("absolute redirect", get11("/away?z=1", "h", "")),
        ("404 without text", get10("/nf", "")),
        ("404 with text", get10("/nft", "")),
        ("empty text", get10("/empty", "")),
        ("status", get10("/status", "")),
    ]
}

/// Runs `reqs` against both programs; returns the differences.
fn differences(
    nginx_port: u16,
    waypost_port: u16,
    reqs: &[(&str, [u8; 4], Vec<u8>)],
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, src, raw) in reqs {
        let theirs = send(nginx_port, *src, raw);
        let ours = send(waypost_port, *src, raw);
        if theirs != ours {
            diffs.push(format!(
                "{name} ({:?}):\n  nginx:   {theirs:?}\n  waypost: {ours:?}",
                String::from_utf8_lossy(raw)
            ));
        }
    }
    diffs
}

fn assert_same(diffs: Vec<String>, total: usize) {
    assert!(
        diffs.is_empty(),
        "{} of {total} requests differ:\n\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
}

#[test]
fn variables_match_nginx() {
    let [np, wp] = free_ports(2)[..] else {
        unreachable!()
    };
    let nginx = Server::nginx(&vars_conf(np, true), &[np]);
    let waypost = Server::waypost(&vars_conf(wp, false), &[wp]);
    let reqs: Vec<_> = requests()
        .into_iter()
        .map(|(n, r)| (n, [127, 0, 0, 1], r))
        .collect();
    assert!(reqs.len() >= 30);
    // The texts really carry the variables (not two empty answers).
    let sample = send(wp, [127, 0, 0, 1], &get10("/a//b/./c/../d?a=1", ""));
    assert!(
        sample
            .body
            .starts_with("ra=127.0.0.1|bra=\u{7f}\0\0\u{1}|rp={cport}|rra=127.0.0.1|uri=/a/b/d|"),
        "{sample:?}"
    );
    assert!(sample.body.contains("|a=1|ax=1x|A=1|"), "{sample:?}");
    let total = reqs.len();
    assert_same(differences(np, wp, &reqs), total);
    // The same variables in the access log (escaped, `-` when missing).
    let theirs = nginx.read("logs/vars.log");
    let theirs: Vec<&str> = theirs.lines().collect();
    let ours = waypost.wait_lines("logs/vars.log", theirs.len() + 1);
    assert!(theirs.len() > 20, "{theirs:?}");
    // The sample request above went to waypost only.
    let ours: Vec<String> = ours.into_iter().skip(1).collect();
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "access log line {i} (left: waypost, right: nginx)");
    }
    assert_eq!(ours.len(), theirs.len());
}

/// What realip shows.
const REAL: &str = "ra=$remote_addr|rp=$remote_port|rra=$realip_remote_addr|rrp=$realip_remote_port|bra=$binary_remote_addr\\n";

fn realip_conf(ports: &[u16], backend: u16, nginx: bool) -> String {
    let [p1, p2, p3, p4, p5] = ports[..] else {
        unreachable!()
    };
    wrap_http(
        &format!(
            "    log_format real '$remote_addr $realip_remote_addr \"$http_x_forwarded_for\" $uri $status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p1};\n\
             \x20       set_real_ip_from 127.0.0.1;\n\
             \x20       location / {{ return 200 \"{REAL}\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p2};\n\
             \x20       set_real_ip_from 127.0.0.0/24;\n\
             \x20       real_ip_header X-Forwarded-For;\n\
             \x20       location / {{ return 200 \"{REAL}\"; }}\n\
             \x20       location /rec {{ real_ip_recursive on; return 200 \"{REAL}\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p3};\n\
             \x20       real_ip_recursive on;\n\
             \x20       set_real_ip_from 127.0.0.0/24;\n\
             \x20       set_real_ip_from 10.0.0.0/8;\n\
             \x20       real_ip_header X-Forwarded-For;\n\
             \x20       location / {{ return 200 \"{REAL}\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p4};\n\
             \x20       set_real_ip_from 127.0.0.1;\n\
             \x20       real_ip_header X-Client;\n\
             \x20       location / {{ return 200 \"{REAL}\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p5};\n\
             \x20       set_real_ip_from 127.0.0.1;\n\
             \x20       location / {{\n\
             \x20           set_real_ip_from 127.0.0.0/8;\n\
             \x20           real_ip_header X-Forwarded-For;\n\
             \x20           real_ip_recursive on;\n\
             \x20           proxy_pass http://127.0.0.1:{backend};\n\
             \x20           proxy_set_header X-Client \"$remote_addr|$remote_port|$realip_remote_addr|$proxy_add_x_forwarded_for\";\n\
             \x20           access_log logs/real.log real;\n\
             \x20       }}\n\
             \x20       location /ret {{\n\
             \x20           set_real_ip_from 127.0.0.0/8;\n\
             \x20           real_ip_header X-Forwarded-For;\n\
             \x20           access_log logs/real.log real;\n\
             \x20           return 200 \"{REAL}\";\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

#[test]
fn realip_matches_nginx() {
    let backend = free_ports(1)[0];
    let _backend = Server::waypost(
        &wrap_http(
            &format!(
                "    server {{ listen 127.0.0.1:{backend}; location / {{ return 200 \"$http_x_client\\n\"; }} }}\n"
            ),
            false,
        ),
        &[backend],
    );
    let ports = free_ports(10);
    let (np, wp) = ports.split_at(5);
    let nginx = Server::nginx(&realip_conf(np, backend, true), np);
    let waypost = Server::waypost(&realip_conf(wp, backend, false), wp);

    let local = [127, 0, 0, 1];
    let other = [127, 0, 0, 2];
    let outside = [127, 0, 1, 2];
    let xri = |v: &str| get10("/", &format!("X-Real-IP: {v}\r\n"));
    let xff = |path: &str, v: &[&str]| {
        let lines: String = v
            .iter()
            .map(|v| format!("X-Forwarded-For: {v}\r\n"))
            .collect();
        get10(path, &lines)
    };
    // (server index, name, source, request)
    let mut cases: Vec<(usize, &str, [u8; 4], Vec<u8>)> = vec![
        (0, "X-Real-IP", local, xri("9.9.9.9")),
        (0, "X-Real-IP with port", local, xri("9.9.9.9:1234")),
        (0, "X-Real-IP IPv6", local, xri("::1")),
        (
            0,
            "X-Real-IP mapped with port",
            local,
            xri("[::ffff:1.2.3.4]:80"),
        ),
        (0, "X-Real-IP compatible", local, xri("::1.2.3.4")),
        (0, "X-Real-IP leading zeros", local, xri("001.2.3.4")),
        (0, "X-Real-IP empty part", local, xri("1..2.3")),
        (0, "X-Real-IP invalid", local, xri("1.2.3")),
        (0, "X-Real-IP broadcast", local, xri("255.255.255.255")),
        (0, "X-Real-IP port 0", local, xri("1.2.3.4:0")),
        (0, "X-Real-IP list", local, xri("1.1.1.1, 2.2.2.2")),
        (0, "X-Real-IP untrusted", other, xri("9.9.9.9")),
        (0, "no X-Real-IP", local, get10("/", "")),
        (
            0,
            "two X-Real-IP",
            local,
            get10("/", "X-Real-IP: 1.2.3.4\r\nX-Real-IP: 5.6.7.8\r\n"),
        ),
    ];
    let lists: &[&[&str]] = &[
        &["1.1.1.1, 2.2.2.2"],
        &["1.1.1.1, 127.0.0.5"],
        &["1.1.1.1, bogus, 127.0.0.5"],
        &["127.0.0.9, 127.0.0.5"],
        &["1.1.1.1,,  "],
        &["1.1.1.1", "2.2.2.2, 3.3.3.3"],
        &["1.1.1.1", "2.2.2.2, 127.0.0.3"],
        &["1.1.1.1", "127.0.0.2, 127.0.0.3"],
        &["1.1.1.1", "bogus, 127.0.0.3"],
        &["1.1.1.1", "bogus"],
        &["bogus"],
        &["1.1.1.1:80,127.0.0.4:90"],
        &["[::1]:80 127.0.0.4"],
        &["10.1.1.1, 127.0.0.4"],
        &[","],
    ];
    for list in lists {
        for (server, path) in [(1, "/"), (1, "/rec"), (2, "/")] {
            cases.push((server, "X-Forwarded-For", local, xff(path, list)));
            cases.push((server, "X-Forwarded-For from .2", other, xff(path, list)));
            cases.push((
                server,
                "X-Forwarded-For untrusted",
                outside,
                xff(path, list),
            ));
        }
    }
    cases.push((
        3,
        "other header",
        local,
        get10("/", "X-Client: 7.7.7.7\r\n"),
    ));
    cases.push((
        3,
        "other header untrusted",
        other,
        get10("/", "X-Client: 7.7.7.7\r\n"),
    ));
    cases.push((3, "X-Real-IP not the header", local, xri("7.7.7.7")));
    // Proxied: the server's settings first, then the location's.
    for (name, src, req) in [
        ("server level", local, xri("8.8.8.8")),
        ("location level", local, xff("/", &["1.1.1.1, 127.0.0.7"])),
        (
            "location level from .2",
            other,
            xff("/", &["1.1.1.1, 127.0.0.7"]),
        ),
        (
            "server level wins",
            local,
            get10("/", "X-Real-IP: 8.8.8.8\r\nX-Forwarded-For: 1.1.1.1\r\n"),
        ),
        ("neither", local, get10("/", "")),
        (
            "return sees the server level only",
            other,
            xff("/ret", &["1.1.1.1"]),
        ),
        (
            "return with X-Real-IP",
            local,
            get10("/ret", "X-Real-IP: 8.8.8.8\r\nX-Forwarded-For: 1.1.1.1\r\n"),
        ),
    ] {
        cases.push((4, name, src, req));
    }

    let mut diffs = Vec::new();
    for (i, (server, name, src, raw)) in cases.iter().enumerate() {
        let theirs = send(np[*server], *src, raw);
        let ours = send(wp[*server], *src, raw);
        if theirs != ours {
            diffs.push(format!(
                "{i} {name} on server {server} from {src:?} ({:?}):\n  nginx:   {theirs:?}\n  waypost: {ours:?}",
                String::from_utf8_lossy(raw)
            ));
        }
    }
    let total = cases.len();
    assert_same(diffs, total);
    // The access log has the real address too.
    let logged = cases.iter().filter(|c| c.0 == 4).count();
    let theirs = nginx.wait_lines("logs/real.log", logged);
    let ours = waypost.wait_lines("logs/real.log", logged);
    assert_eq!(
        ours, theirs,
        "access log lines (left: waypost, right: nginx)"
    );
    assert!(ours[0].starts_with("8.8.8.8 127.0.0.1 "), "{ours:?}");
}

#[test]
fn ip_hash_uses_the_real_address() {
    let backends = free_ports(3);
    let _backends = Server::waypost(
        &wrap_http(
            &backends
                .iter()
                .map(|p| {
                    format!("    server {{ listen 127.0.0.1:{p}; location / {{ return 200 \"backend {p}\\n\"; }} }}\n")
                })
                .collect::<String>(),
            false,
        ),
        &backends,
    );
    let conf = |port: u16, nginx: bool| {
        let servers: String = backends
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p};\n"))
            .collect();
        wrap_http(
            &format!(
                "    upstream u {{\n        ip_hash;\n{servers}    }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       set_real_ip_from 127.0.0.1;\n\
                 \x20       location / {{ proxy_pass http://u; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        )
    };
    let [np, wp] = free_ports(2)[..] else {
        unreachable!()
    };
    let _nginx = Server::nginx(&conf(np, true), &[np]);
    let _waypost = Server::waypost(&conf(wp, false), &[wp]);

    // 120 real addresses behind the trusted proxy, then the same headers
    // from untrusted sources (which ip_hash must hash instead).
    let mut cases = Vec::new();
    for i in 0..120u32 {
        let real = format!("10.{}.{}.5", i % 13, (i * 37) % 251);
        cases.push(([127, 0, 0, 1], real.clone()));
        cases.push(([127, 0, (i % 5) as u8 + 1, 2], real));
    }
    let mut diffs = Vec::new();
    let mut behind_proxy = std::collections::HashSet::new();
    for (src, real) in &cases {
        let req = get10("/", &format!("X-Real-IP: {real}\r\n"));
        let theirs = send(np, *src, &req);
        let ours = send(wp, *src, &req);
        assert_eq!(ours.status, 200, "{ours:?}");
        if *src == [127, 0, 0, 1] {
            behind_proxy.insert(ours.body.clone());
        }
        if theirs != ours {
            diffs.push(format!(
                "{real} from {src:?}:\n  nginx:   {theirs:?}\n  waypost: {ours:?}"
            ));
        }
    }
    // One source, many peers: the header decided.
    assert_eq!(behind_proxy.len(), 3, "{behind_proxy:?}");
    assert_same(diffs, cases.len());
}

/// `-t` on `http` (lines from 4 on), for unknown-variable cases.
fn check(http: &str) -> (String, String, String) {
    let dir = TempDir::new("vars-conf");
    let conf = dir.write(
        "test.conf",
        &format!("error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\n{http}"),
    );
    let conf = conf.display().to_string();
    let nginx = run_nginx(&dir, &["-t", "-c", &conf]);
    let waypost = run_waypost(&dir, &["-t", "-c", &conf]);
    let emerg = |out: &std::process::Output, prog: &str| {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{prog}: [emerg] "))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| {
                format!(
                    "no emerg line in {:?}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (emerg(&nginx, "nginx"), emerg(&waypost, "waypost"), conf)
}

/// Unknown variables: nginx reports them once the http block is read,
/// with no place; waypost prints the same message with the place of the
/// directive that uses the variable (README, "differs on purpose"). A
/// malformed `$` is reported where nginx reports it, in both.
#[test]
fn unknown_variables_as_nginx() {
    let cases: &[(&str, &str, &str, Option<u32>)] = &[
        // (config from line 4, message, waypost's place line; None: same as nginx)
        (
            "return text",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / { return 200 \"a $foo b\"; }\n  }\n}\n",
            "unknown \"foo\" variable",
            Some(7),
        ),
        (
            "braced, in a redirect",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    return 302 \"http://x/${nosuch}x\";\n  }\n}\n",
            "unknown \"nosuch\" variable",
            Some(7),
        ),
        (
            "proxy_set_header",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / {\n      proxy_pass http://127.0.0.1:1;\n      proxy_set_header X-A $Nope;\n    }\n  }\n}\n",
            "unknown \"nope\" variable",
            Some(9),
        ),
        (
            "proxy_ssl_name",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / {\n      proxy_pass https://127.0.0.1:1;\n      proxy_ssl_name $nosuch;\n    }\n  }\n}\n",
            "unknown \"nosuch\" variable",
            Some(9),
        ),
        (
            "log_format",
            "http {\n  log_format f '$remote_addr $bogus';\n  server { listen 127.0.0.1:{port}; }\n}\n",
            "unknown \"bogus\" variable",
            Some(5),
        ),
        (
            "a map's value",
            "http {\n  map $uri $m { default $nosuch; }\n  server { listen 127.0.0.1:{port}; location / { return 200 $m; } }\n}\n",
            "unknown \"nosuch\" variable",
            Some(5),
        ),
        (
            "limit_conn_zone's key",
            "http {\n  limit_conn_zone $nosuch zone=a:32k;\n  server { listen 127.0.0.1:{port}; }\n}\n",
            "unknown \"nosuch\" variable",
            Some(5),
        ),
        (
            "the first in file order",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location /b { return 200 $second; }\n  }\n  log_format f '$third';\n}\n",
            "unknown \"second\" variable",
            Some(7),
        ),
        (
            "header values after the others",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / { proxy_pass http://127.0.0.1:1; proxy_set_header A $first; }\n    location /b { return 200 $later; }\n  }\n}\n",
            "unknown \"later\" variable",
            Some(8),
        ),
        (
            "after a later error in http",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / { return 200 $foo; }\n  }\n  bogus;\n}\n",
            "unknown directive \"bogus\"",
            None,
        ),
        (
            "capture is no name",
            "http {\n  server { listen 127.0.0.1:{port}; location / { return 200 \"${1}\"; } }\n}\n",
            "unknown \"1\" variable",
            Some(5),
        ),
        (
            "invalid name",
            "http {\n  server { listen 127.0.0.1:{port}; location / { return 200 \"a$\"; } }\n}\n",
            "invalid variable name",
            None,
        ),
        (
            "missing bracket",
            "http {\n  server { listen 127.0.0.1:{port}; location / { return 200 \"${arg_a\"; } }\n}\n",
            "the closing bracket in \"arg_a\" variable is missing",
            None,
        ),
        (
            "malformed header value at the end of http",
            "http {\n  server {\n    listen 127.0.0.1:{port};\n    location / { proxy_pass http://127.0.0.1:1; proxy_set_header A \"x$\"; }\n  }\n}\n",
            "invalid variable name",
            None,
        ),
        (
            "malformed log_format",
            "http {\n  log_format f 'a$-b';\n}\n",
            "invalid parameter \"$-b\"",
            None,
        ),
        (
            "realip: bad address",
            "http {\n  set_real_ip_from 10.0.0.1/33;\n}\n",
            "host not found in set_real_ip_from \"10.0.0.1/33\"",
            None,
        ),
        (
            "realip: header twice",
            "http {\n  server { real_ip_header X-Real-IP; real_ip_header X-Forwarded-For; }\n}\n",
            "\"real_ip_header\" directive is duplicate",
            None,
        ),
        (
            "realip: recursive value",
            "http {\n  real_ip_recursive yes;\n}\n",
            "invalid value \"yes\" in \"real_ip_recursive\" directive, it must be \"on\" or \"off\"",
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, http, message, line) in cases {
        let port = free_ports(1)[0].to_string();
        let (nginx, waypost, conf) = check(&http.replace("{port}", &port));
        // nginx's place, when it names one, is the expected place.
        let want_nginx = match line {
            Some(_) => (*message).to_owned(),
            None => nginx
                .strip_prefix(message)
                .filter(|rest| rest.starts_with(" in "))
                .map_or_else(
                    || format!("{message} in ..."),
                    |rest| format!("{message}{rest}"),
                ),
        };
        let want_waypost = match line {
            Some(l) => format!("{message} in {conf}:{l}"),
            None => want_nginx.clone(),
        };
        if nginx != want_nginx || waypost != want_waypost {
            failures.push(format!(
                "{name}:\n  nginx:   {nginx}\n  waypost: {waypost}\n  want:    {want_waypost}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Variables nginx has and waypost does not are refused by name, not
/// answered empty.
#[test]
fn unsupported_variables_are_refused() {
    let dir = TempDir::new("vars-unsupported");
    let port = free_ports(1)[0];
    let conf = dir.write(
        "test.conf",
        &format!(
            "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n  server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"$upstream_response_time\"; }} }}\n}}\n"
        ),
    );
    let conf = conf.display().to_string();
    let out = run_waypost(&dir, &["-t", "-c", &conf]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "[emerg] the \"$upstream_response_time\" variable is not supported in {conf}:5"
        )),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// `proxy_pass` with a URI: the location's prefix of the normalized URI
/// is replaced and the rest escaped again when the request had escapes;
/// without a URI the request goes up as sent.
#[test]
fn proxied_uri_matches_nginx() {
    let backend = free_ports(1)[0];
    let _backend = Server::waypost(
        &wrap_http(
            &format!(
                "    server {{ listen 127.0.0.1:{backend}; location / {{ return 200 \"$request_uri\\n\"; }} }}\n"
            ),
            false,
        ),
        &[backend],
    );
    let conf = |port: u16, nginx: bool| {
        wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
                 \x20       location /api/ {{ proxy_pass http://127.0.0.1:{backend}/v1/; }}\n\
                 \x20       location = /one {{ proxy_pass http://127.0.0.1:{backend}/single; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        )
    };
    let [np, wp] = free_ports(2)[..] else {
        unreachable!()
    };
    let _nginx = Server::nginx(&conf(np, true), &[np]);
    let _waypost = Server::waypost(&conf(wp, false), &[wp]);
    let reqs: Vec<_> = [
        "/api/a%20b//c?x=1",
        "/api/../api/x",
        "/x/../api/y",
        "/api/%41%2F%3F%23",
        "/api/%C3%A9%FF%22%3C%7B",
        "/api/a%3Fb?c=%3F",
        "/api//double",
        "/x//y/../z%41?q",
        "/one",
        "/one?a=1",
        // An empty query: no bare `?` after a replaced prefix (kept as
        // sent without one).
        "/api/e?",
        "/e?",
    ]
    .iter()
    .map(|p| (*p, [127, 0, 0, 1], get10(p, "")))
    .collect();
    let total = reqs.len();
    assert_same(differences(np, wp, &reqs), total);
}
