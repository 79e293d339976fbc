//! Module libraries through the real binary: a balancer that panics leaves
//! the proxy serving, and a library built for another ABI version is
//! refused with one line. The fixtures are workspace members built by
//! `cargo build --workspace` into `target/debug`, under names the modules
//! directory scan (`libwaypost_*.so`) ignores.

use std::path::PathBuf;

use std::process::{Command, Output};

use waypost_tests::{bin_dir, free_ports, get, waypost_bin, Server, TempDir};

fn fixture(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

#[test]
fn panicking_balancer_fails_the_request_and_the_server_lives() {
    let so = fixture("libpanicky_module.so");
    let [proxy, good] = free_ports(2)[..] else {
        unreachable!()
    };
    let conf = format!(
        "load_module {so};\n\
         worker_processes 1;\n\
         error_log logs/error.log;\n\
         events {{}}\n\
         http {{\n\
         \x20   log_format up '$status $upstream_addr';\n\
         \x20   access_log off;\n\
         \x20   upstream p {{\n\
         \x20       panicky;\n\
         \x20       server 127.0.0.1:{good};\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://p; access_log logs/up.log up; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{good}; location / {{ return 200 \"good\\n\"; }} }}\n\
         }}\n",
        so = so.display()
    );
    let mut wp = Server::waypost(&conf, &[proxy, good]);

    // The module serves until asked to panic.
    let r = get(proxy, "/");
    assert_eq!((r.status, r.body.as_str()), (200, "good\n"));

    for round in 1..=2 {
        let r = get(proxy, "/?panic=1");
        assert_eq!(r.status, 502, "{}", r.body);
        assert!(r.body.contains("502 Bad Gateway"), "{}", r.body);
        let errors = wp.read("logs/error.log");
        let panics: Vec<&str> = errors
            .lines()
            .filter(|l| l.contains("module \"panicky\" panicked in get at "))
            .collect();
        assert_eq!(panics.len(), round, "{errors}");
        let line = panics[round - 1];
        assert!(line.contains("[error]"), "{line}");
        // Where it panicked, and the panic's own message.
        assert!(
            line.contains("panic_module/src/lib.rs:")
                && line.contains(": asked to panic by the request, client: 127.0.0.1"),
            "{line}"
        );
        assert!(
            panics[round - 1].contains("request: \"GET /?panic=1 HTTP/1.1\""),
            "{errors}"
        );

        // The process lives and the next request is served as before.
        assert!(wp.alive(), "waypost died after a module panic");
        let r = get(proxy, "/");
        assert_eq!((r.status, r.body.as_str()), (200, "good\n"));
    }
    // The panics went to the error log only: no backtraces on stderr.
    let _ = wp.child.kill();
    let _ = wp.child.wait();
    let stderr = wp.read("stderr.log");
    assert!(!stderr.contains("asked to panic"), "{stderr}");
    let good_addr = format!("127.0.0.1:{good}");
    // A panic chose no peer: nothing was tried (`-` as nginx logs an
    // empty variable).
    assert_eq!(
        wp.wait_lines("logs/up.log", 5),
        [
            format!("200 {good_addr}"),
            "502 -".into(),
            format!("200 {good_addr}"),
            "502 -".into(),
            format!("200 {good_addr}"),
        ]
    );
}

/// Runs `waypost ARGS` in `dir` with a modules directory holding only the
/// round_robin module, so that other modules being built next to it in
/// `target/debug` cannot add lines to what the test reads.
fn run_isolated(dir: &TempDir, args: &[&str]) -> Output {
    let modules = dir.path.join("modules");
    if !modules.exists() {
        std::fs::create_dir(&modules).expect("mkdir modules");
        std::os::unix::fs::symlink(
            fixture("libwaypost_round_robin.so"),
            modules.join("libwaypost_round_robin.so"),
        )
        .expect("link round_robin");
    }
    Command::new(waypost_bin())
        .arg("-p")
        .arg(format!("{}/", dir.path.display()))
        .arg("--modules-dir")
        .arg(&modules)
        .args(args)
        .current_dir(&dir.path)
        .output()
        .expect("run waypost")
}

#[test]
fn module_of_another_abi_is_refused_in_one_line() {
    let so = fixture("libabi2_fixture.so");
    let dir = TempDir::new("abi2");
    let conf = dir.write(
        "waypost.conf",
        &format!(
            "# a module built for a future ABI\n\
             worker_processes 1;\n\
             load_module {};\n\
             events {{}}\n\
             http {{}}\n",
            so.display()
        ),
    );
    let conf_arg = conf.display().to_string();
    let emerg = format!(
        "waypost: [emerg] module \"{}\" speaks ABI 2, this waypost speaks ABI 1 in {}:3",
        so.display(),
        conf.display()
    );

    let out = run_isolated(&dir, &["-t", "-c", &conf_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{emerg}\nwaypost: configuration file {} test failed\n",
            conf.display()
        )
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // Starting on it fails the same way, before listening on anything.
    let out = run_isolated(&dir, &["-c", &conf_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{emerg}\n"));
}

/// The `panicky` fixture behind a proxy on the first port, with one
/// backend answering "good" on the second.
fn fixture_proxy() -> (Server, u16) {
    let so = fixture("libpanicky_module.so");
    let [proxy, good] = free_ports(2)[..] else {
        unreachable!()
    };
    let conf = format!(
        "load_module {so};\n\
         worker_processes 1;\n\
         error_log logs/error.log;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream p {{ panicky; server 127.0.0.1:{good}; }}\n\
         \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://p; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{good}; location / {{ return 200 \"good\\n\"; }} }}\n\
         }}\n",
        so = so.display()
    );
    (Server::waypost(&conf, &[proxy, good]), proxy)
}

#[test]
fn init_peer_rejection_answers_with_its_status_headers_and_body() {
    let (_wp, proxy) = fixture_proxy();
    let r = get(proxy, "/?reject=1");
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "{\"message\":\"slow down\"}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[test]
fn init_peer_delay_holds_the_request_without_blocking_the_worker() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let (_wp, proxy) = fixture_proxy();
    // The delayed request goes out first, whole, on its own connection.
    let started = Instant::now();
    let mut delayed = std::net::TcpStream::connect(("127.0.0.1", proxy)).expect("connect");
    delayed
        .write_all(b"GET /?delay=700 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    // With one worker thread, a request sent while the other waits is
    // answered at once: the delay is a timer, not a blocked thread.
    let plain_started = Instant::now();
    let r = get(proxy, "/");
    let plain = plain_started.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        plain < Duration::from_millis(500),
        "a plain request took {plain:?} behind a delayed one"
    );
    let mut answer = String::new();
    delayed.read_to_string(&mut answer).expect("read");
    let slow = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        slow >= Duration::from_millis(700),
        "answered after {slow:?}"
    );
}
