//! `stub_status` side by side with nginx: the page's text (to the byte,
//! numbers aside), the request count after requests on a keep-alive
//! connection, a connection that sent part of a head counted as reading,
//! one that sent nothing as waiting, the page's own request as writing,
//! the same in the `$connections_*` variables, and 405 for a POST.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, wrap_http, Server};

fn conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 \"ok\\n\"; }}\n\
             \x20       location = /s {{ stub_status; }}\n\
             \x20       location = /old {{ stub_status on; }}\n\
             \x20       location = /vars {{\n\
             \x20           return 200 \"$connections_active $connections_reading $connections_writing $connections_waiting\\n\";\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Sends `GET path` on the keep-alive connection `s`: the answer's head
/// and body (`Content-Length` framed).
fn get(s: &mut TcpStream, method: &str, path: &str) -> (String, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: s\r\nContent-Length: 0\r\n\r\n");
    s.write_all(request.as_bytes()).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The page's numbers: active, accepts, handled, requests, reading,
/// writing, waiting.
fn numbers(page: &str) -> Vec<u64> {
    page.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// What one server showed: the page with its numbers as `N`, the
/// numbers after three requests, and whether each state was reached.
fn run(nginx: bool) -> (String, Vec<u64>, String) {
    let port = free_ports(1)[0];
    let _server = Server::either(nginx, &conf(port, nginx), &[port]);
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for _ in 0..3 {
        get(&mut c, "GET", "/");
    }
    let (head, page) = get(&mut c, "GET", "/s");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "nginx {nginx}: {head}"
    );
    let shape: String = page
        .chars()
        .map(|ch| if ch.is_ascii_digit() { 'N' } else { ch })
        .collect::<String>()
        .replace("NN", "N")
        .replace("NN", "N");
    let first = numbers(&page);

    // One connection idle, one with part of a head: waiting and reading.
    let idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut partial = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: s\r\n")
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = numbers(&get(&mut c, "GET", "/old").1);
        // active 3; reading 1, writing 1 (this one), waiting 1.
        if seen[0] == 3 && seen[4..] == [1, 1, 1] {
            break;
        }
    }
    let vars = get(&mut c, "GET", "/vars").1;
    let states = format!(
        "active={} rww={:?} vars={}",
        seen[0],
        &seen[4..],
        vars.trim()
    );
    drop((idle, partial));
    let (head, _) = get(&mut c, "POST", "/s");
    let post = head.lines().next().unwrap_or("").to_owned();
    (shape, first, format!("{states} post={post}"))
}

#[test]
fn stub_status_as_nginx() {
    let (our_shape, ours, our_states) = run(false);
    let (their_shape, theirs, their_states) = run(true);
    assert_eq!(our_shape, their_shape);
    assert_eq!(
        our_shape,
        "Active connections: N \nserver accepts handled requests\n N N N \nReading: N Writing: N Waiting: N \n"
    );
    // Requests: the three, then the page's own; accepts are handled; the
    // page's request is the one writing.
    assert_eq!(ours[3], 4, "{ours:?}");
    assert_eq!((ours[1], ours[4], ours[5]), (ours[2], 0, 1), "{ours:?}");
    assert_eq!(
        (ours[3], ours[4], ours[5], ours[6]),
        (theirs[3], theirs[4], theirs[5], theirs[6]),
        "waypost {ours:?}, nginx {theirs:?}"
    );
    assert_eq!(our_states, their_states);
    assert_eq!(
        our_states,
        "active=3 rww=[1, 1, 1] vars=3 1 1 1 post=HTTP/1.1 405 Not Allowed"
    );
}
