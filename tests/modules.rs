//! Module libraries through the real binary: a balancer that panics leaves
//! the proxy serving, and a bad module file (another ABI version, not a
//! shared library, no waypost symbol, missing, writable by other users) is
//! refused with one line, at `-t`, at start and on reload. The fixtures are
//! workspace members built by `cargo build --workspace` into
//! `target/debug`, under names the modules directory scan
//! (`libwaypost_*.so`) ignores.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use waypost_tests::{built_module, free_ports, get, get_with, waypost_bin, Server, TempDir};

#[test]
fn panicking_balancer_fails_the_request_and_the_server_lives() {
    let so = built_module("libpanicky_module.so");
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
    let good_addr = format!("127.0.0.1:{good}");
    // A panic chose no peer: nothing was tried (`-` as nginx logs an
    // empty variable). Read while the server runs: the access log is
    // written by a thread a kill would cut short.
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
    // The panics went to the error log only: no backtraces on stderr.
    let _ = wp.child.kill();
    let _ = wp.child.wait();
    let stderr = wp.read("stderr.log");
    assert!(!stderr.contains("asked to panic"), "{stderr}");
}

/// Runs `waypost ARGS` in `dir` with a modules directory holding only the
/// round_robin module, so that other modules being built next to it in
/// `target/debug` cannot add lines to what the test reads.
fn run_isolated(dir: &TempDir, args: &[&str]) -> Output {
    let modules = dir.path.join("modules");
    if !modules.exists() {
        std::fs::create_dir(&modules).expect("mkdir modules");
        std::os::unix::fs::symlink(
            built_module("libwaypost_round_robin.so"),
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
    let so = built_module("libabi2_fixture.so");
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

/// A config in `dir` that loads `so` on its line 3.
fn load_module_conf(dir: &TempDir, so: &Path) -> PathBuf {
    dir.write(
        "waypost.conf",
        &format!(
            "# a module\n\
             worker_processes 1;\n\
             load_module {};\n\
             events {{}}\n\
             http {{}}\n",
            so.display()
        ),
    )
}

/// `waypost -t` on `conf` fails with `[emerg] MESSAGE` on line 3, one
/// line, and so does starting on it.
fn assert_refused(dir: &TempDir, conf: &Path, message: &str) {
    let conf_arg = conf.display().to_string();
    let emerg = format!("waypost: [emerg] {message} in {conf_arg}:3");
    let out = run_isolated(dir, &["-t", "-c", &conf_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{emerg}\nwaypost: configuration file {conf_arg} test failed\n")
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    let out = run_isolated(dir, &["-c", &conf_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{emerg}\n"));
}

/// `waypost -t` on `conf` succeeds.
fn assert_accepted(dir: &TempDir, conf: &Path) {
    let conf_arg = conf.display().to_string();
    let out = run_isolated(dir, &["-t", "-c", &conf_arg]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "waypost: the configuration file {conf_arg} syntax is ok\n\
             waypost: configuration file {conf_arg} test is successful\n"
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The system's libm: a real shared library that is no waypost module.
fn libm() -> &'static Path {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib64/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .expect("no libm.so.6 found to test with")
}

/// A copy of the `panicky` fixture (a good module) at `lib/libpanicky.so`
/// in `dir`, the file 0644 and `lib` 0755 whatever the umask.
fn good_module_copy(dir: &TempDir) -> (PathBuf, PathBuf) {
    let lib = dir.path.join("lib");
    std::fs::create_dir_all(&lib).expect("mkdir lib");
    chmod(&lib, 0o755);
    let so = lib.join("libpanicky.so");
    std::fs::copy(built_module("libpanicky_module.so"), &so).expect("copy module");
    chmod(&so, 0o644);
    (lib, so)
}

#[test]
fn file_that_is_no_shared_library_is_refused_in_one_line() {
    let dir = TempDir::new("notlib");
    let so = dir.write("libnot.so", &"not a library\n".repeat(64));
    let conf = load_module_conf(&dir, &so);
    // glibc's dlerror(), without the private copy's path.
    assert_refused(
        &dir,
        &conf,
        &format!(
            "module \"{}\" failed to load: invalid ELF header",
            so.display()
        ),
    );
}

#[test]
fn library_without_waypost_symbol_is_refused_in_one_line() {
    let dir = TempDir::new("nosymbol");
    let so = dir.path.join("libm.so");
    std::fs::copy(libm(), &so).expect("copy libm");
    let conf = load_module_conf(&dir, &so);
    assert_refused(
        &dir,
        &conf,
        &format!(
            "module \"{}\" is not a waypost module: no waypost_abi_version symbol",
            so.display()
        ),
    );
}

#[test]
fn missing_module_file_is_refused_in_one_line() {
    let dir = TempDir::new("missing");
    let so = dir.path.join("libnothere.so");
    let conf = load_module_conf(&dir, &so);
    // nginx's words for it.
    assert_refused(
        &dir,
        &conf,
        &format!(
            "dlopen() \"{0}\" failed ({0}: cannot open shared object file: \
             No such file or directory)",
            so.display()
        ),
    );
}

#[test]
fn module_writable_by_other_users_is_refused() {
    let dir = TempDir::new("insecure");
    let (lib, so) = good_module_copy(&dir);
    let conf = load_module_conf(&dir, &so);
    assert_accepted(&dir, &conf);

    for mode in [0o666, 0o664, 0o646] {
        chmod(&so, mode);
        assert_refused(
            &dir,
            &conf,
            &format!(
                "module \"{0}\" is writable by other users (mode {mode:04o}), \
                 refused as sshd refuses insecure files (chmod go-w \"{0}\" to allow it)",
                so.display()
            ),
        );
    }
    chmod(&so, 0o644);
    assert_accepted(&dir, &conf);

    // The directory holding it: whoever can write there can replace it.
    for mode in [0o777, 0o775] {
        chmod(&lib, mode);
        assert_refused(
            &dir,
            &conf,
            &format!(
                "module \"{}\" is in directory \"{1}\", writable by other users \
                 (mode {mode:04o}), refused as sshd refuses insecure files \
                 (chmod go-w \"{1}\" to allow it)",
                so.display(),
                lib.display()
            ),
        );
    }
    // Unless sticky, as /tmp is: there only the file's owner can replace it.
    chmod(&lib, 0o1777);
    assert_accepted(&dir, &conf);
    chmod(&lib, 0o755);
    assert_accepted(&dir, &conf);
}

/// Polls `check` until it holds; fails the test after 20 seconds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn bad_modules_on_reload_keep_the_old_config_serving() {
    let port = free_ports(1)[0];
    let conf = |load: Option<&Path>, text: &str| {
        let load = load.map_or_else(String::new, |so| format!("load_module {};\n", so.display()));
        format!(
            "{load}worker_processes 1;\nerror_log logs/error.log notice;\nevents {{}}\n\
             http {{\n    access_log off;\n\
             \x20   server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"{text}\\n\"; }} }}\n}}\n"
        )
    };
    let server = Server::waypost_private(&conf(None, "good"), &[port]);
    let conf_path = server.conf.display().to_string();
    let lines = |text: &str| -> Vec<String> {
        server
            .read("logs/error.log")
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(get(port, "/").body, "good\n");

    let dir = &server.dir;
    let (lib, insecure) = good_module_copy(dir);
    chmod(&insecure, 0o666);
    let not_lib = dir.write("libnot.so", &"not a library\n".repeat(64));
    let no_symbol = dir.path.join("libm.so");
    std::fs::copy(libm(), &no_symbol).expect("copy libm");
    let missing = dir.path.join("libnothere.so");
    let abi2 = built_module("libabi2_fixture.so");
    let bad: [(&Path, String); 5] = [
        (
            &insecure,
            format!(
                "module \"{0}\" is writable by other users (mode 0666), \
                 refused as sshd refuses insecure files (chmod go-w \"{0}\" to allow it)",
                insecure.display()
            ),
        ),
        (
            &not_lib,
            format!(
                "module \"{}\" failed to load: invalid ELF header",
                not_lib.display()
            ),
        ),
        (
            &no_symbol,
            format!(
                "module \"{}\" is not a waypost module: no waypost_abi_version symbol",
                no_symbol.display()
            ),
        ),
        (
            &missing,
            format!(
                "dlopen() \"{0}\" failed ({0}: cannot open shared object file: \
                 No such file or directory)",
                missing.display()
            ),
        ),
        (
            &abi2,
            format!(
                "module \"{}\" speaks ABI 2, this waypost speaks ABI 1",
                abi2.display()
            ),
        ),
    ];
    for (n, (so, message)) in bad.iter().enumerate() {
        server.reload_with(&conf(Some(so), "bad"));
        eventually(&format!("[emerg] line #{}", n + 1), || {
            lines("[emerg]").len() > n
        });
        let emerg = &lines("[emerg]")[n];
        let expected = format!("[emerg] {}#0: {message} in {conf_path}:1", server.pid());
        assert!(emerg.ends_with(&expected), "{emerg}\nexpected: {expected}");
        assert_eq!(get(port, "/").body, "good\n", "after {}", so.display());
    }
    // Refused with its directory writable by others too, then accepted
    // once fixed, as the message says.
    chmod(&insecure, 0o644);
    chmod(&lib, 0o777);
    server.reload_with(&conf(Some(&insecure), "bad"));
    eventually("[emerg] line #6", || lines("[emerg]").len() > 5);
    assert!(
        lines("[emerg]")[5].contains(&format!(
            "is in directory \"{}\", writable by other users (mode 0777)",
            lib.display()
        )),
        "{:?}",
        lines("[emerg]")
    );
    assert_eq!(get(port, "/").body, "good\n");
    chmod(&lib, 0o755);
    server.reload_with(&conf(Some(&insecure), "better"));
    eventually("a reload", || !lines("configuration reloaded").is_empty());
    assert_eq!(get(port, "/").body, "better\n");
    assert_eq!(lines("[emerg]").len(), 6);
}

/// The `panicky` fixture behind a proxy on the first port, with one
/// backend answering "good" on the second.
fn fixture_proxy() -> (Server, u16) {
    fixture_proxy_with("location / { proxy_pass http://p; }")
}

/// The same, with `locations` in the proxy's server (upstream `p`).
fn fixture_proxy_with(locations: &str) -> (Server, u16) {
    let so = built_module("libpanicky_module.so");
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
         \x20   server {{ listen 127.0.0.1:{proxy}; {locations} }}\n\
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

/// `auth_basic` is nginx's access phase: it decides before the balancer's
/// `init_peer` runs (nginx's content phase), so a refused client never
/// reaches the module, and the password check's wait is not the hook's.
#[test]
fn auth_basic_refuses_before_init_peer_runs() {
    let dir = TempDir::new("auth-init");
    let users = dir.write("users", "alice:{PLAIN}secret\n");
    let (_wp, proxy) = fixture_proxy_with(&format!(
        "location / {{ auth_basic on; auth_basic_user_file {}; proxy_pass http://p; }} \
         location = /metrics {{ metrics; }}",
        users.display()
    ));
    // "alice:secret" and "alice:wrong".
    let right = [("Authorization", "Basic YWxpY2U6c2VjcmV0")];
    let wrong = [("Authorization", "Basic YWxpY2U6d3Jvbmc=")];
    assert_eq!(get(proxy, "/?reject=1").status, 401);
    assert_eq!(get_with(proxy, "/?reject=1", &wrong).status, 401);
    let seen = |port| {
        get(port, "/metrics")
            .body
            .lines()
            .find(|l| l.starts_with("waypost_module_requests_seen_total"))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    };
    assert_eq!(
        seen(proxy).as_deref(),
        Some("0"),
        "refused before init_peer"
    );
    assert_eq!(get_with(proxy, "/?reject=1", &right).status, 429);
    let r = get_with(proxy, "/", &right);
    assert_eq!((r.status, r.body.as_str()), (200, "good\n"));
    assert_eq!(seen(proxy).as_deref(), Some("2"));
}
