//! `Upgrade` requests (WebSocket) through the proxy, as nginx tunnels them:
//! the usual `proxy_http_version 1.1` / `proxy_set_header Upgrade
//! $http_upgrade` / `proxy_set_header Connection "upgrade"` location, a
//! WebSocket echo backend, and a WebSocket client (tungstenite on both
//! sides: no hand-written framing). Where the result can be compared, the
//! same config runs through nginx too and must give the same.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};
use waypost_tests::{free_ports, serial, wrap_http, Server};

/// A backend that answers a request with `Upgrade: websocket` by a
/// WebSocket echo, one with `Upgrade: raw-echo` by echoing raw bytes after
/// its 101, `.../switch` by a 101 whatever was asked, and anything else by a
/// plain keep-alive `200` whose body names the connection (`conn=N`).
/// It keeps every request head it saw.
struct Backend {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            let conns = AtomicU32::new(0);
            for stream in listener.incoming().flatten() {
                let id = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let seen = seen.clone();
                std::thread::spawn(move || backend_conn(stream, id, &seen));
            }
        });
        Backend { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads one request head from `stream` into `buf`: the head, with what
/// was read past it left in `buf`. `None` when the peer closed first.
fn next_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A header's value in a head, by name in any case.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn backend_conn(mut stream: TcpStream, id: u32, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    while let Some(head) = next_head(&mut stream, &mut buf) {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let upgrade = header(&head, "upgrade").map(str::to_ascii_lowercase);
        if path.ends_with("/switch") {
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\nunasked",
            );
            return;
        }
        match upgrade.as_deref() {
            Some("websocket") => {
                let key = header(&head, "sec-websocket-key").unwrap_or("");
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                let mut ws = WebSocket::from_partially_read(stream, buf, Role::Server, None);
                loop {
                    match ws.read() {
                        Ok(m) if m.is_text() || m.is_binary() => {
                            if ws.send(m).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
            Some("raw-echo") => {
                let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\n";
                if stream.write_all(reply).is_err() || stream.write_all(&buf).is_err() {
                    return;
                }
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&chunk[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            _ => {
                let body = format!("conn={id}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// The WebSocket location of the tests: the usual nginx config, the
/// tunnel's timeout `read_timeout`, logging `$status $upstream_status
/// $body_bytes_sent` to `logs/ws.log`; `/plain/` proxies without the
/// Upgrade headers, `/status` is waypost's status page (not for nginx).
fn conf(proxy: u16, backend: u16, read_timeout: &str, nginx: bool) -> String {
    let status = if nginx {
        ""
    } else {
        "        location = /status { status; }\n"
    };
    wrap_http(
        &format!(
            "\x20   log_format ws '$status $upstream_status $body_bytes_sent';\n\
             \x20   upstream backend {{\n\
             \x20       server 127.0.0.1:{backend};\n\
             \x20       keepalive 4;\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       location /ws/ {{\n\
             \x20           proxy_pass http://backend;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Upgrade $http_upgrade;\n\
             \x20           proxy_set_header Connection \"upgrade\";\n\
             \x20           proxy_read_timeout {read_timeout};\n\
             \x20           access_log logs/ws.log ws;\n\
             \x20       }}\n\
             \x20       location /plain/ {{\n\
             \x20           proxy_pass http://backend;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20           access_log logs/ws.log ws;\n\
             \x20       }}\n\
             {status}\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// A WebSocket client connected through the proxy on `port` to `path`.
fn ws_connect(port: u16, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (ws, resp) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake through :{port}{path}: {e}"));
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    ws
}

/// Sends `msg` and returns the echo.
fn echo(ws: &mut WebSocket<TcpStream>, msg: Message) -> Message {
    ws.send(msg).expect("send");
    loop {
        match ws.read().expect("echo") {
            m if m.is_text() || m.is_binary() => return m,
            _ => {}
        }
    }
}

/// Reads until the connection ends (within `within`): true when it ended,
/// false when it was still open at the deadline. Messages are ignored.
fn closes_within(ws: &mut WebSocket<TcpStream>, within: Duration) -> bool {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // Closed: the end of the stream (without a close frame, as a
            // proxy's timeout closes it), or a reset.
            Err(_) => return true,
        }
    }
    false
}

/// One echo session: texts and binaries both ways, then a clean close.
fn session(port: u16) -> Vec<String> {
    let mut ws = ws_connect(port, "/ws/chat");
    let mut got = Vec::new();
    for i in 0..5 {
        let m = echo(&mut ws, Message::text(format!("hello {i}")));
        got.push(m.into_text().expect("text").to_string());
    }
    for size in [1usize, 200, 70_000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let m = echo(&mut ws, Message::binary(data.clone()));
        assert_eq!(m.into_data().as_ref(), &data[..], "binary of {size}");
        got.push(format!("binary {size}"));
    }
    ws.close(None).expect("close");
    // The close handshake completes: the backend's close frame comes
    // back through the tunnel, then the connection ends.
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => got.push("close".to_owned()),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("after close: {e}"),
        }
    }
    got
}

/// The same echo session through nginx and waypost: the same messages
/// back, and the same access log line, written when the tunnel ends
/// (status 101, the upstream's 101, the bytes the backend sent).
#[test]
fn echo_round_trip_as_nginx() {
    let mut results = Vec::new();
    for nginx in [true, false] {
        let backend = Backend::start();
        let port = free_ports(1)[0];
        let server = Server::either(nginx, &conf(port, backend.port, "60s", nginx), &[port]);
        let got = session(port);
        let log = server.wait_lines("logs/ws.log", 1);
        let head = backend.heads().first().cloned().unwrap_or_default();
        // Upgrade reaches the backend through proxy_set_header only.
        assert_eq!(header(&head, "upgrade"), Some("websocket"), "{head}");
        assert_eq!(header(&head, "connection"), Some("upgrade"), "{head}");
        assert!(head.starts_with("GET /ws/chat HTTP/1.1\r\n"), "{head}");
        results.push((got, log));
    }
    let (nginx, waypost) = (&results[0], &results[1]);
    assert_eq!(nginx.0.len(), 9, "{:?}", nginx.0);
    assert_eq!(nginx.0[0], "hello 0");
    assert_eq!(nginx.0.last().map(String::as_str), Some("close"));
    assert_eq!(waypost, nginx, "waypost, then nginx");
    assert!(waypost.1[0].starts_with("101 101 "), "{:?}", waypost.1);
}

/// Bytes the client sends right behind its request head (read with it)
/// and bytes the upstream sends right behind its 101 both get through,
/// in order, the same as with nginx.
#[test]
fn early_bytes_cross_as_nginx() {
    let mut results = Vec::new();
    for nginx in [true, false] {
        let backend = Backend::start();
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &conf(port, backend.port, "60s", nginx), &[port]);
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(
            b"GET /ws/raw HTTP/1.1\r\nHost: x\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\nearly bytes;",
        )
        .expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let want_then = |got: &[u8], tail: &[u8]| got.windows(tail.len()).any(|w| w == tail);
        while !want_then(&got, b"\r\n\r\nearly bytes;") {
            let n = s.read(&mut chunk).expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"later").expect("write");
        while !got.ends_with(b"later") {
            let n = s.read(&mut chunk).expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert_eq!(header(head, "connection"), Some("upgrade"), "{head}");
        assert_eq!(header(head, "upgrade"), Some("raw-echo"), "{head}");
        results.push(rest.to_owned());
    }
    assert_eq!(results[0], "early bytes;later");
    assert_eq!(results[1], results[0]);
}

/// An idle tunnel ends at `proxy_read_timeout` (nginx closes it, and logs
/// the timeout at info); a message sent right after opening echoes.
#[test]
fn idle_tunnel_closes_at_proxy_read_timeout() {
    let _serial = serial();
    for nginx in [true, false] {
        let backend = Backend::start();
        let port = free_ports(1)[0];
        let conf = conf(port, backend.port, "1s", nginx).replace(
            "error_log logs/error.log;",
            "error_log logs/error.log info;",
        );
        let server = Server::either(nginx, &conf, &[port]);
        let mut ws = ws_connect(port, "/ws/idle");
        let m = echo(&mut ws, Message::text("right away"));
        assert_eq!(m.into_text().expect("text").as_str(), "right away");
        assert!(
            closes_within(&mut ws, Duration::from_secs(15)),
            "nginx={nginx}: the idle tunnel is still open"
        );
        let log = server.wait_lines("logs/ws.log", 1);
        assert!(log[0].starts_with("101 101 "), "nginx={nginx}: {log:?}");
        let errors = server.read("logs/error.log");
        let line = errors.lines().find(|l| {
            l.contains(
                "upstream timed out (110: Connection timed out) while proxying upgraded connection, \
                 client: 127.0.0.1, server: , request: \"GET /ws/idle HTTP/1.1\", upstream: \"http://127.0.0.1:",
            )
        });
        assert!(
            line.is_some_and(|l| l.contains(" [info] ")),
            "nginx={nginx}: {errors}"
        );
    }
}

/// Traffic keeps a tunnel open past its timeout: nginx re-arms the
/// upstream's read timer on every event of the tunnel. Messages flow for
/// well over the 2 s timeout (one each 100 ms: a failure needs a 2 s
/// stall), then the idle tunnel closes.
#[test]
fn traffic_keeps_a_tunnel_open() {
    let _serial = serial();
    let backend = Backend::start();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&conf(port, backend.port, "2s", false), &[port]);
    let mut ws = ws_connect(port, "/ws/busy");
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let text = format!("tick {sent}");
        let m = echo(&mut ws, Message::text(text.clone()));
        assert_eq!(m.into_text().expect("text").as_str(), text);
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent > 5, "{sent}");
    assert!(closes_within(&mut ws, Duration::from_secs(15)));
}

/// Upgrade is hop-by-hop: without `proxy_set_header Upgrade` the backend
/// never sees it, answers an ordinary 200, and the client's handshake
/// fails, in both programs.
#[test]
fn upgrade_reaches_the_backend_only_when_set() {
    for nginx in [true, false] {
        let backend = Backend::start();
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &conf(port, backend.port, "60s", nginx), &[port]);
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        match tungstenite::client(format!("ws://127.0.0.1:{port}/plain/x"), stream) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                assert_eq!(resp.status(), 200, "nginx={nginx}");
            }
            Err(e) => panic!("nginx={nginx}: {e}"),
            Ok(_) => panic!("nginx={nginx}: upgraded without proxy_set_header"),
        }
        let heads = backend.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert_eq!(header(&heads[0], "upgrade"), None, "{}", heads[0]);
    }
}

/// A 101 to a request that asked for no upgrade is refused: 502 and the
/// reason in the error log (nginx 1.22 passes it on; README: differences).
#[test]
fn unsolicited_switch_is_a_bad_gateway() {
    let backend = Backend::start();
    let port = free_ports(1)[0];
    let server = Server::waypost(&conf(port, backend.port, "60s", false), &[port]);
    let resp = waypost_tests::get(port, "/ws/switch");
    assert_eq!(resp.status, 502);
    let log = server.wait_lines("logs/ws.log", 1);
    assert_eq!(log[0], "502 502 152", "{log:?}");
    let errors = server.read("logs/error.log");
    assert!(
        errors.contains("upstream sent unsolicited \"101 Switching Protocols\" while reading response header from upstream"),
        "{errors}"
    );
}

/// An upgraded upstream connection is the tunnel's: it never returns to
/// the keepalive pool. The WebSocket request takes the idle connection a
/// plain request left; after the tunnel, plain requests need a new one.
#[test]
fn a_tunnelled_connection_is_not_pooled() {
    let backend = Backend::start();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&conf(port, backend.port, "60s", false), &[port]);
    assert_eq!(waypost_tests::get(port, "/plain/a").body, "conn=1");
    assert_eq!(waypost_tests::get(port, "/plain/b").body, "conn=1");
    let mut ws = ws_connect(port, "/ws/pooled");
    echo(&mut ws, Message::text("x"));
    ws.close(None).expect("close");
    while ws.read().is_ok() {}
    assert_eq!(waypost_tests::get(port, "/plain/c").body, "conn=2");
    assert_eq!(waypost_tests::get(port, "/plain/d").body, "conn=2");
    let heads = backend.heads();
    assert_eq!(heads.len(), 5, "{heads:?}");
}

/// A tunnel counts as the peer's active connection while it is open (as
/// nginx frees the peer when the tunnel ends, for least_conn and
/// max_conns), and the count goes back to 0 when it ends.
#[test]
fn open_tunnels_count_as_active_connections() {
    let backend = Backend::start();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&conf(port, backend.port, "60s", false), &[port]);
    let active = || -> u64 {
        let status: serde_json::Value =
            serde_json::from_str(&waypost_tests::get(port, "/status").body).expect("json");
        status["upstreams"]["backend"]["peers"][0]["active"]
            .as_u64()
            .expect("active")
    };
    assert_eq!(active(), 0);
    let mut first = ws_connect(port, "/ws/one");
    let mut second = ws_connect(port, "/ws/two");
    echo(&mut first, Message::text("1"));
    echo(&mut second, Message::text("2"));
    assert_eq!(active(), 2);
    first.close(None).expect("close");
    while first.read().is_ok() {}
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while active() != 0 {
        assert!(Instant::now() < deadline, "tunnels still counted");
        std::thread::sleep(Duration::from_millis(20));
    }
}
