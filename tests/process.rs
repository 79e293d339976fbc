//! Process control through the pid file, as `nginx -s`: reload, reopen,
//! quit, stop; and SIGHUP with a bad config keeping the old one serving.

use std::time::{Duration, Instant};

use waypost_tests::{free_ports, get, run_waypost, Server};

fn conf(port: u16, text: &str) -> String {
    format!(
        "worker_processes 1;\npid logs/waypost.pid;\nerror_log logs/error.log notice;\nevents {{}}\nhttp {{\n    access_log logs/access.log;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 200 \"{text}\"; }}\n    }}\n}}\n"
    )
}

/// Waits until `check` holds, polling; fails the test after 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// waypost on `conf`, once it wrote its pid file: as nginx, it listens
/// first, so a client can connect before the file is there.
fn started(conf: &str, port: u16) -> Server {
    let server = Server::waypost(conf, &[port]);
    eventually("the pid file", || {
        server.dir.path.join("logs/waypost.pid").exists()
    });
    server
}

fn signal(server: &Server, name: &str) -> std::process::Output {
    run_waypost(
        &server.dir,
        &["-c", &server.conf.display().to_string(), "-s", name],
    )
}

#[test]
fn reload_through_pid_file_swaps_config() {
    let port = free_ports(1)[0];
    let server = started(&conf(port, "one"), port);
    assert_eq!(get(port, "/").body, "one");
    std::fs::write(&server.conf, conf(port, "two")).expect("rewrite conf");
    let out = signal(&server, "reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the new config answers", || get(port, "/").body == "two");
    assert!(server.read("logs/error.log").contains("reconfiguring"));
}

#[test]
fn reload_with_bad_config_keeps_serving_and_logs_the_error() {
    let port = free_ports(1)[0];
    let server = started(&conf(port, "good"), port);
    let bad = conf(port, "bad").replace("events {}", "events {}\nnosuch_directive on;");
    std::fs::write(&server.conf, bad).expect("rewrite conf");
    // `-s reload` checks the config first and sends nothing, as nginx does.
    let out = signal(&server, "reload");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "[emerg] unknown directive \"nosuch_directive\" in {}:5",
            server.conf.display()
        )),
        "{stderr}"
    );
    // A raw SIGHUP reaches the process, which refuses the config and logs why.
    server.signal(libc::SIGHUP);
    eventually("the error is logged", || {
        server
            .read("logs/error.log")
            .contains("unknown directive \"nosuch_directive\"")
    });
    assert_eq!(get(port, "/").body, "good");
}

#[test]
fn reopen_starts_a_new_access_log() {
    let port = free_ports(1)[0];
    let server = started(&conf(port, "x"), port);
    get(port, "/first");
    server.wait_lines("logs/access.log", 1);
    std::fs::rename(
        server.dir.path.join("logs/access.log"),
        server.dir.path.join("logs/access.log.1"),
    )
    .expect("rotate");
    let out = signal(&server, "reopen");
    assert!(out.status.success());
    // Lines written after the reopen land in a new file; the reopen is
    // asynchronous, so retry until one does.
    eventually("a line in the new access log", || {
        get(port, "/second");
        server.read("logs/access.log").contains("/second")
    });
    assert!(server.read("logs/access.log.1").contains("/first"));
}

#[test]
fn quit_exits_cleanly_and_removes_the_pid_file() {
    let port = free_ports(1)[0];
    let mut server = started(&conf(port, "x"), port);
    let out = signal(&server, "quit");
    assert!(out.status.success());
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(!server.dir.path.join("logs/waypost.pid").exists());
}

#[test]
fn stop_exits() {
    let port = free_ports(1)[0];
    let mut server = started(&conf(port, "x"), port);
    get(port, "/last-request");
    assert!(signal(&server, "stop").status.success());
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(!server.alive());
    // The access log is written out before the process exits.
    assert!(server.read("logs/access.log").contains("/last-request"));
}
