//! `split_clients` side by side with nginx: 300 keys get the same shares
//! (MurmurHash2 of the source against each share's bound), with a `*`
//! share, without one (the rest gets the empty value), shares with
//! hundredths, a source with variables and text. Then nginx's messages for
//! bad percentages.

use std::io::{Read, Write};
use std::net::TcpStream;

use waypost_tests::{assert_same_answers, free_ports, wrap_http, Server};

fn conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    split_clients \"${{arg_k}}salt\" $s {{\n\
             \x20       0.5%   .one;\n\
             \x20       20%    .two;\n\
             \x20       33.33% three;\n\
             \x20       *      rest;\n\
             \x20   }}\n\
             \x20   split_clients $arg_k $t {{ 50% a; 25.5% b; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 \"s=$s t=$t\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

fn run(nginx: bool) -> Vec<String> {
    let port = free_ports(1)[0];
    let _server = Server::either(nginx, &conf(port, nginx), &[port]);
    // One keep-alive connection: 300 answers in order.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut answers = Vec::new();
    for k in 0..300 {
        let last = if k == 299 {
            "Connection: close\r\n"
        } else {
            ""
        };
        let request = format!("GET /?k=key{k} HTTP/1.1\r\nHost: s\r\n{last}\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        answers.push(format!("key{k}"));
    }
    let mut got = String::new();
    stream.read_to_string(&mut got).expect("read");
    let bodies: Vec<&str> = got
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|a| a.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim_end()))
        .collect();
    assert_eq!(bodies.len(), 300, "nginx {nginx}: {got}");
    answers
        .iter()
        .zip(bodies)
        .map(|(k, b)| format!("{k} -> {b}"))
        .collect()
}

#[test]
fn split_clients_matches_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same_answers(&ours, &theirs);
    for needle in ["s=.two ", "s=three ", "s=rest ", "t=a", "t=b"] {
        assert!(
            ours.iter().any(|a| a.contains(needle)),
            "{needle}: {ours:#?}"
        );
    }
    assert!(
        ours.iter().any(|a| a.ends_with("t=")),
        "the rest of $t is empty"
    );
}
