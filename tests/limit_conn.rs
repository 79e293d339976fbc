//! `limit_conn` side by side with nginx: while a client's request is held
//! by the backend, its other requests meet the limits of each location —
//! inherited from the server, replaced by a location's own, in dry run,
//! with another status (444 and 408 close without an answer), keyed on an
//! argument (an empty key is not
//! limited, one over 255 bytes is logged and not limited), two limits in
//! a row (a refusal gives back what the first took), a `return` (answered
//! before the limits), a location without a handler and a request no
//! location takes (limited), `deny` (checked after the limits). Another
//! client is not limited. Then the count goes back when the held answer
//! is written, and when a held client goes away. Answers, access log lines
//! with `$limit_conn_status` and error log lines are nginx's.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use waypost_tests::{
    assert_same_runs, connect_from, free_ports, next_head, serve_numbered, status_and_page,
    wrap_http, Run, Server,
};

fn conf(port: u16, back: u16, dead: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format lc '$remote_addr \"$request\" $status $limit_conn_status';\n\
             \x20   limit_conn_zone $binary_remote_addr zone=addr:32k;\n\
             \x20   limit_conn_zone $arg_k zone=bykey:32k;\n\
             \x20   upstream b {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name lc;\n\
             \x20       access_log logs/acc.log lc;\n\
             \x20       limit_conn addr 1;\n\
             \x20       location /one/ {{ proxy_pass http://b; }}\n\
             \x20       location /two/ {{ limit_conn addr 2; proxy_pass http://b; }}\n\
             \x20       location /dry/ {{ limit_conn addr 1; limit_conn_dry_run on; proxy_pass http://b; }}\n\
             \x20       location /status/ {{\n\
             \x20           limit_conn addr 1;\n\
             \x20           limit_conn_status 429;\n\
             \x20           limit_conn_log_level warn;\n\
             \x20           proxy_pass http://b;\n\
             \x20       }}\n\
             \x20       location /close/ {{ limit_conn_status 444; proxy_pass http://b; }}\n\
             \x20       location /late/ {{ limit_conn_status 408; }}\n\
             \x20       location /key/ {{ limit_conn bykey 1; proxy_pass http://b; }}\n\
             \x20       location /both/ {{ limit_conn bykey 5; limit_conn addr 1; proxy_pass http://b; }}\n\
             \x20       location /ret {{ return 200 \"ret\\n\"; }}\n\
             \x20       location /none/ {{ }}\n\
             \x20       location /deny/ {{ deny 127.0.0.2; proxy_pass http://b; }}\n\
             \x20       location /fall/ {{ error_page 502 = @fb; proxy_pass http://127.0.0.1:{dead}; }}\n\
             \x20       location @fb {{ proxy_pass http://b; }}\n\
             \x20       location /nest/ {{\n\
             \x20           limit_conn_status 418;\n\
             \x20           location /nest/in/ {{ proxy_pass http://b; }}\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// A backend that answers `ok` at once, except requests for a path with
/// `/hold`: their heads go to `heads`, and each waits for a message on
/// `release` before its answer.
struct Gated {
    port: u16,
    heads: Receiver<String>,
    release: Sender<()>,
}

fn gated() -> Gated {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (head_tx, heads) = channel();
    let (release, release_rx) = channel::<()>();
    let head_tx = Arc::new(Mutex::new(head_tx));
    let release_rx = Arc::new(Mutex::new(release_rx));
    serve_numbered(listener, move |mut stream, _| {
        let mut buf = Vec::new();
        while let Some(head) = next_head(&mut stream, &mut buf) {
            if head.contains("/hold") {
                let _ = head_tx.lock().map(|tx| tx.send(head.clone()));
                let _ = release_rx.lock().map(|rx| rx.recv());
            }
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                .is_err()
            {
                return;
            }
        }
    });
    Gated {
        port,
        heads,
        release,
    }
}

/// Sends `GET path` from `src` on a connection of its own.
fn send(port: u16, src: u8, path: &str) -> TcpStream {
    let mut stream = connect_from([127, 0, 0, src], port);
    let request = format!("GET {path} HTTP/1.1\r\nHost: lc\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

fn ask(port: u16, src: u8, path: &str) -> String {
    format!("{src} {path} -> {}", status_and_page(send(port, src, path)))
}

/// Answers, access log lines and error log lines of one server.
fn run(nginx: bool) -> Run {
    let backend = gated();
    let ports = free_ports(2);
    let port = ports[0];
    let conf = conf(port, backend.port, ports[1], nginx);
    let server = Server::either(nginx, &conf, &ports[..1]);
    let long_key = format!("/key/x?k={}", "k".repeat(300));
    let mut answers = Vec::new();

    // 127.0.0.1 holds a request; its others meet the limits.
    let held = send(port, 1, "/one/hold");
    backend
        .heads
        .recv()
        .expect("the held request reached the backend");
    for path in [
        "/one/x",
        "/two/x",
        "/dry/x",
        "/status/x",
        "/close/x",
        "/late/x",
        "/key/x",
        "/key/x?k=a",
        "/both/x?k=a",
        "/key/x?k=a",
        long_key.as_str(),
        "/ret",
        "/none/x",
        "/deny/x",
        "/nest/in/x",
        "/elsewhere",
    ] {
        answers.push(ask(port, 1, path));
    }
    // Another client is not limited.
    for path in ["/one/x", "/none/x", "/deny/x", "/elsewhere"] {
        answers.push(ask(port, 2, path));
    }
    // The held answer written, its count is back.
    backend.release.send(()).expect("release");
    answers.push(format!("held -> {}", status_and_page(held)));
    answers.push(ask(port, 1, "/one/x"));

    // A held client that goes away gives its count back too: once its
    // line (499) is in the access log, its next request passes.
    let lines = answers.len() + 1;
    let gone = send(port, 1, "/one/hold");
    backend.heads.recv().expect("the second held request");
    drop(gone);
    server.wait_lines("logs/acc.log", lines);
    answers.push(ask(port, 1, "/one/x"));
    backend.release.send(()).expect("release");

    // A request an `error_page` sent to a named location keeps its count
    // until it ends there.
    let fallen = send(port, 3, "/fall/hold");
    backend.heads.recv().expect("the fallen request");
    answers.push(ask(port, 3, "/one/x"));
    backend.release.send(()).expect("release");
    answers.push(format!("fallen -> {}", status_and_page(fallen)));

    let access = server.wait_lines("logs/acc.log", lines + 3);
    let mut errors = server.log_messages("limiting connections");
    errors.extend(server.log_messages("more than 255 bytes"));
    (answers, access, errors)
}

#[test]
fn limits_match_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same_runs(
        &ours,
        &theirs,
        &[
            "503 Service Temporarily Unavailable",
            "3 /one/x -> HTTP/1.1 503",
            "fallen -> HTTP/1.1 200",
            "429 Too Many Requests",
            "418",
            "200 OK | ok",
            "403 Forbidden",
            "404 Not Found",
        ],
    );
    let (_, our_access, our_errors) = ours;
    for needle in [" PASSED", " REJECTED", " REJECTED_DRY_RUN"] {
        assert!(
            our_access.iter().any(|l| l.ends_with(needle)),
            "{needle}: {our_access:#?}"
        );
    }
    assert!(
        our_errors.iter().any(|l| l.contains(", dry run,")),
        "{our_errors:#?}"
    );
    assert!(
        our_errors.iter().any(|l| l.contains("more than 255")),
        "{our_errors:#?}"
    );
}

/// Waits until the error log has a line with `text`.
fn logged(server: &Server, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.read("logs/error.log").contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {text:?}:\n{}",
            server.read("logs/error.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A zone lives on across a reload that keeps its name and size, as
/// nginx keeps a shared memory zone: a request held under the old
/// configuration still counts under the new one. A reload that gives such
/// a zone another key fails with nginx's message, and the running
/// configuration goes on serving.
#[test]
fn zones_live_on_across_reloads() {
    let backend = gated();
    let port = free_ports(1)[0];
    let conf = |key: &str, status: u16| {
        wrap_http(
            &format!(
                "    limit_conn_zone {key} zone=addr:32k;\n\
                 \x20   upstream b {{ server 127.0.0.1:{}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       limit_conn addr 1;\n\
                 \x20       limit_conn_status {status};\n\
                 \x20       location / {{ proxy_pass http://b; }}\n\
                 \x20   }}\n",
                backend.port
            ),
            false,
        )
        .replace(
            "error_log logs/error.log;",
            "error_log logs/error.log notice;",
        )
    };
    let server = Server::waypost_private(&conf("$binary_remote_addr", 503), &[port]);
    let held = send(port, 1, "/hold");
    backend
        .heads
        .recv()
        .expect("the held request reached the backend");
    assert!(status_and_page(send(port, 1, "/x")).starts_with("HTTP/1.1 503 "));

    server.reload_with(&conf("$binary_remote_addr", 429));
    logged(&server, "configuration reloaded");
    let after = status_and_page(send(port, 1, "/x"));
    assert!(after.starts_with("HTTP/1.1 429 "), "{after}");

    server.reload_with(&conf("$remote_addr", 503));
    logged(
        &server,
        "limit_conn_zone \"addr\" uses the \"$remote_addr\" key while previously it used the \"$binary_remote_addr\" key",
    );
    let kept = status_and_page(send(port, 1, "/x"));
    assert!(
        kept.starts_with("HTTP/1.1 429 "),
        "the running configuration: {kept}"
    );

    backend.release.send(()).expect("release");
    assert!(status_and_page(held).starts_with("HTTP/1.1 200 "));
    let free = status_and_page(send(port, 1, "/x"));
    assert!(free.starts_with("HTTP/1.1 200 "), "{free}");
}
