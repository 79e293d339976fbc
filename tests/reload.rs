//! Hot reload and process control on the real binary (issue 5): reloads
//! under load lose no request and refuse no connection; a bad config or a
//! bad module changes nothing; a module rebuilt in place is picked up and
//! the old upstream objects go away; requests in flight finish on the
//! configuration they started with; peer health survives a reload; QUIT
//! drains, TERM does not.
//!
//! Every wait polls for a condition with a deadline; the only sleeps are
//! the slow backends' own.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use waypost_tests::{bin_dir, free_ports, Server, TempDir};

// ---------------------------------------------------------------- helpers

/// Waits until `check` holds, polling; fails the test after `secs`.
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// waypost with its own TMPDIR (its private module directory belongs to
/// the test), for tests that reload.
fn start(conf: &str, ports: &[u16]) -> Server {
    Server::waypost_private(conf, ports)
}

/// Replaces the config file whole, then sends SIGHUP.
fn reload(server: &Server, conf: &str) {
    server.reload_with(conf);
}

/// How many lines of the error log contain `text`.
fn count(server: &Server, text: &str) -> usize {
    server
        .read("logs/error.log")
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// Waits for the `n`th successful reload.
fn reloaded(server: &Server, n: usize) {
    eventually(&format!("reload #{n} done"), 20, || {
        count(server, "configuration reloaded") >= n
    });
}

/// Waits for the process to exit, and returns its exit status.
fn exited(server: &mut Server, secs: u64) -> std::process::ExitStatus {
    let mut status = None;
    eventually("waypost exits", secs, || {
        status = server.child.try_wait().expect("wait");
        status.is_some()
    });
    status.expect("exited")
}

fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// An HTTP/1.1 client on one keep-alive connection at a time, strict about
/// failures: nothing is retried.
struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

#[derive(Debug)]
enum Failure {
    /// connect() failed: the listening socket refused the connection.
    Connect(std::io::Error),
    /// The request was sent on an open connection and got no full answer.
    Request(String),
}

impl Client {
    fn new(port: u16) -> Client {
        Client { port, conn: None }
    }

    fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        self.conn = None;
    }

    /// `GET path`: the status and body.
    fn get(&mut self, path: &str) -> Result<(u16, String), Failure> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(Failure::Connect)?;
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let _ = stream.set_nodelay(true);
            self.conn = Some(BufReader::new(stream));
        }
        let result = self.exchange(path);
        if !matches!(result, Ok((_, _, true))) {
            self.conn = None;
        }
        result
            .map(|(status, body, _)| (status, body))
            .map_err(Failure::Request)
    }

    /// One request and response; the flag tells if the connection stays.
    fn exchange(&mut self, path: &str) -> Result<(u16, String, bool), String> {
        let conn = self.conn.as_mut().expect("connected");
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        conn.get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        let read_line = |conn: &mut BufReader<TcpStream>, line: &mut String| {
            line.clear();
            match conn.read_line(line) {
                Ok(0) => Err("connection closed".to_owned()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("read: {e}")),
            }
        };
        read_line(conn, &mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked, mut keep) = (None, false, true);
        loop {
            read_line(conn, &mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                read_line(conn, &mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk)
                    .map_err(|e| format!("read: {e}"))?;
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body)
                .map_err(|e| format!("read: {e}"))?;
        } else {
            conn.read_to_end(&mut body)
                .map_err(|e| format!("read: {e}"))?;
            keep = false;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
    }

    /// Whether the server closed this (idle) connection, waiting up to
    /// `secs` for it to happen.
    fn closed_by_server(&mut self, secs: u64) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        conn.get_ref()
            .set_read_timeout(Some(Duration::from_secs(secs)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let closed = matches!(conn.read(&mut byte), Ok(0))
            || matches!(conn.read(&mut byte), Err(e) if e.kind() == ErrorKind::ConnectionReset);
        self.conn = None;
        closed
    }
}

/// `GET path` on a new connection; panics on a failure.
fn get(port: u16, path: &str) -> (u16, String) {
    Client::new(port)
        .get(path)
        .unwrap_or_else(|e| panic!("GET {path} on {port}: {e:?}"))
}

/// A keep-alive HTTP backend answering `body` to everything after `delay`;
/// counts the requests it received and the answers it sent.
struct Backend {
    port: u16,
    received: Arc<AtomicU32>,
    answered: Arc<AtomicU32>,
}

impl Backend {
    fn start(body: &'static str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(AtomicU32::new(0));
        let answered = Arc::new(AtomicU32::new(0));
        let (r, a) = (received.clone(), answered.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, a) = (r.clone(), a.clone());
                std::thread::spawn(move || serve_backend(stream, body, delay, &r, &a));
            }
        });
        Backend {
            port,
            received,
            answered,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve_backend(
    stream: TcpStream,
    body: &str,
    delay: Duration,
    received: &AtomicU32,
    answered: &AtomicU32,
) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line.to_ascii_lowercase()),
            }
        }
        received.fetch_add(1, Ordering::SeqCst);
        if !delay.is_zero() {
            // The backend's own slowness, not a wait for a condition.
            std::thread::sleep(delay);
        }
        let close = head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        if close {
            return;
        }
    }
}

// ------------------------------------------------------------------ tests

/// The two configurations of the load test: `u` on backend 1 and no second
/// listener, or `u` on backend 2 and a second listener on `extra`.
fn load_conf(port: u16, extra: u16, backend: &Backend, second: bool) -> String {
    let tag = if second { "B" } else { "A" };
    let second = if second {
        format!(
            "    server {{ listen 127.0.0.1:{extra}; location / {{ return 200 \"second\"; }} }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "worker_processes 2;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n    access_log off;\n\
         \x20   upstream u {{ server {}; keepalive 64; }}\n\
         \x20   server {{\n        listen 127.0.0.1:{port};\n\
         \x20       location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
         \x20       location = /v {{ return 200 \"{tag}\"; }}\n    }}\n{second}}}\n",
        backend.addr()
    )
}

#[test]
fn fifty_reloads_under_load_fail_no_request_and_refuse_no_connection() {
    const CLIENTS: usize = 32;
    const RELOADS: usize = 50;
    let b1 = Backend::start("b1", Duration::ZERO);
    let b2 = Backend::start("b2", Duration::ZERO);
    let ports = free_ports(2);
    let (port, extra) = (ports[0], ports[1]);
    let mut server = start(&load_conf(port, extra, &b1, false), &[port]);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let refusals = Arc::new(AtomicU64::new(0));
    let answers = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, failures, refusals, answers) = (
                stop.clone(),
                failures.clone(),
                refusals.clone(),
                answers.clone(),
            );
            std::thread::spawn(move || {
                let mut client = Client::new(port);
                let (mut n, mut on_this_connection) = (0u64, 0);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Every client also reconnects now and then, so that
                    // connections are accepted throughout the reloads.
                    on_this_connection += 1;
                    if on_this_connection > 16 + i {
                        client.close();
                        on_this_connection = 0;
                    }
                    match client.get("/") {
                        Ok((200, body)) if body == "b1" => {
                            answers[0].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((200, body)) if body == "b2" => {
                            answers[1].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("client {i}: {status} {body:?}")),
                        Err(Failure::Connect(e)) => {
                            refusals.fetch_add(1, Ordering::Relaxed);
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("client {i}: connect: {e}"));
                        }
                        Err(Failure::Request(e)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("client {i}: request {n}: {e}")),
                    }
                }
            })
        })
        .collect();
    eventually("every client served", 10, || {
        answers[0].load(Ordering::Relaxed) >= CLIENTS as u64
    });

    // A keep-alive connection on the second listener, open when it is
    // removed: it must be closed (drained), not left hanging.
    let mut on_extra = Client::new(extra);
    for i in 1..=RELOADS {
        let second = i % 2 == 1;
        let before = answers[usize::from(second)].load(Ordering::Relaxed);
        reload(
            &server,
            &load_conf(port, extra, if second { &b2 } else { &b1 }, second),
        );
        reloaded(&server, i);
        let tag = if second { "B" } else { "A" };
        assert_eq!(get(port, "/v"), (200, tag.to_owned()), "reload {i}");
        if second {
            assert_eq!(get(extra, "/"), (200, "second".to_owned()));
            if i == 1 {
                assert_eq!(on_extra.get("/").expect("second"), (200, "second".into()));
            }
        } else {
            eventually("the removed listener refuses connections", 10, || {
                refused(extra)
            });
            if i == 2 {
                assert!(on_extra.connected());
                assert!(
                    on_extra.closed_by_server(10),
                    "an idle connection on a removed listener is closed"
                );
            }
        }
        // The clients see the new upstream before the next reload.
        eventually("clients answered by the new upstream", 10, || {
            answers[usize::from(second)].load(Ordering::Relaxed) > before + CLIENTS as u64
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }

    let failures = failures.lock().unwrap();
    assert_eq!(refusals.load(Ordering::Relaxed), 0, "{failures:#?}");
    assert!(
        failures.is_empty(),
        "{} failed requests: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    let (a1, a2) = (
        answers[0].load(Ordering::Relaxed),
        answers[1].load(Ordering::Relaxed),
    );
    assert!(a1 > 0 && a2 > 0, "both upstreams served: {a1} {a2}");
    assert_eq!(count(&server, "signal 1 (SIGHUP) received from"), RELOADS);
    let log = server.read("logs/error.log");
    assert!(
        !log.contains("[emerg]") && !log.contains("[alert]") && !log.contains("[error]"),
        "{log}"
    );
    assert!(server.alive());
    eprintln!("{} requests answered during {RELOADS} reloads", a1 + a2);
}

fn simple_conf(port: u16, text: &str) -> String {
    format!(
        "worker_processes 1;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\nevents {{}}\n\
         http {{\n    access_log off;\n    upstream u {{ server 127.0.0.1:1; }}\n\
         \x20   server {{\n        listen 127.0.0.1:{port};\n\
         \x20       location /v {{ return 200 \"{text}\"; }}\n    }}\n}}\n"
    )
}

#[test]
fn bad_config_bad_module_or_busy_port_keep_the_old_config() {
    let ports = free_ports(2);
    let (port, busy) = (ports[0], ports[1]);
    let server = start(&simple_conf(port, "good"), &[port]);
    let conf = server.conf.display().to_string();
    let emerg = |n: usize| -> String {
        eventually("an [emerg] line", 20, || count(&server, "[emerg]") >= n);
        let log = server.read("logs/error.log");
        let line = log.lines().filter(|l| l.contains("[emerg]")).nth(n - 1);
        line.expect("emerg line").to_owned()
    };
    let prefix = format!("[emerg] {}#", server.pid());

    // A bad directive: nginx's message and place.
    let bad = simple_conf(port, "bad").replace("events {}\n", "events {}\nnosuch on;\n");
    reload(&server, &bad);
    let line = emerg(1);
    assert!(line.contains(&prefix), "{line}");
    assert!(
        line.ends_with(&format!(": unknown directive \"nosuch\" in {conf}:5")),
        "{line}"
    );
    assert_eq!(
        count(
            &server,
            &format!(
                "signal 1 (SIGHUP) received from {}, reconfiguring",
                std::process::id()
            )
        ),
        1
    );
    assert_eq!(get(port, "/v"), (200, "good".to_owned()));

    // A module file that is no module.
    let module = server
        .dir
        .write("notmodule.so", &"not a library\n".repeat(64));
    let bad = format!(
        "load_module {};\n{}",
        module.display(),
        simple_conf(port, "bad")
    );
    reload(&server, &bad);
    let line = emerg(2);
    assert!(
        line.contains(&format!(
            "{prefix}0: module \"{}\" failed to load: ",
            module.display()
        )),
        "{line}"
    );
    assert!(line.ends_with(&format!(" in {conf}:1")), "{line}");
    assert_eq!(get(port, "/v"), (200, "good".to_owned()));

    // A new listening address that is taken.
    let _holder = TcpListener::bind(("127.0.0.1", busy)).expect("hold the port");
    let bad = simple_conf(port, "bad").replace(
        "    server {\n",
        &format!("    server {{ listen 127.0.0.1:{busy}; }}\n    server {{\n"),
    );
    reload(&server, &bad);
    let line = emerg(3);
    assert!(
        line.ends_with(&format!(
            ": bind() to 127.0.0.1:{busy} failed (98: Address already in use)"
        )),
        "{line}"
    );
    assert_eq!(get(port, "/v"), (200, "good".to_owned()));

    // Nothing but those three lines came of it; a good config still loads.
    assert_eq!(count(&server, "configuration reloaded"), 0);
    reload(&server, &simple_conf(port, "better"));
    reloaded(&server, 1);
    assert_eq!(get(port, "/v"), (200, "better".to_owned()));
    assert_eq!(count(&server, "[emerg]"), 3);
}

/// The workspace's target directory, as the harness finds it.
fn target_root() -> PathBuf {
    bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("target dir")
}

/// Builds `tests/fixtures/variant_module` without features (variant A)
/// and with `--features b`, into a target directory of its own (the
/// workspace's is locked by the `cargo test` running this), and returns
/// copies of the two libraries. Once per test process.
fn variants() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/variant_module/Cargo.toml");
        let target = target_root().join("reload-fixture");
        let out = target.join("variants");
        std::fs::create_dir_all(&out).expect("mkdir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let build = |features: &[&str], name: &str| {
            let status = Command::new(&cargo)
                .args(["build", "--offline", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target)
                .args(features)
                .status()
                .expect("run cargo");
            assert!(status.success(), "building the {name} variant failed");
            // Through a rename: another test run may be reading the copy.
            let copy = out.join(name);
            let tmp = out.join(format!("{name}.{}", std::process::id()));
            std::fs::copy(target.join("debug/libvariant_module.so"), &tmp).expect("copy");
            std::fs::rename(&tmp, &copy).expect("rename");
            copy
        };
        (build(&[], "a.so"), build(&["--features", "b"], "b.so"))
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn rebuilt_module_is_picked_up_and_old_upstream_objects_are_dropped() {
    let (a, b) = variants();
    let port = free_ports(1)[0];
    let dir = TempDir::new("variant-mod");
    let module = dir.path.join("libvariant.so");
    std::fs::copy(a, &module).expect("install variant A");
    let conf = format!(
        "load_module {};\nworker_processes 1;\npid logs/waypost.pid;\n\
         error_log logs/error.log notice;\nevents {{}}\n\
         http {{\n    access_log off;\n    upstream u {{ variant; server 127.0.0.1:1; }}\n\
         \x20   server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://u; }} }}\n}}\n",
        module.display()
    );
    let server = start(&conf, &[port]);
    let private = server.dir.path.join(format!(
        "tmp/waypost-modules-{}",
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() }
    ));
    assert_eq!(get(port, "/"), (200, "variant A\n".to_owned()));
    let copies = files_in(&private);
    assert_eq!(
        copies
            .iter()
            .filter(|f| f.starts_with("libvariant-"))
            .count(),
        1,
        "{copies:?}"
    );

    // An idle keep-alive connection stays open across the reloads: it must
    // not keep the old configurations (and the modules' objects) alive.
    let mut idle = Client::new(port);
    assert_eq!(idle.get("/").expect("first"), (200, "variant A\n".into()));

    // Unchanged reloads: a new upstream object each time, the old one is
    // dropped, no new private copy.
    for n in 1..=5 {
        reload(&server, &conf);
        reloaded(&server, n);
        eventually("the previous upstream object dropped", 10, || {
            count(&server, &format!("variant A upstream u #{n} dropped")) == 1
        });
    }
    assert_eq!(count(&server, "variant A upstream u #6 created"), 1);
    assert_eq!(count(&server, "dropped"), 5);
    assert_eq!(files_in(&private), copies);

    // Recompiled in place: variant B answers, on the idle connection too.
    std::fs::copy(b, &module).expect("install variant B");
    reload(&server, &conf);
    reloaded(&server, 6);
    assert_eq!(
        idle.get("/").expect("after rebuild"),
        (200, "variant B\n".into())
    );
    assert_eq!(get(port, "/"), (200, "variant B\n".to_owned()));
    eventually("the last variant A object dropped", 10, || {
        count(&server, "variant A upstream u #6 dropped") == 1
    });
    assert_eq!(count(&server, "variant B upstream u #1 created"), 1);
    assert_eq!(count(&server, "dropped"), 6);
    let after = files_in(&private);
    assert_eq!(after.len(), copies.len() + 1, "{after:?}");
    assert_eq!(
        after
            .iter()
            .filter(|f| f.starts_with("libvariant-"))
            .count(),
        2
    );

    // And back to A: the first content is known, so no new copy.
    std::fs::copy(a, &module).expect("install variant A again");
    reload(&server, &conf);
    reloaded(&server, 7);
    assert_eq!(idle.get("/").expect("back"), (200, "variant A\n".into()));
    assert_eq!(files_in(&private), after);
}

fn proxy_conf(port: u16, backend: &Backend, text: &str) -> String {
    format!(
        "worker_processes 1;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\nevents {{}}\n\
         http {{\n    access_log off;\n    upstream u {{ server {}; }}\n\
         \x20   server {{\n        listen 127.0.0.1:{port};\n\
         \x20       location / {{ proxy_pass http://u; }}\n\
         \x20       location = /v {{ return 200 \"{text}\"; }}\n    }}\n}}\n",
        backend.addr()
    )
}

#[test]
fn slow_request_started_before_a_reload_completes() {
    let slow = Backend::start("slow answer", Duration::from_secs(2));
    let other = Backend::start("other", Duration::ZERO);
    let port = free_ports(1)[0];
    let server = start(&proxy_conf(port, &slow, "one"), &[port]);
    let request = std::thread::spawn(move || Client::new(port).get("/slow"));
    eventually("the slow backend has the request", 10, || {
        slow.received.load(Ordering::SeqCst) == 1
    });
    // The new configuration sends `u` elsewhere.
    reload(&server, &proxy_conf(port, &other, "two"));
    reloaded(&server, 1);
    assert_eq!(get(port, "/v"), (200, "two".to_owned()));
    assert_eq!(get(port, "/"), (200, "other".to_owned()));
    assert_eq!(slow.answered.load(Ordering::SeqCst), 0, "still in flight");
    let answer = request.join().expect("thread").expect("slow request");
    assert_eq!(answer, (200, "slow answer".to_owned()));
}

#[test]
fn failed_peer_stays_skipped_after_a_reload() {
    let live = Backend::start("live", Duration::ZERO);
    let ports = free_ports(2);
    let (port, dead) = (ports[0], ports[1]);
    let conf = |text: &str| {
        format!(
            "worker_processes 1;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\nevents {{}}\n\
             http {{\n    access_log off;\n    log_format up '$upstream_addr';\n\
             \x20   upstream u {{\n        server 127.0.0.1:{dead} max_fails=1 fail_timeout=60s;\n\
             \x20       server {} max_fails=1 fail_timeout=60s;\n    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n\
             \x20       location / {{ proxy_pass http://u; access_log logs/up.log up; }}\n\
             \x20       location = /v {{ return 200 \"{text}\"; }}\n    }}\n}}\n",
            live.addr()
        )
    };
    let server = start(&conf("one"), &[port]);
    // Round robin tries the dead peer first; it fails and is marked.
    assert_eq!(get(port, "/"), (200, "live".to_owned()));
    assert_eq!(get(port, "/"), (200, "live".to_owned()));
    let lines = server.wait_lines("logs/up.log", 2);
    let (dead_addr, live_addr) = (format!("127.0.0.1:{dead}"), live.addr());
    assert_eq!(lines[0], format!("{dead_addr}, {live_addr}"));
    assert_eq!(lines[1], live_addr);

    // The upstream is unchanged: the dead peer stays skipped.
    reload(&server, &conf("two"));
    reloaded(&server, 1);
    assert_eq!(get(port, "/v"), (200, "two".to_owned()));
    for _ in 0..4 {
        assert_eq!(get(port, "/"), (200, "live".to_owned()));
    }
    let lines = server.wait_lines("logs/up.log", 6);
    assert_eq!(lines[2..], vec![live_addr; 4][..], "{lines:?}");
}

#[test]
fn quit_closes_listeners_and_idle_connections_and_drains_requests() {
    let slow = Backend::start("slow answer", Duration::from_secs(2));
    let port = free_ports(1)[0];
    let mut server = start(&proxy_conf(port, &slow, "x"), &[port]);
    let mut idle = Client::new(port);
    assert_eq!(idle.get("/v").expect("idle"), (200, "x".into()));
    let request = std::thread::spawn(move || Client::new(port).get("/slow"));
    eventually("the slow backend has the request", 10, || {
        slow.received.load(Ordering::SeqCst) == 1
    });

    server.signal(libc::SIGQUIT);
    eventually("the listening socket is closed", 10, || refused(port));
    assert!(idle.closed_by_server(10), "the idle connection is closed");
    assert!(server.alive(), "the request in flight is waited for");
    let answer = request.join().expect("thread").expect("slow request");
    assert_eq!(answer, (200, "slow answer".to_owned()));
    let status = exited(&mut server, 10);
    assert!(status.success(), "{status}");
    assert!(!server.dir.path.join("logs/waypost.pid").exists());
    let log = server.read("logs/error.log");
    assert!(
        log.contains(&format!(
            "signal 3 (SIGQUIT) received from {}, shutting down",
            std::process::id()
        )),
        "{log}"
    );
    assert!(log.contains("gracefully shutting down"), "{log}");
}

#[test]
fn term_stops_at_once() {
    let slow = Backend::start("slow answer", Duration::from_secs(3));
    let port = free_ports(1)[0];
    let mut server = start(&proxy_conf(port, &slow, "x"), &[port]);
    let request = std::thread::spawn(move || Client::new(port).get("/slow"));
    eventually("the slow backend has the request", 10, || {
        slow.received.load(Ordering::SeqCst) == 1
    });
    server.signal(libc::SIGTERM);
    let status = exited(&mut server, 10);
    assert_eq!(
        slow.answered.load(Ordering::SeqCst),
        0,
        "waypost exited before the backend answered"
    );
    assert!(status.success(), "{status}");
    assert!(matches!(
        request.join().expect("thread"),
        Err(Failure::Request(_))
    ));
    assert!(!server.dir.path.join("logs/waypost.pid").exists());
    let log = server.read("logs/error.log");
    assert!(
        log.contains(&format!(
            "signal 15 (SIGTERM) received from {}, exiting",
            std::process::id()
        )),
        "{log}"
    );
}

#[test]
fn worker_shutdown_timeout_ends_a_graceful_shutdown() {
    let slow = Backend::start("slow answer", Duration::from_secs(30));
    let port = free_ports(1)[0];
    let conf =
        proxy_conf(port, &slow, "x").replace("events {}", "worker_shutdown_timeout 1s;\nevents {}");
    let mut server = start(&conf, &[port]);
    let request = std::thread::spawn(move || Client::new(port).get("/slow"));
    eventually("the slow backend has the request", 10, || {
        slow.received.load(Ordering::SeqCst) == 1
    });
    server.signal(libc::SIGQUIT);
    let status = exited(&mut server, 10);
    assert!(status.success(), "{status}");
    assert_eq!(slow.answered.load(Ordering::SeqCst), 0);
    assert!(matches!(
        request.join().expect("thread"),
        Err(Failure::Request(_))
    ));
}

/// `-s reload` is a process of its own: the log names it as the sender.
#[test]
fn reload_signal_names_its_sender() {
    let port = free_ports(1)[0];
    let server = start(&simple_conf(port, "one"), &[port]);
    let out = waypost_tests::run_waypost(
        &server.dir,
        &["-c", &server.conf.display().to_string(), "-s", "reload"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reloaded(&server, 1);
    let log = server.read("logs/error.log");
    let line = log
        .lines()
        .find(|l| l.contains("signal 1 (SIGHUP) received from "))
        .expect("signal line");
    let sender: i32 = line
        .rsplit("received from ")
        .next()
        .and_then(|rest| rest.strip_suffix(", reconfiguring"))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(sender > 0 && sender != server.pid() && sender != std::process::id() as i32);
    let after = &log[log.find(line).expect("line") + line.len()..];
    assert!(after.contains(": reconfiguring\n"), "{log}");
}
