//! `Upgrade` requests (WebSocket) through the proxy, as nginx tunnels them:
//! the usual `proxy_http_version 1.1` / `proxy_set_header Upgrade
//! $http_upgrade` / `proxy_set_header Connection "upgrade"` location, a
//! WebSocket echo backend, and a WebSocket client (tungstenite on both
//! sides: no hand-written framing), in cleartext and over TLS (`wss://`,
//! a rustls client trusting a test authority made with rcgen). Where the
//! result can be compared, the same config runs through nginx too and must
//! give the same.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};
use waypost_tests::{
    free_ports, next_head, raw_echo, read_until, serial, serve_numbered, wrap_http, Server, TempDir,
};

/// A backend that answers a request with `Upgrade: websocket` by a
/// WebSocket echo, one with `Upgrade: raw-echo` by echoing raw bytes after
/// its 101, one with `Upgrade: flood` by sending bytes after its 101 for
/// as long as they are taken, `.../switch` by a 101 whatever was asked, and
/// anything else by a plain keep-alive `200` whose body names the
/// connection (`conn=N`).
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
        serve_numbered(listener, move |stream, id| backend_conn(stream, id, &seen));
        Backend { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
            Some("flood") => {
                let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: flood\r\nConnection: Upgrade\r\n\r\n";
                if stream.write_all(reply).is_err() {
                    return;
                }
                let chunk = [b'f'; 65536];
                while stream.write_all(&chunk).is_ok() {}
                return;
            }
            Some("raw-echo") => {
                let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\n";
                raw_echo(&mut stream, reply, &buf);
                return;
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

/// A stream a WebSocket client runs on: TCP, or TLS over it.
trait Transport: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// A TLS client connection (blocking, over the socket's read timeout).
type Tls = StreamOwned<ClientConnection, TcpStream>;

impl Transport for Tls {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A WebSocket client connected through the proxy on `port` to `path`.
fn ws_connect(port: u16, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    handshake(stream, &format!("ws://127.0.0.1:{port}{path}"))
}

/// How clients reach the proxy: in cleartext ([`Plain`]) or over TLS
/// with a test authority ([`Pki`]).
trait Via {
    type Stream: Transport;
    /// [`conf`] for this way in.
    fn conf(&self, proxy: u16, backend: u16, read_timeout: &str, nginx: bool) -> String;
    /// A WebSocket client through the proxy on `port` to `path`.
    fn ws(&self, port: u16, path: &str) -> WebSocket<Self::Stream>;
    /// A connection to the proxy on `port` for raw requests, and the
    /// `Host` they name.
    fn raw(&self, port: u16) -> (Self::Stream, &'static str);
}

/// Cleartext.
struct Plain;

impl Via for Plain {
    type Stream = TcpStream;

    fn conf(&self, proxy: u16, backend: u16, read_timeout: &str, nginx: bool) -> String {
        conf(proxy, backend, read_timeout, nginx)
    }

    fn ws(&self, port: u16, path: &str) -> WebSocket<TcpStream> {
        ws_connect(port, path)
    }

    fn raw(&self, port: u16) -> (TcpStream, &'static str) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (s, "x")
    }
}

/// A test's backend and, in front of it, nginx or waypost.
struct Proxied {
    server: Server,
    port: u16,
    backend: Backend,
}

/// A backend, and nginx (`nginx`) or waypost on a port of its own
/// proxying to it, reached `via`, on [`Via::conf`] edited by `edit`.
fn start<V: Via>(
    via: &V,
    nginx: bool,
    read_timeout: &str,
    edit: impl FnOnce(String) -> String,
) -> Proxied {
    let backend = Backend::start();
    let port = free_ports(1)[0];
    let conf = edit(via.conf(port, backend.port, read_timeout, nginx));
    let server = Server::either(nginx, &conf, &[port]);
    Proxied {
        server,
        port,
        backend,
    }
}

/// `conf` with the error log at info (where nginx logs a tunnel's
/// timeouts).
fn info_log(conf: String) -> String {
    conf.replace(
        "error_log logs/error.log;",
        "error_log logs/error.log info;",
    )
}

/// The client's handshake for `url` on `stream`: it must be switched.
fn handshake<S: Read + Write>(stream: S, url: &str) -> WebSocket<S> {
    let (ws, resp) = tungstenite::client(url, stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake for {url}: {e}"));
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
fn echo<S: Read + Write>(ws: &mut WebSocket<S>, msg: Message) -> Message {
    ws.send(msg).expect("send");
    loop {
        match ws.read().expect("echo") {
            m if m.is_text() || m.is_binary() => return m,
            _ => {}
        }
    }
}

/// How a connection ended without a closing handshake.
#[derive(Debug, PartialEq)]
enum End {
    /// The end of the stream: a FIN, or over TLS a close_notify.
    Closed,
    /// TLS: the socket's end without a close_notify (a truncation, to
    /// the client).
    Truncated,
    /// Any other error, as text.
    Failed(String),
}

/// Reads until the connection ends (within `within`): how it ended, or
/// `None` when it was still open at the deadline. Messages are ignored.
fn end_within<S: Transport>(ws: &mut WebSocket<S>, within: Duration) -> Option<End> {
    ws.get_ref()
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // Without a close frame, as a proxy's timeout closes it.
            Err(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                return Some(End::Closed)
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                return Some(End::Truncated)
            }
            Err(e) => return Some(End::Failed(e.to_string())),
        }
    }
    None
}

/// Whether the connection ends within `within` (in any way).
fn closes_within<S: Transport>(ws: &mut WebSocket<S>, within: Duration) -> bool {
    end_within(ws, within).is_some()
}

/// One echo session: texts and binaries of `sizes` both ways, then a
/// clean close.
fn session<S: Read + Write>(mut ws: WebSocket<S>, sizes: &[usize]) -> Vec<String> {
    let mut got = Vec::new();
    for i in 0..5 {
        let m = echo(&mut ws, Message::text(format!("hello {i}")));
        got.push(m.into_text().expect("text").to_string());
    }
    for &size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let m = echo(&mut ws, Message::binary(data.clone()));
        assert_eq!(m.into_data().as_ref(), &data[..], "binary of {size}");
        got.push(format!("binary {size}"));
    }
    ws.close(None).expect("close");
    // The close handshake completes: the backend's close frame comes
    // back through the tunnel, then the connection ends (over TLS with a
    // close_notify: an end without one is an error to rustls).
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

/// The echo session with binaries of `sizes` through nginx, then
/// waypost, each reached by a new `via()`: each one's messages back and
/// access log line. `check` is given the request heads the backend saw.
fn echo_as_nginx<V: Via>(
    via: impl Fn() -> V,
    sizes: &[usize],
    check: impl Fn(bool, &[String]),
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut results = Vec::new();
    for nginx in [true, false] {
        let via = via();
        let p = start(&via, nginx, "60s", |c| c);
        let got = session(via.ws(p.port, "/ws/chat"), sizes);
        let log = p.server.wait_lines("logs/ws.log", 1);
        check(nginx, &p.backend.heads());
        results.push((got, log));
    }
    results
}

/// The echo session's request as the backend saw it: Upgrade reaches
/// the backend through proxy_set_header only.
fn assert_chat_head(head: &str) {
    assert_eq!(header(head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(header(head, "connection"), Some("upgrade"), "{head}");
    assert!(head.starts_with("GET /ws/chat HTTP/1.1\r\n"), "{head}");
}

/// The same echo session through nginx and waypost: the same messages
/// back, and the same access log line, written when the tunnel ends
/// (status 101, the upstream's 101, the bytes the backend sent).
#[test]
fn echo_round_trip_as_nginx() {
    let results = echo_as_nginx(
        || Plain,
        &[1, 200, 70_000],
        |_, heads| {
            assert_chat_head(&heads.first().cloned().unwrap_or_default());
        },
    );
    let (nginx, waypost) = (&results[0], &results[1]);
    assert_eq!(nginx.0.len(), 9, "{:?}", nginx.0);
    assert_eq!(nginx.0[0], "hello 0");
    assert_eq!(nginx.0.last().map(String::as_str), Some("close"));
    assert_eq!(waypost, nginx, "waypost, then nginx");
    assert!(waypost.1[0].starts_with("101 101 "), "{:?}", waypost.1);
}

/// A raw-echo upgrade with bytes right behind its request head (one
/// write), then more bytes once those came back, through nginx, then
/// waypost, each reached by a new `via()`: each one's 101 head (checked
/// to be a switch to raw-echo) and what came back behind it.
fn early_bytes_as_nginx<V: Via>(via: impl Fn() -> V) -> Vec<(String, String)> {
    let mut results = Vec::new();
    for nginx in [true, false] {
        let via = via();
        let p = start(&via, nginx, "60s", |c| c);
        let (mut s, host) = via.raw(p.port);
        let request = format!(
            "GET /ws/raw HTTP/1.1\r\nHost: {host}\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\nearly bytes;"
        );
        // One write, so (over TLS) one record: the head and what follows it.
        s.write_all(request.as_bytes()).expect("write");
        let mut got = Vec::new();
        let tail = b"\r\n\r\nearly bytes;";
        read_until(&mut s, &mut got, "closed early", |got| {
            got.windows(tail.len()).any(|w| w == tail)
        });
        s.write_all(b"later").expect("write");
        read_until(&mut s, &mut got, "closed", |got| got.ends_with(b"later"));
        let text = String::from_utf8_lossy(&got).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert_eq!(header(head, "upgrade"), Some("raw-echo"), "{head}");
        results.push((head.to_owned(), rest.to_owned()));
    }
    results
}

/// Bytes the client sends right behind its request head (read with it)
/// and bytes the upstream sends right behind its 101 both get through,
/// in order, the same as with nginx.
#[test]
fn early_bytes_cross_as_nginx() {
    let results = early_bytes_as_nginx(|| Plain);
    for (head, _) in &results {
        assert_eq!(header(head, "connection"), Some("upgrade"), "{head}");
    }
    assert_eq!(results[0].1, "early bytes;later");
    assert_eq!(results[1].1, results[0].1);
}

/// An idle tunnel with `proxy_read_timeout 1s` through nginx, then
/// waypost, each reached by a new `via()`: a message sent right after
/// opening echoes, the tunnel ends, and the timeout is logged at info.
/// How the client's connection ended, in each.
fn idle_tunnel_ends<V: Via>(via: impl Fn() -> V) -> Vec<End> {
    let mut ends = Vec::new();
    for nginx in [true, false] {
        let via = via();
        let p = start(&via, nginx, "1s", info_log);
        let mut ws = via.ws(p.port, "/ws/idle");
        let m = echo(&mut ws, Message::text("right away"));
        assert_eq!(m.into_text().expect("text").as_str(), "right away");
        let end = end_within(&mut ws, Duration::from_secs(15));
        ends.push(end.unwrap_or_else(|| panic!("nginx={nginx}: the idle tunnel is still open")));
        let log = p.server.wait_lines("logs/ws.log", 1);
        assert!(log[0].starts_with("101 101 "), "nginx={nginx}: {log:?}");
        let errors = p.server.read("logs/error.log");
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
    ends
}

/// An idle tunnel ends at `proxy_read_timeout` (nginx closes it, and logs
/// the timeout at info); a message sent right after opening echoes.
#[test]
fn idle_tunnel_closes_at_proxy_read_timeout() {
    let _serial = serial();
    idle_tunnel_ends(|| Plain);
}

/// Traffic keeps a tunnel open past its timeout: nginx re-arms the
/// upstream's read timer on every event of the tunnel. Messages flow for
/// well over the 2 s timeout (one each 100 ms: a failure needs a 2 s
/// stall), then the idle tunnel closes.
#[test]
fn traffic_keeps_a_tunnel_open() {
    let _serial = serial();
    let Proxied {
        server: _server,
        port,
        ..
    } = start(&Plain, false, "2s", |c| c);
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
        let Proxied {
            server: _server,
            port,
            backend,
        } = start(&Plain, nginx, "60s", |c| c);
        let (stream, _) = Plain.raw(port);
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
    let Proxied { server, port, .. } = start(&Plain, false, "60s", |c| c);
    let resp = waypost_tests::get(port, "/ws/switch");
    assert_eq!(resp.status, 502);
    let log = server.wait_lines("logs/ws.log", 1);
    assert_eq!(log[0], "502 502 152", "{log:?}");
    assert_unsolicited_switch_logged(&server);
}

/// The error log says why a backend's 101 was refused.
fn assert_unsolicited_switch_logged(server: &Server) {
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
    let Proxied {
        server: _server,
        port,
        backend,
    } = start(&Plain, false, "60s", |c| c);
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
    let Proxied {
        server: _server,
        port,
        ..
    } = start(&Plain, false, "60s", |c| c);
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

// --- Over TLS (`listen ... ssl`): the tunnel runs on the client's TLS
// connection, and HTTP/2 on the same address has no Upgrade at all.

/// A test authority and the certificate it issued for `localhost`,
/// written to a directory of their own: `ws.pem` and `ws.key` for the
/// servers, `ca.pem` for curl.
struct Pki {
    dir: TempDir,
    ca: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "waypost test CA");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("certificate");
        let dir = TempDir::new("ws-tls");
        dir.write("ws.pem", &cert.pem());
        dir.write("ws.key", &key.serialize_pem());
        dir.write("ca.pem", &ca.pem());
        Pki {
            dir,
            ca: ca.der().clone(),
        }
    }

    /// A TLS connection to `localhost` on `port`, verified against the
    /// test authority only, offering `alpn`; handshaken.
    fn connect(&self, port: u16, alpn: &[&[u8]]) -> Tls {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                panic!("TLS handshake with :{port}: {e}");
            }
        }
        tls
    }
}

/// [`conf`] with the server on TLS with `pki`'s certificate; `http2`
/// too, so that ALPN offers `h2` beside `http/1.1` (`listen ... ssl
/// http2`: nginx 1.22 has no `http2` directive), and TLS 1.3 in both
/// (nginx 1.22's default is up to TLS 1.2).
fn tls_conf(proxy: u16, backend: u16, read_timeout: &str, nginx: bool, pki: &Pki) -> String {
    let plain = format!("listen 127.0.0.1:{proxy};\n");
    let conf = conf(proxy, backend, read_timeout, nginx);
    assert!(conf.contains(&plain), "{conf}");
    let d = pki.dir.path.display();
    conf.replace(
        &plain,
        &format!(
            "listen 127.0.0.1:{proxy} ssl http2;\n\
             \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20       ssl_certificate {d}/ws.pem;\n\
             \x20       ssl_certificate_key {d}/ws.key;\n"
        ),
    )
}

/// A `wss://` client through the proxy on `port` to `path`: TLS with
/// ALPN `http/1.1` only, as browsers open WebSockets.
fn wss_connect(pki: &Pki, port: u16, path: &str) -> WebSocket<Tls> {
    let tls = pki.connect(port, &[b"http/1.1"]);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    handshake(tls, &format!("wss://localhost:{port}{path}"))
}

impl Via for Pki {
    type Stream = Tls;

    fn conf(&self, proxy: u16, backend: u16, read_timeout: &str, nginx: bool) -> String {
        tls_conf(proxy, backend, read_timeout, nginx, self)
    }

    fn ws(&self, port: u16, path: &str) -> WebSocket<Tls> {
        wss_connect(self, port, path)
    }

    fn raw(&self, port: u16) -> (Tls, &'static str) {
        (self.connect(port, &[b"http/1.1"]), "localhost")
    }
}

/// The echo session over TLS through nginx and waypost: the same
/// messages back (one of 70,000 bytes crosses several TLS records, one of
/// 1,000,000 some sixty), the clean close ending with a close_notify, and
/// the same access log line.
#[test]
fn wss_echo_round_trip_as_nginx() {
    let results = echo_as_nginx(Pki::new, &[1, 200, 70_000, 1_000_000], |nginx, heads| {
        assert_eq!(heads.len(), 1, "nginx={nginx}: {heads:?}");
        assert_chat_head(&heads[0]);
    });
    let (nginx, waypost) = (&results[0], &results[1]);
    assert_eq!(nginx.0.len(), 10, "{:?}", nginx.0);
    assert_eq!(nginx.0[9], "close");
    assert_eq!(waypost, nginx, "waypost, then nginx");
    assert!(waypost.1[0].starts_with("101 101 "), "{:?}", waypost.1);
}

/// The client refreshes its TLS keys in the middle of a tunnel (a TLS 1.3
/// KeyUpdate asking for the server's too): messages keep flowing both
/// ways, in both programs.
#[test]
fn wss_tunnel_survives_a_key_update_as_nginx() {
    for nginx in [true, false] {
        let pki = Pki::new();
        let p = start(&pki, nginx, "60s", |c| c);
        let mut ws = wss_connect(&pki, p.port, "/ws/keys");
        assert_eq!(
            ws.get_ref().conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        for round in 0..3 {
            let text = format!("round {round}");
            let m = echo(&mut ws, Message::text(text.clone()));
            assert_eq!(m.into_text().expect("text").as_str(), text, "nginx={nginx}");
            ws.get_mut()
                .conn
                .refresh_traffic_keys()
                .expect("key update");
            let data = vec![round as u8; 100_000];
            let m = echo(&mut ws, Message::binary(data.clone()));
            assert_eq!(m.into_data().as_ref(), &data[..], "nginx={nginx}");
        }
        ws.close(None).expect("close");
        loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("nginx={nginx}: after close: {e}"),
            }
        }
    }
}

/// Bytes sent behind the request head in the same TLS record, and bytes
/// the backend sends behind its 101, cross the TLS tunnel in order, as
/// in cleartext and as nginx does.
#[test]
fn early_bytes_cross_over_tls_as_nginx() {
    let results = early_bytes_as_nginx(Pki::new);
    assert_eq!(results[0].1, "early bytes;later");
    assert_eq!(results[1].1, results[0].1);
}

/// An idle tunnel over TLS ends at `proxy_read_timeout` as in cleartext:
/// logged at info the same way, and the client's connection ends as
/// nginx ends it (a close_notify, then the socket's end).
#[test]
fn idle_wss_tunnel_closes_at_proxy_read_timeout() {
    let _serial = serial();
    let ends = idle_tunnel_ends(Pki::new);
    assert_eq!(ends[0], End::Closed, "nginx");
    assert_eq!(ends[1], ends[0], "waypost, then nginx");
}

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// curl over HTTP/2 to `path` on the proxy on `port` (as `localhost`),
/// trusting `pki`'s authority, with `args` before the URL: whether it
/// succeeded, and its output (stdout, then stderr).
fn curl_h2(pki: &Pki, port: u16, path: &str, args: &[&str]) -> (bool, String) {
    let ca = pki.dir.path.join("ca.pem");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}{path}");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &resolve])
        .args(args)
        .arg(&url)
        .output()
        .expect("run curl (apt-get install curl)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// HTTP/2 has no Upgrade (RFC 9113 §8.6). A WebSocket handshake's headers
/// sent with curl over HTTP/2 make an ordinary request: curl leaves out
/// the connection-specific `Upgrade` and `Connection`, as the RFC has
/// clients do, so `$http_upgrade` is empty, the backend sees no `Upgrade`
/// and answers 200, and that is the answer, in both programs.
#[test]
fn upgrade_over_http2_is_an_ordinary_request_as_nginx() {
    let mut results = Vec::new();
    for nginx in [true, false] {
        let pki = Pki::new();
        let Proxied {
            server,
            port,
            backend,
        } = start(&pki, nginx, "60s", |c| c);
        let key = format!("Sec-WebSocket-Key: {WS_KEY}");
        let (ok, text) = curl_h2(
            &pki,
            port,
            "/ws/h2",
            &[
                "-w",
                "\n%{http_code} %{http_version}",
                "-H",
                "Upgrade: websocket",
                "-H",
                "Connection: Upgrade",
                "-H",
                &key,
                "-H",
                "Sec-WebSocket-Version: 13",
            ],
        );
        assert!(ok, "nginx={nginx}: {text}");
        let log = server.wait_lines("logs/ws.log", 1);
        let heads = backend.heads();
        assert_eq!(heads.len(), 1, "nginx={nginx}: {heads:?}");
        let head = &heads[0];
        assert!(head.starts_with("GET /ws/h2 HTTP/1.1\r\n"), "{head}");
        assert_eq!(header(head, "upgrade"), None, "nginx={nginx}: {head}");
        // `proxy_set_header Connection "upgrade"` is unconditional.
        assert_eq!(header(head, "connection"), Some("upgrade"), "{head}");
        assert_eq!(header(head, "sec-websocket-key"), Some(WS_KEY), "{head}");
        results.push((text, log));
    }
    assert_eq!(
        results[0],
        ("conn=1\n200 2".to_owned(), vec!["200 200 6".to_owned()])
    );
    assert_eq!(results[1], results[0], "waypost, then nginx");
}

// HTTP/2 frames, for the one test below that needs a client sending
// what curl will not send. No HTTP/2 library is among the tests'
// dependencies, so the few frames are written here; HPACK blocks are
// literals (no indexing, no Huffman) and received ones are not decoded.
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;
const PROTOCOL_ERROR: u32 = 1;

/// An HTTP/2 client connection, over TLS with ALPN `h2`.
struct H2 {
    tls: Tls,
}

impl H2 {
    fn connect(pki: &Pki, port: u16) -> H2 {
        let tls = pki.connect(port, &[b"h2"]);
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = H2 { tls };
        h2.tls
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .expect("preface");
        h2.frame(SETTINGS, 0, 0, &[]);
        h2
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("length").to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tls.write_all(&frame).expect("write a frame");
    }

    /// A GET of `path` without a body on `stream`, with `headers` after
    /// the pseudo-headers.
    fn get(&mut self, stream: u32, port: u16, path: &str, headers: &[(&str, &str)]) {
        let authority = format!("localhost:{port}");
        let pseudo = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority.as_str()),
            (":path", path),
        ];
        let mut block = Vec::new();
        for (name, value) in pseudo.iter().chain(headers) {
            // Literal without indexing, new name; each string's length
            // in one byte (7-bit prefix, no Huffman).
            block.push(0);
            for text in [name, value] {
                let len = u8::try_from(text.len()).ok().filter(|&l| l < 127);
                block.push(len.expect("a short string"));
                block.extend_from_slice(text.as_bytes());
            }
        }
        self.frame(HEADERS, END_STREAM | END_HEADERS, stream, &block);
    }

    /// The next frame: type, flags, stream, payload. SETTINGS are
    /// acknowledged.
    fn next(&mut self) -> (u8, u8, u32, Vec<u8>) {
        let mut head = [0u8; 9];
        self.tls.read_exact(&mut head).expect("a frame's header");
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        self.tls
            .read_exact(&mut payload)
            .expect("a frame's payload");
        if head[3] == SETTINGS && head[4] & ACK == 0 {
            self.frame(SETTINGS, ACK, 0, &[]);
        }
        (head[3], head[4], stream, payload)
    }
}

/// A client that does send `Upgrade` and `Connection` on an HTTP/2
/// stream sends a malformed request (RFC 9113 §8.2.2): waypost resets
/// that stream with PROTOCOL_ERROR, nothing reaches the backend, and the
/// connection goes on serving. (nginx 1.22 takes `$http_upgrade` from such
/// a stream and passes `Upgrade` on; README: TLS and HTTP/2.)
#[test]
fn upgrade_headers_on_an_http2_stream_reset_it() {
    let pki = Pki::new();
    let Proxied {
        mut server,
        port,
        backend,
    } = start(&pki, false, "60s", |c| c);
    let mut h2 = H2::connect(&pki, port);
    h2.get(
        1,
        port,
        "/ws/h2",
        &[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", WS_KEY),
            ("sec-websocket-version", "13"),
        ],
    );
    h2.get(3, port, "/ws/after", &[]);
    let (mut reset, mut body, mut ended) = (None, Vec::new(), false);
    while reset.is_none() || !ended {
        let (kind, flags, stream, payload) = h2.next();
        match (kind, stream) {
            (RST_STREAM, 1) => {
                let code = payload.get(..4).and_then(|c| c.try_into().ok());
                reset = Some(u32::from_be_bytes(code.expect("an error code")));
            }
            (HEADERS | DATA, 1) => panic!("an answer to the upgrade: {kind} {payload:?}"),
            (DATA, 3) => {
                body.extend_from_slice(&payload);
                ended = flags & END_STREAM != 0;
            }
            (GOAWAY, _) => panic!("GOAWAY {payload:?}"),
            _ => {}
        }
    }
    assert_eq!(reset, Some(PROTOCOL_ERROR));
    assert_eq!(String::from_utf8_lossy(&body), "conn=1");
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /ws/after HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert_eq!(header(&heads[0], "upgrade"), None, "{}", heads[0]);
    let log = server.wait_lines("logs/ws.log", 1);
    assert_eq!(log, ["200 200 6"]);
    assert!(server.alive());
}

/// A backend's 101 to a request that came over HTTP/2 (which cannot
/// switch protocols) is refused as in HTTP/1.1: 502, and the stream
/// answered, not broken.
#[test]
fn a_switch_answering_http2_is_a_bad_gateway() {
    let pki = Pki::new();
    let Proxied { server, port, .. } = start(&pki, false, "60s", |c| c);
    let (ok, text) = curl_h2(
        &pki,
        port,
        "/ws/switch",
        &["-o", "/dev/null", "-w", "%{http_code} %{http_version}"],
    );
    assert!(ok, "{text}");
    assert_eq!(text, "502 2");
    let log = server.wait_lines("logs/ws.log", 1);
    assert!(log[0].starts_with("502 502 "), "{log:?}");
    assert_unsolicited_switch_logged(&server);
}

/// A `wss://` client that stops reading while the backend sends: the
/// tunnel's writes to it wait on a full socket (and on TLS records rustls
/// holds), and `send_timeout` ends the tunnel, logged at info as nginx
/// logs it, with the access log line.
#[test]
fn a_wss_client_that_stops_reading_is_closed_at_send_timeout() {
    let _serial = serial();
    for nginx in [true, false] {
        let pki = Pki::new();
        let Proxied { server, port, .. } = start(&pki, nginx, "60s", |c| {
            info_log(c).replace(
                "proxy_read_timeout 60s;",
                "proxy_read_timeout 60s;\n            send_timeout 1s;",
            )
        });
        let mut s = pki.connect(port, &[b"http/1.1"]);
        s.write_all(
            b"GET /ws/flood HTTP/1.1\r\nHost: localhost\r\nUpgrade: flood\r\nConnection: Upgrade\r\n\r\n",
        )
        .expect("write");
        let mut got = Vec::new();
        read_until(&mut s, &mut got, "closed early", |got| {
            got.windows(4).any(|w| w == b"\r\n\r\n")
        });
        assert!(
            got.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
        // From here on the client reads nothing (and stays connected).
        let want = "client timed out (110: Connection timed out) while proxying upgraded connection, \
                    client: 127.0.0.1, server: , request: \"GET /ws/flood HTTP/1.1\", upstream: \"http://127.0.0.1:";
        let deadline = Instant::now() + Duration::from_secs(15);
        let line = loop {
            let errors = server.read("logs/error.log");
            if let Some(line) = errors.lines().find(|l| l.contains(want)) {
                break line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "nginx={nginx}: not closed:\n{errors}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(line.contains(" [info] "), "nginx={nginx}: {line}");
        let log = server.wait_lines("logs/ws.log", 1);
        assert!(log[0].starts_with("101 101 "), "nginx={nginx}: {log:?}");
        drop(s);
    }
}
