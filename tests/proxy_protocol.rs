//! `listen ... proxy_protocol` side by side with nginx: version 1 (TCP4,
//! TCP6, UNKNOWN) and version 2 (IPv4, LOCAL) headers before the request,
//! on plain, TLS and HTTP/2 (h2c) addresses; `$proxy_protocol_addr`, `_port`,
//! `_server_addr`, `_server_port`; `real_ip_header proxy_protocol` with
//! `set_real_ip_from` (trusted or not); a keep-alive connection's
//! requests; a broken
//! header's error line and closed connection; a connection without a
//! header where none is read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use waypost_tests::{free_ports, h2c_answers, request_lines, wrap_http, Server, TempDir};

fn conf(ports: &[u16], dir: &TempDir, nginx: bool) -> String {
    let answer = "return 200 \"[$proxy_protocol_addr] [$proxy_protocol_port] \
                  [$proxy_protocol_server_addr] [$proxy_protocol_server_port] \
                  [$remote_addr] [$realip_remote_addr]\\n\";";
    wrap_http(
        &format!(
            "    log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr $status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p0} proxy_protocol;\n\
             \x20       access_log logs/pp.log pp;\n\
             \x20       location / {{ {answer} }}\n\
             \x20       set_real_ip_from 127.0.0.1;\n\
             \x20       real_ip_header proxy_protocol;\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p1};\n\
             \x20       access_log logs/pp.log pp;\n\
             \x20       location / {{ {answer} }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p2} ssl proxy_protocol;\n\
             \x20       ssl_certificate {d}/srv.pem;\n\
             \x20       ssl_certificate_key {d}/srv.key;\n\
             \x20       set_real_ip_from 10.0.0.0/8;\n\
             \x20       real_ip_header proxy_protocol;\n\
             \x20       access_log logs/pp.log pp;\n\
             \x20       location / {{ {answer} }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{p3} http2 proxy_protocol;\n\
             \x20       access_log logs/pp.log pp;\n\
             \x20       location / {{ {answer} }}\n\
             \x20   }}\n",
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
            p3 = ports[3],
            d = dir.path.display(),
        ),
        nginx,
    )
    .replace(
        "error_log logs/error.log;",
        "error_log logs/error.log info;",
    )
}

/// A version 2 header: PROXY over TCP/IPv4 from 10.1.2.3:4000 to
/// 10.9.8.7:443, with a TLV after the addresses; or LOCAL.
fn v2(local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    if local {
        h.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return h;
    }
    h.extend_from_slice(&[0x21, 0x11, 0, 17]);
    h.extend_from_slice(&[10, 1, 2, 3, 10, 9, 8, 7, 0x0f, 0xa0, 0x01, 0xbb]);
    // PP2_TYPE_AUTHORITY "a.b"
    h.extend_from_slice(&[0x02, 0, 2, b'a', b'b']);
    h
}

/// The answer read to the close: its status line and body.
fn shown(stream: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    format!(
        "{} | {}",
        head.lines().next().unwrap_or(""),
        body.trim_end()
    )
}

/// Sends `bytes` and reads to the close; the status line and body.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(bytes).expect("send");
    shown(&mut stream)
}

/// Two requests on one connection after one header.
fn keep_alive(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(
            b"PROXY TCP4 192.0.2.7 198.51.100.1 6000 80\r\n\
              GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.split("\r\n\r\n")
        .filter(|part| part.starts_with('['))
        .map(|part| part.lines().next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" // ")
}

/// Over HTTP/2 by prior knowledge (h2c): the header, then two streams on
/// the connection; each stream's status and body.
fn h2c(port: u16) -> String {
    let header = b"PROXY TCP4 192.0.2.9 198.51.100.3 7001 8080\r\n";
    h2c_answers(port, header, &["/a", "/b"])
        .into_iter()
        .map(|a| {
            a.map_or_else(
                |e| e,
                |(status, body)| format!("{status} {}", String::from_utf8_lossy(&body).trim_end()),
            )
        })
        .collect::<Vec<_>>()
        .join(" // ")
}

fn run(nginx: bool) -> (Vec<String>, Vec<String>, Vec<String>) {
    let dir = TempDir::new("proxy-protocol");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "pp CA");
    let ca = params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    dir.write("srv.pem", &cert.pem());
    dir.write("srv.key", &key.serialize_pem());
    let ports = free_ports(4);
    let server = Server::either(nginx, &conf(&ports, &dir, nginx), &ports);
    let get = b"GET / HTTP/1.0\r\n\r\n";
    let with = |header: &[u8], request: &[u8]| [header, request].concat();
    let mut answers = vec![
        exchange(
            ports[0],
            &with(b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\n", get),
        ),
        exchange(
            ports[0],
            &with(b"PROXY TCP6 2001:DB8::1 ::ffff:1.2.3.4 1 65535\r\n", get),
        ),
        exchange(ports[0], &with(b"PROXY UNKNOWN whatever\r\n", get)),
        exchange(ports[0], &with(&v2(false), get)),
        exchange(ports[0], &with(&v2(true), get)),
        exchange(ports[0], get),
        exchange(
            ports[0],
            &with(b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 80\r\n", get),
        ),
        exchange(ports[1], get),
        keep_alive(ports[0]),
    ];
    answers.push(tls_answer(ports[2], ca.der()));
    answers.push(h2c(ports[3]));
    let logged = server.wait_lines("logs/pp.log", 11);
    // An entry's lines joined (a broken header is logged as it came).
    let mut entries: Vec<String> = Vec::new();
    for line in server.read("logs/error.log").lines() {
        match entries.last_mut() {
            Some(last) if !line.starts_with(|c: char| c.is_ascii_digit()) => {
                last.push_str("\\n");
                last.push_str(line);
            }
            _ => entries.push(line.to_owned()),
        }
    }
    let errors = request_lines(&entries.join("\n"))
        .into_iter()
        .filter(|l| l.contains("PROXY"))
        .map(|l| {
            let mut l = l;
            for (i, p) in ports.iter().enumerate() {
                l = l.replace(&p.to_string(), &format!("PORT{i}"));
            }
            l
        })
        .collect();
    answers.iter_mut().for_each(|a| {
        for (i, p) in ports.iter().enumerate() {
            *a = a.replace(&p.to_string(), &format!("PORT{i}"));
        }
    });
    (answers, logged, errors)
}

/// Over TLS: the header, then the handshake (verified against `ca`) and
/// a request; the status line and body.
fn tls_answer(port: u16, ca: &CertificateDer<'static>) -> String {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(b"PROXY TCP6 2001:db8::1 2001:db8::2 7000 443\r\n")
        .expect("header");
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
    shown(&mut tls)
}

#[test]
fn proxy_protocol_as_nginx() {
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours.0, theirs.0, "answers: waypost (left), nginx (right)");
    assert_eq!(
        ours.1, theirs.1,
        "access log: waypost (left), nginx (right)"
    );
    assert_eq!(ours.2, theirs.2, "error log: waypost (left), nginx (right)");
    let (answers, _, errors) = &theirs;
    assert_eq!(
        answers[0],
        "HTTP/1.1 200 OK | [192.0.2.1] [5000] [198.51.100.2] [80] [192.0.2.1] [127.0.0.1]"
    );
    assert_eq!(
        answers[3],
        "HTTP/1.1 200 OK | [10.1.2.3] [4000] [10.9.8.7] [443] [10.1.2.3] [127.0.0.1]"
    );
    // No address in the header: realip has none to take.
    assert_eq!(
        answers[4],
        "HTTP/1.1 200 OK | [] [] [] [] [127.0.0.1] [127.0.0.1]"
    );
    assert_eq!(answers[5], " | ", "no header: closed");
    // HTTP/2 after the header: every stream has the connection's addresses.
    assert_eq!(
        answers[10],
        "200 [192.0.2.9] [7001] [198.51.100.3] [8080] [127.0.0.1] [127.0.0.1] // \
         200 [192.0.2.9] [7001] [198.51.100.3] [8080] [127.0.0.1] [127.0.0.1]"
    );
    // Over TLS, from an address `set_real_ip_from` does not trust.
    assert_eq!(
        answers[9],
        "HTTP/1.1 200 OK | [2001:db8::1] [7000] [2001:db8::2] [443] [127.0.0.1] [127.0.0.1]"
    );
    assert!(
        errors
            .iter()
            .any(|e| e == "[error] broken header: \"GET / HTTP/1.0\\n\\n\" while reading PROXY protocol, client: 127.0.0.1, server: 127.0.0.1:PORT0"),
        "{errors:?}"
    );
}
