//! `proxy_bind` and `proxy_socket_keepalive` side by side with nginx: the
//! backend answers with the address the proxy connected from. A fixed
//! loopback address and one from a variable are used; a value that is no
//! address is logged (`invalid local address`) and binds nothing; an
//! empty one binds nothing; an address the machine does not have is a 500
//! with nginx's `bind(...) failed` line at `crit`, and no other try.

use waypost_tests::{free_ports, status_and_page, wrap_http, Server};

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    upstream two {{ server 127.0.0.1:{back}; server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /fixed {{ proxy_pass http://127.0.0.1:{back}; proxy_bind 127.0.0.2; }}\n\
             \x20       location /var {{ proxy_pass http://127.0.0.1:{back}; proxy_bind $arg_x; }}\n\
             \x20       location /gone {{ proxy_pass http://two; proxy_bind 10.9.9.9; }}\n\
             \x20       location /ka {{\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20           proxy_bind 127.0.0.5 transparent;\n\
             \x20           proxy_socket_keepalive on;\n\
             \x20           location /ka/off {{ proxy_pass http://127.0.0.1:{back}; proxy_bind off; }}\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"from $remote_addr\\n\"; }} }}\n"
        ),
        nginx,
    )
}

fn run(nginx: bool) -> (Vec<String>, Vec<String>) {
    let ports = free_ports(2);
    let server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
    let answers = [
        "/fixed",
        "/var?x=127.0.0.3",
        "/var?x=junk",
        "/var",
        "/gone",
        "/ka",
        "/ka/off",
    ]
    .iter()
    .map(|path| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", ports[0])).expect("connect");
        let mut s = stream;
        std::io::Write::write_all(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("send");
        format!(
            "{path} -> {}",
            waypost_tests::neutral_server(&status_and_page(s))
        )
    })
    .collect();
    let mut errors = server.log_messages("invalid local address");
    errors.extend(server.log_messages("bind("));
    let back = format!(":{}/", ports[1]);
    let errors = errors.iter().map(|l| l.replace(&back, ":BACK/")).collect();
    (answers, errors)
}

#[test]
fn proxy_bind_as_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours.0, theirs.0);
    assert_eq!(ours.1, theirs.1);
    for needle in [
        "/fixed -> HTTP/1.1 200 OK | from 127.0.0.2",
        "/var?x=127.0.0.3 -> HTTP/1.1 200 OK | from 127.0.0.3",
        "/var?x=junk -> HTTP/1.1 200 OK | from 127.0.0.1",
        "/gone -> HTTP/1.1 500",
        "/ka -> HTTP/1.1 200 OK | from 127.0.0.5",
        "/ka/off -> HTTP/1.1 200 OK | from 127.0.0.1",
    ] {
        assert!(
            ours.0.iter().any(|a| a.starts_with(needle)),
            "{needle}: {:#?}",
            ours.0
        );
    }
    assert_eq!(ours.1.len(), 2, "{:#?}", ours.1);
}
