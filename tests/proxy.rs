//! The proxy's try loop through the real binary: `proxy_next_upstream_tries`,
//! requests that must not be retried once sent, error pages, single-server
//! upstreams, and bodies far larger than the proxy's memory streaming
//! through it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use waypost_tests::{
    addr, free_port, free_ports, get, post, tries, Blackhole, Server, NGINX_TEMP_PATHS,
};

/// A waypost config: `upstreams` and `servers` inside `http`, with the
/// `up` log format (`$upstream_addr $upstream_status`) defined.
fn conf(http: &str) -> String {
    format!(
        "worker_processes 1;\n\
         error_log logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   log_format up '$upstream_addr|$upstream_status|$status';\n\
         \x20   access_log off;\n\
         \x20   client_max_body_size 0;\n\
         {http}\n\
         }}\n"
    )
}

/// A `return 200 "NAME\n"` server on `port`, logging `$request_method
/// $request_uri` to `logs/NAME.log`.
fn backend(port: u16, name: &str) -> String {
    format!(
        "    log_format {name}_fmt '$request_method $request_uri';\n\
         \x20   server {{ listen 127.0.0.1:{port}; access_log logs/{name}.log {name}_fmt; location / {{ return 200 \"{name}\\n\"; }} }}\n"
    )
}

/// One `$upstream_addr|$upstream_status|$status` line split in three.
fn fields(line: &str) -> (String, String, String) {
    let mut it = line.split('|').map(str::to_owned);
    let f = (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    );
    assert!(it.next().is_none(), "{line}");
    f
}

#[test]
fn next_upstream_tries_caps_the_attempts() {
    let ports = free_ports(3);
    let (limited, unlimited, live) = (ports[0], ports[1], ports[2]);
    let dead = [free_port(), free_port(), free_port()];
    let servers = |name: &str| {
        format!(
            "    upstream {name} {{ server {}; server {}; server {}; server {}; }}\n",
            addr(dead[0]),
            addr(dead[1]),
            addr(dead[2]),
            addr(live)
        )
    };
    let wp = Server::waypost(
        &conf(&format!(
            "{}{}\
             \x20   server {{ listen 127.0.0.1:{limited}; location / {{ proxy_pass http://limited; proxy_next_upstream_tries 2; access_log logs/limited.log up; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{unlimited}; location / {{ proxy_pass http://unlimited; access_log logs/unlimited.log up; }} }}\n\
             {}",
            servers("limited"),
            servers("unlimited"),
            backend(live, "live")
        )),
        &ports,
    );

    let r = get(limited, "/");
    assert_eq!(r.status, 502, "{}", r.body);
    let lines = wp.wait_lines("logs/limited.log", 1);
    assert_eq!(
        lines.iter().map(|l| fields(l)).collect::<Vec<_>>(),
        [(tries(&dead[..2]), "502, 502".into(), "502".into())]
    );

    // Without the cap the same upstream reaches its live peer.
    let r = get(unlimited, "/");
    assert_eq!((r.status, r.body.as_str()), (200, "live\n"));
    let lines = wp.wait_lines("logs/unlimited.log", 1);
    assert_eq!(
        lines.iter().map(|l| fields(l)).collect::<Vec<_>>(),
        [(
            tries(&[dead[0], dead[1], dead[2], live]),
            "502, 502, 502, 200".into(),
            "200".into()
        )]
    );
}

#[test]
fn post_is_not_retried_after_it_was_sent() {
    let hole = Blackhole::start();
    let ports = free_ports(3);
    let (post_proxy, get_proxy, good) = (ports[0], ports[1], ports[2]);
    // One upstream per method, so each starts on the blackhole (ties go to
    // the first peer).
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream for_post {{ server {hole}; server {good}; }}\n\
             \x20   upstream for_get {{ server {hole}; server {good}; }}\n\
             \x20   server {{ listen 127.0.0.1:{post_proxy}; location / {{ proxy_pass http://for_post; access_log logs/post.log up; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{get_proxy}; location / {{ proxy_pass http://for_get; access_log logs/get.log up; }} }}\n\
             {}",
            backend(good, "good"),
            hole = addr(hole.port),
            good = addr(good),
        )),
        &ports,
    );

    let r = post(post_proxy, "/post", b"name=value");
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(
        hole.accepted.load(Ordering::SeqCst),
        1,
        "the blackhole saw the POST"
    );
    let (addrs, statuses, status) = fields(&wp.wait_lines("logs/post.log", 1)[0]);
    assert_eq!(addrs, addr(hole.port), "the POST went nowhere else");
    assert_eq!((statuses.as_str(), status.as_str()), ("502", "502"));
    // Logged as nginx does, whichever way the closed connection surfaced
    // (end of file, or a reset for the part of the request still on its
    // way).
    let errors = wp.read("logs/error.log");
    let line = errors
        .lines()
        .find(|l| l.contains(&format!("upstream: \"http://{}/post\"", addr(hole.port))))
        .unwrap_or_else(|| panic!("no error logged for the blackhole:\n{errors}"));
    assert!(line.contains("[error]"), "{line}");
    assert!(
        line.contains("while reading response header from upstream"),
        "{line}"
    );

    // The same failure on a GET is retried on the next peer.
    let r = get(get_proxy, "/get");
    assert_eq!((r.status, r.body.as_str()), (200, "good\n"));
    assert_eq!(
        hole.accepted.load(Ordering::SeqCst),
        2,
        "the blackhole saw the GET"
    );
    let (addrs, statuses, _) = fields(&wp.wait_lines("logs/get.log", 1)[0]);
    assert_eq!(addrs, tries(&[hole.port, good]));
    assert_eq!(statuses, "502, 200");

    // The good backend only ever saw the GET.
    assert_eq!(wp.wait_lines("logs/good.log", 1), ["GET /get"]);
}

#[test]
fn post_is_retried_when_it_never_left() {
    // A connect() failure happens before anything is sent: even a POST
    // goes to the next peer, with its body intact.
    let sink = Sink::start();
    let proxy = free_port();
    let dead = free_port();
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream u {{ server {}; server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; access_log logs/up.log up; }} }}\n",
            addr(dead),
            addr(sink.port)
        )),
        &[proxy],
    );
    let r = post(proxy, "/upload", b"0123456789");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(sink.received.load(Ordering::SeqCst), 10);
    let (addrs, statuses, _) = fields(&wp.wait_lines("logs/up.log", 1)[0]);
    assert_eq!(addrs, tries(&[dead, sink.port]));
    assert_eq!(statuses, "502, 200");
}

#[test]
fn dead_single_server_gives_502_without_retry() {
    let ports = free_ports(2);
    let (named, implicit) = (ports[0], ports[1]);
    let dead = free_port();
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream one {{ server {dead}; }}\n\
             \x20   server {{ listen 127.0.0.1:{named}; location / {{ proxy_pass http://one; access_log logs/named.log up; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{implicit}; location / {{ proxy_pass http://{dead}; access_log logs/implicit.log up; }} }}\n",
            dead = addr(dead)
        )),
        &ports,
    );
    for (port, log) in [(named, "logs/named.log"), (implicit, "logs/implicit.log")] {
        for n in 1..=3 {
            let r = get(port, "/");
            assert_eq!(r.status, 502);
            assert_eq!(r.header("content-type"), Some("text/html"));
            assert!(r.body.contains("<h1>502 Bad Gateway</h1>"), "{}", r.body);
            assert!(r.body.len() < 512, "{}", r.body);
            // One attempt per request, and a single server is never
            // disabled: no "no live upstreams".
            let lines = wp.wait_lines(log, n);
            assert_eq!(
                fields(&lines[n - 1]),
                (addr(dead), "502".into(), "502".into())
            );
        }
    }
    let errors = wp.read("logs/error.log");
    assert_eq!(
        errors
            .matches("connect() failed (111: Connection refused)")
            .count(),
        6,
        "{errors}"
    );
    assert!(!errors.contains("no live upstreams"), "{errors}");
}

/// A backend that accepts and never answers, holding each connection until
/// the other side closes it.
struct Silent {
    port: u16,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        Silent { port }
    }
}

#[test]
fn error_pages_are_small_html_as_nginx() {
    let silent = Silent::start();
    let dead = free_port();
    let [wp_port, nginx_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let http = |port: u16| {
        format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /dead {{ proxy_pass http://{}; }}\n\
             \x20       location /slow {{ proxy_pass http://{}; proxy_read_timeout 300ms; }}\n\
             \x20   }}\n",
            addr(dead),
            addr(silent.port)
        )
    };
    let wp = Server::waypost(&conf(&http(wp_port)), &[wp_port]);
    let _nginx = Server::nginx(
        &format!(
            "master_process off;\n\
             pid logs/nginx.pid;\n\
             error_log logs/error.log;\n\
             events {{}}\n\
             http {{\n\
             \x20   server_tokens off;\n\
                          {NGINX_TEMP_PATHS}\
             \x20   access_log off;\n\
             {}}}\n",
            http(nginx_port)
        ),
        &[nginx_port],
    );

    for (path, status) in [("/dead", 502), ("/slow", 504)] {
        let ours = get(wp_port, path);
        let theirs = get(nginx_port, path);
        assert_eq!((ours.status, theirs.status), (status, status), "{path}");
        assert_eq!(ours.header("content-type"), Some("text/html"));
        assert_eq!(ours.body, theirs.body.replace("nginx", "waypost"), "{path}");
        assert!(ours.body.len() < 512);
    }
    let errors = wp.read("logs/error.log");
    assert!(
        errors.contains(&format!(
            "upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: \"GET /slow HTTP/1.1\", upstream: \"http://{}/slow\"",
            addr(silent.port)
        )),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------
// Large bodies

const BIG: u64 = 256 << 20;
/// The proxy's resident memory may grow by less than this over its idle
/// size during the transfers: an eighth of the body. (Measured over the
/// idle size, not as a total: the debug binary's own pages, which grow with
/// its dependencies, are no memory a transfer uses.)
const RSS_GROWTH_KB: u64 = 32 << 10;

/// A backend for body tests. `POST /upload` (with Content-Length) reads and
/// counts the body, then answers `ok`; `GET /download` answers `BIG` bytes.
/// Not an HTTP implementation: just enough for one request per connection.
struct Sink {
    port: u16,
    received: Arc<AtomicU64>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = Sink::serve(stream, &count);
                });
            }
        });
        Sink { port, received }
    }

    fn serve(mut stream: TcpStream, count: &AtomicU64) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let end = loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let length: u64 = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if text.starts_with("GET /download") {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
            )?;
            let chunk = vec![b'd'; 64 << 10];
            let mut left = BIG;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            return Ok(());
        }
        let mut got = (head.len() - end) as u64;
        count.fetch_add(got, Ordering::SeqCst);
        while got < length {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
            count.fetch_add(n as u64, Ordering::SeqCst);
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")?;
        Ok(())
    }
}

/// Samples a process's VmRSS (KiB) until stopped; returns the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU32>,
    thread: JoinHandle<u64>,
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn vm_rss_kb(pid: i32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU32::new(0));
        let (flag, n) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::SeqCst) {
                max = max.max(vm_rss_kb(pid).expect("the proxy is running"));
                n.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            max
        });
        RssSampler {
            stop,
            samples,
            thread,
        }
    }

    fn finish(self) -> (u64, u32) {
        self.stop.store(true, Ordering::SeqCst);
        let max = self.thread.join().expect("sampler");
        (max, self.samples.load(Ordering::SeqCst))
    }
}

fn big_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .max_idle_connections(0)
        .build()
}

#[test]
fn large_bodies_stream_with_bounded_memory() {
    let sink = Sink::start();
    let proxy = free_port();
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream big {{ server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://big; }} }}\n",
            addr(sink.port)
        )),
        &[proxy],
    );
    let idle_kb = vm_rss_kb(wp.pid()).expect("VmRSS");
    let limit_kb = idle_kb + RSS_GROWTH_KB;

    // Upload.
    let sampler = RssSampler::start(wp.pid());
    let r = big_agent()
        .post(&format!("http://127.0.0.1:{proxy}/upload"))
        .set("Content-Length", &BIG.to_string())
        .send(std::io::repeat(b'u').take(BIG))
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.into_string().expect("body"), "ok");
    let (max_kb, samples) = sampler.finish();
    assert_eq!(sink.received.load(Ordering::SeqCst), BIG);
    assert!(samples > 2, "only {samples} RSS samples");
    assert!(
        max_kb < limit_kb,
        "upload: VmRSS reached {max_kb} KiB (idle {idle_kb} KiB)"
    );

    // Download.
    let sampler = RssSampler::start(wp.pid());
    let r = big_agent()
        .get(&format!("http://127.0.0.1:{proxy}/download"))
        .call()
        .expect("download");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    let got = std::io::copy(&mut r.into_reader(), &mut std::io::sink()).expect("read body");
    let (max_kb, samples) = sampler.finish();
    assert_eq!(got, BIG);
    assert!(samples > 2, "only {samples} RSS samples");
    assert!(
        max_kb < limit_kb,
        "download: VmRSS reached {max_kb} KiB (idle {idle_kb} KiB)"
    );
    // The kernel's high-water mark covers any peak between samples.
    let peak_kb = status_kb(wp.pid(), "VmHWM:").expect("VmHWM");
    assert!(
        peak_kb < limit_kb,
        "peak VmRSS {peak_kb} KiB (idle {idle_kb} KiB)"
    );
}

// ---------------------------------------------------------------------------
// Timeouts between operations, not over the whole transfer

/// A backend that accepts and neither reads nor answers: its connections
/// stay open (and unread) until the test ends.
struct Stalled {
    port: u16,
}

impl Stalled {
    fn start() -> Stalled {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Stalled { port }
    }
}

/// A backend that answers a head announcing `total` bytes, sends `sent` of
/// them, and then stalls with the connection open.
struct Trickle {
    port: u16,
}

impl Trickle {
    fn start(total: u64, sent: usize) -> Trickle {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                let _ = stream.write_all(&vec![b't'; sent]);
                held.push(stream);
            }
        });
        Trickle { port }
    }
}

/// A body that arrives in `chunks` pieces of `size` bytes, `gap` apart.
struct SlowBody {
    chunks: usize,
    size: usize,
    gap: Duration,
    pos: usize,
}

impl Read for SlowBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let total = self.chunks * self.size;
        if self.pos >= total {
            return Ok(0);
        }
        let in_chunk = self.pos % self.size;
        if in_chunk == 0 && self.pos > 0 {
            std::thread::sleep(self.gap);
        }
        let n = buf.len().min(self.size - in_chunk);
        buf[..n].fill(b's');
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn read_timeout_starts_once_the_request_is_sent() {
    // The client takes about a second to upload; proxy_read_timeout is
    // 300ms. nginx arms the read timer when the request is sent, so a
    // slow upload is no timeout.
    let sink = Sink::start();
    let proxy = free_port();
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream u {{ server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; proxy_read_timeout 300ms; access_log logs/up.log up; }} }}\n",
            addr(sink.port)
        )),
        &[proxy],
    );
    let (chunks, size) = (10, 16 << 10);
    let r = big_agent()
        .post(&format!("http://127.0.0.1:{proxy}/upload"))
        .set("Content-Length", &(chunks * size).to_string())
        .send(SlowBody {
            chunks,
            size,
            gap: Duration::from_millis(100),
            pos: 0,
        })
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.into_string().expect("body"), "ok");
    assert_eq!(sink.received.load(Ordering::SeqCst), (chunks * size) as u64);
    let (_, statuses, _) = fields(&wp.wait_lines("logs/up.log", 1)[0]);
    assert_eq!(statuses, "200");
}

#[test]
fn send_timeout_ends_an_upload_the_upstream_does_not_take() {
    let stalled = Stalled::start();
    let proxy = free_port();
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream u {{ server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; proxy_send_timeout 300ms; access_log logs/up.log up; }} }}\n",
            addr(stalled.port)
        )),
        &[proxy],
    );
    // A raw client: it writes until the buffers on the way are full, and
    // the proxy may close on it mid-body, so the verdict is read from the
    // proxy's logs rather than from the client's socket.
    let mut client = TcpStream::connect(("127.0.0.1", proxy)).expect("connect");
    // A proxy that never gave up would block the writer forever.
    client
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    write!(
        client,
        "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n"
    )
    .expect("head");
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'p'; 64 << 10];
        let mut sent = 0u64;
        while sent < BIG && client.write_all(&chunk).is_ok() {
            sent += chunk.len() as u64;
        }
        sent
    });
    let line = wp.wait_lines("logs/up.log", 1).remove(0);
    assert_eq!(
        fields(&line),
        (addr(stalled.port), "504".into(), "504".into())
    );
    let errors = wp.read("logs/error.log");
    assert!(
        errors.contains(
            "upstream timed out (110: Connection timed out) while sending request to upstream"
        ),
        "{errors}"
    );
    let sent = writer.join().expect("writer");
    assert!(sent < BIG, "the whole body went through a stalled upstream");
}

#[test]
fn read_timeout_ends_a_stalled_response_body() {
    let trickle = Trickle::start(1 << 20, 1000);
    let proxy = free_port();
    let _wp = Server::waypost(
        &conf(&format!(
            "    upstream u {{ server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; proxy_read_timeout 300ms; }} }}\n",
            addr(trickle.port)
        )),
        &[proxy],
    );
    let started = std::time::Instant::now();
    let r = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
        .get(&format!("http://127.0.0.1:{proxy}/"))
        .call()
        .expect("response head");
    assert_eq!(r.status(), 200);
    let mut body = Vec::new();
    let read = r.into_reader().read_to_end(&mut body);
    assert!(read.is_err(), "a truncated body must not read as complete");
    assert_eq!(body.len(), 1000);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the proxy kept a stalled response open for {:?}",
        started.elapsed()
    );
}

#[test]
fn post_that_timed_out_after_sending_is_504_and_not_retried() {
    let silent = Silent::start();
    let ports = free_ports(2);
    let (proxy, good) = (ports[0], ports[1]);
    let wp = Server::waypost(
        &conf(&format!(
            "    upstream u {{ server {}; server {}; }}\n\
             \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; proxy_read_timeout 300ms; access_log logs/up.log up; }} }}\n\
             {}",
            addr(silent.port),
            addr(good),
            backend(good, "good")
        )),
        &ports,
    );
    let r = post(proxy, "/", b"abc");
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(
        fields(&wp.wait_lines("logs/up.log", 1)[0]),
        (addr(silent.port), "504".into(), "504".into())
    );
}

/// Retries on upstream statuses, GET and POST, side by side with nginx:
/// the same attempts, statuses and bodies.
#[test]
fn status_retries_match_nginx() {
    let backends = free_ports(3);
    let (five, ok, missing) = (backends[0], backends[1], backends[2]);
    let _backends = Server::waypost(
        &format!(
            "error_log logs/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n\
             \x20   server {{ listen 127.0.0.1:{five}; location / {{ return 500 \"five\\n\"; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{ok}; location / {{ return 200 \"ok\\n\"; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{missing}; location / {{ return 404 \"none\\n\"; }} }}\n\
             }}\n"
        ),
        &backends,
    );
    let http = |port: u16| {
        format!(
            "    upstream a {{ server {five} max_fails=0; server {ok}; }}\n\
             \x20   upstream b {{ server {five} max_fails=0; server {ok}; }}\n\
             \x20   upstream c {{ server {missing}; server {five} max_fails=0; }}\n\
             \x20   upstream d {{ server {five}; server {ok}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/up.log up;\n\
             \x20       location /a {{ proxy_pass http://a; proxy_next_upstream error timeout http_500; }}\n\
             \x20       location /b {{ proxy_pass http://b; proxy_next_upstream error timeout http_500 non_idempotent; }}\n\
             \x20       location /c {{ proxy_pass http://c; proxy_next_upstream http_404 http_500; }}\n\
             \x20       location /d {{ proxy_pass http://d; proxy_next_upstream off; }}\n\
             \x20   }}\n",
            five = addr(five),
            ok = addr(ok),
            missing = addr(missing),
        )
    };
    let [wp_port, nginx_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let wp = Server::waypost(&conf(&http(wp_port)), &[wp_port]);
    let nginx = Server::nginx(
        &format!(
            "master_process off;\npid logs/nginx.pid;\nerror_log logs/error.log;\nevents {{}}\n\
             http {{\n    server_tokens off;\n    access_log off;\n\
             \x20   log_format up '$upstream_addr|$upstream_status|$status';\n{NGINX_TEMP_PATHS}{}}}\n",
            http(nginx_port)
        ),
        &[nginx_port],
    );

    // Each location has its own upstream, whose first pick is its first
    // server.
    let requests: &[(&str, &str)] = &[
        // A POST's 500 is passed on unless non_idempotent is listed...
        ("POST", "/a"),
        ("GET", "/a"),
        ("GET", "/a"),
        ("POST", "/a"),
        ("GET", "/a"),
        ("POST", "/a"),
        // ...and retried when it is.
        ("POST", "/b"),
        ("GET", "/b"),
        ("POST", "/b"),
        // 404 is retried (without counting a failure), then the last try's
        // status is passed on.
        ("GET", "/c"),
        ("POST", "/c"),
        ("GET", "/c"),
        // off: a 500 goes to the client.
        ("GET", "/d"),
        ("POST", "/d"),
        ("GET", "/d"),
    ];
    let run = |port: u16| -> Vec<(u16, String)> {
        requests
            .iter()
            .map(|&(method, path)| {
                let r = if method == "POST" {
                    post(port, path, b"")
                } else {
                    get(port, path)
                };
                (r.status, r.body.replace("nginx", "waypost"))
            })
            .collect()
    };
    let ours = run(wp_port);
    let theirs = run(nginx_port);
    eprintln!(
        "DBG {theirs:?}\n{:?}",
        nginx.wait_lines("logs/up.log", requests.len())
    );
    assert_eq!(ours, theirs, "responses (left: waypost, right: nginx)");
    let n = requests.len();
    assert_eq!(
        wp.wait_lines("logs/up.log", n),
        nginx.wait_lines("logs/up.log", n),
        "attempts (left: waypost, right: nginx)"
    );
}

/// waypost proxying `proxy` to `backend` over keep-alive upstream
/// connections, with `read_timeout`.
fn keepalive_conf(backend: u16, proxy: u16, read_timeout: &str) -> String {
    conf(&format!(
        "    upstream ka {{ server {}; keepalive 4; }}\n\
         \x20   server {{ listen 127.0.0.1:{proxy}; location / {{\n\
         \x20       proxy_pass http://ka;\n\
         \x20       proxy_http_version 1.1;\n\
         \x20       proxy_set_header Connection \"\";\n\
         \x20       proxy_read_timeout {read_timeout};\n\
         \x20   }} }}\n",
        addr(backend)
    ))
}

/// A keep-alive backend for requests without a body: answers `ka` to each
/// request on a connection (but never to `GET /stall`), and counts the
/// connections it accepted.
struct KeepAlive {
    port: u16,
    connections: Arc<AtomicU32>,
}

impl KeepAlive {
    fn start() -> KeepAlive {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicU32::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let stall = pending.starts_with(b"GET /stall ");
                            pending.drain(..i + 4);
                            if !stall
                                && stream
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nka\n")
                                    .is_err()
                            {
                                return;
                            }
                        }
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        KeepAlive { port, connections }
    }
}

#[test]
fn idle_pooled_connections_outlive_the_read_timeout() {
    // proxy_read_timeout bounds the wait for an answer, not the time a
    // connection sits in the keepalive pool.
    let backend = KeepAlive::start();
    let proxy = free_port();
    let _wp = Server::waypost(&keepalive_conf(backend.port, proxy, "200ms"), &[proxy]);
    for round in 0..2 {
        if round > 0 {
            // Idle for longer than the read timeout.
            std::thread::sleep(Duration::from_millis(600));
        }
        for _ in 0..3 {
            let r = get(proxy, "/");
            assert_eq!((r.status, r.body.as_str()), (200, "ka\n"));
        }
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn read_timeout_on_a_reused_connection_counts_from_its_own_request() {
    // A pooled connection's read timer was last set for an earlier
    // request (the proxy leaves it there while the connection keeps
    // busy); a later request that gets no answer still has the whole
    // proxy_read_timeout from when it was sent, and is not kept longer.
    let backend = KeepAlive::start();
    let proxy = free_port();
    let _wp = Server::waypost(&keepalive_conf(backend.port, proxy, "500ms"), &[proxy]);
    let r = get(proxy, "/");
    assert_eq!((r.status, r.body.as_str()), (200, "ka\n"));
    // Not a wait for anything: the gap puts the first request's deadline
    // inside the second one's wait, where a timer not moved on would end
    // it 200 ms in.
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let r = get(proxy, "/stall");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(500),
        "timed out after {took:?}, before proxy_read_timeout"
    );
    assert!(took < Duration::from_secs(5), "timed out after {took:?}");
    // Both requests went over the one connection.
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

/// `chunked_transfer_encoding off` beside nginx: an answer of unknown
/// length (the upstream's chunked one) goes to an HTTP/1.1 client up to
/// the close, with `Connection: close` and no Transfer-Encoding; one of
/// known length, a HEAD and a level left on are as before.
#[test]
fn chunked_transfer_encoding_off_as_nginx() {
    let back = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        waypost_tests::serve_numbered(listener, |mut stream, _| {
            if waypost_tests::read_head(&mut stream).is_none() {
                return;
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            );
        });
        port
    };
    let run = |nginx: bool| {
        let (_server, port) = waypost_tests::either_on_a_port(nginx, |port| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       chunked_transfer_encoding off;\n\
                 \x20       location /off {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /on {{ chunked_transfer_encoding on; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /fixed {{ return 200 \"fixed\"; }}\n\
                 \x20   }}\n"
            )
        });
        [
            "GET /off HTTP/1.1\r\nHost: h\r\n\r\n",
            "HEAD /off HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "GET /on HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "GET /fixed HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ]
        .iter()
        .map(|request| {
            let answer = waypost_tests::exchange(port, request);
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            let kept: Vec<&str> = head
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("http/")
                        || l.starts_with("transfer-encoding")
                        || l.starts_with("content-length")
                        || l.starts_with("connection")
                })
                .collect();
            // (Chunks compared by content: see `unchunk`.)
            let body = match kept
                .iter()
                .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"))
            {
                true => {
                    String::from_utf8_lossy(&waypost_tests::unchunk(body.as_bytes())).into_owned()
                }
                false => body.to_owned(),
            };
            format!("{kept:?} {body:?}")
        })
        .collect::<Vec<_>>()
    };
    let ours = run(false);
    waypost_tests::assert_same_answers(&ours, &run(true));
    assert_eq!(
        ours[0],
        "[\"HTTP/1.1 200 OK\", \"Connection: close\"] \"hello world\""
    );
}
