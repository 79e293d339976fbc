//! Broken backends, side by side with nginx: a refused connection, a reset
//! in the middle of a body, an invalid status line, a connection closed
//! before any header, a backend that never answers. The client gets 502 or
//! 504, or, once the response has started, a truncated response it can
//! detect (the connection closes before the body is complete), never a
//! falsely complete one; the failure counts against the peer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use socket2::SockRef;
use waypost_tests::{exchange, free_ports, read_head, wrap_http, Server};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// 200 with Content-Length 100, 10 bytes of body, then a reset.
    ResetMidBody,
    /// 200 with Content-Length 100, 10 bytes of body, then a close (in
    /// the same segment).
    CloseMidBody,
    /// 200 with Content-Length 100, 10 bytes of body, then nothing.
    StallMidBody,
    /// 200 chunked, one chunk, then the connection closes (no last chunk;
    /// in the same segment).
    ChunkedCut,
    /// 200 chunked, one chunk, then a chunk size that is not hex.
    ChunkedBad,
    /// A status line that is not HTTP.
    BadStatus,
    /// The connection closes after the request, before any byte.
    CloseEarly,
    /// The request is read and never answered.
    Hang,
}

/// A backend that answers every connection with `fault`; returns its port.
fn faulty(fault: Fault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut hung = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if read_head(&mut stream).is_none() {
                continue;
            }
            match fault {
                Fault::ResetMidBody => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                    let _ = stream.flush();
                    // Linger 0: the close is a reset.
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
                Fault::CloseMidBody => {
                    // Corked, the close's FIN goes out with the bytes: the
                    // proxy finds the close with the head, whenever it
                    // reads.
                    let _ = SockRef::from(&stream).set_cork(true);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                }
                Fault::StallMidBody => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                    hung.push(stream);
                }
                Fault::ChunkedBad => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n",
                    );
                    hung.push(stream);
                }
                Fault::ChunkedCut => {
                    let _ = SockRef::from(&stream).set_cork(true);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
                    );
                }
                Fault::BadStatus => {
                    let _ = stream.write_all(b"HTTP/1.1 abc\r\n\r\n");
                }
                Fault::CloseEarly => {}
                Fault::Hang => hung.push(stream),
            }
        }
    });
    port
}

/// A raw `GET /` on a new connection: everything the proxy sent until it
/// closed the connection (or 10 s passed).
fn raw_get(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// How each program answers a fault: the status and whether the body was
/// complete (Content-Length reached, or the last chunk seen).
fn answer(fault: Fault, nginx: bool) -> (u16, bool, Vec<u8>) {
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    let backend = faulty(fault);
    let conf = wrap_http(
        &format!(
            "    upstream u {{ server 127.0.0.1:{backend}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       proxy_read_timeout 1s;\n\
             \x20       proxy_http_version 1.1;\n\
             \x20       location / {{ proxy_pass http://u; }}\n\
             \x20   }}\n"
        ),
        nginx,
    );
    let _server = Server::either(nginx, &conf, &[proxy]);
    let response = raw_get(proxy);
    let status = status_of(&response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    let complete = if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.len() == len
    } else if head.contains("transfer-encoding: chunked") {
        body.ends_with("0\r\n\r\n")
    } else {
        // Neither: the body ends at the close, so a cut cannot be told.
        false
    };
    (status, complete, response)
}

/// nginx takes a status line it cannot parse for an HTTP/0.9 response and
/// passes the backend's bytes on as they are; waypost answers 502 (a
/// difference on purpose, in the README): an unparsable answer is not
/// forwarded.
#[test]
fn an_invalid_status_line_is_a_502() {
    let (ours, _, raw) = answer(Fault::BadStatus, false);
    assert_eq!(ours, 502, "{}", String::from_utf8_lossy(&raw));
}

#[test]
fn errors_before_the_response_are_502_or_504_as_nginx() {
    for (fault, status) in [(Fault::CloseEarly, 502), (Fault::Hang, 504)] {
        let (theirs, _, _) = answer(fault, true);
        let (ours, _, raw) = answer(fault, false);
        assert_eq!(
            (ours, theirs),
            (status, status),
            "{fault:?}: {}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[test]
fn a_body_cut_by_the_backend_is_never_passed_on_as_complete() {
    for fault in [Fault::ResetMidBody, Fault::ChunkedCut] {
        let (ours, complete, raw) = answer(fault, false);
        let (theirs, nginx_complete, _) = answer(fault, true);
        assert_eq!((ours, theirs), (200, 200), "{fault:?}");
        assert!(
            !complete,
            "{fault:?}: waypost passed on a complete body: {}",
            String::from_utf8_lossy(&raw)
        );
        assert!(!nginx_complete, "{fault:?}: nginx completed it");
    }
}

/// The error log's line for a body `fault` cuts short, with the ports
/// named `PROXY` and `BACKEND`: `GET path` to a server whose location `/`
/// is `location`, over HTTP/2 (h2c) when `h2`.
fn cut_line(fault: Fault, nginx: bool, location: &str, path: &str, h2: bool) -> Vec<String> {
    let [proxy] = free_ports(1)[..] else {
        unreachable!()
    };
    let backend = faulty(fault);
    let http2 = if h2 { " http2" } else { "" };
    let conf = wrap_http(
        &format!(
            "    upstream u {{ server 127.0.0.1:{backend}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy}{http2};\n\
             \x20       server_name example.com;\n\
             \x20       proxy_read_timeout 1s;\n\
             \x20       proxy_http_version 1.1;\n\
             \x20       {location}\n\
             \x20   }}\n"
        ),
        nginx,
    );
    let server = Server::either(nginx, &conf, &[proxy]);
    if h2 {
        let _ = std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-m",
                "10",
            ])
            .arg(format!("http://127.0.0.1:{proxy}{path}"))
            .output()
            .expect("curl");
    } else {
        exchange(
            proxy,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\n\r\n"),
        );
    }
    // Written before the client's connection closes (nginx) or by the
    // log's writer (waypost): waited for.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = server
            .error_lines(0)
            .into_iter()
            .filter(|l| l.contains("upstream"))
            .map(|l| {
                l.replace(&format!(":{backend}"), ":BACKEND")
                    .replace(&format!(":{proxy}"), ":PROXY")
            })
            .collect();
        if !lines.is_empty() || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// nginx logs a body the upstream cuts short at `error`, naming why
/// (`upstream prematurely closed connection`, a timeout, a reset as its
/// read call's failure, a bad chunk) `while reading upstream`, with the
/// request's context; waypost writes the same line.
#[test]
fn a_body_cut_short_is_logged_as_nginx() {
    let plain = "location / { proxy_pass http://u; }";
    let cases = [
        (Fault::CloseMidBody, plain, "/a?b=1", false),
        (Fault::ResetMidBody, plain, "/", false),
        (Fault::StallMidBody, plain, "/", false),
        (Fault::ChunkedCut, plain, "/", false),
        (Fault::ChunkedBad, plain, "/", false),
        // The upstream's target, not the client's.
        (
            Fault::CloseMidBody,
            "location /a/ { proxy_pass http://u/b/; }",
            "/a/x?y",
            false,
        ),
        (
            Fault::CloseMidBody,
            "location / { rewrite ^ /other break; proxy_pass http://u; }",
            "/first",
            false,
        ),
        (Fault::CloseMidBody, plain, "/h2", true),
    ];
    for (fault, location, path, h2) in cases {
        let theirs = cut_line(fault, true, location, path, h2);
        let ours = cut_line(fault, false, location, path, h2);
        assert_eq!(
            theirs.len(),
            1,
            "{fault:?} {location}: nginx logged {theirs:?}"
        );
        assert_eq!(ours, theirs, "{fault:?} {location} {path} h2={h2}");
    }
    // Unbuffered, nginx reads with recv() and names what it was doing:
    // the body's bytes that came with the head are passed on while it
    // still reads the head (a bad chunk among them: `while reading
    // response header from upstream`); the reads that follow them before
    // the upstream makes it wait are `while sending to client` (the
    // reset or close that came with the head); after a wait (the
    // stall's timeout), `while reading upstream`. A reset cannot go out
    // with the bytes (a corked socket's reset drops them): whether it is
    // there when the proxy reads the head is the scheduler's doing, for
    // nginx as for waypost, so either line is right for it.
    let unbuffered = "location / { proxy_buffering off; proxy_pass http://u; }";
    for fault in [
        Fault::ResetMidBody,
        Fault::CloseMidBody,
        Fault::StallMidBody,
        Fault::ChunkedCut,
        Fault::ChunkedBad,
    ] {
        let either = |lines: Vec<String>| -> Vec<String> {
            match fault {
                Fault::ResetMidBody => lines
                    .into_iter()
                    .map(|l| l.replace(" while sending to client,", " while reading upstream,"))
                    .collect(),
                _ => lines,
            }
        };
        let theirs = either(cut_line(fault, true, unbuffered, "/", false));
        let ours = either(cut_line(fault, false, unbuffered, "/", false));
        assert_eq!(theirs.len(), 1, "{fault:?}: nginx logged {theirs:?}");
        assert_eq!(ours, theirs, "{fault:?} unbuffered");
    }
}
