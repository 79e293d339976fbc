//! Requests nginx ends without an answer, side by side with nginx: a
//! client that closes (or half-closes) its connection while its request
//! waits for the upstream or in a `limit_req` delay (499: the upstream
//! connection closed, nginx's `info` line), `return 444`, 408 and 499
//! (the connection closes, nothing is sent), and a request body the
//! client cuts short (400) or stops sending (408). Each one's access log
//! line is written with that status. waypost alone: the balancer's `free`
//! runs for such a try, a pipelined request that arrives while the first
//! waits is not taken for a close, and an HTTP/2 `return 444` resets the
//! stream.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use waypost_tests::{built_module, free_ports, get, info_log, stalled, wrap_http, Server};

const WAIT: Duration = Duration::from_secs(10);

/// The config both programs run: `/` proxies to the stalled backend,
/// `/lim` too behind `limit_req` (1 r/m, burst 5: a key's second request
/// waits a minute), `/post` streams bodies to it with `client_body_timeout 1s`,
/// and the `return`s that answer nothing.
fn conf(proxy: u16, backend: u16, nginx: bool) -> String {
    // waypost streams request bodies as they come; so does nginx with this.
    let buffering = if nginx {
        " proxy_request_buffering off;"
    } else {
        ""
    };
    let conf = wrap_http(
        &format!(
            "\x20   log_format t '$request_uri $status $upstream_addr $upstream_status $body_bytes_sent';\n\
             \x20   limit_req_zone $arg_k zone=z:1m rate=1r/m;\n\
             \x20   upstream stall {{ server 127.0.0.1:{backend}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       access_log logs/access.log t;\n\
             \x20       proxy_read_timeout 60s;\n\
             \x20       location / {{ proxy_pass http://stall; }}\n\
             \x20       location /lim {{ limit_req zone=z burst=5; proxy_pass http://stall; }}\n\
             \x20       location /post {{ client_body_timeout 1s; proxy_pass http://stall;{buffering} }}\n\
             \x20       location /444 {{ return 444; }}\n\
             \x20       location /408 {{ return 408; }}\n\
             \x20       location /499 {{ return 499; }}\n\
             \x20       location /text {{ return 444 \"text\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    );
    info_log(&conf)
}

fn send(proxy: u16, request: &str) -> TcpStream {
    let mut client = TcpStream::connect(("127.0.0.1", proxy)).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    client.write_all(request.as_bytes()).expect("send");
    client
}

/// Everything the proxy sends until it closes the connection.
fn rest(client: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    got
}

/// The `info` lines about clients that left, without their time, pid and
/// connection number, and with the backend's port as `PORT`.
fn left_lines(server: &Server, backend: u16) -> Vec<String> {
    server
        .log_messages("prematurely")
        .iter()
        .map(|message| message.replace(&backend.to_string(), "PORT"))
        .collect()
}

/// What each program logs for the cases, in order: the access log lines
/// and the `info` lines, the backend's port as `PORT`; and what each
/// client got.
fn run(nginx: bool) -> (Vec<String>, Vec<String>, Vec<Vec<u8>>) {
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    let backend = stalled();
    let server = Server::either(nginx, &conf(proxy, backend.port, nginx), &[proxy]);
    let mut got = Vec::new();

    // A client that closes while its request waits for the upstream's
    // answer: the upstream connection is closed too.
    let client = send(proxy, "GET /full HTTP/1.1\r\nHost: x\r\n\r\n");
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    drop(client);
    backend
        .closed
        .recv_timeout(WAIT)
        .expect("the upstream connection closed");
    server.wait_lines("logs/access.log", 1);

    // Half-closed: nginx takes it for a client that left, too.
    let mut client = send(proxy, "GET /half HTTP/1.1\r\nHost: x\r\n\r\n");
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    client.shutdown(Shutdown::Write).expect("shutdown");
    backend
        .closed
        .recv_timeout(WAIT)
        .expect("the upstream connection closed");
    got.push(rest(&mut client));
    server.wait_lines("logs/access.log", 2);

    // Closed during a limit_req delay: the first request of key `a` waits
    // at the backend, the second in the delay, and leaves.
    let first = send(proxy, "GET /lim?k=a HTTP/1.1\r\nHost: x\r\n\r\n");
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    let delayed = send(proxy, "GET /lim?k=a&second HTTP/1.1\r\nHost: x\r\n\r\n");
    let warned = Instant::now() + WAIT;
    while !server.read("logs/error.log").contains("delaying request") {
        assert!(
            Instant::now() < warned,
            "the second request was not delayed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    delayed.shutdown(Shutdown::Both).expect("close");
    server.wait_lines("logs/access.log", 3);
    drop(first);
    backend
        .closed
        .recv_timeout(WAIT)
        .expect("the upstream connection closed");
    server.wait_lines("logs/access.log", 4);

    // `return` with these codes and no text: nothing is sent.
    for path in ["/444", "/408", "/499"] {
        let mut client = send(proxy, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        got.push(rest(&mut client));
    }
    // With a text, it is an answer like any other.
    let mut client = send(
        proxy,
        "GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    got.push(
        rest(&mut client)
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or(&[])
            .to_vec(),
    );
    server.wait_lines("logs/access.log", 8);

    // A body cut short by the client's close (400), and one that stops
    // coming (408, after client_body_timeout), once the proxy streams it.
    let mut client = send(
        proxy,
        "POST /post/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    client.shutdown(Shutdown::Write).expect("shutdown");
    got.push(rest(&mut client));
    server.wait_lines("logs/access.log", 9);
    let mut client = send(
        proxy,
        "POST /post/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    got.push(rest(&mut client));
    let lines = server.wait_lines("logs/access.log", 10);

    let port = backend.port.to_string();
    let lines = lines.iter().map(|l| l.replace(&port, "PORT")).collect();
    (lines, left_lines(&server, backend.port), got)
}

#[test]
fn requests_ended_without_an_answer_are_logged_as_nginx_logs_them() {
    let (theirs, their_info, their_got) = run(true);
    let (ours, our_info, our_got) = run(false);
    assert_eq!(
        theirs,
        [
            "/full 499 127.0.0.1:PORT - 0",
            "/half 499 127.0.0.1:PORT - 0",
            "/lim?k=a&second 499 - - 0",
            "/lim?k=a 499 127.0.0.1:PORT - 0",
            "/444 444 - - 0",
            "/408 408 - - 0",
            "/499 499 - - 0",
            "/text 444 - - 4",
            "/post/cut 400 127.0.0.1:PORT - 0",
            "/post/slow 408 127.0.0.1:PORT - 0",
        ],
        "nginx's lines, the reference"
    );
    assert_eq!(ours, theirs);
    let upstream = |uri: &str| {
        format!(
            "epoll_wait() reported that client prematurely closed connection, so upstream \
             connection is closed too while sending request to upstream, client: 127.0.0.1, \
             server: , request: \"GET {uri} HTTP/1.1\", upstream: \"http://127.0.0.1:PORT{uri}\", \
             host: \"x\""
        )
    };
    let expected_info = [
        upstream("/full"),
        upstream("/half"),
        "client prematurely closed connection, client: 127.0.0.1, server: , request: \
         \"GET /lim?k=a&second HTTP/1.1\", host: \"x\""
            .to_owned(),
        upstream("/lim?k=a"),
    ];
    assert_eq!(
        their_info[..4],
        expected_info,
        "nginx's lines, the reference"
    );
    assert_eq!(our_info[..4], expected_info);
    // Nothing sent for the closes; the status line of `return 444 text`.
    assert_eq!(
        their_got[..5],
        [
            b"".to_vec(),
            vec![],
            vec![],
            vec![],
            b"HTTP/1.1 444 ".to_vec()
        ]
    );
    assert_eq!(our_got[..4], their_got[..4]);
    assert!(
        our_got[4].starts_with(b"HTTP/1.1 444"),
        "{:?}",
        String::from_utf8_lossy(&our_got[4])
    );
}

/// waypost with the `panicky` balancer (whose `free` counts tries freed
/// as successes without a status) over a stalled backend and a live one,
/// and its metrics.
#[test]
fn the_balancer_frees_the_try_of_a_client_that_left() {
    let so = built_module("libpanicky_module.so");
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    let backend = stalled();
    let conf = wrap_http(
        &format!(
            "\x20   upstream app {{ panicky; server 127.0.0.1:{}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       location / {{ proxy_pass http://app; }}\n\
             \x20       location = /metrics {{ metrics; }}\n\
             \x20   }}\n",
            backend.port
        ),
        false,
    );
    let server = Server::waypost(&format!("load_module {};\n{conf}", so.display()), &[proxy]);
    let metric = |name: &str| -> f64 {
        let body = get(proxy, "/metrics").body;
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let unanswered = "waypost_module_tries_unanswered_total{";
    let done = "waypost_module_requests_done_total{";
    let active = format!(
        "waypost_upstream_peer_active{{upstream=\"app\",peer=\"127.0.0.1:{}\"}}",
        backend.port
    );
    assert_eq!(metric(unanswered), 0.0);

    let client = send(proxy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    assert_eq!(metric(&active), 1.0);
    drop(client);
    backend
        .closed
        .recv_timeout(WAIT)
        .expect("the upstream connection closed");
    // One worker: the drops are over before /metrics is served.
    assert_eq!(metric(unanswered), 1.0);
    assert_eq!(metric(done), 1.0);
    assert_eq!(metric(&active), 0.0);
    drop(server);
}

/// A request pipelined behind one that waits for the upstream is data,
/// not a close. The first waits a whole `proxy_read_timeout` (1 s) for a
/// backend that never answers it, so the second's bytes come while it
/// waits; it ends in 504, and the second is answered after it.
#[test]
fn a_pipelined_request_is_not_taken_for_a_close() {
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    // Never answers `/slow`; answers anything else at once.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr").port();
    let (head_tx, heads) = channel::<String>();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let head_tx = head_tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                while let Some(head) = waypost_tests::next_head(&mut stream, &mut buf) {
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let _ = head_tx.send(path.clone());
                    if path == "/slow" {
                        continue;
                    }
                    let body = format!("at {path}");
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    let conf = wrap_http(
        &format!(
            "\x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       proxy_read_timeout 1s;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
             \x20   }}\n"
        ),
        false,
    );
    let _server = Server::waypost(&conf, &[proxy]);
    let mut client = send(proxy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(heads.recv_timeout(WAIT).expect("first"), "/slow");
    client
        .write_all(b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let text = String::from_utf8_lossy(&rest(&mut client)).into_owned();
    assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
    assert!(text.ends_with("at /two"), "{text}");
}

/// Over HTTP/2 a `return 444` resets the stream (nginx: RST_STREAM
/// INTERNAL_ERROR) and logs 444; a stream the client gives up on while it
/// waits for the upstream is logged 499.
#[test]
fn http2_streams_ended_without_an_answer() {
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    let backend = stalled();
    let conf = wrap_http(
        &format!(
            "\x20   log_format t '$request_uri $status $upstream_status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       http2 on;\n\
             \x20       access_log logs/access.log t;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{}; }}\n\
             \x20       location /444 {{ return 444; }}\n\
             \x20   }}\n",
            backend.port
        ),
        false,
    );
    let server = Server::waypost(&conf, &[proxy]);
    let curl = |path: &str, extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge"])
            .args(extra)
            .arg(format!("http://127.0.0.1:{proxy}{path}"))
            .output()
            .expect("run curl (apt-get install -y curl)")
    };
    let out = curl("/444", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("INTERNAL_ERROR") || err.contains("stream"),
        "{err}"
    );
    assert_eq!(server.wait_lines("logs/access.log", 1), ["/444 444 -"]);

    let out = curl("/wait", &["--max-time", "1"]);
    assert!(!out.status.success());
    backend
        .heads
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    backend
        .closed
        .recv_timeout(WAIT)
        .expect("the upstream connection closed");
    assert_eq!(server.wait_lines("logs/access.log", 2)[1], "/wait 499 -");
}

/// `proxy_ignore_client_abort on` beside nginx: a client that leaves
/// while the upstream is asked does not end the request. The upstream's
/// answer is read and passed on (into the closed connection) and logged
/// with its status; beside it, a location without it ends its request
/// with 499 and closes its upstream connection.
#[test]
fn ignore_client_abort_as_nginx() {
    let run = |nginx: bool| {
        // A backend that answers each request when the test says so.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let back = listener.local_addr().expect("addr").port();
        let (heads_tx, heads) = channel();
        let (closed_tx, closed) = channel();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (heads_tx, closed_tx) = (heads_tx.clone(), closed_tx.clone());
                std::thread::spawn(move || {
                    let Some(head) = waypost_tests::read_head(&mut stream) else {
                        return;
                    };
                    let (go_tx, go) = channel::<()>();
                    let path = String::from_utf8_lossy(&head)
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let _ = heads_tx.send((path.clone(), go_tx));
                    if path == "/watch" {
                        // Until the proxy closes.
                        let mut sink = [0u8; 64];
                        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                        let _ = closed_tx.send(path);
                        return;
                    }
                    if go.recv_timeout(WAIT).is_ok() {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                });
            }
        });
        let [proxy] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "\x20   log_format t '$request_uri $status $upstream_status';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{proxy};\n\
                 \x20       access_log logs/access.log t;\n\
                 \x20       location /ignore {{ proxy_ignore_client_abort on; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /watch {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[proxy]);
        let ignoring = send(proxy, "GET /ignore HTTP/1.1\r\nHost: x\r\n\r\n");
        let (path, answer) = heads.recv_timeout(WAIT).expect("a request at the backend");
        assert_eq!(path, "/ignore");
        let watched = send(proxy, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n");
        let (path, _) = heads.recv_timeout(WAIT).expect("a request at the backend");
        assert_eq!(path, "/watch");
        // Both clients leave, the first first: once the proxy has closed
        // the second's upstream connection, it has seen the first leave.
        drop(ignoring);
        drop(watched);
        assert_eq!(
            closed
                .recv_timeout(WAIT)
                .expect("an upstream connection closed"),
            "/watch"
        );
        server.wait_lines("logs/access.log", 1);
        answer.send(()).expect("the backend waits");
        server.wait_lines("logs/access.log", 2)
    };
    let ours = run(false);
    assert_eq!(ours, run(true), "waypost (left) and nginx (right)");
    assert_eq!(ours, ["/watch 499 -", "/ignore 200 200"]);
}
