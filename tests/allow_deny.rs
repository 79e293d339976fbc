//! `allow` and `deny` side by side with nginx: the same clients (several
//! loopback addresses, and addresses realip takes from a trusted proxy's
//! header) get the same statuses and pages, the same access log lines and
//! the same `access forbidden by rule` lines, through proxied locations,
//! `return`, locations without a handler, requests no location takes,
//! nested locations and inherited rules. Then what nginx's phase order
//! means with `limit_req`, and a guarded `status` page.

use std::io::Write;
use std::net::TcpStream;

use waypost_tests::{
    assert_same_answers, connect_from, free_ports, status_and_page, wrap_http, Server,
};

/// The config both run: server `ex` on `port` with rules at each level,
/// server `two` on `port2` inheriting the http level's, and the backend.
fn conf(port: u16, port2: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format acc '$remote_addr \"$request\" $status';\n\
             \x20   deny 127.0.0.3;\n\
             \x20   upstream b {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name ex;\n\
             \x20       access_log logs/acc.log acc;\n\
             \x20       set_real_ip_from 127.0.0.4;\n\
             \x20       deny 127.0.0.2;\n\
             \x20       location /ret {{ return 200 \"ret\\n\"; }}\n\
             \x20       location /p {{ proxy_pass http://b; }}\n\
             \x20       location /q {{\n\
             \x20           allow 127.0.0.3;\n\
             \x20           deny all;\n\
             \x20           proxy_pass http://b;\n\
             \x20           location /q/in {{ proxy_pass http://b; }}\n\
             \x20           location /q/own {{ allow all; proxy_pass http://b; }}\n\
             \x20       }}\n\
             \x20       location /n {{ }}\n\
             \x20       location /six {{ deny ::/0; proxy_pass http://b; }}\n\
             \x20       location /mapped {{ deny ::ffff:127.0.0.1; proxy_pass http://b; }}\n\
             \x20       location /cidr {{ allow 127.0.0.0/31; deny 127.0.0.0/29; proxy_pass http://b; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port2};\n\
             \x20       server_name two;\n\
             \x20       access_log logs/acc.log acc;\n\
             \x20       location / {{ proxy_pass http://b; }}\n\
             \x20       location /ret {{ return 204; }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; allow all; location / {{ return 200 \"ok\\n\"; }} }}\n"
        ),
        nginx,
    )
}

/// `GET path` from `src` with `headers`, on its own connection: the status
/// line and the body, the server's name in pages made neutral.
fn ask(port: u16, src: [u8; 4], path: &str, headers: &str) -> String {
    let mut stream: TcpStream = connect_from(src, port);
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    status_and_page(stream)
}

/// Every request of the comparison: (port index, source, path, headers).
fn requests() -> Vec<(usize, [u8; 4], &'static str, &'static str)> {
    let paths = [
        "/ret", "/p", "/q", "/q/in", "/q/own", "/n", "/zz", "/six", "/mapped", "/cidr",
    ];
    let mut all = Vec::new();
    for src in 1..=5u8 {
        for path in paths {
            all.push((0, [127, 0, 0, src], path, ""));
        }
    }
    // realip: from the trusted 127.0.0.4, the header's address decides.
    for real in [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:127.0.0.2",
    ] {
        for path in paths {
            all.push((0, [127, 0, 0, 4], path, real));
        }
    }
    for src in [1u8, 3] {
        for path in ["/", "/ret"] {
            all.push((1, [127, 0, 0, src], path, ""));
        }
    }
    all
}

/// Answers, access log lines and `access forbidden` lines of one server.
fn run(nginx: bool) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ports = free_ports(3);
    let server = Server::either(nginx, &conf(ports[0], ports[1], ports[2], nginx), &ports);
    let mut answers = Vec::new();
    for (i, src, path, real) in requests() {
        let header = if real.is_empty() {
            String::new()
        } else {
            format!("X-Real-IP: {real}\r\n")
        };
        let seen = ask(ports[i], src, path, &header);
        answers.push(format!("{src:?} {real} :{i}{path} -> {seen}"));
    }
    let logged = requests().len();
    let access = server.wait_lines("logs/acc.log", logged);
    (answers, access, server.log_messages("forbidden"))
}

#[test]
fn rules_match_nginx() {
    let (ours, our_access, our_errors) = run(false);
    let (theirs, their_access, their_errors) = run(true);
    assert_same_answers(&ours, &theirs);
    assert_eq!(our_access, their_access, "access log (left: waypost)");
    assert_eq!(our_errors, their_errors, "error log (left: waypost)");
    // The comparison means something only if both outcomes occur.
    assert!(ours.iter().any(|a| a.contains("403 Forbidden")));
    assert!(ours.iter().any(|a| a.contains("200 OK | ok")));
    assert!(our_errors.len() > 10, "{our_errors:?}");
}

/// nginx checks `limit_req` (pre-access) before `allow`/`deny` (access): a
/// denied request still counts against the limit, and a limited one gets
/// the limit's answer, not 403.
#[test]
fn limit_req_counts_before_the_rules() {
    let statuses = |nginx: bool| {
        let ports = free_ports(2);
        let http = format!(
            "    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;\n\
             \x20   limit_req_status 503;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{};\n\
             \x20       location / {{ limit_req zone=one; deny 127.0.0.2; proxy_pass http://127.0.0.1:{}; }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{}; location / {{ return 200 \"ok\\n\"; }} }}\n",
            ports[0], ports[1], ports[1]
        );
        let _server = Server::either(nginx, &wrap_http(&http, nginx), &ports);
        [
            [127, 0, 0, 2],
            [127, 0, 0, 2],
            [127, 0, 0, 1],
            [127, 0, 0, 1],
        ]
        .iter()
        .map(|&src| ask(ports[0], src, "/", ""))
        .map(|a| a.split(" | ").next().unwrap_or("").to_owned())
        .collect::<Vec<_>>()
    };
    let ours = statuses(false);
    assert_eq!(
        ours,
        [
            "HTTP/1.1 403 Forbidden",
            "HTTP/1.1 503 Service Temporarily Unavailable",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 503 Service Temporarily Unavailable",
        ]
    );
    assert_eq!(ours, statuses(true), "left: waypost, right: nginx");
}

/// waypost's own `status` page behind rules, as nginx's `stub_status`
/// usually is.
#[test]
fn status_page_behind_rules() {
    let ports = free_ports(1);
    let http = format!(
        "    server {{\n\
         \x20       listen 127.0.0.1:{};\n\
         \x20       location /status {{ status; allow 127.0.0.1; deny all; }}\n\
         \x20   }}\n",
        ports[0]
    );
    let server = Server::waypost(&wrap_http(&http, false), &ports);
    assert!(ask(ports[0], [127, 0, 0, 1], "/status", "").starts_with("HTTP/1.1 200 OK"));
    let denied = ask(ports[0], [127, 0, 0, 2], "/status", "");
    assert!(denied.starts_with("HTTP/1.1 403 Forbidden"), "{denied}");
    assert_eq!(
        server.log_messages("forbidden"),
        [
            "access forbidden by rule, client: 127.0.0.2, server: , request: \"GET /status HTTP/1.1\", host: \"h\""
        ]
    );
}

/// `limit_except` as nginx's: a request whose method the block does not
/// list (GET takes HEAD along) is checked against the block's `allow` and
/// `deny` lines instead of the location's; a listed one against the
/// location's. Proxied and static answers alike.
#[test]
fn limit_except_matches_nginx() {
    let run = |nginx: bool| -> Vec<String> {
        let ports = free_ports(2);
        let (port, back) = (ports[0], ports[1]);
        let conf = wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /ro/ {{ limit_except GET {{ deny all; }} proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /loc/ {{ deny all; limit_except GET {{ allow all; }} proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /two/ {{ limit_except GET POST {{ allow 127.0.0.3; deny all; }} proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /st/ {{ limit_except GET {{ deny all; }} }}\n\
                 \x20   }}\n\
                 \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"back\\n\"; }} }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &ports);
        let mut answers = Vec::new();
        for (src, method, path) in [
            (1, "GET", "/ro/x"),
            (1, "HEAD", "/ro/x"),
            (1, "POST", "/ro/x"),
            (1, "GET", "/loc/x"),
            (1, "DELETE", "/loc/x"),
            (1, "PUT", "/two/x"),
            (3, "PUT", "/two/x"),
            (1, "POST", "/two/x"),
            (1, "GET", "/st/none"),
            (1, "POST", "/st/none"),
        ] {
            let mut stream: TcpStream = connect_from([127, 0, 0, src], port);
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).expect("send");
            let seen = status_and_page(stream);
            answers.push(format!(
                "{src} {method} {path} -> {}",
                seen.lines().next().unwrap_or("")
            ));
        }
        answers
    };
    let theirs = run(true);
    assert!(theirs.iter().any(|a| a.contains("403")), "{theirs:#?}");
    assert_eq!(run(false), theirs);
}
