//! nginx's special responses side by side: `return CODE` for every code
//! from 400 to 599 (but 408, 444 and 499, which answer nothing) gets the
//! same status line, Content-Type, Content-Length (the server's name
//! aside), Connection and page as nginx's — its page where nginx has one,
//! no body and no type where it has none, 494 to 497 as 400 pages, 498
//! with the 404 page, and the connection closed after 400, 413, 414, 495
//! to 497, 500 and 501. Over HTTP/2 no such page ends the connection.

use std::io::{Read, Write};
use std::net::TcpStream;

use waypost_tests::{
    assert_same_answers, free_ports, h2c_answers, neutral_server, wrap_http, Server,
};

/// Codes `return` takes with a page (301 to 308 need a URL).
fn codes() -> impl Iterator<Item = u16> {
    (400..=599).filter(|c| !matches!(c, 408 | 444 | 499))
}

fn conf(port: u16, h2: u16, nginx: bool) -> String {
    let locations: String = codes()
        .map(|c| format!("        location = /{c} {{ return {c}; }}\n"))
        .collect();
    wrap_http(
        &format!(
            "    server {{\n        listen 127.0.0.1:{port};\n{locations}    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{h2} http2;\n        error_page 500 /nf;\n        location = /nf {{ return 200 \"nf\\n\"; }}\n{locations}    }}\n"
        ),
        nginx,
    )
}

/// The status line, the framing headers and the page of `GET /code` on a
/// keep-alive request, the server's name made neutral.
fn ask(port: u16, code: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET /{code} HTTP/1.1\r\nHost: h\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, length) = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            got.drain(..end + 4);
            break (head, length);
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "/{code}: closed before a head");
        got.extend_from_slice(&chunk[..n]);
    };
    while got.len() < length {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "/{code}: closed within the body");
        got.extend_from_slice(&chunk[..n]);
    }
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_owned();
    let mut kept: Vec<String> = lines
        .filter(|l| {
            ["Content-Type:", "Connection:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .map(str::to_owned)
        .collect();
    let body = neutral_server(&String::from_utf8_lossy(&got));
    kept.push(format!("length {}", body.len()));
    format!("{status} | {} | {body}", kept.join(" | "))
}

/// Over HTTP/2 (h2c), one connection: the statuses of `/500` (whose
/// `error_page` answers with another location's body, keeping the 500's
/// HTTP/1-only close), `/400`, `/414`, `/404` asked one after the other,
/// each answer read whole (an error where the connection was gone).
fn h2(port: u16) -> String {
    h2c_answers(port, b"", &["/500", "/400", "/414", "/404"])
        .into_iter()
        .map(|a| a.map_or_else(|e| e, |(status, _)| status.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(nginx: bool) -> Vec<String> {
    let ports = free_ports(2);
    let _server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
    let mut answers: Vec<String> = codes()
        .map(|c| format!("/{c} -> {}", ask(ports[0], c)))
        .collect();
    answers.push(format!("h2 -> {}", h2(ports[1])));
    answers
}

#[test]
fn special_responses_match_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same_answers(&ours, &theirs);
    // Both kinds occur: pages, empty answers, closes; HTTP/2 goes on.
    assert!(ours
        .iter()
        .any(|a| a.contains("429 Too Many Requests</h1>")));
    assert!(ours
        .iter()
        .any(|a| a.starts_with("/418 -> HTTP/1.1 418  | Connection: keep-alive | length 0")));
    assert!(ours
        .iter()
        .any(|a| a.starts_with("/500 ") && a.contains("Connection: close")));
    assert_eq!(
        ours.last().map(String::as_str),
        Some("h2 -> 500 400 414 404")
    );
}
