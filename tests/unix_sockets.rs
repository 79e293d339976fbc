//! Upstreams on Unix sockets side by side with nginx: `proxy_pass
//! http://unix:PATH[:URI]`, `server unix:PATH` in an upstream block (with
//! kept connections), `$upstream_addr`, and a socket that is not there
//! (nginx's `crit` line, with `:` after the path in `upstream:`).
//! tests/fastcgi.rs has `fastcgi_pass unix:PATH`.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use waypost_tests::{assert_same_answers, free_ports, wrap_http, Server, TempDir};

/// A backend on a Unix socket answering each request with its request
/// line, its Host header and how many requests its connection carried.
fn backend(dir: &TempDir) -> String {
    let path = dir.path.join("b.sock");
    let listener = UnixListener::bind(&path).expect("bind unix");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut served = 0;
                while let Some(head) = waypost_tests::next_head(&mut stream, &mut buf) {
                    served += 1;
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Host: "))
                        .unwrap_or("")
                        .to_owned();
                    let text = format!("{line} host={host} request {served}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    path.display().to_string()
}

fn conf(port: u16, sock: &str, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    upstream u {{ server unix:{sock}; keepalive 2; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /a/ {{ proxy_pass http://unix:{sock}:/b/; }}\n\
             \x20       location /c/ {{ proxy_pass http://unix:{sock}; }}\n\
             \x20       location /u/ {{\n\
             \x20           proxy_pass http://u;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20           add_header X-Up $upstream_addr;\n\
             \x20       }}\n\
             \x20       location /m/ {{ proxy_pass http://unix:/nonexistent/waypost.sock; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

fn ask(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    let up = head
        .lines()
        .find(|l| l.starts_with("X-Up: "))
        .unwrap_or("")
        .to_owned();
    let body = if status.contains(" 200 ") { body } else { "" };
    format!("{path} -> {status} {up} {body}")
}

fn run(nginx: bool, sock: &str) -> (Vec<String>, Vec<String>) {
    let port = free_ports(1)[0];
    let server = Server::either(nginx, &conf(port, sock, nginx), &[port]);
    let answers = ["/a/x?q=1", "/c/x", "/u/1", "/u/2", "/m/x"]
        .iter()
        .map(|p| ask(port, p))
        .collect();
    let log = server.error_lines(1);
    (answers, log)
}

#[test]
fn unix_socket_upstreams_as_nginx() {
    let dir = TempDir::new("unix-upstream");
    let sock = backend(&dir);
    let (ours, our_log) = run(false, &sock);
    let (theirs, their_log) = run(true, &sock);
    assert_same_answers(&ours, &theirs);
    assert_eq!(our_log, their_log);
    assert!(
        ours[0].ends_with("GET /b/x?q=1 HTTP/1.0 host=localhost request 1"),
        "{}",
        ours[0]
    );
    assert!(
        ours[1].ends_with("GET /c/x HTTP/1.0 host=localhost request 1"),
        "{}",
        ours[1]
    );
    assert!(
        ours[3].contains(&format!("X-Up: unix:{sock}")),
        "{}",
        ours[3]
    );
    assert!(ours[3].ends_with("request 2"), "{}", ours[3]);
    assert!(ours[4].contains(" 502 "), "{}", ours[4]);
    assert!(
        our_log.iter().any(|l| l.starts_with("[crit] connect() to unix:/nonexistent/waypost.sock failed (2: No such file or directory)")
            && l.contains("upstream: \"http://unix:/nonexistent/waypost.sock:/m/x\"")),
        "{our_log:?}"
    );
}
