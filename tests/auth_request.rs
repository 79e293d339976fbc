//! `auth_request` and `auth_request_set` side by side with nginx: the
//! subrequest (a GET with the client's headers and no body, to an
//! `internal` location that proxies or answers itself), what its status
//! decides (2xx in, 401 with the first WWW-Authenticate, 403, anything
//! else 500 with nginx's error line, a dead auth backend too), the
//! variables it sets for the upstream request and the log line (not found
//! where it did not run), `satisfy any` and `all` with `allow`/`deny`,
//! `error_page 401` to a named location, `return` answered before the
//! access phase, static files, a server-level `auth_request` and `off`.
//! The answers, what the backend saw (the subrequests included), and the
//! access and error log lines are nginx's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use waypost_tests::{
    connect_from, emerg, free_ports, in_location, info_log, neutral_server, read_head,
    serve_numbered, wrap_http, Server, TempDir,
};

/// A backend: `/auth...` answers with the status the request's `X-Code`
/// asks for (200 by default): with `X-User` and a cookie when it lets in,
/// with two WWW-Authenticate lines for a 401; any other path echoes what
/// the proxy sent. Every request's line and headers are kept, in order.
fn backend(seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, move |mut stream, _| {
        while let Some(head) = read_head(&mut stream) {
            let text = String::from_utf8_lossy(&head).into_owned();
            let (head_text, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let lines: Vec<&str> = head_text.split("\r\n").collect();
            let header = |name: &str| {
                lines[1..].iter().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            // (A body the proxy sends is read, whatever it is.)
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let already = head.len() - head_text.len() - 4;
            body.truncate(length.saturating_sub(already));
            if stream.read_exact(&mut body).is_err() {
                return;
            }
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(lines.join(" | "));
            let path = lines[0].split(' ').nth(1).unwrap_or("");
            let answer = if path.starts_with("/auth") {
                let code: u16 = header("x-code").and_then(|c| c.parse().ok()).unwrap_or(200);
                let extra = if code < 300 {
                    "X-User: alice\r\nSet-Cookie: s = one ; Path=/\r\n"
                } else {
                    "WWW-Authenticate: Basic realm=\"in\"\r\nWWW-Authenticate: Bearer\r\n"
                };
                format!("HTTP/1.1 {code} X\r\n{extra}Content-Length: 4\r\n\r\nauth")
            } else {
                let echo = format!(
                    "app {path} user={} st={}",
                    header("x-user").unwrap_or_default(),
                    header("x-st").unwrap_or_default()
                );
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{echo}",
                    echo.len()
                )
            };
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
            "    log_format ar '$status \"$request\" $user [$upstream_status] $limit_req_status';\n\
             \x20   upstream b {{ server 127.0.0.1:{back}; }}\n\
             \x20   limit_req_zone $binary_remote_addr zone=few:1m rate=1r/m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name ar;\n\
             \x20       access_log logs/ar.log ar;\n\
             \x20       location / {{\n\
             \x20           auth_request /auth;\n\
             \x20           auth_request_set $user $upstream_http_x_user;\n\
             \x20           auth_request_set $st \"$upstream_status:$upstream_cookie_s\";\n\
             \x20           proxy_set_header X-User $user;\n\
             \x20           proxy_set_header X-St $st;\n\
             \x20           proxy_pass http://b;\n\
             \x20       }}\n\
             \x20       location /ret {{ auth_request /auth; return 200 \"ret $user\\n\"; }}\n\
             \x20       location /files/ {{ auth_request /auth; alias {files}/; }}\n\
             \x20       location /any/ {{ satisfy any; allow 127.0.0.2; deny all; auth_request /auth; proxy_pass http://b; }}\n\
             \x20       location /all/ {{ deny 127.0.0.2; auth_request /auth; proxy_pass http://b; }}\n\
             \x20       location /page/ {{ auth_request /auth; auth_request_set $www $upstream_http_www_authenticate; error_page 401 = @login; proxy_pass http://b; }}\n\
             \x20       location @login {{ return 302 \"/login?from=$request_uri&www=$www\"; }}\n\
             \x20       location /hdr/ {{ auth_request /auth; auth_request_set $user $upstream_http_x_user; add_header X-Seen-User $user; proxy_pass http://b; }}\n\
             \x20       location /limited/ {{ limit_req zone=few nodelay; limit_req_status 503; auth_request /auth; proxy_pass http://b; }}\n\
             \x20       location /down/ {{ auth_request /dead; proxy_pass http://b; }}\n\
             \x20       location /s204/ {{ auth_request /quick; proxy_pass http://b; }}\n\
             \x20       location = /quick {{ internal; return 204; }}\n\
             \x20       location = /dead {{ internal; proxy_pass http://127.0.0.1:{dead}; }}\n\
             \x20       location = /auth {{\n\
             \x20           internal;\n\
             \x20           proxy_pass http://b;\n\
             \x20           proxy_pass_request_body off;\n\
             \x20           proxy_set_header Content-Length \"\";\n\
             \x20           proxy_set_header X-Original-URI $request_uri;\n\
             \x20           proxy_set_header X-Method $request_method;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{second};\n\
             \x20       server_name two;\n\
             \x20       access_log logs/two.log ar;\n\
             \x20       auth_request /auth2;\n\
             \x20       location / {{ proxy_pass http://b; }}\n\
             \x20       location /off/ {{ auth_request off; proxy_pass http://b; }}\n\
             \x20       location = /auth2 {{ internal; proxy_pass http://b; }}\n\
             \x20   }}\n"
        ),
        nginx,
    ))
}

/// Requests to the first server: from where, and what.
const ASKS: &[([u8; 4], &str)] = &[
    ([127, 0, 0, 1], "GET /a?x=1 HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    (
        [127, 0, 0, 1],
        "POST /b HTTP/1.0\r\nX-Code: 204\r\nContent-Length: 4\r\n\r\nbody",
    ),
    ([127, 0, 0, 1], "GET /c HTTP/1.0\r\nX-Code: 401\r\n\r\n"),
    ([127, 0, 0, 1], "GET /d HTTP/1.0\r\nX-Code: 403\r\n\r\n"),
    ([127, 0, 0, 1], "GET /e HTTP/1.0\r\nX-Code: 302\r\n\r\n"),
    ([127, 0, 0, 1], "HEAD /h HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    ([127, 0, 0, 1], "GET /ret HTTP/1.0\r\nX-Code: 401\r\n\r\n"),
    (
        [127, 0, 0, 1],
        "GET /files/f.txt HTTP/1.0\r\nX-Code: 200\r\n\r\n",
    ),
    (
        [127, 0, 0, 1],
        "GET /files/f.txt HTTP/1.0\r\nX-Code: 403\r\n\r\n",
    ),
    ([127, 0, 0, 2], "GET /any/ HTTP/1.0\r\nX-Code: 401\r\n\r\n"),
    ([127, 0, 0, 1], "GET /any/ HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    ([127, 0, 0, 1], "GET /any/ HTTP/1.0\r\nX-Code: 401\r\n\r\n"),
    ([127, 0, 0, 2], "GET /all/ HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    ([127, 0, 0, 1], "GET /all/ HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    ([127, 0, 0, 1], "GET /any/ HTTP/1.0\r\nX-Code: 403\r\n\r\n"),
    (
        [127, 0, 0, 1],
        "GET /page/x HTTP/1.0\r\nX-Code: 401\r\n\r\n",
    ),
    ([127, 0, 0, 1], "GET /hdr/ HTTP/1.0\r\nX-Code: 200\r\n\r\n"),
    // limit_req before the subrequest: the second is refused without one.
    (
        [127, 0, 0, 1],
        "GET /limited/ HTTP/1.0\r\nX-Code: 401\r\n\r\n",
    ),
    (
        [127, 0, 0, 1],
        "GET /limited/ HTTP/1.0\r\nX-Code: 401\r\n\r\n",
    ),
    ([127, 0, 0, 1], "GET /down/ HTTP/1.0\r\n\r\n"),
    ([127, 0, 0, 1], "GET /s204/ HTTP/1.0\r\n\r\n"),
    ([127, 0, 0, 1], "GET /auth HTTP/1.0\r\n\r\n"),
];

/// Requests to the second server (its `auth_request` at the server level).
const SECOND: &[&str] = &[
    "GET /x HTTP/1.0\r\nX-Code: 200\r\n\r\n",
    "GET /x HTTP/1.0\r\nX-Code: 403\r\n\r\n",
    "GET /off/y HTTP/1.0\r\nX-Code: 403\r\n\r\n",
];

/// An answer's status line, the headers that tell (WWW-Authenticate,
/// Location, Content-Type) and its body, the server's name neutral.
fn shown(answer: &str) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().unwrap_or("").to_owned()];
    out.extend(
        lines
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("www-authenticate")
                    || l.starts_with("location")
                    || l.starts_with("x-seen-user")
                    || l.starts_with("content-type")
            })
            .map(str::to_owned),
    );
    out.push(neutral_server(body));
    out.join(" | ")
}

fn send(from: [u8; 4], port: u16, request: &str) -> String {
    let mut stream: TcpStream = connect_from(from, port);
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// One program's run: the answers, what the backend saw, the log lines.
fn run(nginx: bool, files: &str) -> [Vec<String>; 5] {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let back = backend(seen.clone());
    let ports = free_ports(3);
    let (port, second, dead) = (ports[0], ports[1], ports[2]);
    let server = Server::either(
        nginx,
        &conf(port, second, back, dead, files, nginx),
        &[port, second],
    );
    let mut answers: Vec<String> = ASKS
        .iter()
        .map(|(from, request)| {
            let answer = shown(&send(*from, port, request)).replace(&port.to_string(), "PORT");
            // (limit_req's refusal page is waypost's own: README.)
            match request.starts_with("GET /limited/") {
                true => answer.split(" | ").next().unwrap_or("").to_owned(),
                false => answer,
            }
        })
        .collect();
    answers.extend(
        SECOND
            .iter()
            .map(|request| shown(&send([127, 0, 0, 1], second, request))),
    );
    let logged = server.wait_lines("logs/ar.log", ASKS.len());
    let two = server.wait_lines("logs/two.log", SECOND.len());
    let errors: Vec<String> = server
        .read("logs/error.log")
        .lines()
        .filter(|l| l.contains("[error]"))
        .map(|l| {
            // From the message on: the time and the process differ.
            l.split_once("*")
                .map_or(l, |(_, rest)| rest)
                .split_once(' ')
                .map_or("", |(_, m)| m)
                .replace(&dead.to_string(), "DEAD")
        })
        .collect();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let seen = seen
        .into_iter()
        .map(|s| s.replace(&back.to_string(), "BACK"))
        .collect();
    [answers, seen, logged, two, errors]
}

#[test]
fn auth_request_matches_nginx() {
    let files = TempDir::new("auth-files");
    std::fs::write(files.path.join("f.txt"), "file\n").expect("write");
    let files = files.path.display().to_string();
    let ours = run(false, &files);
    let theirs = run(true, &files);
    let what = [
        "answers",
        "backend",
        "access log",
        "second server's log",
        "error log",
    ];
    for (i, what) in what.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "{what} (left: waypost, right: nginx)");
    }
    // What nginx did, so that a change in either program shows.
    let [answers, seen, logged, _, errors] = &theirs;
    assert_eq!(
        answers[0],
        "HTTP/1.1 200 OK | app /a?x=1 user=alice st=200:one"
    );
    assert_eq!(
        answers[2],
        "HTTP/1.1 401 Unauthorized | Content-Type: text/html | WWW-Authenticate: Basic realm=\"in\" | <html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>SERVER</center>\r\n</body>\r\n</html>\r\n"
    );
    assert!(
        answers[15].starts_with("HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://127.0.0.1:PORT/login?from=/page/x&www=Basic realm=\"in\" | WWW-Authenticate: Basic realm=\"in\""),
        "{}",
        answers[15]
    );
    assert!(
        answers[16].contains("X-Seen-User: alice"),
        "{}",
        answers[16]
    );
    assert!(answers[17].starts_with("HTTP/1.1 401"), "{}", answers[17]);
    assert!(answers[18].starts_with("HTTP/1.1 503"), "{}", answers[18]);
    assert!(
        seen[0].starts_with("GET /auth HTTP/1.0 | X-Original-URI: /a?x=1 | X-Method: GET | Host: b | Connection: close | X-Code: 200"),
        "{}",
        seen[0]
    );
    assert!(seen[2].contains("X-Method: POST"), "{}", seen[2]);
    assert_eq!(logged[0], "200 \"GET /a?x=1 HTTP/1.0\" alice [200] -");
    assert_eq!(logged[6], "200 \"GET /ret HTTP/1.0\" - [-] -");
    assert_eq!(
        errors[0],
        "auth request unexpected status: 302 while sending to client, client: 127.0.0.1, server: ar, request: \"GET /e HTTP/1.0\""
    );
}

#[test]
fn auth_request_config_errors_as_nginx() {
    use waypost_tests::{assert_t_cases, Waypost};
    let ok = "ok (exit Some(0))".to_owned();
    let cases = vec![
        (
            in_location("auth_request /auth; auth_request_set $user $upstream_http_x_user; auth_request_set $both \"$upstream_status $upstream_cookie_s $sent_http_x $uri\";"),
            ok.clone(),
            Waypost::Same,
        ),
        (in_location("auth_request off;"), ok.clone(), Waypost::Same),
        (
            in_location("auth_request_set user 1;"),
            emerg("invalid variable name \"user\"", 7),
            Waypost::Same,
        ),
        (
            in_location("auth_request_set $uri 1;"),
            emerg("the duplicate \"uri\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("auth_request /a /b;"),
            emerg("invalid number of arguments in \"auth_request\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("auth_request_set $a;"),
            emerg("invalid number of arguments in \"auth_request_set\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($arg_a) { auth_request /x; }"),
            emerg("\"auth_request\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        // nginx changes `$args` so; waypost does not (README).
        (
            in_location("auth_request_set $args a=1;"),
            ok.clone(),
            Waypost::Exactly(emerg(
                "\"auth_request_set\" of the \"$args\" variable is not supported",
                7,
            )),
        ),
        (
            in_location("satisfy any; auth_basic x; auth_basic_user_file /dev/null; auth_request /auth;"),
            ok,
            Waypost::Exactly(
                "[emerg] \"auth_request\" with \"auth_basic\" and \"satisfy any\" is not supported in CONF:7 (exit Some(1))".to_owned(),
            ),
        ),
    ];
    assert_t_cases("auth-request-conf", &cases);
}

/// A client that leaves while the subrequest waits on a slow auth
/// backend is logged with 499, as nginx logs it, and the subrequest's
/// connection is closed.
#[test]
fn a_client_leaving_during_the_subrequest_is_logged_as_nginx() {
    let mut lines = Vec::new();
    for nginx in [false, true] {
        let slow = waypost_tests::stalled();
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    log_format w '$status \"$request\"';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/w.log w;\n\
                 \x20       location / {{ auth_request /auth; }}\n\
                 \x20       location = /auth {{ internal; proxy_pass http://127.0.0.1:{}; }}\n\
                 \x20   }}\n",
                slow.port
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        // The subrequest is at the auth backend: now the client goes.
        slow.heads
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the subrequest");
        drop(client);
        slow.closed
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the subrequest's connection closed");
        lines.push(server.wait_lines("logs/w.log", 1));
    }
    assert_eq!(lines[0], lines[1], "waypost (left) and nginx (right)");
    assert_eq!(lines[1], ["499 \"GET /x HTTP/1.1\""]);
}
