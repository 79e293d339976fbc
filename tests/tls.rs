//! TLS and HTTP/2 to clients, through the real binary: curl (built with
//! nghttp2) over HTTP/2 and HTTP/1.1 on TLS and over cleartext h2c, SNI
//! choosing the server and its certificate, certificates re-read on
//! reload (and a bad one refused, the old one kept), and the errors of
//! certificate files next to nginx's.
//!
//! Certificates come from test authorities made here with rcgen. Which
//! certificate a server presented is told by curl's verification: each
//! test certificate covers names (or an authority) the others do not.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use waypost_tests::{
    free_port, info_log, nginx_bin, run_nginx, run_waypost, wrap_http, Server, TempDir,
    NGINX_TEMP_PATHS,
};

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// Writes the authority's certificate to `dir/NAME`, for `--cacert`.
    fn write(&self, dir: &TempDir, name: &str) -> String {
        dir.write(name, &self.cert.pem()).display().to_string()
    }

    /// A certificate for `names` (and 127.0.0.1 if `ip`), as PEM
    /// (certificate, key).
    fn issue(&self, names: &[&str], ip: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTP/1.1 backend that answers every request with `backend\n` and
/// the request it got (head and body), or 2 MB of `x` for `/big`.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_len + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let path = head.split(' ').nth(1).unwrap_or("");
    let body = if path.starts_with("/big") {
        vec![b'x'; 2_000_000]
    } else {
        let mut body = b"backend\n".to_vec();
        body.extend_from_slice(&buf[..head_len + length]);
        body
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}

/// A config with `servers` in `http`, every request's `$scheme`, `$https`
/// and `$server_protocol` passed to the backend as headers.
fn conf(servers: &str) -> String {
    format!(
        "worker_processes 1;\n\
         error_log logs/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   log_format t '$scheme|$https|$server_protocol|$request|$status';\n\
         \x20   proxy_set_header X-Scheme $scheme;\n\
         \x20   proxy_set_header X-Https $https;\n\
         \x20   proxy_set_header X-Protocol $server_protocol;\n\
         {servers}\
         }}\n"
    )
}

/// curl's output and whether it succeeded.
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl (apt-get install curl)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `https://NAME:PORT/PATH` with `name` resolved to 127.0.0.1, checked
/// against `ca`; the body and, last line, `%{http_version}`.
fn https(name: &str, port: u16, path: &str, ca: &str, extra: &[&str]) -> (bool, String) {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}{path}");
    let mut args = vec![
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// The servers' files: certificates and keys written into the test
/// directory, which is where relative paths in the config start.
fn write_pair(dir: &Path, name: &str, pair: &(String, String)) {
    std::fs::write(dir.join(format!("{name}.pem")), &pair.0).expect("write cert");
    std::fs::write(dir.join(format!("{name}.key")), &pair.1).expect("write key");
}

/// The files of most tests: in a test directory, a test authority's
/// certificate (`ca.pem`) and a certificate it issued for `a.test`
/// (`a.pem`, `a.key`).
struct ATest {
    /// The port of the test's server.
    port: u16,
    files: TempDir,
    ca_file: String,
    /// `a.pem` and `a.key`'s text.
    pair: (String, String),
}

impl ATest {
    fn new() -> ATest {
        let files = TempDir::new("tls-files");
        let ca = Ca::new("waypost test CA");
        let ca_file = ca.write(&files, "ca.pem");
        let pair = ca.issue(&["a.test"], false);
        write_pair(&files.path, "a", &pair);
        ATest {
            port: free_port(),
            files,
            ca_file,
            pair,
        }
    }

    /// The config of one server on the test's port, `listen ...
    /// {listen}`, with the `a.test` certificate and `directives` (whole
    /// lines).
    fn conf(&self, listen: &str, directives: &str) -> String {
        let (port, d) = (self.port, self.files.path.display());
        conf(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port} {listen};\n\
             \x20       ssl_certificate {d}/a.pem;\n\
             \x20       ssl_certificate_key {d}/a.key;\n\
             {directives}\
             \x20   }}\n"
        ))
    }

    /// waypost running [`ATest::conf`].
    fn waypost(&self, listen: &str, directives: &str) -> Server {
        Server::waypost(&self.conf(listen, directives), &[self.port])
    }

    /// nginx (one process, its temporary files in its directory) or
    /// waypost running [`ATest::conf`].
    fn either(&self, nginx: bool, listen: &str, directives: &str) -> Server {
        let conf = for_either(nginx, self.conf(listen, directives), "");
        Server::either(nginx, &conf, &[self.port])
    }

    /// [`https`] to `a.test` on the test's server.
    fn https(&self, path: &str, extra: &[&str]) -> (bool, String) {
        https("a.test", self.port, path, &self.ca_file, extra)
    }

    /// One curl run fetching `paths` from `a.test` on the test's server
    /// (on one connection where it can), with `extra`, each answer
    /// followed by `[%{num_connects}]`.
    fn https_each(&self, paths: &[&str], extra: &[&str]) -> (bool, String) {
        let port = self.port;
        let resolve = format!("a.test:{port}:127.0.0.1");
        let urls: Vec<String> = paths
            .iter()
            .map(|path| format!("https://a.test:{port}{path}"))
            .collect();
        let mut args = vec!["--cacert", &self.ca_file, "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.extend(["-w", "[%{num_connects}]"]);
        args.extend(urls.iter().map(String::as_str));
        curl(&args)
    }
}

/// `conf` as nginx runs it in a test (one process, `main` lines first,
/// its temporary files in its directory), or as it is for waypost.
fn for_either(nginx: bool, conf: String, main: &str) -> String {
    if !nginx {
        return conf;
    }
    let http = format!("http {{\n{NGINX_TEMP_PATHS}");
    format!(
        "master_process off;\n{main}{}",
        conf.replacen("http {\n", &http, 1)
    )
}

/// Writes a whole file at once (a reload never reads half of it).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn http2_and_http11_over_tls_reach_the_backend() {
    let t = ATest::new();
    let up = backend();
    let wp = t.waypost(
        "ssl",
        &format!(
            "        http2 on;\n\
             \x20       server_name a.test;\n\
             \x20       access_log logs/t.log t;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{up}; }}\n"
        ),
    );

    let (ok, out) = t.https("/h2?x=1", &["--http2"]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with("backend\nGET /h2?x=1 HTTP/1.0\r\n"),
        "{out}"
    );
    assert!(out.contains("X-Scheme: https\r\n"), "{out}");
    assert!(out.contains("X-Https: on\r\n"), "{out}");
    assert!(out.contains("X-Protocol: HTTP/2.0\r\n"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("host: 127.0.0.1:"),
        "{out}"
    );
    assert!(out.ends_with("\n2"), "HTTP/2 expected: {out}");

    let (ok, out) = t.https("/h1", &["--http1.1"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("backend\nGET /h1 HTTP/1.0\r\n"), "{out}");
    assert!(out.contains("X-Protocol: HTTP/1.1\r\n"), "{out}");
    assert!(out.contains("X-Scheme: https\r\n"), "{out}");
    assert!(out.ends_with("\n1.1"), "HTTP/1.1 expected: {out}");

    // Request bodies, and a response far larger than TLS records and
    // socket buffers, both ways.
    for version in ["--http2", "--http1.1"] {
        let (ok, out) = t.https("/post", &[version, "--data-binary", "hello body"]);
        assert!(ok, "{out}");
        assert!(out.starts_with("backend\nPOST /post HTTP/1.0\r\n"), "{out}");
        assert!(out.contains("\r\n\r\nhello body\n"), "{out}");
        let (ok, out) = t.https(
            "/big",
            &[version, "-o", "/dev/null", "-w", "%{size_download}"],
        );
        assert!(ok, "{out}");
        assert!(out.ends_with("2000000"), "{version}: {out}");
    }

    let lines = wp.wait_lines("logs/t.log", 6);
    assert_eq!(lines[0], "https|on|HTTP/2.0|GET /h2?x=1 HTTP/2.0|200");
    assert_eq!(lines[1], "https|on|HTTP/1.1|GET /h1 HTTP/1.1|200");
    assert_eq!(lines[2], "https|on|HTTP/2.0|POST /post HTTP/2.0|200");
}

#[test]
fn keep_alive_requests_over_tls_share_a_connection() {
    let t = ATest::new();
    let up = backend();
    let _wp = t.waypost(
        "ssl http2",
        &format!(
            "        server_name a.test;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{up}; }}\n"
        ),
    );
    // Three URLs in one curl: one connection, three requests (and
    // `%{num_connects}` says how many connections each one opened).
    for version in ["--http2", "--http1.1"] {
        let (ok, out) = t.https_each(&["/k1", "/k2", "/k3"], &[version]);
        assert!(ok, "{out}");
        for i in 1..=3 {
            assert!(out.contains(&format!("GET /k{i} HTTP/1.0")), "{out}");
        }
        assert_eq!(out.matches("[1]").count(), 1, "{version}: {out}");
        assert_eq!(out.matches("[0]").count(), 2, "{version}: {out}");
    }
}

#[test]
fn h2c_by_prior_knowledge_beside_http11_on_one_port() {
    let (port, up) = (free_port(), backend());
    let wp = Server::waypost(
        &conf(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       http2 on;\n\
             \x20       access_log logs/t.log t;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{up}; }}\n\
             \x20   }}\n"
        )),
        &[port],
    );
    let url = format!("http://127.0.0.1:{port}/c");
    let (ok, out) = curl(&["--http2-prior-knowledge", "-w", "\n%{http_version}", &url]);
    assert!(ok, "{out}");
    assert!(out.starts_with("backend\nGET /c HTTP/1.0\r\n"), "{out}");
    assert!(out.contains("X-Scheme: http\r\n"), "{out}");
    // An empty value: no header, as nginx sends none.
    assert!(!out.contains("x-https"), "{out}");
    assert!(out.contains("X-Protocol: HTTP/2.0\r\n"), "{out}");
    assert!(out.ends_with("\n2"), "{out}");
    let (ok, out) = curl(&["--http1.1", "-w", "\n%{http_version}", &url]);
    assert!(ok, "{out}");
    assert!(out.contains("X-Protocol: HTTP/1.1\r\n"), "{out}");
    assert!(out.ends_with("\n1.1"), "{out}");
    let lines = wp.wait_lines("logs/t.log", 2);
    assert_eq!(lines[0], "http||HTTP/2.0|GET /c HTTP/2.0|200");
    assert_eq!(lines[1], "http||HTTP/1.1|GET /c HTTP/1.1|200");
}

/// Header names over HTTP/2 as nginx takes them, side by side (h2c by
/// prior knowledge): `_` and `.` in a name drop the header, logged at
/// `info` with nginx's words.
#[test]
fn h2_header_names_nginx_does_not_take_are_dropped_as_nginx_drops_them() {
    let run = |nginx: bool| {
        let (port, up) = (free_port(), backend());
        let conf = info_log(&wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port} http2;\n\
                 \x20       location / {{ proxy_pass http://127.0.0.1:{up}; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        ));
        let server = Server::either(nginx, &conf, &[port]);
        let url = format!("http://127.0.0.1:{port}/n");
        let (ok, out) = curl(&[
            "--http2-prior-knowledge",
            "-H",
            "X_Under: 1",
            "-H",
            "X.Dot: 2",
            "-H",
            "X-Ok: 3",
            &url,
        ]);
        assert!(ok, "{out}");
        assert!(out.contains("\r\nx-ok: 3\r\n"), "nginx {nginx}: {out}");
        assert!(!out.contains("x_under") && !out.contains("x.dot"), "{out}");
        // Logged before the request goes upstream.
        server
            .log_messages("client sent")
            .iter()
            .map(|message| message.replace(&port.to_string(), "PORT"))
            .collect::<Vec<_>>()
    };
    let theirs = run(true);
    assert_eq!(
        theirs,
        [
            "client sent invalid header: \"x_under\" while reading client request headers, client: 127.0.0.1, server: , host: \"127.0.0.1:PORT\"",
            "client sent invalid header: \"x.dot\" while reading client request headers, client: 127.0.0.1, server: , host: \"127.0.0.1:PORT\"",
        ],
        "nginx's, the reference"
    );
    assert_eq!(run(false), theirs);
}

#[test]
fn without_http2_alpn_falls_back_to_http11() {
    let t = ATest::new();
    let _wp = t.waypost(
        "ssl",
        "        location / { return 200 \"$scheme $server_protocol\\n\"; }\n",
    );
    let (ok, out) = t.https("/", &["--http2"]);
    assert!(ok, "{out}");
    assert_eq!(out, "https HTTP/1.1\n\n1.1");
}

#[test]
fn ssl_protocols_limit_the_versions() {
    let t = ATest::new();
    let _wp = t.waypost(
        "ssl",
        "        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n\
         \x20       location / { return 200 \"ok\\n\"; }\n",
    );
    let (ok, out) = t.https("/", &["--tls-max", "1.2"]);
    assert!(ok, "{out}");
    let (ok, out) = t.https("/", &["--tlsv1.3"]);
    assert!(!ok, "TLS 1.3 is off: {out}");
}

/// A redirect to a path is made absolute with the connection's scheme,
/// as nginx's header filter makes it: `https://` over TLS (and no port
/// for 443).
#[test]
fn a_relative_redirect_over_tls_is_https() {
    let t = ATest::new();
    let _wp = t.waypost("ssl", "        location / { return 301 /x; }\n");
    let (ok, out) = t.https("/", &["-o", "/dev/null", "-w", "%{redirect_url}"]);
    assert!(ok, "{out}");
    // The request's host, and the listening port (not 443).
    assert!(out.starts_with("https://a.test:"), "{out}");
    assert!(out.ends_with("/x"), "{out}");
}

/// `ssl_prefer_server_ciphers`: off (nginx's default), the client's first
/// cipher suite it shares with the server is used; on, the server's.
#[test]
fn ssl_prefer_server_ciphers_picks_whose_order_counts() {
    let t = ATest::new();
    // The client lists ChaCha20 first; rustls (the server) AES first.
    let suites = [
        "--tls13-ciphers",
        "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
        "-v",
    ];
    for (prefer, used) in [
        ("off", "TLS_CHACHA20_POLY1305_SHA256"),
        ("on", "TLS_AES_256_GCM_SHA384"),
    ] {
        let _wp = t.waypost(
            "ssl",
            &format!(
                "        ssl_prefer_server_ciphers {prefer};\n\
                 \x20       location / {{ return 200 \"ok\\n\"; }}\n"
            ),
        );
        let (ok, out) = t.https("/", &suites);
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("SSL connection using TLSv1.3 / {used}")),
            "prefer {prefer}: {out}"
        );
    }
}

#[test]
fn sni_picks_the_server_and_its_certificate() {
    let files = TempDir::new("tls-files");
    let ca = Ca::new("waypost test CA");
    let ca_file = ca.write(&files, "ca.pem");
    // Only the default server's certificate covers 127.0.0.1.
    write_pair(&files.path, "a", &ca.issue(&["a.test"], true));
    write_pair(&files.path, "b", &ca.issue(&["b.test", "*.b.test"], false));
    let port = free_port();
    let d = files.path.display();
    let _wp = Server::waypost(
        &conf(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port} ssl;\n\
             \x20       http2 on;\n\
             \x20       server_name a.test;\n\
             \x20       ssl_certificate {d}/a.pem;\n\
             \x20       ssl_certificate_key {d}/a.key;\n\
             \x20       location / {{ return 200 \"A $host\\n\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port} ssl;\n\
             \x20       server_name b.test *.b.test;\n\
             \x20       ssl_certificate {d}/b.pem;\n\
             \x20       ssl_certificate_key {d}/b.key;\n\
             \x20       location / {{ return 200 \"B $host\\n\"; }}\n\
             \x20   }}\n"
        )),
        &[port],
    );
    // Each name gets its server's certificate (curl checks the name)
    // and its server's answer; HTTP/2 is on for a.test only.
    let (ok, out) = https("a.test", port, "/", &ca_file, &["--http2"]);
    assert!(ok, "{out}");
    assert_eq!(out, "A a.test\n\n2");
    let (ok, out) = https("b.test", port, "/", &ca_file, &["--http2"]);
    assert!(ok, "{out}");
    assert_eq!(out, "B b.test\n\n1.1");
    let (ok, out) = https("x.b.test", port, "/", &ca_file, &[]);
    assert!(ok, "{out}");
    assert_eq!(out, "B x.b.test\n\n1.1");
    // A name no server has: the default server's certificate, which does
    // not cover it.
    let (ok, out) = https("c.test", port, "/", &ca_file, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("a.test") || out.contains("SSL"), "{out}");
    // No SNI at all (an address): the default server's certificate.
    let url = format!("https://127.0.0.1:{port}/");
    let (ok, out) = curl(&["--cacert", &ca_file, &url]);
    assert!(ok, "{out}");
    assert_eq!(out, "A 127.0.0.1\n");
    // SNI picks the certificate, Host the server, as in nginx.
    let (ok, out) = https(
        "b.test",
        port,
        "/",
        &ca_file,
        &["-H", "Host: a.test", "--http1.1"],
    );
    assert!(ok, "{out}");
    assert_eq!(out, "A a.test\n\n1.1");
}

/// Polls `check` until it holds or 10 s pass.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_reads_the_certificate_again() {
    let files = TempDir::new("tls-files");
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("second CA"));
    let ca1_file = ca1.write(&files, "ca1.pem");
    let ca2_file = ca2.write(&files, "ca2.pem");
    write_pair(&files.path, "a", &ca1.issue(&["a.test"], false));
    let port = free_port();
    let d = files.path.display();
    let wp = Server::waypost(
        &conf(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port} ssl;\n\
             \x20       ssl_certificate {d}/a.pem;\n\
             \x20       ssl_certificate_key {d}/a.key;\n\
             \x20       location / {{ return 200 \"ok\\n\"; }}\n\
             \x20   }}\n"
        )),
        &[port],
    );
    assert!(https("a.test", port, "/", &ca1_file, &[]).0);
    assert!(!https("a.test", port, "/", &ca2_file, &[]).0);

    // Certificate B, by the second authority, at the same paths.
    let b = ca2.issue(&["a.test"], false);
    replace(&files.path.join("a.key"), &b.1);
    replace(&files.path.join("a.pem"), &b.0);
    wp.signal(libc::SIGHUP);
    eventually("the new certificate is served", || {
        https("a.test", port, "/", &ca2_file, &[]).0
    });
    assert!(!https("a.test", port, "/", &ca1_file, &[]).0);
}

#[test]
fn a_bad_certificate_fails_the_reload_and_the_old_one_serves() {
    let t = ATest::new();
    let config = t.conf("ssl", "        location / { return 200 \"first\\n\"; }\n");
    let wp = Server::waypost(&config, &[t.port]);
    assert_eq!(t.https("/", &[]), (true, "first\n\n1.1".to_owned()));

    // A certificate file that is no certificate, with a config change
    // that must not take effect either.
    let cert = t.files.path.join("a.pem");
    replace(&cert, "not a certificate\n");
    wp.reload_with(&config.replace("first", "second"));
    let message = format!(
        "[emerg] {}#0: cannot load certificate \"{}\": no PEM certificate found in {}:",
        wp.pid(),
        cert.display(),
        wp.conf.display()
    );
    eventually("the error is logged", || {
        wp.read("logs/error.log").contains(&message)
    });
    // New connections still get the old certificate and configuration.
    assert_eq!(t.https("/", &[]), (true, "first\n\n1.1".to_owned()));

    // A missing key (beside a good certificate again), the same.
    replace(&cert, &t.pair.0);
    let key = t.files.path.join("a.key");
    std::fs::remove_file(&key).expect("remove key");
    wp.signal(libc::SIGHUP);
    let message = format!(
        "cannot load certificate key \"{}\": open() failed (2: No such file or directory) in {}:",
        key.display(),
        wp.conf.display()
    );
    eventually("the error is logged", || {
        wp.read("logs/error.log").contains(&message)
    });
    assert!(t.https("/", &[]).0);
}

/// `-t` on `conf` (with `{dir}` its directory) in both programs: each
/// one's `[emerg]` line and exit code.
fn both_t(conf: &str) -> [(String, Option<i32>); 2] {
    let dir = TempDir::new("tls-t");
    let conf_path = dir.write(
        "t.conf",
        &conf.replace("{dir}", &dir.path.display().to_string()),
    );
    let args = ["-t", "-c", conf_path.to_str().expect("utf-8 path")];
    let nginx = run_nginx(&dir, &args);
    let waypost = run_waypost(&dir, &args);
    let emerg = |out: &Output| {
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = text
            .lines()
            .find(|l| l.contains("[emerg]"))
            .unwrap_or("")
            .split_once(' ')
            .map_or("", |(_, rest)| rest)
            .replace(&dir.path.display().to_string(), "{dir}");
        (line, out.status.code())
    };
    [emerg(&nginx), emerg(&waypost)]
}

#[test]
fn certificate_file_errors_beside_nginx() {
    let head = "error_log logs/error.log;\npid logs/t.pid;\nevents {}\nhttp {\n    server {\n        listen 127.0.0.1:1 ssl;\n";
    // A missing certificate: nginx's message starts the same; its end is
    // OpenSSL's words, waypost's the system error and the directive.
    let [nginx, waypost] = both_t(&format!(
        "{head}        ssl_certificate {{dir}}/none.pem;\n        ssl_certificate_key {{dir}}/none.key;\n    }}\n}}\n"
    ));
    let start = "[emerg] cannot load certificate \"{dir}/none.pem\": ";
    assert!(nginx.0.starts_with(start), "{nginx:?}");
    assert_eq!(
        waypost.0,
        format!("{start}open() failed (2: No such file or directory) in {{dir}}/t.conf:7")
    );
    assert_eq!((nginx.1, waypost.1), (Some(1), Some(1)));

    // A key that is no key.
    let ca = Ca::new("waypost test CA");
    let (cert, _) = ca.issue(&["a.test"], false);
    let dir = TempDir::new("tls-t");
    let d = dir.path.display();
    dir.write("a.pem", &cert);
    dir.write("bad.key", "garbage\n");
    let [nginx, waypost] = both_t(&format!(
        "{head}        ssl_certificate {d}/a.pem;\n        ssl_certificate_key {d}/bad.key;\n    }}\n}}\n"
    ));
    let start = format!("[emerg] cannot load certificate key \"{d}/bad.key\": ");
    assert!(nginx.0.starts_with(&start), "{nginx:?}");
    assert_eq!(
        waypost.0,
        format!("{start}no PEM private key found in {{dir}}/t.conf:8")
    );

    // A key of another certificate.
    let (_, other_key) = ca.issue(&["b.test"], false);
    dir.write("other.key", &other_key);
    let [nginx, waypost] = both_t(&format!(
        "{head}        ssl_certificate {d}/a.pem;\n        ssl_certificate_key {d}/other.key;\n    }}\n}}\n"
    ));
    assert!(nginx.0.contains("key values mismatch"), "{nginx:?}");
    assert_eq!(
        waypost.0,
        format!("[emerg] cannot load certificate key \"{d}/other.key\": the key does not match the certificate \"{d}/a.pem\" in {{dir}}/t.conf:8")
    );
    assert_eq!((nginx.1, waypost.1), (Some(1), Some(1)));
}

#[test]
fn waypost_only_tls_config_errors() {
    let dir = TempDir::new("tls-t");
    let check = |http: &str, want: &str| {
        let conf = dir.write(
            "t.conf",
            &format!(
                "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n{http}}}\n"
            ),
        );
        let conf = conf.display().to_string();
        let out = run_waypost(&dir, &["-t", "-c", &conf]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let want = format!("waypost: [emerg] {}", want.replace("{conf}", &conf));
        assert!(text.lines().any(|l| l == want), "want {want:?} in:\n{text}");
    };
    // rustls has no TLS 1.0 or 1.1: a list of only those is refused.
    check(
        "    ssl_protocols TLSv1 TLSv1.1;\n",
        "\"ssl_protocols\" enables neither TLSv1.2 nor TLSv1.3, the only versions waypost supports in {conf}:5",
    );
    // nginx 1.25's `http2` directive.
    check(
        "    http2 yes;\n",
        "invalid value \"yes\" in \"http2\" directive, it must be \"on\" or \"off\" in {conf}:5",
    );
    check(
        "    server {\n        http2 on;\n        http2 off;\n    }\n",
        "\"http2\" directive is duplicate in {conf}:7",
    );
}

#[test]
fn http2_streams_keep_the_locations_limits_and_keepalive_requests() {
    let t = ATest::new();
    let _wp = t.waypost(
        "ssl http2",
        "        keepalive_requests 2;\n\
         \x20       client_max_body_size 10;\n\
         \x20       location / { return 200 \"ok\\n\"; }\n",
    );
    let (ok, out) = t.https(
        "/",
        &[
            "--http2",
            "--data-binary",
            "more than ten bytes",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out, "413 2");
    // After `keepalive_requests` streams the connection ends (GOAWAY): a
    // later request needs a connection of its own. Usually the third; a
    // stream curl opens before the final GOAWAY reaches it is still
    // served (hyper's graceful GOAWAY, README: differences), so the
    // fourth then. (Over TLS: curl 7.88 does not reuse an h2c connection
    // made by prior knowledge.)
    let (ok, out) = t.https_each(&["/", "/", "/", "/"], &["--http2"]);
    assert!(ok, "{out}");
    assert!(
        out == "ok\n[1]ok\n[0]ok\n[1]ok\n[0]" || out == "ok\n[1]ok\n[0]ok\n[0]ok\n[1]",
        "{out}"
    );
}

/// The frame types of what `stream` receives until it closes.
fn h2_frame_types(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

#[test]
fn a_graceful_stop_ends_idle_http2_connections() {
    let port = free_port();
    let mut wp = Server::waypost(
        &conf(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       http2 on;\n\
             \x20       location / {{ return 200 \"ok\\n\"; }}\n\
             \x20   }}\n"
        )),
        &[port],
    );
    // An HTTP/2 connection that says hello and then nothing.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface");
    let mut settings = [0u8; 9];
    stream
        .read_exact(&mut settings)
        .expect("the server's SETTINGS");
    assert_eq!(settings[3], 4, "{settings:?}");
    let len = (usize::from(settings[1]) << 8) | usize::from(settings[2]);
    stream
        .read_exact(&mut vec![0; len])
        .expect("the SETTINGS payload");

    wp.signal(libc::SIGQUIT);
    let types = h2_frame_types(&mut stream);
    assert!(types.contains(&7), "no GOAWAY before the close: {types:?}");
    eventually("waypost exits", || !wp.alive());
}

/// An HTTPS client that gives up while its request waits for the
/// upstream (curl's `--max-time`) is noticed through its TLS records at
/// once, as over plain HTTP/1 (tests/client_abort.rs): the upstream
/// connection is closed and the request logged 499, long before
/// `proxy_read_timeout`.
#[test]
fn an_https_client_that_leaves_is_logged_499() {
    let t = ATest::new();
    let backend = waypost_tests::stalled();
    let up = backend.port;
    let wp = t.waypost(
        "ssl",
        &format!(
            "        access_log logs/t.log t;\n\
             \x20       proxy_read_timeout 60s;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{up}; }}\n"
        ),
    );
    let (ok, out) = t.https("/gone", &["--http1.1", "--max-time", "1"]);
    assert!(!ok, "{out}");
    backend
        .closed
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream connection closed");
    assert_eq!(
        wp.wait_lines("logs/t.log", 1),
        ["https|on|HTTP/1.1|GET /gone HTTP/1.1|499"]
    );
}

/// `ssl_ciphers` beside nginx: which TLS 1.2 suites a client offering one
/// of them gets a handshake with (certbot's list, keywords, `+` joins and
/// `!` removals; the certificate is ECDSA).
#[test]
fn ssl_ciphers_choose_tls12_suites_as_nginx() {
    let t = ATest::new();
    let lists = [
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
        "HIGH:!aNULL:!MD5",
        "EECDH+AESGCM:EDH+AESGCM",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "HIGH:!CHACHA20:!SHA384",
    ];
    let offers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ];
    let seen = |nginx: bool| {
        let mut seen = Vec::new();
        for list in lists {
            let _server = t.either(
                nginx,
                "ssl",
                &format!(
                    "        ssl_ciphers \"{list}\";\n\
                     \x20       location / {{ return 200 \"ok\\n\"; }}\n"
                ),
            );
            for offer in offers {
                let (ok, _) = t.https("/", &["--tls-max", "1.2", "--ciphers", offer]);
                seen.push(format!("{list} / {offer}: {ok}"));
            }
        }
        seen
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(ours.iter().any(|l| l.ends_with("true")) && ours.iter().any(|l| l.ends_with("false")));
}

/// How many of `openssl s_client -reconnect`'s five reconnections resumed
/// the session (TLS 1.2; by session ID only with `no_ticket`).
fn resumed(port: u16, no_ticket: bool) -> usize {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "a.test",
        "-tls1_2",
        "-reconnect",
    ];
    if no_ticket {
        args.push("-no_ticket");
    }
    let out = Command::new("openssl")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl (apt-get install openssl)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Reused,"))
        .count()
}

/// `ssl_session_cache` and `ssl_session_tickets` beside nginx: whether a
/// client resumes by session ID or by ticket.
#[test]
fn session_resumption_as_nginx() {
    let t = ATest::new();
    let cases = [
        ("", true),
        ("", false),
        ("ssl_session_cache shared:SSL:1m;", true),
        ("ssl_session_cache builtin:1000 shared:SSL:1m;", true),
        (
            "ssl_session_cache shared:SSL:1m; ssl_session_timeout 0;",
            true,
        ),
        ("ssl_session_cache off;", true),
        ("ssl_session_cache none;", true),
        ("ssl_session_cache none shared:SSL:1m;", true),
        ("ssl_session_cache shared:SSL:1m off;", true),
        ("ssl_session_cache builtin:0;", true),
        ("ssl_session_cache builtin:10 shared:SSL:1m;", true),
        ("ssl_session_tickets off;", false),
        (
            "ssl_session_tickets off; ssl_session_cache shared:SSL:10m;",
            false,
        ),
    ];
    let seen = |nginx: bool| {
        cases
            .iter()
            .map(|(directives, no_ticket)| {
                let _server = t.either(
                    nginx,
                    "ssl",
                    &format!(
                        "        {directives}\n\
                         \x20       location / {{ return 200 \"ok\\n\"; }}\n"
                    ),
                );
                format!(
                    "{directives} no_ticket={no_ticket}: {}",
                    resumed(t.port, *no_ticket)
                )
            })
            .collect::<Vec<_>>()
    };
    let ours = seen(false);
    assert_eq!(ours, seen(true), "left: waypost, right: nginx");
    assert!(ours.iter().any(|l| l.ends_with(": 5")) && ours.iter().any(|l| l.ends_with(": 0")));
}

/// What waypost refuses where nginx's OpenSSL would take it: an
/// `ssl_ciphers` list with no TLS 1.2 suite rustls has (TLS 1.2 clients
/// could not connect); and, as nginx, an `ssl_dhparam` file that is not
/// there (rustls does not use it: no finite-field DH suites).
#[test]
fn ssl_ciphers_and_dhparam_refused_by_line() {
    let t = ATest::new();
    let check = |directives: &str, want: &str| {
        let conf = t.files.write(
            "t.conf",
            &t.conf("ssl", directives)
                .replace("error_log logs/error.log;", "error_log stderr;"),
        );
        let conf = conf.display().to_string();
        let out = run_waypost(&t.files, &["-t", "-c", &conf]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let want = format!("waypost: [emerg] {}", want.replace("{conf}", &conf));
        assert!(text.lines().any(|l| l == want), "want {want:?} in:\n{text}");
    };
    check(
        "        ssl_ciphers AES128-SHA:DHE-RSA-AES128-GCM-SHA256;\n",
        "\"ssl_ciphers\" \"AES128-SHA:DHE-RSA-AES128-GCM-SHA256\" names no TLS 1.2 cipher suite waypost has (ECDHE with AES-GCM or ChaCha20-Poly1305) in {conf}:14",
    );
    let missing = t.files.path.join("none.pem");
    check(
        &format!("        ssl_dhparam {};\n", missing.display()),
        &format!(
            "cannot load DH parameters \"{}\": open() failed (2: No such file or directory) in {{conf}}:14",
            missing.display()
        ),
    );
}

/// `ssl_stapling`, `ssl_stapling_verify`, `ssl_trusted_certificate`,
/// `resolver` and `resolver_timeout` (Mozilla's recommended TLS lines)
/// load as in nginx: both pass `-t`, the trusted file is read (a missing
/// one fails both), and where nginx warns that it cannot staple for a
/// certificate (this one has no OCSP responder), waypost warns that it
/// does not staple.
#[test]
fn stapling_and_resolver_lines_load() {
    let ca = Ca::new("waypost test CA");
    let (cert, key) = ca.issue(&["a.test"], false);
    let dir = TempDir::new("tls-staple");
    let d = dir.path.display().to_string();
    dir.write("a.pem", &format!("{cert}{}", ca.cert.pem()));
    dir.write("a.key", &key);
    ca.write(&dir, "ca.pem");
    let conf = |trusted: &str| {
        format!(
            "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n\
             \x20   resolver 127.0.0.1 [::1]:5353 valid=30s ipv6=off;\n\
             \x20   resolver_timeout 5s;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:1 ssl;\n\
             \x20       ssl_certificate {d}/a.pem;\n\
             \x20       ssl_certificate_key {d}/a.key;\n\
             \x20       ssl_stapling on;\n\
             \x20       ssl_stapling_verify on;\n\
             \x20       ssl_trusted_certificate {d}/{trusted};\n\
             \x20   }}\n}}\n"
        )
    };
    let run = |text: &str| test_both(&dir, text);
    let (nginx, waypost) = run(&conf("ca.pem"));
    assert_eq!(nginx.0, Some(0), "{nginx:?}");
    assert_eq!(waypost.0, Some(0), "{waypost:?}");
    assert_eq!(
        nginx.1,
        [format!(
            "\"ssl_stapling\" ignored, no OCSP responder URL in the certificate \"{d}/a.pem\""
        )]
    );
    assert_eq!(
        waypost.1,
        [format!("\"ssl_stapling\" ignored, OCSP stapling is not supported for certificate \"{d}/a.pem\"")]
    );
    let (nginx, waypost) = run(&conf("none.pem"));
    assert_eq!((nginx.0, waypost.0), (Some(1), Some(1)));
    let start = format!("SSL_CTX_load_verify_locations(\"{d}/none.pem\") failed (");
    assert!(nginx.2.iter().any(|l| l.starts_with(&start)), "{nginx:?}");
    assert!(
        waypost.2.iter().any(|l| l.starts_with(&start)),
        "{waypost:?}"
    );
}

/// What `-t` of `text` gives with nginx and with waypost: the exit code,
/// the `[warn]` and the `[emerg]` messages.
type TestRun = (Option<i32>, Vec<String>, Vec<String>);

fn test_both(dir: &TempDir, text: &str) -> (TestRun, TestRun) {
    let d = dir.path.display().to_string();
    let path = dir.write("t.conf", text);
    let args = ["-t", "-c", path.to_str().expect("utf-8 path")];
    let nginx = Command::new(nginx_bin())
        .args(["-p", &format!("{d}/"), "-e", "logs/early.log"])
        .args(args)
        .current_dir(&dir.path)
        .output()
        .expect("run nginx");
    let waypost = run_waypost(dir, &args);
    let lines = |out: &Output, level: &str| -> Vec<String> {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains(level))
            .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).to_owned())
            .collect()
    };
    (
        (
            nginx.status.code(),
            lines(&nginx, "[warn]"),
            lines(&nginx, "[emerg]"),
        ),
        (
            waypost.status.code(),
            lines(&waypost, "[warn]"),
            lines(&waypost, "[emerg]"),
        ),
    )
}

/// `ssl_stapling_file` is read as nginx reads it, for a server with
/// certificates and `ssl_stapling on`: a missing file, a directory and
/// files that are no DER OCSP response fail `-t` with nginx's lines; a
/// response (a bare `malformedRequest`, trailing bytes or not) passes.
#[test]
fn stapling_file_is_read_as_nginx_reads_it() {
    let ca = Ca::new("waypost test CA");
    let (cert, key) = ca.issue(&["a.test"], false);
    let dir = TempDir::new("tls-staple-file");
    let d = dir.path.display().to_string();
    dir.write("a.pem", &format!("{cert}{}", ca.cert.pem()));
    dir.write("a.key", &key);
    let files: &[(&str, &[u8])] = &[
        ("ok.der", b"\x30\x03\x0a\x01\x01"),
        ("extra.der", b"\x30\x03\x0a\x01\x01extra"),
        ("garbage.der", b"garbage"),
        ("empty.der", b""),
        ("wrongtag.der", b"\x02\x01\x01"),
        ("int.der", b"\x30\x03\x02\x01\x01"),
        ("short.der", b"\x30\x05\x0a\x01\x01"),
        ("long.der", b"\x30\x82\x01\x00\x0a\x01\x01"),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.path.join(name), bytes).expect("write");
    }
    std::fs::create_dir(dir.path.join("dir.der")).expect("mkdir");
    let mut failed = 0;
    for name in files.iter().map(|f| f.0).chain(["dir.der", "missing.der"]) {
        let conf = format!(
            "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:1 ssl;\n\
             \x20       ssl_certificate {d}/a.pem;\n\
             \x20       ssl_certificate_key {d}/a.key;\n\
             \x20       ssl_stapling on;\n\
             \x20       ssl_stapling_file {name};\n\
             \x20   }}\n}}\n"
        );
        let (nginx, waypost) = test_both(&dir, &conf);
        assert_eq!((&waypost.0, &waypost.2), (&nginx.0, &nginx.2), "{name}");
        failed += usize::from(nginx.0 == Some(1));
    }
    assert_eq!(failed, 8, "every file but the two responses fails");
}

/// `proxy_ssl_certificate` and `proxy_ssl_certificate_key` (mutual TLS to
/// an upstream), `proxy_ssl_protocols` and `proxy_ssl_session_reuse`,
/// side by side with nginx: behind both proxies the same nginx backend
/// asks for a client certificate of the test CA (`ssl_verify_client on`)
/// and answers with what it saw. With the certificate it is verified;
/// without, the backend's 400; `proxy_ssl_protocols` holds the
/// connection to TLS 1.2, or to 1.3. (With no `proxy_ssl_protocols`
/// nginx 1.22 offers TLS 1.2 at most, waypost 1.3 too: README.) A certificate without its key is nginx's error.
#[test]
fn client_certificate_to_an_upstream_as_nginx() {
    let ca = Ca::new("waypost test CA");
    let (server_cert, server_key) = ca.issue(&["backend.test"], true);
    let (client_cert, client_key) = ca.issue(&["proxy-client"], false);
    let dir = TempDir::new("tls-client-cert");
    let d = dir.path.display().to_string();
    ca.write(&dir, "ca.pem");
    dir.write("server.pem", &server_cert);
    dir.write("server.key", &server_key);
    dir.write("client.pem", &client_cert);
    dir.write("client.key", &client_key);
    // The same key encrypted, opened with `proxy_ssl_password_file`.
    let made = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.key"])
        .args(["-out", "client-enc.key", "-passout", "pass:proxy"])
        .current_dir(&dir.path)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{made:?}");
    dir.write("pw.txt", "proxy\n");
    let back = free_port();
    let _backend = Server::either(
        true,
        &wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{back} ssl;\n\
                 \x20       ssl_certificate {d}/server.pem;\n\
                 \x20       ssl_certificate_key {d}/server.key;\n\
                 \x20       ssl_client_certificate {d}/ca.pem;\n\
                 \x20       ssl_verify_client on;\n\
                 \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
                 \x20       return 200 \"verify=$ssl_client_verify dn=$ssl_client_s_dn proto=$ssl_protocol\\n\";\n\
                 \x20   }}\n"
            ),
            true,
        ),
        &[back],
    );
    let answers = |nginx: bool| {
        let port = free_port();
        let conf = wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       proxy_ssl_session_reuse off;\n\
                 \x20       location /without {{ proxy_pass https://127.0.0.1:{back}; }}\n\
                 \x20       location / {{\n\
                 \x20           proxy_ssl_certificate {d}/client.pem;\n\
                 \x20           proxy_ssl_certificate_key {d}/client.key;\n\
                 \x20           location /with {{\n\
                 \x20               proxy_pass https://127.0.0.1:{back};\n\
                 \x20               proxy_ssl_protocols TLSv1.2 TLSv1.3;\n\
                 \x20           }}\n\
                 \x20           location /tls12 {{\n\
                 \x20               proxy_pass https://127.0.0.1:{back};\n\
                 \x20               proxy_ssl_protocols TLSv1.2;\n\
                 \x20           }}\n\
                 \x20           location /tls13 {{\n\
                 \x20               proxy_pass https://127.0.0.1:{back};\n\
                 \x20               proxy_ssl_protocols TLSv1.3;\n\
                 \x20           }}\n\
                 \x20       }}\n\
                 \x20       location /encrypted {{\n\
                 \x20           proxy_pass https://127.0.0.1:{back};\n\
                 \x20           proxy_ssl_certificate {d}/client.pem;\n\
                 \x20           proxy_ssl_certificate_key {d}/client-enc.key;\n\
                 \x20           proxy_ssl_password_file {d}/pw.txt;\n\
                 \x20           proxy_ssl_protocols TLSv1.2 TLSv1.3;\n\
                 \x20       }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        // Sessions are not reused here: nginx keeps one TLS session per
        // upstream peer whatever the location, and resumes it with or
        // without a certificate; waypost keeps sessions per client
        // configuration (README).
        ["/without", "/with", "/tls12", "/tls13", "/encrypted"]
            .iter()
            .map(|path| {
                let got = waypost_tests::exchange(
                    port,
                    &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
                );
                let status = got.lines().next().unwrap_or("").to_owned();
                let body = got.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                // The backend's 400 page names the server: keep its title.
                let body = body
                    .lines()
                    .find(|l| l.starts_with("verify=") || l.contains("<title>"))
                    .unwrap_or("")
                    .to_owned();
                format!("{path} -> {status} | {body}")
            })
            .collect::<Vec<_>>()
    };
    let ours = answers(false);
    let theirs = answers(true);
    assert_eq!(ours, theirs);
    assert!(ours[0].contains("400"), "{ours:#?}");
    assert!(
        ours[1].contains("verify=SUCCESS dn=CN=proxy-client proto=TLSv1.3"),
        "{ours:#?}"
    );
    assert!(ours[2].ends_with("proto=TLSv1.2"), "{ours:#?}");
    assert!(ours[3].ends_with("proto=TLSv1.3"), "{ours:#?}");
    assert!(
        ours[4].contains("verify=SUCCESS dn=CN=proxy-client"),
        "{ours:#?}"
    );

    // A certificate without its key, where TLS is used: by the location's
    // `proxy_pass`, or only by an `if` block's (in a FastCGI location too),
    // whose TLS settings are set up as the location's.
    let want = format!(
        "waypost: [emerg] no \"proxy_ssl_certificate_key\" is defined for certificate \"{d}/client.pem\""
    );
    for location in [
        "proxy_pass https://127.0.0.1:1;",
        "if ($arg_x) { proxy_pass https://127.0.0.1:1; }",
        "fastcgi_pass 127.0.0.1:1; if ($arg_x) { proxy_pass https://127.0.0.1:1; }",
    ] {
        let conf = dir.write(
            "nokey.conf",
            &format!(
                "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1;\n        location / {{ {location} proxy_ssl_certificate {d}/client.pem; }}\n    }}\n}}\n"
            ),
        );
        let out = run_waypost(&dir, &["-t", "-c", conf.to_str().expect("utf-8")]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.lines().any(|l| l == want),
            "{location}: want {want:?} in:\n{text}"
        );
    }
}

/// `$ssl_protocol`, `$ssl_cipher`, `$ssl_server_name` and
/// `$ssl_session_reused` as nginx gives them, for a TLS 1.3 suite and a
/// TLS 1.2 suite the client asks for, and a client that sends no SNI.
#[test]
fn ssl_variables_match_nginx() {
    let t = ATest::new();
    let mut seen = Vec::new();
    for nginx in [false, true] {
        let _server = t.either(
            nginx,
            "ssl",
            // (nginx 1.22 has no TLS 1.3 by default.)
            "        ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20       location / { return 200 \"$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused|$https\\n\"; }\n",
        );
        let mut got = Vec::new();
        let asks: [&[&str]; 2] = [
            &["--tls13-ciphers", "TLS_AES_256_GCM_SHA384"],
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
        ];
        for extra in asks {
            let (ok, out) = t.https("/", extra);
            assert!(ok, "{out}");
            got.push(out);
        }
        // An address in the URL: curl sends no SNI.
        let url = format!("https://127.0.0.1:{}/", t.port);
        let (ok, out) = curl(&["-k", &url]);
        assert!(ok, "{out}");
        got.push(out);
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "waypost (left) and nginx (right)");
    assert_eq!(
        seen[1][0],
        "TLSv1.3|TLS_AES_256_GCM_SHA384|a.test|.|on\n\n1.1"
    );
    assert_eq!(
        seen[1][1],
        "TLSv1.2|ECDHE-ECDSA-AES128-GCM-SHA256|a.test|.|on\n\n1.1"
    );
    assert!(seen[1][2].starts_with("TLSv1.3|TLS_"), "{}", seen[1][2]);
    assert!(seen[1][2].ends_with("||.|on\n"), "{}", seen[1][2]);
}

/// `ssl_ecdh_curve`: a name OpenSSL does not know fails as in nginx (for
/// a server with certificates, listening on TLS or not); known names load;
/// the list is what a handshake can use: with only P-384, a client
/// offering X25519 alone is refused and one offering P-384 served.
#[test]
fn ssl_ecdh_curve_as_nginx() {
    let ca = Ca::new("waypost test CA");
    let dir = TempDir::new("tls-t");
    write_pair(&dir.path, "a", &ca.issue(&["a.test"], false));
    let d = dir.path.display();
    let server = |listen: &str, curves: &str| {
        format!(
            "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1{listen};\n        ssl_certificate {d}/a.pem;\n        ssl_certificate_key {d}/a.key;\n        ssl_ecdh_curve {curves};\n    }}\n}}\n"
        )
    };
    for listen in [" ssl", ""] {
        let [nginx, waypost] = both_t(&server(listen, "X25519:x99:bogus"));
        let want = "[emerg] SSL_CTX_set1_curves_list(\"X25519:x99:bogus\") failed (SSL: error:0A080106:SSL routines::passed invalid argument:group 'x99' cannot be set)";
        assert_eq!(nginx, (want.to_owned(), Some(1)));
        assert_eq!(waypost, nginx);
    }
    for curves in [
        "auto",
        "X25519:prime256v1:secp384r1",
        "x25519",
        "P-256:X448:secp521r1",
    ] {
        let [nginx, waypost] = both_t(&server(" ssl", curves));
        assert_eq!(nginx, (String::new(), Some(0)), "{curves}");
        assert_eq!(waypost, nginx, "{curves}");
    }
    // Only groups rustls lacks: no handshake could succeed.
    let [_, waypost] = both_t(&server(" ssl", "X448:ffdhe2048"));
    assert_eq!(
        waypost.0,
        "[emerg] \"ssl_ecdh_curve\" \"X448:ffdhe2048\" names no key exchange group waypost has (X25519, P-256, P-384)"
    );

    let t = ATest::new();
    for nginx in [false, true] {
        let _server = t.either(
            nginx,
            "ssl",
            "        ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20       ssl_ecdh_curve secp384r1;\n\
             \x20       location / { return 200 \"ok\\n\"; }\n",
        );
        let (ok, out) = t.https("/", &["--curves", "X25519"]);
        assert!(!ok, "nginx {nginx}: {out}");
        let (ok, out) = t.https("/", &["--curves", "P-384"]);
        assert!(ok, "nginx {nginx}: {out}");
    }
}

/// `proxy_ssl_ciphers` chooses the TLS 1.2 suites offered to an `https://`
/// upstream, as nginx's: the upstream (a TLS server of the same program)
/// answers with the suite it got. (No session reuse: nginx keeps one
/// session per upstream peer and would offer /chacha's to /aes.)
#[test]
fn proxy_ssl_ciphers_choose_the_upstream_suite_as_nginx() {
    let t = ATest::new();
    let front = free_port();
    let d = t.files.path.display();
    let (back, ca) = (t.port, &t.ca_file);
    let servers = format!(
        "    server {{\n\
         \x20       listen 127.0.0.1:{back} ssl;\n\
         \x20       ssl_certificate {d}/a.pem;\n\
         \x20       ssl_certificate_key {d}/a.key;\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       return 200 \"$ssl_protocol $ssl_cipher\";\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{front};\n\
         \x20       proxy_ssl_trusted_certificate {ca};\n\
         \x20       proxy_ssl_verify on;\n\
         \x20       proxy_ssl_name a.test;\n\
         \x20       proxy_ssl_session_reuse off;\n\
         \x20       location /chacha {{ proxy_pass https://127.0.0.1:{back}; proxy_ssl_protocols TLSv1.2; proxy_ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305; }}\n\
         \x20       location /aes {{ proxy_pass https://127.0.0.1:{back}; proxy_ssl_protocols TLSv1.2; proxy_ssl_ciphers 'ECDHE+AES256:!CHACHA20'; }}\n\
         \x20       location /tls13 {{ proxy_pass https://127.0.0.1:{back}; proxy_ssl_protocols TLSv1.3; proxy_ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305; }}\n\
         \x20   }}\n"
    );
    let mut seen = Vec::new();
    for nginx in [false, true] {
        let conf = conf(&servers);
        let conf = for_either(nginx, conf, "pid logs/nginx.pid;\n");
        let _server = Server::either(nginx, &conf, &[front, back]);
        let got: Vec<String> = ["/chacha", "/aes", "/tls13"]
            .iter()
            .map(|path| curl(&[&format!("http://127.0.0.1:{front}{path}")]).1)
            .collect();
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "waypost (left) and nginx (right)");
    assert_eq!(
        seen[1],
        [
            "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305",
            "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384",
            "TLSv1.3 TLS_AES_256_GCM_SHA384"
        ]
    );
}

/// `ssl_reject_handshake on` in a default server without certificates,
/// the usual guard against giving a name's certificate to whoever asks
/// for another: a name with its own server is served, another name and a
/// client without SNI get no handshake, logged as nginx logs them.
#[test]
fn ssl_reject_handshake_as_nginx() {
    let t = ATest::new();
    let port = t.port;
    let d = t.files.path.display();
    let servers = format!(
        "    server {{\n\
         \x20       listen 127.0.0.1:{port} ssl default_server;\n\
         \x20       ssl_reject_handshake on;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port} ssl;\n\
         \x20       server_name a.test;\n\
         \x20       ssl_certificate {d}/a.pem;\n\
         \x20       ssl_certificate_key {d}/a.key;\n\
         \x20       location / {{ return 200 \"A\\n\"; }}\n\
         \x20   }}\n"
    );
    for nginx in [false, true] {
        let conf = info_log(&conf(&servers));
        let conf = for_either(nginx, conf, "pid logs/nginx.pid;\n");
        let server = Server::either(nginx, &conf, &[port]);
        let (ok, out) = t.https("/", &[]);
        assert!(ok, "nginx {nginx}: {out}");
        assert_eq!(out, "A\n\n1.1", "nginx {nginx}");
        let (ok, out) = https("b.test", port, "/", &t.ca_file, &[]);
        assert!(!ok, "nginx {nginx}: {out}");
        let url = format!("https://127.0.0.1:{port}/");
        let (ok, out) = curl(&["-k", &url]);
        assert!(!ok, "nginx {nginx}: {out}");
        let rejected = format!(
            "handshake rejected while SSL handshaking, client: 127.0.0.1, server: 127.0.0.1:{port}"
        );
        eventually("two rejections logged", || {
            server.read("logs/error.log").matches(&rejected).count() == 2
        });
    }
}

/// `ssl_password_file` beside nginx: a key OpenSSL encrypted (PKCS#8,
/// with 3DES as `openssl req` writes one, and with AES-256) opens with
/// the file's second line (a CR before its LF dropped) and the server
/// answers over TLS; with no line that opens it, or no file, `-t` fails
/// as nginx's does.
#[test]
fn ssl_password_file_as_nginx() {
    let t = ATest::new();
    let d = t.files.path.display().to_string();
    for (cipher, name) in [("des3", "des3.key"), ("aes-256-cbc", "aes.key")] {
        let made = Command::new("openssl")
            .args([
                "pkcs8", "-topk8", "-v2", cipher, "-in", "a.key", "-out", name,
            ])
            .args(["-passout", "pass:right one"])
            .current_dir(&t.files.path)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "{made:?}");
    }
    std::fs::write(t.files.path.join("pw.txt"), "wrong\r\nright one\n").expect("write");
    std::fs::write(t.files.path.join("bad.txt"), "wrong\n").expect("write");
    let conf = |key: &str, file: &str| {
        t.conf(
            "ssl",
            &format!(
                "        ssl_password_file {d}/{file};\n\
                 \x20       location / {{ return 200 \"ok\\n\"; }}\n"
            ),
        )
        .replace(&format!("{d}/a.key"), &format!("{d}/{key}"))
    };
    for nginx in [false, true] {
        for key in ["des3.key", "aes.key"] {
            let _server = Server::either(
                nginx,
                &for_either(nginx, conf(key, "pw.txt"), ""),
                &[t.port],
            );
            let (ok, text) = t.https("/", &[]);
            assert!(
                ok && text.starts_with("ok\n"),
                "nginx {nginx}, {key}: {text}"
            );
        }
    }
    let (nginx, waypost) = test_both(&t.files, &conf("des3.key", "bad.txt"));
    assert_eq!((nginx.0, waypost.0), (Some(1), Some(1)));
    let refused = format!(
        "cannot load certificate key \"{d}/des3.key\": PEM_read_bio_PrivateKey() failed (SSL: error:1C800064:Provider routines::bad decrypt"
    );
    for (who, run) in [("nginx", &nginx), ("waypost", &waypost)] {
        assert!(
            run.2.iter().any(|l| l.starts_with(&refused)),
            "{who}: {run:?}"
        );
    }
    let (nginx, waypost) = test_both(&t.files, &conf("des3.key", "none.txt"));
    assert_eq!((nginx.0, waypost.0), (Some(1), Some(1)));
    assert_eq!(nginx.2, waypost.2);
    assert_eq!(
        waypost.2,
        [format!(
            "open() \"{d}/none.txt\" failed (2: No such file or directory) in {d}/t.conf:14"
        )]
    );
}
