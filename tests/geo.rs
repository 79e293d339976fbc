//! `geo` side by side with nginx: the same requests get the same values,
//! from clients of several loopback addresses and over IPv6, with the
//! most specific network winning, `default`, `delete`, a repeated network
//! (the last value), `$address` from a variable (an invalid one is
//! 255.255.255.255, an IPv4-mapped one is looked up as IPv4, and one from
//! a `proxy` gives way to X-Forwarded-For), `proxy` with
//! X-Forwarded-For, with and without `proxy_recursive`, realip before it,
//! and a geo value as a `limit_req` key through a `map` (the allowlist
//! pattern: an empty key is not limited). A missing `$address` value is
//! no address: 255.255.255.255, as in nginx. `ranges`: IPv4 ranges, one
//! inside another splitting it, `delete`, `default` for IPv6 and
//! addresses in no range.

use std::io::{Read, Write};
use std::net::TcpStream;

use waypost_tests::{assert_same_answers, connect_from, free_ports, wrap_http, Server};

fn conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    geo $g {{\n\
             \x20       default d;\n\
             \x20       10.0.0.0/8 ten;\n\
             \x20       127.0.0.0/8 lo;\n\
             \x20       127.0.0.2/32 two;\n\
             \x20       127.0.0.4/31 four;\n\
             \x20       127.0.0.4/31 four-again;\n\
             \x20       ::1 v6lo;\n\
             \x20       2001:db8::/32 doc;\n\
             \x20   }}\n\
             \x20   geo $arg_ip $gi {{\n\
             \x20       default none;\n\
             \x20       192.168.0.0/16 private;\n\
             \x20       10.1.0.0/16 tenone;\n\
             \x20       255.255.255.255 bad;\n\
             \x20       2001:db8::/32 doc;\n\
             \x20       ::/0 six;\n\
             \x20   }}\n\
             \x20   geo $gp {{ proxy 127.0.0.3; default d; 10.0.0.0/8 ten; 127.0.0.0/8 lo; 192.168.0.0/16 p; }}\n\
             \x20   geo $gr {{\n\
             \x20       proxy 127.0.0.0/8;\n\
             \x20       proxy 10.0.0.0/8;\n\
             \x20       proxy_recursive;\n\
             \x20       default d;\n\
             \x20       10.0.0.0/8 ten;\n\
             \x20       192.168.0.0/16 p;\n\
             \x20   }}\n\
             \x20   geo $gd {{ 10.0.0.0/8 a; delete 10.0.0.0/8; 127.0.0.0/16 b; }}\n\
             \x20   geo $arg_ip $g6 {{ proxy 10.0.0.0/8; 1.2.3.4 one; 10.0.0.0/8 ten; }}\n\
             \x20   geo $limited {{ default 1; 127.0.0.2 0; }}\n\
             \x20   geo $arg_ip $rg {{\n\
             \x20       ranges;\n\
             \x20       default out;\n\
             \x20       10.0.0.0-10.0.0.255 a;\n\
             \x20       10.0.0.5-10.0.0.9 inner;\n\
             \x20       10.0.0.0-10.0.0.1 first;\n\
             \x20       10.0.0.250-10.0.0.255 last;\n\
             \x20       10.0.1.0-10.0.255.255 big;\n\
             \x20       10.0.2.0-10.0.2.9 hole;\n\
             \x20       192.168.0.0-192.168.0.9 gone;\n\
             \x20       delete 192.168.0.0-192.168.0.9;\n\
             \x20       10.9.9.9-10.9.9.9 one;\n\
             \x20   }}\n\
             \x20   map $limited $key {{ 0 \"\"; 1 $binary_remote_addr; }}\n\
             \x20   limit_req_zone $key zone=z:1m rate=1r/m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       listen [::1]:{port};\n\
             \x20       location / {{ return 200 \"g=$g gi=$gi gp=$gp gr=$gr gd=$gd\\n\"; }}\n\
             \x20       location /six {{ return 200 \"g6=$g6\\n\"; }}\n\
             \x20       location /ranges {{ return 200 \"rg=$rg\\n\"; }}\n\
             \x20       location /real {{\n\
             \x20           set_real_ip_from 127.0.0.5;\n\
             \x20           real_ip_header X-Real-IP;\n\
             \x20           return 200 \"g=$g gp=$gp\\n\";\n\
             \x20       }}\n\
             \x20       location /limited {{\n\
             \x20           limit_req zone=z;\n\
             \x20           limit_req_status 429;\n\
             \x20           proxy_pass http://127.0.0.1:{port}/;\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `path` with `headers` from `stream`: the status line and the body.
fn ask(mut stream: TcpStream, path: &str, headers: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: g\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    format!("{status} | {body}")
}

fn run(nginx: bool) -> Vec<String> {
    let port = free_ports(1)[0];
    let _server = Server::either(nginx, &conf(port, nginx), &[port]);
    let xff = |v: &str| format!("X-Forwarded-For: {v}\r\n");
    let cases: Vec<(u8, String, String)> = vec![
        (1, "/".into(), String::new()),
        (2, "/".into(), String::new()),
        (4, "/".into(), String::new()),
        (5, "/".into(), String::new()),
        (1, "/?ip=10.1.2.3".into(), String::new()),
        (1, "/?ip=192.168.7.7".into(), String::new()),
        (1, "/?ip=nonsense".into(), String::new()),
        (1, "/?ip=255.255.255.255".into(), String::new()),
        (1, "/?ip=::ffff:10.1.0.9".into(), String::new()),
        (1, "/?ip=2001:db8::1".into(), String::new()),
        (1, "/?ip=2001:db9::1".into(), String::new()),
        (1, "/?ip=10.1.2.3:80".into(), String::new()),
        (1, "/".into(), xff("10.9.9.9")),
        (3, "/".into(), xff("10.9.9.9")),
        (3, "/".into(), xff("192.168.1.1, 10.9.9.9")),
        (3, "/".into(), xff("garbage")),
        (
            3,
            "/".into(),
            format!("{}{}", xff("192.168.1.1"), xff("10.2.2.2")),
        ),
        (1, "/".into(), xff("192.168.1.1, 10.9.9.9, 127.0.0.9")),
        (1, "/".into(), xff("8.8.8.8, 192.168.1.1, 10.9.9.9")),
        (5, "/real".into(), "X-Real-IP: 10.3.3.3\r\n".into()),
        (
            5,
            "/real".into(),
            "X-Real-IP: 127.0.0.3\r\nX-Forwarded-For: 192.168.5.5\r\n".into(),
        ),
        (1, "/six?ip=10.1.1.1".into(), xff("1.2.3.4")),
        (1, "/six?ip=10.1.1.1".into(), String::new()),
        (1, "/six?ip=192.168.1.1".into(), xff("1.2.3.4")),
        (1, "/ranges?ip=10.0.0.0".into(), String::new()),
        (1, "/ranges?ip=10.0.0.1".into(), String::new()),
        (1, "/ranges?ip=10.0.0.2".into(), String::new()),
        (1, "/ranges?ip=10.0.0.5".into(), String::new()),
        (1, "/ranges?ip=10.0.0.9".into(), String::new()),
        (1, "/ranges?ip=10.0.0.10".into(), String::new()),
        (1, "/ranges?ip=10.0.0.255".into(), String::new()),
        (1, "/ranges?ip=10.0.2.5".into(), String::new()),
        (1, "/ranges?ip=10.0.3.5".into(), String::new()),
        (1, "/ranges?ip=10.1.0.0".into(), String::new()),
        (1, "/ranges?ip=192.168.0.5".into(), String::new()),
        (1, "/ranges?ip=10.9.9.9".into(), String::new()),
        (1, "/ranges?ip=::ffff:10.0.0.7".into(), String::new()),
        (1, "/ranges?ip=2001:db8::1".into(), String::new()),
        (1, "/ranges?ip=junk".into(), String::new()),
        (2, "/limited".into(), String::new()),
        (2, "/limited".into(), String::new()),
        (6, "/limited".into(), String::new()),
        (6, "/limited".into(), String::new()),
    ];
    let mut answers: Vec<String> = cases
        .iter()
        .map(|(src, path, headers)| {
            let stream = connect_from([127, 0, 0, *src], port);
            let mut answer = ask(stream, path, headers);
            if path == "/limited" {
                // limit_req's own 429 page differs on purpose (its README).
                answer.truncate(answer.find(" | ").unwrap_or(answer.len()));
            }
            format!("127.0.0.{src} {path} [{}] -> {answer}", headers.trim_end())
        })
        .collect();
    let v6 = TcpStream::connect(("::1", port)).expect("connect [::1]");
    answers.push(format!("[::1] / -> {}", ask(v6, "/", "")));
    answers
}

#[test]
fn geo_matches_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_same_answers(&ours, &theirs);
    for needle in [
        "/ranges?ip=10.0.0.1 [] -> HTTP/1.1 200 OK | rg=first",
        "/ranges?ip=10.0.0.2 [] -> HTTP/1.1 200 OK | rg=a",
        "/ranges?ip=10.0.0.9 [] -> HTTP/1.1 200 OK | rg=inner",
        "/ranges?ip=10.0.0.255 [] -> HTTP/1.1 200 OK | rg=last",
        "/ranges?ip=10.0.2.5 [] -> HTTP/1.1 200 OK | rg=hole",
        "/ranges?ip=10.0.3.5 [] -> HTTP/1.1 200 OK | rg=big",
        "/ranges?ip=192.168.0.5 [] -> HTTP/1.1 200 OK | rg=out",
        "/ranges?ip=::ffff:10.0.0.7 [] -> HTTP/1.1 200 OK | rg=inner",
        "/ranges?ip=2001:db8::1 [] -> HTTP/1.1 200 OK | rg=out",
        "g=two gi=bad",
        "g=four-again",
        "gi=tenone",
        "gi=private",
        "gi=bad",
        "gi=doc",
        "gi=six",
        "gp=ten",
        "gr=p",
        "gd=b",
        "g6=one",
        "g6=ten",
        "g=v6lo",
        "429",
    ] {
        assert!(
            ours.iter().any(|a| a.contains(needle)),
            "{needle}: {ours:#?}"
        );
    }
}

#[test]
fn geo_ranges_errors_as_nginx() {
    use waypost_tests::{assert_t_cases, Waypost};
    let geo = |lines: &str| format!("http {{\n    geo $g {{\n        {lines}\n    }}\n}}\n");
    let emerg = |m: &str| format!("[emerg] {m} in CONF:6 (exit Some(1))");
    let cases = vec![
        (
            geo("ranges; 10.0.0.0-10.0.0.255 a; 10.0.0.200-10.0.1.5 b;"),
            emerg("range \"10.0.0.200-10.0.1.5\" overlaps \"10.0.0.0-10.0.0.255\""),
            Waypost::Same,
        ),
        (
            geo("ranges; 10.0.0.5-10.0.0.9 b; 10.0.0.0-10.0.0.255 a;"),
            emerg("range \"10.0.0.0-10.0.0.255\" overlaps \"10.0.0.5-10.0.0.9\""),
            Waypost::Same,
        ),
        (
            geo("10.0.0.0/8 a; ranges;"),
            emerg("the \"ranges\" directive must be the first directive inside \"geo\" block"),
            Waypost::Same,
        ),
        (
            geo("ranges; 10.0.0.0/8 a;"),
            emerg("invalid range \"10.0.0.0/8\""),
            Waypost::Same,
        ),
        (
            geo("ranges; 10.0.0.9-10.0.0.1 a;"),
            emerg("invalid range \"10.0.0.9-10.0.0.1\""),
            Waypost::Same,
        ),
        (
            geo("ranges; ::1-::2 a;"),
            emerg("invalid range \"::1-::2\""),
            Waypost::Same,
        ),
        (
            geo("ranges; default d; 10.0.0.0-10.0.0.255 a; 10.0.0.5-10.0.0.9 b; 10.0.0.0-10.0.0.1 c; proxy 127.0.0.1; proxy_recursive;"),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("geo-ranges", &cases);
}
