//! The client side of HTTP/1.x as nginx 1.22 reads it: requests that
//! could be framed two ways (request smuggling) are refused before
//! anything reaches the backend, and the rest of the protocol works on
//! raw sockets: pipelining, `Expect: 100-continue`, HEAD, HTTP/1.0
//! keep-alive, chunked bodies both ways.
//!
//! The statuses are nginx's, checked by hand against nginx 1.22.1
//! (`tests/variables.rs` compares the head checks side by side).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waypost_tests::{free_port, wrap_http, Server};

/// A backend that records every byte it receives and answers each
/// request (Content-Length or chunked body) with
/// `METHOD PATH BODY`; `/chunked` answers with a chunked body.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || backend_conn(stream, &log));
            }
        });
        Recorder { port, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().expect("lock")).into_owned()
    }
}

/// Bytes from `stream` into `pending` until `pending` has `n`.
fn fill(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    n: usize,
    log: Option<&Mutex<Vec<u8>>>,
) -> bool {
    let mut chunk = [0u8; 8192];
    while pending.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => {
                if let Some(log) = log {
                    log.lock().expect("lock").extend_from_slice(&chunk[..k]);
                }
                pending.extend_from_slice(&chunk[..k]);
            }
        }
    }
    true
}

/// Reads up to and including the next `\r\n`.
fn line(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    log: Option<&Mutex<Vec<u8>>>,
) -> Option<String> {
    loop {
        if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
            let l = String::from_utf8_lossy(&pending[..i]).into_owned();
            pending.drain(..i + 2);
            return Some(l);
        }
        let have = pending.len();
        if !fill(stream, pending, have + 1, log) {
            return None;
        }
    }
}

/// A message head: first line and lowercased header names.
fn head(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    log: Option<&Mutex<Vec<u8>>>,
) -> Option<(String, Vec<(String, String)>)> {
    let first = line(stream, pending, log)?;
    let mut headers = Vec::new();
    loop {
        let l = line(stream, pending, log)?;
        if l.is_empty() {
            return Some((first, headers));
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A body framed by `headers`: Content-Length, chunked, or (`to_close`)
/// everything until the connection closes.
fn body(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    headers: &[(String, String)],
    to_close: bool,
    log: Option<&Mutex<Vec<u8>>>,
) -> Option<Vec<u8>> {
    if find(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        loop {
            let size = line(stream, pending, log)?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !line(stream, pending, log)?.is_empty() {}
                return Some(out);
            }
            if !fill(stream, pending, size + 2, log) {
                return None;
            }
            out.extend_from_slice(&pending[..size]);
            pending.drain(..size + 2);
        }
    }
    if let Some(n) = find(headers, "content-length") {
        let n: usize = n.parse().ok()?;
        if !fill(stream, pending, n, log) {
            return None;
        }
        return Some(pending.drain(..n).collect());
    }
    if to_close {
        let _ = stream.read_to_end(pending);
        return Some(std::mem::take(pending));
    }
    Some(Vec::new())
}

fn backend_conn(mut stream: TcpStream, log: &Mutex<Vec<u8>>) {
    let mut pending = Vec::new();
    while let Some((request_line, headers)) = head(&mut stream, &mut pending, Some(log)) {
        let Some(body) = body(&mut stream, &mut pending, &headers, false, Some(log)) else {
            return;
        };
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let text = format!("{method} {path} {}", String::from_utf8_lossy(&body));
        let answer = if path == "/chunked" {
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
                text.len()
            )
        } else if method == "HEAD" {
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n".to_owned()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
        };
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A client response: status, headers, body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// A raw client connection.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    fn new(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("send");
    }

    /// The next response; `head_request` for a HEAD (no body follows).
    fn response(&mut self, head_request: bool) -> Option<Resp> {
        let (status_line, headers) = head(&mut self.stream, &mut self.pending, None)?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let body = if head_request || status == 100 {
            Vec::new()
        } else {
            // Neither length nor chunked: the body ends with the connection.
            let to_close = find(&headers, "content-length").is_none()
                && find(&headers, "transfer-encoding").is_none();
            body(
                &mut self.stream,
                &mut self.pending,
                &headers,
                to_close,
                None,
            )?
        };
        Some(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Whether the server closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).is_ok() && rest.is_empty() && self.pending.is_empty()
    }
}

fn conf(proxy: u16, backend: u16) -> String {
    wrap_http(
        &format!(
            "    keepalive_timeout 30s;\n\
             \x20   upstream b {{ server 127.0.0.1:{backend}; keepalive 4; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
             \x20       location /ret {{ return 200 \"ret\\n\"; }}\n\
             \x20       location /gone {{ return 404; }}\n\
             \x20   }}\n"
        ),
        false,
    )
}

fn setup() -> (Server, Recorder, u16) {
    let backend = Recorder::start();
    let port = free_port();
    let server = Server::waypost(&conf(port, backend.port), &[port]);
    (server, backend, port)
}

#[test]
fn ambiguous_requests_are_refused_before_the_backend() {
    let (_server, backend, port) = setup();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("Content-Length and chunked", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("chunked and Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("duplicate Content-Length, equal", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec(), 400),
        ("duplicate Content-Length, different", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400),
        ("Content-Length list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc".to_vec(), 400),
        ("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc".to_vec(), 400),
        ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(), 400),
        ("Content-Length overflowing", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(), 400),
        ("Transfer-Encoding gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(), 501),
        ("Transfer-Encoding gzip, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(), 501),
        ("Transfer-Encoding chunked, identity", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(), 501),
        ("Transfer-Encoding twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("HTTP/1.0 with chunked", b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(), 400),
        ("chunk size overflowing", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_vec(), 400),
        ("negative chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n".to_vec(), 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(), 400),
        ("obs-fold of Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n chunked\r\n\r\nabc".to_vec(), 400),
        ("bare CR in the request line", b"GET / HTTP/1.1\rHost: x\r\n\r\n".to_vec(), 400),
        ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n".to_vec(), 400),
        ("space before the colon", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505),
        ("request line over 8k", long_line.into_bytes(), 414),
        ("header line over 8k", long_header.into_bytes(), 400),
    ];
    for (name, raw, status) in &cases {
        let mut c = Client::new(port);
        c.send(raw);
        let resp = c
            .response(false)
            .unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(resp.status, *status, "{name}: {resp:?}");
        assert_eq!(find(&resp.headers, "connection"), Some("close"), "{name}");
        assert!(c.closed(), "{name}: the connection stays open");
    }
    let mut c = Client::new(port);
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = c.response(false).expect("response");
    assert_eq!((resp.status, resp.body.as_str()), (200, "GET /after "));
    // The only request the backend ever saw is the last one.
    let seen = backend.received();
    assert!(seen.starts_with("GET /after HTTP/1.1\r\n"), "{seen:?}");
    assert_eq!(seen.matches("HTTP/1.1\r\n").count(), 1, "{seen:?}");
}

#[test]
fn header_too_large_page_is_nginx_s() {
    let (_server, _backend, port) = setup();
    let mut c = Client::new(port);
    let many: String = (0..40)
        .map(|i| format!("X{i}: {}\r\n", "a".repeat(1000)))
        .collect();
    c.send(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes());
    let resp = c.response(false).expect("response");
    assert_eq!(resp.status, 400);
    assert!(
        resp.body
            .contains("<title>400 Request Header Or Cookie Too Large</title>"),
        "{resp:?}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_server, backend, port) = setup();
    let mut c = Client::new(port);
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /ret HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n\
          GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let bodies: Vec<String> = (0..5)
        .map(|_| c.response(false).expect("response").body)
        .collect();
    assert_eq!(
        bodies,
        [
            "GET /1 ",
            "POST /2 hello",
            "ret\n",
            "POST /4 abcde",
            "GET /5 "
        ]
    );
    assert!(c.closed());
    // The chunked body went upstream decoded and framed again, trailers
    // dropped.
    assert!(!backend.received().contains("Trailer: t"));
}

#[test]
fn bare_lf_lines_are_accepted_as_nginx_does() {
    let (_server, _backend, port) = setup();
    let mut c = Client::new(port);
    c.send(b"GET /lf HTTP/1.1\nHost: x\nConnection: close\n\n");
    let resp = c.response(false).expect("response");
    assert_eq!((resp.status, resp.body.as_str()), (200, "GET /lf "));
}

#[test]
fn expect_100_continue() {
    let (_server, _backend, port) = setup();
    // Proxied: 100 Continue when the body is wanted, then the answer.
    let mut c = Client::new(port);
    c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response(false).expect("interim");
    assert_eq!(interim.status, 100);
    c.send(b"body");
    let resp = c.response(false).expect("response");
    assert_eq!((resp.status, resp.body.as_str()), (200, "POST /e body"));
    // Answered without reading the body: 100 Continue anyway, as nginx,
    // the body is read and dropped, and the connection carries on.
    c.send(b"POST /ret HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response(false).expect("interim").status, 100);
    let resp = c.response(false).expect("response");
    assert_eq!((resp.status, resp.body.as_str()), (200, "ret\n"));
    c.send(b"body");
    c.send(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = c.response(false).expect("next");
    assert_eq!((resp.status, resp.body.as_str()), (200, "GET /next "));
    // An error answer (nginx's special response) goes without 100
    // Continue; a body sent anyway is read and dropped, and the
    // connection carries on.
    let mut c = Client::new(port);
    c.send(b"POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response(false).expect("answer").status, 404);
    c.send(b"body");
    c.send(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = c.response(false).expect("next");
    assert_eq!((resp.status, resp.body.as_str()), (200, "GET /next "));
    // HTTP/1.0 gets no interim response.
    let mut c = Client::new(port);
    c.send(b"POST /e10 HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    let resp = c.response(false).expect("response");
    assert_eq!((resp.status, resp.body.as_str()), (200, "POST /e10 hi"));
}

#[test]
fn head_responses_have_no_body() {
    let (_server, _backend, port) = setup();
    let mut c = Client::new(port);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = c.response(true).expect("proxied HEAD");
    assert_eq!(resp.status, 200);
    assert_eq!(find(&resp.headers, "content-length"), Some("7"));
    c.send(b"HEAD /ret HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = c.response(true).expect("HEAD of a return");
    assert_eq!(find(&resp.headers, "content-length"), Some("4"));
    // Nothing but the next response follows on the connection.
    c.send(b"GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = c.response(false).expect("next");
    assert_eq!((resp.status, resp.body.as_str()), (200, "GET /g "));
}

#[test]
fn http10_keep_alive_and_close() {
    let (_server, _backend, port) = setup();
    let mut c = Client::new(port);
    c.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = c.response(false).expect("first");
    assert_eq!(find(&resp.headers, "connection"), Some("keep-alive"));
    assert_eq!(resp.body, "GET /a ");
    // A body of unknown length to HTTP/1.0: delimited by closing.
    c.send(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = c.response(false).expect("second");
    assert_eq!(find(&resp.headers, "transfer-encoding"), None);
    assert_eq!(resp.body, "GET /chunked ");
    assert!(c.closed());
    // Without keep-alive: closed after the answer.
    let mut c = Client::new(port);
    c.send(b"GET /b HTTP/1.0\r\n\r\n");
    let resp = c.response(false).expect("answer");
    assert_eq!(resp.body, "GET /b ");
    assert!(c.closed());
    // HTTP/1.1 gets the same body chunked, and keeps the connection.
    let mut c = Client::new(port);
    c.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = c.response(false).expect("chunked");
    assert_eq!(find(&resp.headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(resp.body, "GET /chunked ");
    c.send(b"GET /ret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).expect("after").body, "ret\n");
}

/// A chunked body for an HTTP/1.0 upstream (the default
/// `proxy_http_version`): read whole, then sent with its length, as
/// nginx's request buffering does. It was never read before: the request
/// waited until the client gave up.
#[test]
fn chunked_body_reaches_an_http10_upstream_with_its_length_as_nginx() {
    for nginx in [false, true] {
        let backend = Recorder::start();
        let port = free_port();
        let conf = wrap_http(
            &format!(
                "    upstream b {{ server 127.0.0.1:{}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location / {{ proxy_pass http://b; }}\n\
                 \x20   }}\n",
                backend.port
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let mut c = Client::new(port);
        c.send(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        let resp = c.response(false).expect("response");
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (200, "POST /c hello world"),
            "nginx {nginx}"
        );
        let seen = backend.received().to_ascii_lowercase();
        assert!(
            seen.starts_with("post /c http/1.0\r\n"),
            "nginx {nginx}: {seen:?}"
        );
        assert!(
            seen.contains("\r\ncontent-length: 11\r\n"),
            "nginx {nginx}: {seen:?}"
        );
        assert!(
            !seen.contains("transfer-encoding"),
            "nginx {nginx}: {seen:?}"
        );
        assert!(
            seen.ends_with("\r\n\r\nhello world"),
            "nginx {nginx}: {seen:?}"
        );
    }
}
