//! The upstream client against a scripted backend, side by side with
//! nginx where both behave the same: bodies framed each way a backend can
//! frame them, which responses leave the connection for another request,
//! an idle connection the backend closed, and the responses waypost
//! refuses or skips on purpose (README, "Where waypost differs").

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, info_log, read_head, wrap_http, Server, TempDir};

/// What the backend answers to `METHOD PATH`, and whether it closes after.
fn script(method: &str, path: &str) -> (&'static [u8], bool) {
    match (method, path) {
        ("HEAD", "/keep") => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", false),
        (_, "/keep") => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nkeep", false),
        (_, "/close") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nclose",
            true,
        ),
        (_, "/nocontent") => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (_, "/http10") => (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n10", true),
        (_, "/eof") => (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", true),
        (_, "/chunked") => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\n",
            false,
        ),
        (_, "/gzip") => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes",
            true,
        ),
        (_, "/both") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        (_, "/interim") => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        (_, "/conflict") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            true,
        ),
        _ => (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
    }
}

/// A backend answering [`script`], counting the connections it accepted
/// and closed. With `idle`, it closes a connection idle that long after a
/// response (its own keepalive_timeout).
struct Backend {
    port: u16,
    accepted: Arc<AtomicU32>,
    closed: Arc<AtomicU32>,
}

impl Backend {
    fn start(idle: Option<Duration>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicU32::new(0));
        let closed = Arc::new(AtomicU32::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                std::thread::spawn(move || {
                    Backend::serve(stream, idle);
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            port,
            accepted,
            closed,
        }
    }

    fn serve(mut stream: TcpStream, idle: Option<Duration>) {
        let mut first = true;
        loop {
            if !first {
                if let Some(idle) = idle {
                    let _ = stream.set_read_timeout(Some(idle));
                }
            }
            first = false;
            let Some(head) = read_idle(&mut stream) else {
                return;
            };
            let text = String::from_utf8_lossy(&head).into_owned();
            let mut words = text.split(' ');
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (answer, close) = script(method, path);
            if stream.write_all(answer).is_err() || close {
                return;
            }
        }
    }
}

/// A request head, or `None` when the connection closed or stayed idle
/// past its read timeout.
fn read_idle(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// A proxy on `port` to `backend` with keep-alive upstream connections.
fn proxy_conf(port: u16, backend: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    upstream u {{ server 127.0.0.1:{backend}; keepalive 4; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       proxy_read_timeout 5s;\n\
             \x20       location / {{\n\
             \x20           proxy_pass http://u;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// A response as a client reads it: status, headers (lowercase names),
/// the body (de-chunked) and whether it was complete.
#[derive(Debug, PartialEq)]
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    complete: bool,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD PATH` on a new connection closed after the response.
fn fetch(port: u16, method: &str, path: &str) -> Got {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut got = Got {
        status,
        headers,
        body: String::new(),
        complete: true,
    };
    if got
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        let mut rest = rest;
        got.complete = false;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if size == 0 {
                got.complete = after == "\r\n";
                break;
            }
            got.body.push_str(after.get(..size).unwrap_or(after));
            rest = after.get(size + 2..).unwrap_or("");
        }
    } else {
        got.body = rest.to_owned();
        if let Some(n) = got.header("content-length") {
            got.complete = n.parse() == Ok(rest.len());
        }
    }
    got
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a program answers to each of `paths`, on one backend.
fn answers(nginx: bool, paths: &[&str]) -> Vec<Got> {
    let backend = Backend::start(None);
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let _server = Server::either(nginx, &proxy_conf(port, backend.port, nginx), &[port]);
    paths.iter().map(|p| fetch(port, "GET", p)).collect()
}

#[test]
fn bodies_reach_the_client_whole_however_the_backend_frames_them() {
    let paths = ["/keep", "/eof", "/chunked", "/gzip", "/both"];
    let ours = answers(false, &paths);
    let theirs = answers(true, &paths);
    for ((path, ours), theirs) in paths.iter().zip(&ours).zip(&theirs) {
        assert_eq!(
            (ours.status, ours.body.as_str(), ours.complete),
            (theirs.status, theirs.body.as_str(), theirs.complete),
            "{path}: waypost {ours:?}, nginx {theirs:?}"
        );
        assert!(ours.complete, "{path}: {ours:?}");
    }
    let both = &ours[4];
    assert_eq!(both.body, "hello");
    // Transfer-Encoding framed that body: its Content-Length says nothing
    // about what the client gets.
    assert_eq!(both.header("content-length"), None, "{both:?}");
    assert_eq!(both.header("transfer-encoding"), Some("chunked"));
}

/// New backend connections for three requests of `METHOD PATH` in a row,
/// after one `GET /keep` left a connection in the pool.
fn connections_for(nginx: bool, requests: &[(&str, &str)]) -> Vec<u32> {
    let backend = Backend::start(None);
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let _server = Server::either(nginx, &proxy_conf(port, backend.port, nginx), &[port]);
    requests
        .iter()
        .map(|(method, path)| {
            assert_eq!(fetch(port, "GET", "/keep").status, 200);
            let before = backend.accepted.load(Ordering::SeqCst);
            for _ in 0..3 {
                let got = fetch(port, method, path);
                assert!(got.status == 200 || got.status == 204, "{path}: {got:?}");
            }
            backend.accepted.load(Ordering::SeqCst) - before
        })
        .collect()
}

#[test]
fn connections_are_kept_when_the_backend_keeps_them_as_nginx() {
    let requests = [
        ("GET", "/keep"),
        ("HEAD", "/keep"),
        ("GET", "/nocontent"),
        ("GET", "/chunked"),
        ("GET", "/close"),
        ("GET", "/http10"),
        ("GET", "/eof"),
    ];
    let ours = connections_for(false, &requests);
    let theirs = connections_for(true, &requests);
    assert_eq!(ours, theirs, "new connections per request kind");
    // Kept: a body with a length or chunks, none at all (HEAD, 204).
    // Closed: `Connection: close`, HTTP/1.0, a body ended by the close.
    assert_eq!(ours, [0, 0, 0, 0, 2, 2, 2]);
}

#[test]
fn an_idle_connection_the_backend_closed_is_not_used_as_nginx() {
    for nginx in [false, true] {
        let backend = Backend::start(Some(Duration::from_millis(100)));
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let server = Server::either(nginx, &proxy_conf(port, backend.port, nginx), &[port]);
        assert_eq!(fetch(port, "GET", "/keep").body, "keep");
        eventually("the backend closing its idle connection", || {
            backend.closed.load(Ordering::SeqCst) == 1
        });
        let got = fetch(port, "GET", "/keep");
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "keep"),
            "nginx: {nginx}"
        );
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 2, "nginx: {nginx}");
        let errors = server.read("logs/error.log");
        assert!(!errors.contains("[error]"), "nginx: {nginx}: {errors}");
    }
}

#[test]
fn interim_responses_are_skipped() {
    // nginx 1.22 takes a 1xx for the response; waypost passes the final
    // one (README, "Where waypost differs").
    let got = &answers(false, &["/interim"])[0];
    assert_eq!((got.status, got.body.as_str()), (200, "ok"), "{got:?}");
    assert_eq!(got.header("link"), None);
}

#[test]
fn conflicting_lengths_are_an_invalid_header() {
    // nginx 1.22 takes the last length; waypost answers 502 (README,
    // "Where waypost differs"): two readings of one response are two
    // ways to split the connection.
    let backend = Backend::start(None);
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let server = Server::waypost(&proxy_conf(port, backend.port, false), &[port]);
    assert_eq!(fetch(port, "GET", "/conflict").status, 502);
    let errors = server.read("logs/error.log");
    assert!(
        errors.contains("upstream sent invalid header while reading response header from upstream"),
        "{errors}"
    );
}

#[test]
fn a_response_before_the_whole_body_is_passed_on() {
    // The backend answers once it has the head; the client holds back the
    // rest of its body. The answer reaches the client, and the connection
    // to the backend is not kept (the request was never sent whole).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            if read_head(&mut stream).is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
            }
            held.push(stream);
        }
    });
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let _server = Server::waypost(&proxy_conf(port, backend, false), &[port]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        .expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"early") {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nearly"), "{text}");
    drop(client);
    assert_eq!(fetch(port, "GET", "/").status, 200);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the connection was kept"
    );
}

/// The request heads a backend gets for `requests` through a proxy with
/// a few `proxy_set_header`s and the server's `extra` lines: one
/// connection per request, answered 204; and the error log's `info`
/// lines, without their time, pid and connection number.
fn upstream_heads(nginx: bool, extra: &str, requests: &[&[u8]]) -> (Vec<String>, Vec<String>) {
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr").port();
    let (tx, heads) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head and the short bodies sent here come in one piece
            // or a few; up to the blank line, and the 3-byte body if any.
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let want = if head.contains("Content-Length: 3") {
                        3
                    } else {
                        0
                    };
                    if body.len() >= want {
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
        }
    });
    let conf = info_log(&wrap_http(
        &format!(
            "    upstream up {{ server 127.0.0.1:{backend}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       proxy_set_header X-Set \"v\";\n\
             \x20       proxy_set_header accept-encoding \"\";\n\
             \x20       proxy_set_header X-Real-IP $remote_addr;\n\
             \x20       proxy_set_header X-Dup a;\n\
             \x20       proxy_set_header x-dup b;\n\
             \x20       {extra}\n\
             \x20       location / {{ proxy_pass http://up; }}\n\
             \x20   }}\n"
        ),
        nginx,
    ));
    let server = Server::either(nginx, &conf, &[port]);
    let heads = requests
        .iter()
        .map(|request| {
            let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            client.write_all(request).expect("send");
            assert!(read_head(&mut client).is_some(), "no answer");
            heads
                .recv_timeout(Duration::from_secs(10))
                .expect("the backend got a request")
        })
        .collect();
    // Both log a dropped line before the request goes upstream.
    (heads, server.log_messages("client sent"))
}

/// The upstream request's head, byte for byte as nginx writes it: the
/// configured headers as the config spells them (a name set twice, twice),
/// then `Host` and
/// `Connection`, then the body's `Content-Length` (0 too when the client
/// announced it), then the client's headers as it spelled them, without
/// those set or hop-by-hop.
#[test]
fn the_upstream_request_head_is_written_as_nginx_writes_it() {
    let requests: [&[u8]; 3] = [
        b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\nX-MiXed:  1\r\naccept-encoding: gzip\r\nX-DUP: c\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nConnection: keep-alive\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nX-A: 1\r\nConnection: close\r\n\r\nabc",
        b"POST /z HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\nx-a: 1\r\nConnection: close\r\n\r\n",
    ];
    let (theirs, _) = upstream_heads(true, "", &requests);
    assert_eq!(
        theirs[0],
        "GET /x HTTP/1.0\r\nX-Set: v\r\nX-Real-IP: 127.0.0.1\r\nX-Dup: a\r\nx-dup: b\r\nHost: up\r\nConnection: close\r\nUser-Agent: t\r\nX-MiXed: 1\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n\r\n",
        "nginx's, the reference"
    );
    assert_eq!(upstream_heads(false, "", &requests).0, theirs);
}

/// Header names as nginx takes them (`underscores_in_headers off`,
/// `ignore_invalid_headers on`): a name with a byte other than a letter,
/// a digit or `-` is dropped and logged at `info`, whether httparse
/// takes it (`_`, `.`) or not (`@`, `{`, UTF-8); with
/// `underscores_in_headers on`, `_` is a name's byte.
#[test]
fn header_lines_with_names_nginx_does_not_take_are_dropped_as_nginx_drops_them() {
    let requests: [&[u8]; 2] = [
        b"GET /a HTTP/1.1\r\nX_Under: 1\r\nHost: h\r\nX.Dot: 2\r\nX@At: 3\r\nX-Ok: 4\r\n\xc3\xa9: 5\r\nX{B: 6  \r\nConnection: close\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: h\r\n_X: 1\r\nConnection: close\r\n\r\n",
    ];
    for (extra, kept, info) in [
        ("", "X-Ok: 4\r\n", 6),
        ("underscores_in_headers on;", "X_Under: 1\r\nX-Ok: 4\r\n", 4),
    ] {
        let theirs = upstream_heads(true, extra, &requests);
        assert!(
            theirs.0[0].ends_with(&format!("Host: up\r\nConnection: close\r\n{kept}\r\n")),
            "nginx's, the reference: {}",
            theirs.0[0]
        );
        assert_eq!(theirs.1.len(), info, "nginx's info lines: {:?}", theirs.1);
        assert_eq!(upstream_heads(false, extra, &requests), theirs, "{extra}");
    }
}

/// A backend that answers each request with `answer(target)`, then
/// closes the connection.
fn answering_backend(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let Some(head) = read_head(&mut stream) else {
                continue;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("/");
            let _ = stream.write_all(&answer(target));
        }
    });
    port
}

/// A backend that answers every request 302 with the Location (and the
/// Refresh URL) its query `?l=` gives in hex.
fn redirecting_backend() -> u16 {
    answering_backend(|target| {
        let hex = target.split_once("?l=").map_or("", |(_, h)| h);
        let location: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        let mut answer = b"HTTP/1.1 302 Found\r\nLocation: ".to_vec();
        answer.extend_from_slice(&location);
        answer.extend_from_slice(b"\r\nRefresh: 5; url=");
        answer.extend_from_slice(&location);
        answer.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        answer
    })
}

/// nginx or waypost with upstream `up` (the backend) and a server of the
/// `locations` lines (`BACKEND`: the backend's port).
fn up_server(nginx: bool, backend: u16, locations: &str) -> (Server, u16) {
    up_server_on(nginx, backend, locations, "")
}

/// [`up_server`] with `options` on its `listen` line (` http2`).
fn up_server_on(nginx: bool, backend: u16, locations: &str, options: &str) -> (Server, u16) {
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let conf = wrap_http(
        &format!(
            "    upstream up {{ server 127.0.0.1:{backend}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port}{options};\n\
             \x20       {}\
             \x20   }}\n",
            locations
                .replace("BACKEND", &backend.to_string())
                .trim_start()
        ),
        nginx,
    );
    (Server::either(nginx, &conf, &[port]), port)
}

/// The head of the answer to `GET path` with `Host: host`.
fn ask(port: u16, path: &str, host: &str) -> String {
    ask_with(port, path, host, "")
}

/// [`ask`] with more header lines (each ending in CRLF).
fn ask_with(port: u16, path: &str, host: &str, lines: &str) -> String {
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("send");
    String::from_utf8_lossy(&read_head(&mut client).expect("an answer")).into_owned()
}

/// The Location and Refresh lines a client gets through each location
/// for each Location the backend sends, the proxy's port as `PORT`.
fn redirects_seen(nginx: bool, backend: u16, locations: &[&str]) -> Vec<String> {
    let (_server, port) = up_server(
        nginx,
        backend,
        "        location / { proxy_pass http://up; }\n\
         \x20       location /one/ { proxy_pass http://127.0.0.1:BACKEND/two/; }\n\
         \x20       location /off/ { proxy_pass http://up; proxy_redirect off; }\n\
         \x20       location /y { proxy_pass http://up/z; }\n\
         \x20       location /api/ {\n\
         \x20           proxy_pass http://up/;\n\
         \x20           location /api/in/ { proxy_pass http://127.0.0.1:BACKEND/; }\n\
         \x20       }\n\
         \x20       location /m/ {\n\
         \x20           proxy_pass http://up;\n\
         \x20           proxy_redirect http://up/ /new/;\n\
         \x20           proxy_redirect http://up/ /second/;\n\
         \x20           proxy_redirect /rel http://abs.example/r;\n\
         \x20       }\n\
         \x20       location /rx/ {\n\
         \x20           proxy_pass http://up;\n\
         \x20           proxy_redirect ~^/nomatch /never;\n\
         \x20           proxy_redirect ~*^HTTP://UP/(.*)$ /from-regex/$1?h=$host;\n\
         \x20           proxy_redirect ~(\\d+)/ /digits/$1;\n\
         \x20       }\n\
         \x20       location /var/ {\n\
         \x20           proxy_pass http://up;\n\
         \x20           proxy_redirect http://$proxy_host/ $scheme://$host/v/;\n\
         \x20           proxy_redirect $arg_from /q/;\n\
         \x20       }\n",
    );
    let mut seen = Vec::new();
    for path in [
        "/", "/one/", "/off/", "/y", "/m/", "/api/", "/api/in/", "/rx/", "/var/",
    ] {
        for location in locations {
            let location = location.replace("BACKEND", &backend.to_string());
            let hex: String = location.bytes().map(|b| format!("{b:02x}")).collect();
            let head = ask(port, &format!("{path}?l={hex}"), "ex.com:8080");
            for line in head.split("\r\n") {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("location:") || lower.starts_with("refresh:") {
                    seen.push(format!(
                        "{path} {location} -> {}",
                        line.replace(&port.to_string(), "PORT")
                            .replace(&backend.to_string(), "BACKEND")
                    ));
                }
            }
        }
    }
    seen
}

/// `proxy_redirect`: by default the `proxy_pass` URL in an upstream's
/// Location or Refresh becomes the location's path (`/` without a URI
/// part), and a Location so made a path gets the scheme, host and port;
/// `off`; explicit rules, the first that matches, plain, with variables
/// or regexes; a backend's own relative Location left as it is; a nested
/// location's inherited `default`.
#[test]
fn redirects_are_rewritten_as_nginx_rewrites_them() {
    let backend = redirecting_backend();
    let locations = [
        "http://up/login",
        "http://up",
        "http://UP/x",
        "/rel/x",
        "http://127.0.0.1:BACKEND/two/a",
        "http://127.0.0.1:BACKEND/other",
        "https://up/x",
        "http://up/z/q",
        "http://up/zz",
    ];
    let theirs = redirects_seen(true, backend, &locations);
    assert!(
        theirs.contains(&"/ http://up/login -> Location: http://ex.com:PORT/login".to_owned()),
        "nginx's, the reference: {theirs:#?}"
    );
    // A nested location inherits its parent's `default`, URL and all.
    assert!(
        theirs.contains(
            &"/api/in/ http://up/login -> Location: http://ex.com:PORT/api/login".to_owned()
        ),
        "nginx's, the reference: {theirs:#?}"
    );
    // Regexes (`~`, `~*`; the whole value replaced, groups in the
    // replacement) and variables on both sides.
    assert!(
        theirs.contains(
            &"/rx/ http://up/login -> Location: http://ex.com:PORT/from-regex/login?h=ex.com"
                .to_owned()
        ),
        "nginx's, the reference: {theirs:#?}"
    );
    assert!(
        theirs.contains(&"/var/ http://up/login -> Location: http://ex.com/v/login".to_owned()),
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(theirs.len(), 2 * 9 * locations.len());
    assert_eq!(redirects_seen(false, backend, &locations), theirs);
}

/// The headers `add_header` adds to the answers of `paths`, and the
/// statuses, through nginx or waypost.
fn added_headers(nginx: bool, backend: u16, paths: &[&str]) -> Vec<String> {
    let (_server, port) = up_server(
        nginx,
        backend,
        "        add_header X-Server s;\n\
         \x20       add_header X-Server-Always s always;\n\
         \x20       location / { return 200 \"ok\"; }\n\
         \x20       location /own/ {\n\
         \x20           add_header X-Own \"o $arg_v\";\n\
         \x20           add_header X-Empty $arg_none;\n\
         \x20           add_header X-Always a always;\n\
         \x20           add_header X-XSS-Protection \"1; mode=block\";\n\
         \x20           add_header x-lower l;\n\
         \x20           location /own/missing { return 404; }\n\
         \x20           location /own/up { proxy_pass http://up; }\n\
         \x20           return 201 \"made\";\n\
         \x20       }\n\
         \x20       location /err { return 500; }\n",
    );
    let mut seen = Vec::new();
    for path in paths {
        let head = ask(port, path, "h");
        let status = head.split(' ').nth(1).unwrap_or("").to_owned();
        // (Names as written: nginx spells them as the config does.)
        let added: Vec<&str> = head
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("x-"))
            .collect();
        seen.push(format!("{path} {status} {added:?}"));
    }
    seen
}

/// `add_header`: a level with any replaces the levels above; added to
/// 2xx and 3xx answers (the listed ones), to any with `always`; values
/// with variables, none when empty; after the upstream's headers.
#[test]
fn headers_are_added_as_nginx_adds_them() {
    let backend = redirecting_backend();
    let paths = ["/", "/own/?v=1", "/own/missing", "/own/up?l=2f78", "/err"];
    let theirs = added_headers(true, backend, &paths);
    assert_eq!(
        theirs[1],
        "/own/?v=1 201 [\"X-Own: o 1\", \"X-Always: a\", \"X-XSS-Protection: 1; mode=block\", \"x-lower: l\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(added_headers(false, backend, &paths), theirs);
}

/// `add_header` with what the upstream answered: `$upstream_addr` and
/// `$upstream_status` of every try (a refused one too), a header of the
/// last answer (`$upstream_http_*`, one nginx hides from the client
/// too), a cookie it set (`$upstream_cookie_*`); in an `if` block's
/// lines; and nothing where no upstream answered.
#[test]
fn upstream_variables_in_add_header_as_nginx() {
    let backend = answering_backend(|_| {
        b"HTTP/1.1 200 OK\r\nServer: back/1\r\nX-U: u1\r\nX-U: u2\r\n\
          Set-Cookie: sid=abc; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            .to_vec()
    });
    let [dead] = free_ports(1)[..] else {
        unreachable!()
    };
    let seen = |nginx: bool| {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    upstream up {{ server 127.0.0.1:{backend}; }}\n\
                 \x20   upstream two {{ server 127.0.0.1:{dead}; server 127.0.0.1:{backend}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /u/ {{\n\
                 \x20           proxy_pass http://up;\n\
                 \x20           add_header X-A $upstream_addr;\n\
                 \x20           add_header X-S $upstream_status;\n\
                 \x20           add_header X-H \"[$upstream_http_x_u] [$upstream_http_server] [$upstream_http_none]\";\n\
                 \x20           add_header X-C \"[$upstream_cookie_sid] [$upstream_cookie_none]\";\n\
                 \x20       }}\n\
                 \x20       location /r/ {{\n\
                 \x20           proxy_pass http://two;\n\
                 \x20           add_header X-A $upstream_addr always;\n\
                 \x20           add_header X-S $upstream_status always;\n\
                 \x20       }}\n\
                 \x20       location /dead/ {{\n\
                 \x20           proxy_pass http://127.0.0.1:{dead};\n\
                 \x20           add_header X-A $upstream_addr always;\n\
                 \x20           add_header X-S $upstream_status always;\n\
                 \x20       }}\n\
                 \x20       location /if/ {{\n\
                 \x20           proxy_pass http://up;\n\
                 \x20           if ($arg_a) {{ add_header X-If $upstream_status; }}\n\
                 \x20       }}\n\
                 \x20       location /local/ {{ add_header X-A \"[$upstream_addr]\"; return 200; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let mut lines = Vec::new();
        for path in ["/u/", "/r/", "/dead/", "/if/?a=1", "/local/"] {
            let head = ask(port, path, "h");
            let status = head.split(' ').nth(1).unwrap_or("").to_owned();
            let added: Vec<String> = head
                .split("\r\n")
                // (The backend's own X-U lines are passed on.)
                .filter(|l| l.starts_with("X-") && !l.starts_with("X-U:"))
                .map(|l| {
                    l.replace(&backend.to_string(), "BACKEND")
                        .replace(&dead.to_string(), "DEAD")
                })
                .collect();
            lines.push(format!("{path} {status} {added:?}"));
        }
        lines
    };
    let theirs = seen(true);
    assert_eq!(
        theirs[0],
        "/u/ 200 [\"X-A: 127.0.0.1:BACKEND\", \"X-S: 200\", \"X-H: [u1] [back/1] []\", \"X-C: [abc] []\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(
        theirs[1], "/r/ 200 [\"X-A: 127.0.0.1:DEAD, 127.0.0.1:BACKEND\", \"X-S: 502, 200\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(seen(false), theirs);
}

/// `add_header` with the tries' times and bytes, as nginx has them when
/// the response head is in: the last try's response time is `-` and its
/// bytes sent and response length 0 (nginx sets them when the try ends),
/// its bytes received those read so far; an earlier try's (refused, or
/// answered with a status `proxy_next_upstream` lists) as it ended. Times
/// vary from run to run and are compared as `T`.
#[test]
fn upstream_times_and_bytes_in_add_header_as_nginx() {
    let good = answering_backend(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
    });
    let bad = answering_backend(|_| {
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad".to_vec()
    });
    let [dead] = free_ports(1)[..] else {
        unreachable!()
    };
    let added = "add_header X-T \"$upstream_response_time|$upstream_connect_time|$upstream_header_time\" always; \
                 add_header X-B \"$upstream_bytes_sent|$upstream_bytes_received|$upstream_response_length\" always;";
    let seen = |nginx: bool| {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    upstream one {{ server 127.0.0.1:{good}; }}\n\
                 \x20   upstream two {{ server 127.0.0.1:{dead}; server 127.0.0.1:{good}; }}\n\
                 \x20   upstream st {{ server 127.0.0.1:{bad}; server 127.0.0.1:{good}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /one/ {{ proxy_pass http://one; {added} }}\n\
                 \x20       location /two/ {{ proxy_pass http://two; {added} }}\n\
                 \x20       location /st/ {{ proxy_pass http://st; proxy_next_upstream error http_502; {added} }}\n\
                 \x20       location /dead/ {{ proxy_pass http://127.0.0.1:{dead}; {added} }}\n\
                 \x20       location /local/ {{ {added} return 200; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        ["/one/", "/two/", "/st/", "/dead/", "/local/"].map(|path| {
            let head = ask(port, path, "h");
            let status = head.split(' ').nth(1).unwrap_or("").to_owned();
            let added: Vec<String> = head
                .split("\r\n")
                .filter(|l| l.starts_with("X-"))
                .map(times_as_t)
                .collect();
            format!("{path} {status} {added:?}")
        })
    };
    let theirs = seen(true);
    assert_eq!(
        theirs[2], "/st/ 200 [\"X-T: T, -|T, T|T, T\", \"X-B: 50, 0|69, 59|0, 0\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(
        theirs[1], "/two/ 200 [\"X-T: T, -|-, T|-, T\", \"X-B: 0, 0|0, 59|0, 0\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    // The proxy's own 502 ends the try before its headers.
    assert_eq!(
        theirs[3], "/dead/ 502 [\"X-T: T|-|-\", \"X-B: 0|0|0\"]",
        "nginx's, the reference: {theirs:#?}"
    );
    assert_eq!(seen(false), theirs);
}

/// `s` with each time (`0.001`) as `T`.
fn times_as_t(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let fraction = b.get(i + digits + 1..i + digits + 4);
        if digits > 0
            && b.get(i + digits) == Some(&b'.')
            && fraction.is_some_and(|f| f.iter().all(u8::is_ascii_digit))
        {
            out.push('T');
            i += digits + 4;
        } else {
            let n = digits.max(1);
            out.push_str(&s[i..i + n]);
            i += n;
        }
    }
    out
}

/// nginx's hidden upstream headers (`proxy_hide_header`'s defaults):
/// X-Pad and the X-Accel-* headers it reads do not reach the client; other
/// X-Accel-* names do.
#[test]
fn headers_nginx_hides_are_hidden() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if read_head(&mut stream).is_some() {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nX-Pad: p\r\nX-Accel-Buffering: no\r\nX-Accel-Expires: 10\r\n\
                      X-Accel-Limit-Rate: 100000\r\nX-Accel-Charset: utf-8\r\nX-Other: 1\r\n\
                      X-Accel-Other: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        }
    });
    let seen = |nginx: bool| {
        let (_server, port) = up_server(nginx, backend, "location / { proxy_pass http://up; }\n");
        let head = ask(port, "/", "h");
        head.split("\r\n")
            .filter(|l| l.starts_with("X-"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let theirs = seen(true);
    assert_eq!(
        theirs,
        ["X-Other: 1", "X-Accel-Other: 2"],
        "nginx's, the reference"
    );
    assert_eq!(seen(false), theirs);
}

/// A backend answering `GET /NNN-REASON` with the status line `HTTP/1.1
/// NNN REASON` (`_` for a space; no reason after `NNN-` at all).
fn status_backend() -> u16 {
    answering_backend(|target| {
        let (code, reason) = target[1..].split_once('-').unwrap_or(("200", "OK"));
        let line = match reason {
            "" => format!("HTTP/1.1 {code}"),
            r => format!("HTTP/1.1 {code} {}", r.replace('_', " ")),
        };
        format!("{line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    })
}

/// The status line of a proxied answer is the upstream's, as nginx passes
/// it; of an answer the proxy makes, nginx's (`302 Moved Temporarily`).
#[test]
fn status_lines_are_nginx_status_lines() {
    let backend = status_backend();
    let lines = |nginx: bool| {
        let (_server, port) = up_server(
            nginx,
            backend,
            "        location / { proxy_pass http://up; }\n\
             \x20       location /made/ { return 302 /x; }\n\
             \x20       location /made/401 { return 401; }\n\
             \x20       location /made/405 { return 405; }\n\
             \x20       location /made/299 { return 299; }\n\
             \x20       location /made/504 { return 504; }\n",
        );
        [
            "/200-OK",
            "/200-Fine",
            "/302-Found",
            "/302-Moved_Temporarily",
            "/418-I'm_a_teapot",
            "/404-Not_Found",
            "/204-",
            "/made/",
            "/made/401",
            "/made/405",
            "/made/299",
            "/made/504",
        ]
        .iter()
        .map(|path| {
            let head = ask(port, path, "h");
            format!("{path} {}", head.lines().next().unwrap_or(""))
        })
        .collect::<Vec<_>>()
    };
    let ours = lines(false);
    assert_eq!(ours, lines(true), "left: waypost, right: nginx");
    assert!(ours.iter().any(|l| l.ends_with("302 Found")));
    assert!(ours.iter().any(|l| l.ends_with("302 Moved Temporarily")));
}

/// `proxy_hide_header` and `proxy_pass_header` beside nginx: which of an
/// upstream's headers a client gets, through locations that hide more,
/// pass some of nginx's default hidden ones (Server and Date then are the
/// upstream's, and the proxy adds none), or inherit the lists, each on
/// its own.
#[test]
fn hidden_and_passed_headers_as_nginx() {
    let backend = answering_backend(|_| {
        b"HTTP/1.1 200 OK\r\nServer: backend/1.0\r\nDate: Wed, 01 Jan 2025 00:00:00 GMT\r\n\
          X-Powered-By: PHP/8\r\nX-Pad: avoid browser bug\r\nX-Accel-Expires: 10\r\n\
          X-Custom: 1\r\nX-Other: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    });
    let seen = |nginx: bool| {
        let (_server, port) = up_server(
            nginx,
            backend,
            "        proxy_hide_header X-Powered-By;\n\
             \x20       location / { proxy_pass http://up; }\n\
             \x20       location /more/ {\n\
             \x20           proxy_pass http://up;\n\
             \x20           proxy_hide_header X-Custom;\n\
             \x20           proxy_hide_header x-other;\n\
             \x20           location /more/in/ { proxy_pass http://up; proxy_hide_header X-Nothing; }\n\
             \x20       }\n\
             \x20       location /pass/ {\n\
             \x20           proxy_pass http://up;\n\
             \x20           proxy_pass_header Server;\n\
             \x20           proxy_pass_header date;\n\
             \x20           proxy_pass_header X-Pad;\n\
             \x20           location /pass/in/ { proxy_pass http://up; proxy_hide_header X-Custom; }\n\
             \x20       }\n\
             \x20       location /both/ { proxy_pass http://up; proxy_pass_header X-Powered-By; proxy_hide_header Server; proxy_pass_header Server; }\n\
             \x20       location /cl/ { proxy_pass http://up; proxy_hide_header Content-Length; }\n",
        );
        [
            "/",
            "/more/",
            "/more/in/",
            "/pass/",
            "/pass/in/",
            "/both/",
            "/cl/",
        ]
        .iter()
        .map(|path| {
            let head = ask(port, path, "h");
            let mut lines: Vec<String> = head
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty() && !l.starts_with("Connection"))
                .map(|l| {
                    let l = l
                        .replace("nginx/1.22.1", "PROXY")
                        .replace("waypost", "PROXY");
                    // The proxy's own Date is now; an upstream's is fixed.
                    if l.starts_with("Date:") && !l.contains("2025") {
                        "Date: (the proxy's)".to_owned()
                    } else {
                        l
                    }
                })
                .collect();
            lines.sort();
            format!("{path}: {}", lines.join(" | "))
        })
        .collect::<Vec<_>>()
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(
        ours.iter().any(|l| l.contains("Server: backend/1.0")),
        "{ours:?}"
    );
    assert!(ours.iter().any(|l| l.contains("X-Powered-By")), "{ours:?}");
}

/// `absolute_redirect`, `port_in_redirect` and `server_name_in_redirect`
/// beside nginx: the Location of a `return` redirect, and of one
/// `proxy_redirect` made a path.
#[test]
fn redirect_styles_as_nginx() {
    let backend = redirecting_backend();
    // `/b` in hex: the backend's Location.
    let to = "http://up/b"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let seen = |nginx: bool| {
        let (_server, port) = up_server(
            nginx,
            backend,
            "        location /r { return 302 /x; }\n\
             \x20       location /abs { absolute_redirect off; return 302 /x; }\n\
             \x20       location /port { port_in_redirect off; return 302 /x; }\n\
             \x20       location /sn { server_name_in_redirect on; return 302 /x; }\n\
             \x20       location /p/ { proxy_pass http://up; proxy_redirect http://up/ /new/; port_in_redirect off; }\n\
             \x20       location /pa/ { proxy_pass http://up; proxy_redirect http://up/ /new/; absolute_redirect off; }\n",
        );
        let mut lines = Vec::new();
        for path in ["/r", "/abs", "/port", "/sn"] {
            for host in ["h", "h:81"] {
                let head = ask(port, path, host);
                let location = head
                    .lines()
                    .find(|l| l.starts_with("Location:"))
                    .unwrap_or("none")
                    .replace(&format!(":{port}"), ":PORT");
                lines.push(format!("{path} {host}: {location}"));
            }
        }
        for path in ["/p/", "/pa/"] {
            let head = ask(port, &format!("{path}?l={to}"), "h");
            let location = head
                .lines()
                .find(|l| l.starts_with("Location:"))
                .unwrap_or("none")
                .replace(&format!(":{port}"), ":PORT");
            lines.push(format!("{path}: {location}"));
        }
        lines
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(ours.iter().any(|l| l.ends_with("Location: /x")), "{ours:?}");
}

/// The Set-Cookie lines of the answers to `paths`, each with its path.
fn set_cookies(port: u16, paths: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for path in paths {
        let head = ask(port, path, "front.test");
        for l in head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie"))
        {
            lines.push(format!("{path}: {l}"));
        }
    }
    lines
}

/// `proxy_cookie_domain` and `proxy_cookie_path` beside nginx: which
/// Set-Cookie attributes are rewritten (domains whole, without case or
/// leading dot; paths by their start; regexes with their groups;
/// variables), and how a rewritten line is written again.
#[test]
fn cookie_attributes_rewritten_as_nginx() {
    let backend = answering_backend(|_| {
        b"HTTP/1.1 200 OK\r\n\
          Set-Cookie: a=1; Domain=backend.internal; Path=/app/x\r\n\
          Set-Cookie: b=2; path=/APP/; domain=.backend.internal; HttpOnly\r\n\
          Set-Cookie: c=3; Path=/other\r\n\
          Set-Cookie: d=4;Domain=BACKEND.internal;path=/app/\r\n\
          Set-Cookie: e=5; domain=notbackend.internal\r\n\
          Set-Cookie: f=6;Path=/nomatch;Secure\r\n\
          Set-Cookie: g=7 ;  domain = backend.internal ; Path=/app/\r\n\
          Set-Cookie: h=8; Path=/app\r\n\
          Set-Cookie: sess; Path=/app/x\r\n\
          Set-Cookie: a2 = b ; Path=/app/y\r\n\
          Set-Cookie: i=9; Domain=.Backend.INTERNAL\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    });
    let seen = |nginx: bool| {
        let (_server, port) = up_server(
            nginx,
            backend,
            "        location / { proxy_pass http://up; proxy_cookie_domain backend.internal example.com; proxy_cookie_path /app/ /; }\n\
             \x20       location /two/ { proxy_pass http://up; proxy_cookie_domain ~\\.internal$ .example.org; proxy_cookie_path off; }\n\
             \x20       location /three/ {\n\
             \x20           proxy_pass http://up;\n\
             \x20           proxy_cookie_domain .Backend.Internal $host;\n\
             \x20           proxy_cookie_path ~^/app/(.*)$ /new/$1;\n\
             \x20           proxy_cookie_path /APP /z;\n\
             \x20       }\n\
             \x20       location /four/ { proxy_pass http://up; proxy_cookie_domain backend.internal .example.net; }\n",
        );
        set_cookies(port, &["/x", "/two/x", "/three/x", "/four/x"])
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(
        ours.iter().any(|l| l.contains("Domain=example.com")),
        "{ours:?}"
    );
}

/// `proxy_cookie_flags` beside nginx: `secure`, `httponly` and
/// `samesite=` added where missing (in that order), a SameSite of another
/// value replaced, `no...` flags removing them; the cookie named without
/// case, by a regex (without case too) or by a variable; the first
/// matching line only; with `proxy_cookie_path`; and `off`.
#[test]
fn cookie_flags_set_as_nginx() {
    let backend = answering_backend(|_| {
        b"HTTP/1.1 200 OK\r\n\
          Set-Cookie: a=1; Path=/\r\n\
          Set-Cookie: b=2; secure; HttpOnly; SameSite=None\r\n\
          Set-Cookie: c=3;Path=/x;samesite=lax\r\n\
          Set-Cookie: d=4\r\n\
          Set-Cookie: e=5; Secure\r\n\
          Set-Cookie: ids=6; path=/; HTTPONLY\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    });
    let seen = |nginx: bool| {
        let (_server, port) = up_server(
            nginx,
            backend,
            "        location /1 { proxy_pass http://up; proxy_cookie_flags ~ secure httponly samesite=strict; }\n\
             \x20       location /2 { proxy_pass http://up; proxy_cookie_flags B nosecure nohttponly nosamesite; proxy_cookie_flags ~^I secure; }\n\
             \x20       location /3 { proxy_pass http://up; proxy_cookie_flags c samesite=none; proxy_cookie_flags ~ samesite=lax bogus; }\n\
             \x20       location /4 { proxy_pass http://up; proxy_cookie_flags ~ secure; proxy_cookie_path / /p/; }\n\
             \x20       location /5 { proxy_pass http://up; proxy_cookie_flags $arg_n secure; }\n\
             \x20       location /6 { proxy_pass http://up; proxy_cookie_flags off; }\n",
        );
        set_cookies(port, &["/1", "/2", "/3", "/4", "/5?n=D", "/6"])
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(
        ours.iter()
            .any(|l| l == "/1: Set-Cookie: c=3; Path=/x; SameSite=Strict; Secure; HttpOnly"),
        "{ours:?}"
    );
}

/// The answer's header lines come in nginx's order: Server and Date, then
/// Content-Type, Content-Length, Last-Modified and a Location made
/// absolute at its header filter's fixed places, Transfer-Encoding and
/// Connection, then the others as they came (the upstream's, then the
/// location's); the fixed ones spelled as nginx spells them.
/// The names of a head's lines, in order, after its status line.
fn header_names(head: &str) -> String {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn header_lines_in_nginx_order() {
    let backend = answering_backend(|target| match target {
        "/redirect" => b"HTTP/1.1 302 Found\r\nx-a: 1\r\ncontent-type: text/plain\r\n\
            Location: http://up/foo\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n\r\n\
            2\r\nok\r\n0\r\n\r\n"
            .to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: back\r\n\
            X-A: 1\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
            content-type: text/plain\r\nETag: \"e\"\r\ncontent-length: 2\r\nX-B: 2\r\n\r\nok"
            .to_vec(),
    });
    let files = TempDir::new("header-order");
    files.write("s/f.txt", "hello");
    let locations = format!(
        "        location /up {{ proxy_pass http://up; add_header X-Added 1; }}\n\
         \x20       location /redirect {{ proxy_pass http://up; }}\n\
         \x20       location /r {{ return 200 \"x\"; }}\n\
         \x20       location /moved {{ return 301 /x; }}\n\
         \x20       location /s/ {{ root {}; }}\n\
         \x20       location /gz {{ proxy_pass http://up; gzip on; gzip_vary on; \
                    gzip_min_length 1; gzip_types text/plain; add_header Vary Cookie; }}\n\
         \x20       location /set {{ proxy_pass http://up; add_header ETag \"z\"; \
                    add_header Last-Modified \"\"; add_header X-Added 1; }}\n\
         \x20       location /sv/ {{ alias {}/s/; add_header X-A 1; \
                    add_header Last-Modified \"Thu, 01 Jan 2026 00:00:00 GMT\"; add_header ETag \"y\"; }}\n\
         \x20       location /sn/ {{ alias {}/s/; add_header X-A 1; add_header Last-Modified \"\"; }}\n\
         \x20       location /sg/ {{ alias {}/s/; gzip on; gzip_types text/plain; gzip_min_length 1; \
                    add_header X-A 1; }}\n\
         \x20       location /se/ {{ alias {}/s/; expires 1h; }}\n\
         \x20       location /as {{ add_header Server s; add_header Date d; return 200 \"x\"; }}\n\
         \x20       location /ps {{ proxy_pass http://up; proxy_pass_header Server; }}\n",
        files.path.display(),
        files.path.display(),
        files.path.display(),
        files.path.display(),
        files.path.display()
    );
    let names = |nginx: bool| {
        let (_server, port) = up_server(nginx, backend, &locations);
        let paths = ["/up", "/redirect", "/r", "/moved", "/s/f.txt", "/gz"];
        let set = ["/set", "/sv/f.txt", "/sn/f.txt", "/se/f.txt", "/as", "/ps"];
        paths
            .iter()
            .chain(&set)
            .map(|path| format!("{path}: {}", header_names(&ask(port, path, "h"))))
            .chain(std::iter::once(format!(
                "/sg/f.txt gzip: {}",
                header_names(&ask_with(
                    port,
                    "/sg/f.txt",
                    "h",
                    "Accept-Encoding: gzip\r\n"
                ))
            )))
            .collect::<Vec<String>>()
    };
    let ours = names(false);
    assert_eq!(ours, names(true));
    assert_eq!(
        ours[0],
        "/up: Server, Date, Content-Type, Content-Length, Connection, X-A, Last-Modified, ETag, X-B, X-Added"
    );
    // `gzip_vary`'s line right after Connection, `add_header`'s among the
    // others.
    assert_eq!(
        ours[5],
        "/gz: Server, Date, Content-Type, Content-Length, Connection, Vary, X-A, Last-Modified, ETag, X-B, Vary"
    );
    // `add_header` sets an ETag and a Last-Modified rather than adding
    // one: the upstream's in place, a file's ETag in place and its
    // Last-Modified among the others (after which comes Accept-Ranges);
    // empty, it removes the line.
    assert_eq!(
        ours[6],
        "/set: Server, Date, Content-Type, Content-Length, Connection, X-A, ETag, X-B, X-Added"
    );
    assert_eq!(
        ours[7],
        "/sv/f.txt: Server, Date, Content-Type, Content-Length, Connection, ETag, X-A, Last-Modified, Accept-Ranges"
    );
    assert_eq!(
        ours[9],
        "/se/f.txt: Server, Date, Content-Type, Content-Length, Last-Modified, Connection, ETag, Expires, Cache-Control, Accept-Ranges"
    );
    // `add_header Server` (and `Date`) adds a line after ours; the upstream's passed
    // on is sent instead of ours, in its place.
    assert_eq!(
        ours[10],
        "/as: Server, Date, Content-Type, Content-Length, Connection, Server, Date"
    );
    assert_eq!(
        ours[11],
        "/ps: Date, Content-Type, Content-Length, Connection, Server, X-A, Last-Modified, ETag, X-B"
    );
    // Lines a filter removes leave the others in their order.
    assert_eq!(
        ours[12],
        "/sg/f.txt gzip: Server, Date, Content-Type, Last-Modified, Transfer-Encoding, Connection, ETag, X-A, Content-Encoding"
    );
}

/// Over HTTP/2 (h2c) the lines come in the order of nginx's HTTP/2 header
/// filter too: server, date, content-type, content-length, last-modified
/// and a location made absolute, gzip_vary's vary, then the upstream's,
/// then the location's. (Lines of one name come together: hyper sends a
/// map.)
#[test]
fn header_lines_in_nginx_order_over_http2() {
    let backend = answering_backend(|target| match target {
        // An absolute Location nothing rewrites stays among the others.
        "/away" => b"HTTP/1.1 302 Found\r\nX-A: 1\r\nLocation: http://other.example/\r\n\
            content-length: 0\r\n\r\n"
            .to_vec(),
        // One `proxy_redirect` rewrites (to another absolute URL), or that
        // no rule looks at (`proxy_redirect off`).
        "/pr" | "/proff" => b"HTTP/1.1 302 Found\r\nX-A: 1\r\nLocation: http://up/foo\r\n\
            content-length: 0\r\n\r\n"
            .to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: back\r\n\
            X-A: 1\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
            content-type: text/plain\r\nETag: \"e\"\r\ncontent-length: 2\r\nX-B: 2\r\n\r\nok"
            .to_vec(),
    });
    let locations = "        location /up { proxy_pass http://up; add_header X-Added 1; }\n\
         \x20       location /away { proxy_pass http://up; }\n\
         \x20       location /r { add_header X-Added 1; return 200 \"x\"; }\n\
         \x20       location /moved { return 301 /x; }\n\
         \x20       location /gz { proxy_pass http://up; gzip on; gzip_vary on; \
                    gzip_min_length 1; gzip_types text/plain; add_header X-Added 1; }\n\
         \x20       location /pr { proxy_pass http://up; proxy_redirect http://up/ http://other/; }\n\
         \x20       location /ret { absolute_redirect off; add_header X-Added 1; return 302 /x; }\n\
         \x20       location /proff { proxy_pass http://up; proxy_redirect off; }\n\
         \x20       location /as { add_header Server s; return 200 \"x\"; }\n";
    let names = |nginx: bool| {
        let (_server, port) = up_server_on(nginx, backend, locations, " http2");
        [
            "/up", "/r", "/moved", "/gz", "/away", "/pr", "/ret", "/proff", "/as",
        ]
        .iter()
        .map(|path| {
            let out = std::process::Command::new("curl")
                .args(["-s", "-D-", "-o/dev/null", "--http2-prior-knowledge"])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .expect("curl");
            let head = String::from_utf8_lossy(&out.stdout);
            format!("{path}: {}", header_names(&head))
        })
        .collect::<Vec<String>>()
    };
    let mut ours = names(false);
    let mut theirs = names(true);
    // `add_header Server`: ours and the added one, as nginx sends, but
    // together (hyper sends lines of one name together).
    assert_eq!(
        ours.pop().as_deref(),
        Some("/as: server, server, date, content-type, content-length")
    );
    assert_eq!(
        theirs.pop().as_deref(),
        Some("/as: server, date, content-type, content-length, server")
    );
    assert_eq!(ours, theirs);
    assert_eq!(
        ours[0],
        "/up: server, date, content-type, content-length, x-a, last-modified, etag, x-b, x-added"
    );
    assert_eq!(
        ours[3],
        "/gz: server, date, content-type, content-length, vary, x-a, last-modified, etag, x-b, x-added"
    );
    assert_eq!(
        ours[4],
        "/away: server, date, content-length, x-a, location"
    );
    // One `proxy_redirect` rewrote, or a `return` under
    // `absolute_redirect off`, goes to the fixed place all the same.
    assert_eq!(ours[5], "/pr: server, date, content-length, location, x-a");
    assert_eq!(
        ours[6],
        "/ret: server, date, content-type, content-length, location, x-added"
    );
    // Without rules, an upstream's Location that is not a path is the
    // answer's own too (as a FastCGI application's).
    assert_eq!(
        ours[7],
        "/proff: server, date, content-length, location, x-a"
    );
}
