//! `try_files` in a location whose content handler is a proxy
//! (`proxy_pass`; tests/fastcgi.rs has Debian's `fastcgi_pass` snippet):
//! nginx's pre-content phase runs it first, side by side with nginx. A
//! path found lets the proxy answer; `=CODE` answers; a URI or a named
//! location redirects.

use std::io::Write;
use std::net::TcpListener;

use waypost_tests::{
    assert_same_answers, free_ports, next_head, serve_numbered, wrap_http, Server, TempDir,
};

/// A backend that answers with the request line it got.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, _| {
        let mut buf = Vec::new();
        if let Some(head) = next_head(&mut stream, &mut buf) {
            let line = head.lines().next().unwrap_or("").to_owned();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
                line.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

fn conf(port: u16, back: u16, root: &str, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root {root};\n\
             \x20       location /p/ {{ try_files $uri =404; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location /u/ {{ try_files $uri $uri/ /p/there.txt; proxy_pass http://127.0.0.1:{back}/x/; }}\n\
             \x20       location /n/ {{ try_files /nothing @app; proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20       location @app {{ return 200 \"named $uri\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

fn run(nginx: bool, back: u16, root: &str) -> Vec<String> {
    let port = free_ports(1)[0];
    let _server = Server::either(nginx, &conf(port, back, root, nginx), &[port]);
    [
        "/p/there.txt?a=1",
        "/p/missing.txt",
        "/u/there.txt",
        "/u/missing",
        "/n/x",
    ]
    .iter()
    .map(|path| {
        let r = waypost_tests::get(port, path);
        format!(
            "{path} -> {} {}",
            r.status,
            if r.status == 200 { r.body.as_str() } else { "" }
        )
    })
    .collect()
}

#[test]
fn try_files_runs_before_the_proxy_as_in_nginx() {
    let back = backend();
    let dir = TempDir::new("try-proxied");
    dir.write("p/there.txt", "x");
    dir.write("u/there.txt", "x");
    let root = dir.path.display().to_string();
    let ours = run(false, back, &root);
    let theirs = run(true, back, &root);
    assert_same_answers(&ours, &theirs);
    assert_eq!(ours[1], "/p/missing.txt -> 404 ");
    assert!(
        ours[0].starts_with("/p/there.txt?a=1 -> 200 GET /p/there.txt?a=1 HTTP/1.0"),
        "{}",
        ours[0]
    );
    assert!(ours[4].starts_with("/n/x -> 200 named /n/x"), "{}", ours[4]);
}
