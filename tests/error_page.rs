//! `error_page`, `recursive_error_pages`, `proxy_intercept_errors`,
//! `internal` and named locations side by side with nginx: the same
//! requests get the same status lines, Location headers and bodies (the
//! server's name in pages made neutral), the same access log lines (the
//! client's `$request`, the final `$status`, the redirect's `$uri`,
//! `$args` and `$request_method`) and the same error log lines.

use std::io::{Read, Write};
use std::net::TcpStream;

use waypost_tests::{assert_same_runs, free_ports, neutral_server, wrap_http, Run, Server};

/// The config both run: server `ex` on `port`, server `two` on `port2`
/// (the http level's `error_page` only), the backend on `back`, and
/// `dead`, where nothing listens.
fn conf(port: u16, port2: u16, back: u16, dead: u16, port3: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format ep '\"$request\" $status $uri \"$args\" $request_method $upstream_status';\n\
             \x20   error_page 418 /http418;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{back};\n\
             \x20       location / {{ return 200 \"back $request_method $uri?$args\\n\"; }}\n\
             \x20       location /up404 {{ return 404 \"upstream 404\\n\"; }}\n\
             \x20       location /up500 {{ return 500 \"upstream 500\\n\"; }}\n\
             \x20       location /up401 {{ add_header WWW-Authenticate 'Basic realm=\"up\"' always; return 401 \"upstream 401\\n\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name ex;\n\
             \x20       access_log logs/ep.log ep;\n\
             \x20       error_page 404 /nf.html;\n\
             \x20       error_page 500 502 503 504 /50x?code=5;\n\
             \x20       location /nf.html {{ return 200 \"nf $uri $args $request_uri\\n\"; }}\n\
             \x20       location /50x {{ return 200 \"50x $args\\n\"; }}\n\
             \x20       location /missing {{ return 404; }}\n\
             \x20       location /nohandler {{ }}\n\
             \x20       location /down {{ proxy_pass http://127.0.0.1:{dead}; }}\n\
             \x20       location /eq {{ error_page 404 = /eqt; return 404; }}\n\
             \x20       location /eqt {{ return 201 \"eqt\\n\"; }}\n\
             \x20       location /ok200 {{ error_page 404 =200 /nf.html; return 404; }}\n\
             \x20       location /toproxy {{ error_page 404 /b/x?y=1; return 404; }}\n\
             \x20       location /b/ {{ proxy_pass http://127.0.0.1:{back}/; }}\n\
             \x20       location /named {{ error_page 404 @fallback; return 404; }}\n\
             \x20       location @fallback {{ proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /nonamed {{ error_page 404 @nope; return 404; }}\n\
             \x20       location /redir {{ error_page 404 http://example.com/x; return 404; }}\n\
             \x20       location /redir301 {{ error_page 404 =301 http://example.com/y; return 404; }}\n\
             \x20       location /own {{ error_page 403 /own403; deny all; }}\n\
             \x20       location /own403 {{ return 200 \"own403\\n\"; }}\n\
             \x20       location /replaced {{ error_page 403 /own403; return 404; }}\n\
             \x20       location /denied {{ deny all; }}\n\
             \x20       location /inner {{ internal; return 200 \"inner $uri\\n\"; }}\n\
             \x20       location /toinner {{ error_page 404 /inner; return 404; }}\n\
             \x20       location /rec {{ error_page 404 /rec2; return 404; }}\n\
             \x20       location /rec2 {{ return 503; }}\n\
             \x20       location /recon {{ recursive_error_pages on; error_page 404 /recon2; return 404; }}\n\
             \x20       location /recon2 {{ return 503; }}\n\
             \x20       location /cycle {{ recursive_error_pages on; error_page 404 /cycle; return 404; }}\n\
             \x20       location /up404 {{ proxy_intercept_errors on; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /up500 {{ proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /up401 {{ proxy_intercept_errors on; error_page 401 /nf.html; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /target-up {{ error_page 404 /up500; return 404; }}\n\
             \x20       location /st {{ error_page 404 /stt; return 404; }}\n\
             \x20       location /st2 {{ error_page 404 =202 /stt; return 404; }}\n\
             \x20       location /stt {{ return 200 \"status=$status cl=$content_length\\n\"; }}\n\
             \x20       location /e497 {{ error_page 497 /nf.html; return 497; }}\n\
             \x20       location /e495 {{ error_page 495 =495 /nf.html; return 495; }}\n\
             \x20       location /e494 {{ error_page 494 = /eqt; return 494; }}\n\
             \x20       location /e400 {{ error_page 400 /nf.html; return 497; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port2};\n\
             \x20       server_name two;\n\
             \x20       access_log logs/ep.log ep;\n\
             \x20       location /t {{ return 418; }}\n\
             \x20       location /http418 {{ return 200 \"http418 $uri\\n\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port3};\n\
             \x20       server_name three;\n\
             \x20       access_log off;\n\
             \x20       error_page 404 /nf;\n\
             \x20       return 404;\n\
             \x20       location /nf {{ return 200 \"three nf\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Every request: (server index, method, path).
const REQUESTS: &[(usize, &str, &str)] = &[
    (0, "GET", "/missing?a=1"),
    (0, "HEAD", "/missing"),
    (0, "POST", "/missing"),
    (0, "GET", "/nohandler"),
    (0, "GET", "/zz"),
    (0, "GET", "/down"),
    (0, "GET", "/eq"),
    (0, "GET", "/ok200"),
    (0, "GET", "/toproxy"),
    (0, "POST", "/named?n=1"),
    (0, "GET", "/nonamed"),
    (0, "GET", "/redir"),
    (0, "GET", "/redir301"),
    (0, "GET", "/own"),
    (0, "GET", "/replaced"),
    (0, "GET", "/denied"),
    (0, "GET", "/inner"),
    (0, "GET", "/toinner"),
    (0, "GET", "/rec"),
    (0, "GET", "/recon"),
    (0, "GET", "/cycle"),
    (0, "GET", "/up404"),
    (0, "GET", "/up500"),
    (0, "GET", "/up401"),
    (0, "GET", "/target-up"),
    (1, "GET", "/t"),
    (1, "GET", "/missing"),
    (0, "GET", "/st"),
    (0, "GET", "/st2"),
    (0, "POST", "/st"),
    (0, "GET", "/e497"),
    (0, "GET", "/e495"),
    (0, "GET", "/e494"),
    (0, "GET", "/e400"),
    (4, "GET", "/x"),
];

/// `method path` on its own connection: the status line, the Location
/// and WWW-Authenticate headers, the body (neutral).
fn ask(port: u16, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: h\r\n{length}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let mut shown = vec![lines.next().unwrap_or("").to_owned()];
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("location:") || lower.starts_with("www-authenticate:") {
            shown.push(line.to_owned());
        }
    }
    format!("{} | {}", shown.join(" | "), neutral_server(body))
}

fn run(nginx: bool) -> Run {
    let ports = free_ports(5);
    let conf = conf(ports[0], ports[1], ports[2], ports[3], ports[4], nginx);
    let server = Server::either(nginx, &conf, &[ports[0], ports[1], ports[2], ports[4]]);
    let answers = REQUESTS
        .iter()
        .map(|&(i, method, path)| format!("{method} {path} -> {}", ask(ports[i], method, path)))
        .collect();
    // (Server `three` logs nothing: its line would show the client's
    // `$uri` where nginx shows the redirect's, README.)
    let access = server.wait_lines("logs/ep.log", REQUESTS.len() - 1);
    let mut errors = server.log_messages("cycle");
    errors.extend(server.log_messages("named location"));
    (answers, access, errors)
}

#[test]
fn error_pages_match_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same_runs(
        &ours,
        &theirs,
        &[
            "GET /missing?a=1 -> HTTP/1.1 404 Not Found | nf /nf.html  /missing?a=1",
            "HTTP/1.1 502 Bad Gateway | 50x code=5",
            "HTTP/1.1 201 Created",
            "POST /named?n=1 -> HTTP/1.1 404 Not Found | back POST /named?n=1",
            "Location: http://example.com/x",
            "HTTP/1.1 301 Moved Permanently",
            "own403",
            "GET /inner -> HTTP/1.1 404 Not Found | nf",
            "inner /inner",
            "GET /rec -> HTTP/1.1 503",
            "GET /cycle -> HTTP/1.1 500",
            "GET /up500 -> HTTP/1.1 500 Internal Server Error | upstream 500",
            "http418 /http418",
            "GET /st -> HTTP/1.1 404 Not Found | status=404",
            "GET /st2 -> HTTP/1.1 202 Accepted | status=202",
            "POST /st -> HTTP/1.1 404 Not Found | status=404 cl=0",
            "GET /e497 -> HTTP/1.1 400 Bad Request | nf",
            "GET /e494 -> HTTP/1.1 201 Created",
            "GET /x -> HTTP/1.1 404 Not Found | <html>",
        ],
    );
    assert_eq!(ours.2.len(), 2, "{:?}", ours.2);
}
