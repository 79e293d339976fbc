//! `proxy_method`, `proxy_pass_request_headers`, `proxy_pass_request_body`
//! and `proxy_set_body` side by side with nginx: a backend echoes the
//! request it got (head and body), and the echoes are the same, header
//! order included. Then the two differences on purpose: a `proxy_method`
//! that evaluates to nothing keeps the client's method (nginx sends an
//! empty one), and `proxy_pass_request_body off` sends no Content-Length
//! (nginx sends the client's without the body, and the upstream waits).
//! A body that is not passed is still read, within `client_max_body_size`
//! (413 as nginx's).

use std::io::{Read, Write};
use std::net::TcpListener;

use waypost_tests::{
    assert_same_answers, free_ports, next_head, serve_numbered, wrap_http, Server,
};

/// A backend that answers each request with the request itself: its head
/// and the body its Content-Length announces.
fn echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, _| {
        let mut buf = Vec::new();
        // One request per connection: the answer closes it.
        if let Some(head) = next_head(&mut stream, &mut buf) {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..length).collect();
            let mut echoed = head.into_bytes();
            echoed.extend_from_slice(b"\r\n");
            echoed.extend_from_slice(&body);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                echoed.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.write_all(&echoed);
        }
    });
    port
}

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /m/ {{ proxy_method POST; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /mv/ {{ proxy_method $arg_m; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /nh/ {{\n\
             \x20           proxy_pass_request_headers off;\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20       location /nb/ {{ proxy_pass_request_body off; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /sb/ {{ proxy_set_body \"a=$arg_a\"; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /sbh/ {{\n\
             \x20           proxy_set_body x;\n\
             \x20           proxy_set_header Content-Type text/plain;\n\
             \x20           proxy_pass_request_headers off;\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20           location /sbh/in/ {{ proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       }}\n\
             \x20       location /se/ {{ proxy_set_body $arg_a; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /lim/ {{\n\
             \x20           client_max_body_size 1k;\n\
             \x20           location /lim/sb/ {{ proxy_set_body x; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20           location /lim/nb/ {{\n\
             \x20               proxy_pass_request_body off;\n\
             \x20               proxy_pass http://127.0.0.1:{back};\n\
             \x20           }}\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `METHOD path` with `X-Client: 1` and, unless empty, `body`: what the
/// backend got, as it echoed it.
fn ask(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: h\r\nX-Client: 1\r\n{length}Connection: close\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let echoed = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    format!("{status} | {echoed}")
}

const CASES: &[(&str, &str, &str)] = &[
    ("GET", "/m/x", ""),
    ("GET", "/m/x", "clientbody"),
    ("GET", "/mv/x?m=PUT", "clientbody"),
    ("GET", "/nh/x", "clientbody"),
    ("GET", "/nb/x", ""),
    ("POST", "/sb/x?a=1", "clientbody"),
    ("GET", "/sb/x?a=22", ""),
    ("POST", "/sbh/x", "clientbody"),
    ("POST", "/sbh/in/x", "clientbody"),
    ("POST", "/se/x", "clientbody"),
    ("GET", "/se/x", ""),
    ("POST", "/se/x?a=b", ""),
];

/// A chunked POST of `size` bytes to `path`: the answer's status line.
fn chunked_status(port: u16, path: &str, size: usize) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    // The answer may come, and the connection close, before all is sent.
    let _ = stream.write_all(format!("{size:x}\r\n{}\r\n0\r\n\r\n", "b".repeat(size)).as_bytes());
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn run(nginx: bool, back: u16) -> Vec<String> {
    let port = free_ports(1)[0];
    let _server = Server::either(nginx, &conf(port, back, nginx), &[port]);
    CASES
        .iter()
        .map(|(method, path, body)| format!("{method} {path} -> {}", ask(port, method, path, body)))
        // (Not 500 bytes to /lim/nb/: nginx announces them and sends none,
        // the difference on purpose below, and the upstream waits.)
        .chain(
            [("/lim/sb/x", 500), ("/lim/sb/x", 5000), ("/lim/nb/x", 5000)].map(|(path, size)| {
                format!(
                    "chunked {size} {path} -> {}",
                    chunked_status(port, path, size)
                )
            }),
        )
        .collect()
}

#[test]
fn upstream_requests_match_nginx() {
    // One backend for both: its port is in the Host line.
    let back = echo();
    let ours = run(false, back);
    let theirs = run(true, back);
    assert_same_answers(&ours, &theirs);
    assert!(ours.iter().any(|a| a.contains("| POST /m/x HTTP/1.0")));
    assert!(ours.iter().any(|a| a.ends_with("\r\n\r\na=22")));
    assert!(ours
        .iter()
        .any(|a| a.starts_with("POST /se/x ->") && a.contains("Content-Length: 0\r\n")));
    assert!(ours
        .iter()
        .any(|a| a.starts_with("chunked 5000 /lim/nb/x")
            && a.ends_with("413 Request Entity Too Large")));
    assert!(ours
        .iter()
        .any(|a| a.starts_with("chunked 500 /lim/sb/x") && a.ends_with("200 OK")));
}

/// The differences on purpose (README).
#[test]
fn an_empty_method_and_a_dropped_body_as_waypost_sends_them() {
    let back = echo();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&conf(port, back, false), &[port]);
    let empty = ask(port, "GET", "/mv/x", "");
    assert!(empty.contains("| GET /mv/x HTTP/1.0\r\n"), "{empty}");
    let dropped = ask(port, "POST", "/nb/x", "clientbody");
    assert!(dropped.contains("| POST /nb/x HTTP/1.0\r\n"), "{dropped}");
    assert!(!dropped.contains("Content-Length"), "{dropped}");
    assert!(!dropped.contains("clientbody"), "{dropped}");
}
