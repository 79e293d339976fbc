//! `client_max_body_size`, `client_header_timeout`, `client_body_timeout`
//! side by side with nginx 1.22 on raw sockets: the 413 for a body past
//! the limit (announced by Content-Length, or a chunked one growing past
//! it), and the silent close when a head or a body stops coming.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, wrap_http, Server};

/// A backend that takes connections and reads them without answering:
/// waypost streams a body to it, so the body's reads are what wait.
fn silent_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

fn conf(port: u16, backend: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "\x20   client_header_timeout 1s;\n\
             \x20   client_body_timeout 1s;\n\
             \x20   client_max_body_size 10;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{backend}; proxy_http_version 1.1; }}\n\
             \x20       location /small {{ client_max_body_size 5; return 200 ok; }}\n\
             \x20       location /any {{ client_max_body_size 0; return 200 ok; }}\n\
             \x20       location /inner {{\n\
             \x20           client_max_body_size 100;\n\
             \x20           location /inner/deep {{ return 200 ok; }}\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Sends `data`, then reads until the server closes or the response
/// (head and Content-Length body) is complete; at most 10 s.
fn exchange(port: u16, data: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s.write_all(data).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, true),
        }
        if complete(&out) {
            return (out, false);
        }
    }
    (out, false)
}

fn complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    out.len() >= end + 4 + len
}

fn first_line(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    text.lines().next().unwrap_or("").to_owned()
}

fn header(out: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let head = text.split("\r\n\r\n").next()?.to_owned();
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn body(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn pair() -> (Server, Server, u16, u16) {
    let ports = free_ports(2);
    let backend = silent_backend();
    let nginx = Server::nginx(&conf(ports[0], backend, true), &ports[..1]);
    let waypost = Server::waypost(&conf(ports[1], backend, false), &ports[1..]);
    (nginx, waypost, ports[0], ports[1])
}

#[test]
fn content_length_past_the_limit_is_413_as_nginx() {
    let (_n, _w, np, wp) = pair();
    let cases: &[(&str, &[u8], &str)] = &[
        // Server level, inherited from http: 11 > 10.
        (
            "over the server's limit",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            "HTTP/1.1 413 Request Entity Too Large",
        ),
        // The location's own limit applies before its `return`.
        (
            "over the location's limit",
            b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 413 Request Entity Too Large",
        ),
        (
            "at the location's limit",
            b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345",
            "HTTP/1.1 200 OK",
        ),
        (
            "no limit",
            b"POST /any HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
            "HTTP/1.1 200 OK",
        ),
        // Inherited by a nested location.
        (
            "nested location inherits",
            b"POST /inner/deep HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n",
            "HTTP/1.1 200 OK",
        ),
        (
            "nested location over",
            b"POST /inner/deep HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
            "HTTP/1.1 413 Request Entity Too Large",
        ),
    ];
    for (what, req, want) in cases {
        let (n_out, _) = exchange(np, req);
        let (w_out, _) = exchange(wp, req);
        assert_eq!(first_line(&n_out), *want, "nginx, {what}");
        assert_eq!(first_line(&w_out), *want, "waypost, {what}");
        if want.contains("413") {
            assert_eq!(header(&n_out, "connection").as_deref(), Some("close"));
            assert_eq!(
                header(&w_out, "connection").as_deref(),
                Some("close"),
                "waypost, {what}"
            );
            assert!(body(&w_out).contains("<title>413 Request Entity Too Large</title>"));
            assert_eq!(
                header(&n_out, "content-type"),
                header(&w_out, "content-type")
            );
        }
    }
}

#[test]
fn chunked_body_growing_past_the_limit_is_413_as_nginx() {
    let (_n, _w, np, wp) = pair();
    let req = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n012345\r\n";
    for port in [np, wp] {
        let (out, _) = exchange(port, req);
        assert_eq!(
            first_line(&out),
            "HTTP/1.1 413 Request Entity Too Large",
            "port {port}"
        );
        assert_eq!(header(&out, "connection").as_deref(), Some("close"));
    }
}

/// Sends `data` (which stops short) to nginx and waypost: both close the
/// connection without an answer.
fn closed_without_answer(data: &[u8]) {
    let (_n, _w, np, wp) = pair();
    for port in [np, wp] {
        let (out, closed) = exchange(port, data);
        assert!(closed, "port {port}: the connection stays open");
        assert!(
            out.is_empty(),
            "port {port}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn header_timeout_closes_without_answer_as_nginx() {
    closed_without_answer(b"GET / HTTP/1.1\r\nHost: x\r\n");
}

#[test]
fn body_timeout_closes_without_answer_as_nginx() {
    closed_without_answer(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123");
}

/// `client_header_timeout` runs from accept, not from the first byte: a
/// client silent for most of it, then trickling header lines, is closed
/// when the timeout from accept (1 s) ends, not a full timeout after its
/// first byte.
#[test]
fn header_timeout_counts_from_accept_as_nginx() {
    let (_n, _w, np, wp) = pair();
    for port in [np, wp] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let connected = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        // Quiet for most of the timeout: nothing is read, so the read
        // timeouts only pace the loop.
        let mut line = 0;
        let mut chunk = [0u8; 64];
        let closed_at = loop {
            if connected.elapsed() >= Duration::from_millis(800) {
                let text = if line == 0 {
                    "GET / HTTP/1.1\r\n".to_owned()
                } else {
                    format!("X-{line}: y\r\n")
                };
                line += 1;
                if s.write_all(text.as_bytes()).is_err() {
                    break connected.elapsed();
                }
            }
            match s.read(&mut chunk) {
                Ok(0) => break connected.elapsed(),
                Ok(n) => panic!("port {port}: answered {:?}", &chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break connected.elapsed(),
            }
            assert!(
                connected.elapsed() < Duration::from_secs(10),
                "port {port}: never closed"
            );
        };
        // From the first byte (at 0.8 s) it would be 1.8 s.
        assert!(
            closed_at < Duration::from_millis(1500),
            "port {port}: closed {closed_at:?} after accept"
        );
    }
}

/// `large_client_header_buffers 2 1k`: a request line over 1k is 414, a
/// header line over 1k or a head over both buffers is 400, as nginx.
#[test]
fn large_client_header_buffers_set_the_limits_as_nginx() {
    let ports = free_ports(2);
    let backend = silent_backend();
    let conf = |port: u16, nginx: bool| {
        conf(port, backend, nginx).replace(
            "client_header_timeout 1s;",
            "client_header_timeout 1s;\n    large_client_header_buffers 2 1k;",
        )
    };
    let _n = Server::nginx(&conf(ports[0], true), &ports[..1]);
    let _w = Server::waypost(&conf(ports[1], false), &ports[1..]);
    let long_line = format!(
        "GET /small?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(1100)
    );
    let fits = format!("GET /small?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(900));
    let long_header = format!(
        "GET /small HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(1100)
    );
    let many = format!(
        "GET /small HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..40)
            .map(|i| format!("X-{i:02}: {}\r\n", "a".repeat(100)))
            .collect::<String>()
    );
    for port in [ports[0], ports[1]] {
        for (name, raw, status) in [
            ("long line", &long_line, "414"),
            ("line that fits", &fits, "200"),
            ("long header", &long_header, "400"),
            ("head over both buffers", &many, "400"),
        ] {
            let (out, _) = exchange(port, raw.as_bytes());
            let first = first_line(&out);
            assert!(
                first.starts_with(&format!("HTTP/1.1 {status}")),
                "port {port} (nginx {}), {name}: {first:?}",
                port == ports[0]
            );
        }
    }
}

/// A backend answering every request with a `len`-byte body, written as
/// fast as the proxy takes it.
fn big_backend(len: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                if !matches!(stream.read(&mut head), Ok(n) if n > 0) {
                    return;
                }
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                let block = vec![b'x'; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(block.len());
                    if stream.write_all(&block[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    port
}

/// `send_timeout`: a client that stops reading a large response is
/// closed after the timeout; the access log records the request with the
/// body bytes actually sent, and the client sees a short body, then the
/// end of the connection (never a falsely complete one). Side by side
/// with nginx (which buffers the upstream's body to a file meanwhile).
#[test]
fn send_timeout_closes_a_client_that_stops_reading_as_nginx() {
    const LEN: usize = 32 << 20;
    let backend = big_backend(LEN);
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = wrap_http(
            &format!(
                "\x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       send_timeout 1s;\n\
                 \x20       access_log logs/access.log;\n\
                 \x20       location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        // A small receive window, so the server's writes stall soon.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        socket.connect(&addr.into()).expect("connect");
        let mut s: TcpStream = socket.into();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        // Not reading: the request ends when send_timeout does.
        let line = server.wait_lines("logs/access.log", 1).remove(0);
        let fields: Vec<&str> = line
            .split('"')
            .nth(2)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(fields.first(), Some(&"200"), "nginx {nginx}: {line}");
        let logged: usize = fields.get(1).and_then(|n| n.parse().ok()).unwrap_or(LEN);
        assert!(logged < LEN, "nginx {nginx}: {line}");
        // Then the client reads what was sent and the close.
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got);
        let head = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        assert!(
            got.len() - head < LEN,
            "nginx {nginx}: a complete body ({end:?})"
        );
    }
}

/// 2,000 clients sending a head one byte a second: the others are served
/// meanwhile, and every slow one is closed without an answer at
/// `client_header_timeout`, as nginx. (How much they delay a normal
/// request is measured by bench/slowloris.py, not asserted here.)
#[test]
fn two_thousand_slow_clients_are_closed_at_the_header_timeout_as_nginx() {
    const SLOW: usize = 2000;
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n";
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = ok_server("\x20   client_header_timeout 3s;\n", port, nginx)
            .replace("worker_connections 256;", "worker_connections 4096;");
        let _server = Server::either(nginx, &conf, &[port]);
        let mut slow: Vec<Option<TcpStream>> = (0..SLOW)
            .map(|_| {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_nonblocking(true).expect("nonblocking");
                Some(s)
            })
            .collect();
        let started = Instant::now();
        let mut sent = 0;
        let mut served = 0;
        let mut chunk = [0u8; 256];
        while slow.iter().any(Option::is_some) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nginx {nginx}: {} slow clients still open",
                slow.iter().flatten().count()
            );
            // A byte a second from each.
            if started.elapsed() >= Duration::from_secs(sent as u64) && sent < head.len() {
                for s in slow.iter_mut().flatten() {
                    let _ = s.write(&head[sent..sent + 1]);
                }
                sent += 1;
            }
            for slot in slow.iter_mut() {
                let Some(s) = slot else { continue };
                match s.read(&mut chunk) {
                    Ok(0) => *slot = None,
                    Ok(n) => panic!("nginx {nginx}: a slow client got {:?}", &chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => *slot = None,
                }
            }
            // Everyone else is served meanwhile.
            let (out, _) = exchange(
                port,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(first_line(&out), "HTTP/1.1 200 OK", "nginx {nginx}");
            served += 1;
            // Pacing only: the loop waits on nothing.
            std::thread::sleep(Duration::from_millis(50));
        }
        // Closed by the timeout, not by a full head (which has 45 bytes).
        assert!(sent < head.len(), "nginx {nginx}: {sent} bytes sent");
        assert!(served > 0);
    }
}

/// Reads from `s` until the server closes it (`true`) or `within` passes.
fn closed_within(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// `keepalive_requests 3`: the third answer says `Connection: close` and
/// the connection ends; `keepalive_timeout 1s`: an idle connection is
/// closed, as nginx.
#[test]
fn keepalive_requests_and_timeout_as_nginx() {
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = ok_server(
            "\x20   keepalive_requests 3;\n\x20   keepalive_timeout 1s;\n",
            port,
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answers = Vec::new();
        for _ in 0..3 {
            let out = request_on(&mut s)
                .unwrap_or_else(|| panic!("nginx {nginx}: closed after {} answers", answers.len()));
            answers.push(header(&out, "connection"));
        }
        assert_eq!(
            answers,
            [
                Some("keep-alive".to_owned()),
                Some("keep-alive".to_owned()),
                Some("close".to_owned())
            ],
            "nginx {nginx}"
        );
        assert!(closed_within(&s, Duration::from_secs(5)), "nginx {nginx}");
        // Idle past keepalive_timeout.
        let s = keep_alive_request(port)
            .unwrap_or_else(|| panic!("nginx {nginx}: closed before the answer"));
        assert!(
            closed_within(&s, Duration::from_secs(5)),
            "nginx {nginx}: idle connection kept past keepalive_timeout"
        );
    }
}

/// `keepalive_time 1s`: answers on a connection younger than that keep
/// it; the first answer after it says `Connection: close` and the
/// connection ends, as nginx.
#[test]
fn keepalive_time_ends_an_old_connection_as_nginx() {
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = ok_server("\x20   keepalive_time 1s;\n", port, nginx);
        let _server = Server::either(nginx, &conf, &[port]);
        let opened = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let out = request_on(&mut s).unwrap_or_else(|| panic!("nginx {nginx}: closed"));
        assert_eq!(header(&out, "connection").as_deref(), Some("keep-alive"));
        // The connection's age is what is tested: the next request comes
        // once it is past keepalive_time.
        std::thread::sleep(Duration::from_millis(1200).saturating_sub(opened.elapsed()));
        let out = request_on(&mut s).unwrap_or_else(|| panic!("nginx {nginx}: closed early"));
        assert_eq!(
            header(&out, "connection").as_deref(),
            Some("close"),
            "nginx {nginx}"
        );
        assert!(closed_within(&s, Duration::from_secs(5)), "nginx {nginx}");
    }
}

/// `keepalive_timeout` counts from a connection's last answer: a
/// connection busy again before the first idle period ran out is closed a
/// whole timeout after its second answer, not at the first period's end
/// (waypost leaves the connection's timer where it was while the
/// connection is busy, and moves it on when it fires early).
#[test]
fn keepalive_timeout_counts_from_the_last_answer_as_nginx() {
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = ok_server("\x20   keepalive_timeout 500ms;\n", port, nginx);
        let _server = Server::either(nginx, &conf, &[port]);
        let mut s = keep_alive_request(port)
            .unwrap_or_else(|| panic!("nginx {nginx}: closed before the first answer"));
        // Not a wait for anything: the second request comes 300 ms into
        // the first idle period, which would end 200 ms into the second.
        std::thread::sleep(Duration::from_millis(300));
        request_on(&mut s)
            .unwrap_or_else(|| panic!("nginx {nginx}: closed before the second answer"));
        let answered = Instant::now();
        assert!(
            closed_within(&s, Duration::from_secs(5)),
            "nginx {nginx}: kept open"
        );
        let idle = answered.elapsed();
        assert!(
            idle >= Duration::from_millis(450),
            "nginx {nginx}: closed {idle:?} after the second answer"
        );
    }
}

/// The configuration of one server on `port` answering `200 ok`, with
/// `directives` at the http level, for nginx or waypost.
fn ok_server(directives: &str, port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "{directives}\x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 ok; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// One request on a new keep-alive connection; `None` if the server
/// closed it instead of answering.
fn keep_alive_request(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    request_on(&mut s)?;
    Some(s)
}

/// `GET /` on `s` and its whole answer; `None` if the server closed (or
/// failed) instead of answering.
fn request_on(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !complete(&out) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    Some(out)
}

/// Polls `server`'s error log until it has `text`.
fn wait_log(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.read("logs/error.log");
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {text:?} in:\n{log}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Past `worker_connections`, as nginx: idle connections (keep-alive, or
/// new without a byte yet) are closed to make room for new ones, with a
/// warning; when every connection is busy, a new one is closed without an
/// answer and the alert is logged; once room is back, new ones are served.
#[test]
fn connections_past_worker_connections_as_nginx() {
    let ports = free_ports(2);
    for (port, nginx) in [(ports[0], true), (ports[1], false)] {
        let conf = ok_server("", port, nginx)
            .replace("worker_connections 256;", "worker_connections 8;")
            .replace(
                "error_log logs/error.log;",
                "error_log logs/error.log warn;",
            );
        let server = Server::either(nginx, &conf, &[port]);
        // Twelve keep-alive clients one after another: all served, the
        // oldest idle ones closed for the newer.
        let kept: Vec<TcpStream> = (0..12)
            .map(|i| {
                keep_alive_request(port)
                    .unwrap_or_else(|| panic!("nginx {nginx}: client {i} refused"))
            })
            .collect();
        wait_log(
            &server,
            "8 worker_connections are not enough, reusing connections",
        );
        let closed = kept
            .iter()
            .filter(|s| closed_within(s, Duration::from_millis(500)))
            .count();
        assert!(
            closed >= 4,
            "nginx {nginx}: {closed} idle connections closed"
        );
        drop(kept);
        // Busy clients (a head begun): once every connection is one,
        // nothing can be reused and a new connection is refused. (A
        // client whose bytes the server has not read yet still counts as
        // idle, so clients are added until the alert comes.)
        let mut busy = Vec::new();
        let log = 'more: loop {
            assert!(busy.len() < 100, "nginx {nginx}: no alert");
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let _ = s.write_all(b"GET / HTTP/1.1\r\n");
            busy.push(s);
            // The log is written a moment after the refusal.
            let deadline = Instant::now() + Duration::from_millis(100);
            while Instant::now() < deadline {
                let log = server.read("logs/error.log");
                if log.contains("[alert]") {
                    break 'more log;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(
            log.contains("8 worker_connections are not enough\n"),
            "nginx {nginx}: {log}"
        );
        drop(busy);
        // Room again once they are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while keep_alive_request(port).is_none() {
            assert!(Instant::now() < deadline, "nginx {nginx}: no room again");
        }
    }
}
