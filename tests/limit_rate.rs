//! `limit_rate` and `limit_rate_after` side by side with nginx: a
//! 150,000-byte answer at 50k a second takes more than a second with both
//! (nginx's pace: 50k for each whole second of the clock the request has
//! seen, counting the one it started in),
//! arrives whole, and goes at once when `limit_rate_after` covers it; a
//! bad size is nginx's error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, next_head, serve_numbered, wrap_http, KeepAlive, Server};

const SIZE: usize = 150_000;

/// A backend answering every request with SIZE bytes of `x`.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, _| {
        let mut buf = Vec::new();
        while next_head(&mut stream, &mut buf).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err()
                || stream.write_all(&vec![b'x'; SIZE]).is_err()
            {
                return;
            }
        }
    });
    port
}

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /slow {{ limit_rate 50k; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /after {{\n\
             \x20           limit_rate 50k;\n\
             \x20           limit_rate_after 200k;\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20       location /cond {{ if ($arg_slow) {{ limit_rate 50k; }} proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /cond_after {{\n\
             \x20           limit_rate_after 200k;\n\
             \x20           if ($arg_slow) {{ limit_rate 50k; }}\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `GET path`: the bytes of the body and how long the whole answer took.
fn fetch(port: u16, path: &str) -> (usize, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    let body = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |end| got.len() - end - 4);
    (body, started.elapsed())
}

#[test]
fn limit_rate_paces_as_nginx() {
    let back = backend();
    for nginx in [true, false] {
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &conf(port, back, nginx), &[port]);
        let (slow, took) = fetch(port, "/slow");
        assert_eq!(slow, SIZE, "nginx {nginx}");
        // 50k in the request's first second (by the clock's whole
        // seconds, as nginx counts), 50k more in each next one: the third
        // second must have begun, more than a second after the start.
        assert!(took > Duration::from_secs(1), "nginx {nginx}: {took:?}");
        let (fast, quick) = fetch(port, "/after");
        assert_eq!(fast, SIZE, "nginx {nginx}");
        // Far below the paced time: nothing waited.
        assert!(
            quick < took / 2,
            "nginx {nginx}: {quick:?} against {took:?}"
        );
    }
}

/// `limit_rate` inside a location's `if`: the answer is paced only when
/// the condition holds, and the location's `limit_rate_after` still
/// applies under the block's rate, as nginx merges the block's level.
#[test]
fn limit_rate_inside_if_as_nginx() {
    let back = backend();
    for nginx in [true, false] {
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &conf(port, back, nginx), &[port]);
        let (slow, took) = fetch(port, "/cond?slow=1");
        assert_eq!(slow, SIZE, "nginx {nginx}");
        assert!(took > Duration::from_secs(1), "nginx {nginx}: {took:?}");
        for path in ["/cond", "/cond_after?slow=1"] {
            let (fast, quick) = fetch(port, path);
            assert_eq!(fast, SIZE, "nginx {nginx} {path}");
            assert!(
                quick < took / 2,
                "nginx {nginx} {path}: {quick:?} against {took:?}"
            );
        }
    }
}

/// An answer under `limit_rate` that stayed within the allowance is done
/// as soon as its last byte is sent: its request's `limit_conn` count goes
/// back at once, so the next request (sent once the first answer's body
/// is read, its connection still open) is not refused, as with nginx.
#[test]
fn paced_answers_free_their_limit_conn_count_at_once_as_nginx() {
    let back = backend();
    let statuses = |nginx: bool| -> Vec<u16> {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let http = format!(
            "    limit_conn_zone $binary_remote_addr zone=one:1m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /paced {{ limit_conn one 1; limit_rate 1m; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20   }}\n"
        );
        let _server = Server::either(nginx, &wrap_http(&http, nginx), &[port]);
        // Each answer read to the end of its body, its connection kept.
        let mut open = Vec::new();
        (0..3)
            .map(|_| {
                let mut c = KeepAlive::connect(port);
                let status = c.get("/paced").status;
                open.push(c);
                status
            })
            .collect()
    };
    let theirs = statuses(true);
    assert_eq!(theirs, vec![200; 3], "nginx's answers");
    assert_eq!(statuses(false), theirs);
}

/// `limit_rate` over HTTP/2 (h2c, `listen ... http2`): the stream's DATA
/// at the same pace, as nginx's.
#[test]
fn limit_rate_paces_http2_streams_as_nginx() {
    let back = backend();
    for nginx in [true, false] {
        let port = free_ports(1)[0];
        let conf = conf(port, back, nginx).replace(
            &format!("listen 127.0.0.1:{port};"),
            &format!("listen 127.0.0.1:{port} http2;"),
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let fetch_h2 = |path: &str| {
            let started = Instant::now();
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--http2-prior-knowledge",
                    "-o",
                    "-",
                    "-w",
                    "%{http_version}",
                ])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .expect("curl");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let body = text.bytes().filter(|&b| b == b'x').count();
            (body, text.ends_with('2'), started.elapsed())
        };
        let (slow, h2, took) = fetch_h2("/slow");
        assert_eq!((slow, h2), (SIZE, true), "nginx {nginx}");
        assert!(took > Duration::from_secs(1), "nginx {nginx}: {took:?}");
        let (fast, _, quick) = fetch_h2("/after");
        assert_eq!(fast, SIZE, "nginx {nginx}");
        assert!(
            quick < took / 2,
            "nginx {nginx}: {quick:?} against {took:?}"
        );
    }
}
