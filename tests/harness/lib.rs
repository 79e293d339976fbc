//! The integration test harness: runs the real `waypost` binary (and nginx,
//! for side-by-side comparisons) on loopback with configs written per test.
//!
//! The binary and the shipped modules come from the workspace's
//! `target/debug`, built by the test command (`cargo build --workspace`
//! before `cargo test --workspace`). Every test picks free ports and its
//! own directory, so tests run in parallel safely.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The workspace's build directory (`target/debug`), or `WAYPOST_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WAYPOST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug")
}

/// A module library of the workspace's build (`libNAME.so`); fails the
/// test with a hint when it was not built.
pub fn built_module(file: &str) -> PathBuf {
    let path = bin_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// The `waypost` binary; fails the test with a hint when it was not built.
pub fn waypost_bin() -> PathBuf {
    let bin = bin_dir().join("waypost");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// Ports this test process has handed out (free ports and listeners'):
/// tests run in parallel threads, and the kernel may give a port one test
/// released (a "dead" upstream, say) to another test's `bind(:0)`.
fn claim(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    if given.contains(&port) {
        return false;
    }
    given.push(port);
    true
}

/// Ports below the kernel's ephemeral range, when it leaves room: a port
/// the kernel gives for `bind(:0)` is one it also gives to outgoing
/// connections, so a test's client (or a proxy's upstream connection)
/// could take it between the choice and the server's `bind()` ("Address
/// already in use"). `None`: the range starts too low, use `bind(:0)`.
fn quiet_ports() -> Option<std::ops::Range<u16>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u16 = range.split_whitespace().next()?.parse().ok()?;
    (low >= 12000).then_some(10000..low)
}

/// A listener on 127.0.0.1 at a port no other test of this process was
/// given, outside the ephemeral range where there is room.
pub fn unclaimed_listener() -> TcpListener {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if let Some(ports) = quiet_ports() {
        let span = u32::from(ports.end - ports.start);
        // Each test binary starts elsewhere in the range.
        let base = std::process::id().wrapping_mul(7919) % span;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            assert!(n < span, "no free port left in {ports:?}");
            let port = ports.start + ((base + n) % span) as u16;
            if claim(port) {
                if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                    return l;
                }
            }
        }
    }
    // Listeners the kernel offered on a port already given are kept until
    // one is found, so it does not offer the same again.
    let mut refused = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
        if claim(l.local_addr().expect("addr").port()) {
            return l;
        }
        refused.push(l);
    }
}

/// A port nothing listens on right now (and none handed out before by
/// this process).
pub fn free_port() -> u16 {
    unclaimed_listener().local_addr().expect("addr").port()
}

/// `n` distinct free ports (kept bound until all are chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).map(|_| unclaimed_listener()).collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// A directory removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "waypost-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("logs")).expect("create test dir");
        TempDir { path }
    }

    /// Writes `text` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Waits until something accepts on `port`, or panics after `timeout`.
pub fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `waypost ARGS` in `dir` to completion (for `-t`, `-s`, errors).
pub fn run_waypost(dir: &TempDir, args: &[&str]) -> Output {
    Command::new(waypost_bin())
        .args([
            "-p",
            &format!("{}/", dir.path.display()),
            "--modules-dir",
            &bin_dir().display().to_string(),
        ])
        .args(args)
        .current_dir(&dir.path)
        .output()
        .expect("run waypost")
}

/// Runs `nginx ARGS` in `dir` to completion, `dir` its prefix (`-e`
/// makes it print `nginx: [level] ...` on stderr).
pub fn run_nginx(dir: &TempDir, args: &[&str]) -> Output {
    Command::new(nginx_bin())
        .args([
            "-p",
            &format!("{}/", dir.path.display()),
            "-e",
            "logs/early.log",
        ])
        .args(args)
        .current_dir(&dir.path)
        .output()
        .expect("run nginx")
}

/// What differs between the runs of a side-by-side test, as names: paths
/// (a test tree, a server's prefix) and ports (`:PORT`).
#[derive(Default)]
pub struct Neutral(Vec<(String, String)>);

impl Neutral {
    /// `path` written as `name`.
    pub fn path(mut self, path: &Path, name: &str) -> Neutral {
        self.0.push((path.display().to_string(), name.to_owned()));
        self
    }

    /// `:PORT` written as `:NAME`.
    pub fn port(mut self, port: u16, name: &str) -> Neutral {
        self.0.push((format!(":{port}"), format!(":{name}")));
        self
    }

    pub fn apply(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
    }
}

/// An answer as compared: the status line, each header named in
/// `names` (in that order, every line of it), and the body, with the
/// server's name in pages and what `neutral` names made neutral.
pub fn shown(answer: &str, names: &[&str], neutral: &Neutral) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().unwrap_or("").to_owned()];
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    for name in names {
        for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push(format!("{name}: {value}"));
        }
    }
    // (Paths first: a test directory's name holds the program's.)
    out.push(format!("body: {:?}", neutral_server(&neutral.apply(body))));
    neutral.apply(&out.join(" | "))
}

/// A server block listening on the tested port (`{port}`, see
/// [`side_by_side`]), of `lines`.
pub fn port_server(lines: &str) -> String {
    format!("    server {{\n        listen 127.0.0.1:{{port}};\n{lines}    }}\n")
}

/// A side-by-side test's server: the tested port and a backend's, and
/// what differs between the runs made neutral.
pub struct SideBySide {
    pub server: Server,
    pub port: u16,
    pub back: u16,
    pub neutral: Neutral,
}

/// Starts nginx or waypost on `http` (the http block's lines; `{port}` a
/// free port to test, `{back}` another, `{dir}` the test tree `tree`),
/// the whole config passed through `edit` first.
pub fn side_by_side(
    nginx: bool,
    http: &str,
    tree: &Path,
    edit: impl Fn(String) -> String,
) -> SideBySide {
    let [port, back] = free_ports(2)[..] else {
        unreachable!("two ports")
    };
    let lines = http
        .replace("{port}", &port.to_string())
        .replace("{back}", &back.to_string())
        .replace("{dir}", &tree.display().to_string());
    let server = Server::either(nginx, &edit(wrap_http(&lines, nginx)), &[port, back]);
    let neutral = Neutral::default()
        .path(&server.dir.path, "PREFIX")
        .path(tree, "DIR")
        .port(port, "PORT")
        .port(back, "BACK");
    SideBySide {
        server,
        port,
        back,
        neutral,
    }
}

/// The error log lines of requests (with a connection number), in order,
/// as `[level] message`: no time, pid or connection number.
pub fn request_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let level = l.split_once(" [")?.1.split_once(']')?.0;
            let message = l.split_once(" *")?.1.split_once(' ')?.1;
            Some(format!("[{level}] {message}"))
        })
        .collect()
}

/// What waypost is to report for a `-t` case: nginx's report, or where
/// it differs on purpose (README), its own.
pub enum Waypost {
    /// nginx's report.
    Same,
    /// A report starting and ending so (its own reason in between).
    Around(String, String),
    /// This report.
    Exactly(String),
}

/// A configuration with `line` in `location /` of one server: it is line
/// 7 of the file `assert_t_cases` writes.
pub fn in_location(line: &str) -> String {
    format!("http {{\n    server {{\n        location / {{\n            {line}\n        }}\n    }}\n}}\n")
}

/// What `assert_t_cases` shows for a configuration refused at `line`.
pub fn emerg(message: &str, line: u32) -> String {
    format!("[emerg] {message} in CONF:{line} (exit Some(1))")
}

/// Runs `-t` by both programs on each case's config (`rest` of
/// [`t_reports`], in parallel) and asserts that nginx reports what the
/// case expects, and waypost what its [`Waypost`] says.
pub fn assert_t_cases(tag: &str, cases: &[(String, String, Waypost)]) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(conf, want, ours)| s.spawn(move || (conf, want, ours, t_reports(tag, conf))))
            .collect();
        runs.into_iter()
            .map(|h| h.join().expect("case thread"))
            .filter(|(_, want, ours, (nginx, waypost))| {
                let waypost_ok = match ours {
                    Waypost::Same => waypost == *want,
                    Waypost::Around(start, end) => {
                        waypost.starts_with(start.as_str()) && waypost.ends_with(end.as_str())
                    }
                    Waypost::Exactly(report) => waypost == report,
                };
                nginx != *want || !waypost_ok
            })
            .map(|(conf, want, _, (nginx, waypost))| {
                format!("{conf}  expected: {want}\n  nginx:    {nginx}\n  waypost:  {waypost}")
            })
            .collect()
    });
    assert_no_failures(&failures, cases.len());
}

/// Asserts that none of `cases` cases failed (`failures` their reports).
pub fn assert_no_failures(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A program's `-t` report: its `[emerg]` line (or `ok`), the file
/// named `CONF`, and the exit code.
pub fn t_report(out: &Output, program: &str, conf: &Path) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{program}: ");
    let line = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .find(|l| l.starts_with("[emerg]"))
        .unwrap_or("ok")
        .replace(&conf.display().to_string(), "CONF");
    format!("{line} (exit {:?})", out.status.code())
}

/// `-t` by nginx and waypost on a config of the error log and pid file
/// in a new directory (lines 1 and 2), `events` (line 3), then `rest`
/// (`{port}` a free port): nginx's [`t_report`], then waypost's.
pub fn t_reports(tag: &str, rest: &str) -> (String, String) {
    let dir = TempDir::new(tag);
    let head = "error_log logs/error.log;\npid logs/t.pid;\nevents {}\n";
    let conf = dir.write(
        "test.conf",
        &format!("{head}{rest}").replace("{port}", &free_port().to_string()),
    );
    let conf_text = conf.display().to_string();
    let args = ["-t", "-c", conf_text.as_str()];
    let nginx = run_nginx(&dir, &args);
    (
        t_report(&nginx, "nginx", &conf),
        t_report(&run_waypost(&dir, &args), "waypost", &conf),
    )
}

/// The first line `waypost -t` prints for a config of the `http` block's
/// lines `http` (from line 5), the file named `CONF`.
pub fn first_report(http: &str) -> String {
    let dir = TempDir::new("report");
    let conf = dir.write(
        "t.conf",
        &format!("error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n{http}}}\n"),
    );
    let out = run_waypost(&dir, &["-t", "-c", &conf.display().to_string()]);
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .replace(&conf.display().to_string(), "CONF")
}

/// The server's stderr goes to `stderr.log` in its directory: a pipe that
/// nobody reads would block the server once full.
fn stderr_file(dir: &TempDir) -> Stdio {
    std::fs::File::create(dir.path.join("stderr.log")).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// A running process killed on drop.
pub struct Server {
    pub child: Child,
    pub dir: TempDir,
    pub conf: PathBuf,
}

impl Server {
    /// Starts waypost on `conf` (written to the test directory) and waits
    /// until every port in `ports` accepts connections.
    pub fn waypost(conf: &str, ports: &[u16]) -> Server {
        Server::start_waypost(conf, ports, false)
    }

    /// As [`Server::waypost`], with the process's own TMPDIR, so its private
    /// module directory (`$TMPDIR/waypost-modules-UID`) belongs to the test:
    /// for tests that reload or count module copies.
    pub fn waypost_private(conf: &str, ports: &[u16]) -> Server {
        Server::start_waypost(conf, ports, true)
    }

    fn start_waypost(conf: &str, ports: &[u16], private_tmp: bool) -> Server {
        let dir = TempDir::new("wp");
        let conf_path = dir.write("waypost.conf", conf);
        let mut command = Command::new(waypost_bin());
        command
            .args(["-p", &format!("{}/", dir.path.display()), "-c"])
            .arg(&conf_path)
            .args(["--modules-dir", &bin_dir().display().to_string()])
            .current_dir(&dir.path)
            .stdout(Stdio::null())
            .stderr(stderr_file(&dir));
        if private_tmp {
            std::fs::create_dir_all(dir.path.join("tmp")).expect("mkdir tmp");
            command.env("TMPDIR", dir.path.join("tmp"));
        }
        let child = command.spawn().expect("start waypost");
        let mut server = Server {
            child,
            dir,
            conf: conf_path,
        };
        server.wait_ports(ports);
        server
    }

    /// Replaces the config file whole (waypost never reads half of it),
    /// then sends SIGHUP.
    pub fn reload_with(&self, conf: &str) {
        let tmp = self.conf.with_extension("new");
        std::fs::write(&tmp, conf).expect("write conf");
        std::fs::rename(&tmp, &self.conf).expect("rename conf");
        self.signal(libc::SIGHUP);
    }

    /// nginx when `nginx`, else waypost: for tests that run the same
    /// config through both, one after the other.
    pub fn either(nginx: bool, conf: &str, ports: &[u16]) -> Server {
        if nginx {
            Server::nginx(conf, ports)
        } else {
            Server::waypost(conf, ports)
        }
    }

    /// Starts nginx on `conf`, the reference implementation.
    pub fn nginx(conf: &str, ports: &[u16]) -> Server {
        let dir = TempDir::new("nginx");
        let conf_path = dir.write("nginx.conf", conf);
        let child = Command::new(nginx_bin())
            .args(["-p", &format!("{}/", dir.path.display()), "-c"])
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(stderr_file(&dir))
            .spawn()
            .expect("start nginx");
        let mut server = Server {
            child,
            dir,
            conf: conf_path,
        };
        server.wait_ports(ports);
        server
    }

    fn wait_ports(&mut self, ports: &[u16]) {
        for &port in ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    let err = self.read("stderr.log");
                    panic!("server exited with {status} before listening on {port}:\n{err}");
                }
                assert!(Instant::now() < deadline, "nothing listens on port {port}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// The contents of a file in the server's directory ("" if absent).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path.join(name)).unwrap_or_default()
    }

    /// Waits until `name` holds at least `lines` lines, then returns them.
    /// (The access log is written by a background thread.)
    pub fn wait_lines(&self, name: &str, lines: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.read(name);
            let got: Vec<String> = text.lines().map(str::to_owned).collect();
            if got.len() >= lines {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{name} has {} lines, expected {lines}:\n{text}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The error log's `error` and `crit` lines once it has at least
    /// `lines` lines, as `[LEVEL] MESSAGE`: without their time, pid and
    /// connection number (which differ between nginx and waypost).
    pub fn error_lines(&self, lines: usize) -> Vec<String> {
        self.wait_lines("logs/error.log", lines)
            .iter()
            .filter_map(|l| {
                let (_, rest) = l.split_once(" [")?;
                let (level, rest) = rest.split_once("] ")?;
                let rest = rest.split_once(": ").map_or(rest, |(_, r)| r);
                let rest = rest.split_once(' ').map_or(rest, |(_, r)| r);
                matches!(level, "error" | "crit").then(|| format!("[{level}] {rest}"))
            })
            .collect()
    }

    /// The messages of the error log's lines that contain `needle`,
    /// without their time, level, pid and connection number (which
    /// differ between nginx and waypost).
    pub fn log_messages(&self, needle: &str) -> Vec<String> {
        self.read("logs/error.log")
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                l.split_once(" *")
                    .and_then(|(_, rest)| rest.split_once(' '))
            })
            .map(|(_, message)| message.to_owned())
            .collect()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx's binary, for comparisons. CI installs it; a machine without it
/// fails the comparison tests rather than skipping them.
pub fn nginx_bin() -> PathBuf {
    for p in [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nginx is not installed: apt-get install -y nginx (the .ci/run script does)");
}

/// `127.0.0.1:PORT`, as `$upstream_addr` shows a peer.
pub fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The `$upstream_addr` value for attempts on `ports`, in order.
pub fn tries(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|&p| addr(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines an nginx test config needs in `http` so that nginx, run as root
/// by the tests, keeps its temporary files in the test directory.
pub const NGINX_TEMP_PATHS: &str = "    client_body_temp_path logs/body;\n    proxy_temp_path logs/proxy;\n    fastcgi_temp_path logs/fastcgi;\n    uwsgi_temp_path logs/uwsgi;\n    scgi_temp_path logs/scgi;\n";

/// A config both waypost and nginx run: upstream `u` with `upstream` (the
/// block's lines), a proxy on `proxy` logging `$upstream_addr` to
/// `logs/up.log` (format `up`), and, when `nginx`, the directives nginx
/// needs to run unprivileged in the test directory.
pub fn upstream_proxy_conf(proxy: u16, upstream: &str, nginx: bool) -> String {
    wrap_http(
        &format!(
            "\x20   log_format up '$upstream_addr';\n\
             \x20   upstream u {{\n{upstream}    }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{proxy};\n\
             \x20       location / {{ proxy_pass http://u; access_log logs/up.log up; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// A whole config around the `http` block's lines `http`, as each program
/// needs it to run in the test directory: one worker, `logs/error.log`,
/// `access_log off` first (only the tested logs are written) and, for
/// nginx, no master process, its pid file and temporary paths, placed
/// after the lines both share so that line numbers in errors agree.
pub fn wrap_http(http: &str, nginx: bool) -> String {
    let (main, extra) = if nginx {
        (
            "master_process off;\npid logs/nginx.pid;\n",
            NGINX_TEMP_PATHS,
        )
    } else {
        ("", "")
    };
    format!(
        "worker_processes 1;\nerror_log logs/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{http}{extra}}}\n{main}"
    )
}

/// `conf` (from [`wrap_http`]) with its error log at `info`, for tests
/// that compare nginx's `info` lines.
pub fn info_log(conf: &str) -> String {
    conf.replace(
        "error_log logs/error.log;",
        "error_log logs/error.log info;",
    )
}

/// An answer read to the connection's close: its status line, the header
/// lines `keep` takes (sorted: nginx and waypost order some differently,
/// README: differences), and its body, unchunked.
pub fn answer_parts(raw: &[u8], keep: impl Fn(&str) -> bool) -> (String, Vec<String>, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_owned();
    let mut kept: Vec<String> = lines.filter(|l| keep(l)).map(str::to_owned).collect();
    kept.sort_unstable();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        String::from_utf8_lossy(&unchunk(body.as_bytes())).into_owned()
    } else {
        body.to_owned()
    };
    (status, kept, body)
}

/// Decodes a chunked body (to compare content: waypost passes an
/// upstream's chunks on as they came, nginx joins what it has read).
pub fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 4 + size..];
    }
}

/// An answer read whole: its head, and its body (decoded when chunked).
pub struct Answer {
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The values of the head's `name` lines (lowercase), `,`-joined.
    pub fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_owned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Sends `request` (with `Connection: close`) to 127.0.0.1:`port` and
/// reads the answer until the server closes.
pub fn ask_whole(port: u16, request: &str) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let raw = answer.get(split + 4..).unwrap_or_default();
    let mut answer = Answer {
        head,
        body: Vec::new(),
    };
    answer.body = if answer.header("transfer-encoding") == "chunked" {
        unchunk(raw)
    } else {
        raw.to_vec()
    };
    answer
}

/// Sends `request` (a whole request, usually with `Connection: close`) to
/// 127.0.0.1:`port` and returns all that comes back until the server
/// closes.
pub fn exchange(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Asserts that each of `wants` is one of the lines `seen` (what nginx
/// answered or logged, so that a change in either program shows), listing
/// those that are missing.
pub fn assert_among(seen: &[String], wants: &[&str]) {
    let missing: Vec<&&str> = wants
        .iter()
        .filter(|w| !seen.iter().any(|s| s == *w))
        .collect();
    assert!(missing.is_empty(), "missing {missing:#?}\namong {seen:#?}");
}

/// Asserts that waypost's answers (`ours`) are nginx's (`theirs`), one by
/// one, listing every pair that differs.
pub fn assert_same_answers(ours: &[String], theirs: &[String]) {
    assert_eq!(ours.len(), theirs.len(), "as many answers");
    let diffs: Vec<String> = ours
        .iter()
        .zip(theirs)
        .filter(|(o, t)| o != t)
        .map(|(o, t)| format!("\n  waypost: {o}\n  nginx:   {t}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} answers differ:{}",
        diffs.len(),
        diffs.concat()
    );
}

/// The answer on `stream`, read until the server closes: its status line
/// and body, the server's name in nginx's pages made neutral (`SERVER`).
pub fn status_and_page(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    format!("{status} | {}", neutral_server(body))
}

/// `text` with nginx's and waypost's names (in pages) as `SERVER`.
pub fn neutral_server(text: &str) -> String {
    text.replace("nginx/1.22.1", "SERVER")
        .replace("waypost", "SERVER")
}

/// What a side-by-side run saw: the answers, the access log's lines and
/// the error log's lines of interest.
pub type Run = (Vec<String>, Vec<String>, Vec<String>);

/// Asserts that waypost's run is nginx's, and that each of `needles`
/// occurs among its answers (the comparison means something only if
/// each outcome happened).
pub fn assert_same_runs(ours: &Run, theirs: &Run, needles: &[&str]) {
    assert_same_answers(&ours.0, &theirs.0);
    assert_eq!(ours.1, theirs.1, "access log (left: waypost)");
    assert_eq!(ours.2, theirs.2, "error log (left: waypost)");
    for needle in needles {
        assert!(
            ours.0.iter().any(|a| a.contains(needle)),
            "{needle}: {:#?}",
            ours.0
        );
    }
}

/// Asserts that nginx's run gives each of `needles` among its answers and
/// exactly `log` as its error log lines (so that the comparison means
/// something), then that waypost's run is nginx's.
pub fn assert_runs_as_nginx(ours: &Run, theirs: &Run, needles: &[&str], log: &[String]) {
    for needle in needles {
        assert!(
            theirs.0.iter().any(|a| a.contains(needle)),
            "nginx gives no {needle:?}: {:#?}",
            theirs.0
        );
    }
    assert_eq!(theirs.2, log, "nginx's error log");
    assert_same_runs(ours, theirs, needles);
}

/// A TCP connection to 127.0.0.1:`port` from `src`, any address of
/// 127.0.0.0/8, for tests that need many client addresses (ip_hash,
/// realip).
pub fn connect_from(src: [u8; 4], port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = (src, 0).into();
    socket
        .bind(&local.into())
        .unwrap_or_else(|e| panic!("bind {src:?}: {e}"));
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    socket
        .connect(&remote.into())
        .unwrap_or_else(|e| panic!("connect :{port}: {e}"));
    socket.into()
}

/// A response as the tests need it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_idle_connections(0)
        .build()
}

fn into_resp(result: Result<ureq::Response, ureq::Error>) -> Resp {
    let r = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = r.header(&n).unwrap_or("").to_owned();
            (n, v)
        })
        .collect();
    let body = r.into_string().expect("body");
    Resp {
        status,
        body,
        headers,
    }
}

/// `GET http://127.0.0.1:PORT PATH` on a new connection.
pub fn get(port: u16, path: &str) -> Resp {
    into_resp(
        agent()
            .get(&format!("http://127.0.0.1:{port}{path}"))
            .call(),
    )
}

/// `GET` with extra headers.
pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent().get(&format!("http://127.0.0.1:{port}{path}"));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    into_resp(req.call())
}

/// `POST` with a body.
pub fn post(port: u16, path: &str, body: &[u8]) -> Resp {
    into_resp(
        agent()
            .post(&format!("http://127.0.0.1:{port}{path}"))
            .send_bytes(body),
    )
}

/// A backend that accepts connections, reads what arrives, and closes
/// without answering; it counts the connections it saw. For failures that
/// happen after a request was sent.
pub struct Blackhole {
    pub port: u16,
    pub accepted: std::sync::Arc<AtomicU32>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = unclaimed_listener();
        let port = listener.local_addr().expect("addr").port();
        let accepted = std::sync::Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"");
            }
        });
        Blackhole { port, accepted }
    }
}

/// Builds a crate that lives outside the workspace, as a module author
/// would (`cargo build --offline`), into `target` — a directory kept
/// between runs, so only the first run compiles the dependencies.
pub fn cargo_build(manifest: &Path, target: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a request head (up to the blank line) for a test backend; `None`
/// when the client goes away first.
pub fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

/// A backend that reads each request head and never answers: `heads`
/// gets each head as it arrives, `closed` a message when the proxy closes
/// a connection (a try ended, or given up).
pub struct Stalled {
    pub port: u16,
    pub heads: std::sync::mpsc::Receiver<String>,
    pub closed: std::sync::mpsc::Receiver<()>,
}

/// Starts a [`Stalled`] backend.
pub fn stalled() -> Stalled {
    let listener = unclaimed_listener();
    let port = listener.local_addr().expect("addr").port();
    let (head_tx, heads) = std::sync::mpsc::channel();
    let (closed_tx, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (head_tx, closed_tx) = (head_tx.clone(), closed_tx.clone());
            std::thread::spawn(move || {
                let Some(head) = read_head(&mut stream) else {
                    return;
                };
                let _ = head_tx.send(String::from_utf8_lossy(&head).into_owned());
                // Whatever else comes, until the proxy closes.
                let _ = stream.set_read_timeout(None);
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            });
        }
    });
    Stalled {
        port,
        heads,
        closed,
    }
}

/// Reads one request head from `stream` into `buf`, for a test backend
/// that keeps its connection: the head with its last line's CRLF, what
/// was read past the blank line left in `buf`. `None` when the peer
/// closed (or the read failed) first.
pub fn next_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 2]).into_owned();
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

/// Reads from `stream` onto `got` until `done(got)`; the stream's end
/// before then fails the test, `what` and what came in the message.
pub fn read_until(
    stream: &mut impl Read,
    got: &mut Vec<u8>,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) {
    let mut chunk = [0u8; 4096];
    while !done(got) {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "{what}: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// A test backend's side of an `Upgrade: raw-echo` tunnel: `reply` (its
/// 101), then the bytes that came behind the request head (`early`), then
/// every byte read echoed back until the peer closes or a write fails.
pub fn raw_echo(stream: &mut (impl Read + Write), reply: &[u8], early: &[u8]) {
    if stream.write_all(reply).is_err() || stream.write_all(early).is_err() {
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

/// Serves a test backend's `listener` from a thread of its own: each
/// connection goes to `handle` in a thread of its own, with its number
/// (from 1, in the order accepted).
pub fn serve_numbered<F>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream, u32) + Send + Sync + 'static,
{
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        let conns = AtomicU32::new(0);
        for stream in listener.incoming().flatten() {
            let id = conns.fetch_add(1, Ordering::SeqCst) + 1;
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream, id));
        }
    });
}

/// Tests of one binary whose outcome depends on timing, or that load the
/// CPU, take this lock to run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One response read by [`KeepAlive`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client on a raw socket: requests may be
/// pipelined (`send` several, then `recv` as many), and a failed connection
/// is an answer of its own (`try_get`), for load tests that count them.
pub struct KeepAlive {
    stream: TcpStream,
    port: u16,
    buf: Vec<u8>,
}

impl KeepAlive {
    pub fn connect(port: u16) -> KeepAlive {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        KeepAlive {
            stream,
            port,
            buf: Vec::with_capacity(4096),
        }
    }

    fn request(&self, path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )
    }

    pub fn send(&mut self, path: &str) {
        let req = self.request(path);
        self.stream.write_all(req.as_bytes()).expect("write");
    }

    /// Writes a request as given (headers of its own).
    pub fn send_raw(&mut self, request: &[u8]) {
        self.stream.write_all(request).expect("write");
    }

    /// Writes all of `paths` at once.
    pub fn send_all<'a>(&mut self, paths: impl Iterator<Item = &'a str>) {
        let mut out = String::new();
        for p in paths {
            out.push_str(&self.request(p));
        }
        self.stream.write_all(out.as_bytes()).expect("write");
    }

    /// More bytes; `None` when the connection failed or closed.
    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).ok()?;
        (n > 0).then(|| self.buf.extend_from_slice(&chunk[..n]))
    }

    /// The next response: Content-Length, chunked or empty body.
    pub fn recv(&mut self) -> Reply {
        self.try_recv()
            .expect("a response (the server closed the connection, or sent no valid one)")
    }

    /// The next response, or `None` when the connection failed or the
    /// response was not valid.
    pub fn try_recv(&mut self) -> Option<Reply> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        self.buf.drain(..head_end + 4);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(len) = find("content-length") {
            let len: usize = len.parse().ok()?;
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect::<Vec<u8>>()
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            Vec::new()
        };
        Some(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.send(path);
        self.recv()
    }

    /// `get`, with `None` for a connection that failed.
    pub fn try_get(&mut self, path: &str) -> Option<Reply> {
        let req = self.request(path);
        self.stream.write_all(req.as_bytes()).ok()?;
        self.try_recv()
    }
}

/// A configuration's `http` lines made for a free port (`http(port)`),
/// run by nginx or waypost listening there: the server and the port.
pub fn either_on_a_port(nginx: bool, http: impl Fn(u16) -> String) -> (Server, u16) {
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let server = Server::either(nginx, &wrap_http(&http(port), nginx), &[port]);
    (server, port)
}

/// A PEM revocation list by `issuer` (and its key), revoking `serial`,
/// issued in 2020 and next updated in `next_year`.
pub fn revocation_list(
    issuer: &rcgen::Certificate,
    key: &rcgen::KeyPair,
    serial: u64,
    next_year: i32,
) -> String {
    use rcgen::{
        CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
        SerialNumber,
    };
    CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(next_year, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(serial),
            revocation_time: rcgen::date_time_ymd(2020, 1, 1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer, key)
    .expect("CRL")
    .pem()
    .expect("CRL PEM")
}

/// Asks `paths` over one HTTP/2 connection by prior knowledge (h2c) to
/// `port`, after `prelude` (a PROXY protocol header, or nothing): each
/// answer's status and body, or `error ...` where the request failed and
/// `body error ...` where its body did.
pub fn h2c_answers(
    port: u16,
    prelude: &[u8],
    paths: &[&str],
) -> Vec<Result<(u16, Vec<u8>), String>> {
    use http_body_util::{BodyExt, Empty};
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.write_all(prelude).await.expect("send");
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let mut seen = Vec::new();
        for path in paths {
            let req = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"))
                .body(Empty::<hyper::body::Bytes>::new())
                .expect("request");
            seen.push(match send.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.into_body().collect().await {
                        Ok(body) => Ok((status, body.to_bytes().to_vec())),
                        Err(e) => Err(format!("body error {e}")),
                    }
                }
                Err(e) => Err(format!("error {e}")),
            });
        }
        seen
    })
}
