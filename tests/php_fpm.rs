//! PHP-FPM itself behind waypost and behind nginx, side by side, on the
//! shipped `conf/php.conf` (its socket, root and port made the test's):
//! the same scripts answer the same, their stderr (`error_log()`) gives
//! the same error-log lines. `.ci/run` installs php-fpm.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waypost_tests::{assert_same_answers, free_ports, Server, TempDir};

/// Debian's PHP-FPM binary (`apt-get install php-fpm`).
fn php_fpm() -> PathBuf {
    std::fs::read_dir("/usr/sbin")
        .expect("read /usr/sbin")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .expect("php-fpm not found: apt-get install -y php-fpm (.ci/run does)")
}

/// A PHP-FPM master with two workers on a socket in `dir`; stopped on
/// drop.
struct Fpm(Child);

impl Drop for Fpm {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (a SIGKILL would
        // leave them running).
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signalling the process this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.0.wait();
    }
}

fn start_fpm(dir: &TempDir) -> (Fpm, PathBuf) {
    let sock = dir.path.join("php.sock");
    // (0666: nginx's worker may not be root.)
    let conf = dir.write(
        "fpm.conf",
        &format!(
            "[global]\nerror_log = {}/fpm.log\ndaemonize = no\n\
             [www]\nlisten = {}\nlisten.mode = 0666\npm = static\npm.max_children = 2\n",
            dir.path.display(),
            sock.display()
        ),
    );
    let child = Command::new(php_fpm())
        // (-R: the tests may run as root.)
        .args(["-R", "-F", "-n", "-y"])
        .arg(&conf)
        .arg("-p")
        .arg(&dir.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start php-fpm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "php-fpm did not listen on {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Fpm(child), sock)
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "www/index.php",
        "<?php echo 'hello from PHP', \"\\n\", $_SERVER['SCRIPT_NAME'], '|', $_SERVER['PATH_INFO'] ?? '-', '|', \
         $_SERVER['QUERY_STRING'], '|', $_SERVER['REQUEST_METHOD'], '|', $_SERVER['CONTENT_LENGTH'] ?? '-', '|', \
         $_SERVER['DOCUMENT_URI'], '|', $_SERVER['REQUEST_URI'], '|', file_get_contents('php://input'), \"\\n\";",
    ),
    (
        "www/status.php",
        "<?php http_response_code(404); header('X-App: 1'); echo 'nope';",
    ),
    ("www/redirect.php", "<?php header('Location: /elsewhere');"),
    (
        "www/warn.php",
        "<?php error_log('app warning'); echo 'warned';",
    ),
    ("www/big.php", "<?php echo str_repeat('0123456789', 20000);"),
];

fn conf(port: u16, dir: &Path, sock: &Path, nginx: bool) -> String {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    std::fs::read_to_string(shipped.join("php.conf"))
        .expect("read conf/php.conf")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("root www;", &format!("root {}/www;", dir.display()))
        .replace("/run/php/php8.2-fpm.sock", &sock.display().to_string())
        .replace(
            "include fastcgi_params;",
            &format!("include {}/fastcgi_params;", shipped.display()),
        )
        .replace(
            "error_log stderr notice;",
            "error_log logs/error.log notice;",
        )
        .replace("access_log logs/php-access.log;", "access_log off;")
        // (One nginx process, which the test's stop ends, as the
        // harness runs nginx elsewhere.)
        .replace(
            "worker_processes 1;",
            if nginx {
                "worker_processes 1;\nmaster_process off;"
            } else {
                "worker_processes 1;"
            },
        )
}

/// The answer's status line, its Content-Type, Location, X-App and
/// Content-Length, and its body (unchunked).
fn ask(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    let (status, kept, body) = waypost_tests::answer_parts(&got, |l| {
        let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
        matches!(name.as_str(), "content-type" | "location" | "x-app")
    });
    let body = if status.contains(" 404 ") && !body.contains("nope") {
        // (nginx's own page names its server.)
        String::new()
    } else {
        body
    };
    format!("{status}\n{}\n\n{body}", kept.join("\n"))
}

fn requests() -> Vec<String> {
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    vec![
        get("/"),
        get("/index.php/extra/path?a=1&b=2"),
        "POST /index.php HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nposted=ok".into(),
        "POST /index.php HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nchun\r\n3\r\nked\r\n0\r\n\r\n".into(),
        "HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".into(),
        get("/missing.php"),
        get("/status.php"),
        get("/redirect.php"),
        get("/warn.php"),
        get("/big.php"),
        get("/"),
    ]
}

fn run(nginx: bool, dir: &TempDir, sock: &Path) -> (Vec<String>, Vec<String>) {
    let port = free_ports(1)[0];
    let server = Server::either(nginx, &conf(port, &dir.path, sock, nginx), &[port]);
    let answers = requests().iter().map(|r| ask(port, r)).collect();
    let log = server.error_lines(1);
    (answers, log)
}

#[test]
fn php_fpm_answers_as_behind_nginx() {
    let dir = TempDir::new("php-fpm");
    for (name, text) in SCRIPTS {
        dir.write(name, text);
    }
    let (_fpm, sock) = start_fpm(&dir);
    let (ours, our_log) = run(false, &dir, &sock);
    let (theirs, their_log) = run(true, &dir, &sock);
    assert_eq!(our_log, their_log);
    assert_same_answers(&ours, &theirs);
    // (PATH_INFO and CONTENT_LENGTH are sent, empty.)
    assert!(
        ours[0].contains("hello from PHP\n/index.php|||GET||/index.php|/|\n"),
        "{}",
        ours[0]
    );
    assert!(
        ours[1].contains("/index.php|/extra/path|a=1&b=2|GET|"),
        "{}",
        ours[1]
    );
    assert!(
        ours[2].ends_with("|POST|9|/index.php|/index.php|posted=ok\n"),
        "{}",
        ours[2]
    );
    assert!(
        ours[3].ends_with("|POST|7|/index.php|/index.php|chunked\n"),
        "{}",
        ours[3]
    );
    assert!(ours[5].starts_with("HTTP/1.1 404 Not Found"), "{}", ours[5]);
    assert!(
        ours[6].contains("X-App: 1") && ours[6].ends_with("nope"),
        "{}",
        ours[6]
    );
    assert!(
        ours[7].starts_with("HTTP/1.1 302 Found")
            || ours[7].starts_with("HTTP/1.1 302 Moved Temporarily"),
        "{}",
        ours[7]
    );
    assert_eq!(
        ours[9].len() - ours[9].find("\n\n").unwrap_or(0) - 2,
        200_000,
        "big answer"
    );
    assert!(
        our_log
            .iter()
            .any(|l| l.starts_with("[error] FastCGI sent in stderr: \"PHP message: app warning\"")),
        "{our_log:?}"
    );
}
