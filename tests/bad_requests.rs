//! Heads nginx refuses while it reads them, side by side with nginx 1.22:
//! the status, the access log line (the default server's) and the `info`
//! line that says why (`client sent invalid method while reading client
//! request line, client: ..., server: ..., request: "..."`), or `error`
//! for a bad chunked body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use waypost_tests::{free_ports, info_log, wrap_http, Server};

/// Each request, and what nginx answers it (checked below).
fn requests() -> Vec<(Vec<u8>, u16)> {
    let mut cases: Vec<(Vec<u8>, u16)> = [
        (&b"GET / HTTP/1.1\r\nHost: h\r\nX Foo: a\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nXFoo : a\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nUser-Agent: ua\r\nHost: a\r\n: a\r\n\r\n", 400),
        // A line ignored, then one refused: both logged; the ignored
        // one's header is not in the access log line.
        (
            b"GET / HTTP/1.1\r\nX_Under: 1\r\nX@Y: 2\r\nHost: a\r\nX Y: 3\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nX@Y: 1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
            501,
        ),
        (b"GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX@Y: 1\r\nhost: a\r\nHOST: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: 1\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400),
        (b"GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /%2E%2e/q.php?a=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a%00b?x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a/./b/../c?x=1 HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET /p?q=1 HTTP/1.1x\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET http://x.com/p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nX@Y: 1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
    ]
    .iter()
    .map(|(r, s)| (r.to_vec(), *s))
    .collect();
    // Past `large_client_header_buffers 4 8k`: the request line, a line.
    let mut long_uri = b"GET /".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', 9000));
    long_uri.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    cases.push((long_uri, 414));
    let mut long_line = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 9000));
    long_line.extend_from_slice(b"\r\n\r\n");
    cases.push((long_line, 400));
    cases
}

/// What `nginx` (else waypost) says of each request: the statuses, the
/// access log lines and the error log's lines about the client.
fn run(nginx: bool) -> (Vec<u16>, Vec<String>, Vec<String>) {
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let conf = info_log(&wrap_http(
        &format!(
            "    log_format t '$request|$status|$http_user_agent|$http_x_under|$connection_requests|$uri|$request_uri|$args|$is_args|$request_length';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/access.log t;\n\
             \x20       location / {{ return 200; }}\n\
             \x20   }}\n"
        ),
        nginx,
    ));
    let server = Server::either(nginx, &conf, &[port]);
    let cases = requests();
    let statuses = cases
        .iter()
        .map(|(request, _)| {
            let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            client.write_all(request).expect("send");
            // Each is answered, then the connection closes.
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got);
            let status = String::from_utf8_lossy(&got)
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            status
        })
        .collect();
    // A line may be written after its client read the answer and the next
    // request went out (nginx's too): the lines are compared sorted, not
    // in the order two connections happened to write them.
    let mut access = server.wait_lines("logs/access.log", cases.len());
    access.sort();
    let errors = server.log_messages("client sent");
    (statuses, access, errors)
}

#[test]
fn refused_heads_are_answered_and_logged_as_nginx_does() {
    let theirs = run(true);
    let expected: Vec<u16> = requests().iter().map(|(_, status)| *status).collect();
    assert_eq!(theirs.0, expected, "nginx's statuses, the reference");
    // One line each, and one more for each ignored line.
    assert_eq!(theirs.2.len(), expected.len() + 6, "{:#?}", theirs.2);
    assert!(
        theirs.2[0].starts_with(
            "client sent invalid header line: \"X\\x20...\" while reading client request headers, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", host: \"h\""
        ),
        "{}",
        theirs.2[0]
    );
    let ours = run(false);
    assert_eq!(ours.0, theirs.0, "statuses");
    assert_eq!(ours.1, theirs.1, "access log lines");
    for (ours, theirs) in ours.2.iter().zip(&theirs.2) {
        // Both cut a line at 2,048 bytes, after prefixes of their own
        // lengths (pid, worker): long ones are compared as far as both go.
        let n = ours.len().min(theirs.len()).min(1900);
        assert_eq!(ours.get(..n), theirs.get(..n));
        assert!(ours.len() == theirs.len() || n == 1900, "{ours}\n{theirs}");
    }
    assert_eq!(ours.2.len(), theirs.2.len(), "{:#?}", ours.2);
}

/// Request targets nginx takes though `http`'s URI type refuses their
/// bytes (`<`, `>`, a backquote in the path, `"` in the query, bytes from
/// 0x80 that are not UTF-8), in origin and absolute form, after empty
/// lines, and spaces nginx skips around the target and after the version.
const TAKEN: [&[u8]; 8] = [
    b"GET /a?x=\"<>` HTTP/1.1\r\n",
    b"GET /a<b>`c HTTP/1.1\r\n",
    b"GET /caf\xe9?q=\xe6 HTTP/1.1\r\n",
    b"GET /caf\xc3\xa9/%3C?q=\xc3\xa9< HTTP/1.1\r\n",
    b"GET  /spaced   HTTP/1.1\r\n",
    b"GET /trailing HTTP/1.1  \r\n",
    b"GET http://x/a<b?c=\"d\" HTTP/1.1\r\n",
    b"\r\nGET /b\xe9 HTTP/1.1\r\n",
];

/// Each of [`TAKEN`]'s answers, status and body (`$uri|$request_uri`).
fn taken(nginx: bool) -> Vec<Vec<u8>> {
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let conf = wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 \"$uri|$request_uri\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    );
    let _server = Server::either(nginx, &conf, &[port]);
    TAKEN
        .iter()
        .map(|line| {
            let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut request = line.to_vec();
            request.extend_from_slice(b"Host: h\r\nConnection: close\r\n\r\n");
            client.write_all(&request).expect("send");
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got);
            let status = got
                .split(|&c| c == b'\r')
                .next()
                .unwrap_or_default()
                .to_vec();
            let body = got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(&[][..], |at| &got[at + 4..]);
            [status, b" ".to_vec(), body.to_vec()].concat()
        })
        .collect()
}

#[test]
fn targets_nginx_takes_are_taken_with_nginx_uri() {
    let theirs = taken(true);
    let ours = taken(false);
    // nginx passes the bytes on raw; waypost's `$request_uri` has them
    // percent-encoded (the README's difference), `$uri` is nginx's.
    let expected: [&[u8]; 8] = [
        b"HTTP/1.1 200 OK /a|/a?x=\"<>`",
        b"HTTP/1.1 200 OK /a<b>`c|/a<b>`c",
        b"HTTP/1.1 200 OK /caf\xe9|/caf\xe9?q=\xe6",
        "HTTP/1.1 200 OK /café/<|/café/%3C?q=é<".as_bytes(),
        b"HTTP/1.1 200 OK /spaced|/spaced",
        b"HTTP/1.1 200 OK /trailing|/trailing",
        b"HTTP/1.1 200 OK /a<b|/a<b?c=\"d\"",
        b"HTTP/1.1 200 OK /b\xe9|/b\xe9",
    ];
    let waypost: [&[u8]; 8] = [
        b"HTTP/1.1 200 OK /a|/a?x=%22%3C%3E`",
        b"HTTP/1.1 200 OK /a<b>`c|/a%3Cb%3E%60c",
        b"HTTP/1.1 200 OK /caf\xe9|/caf%E9?q=%E6",
        "HTTP/1.1 200 OK /café/<|/café/%3C?q=é%3C".as_bytes(),
        b"HTTP/1.1 200 OK /spaced|/spaced",
        b"HTTP/1.1 200 OK /trailing|/trailing",
        b"HTTP/1.1 200 OK /a<b|/a%3Cb?c=%22d%22",
        b"HTTP/1.1 200 OK /b\xe9|/b%E9",
    ];
    for (i, line) in TAKEN.iter().enumerate() {
        // Bytes compared: a lossy text would make \xe9 and \xe6 alike.
        let shown = |b: &[u8]| b.escape_ascii().to_string();
        assert_eq!(
            shown(&theirs[i]),
            shown(expected[i]),
            "nginx, {}",
            shown(line)
        );
        assert_eq!(
            shown(&ours[i]),
            shown(waypost[i]),
            "waypost, {}",
            shown(line)
        );
    }
}
