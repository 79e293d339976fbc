//! The configurations shipped in `conf/` work as their comments say, read
//! from the files themselves (only their ports moved to free ones, so the
//! test runs beside anything on 8080): `conf/waypost.conf` balances its
//! three demo backends 1, 1, 2, 1, 3, 1, 1 and serves `/metrics` and
//! `/status`; `conf/tls.conf` answers over TLS and HTTP/2 once its
//! certificate is made; `conf/cache.conf` answers the second request from
//! its cache.

use std::path::Path;

use waypost_tests::{free_ports, get, Server, TempDir};

/// The shipped file with each of `from` ports replaced by `to`'s.
fn shipped(name: &str, from: &[u16], to: &[u16]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conf")
        .join(name);
    let mut text = std::fs::read_to_string(&path).expect("read the shipped conf");
    for (a, b) in from.iter().zip(to) {
        text = text.replace(&format!("127.0.0.1:{a}"), &format!("127.0.0.1:{b}"));
    }
    text
}

#[test]
fn the_quick_start_balances_as_its_comment_says() {
    let ports = free_ports(4);
    let conf = shipped("waypost.conf", &[8080, 8081, 8082, 8083], &ports);
    let _server = Server::waypost(&conf, &ports);
    let bodies: Vec<String> = (0..7).map(|_| get(ports[0], "/").body).collect();
    assert_eq!(
        bodies,
        [
            "backend 1\n",
            "backend 1\n",
            "backend 2\n",
            "backend 1\n",
            "backend 3\n",
            "backend 1\n",
            "backend 1\n"
        ]
    );
    let metrics = get(ports[0], "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("demo"), "{}", metrics.body);
    let status = get(ports[0], "/status");
    assert_eq!(status.status, 200);
    assert!(status.body.starts_with('{'), "{}", status.body);
}

/// `conf/php.conf` without PHP-FPM: its routing is checked (a missing
/// script is a 404 before PHP is asked; `/` goes to `/index.php`, whose
/// socket is asked, here absent: 502 with nginx's line).
#[test]
fn the_php_example_routes_as_its_comment_says() {
    let ports = free_ports(1);
    let dir = waypost_tests::TempDir::new("php-example");
    dir.write("www/index.php", "<?php echo 1;");
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let sock = dir.path.join("php-fpm.sock");
    let conf = shipped("php.conf", &[8080], &ports)
        .replace("root www;", &format!("root {}/www;", dir.path.display()))
        .replace("/run/php/php8.2-fpm.sock", &sock.display().to_string())
        .replace(
            "include fastcgi_params;",
            &format!("include {}/fastcgi_params;", shipped_dir.display()),
        );
    let server = Server::waypost(&conf, &ports);
    assert_eq!(get(ports[0], "/missing.php").status, 404);
    assert_eq!(get(ports[0], "/").status, 502);
    // (Its error log is the terminal's: the server's stderr here.)
    let log = server.wait_lines("stderr.log", 2);
    let line = format!(
        "connect() to unix:{} failed (2: No such file or directory)",
        sock.display()
    );
    assert!(
        log.iter().any(|l| l.contains("[crit]")
            && l.contains(&line)
            && l.contains("request: \"GET / HTTP/1.1\"")),
        "{log:?}"
    );
}

#[test]
fn the_cache_example_answers_from_its_cache() {
    let ports = free_ports(2);
    let conf = shipped("cache.conf", &[8080, 8081], &ports);
    let _server = Server::waypost(&conf, &ports);
    let first = get(ports[0], "/");
    assert_eq!(first.header("X-Cache-Status"), Some("MISS"));
    assert!(first.body.starts_with("made at "), "{}", first.body);
    let second = get(ports[0], "/");
    assert_eq!(second.header("X-Cache-Status"), Some("HIT"));
    assert_eq!(second.body, first.body);
}

#[test]
fn the_tls_example_answers_over_tls_and_http2() {
    let ports = free_ports(3);
    let conf = shipped("tls.conf", &[8443, 8080, 8081], &ports);
    // Its certificate, made as its comment says, beside the file.
    let dir = TempDir::new("quick-tls");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "localhost.key",
            "-out",
            "localhost.pem",
            "-days",
            "30",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .current_dir(&dir.path)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{made:?}");
    let conf = conf
        .replace(
            "localhost.pem",
            &dir.path.join("localhost.pem").display().to_string(),
        )
        .replace(
            "localhost.key",
            &dir.path.join("localhost.key").display().to_string(),
        );
    let _server = Server::waypost(&conf, &ports);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", " %{http_version}"])
            .args(args)
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pem = dir.path.join("localhost.pem").display().to_string();
    let tls = curl(&[
        "--cacert",
        &pem,
        "--http2",
        "--resolve",
        &format!("localhost:{}:127.0.0.1", ports[0]),
        &format!("https://localhost:{}/", ports[0]),
    ]);
    assert_eq!(tls, "backend: https\n 2");
    let h2c = curl(&[
        "--http2-prior-knowledge",
        &format!("http://127.0.0.1:{}/", ports[1]),
    ]);
    assert_eq!(h2c, "backend: \n 2");
}
