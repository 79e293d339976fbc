//! `mirror` and `mirror_request_body` side by side with nginx: each
//! mirror URI gets a subrequest with the request's method, arguments,
//! headers and (by default) body, to an `internal` location that proxies
//! or answers itself; its answer is dropped. Not for a request `deny`
//! refuses or a `return` answers; for static files too; at the server
//! level and `off`; several per location; a dead mirror backend's error
//! line. The answers, what the backend saw, and the access and error log
//! lines are nginx's; a keep-alive connection's next request waits for
//! the mirror, as nginx's does.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use waypost_tests::{
    emerg, exchange, free_ports, in_location, info_log, neutral_server, read_head, serve_numbered,
    wrap_http, KeepAlive, Server, TempDir,
};

/// What the backend saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn push(seen: &Seen, line: String) {
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

fn lines(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A backend that keeps each request's line, the headers that tell and
/// its body, and answers with the path; `/slow` answers after 300 ms
/// (and notes when it does).
fn backend(seen: Seen) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, move |mut stream, _| {
        while let Some(head) = read_head(&mut stream) {
            let text = String::from_utf8_lossy(&head).into_owned();
            let (head_text, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let lines: Vec<&str> = head_text.split("\r\n").collect();
            let header = |name: &str| {
                lines[1..].iter().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = rest.as_bytes().to_vec();
            let mut more = vec![0u8; length.saturating_sub(body.len())];
            if stream.read_exact(&mut more).is_err() {
                return;
            }
            body.extend_from_slice(&more);
            let shown: Vec<String> = ["x-orig", "x-method", "content-length", "x-a"]
                .iter()
                .filter_map(|h| header(h).map(|v| format!("{h}: {v}")))
                .collect();
            push(
                &seen,
                format!(
                    "{} | {} | body {:?}",
                    lines[0],
                    shown.join(" | "),
                    String::from_utf8_lossy(&body)
                ),
            );
            let path = lines[0].split(' ').nth(1).unwrap_or("").to_owned();
            if path.starts_with("/slow") {
                std::thread::sleep(std::time::Duration::from_millis(300));
                // Noted before the answer goes: the proxy cannot have it
                // earlier.
                push(&seen, format!("answering {path}"));
            }
            let echo = format!("app {path}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{echo}",
                echo.len()
            );
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    });
    port
}

fn conf(port: u16, second: u16, back: u16, dead: u16, files: &str, nginx: bool) -> String {
    info_log(&wrap_http(
        &format!(
            "    log_format m '$status \"$request\" $request_length [$upstream_status]';\n\
             \x20   upstream b {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name m;\n\
             \x20       access_log logs/m.log m;\n\
             \x20       location / {{ mirror /mirror; proxy_set_header X-A main; proxy_pass http://b; }}\n\
             \x20       location /two/ {{ mirror /mirror; mirror /quiet; mirror /mirror; proxy_pass http://b; }}\n\
             \x20       location /nobody/ {{ mirror /nb; mirror_request_body off; proxy_pass http://b; }}\n\
             \x20       location /denied/ {{ deny all; mirror /mirror; proxy_pass http://b; }}\n\
             \x20       location /files/ {{ mirror /mirror; alias {files}/; }}\n\
             \x20       location /ret {{ mirror /mirror; return 200 \"ret\\n\"; }}\n\
             \x20       location /idx/ {{ mirror /mirror; alias {files}/; }}\n\
             \x20       location /auth/ {{ auth_request /quiet; mirror /mirror; proxy_pass http://b; }}\n\
             \x20       location /dead/ {{ mirror /dead; proxy_pass http://b; }}\n\
             \x20       location /wait/ {{ mirror /slow; proxy_pass http://b; }}\n\
             \x20       location = /mirror {{\n\
             \x20           internal;\n\
             \x20           proxy_pass http://b;\n\
             \x20           proxy_set_header X-Orig $request_uri;\n\
             \x20           proxy_set_header X-Method $request_method;\n\
             \x20       }}\n\
             \x20       location = /nb {{\n\
             \x20           internal;\n\
             \x20           proxy_pass http://b;\n\
             \x20           proxy_pass_request_body off;\n\
             \x20           proxy_set_header Content-Length \"\";\n\
             \x20       }}\n\
             \x20       location = /quiet {{ internal; return 204; }}\n\
             \x20       location = /dead {{ internal; proxy_pass http://127.0.0.1:{dead}; }}\n\
             \x20       location = /slow {{ internal; proxy_pass http://b; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{second};\n\
             \x20       server_name two;\n\
             \x20       access_log logs/two.log m;\n\
             \x20       mirror /ms;\n\
             \x20       location / {{ proxy_pass http://b; }}\n\
             \x20       location /off/ {{ mirror off; proxy_pass http://b; }}\n\
             \x20       location /t/ {{ try_files $uri @app; }}\n\
             \x20       location @app {{ proxy_pass http://b; }}\n\
             \x20       location /tf/ {{ alias {files}/; try_files $uri =404; }}\n\
             \x20       location = /ms {{ internal; proxy_pass http://b; }}\n\
             \x20   }}\n"
        ),
        nginx,
    ))
}

/// Requests to the first server.
const ASKS: &[&str] = &[
    "GET /a?x=1 HTTP/1.0\r\n\r\n",
    "POST /b HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody",
    "POST /b HTTP/1.1\r\nHost: m\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "POST /nobody/ HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody",
    "GET /two/?y=2 HTTP/1.0\r\n\r\n",
    "GET /denied/ HTTP/1.0\r\n\r\n",
    "GET /files/f.txt HTTP/1.0\r\n\r\n",
    "HEAD /h HTTP/1.0\r\n\r\n",
    "GET /ret HTTP/1.0\r\n\r\n",
    "GET /dead/ HTTP/1.0\r\n\r\n",
    "GET /idx/ HTTP/1.0\r\n\r\n",
    "GET /auth/ HTTP/1.0\r\n\r\n",
];

/// Requests to the second server (its `mirror` at the server level).
const SECOND: &[&str] = &[
    "GET /x HTTP/1.0\r\n\r\n",
    "GET /off/y HTTP/1.0\r\n\r\n",
    "GET /t/none HTTP/1.0\r\n\r\n",
    "GET /tf/f.txt HTTP/1.0\r\n\r\n",
    "GET /tf/none HTTP/1.0\r\n\r\n",
];

/// An answer's status line and body, the server's name neutral.
fn shown(answer: &str) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.split("\r\n").next().unwrap_or("");
    format!("{status} | {}", neutral_server(body))
}

/// One program's run: the answers, what the backend saw for each request
/// (in order, a request's own and its mirrors' sorted: they race), the
/// log lines.
fn run(nginx: bool, files: &str) -> [Vec<String>; 4] {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let back = backend(seen.clone());
    let ports = free_ports(3);
    let (port, second, dead) = (ports[0], ports[1], ports[2]);
    let server = Server::either(
        nginx,
        &conf(port, second, back, dead, files, nginx),
        &[port, second],
    );
    let mut answers = Vec::new();
    let mut saw = Vec::new();
    for (to, request) in ASKS
        .iter()
        .map(|r| (port, r))
        .chain(SECOND.iter().map(|r| (second, r)))
    {
        let before = lines(&seen).len();
        // (nginx closes an HTTP/1.0 connection once the request's mirrors
        // are done.)
        answers.push(shown(&exchange(to, request)));
        let mut these = lines(&seen)[before..].to_vec();
        these.sort();
        saw.push(format!(
            "{}: {}",
            request.lines().next().unwrap_or(""),
            these.join(" // ")
        ));
    }
    let mut logged = server.wait_lines("logs/m.log", ASKS.len());
    logged.extend(server.wait_lines("logs/two.log", SECOND.len()));
    let errors: Vec<String> = server
        .log_messages("[error]")
        .iter()
        .map(|m| m.replace(&dead.to_string(), "DEAD"))
        .collect();
    [answers, saw, logged, errors]
}

#[test]
fn mirror_matches_nginx() {
    let files = TempDir::new("mirror-files");
    std::fs::write(files.path.join("f.txt"), "file\n").expect("write");
    std::fs::write(files.path.join("index.html"), "index\n").expect("write");
    let files = files.path.display().to_string();
    let ours = run(false, &files);
    let theirs = run(true, &files);
    for (i, what) in ["answers", "backend", "access log", "error log"]
        .iter()
        .enumerate()
    {
        assert_eq!(ours[i], theirs[i], "{what} (left: waypost, right: nginx)");
    }
    // What nginx did, so that a change in either program shows.
    let [answers, saw, logged, errors] = &theirs;
    assert_eq!(answers[0], "HTTP/1.1 200 OK | app /a?x=1");
    assert_eq!(
        saw[0],
        "GET /a?x=1 HTTP/1.0: GET /a?x=1 HTTP/1.0 | x-a: main | body \"\" // \
         GET /mirror?x=1 HTTP/1.0 | x-orig: /a?x=1 | x-method: GET | body \"\""
    );
    assert_eq!(
        saw[1],
        "POST /b HTTP/1.0: POST /b HTTP/1.0 | content-length: 4 | x-a: main | body \"body\" // \
         POST /mirror HTTP/1.0 | x-orig: /b | x-method: POST | content-length: 4 | body \"body\""
    );
    assert!(saw[2].contains("POST /mirror HTTP/1.0 | x-orig: /b | x-method: POST | content-length: 5 | body \"abcde\""), "{}", saw[2]);
    assert!(
        saw[3].contains("POST /nb HTTP/1.0 |  | body \"\""),
        "{}",
        saw[3]
    );
    assert_eq!(saw[4].matches("GET /mirror?y=2").count(), 2, "{}", saw[4]);
    assert_eq!(saw[5], "GET /denied/ HTTP/1.0: ");
    assert!(
        saw[6].contains("GET /mirror HTTP/1.0 | x-orig: /files/f.txt"),
        "{}",
        saw[6]
    );
    assert!(saw[7].contains("HEAD /mirror HTTP/1.0"), "{}", saw[7]);
    assert_eq!(saw[8], "GET /ret HTTP/1.0: ");
    // The index's internal redirect mirrors again, as nginx's.
    assert_eq!(
        saw[10]
            .matches("GET /mirror HTTP/1.0 | x-orig: /idx/")
            .count(),
        2,
        "{}",
        saw[10]
    );
    assert!(
        saw[11].contains("GET /mirror HTTP/1.0 | x-orig: /auth/"),
        "{}",
        saw[11]
    );
    assert!(saw[12].contains("GET /ms HTTP/1.0"), "{}", saw[12]);
    assert!(!saw[13].contains("/ms"), "{}", saw[13]);
    // `try_files` before the mirror: one, where the request stays.
    assert_eq!(saw[14].matches("GET /ms").count(), 1, "{}", saw[14]);
    assert_eq!(saw[15].matches("GET /ms").count(), 1, "{}", saw[15]);
    assert_eq!(saw[16], "GET /tf/none HTTP/1.0: ");
    assert_eq!(logged[0], "200 \"GET /a?x=1 HTTP/1.0\" 23 [200]");
    assert_eq!(
        errors,
        &[
            "access forbidden by rule, client: 127.0.0.1, server: m, request: \"GET /denied/ HTTP/1.0\"".to_owned(),
            "connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: m, request: \"GET /dead/ HTTP/1.0\", subrequest: \"/dead\", upstream: \"http://127.0.0.1:DEAD/dead\"".to_owned(),
        ]
    );
}

/// A keep-alive connection reads its next request once the mirror of the
/// one before is done, as nginx's does: the backend answers the mirror
/// before it sees the next request.
#[test]
fn the_next_request_waits_for_the_mirror() {
    let files = TempDir::new("mirror-wait");
    let files = files.path.display().to_string();
    for nginx in [false, true] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let back = backend(seen.clone());
        let ports = free_ports(3);
        let server = Server::either(
            nginx,
            &conf(ports[0], ports[1], back, ports[2], &files, nginx),
            &[ports[0], ports[1]],
        );
        let mut client = KeepAlive::connect(ports[0]);
        assert_eq!(client.get("/wait/1").status, 200);
        assert_eq!(client.get("/wait/2").status, 200);
        drop(server);
        let seen = lines(&seen);
        let at = |needle: &str| seen.iter().position(|l| l.starts_with(needle));
        let (answered, next) = (at("answering /slow"), at("GET /wait/2"));
        assert!(
            answered.is_some() && next.is_some() && answered < next,
            "nginx {nginx}: {seen:?}"
        );
    }
}

#[test]
fn mirror_config_errors_as_nginx() {
    use waypost_tests::{assert_t_cases, Waypost};
    let ok = "ok (exit Some(0))".to_owned();
    let cases = vec![
        (
            in_location("mirror /a; mirror /b; mirror_request_body off;"),
            ok.clone(),
            Waypost::Same,
        ),
        (in_location("mirror off;"), ok.clone(), Waypost::Same),
        (
            in_location("mirror /a; mirror off;"),
            emerg("\"mirror\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_location("mirror off; mirror /a;"),
            emerg("\"mirror\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_location("mirror /a /b;"),
            emerg("invalid number of arguments in \"mirror\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("mirror_request_body maybe;"),
            emerg(
                "invalid value \"maybe\" in \"mirror_request_body\" directive, it must be \"on\" or \"off\"",
                7,
            ),
            Waypost::Same,
        ),
        (
            in_location("mirror_request_body on; mirror_request_body off;"),
            emerg("\"mirror_request_body\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($arg_a) { mirror /x; }"),
            emerg("\"mirror\" directive is not allowed here", 7),
            Waypost::Same,
        ),
    ];
    assert_t_cases("mirror-conf", &cases);
}
